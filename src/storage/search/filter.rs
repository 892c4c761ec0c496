//! What a search looks for ([`Filter`]), read from an URL query ([`Filter::from_query`]) or
//! built by the CLI, and how a stored line is tested against it, cheapest test first:
//!
//! 1. the text and phrase, searched in the raw line's bytes with `memchr::memmem` (a line that
//!    does not contain them anywhere cannot match; see [`Filter::raw_may_match`] for when this
//!    is exact enough to skip a line);
//! 2. the sequence number, time and level, read from the line's fixed head without parsing the
//!    rest ([`Head::read`]);
//! 3. the full parse ([`crate::storage::parse`]) only for lines that passed both, to check the
//!    instance, logger, fields and the text in the decoded message.
//!
//! Text search (`q`, case-insensitive for ASCII letters) and phrase search (exact bytes) look
//! at the message (or JSON body), the values of the fields and metadata (`host`, `module`, ...)
//! and the stack trace: not at the time, level, app, instance or logger columns, which have
//! filters of their own.

use std::borrow::Cow;

use memchr::memmem::Finder;

use crate::record::{Body, Level, Record};
use crate::storage::parse::{ParsedLine, parse_json_line, parse_text_line};

/// The levels in order, lowest first, for `level=warning` ("warning and above") and for counts.
pub const LEVELS: [Level; 9] = Level::ALL;

/// The index of `level` in [`LEVELS`].
pub fn level_index(level: Level) -> usize {
    LEVELS.iter().position(|&l| l == level).unwrap_or(0)
}

/// A level by name, either case (`warning`, `WARNING`; also `warn`, `err`, `crit`, `fatal`).
pub fn parse_level(name: &str) -> Option<Level> {
    let lower = name.to_ascii_lowercase();
    let alias = match lower.as_str() {
        "warn" => "warning",
        "err" => "error",
        "crit" | "fatal" => "critical",
        "emerg" => "emergency",
        other => other,
    };
    LEVELS.into_iter().find(|l| l.as_lower_str() == alias)
}

/// What a search keeps. Every part that is set must match (AND); `None`/empty matches all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Bucket names (`_main` for the anonymous bucket, else the app); `None`: every bucket.
    pub apps: Option<Vec<String>>,
    /// The instance column, equal.
    pub instance: Option<String>,
    /// This level and above.
    pub min_level: Option<Level>,
    /// The logger, equal, or a prefix when it ends with `.` or `*` (`app.db.` / `app.db*`).
    pub logger: Option<String>,
    /// A substring, case-insensitive (ASCII letters).
    pub text: Option<String>,
    /// A substring, exact (case-sensitive).
    pub phrase: Option<String>,
    /// `key=value` equality on a field or metadata value (its text, `3` for the number 3).
    pub fields: Vec<(String, String)>,
    /// Unix nanoseconds, inclusive.
    pub since_ns: Option<u64>,
    /// Unix nanoseconds, exclusive.
    pub until_ns: Option<u64>,
}

/// The longest value a query may give one filter: a bound on the work per line.
pub const MAX_FILTER_TEXT: usize = 1024;

impl Filter {
    /// Parses an URL query: `app=a&app=b&instance=&level=warning&logger=&q=&phrase=
    /// &field=k%3Dv&since=1h|RFC3339|ns&until=`. Empty values are ignored; other keys (`cursor`,
    /// `limit`, ...) are left to the caller. Times: a span back from `now_ns` (`90s`, `15m`,
    /// `1h`, `7d`), RFC 3339 (`2026-11-22T10:00:00Z`), or Unix nanoseconds.
    ///
    /// # Errors
    /// A sentence naming the bad parameter.
    pub fn from_query(query: &str) -> Result<Filter, String> {
        Filter::from_pairs(query_pairs(query)?, now_ns())
    }

    /// [`Filter::from_query`] on decoded pairs, with the clock given (for tests).
    ///
    /// # Errors
    /// A sentence naming the bad parameter.
    pub fn from_pairs(pairs: Vec<(String, String)>, now_ns: u64) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for (key, value) in pairs {
            if value.is_empty() {
                continue;
            }
            if value.len() > MAX_FILTER_TEXT {
                return Err(format!("`{key}` is longer than {MAX_FILTER_TEXT} bytes"));
            }
            match key.as_str() {
                "app" => filter.apps.get_or_insert_with(Vec::new).push(value),
                "instance" => filter.instance = Some(value),
                "level" => {
                    let level = parse_level(&value)
                        .ok_or_else(|| format!("`level`: unknown level {value:?}"))?;
                    filter.min_level = Some(level);
                }
                "logger" => filter.logger = Some(value),
                "q" => filter.text = Some(value),
                "phrase" => filter.phrase = Some(value),
                "field" => {
                    let (k, v) = value
                        .split_once('=')
                        .ok_or_else(|| format!("`field`: {value:?} is not key=value"))?;
                    filter.fields.push((k.to_string(), v.to_string()));
                }
                "since" => filter.since_ns = Some(parse_time_arg(&value, now_ns)?),
                "until" => filter.until_ns = Some(parse_time_arg(&value, now_ns)?),
                _ => {}
            }
        }
        Ok(filter)
    }

    /// Whether `bucket` is one this filter reads.
    pub fn wants_bucket(&self, bucket: &str) -> bool {
        self.apps
            .as_ref()
            .is_none_or(|apps| apps.iter().any(|a| a == bucket))
    }

    /// Whether a line must be fully parsed to be decided (beyond the head's seq, time, level).
    fn needs_parse(&self) -> bool {
        self.instance.is_some()
            || self.logger.is_some()
            || self.text.is_some()
            || self.phrase.is_some()
            || !self.fields.is_empty()
    }
}

/// A [`Filter`] made ready for many lines: the finders built and the needles lower-cased once.
pub struct Matcher {
    pub filter: Filter,
    text_lower: Option<Vec<u8>>,
    text_finder: Option<Finder<'static>>,
    phrase_finder: Option<Finder<'static>>,
    /// Scratch for the lower-cased line, reused: no allocation per line.
    scratch: Vec<u8>,
}

/// What [`Matcher::check`] decided about a line.
// Returned by value and matched at once; boxing the parsed line would allocate per match.
#[allow(clippy::large_enum_variant)]
pub enum Verdict<'a> {
    /// Not a match (or not a stored line).
    No,
    /// A match; the parsed line, when it was parsed.
    Yes(Head, Option<ParsedLine<'a>>),
}

impl Matcher {
    pub fn new(filter: Filter) -> Matcher {
        let text_lower = filter
            .text
            .as_ref()
            .map(|t| t.to_ascii_lowercase().into_bytes());
        let text_finder = text_lower
            .as_ref()
            .filter(|t| raw_searchable(t))
            .map(|t| Finder::new(t).into_owned());
        let phrase_finder = filter
            .phrase
            .as_ref()
            .filter(|p| raw_searchable(p.as_bytes()))
            .map(|p| Finder::new(p.as_bytes()).into_owned());
        Matcher {
            filter,
            text_lower,
            text_finder,
            phrase_finder,
            scratch: Vec::new(),
        }
    }

    /// Tests one raw line (without its newline) against the filter; `below_seq` bounds the
    /// sequence number (a cursor). `parse` asks for the parsed line of a match even when the
    /// filter did not need it (to make a hit).
    pub fn check<'l>(&mut self, line: &'l [u8], below_seq: u64, parse: bool) -> Verdict<'l> {
        if let Some(finder) = &self.phrase_finder
            && finder.find(line).is_none()
        {
            return Verdict::No;
        }
        if let Some(finder) = &self.text_finder {
            self.scratch.clear();
            self.scratch.extend(line.iter().map(u8::to_ascii_lowercase));
            if finder.find(&self.scratch).is_none() {
                return Verdict::No;
            }
        }
        let Some(head) = Head::read(line) else {
            return Verdict::No;
        };
        let f = &self.filter;
        if head.seq >= below_seq
            || f.min_level
                .is_some_and(|min| level_index(head.level) < level_index(min))
            || f.since_ns.is_some_and(|t| head.time_ns < t)
            || f.until_ns.is_some_and(|t| head.time_ns >= t)
        {
            return Verdict::No;
        }
        if !parse && !f.needs_parse() {
            return Verdict::Yes(head, None);
        }
        let Some(parsed) = parse_line(line) else {
            return Verdict::No;
        };
        if self.parsed_matches(&parsed) {
            Verdict::Yes(head, Some(parsed))
        } else {
            Verdict::No
        }
    }

    fn parsed_matches(&self, p: &ParsedLine<'_>) -> bool {
        let f = &self.filter;
        let r = p.record();
        if f.instance.as_ref().is_some_and(|i| i != p.instance()) {
            return false;
        }
        if let Some(logger) = &f.logger {
            let ok = match logger.strip_suffix('*') {
                Some(prefix) => r.logger.starts_with(prefix),
                None if logger.ends_with('.') => r.logger.starts_with(logger.as_str()),
                None => r.logger == logger.as_str(),
            };
            if !ok {
                return false;
            }
        }
        for (key, want) in &f.fields {
            let found = r
                .fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.text())
                .or_else(|| meta(r).into_iter().find(|(k, _)| k == key).map(|(_, v)| v));
            if found.as_deref() != Some(want.as_str()) {
                return false;
            }
        }
        if self.filter.text.is_none() && self.filter.phrase.is_none() {
            return true;
        }
        let mut texts = searched_texts(r);
        let lower = self.text_lower.as_deref();
        let phrase = f.phrase.as_deref();
        let text_ok = lower.is_none_or(|n| texts.clone().any(|t| contains_ignore_case(&t, n)));
        text_ok && phrase.is_none_or(|n| texts.any(|t| t.contains(n)))
    }
}

/// Whether a needle is found in the raw line whenever it is in the decoded text: true when it
/// has none of the bytes either format may escape (controls, DEL, `\`, `"`, `|`, `{`). Spaces
/// are fine: only the columns escape them, and text search does not look at the columns.
fn raw_searchable(needle: &[u8]) -> bool {
    !needle.is_empty()
        && !needle
            .iter()
            .any(|&b| b < 0x20 || matches!(b, 0x7f | b'\\' | b'"' | b'|' | b'{'))
}

/// `needle_lower` (lower-case ASCII) in `hay`, ignoring ASCII case, without allocating.
fn contains_ignore_case(hay: &str, needle_lower: &[u8]) -> bool {
    let hay = hay.as_bytes();
    needle_lower.is_empty()
        || hay
            .windows(needle_lower.len())
            .any(|w| w.eq_ignore_ascii_case(needle_lower))
}

/// The texts text search looks at: message or JSON body, field values, metadata, stack trace.
fn searched_texts<'r>(r: &'r Record<'_>) -> impl Iterator<Item = Cow<'r, str>> + Clone + 'r {
    let body = match &r.body {
        Body::Message(m) | Body::Json(m) => Cow::Borrowed(m.as_ref()),
    };
    std::iter::once(body)
        .chain(r.fields.iter().map(|(_, v)| v.text()))
        .chain(meta(r).into_iter().map(|(_, v)| v))
}

/// The metadata of a record that is set, as `(key, text)`, with the keys of the stored lines.
pub fn meta<'r>(r: &'r Record<'_>) -> Vec<(&'static str, Cow<'r, str>)> {
    let mut out: Vec<(&'static str, Cow<'r, str>)> = Vec::new();
    for (k, v) in [
        ("host", &r.host),
        ("service", &r.service),
        ("module", &r.module),
        ("file", &r.file),
        ("function", &r.function),
        ("process", &r.process_name),
        ("thread", &r.thread_name),
        ("stack_trace", &r.stack_trace),
    ] {
        if !v.is_empty() {
            out.push((k, Cow::Borrowed(v.as_ref())));
        }
    }
    for (k, n) in [
        ("line", u64::from(r.line)),
        ("pid", u64::from(r.process_id)),
        ("tid", r.thread_id),
    ] {
        if n != 0 {
            out.push((k, Cow::Owned(n.to_string())));
        }
    }
    out
}

/// Parses a stored line of either format.
pub fn parse_line(line: &[u8]) -> Option<ParsedLine<'_>> {
    let text = std::str::from_utf8(line).ok()?;
    if text.starts_with('{') {
        parse_json_line(text).ok()
    } else {
        parse_text_line(text).ok()
    }
}

/// The fixed start of a stored line: what most filters and every count need, read without
/// parsing the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub time_ns: u64,
    pub level: Level,
}

impl Head {
    /// Text: `2026-11-22T00:26:13.123456Z INFO 42 ...`; JSON:
    /// `{"seq":42,"time":"2026-11-22T00:26:13.123456Z","level":"info",...`. `None` for a line
    /// of neither shape.
    pub fn read(line: &[u8]) -> Option<Head> {
        if let Some(rest) = line.strip_prefix(b"{\"seq\":") {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let seq = parse_u64(&rest[..digits])?;
            let rest = rest[digits..].strip_prefix(b",\"time\":\"")?;
            let time_ns = parse_time(rest.get(..27)?)?;
            let rest = rest[27..].strip_prefix(b"\",\"level\":\"")?;
            let end = rest.iter().position(|&b| b == b'"')?;
            let level = level_from_bytes(&rest[..end])?;
            Some(Head {
                seq,
                time_ns,
                level,
            })
        } else {
            let time_ns = parse_time(line.get(..27)?)?;
            let rest = line[27..].strip_prefix(b" ")?;
            let end = rest.iter().position(|&b| b == b' ')?;
            let level = level_from_bytes(&rest[..end])?;
            let rest = &rest[end + 1..];
            let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            let seq = parse_u64(&rest[..end])?;
            Some(Head {
                seq,
                time_ns,
                level,
            })
        }
    }
}

fn level_from_bytes(b: &[u8]) -> Option<Level> {
    LEVELS
        .into_iter()
        .find(|l| l.as_str().as_bytes() == b || l.as_lower_str().as_bytes() == b)
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then_some(())?;
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// `2026-11-22T00:26:13.123456Z` (exactly 27 bytes) as Unix nanoseconds, by hand: this runs
/// once per line of a count, where a general parser would be most of the time.
pub fn parse_time(t: &[u8]) -> Option<u64> {
    if t.len() != 27
        || t[4] != b'-'
        || t[7] != b'-'
        || t[10] != b'T'
        || t[13] != b':'
        || t[16] != b':'
        || t[19] != b'.'
        || t[26] != b'Z'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| parse_u64(&t[r]);
    let (year, month, day) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hour, minute, second, micros) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..26)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let days = days_from_civil(year as i64, month as i64, day as i64);
    let secs = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second;
    Some(secs * 1_000_000_000 + micros * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The current time as Unix nanoseconds.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A time argument: a span back from `now_ns` (`30s`, `15m`, `1h`, `7d`), RFC 3339, or Unix
/// nanoseconds (all digits).
///
/// # Errors
/// A sentence saying what was expected.
pub fn parse_time_arg(text: &str, now_ns: u64) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a time: use 15m, 1h, 7d, RFC 3339 or Unix nanoseconds");
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad());
    }
    if let Some(unit) = text.bytes().last().filter(u8::is_ascii_alphabetic)
        && let Ok(n) = text[..text.len() - 1].parse::<u64>()
    {
        let secs = match unit {
            b's' => 1,
            b'm' => 60,
            b'h' => 3600,
            b'd' => 86_400,
            _ => return Err(bad()),
        };
        let back = n
            .checked_mul(secs)
            .and_then(|s| s.checked_mul(1_000_000_000))
            .ok_or_else(bad)?;
        return Ok(now_ns.saturating_sub(back));
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad())?;
    u64::try_from(t.unix_timestamp_nanos()).map_err(|_| bad())
}

/// Splits and percent-decodes an URL query (`+` is a space).
///
/// # Errors
/// A bad `%` escape or bytes that are not UTF-8.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    let query = query.strip_prefix('?').unwrap_or(query);
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next(), bytes.next()];
                let [Some(h), Some(l)] = hex else {
                    return Err(format!("a bad % escape in {s:?}"));
                };
                let digit = |c: u8| (c as char).to_digit(16);
                match (digit(h), digit(l)) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(format!("a bad % escape in {s:?}")),
                }
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_query_reads_every_filter() {
        let now = 10_000_000_000_000;
        let pairs = query_pairs(
            "app=a&app=b&instance=pod%2D1&level=WARN&logger=app.db&q=disk+full&phrase=Disk&field=k%3Dv%3Dw&since=1h&until=2026-01-01T00:00:00Z&cursor=x&limit=5&logger=",
        )
        .unwrap();
        let f = Filter::from_pairs(pairs, now).unwrap();
        assert_eq!(f.apps, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(f.instance.as_deref(), Some("pod-1"));
        assert_eq!(f.min_level, Some(Level::Warning));
        assert_eq!(f.logger.as_deref(), Some("app.db"));
        assert_eq!(f.text.as_deref(), Some("disk full"));
        assert_eq!(f.phrase.as_deref(), Some("Disk"));
        assert_eq!(f.fields, [("k".to_string(), "v=w".to_string())]);
        assert_eq!(f.since_ns, Some(now - 3_600_000_000_000));
        assert_eq!(f.until_ns, Some(1_767_225_600_000_000_000));
        for bad in [
            "level=loud",
            "field=novalue",
            "since=yesterday",
            "q=%zz",
            "since=5y",
        ] {
            assert!(Filter::from_query(bad).is_err(), "{bad} accepted");
        }
        assert!(Filter::from_query(&format!("q={}", "x".repeat(2000))).is_err());
    }

    #[test]
    fn head_is_read_from_both_formats() {
        let want = Head {
            seq: 42,
            time_ns: 1_763_771_173_123_456_000,
            level: Level::Error,
        };
        let text = b"2025-11-22T00:26:13.123456Z ERROR 42 billing/pod-7 app.db lost";
        let json =
            br#"{"seq":42,"time":"2025-11-22T00:26:13.123456Z","level":"error","message":"x"}"#;
        assert_eq!(Head::read(text), Some(want));
        assert_eq!(Head::read(json), Some(want));
        assert_eq!(Head::read(b"garbage"), None);
        assert_eq!(Head::read(b"2025-11-22T00:26:13.123456Z LOUD 42 x"), None);
    }

    #[test]
    fn fast_time_agrees_with_the_time_crate() {
        for t in [
            "1970-01-01T00:00:00.000001Z",
            "2000-02-29T23:59:59.999999Z",
            "2026-12-31T12:00:00.500000Z",
            "2100-03-01T00:00:00.000000Z",
        ] {
            let slow =
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .unwrap()
                    .unix_timestamp_nanos() as u64;
            assert_eq!(parse_time(t.as_bytes()), Some(slow), "{t}");
        }
    }

    #[test]
    fn text_and_phrase_look_at_message_and_fields_not_columns() {
        let line = br#"2025-11-22T00:26:13.123456Z ERROR 7 billing/pod-7 app.db Disk Full on \x7bvar\x7d | host=web-1 why="peer reset""#;
        let check = |f: Filter| {
            matches!(
                Matcher::new(f).check(line, u64::MAX, false),
                Verdict::Yes(..)
            )
        };
        let text = |t: &str| Filter {
            text: Some(t.into()),
            ..Filter::default()
        };
        let phrase = |t: &str| Filter {
            phrase: Some(t.into()),
            ..Filter::default()
        };
        assert!(check(text("disk full")));
        assert!(check(text("PEER RESET")));
        assert!(check(text("web-1")));
        assert!(!check(text("billing")), "the app column is not searched");
        assert!(!check(text("app.db")), "the logger column is not searched");
        assert!(check(phrase("Disk Full")));
        assert!(!check(phrase("disk full")));
        assert!(
            check(phrase("{var}")),
            "an escaped needle is checked on the decoded text"
        );
        assert!(check(Filter {
            min_level: Some(Level::Warning),
            ..Filter::default()
        }));
        assert!(!check(Filter {
            min_level: Some(Level::Critical),
            ..Filter::default()
        }));
        assert!(check(Filter {
            fields: vec![("host".into(), "web-1".into())],
            ..Filter::default()
        }));
        assert!(!check(Filter {
            fields: vec![("why".into(), "peer".into())],
            ..Filter::default()
        }));
        assert!(check(Filter {
            logger: Some("app.".into()),
            ..Filter::default()
        }));
        assert!(!check(Filter {
            logger: Some("app".into()),
            ..Filter::default()
        }));
        assert!(check(Filter {
            instance: Some("pod-7".into()),
            ..Filter::default()
        }));
        let m = |below| {
            matches!(
                Matcher::new(Filter::default()).check(line, below, false),
                Verdict::Yes(..)
            )
        };
        assert!(m(8) && !m(7), "the cursor bound is exclusive");
    }
}
