//! The waker bench's gRPC connections hand to `h2`: it only raises a flag, and the connection's
//! `drive` polls again while the flag was raised. Everything runs on the loop's thread, so a
//! wake never needs to interrupt `poll`.
//!
//! The same shape as the server's shared waker module (`FlagWaker`, `waker_for`), kept here
//! until bench uses that one: then this file goes and `grpc.rs` names the other in its `use`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Wake, Waker};

/// A flag that `h2` raises through the [`Waker`] from [`waker_for`].
#[derive(Debug, Default)]
pub struct FlagWaker(AtomicBool);

impl FlagWaker {
    /// Whether anything woke, leaving the flag as it is.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Lowers the flag.
    pub fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl Wake for FlagWaker {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A [`Waker`] that raises `flag`. `_slot` (which stream woke) matters to the server, not here.
pub fn waker_for(flag: Arc<FlagWaker>, _slot: Option<usize>) -> Waker {
    Waker::from(flag)
}
