//! Forwarding: the stored records, sent on to ClickHouse (and OpenTelemetry) at least once,
//! from the files.
//!
//! - [`checkpoint`]: per sink and bucket, the last sequence number the sink acknowledged, in
//!   `<dir>/.logmill/forward-<id>.json` (tmp + fsync + rename).
//! - [`reader`]: the buckets' files read in sequence order from the checkpoint into a batch.
//! - [`http`]: a small blocking HTTP/1.1 client (a forwarder has nothing else to do while its
//!   batch is in flight).
//! - [`clickhouse`]: the ClickHouse sink (`INSERT ... FORMAT RowBinary`) and its table.
//! - [`grpc`]: a small blocking gRPC client (`h2` driven by hand, no runtime).
//! - [`otlp`]: the OTLP sink (protobuf, over HTTP `POST /v1/logs` or a gRPC `Export` call), to a
//!   Collector or another logmill.
//!
//! # Threads
//!
//! One thread per sink, `logmill-forward-<n>`: never an event loop, never the writer. The files
//! are the write-ahead log: a forwarder reads what the writer wrote, sends a batch, and moves
//! its checkpoint only once the sink said yes, so a restart of logmill or of the sink resends
//! at most the batch in flight (the ClickHouse table collapses such duplicates) and never
//! leaves a gap. Errors that can succeed later are retried with exponential backoff and jitter;
//! errors that cannot (authentication, a wrong table) stop the forwarder with the sink's own
//! message, in `_server.log`, `health`, `/metrics` and `logmill status`. Ingestion never waits
//! for a sink.
//!
//! The arrows point down: this module uses `storage` (files, lines) and `record`, never the
//! server; the server starts the forwarders ([`Forwarders::start`]) and reads their [`Status`].

pub mod checkpoint;
pub mod clickhouse;
pub mod grpc;
pub mod http;
pub mod otlp;
pub mod reader;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use crate::config::forward::{MAX_BATCH_ROWS, Settings, Target, default_node_id};
use crate::storage::parse::ParsedLine;
use crate::storage::retention::Retention;
use crate::storage::server_log::ServerLog;
use checkpoint::Checkpoint;
use reader::{Mark, Reader};

/// The most encoded bytes in one batch (before gzip): bounds the forwarder's memory whatever
/// the records' sizes.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// How long a batch that is not full waits for more records before it is sent: the bound on
/// how late a record reaches the sink on a quiet server.
pub const BATCH_WAIT: Duration = Duration::from_millis(500);
/// How often an idle forwarder looks for new records.
const POLL: Duration = Duration::from_millis(100);
/// Retry backoff: the first wait, doubled per failure up to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a batch was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// It may be taken later (the sink is down, restarting, busy): retried with backoff.
    Retry(String),
    /// It never will be (authentication, the table): the forwarder stops.
    Fatal(String),
}

/// A sink builds a batch one record at a time, then sends it whole.
pub trait Sink: Send {
    /// Encodes one record into the batch.
    fn push(&mut self, bucket: &str, line: &ParsedLine<'_>);
    /// Records in the batch.
    fn rows(&self) -> usize;
    /// Encoded bytes in the batch.
    fn bytes(&self) -> usize;
    /// The most encoded bytes in one batch.
    fn max_bytes(&self) -> usize {
        MAX_BATCH_BYTES
    }
    /// Sends the batch; empties it only when the sink took it, so a retry sends the same one.
    ///
    /// # Errors
    /// [`SendError`], sorted by whether a retry can help.
    fn send(&mut self) -> Result<(), SendError>;
    fn clear(&mut self);
}

/// What a sink is doing, for `health` and `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Sending, or caught up.
    Ok,
    /// The last batch failed with an error that can succeed later; retrying.
    Retrying,
    /// Stopped on an error no retry can fix; see [`SinkStatus::error`].
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Retrying => "retrying",
            State::Stopped => "stopped",
        }
    }
}

/// One sink's figures, written by its forwarder and read by `health`, `/metrics`, `status`.
pub struct SinkStatus {
    url: String,
    id: String,
    state: AtomicU8,
    /// The last error, for `status` (empty when none).
    error: Mutex<String>,
    forwarded: AtomicU64,
    batches: AtomicU64,
    retries: AtomicU64,
    lag_bytes: AtomicU64,
    lag_records: AtomicU64,
    oldest_ns: AtomicU64,
}

impl SinkStatus {
    fn new(target: &Target) -> SinkStatus {
        SinkStatus {
            url: target.to_string(),
            id: target.id(),
            state: AtomicU8::new(0),
            error: Mutex::new(String::new()),
            forwarded: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            lag_bytes: AtomicU64::new(0),
            lag_records: AtomicU64::new(0),
            oldest_ns: AtomicU64::new(0),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Relaxed) {
            0 => State::Ok,
            1 => State::Retrying,
            _ => State::Stopped,
        }
    }

    fn set_state(&self, state: State, error: Option<&str>) {
        self.state.store(state as u8, Ordering::Relaxed);
        if let Some(error) = error
            && let Ok(mut e) = self.error.lock()
        {
            error.clone_into(&mut e);
        }
    }

    pub fn error(&self) -> String {
        self.error.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Records the sink acknowledged since the start.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Stored bytes not yet acknowledged.
    pub fn lag_bytes(&self) -> u64 {
        self.lag_bytes.load(Ordering::Relaxed)
    }

    /// Records not yet acknowledged (see [`reader::Lag::records`]: partly an estimate).
    pub fn lag_records(&self) -> u64 {
        self.lag_records.load(Ordering::Relaxed)
    }

    /// Seconds since the oldest unacknowledged record's time (0 when caught up).
    pub fn oldest_age_s(&self, now_ns: u64) -> u64 {
        match self.oldest_ns.load(Ordering::Relaxed) {
            0 => 0,
            t => now_ns.saturating_sub(t) / 1_000_000_000,
        }
    }
}

/// Every sink's figures, and what they have not read (which the writer keeps).
#[derive(Default)]
pub struct Status {
    sinks: Vec<Arc<SinkStatus>>,
    retention: Arc<Retention>,
}

impl Status {
    pub fn sinks(&self) -> &[Arc<SinkStatus>] {
        &self.sinks
    }

    /// What the sinks have not read, for the writer ([`Retention`]).
    pub fn retention(&self) -> Arc<Retention> {
        self.retention.clone()
    }

    /// `[{"sink","state","error","forwarded","batches","retries","lag_records","lag_bytes",
    /// "oldest_unforwarded_age_s","dropped_files","dropped_bytes"}]`, one per sink, for
    /// `status` and the console.
    pub fn to_json(&self, now_ns: u64) -> serde_json::Value {
        serde_json::Value::Array(
            self.sinks
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "sink": s.url(),
                        "state": s.state().as_str(),
                        "error": s.error(),
                        "forwarded": s.forwarded(),
                        "batches": s.batches(),
                        "retries": s.retries(),
                        "lag_records": s.lag_records(),
                        "lag_bytes": s.lag_bytes(),
                        "oldest_unforwarded_age_s": s.oldest_age_s(now_ns),
                    })
                })
                .collect(),
        )
    }

    /// The health line's forwarding fields (sums over the sinks; empty without a sink):
    /// ` forward_lag_records=N forward_lag_bytes=N forward_oldest_s=N forward_stopped=N`.
    pub fn health_fields(&self, now_ns: u64) -> String {
        if self.sinks.is_empty() {
            return String::new();
        }
        let sum = |f: &dyn Fn(&SinkStatus) -> u64| self.sinks.iter().map(|s| f(s)).sum::<u64>();
        format!(
            " forward_lag_records={} forward_lag_bytes={} forward_oldest_s={} forward_stopped={} \
             forward_dropped_files={}",
            sum(&|s| s.lag_records()),
            sum(&|s| s.lag_bytes()),
            self.sinks
                .iter()
                .map(|s| s.oldest_age_s(now_ns))
                .max()
                .unwrap_or(0),
            sum(&|s| u64::from(s.state() == State::Stopped)),
            self.retention.dropped_files(),
        )
    }
}

/// The running forwarders: one thread per sink.
pub struct Forwarders {
    threads: Vec<JoinHandle<()>>,
    stop: Vec<Sender<()>>,
    status: Arc<Status>,
}

impl Forwarders {
    /// The figures, before any thread runs (the server hands them to `health` and the rest),
    /// and the retention the writer asks, told at once what each sink's checkpoint in `dir`
    /// says (so a restart never deletes what a sink had not read).
    pub fn status_of(settings: &Settings, dir: &Path) -> Arc<Status> {
        let retention = Arc::new(Retention::new(settings.sinks().len(), settings.max_lag()));
        for (n, target) in settings.sinks().iter().enumerate() {
            // An unreadable checkpoint stops the start in `start`; here it holds nothing.
            if let Ok(checkpoint) = Checkpoint::load(&state_path(dir, target)) {
                for (bucket, seq) in checkpoint.buckets() {
                    retention.set_acked(n, bucket, seq);
                }
            }
        }
        Arc::new(Status {
            sinks: settings
                .sinks()
                .iter()
                .map(|t| Arc::new(SinkStatus::new(t)))
                .collect(),
            retention,
        })
    }

    /// Starts one forwarder per sink, reporting into `status` (from [`Forwarders::status_of`]
    /// on the same settings).
    ///
    /// # Errors
    /// A checkpoint that cannot be read, a password or token file that cannot be read, or a thread
    /// that cannot be started: a start-up error, before anything is sent.
    pub fn start(
        dir: &Path,
        settings: &Settings,
        status: Arc<Status>,
        log: Arc<ServerLog>,
    ) -> Result<Forwarders, String> {
        let credentials = credentials(settings)?;
        let token = secret(
            settings.token_file(),
            "LOGMILL_FORWARD_TOKEN",
            "--forward-token-file",
        )?;
        let mut forwarders = Forwarders {
            threads: Vec::new(),
            stop: Vec::new(),
            status: status.clone(),
        };
        for (n, (target, sink_status)) in settings.sinks().iter().zip(&status.sinks).enumerate() {
            let state_path = state_path(dir, target);
            let checkpoint = Checkpoint::load(&state_path).map_err(|e| e.to_string())?;
            let make = || -> Box<dyn Sink> {
                match target {
                    Target::ClickHouse {
                        host,
                        port,
                        database,
                        table,
                    } => Box::new(clickhouse::ClickHouse::new(
                        host,
                        *port,
                        &format!("{database}.{table}"),
                        settings.node_id(),
                        credentials.clone(),
                        compresses(host),
                    )),
                    Target::OtlpHttp { host, port } => Box::new(otlp::Otlp::new(
                        otlp::Transport::Http(http::Client::new(host, *port)),
                        settings.node_id(),
                        compresses(host),
                        token.clone(),
                    )),
                    Target::OtlpGrpc { host, port } => Box::new(otlp::Otlp::new(
                        otlp::Transport::Grpc(grpc::Client::new(host, *port)),
                        settings.node_id(),
                        compresses(host),
                        token.clone(),
                    )),
                }
            };
            let sinks = VecDeque::from([make(), make()]);
            let (stop_tx, stop_rx) = mpsc::channel();
            let forwarder = Forwarder {
                index: n,
                retention: status.retention(),
                batch_rows: settings.batch_rows(),
                url: target.to_string(),
                reader: Reader::new(dir, &checkpoint),
                checkpoint,
                state_path,
                sinks,
                status: sink_status.clone(),
                log: log.clone(),
                stop: stop_rx,
            };
            log.info(format_args!(
                "forwarding to {target} as node {:?} (checkpoint {})",
                settings.node_id(),
                forwarder.state_path.display()
            ));
            let thread = thread::Builder::new()
                .name(format!("logmill-forward-{n}"))
                .spawn(move || {
                    forwarder.lower_priority();
                    forwarder.run();
                })
                .map_err(|e| format!("cannot start a forwarder thread: {e}"))?;
            forwarders.threads.push(thread);
            forwarders.stop.push(stop_tx);
        }
        Ok(forwarders)
    }

    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// Stops every forwarder (a batch in flight finishes or fails first) and joins them.
    pub fn stop(self) {
        drop(self.stop);
        for thread in self.threads {
            if thread.join().is_err() {
                eprintln!("logmill: a forwarder thread panicked");
            }
        }
    }
}

/// `<dir>/.logmill/forward-<id>.json`.
fn state_path(dir: &Path, target: &Target) -> PathBuf {
    dir.join(".logmill")
        .join(format!("forward-{}.json", target.id()))
}

/// A secret from `file` (its first line's end trimmed) or else from the environment variable
/// `var` (empty is none): never from the command line, where `ps` would show it.
/// It goes into an HTTP header, so a control character in it (a second line) is refused.
fn secret(file: Option<&Path>, var: &str, flag: &str) -> Result<Option<String>, String> {
    let (value, from) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read {flag} {}: {e}", path.display()))?,
            format!("{flag} {}", path.display()),
        ),
        None => match std::env::var(var) {
            Ok(v) if !v.is_empty() => (v, var.to_string()),
            _ => return Ok(None),
        },
    };
    if value.chars().any(char::is_control) {
        return Err(format!(
            "{from}: the secret has a control character (more than one line?)"
        ));
    }
    Ok(Some(value))
}

/// The ClickHouse login: user from `LOGMILL_CLICKHOUSE_USER`; password from
/// `--forward-password-file` or `LOGMILL_CLICKHOUSE_PASSWORD` (never from the command line,
/// where `ps` would show it).
fn credentials(settings: &Settings) -> Result<clickhouse::Credentials, String> {
    let user = std::env::var("LOGMILL_CLICKHOUSE_USER")
        .ok()
        .filter(|u| !u.is_empty());
    let password = secret(
        settings.password_file(),
        "LOGMILL_CLICKHOUSE_PASSWORD",
        "--forward-password-file",
    )?;
    Ok(clickhouse::Credentials::new(user, password))
}

/// One sink's thread.
struct Forwarder {
    /// This sink's number, for the retention.
    index: usize,
    retention: Arc<Retention>,
    batch_rows: usize,
    url: String,
    reader: Reader,
    checkpoint: Checkpoint,
    state_path: PathBuf,
    /// Two sinks (two connections): the front one is being filled while the other's batch
    /// is in flight.
    sinks: VecDeque<Box<dyn Sink>>,
    status: Arc<SinkStatus>,
    log: Arc<ServerLog>,
    stop: Receiver<()>,
}

/// A batch on its way: the thread sending it, which hands the sink back with the answer.
struct InFlight {
    thread: JoinHandle<(Box<dyn Sink>, Result<(), SendError>)>,
    mark: Mark,
    rows: u64,
}

/// What became of a batch in flight.
enum Outcome {
    Taken,
    /// Stopped on an error no retry fixes, or the server is stopping.
    Stop,
}

impl Forwarder {
    /// Runs this thread (and the sending threads it starts, which inherit it) at the lowest
    /// priority, nice 19: a forwarder uses the CPU the event loops and the writer leave, so
    /// under full ingest load it lags, and catches up from the files once the load drops.
    /// Where that cannot be done, it says so and runs at normal priority.
    fn lower_priority(&self) {
        #[cfg(target_os = "linux")]
        let result = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19)
            .map_err(|e| e.to_string());
        #[cfg(not(target_os = "linux"))]
        let result: Result<(), String> = Err("not on this system".to_string());
        if let Err(e) = result {
            self.log.warn(format_args!(
                "forward to {}: cannot lower the forwarder's priority ({e}); it competes with \
                 ingestion for the CPU",
                self.url
            ));
        }
    }

    /// Fills a batch from the files while the previous one is in flight on a short-lived
    /// thread (pipelining: reading and encoding overlap the sink's work), then, once the
    /// previous is taken, sends this one. One batch in flight at a time keeps the
    /// acknowledgements in order, so the checkpoint never passes a record not taken.
    fn run(mut self) {
        let mut batch_started: Option<Instant> = None;
        let mut in_flight: Option<InFlight> = None;
        loop {
            if in_flight.as_ref().is_some_and(|f| f.thread.is_finished())
                && let Some(f) = in_flight.take()
                && matches!(self.finish(f), Outcome::Stop)
            {
                return self.stopped();
            }
            let sink = &mut self.sinks[0];
            let max_bytes = sink.max_bytes();
            if sink.rows() < self.batch_rows && sink.bytes() < max_bytes {
                let filled = match self.reader.fill(&mut **sink, self.batch_rows, max_bytes) {
                    Ok(filled) => filled,
                    Err(e) => {
                        self.log.warn(format_args!(
                            "forward to {}: cannot read the stored files: {e}; retrying",
                            self.url
                        ));
                        if self.wait(BACKOFF_MAX) {
                            return self.stopped();
                        }
                        continue;
                    }
                };
                if filled.unreadable > 0 {
                    self.log.warn(format_args!(
                        "forward to {}: skipped {} that are not stored lines",
                        self.url,
                        crate::storage::server_log::count(filled.unreadable, "line")
                    ));
                }
                self.publish_lag();
                let sink = &self.sinks[0];
                if sink.rows() == 0 {
                    if self.wait(POLL) {
                        return self.stopped();
                    }
                    continue;
                }
                let started = *batch_started.get_or_insert_with(Instant::now);
                let full = sink.rows() >= self.batch_rows || sink.bytes() >= max_bytes;
                let waited = started.elapsed();
                if !full && filled.at_end && waited < BATCH_WAIT {
                    if self.wait(POLL.min(BATCH_WAIT - waited)) {
                        return self.stopped();
                    }
                    continue;
                }
            }
            // This batch is ready: the previous must be taken first.
            if let Some(f) = in_flight.take()
                && matches!(self.finish(f), Outcome::Stop)
            {
                return self.stopped();
            }
            batch_started = None;
            let Some(mut sink) = self.sinks.pop_front() else {
                return self.stopped();
            };
            let rows = sink.rows() as u64;
            let mark = self.reader.cut();
            let thread = thread::Builder::new()
                .name("logmill-forward-send".into())
                .spawn(move || {
                    let result = sink.send();
                    (sink, result)
                });
            match thread {
                Ok(thread) => in_flight = Some(InFlight { thread, mark, rows }),
                Err(e) => {
                    self.log.error(format_args!(
                        "forward to {} STOPPED: cannot start a thread: {e}",
                        self.url
                    ));
                    self.status.set_state(State::Stopped, Some(&e.to_string()));
                    return self.stopped();
                }
            }
        }
    }

    /// Waits for the batch in flight; retries it here (backoff with jitter) while the error
    /// can succeed later; acknowledges it once taken. The sink goes back to the spares.
    fn finish(&mut self, f: InFlight) -> Outcome {
        let InFlight { thread, mark, rows } = f;
        let Ok((mut sink, mut result)) = thread.join() else {
            self.log.error(format_args!(
                "forward to {} STOPPED: the sending thread panicked",
                self.url
            ));
            self.status
                .set_state(State::Stopped, Some("the sending thread panicked"));
            return Outcome::Stop;
        };
        let mut backoff = BACKOFF_FIRST;
        loop {
            match result {
                Ok(()) => {
                    self.sinks.push_back(sink);
                    self.acknowledged(mark, rows);
                    return Outcome::Taken;
                }
                Err(SendError::Retry(why)) => {
                    if self.status.state() != State::Retrying {
                        self.log.warn(format_args!(
                            "forward to {}: {why}; retrying with backoff (records stay in the \
                             files until it takes them)",
                            self.url
                        ));
                    }
                    self.status.set_state(State::Retrying, Some(&why));
                    self.status.retries.fetch_add(1, Ordering::Relaxed);
                    self.publish_lag();
                    if self.wait(jitter(backoff)) {
                        return Outcome::Stop;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    result = sink.send();
                }
                Err(SendError::Fatal(why)) => {
                    self.log.error(format_args!(
                        "forward to {} STOPPED: {why}. Records keep being stored; fix the sink \
                         and restart logmill to resume from the checkpoint",
                        self.url
                    ));
                    self.status.set_state(State::Stopped, Some(&why));
                    return Outcome::Stop;
                }
            }
        }
    }

    /// Stopped (an error no retry fixes) or stopping: keeps the lag current until the server
    /// stops.
    fn stopped(&self) {
        self.publish_lag();
        if self.status.state() != State::Stopped {
            return;
        }
        while !self.wait(Duration::from_secs(1)) {
            self.publish_lag();
        }
    }

    /// The sink took the batch cut at `mark`: move the checkpoint, durably.
    fn acknowledged(&mut self, mark: Mark, rows: u64) {
        if self.status.state() == State::Retrying {
            self.log.info(format_args!(
                "forward to {}: the sink takes batches again",
                self.url
            ));
        }
        self.status.set_state(State::Ok, Some(""));
        self.status.forwarded.fetch_add(rows, Ordering::Relaxed);
        self.status.batches.fetch_add(1, Ordering::Relaxed);
        for (bucket, seq) in self.reader.acknowledge(mark) {
            self.checkpoint.advance(&bucket, seq);
            self.retention.set_acked(self.index, &bucket, seq);
        }
        if let Err(e) = self.checkpoint.save(&self.state_path, &self.url) {
            // At least once still holds: a restart resends from the older checkpoint.
            self.log.warn(format_args!(
                "forward to {}: cannot save the checkpoint {}: {e}; a restart will resend \
                 what was sent since the last save",
                self.url,
                self.state_path.display()
            ));
        }
        self.publish_lag();
    }

    fn publish_lag(&self) {
        if let Ok(lag) = self.reader.lag() {
            self.status.lag_bytes.store(lag.bytes, Ordering::Relaxed);
            self.status
                .lag_records
                .store(lag.records, Ordering::Relaxed);
            self.status
                .oldest_ns
                .store(lag.oldest_ns, Ordering::Relaxed);
        }
    }

    /// Waits `d`; true when the server is stopping.
    fn wait(&self, d: Duration) -> bool {
        !matches!(self.stop.recv_timeout(d), Err(RecvTimeoutError::Timeout))
    }
}

/// Whether batches to `host` are gzip-compressed: yes over a network, no to this host
/// (`localhost`, `127.x.x.x`, `::1`), where compressing costs both sides CPU and saves
/// nothing.
pub fn compresses(host: &str) -> bool {
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// Compresses a batch into `out` (emptied first), once: a retried batch sends the same bytes.
/// Level 1: rows of logs are repetitive, and the fastest level already shrinks them several
/// times over for a fraction of the time a higher one takes.
///
/// # Errors
/// [`SendError::Retry`] if compressing fails (it cannot, into memory).
pub fn gzip(batch: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
    use std::io::Write as _;
    out.clear();
    let mut gz = flate2::write::GzEncoder::new(std::mem::take(out), flate2::Compression::fast());
    let done = gz.write_all(batch).and_then(|()| gz.finish());
    *out = done.map_err(|e| SendError::Retry(format!("cannot compress the batch: {e}")))?;
    Ok(())
}

/// `d` times a random factor in [0.5, 1): forwarders of many nodes that failed together do
/// not retry together.
fn jitter(d: Duration) -> Duration {
    let mut bytes = [0u8; 2];
    match getrandom::fill(&mut bytes) {
        Ok(()) => {
            let r = u32::from(u16::from_le_bytes(bytes));
            d / 2 + d * r / (2 * 65_536)
        }
        Err(_) => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_urls() {
        let t = Target::parse("clickhouse+http://127.0.0.1:18123/logs.records").unwrap();
        assert_eq!(
            t.to_string(),
            "clickhouse+http://127.0.0.1:18123/logs.records"
        );
        assert_eq!(t.id(), "clickhouse-127.0.0.1-18123-logs.records");
        let t = Target::parse("clickhouse+http://ch.local/db.t").unwrap();
        assert_eq!(t.to_string(), "clickhouse+http://ch.local:8123/db.t");
        let t = Target::parse("otlp+http://collector").unwrap();
        assert_eq!(t.to_string(), "otlp+http://collector:4318");
        assert_eq!(t.id(), "otlp-http-collector-4318");
        let t = Target::parse("otlp+grpc://collector").unwrap();
        assert_eq!(t.to_string(), "otlp+grpc://collector:4317");
        assert_eq!(t.id(), "otlp-grpc-collector-4317");
        let t = Target::parse("clickhouse+http://[::1]:8123/db.t").unwrap();
        assert_eq!(t.to_string(), "clickhouse+http://[::1]:8123/db.t");
        assert_eq!(t.id(), "clickhouse-__1-8123-db.t");
        let t = Target::parse("otlp+http://[fd00::7]/").unwrap();
        assert_eq!(t.to_string(), "otlp+http://[fd00::7]:4318");
        assert!(!compresses("::1") && !compresses("127.0.0.2") && !compresses("localhost"));
        assert!(compresses("fd00::7") && compresses("ch.internal"));
        for bad in [
            "http://h/db.t",
            "clickhouse+http://h",
            "clickhouse+http://h/t",
            "clickhouse+http://h:0/db.t",
            "clickhouse+http://h:x/db.t",
            "clickhouse+http://a b/db.t",
            "clickhouse+http://h/db.t;drop",
            "clickhouse+http://u:p@h/db.t",
            "clickhouse+http://[::1/db.t",
            "clickhouse+http://[nope]:8123/db.t",
            "clickhouse+http://[::1]8123/db.t",
            "clickhouse+http://::1:8123/db.t",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_secret_comes_from_its_file_without_the_line_end_and_never_with_a_second_line() {
        let dir = std::env::temp_dir().join(format!("logmill-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "abc.def\r\n").unwrap();
        let got = secret(Some(&file), "LOGMILL_TEST_UNSET_SECRET", "--x-file");
        assert_eq!(got, Ok(Some("abc.def".to_string())));
        std::fs::write(&file, "abc\nX-Injected: 1\n").unwrap();
        let err = secret(Some(&file), "LOGMILL_TEST_UNSET_SECRET", "--x-file").unwrap_err();
        assert!(err.contains("control character"), "{err}");
        let err = secret(Some(&dir.join("none")), "V", "--x-file").unwrap_err();
        assert!(err.contains("cannot read --x-file"), "{err}");
        assert_eq!(
            secret(None, "LOGMILL_TEST_UNSET_SECRET", "--x-file"),
            Ok(None)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn jitter_stays_between_half_and_all() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(2));
            assert!(
                j >= Duration::from_secs(1) && j <= Duration::from_secs(2),
                "{j:?}"
            );
        }
    }
}
