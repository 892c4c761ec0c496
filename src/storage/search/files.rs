//! The stored files of a search, read in bounded memory: which buckets and files exist, a
//! file's identity (the sequence number of its first line), and two line readers over an open
//! file: [`Backward`] (newest first, in [`BLOCK`]-sized reads) and [`Forward`] (for the
//! follower). Neither ever holds more than one block plus the longest line in memory.
//!
//! Nothing here knows about filters or records: lines are byte slices without their newline.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::storage::bucket;
use crate::storage::line::parse_seq;

/// One read: big enough that the system call is cheap per line, small enough to keep memory
/// flat (a search holds one per bucket it merges).
pub const BLOCK: usize = 64 * 1024;

/// The anonymous bucket's name in filters, hits and cursors: its files are `<dir>/_main.log*`.
pub const ANONYMOUS: &str = "_main";

/// The buckets in `dir`: `_main` (when its files exist) and every app directory, sorted.
///
/// # Errors
/// The error reading `dir`.
pub fn buckets(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = bucket::existing(dir)?;
    if dir.join("_main.log").exists() || dir.join("_main.log.0").exists() {
        names.insert(0, ANONYMOUS.to_string());
    }
    Ok(names)
}

/// The directory holding `bucket`'s files; `None` for a name that is not a bucket (so a name
/// from a query never becomes a path it should not).
pub fn bucket_dir(dir: &Path, bucket: &str) -> Option<PathBuf> {
    match bucket {
        ANONYMOUS => Some(dir.to_path_buf()),
        app if bucket::valid_app_name(app) => Some(dir.join(app)),
        _ => None,
    }
}

/// A bucket's file paths, newest first: `_main.log`, `_main.log.0`, `_main.log.1`, ...
/// (whatever indices exist, in order; a rotation may rename them right after, which is why
/// files are recognised by [`first_seq`], not by name).
pub fn file_paths(bucket_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut indices = Vec::new();
    let entries = match std::fs::read_dir(bucket_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        if let Some(index) = name.to_str().and_then(|n| n.strip_prefix("_main.log."))
            && let Ok(i) = index.parse::<usize>()
            && index == i.to_string()
        {
            indices.push(i);
        }
    }
    indices.sort_unstable();
    let mut paths = vec![bucket_dir.join("_main.log")];
    paths.extend(
        indices
            .into_iter()
            .map(|i| bucket_dir.join(format!("_main.log.{i}"))),
    );
    Ok(paths)
}

/// Opens `path`; `None` when it does not exist (rotated away between listing and opening).
pub fn open(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The sequence number of the file's first complete line: the file's identity, which a
/// rotation (a rename) does not change. `None` for an empty file or one whose first line is
/// not yet complete or not a stored line.
pub fn first_seq(file: &mut File) -> io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(0))?;
    // A sequence number is within the first 64 bytes of either format; the newline may be far.
    let mut head = [0u8; 256];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = &head[..got];
    // Only a line the writer finished counts; a short file with no newline is being written.
    if got < 256 && !head.contains(&b'\n') {
        return Ok(None);
    }
    let end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    Ok(parse_seq(&head[..end]))
}

/// Reads a file's lines from an offset towards its start, one [`BLOCK`] at a time.
///
/// Holds the unread bytes of the current block plus, when a line is longer than a block, that
/// line: memory is one block plus the longest line, whatever the file's size.
pub struct Backward {
    file: File,
    /// File offset of `buf[0]`.
    lo: u64,
    /// Bytes from `lo`; the lines not yet returned end at `buf[..cut]`, which ends with a
    /// newline (or is empty).
    buf: Vec<u8>,
    cut: usize,
    spare: Vec<u8>,
    /// Whether the partial last line (if any) was dropped yet.
    started: bool,
}

impl Backward {
    /// Lines that end at or before `end` (an offset just after a newline, or the file's
    /// length: a last line without its newline is still being written and is left out).
    pub fn new(file: File, end: u64) -> Backward {
        Backward {
            file,
            lo: end,
            buf: Vec::new(),
            cut: 0,
            spare: Vec::new(),
            started: false,
        }
    }

    /// The offset where the lines not yet returned end: a scan resumed here returns the
    /// lines before the last one returned.
    pub fn position(&self) -> u64 {
        self.lo + self.cut as u64
    }

    /// The previous line and the offset where it starts, or `None` at the file's start.
    /// The line is without its newline. Adds the bytes it read from the file to `read` (the
    /// work done, for a byte budget).
    ///
    /// # Errors
    /// The file's read error.
    pub fn prev(&mut self, read: &mut u64) -> io::Result<Option<(u64, &[u8])>> {
        while !self.started {
            // The first reads: drop a partial last line (no newline yet), however long.
            if !self.fill(read)? {
                self.started = true;
                self.cut = 0;
                return Ok(None);
            }
            if let Some(i) = memchr::memrchr(b'\n', &self.buf[..self.cut]) {
                self.cut = i + 1;
                self.started = true;
            } else {
                self.cut = 0;
            }
        }
        loop {
            if self.cut == 0 && !self.fill(read)? {
                return Ok(None);
            }
            let body_end = self.cut - 1;
            match memchr::memrchr(b'\n', &self.buf[..body_end]) {
                Some(i) => {
                    self.cut = i + 1;
                    return Ok(Some((
                        self.lo + self.cut as u64,
                        &self.buf[i + 1..body_end],
                    )));
                }
                None if self.lo == 0 => {
                    self.cut = 0;
                    return Ok(Some((0, &self.buf[..body_end])));
                }
                None => {
                    self.fill(read)?;
                }
            }
        }
    }

    /// Puts the block before `lo` in front of `buf[..cut]`; false at the file's start.
    fn fill(&mut self, read: &mut u64) -> io::Result<bool> {
        if self.lo == 0 {
            return Ok(false);
        }
        let new_lo = self.lo.saturating_sub(BLOCK as u64);
        let n = (self.lo - new_lo) as usize;
        self.spare.clear();
        self.spare.resize(n, 0);
        self.file.seek(SeekFrom::Start(new_lo))?;
        self.file.read_exact(&mut self.spare)?;
        self.spare.extend_from_slice(&self.buf[..self.cut]);
        std::mem::swap(&mut self.buf, &mut self.spare);
        self.cut = self.buf.len();
        self.lo = new_lo;
        *read += n as u64;
        Ok(true)
    }
}

/// Reads a file's complete lines from an offset towards its end, one [`BLOCK`] at a time:
/// the follower's reader. A last line without its newline is left for the next call.
pub struct Forward {
    buf: Vec<u8>,
}

impl Forward {
    pub fn new() -> Forward {
        Forward { buf: Vec::new() }
    }

    /// Calls `each(start_offset, line)` for the complete lines from `from`, until it returns
    /// false or about `max_bytes` were read; returns the offset after the last line given.
    ///
    /// # Errors
    /// The file's read error.
    pub fn read(
        &mut self,
        file: &mut File,
        from: u64,
        max_bytes: u64,
        mut each: impl FnMut(u64, &[u8]) -> bool,
    ) -> io::Result<u64> {
        file.seek(SeekFrom::Start(from))?;
        let mut pos = from;
        self.buf.clear();
        let mut block = vec![0u8; BLOCK];
        loop {
            let n = match file.read(&mut block) {
                Ok(0) => return Ok(pos),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.buf.extend_from_slice(&block[..n]);
            let mut start = 0;
            while let Some(i) = memchr::memchr(b'\n', &self.buf[start..]) {
                let go_on = each(pos, &self.buf[start..start + i]);
                pos += i as u64 + 1;
                start += i + 1;
                if !go_on {
                    return Ok(pos);
                }
            }
            self.buf.drain(..start);
            if pos - from >= max_bytes {
                return Ok(pos);
            }
        }
    }
}

impl Default for Forward {
    fn default() -> Self {
        Forward::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(tag: &str, bytes: &[u8]) -> (PathBuf, File) {
        let path =
            std::env::temp_dir().join(format!("logmill-search-{tag}-{}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        (path, file)
    }

    fn backward_lines(file: File, end: u64) -> Vec<(u64, String)> {
        let mut b = Backward::new(file, end);
        let mut out = Vec::new();
        while let Some((at, line)) = b.prev(&mut 0).unwrap() {
            out.push((at, String::from_utf8(line.to_vec()).unwrap()));
        }
        out
    }

    #[test]
    fn backward_returns_whole_lines_newest_first_across_blocks() {
        let long = "x".repeat(3 * BLOCK + 17);
        let text = format!("a\n{long}\nbc\n\nd\npartial");
        let (path, file) = temp_file("backward", text.as_bytes());
        let len = text.len() as u64;
        let lines = backward_lines(file, len);
        let starts: Vec<u64> = lines.iter().map(|l| l.0).collect();
        let texts: Vec<&str> = lines.iter().map(|l| l.1.as_str()).collect();
        assert_eq!(texts, ["d", "", "bc", long.as_str(), "a"]);
        let l = long.len() as u64;
        assert_eq!(starts, [l + 7, l + 6, l + 3, 2, 0]);
        // Resuming at a line's start gives the lines before it.
        let lines = backward_lines(File::open(&path).unwrap(), l + 3);
        assert_eq!(lines.len(), 2);
        // A file that is one partial line has no lines.
        let (path2, file) = temp_file("backward-partial", long.as_bytes());
        assert!(backward_lines(file, long.len() as u64).is_empty());
        std::fs::remove_file(path).unwrap();
        std::fs::remove_file(path2).unwrap();
    }

    #[test]
    fn forward_leaves_a_partial_line_for_later() {
        let (path, mut file) = temp_file("forward", b"one\ntwo\nthr");
        let mut got = Vec::new();
        let end = Forward::new()
            .read(&mut file, 0, u64::MAX, |at, l| {
                got.push((at, l.to_vec()));
                true
            })
            .unwrap();
        assert_eq!(end, 8);
        assert_eq!(got, [(0, b"one".to_vec()), (4, b"two".to_vec())]);
        std::fs::remove_file(path).unwrap();
    }
}
