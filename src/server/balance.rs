//! Spreading connections over the loops. There is one listening socket and every loop has a
//! handle on it, so a new connection wakes them all; whichever is first would take most of them
//! (measured: 97 of 128 on one of two loops, leaving the other core half idle). Each loop
//! publishes how many connections it holds, and a loop holding two more than the least loaded
//! one leaves new connections to it, with a hint to accept even if its edge is spent.
//!
//! Atomics only; the loops call it once per accept and once per connection closed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What each loop publishes for the others: its load, and whether one left it connections.
pub struct Balance {
    loads: Vec<Load>,
}

struct Load {
    connections: AtomicUsize,
    /// Set by a loop that left waiting connections to this one: accept even though the
    /// listener's edge may have been consumed already.
    accept_hint: AtomicBool,
}

impl Balance {
    pub fn new(loops: usize) -> Balance {
        Balance {
            loads: (0..loops.max(1))
                .map(|_| Load {
                    connections: AtomicUsize::new(0),
                    accept_hint: AtomicBool::new(false),
                })
                .collect(),
        }
    }

    /// Loop `id` holds `connections` connections now.
    pub fn publish(&self, id: usize, connections: usize) {
        self.loads[id]
            .connections
            .store(connections, Ordering::Relaxed);
    }

    /// The loop to leave a new connection to, when it holds at least two connections fewer than
    /// loop `id`, which holds `mine`.
    pub fn lighter_loop(&self, id: usize, mine: usize) -> Option<usize> {
        let (other, fewest) = self
            .loads
            .iter()
            .enumerate()
            .filter(|&(other, _)| other != id)
            .map(|(other, l)| (other, l.connections.load(Ordering::Relaxed)))
            .min_by_key(|&(_, n)| n)?;
        (mine > fewest + 1).then_some(other)
    }

    /// Tells loop `id` to accept at its next turn (the caller wakes it).
    pub fn hint(&self, id: usize) {
        self.loads[id].accept_hint.store(true, Ordering::Release);
    }

    /// Takes loop `id`'s hint: true if another loop left it connections.
    pub fn take_hint(&self, id: usize) -> bool {
        self.loads[id].accept_hint.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::Balance;

    #[test]
    fn a_loop_two_ahead_leaves_the_connection_to_the_least_loaded() {
        let balance = Balance::new(3);
        balance.publish(1, 4);
        balance.publish(2, 1);
        assert_eq!(balance.lighter_loop(0, 2), None, "one ahead keeps it");
        assert_eq!(balance.lighter_loop(0, 3), Some(2));
        assert!(!balance.take_hint(2));
        balance.hint(2);
        assert!(balance.take_hint(2) && !balance.take_hint(2));
        assert_eq!(Balance::new(1).lighter_loop(0, 100), None, "alone");
    }
}
