//! `logmill bench`: a load client with its own mio event loop, the mirror image of the server's.
//!
//! Load mode: C connections each send a `hello` asking for acks, then their share of M records
//! in batch frames of B records, as fast as their sockets take them, and read acks until every
//! record is acknowledged. It reports records/s, MB/s of record text, the ack latency of batches
//! and, when bench started the server itself, the server's CPU time and memory (from `/proc`).
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

use std::borrow::Cow;
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

use crate::config;
use crate::protocol::frame::{self, Frame};
use crate::protocol::native::{self, ErrorKind, Hello, ServerFrame};
use crate::record::{Body, Record};

/// Longest wait in `poll`, so the deadline and the progress bar are looked at even when no
/// socket has anything to say.
const TICK: Duration = Duration::from_millis(100);
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
/// Digits of the per-connection record counter in each message (`n0000000042`).
const COUNTER_DIGITS: usize = 10;

/// Options of `logmill bench`. Public so tests and other tools can build them and call [`run`].
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Server to measure (HOST:PORT). Without it, bench starts `logmill serve` itself, on a free
    /// port with a fresh directory and --fsync never, and also reports its CPU and memory.
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
    /// Records per batch frame.
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

/// Wire protocols bench can send. Only the native one exists so far.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// Length-prefixed Cap'n Proto frames (schema/logmill.capnp).
    Native,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Native => "native",
        }
    }
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
    pub connections: usize,
    pub records: u64,
    pub size: usize,
    pub batch: usize,
    /// Unacked records allowed per connection (0: no limit).
    pub window: u64,
    /// From the first record byte handed to a socket to the last ack (set-up excluded).
    pub elapsed: Duration,
    pub latency: Latency,
    /// This process's CPU time during the load: when it nears `elapsed`, the client was the limit.
    pub client_cpu: Option<Duration>,
    /// Only when bench started the server (and `/proc` could be read).
    pub server: Option<ServerUsage>,
}

impl LoadReport {
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
    fn from_samples(samples: &mut [Duration]) -> Latency {
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

/// A spawned server's use of the machine during a load run.
#[derive(Clone, Copy, Debug)]
pub struct ServerUsage {
    /// User and system CPU time spent between the first record byte and the last ack.
    pub cpu: Duration,
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
                    ("bench", json!(r.proto.name())),
                    ("connections", json!(r.connections)),
                    ("records", json!(r.records)),
                    ("size", json!(r.size)),
                    ("batch", json!(r.batch)),
                    ("window", json!(r.window)),
                    ("seconds", json!(round(r.elapsed.as_secs_f64(), 4))),
                    ("records_per_sec", json!(r.records_per_sec().round() as u64)),
                    ("mb_per_sec", json!(round(r.mb_per_sec(), 2))),
                    ("ack_p50_us", json!(micros(r.latency.p50))),
                    ("ack_p90_us", json!(micros(r.latency.p90))),
                    ("ack_p99_us", json!(micros(r.latency.p99))),
                    ("ack_max_us", json!(micros(r.latency.max))),
                    (
                        "client_cpu_s",
                        json!(r.client_cpu.map(|c| round(c.as_secs_f64(), 3))),
                    ),
                    (
                        "server_cpu_s",
                        json!(r.server.map(|s| round(s.cpu.as_secs_f64(), 3))),
                    ),
                    (
                        "server_cpu_us_per_record",
                        json!(
                            r.server
                                .map(|s| round(s.cpu.as_secs_f64() * 1e6 / records, 3))
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
                    r.proto.name(),
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
                    "  elapsed      {:.3} s (first record byte sent to last ack)",
                    r.elapsed.as_secs_f64()
                )?;
                writeln!(
                    f,
                    "  throughput   {:.0} records/s, {:.1} MB/s of messages",
                    r.records_per_sec(),
                    r.mb_per_sec()
                )?;
                let l = &r.latency;
                writeln!(
                    f,
                    "  ack latency  p50 {}, p90 {}, p99 {}, max {} ({} batches)",
                    Millis(l.p50),
                    Millis(l.p90),
                    Millis(l.p99),
                    Millis(l.max),
                    l.batches
                )?;
                if let Some(cpu) = r.client_cpu {
                    writeln!(f, "  client CPU   {:.2} s", cpu.as_secs_f64())?;
                }
                match &r.server {
                    Some(s) => {
                        writeln!(
                            f,
                            "  server CPU   {:.2} s, {:.3} µs per record",
                            s.cpu.as_secs_f64(),
                            s.cpu.as_secs_f64() * 1e6 / r.records as f64
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
    /// The server broke the protocol on connection `conn` (bad frame, impossible ack).
    Protocol { conn: usize, detail: String },
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
            BenchError::Protocol { conn, detail } => write!(
                f,
                "the server broke the protocol on connection {conn}: {detail}; this is a server \
                 bug worth reporting"
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

fn setup(what: &str) -> impl FnOnce(io::Error) -> BenchError + '_ {
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
    raise_fd_limit(u64::from(connections))?;

    let (addr, mut server) = match &args.addr {
        Some(addr) => (resolve(addr)?, None),
        None => {
            let extra = args.server_args.as_deref().unwrap_or("");
            let server = SpawnedServer::start(extra, deadline, args.timeout)?;
            eprintln!(
                "logmill bench: started a server (pid {}) on {}, files in {}",
                server.child.id(),
                server.addr,
                server.base.display()
            );
            (server.addr, Some(server))
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
        None => load(&args, addr, server.as_ref(), deadline).map(Report::Load),
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

/// Opens the connections, sends every record, waits for every ack, and measures.
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
            LoadConn::new(link, i, total, batch, args.window, size)
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

    let server_cpu_before = server.and_then(SpawnedServer::cpu);
    let client_cpu_before = cpu_time("self");
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
        let now = Instant::now();
        if now >= deadline {
            return Err(BenchError::Timeout {
                timeout: args.timeout,
                waiting_for: format!("acks ({acked} of {} records acknowledged)", args.records),
            });
        }
        poll_once(&mut poll, &mut events, TICK.min(deadline - now))?;
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
    let elapsed = end - start;

    let client_cpu = client_cpu_before
        .zip(cpu_time("self"))
        .map(|(before, after)| after.saturating_sub(before));
    let server = server.and_then(|s| {
        let cpu = server_cpu_before.zip(s.cpu())?;
        let memory = s.memory()?;
        Some(ServerUsage {
            cpu: cpu.1.saturating_sub(cpu.0),
            rss_kib: memory.rss_kib,
            hwm_kib: memory.hwm_kib,
        })
    });
    Ok(LoadReport {
        proto: args.proto,
        connections: n,
        records: args.records,
        size,
        batch: args.batch as usize,
        window: args.window,
        elapsed,
        latency: Latency::from_samples(&mut latencies),
        client_cpu,
        server,
    })
}

/// Connection `i`'s share of `total` records over `n` connections: the remainder goes to the
/// first connections, one each.
fn share(i: usize, n: usize, total: u64) -> u64 {
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
    /// Batches handed to the socket and not yet acked: (`queued` once it was, when).
    unacked: VecDeque<(u64, Instant)>,
    /// A frame of `batch` records; present when `total >= batch`.
    full: Option<Template>,
    /// A frame of the last `total % batch` records; present when that is not zero.
    tail: Option<Template>,
}

impl LoadConn {
    fn new(link: Link, conn: usize, total: u64, batch: u64, window: u64, size: usize) -> LoadConn {
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
            full: (total >= batch).then(|| Template::new(conn, batch as usize, size)),
            tail: (tail > 0).then(|| Template::new(conn, tail as usize, size)),
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
            match self.link.stream.write(&template.frame[self.offset..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.offset += n;
                    if self.offset == template.frame.len() {
                        self.offset = 0;
                        self.queued += template.records;
                        self.unacked.push_back((self.queued, Instant::now()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
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

/// One batch frame encoded once, and where each record's counter digits sit in it, so the same
/// bytes can be sent again and again with new record numbers instead of encoding every batch.
struct Template {
    /// The whole frame, length prefix included.
    frame: Vec<u8>,
    records: u64,
    /// Offset in `frame` of each record's counter digits; empty when `--size` is too short to
    /// hold the counter (then every batch repeats the same records).
    counters: Vec<usize>,
}

impl Template {
    /// Encodes `records` records of connection `conn`, each with a `size`-byte message.
    fn new(conn: usize, records: usize, size: usize) -> Template {
        let messages: Vec<String> = (0..records as u64)
            .map(|n| record_message(conn, n, size))
            .collect();
        let batch: Vec<Record<'_>> = messages
            .iter()
            .map(|m| Record {
                body: Body::Message(Cow::Borrowed(m.as_str())),
                logger: Cow::Borrowed("bench"),
                ..Record::default()
            })
            .collect();
        let mut frame = Vec::new();
        native::encode_records(&batch, &mut frame);

        // Cap'n Proto stores text as plain bytes, but not necessarily in the order it was set
        // (a large message spills into new segments while small texts still fill old ones). So
        // scan the frame once for this connection's `c00012 n` markers and read, from the digits
        // after each, which record the counter belongs to.
        let marker = message_prefix(conn, 0);
        let marker = &marker.as_bytes()[..marker.len() - COUNTER_DIGITS - 1];
        let mut counters = vec![usize::MAX; records];
        if size >= message_prefix(conn, 0).len() {
            let mut from = 0;
            while let Some(at) = find(&frame[from..], marker) {
                let digits = from + at + marker.len();
                from = digits;
                let Some(j) = read_counter(&frame[digits..]) else {
                    continue;
                };
                if let Some(slot) = counters.get_mut(j) {
                    *slot = digits;
                }
            }
        }
        if counters.contains(&usize::MAX) {
            // Some record was not found (or `size` cannot hold the counter): send as encoded.
            counters.clear();
        }
        Template {
            frame,
            records: records as u64,
            counters,
        }
    }

    /// Numbers the records `first`, `first + 1`, ...: the only per-record work while the clock
    /// runs, a few byte stores each.
    fn stamp(&mut self, first: u64) {
        for (j, &at) in self.counters.iter().enumerate() {
            write_digits(&mut self.frame[at..at + COUNTER_DIGITS], first + j as u64);
        }
    }
}

/// The record number in `COUNTER_DIGITS` digits and a space at the start of `bytes`.
fn read_counter(bytes: &[u8]) -> Option<usize> {
    let (digits, rest) = bytes.split_at_checked(COUNTER_DIGITS)?;
    if rest.first() != Some(&b' ') || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Writes `n` in decimal into `out`, zero-padded on the left; digits that do not fit are dropped.
fn write_digits(out: &mut [u8], mut n: u64) {
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// `c00012 n0000000042 `: which connection sent the record and its number there, so a stored
/// line can be traced back (and gaps or duplicates found) by reading the files.
fn message_prefix(conn: usize, n: u64) -> String {
    format!("c{conn:05} n{n:0width$} ", width = COUNTER_DIGITS)
}

/// The message of record `n` of connection `conn`: its prefix, then filler, `size` bytes in all
/// (the prefix is cut if `size` is shorter).
fn record_message(conn: usize, n: u64, size: usize) -> String {
    const FILLER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut message = message_prefix(conn, n).into_bytes();
    message.truncate(size);
    while message.len() < size {
        let take = (size - message.len()).min(FILLER.len());
        message.extend_from_slice(&FILLER[..take]);
    }
    // Only ASCII went in.
    String::from_utf8(message).unwrap_or_default()
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
            match self.stream.write(&self.hello[self.hello_sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.hello_sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
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
            poll.registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(setup("cannot register a connection with mio"))?;
            links.push(Link::new(stream, i));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(BenchError::Timeout {
                timeout,
                waiting_for: format!("connections ({welcomed} of {n} welcomed by the server)"),
            });
        }
        poll_once(poll, &mut events, TICK.min(deadline - now))?;
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

/// One `poll`, with an interrupted wait counted as a wait with no events.
fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Duration) -> Result<(), BenchError> {
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
struct SpawnedServer {
    child: Child,
    /// `<temp>/logmill-bench-<pid>-<nanos>`: `data/` is the server's --dir, `server.stderr` its
    /// standard error (its log).
    base: PathBuf,
    /// Where it listens (the listening line's `tcp`).
    addr: SocketAddr,
    /// Drains the server's standard output.
    reader: Option<JoinHandle<()>>,
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
    /// plus `extra`, and waits for its listening line.
    fn start(
        extra: &str,
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
        let mut child = Command::new(&exe)
            .args([
                "serve",
                "--port",
                "0",
                "--tcp-only",
                "--fsync",
                "never",
                "--dir",
            ])
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
            reader: None,
            stopped: false,
        };
        match reader {
            Ok(reader) => server.reader = Some(reader),
            Err(e) => {
                server.discard();
                return Err(setup("cannot start a thread")(e));
            }
        }
        match server.wait_listening(&rx, deadline, timeout) {
            Ok(addr) => {
                server.addr = addr;
                Ok(server)
            }
            Err(e) => {
                // The error holds the end of its stderr: nothing else is worth keeping.
                server.discard();
                Err(e)
            }
        }
    }

    /// Waits for the listening line and returns the address it names.
    fn wait_listening(
        &mut self,
        rx: &mpsc::Receiver<io::Result<String>>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<SocketAddr, BenchError> {
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
        parse_listening(&line).map_err(BenchError::ServerStart)
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// User + system CPU time so far.
    fn cpu(&self) -> Option<Duration> {
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
        let until = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(BenchError::ServerStop(format!(
                        "it exited with {status} after SIGTERM"
                    )));
                }
                Ok(None) if Instant::now() >= until => {
                    return Err(BenchError::ServerStop(format!(
                        "it was still running {} s after SIGTERM, and was killed",
                        STOP_TIMEOUT.as_secs()
                    )));
                }
                // No portable way to wait for a child with a time limit; 10 ms polls are cheap.
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    return Err(BenchError::ServerStop(format!("cannot wait for it: {e}")));
                }
            }
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

/// Reads the server's address from its listening line,
/// `{"event":"listening","grpc":null,"tcp":"127.0.0.1:41819"}`. An unspecified address
/// (`0.0.0.0`, `::`) becomes the loopback address of its family.
fn parse_listening(line: &str) -> Result<SocketAddr, String> {
    let value: serde_json::Value = serde_json::from_str(line.trim())
        .map_err(|e| format!("its first line is not JSON ({e}): {}", line.trim()))?;
    if value.get("event").and_then(serde_json::Value::as_str) != Some("listening") {
        return Err(format!(
            "its first line is not the listening line: {}",
            line.trim()
        ));
    }
    let tcp = value
        .get("tcp")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("its listening line has no tcp address: {}", line.trim()))?;
    let mut addr: SocketAddr = tcp
        .parse()
        .map_err(|e| format!("its tcp address `{tcp}` is not HOST:PORT ({e})"))?;
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
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_ticks(&stat)?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
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

/// utime + stime (fields 14 and 15, in clock ticks) from the text of `/proc/<pid>/stat`. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted after its
/// last `)`.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // The first field after the name is field 3, so field 14 is the 12th.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
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
struct Progress {
    enabled: bool,
    total: u64,
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(allowed: bool, total: u64) -> Progress {
        Progress {
            enabled: allowed && io::stderr().is_terminal(),
            total,
            bar: None,
        }
    }

    fn update(&mut self, acked: u64, elapsed: Duration) {
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

    fn finish(&self) {
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
            parse_listening(line),
            Ok("127.0.0.1:41819".parse().unwrap())
        );
        assert_eq!(
            parse_listening("{\"event\":\"listening\",\"tcp\":\"0.0.0.0:5000\"}"),
            Ok("127.0.0.1:5000".parse().unwrap())
        );
        assert_eq!(
            parse_listening("{\"event\":\"listening\",\"tcp\":\"[::]:5000\"}"),
            Ok("[::1]:5000".parse().unwrap())
        );
        assert!(parse_listening("2024-01-01 INFO listening").is_err());
        assert!(parse_listening("{\"event\":\"listening\",\"tcp\":null}").is_err());
        assert!(parse_listening("{\"event\":\"stopped\",\"tcp\":\"127.0.0.1:1\"}").is_err());
        assert!(parse_listening("{\"event\":\"listening\",\"tcp\":\"nowhere\"}").is_err());
    }

    #[test]
    fn record_messages_have_their_size() {
        let m = record_message(12, 42, 200);
        assert_eq!(m.len(), 200);
        assert!(m.starts_with("c00012 n0000000042 abcdef"), "{m}");
        assert_eq!(record_message(12, 42, 10), "c00012 n00");
        assert_eq!(record_message(0, 0, 0), "");
        let long = record_message(1, 2, 100);
        assert_eq!(&long[19..55], "abcdefghijklmnopqrstuvwxyz0123456789");
        assert_eq!(&long[55..60], "abcde");
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

    fn messages_of(frame: &[u8]) -> Vec<String> {
        let Frame::Complete { payload, .. } = frame::decode(frame, u32::MAX).unwrap() else {
            panic!("incomplete frame")
        };
        let mut messages = Vec::new();
        native::decode_client_frame(payload, |r| match r.body {
            Body::Message(m) => messages.push(m.into_owned()),
            Body::Json(_) => panic!("json body"),
        })
        .unwrap();
        messages
    }

    #[test]
    fn stamped_templates_number_their_records() {
        // Sizes and counts that make multi-segment messages, where text is not laid out in order.
        for size in [19, 40, 60, 200, 1000] {
            for records in [1, 5, 100, 256, 1000] {
                let mut template = Template::new(3, records, size);
                assert_eq!(
                    template.counters.len(),
                    records,
                    "{records} of {size} bytes"
                );
                for first in [1000, 7_654_321] {
                    template.stamp(first);
                    let expected: Vec<String> = (0..records as u64)
                        .map(|j| record_message(3, first + j, size))
                        .collect();
                    assert_eq!(messages_of(&template.frame), expected);
                }
            }
        }
    }

    #[test]
    fn counters_are_read_only_when_well_formed() {
        assert_eq!(read_counter(b"0000000042 abc"), Some(42));
        assert_eq!(read_counter(b"0000000042x"), None);
        assert_eq!(read_counter(b"00000000x2 "), None);
        assert_eq!(read_counter(b"0000000042"), None);
    }

    #[test]
    fn short_messages_are_sent_unnumbered() {
        let mut template = Template::new(3, 4, 8);
        assert!(template.counters.is_empty());
        template.stamp(99);
        assert_eq!(messages_of(&template.frame), vec!["c00003 n"; 4]);
    }

    #[test]
    fn digits_are_zero_padded() {
        let mut out = [b'x'; 10];
        write_digits(&mut out, 42);
        assert_eq!(&out, b"0000000042");
        let mut short = [0u8; 2];
        write_digits(&mut short, 1234);
        assert_eq!(&short, b"34");
    }

    #[test]
    fn proc_stat_cpu_ticks() {
        // The command name holds a space and a parenthesis; utime = 150, stime = 25.
        let stat = "4242 (log mill) S 1 4242 4242 0 -1 4194560 2100 0 0 0 150 25 0 0 20 0 5 0 \
                    123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 \
                    0 0 0 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(175));
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
