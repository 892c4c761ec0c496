//! The logship receiver on one event loop (issue 15): its handle on the ship listener
//! (`--ship-port`, default 7447), its connections, and their small state machine. The wire
//! protocol is `protocol::ship`; the files are the ship writer's (`storage::ship`), on its own
//! thread, so nothing here touches the disk.
//!
//! A connection's life:
//!
//! ```text
//! Name ──name line read and checked──> Opening ──writer: offset──> Streaming ──EOF──> closed
//!  │ (at most 256 bytes held)            │                            │ each read: Append
//!  │ bad name, no newline in 256 bytes,  │ busy, not a plain file,    │ idle --ship-timeout,
//!  │ name timeout                        │ bytes before the offset    │ a failed write
//!  └─────────────────────────────────────┴────────────────────────────┴──> Lingering ──> closed
//! ```
//!
//! Refusals are one line, `error: <why>\n` (`protocol::ship::error_line`), and a line in
//! `_server.log`; the socket is then shut for writing and read (and discarded) until the peer
//! closes or [`LINGER`] passes, so the line is not lost to a reset while the peer still sends.
//!
//! Backpressure: a connection stops reading while the bytes it handed the writer and the writer
//! has not yet written pass [`CONN_QUEUE`], and every connection of the loop does while the
//! loop's pass [`LOOP_QUEUE`]; the kernel's buffers then fill and TCP flow control slows the
//! transmitter. The writer's `Drained` replies start reading again. Only shipping connections
//! wait: the loop's other work never blocks on the disk.
//!
//! TLS (`--tls-cert`): the port speaks TLS only, as every TCP port (`server::tls`). A
//! connection is a `net::stream::Stream`: its reads drive the handshake and hand out plaintext,
//! so the states above see only the file's bytes; the offset and refusal lines go into rustls
//! and out when the socket takes them (WRITABLE interest while it holds some). A plain client
//! (its first byte not 0x16), a failed handshake or one not finished within the handshake
//! limit is counted and logged as on the other ports and closed without a line. Backpressure is
//! the same: a paused connection does not read, so neither rustls nor the kernel takes more.
//!
//! The loop (`server::event_loop`) calls: [`ShipPort::accept`] on the listener's event,
//! [`ShipPort::event`] for a token [`ShipPort::owns`], [`ShipPort::take_replies`] and
//! [`ShipPort::serve`] every turn, [`ShipPort::tick`] with its timer, [`ShipPort::close_all`]
//! at shutdown.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::shared::Shared;
use super::tls::Alpn;
use crate::net::socket::tune_socket;
use crate::net::stream::{Stream, TlsFailure};
use crate::protocol::ship::{self, MAX_NAME_LINE, Read};
use crate::storage::server_log::ServerLog;
use crate::storage::ship::{Link, OpenError, Reply, Request, ShipKey};

/// Ship connections' tokens start here: above the TCP slab's, below gRPC's (`1 << 40`).
const SHIP_BASE: usize = 1 << 39;
/// One read: large enough that shipping a big file costs few system calls and channel messages,
/// small enough that [`CONN_QUEUE`] holds several.
const CHUNK: usize = 256 * 1024;
/// Bytes one connection may have waiting for the writer before it stops reading.
pub const CONN_QUEUE: usize = 4 << 20;
/// Bytes all of a loop's connections may have waiting for the writer before they stop reading.
pub const LOOP_QUEUE: usize = 32 << 20;
/// Chunk buffers a loop keeps for reuse: a loop's queue's worth would be 128; a few cover a
/// connection's round trip to the writer without holding memory nobody uses.
const SPARE_BUFFERS: usize = 16;
/// Bytes read from one connection per turn before the others get theirs.
const READ_BUDGET: usize = 1 << 20;
/// One read of file bytes into `buf`. A plain socket's read takes what the kernel has (up to
/// the whole chunk); TLS hands out one record's plaintext (16 KiB at most) per read, so for it
/// reads go on until the chunk is full or nothing more is waiting, and the writer gets chunks
/// the size it gets from plain connections. What was read before an end or an error is
/// returned first; the end comes again at the next call, and an error is kept in `deferred`
/// for it (rustls may not say it twice).
fn fill(
    stream: &mut Stream,
    buf: &mut [u8],
    deferred: &mut Option<io::Error>,
) -> io::Result<usize> {
    if let Some(e) = deferred.take() {
        return Err(e);
    }
    let first = stream.read(buf)?;
    if first == 0 || !stream.is_tls() {
        return Ok(first);
    }
    let mut filled = first;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => {
                *deferred = Some(e);
                break;
            }
        }
    }
    Ok(filled)
}

/// Hands `line` (an offset or an error line, a few bytes) to the stream whole: a plain socket's
/// buffer has room for it (it is the first thing, or the second short line, this connection
/// sends); TLS takes it into its own buffer and sends what the socket takes, the rest when
/// the socket is writable ([`ShipPort::watch_writes`]).
fn send_line(stream: &mut Stream, line: &str) -> io::Result<()> {
    let mut rest = line.as_bytes();
    while !rest.is_empty() {
        match stream.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The refusal of bytes sent before the offset was answered.
const EARLY_DATA: &str =
    "data before the offset line: send the name, read the offset, then the file";
/// How long a refused connection is read and discarded after its error line, at most.
const LINGER: Duration = Duration::from_secs(2);
/// The longest a peer may take to send its name line (or less, with a shorter `--timeout`).
pub const NAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Adds the receiver's figures to a `status` JSON object (`apps::connections::status_json`) as
/// its `_ship` key: `{"connections":N,"files_created":N,"bytes":N,"refused":N}`, once the
/// receiver has seen a connection (a server nobody ships to answers as before). `logmill
/// status` prints them under its table.
pub fn add_status(json: &mut String, shared: &Shared) {
    let stats = shared.stats();
    let active = stats.ship_connections() > 0
        || stats.ship_bytes() > 0
        || stats.ship_files_created() > 0
        || stats.ship_refusals() > 0;
    if !active || !json.ends_with('}') {
        return;
    }
    json.pop();
    if json.len() > 1 {
        json.push(',');
    }
    json.push_str(&format!(
        "\"_ship\":{{\"connections\":{},\"files_created\":{},\"bytes\":{},\"refused\":{}}}}}",
        stats.ship_connections(),
        stats.ship_files_created(),
        stats.ship_bytes(),
        stats.ship_refusals()
    ));
}

/// Room [`add_status`] needs in a bounded answer.
pub const STATUS_ROOM: usize = 160;

/// The receiver's settings, one for all loops.
#[derive(Debug, Clone)]
pub struct ShipSettings {
    /// `--host-in-filename`: prefix the stored name with the transmitter's address.
    host_in_filename: bool,
    /// `--ship-timeout` (`ship rx --timeout`): close a connection silent this long.
    idle_timeout: Duration,
    max_connections: usize,
}

impl ShipSettings {
    pub fn new(host_in_filename: bool, idle_timeout: Duration, max_connections: usize) -> Self {
        ShipSettings {
            host_in_filename,
            idle_timeout,
            max_connections,
        }
    }

    fn name_timeout(&self) -> Duration {
        NAME_TIMEOUT.min(self.idle_timeout)
    }
}

/// Where a connection is in the protocol.
enum State {
    /// Reading the name line: what arrived so far (at most [`MAX_NAME_LINE`] bytes).
    Name { line: Vec<u8>, since: Instant },
    /// The writer is opening the stored name; a byte that arrives meanwhile is refused (the
    /// transmitter must wait for the offset).
    Opening { name: String },
    /// The offset was sent; every byte read is appended.
    Streaming { name: String },
    /// Refused: the error line was sent; reading and discarding until the peer closes.
    Lingering { until: Instant },
}

struct ShipConnection {
    /// Plain or TLS, as `--tls-cert` says (`server::tls`: one port, one mode).
    stream: Stream,
    peer: SocketAddr,
    accepted: Instant,
    /// WRITABLE interest is registered: TLS holds bytes the socket did not take yet.
    writing: bool,
    /// A read error that came after bytes [`fill`] returned first.
    deferred: Option<io::Error>,
    serial: u64,
    state: State,
    /// The socket may have bytes to read (its edge was not yet drained).
    readable: bool,
    /// On the ready list.
    queued: bool,
    /// Bytes handed to the writer and not yet drained.
    in_flight: usize,
    last_read: Instant,
    /// Bytes of the file read from this connection.
    received: u64,
}

impl ShipConnection {
    /// The name this connection opened (or asked to), for log lines.
    fn name(&self) -> Option<&str> {
        match &self.state {
            State::Opening { name } | State::Streaming { name } => Some(name),
            State::Name { .. } | State::Lingering { .. } => None,
        }
    }

    /// Whether the writer holds this connection's name open (a `Close` must follow).
    fn holds_name(&self) -> bool {
        matches!(self.state, State::Opening { .. } | State::Streaming { .. })
    }
}

/// The ship listener and connections of one loop.
pub struct ShipPort {
    loop_id: usize,
    listener: Option<TcpListener>,
    conns: Slab<ShipConnection>,
    ready: VecDeque<usize>,
    link: Option<Link>,
    settings: ShipSettings,
    shared: Arc<Shared>,
    log: Arc<ServerLog>,
    next_serial: u64,
    /// Bytes this loop's connections handed to the writer and it has not yet drained.
    in_flight: usize,
    scratch: Vec<u8>,
    /// Chunk buffers the writer gave back, to read into again (at most [`SPARE_BUFFERS`]).
    spare: Vec<Vec<u8>>,
}

impl ShipPort {
    /// A port serving `listener` (none: this server does not ship) with `link` to the writer,
    /// its listener registered under `listener_token`.
    ///
    /// # Errors
    /// The error registering the listener.
    pub fn new(
        loop_id: usize,
        listener: Option<(TcpListener, Link)>,
        registry: &Registry,
        listener_token: Token,
        settings: ShipSettings,
        shared: Arc<Shared>,
        log: Arc<ServerLog>,
    ) -> io::Result<ShipPort> {
        let (listener, link) = match listener {
            Some((mut listener, link)) => {
                registry.register(&mut listener, listener_token, Interest::READABLE)?;
                (Some(listener), Some(link))
            }
            None => (None, None),
        };
        Ok(ShipPort {
            loop_id,
            listener,
            conns: Slab::new(),
            ready: VecDeque::new(),
            link,
            settings,
            shared,
            log,
            next_serial: 0,
            in_flight: 0,
            scratch: Vec::new(),
            spare: Vec::new(),
        })
    }

    /// Whether an event token belongs to this port.
    pub fn owns(token: usize) -> bool {
        (SHIP_BASE..SHIP_BASE << 1).contains(&token)
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Connections wait to be read: the loop should not sleep in `poll`.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Accepts one connection (counted in `--max-connections` with the others); `false` when
    /// there is nothing more to accept now.
    pub fn accept(&mut self, registry: &Registry) -> bool {
        let Some(listener) = &self.listener else {
            return false;
        };
        let (tcp, peer) = loop {
            match listener.accept() {
                Ok(pair) => break pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.log.error(format_args!(
                        "ship accept failed: {e}; retrying (raise `ulimit -n` if this is EMFILE)"
                    ));
                    return false;
                }
            }
        };
        let total = self.shared.stats().connection_opened();
        if total > self.settings.max_connections {
            self.shared.stats().connection_closed();
            let refused = self.shared.stats().refused();
            self.log.warn(format_args!(
                "ship connection from {peer} refused: {total} connections open \
                 (--max-connections {}); {refused} refused so far",
                self.settings.max_connections
            ));
            return true; // dropping `tcp` closes it
        }
        self.shared.stats().ship_connection_opened();
        if let Err(e) = tune_socket(&tcp) {
            self.log.warn(format_args!(
                "ship connection from {peer}: socket options: {e}"
            ));
        }
        let stream = match self.shared.tls().stream(Alpn::None, tcp) {
            Ok(stream) => stream,
            Err(e) => {
                self.shared.stats().connection_closed();
                self.shared.stats().ship_connection_closed();
                self.log
                    .error(format_args!("ship connection from {peer}: TLS: {e}"));
                return true;
            }
        };
        let serial = self.next_serial;
        self.next_serial += 1;
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        let now = Instant::now();
        let mut conn = ShipConnection {
            stream,
            peer,
            accepted: now,
            writing: false,
            deferred: None,
            serial,
            state: State::Name {
                line: Vec::with_capacity(64),
                since: Instant::now(),
            },
            readable: true,
            queued: false,
            in_flight: 0,
            last_read: Instant::now(),
            received: 0,
        };
        if let Err(e) = registry.register(
            conn.stream.tcp_mut(),
            Token(SHIP_BASE + token),
            Interest::READABLE,
        ) {
            self.shared.stats().connection_closed();
            self.shared.stats().ship_connection_closed();
            self.log.error(format_args!(
                "ship connection from {peer}: cannot register: {e}"
            ));
            return true;
        }
        entry.insert(conn);
        // Its name may already be waiting; its edge may have come before registration.
        self.push_ready(token);
        true
    }

    /// A readiness event for one of this port's tokens: what TLS holds goes out (if the
    /// socket takes it now), and the connection reads.
    pub fn event(&mut self, token: Token, registry: &Registry) {
        let token = token.0 - SHIP_BASE;
        if let Some(conn) = self.conns.get_mut(token) {
            conn.readable = true;
            if conn.stream.wants_write()
                && let Err(e) = conn.stream.flush()
                && e.kind() != io::ErrorKind::WouldBlock
            {
                self.log
                    .info(format_args!("ship connection from {}: {e}", conn.peer));
                self.close(token, registry);
                return;
            }
            self.push_ready(token);
            self.watch_writes(token, registry);
        }
    }

    /// Keeps WRITABLE interest exactly while TLS holds bytes the socket has not taken
    /// (handshake messages, the offset or refusal line, an alert); a plain connection never
    /// needs it (its few bytes out fit the socket's buffer).
    fn watch_writes(&mut self, token: usize, registry: &Registry) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let wants = conn.stream.wants_write();
        if wants == conn.writing {
            return;
        }
        let interest = if wants {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match registry.reregister(conn.stream.tcp_mut(), Token(SHIP_BASE + token), interest) {
            Ok(()) => conn.writing = wants,
            Err(e) => {
                self.log.warn(format_args!(
                    "ship connection from {}: reregister: {e}",
                    conn.peer
                ));
                self.close(token, registry);
            }
        }
    }

    fn push_ready(&mut self, token: usize) {
        if let Some(conn) = self.conns.get_mut(token)
            && !conn.queued
        {
            conn.queued = true;
            self.ready.push_back(token);
        }
    }

    /// Serves the connections that may read: each up to a budget, then the next.
    pub fn serve(&mut self, registry: &Registry) {
        for _ in 0..self.ready.len() {
            let Some(token) = self.ready.pop_front() else {
                return;
            };
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            conn.queued = false;
            self.read(token, registry);
        }
    }

    /// Reads what connection `token` may read in its state.
    fn read(&mut self, token: usize, registry: &Registry) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if !conn.readable {
            return;
        }
        match conn.state {
            State::Name { .. } => self.read_name(token, registry),
            State::Streaming { .. } => self.read_stream(token, registry),
            State::Lingering { .. } => self.discard(token, registry),
            State::Opening { .. } => self.read_early(token, registry),
        }
        // A TLS read may have left handshake messages for the socket.
        self.watch_writes(token, registry);
    }

    /// Bytes while the offset is not yet answered: a transmitter must wait for it (it cannot
    /// know where to start), so bytes now are refused rather than appended at a place the
    /// transmitter did not choose; the end of the connection is a close.
    fn read_early(&mut self, token: usize, registry: &Registry) {
        let conn = &mut self.conns[token];
        let mut byte = [0u8; 1];
        loop {
            match conn.stream.read(&mut byte) {
                Ok(0) => {
                    self.log.info(format_args!(
                        "ship connection from {}: closed before the offset was answered",
                        conn.peer
                    ));
                    self.close(token, registry);
                    return;
                }
                Ok(_) => {
                    let why = EARLY_DATA;
                    self.refuse(token, registry, why, why);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.readable = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.log
                        .info(format_args!("ship connection from {}: {e}", conn.peer));
                    self.close(token, registry);
                    return;
                }
            }
        }
    }

    /// Reads the name line, at most [`MAX_NAME_LINE`] bytes; once whole, asks the writer to
    /// open it.
    fn read_name(&mut self, token: usize, registry: &Registry) {
        let conn = &mut self.conns[token];
        let State::Name { line, .. } = &mut conn.state else {
            return;
        };
        let mut buf = [0u8; MAX_NAME_LINE];
        loop {
            let room = MAX_NAME_LINE - line.len();
            if room == 0 {
                break;
            }
            match conn.stream.read(&mut buf[..room]) {
                Ok(0) => {
                    self.log.info(format_args!(
                        "ship connection from {}: closed before sending a file name",
                        conn.peer
                    ));
                    self.close(token, registry);
                    return;
                }
                Ok(n) => {
                    line.extend_from_slice(&buf[..n]);
                    conn.last_read = Instant::now();
                    if line.contains(&b'\n') {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.readable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    match TlsFailure::of(&e) {
                        Some(why) if line.is_empty() => {
                            if matches!(why, TlsFailure::NotTls(_)) {
                                // A plain client: a clean close (FIN), not a reset.
                                conn.stream.discard_waiting(MAX_NAME_LINE);
                            }
                            self.shared.tls().handshake_failed(
                                conn.peer,
                                why,
                                self.shared.stats(),
                                &self.log,
                            );
                        }
                        _ => self
                            .log
                            .info(format_args!("ship connection from {}: {e}", conn.peer)),
                    }
                    self.close(token, registry);
                    return;
                }
            }
        }
        let (name, consumed) = match ship::read_name_line(line) {
            Ok(Read::Incomplete) => return,
            Ok(Read::Done { value, consumed }) => (value.to_owned(), consumed),
            Err(why) => {
                let shown = String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned();
                self.refuse(
                    token,
                    registry,
                    &why.to_string(),
                    &format!("name {shown:?}: {why}"),
                );
                return;
            }
        };
        if consumed < line.len() {
            self.refuse(token, registry, EARLY_DATA, EARLY_DATA);
            return;
        }
        let stored = match ship::stored_name(&name, conn.peer.ip(), self.settings.host_in_filename)
        {
            Ok(stored) => stored,
            Err(why) => {
                self.refuse(
                    token,
                    registry,
                    &why.to_string(),
                    &format!("name {name:?}: {why}"),
                );
                return;
            }
        };
        let key = ShipKey::new(self.loop_id, token, conn.serial);
        conn.state = State::Opening {
            name: stored.clone(),
        };
        let sent = self
            .link
            .as_ref()
            .map(|link| link.send(Request::Open { key, name: stored }));
        if !matches!(sent, Some(Ok(()))) {
            self.writer_gone(token, registry);
        }
    }

    /// Reads file bytes and hands them to the writer, within the queue caps and this turn's
    /// budget.
    fn read_stream(&mut self, token: usize, registry: &Registry) {
        let mut budget = READ_BUDGET;
        loop {
            let conn = &mut self.conns[token];
            if conn.in_flight >= CONN_QUEUE || self.in_flight >= LOOP_QUEUE {
                // Paused: a `Drained` reply puts it back on the ready list.
                return;
            }
            if budget == 0 {
                self.push_ready(token);
                return;
            }
            // A full chunk takes this buffer to the writer thread; the next is one the writer
            // gave back (already full length: nothing to clear), or a new one.
            if self.scratch.capacity() < CHUNK {
                self.scratch = self
                    .spare
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(CHUNK));
            }
            self.scratch.resize(CHUNK, 0);
            match fill(&mut conn.stream, &mut self.scratch, &mut conn.deferred) {
                Ok(0) => {
                    self.log.info(format_args!(
                        "ship connection from {}: {} done, {} received",
                        conn.peer,
                        conn.name().unwrap_or("?"),
                        crate::storage::server_log::count(conn.received, "byte")
                    ));
                    self.close(token, registry);
                    return;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    conn.last_read = Instant::now();
                    conn.received += n as u64;
                    conn.in_flight += n;
                    self.in_flight += n;
                    // A full read goes as it is; a short one is copied, so the memory a chunk
                    // holds is what it counts against the caps.
                    let data = if n >= CHUNK / 2 {
                        let mut data = std::mem::take(&mut self.scratch);
                        data.truncate(n);
                        data
                    } else {
                        self.scratch[..n].to_vec()
                    };
                    let key = ShipKey::new(self.loop_id, token, conn.serial);
                    let sent = self
                        .link
                        .as_ref()
                        .map(|link| link.send(Request::Append { key, data }));
                    if !matches!(sent, Some(Ok(()))) {
                        self.writer_gone(token, registry);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.readable = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.log.info(format_args!(
                        "ship connection from {}: {}: {e}; {} received",
                        conn.peer,
                        conn.name().unwrap_or("?"),
                        crate::storage::server_log::count(conn.received, "byte")
                    ));
                    self.close(token, registry);
                    return;
                }
            }
        }
    }

    /// A refused connection: reads and drops what its peer still sends, until it closes.
    fn discard(&mut self, token: usize, registry: &Registry) {
        let conn = &mut self.conns[token];
        let mut buf = [0u8; 4096];
        loop {
            match conn.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.readable = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close(token, registry);
    }

    /// Tells the peer `why` on one line, logs `logged`, and lingers before closing.
    fn refuse(&mut self, token: usize, registry: &Registry, why: &str, logged: &str) {
        let refused = self.shared.stats().ship_refused();
        let conn = &mut self.conns[token];
        self.log.warn(format_args!(
            "ship connection from {}: refused: {logged} ({refused} refused so far)",
            conn.peer
        ));
        let line = ship::error_line(why);
        // The first thing (or, mid-stream, the second short line) this connection sends: the
        // socket's buffer has room for it.
        if let Err(e) = send_line(&mut conn.stream, &line) {
            self.log.info(format_args!(
                "ship connection from {}: cannot send the refusal: {e}",
                conn.peer
            ));
        }
        if let Some(key) = self.release(token) {
            self.send_close(key);
        }
        let conn = &mut self.conns[token];
        if conn.stream.shutdown_write().is_err() {
            self.close(token, registry);
            return;
        }
        conn.state = State::Lingering {
            until: Instant::now() + LINGER,
        };
        conn.readable = true;
        self.push_ready(token);
        self.watch_writes(token, registry);
    }

    /// The writer thread is gone (it panicked): close, saying so.
    fn writer_gone(&mut self, token: usize, registry: &Registry) {
        self.log
            .error(format_args!("ship: the writer thread is gone; closing"));
        if let Some(conn) = self.conns.get_mut(token) {
            conn.state = State::Lingering {
                until: Instant::now(),
            };
        }
        self.close(token, registry);
    }

    /// If the writer holds `token`'s name, the key to send `Close` with.
    fn release(&mut self, token: usize) -> Option<ShipKey> {
        let conn = self.conns.get(token)?;
        conn.holds_name()
            .then(|| ShipKey::new(self.loop_id, token, conn.serial))
    }

    fn send_close(&mut self, key: ShipKey) {
        if let Some(link) = &self.link
            && link.send(Request::Close { key }).is_err()
        {
            self.log
                .error(format_args!("ship: the writer thread is gone at close"));
        }
    }

    /// Closes connection `token`: frees its name at the writer (after its queued chunks),
    /// deregisters it and drops the socket.
    fn close(&mut self, token: usize, registry: &Registry) {
        if let Some(key) = self.release(token) {
            self.send_close(key);
        }
        let Some(mut conn) = self.conns.try_remove(token) else {
            return;
        };
        if let Err(e) = registry.deregister(conn.stream.tcp_mut()) {
            self.log.warn(format_args!(
                "ship connection from {}: deregister: {e}",
                conn.peer
            ));
        }
        if conn.queued {
            self.ready.retain(|&t| t != token);
        }
        self.shared.stats().connection_closed();
        self.shared.stats().ship_connection_closed();
    }

    /// Takes the writer's replies: offsets to send, drained bytes that let paused connections
    /// read again, failures.
    pub fn take_replies(&mut self, registry: &Registry) {
        let mut resume = false;
        while let Some(reply) = self.link.as_ref().and_then(Link::try_reply) {
            match reply {
                Reply::Opened { key, result } => self.opened(key, result, registry),
                Reply::Drained { key, bytes, buffer } => {
                    if buffer.capacity() >= CHUNK && self.spare.len() < SPARE_BUFFERS {
                        self.spare.push(buffer);
                    }
                    let was_full = self.in_flight >= LOOP_QUEUE;
                    self.in_flight = self.in_flight.saturating_sub(bytes);
                    resume |= was_full && self.in_flight < LOOP_QUEUE;
                    if let Some(conn) = self.live(key) {
                        let was_paused = conn.in_flight >= CONN_QUEUE;
                        conn.in_flight = conn.in_flight.saturating_sub(bytes);
                        if was_paused && conn.in_flight < CONN_QUEUE {
                            conn.last_read = Instant::now();
                            self.push_ready(key.token());
                        }
                    }
                }
                Reply::Failed { key, error } => {
                    if let Some(conn) = self.live(key) {
                        let name = conn.name().unwrap_or("?").to_owned();
                        self.refuse(
                            key.token(),
                            registry,
                            &format!("cannot store {name}: {error}"),
                            &format!("cannot store {name}: {error}"),
                        );
                    }
                }
            }
        }
        if resume {
            let tokens: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, c)| c.readable)
                .map(|(t, _)| t)
                .collect();
            for token in tokens {
                self.push_ready(token);
            }
        }
    }

    /// The connection `key` names, if it is still the one open on that token.
    fn live(&mut self, key: ShipKey) -> Option<&mut ShipConnection> {
        self.conns
            .get_mut(key.token())
            .filter(|c| c.serial == key.serial())
    }

    fn opened(&mut self, key: ShipKey, result: Result<u64, OpenError>, registry: &Registry) {
        let token = key.token();
        let Some(conn) = self
            .conns
            .get_mut(token)
            .filter(|c| c.serial == key.serial())
        else {
            return;
        };
        let State::Opening { name } = &conn.state else {
            return;
        };
        let name = name.clone();
        let (why, logged) = match result {
            Ok(offset) => {
                let line = ship::offset_line(offset);
                // The connection's first bytes out: a few digits fit any socket buffer.
                match send_line(&mut conn.stream, &line) {
                    Ok(()) => {
                        self.log.info(format_args!(
                            "ship connection from {}: {name} from offset {offset}",
                            conn.peer
                        ));
                        conn.state = State::Streaming { name };
                        conn.last_read = Instant::now();
                        self.push_ready(token);
                        self.watch_writes(token, registry);
                    }
                    Err(e) => {
                        self.log.info(format_args!(
                            "ship connection from {}: cannot send the offset: {e}",
                            conn.peer
                        ));
                        self.close(token, registry);
                    }
                }
                return;
            }
            Err(OpenError::Busy) => {
                let why = format!("{name} is being shipped by another connection");
                (why.clone(), why)
            }
            Err(OpenError::NotAFile) => (
                format!("{name} exists in the ship directory and is not a plain file"),
                format!("{name} exists and is not a plain file (a symlink, a hard link, ...)"),
            ),
            Err(OpenError::Io(e)) => (
                format!("cannot open {name}: {e}"),
                format!("cannot open {name}: {e}"),
            ),
        };
        // Not opened: the writer holds nothing for it, so no Close.
        conn.state = State::Name {
            line: Vec::new(),
            since: Instant::now(),
        };
        self.refuse(token, registry, &why, &logged);
    }

    /// Timeouts: the name line ([`NAME_TIMEOUT`]), silence while streaming (`--ship-timeout`),
    /// and the end of a refused connection's lingering.
    pub fn tick(&mut self, now: Instant, registry: &Registry) {
        let name_timeout = self.settings.name_timeout();
        let idle = self.settings.idle_timeout;
        let handshake_timeout = self.shared.tls().handshake_timeout();
        let mut slow_handshakes = Vec::new();
        let mut late_names = Vec::new();
        let mut silent = Vec::new();
        let mut lingered = Vec::new();
        for (token, conn) in &self.conns {
            if conn.stream.handshaking() {
                // Only the handshake's own limit, as on the other ports (`server::tls`).
                if now.duration_since(conn.accepted) >= handshake_timeout {
                    slow_handshakes.push(token);
                }
                continue;
            }
            match &conn.state {
                State::Name { since, .. } if now.duration_since(*since) >= name_timeout => {
                    late_names.push(token);
                }
                State::Streaming { .. }
                    if conn.in_flight < CONN_QUEUE
                        && self.in_flight < LOOP_QUEUE
                        && now.duration_since(conn.last_read) >= idle =>
                {
                    silent.push(token);
                }
                State::Lingering { until } if now >= *until => lingered.push(token),
                _ => {}
            }
        }
        for token in slow_handshakes {
            let why = format!("not finished within {}s", handshake_timeout.as_secs_f64());
            let peer = self.conns[token].peer;
            self.shared
                .tls()
                .handshake_failed(peer, &why, self.shared.stats(), &self.log);
            self.close(token, registry);
        }
        for token in late_names {
            let why = format!("no file name line within {}s", name_timeout.as_secs_f64());
            self.refuse(token, registry, &why, &why);
        }
        for token in silent {
            let conn = &self.conns[token];
            self.log.info(format_args!(
                "ship connection from {}: {} silent for {}s (--ship-timeout); closed, {} \
                 received are kept",
                conn.peer,
                conn.name().unwrap_or("?"),
                idle.as_secs_f64(),
                crate::storage::server_log::count(conn.received, "byte")
            ));
            let why = format!("idle for {}s", idle.as_secs_f64());
            self.refuse(token, registry, &why, &why);
        }
        for token in lingered {
            self.close(token, registry);
        }
    }

    /// Shutdown: no new connections; every connection closes (what was read is written by the
    /// writer before it stops; the transmitters resume from the file sizes).
    pub fn close_all(&mut self, registry: &Registry) {
        if let Some(mut listener) = self.listener.take()
            && let Err(e) = registry.deregister(&mut listener)
        {
            self.log.warn(format_args!("deregister ship listener: {e}"));
        }
        let tokens: Vec<usize> = self.conns.iter().map(|(t, _)| t).collect();
        for token in tokens {
            self.close(token, registry);
        }
        // Dropping the link lets the writer finish once every loop has.
        self.link = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Fsync;
    use crate::stats::Stats;
    use crate::storage::mailbox::{Handoff, Mailbox};
    use crate::storage::ship::ShipWriter;
    use mio::{Events, Poll};
    use std::io::{Read as _, Write as _};

    /// A port on a real loopback listener with a ship writer that runs only when the test says:
    /// while it is held still, the connection's bytes waiting for it stay within the cap and
    /// the port stops reading; once it writes, reading resumes, and the copy is whole.
    #[test]
    fn a_held_writer_stops_reading_within_the_cap_and_reading_resumes() {
        let dir = std::env::temp_dir().join(format!("logmill-ship-port-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        let mut poll = Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), Token(usize::MAX)).unwrap();
        let stats = Arc::new(Stats::default());
        let handoff = Arc::new(Handoff::new(usize::MAX, vec![Mailbox::new(waker)]));
        let shared = Arc::new(Shared::new("test".into(), handoff, stats.clone()));
        let log = Arc::new(ServerLog::stderr_only());
        let (mut writer, mut links) = ShipWriter::new(
            dir.clone(),
            Fsync::Never,
            vec![Box::new(|| {})],
            stats,
            log.clone(),
        );
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let mut port = ShipPort::new(
            0,
            Some((TcpListener::from_std(std_listener), links.remove(0))),
            poll.registry(),
            Token(usize::MAX - 1),
            ShipSettings::new(false, Duration::from_secs(60), 100),
            shared,
            log,
        )
        .unwrap();
        let data: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let client = std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.write_all(b"held.bin\n").unwrap();
            let mut answer = [0u8; 2];
            stream.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"0\n");
            stream.write_all(&sent).unwrap();
        });
        let mut events = Events::with_capacity(64);
        let mut turn = |port: &mut ShipPort, poll: &mut Poll| {
            poll.poll(&mut events, Some(Duration::from_millis(10)))
                .unwrap();
            for event in events.iter() {
                if ShipPort::owns(event.token().0) {
                    port.event(event.token(), poll.registry());
                }
            }
            while port.accept(poll.registry()) {}
            port.take_replies(poll.registry());
            port.serve(poll.registry());
        };
        // The name, the open, the offset.
        while port.is_empty()
            || !port
                .conns
                .iter()
                .any(|(_, c)| matches!(c.state, State::Opening { .. }))
        {
            turn(&mut port, &mut poll);
        }
        writer.handle_queued();
        // Held still: the connection reads up to its cap, then stops.
        let mut idle_turns = 0;
        while idle_turns < 50 {
            let before = port.in_flight;
            turn(&mut port, &mut poll);
            assert!(port.in_flight <= CONN_QUEUE + CHUNK, "{}", port.in_flight);
            idle_turns = if port.in_flight == before {
                idle_turns + 1
            } else {
                0
            };
        }
        assert!(
            port.in_flight >= CONN_QUEUE,
            "paused at the cap: {}",
            port.in_flight
        );
        assert!(!port.has_ready(), "a paused connection is not served");
        // The writer runs again: everything arrives.
        while !client.is_finished() || !port.is_empty() {
            writer.handle_queued();
            turn(&mut port, &mut poll);
        }
        writer.handle_queued();
        client.join().unwrap();
        assert_eq!(std::fs::read(dir.join("held.bin")).unwrap(), data);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
