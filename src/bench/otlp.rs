//! What the two OTLP loads (`--proto otlp-grpc` in `grpc.rs`, `--proto otlp-http` in `web.rs`)
//! share: the `ExportLogsServiceRequest` they send ([`request`], encoded once per batch shape by
//! `templates.rs`) and the check of the `ExportLogsServiceResponse` that acks it ([`accepted`]).
//! Pure: bytes in and out, built on [`crate::protocol::otlp`] (the server's own decoder reads
//! what is sent here).

use crate::protocol::otlp::{self, proto};

/// The service every OTLP bench record's resource names (`service.name`).
pub const SERVICE: &str = "logmill-bench";

/// One OTLP `ExportLogsServiceRequest` in protobuf, shaped as an SDK exporter sends a batch:
/// one resource (`service.name` [`SERVICE`], `host.name`), one scope (`logger`, version
/// `1.0.0`), and a record per message with both timestamps at `nanos`, severity INFO (9, text
/// `INFO`), the message as a string body and two attributes (`http.route`, a string, and
/// `bench.connection`, an int: connection `conn`).
pub fn request(conn: usize, messages: &[String], logger: &str, nanos: u64) -> Vec<u8> {
    use proto::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
    use proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};

    let attribute = |key: &str, value: any_value::Value| KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
    };
    let text = |s: &str| any_value::Value::StringValue(s.to_string());
    let records = messages
        .iter()
        .map(|m| LogRecord {
            time_unix_nano: nanos,
            observed_time_unix_nano: nanos,
            severity_number: SeverityNumber::Info as i32,
            severity_text: "INFO".to_string(),
            body: Some(AnyValue {
                value: Some(text(m)),
            }),
            attributes: vec![
                attribute("http.route", text("/api/orders")),
                attribute(
                    "bench.connection",
                    any_value::Value::IntValue(i64::try_from(conn).unwrap_or(i64::MAX)),
                ),
            ],
            ..LogRecord::default()
        })
        .collect();
    let request = otlp::ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(proto::resource::v1::Resource {
                attributes: vec![
                    attribute("service.name", text(SERVICE)),
                    attribute("host.name", text("bench-host")),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: logger.to_string(),
                    version: "1.0.0".to_string(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    otlp::encode_request(&request)
}

/// All `records` of an OTLP export whose answer is the protobuf `response`, or why not: a body
/// that does not decode, or a `partial_success` that rejects records. (A `partial_success`
/// with a message and no rejection is a warning: the records were stored.)
pub fn accepted(response: &[u8], records: u64) -> Result<u64, String> {
    let response = otlp::decode_response(response)
        .map_err(|e| format!("an answer is not an ExportLogsServiceResponse: {e}"))?;
    match response.partial_success {
        Some(partial) if partial.rejected_log_records != 0 => Err(format!(
            "the server rejected {} of {records} records: {}",
            partial.rejected_log_records, partial.error_message
        )),
        _ => Ok(records),
    }
}

/// The message of an OTLP/HTTP error answer's body, a protobuf `google.rpc.Status`, or the
/// body as text if it is not one.
pub fn refusal(body: &[u8]) -> String {
    use prost::Message as _;
    match otlp::RpcStatus::decode(body) {
        Ok(status) if !status.message.is_empty() => {
            format!("{} (code {})", status.message, status.code)
        }
        _ => String::from_utf8_lossy(body).trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Body;

    #[test]
    fn requests_carry_the_documented_fields() {
        let body = request(
            7,
            &["hello".to_string()],
            "bench",
            1_700_000_000_000_000_000,
        );
        let limits = otlp::Limits::new(1 << 20);
        let request = otlp::decode_protobuf(&body, &limits).unwrap();
        let export = otlp::to_records(&request);
        let [record] = export.records.as_slice() else {
            panic!("{:?}", export.records)
        };
        assert_eq!(record.body, Body::Message("hello".into()));
        assert_eq!(record.timestamp_ns, 1_700_000_000_000_000_000);
        assert_eq!(
            (record.service.as_ref(), record.host.as_ref()),
            ("logmill-bench", "bench-host")
        );
        let fields = format!("{:?}", record.fields);
        for part in [
            "http.route",
            "/api/orders",
            "bench.connection",
            "7",
            "1.0.0",
        ] {
            assert!(fields.contains(part), "{part} in {fields}");
        }
    }

    #[test]
    fn answers_accept_all_records_unless_they_reject_some() {
        assert_eq!(accepted(&otlp::encode_response(0, ""), 512), Ok(512));
        assert_eq!(
            accepted(&otlp::encode_response(0, "a warning"), 512),
            Ok(512)
        );
        let refused = accepted(&otlp::encode_response(3, "bad span_id"), 512).unwrap_err();
        assert!(refused.contains("rejected 3 of 512"), "{refused}");
        assert!(refused.contains("bad span_id"), "{refused}");
        assert!(accepted(b"\x0a\x05", 1).is_err(), "a truncated message");
    }

    #[test]
    fn refusals_give_their_status_message() {
        let body = otlp::encode_status(16, "no token", false);
        assert_eq!(refusal(&body), "no token (code 16)");
        assert_eq!(refusal(b"plain text\n"), "plain text");
    }
}
