//! The server's own log: its life (start, addresses, errors, refused connections, repairs,
//! once-a-minute stats) to stderr and to `<dir>/_server.log`, rotated like the record files.
//!
//! It is low volume and written synchronously under a mutex by whichever thread logs; it never
//! goes through the record writer, so the server can still say what is wrong when the writer is
//! stuck. A failure to write the file is reported on stderr and does not stop the server.
//!
//! It lives in storage because `_server.log` is a file of the data directory, rotated by the
//! same [`FileSet`] as the record files; the loops, the writer and `main` all log through it.

use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::storage::fileset::FileSet;

/// A number and its noun, for log lines: `count(1, "connection")` shows `1 connection`,
/// `count(2, "connection")` shows `2 connections`. Only for nouns whose plural adds an `s`.
pub fn count(n: u64, noun: &'static str) -> Count {
    Count { n, noun }
}

/// See [`count`].
pub struct Count {
    n: u64,
    noun: &'static str,
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.n == 1 { "" } else { "s" };
        write!(f, "{} {}{s}", self.n, self.noun)
    }
}

/// The server's log: every line goes to stderr, and to `_server.log` unless
/// [`stderr_only`](ServerLog::stderr_only).
pub struct ServerLog {
    files: Mutex<Option<FileSet>>,
}

impl ServerLog {
    /// Opens `<dir>/_server.log` and logs the repairs it needed.
    ///
    /// # Errors
    /// The error creating the directory or the file.
    pub fn open(dir: &Path, max_file_size: u64, max_files: usize) -> std::io::Result<ServerLog> {
        let opened = FileSet::open(dir, "_server", max_file_size, max_files)?;
        let log = ServerLog {
            files: Mutex::new(Some(opened.files)),
        };
        for repair in opened.repairs {
            log.warn(format_args!("repaired at start-up: {repair}"));
        }
        Ok(log)
    }

    /// A log that only writes to stderr (tests that run a writer or a gRPC port on their own).
    pub fn stderr_only() -> ServerLog {
        ServerLog {
            files: Mutex::new(None),
        }
    }

    pub fn info(&self, args: fmt::Arguments<'_>) {
        self.write("INFO", args);
    }

    pub fn warn(&self, args: fmt::Arguments<'_>) {
        self.write("WARNING", args);
    }

    pub fn error(&self, args: fmt::Arguments<'_>) {
        self.write("ERROR", args);
    }

    fn write(&self, level: &str, args: fmt::Arguments<'_>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let time = time::OffsetDateTime::from_unix_timestamp(now.as_secs() as i64)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let mut line = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z {level} ",
            time.year(),
            u8::from(time.month()),
            time.day(),
            time.hour(),
            time.minute(),
            time.second(),
            now.subsec_micros()
        );
        // One event, one line, whatever the message holds.
        for c in args.to_string().chars() {
            match c {
                '\n' => line.push_str("\\n"),
                c if c.is_control() => line.push_str(&c.escape_default().to_string()),
                c => line.push(c),
            }
        }
        line.push('\n');
        eprint!("{line}");
        let mut guard = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(files) = guard.as_mut() {
            let len = line.len() as u64;
            let result = (|| {
                if files.size() > 0 && files.size() + len > files.max_file_size() {
                    files.rotate()?;
                }
                files.write_all(line.as_bytes())
            })();
            if let Err(e) = result
                && writeln!(std::io::stderr(), "logmill: cannot write _server.log: {e}").is_err()
            {
                // Neither the file nor stderr takes it: there is nowhere left to say it.
            }
        }
    }

    /// Reopens `_server.log` (SIGHUP, after an external logrotate moved it).
    pub fn reopen(&self) {
        let mut guard = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(files) = guard.as_mut()
            && let Err(e) = files.reopen()
        {
            eprintln!("logmill: cannot reopen _server.log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_agree_with_their_number() {
        assert_eq!(count(0, "connection").to_string(), "0 connections");
        assert_eq!(count(1, "event loop").to_string(), "1 event loop");
        assert_eq!(count(2, "record").to_string(), "2 records");
    }
}
