//! `logmill bench --proto grpc` and `--proto otlp-grpc`: the load of `native.rs` sent as gRPC
//! calls, with `h2`'s client driven by hand from bench's own mio loop (no tokio runtime), as
//! `server::grpc` drives its server side. The two differ only in their [`Service`]: the method,
//! the metadata and how a reply accounts for its records.
//!
//! # How `h2` runs without a runtime
//!
//! Each connection's socket is registered with the loop's `Poll` (edge-triggered, READABLE |
//! WRITABLE) and then handed to `h2` inside [`H2Io`], which turns `WouldBlock` into `Pending`.
//! Any event on the socket makes the loop call [`GrpcConn::drive`], which polls the `h2`
//! connection (reads and writes frames) and every call on it. `h2` also wakes tasks itself, for
//! instance a call waiting for flow-control capacity once a WINDOW_UPDATE is read: each
//! connection's [`Waker`] only sets a flag ([`FlagWaker`]), and `drive` goes round again while the
//! flag is set.
//! Everything happens on the loop's thread, so a wake never needs to interrupt `poll`.
//!
//! # The load
//!
//! - `--grpc-mode stream`: each connection opens one `PushStream` call, sends its share of the
//!   records as `PushRequest` messages of `--batch` records, ends the stream and waits for the
//!   one `PushResponse`. No latency is measured (there is one reply per connection).
//! - `--grpc-mode unary`: each connection issues `Push` calls of `--batch` records, keeping
//!   `--grpc-calls` in flight; the latency of a call runs from opening it to its status.
//! - `--proto otlp-grpc`: unary OTLP `LogsService/Export` calls, as `--grpc-mode unary` drives
//!   `Push`, each an `ExportLogsServiceRequest` of `--batch` records with the connection's app
//!   token as `authorization: Bearer` (`--apps`).
//!
//! Every call must end with `grpc-status: 0` and a reply that accounts for all its records: a
//! `PushResponse` whose `accepted` is the call's record count, or an
//! `ExportLogsServiceResponse` that rejects none (no `partial_success.rejected_log_records`). Messages come from a [`Template`] per connection, stamped with the
//! record numbers: the per-batch work while the clock runs is that stamp and one copy of the
//! message into a `Bytes` (which `h2` keeps until the bytes are on the wire). Data is handed to
//! `h2` only as flow-control capacity is assigned, so nothing piles up in its send buffers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::{Connection, ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, TE};
use http::{Method, Request, StatusCode, Uri};
use mio::Events;
use prost::Message as _;

use super::apps::Apps;
use super::args::{BenchArgs, GrpcMode, Proto, share};
use super::error::{BenchError, setup};
use super::otlp;
use super::progress::Progress;
use super::report::LoadReport;
use super::socket::{connect, wait};
use super::spawn::SpawnedServer;
use super::templates::Template;
use super::usage::Usage;
use crate::protocol::grpc::logmill_v1::PushResponse;
use crate::protocol::grpc::{self as grpc_wire};
// The h2 I/O adapter and the waker are shared with the server's gRPC side; these two lines are
// all that names where they live.
use crate::net::h2_io::H2Io;
use crate::net::waker::{FlagWaker, waker_for};

/// The largest reply accepted: a `PushResponse` is three varints, an `ExportLogsServiceResponse`
/// a count and a message.
const MAX_REPLY: usize = 1 << 16;

/// What a connection's calls are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    /// logmill's own `Push` (unary) or `PushStream`.
    Push(GrpcMode),
    /// OTLP's unary `LogsService/Export`.
    OtlpExport,
}

impl Service {
    fn of(args: &BenchArgs) -> Service {
        match args.proto {
            Proto::OtlpGrpc => Service::OtlpExport,
            _ => Service::Push(args.grpc_mode),
        }
    }

    fn method(self) -> &'static str {
        match self {
            Service::Push(GrpcMode::Stream) => "logmill.v1.LogService/PushStream",
            Service::Push(GrpcMode::Unary) => "logmill.v1.LogService/Push",
            Service::OtlpExport => "opentelemetry.proto.collector.logs.v1.LogsService/Export",
        }
    }

    /// One call carries all of a connection's records (a stream), or `--batch` of them.
    fn is_stream(self) -> bool {
        self == Service::Push(GrpcMode::Stream)
    }

    /// How its messages are encoded.
    fn proto(self) -> Proto {
        match self {
            Service::Push(_) => Proto::Grpc,
            Service::OtlpExport => Proto::OtlpGrpc,
        }
    }
}

/// Sends every record as gRPC calls to `addr` (the server's gRPC port), waits for every reply,
/// and measures.
///
/// # Errors
/// [`BenchError`] when a connection fails, a call ends with a status other than OK, a reply
/// does not account for the call's records, or `--timeout` passes.
pub fn load(
    args: &BenchArgs,
    apps: &Apps,
    addr: SocketAddr,
    server: Option<&SpawnedServer>,
    deadline: Instant,
) -> Result<LoadReport, BenchError> {
    let n = args.connections as usize;
    let size = args.size as usize;
    let mut poll = mio::Poll::new().map_err(setup("cannot create a mio Poll"))?;
    eprintln!("logmill bench: opening {n} HTTP/2 connections to {addr}");
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let stream = connect(&poll, i, addr, deadline, args.timeout)?;
        let total = share(i, n, args.records);
        let (_, token) = apps.of(i);
        conns.push(GrpcConn::new(i, stream, args, token, addr, total, size)?);
    }
    let mut events = Events::with_capacity(1024);
    let mut latencies = Vec::new();

    // Set-up (the HTTP/2 preface and settings) happens before the clock starts.
    for conn in &mut conns {
        conn.drive(&mut latencies)?;
    }
    while conns.iter().any(|c| !c.is_open()) {
        let opened = conns.iter().filter(|c| c.is_open()).count();
        wait(&mut poll, &mut events, deadline, args.timeout, || {
            format!("HTTP/2 handshakes ({opened} of {n} done)")
        })?;
        for event in events.iter() {
            conns[event.token().0].drive(&mut latencies)?;
        }
    }

    let mut progress = Progress::new(!args.no_progress, args.records);
    let usage = Usage::before(server);
    let service = Service::of(args);
    eprintln!(
        "logmill bench: sending {} records of {size} bytes as gRPC {} calls, {} per message",
        args.records,
        service.method(),
        args.batch
    );
    let start = Instant::now();
    let mut accepted = 0;
    let mut end = start;
    for conn in &mut conns {
        conn.started = true;
        accepted += conn.drive(&mut latencies)?;
    }
    if accepted > 0 {
        end = Instant::now();
    }
    while conns.iter().any(|c| !c.complete()) {
        wait(&mut poll, &mut events, deadline, args.timeout, || {
            format!("replies ({accepted} of {} records accepted)", args.records)
        })?;
        for event in events.iter() {
            let newly = conns[event.token().0].drive(&mut latencies)?;
            if newly > 0 {
                accepted += newly;
                end = Instant::now();
            }
        }
        progress.update(accepted, start.elapsed());
    }
    progress.finish();
    if accepted != args.records {
        return Err(BenchError::Protocol {
            conn: 0,
            detail: format!(
                "the replies accepted {accepted} records in all, not {}",
                args.records
            ),
        });
    }
    let latencies = (!service.is_stream()).then_some(latencies.as_mut_slice());
    Ok(usage.report(server, args, end - start, latencies))
}

type Handshake =
    Pin<Box<dyn Future<Output = Result<(SendRequest<Bytes>, Connection<H2Io, Bytes>), h2::Error>>>>;

/// Where a connection's HTTP/2 stands.
enum State {
    Handshaking(Handshake),
    Open {
        send: SendRequest<Bytes>,
        /// Boxed: the connection state is over a kilobyte, the handshake a pointer.
        h2: Box<Connection<H2Io, Bytes>>,
    },
}

/// One HTTP/2 connection, its share of the records and its calls in flight.
struct GrpcConn {
    index: usize,
    /// Raised by `waker` when `h2` wakes a task: the connection's `drive` looks at it before
    /// returning.
    woken: Arc<FlagWaker>,
    waker: Waker,
    state: State,
    /// The clock runs: calls may be opened.
    started: bool,
    load: Load,
}

/// A connection's share of the records and its calls in flight (apart from [`State`], so both
/// can be borrowed at once).
struct Load {
    uri: Uri,
    instance: String,
    /// `Bearer TOKEN` for OTLP calls when bench has a token for the connection's app.
    authorization: Option<HeaderValue>,
    /// Calls in flight at most: 1 for a stream, `--grpc-calls` for unary.
    max_calls: usize,
    service: Service,
    /// Records this connection sends in all, put into calls so far, and accepted by replies.
    total: u64,
    called: u64,
    accepted: u64,
    messages: Messages,
    calls: Vec<Call>,
}

/// The connection's message templates and the next record number.
struct Messages {
    batch: u64,
    queued: u64,
    /// A message of `batch` records; present when `total >= batch`.
    full: Option<Template>,
    /// A message of the last `total % batch` records; present when that is not zero.
    tail: Option<Template>,
}

impl Messages {
    /// The next message, of `batch` records or (once fewer are `left`) the tail, numbered from
    /// `queued`, and how many records it holds.
    fn next(&mut self, left: u64) -> (Bytes, u64) {
        let template = if left >= self.batch {
            self.full.as_mut()
        } else {
            self.tail.as_mut()
        }
        .expect("`full` exists while a batch remains, `tail` when fewer remain");
        template.stamp(self.queued);
        self.queued += template.records;
        (Bytes::copy_from_slice(&template.frame), template.records)
    }
}

/// One call in flight.
struct Call {
    records: u64,
    /// Records already turned into messages.
    sent: u64,
    stream: SendStream<Bytes>,
    /// The part of the current message not yet handed to `h2`.
    pending: Bytes,
    /// END_STREAM is sent: the request is complete.
    ended: bool,
    reply: Reply,
    opened: Instant,
}

enum Reply {
    Waiting(ResponseFuture),
    Body { body: RecvStream, data: Vec<u8> },
}

impl GrpcConn {
    fn new(
        index: usize,
        stream: mio::net::TcpStream,
        args: &BenchArgs,
        token: &str,
        addr: SocketAddr,
        total: u64,
        size: usize,
    ) -> Result<GrpcConn, BenchError> {
        let service = Service::of(args);
        let uri: Uri = format!("http://{addr}/{}", service.method())
            .parse()
            .map_err(|e| BenchError::Usage(format!("no URI for {addr}: {e}")))?;
        let authorization = match (service, token) {
            (Service::OtlpExport, token) if !token.is_empty() => Some(
                HeaderValue::try_from(format!("Bearer {token}"))
                    .map_err(|e| BenchError::Usage(format!("a token unfit for a header: {e}")))?,
            ),
            _ => None,
        };
        let batch = u64::from(args.batch);
        let tail = total % batch;
        let woken = Arc::new(FlagWaker::default());
        let handshake: Handshake =
            Box::pin(h2::client::Builder::new().handshake(H2Io::new(stream, Vec::new())));
        Ok(GrpcConn {
            index,
            waker: waker_for(woken.clone(), None),
            woken,
            state: State::Handshaking(handshake),
            started: false,
            load: Load {
                uri,
                instance: format!("c{index:05}"),
                authorization,
                max_calls: if service.is_stream() {
                    1
                } else {
                    args.grpc_calls as usize
                },
                service,
                total,
                called: 0,
                accepted: 0,
                messages: Messages {
                    batch,
                    queued: 0,
                    full: (total >= batch)
                        .then(|| Template::new(service.proto(), index, batch as usize, size)),
                    tail: (tail > 0)
                        .then(|| Template::new(service.proto(), index, tail as usize, size)),
                },
                calls: Vec::new(),
            },
        })
    }

    fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    fn complete(&self) -> bool {
        self.load.accepted == self.load.total
    }

    /// Polls the connection and its calls until nothing is left to do without new input.
    /// Returns how many records replies newly accepted; pushes unary call latencies.
    fn drive(&mut self, latencies: &mut Vec<Duration>) -> Result<u64, BenchError> {
        let mut newly = 0;
        let waker = self.waker.clone();
        let mut cx = Context::from_waker(&waker);
        loop {
            self.woken.clear();
            match &mut self.state {
                State::Handshaking(handshake) => match handshake.as_mut().poll(&mut cx) {
                    Poll::Ready(Ok((send, h2))) => {
                        self.state = State::Open {
                            send,
                            h2: Box::new(h2),
                        };
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Err(h2_error(self.index, e)),
                    Poll::Pending => {}
                },
                State::Open { send, h2 } => {
                    if self.started {
                        newly += self.load.step(self.index, send, &mut cx, latencies)?;
                    }
                    if let Poll::Ready(result) = Pin::new(h2.as_mut()).poll(&mut cx) {
                        result.map_err(|e| h2_error(self.index, e))?;
                        if self.load.accepted != self.load.total {
                            return Err(BenchError::Closed {
                                conn: self.index,
                                detail: format!(
                                    "after {} of its {} records were accepted",
                                    self.load.accepted, self.load.total
                                ),
                            });
                        }
                    }
                }
            }
            if !self.woken.is_set() {
                return Ok(newly);
            }
        }
    }
}

impl Load {
    /// Opens calls while there is room and records, reads replies, sends request data.
    fn step(
        &mut self,
        conn: usize,
        send: &mut SendRequest<Bytes>,
        cx: &mut Context<'_>,
        latencies: &mut Vec<Duration>,
    ) -> Result<u64, BenchError> {
        while self.calls.len() < self.max_calls && self.called < self.total {
            match send.poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Err(h2_error(conn, e)),
                Poll::Pending => break,
            }
            let records = if self.service.is_stream() {
                self.total - self.called
            } else {
                self.messages.batch.min(self.total - self.called)
            };
            let mut request = Request::builder()
                .method(Method::POST)
                .uri(self.uri.clone())
                .header(CONTENT_TYPE, "application/grpc")
                .header(TE, "trailers");
            request = match (self.service, &self.authorization) {
                (Service::Push(_), _) => request
                    .header("logmill-app", "logmill-bench")
                    .header("logmill-instance", self.instance.as_str()),
                (Service::OtlpExport, Some(bearer)) => request.header(AUTHORIZATION, bearer),
                (Service::OtlpExport, None) => request,
            };
            let request = request
                .body(())
                .map_err(|e| BenchError::Usage(format!("cannot build a request: {e}")))?;
            let (response, stream) = send
                .send_request(request, false)
                .map_err(|e| h2_error(conn, e))?;
            self.called += records;
            self.calls.push(Call {
                records,
                sent: 0,
                stream,
                pending: Bytes::new(),
                ended: false,
                reply: Reply::Waiting(response),
                opened: Instant::now(),
            });
        }
        let mut newly = 0;
        let mut i = 0;
        while i < self.calls.len() {
            let call = &mut self.calls[i];
            // The reply first: a server that fails a call early says why in its status.
            if let Some(accepted) = call.receive(conn, self.service, cx)? {
                if accepted != call.records {
                    return Err(BenchError::Protocol {
                        conn,
                        detail: format!(
                            "a reply accepted {accepted} records of a call that sent {}",
                            call.records
                        ),
                    });
                }
                if !self.service.is_stream() {
                    // Not the `now` of the event: a fast reply can open and end a call within
                    // one `drive`.
                    latencies.push(call.opened.elapsed());
                }
                newly += accepted;
                self.calls.swap_remove(i);
                continue;
            }
            call.feed(conn, &mut self.messages, cx)?;
            i += 1;
        }
        self.accepted += newly;
        Ok(newly)
    }
}

impl Call {
    /// Hands request data to `h2` as far as flow control allows; the last byte carries
    /// END_STREAM.
    fn feed(
        &mut self,
        conn: usize,
        messages: &mut Messages,
        cx: &mut Context<'_>,
    ) -> Result<(), BenchError> {
        while !self.ended {
            if self.pending.is_empty() {
                let (message, records) = messages.next(self.records - self.sent);
                self.pending = message;
                self.sent += records;
            }
            self.stream.reserve_capacity(self.pending.len());
            let mut capacity = self.stream.capacity();
            if capacity == 0 {
                match self.stream.poll_capacity(cx) {
                    Poll::Pending => return Ok(()),
                    Poll::Ready(Some(Ok(n))) => capacity = n,
                    Poll::Ready(Some(Err(e))) => return Err(h2_error(conn, e)),
                    Poll::Ready(None) => {
                        return Err(BenchError::Closed {
                            conn,
                            detail: "a call's stream before its request was sent".into(),
                        });
                    }
                }
            }
            let chunk = self
                .pending
                .split_to(capacity.min(self.pending.len()).max(1));
            let end = self.pending.is_empty() && self.sent == self.records;
            self.stream
                .send_data(chunk, end)
                .map_err(|e| h2_error(conn, e))?;
            self.ended = end;
        }
        Ok(())
    }

    /// Reads the reply as far as it has come: `Some(accepted)` once the trailers say OK.
    fn receive(
        &mut self,
        conn: usize,
        service: Service,
        cx: &mut Context<'_>,
    ) -> Result<Option<u64>, BenchError> {
        loop {
            match &mut self.reply {
                Reply::Waiting(response) => match Pin::new(response).poll(cx) {
                    Poll::Pending => return Ok(None),
                    Poll::Ready(Err(e)) => return Err(h2_error(conn, e)),
                    Poll::Ready(Ok(response)) => {
                        if response.status() != StatusCode::OK {
                            return Err(BenchError::Protocol {
                                conn,
                                detail: format!("a call answered HTTP {}", response.status()),
                            });
                        }
                        let (head, body) = response.into_parts();
                        // A trailers-only answer (an error) has its status in the headers.
                        if head.headers.contains_key("grpc-status") {
                            check_status(conn, &head.headers)?;
                        }
                        self.reply = Reply::Body {
                            body,
                            data: Vec::new(),
                        };
                    }
                },
                Reply::Body { body, data } => {
                    loop {
                        match body.poll_data(cx) {
                            Poll::Pending => return Ok(None),
                            Poll::Ready(Some(Ok(chunk))) => {
                                body.flow_control()
                                    .release_capacity(chunk.len())
                                    .map_err(|e| h2_error(conn, e))?;
                                if data.len() + chunk.len() > MAX_REPLY {
                                    return Err(BenchError::Protocol {
                                        conn,
                                        detail: format!("a reply over {MAX_REPLY} bytes"),
                                    });
                                }
                                data.extend_from_slice(&chunk);
                            }
                            Poll::Ready(Some(Err(e))) => return Err(h2_error(conn, e)),
                            Poll::Ready(None) => break,
                        }
                    }
                    let trailers = match body.poll_trailers(cx) {
                        Poll::Pending => return Ok(None),
                        Poll::Ready(Err(e)) => return Err(h2_error(conn, e)),
                        Poll::Ready(Ok(trailers)) => trailers.unwrap_or_default(),
                    };
                    check_status(conn, &trailers)?;
                    return decode_reply(data, service, self.records)
                        .map(Some)
                        .map_err(|detail| BenchError::Protocol { conn, detail });
                }
            }
        }
    }
}

/// How many of a call's `records` its reply body accepts: a `PushResponse`'s `accepted`, or for
/// an `ExportLogsServiceResponse` all of them unless it rejects some.
fn decode_reply(data: &[u8], service: Service, records: u64) -> Result<u64, String> {
    match grpc_wire::decode_message(data, MAX_REPLY) {
        Ok(grpc_wire::Message::Complete {
            compressed: false,
            payload,
            consumed,
        }) if consumed == data.len() => match service {
            Service::Push(_) => PushResponse::decode(payload)
                .map(|r| r.accepted)
                .map_err(|e| format!("a reply is not a PushResponse: {e}")),
            Service::OtlpExport => otlp::accepted(payload, records),
        },
        Ok(_) => Err(format!(
            "a reply body of {} bytes is not one uncompressed message",
            data.len()
        )),
        Err(e) => Err(format!("a reply: {e}")),
    }
}

/// OK, or the call's `grpc-status` and `grpc-message` as an error (a missing status too).
fn check_status(conn: usize, headers: &HeaderMap) -> Result<(), BenchError> {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    match text("grpc-status").as_deref() {
        Some("0") => Ok(()),
        status => Err(BenchError::GrpcStatus {
            conn,
            status: status.unwrap_or("(missing)").to_string(),
            message: grpc_wire::percent_decode(&text("grpc-message").unwrap_or_default()),
        }),
    }
}

fn h2_error(conn: usize, e: h2::Error) -> BenchError {
    if !e.is_io() {
        return BenchError::Protocol {
            conn,
            detail: format!("HTTP/2: {e}"),
        };
    }
    match e.into_io() {
        Some(source) => BenchError::Io { conn, source },
        None => BenchError::Protocol {
            conn,
            detail: "HTTP/2 I/O error".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::grpc::logmill_v1::PushResponse;

    #[test]
    fn replies_decode_to_their_count() {
        let mut body = Vec::new();
        let reply = PushResponse {
            accepted: 256,
            first_seq: 1,
            last_seq: 256,
        };
        grpc_wire::encode_message(&reply.encode_to_vec(), &mut body);
        let push = Service::Push(GrpcMode::Unary);
        assert_eq!(decode_reply(&body, push, 256), Ok(256));
        assert!(decode_reply(&body[..body.len() - 1], push, 256).is_err());
        assert!(decode_reply(&[], push, 256).is_err());
        let mut twice = body.clone();
        twice.extend_from_slice(&body);
        assert!(decode_reply(&twice, push, 256).is_err());
    }

    #[test]
    fn otlp_replies_accept_all_unless_they_reject() {
        let reply = |rejected, message| {
            let mut body = Vec::new();
            grpc_wire::encode_message(
                &crate::protocol::otlp::encode_response(rejected, message),
                &mut body,
            );
            decode_reply(&body, Service::OtlpExport, 512)
        };
        assert_eq!(reply(0, ""), Ok(512));
        assert_eq!(reply(0, "a warning only"), Ok(512));
        let refused = reply(2, "bad trace_id").unwrap_err();
        assert!(refused.contains("rejected 2 of 512") && refused.contains("bad trace_id"));
    }

    #[test]
    fn statuses_other_than_ok_are_errors() {
        let mut headers = HeaderMap::new();
        assert!(check_status(0, &headers).is_err(), "missing");
        headers.insert("grpc-status", "0".parse().unwrap());
        assert!(check_status(0, &headers).is_ok());
        headers.insert("grpc-status", "8".parse().unwrap());
        headers.insert("grpc-message", "too%20busy".parse().unwrap());
        match check_status(3, &headers) {
            Err(BenchError::GrpcStatus {
                conn: 3,
                status,
                message,
            }) => assert_eq!((status.as_str(), message.as_str()), ("8", "too busy")),
            other => panic!("{other:?}"),
        }
    }
}
