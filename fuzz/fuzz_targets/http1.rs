//! HTTP/1.1 requests: `protocol::http1::read_request` over pipelined requests read whole and a
//! read at a time, which must agree (`http1` in `../http1_harness.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../http1_harness.rs"]
mod http1_harness;

fuzz_target!(|data: &[u8]| {
    http1_harness::http1(data);
});
