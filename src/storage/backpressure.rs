//! The pending-bytes gauge: bytes of batches sent to the writer and not yet written. It is the
//! server's backpressure: while it is at `--max-pending` the loops stop reading sockets, and TCP
//! (or HTTP/2) flow control pushes back on clients.
//!
//! The loops add a batch's cost when they send it and the writer takes it off once the batch is
//! in the file: one atomic per batch, never per record. Waking a paused loop when room is made
//! is the writer's part (`storage::mailbox`).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes handed to the writer and not yet written, and the most the loops may hand it.
#[derive(Debug)]
pub struct Backpressure {
    pending: AtomicUsize,
    max: usize,
}

impl Backpressure {
    /// A gauge that reports full at `max` bytes (`--max-pending`).
    pub fn new(max: usize) -> Backpressure {
        Backpressure {
            pending: AtomicUsize::new(0),
            max,
        }
    }

    /// A loop sent a batch of this cost to the writer.
    pub fn add(&self, cost: usize) {
        self.pending.fetch_add(cost, Ordering::AcqRel);
    }

    /// The writer wrote `bytes` of what was added. Returns true if this made room: the gauge
    /// was full before and is not now (the writer then wakes the loops that paused).
    pub fn release(&self, bytes: usize) -> bool {
        let before = self.pending.fetch_sub(bytes, Ordering::AcqRel);
        before >= self.max && before - bytes < self.max
    }

    /// True while the loops should not read more from sockets.
    pub fn is_full(&self) -> bool {
        self.pending.load(Ordering::Acquire) >= self.max
    }

    /// Bytes pending now (for the `health` and stats lines).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// The limit, `--max-pending` (for `/metrics`).
    pub fn max(&self) -> usize {
        self.max
    }
}
