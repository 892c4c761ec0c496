//! The gRPC side of one event loop as a unit: its handle on the gRPC listener, the slab of
//! [`GrpcConnection`]s, the [`ReadyQueue`] their wakers fill, and the routing of events, wakes,
//! deadlines and the writer's completions to them.
//!
//! The loop (`server::event_loop`) holds one [`GrpcPort`] and calls it at a few points of its
//! turn; `tests/grpc_driver.rs` drives the same methods with a test writer:
//!
//! ```text
//! poll timeout   <── port.has_ready(), port.next_deadline()
//! listener event ──> port.accept(..) until Accepted::Done; drive each new connection
//! event for a token where GrpcPort::owns(token) ──> port.drive(token, ..)
//! a drive that says Driven::take_http1() ──> the loop adopts the socket (server::session::http)
//! each turn      ──> port.collect_due(now); while let Some(t) = port.next_due() { drive(t) }
//! a Completion whose key GrpcPort::owns ──> port.completed(key, count, last_seq)
//! shutdown       ──> port.close_listener(..); port.begin_shutdown(); drive until port.is_empty()
//!                    (port.tokens()); port.close_all(..) at the deadline
//! input budget   ──> port.victims(), port.shed(token, ..), port.regrant()
//! ```
//!
//! Driving is one connection at a time and returns to the loop after each ([`Driven`]), so the
//! loop can account the connection's unfinished input and shed (which may touch this port)
//! between two drives, exactly as it does for TCP connections. What the port does not own: the
//! batch, the input budget's figures, the connection count limit's log line, and when to send
//! the batch to the writer; those are the loop's.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::lifecycle::{Drive, GrpcConnection};
use super::push::GrpcContext;
use super::wake::ReadyQueue;
use crate::apps::connections::Row;
use crate::config::GrpcLimits;
use crate::net::socket::tune_socket;
use crate::net::stream::Stream;
use crate::server::shared::Shared;
use crate::server::tls::Alpn;
use crate::storage::ConnKey;
use crate::storage::server_log::ServerLog;

/// gRPC connections' tokens (and their `ConnKey::token`s) start here, so events and writer
/// completions are routed to this port rather than to the loop's TCP slab by range.
const GRPC_BASE: usize = 1 << 40;

/// The gRPC listener and connections of one loop.
pub struct GrpcPort {
    listener: Option<TcpListener>,
    conns: Slab<GrpcConnection>,
    ready: ReadyQueue,
    limits: GrpcLimits,
    /// Tells a reused slab slot from the connection that had it before (`ConnKey::serial`).
    next_serial: u64,
    /// Connections to drive this turn, last first (`collect_due`, `next_due`).
    due: Vec<ConnKey>,
}

/// What one [`GrpcPort::accept`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A new connection, registered: drive it (data may already be waiting).
    Conn(Token),
    /// Over `max_connections`: the socket was closed; the loop logs the refusal.
    Refused(SocketAddr),
    /// Accepted but could not be registered (logged); accept again.
    Skipped,
    /// Nothing more to accept now (`WouldBlock`, no listener, or an error that was logged).
    Done,
}

/// What one [`GrpcPort::drive`] did, for the loop's share of the input budget.
#[derive(Debug)]
pub struct Driven {
    closed: bool,
    before: usize,
    now: usize,
    /// What the connection counted, when it closed (for the loop's traffic figures).
    last_row: Option<Row>,
    /// Not HTTP/2: the connection left this port (deregistered, not counted as closed).
    http1: Option<Http1>,
}

/// A connection that did not send the HTTP/2 preface, handed to the loop for an HTTP session
/// (`server::session::http`): its socket, its peer and the bytes detection read.
#[derive(Debug)]
pub struct Http1 {
    pub stream: Stream,
    pub peer: SocketAddr,
    pub first: Vec<u8>,
}

impl Driven {
    /// The connection closed and was removed (and deregistered).
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// What a closed connection counted (its `status` entry), if it was listed.
    pub fn take_last_row(&mut self) -> Option<Row> {
        self.last_row.take()
    }

    /// A connection that speaks HTTP/1.1 (or nothing known), for the loop to adopt.
    pub fn take_http1(&mut self) -> Option<Http1> {
        self.http1.take()
    }

    /// Unfinished input the connection held before the drive and holds now.
    pub fn held(&self) -> (usize, usize) {
        (self.before, self.now)
    }
}

impl GrpcPort {
    /// A port serving `listener` (none: this loop serves no gRPC), registered with `registry`
    /// under `listener_token`. `notify` must make the loop's `poll` return (e.g.
    /// `shared.mailbox(id).wake()`): wakers call it for wakes from other threads.
    ///
    /// # Errors
    /// The error registering the listener.
    pub fn new(
        mut listener: Option<TcpListener>,
        registry: &Registry,
        listener_token: Token,
        limits: GrpcLimits,
        notify: impl Fn() + Send + Sync + 'static,
    ) -> io::Result<GrpcPort> {
        if let Some(l) = &mut listener {
            registry.register(l, listener_token, Interest::READABLE)?;
        }
        Ok(GrpcPort {
            listener,
            conns: Slab::new(),
            ready: ReadyQueue::new(notify),
            limits,
            next_serial: 0,
            due: Vec::new(),
        })
    }

    /// Whether an event token or a completion's `ConnKey::token` belongs to this port.
    pub fn owns(token: usize) -> bool {
        token >= GRPC_BASE
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Some connection woke and waits to be driven: the loop should not sleep in `poll`.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The earliest timer of any connection (handshake, keepalive, `grpc-timeout`, ...).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .iter()
            .filter_map(|(_, c)| c.next_deadline())
            .min()
    }

    /// Accepts one connection, within `max_connections` like TCP ones (counted in
    /// `shared.stats()`). Call it until [`Accepted::Done`].
    pub fn accept(
        &mut self,
        registry: &Registry,
        shared: &Shared,
        log: &ServerLog,
        max_connections: usize,
    ) -> Accepted {
        let Some(listener) = &self.listener else {
            return Accepted::Done;
        };
        let (stream, peer) = loop {
            match listener.accept() {
                Ok(pair) => break pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Accepted::Done,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log.error(format_args!(
                        "gRPC accept failed: {e}; retrying (raise `ulimit -n` if this is EMFILE)"
                    ));
                    return Accepted::Done;
                }
            }
        };
        let total = shared.stats().connection_opened();
        if total > max_connections {
            shared.stats().connection_closed();
            return Accepted::Refused(peer); // dropping `stream` closes it
        }
        if let Err(e) = tune_socket(&stream) {
            log.warn(format_args!(
                "gRPC connection from {peer}: cannot set keepalive: {e}"
            ));
        }
        // TLS (ALPN http/1.1, h2) when the server has a certificate: detection below sees the
        // decrypted bytes.
        let stream = match shared.tls().stream(Alpn::Http, stream) {
            Ok(stream) => stream,
            Err(e) => {
                shared.stats().connection_closed();
                log.error(format_args!(
                    "gRPC connection from {peer}: cannot start TLS: {e}"
                ));
                return Accepted::Skipped;
            }
        };
        let entry = self.conns.vacant_entry();
        let key = ConnKey {
            token: GRPC_BASE + entry.key(),
            serial: self.next_serial,
        };
        self.next_serial += 1;
        let conn = GrpcConnection::new(
            stream,
            key,
            peer,
            &self.limits,
            self.ready.clone(),
            shared.tls().handshake_timeout(),
        );
        if let Err(e) = conn.register(registry, Token(key.token)) {
            shared.stats().connection_closed();
            log.error(format_args!(
                "gRPC connection from {peer}: cannot register: {e}"
            ));
            return Accepted::Skipped;
        }
        entry.insert(conn);
        Accepted::Conn(Token(key.token))
    }

    /// Advances one connection (`may_grow`: the input budget has room for its unfinished
    /// messages to grow); removes it, deregistered by raw descriptor, once it is closed.
    /// `None` if no such connection is open.
    pub fn drive(
        &mut self,
        token: Token,
        cx: &mut GrpcContext<'_>,
        registry: &Registry,
        may_grow: bool,
    ) -> Option<Driven> {
        let index = token.0.checked_sub(GRPC_BASE)?;
        let conn = self.conns.get_mut(index)?;
        conn.set_may_grow(may_grow);
        let drive = conn.drive(cx);
        let (before, now) = conn.recount();
        let mut driven = Driven {
            closed: false,
            before,
            now,
            last_row: None,
            http1: None,
        };
        match drive {
            Drive::Open => {}
            Drive::Closed => {
                let conn = self.conns.remove(index);
                if let Err(e) = conn.deregister(registry) {
                    cx.log.warn(format_args!("deregister gRPC connection: {e}"));
                }
                cx.shared.stats().connection_closed();
                driven.closed = true;
                driven.last_row = conn.row();
            }
            Drive::Http1 => {
                // Still one open connection (counted at accept), now the loop's.
                let conn = self.conns.remove(index);
                let peer = conn.peer();
                if let Err(e) = conn.deregister(registry) {
                    cx.log.warn(format_args!("deregister gRPC connection: {e}"));
                }
                driven.http1 = conn.into_http1().map(|(stream, first)| Http1 {
                    stream,
                    peer,
                    first,
                });
                if driven.http1.is_none() {
                    cx.shared.stats().connection_closed();
                    driven.closed = true;
                }
            }
        }
        Some(driven)
    }

    /// Gathers the connections to drive this turn: those that woke, and those whose timer is
    /// due at `now`; each once, in token order. Take them with [`next_due`](Self::next_due).
    pub fn collect_due(&mut self, now: Instant) {
        self.ready.take(&mut self.due);
        for (_, conn) in &self.conns {
            if conn.next_deadline().is_some_and(|at| at <= now) {
                self.due.push(conn.key());
            }
        }
        // Last first, so `pop` hands them out in token order.
        self.due
            .sort_unstable_by_key(|k| std::cmp::Reverse((k.token, k.serial)));
        self.due.dedup();
    }

    /// The next connection collected by [`collect_due`](Self::collect_due) that is still
    /// open (a slot may have closed, or been reused, since).
    pub fn next_due(&mut self) -> Option<Token> {
        while let Some(key) = self.due.pop() {
            if self
                .conns
                .get(key.token - GRPC_BASE)
                .is_some_and(|c| c.key() == key)
            {
                return Some(Token(key.token));
            }
        }
        None
    }

    /// The writer wrote `count` more records of connection `key` (if still open), the last
    /// with sequence number `last_seq`. The connection queues itself; its replies go out when
    /// it is next driven.
    pub fn completed(&mut self, key: ConnKey, count: u64, last_seq: u64) {
        if let Some(conn) = key
            .token
            .checked_sub(GRPC_BASE)
            .and_then(|index| self.conns.get_mut(index))
            && conn.key() == key
        {
            conn.completed(count, last_seq);
        }
    }

    /// Every open connection, to drive them all (the shutdown drain).
    pub fn tokens(&self) -> Vec<Token> {
        self.conns
            .iter()
            .map(|(index, _)| Token(GRPC_BASE + index))
            .collect()
    }

    /// Stops accepting: deregisters and closes the listener.
    pub fn close_listener(&mut self, registry: &Registry, log: &ServerLog) {
        if let Some(mut listener) = self.listener.take()
            && let Err(e) = registry.deregister(&mut listener)
        {
            log.warn(format_args!("deregister gRPC listener: {e}"));
        }
    }

    /// GOAWAY on every connection: calls in flight finish, no new ones start.
    pub fn begin_shutdown(&mut self) {
        for (_, conn) in &mut self.conns {
            conn.begin_shutdown();
        }
    }

    /// Closes every connection left (the shutdown deadline passed).
    pub fn close_all(&mut self, registry: &Registry, shared: &Shared, log: &ServerLog) {
        for conn in self.conns.drain() {
            if let Err(e) = conn.deregister(registry) {
                log.warn(format_args!("deregister gRPC connection: {e}"));
            }
            shared.stats().connection_closed();
        }
    }

    /// Calls whose flow-control capacity was withheld while the input budget was full take it
    /// at their next drive (the budget has room again).
    pub fn regrant(&mut self) {
        for (_, conn) in &mut self.conns {
            conn.regrant();
        }
    }

    /// Connections holding unfinished input: (bytes last counted, token), for the loop to
    /// choose whom to shed.
    pub fn victims(&self) -> impl Iterator<Item = (usize, Token)> + '_ {
        self.conns
            .iter()
            .filter(|(_, c)| c.counted() > 0)
            .map(|(index, c)| (c.counted(), Token(GRPC_BASE + index)))
    }

    /// What `status` shows of each connection (`apps::connections`).
    pub fn rows(&self) -> impl Iterator<Item = crate::apps::connections::Row> + '_ {
        self.conns.iter().filter_map(|(_, conn)| conn.row())
    }

    /// The peer of connection `token`, for the loop's log lines.
    pub fn peer(&self, token: Token) -> Option<SocketAddr> {
        let index = token.0.checked_sub(GRPC_BASE)?;
        self.conns.get(index).map(GrpcConnection::peer)
    }

    /// Sheds connection `token` to keep within the input budget (`GrpcConnection::shed`);
    /// returns the unfinished input it held before and holds now.
    pub fn shed(&mut self, token: Token, cx: &mut GrpcContext<'_>) -> (usize, usize) {
        let Some(conn) = token
            .0
            .checked_sub(GRPC_BASE)
            .and_then(|index| self.conns.get_mut(index))
        else {
            return (0, 0);
        };
        conn.shed(cx);
        conn.recount()
    }
}
