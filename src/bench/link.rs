//! Native-protocol connections as bench's mio loops hold them ([`Link`]), and [`open`], which
//! sets many up at once: connect, hello, wait for the welcome. The frames are the client
//! library's ([`crate::client::framing`]); this file only moves them through nonblocking sockets.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Poll};

use super::apps::Apps;
use super::error::BenchError;
use super::socket::{register, wait};
use crate::client::framing::{ClientOptions, Inbox, Reply};
use crate::net::stream::Stream;

/// `--tls`: the client configuration every connection's TLS is made from.
pub type Tls = Arc<rustls::ClientConfig>;

/// Connections being set up (connect, hello, welcome) at once. The server's accept queue holds
/// 4096; staying well under it means no SYN is dropped and retransmitted a second later, which
/// would make `--idle 10000` slow for reasons that have nothing to do with the server.
const CONNECT_WINDOW: usize = 512;
/// Bytes read per `read` call; acks are about 40 bytes, so this drains many at once.
pub const READ_CHUNK: usize = 64 * 1024;

/// A connection to the server: the socket, the hello still to send, the bytes read but not yet
/// taken as replies.
pub struct Link {
    stream: Stream,
    connected: bool,
    hello: Vec<u8>,
    hello_sent: usize,
    welcomed: bool,
    inbox: Inbox,
}

impl Link {
    fn new(stream: Stream, conn: usize, apps: &Apps) -> Link {
        let mut hello = Vec::new();
        let (app, token) = apps.of(conn);
        ClientOptions::new(app)
            .instance(format!("c{conn:05}"))
            .token(token)
            .encode_hello(&mut hello);
        Link {
            stream,
            connected: false,
            hello,
            hello_sent: 0,
            welcomed: false,
            inbox: Inbox::new(),
        }
    }

    /// A connection that is already established and says no hello (syslog, JSON, pickle).
    pub fn plain(stream: TcpStream) -> Link {
        Link {
            stream: Stream::plain(stream),
            connected: true,
            hello: Vec::new(),
            hello_sent: 0,
            welcomed: true,
            inbox: Inbox::new(),
        }
    }

    /// One nonblocking write of `buf`, as `socket::write_some`: `Some(n)` bytes taken (by the
    /// socket, or by TLS, which sends them as the socket takes them), `None` when it would
    /// block. With TLS, what it holds from before is sent first.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<Option<usize>> {
        loop {
            match self.stream.write(buf) {
                Ok(0) if !buf.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends what TLS still holds (nothing on a plain socket); `WouldBlock` is not an error.
    ///
    /// # Errors
    /// The socket's.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.stream.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    /// Reads what a server sent on a protocol where it never answers: anything at all, or a
    /// close, means it refused the records (it writes an error line and closes).
    pub fn expect_silence(&mut self, conn: usize, scratch: &mut [u8]) -> Result<(), BenchError> {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    return Err(BenchError::Closed {
                        conn,
                        detail: "while it was sending records".into(),
                    });
                }
                Ok(n) => {
                    return Err(BenchError::Protocol {
                        conn,
                        detail: format!(
                            "it answered a protocol that has no answers: {}",
                            String::from_utf8_lossy(&scratch[..n.min(200)]).trim()
                        ),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(BenchError::Io { conn, source }),
            }
        }
    }

    /// Finishes a nonblocking connect: `true` once established, `false` while in progress.
    fn finish_connect(&mut self) -> io::Result<bool> {
        if self.connected {
            return Ok(true);
        }
        let tcp = self.stream.tcp();
        if let Some(e) = tcp.take_error()? {
            return Err(e);
        }
        match tcp.peer_addr() {
            Ok(_) => {
                // Without this, Nagle would hold the tail of each batch back for up to a delayed
                // ack (40 ms on Linux), which would show up as server latency.
                tcp.set_nodelay(true)?;
                self.connected = true;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends what is left of the hello, until done or the socket would block.
    fn write_hello(&mut self) -> io::Result<()> {
        let hello = std::mem::take(&mut self.hello);
        while self.hello_sent < hello.len() {
            match self.write(&hello[self.hello_sent..]) {
                Ok(Some(n)) => self.hello_sent += n,
                Ok(None) => break,
                Err(e) => {
                    self.hello = hello;
                    return Err(e);
                }
            }
        }
        self.hello = hello;
        // TLS: the handshake's next message, or records the socket did not take before.
        match self.stream.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    /// Reads until the socket would block and takes the complete replies into `replies`.
    /// Returns whether the server closed its side. An error frame from the server is returned as
    /// an error, ahead of the close that usually follows it.
    pub fn receive(
        &mut self,
        conn: usize,
        scratch: &mut [u8],
        replies: &mut Vec<Reply>,
    ) -> Result<bool, BenchError> {
        let mut closed = false;
        let mut failure = None;
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => self.inbox.extend(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        while let Some(reply) = self
            .inbox
            .next_reply()
            .map_err(|e| BenchError::from_client(conn, e))?
        {
            replies.push(reply);
        }
        match failure {
            Some(source) => Err(BenchError::Io { conn, source }),
            None => Ok(closed),
        }
    }
}

/// Opens `n` connections to `addr`; each sends its hello and waits for the server's welcome.
/// At most [`CONNECT_WINDOW`] are being set up at once. Returns the connections, registered on
/// `poll` with their index as token, and the largest frame the server accepts. Connection `i`
/// says hello as app `i % apps`, with its token if `apps` has them (`--apps`).
pub fn open(
    poll: &mut Poll,
    addr: SocketAddr,
    n: usize,
    apps: &Apps,
    tls: Option<&Tls>,
    deadline: Instant,
    timeout: Duration,
) -> Result<(Vec<Link>, u32), BenchError> {
    let mut links: Vec<Link> = Vec::with_capacity(n);
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut replies = Vec::new();
    let mut welcomed = 0;
    let mut max_frame = u32::MAX;
    while welcomed < n {
        while links.len() < n && links.len() - welcomed < CONNECT_WINDOW {
            let i = links.len();
            let mut stream =
                TcpStream::connect(addr).map_err(|source| BenchError::Connect { addr, source })?;
            register(poll, &mut stream, i)?;
            let stream = match tls {
                Some(config) => {
                    let conn =
                        crate::client::tls::connection(config, "localhost:0").map_err(|e| {
                            BenchError::Connect {
                                addr,
                                source: io::Error::other(e),
                            }
                        })?;
                    Stream::tls(stream, conn)
                }
                None => Stream::plain(stream),
            };
            links.push(Link::new(stream, i, apps));
        }
        wait(poll, &mut events, deadline, timeout, || {
            format!("connections ({welcomed} of {n} welcomed by the server)")
        })?;
        for event in events.iter() {
            let i = event.token().0;
            let link = &mut links[i];
            if !link
                .finish_connect()
                .map_err(|source| BenchError::Connect { addr, source })?
            {
                continue;
            }
            link.write_hello()
                .map_err(|source| BenchError::Io { conn: i, source })?;
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let closed = link.receive(i, &mut scratch, &mut replies)?;
                for reply in replies.drain(..) {
                    if let Reply::Welcome(welcome) = reply
                        && !link.welcomed
                    {
                        link.welcomed = true;
                        welcomed += 1;
                        max_frame = max_frame.min(welcome.max_frame());
                    }
                }
                if closed {
                    return Err(BenchError::Closed {
                        conn: i,
                        detail: "before it was set up (no welcome after hello)".into(),
                    });
                }
            }
        }
    }
    Ok((links, max_frame))
}
