//! gRPC-Web request bodies: `protocol::grpc_web`'s decoding (binary, and base64 padded
//! mid-stream), its answers and `--cors-origin` parsing (`grpc_web` in `../grpc_web_harness.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../grpc_web_harness.rs"]
mod grpc_web_harness;

fuzz_target!(|data: &[u8]| {
    grpc_web_harness::grpc_web(data);
});
