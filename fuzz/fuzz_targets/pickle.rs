//! `pickle::decode_record` on arbitrary payloads (what follows a SocketHandler length prefix):
//! never panics, never runs out of memory or time (the check in front of `serde-pickle` bounds
//! its work by the payload size), and every record it returns formats to exactly one line in
//! both formats (`pickle` in `../harness.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // An error is an answer, not a failure: only a panic, an abort or a blow-up is.
    logmill_fuzz::pickle(data).ok();
});
