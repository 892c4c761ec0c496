//! HTTP/1.1 (and 1.0) on the gRPC port: the session of a connection whose first bytes were a
//! request line, not the HTTP/2 preface (`server::grpc` hands such a connection over to the
//! loop's ordinary slab, see [`web`]). Requests are read by the pure
//! `protocol::http1::read_request`, routed by [`routes`], answered by [`web`] ([`admin`] guards
//! the admin API, [`metrics`] renders `/metrics`, [`console`] is the control panel's login and
//! JSON API), in the order
//! they came (pipelining): each answer is appended to the connection's output as its request is
//! read, so order is kept by construction.
//!
//! What is the session's: keep-alive (`Connection: close` and HTTP/1.0 end the connection after
//! the answer), `100 Continue` (sent once per request, when its head is in and its body is not),
//! the header timeout (a head not complete [`Web::header_timeout`] after its first byte closes
//! the connection with `408`: the slowloris bound, see [`Handler::deadline`]), and the switch to
//! another session after a `101` (the route answers with the next session; see
//! [`Handler::take_next`]), and a gRPC-Web call or an OTLP request waiting for its records to
//! be written ([`Waiting`]: the session reads no further request until the ack answers it, then
//! the connection hands it what it kept, see [`Handler::holds_input`]). What is the connection's, as for every protocol: buffers, the input
//! budget, the idle timeout, the output limit, the lingering close.

pub mod admin;
pub mod answer;
pub mod console;
pub mod metrics;
pub mod routes;
pub mod web;

use std::sync::Arc;
use std::time::Instant;

use crate::protocol::grpc_web::Reply;
use crate::protocol::http1::{self, Parsed, Response, Version};
use crate::server::session::{Context, Farewell, Handler, Progress, Session, Sink};
use answer::{Answer, Waiting};
use web::Web;

/// Answers queued and not yet sent past which a pipelining client is closed: what the
/// connection would let a slow reader leave unread (`server::connection`'s output limit).
const MAX_UNREAD_ANSWERS: usize = 1024 * 1024;

/// One HTTP connection's state between requests.
pub struct Http {
    web: Arc<Web>,
    /// When the first byte of the head now being received came: the header timeout runs from
    /// here. `None` between requests (an idle keep-alive connection has no deadline but
    /// `--idle-timeout`).
    head_since: Option<Instant>,
    /// `100 Continue` was sent for the request now being received.
    continued: bool,
    /// The session the connection continues with after a `101 Switching Protocols` (boxed: a
    /// session cannot hold a session in place).
    next: Option<Box<Session>>,
    /// A request waiting for its records to be written, and the version and keep-alive of the
    /// request (for the answer).
    pending: Option<(Waiting, Version, bool)>,
    /// A gRPC-Web call was served here: the metrics and `status` count the connection as
    /// `grpc-web`.
    grpc_web: bool,
    /// The answer to a `Connection: close` call went out: the connection ends.
    done: bool,
}

impl Http {
    pub fn new(web: Arc<Web>) -> Http {
        Http {
            web,
            head_since: None,
            continued: false,
            next: None,
            pending: None,
            grpc_web: false,
            done: false,
        }
    }

    /// A gRPC-Web call was served on this connection.
    pub fn is_grpc_web(&self) -> bool {
        self.grpc_web
    }

    /// Writes an answer that waited ([`Waiting`]).
    fn write_reply(reply: &Reply, version: Version, keep_alive: bool, sink: &mut Sink<'_>) {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        http1::write_response(
            sink.reply(),
            version,
            &Response {
                status: reply.status,
                reason: reply.reason,
                headers: &headers,
                body: &reply.body,
                keep_alive,
            },
        );
    }

    /// A refused request: its status and one line saying why, then the connection closes.
    fn refuse(&mut self, error: &http1::Error, sink: &mut Sink<'_>, cx: &mut Context<'_>) {
        let (status, reason) = error.status();
        cx.log.warn(format_args!(
            "HTTP connection from {}: {status} {reason}: {error}; closed",
            sink.peer
        ));
        let body = format!("{error}\n");
        http1::write_response(
            sink.reply(),
            Version::Http11,
            &Response {
                status,
                reason,
                headers: &[("Content-Type", "text/plain; charset=utf-8")],
                body: body.as_bytes(),
                keep_alive: false,
            },
        );
    }
}

impl Handler for Http {
    fn consume(&mut self, buf: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Progress {
        let limits = http1::Limits {
            max_body: cx.max_frame as usize,
        };
        let mut used = 0;
        loop {
            if self.done {
                return Progress::Close;
            }
            if self.pending.is_some() {
                // No further request is read while a call waits: the rest is kept, and the
                // connection hands it back once the answer is out.
                return Progress::Need { used, needed: None };
            }
            let rest = &buf[used..];
            match http1::read_request(rest, &limits) {
                Ok(Parsed::Incomplete {
                    head_complete,
                    expects_continue,
                    needed,
                }) => {
                    if head_complete || rest.is_empty() {
                        self.head_since = None;
                    } else {
                        self.head_since.get_or_insert_with(Instant::now);
                    }
                    if expects_continue && !self.continued {
                        self.continued = true;
                        sink.reply().extend_from_slice(http1::CONTINUE);
                    }
                    // `needed` counts from the request's start, where the unconsumed tail starts.
                    return Progress::Need { used, needed };
                }
                Ok(Parsed::Complete { request, consumed }) => {
                    used += consumed;
                    self.head_since = None;
                    self.continued = false;
                    let Answer {
                        status,
                        reason,
                        headers,
                        body,
                        next,
                        head,
                        waiting,
                    } = self.web.answer(&request, sink, cx);
                    if sink.entry.socket() == Some(crate::apps::connections::Socket::GrpcWeb) {
                        self.grpc_web = true;
                    }
                    if let Some(pending) = waiting {
                        self.pending = Some((pending, request.version, request.keep_alive));
                        continue;
                    }
                    // A `101` (WebSocket) or an answer that goes on as a stream (Server-Sent
                    // Events): its head is written as is and the next session takes over.
                    let upgrade = next.is_some();
                    let keep_alive = request.keep_alive || upgrade;
                    if let (true, Some(head)) = (upgrade, head) {
                        sink.reply().extend_from_slice(&head);
                        self.next = next.map(Box::new);
                        return Progress::Switch { used };
                    }
                    let headers: Vec<(&str, &str)> =
                        headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                    http1::write_response(
                        sink.reply(),
                        request.version,
                        &Response {
                            status,
                            reason,
                            headers: &headers,
                            body: &body,
                            keep_alive,
                        },
                    );
                    if upgrade {
                        self.next = next.map(Box::new);
                        return Progress::Switch { used };
                    }
                    if !keep_alive {
                        return Progress::Close;
                    }
                    if sink.reply().len() > MAX_UNREAD_ANSWERS {
                        // A client pipelining requests whose answers it does not read: one read
                        // of small requests could otherwise queue far more than it sent.
                        cx.log.warn(format_args!(
                            "HTTP connection from {}: over {MAX_UNREAD_ANSWERS} bytes of \
                             answers to pipelined requests not read; closing",
                            sink.peer
                        ));
                        return Progress::Close;
                    }
                }
                Err(error) => {
                    self.refuse(&error, sink, cx);
                    return Progress::Close;
                }
            }
        }
    }

    /// The peer closed its side: an unfinished request is dropped (nothing of it was stored).
    fn finish(&mut self, rest: &[u8], _sink: &mut Sink<'_>, _cx: &mut Context<'_>) -> usize {
        rest.len()
    }

    /// Said only to a client in the middle of a request: an idle keep-alive connection is
    /// closed without a word, as HTTP clients expect of a server.
    fn farewell(&mut self, why: &Farewell, sink: &mut Sink<'_>) {
        if let Some((pending, version, _)) = self.pending.take() {
            // The connection closes after the answer.
            let reply = pending.close(why);
            Http::write_reply(&reply, version, false, sink);
            return;
        }
        let Some(since) = self.head_since else {
            return;
        };
        let (status, reason, line) = match why {
            Farewell::IdleTimeout(_) => (
                408,
                "Request Timeout",
                format!(
                    "request head not complete {}s after its first byte; closing",
                    since.elapsed().as_secs()
                ),
            ),
            Farewell::Shed { .. } => (503, "Service Unavailable", why.message()),
            Farewell::ShuttingDown => (503, "Service Unavailable", why.message()),
        };
        http1::write_response(
            sink.reply(),
            Version::Http11,
            &Response {
                status,
                reason,
                headers: &[("Content-Type", "text/plain; charset=utf-8")],
                body: format!("{line}\n").as_bytes(),
                keep_alive: false,
            },
        );
    }

    fn input_slack(&self) -> usize {
        http1::MAX_HEAD + http1::MAX_CHUNK_FRAMING
    }

    fn deadline(&self) -> Option<Instant> {
        let head = self.head_since.map(|since| since + self.web.header_timeout);
        let call = self.pending.as_ref().and_then(|(p, _, _)| p.deadline());
        match (head, call) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn wants_acks(&self) -> bool {
        self.pending.is_some()
    }

    /// The waiting request's answer, once all its records are written.
    fn ack(&mut self, _written: u64, last_seq: u64, sink: &mut Sink<'_>) {
        let Some((pending, version, keep_alive)) = &self.pending else {
            return;
        };
        if let Some(reply) = pending.ack(last_seq, sink) {
            Http::write_reply(&reply, *version, *keep_alive, sink);
            self.done = !*keep_alive;
            self.pending = None;
        }
    }

    fn holds_input(&self) -> bool {
        self.pending.is_some()
    }

    fn take_next(&mut self) -> Option<Session> {
        self.next.take().map(|next| *next)
    }
}
