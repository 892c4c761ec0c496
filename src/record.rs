//! `Record`: the one type every protocol decodes into, and `Level`, the one severity scale.
//!
//! A record borrows its text from the bytes it was decoded from wherever it can (`Cow::Borrowed`),
//! so decoding a native frame copies no strings: the loop formats the record into its batch and
//! drops it. Decoders for formats that must unescape text (pickle, syslog, JSON) hand out owned
//! strings instead. Nothing here does I/O.

use std::borrow::Cow;
use std::fmt;

/// Severity, on the scale of `schema/logmill.capnp` (`Level`), which documents the mapping from
/// Python, syslog and OpenTelemetry levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    #[default]
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl Level {
    /// Every level, lowest first (the order `Ord` compares in).
    pub const ALL: [Level; 9] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Notice,
        Level::Warning,
        Level::Error,
        Level::Critical,
        Level::Alert,
        Level::Emergency,
    ];

    /// The name written to the files: lower-case in JSON, upper-case in text lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Notice => "NOTICE",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
            Level::Alert => "ALERT",
            Level::Emergency => "EMERGENCY",
        }
    }

    /// Lower-case name, as written in JSON lines.
    pub fn as_lower_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Notice => "notice",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Alert => "alert",
            Level::Emergency => "emergency",
        }
    }

    /// Syslog severity (0 = emergency .. 7 = debug). `trace` has no syslog value and maps to debug.
    pub fn from_syslog(severity: u8) -> Level {
        match severity {
            0 => Level::Emergency,
            1 => Level::Alert,
            2 => Level::Critical,
            3 => Level::Error,
            4 => Level::Warning,
            5 => Level::Notice,
            6 => Level::Info,
            _ => Level::Debug,
        }
    }

    /// Python's numeric levels: each level covers its number and those up to the next one
    /// (so a custom level 25 is `info`), as Python's own `getLevelName` ordering implies.
    pub fn from_python(levelno: i64) -> Level {
        match levelno {
            i64::MIN..=9 => Level::Trace,
            10..=19 => Level::Debug,
            20..=29 => Level::Info,
            30..=39 => Level::Warning,
            40..=49 => Level::Error,
            _ => Level::Critical,
        }
    }

    /// OpenTelemetry SeverityNumber (1..=24, four per range); 0 (unspecified) is `info`. Not
    /// called yet: OTLP ingestion (`logs.proto`'s `severity_number`) is its caller to be, and the
    /// schema's level table already names these ranges.
    pub fn from_otel(severity_number: i32) -> Level {
        match severity_number {
            1..=4 => Level::Trace,
            5..=8 => Level::Debug,
            13..=16 => Level::Warning,
            17..=20 => Level::Error,
            21..=24 => Level::Critical,
            _ => Level::Info,
        }
    }
}

/// The body of a record: a plain message or a JSON object held as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    Message(Cow<'a, str>),
    Json(Cow<'a, str>),
}

impl Default for Body<'_> {
    fn default() -> Self {
        Body::Message(Cow::Borrowed(""))
    }
}

/// The value of an extra field, with the type the protocol gave it: JSON lines, pickle `extra=`
/// and gRPC's `typed_fields` have types; syslog and the native protocol send text.
///
/// The JSON format writes each as the JSON value it is; the text format writes its JSON
/// spelling (`3.5`, `true`, `null`, `{"a":1}`), so text lines cannot tell `3` from `"3"`.
#[derive(Clone, Debug)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    /// Written as `null` when it is not finite, as JSON has no NaN or infinity.
    Float(f64),
    Bool(bool),
    Null,
    /// An object, an array or a number too big for `Int` (a Python big int, a u64 past
    /// `i64::MAX`), as compact JSON text.
    Json(JsonText<'a>),
}

impl<'a> Value<'a> {
    /// The value of a JSON document: scalars keep their type, containers become [`JsonText`].
    pub fn from_json(value: serde_json::Value) -> Value<'static> {
        match value {
            serde_json::Value::String(s) => Value::Str(Cow::Owned(s)),
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Value::Int(i),
                (None, Some(f)) if !n.is_u64() => Value::Float(f),
                _ => Value::Json(JsonText(Cow::Owned(n.to_string()))),
            },
            other => Value::Json(JsonText(Cow::Owned(other.to_string()))),
        }
    }

    /// The text of a string value; `None` for the other types.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value's text: a string as it is (borrowed), anything else in its JSON spelling. For
    /// protocols that carry text only (the native one).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Value::Str(s) => Cow::Borrowed(s),
            other => Cow::Owned(other.to_string()),
        }
    }

    /// Copies a borrowed string, for a value that must outlive its input.
    pub fn into_static(self) -> Value<'static> {
        match self {
            Value::Str(s) => Value::Str(own(s)),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Bool(b) => Value::Bool(b),
            Value::Null => Value::Null,
            Value::Json(JsonText(j)) => Value::Json(JsonText(own(j))),
        }
    }
}

/// Values are equal when they are the same data: floats compare bit for bit, so a NaN equals
/// itself and `Record` can be `Eq` (`-0.0` and `0.0` differ, as they print differently).
impl PartialEq for Value<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Null, Value::Null) => true,
            (Value::Json(a), Value::Json(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value<'_> {}

impl<'a> From<Cow<'a, str>> for Value<'a> {
    fn from(s: Cow<'a, str>) -> Self {
        Value::Str(s)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Value<'_> {
    fn from(s: String) -> Self {
        Value::Str(Cow::Owned(s))
    }
}

/// Compact JSON text (no whitespace, no raw control characters, object keys sorted) that is
/// known to parse: the field is private so that the formatter can copy it into a JSON line
/// without checking it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonText<'a>(Cow<'a, str>);

impl JsonText<'_> {
    /// Checks and compacts `text`; `None` if it is not JSON.
    pub fn parse(text: &str) -> Option<JsonText<'static>> {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .map(|v| JsonText(Cow::Owned(v.to_string())))
    }

    /// An integer past 64 bits (a Python big int) as a JSON number; `None` unless `digits` is
    /// an optional `-` and at most [`MAX_JSON_DIGITS`] decimal digits with no leading zero.
    /// Longer ones are left to the caller to store as text: JSON allows any number, but most
    /// readers (serde_json, Python's `json` with `parse_float`, JavaScript) read an integer as
    /// a double and refuse or turn into infinity one past about 1.8e308.
    pub fn integer(digits: String) -> Option<JsonText<'static>> {
        let unsigned = digits.strip_prefix('-').unwrap_or(&digits);
        let digits_only = !unsigned.is_empty()
            && unsigned.len() <= MAX_JSON_DIGITS
            && unsigned.bytes().all(|b| b.is_ascii_digit());
        // JSON allows no leading zero.
        (digits_only && (unsigned == "0" || !unsigned.starts_with('0')))
            .then_some(JsonText(Cow::Owned(digits)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The most digits an integer written as a JSON number has: every such integer is below
/// `f64::MAX` (about 1.8e308, 309 digits), so a reader that parses numbers as doubles reads it.
pub const MAX_JSON_DIGITS: usize = 308;

/// The text format's spelling of a value: a string as it is, anything else as JSON.
impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => f.write_str(&serde_json::Value::from(*x).to_string()),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Null => f.write_str("null"),
            Value::Json(j) => f.write_str(j.as_str()),
        }
    }
}

/// One log record, as decoded from any protocol. Empty strings and zero numbers mean "not given".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record<'a> {
    /// Unix nanoseconds at the source; 0 = stamp on arrival.
    pub timestamp_ns: u64,
    pub level: Level,
    pub body: Body<'a>,
    pub logger: Cow<'a, str>,
    pub host: Cow<'a, str>,
    pub service: Cow<'a, str>,
    pub module: Cow<'a, str>,
    pub file: Cow<'a, str>,
    pub line: u32,
    pub function: Cow<'a, str>,
    pub process_id: u32,
    pub process_name: Cow<'a, str>,
    pub thread_id: u64,
    pub thread_name: Cow<'a, str>,
    pub stack_trace: Cow<'a, str>,
    /// Extra key/value pairs, in the order the client sent them.
    pub fields: Vec<(Cow<'a, str>, Value<'a>)>,
    /// The decoder could not parse the input and kept it as raw text.
    pub parse_error: bool,
    /// The input was longer than the line limit and was cut; this is one piece of it.
    pub truncated: bool,
}

fn own(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}

impl Record<'_> {
    /// The value of the first field named `key`, if any.
    pub fn field(&self, key: &str) -> Option<&Value<'_>> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Copies every borrowed string, for a record that must outlive its input (tests, clients).
    pub fn into_static(self) -> Record<'static> {
        Record {
            timestamp_ns: self.timestamp_ns,
            level: self.level,
            body: match self.body {
                Body::Message(m) => Body::Message(own(m)),
                Body::Json(j) => Body::Json(own(j)),
            },
            logger: own(self.logger),
            host: own(self.host),
            service: own(self.service),
            module: own(self.module),
            file: own(self.file),
            line: self.line,
            function: own(self.function),
            process_id: self.process_id,
            process_name: own(self.process_name),
            thread_id: self.thread_id,
            thread_name: own(self.thread_name),
            stack_trace: own(self.stack_trace),
            fields: self
                .fields
                .into_iter()
                .map(|(k, v)| (own(k), v.into_static()))
                .collect(),
            parse_error: self.parse_error,
            truncated: self.truncated,
        }
    }
}

/// Text from the network as a string: borrowed when it is valid UTF-8 (the common case), with
/// each invalid sequence replaced by U+FFFD otherwise, so one bad byte never costs a record.
///
/// Every text field of every record goes through here, so validation uses `simdutf8` (16 or 32
/// bytes per step on x86-64 and aarch64, about four times std's word-at-a-time check on a
/// 200-byte message); the lossy decoder runs only when validation fails.
pub fn lossy_utf8(bytes: &[u8]) -> Cow<'_, str> {
    // Most optional fields of most records are unset.
    if bytes.is_empty() {
        return Cow::Borrowed("");
    }
    match simdutf8::basic::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::{JsonText, Level, MAX_JSON_DIGITS};

    #[test]
    fn integers_past_a_double_are_not_json_numbers() {
        // Found by the pickle fuzz target: a Python int of 400 digits was written as a JSON
        // number that serde_json (and any reader parsing numbers as doubles) refuses.
        let fits = "9".repeat(MAX_JSON_DIGITS);
        let number = JsonText::integer(fits.clone()).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(number.as_str()).is_ok());
        assert!(JsonText::integer(format!("-{fits}")).is_some());
        assert!(JsonText::integer("9".repeat(MAX_JSON_DIGITS + 1)).is_none());
        assert!(serde_json::from_str::<serde_json::Value>(&"9".repeat(400)).is_err());
        assert!(JsonText::integer("012".into()).is_none());
    }

    #[test]
    fn otel_severity_ranges() {
        let cases = [
            (0, Level::Info),
            (1, Level::Trace),
            (4, Level::Trace),
            (5, Level::Debug),
            (9, Level::Info),
            (12, Level::Info),
            (13, Level::Warning),
            (17, Level::Error),
            (21, Level::Critical),
            (24, Level::Critical),
            (25, Level::Info),
            (-1, Level::Info),
        ];
        for (number, level) in cases {
            assert_eq!(Level::from_otel(number), level, "severity {number}");
        }
    }
}
