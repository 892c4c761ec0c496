//! The fast path of OTLP protobuf decoding: an `ExportLogsServiceRequest` read straight from
//! its bytes into [`Record`]s that borrow their strings from the body, without building prost's
//! structs first.
//!
//! prost allocates a `String` or `Vec` for every key, value, body and id and a struct for every
//! message, then [`to_records`](super::to_records) borrows from those: under `bench --proto
//! otlp-*` malloc and free were about a quarter of the server's time. Here each message is
//! walked once on the wire; strings are checked as UTF-8 and borrowed. Per record the only
//! allocations are the record's `fields` vector and the hex text of its trace and span ids
//! (plus what a value that is not a plain scalar needs: base64 of bytes, JSON of arrays and
//! key/value lists).
//!
//! prost ([`decode_protobuf`](super::decode_protobuf) then `to_records`) stays the reference: the
//! unit tests below, `tests/otlp_fast.rs` and the `otlp` fuzz target check that both give the
//! same [`Export`] for every input, or both an error of the same kind. So this file follows
//! prost's rules, not only the protobuf spec's:
//!
//! - every field is checked, including fields the mapping ignores (a `schema_url`, an
//!   `EntityRef`) and records that end up rejected: a wrong wire type for a known field, a
//!   string that is not UTF-8, a varint longer than 10 bytes or past 64 bits fail the request;
//! - unknown fields are skipped (groups were already refused by [`scan`](super::scan));
//! - a scalar or string given twice keeps the last; a message given twice is merged, which is
//!   decoding its occurrences as one message, their fields one after the other ([`Merged`]);
//!   in `AnyValue`'s oneof, a member replaces another, and an array or key/value list given
//!   again after itself is extended;
//! - the recursion limit: a message may be entered at most [`MAX_DEPTH`] levels down, and an
//!   unknown field is refused in a message at that depth (prost's `skip_field` checks it).
//!
//! The limits are [`decode_records`](super::decode_records)'s, which runs [`scan`](super::scan)
//! only where its verdict could differ from this file's: this file counts the records (and
//! stops past [`Limits::max_records`]), and returns [`Error::Protobuf`] or
//! [`Error::TooManyRecords`].

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value as Json;

use super::{Error, Export, Limits, MAX_DEPTH, Scalars, rejection_summary, unstorable};
use crate::record::{Body, Record, Value};

type Field<'a> = (Cow<'a, str>, Value<'a>);

// ---------------------------------------------------------------------------------------------
// The wire format
// ---------------------------------------------------------------------------------------------

/// A field's value as the wire carries it.
#[derive(Clone, Copy, Debug)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
}

fn invalid(what: &str) -> Error {
    Error::Protobuf(what.to_string())
}

/// A varint as prost reads it: at most 10 bytes, the 10th below 2 (no bits past 64).
#[inline]
fn varint(rest: &mut &[u8]) -> Result<u64, Error> {
    if let Some((&byte, after)) = rest.split_first()
        && byte < 0x80
    {
        *rest = after;
        return Ok(u64::from(byte));
    }
    let mut value = 0u64;
    for (i, &byte) in rest.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if i == 9 && byte >= 2 {
                break;
            }
            *rest = &rest[i + 1..];
            return Ok(value);
        }
    }
    Err(invalid("invalid varint"))
}

/// The next field of a message, advancing `rest` past it; `None` at the end.
#[inline]
fn next_field<'a>(rest: &mut &'a [u8]) -> Result<Option<(u32, Wire<'a>)>, Error> {
    if rest.is_empty() {
        return Ok(None);
    }
    let key = varint(rest)?;
    let key = u32::try_from(key).map_err(|_| invalid("invalid key"))?;
    let tag = key >> 3;
    if tag == 0 {
        return Err(invalid("invalid tag 0"));
    }
    let wire = match key & 7 {
        0 => Wire::Varint(varint(rest)?),
        1 => {
            let (bytes, after) = rest
                .split_first_chunk::<8>()
                .ok_or_else(|| invalid("buffer underflow"))?;
            *rest = after;
            Wire::Fixed64(u64::from_le_bytes(*bytes))
        }
        5 => {
            let (bytes, after) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| invalid("buffer underflow"))?;
            *rest = after;
            Wire::Fixed32(u32::from_le_bytes(*bytes))
        }
        2 => {
            let len = varint(rest)?;
            let len = usize::try_from(len)
                .ok()
                .filter(|&len| len <= rest.len())
                .ok_or_else(|| invalid("buffer underflow"))?;
            let (bytes, after) = rest.split_at(len);
            *rest = after;
            Wire::Len(bytes)
        }
        _ => return Err(invalid("groups or an invalid wire type")),
    };
    Ok(Some((tag, wire)))
}

/// A known field's value must have the wire type of its declared type.
fn wrong_type() -> Error {
    invalid("a field with the wrong wire type")
}

#[inline]
fn len(wire: Wire<'_>) -> Result<&[u8], Error> {
    match wire {
        Wire::Len(bytes) => Ok(bytes),
        _ => Err(wrong_type()),
    }
}

#[inline]
fn string(wire: Wire<'_>) -> Result<&str, Error> {
    simdutf8::basic::from_utf8(len(wire)?).map_err(|_| invalid("a string that is not UTF-8"))
}

#[inline]
fn varint_value(wire: Wire<'_>) -> Result<u64, Error> {
    match wire {
        Wire::Varint(v) => Ok(v),
        _ => Err(wrong_type()),
    }
}

#[inline]
fn fixed64(wire: Wire<'_>) -> Result<u64, Error> {
    match wire {
        Wire::Fixed64(v) => Ok(v),
        _ => Err(wrong_type()),
    }
}

#[inline]
fn fixed32(wire: Wire<'_>) -> Result<u32, Error> {
    match wire {
        Wire::Fixed32(v) => Ok(v),
        _ => Err(wrong_type()),
    }
}

/// A message field's bytes, entered from a message at `depth`: the depth its fields are at.
#[inline]
fn message(wire: Wire<'_>, depth: usize) -> Result<(&[u8], usize), Error> {
    let bytes = len(wire)?;
    if depth >= MAX_DEPTH {
        return Err(invalid("recursion limit reached"));
    }
    Ok((bytes, depth + 1))
}

/// An unknown field in a message at `depth`: skipped, unless at the recursion limit.
#[inline]
fn unknown(depth: usize) -> Result<(), Error> {
    if depth >= MAX_DEPTH {
        return Err(invalid("recursion limit reached"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Merged messages
// ---------------------------------------------------------------------------------------------

/// A non-repeated message field, which may occur more than once: prost merges the occurrences,
/// which is the same as decoding their fields one after the other. The common case, one
/// occurrence, is its bytes; more are found again in the parent message (already checked).
#[derive(Clone, Copy, Debug, Default)]
enum Merged<'a> {
    #[default]
    Absent,
    One(&'a [u8]),
    Many {
        parent: &'a [u8],
        field: u32,
    },
}

impl<'a> Merged<'a> {
    fn add(&mut self, bytes: &'a [u8], parent: &'a [u8], field: u32) {
        *self = match self {
            Merged::Absent => Merged::One(bytes),
            _ => Merged::Many { parent, field },
        };
    }

    fn fields(self) -> Fields<'a> {
        match self {
            Merged::Absent => Fields {
                current: &[],
                parent: &[],
                field: 0,
            },
            Merged::One(bytes) => Fields {
                current: bytes,
                parent: &[],
                field: 0,
            },
            Merged::Many { parent, field } => Fields {
                current: &[],
                parent,
                field,
            },
        }
    }
}

/// The fields of a [`Merged`] message, occurrence after occurrence.
struct Fields<'a> {
    current: &'a [u8],
    /// The rest of the parent, where the next occurrences of `field` are.
    parent: &'a [u8],
    field: u32,
}

impl<'a> Fields<'a> {
    #[inline]
    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, Error> {
        loop {
            if !self.current.is_empty() {
                return next_field(&mut self.current);
            }
            loop {
                match next_field(&mut self.parent)? {
                    None => return Ok(None),
                    Some((field, Wire::Len(bytes))) if field == self.field => {
                        self.current = bytes;
                        break;
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// An `AnyValue`: the oneof member its fields leave set.
#[derive(Clone, Copy, Debug)]
enum Any<'a> {
    None,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// An `ArrayValue`: the elements of every field 5 from the `from`-th field of the value on.
    Array(Run<'a>),
    /// A `KeyValueList`, as `Array` (field 6).
    Kvlist(Run<'a>),
}

/// The occurrences of an array or key/value list member that prost merges into one: from the
/// field that set the member to the end of the value (another member would have replaced it).
#[derive(Clone, Copy, Debug)]
struct Run<'a> {
    value: Merged<'a>,
    from: usize,
}

impl<'a> Run<'a> {
    /// The repeated field 1 of each occurrence of field `member`: the array's `AnyValue`s or
    /// the list's `KeyValue`s, in order.
    fn items(
        self,
        member: u32,
        mut each: impl FnMut(&'a [u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut fields = self.value.fields();
        let mut ordinal = 0;
        while let Some((field, wire)) = fields.next()? {
            ordinal += 1;
            if ordinal <= self.from || field != member {
                continue;
            }
            let mut items = len(wire)?;
            while let Some((item, wire)) = next_field(&mut items)? {
                if item == 1 {
                    each(len(wire)?)?;
                }
            }
        }
        Ok(())
    }
}

/// How deep [`any_value`] looks.
#[derive(Clone, Copy)]
enum Check {
    /// Every field, nested arrays and lists included, for a value at this depth.
    Deep(usize),
    /// Only the value's own fields, of a value already checked deep.
    Shallow,
}

/// Reads an `AnyValue` (its occurrences merged).
fn any_value(value: Merged<'_>, check: Check) -> Result<Any<'_>, Error> {
    let mut any = Any::None;
    let mut fields = value.fields();
    let mut ordinal = 0;
    while let Some((field, wire)) = fields.next()? {
        ordinal += 1;
        match field {
            1 => any = Any::Str(string(wire)?),
            2 => any = Any::Bool(varint_value(wire)? != 0),
            3 => any = Any::Int(varint_value(wire)? as i64),
            4 => any = Any::Double(f64::from_bits(fixed64(wire)?)),
            5 | 6 => {
                let bytes = len(wire)?;
                if let Check::Deep(depth) = check {
                    let (bytes, depth) = message(Wire::Len(bytes), depth)?;
                    check_list(bytes, field == 6, depth)?;
                }
                let run = Run {
                    value,
                    from: ordinal - 1,
                };
                any = match (any, field) {
                    (Any::Array(_), 5) | (Any::Kvlist(_), 6) => any,
                    (_, 5) => Any::Array(run),
                    _ => Any::Kvlist(run),
                };
            }
            7 => any = Any::Bytes(len(wire)?),
            _ => {
                if let Check::Deep(depth) = check {
                    unknown(depth)?;
                }
            }
        }
    }
    Ok(any)
}

/// Checks an `ArrayValue` (`kvlist` false) or a `KeyValueList` whose fields are at `depth`.
fn check_list(mut bytes: &[u8], kvlist: bool, depth: usize) -> Result<(), Error> {
    while let Some((field, wire)) = next_field(&mut bytes)? {
        if field != 1 {
            unknown(depth)?;
            continue;
        }
        let (item, depth) = message(wire, depth)?;
        if kvlist {
            key_value(item, depth)?;
        } else {
            any_value(Merged::One(item), Check::Deep(depth))?;
        }
    }
    Ok(())
}

/// A `KeyValue` whose fields are at `depth`, checked deep: its key and its value.
fn key_value(bytes: &[u8], depth: usize) -> Result<(&str, Any<'_>), Error> {
    let (key, value) = key_value_shallow(bytes, Some(depth))?;
    let any = match value {
        Merged::Absent => Any::None,
        value => any_value(value, Check::Deep(depth + 1))?,
    };
    Ok((key, any))
}

/// A `KeyValue`'s key (the last one given) and its value's occurrences; `depth` checks the
/// fields (`None`: already checked).
fn key_value_shallow(bytes: &[u8], depth: Option<usize>) -> Result<(&str, Merged<'_>), Error> {
    let mut key = "";
    let mut value = Merged::Absent;
    let mut rest = bytes;
    while let Some((field, wire)) = next_field(&mut rest)? {
        match field {
            1 => key = string(wire)?,
            2 => {
                let inner = match depth {
                    Some(depth) => message(wire, depth)?.0,
                    None => len(wire)?,
                };
                value.add(inner, bytes, 2);
            }
            _ => {
                if let Some(depth) = depth {
                    unknown(depth)?;
                }
            }
        }
    }
    Ok((key, value))
}

/// An attribute's value, as `otlp::value` maps it.
fn value(any: Any<'_>) -> Result<Value<'_>, Error> {
    Ok(match any {
        Any::None => Value::Null,
        Any::Str(s) => Value::Str(Cow::Borrowed(s)),
        Any::Bool(b) => Value::Bool(b),
        Any::Int(i) => Value::Int(i),
        Any::Double(f) => Value::Float(f),
        Any::Bytes(b) => Value::Str(Cow::Owned(STANDARD.encode(b))),
        Any::Array(_) | Any::Kvlist(_) => Value::from_json(to_json(any)?),
    })
}

/// A value as JSON, as `otlp::to_json` spells it.
fn to_json(any: Any<'_>) -> Result<Json, Error> {
    Ok(match any {
        Any::None => Json::Null,
        Any::Str(s) => Json::String(s.to_owned()),
        Any::Bool(b) => Json::Bool(b),
        Any::Int(i) => Json::from(i),
        Any::Double(f) => Json::from(f),
        Any::Bytes(b) => Json::String(STANDARD.encode(b)),
        Any::Array(run) => {
            let mut items = Vec::new();
            run.items(5, |item| {
                items.push(to_json(any_value(Merged::One(item), Check::Shallow)?)?);
                Ok(())
            })?;
            Json::Array(items)
        }
        Any::Kvlist(run) => {
            let mut pairs = Vec::new();
            run.items(6, |item| {
                let (key, value) = key_value_shallow(item, None)?;
                let value = match value {
                    Merged::Absent => Any::None,
                    value => any_value(value, Check::Shallow)?,
                };
                pairs.push((key.to_owned(), to_json(value)?));
                Ok(())
            })?;
            // Collected as `otlp::to_json` does, so a key given twice keeps the same place.
            Json::Object(pairs.into_iter().collect())
        }
    })
}

/// The body, as `otlp::body` maps it.
fn body(any: Any<'_>) -> Result<Body<'_>, Error> {
    Ok(match any {
        Any::None => Body::Message(Cow::Borrowed("")),
        Any::Str(s) => Body::Message(Cow::Borrowed(s)),
        Any::Kvlist(_) => Body::Json(Cow::Owned(to_json(any)?.to_string())),
        _ => Body::Message(Cow::Owned(value(any)?.to_string())),
    })
}

// ---------------------------------------------------------------------------------------------
// The request
// ---------------------------------------------------------------------------------------------

/// The records of a protobuf `ExportLogsServiceRequest`: the same [`Export`] as
/// `to_records(&decode_protobuf(body)?)`.
///
/// # Errors
/// [`Error::Protobuf`] where prost refuses the bytes; [`Error::TooManyRecords`] past
/// `limits.max_records` (the other limits are the caller's).
pub(super) fn export<'a>(body: &'a [u8], limits: &Limits) -> Result<Export<'a>, Error> {
    let mut request = Request {
        export: Export::default(),
        first_rejection: None,
        records: 0,
        max_records: limits.max_records,
    };
    let mut rest = body;
    let mut r = 0usize;
    while let Some((field, wire)) = next_field(&mut rest)? {
        if field == 1 {
            let (bytes, depth) = message(wire, 0)?;
            resource_logs(bytes, depth, r, &mut request)?;
            r += 1;
        } else {
            unknown(0)?;
        }
    }
    let mut export = request.export;
    if let Some(first) = request.first_rejection {
        export.error_message = rejection_summary(&export, &first);
    }
    Ok(export)
}

/// A request being read: its records so far, and how many `LogRecord`s it holds so far.
struct Request<'a> {
    export: Export<'a>,
    first_rejection: Option<String>,
    records: usize,
    max_records: usize,
}

/// What a resource or a scope gives each of its records.
#[derive(Default)]
struct Inherited<'a> {
    service: &'a str,
    host: &'a str,
    logger: &'a str,
    fields: Vec<Field<'a>>,
}

/// A `ResourceLogs` whose fields are at `depth`, the `r`-th of the request.
fn resource_logs<'a>(
    bytes: &'a [u8],
    depth: usize,
    r: usize,
    request: &mut Request<'a>,
) -> Result<(), Error> {
    // The resource may come after the scopes on the wire: find it first.
    let mut resource = Merged::Absent;
    let mut rest = bytes;
    while let Some((field, wire)) = next_field(&mut rest)? {
        match field {
            1 => resource.add(message(wire, depth)?.0, bytes, 1),
            2 => {
                message(wire, depth)?;
            }
            3 => {
                string(wire)?;
            }
            _ => unknown(depth)?,
        }
    }
    let mut inherited = Inherited::default();
    let mut fields = resource.fields();
    while let Some((field, wire)) = fields.next()? {
        let depth = depth + 1;
        match field {
            1 => {
                let (bytes, depth) = message(wire, depth)?;
                match key_value(bytes, depth)? {
                    ("service.name", Any::Str(s)) => inherited.service = s,
                    ("host.name", Any::Str(s)) => inherited.host = s,
                    (key, any) => inherited.fields.push((Cow::Borrowed(key), value(any)?)),
                }
            }
            2 => {
                varint_value(wire)?;
            }
            3 => {
                let (bytes, depth) = message(wire, depth)?;
                entity_ref(bytes, depth)?;
            }
            _ => unknown(depth)?,
        }
    }
    let mut rest = bytes;
    let mut s = 0usize;
    while let Some((field, wire)) = next_field(&mut rest)? {
        if field == 2 {
            let (bytes, depth) = message(wire, depth)?;
            scope_logs(bytes, depth, (r, s), &inherited, request)?;
            s += 1;
        }
    }
    Ok(())
}

/// An `EntityRef` (not stored), checked as prost would decode it.
fn entity_ref(mut bytes: &[u8], depth: usize) -> Result<(), Error> {
    while let Some((field, wire)) = next_field(&mut bytes)? {
        match field {
            1..=4 => {
                string(wire)?;
            }
            _ => unknown(depth)?,
        }
    }
    Ok(())
}

/// A `ScopeLogs` whose fields are at `depth`, the `s`-th of the `r`-th `ResourceLogs`.
fn scope_logs<'a>(
    bytes: &'a [u8],
    depth: usize,
    (r, s): (usize, usize),
    resource: &Inherited<'a>,
    request: &mut Request<'a>,
) -> Result<(), Error> {
    let mut scope = Merged::Absent;
    let mut records = 0usize;
    let mut rest = bytes;
    while let Some((field, wire)) = next_field(&mut rest)? {
        match field {
            1 => scope.add(message(wire, depth)?.0, bytes, 1),
            2 => {
                message(wire, depth)?;
                records += 1;
                request.records += 1;
                if request.records > request.max_records {
                    return Err(Error::TooManyRecords {
                        max: request.max_records,
                    });
                }
            }
            3 => {
                string(wire)?;
            }
            _ => unknown(depth)?,
        }
    }
    let mut inherited = Inherited {
        fields: resource.fields.clone(),
        ..*resource
    };
    let mut version = "";
    let mut fields = scope.fields();
    while let Some((field, wire)) = fields.next()? {
        let depth = depth + 1;
        match field {
            1 => inherited.logger = string(wire)?,
            2 => version = string(wire)?,
            3 => {
                let (bytes, depth) = message(wire, depth)?;
                let (key, any) = key_value(bytes, depth)?;
                inherited.fields.push((Cow::Borrowed(key), value(any)?));
            }
            4 => {
                varint_value(wire)?;
            }
            _ => unknown(depth)?,
        }
    }
    if !version.is_empty() {
        inherited.fields.push((
            Cow::Borrowed("otel.scope.version"),
            Value::Str(Cow::Borrowed(version)),
        ));
    }
    request.export.records.reserve(records);
    let mut rest = bytes;
    let mut l = 0usize;
    while let Some((field, wire)) = next_field(&mut rest)? {
        if field != 2 {
            continue;
        }
        let (bytes, depth) = message(wire, depth)?;
        match log_record(bytes, depth, &inherited)? {
            Ok(record) => request.export.records.push(record),
            Err(reason) => {
                request.export.rejected += 1;
                request.first_rejection.get_or_insert_with(|| {
                    format!("resource_logs[{r}].scope_logs[{s}].log_records[{l}]: {reason}")
                });
            }
        }
        l += 1;
    }
    Ok(())
}

/// A `LogRecord` whose fields are at `depth`: its record, or why it cannot be stored.
fn log_record<'a>(
    bytes: &'a [u8],
    depth: usize,
    inherited: &Inherited<'a>,
) -> Result<Result<Record<'a>, String>, Error> {
    let mut scalars = Scalars::default();
    let mut body_value = Merged::Absent;
    // The inherited fields, then the attributes in wire order, then what `Scalars` adds.
    let mut fields = Vec::with_capacity(inherited.fields.len() + 8);
    fields.extend_from_slice(&inherited.fields);
    let mut rest = bytes;
    while let Some((field, wire)) = next_field(&mut rest)? {
        match field {
            1 => scalars.time_unix_nano = fixed64(wire)?,
            2 => scalars.severity_number = varint_value(wire)? as i32,
            3 => scalars.severity_text = string(wire)?,
            5 => body_value.add(message(wire, depth)?.0, bytes, 5),
            6 => {
                let (bytes, depth) = message(wire, depth)?;
                let (key, any) = key_value(bytes, depth)?;
                fields.push((Cow::Borrowed(key), value(any)?));
            }
            7 => {
                varint_value(wire)?;
            }
            8 => scalars.flags = fixed32(wire)?,
            9 => scalars.trace_id = len(wire)?,
            10 => scalars.span_id = len(wire)?,
            11 => scalars.observed_time_unix_nano = fixed64(wire)?,
            12 => scalars.event_name = string(wire)?,
            _ => unknown(depth)?,
        }
    }
    let body_value = match body_value {
        Merged::Absent => Any::None,
        value => any_value(value, Check::Deep(depth + 1))?,
    };
    if let Some(reason) = unstorable(scalars.trace_id, scalars.span_id) {
        return Ok(Err(reason));
    }
    let level = scalars.finish(&mut fields);
    Ok(Ok(Record {
        timestamp_ns: scalars.timestamp_ns(),
        level,
        body: body(body_value)?,
        fields,
        service: Cow::Borrowed(inherited.service),
        host: Cow::Borrowed(inherited.host),
        logger: Cow::Borrowed(inherited.logger),
        ..Record::default()
    }))
}
