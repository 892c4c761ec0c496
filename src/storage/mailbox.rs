//! How the loops and the writer hand things to each other besides the batches themselves (which
//! go through the writer's channel): the writer's completions and emptied batches going back to
//! each loop, the sequence counter, and the pending-bytes gauge.
//!
//! Everything here is an atomic or a short-held mutex: a loop touches its mailbox once per
//! writer cycle and the counter and gauge once per batch, never per record.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::backpressure::Backpressure;
use super::{Batch, Completion};

/// Where the writer leaves completions for one loop, and how it wakes that loop.
pub struct Mailbox {
    completions: Mutex<Vec<Completion>>,
    waker: mio::Waker,
    /// Set by the loop when it stopped reading because the gauge was full; the writer wakes the
    /// loop once it has written enough to make room.
    paused: AtomicBool,
    /// Batches the writer has written and hands back, emptied, for reuse: a loop that
    /// allocated its batch buffers anew each turn had glibc give their pages back to the kernel
    /// and fault them in again, zeroed (22,000 page faults per 2 M records).
    spare_batches: Mutex<Vec<Batch>>,
}

impl Mailbox {
    /// A mailbox that wakes its loop through `waker` (registered on the loop's `Poll`).
    pub fn new(waker: mio::Waker) -> Self {
        Mailbox {
            completions: Mutex::new(Vec::new()),
            waker,
            paused: AtomicBool::new(false),
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

    /// The writer leaves `completions` (emptied) and wakes the loop.
    pub fn post(&self, completions: &mut Vec<Completion>) {
        lock(&self.completions).append(completions);
        self.wake();
    }

    /// The loop takes every completion left for it.
    pub fn take_completions(&self) -> Vec<Completion> {
        std::mem::take(&mut *lock(&self.completions))
    }

    /// The loop stopped reading because the gauge is full: wake it when there is room.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
    }

    pub fn unpause(&self) {
        self.paused.store(false, Ordering::Release);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// An emptied batch to fill, if the writer handed one back.
    pub fn spare_batch(&self) -> Option<Batch> {
        lock(&self.spare_batches).pop()
    }

    /// The writer hands an emptied batch back, keeping at most `keep`.
    pub fn give_back(&self, batch: Batch, keep: usize) {
        let mut spare = lock(&self.spare_batches);
        if spare.len() < keep {
            spare.push(batch);
        }
    }

    /// The batches waiting for reuse, for the writer's tests to look at.
    #[cfg(test)]
    pub(crate) fn spares(&self) -> std::sync::MutexGuard<'_, Vec<Batch>> {
        lock(&self.spare_batches)
    }
}

/// A panic while holding one of these locks leaves a plain Vec behind: still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the loops and the writer share: one mailbox per loop, the sequence counter and the
/// pending-bytes gauge.
pub struct Handoff {
    mailboxes: Vec<Mailbox>,
    pending: Backpressure,
    /// The next sequence number to give: each loop takes a range for each batch it sends
    /// ([`Batch::number`]). Set from the files by the writer before the loops start.
    next_seq: AtomicU64,
}

impl Handoff {
    /// One mailbox per loop, and a gauge full at `max_pending` bytes (`--max-pending`).
    pub fn new(max_pending: usize, mailboxes: Vec<Mailbox>) -> Handoff {
        Handoff {
            mailboxes,
            pending: Backpressure::new(max_pending),
            next_seq: AtomicU64::new(1),
        }
    }

    /// Loop `id`'s mailbox.
    pub fn mailbox(&self, id: usize) -> &Mailbox {
        &self.mailboxes[id]
    }

    pub fn mailboxes(&self) -> &[Mailbox] {
        &self.mailboxes
    }

    /// How many loops there are.
    pub fn loops(&self) -> usize {
        self.mailboxes.len()
    }

    pub fn pending(&self) -> &Backpressure {
        &self.pending
    }

    /// Takes `count` sequence numbers for a batch; returns the first.
    pub fn take_seq(&self, count: u64) -> u64 {
        self.next_seq.fetch_add(count, Ordering::Relaxed)
    }

    /// The number the next batch will start at.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    /// The writer, before the loops start: numbering goes on at `next`.
    pub fn start_seq(&self, next: u64) {
        self.next_seq.store(next, Ordering::Relaxed);
    }
}
