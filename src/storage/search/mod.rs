//! Search over the stored files: one engine for the console's API and `logmill query`/`tail`.
//! It reads the files directly (no server needed) and never imports the server.
//!
//! - [`filter`]: [`Filter`] (what to keep), its URL-query form, and the per-line test, cheapest
//!   part first (a `memmem` over the raw bytes, then the line's fixed head, then a full parse).
//! - [`files`]: buckets, a file's identity, and the block-wise readers (bounded memory).
//! - [`follow`]: [`Follower`], new records as they are written, across rotations.
//!
//! # Bounded work, and a cursor that survives rotation
//!
//! [`search`] and [`count`] stop after `budget_bytes` read from the files (checked per
//! [`files::BLOCK`], and each bucket reads at least one line per call so every call moves
//! on: a call may read one block per bucket over the budget) and hand back an opaque cursor. The cursor
//! holds, for each bucket, the sequence number `below` (every record of the bucket with a
//! number `>= below` was already looked at) plus a hint: the identity of the file the scan was
//! in (the sequence number of its first line, which a rename does not change) and the offset
//! in it. When resuming, the file with that first number is found whatever its name is now
//! (`_main.log` may have become `_main.log.0`), and the scan goes on from the offset. Even
//! without the hint the answer is the same: files whose first number is `>= below` are skipped
//! and lines `>= below` are ignored; so a rotation between two calls never repeats or skips a
//! record. The one loss is the writer deleting the oldest file (past `--max-files`) before the
//! scan reached it: its records are gone, and the search ends early without an error.
//!
//! Sequence numbers grow within a bucket, so "newest first" within a bucket is "highest number
//! first"; across buckets, pages are merged by time (then by number).

pub mod files;
pub mod filter;
pub mod follow;

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json, json};

use crate::record::{Body, Level, Value};
use crate::storage::parse::ParsedLine;
pub use files::ANONYMOUS;
use files::{Backward, Forward};
pub use filter::{Filter, Head, LEVELS, Matcher, Verdict, level_index, parse_level};
pub use follow::Follower;

/// The most records one page may ask for.
pub const MAX_LIMIT: usize = 10_000;
/// The most histogram buckets one count may ask for.
pub const MAX_HISTOGRAM_BUCKETS: usize = 1_000;
/// The most buckets (apps) a cursor may name: more than any directory should have, small
/// enough that a forged cursor costs little.
const MAX_CURSOR_BUCKETS: usize = 10_000;

/// One stored record that matched, ready to show.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The bucket: `_main` for the anonymous one, else the app's name.
    pub bucket: String,
    pub seq: u64,
    /// Unix nanoseconds (the stored time has microseconds).
    pub time_ns: u64,
    pub level: Level,
    /// The app named in the line (for the anonymous bucket, the unverified label, often empty).
    pub app: String,
    pub instance: String,
    pub logger: String,
    /// The message, or the JSON body as compact text.
    pub message: String,
    /// Every field and metadata value (`host`, `pid`, ...) as a JSON object, fields first.
    pub fields: Json,
    /// The stored line, without its newline.
    pub raw: String,
}

impl Hit {
    /// `{"bucket","seq","time","time_ns","level","app","instance","logger","message","fields","raw"}`
    /// with `time` in RFC 3339 (microseconds) and `level` lower-case.
    pub fn to_json(&self) -> Json {
        json!({
            "bucket": self.bucket,
            "seq": self.seq,
            "time": rfc3339(self.time_ns),
            "time_ns": self.time_ns,
            "level": self.level.as_lower_str(),
            "app": self.app,
            "instance": self.instance,
            "logger": self.logger,
            "message": self.message,
            "fields": self.fields,
            "raw": self.raw,
        })
    }

    fn new(bucket: &str, head: Head, parsed: &ParsedLine<'_>, raw: &[u8]) -> Hit {
        let r = parsed.record();
        let mut fields = Map::new();
        for (k, v) in &r.fields {
            fields.entry(k.to_string()).or_insert_with(|| value_json(v));
        }
        for (k, v) in filter::meta(r) {
            let v = match k {
                "line" | "pid" | "tid" => v.parse::<u64>().map_or(Json::Null, Json::from),
                _ => Json::String(v.into_owned()),
            };
            fields.entry(k.to_string()).or_insert(v);
        }
        Hit {
            bucket: bucket.to_string(),
            seq: head.seq,
            time_ns: head.time_ns,
            level: head.level,
            app: parsed.app().to_string(),
            instance: parsed.instance().to_string(),
            logger: r.logger.to_string(),
            message: match &r.body {
                Body::Message(m) | Body::Json(m) => m.to_string(),
            },
            fields: Json::Object(fields),
            raw: String::from_utf8_lossy(raw).into_owned(),
        }
    }
}

fn value_json(v: &Value<'_>) -> Json {
    match v {
        Value::Str(s) => Json::String(s.to_string()),
        other => serde_json::from_str(&other.to_string())
            .unwrap_or_else(|_| Json::String(other.to_string())),
    }
}

/// `2026-11-22T00:26:13.123456Z`.
pub fn rfc3339(time_ns: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&format).unwrap_or_default()
}

/// Which page: where to go on from ([`Results::cursor`] of the previous page; `None` for the
/// newest records) and how many records at most.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub cursor: Option<String>,
    pub limit: usize,
}

/// One page of a search.
#[derive(Clone, Debug)]
pub struct Results {
    /// Newest first.
    pub records: Vec<Hit>,
    /// Where the next page starts; `None` when every file was read to its start.
    pub cursor: Option<String>,
    /// Bytes read from the files for this page.
    pub scanned_bytes: u64,
    /// Whether there may be more (`cursor.is_some()`): the limit or the byte budget was reached.
    pub more: bool,
}

/// Why a search could not run.
#[derive(Debug)]
pub enum Error {
    /// A cursor this engine did not make (or from an older one).
    Cursor(String),
    Io(io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Cursor(why) => write!(f, "bad cursor: {why}"),
            Error::Io(e) => write!(f, "reading the stored files: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// One page of matching records, newest first, merged across the buckets the filter names.
///
/// Stops at `page.limit` hits (clamped to 1..=[`MAX_LIMIT`]) or after `budget_bytes` read; in
/// both cases the cursor says where to go on (see the module's doc for why a rotation between
/// pages neither repeats nor skips a record).
///
/// # Errors
/// [`Error::Cursor`] for a cursor this function did not make; [`Error::Io`] reading the files.
pub fn search(
    dir: &Path,
    filter: &Filter,
    page: &Page,
    budget_bytes: u64,
) -> Result<Results, Error> {
    let limit = page.limit.clamp(1, MAX_LIMIT);
    let mut scans = scans(dir, filter, page.cursor.as_deref())?;
    let mut matcher = Matcher::new(filter.clone());
    let mut budget = Budget::new(budget_bytes);
    let mut peeks: Vec<Option<Found>> = scans.iter().map(|_| None).collect();
    let mut records = Vec::new();
    while records.len() < limit {
        let mut stalled = false;
        for (scan, peek) in scans.iter_mut().zip(peeks.iter_mut()) {
            if peek.is_none() && !scan.done {
                match scan.next(&mut matcher, &mut budget, true)? {
                    Some(found) => *peek = Some(found),
                    None if scan.done => {}
                    None => stalled = true,
                }
            }
        }
        if stalled {
            break;
        }
        // The newest of the buckets' next records (time, then sequence number).
        let newest = peeks
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|f| (f.head.time_ns, f.head.seq, i)))
            .max();
        let Some((_, _, i)) = newest else { break };
        if let Some(found) = peeks[i].take()
            && let Some(hit) = found.hit
        {
            records.push(hit);
        }
    }
    let cursor = encode_cursor(&scans, &peeks);
    Ok(Results {
        records,
        more: cursor.is_some(),
        cursor,
        scanned_bytes: budget.spent,
    })
}

/// Counts of the matching records: per level, and per time slice for a histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    /// Indexed like [`LEVELS`] (trace first).
    pub by_level: [u64; 9],
    /// `(start_ns, counts by level)`, oldest first, one per slice of the range; empty without
    /// a range.
    pub histogram: Vec<(u64, [u64; 9])>,
    /// Where to go on; `None` when done.
    pub cursor: Option<String>,
    pub more: bool,
    pub scanned_bytes: u64,
}

impl Counts {
    /// Every level's count together.
    pub fn total(&self) -> u64 {
        self.by_level.iter().sum()
    }

    /// Adds the counts of the next slice of the same count (same range and slices).
    pub fn add(&mut self, other: &Counts) {
        for (a, b) in self.by_level.iter_mut().zip(other.by_level) {
            *a += b;
        }
        for ((_, a), (_, b)) in self.histogram.iter_mut().zip(&other.histogram) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }

    /// `{"by_level":{"info":n,...},"histogram":[{"start":ns,"counts":{level:n}}],"cursor","more",
    /// "scanned_bytes"}` (levels with no record left out of the per-slice objects).
    pub fn to_json(&self) -> Json {
        let levels = |counts: &[u64; 9], all: bool| {
            let mut m = Map::new();
            for (l, &n) in LEVELS.iter().zip(counts) {
                if all || n > 0 {
                    m.insert(l.as_lower_str().to_string(), n.into());
                }
            }
            Json::Object(m)
        };
        json!({
            "by_level": levels(&self.by_level, true),
            "histogram": self.histogram.iter().map(|(start, c)| json!({"start": start, "counts": levels(c, false)})).collect::<Vec<_>>(),
            "cursor": self.cursor,
            "more": self.more,
            "scanned_bytes": self.scanned_bytes,
        })
    }
}

/// Counts the records that match `filter`, per level and, when `range` (`[start, end)` Unix
/// nanoseconds) is given, in `slices` equal slices of it (clamped to 1..=
/// [`MAX_HISTOGRAM_BUCKETS`]; records outside the range count in `by_level` only). Resumable
/// like [`search`]: add the next call's counts ([`Counts::add`]) until `cursor` is `None`.
///
/// # Errors
/// As [`search`].
pub fn count(
    dir: &Path,
    filter: &Filter,
    cursor: Option<&str>,
    budget_bytes: u64,
    slices: usize,
    range: Option<(u64, u64)>,
) -> Result<Counts, Error> {
    let slices = slices.clamp(1, MAX_HISTOGRAM_BUCKETS);
    let mut counts = Counts::default();
    let range = range.filter(|(start, end)| end > start);
    let width = range.map(|(start, end)| (end - start).div_ceil(slices as u64).max(1));
    if let (Some((start, _)), Some(width)) = (range, width) {
        counts.histogram = (0..slices as u64)
            .map(|i| (start + i * width, [0; 9]))
            .collect();
    }
    let mut scans = scans(dir, filter, cursor)?;
    let mut matcher = Matcher::new(filter.clone());
    let mut budget = Budget::new(budget_bytes);
    'buckets: for scan in &mut scans {
        while !scan.done {
            let Some(found) = scan.next(&mut matcher, &mut budget, false)? else {
                if scan.done {
                    continue 'buckets;
                }
                break 'buckets;
            };
            let level = level_index(found.head.level);
            counts.by_level[level] += 1;
            if let (Some((start, end)), Some(width)) = (range, width) {
                let t = found.head.time_ns;
                if (start..end).contains(&t) {
                    let slice = ((t - start) / width) as usize;
                    if let Some((_, c)) = counts.histogram.get_mut(slice) {
                        c[level] += 1;
                    }
                }
            }
        }
    }
    let peeks: Vec<Option<Found>> = scans.iter().map(|_| None).collect();
    counts.cursor = encode_cursor(&scans, &peeks);
    counts.more = counts.cursor.is_some();
    counts.scanned_bytes = budget.spent;
    Ok(counts)
}

/// The `n` records before `seq` in `bucket`, the record itself and the `n` after it, oldest
/// first (fewer at either end of the files; empty when `seq` is not there any more).
///
/// Reads backwards from `seq` for the ones before, and forwards through the file that holds
/// `seq` (and the newer ones) for the rest: the work is bounded by one file's size plus `n`
/// lines.
///
/// # Errors
/// [`Error::Io`] reading the files; [`Error::Cursor`] for a bucket name that is not one.
pub fn context(dir: &Path, bucket: &str, seq: u64, n: usize) -> Result<Vec<Hit>, Error> {
    let n = n.min(MAX_LIMIT);
    let bucket_dir = files::bucket_dir(dir, bucket)
        .ok_or_else(|| Error::Cursor(format!("{bucket:?} is not a bucket")))?;
    let mut matcher = Matcher::new(Filter::default());
    // Before: a scan of the bucket below `seq`.
    let mut scan = Scan::fresh(bucket.to_string(), bucket_dir.clone(), seq);
    let mut budget = Budget::new(u64::MAX);
    let mut before = Vec::new();
    while before.len() < n {
        match scan.next(&mut matcher, &mut budget, true)? {
            Some(found) => before.extend(found.hit),
            None => break,
        }
    }
    before.reverse();
    // The record and after: forwards from the file that holds `seq`.
    let mut after = Vec::new();
    let mut opened = Vec::new();
    for path in files::file_paths(&bucket_dir)? {
        if let Some(mut file) = files::open(&path)?
            && let Some(first) = files::first_seq(&mut file)?
        {
            opened.push((first, file));
        }
    }
    // Oldest first, from the newest file that starts at or before `seq`.
    opened.reverse();
    let from = opened
        .iter()
        .rposition(|(first, _)| *first <= seq)
        .unwrap_or(0);
    let mut reader = Forward::new();
    for (_, file) in &mut opened[from..] {
        if after.len() > n {
            break;
        }
        reader.read(file, 0, u64::MAX, |_, line| {
            if let Some(head) = Head::read(line)
                && head.seq >= seq
                && let Some(parsed) = filter::parse_line(line)
            {
                if after.is_empty() && head.seq != seq {
                    // `seq` itself is gone: no context around nothing.
                    return false;
                }
                after.push(Hit::new(bucket, head, &parsed, line));
            }
            after.len() <= n
        })?;
    }
    if after.first().is_none_or(|h| h.seq != seq) {
        return Ok(Vec::new());
    }
    before.extend(after);
    Ok(before)
}

/// Bytes read so far against the allowance of one call.
struct Budget {
    limit: u64,
    spent: u64,
}

impl Budget {
    fn new(limit: u64) -> Budget {
        Budget { limit, spent: 0 }
    }

    fn exhausted(&self) -> bool {
        self.spent >= self.limit
    }
}

/// A match found by a [`Scan`].
struct Found {
    head: Head,
    hit: Option<Hit>,
    /// The identity of its file and the offset just after its newline: a cursor that has it
    /// still to do.
    file: u64,
    end: u64,
}

/// One bucket's scan, newest record first, file after file.
struct Scan {
    bucket: String,
    dir: PathBuf,
    /// Records numbered `>= below` are done.
    below: u64,
    /// Where to resume in the file whose first record is `.0`: offset `.1`.
    hint: Option<(u64, u64)>,
    /// The bucket's files not yet opened, newest first (listed when the scan first needs them).
    paths: Option<Vec<PathBuf>>,
    next_path: usize,
    /// The open file: its identity and its reader.
    current: Option<(u64, Backward)>,
    done: bool,
    /// Whether this scan read a line in this call: each scan takes at least one line per
    /// call, whatever the budget, so a bucket merged after a busy one still moves on.
    moved: bool,
}

impl Scan {
    fn fresh(bucket: String, dir: PathBuf, below: u64) -> Scan {
        Scan {
            bucket,
            dir,
            below,
            hint: None,
            paths: None,
            next_path: 0,
            current: None,
            done: false,
            moved: false,
        }
    }

    /// The next matching record, or `None` when the bucket is done (`self.done`) or the budget
    /// ran out (the scan can go on in a later call, from [`Scan::position`]).
    fn next(
        &mut self,
        matcher: &mut Matcher,
        budget: &mut Budget,
        want_hit: bool,
    ) -> io::Result<Option<Found>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if budget.exhausted() && self.moved {
                return Ok(None);
            }
            let Some((first, reader)) = &mut self.current else {
                self.open_next()?;
                continue;
            };
            let line = reader.prev(&mut budget.spent)?;
            self.moved = true;
            let Some((start, line)) = line else {
                // This file is done: everything left is below its first record.
                self.below = self.below.min(*first);
                self.current = None;
                continue;
            };
            let end = start + line.len() as u64 + 1;
            let (head, parsed) = match matcher.check(line, self.below, want_hit) {
                Verdict::No => {
                    if let Some(head) = Head::read(line) {
                        self.below = self.below.min(head.seq);
                    }
                    continue;
                }
                Verdict::Yes(head, parsed) => (head, parsed),
            };
            self.below = self.below.min(head.seq);
            let hit = match (want_hit, parsed) {
                (true, Some(parsed)) => Some(Hit::new(&self.bucket, head, &parsed, line)),
                _ => None,
            };
            return Ok(Some(Found {
                head,
                hit,
                file: *first,
                end,
            }));
        }
    }

    /// Opens the next older file that may hold records below `below`, or marks the scan done.
    fn open_next(&mut self) -> io::Result<()> {
        let paths = match &self.paths {
            Some(paths) => paths,
            None => self.paths.insert(files::file_paths(&self.dir)?),
        };
        while let Some(path) = paths.get(self.next_path) {
            self.next_path += 1;
            let Some(mut file) = files::open(path)? else {
                continue;
            };
            let Some(first) = files::first_seq(&mut file)? else {
                continue;
            };
            if first >= self.below {
                continue;
            }
            let end = match self.hint {
                Some((id, offset)) if id == first => offset.min(file.metadata()?.len()),
                _ => file.metadata()?.len(),
            };
            self.current = Some((first, Backward::new(file, end)));
            return Ok(());
        }
        self.done = true;
        Ok(())
    }

    /// `bucket:below:file:offset` (`-` for no file), or `bucket:done`.
    fn position(&self, peek: Option<&Found>) -> String {
        match (peek, &self.current) {
            (Some(found), _) => format!(
                "{}:{}:{}:{}",
                self.bucket,
                found.head.seq + 1,
                found.file,
                found.end
            ),
            _ if self.done => format!("{}:done", self.bucket),
            (None, Some((first, reader))) => format!(
                "{}:{}:{}:{}",
                self.bucket,
                self.below,
                first,
                reader.position()
            ),
            (None, None) => format!("{}:{}:-:0", self.bucket, self.below),
        }
    }
}

/// The scans of a call: from the cursor, or one per bucket the filter wants.
fn scans(dir: &Path, filter: &Filter, cursor: Option<&str>) -> Result<Vec<Scan>, Error> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(files::buckets(dir)?
            .into_iter()
            .filter(|b| filter.wants_bucket(b))
            .filter_map(|b| {
                let path = files::bucket_dir(dir, &b)?;
                Some(Scan::fresh(b, path, u64::MAX))
            })
            .collect());
    };
    let bad = |why: &str| Error::Cursor(why.to_string());
    let mut scans = Vec::new();
    for entry in cursor.split(',') {
        if scans.len() >= MAX_CURSOR_BUCKETS {
            return Err(bad("too many buckets"));
        }
        let parts: Vec<&str> = entry.split(':').collect();
        let bucket = parts[0];
        let path = files::bucket_dir(dir, bucket).ok_or_else(|| bad("not a bucket"))?;
        let number = |s: &str| s.parse::<u64>().map_err(|_| bad("not a number"));
        let mut scan = Scan::fresh(bucket.to_string(), path, u64::MAX);
        match &parts[1..] {
            ["done"] => scan.done = true,
            [below, "-", offset] => {
                scan.below = number(below)?;
                number(offset)?;
            }
            [below, file, offset] => {
                scan.below = number(below)?;
                scan.hint = Some((number(file)?, number(offset)?));
            }
            _ => return Err(bad("not bucket:below:file:offset")),
        }
        if filter.wants_bucket(bucket) {
            scans.push(scan);
        }
    }
    Ok(scans)
}

/// The cursor after a call: `None` when every scan is done and nothing is pending.
fn encode_cursor(scans: &[Scan], peeks: &[Option<Found>]) -> Option<String> {
    let finished = scans.iter().zip(peeks).all(|(s, p)| s.done && p.is_none());
    if finished {
        return None;
    }
    let parts: Vec<String> = scans
        .iter()
        .zip(peeks)
        .map(|(s, p)| s.position(p.as_ref()))
        .collect();
    Some(parts.join(","))
}
