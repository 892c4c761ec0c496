//! One file's shipping, on its own thread: connect, send the name line, read the receiver's
//! offset, send the bytes from there with `sendfile` (through rustls with `--tls`: `link.rs`), follow appends, and on any network error
//! reconnect with capped exponential backoff and jitter and resume from the receiver's offset
//! again. The scanner (`mod.rs`) decides which files get a worker and when; a worker ends by
//! returning an [`Outcome`].
//!
//! The file is the descriptor the scanner opened, never a path opened again, so a file renamed or
//! deleted while shipping is finished from what it was.

use std::fs::File;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{SockRef, TcpKeepalive};

use super::link::{COPY_BUFFER, Link, TlsTarget};
use crate::protocol::ship::{self, Answer, Read};

/// The most bytes one `sendfile` call is asked for: large enough that the per-call cost
/// vanishes at memory speed, small enough that a stop request is seen within a moment.
const SENDFILE_CHUNK: usize = 8 << 20;

/// How long one blocking socket write or read may wait before the worker looks at its flags
/// again (a stop request, a release); waiting on, not an error.
const SOCKET_SLICE: Duration = Duration::from_millis(250);

/// Keepalive: a receiver that vanished without a FIN (a cut cable, a dead host) is noticed after
/// about a minute even while the file is quiet and nothing is written.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// The first reconnection delay; it doubles up to the configured cap, with full jitter.
const BACKOFF_START: Duration = Duration::from_millis(100);

/// Settings every worker shares.
#[derive(Debug)]
pub struct Settings {
    pub(super) addr: SocketAddr,
    /// `--tls`: every connection speaks TLS to the receiver.
    pub(super) tls: Option<TlsTarget>,
    pub(super) timeout: Duration,
    pub(super) max_backoff: Duration,
    pub(super) follow_interval: Duration,
    pub(super) grace: Duration,
    pub(super) once: bool,
    /// Set by SIGINT/SIGTERM: every worker returns [`Outcome::Stopped`] soon.
    pub(super) stop: Arc<AtomicBool>,
    /// Set by the scanner while files wait for a free slot: a worker at the end of a quiet file
    /// gives its slot up at once (the scanner starts it again when the file grows).
    pub(super) slots_wanted: Arc<AtomicBool>,
    /// Bytes sent by all workers, for the summary.
    pub(super) sent: Arc<AtomicU64>,
}

/// One file handed to a worker.
#[derive(Debug)]
pub struct Job {
    pub(super) file: Arc<File>,
    pub(super) stored: String,
    /// Set by the scanner when a newer file took this one's place (rotation) or the file left
    /// the directory: finish at the end of the file once it has not grown for the grace period.
    pub(super) release: Arc<AtomicBool>,
    /// Where the receiver's copy is known to end plus what was sent since; read for progress.
    pub(super) position: Arc<AtomicU64>,
}

/// How a worker ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything up to `offset` was sent (and, with `--once`, confirmed by the receiver).
    Done { offset: u64 },
    /// The file is now smaller than the receiver's copy (copytruncate, or a different file under
    /// that name): it must be shipped under a new name, from 0.
    Truncated { size: u64, offset: u64 },
    /// Stop requested.
    Stopped,
}

/// A message for the person watching (printed by the scanner, above the progress bars).
pub type Say<'a> = &'a dyn Fn(String);

/// Ships `job` until it is done, truncated or stopped. Network and receiver errors are retried
/// forever with backoff (said once per failure streak, and again on recovery); a receiver that
/// is down is the normal case this program exists for.
pub fn run(job: &Job, settings: &Settings, say: Say<'_>) -> Outcome {
    let mut backoff = Backoff::new(settings.max_backoff);
    let mut failing = false;
    loop {
        if settings.stop.load(Ordering::Relaxed) {
            return Outcome::Stopped;
        }
        let mut connected = false;
        match session(job, settings, &mut connected, &mut |offset| {
            if failing {
                say(format!(
                    "{}: connected again, resuming at {offset}",
                    job.stored
                ));
            }
        }) {
            Ok(Some(outcome)) => return outcome,
            // `--once`: all sent and the write side closed; the next session checks the offset.
            Ok(None) => {
                backoff.reset();
                failing = false;
            }
            Err(e) => {
                if connected {
                    backoff.reset();
                    failing = false;
                }
                if !failing {
                    say(format!("{}: {e}; retrying with backoff", job.stored));
                }
                failing = true;
                if !sleep_unless_stopped(backoff.next(), &settings.stop) {
                    return Outcome::Stopped;
                }
            }
        }
    }
}

/// One connection: handshake, then send. `Ok(None)` when `--once` sent everything and closed
/// its side (the caller reconnects to read the offset back). `connected` is set, and
/// `on_offset` called, once the receiver answered an offset, so a later failure starts its
/// backoff afresh.
fn session(
    job: &Job,
    settings: &Settings,
    connected: &mut bool,
    on_offset: &mut dyn FnMut(u64),
) -> io::Result<Option<Outcome>> {
    let mut stream = connect(settings)?;
    let line =
        ship::name_line(&job.stored).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    stream.write_all(&line)?;
    let offset = read_offset(&mut stream, settings.timeout)?;
    *connected = true;
    on_offset(offset);
    let size = job.file.metadata()?.len();
    if offset > size {
        return Ok(Some(Outcome::Truncated { size, offset }));
    }
    job.position.store(offset, Ordering::Relaxed);
    if settings.once && offset == size {
        return Ok(Some(Outcome::Done { offset }));
    }
    stream.tcp().set_write_timeout(Some(SOCKET_SLICE))?;
    let mut pos = offset;
    let mut buf = Vec::new();
    let mut copy = Copy::Sendfile;
    let mut quiet_since: Option<Instant> = None;
    loop {
        if settings.stop.load(Ordering::Relaxed) {
            return Ok(Some(Outcome::Stopped));
        }
        let meta = job.file.metadata()?;
        let size = meta.len();
        if size < pos {
            return Ok(Some(Outcome::Truncated { size, offset: pos }));
        }
        if size > pos {
            let before = pos;
            let sent = if stream.is_tls() {
                stream.send_tls(&job.file, &mut pos, size, &mut buf, &settings.stop)
            } else {
                send(
                    stream.tcp(),
                    &job.file,
                    &mut pos,
                    size,
                    &mut copy,
                    &settings.stop,
                )
            };
            settings.sent.fetch_add(pos - before, Ordering::Relaxed);
            sent?;
            job.position.store(pos, Ordering::Relaxed);
            quiet_since = None;
            continue;
        }
        // At the end of the file.
        if settings.once {
            finish(&mut stream, settings.timeout, &settings.stop)?;
            return Ok(None);
        }
        let quiet = quiet_since.get_or_insert_with(Instant::now).elapsed();
        let deleted = meta.nlink() == 0;
        let released = job.release.load(Ordering::Relaxed) && quiet >= settings.grace;
        if deleted || released || settings.slots_wanted.load(Ordering::Relaxed) {
            return Ok(Some(Outcome::Done { offset: pos }));
        }
        // Polling for appends is the behaviour: a file has no readiness to wait on (inotify
        // would say "modified" no sooner than the next poll matters at this interval).
        std::thread::sleep(settings.follow_interval);
    }
}

fn connect(settings: &Settings) -> io::Result<Link> {
    let stream = TcpStream::connect_timeout(&settings.addr, settings.timeout)?;
    stream.set_nodelay(true)?;
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
    Link::new(stream, settings.tls.as_ref(), settings.timeout)
}

/// Reads the receiver's answer, byte by byte up to its newline (it is at most a few bytes, and
/// nothing after it may be consumed: a receiver sends nothing more anyway). Bounded by
/// `protocol::ship`'s limits (`MAX_ANSWER_LINE`) and by `timeout`.
fn read_offset(stream: &mut Link, timeout: Duration) -> io::Result<u64> {
    stream.tcp().set_read_timeout(Some(timeout))?;
    let mut buf = Vec::with_capacity(32);
    let mut byte = [0u8; 1];
    loop {
        let n = stream.read(&mut byte).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => io::Error::new(
                io::ErrorKind::TimedOut,
                "no offset answer from the receiver in time",
            ),
            _ => e,
        })?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the receiver closed the connection without answering an offset",
            ));
        }
        buf.push(byte[0]);
        match ship::parse_offset_line(&buf) {
            Ok(Read::Done {
                value: Answer::Offset(offset),
                ..
            }) => return Ok(offset),
            Ok(Read::Done {
                value: Answer::Refused(why),
                ..
            }) => {
                return Err(io::Error::other(format!("the receiver refused: {why}")));
            }
            Ok(Read::Incomplete) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Copy {
    Sendfile,
    ReadWrite,
}

/// Sends `file[pos..end]`, advancing `pos` as bytes leave. A full socket (the receiver is slow:
/// TCP flow control) only waits; the stop flag is looked at between slices.
fn send(
    stream: &TcpStream,
    file: &File,
    pos: &mut u64,
    end: u64,
    copy: &mut Copy,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut buf = Vec::new();
    while *pos < end {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let want = usize::try_from(end - *pos)
            .unwrap_or(usize::MAX)
            .min(SENDFILE_CHUNK);
        let sent = match *copy {
            Copy::Sendfile => {
                let mut offset = *pos;
                match rustix::fs::sendfile(stream, file, Some(&mut offset), want) {
                    Ok(n) => Ok(n),
                    Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
                        *copy = Copy::ReadWrite;
                        continue;
                    }
                    Err(e) => Err(io::Error::from(e)),
                }
            }
            Copy::ReadWrite => {
                buf.resize(COPY_BUFFER, 0);
                read_write(stream, file, *pos, &mut buf[..want.min(COPY_BUFFER)])
            }
        };
        match sent {
            // The file shrank under us; the caller's next look sees it.
            Ok(0) => return Ok(()),
            Ok(n) => *pos += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The fallback copy: one positioned read, then a write of what was read (short writes
/// retried here so `pos` only ever counts bytes that left).
fn read_write(mut stream: &TcpStream, file: &File, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::unix::fs::FileExt as _;
    let n = file.read_at(buf, pos)?;
    let mut done = 0;
    while done < n {
        match stream.write(&buf[done..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(m) => done += m,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `--once` after the last byte: close our side, then wait (bounded) for the receiver to close
/// its own, which a receiver does once it has stored everything before the end.
fn finish(stream: &mut Link, timeout: Duration, stop: &AtomicBool) -> io::Result<()> {
    stream.shutdown_write(stop)?;
    stream.tcp().set_read_timeout(Some(timeout))?;
    let mut sink = [0u8; 512];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // A receiver that keeps the connection open: the offset check that follows decides.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Sleeps `pause` in short slices, returning false as soon as `stop` is set.
fn sleep_unless_stopped(pause: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + pause;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        // The backoff itself: this pause is the behaviour, sliced so a stop is seen quickly.
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Capped exponential backoff with full jitter: each delay is uniform in [0, min(cap, start *
/// 2^n)], so a thousand workers that lost the receiver together do not come back together.
struct Backoff {
    ceiling: Duration,
    cap: Duration,
}

impl Backoff {
    fn new(cap: Duration) -> Backoff {
        Backoff {
            ceiling: BACKOFF_START.min(cap),
            cap,
        }
    }

    fn reset(&mut self) {
        self.ceiling = BACKOFF_START.min(self.cap);
    }

    fn next(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.cap);
        // A failed random source only loses the jitter, never the backoff.
        let random = getrandom::u64().unwrap_or(u64::MAX);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(random % nanos.saturating_add(1)).max(Duration::from_millis(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let cap = Duration::from_secs(2);
        let mut b = Backoff::new(cap);
        for _ in 0..20 {
            assert!(b.next() <= cap);
        }
        assert_eq!(b.ceiling, cap);
        b.reset();
        assert_eq!(b.ceiling, BACKOFF_START);
        assert!(b.next() <= BACKOFF_START);
    }
}
