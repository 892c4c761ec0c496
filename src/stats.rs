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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

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
    /// Undecodable input by where it came from (indexed by [`Decoder`]).
    decode_errors_by: [AtomicU64; Decoder::ALL.len()],
    /// HTTP connections closed for not finishing a request head in time (slowloris).
    header_timeouts: AtomicU64,
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
    Udp,
}

impl Decoder {
    pub const ALL: [Decoder; 4] = [
        Decoder::Native,
        Decoder::Pickle,
        Decoder::Grpc,
        Decoder::Udp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decoder::Native => "native",
            Decoder::Pickle => "pickle",
            Decoder::Grpc => "grpc",
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

    pub fn header_timeouts(&self) -> u64 {
        self.header_timeouts.load(Ordering::Relaxed)
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
}
