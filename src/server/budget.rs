//! The input budget (`--max-input`): how many bytes of *unfinished* input the server holds, and
//! who gives some back when there are too many.
//!
//! Unfinished input is what a client sent that is not yet a record: the tail of a native frame,
//! pickle, syslog message or line in a TCP connection's buffer; a gRPC message being assembled;
//! request data `h2` buffered for a call and not yet handed back as flow-control capacity. A
//! client decides how much of it there is (a frame prefix announcing 1 MiB, then silence), so
//! without a cap a few clients can push the server out of memory. Complete records are not
//! counted here: they go to the writer and are capped by `--max-pending`.
//!
//! What this file holds is the accounting and the decisions, with no sockets: one [`InputBudget`]
//! shared by the loops. Each loop keeps the sum for its own connections, and reports every change
//! with [`InputBudget::update`], which keeps the server-wide total in one atomic (one
//! `fetch_add` per read that changes a connection's tail: not per record). The total and the
//! count of sheds are kept in [`Stats`], where the `health` and stats lines read them.
//!
//! # Shares and shedding
//!
//! The total is one number, but each loop only touches its own connections, so the budget is
//! also seen as equal shares, one per loop (`max / loops`). A loop may hold more than its share
//! while the total is under the budget (a busy loop borrows what idle loops do not use). When the
//! total passes the budget, the loops holding more than their share shed: each closes its own
//! connections holding the most unfinished input, largest first, until the total is under the
//! low-water mark or the loop is under its low-water share. A loop at or under its share never
//! sheds, so hostile clients on one loop cannot get well-behaved ones on another loop closed.
//! Since the shares add up to the budget, some loop is always over its share when the total is
//! over the budget; if that is not the loop that noticed, the noticing loop hints it
//! ([`InputBudget::hint_over_share`]) and wakes it.
//!
//! The check happens after a read (TCP) or a drive (gRPC), so the total can pass the budget by
//! what one loop takes in one go before it sheds; the README's "Memory" section puts that in its
//! formula.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::stats::Stats;

/// What a loop should do after [`InputBudget::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressure {
    /// Within the budget, or within this loop's share: carry on.
    Fine,
    /// Over the budget, and this loop holds more than its share: shed, largest first, while
    /// [`InputBudget::keep_shedding`] says so.
    ShedHere,
    /// Over the budget, but this loop is within its share: other loops must shed
    /// ([`InputBudget::hint_over_share`]).
    ShedElsewhere,
}

/// The server-wide budget for unfinished input, shared by every loop (in `server::shared`).
#[derive(Debug)]
pub struct InputBudget {
    max: usize,
    low_water: usize,
    share: usize,
    low_share: usize,
    /// Where the total and the sheds are counted.
    stats: Arc<Stats>,
    /// Per loop: what it holds (published for the hints), and whether it was asked to shed.
    held: Vec<AtomicUsize>,
    hinted: Vec<AtomicBool>,
}

impl InputBudget {
    /// A budget of `max` bytes for `loops` event loops, counting its total in `stats`.
    pub fn new(max: usize, loops: usize, stats: Arc<Stats>) -> InputBudget {
        let loops = loops.max(1);
        let max = max.max(1);
        // Shedding frees a quarter of the budget, so that one shed is not followed by another
        // at the next byte, and no more, since each shed closes a client.
        let low_water = max - max / 4;
        InputBudget {
            max,
            low_water,
            share: max / loops,
            low_share: low_water / loops,
            stats,
            held: (0..loops).map(|_| AtomicUsize::new(0)).collect(),
            hinted: (0..loops).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes of unfinished input held now, server-wide.
    pub fn total(&self) -> usize {
        self.stats.partial_bytes()
    }

    /// Connections (and gRPC calls) closed so far to keep within the budget.
    pub fn shed_count(&self) -> u64 {
        self.stats.shed()
    }

    /// Counts one connection or call shed.
    pub fn count_shed(&self) {
        self.stats.count_shed();
    }

    /// Loop `id` held `before` bytes and now holds `now`: updates the total and says whether
    /// anyone must shed.
    pub fn update(&self, id: usize, before: usize, now: usize) -> Pressure {
        let total = if now >= before {
            self.stats.partial_grew(now - before)
        } else {
            self.stats.partial_freed(before - now)
        };
        self.held[id].store(now, Ordering::Relaxed);
        if total <= self.max {
            Pressure::Fine
        } else if now > self.share {
            Pressure::ShedHere
        } else if now > before {
            Pressure::ShedElsewhere
        } else {
            // Over the budget, but this loop just gave some back: whoever is over its share was
            // already hinted when the total passed the budget.
            Pressure::Fine
        }
    }

    /// Whether loop `id`, holding `held` bytes, may take in more unfinished input now (gRPC
    /// grants flow-control capacity only then): true while the total is within the budget, or
    /// while the loop is within its share.
    pub fn may_grow(&self, held: usize) -> bool {
        held <= self.share || self.total() <= self.max
    }

    /// While shedding, whether to close one more connection of a loop holding `held` bytes.
    pub fn keep_shedding(&self, held: usize) -> bool {
        held > self.low_share && self.total() > self.low_water
    }

    /// Asks every loop but `me` that holds more than its share to shed, calling `wake(id)` for
    /// each loop not already asked.
    pub fn hint_over_share(&self, me: usize, mut wake: impl FnMut(usize)) {
        for (id, held) in self.held.iter().enumerate() {
            if id != me
                && held.load(Ordering::Relaxed) > self.share
                && !self.hinted[id].swap(true, Ordering::AcqRel)
            {
                wake(id);
            }
        }
    }

    /// Takes loop `id`'s hint: true if another loop asked it to look at its share. One plain
    /// load per loop turn while there is no hint.
    pub fn take_hint(&self, id: usize) -> bool {
        self.hinted[id].load(Ordering::Relaxed) && self.hinted[id].swap(false, Ordering::AcqRel)
    }

    /// Whether loop `id`, holding `held`, should shed now (it was hinted, or checks on its own).
    pub fn over_share(&self, held: usize) -> bool {
        held > self.share && self.total() > self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_the_budget_nobody_sheds() {
        let budget = InputBudget::new(1000, 2, Arc::default());
        assert_eq!(
            budget.update(0, 0, 700),
            Pressure::Fine,
            "borrowing is fine"
        );
        assert_eq!(budget.update(1, 0, 300), Pressure::Fine);
        assert_eq!(budget.total(), 1000);
        assert!(budget.may_grow(700) && budget.may_grow(300));
        assert_eq!(budget.update(0, 700, 0), Pressure::Fine);
        assert_eq!(budget.update(1, 300, 0), Pressure::Fine);
        assert_eq!(budget.total(), 0);
    }

    #[test]
    fn the_loop_over_its_share_sheds_down_to_the_low_water_mark() {
        let budget = InputBudget::new(1000, 2, Arc::default());
        assert_eq!(budget.update(1, 0, 100), Pressure::Fine);
        assert_eq!(budget.update(0, 0, 901), Pressure::ShedHere);
        assert!(!budget.may_grow(901), "over its share and over the budget");
        assert!(budget.may_grow(100), "the other loop is within its share");
        // Shedding: 901 -> 701 -> 601 (total 701: under the low-water mark of 750).
        let mut held = 901;
        let mut closed = 0;
        while budget.keep_shedding(held) {
            let after = held - 200.min(held);
            assert_eq!(budget.update(0, held, after), Pressure::Fine);
            held = after;
            closed += 1;
        }
        assert_eq!((closed, held, budget.total()), (2, 501, 601));
        assert!(!budget.over_share(held));
    }

    #[test]
    fn a_loop_within_its_share_hints_the_others_and_never_sheds_itself() {
        let budget = InputBudget::new(1000, 3, Arc::default());
        assert_eq!(budget.update(0, 0, 900), Pressure::Fine);
        assert_eq!(budget.update(2, 0, 50), Pressure::Fine);
        assert_eq!(budget.update(1, 0, 200), Pressure::ShedElsewhere);
        let mut woken = Vec::new();
        budget.hint_over_share(1, |id| woken.push(id));
        assert_eq!(woken, vec![0], "only the loop over its share (333)");
        budget.hint_over_share(1, |id| woken.push(id));
        assert_eq!(woken, vec![0], "asked once until it looks");
        assert!(!budget.take_hint(1) && !budget.take_hint(2));
        assert!(budget.take_hint(0) && !budget.take_hint(0));
        assert!(budget.over_share(900));
        assert!(
            !budget.keep_shedding(200),
            "loop 1 is within its low-water share"
        );
        assert!(budget.keep_shedding(900));
    }

    #[test]
    fn shrinking_never_asks_for_shedding_and_the_total_never_wraps() {
        let budget = InputBudget::new(100, 1, Arc::default());
        assert_eq!(budget.update(0, 0, 150), Pressure::ShedHere);
        assert_eq!(budget.update(0, 150, 120), Pressure::ShedHere, "still over");
        assert_eq!(budget.update(0, 120, 0), Pressure::Fine);
        assert_eq!(budget.total(), 0);
        budget.count_shed();
        assert_eq!(budget.shed_count(), 1);
    }

    #[test]
    fn tiny_budgets_and_many_loops_keep_a_usable_shape() {
        let budget = InputBudget::new(0, 0, Arc::default());
        assert_eq!(budget.max(), 1);
        assert_eq!(budget.update(0, 0, 1), Pressure::Fine);
        assert_eq!(budget.update(0, 1, 2), Pressure::ShedHere);
    }
}
