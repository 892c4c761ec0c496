//! Syslog over TCP: `syslog::decode_frame` over a stream cut into arbitrary chunks, and
//! `syslog::parse_message` on every frame. Input: a byte choosing the chunking and the line
//! limit, the chunk lengths, then the stream (`StreamInput::parse` in `../harness.rs`). Checks
//! that nothing is consumed past the buffer, frames and pieces stay within the limit, buffering
//! stays bounded, a message that does not parse is kept whole, every record formats to exactly
//! one line in both formats, and any chunking gives the same records (`syslog` in
//! `../harness.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    logmill_fuzz::syslog(data);
});
