//! Syslog, JSON lines and pickle: protocols with no hello and no acks. The connections just
//! send; the run is over when the server has *written* every record, which bench learns by
//! asking `health` on a short connection of its own (the line's `records_written`, against its
//! value before the run) every [`HEALTH_INTERVAL`]. No latency is measured.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::args::{BenchArgs, share};
use super::error::{BenchError, setup};
use super::link::{Link, READ_CHUNK};
use super::native::LoadConn;
use super::progress::Progress;
use super::report::LoadReport;
use super::socket::{TICK, connect, poll_once, time_left};
use super::spawn::SpawnedServer;
use super::usage::Usage;
use crate::client::blocking::ask_health;

/// How often a protocol without acks asks `health` whether every record is written: the
/// resolution of its elapsed time (5 ms is 0.5% of a 1-second run), at the cost of one short
/// connection to the server each time.
const HEALTH_INTERVAL: Duration = Duration::from_millis(5);

/// Syslog, JSON lines, pickle: opens plain connections, sends every record, then asks `health`
/// until the server has written them all, and measures.
///
/// The baseline is read before anything is sent, so a server that already holds records (an
/// `--addr` one) is measured right, as long as nobody else sends to it meanwhile.
pub fn load(
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
        sending += usize::from(!conn.all_queued());
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
            let queued: u64 = conns.iter().map(LoadConn::queued).sum();
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
                conn.expect_silence(i, &mut scratch)?;
            }
            if event.is_writable() && !conn.all_queued() {
                conn.send()
                    .map_err(|source| BenchError::Io { conn: i, source })?;
                sending -= usize::from(conn.all_queued());
            }
        }
        if sending > 0 {
            let queued: u64 = conns.iter().map(LoadConn::queued).sum();
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
    let answer = ask_health(addr, left).map_err(|e| BenchError::Health(e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
