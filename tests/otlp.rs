//! OTLP/HTTP logs (`POST /v1/logs`) through the real binary and raw requests on 127.0.0.1:
//! protobuf, JSON and gzip bodies mapped onto records (checked on disk), and every refusal with
//! its status, its `google.rpc.Status` body and its line in `_server.log`. (OTLP/gRPC is in
//! `tests/grpc_driver.rs`, the backpressure `503` in `tests/lifecycle.rs`'s full-disk test, the
//! real OpenTelemetry SDKs in `tests/otlp_clients.rs`.)

mod common;

use std::io::Write as _;
use std::path::Path;

use common::http_client::{Answer, Conn, start};
use common::{DEADLINE, TempDir, issue_token, read_lines, wait_for};
use logmill::protocol::otlp::proto::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value,
};
use logmill::protocol::otlp::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use logmill::protocol::otlp::proto::resource::v1::Resource;
use logmill::protocol::otlp::{self, ExportLogsServiceRequest, RpcStatus};
use prost::Message as _;

const PROTOBUF: &str = "Content-Type: application/x-protobuf";
const JSON: &str = "Content-Type: application/json";

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

/// A request as an SDK sends one: a resource (`service.name`, `host.name`, one more), a scope,
/// and `messages` as records with a severity, attributes and trace context.
fn request(messages: &[&str]) -> Vec<u8> {
    use any_value::Value as V;
    let records = messages
        .iter()
        .map(|m| LogRecord {
            time_unix_nano: 1_700_000_000_123_456_789,
            severity_number: 13,
            severity_text: "WARN".into(),
            body: text(m),
            attributes: vec![
                kv("http.status", V::IntValue(502)),
                kv("retry", V::BoolValue(true)),
            ],
            trace_id: (1..=16).collect(),
            span_id: (1..=8).collect(),
            flags: 1,
            ..LogRecord::default()
        })
        .collect();
    otlp::encode_request(&ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", V::StringValue("checkout".into())),
                    kv("host.name", V::StringValue("web-1".into())),
                    kv("deployment.environment", V::StringValue("prod".into())),
                ],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "payments".into(),
                    version: "2.1".into(),
                    ..InstrumentationScope::default()
                }),
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    })
}

/// The same shape in the OTLP JSON mapping, with a key/value body and no time of its own.
const JSON_REQUEST: &str = r#"{"resourceLogs":[{"resource":{"attributes":[
  {"key":"service.name","value":{"stringValue":"checkout"}}]},
  "scopeLogs":[{"scope":{"name":"payments"},"logRecords":[
    {"observedTimeUnixNano":"1700000001000000000","severityNumber":21,
     "body":{"kvlistValue":{"values":[{"key":"order","value":{"intValue":"42"}}]}},
     "traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",
     "eventName":"payment.failed"}]}]}]}"#;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn rpc_status(answer: &Answer) -> RpcStatus {
    RpcStatus::decode(answer.body.as_slice())
        .unwrap_or_else(|e| panic!("not a google.rpc.Status ({e}): {answer:?}"))
}

fn json_lines(dir: &Path, n: usize) -> Vec<serde_json::Value> {
    let lines = wait_for("the records on disk", DEADLINE, || {
        let lines = read_lines(dir);
        (lines.len() >= n).then_some(lines)
    });
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Protobuf, gzip protobuf and JSON, on one keep-alive connection: each answered `200` with an
/// `ExportLogsServiceResponse` in its own encoding, and the records on disk as the README's
/// table maps them.
#[test]
fn otlp_http_records_arrive_mapped_in_every_encoding() {
    let dir = TempDir::new("otlp-http-mapped");
    let (server, http) = start(&dir.0, &["--format", "json"]);
    let mut conn = Conn::open(http);

    conn.post("/v1/logs", &[PROTOBUF], &request(&["one", "two"]));
    let answer = conn.answer();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/x-protobuf")
    );
    let response = otlp::decode_response(&answer.body).unwrap();
    assert_eq!(response.partial_success, None, "nothing refused");

    conn.post(
        "/v1/logs",
        &[PROTOBUF, "Content-Encoding: gzip"],
        &gzip(&request(&["three"])),
    );
    assert_eq!(conn.answer().status, 200);

    conn.post("/v1/logs", &[JSON], JSON_REQUEST.as_bytes());
    let answer = conn.answer();
    assert_eq!((answer.status, answer.text().as_str()), (200, "{}"));
    assert_eq!(answer.header("content-type"), Some("application/json"));

    let lines = json_lines(&dir.0, 4);
    let messages: Vec<_> = lines.iter().map(|l| l["message"].clone()).collect();
    assert_eq!(messages[..3], ["one", "two", "three"]);
    let first = &lines[0];
    assert_eq!(first["time"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(first["level"], "warning");
    assert_eq!(first["service"], "checkout");
    assert_eq!(first["host"], "web-1");
    assert_eq!(first["logger"], "payments");
    let fields = &first["fields"];
    assert_eq!(fields["http.status"], 502);
    assert_eq!(fields["retry"], true);
    assert_eq!(fields["deployment.environment"], "prod");
    assert_eq!(fields["otel.scope.version"], "2.1");
    assert_eq!(fields["trace_id"], "0102030405060708090a0b0c0d0e0f10");
    assert_eq!(fields["span_id"], "0102030405060708");
    assert_eq!(fields["trace_flags"], 1);
    assert!(
        fields.get("severity_text").is_none(),
        "WARN names the level: {first}"
    );

    let json = &lines[3];
    assert_eq!(json["time"], "2023-11-14T22:13:21.000000Z", "observed time");
    assert_eq!(json["level"], "critical");
    assert_eq!(json["json"], serde_json::json!({"order": 42}));
    assert_eq!(json["fields"]["event_name"], "payment.failed");
    assert_eq!(
        json["fields"]["trace_id"],
        "0102030405060708090a0b0c0d0e0f10"
    );
    drop(server);
}

/// Records with malformed ids are refused one by one: `partial_success` counts them and says
/// why, the rest are stored, and the server's log says it too.
#[test]
fn otlp_http_partial_success() {
    let dir = TempDir::new("otlp-http-partial");
    let (server, http) = start(&dir.0, &["--format", "json"]);
    let body = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
        {"body":{"stringValue":"kept"}},
        {"body":{"stringValue":"refused"},"traceId":"0102"},
        {"body":{"stringValue":"kept too"},"spanId":"0102030405060708"}]}]}]}"#;
    let mut conn = Conn::open(http);
    conn.post("/v1/logs", &[JSON], body.as_bytes());
    let answer = conn.answer();
    assert_eq!(answer.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["partialSuccess"]["rejectedLogRecords"], "1");
    let why = json["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(why.contains("log_records[1]: trace_id is 2 bytes"), "{why}");
    let lines = json_lines(&dir.0, 2);
    let messages: Vec<_> = lines.iter().map(|l| l["message"].clone()).collect();
    assert_eq!(messages, ["kept", "kept too"]);
    let log = std::fs::read_to_string(dir.0.join("_server.log")).unwrap();
    assert!(log.contains("1 of 3 log records rejected"), "{log}");
    drop(server);
}

/// Every refusal the exporter must not retry: its status, a `google.rpc.Status` (or, when the
/// request named no OTLP encoding, a line of text) saying what to do, nothing stored, a line in
/// `_server.log`; the keep-alive connection still serves the next request, except after a body
/// over `--max-frame`, which is not read at all (`413` and close).
#[test]
fn otlp_http_every_refusal_has_its_status() {
    let dir = TempDir::new("otlp-http-refusals");
    let (server, http) = start(&dir.0, &["--format", "json", "--max-frame", "64KiB"]);
    let mut conn = Conn::open(http);

    // Wrong methods: 405 and what is allowed.
    for method in ["GET", "PUT", "DELETE"] {
        conn.send(format!("{method} /v1/logs HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let answer = conn.answer();
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.header("allow"), Some("POST, OPTIONS"));
    }
    // Unknown content type or encoding: 415, in text (no encoding to answer in).
    for headers in [
        &["Content-Type: text/plain"][..],
        &[][..],
        &[PROTOBUF, "Content-Encoding: br"][..],
    ] {
        conn.post("/v1/logs", headers, b"x");
        let answer = conn.answer();
        assert_eq!(answer.status, 415, "{headers:?}");
        assert!(answer.text().contains("send "), "{}", answer.text());
    }
    // Bad data: 400, INVALID_ARGUMENT in the request's encoding.
    conn.post("/v1/logs", &[PROTOBUF], b"\x0a\x05\x08");
    let answer = conn.answer();
    assert_eq!(answer.status, 400);
    let status = rpc_status(&answer);
    assert_eq!(status.code, 3);
    assert!(status.message.contains("invalid protobuf"), "{status:?}");

    conn.post(
        "/v1/logs",
        &[JSON],
        br#"{"resourceLogs":[{"scopeLogs":7}]}"#,
    );
    let answer = conn.answer();
    assert_eq!(answer.status, 400);
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["code"], 3);
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("invalid OTLP JSON")
    );

    conn.post(
        "/v1/logs",
        &[PROTOBUF, "Content-Encoding: gzip"],
        b"not gzip",
    );
    let answer = conn.answer();
    assert_eq!((answer.status, rpc_status(&answer).code), (400, 3));

    // A gzip bomb: 16 MiB of zeroes in about 16 KiB, refused at --max-frame of inflated bytes.
    let bomb = gzip(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    conn.post("/v1/logs", &[PROTOBUF, "Content-Encoding: gzip"], &bomb);
    let answer = conn.answer();
    assert_eq!(answer.status, 413);
    let status = rpc_status(&answer);
    assert_eq!(status.code, 8, "RESOURCE_EXHAUSTED");
    assert!(status.message.contains("after inflating"), "{status:?}");

    // Still serving: a good request on the same connection.
    conn.post("/v1/logs", &[PROTOBUF], &request(&["after the refusals"]));
    assert_eq!(conn.answer().status, 200);

    // A body over --max-frame is not read: 413, and the connection closes.
    let big = vec![b'x'; 65 * 1024];
    conn.post("/v1/logs", &[PROTOBUF], &big);
    let answer = conn.answer();
    assert_eq!(answer.status, 413);
    assert!(conn.closed());

    let lines = json_lines(&dir.0, 1);
    assert_eq!(lines.len(), 1, "only the good request stored: {lines:?}");
    let log = std::fs::read_to_string(dir.0.join("_server.log")).unwrap();
    let refusals = log.matches("OTLP/HTTP request from").count();
    assert_eq!(refusals, 7, "415 x3, 400 x3, 413: {log}");
    drop(server);
}

/// `--auth required`: no token or a bad one is `401` with `WWW-Authenticate`; the app's token
/// stores the records in its bucket. A page's exporter gets its CORS preflight answered.
#[test]
fn otlp_http_tokens_and_cors() {
    let dir = TempDir::new("otlp-http-tokens");
    let token = issue_token(&dir.0, "shop");
    let (server, http) = start(
        &dir.0,
        &[
            "--format",
            "json",
            "--auth",
            "required",
            "--cors-origin",
            "https://app.example",
        ],
    );
    let mut conn = Conn::open(http);
    for auth in [None, Some("Bearer not.a.token"), Some("Basic dXNlcg==")] {
        let header = auth.map(|a| format!("Authorization: {a}"));
        let mut headers = vec![PROTOBUF];
        headers.extend(header.as_deref());
        conn.post("/v1/logs", &headers, &request(&["refused"]));
        let answer = conn.answer();
        assert_eq!(answer.status, 401, "{auth:?}");
        assert!(
            answer
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer")
        );
        assert_eq!(rpc_status(&answer).code, 16, "UNAUTHENTICATED");
    }
    let bearer = format!("Authorization: Bearer {token}");
    conn.post(
        "/v1/logs",
        &[JSON, &bearer, "Origin: https://app.example"],
        JSON_REQUEST.as_bytes(),
    );
    let answer = conn.answer();
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let lines = json_lines(&dir.0.join("shop"), 1);
    assert_eq!(lines[0]["app"], "shop");
    assert_eq!(lines[0]["level"], "critical");

    conn.send(
        b"OPTIONS /v1/logs HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n\
          Access-Control-Request-Method: POST\r\n\r\n",
    );
    let answer = conn.answer();
    assert_eq!(answer.status, 204);
    let allowed = answer.header("access-control-allow-headers").unwrap();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    let log = std::fs::read_to_string(dir.0.join("_server.log")).unwrap();
    assert_eq!(log.matches("answered 401").count(), 3, "{log}");
    drop(server);
}
