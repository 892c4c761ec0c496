//! HTTP/1.1 on the gRPC port, through the real binary and raw sockets on 127.0.0.1: keep-alive,
//! pipelining, chunked bodies, `100 Continue`, HTTP/1.0, `Connection: close`, every limit with
//! its status, the slowloris close, `/healthz`, `/v1/status` behind the admin token, and
//! `/metrics` parsed by Prometheus's own Python parser with its counters checked against what
//! was sent. gRPC on the same port is covered by `tests/clients.rs` (Python grpcio and Node
//! grpc-js against the binary) and `tests/grpc_driver.rs`.

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;

use common::http_client::{self, Answer, Conn};
use common::{DEADLINE, Server, TempDir, message, wait_for};

fn start(dir: &TempDir, args: &[&str]) -> (Server, SocketAddr) {
    http_client::start(&dir.0, args)
}

fn get(addr: SocketAddr, path: &str, extra: &str) -> Answer {
    let mut conn = Conn::open(addr);
    conn.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes());
    conn.answer()
}

#[test]
fn keep_alive_pipelining_chunked_continue_and_http10() {
    let dir = TempDir::new("http-keepalive");
    let (_server, addr) = start(&dir, &[]);
    let mut conn = Conn::open(addr);
    // Three pipelined requests in one write, answered in order on the same connection.
    conn.send(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /nope HTTP/1.1\r\n\r\n\
          POST /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
          4;ext=1\r\nabcd\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    let statuses: Vec<u16> = (0..3).map(|_| conn.answer().status).collect();
    assert_eq!(statuses, [200, 404, 405], "in the order sent");
    // Expect: 100-continue: the interim answer comes before the body is sent.
    conn.send(b"POST /healthz HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(conn.answer().status, 100);
    conn.send(b"abc");
    assert_eq!(conn.answer().status, 405);
    // Still the same connection; `Connection: close` ends it after the answer.
    conn.send(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
    let last = conn.answer();
    assert_eq!(
        (last.status, last.header("connection")),
        (200, Some("close"))
    );
    assert!(conn.closed());
    // HTTP/1.0 closes after one answer unless it asks to keep alive.
    let mut old = Conn::open(addr);
    old.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(old.answer().status, 200);
    assert!(old.closed());
    let mut kept = Conn::open(addr);
    kept.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(kept.answer().header("connection"), Some("keep-alive"));
    kept.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(kept.answer().text(), "OK\n");
}

#[test]
fn every_limit_has_its_status_and_a_one_line_reason() {
    let dir = TempDir::new("http-limits");
    let (server, addr) = start(&dir, &["--max-frame", "1KiB"]);
    let big_head = format!("X-Big: {}\r\n", "a".repeat(17 * 1024));
    let many = "X: 1\r\n".repeat(101);
    let cases: [(String, u16, &str, bool); 6] = [
        (
            format!("GET /healthz HTTP/1.1\r\n{big_head}\r\n"),
            431,
            "request line and headers over 16384 bytes",
            true,
        ),
        (
            format!("GET /healthz HTTP/1.1\r\n{many}\r\n"),
            431,
            "more than 100 headers",
            true,
        ),
        (
            "POST /healthz HTTP/1.1\r\nContent-Length: 1025\r\n\r\n".into(),
            413,
            "request body over 1024 bytes (--max-frame)",
            true,
        ),
        (
            "GET /nope HTTP/1.1\r\n\r\n".into(),
            404,
            "no such path: /nope",
            false,
        ),
        (
            "DELETE /metrics HTTP/1.1\r\n\r\n".into(),
            405,
            "method DELETE not allowed on /metrics; allowed: GET",
            false,
        ),
        (
            "\u{1}GET / HTTP/1.1\r\n\r\n".into(),
            400,
            "malformed request",
            true,
        ),
    ];
    for (request, status, reason, closes) in cases {
        let mut conn = Conn::open(addr);
        conn.send(request.as_bytes());
        let answer = conn.answer();
        assert_eq!(answer.status, status, "{answer:?}");
        assert!(answer.text().starts_with(reason), "{answer:?}");
        assert_eq!(answer.text().lines().count(), 1, "one line: {answer:?}");
        if status == 405 {
            assert_eq!(answer.header("allow"), Some("GET"));
        }
        if closes {
            assert!(conn.closed(), "{status} closes the connection");
        } else {
            conn.send(b"GET /healthz HTTP/1.1\r\n\r\n");
            assert_eq!(conn.answer().status, 200, "{status} keeps the connection");
        }
    }
    // At the limits, not over them: a head of nearly 16 KiB and a body of exactly --max-frame.
    let mut conn = Conn::open(addr);
    let head = format!(
        "POST /healthz HTTP/1.1\r\nX-Big: {}\r\nContent-Length: 1024\r\n\r\n",
        "h".repeat(16_000)
    );
    conn.send(head.as_bytes());
    conn.send(&[b'b'; 1024]);
    assert_eq!(conn.answer().status, 405, "read whole and answered");
    // Each refusal that closes is a line in _server.log.
    let log = std::fs::read_to_string(server.dir.join("_server.log")).unwrap();
    for status in ["431", "413", "400"] {
        assert!(
            log.contains(&format!(": {status} ")),
            "{status} not logged:\n{log}"
        );
    }
}

/// A client that does not finish its head is answered `408` and closed once
/// `--header-timeout` passes, and counted; a client between requests is not.
#[test]
fn slowloris_is_closed_after_the_header_timeout() {
    let dir = TempDir::new("http-slowloris");
    let (_server, addr) = start(&dir, &["--header-timeout", "1s"]);
    let mut idle = Conn::open(addr);
    idle.send(b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(idle.answer().status, 200);
    let mut slow = Conn::open(addr);
    slow.send(b"GET /healthz HTTP/1.1\r\nX-Slow: ");
    let answer = slow.answer();
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.text().starts_with("request head not complete"));
    assert!(slow.closed());
    // The idle keep-alive connection outlived the slow one's timeout and still answers.
    idle.send(b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(idle.answer().status, 200);
    let metrics = get(addr, "/metrics", "").text();
    assert!(
        metrics.contains("logmill_connections_refused_total{reason=\"header_timeout\"} 1"),
        "{metrics}"
    );
}

#[test]
fn healthz_says_ok() {
    let dir = TempDir::new("http-healthz");
    let (_server, addr) = start(&dir, &[]);
    let answer = get(addr, "/healthz", "");
    assert_eq!((answer.status, answer.text().as_str()), (200, "OK\n"));
}

/// `/v1/status` asks for an admin token: none, a wrong scheme, an app's token and a revoked
/// admin token are 401 with `WWW-Authenticate: Bearer`; a valid admin token gets the JSON.
#[test]
fn status_needs_an_admin_token_unless_admin_open() {
    let dir = TempDir::new("http-status");
    // --auth off: the app a hello names is the connection's app (no app token needed here).
    let (server, addr) = start(&dir, &["--auth", "off"]);
    let issue = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_logmill"))
            .args(["token", "issue", "--dir"])
            .arg(&dir.0)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let admin = issue(&["--app", "ops", "--admin"]);
    let app = issue(&["--app", "billing"]);
    // A listed connection to see in the answer.
    let mut client = server.client();
    client.hello("billing", false);
    client.send(&[message("one")]);
    for (authorization, reason) in [
        (String::new(), "admin token required"),
        (
            "Authorization: Basic eDp5\r\n".into(),
            "Authorization is not Bearer",
        ),
        (
            format!("Authorization: Bearer {app}\r\n"),
            "token is not an admin token",
        ),
    ] {
        let answer = get(addr, "/v1/status", &authorization);
        assert_eq!(answer.status, 401, "{answer:?}");
        assert!(
            answer
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer")
        );
        assert!(answer.text().starts_with(reason), "{answer:?}");
    }
    let bearer = format!("Authorization: Bearer {admin}\r\n");
    let status = wait_for("billing in /v1/status", DEADLINE, || {
        let answer = get(addr, "/v1/status", &bearer);
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.header("content-type"), Some("application/json"));
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        (json["billing"]["running_instances"] == 1).then_some(json)
    });
    assert_eq!(status["billing"]["instances"].as_object().unwrap().len(), 1);
    // Revoked: refused from the next request on.
    let jti = {
        let payload = admin.split('.').nth(1).unwrap();
        use base64::Engine as _;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&json).unwrap();
        claims["jti"].as_str().unwrap().to_owned()
    };
    let out = Command::new(env!("CARGO_BIN_EXE_logmill"))
        .args(["token", "revoke", &jti, "--dir"])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let answer = get(addr, "/v1/status", &bearer);
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (401, "token was revoked\n")
    );
    // --admin-open: no token asked.
    let open_dir = TempDir::new("http-status-open");
    let (_open, open_addr) = start(&open_dir, &["--admin-open"]);
    let answer = get(open_addr, "/v1/status", "");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.text().starts_with('{'));
}

/// `/metrics` through `prometheus_client.parser`: it must parse, and its counters must match
/// what was sent.
#[test]
fn metrics_parse_with_prometheus_and_count_what_was_sent() {
    let test = "metrics_parse_with_prometheus_and_count_what_was_sent";
    let Some(python) = tools::require(test, tools::python_grpc()) else {
        return;
    };
    let dir = TempDir::new("http-metrics");
    // --auth off: the app a hello names is the connection's app (no app token needed here).
    let (server, addr) = start(&dir, &["--auth", "off"]);
    let mut billing = server.client();
    billing.hello("billing", true);
    let records: Vec<_> = (0..7).map(|i| message(&format!("r{i}"))).collect();
    billing.send(&records);
    billing.wait_ack(7);
    let mut text = server.connect();
    text.write_all(b"one\ntwo\nthree\n").unwrap();
    drop(text);
    let samples = wait_for("the counts in /metrics", DEADLINE, || {
        let body = get(addr, "/metrics", "").text();
        let samples = parse_metrics(&python, &body);
        let ok = samples.get("logmill_records_received_total{app=billing,protocol=native}")
            == Some(&7.0)
            && samples.get("logmill_records_received_total{app=_anonymous,protocol=text}")
                == Some(&3.0)
            && samples.get("logmill_records_written_total") == Some(&10.0);
        ok.then_some(samples)
    });
    let native_bytes = samples["logmill_bytes_received_total{app=billing,protocol=native}"];
    assert!(native_bytes > 7.0, "{native_bytes}");
    assert_eq!(
        samples["logmill_bytes_received_total{app=_anonymous,protocol=text}"],
        14.0
    );
    assert_eq!(samples["logmill_connections_open{protocol=native}"], 1.0);
    assert_eq!(samples["logmill_max_pending_bytes"], 64.0 * 1024.0 * 1024.0);
    assert_eq!(samples["logmill_degraded"], 0.0);
    assert_eq!(samples["logmill_decode_errors_total{protocol=native}"], 0.0);
    assert!(samples["logmill_writer_batch_records_count"] >= 1.0);
    assert_eq!(samples["logmill_writer_batch_records_sum"], 10.0);
    assert!(samples["logmill_write_duration_seconds_count"] >= 1.0);
    assert!(samples["process_resident_memory_bytes"] > 0.0);
    assert!(samples.contains_key("process_cpu_seconds_total"));
}

/// `{name{label=value,...}: value}` as Python's `prometheus_client` parses `text` (labels in
/// name order, values unquoted).
fn parse_metrics(python: &tools::ClientTool, text: &str) -> HashMap<String, f64> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps(out))
"#;
    let out = common::output_with_stdin(&mut python.command_with_code(SCRIPT), text);
    assert!(out.status.success(), "the parser refused:\n{text}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `logmill bench --idle N --proto http` holds N keep-alive connections and proves they stayed
/// open (each answers a second `GET /healthz` after the hold).
#[test]
fn bench_holds_idle_http_connections() {
    let dir = TempDir::new("http-bench");
    let (_server, addr) = start(&dir, &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_logmill"))
        .args([
            "bench",
            "--idle",
            "50",
            "--proto",
            "http",
            "--idle-secs",
            "0",
        ])
        .args(["--no-progress", "--addr", &addr.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("\"connections\":50"), "{stdout}");
    let refused = Command::new(env!("CARGO_BIN_EXE_logmill"))
        .args(["bench", "--proto", "http", "--addr", &addr.to_string()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("add --idle N"));
}

/// `logmill bench --slowloris N` holds N HTTP connections with unfinished heads on the gRPC
/// port beside the native load, against a server it starts and against `--addr` with
/// `--http-addr`; every record is acked (bench checks) and the N are reported held.
#[test]
fn bench_holds_slowloris_connections_beside_the_load() {
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_logmill"))
            .args(["bench", "--slowloris", "50", "-n", "20000", "--no-progress"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(json["records"], 20000, "{stdout}");
        assert_eq!(json["slowloris"], 50, "{stdout}");
        assert_eq!(json["slowloris_held"], 50, "{stdout}");
        assert!(json["slowloris_closed"].as_u64().is_some(), "{stdout}");
        assert!(stdout.contains("slowloris    50 connections"), "{stdout}");
    };
    run(&[]);
    let dir = TempDir::new("slowloris-bench");
    let (server, http) = start(&dir, &[]);
    let tcp = server.listening["tcp"].as_str().unwrap().to_string();
    run(&["--addr", &tcp, "--http-addr", &http.to_string()]);
    let missing = Command::new(env!("CARGO_BIN_EXE_logmill"))
        .args(["bench", "--slowloris", "5", "--addr", &tcp])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--http-addr"));
}
