//! Wakers for `h2` futures that an event loop polls by hand, with no async runtime.
//!
//! `h2` wakes a task through a [`std::task::Waker`] when a stream has data, a window opened or a
//! reply can go out. Here a waker does not schedule anything: it tells the code that polls what
//! to look at next. What that is depends on the caller, so a waker is built over any
//! [`Wakeable`] with [`waker_for`], naming the stream that woke (`Some(slot)`) or the connection
//! (`None`):
//!
//! - the server's gRPC port queues the connection's key on its loop's ready list and remembers
//!   which call woke (`server::grpc::wake`), so only those calls are polled;
//! - a client that drives its connections round by round only needs a flag: [`FlagWaker`]
//!   (`let flag = Arc::new(FlagWaker::default()); let waker = waker_for(flag.clone(), None);`
//!   then poll with `Context::from_waker(&waker)` and go round again while `flag.take()`).
//!
//! A waker is built once per connection or call (one `Arc`), never per poll or per record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Wake, Waker};

/// What a waker built by [`waker_for`] calls when it fires. It may be called from any thread.
pub trait Wakeable: Send + Sync + 'static {
    /// `slot` is the stream the waker was built for, or `None` for the connection's own waker.
    fn wake_slot(&self, slot: Option<usize>);
}

/// A [`Waker`] that calls `target.wake_slot(slot)`.
pub fn waker_for<W: Wakeable>(target: Arc<W>, slot: Option<usize>) -> Waker {
    Waker::from(Arc::new(SlotWaker { target, slot }))
}

struct SlotWaker<W> {
    target: Arc<W>,
    slot: Option<usize>,
}

impl<W: Wakeable> Wake for SlotWaker<W> {
    fn wake(self: Arc<Self>) {
        self.target.wake_slot(self.slot);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.target.wake_slot(self.slot);
    }
}

/// A waker target that only raises a flag: the code that polls looks at it (and lowers it with
/// [`take`](FlagWaker::take)) before it returns, and polls again while it was raised.
#[derive(Debug, Default)]
pub struct FlagWaker(AtomicBool);

impl FlagWaker {
    /// Whether anything woke since the last call, lowering the flag.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }

    /// Whether anything woke, leaving the flag as it is.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Lowers the flag.
    pub fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl Wakeable for FlagWaker {
    fn wake_slot(&self, _slot: Option<usize>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Slots(Mutex<Vec<Option<usize>>>);

    impl Wakeable for Slots {
        fn wake_slot(&self, slot: Option<usize>) {
            self.0.lock().unwrap().push(slot);
        }
    }

    #[test]
    fn a_waker_names_its_slot_and_a_flag_is_raised_until_taken() {
        let slots = Arc::new(Slots::default());
        waker_for(slots.clone(), Some(4)).wake();
        waker_for(slots.clone(), None).wake_by_ref();
        assert_eq!(*slots.0.lock().unwrap(), vec![Some(4), None]);

        let flag = Arc::new(FlagWaker::default());
        let waker = waker_for(flag.clone(), None);
        assert!(!flag.is_set());
        waker.wake_by_ref();
        assert!(flag.take() && !flag.take());
    }
}
