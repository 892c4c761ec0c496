//! `logmill ship tx`: the logship transmitter. It watches a glob of files and streams each to a
//! logship receiver (port 7447), which answers how much of its copy it has, so every connection
//! resumes where the copy ends. The wire protocol is `protocol::ship`.
//!
//! ```text
//!  main thread (the scanner)                          one thread per file being shipped
//!  every --rescan-interval: list the glob's directory  worker.rs: connect, "name\n", read
//!    new (dev, inode, birth) -> a stored name (state)    "offset\n", sendfile from there,
//!    renamed within the directory -> found by inode      follow appends every
//!    gone -> finish from the open descriptor             --follow-interval, reconnect with
//!  every tick: start workers for files with bytes       backoff + jitter; returns an Outcome
//!    to ship, at most --max-parallel at once;      <--  (done / truncated / stopped)
//!    a newer file of the same name waits for the
//!    older one (rotation); a truncated file gets a new stored name
//! ```
//!
//! - [`glob`]: the `--glob` pattern (directory + file-name wildcards).
//! - [`state`]: the state file: which file is shipped under which stored name.
//! - [`worker`]: one file's connection, handshake, sending and reconnecting.
//! - [`progress`]: the bars and the summary.
//!
//! Appends are found by polling (`fstat` every `--follow-interval` while a file is shipped, and at
//! each tick for the others), new files by listing the directory every `--rescan-interval`; no
//! inotify, which would save little at these intervals and not cover network file systems.

pub mod glob;
pub mod link;
pub mod progress;
pub mod state;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirEntryExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use clap::Args;

use crate::config::Span;
use crate::protocol::ship as wire;
use glob::Glob;
use progress::Progress;
use state::{Identity, State};
use worker::{Job, Outcome, Settings};

/// The receiver's port in the logship document.
pub const DEFAULT_PORT: u16 = 7447;

/// How often the scanner looks at finished workers, file sizes and the progress bars.
const TICK: Duration = Duration::from_millis(50);

/// `logmill ship tx` (and `logmill ship` without a subcommand).
#[derive(Args, Clone, Debug)]
pub struct TxArgs {
    /// The receiver's host name or address.
    #[arg(long)]
    host: String,
    /// The receiver's port.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// The files to ship: a directory and a file-name pattern with *, ? and [...]
    /// (e.g. '/var/log/app/*.log'; quote it so the shell does not expand it).
    #[arg(long)]
    glob: String,
    /// How often to look for new files matching the glob.
    #[arg(long = "rescan-interval", default_value = "5s")]
    rescan_interval: Span,
    /// How often a file being shipped is checked for appended bytes.
    #[arg(long = "follow-interval", default_value = "100ms")]
    follow_interval: Span,
    /// Files shipped at once (one connection each); the others wait for a slot.
    #[arg(long = "max-parallel", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_parallel: u64,
    /// After a rotation (the file renamed away and a new one in its place), how long the old
    /// file must stay at its end without growing before the transmitter stops following it.
    #[arg(long = "rotate-grace", default_value = "5s")]
    rotate_grace: Span,
    /// Longest wait to connect and for the receiver's offset answer.
    #[arg(long, default_value = "10s")]
    timeout: Span,
    /// Longest pause between reconnection attempts (exponential backoff with jitter up to it).
    #[arg(long = "max-backoff", default_value = "10s")]
    max_backoff: Span,
    /// The state file (which file is shipped under which stored name), written atomically.
    /// Default: $XDG_STATE_HOME/logmill/ship.state, or ./logmill-ship.state without
    /// XDG_STATE_HOME. One transmitter per state file.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Ship what exists, wait until the receiver's offsets match the files' sizes, and exit.
    #[arg(long)]
    once: bool,
    /// No progress bars, even on a terminal.
    #[arg(long = "no-progress")]
    no_progress: bool,
    /// Connect over TLS (the receiver runs with --tls-cert); its certificate is checked
    /// against --host, or --server-name.
    #[arg(long, requires = "ca")]
    tls: bool,
    /// With --tls: the CA certificate (PEM) the receiver's certificate must chain to.
    #[arg(long, value_name = "FILE", requires = "tls")]
    ca: Option<PathBuf>,
    /// With --tls: the name the receiver's certificate must carry, when it is not --host.
    #[arg(long = "server-name", value_name = "NAME", requires = "tls")]
    server_name: Option<String>,
    /// With --tls: a client certificate (PEM chain, leaf first), for a receiver with
    /// --tls-client-ca.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    cert: Option<PathBuf>,
    /// With --cert: its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
}

/// Why `logmill ship tx` could not start. Once it runs, nothing is fatal: a receiver that is
/// down, a refused name or a file that cannot be opened is said and retried.
#[derive(Debug)]
pub enum Error {
    /// The `--glob` pattern (its message says what is wrong with it).
    Glob(String),
    /// `--host` has no address.
    Resolve { host: String, why: String },
    /// The state file cannot be read or is not one.
    State(String),
    /// `--ca` or the server name cannot be used.
    Tls(String),
    /// SIGINT/SIGTERM could not be handled.
    Signal(std::io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Glob(why) | Error::State(why) | Error::Tls(why) => f.write_str(why),
            Error::Resolve { host, why } => write!(f, "cannot resolve {host}: {why}"),
            Error::Signal(e) => write!(f, "cannot handle SIGINT/SIGTERM: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// What a run did, for the summary line.
#[derive(Debug, Default)]
pub struct Summary {
    bytes: u64,
    files: usize,
    truncations: usize,
    /// The most workers (connections) that ran at once.
    peak: usize,
    elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.bytes as f64 / secs / 1e6
        } else {
            0.0
        };
        write!(
            f,
            "ship: {} bytes sent in {secs:.2}s ({rate:.1} MB/s); {} files up to date; {} truncations shipped under new names; at most {} files at once",
            self.bytes, self.files, self.truncations, self.peak
        )
    }
}

/// One tracked file.
struct Tracked {
    path: PathBuf,
    file: Arc<File>,
    origin: String,
    stored: String,
    generation: u64,
    /// The receiver's offset when its last worker ended (None: not shipped in this run yet).
    shipped: Option<u64>,
    /// Found in the directory (under a matching name or any other) at the last scan.
    present: bool,
    /// Its running worker's flags.
    active: Option<(Arc<AtomicBool>, Arc<AtomicU64>)>,
    /// Its size when last looked at: every --follow-interval for the files without a worker,
    /// and when a worker ends, so the scheduling after each finished worker costs no system
    /// call per file (1,000 files, 1,000 workers ending).
    size: u64,
}

impl Tracked {
    /// Looks at the file's size again (one `fstat` on the open descriptor).
    fn refresh(&mut self) {
        // A failed fstat on an open descriptor does not happen in practice; keeping the last
        // size only delays the file until the next look.
        if let Ok(meta) = self.file.metadata() {
            self.size = meta.len();
        }
    }

    /// Bytes to ship (by the size last looked at) and no worker on it.
    fn pending(&self) -> bool {
        self.active.is_none() && self.shipped != Some(self.size)
    }
}

enum Event {
    Done(Identity, Outcome),
    Say(String),
}

/// Runs the transmitter until SIGINT/SIGTERM (or, with `--once`, until every file is shipped),
/// and returns the summary.
///
/// # Errors
///
/// A bad glob, an unresolvable host, an unreadable state file: before anything is shipped.
pub fn run(args: &TxArgs) -> Result<Summary, Error> {
    let glob = Glob::parse(&args.glob).map_err(Error::Glob)?;
    let addr = resolve(&args.host, args.port)?;
    let tls = match &args.ca {
        Some(ca) if args.tls => {
            let name = args.server_name.as_deref().unwrap_or(&args.host);
            let identity = args.cert.as_deref().zip(args.key.as_deref());
            Some(link::TlsTarget::new(ca, name, identity).map_err(Error::Tls)?)
        }
        _ => None,
    };
    let state_path = args.state.clone().unwrap_or_else(default_state_path);
    let state = State::load(&state_path).map_err(Error::State)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(Error::Signal)?;
    }
    // One descriptor per tracked file, kept open so a deleted file can be finished.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("ship: cannot raise the open files limit: {e}");
    }
    let settings = Arc::new(Settings {
        addr,
        tls,
        timeout: args.timeout.0,
        max_backoff: args.max_backoff.0,
        follow_interval: args.follow_interval.0,
        grace: args.rotate_grace.0,
        once: args.once,
        stop,
        slots_wanted: Arc::new(AtomicBool::new(false)),
        sent: Arc::new(AtomicU64::new(0)),
    });
    let mut scanner = Scanner {
        glob,
        state,
        settings,
        max_parallel: usize::try_from(args.max_parallel).unwrap_or(usize::MAX),
        tracked: HashMap::new(),
        warned: HashSet::new(),
        progress: Progress::new(!args.no_progress),
        files_done: HashSet::new(),
        truncations: 0,
        peak: 0,
    };
    Ok(scanner.run(args.rescan_interval.0))
}

struct Scanner {
    glob: Glob,
    state: State,
    settings: Arc<Settings>,
    max_parallel: usize,
    tracked: HashMap<Identity, Tracked>,
    /// Names already warned about (not a valid stored name), so each is said once.
    warned: HashSet<Vec<u8>>,
    progress: Progress,
    files_done: HashSet<Identity>,
    truncations: usize,
    peak: usize,
}

impl Scanner {
    fn run(&mut self, rescan: Duration) -> Summary {
        let started = Instant::now();
        let (events, inbox) = mpsc::channel();
        let mut next_scan = Instant::now();
        let mut scanned = false;
        let mut last_refresh = Instant::now();
        loop {
            if self.settings.stop.load(Ordering::Relaxed) {
                break;
            }
            if Instant::now() >= next_scan && !(self.settings.once && scanned) {
                self.scan();
                scanned = true;
                next_scan = Instant::now() + rescan;
                self.save_state();
            }
            // Files without a worker are looked at for growth every --follow-interval, as the
            // workers look at theirs.
            if last_refresh.elapsed() >= self.settings.follow_interval {
                for t in self.tracked.values_mut().filter(|t| t.active.is_none()) {
                    t.refresh();
                }
                last_refresh = Instant::now();
            }
            self.schedule(&events);
            self.show();
            if self.settings.once
                && self
                    .tracked
                    .values()
                    .all(|t| t.active.is_none() && !t.pending())
            {
                break;
            }
            match inbox.recv_timeout(TICK) {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("the scanner holds a sender"),
            }
            while let Ok(event) = inbox.try_recv() {
                self.handle(event);
            }
        }
        // Stopping: the workers see the flag within a socket slice (or a connect timeout).
        let deadline = Instant::now() + self.settings.timeout * 2;
        while self.tracked.values().any(|t| t.active.is_some()) && Instant::now() < deadline {
            if let Ok(event) = inbox.recv_timeout(TICK) {
                self.handle(event);
            }
        }
        self.save_state();
        Summary {
            bytes: self.settings.sent.load(Ordering::Relaxed),
            files: self.files_done.len(),
            truncations: self.truncations,
            peak: self.peak,
            elapsed: started.elapsed(),
        }
    }

    fn say(&self, line: &str) {
        self.progress.say(&format!("ship: {line}"));
    }

    fn save_state(&mut self) {
        if let Err(e) = self.state.save() {
            self.say(&format!("cannot write the state file: {e}"));
        }
    }

    /// Lists the glob's directory: new matching files are tracked (under their state's stored
    /// name, or a new one), tracked files found under another name are followed there, and
    /// tracked files no longer in the directory are finished and forgotten.
    fn scan(&mut self) {
        let entries = match fs::read_dir(self.glob.dir()) {
            Ok(entries) => entries,
            Err(e) => {
                let dir = self.glob.dir().display().to_string();
                self.say(&format!("cannot list {dir}: {e}"));
                return;
            }
        };
        let mut matched = Vec::new();
        let mut others: HashMap<u64, PathBuf> = HashMap::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            if self.glob.matches(name.as_bytes()) {
                matched.push((entry.path(), name.as_bytes().to_vec()));
            } else {
                others.insert(entry.ino(), entry.path());
            }
        }
        for t in self.tracked.values_mut() {
            t.present = false;
        }
        for (path, name) in matched {
            // The receiver's own rule: a name it would refuse is never sent.
            let origin = match wire::validate_name(&name) {
                Ok(origin) => origin.to_owned(),
                Err(why) => {
                    if self.warned.insert(name) {
                        self.say(&format!("skipping {}: {why}", path.display()));
                    }
                    continue;
                }
            };
            self.track(&path, Some(&origin));
        }
        // Tracked (or remembered) files not under a matching name: renamed within the
        // directory (rotation), found by inode; or gone.
        let missing: Vec<Identity> = self
            .tracked
            .iter()
            .filter(|(_, t)| !t.present)
            .map(|(id, _)| *id)
            .chain(
                self.state
                    .ids()
                    .filter(|id| !self.tracked.contains_key(id))
                    .copied(),
            )
            .collect();
        for id in missing {
            if let Some(path) = others.get(&id.ino) {
                let path = path.clone();
                self.track(&path, None);
            }
            let found = self.tracked.get(&id).is_some_and(|t| t.present);
            if found {
                if let Some(t) = self.tracked.get(&id)
                    && let Some((release, _)) = &t.active
                {
                    release.store(true, Ordering::Relaxed);
                }
                continue;
            }
            match self.tracked.get(&id) {
                // Gone (deleted, or moved out of the directory): a worker finishes from the
                // open descriptor; one without bytes left is forgotten.
                Some(t) if t.active.is_some() || t.pending() => {
                    if let Some((release, _)) = &t.active {
                        release.store(true, Ordering::Relaxed);
                    }
                }
                Some(_) => {
                    self.tracked.remove(&id);
                    self.state.forget(&id);
                }
                None => self.state.forget(&id),
            }
        }
    }

    /// Tracks the file at `path` if it is new (`origin`: its name, for a matching name; `None`
    /// for a file found by inode, which is tracked only if the state remembers it), or marks it
    /// present under its current path.
    fn track(&mut self, path: &Path, origin: Option<&str>) {
        let Ok(meta) = fs::metadata(path) else { return };
        if !meta.is_file() {
            return;
        }
        let id = identity(&meta);
        if let Some(t) = self.tracked.get_mut(&id) {
            t.present = true;
            t.path = path.to_path_buf();
            return;
        }
        let known = self.state.get(&id).cloned();
        if known.is_none() && origin.is_none() {
            return;
        }
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) => {
                self.say(&format!("cannot open {}: {e}", path.display()));
                return;
            }
        };
        // Renamed or replaced between the stat and the open: the next scan sees it as it is.
        let size = match file.metadata() {
            Ok(meta) if identity(&meta) == id => meta.len(),
            _ => return,
        };
        let entry = match (known, origin) {
            (Some(entry), _) => entry,
            (None, Some(origin)) => self.state.assign(id, origin).clone(),
            (None, None) => return,
        };
        if let Err(why) = wire::validate_name(entry.stored.as_bytes()) {
            self.say(&format!(
                "skipping {}: stored name {}: {why}",
                path.display(),
                entry.stored
            ));
            return;
        }
        self.tracked.insert(
            id,
            Tracked {
                path: path.to_path_buf(),
                file: Arc::new(file),
                origin: entry.origin,
                stored: entry.stored,
                generation: entry.generation,
                shipped: None,
                present: true,
                active: None,
                size,
            },
        );
    }

    /// Starts workers for files with bytes to ship, oldest generation of each name first, at
    /// most `--max-parallel` at once; tells older generations that a newer one is waiting.
    fn schedule(&mut self, events: &mpsc::Sender<Event>) {
        // The oldest generation of each origin that still has something to do.
        let mut oldest: HashMap<&str, u64> = HashMap::new();
        let mut newest: HashMap<&str, u64> = HashMap::new();
        for t in self.tracked.values() {
            let n = newest.entry(&t.origin).or_insert(t.generation);
            *n = (*n).max(t.generation);
            if t.active.is_some() || t.pending() {
                let o = oldest.entry(&t.origin).or_insert(t.generation);
                *o = (*o).min(t.generation);
            }
        }
        for t in self.tracked.values() {
            if let Some((release, _)) = &t.active
                && newest
                    .get(t.origin.as_str())
                    .is_some_and(|&n| n > t.generation)
            {
                release.store(true, Ordering::Relaxed);
            }
        }
        let mut ready: Vec<(u64, String, Identity)> = self
            .tracked
            .iter()
            .filter(|(_, t)| t.pending() && oldest.get(t.origin.as_str()) == Some(&t.generation))
            .map(|(id, t)| (t.generation, t.stored.clone(), *id))
            .collect();
        ready.sort();
        let mut running = self.tracked.values().filter(|t| t.active.is_some()).count();
        let mut waiting = 0;
        for (_, _, id) in ready {
            if running >= self.max_parallel {
                waiting += 1;
                continue;
            }
            running += 1;
            self.start(id, events);
        }
        self.peak = self.peak.max(running);
        self.settings
            .slots_wanted
            .store(waiting > 0, Ordering::Relaxed);
    }

    fn start(&mut self, id: Identity, events: &mpsc::Sender<Event>) {
        let Some(t) = self.tracked.get_mut(&id) else {
            return;
        };
        let release = Arc::new(AtomicBool::new(false));
        let position = Arc::new(AtomicU64::new(t.shipped.unwrap_or(0)));
        let job = Job {
            file: Arc::clone(&t.file),
            stored: t.stored.clone(),
            release: Arc::clone(&release),
            position: Arc::clone(&position),
        };
        t.active = Some((release, position));
        let size = t.size;
        let start = t.shipped.unwrap_or(0);
        let stored = t.stored.clone();
        self.progress.start(&stored, start, size);
        let settings = Arc::clone(&self.settings);
        let events = events.clone();
        let spawned = thread::Builder::new()
            .name(format!("ship-{stored}"))
            .spawn(move || {
                let say = |line: String| {
                    if events.send(Event::Say(line)).is_err() {
                        eprintln!("ship: the scanner is gone");
                    }
                };
                let outcome = worker::run(&job, &settings, &say);
                if events.send(Event::Done(id, outcome)).is_err() {
                    eprintln!("ship: the scanner is gone");
                }
            });
        if let Err(e) = spawned {
            self.say(&format!("cannot start a thread for {stored}: {e}"));
            self.progress.end(&stored);
            if let Some(t) = self.tracked.get_mut(&id) {
                t.active = None;
            }
        }
    }

    fn handle(&mut self, event: Event) {
        let (id, outcome) = match event {
            Event::Say(line) => return self.say(&line),
            Event::Done(id, outcome) => (id, outcome),
        };
        let Some(t) = self.tracked.get_mut(&id) else {
            return;
        };
        t.active = None;
        let stored = t.stored.clone();
        self.progress.end(&stored);
        match outcome {
            Outcome::Done { offset } => {
                t.shipped = Some(offset);
                self.files_done.insert(id);
            }
            Outcome::Truncated { size, offset } => {
                let origin = t.origin.clone();
                let entry = self.state.assign(id, &origin).clone();
                let line = format!(
                    "{}: the file ({size} bytes) is smaller than the receiver's copy of {stored} ({offset} bytes): truncated (copytruncate?) or replaced; shipping it from its start as {}",
                    t.path.display(),
                    entry.stored
                );
                if let Some(t) = self.tracked.get_mut(&id) {
                    t.stored = entry.stored;
                    t.generation = entry.generation;
                    t.shipped = None;
                }
                self.truncations += 1;
                self.save_state();
                self.say(&line);
            }
            Outcome::Stopped => {}
        }
    }

    fn show(&self) {
        for t in self.tracked.values() {
            if let Some((_, position)) = &t.active {
                self.progress
                    .update(&t.stored, position.load(Ordering::Relaxed), t.size);
            }
        }
    }
}

fn identity(meta: &fs::Metadata) -> Identity {
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Identity {
        dev: meta.dev(),
        ino: meta.ino(),
        born,
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, Error> {
    let error = |why: String| Error::Resolve {
        host: host.to_owned(),
        why,
    };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| error(e.to_string()))?
        .next()
        .ok_or_else(|| error("no address".to_owned()))
}

/// `$XDG_STATE_HOME/logmill/ship.state`, or `./logmill-ship.state`.
fn default_state_path() -> PathBuf {
    match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("logmill").join("ship.state"),
        None => PathBuf::from("logmill-ship.state"),
    }
}
