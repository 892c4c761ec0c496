//! One client connection: a [`Transport`] plus the protocol [`Session`] detection picked, and
//! what belongs to the connection whatever it speaks: buffers, limits, output, closing.
//!
//! [`Connection::read_from_socket`] is where received bytes become records: it reads, runs
//! detection over the first bytes, then hands what arrived to the session, which pushes records
//! to the loop's batch and queues replies in the output ([`Connection::flush_output`] sends
//! them). The event loop only calls these methods; every field is private.
//!
//! Memory: an idle connection holds no buffer at all. The loop lends one scratch buffer per loop
//! and only the unfinished tail of a frame is copied into `input`, which grows to what that
//! frame announced (at most `--max-frame` and a few bytes of header) and is freed once the frame
//! is complete. What `input` holds counts against the input budget (`--max-input`,
//! `server::budget`): the loop [`recount`](Connection::recount)s it after each read, and a
//! connection shed to keep within the budget loses only that unfinished tail
//! ([`shed`](Connection::shed)).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

use super::session::{Context, Farewell, Progress, Session, Sink};
use super::transport::Transport;
use crate::apps::connections::{Entry, MAX_STATUS_BYTES, Row};
use crate::net::stream::{Stream, TlsFailure};
use crate::protocol::detect::{self, Detect};
use crate::storage::ConnKey;
use crate::storage::line::Origin;

pub struct Connection {
    transport: Transport,
    key: ConnKey,
    /// `None` while detecting.
    session: Option<Session>,
    /// No more input is taken; the connection closes once `output` is sent (and, if the client
    /// wants acks, once its records are written).
    closing: bool,
    origin: Origin,
    /// What `status` shows of it (`apps::connections`): bumped where records are pushed and
    /// bytes read, published by the loop.
    entry: Entry,
    /// The unfinished tail of the input (a partial frame or detection prefix).
    input: Vec<u8>,
    /// Bytes the tail's frame will need in total, when known: the read size hint.
    input_needed: Option<usize>,
    /// Answers not yet sent; `output[..output_sent]` went out already.
    output: Vec<u8>,
    output_sent: usize,
    last_active: Instant,
    /// Records handed to the writer and not yet written.
    in_flight: u64,
    /// Records written (cumulative): what acks report.
    written: u64,
    last_seq: u64,
    ack_due: bool,
    /// WRITABLE interest is registered (only while output is pending).
    writable: bool,
    /// In the loop's ready list.
    queued: bool,
    /// The peer closed its sending side.
    eof: bool,
    /// Ended at once ([`Connection::abort`]): what TLS still holds is not waited for either.
    aborted: bool,
    /// Mutual TLS: the app the client's verified certificate names (its subject CN, when that
    /// is a valid app name), known once the handshake is done (`certificate_checked`).
    certified: Option<String>,
    certificate_checked: bool,
    /// Bytes of unfinished input last counted against the input budget (`recount`).
    counted: usize,
    /// Set once the server has said its last word and half-closed the socket: until then, what
    /// the client still sends is read and dropped (see [`Connection::linger`]).
    linger_until: Option<Instant>,
}

/// How long a connection the server closes (after an error frame, say) is kept to read and drop
/// what the client still sends. Closing a socket with unread input makes the kernel answer with
/// a reset, which can reach the client before it has read the error it was sent.
const LINGER: Duration = Duration::from_secs(2);

/// What a lingering connection may still send before it is closed anyway.
const LINGER_MAX_BYTES: usize = 1024 * 1024;

/// Bytes read from one connection per call, and the part of the loop's scratch buffer a read
/// fills; the rest of the scratch takes the rest of a frame the read cut
/// (see `read_rest_of_frame`).
pub const READ_CHUNK: usize = 256 * 1024;

/// A client that does not read its acks and error frames gets this much output, then is closed.
const MAX_OUTPUT: usize = 1024 * 1024;

// A `status` answer is one output: it must fit, or a client reading it a little slowly would be
// closed as a slow reader.
const _: () = assert!(MAX_STATUS_BYTES <= MAX_OUTPUT);

/// Why [`Connection::flush_output`] gave up on a connection (it is aborted; the loop logs this).
#[derive(Debug)]
pub enum FlushError {
    /// The client does not read its acks: this many bytes are unsent.
    SlowReader(usize),
    /// The loop cannot change what it watches on the socket.
    Reregister(io::Error),
}

/// The [`Sink`] a session answers through, built from the connection's own fields (a macro, not a
/// method, so the borrow of `self.session` beside it stays allowed).
macro_rules! sink {
    ($conn:ident) => {
        Sink::new(
            $conn.key,
            $conn.transport.peer(),
            $conn.certified.as_deref(),
            &mut $conn.origin,
            &mut $conn.in_flight,
            &mut $conn.entry,
            &mut $conn.output,
        )
    };
}

impl Connection {
    /// A connection over `stream`, plain or TLS as its port says (`server::tls`).
    pub fn new(stream: Stream, key: ConnKey, peer: SocketAddr) -> Self {
        Connection {
            transport: Transport::new(stream, peer),
            key,
            session: None,
            closing: false,
            origin: Origin::default(),
            entry: Entry::accepted(None),
            input: Vec::new(),
            input_needed: None,
            output: Vec::new(),
            output_sent: 0,
            last_active: Instant::now(),
            in_flight: 0,
            written: 0,
            last_seq: 0,
            ack_due: false,
            writable: false,
            queued: false,
            eof: false,
            aborted: false,
            certified: None,
            certificate_checked: false,
            counted: 0,
            linger_until: None,
        }
    }

    /// A connection accepted elsewhere whose protocol is already known: an HTTP/1.1 client
    /// the gRPC port's detection handed over (`server::session::http`), with the `first` bytes detection
    /// read. They are consumed at once; what is left waits in `input` for the next read.
    pub fn adopt(
        stream: Stream,
        key: ConnKey,
        peer: SocketAddr,
        session: Session,
        first: &[u8],
        cx: &mut Context<'_>,
    ) -> Self {
        let mut conn = Connection::new(stream, key, peer);
        conn.session = Some(session);
        conn.entry.read(first.len());
        let used = conn.consume(first, cx);
        if used < first.len() {
            conn.input = first[used..].to_vec();
        }
        conn
    }

    pub fn key(&self) -> ConnKey {
        self.key
    }

    /// Its protocol, as the metrics label it (`detecting` before detection decided).
    pub fn kind(&self) -> &'static str {
        self.session.as_ref().map_or("detecting", Session::kind)
    }

    /// Its session makes no records (HTTP's `/healthz`, `/metrics`, admin API), so the loop
    /// reads it even while the writer is full (`EventLoop::serve_health_while_paused`).
    ///
    /// Once an HTTP connection has made a gRPC-Web call (which does make records) it is no
    /// longer read while paused: its calls wait for the writer like every other protocol's
    /// records. Its first call may still be read while paused: at most one request body
    /// (`--max-frame`) per HTTP connection gets past the pause.
    pub fn answers_while_paused(&self) -> bool {
        matches!(&self.session, Some(session @ Session::Http(_)) if session.kind() == "http")
    }

    /// Its TLS handshake has not finished `timeout` after accept: time to close it
    /// ([`Connection::abort`]; a client that never finished a handshake has nothing to be told).
    pub fn handshake_overdue(&self, now: Instant, timeout: Duration) -> bool {
        !self.closing
            && self.transport.handshaking()
            && now.duration_since(self.transport.accepted()) >= timeout
    }

    /// The session's own deadline has passed while it still waits for input (HTTP's header
    /// timeout, `Handler::deadline`): time to close with [`Connection::time_out`].
    pub fn overdue(&self, now: Instant) -> bool {
        !self.closing
            && self
                .session
                .as_ref()
                .and_then(Session::deadline)
                .is_some_and(|at| now >= at)
    }

    pub fn peer(&self) -> SocketAddr {
        self.transport.peer()
    }

    /// What `status` shows of it; `None` until its protocol is known (and for `health`).
    pub fn row(&self) -> Option<Row> {
        self.entry.row(self.peer())
    }

    /// # Errors
    /// As [`Registry::register`].
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.transport.register(registry, token, Interest::READABLE)
    }

    /// # Errors
    /// As [`Registry::deregister`].
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.transport.deregister(registry)
    }

    /// Marks the connection as in the loop's ready list; false if it already was.
    pub fn enqueue(&mut self) -> bool {
        !std::mem::replace(&mut self.queued, true)
    }

    /// The loop took the connection off its ready list.
    pub fn dequeue(&mut self) {
        self.queued = false;
    }

    pub fn is_queued(&self) -> bool {
        self.queued
    }

    /// No protocol decided yet.
    pub fn detecting(&self) -> bool {
        self.session.is_none() && !self.closing
    }

    /// Takes no more input (see [`Connection::finished`] for when it closes).
    pub fn closing(&self) -> bool {
        self.closing
    }

    /// Looks at the first bytes waiting without taking them.
    ///
    /// # Errors
    /// As [`Transport::peek`].
    pub fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.transport.peek(buf)
    }

    /// Counts the unfinished input held now (the capacity of `input`: what it may have
    /// touched); returns what was counted before and now, for the loop's share of the budget.
    pub fn recount(&mut self) -> (usize, usize) {
        // A WebSocket message's fragments so far are unfinished input too, held by its decoder.
        let now = self
            .input
            .capacity()
            .saturating_add(self.session.as_ref().map_or(0, Session::held));
        (std::mem::replace(&mut self.counted, now), now)
    }

    /// What [`recount`](Self::recount) last counted.
    pub fn counted(&self) -> usize {
        self.counted
    }

    /// Drops the unfinished input to keep within `--max-input` and closes the connection,
    /// telling the client why where its protocol has a reply channel (`Session::farewell`).
    /// Records already complete are kept, and acked when written.
    pub fn shed(&mut self) {
        self.say_farewell(&Farewell::Shed { held: self.counted });
        self.input = Vec::new();
        self.input_needed = None;
        self.closing = true;
    }

    /// Nothing arrived for `idle` (`--idle-timeout`) and nothing is being written: true if it is
    /// time to close (see [`Connection::time_out`]).
    pub fn idle(&self, now: Instant, idle: Duration) -> bool {
        self.in_flight == 0
            && self.linger_until.is_none()
            && now.duration_since(self.last_active) >= idle
    }

    /// Closes an idle connection, telling the client why if its protocol can.
    pub fn time_out(&mut self, idle: Duration) {
        if !self.closing {
            self.say_farewell(&Farewell::IdleTimeout(idle));
        }
        self.closing = true;
    }

    /// The server stops: queues the last ack and says why, then closes without waiting for
    /// more writes.
    pub fn shut_down(&mut self) {
        self.queue_ack();
        if !self.closing {
            self.say_farewell(&Farewell::ShuttingDown);
        }
        self.closing = true;
        self.in_flight = 0;
        self.eof = true;
    }

    /// Records of this connection are still on their way to disk.
    pub fn awaiting_writes(&self) -> bool {
        self.in_flight > 0
    }

    fn say_farewell(&mut self, why: &Farewell) {
        if let Some(session) = &mut self.session {
            let mut sink = sink!(self);
            session.farewell(why, &mut sink);
        }
    }

    /// Reads until `WouldBlock` (returns true) or until `budget` bytes (false), and consumes
    /// what arrived. `scratch` is the loop's buffer: at least [`READ_CHUNK`], and room for the
    /// rest of a frame after it. `input_cap` bounds what `input` may hold (one frame or line).
    pub fn read_from_socket(
        &mut self,
        scratch: &mut [u8],
        budget: usize,
        input_cap: usize,
        cx: &mut Context<'_>,
    ) -> bool {
        if self.lingering() {
            self.discard_input(&mut scratch[..READ_CHUNK]);
            return true;
        }
        let mut total = 0usize;
        loop {
            if total >= budget {
                return false;
            }
            if self.closing || self.eof {
                return true;
            }
            if self.session.as_ref().is_some_and(Session::holds_input) {
                // An HTTP session waits for a gRPC-Web call's records to be written: nothing more
                // is read until [`resume`](Self::resume) (the loop reads it again then).
                return true;
            }
            let result = if self.input.is_empty() {
                // The common case: read into the loop's scratch buffer, decode in place, and keep
                // only an unfinished tail.
                match self.transport.read(&mut scratch[..READ_CHUNK]) {
                    Ok(n) if n > 0 => {
                        self.check_certificate(cx);
                        let (used, end, result) = self.read_rest_of_frame(scratch, n, cx);
                        self.input.extend_from_slice(&scratch[used..end]);
                        result.map(|()| end)
                    }
                    other => other,
                }
            } else {
                self.read_into_input(input_cap, cx)
            };
            match result {
                Ok(0) => {
                    self.eof = true;
                    let discarded = self.finish_input(cx);
                    if discarded > 0 {
                        cx.log.warn(format_args!(
                            "connection from {} closed in the middle of a frame; {discarded} \
                             bytes of an incomplete frame discarded",
                            self.peer(),
                        ));
                    }
                    return true;
                }
                Ok(n) => {
                    total += n;
                    self.entry.read(n);
                    self.last_active = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    match TlsFailure::of(&e) {
                        Some(why) if self.session.is_none() => {
                            if matches!(why, TlsFailure::NotTls(_)) {
                                // A plain client: a clean close, not a reset.
                                self.transport.discard_waiting(LINGER_MAX_BYTES);
                            }
                            cx.shared.tls().handshake_failed(
                                self.peer(),
                                why,
                                cx.shared.stats(),
                                cx.log,
                            );
                        }
                        _ => cx.log.warn(format_args!(
                            "connection from {}: read failed: {e}",
                            self.peer()
                        )),
                    }
                    self.abort();
                    return true;
                }
            }
        }
    }

    /// Once, when the first plaintext arrives (the TLS handshake is done): the app a verified
    /// client certificate names, from its subject CN (`protocol::x509`). Its records go to that
    /// app's bucket from the first byte, whatever protocol they come in; the native hello and
    /// `--auth required` take it as a credential (`Gate::admit_certified`). A CN that is not a
    /// valid app name names no app (logged once).
    fn check_certificate(&mut self, cx: &mut Context<'_>) {
        if std::mem::replace(&mut self.certificate_checked, true) {
            return;
        }
        let Some(der) = self
            .transport
            .tls()
            .and_then(|tls| tls.peer_certificates())
            .and_then(|certs| certs.first())
        else {
            return;
        };
        match crate::protocol::x509::subject_common_name(der) {
            Some(cn) if crate::storage::bucket::valid_app_name(&cn) => {
                let instance =
                    crate::storage::bucket::default_instance(&cn, String::new(), self.peer());
                let origin = Origin::new(cn.clone(), instance);
                self.entry.set_origin(&origin);
                self.origin = origin;
                self.certified = Some(cn);
            }
            cn => cx.log.warn(format_args!(
                "TLS connection from {}: the client certificate's subject CN {cn:?} is not an \
                 app name ([A-Za-z0-9][A-Za-z0-9._-]{{0,63}}); it names no app",
                self.peer()
            )),
        }
    }

    /// A frame is half-way in: reads into the connection's own buffer, growing it only towards
    /// what the frame announced.
    fn read_into_input(&mut self, input_cap: usize, cx: &mut Context<'_>) -> io::Result<usize> {
        // An HTTP request is a head and a body of up to `--max-frame`: room for the head too.
        let input_cap =
            input_cap.saturating_add(self.session.as_ref().map_or(0, Session::input_slack));
        let mut input = std::mem::take(&mut self.input);
        let have = input.len();
        let want = self
            .input_needed
            .map_or(4096, |need| need.saturating_sub(have))
            .clamp(4096, READ_CHUNK)
            // A frame (or line) never needs more than the cap, and the budget counts
            // capacity: what the zeroing below may have touched.
            .min(input_cap.saturating_sub(have))
            .max(1);
        reserve_input(&mut input, want, input_cap);
        input.resize(have + want, 0);
        let result = self.transport.read(&mut input[have..]);
        let n = *result.as_ref().unwrap_or(&0);
        input.truncate(have + n);
        if n > 0 {
            self.check_certificate(cx);
            let used = self.consume(&input, cx);
            input.drain(..used);
        }
        self.input = if input.is_empty() { Vec::new() } else { input };
        result
    }

    /// After a read into `scratch[..n]` consumed up to a frame it cut, reads the rest of that
    /// frame right behind it, while the socket has it, and consumes it there: the cut part is
    /// neither copied into `input` nor is `input` grown (and zeroed) for the rest, which cost a
    /// copy and a fill of half a frame on nearly every read. Returns how far the scratch was
    /// consumed and filled, and a read error to report (end of stream and `WouldBlock` are left
    /// for the next read to see again).
    fn read_rest_of_frame(
        &mut self,
        scratch: &mut [u8],
        n: usize,
        cx: &mut Context<'_>,
    ) -> (usize, usize, io::Result<()>) {
        let mut used = self.consume(&scratch[..n], cx);
        let mut end = n;
        while used < end && !self.closing {
            let Some(need) = self.input_needed else {
                break;
            };
            let frame_end = used.saturating_add(need);
            if frame_end <= end || frame_end > scratch.len() {
                break;
            }
            match self.transport.read(&mut scratch[end..frame_end]) {
                Ok(0) => break,
                Ok(m) => {
                    end += m;
                    used += self.consume(&scratch[used..end], cx);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    break;
                }
                Err(e) => return (used, end, Err(e)),
            }
        }
        (used, end, Ok(()))
    }

    /// Takes what it can from `buf` and returns how many bytes it consumed; the caller keeps the
    /// rest for the next call. Detection first, then the session: one `match` per call.
    fn consume(&mut self, buf: &[u8], cx: &mut Context<'_>) -> usize {
        if self.closing {
            return buf.len();
        }
        let mut sink = sink!(self);
        let (session, pos) = match &mut self.session {
            Some(session) => (session, 0),
            None => match detect::detect(buf) {
                Detect::Incomplete => {
                    self.input_needed = None;
                    return 0;
                }
                Detect::Decided { protocol, consumed } => {
                    match Session::start(protocol, &mut sink, cx) {
                        Some(session) => (self.session.insert(session), consumed),
                        None => {
                            self.closing = true;
                            return buf.len();
                        }
                    }
                }
            },
        };
        match session.consume(&buf[pos..], &mut sink, cx) {
            Progress::Need { used, needed } => {
                self.input_needed = needed;
                pos + used
            }
            // `Session::consume` handles a switch itself and never returns it.
            Progress::Close | Progress::Switch { .. } => {
                self.closing = true;
                buf.len()
            }
        }
    }

    /// The peer closed its side: the session stores what it can of the unfinished input.
    /// Returns how many bytes had to be discarded (an unfinished frame).
    fn finish_input(&mut self, cx: &mut Context<'_>) -> usize {
        let input = std::mem::take(&mut self.input);
        if self.closing {
            return 0;
        }
        match &mut self.session {
            Some(session) => {
                let mut sink = sink!(self);
                session.finish(&input, &mut sink, cx)
            }
            None => input.len(),
        }
    }

    /// The writer wrote `count` more of this connection's records.
    pub fn completed(&mut self, count: u64, last_seq: u64) {
        self.in_flight = self.in_flight.saturating_sub(count);
        self.written += count;
        self.last_seq = last_seq;
        self.ack_due |= self.wants_acks();
    }

    fn wants_acks(&self) -> bool {
        self.session.as_ref().is_some_and(Session::wants_acks)
    }

    /// Queues one ack covering everything written so far (acks coalesce: one per loop turn).
    pub fn queue_ack(&mut self) {
        if std::mem::take(&mut self.ack_due)
            && let Some(session) = &mut self.session
        {
            let mut sink = sink!(self);
            session.ack(self.written, self.last_seq, &mut sink);
        }
    }

    /// After [`queue_ack`](Self::queue_ack): a session that held its input
    /// ([`Session::holds_input`], an HTTP session whose gRPC-Web call has now been answered)
    /// takes what was kept, pipelined requests behind the call. True if it had held input: the
    /// loop reads the socket again, since reading stopped while it waited.
    pub fn resume(&mut self, held: bool, cx: &mut Context<'_>) -> bool {
        if !held || self.closing || self.session.as_ref().is_some_and(Session::holds_input) {
            return false;
        }
        let mut input = std::mem::take(&mut self.input);
        let used = self.consume(&input, cx);
        input.drain(..used.min(input.len()));
        self.input = if input.is_empty() { Vec::new() } else { input };
        true
    }

    /// A streaming session's turn (`Handler::stream`, Server-Sent Events): it queues what it
    /// has. True when it queued something (the loop then sends it). A stream counts as active
    /// for `--idle-timeout`; one that ends closes the connection once its last words are sent.
    pub fn stream(&mut self, now: Instant) -> bool {
        if self.closing || !self.session.as_ref().is_some_and(Session::streams) {
            return false;
        }
        let backlog = self.output.len() - self.output_sent;
        let before = self.output.len();
        let Some(session) = &mut self.session else {
            return false;
        };
        let mut sink = sink!(self);
        if session.stream(now, backlog, &mut sink) == crate::server::session::events::Turn::End {
            self.closing = true;
        }
        self.last_active = now;
        self.output.len() > before || self.closing
    }

    /// The session holds its input for now (see [`resume`](Self::resume)).
    pub fn holds_input(&self) -> bool {
        self.session.as_ref().is_some_and(Session::holds_input)
    }

    /// Ends the connection at once, dropping what was not sent: the peer is gone (a read or
    /// write failed), or it does not read what it is sent, or the loop cannot watch it any more.
    /// The one close that tells the client nothing; every other goes through `closing`.
    pub fn abort(&mut self) {
        self.output.clear();
        self.output_sent = 0;
        self.eof = true;
        self.closing = true;
        self.aborted = true;
    }

    /// Output not yet sent: the connection's own, or TLS records (and handshake messages) the
    /// socket has not taken yet.
    fn has_output(&self) -> bool {
        self.output_sent < self.output.len() || (!self.aborted && self.transport.wants_write())
    }

    /// Writes pending output until done or `WouldBlock`, and keeps WRITABLE interest (under
    /// `token`) only while output is pending. A peer that is gone is aborted silently.
    ///
    /// # Errors
    /// Why the connection was aborted, for the loop to log.
    pub fn flush_output(&mut self, registry: &Registry, token: Token) -> Result<(), FlushError> {
        let mut failed = false;
        let mut blocked = false;
        while self.output_sent < self.output.len() {
            match self.transport.write(&self.output[self.output_sent..]) {
                Ok(0) => failed = true,
                Ok(n) => self.output_sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => failed = true,
            }
            if failed {
                break;
            }
        }
        if !failed && !blocked && !self.aborted {
            // What TLS still holds: the end of the output, or handshake messages.
            match self.transport.flush() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => failed = true,
            }
        }
        let mut error = None;
        if failed {
            // The peer is gone; nothing more can be told to it.
            self.abort();
        } else if self.output_sent >= self.output.len() {
            self.output = Vec::new();
            self.output_sent = 0;
        } else if self.output.len() - self.output_sent > MAX_OUTPUT {
            error = Some(FlushError::SlowReader(self.output.len() - self.output_sent));
            self.abort();
        }
        let want_writable = self.has_output();
        if want_writable != self.writable {
            let interest = if want_writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            match self.transport.reregister(registry, token, interest) {
                Ok(()) => self.writable = want_writable,
                Err(e) => {
                    error = Some(FlushError::Reregister(e));
                    self.abort();
                }
            }
        }
        error.map_or(Ok(()), Err)
    }

    /// Called once [`Connection::finished`]: true while the socket should stay open a little
    /// longer. When the server ends a connection the client is still sending on (an error, a
    /// shed, a timeout), it half-closes the socket (the client reads its answer, then the end of
    /// the stream) and keeps reading, dropping the bytes, until the client closes too, sends
    /// [`LINGER_MAX_BYTES`] more, or [`LINGER`] passes. Closing at once would make the kernel
    /// answer the unread bytes with a reset, which can destroy the answer before it is read.
    pub fn linger(&mut self) -> bool {
        if self.eof {
            return false;
        }
        if self.linger_until.is_some() {
            return true;
        }
        match self.transport.shutdown_write() {
            Ok(()) => {
                self.linger_until = Some(Instant::now() + LINGER);
                true
            }
            // Not connected any more: nothing to wait for.
            Err(_) => false,
        }
    }

    /// True while the connection lingers (see [`Connection::linger`]).
    pub fn lingering(&self) -> bool {
        self.linger_until.is_some()
    }

    /// A lingering connection whose time is up.
    pub fn linger_expired(&self, now: Instant) -> bool {
        self.linger_until.is_some_and(|until| now >= until)
    }

    /// Reads and drops what a lingering client sends, into the loop's `scratch` buffer, until
    /// `WouldBlock`. Marks the connection `eof` once the client closed, failed, or sent too much.
    fn discard_input(&mut self, scratch: &mut [u8]) {
        let mut dropped = 0usize;
        loop {
            match self.transport.read(scratch) {
                Ok(0) => break,
                Ok(n) => {
                    dropped += n;
                    if dropped >= LINGER_MAX_BYTES {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.eof = true;
    }

    /// Nothing more will happen on this connection: close it.
    pub fn finished(&self) -> bool {
        let waiting_for_acks = self.wants_acks() && self.in_flight > 0;
        (self.closing || self.eof) && !self.has_output() && !waiting_for_acks
    }
}

/// Makes room for `want` more bytes in a connection's input: doubling (few reallocations while a
/// large frame arrives), but never past `cap`, so what the budget counts (the capacity) stays
/// within one frame.
fn reserve_input(input: &mut Vec<u8>, want: usize, cap: usize) {
    let need = input.len() + want;
    if input.capacity() < need {
        let target = need.max(input.capacity().saturating_mul(2).min(cap));
        input.reserve_exact(target - input.len());
    }
}
