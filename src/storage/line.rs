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
//! and JSON strings are escaped by `serde_json`, so no field can ever start a second line. Text
//! lines also escape whatever would make them ambiguous (every `|` but the separator, spaces in
//! columns, ... see [`special`] and `write_text`), so [`super::parse`] reads back exactly the
//! record that was written.

use crate::config::Format;
use std::borrow::Cow;
use std::sync::Arc;

use crate::record::{Body, Level, Record, Value};

/// Who sent a record: the connection's hello, if any.
///
/// The text format's `app/instance` column is escaped once, here, not once per record: it is
/// the same for every record of a connection.
#[derive(Clone, Debug)]
pub struct Origin {
    app: String,
    instance: String,
    text_column: Vec<u8>,
    /// The bucket the records go to: the app, when it is a valid bucket name
    /// ([`valid_app_name`](super::bucket::valid_app_name)); `None` for anonymous. Shared, so a
    /// batch marks whose lines are whose by comparing pointers, not names.
    bucket: Option<Arc<str>>,
}

impl Origin {
    /// Records of `app` (its bucket, when `app` is a valid bucket name) from `instance`.
    pub fn new(app: String, instance: String) -> Self {
        let mut origin = Origin::anonymous(app, instance);
        // Sessions refuse an invalid name at hello; this is the second lock on the same door:
        // a name that is not a valid bucket never becomes a path.
        origin.bucket =
            super::bucket::valid_app_name(&origin.app).then(|| Arc::from(origin.app.as_str()));
        origin
    }

    /// Records shown as `label`/`instance` in the lines but stored in the anonymous bucket: a
    /// connection that names an app without the token that would prove it (`--auth optional`).
    pub fn anonymous(label: String, instance: String) -> Self {
        let app = label;
        // The first plain `/` ends the app, so one in the app is escaped.
        let mut app_column = Vec::new();
        column(&app, &mut app_column);
        let mut text_column = Vec::with_capacity(app_column.len());
        for b in app_column {
            match b {
                b'/' => hex_escape(b, &mut text_column),
                b => text_column.push(b),
            }
        }
        if !instance.is_empty() {
            text_column.push(b'/');
            escape::<COLUMN>(&instance, &mut text_column);
        }
        Origin {
            app,
            instance,
            text_column,
            bucket: None,
        }
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The app's bucket, `None` for the anonymous one.
    pub fn bucket(&self) -> Option<&Arc<str>> {
        self.bucket.as_ref()
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

/// Where a string is written in a text line; each place escapes the bytes that would make the
/// line ambiguous there (see [`special`]).
type Place = u8;
/// The message (or JSON body) and unquoted field values.
const TEXT: Place = 0;
/// A field value between double quotes.
const QUOTED: Place = 1;
/// A space-separated column: app, instance, logger.
const COLUMN: Place = 2;
/// A field key, which ends at its `=`.
const KEY: Place = 3;

/// True if `b` must be escaped at `P`. Everywhere: control bytes, DEL, `\` and `|`, so the one
/// unescaped `|` of a line is the one that opens its fields; in quotes also `"`; in columns and
/// keys also the space (columns split on spaces), and in keys `=`.
#[inline(always)]
const fn special<const P: Place>(b: u8) -> bool {
    (b < 0x20)
        | (b == 0x7f)
        | (b == b'\\')
        | (b == b'|')
        | ((P == QUOTED) & (b == b'"'))
        | (((P == COLUMN) | (P == KEY)) & (b == b' '))
        | ((P == KEY) & (b == b'='))
}

/// [`special`] as tables, for the byte-at-a-time path.
const ESCAPE_TEXT: [bool; 256] = escape_table::<TEXT>();
const ESCAPE_QUOTED: [bool; 256] = escape_table::<QUOTED>();
const ESCAPE_COLUMN: [bool; 256] = escape_table::<COLUMN>();
const ESCAPE_KEY: [bool; 256] = escape_table::<KEY>();

const fn escape_table<const P: Place>() -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = special::<P>(b as u8);
        b += 1;
    }
    table
}

/// True if some byte of `bytes` must be escaped. A fold with no early exit is what the compiler
/// vectorizes (SSE2 on x86-64, NEON on aarch64: 32 bytes in about 24 instructions), with no
/// `unsafe` and no intrinsics; stopping at the first special byte would make it a byte loop.
#[inline(always)]
fn any_special<const P: Place>(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |any, &b| any | special::<P>(b))
}

/// Blocks a string with special bytes is checked in, so only the blocks that have one are
/// escaped byte by byte.
const BLOCK: usize = 64;

/// Text escaping: runs of plain bytes are copied whole, and each special byte becomes `\\n`,
/// `\\r`, `\\t`, `\\\\`, `\\|`, `\\"` or `\\xHH` (what [`super::parse`] reads back). This is
/// the hottest loop of the server (every byte of every message goes through it), so a string is
/// first checked whole (see [`any_special`]) and, in the common case of nothing to escape,
/// copied at once.
fn escape<const P: Place>(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    if !any_special::<P>(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    // `copied`: bytes before it are in `out` already (escaped); the rest is copied in runs.
    let mut copied = 0;
    for (i, block) in bytes.chunks(BLOCK).enumerate() {
        if any_special::<P>(block) {
            let from = i * BLOCK;
            escape_bytes::<P>(bytes, from..from + block.len(), &mut copied, out);
        }
    }
    out.extend_from_slice(&bytes[copied..]);
}

/// Escapes each special byte in `bytes[range]`, first copying the plain run before it.
fn escape_bytes<const P: Place>(
    bytes: &[u8],
    range: std::ops::Range<usize>,
    copied: &mut usize,
    out: &mut Vec<u8>,
) {
    // A table lookup is cheaper than the compares of `special` one byte at a time.
    let table = match P {
        TEXT => &ESCAPE_TEXT,
        QUOTED => &ESCAPE_QUOTED,
        COLUMN => &ESCAPE_COLUMN,
        _ => &ESCAPE_KEY,
    };
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
            b'\\' | b'|' | b'"' => out.extend_from_slice(&[b'\\', b]),
            b => hex_escape(b, out),
        }
    }
}

/// `\xHH`: for control bytes, and for the characters whose plain `\` escape would read badly
/// (a space, `=`) or that are only special in one position (`/`, `-`, `{`).
fn hex_escape(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
}

/// The metadata keys of the text format. A field of the record with one of these names is
/// written with its first letter escaped (`\x68ost=`), so no field, and no key a client
/// chooses, can pass for the record's metadata.
pub(super) const META_KEYS: [&str; 13] = [
    "host",
    "service",
    "module",
    "file",
    "line",
    "function",
    "pid",
    "process",
    "tid",
    "thread",
    "stack_trace",
    "parse_error",
    "truncated",
];

/// A field key; `meta` when it is one of [`META_KEYS`] written by the formatter.
fn text_key(key: &str, meta: bool, out: &mut Vec<u8>) {
    out.push(b' ');
    if !meta && META_KEYS.contains(&key) {
        hex_escape(key.as_bytes()[0], out);
        out.extend_from_slice(&key.as_bytes()[1..]);
    } else {
        escape::<KEY>(key, out);
    }
    out.push(b'=');
}

/// A field value of the text format; empty values and values with spaces, quotes or `=` are
/// quoted.
fn text_value(value: &str, out: &mut Vec<u8>) {
    let quote = value.is_empty()
        || value.bytes().fold(false, |any, b| {
            any | (b == b' ') | (b == b'"') | (b == b'=')
        });
    if quote {
        out.push(b'"');
        escape::<QUOTED>(value, out);
        out.push(b'"');
    } else {
        escape::<TEXT>(value, out);
    }
}

/// A typed value in its JSON spelling (see [`Value`]); strings as [`text_value`].
fn text_typed_value(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Str(s) => text_value(s, out),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Float(f) => json_float(*f, out),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Null => out.extend_from_slice(b"null"),
        Value::Json(j) => text_value(j.as_str(), out),
    }
}

/// A column; `-` when empty (so a literal `-` is written `\x2d`).
fn column(s: &str, out: &mut Vec<u8>) {
    match s {
        "" => out.push(b'-'),
        "-" => hex_escape(b'-', out),
        s => escape::<COLUMN>(s, out),
    }
}

fn write_text(r: &Record<'_>, origin: &Origin, out: &mut Vec<u8>) {
    out.push(b' ');
    out.extend_from_slice(&origin.text_column);
    out.push(b' ');
    column(&r.logger, out);
    let mut parse_error = r.parse_error;
    let (message, json) = match &r.body {
        Body::Message(m) => (Cow::Borrowed(m.as_ref()), false),
        Body::Json(j) => match compact_json(j) {
            Some(json) => (Cow::Owned(json), true),
            None => {
                parse_error = true;
                (Cow::Borrowed(j.as_ref()), false)
            }
        },
    };
    // An empty message is left out, with its space. A JSON body starts with a plain `{`; a
    // message that starts with one has it escaped, so the two read back apart.
    if !message.is_empty() {
        out.push(b' ');
        match message.strip_prefix('{') {
            Some(rest) if !json => {
                hex_escape(b'{', out);
                escape::<TEXT>(rest, out);
            }
            _ => escape::<TEXT>(&message, out),
        }
    }
    let mut first = true;
    let mut bar = |out: &mut Vec<u8>| {
        if std::mem::take(&mut first) {
            out.extend_from_slice(b" |");
        }
    };
    for_each_meta(r, |k, v| {
        bar(out);
        text_key(k, true, out);
        match v {
            Meta::Text(v) => text_value(v, out),
            Meta::Number(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        }
    });
    for (k, v) in &r.fields {
        bar(out);
        text_key(k, false, out);
        text_typed_value(v, out);
    }
    if !r.stack_trace.is_empty() {
        bar(out);
        text_key("stack_trace", true, out);
        text_value(&r.stack_trace, out);
    }
    for (flag, key) in [(parse_error, "parse_error"), (r.truncated, "truncated")] {
        if flag {
            bar(out);
            text_key(key, true, out);
            out.extend_from_slice(b"true");
        }
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

/// A float as `serde_json` writes it (the shortest text that reads back the same, `3.0` for a
/// whole number, `null` for NaN and the infinities).
fn json_float(f: f64, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, &f).expect("writing JSON to a Vec cannot fail");
}

fn json_value(v: &Value<'_>, out: &mut Vec<u8>) {
    match v {
        Value::Str(s) => json_str(s, out),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Float(f) => json_float(*f, out),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Null => out.extend_from_slice(b"null"),
        // Checked and compacted when it was made (`JsonText`).
        Value::Json(j) => out.extend_from_slice(j.as_str().as_bytes()),
    }
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
        Body::Message(m) if m.is_empty() => {}
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
                if !j.is_empty() {
                    json_key("message", out);
                    json_str(j, out);
                }
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
            json_value(v, out);
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
    use crate::record::{Level, Value};

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
    fn a_message_cannot_forge_metadata() {
        // Issue 8.5: `two\nlines | host=forged` used to store `two\nlines | host=forged`.
        let r = Record {
            body: Body::Message("two\nlines | host=forged".into()),
            module: "m".into(),
            fields: vec![("host".into(), "forged too".into())],
            ..Record::default()
        };
        let s = line(Format::Text, &r, &Origin::default(), 1);
        assert!(
            s.ends_with(" - - two\\nlines \\| host=forged | module=m \\x68ost=\"forged too\"\n"),
            "{s}"
        );
        assert_eq!(s.matches('|').count() - s.matches("\\|").count(), 1, "{s}");
        assert!(
            !s.contains(" | host=") && !s.contains(" host=forged too"),
            "{s}"
        );
    }

    #[test]
    fn columns_that_look_like_separators_are_escaped() {
        let origin = Origin::new("a/b -".into(), "-".into());
        let r = Record {
            logger: "-".into(),
            body: Body::Message("{\"not\":\"json body\"}".into()),
            fields: vec![("k=ey \"q\"".into(), "".into())],
            ..Record::default()
        };
        let s = line(Format::Text, &r, &origin, 1);
        assert!(
            s.ends_with(
                " a\\x2fb\\x20-/- \\x2d \\x7b\"not\":\"json body\"} | k\\x3dey\\x20\"q\"=\"\"\n"
            ),
            "{s}"
        );
        let origin = Origin::new("-".into(), String::new());
        assert!(line(Format::Text, &r, &origin, 1).contains(" 1 \\x2d \\x2d "));
    }

    #[test]
    fn an_empty_message_is_left_out() {
        // Issue 8.10: `"message":""` in JSON, and a double space in text.
        let r = Record {
            logger: "app".into(),
            host: "h".into(),
            ..Record::default()
        };
        let s = line(Format::Text, &r, &Origin::default(), 1);
        assert!(s.ends_with(" 1 - app | host=h\n"), "{s}");
        let r = Record {
            logger: "app".into(),
            ..Record::default()
        };
        let s = line(Format::Text, &r, &Origin::default(), 1);
        assert!(s.ends_with(" 1 - app\n"), "{s}");
        let s = line(Format::Json, &r, &Origin::default(), 1);
        assert!(!s.contains("message"), "{s}");
        assert!(s.ends_with(",\"logger\":\"app\"}\n"), "{s}");
    }

    #[test]
    fn typed_values_keep_their_type_in_json_and_their_json_spelling_in_text() {
        let r = Record {
            body: Body::Message("m".into()),
            fields: vec![
                ("s".into(), "3.5".into()),
                ("n".into(), Value::Float(3.5)),
                ("whole".into(), Value::Float(2.0)),
                ("i".into(), Value::Int(-7)),
                ("ok".into(), Value::Bool(true)),
                ("none".into(), Value::Null),
                ("nan".into(), Value::Float(f64::NAN)),
                (
                    "ctx".into(),
                    Value::Json(crate::record::JsonText::parse("{\"a\": [1, \"x y\"]}").unwrap()),
                ),
            ],
            ..Record::default()
        };
        let s = line(Format::Json, &r, &Origin::default(), 1);
        assert!(
            s.ends_with(concat!(r#","message":"m","fields":{"s":"3.5","n":3.5,"whole":2.0,"i":-7,"ok":true,"none":null,"nan":null,"ctx":{"a":[1,"x y"]}}}"#, "\n")),
            "{s}"
        );
        let s = line(Format::Text, &r, &Origin::default(), 1);
        assert!(
            s.ends_with(concat!(r#" m | s=3.5 n=3.5 whole=2.0 i=-7 ok=true none=null nan=null ctx="{\"a\":[1,\"x y\"]}""#, "\n")),
            "{s}"
        );
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
        let reference = |s: &str, place: Place| {
            let mut out = Vec::new();
            for &b in s.as_bytes() {
                let special = b < 0x20
                    || b == 0x7f
                    || b == b'\\'
                    || b == b'|'
                    || (place == QUOTED && b == b'"')
                    || (matches!(place, COLUMN | KEY) && b == b' ')
                    || (place == KEY && b == b'=');
                match b {
                    b'\n' if special => out.extend_from_slice(b"\\n"),
                    b'\r' if special => out.extend_from_slice(b"\\r"),
                    b'\t' if special => out.extend_from_slice(b"\\t"),
                    b'\\' | b'|' | b'"' if special => out.extend_from_slice(&[b'\\', b]),
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
        inputs.push("héllo wörld | ünïcode\u{7f}\u{85} k=\"v\"".into());
        for s in &inputs {
            for place in [TEXT, QUOTED, COLUMN, KEY] {
                let mut out = Vec::new();
                match place {
                    TEXT => escape::<TEXT>(s, &mut out),
                    QUOTED => escape::<QUOTED>(s, &mut out),
                    COLUMN => escape::<COLUMN>(s, &mut out),
                    _ => escape::<KEY>(s, &mut out),
                }
                assert_eq!(out, reference(s, place), "{s:?} place={place}");
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
