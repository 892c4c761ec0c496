//! The server `logmill bench` starts when no `--addr` is given: this executable run as `serve`
//! on free ports with a fresh directory, its listening line read, its stdout drained, and at the
//! end a clean stop (SIGTERM) with the warnings it logged echoed. What it costs (CPU, memory) is
//! read from `/proc` by `usage.rs`.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::error::{BenchError, setup};

/// How long a spawned server may take to stop after SIGTERM. Its own `--shutdown-timeout`
/// defaults to 10 s; past three times that it is stuck, and is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A `logmill serve` child process, its temp directory and its address. Dropping it without
/// [`SpawnedServer::stop`] kills it and keeps its files.
pub struct SpawnedServer {
    child: Child,
    /// `<temp>/logmill-bench-<pid>-<nanos>`: `data/` is the server's --dir, `server.stderr` its
    /// standard error (its log).
    base: PathBuf,
    /// Where it listens (the listening line's `tcp`).
    addr: SocketAddr,
    /// Its gRPC port (the listening line's `grpc`), when started for `--proto grpc`.
    grpc_addr: Option<SocketAddr>,
    /// Drains the server's standard output.
    reader: Option<JoinHandle<()>>,
    /// Disconnected when the reader reaches the end of the server's standard output, which is
    /// when the server exits: a wait for the exit with a deadline, without polling.
    stdout_closed: Option<mpsc::Receiver<io::Result<String>>>,
    stopped: bool,
}

impl SpawnedServer {
    /// Starts this executable as `serve --port 0 --tcp-only --fsync never --dir <fresh dir>`
    /// plus `extra`, and waits for its listening line. With `grpc`, `--grpc-port 0` replaces
    /// `--tcp-only`.
    pub fn start(
        extra: &str,
        grpc: bool,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<SpawnedServer, BenchError> {
        let exe = std::env::current_exe().map_err(setup("cannot find the logmill executable"))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let base =
            std::env::temp_dir().join(format!("logmill-bench-{}-{nanos}", std::process::id()));
        fs::create_dir(&base).map_err(|source| BenchError::Setup {
            what: format!("cannot create {}", base.display()),
            source,
        })?;
        let stderr =
            fs::File::create(base.join("server.stderr")).map_err(|source| BenchError::Setup {
                what: format!("cannot create {}", base.join("server.stderr").display()),
                source,
            })?;
        let ports: &[&str] = if grpc {
            &["--grpc-port", "0"]
        } else {
            &["--tcp-only"]
        };
        let mut child = Command::new(&exe)
            .args(["serve", "--port", "0"])
            .args(ports)
            // No logship receiver: the bench needs none, and 7447 may be a running server's.
            .args(["--no-ship", "--fsync", "never", "--dir"])
            .arg(base.join("data"))
            .args(extra.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| BenchError::ServerStart(format!("cannot run {}: {e}", exe.display())))?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        let reader = thread::Builder::new()
            .name("logmill-bench-stdout".into())
            .spawn(move || drain_stdout(stdout, &tx));
        let mut server = SpawnedServer {
            child,
            base,
            // Replaced by the listening line's address below.
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            grpc_addr: None,
            reader: None,
            stdout_closed: None,
            stopped: false,
        };
        match reader {
            Ok(reader) => server.reader = Some(reader),
            Err(e) => {
                server.discard();
                return Err(setup("cannot start a thread")(e));
            }
        }
        let listening = server
            .wait_listening(&rx, deadline, timeout)
            .and_then(|line| {
                let tcp = parse_listening(&line, "tcp")?;
                let grpc_addr = if grpc {
                    Some(parse_listening(&line, "grpc")?)
                } else {
                    None
                };
                Ok((tcp, grpc_addr))
            });
        match listening {
            Ok((addr, grpc_addr)) => {
                server.addr = addr;
                server.grpc_addr = grpc_addr;
                server.stdout_closed = Some(rx);
                Ok(server)
            }
            Err(e) => {
                // The error holds the end of its stderr: nothing else is worth keeping.
                server.discard();
                Err(e)
            }
        }
    }

    /// Waits for the listening line and returns it.
    fn wait_listening(
        &mut self,
        rx: &mpsc::Receiver<io::Result<String>>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<String, BenchError> {
        let wait = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(wait) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                return Err(BenchError::ServerStart(format!(
                    "cannot read its standard output: {e}"
                )));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(BenchError::ServerStart(format!(
                    "no listening line within --timeout {timeout:?}{}",
                    self.stderr_tail()
                )));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(BenchError::ServerStart(
                    "its standard output could not be read".into(),
                ));
            }
        };
        if line.is_empty() {
            let status = self
                .child
                .wait()
                .map_or_else(|e| format!("unknown status: {e}"), |s| s.to_string());
            return Err(BenchError::ServerStart(format!(
                "it exited ({status}) before listening{}",
                self.stderr_tail()
            )));
        }
        Ok(line)
    }

    /// Its process id, as `/proc` and `kill` spell it.
    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Where it listens for the native protocol (the listening line's `tcp`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its gRPC port, when started for `--proto grpc`.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// Its `--dir`.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.base.join("data")
    }

    /// The directory holding its `data/` and `server.stderr`.
    pub fn base(&self) -> &std::path::Path {
        &self.base
    }

    /// Sends SIGTERM and waits for a clean exit, killing the server if it does not come. Prints
    /// the warnings and errors it logged. Deletes its directory unless `keep_files` or the stop
    /// failed.
    ///
    /// # Errors
    /// [`BenchError::ServerStop`] when `kill` fails, the server exits with a failure, or it does
    /// not exit within [`STOP_TIMEOUT`].
    pub fn stop(&mut self, keep_files: bool) -> Result<(), BenchError> {
        self.stopped = true;
        let outcome = self.terminate();
        if outcome.is_err() {
            self.kill();
        }
        self.join_reader();
        self.print_warnings();
        if outcome.is_ok() && !keep_files {
            if let Err(e) = fs::remove_dir_all(&self.base) {
                eprintln!(
                    "logmill bench: cannot delete {}: {e}; delete it by hand",
                    self.base.display()
                );
            }
        } else {
            eprintln!(
                "logmill bench: the server's files and stderr are kept in {}",
                self.base.display()
            );
        }
        outcome
    }

    fn terminate(&mut self) -> Result<(), BenchError> {
        let pid = self.pid();
        // std can only send SIGKILL, which would not show whether the server stops cleanly.
        let kill = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| BenchError::ServerStop(format!("cannot run `kill -TERM {pid}`: {e}")))?;
        if !kill.success() {
            return Err(BenchError::ServerStop(format!(
                "`kill -TERM {pid}` failed ({kill})"
            )));
        }
        // std has no wait with a time limit; the end of the server's stdout is its exit.
        if let Some(closed) = &self.stdout_closed
            && let Err(mpsc::RecvTimeoutError::Timeout) = closed.recv_timeout(STOP_TIMEOUT)
        {
            return Err(BenchError::ServerStop(format!(
                "it was still running {} s after SIGTERM, and was killed",
                STOP_TIMEOUT.as_secs()
            )));
        }
        match self.child.wait() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(BenchError::ServerStop(format!(
                "it exited with {status} after SIGTERM"
            ))),
            Err(e) => Err(BenchError::ServerStop(format!("cannot wait for it: {e}"))),
        }
    }

    /// Kills the server and deletes its directory: for a start that failed, whose error
    /// already holds what the server said.
    fn discard(&mut self) {
        self.stopped = true;
        self.kill();
        self.join_reader();
        if let Err(e) = fs::remove_dir_all(&self.base) {
            eprintln!(
                "logmill bench: cannot delete {}: {e}; delete it by hand",
                self.base.display()
            );
        }
    }

    fn kill(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("logmill bench: cannot kill the server: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("logmill bench: cannot wait for the server: {e}");
        }
    }

    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take()
            && reader.join().is_err()
        {
            eprintln!("logmill bench: the thread reading the server's output panicked");
        }
    }

    fn stderr_text(&self) -> String {
        fs::read_to_string(self.base.join("server.stderr")).unwrap_or_default()
    }

    /// The last lines of the server's stderr, to explain a failed start.
    fn stderr_tail(&self) -> String {
        let text = self.stderr_text();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(20)..];
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with:\n{}", tail.join("\n"))
        }
    }

    /// Echoes the warnings and errors the server logged: a figure means little if the server
    /// complained while producing it.
    fn print_warnings(&self) {
        let text = self.stderr_text();
        let complaints: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" WARNING ") || l.contains(" ERROR "))
            .collect();
        if complaints.is_empty() {
            return;
        }
        eprintln!(
            "logmill bench: the server logged {} warnings or errors:",
            complaints.len()
        );
        for line in complaints.iter().take(20) {
            eprintln!("  {line}");
        }
        if complaints.len() > 20 {
            eprintln!(
                "  ... (all in {})",
                self.base.join("server.stderr").display()
            );
        }
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        if !self.stopped {
            self.kill();
            self.join_reader();
            eprintln!(
                "logmill bench: killed the server; its files and stderr are kept in {}",
                self.base.display()
            );
        }
    }
}

/// Sends the server's first stdout line (empty if it closed stdout first) to `tx`, then reads
/// and drops the rest until the server exits, so a server run with `--stdout` never blocks.
fn drain_stdout(stdout: Option<ChildStdout>, tx: &mpsc::Sender<io::Result<String>>) {
    // Without a pipe there is no line: dropping `tx` tells the receiver so.
    let Some(stdout) = stdout else { return };
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let first = reader.read_line(&mut line).map(|_| line);
    if tx.send(first).is_err() {
        return;
    }
    if let Err(e) = io::copy(&mut reader, &mut io::sink()) {
        eprintln!("logmill bench: cannot read the server's standard output: {e}");
    }
}

/// Reads the server's address `key` (`tcp` or `grpc`) from its listening line,
/// `{"event":"listening","grpc":null,"tcp":"127.0.0.1:41819"}`. An unspecified address
/// (`0.0.0.0`, `::`) becomes the loopback address of its family.
///
/// # Errors
/// [`BenchError::ServerStart`] saying what is wrong with the line.
fn parse_listening(line: &str, key: &str) -> Result<SocketAddr, BenchError> {
    parse_listening_text(line, key).map_err(BenchError::ServerStart)
}

fn parse_listening_text(line: &str, key: &str) -> Result<SocketAddr, String> {
    let value: serde_json::Value = serde_json::from_str(line.trim())
        .map_err(|e| format!("its first line is not JSON ({e}): {}", line.trim()))?;
    if value.get("event").and_then(serde_json::Value::as_str) != Some("listening") {
        return Err(format!(
            "its first line is not the listening line: {}",
            line.trim()
        ));
    }
    let text = value
        .get(key)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("its listening line has no {key} address: {}", line.trim()))?;
    let mut addr: SocketAddr = text
        .parse()
        .map_err(|e| format!("its {key} address `{text}` is not HOST:PORT ({e})"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line() {
        let line = "{\"event\":\"listening\",\"grpc\":null,\"tcp\":\"127.0.0.1:41819\"}\n";
        assert_eq!(
            parse_listening_text(line, "tcp"),
            Ok("127.0.0.1:41819".parse().unwrap())
        );
        assert_eq!(
            parse_listening_text("{\"event\":\"listening\",\"tcp\":\"0.0.0.0:5000\"}", "tcp"),
            Ok("127.0.0.1:5000".parse().unwrap())
        );
        assert_eq!(
            parse_listening_text("{\"event\":\"listening\",\"tcp\":\"[::]:5000\"}", "tcp"),
            Ok("[::1]:5000".parse().unwrap())
        );
        assert!(parse_listening_text("2024-01-01 INFO listening", "tcp").is_err());
        let both = "{\"event\":\"listening\",\"grpc\":\"127.0.0.1:4021\",\"tcp\":\"127.0.0.1:1\"}";
        assert_eq!(
            parse_listening_text(both, "grpc"),
            Ok("127.0.0.1:4021".parse().unwrap())
        );
        assert!(parse_listening_text(line, "grpc").is_err(), "grpc is null");
        assert!(parse_listening_text("{\"event\":\"listening\",\"tcp\":null}", "tcp").is_err());
        assert!(
            parse_listening_text("{\"event\":\"stopped\",\"tcp\":\"127.0.0.1:1\"}", "tcp").is_err()
        );
        assert!(
            parse_listening_text("{\"event\":\"listening\",\"tcp\":\"nowhere\"}", "tcp").is_err()
        );
    }
}
