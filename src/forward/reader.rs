//! Reading the stored files for a sink: every bucket's records in sequence order, from where
//! the sink's checkpoint says it stopped, into the batch the sink is building.
//!
//! The files are the write-ahead log: nothing is copied aside for the sinks. A bucket's files
//! are recognised by their first sequence number ([`files::first_seq`]), never by name, so a
//! rotation between two passes (`_main.log` becoming `_main.log.0`) changes nothing: the reader
//! keeps, per bucket, the last number it gave (`read`) and a hint (the first number of the file
//! it was in and the offset after the last line it took). Without the hint (after a restart)
//! the answer is the same, only slower: files whose successor starts at or below `read + 1` are
//! skipped whole, and lines numbered `<= read` are passed over.
//!
//! A batch is cut with [`Reader::cut`], which notes where every bucket was read to (a
//! [`Mark`]); once the sink took that batch, [`Reader::acknowledge`] moves the buckets' `acked`
//! up to the mark. Batches are acknowledged in the order they were cut (the forwarder sends the
//! next only after the previous was taken), so the checkpoint never passes a record the sink
//! has not taken. What is read but not acknowledged is counted, for the lag.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::Sink;
use super::checkpoint::Checkpoint;
use crate::storage::search::files::{self, Forward};
use crate::storage::search::{Head, filter::parse_line};

/// A bucket's files, oldest first, each with its first sequence number.
type Files = Vec<(u64, File)>;

/// Where a sink is in one bucket.
struct Cursor {
    bucket: String,
    /// The sink acknowledged every record numbered `<= acked`.
    acked: u64,
    /// Every record numbered `<= read` is in the batch or acknowledged.
    read: u64,
    /// The file last read (its first number) and the offset after the last line taken.
    hint: Option<(u64, u64)>,
}

/// What a pass over the buckets did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filled {
    /// Every bucket was read to its end (no more records for now).
    pub at_end: bool,
    /// Lines that are not stored lines (cannot happen with files logmill wrote; counted, not
    /// forwarded, so one bad line never blocks a sink).
    pub unreadable: u64,
}

/// Where a cut batch ends in each bucket, and what it holds (for the lag).
#[derive(Debug, Default)]
pub struct Mark {
    read: Vec<(String, u64)>,
    bytes: u64,
    records: u64,
    oldest_ns: u64,
}

pub struct Reader {
    dir: PathBuf,
    cursors: Vec<Cursor>,
    lines: Forward,
    /// Stored bytes and records in the batch being filled.
    unacked_bytes: u64,
    unacked_records: u64,
    /// The time of the oldest record in the batch being filled (Unix ns; 0 when empty).
    oldest_unacked_ns: u64,
    /// Batches cut and not yet acknowledged: their records and bytes, and the oldest time.
    cut_bytes: u64,
    cut_records: u64,
    cut_oldest_ns: u64,
    /// Stored bytes and lines read in all, for the mean line length the lag estimate uses.
    seen_bytes: u64,
    seen_lines: u64,
}

/// The lag of one sink, as [`Reader::lag`] measures it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lag {
    pub bytes: u64,
    /// Records not yet acknowledged: those in the batch, exact, plus the unread bytes divided
    /// by the mean stored line length (an estimate: counting them would mean reading them).
    pub records: u64,
    /// Unix ns of the oldest record in the unacknowledged batch; 0 when there is none.
    pub oldest_ns: u64,
}

impl Reader {
    /// A reader that starts after what `checkpoint` says the sink acknowledged.
    pub fn new(dir: &Path, checkpoint: &Checkpoint) -> Reader {
        let cursors = checkpoint
            .buckets()
            .map(|(bucket, seq)| Cursor {
                bucket: bucket.to_string(),
                acked: seq,
                read: seq,
                hint: None,
            })
            .collect();
        Reader {
            dir: dir.to_path_buf(),
            cursors,
            lines: Forward::new(),
            unacked_bytes: 0,
            unacked_records: 0,
            oldest_unacked_ns: 0,
            cut_bytes: 0,
            cut_records: 0,
            cut_oldest_ns: 0,
            seen_bytes: 0,
            seen_lines: 0,
        }
    }

    /// Appends to `sink`'s batch the records after those already read, bucket by bucket, until
    /// the batch holds `max_rows` records or `max_bytes` encoded bytes, or every bucket is read
    /// to its end. Batching happens here: one pass reads in [`files::BLOCK`]s and hands the
    /// sink one record at a time to encode; nothing is sent per record.
    ///
    /// # Errors
    /// Reading the directory or a file.
    pub fn fill(
        &mut self,
        sink: &mut dyn Sink,
        max_rows: usize,
        max_bytes: usize,
    ) -> io::Result<Filled> {
        for bucket in files::buckets(&self.dir)? {
            if !self.cursors.iter().any(|c| c.bucket == bucket) {
                self.cursors.push(Cursor {
                    bucket,
                    acked: 0,
                    read: 0,
                    hint: None,
                });
            }
        }
        let mut filled = Filled {
            at_end: true,
            unreadable: 0,
        };
        for i in 0..self.cursors.len() {
            if sink.rows() >= max_rows || sink.bytes() >= max_bytes {
                filled.at_end = false;
                break;
            }
            let files = self.bucket_files(i)?;
            if !self.fill_bucket(i, files, sink, (max_rows, max_bytes), &mut filled)? {
                filled.at_end = false;
                break;
            }
        }
        Ok(filled)
    }

    /// Reads one bucket into the batch; false when the batch filled up before its end.
    fn fill_bucket(
        &mut self,
        i: usize,
        mut files: Files,
        sink: &mut dyn Sink,
        (max_rows, max_bytes): (usize, usize),
        filled: &mut Filled,
    ) -> io::Result<bool> {
        let Reader {
            cursors,
            lines,
            unacked_bytes,
            unacked_records,
            oldest_unacked_ns,
            seen_bytes,
            seen_lines,
            ..
        } = self;
        let cursor = &mut cursors[i];
        for k in 0..files.len() {
            // Every record of this file is numbered below the next file's first.
            if files
                .get(k + 1)
                .is_some_and(|&(next, _)| next <= cursor.read.saturating_add(1))
            {
                continue;
            }
            let (first, file) = &mut files[k];
            let first = *first;
            let from = match cursor.hint {
                Some((f, offset)) if f == first => offset,
                _ => 0,
            };
            let mut full = false;
            let end = lines.read(file, from, u64::MAX, |_, line| {
                let Some(head) = Head::read(line) else {
                    filled.unreadable += 1;
                    return true;
                };
                if head.seq <= cursor.read {
                    return true;
                }
                match parse_line(line) {
                    Some(parsed) => {
                        sink.push(&cursor.bucket, &parsed);
                        if *oldest_unacked_ns == 0 || head.time_ns < *oldest_unacked_ns {
                            *oldest_unacked_ns = head.time_ns.max(1);
                        }
                        *unacked_records += 1;
                        *unacked_bytes += line.len() as u64 + 1;
                        *seen_bytes += line.len() as u64 + 1;
                        *seen_lines += 1;
                    }
                    None => filled.unreadable += 1,
                }
                cursor.read = head.seq;
                // Stop right after the line that filled the batch, so the offset returned is
                // just past a line that was taken (never past one that was not).
                full = sink.rows() >= max_rows || sink.bytes() >= max_bytes;
                !full
            })?;
            cursor.hint = Some((first, end));
            if full {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `bucket`'s files that have a first line, oldest first.
    fn bucket_files(&self, i: usize) -> io::Result<Files> {
        let Some(dir) = files::bucket_dir(&self.dir, &self.cursors[i].bucket) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for path in files::file_paths(&dir)? {
            let Some(mut file) = files::open(&path)? else {
                continue;
            };
            if let Some(first) = files::first_seq(&mut file)? {
                found.push((first, file));
            }
        }
        // A rotation between listing and opening can show one file under two names.
        found.sort_by_key(|&(first, _)| first);
        found.dedup_by_key(|&mut (first, _)| first);
        Ok(found)
    }

    /// Ends the batch being filled: where each bucket was read to, to acknowledge once the
    /// sink took it. The next records read go into the next batch.
    pub fn cut(&mut self) -> Mark {
        let mark = Mark {
            read: self
                .cursors
                .iter()
                .map(|c| (c.bucket.clone(), c.read))
                .collect(),
            bytes: std::mem::take(&mut self.unacked_bytes),
            records: std::mem::take(&mut self.unacked_records),
            oldest_ns: std::mem::take(&mut self.oldest_unacked_ns),
        };
        self.cut_bytes += mark.bytes;
        self.cut_records += mark.records;
        if self.cut_oldest_ns == 0 {
            self.cut_oldest_ns = mark.oldest_ns;
        }
        mark
    }

    /// The sink took the batch cut at `mark` (batches are acknowledged in the order they were
    /// cut): every bucket's `acked` moves up to the mark. Returns the buckets whose number
    /// moved, with the new number, for the checkpoint.
    pub fn acknowledge(&mut self, mark: Mark) -> Vec<(String, u64)> {
        self.cut_bytes = self.cut_bytes.saturating_sub(mark.bytes);
        self.cut_records = self.cut_records.saturating_sub(mark.records);
        // The next cut batch's oldest is not known here; the one being filled is a bound.
        self.cut_oldest_ns = 0;
        let mut moved = Vec::new();
        for (bucket, seq) in mark.read {
            if let Some(c) = self.cursors.iter_mut().find(|c| c.bucket == bucket)
                && seq > c.acked
            {
                c.acked = seq;
                moved.push((bucket, seq));
            }
        }
        moved
    }

    /// Per bucket, the last sequence number the sink acknowledged.
    pub fn acked(&self) -> impl Iterator<Item = (&str, u64)> {
        self.cursors.iter().map(|c| (c.bucket.as_str(), c.acked))
    }

    /// Bytes and records not yet acknowledged, and the oldest one's time: the unread bytes of
    /// every bucket's files (after the hint) plus the batch.
    ///
    /// # Errors
    /// Reading the directory or a file's metadata.
    pub fn lag(&self) -> io::Result<Lag> {
        let mut unread = 0u64;
        for i in 0..self.cursors.len() {
            let hint = self.cursors[i].hint;
            for (first, file) in self.bucket_files(i)? {
                let len = file.metadata()?.len();
                unread += match hint {
                    Some((f, offset)) if f == first => len.saturating_sub(offset),
                    Some((f, _)) if first < f => 0,
                    _ => len,
                };
            }
        }
        let mean = match self.seen_lines {
            0 => 200,
            n => (self.seen_bytes / n).max(1),
        };
        let oldest_ns = match (self.cut_oldest_ns, self.oldest_unacked_ns) {
            (0, t) | (t, 0) => t,
            (a, b) => a.min(b),
        };
        Ok(Lag {
            bytes: unread + self.unacked_bytes + self.cut_bytes,
            records: self.unacked_records + self.cut_records + unread / mean,
            oldest_ns,
        })
    }
}
