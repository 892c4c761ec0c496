//! [`Follower`]: the records written since the last look, for `logmill tail -f` and the
//! console's live tail. It starts at the end (only new records) and follows each bucket's
//! active file across rotations by the file's identity (its first sequence number) and the
//! last sequence number it gave, never by name: after `_main.log` became `_main.log.0`, the
//! rest of `_main.log.0` is read first, then the new `_main.log` from its start.

use std::io;
use std::path::{Path, PathBuf};

use super::files::{self, Backward, Forward};
use super::filter::{Filter, Head, Matcher, Verdict};
use super::{Error, Hit};

/// At most this many bytes are read per bucket per [`Follower::poll`]: a burst is handed out
/// over several polls instead of all at once (bounded memory and latency per poll).
pub const MAX_POLL_BYTES: u64 = 4 * 1024 * 1024;

/// Follows every bucket the filter wants (buckets made after it started included).
pub struct Follower {
    dir: PathBuf,
    matcher: Matcher,
    reader: Forward,
    buckets: Vec<Followed>,
}

/// Where one bucket was left.
struct Followed {
    bucket: String,
    /// Records numbered `<= last_seq` were given (or were there at the start).
    last_seq: u64,
    /// The file being read (its first sequence number) and the offset after its last whole
    /// line read: a hint, the `last_seq` decides.
    file: Option<(u64, u64)>,
}

impl Follower {
    /// Starts at the end of every bucket's files.
    ///
    /// # Errors
    /// Reading the directory or the files.
    pub fn new(dir: &Path, filter: &Filter) -> Result<Follower, Error> {
        let mut buckets = Vec::new();
        for bucket in files::buckets(dir)? {
            if filter.wants_bucket(&bucket) {
                let at_end = Follower::end_of(dir, &bucket)?;
                buckets.push(at_end);
            }
        }
        Ok(Follower {
            dir: dir.to_path_buf(),
            matcher: Matcher::new(filter.clone()),
            reader: Forward::new(),
            buckets,
        })
    }

    /// The newest record of `bucket`, where a follower starts.
    fn end_of(dir: &Path, bucket: &str) -> io::Result<Followed> {
        let mut followed = Followed {
            bucket: bucket.to_string(),
            last_seq: 0,
            file: None,
        };
        let Some(bucket_dir) = files::bucket_dir(dir, bucket) else {
            return Ok(followed);
        };
        for path in files::file_paths(&bucket_dir)? {
            let Some(mut file) = files::open(&path)? else {
                continue;
            };
            let Some(first) = files::first_seq(&mut file)? else {
                continue;
            };
            let len = file.metadata()?.len();
            let mut reader = Backward::new(file, len);
            if let Some((start, line)) = reader.prev(&mut 0)? {
                followed.last_seq = Head::read(line).map_or(first, |h| h.seq);
                followed.file = Some((first, start + line.len() as u64 + 1));
                break;
            }
        }
        Ok(followed)
    }

    /// The matching records written since the last poll (or since `new`), oldest first.
    ///
    /// # Errors
    /// Reading the directory or the files.
    pub fn poll(&mut self) -> Result<Vec<Hit>, Error> {
        // A bucket made since the last poll has only new records: follow it from its start.
        for bucket in files::buckets(&self.dir)? {
            if self.matcher.filter.wants_bucket(&bucket)
                && !self.buckets.iter().any(|b| b.bucket == bucket)
            {
                self.buckets.push(Followed {
                    bucket,
                    last_seq: 0,
                    file: None,
                });
            }
        }
        let mut hits = Vec::new();
        for followed in &mut self.buckets {
            read_new(
                &self.dir,
                followed,
                &mut self.matcher,
                &mut self.reader,
                &mut hits,
            )?;
        }
        hits.sort_by_key(|h| (h.time_ns, h.seq));
        Ok(hits)
    }
}

/// Reads what `followed`'s bucket gained, file after file, oldest first.
fn read_new(
    dir: &Path,
    followed: &mut Followed,
    matcher: &mut Matcher,
    reader: &mut Forward,
    hits: &mut Vec<Hit>,
) -> io::Result<()> {
    let Some(bucket_dir) = files::bucket_dir(dir, &followed.bucket) else {
        return Ok(());
    };
    let mut opened = Vec::new();
    for path in files::file_paths(&bucket_dir)? {
        if let Some(mut file) = files::open(&path)?
            && let Some(first) = files::first_seq(&mut file)?
        {
            opened.push((first, file));
        }
        // Files older than the one holding `last_seq` have nothing new: stop listing.
        if opened
            .last()
            .is_some_and(|(first, _)| *first <= followed.last_seq)
        {
            break;
        }
    }
    let mut budget = MAX_POLL_BYTES;
    for (first, file) in opened.iter_mut().rev() {
        let from = match followed.file {
            Some((id, offset)) if id == *first => offset,
            _ => 0,
        };
        let bucket = followed.bucket.as_str();
        let last_seq = &mut followed.last_seq;
        let end = reader.read(file, from, budget, |_, line| {
            let Some(head) = Head::read(line) else {
                return true;
            };
            if head.seq <= *last_seq {
                return true;
            }
            *last_seq = head.seq;
            if let Verdict::Yes(head, Some(parsed)) = matcher.check(line, u64::MAX, true) {
                hits.push(Hit::new(bucket, head, &parsed, line));
            }
            true
        })?;
        followed.file = Some((*first, end));
        budget = budget.saturating_sub(end - from);
        if budget == 0 {
            break;
        }
    }
    Ok(())
}
