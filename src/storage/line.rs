//! The stored line format: a [`Record`] becomes one line of text or JSON.
//!
//! Lines are formatted by the event loops, in parallel, not by the writer: a line is a head, room
//! for its sequence number and a tail; the loop prints the number when it sends the batch (see
//! [`Batch`](super::Batch)), and the writer writes the bytes as they are.
//!
//! Text: `2026-11-22T00:26:13.123456Z INFO 42 billing/pod-7 app.db connection lost | host=web-1 retry=3`
//! JSON: `{"seq":42,"time":"2026-11-22T00:26:13.123456Z","level":"info","app":"billing",...}`
//!
//! Every byte below 0x20, DEL and the backslash is escaped in text lines (`\n`, `\t`, `\x1b`, ...)
//! and JSON strings are escaped by `serde_json`, so no field can ever start a second line.

use crate::config::Format;
use crate::record::{Body, Level, Record};

/// Who sent a record: the connection's hello, if any.
///
/// The text format's `app/instance` column is escaped once, here, not once per record: it is
/// the same for every record of a connection.
#[derive(Clone, Debug)]
pub struct Origin {
    app: String,
    instance: String,
    text_column: Vec<u8>,
}

impl Origin {
    pub fn new(app: String, instance: String) -> Self {
        let mut text_column = Vec::new();
        column(&app, &mut text_column);
        if !instance.is_empty() {
            text_column.push(b'/');
            escape_into(&instance, true, &mut text_column);
        }
        Origin {
            app,
            instance,
            text_column,
        }
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }
}

impl Default for Origin {
    fn default() -> Self {
        Origin::new(String::new(), String::new())
    }
}

/// Formats records, caching the formatted time: consecutive records almost always share their
/// second (the calendar date is the slowest part of a line to format) and, when the server
/// stamps them on arrival, their microsecond too.
pub struct LineFormatter {
    format: Format,
    /// `ts_ns / 1000` of `time`, or `u64::MAX` before the first record.
    cached_micros: u64,
    /// `2026-11-22T00:26:13.123456Z`: RFC 3339 UTC with microseconds.
    time: [u8; TIME_LEN],
    /// The text format's head (`time level `, then the room for the sequence number) and the
    /// level and room it was made with.
    text_head: Vec<u8>,
    text_head_level: Option<Level>,
    text_head_slot: usize,
}

const TIME_LEN: usize = 27;
/// Where the microseconds start in [`LineFormatter::time`].
const MICROS_AT: usize = 20;

impl LineFormatter {
    pub fn new(format: Format) -> Self {
        LineFormatter {
            format,
            cached_micros: u64::MAX,
            time: [0; TIME_LEN],
            text_head: Vec::with_capacity(TIME_LEN + 12),
            text_head_level: None,
            text_head_slot: 0,
        }
    }

    /// Appends the head of `record`'s line, `seq_slot` bytes for the sequence number (filled in
    /// by [`Batch::number`](super::Batch::number)) and the tail to `out`, and returns the head
    /// and tail lengths.
    /// `now_ns` stamps records that carry no time of their own.
    pub fn format(
        &mut self,
        record: &Record<'_>,
        origin: &Origin,
        now_ns: u64,
        seq_slot: usize,
        out: &mut Vec<u8>,
    ) -> (usize, usize) {
        let ts = if record.timestamp_ns == 0 {
            now_ns
        } else {
            record.timestamp_ns
        };
        let start = out.len();
        let time_changed = self.update_time(ts);
        match self.format {
            Format::Text => {
                if time_changed
                    || self.text_head_level != Some(record.level)
                    || self.text_head_slot != seq_slot
                {
                    self.text_head.clear();
                    self.text_head.extend_from_slice(&self.time);
                    self.text_head.push(b' ');
                    self.text_head
                        .extend_from_slice(record.level.as_str().as_bytes());
                    self.text_head.push(b' ');
                    let head = self.text_head.len();
                    self.text_head.resize(head + seq_slot, b'0');
                    self.text_head_level = Some(record.level);
                    self.text_head_slot = seq_slot;
                }
                out.extend_from_slice(&self.text_head);
                let head = out.len() - start - seq_slot;
                write_text(record, origin, out);
                (head, out.len() - start - head - seq_slot)
            }
            Format::Json => {
                out.extend_from_slice(b"{\"seq\":");
                let head = out.len() - start;
                out.resize(out.len() + seq_slot, b'0');
                out.extend_from_slice(b",\"time\":\"");
                out.extend_from_slice(&self.time);
                out.extend_from_slice(b"\",\"level\":\"");
                out.extend_from_slice(record.level.as_lower_str().as_bytes());
                out.push(b'"');
                write_json(record, origin, out);
                (head, out.len() - start - head - seq_slot)
            }
        }
    }

    /// Makes `self.time` the time of `ts_ns`; true if it changed.
    fn update_time(&mut self, ts_ns: u64) -> bool {
        let micros = ts_ns / 1000;
        if micros == self.cached_micros {
            return false;
        }
        let second = micros / 1_000_000;
        if self.cached_micros == u64::MAX || second != self.cached_micros / 1_000_000 {
            // u64 nanoseconds end in the year 2554, well inside what `time` formats.
            let t = time::OffsetDateTime::from_unix_timestamp(second as i64)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let fmt =
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            let mut date = Vec::with_capacity(MICROS_AT);
            t.format_into(&mut date, &fmt)
                .expect("formatting a valid date into a Vec cannot fail");
            self.time[..MICROS_AT - 1].copy_from_slice(&date);
            self.time[MICROS_AT - 1] = b'.';
            self.time[TIME_LEN - 1] = b'Z';
        }
        let mut fraction = micros % 1_000_000;
        for digit in self.time[MICROS_AT..TIME_LEN - 1].iter_mut().rev() {
            *digit = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        self.cached_micros = micros;
        true
    }
}

/// True if `b` must be escaped in a text line: control bytes, DEL and `\`; in a column (app,
/// instance, logger, field keys) also space and `|`, so columns split on spaces.
#[inline(always)]
const fn special<const COLUMN: bool>(b: u8) -> bool {
    (b < 0x20) | (b == 0x7f) | (b == b'\\') | (COLUMN & ((b == b' ') | (b == b'|')))
}

/// [`special`] as tables, for the byte-at-a-time path.
const ESCAPE_TEXT: [bool; 256] = escape_table::<false>();
const ESCAPE_COLUMN: [bool; 256] = escape_table::<true>();

const fn escape_table<const COLUMN: bool>() -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = special::<COLUMN>(b as u8);
        b += 1;
    }
    table
}

/// True if some byte of `bytes` must be escaped. A fold with no early exit is what the compiler
/// vectorizes (SSE2 on x86-64, NEON on aarch64: 32 bytes in about 24 instructions), with no
/// `unsafe` and no intrinsics; stopping at the first special byte would make it a byte loop.
#[inline(always)]
fn any_special<const COLUMN: bool>(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(false, |any, &b| any | special::<COLUMN>(b))
}

/// Blocks a string with special bytes is checked in, so only the blocks that have one are
/// escaped byte by byte.
const BLOCK: usize = 64;

/// Text escaping: runs of plain bytes are copied whole, and each special byte becomes `\\n`,
/// `\\r`, `\\t`, `\\\\` or `\\xHH`. This is the hottest loop of the server (every byte of every
/// message goes through it), so a string is first checked whole (see [`any_special`]) and, in the
/// common case of nothing to escape, copied at once.
fn escape_into(s: &str, column: bool, out: &mut Vec<u8>) {
    if column {
        escape::<true>(s.as_bytes(), out);
    } else {
        escape::<false>(s.as_bytes(), out);
    }
}

fn escape<const COLUMN: bool>(bytes: &[u8], out: &mut Vec<u8>) {
    if !any_special::<COLUMN>(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    // `copied`: bytes before it are in `out` already (escaped); the rest is copied in runs.
    let mut copied = 0;
    for (i, block) in bytes.chunks(BLOCK).enumerate() {
        if any_special::<COLUMN>(block) {
            let from = i * BLOCK;
            escape_bytes::<COLUMN>(bytes, from..from + block.len(), &mut copied, out);
        }
    }
    out.extend_from_slice(&bytes[copied..]);
}

/// Escapes each special byte in `bytes[range]`, first copying the plain run before it.
fn escape_bytes<const COLUMN: bool>(
    bytes: &[u8],
    range: std::ops::Range<usize>,
    copied: &mut usize,
    out: &mut Vec<u8>,
) {
    // A table lookup is cheaper than the five compares of `special` one byte at a time.
    let table = if COLUMN { &ESCAPE_COLUMN } else { &ESCAPE_TEXT };
    let from = range.start;
    for (i, &b) in bytes[range].iter().enumerate() {
        if !table[b as usize] {
            continue;
        }
        let at = from + i;
        out.extend_from_slice(&bytes[*copied..at]);
        *copied = at + 1;
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]);
            }
        }
    }
}

/// A `key=value` pair of the text format; values with spaces, quotes or `=` are quoted.
fn text_field(key: &str, value: &str, out: &mut Vec<u8>) {
    out.push(b' ');
    escape_into(key, true, out);
    out.push(b'=');
    if !value.is_empty()
        && !value
            .bytes()
            .any(|b| matches!(b, b' ' | b'"' | b'=' | b'|'))
    {
        escape_into(value, false, out);
    } else {
        out.push(b'"');
        for part in value.split_inclusive('"') {
            match part.strip_suffix('"') {
                Some(p) => {
                    escape_into(p, false, out);
                    out.extend_from_slice(b"\\\"");
                }
                None => escape_into(part, false, out),
            }
        }
        out.push(b'"');
    }
}

fn column(s: &str, out: &mut Vec<u8>) {
    if s.is_empty() {
        out.push(b'-');
    } else {
        escape_into(s, true, out);
    }
}

fn write_text(r: &Record<'_>, origin: &Origin, out: &mut Vec<u8>) {
    out.push(b' ');
    out.extend_from_slice(&origin.text_column);
    out.push(b' ');
    column(&r.logger, out);
    out.push(b' ');
    let mut parse_error = r.parse_error;
    match &r.body {
        Body::Message(m) => escape_into(m, false, out),
        Body::Json(j) => match compact_json(j) {
            Some(json) => escape_into(&json, false, out),
            None => {
                parse_error = true;
                escape_into(j, false, out);
            }
        },
    }
    let mut first = true;
    let mut field = |k: &str, v: &str, out: &mut Vec<u8>| {
        if std::mem::take(&mut first) {
            out.extend_from_slice(b" |");
        }
        text_field(k, v, out);
    };
    for_each_meta(r, |k, v| match v {
        Meta::Text(v) => field(k, v, out),
        Meta::Number(n) => field(k, itoa::Buffer::new().format(n), out),
    });
    for (k, v) in &r.fields {
        field(k, v, out);
    }
    if !r.stack_trace.is_empty() {
        field("stack_trace", &r.stack_trace, out);
    }
    if parse_error {
        field("parse_error", "true", out);
    }
    if r.truncated {
        field("truncated", "true", out);
    }
    out.push(b'\n');
}

/// A metadata value: text, or a number written without quotes in JSON.
enum Meta<'r> {
    Text(&'r str),
    Number(u64),
}

/// Calls `f` for each metadata field that is set, in the stored order.
fn for_each_meta<'r>(r: &'r Record<'_>, mut f: impl FnMut(&str, Meta<'r>)) {
    for (k, v) in [
        ("host", &r.host),
        ("service", &r.service),
        ("module", &r.module),
        ("file", &r.file),
    ] {
        if !v.is_empty() {
            f(k, Meta::Text(v));
        }
    }
    if r.line != 0 {
        f("line", Meta::Number(u64::from(r.line)));
    }
    if !r.function.is_empty() {
        f("function", Meta::Text(&r.function));
    }
    if r.process_id != 0 {
        f("pid", Meta::Number(u64::from(r.process_id)));
    }
    if !r.process_name.is_empty() {
        f("process", Meta::Text(&r.process_name));
    }
    if r.thread_id != 0 {
        f("tid", Meta::Number(r.thread_id));
    }
    if !r.thread_name.is_empty() {
        f("thread", Meta::Text(&r.thread_name));
    }
}

/// A JSON object body, parsed and written back compact (keys sorted, no raw newlines), or `None`
/// when it is not a JSON object.
fn compact_json(text: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Some(v.to_string()),
        _ => None,
    }
}

fn json_str(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing JSON to a Vec cannot fail");
}

fn json_key(key: &str, out: &mut Vec<u8>) {
    out.push(b',');
    json_str(key, out);
    out.push(b':');
}

fn write_json(r: &Record<'_>, origin: &Origin, out: &mut Vec<u8>) {
    for (k, v) in [("app", origin.app()), ("instance", origin.instance())] {
        if !v.is_empty() {
            json_key(k, out);
            json_str(v, out);
        }
    }
    if !r.logger.is_empty() {
        json_key("logger", out);
        json_str(&r.logger, out);
    }
    let mut parse_error = r.parse_error;
    match &r.body {
        Body::Message(m) => {
            json_key("message", out);
            json_str(m, out);
        }
        Body::Json(j) => match compact_json(j) {
            Some(json) => {
                json_key("json", out);
                out.extend_from_slice(json.as_bytes());
            }
            None => {
                parse_error = true;
                json_key("message", out);
                json_str(j, out);
            }
        },
    }
    for_each_meta(r, |k, v| {
        json_key(k, out);
        match v {
            Meta::Text(v) => json_str(v, out),
            Meta::Number(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        }
    });
    if !r.fields.is_empty() {
        out.extend_from_slice(b",\"fields\":{");
        for (i, (k, v)) in r.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(k, out);
            out.push(b':');
            json_str(v, out);
        }
        out.push(b'}');
    }
    if !r.stack_trace.is_empty() {
        json_key("stack_trace", out);
        json_str(&r.stack_trace, out);
    }
    if parse_error {
        out.extend_from_slice(b",\"parse_error\":true");
    }
    if r.truncated {
        out.extend_from_slice(b",\"truncated\":true");
    }
    out.extend_from_slice(b"}\n");
}

/// Reads the sequence number of a stored line in either format (the format may have changed
/// between runs): `{"seq":N,...` or the third space-separated column of a text line.
pub fn parse_seq(line: &[u8]) -> Option<u64> {
    let digits = if let Some(rest) = line.strip_prefix(b"{\"seq\":") {
        rest.split(|&b| b == b',').next()?
    } else {
        line.split(|&b| b == b' ').nth(2)?
    };
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Level;

    fn line(format: Format, r: &Record<'_>, origin: &Origin, seq: u64) -> String {
        let mut f = LineFormatter::new(format);
        let mut out = Vec::new();
        let (head, tail) = f.format(r, origin, 0, 0, &mut out);
        assert_eq!(head + tail, out.len());
        let mut s = String::from_utf8(out[..head].to_vec()).unwrap();
        s.push_str(&seq.to_string());
        s.push_str(std::str::from_utf8(&out[head..]).unwrap());
        s
    }

    fn sample() -> Record<'static> {
        Record {
            timestamp_ns: 1_763_771_173_123_456_789,
            level: Level::Error,
            body: Body::Message("connection lost\nFAKE 2 forged line".into()),
            logger: "app.db".into(),
            host: "web-1".into(),
            line: 12,
            fields: vec![
                ("retry".into(), "3".into()),
                ("why".into(), "peer reset".into()),
            ],
            ..Record::default()
        }
    }

    #[test]
    fn text_line() {
        let origin = Origin::new("billing".into(), "pod-7".into());
        assert_eq!(
            line(Format::Text, &sample(), &origin, 42),
            "2025-11-22T00:26:13.123456Z ERROR 42 billing/pod-7 app.db connection lost\\nFAKE 2 forged line | host=web-1 line=12 retry=3 why=\"peer reset\"\n"
        );
    }

    #[test]
    fn json_line() {
        let s = line(Format::Json, &sample(), &Origin::default(), 7);
        assert_eq!(s.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["time"], "2025-11-22T00:26:13.123456Z");
        assert_eq!(v["level"], "error");
        assert_eq!(v["message"], "connection lost\nFAKE 2 forged line");
        assert_eq!(v["fields"]["why"], "peer reset");
        assert_eq!(v["line"], 12);
    }

    #[test]
    fn json_body_is_compacted_or_flagged() {
        let mut r = Record {
            body: Body::Json("{\n \"a\": 1\n}".into()),
            ..Record::default()
        };
        let s = line(Format::Json, &r, &Origin::default(), 1);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["json"]["a"], 1);
        r.body = Body::Json("not json\n".into());
        let s = line(Format::Text, &r, &Origin::default(), 1);
        assert!(s.ends_with("not json\\n | parse_error=true\n"), "{s}");
    }

    #[test]
    fn control_characters_never_make_a_line() {
        let nasty: String = (0u8..0x80).map(char::from).collect();
        let r = Record {
            body: Body::Message(nasty.clone().into()),
            logger: nasty.clone().into(),
            fields: vec![(nasty.clone().into(), nasty.clone().into())],
            stack_trace: nasty.into(),
            ..Record::default()
        };
        for format in [Format::Text, Format::Json] {
            let s = line(format, &r, &Origin::default(), 1);
            assert_eq!(s.matches(['\n', '\r']).count(), 1, "{format:?}: {s}");
        }
    }

    #[test]
    fn escaping_agrees_with_a_byte_by_byte_reference() {
        let reference = |s: &str, column: bool| {
            let mut out = Vec::new();
            for &b in s.as_bytes() {
                let special =
                    b < 0x20 || b == 0x7f || b == b'\\' || (column && (b == b' ' || b == b'|'));
                match b {
                    b'\n' if special => out.extend_from_slice(b"\\n"),
                    b'\r' if special => out.extend_from_slice(b"\\r"),
                    b'\t' if special => out.extend_from_slice(b"\\t"),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b if special => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                    b => out.push(b),
                }
            }
            out
        };
        // Every byte value at every position of strings shorter than the vector loop, of one
        // block exactly, of a block and a bit, and of two blocks and a bit.
        let mut inputs: Vec<String> = Vec::new();
        for len in [17, BLOCK, BLOCK + 13, 2 * BLOCK + 6] {
            for b in 0u8..0x80 {
                for at in 0..len {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    inputs.push(String::from_utf8(s).unwrap());
                }
            }
        }
        // Special bytes in two blocks with a clean block between them, and in the last byte of
        // a block and the first of the next.
        inputs.push(format!(
            "{}\n{}\t{}",
            "a".repeat(10),
            "b".repeat(2 * BLOCK),
            "c".repeat(3)
        ));
        inputs.push(format!("{}\\|{}", "a".repeat(BLOCK - 1), "b".repeat(BLOCK)));
        inputs.push("héllo wörld | ünïcode\u{7f}\u{85}".into());
        for s in &inputs {
            for column in [false, true] {
                let mut out = Vec::new();
                escape_into(s, column, &mut out);
                assert_eq!(out, reference(s, column), "{s:?} column={column}");
            }
        }
    }

    #[test]
    fn the_time_cache_never_shows_a_stale_time_or_level() {
        // Same microsecond, next microsecond, next second, next day, back in time, the epoch,
        // with the level changing under an unchanged time: each line must equal the line a
        // fresh formatter (empty cache) makes.
        let times = [
            1_763_770_773_123_456_789,
            1_763_770_773_123_456_999,
            1_763_770_773_123_457_000,
            1_763_770_773_999_999_999,
            1_763_770_774_000_000_000,
            1_763_856_000_000_001_000,
            1_700_000_000_000_000_000,
            1,
        ];
        for format in [Format::Text, Format::Json] {
            let mut cached = LineFormatter::new(format);
            for &ts in &times {
                for level in [Level::Info, Level::Error, Level::Info] {
                    let r = Record {
                        timestamp_ns: ts,
                        level,
                        ..sample()
                    };
                    let mut out = Vec::new();
                    cached.format(&r, &Origin::default(), 0, 0, &mut out);
                    let mut fresh = Vec::new();
                    LineFormatter::new(format).format(&r, &Origin::default(), 0, 0, &mut fresh);
                    assert_eq!(out, fresh, "{format:?} {ts} {level:?}");
                }
            }
        }
        assert!(
            line(
                Format::Text,
                &Record {
                    timestamp_ns: 1,
                    ..sample()
                },
                &Origin::default(),
                1
            )
            .starts_with("1970-01-01T00:00:00.000000Z ERROR 1 ")
        );
        assert!(
            line(
                Format::Text,
                &Record {
                    timestamp_ns: 1_763_770_773_000_001_999,
                    ..sample()
                },
                &Origin::default(),
                1
            )
            .starts_with("2025-11-22T00:19:33.000001Z ")
        );
    }

    #[test]
    fn seq_is_recovered_from_both_formats() {
        let origin = Origin::default();
        for format in [Format::Text, Format::Json] {
            assert_eq!(
                parse_seq(line(format, &sample(), &origin, 981).as_bytes()),
                Some(981)
            );
        }
        assert_eq!(parse_seq(b"garbage"), None);
    }
}
