//! HTTP/1.1 on the gRPC port (4021): what the port answers browsers, probes and Prometheus.
//!
//! # One connection model
//!
//! Port 4021 speaks HTTP/2 (h2c gRPC) and HTTP/1.1, told apart by the first bytes. Both arrive
//! through the gRPC listener, whose connections live in the loop's `GrpcPort` until detection
//! decides (`server::grpc`, `GrpcConnection::detect`: the 24-byte HTTP/2 preface, or the first
//! byte that differs from it):
//!
//! ```text
//! gRPC listener ─accept─> GrpcPort (Detecting) ─preface─> h2 handshake, gRPC (unchanged)
//!                                        └─anything else─> Drive::Http1: deregistered, socket
//!                                           and first bytes handed to the loop
//! loop: Connection::adopt(stream, .., Session::http(web), first) on the ordinary slab
//! ```
//!
//! From then on an HTTP/1.1 client is an ordinary connection: a transport plus a session
//! (`server::session::http`), with the input budget, the idle timeout, the output limit and the
//! lingering close every TCP protocol has, and nothing HTTP-specific in the loop but the
//! hand-over and the header timeout check. Why detect in the gRPC port and hand over, rather
//! than accept into the ordinary slab and hand HTTP/2 to the port: once `h2` owns a socket it
//! owns it for good, and the port's detection already has the handshake timer for clients that
//! send nothing; handing a plain socket (and 1 to 23 bytes) the other way costs one
//! deregister and register, once per HTTP connection. The connection count is kept across the
//! hand-over (counted once at accept, released once at close).
//!
//! # Requests
//!
//! `protocol::http1` reads them (pure), [`routes`] names what answers them, [`Web::answer`]
//! answers: `/healthz`, `/metrics` ([`metrics`]) and the admin API (`/v1/status`, guarded by
//! [`admin`]). Each answer is complete when returned (status, headers, body), or a `101` with
//! the connection's next session (an upgrade). Later handlers plug in the same way: gRPC-Web
//! takes the request's body and returns a response; a WebSocket upgrade returns its session.
//!
//! Limits (each answered with its status and a one-line body, and logged): head 16 KiB and 100
//! headers (`431`), body over `--max-frame` (`413`), unknown path (`404`), wrong method (`405`
//! with `Allow`), malformed (`400`, then close), and a head not complete within
//! `--header-timeout` (10 s, [`HEADER_TIMEOUT`]) of its first byte: `408` and close.

pub mod admin;
pub mod metrics;
pub mod routes;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::apps::connections::{MAX_STATUS_BYTES, status_json};
use crate::protocol::http1::Request;
use crate::server::session::{Context, Session, Sink};
use admin::Guard;
use routes::{Miss, Route};

/// How long a client has to send a whole request head, from its first byte: the slowloris
/// bound (`--header-timeout`, kept with the other defaults in `config`).
pub use crate::config::defaults::HEADER_TIMEOUT;

/// What every HTTP session of the server shares: its settings and the admin guard.
pub struct Web {
    /// `--header-timeout`.
    pub header_timeout: Duration,
    guard: Guard,
}

/// One answer: status, extra headers and body, and for a `101` the connection's next session.
pub struct Answer {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub next: Option<Session>,
}

impl Answer {
    /// A plain-text answer: `line` and a newline.
    fn text(status: u16, reason: &'static str, line: impl std::fmt::Display) -> Answer {
        Answer {
            status,
            reason,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: format!("{line}\n").into_bytes(),
            next: None,
        }
    }
}

impl Web {
    /// Settings for the port: `header_timeout` (`--header-timeout`), `admin_open`
    /// (`--admin-open`), and the secret admin tokens are checked with (`None`: the port is
    /// off, `--tcp-only`, and no secret is loaded or created).
    pub fn new(header_timeout: Duration, admin_open: bool, secret_path: Option<&Path>) -> Web {
        let guard = match (admin_open, secret_path) {
            (true, _) => Guard::Open,
            (false, Some(path)) => Guard::load(false, path),
            (false, None) => Guard::Unavailable("the HTTP port is off (--tcp-only)".into()),
        };
        Web {
            header_timeout,
            guard,
        }
    }

    /// Why admin requests cannot be served, if they cannot (for a start-up log line).
    pub fn admin_unavailable(&self) -> Option<&str> {
        match &self.guard {
            Guard::Unavailable(why) => Some(why),
            _ => None,
        }
    }

    /// The answer to one complete request.
    pub fn answer(
        &self,
        request: &Request<'_>,
        sink: &mut Sink<'_>,
        cx: &mut Context<'_>,
    ) -> Answer {
        let route = match routes::find(request.method, request.path) {
            Ok(route) => route,
            Err(Miss::NotFound) => {
                return Answer::text(
                    404,
                    "Not Found",
                    format_args!(
                        "no such path: {} (this port serves gRPC and {})",
                        request.path,
                        routes::paths()
                    ),
                );
            }
            Err(Miss::Method { allow }) => {
                let mut answer = Answer::text(
                    405,
                    "Method Not Allowed",
                    format_args!(
                        "method {} not allowed on {}; allowed: {allow}",
                        request.method, request.path
                    ),
                );
                answer.headers.push(("Allow", allow));
                return answer;
            }
        };
        if route.admin() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if let Err(denied) = self.guard.check(request.header("authorization"), now) {
                cx.log.warn(format_args!(
                    "HTTP connection from {}: {} {} refused (401): {denied}",
                    sink.peer(),
                    request.method,
                    request.path
                ));
                let mut answer = Answer::text(401, "Unauthorized", denied);
                answer
                    .headers
                    .push(("WWW-Authenticate", "Bearer realm=\"logmill admin\"".into()));
                return answer;
            }
        }
        match route {
            Route::Healthz => {
                if cx.shared.stats().degraded() {
                    Answer::text(503, "Service Unavailable", "DEGRADED")
                } else {
                    Answer::text(200, "OK", "OK")
                }
            }
            Route::Metrics => Answer {
                status: 200,
                reason: "OK",
                headers: vec![("Content-Type", metrics::CONTENT_TYPE.into())],
                body: metrics::render(cx.shared).into_bytes(),
                next: None,
            },
            Route::Status => {
                let rows = cx.shared.connections().rows();
                // Room for the status line and headers within the connection's output limit.
                let json = status_json(&rows, MAX_STATUS_BYTES - 1024);
                Answer {
                    status: 200,
                    reason: "OK",
                    headers: vec![("Content-Type", "application/json".into())],
                    body: json.into_bytes(),
                    next: None,
                }
            }
            #[cfg(test)]
            Route::TestUpgrade => Answer {
                status: 101,
                reason: "Switching Protocols",
                headers: vec![("Upgrade", "text".into()), ("Connection", "Upgrade".into())],
                body: Vec::new(),
                next: Session::start(crate::protocol::detect::Protocol::Text, sink, cx),
            },
        }
    }
}
