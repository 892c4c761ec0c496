//! Detection and framing over a stream cut into arbitrary chunks, as a connection receives it.
//!
//! Input: a byte choosing the chunking and the frame limit, the chunk lengths, then the stream
//! (`StreamInput::parse` in `../harness.rs`). Checks that no step consumes past its buffer, that
//! `Incomplete { needed }` is beyond what is buffered and within the limit, and that any chunking
//! gives the same payloads and the same end as one chunk.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    logmill_fuzz::frame_stream(data);
});
