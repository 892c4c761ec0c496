//! One rotating set of files: `<name>.log` (active), `<name>.log.0` (newest rotated) up to
//! `<name>.log.{max_files-1}` (oldest). Used for each bucket's records and for `_server.log`.
//!
//! Crash safety comes from the order of renames. A rotation shifts `.i` to `.i+1` from the
//! lowest free index downwards, then renames the active file to `.0`, then creates a new active
//! file; every step is one atomic rename, so a crash at any point leaves at most one gap in the
//! numbering, or no active file. [`FileSet::open`] repairs both, and cuts a torn last line (a
//! crash during a write) so the next record never joins it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::retention::{Decision, Hold};

pub struct FileSet {
    dir: PathBuf,
    name: String,
    max_file_size: u64,
    max_files: usize,
    /// `None` after a rotation renamed the active file but could not create the next one.
    file: Option<File>,
    size: u64,
    /// Asked before the oldest file is deleted, when some `--forward` sink may not have read it
    /// ([`super::retention`]); files it keeps are numbered past `max_files`.
    hold: Option<Hold>,
    /// Sentences about files deleted unread (over `--forward-max-lag`), for the server's log.
    dropped: Vec<String>,
}

/// What [`FileSet::open`] found and fixed.
pub struct Opened {
    pub files: FileSet,
    /// The last complete line of the newest file that has one, without its newline.
    pub last_line: Option<Vec<u8>>,
    /// One sentence per repair, for the server's log.
    pub repairs: Vec<String>,
}

impl FileSet {
    /// Opens (creating if needed) the set `name` in `dir`, after repairing what a crash left.
    ///
    /// # Errors
    /// I/O errors creating the directory or opening the active file.
    pub fn open(
        dir: &Path,
        name: &str,
        max_file_size: u64,
        max_files: usize,
    ) -> io::Result<Opened> {
        FileSet::open_held(dir, name, max_file_size, max_files, None)
    }

    /// [`FileSet::open`], with `hold` asked before a rotation deletes the oldest file (and the
    /// start-up repair deleting nothing past `max_files`: the next rotation decides).
    ///
    /// # Errors
    /// I/O errors creating the directory or opening the active file.
    pub fn open_held(
        dir: &Path,
        name: &str,
        max_file_size: u64,
        max_files: usize,
        hold: Option<Hold>,
    ) -> io::Result<Opened> {
        fs::create_dir_all(dir)?;
        let mut files = FileSet {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            max_file_size,
            max_files: max_files.max(1),
            file: None,
            size: 0,
            hold,
            dropped: Vec::new(),
        };
        let mut repairs = files.compact_rotated()?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(files.active_path())?;
        let len = file.metadata()?.len();
        if len > 0 {
            let keep = end_of_last_line(&mut file, len)?;
            if keep < len {
                file.set_len(keep)?;
                let cut = len - keep;
                // Spelled out rather than with `server_log::count`: the server's log is built
                // on this file, not the other way round.
                repairs.push(format!(
                    "{}: cut a torn last line of {cut} byte{} left by a crash",
                    files.active_path().display(),
                    if cut == 1 { "" } else { "s" }
                ));
            }
            files.size = keep;
        }
        files.file = Some(file);
        let last_line = files.newest_last_line()?;
        Ok(Opened {
            files,
            last_line,
            repairs,
        })
    }

    pub fn active_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    pub fn rotated_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("{}.log.{index}", self.name))
    }

    /// Bytes in the active file.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn max_file_size(&self) -> u64 {
        self.max_file_size
    }

    /// Writes some of `buf` to the active file, like [`Write::write`].
    ///
    /// # Errors
    /// The file's write error; also an error while a failed rotation has left no active file.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(create_active(&self.active_path())?),
        };
        let n = file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    /// `fsync`s the active file's data.
    ///
    /// # Errors
    /// The error of `fdatasync`.
    pub fn sync(&self) -> io::Result<()> {
        match &self.file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// Moves the active file to `.0`, shifting older files up and deleting the oldest, then starts
    /// a new active file. Safe to call again after it failed half-way: it finishes the job.
    ///
    /// # Errors
    /// The first failing rename, remove or create.
    pub fn rotate(&mut self) -> io::Result<()> {
        if self.file.is_some() {
            // The lowest free index (past `max_files` when files are held for a sink).
            let mut free = (0..usize::MAX)
                .find(|&i| !self.rotated_path(i).exists())
                .unwrap_or(usize::MAX);
            // Room is made by deleting the oldest, unless a sink still needs it.
            while free >= self.max_files {
                let oldest = self.rotated_path(free - 1);
                if self.keeps_oldest(free - 1)? {
                    break;
                }
                fs::remove_file(oldest)?;
                free -= 1;
            }
            for i in (0..free).rev() {
                fs::rename(self.rotated_path(i), self.rotated_path(i + 1))?;
            }
            fs::rename(self.active_path(), self.rotated_path(0))?;
            self.file = None;
            self.size = 0;
        }
        self.file = Some(create_active(&self.active_path())?);
        self.size = 0;
        Ok(())
    }

    /// Whether `.oldest` (past or at `max_files - 1`) is kept for a sink that has not read it.
    fn keeps_oldest(&mut self, oldest: usize) -> io::Result<bool> {
        let Some(hold) = &self.hold else {
            return Ok(false);
        };
        let newer = match oldest {
            0 => self.active_path(),
            i => self.rotated_path(i - 1),
        };
        let next_first = match File::open(&newer) {
            Ok(mut f) => crate::storage::search::files::first_seq(&mut f)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut held = 0u64;
        for i in self.max_files - 1..=oldest {
            held = held.saturating_add(fs::metadata(self.rotated_path(i)).map_or(0, |m| m.len()));
        }
        match hold.keeps(&self.rotated_path(oldest), next_first, held)? {
            Decision::Delete => Ok(false),
            Decision::Keep => Ok(true),
            Decision::Drop(why) => {
                self.dropped.push(why);
                Ok(false)
            }
        }
    }

    /// What rotations deleted before every sink read it (over `--forward-max-lag`), one
    /// sentence per file, once.
    pub fn take_dropped(&mut self) -> Vec<String> {
        std::mem::take(&mut self.dropped)
    }

    /// Closes and reopens the active file, for an external `logrotate` that moved it (SIGHUP).
    ///
    /// # Errors
    /// The error opening the file.
    pub fn reopen(&mut self) -> io::Result<()> {
        let file = create_active(&self.active_path())?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    /// Renumbers rotated files so they are `.0 .. .k` with no gap, oldest last, and deletes those
    /// beyond `max_files` (a gap is what a crash in the middle of a rotation leaves).
    fn compact_rotated(&self) -> io::Result<Vec<String>> {
        let prefix = format!("{}.log.", self.name);
        let mut present: Vec<usize> = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(index) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            // `.7` counts; `.07` or `.7.gz` (someone else's files) do not.
            if let Ok(i) = index.parse::<usize>()
                && index == i.to_string()
            {
                present.push(i);
            }
        }
        present.sort_unstable();
        let mut repairs = Vec::new();
        for (want, &have) in present.iter().enumerate() {
            if want >= self.max_files && self.hold.is_none() {
                fs::remove_file(self.rotated_path(have))?;
                repairs.push(format!(
                    "deleted {} (over --max-files {})",
                    self.rotated_path(have).display(),
                    self.max_files
                ));
            } else if want != have {
                fs::rename(self.rotated_path(have), self.rotated_path(want))?;
                repairs.push(format!(
                    "renamed {} to {} (a rotation was interrupted)",
                    self.rotated_path(have).display(),
                    self.rotated_path(want).display()
                ));
            }
        }
        Ok(repairs)
    }

    fn newest_last_line(&self) -> io::Result<Option<Vec<u8>>> {
        let paths = std::iter::once(self.active_path())
            .chain((0..self.max_files).map(|i| self.rotated_path(i)));
        for path in paths {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let len = file.metadata()?.len();
            let end = end_of_last_line(&mut file, len)?;
            if end == 0 {
                continue;
            }
            let start = start_of_line_ending_at(&mut file, end - 1)?;
            let mut line = vec![0; (end - 1 - start) as usize];
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut line)?;
            return Ok(Some(line));
        }
        Ok(None)
    }
}

/// So callers that need the whole buffer written use `write_all` (which turns a zero-byte write
/// into an error instead of looping on it); the writer thread keeps its own offset instead,
/// because a failed write must resume where it stopped.
impl Write for FileSet {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        FileSet::write(self, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn create_active(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Chunk for backwards scans: lines are usually short, but a 1 MiB record is a 1 MiB line.
const SCAN_CHUNK: u64 = 64 * 1024;

/// The offset just after the last `\n` in the first `len` bytes (0 if none).
fn end_of_last_line(file: &mut File, len: u64) -> io::Result<u64> {
    Ok(rfind_newline(file, len)?.map_or(0, |p| p + 1))
}

/// The offset where the line whose newline is at `newline` starts.
fn start_of_line_ending_at(file: &mut File, newline: u64) -> io::Result<u64> {
    Ok(rfind_newline(file, newline)?.map_or(0, |p| p + 1))
}

/// Position of the last `\n` before `end`, reading backwards in chunks.
fn rfind_newline(file: &mut File, end: u64) -> io::Result<Option<u64>> {
    let mut hi = end;
    let mut buf = vec![0u8; SCAN_CHUNK as usize];
    while hi > 0 {
        let lo = hi.saturating_sub(SCAN_CHUNK);
        let chunk = &mut buf[..(hi - lo) as usize];
        file.seek(SeekFrom::Start(lo))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("logmill-fileset-{tag}-{}", std::process::id()));
        if d.exists() {
            fs::remove_dir_all(&d).unwrap();
        }
        d
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotation_keeps_max_files_and_order() {
        let dir = tempdir("rotate");
        let mut files = FileSet::open(&dir, "_main", 10, 3).unwrap().files;
        for i in 0..6 {
            files.write(format!("line {i}\n").as_bytes()).unwrap();
            files.rotate().unwrap();
        }
        assert_eq!(
            names(&dir),
            ["_main.log", "_main.log.0", "_main.log.1", "_main.log.2"]
        );
        assert_eq!(
            fs::read_to_string(files.rotated_path(0)).unwrap(),
            "line 5\n"
        );
        assert_eq!(
            fs::read_to_string(files.rotated_path(2)).unwrap(),
            "line 3\n"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_repairs_gap_and_torn_line() {
        let dir = tempdir("repair");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("_main.log.0"), "a 1 2\n").unwrap();
        fs::write(dir.join("_main.log.2"), "a 0 1\n").unwrap();
        fs::write(dir.join("_main.log"), "x INFO 3 ok\nx INFO 4 tor").unwrap();
        let opened = FileSet::open(&dir, "_main", 1000, 5).unwrap();
        assert_eq!(opened.repairs.len(), 2, "{:?}", opened.repairs);
        assert_eq!(names(&dir), ["_main.log", "_main.log.0", "_main.log.1"]);
        assert_eq!(
            fs::read_to_string(dir.join("_main.log")).unwrap(),
            "x INFO 3 ok\n"
        );
        assert_eq!(opened.last_line.as_deref(), Some(&b"x INFO 3 ok"[..]));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn last_line_comes_from_newest_rotated_when_active_is_empty() {
        let dir = tempdir("empty-active");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("_main.log.0"), "x INFO 8 a\nx INFO 9 b\n").unwrap();
        let opened = FileSet::open(&dir, "_main", 1000, 5).unwrap();
        assert_eq!(opened.last_line.as_deref(), Some(&b"x INFO 9 b"[..]));
        fs::remove_dir_all(&dir).unwrap();
    }
}
