//! logship's name and answer lines: `protocol::ship`, read whole and a prefix at a time, which
//! must agree (`ship` in `../ship_harness.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../ship_harness.rs"]
mod ship_harness;

fuzz_target!(|data: &[u8]| {
    ship_harness::ship(data);
});
