//! What `/metrics` shows of the loops' traffic: records and bytes received per protocol and per
//! app, and open connections per protocol. Counted per loop and summed on scrape, with no lock
//! and no atomic on the record path.
//!
//! ```text
//! record path:  Entry::received / Entry::read (plain adds in the connection, as for `status`)
//! close:        the loop folds the connection's entry into its own Traffic (plain integers)
//! publish:      every PUBLISH_EVERY, with the connection board: Traffic of closed connections
//!               + the live entries + open counts ──> TrafficBoard[loop] (one Mutex per loop)
//! scrape:       TrafficBoard::sum() ──> server::session::http::metrics
//! ```
//!
//! So a scrape lags the record path by at most `apps::connections::PUBLISH_EVERY`. A gRPC
//! connection whose calls name different apps is counted under the app of its latest call (as
//! `status` lists it). Records of UDP datagrams are counted by loop 0 as protocol `udp`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::apps::connections::Entry;

/// Records and bytes received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub records: u64,
    pub bytes: u64,
}

/// One loop's figures (or, summed, the server's).
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// By (protocol, app); `None`: anonymous.
    pub received: BTreeMap<(&'static str, Option<Arc<str>>), Counts>,
    /// Open connections by protocol.
    pub open: BTreeMap<&'static str, u64>,
}

impl Traffic {
    /// Adds what `entry` counted (a connection that closed, or a live one at publish).
    pub fn add_entry(&mut self, entry: &Entry) {
        let Some(socket) = entry.socket() else {
            return;
        };
        self.add(
            socket.as_str(),
            entry.app(),
            Counts {
                records: entry.records(),
                bytes: entry.bytes(),
            },
        );
    }

    pub fn add(&mut self, protocol: &'static str, app: Option<&Arc<str>>, counts: Counts) {
        if counts == Counts::default() {
            return;
        }
        let slot = self.received.entry((protocol, app.cloned())).or_default();
        slot.records += counts.records;
        slot.bytes += counts.bytes;
    }

    pub fn add_open(&mut self, protocol: &'static str, n: u64) {
        *self.open.entry(protocol).or_default() += n;
    }

    fn merge(&mut self, other: &Traffic) {
        for ((protocol, app), counts) in &other.received {
            self.add(protocol, app.as_ref(), *counts);
        }
        for (protocol, n) in &other.open {
            self.add_open(protocol, *n);
        }
    }
}

/// Every loop's published [`Traffic`]: one slot per loop, locked by that loop when it publishes
/// and by a scrape, never on the record path.
#[derive(Debug)]
pub struct TrafficBoard {
    loops: Vec<Mutex<Traffic>>,
}

impl TrafficBoard {
    pub fn new(loops: usize) -> TrafficBoard {
        TrafficBoard {
            loops: (0..loops).map(|_| Mutex::new(Traffic::default())).collect(),
        }
    }

    /// Replaces loop `id`'s figures.
    pub fn publish(&self, id: usize, traffic: Traffic) {
        if let Some(slot) = self.loops.get(id) {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = traffic;
        }
    }

    /// The server's figures: every loop's, summed.
    pub fn sum(&self) -> Traffic {
        let mut total = Traffic::default();
        for slot in &self.loops {
            total.merge(&slot.lock().unwrap_or_else(PoisonError::into_inner));
        }
        total
    }
}
