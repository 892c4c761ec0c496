//! The `otlp` fuzz harness: `protocol::otlp`'s request decoders (protobuf and JSON, gzip or not),
//! the mapping to records and the response encoders, on arbitrary bytes; for protobuf, the fast
//! path (`decode_records`) against the reference (`decode_protobuf` then `to_records`).
//!
//! Its own file, as `grpc_harness.rs` is: `fuzz_targets/otlp.rs` includes it with `#[path]`, and
//! `tests/otlp_fuzz_corpus.rs` includes it the same way to replay `corpus/otlp/` under
//! `cargo test`. It uses only `logmill`'s public API. A panic here is a broken invariant.
//!
//! Input layout: byte 0 picks the encoding (bit 0: JSON, else protobuf), gzip (bit 1) and the
//! limits (bits 2..5, from [`LIMITS`]); the rest is a request body as an exporter sends it.

#![allow(dead_code)]

use logmill::config::Format;
use logmill::protocol::otlp::{self, ExportLogsServiceResponse, Limits};
use logmill::storage::line::{LineFormatter, Origin};

/// (body bytes, records, values) the first byte picks from: tiny ones reach each refusal.
pub const LIMITS: [(usize, usize, usize); 8] = [
    (0, 0, 0),
    (16, 1, 4),
    (100, 2, 20),
    (1000, 5, 100),
    (4096, 64, 1000),
    (65_536, 1000, 10_000),
    (1 << 20, 65_536, 262_144),
    (4 << 20, 65_536, 262_144),
];

/// What one input did, for the seeds' self-checks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OtlpOutcome {
    /// The refusal of the whole request, as its `Display` (`None`: it decoded).
    pub error: Option<String>,
    /// Records stored.
    pub records: usize,
    /// Records refused (`rejected_log_records`).
    pub rejected: u64,
}

/// Byte 0 of an input.
pub fn control(json: bool, gzip: bool, limits: u8) -> u8 {
    assert!(limits < 8);
    u8::from(json) | (u8::from(gzip) << 1) | (limits << 2)
}

pub fn otlp(data: &[u8]) -> OtlpOutcome {
    let Some((&control, body)) = data.split_first() else {
        return OtlpOutcome::default();
    };
    let json = control & 1 != 0;
    let (max_body, max_records, max_values) = LIMITS[usize::from((control >> 2) & 0b111)];
    let limits = Limits {
        max_body,
        max_records,
        max_values,
    };
    let inflated;
    let body = if control & 2 != 0 {
        match otlp::gunzip(body, &limits) {
            Ok(b) => {
                assert!(b.len() <= max_body, "inflated past the limit");
                inflated = b;
                &inflated[..]
            }
            Err(e) => return refused(e),
        }
    } else {
        body
    };
    let decoded = if json {
        otlp::decode_json(body, &limits)
    } else {
        otlp::decode_protobuf(body, &limits)
    };
    // The server's path for protobuf reads records straight from the bytes: it must give what
    // prost then `to_records` give, or fail the same way.
    let fast = (!json).then(|| otlp::decode_records(body, &limits));
    let request = match decoded {
        Ok(request) => request,
        Err(e) => {
            if let Some(fast) = fast {
                let fast = fast.expect_err("the fast path decoded what prost refuses");
                assert_eq!(
                    std::mem::discriminant(&fast),
                    std::mem::discriminant(&e),
                    "the paths fail differently: {fast} / {e}"
                );
            }
            return refused(e);
        }
    };
    assert!(body.len() <= max_body, "a body over the limit decoded");

    // Every record is either stored or counted, within the limit.
    let total: usize = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    assert!(total <= max_records, "more records than the limit");
    let export = otlp::to_records(&request);
    if let Some(fast) = fast {
        let fast = fast.expect("the fast path refused what prost decodes");
        assert_eq!(fast, export, "the paths give different records");
    }
    assert_eq!(
        export.records.len() as u64 + export.rejected,
        total as u64,
        "a record was neither stored nor rejected"
    );
    assert_eq!(
        export.rejected == 0,
        export.error_message.is_empty(),
        "a rejection without a message, or a message without one"
    );

    // Each stored record formats to one line.
    let mut formatters = [
        LineFormatter::new(Format::Text),
        LineFormatter::new(Format::Json),
    ];
    for record in &export.records {
        for formatter in &mut formatters {
            let mut out = Vec::new();
            let (head, tail) = formatter.format(record, &Origin::default(), 1, 2, &mut out);
            assert_eq!(head + 2 + tail, out.len());
            assert_eq!(out.last(), Some(&b'\n'), "a line ends with its newline");
            assert!(
                !out[..out.len() - 1].contains(&b'\n'),
                "a record became more than one line"
            );
        }
    }

    // What decoded (from JSON too) re-encodes as protobuf to a request that decodes the same;
    // compared as bytes, since a NaN double is not equal to itself.
    let bytes = otlp::encode_request(&request);
    let roomy = Limits {
        max_body: usize::MAX,
        max_records: usize::MAX,
        max_values: usize::MAX,
    };
    let again = otlp::decode_protobuf(&bytes, &roomy).expect("a re-encoded request decodes");
    assert_eq!(
        otlp::encode_request(&again),
        bytes,
        "a protobuf round trip changed it"
    );

    // The responses: protobuf decodes back, JSON parses.
    let reply = otlp::encode_response(export.rejected, &export.error_message);
    let reply: ExportLogsServiceResponse =
        otlp::decode_response(&reply).expect("the response decodes");
    assert_eq!(
        reply
            .partial_success
            .map(|p| p.rejected_log_records)
            .unwrap_or(0),
        i64::try_from(export.rejected).unwrap_or(i64::MAX)
    );
    let reply = otlp::encode_response_json(export.rejected, &export.error_message);
    serde_json::from_slice::<serde_json::Value>(&reply).expect("the JSON response parses");

    OtlpOutcome {
        error: None,
        records: export.records.len(),
        rejected: export.rejected,
    }
}

fn refused(e: otlp::Error) -> OtlpOutcome {
    OtlpOutcome {
        error: Some(e.to_string()),
        ..OtlpOutcome::default()
    }
}
