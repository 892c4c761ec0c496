//! The Python client (`clients/python`, the `logmill` package) against the real binary, over
//! loopback, checked on disk (`--format json`). Each test runs one mode of
//! `clients/python/tests/scenarios.py`, which prints its result as a JSON line:
//!
//! - its hand-written frame encoder gives the Rust encoder's bytes, and it reads the server's
//!   frames as the Rust decoder does;
//! - records, levels, string and JSON bodies, fields, app and instance arrive, through the client
//!   and through its `logging.Handler` (`extra=` fields, an exception's traceback);
//! - the server stopped mid-stream (SIGKILL, and SIGTERM) and started again on the same port and
//!   directory: every record is stored, none acked is lost, duplicates only in the resent window;
//! - the server down: records go to the spool, and a later process replays them in order;
//! - the spool's bound holds, the oldest records dropped, counted and warned about;
//! - a program that exits without closing the client loses nothing (the atexit hook flushes);
//! - a refused token is an exception in the caller, not a silent reconnect loop.
//!
//! The package uses only Python's standard library, so `python3` with `PYTHONPATH` pointing at
//! `clients/python` is the whole environment.

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{
    Server, TempDir, free_port, issue_token, json_lines_of as json_lines, read_lines, wait_for,
};
use logmill::protocol::native::{self, ErrorKind, Hello, ServerFrame};
use logmill::record::{Body, Level, Record, Value};
use serde_json::{Value as Json, json};

/// Longer than any wait inside the scenarios (at most 60 s for acks after a restart).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(90);

fn python(test: &str) -> Option<PathBuf> {
    tools::require(test, tools::python3())
}

/// A running `scenarios.py MODE ARGS`, killed if the test gives up on it.
struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Script {
    fn start(python: &Path, args: &[&str]) -> Script {
        let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
        let mut child = Command::new(python)
            .arg(package.join("tests/scenarios.py"))
            .args(args)
            .env("PYTHONPATH", &package)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python3");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = Some(std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).expect("stderr");
            text
        }));
        Script {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    /// The next line the script prints.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(SCRIPT_DEADLINE)
            .expect("the script printed nothing in time")
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").expect("write to the script");
        stdin.flush().unwrap();
    }

    /// Waits for the script's end; its last line (JSON) and its stderr.
    fn finish(mut self) -> (Json, String) {
        let mut last = None;
        while let Ok(line) = self.lines.recv_timeout(SCRIPT_DEADLINE) {
            last = Some(line);
        }
        let status = wait_for("the script's exit", SCRIPT_DEADLINE, || {
            self.child.try_wait().unwrap()
        });
        let stderr = self.stderr.take().unwrap().join().unwrap();
        assert!(status.success(), "the script failed ({status}):\n{stderr}");
        let last = last.unwrap_or_else(|| panic!("no result line; stderr:\n{stderr}"));
        let result = serde_json::from_str(&last)
            .unwrap_or_else(|e| panic!("bad result line {last:?}: {e}\n{stderr}"));
        (result, stderr)
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none()
            && let Err(e) = self.child.kill().and_then(|()| self.child.wait().map(drop))
        {
            eprintln!("could not stop the script: {e}");
        }
    }
}

fn start(dir: &Path) -> Server {
    Server::start(dir, &["--format", "json"])
}

/// Messages of the stored lines, in file order.
fn messages(dir: &Path) -> Vec<String> {
    json_lines(dir)
        .iter()
        .map(|v| v["message"].as_str().unwrap().to_owned())
        .collect()
}

fn wire_level(level: Level) -> u64 {
    level as u64 + 1
}

#[test]
fn python_frames_match_the_rust_encoder() {
    let Some(python) = python("python_frames_match_the_rust_encoder") else {
        return;
    };
    let full = Record {
        timestamp_ns: 1_700_000_000_123_456_789,
        level: Level::Warning,
        body: Body::Message("disk almost full".into()),
        logger: "app.disk".into(),
        host: "web-1".into(),
        service: "billing".into(),
        module: "disk".into(),
        file: "/srv/app/disk.py".into(),
        line: 42,
        function: "check".into(),
        process_id: 7,
        process_name: "MainProcess".into(),
        thread_id: u64::MAX - 1,
        thread_name: "worker-1".into(),
        stack_trace: "Traceback (most recent call last):\n  ...".into(),
        fields: vec![
            ("mount".into(), Value::Str("/var".into())),
            ("".into(), Value::Str("".into())),
            ("eight ch".into(), Value::Str("ünïcødé ✓".into())),
        ],
        ..Record::default()
    };
    let json_body = Record {
        level: Level::Emergency,
        body: Body::Json(r#"{"a":[1,2],"b":"x"}"#.into()),
        ..Record::default()
    };
    let empty = Record {
        level: Level::Trace,
        body: Body::Message("".into()),
        ..Record::default()
    };
    let batch: Vec<Record<'static>> = (0..40)
        .map(|i| Record {
            level: [Level::Debug, Level::Info, Level::Notice, Level::Error][i % 4],
            body: Body::Message("x".repeat(i).into()),
            logger: if i % 3 == 0 { "l".into() } else { "".into() },
            // Texts set and unset in changing patterns: each pattern is a "site" the Python
            // encoder lays out once per batch, with null pointers for the unset ones.
            module: if i % 5 == 0 { "".into() } else { "mod".into() },
            thread_name: if i % 2 == 0 {
                "t".repeat(i % 11).into()
            } else {
                "".into()
            },
            fields: (0..i % 3)
                .map(|j| {
                    (
                        Cow::Owned(format!("k{j}")),
                        Value::Str("v".repeat(i).into()),
                    )
                })
                .collect(),
            ..Record::default()
        })
        .collect();
    let cases = [
        ("full", vec![full.clone()]),
        ("json body", vec![json_body.clone()]),
        ("empty", vec![empty.clone()]),
        ("batch of three", vec![full, json_body, empty]),
        ("batch of forty", batch),
    ];
    let records: Vec<Json> = cases
        .iter()
        .map(|(name, records)| {
            let mut bytes = Vec::new();
            native::encode_records(records, &mut bytes);
            let described: Vec<Json> = records.iter().map(describe).collect();
            json!({"name": name, "records": described, "hex": hex(&bytes)})
        })
        .collect();
    let hellos: Vec<Json> = [("shop", "py-1", "tok.en.x", true), ("", "", "", false)]
        .iter()
        .map(|&(app, instance, token, want_acks)| {
            let mut bytes = Vec::new();
            native::encode_hello(
                &Hello {
                    app: app.into(),
                    instance: instance.into(),
                    token: token.into(),
                    want_acks,
                },
                &mut bytes,
            );
            json!({"app": app, "instance": instance, "token": token, "want_acks": want_acks,
                   "hex": hex(&bytes)})
        })
        .collect();
    let server_frames: Vec<Json> = [
        ServerFrame::Ack {
            count: 1 << 40,
            last_seq: 99,
        },
        ServerFrame::Error {
            kind: Some(ErrorKind::Unauthorized),
            message: "token refused: revoked".into(),
        },
        ServerFrame::Welcome {
            server: "LogServer".into(),
            version: "0.1.0".into(),
            max_frame: 1 << 20,
        },
    ]
    .iter()
    .map(|frame| {
        let mut bytes = Vec::new();
        native::encode_server_frame(frame, &mut bytes);
        json!(hex(&bytes))
    })
    .collect();
    let dir = TempDir::new("py-wire");
    let path = dir.0.join("cases.json");
    let cases = json!({"records": records, "hellos": hellos, "server_frames": server_frames});
    std::fs::write(&path, cases.to_string()).unwrap();
    let (result, _) = Script::start(&python, &["wire", path.to_str().unwrap()]).finish();
    assert_eq!(
        result["mismatches"],
        json!([]),
        "Python and Rust frames differ"
    );
    assert_eq!(
        result["server_frames"],
        json!([
            "Ack(count=1099511627776, last_seq=99)",
            "ServerError('unauthorized', 'token refused: revoked')",
            "Welcome('LogServer', '0.1.0', max_frame=1048576)"
        ])
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn describe(r: &Record<'_>) -> Json {
    let (body, is_json) = match &r.body {
        Body::Message(m) => (m.as_ref(), false),
        Body::Json(j) => (j.as_ref(), true),
    };
    let fields: Vec<Json> = r
        .fields
        .iter()
        .map(|(k, v)| json!([k.as_ref(), v.text().as_ref()]))
        .collect();
    json!({
        "timestamp_ns": r.timestamp_ns, "level": wire_level(r.level), "json": is_json,
        "body": body, "logger": r.logger, "host": r.host, "service": r.service,
        "module": r.module, "file": r.file, "line": r.line, "function": r.function,
        "process_id": r.process_id, "process_name": r.process_name, "thread_id": r.thread_id,
        "thread_name": r.thread_name, "stack_trace": r.stack_trace, "fields": fields,
    })
}

#[test]
fn python_client_records_arrive() {
    let Some(python) = python("python_client_records_arrive") else {
        return;
    };
    let dir = TempDir::new("py-records");
    let server = start(&dir.0);
    let token = issue_token(&dir.0, "shop");
    let addr = server.addr.to_string();
    let (result, stderr) = Script::start(&python, &["records", &addr, &token]).finish();
    assert_eq!(result["ok"], true, "not all acked: {result}\n{stderr}");
    // Acked means written: the lines are there without waiting.
    let lines = json_lines(&dir.0.join("shop"));
    assert_eq!(lines.len(), 16, "{lines:#?}");
    for line in &lines {
        assert_eq!(line["app"], "shop");
        assert_eq!(line["instance"], "py-1");
    }
    let levels = [
        "trace",
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ];
    for (line, level) in lines.iter().zip(levels) {
        assert_eq!(line["level"], level);
        assert_eq!(line["message"], format!("level {level}"));
        assert_eq!(line["logger"], "levels");
    }
    assert_eq!(
        lines[9]["json"],
        json!({"order": "A-17", "items": [1, 2], "paid": true})
    );
    assert_eq!(
        lines[10]["fields"],
        json!({"request_id": "r-42", "n": "3", "ok": "true", "tag": "null"})
    );
    assert_eq!(lines[11]["message"], "héllo wörld ✓");
    // Through logging.Handler.
    assert_eq!(lines[12]["level"], "debug");
    assert_eq!(lines[12]["message"], "debug formatted");
    assert_eq!(lines[12]["logger"], "app.handler");
    assert_eq!(lines[13]["level"], "warning");
    assert_eq!(lines[13]["message"], "disk /var almost full");
    assert_eq!(
        lines[13]["fields"],
        json!({"request_id": "r-43", "attempt": "2"})
    );
    assert_eq!(lines[13]["function"], "records");
    assert!(
        lines[13]["file"]
            .as_str()
            .unwrap()
            .ends_with("scenarios.py")
    );
    assert_eq!(lines[14]["level"], "error");
    assert_eq!(lines[14]["message"], "lookup failed");
    let stack = lines[14]["stack_trace"].as_str().unwrap();
    assert!(
        stack.starts_with("Traceback (most recent call last):") && stack.contains("KeyError"),
        "{stack}"
    );
    assert_eq!(lines[15]["message"], "after the exception");
}

/// The server stopped with `signal` while records flow, then started again on the same port:
/// every record is stored, in order once duplicates are set aside, and duplicates are no more
/// than what the client resent (its unacked window).
fn restart_mid_stream(test: &str, signal: &str) {
    let Some(python) = python(test) else {
        return;
    };
    const N: usize = 20_000;
    let dir = TempDir::new("py-restart");
    let server = start(&dir.0);
    let port = server.addr.port();
    let mut script = Script::start(
        &python,
        &["restart", &server.addr.to_string(), &N.to_string()],
    );
    assert_eq!(script.line(), "half");
    // Some of the first half stored, and (most likely) some still in flight.
    server.wait_lines(1);
    server.signal(signal);
    let mut server = server;
    server.wait_exit();
    // The second half goes into the dead connection and the backoff.
    script.say("go");
    let _server = Server::start_on(&dir.0, port, &["--format", "json"]);
    let (result, stderr) = script.finish();
    assert_eq!(result["ok"], true, "not all acked: {result}\n{stderr}");
    let stored = messages(&dir.0);
    let mut seen = HashSet::new();
    let firsts: Vec<&String> = stored.iter().filter(|m| seen.insert(*m)).collect();
    let expected: Vec<String> = (0..N).map(|i| format!("r{i}")).collect();
    assert!(
        firsts.iter().copied().eq(expected.iter()),
        "records missing or out of order"
    );
    let duplicates = (stored.len() - N) as u64;
    let resent = result["stats"]["resent"].as_u64().unwrap_or(0);
    assert!(
        duplicates <= resent,
        "{duplicates} duplicates, but only {resent} records were resent"
    );
    assert!(result["stats"]["reconnects"].as_u64().unwrap() >= 1);
}

#[test]
fn python_client_resends_after_a_killed_server() {
    restart_mid_stream("python_client_resends_after_a_killed_server", "KILL");
}

#[test]
fn python_client_resends_after_a_stopped_server() {
    restart_mid_stream("python_client_resends_after_a_stopped_server", "TERM");
}

#[test]
fn python_client_spools_while_the_server_is_down_and_replays_in_order() {
    let Some(python) = python("python_client_spools_while_the_server_is_down_and_replays_in_order")
    else {
        return;
    };
    const N: usize = 5_000;
    let dir = TempDir::new("py-spool");
    let spool = dir.0.join("spool");
    let data = dir.0.join("data");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let spool_arg = spool.to_str().unwrap();
    let (written, stderr) = Script::start(
        &python,
        &["spool_write", &addr, spool_arg, &N.to_string(), "67108864"],
    )
    .finish();
    assert_eq!(written["ok"], false, "{written}");
    assert_eq!(written["stats"]["spooled"], N, "{written}\n{stderr}");
    assert!(written["files"].as_u64().unwrap() >= 1);
    std::fs::create_dir_all(&data).unwrap();
    let _server = Server::start_on(&data, port, &["--format", "json"]);
    let (replayed, stderr) = Script::start(&python, &["spool_replay", &addr, spool_arg]).finish();
    assert_eq!(replayed["ok"], true, "{replayed}\n{stderr}");
    assert_eq!(
        replayed["left"],
        json!([]),
        "the spool is emptied once acked"
    );
    let expected: Vec<String> = (0..N).map(|i| format!("s{i} {}", "x".repeat(40))).collect();
    assert_eq!(messages(&data), expected);
}

#[test]
fn python_client_spool_bound_drops_the_oldest() {
    let Some(python) = python("python_client_spool_bound_drops_the_oldest") else {
        return;
    };
    const N: usize = 5_000;
    const BOUND: u64 = 64 * 1024;
    let dir = TempDir::new("py-spool-bound");
    let spool = dir.0.join("spool");
    let data = dir.0.join("data");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let spool_arg = spool.to_str().unwrap();
    let (written, stderr) = Script::start(
        &python,
        &[
            "spool_write",
            &addr,
            spool_arg,
            &N.to_string(),
            &BOUND.to_string(),
        ],
    )
    .finish();
    let dropped = written["stats"]["spool_dropped"].as_u64().unwrap();
    assert!(dropped > 0, "{written}");
    assert!(written["bytes"].as_u64().unwrap() <= BOUND, "{written}");
    assert!(
        stderr.contains("is at its bound") && stderr.contains("dropped"),
        "no warning: {stderr}"
    );
    std::fs::create_dir_all(&data).unwrap();
    let _server = Server::start_on(&data, port, &["--format", "json"]);
    let (replayed, stderr) = Script::start(&python, &["spool_replay", &addr, spool_arg]).finish();
    assert_eq!(replayed["ok"], true, "{replayed}\n{stderr}");
    // What is left is the newest records, all of them, in order.
    let expected: Vec<String> = (dropped as usize..N)
        .map(|i| format!("s{i} {}", "x".repeat(40)))
        .collect();
    assert_eq!(messages(&data), expected);
}

#[test]
fn python_client_flushes_at_a_normal_exit() {
    let Some(python) = python("python_client_flushes_at_a_normal_exit") else {
        return;
    };
    const N: usize = 2_000;
    let dir = TempDir::new("py-exit");
    let server = start(&dir.0);
    Script::start(&python, &["exit", &server.addr.to_string(), &N.to_string()]).finish();
    // The process has exited: whatever it logged was acked, so it is on disk now.
    let expected: Vec<String> = (0..N).map(|i| format!("e{i}")).collect();
    assert_eq!(messages(&dir.0), expected);
}

#[test]
fn python_client_refused_token_is_an_error_for_the_caller() {
    let Some(python) = python("python_client_refused_token_is_an_error_for_the_caller") else {
        return;
    };
    let dir = TempDir::new("py-refused");
    let server = start(&dir.0);
    let (result, _) = Script::start(
        &python,
        &["refused", &server.addr.to_string(), "not.a.token"],
    )
    .finish();
    assert_eq!(result["flush"], "raised", "{result}");
    assert_eq!(result["code"], "unauthorized");
    assert!(
        result["error"].as_str().unwrap().contains("token refused"),
        "{result}"
    );
    assert_eq!(result["send"], "raised");
    assert!(read_lines(&dir.0).is_empty());
}

/// The two benchmark scripts run and print their figures: `bench.py` (every row, its records
/// acked or written, or it exits with an error) and `bench_ir.py`'s kinds. A few records only:
/// this checks they work, not how fast (the figures are in the README).
#[test]
fn python_benchmarks_run_and_print_their_figures() {
    let Some(python) = python("python_benchmarks_run_and_print_their_figures") else {
        return;
    };
    let dir = TempDir::new("py-bench");
    let server = start(&dir.0);
    let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let addr = server.addr.to_string();
    let run = |args: &[&str]| -> String {
        let out = Command::new(&python)
            .args(args)
            .env("PYTHONPATH", &package)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let bench = package.join("bench.py");
    let out = run(&[bench.to_str().unwrap(), "--addr", &addr, "--records", "300"]);
    for row in [
        "logging alone",
        "logging.handlers.SocketHandler",
        "logmill.LogmillHandler",
        "logmill.Client.send",
        "LogmillHandler / SocketHandler:",
    ] {
        assert!(out.contains(row), "{row:?} missing from:\n{out}");
    }
    // bench.py itself exits with an error unless SocketHandler's records were written
    // (`records_written` in `health`) and the others acked: its success says they arrived.
    let ir = package.join("bench_ir.py");
    for kind in ["nothing", "socket", "logmill"] {
        run(&[ir.to_str().unwrap(), kind, "50", &addr]);
    }
    for kind in ["records", "encode"] {
        run(&[ir.to_str().unwrap(), kind, "50"]);
    }
}
