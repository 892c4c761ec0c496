//! `native::decode_client_frame` on arbitrary payloads: every record it yields must format to
//! exactly one line in both formats (valid JSON in the JSON format), and what decoded must
//! encode and decode again to the same records or hello (`native_record` in `../harness.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    logmill_fuzz::native_record(data);
});
