//! JSON lines: `lines::next_line` over a stream cut into arbitrary chunks, and
//! `jsonl::parse_line` on every whole line. Input: a byte choosing the chunking and the line
//! limit, the chunk lengths, then the stream (`StreamInput::parse` in `../harness.rs`). Checks
//! that nothing is consumed past the buffer, lines and pieces stay within the limit and hold no
//! newline, cuts never split a UTF-8 character, a line that is not a JSON object is kept whole,
//! every record formats to exactly one line in both formats, and any chunking gives the same
//! records (`jsonl` in `../harness.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    logmill_fuzz::jsonl(data);
});
