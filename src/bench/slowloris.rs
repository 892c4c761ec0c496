//! `--slowloris N`: N connections to the HTTP/1.1 side of the gRPC port that never finish their
//! request head, held while the native load runs, to see what they cost well-behaved clients.
//!
//! They live in the native load's own mio loop (tokens from [`TOKEN_BASE`] up), not in threads:
//! each connects nonblocking, sends [`HEAD`], then one more byte of its last header's value
//! every [`DRIP_EVERY`], spread evenly over the connections ([`drips_due`]). A connection the
//! server closes (its `--header-timeout` answers 408) is counted, by the status it was
//! answered with ([`status_of`]), and replaced by a new one at once.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::error::{BenchError, setup};
use super::socket::{wait, write_some};

/// The first token of the slow connections; the native connections' tokens are their indexes,
/// always below this.
pub const TOKEN_BASE: usize = 1 << 30;

/// What each connection sends at once: a request head cut inside a header's value.
pub const HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nX-a: ";

/// How often each connection sends one more byte.
pub const DRIP_EVERY: Duration = Duration::from_secs(1);

/// Bytes of an answer kept to read its status line.
const STATUS_LEN: usize = 12;

/// Bytes the whole run of N connections should have dripped `elapsed` after the start: N every
/// [`DRIP_EVERY`], spread evenly.
pub fn drips_due(elapsed: Duration, n: usize, every: Duration) -> u64 {
    if every.is_zero() {
        return 0;
    }
    let due = elapsed.as_nanos().saturating_mul(n as u128) / every.as_nanos();
    u64::try_from(due).unwrap_or(u64::MAX)
}

/// The status code of an HTTP/1.x answer's first bytes (`HTTP/1.1 408 ...`), if they hold one.
pub fn status_of(answer: &[u8]) -> Option<u16> {
    let rest = answer
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| answer.strip_prefix(b"HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// One slow connection.
struct Slow {
    stream: TcpStream,
    /// Bytes of [`HEAD`] handed to the socket.
    sent: usize,
    /// The first bytes the server answered, for its status line.
    answer: Vec<u8>,
}

/// The slow connections and what the server did to them.
pub struct Slowloris {
    addr: SocketAddr,
    conns: Vec<Slow>,
    start: Instant,
    /// Bytes dripped since `start`, over all connections in turn.
    dripped: u64,
    /// Connections the server closed (each was replaced).
    pub closed: u64,
    /// Of those, the ones answered `408 Request Timeout` first.
    pub timeouts: u64,
}

impl Slowloris {
    /// Connects `n` slow connections to `addr` (the gRPC port) on `poll` and waits until each
    /// has sent [`HEAD`].
    ///
    /// # Errors
    /// A connection that cannot be made, or the deadline.
    pub fn open(
        poll: &mut Poll,
        addr: SocketAddr,
        n: usize,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Slowloris, BenchError> {
        eprintln!("logmill bench: opening {n} slowloris connections to {addr}");
        let mut slow = Slowloris {
            addr,
            conns: Vec::with_capacity(n),
            start: Instant::now(),
            dripped: 0,
            closed: 0,
            timeouts: 0,
        };
        for i in 0..n {
            let conn = slow.connect(poll, i)?;
            slow.conns.push(conn);
        }
        let mut events = Events::with_capacity(1024);
        while slow.opening() > 0 {
            let opening = slow.opening();
            wait(poll, &mut events, deadline, timeout, || {
                format!("{opening} of {n} slowloris connections to send their head")
            })?;
            for event in events.iter() {
                slow.on_event(poll, event)?;
            }
        }
        slow.start = Instant::now();
        Ok(slow)
    }

    /// Connections still sending their head.
    fn opening(&self) -> usize {
        self.conns.iter().filter(|c| c.sent < HEAD.len()).count()
    }

    fn connect(&self, poll: &Poll, i: usize) -> Result<Slow, BenchError> {
        let addr = self.addr;
        let mut stream =
            TcpStream::connect(addr).map_err(|source| BenchError::Connect { addr, source })?;
        poll.registry()
            .register(
                &mut stream,
                Token(TOKEN_BASE + i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(setup("cannot register a slowloris connection with mio"))?;
        Ok(Slow {
            stream,
            sent: 0,
            answer: Vec::new(),
        })
    }

    /// Is `token` one of these connections?
    pub fn owns(token: Token) -> bool {
        token.0 >= TOKEN_BASE
    }

    /// Handles an event on one of these connections: finishes the head, reads what the server
    /// says, and replaces a connection it closed.
    ///
    /// # Errors
    /// A replacement that cannot connect.
    pub fn on_event(&mut self, poll: &Poll, event: &Event) -> Result<(), BenchError> {
        let i = event.token().0 - TOKEN_BASE;
        let Some(conn) = self.conns.get_mut(i) else {
            return Ok(());
        };
        let mut closed = event.is_error();
        if event.is_writable() && conn.sent < HEAD.len() {
            match write_some(&mut conn.stream, &HEAD[conn.sent..]) {
                Ok(Some(n)) => conn.sent += n,
                Ok(None) => {}
                // Not connected yet: a later writable event says when it is.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(_) => closed = true,
            }
        }
        if event.is_readable() || event.is_read_closed() {
            closed |= read_answer(&mut conn.stream, &mut conn.answer);
        }
        if closed {
            self.closed += 1;
            if status_of(&conn.answer) == Some(408) {
                self.timeouts += 1;
            }
            // Dropping the old stream closes it and takes it out of the poll.
            self.conns[i] = self.connect(poll, i)?;
        }
        Ok(())
    }

    /// Sends the bytes due by now, one each to the next connections in turn.
    pub fn drip(&mut self) {
        let n = self.conns.len();
        if n == 0 {
            return;
        }
        let due = drips_due(self.start.elapsed(), n, DRIP_EVERY);
        while self.dripped < due {
            let conn = &mut self.conns[(self.dripped % n as u64) as usize];
            self.dripped += 1;
            if conn.sent == HEAD.len() {
                // A full socket or a closed one: the event loop sees to the latter.
                let _ = write_some(&mut conn.stream, b"a");
            }
        }
    }

    /// Connections open now with their head sent.
    pub fn held(&self) -> usize {
        self.conns.len() - self.opening()
    }
}

/// Reads what the server sent, keeping its first bytes; true once it closed (or failed).
fn read_answer(stream: &mut TcpStream, answer: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                let keep = STATUS_LEN.saturating_sub(answer.len()).min(n);
                answer.extend_from_slice(&buf[..keep]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drips_are_spread_over_the_interval() {
        let every = Duration::from_secs(1);
        assert_eq!(drips_due(Duration::ZERO, 2000, every), 0);
        assert_eq!(drips_due(Duration::from_millis(1), 2000, every), 2);
        assert_eq!(drips_due(Duration::from_millis(500), 2000, every), 1000);
        assert_eq!(drips_due(Duration::from_secs(3), 2000, every), 6000);
        assert_eq!(drips_due(Duration::from_secs(3), 0, every), 0);
        assert_eq!(drips_due(Duration::from_secs(3), 5, Duration::ZERO), 0);
    }

    /// A listener that answers the first connection's head `408` and closes it: the connection
    /// is counted as closed with 408 and replaced by one that sends its head again.
    #[test]
    fn a_closed_connection_is_counted_and_replaced() {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut poll = Poll::new().unwrap();
        let mut slow =
            Slowloris::open(&mut poll, addr, 1, deadline, Duration::from_secs(30)).unwrap();
        assert_eq!(slow.held(), 1);
        let (mut first, _) = listener.accept().unwrap();
        let mut head = vec![0u8; HEAD.len()];
        first.read_exact(&mut head).unwrap();
        assert_eq!(head, HEAD);
        first
            .write_all(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n")
            .unwrap();
        drop(first);
        let mut events = Events::with_capacity(16);
        while slow.closed == 0 || slow.held() == 0 {
            wait(
                &mut poll,
                &mut events,
                deadline,
                Duration::from_secs(30),
                || "the close".into(),
            )
            .unwrap();
            for event in events.iter() {
                assert!(Slowloris::owns(event.token()));
                slow.on_event(&poll, event).unwrap();
            }
        }
        assert_eq!((slow.closed, slow.timeouts, slow.held()), (1, 1, 1));
        let (mut second, _) = listener.accept().unwrap();
        second.read_exact(&mut head).unwrap();
        assert_eq!(head, HEAD);
    }

    #[test]
    fn status_lines_are_read() {
        assert_eq!(status_of(b"HTTP/1.1 408 Request Timeout\r\n"), Some(408));
        assert_eq!(status_of(b"HTTP/1.0 431 Req"), Some(431));
        assert_eq!(status_of(b"HTTP/1.1 40"), None);
        assert_eq!(status_of(b"HTTP/1.1 4x8 "), None);
        assert_eq!(status_of(b""), None);
        assert_eq!(status_of(b"SSH-2.0-x"), None);
    }
}
