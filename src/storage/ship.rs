//! The ship writer: the one thread that touches the files of the logship receiver
//! (`<dir>/ship/`, issue 15), so no disk write ever runs on an event loop.
//!
//! ```text
//! loop 0..N ──Request (Open, Append(bytes), Close), one channel──> logmill-ship
//!     ^                                                                │ open, write, fsync
//!     └──Reply (Opened(offset | refusal), Drained(n), Failed), per loop, + wake ─┘
//! ```
//!
//! The loops bound what they hand over (`server::ship`): a connection stops reading while its
//! bytes not yet [`Reply::Drained`] pass a cap, and so does a loop, so a slow or full disk
//! backpressures the shipping connections through TCP flow control and nothing else.
//!
//! Order and exclusivity come from the single channel: every request is handled in the order the
//! loops sent it, so a connection's chunks are appended in the order they were read, and its
//! `Close` (which frees the stored name) comes after its last chunk. One stored name is open for
//! at most one connection: a second waits up to [`BUSY_GRACE`] for the first to end (a
//! transmitter that reconnects at once may be seen before its old connection's end is), then
//! gets [`OpenError::Busy`].
//!
//! What is safely stored: chunks are written with `write(2)` straight from the loop's buffer (no
//! buffering in this process), so a file's size is what the kernel has, and survives this
//! process being killed. Under `--fsync always` the file is fsynced before its size is answered
//! and when the connection ends; under `--fsync <interval>` files written since the last sync are
//! synced that often.
//!
//! Safety of the paths: names were checked by `protocol::ship::validate_name` (no `/`, no `..`,
//! no leading `.`), so a path here is the ship directory and one plain component. It is opened
//! with `O_NOFOLLOW` (a symlink planted in the directory is refused, never followed) and
//! `O_NONBLOCK` (a planted FIFO does not block the thread), and must then be a regular file with
//! one link (a planted hard link to another file is refused).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::server_log::ServerLog;
use crate::config::Fsync;
use crate::stats::Stats;

/// How long an `Open` for a name another connection holds waits for it to be closed.
pub const BUSY_GRACE: Duration = Duration::from_secs(1);

/// One shipping connection: its loop, its token there, and a serial that tells a reused token
/// from the connection that had it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShipKey {
    loop_id: usize,
    token: usize,
    serial: u64,
}

impl ShipKey {
    pub fn new(loop_id: usize, token: usize, serial: u64) -> ShipKey {
        ShipKey {
            loop_id,
            token,
            serial,
        }
    }

    pub fn token(&self) -> usize {
        self.token
    }

    pub fn serial(&self) -> u64 {
        self.serial
    }
}

/// What a loop asks of the ship writer.
#[derive(Debug)]
pub enum Request {
    /// Open (or create) the stored `name` for `key` and answer its size.
    Open { key: ShipKey, name: String },
    /// Append these bytes to `key`'s file, after everything it sent before.
    Append { key: ShipKey, data: Vec<u8> },
    /// The connection ended: sync (under `--fsync always`) and free the name.
    Close { key: ShipKey },
}

/// Why a stored name cannot be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another connection ships this name now.
    Busy,
    /// The path exists and is not a plain file of ours: a symlink, a directory, a FIFO, a
    /// device, or a file with another hard link.
    NotAFile,
    /// The file system refused (permissions, no space, too many open files).
    Io(io::Error),
}

/// The ship writer's answer to one request, sent to the loop that asked.
#[derive(Debug)]
pub enum Reply {
    /// The name is open for `key`: send the transmitter this offset. Or why not.
    Opened {
        key: ShipKey,
        result: Result<u64, OpenError>,
    },
    /// `bytes` of `key`'s chunks left the queue (written, or dropped after a failure); the
    /// chunk's buffer comes back for the loop to read into again.
    Drained {
        key: ShipKey,
        bytes: usize,
        buffer: Vec<u8>,
    },
    /// Writing failed: nothing more of this connection is written (a gap would corrupt the
    /// copy); the transmitter resumes from the file's size when it comes back.
    Failed { key: ShipKey, error: io::Error },
}

/// How a loop reaches the writer: the shared request channel and its own reply channel.
pub struct Link {
    requests: Sender<Request>,
    replies: Receiver<Reply>,
}

impl Link {
    /// Hands a request to the writer.
    ///
    /// # Errors
    /// The writer thread is gone (it stopped on a panic); the request is returned.
    pub fn send(&self, request: Request) -> Result<(), Request> {
        self.requests.send(request).map_err(|e| e.0)
    }

    /// The next reply, if any is waiting.
    pub fn try_reply(&self) -> Option<Reply> {
        self.replies.try_recv().ok()
    }
}

/// A loop's way back: its reply channel and what wakes its `poll`.
struct Back {
    replies: Sender<Reply>,
    wake: Box<dyn Fn() + Send>,
    /// A reply was sent since the last wake.
    owed: bool,
}

/// A stored name open for one connection.
struct OpenFile {
    name: String,
    file: File,
    /// Written since the last sync.
    dirty: bool,
    /// A write failed: the rest of this connection's chunks are dropped.
    failed: bool,
}

/// The ship writer, built before the loops (each gets a [`Link`]) and run on its own thread.
pub struct ShipWriter {
    dir: PathBuf,
    fsync: Fsync,
    requests: Receiver<Request>,
    back: Vec<Back>,
    files: HashMap<ShipKey, OpenFile>,
    names: HashMap<String, ShipKey>,
    stats: Arc<Stats>,
    log: Arc<ServerLog>,
    synced_at: Instant,
    /// Opens waiting for their name to be closed, oldest first, each with its deadline.
    waiting: Vec<(ShipKey, String, Instant)>,
}

impl ShipWriter {
    /// A writer for `dir` (created with the first file if missing) and one [`Link`] per loop;
    /// `wakes[i]` wakes loop `i`.
    pub fn new(
        dir: PathBuf,
        fsync: Fsync,
        wakes: Vec<Box<dyn Fn() + Send>>,
        stats: Arc<Stats>,
        log: Arc<ServerLog>,
    ) -> (ShipWriter, Vec<Link>) {
        let (request_tx, requests) = mpsc::channel();
        let mut back = Vec::with_capacity(wakes.len());
        let mut links = Vec::with_capacity(wakes.len());
        for wake in wakes {
            let (replies, reply_rx) = mpsc::channel();
            back.push(Back {
                replies,
                wake,
                owed: false,
            });
            links.push(Link {
                requests: request_tx.clone(),
                replies: reply_rx,
            });
        }
        let writer = ShipWriter {
            dir,
            fsync,
            requests,
            back,
            files: HashMap::new(),
            names: HashMap::new(),
            stats,
            log,
            synced_at: Instant::now(),
            waiting: Vec::new(),
        };
        (writer, links)
    }

    /// Serves requests until every [`Link`] is dropped (the loops stopped), then syncs and
    /// closes the files still open.
    pub fn run(mut self) {
        loop {
            let sync_at = self.sync_every().map(|every| self.synced_at + every);
            let wait_until = self.waiting.iter().map(|w| w.2).min();
            let request = match sync_at.into_iter().chain(wait_until).min() {
                Some(at) => {
                    match self
                        .requests
                        .recv_timeout(at.saturating_duration_since(Instant::now()))
                    {
                        Ok(request) => Some(request),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match self.requests.recv() {
                    Ok(request) => Some(request),
                    Err(_) => break,
                },
            };
            if let Some(request) = request {
                self.handle(request);
            }
            self.handle_queued();
            if let Some(every) = self.sync_every()
                && self.synced_at.elapsed() >= every
            {
                self.sync_dirty();
            }
        }
        self.waiting.clear();
        let keys: Vec<ShipKey> = self.files.keys().copied().collect();
        for key in keys {
            self.close(key);
        }
    }

    /// Handles every request already queued, refuses the waits that expired, then wakes each
    /// loop that got replies, once. [`ShipWriter::run`] calls it after each request it waited
    /// for; a test drives the writer with it alone, to hold it still.
    pub fn handle_queued(&mut self) {
        while let Ok(request) = self.requests.try_recv() {
            self.handle(request);
        }
        self.expire_waits();
        self.wake_loops();
    }

    fn sync_every(&self) -> Option<Duration> {
        match self.fsync {
            Fsync::Every(every) => Some(every),
            Fsync::Always | Fsync::Never => None,
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Open { key, name } => {
                if self.names.contains_key(&name) {
                    self.waiting.push((key, name, Instant::now() + BUSY_GRACE));
                } else {
                    let result = self.open(key, name);
                    self.reply(key, Reply::Opened { key, result });
                }
            }
            Request::Append { key, data } => {
                let bytes = data.len();
                if let Some(error) = self.append(key, &data) {
                    self.reply(key, Reply::Failed { key, error });
                }
                self.reply(
                    key,
                    Reply::Drained {
                        key,
                        bytes,
                        buffer: data,
                    },
                );
            }
            Request::Close { key } => self.close(key),
        }
    }

    /// Refuses the waiting opens whose grace has passed.
    fn expire_waits(&mut self) {
        let now = Instant::now();
        let (expired, kept): (Vec<_>, Vec<_>) = self.waiting.drain(..).partition(|w| w.2 <= now);
        self.waiting = kept;
        for (key, _, _) in expired {
            self.reply(
                key,
                Reply::Opened {
                    key,
                    result: Err(OpenError::Busy),
                },
            );
        }
    }

    fn open(&mut self, key: ShipKey, name: String) -> Result<u64, OpenError> {
        if let Entry::Occupied(_) = self.names.entry(name.clone()) {
            return Err(OpenError::Busy);
        }
        let path = self.dir.join(&name);
        let opened = match open_plain(&path) {
            // The first file: the directory is made with it.
            Err(Opened::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.dir).map_err(OpenError::Io)?;
                open_plain(&path)
            }
            other => other,
        };
        let (file, created) = opened.map_err(|e| match e {
            Opened::NotAFile => OpenError::NotAFile,
            Opened::Io(e) => OpenError::Io(e),
        })?;
        if self.fsync == Fsync::Always {
            // The size answered is on disk, and so is the name of a new file.
            file.sync_all().map_err(OpenError::Io)?;
            if created {
                File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(OpenError::Io)?;
            }
        }
        let size = file.metadata().map_err(OpenError::Io)?.len();
        if created {
            self.stats.ship_file_created();
        }
        self.names.insert(name.clone(), key);
        self.files.insert(
            key,
            OpenFile {
                name,
                file,
                dirty: false,
                failed: false,
            },
        );
        Ok(size)
    }

    /// Appends `data` to `key`'s file; the error if it failed now.
    fn append(&mut self, key: ShipKey, data: &[u8]) -> Option<io::Error> {
        let open = self.files.get_mut(&key)?;
        if open.failed {
            return None;
        }
        match open.file.write_all(data) {
            Ok(()) => {
                open.dirty = true;
                self.stats.ship_bytes_stored(data.len() as u64);
                None
            }
            Err(error) => {
                open.failed = true;
                self.log.error(format_args!(
                    "ship: cannot write {}: {error}; the connection is closed, and its \
                     transmitter resumes from the size on disk when it reconnects",
                    self.dir.join(&open.name).display()
                ));
                Some(error)
            }
        }
    }

    fn close(&mut self, key: ShipKey) {
        // A connection that ends while its open waits.
        self.waiting.retain(|w| w.0 != key);
        let Some(open) = self.files.remove(&key) else {
            return;
        };
        self.names.remove(&open.name);
        // The oldest open waiting for this name takes it (after this file is synced below).
        let next = self.waiting.iter().position(|w| w.1 == open.name);
        if open.dirty
            && self.fsync != Fsync::Never
            && let Err(e) = open.file.sync_data()
        {
            self.log.error(format_args!(
                "ship: cannot sync {}: {e}",
                self.dir.join(&open.name).display()
            ));
        }
        if let Some(at) = next {
            let (key, name, _) = self.waiting.remove(at);
            let result = self.open(key, name);
            self.reply(key, Reply::Opened { key, result });
        }
    }

    fn sync_dirty(&mut self) {
        self.synced_at = Instant::now();
        for open in self.files.values_mut().filter(|o| o.dirty) {
            open.dirty = false;
            if let Err(e) = open.file.sync_data() {
                self.log.error(format_args!(
                    "ship: cannot sync {}: {e}",
                    self.dir.join(&open.name).display()
                ));
            }
        }
    }

    fn reply(&mut self, key: ShipKey, reply: Reply) {
        let Some(back) = self.back.get_mut(key.loop_id) else {
            return;
        };
        // A loop that stopped has dropped its receiver; nothing waits for the answer.
        if back.replies.send(reply).is_ok() {
            back.owed = true;
        }
    }

    fn wake_loops(&mut self) {
        for back in self.back.iter_mut().filter(|b| b.owed) {
            back.owed = false;
            (back.wake)();
        }
    }
}

/// Why [`open_plain`] gave no file.
enum Opened {
    NotAFile,
    Io(io::Error),
}

/// Opens `path` for appending, creating it if missing (and saying so), without following a
/// symlink or blocking on a FIFO; refuses anything but a regular file with one link.
fn open_plain(path: &Path) -> Result<(File, bool), Opened> {
    let options = |create_new: bool| {
        let mut options = OpenOptions::new();
        options
            .append(true)
            .create_new(create_new)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
        options
    };
    let (file, created) = match options(true).open(path) {
        Ok(file) => (file, true),
        // Exists (a symlink too: O_EXCL never follows one): open what is there, not through it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match options(false).open(path) {
            Ok(file) => (file, false),
            // ELOOP: a symlink; ENXIO: a FIFO nobody reads; EISDIR: a directory.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP | libc::ENXIO | libc::EISDIR | libc::ENOTDIR)
                ) =>
            {
                return Err(Opened::NotAFile);
            }
            Err(e) => return Err(Opened::Io(e)),
        },
        Err(e) => return Err(Opened::Io(e)),
    };
    let meta = file.metadata().map_err(Opened::Io)?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return Err(Opened::NotAFile);
    }
    Ok((file, created))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "logmill-ship-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn plain_files_are_created_then_reopened() {
        let dir = temp_dir("plain");
        let (mut file, created) = open_plain(&dir.join("a.log")).ok().unwrap();
        assert!(created);
        file.write_all(b"abc").unwrap();
        let (file, created) = open_plain(&dir.join("a.log")).ok().unwrap();
        assert!(!created);
        assert_eq!(file.metadata().unwrap().len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symlinks_fifos_directories_and_hard_links_are_refused() {
        let dir = temp_dir("planted");
        let outside = dir.join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link.log")).unwrap();
        std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("dangling.log")).unwrap();
        std::fs::hard_link(&outside, dir.join("hard.log")).unwrap();
        std::fs::create_dir(dir.join("dir.log")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(dir.join("fifo.log"))
            .status()
            .unwrap();
        assert!(fifo.success());
        for name in [
            "link.log",
            "dangling.log",
            "hard.log",
            "dir.log",
            "fifo.log",
        ] {
            assert!(
                matches!(open_plain(&dir.join(name)), Err(Opened::NotAFile)),
                "{name}"
            );
        }
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert!(!dir.join("nowhere").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
