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

    /// Counts one undecodable frame, pickle, message or datagram; returns how many so far.
    pub fn decode_error(&self) -> u64 {
        self.decode_errors.fetch_add(1, Ordering::Relaxed) + 1
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
