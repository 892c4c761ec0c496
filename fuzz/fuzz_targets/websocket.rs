//! WebSocket frames: `protocol::websocket::Decoder` over a client's stream, in one chunk and in
//! chunks, limits and round trips checked (`websocket` in `../websocket_harness.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../websocket_harness.rs"]
mod websocket_harness;

fuzz_target!(|data: &[u8]| {
    websocket_harness::websocket(data);
});
