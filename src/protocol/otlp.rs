//! OTLP logs (OpenTelemetry), pure: an `ExportLogsServiceRequest` from protobuf or from the OTLP
//! JSON mapping, its records mapped onto logmill's [`Record`], and the `ExportLogsServiceResponse`
//! in both encodings. gzip bodies are inflated here too, with the limit on the inflated size.
//!
//! What this file does not hold: HTTP or HTTP/2 (`POST /v1/logs`, `LogsService/Export`), tokens,
//! status codes, or anything that touches a socket or a clock; the server's sessions call these
//! functions and answer. Each [`Error`] is a whole-request refusal (HTTP 400, or 413 for
//! [`Error::TooLarge`]; gRPC `INVALID_ARGUMENT` / `RESOURCE_EXHAUSTED`).
//!
//! Every body is hostile. The body (after inflating) is at most [`Limits::max_body`] bytes, and
//! before prost allocates anything [`scan`] walks the protobuf wire format once, without
//! allocating, and counts the messages it would build: a 2-byte empty `LogRecord` or `AnyValue`
//! becomes a struct of a hundred bytes or more, so a body of empty messages could otherwise cost
//! a hundred times its size. [`Limits::max_records`] and [`Limits::max_values`] bound that.
//! Nesting is bounded by prost's recursion limit (100) and serde_json's (128).
//!
//! The server reads protobuf with [`decode_records`] (`otlp/fast.rs`): the same [`scan`], then the
//! records read straight from the bytes, borrowing their strings, with no prost structs in
//! between. [`decode_protobuf`] and [`to_records`] stay the reference it is tested against, and
//! the path for JSON (parsed into the same prost structs).
//!
//! # What "cannot be stored" means
//!
//! A request that decodes is taken record by record. A record is rejected (counted in
//! `partial_success.rejected_log_records`, the rest stored) when it carries a `trace_id` that is
//! not 16 bytes or a `span_id` that is not 8 bytes (empty is fine: no trace context): such ids
//! are malformed by the data model, and storing them as hex would make a trace look up nothing.
//! Nothing else in a record that decoded is unstorable: invalid UTF-8 already fails the whole
//! protobuf message in prost (and cannot occur in JSON text), every value has a JSON spelling,
//! and every timestamp fits the record's `u64`.
//!
//! # The mapping
//!
//! | OTLP | logmill record |
//! |---|---|
//! | `time_unix_nano`, else `observed_time_unix_nano`, else 0 | `timestamp_ns` (0: the receive time) |
//! | `severity_number` 1-4, 5-8, 9-12, 13-16, 17-20, 21-24 | `trace`, `debug`, `info`, `warning`, `error`, `critical` ([`Level::from_otel`]) |
//! | `severity_number` 0 or unknown | the level `severity_text` names, else `info` |
//! | `severity_text` | field `severity_text`, unless it names the stored level (`WARNING`, `warn`, `INFO2`) |
//! | `body` string | message |
//! | `body` key/value list | JSON body (an object) |
//! | `body` of another type | message: its JSON spelling (`42`, `true`, `[1,"a"]`; bytes in base64) |
//! | resource attribute `service.name` (a string) | `service` |
//! | resource attribute `host.name` (a string) | `host` |
//! | scope `name` | `logger` |
//! | scope `version` | field `otel.scope.version` |
//! | other resource, scope and record attributes | fields, the record's over the scope's over the resource's for one key |
//! | attribute values | string, int, double, bool as such; bytes as base64; arrays and key/value lists as JSON |
//! | `trace_id`, `span_id` (non-zero) | fields `trace_id`, `span_id`, lower-case hex |
//! | `flags` & 0xFF, with a trace id | field `trace_flags` |
//! | `event_name` | field `event_name` |
//!
//! Dropped-attribute counts, schema URLs and entity refs are not stored.

/// The prost code generated from `proto/opentelemetry/` (opentelemetry-proto v1.6.0), committed
/// and checked by `codegen-check/tests/grpc_codegen_drift.rs`. The modules nest as the protobuf
/// packages do (`opentelemetry.proto.logs.v1` is `proto::logs::v1`), because the generated code
/// names the other packages by relative paths (`super::super::common::v1::AnyValue`).
#[allow(clippy::all, missing_docs)]
#[rustfmt::skip]
pub mod proto {
    pub mod collector {
        pub mod logs {
            pub mod v1 {
                include!("otlp/collector_logs_v1.rs");
            }
        }
    }
    pub mod common {
        pub mod v1 {
            include!("otlp/common_v1.rs");
        }
    }
    pub mod logs {
        pub mod v1 {
            include!("otlp/logs_v1.rs");
        }
    }
    pub mod resource {
        pub mod v1 {
            include!("otlp/resource_v1.rs");
        }
    }
}

pub mod encode;
mod fast;

mod json;
pub use json::decode_json;

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};

use crate::protocol::grpc::{self, InflateError};
use crate::protocol::jsonl::level_from_name;
use crate::record::{Body, Level, Record, Value};
pub use proto::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use proto::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use proto::resource::v1::Resource;

// ---------------------------------------------------------------------------------------------
// Limits and errors
// ---------------------------------------------------------------------------------------------

/// The bounds one request is held to. All are checked before the request is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes of a body, after inflating (the server's body limit).
    pub max_body: usize,
    /// The most log records in one request.
    pub max_records: usize,
    /// The most values in one request: protobuf messages and length-delimited fields (each
    /// becomes a struct, `String` or `Vec`), or JSON values (each becomes a `serde_json::Value`).
    pub max_values: usize,
}

impl Limits {
    /// The default record and value counts under a body limit of `max_body` bytes.
    ///
    /// 65,536 records: an OpenTelemetry SDK batch is 512 by default and a Collector's at most
    /// 8,192. 262,144 values: at about a hundred bytes for the largest struct (a `LogRecord`),
    /// a request then costs at most a few tens of MB however its bytes are spent, while a batch
    /// of 512 records with 20 attributes each (about 60,000 JSON values) fits four times over.
    pub fn new(max_body: usize) -> Limits {
        Limits {
            max_body,
            max_records: 65_536,
            max_values: 262_144,
        }
    }
}

/// Why a whole request is refused. The server answers HTTP 413 (`RESOURCE_EXHAUSTED` on gRPC)
/// for [`Error::TooLarge`] and 400 (`INVALID_ARGUMENT`) for the others, so that an OTLP
/// exporter does not retry them.
#[derive(Debug)]
pub enum Error {
    /// The body, or what it inflates to, is longer than [`Limits::max_body`].
    TooLarge { max: usize },
    /// A gzip body that is not valid gzip.
    Gzip(std::io::Error),
    /// Not a protobuf `ExportLogsServiceRequest`.
    Protobuf(String),
    /// Not JSON, or JSON that does not follow the OTLP JSON mapping.
    Json(String),
    /// More than [`Limits::max_records`] log records.
    TooManyRecords { max: usize },
    /// More than [`Limits::max_values`] values.
    TooManyValues { max: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLarge { max } => write!(f, "body larger than {max} bytes (after inflating)"),
            Error::Gzip(e) => write!(f, "gzip body cannot be inflated: {e}"),
            Error::Protobuf(e) => write!(f, "invalid protobuf ExportLogsServiceRequest: {e}"),
            Error::Json(e) => write!(f, "invalid OTLP JSON: {e}"),
            Error::TooManyRecords { max } => {
                write!(f, "more than {max} log records in one request")
            }
            Error::TooManyValues { max } => write!(f, "more than {max} values in one request"),
        }
    }
}

impl std::error::Error for Error {}

/// Inflates a `Content-Encoding: gzip` body, stopping at `max_body` bytes of output: a gzip
/// bomb costs at most `max_body` bytes and the time to inflate them, never its full size.
///
/// # Errors
/// [`Error::TooLarge`] past the limit, [`Error::Gzip`] for a body that is not gzip.
pub fn gunzip(body: &[u8], limits: &Limits) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    grpc::gunzip(body, limits.max_body, &mut out).map_err(|e| match e {
        InflateError::TooLarge { max } => Error::TooLarge { max },
        InflateError::Corrupt(e) => Error::Gzip(e),
    })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Protobuf
// ---------------------------------------------------------------------------------------------

/// The deepest nesting of messages [`scan`] follows: prost's own recursion limit.
const MAX_DEPTH: usize = 100;

/// Decodes a protobuf `ExportLogsServiceRequest` (`application/x-protobuf`, or a gRPC message).
///
/// # Errors
/// [`Error::TooLarge`], [`Error::TooManyRecords`] and [`Error::TooManyValues`] from [`scan`],
/// before anything is allocated; [`Error::Protobuf`] for bytes prost refuses (invalid UTF-8 in
/// a string included).
pub fn decode_protobuf(body: &[u8], limits: &Limits) -> Result<ExportLogsServiceRequest, Error> {
    scan(body, limits)?;
    ExportLogsServiceRequest::decode(body).map_err(|e| Error::Protobuf(e.to_string()))
}

/// The records of a protobuf `ExportLogsServiceRequest`, read straight from `body` (the
/// server's path): the same [`Export`], or an error of the same kind, as
/// `to_records(&decode_protobuf(body, limits)?)`, without building prost's structs. See
/// `otlp/fast.rs` for how, and why prost stays the reference.
///
/// # Errors
/// As [`decode_protobuf`].
pub fn decode_records<'a>(body: &'a [u8], limits: &Limits) -> Result<Export<'a>, Error> {
    if body.len() > limits.max_body {
        return Err(Error::TooLarge {
            max: limits.max_body,
        });
    }
    // `scan` is a second walk over the body, run only where it could decide otherwise. A value
    // it counts is a length-delimited field, a key and a length at least: 2 bytes or more, so
    // a body of at most twice `max_values` bytes is within that limit whatever it holds. The
    // fast path counts records itself. Where it fails, `scan` says which error comes first.
    if body.len() / 2 > limits.max_values {
        scan(body, limits)?;
    }
    fast::export(body, limits).map_err(|e| match scan(body, limits) {
        Err(first) => first,
        Ok(_) => e,
    })
}

/// A request in protobuf, as an exporter sends it (tests, fuzzing, a bench client).
pub fn encode_request(request: &ExportLogsServiceRequest) -> Vec<u8> {
    request.encode_to_vec()
}

/// What [`scan`] counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub records: usize,
    pub values: usize,
}

/// The messages of an `ExportLogsServiceRequest`, as far as [`scan`] must tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Request,
    ResourceLogs,
    Resource,
    EntityRef,
    ScopeLogs,
    Scope,
    LogRecord,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

impl Kind {
    /// The message type of field `field`, if it holds a message (the `.proto` files' tags).
    fn child(self, field: u64) -> Option<Kind> {
        Some(match (self, field) {
            (Kind::Request, 1) => Kind::ResourceLogs,
            (Kind::ResourceLogs, 1) => Kind::Resource,
            (Kind::ResourceLogs, 2) => Kind::ScopeLogs,
            (Kind::Resource, 1) => Kind::KeyValue,
            (Kind::Resource, 3) => Kind::EntityRef,
            (Kind::ScopeLogs, 1) => Kind::Scope,
            (Kind::ScopeLogs, 2) => Kind::LogRecord,
            (Kind::Scope, 3) => Kind::KeyValue,
            (Kind::LogRecord, 5) | (Kind::KeyValue, 2) | (Kind::ArrayValue, 1) => Kind::AnyValue,
            (Kind::LogRecord, 6) | (Kind::KeyValueList, 1) => Kind::KeyValue,
            (Kind::AnyValue, 5) => Kind::ArrayValue,
            (Kind::AnyValue, 6) => Kind::KeyValueList,
            _ => return None,
        })
    }
}

/// Walks a protobuf `ExportLogsServiceRequest` without allocating and counts the log records
/// and the values prost would build, so that a body of small messages (an empty `AnyValue` is 2
/// bytes on the wire and tens of bytes in memory) is refused before it is decoded.
///
/// Only structure is checked here (lengths within bounds, known wire types, nesting); prost
/// checks the rest.
///
/// # Errors
/// As [`decode_protobuf`].
pub fn scan(body: &[u8], limits: &Limits) -> Result<Counts, Error> {
    if body.len() > limits.max_body {
        return Err(Error::TooLarge {
            max: limits.max_body,
        });
    }
    let mut counts = Counts::default();
    scan_message(body, Kind::Request, 0, &mut counts, limits)?;
    Ok(counts)
}

fn scan_message(
    mut rest: &[u8],
    kind: Kind,
    depth: usize,
    counts: &mut Counts,
    limits: &Limits,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Protobuf(format!(
            "messages nested deeper than {MAX_DEPTH}"
        )));
    }
    while !rest.is_empty() {
        let key = varint(&mut rest)?;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(Error::Protobuf(format!("invalid field number {field}")));
        }
        match key & 7 {
            0 => {
                varint(&mut rest)?;
            }
            1 => skip(&mut rest, 8)?,
            5 => skip(&mut rest, 4)?,
            2 => {
                let len = varint(&mut rest)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&len| len <= rest.len())
                    .ok_or_else(|| Error::Protobuf("a length past the end".into()))?;
                let (inner, after) = rest.split_at(len);
                rest = after;
                counts.values = counts.values.saturating_add(1);
                if counts.values > limits.max_values {
                    return Err(Error::TooManyValues {
                        max: limits.max_values,
                    });
                }
                if let Some(child) = kind.child(field) {
                    if child == Kind::LogRecord {
                        counts.records = counts.records.saturating_add(1);
                        if counts.records > limits.max_records {
                            return Err(Error::TooManyRecords {
                                max: limits.max_records,
                            });
                        }
                    }
                    scan_message(inner, child, depth + 1, counts, limits)?;
                }
            }
            wire => {
                return Err(Error::Protobuf(format!(
                    "wire type {wire} in field {field} (OTLP uses no groups)"
                )));
            }
        }
    }
    Ok(())
}

/// A base-128 varint of at most 10 bytes, advancing `rest` past it.
fn varint(rest: &mut &[u8]) -> Result<u64, Error> {
    let mut value = 0u64;
    for (i, &byte) in rest.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *rest = &rest[i + 1..];
            return Ok(value);
        }
    }
    Err(Error::Protobuf("a truncated or overlong varint".into()))
}

fn skip(rest: &mut &[u8], n: usize) -> Result<(), Error> {
    match rest.get(n..) {
        Some(after) => {
            *rest = after;
            Ok(())
        }
        None => Err(Error::Protobuf("a fixed-size field past the end".into())),
    }
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// The records of a request, and the ones that cannot be stored.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Export<'a> {
    /// In request order, borrowing their strings from the request.
    pub records: Vec<Record<'a>>,
    /// How many records were refused (`partial_success.rejected_log_records`).
    pub rejected: u64,
    /// Why, naming the first refused record (`partial_success.error_message`); empty when none.
    pub error_message: String,
}

/// Maps every log record of `request` onto a [`Record`] (the table in the module docs),
/// counting the ones that cannot be stored instead.
///
/// Per record: the resource's and scope's fields are mapped once per `ResourceLogs` and
/// `ScopeLogs` and cloned into each record (borrowed strings; nested values are copied).
pub fn to_records(request: &ExportLogsServiceRequest) -> Export<'_> {
    let mut export = Export::default();
    let mut first_rejection = None;
    for (r, resource_logs) in request.resource_logs.iter().enumerate() {
        let mut service = "";
        let mut host = "";
        let mut resource_fields = Vec::new();
        let attributes = resource_logs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice());
        for kv in attributes.unwrap_or_default() {
            match (kv.key.as_str(), string_value(kv)) {
                ("service.name", Some(s)) => service = s,
                ("host.name", Some(s)) => host = s,
                _ => resource_fields.push(field(kv)),
            }
        }
        for (s, scope_logs) in resource_logs.scope_logs.iter().enumerate() {
            let mut logger = "";
            let mut scope_fields = resource_fields.clone();
            if let Some(scope) = &scope_logs.scope {
                logger = &scope.name;
                scope_fields.extend(scope.attributes.iter().map(field));
                if !scope.version.is_empty() {
                    scope_fields.push((
                        Cow::Borrowed("otel.scope.version"),
                        Value::Str(Cow::Borrowed(&scope.version)),
                    ));
                }
            }
            for (l, log) in scope_logs.log_records.iter().enumerate() {
                if let Some(reason) = unstorable(&log.trace_id, &log.span_id) {
                    export.rejected += 1;
                    first_rejection.get_or_insert_with(|| {
                        format!("resource_logs[{r}].scope_logs[{s}].log_records[{l}]: {reason}")
                    });
                    continue;
                }
                let mut record = record(log, &scope_fields);
                record.service = Cow::Borrowed(service);
                record.host = Cow::Borrowed(host);
                record.logger = Cow::Borrowed(logger);
                export.records.push(record);
            }
        }
    }
    if let Some(first) = first_rejection {
        export.error_message = rejection_summary(&export, &first);
    }
    export
}

/// `partial_success.error_message`: how many records were refused, and why the first was.
fn rejection_summary(export: &Export<'_>, first: &str) -> String {
    let total = export.rejected.saturating_add(export.records.len() as u64);
    format!(
        "{} of {total} log records rejected; the first: {first}",
        export.rejected
    )
}

/// Why a decoded record cannot be stored (see the module docs), or `None`.
fn unstorable(trace_id: &[u8], span_id: &[u8]) -> Option<String> {
    if !matches!(trace_id.len(), 0 | 16) {
        return Some(format!("trace_id is {} bytes, not 16", trace_id.len()));
    }
    if !matches!(span_id.len(), 0 | 8) {
        return Some(format!("span_id is {} bytes, not 8", span_id.len()));
    }
    None
}

fn record<'a>(log: &'a LogRecord, inherited: &[(Cow<'a, str>, Value<'a>)]) -> Record<'a> {
    let mut fields = Vec::with_capacity(inherited.len() + log.attributes.len() + 5);
    fields.extend_from_slice(inherited);
    fields.extend(log.attributes.iter().map(field));
    let scalars = Scalars {
        time_unix_nano: log.time_unix_nano,
        observed_time_unix_nano: log.observed_time_unix_nano,
        severity_number: log.severity_number,
        severity_text: &log.severity_text,
        flags: log.flags,
        trace_id: &log.trace_id,
        span_id: &log.span_id,
        event_name: &log.event_name,
    };
    let level = scalars.finish(&mut fields);
    Record {
        timestamp_ns: scalars.timestamp_ns(),
        level,
        body: body(log.body.as_ref()),
        fields,
        ..Record::default()
    }
}

/// A `LogRecord`'s fields other than its body and attributes, borrowed: from prost's struct
/// here, from the wire in `otlp/fast.rs`.
#[derive(Clone, Copy, Debug, Default)]
struct Scalars<'a> {
    time_unix_nano: u64,
    observed_time_unix_nano: u64,
    severity_number: i32,
    severity_text: &'a str,
    flags: u32,
    trace_id: &'a [u8],
    span_id: &'a [u8],
    event_name: &'a str,
}

impl<'a> Scalars<'a> {
    /// Appends the fields these map to after the attributes already in `fields`, keeps the
    /// last of each key, and returns the record's level.
    fn finish(&self, fields: &mut Vec<(Cow<'a, str>, Value<'a>)>) -> Level {
        let level = level(self.severity_number, self.severity_text);
        if !self.severity_text.is_empty() && !names_level(self.severity_text, level) {
            fields.push((
                Cow::Borrowed("severity_text"),
                Value::Str(Cow::Borrowed(self.severity_text)),
            ));
        }
        let traced = is_set(self.trace_id);
        if traced {
            fields.push((
                Cow::Borrowed("trace_id"),
                Value::Str(hex(self.trace_id).into()),
            ));
        }
        if is_set(self.span_id) {
            fields.push((
                Cow::Borrowed("span_id"),
                Value::Str(hex(self.span_id).into()),
            ));
        }
        let trace_flags = self.flags & 0xff;
        if traced && trace_flags != 0 {
            fields.push((
                Cow::Borrowed("trace_flags"),
                Value::Int(i64::from(trace_flags)),
            ));
        }
        if !self.event_name.is_empty() {
            fields.push((
                Cow::Borrowed("event_name"),
                Value::Str(Cow::Borrowed(self.event_name)),
            ));
        }
        keep_last(fields);
        level
    }

    /// `time_unix_nano`, else `observed_time_unix_nano`, else 0.
    fn timestamp_ns(&self) -> u64 {
        if self.time_unix_nano != 0 {
            self.time_unix_nano
        } else {
            self.observed_time_unix_nano
        }
    }
}

/// `severity_number` on logmill's scale; when it is unspecified (or not one of the 24), the
/// level `severity_text` names, else `info`.
fn level(number: i32, text: &str) -> Level {
    if (1..=24).contains(&number) {
        return Level::from_otel(number);
    }
    level_from_name(text)
        .or_else(|| level_from_name(without_step(text)))
        .unwrap_or(Level::Info)
}

/// `INFO2` to `INFO`: OTel's short names carry a step 2 to 4 within their range.
fn without_step(text: &str) -> &str {
    text.strip_suffix(['2', '3', '4']).unwrap_or(text)
}

/// Whether `text` names `level` (then it adds nothing and is not kept as a field).
fn names_level(text: &str, level: Level) -> bool {
    level_from_name(text) == Some(level) || level_from_name(without_step(text)) == Some(level)
}

/// An id that is present: not empty and not all zeroes (which the data model calls invalid).
fn is_set(id: &[u8]) -> bool {
    id.iter().any(|&b| b != 0)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Keeps the last of the fields that share a key (the record's attributes over the scope's
/// over the resource's), in order otherwise.
///
/// A record has a handful of fields, so a key is looked for among the ones after it (no set,
/// no hashing, no allocation: this runs once per record); past [`SMALL`] fields, a set.
fn keep_last(fields: &mut Vec<(Cow<'_, str>, Value<'_>)>) {
    const SMALL: usize = 24;
    let n = fields.len();
    if n < 2 {
        return;
    }
    let shadowed = |i: usize, fields: &[(Cow<'_, str>, Value<'_>)]| {
        fields[i + 1..]
            .iter()
            .any(|(later, _)| *later == fields[i].0)
    };
    if n <= SMALL {
        if (0..n).all(|i| !shadowed(i, fields)) {
            return;
        }
        let mut i = 0;
        while i < fields.len() {
            if shadowed(i, fields) {
                fields.remove(i);
            } else {
                i += 1;
            }
        }
        return;
    }
    let mut seen = HashSet::with_capacity(n);
    let mut keep: Vec<bool> = fields
        .iter()
        .rev()
        .map(|(key, _)| seen.insert(key.as_ref()))
        .collect();
    if keep.iter().all(|&k| k) {
        return;
    }
    keep.reverse();
    let mut keep = keep.into_iter();
    fields.retain(|_| keep.next().unwrap_or(true));
}

fn string_value(kv: &KeyValue) -> Option<&str> {
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn field(kv: &KeyValue) -> (Cow<'_, str>, Value<'_>) {
    (Cow::Borrowed(kv.key.as_str()), value(kv.value.as_ref()))
}

/// An attribute's value, typed: scalars as themselves, bytes as base64, arrays and key/value
/// lists as JSON text.
fn value(v: Option<&AnyValue>) -> Value<'_> {
    use any_value::Value as V;
    match v.and_then(|v| v.value.as_ref()) {
        None => Value::Null,
        Some(V::StringValue(s)) => Value::Str(Cow::Borrowed(s)),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(i)) => Value::Int(*i),
        Some(V::DoubleValue(f)) => Value::Float(*f),
        Some(V::BytesValue(b)) => Value::Str(Cow::Owned(STANDARD.encode(b))),
        Some(V::ArrayValue(_) | V::KvlistValue(_)) => Value::from_json(to_json(v)),
    }
}

/// An `AnyValue` as JSON: a key/value list is an object (a key given twice keeps its last
/// value), bytes are base64, a double that is not finite is `null`.
fn to_json(v: Option<&AnyValue>) -> Json {
    use any_value::Value as V;
    match v.and_then(|v| v.value.as_ref()) {
        None => Json::Null,
        Some(V::StringValue(s)) => Json::String(s.clone()),
        Some(V::BoolValue(b)) => Json::Bool(*b),
        Some(V::IntValue(i)) => Json::from(*i),
        Some(V::DoubleValue(f)) => Json::from(*f),
        Some(V::BytesValue(b)) => Json::String(STANDARD.encode(b)),
        Some(V::ArrayValue(a)) => Json::Array(a.values.iter().map(|v| to_json(Some(v))).collect()),
        Some(V::KvlistValue(kv)) => Json::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), to_json(kv.value.as_ref())))
                .collect(),
        ),
    }
}

/// The body: a string is the message, a key/value list the JSON body, anything else a message
/// holding its JSON spelling.
fn body(v: Option<&AnyValue>) -> Body<'_> {
    use any_value::Value as V;
    match v.and_then(|v| v.value.as_ref()) {
        None => Body::Message(Cow::Borrowed("")),
        Some(V::StringValue(s)) => Body::Message(Cow::Borrowed(s)),
        Some(V::KvlistValue(_)) => Body::Json(Cow::Owned(to_json(v).to_string())),
        Some(_) => Body::Message(Cow::Owned(value(v).to_string())),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// The response for `rejected` refused records: `partial_success` is set only when something
/// was refused or there is a message, as the specification asks.
pub fn response(rejected: u64, error_message: &str) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: (rejected > 0 || !error_message.is_empty()).then(|| {
            ExportLogsPartialSuccess {
                rejected_log_records: i64::try_from(rejected).unwrap_or(i64::MAX),
                error_message: error_message.to_owned(),
            }
        }),
    }
}

/// [`response`] in protobuf (`application/x-protobuf`, or the gRPC reply).
pub fn encode_response(rejected: u64, error_message: &str) -> Vec<u8> {
    response(rejected, error_message).encode_to_vec()
}

/// A protobuf response, as an exporter reads it (the bench client, tests).
///
/// # Errors
/// [`Error::Protobuf`].
pub fn decode_response(bytes: &[u8]) -> Result<ExportLogsServiceResponse, Error> {
    ExportLogsServiceResponse::decode(bytes).map_err(|e| Error::Protobuf(e.to_string()))
}

/// [`response`] in OTLP JSON: `{}`, or `{"partialSuccess":{"rejectedLogRecords":"2",
/// "errorMessage":"..."}}` (an int64 as a decimal string).
pub fn encode_response_json(rejected: u64, error_message: &str) -> Vec<u8> {
    let mut out = Map::new();
    if let Some(partial) = response(rejected, error_message).partial_success {
        let mut inner = Map::new();
        if partial.rejected_log_records != 0 {
            inner.insert(
                "rejectedLogRecords".into(),
                Json::String(partial.rejected_log_records.to_string()),
            );
        }
        if !partial.error_message.is_empty() {
            inner.insert("errorMessage".into(), Json::String(partial.error_message));
        }
        out.insert("partialSuccess".into(), Json::Object(inner));
    }
    Json::Object(out).to_string().into_bytes()
}

/// `google.rpc.Status`: the body of an OTLP/HTTP error answer (400, 413, 401, 503), which
/// exporters read for the message. `details` is never sent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// A gRPC status code (`INVALID_ARGUMENT` is 3).
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// An error answer's body: `google.rpc.Status { code, message }`, in protobuf or, when the
/// request was JSON, as `{"code":3,"message":"..."}` (the OTLP JSON mapping of the same message).
pub fn encode_status(code: i32, message: &str, json: bool) -> Vec<u8> {
    if json {
        let mut out = Map::new();
        out.insert("code".into(), Json::from(code));
        out.insert("message".into(), Json::String(message.to_owned()));
        Json::Object(out).to_string().into_bytes()
    } else {
        RpcStatus {
            code,
            message: message.to_owned(),
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const LIMITS: Limits = Limits {
        max_body: 1 << 20,
        max_records: 1000,
        max_values: 10_000,
    };

    #[test]
    fn keep_last_keeps_the_last_of_each_key_in_order() {
        for n in [3usize, 24, 40] {
            // Keys k0..k(n-1), then k0 and k1 again with new values.
            let mut fields: Vec<(Cow<'_, str>, Value<'_>)> = (0..n)
                .map(|i| (Cow::Owned(format!("k{i}")), Value::Int(i as i64)))
                .collect();
            fields.push((Cow::Borrowed("k0"), Value::Int(-1)));
            fields.push((Cow::Borrowed("k1"), Value::Int(-2)));
            keep_last(&mut fields);
            let keys: Vec<String> = fields.iter().map(|(k, _)| k.to_string()).collect();
            let mut want: Vec<String> = (2..n).map(|i| format!("k{i}")).collect();
            want.extend(["k0".to_string(), "k1".to_string()]);
            assert_eq!(keys, want, "{n} fields");
            assert_eq!(fields[n - 2].1, Value::Int(-1));
        }
    }

    #[test]
    fn error_status_in_both_encodings() {
        let bytes = encode_status(3, "bad \"body\"", false);
        let status = RpcStatus::decode(bytes.as_slice()).unwrap();
        assert_eq!((status.code, status.message.as_str()), (3, "bad \"body\""));
        let json: Json = serde_json::from_slice(&encode_status(14, "later", true)).unwrap();
        assert_eq!(json, serde_json::json!({"code": 14, "message": "later"}));
    }

    fn any(v: any_value::Value) -> Option<AnyValue> {
        Some(AnyValue { value: Some(v) })
    }

    fn text(s: &str) -> Option<AnyValue> {
        any(any_value::Value::StringValue(s.into()))
    }

    fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value,
        }
    }

    fn request(
        resource: Vec<KeyValue>,
        scope: Option<InstrumentationScope>,
        logs: Vec<LogRecord>,
    ) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: resource,
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope,
                    log_records: logs,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// The one record `log` maps to, alone in a request.
    fn one(log: LogRecord) -> Record<'static> {
        let req = request(Vec::new(), None, vec![log]);
        let export = to_records(&req);
        assert_eq!(export.rejected, 0);
        assert_eq!(export.records.len(), 1);
        export.records.into_iter().next().unwrap().into_static()
    }

    fn sample() -> ExportLogsServiceRequest {
        request(
            vec![
                kv("service.name", text("checkout")),
                kv("host.name", text("web-1")),
                kv("deployment.environment", text("prod")),
            ],
            Some(InstrumentationScope {
                name: "app.payments".into(),
                version: "1.2.0".into(),
                attributes: vec![kv("scope.attr", any(any_value::Value::BoolValue(true)))],
                dropped_attributes_count: 0,
            }),
            vec![LogRecord {
                time_unix_nano: 1_700_000_000_123_456_789,
                observed_time_unix_nano: 1_700_000_000_999_999_999,
                severity_number: 17,
                severity_text: "ERROR".into(),
                body: text("card declined"),
                attributes: vec![
                    kv("http.status", any(any_value::Value::IntValue(402))),
                    kv("ratio", any(any_value::Value::DoubleValue(0.5))),
                ],
                dropped_attributes_count: 0,
                flags: 1,
                trace_id: (1..=16).collect(),
                span_id: (1..=8).collect(),
                event_name: "payment.declined".into(),
            }],
        )
    }

    const SAMPLE_JSON: &str = r#"{"resourceLogs":[{
        "resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"checkout"}},
            {"key":"host.name","value":{"stringValue":"web-1"}},
            {"key":"deployment.environment","value":{"stringValue":"prod"}}]},
        "scopeLogs":[{
            "scope":{"name":"app.payments","version":"1.2.0",
                     "attributes":[{"key":"scope.attr","value":{"boolValue":true}}]},
            "logRecords":[{
                "timeUnixNano":"1700000000123456789",
                "observedTimeUnixNano":1700000000999999999,
                "severityNumber":17,
                "severityText":"ERROR",
                "body":{"stringValue":"card declined"},
                "attributes":[{"key":"http.status","value":{"intValue":"402"}},
                              {"key":"ratio","value":{"doubleValue":0.5}}],
                "flags":1,
                "traceId":"0102030405060708090A0b0c0d0e0f10",
                "spanId":"0102030405060708",
                "eventName":"payment.declined",
                "someFutureField":{"ignored":true}}]}]}]}"#;

    #[test]
    fn protobuf_request_maps_onto_records() {
        let bytes = sample().encode_to_vec();
        let req = decode_protobuf(&bytes, &LIMITS).unwrap();
        assert_eq!(req, sample());
        let export = to_records(&req);
        assert_eq!((export.rejected, export.error_message.as_str()), (0, ""));
        let r = &export.records[0];
        assert_eq!(r.timestamp_ns, 1_700_000_000_123_456_789);
        assert_eq!(r.level, Level::Error);
        assert_eq!(r.body, Body::Message("card declined".into()));
        assert_eq!(
            (&*r.service, &*r.host, &*r.logger),
            ("checkout", "web-1", "app.payments")
        );
        let fields: Vec<(&str, Value<'_>)> = r
            .fields
            .iter()
            .map(|(k, v)| (k.as_ref(), v.clone()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("deployment.environment", Value::from("prod")),
                ("scope.attr", Value::Bool(true)),
                ("otel.scope.version", Value::from("1.2.0")),
                ("http.status", Value::Int(402)),
                ("ratio", Value::Float(0.5)),
                ("trace_id", Value::from("0102030405060708090a0b0c0d0e0f10")),
                ("span_id", Value::from("0102030405060708")),
                ("trace_flags", Value::Int(1)),
                ("event_name", Value::from("payment.declined")),
            ]
        );
    }

    #[test]
    fn json_request_is_the_same_request() {
        assert_eq!(
            decode_json(SAMPLE_JSON.as_bytes(), &LIMITS).unwrap(),
            sample()
        );
    }

    #[test]
    fn timestamp_falls_back_to_observed_then_zero() {
        let log = |time, observed| LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: observed,
            ..LogRecord::default()
        };
        assert_eq!(one(log(5, 7)).timestamp_ns, 5);
        assert_eq!(one(log(0, 7)).timestamp_ns, 7);
        assert_eq!(one(log(0, 0)).timestamp_ns, 0);
    }

    #[test]
    fn severity_number_ranges() {
        let level = |n| {
            one(LogRecord {
                severity_number: n,
                ..LogRecord::default()
            })
            .level
        };
        for (range, expected) in [
            (1..=4, Level::Trace),
            (5..=8, Level::Debug),
            (9..=12, Level::Info),
            (13..=16, Level::Warning),
            (17..=20, Level::Error),
            (21..=24, Level::Critical),
        ] {
            for n in range {
                assert_eq!(level(n), expected, "severity_number {n}");
            }
        }
        for n in [0, 25, -1, i32::MAX] {
            assert_eq!(level(n), Level::Info, "severity_number {n}");
        }
    }

    #[test]
    fn severity_text_is_kept_when_it_adds_information() {
        let map = |n, t: &str| {
            let r = one(LogRecord {
                severity_number: n,
                severity_text: t.into(),
                ..LogRecord::default()
            });
            (
                r.level,
                r.field("severity_text")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )
        };
        // It names the stored level: dropped.
        assert_eq!(map(13, "WARNING"), (Level::Warning, None));
        assert_eq!(map(13, "warn"), (Level::Warning, None));
        assert_eq!(map(10, "INFO2"), (Level::Info, None));
        assert_eq!(map(21, "CRITICAL"), (Level::Critical, None));
        assert_eq!(map(21, "FATAL"), (Level::Critical, None));
        // Another level, or a name logmill does not know: kept.
        assert_eq!(map(9, "NOTICE"), (Level::Info, Some("NOTICE".into())));
        assert_eq!(map(9, "Audit"), (Level::Info, Some("Audit".into())));
        // No severity_number: the text gives the level.
        assert_eq!(map(0, "warning"), (Level::Warning, None));
        assert_eq!(map(0, "ERROR3"), (Level::Error, None));
        assert_eq!(map(0, "Audit"), (Level::Info, Some("Audit".into())));
        assert_eq!(map(0, ""), (Level::Info, None));
    }

    #[test]
    fn bodies() {
        use any_value::Value as V;
        let body = |v| {
            one(LogRecord {
                body: v,
                ..LogRecord::default()
            })
            .body
        };
        assert_eq!(body(None), Body::Message("".into()));
        assert_eq!(
            body(Some(AnyValue { value: None })),
            Body::Message("".into())
        );
        assert_eq!(body(text("hello")), Body::Message("hello".into()));
        assert_eq!(body(any(V::IntValue(42))), Body::Message("42".into()));
        assert_eq!(
            body(any(V::BoolValue(false))),
            Body::Message("false".into())
        );
        assert_eq!(
            body(any(V::DoubleValue(f64::NAN))),
            Body::Message("null".into())
        );
        assert_eq!(
            body(any(V::BytesValue(b"hi".to_vec()))),
            Body::Message("aGk=".into())
        );
        let array = V::ArrayValue(ArrayValue {
            values: vec![any(V::IntValue(1)).unwrap(), text("a").unwrap()],
        });
        assert_eq!(body(any(array)), Body::Message(r#"[1,"a"]"#.into()));
        let kvlist = V::KvlistValue(KeyValueList {
            values: vec![
                kv("z", text("last")),
                kv(
                    "a",
                    any(V::KvlistValue(KeyValueList {
                        values: vec![kv("n", any(V::IntValue(1)))],
                    })),
                ),
                kv("z", text("wins")),
                kv("e", None),
            ],
        });
        assert_eq!(
            body(any(kvlist)),
            Body::Json(r#"{"a":{"n":1},"e":null,"z":"wins"}"#.into())
        );
    }

    #[test]
    fn attribute_values_keep_their_types() {
        use any_value::Value as V;
        let r = one(LogRecord {
            attributes: vec![
                kv("s", text("x")),
                kv("i", any(V::IntValue(-3))),
                kv("f", any(V::DoubleValue(2.5))),
                kv("b", any(V::BoolValue(true))),
                kv("y", any(V::BytesValue(vec![0xff]))),
                kv(
                    "a",
                    any(V::ArrayValue(ArrayValue {
                        values: vec![text("p").unwrap()],
                    })),
                ),
                kv(
                    "m",
                    any(V::KvlistValue(KeyValueList {
                        values: vec![kv("k", any(V::BoolValue(true)))],
                    })),
                ),
                kv("none", None),
            ],
            ..LogRecord::default()
        });
        assert_eq!(r.field("s"), Some(&Value::from("x")));
        assert_eq!(r.field("i"), Some(&Value::Int(-3)));
        assert_eq!(r.field("f"), Some(&Value::Float(2.5)));
        assert_eq!(r.field("b"), Some(&Value::Bool(true)));
        assert_eq!(r.field("y"), Some(&Value::from("/w==")));
        assert_eq!(
            r.field("a").map(Value::to_string).as_deref(),
            Some(r#"["p"]"#)
        );
        assert!(matches!(r.field("a"), Some(Value::Json(_))));
        assert_eq!(
            r.field("m").map(Value::to_string).as_deref(),
            Some(r#"{"k":true}"#)
        );
        assert_eq!(r.field("none"), Some(&Value::Null));
    }

    #[test]
    fn resource_and_scope() {
        let req = request(
            vec![
                // Not a string: kept as a field, `service` stays empty.
                kv("service.name", any(any_value::Value::IntValue(7))),
                kv("host.name", text("db-2")),
                kv("shared", text("resource")),
                kv("only.resource", text("r")),
            ],
            Some(InstrumentationScope {
                name: "lib".into(),
                attributes: vec![kv("shared", text("scope"))],
                ..InstrumentationScope::default()
            }),
            vec![
                LogRecord {
                    attributes: vec![kv("shared", text("record"))],
                    ..LogRecord::default()
                },
                LogRecord::default(),
            ],
        );
        let export = to_records(&req);
        let [first, second] = &export.records[..] else {
            panic!("two records");
        };
        assert_eq!(
            (&*first.service, &*first.host, &*first.logger),
            ("", "db-2", "lib")
        );
        assert_eq!(first.field("service.name"), Some(&Value::Int(7)));
        assert_eq!(first.field("only.resource"), Some(&Value::from("r")));
        // One `shared`, the record's; then the scope's when the record has none.
        assert_eq!(
            first.fields.iter().filter(|(k, _)| k == "shared").count(),
            1
        );
        assert_eq!(first.field("shared"), Some(&Value::from("record")));
        assert_eq!(second.field("shared"), Some(&Value::from("scope")));
        assert_eq!(first.field("otel.scope.version"), None);
        // No resource, no scope.
        let bare = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default()],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        let export = to_records(&bare);
        assert_eq!(export.records, vec![Record::default()]);
    }

    #[test]
    fn trace_context() {
        let r = one(LogRecord {
            trace_id: vec![0; 16],
            span_id: vec![0; 8],
            flags: 1,
            ..LogRecord::default()
        });
        // All zeroes is "no id"; no trace, no flags.
        assert!(r.fields.is_empty(), "{:?}", r.fields);
        let r = one(LogRecord {
            trace_id: vec![0xab; 16],
            flags: 0x100,
            ..LogRecord::default()
        });
        assert_eq!(r.field("trace_id"), Some(&Value::from("ab".repeat(16))));
        // Only the low 8 bits are trace flags.
        assert_eq!(r.field("trace_flags"), None);
    }

    #[test]
    fn malformed_ids_reject_their_record_only() {
        let good = LogRecord {
            body: text("kept"),
            ..LogRecord::default()
        };
        let req = request(
            Vec::new(),
            None,
            vec![
                good.clone(),
                LogRecord {
                    trace_id: vec![1; 5],
                    ..LogRecord::default()
                },
                LogRecord {
                    trace_id: vec![1; 16],
                    span_id: vec![1; 9],
                    ..LogRecord::default()
                },
                good,
            ],
        );
        let export = to_records(&req);
        assert_eq!(export.records.len(), 2);
        assert_eq!(export.rejected, 2);
        assert_eq!(
            export.error_message,
            "2 of 4 log records rejected; the first: resource_logs[0].scope_logs[0].log_records[1]: \
             trace_id is 5 bytes, not 16"
        );
    }

    #[test]
    fn json_mapping_details() {
        let decode = |s: &str| decode_json(s.as_bytes(), &LIMITS);
        let log = |s: &str| {
            let req = decode(&format!(
                r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{s}]}}]}}]}}"#
            ))?;
            Ok::<_, Error>(req.resource_logs[0].scope_logs[0].log_records[0].clone())
        };
        assert_eq!(decode("{}").unwrap(), ExportLogsServiceRequest::default());
        assert_eq!(
            decode(r#"{"resourceLogs":null}"#).unwrap(),
            ExportLogsServiceRequest::default()
        );
        // Enum by name, int64 as number, nulls as defaults.
        let l = log(
            r#"{"severityNumber":"SEVERITY_NUMBER_WARN","timeUnixNano":5,"body":null,"flags":"3"}"#,
        )
        .unwrap();
        assert_eq!(
            (l.severity_number, l.time_unix_nano, l.body, l.flags),
            (13, 5, None, 3)
        );
        let l = log(r#"{"body":{"intValue":-9}}"#).unwrap();
        assert_eq!(l.body, any(any_value::Value::IntValue(-9)));
        let l = log(r#"{"body":{"doubleValue":"-Infinity"}}"#).unwrap();
        assert_eq!(
            l.body,
            any(any_value::Value::DoubleValue(f64::NEG_INFINITY))
        );
        let l = log(r#"{"body":{"bytesValue":"aGk="}}"#).unwrap();
        assert_eq!(l.body, any(any_value::Value::BytesValue(b"hi".to_vec())));
        let l = log(r#"{"body":{"arrayValue":{"values":[{"stringValue":"a"},{}]}}}"#).unwrap();
        assert_eq!(
            l.body,
            any(any_value::Value::ArrayValue(ArrayValue {
                values: vec![text("a").unwrap(), AnyValue::default()]
            }))
        );
        let l =
            log(r#"{"body":{"kvlistValue":{"values":[{"key":"k","value":{"boolValue":false}}]}}}"#)
                .unwrap();
        assert_eq!(
            l.body,
            any(any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("k", any(any_value::Value::BoolValue(false)))]
            }))
        );
        // A wrong-length id decodes; the record is judged later.
        assert_eq!(
            log(r#"{"traceId":"abcd"}"#).unwrap().trace_id,
            vec![0xab, 0xcd]
        );

        for bad in [
            r#"{"timeUnixNano":"-1"}"#,
            r#"{"timeUnixNano":"1.5"}"#,
            r#"{"timeUnixNano":"18446744073709551616"}"#,
            r#"{"timeUnixNano":true}"#,
            r#"{"flags":4294967296}"#,
            r#"{"severityNumber":"WARN"}"#,
            r#"{"severityNumber":1.5}"#,
            r#"{"severityText":3}"#,
            r#"{"traceId":"abc"}"#,
            r#"{"traceId":"zz"}"#,
            r#"{"spanId":"+1"}"#,
            r#"{"body":"text"}"#,
            r#"{"body":{"intValue":"1e3"}}"#,
            r#"{"body":{"intValue":"-"}}"#,
            r#"{"body":{"stringValue":"a","intValue":"1"}}"#,
            r#"{"body":{"bytesValue":"not base64!"}}"#,
            r#"{"body":{"doubleValue":"fast"}}"#,
            r#"{"attributes":{}}"#,
            r#"{"attributes":[{"key":1}]}"#,
            r#"[]"#,
        ] {
            assert!(matches!(log(bad), Err(Error::Json(_))), "{bad}");
        }
        for bad in [
            "",
            "[]",
            "{",
            r#"{"resourceLogs":{}}"#,
            "{} {}",
            "\"x\"",
            r#"{"resourceLogs":[1]}"#,
        ] {
            assert!(matches!(decode(bad), Err(Error::Json(_))), "{bad:?}");
        }
        assert!(matches!(
            decode_json(b"{\"a\":\"\xff\"}", &LIMITS),
            Err(Error::Json(_))
        ));
    }

    #[test]
    fn size_limits() {
        let small = Limits {
            max_body: 10,
            ..LIMITS
        };
        let body = sample().encode_to_vec();
        assert!(matches!(
            decode_protobuf(&body, &small),
            Err(Error::TooLarge { max: 10 })
        ));
        assert!(matches!(
            decode_json(SAMPLE_JSON.as_bytes(), &small),
            Err(Error::TooLarge { max: 10 })
        ));

        let few = Limits {
            max_records: 2,
            ..LIMITS
        };
        let three = request(Vec::new(), None, vec![LogRecord::default(); 3]);
        assert!(matches!(
            decode_protobuf(&three.encode_to_vec(), &few),
            Err(Error::TooManyRecords { max: 2 })
        ));
        let two = request(Vec::new(), None, vec![LogRecord::default(); 2]);
        assert_eq!(decode_protobuf(&two.encode_to_vec(), &few).unwrap(), two);
        let json =
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{},{}]},{"logRecords":[{}]}]}]}"#;
        assert!(matches!(
            decode_json(json.as_bytes(), &few),
            Err(Error::TooManyRecords { max: 2 })
        ));

        // Many tiny values: refused by counting, before anything is built.
        let tiny = Limits {
            max_values: 100,
            ..LIMITS
        };
        let many = request(
            Vec::new(),
            None,
            vec![LogRecord {
                attributes: vec![KeyValue::default(); 200],
                ..LogRecord::default()
            }],
        );
        assert!(matches!(
            decode_protobuf(&many.encode_to_vec(), &tiny),
            Err(Error::TooManyValues { max: 100 })
        ));
        let json = format!("[{}0]", "0,".repeat(100));
        assert!(matches!(
            decode_json(json.as_bytes(), &tiny),
            Err(Error::TooManyValues { max: 100 })
        ));
    }

    /// `n` nested `ArrayValue`s as the body of one record, in protobuf.
    fn nested(n: usize) -> Vec<u8> {
        let mut value = AnyValue::default();
        for _ in 0..n {
            value = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![value],
                })),
            };
        }
        request(
            Vec::new(),
            None,
            vec![LogRecord {
                body: Some(value),
                ..LogRecord::default()
            }],
        )
        .encode_to_vec()
    }

    #[test]
    fn nesting_is_bounded() {
        assert!(decode_protobuf(&nested(20), &LIMITS).is_ok());
        assert!(matches!(
            decode_protobuf(&nested(60), &LIMITS),
            Err(Error::Protobuf(_))
        ));
        // 10,000 levels (100,000 would be no harder): refused by the scan at level 100, so
        // neither the scan nor prost recurses past it.
        let deep = {
            let mut msg: Vec<u8> = Vec::new();
            for _ in 0..10_000 {
                // AnyValue.array_value (field 5) { ArrayValue.values (field 1) { msg } }
                let inner = [&[0x0a][..], &varint_bytes(msg.len()), &msg].concat();
                msg = [&[0x2a][..], &varint_bytes(inner.len()), &inner].concat();
            }
            msg
        };
        let record = [&[0x2a][..], &varint_bytes(deep.len()), &deep].concat();
        let scope = [&[0x12][..], &varint_bytes(record.len()), &record].concat();
        let resource = [&[0x12][..], &varint_bytes(scope.len()), &scope].concat();
        let req = [&[0x0a][..], &varint_bytes(resource.len()), &resource].concat();
        let limits = Limits {
            max_values: usize::MAX,
            ..LIMITS
        };
        assert!(matches!(
            decode_protobuf(&req, &limits),
            Err(Error::Protobuf(_))
        ));
        let deep_json = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(
            decode_json(deep_json.as_bytes(), &LIMITS),
            Err(Error::Json(_))
        ));
    }

    fn varint_bytes(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_varint(n as u64, &mut out);
        out
    }

    #[test]
    fn malformed_protobuf() {
        let good = sample().encode_to_vec();
        // Every truncation of a valid request fails cleanly or decodes a prefix.
        for end in 0..good.len() {
            if let Ok(req) = decode_protobuf(&good[..end], &LIMITS) {
                assert!(to_records(&req).records.len() <= 1);
            }
        }
        for bad in [
            &[0x0a, 0x05, 0x01][..], // length past the end
            &[0x0a, 0x80][..],       // truncated varint
            &[
                0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
            ][..], // overlong
            &[0x0b][..],             // start group
            &[0x0f][..],             // wire type 7
            &[0x02, 0x00][..],       // field 0
            &[0x09, 1, 2][..],       // fixed64 cut short
        ] {
            assert!(
                matches!(decode_protobuf(bad, &LIMITS), Err(Error::Protobuf(_))),
                "{bad:?}"
            );
        }
        // Invalid UTF-8 in a string (the body's string_value): prost refuses the request.
        let mut req = request(
            Vec::new(),
            None,
            vec![LogRecord {
                body: text("ab"),
                ..LogRecord::default()
            }],
        );
        let mut bytes = req.encode_to_vec();
        let at = bytes.windows(2).position(|w| w == b"ab").unwrap();
        bytes[at] = 0xff;
        assert!(matches!(
            decode_protobuf(&bytes, &LIMITS),
            Err(Error::Protobuf(_))
        ));
        // Unknown fields are skipped, as protobuf does.
        req.resource_logs[0].schema_url = "x".into();
        let mut bytes = req.encode_to_vec();
        bytes.extend_from_slice(&[0x78, 0x01]); // field 15, varint
        assert_eq!(decode_protobuf(&bytes, &LIMITS).unwrap(), req);
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(data).unwrap();
        z.finish().unwrap()
    }

    #[test]
    fn gzip_limit_applies_to_the_inflated_size() {
        let body = sample().encode_to_vec();
        assert_eq!(gunzip(&gzip(&body), &LIMITS).unwrap(), body);
        // 16 MiB of zeros, about 16 KiB compressed, against a 1 MiB limit: refused after
        // inflating at most the limit.
        let bomb = {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..16 {
                z.write_all(&zeros).unwrap();
            }
            z.finish().unwrap()
        };
        assert!(bomb.len() < 1 << 15);
        assert!(matches!(gunzip(&bomb, &LIMITS), Err(Error::TooLarge { max }) if max == 1 << 20));
        assert!(matches!(gunzip(b"not gzip", &LIMITS), Err(Error::Gzip(_))));
    }

    #[test]
    fn responses() {
        assert_eq!(encode_response(0, ""), Vec::<u8>::new());
        assert_eq!(encode_response_json(0, ""), b"{}");
        let bytes = encode_response(2, "2 of 5 log records rejected");
        let decoded = ExportLogsServiceResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(
            decoded.partial_success,
            Some(ExportLogsPartialSuccess {
                rejected_log_records: 2,
                error_message: "2 of 5 log records rejected".into(),
            })
        );
        assert_eq!(
            String::from_utf8(encode_response_json(2, "why")).unwrap(),
            r#"{"partialSuccess":{"errorMessage":"why","rejectedLogRecords":"2"}}"#
        );
        // A warning without rejections, as the specification allows.
        assert_eq!(
            String::from_utf8(encode_response_json(0, "note")).unwrap(),
            r#"{"partialSuccess":{"errorMessage":"note"}}"#
        );
        assert_eq!(
            response(u64::MAX, "")
                .partial_success
                .unwrap()
                .rejected_log_records,
            i64::MAX
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            Error::TooLarge { max: 9 }.to_string(),
            "body larger than 9 bytes (after inflating)"
        );
        assert_eq!(
            Error::TooManyRecords { max: 2 }.to_string(),
            "more than 2 log records in one request"
        );
        let e = decode_json(
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}"#,
            &LIMITS,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid OTLP JSON: traceId: expected hex digits"
        );
    }
}
