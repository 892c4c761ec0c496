//! gRPC-Web calls (`POST /logmill.v1.LogService/Push` and `/LogMessage`, and health `Check`),
//! for the HTTP session to run: one whole request body in, records pushed, and the answer once
//! they are written. No socket and no HTTP/1.1 here: the HTTP session reads the request
//! (`protocol::http1`), hands it over as a [`Call`], and writes the [`Reply`] it gets back.
//! The wire format is `protocol::grpc_web`'s; the messages and statuses are gRPC's, as on h2.
//! (gRPC-Web over h2 is the h2 call path's, `server::grpc::calls`, with this wire format.)
//!
//! A call is judged as an h2 call is: the same methods, the same `logmill-app` rule, the same
//! token check (`authorization: Bearer TOKEN`, through [`crate::server::grpc::admit`] and so
//! `apps::gate::Gate::admit`), the same record path (`PushRequest` or one `LogRecord`, decoded by
//! prost, each record formatted into the loop's batch), the same reply semantics.
//!
//! # The answer waits for the writer
//!
//! ```text
//! HTTP session: request read ──> start(call) ── error, or nothing to write ──> Started::Now(reply)
//!                                    │ records pushed to the batch
//!                                    v
//!                              Started::Waiting(pending)      (the session reads no further
//!                                    │                          request while it holds one)
//!   Handler::ack(written, last_seq) ─┴─> pending.ack(last_seq, sink) ── all written ──> reply
//! ```
//!
//! The reply (`PushResponse { accepted, first_seq, last_seq }`) goes out only once the writer has
//! written every record of the call, as on h2. A [`Pending`] call is done when the connection
//! has nothing in flight: its records are the connection's latest, so the ack's `last_seq` is
//! its last record's, and since they were pushed in one go into one batch their numbers are
//! consecutive (`first_seq = last_seq + 1 - accepted`). That holds while the HTTP session runs
//! one call at a time; a call started while another waits would only delay the first's reply, never
//! answer it early, but would give it the second's numbers.

use std::time::Instant;

use prost::Message as _;

use super::admit::{self, Refused};
use super::{Context, Farewell, Sink};
use crate::protocol::grpc::health_v1::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
};
use crate::protocol::grpc::logmill_v1::PushResponse;
use crate::protocol::grpc::{self, Code, Status};
use crate::protocol::grpc_web::{self, Cors, Mode, Reply};
use crate::storage::line::Origin;
use crate::storage::server_log::count;

/// The paths a gRPC-Web call may be sent to (each takes `POST`, and `OPTIONS` for the
/// browser's preflight): the unary methods, and the streaming ones, which are answered
/// `UNIMPLEMENTED` with the reason rather than `404`.
pub const PATHS: [&str; 5] = [
    "/logmill.v1.LogService/Push",
    "/logmill.v1.LogService/LogMessage",
    "/logmill.v1.LogService/PushStream",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// One request as the HTTP session read it: the path, the headers (names in any case, as
/// `protocol::http1::Request::headers` holds them) and the whole body.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

impl<'a> Call<'a> {
    /// The first header named `name` (ASCII case ignored).
    fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| v)
    }
}

/// What [`start`] made of a call.
#[derive(Debug)]
pub enum Started {
    /// The answer, now: an error, a health answer, or a push with no records.
    Now(Reply),
    /// Records are on their way to disk: the answer comes from [`Pending::ack`].
    Waiting(Pending),
}

/// A call whose records are pushed and not all written yet; owned by the HTTP session until
/// [`Pending::ack`] gives its answer.
#[derive(Debug)]
pub struct Pending {
    mode: Mode,
    /// The CORS headers the answer carries (decided from the request's `Origin`).
    cors: Vec<(&'static str, String)>,
    records: u64,
    deadline: Option<Instant>,
}

/// The methods served over gRPC-Web.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Push,
    LogMessage,
    HealthCheck,
}

/// Runs one gRPC-Web call: judges it, pushes its records, and answers now or says it waits.
/// `cors` is the server's `--cors-origin`; every answer carries the CORS headers for the
/// request's `Origin`. Every refusal is a trailers-only answer (`grpc-status` in the headers)
/// and, when the client did something wrong, a line in `_server.log`; a body that is not
/// gRPC-Web, or not the method's message, counts as a decode error.
pub fn start(call: &Call<'_>, cors: &Cors, sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Started {
    // Listed in `status` (and counted by the metrics) as a gRPC-Web connection from now on.
    sink.entry
        .set_socket(Some(crate::apps::connections::Socket::GrpcWeb));
    let cors_headers = cors.response_headers(call.header("origin"));
    let answer = |mut reply: Reply| {
        reply.headers.extend(cors_headers.iter().cloned());
        Started::Now(reply)
    };
    // Not gRPC-Web at all: an HTTP answer, as an h2 server answers a request that is not gRPC.
    let Some(mode) = call.header("content-type").and_then(Mode::of_content_type) else {
        return answer(Reply {
            status: 415,
            reason: "Unsupported Media Type",
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: b"gRPC-Web calls take Content-Type application/grpc-web(+proto) or \
                    application/grpc-web-text(+proto)\n"
                .to_vec(),
        });
    };
    let mode_out = mode.of_response(call.header("accept"));
    let refuse = |status: Status| answer(grpc_web::trailers_only(mode_out, &status));
    let peer = sink.peer;
    let method = match call.path {
        "/logmill.v1.LogService/Push" => Method::Push,
        "/logmill.v1.LogService/LogMessage" => Method::LogMessage,
        "/grpc.health.v1.Health/Check" => Method::HealthCheck,
        "/logmill.v1.LogService/PushStream" | "/grpc.health.v1.Health/Watch" => {
            return refuse(Status::new(
                Code::Unimplemented,
                format!(
                    "{} is a streaming method, which gRPC-Web over HTTP/1.1 cannot carry here; \
                     use logmill.v1.LogService/Push or LogMessage (or Health/Check)",
                    call.path
                ),
            ));
        }
        other => {
            return refuse(Status::new(
                Code::Unimplemented,
                format!(
                    "unknown method {other}: gRPC-Web here has logmill.v1.LogService/Push, \
                     logmill.v1.LogService/LogMessage and grpc.health.v1.Health/Check"
                ),
            ));
        }
    };
    // Browsers compress a whole body with Content-Encoding; this server takes none.
    if let Some(encoding) = call.header("content-encoding")
        && !encoding.trim_ascii().eq_ignore_ascii_case(b"identity")
    {
        return refuse(Status::new(
            Code::Unimplemented,
            format!(
                "Content-Encoding {:?} is not supported; send the body uncompressed",
                String::from_utf8_lossy(encoding)
            ),
        ));
    }
    let deadline = match call.header("grpc-timeout") {
        None => None,
        Some(value) => match grpc::parse_timeout(value) {
            Some(timeout) => Some(Instant::now() + timeout),
            None => {
                return refuse(Status::new(
                    Code::Internal,
                    format!(
                        "malformed grpc-timeout {:?}: expected 1 to 8 digits and one of H M S m u n",
                        String::from_utf8_lossy(value)
                    ),
                ));
            }
        },
    };
    let origin = if method == Method::HealthCheck {
        // Health stores nothing: no token asked.
        Origin::default()
    } else {
        match admit(call, peer, cx) {
            Ok(origin) => origin,
            Err(status) => return refuse(status),
        }
    };

    let mut decoded = Vec::new();
    let message =
        match grpc_web::unary_message(call.body, mode, cx.max_frame as usize, &mut decoded) {
            Ok(message) => message,
            Err(e) => return refuse(decode_error(peer, e.status(), cx)),
        };
    match method {
        Method::HealthCheck => {
            let request = match HealthCheckRequest::decode(message) {
                Ok(request) => request,
                Err(e) => {
                    let status = Status::new(
                        Code::InvalidArgument,
                        format!("not a valid HealthCheckRequest: {e}"),
                    );
                    return refuse(decode_error(peer, status, cx));
                }
            };
            if !["", "logmill.v1.LogService"].contains(&request.service.as_str()) {
                return refuse(Status::new(
                    Code::NotFound,
                    format!("unknown service {:?}", request.service),
                ));
            }
            let status = if crate::server::health::serving(cx.shared, false) {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            let reply = HealthCheckResponse {
                status: status as i32,
            };
            answer(grpc_web::reply(mode_out, &reply.encode_to_vec()))
        }
        Method::Push | Method::LogMessage => {
            let pushed = match push(method, message, &origin, sink, cx) {
                Ok(n) => n,
                Err(status) => return refuse(decode_error(peer, status, cx)),
            };
            sink.entry.set_origin(&origin);
            if pushed == 0 {
                // Nothing to wait for; no sequence numbers either.
                return answer(push_reply(mode_out, 0, 0, 0));
            }
            Started::Waiting(Pending {
                mode: mode_out,
                cors: cors_headers,
                records: pushed,
                deadline,
            })
        }
    }
}

impl Pending {
    /// The answer, once every record of the call is written: call it from the HTTP session's
    /// `Handler::ack` with the ack's `last_seq`. `None` while some are still in flight.
    pub fn ack(&self, last_seq: u64, sink: &Sink<'_>) -> Option<Reply> {
        if *sink.in_flight > 0 {
            return None;
        }
        // The call's records are the connection's latest, numbered consecutively (module doc).
        let first_seq = last_seq.saturating_add(1).saturating_sub(self.records);
        let mut reply = push_reply(self.mode, self.records, first_seq, last_seq);
        reply.headers.extend(self.cors.iter().cloned());
        Some(reply)
    }

    /// When the client stops waiting (`grpc-timeout`), if it said.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The answer when the deadline passed first: `DEADLINE_EXCEEDED`; the records are still
    /// stored, as on h2.
    pub fn expire(self) -> Reply {
        let records = self.records;
        self.fail(Status::new(
            Code::DeadlineExceeded,
            format!(
                "deadline (grpc-timeout) passed before the call's records ({}) were all \
                 written; they will still be stored",
                records
            ),
        ))
    }

    /// The answer when the server ends the connection first (shutdown, shed): `UNAVAILABLE`
    /// and why; the records were handed to the writer and will still be stored unless the disk
    /// fails.
    pub fn farewell(self, why: &Farewell) -> Reply {
        let status = Status::new(
            Code::Unavailable,
            format!(
                "{}; the call's records ({}) were handed to the writer before this",
                why.message(),
                self.records
            ),
        );
        self.fail(status)
    }

    fn fail(self, status: Status) -> Reply {
        let mut reply = grpc_web::trailers_only(self.mode, &status);
        reply.headers.extend(self.cors);
        reply
    }
}

/// `PushResponse`: `accepted` records, numbered `first_seq..=last_seq` (none: 0 and 0).
fn push_reply(mode: Mode, accepted: u64, first_seq: u64, last_seq: u64) -> Reply {
    let reply = PushResponse {
        accepted,
        first_seq,
        last_seq,
    };
    grpc_web::reply(mode, &reply.encode_to_vec())
}

/// The call's `logmill-app` checked, then its token judged: the origin of its records, or the
/// status it is refused with (logged, and counted for tokens, as on h2).
fn admit(
    call: &Call<'_>,
    peer: std::net::SocketAddr,
    cx: &mut Context<'_>,
) -> Result<Origin, Status> {
    admit::by_headers(
        |n| call.header(n),
        "gRPC-Web call",
        "UNAUTHENTICATED",
        peer,
        cx,
    )
    .map_err(|refused| match refused {
        Refused::App(line) => Status::new(Code::InvalidArgument, line),
        Refused::Token(line) => Status::new(Code::Unauthenticated, line),
    })
}

/// The record path: the request message decoded (prost) as the method's message, each record
/// formatted into the loop's batch under the call's origin. Returns how many were pushed; a
/// message that does not decode pushes none.
fn push(
    method: Method,
    message: &[u8],
    origin: &Origin,
    sink: &mut Sink<'_>,
    cx: &mut Context<'_>,
) -> Result<u64, Status> {
    let key = sink.key;
    let pushed = match method {
        Method::LogMessage => {
            let record = grpc::decode_log_record(message).map_err(|e| {
                Status::new(
                    Code::InvalidArgument,
                    format!("request message is not a valid LogRecord: {e}"),
                )
            })?;
            cx.batch
                .push(key, &grpc::to_record(&record), origin, cx.now_ns);
            1
        }
        Method::Push | Method::HealthCheck => {
            let request = grpc::decode_push_request(message).map_err(|e| {
                Status::new(
                    Code::InvalidArgument,
                    format!("request message is not a valid PushRequest: {e}"),
                )
            })?;
            // The hot path: one formatted line per record, into the loop's batch.
            for record in &request.records {
                cx.batch
                    .push(key, &grpc::to_record(record), origin, cx.now_ns);
            }
            request.records.len() as u64
        }
    };
    if pushed > 0 {
        sink.received(pushed, cx);
    }
    Ok(pushed)
}

/// A body or message the server could not decode: logged and counted, then answered `status`.
fn decode_error(peer: std::net::SocketAddr, status: Status, cx: &mut Context<'_>) -> Status {
    let errors = cx
        .shared
        .stats()
        .decode_error(crate::stats::Decoder::GrpcWeb);
    cx.log.warn(format_args!(
        "gRPC-Web call from {peer}: {}; answered {:?} ({} so far)",
        status.message,
        status.code,
        count(errors, "decode error")
    ));
    status
}

#[cfg(test)]
mod tests {
    //! Calls run without a socket: a body in, records in the batch, the ack delivered by hand,
    //! the answer's bytes checked.

    use super::*;
    use crate::config::{Auth, Config, Format};
    use crate::protocol::grpc::logmill_v1::{LogRecord, PushRequest, log_record};
    use crate::protocol::grpc_web::{decode_text, encode_text};

    use crate::server::session::testing::{Conn, Loop};

    /// A loop whose lines are JSON, tokens judged by `gate`.
    fn json_loop(gate: crate::apps::gate::Gate) -> Loop {
        Loop::with(Format::Json, gate)
    }

    /// The batch's lines as JSON.
    fn lines(lp: &mut Loop) -> Vec<serde_json::Value> {
        let batch = lp.batch.take(1, None);
        batch
            .lines()
            .map(|(head, tail)| {
                let line = [head, b"1", tail].concat();
                serde_json::from_slice(&line).unwrap()
            })
            .collect()
    }

    const PUSH: &str = "/logmill.v1.LogService/Push";
    const LOG_MESSAGE: &str = "/logmill.v1.LogService/LogMessage";
    const BINARY: &[u8] = b"application/grpc-web+proto";
    const TEXT: &[u8] = b"application/grpc-web-text";

    fn record(message: &str) -> LogRecord {
        LogRecord {
            body: Some(log_record::Body::Message(message.into())),
            logger: "web".into(),
            level: 6,
            ..LogRecord::default()
        }
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        grpc::encode_message(payload, &mut out);
        out
    }

    fn push_body(messages: &[&str]) -> Vec<u8> {
        framed(
            &PushRequest {
                records: messages.iter().map(|m| record(m)).collect(),
            }
            .encode_to_vec(),
        )
    }

    fn run(
        lp: &mut Loop,
        conn: &mut Conn,
        path: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        cors: &Cors,
    ) -> Started {
        let call = Call {
            path,
            headers,
            body,
        };
        start(&call, cors, &mut conn.sink(), &mut lp.cx())
    }

    fn now(started: Started) -> Reply {
        match started {
            Started::Now(reply) => reply,
            Started::Waiting(p) => panic!("waiting: {p:?}"),
        }
    }

    /// The trailers-only status of an answer: code and message.
    fn status_of(reply: &Reply) -> (String, String) {
        assert_eq!(reply.status, 200);
        assert!(reply.body.is_empty(), "trailers-only");
        (
            reply.header("grpc-status").unwrap().to_string(),
            grpc::percent_decode(reply.header("grpc-message").unwrap_or_default()),
        )
    }

    /// The frames of a binary body: (flag, payload).
    fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !body.is_empty() {
            let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
            out.push((body[0], body[5..5 + len].to_vec()));
            body = &body[5 + len..];
        }
        out
    }

    fn push_response(body: &[u8]) -> PushResponse {
        let frames = frames(body);
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert_eq!(
            frames[1],
            (0x80, b"grpc-status:0\r\ngrpc-message:\r\n".to_vec())
        );
        assert_eq!(frames[0].0, 0);
        PushResponse::decode(frames[0].1.as_slice()).unwrap()
    }

    #[test]
    fn push_answers_once_its_records_are_written() {
        let (mut lp, mut conn) = (json_loop(crate::apps::gate::Gate::off()), Conn::new());
        let cors = Cors::parse(["http://page.test"]).unwrap();
        let headers: [(&str, &[u8]); 4] = [
            ("Content-Type", BINARY),
            ("Origin", b"http://page.test"),
            ("logmill-app", b"billing"),
            ("logmill-instance", b"tab-1"),
        ];
        let started = run(
            &mut lp,
            &mut conn,
            PUSH,
            &headers,
            &push_body(&["a", "b"]),
            &cors,
        );
        let Started::Waiting(pending) = started else {
            panic!("answered before the records were written");
        };
        assert_eq!(conn.in_flight, 2, "counted as the connection's records");
        assert!(
            conn.output.is_empty(),
            "the session writes the answer, not the call"
        );
        // The first of two records written: not yet.
        conn.in_flight = 1;
        assert_eq!(pending.ack(40, &conn.sink()), None);
        conn.in_flight = 0;
        let reply = pending.ack(41, &conn.sink()).unwrap();
        assert_eq!((reply.status, reply.reason), (200, "OK"));
        assert_eq!(
            reply.header("content-type"),
            Some("application/grpc-web+proto")
        );
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("http://page.test")
        );
        assert_eq!(
            reply.header("access-control-expose-headers"),
            Some("grpc-status, grpc-message")
        );
        let response = push_response(&reply.body);
        assert_eq!(
            (response.accepted, response.first_seq, response.last_seq),
            (2, 40, 41)
        );
        let lines = lines(&mut lp);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["message"], "a");
        assert_eq!(lines[1]["message"], "b");
        assert_eq!(lines[0]["app"], "billing");
        assert_eq!(lines[0]["instance"], "tab-1");
        assert_eq!(lines[0]["level"], "error");
        // Listed under the call's app (the socket kind is the HTTP session's to set).
        conn.entry
            .set_socket(Some(crate::apps::connections::Socket::Grpc));
        let row = conn.entry.row("127.0.0.1:1".parse().unwrap()).unwrap();
        let status = crate::apps::connections::status_json(&[row], 4096);
        assert!(status.contains("{\"billing\":{"), "{status}");
    }

    /// The seed's `client.logMessage(logEntry)` from a text-mode client that flushed its base64
    /// in two padded pieces, split inside the message.
    #[test]
    fn log_message_in_text_mode_padded_mid_stream() {
        let (mut lp, mut conn) = (json_loop(crate::apps::gate::Gate::off()), Conn::new());
        let body = framed(&record("from the browser").encode_to_vec());
        for cut in 0..=body.len() {
            let text = [encode_text(&body[..cut]), encode_text(&body[cut..])].concat();
            let headers: [(&str, &[u8]); 1] = [("content-type", TEXT)];
            let started = run(
                &mut lp,
                &mut conn,
                LOG_MESSAGE,
                &headers,
                text.as_bytes(),
                &Cors::default(),
            );
            let Started::Waiting(pending) = started else {
                panic!("cut {cut}: answered at once");
            };
            assert_eq!(conn.in_flight, 1, "cut {cut}");
            conn.in_flight = 0;
            let reply = pending.ack(7, &conn.sink()).unwrap();
            assert_eq!(
                reply.header("content-type"),
                Some("application/grpc-web-text+proto")
            );
            assert_eq!(reply.header("access-control-allow-origin"), None);
            let mut decoded = Vec::new();
            decode_text(&reply.body, &mut decoded).unwrap();
            let response = push_response(&decoded);
            assert_eq!(
                (response.accepted, response.first_seq, response.last_seq),
                (1, 7, 7)
            );
        }
        let lines = lines(&mut lp);
        assert_eq!(lines.len(), body.len() + 1);
        assert!(lines.iter().all(|l| l["message"] == "from the browser"));
    }

    #[test]
    fn an_empty_push_answers_at_once() {
        let (mut lp, mut conn) = (json_loop(crate::apps::gate::Gate::off()), Conn::new());
        let headers: [(&str, &[u8]); 1] = [("content-type", BINARY)];
        let reply = now(run(
            &mut lp,
            &mut conn,
            PUSH,
            &headers,
            &push_body(&[]),
            &Cors::default(),
        ));
        let response = push_response(&reply.body);
        assert_eq!(
            (response.accepted, response.first_seq, response.last_seq),
            (0, 0, 0)
        );
    }

    #[test]
    fn health_check_answers_at_once() {
        let (mut lp, mut conn) = (json_loop(crate::apps::gate::Gate::off()), Conn::new());
        let headers: [(&str, &[u8]); 1] = [("content-type", BINARY)];
        let body = framed(&HealthCheckRequest::default().encode_to_vec());
        let reply = now(run(
            &mut lp,
            &mut conn,
            "/grpc.health.v1.Health/Check",
            &headers,
            &body,
            &Cors::default(),
        ));
        let frames = frames(&reply.body);
        let response = HealthCheckResponse::decode(frames[0].1.as_slice()).unwrap();
        assert_eq!(response.status, ServingStatus::Serving as i32);
        let body = framed(
            &HealthCheckRequest {
                service: "nope".into(),
            }
            .encode_to_vec(),
        );
        let reply = now(run(
            &mut lp,
            &mut conn,
            "/grpc.health.v1.Health/Check",
            &headers,
            &body,
            &Cors::default(),
        ));
        assert_eq!(status_of(&reply).0, "5");
    }

    /// (path, headers, body, grpc-status, what grpc-message says, decode errors counted).
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a [u8])],
        Vec<u8>,
        &'a str,
        &'a str,
        u64,
    );

    /// Every refusal: its status, its message, nothing stored, and the decode errors counted.
    #[test]
    fn refusals_are_trailers_only_and_store_nothing() {
        let good = push_body(&["x"]);
        let mut compressed = good.clone();
        compressed[0] = 1;
        let mut oversized = vec![0u8];
        oversized.extend_from_slice(&1025u32.to_be_bytes());
        let two = [good.clone(), good.clone()].concat();
        let cases: [Case; 12] = [
            (
                "/logmill.v1.LogService/PushStream",
                &[("content-type", BINARY)],
                good.clone(),
                "12",
                "streaming method",
                0,
            ),
            (
                "/grpc.health.v1.Health/Watch",
                &[("content-type", BINARY)],
                good.clone(),
                "12",
                "streaming method",
                0,
            ),
            (
                "/logmill.v1.LogService/Nope",
                &[("content-type", BINARY)],
                good.clone(),
                "12",
                "unknown method /logmill.v1.LogService/Nope",
                0,
            ),
            (
                PUSH,
                &[("content-type", BINARY), ("content-encoding", b"gzip")],
                good.clone(),
                "12",
                "Content-Encoding \"gzip\"",
                0,
            ),
            (
                PUSH,
                &[("content-type", BINARY), ("grpc-timeout", b"soon")],
                good.clone(),
                "13",
                "malformed grpc-timeout",
                0,
            ),
            (
                PUSH,
                &[("content-type", BINARY), ("logmill-app", b"../etc")],
                good.clone(),
                "3",
                "is not [A-Za-z0-9]",
                0,
            ),
            (
                PUSH,
                &[("content-type", BINARY)],
                compressed,
                "12",
                "compressed flag",
                1,
            ),
            (
                PUSH,
                &[("content-type", BINARY)],
                oversized,
                "8",
                "1025 bytes is over the limit of 1024",
                1,
            ),
            (
                PUSH,
                &[("content-type", BINARY)],
                two,
                "13",
                "2 request messages",
                1,
            ),
            (
                PUSH,
                &[("content-type", BINARY)],
                good[..good.len() - 1].to_vec(),
                "13",
                "ended inside a message",
                1,
            ),
            (
                PUSH,
                &[("content-type", TEXT)],
                b"AAAA!".to_vec(),
                "13",
                "not base64",
                1,
            ),
            (
                LOG_MESSAGE,
                &[("content-type", BINARY)],
                framed(b"\x1a\x05ab"),
                "3",
                "not a valid LogRecord",
                1,
            ),
        ];
        for (path, headers, body, code, says, decode_errors) in cases {
            let (mut lp, mut conn) = (json_loop(crate::apps::gate::Gate::off()), Conn::new());
            let reply = now(run(
                &mut lp,
                &mut conn,
                path,
                headers,
                &body,
                &Cors::default(),
            ));
            let (got, message) = status_of(&reply);
            assert_eq!(got, code, "{path} {says}: {message}");
            assert!(message.contains(says), "{path}: {message:?} lacks {says:?}");
            assert_eq!((lp.batch.len(), conn.in_flight), (0, 0), "{says}");
            assert_eq!(lp.shared.stats().decode_errors(), decode_errors, "{says}");
        }
    }

    #[test]
    fn not_grpc_web_is_415() {
        let (mut lp, mut conn) = (json_loop(crate::apps::gate::Gate::off()), Conn::new());
        let cors = Cors::parse(["*"]).unwrap();
        for content_type in [
            &b"application/json"[..],
            b"application/grpc",
            b"application/grpc-web+json",
        ] {
            let headers: [(&str, &[u8]); 2] =
                [("content-type", content_type), ("origin", b"http://x.test")];
            let reply = now(run(&mut lp, &mut conn, PUSH, &headers, b"", &cors));
            assert_eq!(reply.status, 415);
            assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
            assert!(reply.body.ends_with(b"\n"));
        }
    }

    /// Tokens as on h2: `authorization: Bearer TOKEN`, judged by the same gate.
    #[test]
    fn tokens_are_judged_by_the_gate() {
        let dir = std::env::temp_dir().join(format!("logmill-grpc-web-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = Config {
            dir: dir.clone(),
            auth: Auth::Required,
            ..Config::default()
        };
        let gate = crate::apps::gate::Gate::open(&config).unwrap();
        let secret = std::fs::read(config.secret_path()).unwrap();
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 10;
        let token = crate::apps::token::issue(&secret, "shop", iat, None, "t1").unwrap();
        let bearer = format!("Bearer {token}");
        let (mut lp, mut conn) = (json_loop(gate), Conn::new());
        let body = push_body(&["kept"]);
        let refused: [&[(&str, &[u8])]; 3] = [
            &[("content-type", BINARY)],
            &[
                ("content-type", BINARY),
                ("authorization", b"Basic dXNlcg=="),
            ],
            &[
                ("content-type", BINARY),
                ("authorization", b"Bearer not.a.token"),
            ],
        ];
        for headers in refused {
            let reply = now(run(
                &mut lp,
                &mut conn,
                PUSH,
                headers,
                &body,
                &Cors::default(),
            ));
            assert_eq!(status_of(&reply).0, "16", "{headers:?}");
        }
        assert_eq!(lp.batch.len(), 0);
        assert_eq!(lp.shared.stats().refused_auth(), 3);
        let headers: [(&str, &[u8]); 2] = [
            ("content-type", BINARY),
            ("Authorization", bearer.as_bytes()),
        ];
        let started = run(&mut lp, &mut conn, PUSH, &headers, &body, &Cors::default());
        assert!(matches!(started, Started::Waiting(_)));
        let lines = lines(&mut lp);
        assert_eq!(lines[0]["app"], "shop");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn deadline_and_farewell_answer_with_their_status() {
        let (mut lp, mut conn) = (json_loop(crate::apps::gate::Gate::off()), Conn::new());
        let cors = Cors::parse(["http://page.test"]).unwrap();
        let headers: [(&str, &[u8]); 3] = [
            ("content-type", BINARY),
            ("grpc-timeout", b"5S"),
            ("origin", b"http://page.test"),
        ];
        let Started::Waiting(pending) = run(
            &mut lp,
            &mut conn,
            PUSH,
            &headers,
            &push_body(&["a"]),
            &cors,
        ) else {
            panic!()
        };
        assert!(pending.deadline().is_some());
        let reply = pending.expire();
        let (code, message) = status_of(&reply);
        assert_eq!(code, "4");
        assert!(
            message.contains("records (1) were all written"),
            "{message}"
        );
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("http://page.test")
        );
        let Started::Waiting(pending) = run(
            &mut lp,
            &mut conn,
            PUSH,
            &headers[..1],
            &push_body(&["a"]),
            &cors,
        ) else {
            panic!()
        };
        assert_eq!(pending.deadline(), None);
        let (code, message) = status_of(&pending.farewell(&Farewell::ShuttingDown));
        assert_eq!(code, "14");
        assert!(message.starts_with("server is shutting down"), "{message}");
    }
}
