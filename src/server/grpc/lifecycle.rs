//! One gRPC connection's lifecycle: protocol detection, the HTTP/2 handshake through `h2`,
//! serving, the timers `h2` does not have (handshake, keepalive, idle, shutdown grace), shutdown
//! and shedding. Its calls are `calls` ([`Calls`]); the loop side that accepts and drives
//! connections is `port` (`GrpcPort`), which follows the interface below.
//!
//! # How a loop drives it (the whole interface)
//!
//! ```text
//! accept ──> GrpcConnection::new(stream, key, peer, &limits, ready.clone())
//!            conn.register(registry, Token(key.token))       READABLE | WRITABLE, edge-triggered
//!            conn.drive(&mut cx)                              data may already be waiting
//!
//! any event for the token ──────────────> conn.drive(&mut cx)
//! each turn: ready.take(&mut keys) ─────> conn.drive(&mut cx) for each key (if conn.key() matches)
//! now >= conn.next_deadline() ──────────> conn.drive(&mut cx)
//! writer Completion for conn.key() ─────> conn.completed(count, last_seq)    (it re-queues itself)
//! shutdown ─────────────────────────────> conn.begin_shutdown(); keep driving until Closed
//! drive() == Drive::Closed ─────────────> conn.deregister(registry); drop(conn)
//! drive() == Drive::Http1 ──────────────> conn.deregister(registry); conn.into_http1()
//!                                          (not HTTP/2: the loop serves it as HTTP/1.1)
//! ```
//!
//! - [`drive`](GrpcConnection::drive) does all the work and never blocks: it reads, decodes,
//!   pushes records into `cx.batch` under the connection's [`ConnKey`], sends what can be sent,
//!   and handles expired timers. Call it as above; a spurious call costs one `read` that says
//!   `WouldBlock`.
//! - Wake-ups: `h2` wakes tasks through [`std::task::Waker`]s. Here each waker puts the
//!   connection's key on the [`ReadyQueue`] the loop gave it (and, from another thread only,
//!   calls the loop's notify function, which wakes its `Poll`). Wakes during `drive` are
//!   handled within that `drive`. The loop drains the queue every turn before polling, and
//!   polls with a zero timeout while it is not empty (unless the writer is full, as for TCP).
//! - Backpressure: while `cx.shared.pending_full()`, `drive` takes no request data (so no flow
//!   control capacity is released and the client's HTTP/2 windows close), but still answers
//!   PINGs, health checks and replies. A connection stalled this way re-queues itself, so the
//!   loop should treat it like a TCP connection left on its ready list while paused: set the
//!   mailbox's `paused` flag so the writer wakes the loop when there is room.
//! - Timers (`h2` has none): handshake, idle, keepalive, `grpc-timeout`, health-watch checks
//!   and the shutdown grace all feed [`next_deadline`](GrpcConnection::next_deadline).
//! - The socket belongs to `h2` once the preface is seen, so registration goes through the raw
//!   descriptor (`mio::unix::SourceFd` in [`register`](GrpcConnection::register)). Deregister
//!   before dropping: dropping closes the descriptor.
//!
//! # Unfinished input (`--max-input`)
//!
//! Request data held here and not yet records counts against the input budget
//! (`server::budget`): what `h2` buffered for a call and we have not released, and the part of
//! a message being assembled ([`held`](GrpcConnection::held)). Flow-control capacity for bytes of
//! a complete message is released at once; for bytes that stay in an unfinished message, only
//! while the budget has room ([`set_may_grow`](GrpcConnection::set_may_grow)), else it is withheld and the client's
//! windows close. One connection's worst case is bounded by its limits: its connection window
//! plus two messages' worth of unfinished messages (`GrpcLimits::max_partial`; past it the call
//! holding the most is failed with RESOURCE_EXHAUSTED). When the loop sheds the connection
//! ([`shed`](GrpcConnection::shed)), its unfinished calls get RESOURCE_EXHAUSTED and the
//! connection GOAWAY with ENHANCE_YOUR_CALM.
//!
//! # A call's records
//!
//! See `calls` ("The record path"): each request message is decoded whole and its records
//! pushed to the batch before its flow-control capacity is released; a call replies once every
//! one of its records is written.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use h2::server::{Connection as H2Connection, Handshake};
use h2::{Ping, PingPong, Reason};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::calls::{Calls, Rpc};
use super::push::GrpcContext;
use super::wake::{ReadyQueue, WakeState};
use crate::config::GrpcLimits;
use crate::net::h2_io::H2Io;
use crate::net::stream::{Stream, TlsFailure};
use crate::net::waker::waker_for;
use crate::protocol::grpc::{self, Code, Preface, Status};
use crate::storage::ConnKey;

/// Request data taken from one connection per `drive`, so one busy client cannot starve the
/// others on the loop (the TCP side reads 256 KiB per turn for the same reason).
const DRIVE_BUDGET: usize = 256 * 1024;

/// What the loop does with the connection after [`GrpcConnection::drive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// Keep it; drive it again on its next event, wake or deadline.
    Open,
    /// Finished: deregister it and drop it.
    Closed,
    /// Not HTTP/2 (an HTTP/1.1 request line, or bytes nothing speaks): deregister it and take
    /// its socket and first bytes with [`GrpcConnection::into_http1`] for an HTTP session on
    /// the loop's ordinary slab (`server::session::http`).
    Http1,
}

enum State {
    /// Reading the first bytes: the HTTP/2 preface, or not.
    Detecting {
        stream: Stream,
        first: Vec<u8>,
    },
    Handshake(Handshake<H2Io, Bytes>),
    Serving(H2Connection<H2Io, Bytes>),
    /// Only while one state is being replaced by the next.
    Switching,
}

/// Keepalive: when the peer was last heard, and the PING we are waiting on.
struct Keepalive {
    pings: Option<PingPong>,
    /// The adapter's count of bytes read, and its value at the last look.
    bytes_read: Arc<AtomicU64>,
    bytes_seen: u64,
    last_heard: Instant,
    ping_sent: Option<Instant>,
}

/// One accepted gRPC socket, from its first byte to its close.
pub struct GrpcConnection {
    key: ConnKey,
    peer: SocketAddr,
    fd: RawFd,
    limits: GrpcLimits,
    state: State,
    closed: bool,
    wake: Arc<WakeState>,
    conn_waker: Waker,
    calls: Calls,
    created: Instant,
    /// When the last call ended (`None` while calls are open).
    idle_since: Option<Instant>,
    keepalive: Keepalive,
    /// Set by `begin_shutdown`: when the grace ends.
    shutdown_at: Option<Instant>,
    /// Unfinished input last counted for the loop (`recount`).
    counted: usize,
    /// On a TLS port: when an unfinished TLS handshake is closed (`server::tls`).
    tls_deadline: Option<Instant>,
}

impl GrpcConnection {
    /// Takes an accepted socket (plain or TLS: detection sees the decrypted bytes). Nothing is
    /// read until the first [`drive`](Self::drive). A TLS handshake not finished
    /// `tls_timeout` after now is closed.
    pub fn new(
        stream: Stream,
        key: ConnKey,
        peer: SocketAddr,
        limits: &GrpcLimits,
        ready: ReadyQueue,
        tls_timeout: std::time::Duration,
    ) -> GrpcConnection {
        let now = Instant::now();
        let tls_deadline = stream.is_tls().then(|| now + tls_timeout);
        let wake = Arc::new(WakeState::new(key, ready));
        GrpcConnection {
            key,
            peer,
            fd: stream.tcp().as_raw_fd(),
            limits: limits.clone(),
            state: State::Detecting {
                stream,
                first: Vec::new(),
            },
            closed: false,
            conn_waker: waker_for(wake.clone(), None),
            calls: Calls::new(key, peer, wake.clone(), limits),
            wake,
            created: now,
            idle_since: Some(now),
            keepalive: Keepalive {
                pings: None,
                bytes_read: Arc::new(AtomicU64::new(0)),
                bytes_seen: 0,
                last_heard: now,
                ping_sent: None,
            },
            shutdown_at: None,
            counted: 0,
            tls_deadline,
        }
    }

    /// The loop says, before a drive, whether the input budget has room for this connection's
    /// unfinished messages to grow (`InputBudget::may_grow`): if not, flow-control capacity for
    /// their bytes is withheld until it has. Without a call, it has.
    pub fn set_may_grow(&mut self, may_grow: bool) {
        self.calls.may_grow = may_grow;
    }

    /// Unfinished input this connection holds (module doc, "Unfinished input").
    pub fn held(&mut self) -> usize {
        self.calls.held()
    }

    /// Counts what the connection holds now; returns what was counted before and now, for the
    /// loop's share of the input budget.
    pub fn recount(&mut self) -> (usize, usize) {
        let now = if self.closed { 0 } else { self.held() };
        (std::mem::replace(&mut self.counted, now), now)
    }

    /// What [`recount`](Self::recount) last counted.
    pub fn counted(&self) -> usize {
        self.counted
    }

    /// Closes the connection to keep within the input budget: each call holding unfinished
    /// input fails with RESOURCE_EXHAUSTED (records of its complete messages are still stored),
    /// then GOAWAY with ENHANCE_YOUR_CALM. The next `drive` flushes them and reports `Closed`.
    pub fn shed(&mut self, cx: &mut GrpcContext<'_>) {
        let held = self.counted;
        let status = Status::new(
            Code::ResourceExhausted,
            format!(
                "the server's memory for unfinished input (--max-input) is full and this \
                 connection held the most ({held} bytes of unfinished messages)"
            ),
        );
        let slots: Vec<usize> = self
            .calls
            .slots
            .iter_mut()
            .filter(|(_, c)| !c.answered)
            .filter_map(|(slot, c)| (c.held() > 0).then_some(slot))
            .collect();
        for slot in slots {
            self.calls.fail(slot, status.clone(), cx);
        }
        match &mut self.state {
            State::Serving(conn) => conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM),
            // Not yet HTTP/2: nothing of a call is held, and there is no one to tell.
            _ => self.closed = true,
        }
        self.wake.wake(false);
    }

    /// Calls whose capacity was withheld while the budget was full: polled again at the next
    /// drive, which releases it if there is room now. Returns whether there were any.
    pub fn regrant(&mut self) -> bool {
        let before = self.calls.due.len();
        self.calls.due.extend(
            self.calls
                .slots
                .iter()
                .filter(|(_, c)| c.withheld > 0)
                .map(|(slot, _)| slot),
        );
        let any = self.calls.due.len() > before;
        if any {
            self.wake.wake(false);
        }
        any
    }

    pub fn key(&self) -> ConnKey {
        self.key
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// What `status` shows of it (`apps::connections`).
    pub fn row(&self) -> Option<crate::apps::connections::Row> {
        self.calls.entry.row(self.peer)
    }

    /// Registers the socket with `registry` for READABLE | WRITABLE (edge-triggered: a WRITABLE
    /// event comes only when a full send buffer drains, which is when `h2` is waiting for it).
    ///
    /// # Errors
    /// The error from `epoll_ctl`.
    pub fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.fd),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// Deregisters the socket; call it before dropping the connection.
    ///
    /// # Errors
    /// The error from `epoll_ctl`.
    pub fn deregister(&self, registry: &Registry) -> io::Result<()> {
        registry.deregister(&mut SourceFd(&self.fd))
    }

    /// The writer wrote `count` more of this connection's records, the last with sequence
    /// number `last_seq`. Completions must be passed in the order the writer made them.
    /// Replies that became due are sent by the next `drive`, for which this re-queues the
    /// connection.
    pub fn completed(&mut self, count: u64, last_seq: u64) {
        self.calls.completed(count, last_seq);
        self.wake.wake(false);
    }

    /// Starts a graceful shutdown: GOAWAY, so the client opens no new calls here; open calls go
    /// on (health watches end with UNAVAILABLE) for up to `shutdown_grace`, then the connection
    /// closes. Re-queues the connection: `h2` sends the GOAWAY in the next `drive`.
    pub fn begin_shutdown(&mut self) {
        if self.shutdown_at.is_some() {
            return;
        }
        self.shutdown_at = Some(Instant::now() + self.limits.shutdown_grace);
        if let State::Serving(conn) = &mut self.state {
            conn.graceful_shutdown();
        }
        self.calls
            .due
            .extend(self.calls.slots.iter().map(|(slot, _)| slot));
        self.wake.wake(false);
    }

    /// The earliest time at which [`drive`](Self::drive) has a timer to handle, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let handshake = self.created + self.limits.handshake_timeout;
        match &self.state {
            State::Detecting { stream, .. } if stream.handshaking() => Some(
                self.tls_deadline
                    .map_or(handshake, |tls| tls.min(handshake)),
            ),
            State::Detecting { .. } | State::Handshake(_) | State::Switching => Some(handshake),
            State::Serving(_) => {
                let keepalive = match self.keepalive.ping_sent {
                    Some(sent) => sent + self.limits.keepalive_timeout,
                    None => self.keepalive.last_heard + self.limits.keepalive_interval,
                };
                let idle = match (self.idle_since, self.limits.idle_timeout) {
                    (Some(since), Some(idle)) if self.shutdown_at.is_none() => Some(since + idle),
                    _ => None,
                };
                let handshake = (!self.client_settings_seen()).then_some(handshake);
                [
                    Some(keepalive),
                    idle,
                    handshake,
                    self.shutdown_at,
                    self.calls.next_watch_check,
                ]
                .into_iter()
                .chain(self.calls.slots.iter().map(|(_, c)| c.deadline))
                .flatten()
                .min()
            }
        }
    }

    /// Does everything that can be done now; see the module documentation for when to call it.
    pub fn drive(&mut self, cx: &mut GrpcContext<'_>) -> Drive {
        if self.closed {
            return Drive::Closed;
        }
        // While driving, wakes only set `woken`; they are handled by another round below.
        self.wake.queued.store(true, Ordering::SeqCst);
        let mut budget = DRIVE_BUDGET;
        let mut requeue = false;
        let mut result = Drive::Open;
        for _ in 0..64 {
            self.wake.woken.store(false, Ordering::SeqCst);
            let now = Instant::now();
            let step = match self.state {
                // Shutting down: a connection that has not even spoken HTTP/2 yet is let go.
                State::Detecting { .. } if self.shutdown_at.is_some() => Drive::Closed,
                State::Detecting { .. } => self.detect(cx, now),
                State::Handshake(_) => self.handshake(cx, now),
                State::Serving(_) => self.serve(cx, now, &mut budget, &mut requeue),
                State::Switching => unreachable!("a state switch never outlives its function"),
            };
            if step == Drive::Http1 {
                // The socket leaves this port; nothing of HTTP/2 was started.
                self.wake.queued.store(false, Ordering::SeqCst);
                return Drive::Http1;
            }
            if step == Drive::Closed {
                result = Drive::Closed;
                break;
            }
            if requeue || !self.wake.woken.load(Ordering::SeqCst) {
                break;
            }
        }
        if result == Drive::Closed {
            self.closed = true;
            self.calls.slots.clear();
            self.calls.due.clear();
            return Drive::Closed;
        }
        self.wake.queued.store(false, Ordering::SeqCst);
        // A wake from another thread after the last look, or work left over: go round again.
        if requeue || self.wake.woken.load(Ordering::SeqCst) {
            self.wake.wake(false);
        }
        Drive::Open
    }

    // -----------------------------------------------------------------------------------------
    // Before HTTP/2
    // -----------------------------------------------------------------------------------------

    /// More than the preface and a frame header received: the client's SETTINGS has begun.
    fn client_settings_seen(&self) -> bool {
        self.keepalive.bytes_seen >= (grpc::PREFACE.len() + 9) as u64
    }

    fn handshake_expired(&self, now: Instant, cx: &GrpcContext<'_>, what: &str) -> bool {
        if now < self.created + self.limits.handshake_timeout {
            return false;
        }
        cx.log.info(format_args!(
            "gRPC connection from {}: no {what} within {:?}; closed",
            self.peer, self.limits.handshake_timeout
        ));
        true
    }

    fn detect(&mut self, cx: &mut GrpcContext<'_>, now: Instant) -> Drive {
        let State::Detecting { stream, first } = &mut self.state else {
            unreachable!("detect runs in Detecting");
        };
        let mut buf = [0u8; 64];
        let decided = loop {
            match grpc::detect_preface(first) {
                Preface::Incomplete => {}
                decided => break decided,
            }
            let want = grpc::PREFACE.len() - first.len();
            match stream.read(&mut buf[..want]) {
                Ok(0) => return Drive::Closed,
                Ok(n) => first.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if stream.handshaking() && self.tls_deadline.is_some_and(|at| now >= at) {
                        let timeout = cx.shared.tls().handshake_timeout();
                        let why = format!("not finished within {}s", timeout.as_secs_f64());
                        let (stats, log) = (cx.shared.stats(), cx.log);
                        cx.shared
                            .tls()
                            .handshake_failed(self.peer, &why, stats, log);
                        return Drive::Closed;
                    }
                    return if self.handshake_expired(now, cx, "HTTP/2 preface") {
                        Drive::Closed
                    } else {
                        Drive::Open
                    };
                }
                Err(e) => {
                    if let Some(why) = TlsFailure::of(&e) {
                        if matches!(why, TlsFailure::NotTls(_)) {
                            // A plain client: a clean close, not a reset.
                            stream.discard_waiting(1024 * 1024);
                        }
                        let (stats, log) = (cx.shared.stats(), cx.log);
                        cx.shared.tls().handshake_failed(self.peer, why, stats, log);
                    }
                    return Drive::Closed;
                }
            }
        };
        if decided != Preface::Http2 {
            // The state stays `Detecting`: `into_http1` takes the socket and these bytes.
            return Drive::Http1;
        }
        let State::Detecting { stream, first } =
            std::mem::replace(&mut self.state, State::Switching)
        else {
            unreachable!("detect runs in Detecting");
        };
        let mut builder = h2::server::Builder::new();
        builder
            .max_concurrent_streams(self.limits.max_concurrent_streams)
            .max_header_list_size(self.limits.max_header_list)
            .initial_window_size(self.limits.stream_window)
            .initial_connection_window_size(self.limits.connection_window)
            .max_frame_size(64 * 1024)
            .max_send_buffer_size(64 * 1024);
        let io = H2Io::over(stream, first);
        self.keepalive.bytes_read = io.bytes_read();
        self.state = State::Handshake(builder.handshake(io));
        self.wake.woken.store(true, Ordering::SeqCst);
        Drive::Open
    }

    /// After [`Drive::Http1`]: the socket and the bytes detection read from it (the start of an
    /// HTTP/1.1 request, or garbage, which the HTTP session answers with `400`). Deregister the
    /// connection first. `None` once HTTP/2 has begun.
    pub fn into_http1(self) -> Option<(Stream, Vec<u8>)> {
        match self.state {
            State::Detecting { stream, first } => Some((stream, first)),
            _ => None,
        }
    }

    fn handshake(&mut self, cx: &mut GrpcContext<'_>, now: Instant) -> Drive {
        let State::Handshake(handshake) = &mut self.state else {
            unreachable!("handshake runs in Handshake");
        };
        let mut task = Context::from_waker(&self.conn_waker);
        match Pin::new(handshake).poll(&mut task) {
            Poll::Ready(Ok(mut conn)) => {
                self.keepalive.pings = conn.ping_pong();
                self.keepalive.last_heard = now;
                if self.shutdown_at.is_some() {
                    conn.graceful_shutdown();
                }
                self.state = State::Serving(conn);
                self.wake.woken.store(true, Ordering::SeqCst);
                Drive::Open
            }
            Poll::Ready(Err(e)) => {
                cx.log.warn(format_args!(
                    "gRPC connection from {}: HTTP/2 handshake failed: {e}",
                    self.peer
                ));
                Drive::Closed
            }
            Poll::Pending if self.handshake_expired(now, cx, "HTTP/2 handshake") => Drive::Closed,
            Poll::Pending => Drive::Open,
        }
    }

    // -----------------------------------------------------------------------------------------
    // HTTP/2
    // -----------------------------------------------------------------------------------------

    fn serve(
        &mut self,
        cx: &mut GrpcContext<'_>,
        now: Instant,
        budget: &mut usize,
        requeue: &mut bool,
    ) -> Drive {
        if self.timers(cx, now) == Drive::Closed {
            return Drive::Closed;
        }
        // Advance the connection: read frames, dispatch them to streams (waking their wakers),
        // flush what the streams queued. `h2` moves only inside `poll_accept`, so it is called
        // until Pending on every drive.
        let waker = self.conn_waker.clone();
        let mut task = Context::from_waker(&waker);
        loop {
            let State::Serving(conn) = &mut self.state else {
                unreachable!("serve runs in Serving");
            };
            match conn.poll_accept(&mut task) {
                Poll::Ready(Some(Ok((request, respond)))) => {
                    if self
                        .calls
                        .start(request, respond, now, cx.shared, cx.log, self.peer)
                    {
                        self.idle_since = None;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    if !e.is_io() || !is_disconnect(e.get_io()) {
                        cx.log.info(format_args!(
                            "gRPC connection from {}: closed: {e}",
                            self.peer
                        ));
                    }
                    return Drive::Closed;
                }
                Poll::Ready(None) => return Drive::Closed,
                Poll::Pending => break,
            }
        }
        if let (Some(pings), Some(_)) = (&mut self.keepalive.pings, self.keepalive.ping_sent)
            && pings.poll_pong(&mut task).is_ready()
        {
            self.keepalive.ping_sent = None;
        }
        // The calls that woke, and those with something due.
        let mut slots = std::mem::take(&mut self.calls.due);
        self.wake.take_streams(&mut slots);
        slots.sort_unstable();
        slots.dedup();
        let shutting_down = self.shutdown_at.is_some();
        for slot in slots {
            self.calls.poll(slot, cx, now, budget, shutting_down);
        }
        self.calls.limit_partial(cx);
        if !self.calls.due.is_empty() {
            *requeue = true;
        }
        if self.calls.slots.is_empty() {
            self.idle_since.get_or_insert(now);
        }
        Drive::Open
    }

    fn timers(&mut self, cx: &mut GrpcContext<'_>, now: Instant) -> Drive {
        if !matches!(self.state, State::Serving(_)) {
            return Drive::Open;
        }
        if let Some(at) = self.shutdown_at
            && now >= at
        {
            cx.log.info(format_args!(
                "gRPC connection from {}: {} still open after the shutdown grace; closed",
                self.peer,
                crate::storage::server_log::count(self.calls.slots.len() as u64, "call")
            ));
            return Drive::Closed;
        }
        // Keepalive: any byte from the peer counts as a sign of life.
        let bytes = self.keepalive.bytes_read.load(Ordering::Relaxed);
        if bytes != self.keepalive.bytes_seen {
            self.keepalive.bytes_seen = bytes;
            self.keepalive.last_heard = now;
        }
        // `h2`'s handshake ends with the preface; the client's preface also has a SETTINGS
        // frame, which must come within the handshake timeout too.
        if !self.client_settings_seen() && self.handshake_expired(now, cx, "SETTINGS frame") {
            return Drive::Closed;
        }
        match self.keepalive.ping_sent {
            Some(sent) if now >= sent + self.limits.keepalive_timeout => {
                if self.keepalive.last_heard <= sent {
                    cx.log.info(format_args!(
                        "gRPC connection from {}: nothing received for {:?}, not even the answer \
                         to a keepalive PING; closed",
                        self.peer,
                        self.limits.keepalive_interval + self.limits.keepalive_timeout
                    ));
                    return Drive::Closed;
                }
                // Heard from since the PING, if not its answer yet: alive.
                self.keepalive.ping_sent = None;
            }
            None if now >= self.keepalive.last_heard + self.limits.keepalive_interval => {
                // A PING provokes an answer; any byte received counts as one. If the previous
                // PING is still unanswered, `send_ping` refuses a second, and the wait goes on.
                if let Some(pings) = &mut self.keepalive.pings
                    && pings.send_ping(Ping::opaque()).is_err()
                {
                    // Still waiting for the previous PONG.
                }
                self.keepalive.ping_sent = Some(now);
            }
            _ => {}
        }
        if let (Some(since), Some(idle), None) =
            (self.idle_since, self.limits.idle_timeout, self.shutdown_at)
            && now >= since + idle
        {
            cx.log.info(format_args!(
                "gRPC connection from {}: no call for {}s (--idle-timeout); GOAWAY",
                self.peer,
                idle.as_secs()
            ));
            self.begin_shutdown();
        }
        for (slot, call) in &mut self.calls.slots {
            if call.deadline.is_some_and(|d| now >= d) {
                self.calls.due.push(slot);
            }
        }
        if let Some(at) = self.calls.next_watch_check
            && now >= at
        {
            self.calls.next_watch_check = None;
            self.calls.due.extend(
                self.calls
                    .slots
                    .iter()
                    .filter(|(_, c)| c.method == Rpc::HealthWatch)
                    .map(|(slot, _)| slot),
            );
        }
        Drive::Open
    }
}

/// A connection reset or a closed pipe is how clients leave; not worth a log line.
fn is_disconnect(e: Option<&io::Error>) -> bool {
    e.is_some_and(|e| {
        matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        )
    })
}
