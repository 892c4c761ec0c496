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

mod health;
pub mod http;
mod lines;
mod native;
mod pickle;
mod status;
mod syslog;

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
    origin: &'a mut Origin,
    in_flight: &'a mut u64,
    entry: &'a mut Entry,
    output: &'a mut Vec<u8>,
}

impl<'a> Sink<'a> {
    pub fn new(
        key: ConnKey,
        peer: SocketAddr,
        origin: &'a mut Origin,
        in_flight: &'a mut u64,
        entry: &'a mut Entry,
        output: &'a mut Vec<u8>,
    ) -> Self {
        Sink {
            key,
            peer,
            origin,
            in_flight,
            entry,
            output,
        }
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
        }
    };
}

const UNKNOWN_PROTOCOL: &[u8] = b"logmill: unrecognised protocol. This port takes native frames \
(schema/logmill.capnp), Python SocketHandler pickles, syslog, JSON lines, plain text lines, or the \
line `health` or `status`.\n";

impl Session {
    /// The one place a detected protocol becomes a session. `None`: the protocol is said in one
    /// answer (`health`, `status`, or the error for bytes nothing speaks) and the connection
    /// closes; such a connection is never listed in `status`.
    pub fn start(protocol: Protocol, sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Option<Self> {
        sink.entry.set_socket(Socket::of(protocol));
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

    /// An HTTP/1.1 connection handed over by the gRPC port's detection (`server::http`).
    pub fn http(web: Arc<crate::server::http::Web>) -> Self {
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
            Session::Http(_) => "http",
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

    pub fn ack(&mut self, written: u64, last_seq: u64, sink: &mut Sink<'_>) {
        each!(self, s => s.ack(written, last_seq, sink))
    }
}

#[cfg(test)]
mod tests {
    //! Sessions driven without a socket: what each protocol makes of bytes, and what it says
    //! when the server ends the connection.
    use std::sync::Arc;

    use super::*;
    use crate::config::Format;
    use crate::protocol::frame::{self, Frame};
    use crate::protocol::native::{self, ErrorKind, ServerFrame};
    use crate::stats::Stats;
    use crate::storage::line::LineFormatter;
    use crate::storage::mailbox::{Handoff, Mailbox};

    /// A loop's side without a loop: a batch, the shared state and a log.
    struct Loop {
        batch: BatchBuilder,
        shared: Shared,
        log: ServerLog,
        _poll: mio::Poll,
    }

    impl Loop {
        fn new() -> Self {
            let poll = mio::Poll::new().unwrap();
            let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
            let handoff = Arc::new(Handoff::new(usize::MAX, vec![Mailbox::new(waker)]));
            Loop {
                batch: BatchBuilder::new(0, LineFormatter::new(Format::Text), 1),
                shared: Shared::new("test".into(), handoff, Arc::new(Stats::default())),
                log: ServerLog::stderr_only(),
                _poll: poll,
            }
        }

        fn cx(&mut self) -> Context<'_> {
            Context {
                batch: &mut self.batch,
                now_ns: 0,
                max_frame: 1024,
                max_line: 64,
                shared: &self.shared,
                log: &self.log,
            }
        }
    }

    /// A connection's side without a connection.
    struct Conn {
        origin: Origin,
        in_flight: u64,
        entry: Entry,
        output: Vec<u8>,
    }

    impl Conn {
        fn new() -> Self {
            Conn {
                origin: Origin::default(),
                in_flight: 0,
                entry: Entry::accepted(None),
                output: Vec::new(),
            }
        }

        fn sink(&mut self) -> Sink<'_> {
            Sink::new(
                ConnKey {
                    token: 0,
                    serial: 0,
                },
                "127.0.0.1:1".parse().unwrap(),
                &mut self.origin,
                &mut self.in_flight,
                &mut self.entry,
                &mut self.output,
            )
        }
    }

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
        let web = crate::server::http::Web::new(Duration::from_secs(10), false, None);
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
