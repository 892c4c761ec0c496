//! The `search` fuzz target's corpus under `cargo test`: every file of `fuzz/corpus/search/`
//! replayed through the harness the target runs (`fuzz/search_harness.rs`), and the seeds, real
//! queries and cursors as the console sends them, checked to be current. To rewrite the seeds:
//! `LOGMILL_WRITE_CORPUS=1 cargo test --test search_fuzz_corpus`.

#[path = "common/corpus.rs"]
mod corpus;

#[path = "../fuzz/search_harness.rs"]
mod search_harness;

use logmill::storage::search::{self, Filter, Page};

#[test]
fn replay_fuzz_corpus() {
    corpus::replay("search", search_harness::search);
}

/// One input: byte 0, the query, and the cursor after a 0 byte.
fn input(size: u8, query: &str, cursor: Option<&str>) -> Vec<u8> {
    let mut out = vec![size];
    out.extend_from_slice(query.as_bytes());
    if let Some(cursor) = cursor {
        out.push(0);
        out.extend_from_slice(cursor.as_bytes());
    }
    out
}

/// Seeds: every filter key, real cursors taken from pages of the harness's store, and cursors
/// and bucket names an attacker would try.
#[test]
fn seeds_are_current() {
    let dir = search_harness::store();
    let filter = Filter::from_query("level=info").unwrap();
    let page = Page {
        cursor: None,
        limit: 3,
    };
    let first = search::search(dir, &filter, &page, 1 << 20).unwrap();
    let cursor = first.cursor.expect("the store has more than a page");
    assert_eq!(first.records.len(), 3);
    let seeds = [
        (
            "every_key",
            input(
                3,
                "app=shop&app=_main&instance=pod-1&level=warning&logger=cart&q=ITEM&phrase=item%201&field=sku%3DA1&since=2026-12-01T00:00:00Z&until=2026-12-02T00:00:00Z",
                None,
            ),
        ),
        ("text_search", input(2, "q=failed", None)),
        ("real_cursor", input(2, "level=info", Some(&cursor))),
        ("cursor_path_escape", input(2, "", Some("../../etc:1:1:0"))),
        ("cursor_garbage", input(1, "q=x", Some(":::\u{0}\u{ff}"))),
        (
            "cursor_huge_numbers",
            input(
                3,
                "",
                Some("shop:99999999999999999999:0:18446744073709551615"),
            ),
        ),
        ("bucket_traversal", input(3, "../shop", None)),
        ("bad_level", input(0, "level=loud", None)),
        (
            "times",
            input(3, "since=15m&until=1700000000000000000", None),
        ),
        ("empty", input(0, "", None)),
    ];
    corpus::check_seeds(
        "search",
        "search_fuzz_corpus",
        seeds.iter().map(|(name, data)| (*name, data.as_slice())),
    );
    // What the seeds are for: the real cursor goes on past the first page.
    let second = search::search(
        dir,
        &filter,
        &Page {
            cursor: Some(cursor),
            limit: 3,
        },
        1 << 20,
    )
    .unwrap();
    assert!(second.records.iter().all(|h| !first.records.contains(h)));
    assert!(search::context(dir, "../shop", 1, 1).is_err());
}
