//! End-to-end start-up: one server per directory (the lock), flag values that cannot work,
//! bind errors that name the right flag, and a failed start that leaves the running server's
//! files alone.

mod common;

use std::io::Read as _;
use std::net::{TcpListener, UdpSocket};
use std::process::{ExitStatus, Stdio};

use common::*;

/// Runs `logmill` with `args` until it exits (bounded: a server that wrongly starts is killed
/// and the test fails), and returns its status and stderr.
fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let mut child = common::logmill()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let status = wait_for("logmill to exit", DEADLINE, || child.try_wait().unwrap());
    let text = reader.join().unwrap().unwrap();
    (status, text)
}

/// Each value that cannot work is refused before anything is created, with exit code 2 and a
/// message that says the minimum.
#[test]
fn flag_values_that_cannot_work_are_refused_with_the_minimum() {
    let dir = TempDir::new("validate");
    let never_created = dir.0.join("never");
    let path = never_created.to_str().unwrap();
    for (args, says) in [
        (
            &["--max-pending", "0"][..],
            "--max-pending 0 cannot work: the minimum is 1048576 bytes (one --max-frame)",
        ),
        (
            &["--max-pending", "1KiB", "--max-frame", "2KiB"],
            "--max-pending 1024 cannot work: the minimum is 2048 bytes (one --max-frame)",
        ),
        (
            &["--workers", "0"],
            "--workers 0 cannot work: the minimum is 1",
        ),
        (
            &["--max-connections", "0"],
            "--max-connections 0 cannot work: the minimum is 1",
        ),
        (
            &["--max-file-size", "0"],
            "--max-file-size 0 cannot work: the minimum is 1 byte",
        ),
        (
            &["--stats-interval", "0"],
            "--stats-interval 0ms cannot work: the minimum is 1s",
        ),
        (&["--max-files", "0"], "0 is not in 1..=1000"),
    ] {
        let mut all = vec!["serve", "--tcp-only", "--port", "0", "--dir", path];
        all.extend_from_slice(args);
        let (status, err) = run_to_exit(&all);
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!never_created.exists(), "a refused start created its --dir");

    // The minimum itself works: one frame of pending memory still stores records.
    let server = Server::start(&dir.0, &["--max-pending", "1KiB", "--max-frame", "1KiB"]);
    let mut client = server.client();
    client.hello("", true);
    let records: Vec<_> = (0..20).map(|i| message(&format!("small {i}"))).collect();
    for record in &records {
        client.send(std::slice::from_ref(record));
    }
    client.wait_ack(20);
    assert_gap_free(&server.lines(), 1);
    assert!(server.stop().success());
}

/// A busy port is reported with the flag that moves it: --port, --grpc-port (or --tcp-only),
/// --udp-port. A start that fails to bind writes no `_server.log`.
#[test]
fn bind_errors_name_the_flag_of_the_busy_port() {
    let dir = TempDir::new("bind");
    let d = dir.0.to_str().unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_tcp = tcp.local_addr().unwrap().port().to_string();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let busy_udp = udp.local_addr().unwrap().port().to_string();

    let (status, err) = run_to_exit(&["--port", &busy_tcp, "--tcp-only", "--dir", d]);
    assert!(!status.success());
    assert!(err.contains("cannot listen on tcp"), "{err}");
    assert!(err.contains("port is in use"), "{err}");
    assert!(err.contains("choose another with --port,"), "{err}");

    let (status, err) = run_to_exit(&["--port", "0", "--grpc-port", &busy_tcp, "--dir", d]);
    assert!(!status.success());
    assert!(err.contains("cannot listen on gRPC"), "{err}");
    assert!(err.contains("choose another with --grpc-port"), "{err}");
    assert!(err.contains("--tcp-only"), "{err}");
    assert!(!err.contains("with --port"), "{err}");

    let (status, err) = run_to_exit(&[
        "--port",
        "0",
        "--tcp-only",
        "--udp-port",
        &busy_udp,
        "--dir",
        d,
    ]);
    assert!(!status.success());
    assert!(err.contains("cannot listen on udp"), "{err}");
    assert!(err.contains("choose another with --udp-port"), "{err}");
    assert!(!err.contains("with --port"), "{err}");

    assert!(
        !dir.0.join("_server.log").exists(),
        "a start that could not bind opened _server.log"
    );
    drop((tcp, udp));
}

/// A second server on a directory, on other ports or on the same port, is refused with the
/// first one's pid and ports, and writes nothing into its `_server.log`; the first keeps
/// working; once it is killed with SIGKILL, a new server starts (the kernel released the lock).
#[test]
fn second_server_on_a_directory_is_refused_naming_the_first() {
    let dir = TempDir::new("lock");
    let d = dir.0.to_str().unwrap();
    let mut first = Server::start(&dir.0, &[]);
    let pid = first.child.id();
    let port = first.addr.port().to_string();
    let server_log = || std::fs::read_to_string(dir.0.join("_server.log")).unwrap();
    let log_before = server_log();

    for ports in [&["--port", "0"][..], &["--port", &port]] {
        let mut args = vec!["serve", "--tcp-only", "--dir", d];
        args.extend_from_slice(ports);
        let (status, err) = run_to_exit(&args);
        assert!(!status.success(), "{ports:?}");
        assert!(err.contains("is in use by another logmill"), "{err}");
        assert!(
            err.contains(&format!("pid {pid}, tcp {}", first.addr)),
            "{ports:?}: {err}"
        );
        assert!(err.contains("--dir"), "{err}");
        assert!(!server_log().contains("in use"), "{}", server_log());
    }
    assert_eq!(
        server_log(),
        log_before,
        "the refused server wrote _server.log"
    );

    // The first is untouched: it still stores, numbered from 1.
    let mut client = first.client();
    client.hello("", true);
    client.send(&[message("one"), message("two")]);
    assert_eq!(client.wait_ack(2), 2);
    assert_gap_free(&first.lines(), 1);

    first.child.kill().unwrap(); // SIGKILL: no clean-up runs
    first.wait_exit();
    drop(client);
    let second = Server::start(&dir.0, &[]);
    let lock = std::fs::read_to_string(dir.0.join("_server.lock")).unwrap();
    assert!(
        lock.contains(&format!("\"pid\":{}", second.child.id())),
        "{lock}"
    );
    let mut client = second.client();
    client.hello("", true);
    client.send(&[message("three")]);
    assert_eq!(client.wait_ack(1), 3);
    assert!(second.stop().success());
}

/// Counts in the server's log agree with their number: `1 event loop`, `2 event loops`.
#[test]
fn start_up_line_counts_event_loops_in_words() {
    for (workers, says) in [("1", "(1 event loop)"), ("2", "(2 event loops)")] {
        let dir = TempDir::new("plural");
        let server = Server::start(&dir.0, &["--workers", workers]);
        let log = std::fs::read_to_string(dir.0.join("_server.log")).unwrap();
        assert!(log.contains(says), "{log}");
        assert!(!log.contains("1 event loops"), "{log}");
        server.health(); // one connection, for the loops' shutdown lines
        assert!(server.stop().success());
        let log = std::fs::read_to_string(dir.0.join("_server.log")).unwrap();
        assert!(log.contains("accepted 1 connection\n"), "{log}");
        assert!(!log.contains(" 1 connections"), "{log}");
    }
}
