//! The `grpc_message` fuzz harness: gRPC message framing (`protocol::grpc::Deframer` and
//! `decode_message`), gzip inflation and `PushRequest` decoding, on arbitrary bytes.
//!
//! It is its own file, beside `harness.rs`, so that the gRPC code can be fuzzed without touching
//! the other targets: `fuzz_targets/grpc_message.rs` includes it with `#[path]`, and
//! `tests/grpc_fuzz_corpus.rs` includes it the same way to replay `corpus/grpc_message/` under
//! `cargo test`. It uses only `logmill`'s public API. A panic here is a broken invariant.
//!
//! Input layout: byte 0 picks the message size limit (bits 0..3, from [`MAX_MESSAGES`]) and the
//! DATA chunk size (bits 3..8, plus one); the rest is a request body as a client would send it.

#![allow(dead_code)]

use logmill::config::Format;
use logmill::protocol::grpc::{self, Deframer, FeedError, Message};
use logmill::record::Record;
use logmill::storage::line::{LineFormatter, Origin};

/// Size limits the first byte picks from: tiny ones reach `TooLarge` quickly, 4 MiB is the
/// server's default.
pub const MAX_MESSAGES: [usize; 8] = [0, 1, 5, 16, 100, 1000, 65_536, 4 << 20];

/// What one input did, for the seeds' self-checks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GrpcOutcome {
    /// Complete messages found.
    pub messages: usize,
    /// Of those, how many decoded as a `PushRequest` (after inflating, if compressed).
    pub requests: usize,
    /// Records in those requests.
    pub records: usize,
    /// The framing error that stopped the stream, if any.
    pub framing_error: Option<grpc::MessageError>,
    /// Bytes of an unfinished message at the end.
    pub pending: usize,
}

pub fn grpc_message(data: &[u8]) -> GrpcOutcome {
    let Some((&control, body)) = data.split_first() else {
        return GrpcOutcome::default();
    };
    let max = MAX_MESSAGES[usize::from(control & 0b111)];
    let chunk = usize::from(control >> 3) + 1;

    // The same body, cut into chunks by the deframer and whole by `decode_message`, must give
    // the same messages.
    let mut deframer = Deframer::default();
    let mut chunked: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut framing_error = None;
    for piece in body.chunks(chunk) {
        let fed = deframer.feed(piece, max, |compressed, payload| {
            assert!(
                payload.len() <= max,
                "a message over the limit was handed out"
            );
            chunked.push((compressed, payload.to_vec()));
            Ok::<(), ()>(())
        });
        match fed {
            Ok(()) => {}
            Err(FeedError::Message(e)) => {
                framing_error = Some(e);
                break;
            }
            Err(FeedError::Handler(())) => unreachable!("the handler never refuses"),
        }
    }
    let mut whole: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut rest = body;
    let whole_error = loop {
        match grpc::decode_message(rest, max) {
            Ok(Message::Complete {
                compressed,
                payload,
                consumed,
            }) => {
                assert!(consumed <= rest.len() && consumed == payload.len() + grpc::PREFIX_LEN);
                whole.push((compressed, payload.to_vec()));
                rest = &rest[consumed..];
            }
            Ok(Message::Incomplete { needed }) => {
                if let Some(needed) = needed {
                    assert!(needed > rest.len(), "incomplete, yet enough bytes");
                }
                break None;
            }
            Err(e) => break Some(e),
        }
    };
    assert_eq!(chunked, whole, "chunking changed the messages");
    assert_eq!(
        framing_error, whole_error,
        "chunking changed the framing error"
    );
    if framing_error.is_none() {
        assert_eq!(deframer.pending(), rest.len(), "unfinished bytes differ");
    }

    let mut outcome = GrpcOutcome {
        messages: whole.len(),
        framing_error,
        pending: if framing_error.is_none() {
            rest.len()
        } else {
            0
        },
        ..GrpcOutcome::default()
    };
    let mut formatters = [
        LineFormatter::new(Format::Text),
        LineFormatter::new(Format::Json),
    ];
    let mut inflated = Vec::new();
    for (compressed, payload) in &whole {
        let payload = if *compressed {
            match grpc::gunzip(payload, max, &mut inflated) {
                Ok(()) => {
                    assert!(inflated.len() <= max, "inflated past the limit");
                    &inflated[..]
                }
                Err(_) => continue,
            }
        } else {
            &payload[..]
        };
        let Ok(request) = grpc::decode_push_request(payload) else {
            continue;
        };
        outcome.requests += 1;
        outcome.records += request.records.len();
        let records: Vec<Record<'_>> = request.records.iter().map(grpc::to_record).collect();
        for record in &records {
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
        // Round trip: what decoded encodes and decodes to the same records.
        let again = grpc::logmill_v1::PushRequest {
            records: records.iter().map(grpc::from_record).collect(),
        };
        let bytes = grpc::encode_push_request(&again);
        let decoded = grpc::decode_push_request(&bytes).expect("re-encoded request decodes");
        let round: Vec<Record<'_>> = decoded.records.iter().map(grpc::to_record).collect();
        assert_eq!(round, records, "records changed in a round trip");
    }
    outcome
}
