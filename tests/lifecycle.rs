//! End-to-end life of the process: SIGTERM with data in flight, a full disk (DEGRADED,
//! backpressure, recovery), and the command line.

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::io::{ErrorKind, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use logmill::protocol::native;

/// Records whose frames were fully sent before SIGTERM are all stored; the server exits 0 in
/// bounded time even with idle connections still open.
#[test]
fn sigterm_with_data_in_flight_loses_nothing() {
    const CONNS: usize = 8;
    const PER_CONN: usize = 2000;
    let dir = TempDir::new("sigterm");
    let server = Server::start(&dir.0, &[]);
    let idle: Vec<_> = (0..20).map(|_| server.connect()).collect();
    let senders: Vec<_> = (0..CONNS)
        .map(|c| {
            let mut stream = server.connect();
            std::thread::spawn(move || {
                for chunk in 0..PER_CONN / 50 {
                    let batch: Vec<_> = (0..50)
                        .map(|i| message(&format!("c{c} n{:05}", chunk * 50 + i)))
                        .collect();
                    let mut out = Vec::new();
                    native::encode_records(&batch, &mut out);
                    stream.write_all(&out).unwrap();
                }
                stream
            })
        })
        .collect();
    let streams: Vec<_> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    let lines = read_lines(&dir.0);
    assert_eq!(lines.len(), CONNS * PER_CONN);
    assert_gap_free(&lines, 1);
    drop((idle, streams));
}

/// Fills the file system holding `path` until it refuses a write.
fn fill(path: &std::path::Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![b'x'; 64 * 1024];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling: {e}"),
        }
    }
    if let Err(e) = f.flush() {
        assert_eq!(e.raw_os_error(), Some(28), "{e}");
    }
}

/// On a full disk the server keeps the records, says DEGRADED, stops reading (the client's
/// sends block instead of the server's memory growing), and writes everything once space
/// returns; no record is lost and the client gets its acks.
#[test]
fn full_disk_degrades_pushes_back_and_recovers() {
    let test = "full_disk_degrades_pushes_back_and_recovers";
    let Some(()) = tools::require(test, tools::root()) else {
        return;
    };
    let fs = Tmpfs::mount("64m").expect("mount -t tmpfs failed, though a probe mount worked");
    // --max-frame within --max-pending, which start-up requires (this test's frames are ~9 KiB).
    let args = [
        "--max-pending",
        "256KiB",
        "--max-frame",
        "64KiB",
        "--fsync",
        "never",
    ];
    // The gRPC port too: its HTTP /healthz and /metrics must answer while the loops are paused.
    let mut command = common::logmill();
    command
        .args(["serve", "--port", "0", "--grpc-port", "0", "--dir"])
        .arg(fs.path())
        .args(args);
    let server = Server::spawn(command, fs.path());
    let http: std::net::SocketAddr = server.listening["grpc"].as_str().unwrap().parse().unwrap();
    let filler = fs.path().join("filler");
    fill(&filler);

    // One stream of frames of 100 records each; sent nonblocking until the server stops reading.
    let mut frames = Vec::new();
    let mut ends = Vec::new(); // byte offset where each frame ends
    for f in 0..20_000 {
        let batch: Vec<_> = (0..100)
            .map(|i| message(&format!("f{f:05} r{i:02} {}", "p".repeat(40))))
            .collect();
        native::encode_records(&batch, &mut frames);
        ends.push(frames.len());
    }
    let mut client = server.client();
    client.hello("", true);
    client.stream.set_nonblocking(true).unwrap();
    let mut sent = 0usize;
    let mut last_progress = Instant::now();
    while last_progress.elapsed() < Duration::from_millis(500) {
        assert!(
            sent < frames.len(),
            "the server never pushed back: it read everything"
        );
        match client.stream.write(&frames[sent..]) {
            Ok(n) => {
                sent += n;
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("send: {e}"),
        }
    }
    // Bounded: what the server took is its pending limit plus socket buffers, not the stream.
    assert!(
        sent < 48 << 20,
        "{sent} bytes taken while the disk was full"
    );
    let health = wait_for("DEGRADED", DEADLINE, || {
        server.try_health().filter(|h| h.starts_with("DEGRADED"))
    });
    assert!(health.contains("pending_bytes="), "{health}");
    // HTTP probes hear it too, while the loops read no records.
    let healthz = http_get(http, "/healthz");
    assert!(healthz.starts_with("HTTP/1.1 503 "), "{healthz}");
    assert!(healthz.ends_with("\r\n\r\nDEGRADED\n"), "{healthz}");
    // An OTLP exporter is told to come back later (503, Retry-After), its records not taken.
    let otlp = http_post_otlp(http, "while degraded");
    assert!(otlp.starts_with("HTTP/1.1 503 "), "{otlp}");
    assert!(otlp.contains("\r\nRetry-After: 5\r\n"), "{otlp}");
    assert!(otlp.contains("DEGRADED"), "{otlp}");
    let metrics = http_get(http, "/metrics");
    assert!(metrics.contains("\nlogmill_degraded 1\n"), "{metrics}");
    assert!(
        !metrics.contains("\nlogmill_disk_errors_total 0\n"),
        "{metrics}"
    );

    // Space comes back: finish the frame that was half sent, then everything must be written.
    std::fs::remove_file(&filler).unwrap();
    client.stream.set_nonblocking(false).unwrap();
    let frame_end = *ends.iter().find(|&&e| e >= sent).unwrap();
    client.send_raw(&frames[sent..frame_end]);
    let records = (ends.iter().position(|&e| e == frame_end).unwrap() + 1) * 100;
    let last_seq = client.wait_ack(records as u64);
    assert_eq!(last_seq, records as u64);
    wait_for("OK again", DEADLINE, || {
        server.try_health().filter(|h| h.starts_with("OK"))
    });
    assert!(http_get(http, "/healthz").ends_with("\r\n\r\nOK\n"));
    let otlp = http_post_otlp(http, "after recovery");
    assert!(otlp.starts_with("HTTP/1.1 200 "), "{otlp}");
    let lines = server.lines();
    assert_eq!(lines.len(), records + 1);
    assert_gap_free(&lines, 1);
    assert!(
        lines[records].contains("after recovery"),
        "{}",
        lines[records]
    );
    assert!(!lines.iter().any(|l| l.contains("while degraded")));
    assert!(server.stop().success());
}

/// One `GET` with `Connection: close`; the whole answer.
fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// One OTLP/HTTP export (JSON, one record saying `message`) with `Connection: close`; the
/// whole answer.
fn http_post_otlp(addr: std::net::SocketAddr, message: &str) -> String {
    use std::io::Read as _;
    let body = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"{message}"}}}}]}}]}}]}}"#
    );
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "POST /v1/logs HTTP/1.1\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn logmill(args: &[&str]) -> std::process::Output {
    common::logmill()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn help_explains_the_flags() {
    let out = logmill(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--port",
        "--grpc-port",
        "--tcp-only",
        "--dir",
        "--max-file-size",
        "--max-files",
        "--format",
        "--fsync",
        "--workers",
        "--max-connections",
        "--max-pending",
        "--max-frame",
        "--idle-timeout",
        "--stdout",
        "--admin-open",
        "--header-timeout",
        "/metrics",
        "bench",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn bad_flags_say_what_to_do() {
    let out = logmill(&["--fsync", "sometimes"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("use never, always or an interval"), "{err}");
    let out = logmill(&["--max-frame", "64MiB"]);
    assert!(String::from_utf8(out.stderr).unwrap().contains("16MiB-1"));
}

/// The seed spellings run as written, and a port in use is reported with what to do.
#[test]
fn seed_flag_spellings_and_port_in_use() {
    let dir = TempDir::new("seed");
    for extra in [
        &["--grpc_port", "0", "--name", "MyLogServer"][..],
        &["--tcp_only"],
        &["--only_tcp"],
    ] {
        // No `serve` subcommand: the seed command lines, exactly.
        let mut command = common::logmill();
        command
            .args(["--port", "0", "--dir"])
            .arg(&dir.0)
            .args(extra);
        let server = Server::spawn(command, &dir.0);
        let grpc = server.listening["grpc"].clone();
        assert!(server.stop().success(), "{extra:?}");
        let serves_grpc = grpc.as_str().is_some_and(|a| !a.ends_with(":0"));
        assert_eq!(serves_grpc, extra[0] == "--grpc_port", "{extra:?}: {grpc}");
    }
    let server = Server::start(&dir.0, &[]);
    let port = server.addr.port().to_string();
    // Another directory: on the same one the directory lock refuses first (tests/startup.rs).
    let other = TempDir::new("seed-other");
    let out = logmill(&[
        "--port",
        &port,
        "--tcp-only",
        "--dir",
        other.0.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("port is in use"), "{err}");
    assert!(server.stop().success());
}

/// The server logs a stats line on its interval (60 s by default; 1 s here).
#[test]
fn stats_line_in_the_server_log() {
    let dir = TempDir::new("stats");
    let server = Server::start(&dir.0, &["--stats-interval", "1s"]);
    let mut client = server.client();
    client.hello("", true);
    client.send(&[message("counted")]);
    client.wait_ack(1);
    let line = wait_for("a stats line", DEADLINE, || {
        let log = std::fs::read_to_string(dir.0.join("_server.log")).ok()?;
        log.lines()
            .find(|l| l.contains("stats:"))
            .map(str::to_string)
    });
    // "connection" and "pending byte": the count may be 1 (this test's client).
    for part in ["records/s", "bytes/s", "connection", "pending byte"] {
        assert!(line.contains(part), "{line}");
    }
    assert!(server.stop().success());
}

/// At start-up the soft open-files limit is raised to the hard limit.
#[test]
fn open_files_limit_is_raised() {
    let dir = TempDir::new("nofile");
    let mut command = Command::new("sh");
    command.env("LOGMILL_SHIP_PORT", "0").arg("-c").arg(format!(
        "ulimit -Sn 256 && exec {} --port 0 --tcp-only --dir {}",
        env!("CARGO_BIN_EXE_logmill"),
        dir.0.display()
    ));
    let server = Server::spawn(command, &dir.0);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let row = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = row.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft limit not raised: {row}");
    assert_ne!(numbers[0], "256", "{row}");
    assert!(server.stop().success());
}
