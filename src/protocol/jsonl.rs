//! JSON lines: one JSON object per line, as structured loggers write them (python-json-logger,
//! structlog, logrus, zap, Serilog's compact format, ...). Framing is [`super::lines`]; this file
//! turns one line into a [`Record`].
//!
//! Well-known keys fill the record (the table is `slot` below); every other key becomes a
//! field, its value typed as in the line (a string, an integer, a float, a boolean, null, or an
//! object or array kept as compact JSON text: [`crate::record::Value`]). A known key whose
//! value does not fit (a `line` that is not a number, a second `message`) also becomes a field,
//! so nothing is dropped. Fields keep the order of the line.
//!
//! A line that is not a JSON object is kept as plain text, flagged `parse_error`. Nesting is
//! bounded by `serde_json`'s recursion limit (128), which turns a deeper line into an error
//! rather than a stack overflow.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::record::{Body, Level, Record};

/// Parses one line (without its newline) into a record. Never fails: what is not a JSON object
/// comes back as its own text with `parse_error` set. An empty line comes back the same way,
/// so a caller that wants to skip blank lines checks for them first.
pub fn parse_line(line: &[u8]) -> Record<'static> {
    // A UTF-8 BOM opens the first line of some files; JSON itself does not allow it.
    let json = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
    match serde_json::from_slice::<Object>(json) {
        Ok(Object(entries)) => to_record(entries),
        Err(_) => Record {
            body: Body::Message(Cow::Owned(crate::record::lossy_utf8(line).into_owned())),
            parse_error: true,
            ..Record::default()
        },
    }
}

/// Parses a message that holds one JSON object or a JSON array of them (a WebSocket text
/// message) and hands `each` their records in order, each object mapped as a line is. Never
/// fails, never drops: text that is neither comes back as one record of its text, an element of
/// the array that is not an object as one record of its compact JSON, both flagged
/// `parse_error`. An empty array gives no record. The whole array is parsed before the first
/// record is handed over, so a broken array is one `parse_error` record, not half of its
/// records.
pub fn parse_message(text: &[u8], mut each: impl FnMut(Record<'static>)) {
    let json = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    if json.trim_ascii_start().starts_with(b"[")
        && let Ok(Array(elements)) = serde_json::from_slice::<Array>(json)
    {
        for element in elements {
            each(match element {
                Element::Object(entries) => to_record(entries),
                Element::Other(value) => Record {
                    body: Body::Message(Cow::Owned(value.to_string())),
                    parse_error: true,
                    ..Record::default()
                },
            });
        }
        return;
    }
    each(parse_line(text));
}

/// The top-level object, its entries in the order of the line (`serde_json::Map` would sort
/// them, and a map type that keeps order would change every `Map` in the program).
pub(crate) struct Object(pub(crate) Vec<(String, Value)>);

/// The entries of a JSON object, in order. No `size_hint` preallocation: the count would come
/// from the input.
fn entries<'de, A: MapAccess<'de>>(mut map: A) -> Result<Vec<(String, Value)>, A::Error> {
    let mut entries = Vec::new();
    while let Some(entry) = map.next_entry()? {
        entries.push(entry);
    }
    Ok(entries)
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Object;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object, A::Error> {
                entries(map).map(Object)
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// A top-level array ([`parse_message`]).
struct Array(Vec<Element>);

/// An element of a top-level array: an object (its entries in order, like [`Object`]) or any
/// other value.
enum Element {
    Object(Vec<(String, Value)>),
    Other(Value),
}

impl<'de> Deserialize<'de> for Array {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Elements;
        impl<'de> Visitor<'de> for Elements {
            type Value = Array;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Array, A::Error> {
                let mut elements = Vec::new();
                while let Some(element) = seq.next_element()? {
                    elements.push(element);
                }
                Ok(Array(elements))
            }
        }
        deserializer.deserialize_seq(Elements)
    }
}

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Objects keep their order; every other value is what `serde_json` makes of it.
        struct AnyValue;
        impl<'de> Visitor<'de> for AnyValue {
            type Value = Element;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Element, A::Error> {
                entries(map).map(Element::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Element, A::Error> {
                let mut values = Vec::new();
                while let Some(value) = seq.next_element()? {
                    values.push(value);
                }
                Ok(Element::Other(Value::Array(values)))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Element, E> {
                Ok(Element::Other(Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Element, E> {
                Ok(Element::Other(Value::from(n)))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Element, E> {
                Ok(Element::Other(Value::from(n)))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Element, E> {
                Ok(Element::Other(Value::from(n)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Element, E> {
                Ok(Element::Other(Value::from(s)))
            }
            fn visit_string<E>(self, s: String) -> Result<Element, E> {
                Ok(Element::Other(Value::String(s)))
            }
            fn visit_unit<E>(self) -> Result<Element, E> {
                Ok(Element::Other(Value::Null))
            }
        }
        deserializer.deserialize_any(AnyValue)
    }
}

/// The record fields a key can fill.
#[derive(Clone, Copy)]
enum Slot {
    Level,
    Message,
    Logger,
    Time,
    Host,
    Service,
    Module,
    File,
    Line,
    Function,
    Process,
    ProcessName,
    Thread,
    ThreadName,
    Stack,
}

/// The well-known keys, with the names the common loggers use for them (Python's `LogRecord`
/// attribute names among them).
fn slot(key: &str) -> Option<Slot> {
    Some(match key {
        "level" | "severity" | "levelname" => Slot::Level,
        "message" | "msg" => Slot::Message,
        "logger" | "name" => Slot::Logger,
        "time" | "timestamp" | "ts" | "@timestamp" => Slot::Time,
        "host" | "hostname" => Slot::Host,
        "service" => Slot::Service,
        "module" => Slot::Module,
        "file" | "filename" | "pathname" => Slot::File,
        "line" | "lineno" => Slot::Line,
        "function" | "funcName" => Slot::Function,
        "pid" | "process" => Slot::Process,
        "processName" => Slot::ProcessName,
        "thread" => Slot::Thread,
        "threadName" => Slot::ThreadName,
        "stack" | "stack_trace" | "exc_info" | "stack_info" => Slot::Stack,
        _ => return None,
    })
}

fn to_record(entries: Vec<(String, Value)>) -> Record<'static> {
    let mut record = Record::default();
    let mut level_set = false;
    for (key, value) in entries {
        let rest = match slot(&key) {
            Some(slot) => fill(&mut record, &mut level_set, slot, value),
            None => Some(value),
        };
        if let Some(value) = rest {
            record
                .fields
                .push((key.into(), crate::record::Value::from_json(value)));
        }
    }
    record
}

/// Puts `value` into the record's `slot`; gives it back when it does not fit or the slot is
/// already taken, for the caller to keep as a field.
fn fill(
    record: &mut Record<'static>,
    level_set: &mut bool,
    slot: Slot,
    value: Value,
) -> Option<Value> {
    /// Fills an empty text slot with a string value.
    fn text(target: &mut Cow<'static, str>, value: Value) -> Option<Value> {
        match value {
            Value::String(s) if target.is_empty() => {
                *target = Cow::Owned(s);
                None
            }
            other => Some(other),
        }
    }
    match slot {
        Slot::Level if !*level_set => {
            let level = match &value {
                Value::String(s) => level_from_name(s)
                    .or_else(|| s.trim().parse::<i64>().ok().map(level_from_number)),
                Value::Number(n) => integer(n).map(level_from_number),
                _ => None,
            };
            match level {
                Some(level) => {
                    record.level = level;
                    *level_set = true;
                    None
                }
                None => Some(value),
            }
        }
        Slot::Message => match (&record.body, value) {
            (Body::Message(m), Value::String(s)) if m.is_empty() => {
                record.body = Body::Message(Cow::Owned(s));
                None
            }
            (_, other) => Some(other),
        },
        Slot::Time if record.timestamp_ns == 0 => {
            let ns = match &value {
                Value::String(s) => time_from_text(s),
                Value::Number(n) => time_from_number(n),
                _ => None,
            };
            match ns {
                Some(ns) => {
                    record.timestamp_ns = ns;
                    None
                }
                None => Some(value),
            }
        }
        Slot::Line if record.line == 0 => match number_in::<u32>(&value) {
            Some(line) => {
                record.line = line;
                None
            }
            None => Some(value),
        },
        Slot::Process if record.process_id == 0 => match number_in::<u32>(&value) {
            Some(pid) => {
                record.process_id = pid;
                None
            }
            None => text(&mut record.process_name, value),
        },
        Slot::Thread if record.thread_id == 0 => match number_in::<u64>(&value) {
            Some(tid) => {
                record.thread_id = tid;
                None
            }
            None => text(&mut record.thread_name, value),
        },
        Slot::Stack => match value {
            Value::String(s) if record.stack_trace.is_empty() => {
                record.stack_trace = Cow::Owned(s);
                None
            }
            // Python loggers may send both `exc_info` and `stack_info`: one trace, in order.
            Value::String(s) => {
                let trace = record.stack_trace.to_mut();
                trace.push('\n');
                trace.push_str(&s);
                None
            }
            other => Some(other),
        },
        Slot::Logger => text(&mut record.logger, value),
        Slot::Host => text(&mut record.host, value),
        Slot::Service => text(&mut record.service, value),
        Slot::Module => text(&mut record.module, value),
        Slot::File => text(&mut record.file, value),
        Slot::Function => text(&mut record.function, value),
        Slot::ProcessName => text(&mut record.process_name, value),
        Slot::ThreadName => text(&mut record.thread_name, value),
        // A second level, time, line, pid or thread id.
        Slot::Level | Slot::Time | Slot::Line | Slot::Process | Slot::Thread => Some(value),
    }
}

/// A level by name, case-insensitively, with the spellings of syslog, Python, log4j, Go and
/// .NET loggers (`warn`, `err`, `fatal`, `crit`, `emerg`, `information`, ...).
pub fn level_from_name(name: &str) -> Option<Level> {
    const NAMES: [(&str, Level); 20] = [
        ("trace", Level::Trace),
        ("verbose", Level::Trace),
        ("debug", Level::Debug),
        ("dbg", Level::Debug),
        ("info", Level::Info),
        ("information", Level::Info),
        ("informational", Level::Info),
        ("notice", Level::Notice),
        ("warn", Level::Warning),
        ("warning", Level::Warning),
        ("err", Level::Error),
        ("error", Level::Error),
        ("crit", Level::Critical),
        ("critical", Level::Critical),
        ("fatal", Level::Critical),
        ("alert", Level::Alert),
        ("emerg", Level::Emergency),
        ("emergency", Level::Emergency),
        ("panic", Level::Emergency),
        ("dpanic", Level::Critical),
    ];
    let name = name.trim();
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, level)| level)
}

/// A numeric level: 10 and up is a Python `levelno` (10 debug, 20 info, 30 warning, ...); 0 to 9
/// is a syslog severity (0 emergency .. 7 debug; 8 and 9 read as debug); below 0 is trace.
///
/// Loggers on another scale are misread: bunyan and pino write 30 for info, which reads as
/// warning here. They can write level names instead (pino's `formatters.level`).
pub fn level_from_number(n: i64) -> Level {
    match n {
        10.. => Level::from_python(n),
        0..=9 => Level::from_syslog(n as u8),
        _ => Level::Trace,
    }
}

/// A JSON number that is an integer (`30` or `30.0`).
fn integer(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        let f = n.as_f64()?;
        (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

/// A non-negative integer that fits `T`, given as a number or as a string of digits.
fn number_in<T: TryFrom<u64> + std::str::FromStr>(value: &Value) -> Option<T> {
    match value {
        Value::Number(n) => T::try_from(n.as_u64()?).ok(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

/// RFC 3339 text (`2025-11-22T00:26:13.123Z`), or a Unix time written as a string.
fn time_from_text(text: &str) -> Option<u64> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return u64::try_from(t.unix_timestamp_nanos()).ok();
    }
    let number: serde_json::Number = text.trim().parse().ok()?;
    time_from_number(&number)
}

/// Unix time as seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude:
/// below 1e11 is seconds (up to the year 5138), below 1e14 milliseconds, below 1e17
/// microseconds, and nanoseconds above. Each unit is thus read right from 1973 (1e11 ms) to far
/// past any real clock. Fractions are allowed in any unit; negative times are refused.
fn time_from_number(n: &serde_json::Number) -> Option<u64> {
    if let Some(i) = n.as_u64() {
        return i.checked_mul(unit_ns(i as f64));
    }
    let f = n.as_f64()?;
    if f.is_nan() || f < 0.0 {
        return None; // NaN cannot come from JSON; checked all the same.
    }
    let ns = (f * unit_ns(f) as f64).round();
    // `as` saturates; a time past u64 nanoseconds (2554) is refused rather than clamped.
    (ns < u64::MAX as f64).then_some(ns as u64)
}

/// Nanoseconds per unit for a Unix time of this magnitude (see [`time_from_number`]).
fn unit_ns(magnitude: f64) -> u64 {
    if magnitude < 1e11 {
        1_000_000_000
    } else if magnitude < 1e14 {
        1_000_000
    } else if magnitude < 1e17 {
        1_000
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Value as FieldValue;

    /// A field's value in its text spelling (see `Value`'s `Display`).
    fn field(r: &Record<'_>, key: &str) -> Option<String> {
        r.field(key).map(ToString::to_string)
    }

    #[test]
    fn python_json_logger_line() {
        let line = br#"{"asctime": "2025-11-22 00:26:13,123", "levelname": "WARNING", "name": "app.db", "message": "slow query", "filename": "db.py", "lineno": 42, "funcName": "run", "process": 7, "threadName": "MainThread", "timestamp": "2025-11-22T00:26:13.123456+01:00", "query_ms": 812.5, "tags": ["a", "b"], "user": {"id": 7}}"#;
        let r = parse_line(line);
        assert_eq!(r.level, Level::Warning);
        assert_eq!(r.logger, "app.db");
        assert_eq!(r.body, Body::Message("slow query".into()));
        assert_eq!((r.file.as_ref(), r.line), ("db.py", 42));
        assert_eq!(r.function, "run");
        assert_eq!(r.process_id, 7);
        assert_eq!(r.thread_name, "MainThread");
        assert_eq!(r.timestamp_ns, 1_763_767_573_123_456_000);
        assert!(!r.parse_error);
        let keys: Vec<&str> = r.fields.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["asctime", "query_ms", "tags", "user"], "line order");
        assert_eq!(field(&r, "query_ms").as_deref(), Some("812.5"));
        assert_eq!(field(&r, "tags").as_deref(), Some(r#"["a","b"]"#));
        assert_eq!(field(&r, "user").as_deref(), Some(r#"{"id":7}"#));
    }

    #[test]
    fn values_keep_their_type() {
        // Issue 8.6: these were all flattened to strings.
        let r = parse_line(
            br#"{"n":3.5,"ok":true,"ctx":{"b":1,"a":[2, "x"]},"i":-7,"big":18446744073709551615,"none":null,"s":"3.5"}"#,
        );
        let json = |text| FieldValue::Json(crate::record::JsonText::parse(text).unwrap());
        assert_eq!(
            r.fields,
            vec![
                ("n".into(), FieldValue::Float(3.5)),
                ("ok".into(), FieldValue::Bool(true)),
                ("ctx".into(), json(r#"{"a":[2,"x"],"b":1}"#)),
                ("i".into(), FieldValue::Int(-7)),
                (
                    "big".into(),
                    FieldValue::Json(
                        crate::record::JsonText::integer("18446744073709551615".into()).unwrap()
                    )
                ),
                ("none".into(), FieldValue::Null),
                ("s".into(), "3.5".into()),
            ]
        );
    }

    #[test]
    fn level_names_and_numbers() {
        for (json, level) in [
            (r#""warn""#, Level::Warning),
            (r#""WARNING""#, Level::Warning),
            (r#""Err""#, Level::Error),
            (r#""fatal""#, Level::Critical),
            (r#""CRITICAL""#, Level::Critical),
            (r#""trace""#, Level::Trace),
            (r#""notice""#, Level::Notice),
            (r#""emerg""#, Level::Emergency),
            (r#""alert""#, Level::Alert),
            (r#""Information""#, Level::Info),
            ("10", Level::Debug),
            ("25", Level::Info),
            ("30", Level::Warning),
            ("50.0", Level::Critical),
            (r#""40""#, Level::Error),
            ("3", Level::Error),
            ("0", Level::Emergency),
            ("7", Level::Debug),
            ("9", Level::Debug),
            ("-5", Level::Trace),
        ] {
            let r = parse_line(format!(r#"{{"level":{json}}}"#).as_bytes());
            assert_eq!(r.level, level, "{json}");
            assert!(r.fields.is_empty(), "{json}: {:?}", r.fields);
        }
        let r = parse_line(br#"{"severity":"chatty"}"#);
        assert_eq!(r.level, Level::Info);
        assert_eq!(field(&r, "severity").as_deref(), Some("chatty"));
    }

    #[test]
    fn unix_times_by_magnitude() {
        let s = 1_763_771_173u64;
        for (json, ns) in [
            ("1763771173", s * 1_000_000_000),
            ("1763771173.5", s * 1_000_000_000 + 500_000_000),
            ("1763771173123", s * 1_000_000_000 + 123_000_000),
            ("1763771173123456", s * 1_000_000_000 + 123_456_000),
            ("1763771173123456789", s * 1_000_000_000 + 123_456_789),
            (r#""1763771173""#, s * 1_000_000_000),
            (r#""2025-11-22T00:26:13Z""#, s * 1_000_000_000),
            ("0", 0),
        ] {
            let r = parse_line(format!(r#"{{"ts":{json}}}"#).as_bytes());
            assert_eq!(r.timestamp_ns, ns, "{json}");
        }
        // Not a time: kept as a field, stamped on arrival.
        for json in [
            r#""yesterday""#,
            "-1",
            "1e300",
            "true",
            r#""1969-12-31T23:59:59Z""#,
        ] {
            let r = parse_line(format!(r#"{{"time":{json}}}"#).as_bytes());
            assert_eq!(r.timestamp_ns, 0, "{json}");
            assert_eq!(r.fields.len(), 1, "{json}");
        }
    }

    #[test]
    fn values_that_do_not_fit_become_fields() {
        let r = parse_line(
            br#"{"msg":"first","message":"second","line":"twelve","pid":"worker-3","thread":140245,"level":"info","severity":"error","exc_info":"Traceback","stack_info":"Stack","logger":null}"#,
        );
        assert_eq!(r.body, Body::Message("first".into()));
        assert_eq!(field(&r, "message").as_deref(), Some("second"));
        assert_eq!(field(&r, "line").as_deref(), Some("twelve"));
        assert_eq!(r.process_name, "worker-3");
        assert_eq!(r.thread_id, 140_245);
        assert_eq!(r.level, Level::Info);
        assert_eq!(field(&r, "severity").as_deref(), Some("error"));
        assert_eq!(r.stack_trace, "Traceback\nStack");
        assert_eq!(field(&r, "logger").as_deref(), Some("null"));
    }

    #[test]
    fn escapes_and_unicode() {
        let r = parse_line(br#"{"message":"line1\nline2 \u00e9\ud83d\ude00 \"q\"","k\"ey":"v\\"}"#);
        assert_eq!(r.body, Body::Message("line1\nline2 é😀 \"q\"".into()));
        assert_eq!(field(&r, "k\"ey").as_deref(), Some("v\\"));
    }

    #[test]
    fn garbage_is_kept_as_text() {
        for line in [
            &b""[..],
            b"plain text",
            b"[1,2,3]",
            b"\"just a string\"",
            b"42",
            b"{\"unterminated\": ",
            b"{\"a\":1} trailing",
            b"{\"bad utf8\":\"\xff\"}",
            b"\xff\xfe",
        ] {
            let r = parse_line(line);
            assert!(r.parse_error, "{line:?}");
            assert_eq!(
                r.body,
                Body::Message(String::from_utf8_lossy(line)),
                "{line:?}"
            );
        }
    }

    #[test]
    fn bom_and_trailing_whitespace() {
        let r = parse_line(b"\xef\xbb\xbf {\"msg\":\"hi\"} \t");
        assert!(!r.parse_error);
        assert_eq!(r.body, Body::Message("hi".into()));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        for open in [b'[', b'{'] {
            let mut line = b"{\"a\":".to_vec();
            line.extend(std::iter::repeat_n(open, 1 << 20));
            let r = parse_line(&line);
            assert!(r.parse_error);
        }
        // Within the limit, it is a field.
        let nested = format!(r#"{{"a":{}{}}}"#, "[".repeat(100), "]".repeat(100));
        let r = parse_line(nested.as_bytes());
        assert!(!r.parse_error);
        assert_eq!(field(&r, "a").as_deref().map(str::len), Some(200));
    }

    /// What a WebSocket text message holds: one object, or an array of them.
    #[test]
    fn messages_are_an_object_or_an_array_of_them() {
        let records = |text: &[u8]| {
            let mut out = Vec::new();
            parse_message(text, |r| out.push(r));
            out
        };
        let one = records(br#"{"msg":"one","b":1,"a":2}"#);
        assert_eq!(one.len(), 1);
        assert_eq!(
            one[0],
            parse_line(br#"{"msg":"one","b":1,"a":2}"#),
            "the line mapping"
        );
        let many = records(b" \xef\xbb\xbf[{\"msg\":\"a\",\"z\":1,\"y\":2}, 7, \"s\", null, [1, {\"b\":2,\"a\":1}], {\"level\":\"error\"}] ");
        assert_eq!(many.len(), 1, "a BOM is only skipped at the very start");
        assert!(many[0].parse_error);
        let many = records(b"\xef\xbb\xbf [{\"msg\":\"a\",\"z\":1,\"y\":2}, 7, \"s\", null, [1, {\"b\":2,\"a\":1}], {\"level\":\"error\"}] ");
        let bodies: Vec<String> = many.iter().map(|r| format!("{:?}", r.body)).collect();
        assert_eq!(many.len(), 6, "{bodies:?}");
        assert_eq!(many[0].body, Body::Message("a".into()));
        let keys: Vec<&str> = many[0].fields.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["z", "y"], "objects in an array keep their order");
        for (r, text) in many[1..5]
            .iter()
            .zip(["7", "\"s\"", "null", r#"[1,{"a":1,"b":2}]"#])
        {
            assert!(r.parse_error, "{text}");
            assert_eq!(r.body, Body::Message(text.into()));
        }
        assert_eq!(many[5].level, Level::Error);
        assert!(records(b"[]").is_empty());
        for broken in [
            &b"[{\"msg\":\"a\"}, "[..],
            b"[1,,2]",
            b"nope",
            b"[{\"a\":1}] x",
        ] {
            let out = records(broken);
            assert_eq!(out.len(), 1, "{broken:?}");
            assert!(out[0].parse_error, "{broken:?}");
            assert_eq!(out[0].body, Body::Message(String::from_utf8_lossy(broken)));
        }
        let deep = format!("[{}{}]", "[".repeat(200), "]".repeat(200));
        assert!(
            records(deep.as_bytes())[0].parse_error,
            "nesting is bounded"
        );
    }

    #[test]
    fn many_keys() {
        let line = format!(
            "{{{}}}",
            (0..10_000)
                .map(|i| format!("\"k{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let r = parse_line(line.as_bytes());
        assert_eq!(r.fields.len(), 10_000);
        assert_eq!(r.fields[9_999], ("k9999".into(), FieldValue::Int(9999)));
    }
}
