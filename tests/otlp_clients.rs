//! OTLP logs from the real OpenTelemetry clients into the real binary, over loopback, checked
//! line by line on disk (`--format json`) against the mapping in `src/protocol/otlp.rs`:
//!
//! - the Python SDK (`tests/grpc_interop/otlp_logging.py`): Python's `logging` through the
//!   SDK's `LoggingHandler`, inside a span, exported by `opentelemetry-exporter-otlp-proto-grpc`
//!   (`LogsService/Export` on h2) and by `opentelemetry-exporter-otlp-proto-http`
//!   (`POST /v1/logs`, protobuf), plain and gzip, anonymous and with an application token;
//! - the JS SDK in Node (`tests/grpc_interop/otlp_logs.js`): `@opentelemetry/sdk-logs` with
//!   `@opentelemetry/exporter-logs-otlp-http`, which sends JSON (chunked), plain and gzip.
//!
//! The scripts print each export's result; a reply comes after the records are written, so once
//! an exporter reports success the lines are read at once, without waiting. Each script runs
//! under a deadline. `tests/common/tools.rs` installs the packages (pinned in
//! `tests/grpc_interop/requirements.txt` and `package.json`), or the test says why it cannot
//! (and fails under CI).

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{Server, TempDir, http_client, issue_token, read_lines, wait_for};
use serde_json::{Value, json};

/// Longer than the scripts' own export timeout (10 s), so that a refusal or a retry shows as
/// the script's report, not as this deadline.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(60);

/// What `otlp_logging.py` logs, in order: message and the level logmill stores. The last one
/// is logged after its span has ended.
const PYTHON_RECORDS: [(&str, &str); 6] = [
    ("cart c-1 opened", "debug"),
    ("order A-17 paid", "info"),
    ("stock low for sku-9", "warning"),
    ("card declined", "error"),
    ("payment service down", "critical"),
    ("after the span", "info"),
];

/// Starts the server with `--format json` and its gRPC (and HTTP) port on an ephemeral port.
fn start(dir: &Path, args: &[&str]) -> (Server, SocketAddr) {
    let args: Vec<&str> = ["--format", "json"].iter().chain(args).copied().collect();
    http_client::start(dir, &args)
}

/// A client script that is killed if the test gives up on it.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none()
            && let Err(e) = self.0.kill().and_then(|()| self.0.wait().map(drop))
        {
            eprintln!("could not stop a client script: {e}");
        }
    }
}

/// Reads all of `from` on a thread, so that neither pipe can fill and stall the script.
fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        from.read_to_string(&mut text)
            .expect("a client script wrote invalid UTF-8");
        text
    })
}

/// Runs a client script to its end (within [`SCRIPT_DEADLINE`]) and returns the JSON object it
/// printed. The SDKs read `OTEL_*` variables, so none is passed on: the script's own settings
/// are the whole configuration.
fn run(mut command: Command) -> Value {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    let shown = format!("{command:?}");
    let mut script = Script(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{shown}: {e}")),
    );
    let stdout = drain(script.0.stdout.take().unwrap());
    let stderr = drain(script.0.stderr.take().unwrap());
    let status = wait_for(&format!("{shown} to end"), SCRIPT_DEADLINE, || {
        script.0.try_wait().unwrap()
    });
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "{shown}: {status}\n{stderr}");
    if !stderr.is_empty() {
        eprintln!("{shown} said on stderr:\n{stderr}");
    }
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{shown} printed no JSON report ({e}): {stdout:?}\n{stderr}"))
}

/// `otlp_logging.py EXPORTER ADDR [--gzip] [--token TOKEN]`.
fn python_sdk(
    python: &tools::ClientTool,
    exporter: &str,
    addr: SocketAddr,
    gzip: bool,
    token: Option<&str>,
) -> Value {
    let mut command = python.command("otlp_logging.py");
    command.args([exporter, &addr.to_string()]);
    if gzip {
        command.arg("--gzip");
    }
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    run(command)
}

/// The report's exports: exactly one, of every record, and it succeeded with nothing for the
/// SDK to say (a partial success or a retry would be logged).
fn assert_exported(report: &Value) {
    assert_eq!(
        report["exports"],
        json!([{"records": PYTHON_RECORDS.len(), "result": "SUCCESS"}]),
        "{report}"
    );
    assert_eq!(report["sdk_log"], json!([]), "{report}");
}

/// The report's exports: exactly one, which failed, and the SDK logged one error naming
/// `status`: the refusal was understood as final, not retried.
fn assert_refused(report: &Value, status: &str) {
    assert_eq!(
        report["exports"],
        json!([{"records": PYTHON_RECORDS.len(), "result": "FAILURE"}]),
        "{report}"
    );
    let said = report["sdk_log"].as_array().unwrap();
    assert!(
        said.len() == 1 && said[0].as_str().unwrap().contains(status),
        "{report}"
    );
}

/// The six lines of one `otlp_logging.py` run, in order, against its report and the mapping:
/// body to message, severity number to level (the text names the level, so it is not kept),
/// scope (the `logging` logger) to `logger`, `service.name` and `host.name` to `service` and
/// `host`, the other resource attributes and the `extra=` attributes as typed fields, the span's
/// trace context as hex, the record's time to the microsecond.
fn assert_python_lines(lines: &[Value], report: &Value) {
    assert_eq!(lines.len(), PYTHON_RECORDS.len(), "{lines:#?}");
    let sent = report["records"].as_array().unwrap();
    assert_eq!(sent.len(), PYTHON_RECORDS.len(), "{report}");
    let first_seq = lines[0]["seq"].as_u64().unwrap();
    for (i, ((line, &(message, level)), sent)) in
        lines.iter().zip(&PYTHON_RECORDS).zip(sent).enumerate()
    {
        assert_eq!(line["seq"].as_u64(), Some(first_seq + i as u64), "{line}");
        assert_eq!(line["message"], message, "{line}");
        assert_eq!(sent["message"], message, "{report}");
        assert_eq!(line["level"], level, "{line}");
        assert_eq!(line["time"], sent["time"], "{line} / {sent}");
        assert_eq!(line["logger"], "shop.checkout", "{line}");
        assert_eq!(line["service"], "checkout", "{line}");
        assert_eq!(line["host"], "web-7", "{line}");
        let fields = line["fields"].as_object().unwrap();
        // The resource's other attributes, typed as sent.
        assert_eq!(fields["service.version"], "1.2.3", "{line}");
        assert_eq!(fields["telemetry.sdk.language"], "python", "{line}");
        assert_eq!(fields["telemetry.sdk.name"], "opentelemetry", "{line}");
        // What the bridge adds to every record.
        assert_eq!(fields["code.function.name"], sent["function"], "{line}");
        assert_eq!(fields["code.line.number"], sent["line"], "{line}");
        assert!(
            fields["code.file.path"]
                .as_str()
                .is_some_and(|p| p.ends_with("otlp_logging.py")),
            "{line}"
        );
        // Mapped, so not repeated as fields; DEBUG, INFO, WARN, ERROR and FATAL name the level.
        for key in ["service.name", "host.name", "severity_text"] {
            assert!(!fields.contains_key(key), "{key} in {line}");
        }
        let in_span = message != "after the span";
        if in_span {
            assert_eq!(fields["trace_id"], report["trace_id"], "{line}");
            assert_eq!(fields["span_id"], report["span_id"], "{line}");
            assert_eq!(fields["trace_flags"], report["trace_flags"], "{line}");
        } else {
            for key in ["trace_id", "span_id", "trace_flags"] {
                assert!(!fields.contains_key(key), "{key} in {line}");
            }
        }
    }
    // `extra=`: the attributes keep their types.
    let fields = &lines[0]["fields"];
    assert_eq!(fields["cart"], "c-1");
    let fields = &lines[1]["fields"];
    assert_eq!(fields["order_id"], "A-17");
    assert_eq!(fields["items"], 3);
    assert_eq!(fields["total"], 12.5);
    assert_eq!(fields["paid"], true);
    assert_eq!(lines[2]["fields"]["sku"], "sku-9");
    // Real ids from the span: 32 and 16 lower-case hex digits, not zero.
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    for (key, len) in [("trace_id", 32), ("span_id", 16)] {
        let id = report[key].as_str().unwrap();
        assert!(
            id.len() == len && id.bytes().all(hex) && id.bytes().any(|b| b != b'0'),
            "{key} {id:?}"
        );
    }
}

/// The OpenTelemetry Python SDK's gRPC exporter (`LogsService/Export` over h2), anonymous: the
/// records land in `<dir>/_main.log` as the mapping says.
#[test]
fn python_otel_sdk_over_grpc() {
    let test = "python_otel_sdk_over_grpc";
    let Some(python) = tools::require(test, tools::python_grpc()) else {
        return;
    };
    let dir = TempDir::new("otlp-python-grpc");
    let (server, addr) = start(&dir.0, &[]);
    let report = python_sdk(&python, "grpc", addr, false, None);
    assert_exported(&report);
    assert_python_lines(&server.json_lines(), &report);
}

/// The OpenTelemetry Python SDK's HTTP exporter (`POST /v1/logs`, `application/x-protobuf`),
/// gzip, anonymous.
#[test]
fn python_otel_sdk_over_http_protobuf() {
    let test = "python_otel_sdk_over_http_protobuf";
    let Some(python) = tools::require(test, tools::python_grpc()) else {
        return;
    };
    let dir = TempDir::new("otlp-python-http");
    let (server, addr) = start(&dir.0, &[]);
    let report = python_sdk(&python, "http", addr, true, None);
    assert_exported(&report);
    assert_python_lines(&server.json_lines(), &report);
}

/// `--auth required`: both Python exporters given `Authorization: Bearer TOKEN` store into the
/// token's app (`<dir>/shop/_main.log`, `app` on each line); without a token, or with one that
/// is not valid, each export fails (the exporters do not retry a refusal), nothing is stored,
/// and `_server.log` says why.
#[test]
fn python_otel_sdk_with_a_token() {
    let test = "python_otel_sdk_with_a_token";
    let Some(python) = tools::require(test, tools::python_grpc()) else {
        return;
    };
    let dir = TempDir::new("otlp-python-token");
    let token = issue_token(&dir.0, "shop");
    let (server, addr) = start(&dir.0, &["--auth", "required"]);
    let app_dir = dir.0.join("shop");
    let mut stored = 0;
    for (exporter, gzip) in [("grpc", true), ("http", false)] {
        let report = python_sdk(&python, exporter, addr, gzip, Some(&token));
        assert_exported(&report);
        let lines: Vec<Value> = read_lines(&app_dir)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), stored + PYTHON_RECORDS.len(), "{exporter}");
        assert_python_lines(&lines[stored..], &report);
        for line in &lines {
            assert_eq!(line["app"], "shop", "{line}");
        }
        stored = lines.len();
    }
    for (exporter, status) in [("grpc", "UNAUTHENTICATED"), ("http", "401")] {
        for token in [None, Some("not.a.token")] {
            let report = python_sdk(&python, exporter, addr, false, token);
            assert_refused(&report, status);
        }
    }
    assert_eq!(read_lines(&app_dir).len(), stored);
    assert!(server.lines().is_empty(), "{:#?}", server.lines());
    let log = std::fs::read_to_string(dir.0.join("_server.log")).unwrap();
    for said in ["answered UNAUTHENTICATED", "OTLP/HTTP request from"] {
        assert!(log.contains(said), "{said:?} not in {log}");
    }
    assert!(log.contains("answered 401"), "{log}");
}

/// What `otlp_logs.js` emits, in order: message (the last one has a key/value body, stored as
/// the JSON body), level.
const NODE_RECORDS: [(&str, &str); 4] = [
    ("page /cart served", "info"),
    ("slow upstream", "warning"),
    ("checkout failed", "error"),
    ("", "debug"),
];

/// The OpenTelemetry JS SDK in Node: `@opentelemetry/exporter-logs-otlp-http` posts OTLP JSON
/// (chunked) to `/v1/logs`, once plain with a `logmill-app` header and once gzip; the records
/// arrive with message (or JSON body), level, scope, `service.name` and typed attributes.
#[test]
fn node_otel_sdk_over_http_json() {
    let test = "node_otel_sdk_over_http_json";
    let Some(node) = tools::require(test, tools::node_grpc()) else {
        return;
    };
    let dir = TempDir::new("otlp-node");
    let (server, addr) = start(&dir.0, &[]);
    let runs: [&[&str]; 2] = [&["--app", "shop-web"], &["--gzip"]];
    for (run_index, args) in runs.iter().enumerate() {
        let mut command = node.command("otlp_logs.js");
        command.arg(addr.to_string()).args(*args);
        let report = run(command);
        assert_eq!(
            report["exports"],
            json!([{"records": NODE_RECORDS.len(), "code": 0, "error": null}]),
            "{report}"
        );
        let lines = server.json_lines();
        assert_eq!(
            lines.len(),
            (run_index + 1) * NODE_RECORDS.len(),
            "{lines:#?}"
        );
        let lines = &lines[run_index * NODE_RECORDS.len()..];
        for (line, &(message, level)) in lines.iter().zip(&NODE_RECORDS) {
            if message.is_empty() {
                assert_eq!(line["json"], json!({"event": "cart.updated", "items": 3}));
                assert!(line.get("message").is_none(), "{line}");
            } else {
                assert_eq!(line["message"], message, "{line}");
            }
            assert_eq!(line["level"], level, "{line}");
            assert_eq!(line["logger"], "shop.web", "{line}");
            assert_eq!(line["service"], "web-shop", "{line}");
            let fields = line["fields"].as_object().unwrap();
            assert_eq!(fields["otel.scope.version"], "2.0.0", "{line}");
            assert_eq!(fields["deployment.environment"], "test", "{line}");
            for key in ["service.name", "severity_text", "trace_id", "span_id"] {
                assert!(!fields.contains_key(key), "{key} in {line}");
            }
            if run_index == 0 {
                assert_eq!(line["app"], "shop-web", "{line}");
            } else {
                assert_ne!(line["app"], "shop-web", "{line}");
            }
        }
        let fields = &lines[0]["fields"];
        assert_eq!(fields["http.route"], "/cart");
        assert_eq!(fields["status"], 200);
        assert_eq!(fields["duration.ms"], 12.5);
        assert_eq!(fields["cached"], false);
        let fields = &lines[2]["fields"];
        assert_eq!(fields["error.type"], "Timeout");
        assert_eq!(fields["tags"], json!(["a", "b"]));
    }
}
