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
//! What it does not do: choose certificates, log, count (that is `server::tls`), buffer
//! plaintext beyond what rustls holds (rustls bounds both directions), or block.

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
    /// The server side has looked at the first byte (see [`TlsFailure::NotTls`]).
    first_checked: bool,
}

impl Stream {
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream {
            tcp,
            tls: None,
            first_checked: true,
        }
    }

    /// A TLS stream over `tcp`; a server connection checks the first byte the client sends.
    pub fn tls(tcp: TcpStream, conn: impl Into<rustls::Connection>) -> Stream {
        let conn = conn.into();
        let server = matches!(conn, rustls::Connection::Server(_));
        Stream {
            tcp,
            tls: Some(Box::new(conn)),
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
    pub fn tls_state(&self) -> Option<&rustls::Connection> {
        self.tls.as_deref()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS handshake has not finished yet.
    pub fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
    }

    /// TLS has bytes to send (handshake messages, records of what was written, an alert):
    /// keep WRITABLE interest and call [`flush`](Self::flush) when the socket is writable.
    pub fn wants_write(&self) -> bool {
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
        let Some(tls) = &mut self.tls else {
            return self.tcp.read(buf);
        };
        if !self.first_checked {
            let mut first = [0u8; 1];
            match self.tcp.peek(&mut first)? {
                0 => return Ok(0),
                _ if first[0] != TLS_HANDSHAKE => {
                    return Err(TlsFailure::NotTls(first[0]).into_io());
                }
                _ => self.first_checked = true,
            }
        }
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
