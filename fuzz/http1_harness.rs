//! The `http1` fuzz harness: the HTTP/1.1 request reader (`protocol::http1::read_request`) over
//! a stream of pipelined requests, on arbitrary bytes.
//!
//! Its own file beside `harness.rs`, as `grpc_harness.rs` is: `fuzz_targets/http1.rs` includes
//! it with `#[path]`, and `tests/http1_fuzz_corpus.rs` includes it the same way to write and
//! check its seeds; `tests/fuzz_corpus.rs` replays `corpus/http1/` with every other target. It
//! uses only `logmill`'s public API. A panic here is a broken invariant.
//!
//! Input layout: byte 0 picks the body limit (bits 0..3, from [`MAX_BODIES`]) and the read size
//! (bits 3..8, plus one; at least a 64th of the stream); the rest is what a client sends.
//!
//! Invariants: each request consumes at least one byte and no more than the buffer holds; a
//! body never exceeds the limit; a head is complete only within `MAX_HEAD`; a response to each
//! request writes without panicking; and reading the stream as it arrives, a read at a time,
//! gives exactly the requests (and the error) that reading it whole gives: the session
//! re-reads an unfinished request from its start, so the reader must not depend on where the
//! reads fell.

#![allow(dead_code)]

use logmill::protocol::http1::{self, Limits, Parsed, Response};

/// Body limits the first byte picks from: tiny ones reach `413` quickly, 1 MiB is the
/// server's default `--max-frame`.
pub const MAX_BODIES: [usize; 8] = [0, 1, 5, 16, 100, 1000, 65_536, 1 << 20];

/// One request as the harness compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

/// What one input did: the requests read, then the error that stopped the stream, or how many
/// bytes of an unfinished request were left.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Http1Outcome {
    pub requests: Vec<Seen>,
    pub error: Option<http1::Error>,
    pub pending: usize,
}

pub fn http1(data: &[u8]) -> Http1Outcome {
    let Some((&control, stream)) = data.split_first() else {
        return Http1Outcome::default();
    };
    let limits = Limits {
        max_body: MAX_BODIES[usize::from(control & 0b111)],
    };
    // At most 64 reads of a long input: each read re-reads the unfinished request from its
    // start, as the session does, so tiny reads of a 16 KiB head would cost thousands of parses
    // (and the fuzzer its speed); short inputs keep their 1..32-byte reads.
    let read = (usize::from(control >> 3) + 1).max(stream.len() / 64);
    let whole = read_all(stream, &limits);
    // As the session sees it: the buffer grows a read at a time; complete requests are taken
    // off its front, an unfinished one is read again from its start with more bytes.
    let mut chunked = Http1Outcome::default();
    let mut start = 0;
    let mut end = 0;
    while end < stream.len() && chunked.error.is_none() {
        end = (end + read).min(stream.len());
        let mut part = read_all(&stream[start..end], &limits);
        start = end - part.pending;
        chunked.requests.append(&mut part.requests);
        chunked.error = part.error;
    }
    chunked.pending = if chunked.error.is_some() {
        whole.pending
    } else {
        end - start
    };
    assert_eq!(chunked, whole, "reads of {read} bytes");
    whole
}

/// Every request at the front of `buf`, until an error or an unfinished one.
fn read_all(mut buf: &[u8], limits: &Limits) -> Http1Outcome {
    let mut outcome = Http1Outcome::default();
    loop {
        match http1::read_request(buf, limits) {
            Ok(Parsed::Complete { request, consumed }) => {
                assert!(consumed > 0 && consumed <= buf.len(), "consumed {consumed}");
                assert!(request.body.len() <= limits.max_body, "body over the limit");
                let mut out = Vec::new();
                http1::write_response(
                    &mut out,
                    request.version,
                    &Response {
                        status: 200,
                        reason: "OK",
                        headers: &[],
                        body: &request.body,
                        keep_alive: request.keep_alive,
                    },
                );
                assert!(out.ends_with(&request.body));
                outcome.requests.push(Seen {
                    method: request.method.to_owned(),
                    path: request.path.to_owned(),
                    body: request.body.into_owned(),
                    keep_alive: request.keep_alive,
                });
                buf = &buf[consumed..];
            }
            Ok(Parsed::Incomplete { needed, .. }) => {
                if let Some(needed) = needed {
                    assert!(needed > buf.len(), "needs {needed}, has {}", buf.len());
                }
                outcome.pending = buf.len();
                return outcome;
            }
            Err(e) => {
                outcome.error = Some(e);
                return outcome;
            }
        }
    }
}
