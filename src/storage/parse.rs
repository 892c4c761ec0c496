//! Reading a stored line back into a [`Record`]: the inverse of [`super::line`], for searching
//! stored files. Pure: a `&str` in, a [`ParsedLine`] (borrowing from the line wherever nothing
//! was escaped) or a [`ParseError`] out. No I/O.
//!
//! The text format is unambiguous because the formatter escapes whatever would end a part
//! early: `|` everywhere (the one plain `|` opens the fields), spaces in columns and keys, `=` in
//! keys, `"` in quoted values, `/` in the app, a lone `-` (the "empty" column), a `{` opening a
//! message (a plain one opens a JSON body), and the first letter of a field named like a
//! metadata key (`\x68ost=`). Escapes are `\n`, `\r`, `\t`, `\\`, `\|`, `\"` and `\xHH` (an
//! ASCII byte).
//!
//! What a line does not keep: nanoseconds (the time has microseconds), a time of 0 (it was
//! stamped on arrival), a JSON body's key order and spacing (it is stored compacted), and, in
//! the text format, the type of a field value: `n=3` reads back as the string `"3"`. The JSON
//! format keeps value types ([`parse_json_line`]).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use super::line::META_KEYS;
use crate::record::{Body, Level, Record, Value};

/// One stored line: its sequence number, the connection's app and instance, and the record.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedLine<'a> {
    seq: u64,
    app: Cow<'a, str>,
    instance: Cow<'a, str>,
    record: Record<'a>,
}

impl<'a> ParsedLine<'a> {
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn record(&self) -> &Record<'a> {
        &self.record
    }

    pub fn into_record(self) -> Record<'a> {
        self.record
    }
}

/// Why a line is not one the formatter writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The line ends before this column.
    Missing(&'static str),
    Time,
    Level,
    Seq,
    /// A `\` not followed by `n`, `r`, `t`, `\`, `|`, `"`, or `x` and the hex of an ASCII byte.
    Escape,
    /// A plain `|` that does not open the fields (no space before it).
    Bar,
    /// A field with no `=`, a quoted value with no closing quote or with text right after it.
    Field,
    /// A metadata field given twice, or with a value it cannot have (`line=twelve`).
    Meta(&'static str),
    /// A JSON line that is not an object of the stored shape.
    Json(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Missing(column) => write!(f, "the line ends before its {column}"),
            ParseError::Time => f.write_str("the time is not RFC 3339 UTC with microseconds"),
            ParseError::Level => f.write_str("unknown level"),
            ParseError::Seq => f.write_str("the sequence number is not a number"),
            ParseError::Escape => f.write_str("unknown escape after a backslash"),
            ParseError::Bar => f.write_str("a plain `|` inside the message"),
            ParseError::Field => f.write_str("a field is not `key=value` or `key=\"value\"`"),
            ParseError::Meta(key) => write!(f, "`{key}` is given twice or has a wrong value"),
            ParseError::Json(why) => write!(f, "not a stored JSON line: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

const LEVELS: [Level; 9] = Level::ALL;

/// Parses one text line (its newline optional).
///
/// # Errors
/// [`ParseError`] when the line is not one [`super::line::LineFormatter`] writes.
pub fn parse_text_line(line: &str) -> Result<ParsedLine<'_>, ParseError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let mut rest = line;
    // Columns are never empty (`-` stands for an empty one).
    let mut column = |name| {
        let (column, after) = rest.split_once(' ').unwrap_or((rest, ""));
        if column.is_empty() {
            return Err(ParseError::Missing(name));
        }
        rest = after;
        Ok(column)
    };
    let time = column("time")?;
    let level = column("level")?;
    let seq = column("sequence number")?;
    let origin = column("app")?;
    let logger = column("logger")?;
    // The formatter writes no space after the logger unless a message or fields follow.
    if rest.is_empty() && line.ends_with(' ') {
        return Err(ParseError::Missing("message"));
    }
    let after_logger = rest;

    let mut record = Record {
        timestamp_ns: parse_time(time)?,
        level: LEVELS
            .into_iter()
            .find(|l| l.as_str() == level)
            .ok_or(ParseError::Level)?,
        logger: dash_column(logger)?,
        ..Record::default()
    };
    let seq = match seq.bytes().all(|b| b.is_ascii_digit()) {
        true => seq.parse().map_err(|_| ParseError::Seq)?,
        false => return Err(ParseError::Seq),
    };
    let (app, instance) = match origin.split_once('/') {
        Some((app, instance)) => (dash_column(app)?, unescape(instance)?),
        None => (dash_column(origin)?, Cow::Borrowed("")),
    };

    // The message runs to the first plain `|`, which the formatter writes as ` |` only.
    let (message, fields) = match plain(after_logger, b'|') {
        Some(0) => ("", &after_logger[1..]),
        Some(bar) => match after_logger[..bar].strip_suffix(' ') {
            Some(message) => (message, &after_logger[bar + 1..]),
            None => return Err(ParseError::Bar),
        },
        None => (after_logger, ""),
    };
    record.body = match message.strip_prefix('{') {
        Some(_) => Body::Json(unescape(message)?),
        None => Body::Message(unescape(message)?),
    };
    parse_fields(fields, &mut record)?;
    Ok(ParsedLine {
        seq,
        app,
        instance,
        record,
    })
}

/// `2026-11-22T00:26:13.123456Z` as Unix nanoseconds.
fn parse_time(text: &str) -> Result<u64, ParseError> {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    let t = time::PrimitiveDateTime::parse(text, &format).map_err(|_| ParseError::Time)?;
    u64::try_from(t.assume_utc().unix_timestamp_nanos()).map_err(|_| ParseError::Time)
}

/// A column that is `-` when empty.
fn dash_column(raw: &str) -> Result<Cow<'_, str>, ParseError> {
    match raw {
        "-" => Ok(Cow::Borrowed("")),
        raw => unescape(raw),
    }
}

/// Undoes the formatter's escapes; borrows when there are none.
fn unescape(raw: &str) -> Result<Cow<'_, str>, ParseError> {
    if !raw.contains('\\') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next().ok_or(ParseError::Escape)? {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            c @ ('\\' | '|' | '"') => c,
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(b) if hex.len() == 2 && b.is_ascii() => char::from(b),
                    _ => return Err(ParseError::Escape),
                }
            }
            _ => return Err(ParseError::Escape),
        });
    }
    Ok(Cow::Owned(out))
}

/// Reads ` key=value` pairs into `record`: metadata keys into their place, the rest as fields.
fn parse_fields<'a>(mut rest: &'a str, record: &mut Record<'a>) -> Result<(), ParseError> {
    let mut seen = [false; META_KEYS.len()];
    while !rest.is_empty() {
        rest = rest.strip_prefix(' ').ok_or(ParseError::Field)?;
        // Keys have their `=` escaped, and no escape contains one.
        let (key, after) = rest.split_once('=').ok_or(ParseError::Field)?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = plain(quoted, b'"').ok_or(ParseError::Field)?;
                let after = &quoted[end + 1..];
                if !(after.is_empty() || after.starts_with(' ')) {
                    return Err(ParseError::Field);
                }
                (&quoted[..end], after)
            }
            None => after.split_at(after.find(' ').unwrap_or(after.len())),
        };
        rest = after;
        let value = unescape(value)?;
        // A key is metadata only when written plain: a field of the same name has its first
        // letter escaped.
        match META_KEYS.iter().position(|&k| k == key) {
            Some(i) => {
                let name = META_KEYS[i];
                if std::mem::replace(&mut seen[i], true) {
                    return Err(ParseError::Meta(name));
                }
                set_meta(record, name, value)?;
            }
            None => record.fields.push((unescape(key)?, Value::Str(value))),
        }
    }
    Ok(())
}

/// Where the first `byte` in `text` that is not part of an escape is (an ASCII byte, so never
/// inside a UTF-8 sequence).
fn plain(text: &str, byte: u8) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b if b == byte => return Some(i),
            _ => {}
        }
    }
    None
}

fn set_meta<'a>(
    record: &mut Record<'a>,
    key: &'static str,
    value: Cow<'a, str>,
) -> Result<(), ParseError> {
    let bad = || ParseError::Meta(key);
    match key {
        "host" => record.host = value,
        "service" => record.service = value,
        "module" => record.module = value,
        "file" => record.file = value,
        "line" => record.line = value.parse().map_err(|_| bad())?,
        "function" => record.function = value,
        "pid" => record.process_id = value.parse().map_err(|_| bad())?,
        "process" => record.process_name = value,
        "tid" => record.thread_id = value.parse().map_err(|_| bad())?,
        "thread" => record.thread_name = value,
        "stack_trace" => record.stack_trace = value,
        "parse_error" if value == "true" => record.parse_error = true,
        "truncated" if value == "true" => record.truncated = true,
        _ => return Err(bad()),
    }
    Ok(())
}

/// Parses one JSON line (its newline optional). Field values keep their JSON type; a field
/// that was a number too big for 64 bits reads back as a float.
///
/// # Errors
/// [`ParseError::Json`] when the line is not a JSON object with the stored keys and types.
pub fn parse_json_line(line: &str) -> Result<ParsedLine<'static>, ParseError> {
    let StoredJson(entries) =
        serde_json::from_str(line).map_err(|e| ParseError::Json(e.to_string()))?;
    let bad = |key: &str| ParseError::Json(format!("`{key}` has the wrong type"));
    let mut parsed = ParsedLine {
        seq: 0,
        app: Cow::Borrowed(""),
        instance: Cow::Borrowed(""),
        record: Record::default(),
    };
    let r = &mut parsed.record;
    for entry in entries {
        let (key, value) = match entry {
            Entry::Fields(fields) => {
                r.fields = fields
                    .into_iter()
                    .map(|(k, v)| (Cow::Owned(k), Value::from_json(v)))
                    .collect();
                continue;
            }
            Entry::Other(key, value) => (key, value),
        };
        let text = || match &value {
            serde_json::Value::String(s) => Ok(Cow::Owned(s.clone())),
            _ => Err(bad(&key)),
        };
        let number = || value.as_u64().ok_or_else(|| bad(&key));
        match key.as_str() {
            "seq" => parsed.seq = number()?,
            "time" => r.timestamp_ns = parse_time(&text()?)?,
            "level" => {
                r.level = LEVELS
                    .into_iter()
                    .find(|l| value.as_str() == Some(l.as_lower_str()))
                    .ok_or(ParseError::Level)?
            }
            "app" => parsed.app = text()?,
            "instance" => parsed.instance = text()?,
            "logger" => r.logger = text()?,
            "message" => r.body = Body::Message(text()?),
            "json" if value.is_object() => r.body = Body::Json(Cow::Owned(value.to_string())),
            "host" => r.host = text()?,
            "service" => r.service = text()?,
            "module" => r.module = text()?,
            "file" => r.file = text()?,
            "line" => r.line = u32::try_from(number()?).map_err(|_| bad(&key))?,
            "function" => r.function = text()?,
            "pid" => r.process_id = u32::try_from(number()?).map_err(|_| bad(&key))?,
            "process" => r.process_name = text()?,
            "tid" => r.thread_id = number()?,
            "thread" => r.thread_name = text()?,
            "stack_trace" => r.stack_trace = text()?,
            "parse_error" => r.parse_error = value.as_bool().ok_or_else(|| bad(&key))?,
            "truncated" => r.truncated = value.as_bool().ok_or_else(|| bad(&key))?,
            _ => return Err(ParseError::Json(format!("unknown key `{key}`"))),
        }
    }
    Ok(parsed)
}

/// A stored JSON line's entries in order, with `fields` read in order too (`serde_json`'s map
/// would sort its keys).
struct StoredJson(Vec<Entry>);

enum Entry {
    Fields(Vec<(String, serde_json::Value)>),
    Other(String, serde_json::Value),
}

impl<'de> Deserialize<'de> for StoredJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Line;
        impl<'de> Visitor<'de> for Line {
            type Value = StoredJson;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StoredJson, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    entries.push(if key == "fields" {
                        Entry::Fields(map.next_value::<crate::protocol::jsonl::Object>()?.0)
                    } else {
                        Entry::Other(key, map.next_value()?)
                    });
                }
                Ok(StoredJson(entries))
            }
        }
        deserializer.deserialize_map(Line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;
    use crate::record::JsonText;
    use crate::storage::line::{LineFormatter, Origin};

    /// xorshift64*: a seeded generator, so a failure names the seed that reproduces it.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn chance(&mut self, one_in: u64) -> bool {
            self.below(one_in) == 0
        }
    }

    /// Pieces that have broken, or could break, a line format.
    const HOSTILE: &[&str] = &[
        "|",
        " | ",
        " |",
        "| ",
        "=",
        "\"",
        "\\",
        "-",
        " ",
        "  ",
        "{",
        "}",
        "/",
        "\n",
        "\r",
        "\t",
        "\0",
        "\x1b",
        "\x7f",
        "\\x41",
        "\\|",
        "\\\"",
        "\\n",
        "host=",
        " | host=forged",
        "\\x68ost=",
        "k=\"v\"",
        "é",
        "😀",
        "\u{85}",
        "\u{2028}",
        "\u{feff}",
        "a",
        "abc",
        "true",
        "null",
        "3.5",
        "{\"a\":1}",
        "line",
        "pid",
        "parse_error",
        "stack_trace",
    ];

    fn hostile(rng: &mut Rng) -> String {
        let pieces = match rng.below(8) {
            0 => 0,
            1 => 1,
            2 => 100 + rng.below(300),
            _ => rng.below(12),
        };
        let mut s = String::new();
        for _ in 0..pieces {
            match rng.below(4) {
                0 => s.push(char::from(rng.below(0x80) as u8)),
                1 => s.push(char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}')),
                _ => s.push_str(HOSTILE[rng.below(HOSTILE.len() as u64) as usize]),
            }
        }
        s
    }

    fn maybe(rng: &mut Rng) -> Cow<'static, str> {
        match rng.chance(2) {
            true => Cow::Borrowed(""),
            false => Cow::Owned(hostile(rng)),
        }
    }

    fn json(rng: &mut Rng, depth: u32) -> serde_json::Value {
        use serde_json::Value as J;
        match rng.below(if depth > 2 { 5 } else { 7 }) {
            0 => J::Null,
            1 => J::Bool(rng.chance(2)),
            2 => J::from(rng.next() as i64),
            3 => J::from(f64::from_bits(rng.next())),
            4 => J::String(hostile(rng)),
            5 => J::Array((0..rng.below(4)).map(|_| json(rng, depth + 1)).collect()),
            _ => J::Object(
                (0..rng.below(4))
                    .map(|_| (hostile(rng), json(rng, depth + 1)))
                    .collect(),
            ),
        }
    }

    fn value(rng: &mut Rng) -> Value<'static> {
        match rng.below(8) {
            0 => Value::Int(rng.next() as i64),
            1 => Value::Float(finite(rng)),
            2 => Value::Bool(rng.chance(2)),
            3 => Value::Null,
            4 => Value::from_json(json(rng, 0)),
            _ => Value::Str(hostile(rng).into()),
        }
    }

    fn finite(rng: &mut Rng) -> f64 {
        let f = f64::from_bits(rng.next());
        if f.is_finite() { f } else { 0.5 }
    }

    fn record(rng: &mut Rng) -> Record<'static> {
        let object = || serde_json::Value::Object(serde_json::Map::new());
        Record {
            // Stored with microseconds, and 0 means "stamp on arrival".
            timestamp_ns: (1 + rng.below(u64::MAX / 1000)) * 1000,
            level: LEVELS[rng.below(LEVELS.len() as u64) as usize],
            body: match rng.below(4) {
                0 => {
                    let body = match json(rng, 0) {
                        j @ serde_json::Value::Object(_) => j,
                        _ => object(),
                    };
                    Body::Json(body.to_string().into())
                }
                _ => Body::Message(maybe(rng)),
            },
            logger: maybe(rng),
            host: maybe(rng),
            service: maybe(rng),
            module: maybe(rng),
            file: maybe(rng),
            line: if rng.chance(2) { 0 } else { rng.next() as u32 },
            function: maybe(rng),
            process_id: if rng.chance(2) { 0 } else { rng.next() as u32 },
            process_name: maybe(rng),
            thread_id: if rng.chance(2) { 0 } else { rng.next() },
            thread_name: maybe(rng),
            stack_trace: maybe(rng),
            fields: (0..rng.below(5))
                .map(|_| (Cow::Owned(hostile(rng)), value(rng)))
                .collect(),
            parse_error: rng.chance(4),
            truncated: rng.chance(4),
        }
    }

    fn format(format: Format, r: &Record<'_>, origin: &Origin, seq: u64) -> String {
        let mut out = Vec::new();
        let (head, _) = LineFormatter::new(format).format(r, origin, 0, 0, &mut out);
        let mut line = String::from_utf8(out[..head].to_vec()).unwrap();
        line.push_str(&seq.to_string());
        line.push_str(std::str::from_utf8(&out[head..]).unwrap());
        line
    }

    /// Rounds per run; `LOGMILL_ROUNDTRIP_SEED` picks another sequence.
    const ROUNDS: u64 = 5_000;

    fn seed() -> u64 {
        std::env::var("LOGMILL_ROUNDTRIP_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_1065_a11e_d0c5)
    }

    #[test]
    fn any_record_reads_back_from_a_text_line() {
        let seed = seed();
        let mut rng = Rng(seed | 1);
        for round in 0..ROUNDS {
            let r = record(&mut rng);
            let origin = Origin::new(hostile(&mut rng), hostile(&mut rng));
            let seq = rng.next();
            let line = format(Format::Text, &r, &origin, seq);
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            let parsed = parse_text_line(&line)
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}\n{line}"));
            // The text format keeps a value's text, not its type.
            let expected = Record {
                fields: r
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::Str(v.to_string().into())))
                    .collect(),
                ..r.clone()
            };
            let context = || format!("seed {seed} round {round}\n{line}");
            assert_eq!(parsed.seq(), seq, "{}", context());
            assert_eq!(parsed.app(), origin.app(), "{}", context());
            assert_eq!(parsed.instance(), origin.instance(), "{}", context());
            assert_eq!(parsed.record(), &expected, "{}", context());
        }
    }

    #[test]
    fn any_record_reads_back_from_a_json_line() {
        let seed = seed();
        let mut rng = Rng(seed | 1);
        for round in 0..ROUNDS {
            let r = record(&mut rng);
            let origin = Origin::new(hostile(&mut rng), hostile(&mut rng));
            let seq = rng.next();
            let line = format(Format::Json, &r, &origin, seq);
            let parsed = parse_json_line(&line)
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}\n{line}"));
            let context = || format!("seed {seed} round {round}\n{line}");
            assert_eq!(parsed.seq(), seq, "{}", context());
            assert_eq!(parsed.app(), origin.app(), "{}", context());
            assert_eq!(parsed.instance(), origin.instance(), "{}", context());
            assert_eq!(parsed.record(), &r, "{}", context());
        }
    }

    #[test]
    fn a_forged_host_reads_back_as_message_text() {
        let line = "2025-11-22T00:26:13.123456Z INFO 7 app - two\\nlines \\| host=forged | module=m \\x68ost=x";
        let parsed = parse_text_line(line).unwrap();
        let r = parsed.record();
        assert_eq!(r.body, Body::Message("two\nlines | host=forged".into()));
        assert_eq!(r.host, "");
        assert_eq!(r.module, "m");
        assert_eq!(r.fields, vec![("host".into(), "x".into())]);
        assert_eq!(r.timestamp_ns, 1_763_771_173_123_456_000);
        assert_eq!((parsed.seq(), parsed.app()), (7, "app"));
    }

    #[test]
    fn lines_the_formatter_does_not_write_are_refused() {
        let head = "2025-11-22T00:26:13.123456Z INFO 7 app";
        for (line, error) in [
            ("2025-11-22 INFO 7 app -", ParseError::Time),
            (
                "2025-11-22T00:26:13.123456Z LOUD 7 app -",
                ParseError::Level,
            ),
            ("2025-11-22T00:26:13.123456Z INFO +7 app -", ParseError::Seq),
            (
                "2025-11-22T00:26:13.123456Z INFO 7",
                ParseError::Missing("app"),
            ),
            (head, ParseError::Missing("logger")),
            (&format!("{head} - "), ParseError::Missing("message")),
            (&format!("{head} - a|b"), ParseError::Bar),
            (&format!("{head} - bad \\q"), ParseError::Escape),
            (&format!("{head} - bad \\xff"), ParseError::Escape),
            (&format!("{head} - m | k"), ParseError::Field),
            (&format!("{head} - m | k=\"open"), ParseError::Field),
            (&format!("{head} - m | k=\"v\"x"), ParseError::Field),
            (
                &format!("{head} - m | line=twelve"),
                ParseError::Meta("line"),
            ),
            (
                &format!("{head} - m | host=a host=b"),
                ParseError::Meta("host"),
            ),
            (
                &format!("{head} - m | truncated=yes"),
                ParseError::Meta("truncated"),
            ),
        ] {
            assert_eq!(parse_text_line(line), Err(error), "{line}");
        }
    }

    #[test]
    fn json_text_is_checked() {
        assert!(JsonText::parse("{\"a\":").is_none());
        assert_eq!(JsonText::parse("[1, 2]").unwrap().as_str(), "[1,2]");
        assert!(JsonText::integer("007".into()).is_none());
        assert!(JsonText::integer("-".into()).is_none());
        assert!(JsonText::integer("-12".into()).is_some());
    }
}
