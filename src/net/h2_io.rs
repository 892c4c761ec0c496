//! A nonblocking mio socket seen as tokio's `AsyncRead` + `AsyncWrite`, so that `h2` can drive
//! HTTP/2 over it from inside logmill's own event loop, with no runtime.
//!
//! The contract with the loop, which is what makes this work without a reactor:
//!
//! - `WouldBlock` becomes `Poll::Pending` and no waker is stored: the socket is registered with
//!   the loop's `Poll` (edge-triggered, READABLE | WRITABLE), and every event on it makes the
//!   loop drive the connection again, which polls `h2`, which polls this adapter. mio's
//!   readiness *is* the wake-up.
//! - `Interrupted` is retried here; it never reaches `h2`.
//! - Bytes already read while detecting the protocol (the HTTP/2 preface) are handed out first
//!   (`replay`), so `h2` sees the stream from its first byte.
//!
//! - The socket may speak TLS ([`Stream`]): the adapter sees plaintext only, and `poll_flush`
//!   sends what TLS still holds (h2 flushes after every write, and on every drive).
//!
//! What it does not do: buffering (h2's codec buffers), timeouts (see `server::grpc`). It lives
//! in `net` because the client side (the load tool's gRPC load) drives `h2` over mio the same way.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use mio::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stream::Stream;

/// A nonblocking TCP stream for `h2`. It counts the bytes read so the connection can tell when
/// the peer last said anything (keepalive): `h2` keeps the io to itself, so the count is shared
/// through an `Arc` ([`H2Io::bytes_read`]) rather than read from the adapter.
#[derive(Debug)]
pub struct H2Io {
    stream: Stream,
    replay: Vec<u8>,
    replayed: usize,
    bytes_read: Arc<AtomicU64>,
}

impl H2Io {
    /// Wraps a plain `stream`; `replay` holds bytes already read from it, handed out before any
    /// new.
    pub fn new(stream: TcpStream, replay: Vec<u8>) -> H2Io {
        H2Io::over(Stream::plain(stream), replay)
    }

    /// Wraps a plain or TLS `stream`; `replay` as for [`new`](Self::new) (plaintext).
    pub fn over(stream: Stream, replay: Vec<u8>) -> H2Io {
        H2Io {
            stream,
            replay,
            replayed: 0,
            bytes_read: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A handle on the count of bytes received so far (replay included): it grows whenever the
    /// peer sends anything. Only the loop's thread updates and reads it.
    pub fn bytes_read(&self) -> Arc<AtomicU64> {
        self.bytes_read.clone()
    }
}

/// Runs `op` until it does not fail with `Interrupted`, turning `WouldBlock` into `Pending`.
fn nonblocking<T>(mut op: impl FnMut() -> io::Result<T>) -> Poll<io::Result<T>> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            other => return Poll::Ready(other),
        }
    }
}

impl AsyncRead for H2Io {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            this.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
            if this.replayed == this.replay.len() {
                this.replay = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        // `initialize_unfilled` zeroes the spare part of h2's buffer once per read: the price of
        // reading into it without unsafe code, small next to the syscall.
        let stream = &mut this.stream;
        let dst = buf.initialize_unfilled();
        let n = std::task::ready!(nonblocking(|| stream.read(dst)))?;
        buf.advance(n);
        this.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let stream = &mut self.get_mut().stream;
        nonblocking(|| stream.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let stream = &mut self.get_mut().stream;
        nonblocking(|| stream.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// A TCP socket has no user-space buffer to flush (and Nagle is off); TLS may still hold
    /// records, sent here.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream = &mut self.get_mut().stream;
        nonblocking(|| stream.flush())
    }

    /// Sends FIN (after TLS's `close_notify`). A peer that is already gone (`NotConnected`)
    /// counts as shut down.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream.shutdown_write() {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct Nothing;
    impl Wake for Nothing {
        fn wake(self: Arc<Self>) {}
    }

    fn pair() -> (H2Io, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (
            H2Io::new(TcpStream::from_std(server), b"PRI".to_vec()),
            client,
        )
    }

    fn read(io: &mut H2Io, cap: usize) -> Poll<io::Result<Vec<u8>>> {
        let waker = Waker::from(Arc::new(Nothing));
        let mut cx = Context::from_waker(&waker);
        let mut storage = vec![0u8; cap];
        let mut buf = ReadBuf::new(&mut storage);
        Pin::new(io)
            .poll_read(&mut cx, &mut buf)
            .map_ok(|()| buf.filled().to_vec())
    }

    #[test]
    fn replays_first_then_reads_then_would_block_is_pending() {
        let (mut io, mut client) = pair();
        assert!(matches!(read(&mut io, 2), Poll::Ready(Ok(b)) if b == b"PR"));
        assert!(matches!(read(&mut io, 10), Poll::Ready(Ok(b)) if b == b"I"));
        assert!(read(&mut io, 10).is_pending());
        client.write_all(b"hello").unwrap();
        let got = loop {
            // The bytes may take a moment to cross loopback; Pending until then.
            if let Poll::Ready(r) = read(&mut io, 10) {
                break r.unwrap();
            }
            std::thread::yield_now();
        };
        assert_eq!(got, b"hello");
        assert_eq!(io.bytes_read().load(Ordering::Relaxed), 8);
        drop(client);
        let eof = loop {
            if let Poll::Ready(r) = read(&mut io, 10) {
                break r.unwrap();
            }
            std::thread::yield_now();
        };
        assert!(eof.is_empty(), "EOF is a zero-byte read");
    }

    #[test]
    fn writes_until_the_socket_is_full_then_pending() {
        let (mut io, mut client) = pair();
        let waker = Waker::from(Arc::new(Nothing));
        let mut cx = Context::from_waker(&waker);
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0usize;
        loop {
            match Pin::new(&mut io).poll_write(&mut cx, &chunk) {
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => panic!("{e}"),
                Poll::Pending => break,
            }
            assert!(written < 1 << 30, "a socket buffer never holds a gigabyte");
        }
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert!(matches!(
            Pin::new(&mut io).poll_shutdown(&mut cx),
            Poll::Ready(Ok(()))
        ));
        let mut all = Vec::new();
        client.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), written, "everything written arrives, then FIN");
    }
}
