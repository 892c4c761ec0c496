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
//! in this file one [`Session`] arm, one line in `each!` and one in [`Session::start`].
//!
//! Dispatch is a `match` per call of `consume` (once per read), never per record, and never
//! through a `dyn`.

mod health;
mod lines;
mod native;
mod pickle;
mod status;
mod syslog;

use std::net::SocketAddr;
use std::time::Duration;

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
}

/// Runs `$body` with `$s` bound to whichever session `$session` holds: the one list of arms.
macro_rules! each {
    ($session:expr, $s:ident => $body:expr) => {
        match $session {
            Session::Native($s) => $body,
            Session::Pickle($s) => $body,
            Session::Syslog($s) => $body,
            Session::Lines($s) => $body,
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
        if let Some(name) = carries_no_token(protocol)
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

    pub fn consume(&mut self, buf: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Progress {
        each!(self, s => s.consume(buf, sink, cx))
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
