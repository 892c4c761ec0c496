//! OTLP's JSON mapping of an `ExportLogsServiceRequest` (lowerCamelCase keys, hex ids, int64 as
//! decimal strings, enums as integers), decoded into the same prost types as the protobuf path,
//! with the same limits counted before anything is built. Split from `otlp.rs`, which maps the
//! request onto records whichever encoding it came in.

use super::*;
/// Decodes an OTLP JSON `ExportLogsServiceRequest` (`application/json`): the protobuf JSON
/// mapping with OTLP's rules. Keys are the lowerCamelCase field names (unknown keys are
/// ignored, as OTLP asks); `traceId` and `spanId` are hex, not base64; 64-bit integers are
/// decimal strings (numbers are accepted too); `severityNumber` is an integer (its enum name is
/// accepted too); `bytesValue` is base64; `null` is the field's default.
///
/// The values are counted by a first pass that allocates nothing, then the document is parsed
/// into a `serde_json::Value` (at most [`Limits::max_values`] of them) and converted.
///
/// # Errors
/// [`Error::TooLarge`], [`Error::TooManyValues`], [`Error::TooManyRecords`], [`Error::Json`].
pub fn decode_json(body: &[u8], limits: &Limits) -> Result<ExportLogsServiceRequest, Error> {
    if body.len() > limits.max_body {
        return Err(Error::TooLarge {
            max: limits.max_body,
        });
    }
    let mut counter = Counter {
        values: 0,
        max: limits.max_values,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let counted = CountSeed(&mut counter)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if counter.values > counter.max {
        return Err(Error::TooManyValues {
            max: limits.max_values,
        });
    }
    counted.map_err(|e| Error::Json(e.to_string()))?;
    let json: Json = serde_json::from_slice(body).map_err(|e| Error::Json(e.to_string()))?;
    let mut records = 0usize;
    let request = ExportLogsServiceRequest {
        resource_logs: list(object(&json, "request")?, "resourceLogs")?
            .iter()
            .map(|v| resource_logs(v, &mut records, limits))
            .collect::<Result<_, _>>()?,
    };
    Ok(request)
}

/// Counts JSON values without building them; stops (with an error) one past the limit.
struct Counter {
    values: usize,
    max: usize,
}

struct CountSeed<'c>(&'c mut Counter);

impl CountSeed<'_> {
    fn tick<E: de::Error>(&mut self) -> Result<(), E> {
        self.0.values = self.0.values.saturating_add(1);
        if self.0.values > self.0.max {
            return Err(E::custom("too many values"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for CountSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CountSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(mut self, _: bool) -> Result<(), E> {
        self.tick()
    }
    fn visit_i64<E: de::Error>(mut self, _: i64) -> Result<(), E> {
        self.tick()
    }
    fn visit_u64<E: de::Error>(mut self, _: u64) -> Result<(), E> {
        self.tick()
    }
    fn visit_f64<E: de::Error>(mut self, _: f64) -> Result<(), E> {
        self.tick()
    }
    fn visit_str<E: de::Error>(mut self, _: &str) -> Result<(), E> {
        self.tick()
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.tick()
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.tick()?;
        while seq.next_element_seed(CountSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.tick()?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(CountSeed(&mut *self.0))?;
        }
        Ok(())
    }
}

fn json_error(field: &str, expected: &str) -> Error {
    Error::Json(format!("{field}: expected {expected}"))
}

fn object<'v>(value: &'v Json, field: &str) -> Result<&'v Map<String, Json>, Error> {
    value
        .as_object()
        .ok_or_else(|| json_error(field, "an object"))
}

/// A field's value; `None` when it is missing or `null` (the default, as in proto3 JSON).
fn get<'v>(map: &'v Map<String, Json>, key: &str) -> Option<&'v Json> {
    map.get(key).filter(|v| !v.is_null())
}

fn list<'v>(map: &'v Map<String, Json>, key: &str) -> Result<&'v [Json], Error> {
    match get(map, key) {
        None => Ok(&[]),
        Some(v) => v
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| json_error(key, "an array")),
    }
}

fn string(map: &Map<String, Json>, key: &str) -> Result<String, Error> {
    match get(map, key) {
        None => Ok(String::new()),
        Some(v) => v
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| json_error(key, "a string")),
    }
}

/// An unsigned integer field (`fixed64`, `uint32`, `fixed32`): a number or a decimal string.
fn unsigned<T: TryFrom<u64>>(map: &Map<String, Json>, key: &str) -> Result<T, Error> {
    let value = match get(map, key) {
        None => 0,
        Some(Json::Number(n)) => n
            .as_u64()
            .ok_or_else(|| json_error(key, "an unsigned integer"))?,
        Some(Json::String(s)) => {
            decimal(s).ok_or_else(|| json_error(key, "an unsigned integer"))?
        }
        Some(_) => return Err(json_error(key, "an unsigned integer")),
    };
    T::try_from(value).map_err(|_| json_error(key, "a smaller integer"))
}

/// Decimal digits only (no sign, no spaces), as the protobuf JSON mapping writes integers.
fn decimal(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// An `int64`: a number or a decimal string with an optional `-`.
fn signed(value: &Json, key: &str) -> Result<i64, Error> {
    let parsed = match value {
        Json::Number(n) => n.as_i64(),
        Json::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        }
        _ => None,
    };
    parsed.ok_or_else(|| json_error(key, "a 64-bit integer"))
}

fn severity_number(map: &Map<String, Json>) -> Result<i32, Error> {
    const KEY: &str = "severityNumber";
    match get(map, KEY) {
        None => Ok(0),
        Some(Json::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| json_error(KEY, "an integer")),
        Some(Json::String(s)) => SeverityNumber::from_str_name(s)
            .map(|n| n as i32)
            .ok_or_else(|| json_error(KEY, "an integer")),
        Some(_) => Err(json_error(KEY, "an integer")),
    }
}

/// A `traceId` or `spanId`: hex (either case), any even length; the length is judged per
/// record (see the module docs).
fn hex_id(map: &Map<String, Json>, key: &str) -> Result<Vec<u8>, Error> {
    let text = string(map, key)?;
    if text.len() % 2 != 0 {
        return Err(json_error(key, "hex digits"));
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16);
            let lo = (pair[1] as char).to_digit(16);
            match (hi, lo) {
                (Some(hi), Some(lo)) => u8::try_from(hi * 16 + lo).ok(),
                _ => None,
            }
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| json_error(key, "hex digits"))
}

fn resource_logs(
    value: &Json,
    records: &mut usize,
    limits: &Limits,
) -> Result<ResourceLogs, Error> {
    let map = object(value, "resourceLogs")?;
    let resource = match get(map, "resource") {
        None => None,
        Some(v) => {
            let r = object(v, "resource")?;
            Some(Resource {
                attributes: key_values(r, "attributes")?,
                dropped_attributes_count: unsigned(r, "droppedAttributesCount")?,
                // Not stored (see the mapping).
                entity_refs: Vec::new(),
            })
        }
    };
    Ok(ResourceLogs {
        resource,
        scope_logs: list(map, "scopeLogs")?
            .iter()
            .map(|v| scope_logs(v, records, limits))
            .collect::<Result<_, _>>()?,
        schema_url: string(map, "schemaUrl")?,
    })
}

fn scope_logs(value: &Json, records: &mut usize, limits: &Limits) -> Result<ScopeLogs, Error> {
    let map = object(value, "scopeLogs")?;
    let scope = match get(map, "scope") {
        None => None,
        Some(v) => {
            let s = object(v, "scope")?;
            Some(InstrumentationScope {
                name: string(s, "name")?,
                version: string(s, "version")?,
                attributes: key_values(s, "attributes")?,
                dropped_attributes_count: unsigned(s, "droppedAttributesCount")?,
            })
        }
    };
    let log_records = list(map, "logRecords")?;
    *records = records.saturating_add(log_records.len());
    if *records > limits.max_records {
        return Err(Error::TooManyRecords {
            max: limits.max_records,
        });
    }
    Ok(ScopeLogs {
        scope,
        log_records: log_records
            .iter()
            .map(log_record)
            .collect::<Result<_, _>>()?,
        schema_url: string(map, "schemaUrl")?,
    })
}

fn log_record(value: &Json) -> Result<LogRecord, Error> {
    let map = object(value, "logRecords")?;
    Ok(LogRecord {
        time_unix_nano: unsigned(map, "timeUnixNano")?,
        observed_time_unix_nano: unsigned(map, "observedTimeUnixNano")?,
        severity_number: severity_number(map)?,
        severity_text: string(map, "severityText")?,
        body: get(map, "body").map(any_value).transpose()?,
        attributes: key_values(map, "attributes")?,
        dropped_attributes_count: unsigned(map, "droppedAttributesCount")?,
        flags: unsigned(map, "flags")?,
        trace_id: hex_id(map, "traceId")?,
        span_id: hex_id(map, "spanId")?,
        event_name: string(map, "eventName")?,
    })
}

fn key_values(map: &Map<String, Json>, key: &str) -> Result<Vec<KeyValue>, Error> {
    list(map, key)?.iter().map(key_value).collect()
}

fn key_value(value: &Json) -> Result<KeyValue, Error> {
    let map = object(value, "attributes")?;
    Ok(KeyValue {
        key: string(map, "key")?,
        value: get(map, "value").map(any_value).transpose()?,
    })
}

/// An `AnyValue`: an object with at most one of the value keys (`{}` is an empty value).
fn any_value(value: &Json) -> Result<AnyValue, Error> {
    use any_value::Value as V;
    let map = object(value, "value")?;
    let mut found = None;
    for (key, v) in map {
        if v.is_null() {
            continue;
        }
        let parsed = match key.as_str() {
            "stringValue" => V::StringValue(
                v.as_str()
                    .ok_or_else(|| json_error(key, "a string"))?
                    .to_owned(),
            ),
            "boolValue" => V::BoolValue(v.as_bool().ok_or_else(|| json_error(key, "a boolean"))?),
            "intValue" => V::IntValue(signed(v, key)?),
            "doubleValue" => V::DoubleValue(double(v).ok_or_else(|| json_error(key, "a number"))?),
            "bytesValue" => V::BytesValue(
                v.as_str()
                    .and_then(|s| STANDARD.decode(s).ok())
                    .ok_or_else(|| json_error(key, "base64"))?,
            ),
            "arrayValue" => V::ArrayValue(ArrayValue {
                values: list(object(v, key)?, "values")?
                    .iter()
                    .map(any_value)
                    .collect::<Result<_, _>>()?,
            }),
            "kvlistValue" => V::KvlistValue(KeyValueList {
                values: key_values(object(v, key)?, "values")?,
            }),
            // Unknown keys are ignored, as OTLP asks of receivers.
            _ => continue,
        };
        if found.is_some() {
            return Err(Error::Json("value: more than one of its value keys".into()));
        }
        found = Some(parsed);
    }
    Ok(AnyValue { value: found })
}

/// A `double`: a number, or the protobuf JSON mapping's strings (`"NaN"`, `"Infinity"`,
/// `"-Infinity"`, or a number in quotes).
fn double(value: &Json) -> Option<f64> {
    match value {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            other => serde_json::from_str::<serde_json::Number>(other)
                .ok()
                .and_then(|n| n.as_f64()),
        },
        _ => None,
    }
}
