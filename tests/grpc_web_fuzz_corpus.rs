//! The `grpc_web` fuzz target's corpus under `cargo test`: every file of `fuzz/corpus/grpc_web/`
//! replayed through the harness the target runs (`fuzz/grpc_web_harness.rs`), and the seeds,
//! made from the real encoders, checked to decode to what their names say. To rewrite the seeds
//! after a change: `LOGMILL_WRITE_CORPUS=1 cargo test --test grpc_web_fuzz_corpus`.

#[path = "common/corpus.rs"]
mod corpus;

#[path = "../fuzz/grpc_web_harness.rs"]
mod grpc_web_harness;

use grpc_web_harness::{GrpcWebOutcome, input};
use logmill::protocol::grpc::logmill_v1::{LogRecord, PushRequest, log_record};
use logmill::protocol::grpc::{self, MessageError};
use logmill::protocol::grpc_web::{BodyError, Mode, encode_text};
use prost::Message as _;

/// Indexes into `MAX_MESSAGES`.
const LIMIT_5: u8 = 2;
const LIMIT_1000: u8 = 4;
const LIMIT_1_MIB: u8 = 6;

#[test]
fn replay_fuzz_corpus() {
    corpus::replay("grpc_web", |data| {
        grpc_web_harness::grpc_web(data);
    });
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    grpc::encode_message(payload, &mut out);
    out
}

fn log_record(message: &str) -> Vec<u8> {
    LogRecord {
        body: Some(log_record::Body::Message(message.into())),
        logger: "browser".into(),
        level: 3,
        ..LogRecord::default()
    }
    .encode_to_vec()
}

fn push_request(n: usize) -> Vec<u8> {
    PushRequest {
        records: (0..n)
            .map(|i| LogRecord {
                body: Some(log_record::Body::Message(format!("record {i}"))),
                ..LogRecord::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

fn messages(expected: Vec<Vec<u8>>) -> impl Fn(&GrpcWebOutcome) -> bool {
    move |o| o.messages.as_ref() == Ok(&expected)
}

fn fails(error: BodyError) -> impl Fn(&GrpcWebOutcome) -> bool {
    move |o| o.messages.as_ref() == Err(&error)
}

type Check = Box<dyn Fn(&GrpcWebOutcome) -> bool>;

/// (file name, input, what it must decode to).
fn seeds() -> Vec<(&'static str, Vec<u8>, Check)> {
    let record = log_record("hello from a page");
    let push = push_request(3);
    let two = [framed(&record), framed(&push)].concat();
    let mut compressed = framed(&record);
    compressed[0] = 1;
    let mut trailers = framed(b"grpc-status:0\r\n");
    trailers[0] = 0x80;
    vec![
        (
            "seed-binary-log-message",
            input(Mode::Binary, LIMIT_1000, 0, &framed(&record)),
            Box::new(messages(vec![record.clone()])),
        ),
        (
            "seed-binary-push",
            input(Mode::Binary, LIMIT_1_MIB, 5, &framed(&push)),
            Box::new(messages(vec![push.clone()])),
        ),
        (
            "seed-text-log-message",
            input(
                Mode::Text,
                LIMIT_1000,
                8,
                encode_text(&framed(&record)).as_bytes(),
            ),
            Box::new(messages(vec![record.clone()])),
        ),
        (
            "seed-text-padded-mid-stream",
            input(
                Mode::Text,
                LIMIT_1000,
                3,
                [
                    encode_text(&two[..7]),
                    encode_text(&two[7..20]),
                    encode_text(&two[20..]),
                ]
                .concat()
                .as_bytes(),
            ),
            Box::new(messages(vec![record.clone(), push.clone()])),
        ),
        (
            "seed-text-unpadded-end",
            input(
                Mode::Text,
                LIMIT_1000,
                0,
                encode_text(&framed(b"xy")).trim_end_matches('=').as_bytes(),
            ),
            Box::new(messages(vec![b"xy".to_vec()])),
        ),
        (
            "seed-text-bad-base64",
            input(Mode::Text, LIMIT_1000, 0, b"AAAA$AAA"),
            Box::new(|o: &GrpcWebOutcome| {
                matches!(o.messages, Err(BodyError::Base64 { at: 0, .. }))
            }),
        ),
        (
            "seed-too-large",
            input(Mode::Binary, LIMIT_5, 0, &framed(b"123456")),
            Box::new(fails(BodyError::Frame(MessageError::TooLarge {
                len: 6,
                max: 5,
            }))),
        ),
        (
            "seed-compressed",
            input(Mode::Binary, LIMIT_1000, 0, &compressed),
            Box::new(fails(BodyError::Compressed)),
        ),
        (
            "seed-trailers-frame-in-request",
            input(Mode::Binary, LIMIT_1000, 0, &trailers),
            Box::new(fails(BodyError::Frame(MessageError::BadFlag(0x80)))),
        ),
        (
            "seed-truncated",
            input(Mode::Binary, LIMIT_1000, 0, &framed(&record)[..9]),
            Box::new(fails(BodyError::Truncated { have: 9 })),
        ),
        (
            "seed-two-messages",
            input(Mode::Binary, LIMIT_1000, 15, &two),
            Box::new(messages(vec![record.clone(), push.clone()])),
        ),
        (
            "seed-cors-origins",
            input(
                Mode::Binary,
                LIMIT_1000,
                0,
                b"http://localhost:8080, https://App.example\n*",
            ),
            // Not gRPC-Web framing (a flag byte 'h'); the CORS invariant is what it exercises.
            Box::new(fails(BodyError::Frame(MessageError::BadFlag(b'h')))),
        ),
    ]
}

#[test]
fn seeds_decode_as_intended() {
    for (name, data, ok) in seeds() {
        let outcome = grpc_web_harness::grpc_web(&data).expect("an input");
        assert!(ok(&outcome), "{name}: {outcome:?}");
    }
}

/// Writes the seeds when `LOGMILL_WRITE_CORPUS` is set; otherwise checks the committed ones are
/// current.
#[test]
fn seed_corpus_is_current() {
    let seeds = seeds();
    corpus::check_seeds(
        "grpc_web",
        "grpc_web_fuzz_corpus",
        seeds.iter().map(|(name, data, _)| (*name, data.as_slice())),
    );
}
