//! State shared by every thread: counters for `health` and the stats line, the pending-bytes
//! gauge that drives backpressure, the input budget (`server::budget`), and one [`Mailbox`] per
//! event loop through which the writer hands back completions.
//!
//! Everything here is an atomic or a short-held mutex: the hot path touches `pending_bytes` once
//! per batch (not per record) and the mailbox once per writer cycle.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crate::config::Config;
use crate::server::budget::InputBudget;
use crate::storage::{Batch, Completion};

/// Where the writer leaves completions for one loop, and how it wakes that loop.
pub struct Mailbox {
    pub completions: Mutex<Vec<Completion>>,
    pub waker: mio::Waker,
    /// Set by the loop when it stopped reading because `pending_bytes` was full; the writer wakes
    /// the loop once it has written enough to make room.
    pub paused: AtomicBool,
    /// Connections the loop holds, published by the loop itself: other loops read it to leave
    /// new connections to the least loaded loop.
    pub connections: AtomicUsize,
    /// Set by a loop that left waiting connections to this one (see `EventLoop::over_share`):
    /// accept even though the listener's edge may have been consumed already.
    pub accept_hint: AtomicBool,
    /// Batches the writer has written and hands back, emptied, for reuse: a loop that
    /// allocated its batch buffers anew each turn had glibc give their pages back to the kernel
    /// and fault them in again, zeroed (22,000 page faults per 2 M records).
    pub spare_batches: Mutex<Vec<Batch>>,
}

impl Mailbox {
    pub fn new(waker: mio::Waker) -> Self {
        Mailbox {
            completions: Mutex::new(Vec::new()),
            waker,
            paused: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            accept_hint: AtomicBool::new(false),
            spare_batches: Mutex::new(Vec::new()),
        }
    }

    /// Wakes the loop. A failed wake is logged by the caller's thread only as a last resort: it
    /// means the loop's poll is gone, which happens only while the process exits.
    pub fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            eprintln!("logmill: could not wake an event loop: {e}");
        }
    }
}

pub struct Shared {
    pub name: String,
    pub started: Instant,
    pub max_pending: usize,
    pub connections: AtomicUsize,
    pub records_received: AtomicU64,
    pub records_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub decode_errors: AtomicU64,
    pub refused_connections: AtomicU64,
    /// Bytes of batches sent to the writer and not yet written.
    pub pending_bytes: AtomicUsize,
    /// The writer could not write after its retries; it keeps the records and keeps trying.
    pub degraded: AtomicBool,
    pub shutdown: AtomicBool,
    /// The next sequence number to give: each loop takes a range for each batch it sends
    /// (`storage::Batch::number`). Set from the files by the writer before the loops start.
    pub next_seq: AtomicU64,
    pub mailboxes: Vec<Mailbox>,
    /// Unfinished input held by the loops' connections (`--max-input`).
    input: InputBudget,
}

impl Shared {
    pub fn new(name: String, max_pending: usize, mailboxes: Vec<Mailbox>) -> Self {
        Shared {
            name,
            started: Instant::now(),
            max_pending,
            connections: AtomicUsize::new(0),
            records_received: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            decode_errors: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
            pending_bytes: AtomicUsize::new(0),
            degraded: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            next_seq: AtomicU64::new(1),
            input: InputBudget::new(Config::default().max_input, mailboxes.len()),
            mailboxes,
        }
    }

    /// Sets the input budget to `max_input` bytes (`--max-input`), shared by the loops.
    pub fn with_max_input(mut self, max_input: usize) -> Self {
        self.input = InputBudget::new(max_input, self.mailboxes.len());
        self
    }

    /// The budget for unfinished input: what the loops hold, and how many clients were shed.
    pub fn input(&self) -> &InputBudget {
        &self.input
    }

    /// True while the loops should not read more from sockets.
    pub fn pending_full(&self) -> bool {
        self.pending_bytes.load(Ordering::Acquire) >= self.max_pending
    }

    /// The one-line answer to `health`.
    pub fn health_line(&self) -> String {
        let status = if self.degraded.load(Ordering::Relaxed) {
            "DEGRADED"
        } else {
            "OK"
        };
        format!(
            "{status} name={} version={} uptime={}s connections={} records_written={} pending_bytes={} \
             partial_bytes={} shed={}\n",
            self.name
                .replace(|c: char| c.is_whitespace() || c.is_control(), "_"),
            env!("CARGO_PKG_VERSION"),
            self.started.elapsed().as_secs(),
            self.connections.load(Ordering::Relaxed),
            self.records_written.load(Ordering::Relaxed),
            self.pending_bytes.load(Ordering::Relaxed),
            self.input.total(),
            self.input.shed_count(),
        )
    }

    /// Starts the shutdown: every loop stops accepting, stores what it has received and exits.
    pub fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        for mailbox in &self.mailboxes {
            mailbox.wake();
        }
    }
}
