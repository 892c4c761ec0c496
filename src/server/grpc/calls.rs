//! A gRPC call's life: started from a request head, polled (cancellation, deadline, request
//! data, reply), failed with a status, and credited with the writer's completions.
//!
//! [`Calls`] is one connection's table of calls and what they share: the FIFO of records in
//! flight, the calls due for a poll, the gzip buffer. It knows nothing of the socket, of HTTP/2
//! as a whole or of timers (that is `lifecycle`), nor how replies are encoded (`replies`).
//!
//! # The record path
//!
//! `h2` DATA chunk -> [`Calls::read`] -> `take_chunk` (the call's `Deframer` finds whole
//! messages, gzip is undone) -> [`push_records`] (prost decodes one `PushRequest`; each record is
//! formatted into the loop's batch) -> flow-control capacity released. Each request message is
//! decoded whole and all its records pushed before its capacity is released, so the client can
//! never have more unread data here than its HTTP/2 windows and the input budget allow.
//!
//! The FIFO holds (call, records pushed) in batch order; the writer's completions arrive in the
//! same order, so each one is credited to the calls at the front ([`Calls::completed`]). A
//! call replies once its input has ended and every one of its records is written:
//! `PushResponse { accepted, first_seq, last_seq }`. If a call fails half-way (a bad message,
//! a deadline), the records of its earlier messages are still stored: the error says how many.
//!
//! # gRPC-Web on h2
//!
//! A request with a gRPC-Web content type (`application/grpc-web`, `-text`, `+proto`) is the
//! same call with another dress, as on HTTP/1.1 (`server::session::grpc_web`): the same record
//! path, token gate and "answer once written", but a text-mode body is base64 (decoded as it
//! arrives, whole 4-character quanta at a time, by `protocol::grpc_web::decode_text`), and the
//! answer is `protocol::grpc_web`'s: the reply and a trailers frame (0x80) in ordinary DATA
//! frames, or trailers-only for an error, with CORS headers for an allowed `Origin`. `OPTIONS`
//! on a gRPC-Web path is the browser's preflight. The streaming methods are `UNIMPLEMENTED`
//! there, as on HTTP/1.1.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use prost::Message as _;
use slab::Slab;

use super::push::{
    GrpcContext, admit, inflate, otlp_backpressure, push_otlp, push_record, push_records,
};
use super::replies::{
    HEALTH_SERVICES, send_reply, send_status, send_web, serving_status, watch_update,
};
use super::wake::WakeState;
use crate::apps::connections::{Entry, Socket};
use crate::config::GrpcLimits;
use crate::net::waker::waker_for;
use crate::protocol::grpc::health_v1::health_check_response::ServingStatus;
use crate::protocol::grpc::health_v1::{HealthCheckRequest, HealthCheckResponse};
use crate::protocol::grpc::logmill_v1::PushResponse;
use crate::protocol::grpc::{self, Code, Deframer, Encoding, FeedError, Status};
use crate::protocol::grpc_web::{self, Mode};
use crate::protocol::otlp;
use crate::server::session::grpc_web::PATHS as GRPC_WEB_PATHS;
use crate::server::shared::Shared;
use crate::storage::ConnKey;
use crate::storage::line::Origin;
use crate::storage::server_log::ServerLog;

/// How often open health `Watch` calls look at the server's state.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// A gzip output buffer larger than this is freed after use rather than kept for the next
/// message: kept on every connection, large ones would be memory no budget counts.
const KEEP_INFLATED: usize = 256 * 1024;

/// The methods served; any other path is `UNIMPLEMENTED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rpc {
    Push,
    PushStream,
    /// One `LogRecord` (the seed's `client.logMessage`): Push with one record.
    LogMessage,
    HealthCheck,
    HealthWatch,
    /// OpenTelemetry's `LogsService/Export`: one `ExportLogsServiceRequest`
    /// (`protocol::otlp`), answered `ExportLogsServiceResponse` once written.
    OtlpExport,
}

/// OTLP/gRPC's one method.
pub(super) const OTLP_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

impl Rpc {
    /// The method stores records (and so needs a token, and waits for the writer).
    fn pushes(self) -> bool {
        matches!(
            self,
            Rpc::Push | Rpc::PushStream | Rpc::LogMessage | Rpc::OtlpExport
        )
    }

    /// One request message, exactly.
    fn unary(self) -> bool {
        !matches!(self, Rpc::PushStream)
    }
}

/// One gRPC call (one HTTP/2 stream).
pub(super) struct Call {
    pub(super) method: Rpc,
    waker: Waker,
    recv: Option<RecvStream>,
    /// Until the response headers are sent.
    respond: Option<SendResponse<Bytes>>,
    /// After the response headers are sent (health `Watch`).
    send: Option<SendStream<Bytes>>,
    deframer: Deframer,
    encoding: Encoding,
    origin: Origin,
    pub(super) deadline: Option<Instant>,
    messages: u64,
    /// Records pushed to the batch, and how many of them the writer has written.
    pushed: u64,
    written: u64,
    first_seq: Option<u64>,
    last_seq: u64,
    /// Bytes in `deframer` whose flow-control capacity is not released yet: withheld while the
    /// input budget is full.
    pub(super) withheld: usize,
    /// The request body has ended (END_STREAM).
    input_done: bool,
    /// A final status was sent or the client cancelled: nothing more goes out.
    pub(super) answered: bool,
    /// Health: the requested service, and what `Watch` sent last.
    service: Option<String>,
    watch_sent: Option<ServingStatus>,
    /// A gRPC-Web call: answered in gRPC-Web form.
    web: Option<Web>,
    /// `OtlpExport`: the records refused, and why (`partial_success`).
    rejected: u64,
    error_message: String,
}

/// What a gRPC-Web call adds to a gRPC call (module doc, "gRPC-Web on h2").
struct Web {
    /// How the request body is encoded.
    request: Mode,
    /// How the answer is (text when the request was, or its `Accept` asks).
    response: Mode,
    /// The CORS headers for the request's `Origin`, on every answer.
    cors: Vec<(&'static str, String)>,
    /// Text mode: the base64 received after the last whole quantum (at most 3 bytes).
    text: Vec<u8>,
}

impl Web {
    /// The binary bytes of the next piece of a text-mode body: the base64 of `chunk` after what
    /// was kept, as far as whole quanta go (all of it at the end of the body, where the last
    /// piece may be unpadded). A padded quantum may sit anywhere: `decode_text` takes those.
    fn decode(&mut self, chunk: &[u8], end: bool) -> Result<Vec<u8>, Status> {
        self.text.extend_from_slice(chunk);
        let whole = if end {
            self.text.len()
        } else {
            self.text.len() - self.text.len() % 4
        };
        let mut out = Vec::with_capacity(whole / 4 * 3);
        let decoded = grpc_web::decode_text(&self.text[..whole], &mut out);
        self.text.drain(..whole);
        decoded.map_err(|e| e.status())?;
        Ok(out)
    }
}

/// Answers a call at once with a final status: trailers-only, in gRPC-Web form for a gRPC-Web
/// call.
fn answer_status(
    respond: &mut Option<SendResponse<Bytes>>,
    send: &mut Option<SendStream<Bytes>>,
    web: Option<&Web>,
    status: &Status,
) {
    match web {
        Some(web) => send_web(
            respond,
            grpc_web::trailers_only(web.response, status),
            &web.cors,
        ),
        None => send_status(respond, send, status),
    }
}

impl Call {
    fn finished(&self) -> bool {
        self.answered && self.pushed == self.written
    }

    /// Sends the call's final status (see [`answer_status`]).
    fn answer_status(&mut self, status: &Status) {
        answer_status(&mut self.respond, &mut self.send, self.web.as_ref(), status);
    }

    /// Sends the call's one reply message and status OK.
    fn answer_reply(&mut self, reply: &impl prost::Message) {
        match &self.web {
            Some(web) => send_web(
                &mut self.respond,
                grpc_web::reply(web.response, &reply.encode_to_vec()),
                &web.cors,
            ),
            None => send_reply(&mut self.respond, reply),
        }
    }

    /// Drops the stream handles: `h2` then ends the stream (RST_STREAM(NO_ERROR) if the client
    /// was still sending after our final status).
    fn release(&mut self) {
        self.answered = true;
        self.deadline = None;
        self.recv = None;
        self.respond = None;
        self.send = None;
        self.deframer = Deframer::default();
        // Dropping `recv` gave `h2` back whatever was not released.
        self.withheld = 0;
    }

    /// Unfinished input this call holds: data `h2` buffered and we have not taken, and the
    /// part of a message being assembled.
    pub(super) fn held(&mut self) -> usize {
        let unreleased = match &mut self.recv {
            Some(recv) => recv.flow_control().used_capacity(),
            None => 0,
        };
        // Withheld bytes are both in the deframer and unreleased: count them once.
        self.deframer.pending() + unreleased.saturating_sub(self.withheld)
    }
}

/// One connection's calls, and what they share.
pub(super) struct Calls {
    key: ConnKey,
    peer: SocketAddr,
    wake: Arc<WakeState>,
    max_message: usize,
    max_partial: usize,
    pub(super) slots: Slab<Call>,
    /// (call slot, records) in the order they were pushed to the batch.
    fifo: VecDeque<(usize, u64)>,
    in_flight: u64,
    /// Calls to poll at the next `drive` whatever woke: replies due, stalled readers.
    pub(super) due: Vec<usize>,
    /// When open health watches next look at the server's state.
    pub(super) next_watch_check: Option<Instant>,
    /// Reused for gzip output.
    inflated: Vec<u8>,
    /// The input budget has room for more unfinished input (`set_may_grow`).
    pub(super) may_grow: bool,
    /// What `status` shows of the connection (`apps::connections`): the app and instance of its
    /// latest push call, and the records and bytes of all its calls.
    pub(super) entry: Entry,
}

impl Calls {
    pub(super) fn new(
        key: ConnKey,
        peer: SocketAddr,
        wake: Arc<WakeState>,
        limits: &GrpcLimits,
    ) -> Calls {
        Calls {
            key,
            peer,
            wake,
            max_message: limits.max_message(),
            max_partial: limits.max_partial(),
            slots: Slab::new(),
            fifo: VecDeque::new(),
            in_flight: 0,
            due: Vec::new(),
            next_watch_check: None,
            inflated: Vec::new(),
            may_grow: true,
            entry: Entry::accepted(Some(Socket::Grpc)),
        }
    }

    /// Unfinished input the calls hold (`lifecycle`'s doc, "Unfinished input").
    pub(super) fn held(&mut self) -> usize {
        self.slots.iter_mut().map(|(_, call)| call.held()).sum()
    }

    /// The writer wrote `count` more of this connection's records, the last with sequence
    /// number `last_seq`: credits them to the calls at the front of the FIFO and marks those
    /// calls due.
    pub(super) fn completed(&mut self, count: u64, last_seq: u64) {
        // A completion covers a run of consecutive sequence numbers.
        let mut seq = last_seq.saturating_add(1).saturating_sub(count);
        let mut remaining = count.min(self.in_flight);
        self.in_flight -= remaining;
        while remaining > 0 {
            let Some((slot, pending)) = self.fifo.front_mut() else {
                break;
            };
            let n = (*pending).min(remaining);
            if let Some(call) = self.slots.get_mut(*slot) {
                call.first_seq.get_or_insert(seq);
                call.last_seq = seq + n - 1;
                call.written += n;
                self.due.push(*slot);
            }
            seq += n;
            remaining -= n;
            *pending -= n;
            if *pending == 0 {
                self.fifo.pop_front();
            }
        }
    }

    /// Starts a call from its request head, or answers it at once (not gRPC, an unknown
    /// method, a malformed `grpc-timeout`, a refused token, a gRPC-Web preflight or streaming
    /// method). Returns whether a call was started.
    pub(super) fn start(
        &mut self,
        request: Request<RecvStream>,
        mut respond: SendResponse<Bytes>,
        now: Instant,
        shared: &Shared,
        log: &ServerLog,
        peer: std::net::SocketAddr,
    ) -> bool {
        let (head, recv) = request.into_parts();
        // Not gRPC at all: plain HTTP answers, as the gRPC HTTP/2 protocol asks.
        let content_type = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes);
        let header = |name: &str| head.headers.get(name).map(HeaderValue::as_bytes);
        let path = head.uri.path();
        let cors = shared.cors();
        if head.method == Method::OPTIONS && GRPC_WEB_PATHS.contains(&path) {
            // A browser's CORS preflight before a gRPC-Web call.
            send_web(&mut Some(respond), cors.preflight(header("origin")), &[]);
            return false;
        }
        let web_mode = content_type.and_then(Mode::of_content_type);
        let grpc_web = content_type.is_some_and(|t| {
            t.len() >= 20 && t[..20].eq_ignore_ascii_case(b"application/grpc-web")
        });
        let http_error = if head.method != Method::POST {
            Some(StatusCode::METHOD_NOT_ALLOWED)
        } else if web_mode.is_none()
            && (grpc_web || !content_type.is_some_and(|t| t.starts_with(b"application/grpc")))
        {
            // `application/grpc-web+json` too: this server speaks protobuf only.
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        } else {
            None
        };
        if let Some(status) = http_error {
            let mut response = Response::new(());
            *response.status_mut() = status;
            // The request is dropped unread; h2 resets the stream with NO_ERROR.
            if respond.send_response(response, true).is_err() {
                // The stream is already gone (the client reset it): nothing to tell.
            }
            return false;
        }
        let web = web_mode.map(|request| Web {
            request,
            response: request.of_response(header("accept")),
            cors: cors.response_headers(header("origin")),
            text: Vec::new(),
        });
        let refuse = |respond: SendResponse<Bytes>, status: &Status| {
            answer_status(&mut Some(respond), &mut None, web.as_ref(), status);
        };
        let method = match path {
            "/logmill.v1.LogService/Push" => Some(Rpc::Push),
            "/logmill.v1.LogService/PushStream" => Some(Rpc::PushStream),
            "/logmill.v1.LogService/LogMessage" => Some(Rpc::LogMessage),
            "/grpc.health.v1.Health/Check" => Some(Rpc::HealthCheck),
            "/grpc.health.v1.Health/Watch" => Some(Rpc::HealthWatch),
            OTLP_EXPORT => Some(Rpc::OtlpExport),
            _ => None,
        };
        let Some(method) = method else {
            let status = Status::new(
                Code::Unimplemented,
                format!(
                    "unknown method {}: this server has logmill.v1.LogService/Push, \
                     logmill.v1.LogService/PushStream, logmill.v1.LogService/LogMessage, \
                     grpc.health.v1.Health/Check, grpc.health.v1.Health/Watch and \
                     opentelemetry.proto.collector.logs.v1.LogsService/Export",
                    head.uri.path()
                ),
            );
            refuse(respond, &status);
            return false;
        };
        if web.is_some() && matches!(method, Rpc::PushStream | Rpc::HealthWatch) {
            let status = Status::new(
                Code::Unimplemented,
                format!(
                    "{path} is a streaming method, which gRPC-Web cannot carry here; use \
                     logmill.v1.LogService/Push or LogMessage (or Health/Check)"
                ),
            );
            refuse(respond, &status);
            return false;
        }
        let timeout = head.headers.get("grpc-timeout").map(|v| v.as_bytes());
        let deadline = match timeout.map(grpc::parse_timeout) {
            None => None,
            Some(Some(timeout)) => Some(now + timeout),
            Some(None) => {
                let status = Status::new(
                    Code::Internal,
                    format!(
                        "malformed grpc-timeout {:?}: expected 1 to 8 digits and one of H M S m u n",
                        String::from_utf8_lossy(timeout.unwrap_or_default())
                    ),
                );
                refuse(respond, &status);
                return false;
            }
        };
        let text = |name: &str| {
            head.headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        };
        let app = text("logmill-app");
        if !app.is_empty() && !crate::storage::bucket::valid_app_name(&app) {
            // The app names a directory: refused before it is ever a path.
            log.warn(format_args!(
                "gRPC call from {peer}: refused: logmill-app {app:?} is not \
                 [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}"
            ));
            let status = Status::new(
                Code::InvalidArgument,
                format!("logmill-app {app:?} is not [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}"),
            );
            refuse(respond, &status);
            return false;
        }
        let instance = text("logmill-instance");
        let origin = match method {
            // Health calls store nothing: no token asked.
            Rpc::HealthCheck | Rpc::HealthWatch => Origin::default(),
            Rpc::Push | Rpc::PushStream | Rpc::LogMessage | Rpc::OtlpExport => {
                let authorization = head.headers.get(http::header::AUTHORIZATION);
                match admit(
                    authorization.map(HeaderValue::as_bytes),
                    app,
                    instance,
                    shared,
                    peer,
                ) {
                    Ok(origin) => origin,
                    Err(refused) => {
                        let count = shared.stats().count_refused_auth(refused.app.as_deref());
                        log.warn(format_args!(
                            "gRPC call from {peer}: {}{}; answered UNAUTHENTICATED ({})",
                            refused.message,
                            refused.detail,
                            crate::storage::server_log::count(count, "refusal")
                        ));
                        let status = Status::new(Code::Unauthenticated, refused.message);
                        refuse(respond, &status);
                        return false;
                    }
                }
            }
        };
        if method == Rpc::OtlpExport
            && let Some(status) = otlp_backpressure(shared)
        {
            // An exporter retries UNAVAILABLE after a backoff: better than a call whose data
            // the server will not take until the writer has room.
            refuse(respond, &status);
            return false;
        }
        // A connection whose calls name different apps is listed under its latest push call's.
        if method.pushes() {
            self.entry.set_origin(&origin);
        }
        let entry = self.slots.vacant_entry();
        let slot = entry.key();
        entry.insert(Call {
            method,
            waker: waker_for(self.wake.clone(), Some(slot)),
            recv: Some(recv),
            respond: Some(respond),
            send: None,
            deframer: Deframer::default(),
            encoding: Encoding::from_header(
                head.headers.get("grpc-encoding").map(HeaderValue::as_bytes),
            ),
            origin,
            deadline,
            messages: 0,
            pushed: 0,
            written: 0,
            first_seq: None,
            last_seq: 0,
            withheld: 0,
            input_done: false,
            answered: false,
            service: None,
            watch_sent: None,
            web,
            rejected: 0,
            error_message: String::new(),
        });
        self.due.push(slot);
        true
    }

    /// Moves one call forward: cancellation, deadline, request data, reply.
    /// `shutting_down`: the connection began its shutdown (health answers change).
    pub(super) fn poll(
        &mut self,
        slot: usize,
        cx: &mut GrpcContext<'_>,
        now: Instant,
        budget: &mut usize,
        shutting_down: bool,
    ) {
        let Some(call) = self.slots.get_mut(slot) else {
            return;
        };
        let waker = call.waker.clone();
        let mut task = Context::from_waker(&waker);
        if !call.answered {
            let reset = match (&mut call.respond, &mut call.send) {
                (Some(respond), _) => respond.poll_reset(&mut task).is_ready(),
                (None, Some(send)) => send.poll_reset(&mut task).is_ready(),
                (None, None) => false,
            };
            if reset {
                call.release();
            } else if call.deadline.is_some_and(|d| now >= d) {
                let status = Status::new(
                    Code::DeadlineExceeded,
                    format!(
                        "deadline (grpc-timeout) passed before the call's records were all \
                         written ({} of {} so far; the rest will still be stored)",
                        call.written, call.pushed
                    ),
                );
                call.answer_status(&status);
                call.release();
            }
        }
        if !call.answered && call.recv.is_some() {
            self.read(slot, &mut task, cx, budget);
        }
        let Some(call) = self.slots.get_mut(slot) else {
            return;
        };
        // A health call is answered once its request message is in; one whose input ended
        // without a message was already failed by `read`.
        if !call.answered {
            match call.method {
                Rpc::Push | Rpc::PushStream | Rpc::LogMessage => {
                    if call.input_done && call.written == call.pushed {
                        // A call with no records has no sequence numbers: both stay 0.
                        let reply = PushResponse {
                            accepted: call.pushed,
                            first_seq: call.first_seq.unwrap_or(0),
                            last_seq: call.last_seq,
                        };
                        call.answer_reply(&reply);
                        call.release();
                    }
                }
                Rpc::OtlpExport => {
                    if call.input_done && call.written == call.pushed {
                        let reply = otlp::response(call.rejected, &call.error_message);
                        call.answer_reply(&reply);
                        call.release();
                    }
                }
                Rpc::HealthCheck => {
                    if let Some(service) = call.service.take() {
                        if HEALTH_SERVICES.contains(&service.as_str()) {
                            let status = serving_status(cx.shared, shutting_down);
                            let reply = HealthCheckResponse {
                                status: status as i32,
                            };
                            call.answer_reply(&reply);
                        } else {
                            let status =
                                Status::new(Code::NotFound, format!("unknown service {service:?}"));
                            call.answer_status(&status);
                        }
                        call.release();
                    }
                }
                Rpc::HealthWatch => {
                    if let Some(service) = &call.service {
                        let status = if !HEALTH_SERVICES.contains(&service.as_str()) {
                            ServingStatus::ServiceUnknown
                        } else {
                            serving_status(cx.shared, shutting_down)
                        };
                        watch_update(
                            &mut call.respond,
                            &mut call.send,
                            &mut call.watch_sent,
                            status,
                        );
                        if shutting_down {
                            let status = Status::new(Code::Unavailable, "server is shutting down");
                            send_status(&mut call.respond, &mut call.send, &status);
                            call.release();
                        } else {
                            let next = now + WATCH_EVERY;
                            self.next_watch_check =
                                Some(self.next_watch_check.map_or(next, |at| at.min(next)));
                        }
                    }
                }
            }
        }
        if self.slots[slot].finished() {
            self.slots.remove(slot);
        }
    }

    /// Fails the calls holding the most unfinished message bytes while the connection holds more
    /// than [`GrpcLimits::max_partial`]: HTTP/2 windows bound what is unreleased, but capacity
    /// released for unfinished messages would otherwise let one connection hold a message on
    /// each of its calls.
    pub(super) fn limit_partial(&mut self, cx: &mut GrpcContext<'_>) {
        let max = self.max_partial;
        let mut partial: usize = self.slots.iter().map(|(_, c)| c.deframer.pending()).sum();
        while partial > max {
            let Some((slot, largest)) = self
                .slots
                .iter()
                .map(|(slot, c)| (slot, c.deframer.pending()))
                .max_by_key(|&(_, pending)| pending)
            else {
                return;
            };
            cx.shared.stats().count_shed();
            cx.log.warn(format_args!(
                "gRPC call from {}: {partial} bytes of unfinished messages on one connection, \
                 over its limit of {max}; the call holding {largest} failed with \
                 RESOURCE_EXHAUSTED",
                self.peer
            ));
            let status = Status::new(
                Code::ResourceExhausted,
                format!(
                    "this connection holds {partial} bytes of unfinished messages, over the \
                     server's limit of {max}; this call held the most"
                ),
            );
            self.fail(slot, status, cx);
            partial -= largest;
        }
    }

    /// Takes the call's request data: deframe, decode, push to the batch, then release the
    /// flow-control capacity of each chunk (only then may the client send more): at once for
    /// bytes of complete messages, and for bytes of an unfinished message only while the input
    /// budget has room (module doc, "Unfinished input").
    fn read(
        &mut self,
        slot: usize,
        task: &mut Context<'_>,
        cx: &mut GrpcContext<'_>,
        budget: &mut usize,
    ) {
        let max = self.max_message;
        let grant = self.may_grow;
        if grant
            && let Some(call) = self.slots.get_mut(slot)
            && call.withheld > 0
            && let Some(recv) = &mut call.recv
        {
            if recv.flow_control().release_capacity(call.withheld).is_err() {
                // The stream is already closed; nothing more arrives on it.
            }
            call.withheld = 0;
        }
        loop {
            let call = &mut self.slots[slot];
            let pushes = call.method.pushes();
            if pushes && (cx.shared.pending_full() || *budget == 0) {
                // Backpressure or fairness: come back to this call at the next drive.
                self.due.push(slot);
                return;
            }
            let Some(recv) = &mut call.recv else {
                return;
            };
            let chunk = match recv.poll_data(task) {
                Poll::Pending => return,
                Poll::Ready(Some(Ok(chunk))) => chunk,
                Poll::Ready(Some(Err(_))) => {
                    // Reset by the client, or the connection failed: nobody to answer.
                    call.release();
                    return;
                }
                Poll::Ready(None) => {
                    call.input_done = true;
                    call.recv = None;
                    if let Some(web) = call.web.as_mut().filter(|w| !w.text.is_empty()) {
                        // The last piece of a text-mode body, unpadded.
                        let result = match web.decode(&[], true) {
                            Ok(last) => self.take_chunk(slot, &last, max, cx),
                            Err(status) => Err(status),
                        };
                        if let Err(status) = result {
                            self.fail(slot, status, cx);
                            return;
                        }
                    }
                    let call = &mut self.slots[slot];
                    let problem = if call.deframer.pending() > 0 {
                        Some(format!(
                            "request body ended inside a message ({} bytes of it received)",
                            call.deframer.pending()
                        ))
                    } else if call.messages == 0 && call.method.unary() {
                        Some("unary call without a request message".to_string())
                    } else {
                        None
                    };
                    if let Some(problem) = problem {
                        self.fail(slot, Status::new(Code::Internal, problem), cx);
                    }
                    return;
                }
            };
            *budget = budget.saturating_sub(chunk.len());
            let text = call.web.as_mut().filter(|w| w.request == Mode::Text);
            let result = match text.map(|web| web.decode(&chunk, false)) {
                Some(Ok(binary)) => self.take_chunk(slot, &binary, max, cx),
                Some(Err(status)) => Err(status),
                None => self.take_chunk(slot, &chunk, max, cx),
            };
            if self.inflated.capacity() > KEEP_INFLATED {
                self.inflated = Vec::new();
            }
            let call = &mut self.slots[slot];
            let unreleased = call.withheld + chunk.len();
            let keep = if grant {
                0
            } else {
                call.deframer.pending().min(unreleased)
            };
            call.withheld = keep;
            if let Some(recv) = &mut call.recv
                && recv
                    .flow_control()
                    .release_capacity(unreleased - keep)
                    .is_err()
            {
                // The stream is already closed; nothing more arrives on it.
            }
            if let Err(status) = result {
                self.fail(slot, status, cx);
                return;
            }
        }
    }

    /// Feeds one DATA chunk to the call's deframer and handles each complete message: a push
    /// goes down the record path ([`push_records`]), a health request names its service.
    fn take_chunk(
        &mut self,
        slot: usize,
        chunk: &[u8],
        max: usize,
        cx: &mut GrpcContext<'_>,
    ) -> Result<(), Status> {
        let call = &mut self.slots[slot];
        let Call {
            method,
            deframer,
            encoding,
            origin,
            messages,
            pushed,
            service,
            rejected,
            error_message,
            ..
        } = call;
        let key = self.key;
        let entry = &mut self.entry;
        entry.read(chunk.len());
        let inflated = &mut self.inflated;
        let fifo = &mut self.fifo;
        let in_flight = &mut self.in_flight;
        let fed = deframer.feed(chunk, max, |compressed, payload| {
            *messages += 1;
            let payload = if compressed {
                inflate(encoding, payload, max, inflated)?
            } else {
                payload
            };
            match method {
                Rpc::Push | Rpc::PushStream | Rpc::LogMessage | Rpc::OtlpExport => {
                    if *method == Rpc::OtlpExport && *messages > 1 {
                        return Err(Status::new(
                            Code::Internal,
                            "Export is unary: one ExportLogsServiceRequest per call",
                        ));
                    }
                    if *method == Rpc::Push && *messages > 1 {
                        return Err(Status::new(
                            Code::Internal,
                            "Push is unary: one PushRequest per call (use PushStream for more)",
                        ));
                    }
                    if *method == Rpc::LogMessage && *messages > 1 {
                        return Err(Status::new(
                            Code::Internal,
                            "LogMessage is unary: one LogRecord per call (use Push for more)",
                        ));
                    }
                    let n = match method {
                        Rpc::LogMessage => push_record(payload, key, origin, cx)?,
                        Rpc::OtlpExport => {
                            let (n, refused, why) = push_otlp(payload, max, key, origin, cx)?;
                            *rejected = refused;
                            *error_message = why;
                            n
                        }
                        _ => push_records(payload, *messages, key, origin, cx)?,
                    };
                    if n > 0 {
                        match fifo.back_mut() {
                            Some((last, count)) if *last == slot => *count += n,
                            _ => fifo.push_back((slot, n)),
                        }
                        *pushed += n;
                        *in_flight += n;
                        entry.received(n, cx.now_ns);
                        cx.shared.stats().received(n);
                    }
                }
                Rpc::HealthCheck | Rpc::HealthWatch => {
                    if *messages > 1 {
                        return Err(Status::new(
                            Code::Internal,
                            "health calls take one HealthCheckRequest",
                        ));
                    }
                    let request = HealthCheckRequest::decode(payload).map_err(|e| {
                        Status::new(
                            Code::InvalidArgument,
                            format!("not a valid HealthCheckRequest: {e}"),
                        )
                    })?;
                    *service = Some(request.service);
                }
            }
            Ok(())
        });
        match fed {
            Ok(()) => Ok(()),
            Err(FeedError::Handler(status)) => Err(status),
            Err(FeedError::Message(e @ grpc::MessageError::TooLarge { .. })) => Err(Status::new(
                Code::ResourceExhausted,
                format!("{e} (the server's limit)"),
            )),
            Err(FeedError::Message(e)) => Err(Status::new(Code::Internal, e.to_string())),
        }
    }

    /// Ends a call with an error status; records it already pushed are still stored.
    pub(super) fn fail(&mut self, slot: usize, mut status: Status, cx: &mut GrpcContext<'_>) {
        let call = &mut self.slots[slot];
        if call.pushed > 0 {
            status.message.push_str(&format!(
                "; the call's {} before this point {} stored",
                crate::storage::server_log::count(call.pushed, "record"),
                if call.pushed == 1 { "is" } else { "are" }
            ));
        }
        if status.code == Code::InvalidArgument {
            let count = cx.shared.stats().decode_error(crate::stats::Decoder::Grpc);
            cx.log.warn(format_args!(
                "gRPC call from {}: {}; {} so far",
                self.peer,
                status.message,
                crate::storage::server_log::count(count, "decode error")
            ));
        }
        call.answer_status(&status);
        call.release();
    }
}
