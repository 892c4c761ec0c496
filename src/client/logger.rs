//! [`Logger`]: the client a program adds once and forgets. The caller's thread only puts a record
//! in a bounded in-memory queue; one background thread (the transmitter) batches, sends, reads
//! acks, reconnects and spools. No async runtime.
//!
//! ```text
//!  caller threads        transmitter thread ("logmill-client")      reader thread (per link)
//!  log(record) ──push──▶ queue ──take all──▶ batch frames ──write──▶ socket ──acks──┐
//!                        (bounded)            unacked (in flight)◀── pop acked ◀─────┘
//!                                              │ link lost / queue over its bound
//!                                              ▼
//!                                            spool/ (append-only segments)
//! ```
//!
//! Order is kept across all three places a record can be: records in flight (sent, not acked)
//! are older than those in the spool, which are older than those in the queue. A new link first
//! resends what is in flight, then replays the spool, then takes the queue.
//!
//! The example of `clients/rust/README.md`, compiled here:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use logmill::client::{ClientOptions, Logger, LoggerOptions};
//! let hello = ClientOptions::new("shop").instance("web-1").token("TOKEN"); // logmill token issue --app shop
//! let logger = Logger::start("127.0.0.1:4020", LoggerOptions::new(hello).spool("/var/spool/shop", 256 << 20))?;
//! logger.log(logmill::record::Record { body: logmill::record::Body::Message("checkout done".into()), ..Default::default() })?;
//! logger.close(std::time::Duration::from_secs(5))?; // waits for the acks
//! # Ok(())
//! # }
//! ```
//!
//! At-least-once: a record leaves memory (or the spool) only when an ack covers it. A link lost
//! after the server wrote a record but before its ack reached us makes that record go again: the
//! duplicate window is the records in flight at the break (at most
//! [`LoggerOptions::max_in_flight`]). Acked records are never sent twice.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::blocking::Client;
use super::error::Error as ClientError;
use super::framing::{ClientOptions, Inbox, Reply};
use super::spool::Spool;
use super::tls::Socket;
use crate::protocol::native::ErrorKind;
use crate::protocol::native_encode;
use crate::record::{Body, Record};

/// Records per batch frame. The server decodes, formats and acks a frame as a unit; past a few
/// hundred records the per-frame costs are lost in the noise, and 1024 records of a few hundred
/// bytes stay far below the server's default 1 MiB frame.
pub const DEFAULT_BATCH: usize = 1024;
/// Records the queue holds before the [`WhenFull`] policy applies (or, with a spool, before
/// the transmitter moves them to disk): about 20 MiB of 200-byte records.
pub const DEFAULT_QUEUE: usize = 64 * 1024;
/// Records sent and not yet acked, at most. Bounds the memory held for resending and the
/// duplicate window after a lost link.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16 * 1024;
/// Reconnect backoff: the first retry after about this long, doubling up to the cap. Each wait
/// is drawn between half and all of the current step (jitter), so many clients cut off at once
/// do not come back at once.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// TCP keepalive: a silent peer (a host gone, a NAT that forgot us) is noticed within about
/// `time + 3 * interval` even when nothing is sent.
const KEEPALIVE_TIME: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// A spool's default bound.
pub const DEFAULT_SPOOL_BYTES: u64 = 256 << 20;

/// What [`Logger::log`] does when the queue is full and there is no spool to spill to (with a
/// spool the transmitter empties the queue to disk and the caller waits at most a disk write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait up to this long for room, then drop the record (counted) and say so.
    Block(Duration),
    /// Drop the record at once, counted in [`Stats::dropped`].
    Drop,
}

/// How a [`Logger`] connects, batches and falls back.
#[derive(Clone, Debug)]
pub struct LoggerOptions {
    hello: ClientOptions,
    queue: usize,
    batch: usize,
    max_in_flight: usize,
    when_full: WhenFull,
    spool: Option<(PathBuf, u64)>,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl LoggerOptions {
    /// Connects with `hello` (app, instance, token; acks are always asked for), with the
    /// defaults above, no spool, and [`WhenFull::Block`] for one second.
    pub fn new(hello: ClientOptions) -> LoggerOptions {
        LoggerOptions {
            hello: hello.want_acks(true),
            queue: DEFAULT_QUEUE,
            batch: DEFAULT_BATCH,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            when_full: WhenFull::Block(Duration::from_secs(1)),
            spool: None,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }

    /// Changes the hello (a token, an instance) of options already built.
    #[must_use]
    pub fn map_hello(mut self, f: impl FnOnce(ClientOptions) -> ClientOptions) -> LoggerOptions {
        self.hello = f(self.hello).want_acks(true);
        self
    }

    #[must_use]
    pub fn queue(mut self, records: usize) -> LoggerOptions {
        self.queue = records.max(1);
        self
    }

    #[must_use]
    pub fn batch(mut self, records: usize) -> LoggerOptions {
        self.batch = records.max(1);
        self
    }

    #[must_use]
    pub fn max_in_flight(mut self, records: usize) -> LoggerOptions {
        self.max_in_flight = records.max(1);
        self
    }

    #[must_use]
    pub fn when_full(mut self, policy: WhenFull) -> LoggerOptions {
        self.when_full = policy;
        self
    }

    /// Spills to `dir` (created if needed) while the server is unreachable or the queue is
    /// full, keeping at most `max_bytes` there (oldest records dropped past it, counted).
    #[must_use]
    pub fn spool(mut self, dir: impl Into<PathBuf>, max_bytes: u64) -> LoggerOptions {
        self.spool = Some((dir.into(), max_bytes));
        self
    }

    #[must_use]
    pub fn backoff(mut self, min: Duration, max: Duration) -> LoggerOptions {
        self.backoff_min = min.max(Duration::from_millis(1));
        self.backoff_max = max.max(self.backoff_min);
        self
    }
}

/// Why a [`Logger`] call failed.
#[derive(Debug)]
pub enum Error {
    /// The server refused the hello (a bad, expired or revoked token: `Unauthorized`). The
    /// logger has stopped: retrying with the same token cannot succeed.
    Refused {
        kind: Option<ErrorKind>,
        message: String,
    },
    /// The queue was full and the record was dropped (counted in [`Stats::dropped`]).
    Dropped,
    /// [`Logger::close`] was called.
    Closed,
    /// `pending` records were not acked in time. They are still held (and, at close, spooled
    /// when there is a spool; otherwise lost, which the count says).
    Timeout { pending: u64 },
    /// The spool directory cannot be opened.
    Spool(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Refused {
                kind: Some(ErrorKind::Unauthorized),
                message,
            } => write!(
                f,
                "the server refused the token ({message}); the logger has stopped: issue a new \
                 token with `logmill token issue --app NAME`"
            ),
            Error::Refused { kind, message } => {
                write!(f, "the server refused the connection ({kind:?}): {message}")
            }
            Error::Dropped => f.write_str("the queue is full: the record was dropped"),
            Error::Closed => f.write_str("the logger is closed"),
            Error::Timeout { pending } => write!(f, "{pending} records not acked in time"),
            Error::Spool(e) => write!(f, "cannot open the spool: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Spool(e) => Some(e),
            _ => None,
        }
    }
}

/// Counters, as of the call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records the server acked.
    pub acked: u64,
    /// Records dropped: queue full without a spool, the spool's bound, or a record larger than
    /// the server's largest frame.
    pub dropped: u64,
    /// Records not acked yet (queue, in flight and spool).
    pub pending: u64,
    /// Links made (the first connect and every reconnect).
    pub connects: u64,
    pub connected: bool,
}

/// A handle for logging: cheap to share (`&Logger` is `Sync`); the background thread stops at
/// [`close`](Logger::close) or when the logger is dropped (which closes with a 5 s timeout).
pub struct Logger {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    queue_bound: usize,
    when_full: WhenFull,
}

/// How long dropping a logger waits for acks (or to spool) before it gives up.
const DROP_TIMEOUT: Duration = Duration::from_secs(5);

struct Shared {
    state: Mutex<State>,
    /// Wakes the transmitter: a record in an empty queue, an ack, a lost link, close.
    wake: Condvar,
    /// Wakes callers waiting in `flush`, `close` or on a full queue.
    progress: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves counters that are still consistent
        // enough to go on with; logging must not panic the caller.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct State {
    /// A deque, so that taking the oldest part moves only what is taken.
    queue: VecDeque<Record<'static>>,
    /// Records the transmitter holds outside the queue: in flight, spooled, being moved.
    held: u64,
    acked: u64,
    dropped: u64,
    connects: u64,
    connected: bool,
    closing: Option<Instant>,
    /// The transmitter has returned.
    finished: bool,
    fatal: Option<(Option<ErrorKind>, String)>,
    transmitter_waiting: bool,
    /// Written by the current link's reader thread, tagged with the link's number.
    link: u64,
    link_acked: u64,
    link_error: Option<ClientError>,
}

impl State {
    fn pending(&self) -> u64 {
        self.queue.len() as u64 + self.held
    }

    fn refused(&self) -> Option<Error> {
        self.fatal.as_ref().map(|(kind, message)| Error::Refused {
            kind: *kind,
            message: message.clone(),
        })
    }
}

impl Logger {
    /// Starts the transmitter for the server at `addr` (resolved at each connect). Returns at
    /// once: the first connect happens in the background, and records logged meanwhile wait in
    /// the queue (or the spool). A refused token shows at the next `log`, `flush` or `close`.
    ///
    /// # Errors
    /// [`Error::Spool`] when the spool directory cannot be created or read.
    pub fn start(addr: impl Into<String>, options: LoggerOptions) -> Result<Logger, Error> {
        let spool = match &options.spool {
            Some((dir, max)) => Some(Spool::open(dir, *max).map_err(Error::Spool)?),
            None => None,
        };
        let state = State {
            held: spool.as_ref().map_or(0, Spool::records),
            ..State::default()
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            wake: Condvar::new(),
            progress: Condvar::new(),
        });
        let queue_bound = options.queue;
        let when_full = options.when_full;
        let transmitter = Transmitter {
            shared: Arc::clone(&shared),
            addr: addr.into(),
            backoff: options.backoff_min,
            options,
            link: None,
            links: 0,
            unacked: VecDeque::new(),
            acked_in_memory: 0,
            spool,
            retry_at: Instant::now(),
            out: Vec::new(),
            max_frame: usize::MAX,
        };
        let thread = std::thread::Builder::new()
            .name("logmill-client".into())
            .spawn(move || transmitter.run())
            .map_err(Error::Spool)?;
        Ok(Logger {
            shared,
            thread: Some(thread),
            queue_bound,
            when_full,
        })
    }

    /// Queues `record` for sending and returns: no network, no disk on this thread. The lock
    /// taken is uncontended unless the transmitter is taking the queue that instant; the
    /// transmitter is woken only when it sleeps (one wake per batch, not per record).
    ///
    /// # Errors
    /// [`Error::Refused`] once the server refused the token, [`Error::Closed`] after close,
    /// [`Error::Dropped`] when the queue stayed full (see [`WhenFull`]).
    pub fn log(&self, record: Record<'static>) -> Result<(), Error> {
        let mut st = self.shared.lock();
        if let Some(e) = st.refused() {
            return Err(e);
        }
        if st.closing.is_some() {
            return Err(Error::Closed);
        }
        if st.queue.len() >= self.queue_bound {
            self.shared.wake.notify_one();
            let deadline = match self.when_full {
                WhenFull::Drop => Instant::now(),
                WhenFull::Block(wait) => Instant::now() + wait,
            };
            while st.queue.len() >= self.queue_bound && st.fatal.is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    st.dropped += 1;
                    return Err(Error::Dropped);
                }
                st = self
                    .shared
                    .progress
                    .wait_timeout(st, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        st.queue.push_back(record);
        if st.transmitter_waiting {
            st.transmitter_waiting = false;
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Waits until every record logged so far (and any logged meanwhile) is acked.
    ///
    /// # Errors
    /// [`Error::Timeout`] with the records still pending, [`Error::Refused`] when the token was
    /// refused.
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        if st.pending() > 0 && st.transmitter_waiting {
            st.transmitter_waiting = false;
            self.shared.wake.notify_one();
        }
        loop {
            if let Some(e) = st.refused() {
                return Err(e);
            }
            if st.pending() == 0 {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || st.finished {
                return Err(Error::Timeout {
                    pending: st.pending(),
                });
            }
            st = self
                .shared
                .progress
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Stops taking records, waits up to `timeout` for every record to be acked, then stops the
    /// transmitter. What is not acked by then goes to the spool if there is one.
    ///
    /// # Errors
    /// [`Error::Timeout`] with the records not acked (spooled if there is a spool, else lost);
    /// [`Error::Refused`] when the token was refused.
    pub fn close(mut self, timeout: Duration) -> Result<(), Error> {
        self.shutdown(timeout)
    }

    fn shutdown(&mut self, timeout: Duration) -> Result<(), Error> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        {
            let mut st = self.shared.lock();
            st.closing = Some(Instant::now() + timeout);
            self.shared.wake.notify_one();
        }
        if thread.join().is_err() {
            eprintln!("logmill client: the transmitter thread panicked");
        }
        let st = self.shared.lock();
        if let Some(e) = st.refused() {
            return Err(e);
        }
        match st.pending() {
            0 => Ok(()),
            pending => Err(Error::Timeout { pending }),
        }
    }

    pub fn stats(&self) -> Stats {
        let st = self.shared.lock();
        Stats {
            acked: st.acked,
            dropped: st.dropped,
            pending: st.pending(),
            connects: st.connects,
            connected: st.connected,
        }
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown(DROP_TIMEOUT) {
            eprintln!("logmill client: closing: {e}");
        }
    }
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger")
            .field("stats", &self.stats())
            .finish()
    }
}

/// One connection: the socket the transmitter writes, and the reader thread that reads acks.
struct Link {
    stream: Socket,
    reader: JoinHandle<()>,
    number: u64,
    acked: u64,
}

/// What the transmitter took from the shared state to work on without the lock.
enum Work {
    /// Records from the queue to send.
    Send(Vec<Record<'static>>),
    /// Records from the queue to spool (no link, or the queue over its bound).
    Spool(Vec<Record<'static>>),
    ReplaySpool,
    Connect,
    LinkLost(ClientError),
    /// Close: everything acked, or the deadline passed.
    Stop,
}

struct Transmitter {
    shared: Arc<Shared>,
    addr: String,
    options: LoggerOptions,
    link: Option<Link>,
    links: u64,
    /// Records sent on the current link (or the last one) and not acked, oldest first; the
    /// first `acked_in_memory` of them are acked and not yet dropped.
    unacked: VecDeque<Record<'static>>,
    acked_in_memory: usize,
    spool: Option<Spool>,
    retry_at: Instant,
    backoff: Duration,
    /// Frames are encoded here and written whole; reused across batches.
    out: Vec<u8>,
    /// The server's largest frame payload (from its welcome).
    max_frame: usize,
}

impl Transmitter {
    fn run(mut self) {
        loop {
            let work = self.next_work();
            self.release_acked();
            match work {
                Work::Send(records) => {
                    if let Err(e) = self.send(records) {
                        self.lose_link(e);
                    }
                }
                Work::Spool(records) => self.spool(records),
                Work::ReplaySpool => self.replay_spool(),
                Work::Connect => self.connect(),
                Work::LinkLost(e) => self.lose_link(e),
                Work::Stop => break,
            }
        }
        self.stop();
    }

    /// Records sent and not acked.
    fn in_flight(&self) -> usize {
        self.unacked.len() - self.acked_in_memory
    }

    fn release_acked(&mut self) {
        self.unacked.drain(..self.acked_in_memory);
        self.acked_in_memory = 0;
    }

    fn spool_is_empty(&self) -> bool {
        self.spool.as_ref().is_none_or(Spool::is_empty)
    }

    /// Takes the next piece of work from the shared state, waiting when there is none. The
    /// only place the transmitter holds the lock for more than a counter update.
    fn next_work(&mut self) -> Work {
        let shared = Arc::clone(&self.shared);
        let mut st = shared.lock();
        loop {
            self.absorb_acks(&mut st);
            if let Some(link) = &self.link
                && st.link == link.number
                && let Some(e) = st.link_error.take()
            {
                return Work::LinkLost(e);
            }
            if st.fatal.is_some() {
                return Work::Stop;
            }
            let now = Instant::now();
            let room = self.options.max_in_flight.saturating_sub(self.in_flight());
            if self.link.is_some() && room > 0 {
                if !self.spool_is_empty() {
                    return Work::ReplaySpool;
                }
                if !st.queue.is_empty() {
                    let take = st.queue.len().min(room);
                    // Usually the whole queue: swapped for an empty one, not copied, so the
                    // callers wait on the lock for a pointer swap only.
                    let records = if take == st.queue.len() {
                        let capacity = st.queue.capacity();
                        Vec::from(std::mem::replace(
                            &mut st.queue,
                            VecDeque::with_capacity(capacity),
                        ))
                    } else {
                        st.queue.drain(..take).collect()
                    };
                    st.held += take as u64;
                    self.shared.progress.notify_all();
                    return Work::Send(records);
                }
            }
            // No link, or too much in flight: spill the queue to disk rather than make the
            // callers wait (with no link at once; with one, when the queue is at its bound).
            if self.spool.is_some()
                && !st.queue.is_empty()
                && (self.link.is_none() || st.queue.len() >= self.options.queue)
            {
                let records = Vec::from(std::mem::take(&mut st.queue));
                st.held += records.len() as u64;
                self.shared.progress.notify_all();
                return Work::Spool(records);
            }
            if let Some(deadline) = st.closing
                && (st.pending() == 0 || now >= deadline)
            {
                return Work::Stop;
            }
            // Connect when there is something to send: an idle program keeps no link open
            // (and one the server closed for idleness is not remade until needed).
            let want_link = self.link.is_none() && st.pending() > 0;
            if want_link && now >= self.retry_at {
                return Work::Connect;
            }
            let mut wait = Duration::from_secs(3600);
            if want_link {
                wait = wait.min(self.retry_at - now);
            }
            if let Some(deadline) = st.closing {
                wait = wait.min(deadline - now);
            }
            st.transmitter_waiting = true;
            st = shared
                .wake
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.transmitter_waiting = false;
        }
    }

    /// Drops the records the current link's acks cover.
    fn absorb_acks(&mut self, st: &mut State) {
        let in_flight = self.in_flight() as u64;
        let Some(link) = &mut self.link else {
            return;
        };
        if st.link != link.number || st.link_acked <= link.acked {
            return;
        }
        let newly = st.link_acked - link.acked;
        if newly > in_flight {
            st.link_error = Some(ClientError::Unexpected(format!(
                "an ack for {newly} more records than the {in_flight} in flight"
            )));
            return;
        }
        link.acked = st.link_acked;
        // Dropped after the lock is released (`release_acked`): freeing thousands of records
        // must not hold up the callers.
        self.acked_in_memory += newly as usize;
        st.held -= newly;
        st.acked += newly;
        self.shared.progress.notify_all();
    }

    /// Sends `records` on the link in batch frames, after the records in flight. They count as
    /// in flight from before the write, so a failed write resends them.
    fn send(&mut self, records: Vec<Record<'static>>) -> Result<(), ClientError> {
        let Some(link) = &mut self.link else {
            self.unacked.extend(records);
            return Ok(());
        };
        // Batching happens here: one frame per `batch` records (or per half the server's frame
        // size, whichever comes first), one write per call.
        self.out.clear();
        let budget = self.max_frame / 2;
        let mut records = records;
        let mut oversized = Vec::new();
        let mut start = 0;
        while start < records.len() {
            let mut end = start + 1;
            let mut bytes = size(&records[start]);
            while end < records.len()
                && end - start < self.options.batch
                && bytes + size(&records[end]) <= budget
            {
                bytes += size(&records[end]);
                end += 1;
            }
            let before = self.out.len();
            native_encode::encode_records(&records[start..end], &mut self.out);
            if end - start == 1 && self.out.len() - before - 4 > self.max_frame {
                // One record the server can never take: sending it would only get the link
                // closed again and again.
                self.out.truncate(before);
                oversized.push(start);
            }
            start = end;
        }
        if !oversized.is_empty() {
            eprintln!(
                "logmill client: dropped {} records larger than the server's largest frame ({} \
                 bytes)",
                oversized.len(),
                self.max_frame
            );
            for &i in oversized.iter().rev() {
                records.remove(i);
            }
            let mut st = self.shared.lock();
            st.held -= oversized.len() as u64;
            st.dropped += oversized.len() as u64;
        }
        self.unacked.extend(records);
        let written = link.stream.write_all(&self.out);
        self.out.clear();
        written.map_err(ClientError::Io)
    }

    fn spool(&mut self, records: Vec<Record<'static>>) {
        let Some(spool) = &mut self.spool else {
            return;
        };
        let before = spool.dropped();
        let appended = spool.append(&records, self.options.batch);
        let dropped = spool.dropped() - before;
        let mut st = self.shared.lock();
        st.held -= dropped;
        st.dropped += dropped;
        if let Err(e) = appended {
            // The disk refuses: keep the records in memory, at the front of the queue, and try
            // the network again later.
            eprintln!("logmill client: cannot write the spool: {e}");
            st.held -= records.len() as u64;
            let newer = std::mem::replace(&mut st.queue, VecDeque::from(records));
            st.queue.extend(newer);
        }
    }

    /// Sends the oldest spool segment.
    fn replay_spool(&mut self) {
        let Some(spool) = &mut self.spool else {
            return;
        };
        match spool.take_oldest() {
            Ok(records) => {
                if let Err(e) = self.send(records) {
                    self.lose_link(e);
                }
            }
            Err(e) => {
                eprintln!("logmill client: cannot read the spool: {e}");
                self.retry_at = Instant::now() + self.options.backoff_max;
                self.lose_link(ClientError::Io(e));
            }
        }
    }

    fn connect(&mut self) {
        let welcomed = Client::connect(self.addr.as_str(), &self.options.hello).and_then(|c| {
            let max_frame = c.welcome().max_frame();
            let stream = c.into_stream();
            keepalive(stream.tcp()).map_err(ClientError::Io)?;
            stream
                .tcp()
                .set_read_timeout(None)
                .map_err(ClientError::Io)?;
            let reader = stream.try_clone().map_err(ClientError::Io)?;
            Ok((stream, reader, max_frame))
        });
        let (stream, reader, max_frame) = match welcomed {
            Ok(parts) => parts,
            Err(ClientError::Refused { kind, message })
                if kind == Some(ErrorKind::Unauthorized) =>
            {
                eprintln!("logmill client: the server refused the token: {message}");
                let mut st = self.shared.lock();
                st.fatal = Some((kind, message));
                self.shared.progress.notify_all();
                return;
            }
            Err(e) => {
                self.schedule_retry(&e);
                return;
            }
        };
        self.links += 1;
        let number = self.links;
        self.max_frame = usize::try_from(max_frame).unwrap_or(usize::MAX);
        {
            let mut st = self.shared.lock();
            st.link = number;
            st.link_acked = 0;
            st.link_error = None;
            st.connects += 1;
            st.connected = true;
        }
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("logmill-client-acks".into())
            .spawn(move || read_acks(reader, &shared, number));
        let reader = match spawned {
            Ok(reader) => reader,
            Err(e) => {
                self.schedule_retry(&ClientError::Io(e));
                return;
            }
        };
        self.link = Some(Link {
            stream,
            reader,
            number,
            acked: 0,
        });
        self.backoff = self.options.backoff_min;
        // The new connection's acks count from zero: resend everything in flight, in order.
        self.release_acked();
        let resend: Vec<_> = self.unacked.drain(..).collect();
        if let Err(e) = self.send(resend) {
            self.lose_link(e);
        }
    }

    fn schedule_retry(&mut self, e: &ClientError) {
        // Jitter: between half and all of the step.
        let step = self.backoff.as_nanos() as u64;
        let jitter = getrandom::u64().unwrap_or(0) % (step / 2 + 1);
        let wait = Duration::from_nanos(step / 2 + jitter);
        self.retry_at = Instant::now() + wait;
        if self.backoff == self.options.backoff_min {
            eprintln!(
                "logmill client: cannot reach {}: {e}; retrying with backoff",
                self.addr
            );
        }
        self.backoff = (self.backoff * 2).min(self.options.backoff_max);
    }

    fn lose_link(&mut self, e: ClientError) {
        let Some(link) = self.link.take() else {
            return;
        };
        close_link(link);
        let mut st = self.shared.lock();
        st.connected = false;
        if let ClientError::Refused {
            kind: Some(ErrorKind::Unauthorized),
            message,
        } = &e
        {
            st.fatal = Some((Some(ErrorKind::Unauthorized), message.clone()));
            self.shared.progress.notify_all();
            return;
        }
        drop(st);
        self.schedule_retry(&e);
    }

    /// At close: whatever is not acked goes to the spool, oldest first, if there is one.
    fn stop(&mut self) {
        if let Some(link) = self.link.take() {
            close_link(link);
        }
        self.release_acked();
        let mut st = self.shared.lock();
        if let Some(spool) = &mut self.spool {
            let queue = Vec::from(std::mem::take(&mut st.queue));
            st.held += queue.len() as u64;
            let unacked: Vec<_> = self.unacked.drain(..).collect();
            let before = spool.dropped();
            let saved = spool
                .prepend(&unacked)
                .and_then(|()| spool.append(&queue, self.options.batch));
            let dropped = spool.dropped() - before;
            st.held -= dropped;
            st.dropped += dropped;
            if let Err(e) = saved {
                eprintln!("logmill client: cannot write the spool at close: {e}");
            }
        }
        st.connected = false;
        st.finished = true;
        self.shared.progress.notify_all();
    }
}

/// Unix nanoseconds now, for records made by the `log` and `tracing` integrations: the time
/// of the call, not of the arrival at the server.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Shuts the socket down, which ends the reader thread's blocking read, and joins the reader.
fn close_link(link: Link) {
    if let Err(e) = link.stream.tcp().shutdown(Shutdown::Both)
        && e.kind() != io::ErrorKind::NotConnected
    {
        eprintln!("logmill client: closing the socket: {e}");
    }
    if link.reader.join().is_err() {
        eprintln!("logmill client: the ack reader panicked");
    }
}

/// An upper estimate of a record's encoded size, for cutting batches below the frame limit.
fn size(r: &Record<'_>) -> usize {
    let body = match &r.body {
        Body::Message(m) | Body::Json(m) => m.len(),
    };
    let fields: usize = r
        .fields
        .iter()
        .map(|(k, v)| k.len() + v.text().len() + 32)
        .sum();
    256 + body
        + r.logger.len()
        + r.host.len()
        + r.service.len()
        + r.module.len()
        + r.file.len()
        + r.function.len()
        + r.process_name.len()
        + r.thread_name.len()
        + r.stack_trace.len()
        + fields
}

fn keepalive(stream: &TcpStream) -> io::Result<()> {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL);
    socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive)
}

/// The reader thread of link `number`: reads acks until the socket fails or closes, and reports
/// both to the transmitter through the shared state.
fn read_acks(mut stream: Socket, shared: &Shared, number: u64) {
    let mut inbox = Inbox::new();
    let mut chunk = [0u8; 4096];
    let error = 'read: loop {
        loop {
            match inbox.next_reply() {
                Ok(Some(Reply::Ack(ack))) => {
                    let mut st = shared.lock();
                    if st.link != number {
                        return;
                    }
                    st.link_acked = ack.count();
                    if st.transmitter_waiting {
                        st.transmitter_waiting = false;
                        shared.wake.notify_one();
                    }
                }
                Ok(Some(Reply::Welcome(_))) => {
                    break 'read ClientError::Unexpected("a second welcome".into());
                }
                Ok(None) => break,
                Err(e) => break 'read e,
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => break ClientError::Closed,
            Ok(n) => inbox.extend(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break ClientError::Io(e),
        }
    };
    let mut st = shared.lock();
    if st.link == number {
        st.link_error = Some(error);
        st.transmitter_waiting = false;
        shared.wake.notify_one();
    }
}
