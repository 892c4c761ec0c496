//! The server's counters: atomics that the event loops and the writer bump and that the `health`
//! line and the writer's once-a-minute stats line read.
//!
//! This is the lowest room of the server: it imports nothing of the crate, so storage and the
//! server can both use it without one importing the other. It holds numbers only; what they
//! drive (backpressure, shedding, loop balancing) lives where its path says
//! (`storage::backpressure`, `server::budget`, `server::balance`).
//!
//! Every counter is bumped at most once per batch, read, frame or connection, never once per
//! record inside a batch, so a `Relaxed` atomic is enough: nobody orders other memory by them.
//! The one map, refusals by app, is behind a mutex taken once per refused connection.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Apps whose refusals are counted by name; refusals of apps beyond these count in the total
/// only. Only apps named by a token signed with the server's secret are counted, so the map
/// grows with the operator's tokens, not with what clients send; the bound is a second lock.
const MAX_REFUSED_APPS: usize = 1024;

/// Apps named in the stats line's refusals, the most refused first.
const SHOWN_REFUSED_APPS: usize = 10;

/// Counters shared by every thread of one server.
#[derive(Debug, Default)]
pub struct Stats {
    connections: AtomicUsize,
    refused: AtomicU64,
    records_received: AtomicU64,
    records_written: AtomicU64,
    bytes_written: AtomicU64,
    decode_errors: AtomicU64,
    /// The writer could not write after its retries; it keeps the records and keeps trying.
    degraded: AtomicBool,
    /// Unfinished input held server-wide, kept by `server::budget` (which decides with it).
    partial_bytes: AtomicUsize,
    /// Connections and gRPC calls closed to keep within `--max-input`.
    shed: AtomicU64,
    /// Connections, gRPC calls and datagrams refused by `--auth` (a bad token, none under
    /// `required`).
    refused_auth: AtomicU64,
    /// The same, by the app a genuine token names (see [`MAX_REFUSED_APPS`]).
    refused_auth_by_app: Mutex<BTreeMap<String, u64>>,
    /// Undecodable input by where it came from (indexed by [`Decoder`]).
    decode_errors_by: [AtomicU64; Decoder::ALL.len()],
    /// HTTP connections closed for not finishing a request head in time (slowloris).
    header_timeouts: AtomicU64,
    /// The logship receiver (`server::ship`): connections open now, files it created, bytes
    /// it stored (bumped by the ship writer once per chunk), and connections it refused.
    ship_connections: AtomicUsize,
    ship_files_created: AtomicU64,
    ship_bytes: AtomicU64,
    ship_refused: AtomicU64,
    /// TLS handshakes that failed (a bad certificate, a plain client on a TLS port, a
    /// handshake not finished in time).
    tls_failures: AtomicU64,
    /// The writer's own figures (only the writer thread bumps them).
    pub writer: WriterStats,
}

/// Where an undecodable frame, message or datagram came from: the `protocol` label of
/// `logmill_decode_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Native,
    Pickle,
    Grpc,
    GrpcWeb,
    WebSocket,
    Otlp,
    Udp,
}

impl Decoder {
    pub const ALL: [Decoder; 7] = [
        Decoder::Native,
        Decoder::Pickle,
        Decoder::Grpc,
        Decoder::GrpcWeb,
        Decoder::WebSocket,
        Decoder::Otlp,
        Decoder::Udp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decoder::Native => "native",
            Decoder::Pickle => "pickle",
            Decoder::Grpc => "grpc",
            Decoder::GrpcWeb => "grpc_web",
            Decoder::WebSocket => "websocket",
            Decoder::Otlp => "otlp",
            Decoder::Udp => "udp",
        }
    }
}

/// A histogram with fixed upper bounds, bumped by one thread (the writer): each observation is
/// two `Relaxed` adds on atomics no other thread writes, read (summed into cumulative buckets)
/// only by a `/metrics` scrape.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, then the count above the last bound.
    counts: Vec<AtomicU64>,
    /// The sum of the observations, in `1 / scale` units (integers, so it can be atomic).
    sum: AtomicU64,
    scale: f64,
}

impl Histogram {
    /// Buckets at `bounds` (ascending); observations are summed in units of `1 / scale`.
    pub fn new(bounds: &'static [f64], scale: f64) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            scale,
        }
    }

    pub fn observe(&self, value: f64) {
        let at = self.bounds.partition_point(|&b| b < value);
        self.counts[at].fetch_add(1, Ordering::Relaxed);
        self.sum
            .fetch_add((value * self.scale).round() as u64, Ordering::Relaxed);
    }

    /// (upper bound, cumulative count) for each bound, then the total count and the sum.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            total += count.load(Ordering::Relaxed);
            buckets.push((*bound, total));
        }
        total += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let sum = self.sum.load(Ordering::Relaxed) as f64 / self.scale;
        (buckets, total, sum)
    }
}

/// What the writer thread counts for `/metrics`: per flush (one or more batches written with
/// one `write` per bucket), never per record.
#[derive(Debug)]
pub struct WriterStats {
    /// Records per flush.
    pub batch_records: Histogram,
    /// Seconds per flush (the writes, and the fsync under `--fsync always`).
    pub write_seconds: Histogram,
    pub rotations: AtomicU64,
    /// Flushes that failed (each is retried; see DEGRADED).
    pub disk_errors: AtomicU64,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            batch_records: Histogram::new(&[1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0], 1.0),
            write_seconds: Histogram::new(
                &[
                    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
                ],
                1e6,
            ),
            rotations: AtomicU64::new(0),
            disk_errors: AtomicU64::new(0),
        }
    }
}

impl Stats {
    /// Counts a new connection; returns the number open now (including it), which the loop
    /// compares with `--max-connections` before keeping it.
    pub fn connection_opened(&self) -> usize {
        self.connections.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Counts a connection refused at `--max-connections`; returns how many so far.
    pub fn refused(&self) -> u64 {
        self.refused.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// `n` records were decoded and handed to a batch.
    pub fn received(&self, n: u64) {
        self.records_received.fetch_add(n, Ordering::Relaxed);
    }

    pub fn records_received(&self) -> u64 {
        self.records_received.load(Ordering::Relaxed)
    }

    /// Counts one undecodable frame, pickle, message or datagram from `from`; returns how many
    /// so far (of every kind).
    pub fn decode_error(&self, from: Decoder) -> u64 {
        self.decode_errors_by[from as usize].fetch_add(1, Ordering::Relaxed);
        self.decode_errors.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Decode errors from `from` so far.
    pub fn decode_errors_of(&self, from: Decoder) -> u64 {
        self.decode_errors_by[from as usize].load(Ordering::Relaxed)
    }

    /// Connections refused at `--max-connections` so far.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts one HTTP connection closed at the header timeout; returns how many so far.
    pub fn header_timeout(&self) -> u64 {
        self.header_timeouts.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A shipping connection was accepted (it counts in [`Stats::connections`] too).
    pub fn ship_connection_opened(&self) {
        self.ship_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ship_connection_closed(&self) {
        self.ship_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Shipping connections open now.
    pub fn ship_connections(&self) -> usize {
        self.ship_connections.load(Ordering::Relaxed)
    }

    pub fn ship_file_created(&self) {
        self.ship_files_created.fetch_add(1, Ordering::Relaxed);
    }

    /// Files the ship receiver created since start-up.
    pub fn ship_files_created(&self) -> u64 {
        self.ship_files_created.load(Ordering::Relaxed)
    }

    pub fn ship_bytes_stored(&self, bytes: u64) {
        self.ship_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes the ship receiver wrote since start-up.
    pub fn ship_bytes(&self) -> u64 {
        self.ship_bytes.load(Ordering::Relaxed)
    }

    /// Counts a shipping connection refused (a bad name, a busy name, a timeout, a failed
    /// write); returns how many so far.
    pub fn ship_refused(&self) -> u64 {
        self.ship_refused.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn ship_refusals(&self) -> u64 {
        self.ship_refused.load(Ordering::Relaxed)
    }

    pub fn header_timeouts(&self) -> u64 {
        self.header_timeouts.load(Ordering::Relaxed)
    }

    /// Counts one failed TLS handshake; returns how many so far.
    pub fn tls_failure(&self) -> u64 {
        self.tls_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn tls_failures(&self) -> u64 {
        self.tls_failures.load(Ordering::Relaxed)
    }

    pub fn decode_errors(&self) -> u64 {
        self.decode_errors.load(Ordering::Relaxed)
    }

    /// The writer wrote `records` records, `bytes` bytes.
    pub fn written(&self, records: u64, bytes: u64) {
        self.records_written.fetch_add(records, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn records_written(&self) -> u64 {
        self.records_written.load(Ordering::Relaxed)
    }

    /// The writer sets this while its writes fail, and clears it once one works again.
    pub fn set_degraded(&self, degraded: bool) {
        self.degraded.store(degraded, Ordering::Release);
    }

    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// Adds `grown` bytes to the unfinished input held; returns the new total.
    pub fn partial_grew(&self, grown: usize) -> usize {
        self.partial_bytes.fetch_add(grown, Ordering::AcqRel) + grown
    }

    /// Takes `freed` bytes off the unfinished input held; returns the new total.
    pub fn partial_freed(&self, freed: usize) -> usize {
        self.partial_bytes
            .fetch_sub(freed, Ordering::AcqRel)
            .saturating_sub(freed)
    }

    /// Bytes of unfinished input held server-wide.
    pub fn partial_bytes(&self) -> usize {
        self.partial_bytes.load(Ordering::Relaxed)
    }

    /// Counts one connection or call shed to keep within `--max-input`.
    pub fn count_shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Counts one connection, call or datagram refused by `--auth`; `app` is the app its token
    /// names when the token's signature is good. Returns the total so far.
    pub fn count_refused_auth(&self, app: Option<&str>) -> u64 {
        if let Some(app) = app {
            let mut by_app = self
                .refused_auth_by_app
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(n) = by_app.get_mut(app) {
                *n += 1;
            } else if by_app.len() < MAX_REFUSED_APPS {
                by_app.insert(app.to_owned(), 1);
            }
        }
        self.refused_auth.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Connections, calls and datagrams refused by `--auth` so far.
    pub fn refused_auth(&self) -> u64 {
        self.refused_auth.load(Ordering::Relaxed)
    }

    /// Refusals by app so far (at most [`MAX_REFUSED_APPS`] apps).
    pub fn refused_auth_by_app(&self) -> BTreeMap<String, u64> {
        self.refused_auth_by_app
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `refused_auth=N`, then the most refused apps: `refused_auth=5 (billing=3, search=2)`,
    /// for the stats line. At most [`SHOWN_REFUSED_APPS`] are named, then `+N more apps`.
    pub fn refused_auth_summary(&self) -> String {
        let mut text = format!("refused_auth={}", self.refused_auth());
        let mut by_app: Vec<_> = self.refused_auth_by_app().into_iter().collect();
        if by_app.is_empty() {
            return text;
        }
        by_app.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        text.push_str(" (");
        for (i, (app, n)) in by_app.iter().take(SHOWN_REFUSED_APPS).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            text.push_str(&format!("{sep}{app}={n}"));
        }
        if by_app.len() > SHOWN_REFUSED_APPS {
            let more = by_app.len() - SHOWN_REFUSED_APPS;
            text.push_str(&format!(", +{more} more apps"));
        }
        text.push(')');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_counted_in_total_and_by_genuine_app() {
        let stats = Stats::default();
        assert_eq!(stats.refused_auth_summary(), "refused_auth=0");
        stats.count_refused_auth(Some("billing"));
        stats.count_refused_auth(Some("search"));
        stats.count_refused_auth(Some("billing"));
        assert_eq!(stats.count_refused_auth(None), 4);
        assert_eq!(
            stats.refused_auth_summary(),
            "refused_auth=4 (billing=2, search=1)"
        );
    }

    #[test]
    fn refusals_by_app_are_bounded() {
        let stats = Stats::default();
        for i in 0..MAX_REFUSED_APPS + 5 {
            stats.count_refused_auth(Some(&format!("app{i}")));
        }
        assert_eq!(stats.refused_auth_by_app().len(), MAX_REFUSED_APPS);
        assert_eq!(stats.refused_auth(), (MAX_REFUSED_APPS + 5) as u64);
        let summary = stats.refused_auth_summary();
        assert!(
            summary.ends_with(&format!(
                ", +{} more apps)",
                MAX_REFUSED_APPS - SHOWN_REFUSED_APPS
            )),
            "{summary}"
        );
    }
}
