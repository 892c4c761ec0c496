//! `logmill query` and `logmill tail [-f]`: the search engine ([`crate::storage::search`]) on
//! the command line. They read the stored files directly, so they work without a server, on a
//! copy of the directory, or next to a running one (the writer only appends and renames).
//!
//! Lines are printed as stored (both formats escape every control character, so a hostile
//! record cannot drive the terminal), or with `--json` one object per hit ([`Hit::to_json`]).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::config::defaults;
use crate::storage::search::{self, Filter, Follower, Hit, LEVELS, Page};

/// Bytes read per engine call: the CLI has no one to answer in between, so it only bounds how
/// long a Ctrl-C waits.
const BUDGET_PER_CALL: u64 = 256 * 1024 * 1024;

/// How often `tail -f` looks for new records: well under the half second a live tail allows.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// The filters `query` and `tail` share; each maps onto [`Filter`] (see there what they mean).
#[derive(Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// Directory of the stored files (the server's --dir).
    #[arg(long, default_value = defaults::DIR)]
    dir: PathBuf,
    /// Only this app's bucket (repeat for several; `_main` is the anonymous bucket).
    #[arg(long = "app", value_name = "APP")]
    apps: Vec<String>,
    /// Only records of this instance.
    #[arg(long)]
    instance: Option<String>,
    /// This level and above (trace, debug, info, notice, warning, error, critical, alert,
    /// emergency).
    #[arg(long)]
    level: Option<String>,
    /// Only this logger (`app.db.` or `app.db*`: the loggers under it).
    #[arg(long)]
    logger: Option<String>,
    /// Text in the message, field values or stack trace, ignoring case.
    #[arg(long, value_name = "TEXT")]
    grep: Option<String>,
    /// Exact text (case-sensitive) in the message, field values or stack trace.
    #[arg(long)]
    phrase: Option<String>,
    /// A field (or metadata such as host) equal to a value (repeat: all must match).
    #[arg(long = "field", value_name = "KEY=VALUE")]
    fields: Vec<String>,
    /// Records at or after this time: 15m, 1h, 7d back from now, RFC 3339, or Unix ns.
    #[arg(long)]
    since: Option<String>,
    /// Records before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// One JSON object per record (bucket, seq, time, level, app, instance, logger, message,
    /// fields, raw) instead of the stored line.
    #[arg(long)]
    json: bool,
}

impl FilterArgs {
    /// The engine's filter, through the same parser as the HTTP API's query.
    ///
    /// # Errors
    /// A sentence naming the bad flag.
    pub fn filter(&self) -> Result<Filter, String> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                pairs.push((k.to_string(), v.clone()));
            }
        };
        put("instance", &self.instance);
        put("level", &self.level);
        put("logger", &self.logger);
        put("q", &self.grep);
        put("phrase", &self.phrase);
        put("since", &self.since);
        put("until", &self.until);
        pairs.extend(self.apps.iter().map(|a| ("app".to_string(), a.clone())));
        pairs.extend(self.fields.iter().map(|f| ("field".to_string(), f.clone())));
        let mut filter = Filter::from_pairs(pairs, search::filter::now_ns())?;
        // `--app ""` is not "every app".
        if !self.apps.is_empty() && filter.apps.is_none() {
            filter.apps = Some(Vec::new());
        }
        Ok(filter)
    }
}

/// Options of `logmill query`.
#[derive(Args, Clone, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    filters: FilterArgs,
    /// The newest N matching records (printed oldest first, so the newest is at the bottom).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Count the matching records by level instead of printing them.
    #[arg(long)]
    count: bool,
}

/// Options of `logmill tail`.
#[derive(Args, Clone, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    filters: FilterArgs,
    /// The last N matching records first.
    #[arg(short = 'n', long = "lines", default_value_t = 10)]
    lines: usize,
    /// Then keep printing new matching records as they are written (Ctrl-C to stop), across
    /// rotations.
    #[arg(short = 'f', long)]
    follow: bool,
}

/// Runs `logmill query`: the matching lines (or counts) on stdout; exit 1 on an error.
pub fn query(args: &QueryArgs) -> ExitCode {
    finish("query", run_query(args))
}

/// Runs `logmill tail [-f]`.
pub fn tail(args: &TailArgs) -> ExitCode {
    finish("tail", run_tail(args))
}

fn finish(command: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logmill {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_query(args: &QueryArgs) -> Result<(), String> {
    let filter = args.filters.filter()?;
    let dir = &args.filters.dir;
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let mut out = io::stdout().lock();
    if args.count {
        let mut total = search::Counts::default();
        let mut cursor = None;
        loop {
            let counts = search::count(dir, &filter, cursor.as_deref(), BUDGET_PER_CALL, 1, None)
                .map_err(|e| e.to_string())?;
            total.add(&counts);
            total.scanned_bytes += counts.scanned_bytes;
            cursor = counts.cursor;
            if cursor.is_none() {
                break;
            }
        }
        let written = if args.filters.json {
            writeln!(out, "{}", total.to_json())
        } else {
            print_counts(&mut out, &total)
        };
        return written.map_err(|e| e.to_string());
    }
    let hits = newest(dir, &filter, args.limit)?;
    print_hits(&mut out, hits.iter().rev(), args.filters.json).map_err(|e| e.to_string())
}

/// The newest `limit` matches, newest first, paging through the engine's byte budget.
fn newest(dir: &std::path::Path, filter: &Filter, limit: usize) -> Result<Vec<Hit>, String> {
    let mut hits = Vec::new();
    let mut cursor = None;
    while hits.len() < limit {
        let page = Page {
            cursor: cursor.take(),
            limit: limit - hits.len(),
        };
        let results =
            search::search(dir, filter, &page, BUDGET_PER_CALL).map_err(|e| e.to_string())?;
        hits.extend(results.records);
        match results.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(hits)
}

fn run_tail(args: &TailArgs) -> Result<(), String> {
    let filter = args.filters.filter()?;
    let dir = &args.filters.dir;
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    // Started before the last lines are read, so nothing written in between is missed; what
    // both see is printed once (by sequence number, per bucket).
    let mut follower = match args.follow {
        true => Some(Follower::new(dir, &filter).map_err(|e| e.to_string())?),
        false => None,
    };
    let last = match args.lines {
        0 => Vec::new(),
        n => newest(dir, &filter, n)?,
    };
    let mut printed: Vec<(String, u64)> = Vec::new();
    for hit in &last {
        match printed.iter_mut().find(|(b, _)| *b == hit.bucket) {
            Some((_, seq)) => *seq = (*seq).max(hit.seq),
            None => printed.push((hit.bucket.clone(), hit.seq)),
        }
    }
    let mut out = io::stdout().lock();
    if let Err(e) = print_hits(&mut out, last.iter().rev(), args.filters.json) {
        return quiet_pipe(e);
    }
    let Some(follower) = &mut follower else {
        return Ok(());
    };
    loop {
        let new = follower.poll().map_err(|e| e.to_string())?;
        let fresh = new.iter().filter(|h| {
            printed
                .iter()
                .find(|(b, _)| *b == h.bucket)
                .is_none_or(|(_, seq)| h.seq > *seq)
        });
        if let Err(e) = print_hits(&mut out, fresh, args.filters.json) {
            return quiet_pipe(e);
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}

/// A closed pipe (`logmill tail -f | head`) is the reader's way to stop, not an error.
fn quiet_pipe(e: io::Error) -> Result<(), String> {
    match e.kind() {
        io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(e.to_string()),
    }
}

fn print_hits<'h>(
    out: &mut impl Write,
    hits: impl Iterator<Item = &'h Hit>,
    json: bool,
) -> io::Result<()> {
    for hit in hits {
        if json {
            writeln!(out, "{}", hit.to_json())?;
        } else {
            writeln!(out, "{}", hit.raw)?;
        }
    }
    out.flush()
}

/// `total N` then one line per level that has records, highest first.
fn print_counts(out: &mut impl Write, counts: &search::Counts) -> io::Result<()> {
    writeln!(out, "total {}", counts.total())?;
    for (level, n) in LEVELS.iter().zip(counts.by_level).rev() {
        if n > 0 {
            writeln!(out, "{} {n}", level.as_lower_str())?;
        }
    }
    out.flush()
}
