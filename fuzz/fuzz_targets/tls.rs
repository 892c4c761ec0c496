//! A server TLS connection fed arbitrary bytes (`tls` in `../tls_harness.rs`): no panic,
//! bounded answers.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../tls_harness.rs"]
mod tls_harness;

fuzz_target!(|data: &[u8]| {
    tls_harness::tls(data);
});
