//! The JavaScript client (`clients/js/`) against the real binary, over loopback, checked on disk
//! (`--format json`). Node runs `clients/js/test/driver.mjs SCENARIO`, which logs through the
//! package and prints one JSON line per step; where a scenario waits for `go` on its stdin, this
//! side stops, starts or restarts the server in between. `frames.mjs` prints the frames the
//! package encodes, compared here byte for byte with the Rust encoder's.
//!
//! Node needs no npm package: the client has no dependencies. A missing `node` fails under CI
//! (`tools::require`).

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};

use common::{
    DEADLINE, Server, TempDir, free_port, http_client, issue_token, json_lines_of as json_lines,
    wait_for,
};
use logmill::protocol::native::{Hello, encode_hello, encode_records};
use logmill::record::{Body, Level, Record};
use serde_json::Value;

fn package() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js")
}

/// A Node program of the package's `test/` folder, its stdout read line by line on a thread so
/// that every read has a deadline.
struct Driver {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Driver {
    fn start(node: &Path, script: &str, args: &[&str], env: &[(&str, String)]) -> Driver {
        let mut command = Command::new(node);
        command
            .arg(package().join("test").join(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("run node");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Driver {
            child,
            stdin,
            lines,
        }
    }

    /// The next JSON line; panics on a timeout or on the script's own failure report.
    fn next(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(DEADLINE)
            .expect("the node script said nothing in time, or exited");
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value.get("failed").is_none(), "node: {}", value["failed"]);
        value
    }

    fn go(&mut self) {
        self.stdin.write_all(b"go\n").unwrap();
        self.stdin.flush().unwrap();
    }

    fn finish(mut self) {
        let status = wait_for("the node script to exit", DEADLINE, || {
            self.child.try_wait().unwrap()
        });
        assert!(status.success(), "node exited with {status}");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none()
            && let Err(e) = self.child.kill().and_then(|()| self.child.wait().map(drop))
        {
            eprintln!("could not stop the node script: {e}");
        }
    }
}

fn node(test: &str) -> Option<PathBuf> {
    tools::require(test, tools::node())
}

fn tcp_env(server_port: u16) -> Vec<(&'static str, String)> {
    vec![("LOGMILL_PORT", server_port.to_string())]
}

fn messages(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|v| v["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn js_frames_match_the_rust_encoder() {
    let Some(node) = node("js_frames_match_the_rust_encoder") else {
        return;
    };
    let rich = Record {
        timestamp_ns: 1_700_000_000_123_456_789,
        level: Level::Error,
        body: Body::Message("disk almost full ✓".into()),
        logger: "app.disk".into(),
        host: "web-1".into(),
        service: "billing".into(),
        module: "disk".into(),
        file: "disk.js".into(),
        line: 42,
        function: "check".into(),
        process_id: 7,
        process_name: "node".into(),
        thread_id: 9,
        thread_name: "main".into(),
        stack_trace: "Error: x\n    at y".into(),
        fields: vec![
            ("mount".into(), "/var".into()),
            ("ünï".into(), "{\"a\":1}".into()),
        ],
        ..Record::default()
    };
    let mut expected = std::collections::BTreeMap::new();
    let mut one = Vec::new();
    encode_records(
        &[Record {
            level: Level::Warning,
            body: Body::Message("hello".into()),
            ..Record::default()
        }],
        &mut one,
    );
    expected.insert("one", one);
    let mut single = Vec::new();
    encode_records(std::slice::from_ref(&rich), &mut single);
    expected.insert("rich", single);
    let mut batch = Vec::new();
    encode_records(
        &[
            rich.clone(),
            Record {
                level: Level::Debug,
                body: Body::Json("{\"k\":[1,2]}".into()),
                ..Record::default()
            },
            Record {
                level: Level::Info,
                body: Body::Message("".into()),
                ..Record::default()
            },
        ],
        &mut batch,
    );
    expected.insert("batch", batch);
    let mut stamped = Vec::new();
    encode_records(
        &[Record {
            timestamp_ns: 1_764_650_000_123_456_000,
            level: Level::Info,
            body: Body::Message("m".into()),
            ..Record::default()
        }],
        &mut stamped,
    );
    expected.insert("stamped", stamped);
    let mut hello = Vec::new();
    encode_hello(
        &Hello {
            app: "billing".into(),
            instance: "pod-7".into(),
            token: "tok".into(),
            want_acks: true,
        },
        &mut hello,
    );
    expected.insert("hello", hello);

    let out = Command::new(node)
        .arg(package().join("test/frames.mjs"))
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let name = v["name"].as_str().unwrap();
        let want: String = expected[name].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(v["hex"].as_str().unwrap(), want, "frame {name}");
        seen += 1;
    }
    assert_eq!(seen, expected.len());
}

/// The package's own `node --test` file: the server-frame decoder on hostile bytes.
#[test]
fn js_decoder_unit_tests_pass() {
    let Some(node) = node("js_decoder_unit_tests_pass") else {
        return;
    };
    let out = Command::new(node)
        .args(["--test", "test/capnp.test.mjs"])
        .current_dir(package())
        .output()
        .expect("run node --test");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Levels, string and JSON bodies, fields, logger, stack trace, app and instance, stored.
fn check_records(lines: &[Value], app: &str) {
    let levels: Vec<&str> = lines.iter().map(|v| v["level"].as_str().unwrap()).collect();
    assert_eq!(
        levels,
        [
            "trace",
            "debug",
            "info",
            "notice",
            "warning",
            "warning",
            "error",
            "critical",
            "alert",
            "emergency",
            "info"
        ]
    );
    assert_eq!(
        messages(&lines[..10]),
        ["t0", "d1", "i2", "n3", "w4", "w5", "e6", "c7", "a8", "x9"]
    );
    for v in lines {
        assert_eq!(v["app"], app, "{v}");
        assert_eq!(v["instance"], "node-1", "{v}");
    }
    let d1 = &lines[1]["fields"];
    assert_eq!(d1["user"], "ann");
    assert_eq!(d1["n"], "3");
    assert_eq!(d1["ok"], "true");
    assert_eq!(d1["ctx"], "{\"a\":1}");
    assert!(
        lines[6]["stack_trace"]
            .as_str()
            .unwrap()
            .starts_with("Error: e6\n"),
        "{}",
        lines[6]
    );
    assert_eq!(lines[7]["logger"], "billing.pay");
    assert_eq!(lines[10]["json"]["order"], "A-17");
    assert_eq!(lines[10]["json"]["total"], 12.5);
    assert_eq!(lines[10]["fields"]["via"], "json");
}

#[test]
fn js_client_records_levels_bodies_and_fields_arrive() {
    let Some(node) = node("js_client_records_levels_bodies_and_fields_arrive") else {
        return;
    };
    let dir = TempDir::new("client-js-records");
    let server = Server::start(dir.0.as_path(), &["--format", "json"]);
    server.health();
    let token = issue_token(dir.0.as_path(), "shop");
    let mut env = tcp_env(server.addr.port());
    env.push(("LOGMILL_TOKEN", token));
    let mut driver = Driver::start(&node, "driver.mjs", &["records"], &env);
    let done = driver.next();
    assert_eq!(done["stats"]["acked"], 11, "{done}");
    assert_eq!(done["stats"]["dropped"], 1, "{done}");
    driver.finish();
    // Acked means written: the lines are there once close() returned.
    check_records(&json_lines(&dir.0.as_path().join("shop")), "shop");
}

#[test]
fn js_client_over_grpc_web_with_fetch() {
    let Some(node) = node("js_client_over_grpc_web_with_fetch") else {
        return;
    };
    let dir = TempDir::new("client-js-grpc-web");
    let (server, http) = http_client::start(dir.0.as_path(), &["--format", "json"]);
    server.health();
    let token = issue_token(dir.0.as_path(), "shop");
    let env = vec![
        ("LOGMILL_URL", format!("http://{http}")),
        ("LOGMILL_TOKEN", token),
    ];
    let mut driver = Driver::start(&node, "driver.mjs", &["records"], &env);
    let done = driver.next();
    assert_eq!(done["stats"]["acked"], 11, "{done}");
    assert_eq!(done["stats"]["dropped"], 1, "{done}");
    driver.finish();
    check_records(&json_lines(&dir.0.as_path().join("shop")), "shop");

    // A refused token over gRPC-Web: UNAUTHENTICATED becomes the same clear error.
    let env = vec![("LOGMILL_URL", format!("http://{http}"))];
    let mut driver = Driver::start(&node, "driver.mjs", &["refused"], &env);
    let report = driver.next();
    assert_eq!(report["flushed"]["code"], "unauthorized", "{report}");
    assert_eq!(report["reconnects"], 0, "{report}");
    driver.finish();
}

#[test]
fn js_client_resends_unacked_after_a_server_restart() {
    let Some(node) = node("js_client_resends_unacked_after_a_server_restart") else {
        return;
    };
    // SIGKILL: records written whose acks died with the server come again (the duplicate
    // window). SIGTERM: the server writes and acks what it read, says `shuttingDown`, and
    // closes; the client reconnects as after any lost connection.
    for signal in ["KILL", "TERM"] {
        restart_mid_stream(&node, signal);
    }
}

fn restart_mid_stream(node: &Path, signal: &str) {
    const COUNT: usize = 20_000;
    let dir = TempDir::new("client-js-restart");
    let server = Server::start(dir.0.as_path(), &["--format", "json"]);
    let port = server.addr.port();
    let mut env = tcp_env(port);
    env.push(("COUNT", COUNT.to_string()));
    let mut driver = Driver::start(node, "driver.mjs", &["restart"], &env);
    driver.next(); // some records acked, more in flight
    server.signal(signal);
    let mut server = server;
    server.wait_exit();
    let _server = Server::start_on(dir.0.as_path(), port, &["--format", "json"]);
    driver.go();
    let done = driver.next();
    driver.finish();
    let lines = json_lines(dir.0.as_path());
    let got = messages(&lines);
    // Nothing lost, first occurrences in order; every duplicate is a record sent again after
    // the kill (written by the old server, its ack lost with it).
    let mut first = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in &got {
        if seen.insert(m.clone()) {
            first.push(m.clone());
        }
    }
    let want: Vec<String> = (0..COUNT).map(|i| format!("r {i}")).collect();
    if let Some(at) = (0..want.len()).find(|&i| first.get(i) != Some(&want[i])) {
        panic!(
            "first occurrences differ at {at}: got {:?}, want {:?} ({} distinct of {COUNT})",
            &first[at.saturating_sub(2)..(at + 3).min(first.len())],
            &want[at.saturating_sub(2)..(at + 3).min(want.len())],
            first.len()
        );
    }
    assert_eq!(first.len(), COUNT);
    let duplicates = got.len() - COUNT;
    eprintln!(
        "restart after SIG{signal}: {duplicates} duplicates; client stats {}",
        done["stats"]
    );
    let resent = done["stats"]["resent"].as_u64().unwrap() as usize;
    assert!(
        duplicates <= resent,
        "SIG{signal}: {duplicates} duplicates, {resent} resent"
    );
    assert_eq!(
        done["stats"]["acked"].as_u64().unwrap() as usize,
        COUNT,
        "{done}"
    );
    assert_eq!(done["stats"]["dropped"], 0, "{done}");
}

#[test]
fn js_client_spools_while_the_server_is_down_and_replays_in_order() {
    let Some(node) = node("js_client_spools_while_the_server_is_down_and_replays_in_order") else {
        return;
    };
    const COUNT: usize = 3000;
    let dir = TempDir::new("client-js-spool");
    let spool = TempDir::new("client-js-spool-files");
    let port = free_port();
    let mut env = tcp_env(port);
    env.push(("COUNT", COUNT.to_string()));
    env.push(("LOGMILL_SPOOL", spool.0.display().to_string()));
    let mut driver = Driver::start(&node, "driver.mjs", &["spool"], &env);
    let spooled = driver.next();
    assert_eq!(spooled["onDisk"], COUNT, "{spooled}");
    let _server = Server::start_on(dir.0.as_path(), port, &["--format", "json"]);
    driver.go();
    let done = driver.next();
    assert_eq!(done["onDisk"], 0, "{done}");
    driver.finish();
    let want: Vec<String> = (0..COUNT).map(|i| format!("s {i}")).collect();
    assert_eq!(messages(&json_lines(dir.0.as_path())), want);
}

#[test]
fn js_client_spool_bound_drops_the_oldest_with_a_count_and_a_warning() {
    let Some(node) = node("js_client_spool_bound_drops_the_oldest_with_a_count_and_a_warning")
    else {
        return;
    };
    let dir = TempDir::new("client-js-spool-bound");
    let spool = TempDir::new("client-js-spool-bound-files");
    let port = free_port();
    let mut env = tcp_env(port);
    env.push(("LOGMILL_SPOOL", spool.0.display().to_string()));
    let mut driver = Driver::start(&node, "driver.mjs", &["spoolBound"], &env);
    let report = driver.next();
    assert!(report["bytes"].as_u64().unwrap() <= 16384, "{report}");
    let dropped = report["dropped"].as_u64().unwrap() as usize;
    let on_disk = report["onDisk"].as_u64().unwrap() as usize;
    assert!(dropped > 0, "{report}");
    assert_eq!(dropped + on_disk, 2000, "{report}");
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .contains("dropped its oldest"),
        "{report}"
    );
    let _server = Server::start_on(dir.0.as_path(), port, &["--format", "json"]);
    driver.go();
    driver.next();
    driver.finish();
    // What is left is the newest records, in order, up to the last one logged.
    let got = messages(&json_lines(dir.0.as_path()));
    let want: Vec<String> = (2000 - on_disk..2000)
        .map(|i| format!("b {i} {}", "x".repeat(40)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn js_client_without_a_spool_drops_new_records_when_full_and_counts_them() {
    let Some(node) = node("js_client_without_a_spool_drops_new_records_when_full_and_counts_them")
    else {
        return;
    };
    let dir = TempDir::new("client-js-drop");
    let port = free_port();
    let mut driver = Driver::start(&node, "driver.mjs", &["dropWhenFull"], &tcp_env(port));
    let report = driver.next();
    assert_eq!(report["dropped"], 50, "{report}");
    assert_eq!(report["warnings"].as_array().unwrap().len(), 1, "{report}");
    let _server = Server::start_on(dir.0.as_path(), port, &["--format", "json"]);
    driver.go();
    driver.next();
    driver.finish();
    let want: Vec<String> = (0..100).map(|i| format!("q {i}")).collect();
    assert_eq!(messages(&json_lines(dir.0.as_path())), want);
}

#[test]
fn js_client_drops_a_record_over_the_max_frame_with_a_warning() {
    let Some(node) = node("js_client_drops_a_record_over_the_max_frame_with_a_warning") else {
        return;
    };
    let dir = TempDir::new("client-js-oversized");
    let server = Server::start(
        dir.0.as_path(),
        &["--format", "json", "--max-frame", "8192"],
    );
    let mut driver = Driver::start(
        &node,
        "driver.mjs",
        &["oversized"],
        &tcp_env(server.addr.port()),
    );
    let done = driver.next();
    driver.finish();
    assert_eq!(done["stats"]["dropped"], 1, "{done}");
    assert_eq!(done["stats"]["reconnects"], 0, "{done}");
    assert!(
        done["warnings"][0]
            .as_str()
            .unwrap()
            .contains("max frame (8192 bytes)"),
        "{done}"
    );
    assert_eq!(messages(&json_lines(dir.0.as_path())), ["before", "after"]);
}

#[test]
fn js_client_refused_token_is_a_clear_error_not_a_loop() {
    let Some(node) = node("js_client_refused_token_is_a_clear_error_not_a_loop") else {
        return;
    };
    let dir = TempDir::new("client-js-refused");
    let server = Server::start(dir.0.as_path(), &["--format", "json"]);
    server.health();
    let mut driver = Driver::start(
        &node,
        "driver.mjs",
        &["refused"],
        &tcp_env(server.addr.port()),
    );
    let report = driver.next();
    assert_eq!(report["flushed"]["code"], "unauthorized", "{report}");
    assert!(
        report["flushed"]["message"]
            .as_str()
            .unwrap()
            .contains("unauthorized"),
        "{report}"
    );
    assert_eq!(report["errors"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["reconnects"], 0, "{report}");
    assert_eq!(report["state"], "failed", "{report}");
    driver.finish();
}

#[test]
fn js_client_pino_stream_maps_levels_logger_and_fields() {
    let Some(node) = node("js_client_pino_stream_maps_levels_logger_and_fields") else {
        return;
    };
    let dir = TempDir::new("client-js-pino");
    let server = Server::start(dir.0.as_path(), &["--format", "json"]);
    let mut driver = Driver::start(&node, "driver.mjs", &["pino"], &tcp_env(server.addr.port()));
    driver.next();
    driver.finish();
    let lines = json_lines(dir.0.as_path());
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["level"], "info");
    assert_eq!(lines[0]["logger"], "api");
    assert_eq!(lines[0]["message"], "hello pino");
    assert_eq!(lines[0]["fields"]["req"], "r-1");
    assert_eq!(lines[1]["level"], "error");
    assert_eq!(lines[1]["stack_trace"], "Error: boom\n    at x");
    assert_eq!(lines[2]["level"], "warning");
    assert_eq!(lines[2]["message"], "from winston");
    assert_eq!(lines[2]["fields"]["service"], "cart");
    assert_eq!(lines[3]["level"], "debug");
    assert_eq!(lines[3]["message"], "chatty");
}

/// Serves `clients/js` (the page and the package's browser modules) on its own origin
/// (`common::page_server`). Only `/test/page.html`, `/browser.js` and `/src/NAME.js` are
/// answered; anything else is a 404.
fn serve_package() -> u16 {
    let module = |name: &str| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase()) && name.len() < 32
    };
    common::page_server::serve(std::sync::Arc::new(move |path: &str| {
        let file = match path {
            "/test/page.html" => Some(("test/page.html".to_owned(), "text/html; charset=utf-8")),
            "/browser.js" => Some(("browser.js".to_owned(), "text/javascript")),
            _ => path
                .strip_prefix("/src/")
                .and_then(|n| n.strip_suffix(".js"))
                .filter(|n| module(n))
                .map(|n| (format!("src/{n}.js"), "text/javascript")),
        };
        file.map(|(f, kind)| (package().join(f), kind))
    }))
}

/// The package's browser build in headless Chromium (driven by `tests/browser/run.mjs`, as in
/// `tests/browser.rs`), on another origin than the server's: records arrive over gRPC-Web
/// through CORS, and a refused token reaches the page as the client's `unauthorized` error.
#[test]
fn js_client_in_a_real_browser_over_grpc_web() {
    let Some(browser) = tools::require(
        "js_client_in_a_real_browser_over_grpc_web",
        tools::browser(),
    ) else {
        return;
    };
    let origin = format!("http://127.0.0.1:{}", serve_package());
    let dir = TempDir::new("client-js-browser");
    let (server, http) = http_client::start(
        dir.0.as_path(),
        &["--format", "json", "--cors-origin", &origin],
    );
    server.health();
    let token = issue_token(dir.0.as_path(), "web");
    let url = format!("{origin}/test/page.html?server=http://{http}&token={token}&bad=not-a-token");
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("client-js-page.png");
    let out = Command::new(&browser.node)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/run.mjs"))
        .arg(&url)
        .arg(&screenshot)
        .env("BROWSER_TOOLS", &browser.folder)
        .env("CHROMIUM", &browser.chromium)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/browser/run.mjs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run.mjs: {}: {stderr}", out.status);
    let run: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("run.mjs printed no JSON ({e}): {stderr}"));
    let about = format!("{run:#}");
    assert_eq!(run["done"], true, "{about}");
    let results = &run["results"];
    assert!(results.get("error").is_none(), "{about}");
    assert_eq!(results["stats"]["acked"], 21, "{about}");
    assert_eq!(results["refused"]["code"], "unauthorized", "{about}");

    let lines = json_lines(&dir.0.join("web"));
    let mut want: Vec<String> = (0..20).map(|i| format!("from the page {i}")).collect();
    want.push(String::new());
    assert_eq!(messages(&lines), want);
    for v in &lines {
        assert_eq!(v["app"], "web", "{v}");
        assert_eq!(v["instance"], "tab-1", "{v}");
        assert_eq!(v["logger"], "page", "{v}");
    }
    assert_eq!(lines[3]["fields"]["i"], "3");
    assert_eq!(lines[20]["level"], "error");
    assert_eq!(lines[20]["json"]["cents"], 1250);
}
