//! OTLP/HTTP logs (`POST /v1/logs`), for the HTTP session to run: one whole request in, its
//! records pushed, and the answer once they are written. No socket and no HTTP/1.1 here: the
//! HTTP session reads the request (`protocol::http1`) and writes the [`Reply`] it gets back. The
//! decoding and the mapping onto records are `protocol::otlp`'s; OTLP/gRPC (`LogsService/Export`
//! on h2) is `server::grpc::calls`'s, with the same decoder and the same promises.
//!
//! # Status codes
//!
//! As the OTLP/HTTP specification has them, so that an exporter retries exactly what it should
//! (it retries 429, 502, 503 and 504, and nothing else):
//!
//! | answer | when | retried |
//! |---|---|---|
//! | `200` + `ExportLogsServiceResponse` | every record written; `partial_success` counts the ones refused | no |
//! | `400` + `google.rpc.Status` | not protobuf / not OTLP JSON, a gzip body that is not gzip, too many records or values | no |
//! | `413` + `google.rpc.Status` | the body, or what it inflates to, over `--max-frame` (a gzip bomb stops there) | no |
//! | `401` | the token is refused (`--auth`), `WWW-Authenticate: Bearer` | no |
//! | `415` | a `Content-Type` other than `application/x-protobuf` or `application/json`, or a `Content-Encoding` other than `gzip` | no |
//! | `405` | a method other than `POST` (and `OPTIONS`, the CORS preflight) | no |
//! | `503` + `Retry-After` | backpressure: the writer is full (`--max-pending`) or the disk is failing; or the server ends the connection before the records are written | yes |
//!
//! Error bodies are `google.rpc.Status` in the request's encoding (protobuf, or JSON for a JSON
//! request); the same line goes to `_server.log`. `429` is not used: logmill limits no client's
//! rate, only its memory, and a full writer is the server's state, not the client's (503).
//!
//! # Backpressure
//!
//! An HTTP connection is read while the writer is full (`Connection::answers_while_paused`):
//! that is how `/healthz` says `DEGRADED` when it matters. A `POST /v1/logs` read then is
//! answered `503` with `Retry-After` at once, its records not taken: the exporter backs off and
//! sends them again, instead of waiting on a socket the server has stopped reading. The same
//! while the disk is failing (`DEGRADED`), when an answer "after the write" could not come soon.
//!
//! # The answer waits for the writer
//!
//! As for gRPC-Web (`server::session::grpc_web`, whose module doc has the picture): the records
//! of one request are pushed in one go, the session reads no further request meanwhile, and the
//! [`Pending`] request is answered when the connection has nothing left in flight.

use std::net::SocketAddr;

use super::admit::{self, Refused};
use super::{Context, Farewell, Sink};
use crate::apps::connections::Socket;
use crate::protocol::grpc::Code;
use crate::protocol::grpc_web::{Cors, Reply};
use crate::protocol::http1::Request;
use crate::protocol::otlp::{self, Limits};
use crate::storage::server_log::count;

/// The path OTLP/HTTP exporters post logs to.
pub const PATH: &str = "/v1/logs";

/// `Retry-After` while the writer is full: it drains a full `--max-pending` in well under a
/// second on any disk that works.
const RETRY_FULL_SECS: u32 = 1;

/// `Retry-After` while the disk is failing: long enough not to turn every exporter's retries
/// into a storm, short enough that a freed disk is used soon.
const RETRY_DEGRADED_SECS: u32 = 5;

/// What [`start`] made of a request.
#[derive(Debug)]
pub enum Started {
    /// The answer, now: an error, or a request with no record to store.
    Now(Reply),
    /// Records are on their way to disk: the answer comes from [`Pending::ack`].
    Waiting(Pending),
}

/// A request whose records are pushed and not all written yet; owned by the HTTP session until
/// [`Pending::ack`] gives its answer.
#[derive(Debug)]
pub struct Pending {
    json: bool,
    cors: Vec<(&'static str, String)>,
    records: u64,
    rejected: u64,
    error_message: String,
}

/// The body's encoding, from `Content-Type`.
fn encoding(content_type: Option<&[u8]>) -> Option<bool> {
    let value = content_type?;
    let media = value.split(|&b| b == b';').next().unwrap_or_default();
    let media = media.trim_ascii();
    if media.eq_ignore_ascii_case(b"application/x-protobuf") {
        Some(false)
    } else if media.eq_ignore_ascii_case(b"application/json") {
        Some(true)
    } else {
        None
    }
}

/// Runs one `POST /v1/logs`: judges it, pushes its records, and answers now or says it waits.
/// `cors` is the server's `--cors-origin` (a page's OpenTelemetry exporter may post here).
pub fn start(
    request: &Request<'_>,
    cors: &Cors,
    sink: &mut Sink<'_>,
    cx: &mut Context<'_>,
) -> Started {
    sink.entry.set_socket(Some(Socket::OtlpHttp));
    let cors_headers = cors.response_headers(request.header("origin"));
    let peer = sink.peer;
    let answer = |mut reply: Reply| {
        reply.headers.extend(cors_headers.iter().cloned());
        Started::Now(reply)
    };
    let Some(json) = encoding(request.header("content-type")) else {
        let line = format!(
            "Content-Type {:?} is not OTLP: send application/x-protobuf or application/json",
            String::from_utf8_lossy(request.header("content-type").unwrap_or(b"(none)"))
        );
        cx.log
            .warn(format_args!("OTLP/HTTP request from {peer}: 415: {line}"));
        return answer(text(415, "Unsupported Media Type", &line));
    };
    let gzip = match request.header("content-encoding").map(<[u8]>::trim_ascii) {
        None => false,
        Some(e) if e.eq_ignore_ascii_case(b"identity") => false,
        Some(e) if e.eq_ignore_ascii_case(b"gzip") => true,
        Some(other) => {
            let line = format!(
                "Content-Encoding {:?} is not supported: send gzip or no encoding",
                String::from_utf8_lossy(other)
            );
            cx.log
                .warn(format_args!("OTLP/HTTP request from {peer}: 415: {line}"));
            return answer(text(415, "Unsupported Media Type", &line));
        }
    };
    let origin =
        match admit::by_headers(|n| request.header(n), "OTLP/HTTP request", "401", peer, cx) {
            Ok(origin) => origin,
            Err(Refused::App(line) | Refused::Token(line)) => {
                let mut reply = status(401, "Unauthorized", Code::Unauthenticated, &line, json);
                reply
                    .headers
                    .push(("WWW-Authenticate", "Bearer realm=\"logmill\"".into()));
                return answer(reply);
            }
        };
    if let Some(reply) = backpressure(json, cx) {
        return answer(reply);
    }

    let limits = Limits::new(cx.max_frame as usize);
    let inflated;
    let body: &[u8] = if gzip {
        match otlp::gunzip(&request.body, &limits) {
            Ok(bytes) => {
                inflated = bytes;
                &inflated
            }
            Err(e) => return answer(refuse_body(peer, &e, json, cx)),
        }
    } else {
        &request.body
    };
    // Protobuf is read straight into records borrowing from the body; JSON is parsed into the
    // request first (`protocol::otlp::fast`: the protobuf path is the one exporters use).
    let json_request;
    let decoded = if json {
        match otlp::decode_json(body, &limits) {
            Ok(request) => {
                json_request = request;
                Ok(otlp::to_records(&json_request))
            }
            Err(e) => Err(e),
        }
    } else {
        otlp::decode_records(body, &limits)
    };
    let export = match decoded {
        Ok(export) => export,
        Err(e) => return answer(refuse_body(peer, &e, json, cx)),
    };
    if export.rejected > 0 {
        cx.log.warn(format_args!(
            "OTLP/HTTP request from {peer}: {}",
            export.error_message
        ));
    }
    let key = sink.key;
    for record in &export.records {
        cx.batch.push(key, record, &origin, cx.now_ns);
    }
    let pushed = export.records.len() as u64;
    sink.entry.set_origin(&origin);
    if pushed == 0 {
        return answer(ok(json, export.rejected, &export.error_message));
    }
    sink.received(pushed, cx);
    Started::Waiting(Pending {
        json,
        cors: cors_headers,
        records: pushed,
        rejected: export.rejected,
        error_message: export.error_message,
    })
}

impl Pending {
    /// The answer, once every record of the request is written: call it from the HTTP
    /// session's `Handler::ack`. `None` while some are still in flight.
    pub fn ack(&self, sink: &Sink<'_>) -> Option<Reply> {
        if *sink.in_flight > 0 {
            return None;
        }
        let mut reply = ok(self.json, self.rejected, &self.error_message);
        reply.headers.extend(self.cors.iter().cloned());
        Some(reply)
    }

    /// The answer when the server ends the connection first (shutdown, shed): `503` and why.
    /// The records were handed to the writer and will still be stored unless the disk fails;
    /// the exporter will send them again (OTLP is at-least-once).
    pub fn farewell(self, why: &Farewell) -> Reply {
        let line = format!(
            "{}; the request's {} were handed to the writer before this",
            why.message(),
            count(self.records, "record")
        );
        let mut reply = status(
            503,
            "Service Unavailable",
            Code::Unavailable,
            &line,
            self.json,
        );
        reply
            .headers
            .push(("Retry-After", RETRY_FULL_SECS.to_string()));
        reply.headers.extend(self.cors);
        reply
    }

    /// How many records wait.
    pub fn records(&self) -> u64 {
        self.records
    }
}

/// `503` with `Retry-After` while the writer is full or the disk failing (module doc,
/// "Backpressure"), else `None`.
fn backpressure(json: bool, cx: &mut Context<'_>) -> Option<Reply> {
    let (line, secs) = if cx.shared.stats().degraded() {
        (
            "the server cannot write to its disk at the moment (DEGRADED); retry later",
            RETRY_DEGRADED_SECS,
        )
    } else if cx.shared.pending_full() {
        (
            "the server's writer is full (--max-pending); retry later",
            RETRY_FULL_SECS,
        )
    } else {
        return None;
    };
    let mut reply = status(503, "Service Unavailable", Code::Unavailable, line, json);
    reply.headers.push(("Retry-After", secs.to_string()));
    Some(reply)
}

/// A body that could not be taken: `413` when it is too large, else `400`; logged and counted
/// as a decode error.
fn refuse_body(peer: SocketAddr, error: &otlp::Error, json: bool, cx: &mut Context<'_>) -> Reply {
    let errors = cx.shared.stats().decode_error(crate::stats::Decoder::Otlp);
    let (code, reason, grpc) = match error {
        otlp::Error::TooLarge { .. } => (413, "Payload Too Large", Code::ResourceExhausted),
        _ => (400, "Bad Request", Code::InvalidArgument),
    };
    cx.log.warn(format_args!(
        "OTLP/HTTP request from {peer}: {error}; answered {code} ({})",
        count(errors, "decode error")
    ));
    status(code, reason, grpc, &error.to_string(), json)
}

/// `200` and the `ExportLogsServiceResponse` in the request's encoding.
fn ok(json: bool, rejected: u64, error_message: &str) -> Reply {
    let body = if json {
        otlp::encode_response_json(rejected, error_message)
    } else {
        otlp::encode_response(rejected, error_message)
    };
    Reply {
        status: 200,
        reason: "OK",
        headers: vec![("Content-Type", content_type(json).into())],
        body,
    }
}

/// An error answer: `google.rpc.Status` in the request's encoding.
fn status(status: u16, reason: &'static str, code: Code, line: &str, json: bool) -> Reply {
    Reply {
        status,
        reason,
        headers: vec![("Content-Type", content_type(json).into())],
        body: otlp::encode_status(code as i32, line, json),
    }
}

/// A plain-text answer (the request named no OTLP encoding to answer in).
fn text(status: u16, reason: &'static str, line: &str) -> Reply {
    Reply {
        status,
        reason,
        headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
        body: format!("{line}\n").into_bytes(),
    }
}

fn content_type(json: bool) -> &'static str {
    if json {
        "application/json"
    } else {
        "application/x-protobuf"
    }
}

#[cfg(test)]
mod tests {
    //! Requests run without a socket: a body in, records in the batch, the ack delivered by
    //! hand, the answer's status, headers and body checked.

    use std::borrow::Cow;
    use std::io::Write as _;

    use prost::Message as _;

    use super::*;
    use crate::apps::gate::Gate;
    use crate::config::Format;
    use crate::protocol::http1::Version;
    use crate::protocol::otlp::proto::common::v1::{AnyValue, KeyValue, any_value};
    use crate::protocol::otlp::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use crate::protocol::otlp::proto::resource::v1::Resource;
    use crate::protocol::otlp::{ExportLogsServiceRequest, RpcStatus};
    use crate::server::session::testing::{Conn, Loop};

    const PROTOBUF: &[u8] = b"application/x-protobuf";
    const JSON: &[u8] = b"application/json";

    /// A request of one resource (`service.name` = `shop`) with one record per entry of
    /// `spans`, each with that `span_id` (8 bytes is valid, anything else is refused).
    fn export(spans: &[&[u8]]) -> Vec<u8> {
        let text = |s: &str| {
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(s.into())),
            })
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: text("shop"),
                    }],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: spans
                        .iter()
                        .enumerate()
                        .map(|(i, span)| LogRecord {
                            severity_number: 13,
                            body: text(&format!("record {i}")),
                            span_id: span.to_vec(),
                            ..LogRecord::default()
                        })
                        .collect(),
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
        .encode_to_vec()
    }

    fn run(lp: &mut Loop, conn: &mut Conn, headers: &[(&str, &[u8])], body: &[u8]) -> Started {
        let request = Request {
            method: "POST",
            path: PATH,
            query: None,
            version: Version::Http11,
            headers: headers.to_vec(),
            body: Cow::Borrowed(body),
            keep_alive: true,
        };
        start(&request, &Cors::default(), &mut conn.sink(), &mut lp.cx())
    }

    fn now(started: Started) -> Reply {
        match started {
            Started::Now(reply) => reply,
            Started::Waiting(p) => panic!("waiting: {p:?}"),
        }
    }

    fn rpc_status(reply: &Reply) -> RpcStatus {
        RpcStatus::decode(reply.body.as_slice()).unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// The answer waits until every record is written; refused records are counted in it.
    #[test]
    fn answer_comes_after_the_write_with_partial_success() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let body = export(&[b"12345678", b"1", b""]);
        let started = run(&mut lp, &mut conn, &[("Content-Type", PROTOBUF)], &body);
        let Started::Waiting(pending) = started else {
            panic!("answered before the write: {started:?}");
        };
        assert_eq!((lp.batch.len(), conn.in_flight), (2, 2));
        assert_eq!(conn.entry.socket(), Some(Socket::OtlpHttp));
        conn.in_flight = 1;
        assert!(
            pending.ack(&conn.sink()).is_none(),
            "one record still unwritten"
        );
        conn.in_flight = 0;
        let reply = pending.ack(&conn.sink()).unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/x-protobuf"));
        let response = otlp::decode_response(&reply.body).unwrap();
        let partial = response.partial_success.unwrap();
        assert_eq!(partial.rejected_log_records, 1);
        assert!(
            partial
                .error_message
                .contains("log_records[1]: span_id is 1 bytes"),
            "{}",
            partial.error_message
        );
    }

    /// JSON in, JSON out; gzip inflated; all refused: answered at once (nothing to wait for).
    #[test]
    fn json_gzip_and_nothing_to_store() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let json =
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}}]}]}]}"#;
        let started = run(
            &mut lp,
            &mut conn,
            &[("content-type", JSON), ("content-encoding", b"gzip")],
            &gzip(json),
        );
        let Started::Waiting(pending) = started else {
            panic!("{started:?}");
        };
        conn.in_flight = 0;
        let reply = pending.ack(&conn.sink()).unwrap();
        assert_eq!((reply.status, reply.body.as_slice()), (200, &b"{}"[..]));
        assert_eq!(reply.header("content-type"), Some("application/json"));

        let body = export(&[b"1"]);
        let reply = now(run(
            &mut lp,
            &mut conn,
            &[("content-type", PROTOBUF)],
            &body,
        ));
        assert_eq!(reply.status, 200);
        let partial = otlp::decode_response(&reply.body).unwrap().partial_success;
        assert_eq!(partial.unwrap().rejected_log_records, 1);
    }

    /// Every refusal: its status, a `google.rpc.Status` body in the request's encoding (plain
    /// text when the request named none), nothing pushed, decode errors counted.
    #[test]
    fn refusals_have_their_status_and_push_nothing() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let bomb = gzip(&vec![b'{'; 64 * 1024]);
        /// Headers, body, the status, and the `google.rpc.Status` code (none: a text answer).
        type Case<'a> = (&'a [(&'a str, &'a [u8])], &'a [u8], u16, Option<i32>);
        let cases: [Case<'_>; 7] = [
            (&[("content-type", PROTOBUF)], b"\xff\xff\xff", 400, Some(3)),
            (
                &[("content-type", JSON)],
                b"{\"resourceLogs\":",
                400,
                Some(3),
            ),
            (
                &[("content-type", PROTOBUF), ("content-encoding", b"gzip")],
                b"not gzip",
                400,
                Some(3),
            ),
            (
                &[("content-type", PROTOBUF), ("content-encoding", b"gzip")],
                &bomb,
                413,
                Some(8),
            ),
            (&[("content-type", b"text/plain")], b"x", 415, None),
            (&[], b"x", 415, None),
            (
                &[("content-type", PROTOBUF), ("content-encoding", b"br")],
                b"x",
                415,
                None,
            ),
        ];
        for (headers, body, status, code) in cases {
            let reply = now(run(&mut lp, &mut conn, headers, body));
            assert_eq!(reply.status, status, "{headers:?}");
            match code {
                Some(code) => {
                    let json = headers.iter().any(|(_, v)| *v == JSON);
                    let got = if json {
                        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
                        v["code"].as_i64().unwrap() as i32
                    } else {
                        rpc_status(&reply).code
                    };
                    assert_eq!(got, code, "{headers:?}");
                }
                None => assert!(String::from_utf8_lossy(&reply.body).contains("send ")),
            }
        }
        assert_eq!((lp.batch.len(), conn.in_flight), (0, 0));
        assert_eq!(lp.shared.stats().decode_errors(), 4);
    }

    /// Backpressure: a full writer (503, Retry-After 1) and a failing disk (503, Retry-After
    /// 5) refuse the request before anything is pushed, so the exporter sends it again.
    #[test]
    fn backpressure_is_503_with_retry_after() {
        let body = export(&[b"12345678"]);
        let mut full = Loop::with_max_pending(Format::Text, Gate::off(), 0);
        let mut conn = Conn::new();
        let reply = now(run(
            &mut full,
            &mut conn,
            &[("content-type", PROTOBUF)],
            &body,
        ));
        assert_eq!(
            (reply.status, reply.header("retry-after")),
            (503, Some("1"))
        );
        assert_eq!(rpc_status(&reply).code, 14);
        assert_eq!(full.batch.len(), 0);

        let mut lp = Loop::new();
        lp.shared.stats().set_degraded(true);
        let reply = now(run(
            &mut lp,
            &mut conn,
            &[("content-type", PROTOBUF)],
            &body,
        ));
        assert_eq!(
            (reply.status, reply.header("retry-after")),
            (503, Some("5"))
        );
        assert!(rpc_status(&reply).message.contains("DEGRADED"));
        lp.shared.stats().set_degraded(false);
        assert!(matches!(
            run(&mut lp, &mut conn, &[("content-type", PROTOBUF)], &body),
            Started::Waiting(_)
        ));
    }

    /// The server ends the connection before the write: 503 with Retry-After, saying the
    /// records were handed on.
    #[test]
    fn farewell_before_the_write_is_503() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let body = export(&[b"12345678", b"12345678"]);
        let Started::Waiting(pending) =
            run(&mut lp, &mut conn, &[("content-type", PROTOBUF)], &body)
        else {
            panic!("not waiting");
        };
        let reply = pending.farewell(&Farewell::ShuttingDown);
        assert_eq!(
            (reply.status, reply.header("retry-after")),
            (503, Some("1"))
        );
        let status = rpc_status(&reply);
        assert!(
            status
                .message
                .contains("2 records were handed to the writer"),
            "{}",
            status.message
        );
    }

    #[test]
    fn content_types_name_the_encoding() {
        assert_eq!(encoding(Some(b"application/x-protobuf")), Some(false));
        assert_eq!(
            encoding(Some(b"Application/JSON; charset=utf-8")),
            Some(true)
        );
        assert_eq!(encoding(Some(b" application/json ")), Some(true));
        assert_eq!(encoding(Some(b"application/protobuf")), None);
        assert_eq!(encoding(Some(b"text/plain")), None);
        assert_eq!(encoding(None), None);
    }
}
