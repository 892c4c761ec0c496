//! What a request gets: an [`Answer`] (status, headers, body; or a head written as is and the
//! session the connection goes on with, for a `101` or an event stream), or, for a request whose
//! records are on their way to disk, the [`Waiting`] the HTTP session holds until the ack.
//! Below both `web` (which makes answers) and the session (which writes them).

use std::time::Instant;

use crate::protocol::grpc_web::Reply;
use crate::server::session::{Farewell, Session, Sink, grpc_web, otlp};

/// One answer: status, extra headers and body, and for a `101` the connection's next session.
pub struct Answer {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub next: Option<Session>,
    /// The whole answer as bytes, written instead of the fields above (a WebSocket `101`,
    /// `protocol::websocket::switching_protocols`, which has no `Content-Length`).
    pub head: Option<Vec<u8>>,
    /// A gRPC-Web call or OTLP request whose records are on their way to disk: no answer yet;
    /// the session holds it until the ack (`server::session::grpc_web`, "The answer waits for
    /// the writer").
    pub waiting: Option<Waiting>,
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Answer {
        Answer {
            status: reply.status,
            reason: reply.reason,
            headers: reply.headers,
            body: reply.body,
            next: None,
            head: None,
            waiting: None,
        }
    }
}

impl Answer {
    /// No answer yet: it comes when the records are written.
    pub(super) fn waiting(waiting: Waiting) -> Answer {
        let mut answer = Answer::from(Reply {
            status: 200,
            reason: "OK",
            headers: Vec::new(),
            body: Vec::new(),
        });
        answer.waiting = Some(waiting);
        answer
    }

    /// A plain-text answer: `line` and a newline.
    pub(super) fn text(status: u16, reason: &'static str, line: impl std::fmt::Display) -> Answer {
        Answer {
            status,
            reason,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: format!("{line}\n").into_bytes(),
            next: None,
            head: None,
            waiting: None,
        }
    }
}

/// A request whose records are on their way to disk: its answer comes with the ack.
#[derive(Debug)]
pub enum Waiting {
    /// A gRPC-Web call (`server::session::grpc_web`).
    GrpcWeb(grpc_web::Pending),
    /// `POST /v1/logs` (`server::session::otlp`).
    Otlp(otlp::Pending),
}

impl Waiting {
    /// The answer, once every record is written; `None` while some are in flight.
    pub(super) fn ack(&self, last_seq: u64, sink: &Sink<'_>) -> Option<Reply> {
        match self {
            Waiting::GrpcWeb(pending) => pending.ack(last_seq, sink),
            Waiting::Otlp(pending) => pending.ack(sink),
        }
    }

    /// When the client stops waiting, if it said (gRPC-Web's `grpc-timeout`).
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self {
            Waiting::GrpcWeb(pending) => pending.deadline(),
            Waiting::Otlp(_) => None,
        }
    }

    /// The answer when the connection ends first: the call's own deadline passed
    /// (`DEADLINE_EXCEEDED`), or the server ends it (`UNAVAILABLE`, or OTLP's `503`).
    pub(super) fn close(self, why: &Farewell) -> Reply {
        match self {
            Waiting::GrpcWeb(pending) => {
                let expired = matches!(why, Farewell::IdleTimeout(_))
                    && pending.deadline().is_some_and(|at| Instant::now() >= at);
                if expired {
                    pending.expire()
                } else {
                    pending.farewell(why)
                }
            }
            Waiting::Otlp(pending) => pending.farewell(why),
        }
    }
}
