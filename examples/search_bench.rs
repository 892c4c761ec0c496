//! Writes a data set for the search benchmark: `FILES` stored files of `SIZE` bytes each in
//! `DIR` (`_main.log` newest, then `_main.log.0` ..), formatted by the server's own
//! [`LineFormatter`], with a realistic mix: mostly INFO, some DEBUG/WARNING, ~3% ERROR, ~1%
//! CRITICAL; "timeout" in about one message in fifty. Deterministic (a seeded generator).
//!
//! ```text
//! cargo run --release --example search_bench -- /tmp/bench-logs [text|json] [FILES] [SIZE_MIB]
//! time logmill query --dir /tmp/bench-logs --level error --grep timeout --limit 50
//! time logmill query --dir /tmp/bench-logs --level error --grep timeout --count
//! time grep -c timeout /tmp/bench-logs/_main.log*
//! ```

use std::io::Write;

use logmill::config::Format;
use logmill::record::{Body, Level, Record};
use logmill::storage::line::{LineFormatter, Origin};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(
        args.first()
            .ok_or("usage: search_bench DIR [text|json] [FILES] [SIZE_MIB]")?,
    );
    let format = match args.get(1).map(String::as_str) {
        Some("json") => Format::Json,
        _ => Format::Text,
    };
    let files: usize = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let size: u64 = args.get(3).map_or(Ok(10), |s| s.parse::<u64>())? * 1024 * 1024;
    std::fs::create_dir_all(&dir)?;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let origins = [
        Origin::anonymous("billing".into(), "pod-1".into()),
        Origin::anonymous("billing".into(), "pod-2".into()),
        Origin::anonymous("shop".into(), "web-7".into()),
    ];
    let loggers = ["app.db", "app.http", "app.cache", "app.jobs"];
    let mut formatter = LineFormatter::new(format);
    let mut seq = 1u64;
    let mut time_ns = 1_767_225_600_000_000_000u64;
    let mut line = Vec::new();
    // Oldest first: `_main.log.{files-2}` .. `_main.log.0`, then `_main.log`.
    for index in (0..files).rev() {
        let name = match index {
            0 => "_main.log".to_string(),
            i => format!("_main.log.{}", i - 1),
        };
        let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join(name))?);
        let mut written = 0u64;
        while written < size {
            let r = next();
            let level = match r % 100 {
                0 => Level::Critical,
                1..=3 => Level::Error,
                4..=9 => Level::Warning,
                10..=19 => Level::Debug,
                _ => Level::Info,
            };
            let n = (r >> 8) % 1000;
            let message = match (r >> 20) % 50 {
                0 => format!("upstream timeout after {n} ms talking to payments"),
                1..=10 => format!("GET /api/orders/{n} 200 in {} ms", n % 90),
                11..=20 => format!("cache miss for key user:{n}"),
                21..=30 => format!("job {n} finished, {} rows", n * 3),
                _ => format!("request handled for customer {n} with status ok"),
            };
            let record = Record {
                timestamp_ns: time_ns,
                level,
                logger: loggers[(r >> 30) as usize % loggers.len()].into(),
                body: Body::Message(message.into()),
                host: format!("host-{}", n % 4).into(),
                fields: vec![("request_id".into(), format!("{:016x}", next()).into())],
                ..Record::default()
            };
            line.clear();
            let (head, _) = formatter.format(
                &record,
                &origins[(r >> 40) as usize % origins.len()],
                0,
                0,
                &mut line,
            );
            // The writer puts the sequence number between the head and the tail.
            let seq_text = seq.to_string();
            out.write_all(&line[..head])?;
            out.write_all(seq_text.as_bytes())?;
            out.write_all(&line[head..])?;
            written += (line.len() + seq_text.len()) as u64;
            seq += 1;
            time_ns += 1_000_000;
        }
        out.flush()?;
    }
    println!(
        "{} records in {files} files of {} MiB in {}",
        seq - 1,
        size >> 20,
        dir.display()
    );
    Ok(())
}
