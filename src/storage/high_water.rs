//! The sequence-number high-water mark, kept durably in `<dir>/_main.seq`, so numbers never
//! repeat even when the files that carry them were moved away (an external logrotate, then a
//! restart).
//!
//! The file is one fixed-size record, `SSSSSSSSSSSSSSSSSSSS CCCCCCCC\n`: the highest sequence
//! number written, 20 decimal digits, a space, the CRC-32 of those digits in 8 lower-case hex
//! digits, a newline (30 bytes). It is rewritten in place with one `pwrite` at offset 0 and never
//! changes length, so an update is one syscall and a torn or zeroed record (a power loss) fails
//! its checksum instead of being misread. The writer updates it once per flush, after the lines
//! are in the file, and fsyncs it when it fsyncs the data; start-up continues from the highest
//! of this record and the newest line in the files.
//!
//! This file holds the encoding (pure) and the file handle; it does not decide when to write.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// The state file's name in the data directory.
pub const STATE_FILE: &str = "_main.seq";

/// Bytes in the record: 20 digits, a space, 8 hex digits, a newline.
const RECORD_LEN: usize = 30;

/// The open state file and the number it holds.
pub struct HighWater {
    file: File,
    path: PathBuf,
    /// The number in the file (in the page cache at least).
    stored: u64,
    /// `stored` was written since the last `fsync`.
    dirty: bool,
}

/// What the state file held at start-up.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovered {
    /// No state file, or an empty one (a first start, or it was deleted).
    Missing,
    /// The highest sequence number it recorded.
    Found(u64),
    /// A record that does not check out (edited, or torn by a power loss), and why.
    Unreadable(BadRecord),
}

/// Why a state record was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BadRecord {
    Length(usize),
    Digits,
    Checksum,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRecord::Length(n) => write!(f, "{n} bytes where {RECORD_LEN} were expected"),
            BadRecord::Digits => write!(f, "not `20 digits, space, 8 hex digits, newline`"),
            BadRecord::Checksum => write!(f, "the checksum does not match the number"),
        }
    }
}

impl HighWater {
    /// Opens (creating if missing) the state file in `dir` and reads it.
    ///
    /// # Errors
    /// The error opening or reading the file. A record that does not check out is not an error:
    /// it is returned as [`Recovered::Unreadable`] and the files decide.
    pub fn open(dir: &Path) -> io::Result<(HighWater, Recovered)> {
        let path = dir.join(STATE_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut bytes = Vec::with_capacity(RECORD_LEN);
        // Bounded: a state file someone filled with junk is not read whole.
        (&mut file)
            .take(RECORD_LEN as u64 + 1)
            .read_to_end(&mut bytes)?;
        let recovered = if bytes.is_empty() {
            Recovered::Missing
        } else {
            match decode(&bytes) {
                Ok(seq) => Recovered::Found(seq),
                Err(why) => Recovered::Unreadable(why),
            }
        };
        let stored = match recovered {
            Recovered::Found(seq) => seq,
            _ => 0,
        };
        Ok((
            HighWater {
                file,
                path,
                stored,
                dirty: false,
            },
            recovered,
        ))
    }

    /// Records that every number up to `seq` has been given, unless the file already says so.
    /// One `pwrite` when the number moved, none otherwise.
    ///
    /// # Errors
    /// The error writing the file.
    pub fn record(&mut self, seq: u64) -> io::Result<()> {
        if seq <= self.stored {
            return Ok(());
        }
        self.file.write_all_at(&encode(seq), 0)?;
        self.stored = seq;
        self.dirty = true;
        Ok(())
    }

    /// Writes `seq` even if it is not higher than what the file held, and cuts the file to one
    /// record: at start-up, to replace an unreadable record with what the files say.
    ///
    /// # Errors
    /// The error writing or truncating the file.
    pub fn reset(&mut self, seq: u64) -> io::Result<()> {
        self.file.write_all_at(&encode(seq), 0)?;
        self.file.set_len(RECORD_LEN as u64)?;
        self.stored = seq;
        self.dirty = true;
        Ok(())
    }

    /// `fsync`s the record if it changed since the last call.
    ///
    /// # Errors
    /// The error of `fdatasync`.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The record for `seq`.
pub fn encode(seq: u64) -> [u8; RECORD_LEN] {
    let digits = format!("{seq:020}");
    let mut crc = flate2::Crc::new();
    crc.update(digits.as_bytes());
    let text = format!("{digits} {:08x}\n", crc.sum());
    let mut record = [0u8; RECORD_LEN];
    record.copy_from_slice(text.as_bytes());
    record
}

/// The number in a record, if it checks out.
///
/// # Errors
/// Why the record is refused.
pub fn decode(record: &[u8]) -> Result<u64, BadRecord> {
    if record.len() != RECORD_LEN {
        return Err(BadRecord::Length(record.len()));
    }
    let (digits, rest) = record.split_at(20);
    if !digits.iter().all(u8::is_ascii_digit) || rest[0] != b' ' || rest[9] != b'\n' {
        return Err(BadRecord::Digits);
    }
    let crc_text = std::str::from_utf8(&rest[1..9]).map_err(|_| BadRecord::Digits)?;
    let expected = u32::from_str_radix(crc_text, 16).map_err(|_| BadRecord::Digits)?;
    let mut crc = flate2::Crc::new();
    crc.update(digits);
    if crc.sum() != expected {
        return Err(BadRecord::Checksum);
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or(BadRecord::Digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        for seq in [0, 1, 99, 12_345, u64::MAX] {
            let record = encode(seq);
            assert_eq!(record.len(), RECORD_LEN);
            assert_eq!(decode(&record), Ok(seq));
        }
        let good = encode(12_345);
        assert_eq!(
            std::str::from_utf8(&good).unwrap()[..21].to_string(),
            "00000000000000012345 "
        );
        // A torn write: the new number's first half over the old one's second.
        let mut torn = encode(19_999);
        torn[..17].copy_from_slice(&encode(20_000)[..17]);
        assert_eq!(decode(&torn), Err(BadRecord::Checksum));
        assert_eq!(decode(&[0u8; RECORD_LEN]), Err(BadRecord::Digits));
        assert_eq!(decode(&good[..10]), Err(BadRecord::Length(10)));
        let mut flipped = good;
        flipped[25] = if flipped[25] == b'0' { b'1' } else { b'0' };
        assert_eq!(decode(&flipped), Err(BadRecord::Checksum));
    }

    #[test]
    fn record_rewrites_in_place_and_reopens() {
        let dir = std::env::temp_dir().join(format!("logmill-seq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut state, recovered) = HighWater::open(&dir).unwrap();
        assert_eq!(recovered, Recovered::Missing);
        state.record(41).unwrap();
        state.record(42).unwrap();
        state.record(7).unwrap(); // never backwards
        state.sync().unwrap();
        drop(state);
        let bytes = std::fs::read(dir.join(STATE_FILE)).unwrap();
        assert_eq!(bytes.len(), RECORD_LEN);
        let (_, recovered) = HighWater::open(&dir).unwrap();
        assert_eq!(recovered, Recovered::Found(42));
        std::fs::write(dir.join(STATE_FILE), b"junk").unwrap();
        let (mut state, recovered) = HighWater::open(&dir).unwrap();
        assert_eq!(recovered, Recovered::Unreadable(BadRecord::Length(4)));
        state.reset(5).unwrap();
        drop(state);
        assert_eq!(
            HighWater::open(&dir).unwrap().1,
            Recovered::Found(5),
            "reset replaces a bad record"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
