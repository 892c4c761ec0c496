//! One TCP port for every client: real, unmodified senders against the real binary.
//!
//! - Python's `logging.handlers.SocketHandler` and `DatagramHandler` (`tests/clients/python_logging.py`).
//! - util-linux `logger`, RFC 5424 and RFC 3164, with and without octet counting, TCP and UDP.
//! - rsyslog forwarding to logmill with `omfwd` over TCP, run in the foreground with its own
//!   config, pid file and work dir (`tests/common/tools.rs` provides `rsyslogd` or says why not).
//! - JSON lines and plain text over raw sockets, with the line limit.

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::Value;

fn python(mode: &str, port: u16) -> Child {
    Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_logging.py"))
        .args([mode, &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test")
}

fn expected(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Per thread, the sequence of (logger, message) pairs.
fn by_thread<'a>(
    records: impl Iterator<Item = &'a Value>,
) -> HashMap<String, Vec<(String, String)>> {
    let mut map: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for r in records {
        map.entry(r["thread"].as_str().unwrap().to_string())
            .or_default()
            .push((
                r["logger"].as_str().unwrap().to_string(),
                r["message"].as_str().unwrap().to_string(),
            ));
    }
    map
}

/// Several threads and loggers through `SocketHandler`, a traceback, `extra=` fields, unicode and
/// embedded newlines: everything arrives, in order per thread, exactly as Python formatted it.
#[test]
fn python_socket_handler() {
    let dir = TempDir::new("py-socket");
    let server = Server::start(&dir.0, &["--format", "json"]);
    let out = python("tcp", server.addr.port())
        .wait_with_output()
        .unwrap();
    assert!(out.status.success());
    let printed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let want = expected(&printed);
    let got = server.wait_json(want.len());
    assert_eq!(got.len(), want.len());
    assert_eq!(by_thread(got.iter()), by_thread(want.iter()));

    let find = |message: &str| {
        got.iter()
            .find(|r| r["message"] == message)
            .unwrap()
            .clone()
    };
    let extra = find("with extra");
    assert_eq!(extra["level"], "error");
    assert_eq!(extra["logger"], "app.misc");
    assert_eq!(extra["fields"]["request_id"], "r-42");
    assert_eq!(extra["fields"]["user"], "ada lovelace");
    assert_eq!(extra["fields"]["attempt"], 3);
    assert!(
        extra["file"]
            .as_str()
            .unwrap()
            .ends_with("python_logging.py")
    );
    assert!(extra["line"].as_u64().unwrap() > 0);
    assert_eq!(extra["function"], "main");
    let failed = find("lookup failed");
    let stack = failed["stack_trace"].as_str().unwrap();
    assert!(
        stack.starts_with("Traceback (most recent call last):\n"),
        "{stack}"
    );
    assert!(stack.ends_with("KeyError: 'missing'"), "{stack}");
    assert_eq!(find("two\nlines\r\nand a tab\there")["level"], "warning");
    assert_eq!(find("unicode: héllo wörld ✓ 日本語 🚀")["level"], "debug");
    assert_eq!(find("last")["level"], "critical");
    // Seconds since the epoch from `created`, to the microsecond.
    assert!(find("last")["time"].as_str().unwrap().starts_with("20"));
    assert!(server.stop().success());
}

/// Records sent before a restart all arrive; after it, SocketHandler reconnects by itself and the
/// rest arrive in order. Python's handler drops what it writes into the dead connection before it
/// notices (at most two records, its own behaviour, not the server's): see the README.
#[test]
fn python_socket_handler_reconnects_after_restart() {
    let dir = TempDir::new("py-restart");
    let server = Server::start(&dir.0, &["--format", "json"]);
    let port = server.addr.port();
    let mut py = python("restart", port);
    let mut stdout = BufReader::new(py.stdout.take().unwrap());
    let mut line = String::new();
    let mut printed = Vec::new();
    loop {
        line.clear();
        stdout.read_line(&mut line).unwrap();
        if line.trim() == "sent" {
            break;
        }
        printed.push(line.trim().to_string());
    }
    server.wait_lines(10);
    assert!(server.stop().success());
    let server = Server::start_on(&dir.0, port, &["--format", "json"]);
    writeln!(py.stdin.as_mut().unwrap(), "go").unwrap();
    printed.extend(stdout.lines().map(Result::unwrap));
    assert!(py.wait().unwrap().success());
    let want = expected(&printed);
    assert_eq!(want.len(), 30);
    let got = wait_for("the last record after the restart", DEADLINE, || {
        let got = server.json_lines();
        got.iter()
            .any(|r| r["message"] == "after restart 19")
            .then_some(got)
    });
    let messages: Vec<&str> = got.iter().map(|r| r["message"].as_str().unwrap()).collect();
    let before: Vec<String> = (0..10).map(|i| format!("before restart {i}")).collect();
    assert_eq!(messages[..10], before);
    let after = &messages[10..];
    let lost = 20 - after.len();
    assert!(lost <= 2, "Python lost {lost} records: {after:?}");
    let expected_after: Vec<String> = (lost..20).map(|i| format!("after restart {i}")).collect();
    assert_eq!(after, expected_after);
    assert_gap_free_json(&got);
    assert!(server.stop().success());
}

fn assert_gap_free_json(records: &[Value]) {
    for pair in records.windows(2) {
        assert_eq!(
            pair[1]["seq"].as_u64().unwrap(),
            pair[0]["seq"].as_u64().unwrap() + 1
        );
    }
}

/// Python's `DatagramHandler` over `--udp-port`.
#[test]
fn python_datagram_handler() {
    let dir = TempDir::new("py-udp");
    let server = Server::start(&dir.0, &["--format", "json", "--udp-port", "0"]);
    let udp = server.udp.expect("no udp address in the listening line");
    let out = python("udp", udp.port()).wait_with_output().unwrap();
    assert!(out.status.success());
    let got = server.wait_json(5);
    let mut messages: Vec<&str> = got.iter().map(|r| r["message"].as_str().unwrap()).collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            "datagram 0",
            "datagram 1",
            "datagram 2",
            "datagram 3",
            "datagram 4"
        ]
    );
    assert!(
        got.iter()
            .all(|r| r["level"] == "warning" && r["logger"] == "app.udp")
    );
    assert!(server.stop().success());
}

fn logger(args: &[&str], message: &str) {
    let status = Command::new("logger")
        .args(args)
        .arg(message)
        .status()
        .expect("util-linux logger is needed for this test");
    assert!(status.success(), "logger {args:?} failed");
}

/// util-linux `logger` over TCP in RFC 5424 and RFC 3164, with and without octet counting, and
/// over UDP: level, facility, host, tag and message land in their fields.
#[test]
fn util_linux_logger() {
    let dir = TempDir::new("logger");
    let server = Server::start(&dir.0, &["--format", "json", "--udp-port", "0"]);
    let port = server.addr.port().to_string();
    let udp_port = server.udp.unwrap().port().to_string();
    let base = [
        "--server",
        "127.0.0.1",
        "--tag",
        "billing",
        "--priority",
        "local3.warning",
    ];
    let variants: [(&str, &[&str]); 5] = [
        ("5424 lf", &["--tcp", "--port", &port, "--rfc5424"]),
        (
            "5424 counted",
            &["--tcp", "--port", &port, "--rfc5424", "--octet-count"],
        ),
        ("3164 lf", &["--tcp", "--port", &port, "--rfc3164"]),
        (
            "3164 counted",
            &["--tcp", "--port", &port, "--rfc3164", "--octet-count"],
        ),
        ("5424 udp", &["--udp", "--port", &udp_port, "--rfc5424"]),
    ];
    for (name, args) in variants {
        let mut all: Vec<&str> = base.to_vec();
        all.extend_from_slice(args);
        logger(&all, &format!("disk almost full ({name})"));
    }
    let got = server.wait_json(variants.len());
    assert_eq!(got.len(), variants.len());
    for (name, _) in variants {
        let r = got
            .iter()
            .find(|r| r["message"] == format!("disk almost full ({name})"))
            .unwrap_or_else(|| panic!("{name} missing: {got:?}"));
        assert_eq!(r["level"], "warning", "{name}: {r}");
        assert_eq!(r["service"], "billing", "{name}: {r}");
        assert_eq!(r["fields"]["facility"], "local3", "{name}: {r}");
        assert!(r.get("parse_error").is_none(), "{name}: {r}");
        assert!(
            r["host"].as_str().is_some_and(|h| !h.is_empty()),
            "{name}: {r}"
        );
    }
    assert!(server.stop().success());
}

/// rsyslog receives from `logger` and forwards to logmill with `omfwd` over TCP, once with
/// octet-counted RFC 5424 and once with classic newline-framed forwarding: both arrive.
#[test]
fn rsyslog_forwards_to_logmill() {
    let Some(rsyslogd) = tools::require("rsyslog_forwards_to_logmill", tools::rsyslogd()) else {
        return;
    };
    let dir = TempDir::new("rsyslog");
    let server = Server::start(&dir.0, &["--format", "json"]);
    let work = TempDir::new("rsyslog-work");
    let in_port = free_port();
    let conf = work.0.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{in_port}" ruleset="forward")
ruleset(name="forward") {{
  action(type="omfwd" target="127.0.0.1" port="{out}" protocol="tcp"
         TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
  action(type="omfwd" target="127.0.0.1" port="{out}" protocol="tcp")
}}
"#,
            work = work.0.display(),
            out = server.addr.port()
        ),
    )
    .unwrap();
    let pid_file = work.0.join("rsyslogd.pid");
    let mut rsyslog = Command::new(rsyslogd)
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(&pid_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("rsyslog listening", DEADLINE, || {
        std::net::TcpStream::connect(("127.0.0.1", in_port)).ok()
    });
    let port = in_port.to_string();
    for i in 0..3 {
        logger(
            &[
                "--tcp",
                "--server",
                "127.0.0.1",
                "--port",
                &port,
                "--tag",
                "fwdapp",
                "--priority",
                "user.err",
            ],
            &format!("via rsyslog {i}"),
        );
    }
    let got = server.wait_json(6);
    let stopped = rsyslog.kill().and_then(|()| rsyslog.wait());
    assert!(stopped.is_ok());
    for i in 0..3 {
        let copies: Vec<&Value> = got
            .iter()
            .filter(|r| r["message"] == format!("via rsyslog {i}"))
            .collect();
        assert_eq!(copies.len(), 2, "message {i}: {got:?}");
        for r in copies {
            assert_eq!(r["level"], "error", "{r}");
            assert_eq!(r["service"], "fwdapp", "{r}");
        }
    }
    assert!(server.stop().success());
}

/// JSON lines: known keys map to record fields, the rest to fields; an invalid line is kept as
/// text flagged parse_error.
#[test]
fn json_lines() {
    let dir = TempDir::new("jsonl");
    let server = Server::start(&dir.0, &["--format", "json"]);
    let mut s = server.connect();
    s.write_all(
        b"{\"level\":\"warn\",\"msg\":\"cache miss\",\"logger\":\"svc.cache\",\"time\":\"2026-01-02T03:04:05.5Z\",\"host\":\"h1\",\"key\":\"k9\",\"n\":7}\n\
          {\"severity\":\"ERROR\",\"message\":\"ms time\",\"timestamp\":1767323045500}\n\
          {not json at all\n",
    )
    .unwrap();
    drop(s);
    let got = server.wait_json(3);
    assert_eq!(got[0]["level"], "warning");
    assert_eq!(got[0]["message"], "cache miss");
    assert_eq!(got[0]["logger"], "svc.cache");
    assert_eq!(got[0]["time"], "2026-01-02T03:04:05.500000Z");
    assert_eq!(got[0]["host"], "h1");
    assert_eq!(got[0]["fields"]["key"], "k9");
    assert_eq!(got[0]["fields"]["n"], 7);
    assert_eq!(got[1]["level"], "error");
    assert_eq!(got[1]["time"], "2026-01-02T03:04:05.500000Z");
    assert_eq!(got[2]["message"], "{not json at all");
    assert_eq!(got[2]["parse_error"], true);
    assert!(server.stop().success());
}

/// Plain text, as `printf 'hello\n' | nc 127.0.0.1 4020` sends it: one record per line at level
/// info; the last line may lack its newline; a line over the limit is cut into pieces flagged
/// truncated, never buffered whole.
#[test]
fn plain_text_lines_and_the_line_limit() {
    let dir = TempDir::new("text-lines");
    let server = Server::start(&dir.0, &["--format", "json", "--max-line", "1KiB"]);
    let mut s = server.connect();
    s.write_all(b"hello\n\nsecond line\r\n").unwrap();
    let long = "x".repeat(2500);
    s.write_all(long.as_bytes()).unwrap();
    s.write_all(b"\nno newline at the end").unwrap();
    drop(s);
    let got = server.wait_json(6);
    let messages: Vec<&str> = got.iter().map(|r| r["message"].as_str().unwrap()).collect();
    assert_eq!(messages[0], "hello");
    assert_eq!(messages[1], "second line");
    assert_eq!(
        messages[2].len() + messages[3].len() + messages[4].len(),
        2500
    );
    assert!(messages[2..5].iter().all(|m| m.len() <= 1024));
    assert!(got[2..5].iter().all(|r| r["truncated"] == true));
    assert_eq!(messages[5], "no newline at the end");
    assert!(got.iter().all(|r| r["level"] == "info"));
    assert!(got[5].get("truncated").is_none());
    assert!(server.stop().success());
}

/// `--max-line` and `--max-frame` are separate settings: a line as long as a frame is stored
/// whole under a small `--max-frame`, and a native frame longer than `--max-line` is accepted.
#[test]
fn the_line_limit_is_its_own_setting() {
    let dir = TempDir::new("line-limit");
    let args = [
        "--format",
        "json",
        "--max-frame",
        "1KiB",
        "--max-line",
        "4KiB",
    ];
    let server = Server::start(&dir.0, &args);
    let mut s = server.connect();
    let long = "y".repeat(3000);
    s.write_all(long.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    drop(s);
    let got = server.wait_json(1);
    assert_eq!(got[0]["message"].as_str().unwrap(), long);
    assert!(got[0].get("truncated").is_none());
    let dir = TempDir::new("frame-limit");
    let server = Server::start(&dir.0, &["--max-frame", "4KiB", "--max-line", "1KiB"]);
    let mut client = server.client();
    client.hello("", true);
    client.send(&[message(&"z".repeat(3000))]);
    let lines = server.wait_lines(1);
    assert!(lines[0].ends_with(&"z".repeat(3000)), "{}", lines[0]);
    assert!(server.stop().success());
}

/// A pickle that would run `os.system` (and one holding a class instance) is refused with a
/// counted error in the server's log; the connection goes on and the next record is stored.
#[test]
fn hostile_pickles_are_refused_and_the_connection_goes_on() {
    let dir = TempDir::new("evil-pickle");
    let server = Server::start(&dir.0, &["--format", "json"]);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pickle");
    let mut stream = server.connect();
    // The good frame first: a connection is detected as pickle by its first frame.
    let good = std::fs::read(fixtures.join("info.pickle")).unwrap();
    stream.write_all(&good).unwrap();
    for evil in ["evil-reduce.bin", "instance-protocol2.bin"] {
        let payload = std::fs::read(fixtures.join(evil)).unwrap();
        stream
            .write_all(&(payload.len() as u32).to_be_bytes())
            .unwrap();
        stream.write_all(&payload).unwrap();
    }
    stream.write_all(&good).unwrap();
    let got = server.wait_json(2);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["message"], got[1]["message"]);
    let log = wait_for("two refusals in the log", DEADLINE, || {
        let log = std::fs::read_to_string(dir.0.join("_server.log")).ok()?;
        (log.matches("pickle of").count() == 2).then_some(log)
    });
    assert!(log.contains("system"), "{log}");
    assert!(log.contains("2 decode errors so far"), "{log}");
    assert!(server.stop().success());
}

/// A third-party gRPC client against the real binary (`--grpc-port 0 --format json`): the
/// client checks its answers and, with `--dir`, the stored files; then SIGTERM is a clean exit.
fn grpc_client_against_the_binary(client: &tools::ClientTool, script: &str) {
    let dir = TempDir::new("grpc-client");
    let mut command = common::logmill();
    command
        .args([
            "serve",
            "--port",
            "0",
            "--grpc-port",
            "0",
            "--format",
            "json",
        ])
        .arg("--dir")
        .arg(&dir.0);
    let server = Server::spawn(command, &dir.0);
    let grpc = server.listening["grpc"]
        .as_str()
        .expect("the listening line names the gRPC address")
        .to_string();
    let status = client
        .command(script)
        .args(["--target", &grpc, "--dir"])
        .arg(&dir.0)
        .status()
        .expect("run the client");
    assert!(status.success(), "{script} failed against the binary");
    let status = server.stop();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

/// The real Python `grpcio` client against the binary.
#[test]
fn python_grpcio_client_against_the_binary() {
    let test = "python_grpcio_client_against_the_binary";
    if let Some(python) = tools::require(test, tools::python_grpc()) {
        grpc_client_against_the_binary(&python, "client.py");
    }
}

/// The real Node `@grpc/grpc-js` client against the binary.
#[test]
fn node_grpc_js_client_against_the_binary() {
    let test = "node_grpc_js_client_against_the_binary";
    if let Some(node) = tools::require(test, tools::node_grpc()) {
        grpc_client_against_the_binary(&node, "client.js");
    }
}
