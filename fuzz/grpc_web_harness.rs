//! The `grpc_web` fuzz harness: `protocol::grpc_web` over a request body as a browser would send
//! it (binary or base64 text), and the answers the server would write for it.
//!
//! Its own file, beside `harness.rs` (as `grpc_harness.rs` and `websocket_harness.rs` are):
//! `fuzz_targets/grpc_web.rs` includes it with `#[path]`, and `tests/grpc_web_fuzz_corpus.rs`
//! includes it the same way to replay `corpus/grpc_web/` under `cargo test`. It uses only
//! `logmill`'s public API. A panic here is a broken invariant.
//!
//! Input layout: byte 0 picks the mode (bit 0: text), the message size limit (bits 1..4, from
//! [`MAX_MESSAGES`]) and where a binary body is cut in two padded base64 pieces (bits 4..8,
//! scaled to the body); the rest is the body.
//!
//! Invariants:
//! - decoding never panics; text decodes to at most three quarters of its length (plus a
//!   quantum);
//! - every message is within the limit, and the messages re-framed are exactly the (decoded)
//!   body: nothing skipped, nothing invented;
//! - a refused body is refused for a reason its bytes show (an announced length over the limit
//!   is `RESOURCE_EXHAUSTED`, and only then);
//! - a good binary body, re-sent as text in two padded pieces cut anywhere, decodes to the same
//!   messages (base64 padded mid-stream);
//! - `unary_message` succeeds exactly when there is one message;
//! - the answer for the first message (and a status) is data frames then one `0x80` trailers
//!   frame, and in text mode the same bytes in base64;
//! - `--cors-origin` parsing of the body (as text) never panics, and every origin it accepts is
//!   allowed by the preflight.

#![allow(dead_code)]

use logmill::protocol::grpc::{self, Code, MessageError, Status};
use logmill::protocol::grpc_web::{
    self, BodyError, Cors, Mode, TRAILERS_FLAG, decode_text, encode_text,
};

/// Message size limits byte 0 picks from: tiny ones reach `TooLarge` at once, 1 MiB is the
/// server's `--max-frame` default.
pub const MAX_MESSAGES: [usize; 8] = [0, 1, 5, 64, 1000, 65_536, 1 << 20, 16 << 20];

/// What one input decoded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcWebOutcome {
    pub mode: Mode,
    pub max_message: usize,
    pub messages: Result<Vec<Vec<u8>>, BodyError>,
}

/// Splits an input: (mode, limit, cut numerator out of 16, body). `None` for an empty input.
pub fn layout(data: &[u8]) -> Option<(Mode, usize, usize, &[u8])> {
    let (&control, body) = data.split_first()?;
    let mode = if control & 1 == 1 {
        Mode::Text
    } else {
        Mode::Binary
    };
    let max = MAX_MESSAGES[usize::from((control >> 1) & 0b111)];
    let cut = usize::from(control >> 4);
    Some((mode, max, cut, body))
}

/// The inverse of [`layout`], for writing seeds: `max_index` under 8, `cut` under 16.
pub fn input(mode: Mode, max_index: u8, cut: u8, body: &[u8]) -> Vec<u8> {
    assert!(max_index < 8 && cut < 16);
    let text = u8::from(mode == Mode::Text);
    let mut data = vec![text | (max_index << 1) | (cut << 4)];
    data.extend_from_slice(body);
    data
}

fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for message in messages {
        grpc::encode_message(message, &mut out);
    }
    out
}

pub fn grpc_web(data: &[u8]) -> Option<GrpcWebOutcome> {
    let (mode, max, cut, body) = layout(data)?;

    // The bytes the frames are read from.
    let binary = match mode {
        Mode::Binary => Ok(body.to_vec()),
        Mode::Text => {
            let mut decoded = Vec::new();
            let result = decode_text(body, &mut decoded);
            assert!(
                decoded.len() <= body.len() / 4 * 3 + 3,
                "{} bytes of base64 decoded to {}",
                body.len(),
                decoded.len()
            );
            result.map(|()| decoded)
        }
    };

    let mut scratch = Vec::new();
    let messages = grpc_web::request_messages(body, mode, max, &mut scratch)
        .map(|m| m.into_iter().map(<[u8]>::to_vec).collect::<Vec<_>>());
    match (&messages, &binary) {
        (Ok(messages), Ok(binary)) => {
            assert!(
                messages.iter().all(|m| m.len() <= max),
                "a message over the limit"
            );
            assert_eq!(
                &framed(messages),
                binary,
                "messages re-framed differ from the body"
            );
        }
        (Err(BodyError::Base64 { .. }), Err(_)) => {}
        (Err(e), Ok(binary)) => check_refusal(e, binary, max),
        (result, decoded) => panic!("body {result:?} but base64 {decoded:?}"),
    }

    // Base64 padded mid-stream: the binary body as two padded pieces, cut anywhere.
    if let (Ok(messages), Ok(binary)) = (&messages, &binary) {
        let at = binary.len() * cut / 16;
        let text = [encode_text(&binary[..at]), encode_text(&binary[at..])].concat();
        let mut scratch = Vec::new();
        let again = grpc_web::request_messages(text.as_bytes(), Mode::Text, max, &mut scratch)
            .expect("a good body re-sent as text")
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>();
        assert_eq!(&again, messages, "text cut at {at} decoded differently");
    }

    let mut scratch = Vec::new();
    let unary = grpc_web::unary_message(body, mode, max, &mut scratch);
    match &messages {
        Ok(m) if m.len() == 1 => assert_eq!(unary.ok(), Some(&m[0][..])),
        Ok(m) => assert_eq!(unary, Err(BodyError::NotOne { count: m.len() })),
        Err(e) => assert_eq!(unary.as_ref().err(), Some(e)),
    }

    // The answer for the first message, with a status whose message is the body as text.
    if let Ok(m) = &messages {
        let message = m.first().map(Vec::as_slice);
        let status = Status::new(Code::Internal, String::from_utf8_lossy(body));
        check_answer(mode, message, &status);
    }

    if let Ok(text) = std::str::from_utf8(body)
        && let Ok(cors) = Cors::parse(text.split('\n'))
    {
        for origin in text.split(['\n', ',']).map(str::trim) {
            if !origin.is_empty() {
                let preflight = cors.preflight(Some(origin.as_bytes()));
                assert_eq!(preflight.status, 204, "accepted {origin:?} but refused it");
            }
        }
    }

    Some(GrpcWebOutcome {
        mode,
        max_message: max,
        messages,
    })
}

/// A refused (decoded) body shows why in its bytes.
fn check_refusal(e: &BodyError, binary: &[u8], max: usize) {
    // Walk the good messages before the refusal.
    let mut rest = binary;
    while let Ok(grpc::Message::Complete {
        compressed: false,
        consumed,
        ..
    }) = grpc::decode_message(rest, max)
    {
        rest = &rest[consumed..];
    }
    match e {
        BodyError::Frame(MessageError::TooLarge { len, max: m }) => {
            assert_eq!(*m, max);
            assert!(*len as usize > max, "{len} refused under {max}");
            assert_eq!(u32::from_be_bytes(rest[1..5].try_into().unwrap()), *len);
            assert_eq!(e.status().code, Code::ResourceExhausted);
        }
        BodyError::Frame(MessageError::BadFlag(flag)) => {
            assert!(*flag > 1 && rest[0] == *flag);
        }
        BodyError::Compressed => assert_eq!(rest[0], 1),
        BodyError::Truncated { have } => {
            assert_eq!(*have, rest.len());
            assert!(!rest.is_empty());
        }
        BodyError::NotOne { .. } | BodyError::Base64 { .. } => {
            panic!("{e:?} from request_messages on a decoded body")
        }
    }
    assert_ne!(e.status().code, Code::Ok);
}

/// The answer is data frames then one trailers frame (text: the same in base64).
fn check_answer(mode: Mode, message: Option<&[u8]>, status: &Status) {
    let body = grpc_web::encode_body(mode, message, status);
    let binary = match mode {
        Mode::Binary => body,
        Mode::Text => {
            let mut decoded = Vec::new();
            decode_text(&body, &mut decoded).expect("our own base64");
            assert_eq!(
                grpc_web::encode_body(Mode::Binary, message, status),
                decoded
            );
            decoded
        }
    };
    let mut frames = Vec::new();
    let mut rest = &binary[..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        frames.push((rest[0], &rest[5..5 + len]));
        rest = &rest[5 + len..];
    }
    let (last, data) = frames.split_last().expect("a trailers frame");
    assert_eq!(last.0, TRAILERS_FLAG);
    let trailers = std::str::from_utf8(last.1).expect("ASCII trailers");
    assert_eq!(trailers, grpc_web::trailers(status));
    assert!(
        trailers
            .bytes()
            .all(|b| b.is_ascii() && (b >= 0x20 || b == b'\r' || b == b'\n'))
    );
    assert_eq!(data.len(), usize::from(message.is_some()));
    if let (Some(message), Some(frame)) = (message, data.first()) {
        assert_eq!((frame.0, frame.1), (0, message));
    }
}
