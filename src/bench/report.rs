//! What a run measured, as people read it (`Display`) and as scripts read it
//! ([`Report::to_json`]): throughput, ack latency percentiles, client and server CPU, memory.
//! Pure: the figures are taken elsewhere (`usage.rs`, the load loops) and only shown here.

use std::fmt;
use std::time::Duration;

use super::args::{GrpcMode, Proto};

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
    /// Only with `--slowloris`.
    pub slowloris: Option<SlowlorisCount>,
    /// Only with `--tls`: the connections' set-up (connect, TLS handshake, hello, welcome).
    pub handshakes: Option<Handshakes>,
}

/// How fast `--tls` connections were set up: `count` in `elapsed`, as many at once as the
/// set-up window allows (512).
#[derive(Clone, Copy, Debug)]
pub struct Handshakes {
    pub count: usize,
    pub elapsed: Duration,
}

impl Handshakes {
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What `--slowloris N` saw during the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlowlorisCount {
    /// N, the connections kept open (each the server closed was replaced).
    pub connections: usize,
    /// Of those, the ones open with their partial head sent when the load ended.
    pub held: usize,
    /// Connections the server closed during the load.
    pub closed: u64,
    /// Of those, the ones it answered `408 Request Timeout` first.
    pub timeouts: u64,
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

    /// The time spent since `before` was read.
    pub fn since(&self, before: CpuTime) -> CpuTime {
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
    /// Only with `--tls`.
    pub handshakes: Option<Handshakes>,
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
                    ("slowloris", json!(r.slowloris.map(|s| s.connections))),
                    ("slowloris_held", json!(r.slowloris.map(|s| s.held))),
                    ("slowloris_closed", json!(r.slowloris.map(|s| s.closed))),
                    ("slowloris_408", json!(r.slowloris.map(|s| s.timeouts))),
                    (
                        "tls_handshakes_per_sec",
                        json!(r.handshakes.map(|h| round(h.per_second(), 1))),
                    ),
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
                (
                    "tls_handshakes_per_sec",
                    json!(r.handshakes.map(|h| round(h.per_second(), 1))),
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
                        Proto::Native | Proto::WebSocket => "last ack",
                        Proto::Grpc | Proto::GrpcWeb | Proto::OtlpGrpc | Proto::OtlpHttp => {
                            "last reply"
                        }
                        _ => "health counting all written",
                    }
                )?;
                writeln!(
                    f,
                    "  throughput   {:.0} records/s, {:.1} MB/s of messages",
                    r.records_per_sec(),
                    r.mb_per_sec()
                )?;
                let calls =
                    r.grpc_mode.is_some() || matches!(r.proto, Proto::OtlpGrpc | Proto::OtlpHttp);
                let (what, unit) = if calls {
                    ("call latency", "calls")
                } else {
                    ("ack latency ", "batches")
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
                if let Some(h) = &r.handshakes {
                    writeln!(
                        f,
                        "  TLS          {} handshakes in {:.2} s: {:.0} per second",
                        h.count,
                        h.elapsed.as_secs_f64(),
                        h.per_second()
                    )?;
                }
                if let Some(s) = &r.slowloris {
                    writeln!(
                        f,
                        "  slowloris    {} connections with unfinished heads: {} held at the end, \
                         {} closed by the server ({} with 408), each replaced",
                        s.connections, s.held, s.closed, s.timeouts
                    )?;
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
                if let Some(h) = &r.handshakes {
                    writeln!(
                        f,
                        "  TLS          {} handshakes in {:.2} s: {:.0} per second",
                        h.count,
                        h.elapsed.as_secs_f64(),
                        h.per_second()
                    )?;
                }
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
    fn json_keeps_key_order() {
        let report = Report::Idle(IdleReport {
            handshakes: Some(Handshakes {
                count: 4,
                elapsed: Duration::from_secs(2),
            }),
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
             \"server_rss_per_connection_bytes\":1024,\"tls_handshakes_per_sec\":2.0}"
        );
    }
}
