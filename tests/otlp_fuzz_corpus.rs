//! The `otlp` fuzz target's corpus under `cargo test`: every file of `fuzz/corpus/otlp/` replayed
//! through the harness the target runs (`fuzz/otlp_harness.rs`), and the seeds, made from the real
//! encoders (protobuf) or written as an OTLP/JSON exporter writes them, checked to do what their
//! names say. To rewrite the seeds after a change:
//! `LOGMILL_WRITE_CORPUS=1 cargo test --test otlp_fuzz_corpus`.

#[path = "common/corpus.rs"]
mod corpus;

#[path = "../fuzz/otlp_harness.rs"]
mod otlp_harness;

use std::io::Write as _;

use logmill::protocol::otlp::proto::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use logmill::protocol::otlp::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use logmill::protocol::otlp::proto::resource::v1::Resource;
use logmill::protocol::otlp::{self, ExportLogsServiceRequest};
use otlp_harness::{OtlpOutcome, control};

#[test]
fn replay_fuzz_corpus() {
    corpus::replay("otlp", |data| {
        otlp_harness::otlp(data);
    });
}

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
    }
}

fn request(logs: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", text("checkout")),
                    kv("host.name", text("web-1")),
                ],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "app".into(),
                    version: "1.0".into(),
                    ..InstrumentationScope::default()
                }),
                log_records: logs,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn sample() -> ExportLogsServiceRequest {
    let nested = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![
                kv("user", text("ann")),
                kv(
                    "ids",
                    Some(AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![text("a").unwrap(), AnyValue::default()],
                        })),
                    }),
                ),
            ],
        })),
    };
    request(vec![
        LogRecord {
            time_unix_nano: 1_700_000_000_000_000_001,
            severity_number: 13,
            severity_text: "WARNING".into(),
            body: text("disk almost full"),
            attributes: vec![kv("disk", text("/var"))],
            flags: 1,
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            ..LogRecord::default()
        },
        LogRecord {
            observed_time_unix_nano: 1_700_000_000_000_000_002,
            severity_text: "Audit".into(),
            body: Some(nested),
            event_name: "login".into(),
            ..LogRecord::default()
        },
    ])
}

const SAMPLE_JSON: &str = r#"{"resourceLogs":[{"resource":{"attributes":[
{"key":"service.name","value":{"stringValue":"checkout"}}]},"scopeLogs":[{"scope":{"name":"app"},
"logRecords":[{"timeUnixNano":"1700000000000000001","severityNumber":9,"severityText":"INFO",
"body":{"stringValue":"hello"},"attributes":[{"key":"n","value":{"intValue":"3"}},
{"key":"f","value":{"doubleValue":"NaN"}},{"key":"b","value":{"bytesValue":"aGk="}}],
"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174"},
{"body":{"kvlistValue":{"values":[{"key":"k","value":{"arrayValue":{"values":[{"boolValue":true}]}}}]}}}]}]}]}"#;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn input(control: u8, body: &[u8]) -> Vec<u8> {
    let mut data = vec![control];
    data.extend_from_slice(body);
    data
}

/// (file name, input, what it must do).
fn seeds() -> Vec<(&'static str, Vec<u8>, OtlpOutcome)> {
    let ok = |records, rejected| OtlpOutcome {
        error: None,
        records,
        rejected,
    };
    let refused = |e: &str| OtlpOutcome {
        error: Some(e.into()),
        ..OtlpOutcome::default()
    };
    let pb = otlp::encode_request(&sample());
    let bad_ids = otlp::encode_request(&request(vec![
        LogRecord::default(),
        LogRecord {
            trace_id: vec![1; 3],
            ..LogRecord::default()
        },
        LogRecord {
            span_id: vec![1; 16],
            ..LogRecord::default()
        },
    ]));
    let three = otlp::encode_request(&request(vec![LogRecord::default(); 3]));
    // Three empty records and nothing else: 14 bytes, within the smallest limits but one.
    let bare_three = otlp::encode_request(&ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); 3],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    });
    let many_values = otlp::encode_request(&request(vec![LogRecord {
        attributes: vec![kv("k", text("v")); 60],
        ..LogRecord::default()
    }]));
    let deep = {
        let mut value = AnyValue::default();
        for _ in 0..200 {
            value = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![value],
                })),
            };
        }
        otlp::encode_request(&request(vec![LogRecord {
            body: Some(value),
            ..LogRecord::default()
        }]))
    };
    vec![
        (
            "seed-empty-protobuf",
            vec![control(false, false, 7)],
            ok(0, 0),
        ),
        (
            "seed-empty-json-object",
            input(control(true, false, 7), b"{}"),
            ok(0, 0),
        ),
        (
            "seed-protobuf",
            input(control(false, false, 7), &pb),
            ok(2, 0),
        ),
        (
            "seed-protobuf-gzip",
            input(control(false, true, 6), &gzip(&pb)),
            ok(2, 0),
        ),
        (
            "seed-json",
            input(control(true, false, 7), SAMPLE_JSON.as_bytes()),
            ok(2, 0),
        ),
        (
            "seed-json-gzip",
            input(control(true, true, 5), &gzip(SAMPLE_JSON.as_bytes())),
            ok(2, 0),
        ),
        (
            "seed-rejected-ids",
            input(control(false, false, 7), &bad_ids),
            ok(1, 2),
        ),
        (
            "seed-gzip-bomb",
            input(control(false, true, 5), &gzip(&vec![0u8; 1 << 20])),
            refused("body larger than 65536 bytes (after inflating)"),
        ),
        (
            "seed-gzip-corrupt",
            input(control(true, true, 7), b"\x1f\x8b\x08 not gzip"),
            refused("gzip body cannot be inflated: invalid gzip header"),
        ),
        (
            "seed-body-over-limit",
            input(control(false, false, 1), &pb),
            refused("body larger than 16 bytes (after inflating)"),
        ),
        (
            "seed-too-many-records",
            input(control(false, false, 4), &three),
            ok(3, 0),
        ),
        (
            "seed-too-many-records-small",
            input(control(false, false, 2), &bare_three),
            refused("more than 2 log records in one request"),
        ),
        (
            "seed-too-many-values",
            input(control(false, false, 5), &many_values),
            ok(1, 0),
        ),
        (
            "seed-too-many-values-small",
            input(control(false, false, 3), &many_values),
            refused("more than 100 values in one request"),
        ),
        (
            "seed-deep-nesting",
            input(control(false, false, 7), &deep),
            refused("invalid protobuf ExportLogsServiceRequest: messages nested deeper than 100"),
        ),
        (
            "seed-invalid-protobuf",
            input(control(false, false, 7), b"\x0a\x05\x01"),
            refused("invalid protobuf ExportLogsServiceRequest: a length past the end"),
        ),
        (
            "seed-invalid-json",
            input(control(true, false, 7), br#"{"resourceLogs":["#),
            refused("invalid OTLP JSON: EOF while parsing a list at line 1 column 17"),
        ),
        (
            "seed-json-wrong-type",
            input(
                control(true, false, 7),
                br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":true}]}]}]}"#,
            ),
            refused("invalid OTLP JSON: timeUnixNano: expected an unsigned integer"),
        ),
    ]
}

#[test]
fn seeds_decode_as_intended() {
    for (name, data, expected) in seeds() {
        assert_eq!(otlp_harness::otlp(&data), expected, "{name}");
    }
}

/// Writes the seeds when `LOGMILL_WRITE_CORPUS` is set; otherwise checks the committed ones are
/// current.
#[test]
fn seed_corpus_is_current() {
    let seeds = seeds();
    corpus::check_seeds(
        "otlp",
        "otlp_fuzz_corpus",
        seeds.iter().map(|(name, data, _)| (*name, data.as_slice())),
    );
}
