//! [`Spool`]: the [`Logger`](super::Logger)'s fallback on disk while the server cannot take
//! records (unreachable, or slower than the program logs). Holds no socket and no thread.
//!
//! The spool is a directory of append-only segment files, `spool-<20 digits>.frames`, numbered
//! in the order they were opened. A segment is the native wire format itself: length-prefixed
//! `ClientFrame`s holding `batch` (or `record`) frames, exactly what would have gone to the
//! socket, so replay decodes them with the server's own decoder ([`native::decode_client_frame`]).
//! Records are taken back oldest segment first, so the spool is a FIFO of whole segments.
//!
//! The bound is on the bytes of all segments together. When an append would pass it, the
//! oldest segments are deleted first, their records counted in [`Spool::dropped`] and reported
//! once per deletion on stderr: only the bound ever drops a record.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::protocol::frame::{self, Frame};
use crate::protocol::native;
use crate::record::Record;

/// The largest frame a segment may hold: a spool written by a logger with a larger batch is
/// still read, anything longer is not a spool frame.
const MAX_SPOOL_FRAME: u32 = 64 << 20;

/// The number of a fresh spool's first segment: 2^32, leaving as many below for
/// [`Spool::prepend`].
const FIRST_NUMBER: u64 = 1 << 32;

/// One segment on disk and what it holds.
#[derive(Debug)]
struct Segment {
    number: u64,
    path: PathBuf,
    bytes: u64,
    records: u64,
}

/// The spool directory and the segments in it, oldest first; the last one is appended to.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// A segment is closed (a new one started) past this size, so the bound drops a slice of
    /// the spool, not all of it.
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    /// The open last segment, if it is still appended to.
    active: Option<File>,
    next_number: u64,
    total_bytes: u64,
    dropped: u64,
}

impl Spool {
    /// Opens (creating it if needed) the spool in `dir`, bounded to `max_bytes`, and counts the
    /// records segments left by an earlier run hold: they are replayed first.
    ///
    /// # Errors
    /// When the directory cannot be created or read, or a segment cannot be read.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let number = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("spool-"))
                .and_then(|n| n.strip_suffix(".frames"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(number) = number {
                found.push((number, path));
            }
        }
        found.sort();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: (max_bytes / 8).max(4096),
            segments: VecDeque::new(),
            active: None,
            // A fresh spool starts numbering high, so that `prepend` has numbers below.
            next_number: found.last().map_or(FIRST_NUMBER, |(n, _)| n + 1),
            total_bytes: 0,
            dropped: 0,
        };
        for (number, path) in found {
            let bytes = fs::read(&path)?;
            let mut records = 0u64;
            decode_segment(&bytes, |_| records += 1);
            spool.total_bytes += bytes.len() as u64;
            spool.segments.push_back(Segment {
                number,
                path,
                bytes: bytes.len() as u64,
                records,
            });
        }
        Ok(spool)
    }

    /// Records held on disk.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.records == 0)
    }

    /// Records deleted to keep the bound, since the spool was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Appends `records` as frames of at most `batch` records each. Oldest segments are deleted
    /// first if the spool would pass its bound (never the one being written).
    ///
    /// # Errors
    /// When the segment cannot be created or written; the records are then not spooled.
    pub fn append(&mut self, records: &[Record<'static>], batch: usize) -> io::Result<()> {
        let mut out = Vec::new();
        // Chunks of `batch` records, halved until a frame fits a segment, so that the bound
        // can always be kept by deleting whole segments.
        let mut todo: Vec<&[Record<'static>]> = records.chunks(batch.max(1)).rev().collect();
        while let Some(chunk) = todo.pop() {
            out.clear();
            native::encode_records(chunk, &mut out);
            let len = out.len() as u64;
            if len > self.segment_bytes && chunk.len() > 1 {
                let (older, newer) = chunk.split_at(chunk.len() / 2);
                todo.push(newer);
                todo.push(older);
                continue;
            }
            if len > self.max_bytes {
                self.dropped += 1;
                eprintln!(
                    "logmill client: warning: a record of {len} bytes is larger than the spool's                      bound; dropped"
                );
                continue;
            }
            self.make_room(len);
            if self.active.is_none() {
                let number = self.next_number;
                self.next_number += 1;
                let path = self.segment_path(number);
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                self.active = Some(file);
                self.segments.push_back(Segment {
                    number,
                    path,
                    bytes: 0,
                    records: 0,
                });
            }
            let (Some(file), Some(segment)) = (self.active.as_mut(), self.segments.back_mut())
            else {
                unreachable!("an active file has a segment");
            };
            file.write_all(&out)?;
            segment.bytes += len;
            segment.records += chunk.len() as u64;
            self.total_bytes += len;
            if segment.bytes >= self.segment_bytes {
                self.active = None;
            }
        }
        Ok(())
    }

    /// Writes `records` as a segment before all others: records that were in flight when the
    /// logger stopped, older than anything spooled. The bound applies as for an append.
    ///
    /// # Errors
    /// When the segment cannot be written; the records are then not spooled.
    pub fn prepend(&mut self, records: &[Record<'static>]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let number = match self.segments.front() {
            Some(first) => first
                .number
                .checked_sub(1)
                .ok_or_else(|| io::Error::other("spool segment numbers exhausted at the front"))?,
            None => {
                self.next_number += 1;
                self.next_number - 1
            }
        };
        let mut out = Vec::new();
        native::encode_records(records, &mut out);
        self.make_room(out.len() as u64);
        let path = self.segment_path(number);
        fs::write(&path, &out)?;
        self.total_bytes += out.len() as u64;
        self.segments.push_front(Segment {
            number,
            path,
            bytes: out.len() as u64,
            records: records.len() as u64,
        });
        Ok(())
    }

    fn segment_path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("spool-{number:020}.frames"))
    }

    /// Deletes oldest segments until `incoming` more bytes fit the bound.
    fn make_room(&mut self, incoming: u64) {
        while self.total_bytes + incoming > self.max_bytes {
            if self.segments.len() == 1 {
                // The oldest is the one appended to: close it, a new one follows.
                self.active = None;
            }
            let Some(oldest) = self.segments.pop_front() else {
                break;
            };
            self.total_bytes -= oldest.bytes;
            self.dropped += oldest.records;
            eprintln!(
                "logmill client: warning: spool {} over its bound of {} bytes: dropped the oldest \
                 {} records ({} dropped in all)",
                self.dir.display(),
                self.max_bytes,
                oldest.records,
                self.dropped
            );
            if let Err(e) = fs::remove_file(&oldest.path) {
                eprintln!(
                    "logmill client: cannot delete spool segment {}: {e}",
                    oldest.path.display()
                );
            }
        }
    }

    /// Takes the oldest segment's records out of the spool, in order, and deletes the file: the
    /// caller holds them in memory from then on (and spools them again if it must stop).
    ///
    /// # Errors
    /// When the segment cannot be read; it is left in place.
    pub fn take_oldest(&mut self) -> io::Result<Vec<Record<'static>>> {
        let Some(segment) = self.segments.front() else {
            return Ok(Vec::new());
        };
        if self.segments.len() == 1 {
            // The oldest is the one appended to: close it first.
            self.active = None;
        }
        let bytes = fs::read(&segment.path)?;
        let mut records = Vec::new();
        decode_segment(&bytes, |r| records.push(r.into_static()));
        let segment = self.segments.pop_front().expect("checked above");
        self.total_bytes -= segment.bytes;
        fs::remove_file(&segment.path)?;
        Ok(records)
    }
}

/// Hands each record of a segment to `on_record`, in order. A torn last frame (a crash in the
/// middle of an append) and anything that does not decode end the segment: what precedes is
/// kept.
fn decode_segment(mut bytes: &[u8], mut on_record: impl FnMut(Record<'_>)) {
    while let Ok(Frame::Complete { payload, consumed }) = frame::decode(bytes, MAX_SPOOL_FRAME) {
        if native::decode_client_frame(payload, &mut on_record).is_err() {
            eprintln!(
                "logmill client: a spool segment holds an undecodable frame; skipped the rest"
            );
            return;
        }
        bytes = &bytes[consumed..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Body;

    fn record(text: &str) -> Record<'static> {
        Record {
            body: Body::Message(text.to_string().into()),
            ..Record::default()
        }
    }

    fn texts(records: &[Record<'_>]) -> Vec<String> {
        records
            .iter()
            .map(|r| match &r.body {
                Body::Message(m) | Body::Json(m) => m.to_string(),
            })
            .collect()
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("logmill-spool-{name}-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap();
        }
        dir
    }

    #[test]
    fn records_come_back_in_order_across_reopen() {
        let dir = temp("order");
        let mut spool = Spool::open(&dir, 1 << 20).unwrap();
        spool.append(&[record("a"), record("b")], 10).unwrap();
        spool.append(&[record("c")], 10).unwrap();
        drop(spool);
        let mut spool = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(spool.records(), 3);
        spool.append(&[record("d")], 10).unwrap();
        let mut all = Vec::new();
        while !spool.is_empty() {
            all.extend(spool.take_oldest().unwrap());
        }
        assert_eq!(texts(&all), ["a", "b", "c", "d"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_bound_drops_oldest_segments_and_counts_them() {
        let dir = temp("bound");
        let mut spool = Spool::open(&dir, 8192).unwrap();
        let text = "x".repeat(200);
        for i in 0..200 {
            spool.append(&[record(&format!("{i} {text}"))], 1).unwrap();
        }
        let on_disk: u64 = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(on_disk <= 8192, "{on_disk}");
        assert!(spool.dropped() > 0);
        assert_eq!(spool.dropped() + spool.records(), 200);
        let mut all = Vec::new();
        while !spool.is_empty() {
            all.extend(spool.take_oldest().unwrap());
        }
        // What is left is the newest, in order.
        let first = 200 - all.len();
        for (i, t) in texts(&all).iter().enumerate() {
            assert!(t.starts_with(&format!("{} ", first + i)), "{t}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
