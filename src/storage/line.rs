//! The stored line format: a [`Record`] becomes one line of text or JSON.
//!
//! Lines are formatted by the event loops, in parallel, not by the writer: a line is split into a
//! head and a tail around its sequence number, which only the writer knows. The writer then does
//! nothing per record but copy the head, print the number and copy the tail.
//!
//! Text: `2026-11-22T00:26:13.123456Z INFO 42 billing/pod-7 app.db connection lost | host=web-1 retry=3`
//! JSON: `{"seq":42,"time":"2026-11-22T00:26:13.123456Z","level":"info","app":"billing",...}`
//!
//! Every byte below 0x20, DEL and the backslash is escaped in text lines (`\n`, `\t`, `\x1b`, ...)
//! and JSON strings are escaped by `serde_json`, so no field can ever start a second line.

use crate::config::Format;
use crate::record::{Body, Record};

/// Who sent a record: the connection's hello, if any.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub app: String,
    pub instance: String,
}

/// Formats records, caching the date and time to the second (formatting a calendar date is the
/// slowest part of a line, and consecutive records almost always share their second).
pub struct LineFormatter {
    format: Format,
    cached_second: i64,
    cached_prefix: Vec<u8>,
}

impl LineFormatter {
    pub fn new(format: Format) -> Self {
        LineFormatter {
            format,
            cached_second: i64::MIN,
            cached_prefix: Vec::new(),
        }
    }

    /// Appends the head and the tail of `record`'s line to `out` and returns their lengths.
    /// `now_ns` stamps records that carry no time of their own.
    pub fn format(
        &mut self,
        record: &Record<'_>,
        origin: &Origin,
        now_ns: u64,
        out: &mut Vec<u8>,
    ) -> (usize, usize) {
        let ts = if record.timestamp_ns == 0 {
            now_ns
        } else {
            record.timestamp_ns
        };
        let start = out.len();
        match self.format {
            Format::Text => {
                self.write_time(ts, out);
                out.push(b' ');
                out.extend_from_slice(record.level.as_str().as_bytes());
                out.push(b' ');
                let head = out.len() - start;
                write_text(record, origin, out);
                (head, out.len() - start - head)
            }
            Format::Json => {
                out.extend_from_slice(b"{\"seq\":");
                let head = out.len() - start;
                out.extend_from_slice(b",\"time\":\"");
                self.write_time(ts, out);
                out.extend_from_slice(b"\",\"level\":\"");
                out.extend_from_slice(record.level.as_lower_str().as_bytes());
                out.push(b'"');
                write_json(record, origin, out);
                (head, out.len() - start - head)
            }
        }
    }

    /// RFC 3339 UTC with microseconds: `2026-11-22T00:26:13.123456Z`.
    fn write_time(&mut self, ts_ns: u64, out: &mut Vec<u8>) {
        let second = (ts_ns / 1_000_000_000) as i64;
        if second != self.cached_second {
            self.cached_second = second;
            self.cached_prefix.clear();
            // u64 nanoseconds end in the year 2554, well inside what `time` formats.
            let t = time::OffsetDateTime::from_unix_timestamp(second)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let fmt =
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            t.format_into(&mut self.cached_prefix, &fmt)
                .expect("formatting a valid date into a Vec cannot fail");
        }
        out.extend_from_slice(&self.cached_prefix);
        let micros = (ts_ns % 1_000_000_000) / 1000;
        out.push(b'.');
        let mut digits = itoa::Buffer::new();
        let s = digits.format(micros);
        out.extend(std::iter::repeat_n(b'0', 6 - s.len()));
        out.extend_from_slice(s.as_bytes());
        out.push(b'Z');
    }
}

/// Bytes that must be escaped in a text line: control bytes, DEL and `\`.
const ESCAPE_TEXT: [bool; 256] = escape_table(false);
/// In a column (app, instance, logger, field keys) also space and `|`, so columns split on spaces.
const ESCAPE_COLUMN: [bool; 256] = escape_table(true);

const fn escape_table(column: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20
            || b == 0x7f
            || b == b'\\' as usize
            || (column && (b == b' ' as usize || b == b'|' as usize));
        b += 1;
    }
    table
}

/// Text escaping, in one pass: runs of plain bytes are copied whole, and each special byte
/// becomes `\\n`, `\\r`, `\\t`, `\\\\` or `\\xHH`. This is the hottest loop of the server (every
/// byte of every message goes through it), so it first skips eight bytes at a time while none of
/// them can be special (see [`may_need_escape`]), then decides byte by byte with a table.
fn escape_into(s: &str, column: bool, out: &mut Vec<u8>) {
    let table = if column { &ESCAPE_COLUMN } else { &ESCAPE_TEXT };
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            if !may_need_escape(word, column) {
                i += 8;
                continue;
            }
        }
        let end = (i + 8).min(bytes.len());
        for (j, &b) in bytes[i..end].iter().enumerate() {
            if !table[b as usize] {
                continue;
            }
            let at = i + j;
            out.extend_from_slice(&bytes[start..at]);
            start = at + 1;
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
        i = end;
    }
    out.extend_from_slice(&bytes[start..]);
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `word` that is zero, and maybe in some bytes above a zero byte
/// (never in a word with no zero byte): the classic "has zero byte" test, as a mask.
const fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGHS
}

/// True if some byte of `word` might need escaping: below 0x20, DEL, `\\` (and in a column, space
/// or `|`). May say true for a clean word (the caller then checks its bytes); never says false
/// for a word that needs escaping. Bytes of 0x80 and above are UTF-8 and never special. The masks
/// are combined with `|`, not `||`, so the test is a dozen instructions and no branch.
const fn may_need_escape(word: u64, column: bool) -> bool {
    // (b - 0x20) borrows into bit 7 exactly when b < 0x20, for b < 0x80 (`& !word` drops the rest).
    let low = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let mut mask =
        low | zero_bytes(word ^ (ONES * 0x7f)) | zero_bytes(word ^ (ONES * b'\\' as u64));
    if column {
        mask |= zero_bytes(word ^ (ONES * b' ' as u64)) | zero_bytes(word ^ (ONES * b'|' as u64));
    }
    mask != 0
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
    column(&origin.app, out);
    if !origin.instance.is_empty() {
        out.push(b'/');
        escape_into(&origin.instance, true, out);
    }
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
    for (k, v) in [("app", &origin.app), ("instance", &origin.instance)] {
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
        let (head, tail) = f.format(r, origin, 0, &mut out);
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
        let origin = Origin {
            app: "billing".into(),
            instance: "pod-7".into(),
        };
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
        // Every byte value at every position of a 17-byte string (across two words and a tail).
        let mut inputs: Vec<String> = Vec::new();
        for b in 0u8..0x80 {
            for at in 0..17 {
                let mut s = vec![b'a'; 17];
                s[at] = b;
                inputs.push(String::from_utf8(s).unwrap());
            }
        }
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
