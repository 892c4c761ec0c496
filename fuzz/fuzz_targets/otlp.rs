//! OTLP logs requests: protobuf or JSON, gzip or not, within the limits; the records they map to
//! and the responses (`otlp` in `../otlp_harness.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../otlp_harness.rs"]
mod otlp_harness;

fuzz_target!(|data: &[u8]| {
    otlp_harness::otlp(data);
});
