//! The byte pipe under a TCP connection: plain TCP today.
//!
//! [`Transport`] is everything [`Connection`](super::connection::Connection) does to its socket:
//! read, write, peek, half-close, and register with the loop's `Poll`. TLS will be a second
//! variant behind the same methods (it reads ciphertext from the socket and hands out plaintext),
//! so neither the connection nor the sessions change when it comes. The match it adds is one per
//! read or write call, not one per record. It holds no buffers and knows no protocol.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// A connected socket and its peer's address (asked once at accept, not per log line).
pub struct Transport {
    stream: TcpStream,
    peer: SocketAddr,
}

impl Transport {
    /// A plain TCP connection.
    pub fn plain(stream: TcpStream, peer: SocketAddr) -> Self {
        Transport { stream, peer }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// # Errors
    /// As [`Read::read`]; `WouldBlock` when nothing is waiting.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }

    /// # Errors
    /// As [`Write::write`]; `WouldBlock` when the socket's send buffer is full.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    /// Looks at waiting bytes without taking them (the loop's `health` check while paused).
    ///
    /// # Errors
    /// As [`TcpStream::peek`].
    pub fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.peek(buf)
    }

    /// Closes the sending side: the peer reads what was sent, then the end of the stream.
    ///
    /// # Errors
    /// The socket is not connected any more.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// # Errors
    /// As [`Registry::register`].
    pub fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.register(&mut self.stream, token, interest)
    }

    /// # Errors
    /// As [`Registry::reregister`].
    pub fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.reregister(&mut self.stream, token, interest)
    }

    /// # Errors
    /// As [`Registry::deregister`].
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        registry.deregister(&mut self.stream)
    }
}
