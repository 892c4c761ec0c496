//! The Go client (`clients/go`) against the real binary, over loopback, checked on disk.
//!
//! Each test runs one test of the Go package (`go test -run '^TestName$'`) with the server's
//! address in `LOGMILL_ADDR`, then reads the stored lines. Where the scenario needs the server
//! killed or started while the Go test runs, the two sides meet through files in
//! `LOGMILL_SYNC`: the Go test writes `STEP` and waits for `STEP.done`, which this side writes
//! once it has acted. The frame encoder is checked byte for byte against this crate's encoder
//! through fixtures written here (`LOGMILL_FIXTURES`). Go comes from `golang-go`
//! (`scripts/install-tools.sh`); without it the tests fail under CI and skip elsewhere.

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Server, TempDir, free_port, issue_token, json_lines_of as json_lines, wait_for};
use logmill::protocol::native::{self, ErrorKind, Hello, ServerFrame};
use logmill::record::{Body, Level, Record, Value};
use serde_json::{Value as Json, json};

/// `go test -timeout`: longer than the Go tests' own waits (30 s), so that a failure shows as
/// theirs; also how long this side waits for a step.
const GO_DEADLINE: Duration = Duration::from_secs(120);

fn clients_go() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/go")
}

/// `go` in `clients/go`, with its caches under target/tmp and no network (the package uses the
/// standard library only, and Debian's toolchain is the one used).
fn go_command(go: &Path) -> Command {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go");
    let mut command = Command::new(go);
    command
        .current_dir(clients_go())
        .env("GOCACHE", cache.join("cache"))
        .env("GOPATH", cache.join("path"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local");
    command
}

/// `go test` for one test of the package.
fn go_test(go: &Path, test: &str, env: &[(&str, String)]) -> GoTest {
    let child = go_command(go)
        .args(["test", "-count=1", "-v", "-timeout"])
        .arg(format!("{}s", GO_DEADLINE.as_secs()))
        .args(["-run", &format!("^{test}$"), "."])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run go test");
    GoTest {
        child: Some(child),
        test: test.to_string(),
    }
}

/// A running `go test`, killed if the Rust test gives up on it.
struct GoTest {
    child: Option<Child>,
    test: String,
}

impl GoTest {
    /// Waits for the end and returns its output, failing unless the test ran and passed.
    fn passed(mut self) -> String {
        let child = self.child.take().unwrap();
        let out = child.wait_with_output().expect("go test");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains(&format!("--- PASS: {}", self.test)),
            "go test {} failed ({}):\n{stdout}\n{stderr}",
            self.test,
            out.status
        );
        stdout
    }
}

impl Drop for GoTest {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Err(e) = child.kill().and_then(|()| child.wait().map(drop))
        {
            eprintln!("could not stop go test: {e}");
        }
    }
}

fn go(test: &str) -> Option<PathBuf> {
    tools::require(test, tools::go())
}

/// The number after `name=` in the Go test's `STATS` line.
fn stat(out: &str, name: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("STATS "))
        .unwrap_or_else(|| panic!("no STATS line in {out}"));
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

/// Waits for the Go side to ask for `step`, and returns the file to write once done.
fn wait_step(sync: &Path, step: &str) -> PathBuf {
    let asked = sync.join(step);
    wait_for(
        &format!("the Go test to ask for {step}"),
        GO_DEADLINE,
        || asked.exists().then_some(()),
    );
    sync.join(format!("{step}.done"))
}

fn level_number(level: Level) -> u16 {
    level as u16 + 1
}

/// `go vet`, and the tests that need no server: the spool (order, bound, torn tail), `Close`
/// with the server unreachable (unacked records spooled ahead, in order), and the queue policy
/// without a spool.
#[test]
fn go_vet_and_unit_tests() {
    let Some(go) = go("go_vet_and_unit_tests") else {
        return;
    };
    let vet = go_command(&go)
        .args(["vet", "./..."])
        .stdin(Stdio::null())
        .output()
        .expect("run go vet");
    assert!(
        vet.status.success(),
        "go vet: {}",
        String::from_utf8_lossy(&vet.stderr)
    );
    for test in [
        "TestSpoolKeepsOrderDropsOldestAndCutsATornTail",
        "TestCloseSpoolsWhatIsNotAckedAheadOfTheSpool",
        "TestWithoutASpoolAFullQueueDropsAndCounts",
    ] {
        go_test(&go, test, &[]).passed();
    }
}

#[test]
fn go_frames_match_the_rust_encoder() {
    let Some(go) = go("go_frames_match_the_rust_encoder") else {
        return;
    };
    let dir = TempDir::new("client-go-fixtures");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut hellos = Vec::new();
    for (app, instance, token, want_acks) in [
        ("shop", "web-1", "lm_abc", true),
        ("", "", "", false),
        ("a-rather-long-application-name", "pod-7f9c", "", true),
    ] {
        let mut out = Vec::new();
        native::encode_hello(
            &Hello {
                app: app.into(),
                instance: instance.into(),
                token: token.into(),
                want_acks,
            },
            &mut out,
        );
        hellos.push(json!({"app": app, "instance": instance, "token": token,
            "wantAcks": want_acks, "hex": hex(&out)}));
    }
    let full = Record {
        timestamp_ns: 1_764_650_000_123_456_789,
        level: Level::Critical,
        body: Body::Message("payment service down".into()),
        logger: "shop.pay".into(),
        host: "h1".into(),
        service: "payments".into(),
        module: "pay.card".into(),
        file: "card.go".into(),
        line: 42,
        function: "Charge".into(),
        process_id: 4242,
        process_name: "payd".into(),
        thread_id: 7,
        thread_name: "main".into(),
        stack_trace: "goroutine 1 [running]:\nmain.main()".into(),
        fields: vec![
            (Cow::from("request_id"), Value::from("r-42")),
            (Cow::from("user"), Value::from("ada lovelace")),
            (Cow::from(""), Value::from("")),
        ],
        ..Default::default()
    };
    let records = [
        Record {
            body: Body::Message("hello".into()),
            level: Level::Warning,
            ..Default::default()
        },
        Record {
            body: Body::Message("".into()),
            ..Default::default()
        },
        Record {
            body: Body::Json(r#"{"order":"A-17","total":12.5}"#.into()),
            level: Level::Trace,
            logger: "exactly8".into(),
            ..Default::default()
        },
        Record {
            body: Body::Message("unicode: héllo ✓ 日本語 🚀".into()),
            level: Level::Emergency,
            ..Default::default()
        },
        full,
    ];
    let records: Vec<Json> = records
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            native::encode_records(std::slice::from_ref(r), &mut out);
            let (message, json_body) = match &r.body {
                Body::Message(m) => (m.as_ref(), ""),
                Body::Json(j) => ("", j.as_ref()),
            };
            let fields: Vec<Json> = r
                .fields
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v.text()}))
                .collect();
            json!({"record": {
                "timestampNs": r.timestamp_ns, "level": level_number(r.level),
                "message": message, "json": json_body, "logger": r.logger, "host": r.host,
                "service": r.service, "module": r.module, "file": r.file, "line": r.line,
                "function": r.function, "processId": r.process_id,
                "processName": r.process_name, "threadId": r.thread_id,
                "threadName": r.thread_name, "stackTrace": r.stack_trace, "fields": fields,
            }, "hex": hex(&out)})
        })
        .collect();
    let server_frames = [
        (
            ServerFrame::Welcome {
                server: "LogServer".into(),
                version: "0.1.0".into(),
                max_frame: 1 << 20,
            },
            json!({"welcome": {"Server": "LogServer", "Version": "0.1.0", "MaxFrame": 1 << 20}}),
        ),
        (
            ServerFrame::Ack {
                count: 256,
                last_seq: u64::MAX - 1,
            },
            json!({"ack": {"Count": 256, "LastSeq": u64::MAX - 1}}),
        ),
        (
            ServerFrame::Error {
                kind: Some(ErrorKind::Unauthorized),
                message: "refused: the token is unknown".into(),
            },
            json!({"error": {"Kind": 6, "Message": "refused: the token is unknown"}}),
        ),
        (
            ServerFrame::Error {
                kind: Some(ErrorKind::IdleTimeout),
                message: String::new(),
            },
            json!({"error": {"Kind": 5, "Message": ""}}),
        ),
    ];
    let server: Vec<Json> = server_frames
        .into_iter()
        .map(|(frame, mut meaning)| {
            let mut out = Vec::new();
            native::encode_server_frame(&frame, &mut out);
            meaning["hex"] = json!(hex(&out));
            meaning
        })
        .collect();
    let fixtures = dir.0.as_path().join("fixtures.json");
    std::fs::write(
        &fixtures,
        json!({"hellos": hellos, "records": records, "server": server}).to_string(),
    )
    .unwrap();
    let env = [("LOGMILL_FIXTURES", fixtures.display().to_string())];
    for test in [
        "TestFramesMatchTheRustEncoder",
        "TestServerFramesDecodeAtEverySplit",
        "TestHostileServerBytesAreErrorsNotPanics",
    ] {
        go_test(&go, test, &env).passed();
    }
}

#[test]
fn go_client_records_arrive() {
    let Some(go) = go("go_client_records_arrive") else {
        return;
    };
    let dir = TempDir::new("client-go-delivery");
    let token = issue_token(dir.0.as_path(), "shop");
    let server = Server::start(dir.0.as_path(), &["--format", "json"]);
    go_test(
        &go,
        "TestDelivery",
        &[
            ("LOGMILL_ADDR", server.addr.to_string()),
            ("LOGMILL_TOKEN", token),
        ],
    )
    .passed();
    // Close returned: every record is acked, so it is in the files now.
    let lines = json_lines(&dir.0.as_path().join("shop"));
    let levels: Vec<&str> = lines[..9]
        .iter()
        .map(|l| l["level"].as_str().unwrap())
        .collect();
    assert_eq!(
        levels,
        [
            "trace",
            "debug",
            "info",
            "notice",
            "warning",
            "error",
            "critical",
            "alert",
            "emergency"
        ]
    );
    for (l, level) in lines.iter().zip(&levels) {
        assert_eq!(l["message"], format!("level {level}"));
    }
    for l in &lines {
        assert_eq!(
            (l["app"].as_str(), l["instance"].as_str()),
            (Some("shop"), Some("web-1"))
        );
    }
    assert_eq!(lines[9]["json"], json!({"order": "A-17", "total": 12.5}));
    assert_eq!(lines[9]["logger"], "shop.orders");
    assert_eq!(lines[9]["level"], "warning");
    assert_eq!(lines[10]["message"], "card declined");
    assert_eq!(
        lines[10]["fields"],
        json!({"request_id": "r-42", "user": "ada lovelace"})
    );
    assert_eq!(lines[11]["message"], "unicode: héllo ✓ 日本語");
    assert_eq!(lines[11]["level"], "info");
    assert_eq!(lines[12]["message"], "through the log package");
    assert_eq!(lines[12]["level"], "notice");
    assert_eq!(lines.len(), 13);
}

#[test]
fn go_client_resends_after_a_server_restart() {
    let Some(go) = go("go_client_resends_after_a_server_restart") else {
        return;
    };
    let dir = TempDir::new("client-go-restart");
    let sync = TempDir::new("client-go-restart-sync");
    let server = Server::start(dir.0.as_path(), &["--format", "json"]);
    let port = server.addr.port();
    let run = go_test(
        &go,
        "TestRestart",
        &[
            ("LOGMILL_ADDR", server.addr.to_string()),
            ("LOGMILL_SYNC", sync.0.as_path().display().to_string()),
        ],
    );
    let done = wait_step(sync.0.as_path(), "kill");
    // SIGKILL: no goodbye; whatever the server acked is in the files, the rest the client resends.
    server.signal("KILL");
    let mut server = server;
    server.wait_exit();
    drop(server);
    let server = Server::start_on(dir.0.as_path(), port, &["--format", "json"]);
    std::fs::write(done, "").unwrap();
    let out = run.passed();
    let resent = stat(&out, "resent");
    let total: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("TOTAL "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no TOTAL line in {out}"));
    let lines = json_lines(dir.0.as_path());
    let messages: Vec<&str> = lines
        .iter()
        .filter(|l| l["app"] == "restart")
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    // Every record arrived; a record appears twice only if it was in the unacked window at the
    // kill (stored, but the ack lost with the connection), and then in order after the first.
    let mut seen = std::collections::BTreeMap::new();
    for m in &messages {
        *seen.entry(*m).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), total, "distinct records");
    for (i, m) in seen.keys().enumerate() {
        assert_eq!(*m, format!("r-{i:06}"));
    }
    let duplicates = (messages.len() - seen.len()) as u64;
    assert!(
        duplicates <= resent,
        "{duplicates} duplicates but only {resent} records were resent"
    );
    // First appearances are in order: the resend keeps the order.
    let mut first = Vec::new();
    let mut met = std::collections::HashSet::new();
    for m in &messages {
        if met.insert(*m) {
            first.push(*m);
        }
    }
    assert!(first.windows(2).all(|w| w[0] < w[1]), "out of order");
    eprintln!("restart: {resent} resent, {duplicates} duplicates on disk");
    drop(server);
}

/// The server is down when the Go client starts; it spools, then this side starts the server
/// on the port it was given and the spool is replayed. Returns the stored messages and the Go
/// test's output.
fn spool_scenario(go: &Path, test: &str) -> (Vec<String>, String) {
    let dir = TempDir::new("client-go-spool");
    let sync = TempDir::new("client-go-spool-sync");
    let port = free_port();
    let run = go_test(
        go,
        test,
        &[
            ("LOGMILL_ADDR", format!("127.0.0.1:{port}")),
            ("LOGMILL_SYNC", sync.0.as_path().display().to_string()),
            (
                "LOGMILL_SPOOL",
                sync.0.as_path().join("spool").display().to_string(),
            ),
        ],
    );
    let done = wait_step(sync.0.as_path(), "start");
    let server = Server::start_on(dir.0.as_path(), port, &["--format", "json"]);
    std::fs::write(done, "").unwrap();
    let out = run.passed();
    let messages = json_lines(dir.0.as_path())
        .iter()
        .filter(|l| l["app"] == "spool")
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect();
    drop(server);
    (messages, out)
}

fn spool_message(i: u64) -> String {
    format!("s-{i:05} {}", "x".repeat(64))
}

#[test]
fn go_client_spools_while_the_server_is_down() {
    let Some(go) = go("go_client_spools_while_the_server_is_down") else {
        return;
    };
    let (messages, _) = spool_scenario(&go, "TestSpoolReplay");
    let expected: Vec<String> = (0..300).map(spool_message).collect();
    assert_eq!(messages, expected);
}

#[test]
fn go_client_spool_bound_holds() {
    let Some(go) = go("go_client_spool_bound_holds") else {
        return;
    };
    let (messages, out) = spool_scenario(&go, "TestSpoolBound");
    let dropped = stat(&out, "dropped");
    assert!(dropped > 0 && dropped < 1000, "dropped {dropped}");
    // The oldest were dropped: what arrived is the newest, whole and in order.
    let expected: Vec<String> = (dropped..1000).map(spool_message).collect();
    assert_eq!(messages, expected);
}

#[test]
fn go_client_refused_token_is_a_clear_error() {
    let Some(go) = go("go_client_refused_token_is_a_clear_error") else {
        return;
    };
    let dir = TempDir::new("client-go-refused");
    let server = Server::start(dir.0.as_path(), &["--format", "json", "--auth", "required"]);
    let out = go_test(
        &go,
        "TestRefusedToken",
        &[("LOGMILL_ADDR", server.addr.to_string())],
    )
    .passed();
    assert!(
        out.contains("REFUSED logmill server refused: unauthorized"),
        "{out}"
    );
    assert!(json_lines(dir.0.as_path()).is_empty());
}

#[test]
fn go_client_throughput() {
    let Some(go) = go("go_client_throughput") else {
        return;
    };
    let dir = TempDir::new("client-go-bench");
    let server = Server::start(dir.0.as_path(), &["--format", "json"]);
    let out = go_test(
        &go,
        "TestThroughput",
        &[
            ("LOGMILL_ADDR", server.addr.to_string()),
            ("LOGMILL_BENCH_N", "20000".into()),
        ],
    )
    .passed();
    let line = out.lines().find(|l| l.starts_with("THROUGHPUT")).unwrap();
    eprintln!("{line}");
    let stored = json_lines(dir.0.as_path())
        .iter()
        .filter(|l| l["app"] == "bench")
        .count();
    assert_eq!(stored, 20_000);
}
