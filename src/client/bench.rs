//! `logmill bench`: a load client with its own mio event loop, the mirror image of the server's.
//!
//! Load mode: C connections each send a `hello` asking for acks, then their share of M records
//! in batch frames of B records, as fast as their sockets take them, and read acks until every
//! record is acknowledged. It reports records/s, MB/s of record text, the ack latency of batches
//! and, when bench started the server itself, the server's CPU time and memory (from `/proc`).
//!
//! `--proto` picks the wire protocol (the encoders are in `load.rs`):
//!
//! - `native` (the default) is the above.
//! - `syslog`, `json` and `pickle` have no hello and no acks: the connections just send. The
//!   run is over when the server has *written* every record, which bench learns by asking
//!   `health` on a short connection of its own (the line's `records_written`, against its
//!   value before the run) every [`HEALTH_INTERVAL`]. No latency is measured.
//! - `grpc` sends to the gRPC port, through `h2` driven from the same kind of loop
//!   (`bench_grpc.rs`): one `PushStream` call per connection, or `Push` calls with
//!   `--grpc-calls` in flight. A reply means the call's records are written.
//!
//! Idle mode (`--idle N`): N connections say hello, wait for the server's welcome and stay
//! silent; the server's RSS before and after says what an idle connection costs.
//!
//! The client must never be what limits the measurement, so nothing is encoded while the clock
//! runs: each connection encodes one batch frame beforehand (a `Template`) and resends it,
//! writing only each record's 10-digit counter into it between sends. Connection set-up
//! (connect, hello, welcome) also happens before the clock starts.
//!
//! Everything runs on the calling thread, except a small thread that drains a spawned server's
//! standard output so the server can never block on a full pipe. This file is a measuring tool,
//! not a client library: programs that send records use `protocol::native`'s encoders.

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::bench_grpc;
use super::load::Template;
use crate::config;
use crate::protocol::frame::{self, Frame};
use crate::protocol::native::{self, ErrorKind, Hello, ServerFrame};

/// Longest wait in `poll`, so the deadline and the progress bar are looked at even when no
/// socket has anything to say.
const TICK: Duration = Duration::from_millis(100);
/// How often a protocol without acks asks `health` whether every record is written: the
/// resolution of its elapsed time (5 ms is 0.5% of a 1-second run), at the cost of one short
/// connection to the server each time.
const HEALTH_INTERVAL: Duration = Duration::from_millis(5);
/// Connections being set up (connect, hello, welcome) at once. The server's accept queue holds
/// 4096; staying well under it means no SYN is dropped and retransmitted a second later, which
/// would make `--idle 10000` slow for reasons that have nothing to do with the server.
const CONNECT_WINDOW: usize = 512;
/// Server frames are acks, welcomes and error messages, all tiny; a longer prefix means the
/// stream is broken.
const MAX_SERVER_FRAME: u32 = 1 << 20;
/// Bytes read per `read` call; acks are about 40 bytes, so this drains many at once.
const READ_CHUNK: usize = 64 * 1024;
/// The progress bar appears only once a run has lasted this long: a short run needs none.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);
/// How long a spawned server may take to stop after SIGTERM. Its own `--shutdown-timeout`
/// defaults to 10 s; past three times that it is stuck, and is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// File descriptors this process needs besides its connections (stdio, poll, pipes, /proc).
const FD_SPARE: u64 = 64;

/// Options of `logmill bench`. Public so tests and other tools can build them and call [`run`].
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Server to measure (HOST:PORT; for --proto grpc its gRPC port). Without it, bench starts
    /// `logmill serve` itself, on a free port with a fresh directory and --fsync never, and also
    /// reports its CPU and memory.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Connections sending at once.
    #[arg(
        short = 'c',
        long,
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub connections: u32,
    /// Records to send in all, spread evenly over the connections.
    #[arg(
        short = 'n',
        long,
        default_value_t = 2_000_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub records: u64,
    /// Bytes in each record's message.
    #[arg(short = 's', long, default_value_t = 200)]
    pub size: u32,
    /// Records per batch frame (syslog, json, pickle: per write; grpc: per message).
    #[arg(
        long,
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    pub batch: u32,
    /// Records a connection may have sent but not yet seen acked before it waits (0: no limit,
    /// every record is sent as fast as the socket takes it). Without a limit, ack latency
    /// measures how long the queue in the socket buffers and the server is.
    #[arg(long, default_value_t = 0, value_name = "RECORDS")]
    pub window: u64,
    /// Wire protocol to send.
    #[arg(long, value_enum, default_value_t = Proto::Native)]
    pub proto: Proto,
    /// With --proto grpc: one PushStream call per connection, or unary Push calls of --batch
    /// records each.
    #[arg(long = "grpc-mode", value_enum, default_value_t = GrpcMode::Stream)]
    pub grpc_mode: GrpcMode,
    /// With --proto grpc --grpc-mode unary: calls each connection keeps in flight.
    #[arg(
        long = "grpc-calls",
        default_value_t = 8,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=100)
    )]
    pub grpc_calls: u32,
    /// Instead of sending records, hold N idle connections and report the server's memory per
    /// connection.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..),
        conflicts_with_all = ["connections", "records", "size", "batch", "window"]
    )]
    pub idle: Option<u32>,
    /// Seconds --idle holds its connections before measuring.
    #[arg(long = "idle-secs", default_value_t = 5, value_name = "SECS")]
    pub idle_secs: u64,
    /// Extra arguments for the server bench starts, split on whitespace (e.g. "--workers 4").
    #[arg(
        long = "server-args",
        value_name = "ARGS",
        allow_hyphen_values = true,
        conflicts_with = "addr"
    )]
    pub server_args: Option<String>,
    /// The run must end within this (the --idle hold comes on top), or bench fails.
    #[arg(long, default_value = "300s", value_parser = config::parse_duration)]
    pub timeout: Duration,
    /// Never draw the progress bar (it is drawn only on a terminal, for runs over a second).
    #[arg(long = "no-progress")]
    pub no_progress: bool,
}

/// Wire protocols bench can send.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// Length-prefixed Cap'n Proto frames (schema/logmill.capnp), acked.
    Native,
    /// RFC 5424 lines, newline framing; no acks.
    Syslog,
    /// JSON lines; no acks.
    Json,
    /// Python SocketHandler frames (length, protocol-2 pickle); no acks.
    Pickle,
    /// gRPC (proto/logmill.proto) on the gRPC port; each call's reply is its ack.
    Grpc,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Native => "native",
            Proto::Syslog => "syslog",
            Proto::Json => "json",
            Proto::Pickle => "pickle",
            Proto::Grpc => "grpc",
        }
    }
}

/// How `--proto grpc` sends its records.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcMode {
    /// One client-streaming PushStream call per connection, --batch records per message.
    Stream,
    /// Unary Push calls of --batch records, --grpc-calls in flight per connection.
    Unary,
}

/// What a run measured. `Display` gives the lines for people, [`Report::to_json`] the one line
/// for scripts.
#[derive(Clone, Debug)]
pub enum Report {
    Load(LoadReport),
    Idle(IdleReport),
}

/// What a load run measured.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub proto: Proto,
    /// Only for `Proto::Grpc`.
    pub grpc_mode: Option<GrpcMode>,
    pub connections: usize,
    pub records: u64,
    pub size: usize,
    pub batch: usize,
    /// Unacked records allowed per connection (0: no limit).
    pub window: u64,
    /// From the first record byte handed to a socket to the last ack (set-up excluded); for a
    /// protocol without acks, to the `health` answer that counted every record written.
    pub elapsed: Duration,
    /// Ack latency of batches (native) or of calls (gRPC unary); `None` where nothing answers
    /// per batch (syslog, json, pickle, a gRPC stream's one reply).
    pub latency: Option<Latency>,
    /// This process's CPU time during the load: when it nears `elapsed`, the client was the limit.
    pub client_cpu: Option<Duration>,
    /// Only when bench started the server (and `/proc` could be read).
    pub server: Option<ServerUsage>,
}

impl LoadReport {
    /// `native`, `syslog`, ..., `grpc-stream` or `grpc-unary`: the report's first word and its
    /// JSON `bench`.
    pub fn bench_name(&self) -> &'static str {
        match self.grpc_mode {
            Some(GrpcMode::Stream) => "grpc-stream",
            Some(GrpcMode::Unary) => "grpc-unary",
            None => self.proto.name(),
        }
    }

    pub fn records_per_sec(&self) -> f64 {
        per_sec(self.records as f64, self.elapsed)
    }

    /// Megabytes (10^6 bytes) of record messages per second; framing and other fields excluded,
    /// so the figure compares across protocols.
    pub fn mb_per_sec(&self) -> f64 {
        per_sec(self.records as f64 * self.size as f64, self.elapsed) / 1e6
    }
}

fn per_sec(amount: f64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        amount / elapsed.as_secs_f64()
    }
}

/// Ack latency of batches: from the moment a batch's last byte was handed to the socket until an
/// ack covering it arrived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    pub batches: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    /// Sorts `samples` and takes the percentiles.
    pub(super) fn from_samples(samples: &mut [Duration]) -> Latency {
        samples.sort_unstable();
        Latency {
            batches: samples.len(),
            p50: percentile(samples, 50.0),
            p90: percentile(samples, 90.0),
            p99: percentile(samples, 99.0),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

/// CPU time of a process, from `/proc/<pid>/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    fn since(&self, before: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(before.user),
            system: self.system.saturating_sub(before.system),
        }
    }
}

/// A spawned server's use of the machine during a load run.
#[derive(Clone, Copy, Debug)]
pub struct ServerUsage {
    /// User and system CPU time spent between the first record byte and the last ack.
    pub cpu: CpuTime,
    /// Resident memory right after the last ack.
    pub rss_kib: u64,
    /// Peak resident memory over the server's life.
    pub hwm_kib: u64,
}

/// What an idle run measured.
#[derive(Clone, Debug)]
pub struct IdleReport {
    pub connections: usize,
    pub held: Duration,
    /// Only when bench started the server (and `/proc` could be read).
    pub server: Option<IdleMemory>,
}

/// A spawned server's resident memory without and with the idle connections.
#[derive(Clone, Copy, Debug)]
pub struct IdleMemory {
    pub rss_before_kib: u64,
    pub rss_kib: u64,
}

impl IdleMemory {
    /// RSS growth per connection, in bytes (negative if the server gave memory back meanwhile).
    pub fn per_connection_bytes(&self, connections: usize) -> f64 {
        (self.rss_kib as f64 - self.rss_before_kib as f64) * 1024.0 / connections.max(1) as f64
    }
}

impl Report {
    /// The machine-readable summary, printed as the last line of stdout: one JSON object with
    /// its keys in a fixed order. Latencies are in whole microseconds; what bench could not
    /// measure is `null`.
    pub fn to_json(&self) -> String {
        use serde_json::json;
        match self {
            Report::Load(r) => {
                let records = r.records as f64;
                json_object(&[
                    ("bench", json!(r.bench_name())),
                    ("connections", json!(r.connections)),
                    ("records", json!(r.records)),
                    ("size", json!(r.size)),
                    ("batch", json!(r.batch)),
                    ("window", json!(r.window)),
                    ("seconds", json!(round(r.elapsed.as_secs_f64(), 4))),
                    ("records_per_sec", json!(r.records_per_sec().round() as u64)),
                    ("mb_per_sec", json!(round(r.mb_per_sec(), 2))),
                    ("ack_p50_us", json!(r.latency.map(|l| micros(l.p50)))),
                    ("ack_p90_us", json!(r.latency.map(|l| micros(l.p90)))),
                    ("ack_p99_us", json!(r.latency.map(|l| micros(l.p99)))),
                    ("ack_max_us", json!(r.latency.map(|l| micros(l.max)))),
                    (
                        "client_cpu_s",
                        json!(r.client_cpu.map(|c| round(c.as_secs_f64(), 3))),
                    ),
                    (
                        "server_cpu_s",
                        json!(r.server.map(|s| round(s.cpu.total().as_secs_f64(), 3))),
                    ),
                    (
                        "server_cpu_us_per_record",
                        json!(
                            r.server
                                .map(|s| round(s.cpu.total().as_secs_f64() * 1e6 / records, 3))
                        ),
                    ),
                    (
                        "server_user_us_per_record",
                        json!(
                            r.server
                                .map(|s| round(s.cpu.user.as_secs_f64() * 1e6 / records, 3))
                        ),
                    ),
                    (
                        "server_sys_us_per_record",
                        json!(
                            r.server
                                .map(|s| round(s.cpu.system.as_secs_f64() * 1e6 / records, 3))
                        ),
                    ),
                    ("server_rss_kib", json!(r.server.map(|s| s.rss_kib))),
                    ("server_hwm_kib", json!(r.server.map(|s| s.hwm_kib))),
                ])
            }
            Report::Idle(r) => json_object(&[
                ("bench", json!("idle")),
                ("connections", json!(r.connections)),
                ("held_secs", json!(round(r.held.as_secs_f64(), 3))),
                (
                    "server_rss_before_kib",
                    json!(r.server.map(|m| m.rss_before_kib)),
                ),
                ("server_rss_kib", json!(r.server.map(|m| m.rss_kib))),
                (
                    "server_rss_per_connection_bytes",
                    json!(
                        r.server
                            .map(|m| m.per_connection_bytes(r.connections).round() as i64)
                    ),
                ),
            ]),
        }
    }
}

/// `{"key":value,...}` with the keys in the order given (a `serde_json::Map` would sort them).
fn json_object(fields: &[(&str, serde_json::Value)]) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(*key).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Load(r) => {
                writeln!(
                    f,
                    "{}: {} connections sent {} records of {} bytes in batches of {}{}",
                    r.bench_name(),
                    r.connections,
                    r.records,
                    r.size,
                    r.batch,
                    if r.window == 0 {
                        String::new()
                    } else {
                        format!(", at most {} unacked per connection", r.window)
                    }
                )?;
                writeln!(
                    f,
                    "  elapsed      {:.3} s (first record byte sent to {})",
                    r.elapsed.as_secs_f64(),
                    match r.proto {
                        Proto::Native => "last ack",
                        Proto::Grpc => "last reply",
                        _ => "health counting all written",
                    }
                )?;
                writeln!(
                    f,
                    "  throughput   {:.0} records/s, {:.1} MB/s of messages",
                    r.records_per_sec(),
                    r.mb_per_sec()
                )?;
                let (what, unit) = match r.grpc_mode {
                    Some(_) => ("call latency", "calls"),
                    None => ("ack latency ", "batches"),
                };
                match &r.latency {
                    Some(l) => writeln!(
                        f,
                        "  {what} p50 {}, p90 {}, p99 {}, max {} ({} {unit})",
                        Millis(l.p50),
                        Millis(l.p90),
                        Millis(l.p99),
                        Millis(l.max),
                        l.batches
                    )?,
                    None => writeln!(f, "  {what} n/a (no answer per batch)")?,
                }
                if let Some(cpu) = r.client_cpu {
                    writeln!(f, "  client CPU   {:.2} s", cpu.as_secs_f64())?;
                }
                match &r.server {
                    Some(s) => {
                        writeln!(
                            f,
                            "  server CPU   {:.2} s, {:.3} µs per record ({:.3} user + {:.3} system)",
                            s.cpu.total().as_secs_f64(),
                            s.cpu.total().as_secs_f64() * 1e6 / r.records as f64,
                            s.cpu.user.as_secs_f64() * 1e6 / r.records as f64,
                            s.cpu.system.as_secs_f64() * 1e6 / r.records as f64,
                        )?;
                        writeln!(
                            f,
                            "  server RSS   {} KiB after the load, {} KiB peak",
                            s.rss_kib, s.hwm_kib
                        )
                    }
                    None => writeln!(
                        f,
                        "  server CPU and memory not measured (only for a server bench starts)"
                    ),
                }
            }
            Report::Idle(r) => {
                writeln!(
                    f,
                    "idle: {} connections held for {:.1} s",
                    r.connections,
                    r.held.as_secs_f64()
                )?;
                match &r.server {
                    Some(m) => writeln!(
                        f,
                        "  server RSS   {} KiB before, {} KiB with the connections: {:.0} bytes \
                         per connection",
                        m.rss_before_kib,
                        m.rss_kib,
                        m.per_connection_bytes(r.connections)
                    ),
                    None => writeln!(
                        f,
                        "  server memory not measured (only for a server bench starts)"
                    ),
                }
            }
        }
    }
}

/// A duration shown in milliseconds with microsecond precision.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3} ms", self.0.as_secs_f64() * 1e3)
    }
}

/// Why a run failed. Each message says what to do about it.
#[derive(Debug)]
pub enum BenchError {
    /// The options cannot work on this machine.
    Usage(String),
    /// Something bench needs locally failed (temp dir, poll, open files limit).
    Setup { what: String, source: io::Error },
    /// The server bench tried to start did not come up.
    ServerStart(String),
    /// `--addr` names no usable address.
    Address { addr: String, detail: String },
    /// A connection could not be established.
    Connect { addr: SocketAddr, source: io::Error },
    /// Reading or writing connection `conn` failed.
    Io { conn: usize, source: io::Error },
    /// The server sent an error frame on connection `conn`.
    ServerError {
        conn: usize,
        kind: Option<ErrorKind>,
        message: String,
    },
    /// A gRPC call on connection `conn` ended with a status other than OK.
    GrpcStatus {
        conn: usize,
        status: String,
        message: String,
    },
    /// The server broke the protocol on connection `conn` (bad frame, impossible ack).
    Protocol { conn: usize, detail: String },
    /// Asking the server's `health` (to count records written) failed.
    Health(String),
    /// The server closed connection `conn` early.
    Closed { conn: usize, detail: String },
    /// A batch frame is over the server's `--max-frame`.
    FrameTooLarge { bytes: usize, max: u32 },
    /// `--timeout` passed.
    Timeout {
        timeout: Duration,
        waiting_for: String,
    },
    /// The spawned server did not stop cleanly.
    ServerStop(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(message) => f.write_str(message),
            BenchError::Setup { what, source } => write!(f, "{what}: {source}"),
            BenchError::ServerStart(message) => write!(
                f,
                "the server did not start: {message}\n(check --server-args, or measure a running \
                 server with --addr)"
            ),
            BenchError::Address { addr, detail } => write!(
                f,
                "--addr {addr}: {detail}; give HOST:PORT of a running logmill server"
            ),
            BenchError::Connect { addr, source } => write!(
                f,
                "cannot connect to {addr}: {source}; is the server running and listening there?"
            ),
            BenchError::Io { conn, source } => write!(
                f,
                "connection {conn}: {source}; the server may have crashed or dropped the \
                 connection (see its log)"
            ),
            BenchError::ServerError {
                conn,
                kind,
                message,
            } => {
                let kind = kind.map_or_else(|| "unknown error".to_string(), |k| format!("{k:?}"));
                write!(
                    f,
                    "the server sent an error on connection {conn}: {kind}: {message}"
                )
            }
            BenchError::GrpcStatus {
                conn,
                status,
                message,
            } => write!(
                f,
                "a gRPC call on connection {conn} failed with grpc-status {status}: {message}"
            ),
            BenchError::Protocol { conn, detail } => write!(
                f,
                "the server broke the protocol on connection {conn}: {detail}; this is a server \
                 bug worth reporting"
            ),
            BenchError::Health(detail) => write!(
                f,
                "asking the server's health failed: {detail}; without it bench cannot tell when \
                 the records are written"
            ),
            BenchError::Closed { conn, detail } => write!(
                f,
                "the server closed connection {conn} {detail}; see the server's log for why"
            ),
            BenchError::FrameTooLarge { bytes, max } => write!(
                f,
                "a batch frame takes {bytes} bytes but the server accepts at most {max} \
                 (--max-frame); lower --batch or --size, or raise the server's --max-frame"
            ),
            BenchError::Timeout {
                timeout,
                waiting_for,
            } => write!(
                f,
                "--timeout {timeout:?} passed while waiting for {waiting_for}; the server may be \
                 stuck, or the run needs a longer --timeout or fewer records"
            ),
            BenchError::ServerStop(message) => write!(
                f,
                "the server did not stop cleanly: {message}; this is a server bug worth reporting"
            ),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Setup { source, .. }
            | BenchError::Connect { source, .. }
            | BenchError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub(super) fn setup(what: &str) -> impl FnOnce(io::Error) -> BenchError + '_ {
    move |source| BenchError::Setup {
        what: what.to_string(),
        source,
    }
}

/// Runs a bench as `args` say: starts a server unless `--addr` is given, measures, stops the
/// server it started. Progress and notes go to stderr; the caller prints the report.
///
/// # Errors
/// [`BenchError`] for anything that makes the figures meaningless: a server that errs, closes,
/// acks wrongly or does not finish before `--timeout`. A server bench started is stopped in any
/// case; after a failure its files and stderr are kept and their place is printed.
pub fn run(args: BenchArgs) -> Result<Report, BenchError> {
    let hold = Duration::from_secs(args.idle_secs);
    let deadline = Instant::now()
        + args.timeout
        + if args.idle.is_some() {
            hold
        } else {
            Duration::ZERO
        };
    let connections = args.idle.unwrap_or(args.connections);
    if args.idle.is_some() && args.proto != Proto::Native {
        return Err(BenchError::Usage(
            "--idle measures native connections only; drop --proto".into(),
        ));
    }
    raise_fd_limit(u64::from(connections))?;

    let grpc = args.proto == Proto::Grpc;
    let (addr, mut server) = match &args.addr {
        Some(addr) => (resolve(addr)?, None),
        None => {
            let extra = args.server_args.as_deref().unwrap_or("");
            let server = SpawnedServer::start(extra, grpc, deadline, args.timeout)?;
            let addr = match server.grpc_addr {
                Some(grpc_addr) if grpc => grpc_addr,
                _ => server.addr,
            };
            eprintln!(
                "logmill bench: started a server (pid {}) on {addr}, files in {}",
                server.child.id(),
                server.base.display()
            );
            (addr, Some(server))
        }
    };
    let result = match args.idle {
        Some(n) => idle(
            n as usize,
            hold,
            addr,
            server.as_ref(),
            deadline,
            args.timeout,
        )
        .map(Report::Idle),
        None => match args.proto {
            Proto::Native => load(&args, addr, server.as_ref(), deadline),
            Proto::Grpc => bench_grpc::load(&args, addr, server.as_ref(), deadline),
            Proto::Syslog | Proto::Json | Proto::Pickle => {
                load_unacked(&args, addr, server.as_ref(), deadline)
            }
        }
        .map(Report::Load),
    };
    if let Some(server) = server.as_mut() {
        match (&result, server.stop(result.is_err())) {
            (Ok(_), Err(stop)) => return Err(stop),
            (Err(_), Err(stop)) => eprintln!("logmill bench: also, {stop}"),
            (_, Ok(())) => {}
        }
    }
    result
}

/// Raises this process's open files limit to its hard limit and checks `connections` fit.
fn raise_fd_limit(connections: u64) -> Result<(), BenchError> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .map_err(setup("cannot raise the open files limit"))?;
    let needed = connections.saturating_add(FD_SPARE);
    if limit < needed {
        return Err(BenchError::Usage(format!(
            "{connections} connections need {needed} open files but this process may open only \
             {limit}; raise the hard limit (ulimit -Hn) or use fewer connections"
        )));
    }
    Ok(())
}

fn resolve(addr: &str) -> Result<SocketAddr, BenchError> {
    let mut addrs = addr.to_socket_addrs().map_err(|e| BenchError::Address {
        addr: addr.to_string(),
        detail: e.to_string(),
    })?;
    addrs.next().ok_or_else(|| BenchError::Address {
        addr: addr.to_string(),
        detail: "resolves to no address".into(),
    })
}

// ---------------------------------------------------------------------------------------------
// Load mode

/// Native: opens the connections, sends every record, waits for every ack, and measures.
fn load(
    args: &BenchArgs,
    addr: SocketAddr,
    server: Option<&SpawnedServer>,
    deadline: Instant,
) -> Result<LoadReport, BenchError> {
    let n = args.connections as usize;
    let batch = u64::from(args.batch);
    let size = args.size as usize;
    let mut poll = Poll::new().map_err(setup("cannot create a mio Poll"))?;
    eprintln!("logmill bench: opening {n} connections to {addr}");
    let (links, max_frame) = open(&mut poll, addr, n, deadline, args.timeout)?;

    // Everything is encoded here, before the clock starts.
    let mut conns: Vec<LoadConn> = links
        .into_iter()
        .enumerate()
        .map(|(i, link)| {
            let total = share(i, n, args.records);
            LoadConn::new(link, Proto::Native, i, total, batch, args.window, size)
        })
        .collect();
    if let Some(bytes) = conns.iter().map(LoadConn::largest_frame).max() {
        let payload = bytes.saturating_sub(frame::HEADER_LEN);
        if payload > max_frame as usize {
            return Err(BenchError::FrameTooLarge {
                bytes: payload,
                max: max_frame,
            });
        }
    }
    let batches: u64 = conns.iter().map(|c| c.total.div_ceil(batch)).sum();
    let mut latencies = Vec::with_capacity(usize::try_from(batches).unwrap_or(0));
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut frames = Vec::new();
    let mut progress = Progress::new(!args.no_progress, args.records);
    let mut acked: u64 = 0;
    let mut remaining = conns.len();

    let usage = Usage::before(server);
    eprintln!(
        "logmill bench: sending {} records of {size} bytes in batches of {batch}",
        args.records
    );
    let start = Instant::now();
    let mut end = start;
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send()
            .map_err(|source| BenchError::Io { conn: i, source })?;
    }
    while remaining > 0 {
        wait(&mut poll, &mut events, deadline, args.timeout, || {
            format!("acks ({acked} of {} records acknowledged)", args.records)
        })?;
        for event in events.iter() {
            let i = event.token().0;
            let conn = &mut conns[i];
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let closed = conn.link.receive(i, &mut scratch, &mut frames)?;
                let now = Instant::now();
                for frame in frames.drain(..) {
                    if let ServerFrame::Ack { count, .. } = frame {
                        acked += conn.on_ack(i, count, now, &mut latencies)?;
                    }
                }
                if args.window > 0 {
                    // The ack may have opened the window; no writable edge will say so.
                    conn.send()
                        .map_err(|source| BenchError::Io { conn: i, source })?;
                }
                if conn.acked == conn.total && !conn.complete {
                    conn.complete = true;
                    remaining -= 1;
                    end = now;
                }
                if closed && !conn.complete {
                    return Err(BenchError::Closed {
                        conn: i,
                        detail: format!(
                            "after acking {} of its {} records",
                            conn.acked, conn.total
                        ),
                    });
                }
            }
            if event.is_writable() {
                conn.send()
                    .map_err(|source| BenchError::Io { conn: i, source })?;
            }
        }
        progress.update(acked, start.elapsed());
    }
    progress.finish();
    Ok(usage.report(server, args, end - start, Some(&mut latencies)))
}

/// CPU time of this process and of a spawned server when the clock starts, to take the
/// difference when it stops.
pub(super) struct Usage {
    client: Option<CpuTime>,
    server: Option<CpuTime>,
}

impl Usage {
    pub(super) fn before(server: Option<&SpawnedServer>) -> Usage {
        Usage {
            server: server.and_then(SpawnedServer::cpu),
            client: cpu_time("self"),
        }
    }

    /// The report of the load run `args` asked for, which took `elapsed`: with this process's
    /// CPU time since [`Usage::before`], the server's CPU time and memory, and the latency of
    /// the `latencies` samples (sorted only once the CPU times are read, so not counted).
    pub(super) fn report(
        &self,
        server: Option<&SpawnedServer>,
        args: &BenchArgs,
        elapsed: Duration,
        latencies: Option<&mut [Duration]>,
    ) -> LoadReport {
        let client_cpu = self
            .client
            .zip(cpu_time("self"))
            .map(|(before, after)| after.since(before).total());
        let server = server.and_then(|s| {
            let cpu = self.server.zip(s.cpu())?;
            let memory = s.memory()?;
            Some(ServerUsage {
                cpu: cpu.1.since(cpu.0),
                rss_kib: memory.rss_kib,
                hwm_kib: memory.hwm_kib,
            })
        });
        LoadReport {
            proto: args.proto,
            grpc_mode: (args.proto == Proto::Grpc).then_some(args.grpc_mode),
            connections: args.connections as usize,
            records: args.records,
            size: args.size as usize,
            batch: args.batch as usize,
            // Only native sends within a window: the other protocols have no acks to wait for.
            window: if args.proto == Proto::Native {
                args.window
            } else {
                0
            },
            elapsed,
            latency: latencies.map(Latency::from_samples),
            client_cpu,
            server,
        }
    }
}

/// Syslog, JSON lines, pickle: opens plain connections, sends every record, then asks `health`
/// until the server has written them all, and measures.
///
/// The baseline is read before anything is sent, so a server that already holds records (an
/// `--addr` one) is measured right, as long as nobody else sends to it meanwhile.
fn load_unacked(
    args: &BenchArgs,
    addr: SocketAddr,
    server: Option<&SpawnedServer>,
    deadline: Instant,
) -> Result<LoadReport, BenchError> {
    let n = args.connections as usize;
    let batch = u64::from(args.batch);
    let size = args.size as usize;
    let baseline = records_written(addr, deadline, args.timeout)?;
    let mut poll = Poll::new().map_err(setup("cannot create a mio Poll"))?;
    eprintln!("logmill bench: opening {n} connections to {addr}");
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let stream = connect(&poll, i, addr, deadline, args.timeout)?;
        let total = share(i, n, args.records);
        conns.push(LoadConn::new(
            Link::plain(stream),
            args.proto,
            i,
            total,
            batch,
            0,
            size,
        ));
    }
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut progress = Progress::new(!args.no_progress, args.records);
    let target = baseline.saturating_add(args.records);

    let usage = Usage::before(server);
    eprintln!(
        "logmill bench: sending {} {} records of {size} bytes, {batch} per write",
        args.records,
        args.proto.name()
    );
    let start = Instant::now();
    let mut sending = 0;
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send()
            .map_err(|source| BenchError::Io { conn: i, source })?;
        sending += usize::from(conn.queued < conn.total);
    }
    // Phase 1: hand every record to the sockets. Phase 2: ask `health` until all are written,
    // polling the sockets in between so a connection the server closes is noticed.
    let mut next_health = start;
    let end = loop {
        let now = Instant::now();
        if sending == 0 && now >= next_health {
            let written = records_written(addr, deadline, args.timeout)?;
            progress.update(written.saturating_sub(baseline), start.elapsed());
            if written >= target {
                break Instant::now();
            }
            next_health = Instant::now() + HEALTH_INTERVAL;
        }
        let now = Instant::now();
        if now >= deadline {
            let queued: u64 = conns.iter().map(|c| c.queued).sum();
            return Err(BenchError::Timeout {
                timeout: args.timeout,
                waiting_for: format!(
                    "the server to write every record ({queued} of {} sent)",
                    args.records
                ),
            });
        }
        let wait = if sending == 0 {
            next_health.saturating_duration_since(now)
        } else {
            TICK
        };
        poll_once(&mut poll, &mut events, wait.min(deadline - now))?;
        for event in events.iter() {
            let i = event.token().0;
            let conn = &mut conns[i];
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                conn.link.expect_silence(i, &mut scratch)?;
            }
            if event.is_writable() && conn.queued < conn.total {
                conn.send()
                    .map_err(|source| BenchError::Io { conn: i, source })?;
                sending -= usize::from(conn.queued == conn.total);
            }
        }
        if sending > 0 {
            let queued: u64 = conns.iter().map(|c| c.queued).sum();
            progress.update(queued, start.elapsed());
        }
    };
    progress.finish();
    Ok(usage.report(server, args, end - start, None))
}

/// Asks the server's `health` on a connection of its own and returns its `records_written`.
///
/// # Errors
/// [`BenchError::Connect`] when the server cannot be reached, [`BenchError::Health`] when the
/// exchange fails or the answer has no count.
fn records_written(
    addr: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<u64, BenchError> {
    let left = time_left(deadline, timeout, || "the health answer".into())?;
    let io = |e: io::Error| BenchError::Health(e.to_string());
    let mut stream = std::net::TcpStream::connect_timeout(&addr, left)
        .map_err(|source| BenchError::Connect { addr, source })?;
    stream.set_read_timeout(Some(left)).map_err(io)?;
    stream.write_all(b"health\n").map_err(io)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(io)?;
    parse_records_written(&answer).ok_or_else(|| {
        BenchError::Health(format!(
            "its answer has no records_written: {}",
            answer.trim()
        ))
    })
}

/// `records_written` from a health line, `OK name=x ... records_written=42 ...`.
fn parse_records_written(line: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix("records_written="))?
        .parse()
        .ok()
}

/// Connection `i`'s share of `total` records over `n` connections: the remainder goes to the
/// first connections, one each.
pub(super) fn share(i: usize, n: usize, total: u64) -> u64 {
    let n = n as u64;
    total / n + u64::from((i as u64) < total % n)
}

/// One connection's share of the load and how far it got.
struct LoadConn {
    link: Link,
    /// Records this connection sends in all.
    total: u64,
    batch: u64,
    /// Unacked records allowed before sending waits for acks (0: no limit).
    window: u64,
    /// Records whose batch frames were completely handed to the socket.
    queued: u64,
    /// Bytes of the current batch frame already handed to the socket.
    offset: usize,
    /// Records the server acknowledged (acks are cumulative).
    acked: u64,
    /// Every record is acknowledged.
    complete: bool,
    /// Batches handed to the socket and not yet acked: (`queued` once it was, when). Kept only
    /// for the native protocol: the others are never acked, and the list would only grow.
    unacked: VecDeque<(u64, Instant)>,
    acked_protocol: bool,
    /// A frame of `batch` records; present when `total >= batch`.
    full: Option<Template>,
    /// A frame of the last `total % batch` records; present when that is not zero.
    tail: Option<Template>,
}

impl LoadConn {
    fn new(
        link: Link,
        proto: Proto,
        conn: usize,
        total: u64,
        batch: u64,
        window: u64,
        size: usize,
    ) -> LoadConn {
        let tail = total % batch;
        LoadConn {
            link,
            total,
            batch,
            window,
            queued: 0,
            offset: 0,
            acked: 0,
            complete: total == 0,
            unacked: VecDeque::new(),
            acked_protocol: proto == Proto::Native,
            full: (total >= batch).then(|| Template::new(proto, conn, batch as usize, size)),
            tail: (tail > 0).then(|| Template::new(proto, conn, tail as usize, size)),
        }
    }

    fn largest_frame(&self) -> usize {
        let len = |t: &Option<Template>| t.as_ref().map_or(0, |t| t.frame.len());
        len(&self.full).max(len(&self.tail))
    }

    /// The hot path: hands batch frames to the socket until it would block, the window is full,
    /// or all are sent.
    ///
    /// Batching is what keeps the client cheap: one `write` moves up to a whole frame of B
    /// records, and the only per-record work is [`Template::stamp`] writing each record's counter
    /// into the reused frame. A batch counts as sent when its last byte is handed over; that
    /// moment starts its ack latency.
    fn send(&mut self) -> io::Result<()> {
        while self.queued < self.total {
            // A frame once started is finished, so the window is only looked at between frames.
            if self.offset == 0 && self.window > 0 && self.queued - self.acked >= self.window {
                return Ok(());
            }
            let template = if self.total - self.queued >= self.batch {
                self.full.as_mut()
            } else {
                self.tail.as_mut()
            }
            .expect("`full` exists while a batch remains, `tail` when fewer remain");
            if self.offset == 0 {
                template.stamp(self.queued);
            }
            let Some(n) = write_some(&mut self.link.stream, &template.frame[self.offset..])? else {
                return Ok(());
            };
            self.offset += n;
            if self.offset == template.frame.len() {
                self.offset = 0;
                self.queued += template.records;
                if self.acked_protocol {
                    self.unacked.push_back((self.queued, Instant::now()));
                }
            }
        }
        Ok(())
    }

    /// Takes an ack (the cumulative count of this connection's records written), records the
    /// latency of each batch it completes, and returns how many records it newly acknowledged.
    fn on_ack(
        &mut self,
        conn: usize,
        count: u64,
        now: Instant,
        latencies: &mut Vec<Duration>,
    ) -> Result<u64, BenchError> {
        if count > self.queued {
            return Err(BenchError::Protocol {
                conn,
                detail: format!(
                    "an ack for {count} records, but only {} were completely sent",
                    self.queued
                ),
            });
        }
        if count < self.acked {
            return Err(BenchError::Protocol {
                conn,
                detail: format!("the ack count went back from {} to {count}", self.acked),
            });
        }
        while let Some(&(end, sent_at)) = self.unacked.front() {
            if end > count {
                break;
            }
            latencies.push(now.saturating_duration_since(sent_at));
            self.unacked.pop_front();
        }
        let newly = count - self.acked;
        self.acked = count;
        Ok(newly)
    }
}

// ---------------------------------------------------------------------------------------------
// Idle mode

/// Opens `n` connections, holds them `hold`, and measures the server's memory with them.
fn idle(
    n: usize,
    hold: Duration,
    addr: SocketAddr,
    server: Option<&SpawnedServer>,
    deadline: Instant,
    timeout: Duration,
) -> Result<IdleReport, BenchError> {
    let before = server.and_then(SpawnedServer::memory);
    let mut poll = Poll::new().map_err(setup("cannot create a mio Poll"))?;
    eprintln!("logmill bench: opening {n} idle connections to {addr}");
    let (mut links, _) = open(&mut poll, addr, n, deadline, timeout)?;
    eprintln!(
        "logmill bench: the server welcomed {n} connections; holding them for {} s",
        hold.as_secs_f64()
    );
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut frames = Vec::new();
    let until = Instant::now() + hold;
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        poll_once(&mut poll, &mut events, until - now)?;
        for event in events.iter() {
            let i = event.token().0;
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let closed = links[i].receive(i, &mut scratch, &mut frames)?;
                frames.clear();
                if closed {
                    return Err(BenchError::Closed {
                        conn: i,
                        detail: "while it was idle".into(),
                    });
                }
            }
        }
    }
    let after = server.and_then(SpawnedServer::memory);
    let server = before.zip(after).map(|(before, after)| IdleMemory {
        rss_before_kib: before.rss_kib,
        rss_kib: after.rss_kib,
    });
    Ok(IdleReport {
        connections: links.len(),
        held: hold,
        server,
    })
}

// ---------------------------------------------------------------------------------------------
// Connections

/// A connection to the server: the socket, the hello still to send, the bytes read but not yet
/// decoded.
struct Link {
    stream: TcpStream,
    connected: bool,
    hello: Vec<u8>,
    hello_sent: usize,
    welcomed: bool,
    input: Vec<u8>,
}

impl Link {
    fn new(stream: TcpStream, conn: usize) -> Link {
        let mut hello = Vec::new();
        native::encode_hello(
            &Hello {
                app: "logmill-bench".into(),
                instance: format!("c{conn:05}"),
                token: String::new(),
                want_acks: true,
            },
            &mut hello,
        );
        Link {
            stream,
            connected: false,
            hello,
            hello_sent: 0,
            welcomed: false,
            input: Vec::new(),
        }
    }

    /// A connection that is already established and says no hello (syslog, JSON, pickle).
    fn plain(stream: TcpStream) -> Link {
        Link {
            stream,
            connected: true,
            hello: Vec::new(),
            hello_sent: 0,
            welcomed: true,
            input: Vec::new(),
        }
    }

    /// Reads what a server sent on a protocol where it never answers: anything at all, or a
    /// close, means it refused the records (it writes an error line and closes).
    fn expect_silence(&mut self, conn: usize, scratch: &mut [u8]) -> Result<(), BenchError> {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    return Err(BenchError::Closed {
                        conn,
                        detail: "while it was sending records".into(),
                    });
                }
                Ok(n) => {
                    return Err(BenchError::Protocol {
                        conn,
                        detail: format!(
                            "it answered a protocol that has no answers: {}",
                            String::from_utf8_lossy(&scratch[..n.min(200)]).trim()
                        ),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(BenchError::Io { conn, source }),
            }
        }
    }

    /// Finishes a nonblocking connect: `true` once established, `false` while in progress.
    fn finish_connect(&mut self) -> io::Result<bool> {
        if self.connected {
            return Ok(true);
        }
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                // Without this, Nagle would hold the tail of each batch back for up to a delayed
                // ack (40 ms on Linux), which would show up as server latency.
                self.stream.set_nodelay(true)?;
                self.connected = true;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends what is left of the hello, until done or the socket would block.
    fn write_hello(&mut self) -> io::Result<()> {
        while self.hello_sent < self.hello.len() {
            match write_some(&mut self.stream, &self.hello[self.hello_sent..])? {
                Some(n) => self.hello_sent += n,
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Reads until the socket would block and decodes the complete frames into `frames`.
    /// Returns whether the server closed its side. An error frame from the server is returned as
    /// an error, ahead of the close that usually follows it.
    fn receive(
        &mut self,
        conn: usize,
        scratch: &mut [u8],
        frames: &mut Vec<ServerFrame>,
    ) -> Result<bool, BenchError> {
        let mut closed = false;
        let mut failure = None;
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => self.input.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let mut pos = 0;
        let decoded = loop {
            match frame::decode(&self.input[pos..], MAX_SERVER_FRAME) {
                Ok(Frame::Complete { payload, consumed }) => {
                    let frame = native::decode_server_frame(payload);
                    pos += consumed;
                    match frame {
                        Ok(ServerFrame::Error { kind, message }) => {
                            break Err(BenchError::ServerError {
                                conn,
                                kind,
                                message,
                            });
                        }
                        Ok(frame) => frames.push(frame),
                        Err(e) => {
                            break Err(BenchError::Protocol {
                                conn,
                                detail: e.to_string(),
                            });
                        }
                    }
                }
                Ok(Frame::Incomplete { .. }) => break Ok(()),
                Err(too_large) => {
                    break Err(BenchError::Protocol {
                        conn,
                        detail: format!("a frame announcing {} bytes", too_large.len),
                    });
                }
            }
        };
        self.input.drain(..pos);
        decoded?;
        match failure {
            Some(source) => Err(BenchError::Io { conn, source }),
            None => Ok(closed),
        }
    }
}

/// Opens `n` connections to `addr`; each sends its hello and waits for the server's welcome.
/// At most [`CONNECT_WINDOW`] are being set up at once. Returns the connections, registered on
/// `poll` with their index as token, and the largest frame the server accepts.
fn open(
    poll: &mut Poll,
    addr: SocketAddr,
    n: usize,
    deadline: Instant,
    timeout: Duration,
) -> Result<(Vec<Link>, u32), BenchError> {
    let mut links: Vec<Link> = Vec::with_capacity(n);
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut frames = Vec::new();
    let mut welcomed = 0;
    let mut max_frame = u32::MAX;
    while welcomed < n {
        while links.len() < n && links.len() - welcomed < CONNECT_WINDOW {
            let i = links.len();
            let mut stream =
                TcpStream::connect(addr).map_err(|source| BenchError::Connect { addr, source })?;
            register(poll, &mut stream, i)?;
            links.push(Link::new(stream, i));
        }
        wait(poll, &mut events, deadline, timeout, || {
            format!("connections ({welcomed} of {n} welcomed by the server)")
        })?;
        for event in events.iter() {
            let i = event.token().0;
            let link = &mut links[i];
            if !link
                .finish_connect()
                .map_err(|source| BenchError::Connect { addr, source })?
            {
                continue;
            }
            link.write_hello()
                .map_err(|source| BenchError::Io { conn: i, source })?;
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let closed = link.receive(i, &mut scratch, &mut frames)?;
                for frame in frames.drain(..) {
                    if let ServerFrame::Welcome { max_frame: m, .. } = frame
                        && !link.welcomed
                    {
                        link.welcomed = true;
                        welcomed += 1;
                        max_frame = max_frame.min(m);
                    }
                }
                if closed {
                    return Err(BenchError::Closed {
                        conn: i,
                        detail: "before it was set up (no welcome after hello)".into(),
                    });
                }
            }
        }
    }
    Ok((links, max_frame))
}

/// One nonblocking write: `Some(n)` bytes taken, `None` when the socket would block.
/// `Interrupted` is retried; a write of 0 bytes is an error (the peer can take nothing more).
pub(super) fn write_some(stream: &mut TcpStream, buf: &[u8]) -> io::Result<Option<usize>> {
    loop {
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Connects to `addr` (blocking, within the deadline), turns Nagle off (it would hold the tail
/// of each batch back for up to a delayed ack) and returns the stream nonblocking, registered
/// on `poll` as connection `conn`. Used where nothing needs to overlap connection set-up: a few
/// connections, before the clock.
pub(super) fn connect(
    poll: &Poll,
    conn: usize,
    addr: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, BenchError> {
    let left = time_left(deadline, timeout, || "connections".into())?;
    let stream = std::net::TcpStream::connect_timeout(&addr, left)
        .map_err(|source| BenchError::Connect { addr, source })?;
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_nonblocking(true))
        .map_err(|source| BenchError::Connect { addr, source })?;
    let mut stream = TcpStream::from_std(stream);
    register(poll, &mut stream, conn)?;
    Ok(stream)
}

/// Registers connection `conn` on `poll`, edge-triggered, with its index as token.
fn register(poll: &Poll, stream: &mut TcpStream, conn: usize) -> Result<(), BenchError> {
    poll.registry()
        .register(stream, Token(conn), Interest::READABLE | Interest::WRITABLE)
        .map_err(setup("cannot register a connection with mio"))
}

/// What is left of the run's time, or a timeout error naming what it was `waiting_for`.
fn time_left(
    deadline: Instant,
    timeout: Duration,
    waiting_for: impl FnOnce() -> String,
) -> Result<Duration, BenchError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(BenchError::Timeout {
            timeout,
            waiting_for: waiting_for(),
        });
    }
    Ok(left)
}

/// One `poll` of at most [`TICK`] within the deadline; `waiting_for` names what a timeout was
/// waiting for.
pub(super) fn wait(
    poll: &mut Poll,
    events: &mut Events,
    deadline: Instant,
    timeout: Duration,
    waiting_for: impl FnOnce() -> String,
) -> Result<(), BenchError> {
    let left = time_left(deadline, timeout, waiting_for)?;
    poll_once(poll, events, TICK.min(left))
}

/// One `poll`, with an interrupted wait counted as a wait with no events.
pub(super) fn poll_once(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Duration,
) -> Result<(), BenchError> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        Err(source) => Err(BenchError::Setup {
            what: "mio poll failed".into(),
            source,
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// A server bench starts

/// A `logmill serve` child process, its temp directory and its address. Dropping it without
/// [`SpawnedServer::stop`] kills it and keeps its files.
pub(super) struct SpawnedServer {
    child: Child,
    /// `<temp>/logmill-bench-<pid>-<nanos>`: `data/` is the server's --dir, `server.stderr` its
    /// standard error (its log).
    base: PathBuf,
    /// Where it listens (the listening line's `tcp`).
    addr: SocketAddr,
    /// Its gRPC port (the listening line's `grpc`), when started for `--proto grpc`.
    grpc_addr: Option<SocketAddr>,
    /// Drains the server's standard output.
    reader: Option<JoinHandle<()>>,
    /// Disconnected when the reader reaches the end of the server's standard output, which is
    /// when the server exits: a wait for the exit with a deadline, without polling.
    stdout_closed: Option<mpsc::Receiver<io::Result<String>>>,
    stopped: bool,
}

/// A process's resident memory, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

impl SpawnedServer {
    /// Starts this executable as `serve --port 0 --tcp-only --fsync never --dir <fresh dir>`
    /// plus `extra`, and waits for its listening line. With `grpc`, `--grpc-port 0` replaces
    /// `--tcp-only`.
    fn start(
        extra: &str,
        grpc: bool,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<SpawnedServer, BenchError> {
        let exe = std::env::current_exe().map_err(setup("cannot find the logmill executable"))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let base =
            std::env::temp_dir().join(format!("logmill-bench-{}-{nanos}", std::process::id()));
        fs::create_dir(&base).map_err(|source| BenchError::Setup {
            what: format!("cannot create {}", base.display()),
            source,
        })?;
        let stderr =
            fs::File::create(base.join("server.stderr")).map_err(|source| BenchError::Setup {
                what: format!("cannot create {}", base.join("server.stderr").display()),
                source,
            })?;
        let ports: &[&str] = if grpc {
            &["--grpc-port", "0"]
        } else {
            &["--tcp-only"]
        };
        let mut child = Command::new(&exe)
            .args(["serve", "--port", "0"])
            .args(ports)
            .args(["--fsync", "never", "--dir"])
            .arg(base.join("data"))
            .args(extra.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| BenchError::ServerStart(format!("cannot run {}: {e}", exe.display())))?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        let reader = thread::Builder::new()
            .name("logmill-bench-stdout".into())
            .spawn(move || drain_stdout(stdout, &tx));
        let mut server = SpawnedServer {
            child,
            base,
            // Replaced by the listening line's address below.
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            grpc_addr: None,
            reader: None,
            stdout_closed: None,
            stopped: false,
        };
        match reader {
            Ok(reader) => server.reader = Some(reader),
            Err(e) => {
                server.discard();
                return Err(setup("cannot start a thread")(e));
            }
        }
        let listening = server
            .wait_listening(&rx, deadline, timeout)
            .and_then(|line| {
                let tcp = parse_listening(&line, "tcp")?;
                let grpc_addr = if grpc {
                    Some(parse_listening(&line, "grpc")?)
                } else {
                    None
                };
                Ok((tcp, grpc_addr))
            });
        match listening {
            Ok((addr, grpc_addr)) => {
                server.addr = addr;
                server.grpc_addr = grpc_addr;
                server.stdout_closed = Some(rx);
                Ok(server)
            }
            Err(e) => {
                // The error holds the end of its stderr: nothing else is worth keeping.
                server.discard();
                Err(e)
            }
        }
    }

    /// Waits for the listening line and returns it.
    fn wait_listening(
        &mut self,
        rx: &mpsc::Receiver<io::Result<String>>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<String, BenchError> {
        let wait = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(wait) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                return Err(BenchError::ServerStart(format!(
                    "cannot read its standard output: {e}"
                )));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(BenchError::ServerStart(format!(
                    "no listening line within --timeout {timeout:?}{}",
                    self.stderr_tail()
                )));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(BenchError::ServerStart(
                    "its standard output could not be read".into(),
                ));
            }
        };
        if line.is_empty() {
            let status = self
                .child
                .wait()
                .map_or_else(|e| format!("unknown status: {e}"), |s| s.to_string());
            return Err(BenchError::ServerStart(format!(
                "it exited ({status}) before listening{}",
                self.stderr_tail()
            )));
        }
        Ok(line)
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// User and system CPU time so far.
    fn cpu(&self) -> Option<CpuTime> {
        cpu_time(&self.pid())
    }

    fn memory(&self) -> Option<Memory> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        Some(Memory {
            rss_kib: parse_status_kib(&status, "VmRSS")?,
            hwm_kib: parse_status_kib(&status, "VmHWM")?,
        })
    }

    /// Sends SIGTERM and waits for a clean exit, killing the server if it does not come. Prints
    /// the warnings and errors it logged. Deletes its directory unless `keep_files` or the stop
    /// failed.
    ///
    /// # Errors
    /// [`BenchError::ServerStop`] when `kill` fails, the server exits with a failure, or it does
    /// not exit within [`STOP_TIMEOUT`].
    fn stop(&mut self, keep_files: bool) -> Result<(), BenchError> {
        self.stopped = true;
        let outcome = self.terminate();
        if outcome.is_err() {
            self.kill();
        }
        self.join_reader();
        self.print_warnings();
        if outcome.is_ok() && !keep_files {
            if let Err(e) = fs::remove_dir_all(&self.base) {
                eprintln!(
                    "logmill bench: cannot delete {}: {e}; delete it by hand",
                    self.base.display()
                );
            }
        } else {
            eprintln!(
                "logmill bench: the server's files and stderr are kept in {}",
                self.base.display()
            );
        }
        outcome
    }

    fn terminate(&mut self) -> Result<(), BenchError> {
        let pid = self.pid();
        // std can only send SIGKILL, which would not show whether the server stops cleanly.
        let kill = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| BenchError::ServerStop(format!("cannot run `kill -TERM {pid}`: {e}")))?;
        if !kill.success() {
            return Err(BenchError::ServerStop(format!(
                "`kill -TERM {pid}` failed ({kill})"
            )));
        }
        // std has no wait with a time limit; the end of the server's stdout is its exit.
        if let Some(closed) = &self.stdout_closed
            && let Err(mpsc::RecvTimeoutError::Timeout) = closed.recv_timeout(STOP_TIMEOUT)
        {
            return Err(BenchError::ServerStop(format!(
                "it was still running {} s after SIGTERM, and was killed",
                STOP_TIMEOUT.as_secs()
            )));
        }
        match self.child.wait() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(BenchError::ServerStop(format!(
                "it exited with {status} after SIGTERM"
            ))),
            Err(e) => Err(BenchError::ServerStop(format!("cannot wait for it: {e}"))),
        }
    }

    /// Kills the server and deletes its directory: for a start that failed, whose error
    /// already holds what the server said.
    fn discard(&mut self) {
        self.stopped = true;
        self.kill();
        self.join_reader();
        if let Err(e) = fs::remove_dir_all(&self.base) {
            eprintln!(
                "logmill bench: cannot delete {}: {e}; delete it by hand",
                self.base.display()
            );
        }
    }

    fn kill(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("logmill bench: cannot kill the server: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("logmill bench: cannot wait for the server: {e}");
        }
    }

    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take()
            && reader.join().is_err()
        {
            eprintln!("logmill bench: the thread reading the server's output panicked");
        }
    }

    fn stderr_text(&self) -> String {
        fs::read_to_string(self.base.join("server.stderr")).unwrap_or_default()
    }

    /// The last lines of the server's stderr, to explain a failed start.
    fn stderr_tail(&self) -> String {
        let text = self.stderr_text();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(20)..];
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with:\n{}", tail.join("\n"))
        }
    }

    /// Echoes the warnings and errors the server logged: a figure means little if the server
    /// complained while producing it.
    fn print_warnings(&self) {
        let text = self.stderr_text();
        let complaints: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" WARNING ") || l.contains(" ERROR "))
            .collect();
        if complaints.is_empty() {
            return;
        }
        eprintln!(
            "logmill bench: the server logged {} warnings or errors:",
            complaints.len()
        );
        for line in complaints.iter().take(20) {
            eprintln!("  {line}");
        }
        if complaints.len() > 20 {
            eprintln!(
                "  ... (all in {})",
                self.base.join("server.stderr").display()
            );
        }
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        if !self.stopped {
            self.kill();
            self.join_reader();
            eprintln!(
                "logmill bench: killed the server; its files and stderr are kept in {}",
                self.base.display()
            );
        }
    }
}

/// Sends the server's first stdout line (empty if it closed stdout first) to `tx`, then reads
/// and drops the rest until the server exits, so a server run with `--stdout` never blocks.
fn drain_stdout(stdout: Option<ChildStdout>, tx: &mpsc::Sender<io::Result<String>>) {
    // Without a pipe there is no line: dropping `tx` tells the receiver so.
    let Some(stdout) = stdout else { return };
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let first = reader.read_line(&mut line).map(|_| line);
    if tx.send(first).is_err() {
        return;
    }
    if let Err(e) = io::copy(&mut reader, &mut io::sink()) {
        eprintln!("logmill bench: cannot read the server's standard output: {e}");
    }
}

/// Reads the server's address `key` (`tcp` or `grpc`) from its listening line,
/// `{"event":"listening","grpc":null,"tcp":"127.0.0.1:41819"}`. An unspecified address
/// (`0.0.0.0`, `::`) becomes the loopback address of its family.
///
/// # Errors
/// [`BenchError::ServerStart`] saying what is wrong with the line.
fn parse_listening(line: &str, key: &str) -> Result<SocketAddr, BenchError> {
    parse_listening_text(line, key).map_err(BenchError::ServerStart)
}

fn parse_listening_text(line: &str, key: &str) -> Result<SocketAddr, String> {
    let value: serde_json::Value = serde_json::from_str(line.trim())
        .map_err(|e| format!("its first line is not JSON ({e}): {}", line.trim()))?;
    if value.get("event").and_then(serde_json::Value::as_str) != Some("listening") {
        return Err(format!(
            "its first line is not the listening line: {}",
            line.trim()
        ));
    }
    let text = value
        .get(key)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("its listening line has no {key} address: {}", line.trim()))?;
    let mut addr: SocketAddr = text
        .parse()
        .map_err(|e| format!("its {key} address `{text}` is not HOST:PORT ({e})"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

// ---------------------------------------------------------------------------------------------
// /proc

/// CPU time of process `pid` (or `self`), user and system.
fn cpu_time(pid: &str) -> Option<CpuTime> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (user, system) = parse_stat_ticks(&stat)?;
    let seconds = |ticks: u64| Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64);
    Some(CpuTime {
        user: seconds(user),
        system: seconds(system),
    })
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat` times: `getconf CLK_TCK`, asked once
/// (reading it directly would need `sysconf`, that is unsafe code), else Linux's usual 100.
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// utime and stime (fields 14 and 15, in clock ticks) from the text of `/proc/<pid>/stat`. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted after its
/// last `)`.
fn parse_stat_ticks(stat: &str) -> Option<(u64, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // The first field after the name is field 3, so field 14 is the 12th.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// A `kB` value such as `VmRSS:   12345 kB` from the text of `/proc/<pid>/status`.
fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

// ---------------------------------------------------------------------------------------------
// Progress and statistics

/// The progress bar: drawn on stderr only when it is a terminal, not switched off, and the run
/// has lasted [`PROGRESS_AFTER`].
pub(super) struct Progress {
    enabled: bool,
    total: u64,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub(super) fn new(allowed: bool, total: u64) -> Progress {
        Progress {
            enabled: allowed && io::stderr().is_terminal(),
            total,
            bar: None,
        }
    }

    pub(super) fn update(&mut self, acked: u64, elapsed: Duration) {
        if self.bar.is_none() && self.enabled && elapsed >= PROGRESS_AFTER {
            let style = ProgressStyle::with_template(
                "{bar:40} {human_pos}/{human_len} records acked ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = ProgressBar::with_draw_target(Some(self.total), ProgressDrawTarget::stderr())
                .with_style(style);
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(acked);
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A run that fails leaves no half-drawn bar above its error message.
impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The `p`th percentile of `sorted` by the nearest-rank method: the smallest sample with at
/// least `p`% of the samples at or below it. Zero for no samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&samples, 50.0), ms(50));
        assert_eq!(percentile(&samples, 90.0), ms(90));
        assert_eq!(percentile(&samples, 99.0), ms(99));
        assert_eq!(percentile(&samples, 100.0), ms(100));
        assert_eq!(percentile(&samples, 0.0), ms(1));
        assert_eq!(percentile(&[ms(7)], 99.0), ms(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
        // Ten samples: p99 is the largest, p50 the fifth.
        let ten: Vec<Duration> = (1..=10).map(ms).collect();
        assert_eq!(percentile(&ten, 99.0), ms(10));
        assert_eq!(percentile(&ten, 50.0), ms(5));
    }

    #[test]
    fn latency_sorts_its_samples() {
        let mut samples = vec![ms(3), ms(1), ms(2)];
        let latency = Latency::from_samples(&mut samples);
        assert_eq!(latency.batches, 3);
        assert_eq!(latency.p50, ms(2));
        assert_eq!(latency.max, ms(3));
    }

    #[test]
    fn listening_line() {
        let line = "{\"event\":\"listening\",\"grpc\":null,\"tcp\":\"127.0.0.1:41819\"}\n";
        assert_eq!(
            parse_listening_text(line, "tcp"),
            Ok("127.0.0.1:41819".parse().unwrap())
        );
        assert_eq!(
            parse_listening_text("{\"event\":\"listening\",\"tcp\":\"0.0.0.0:5000\"}", "tcp"),
            Ok("127.0.0.1:5000".parse().unwrap())
        );
        assert_eq!(
            parse_listening_text("{\"event\":\"listening\",\"tcp\":\"[::]:5000\"}", "tcp"),
            Ok("[::1]:5000".parse().unwrap())
        );
        assert!(parse_listening_text("2024-01-01 INFO listening", "tcp").is_err());
        let both = "{\"event\":\"listening\",\"grpc\":\"127.0.0.1:4021\",\"tcp\":\"127.0.0.1:1\"}";
        assert_eq!(
            parse_listening_text(both, "grpc"),
            Ok("127.0.0.1:4021".parse().unwrap())
        );
        assert!(parse_listening_text(line, "grpc").is_err(), "grpc is null");
        assert!(parse_listening_text("{\"event\":\"listening\",\"tcp\":null}", "tcp").is_err());
        assert!(
            parse_listening_text("{\"event\":\"stopped\",\"tcp\":\"127.0.0.1:1\"}", "tcp").is_err()
        );
        assert!(
            parse_listening_text("{\"event\":\"listening\",\"tcp\":\"nowhere\"}", "tcp").is_err()
        );
    }

    #[test]
    fn health_lines_give_records_written() {
        let line = "OK name=logmill version=0.1.0 uptime=3s connections=2 records_written=42 \
                    pending_bytes=0\n";
        assert_eq!(parse_records_written(line), Some(42));
        assert_eq!(
            parse_records_written("DEGRADED name=x records_written=7"),
            Some(7)
        );
        assert_eq!(parse_records_written("OK name=x"), None);
        assert_eq!(parse_records_written("OK records_written=many"), None);
    }

    #[test]
    fn shares_spread_the_remainder() {
        let shares: Vec<u64> = (0..4).map(|i| share(i, 4, 10)).collect();
        assert_eq!(shares, vec![3, 3, 2, 2]);
        assert_eq!(
            (0..64).map(|i| share(i, 64, 2_000_000)).sum::<u64>(),
            2_000_000
        );
        assert_eq!(share(3, 4, 2), 0);
    }

    #[test]
    fn proc_stat_cpu_ticks() {
        // The command name holds a space and a parenthesis; utime = 150, stime = 25.
        let stat = "4242 (log mill) S 1 4242 4242 0 -1 4194560 2100 0 0 0 150 25 0 0 20 0 5 0 \
                    123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 \
                    0 0 0 0 0";
        assert_eq!(parse_stat_ticks(stat), Some((150, 25)));
        assert_eq!(parse_stat_ticks("4242 (x) S 1"), None);
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn proc_status_values() {
        let status = "Name:\tlogmill\nVmHWM:\t   60000 kB\nVmRSS:\t   45000 kB\nThreads:\t4\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(45000));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(60000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn json_keeps_key_order() {
        let report = Report::Idle(IdleReport {
            connections: 4,
            held: Duration::from_secs(5),
            server: Some(IdleMemory {
                rss_before_kib: 100,
                rss_kib: 104,
            }),
        });
        assert_eq!(
            report.to_json(),
            "{\"bench\":\"idle\",\"connections\":4,\"held_secs\":5.0,\
             \"server_rss_before_kib\":100,\"server_rss_kib\":104,\
             \"server_rss_per_connection_bytes\":1024}"
        );
    }

    #[test]
    fn own_cpu_time_is_readable() {
        if cfg!(target_os = "linux") {
            assert!(cpu_time("self").is_some());
        }
    }
}
