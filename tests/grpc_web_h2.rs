//! gRPC-Web over HTTP/2 on the gRPC port, against the real binary on 127.0.0.1 with the `h2`
//! crate as the client (a tokio runtime, tests only, as in tests/auth.rs): binary and text mode
//! `Push` and `LogMessage` answered in gRPC-Web form (a data frame and a 0x80 trailers frame in
//! ordinary DATA frames, no HTTP/2 trailers) once their records are on disk; refusals
//! trailers-only; the streaming methods UNIMPLEMENTED; CORS headers and the `OPTIONS` preflight.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use prost::Message as _;

use common::http_client::start;
use common::{DEADLINE, TempDir, read_lines, seq_of};
use logmill::protocol::grpc::health_v1::HealthCheckResponse;
use logmill::protocol::grpc::logmill_v1::{LogRecord, PushRequest, PushResponse, log_record};
use logmill::protocol::grpc::{self, percent_decode};
use logmill::protocol::grpc_web::{decode_text, encode_text};

const PUSH: &str = "/logmill.v1.LogService/Push";
const LOG_MESSAGE: &str = "/logmill.v1.LogService/LogMessage";
const BINARY: &str = "application/grpc-web+proto";
const TEXT: &str = "application/grpc-web-text";

/// What came back for one request.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    /// HTTP/2 trailers: a gRPC-Web answer has none.
    trailers: Option<HeaderMap>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The body's frames (flag, payload), base64 undone when the answer is text.
    fn frames(&self) -> Vec<(u8, Vec<u8>)> {
        let binary = if self.header("content-type").unwrap().contains("-text") {
            let mut out = Vec::new();
            decode_text(&self.body, &mut out).unwrap();
            out
        } else {
            self.body.clone()
        };
        let mut rest = &binary[..];
        let mut frames = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
            frames.push((rest[0], rest[5..5 + len].to_vec()));
            rest = &rest[5 + len..];
        }
        frames
    }

    /// The reply message of a successful call: one data frame, then trailers saying status 0.
    fn reply(&self) -> Vec<u8> {
        assert_eq!(self.status, 200);
        assert!(
            self.trailers.is_none(),
            "HTTP/2 trailers on a gRPC-Web answer"
        );
        let frames = self.frames();
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert_eq!(frames[0].0, 0);
        assert_eq!(frames[1].0, 0x80);
        let trailers = String::from_utf8(frames[1].1.clone()).unwrap();
        assert!(trailers.starts_with("grpc-status:0\r\n"), "{trailers:?}");
        frames[0].1.clone()
    }

    /// A trailers-only answer's status and message: in the headers, with an empty body.
    fn trailers_only(&self) -> (u32, String) {
        assert_eq!(self.status, 200);
        assert!(self.body.is_empty(), "{:?}", self.body);
        assert!(self.trailers.is_none());
        let code = self.header("grpc-status").unwrap().parse().unwrap();
        let message = percent_decode(self.header("grpc-message").unwrap_or_default());
        (code, message)
    }
}

/// One request over a fresh h2 connection; the body is sent in DATA frames of `piece` bytes
/// (so that a text body's base64 is cut inside its quanta).
fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    piece: usize,
) -> Answer {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(DEADLINE, async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (client, connection) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    eprintln!("client connection ended: {e}");
                }
            });
            let mut request = Request::builder()
                .method(method)
                .uri(format!("http://logmill{path}"));
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            let mut client = client.ready().await.unwrap();
            let empty = body.is_empty();
            let (response, mut send) = client
                .send_request(request.body(()).unwrap(), empty)
                .unwrap();
            let pieces: Vec<&[u8]> = body.chunks(piece.max(1)).collect();
            for (i, chunk) in pieces.iter().enumerate() {
                send.send_data(Bytes::copy_from_slice(chunk), i + 1 == pieces.len())
                    .unwrap();
            }
            let response = response.await.unwrap();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let mut stream = response.into_body();
            let mut body = Vec::new();
            while let Some(chunk) = stream.data().await {
                let chunk = chunk.unwrap();
                stream.flow_control().release_capacity(chunk.len()).unwrap();
                body.extend_from_slice(&chunk);
            }
            let trailers = stream.trailers().await.unwrap();
            Answer {
                status,
                headers,
                body,
                trailers,
            }
        })
        .await
        .expect("the h2 request did not finish")
    })
}

fn record(text: &str) -> LogRecord {
    LogRecord {
        body: Some(log_record::Body::Message(text.into())),
        level: 3,
        ..LogRecord::default()
    }
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    grpc::encode_message(payload, &mut out);
    out
}

fn push_body(texts: &[&str]) -> Vec<u8> {
    let request = PushRequest {
        records: texts.iter().map(|t| record(t)).collect(),
    };
    framed(&request.encode_to_vec())
}

/// The stored line whose message ends with `text`.
fn line_with<'a>(lines: &'a [String], text: &str) -> &'a String {
    lines
        .iter()
        .find(|l| l.ends_with(&format!(" {text}")))
        .unwrap_or_else(|| panic!("no line with {text:?} in {lines:#?}"))
}

/// Binary and text mode `Push` and `LogMessage` over h2: each answered in gRPC-Web form
/// (content type of its mode, data + trailers frames, base64 in text mode, no HTTP/2
/// trailers) with the `PushResponse` whose seqs are the stored lines', and the CORS headers for
/// the allowed origin.
#[test]
fn grpc_web_on_h2_push_and_log_message_binary_and_text() {
    let dir = TempDir::new("h2web-push");
    let (server, addr) = start(&dir.0, &["--cors-origin", "http://page.test"]);
    let origin = ("origin", "http://page.test");

    let binary = call(
        addr,
        Method::POST,
        PUSH,
        &[("content-type", BINARY), origin],
        push_body(&["bin-a", "bin-b", "bin-c"]),
        7,
    );
    assert_eq!(binary.header("content-type"), Some(BINARY));
    assert_eq!(
        binary.header("access-control-allow-origin"),
        Some("http://page.test")
    );
    assert!(
        binary
            .header("access-control-expose-headers")
            .unwrap()
            .contains("grpc-status")
    );
    let reply = PushResponse::decode(&binary.reply()[..]).unwrap();
    assert_eq!(reply.accepted, 3);
    let lines = read_lines(&dir.0);
    assert_eq!(seq_of(line_with(&lines, "bin-a")), reply.first_seq);
    assert_eq!(seq_of(line_with(&lines, "bin-c")), reply.last_seq);
    assert_eq!(reply.last_seq, reply.first_seq + 2);

    // Text mode, the base64 cut every 5 bytes: inside its 4-character quanta.
    let text = call(
        addr,
        Method::POST,
        PUSH,
        &[("content-type", TEXT), ("logmill-app", "webapp")],
        encode_text(&push_body(&["text-a", "text-b"])).into_bytes(),
        5,
    );
    assert_eq!(
        text.header("content-type"),
        Some("application/grpc-web-text+proto")
    );
    assert!(
        text.body
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)),
        "not base64: {:?}",
        String::from_utf8_lossy(&text.body)
    );
    assert_eq!(text.header("access-control-allow-origin"), None);
    let reply = PushResponse::decode(&text.reply()[..]).unwrap();
    assert_eq!(reply.accepted, 2);
    // Without a token, `logmill-app` is a label on an anonymous record (as on gRPC).
    let lines = read_lines(&dir.0);
    assert!(line_with(&lines, "text-a").contains(" webapp/127.0.0.1 "));
    assert_eq!(seq_of(line_with(&lines, "text-a")), reply.first_seq);
    assert_eq!(seq_of(line_with(&lines, "text-b")), reply.last_seq);

    // Text mode without its padding: the last piece is decoded when the body ends.
    let body = encode_text(&push_body(&["unpadded"]));
    assert!(body.ends_with('='), "{body}");
    let unpadded = call(
        addr,
        Method::POST,
        PUSH,
        &[("content-type", TEXT)],
        body.trim_end_matches('=').as_bytes().to_vec(),
        5,
    );
    let reply = PushResponse::decode(&unpadded.reply()[..]).unwrap();
    assert_eq!(reply.accepted, 1);
    assert_eq!(
        seq_of(line_with(&read_lines(&dir.0), "unpadded")),
        reply.first_seq
    );

    // LogMessage, binary.
    let one = call(
        addr,
        Method::POST,
        LOG_MESSAGE,
        &[("content-type", "application/grpc-web"), origin],
        framed(&record("one-binary").encode_to_vec()),
        1024,
    );
    let reply = PushResponse::decode(&one.reply()[..]).unwrap();
    assert_eq!((reply.accepted, reply.first_seq), (1, reply.last_seq));
    assert_eq!(
        seq_of(line_with(&read_lines(&dir.0), "one-binary")),
        reply.first_seq
    );

    // LogMessage, text, flushed in two padded pieces: a padded quantum mid-body.
    let message = framed(&record("one-text").encode_to_vec());
    let (head, tail) = message.split_at(4);
    let body = format!("{}{}", encode_text(head), encode_text(tail));
    assert!(body[..body.len() - 1].contains('='), "{body}");
    let one = call(
        addr,
        Method::POST,
        LOG_MESSAGE,
        &[("content-type", "application/grpc-web-text+proto")],
        body.into_bytes(),
        3,
    );
    let reply = PushResponse::decode(&one.reply()[..]).unwrap();
    assert_eq!(reply.accepted, 1);
    assert_eq!(
        seq_of(line_with(&read_lines(&dir.0), "one-text")),
        reply.first_seq
    );

    // Health Check answers in gRPC-Web form too.
    let health = call(
        addr,
        Method::POST,
        "/grpc.health.v1.Health/Check",
        &[("content-type", BINARY)],
        framed(&[]),
        1024,
    );
    let reply = HealthCheckResponse::decode(&health.reply()[..]).unwrap();
    assert_eq!(reply.status, 1, "SERVING");
    assert!(server.stop().success());
}

/// Refusals over h2 are trailers-only gRPC-Web answers: a bad token UNAUTHENTICATED (and a
/// `_server.log` line), `PushStream` UNIMPLEMENTED, a broken text body INTERNAL; nothing is
/// stored. The `OPTIONS` preflight allows the configured origin only.
#[test]
fn grpc_web_on_h2_refusals_and_preflight() {
    let dir = TempDir::new("h2web-refusals");
    let (server, addr) = start(&dir.0, &["--cors-origin", "http://page.test"]);
    let origin = ("origin", "http://page.test");

    let bad = call(
        addr,
        Method::POST,
        PUSH,
        &[
            ("content-type", TEXT),
            ("authorization", "Bearer not-a-token"),
            origin,
        ],
        encode_text(&push_body(&["refused"])).into_bytes(),
        1024,
    );
    assert_eq!(
        bad.header("content-type"),
        Some("application/grpc-web-text+proto")
    );
    assert_eq!(
        bad.header("access-control-allow-origin"),
        Some("http://page.test")
    );
    let (code, message) = bad.trailers_only();
    assert_eq!(code, 16, "{message}");
    assert!(message.contains("token is not a JWT"), "{message}");

    let stream = call(
        addr,
        Method::POST,
        "/logmill.v1.LogService/PushStream",
        &[("content-type", BINARY)],
        push_body(&["streamed"]),
        1024,
    );
    let (code, message) = stream.trailers_only();
    assert_eq!(code, 12, "{message}");
    assert!(message.contains("streaming"), "{message}");

    let broken = call(
        addr,
        Method::POST,
        PUSH,
        &[("content-type", TEXT)],
        b"not base64!!".to_vec(),
        1024,
    );
    let (code, message) = broken.trailers_only();
    assert_eq!(code, 13, "{message}");

    let json = call(
        addr,
        Method::POST,
        PUSH,
        &[("content-type", "application/grpc-web+json")],
        b"{}".to_vec(),
        1024,
    );
    assert_eq!(json.status, 415);

    let preflight = call(
        addr,
        Method::OPTIONS,
        PUSH,
        &[origin, ("access-control-request-method", "POST")],
        Vec::new(),
        1,
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("http://page.test")
    );
    assert!(
        preflight
            .header("access-control-allow-headers")
            .unwrap()
            .contains("authorization")
    );
    let other = call(
        addr,
        Method::OPTIONS,
        PUSH,
        &[("origin", "http://elsewhere.test")],
        Vec::new(),
        1,
    );
    assert_eq!(other.status, 403);
    assert_eq!(other.header("access-control-allow-origin"), None);

    let log = common::wait_for("the refusal in _server.log", DEADLINE, || {
        let log = std::fs::read_to_string(dir.0.join("_server.log")).ok()?;
        log.contains("answered UNAUTHENTICATED").then_some(log)
    });
    assert!(log.contains("token is not a JWT"), "{log}");
    assert!(read_lines(&dir.0).is_empty());
    assert!(server.stop().success());
}
