//! The mio plumbing every bench loop shares: connecting, registering, one nonblocking write,
//! one bounded `poll`. Nothing here knows a protocol.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::error::{BenchError, setup};

/// Longest wait in `poll`, so the deadline and the progress bar are looked at even when no
/// socket has anything to say.
pub const TICK: Duration = Duration::from_millis(100);

/// One nonblocking write: `Some(n)` bytes taken, `None` when the socket would block.
/// `Interrupted` is retried; a write of 0 bytes is an error (the peer can take nothing more).
pub fn write_some(stream: &mut TcpStream, buf: &[u8]) -> io::Result<Option<usize>> {
    loop {
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Connects to `addr` (blocking, within the deadline), turns Nagle off (it would hold the tail
/// of each batch back for up to a delayed ack) and returns the stream nonblocking, registered
/// on `poll` as connection `conn`. Used where nothing needs to overlap connection set-up: a few
/// connections, before the clock.
pub fn connect(
    poll: &Poll,
    conn: usize,
    addr: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, BenchError> {
    let left = time_left(deadline, timeout, || "connections".into())?;
    let stream = std::net::TcpStream::connect_timeout(&addr, left)
        .map_err(|source| BenchError::Connect { addr, source })?;
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_nonblocking(true))
        .map_err(|source| BenchError::Connect { addr, source })?;
    let mut stream = TcpStream::from_std(stream);
    register(poll, &mut stream, conn)?;
    Ok(stream)
}

/// Registers connection `conn` on `poll`, edge-triggered, with its index as token.
pub fn register(poll: &Poll, stream: &mut TcpStream, conn: usize) -> Result<(), BenchError> {
    poll.registry()
        .register(stream, Token(conn), Interest::READABLE | Interest::WRITABLE)
        .map_err(setup("cannot register a connection with mio"))
}

/// What is left of the run's time, or a timeout error naming what it was `waiting_for`.
pub fn time_left(
    deadline: Instant,
    timeout: Duration,
    waiting_for: impl FnOnce() -> String,
) -> Result<Duration, BenchError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(BenchError::Timeout {
            timeout,
            waiting_for: waiting_for(),
        });
    }
    Ok(left)
}

/// One `poll` of at most [`TICK`] within the deadline; `waiting_for` names what a timeout was
/// waiting for.
pub fn wait(
    poll: &mut Poll,
    events: &mut Events,
    deadline: Instant,
    timeout: Duration,
    waiting_for: impl FnOnce() -> String,
) -> Result<(), BenchError> {
    let left = time_left(deadline, timeout, waiting_for)?;
    poll_once(poll, events, TICK.min(left))
}

/// One `poll`, with an interrupted wait counted as a wait with no events.
pub fn poll_once(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Duration,
) -> Result<(), BenchError> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        Err(source) => Err(BenchError::Setup {
            what: "mio poll failed".into(),
            source,
        }),
    }
}
