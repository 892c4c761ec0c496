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
//! [`admin`]), gRPC-Web calls and their CORS preflight (`server::session::grpc_web::PATHS`,
//! `--cors-origin`), the WebSocket upgrade (`GET /v1/ws`, `websocket_upgrade`), the control
//! panel's JSON API (`/api/*`, [`console`], guarded by its sessions or the admin token) and
//! its pages and files (`/`, `/login`, `/assets/...`, [`console::assets`]). Each
//! answer is complete when returned (status, headers, body); or a `101` with the connection's
//! next session (an upgrade, its head written as is); or, for a gRPC-Web call whose records are
//! on their way to disk, a [`Pending`] the HTTP session holds until the ack answers it (and
//! reads no further request meanwhile: `server::session::http`).
//!
//! Limits (each answered with its status and a one-line body, and logged): head 16 KiB and 100
//! headers (`431`), body over `--max-frame` (`413`), unknown path (`404`), wrong method (`405`
//! with `Allow`), malformed (`400`, then close), and a head not complete within
//! `--header-timeout` (10 s, [`HEADER_TIMEOUT`]) of its first byte: `408` and close.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::admin::Guard;
use super::answer::{Answer, Waiting};
use super::console::{self, Console, assets};
use super::routes::{Miss, Route};
use super::{metrics, routes};
use crate::apps::connections::{MAX_STATUS_BYTES, status_json};
use crate::protocol::grpc_web::Cors;
use crate::protocol::http1::Request;
use crate::protocol::websocket;
use crate::server::session::grpc_web::{self, Call, Started};
use crate::server::session::otlp;
use crate::server::session::{Context, Session, Sink};
use crate::storage::bucket::valid_app_name;
use crate::storage::server_log::count;

/// How long a client has to send a whole request head, from its first byte: the slowloris
/// bound (`--header-timeout`, kept with the other defaults in `config`).
pub use crate::config::defaults::HEADER_TIMEOUT;

/// What every HTTP session of the server shares: its settings and the admin guard.
pub struct Web {
    /// `--header-timeout`.
    pub header_timeout: Duration,
    guard: Guard,
    /// `--cors-origin`: the pages that may call gRPC-Web.
    cors: Cors,
    /// The control panel's login and API (`None`: not set up, `/api/*` answers `503`).
    console: Option<Console>,
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
            cors: Cors::default(),
            console: None,
        }
    }

    /// Serves the control panel's API with `console`.
    pub fn with_console(mut self, console: Console) -> Web {
        self.console = Some(console);
        self
    }

    /// The control panel's state, for routes that check its sessions
    /// (`console.auth.check(request, self.admin_guard(), ..)`).
    pub fn console(&self) -> Option<&Console> {
        self.console.as_ref()
    }

    /// The admin token guard (`/v1/status`, and the console for `Authorization: Bearer`).
    pub fn admin_guard(&self) -> &Guard {
        &self.guard
    }

    /// The pages that may call gRPC-Web (`--cors-origin`).
    pub fn with_cors(mut self, cors: Cors) -> Web {
        self.cors = cors;
        self
    }

    /// A console page or file (`console::assets`), with its caching and security headers; `404`
    /// for a name not embedded. A page that needs a session ([`Route::needs_session`]) without
    /// one (the guard of the API: a live session cookie, or the admin token) is a `303` to
    /// `/login`, which comes back here after the login (`?next=`).
    fn console_file(&self, route: Route, request: &Request<'_>) -> Answer {
        if route.needs_session() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let signed_in = self.console.as_ref().is_some_and(|console| {
                console
                    .auth
                    .check(request, &self.guard, Instant::now(), now)
                    .is_ok()
            });
            if !signed_in {
                let mut answer = Answer::text(303, "See Other", "log in first: /login");
                answer.headers.push(("Location", "/login".into()));
                answer.headers.push(("Cache-Control", "no-store".into()));
                return answer;
            }
        }
        match assets::get(request.path) {
            Some(asset) => Answer {
                status: 200,
                reason: "OK",
                headers: asset.headers(),
                body: asset.body.to_vec(),
                next: None,
                head: None,
                waiting: None,
            },
            None => Answer::text(
                404,
                "Not Found",
                format_args!("no such console file: {}", request.path),
            ),
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
                head: None,
                waiting: None,
            },
            Route::Status => {
                let rows = cx.shared.connections().rows();
                // Room for the status line and headers within the connection's output limit.
                let json = status_json(&rows, MAX_STATUS_BYTES - 1024 - 4096);
                let json = crate::server::session::status::with_forward(json, cx.shared);
                Answer {
                    status: 200,
                    reason: "OK",
                    headers: vec![("Content-Type", "application/json".into())],
                    body: json.into_bytes(),
                    next: None,
                    head: None,
                    waiting: None,
                }
            }
            Route::GrpcWebPreflight => self.cors.preflight(request.header("origin")).into(),
            Route::GrpcWeb => {
                let call = Call {
                    path: request.path,
                    headers: &request.headers,
                    body: &request.body,
                };
                match grpc_web::start(&call, &self.cors, sink, cx) {
                    Started::Now(reply) => reply.into(),
                    Started::Waiting(pending) => Answer::waiting(Waiting::GrpcWeb(pending)),
                }
            }
            Route::OtlpLogs => match otlp::start(request, &self.cors, sink, cx) {
                otlp::Started::Now(reply) => reply.into(),
                otlp::Started::Waiting(pending) => Answer::waiting(Waiting::Otlp(pending)),
            },
            Route::OtlpPreflight => self.cors.preflight(request.header("origin")).into(),
            Route::WebSocket => websocket_upgrade(request, sink, cx),
            Route::ConsolePage | Route::ConsoleFile => self.console_file(route, request),
            Route::Api(api) => match &self.console {
                Some(console) => console::api::answer(api, request, console, &self.guard, sink, cx),
                None => console::api::json(
                    503,
                    "Service Unavailable",
                    &serde_json::json!({ "error": "the console is not set up on this server" }),
                ),
            },
            #[cfg(test)]
            Route::TestUpgrade => Answer {
                status: 101,
                reason: "Switching Protocols",
                headers: vec![("Upgrade", "text".into()), ("Connection", "Upgrade".into())],
                body: Vec::new(),
                next: Session::start(crate::protocol::detect::Protocol::Text, sink, cx),
                head: None,
                waiting: None,
            },
        }
    }
}

/// `GET /v1/ws`: the upgrade checked (`protocol::websocket::check_upgrade`), the token (from
/// `Authorization: Bearer`, or `?token=` since a browser cannot set headers) judged by the same
/// gate as every protocol, the app and instance (`?app=`/`?instance=` or the `logmill-app` /
/// `logmill-instance` headers; the instance defaults to the peer's IP), `?acks=1`; then `101`
/// and the WebSocket session. Every refusal is its status and one line, and a line in
/// `_server.log`.
fn websocket_upgrade(request: &Request<'_>, sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Answer {
    let peer = sink.peer();
    let refuse = |status: u16, reason: &'static str, line: String, cx: &mut Context<'_>| {
        cx.log.warn(format_args!(
            "WebSocket upgrade from {peer}: {status} {reason}: {line}"
        ));
        Answer::text(status, reason, line)
    };
    let key = match websocket::check_upgrade(request.headers.iter().copied()) {
        Ok(key) => key,
        Err(e) => {
            let status = e.status();
            let reason = if status == 426 {
                "Upgrade Required"
            } else {
                "Bad Request"
            };
            let mut answer = refuse(status, reason, e.to_string(), cx);
            if status == 426 {
                answer.headers.push(("Sec-WebSocket-Version", "13".into()));
            }
            return answer;
        }
    };
    let query = Query::parse(request.query.unwrap_or(""));
    let text = |param: &str, header: &str| {
        query.get(param).map(str::to_owned).unwrap_or_else(|| {
            request
                .header(header)
                .map(|v| String::from_utf8_lossy(v).trim().to_owned())
                .unwrap_or_default()
        })
    };
    let app = text("app", "logmill-app");
    if !app.is_empty() && !valid_app_name(&app) {
        return refuse(
            400,
            "Bad Request",
            format!("app {app:?} is not [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}"),
            cx,
        );
    }
    let instance = text("instance", "logmill-instance");
    let want_acks = match query.get("acks") {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") => true,
        Some(other) => {
            return refuse(
                400,
                "Bad Request",
                format!("acks={other:?}: expected acks=1 (or 0)"),
                cx,
            );
        }
    };
    // The header wins; a browser's token comes in the query.
    let from_query = query.get("token").map(|t| format!("Bearer {t}"));
    let authorization = request
        .header("authorization")
        .or(from_query.as_deref().map(str::as_bytes));
    let origin = match crate::server::grpc::admit(authorization, app, instance, cx.shared, peer) {
        Ok(origin) => origin,
        Err(refused) => {
            let refusals = cx.shared.stats().count_refused_auth(refused.app.as_deref());
            cx.log.warn(format_args!(
                "WebSocket upgrade from {peer}: {}{}; answered 401 ({})",
                refused.message,
                refused.detail,
                count(refusals, "refusal")
            ));
            return Answer::text(401, "Unauthorized", refused.message);
        }
    };
    let mut head = Vec::new();
    websocket::switching_protocols(key, &mut head);
    let mut answer = Answer::text(101, "Switching Protocols", "");
    answer.head = Some(head);
    answer.next = Some(Session::websocket(origin, want_acks, sink));
    answer
}

/// A request's query (`a=1&b=2`), its values percent-decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Query {
        Query(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(name), percent_decode(value))
                })
                .collect(),
        )
    }

    /// The first value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `%XX` decoded and `+` as a space (form encoding); a bad escape is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Query::parse("token=a%2Eb.c&acks=1&app=web+x&bad=%zz&empty");
        assert_eq!(q.get("token"), Some("a.b.c"));
        assert_eq!(q.get("acks"), Some("1"));
        assert_eq!(q.get("app"), Some("web x"));
        assert_eq!(q.get("bad"), Some("%zz"));
        assert_eq!(q.get("empty"), Some(""));
        assert_eq!(q.get("nope"), None);
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
