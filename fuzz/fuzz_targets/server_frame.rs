//! `native::decode_server_frame` on arbitrary payloads: never panics, and a frame that decodes
//! encodes and decodes again to the same frame (`server_frame` in `../harness.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    logmill_fuzz::server_frame(data);
});
