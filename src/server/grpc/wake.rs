//! How a gRPC connection asks to be driven: the loop's [`ReadyQueue`] and each connection's
//! [`WakeState`], behind the `std::task::Waker`s that `h2` calls.
//!
//! The waker mechanism itself (an `Arc` turned into a `Waker`) is `crate::net::waker`, shared with
//! client code; this file holds only what the server's loop does with a wake: queue the
//! connection's key once, remember which call woke, and wake the loop's `Poll` only when the wake
//! comes from another thread. It does not drive anything: `lifecycle` and `port` do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::net::waker::Wakeable;
use crate::storage::ConnKey;

/// The keys of connections that want to be driven, shared by one loop and its connections'
/// wakers. The loop drains it every turn ([`ReadyQueue::take`]).
#[derive(Clone)]
pub struct ReadyQueue {
    inner: Arc<ReadyInner>,
}

struct ReadyInner {
    keys: Mutex<Vec<ConnKey>>,
    /// Wakes the loop's `Poll` (its `mio::Waker`): needed only for a wake from another thread.
    notify: Box<dyn Fn() + Send + Sync>,
}

impl ReadyQueue {
    /// `notify` must make the loop's `poll` return (e.g. `shared.mailbox(id).wake()`).
    pub fn new(notify: impl Fn() + Send + Sync + 'static) -> ReadyQueue {
        ReadyQueue {
            inner: Arc::new(ReadyInner {
                keys: Mutex::new(Vec::new()),
                notify: Box::new(notify),
            }),
        }
    }

    /// Moves every queued key into `into` (appended; each connection appears once per wake).
    pub fn take(&self, into: &mut Vec<ConnKey>) {
        into.append(&mut self.lock());
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ConnKey>> {
        // A panic while holding this lock leaves a plain Vec behind: still usable.
        self.inner.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One connection's wake state, shared by its connection waker and its stream wakers.
pub(super) struct WakeState {
    key: ConnKey,
    queue: ReadyQueue,
    /// The key is on the queue, or the connection is being driven (then `woken` is enough).
    pub(super) queued: AtomicBool,
    /// Something woke since `drive` last looked.
    pub(super) woken: AtomicBool,
    /// Calls (slab slots) whose stream woke: only these are polled, not every call.
    streams: Mutex<Vec<usize>>,
}

impl WakeState {
    /// The wake state of the connection `key`, which queues itself on `queue`.
    pub(super) fn new(key: ConnKey, queue: ReadyQueue) -> WakeState {
        WakeState {
            key,
            queue,
            queued: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
        }
    }

    /// Marks the connection woken and queues it unless it already is. `notify` is for wakes
    /// that may come from another thread; the loop's own re-queues skip the syscall, since the
    /// loop drains the queue before it polls.
    pub(super) fn wake(&self, notify: bool) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.queued.swap(true, Ordering::SeqCst) {
            self.queue.lock().push(self.key);
            if notify {
                (self.queue.inner.notify)();
            }
        }
    }

    pub(super) fn take_streams(&self, into: &mut Vec<usize>) {
        into.append(&mut self.streams.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The connection's waker (`None`) wakes the connection; a call's stream waker (`Some(slot)`)
/// records which call, then wakes the connection.
impl Wakeable for WakeState {
    fn wake_slot(&self, slot: Option<usize>) {
        if let Some(slot) = slot {
            self.streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(slot);
        }
        self.wake(true);
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::waker::waker_for;
    use std::sync::atomic::AtomicUsize;

    fn state(notified: &Arc<AtomicUsize>) -> Arc<WakeState> {
        let n = notified.clone();
        Arc::new(WakeState {
            key: ConnKey {
                token: 3,
                serial: 9,
            },
            queue: ReadyQueue::new(move || {
                n.fetch_add(1, Ordering::SeqCst);
            }),
            queued: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
        })
    }

    #[test]
    fn a_wake_from_another_thread_queues_the_key_once_and_notifies() {
        let notified = Arc::new(AtomicUsize::new(0));
        let state = state(&notified);
        let waker = waker_for(state.clone(), Some(5));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let waker = waker.clone();
                s.spawn(move || waker.wake_by_ref());
            }
        });
        let mut keys = Vec::new();
        state.queue.take(&mut keys);
        assert_eq!(keys, vec![state.key], "queued once however many wakes");
        assert_eq!(notified.load(Ordering::SeqCst), 1);
        let mut slots = Vec::new();
        state.take_streams(&mut slots);
        assert_eq!(slots, vec![5; 4], "each wake names its stream");
    }

    #[test]
    fn wakes_while_driving_only_mark_the_connection() {
        let notified = Arc::new(AtomicUsize::new(0));
        let state = state(&notified);
        state.queued.store(true, Ordering::SeqCst); // what `drive` does first
        waker_for(state.clone(), None).wake();
        assert!(state.queue.is_empty());
        assert_eq!(notified.load(Ordering::SeqCst), 0);
        assert!(
            state.woken.load(Ordering::SeqCst),
            "drive sees it and goes round again"
        );
        // The loop's own re-queue skips the notify syscall.
        state.queued.store(false, Ordering::SeqCst);
        state.wake(false);
        assert!(!state.queue.is_empty());
        assert_eq!(notified.load(Ordering::SeqCst), 0);
    }
}
