//! The `websocket` fuzz harness: `protocol::websocket::Decoder` over a client's byte stream, in
//! one chunk and in arbitrary chunks, as a connection feeds it.
//!
//! It is its own file, beside `harness.rs` (as `grpc_harness.rs` is), so the WebSocket code can
//! be fuzzed without touching the other targets: `fuzz_targets/websocket.rs` includes it with
//! `#[path]`, and `tests/websocket_fuzz_corpus.rs` includes it the same way to replay
//! `corpus/websocket/` under `cargo test`. It uses only `logmill`'s public API. A panic here is
//! a broken invariant.
//!
//! Input layout: byte 0 picks the message size limit (bits 0..3, from [`MAX_MESSAGES`]) and the
//! chunk size (bits 3..8, plus one); the rest is the stream a client would send after the `101`.
//!
//! Invariants: no step consumes nothing or past its buffer; `Incomplete { needed: Some(n) }`
//! has `n` over what is buffered and at most a header plus the limit; what stays buffered is
//! less than one frame (header and limit); a message is within the limit and a control payload
//! within 125 bytes; a close carries a code a peer may send; every message re-encoded as a
//! client frame decodes to itself; the server's close frame for a message or an error fits a
//! control frame; and the stream in chunks gives the same messages and the same end as in one.

#![allow(dead_code)]

use logmill::protocol::websocket::{
    self, Decoded, Decoder, Error, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, Message, Opcode,
};

/// Message size limits the first byte picks from: tiny ones reach `TooBig` quickly, 125 and 126
/// sit at the control and 16-bit length boundaries, 1 MiB is the server's `--max-frame` default.
pub const MAX_MESSAGES: [usize; 8] = [0, 1, 5, 125, 126, 1000, 65_536, 1 << 20];

/// A decoded message, owned, to compare decodings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

/// How the stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Waiting for more: `buffered` bytes of an unfinished frame, `held` bytes of an unfinished
    /// fragmented message.
    Waiting { buffered: usize, held: usize },
    /// The stream broke a rule: the server closes with this error's code.
    Error(Error),
}

/// What one input decoded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketOutcome {
    pub max_message: usize,
    pub messages: Vec<Owned>,
    pub end: End,
}

/// Splits an input: (limit, chunk size, stream). `None` for an empty input.
pub fn layout(data: &[u8]) -> Option<(usize, usize, &[u8])> {
    let (&control, stream) = data.split_first()?;
    let max = MAX_MESSAGES[usize::from(control & 0b111)];
    let chunk = usize::from(control >> 3) + 1;
    Some((max, chunk, stream))
}

/// The inverse of [`layout`], for writing seeds: `max_index` under 8, `chunk` in 1..=32.
pub fn input(max_index: u8, chunk: u8, stream: &[u8]) -> Vec<u8> {
    assert!(max_index < 8 && (1..=32).contains(&chunk));
    let mut data = vec![max_index | ((chunk - 1) << 3)];
    data.extend_from_slice(stream);
    data
}

pub fn websocket(data: &[u8]) -> Option<WebSocketOutcome> {
    let (max, chunk, stream) = layout(data)?;
    let whole = decode(stream, &mut std::iter::once(stream), max);
    let chunked = decode(stream, &mut stream.chunks(chunk), max);
    assert_eq!(whole, chunked, "chunks of {chunk} changed the outcome");
    for message in &whole.messages {
        check_message(message, max);
    }
    if let End::Error(e) = &whole.end {
        check_close_frame(e.close_code(), &e.to_string());
    }
    Some(whole)
}

/// Feeds `chunks` to one decoder as a connection does: append, decode what is complete, keep the
/// rest.
fn decode(stream: &[u8], chunks: &mut dyn Iterator<Item = &[u8]>, max: usize) -> WebSocketOutcome {
    let mut decoder = Decoder::new();
    let mut messages = Vec::new();
    let mut buffer = Vec::new();
    let mut fed = 0;
    // One frame at most is buffered: its header and a payload within the limit (or 125).
    let bound = MAX_HEADER_LEN + max.max(MAX_CONTROL_PAYLOAD);
    for chunk in chunks {
        fed += chunk.len();
        buffer.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            match decoder.decode(&buffer[pos..], max) {
                Ok(Decoded::Frame { consumed, message }) => {
                    assert!(consumed > 0, "no progress");
                    assert!(pos + consumed <= buffer.len(), "consumed past the buffer");
                    pos += consumed;
                    messages.extend(message.map(owned));
                }
                Ok(Decoded::Incomplete { needed }) => {
                    if let Some(needed) = needed {
                        let buffered = buffer.len() - pos;
                        assert!(needed > buffered, "needs {needed}, has {buffered}");
                        assert!(needed <= bound, "needs {needed}, over {bound}");
                    }
                    break;
                }
                Err(e) => {
                    return WebSocketOutcome {
                        max_message: max,
                        messages,
                        end: End::Error(e),
                    };
                }
            }
        }
        buffer.drain(..pos);
        assert!(buffer.len() < bound, "{} bytes buffered", buffer.len());
        assert!(decoder.held() <= max, "{} bytes held", decoder.held());
        decoder.release();
    }
    assert_eq!(fed, stream.len(), "chunks do not cover the stream");
    WebSocketOutcome {
        max_message: max,
        messages,
        end: End::Waiting {
            buffered: buffer.len(),
            held: decoder.held(),
        },
    }
}

fn owned(message: Message<'_>) -> Owned {
    match message {
        Message::Text(t) => Owned::Text(t.into()),
        Message::Binary(b) => Owned::Binary(b.into()),
        Message::Ping(p) => Owned::Ping(p.into()),
        Message::Pong(p) => Owned::Pong(p.into()),
        Message::Close(c) => Owned::Close(c.map(|c| (c.code, c.reason.into()))),
    }
}

/// Limits, and the round trip: the message as a client frame decodes to itself.
fn check_message(message: &Owned, max: usize) {
    let (opcode, payload): (Opcode, Vec<u8>) = match message {
        Owned::Text(t) => (Opcode::Text, t.as_bytes().to_vec()),
        Owned::Binary(b) => (Opcode::Binary, b.clone()),
        Owned::Ping(p) => (Opcode::Ping, p.clone()),
        Owned::Pong(p) => (Opcode::Pong, p.clone()),
        Owned::Close(None) => (Opcode::Close, Vec::new()),
        Owned::Close(Some((code, reason))) => {
            assert!(
                matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999),
                "close code {code}"
            );
            check_close_frame(*code, reason);
            (
                Opcode::Close,
                [&code.to_be_bytes()[..], reason.as_bytes()].concat(),
            )
        }
    };
    match opcode {
        Opcode::Text | Opcode::Binary => assert!(payload.len() <= max, "message over the limit"),
        _ => assert!(
            payload.len() <= MAX_CONTROL_PAYLOAD,
            "control payload over 125"
        ),
    }
    let mut frame = Vec::new();
    websocket::encode_client_frame(true, opcode, [0xA5, 0x5A, 0x00, 0xFF], &payload, &mut frame);
    let mut decoder = Decoder::new();
    match decoder.decode(&frame, max) {
        Ok(Decoded::Frame {
            consumed,
            message: Some(again),
        }) => {
            assert_eq!(consumed, frame.len());
            assert_eq!(&owned(again), message, "round trip");
        }
        other => panic!("round trip of {message:?}: {other:?}"),
    }
}

/// The server's close frame: one control frame, the code first, the reason UTF-8 within 123.
fn check_close_frame(code: u16, reason: &str) {
    let mut out = Vec::new();
    websocket::encode_close(code, reason, &mut out);
    assert_eq!(out[0], 0x88, "FIN and close");
    let len = usize::from(out[1]);
    assert!(len <= MAX_CONTROL_PAYLOAD && out.len() == 2 + len);
    assert_eq!(out[2..4], code.to_be_bytes());
    let said = std::str::from_utf8(&out[4..]).expect("a UTF-8 reason");
    assert!(reason.starts_with(said), "the reason is cut, not changed");
}
