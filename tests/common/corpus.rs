//! What every `tests/*_fuzz_corpus.rs` does with its target's corpus: replay each file through
//! the harness the fuzz target runs, and keep the checked-in seeds current. Included with
//! `#[path = "common/corpus.rs"] mod corpus;` (these tests need nothing else of `common`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// A lost or emptied corpus must fail, not replay nothing.
pub const MIN_FILES: usize = 10;

/// `fuzz/corpus/<target>/`.
pub fn dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Runs every file of `target`'s corpus through `harness` (the function its fuzz target calls)
/// and fails listing the files that panic.
#[allow(dead_code)] // not every corpus test replays: some are replayed by tests/fuzz_corpus.rs
pub fn replay(target: &str, harness: impl Fn(&[u8])) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir(target))
        .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= MIN_FILES, "{} files", files.len());
    let failures: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("a readable corpus file");
            catch_unwind(AssertUnwindSafe(|| harness(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failures.is_empty(), "corpus files that fail: {failures:#?}");
}

/// Writes the `seeds` (name, bytes) into `target`'s corpus when `LOGMILL_WRITE_CORPUS` is set;
/// otherwise checks the committed files are the same bytes, naming the command (`cargo test
/// --test <test>`) that rewrites them.
#[allow(dead_code)] // the `tls` corpus's seeds carry fresh random bytes: written, not checked
pub fn check_seeds<'a>(
    target: &str,
    test: &str,
    seeds: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) {
    let dir = dir(target);
    let write = std::env::var_os("LOGMILL_WRITE_CORPUS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, data) in seeds {
        let path = dir.join(name);
        if write {
            std::fs::write(&path, data).unwrap();
        } else {
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                committed == data,
                "{} is stale: LOGMILL_WRITE_CORPUS=1 cargo test --test {test}",
                path.display()
            );
        }
    }
}
