//! Records into an OTLP `ExportLogsServiceRequest`: the inverse of the mapping in
//! [`super`] (the table there), for forwarding stored records to an OpenTelemetry Collector or
//! to another logmill's OTLP receiver. Pure: records in, protobuf bytes out.
//!
//! | logmill record | OTLP |
//! |---|---|
//! | `timestamp_ns` | `time_unix_nano` |
//! | level | `severity_number` (trace 1, debug 5, info 9, notice 10, warning 13, error 17, critical 21, alert 22, emergency 23) and `severity_text` (the level's name) |
//! | message | `body` string |
//! | JSON body | `body` key/value list |
//! | `service`, `host` | resource attributes `service.name`, `host.name` |
//! | `logger` | scope `name` |
//! | fields | attributes: strings, ints, doubles, bools as such; JSON values as key/value lists and arrays |
//! | fields `trace_id`, `span_id` (hex), `trace_flags`, `event_name`, `severity_text` | the record's own `trace_id`, `span_id`, `flags`, `event_name`, `severity_text` |
//! | `module`, `file`, `line`, `function`, `process`, `pid`, `thread`, `tid`, `stack_trace` | attributes `code.namespace`, `code.filepath`, `code.lineno`, `code.function`, `process.executable.name`, `process.pid`, `thread.name`, `thread.id`, `exception.stacktrace` |
//!
//! Consecutive records with the same service and host share a `ResourceLogs`, and with the same
//! logger too a `ScopeLogs`, so a batch from one application is one resource and one scope.

use prost::Message as _;
use serde_json::Value as Json;

use super::proto::collector::logs::v1::ExportLogsServiceRequest;
use super::proto::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use super::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use super::proto::resource::v1::Resource;
use crate::record::{Body, Level, Record, Value};

/// Builds one request, record by record.
#[derive(Default)]
pub struct Encoder {
    request: ExportLogsServiceRequest,
    records: usize,
    /// The records' encoded sizes added up (the request's framing adds a little more).
    bytes: usize,
}

/// The OTLP severity number of a level.
pub fn severity_number(level: Level) -> i32 {
    match level {
        Level::Trace => 1,
        Level::Debug => 5,
        Level::Info => 9,
        Level::Notice => 10,
        Level::Warning => 13,
        Level::Error => 17,
        Level::Critical => 21,
        Level::Alert => 22,
        Level::Emergency => 23,
    }
}

fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_string())),
    }
}

fn key_value(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
    }
}

/// A JSON value as an `AnyValue`: objects as key/value lists, arrays as arrays, `null` as an
/// empty value.
fn json_value(v: &Json) -> AnyValue {
    let value = match v {
        Json::Null => None,
        Json::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Some(any_value::Value::IntValue(i)),
            (None, Some(f)) if !n.is_u64() => Some(any_value::Value::DoubleValue(f)),
            _ => Some(any_value::Value::StringValue(n.to_string())),
        },
        Json::String(s) => Some(any_value::Value::StringValue(s.clone())),
        Json::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(json_value).collect(),
        })),
        Json::Object(map) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: map
                .iter()
                .map(|(k, v)| key_value(k, json_value(v)))
                .collect(),
        })),
    };
    AnyValue { value }
}

fn field_value(v: &Value<'_>) -> AnyValue {
    let value = match v {
        Value::Str(s) => Some(any_value::Value::StringValue(s.to_string())),
        Value::Int(i) => Some(any_value::Value::IntValue(*i)),
        Value::Float(f) => Some(any_value::Value::DoubleValue(*f)),
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Null => None,
        Value::Json(text) => match serde_json::from_str::<Json>(text.as_str()) {
            Ok(json) => return json_value(&json),
            Err(_) => Some(any_value::Value::StringValue(text.as_str().to_string())),
        },
    };
    AnyValue { value }
}

/// Lower-case hex to bytes; `None` unless it is exactly `len` bytes of hex.
fn unhex(text: &str, len: usize) -> Option<Vec<u8>> {
    if text.len() != len * 2 {
        return None;
    }
    (0..len)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Appends `record`, with `extra` attributes first (the forwarder's: node, bucket, seq).
    pub fn push(&mut self, record: &Record<'_>, extra: Vec<KeyValue>) {
        let mut log = LogRecord {
            time_unix_nano: record.timestamp_ns,
            severity_number: severity_number(record.level),
            severity_text: record.level.as_str().to_string(),
            attributes: extra,
            ..LogRecord::default()
        };
        log.body = Some(match &record.body {
            Body::Message(m) => string(m),
            Body::Json(text) => match serde_json::from_str::<Json>(text) {
                Ok(json) => json_value(&json),
                Err(_) => string(text),
            },
        });
        for (key, value) in [
            ("code.namespace", &record.module),
            ("code.filepath", &record.file),
            ("code.function", &record.function),
            ("process.executable.name", &record.process_name),
            ("thread.name", &record.thread_name),
            ("exception.stacktrace", &record.stack_trace),
        ] {
            if !value.is_empty() {
                log.attributes.push(key_value(key, string(value)));
            }
        }
        for (key, value) in [
            ("code.lineno", i64::from(record.line)),
            ("process.pid", i64::from(record.process_id)),
            (
                "thread.id",
                i64::try_from(record.thread_id).unwrap_or(i64::MAX),
            ),
        ] {
            if value != 0 {
                let int = AnyValue {
                    value: Some(any_value::Value::IntValue(value)),
                };
                log.attributes.push(key_value(key, int));
            }
        }
        for (key, value) in &record.fields {
            let text = value.as_str();
            match (key.as_ref(), text) {
                ("trace_id", Some(hex)) if unhex(hex, 16).is_some() => {
                    log.trace_id = unhex(hex, 16).unwrap_or_default();
                }
                ("span_id", Some(hex)) if unhex(hex, 8).is_some() => {
                    log.span_id = unhex(hex, 8).unwrap_or_default();
                }
                ("trace_flags", _) if matches!(value, Value::Int(0..=255)) => {
                    if let Value::Int(flags) = value {
                        log.flags = u32::try_from(*flags).unwrap_or(0);
                    }
                }
                ("event_name", Some(name)) => log.event_name = name.to_string(),
                ("severity_text", Some(text)) => log.severity_text = text.to_string(),
                _ => log.attributes.push(key_value(key, field_value(value))),
            }
        }
        self.bytes += log.encoded_len() + 4;
        self.records += 1;
        let scope = self.scope_for(&record.service, &record.host, &record.logger);
        scope.log_records.push(log);
    }

    /// The `ScopeLogs` the next record of (service, host, logger) goes into: the last one when
    /// it matches, else a new one (and a new `ResourceLogs` when service or host differ).
    fn scope_for(&mut self, service: &str, host: &str, logger: &str) -> &mut ScopeLogs {
        let same_resource = self.request.resource_logs.last().is_some_and(|r| {
            let attrs = r.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            attribute(attrs, "service.name") == service && attribute(attrs, "host.name") == host
        });
        if !same_resource {
            let mut attributes = Vec::new();
            if !service.is_empty() {
                attributes.push(key_value("service.name", string(service)));
            }
            if !host.is_empty() {
                attributes.push(key_value("host.name", string(host)));
            }
            self.request.resource_logs.push(ResourceLogs {
                resource: Some(Resource {
                    attributes,
                    ..Resource::default()
                }),
                ..ResourceLogs::default()
            });
        }
        let resource = self
            .request
            .resource_logs
            .last_mut()
            .expect("a resource was pushed above");
        let same_scope = resource
            .scope_logs
            .last()
            .is_some_and(|s| s.scope.as_ref().map_or("", |s| s.name.as_str()) == logger);
        if !same_scope || !same_resource {
            resource.scope_logs.push(ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: logger.to_string(),
                    ..InstrumentationScope::default()
                }),
                ..ScopeLogs::default()
            });
        }
        resource
            .scope_logs
            .last_mut()
            .expect("a scope was pushed above")
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// About the encoded size (the records' sizes).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The request's protobuf bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.request.encode_to_vec()
    }

    pub fn clear(&mut self) {
        self.request.resource_logs.clear();
        self.records = 0;
        self.bytes = 0;
    }
}

/// The string value of `key` among `attrs` ("" when absent).
fn attribute<'a>(attrs: &'a [KeyValue], key: &str) -> &'a str {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::protocol::otlp::{Limits, decode_protobuf, to_records};

    /// Encoded, then decoded by the receiver's own mapping: the record comes back.
    #[test]
    fn a_record_survives_the_round_trip_through_the_receiver_mapping() {
        let record = Record {
            timestamp_ns: 1_795_307_173_123_456_000,
            level: Level::Warning,
            body: Body::Message(Cow::Borrowed("disk almost full")),
            logger: Cow::Borrowed("app.disk"),
            service: Cow::Borrowed("billing"),
            host: Cow::Borrowed("web-1"),
            fields: vec![
                (Cow::Borrowed("pct"), Value::Int(93)),
                (Cow::Borrowed("mount"), Value::Str(Cow::Borrowed("/var"))),
                (
                    Cow::Borrowed("trace_id"),
                    Value::Str(Cow::Borrowed("0102030405060708090a0b0c0d0e0f10")),
                ),
                (
                    Cow::Borrowed("span_id"),
                    Value::Str(Cow::Borrowed("0102030405060708")),
                ),
            ],
            ..Record::default()
        };
        let mut encoder = Encoder::new();
        encoder.push(&record, vec![key_value("logmill.seq", string("7"))]);
        encoder.push(&record, Vec::new());
        assert_eq!(encoder.records(), 2);
        let bytes = encoder.encode();
        let request = decode_protobuf(&bytes, &Limits::new(1 << 20)).unwrap();
        assert_eq!(
            request.resource_logs.len(),
            1,
            "one resource for one service"
        );
        let export = to_records(&request);
        assert_eq!(export.records.len(), 2);
        let back = &export.records[1];
        assert_eq!(back.timestamp_ns, record.timestamp_ns);
        assert_eq!(back.level, Level::Warning);
        assert_eq!(back.body, record.body);
        assert_eq!(
            (&*back.service, &*back.host, &*back.logger),
            ("billing", "web-1", "app.disk")
        );
        assert_eq!(back.field("pct"), Some(&Value::Int(93)));
        assert_eq!(back.field("mount").and_then(Value::as_str), Some("/var"));
        assert_eq!(
            back.field("trace_id").and_then(Value::as_str),
            Some("0102030405060708090a0b0c0d0e0f10")
        );
        assert_eq!(
            export.records[0]
                .field("logmill.seq")
                .and_then(Value::as_str),
            Some("7")
        );
        encoder.clear();
        assert_eq!((encoder.records(), encoder.bytes()), (0, 0));
    }
}
