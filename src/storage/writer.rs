//! The writer thread: the only code that touches the record files.
//!
//! It receives numbered [`Batch`]es from the loops, puts them in number order (a loop may send a
//! batch before another loop sends the lower numbers it took first), and writes each batch's bytes
//! as they are with one `write` call, two when a rotation falls inside it: the batching that keeps
//! the writer at one system call per batch, not per record. Rotation points are decided from the line lengths as batches are queued, so a
//! line is never split across files. After each flush it records the highest number written in
//! `_main.seq` ([`super::high_water`]: one `pwrite`), so numbering survives the files being moved
//! away.
//!
//! Each bucket ([`super::bucket`]: one app's records, or the anonymous ones) has its own file
//! set and its own queue. A batch whose lines all go to one bucket (the common case) is queued
//! whole; a batch that mixes apps is cut into one buffer per bucket, in order, so each bucket
//! still gets one `write` per flush. Buckets close their file after
//! [`BUCKET_IDLE_CLOSE`](crate::config::BUCKET_IDLE_CLOSE) without records and beyond
//! [`MAX_OPEN_BUCKETS`](crate::config::MAX_OPEN_BUCKETS) open ones (least recently written
//! first), and reopen on the next record.
//!
//! When a write fails, the pending batches, the position in the first and their rotations stay as
//! they are and the write is retried (3 retries, exponential backoff). If the disk still refuses, the writer marks
//! the server DEGRADED and retries every second, still holding the records: the loops' pending
//! bytes stay counted, so once `--max-pending` is reached the loops stop reading sockets and
//! clients are pushed back by TCP. Nothing is dropped; when the disk recovers, the writer carries
//! on where it stopped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::fileset::FileSet;
use super::high_water::{HighWater, Recovered};
use super::line::parse_seq;
use super::mailbox::Handoff;
use super::retention::{Hold, Retention};
use super::server_log::{ServerLog, count};
use super::{Batch, Command, Completion, SPARE_BATCHES, SPARE_CAPACITY, decimal_width};
use crate::config::{BUCKET_IDLE_CLOSE, Fsync, MAX_OPEN_BUCKETS};
use crate::stats::Stats;

/// Write once this much is buffered even if more batches are queued, so acks keep flowing.
const FLUSH_AT: usize = 4 * 1024 * 1024;
/// Backoff before retry 1, 2 and 3; after that the server is DEGRADED and retries every second.
const RETRY_BACKOFF: [Duration; 3] = [
    Duration::from_millis(10),
    Duration::from_millis(40),
    Duration::from_millis(160),
];
const DEGRADED_RETRY: Duration = Duration::from_secs(1);
/// Apps named in the stats line; the others are summed, so thousands of apps make one line of
/// bounded length.
const STATS_TOP_APPS: usize = 10;
/// Buffers of written parts kept for the next batch that mixes buckets, and the largest kept:
/// a part copied into a fresh `Vec` grows by reallocation (each growth copying it again) into
/// memory the kernel must fault in, which cost 100 apps about a fifth of their records/s.
const SPARE_PARTS: usize = 256;
const SPARE_PART_BYTES: usize = 1024 * 1024;

/// Numbered lines of one bucket: a whole batch, or this bucket's part of a batch that mixes apps.
struct Pending {
    lines: Lines,
    /// `lines[..written]` is in the file.
    written: usize,
    /// Offsets in the lines before which the file must be rotated.
    rotations: VecDeque<usize>,
    records: u64,
    /// The highest sequence number among the lines.
    last_seq: u64,
}

enum Lines {
    /// The batch as the loop sent it; its loop gets it back once it is written.
    Batch(Batch),
    /// Copied out of a batch that mixes buckets.
    Part(Vec<u8>),
}

impl Pending {
    fn bytes(&self) -> &[u8] {
        match &self.lines {
            Lines::Batch(batch) => &batch.bytes,
            Lines::Part(bytes) => bytes,
        }
    }

    fn unwritten(&self) -> usize {
        self.bytes().len() - self.written
    }
}

/// One bucket's file set and queue.
struct Bucket {
    /// `<dir>` for the anonymous bucket, `<dir>/<app>` for an app's.
    dir: PathBuf,
    /// The app (`None`: anonymous), for the stats line.
    app: Option<Arc<str>>,
    /// Records and bytes written since the last stats line.
    stats_records: u64,
    stats_bytes: u64,
    /// `None` while closed (idle, or beyond the open-file budget); the anonymous one stays open.
    files: Option<FileSet>,
    /// Size the active file will have once `pending` is written (since the last planned rotation).
    planned_size: u64,
    pending: VecDeque<Pending>,
    /// This bucket's part of the batch being cut ([`Writer::append`]), not yet queued.
    part: Option<Pending>,
    /// When a record for it was last queued: what idle closing and the LRU look at.
    last_used: Instant,
    /// Written to since its last `fsync`.
    dirty: bool,
}

impl Bucket {
    fn closed(dir: PathBuf, app: Option<Arc<str>>) -> Bucket {
        Bucket {
            dir,
            app,
            stats_records: 0,
            stats_bytes: 0,
            files: None,
            planned_size: 0,
            pending: VecDeque::new(),
            part: None,
            last_used: Instant::now(),
            dirty: false,
        }
    }

    fn active_path(&self) -> PathBuf {
        self.dir.join("_main.log")
    }
}

/// The anonymous bucket's index in [`Writer::buckets`].
const ANONYMOUS: usize = 0;

pub struct Writer {
    /// [`ANONYMOUS`] first, then the apps' in the order they were first seen.
    buckets: Vec<Bucket>,
    /// App name to its index in `buckets`.
    by_app: HashMap<Arc<str>, usize>,
    /// Buckets with something in `pending`, each once (what a flush goes through).
    queued: Vec<usize>,
    /// Buckets whose file is open (the anonymous one included).
    open_buckets: usize,
    /// When [`Writer::close_idle`] next looks through the buckets (about once a second).
    idle_check_at: Instant,
    max_file_size: u64,
    max_files: usize,
    /// `_main.seq`: updated once per flush, after the lines are in the file, fsynced with them.
    high_water: HighWater,
    /// The highest sequence number in the files (what `high_water` is told).
    written_seq: u64,
    next_seq: u64,
    fsync: Fsync,
    stdout: bool,
    /// Batches that arrived before one with lower numbers, by their first number.
    waiting: BTreeMap<u64, Batch>,
    /// Bytes appended since everything was last written (what `FLUSH_AT` counts).
    appended: usize,
    /// Completions, per loop, for the lines appended since everything was last written.
    completions: Vec<Vec<Completion>>,
    /// Emptied buffers of written parts, for the next batch that mixes buckets
    /// ([`SPARE_PARTS`]).
    spare_parts: Vec<Vec<u8>>,
    /// Records in `pending` (not yet in the file).
    unwritten_records: u64,
    /// Records written since everything was last written (their completions are still held).
    written_records: u64,
    /// Pending-bytes to release once everything is written.
    unreleased: usize,
    failures: u32,
    retry_at: Option<Instant>,
    dirty_since: Option<Instant>,
    handoff: Arc<Handoff>,
    stats: Arc<Stats>,
    log: Arc<ServerLog>,
    rx: Receiver<Command>,
    loops_done: usize,
    stats_at: Instant,
    stats_interval: Duration,
    stats_records: u64,
    stats_bytes: u64,
    /// What the `--forward` sinks have not read, asked before a rotation deletes a file.
    retention: Arc<Retention>,
}

/// How the writer ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything received was written and synced.
    Clean,
    /// Shutdown gave up on a failing disk; this many records were not written.
    Lost(u64),
}

impl Writer {
    /// Opens (and repairs) the record files in `config.dir` and recovers the sequence number.
    ///
    /// # Errors
    /// The error opening the files.
    pub fn open(
        config: &crate::config::Config,
        handoff: Arc<Handoff>,
        stats: Arc<Stats>,
        log: Arc<ServerLog>,
        rx: Receiver<Command>,
        retention: Arc<Retention>,
    ) -> io::Result<Writer> {
        let (files, mut files_seq) = open_bucket(
            &config.dir,
            config.max_file_size,
            config.max_files,
            &log,
            hold(&retention, None),
        )?;
        let mut buckets = vec![Bucket {
            planned_size: files.size(),
            files: Some(files),
            ..Bucket::closed(config.dir.clone(), None)
        }];
        let mut by_app = HashMap::new();
        // Every bucket on disk is opened once (and repaired), so numbering continues after the
        // highest number in any of them; its file is closed again until a record comes.
        for app in super::bucket::existing(&config.dir)? {
            let dir = config.dir.join(&app);
            let (files, last) = open_bucket(
                &dir,
                config.max_file_size,
                config.max_files,
                &log,
                hold(&retention, Some(&app)),
            )?;
            files_seq = files_seq.max(last);
            let app: Arc<str> = Arc::from(app);
            by_app.insert(app.clone(), buckets.len());
            buckets.push(Bucket {
                planned_size: files.size(),
                ..Bucket::closed(dir, Some(app))
            });
        }
        // The files say where numbering stopped unless they were moved away (logrotate); the
        // state file remembers it then. Whichever is higher wins, so no number is given twice.
        let (mut high_water, recovered) = HighWater::open(&config.dir)?;
        let last_seq = match recovered {
            Recovered::Found(state) if state > files_seq => {
                log.info(format_args!(
                    "{} says numbers up to {state} were given; the files end at {files_seq} \
                     (moved away?): continuing after {state}",
                    high_water.path().display()
                ));
                state
            }
            Recovered::Found(_) | Recovered::Missing => files_seq,
            Recovered::Unreadable(why) => {
                log.warn(format_args!(
                    "ignoring {}: {why}; continuing from the files",
                    high_water.path().display()
                ));
                files_seq
            }
        };
        high_water.reset(last_seq)?;
        if config.fsync != Fsync::Never {
            high_water.sync()?;
        }
        log.info(format_args!(
            "storage: {} ({}), {}, next sequence number {}",
            buckets[ANONYMOUS].active_path().display(),
            count(buckets[ANONYMOUS].planned_size, "byte"),
            count(by_app.len() as u64, "app bucket"),
            last_seq + 1
        ));
        let loops = handoff.loops();
        handoff.start_seq(last_seq + 1);
        Ok(Writer {
            buckets,
            by_app,
            queued: Vec::new(),
            open_buckets: 1,
            idle_check_at: Instant::now(),
            max_file_size: config.max_file_size,
            max_files: config.max_files,
            high_water,
            written_seq: last_seq,
            next_seq: last_seq + 1,
            fsync: config.fsync,
            stdout: config.stdout,
            waiting: BTreeMap::new(),
            appended: 0,
            completions: vec![Vec::new(); loops],
            spare_parts: Vec::new(),
            unwritten_records: 0,
            written_records: 0,
            unreleased: 0,
            failures: 0,
            retry_at: None,
            dirty_since: None,
            handoff,
            stats,
            log,
            rx,
            loops_done: 0,
            stats_at: Instant::now(),
            stats_interval: config.stats_interval,
            stats_records: 0,
            stats_bytes: 0,
            retention,
        })
    }

    /// Runs until every loop has said [`Command::LoopDone`] and everything is written, or until
    /// `shutdown_timeout` after the shutdown began if the disk keeps failing.
    pub fn run(mut self, shutdown_timeout: Duration) -> Exit {
        let mut shutdown_began: Option<Instant> = None;
        loop {
            match self.rx.recv_timeout(self.next_timeout()) {
                Ok(command) => self.handle(command),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.loops_done = self.completions.len(),
            }
            while self.appended < FLUSH_AT {
                match self.rx.try_recv() {
                    Ok(command) => self.handle(command),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            // `retry_at` is set after a failure even when every line was written (a failed
            // fsync or state update): the held completions wait for that retry.
            let due = self.retry_at.is_none_or(|at| now >= at);
            if (!self.queued.is_empty() || self.retry_at.is_some()) && due {
                self.flush();
            }
            self.periodic_fsync(now);
            self.close_idle(now);
            self.periodic_stats(now);

            if self.loops_done == self.completions.len() {
                // Every loop has sent its last batch: a batch still waiting for lower numbers
                // waits for numbers that were taken and never sent (a loop failed between the
                // two). Store it rather than lose it.
                while let Some((first, batch)) = self.waiting.pop_first() {
                    self.log.error(format_args!(
                        "sequence numbers {}..{first} were never sent; storing the records after them",
                        self.next_seq
                    ));
                    self.append(batch);
                }
                let began = *shutdown_began.get_or_insert(now);
                if self.queued.is_empty() {
                    if let Err(e) = self.sync() {
                        self.log.error(format_args!("final fsync failed: {e}"));
                    }
                    return Exit::Clean;
                }
                if now.duration_since(began) >= shutdown_timeout {
                    let lost = self.unwritten_records;
                    self.log.error(format_args!(
                        "shutdown: gave up after {shutdown_timeout:?}; {} received could not \
                         be written to {}",
                        count(lost, "record"),
                        self.where_failing()
                    ));
                    return Exit::Lost(lost);
                }
            }
        }
    }

    fn next_timeout(&self) -> Duration {
        let now = Instant::now();
        let mut at = now + Duration::from_secs(1);
        if let Some(retry) = self.retry_at {
            at = at.min(retry);
        }
        if let (Fsync::Every(every), Some(since)) = (self.fsync, self.dirty_since) {
            at = at.min(since + every);
        }
        at.saturating_duration_since(now)
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Write(batch) => self.receive(batch),
            Command::Reopen => {
                self.flush();
                // The files being let go get the fsync they would have had, and the state file
                // with them: their numbers are about to leave the directory.
                if self.fsync != Fsync::Never
                    && let Err(e) = self.sync()
                {
                    self.log
                        .error(format_args!("SIGHUP: fsync before reopening failed: {e}"));
                }
                for bucket in &mut self.buckets {
                    let Some(files) = &mut bucket.files else {
                        continue;
                    };
                    match files.reopen() {
                        Ok(()) => self.log.info(format_args!(
                            "SIGHUP: reopened {}",
                            files.active_path().display()
                        )),
                        Err(e) => self.log.error(format_args!(
                            "SIGHUP: cannot reopen {}: {e}; still writing the old file",
                            files.active_path().display()
                        )),
                    }
                    let unwritten: usize = bucket.pending.iter().map(Pending::unwritten).sum();
                    bucket.planned_size = files.size() + unwritten as u64;
                }
            }
            Command::LoopDone(_) => self.loops_done += 1,
        }
    }

    /// Takes a numbered batch from a loop. Loops take their numbers from a shared counter and
    /// send their batches independently, so a batch may arrive before one with lower numbers
    /// that another loop is about to send; it waits for that one.
    fn receive(&mut self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        if batch.first_seq > self.next_seq {
            self.waiting.insert(batch.first_seq, batch);
            return;
        }
        if batch.first_seq < self.next_seq {
            self.log.error(format_args!(
                "a batch numbered from {} arrived after number {}; stored as it is",
                batch.first_seq,
                self.next_seq - 1
            ));
        }
        self.append(batch);
        while let Some(next) = self.waiting.remove(&self.next_seq) {
            self.append(next);
        }
    }

    /// Plans the rotations that fall among the batch's lines and queues them, in their buckets.
    /// This is the writer's per-record work: a line length and a completion count; the lines
    /// themselves are neither read nor copied here when the batch goes to one bucket. A batch
    /// that mixes buckets is cut: each bucket's lines are copied, in order, into one buffer.
    fn append(&mut self, batch: Batch) {
        let count = batch.len() as u64;
        let first = batch.first_seq;
        let max = self.max_file_size;
        let whole = batch.buckets().len() <= 1;
        let mut buckets = batch.buckets().iter();
        let mut bucket = ANONYMOUS;
        let mut left_in_bucket = 0u32;
        let mut rotations = VecDeque::new();
        let mut touched = Vec::new();
        let mut runs = batch.owners.iter();
        let mut run = runs.next().copied();
        let mut in_run = 0u32;
        let mut at = 0usize;
        let now = Instant::now();
        for (seq, &(head, tail)) in (first..).zip(&batch.spans) {
            let len = head as usize + decimal_width(seq) + tail as usize;
            if left_in_bucket == 0
                && let Some((app, lines)) = buckets.next()
            {
                bucket = self.bucket_for(app.as_ref(), now);
                left_in_bucket = *lines;
                if !whole && self.buckets[bucket].part.is_none() {
                    touched.push(bucket);
                    let bytes = self.spare_parts.pop().unwrap_or_default();
                    self.buckets[bucket].part = Some(Pending {
                        lines: Lines::Part(bytes),
                        written: 0,
                        rotations: VecDeque::new(),
                        records: 0,
                        last_seq: seq,
                    });
                }
            }
            left_in_bucket = left_in_bucket.saturating_sub(1);
            let b = &mut self.buckets[bucket];
            let rotate = b.planned_size > 0 && b.planned_size + len as u64 > max;
            if rotate {
                b.planned_size = 0;
            }
            b.planned_size += len as u64;
            match &mut b.part {
                Some(Pending {
                    lines: Lines::Part(bytes),
                    rotations: part_rotations,
                    records,
                    last_seq,
                    ..
                }) if !whole => {
                    if rotate {
                        part_rotations.push_back(bytes.len());
                    }
                    bytes.extend_from_slice(&batch.bytes[at..at + len]);
                    *records += 1;
                    *last_seq = seq;
                }
                _ if rotate => rotations.push_back(at),
                _ => {}
            }
            at += len;

            if let Some((conn, count)) = run {
                in_run += 1;
                if in_run == count {
                    self.completions[batch.loop_id].push(Completion {
                        conn,
                        count: u64::from(count),
                        last_seq: seq,
                    });
                    run = runs.next().copied();
                    in_run = 0;
                }
            }
        }
        self.next_seq = first + count;
        self.appended += batch.bytes.len();
        self.unwritten_records += count;
        self.unreleased += batch.cost();
        if whole {
            self.queue(
                bucket,
                Pending {
                    lines: Lines::Batch(batch),
                    written: 0,
                    rotations,
                    records: count,
                    last_seq: first + count.saturating_sub(1),
                },
            );
        } else {
            for bucket in touched {
                if let Some(part) = self.buckets[bucket].part.take() {
                    self.queue(bucket, part);
                }
            }
            Self::recycle(&self.handoff, batch);
        }
    }

    fn queue(&mut self, bucket: usize, pending: Pending) {
        let b = &mut self.buckets[bucket];
        if b.pending.is_empty() {
            self.queued.push(bucket);
        }
        b.pending.push_back(pending);
    }

    /// The index of `app`'s bucket (`None`: anonymous), made on its first record, its file
    /// opened if it was closed (a rotation is planned from the file's size).
    fn bucket_for(&mut self, app: Option<&Arc<str>>, now: Instant) -> usize {
        let index = match app {
            None => ANONYMOUS,
            Some(app) => match self.by_app.get(app) {
                Some(&index) => index,
                None => {
                    let index = self.buckets.len();
                    let dir = self.root().join(&**app);
                    self.buckets.push(Bucket::closed(dir, Some(app.clone())));
                    self.by_app.insert(app.clone(), index);
                    index
                }
            },
        };
        self.buckets[index].last_used = now;
        if self.buckets[index].files.is_none() {
            // A failure is logged and left to the write, which retries it with the others.
            if let Err(e) = self.open_files(index) {
                self.log.warn(format_args!(
                    "cannot open {}: {e}; will retry",
                    self.buckets[index].active_path().display()
                ));
            }
        }
        index
    }

    fn root(&self) -> &std::path::Path {
        &self.buckets[ANONYMOUS].dir
    }

    /// Opens a closed bucket's files, closing the least recently used idle one first when
    /// [`MAX_OPEN_BUCKETS`] are open.
    fn open_files(&mut self, index: usize) -> io::Result<()> {
        if self.open_buckets >= MAX_OPEN_BUCKETS {
            self.close_least_recent(index);
        }
        let bucket = &self.buckets[index];
        let (files, _) = open_bucket(
            &bucket.dir,
            self.max_file_size,
            self.max_files,
            &self.log,
            hold(&self.retention, bucket.app.as_deref()),
        )?;
        let unwritten: usize = bucket.pending.iter().map(Pending::unwritten).sum();
        let bucket = &mut self.buckets[index];
        bucket.planned_size = files.size() + unwritten as u64;
        bucket.files = Some(files);
        self.open_buckets += 1;
        Ok(())
    }

    /// Closes the least recently used open app bucket with nothing queued, except `keep`.
    fn close_least_recent(&mut self, keep: usize) {
        let lru = self
            .buckets
            .iter()
            .enumerate()
            .skip(1)
            .filter(|&(i, b)| {
                i != keep && b.files.is_some() && b.pending.is_empty() && b.part.is_none()
            })
            .min_by_key(|(_, b)| b.last_used)
            .map(|(i, _)| i);
        if let Some(i) = lru {
            self.close(i);
        }
    }

    /// Closes a bucket's file (after its `fsync`, if one is owed). Closing loses nothing: the
    /// next record reopens it.
    fn close(&mut self, index: usize) {
        let bucket = &mut self.buckets[index];
        let Some(files) = &bucket.files else {
            return;
        };
        if bucket.dirty
            && self.fsync != Fsync::Never
            && let Err(e) = files.sync()
        {
            self.log.error(format_args!(
                "fsync of {} before closing it failed: {e}; keeping it open",
                files.active_path().display()
            ));
            return;
        }
        bucket.files = None;
        bucket.dirty = false;
        self.open_buckets -= 1;
    }

    /// Closes the app buckets idle for [`BUCKET_IDLE_CLOSE`], and the least recently used ones
    /// beyond [`MAX_OPEN_BUCKETS`] (a flush may have opened more). Runs after writes, so the
    /// buckets it looks at usually have nothing queued.
    fn close_idle(&mut self, now: Instant) {
        // Over the budget (a flush needed more open at once): back under it now, not in a second.
        while self.open_buckets > MAX_OPEN_BUCKETS {
            let before = self.open_buckets;
            self.close_least_recent(ANONYMOUS);
            if self.open_buckets == before {
                break;
            }
        }
        // The idle look goes through every bucket: once a second, not once per batch.
        if self.open_buckets <= 1 || now < self.idle_check_at {
            return;
        }
        self.idle_check_at = now + Duration::from_secs(1);
        for i in 1..self.buckets.len() {
            let b = &self.buckets[i];
            if b.files.is_some()
                && b.pending.is_empty()
                && now.duration_since(b.last_used) >= BUCKET_IDLE_CLOSE
            {
                self.close(i);
            }
        }
    }

    /// The active file of the first bucket with something unwritten: what a failure is about.
    fn where_failing(&self) -> String {
        let index = self.queued.first().copied().unwrap_or(ANONYMOUS);
        self.buckets[index].active_path().display().to_string()
    }

    /// Writes `out`, rotating where planned; on failure keeps everything for the next try.
    fn flush(&mut self) {
        let started = Instant::now();
        match self.write_out() {
            Ok(()) => {
                // Per flush, for `/metrics`: the records it wrote and how long it took.
                let writer = &self.stats.writer;
                writer
                    .write_seconds
                    .observe(started.elapsed().as_secs_f64());
                writer.batch_records.observe(self.written_records as f64);
                self.written_ok();
            }
            Err(e) => {
                self.stats
                    .writer
                    .disk_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.failures += 1;
                let retry = RETRY_BACKOFF
                    .get(self.failures as usize - 1)
                    .copied()
                    .unwrap_or(DEGRADED_RETRY);
                self.retry_at = Some(Instant::now() + retry);
                if self.failures as usize == RETRY_BACKOFF.len() + 1 {
                    self.stats.set_degraded(true);
                    self.log.error(format_args!(
                        "cannot write {}: {e}; DEGRADED: holding {} in memory, reading from \
                         clients stops at --max-pending, retrying every {}s",
                        self.where_failing(),
                        count(self.unwritten_records, "record"),
                        DEGRADED_RETRY.as_secs()
                    ));
                } else if self.failures as usize <= RETRY_BACKOFF.len() {
                    self.log.warn(format_args!(
                        "write to {} failed: {e}; retry {} of {} in {retry:?}",
                        self.where_failing(),
                        self.failures,
                        RETRY_BACKOFF.len()
                    ));
                }
            }
        }
    }

    /// Hands a written batch back to its loop, emptied, unless the loop has enough spares or
    /// the batch grew oversized.
    fn recycle(handoff: &Handoff, mut batch: Batch) {
        if batch.bytes.capacity() > SPARE_CAPACITY {
            return;
        }
        batch.clear();
        handoff
            .mailbox(batch.loop_id)
            .give_back(batch, SPARE_BATCHES);
    }

    /// Writes every queued bucket, in the order they were first queued; a bucket that fails
    /// stays queued (with what it has written) and the error is returned.
    fn write_out(&mut self) -> io::Result<()> {
        while let Some(&index) = self.queued.first() {
            if self.buckets[index].files.is_none() {
                self.open_files(index)?;
            }
            self.write_bucket(index)?;
            self.queued.remove(0);
        }
        // The high-water mark: one `pwrite` per flush (which may cover many batches), never one
        // per record; under `--fsync always` one more `fdatasync` per flush, for the state file.
        self.high_water.record(self.written_seq)?;
        if self.fsync == Fsync::Always {
            self.sync()?;
        }
        Ok(())
    }

    /// Writes one bucket's queue: one `write` per queued buffer, two when a rotation falls
    /// inside it.
    fn write_bucket(&mut self, index: usize) -> io::Result<()> {
        let bucket = &mut self.buckets[index];
        let Some(files) = &mut bucket.files else {
            return Err(io::Error::other("the bucket's file is not open"));
        };
        while let Some(p) = bucket.pending.front_mut() {
            loop {
                let end = p.bytes().len();
                let stop = p.rotations.front().copied().unwrap_or(end);
                while p.written < stop {
                    let n = files.write(&p.bytes()[p.written..stop])?;
                    if n == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    bucket.dirty = true;
                    if self.stdout {
                        echo(&self.log, &p.bytes()[p.written..p.written + n]);
                    }
                    p.written += n;
                }
                match p.rotations.front() {
                    Some(&at) if at == p.written => {
                        if self.fsync != Fsync::Never {
                            files.sync()?;
                        }
                        files.rotate()?;
                        for dropped in files.take_dropped() {
                            self.log.error(format_args!("{dropped}"));
                        }
                        self.stats
                            .writer
                            .rotations
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        p.rotations.pop_front();
                    }
                    _ => break,
                }
            }
            // A batch stored out of order ("stored as it is") may hold lower numbers.
            self.written_seq = self.written_seq.max(p.last_seq);
            self.unwritten_records -= p.records;
            self.written_records += p.records;
            bucket.stats_records += p.records;
            bucket.stats_bytes += p.bytes().len() as u64;
            match bucket.pending.pop_front().map(|done| done.lines) {
                Some(Lines::Batch(batch)) => Self::recycle(&self.handoff, batch),
                Some(Lines::Part(mut bytes))
                    if self.spare_parts.len() < SPARE_PARTS
                        && bytes.capacity() <= SPARE_PART_BYTES =>
                {
                    bytes.clear();
                    self.spare_parts.push(bytes);
                }
                Some(Lines::Part(_)) | None => {}
            }
        }
        Ok(())
    }

    /// `fsync`s the files written since their last one, then the state file. After a power
    /// loss the state may be ahead of the lines (the kernel writes pages back in any order):
    /// that only skips numbers. A state behind the lines is corrected by the files at start-up.
    fn sync(&mut self) -> io::Result<()> {
        for bucket in &mut self.buckets {
            if let (true, Some(files)) = (bucket.dirty, &bucket.files) {
                files.sync()?;
                bucket.dirty = false;
            }
        }
        self.high_water.sync()
    }

    /// Everything appended is in the files: account, release, and hand back completions.
    fn written_ok(&mut self) {
        if self.failures > RETRY_BACKOFF.len() as u32 {
            self.log.info(format_args!(
                "writes to {} work again; no longer DEGRADED",
                self.buckets[ANONYMOUS].dir.display()
            ));
        }
        self.failures = 0;
        self.retry_at = None;
        self.stats.set_degraded(false);
        if self.fsync != Fsync::Always {
            self.dirty_since.get_or_insert_with(Instant::now);
        }
        let bytes = self.appended as u64;
        self.stats.written(self.written_records, bytes);
        self.stats_records += self.written_records;
        self.stats_bytes += bytes;
        self.written_records = 0;
        self.appended = 0;
        let room_made = self.handoff.pending().release(self.unreleased);
        self.unreleased = 0;
        for (loop_id, completions) in self.completions.iter_mut().enumerate() {
            let mailbox = self.handoff.mailbox(loop_id);
            let resume = room_made && mailbox.is_paused();
            if completions.is_empty() && !resume {
                continue;
            }
            mailbox.post(completions);
        }
    }

    fn periodic_fsync(&mut self, now: Instant) {
        let Fsync::Every(every) = self.fsync else {
            return;
        };
        if let Some(since) = self.dirty_since
            && now.duration_since(since) >= every
        {
            match self.sync() {
                Ok(()) => self.dirty_since = None,
                Err(e) => self.log.error(format_args!("fsync failed: {e}")),
            }
        }
    }

    /// `; by app: billing 1200 records 250000 bytes, ...`: what each bucket had written since
    /// the last stats line, the [`STATS_TOP_APPS`] with the most records first (`_anonymous`
    /// for the root bucket), the rest summed; empty when nothing was written. Resets the counts.
    fn stats_by_app(&mut self) -> String {
        let mut written: Vec<(u64, u64, &str)> = self
            .buckets
            .iter()
            .filter(|b| b.stats_records > 0)
            .map(|b| {
                let name = b.app.as_deref().unwrap_or("_anonymous");
                (b.stats_records, b.stats_bytes, name)
            })
            .collect();
        written.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(b.2)));
        let mut out = String::new();
        for (i, (records, bytes, name)) in written.iter().enumerate() {
            if i == STATS_TOP_APPS {
                let rest = &written[i..];
                let records: u64 = rest.iter().map(|r| r.0).sum();
                let bytes: u64 = rest.iter().map(|r| r.1).sum();
                out.push_str(&format!(
                    ", {}: {} {}",
                    count(rest.len() as u64, "other app"),
                    count(records, "record"),
                    count(bytes, "byte")
                ));
                break;
            }
            out.push_str(if i == 0 { "; by app: " } else { ", " });
            out.push_str(&format!(
                "{name} {} {}",
                count(*records, "record"),
                count(*bytes, "byte")
            ));
        }
        for bucket in &mut self.buckets {
            bucket.stats_records = 0;
            bucket.stats_bytes = 0;
        }
        out
    }

    fn periodic_stats(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.stats_at);
        if elapsed < self.stats_interval {
            return;
        }
        let secs = elapsed.as_secs_f64();
        let apps = self.stats_by_app();
        self.log.info(format_args!(
            "stats: {:.0} records/s, {:.0} bytes/s, {}, {}, {}, {}, {}, {}{apps}",
            self.stats_records as f64 / secs,
            self.stats_bytes as f64 / secs,
            count(self.stats.connections() as u64, "connection"),
            count(self.handoff.pending().pending() as u64, "pending byte"),
            count(self.stats.decode_errors(), "decode error"),
            count(self.stats.partial_bytes() as u64, "partial byte"),
            count(self.stats.shed(), "shed connection"),
            self.stats.refused_auth_summary(),
        ));
        self.stats_at = now;
        self.stats_records = 0;
        self.stats_bytes = 0;
    }
}

/// `--stdout`: the lines just written, also on standard output.
fn echo(log: &ServerLog, lines: &[u8]) {
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout.write_all(lines) {
        log.warn(format_args!(
            "--stdout: cannot write to standard output: {e}"
        ));
    }
}

/// The hold of `app`'s bucket (`None`: anonymous), when some `--forward` sink may need it.
fn hold(retention: &Arc<Retention>, app: Option<&str>) -> Option<Hold> {
    retention.active().then(|| {
        Hold::new(
            retention.clone(),
            app.unwrap_or(crate::storage::search::ANONYMOUS),
        )
    })
}

/// Opens (and repairs) the file set in `dir`, logging the repairs; the highest sequence number
/// in it (0 when empty).
fn open_bucket(
    dir: &std::path::Path,
    max_file_size: u64,
    max_files: usize,
    log: &ServerLog,
    hold: Option<Hold>,
) -> io::Result<(FileSet, u64)> {
    let opened = FileSet::open_held(dir, "_main", max_file_size, max_files, hold)?;
    for repair in &opened.repairs {
        log.warn(format_args!("repaired at start-up: {repair}"));
    }
    let last = match &opened.last_line {
        None => 0,
        Some(line) => parse_seq(line).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "cannot read the sequence number of the last line in {}: is this directory \
                     written by logmill? Use another --dir.",
                    dir.display()
                ),
            )
        })?,
    };
    Ok((opened.files, last))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::mpsc;

    use super::*;
    use crate::config::{Config, Format};
    use crate::record::{Body, Record};
    use crate::storage::line::{LineFormatter, Origin};
    use crate::storage::mailbox::Mailbox;
    use crate::storage::{BatchBuilder, ConnKey};

    /// Every line of `dir`'s record files, oldest file first.
    fn stored_lines(dir: &std::path::Path) -> Vec<String> {
        let mut files: Vec<PathBuf> = (0..100)
            .map(|i| dir.join(format!("_main.log.{i}")))
            .filter(|p| p.exists())
            .collect();
        files.reverse();
        files.push(dir.join("_main.log"));
        files
            .iter()
            .flat_map(|p| {
                let text = std::fs::read_to_string(p).unwrap();
                assert!(
                    text.is_empty() || text.ends_with('\n'),
                    "{p:?} ends mid-line"
                );
                text.lines().map(str::to_string).collect::<Vec<_>>()
            })
            .collect()
    }

    /// A writer with one loop's mailbox on a fresh directory `logmill-writer-<name>-<pid>`,
    /// `--fsync never`, `tune` adjusting the rest of the config. The poll keeps the mailbox's
    /// waker registered.
    struct TestWriter {
        dir: PathBuf,
        handoff: Arc<Handoff>,
        tx: mpsc::Sender<Command>,
        writer: Writer,
        _poll: mio::Poll,
    }

    fn test_writer(name: &str, tune: impl FnOnce(&mut Config)) -> TestWriter {
        let dir =
            std::env::temp_dir().join(format!("logmill-writer-{name}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        let mut config = Config {
            dir: dir.clone(),
            fsync: Fsync::Never,
            ..Config::default()
        };
        tune(&mut config);
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let handoff = Arc::new(Handoff::new(usize::MAX, vec![Mailbox::new(waker)]));
        let (tx, rx) = mpsc::channel();
        let writer = Writer::open(
            &config,
            handoff.clone(),
            Arc::default(),
            Arc::new(ServerLog::stderr_only()),
            rx,
            Arc::default(),
        )
        .unwrap();
        TestWriter {
            dir,
            handoff,
            tx,
            writer,
            _poll: poll,
        }
    }

    /// Batches numbered as the loops number them, their reserved width right (printed in place)
    /// and wrong (rebuilt): crossing 9 to 10 and 99 to 100 inside a batch, and a stale hint far
    /// behind. They arrive out of order, and rotations fall inside batches. Every line must come
    /// out whole, in number order, with its own number.
    #[test]
    fn numbered_batches_are_stored_in_number_order_and_rotate_whole() {
        let TestWriter {
            dir,
            handoff,
            tx,
            writer,
            _poll,
        } = test_writer("numbered", |config| {
            config.max_file_size = 4096;
            config.max_files = 100;
        });

        // (records, the next sequence number the batch's loop believed in)
        let plan = [(5, 1), (10, 6), (100, 16), (300, 1), (400, 500)];
        let mut builder = BatchBuilder::new(0, LineFormatter::new(Format::Text), 1);
        let conn = ConnKey {
            token: 0,
            serial: 0,
        };
        let mut sent = 0;
        let mut batches = Vec::new();
        for (records, hint) in plan {
            builder.take(hint, None);
            for _ in 0..records {
                sent += 1;
                let record = Record {
                    timestamp_ns: 1,
                    body: Body::Message(format!("record {sent}").into()),
                    ..Record::default()
                };
                builder.push(conn, &record, &Origin::default(), 0);
            }
            let first = handoff.take_seq(records);
            let mut batch = builder.take(hint, None);
            batch.number(first);
            batches.push(Some(batch));
        }
        for i in [1, 0, 4, 3, 2] {
            let batch = batches[i].take().unwrap();
            tx.send(Command::Write(batch)).unwrap();
        }
        tx.send(Command::LoopDone(0)).unwrap();
        assert_eq!(writer.run(Duration::from_secs(5)), Exit::Clean);

        let lines = stored_lines(&dir);
        assert_eq!(lines.len(), sent);
        for (i, line) in lines.iter().enumerate() {
            let n = i + 1;
            assert_eq!(
                *line,
                format!("1970-01-01T00:00:00.000000Z INFO {n} - - record {n}")
            );
        }
        assert!(
            std::fs::read_dir(&dir).unwrap().count() > 10,
            "rotations happened"
        );
        assert_eq!(handoff.next_seq(), sent as u64 + 1);
        // Written batches went back to their loop for reuse, emptied, no more than it keeps.
        let spare = handoff.mailbox(0).spares();
        assert_eq!(spare.len(), plan.len());
        assert!(
            spare
                .iter()
                .all(|b| b.bytes.is_empty() && b.is_empty() && b.owners.is_empty())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    /// One batch mixing two apps and anonymous records, and a frame rolled back half-way: each
    /// bucket's file gets exactly its lines, in number order, the numbers one sequence over all.
    #[test]
    fn a_batch_that_mixes_apps_is_cut_into_its_buckets() {
        let TestWriter {
            dir,
            handoff,
            tx,
            writer,
            _poll,
        } = test_writer("mix", |_| {});
        let origins = [
            Origin::new("a".into(), "1".into()),
            Origin::new("b".into(), "1".into()),
            Origin::default(),
            Origin::new("a".into(), "2".into()),
        ];
        let mut builder = BatchBuilder::new(0, LineFormatter::new(Format::Text), 1);
        let conn = ConnKey {
            token: 0,
            serial: 0,
        };
        let record = |text: String| Record {
            timestamp_ns: 1,
            body: Body::Message(text.into()),
            ..Record::default()
        };
        let mut sent = 0;
        for round in 0..10 {
            for (i, origin) in origins.iter().enumerate() {
                sent += 1;
                builder.push(conn, &record(format!("{round} {i}")), origin, 0);
            }
            // A frame that fails half-way is taken back, bucket runs included.
            let mark = builder.mark();
            builder.push(conn, &record("rolled back".into()), &origins[1], 0);
            builder.rollback(mark);
        }
        let first = handoff.take_seq(sent);
        let mut batch = builder.take(1, None);
        // One run per change of bucket: `a/2` then the next round's `a/1` is one run of `a`.
        assert_eq!(batch.buckets().len(), 4 * 10 - 9);
        batch.number(first);
        tx.send(Command::Write(batch)).unwrap();
        tx.send(Command::LoopDone(0)).unwrap();
        assert_eq!(writer.run(Duration::from_secs(5)), Exit::Clean);

        let mut seqs = Vec::new();
        for (bucket, expect) in [
            (dir.join("a"), vec!["a/1 - {r} 0", "a/2 - {r} 3"]),
            (dir.join("b"), vec!["b/1 - {r} 1"]),
            (dir.clone(), vec!["- - {r} 2"]),
        ] {
            let lines = stored_lines(&bucket);
            let want: Vec<String> = (0..10)
                .flat_map(|r| expect.iter().map(move |e| e.replace("{r}", &r.to_string())))
                .collect();
            assert_eq!(lines.len(), want.len(), "{bucket:?}");
            let mut last = 0;
            for (line, want) in lines.iter().zip(&want) {
                let seq: u64 = line.split(' ').nth(2).unwrap().parse().unwrap();
                assert!(seq > last, "{line}");
                last = seq;
                seqs.push(seq);
                assert!(
                    line.ends_with(want.as_str()),
                    "{line} should end with {want}"
                );
            }
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=sent).collect::<Vec<_>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The stats line's part by app: the busiest first, the rest summed, counts reset after.
    #[test]
    fn the_stats_line_names_the_busiest_apps_and_sums_the_rest() {
        let TestWriter {
            dir,
            mut writer,
            _poll,
            ..
        } = test_writer("top", |_| {});
        assert_eq!(writer.stats_by_app(), "");
        for i in 0..15u64 {
            let app: Arc<str> = Arc::from(format!("app{i:02}"));
            let index = writer.bucket_for(Some(&app), Instant::now());
            writer.buckets[index].stats_records = 100 + i;
            writer.buckets[index].stats_bytes = 1000;
        }
        writer.buckets[ANONYMOUS].stats_records = 1;
        writer.buckets[ANONYMOUS].stats_bytes = 10;
        let line = writer.stats_by_app();
        assert!(
            line.starts_with("; by app: app14 114 records 1000 bytes, app13 113 records"),
            "{line}"
        );
        // 16 buckets wrote: 10 named, 6 summed (app00..app04 and the anonymous one).
        let rest = 100 + 101 + 102 + 103 + 104 + 1;
        assert!(
            line.ends_with(&format!(", 6 other apps: {rest} records 5010 bytes")),
            "{line}"
        );
        assert_eq!(writer.stats_by_app(), "", "reset");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
