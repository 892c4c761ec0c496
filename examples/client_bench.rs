//! The [`Logger`]'s throughput: one thread logs N records of SIZE bytes (default 1,000,000 of
//! 200) to a running server, acks on, and the figures are printed: the caller's cost per record
//! (the `log` call, record construction included) and records per second into the server (from
//! the first `log` to the last ack, `flush` included).
//!
//! ```text
//! cargo run --release -- serve --dir /tmp/bench --port 4030 --tcp-only &
//! cargo run --release --example client_bench -- 127.0.0.1:4030 [N] [SIZE] [MAX_IN_FLIGHT] [BATCH]
//! ```

use std::time::{Duration, Instant};

use logmill::client::{ClientOptions, Logger, LoggerOptions};
use logmill::record::{Body, Level, Record};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args.first().cloned().unwrap_or("127.0.0.1:4020".into());
    let count: usize = args.get(1).map_or(Ok(1_000_000), |a| a.parse())?;
    let size: usize = args.get(2).map_or(Ok(200), |a| a.parse())?;
    let mut options = LoggerOptions::new(ClientOptions::new("bench").instance("client-bench"));
    if let Some(n) = args.get(3) {
        options = options.max_in_flight(n.parse()?);
    }
    if let Some(n) = args.get(4) {
        options = options.batch(n.parse()?);
    }
    let logger = Logger::start(addr.as_str(), options)?;
    // One record first, acked, so the connect is not in the figures.
    logger.log(message("warm-up".into()))?;
    logger.flush(Duration::from_secs(30))?;

    let text = "x".repeat(size);
    let (caller_before, process_before) = (cpu_ticks("task/self"), cpu_ticks(""));
    let start = Instant::now();
    for _ in 0..count {
        // A program formats each message: an owned String per record, as in real use.
        logger.log(message(text.clone()))?;
    }
    let logged = start.elapsed();
    let caller_cpu = cpu_ticks("task/self") - caller_before;
    logger.flush(Duration::from_secs(120))?;
    let acked = start.elapsed();
    let process_cpu = cpu_ticks("") - process_before;
    let stats = logger.stats();
    logger.close(Duration::from_secs(10))?;

    let per_record_ns = logged.as_nanos() as f64 / count as f64;
    let rate = count as f64 / acked.as_secs_f64();
    println!(
        "{count} records of {size} bytes: caller {per_record_ns:.0} ns/record ({:.2} s), \
         all acked in {:.2} s = {rate:.0} records/s; {} acked, {} dropped",
        logged.as_secs_f64(),
        acked.as_secs_f64(),
        stats.acked,
        stats.dropped,
    );
    // On a machine shared with other work, wall time includes waiting for a core: CPU time
    // per record says what the client costs (clock ticks, 10 ms each, from /proc).
    let tick_ns = |ticks: u64| ticks as f64 * 1e7 / count as f64;
    println!(
        "CPU: caller thread {:.0} ns/record, whole client process (caller, transmitter, ack \
         reader) {:.0} ns/record",
        tick_ns(caller_cpu),
        tick_ns(process_cpu)
    );
    println!(
        r#"{{"records":{count},"size":{size},"caller_ns_per_record":{per_record_ns:.1},"records_per_s":{rate:.0},"caller_cpu_ns_per_record":{:.0},"client_cpu_ns_per_record":{:.0}}}"#,
        tick_ns(caller_cpu),
        tick_ns(process_cpu)
    );
    Ok(())
}

/// utime + stime in clock ticks of /proc/self/stat (`which` = "") or of the calling thread
/// (/proc/thread-self/stat); 0 where /proc is not there.
fn cpu_ticks(which: &str) -> u64 {
    let path = if which.is_empty() {
        "/proc/self/stat"
    } else {
        "/proc/thread-self/stat"
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    tick(11) + tick(12)
}

fn message(text: String) -> Record<'static> {
    Record {
        level: Level::Info,
        body: Body::Message(text.into()),
        ..Record::default()
    }
}
