//! The console's exploration input: a query string and a cursor, run against a small store
//! (`search` in `../search_harness.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../search_harness.rs"]
mod search_harness;

fuzz_target!(|data: &[u8]| {
    search_harness::search(data);
});
