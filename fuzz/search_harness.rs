//! The `search` fuzz harness: what the console's exploration API takes from the network (the
//! query string `storage::search::Filter::from_query` reads, and the opaque cursor a page sends
//! back) run against a small store, through `search`, `count` and `context`. A panic, a page
//! over its limit, or a cursor that names a path outside the store is a broken invariant.
//!
//! Its own file, as the other harnesses are: `fuzz_targets/search.rs` and
//! `tests/search_fuzz_corpus.rs` include it with `#[path]`. It uses only `logmill`'s public API.
//!
//! Input layout: byte 0 picks the byte budget and the page size; the rest is the query, then
//! (after a 0 byte, if there is one) the cursor, both taken as (lossy) UTF-8.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use logmill::storage::search::{self, Filter, Page};

/// A store of two buckets, one in each line format, a few rotated files: made once per process.
pub fn store() -> &'static Path {
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("logmill-fuzz-search-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("shop")).unwrap();
        let levels = ["DEBUG", "INFO", "WARNING", "ERROR"];
        let mut text = String::new();
        let mut old = String::new();
        for seq in 1..=40u64 {
            let level = levels[(seq % 4) as usize];
            let line = format!(
                "2026-12-01T10:{:02}:00.000000Z {level} {seq} web/10.0.0.{} pay order {seq} \
                 {} | code={} user=\"ann\"\n",
                seq % 60,
                seq % 3,
                if seq % 5 == 0 { "failed" } else { "ok" },
                seq * 7
            );
            if seq <= 20 {
                old.push_str(&line)
            } else {
                text.push_str(&line)
            }
        }
        std::fs::write(dir.join("_main.log.0"), old).unwrap();
        std::fs::write(dir.join("_main.log"), text).unwrap();
        let mut json = String::new();
        for seq in 1..=30u64 {
            json.push_str(&format!(
                "{{\"seq\":{seq},\"time\":\"2026-12-01T11:{:02}:00.000000Z\",\"level\":\"{}\",\
                 \"app\":\"shop\",\"instance\":\"pod-{}\",\"logger\":\"cart\",\"message\":\"item \
                 {seq}\",\"fields\":{{\"sku\":\"A{seq}\",\"n\":{seq}}}}}\n",
                seq % 60,
                ["info", "error", "warning"][(seq % 3) as usize],
                seq % 2
            ));
        }
        std::fs::write(dir.join("shop/_main.log"), json).unwrap();
        dir
    })
}

/// (budget bytes, page size) byte 0 picks from.
const SIZES: [(u64, usize); 4] = [(1, 1), (200, 3), (4096, 10), (1 << 20, 100)];

pub fn search(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let (budget, limit) = SIZES[usize::from(first) % SIZES.len()];
    let (query, cursor) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (
            &rest[..at],
            Some(String::from_utf8_lossy(&rest[at + 1..]).into_owned()),
        ),
        None => (rest, None),
    };
    let query = String::from_utf8_lossy(query);
    let dir = store();
    let Ok(filter) = Filter::from_query(&query) else {
        return;
    };
    let page = Page {
        cursor: cursor.clone(),
        limit,
    };
    if let Ok(results) = search::search(dir, &filter, &page, budget) {
        assert!(results.records.len() <= limit, "a page over its limit");
        for hit in &results.records {
            assert!(
                filter.wants_bucket(&hit.bucket),
                "a hit from a bucket not asked for"
            );
        }
    }
    let range = filter.since_ns.zip(filter.until_ns);
    if let Ok(counts) = search::count(dir, &filter, cursor.as_deref(), budget, limit, range) {
        assert!(counts.histogram.len() <= search::MAX_HISTOGRAM_BUCKETS);
    }
    // The query as a bucket name: context must refuse what is not a bucket, never open it.
    if let Ok(hits) = search::context(dir, &query, u64::from(first), limit) {
        assert!(hits.len() <= 2 * limit + 1);
        assert!(hits.iter().all(|h| h.bucket == query));
    }
}
