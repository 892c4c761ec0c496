//! One server per data directory: an exclusive lock on `<dir>/_server.lock`, taken at start-up
//! before anything else touches the directory, held until the process ends.
//!
//! Two servers writing one `_main.log` would interleave their sequence numbers (`1,1,2,2`). The
//! lock is `flock(LOCK_EX | LOCK_NB)` (std's [`File::try_lock`]): the kernel releases it when the
//! process dies, however it dies, so a crash never leaves a stale lock and there is no pid file to
//! clean up. The file's content only says who holds it (one JSON line: pid and bound addresses,
//! written once the ports are bound), so that a refused second server can name the first; the
//! lock is the `flock`, not the file's existence. The file is never deleted: unlinking a locked
//! file lets a third process create a new one and lock it while a second still waits on the old.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read as _};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "_server.lock";

/// The lock on a data directory; dropping it (or the process ending) releases it.
pub struct DirLock {
    file: File,
    path: PathBuf,
}

/// Why the directory could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds the lock; `holder` is what its lock file says about it.
    Held { dir: PathBuf, holder: String },
    /// Creating the directory or the lock file, or locking it, failed.
    Io { path: PathBuf, source: io::Error },
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Held { dir, holder } => write!(
                f,
                "the directory {} is in use by another logmill ({holder}); stop it, or choose \
                 another directory with --dir",
                dir.display()
            ),
            LockError::Io { path, source } => write!(
                f,
                "cannot lock {}: {source}; check the directory is writable, or choose another \
                 with --dir",
                path.display()
            ),
        }
    }
}

impl std::error::Error for LockError {}

impl DirLock {
    /// Creates `dir` if needed and locks it for this process, writing this process's pid into the
    /// lock file.
    ///
    /// # Errors
    /// [`LockError::Held`] if another process holds the lock (with what its file says about it),
    /// [`LockError::Io`] if the directory or the file cannot be created or locked.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_error = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_error)?;
        // Not truncated on open: the holder's description must survive a refused attempt.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder: describe_holder(&file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
        let lock = DirLock {
            file,
            path: path.clone(),
        };
        lock.describe(None, None, None).map_err(io_error)?;
        Ok(lock)
    }

    /// Says in the lock file who holds it: this pid and the bound addresses, one JSON line in
    /// the shape of the listening line (an object with `pid`, `tcp`, `grpc`, `udp`).
    ///
    /// # Errors
    /// The error writing the file.
    pub fn describe(
        &self,
        tcp: Option<SocketAddr>,
        grpc: Option<SocketAddr>,
        udp: Option<SocketAddr>,
    ) -> io::Result<()> {
        let mut line = serde_json::json!({
            "pid": std::process::id(),
            "tcp": tcp.map(|a| a.to_string()),
            "grpc": grpc.map(|a| a.to_string()),
            "udp": udp.map(|a| a.to_string()),
        })
        .to_string();
        line.push('\n');
        // Written over the old content, then cut to length: a reader in between sees the new
        // line first, and only the first line counts.
        self.file.write_all_at(line.as_bytes(), 0)?;
        self.file.set_len(line.len() as u64)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What the holder's lock file says, for a person: `pid 1234, tcp 127.0.0.1:4020, gRPC ...`.
fn describe_holder(file: &File) -> String {
    let mut text = String::new();
    if let Err(e) = (&*file).read_to_string(&mut text) {
        return format!("its lock file cannot be read: {e}");
    }
    holder_text(text.lines().next().unwrap_or(""))
}

/// Turns the holder's lock-file line into words. Pure, so it is tested without a second process.
fn holder_text(line: &str) -> String {
    let Ok(serde_json::Value::Object(holder)) = serde_json::from_str(line) else {
        return "its lock file does not say which process; it may still be starting".to_string();
    };
    let mut words = match holder.get("pid").and_then(serde_json::Value::as_u64) {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_string(),
    };
    let mut bound = false;
    for (key, name) in [("tcp", "tcp"), ("grpc", "gRPC"), ("udp", "udp")] {
        if let Some(addr) = holder.get(key).and_then(serde_json::Value::as_str) {
            words.push_str(&format!(", {name} {addr}"));
            bound = true;
        }
    }
    if !bound {
        words.push_str(", still starting: no port bound yet");
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_naming_the_holder_and_released_on_drop() {
        let dir = std::env::temp_dir().join(format!("logmill-lock-{}", std::process::id()));
        let first = DirLock::acquire(&dir).unwrap();
        first
            .describe(
                Some("127.0.0.1:4020".parse().unwrap()),
                Some("127.0.0.1:4021".parse().unwrap()),
                None,
            )
            .unwrap();
        // flock locks belong to an open file description: a second open in the same process
        // is refused like another process would be.
        let refused = DirLock::acquire(&dir).err().unwrap();
        let text = refused.to_string();
        let pid = std::process::id();
        assert!(
            text.contains(&format!(
                "pid {pid}, tcp 127.0.0.1:4020, gRPC 127.0.0.1:4021"
            )),
            "{text}"
        );
        assert!(text.contains("--dir"), "{text}");
        drop(first);
        let again = DirLock::acquire(&dir).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn holder_text_reads_what_it_can() {
        assert_eq!(
            holder_text(r#"{"pid":7,"tcp":"[::1]:1","grpc":null,"udp":"[::1]:2"}"#),
            "pid 7, tcp [::1]:1, udp [::1]:2"
        );
        assert_eq!(
            holder_text(r#"{"pid":7,"tcp":null,"grpc":null,"udp":null}"#),
            "pid 7, still starting: no port bound yet"
        );
        assert!(holder_text("").contains("may still be starting"));
    }
}
