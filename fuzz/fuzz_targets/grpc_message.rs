//! gRPC request bodies: message framing over arbitrary DATA chunking, gzip inflation within the
//! limit, `PushRequest` decoding and the records' lines (`grpc_message` in `../grpc_harness.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../grpc_harness.rs"]
mod grpc_harness;

fuzz_target!(|data: &[u8]| {
    grpc_harness::grpc_message(data);
});
