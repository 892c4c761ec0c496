//! `logmill health` and `logmill send`, the client commands the README's "Try it" uses instead
//! of `nc`: run as a user would, through the real binary, against a real server (see `common`).

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `logmill ARGS...` with stdout and stderr captured.
fn logmill(args: &[&str]) -> Child {
    common::logmill()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start logmill")
}

/// What a finished command left: exit status, stdout, stderr.
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Waits (bounded) for `child` to exit and collects its output, which is a line or two, so it
/// fits the pipes while the child runs.
fn finish(mut child: Child) -> Output {
    let status = wait_for("the command to exit", DEADLINE, || {
        child.try_wait().unwrap()
    });
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

#[test]
fn health_prints_the_servers_line() {
    let dir = TempDir::new("cli-health");
    let server = Server::start(&dir.0, &["--name", "Tried"]);
    let out = finish(logmill(&["health", "--addr", &server.addr.to_string()]));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.starts_with("OK name=Tried version="),
        "{:?}",
        out.stdout
    );
    assert_eq!(out.stdout.lines().count(), 1);
    assert!(server.stop().success());
}

/// The race of a pasted block: `health --wait` is started before the server. It is first
/// answered by a socket that closes without a word (as a server does while it shuts down), then
/// refused, and succeeds once the real server listens on the port.
#[test]
fn health_wait_retries_until_the_server_listens() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let child = logmill(&["health", "--addr", &addr, "--wait", "30s"]);
    // Its first try reaches this listener, which hangs up: no answer yet, so it must try again.
    let (first_try, _) = listener.accept().unwrap();
    drop(first_try);
    drop(listener);

    let dir = TempDir::new("cli-wait");
    let server = Server::start_on(&dir.0, port, &[]);
    let out = finish(child);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.starts_with("OK name=LogServer "),
        "{:?}",
        out.stdout
    );
    assert!(server.stop().success());
}

/// No server ever appears: `health --wait` gives up at its deadline, not before and not much
/// after, exits non-zero and says what it tried.
#[test]
fn health_wait_gives_up_at_the_deadline_with_a_clear_message() {
    let addr = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = finish(logmill(&["health", "--addr", &addr, "--wait", "1500ms"]));
    let took = started.elapsed();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "logmill health: no logmill answered at {addr} within 1.5s"
        )) && out.stderr.contains("refused"),
        "{:?}",
        out.stderr
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "took {took:?}"
    );

    // Without --wait: one try, at once.
    let out = finish(logmill(&["health", "--addr", &addr]));
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains(&format!("logmill health: no answer from {addr}: ")),
        "{:?}",
        out.stderr
    );
}

/// Something that is not logmill on the port: said so, not taken for a health line.
#[test]
fn health_names_a_stranger_on_the_port() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let child = logmill(&["health", "--addr", &addr]);
    let (mut stranger, _) = listener.accept().unwrap();
    let mut request = [0u8; 7];
    stranger.read_exact(&mut request).unwrap();
    assert_eq!(&request, b"health\n");
    std::io::Write::write_all(&mut stranger, b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
    drop(stranger);
    let out = finish(child);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("which is not a logmill health line"),
        "{:?}",
        out.stderr
    );
}

#[test]
fn send_stores_one_record_and_prints_its_sequence_number() {
    let dir = TempDir::new("cli-send");
    let server = Server::start(&dir.0, &[]);
    let addr = server.addr.to_string();
    let out = finish(logmill(&[
        "send", "--addr", &addr, "--level", "warning", "--app", "try", "--logger", "shell", "disk",
        "almost", "full",
    ]));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "1\n");
    // The ack came after the write: the line is on disk already, no waiting needed. Without a
    // token the app is only shown: the record is in <dir>/_main.log (--auth optional).
    let lines = read_lines(&dir.0);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].ends_with(" WARNING 1 try/127.0.0.1 shell disk almost full"),
        "{}",
        lines[0]
    );

    let out = finish(logmill(&["send", "--addr", &addr, "second"]));
    assert_eq!(out.stdout, "2\n", "{}", out.stderr);
    assert!(server.wait_lines(2)[1].ends_with(" INFO 2 - - second"));
    assert!(server.stop().success());
}

#[test]
fn send_refuses_an_unknown_level_and_a_missing_server() {
    let out = finish(logmill(&["send", "--level", "loud", "hello"]));
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("unknown level `loud`"),
        "{}",
        out.stderr
    );

    let addr = format!("127.0.0.1:{}", free_port());
    let out = finish(logmill(&["send", "--addr", &addr, "hello"]));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr
            .contains(&format!("logmill send: no answer from {addr}: ")),
        "{}",
        out.stderr
    );
}
