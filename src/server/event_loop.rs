//! One event loop: a mio `Poll`, a slab of connections, and nothing but moving bytes.
//!
//! A turn of the loop:
//! 1. `poll` for events (timeout 0 while connections still have unread input, else up to a tick).
//! 2. Accept new connections; mark readable connections ready; send pending output on writable
//!    ones; on the waker, collect the writer's completions.
//! 3. Serve the ready list: read each connection, up to a budget so one busy client cannot starve
//!    the others, and decode what arrived into this loop's batch.
//! 4. Send the batch to the writer (one channel message per turn, not per record), and the acks.
//!
//! What a connection does with its bytes (buffers, detection, its protocol's session, output,
//! the lingering close) is `server::connection`'s; the loop only decides whom to serve when.
//!
//! Readiness is edge-triggered, so every read, write and accept runs until `WouldBlock`, or the
//! connection stays on the ready list until it does. When the writer's pending bytes are full
//! the loop stops reading (the ready list waits) and TCP flow control pushes back on clients.
//!
//! Who is connected (`logmill status`): each connection keeps its own entry
//! (`apps::connections::Entry`), bumped on the record path; the loop copies them to its slot of
//! the shared board when something changed, at most every `PUBLISH_EVERY`
//! ([`EventLoop::publish_connections`]), never per record.
//!
//! Unfinished input (frame tails, gRPC messages being assembled) is counted after every read and
//! every gRPC drive against the input budget (`--max-input`, `server::budget`); when it is full
//! the loop sheds its connections holding the most ([`EventLoop::shed`]).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::budget::Pressure;
use super::connection::{Connection, FlushError, READ_CHUNK};
use super::grpc::{Accepted, GrpcContext, GrpcPort, Http1};
use super::session::events::STREAM_EVERY;
use super::session::http::web::Web;
use super::session::{Context, Session};
use super::shared::Shared;
use super::ship::{ShipPort, ShipSettings};
use super::tls::Alpn;
use super::traffic::{Counts, Traffic};
use crate::apps::connections::PUBLISH_EVERY;
use crate::config::{self, Config, GrpcLimits};
use crate::protocol::datagram::{self, Datagram};
use crate::protocol::detect::{self, Detect, Protocol};
use crate::storage::line::LineFormatter;
use crate::storage::server_log::ServerLog;
use crate::storage::{BatchBuilder, Command, ConnKey};

pub const SHIP_LISTENER: Token = Token(usize::MAX - 4);
pub const GRPC_LISTENER: Token = Token(usize::MAX - 3);
pub const UDP: Token = Token(usize::MAX - 2);
pub const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX);

/// The sockets a loop serves: its handles on the shared listeners, and (loop 0) the UDP socket;
/// and what the HTTP/1.1 connections of the gRPC socket share (`server::session::http`).
pub struct Sockets {
    pub tcp: TcpListener,
    pub grpc: Option<TcpListener>,
    pub udp: Option<mio::net::UdpSocket>,
    pub web: Arc<Web>,
    /// The logship receiver's listener and this loop's link to the ship writer (`--no-ship`:
    /// none).
    pub ship: Option<(TcpListener, crate::storage::ship::Link)>,
}

/// Bytes read from one connection per turn before the next connection gets its turn.
const READ_BUDGET: usize = 256 * 1024;
/// Send the batch to the writer once it holds this much, even in the middle of a turn, so a
/// batch never grows far beyond what one turn reads.
const BATCH_BYTES: usize = 512 * 1024;
/// Accepts per turn: the listener is shared by all loops, so stopping early lets idle loops take
/// their share of a burst of connections.
const ACCEPT_BUDGET: usize = 64;
/// Datagrams read per turn before connections get their turn again.
const DATAGRAM_BUDGET: usize = 1024;
/// Refused datagrams (`--auth required`) are logged the first time, then at most this often.
const DATAGRAM_REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(60);
/// How often idle timeouts and retried accepts are checked when nothing else happens.
const TICK: Duration = Duration::from_millis(500);

pub struct EventLoop {
    id: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    /// The listener may have connections left (budget reached or accept failed, e.g. EMFILE).
    accept_more: bool,
    /// `--udp-port` (loop 0 only), and whether it may have datagrams waiting.
    udp: Option<mio::net::UdpSocket>,
    udp_ready: bool,
    conns: Slab<Connection>,
    ready: VecDeque<usize>,
    scratch: Vec<u8>,
    batch: BatchBuilder,
    writer: Sender<Command>,
    shared: Arc<Shared>,
    log: Arc<ServerLog>,
    next_serial: u64,
    max_frame: u32,
    /// The longest line stored as one record (`--max-line`).
    max_line: usize,
    max_connections: usize,
    idle_timeout: Option<Duration>,
    shutdown_timeout: Duration,
    last_tick: Instant,
    /// When the streaming sessions (Server-Sent Events) last had their turn, and how many
    /// there were then (while any, the loop wakes every `STREAM_EVERY`).
    last_stream: Instant,
    streams: usize,
    refusals_logged_at: Option<Instant>,
    /// When a header timeout was last logged (one line a second at most).
    header_timeouts_logged_at: Option<Instant>,
    /// `--auth required`: when a refused datagram was last logged (the first, then once a minute).
    datagram_refusals_logged_at: Option<Instant>,
    /// Connections this loop accepted, logged at exit: shows how the shared listener spread them.
    accepted: u64,
    /// The gRPC side: its own listener and connections, since h2 owns their sockets.
    grpc: GrpcPort,
    /// The logship receiver: its own listener and connections (`server::ship`).
    ship: ShipPort,
    /// Unfinished input this loop's connections hold: its part of the input budget.
    input_held: usize,
    /// The most one TCP connection holds: one frame (or line) and its header.
    input_cap: usize,
    /// Inside `shed`: what it frees must not start another shed.
    shedding: bool,
    /// A connection came or went, or bytes were read, since the board was last published.
    board_dirty: bool,
    published_at: Instant,
    /// The HTTP side of the gRPC port (`server::session::http`): what its sessions share.
    web: Arc<Web>,
    /// What this loop's closed connections (and datagrams) received, for `/metrics`; the live
    /// connections' figures are added when it is published (`server::traffic`).
    traffic: Traffic,
}

/// A connection to shed: a TCP token or a gRPC one.
#[derive(Debug, Clone, Copy)]
enum Victim {
    Tcp(usize),
    Grpc(Token),
}

impl EventLoop {
    /// Builds loop `id` around its `poll` (whose waker is in `shared.mailbox(id)`) and its
    /// handle on the shared listener.
    ///
    /// # Errors
    /// The error registering the listener.
    pub fn new(
        id: usize,
        poll: Poll,
        sockets: Sockets,
        config: &Config,
        writer: Sender<Command>,
        shared: Arc<Shared>,
        log: Arc<ServerLog>,
    ) -> io::Result<EventLoop> {
        let Sockets {
            tcp: mut listener,
            grpc: grpc_listener,
            mut udp,
            web,
            ship,
        } = sockets;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        if let Some(socket) = &mut udp {
            poll.registry().register(socket, UDP, Interest::READABLE)?;
        }
        let notify = shared.clone();
        let grpc = GrpcPort::new(
            grpc_listener,
            poll.registry(),
            GRPC_LISTENER,
            GrpcLimits::from_config(config),
            move || notify.mailbox(id).wake(),
        )?;
        let ship = ShipPort::new(
            id,
            ship,
            poll.registry(),
            SHIP_LISTENER,
            ShipSettings::new(
                config.ship_host_in_filename,
                config.ship_timeout,
                config.max_connections,
            ),
            shared.clone(),
            log.clone(),
        )?;
        Ok(EventLoop {
            id,
            poll,
            ship,
            listener: Some(listener),
            accept_more: true,
            udp_ready: udp.is_some(),
            udp,
            conns: Slab::new(),
            ready: VecDeque::new(),
            // One read's worth (small enough that a read and the batch it turns into stay in L2
            // cache together), then room for the rest of a frame the read cut (see
            // `Connection::read_from_socket`); at least a UDP datagram.
            scratch: vec![0; (READ_CHUNK + config.max_frame as usize + 4).max(64 * 1024)],
            batch: BatchBuilder::new(
                id,
                LineFormatter::new(config.format),
                shared.handoff().next_seq(),
            ),
            writer,
            shared,
            log,
            next_serial: 0,
            max_frame: config.max_frame,
            max_line: config.max_line,
            max_connections: config.max_connections,
            idle_timeout: config.idle_timeout,
            shutdown_timeout: config.shutdown_timeout,
            last_tick: Instant::now(),
            last_stream: Instant::now(),
            streams: 0,
            refusals_logged_at: None,
            header_timeouts_logged_at: None,
            datagram_refusals_logged_at: None,
            accepted: 0,
            grpc,
            input_held: 0,
            input_cap: config::min_max_input(config.max_frame, config.max_line),
            shedding: false,
            board_dirty: false,
            published_at: Instant::now(),
            web,
            traffic: Traffic::default(),
        })
    }

    /// Runs until shutdown, then stores what was received and tells the writer it is done.
    ///
    /// # Errors
    /// A failing `poll`, which leaves the loop unable to work.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if self.has_work() {
                Duration::ZERO
            } else {
                // gRPC connections keep their own timers (handshake, keepalive, grpc-timeout).
                let now = Instant::now();
                let timeout = self
                    .grpc
                    .next_deadline()
                    .map_or(TICK, |at| at.saturating_duration_since(now).min(TICK));
                let timeout = if self.streams > 0 {
                    let turn_at = self.last_stream + STREAM_EVERY;
                    timeout.min(turn_at.saturating_duration_since(now))
                } else {
                    timeout
                };
                if self.board_dirty {
                    let publish_at = self.published_at + PUBLISH_EVERY;
                    timeout.min(publish_at.saturating_duration_since(now))
                } else {
                    timeout
                }
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_more = true,
                    UDP => self.udp_ready = true,
                    GRPC_LISTENER => self.accept_grpc(),
                    SHIP_LISTENER => self.accept_ship(),
                    WAKER => {}
                    Token(token) if GrpcPort::owns(token) => self.drive_grpc(Token(token)),
                    Token(token) if ShipPort::owns(token) => {
                        self.ship.event(Token(token), self.poll.registry());
                    }
                    Token(token) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.mark_ready(token);
                        }
                        if event.is_writable() {
                            self.send_output(token);
                        }
                    }
                }
            }
            if self.shared.is_shutting_down() {
                return self.drain_and_stop();
            }
            self.take_completions();
            if self.shared.balance().take_hint(self.id) {
                // Another loop left new connections to this one, on either listener.
                self.accept_more = true;
                self.accept_grpc();
                self.accept_ship();
            }
            let input = self.shared.input();
            if input.take_hint(self.id) && input.over_share(self.input_held) {
                self.shed();
            }
            if self.accept_more {
                self.accept(false);
            }
            if self.udp_ready && !self.is_paused() {
                self.read_datagrams();
            }
            self.serve_ready(false);
            self.serve_grpc();
            // Shipping connections: the writer's answers, then reading within the queue caps.
            self.ship.take_replies(self.poll.registry());
            self.ship.serve(self.poll.registry());
            self.send_batch();
            if self.board_dirty && self.published_at.elapsed() >= PUBLISH_EVERY {
                self.publish_connections();
            }
            if self.last_stream.elapsed() >= STREAM_EVERY {
                self.turn_streams();
            }
            if self.last_tick.elapsed() >= TICK {
                self.tick();
            }
        }
    }

    /// Copies this loop's connections' entries to its slot of the board `status` and `health`
    /// read. Off the record path: at most every [`PUBLISH_EVERY`], and only after a change.
    fn publish_connections(&mut self) {
        self.board_dirty = false;
        self.published_at = Instant::now();
        let rows = self
            .conns
            .iter()
            .filter_map(|(_, conn)| conn.row())
            .chain(self.grpc.rows());
        self.shared.connections().publish(self.id, rows);
        // The metrics' figures: the closed connections', plus the live ones'.
        let mut traffic = self.traffic.clone();
        for (_, conn) in &self.conns {
            traffic.add_open(conn.kind(), 1);
            if let Some(row) = conn.row() {
                traffic.add_entry(row.entry());
            }
        }
        for row in self.grpc.rows() {
            traffic.add_entry(row.entry());
        }
        if !self.grpc.is_empty() {
            traffic.add_open("grpc", self.grpc.len() as u64);
        }
        self.shared.traffic().publish(self.id, traffic);
    }

    fn has_work(&self) -> bool {
        ((!self.ready.is_empty() || self.udp_ready || self.grpc.has_ready())
            && !self.shared.pending_full())
            || self.ship.has_ready()
            || (self.accept_more && self.conns.len() < self.max_connections)
    }

    /// Accepts up to a budget of new connections. In the `final_pass` of a shutdown it takes
    /// every connection the kernel has completed, whatever the balance: their clients may
    /// already have sent records, which count as received.
    fn accept(&mut self, final_pass: bool) {
        let budget = if final_pass {
            usize::MAX
        } else {
            ACCEPT_BUDGET
        };
        for _ in 0..budget {
            let Some(listener) = &self.listener else {
                return;
            };
            // Every loop is woken by a new connection; whichever is first would take most of
            // them (measured: 97 of 128 on one of two loops, leaving the other core half idle).
            // A loop with two more connections than the least loaded loop leaves the new one to
            // it: that loop never declines, and was woken by the same event.
            if let Some(fewest) = self.over_share().filter(|_| !final_pass) {
                // Its edge for these connections may be spent: tell it to accept anyway.
                self.shared.balance().hint(fewest);
                self.shared.mailbox(fewest).wake();
                self.accept_more = false;
                return;
            }
            let (stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_more = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the connection stays queued; retry at the next tick
                    // rather than spinning on an error that only time can clear.
                    self.log.error(format_args!(
                        "accept failed: {e}; retrying (raise `ulimit -n` if this is EMFILE)"
                    ));
                    self.accept_more = false;
                    return;
                }
            };
            let total = self.shared.stats().connection_opened();
            if total > self.max_connections {
                self.shared.stats().connection_closed();
                self.refuse(peer);
                continue; // dropping `stream` closes it
            }
            if let Err(e) = crate::net::socket::tune_socket(&stream) {
                self.log.warn(format_args!(
                    "connection from {peer}: cannot set keepalive: {e}"
                ));
            }
            // TLS when the server has a certificate (`server::tls`: one port, one mode).
            let stream = match self.shared.tls().stream(Alpn::None, stream) {
                Ok(stream) => stream,
                Err(e) => {
                    self.shared.stats().connection_closed();
                    self.log.error(format_args!(
                        "connection from {peer}: cannot start TLS: {e}"
                    ));
                    continue;
                }
            };
            let serial = self.next_serial;
            self.next_serial += 1;
            let entry = self.conns.vacant_entry();
            let token = entry.key();
            let mut conn = Connection::new(stream, ConnKey { token, serial }, peer);
            if let Err(e) = conn.register(self.poll.registry(), Token(token)) {
                self.shared.stats().connection_closed();
                self.log
                    .error(format_args!("connection from {peer}: cannot register: {e}"));
                continue;
            }
            entry.insert(conn);
            self.accepted += 1;
            self.publish_count();
            self.board_dirty = true;
            // Data may already be waiting; the edge for it may have come before registration.
            self.mark_ready(token);
        }
        // Budget used up: other loops (woken by the same event) take the rest, or we do next turn.
    }

    /// The loop to leave a new connection to, when it holds at least two connections fewer than
    /// this one.
    fn over_share(&self) -> Option<usize> {
        let mine = self.conns.len() + self.grpc.len() + self.ship.len();
        self.shared.balance().lighter_loop(self.id, mine)
    }

    /// Publishes this loop's connection count for [`EventLoop::over_share`] in other loops.
    fn publish_count(&self) {
        self.shared.balance().publish(
            self.id,
            self.conns.len() + self.grpc.len() + self.ship.len(),
        );
    }

    fn refuse(&mut self, peer: std::net::SocketAddr) {
        let refused = self.shared.stats().refused();
        // One line a second at most: a flood of refusals must not flood the log.
        let now = Instant::now();
        if self
            .refusals_logged_at
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            self.refusals_logged_at = Some(now);
            self.log.warn(format_args!(
                "refused connection from {peer}: --max-connections {} reached ({refused} refused so far)",
                self.max_connections
            ));
        }
    }

    fn mark_ready(&mut self, token: usize) {
        if let Some(conn) = self.conns.get_mut(token)
            && conn.enqueue()
        {
            self.ready.push_back(token);
        }
    }

    /// Reads every ready connection once (up to its budget). During shutdown `final_pass` reads
    /// everything already received, whatever the pending gauge says.
    fn serve_ready(&mut self, final_pass: bool) {
        let rounds = self.ready.len();
        for _ in 0..rounds {
            if !final_pass && self.is_paused() {
                self.serve_health_while_paused();
                return;
            }
            let Some(token) = self.ready.pop_front() else {
                return;
            };
            let budget = if final_pass { usize::MAX } else { READ_BUDGET };
            let drained = self.read(token, budget);
            if let Some(conn) = self.conns.get_mut(token) {
                if drained {
                    conn.dequeue();
                } else {
                    self.ready.push_back(token);
                }
            }
            if self.batch.bytes() >= BATCH_BYTES {
                self.send_batch();
            }
            self.send_output(token);
        }
    }

    /// While paused, connections that have not started a protocol are peeked at (not read), so a
    /// `health` check (or `status`) is still answered when the writer is stuck, which is when it
    /// matters most. HTTP connections are read: their requests (`/healthz`, `/metrics`, the
    /// admin API) make no records, and a probe must hear `503 DEGRADED` then.
    fn serve_health_while_paused(&mut self) {
        let http: Vec<usize> = self
            .ready
            .iter()
            .copied()
            .filter(|&t| {
                self.conns
                    .get(t)
                    .is_some_and(Connection::answers_while_paused)
            })
            .collect();
        for token in http {
            let drained = self.read(token, READ_BUDGET);
            if drained {
                self.ready.retain(|&t| t != token);
                if let Some(conn) = self.conns.get_mut(token) {
                    conn.dequeue();
                }
            }
            self.send_output(token);
        }
        let mut peeked = [0u8; 16];
        let detecting: Vec<usize> = self
            .ready
            .iter()
            .copied()
            .filter(|&t| self.conns.get(t).is_some_and(Connection::detecting))
            .collect();
        for token in detecting {
            let n = match self.conns[token].peek(&mut peeked) {
                Ok(n) => n,
                Err(_) => continue,
            };
            let health = matches!(
                detect::detect(&peeked[..n]),
                Detect::Decided {
                    protocol: Protocol::Health | Protocol::Status,
                    ..
                }
            );
            if health {
                self.read(token, READ_BUDGET);
                self.send_output(token);
            }
        }
    }

    /// True when the writer is full. Sets the mailbox flag so the writer wakes us when it has
    /// room, then checks again: the writer may have made room between the check and the flag.
    fn is_paused(&self) -> bool {
        if !self.shared.pending_full() {
            return false;
        }
        let mailbox = self.shared.mailbox(self.id);
        mailbox.pause();
        if self.shared.pending_full() {
            return true;
        }
        mailbox.unpause();
        false
    }

    /// Reads from `token` until `WouldBlock` (returns true) or until `budget` bytes (false), then
    /// counts its unfinished input against the budget.
    fn read(&mut self, token: usize, budget: usize) -> bool {
        let drained = self.read_input(token, budget);
        if let Some(conn) = self.conns.get_mut(token) {
            let (before, now) = conn.recount();
            self.account(before, now);
        }
        drained
    }

    fn read_input(&mut self, token: usize, budget: usize) -> bool {
        let Some(conn) = self.conns.get_mut(token) else {
            return true;
        };
        // Its bytes and records change what `status` shows.
        self.board_dirty = true;
        let mut cx = Context {
            batch: &mut self.batch,
            now_ns: now_ns(),
            max_frame: self.max_frame,
            max_line: self.max_line,
            shared: &self.shared,
            log: &self.log,
        };
        conn.read_from_socket(&mut self.scratch, budget, self.input_cap, &mut cx)
    }

    /// Reads datagrams until `WouldBlock` or the per-turn budget; each is one record.
    fn read_datagrams(&mut self) {
        let Some(socket) = &self.udp else {
            return;
        };
        // Datagrams have no connection: their records carry a key no connection has, so their
        // completions are simply dropped (UDP has no acks to send).
        let key = ConnKey {
            token: UDP.0,
            serial: 0,
        };
        let now_ns = now_ns();
        let origin = crate::storage::line::Origin::default();
        for _ in 0..DATAGRAM_BUDGET {
            let (n, peer) = match socket.recv_from(&mut self.scratch) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.udp_ready = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.log.warn(format_args!("udp receive failed: {e}"));
                    continue;
                }
            };
            if !self.shared.gate().admits_anonymous() {
                // A datagram cannot carry a token: under `--auth required` it is counted and
                // dropped undecoded; there is no one to tell but the log.
                let refused = self.shared.stats().count_refused_auth(None);
                let now = Instant::now();
                if self
                    .datagram_refusals_logged_at
                    .is_none_or(|at| now.duration_since(at) >= DATAGRAM_REFUSALS_LOGGED_EVERY)
                {
                    self.datagram_refusals_logged_at = Some(now);
                    self.log.warn(format_args!(
                        "udp datagram from {peer} refused: a datagram cannot carry an \
                         application token and this server requires one (--auth required); not \
                         stored ({} so far; logged at most once a minute)",
                        crate::storage::server_log::count(refused, "refusal")
                    ));
                }
                continue;
            }
            match datagram::decode(&self.scratch[..n]) {
                Datagram::Syslog(record) => self.batch.push(key, &record, &origin, now_ns),
                Datagram::Pickle(Ok(record)) => self.batch.push(key, &record, &origin, now_ns),
                Datagram::Pickle(Err(e)) => {
                    let count = self.shared.stats().decode_error(crate::stats::Decoder::Udp);
                    self.log.warn(format_args!(
                        "udp datagram from {peer} (Python DatagramHandler): pickle rejected \
                         ({e}); {} so far",
                        crate::storage::server_log::count(count, "decode error")
                    ));
                    continue;
                }
            }
            self.shared.stats().received(1);
            self.traffic.add(
                "udp",
                None,
                Counts {
                    records: 1,
                    bytes: n as u64,
                },
            );
            self.board_dirty = true;
        }
        self.send_batch();
    }

    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let spare = self.shared.mailbox(self.id).spare_batch();
        // The batch's sequence numbers, taken from the shared counter and printed here, where
        // the lines are still in this core's cache; the writer stores batches in number order.
        let count = self.batch.len() as u64;
        let first = self.shared.handoff().take_seq(count);
        let mut batch = self.batch.take(first + count, spare);
        batch.number(first);
        self.shared.handoff().pending().add(batch.cost());
        if self.writer.send(Command::Write(batch)).is_err() {
            // Only possible if the writer thread died, which `Server::run` reports; the records
            // stay unacknowledged, so clients that asked for acks know they were not stored.
            self.log.error(format_args!(
                "the writer thread is gone; records not stored"
            ));
        }
    }

    fn take_completions(&mut self) {
        let mailbox = self.shared.mailbox(self.id);
        let completions = mailbox.take_completions();
        if mailbox.is_paused() && !self.shared.pending_full() {
            mailbox.unpause();
        }
        let mut touched = Vec::new();
        for c in completions {
            if GrpcPort::owns(c.conn.token) {
                self.grpc.completed(c.conn, c.count, c.last_seq);
                continue;
            }
            if let Some(conn) = self.conns.get_mut(c.conn.token)
                && conn.key() == c.conn
            {
                conn.completed(c.count, c.last_seq);
                touched.push(c.conn.token);
            }
        }
        for token in touched {
            if let Some(conn) = self.conns.get_mut(token) {
                let held = conn.holds_input();
                conn.queue_ack();
                // A gRPC-Web call answered: the requests pipelined behind it are served now,
                // and the socket is read again (it was not while the call waited).
                let mut cx = Context {
                    batch: &mut self.batch,
                    now_ns: now_ns(),
                    max_frame: self.max_frame,
                    max_line: self.max_line,
                    shared: &self.shared,
                    log: &self.log,
                };
                if conn.resume(held, &mut cx) {
                    let (before, now) = conn.recount();
                    self.account(before, now);
                    self.mark_ready(token);
                }
            }
            self.send_output(token);
        }
    }

    /// Writes pending output of `token` until done or `WouldBlock`, keeps WRITABLE interest only
    /// while output is pending, and closes the connection once it is finished.
    fn send_output(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        match conn.flush_output(self.poll.registry(), Token(token)) {
            Ok(()) => {}
            Err(FlushError::SlowReader(unsent)) => self.log.warn(format_args!(
                "connection from {}: client does not read its acks ({unsent} bytes unsent); \
                 closing",
                conn.peer()
            )),
            Err(FlushError::Reregister(e)) => self.log.error(format_args!(
                "connection from {}: reregister: {e}",
                conn.peer()
            )),
        }
        if conn.finished() && !conn.linger() {
            self.close(token);
        }
    }

    fn close(&mut self, token: usize) {
        let mut conn = self.conns.remove(token);
        if let Some(row) = conn.row() {
            self.traffic.add_entry(row.entry());
        }
        self.account(conn.counted(), 0);
        self.publish_count();
        self.board_dirty = true;
        if let Err(e) = conn.deregister(self.poll.registry()) {
            self.log.warn(format_args!(
                "connection from {}: deregister: {e}",
                conn.peer()
            ));
        }
        self.shared.stats().connection_closed();
        // A token removed from the slab may still sit in the ready list; `read` skips it, and the
        // serial in `ConnKey` keeps a reused slot from being confused with this connection.
        if conn.is_queued() {
            self.ready.retain(|&t| t != token);
        }
    }

    /// Idle timeouts, retried accepts, and capacity withheld from gRPC calls while the input
    /// budget was full (another loop may have made room since).
    /// Gives every streaming session its turn (`server::session::events`) and sends what they
    /// queued. Off the record path: a few times a second, a check per connection.
    fn turn_streams(&mut self) {
        let now = Instant::now();
        self.last_stream = now;
        let mut streams = 0;
        let mut queued = Vec::new();
        for (token, conn) in self.conns.iter_mut() {
            if conn.stream(now) {
                queued.push(token);
            }
            streams += usize::from(conn.kind() == "events" && !conn.closing());
        }
        self.streams = streams;
        for token in queued {
            self.send_output(token);
        }
    }

    fn tick(&mut self) {
        self.last_tick = Instant::now();
        if self.listener.is_some() {
            self.accept_more = true;
        }
        if self.shared.input().may_grow(self.input_held) {
            self.grpc.regrant();
        }
        let now = Instant::now();
        let lingered: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.linger_expired(now))
            .map(|(t, _)| t)
            .collect();
        for token in lingered {
            self.close(token);
        }
        self.close_overdue(now);
        self.ship.tick(now, self.poll.registry());
        self.close_slow_handshakes(now);
        let Some(idle) = self.idle_timeout else {
            return;
        };
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.idle(now, idle))
            .map(|(t, _)| t)
            .collect();
        for token in expired {
            let conn = &mut self.conns[token];
            self.log.info(format_args!(
                "connection from {}: idle for {}s (--idle-timeout); closed",
                conn.peer(),
                idle.as_secs()
            ));
            conn.time_out(idle);
            self.send_output(token);
        }
    }

    /// Closes the connections whose TLS handshake did not finish in time (`server::tls`):
    /// counted and logged as failed handshakes.
    fn close_slow_handshakes(&mut self, now: Instant) {
        let timeout = self.shared.tls().handshake_timeout();
        if !self.shared.tls().enabled() {
            return;
        }
        let slow: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.handshake_overdue(now, timeout))
            .map(|(t, _)| t)
            .collect();
        for token in slow {
            let conn = &mut self.conns[token];
            let why = format!("not finished within {}s", timeout.as_secs_f64());
            self.shared
                .tls()
                .handshake_failed(conn.peer(), &why, self.shared.stats(), &self.log);
            conn.abort();
            self.send_output(token);
        }
    }

    /// Closes the connections whose session's own deadline passed: HTTP clients that did not
    /// finish a request head within `--header-timeout` (slowloris). Each is told (`408`),
    /// logged and counted.
    fn close_overdue(&mut self, now: Instant) {
        let overdue: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.overdue(now))
            .map(|(t, _)| t)
            .collect();
        let timeout = self.web.header_timeout;
        for token in overdue {
            let conn = &mut self.conns[token];
            let count = self.shared.stats().header_timeout();
            // One line a second at most: a crowd of slow clients must not flood the log.
            if self
                .header_timeouts_logged_at
                .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
            {
                self.header_timeouts_logged_at = Some(now);
                self.log.info(format_args!(
                    "HTTP connection from {}: request head not complete within {}s \
                     (--header-timeout); closed ({count} so far)",
                    conn.peer(),
                    timeout.as_secs_f64()
                ));
            }
            conn.time_out(timeout);
            self.send_output(token);
        }
    }

    /// Shutdown: stop accepting, store every complete frame already received, wait (bounded) for
    /// the writer to confirm them so acks can go out, then close everything.
    fn drain_and_stop(mut self) -> io::Result<()> {
        self.accept(true);
        if let Some(mut listener) = self.listener.take()
            && let Err(e) = self.poll.registry().deregister(&mut listener)
        {
            self.log.warn(format_args!("deregister listener: {e}"));
        }
        self.grpc.close_listener(self.poll.registry(), &self.log);
        self.ship.take_replies(self.poll.registry());
        self.ship.close_all(self.poll.registry());
        let tokens: Vec<usize> = self.conns.iter().map(|(t, _)| t).collect();
        for token in tokens {
            self.read(token, usize::MAX);
        }
        // GOAWAY: calls in flight finish, no new ones start.
        self.grpc.begin_shutdown();
        self.serve_grpc();
        self.ready.clear();
        self.send_batch();
        let deadline = Instant::now() + self.shutdown_timeout;
        let mut events = Events::with_capacity(256);
        while (self.conns.iter().any(|(_, c)| c.awaiting_writes()) || !self.grpc.is_empty())
            && Instant::now() < deadline
        {
            match self.poll.poll(&mut events, Some(Duration::from_millis(20))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.take_completions();
            for token in self.grpc.tokens() {
                self.drive_grpc(token);
            }
            self.send_batch();
        }
        self.grpc
            .close_all(self.poll.registry(), &self.shared, &self.log);
        let tokens: Vec<usize> = self.conns.iter().map(|(t, _)| t).collect();
        for token in tokens {
            if let Some(conn) = self.conns.get_mut(token) {
                conn.shut_down();
            }
            self.send_output(token);
        }
        self.log.info(format_args!(
            "event loop {} stopped; it accepted {}",
            self.id,
            crate::storage::server_log::count(self.accepted, "connection")
        ));
        // Whatever is still unsent is dropped with the sockets.
        if self.writer.send(Command::LoopDone(self.id)).is_err() {
            self.log
                .error(format_args!("the writer thread is gone at shutdown"));
        }
        Ok(())
    }
}

impl EventLoop {
    /// Accepts gRPC connections until `WouldBlock`, within `--max-connections` like TCP ones.
    fn accept_grpc(&mut self) {
        loop {
            // Balanced as the TCP port's connections are (see `accept`): every loop is woken,
            // and without this the first awake took 70% of a benchmark's gRPC and HTTP
            // connections, leaving the other core half idle.
            if let Some(fewest) = self.over_share() {
                self.shared.balance().hint(fewest);
                self.shared.mailbox(fewest).wake();
                return;
            }
            let registry = self.poll.registry();
            match self
                .grpc
                .accept(registry, &self.shared, &self.log, self.max_connections)
            {
                Accepted::Conn(token) => {
                    self.accepted += 1;
                    self.publish_count();
                    self.drive_grpc(token);
                }
                Accepted::Refused(peer) => self.refuse(peer),
                Accepted::Skipped => {}
                Accepted::Done => return,
            }
        }
    }

    /// Accepts shipping connections until `WouldBlock`, balanced across the loops as the other
    /// ports' are.
    fn accept_ship(&mut self) {
        loop {
            if let Some(fewest) = self.over_share() {
                self.shared.balance().hint(fewest);
                self.shared.mailbox(fewest).wake();
                return;
            }
            if !self.ship.accept(self.poll.registry()) {
                return;
            }
            self.accepted += 1;
            self.publish_count();
        }
    }

    /// Advances one gRPC connection, then accounts its unfinished input.
    fn drive_grpc(&mut self, token: Token) {
        let may_grow = self.shared.input().may_grow(self.input_held);
        self.board_dirty = true;
        let mut cx = GrpcContext {
            batch: &mut self.batch,
            now_ns: now_ns(),
            shared: &self.shared,
            log: &self.log,
        };
        let Some(mut driven) = self
            .grpc
            .drive(token, &mut cx, self.poll.registry(), may_grow)
        else {
            return;
        };
        if let Some(row) = driven.take_last_row() {
            self.traffic.add_entry(row.entry());
        }
        if driven.closed() {
            self.publish_count();
        }
        if let Some(http1) = driven.take_http1() {
            self.adopt_http1(http1);
        }
        let (before, now) = driven.held();
        self.account(before, now);
        if self.batch.bytes() >= BATCH_BYTES {
            self.send_batch();
        }
    }

    /// Takes a connection the gRPC port's detection found not to speak HTTP/2 onto the
    /// ordinary slab, with an HTTP session (`server::session::http`): from here on it is a connection
    /// like any other. It stays counted as open (it was counted at accept).
    fn adopt_http1(&mut self, http1: Http1) {
        let Http1 {
            stream,
            peer,
            first,
        } = http1;
        let serial = self.next_serial;
        self.next_serial += 1;
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        let mut cx = Context {
            batch: &mut self.batch,
            now_ns: now_ns(),
            max_frame: self.max_frame,
            max_line: self.max_line,
            shared: &self.shared,
            log: &self.log,
        };
        let session = Session::http(self.web.clone());
        let mut conn = Connection::adopt(
            stream,
            ConnKey { token, serial },
            peer,
            session,
            &first,
            &mut cx,
        );
        if let Err(e) = conn.register(self.poll.registry(), Token(token)) {
            self.shared.stats().connection_closed();
            self.log
                .error(format_args!("connection from {peer}: cannot register: {e}"));
            return;
        }
        entry.insert(conn);
        self.board_dirty = true;
        // The rest of the request may be waiting; its edge may have come before registration.
        self.mark_ready(token);
        self.send_output(token);
    }

    /// Drives the gRPC connections that woke and those whose timer is due. While the writer is
    /// full they take no request data (they re-queue themselves), so the loop marks itself
    /// paused to be woken when there is room.
    fn serve_grpc(&mut self) {
        if self.shared.pending_full() {
            // Sets the mailbox flag, so the writer wakes this loop once there is room again.
            self.is_paused();
        }
        self.grpc.collect_due(Instant::now());
        while let Some(token) = self.grpc.next_due() {
            self.drive_grpc(token);
        }
    }
}

impl EventLoop {
    /// A connection held `before` bytes of unfinished input and now holds `now`: updates this
    /// loop's part of the budget, and sheds (or asks the loops over their share to) when the
    /// budget is full.
    fn account(&mut self, before: usize, now: usize) {
        if before == now {
            return;
        }
        let was = self.input_held;
        self.input_held = was - before + now;
        let pressure = self.shared.input().update(self.id, was, self.input_held);
        if self.shedding || self.shared.is_shutting_down() {
            return;
        }
        match pressure {
            Pressure::Fine => {}
            Pressure::ShedHere => self.shed(),
            Pressure::ShedElsewhere => {
                let shared = &self.shared;
                shared
                    .input()
                    .hint_over_share(self.id, |id| shared.mailbox(id).wake());
            }
        }
    }

    /// Sheds this loop's connections holding the most unfinished input, largest first, while
    /// the budget says so (`server::budget`): each is told why (`Connection::shed`,
    /// `GrpcConnection::shed`), logged and counted. Only unfinished input is lost: records
    /// already complete are stored, and acked.
    fn shed(&mut self) {
        if self.shedding {
            return;
        }
        self.shedding = true;
        let mut victims: Vec<(usize, Victim)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.counted() > 0 && !c.closing())
            .map(|(token, c)| (c.counted(), Victim::Tcp(token)))
            .chain(
                self.grpc
                    .victims()
                    .map(|(held, token)| (held, Victim::Grpc(token))),
            )
            .collect();
        victims.sort_unstable_by_key(|&(held, _)| std::cmp::Reverse(held));
        for (held, victim) in victims {
            let input = self.shared.input();
            if !input.keep_shedding(self.input_held) {
                break;
            }
            let (total, max) = (input.total(), input.max());
            let (before, now) = match victim {
                Victim::Tcp(token) => {
                    let conn = &mut self.conns[token];
                    self.log.warn(format_args!(
                        "connection from {}: shed, holding {held} bytes of unfinished input, \
                         the most on its loop, while the server held {total} (--max-input \
                         {max}); its complete records are kept",
                        conn.peer()
                    ));
                    conn.shed();
                    conn.recount()
                }
                Victim::Grpc(token) => {
                    let Some(peer) = self.grpc.peer(token) else {
                        continue; // cannot happen: shedding closes no connection
                    };
                    self.log.warn(format_args!(
                        "gRPC connection from {}: shed (GOAWAY ENHANCE_YOUR_CALM), holding \
                         {held} bytes of unfinished messages, the most on its loop, while the \
                         server held {total} (--max-input {max}); its complete records are kept",
                        peer
                    ));
                    let mut cx = GrpcContext {
                        batch: &mut self.batch,
                        now_ns: now_ns(),
                        shared: &self.shared,
                        log: &self.log,
                    };
                    self.grpc.shed(token, &mut cx)
                }
            };
            self.shared.stats().count_shed();
            self.account(before, now);
            if let Victim::Tcp(token) = victim {
                self.send_output(token);
            }
        }
        self.shedding = false;
        // Room was made: calls whose capacity was withheld may take it now.
        self.grpc.regrant();
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
