//! One gRPC connection, driven by an event loop: protocol detection, HTTP/2 through `h2`, the
//! calls of `proto/logmill.proto` and `grpc.health.v1.Health`, and the timers `h2` does not have.
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
//! Each request message is decoded whole (prost), all its records are pushed to the batch, and
//! only then is its flow-control capacity released, so the client can never have more unread
//! data here than its HTTP/2 windows and the input budget allow. The connection keeps a FIFO of (call, records pushed); the
//! writer's completions arrive in the same order, so each one is credited to the calls at the
//! front. A call replies once its input has ended and every one of its records is written:
//! `PushResponse { accepted, first_seq, last_seq }`. If a call fails half-way (a bad message,
//! a deadline), the records of its earlier messages are still stored: the error says how many.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::{Connection as H2Connection, Handshake, SendResponse};
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use prost::Message as _;
use slab::Slab;

use super::shared::Shared;
use crate::config::GrpcLimits;
use crate::net::h2_io::H2Io;
use crate::net::waker::{Wakeable, waker_for};
use crate::protocol::grpc::health_v1::health_check_response::ServingStatus;
use crate::protocol::grpc::health_v1::{HealthCheckRequest, HealthCheckResponse};
use crate::protocol::grpc::logmill_v1::PushResponse;
use crate::protocol::grpc::{self, Code, Deframer, Encoding, FeedError, Preface, Status};
use crate::storage::line::Origin;
use crate::storage::server_log::ServerLog;
use crate::storage::{BatchBuilder, ConnKey};

/// Request data taken from one connection per `drive`, so one busy client cannot starve the
/// others on the loop (the TCP side reads 256 KiB per turn for the same reason).
const DRIVE_BUDGET: usize = 256 * 1024;
/// How long a client that sent something other than HTTP/2 gets to read our answer.
const HTTP1_LINGER: Duration = Duration::from_secs(2);
/// How often open health `Watch` calls look at the server's state.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Service names `grpc.health.v1.Health` knows: the whole server, and the log service.
const HEALTH_SERVICES: [&str; 2] = ["", "logmill.v1.LogService"];

// ---------------------------------------------------------------------------------------------
// Wake-ups
// ---------------------------------------------------------------------------------------------

/// The keys of connections that want to be driven, shared by one loop and its connections'
/// wakers. The loop drains it every turn ([`ReadyQueue::take`]).
#[derive(Clone)]
pub struct ReadyQueue {
    inner: Arc<ReadyInner>,
}

struct ReadyInner {
    keys: Mutex<Vec<ConnKey>>,
    /// Wakes the loop's `Poll` (its `mio::Waker`): needed only for a wake from another thread.
    notify: Box<dyn Fn() + Send + Sync>,
}

impl ReadyQueue {
    /// `notify` must make the loop's `poll` return (e.g. `shared.mailbox(id).wake()`).
    pub fn new(notify: impl Fn() + Send + Sync + 'static) -> ReadyQueue {
        ReadyQueue {
            inner: Arc::new(ReadyInner {
                keys: Mutex::new(Vec::new()),
                notify: Box::new(notify),
            }),
        }
    }

    /// Moves every queued key into `into` (appended; each connection appears once per wake).
    pub fn take(&self, into: &mut Vec<ConnKey>) {
        into.append(&mut self.lock());
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ConnKey>> {
        // A panic while holding this lock leaves a plain Vec behind: still usable.
        self.inner.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One connection's wake state, shared by its connection waker and its stream wakers.
struct WakeState {
    key: ConnKey,
    queue: ReadyQueue,
    /// The key is on the queue, or the connection is being driven (then `woken` is enough).
    queued: AtomicBool,
    /// Something woke since `drive` last looked.
    woken: AtomicBool,
    /// Calls (slab slots) whose stream woke: only these are polled, not every call.
    streams: Mutex<Vec<usize>>,
}

impl WakeState {
    /// Marks the connection woken and queues it unless it already is. `notify` is for wakes
    /// that may come from another thread; the loop's own re-queues skip the syscall, since the
    /// loop drains the queue before it polls.
    fn wake(&self, notify: bool) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.queued.swap(true, Ordering::SeqCst) {
            self.queue.lock().push(self.key);
            if notify {
                (self.queue.inner.notify)();
            }
        }
    }

    fn take_streams(&self, into: &mut Vec<usize>) {
        into.append(&mut self.streams.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The connection's waker (`None`) wakes the connection; a call's stream waker (`Some(slot)`)
/// records which call, then wakes the connection.
impl Wakeable for WakeState {
    fn wake_slot(&self, slot: Option<usize>) {
        if let Some(slot) = slot {
            self.streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(slot);
        }
        self.wake(true);
    }
}

// ---------------------------------------------------------------------------------------------
// The connection
// ---------------------------------------------------------------------------------------------

/// What [`GrpcConnection::drive`] needs from the loop.
pub struct GrpcContext<'a> {
    pub batch: &'a mut BatchBuilder,
    /// Stamps records that carry no time of their own.
    pub now_ns: u64,
    pub shared: &'a Shared,
    pub log: &'a ServerLog,
}

/// What the loop does with the connection after [`GrpcConnection::drive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// Keep it; drive it again on its next event, wake or deadline.
    Open,
    /// Finished: deregister it and drop it.
    Closed,
}

enum State {
    /// Reading the first bytes: the HTTP/2 preface, or not.
    Detecting {
        stream: TcpStream,
        first: Vec<u8>,
    },
    /// Not HTTP/2: sending the HTTP/1.1 answer, then reading until the peer closes.
    Http1 {
        stream: TcpStream,
        answer: Vec<u8>,
        sent: usize,
        linger_until: Instant,
    },
    Handshake(Handshake<H2Io, Bytes>),
    Serving(H2Connection<H2Io, Bytes>),
    /// Only while one state is being replaced by the next.
    Switching,
}

/// The methods served; any other path is `UNIMPLEMENTED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Push,
    PushStream,
    HealthCheck,
    HealthWatch,
}

/// One gRPC call (one HTTP/2 stream).
struct Call {
    method: Rpc,
    waker: Waker,
    recv: Option<RecvStream>,
    /// Until the response headers are sent.
    respond: Option<SendResponse<Bytes>>,
    /// After the response headers are sent (health `Watch`).
    send: Option<SendStream<Bytes>>,
    deframer: Deframer,
    encoding: Encoding,
    origin: Origin,
    deadline: Option<Instant>,
    messages: u64,
    /// Records pushed to the batch, and how many of them the writer has written.
    pushed: u64,
    written: u64,
    first_seq: Option<u64>,
    last_seq: u64,
    /// Bytes in `deframer` whose flow-control capacity is not released yet: withheld while the
    /// input budget is full.
    withheld: usize,
    /// The request body has ended (END_STREAM).
    input_done: bool,
    /// A final status was sent or the client cancelled: nothing more goes out.
    answered: bool,
    /// Health: the requested service, and what `Watch` sent last.
    service: Option<String>,
    watch_sent: Option<ServingStatus>,
}

impl Call {
    fn finished(&self) -> bool {
        self.answered && self.pushed == self.written
    }

    /// Drops the stream handles: `h2` then ends the stream (RST_STREAM(NO_ERROR) if the client
    /// was still sending after our final status).
    fn release(&mut self) {
        self.answered = true;
        self.deadline = None;
        self.recv = None;
        self.respond = None;
        self.send = None;
        self.deframer = Deframer::default();
        // Dropping `recv` gave `h2` back whatever was not released.
        self.withheld = 0;
    }

    /// Unfinished input this call holds: data `h2` buffered and we have not taken, and the
    /// part of a message being assembled.
    fn held(&mut self) -> usize {
        let unreleased = match &mut self.recv {
            Some(recv) => recv.flow_control().used_capacity(),
            None => 0,
        };
        // Withheld bytes are both in the deframer and unreleased: count them once.
        self.deframer.pending() + unreleased.saturating_sub(self.withheld)
    }
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

pub struct GrpcConnection {
    key: ConnKey,
    peer: SocketAddr,
    fd: RawFd,
    limits: GrpcLimits,
    state: State,
    closed: bool,
    wake: Arc<WakeState>,
    conn_waker: Waker,
    calls: Slab<Call>,
    /// (call slot, records) in the order they were pushed to the batch.
    fifo: VecDeque<(usize, u64)>,
    in_flight: u64,
    /// Calls to poll at the next `drive` whatever woke: replies due, stalled readers.
    due: Vec<usize>,
    created: Instant,
    /// When the last call ended (`None` while calls are open).
    idle_since: Option<Instant>,
    keepalive: Keepalive,
    /// Set by `begin_shutdown`: when the grace ends.
    shutdown_at: Option<Instant>,
    next_watch_check: Option<Instant>,
    /// Reused for gzip output.
    inflated: Vec<u8>,
    /// Unfinished input last counted for the loop (`recount`).
    counted: usize,
    /// The input budget has room for more unfinished input (`set_may_grow`).
    may_grow: bool,
}

/// A gzip output buffer larger than this is freed after use rather than kept for the next
/// message: kept on every connection, large ones would be memory no budget counts.
const KEEP_INFLATED: usize = 256 * 1024;

impl GrpcConnection {
    /// Takes an accepted socket. Nothing is read until the first [`drive`](Self::drive).
    pub fn new(
        stream: TcpStream,
        key: ConnKey,
        peer: SocketAddr,
        limits: &GrpcLimits,
        ready: ReadyQueue,
    ) -> GrpcConnection {
        let now = Instant::now();
        let wake = Arc::new(WakeState {
            key,
            queue: ready,
            queued: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
        });
        GrpcConnection {
            key,
            peer,
            fd: stream.as_raw_fd(),
            limits: limits.clone(),
            state: State::Detecting {
                stream,
                first: Vec::new(),
            },
            closed: false,
            conn_waker: waker_for(wake.clone(), None),
            wake,
            calls: Slab::new(),
            fifo: VecDeque::new(),
            in_flight: 0,
            due: Vec::new(),
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
            next_watch_check: None,
            inflated: Vec::new(),
            counted: 0,
            may_grow: true,
        }
    }

    /// The loop says, before a drive, whether the input budget has room for this connection's
    /// unfinished messages to grow (`InputBudget::may_grow`): if not, flow-control capacity for
    /// their bytes is withheld until it has. Without a call, it has.
    pub fn set_may_grow(&mut self, may_grow: bool) {
        self.may_grow = may_grow;
    }

    /// Unfinished input this connection holds (module doc, "Unfinished input").
    pub fn held(&mut self) -> usize {
        self.calls.iter_mut().map(|(_, call)| call.held()).sum()
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
            .iter_mut()
            .filter(|(_, c)| !c.answered)
            .filter_map(|(slot, c)| (c.held() > 0).then_some(slot))
            .collect();
        for slot in slots {
            self.fail(slot, status.clone(), cx);
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
        let before = self.due.len();
        self.due.extend(
            self.calls
                .iter()
                .filter(|(_, c)| c.withheld > 0)
                .map(|(slot, _)| slot),
        );
        let any = self.due.len() > before;
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
        // A completion covers a run of consecutive sequence numbers.
        let mut seq = last_seq.saturating_add(1).saturating_sub(count);
        let mut remaining = count.min(self.in_flight);
        self.in_flight -= remaining;
        while remaining > 0 {
            let Some((slot, pending)) = self.fifo.front_mut() else {
                break;
            };
            let n = (*pending).min(remaining);
            if let Some(call) = self.calls.get_mut(*slot) {
                call.first_seq.get_or_insert(seq);
                call.last_seq = seq + n - 1;
                call.written += n;
                self.due.push(*slot);
            }
            seq += n;
            remaining -= n;
            *pending -= n;
            if *pending == 0 {
                self.fifo.pop_front();
            }
        }
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
        self.due.extend(self.calls.iter().map(|(slot, _)| slot));
        self.wake.wake(false);
    }

    /// The earliest time at which [`drive`](Self::drive) has a timer to handle, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let handshake = self.created + self.limits.handshake_timeout;
        match &self.state {
            State::Detecting { .. } | State::Handshake(_) | State::Switching => Some(handshake),
            State::Http1 { linger_until, .. } => Some(*linger_until),
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
                    self.next_watch_check,
                ]
                .into_iter()
                .chain(self.calls.iter().map(|(_, c)| c.deadline))
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
                State::Http1 { .. } => self.http1(now),
                State::Handshake(_) => self.handshake(cx, now),
                State::Serving(_) => self.serve(cx, now, &mut budget, &mut requeue),
                State::Switching => unreachable!("a state switch never outlives its function"),
            };
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
            self.calls.clear();
            self.due.clear();
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
                    return if self.handshake_expired(now, cx, "HTTP/2 preface") {
                        Drive::Closed
                    } else {
                        Drive::Open
                    };
                }
                Err(_) => return Drive::Closed,
            }
        };
        let State::Detecting { stream, first } =
            std::mem::replace(&mut self.state, State::Switching)
        else {
            unreachable!("detect runs in Detecting");
        };
        if decided == Preface::Http2 {
            let mut builder = h2::server::Builder::new();
            builder
                .max_concurrent_streams(self.limits.max_concurrent_streams)
                .max_header_list_size(self.limits.max_header_list)
                .initial_window_size(self.limits.stream_window)
                .initial_connection_window_size(self.limits.connection_window)
                .max_frame_size(64 * 1024)
                .max_send_buffer_size(64 * 1024);
            let io = H2Io::new(stream, first);
            self.keepalive.bytes_read = io.bytes_read();
            self.state = State::Handshake(builder.handshake(io));
        } else {
            cx.log.warn(format_args!(
                "gRPC connection from {}: not HTTP/2 (first bytes {:?}); answered HTTP/1.1 and \
                 closed",
                self.peer,
                String::from_utf8_lossy(&first)
            ));
            self.state = State::Http1 {
                stream,
                answer: grpc::http1_answer(&first),
                sent: 0,
                linger_until: now + HTTP1_LINGER,
            };
        }
        self.wake.woken.store(true, Ordering::SeqCst);
        Drive::Open
    }

    fn http1(&mut self, now: Instant) -> Drive {
        let State::Http1 {
            stream,
            answer,
            sent,
            linger_until,
        } = &mut self.state
        else {
            unreachable!("http1 runs in Http1");
        };
        if now >= *linger_until {
            return Drive::Closed;
        }
        while *sent < answer.len() {
            match stream.write(&answer[*sent..]) {
                Ok(0) => return Drive::Closed,
                Ok(n) => {
                    *sent += n;
                    if *sent == answer.len() {
                        // FIN after the answer; then read until the client closes, so that
                        // unread request bytes do not turn our close into a reset that could
                        // destroy the answer before the client reads it.
                        if stream.shutdown(Shutdown::Write).is_err() {
                            return Drive::Closed;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drive::Open,
                Err(_) => return Drive::Closed,
            }
        }
        let mut sink = [0u8; 4096];
        loop {
            match stream.read(&mut sink) {
                Ok(0) => return Drive::Closed,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drive::Open,
                Err(_) => return Drive::Closed,
            }
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
                    self.start_call(request, respond, now);
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
        let mut slots = std::mem::take(&mut self.due);
        self.wake.take_streams(&mut slots);
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            self.poll_call(slot, cx, now, budget);
        }
        self.limit_partial(cx);
        if !self.due.is_empty() {
            *requeue = true;
        }
        if self.calls.is_empty() {
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
                crate::storage::server_log::count(self.calls.len() as u64, "call")
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
        for (slot, call) in &mut self.calls {
            if call.deadline.is_some_and(|d| now >= d) {
                self.due.push(slot);
            }
        }
        if let Some(at) = self.next_watch_check
            && now >= at
        {
            self.next_watch_check = None;
            self.due.extend(
                self.calls
                    .iter()
                    .filter(|(_, c)| c.method == Rpc::HealthWatch)
                    .map(|(slot, _)| slot),
            );
        }
        Drive::Open
    }

    fn start_call(
        &mut self,
        request: Request<RecvStream>,
        mut respond: SendResponse<Bytes>,
        now: Instant,
    ) {
        let (head, recv) = request.into_parts();
        // Not gRPC at all: plain HTTP answers, as the gRPC HTTP/2 protocol asks.
        let content_type = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes);
        let http_error = if head.method != Method::POST {
            Some(StatusCode::METHOD_NOT_ALLOWED)
        } else if !content_type.is_some_and(|t| t.starts_with(b"application/grpc")) {
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        } else {
            None
        };
        if let Some(status) = http_error {
            let mut response = Response::new(());
            *response.status_mut() = status;
            // The request is dropped unread; h2 resets the stream with NO_ERROR.
            if respond.send_response(response, true).is_err() {
                // The stream is already gone (the client reset it): nothing to tell.
            }
            return;
        }
        let method = match head.uri.path() {
            "/logmill.v1.LogService/Push" => Some(Rpc::Push),
            "/logmill.v1.LogService/PushStream" => Some(Rpc::PushStream),
            "/grpc.health.v1.Health/Check" => Some(Rpc::HealthCheck),
            "/grpc.health.v1.Health/Watch" => Some(Rpc::HealthWatch),
            _ => None,
        };
        let Some(method) = method else {
            let status = Status::new(
                Code::Unimplemented,
                format!(
                    "unknown method {}: this server has logmill.v1.LogService/Push, \
                     logmill.v1.LogService/PushStream, grpc.health.v1.Health/Check and \
                     grpc.health.v1.Health/Watch",
                    head.uri.path()
                ),
            );
            send_status(&mut Some(respond), &mut None, &status);
            return;
        };
        let timeout = head.headers.get("grpc-timeout").map(|v| v.as_bytes());
        let deadline = match timeout.map(grpc::parse_timeout) {
            None => None,
            Some(Some(timeout)) => Some(now + timeout),
            Some(None) => {
                let status = Status::new(
                    Code::Internal,
                    format!(
                        "malformed grpc-timeout {:?}: expected 1 to 8 digits and one of H M S m u n",
                        String::from_utf8_lossy(timeout.unwrap_or_default())
                    ),
                );
                send_status(&mut Some(respond), &mut None, &status);
                return;
            }
        };
        let text = |name: &str| {
            head.headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        };
        let entry = self.calls.vacant_entry();
        let slot = entry.key();
        entry.insert(Call {
            method,
            waker: waker_for(self.wake.clone(), Some(slot)),
            recv: Some(recv),
            respond: Some(respond),
            send: None,
            deframer: Deframer::default(),
            encoding: Encoding::from_header(
                head.headers.get("grpc-encoding").map(HeaderValue::as_bytes),
            ),
            origin: Origin::new(text("logmill-app"), text("logmill-instance")),
            deadline,
            messages: 0,
            pushed: 0,
            written: 0,
            first_seq: None,
            last_seq: 0,
            withheld: 0,
            input_done: false,
            answered: false,
            service: None,
            watch_sent: None,
        });
        self.idle_since = None;
        self.due.push(slot);
    }

    /// Moves one call forward: cancellation, deadline, request data, reply.
    fn poll_call(
        &mut self,
        slot: usize,
        cx: &mut GrpcContext<'_>,
        now: Instant,
        budget: &mut usize,
    ) {
        let Some(call) = self.calls.get_mut(slot) else {
            return;
        };
        let waker = call.waker.clone();
        let mut task = Context::from_waker(&waker);
        if !call.answered {
            let reset = match (&mut call.respond, &mut call.send) {
                (Some(respond), _) => respond.poll_reset(&mut task).is_ready(),
                (None, Some(send)) => send.poll_reset(&mut task).is_ready(),
                (None, None) => false,
            };
            if reset {
                call.release();
            } else if call.deadline.is_some_and(|d| now >= d) {
                let status = Status::new(
                    Code::DeadlineExceeded,
                    format!(
                        "deadline (grpc-timeout) passed before the call's records were all \
                         written ({} of {} so far; the rest will still be stored)",
                        call.written, call.pushed
                    ),
                );
                send_status(&mut call.respond, &mut call.send, &status);
                call.release();
            }
        }
        if !call.answered && call.recv.is_some() {
            self.read_call(slot, &mut task, cx, budget);
        }
        let Some(call) = self.calls.get_mut(slot) else {
            return;
        };
        // A health call is answered once its request message is in; one whose input ended
        // without a message was already failed by `read_call`.
        if !call.answered {
            match call.method {
                Rpc::Push | Rpc::PushStream => {
                    if call.input_done && call.written == call.pushed {
                        // A call with no records has no sequence numbers: both stay 0.
                        let reply = PushResponse {
                            accepted: call.pushed,
                            first_seq: call.first_seq.unwrap_or(0),
                            last_seq: call.last_seq,
                        };
                        send_reply(&mut call.respond, &reply);
                        call.release();
                    }
                }
                Rpc::HealthCheck => {
                    if let Some(service) = &call.service {
                        if HEALTH_SERVICES.contains(&service.as_str()) {
                            let status = serving_status(cx.shared, self.shutdown_at.is_some());
                            let reply = HealthCheckResponse {
                                status: status as i32,
                            };
                            send_reply(&mut call.respond, &reply);
                        } else {
                            let status =
                                Status::new(Code::NotFound, format!("unknown service {service:?}"));
                            send_status(&mut call.respond, &mut call.send, &status);
                        }
                        call.release();
                    }
                }
                Rpc::HealthWatch => {
                    if let Some(service) = &call.service {
                        let status = if !HEALTH_SERVICES.contains(&service.as_str()) {
                            ServingStatus::ServiceUnknown
                        } else {
                            serving_status(cx.shared, self.shutdown_at.is_some())
                        };
                        watch_update(call, status);
                        if self.shutdown_at.is_some() {
                            let status = Status::new(Code::Unavailable, "server is shutting down");
                            send_status(&mut call.respond, &mut call.send, &status);
                            call.release();
                        } else {
                            let next = now + WATCH_EVERY;
                            self.next_watch_check =
                                Some(self.next_watch_check.map_or(next, |at| at.min(next)));
                        }
                    }
                }
            }
        }
        if self.calls[slot].finished() {
            self.calls.remove(slot);
        }
    }

    /// Fails the calls holding the most unfinished message bytes while the connection holds more
    /// than [`GrpcLimits::max_partial`]: HTTP/2 windows bound what is unreleased, but capacity
    /// released for unfinished messages would otherwise let one connection hold a message on
    /// each of its calls.
    fn limit_partial(&mut self, cx: &mut GrpcContext<'_>) {
        let max = self.limits.max_partial();
        let mut partial: usize = self.calls.iter().map(|(_, c)| c.deframer.pending()).sum();
        while partial > max {
            let Some((slot, largest)) = self
                .calls
                .iter()
                .map(|(slot, c)| (slot, c.deframer.pending()))
                .max_by_key(|&(_, pending)| pending)
            else {
                return;
            };
            cx.shared.stats().count_shed();
            cx.log.warn(format_args!(
                "gRPC call from {}: {partial} bytes of unfinished messages on one connection, \
                 over its limit of {max}; the call holding {largest} failed with \
                 RESOURCE_EXHAUSTED",
                self.peer
            ));
            let status = Status::new(
                Code::ResourceExhausted,
                format!(
                    "this connection holds {partial} bytes of unfinished messages, over the \
                     server's limit of {max}; this call held the most"
                ),
            );
            self.fail(slot, status, cx);
            partial -= largest;
        }
    }

    /// Takes the call's request data: deframe, decode, push to the batch, then release the
    /// flow-control capacity of each chunk (only then may the client send more): at once for
    /// bytes of complete messages, and for bytes of an unfinished message only while the input
    /// budget has room (module doc, "Unfinished input").
    fn read_call(
        &mut self,
        slot: usize,
        task: &mut Context<'_>,
        cx: &mut GrpcContext<'_>,
        budget: &mut usize,
    ) {
        let max = self.limits.max_message();
        let grant = self.may_grow;
        if grant
            && let Some(call) = self.calls.get_mut(slot)
            && call.withheld > 0
            && let Some(recv) = &mut call.recv
        {
            if recv.flow_control().release_capacity(call.withheld).is_err() {
                // The stream is already closed; nothing more arrives on it.
            }
            call.withheld = 0;
        }
        loop {
            let call = &mut self.calls[slot];
            let pushes = matches!(call.method, Rpc::Push | Rpc::PushStream);
            if pushes && (cx.shared.pending_full() || *budget == 0) {
                // Backpressure or fairness: come back to this call at the next drive.
                self.due.push(slot);
                return;
            }
            let Some(recv) = &mut call.recv else {
                return;
            };
            let chunk = match recv.poll_data(task) {
                Poll::Pending => return,
                Poll::Ready(Some(Ok(chunk))) => chunk,
                Poll::Ready(Some(Err(_))) => {
                    // Reset by the client, or the connection failed: nobody to answer.
                    call.release();
                    return;
                }
                Poll::Ready(None) => {
                    call.input_done = true;
                    call.recv = None;
                    let problem = if call.deframer.pending() > 0 {
                        Some(format!(
                            "request body ended inside a message ({} bytes of it received)",
                            call.deframer.pending()
                        ))
                    } else if call.messages == 0
                        && matches!(call.method, Rpc::Push | Rpc::HealthCheck | Rpc::HealthWatch)
                    {
                        Some("unary call without a request message".to_string())
                    } else {
                        None
                    };
                    if let Some(problem) = problem {
                        self.fail(slot, Status::new(Code::Internal, problem), cx);
                    }
                    return;
                }
            };
            *budget = budget.saturating_sub(chunk.len());
            let result = self.take_chunk(slot, &chunk, max, cx);
            if self.inflated.capacity() > KEEP_INFLATED {
                self.inflated = Vec::new();
            }
            let call = &mut self.calls[slot];
            let unreleased = call.withheld + chunk.len();
            let keep = if grant {
                0
            } else {
                call.deframer.pending().min(unreleased)
            };
            call.withheld = keep;
            if let Some(recv) = &mut call.recv
                && recv
                    .flow_control()
                    .release_capacity(unreleased - keep)
                    .is_err()
            {
                // The stream is already closed; nothing more arrives on it.
            }
            if let Err(status) = result {
                self.fail(slot, status, cx);
                return;
            }
        }
    }

    /// Feeds one DATA chunk to the call's deframer and handles each complete message.
    fn take_chunk(
        &mut self,
        slot: usize,
        chunk: &[u8],
        max: usize,
        cx: &mut GrpcContext<'_>,
    ) -> Result<(), Status> {
        let call = &mut self.calls[slot];
        let Call {
            method,
            deframer,
            encoding,
            origin,
            messages,
            pushed,
            service,
            ..
        } = call;
        let key = self.key;
        let inflated = &mut self.inflated;
        let fifo = &mut self.fifo;
        let in_flight = &mut self.in_flight;
        let fed = deframer.feed(chunk, max, |compressed, payload| {
            *messages += 1;
            let payload = if compressed {
                match encoding {
                    Encoding::Gzip => {
                        grpc::gunzip(payload, max, inflated).map_err(|e| match e {
                            grpc::InflateError::TooLarge { .. } => {
                                Status::new(Code::ResourceExhausted, e.to_string())
                            }
                            grpc::InflateError::Corrupt(_) => {
                                Status::new(Code::Internal, e.to_string())
                            }
                        })?;
                        &inflated[..]
                    }
                    Encoding::Identity => {
                        return Err(Status::new(
                            Code::Internal,
                            "compressed flag set but the call has no grpc-encoding",
                        ));
                    }
                    Encoding::Unsupported(name) => {
                        return Err(Status::new(
                            Code::Unimplemented,
                            format!(
                                "grpc-encoding {name:?} is not supported; use one of {}",
                                grpc::ACCEPT_ENCODING
                            ),
                        ));
                    }
                }
            } else {
                payload
            };
            match method {
                Rpc::Push | Rpc::PushStream => {
                    if *method == Rpc::Push && *messages > 1 {
                        return Err(Status::new(
                            Code::Internal,
                            "Push is unary: one PushRequest per call (use PushStream for more)",
                        ));
                    }
                    let request = grpc::decode_push_request(payload).map_err(|e| {
                        Status::new(
                            Code::InvalidArgument,
                            format!("request message {messages} is not a valid PushRequest: {e}"),
                        )
                    })?;
                    // The hot path: one formatted line per record, appended to the loop's batch.
                    // prost has already allocated each non-empty string once while decoding;
                    // `to_record` only borrows them.
                    for record in &request.records {
                        cx.batch
                            .push(key, &grpc::to_record(record), origin, cx.now_ns);
                    }
                    let n = request.records.len() as u64;
                    if n > 0 {
                        match fifo.back_mut() {
                            Some((last, count)) if *last == slot => *count += n,
                            _ => fifo.push_back((slot, n)),
                        }
                        *pushed += n;
                        *in_flight += n;
                        cx.shared.stats().received(n);
                    }
                }
                Rpc::HealthCheck | Rpc::HealthWatch => {
                    if *messages > 1 {
                        return Err(Status::new(
                            Code::Internal,
                            "health calls take one HealthCheckRequest",
                        ));
                    }
                    let request = HealthCheckRequest::decode(payload).map_err(|e| {
                        Status::new(
                            Code::InvalidArgument,
                            format!("not a valid HealthCheckRequest: {e}"),
                        )
                    })?;
                    *service = Some(request.service);
                }
            }
            Ok(())
        });
        match fed {
            Ok(()) => Ok(()),
            Err(FeedError::Handler(status)) => Err(status),
            Err(FeedError::Message(e @ grpc::MessageError::TooLarge { .. })) => Err(Status::new(
                Code::ResourceExhausted,
                format!("{e} (the server's limit)"),
            )),
            Err(FeedError::Message(e)) => Err(Status::new(Code::Internal, e.to_string())),
        }
    }

    /// Ends a call with an error status; records it already pushed are still stored.
    fn fail(&mut self, slot: usize, mut status: Status, cx: &mut GrpcContext<'_>) {
        let call = &mut self.calls[slot];
        if call.pushed > 0 {
            status.message.push_str(&format!(
                "; the call's {} before this point {} stored",
                crate::storage::server_log::count(call.pushed, "record"),
                if call.pushed == 1 { "is" } else { "are" }
            ));
        }
        if status.code == Code::InvalidArgument {
            let count = cx.shared.stats().decode_error();
            cx.log.warn(format_args!(
                "gRPC call from {}: {}; {} so far",
                self.peer,
                status.message,
                crate::storage::server_log::count(count, "decode error")
            ));
        }
        send_status(&mut call.respond, &mut call.send, &status);
        call.release();
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

fn serving_status(shared: &Shared, shutting_down: bool) -> ServingStatus {
    if super::health::serving(shared, shutting_down) {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

fn response_head() -> Response<()> {
    let mut response = Response::new(());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-accept-encoding",
        HeaderValue::from_static(grpc::ACCEPT_ENCODING),
    );
    response
}

fn status_headers(status: &Status, headers: &mut HeaderMap) {
    headers.insert(
        "grpc-status",
        HeaderValue::from_static(status.code.as_str()),
    );
    if !status.message.is_empty()
        && let Ok(value) = HeaderValue::from_str(&grpc::percent_encode(&status.message))
    {
        headers.insert("grpc-message", value);
    }
}

/// Sends a final status: trailers after a started response, else a trailers-only response.
/// A stream the client already reset takes nothing; that is not an error here.
fn send_status(
    respond: &mut Option<SendResponse<Bytes>>,
    send: &mut Option<SendStream<Bytes>>,
    status: &Status,
) {
    if let Some(send) = send {
        let mut trailers = HeaderMap::new();
        status_headers(status, &mut trailers);
        if send.send_trailers(trailers).is_err() {
            // Reset by the client meanwhile.
        }
    } else if let Some(respond) = respond {
        let mut response = response_head();
        status_headers(status, response.headers_mut());
        if respond.send_response(response, true).is_err() {
            // Reset by the client meanwhile.
        }
    }
}

/// One reply message with its gRPC prefix: the body of a DATA frame.
fn framed(reply: &impl prost::Message) -> Bytes {
    let mut body = Vec::with_capacity(grpc::PREFIX_LEN + reply.encoded_len());
    grpc::encode_message(&reply.encode_to_vec(), &mut body);
    Bytes::from(body)
}

/// Sends one reply message and status OK.
fn send_reply(respond: &mut Option<SendResponse<Bytes>>, reply: &impl prost::Message) {
    let Some(respond) = respond else {
        return;
    };
    let Ok(mut send) = respond.send_response(response_head(), false) else {
        return;
    };
    if send.send_data(framed(reply), false).is_err() {
        return;
    }
    let mut trailers = HeaderMap::new();
    status_headers(&Status::new(Code::Ok, ""), &mut trailers);
    if send.send_trailers(trailers).is_err() {
        // Reset by the client meanwhile.
    }
}

/// Sends a health `Watch` update if the status changed since the last one.
fn watch_update(call: &mut Call, status: ServingStatus) {
    if call.watch_sent == Some(status) {
        return;
    }
    if call.send.is_none() {
        let Some(respond) = &mut call.respond else {
            return;
        };
        match respond.send_response(response_head(), false) {
            Ok(send) => call.send = Some(send),
            Err(_) => return,
        }
        call.respond = None;
    }
    let Some(send) = &mut call.send else {
        return;
    };
    let reply = HealthCheckResponse {
        status: status as i32,
    };
    if send.send_data(framed(&reply), false).is_ok() {
        call.watch_sent = Some(status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn state(notified: &Arc<AtomicUsize>) -> Arc<WakeState> {
        let n = notified.clone();
        Arc::new(WakeState {
            key: ConnKey {
                token: 3,
                serial: 9,
            },
            queue: ReadyQueue::new(move || {
                n.fetch_add(1, Ordering::SeqCst);
            }),
            queued: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
        })
    }

    #[test]
    fn a_wake_from_another_thread_queues_the_key_once_and_notifies() {
        let notified = Arc::new(AtomicUsize::new(0));
        let state = state(&notified);
        let waker = waker_for(state.clone(), Some(5));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let waker = waker.clone();
                s.spawn(move || waker.wake_by_ref());
            }
        });
        let mut keys = Vec::new();
        state.queue.take(&mut keys);
        assert_eq!(keys, vec![state.key], "queued once however many wakes");
        assert_eq!(notified.load(Ordering::SeqCst), 1);
        let mut slots = Vec::new();
        state.take_streams(&mut slots);
        assert_eq!(slots, vec![5; 4], "each wake names its stream");
    }

    #[test]
    fn wakes_while_driving_only_mark_the_connection() {
        let notified = Arc::new(AtomicUsize::new(0));
        let state = state(&notified);
        state.queued.store(true, Ordering::SeqCst); // what `drive` does first
        waker_for(state.clone(), None).wake();
        assert!(state.queue.is_empty());
        assert_eq!(notified.load(Ordering::SeqCst), 0);
        assert!(
            state.woken.load(Ordering::SeqCst),
            "drive sees it and goes round again"
        );
        // The loop's own re-queue skips the notify syscall.
        state.queued.store(false, Ordering::SeqCst);
        state.wake(false);
        assert!(!state.queue.is_empty());
        assert_eq!(notified.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_prefix_length_in_the_settings_is_the_protocol_s() {
        assert_eq!(crate::config::GRPC_PREFIX_LEN, grpc::PREFIX_LEN);
    }
}
