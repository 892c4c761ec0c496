//! A nonblocking TCP stream, plain or TLS: the one byte pipe under the server's connections
//! (`server::transport`), its gRPC port (through `h2_io`) and the clients that speak TLS.
//!
//! TLS is rustls used sans-IO, as rustls's own mio example does: the [`rustls::Connection`]
//! holds no socket; [`Stream::read`] moves ciphertext from the socket into it (`read_tls`),
//! decrypts (`process_new_packets`) and hands out plaintext (`reader`); [`Stream::write`] hands
//! plaintext to it (`writer`) and moves the ciphertext it made to the socket (`write_tls`).
//! Handshake messages are sent the same way, from inside `read` and `flush`, so the caller sees
//! only plaintext, `WouldBlock` and errors, as with plain TCP. One thing is new for it: TLS may
//! have bytes waiting to go out although the caller wrote nothing ([`Stream::wants_write`]);
//! it keeps WRITABLE interest while that is true and calls [`Stream::flush`] on the event.
//!
//! Server connections ([`Stream::tls_server`]) use rustls's unbuffered API instead, for memory:
//! the buffered `Connection` keeps a 4 KiB read buffer per connection for good, which is half of
//! what an idle TLS connection costs. [`ServerTls`] reads the socket into the thread's scratch
//! buffer and keeps per connection only what is in flight (an incomplete record, plaintext not
//! read yet, ciphertext not sent yet), freed as soon as it is empty. Same behaviour outside.
//!
//! What it does not do: choose certificates, log, count (that is `server::tls`), buffer
//! plaintext beyond what rustls holds (rustls bounds both directions; the unbuffered side holds
//! at most a record's plaintext and a 64 KiB send limit), or block.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

/// The first byte of every TLS record a client starts with (a handshake record).
pub const TLS_HANDSHAKE: u8 = 0x16;

/// Why a TLS stream failed, carried inside the `io::Error` [`Stream::read`] returns (see
/// [`TlsFailure::of`]), so the server can count and log handshake failures apart from
/// ordinary disconnects.
#[derive(Debug)]
pub enum TlsFailure {
    /// The first byte was not a TLS handshake record: a plain client on a TLS port.
    NotTls(u8),
    /// rustls refused what the peer sent (a bad handshake, an unknown certificate, ...).
    Tls(rustls::Error),
}

impl TlsFailure {
    /// The TLS failure inside `e`, if it is one.
    pub fn of(e: &io::Error) -> Option<&TlsFailure> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }

    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsFailure::NotTls(byte) => write!(
                f,
                "not TLS (first byte {byte:#04x}, a TLS client starts with 0x16): a plain client \
                 on a TLS port"
            ),
            TlsFailure::Tls(e) => write!(f, "TLS: {e}"),
        }
    }
}

impl std::error::Error for TlsFailure {}

/// A connected nonblocking socket, with or without TLS.
#[derive(Debug)]
pub struct Stream {
    tcp: TcpStream,
    /// Boxed: a plain connection pays one pointer for TLS, not rustls's whole state.
    tls: Option<Box<rustls::Connection>>,
    /// A server connection on rustls's unbuffered API (see [`ServerTls`]); `tls` is then `None`.
    server: Option<Box<ServerTls>>,
    /// The server side has looked at the first byte (see [`TlsFailure::NotTls`]).
    first_checked: bool,
}

impl Stream {
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream {
            tcp,
            tls: None,
            server: None,
            first_checked: true,
        }
    }

    /// A server TLS stream over `tcp` on rustls's unbuffered API: it checks the first byte the
    /// client sends, and holds between reads only what is in flight (see [`ServerTls`]).
    pub fn tls_server(tcp: TcpStream, conn: rustls::server::UnbufferedServerConnection) -> Stream {
        Stream {
            tcp,
            tls: None,
            server: Some(Box::new(ServerTls::new(conn))),
            first_checked: false,
        }
    }

    /// A TLS stream over `tcp`; a server connection checks the first byte the client sends.
    pub fn tls(tcp: TcpStream, conn: impl Into<rustls::Connection>) -> Stream {
        let conn = conn.into();
        let server = matches!(conn, rustls::Connection::Server(_));
        Stream {
            tcp,
            tls: Some(Box::new(conn)),
            server: None,
            first_checked: !server,
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// The TLS state (peer certificates, ALPN), if this stream speaks TLS.
    pub fn tls_state(&self) -> Option<&rustls::CommonState> {
        match (&self.tls, &self.server) {
            (Some(tls), _) => Some(tls),
            (None, Some(server)) => Some(&server.conn),
            (None, None) => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls_state().is_some()
    }

    /// The TLS handshake has not finished yet.
    pub fn handshaking(&self) -> bool {
        self.tls_state().is_some_and(|tls| tls.is_handshaking())
    }

    /// TLS has bytes to send (handshake messages, records of what was written, an alert):
    /// keep WRITABLE interest and call [`flush`](Self::flush) when the socket is writable.
    pub fn wants_write(&self) -> bool {
        if let Some(server) = &self.server {
            return !server.outgoing.is_empty();
        }
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// Reads plaintext: what TLS has decrypted, else what the socket has. `Ok(0)` is the end of
    /// the stream (a TCP FIN or a TLS `close_notify`).
    ///
    /// # Errors
    /// `WouldBlock` when nothing is waiting; a [`TlsFailure`] (kind `InvalidData`) when the
    /// peer is not speaking TLS or rustls refused it (its alert is sent first, if the socket
    /// takes it); the socket's own errors.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.server.is_some() {
            return self.read_server(buf);
        }
        if self.tls.is_some() && !self.check_first_byte()? {
            return Ok(0);
        }
        let Some(tls) = &mut self.tls else {
            return self.tcp.read(buf);
        };
        if tls.wants_write() {
            // Handshake messages the socket did not take before: a peer waiting for them sends
            // nothing until it has them, so they go first (a drive on a WRITABLE edge comes here
            // too, through h2's reads).
            match write_all_tls(tls, &mut self.tcp) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        loop {
            match tls.reader().read(buf) {
                // `Ok(0)` with a non-empty `buf`: the peer sent `close_notify`.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed TCP without `close_notify`: an end of stream all the same
                // (clients that just close are common; what they sent was authenticated).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // Reading and answering both go through the socket (`&TcpStream` does both).
            let (mut from, mut to) = (&self.tcp, &self.tcp);
            if !receive(tls, &mut from, &mut to)? {
                return Ok(0);
            }
        }
    }

    /// Looks at waiting plaintext without taking it (for TLS: decrypts what the socket has).
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.server.is_some() && !self.check_first_byte()? {
            return Ok(0);
        }
        if let Some(server) = &mut self.server {
            if server.received.is_empty() && !server.peer_closed {
                // Nothing decrypted yet: take one read's worth from the socket, then look again.
                let pumped = server.pump(&mut &self.tcp, &mut []);
                let sent = server.send(&mut &self.tcp);
                let pumped = pumped?;
                ignore_would_block(sent)?;
                if pumped.would_block && server.received.is_empty() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
            }
            let n = server.received.len().min(buf.len());
            buf[..n].copy_from_slice(&server.received[..n]);
            return Ok(n);
        }
        if self.tls.is_none() {
            return self.tcp.peek(buf);
        }
        let Some(tls) = &mut self.tls else {
            return Ok(0);
        };
        let mut reader = tls.reader();
        if let Ok(waiting) = io::BufRead::fill_buf(&mut reader)
            && !waiting.is_empty()
        {
            let n = waiting.len().min(buf.len());
            buf[..n].copy_from_slice(&waiting[..n]);
            return Ok(n);
        }
        // Nothing decrypted yet: take one read's worth from the socket, then look again.
        let (mut from, mut to) = (&self.tcp, &self.tcp);
        receive(tls, &mut from, &mut to)?;
        let mut reader = tls.reader();
        match io::BufRead::fill_buf(&mut reader) {
            Ok(waiting) => {
                let n = waiting.len().min(buf.len());
                buf[..n].copy_from_slice(&waiting[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Writes plaintext.
    ///
    /// # Errors
    /// `WouldBlock` when the socket (and, for TLS, rustls's bounded send buffer) is full; the
    /// socket's own errors.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(server) = &mut self.server {
            return server.write(&self.tcp, buf);
        }
        let Some(tls) = &mut self.tls else {
            return self.tcp.write(buf);
        };
        let mut taken = tls.writer().write(buf)?;
        match write_all_tls(tls, &mut self.tcp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && taken > 0 => {}
            Err(e) => return Err(e),
        }
        if taken == 0 && !buf.is_empty() {
            // rustls's send buffer was full and the socket took some of it: try again.
            taken = tls.writer().write(buf)?;
            if taken == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        Ok(taken)
    }

    /// # Errors
    /// As [`write`](Self::write).
    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if let Some(server) = &mut self.server {
            return server.write_vectored(&self.tcp, bufs);
        }
        if self.tls.is_none() {
            return self.tcp.write_vectored(bufs);
        }
        // rustls makes one record per slice at most; the ciphertext goes out in one syscall.
        let Some(first) = bufs.iter().position(|b| !b.is_empty()) else {
            return Ok(0);
        };
        let Some(tls) = &mut self.tls else {
            return Ok(0);
        };
        let taken = tls.writer().write_vectored(&bufs[first..])?;
        if taken == 0 {
            return self.write(&bufs[first]);
        }
        match write_all_tls(tls, &mut self.tcp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(taken)
    }

    /// Sends what TLS holds (a plain socket holds nothing).
    ///
    /// # Errors
    /// `WouldBlock` while some is still held; the socket's own errors.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(server) = &mut self.server {
            server.encrypt_waiting()?;
            return server.send(&mut &self.tcp);
        }
        match &mut self.tls {
            Some(tls) => write_all_tls(tls, &mut self.tcp),
            None => Ok(()),
        }
    }

    /// Reads and drops what the socket has waiting (at most `limit` bytes), as raw bytes: before
    /// closing on a plain client, so the close is a FIN and not a reset (closing with unread
    /// input makes the kernel answer with a reset, which the client sees as an error).
    pub fn discard_waiting(&mut self, limit: usize) {
        let mut buf = [0u8; 4096];
        let mut dropped = 0usize;
        while dropped < limit {
            match self.tcp.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => dropped += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Closes the sending side: for TLS a `close_notify` first (sent if the socket takes it
    /// now), then the TCP FIN.
    ///
    /// # Errors
    /// The socket is not connected any more.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if let Some(server) = &mut self.server {
            server.close_notify()?;
            ignore_would_block(server.send(&mut &self.tcp))?;
        }
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            match write_all_tls(tls, &mut self.tcp) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        self.tcp.shutdown(Shutdown::Write)
    }
}

impl Stream {
    /// Checks the first byte the client sent, once (see [`TlsFailure::NotTls`]). False at the
    /// end of the stream.
    fn check_first_byte(&mut self) -> io::Result<bool> {
        if self.first_checked {
            return Ok(true);
        }
        let mut first = [0u8; 1];
        match self.tcp.peek(&mut first)? {
            0 => Ok(false),
            _ if first[0] != TLS_HANDSHAKE => Err(TlsFailure::NotTls(first[0]).into_io()),
            _ => {
                self.first_checked = true;
                Ok(true)
            }
        }
    }

    /// [`read`](Self::read) for a [`ServerTls`] stream.
    fn read_server(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.check_first_byte()? {
            return Ok(0);
        }
        let Some(server) = &mut self.server else {
            return Ok(0);
        };
        // Handshake messages the socket did not take before go first (see `read` above).
        ignore_would_block(server.send(&mut &self.tcp))?;
        loop {
            if !server.received.is_empty() {
                return Ok(server.take(buf));
            }
            if server.peer_closed {
                return Ok(0);
            }
            let pumped = server.pump(&mut &self.tcp, buf);
            let sent = server.send(&mut &self.tcp);
            let pumped = pumped?;
            ignore_would_block(sent)?;
            if pumped.delivered > 0 {
                return Ok(pumped.delivered);
            }
            if !server.received.is_empty() {
                continue;
            }
            if server.peer_closed || pumped.end {
                return Ok(0);
            }
            if pumped.would_block {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }
}

/// What rustls's unbuffered API may hold of ciphertext in flight from the peer: a handshake
/// message split over records (up to 64 KiB) plus one more record.
const SCRATCH: usize = 96 * 1024;

/// How much plaintext a server stream takes before the socket has taken what it made (as
/// rustls's own send buffer limit).
const SEND_LIMIT: usize = 64 * 1024;

thread_local! {
    /// The ciphertext a server stream is reading: each event loop thread has one, shared by
    /// its connections, as the plaintext scratch buffer is.
    static SCRATCH_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A server TLS connection on rustls's unbuffered API. The buffered `rustls::Connection` keeps
/// a 4 KiB read buffer per connection for good; this reads the socket into the thread's scratch
/// buffer and keeps per connection only what is in flight: the bytes of an incomplete record,
/// plaintext the reader has not taken, ciphertext the socket has not taken (all empty and
/// unallocated on an idle connection).
pub struct ServerTls {
    conn: rustls::server::UnbufferedServerConnection,
    /// Ciphertext received that is not a whole record yet.
    incoming: Vec<u8>,
    /// Plaintext decrypted and not read yet.
    received: Vec<u8>,
    /// Ciphertext made and not sent yet.
    outgoing: Vec<u8>,
    /// Plaintext written before the handshake finished: encrypted once it has.
    waiting: Vec<u8>,
    /// The peer sent `close_notify`.
    peer_closed: bool,
}

/// What one [`ServerTls::pump`] did.
#[derive(Debug, Default)]
struct Pumped {
    /// Plaintext put into the caller's buffer (the rest went to `received`).
    delivered: usize,
    /// The socket was at its end (TCP FIN).
    end: bool,
    /// The socket had nothing.
    would_block: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("incoming", &self.incoming.len())
            .field("received", &self.received.len())
            .field("outgoing", &self.outgoing.len())
            .field("waiting", &self.waiting.len())
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    pub fn new(conn: rustls::server::UnbufferedServerConnection) -> ServerTls {
        ServerTls {
            conn,
            incoming: Vec::new(),
            received: Vec::new(),
            outgoing: Vec::new(),
            waiting: Vec::new(),
            peer_closed: false,
        }
    }

    /// Reads the socket once after what is held of an incomplete record, in the
    /// thread's scratch buffer, and processes all of it: plaintext to `out` then `received`,
    /// handshake messages and alerts to `outgoing`; keeps what is left of an incomplete record.
    fn pump(&mut self, from: &mut dyn Read, out: &mut [u8]) -> io::Result<Pumped> {
        SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.len() < SCRATCH {
                scratch.resize(SCRATCH, 0);
            }
            let held = self.incoming.len();
            scratch[..held].copy_from_slice(&self.incoming);
            self.incoming = Vec::new();
            let mut pumped = Pumped::default();
            let mut end = held;
            if held >= SCRATCH {
                // rustls refuses a handshake message or a record before it grows this large.
                return Err(TlsFailure::Tls(rustls::Error::InvalidMessage(
                    rustls::InvalidMessage::MessageTooLarge,
                ))
                .into_io());
            }
            loop {
                match from.read(&mut scratch[held..]) {
                    Ok(0) => pumped.end = true,
                    Ok(n) => end = held.saturating_add(n).min(SCRATCH),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => pumped.would_block = true,
                    Err(e) => {
                        self.incoming = scratch[..held].to_vec();
                        return Err(e);
                    }
                }
                break;
            }
            let start = self.process(&mut scratch[..end], out, &mut pumped.delivered)?;
            if start < end {
                self.incoming = scratch[start..end].to_vec();
            }
            Ok(pumped)
        })
    }

    /// Runs rustls over `data` until it needs more; returns how much of `data` it used.
    fn process(
        &mut self,
        data: &mut [u8],
        out: &mut [u8],
        delivered: &mut usize,
    ) -> io::Result<usize> {
        use rustls::unbuffered::{ConnectionState, UnbufferedStatus};
        let mut start = 0usize;
        loop {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut data[start..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    self.queue_alert(&mut data[start + discard..]);
                    return Err(TlsFailure::Tls(e).into_io());
                }
            };
            let mut done = false;
            match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(|e| TlsFailure::Tls(e).into_io())?;
                        deliver(record.payload, out, delivered, &mut self.received);
                    }
                }
                ConnectionState::ReadEarlyData(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(|e| TlsFailure::Tls(e).into_io())?;
                        deliver(record.payload, out, delivered, &mut self.received);
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_record(&mut encode, &mut self.outgoing)?;
                }
                // What was encoded waits in `outgoing`, in order, for `send`.
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::PeerClosed => self.peer_closed = true,
                ConnectionState::Closed => {
                    self.peer_closed = true;
                    done = true;
                }
                // Waiting for the peer (`BlockedHandshake`), or nothing more to read.
                _ => done = true,
            }
            start += discard;
            if done {
                return Ok(start);
            }
        }
    }

    /// After rustls refused what arrived, its alert saying why (if it queued one) goes to
    /// `outgoing`. `rest` is what it had not used of the input (rustls answers with what it
    /// queued before it looks at the input).
    fn queue_alert(&mut self, rest: &mut [u8]) {
        use rustls::unbuffered::{ConnectionState, UnbufferedStatus};
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(rest);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = state {
            let _queued = encode_record(&mut encode, &mut self.outgoing);
        }
    }

    /// Runs `f` over `state` with the `WriteTraffic` state, if the handshake has finished
    /// (records the handshake still has to send go to `outgoing` first). False while it has not.
    fn with_write_traffic(
        &mut self,
        mut f: impl FnMut(
            &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
            &mut Vec<u8>,
        ) -> io::Result<()>,
    ) -> io::Result<bool> {
        use rustls::unbuffered::{ConnectionState, UnbufferedStatus};
        loop {
            // The input is what is held of an incomplete record: rustls may be joining a
            // handshake message over records in it, and expects to see it again.
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let mut finished = None;
            match state.map_err(|e| TlsFailure::Tls(e).into_io())? {
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_record(&mut encode, &mut self.outgoing)?;
                }
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(|e| TlsFailure::Tls(e).into_io())?;
                        self.received.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::WriteTraffic(mut write) => {
                    f(&mut write, &mut self.outgoing)?;
                    finished = Some(true);
                }
                _ => finished = Some(false),
            }
            self.incoming.drain(..discard);
            if self.incoming.is_empty() {
                self.incoming = Vec::new();
            }
            if let Some(finished) = finished {
                return Ok(finished);
            }
        }
    }

    /// Encrypts what was written before the handshake finished, once it has.
    fn encrypt_waiting(&mut self) -> io::Result<()> {
        if self.waiting.is_empty() {
            return Ok(());
        }
        let waiting = std::mem::take(&mut self.waiting);
        let encrypted = self.with_write_traffic(|write, out| encrypt(write, &waiting, out))?;
        if !encrypted {
            self.waiting = waiting;
        }
        Ok(())
    }

    fn write(&mut self, tcp: &TcpStream, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(tcp, &[IoSlice::new(buf)])
    }

    /// Takes as much plaintext as the send limit allows, encrypts it and sends what it can.
    fn write_vectored(&mut self, tcp: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        if self.outgoing.len() + self.waiting.len() >= SEND_LIMIT {
            self.send(&mut &*tcp)?;
        }
        let room = SEND_LIMIT.saturating_sub(self.outgoing.len() + self.waiting.len());
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // What fits of the slices, in order: one record (or more) per slice.
        let pieces = || {
            let mut left = room;
            bufs.iter().filter(|b| !b.is_empty()).map_while(move |b| {
                let take = b.len().min(left);
                left -= take;
                (take > 0).then(|| &b[..take])
            })
        };
        self.encrypt_waiting()?;
        let encrypted = self.waiting.is_empty()
            && self.with_write_traffic(|write, out| {
                pieces().try_for_each(|piece| encrypt(write, piece, out))
            })?;
        if !encrypted {
            pieces().for_each(|piece| self.waiting.extend_from_slice(piece));
        }
        ignore_would_block(self.send(&mut &*tcp))?;
        Ok(pieces().map(<[u8]>::len).sum())
    }

    /// Queues a `close_notify` once the handshake has finished (before, there is no session to
    /// close: the FIN alone ends it).
    fn close_notify(&mut self) -> io::Result<()> {
        self.encrypt_waiting()?;
        self.with_write_traffic(|write, out| {
            encode_into(out, |buf| {
                write.queue_close_notify(buf).map_err(|e| match e {
                    rustls::unbuffered::EncryptError::InsufficientSize(s) => Ok(s.required_size),
                    other => Err(io::Error::other(other.to_string())),
                })
            })
        })?;
        Ok(())
    }

    /// Takes decrypted plaintext (at most `buf`'s length).
    fn take(&mut self, buf: &mut [u8]) -> usize {
        let n = self.received.len().min(buf.len());
        buf[..n].copy_from_slice(&self.received[..n]);
        self.received.drain(..n);
        if self.received.is_empty() {
            self.received = Vec::new();
        }
        n
    }

    /// Moves `outgoing` to the socket until it is empty (`Ok`) or the socket is full
    /// (`WouldBlock`).
    fn send(&mut self, to: &mut dyn Write) -> io::Result<()> {
        let mut sent = 0;
        let result = loop {
            if sent == self.outgoing.len() {
                break Ok(());
            }
            match to.write(&self.outgoing[sent..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.outgoing.drain(..sent);
        if self.outgoing.is_empty() {
            self.outgoing = Vec::new();
        }
        result
    }
}

/// The receiving step of a server TLS stream, sans-IO as [`receive`] is (the `tls` fuzz target
/// drives it over bytes in memory): one read from `from` processed, answers written to `to`
/// (`WouldBlock` from it is not an error), the plaintext kept for [`take_plaintext`]. False at
/// the end of the stream (of `from`, or a `close_notify`).
///
/// # Errors
/// As [`receive`].
pub fn receive_server(
    tls: &mut ServerTls,
    from: &mut dyn Read,
    to: &mut dyn Write,
) -> io::Result<bool> {
    let pumped = tls.pump(from, &mut []);
    let sent = tls.send(to);
    let pumped = pumped?;
    ignore_would_block(sent)?;
    Ok(!pumped.end && !tls.peer_closed)
}

/// Takes the plaintext [`receive_server`] kept (at most `buf`'s length).
pub fn take_plaintext(tls: &mut ServerTls, buf: &mut [u8]) -> usize {
    tls.take(buf)
}

/// Plaintext to the caller's buffer first, the rest to `received`.
fn deliver(payload: &[u8], out: &mut [u8], delivered: &mut usize, received: &mut Vec<u8>) {
    let room = out.len() - *delivered;
    let n = if received.is_empty() {
        payload.len().min(room)
    } else {
        0
    };
    out[*delivered..*delivered + n].copy_from_slice(&payload[..n]);
    *delivered += n;
    received.extend_from_slice(&payload[n..]);
}

/// Appends a handshake record (or an alert) rustls made to `out`.
fn encode_record(
    encode: &mut rustls::unbuffered::EncodeTlsData<'_, rustls::server::ServerConnectionData>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    encode_into(out, |buf| {
        encode.encode(buf).map_err(|e| match e {
            rustls::unbuffered::EncodeError::InsufficientSize(s) => Ok(s.required_size),
            other => Err(io::Error::other(other.to_string())),
        })
    })
}

/// Encrypts all of `plain` to the end of `out`.
fn encrypt(
    write: &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    encode_into(out, |buf| {
        write.encrypt(plain, buf).map_err(|e| match e {
            rustls::unbuffered::EncryptError::InsufficientSize(s) => Ok(s.required_size),
            other => Err(io::Error::other(other.to_string())),
        })
    })
}

/// Appends what `encode` writes to `out`, growing it to the size rustls asks for.
/// `encode` answers `Err(Ok(size))` when it needs `size` bytes.
fn encode_into(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, io::Result<usize>>,
) -> io::Result<()> {
    let len = out.len();
    loop {
        match encode(&mut out[len..]) {
            Ok(n) => {
                out.truncate(len + n);
                return Ok(());
            }
            Err(Ok(required)) if out.len() < len + required => out.resize(len + required, 0),
            Err(Ok(_)) => return Err(io::Error::other("rustls asked for room it had")),
            Err(Err(e)) => {
                out.truncate(len);
                return Err(e);
            }
        }
    }
}

/// `WouldBlock` is no error for what is sent on the side.
fn ignore_would_block(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        other => other,
    }
}

/// Moves one read's worth of ciphertext from `from` (the socket) into rustls and decrypts it,
/// answering handshake messages at once through `to` (the socket again) if it takes the
/// answer. False at the end of the stream. The one step of the receiving side, sans-IO: the
/// `tls` fuzz target drives it over bytes in memory.
///
/// # Errors
/// `from`'s errors (`WouldBlock` included), `to`'s other than `WouldBlock`, and a
/// [`TlsFailure::Tls`] when rustls refuses what arrived.
pub fn receive(
    tls: &mut rustls::Connection,
    from: &mut dyn Read,
    to: &mut dyn Write,
) -> io::Result<bool> {
    if tls.read_tls(from)? == 0 {
        return Ok(false);
    }
    if let Err(e) = tls.process_new_packets() {
        // rustls queued an alert saying why: send it if the socket takes it now. Whether it
        // does changes nothing: the stream has failed either way.
        let _alert_sent = tls.write_tls(to).is_ok();
        return Err(TlsFailure::Tls(e).into_io());
    }
    if tls.wants_write() {
        match write_all_tls(tls, to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Moves what rustls holds to the socket until it holds nothing (`Ok`) or the socket is full
/// (`WouldBlock`); `Interrupted` is retried.
fn write_all_tls(tls: &mut rustls::Connection, tcp: &mut dyn Write) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(tcp) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const DEADLINE: Duration = Duration::from_secs(20);

    /// A server and a client configuration trusting each other (a fresh self-signed
    /// certificate for `localhost`).
    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("rcgen makes a certificate");
        let cert = certified.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .expect("a key");
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("the certificate");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("the root");
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// A server `Stream` on the unbuffered API and a blocking rustls client, over loopback.
    fn pair() -> (
        Stream,
        rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    ) {
        let (server_config, client_config) = configs();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client_tcp =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        client_tcp
            .set_read_timeout(Some(DEADLINE))
            .expect("timeout");
        let (server_tcp, _) = listener.accept().expect("accept");
        server_tcp.set_nonblocking(true).expect("nonblocking");
        let conn = rustls::server::UnbufferedServerConnection::new(server_config)
            .expect("a server connection");
        let server = Stream::tls_server(TcpStream::from_std(server_tcp), conn);
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        let client = rustls::ClientConnection::new(client_config, name).expect("a client");
        (server, rustls::StreamOwned::new(client, client_tcp))
    }

    /// Reads `want` bytes of plaintext through `server`, `chunk` at most at a time, flushing
    /// its answers meanwhile (the handshake) until the deadline.
    fn read_exactly(server: &mut Stream, want: usize, chunk: usize) -> io::Result<Vec<u8>> {
        let started = Instant::now();
        let mut got = Vec::new();
        let mut buf = vec![0u8; chunk];
        while got.len() < want {
            assert!(started.elapsed() < DEADLINE, "read {} of {want}", got.len());
            match server.read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = server.flush();
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_server_stream_carries_both_ways_and_holds_no_buffer_when_idle() {
        let (mut server, mut client) = pair();
        let sent = pattern(300_000);
        let to_send = sent.clone();
        let writer = std::thread::spawn(move || {
            // Odd sizes: records end in the middle of the server's reads.
            for piece in to_send.chunks(7_001) {
                client.write_all(piece).expect("client write");
            }
            client.flush().expect("client flush");
            let mut back = vec![0u8; 200_000];
            client.read_exact(&mut back).expect("the server's answer");
            client.conn.send_close_notify();
            client.flush().expect("close_notify");
            back
        });
        // A reader taking less than a record at a time keeps the rest for the next read.
        let got = read_exactly(&mut server, sent.len(), 1000).expect("server read");
        assert!(got == sent, "the server read what the client wrote");
        assert!(!server.handshaking());

        let answer = pattern(200_000);
        let started = Instant::now();
        let mut written = 0;
        while written < answer.len() || server.wants_write() {
            assert!(started.elapsed() < DEADLINE, "wrote {written}");
            if written < answer.len() {
                match server.write(&answer[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("server write: {e}"),
                }
            }
            match server.flush() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("server flush: {e}"),
            }
        }
        let back = writer.join().expect("the client");
        assert!(back == answer, "the client read what the server wrote");

        // The client's close_notify is the end of the stream.
        let rest = read_exactly(&mut server, 1, 1000).expect("server read to the end");
        assert!(rest.is_empty());
        let tls = server.server.as_ref().expect("a server stream");
        assert_eq!(
            (
                tls.incoming.capacity(),
                tls.received.capacity(),
                tls.outgoing.capacity(),
                tls.waiting.capacity()
            ),
            (0, 0, 0, 0),
            "an idle server stream holds no buffer"
        );
    }

    #[test]
    fn a_refused_handshake_is_a_tls_failure_with_its_alert_sent() {
        let (mut server, client) = pair();
        let (_, mut tcp) = client.into_parts();
        // A handshake record with a ClientHello rustls cannot parse.
        tcp.write_all(&[TLS_HANDSHAKE, 3, 1, 0, 4, 1, 0, 0, 0])
            .expect("client write");
        let e = read_exactly(&mut server, 1, 1000).expect_err("refused");
        assert!(
            matches!(TlsFailure::of(&e), Some(TlsFailure::Tls(_))),
            "{e}"
        );
        let mut alert = [0u8; 7];
        tcp.read_exact(&mut alert).expect("an alert");
        assert_eq!(alert[0], 0x15, "an alert record: {alert:?}");
    }
}
