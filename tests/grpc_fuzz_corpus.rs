//! Seeds for `fuzz/corpus/grpc_message/`, made from the real encoders, and what each must decode
//! to (`seeds_decode_as_intended`); the corpus itself is replayed with every other target's by
//! `tests/fuzz_corpus.rs`. To rewrite the seeds after a wire change:
//! `LOGMILL_WRITE_CORPUS=1 cargo test --test grpc_fuzz_corpus`.

#[path = "common/corpus.rs"]
mod corpus;

#[path = "../fuzz/grpc_harness.rs"]
mod grpc_harness;

use std::io::Write as _;

use grpc_harness::GrpcOutcome;
use logmill::protocol::grpc::{self, MessageError};
use logmill::record::{Body, Level, Record};

/// Byte 0 of an input: the limit's index in `MAX_MESSAGES` and the chunk size.
fn control(max_index: u8, chunk: u8) -> u8 {
    assert!(max_index < 8 && (1..=32).contains(&chunk));
    max_index | ((chunk - 1) << 3)
}

fn message(compressed: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    grpc::encode_message(payload, &mut out);
    out[0] = u8::from(compressed);
    out
}

fn push(records: &[Record<'_>]) -> Vec<u8> {
    grpc::encode_push_request(&grpc::logmill_v1::PushRequest {
        records: records.iter().map(grpc::from_record).collect(),
    })
}

fn simple(n: usize) -> Vec<Record<'static>> {
    (0..n)
        .map(|i| Record {
            body: Body::Message(format!("record {i}").into()),
            ..Record::default()
        })
        .collect()
}

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
fn seeds() -> Vec<(&'static str, Vec<u8>, GrpcOutcome)> {
    let all_fields = Record {
        timestamp_ns: 1_700_000_000_000_000_001,
        level: Level::Critical,
        body: Body::Json(r#"{"user":"ann","n":[1,2]}"#.into()),
        logger: "app.db".into(),
        host: "web-1".into(),
        service: "billing".into(),
        module: "db".into(),
        file: "db.py".into(),
        line: 7,
        function: "connect".into(),
        process_id: 42,
        process_name: "python3".into(),
        thread_id: 9,
        thread_name: "worker 1".into(),
        stack_trace: "Traceback (most recent call last):\n  ...".into(),
        fields: vec![("a b".into(), "x=\"1\"\n".into()), ("k".into(), "v".into())],
        parse_error: false,
        truncated: false,
    };
    let ok = |messages, requests, records| GrpcOutcome {
        messages,
        requests,
        records,
        ..GrpcOutcome::default()
    };
    let one = message(false, &push(&simple(3)));
    let mut pipelined = one.clone();
    pipelined.extend(message(false, &push(&simple(2))));
    pipelined.extend(message(false, b""));
    let mut empties = Vec::new();
    for _ in 0..4 {
        empties.extend(message(false, b""));
    }
    let mut bad_flag = one.clone();
    bad_flag.extend([2, 0, 0, 0, 0]);
    vec![
        ("seed-empty", vec![control(7, 1)], GrpcOutcome::default()),
        ("seed-one-push", input(control(7, 32), &one), ok(1, 1, 3)),
        (
            "seed-one-push-bytewise",
            input(control(7, 1), &one),
            ok(1, 1, 3),
        ),
        (
            "seed-pipelined-odd-chunks",
            input(control(7, 7), &pipelined),
            ok(3, 3, 5),
        ),
        (
            "seed-empty-messages",
            input(control(0, 3), &empties),
            ok(4, 4, 0),
        ),
        (
            "seed-all-fields",
            input(control(7, 5), &message(false, &push(&[all_fields]))),
            ok(1, 1, 1),
        ),
        (
            "seed-gzip",
            input(control(7, 11), &message(true, &gzip(&push(&simple(20))))),
            ok(1, 1, 20),
        ),
        (
            "seed-gzip-bomb",
            input(control(5, 32), &message(true, &gzip(&[0u8; 50_000]))),
            ok(1, 0, 0),
        ),
        (
            "seed-gzip-corrupt",
            input(control(7, 4), &message(true, b"\x1f\x8b not really gzip")),
            ok(1, 0, 0),
        ),
        (
            "seed-oversized-prefix",
            input(control(3, 2), &[0, 0, 0, 0, 17, 1, 2, 3]),
            GrpcOutcome {
                framing_error: Some(MessageError::TooLarge { len: 17, max: 16 }),
                ..GrpcOutcome::default()
            },
        ),
        (
            "seed-huge-prefix",
            input(control(7, 1), &[0, 0xff, 0xff, 0xff, 0xff]),
            GrpcOutcome {
                framing_error: Some(MessageError::TooLarge {
                    len: u32::MAX,
                    max: 4 << 20,
                }),
                ..GrpcOutcome::default()
            },
        ),
        (
            "seed-bad-flag-after-a-message",
            input(control(7, 6), &bad_flag),
            GrpcOutcome {
                messages: 1,
                requests: 1,
                records: 3,
                framing_error: Some(MessageError::BadFlag(2)),
                pending: 0,
            },
        ),
        (
            "seed-truncated",
            input(control(7, 4), &one[..one.len() - 3]),
            GrpcOutcome {
                pending: one.len() - 3,
                ..GrpcOutcome::default()
            },
        ),
        (
            "seed-undecodable",
            input(control(7, 2), &message(false, b"\x0a\x05\x08")),
            ok(1, 0, 0),
        ),
        (
            "seed-invalid-utf8",
            input(control(7, 9), &message(false, b"\x0a\x03\x2a\x01\xff")),
            ok(1, 0, 0),
        ),
        (
            "seed-unknown-fields-and-levels",
            // records { level: 99, 18: varint 5 } and an unknown top-level field 2.
            input(
                control(7, 3),
                &message(false, b"\x0a\x05\x10\x63\x90\x01\x05\x10\x01"),
            ),
            ok(1, 1, 1),
        ),
    ]
}

#[test]
fn seeds_decode_as_intended() {
    for (name, data, expected) in seeds() {
        assert_eq!(grpc_harness::grpc_message(&data), expected, "{name}");
    }
}

/// Writes the seeds when `LOGMILL_WRITE_CORPUS` is set; otherwise checks the committed ones are
/// current.
#[test]
fn seed_corpus_is_current() {
    let seeds = seeds();
    corpus::check_seeds(
        "grpc_message",
        "grpc_fuzz_corpus",
        seeds.iter().map(|(name, data, _)| (*name, data.as_slice())),
    );
}
