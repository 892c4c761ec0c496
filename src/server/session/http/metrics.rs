//! `GET /metrics`: the server's figures in the Prometheus text exposition format (version
//! 0.0.4), written by hand.
//!
//! Why no crate: the exposition is a few lines of text per family, and the one thing to get
//! right is label escaping ([`escape`]), tested below and checked in `tests/http.rs` by the
//! Python `prometheus_client` parser. The well-kept crates (`prometheus`, `prometheus-client`)
//! bring their own registries of atomics, which would sit on the record path (one contended
//! atomic per record, what the counters here avoid) or be copies of what we already keep.
//!
//! Where each figure comes from, and why none costs the record path a lock or a shared atomic:
//!
//! | family                                   | kept by                                        |
//! |------------------------------------------|------------------------------------------------|
//! | `logmill_records_received_total`, `logmill_bytes_received_total` {protocol, app}, `logmill_connections_open` {protocol} | each loop, plain integers in its connections' entries, summed per loop and published every 250 ms (`server::traffic`) |
//! | `logmill_records_written_total`, `logmill_decode_errors_total` {protocol}, `logmill_connections_refused_total` {reason}, `logmill_degraded` | `stats::Stats` (one add per batch, error or refusal) |
//! | `logmill_pending_bytes`, `logmill_max_pending_bytes` | the backpressure gauge (`storage::backpressure`) |
//! | `logmill_writer_batch_records`, `logmill_write_duration_seconds`, `logmill_rotations_total`, `logmill_disk_errors_total` | the writer thread alone (`stats::WriterStats`, per flush) |
//! | `logmill_forward_*` {sink} | each forwarder thread (`forward::SinkStatus`, per batch and per pass over the files) |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes` | `/proc/self` at scrape time |

use std::fmt::Write as _;

use crate::server::shared::Shared;
use crate::server::traffic::Traffic;
use crate::stats::{Decoder, Histogram};

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole exposition, read from `shared` now.
pub fn render(shared: &Shared) -> String {
    let stats = shared.stats();
    let traffic = shared.traffic().sum();
    let mut out = String::with_capacity(4096);
    received(&mut out, &traffic);
    family(
        &mut out,
        "logmill_records_written_total",
        "counter",
        "Records written to the files.",
    );
    sample(
        &mut out,
        "logmill_records_written_total",
        &[],
        stats.records_written() as f64,
    );
    family(
        &mut out,
        "logmill_decode_errors_total",
        "counter",
        "Frames, messages or datagrams that could not be decoded, by protocol.",
    );
    for decoder in Decoder::ALL {
        sample(
            &mut out,
            "logmill_decode_errors_total",
            &[("protocol", decoder.as_str())],
            stats.decode_errors_of(decoder) as f64,
        );
    }
    family(
        &mut out,
        "logmill_connections_refused_total",
        "counter",
        "Connections refused or closed by the server, by reason: --max-connections reached, \
         shed to keep within --max-input, HTTP request head not complete in time, TLS \
         handshake failed or not finished in time.",
    );
    for (reason, n) in [
        ("max_connections", stats.refused_total()),
        ("input_shed", stats.shed()),
        ("header_timeout", stats.header_timeouts()),
        ("tls_handshake", stats.tls_failures()),
    ] {
        sample(
            &mut out,
            "logmill_connections_refused_total",
            &[("reason", reason)],
            n as f64,
        );
    }
    family(
        &mut out,
        "logmill_connections_open",
        "gauge",
        "Open connections by protocol (detecting: first bytes not seen yet).",
    );
    for (protocol, n) in &traffic.open {
        sample(
            &mut out,
            "logmill_connections_open",
            &[("protocol", protocol)],
            *n as f64,
        );
    }
    let pending = shared.handoff().pending();
    for (name, help, value) in [
        (
            "logmill_pending_bytes",
            "Bytes received and not yet written (reading stops at logmill_max_pending_bytes).",
            pending.pending(),
        ),
        (
            "logmill_max_pending_bytes",
            "The --max-pending limit.",
            pending.max(),
        ),
        (
            "logmill_partial_bytes",
            "Bytes of unfinished input held (frames, lines, messages; --max-input).",
            stats.partial_bytes(),
        ),
    ] {
        family(&mut out, name, "gauge", help);
        sample(&mut out, name, &[], value as f64);
    }
    let writer = &stats.writer;
    histogram(
        &mut out,
        "logmill_writer_batch_records",
        "Records per write of the writer (one write per bucket per flush).",
        &writer.batch_records,
    );
    histogram(
        &mut out,
        "logmill_write_duration_seconds",
        "Time per flush of the writer (writes, and fsync under --fsync always).",
        &writer.write_seconds,
    );
    for (name, help, value) in [
        (
            "logmill_rotations_total",
            "Record files rotated.",
            writer.rotations.load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "logmill_disk_errors_total",
            "Writes that failed (each is retried).",
            writer
                .disk_errors
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
    ] {
        family(&mut out, name, "counter", help);
        sample(&mut out, name, &[], value as f64);
    }
    family(
        &mut out,
        "logmill_degraded",
        "gauge",
        "1 while the writer cannot write (records are held, reading stops at --max-pending).",
    );
    sample(
        &mut out,
        "logmill_degraded",
        &[],
        if stats.degraded() { 1.0 } else { 0.0 },
    );
    forward(&mut out, shared.forward());
    process(&mut out);
    out
}

fn received(out: &mut String, traffic: &Traffic) {
    for (name, help, pick) in [
        (
            "logmill_records_received_total",
            "Records received, by protocol and app (_anonymous: no app).",
            (|c: &crate::server::traffic::Counts| c.records) as fn(&_) -> u64,
        ),
        (
            "logmill_bytes_received_total",
            "Bytes received from clients, by protocol and app (_anonymous: no app).",
            |c: &crate::server::traffic::Counts| c.bytes,
        ),
    ] {
        family(out, name, "counter", help);
        for ((protocol, app), counts) in &traffic.received {
            let app = app.as_deref().unwrap_or("_anonymous");
            sample(
                out,
                name,
                &[("protocol", protocol), ("app", app)],
                pick(counts) as f64,
            );
        }
    }
}

/// Process CPU time and resident memory, from `/proc/self` (Linux; left out elsewhere).
/// One family per figure, one sample per `--forward` sink (nothing without a sink).
fn forward(out: &mut String, status: &crate::forward::Status) {
    if status.sinks().is_empty() {
        return;
    }
    let now = crate::storage::search::filter::now_ns();
    type Figure = fn(&crate::forward::SinkStatus, u64) -> u64;
    let figures: [(&str, &str, &str, Figure); 6] = [
        (
            "logmill_forward_records_total",
            "counter",
            "Records the sink acknowledged since the start.",
            |s, _| s.forwarded(),
        ),
        (
            "logmill_forward_retries_total",
            "counter",
            "Batches that failed with an error that can succeed later (retried).",
            |s, _| s.retries(),
        ),
        (
            "logmill_forward_lag_records",
            "gauge",
            "Records stored and not yet acknowledged by the sink (unread ones estimated from \
             the mean line length).",
            |s, _| s.lag_records(),
        ),
        (
            "logmill_forward_lag_bytes",
            "gauge",
            "Bytes of stored records not yet acknowledged by the sink.",
            |s, _| s.lag_bytes(),
        ),
        (
            "logmill_forward_oldest_unforwarded_age_seconds",
            "gauge",
            "Age of the oldest record not yet acknowledged (0 when caught up).",
            |s, now| s.oldest_age_s(now),
        ),
        (
            "logmill_forward_stopped",
            "gauge",
            "1 when the forwarder stopped on an error no retry can fix (see _server.log).",
            |s, _| u64::from(s.state() == crate::forward::State::Stopped),
        ),
    ];
    for (name, kind, help, value) in figures {
        family(out, name, kind, help);
        for sink in status.sinks() {
            sample(out, name, &[("sink", sink.url())], value(sink, now) as f64);
        }
    }
    let retention = status.retention();
    for (name, help, value) in [
        (
            "logmill_forward_dropped_files_total",
            "Files deleted before every sink read them: the files held for the sinks passed \
             --forward-max-lag.",
            retention.dropped_files(),
        ),
        (
            "logmill_forward_dropped_bytes_total",
            "Their bytes.",
            retention.dropped_bytes(),
        ),
    ] {
        family(out, name, "counter", help);
        sample(out, name, &[], value as f64);
    }
}

fn process(out: &mut String) {
    if let Some(cpu) = cpu_seconds() {
        family(
            out,
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
        );
        sample(out, "process_cpu_seconds_total", &[], cpu);
    }
    if let Some(rss) = resident_bytes() {
        family(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size, in bytes.",
        );
        sample(out, "process_resident_memory_bytes", &[], rss as f64);
    }
}

/// `utime + stime` of `/proc/self/stat`, in clock ticks of `USER_HZ`, which Linux fixes at 100
/// for everything it shows user space in `/proc`.
fn cpu_seconds() -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// `VmRSS` of `/proc/self/status` (in kB there), in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// `# HELP` and `# TYPE` of one family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line; label values escaped.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn histogram(out: &mut String, name: &str, help: &str, histogram: &Histogram) {
    family(out, name, "histogram", help);
    let (buckets, count, sum) = histogram.snapshot();
    let bucket = format!("{name}_bucket");
    for (bound, cumulative) in buckets {
        sample(
            out,
            &bucket,
            &[("le", &bound.to_string())],
            cumulative as f64,
        );
    }
    sample(out, &bucket, &[("le", "+Inf")], count as f64);
    sample(out, &format!("{name}_sum"), &[], sum);
    sample(out, &format!("{name}_count"), &[], count as f64);
}

/// A label value as the text format wants it: `\`, `"` and newline escaped.
pub fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("billing"), "billing");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut out = String::new();
        sample(&mut out, "m", &[("app", "x\"y"), ("le", "+Inf")], 3.0);
        assert_eq!(out, "m{app=\"x\\\"y\",le=\"+Inf\"} 3\n");
    }

    #[test]
    fn histograms_are_cumulative() {
        static BOUNDS: [f64; 2] = [1.0, 10.0];
        let h = Histogram::new(&BOUNDS, 1.0);
        for v in [0.5, 1.0, 5.0, 50.0] {
            h.observe(v);
        }
        let mut out = String::new();
        histogram(&mut out, "h", "help", &h);
        assert!(out.contains("h_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"10\"} 3\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("h_count 4\n"), "{out}");
    }

    #[test]
    fn process_figures_are_read() {
        assert!(cpu_seconds().is_some());
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }
}
