//! The browser's protocols on the gRPC port, through the real binary and raw sockets on
//! 127.0.0.1, records checked on disk: gRPC-Web over HTTP/1.1 (binary and text mode, Push and
//! LogMessage, CORS, refusals, pipelining behind a call that waits for the writer), and
//! WebSocket at `/v1/ws`, from Python's `websockets` library (a real third-party client) and
//! from raw frames for the protocol errors.

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use common::http_client::{Answer, open, read_answer, start};
use common::{DEADLINE, TempDir, issue_token, message, read_lines, seq_of, wait_for};
use logmill::protocol::grpc::logmill_v1::{LogRecord, PushRequest, PushResponse, log_record};
use logmill::protocol::grpc_web::{decode_text, encode_text};
use logmill::protocol::native;
use logmill::protocol::websocket::{Opcode, encode_client_frame};
use prost::Message as _;

/// A gRPC-Web request: `message` framed (flag 0, length), base64 in text mode.
fn grpc_web_request(path: &str, text: bool, message: &[u8], extra: &str) -> Vec<u8> {
    let mut body = vec![0];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let (content_type, body) = if text {
        ("application/grpc-web-text", encode_text(&body).into_bytes())
    } else {
        ("application/grpc-web+proto", body)
    };
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nX-Grpc-Web: 1\r\n\
         Content-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    request
}

/// A gRPC-Web answer's frames: the messages and the trailers block.
fn grpc_web_frames(answer: &Answer) -> (Vec<Vec<u8>>, String) {
    let body = if answer
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/grpc-web-text"))
    {
        let mut out = Vec::new();
        decode_text(&answer.body, &mut out).unwrap();
        out
    } else {
        answer.body.clone()
    };
    let (mut messages, mut trailers) = (Vec::new(), String::new());
    let mut at = 0;
    while at + 5 <= body.len() {
        let len = u32::from_be_bytes(body[at + 1..at + 5].try_into().unwrap()) as usize;
        let payload = &body[at + 5..at + 5 + len];
        if body[at] & 0x80 != 0 {
            trailers = String::from_utf8(payload.to_vec()).unwrap();
        } else {
            messages.push(payload.to_vec());
        }
        at += 5 + len;
    }
    assert_eq!(at, body.len(), "trailing bytes in {body:?}");
    (messages, trailers)
}

fn record(text: &str) -> LogRecord {
    LogRecord {
        body: Some(log_record::Body::Message(text.into())),
        level: 3,
        ..LogRecord::default()
    }
}

fn push(texts: &[&str]) -> Vec<u8> {
    PushRequest {
        records: texts.iter().map(|t| record(t)).collect(),
    }
    .encode_to_vec()
}

/// The `PushResponse` of a successful call, its trailers checked.
fn push_response(answer: &Answer) -> PushResponse {
    assert_eq!(answer.status, 200, "{answer:?}");
    let (messages, trailers) = grpc_web_frames(answer);
    assert!(trailers.contains("grpc-status:0\r\n"), "{trailers:?}");
    assert_eq!(messages.len(), 1);
    PushResponse::decode(&messages[0][..]).unwrap()
}

/// The stored line whose message is `text`.
fn line_with<'a>(lines: &'a [String], text: &str) -> &'a String {
    lines
        .iter()
        .find(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no line with {text:?} in {lines:#?}"))
}

#[test]
fn grpc_web_binary_and_text_push_and_log_message() {
    let dir = TempDir::new("web-grpc-web");
    let (server, addr) = start(&dir.0, &["--cors-origin", "http://page.test"]);
    let mut conn = open(addr);
    let origin = "Origin: http://page.test\r\n";
    conn.get_mut()
        .write_all(&grpc_web_request(
            "/logmill.v1.LogService/Push",
            false,
            &push(&["bin-a", "bin-b", "bin-c"]),
            origin,
        ))
        .unwrap();
    let answer = read_answer(&mut conn);
    assert_eq!(
        answer.header("content-type"),
        Some("application/grpc-web+proto")
    );
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("http://page.test")
    );
    let first = push_response(&answer);
    assert_eq!(first.accepted, 3);
    assert_eq!(first.last_seq, first.first_seq + 2);
    // The answer came once the records were written: they are on disk now.
    let lines = read_lines(&dir.0);
    assert_eq!(seq_of(line_with(&lines, "bin-a")), first.first_seq);
    assert_eq!(seq_of(line_with(&lines, "bin-c")), first.last_seq);

    // Text mode, LogMessage, on the same keep-alive connection.
    conn.get_mut()
        .write_all(&grpc_web_request(
            "/logmill.v1.LogService/LogMessage",
            true,
            &record("text-one").encode_to_vec(),
            "",
        ))
        .unwrap();
    let answer = read_answer(&mut conn);
    assert_eq!(
        answer.header("content-type"),
        Some("application/grpc-web-text+proto")
    );
    let second = push_response(&answer);
    assert_eq!((second.accepted, second.first_seq), (1, second.last_seq));
    assert!(second.last_seq > first.last_seq);
    let lines = read_lines(&dir.0);
    assert_eq!(seq_of(line_with(&lines, "text-one")), second.last_seq);

    // `status` lists the connection as grpc-web, and /metrics counts it.
    let status = wait_for("grpc-web in status", DEADLINE, || {
        let out = Command::new(env!("CARGO_BIN_EXE_logmill"))
            .args(["status", "--json", "--addr"])
            .arg(server.addr.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("\"grpc-web\"").then_some(text)
    });
    assert!(status.contains("\"records\":4"), "{status}");
    let metrics = wait_for("grpc-web in /metrics", DEADLINE, || {
        let mut m = open(addr);
        m.get_mut()
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let text = String::from_utf8(read_answer(&mut m).body).unwrap();
        text.contains("logmill_records_received_total{protocol=\"grpc-web\"")
            .then_some(text)
    });
    assert!(
        metrics.contains("logmill_connections_open{protocol=\"grpc-web\"} 1"),
        "{metrics}"
    );
}

#[test]
fn grpc_web_cors_refusals_and_pipelining() {
    let dir = TempDir::new("web-grpc-web-cors");
    let (_server, addr) = start(
        &dir.0,
        &["--cors-origin", "http://a.test, https://b.test:8443"],
    );
    // Preflight: an allowed origin, then a refused one.
    let mut conn = open(addr);
    conn.get_mut()
        .write_all(
            b"OPTIONS /logmill.v1.LogService/Push HTTP/1.1\r\nHost: x\r\nOrigin: https://b.test:8443\r\n\
              Access-Control-Request-Method: POST\r\n\r\n\
              OPTIONS /logmill.v1.LogService/Push HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.test\r\n\
              Access-Control-Request-Method: POST\r\n\r\n",
        )
        .unwrap();
    let allowed = read_answer(&mut conn);
    assert_eq!(allowed.status, 204, "{allowed:?}");
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://b.test:8443")
    );
    assert!(
        allowed
            .header("access-control-allow-headers")
            .unwrap()
            .contains("x-grpc-web")
    );
    assert!(
        allowed
            .header("access-control-expose-headers")
            .unwrap()
            .contains("grpc-status")
    );
    let refused = read_answer(&mut conn);
    assert_eq!(refused.status, 403);
    assert!(String::from_utf8_lossy(&refused.body).contains("--cors-origin"));
    assert_eq!(refused.header("access-control-allow-origin"), None);

    // A streaming method: trailers-only UNIMPLEMENTED (12), with the CORS headers.
    conn.get_mut()
        .write_all(&grpc_web_request(
            "/logmill.v1.LogService/PushStream",
            false,
            &push(&["never"]),
            "Origin: http://a.test\r\n",
        ))
        .unwrap();
    let answer = read_answer(&mut conn);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("grpc-status"), Some("12"), "{answer:?}");
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("http://a.test")
    );

    // Two calls and a GET pipelined in one write: the second call is read only once the first
    // is answered, and every answer comes, in order.
    let mut pipelined = grpc_web_request("/logmill.v1.LogService/Push", false, &push(&["p1"]), "");
    pipelined.extend(grpc_web_request(
        "/logmill.v1.LogService/Push",
        false,
        &push(&["p2", "p3"]),
        "",
    ));
    pipelined.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    conn.get_mut().write_all(&pipelined).unwrap();
    let one = push_response(&read_answer(&mut conn));
    let two = push_response(&read_answer(&mut conn));
    assert_eq!((one.accepted, two.accepted), (1, 2));
    assert_eq!(two.first_seq, one.last_seq + 1);
    assert_eq!(two.last_seq, one.last_seq + 2);
    let health = read_answer(&mut conn);
    assert_eq!((health.status, health.body.as_slice()), (200, &b"OK\n"[..]));
    let lines = read_lines(&dir.0);
    assert_eq!(seq_of(line_with(&lines, "p3")), two.last_seq);
    assert!(!lines.iter().any(|l| l.contains("never")));
}

#[test]
fn grpc_web_bad_token_is_unauthenticated() {
    let dir = TempDir::new("web-grpc-web-auth");
    let token = issue_token(&dir.0, "web");
    let (_server, addr) = start(&dir.0, &["--auth", "required"]);
    let mut conn = open(addr);
    conn.get_mut()
        .write_all(&grpc_web_request(
            "/logmill.v1.LogService/Push",
            false,
            &push(&["refused"]),
            "Authorization: Bearer not.a.token\r\n",
        ))
        .unwrap();
    let answer = read_answer(&mut conn);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("grpc-status"), Some("16"), "{answer:?}");
    assert!(answer.body.is_empty());
    // The genuine token writes to its app's files.
    conn.get_mut()
        .write_all(&grpc_web_request(
            "/logmill.v1.LogService/Push",
            false,
            &push(&["admitted"]),
            &format!("Authorization: Bearer {token}\r\n"),
        ))
        .unwrap();
    let reply = push_response(&read_answer(&mut conn));
    let lines = read_lines(&dir.0.join("web"));
    assert_eq!(seq_of(line_with(&lines, "admitted")), reply.last_seq);
    let log = std::fs::read_to_string(dir.0.join("_server.log")).unwrap();
    assert!(log.contains("gRPC-Web call from"), "{log}");
}

// ---- WebSocket ----

/// Opens `/v1/ws?query` with `headers`, and returns the stream after a `101`, or the answer.
fn ws_open(addr: SocketAddr, query: &str, headers: &str) -> Result<TcpStream, Answer> {
    let mut reader = open(addr);
    reader
        .get_mut()
        .write_all(
            format!(
                "GET /v1/ws?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let answer = read_answer(&mut reader);
    if answer.status != 101 {
        return Err(answer);
    }
    assert_eq!(
        answer.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert!(reader.buffer().is_empty());
    Ok(reader.into_inner())
}

/// The next frame the server sent: opcode and payload (server frames are unmasked).
fn ws_read(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0; 2];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut l = [0; 2];
            stream.read_exact(&mut l).unwrap();
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0; 8];
            stream.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    stream.read_exact(&mut payload).unwrap();
    (head[0] & 0x0f, payload)
}

fn ws_send(stream: &mut TcpStream, opcode: Opcode, payload: &[u8]) {
    let mut frame = Vec::new();
    encode_client_frame(true, opcode, [1, 2, 3, 4], payload, &mut frame);
    stream.write_all(&frame).unwrap();
}

/// The code of a close frame the server sent.
fn close_code(frame: &(u8, Vec<u8>)) -> u16 {
    assert_eq!(frame.0, 8, "not a close frame: {frame:?}");
    u16::from_be_bytes([frame.1[0], frame.1[1]])
}

#[test]
fn websocket_raw_ping_close_and_protocol_errors() {
    let dir = TempDir::new("web-ws-raw");
    let (server, addr) = start(&dir.0, &["--max-frame", "1024"]);
    // Ping -> pong, a record, close handshake.
    let mut ws = ws_open(addr, "acks=1", "").unwrap();
    ws_send(&mut ws, Opcode::Ping, b"abc");
    assert_eq!(ws_read(&mut ws), (10, b"abc".to_vec()));
    ws_send(&mut ws, Opcode::Text, br#"{"msg":"raw one"}"#);
    let (op, ack) = ws_read(&mut ws);
    assert_eq!(op, 1);
    let ack: serde_json::Value = serde_json::from_slice(&ack).unwrap();
    assert_eq!(ack["ack"], 1);
    // Listed in `status` as a websocket connection, and counted so by /metrics.
    wait_for("websocket in status", DEADLINE, || {
        let out = Command::new(env!("CARGO_BIN_EXE_logmill"))
            .args(["status", "--json", "--addr"])
            .arg(server.addr.to_string())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .contains("\"socket\":\"websocket\"")
            .then_some(())
    });
    wait_for("websocket in /metrics", DEADLINE, || {
        let mut m = open(addr);
        m.get_mut()
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let text = String::from_utf8(read_answer(&mut m).body).unwrap();
        (text.contains("logmill_connections_open{protocol=\"websocket\"} 1")
            && text.contains("logmill_records_received_total{protocol=\"websocket\""))
        .then_some(())
    });
    ws_send(&mut ws, Opcode::Close, &1000u16.to_be_bytes());
    assert_eq!(close_code(&ws_read(&mut ws)), 1000);
    let mut rest = Vec::new();
    ws.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let lines = read_lines(&dir.0);
    assert_eq!(
        seq_of(line_with(&lines, "raw one")),
        ack["last_seq"].as_u64().unwrap()
    );

    // An unmasked frame: 1002.
    let mut ws = ws_open(addr, "", "").unwrap();
    ws.write_all(&[0x81, 2, b'h', b'i']).unwrap();
    assert_eq!(close_code(&ws_read(&mut ws)), 1002);
    // A message over --max-frame: 1009.
    let mut ws = ws_open(addr, "", "").unwrap();
    ws_send(&mut ws, Opcode::Binary, &[0; 2000]);
    assert_eq!(close_code(&ws_read(&mut ws)), 1009);

    // Upgrade refusals: their status and one line; 426 names the version.
    let answer = ws_open(addr, "", "Sec-WebSocket-Version: 8\r\n").unwrap_err();
    // A second, different version header is one this server does not speak.
    assert_eq!(answer.status, 426, "{answer:?}");
    assert_eq!(answer.header("sec-websocket-version"), Some("13"));
    let mut plain = open(addr);
    plain
        .get_mut()
        .write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut plain);
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body.iter().filter(|&&b| b == b'\n').count(), 1);
}

#[test]
fn websocket_from_python_websockets() {
    let test = "websocket_from_python_websockets";
    let Some(python) = tools::require(test, tools::python_grpc()) else {
        return;
    };
    let dir = TempDir::new("web-ws-python");
    let token = issue_token(&dir.0, "browser");
    let (server, addr) = start(&dir.0, &["--auth", "optional"]);
    let mut native_frame = Vec::new();
    native::encode_records(
        &[message("native one"), message("native two")],
        &mut native_frame,
    );
    let hex: String = native_frame[4..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let messages = serde_json::json!([
        {"text": r#"{"msg":"object one","level":"error"}"#},
        {"text": r#"[{"msg":"array one"},{"msg":"array two"}]"#},
        {"binary_hex": hex},
    ]);
    let run = |args: &[&str], stdin: &str| -> serde_json::Value {
        let out = common::output_with_stdin(python.command("ws_client.py").args(args), stdin);
        assert!(
            out.status.success(),
            "ws_client.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // Token in the query, as a browser sends it; acks awaited for all 5 records.
    let url = format!("ws://{addr}/v1/ws?token={token}&acks=1&instance=tab-1");
    let out = run(&["send", &url, "", "5"], &messages.to_string());
    assert_eq!(out["close_code"], 1000, "{out}");
    let last = out["acks"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ack"], 5);
    let lines = read_lines(&dir.0.join("browser"));
    assert_eq!(lines.len(), 5, "{lines:#?}");
    for text in [
        "object one",
        "array one",
        "array two",
        "native one",
        "native two",
    ] {
        line_with(&lines, text);
    }
    let last_seq = lines.iter().map(|l| seq_of(l)).max().unwrap();
    assert_eq!(last["last_seq"].as_u64(), Some(last_seq));
    assert!(line_with(&lines, "object one").contains("tab-1"));

    // Token in the Authorization header.
    let url = format!("ws://{addr}/v1/ws?acks=1");
    let messages = serde_json::json!([{"text": r#"{"msg":"by header"}"#}]);
    let out = run(&["send", &url, &token, "1"], &messages.to_string());
    assert_eq!(out["acks"][0]["ack"], 1, "{out}");
    line_with(&read_lines(&dir.0.join("browser")), "by header");

    // A refused token: 401 with one line.
    let url = format!("ws://{addr}/v1/ws?token=not.a.token");
    let out = run(&["refused", &url], "");
    assert_eq!(out["status"], 401, "{out}");
    let body = out["body"].as_str().unwrap();
    assert_eq!(body.matches('\n').count(), 1, "{body:?}");
    let log = std::fs::read_to_string(dir.0.join("_server.log")).unwrap();
    assert!(log.contains("WebSocket upgrade from"), "{log}");
    assert!(
        server.health().contains("refused_auth=1"),
        "{}",
        server.health()
    );
}

#[test]
fn cors_origin_is_checked_at_start_up_and_explained_in_help() {
    let dir = TempDir::new("web-cors-flag");
    for bad in ["ftp://page.test", "http://page.test/path", "page.test"] {
        let out = Command::new(env!("CARGO_BIN_EXE_logmill"))
            .args(["serve", "--port", "0", "--grpc-port", "0", "--dir"])
            .arg(&dir.0)
            .args(["--cors-origin", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--cors-origin"), "{bad}: {stderr}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_logmill"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--cors-origin <ORIGIN>"), "{help}");
    assert!(help.contains("gRPC-Web"), "{help}");
}
