//! Protocol sessions: what a TCP connection does with its bytes once detection has picked what
//! it speaks.
//!
//! A session turns bytes into records (pushed to the loop's batch through [`Context`]) and
//! replies (into the connection's output through [`Sink`]). It never touches the socket, the
//! connection's buffers or its close: those are [`Connection`](super::connection::Connection)'s.
//! It keeps its protocol's own state (native's hello and acks, syslog's continuation, a cut
//! line) and knows what its protocol says when the server ends the connection ([`Farewell`]).
//!
//! Adding a protocol: a rule in `protocol/detect.rs`, a file here implementing [`Handler`], and
//! in this file one [`Session`] arm, one line in `each!`, one in [`Session::kind`] and one in
//! [`Session::start`]. A protocol that is not detected on the TCP port (HTTP/1.1, handed over
//! by the gRPC port's detection) has its own constructor instead ([`Session::http`]).
//!
//! # Switching sessions (an upgrade)
//!
//! A connection may change protocol in the middle of its stream: after an HTTP `101 Switching
//! Protocols` (a WebSocket upgrade) the bytes that follow are the new protocol's. A session
//! says so by returning [`Progress::Switch`] with the bytes it used, and hands over the next
//! session from [`Handler::take_next`]; [`Session::consume`] replaces itself with it and gives
//! it the rest of the same buffer, so nothing read in the same packet is lost. The connection
//! never sees the switch: its buffers, budget, limits and closing carry on unchanged.
//!
//! # Deadlines
//!
//! A session may ask for the connection to be closed at a time of its own
//! ([`Handler::deadline`]: HTTP's header timeout, the slowloris bound). The loop checks it on
//! its tick with the idle timeouts and closes the connection with
//! [`Farewell::IdleTimeout`] (the session words it).
//!
//! Dispatch is a `match` per call of `consume` (once per read), never per record, and never
//! through a `dyn`.

/// gRPC-Web calls, which the HTTP session runs (not a session of their own: a call is one
/// request body in, one answer out once its records are written).
mod admit;
pub mod events;
pub mod grpc_web;
mod health;
pub mod http;
mod lines;
mod native;
pub mod otlp;
mod pickle;
mod status;
mod syslog;
#[cfg(test)]
mod testing;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::apps::connections::{Entry, Socket};
use crate::protocol::detect::Protocol;
use crate::record::Record;
use crate::server::shared::Shared;
use crate::storage::line::Origin;
use crate::storage::server_log::ServerLog;
use crate::storage::{BatchBuilder, ConnKey};

/// Everything a session needs from the loop besides its connection.
pub struct Context<'a> {
    pub batch: &'a mut BatchBuilder,
    pub now_ns: u64,
    pub max_frame: u32,
    /// The longest line (syslog, JSON lines, text) stored as one record; longer ones are cut.
    pub max_line: usize,
    pub shared: &'a Shared,
    pub log: &'a ServerLog,
}

/// What one protocol does with a connection's bytes. The defaults fit a protocol that never
/// replies and keeps nothing at the end of the stream.
pub trait Handler {
    /// Takes what it can from `buf`: complete frames (or lines) become records and replies.
    fn consume(&mut self, buf: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Progress;

    /// The peer closed its side with `rest` unconsumed: store what the protocol allows (a last
    /// line without its newline) and return how many bytes had to be discarded.
    fn finish(&mut self, rest: &[u8], _sink: &mut Sink<'_>, _cx: &mut Context<'_>) -> usize {
        rest.len()
    }

    /// The server ends the connection for `why`: say so if the protocol has a way to.
    fn farewell(&mut self, _why: &Farewell, _sink: &mut Sink<'_>) {}

    /// The client asked to be told when its records are written.
    fn wants_acks(&self) -> bool {
        false
    }

    /// Queues one ack: `written` records so far, the last with sequence `last_seq`. Called only
    /// when [`wants_acks`](Self::wants_acks).
    fn ack(&mut self, _written: u64, _last_seq: u64, _sink: &mut Sink<'_>) {}

    /// When the connection must be closed if it is still waiting for this session's input
    /// (HTTP's header timeout); `None`: only `--idle-timeout` applies.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// The session the connection continues with, after this one returned
    /// [`Progress::Switch`] (module doc, "Switching sessions").
    fn take_next(&mut self) -> Option<Session> {
        None
    }

    /// Bytes an unfinished unit of this protocol may hold beyond one frame or line (the
    /// connection's input cap): HTTP's head and chunked framing around a `--max-frame` body.
    fn input_slack(&self) -> usize {
        0
    }

    /// The session takes no input for now (an HTTP session whose gRPC-Web call waits for its
    /// records to be written): the connection stops reading the socket and keeps what it
    /// holds, and hands it back to [`consume`](Self::consume) once an ack has been queued.
    fn holds_input(&self) -> bool {
        false
    }

    /// Bytes of unfinished input the session holds itself, beyond the connection's buffer (a
    /// WebSocket message's fragments so far): counted against `--max-input` with it.
    fn held(&self) -> usize {
        0
    }

    /// The session sends on its own, turned by the loop every `events::STREAM_EVERY`
    /// ([`stream`](Self::stream)): Server-Sent Events.
    fn streams(&self) -> bool {
        false
    }

    /// One turn of a streaming session at `now`, with `backlog` bytes of the connection's
    /// output not yet sent: it queues what it has. Called only while
    /// [`streams`](Self::streams).
    fn stream(&mut self, _now: Instant, _backlog: usize, _sink: &mut Sink<'_>) -> events::Turn {
        events::Turn::Go
    }
}

/// How far a [`Handler::consume`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// `used` bytes were taken; the rest is an unfinished frame (or line), which will need
    /// `needed` bytes in all when its header said so (the connection's read size hint).
    Need { used: usize, needed: Option<usize> },
    /// The stream cannot go on (an oversized frame): take no more input, close once the replies
    /// are sent.
    Close,
    /// `used` bytes were this protocol's; the rest belong to the session
    /// [`Handler::take_next`] returns. Handled inside [`Session::consume`], which never returns
    /// it.
    Switch { used: usize },
}

/// Why the server ends a connection on its own.
#[derive(Debug, Clone, Copy)]
pub enum Farewell {
    /// The input budget (`--max-input`) is full and this connection held `held` bytes of it.
    Shed { held: usize },
    /// Nothing arrived for this long (`--idle-timeout`).
    IdleTimeout(Duration),
    /// The server is stopping.
    ShuttingDown,
}

impl Farewell {
    /// The sentence a protocol with a reply channel sends.
    pub fn message(&self) -> String {
        match self {
            Farewell::Shed { held } => format!(
                "the server's memory for unfinished input (--max-input) is full and this \
                 connection held the most ({held} bytes of an unfinished frame or line); closing"
            ),
            Farewell::IdleTimeout(idle) => {
                format!("nothing received for {}s; closing", idle.as_secs())
            }
            Farewell::ShuttingDown => "server is shutting down".into(),
        }
    }
}

/// What a session may touch of its connection: the records' key and origin, the count of
/// records in flight, the connection's entry in the registry (`apps::connections`), and the
/// output. Built by the connection for each call.
pub struct Sink<'a> {
    key: ConnKey,
    peer: SocketAddr,
    /// The app a verified client certificate names (mutual TLS; `server::tls`).
    certified: Option<&'a str>,
    origin: &'a mut Origin,
    in_flight: &'a mut u64,
    entry: &'a mut Entry,
    output: &'a mut Vec<u8>,
}

impl<'a> Sink<'a> {
    pub fn new(
        key: ConnKey,
        peer: SocketAddr,
        certified: Option<&'a str>,
        origin: &'a mut Origin,
        in_flight: &'a mut u64,
        entry: &'a mut Entry,
        output: &'a mut Vec<u8>,
    ) -> Self {
        Sink {
            key,
            peer,
            certified,
            origin,
            in_flight,
            entry,
            output,
        }
    }

    /// The app the client's verified certificate names (mutual TLS), if any: a credential as
    /// a token is (`Gate::admit_certified`).
    pub fn certified(&self) -> Option<&'a str> {
        self.certified
    }

    /// The client's address (for log lines).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The connection's records carry `origin` from now on (its app and instance, decided at
    /// the hello): the one place a session changes it, so `status` lists the connection under
    /// the same app and instance as its records.
    fn set_origin(&mut self, origin: Origin) {
        self.entry.set_origin(&origin);
        *self.origin = origin;
    }

    /// Hands one record to the batch (the line and pickle protocols; native pushes a frame's
    /// records itself and then calls [`received`](Self::received)).
    fn push(&mut self, record: &Record<'_>, cx: &mut Context<'_>) {
        cx.batch.push(self.key, record, self.origin, cx.now_ns);
        self.received(1, cx);
    }

    /// `n` more records of this connection are in the batch.
    fn received(&mut self, n: u64, cx: &mut Context<'_>) {
        *self.in_flight += n;
        self.entry.received(n, cx.now_ns);
        cx.shared.stats().received(n);
    }

    /// Where replies go; the connection sends them.
    fn reply(&mut self) -> &mut Vec<u8> {
        self.output
    }
}

/// A connection's protocol, once detected.
pub enum Session {
    Native(native::Native),
    Pickle(pickle::Pickle),
    Syslog(syslog::Syslog),
    Lines(lines::Lines),
    Http(http::Http),
    WebSocket(websocket::WebSocket),
    /// Server-Sent Events, switched to from HTTP (the console's live tail).
    Events(events::Events),
}

/// Runs `$body` with `$s` bound to whichever session `$session` holds: the one list of arms.
macro_rules! each {
    ($session:expr, $s:ident => $body:expr) => {
        match $session {
            Session::Native($s) => $body,
            Session::Pickle($s) => $body,
            Session::Syslog($s) => $body,
            Session::Lines($s) => $body,
            Session::Http($s) => $body,
            Session::WebSocket($s) => $body,
            Session::Events($s) => $body,
        }
    };
}

const UNKNOWN_PROTOCOL: &[u8] = b"logmill: unrecognised protocol. This port takes native frames \
(schema/logmill.capnp), Python SocketHandler pickles, syslog, JSON lines, plain text lines, or the \
line `health` or `status`.\n";

/// The name of a protocol whose records come with no token at all: anonymous under `--auth
/// optional`, refused under `required`. `None` for the others: native carries a token in its
/// hello, `health`, `status` and unknown bytes store nothing.
fn carries_no_token(protocol: Protocol) -> Option<&'static str> {
    match protocol {
        Protocol::Pickle => Some("Python SocketHandler (pickle)"),
        Protocol::Syslog => Some("syslog"),
        Protocol::JsonLines => Some("JSON lines"),
        Protocol::Text => Some("plain text"),
        Protocol::Native | Protocol::Health | Protocol::Status | Protocol::Unknown => None,
    }
}

impl Session {
    /// The one place a detected protocol becomes a session. `None`: the protocol is said in one
    /// answer (`health`, `status`, or the error for bytes nothing speaks) and the connection
    /// closes; such a connection is never listed in `status`.
    pub fn start(protocol: Protocol, sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Option<Self> {
        sink.entry.set_socket(Socket::of(protocol));
        // A client certificate naming an app is the credential such a protocol cannot carry.
        if let Some(name) = carries_no_token(protocol)
            && sink.certified.is_none()
            && !cx.shared.gate().admits_anonymous()
        {
            // `--auth required`, and this protocol has no place for a token: refused by name,
            // before a byte of it is decoded.
            let refused = cx.shared.stats().count_refused_auth(None);
            cx.log.warn(format_args!(
                "connection from {}: {name} cannot carry an application token and this server \
                 requires one (--auth required); closed ({})",
                sink.peer,
                crate::storage::server_log::count(refused, "refusal")
            ));
            sink.reply()
                .extend_from_slice(crate::apps::gate::ANONYMOUS_REFUSED.as_bytes());
            return None;
        }
        match protocol {
            Protocol::Native => Some(Session::Native(native::Native::default())),
            Protocol::Pickle => Some(Session::Pickle(pickle::Pickle)),
            Protocol::Syslog => Some(Session::Syslog(syslog::Syslog::default())),
            Protocol::JsonLines => Some(Session::Lines(lines::Lines::json())),
            Protocol::Text => Some(Session::Lines(lines::Lines::text())),
            Protocol::Health => {
                health::answer(sink, cx);
                None
            }
            Protocol::Status => {
                status::answer(sink, cx);
                None
            }
            Protocol::Unknown => {
                cx.log.warn(format_args!(
                    "connection from {}: unrecognised protocol; closed",
                    sink.peer
                ));
                sink.reply().extend_from_slice(UNKNOWN_PROTOCOL);
                None
            }
        }
    }

    /// The session of a connection the HTTP side has upgraded to WebSocket (`GET /v1/ws`,
    /// answered `101`): its records go under `origin` (the app its token names, the instance it
    /// gave), and `want_acks` is its `?acks=1`. Not picked by detection: the HTTP session
    /// switches to it (see `websocket`'s module doc for what it takes and says).
    pub fn websocket(origin: Origin, want_acks: bool, sink: &mut Sink<'_>) -> Session {
        sink.entry.set_socket(Some(Socket::WebSocket));
        sink.set_origin(origin);
        Session::WebSocket(websocket::WebSocket::new(want_acks))
    }

    /// An HTTP/1.1 connection handed over by the gRPC port's detection (`server::session::http`).
    pub fn http(web: Arc<crate::server::session::http::web::Web>) -> Self {
        Session::Http(http::Http::new(web))
    }

    /// The protocol's name, as the metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            Session::Native(_) => "native",
            Session::Pickle(_) => "pickle",
            Session::Syslog(_) => "syslog",
            Session::Lines(lines) if lines.is_json() => "jsonl",
            Session::Lines(_) => "text",
            Session::Http(http) if http.is_grpc_web() => "grpc-web",
            Session::Http(_) => "http",
            Session::WebSocket(_) => "websocket",
            Session::Events(_) => "events",
        }
    }

    /// Hands `buf` to the session, and what follows a switch (module doc, "Switching
    /// sessions") to the next one.
    pub fn consume(&mut self, buf: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Progress {
        let mut pos = 0;
        loop {
            match each!(self, s => s.consume(&buf[pos..], sink, cx)) {
                Progress::Need { used, needed } => {
                    return Progress::Need {
                        used: pos + used,
                        needed,
                    };
                }
                Progress::Close => return Progress::Close,
                Progress::Switch { used } => {
                    pos += used;
                    match each!(self, s => s.take_next()) {
                        Some(next) => *self = next,
                        // A switch with nowhere to go: the stream cannot be read any more.
                        None => return Progress::Close,
                    }
                }
            }
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        each!(self, s => s.deadline())
    }

    pub fn input_slack(&self) -> usize {
        each!(self, s => s.input_slack())
    }

    pub fn finish(&mut self, rest: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> usize {
        each!(self, s => s.finish(rest, sink, cx))
    }

    pub fn farewell(&mut self, why: &Farewell, sink: &mut Sink<'_>) {
        each!(self, s => s.farewell(why, sink))
    }

    pub fn wants_acks(&self) -> bool {
        each!(self, s => s.wants_acks())
    }

    pub fn holds_input(&self) -> bool {
        each!(self, s => s.holds_input())
    }

    pub fn held(&self) -> usize {
        each!(self, s => s.held())
    }

    pub fn ack(&mut self, written: u64, last_seq: u64, sink: &mut Sink<'_>) {
        each!(self, s => s.ack(written, last_seq, sink))
    }

    pub fn streams(&self) -> bool {
        each!(self, s => s.streams())
    }

    pub fn stream(&mut self, now: Instant, backlog: usize, sink: &mut Sink<'_>) -> events::Turn {
        each!(self, s => s.stream(now, backlog, sink))
    }
}

#[cfg(test)]
mod tests {
    //! Sessions driven without a socket: what each protocol makes of bytes, and what it says
    //! when the server ends the connection.
    use std::sync::Arc;

    use super::*;
    use crate::protocol::frame::{self, Frame};
    use crate::protocol::native::{self, ErrorKind, ServerFrame};
    use crate::protocol::websocket as ws;

    use super::testing::{Conn, Loop};

    fn start(protocol: Protocol, lp: &mut Loop, conn: &mut Conn) -> Option<Session> {
        Session::start(protocol, &mut conn.sink(), &mut lp.cx())
    }

    /// The entry a session keeps: its protocol, and its records as they are pushed.
    #[test]
    fn sessions_count_their_records_in_their_entry() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = start(Protocol::Text, &mut lp, &mut conn).unwrap();
        session.consume(b"one\ntwo\n", &mut conn.sink(), &mut lp.cx());
        let row = conn.entry.row("127.0.0.1:1".parse().unwrap()).unwrap();
        let status = crate::apps::connections::status_json(&[row], 4096);
        assert!(status.contains("\"socket\":\"text\""), "{status}");
        assert!(status.contains("\"records\":2"), "{status}");
    }

    #[test]
    fn text_keeps_the_unfinished_line_and_stores_it_at_the_end() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = start(Protocol::Text, &mut lp, &mut conn).unwrap();
        let progress = session.consume(b"one\ntwo", &mut conn.sink(), &mut lp.cx());
        assert_eq!(
            progress,
            Progress::Need {
                used: 4,
                needed: None
            }
        );
        assert_eq!((lp.batch.len(), conn.in_flight), (1, 1));
        let discarded = session.finish(b"two", &mut conn.sink(), &mut lp.cx());
        assert_eq!((discarded, lp.batch.len(), conn.in_flight), (0, 2, 2));
        assert!(conn.output.is_empty(), "text never replies");
    }

    /// The line sessions search the bytes of an unfinished line once: the connection hands them
    /// the same line again with more bytes behind it, and they look only at what is new. (A
    /// newline planted where they already looked goes unseen: that is how this test tells.)
    #[test]
    fn line_sessions_search_an_unfinished_line_once() {
        for protocol in [Protocol::Text, Protocol::JsonLines, Protocol::Syslog] {
            let (mut lp, mut conn) = (Loop::new(), Conn::new());
            let mut session = start(protocol, &mut lp, &mut conn).unwrap();
            let progress = session.consume(b"<1>abcd", &mut conn.sink(), &mut lp.cx());
            assert_eq!(
                progress,
                Progress::Need {
                    used: 0,
                    needed: None
                },
                "{protocol:?}"
            );
            let progress = session.consume(b"<1>ab\nd efg\n", &mut conn.sink(), &mut lp.cx());
            assert_eq!(
                progress,
                Progress::Need {
                    used: 12,
                    needed: None
                },
                "{protocol:?}"
            );
            assert_eq!(lp.batch.len(), 1, "{protocol:?}: one line, not two");
        }
    }

    #[test]
    fn native_reports_a_frame_cut_by_the_read_and_refuses_an_oversized_one() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = start(Protocol::Native, &mut lp, &mut conn).unwrap();
        let progress = session.consume(&[0, 0, 0, 10, 1, 2], &mut conn.sink(), &mut lp.cx());
        assert_eq!(
            progress,
            Progress::Need {
                used: 0,
                needed: Some(14)
            }
        );
        let progress = session.consume(&[0, 1, 0, 0], &mut conn.sink(), &mut lp.cx());
        assert_eq!(progress, Progress::Close);
        assert_eq!(error_kinds(&conn.output), [ErrorKind::FrameTooLarge]);
    }

    #[test]
    fn each_protocol_says_goodbye_in_its_own_way() {
        let farewells = [
            Farewell::Shed { held: 10 },
            Farewell::IdleTimeout(Duration::from_secs(3)),
            Farewell::ShuttingDown,
        ];
        let said = |protocol| {
            let (mut lp, mut conn) = (Loop::new(), Conn::new());
            let mut session = start(protocol, &mut lp, &mut conn).unwrap();
            farewells
                .iter()
                .map(|why| {
                    conn.output.clear();
                    session.farewell(why, &mut conn.sink());
                    conn.output.clone()
                })
                .collect::<Vec<_>>()
        };
        let native: Vec<_> = said(Protocol::Native)
            .iter()
            .map(|out| error_kinds(out))
            .collect();
        assert_eq!(
            native,
            [
                vec![ErrorKind::FrameTooLarge],
                vec![ErrorKind::IdleTimeout],
                vec![ErrorKind::ShuttingDown]
            ]
        );
        for protocol in [Protocol::JsonLines, Protocol::Text] {
            let out = said(protocol);
            assert!(
                out[0].starts_with(b"logmill: the server's memory"),
                "{protocol:?}"
            );
            assert!(out[0].ends_with(b"closing\n"), "{protocol:?}");
            assert!(out[1].is_empty() && out[2].is_empty(), "{protocol:?}");
        }
        for protocol in [Protocol::Syslog, Protocol::Pickle] {
            assert!(said(protocol).iter().all(Vec::is_empty), "{protocol:?}");
        }
    }

    #[test]
    fn health_and_unknown_answer_once_and_start_no_session() {
        for (protocol, first) in [
            (Protocol::Health, &b"OK name=test "[..]),
            (Protocol::Status, &b"{}\n"[..]),
            (Protocol::Unknown, &b"logmill: unrecognised protocol"[..]),
        ] {
            let (mut lp, mut conn) = (Loop::new(), Conn::new());
            assert!(start(protocol, &mut lp, &mut conn).is_none());
            assert!(!conn.entry.listed(), "{protocol:?} is not listed");
            assert!(
                conn.output.starts_with(first),
                "{protocol:?}: {}",
                String::from_utf8_lossy(&conn.output)
            );
        }
    }

    fn http(lp: &mut Loop, conn: &mut Conn) -> Session {
        let web = crate::server::session::http::web::Web::new(Duration::from_secs(10), false, None);
        let session = Session::http(Arc::new(web));
        conn.entry.set_socket(None);
        let _ = lp;
        session
    }

    /// Pipelined requests are answered in the order they came, in one output.
    #[test]
    fn http_answers_pipelined_requests_in_order() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = http(&mut lp, &mut conn);
        let requests = b"GET /healthz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n\
                         POST /healthz HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /v1/status H";
        let progress = session.consume(requests, &mut conn.sink(), &mut lp.cx());
        let cut = requests.len() - b"GET /v1/status H".len();
        assert_eq!(
            progress,
            Progress::Need {
                used: cut,
                needed: None
            }
        );
        let out = String::from_utf8(conn.output.clone()).unwrap();
        let statuses: Vec<&str> = out
            .match_indices("HTTP/1.1 ")
            .map(|(at, _)| &out[at + 9..at + 12])
            .collect();
        assert_eq!(statuses, ["200", "404", "405"], "{out}");
        assert!(out.contains("Allow: GET\r\n"), "{out}");
        assert!(
            session.deadline().is_some(),
            "a head has begun: the header timeout runs"
        );
    }

    /// A gRPC-Web `LogMessage` call over raw bytes (binary mode), `extra` header lines added.
    fn grpc_web_call(extra: &str) -> Vec<u8> {
        use prost::Message as _;
        let record = crate::protocol::grpc::logmill_v1::LogRecord {
            body: Some(crate::protocol::grpc::logmill_v1::log_record::Body::Message("hi".into())),
            ..Default::default()
        }
        .encode_to_vec();
        let mut body = vec![0];
        body.extend_from_slice(&(record.len() as u32).to_be_bytes());
        body.extend_from_slice(&record);
        let mut request = format!(
            "POST /logmill.v1.LogService/LogMessage HTTP/1.1\r\n\
             Content-Type: application/grpc-web+proto\r\nContent-Length: {}\r\n{extra}\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request
    }

    /// A gRPC-Web call waits for its record to be written: the session holds the requests
    /// behind it, wants acks, answers on the ack that covers it, and is then ready for more.
    #[test]
    fn http_grpc_web_call_waits_for_its_ack_and_holds_what_follows() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = http(&mut lp, &mut conn);
        let call = grpc_web_call("");
        let mut bytes = call.clone();
        bytes.extend_from_slice(b"GET /healthz HTTP/1.1\r\n\r\n");
        let progress = session.consume(&bytes, &mut conn.sink(), &mut lp.cx());
        assert_eq!(
            progress,
            Progress::Need {
                used: call.len(),
                needed: None
            }
        );
        assert!(
            conn.output.is_empty(),
            "no answer before the record is written"
        );
        assert!(session.holds_input() && session.wants_acks());
        assert_eq!(session.kind(), "grpc-web");
        assert_eq!(conn.entry.socket(), Some(Socket::GrpcWeb));
        // Still held: the request behind it is not read.
        let progress = session.consume(&bytes[call.len()..], &mut conn.sink(), &mut lp.cx());
        assert_eq!(
            progress,
            Progress::Need {
                used: 0,
                needed: None
            }
        );
        assert_eq!(conn.in_flight, 1);
        conn.in_flight = 0;
        session.ack(1, 7, &mut conn.sink());
        let out = String::from_utf8_lossy(&conn.output).into_owned();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("grpc-status:0"), "{out}");
        assert!(!session.holds_input() && !session.wants_acks());
        conn.output.clear();
        let progress = session.consume(&bytes[call.len()..], &mut conn.sink(), &mut lp.cx());
        assert_eq!(
            progress,
            Progress::Need {
                used: bytes.len() - call.len(),
                needed: None
            }
        );
        assert!(conn.output.starts_with(b"HTTP/1.1 200 OK"));
    }

    /// A waiting call's deadline is the connection's; the server's farewell answers it
    /// UNAVAILABLE, its own deadline DEADLINE_EXCEEDED.
    #[test]
    fn http_grpc_web_call_is_answered_when_the_server_ends_first() {
        for (extra, why, code) in [
            ("", Farewell::ShuttingDown, "14"),
            (
                "grpc-timeout: 1n\r\n",
                Farewell::IdleTimeout(Duration::ZERO),
                "4",
            ),
        ] {
            let (mut lp, mut conn) = (Loop::new(), Conn::new());
            let mut session = http(&mut lp, &mut conn);
            session.consume(&grpc_web_call(extra), &mut conn.sink(), &mut lp.cx());
            assert_eq!(session.deadline().is_some(), !extra.is_empty());
            session.farewell(&why, &mut conn.sink());
            let out = String::from_utf8_lossy(&conn.output).into_owned();
            assert!(out.contains(&format!("grpc-status: {code}\r\n")), "{out}");
            assert!(out.contains("Connection: close\r\n"), "{out}");
        }
    }

    /// A client that pipelines far more answers than it reads is closed, not buffered for.
    #[test]
    fn http_closes_a_client_that_does_not_read_its_pipelined_answers() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = http(&mut lp, &mut conn);
        let flood = b"GET /healthz HTTP/1.1\r\n\r\n".repeat(20_000);
        let progress = session.consume(&flood, &mut conn.sink(), &mut lp.cx());
        assert_eq!(progress, Progress::Close);
        assert!(
            conn.output.len() < 1024 * 1024 + 200,
            "{}",
            conn.output.len()
        );
    }

    /// After a `101` the rest of the same buffer belongs to the next session (here the test
    /// route's stand-in, plain text lines), and so does every later read.
    #[test]
    fn http_upgrade_switches_the_session_and_keeps_the_bytes_behind_it() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = http(&mut lp, &mut conn);
        let progress = session.consume(
            b"GET /test/upgrade HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: text\r\n\r\none\ntw",
            &mut conn.sink(),
            &mut lp.cx(),
        );
        assert!(matches!(progress, Progress::Need { .. }), "{progress:?}");
        assert!(
            conn.output
                .starts_with(b"HTTP/1.1 101 Switching Protocols\r\n")
        );
        assert!(
            matches!(session, Session::Lines(_)),
            "switched to the next session"
        );
        assert_eq!(
            lp.batch.len(),
            1,
            "the line behind the 101, in the same buffer"
        );
        session.consume(b"two\n", &mut conn.sink(), &mut lp.cx());
        assert_eq!(lp.batch.len(), 2);
        let status = crate::apps::connections::status_json(
            &[conn.entry.row("127.0.0.1:1".parse().unwrap()).unwrap()],
            4096,
        );
        assert!(status.contains("\"socket\":\"text\""), "{status}");
    }

    #[test]
    fn http_expect_continue_is_sent_once_and_a_bad_request_closes() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = http(&mut lp, &mut conn);
        let head = b"POST /healthz HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        for _ in 0..2 {
            session.consume(head, &mut conn.sink(), &mut lp.cx());
        }
        assert_eq!(conn.output, b"HTTP/1.1 100 Continue\r\n\r\n");
        let progress = session.consume(b"\x01 / HTTP/1.1\r\n\r\n", &mut conn.sink(), &mut lp.cx());
        assert_eq!(progress, Progress::Close);
        assert!(
            conn.output
                .ends_with(b"malformed request: invalid method or token\n")
        );
    }

    /// A WebSocket session as the HTTP side starts it after a `101`.
    fn websocket(want_acks: bool, conn: &mut Conn) -> Session {
        Session::websocket(
            Origin::new("billing".into(), "pod-7".into()),
            want_acks,
            &mut conn.sink(),
        )
    }

    /// A client frame (masked).
    fn ws(fin: bool, opcode: ws::Opcode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        ws::encode_client_frame(fin, opcode, [1, 2, 3, 4], payload, &mut out);
        out
    }

    /// The fragments of an unfinished message are input the session holds (counted against
    /// `--max-input` by the connection), and nothing once the message is complete.
    #[test]
    fn websocket_holds_the_fragments_of_an_unfinished_message() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = websocket(false, &mut conn);
        let first = ws(false, ws::Opcode::Text, &[b'x'; 100]);
        session.consume(&first, &mut conn.sink(), &mut lp.cx());
        assert_eq!(session.held(), 100);
        let last = ws(true, ws::Opcode::Continuation, &[b'y'; 20]);
        session.consume(&last, &mut conn.sink(), &mut lp.cx());
        assert_eq!(session.held(), 0);
        assert_eq!(conn.in_flight, 1);
        // Shed in the middle of a message: the fragments are dropped with the input.
        session.consume(&first, &mut conn.sink(), &mut lp.cx());
        assert_eq!(session.held(), 100);
        session.farewell(&Farewell::Shed { held: 100 }, &mut conn.sink());
        assert_eq!(session.held(), 0);
    }

    /// The server frames in `out` (unmasked, unfragmented, lengths under 64 KiB): opcode and
    /// payload.
    fn server_frames(mut out: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while let [b0, b1, rest @ ..] = out {
            assert_eq!(b0 & 0xF0, 0x80, "FIN, no reserved bits");
            assert_eq!(b1 & 0x80, 0, "server frames are not masked");
            let (len, rest) = match b1 & 0x7F {
                126 => (
                    usize::from(u16::from_be_bytes([rest[0], rest[1]])),
                    &rest[2..],
                ),
                len => (usize::from(len), rest),
            };
            frames.push((b0 & 0x0F, rest[..len].to_vec()));
            out = &rest[len..];
        }
        frames
    }

    /// A close frame's code and reason.
    fn close_frame(code: u16, reason: &str) -> (u8, Vec<u8>) {
        (0x8, [&code.to_be_bytes()[..], reason.as_bytes()].concat())
    }

    fn native_payload(records: &[Record<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        native::encode_records(records, &mut out);
        out.split_off(4)
    }

    #[test]
    fn websocket_text_and_binary_messages_become_records() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = websocket(false, &mut conn);
        assert_eq!(conn.origin.app(), "billing");
        let mut stream = ws(true, ws::Opcode::Text, br#"{"msg":"one","level":"error"}"#);
        stream.extend(ws(
            true,
            ws::Opcode::Text,
            br#"[{"msg":"two"},{"msg":"three"},"four"]"#,
        ));
        stream.extend(ws(true, ws::Opcode::Text, b"not json"));
        stream.extend(ws(true, ws::Opcode::Text, b""));
        let natives = [
            Record {
                body: crate::record::Body::Message("five".into()),
                ..Record::default()
            },
            Record {
                body: crate::record::Body::Message("six".into()),
                ..Record::default()
            },
        ];
        stream.extend(ws(true, ws::Opcode::Binary, &native_payload(&natives)));
        let progress = session.consume(&stream, &mut conn.sink(), &mut lp.cx());
        assert_eq!(
            progress,
            Progress::Need {
                used: stream.len(),
                needed: None
            }
        );
        assert_eq!((lp.batch.len(), conn.in_flight), (7, 7));
        assert!(conn.output.is_empty(), "no acks asked for");
        let row = conn.entry.row("127.0.0.1:1".parse().unwrap()).unwrap();
        let status = crate::apps::connections::status_json(&[row], 4096);
        assert!(status.contains("\"socket\":\"websocket\""), "{status}");
        assert!(status.contains("{\"billing\":{"), "{status}");
        assert!(status.contains("\"records\":7"), "{status}");
    }

    /// The same messages whatever the reads: a stream cut at every byte, the connection keeping
    /// the unconsumed tail, gives the same records and replies.
    #[test]
    fn websocket_reads_cut_anywhere_give_the_same_records_and_replies() {
        let mut stream = ws(false, ws::Opcode::Text, br#"[{"msg":"a"},"#);
        stream.extend(ws(true, ws::Opcode::Ping, b"hi"));
        stream.extend(ws(true, ws::Opcode::Continuation, br#"{"msg":"b"}]"#));
        stream.extend(ws(true, ws::Opcode::Text, br#"{"msg":"c"}"#));
        stream.extend(ws(true, ws::Opcode::Close, b"\x03\xe8"));
        let run = |cut: usize| {
            let (mut lp, mut conn) = (Loop::new(), Conn::new());
            let mut session = websocket(false, &mut conn);
            let mut held = Vec::new();
            let mut closed = false;
            for piece in [&stream[..cut], &stream[cut..]] {
                held.extend_from_slice(piece);
                match session.consume(&held, &mut conn.sink(), &mut lp.cx()) {
                    Progress::Need { used, .. } => drop(held.drain(..used)),
                    // `Session::consume` never returns a switch.
                    Progress::Close | Progress::Switch { .. } => {
                        closed = true;
                        break;
                    }
                }
            }
            (lp.batch.len(), conn.output, closed)
        };
        let whole = run(stream.len());
        assert_eq!(whole.0, 3);
        assert_eq!(
            server_frames(&whole.1),
            [(0xA, b"hi".to_vec()), close_frame(1000, "")]
        );
        assert!(whole.2);
        for cut in 0..stream.len() {
            assert_eq!(run(cut), whole, "cut at {cut}");
        }
    }

    #[test]
    fn websocket_close_is_echoed_and_ping_answered() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = websocket(false, &mut conn);
        let mut stream = ws(true, ws::Opcode::Ping, b"p1");
        stream.extend(ws(true, ws::Opcode::Pong, b"unasked"));
        stream.extend(ws(true, ws::Opcode::Close, b"\x0f\xa0app says bye"));
        stream.extend(ws(true, ws::Opcode::Text, br#"{"msg":"after the close"}"#));
        let progress = session.consume(&stream, &mut conn.sink(), &mut lp.cx());
        assert_eq!(progress, Progress::Close);
        assert_eq!(lp.batch.len(), 0, "nothing is taken after a close");
        assert_eq!(
            server_frames(&conn.output),
            [(0xA, b"p1".to_vec()), close_frame(4000, "")]
        );
        // Nothing follows the close frame.
        conn.output.clear();
        session.ack(0, 0, &mut conn.sink());
        session.farewell(&Farewell::ShuttingDown, &mut conn.sink());
        assert!(conn.output.is_empty());
    }

    /// Every error closes with its code and reason, taking no records from the bad message.
    #[test]
    fn websocket_errors_close_with_their_code() {
        let mut unmasked = ws(true, ws::Opcode::Text, b"{}");
        unmasked[1] &= 0x7F;
        let bad_native = ws(true, ws::Opcode::Binary, b"\x00\x01\x02\x03garbage!");
        for (stream, code, reason) in [
            (unmasked, 1002u16, "client frames must be masked"),
            (
                ws(true, ws::Opcode::Text, &[b' '; 1025]),
                1009,
                "message of 1025 bytes is over the limit of 1024",
            ),
            (
                ws(true, ws::Opcode::Text, b"\xff"),
                1007,
                "text message is not valid UTF-8",
            ),
            (
                bad_native,
                1007,
                "binary message is not a native ClientFrame",
            ),
        ] {
            let (mut lp, mut conn) = (Loop::new(), Conn::new());
            let mut session = websocket(false, &mut conn);
            let mut input = ws(true, ws::Opcode::Text, br#"{"msg":"kept"}"#);
            input.extend(&stream);
            let progress = session.consume(&input, &mut conn.sink(), &mut lp.cx());
            assert_eq!(progress, Progress::Close, "{reason}");
            assert_eq!(
                lp.batch.len(),
                1,
                "{reason}: the good message before is kept"
            );
            let frames = server_frames(&conn.output);
            assert_eq!(frames.len(), 1, "{reason}");
            assert_eq!(frames[0].1[..2], code.to_be_bytes(), "{reason}");
            let said = String::from_utf8(frames[0].1[2..].to_vec()).unwrap();
            assert!(said.starts_with(reason), "{said}");
            assert_eq!(lp.shared.stats().decode_errors(), 1, "{reason}");
        }
    }

    #[test]
    fn websocket_ignores_a_native_hello() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = websocket(false, &mut conn);
        let mut hello = Vec::new();
        native::encode_hello(
            &native::Hello {
                app: "other".into(),
                instance: "x".into(),
                token: String::new(),
                want_acks: true,
            },
            &mut hello,
        );
        let stream = ws(true, ws::Opcode::Binary, &hello[4..]);
        let progress = session.consume(&stream, &mut conn.sink(), &mut lp.cx());
        assert!(matches!(progress, Progress::Need { .. }));
        assert_eq!(conn.origin.app(), "billing", "the upgrade's app stays");
        assert!(!session.wants_acks(), "the upgrade's acks stay");
        assert!(conn.output.is_empty());
    }

    #[test]
    fn websocket_acks_are_text_frames() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = websocket(true, &mut conn);
        assert!(session.wants_acks());
        let stream = ws(true, ws::Opcode::Text, br#"[{"msg":"a"},{"msg":"b"}]"#);
        session.consume(&stream, &mut conn.sink(), &mut lp.cx());
        assert_eq!(conn.in_flight, 2);
        conn.in_flight = 0; // as `Connection::completed` does before the ack
        session.ack(2, 41, &mut conn.sink());
        assert_eq!(
            server_frames(&conn.output),
            [(0x1, br#"{"ack":2,"last_seq":41}"#.to_vec())]
        );
    }

    /// A close decided while acked records are being written waits for the ack covering them:
    /// nothing may follow a close frame.
    #[test]
    fn websocket_close_waits_for_the_last_ack() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = websocket(true, &mut conn);
        let mut stream = ws(true, ws::Opcode::Text, br#"[{"msg":"a"},{"msg":"b"}]"#);
        stream.extend(ws(true, ws::Opcode::Close, b""));
        let progress = session.consume(&stream, &mut conn.sink(), &mut lp.cx());
        assert_eq!(progress, Progress::Close);
        assert!(conn.output.is_empty(), "the close is owed");
        conn.in_flight = 1;
        session.ack(1, 10, &mut conn.sink());
        conn.in_flight = 0;
        session.ack(2, 11, &mut conn.sink());
        session.ack(2, 11, &mut conn.sink());
        assert_eq!(
            server_frames(&conn.output),
            [
                (0x1, br#"{"ack":1,"last_seq":10}"#.to_vec()),
                (0x1, br#"{"ack":2,"last_seq":11}"#.to_vec()),
                close_frame(1000, ""),
            ]
        );
    }

    #[test]
    fn websocket_farewells_are_close_frames() {
        for (why, code) in [
            (Farewell::Shed { held: 10 }, 1013),
            (Farewell::IdleTimeout(Duration::from_secs(3)), 1008),
            (Farewell::ShuttingDown, 1001),
        ] {
            let mut conn = Conn::new();
            let mut session = websocket(true, &mut conn);
            session.farewell(&why, &mut conn.sink());
            session.farewell(&why, &mut conn.sink());
            let frames = server_frames(&conn.output);
            assert_eq!(frames.len(), 1, "{why:?}: one close only");
            assert_eq!(frames[0].1[..2], u16::to_be_bytes(code), "{why:?}");
            let reason = String::from_utf8(frames[0].1[2..].to_vec()).unwrap();
            let expected = match why {
                Farewell::Shed { .. } => "server input memory (--max-input) is full and this \
                    connection held the most (10 bytes); closing"
                    .to_string(),
                _ => why.message(),
            };
            assert_eq!(reason, expected);
        }
    }

    #[test]
    fn websocket_end_of_stream_counts_what_is_lost() {
        let (mut lp, mut conn) = (Loop::new(), Conn::new());
        let mut session = websocket(false, &mut conn);
        let mut stream = ws(false, ws::Opcode::Text, b"12345");
        stream.extend(&ws(true, ws::Opcode::Continuation, b"678")[..7]);
        let progress = session.consume(&stream, &mut conn.sink(), &mut lp.cx());
        assert_eq!(
            progress,
            Progress::Need {
                used: 11,
                needed: Some(9)
            }
        );
        let lost = session.finish(&stream[11..], &mut conn.sink(), &mut lp.cx());
        assert_eq!(
            lost,
            7 + 5,
            "the unfinished frame and the fragment before it"
        );
        assert_eq!(lp.batch.len(), 0);
    }

    /// The kinds of the native error frames in `out`.
    fn error_kinds(mut out: &[u8]) -> Vec<ErrorKind> {
        let mut kinds = Vec::new();
        while let Ok(Frame::Complete { payload, consumed }) = frame::decode(out, u32::MAX >> 8) {
            match native::decode_server_frame(payload).unwrap() {
                ServerFrame::Error { kind, .. } => kinds.push(kind.unwrap()),
                other => panic!("not an error frame: {other:?}"),
            }
            out = &out[consumed..];
        }
        kinds
    }
}
