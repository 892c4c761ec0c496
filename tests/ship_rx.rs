//! The logship receiver (issue 15) against the real binary, over real loopback sockets, with the
//! bytes checked on disk: byte-exact copies (sha256), resuming after partial sends and after the
//! receiver is SIGKILLed, hostile names and peers, one connection per name, `--host-in-filename`,
//! `logmill ship rx`'s spellings, and the figures in `health` and `status`.
//!
//! Transmitters: Rust socket code here ([`ship`], [`Open`]) and the Python stand-in written from
//! logship's document, `tests/ship/ship_tx.py`; the Python receiver stand-in
//! `tests/ship/ship_rx.py` is checked against that transmitter, for the transmitter's interop
//! tests.

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{DEADLINE, Server, TempDir, wait_copy, wait_for};

/// The receiver's address from the listening line.
fn ship_addr(server: &Server) -> SocketAddr {
    server.listening["ship"]
        .as_str()
        .expect("a ship address in the listening line")
        .parse()
        .unwrap()
}

/// `logmill serve` in `dir` with the receiver on any free port.
fn start(dir: &Path, args: &[&str]) -> Server {
    let mut all = vec!["--ship-port", "0"];
    all.extend_from_slice(args);
    Server::start(dir, &all)
}

/// A shipping connection that sent its name line and read the answer.
struct Open {
    stream: TcpStream,
    answer: String,
}

impl Open {
    fn new(addr: SocketAddr, name_line: &[u8]) -> Open {
        let mut stream = TcpStream::connect(addr).expect("connect to the ship port");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.write_all(name_line).unwrap();
        let answer = read_line(&mut stream);
        Open { stream, answer }
    }

    /// The offset answered, or a panic showing the refusal.
    fn offset(&self) -> u64 {
        self.answer
            .parse()
            .unwrap_or_else(|_| panic!("not an offset: {:?}", self.answer))
    }

    /// Sends `data`, closes its side, and waits until the receiver closes too.
    fn finish(mut self, data: &[u8]) {
        self.stream.write_all(data).unwrap();
        self.stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    }
}

/// One answer line without its newline (at most 1 KiB, as a transmitter reads it).
fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 1024 {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => return String::from_utf8(line).unwrap(),
            Ok(_) => line.push(byte[0]),
            Err(e) => panic!("reading the answer line after {line:?}: {e}"),
        }
    }
    panic!("no answer line: {:?}", String::from_utf8_lossy(&line));
}

/// Ships `data` as `name` from wherever the receiver's copy ends; returns the offset it gave.
fn ship(addr: SocketAddr, name: &str, data: &[u8]) -> u64 {
    let open = Open::new(addr, format!("{name}\n").as_bytes());
    let offset = open.offset();
    open.finish(&data[usize::try_from(offset).unwrap()..]);
    offset
}

fn wait_size(path: &Path, size: u64) {
    wait_for(
        &format!("{} at {size} bytes", path.display()),
        DEADLINE,
        || (std::fs::metadata(path).ok()?.len() == size).then_some(()),
    );
}

/// Bytes of every value, newlines and NULs included: a deterministic xorshift stream.
fn binary(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn text(lines: usize) -> Vec<u8> {
    (0..lines)
        .map(|i| {
            format!(
                "2026-12-02T06:00:00Z INFO worker-{} request {i} took {}ms\n",
                i % 7,
                i % 97
            )
        })
        .collect::<String>()
        .into_bytes()
}

fn server_log(server: &Server) -> String {
    std::fs::read_to_string(server.dir.join("_server.log")).unwrap()
}

/// Every entry under `dir`, recursively, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

fn python(test: &str) -> Option<PathBuf> {
    tools::require(test, tools::python3())
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ship")
        .join(name)
}

/// Runs `tests/ship/ship_tx.py` against `addr`; its JSON result line.
fn python_tx(python: &Path, addr: SocketAddr, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python)
        .arg(script("ship_tx.py"))
        .args([
            "--host",
            &addr.ip().to_string(),
            "--port",
            &addr.port().to_string(),
        ])
        .args(args)
        .output()
        .expect("run ship_tx.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn text_and_binary_files_arrive_byte_exact() {
    let dir = TempDir::new("ship-exact");
    let server = start(&dir.0, &[]);
    let addr = ship_addr(&server);
    let ship_dir = dir.0.join("ship");
    let text = text(40_000);
    let binary = binary(3 << 20);
    assert_eq!(ship(addr, "app.log", &text), 0);
    assert_eq!(ship(addr, "core.bin", &binary), 0);
    wait_copy(&ship_dir.join("app.log"), &text);
    wait_copy(&ship_dir.join("core.bin"), &binary);
    // An empty file is a file too.
    assert_eq!(ship(addr, "empty.log", b""), 0);
    wait_size(&ship_dir.join("empty.log"), 0);
    // Many files at once, each on its own connection.
    let threads: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let data = binary_with_seed(i, 100_000 + i * 777);
                ship(addr, &format!("part-{i}.bin"), &data);
                data
            })
        })
        .collect();
    for (i, thread) in threads.into_iter().enumerate() {
        let data = thread.join().unwrap();
        wait_copy(&ship_dir.join(format!("part-{i}.bin")), &data);
    }
}

fn binary_with_seed(seed: usize, len: usize) -> Vec<u8> {
    let mut data = binary(len + seed);
    data.drain(..seed);
    data
}

#[test]
fn python_transmitter_ships_to_logmill_byte_exact() {
    let Some(python) = python("python_transmitter_ships_to_logmill_byte_exact") else {
        return;
    };
    let dir = TempDir::new("ship-python-tx");
    let server = start(&dir.0, &[]);
    let addr = ship_addr(&server);
    let source = dir.0.join("source.bin");
    let data = binary(2 << 20);
    std::fs::write(&source, &data).unwrap();
    let first = python_tx(
        &python,
        addr,
        &["--limit", "100000", source.to_str().unwrap()],
    );
    assert_eq!(first, serde_json::json!({"offset": 0, "sent": 100000}));
    wait_size(&dir.0.join("ship/source.bin"), 100_000);
    let rest = python_tx(&python, addr, &[source.to_str().unwrap()]);
    assert_eq!(
        rest,
        serde_json::json!({"offset": 100000, "sent": data.len() - 100_000})
    );
    wait_copy(&dir.0.join("ship/source.bin"), &data);
    let refused = python_tx(
        &python,
        addr,
        &["--raw-name", "../escape.log", source.to_str().unwrap()],
    );
    assert!(
        refused["refused"].as_str().unwrap().contains("'/'"),
        "{refused}"
    );
}

/// The Python receiver stand-in, checked against the Python transmitter: the pair the
/// transmitter's interop tests lean on.
#[test]
fn python_receiver_stand_in_stores_what_the_python_transmitter_sends() {
    let Some(python) = python("python_receiver_stand_in_stores_what_the_python_transmitter_sends")
    else {
        return;
    };
    let dir = TempDir::new("ship-python-rx");
    let store = dir.0.join("store");
    let mut rx = PythonRx::start(&python, &store, &["--host-in-filename"]);
    let source = dir.0.join("data.bin");
    let data = binary(1 << 20);
    std::fs::write(&source, &data).unwrap();
    let first = python_tx(
        &python,
        rx.addr,
        &["--limit", "4096", source.to_str().unwrap()],
    );
    assert_eq!(first["sent"], 4096);
    let stored = store.join("127.0.0.1_data.bin");
    wait_size(&stored, 4096);
    let rest = python_tx(&python, rx.addr, &[source.to_str().unwrap()]);
    assert_eq!(rest["offset"], 4096);
    wait_copy(&stored, &data);
    let refused = python_tx(
        &python,
        rx.addr,
        &["--raw-name", ".hidden", source.to_str().unwrap()],
    );
    assert!(refused["refused"].is_string(), "{refused}");
    rx.child.kill().unwrap();
    rx.child.wait().unwrap();
}

struct PythonRx {
    child: Child,
    addr: SocketAddr,
}

impl PythonRx {
    fn start(python: &Path, store: &Path, args: &[&str]) -> PythonRx {
        let mut child = Command::new(python)
            .arg(script("ship_rx.py"))
            .args(["--port", "0", "--storage-path", store.to_str().unwrap()])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ship_rx.py");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port: u16 = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("bad listening line {line:?}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        PythonRx { child, addr }
    }
}

#[test]
fn partial_sends_resume_from_the_receivers_offset() {
    let dir = TempDir::new("ship-partial");
    let server = start(&dir.0, &[]);
    let addr = ship_addr(&server);
    let path = dir.0.join("ship/grow.log");
    let data = text(5_000);
    let cuts = [0, 1, 1000, 1001, 65_536, data.len() - 1, data.len()];
    for pair in cuts.windows(2) {
        let open = Open::new(addr, b"grow.log\n");
        assert_eq!(open.offset(), pair[0] as u64, "resumes where the copy ends");
        open.finish(&data[pair[0]..pair[1]]);
        wait_size(&path, pair[1] as u64);
    }
    // Complete: the answer is the whole size, and nothing is left to send.
    assert_eq!(ship(addr, "grow.log", &data), data.len() as u64);
    wait_copy(&path, &data);
    // The file grows (appended while the transmitter was away): only the new bytes follow.
    let mut grown = data.clone();
    grown.extend_from_slice(b"appended later\n");
    assert_eq!(ship(addr, "grow.log", &grown), data.len() as u64);
    wait_copy(&path, &grown);
}

#[test]
fn a_killed_receiver_restarted_resumes_byte_exact() {
    let dir = TempDir::new("ship-kill");
    let data = binary(4 << 20);
    let half = data.len() / 2;
    let path = dir.0.join("ship/big.bin");
    let mut server = start(&dir.0, &["--fsync", "always"]);
    let mut open = Open::new(ship_addr(&server), b"big.bin\n");
    assert_eq!(open.offset(), 0);
    open.stream.write_all(&data[..half]).unwrap();
    wait_size(&path, half as u64);
    server.signal("KILL");
    server.wait_exit();
    drop(open);
    // A new server on the same directory (new ports): the copy resumes where it was.
    let server = start(&dir.0, &["--fsync", "always"]);
    assert_eq!(ship(ship_addr(&server), "big.bin", &data), half as u64);
    wait_copy(&path, &data);
}

#[test]
fn hostile_names_are_refused_with_one_line_and_create_nothing() {
    let dir = TempDir::new("ship-names");
    let server = start(&dir.0, &[]);
    let addr = ship_addr(&server);
    let before = tree(&dir.0);
    let cases: &[(&[u8], &str)] = &[
        (b"\n", "empty file name"),
        (b"../escape.log\n", "contains '/'"),
        (b"/etc/passwd\n", "contains '/'"),
        (b"sub/dir.log\n", "contains '/'"),
        (b"..\n", "starts with '.'"),
        (b".\n", "starts with '.'"),
        (b".hidden\n", "starts with '.'"),
        (b"a..b\n", "contains '..'"),
        (b"nul\0byte\n", "control character"),
        (b"cr.log\r\n", "control character"),
        (b"esc\x1b[31m\n", "control character"),
        (b"\xff\xfe.log\n", "not UTF-8"),
        (b"_main.log\n", "reserved"),
        (b"_server.log\n", "reserved"),
    ];
    for (line, why) in cases {
        let mut open = Open::new(addr, line);
        assert!(
            open.answer.starts_with("error: ") && open.answer.contains(why),
            "{line:?}: {:?}",
            open.answer
        );
        // One line, then the receiver closes.
        let mut rest = Vec::new();
        open.stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{line:?}: {rest:?}");
    }
    let mut long = vec![b'a'; 256];
    long.push(b'\n');
    let open = Open::new(addr, &long);
    assert!(
        open.answer.contains("at most 255 bytes"),
        "{:?}",
        open.answer
    );
    // The longest name is fine.
    let mut longest = "b".repeat(255);
    assert_eq!(ship(addr, &longest, b"ok"), 0);
    assert!(
        tree(&dir.0)
            .iter()
            .filter(|p| !before.contains(p))
            .all(|p| p == "ship" || p == &format!("ship/{longest}")),
        "only the good name was created: {:?}",
        tree(&dir.0)
    );
    assert!(!dir.0.parent().unwrap().join("escape.log").exists());
    longest.clear();
    let log = server_log(&server);
    assert!(log.contains("refused: name \"../escape.log"), "{log}");
    assert!(log.contains("(15 refused so far)"), "{log}");
}

#[test]
fn a_name_line_that_never_ends_is_refused_with_bounded_memory() {
    let dir = TempDir::new("ship-endless");
    let server = start(&dir.0, &[]);
    let addr = ship_addr(&server);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    // 64 MiB without a newline, from a thread: the receiver stops reading after 256 bytes, so
    // the writes fail (reset) or block until the receiver closes.
    let mut writer = stream.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0usize;
        for _ in 0..64 {
            match writer.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    let answer = read_line(&mut stream);
    assert_eq!(
        answer,
        "error: no newline within 256 bytes: a name is at most 255 bytes"
    );
    drop(stream);
    flood.join().unwrap();
    // The server is fine and kept nothing of it.
    assert!(server.health().starts_with("OK "));
    assert!(!dir.0.join("ship").exists(), "nothing was created");
}

#[test]
fn a_stalled_transmitter_is_timed_out_and_the_next_connection_resumes() {
    let dir = TempDir::new("ship-stall");
    let server = start(&dir.0, &["--ship-timeout", "1s"]);
    let addr = ship_addr(&server);
    let path = dir.0.join("ship/slow.log");
    let data = text(2_000);
    let mut open = Open::new(addr, b"slow.log\n");
    assert_eq!(open.offset(), 0);
    open.stream.write_all(&data[..5000]).unwrap();
    // Then nothing: the receiver says why and closes (the read ends on its line and EOF).
    let mut rest = String::new();
    open.stream.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "error: idle for 1s\n");
    wait_size(&path, 5000);
    assert_eq!(ship(addr, "slow.log", &data), 5000);
    wait_copy(&path, &data);
    // A peer that never finishes its name line is timed out too.
    let mut open = TcpStream::connect(addr).unwrap();
    open.set_read_timeout(Some(DEADLINE)).unwrap();
    open.write_all(b"half-a-na").unwrap();
    assert_eq!(read_line(&mut open), "error: no file name line within 1s");
    let log = server_log(&server);
    assert!(
        log.contains("slow.log silent for 1s (--ship-timeout)"),
        "{log}"
    );
}

#[test]
fn a_second_connection_for_the_same_name_is_refused() {
    let dir = TempDir::new("ship-busy");
    let server = start(&dir.0, &[]);
    let addr = ship_addr(&server);
    let first = Open::new(addr, b"one.log\n");
    assert_eq!(first.offset(), 0);
    let second = Open::new(addr, b"one.log\n");
    assert_eq!(
        second.answer,
        "error: one.log is being shipped by another connection"
    );
    // Another name is not held up.
    assert_eq!(ship(addr, "two.log", b"two\n"), 0);
    first.finish(b"first\n");
    // Once the first is done, the name is free again, from where it ended.
    assert_eq!(ship(addr, "one.log", b"first\nthen\n"), 6);
    wait_copy(&dir.0.join("ship/one.log"), b"first\nthen\n");
    assert!(server_log(&server).contains("one.log is being shipped by another connection"));
}

#[test]
fn host_in_filename_keeps_two_hosts_apart() {
    let dir = TempDir::new("ship-hosts");
    let server = start(&dir.0, &["--host", "::", "--host-in-filename"]);
    let port = ship_addr(&server).port();
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_eq!(ship(v4, "app.log", b"from v4\n"), 0);
    assert_eq!(ship(v6, "app.log", b"from v6, longer\n"), 0);
    wait_copy(&dir.0.join("ship/127.0.0.1_app.log"), b"from v4\n");
    wait_copy(&dir.0.join("ship/::1_app.log"), b"from v6, longer\n");
    assert!(!dir.0.join("ship/app.log").exists());
}

#[test]
fn a_symlink_or_hard_link_planted_in_the_ship_directory_is_not_followed() {
    let dir = TempDir::new("ship-planted");
    let ship_dir = dir.0.join("ship");
    std::fs::create_dir_all(&ship_dir).unwrap();
    let outside = dir.0.join("outside.txt");
    std::fs::write(&outside, b"precious\n").unwrap();
    std::os::unix::fs::symlink(&outside, ship_dir.join("evil.log")).unwrap();
    std::os::unix::fs::symlink(dir.0.join("_main.log"), ship_dir.join("records.log")).unwrap();
    std::fs::hard_link(&outside, ship_dir.join("hard.log")).unwrap();
    let server = start(&dir.0, &[]);
    let addr = ship_addr(&server);
    for name in ["evil.log", "records.log", "hard.log"] {
        let open = Open::new(addr, format!("{name}\n").as_bytes());
        assert_eq!(
            open.answer,
            format!("error: {name} exists in the ship directory and is not a plain file")
        );
    }
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious\n");
    assert!(server.lines().is_empty(), "no record file was written");
}

#[test]
fn ship_rx_takes_logships_spellings() {
    let dir = TempDir::new("ship-rx-cli");
    let store = dir.0.join("store");
    let mut command = common::logmill();
    command
        .args([
            "ship",
            "rx",
            "--bindhost",
            "127.0.0.1",
            "--port",
            "0",
            "--storage-path",
        ])
        .arg(&store)
        .args([
            "--host-in-filename",
            "--socket-queue-length",
            "16",
            "--timeout",
            "5",
        ]);
    // Its own files are in <storage-path>/.logmill, where no shipped name can go.
    let server = Server::spawn(command, &store.join(".logmill"));
    assert!(server.listening["grpc"].is_null(), "{}", server.listening);
    let addr = ship_addr(&server);
    assert_eq!(ship(addr, "x.log", b"shipped\n"), 0);
    wait_copy(&store.join("127.0.0.1_x.log"), b"shipped\n");
    assert!(
        server.health().contains(" ship_bytes=8"),
        "{}",
        server.health()
    );
    // logship's own spelling, with a value.
    let mut command = common::logmill();
    command
        .args([
            "ship",
            "rx",
            "--port",
            "0",
            "--host-in-filename",
            "false",
            "--storage-path",
        ])
        .arg(dir.0.join("plain"));
    let plain = Server::spawn(command, &dir.0.join("plain/.logmill"));
    assert_eq!(ship(ship_addr(&plain), "x.log", b"plain\n"), 0);
    wait_copy(&dir.0.join("plain/x.log"), b"plain\n");
}

#[test]
fn no_ship_turns_the_port_off_and_tcp_only_does_not() {
    let dir = TempDir::new("ship-off");
    let on = start(&dir.0.join("on"), &[]);
    assert!(on.listening["ship"].is_string(), "{}", on.listening);
    // The directory comes with the first shipped file, not before.
    assert!(!dir.0.join("on/ship").exists());
    let off = Server::start(&dir.0.join("off"), &["--no-ship"]);
    assert!(off.listening["ship"].is_null(), "{}", off.listening);
}

#[test]
fn health_and_status_count_shipped_bytes() {
    let dir = TempDir::new("ship-figures");
    let server = start(&dir.0, &[]);
    let addr = ship_addr(&server);
    let held = Open::new(addr, b"held.log\n");
    assert_eq!(held.offset(), 0);
    assert_eq!(ship(addr, "a.log", &[7u8; 12_345]), 0);
    wait_size(&dir.0.join("ship/a.log"), 12_345);
    let health = wait_for("health to count the bytes", DEADLINE, || {
        let h = server.health();
        h.contains(" ship_bytes=12345").then_some(h)
    });
    assert!(
        health.contains(" ship_connections=1 ship_files=2 "),
        "{health}"
    );
    let out = common::logmill()
        .args(["status", "--json", "--addr", &server.addr.to_string()])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["_ship"],
        serde_json::json!({"connections": 1, "files_created": 2, "bytes": 12345, "refused": 0})
    );
    let table = common::logmill()
        .args(["status", "--addr", &server.addr.to_string()])
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table
            .contains("shipping (logship): 1 connection open, 2 files created, 12345 bytes stored"),
        "{table}"
    );
    held.finish(b"");
}

#[test]
fn sigterm_stores_what_was_received_and_exits_cleanly() {
    let dir = TempDir::new("ship-sigterm");
    let server = start(&dir.0, &[]);
    let mut open = Open::new(ship_addr(&server), b"open.log\n");
    assert_eq!(open.offset(), 0);
    let data = binary(1 << 20);
    open.stream.write_all(&data).unwrap();
    wait_size(&dir.0.join("ship/open.log"), data.len() as u64);
    assert!(server.stop().success());
    // The receiver closed the connection on its way out; the copy is whole.
    let mut rest = Vec::new();
    open.stream.read_to_end(&mut rest).unwrap();
    wait_copy(&dir.0.join("ship/open.log"), &data);
}

#[test]
fn the_ship_directory_cannot_be_the_record_directory() {
    let dir = TempDir::new("ship-same-dir");
    let out = common::logmill()
        .args([
            "serve",
            "--tcp-only",
            "--port",
            "0",
            "--ship-port",
            "0",
            "--dir",
        ])
        .arg(&dir.0)
        .arg("--ship-dir")
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the ship directory (--ship-dir) cannot be the record directory (--dir)"),
        "{stderr}"
    );
}

/// A full disk under the ship directory: the connection is told why and closed, the copy keeps
/// what was written, the next connection resumes from there, and records are not affected.
#[test]
fn a_full_ship_disk_refuses_with_a_clear_line_and_the_copy_resumes() {
    if tools::require(
        "a_full_ship_disk_refuses_with_a_clear_line_and_the_copy_resumes",
        tools::root(),
    )
    .is_none()
    {
        return;
    }
    let fs =
        common::Tmpfs::mount("1m").expect("mount -t tmpfs failed, though a probe mount worked");
    let dir = TempDir::new("ship-full");
    let ship_dir = fs.path().to_str().unwrap().to_owned();
    let server = start(&dir.0, &["--ship-dir", &ship_dir]);
    let addr = ship_addr(&server);
    let data = binary(3 << 20);
    let mut open = Open::new(addr, b"big.bin\n");
    assert_eq!(open.offset(), 0);
    // The receiver reads (and, once the disk refused, discards) all of it.
    open.stream.write_all(&data).unwrap();
    let line = read_line(&mut open.stream);
    assert!(
        line.starts_with("error: cannot store big.bin: No space left on device"),
        "{line}"
    );
    let kept = std::fs::metadata(fs.path().join("big.bin")).unwrap().len();
    assert!(kept > 0 && kept < data.len() as u64, "{kept}");
    assert_eq!(
        std::fs::read(fs.path().join("big.bin")).unwrap(),
        &data[..kept as usize],
        "what was kept is the file's start"
    );
    assert!(server.health().starts_with("OK "), "records unaffected");
    assert!(server_log(&server).contains("ship: cannot write"));
    drop(open);
    // Room again: the copy resumes where it stopped and completes.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=8m"])
        .arg(fs.path())
        .status()
        .unwrap();
    assert!(grown.success());
    assert_eq!(ship(addr, "big.bin", &data), kept);
    wait_copy(&fs.path().join("big.bin"), &data);
}

/// A transmitter must read the offset before it sends: bytes with the name line, or after it
/// before the answer, are refused, never appended where the transmitter did not choose.
#[test]
fn bytes_before_the_offset_line_are_refused() {
    let dir = TempDir::new("ship-early");
    let server = start(&dir.0, &[]);
    let addr = ship_addr(&server);
    assert_eq!(ship(addr, "early.log", b"kept\n"), 0);
    wait_size(&dir.0.join("ship/early.log"), 5);
    let open = Open::new(addr, b"early.log\nmore bytes\n");
    assert_eq!(
        open.answer,
        "error: data before the offset line: send the name, read the offset, then the file"
    );
    // Nothing was added, and the name is free again.
    assert_eq!(ship(addr, "early.log", b"kept\nthen\n"), 5);
    wait_copy(&dir.0.join("ship/early.log"), b"kept\nthen\n");
}
