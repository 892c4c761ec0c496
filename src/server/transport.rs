//! The byte pipe under a TCP connection: plain TCP or TLS ([`Stream`]).
//!
//! [`Transport`] is everything [`Connection`](super::connection::Connection) does to its socket:
//! read, write, peek, half-close, and register with the loop's `Poll`. With TLS it reads
//! ciphertext from the socket and hands out plaintext (`net::stream`), so neither the connection
//! nor the sessions know whether the port speaks TLS. The match it adds is one per read or write
//! call, not one per record. It holds no buffers of its own and knows no protocol.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::{Interest, Registry, Token};

use crate::net::stream::Stream;

/// A connected socket and its peer's address (asked once at accept, not per log line).
pub struct Transport {
    stream: Stream,
    peer: SocketAddr,
    /// When the connection was accepted: a TLS handshake has until then plus the handshake
    /// timeout (`server::tls`).
    accepted: Instant,
}

impl Transport {
    /// A connection over `stream` (plain or TLS, as its port says).
    pub fn new(stream: Stream, peer: SocketAddr) -> Self {
        Transport {
            stream,
            peer,
            accepted: Instant::now(),
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The TLS state (client certificate, ALPN), on a TLS port.
    pub fn tls(&self) -> Option<&rustls::CommonState> {
        self.stream.tls_state()
    }

    /// A TLS handshake is still going on, since [`accepted`](Self::accepted).
    pub fn handshaking(&self) -> bool {
        self.stream.handshaking()
    }

    pub fn accepted(&self) -> Instant {
        self.accepted
    }

    /// # Errors
    /// As [`Stream::read`]; `WouldBlock` when nothing is waiting.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }

    /// # Errors
    /// As [`Stream::write`]; `WouldBlock` when the socket's send buffer is full.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    /// TLS holds bytes to send although the connection's output is empty (handshake, alerts).
    pub fn wants_write(&self) -> bool {
        self.stream.wants_write()
    }

    /// Sends what TLS holds.
    ///
    /// # Errors
    /// `WouldBlock` while some is still held; the socket's errors.
    pub fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }

    /// Looks at waiting bytes without taking them (the loop's `health` check while paused).
    ///
    /// # Errors
    /// As [`Stream::peek`].
    pub fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.peek(buf)
    }

    /// Drops what the socket has waiting, raw (see [`Stream::discard_waiting`]).
    pub fn discard_waiting(&mut self, limit: usize) {
        self.stream.discard_waiting(limit);
    }

    /// Closes the sending side: the peer reads what was sent, then the end of the stream.
    ///
    /// # Errors
    /// The socket is not connected any more.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown_write()
    }

    /// # Errors
    /// As [`Registry::register`].
    pub fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.register(self.stream.tcp_mut(), token, interest)
    }

    /// # Errors
    /// As [`Registry::reregister`].
    pub fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.reregister(self.stream.tcp_mut(), token, interest)
    }

    /// # Errors
    /// As [`Registry::deregister`].
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        registry.deregister(self.stream.tcp_mut())
    }
}
