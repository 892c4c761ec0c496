//! The one helper every end-to-end test uses: it starts the real `logmill` binary on an ephemeral
//! port with a fresh directory, talks to it over real sockets, and reads the files it wrote.
//!
//! Every wait here polls a condition against a deadline; nothing sleeps a fixed time.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use logmill::protocol::frame::{self, Frame};
use logmill::protocol::native::{self, Hello, ServerFrame};
use logmill::record::{Body, Record};

pub mod certs;
pub mod clickhouse;
pub mod http_client;
pub mod page_server;
mod temp_dir;
#[allow(unused_imports)] // not every test file makes a directory
pub use temp_dir::TempDir;

pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::park_timeout(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A running `logmill serve`.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// With `--udp-port`.
    pub udp: Option<SocketAddr>,
    /// The whole listening line.
    pub listening: serde_json::Value,
    pub dir: PathBuf,
    /// The process's stdout after the listening line (for `--stdout`).
    pub stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl Server {
    /// Starts the server in `dir` with `--port 0 --tcp-only` and `args`, and waits for its
    /// listening line.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        Server::start_on(dir, 0, args)
    }

    /// Like [`Server::start`] on a given TCP port (a restart on the port a client knows).
    pub fn start_on(dir: &Path, port: u16, args: &[&str]) -> Server {
        let mut command = logmill();
        command
            .args(["serve", "--tcp-only", "--port", &port.to_string(), "--dir"])
            .arg(dir)
            .args(args);
        Server::spawn(command, dir)
    }

    /// Runs `command` (which starts logmill with `--dir dir`, however it is spelled) and waits
    /// for the listening line.
    pub fn spawn(mut command: Command, dir: &Path) -> Server {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start logmill");
        let stderr = child.stderr.take().unwrap();
        // Echo the server's log into the test output (shown when a test fails).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[logmill] {line}");
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("no listening line");
        let listening: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("bad listening line {line:?}: {e}"));
        assert_eq!(listening["event"], "listening");
        let addr = listening["tcp"].as_str().unwrap().parse().unwrap();
        let udp = listening["udp"].as_str().map(|a| a.parse().unwrap());
        Server {
            child,
            addr,
            udp,
            listening,
            dir: dir.to_path_buf(),
            stdout: Some(stdout),
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s
    }

    pub fn client(&self) -> Client {
        Client {
            stream: self.connect(),
            buf: Vec::new(),
        }
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit()
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_for("server exit", DEADLINE, || self.child.try_wait().unwrap())
    }

    /// `health` answer line.
    pub fn health(&self) -> String {
        self.try_health().expect("health check failed")
    }

    /// `health` answer line, or `None` if the connection was refused or reset.
    pub fn try_health(&self) -> Option<String> {
        let mut s = TcpStream::connect(self.addr).ok()?;
        s.set_read_timeout(Some(DEADLINE)).ok()?;
        s.write_all(b"health\n").ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        Some(answer)
    }

    /// All stored lines parsed as JSON (the server must run with `--format json`).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Waits until the files hold at least `n` lines, and returns them parsed as JSON.
    pub fn wait_json(&self, n: usize) -> Vec<serde_json::Value> {
        self.wait_lines(n);
        self.json_lines()
    }

    /// All stored lines, oldest file first.
    pub fn lines(&self) -> Vec<String> {
        read_lines(&self.dir)
    }

    /// Waits until the files hold at least `n` lines and returns them.
    pub fn wait_lines(&self, n: usize) -> Vec<String> {
        wait_for(&format!("{n} stored lines"), DEADLINE, || {
            let lines = read_lines_while_written(&self.dir);
            (lines.len() >= n).then_some(lines)
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none()
            && let Err(e) = self.child.kill().and_then(|()| self.child.wait().map(drop))
        {
            eprintln!("could not stop the test server: {e}");
        }
    }
}

/// Every `_main.log*` file's lines, oldest file first (`.N` .. `.0`, then the active file).
///
/// # Panics
/// On a file whose last line is not finished: call it once the server has stored what it was
/// sent (or has stopped); while it may be writing, use [`read_lines_while_written`].
pub fn read_lines(dir: &Path) -> Vec<String> {
    read_files(dir, true)
}

/// [`read_lines`] while the writer may be in the middle of a write: a `read` of the active file
/// can see part of a `write` (Linux makes no promise for regular files past a page), so an
/// unfinished last line there is left for the next look instead of failing the test.
pub fn read_lines_while_written(dir: &Path) -> Vec<String> {
    read_files(dir, false)
}

fn read_files(dir: &Path, strict: bool) -> Vec<String> {
    let mut rotated: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name()?.to_str()?.to_string();
            let n = name.strip_prefix("_main.log.")?.parse().ok()?;
            Some((n, path))
        })
        .collect();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut lines = Vec::new();
    for path in rotated
        .into_iter()
        .map(|(_, p)| p)
        .chain([dir.join("_main.log")])
    {
        if let Ok(text) = std::fs::read(&path) {
            let whole = match text.iter().rposition(|&b| b == b'\n') {
                Some(end) if !strict => &text[..=end],
                None if !strict => &[][..],
                _ => {
                    assert!(
                        text.is_empty() || text.ends_with(b"\n"),
                        "{} has a torn line",
                        path.display()
                    );
                    &text[..]
                }
            };
            let whole = std::str::from_utf8(whole)
                .unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()));
            lines.extend(whole.lines().map(str::to_string));
        }
    }
    lines
}

/// The sequence number of a text line (third column).
pub fn seq_of(line: &str) -> u64 {
    line.split(' ')
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no sequence number in {line:?}"))
}

/// The message of a text line written with no app and no logger: what follows `- - `.
pub fn message_of(line: &str) -> &str {
    let rest = line.splitn(6, ' ').nth(5).unwrap_or("");
    rest.split(" | ").next().unwrap()
}

/// Checks sequence numbers are gap-free and increasing from `first`.
pub fn assert_gap_free(lines: &[String], first: u64) {
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(seq_of(line), first + i as u64, "line {i}: {line}");
    }
}

pub fn message(text: &str) -> Record<'static> {
    Record {
        body: Body::Message(text.to_string().into()),
        ..Record::default()
    }
}

/// A native-protocol client over a blocking socket.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn hello(&mut self, app: &str, want_acks: bool) -> ServerFrame {
        let mut out = Vec::new();
        native::encode_hello(
            &Hello {
                app: app.into(),
                instance: String::new(),
                token: String::new(),
                want_acks,
            },
            &mut out,
        );
        self.stream.write_all(&out).unwrap();
        self.read_frame().expect("no welcome")
    }

    pub fn send(&mut self, records: &[Record<'_>]) {
        let mut out = Vec::new();
        native::encode_records(records, &mut out);
        self.stream.write_all(&out).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next server frame, or `None` at EOF.
    pub fn read_frame(&mut self) -> Option<ServerFrame> {
        loop {
            if let Frame::Complete { payload, consumed } =
                frame::decode(&self.buf, u32::MAX).unwrap()
            {
                let f = native::decode_server_frame(payload).expect("bad server frame");
                self.buf.drain(..consumed);
                return Some(f);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read (timed out?)");
            if n == 0 {
                assert!(self.buf.is_empty(), "EOF inside a server frame");
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads acks until one reports at least `count` records written; returns its last_seq.
    pub fn wait_ack(&mut self, count: u64) -> u64 {
        loop {
            match self.read_frame() {
                Some(ServerFrame::Ack { count: c, last_seq }) if c >= count => return last_seq,
                Some(ServerFrame::Ack { .. }) => {}
                other => panic!("expected an ack, got {other:?}"),
            }
        }
    }
}

/// A token for `app` from `logmill token issue --app APP --dir DIR` (a server must use the same
/// `--dir` to accept it).
pub fn issue_token(dir: &Path, app: &str) -> String {
    let out = logmill()
        .args(["token", "issue", "--app", app, "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run logmill token issue");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The `logmill` binary as a command, for every test that runs it: with `LOGMILL_SHIP_PORT=0`,
/// so a server started without `--ship-port` takes any free port for logship rather than 7447,
/// which the many servers the tests start in parallel would all contend for.
pub fn logmill() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_logmill"));
    command.env("LOGMILL_SHIP_PORT", "0");
    command
}

/// Runs `command` to its end with `stdin` as its whole input; stdout and stderr captured.
pub fn output_with_stdin(command: &mut Command, stdin: &str) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// `logmill admin set-password --dir DIR` with `stdin` typed at its prompt.
pub fn set_admin_password(dir: &Path, stdin: &str) -> std::process::Output {
    let mut command = logmill();
    command.args(["admin", "set-password", "--dir"]).arg(dir);
    output_with_stdin(&mut command, stdin)
}

/// A loopback port nobody listens on (bound, then released): for a server a test stops and
/// starts again on the same port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The stored lines of `dir` (the server ran with `--format json`), parsed.
pub fn json_lines_of(dir: &Path) -> Vec<serde_json::Value> {
    read_lines(dir)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Mounts a small tmpfs (needs root: `tools::root`) and unmounts it when dropped.
pub struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = TempDir::new("tmpfs");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir.0)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.dir.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("could not unmount {}", self.dir.0.display());
        }
    }
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Waits until `path` holds exactly `expected` (a shipped file: the ship writer stores after
/// the connection's bytes arrived), comparing SHA-256.
pub fn wait_copy(path: &Path, expected: &[u8]) {
    let want = sha256_hex(expected);
    wait_for(
        &format!("{} to hold the file", path.display()),
        DEADLINE,
        || {
            let got = std::fs::read(path).ok()?;
            (got.len() == expected.len() && sha256_hex(&got) == want).then_some(())
        },
    );
}
