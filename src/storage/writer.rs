//! The writer thread: the only code that touches the record files.
//!
//! It receives [`Batch`]es from the loops, gives each line the next sequence number, appends the
//! lines to one output buffer, and writes that buffer with as few `write` calls as the file
//! rotation allows (one per turn normally; this is the batching the issue asks for). Rotation
//! points are decided while lines are appended, so a line is never split across files.
//!
//! When a write fails, the buffer, its position and its pending rotations stay as they are and the
//! write is retried (3 retries, exponential backoff). If the disk still refuses, the writer marks
//! the server DEGRADED and retries every second, still holding the records: the loops' pending
//! bytes stay counted, so once `--max-pending` is reached the loops stop reading sockets and
//! clients are pushed back by TCP. Nothing is dropped; when the disk recovers, the writer carries
//! on where it stopped.

use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::fileset::FileSet;
use super::line::parse_seq;
use super::{Batch, Command, Completion};
use crate::config::Fsync;
use crate::server_log::ServerLog;
use crate::shared::Shared;

/// Write once this much is buffered even if more batches are queued, so acks keep flowing.
const FLUSH_AT: usize = 4 * 1024 * 1024;
/// Backoff before retry 1, 2 and 3; after that the server is DEGRADED and retries every second.
const RETRY_BACKOFF: [Duration; 3] = [
    Duration::from_millis(10),
    Duration::from_millis(40),
    Duration::from_millis(160),
];
const DEGRADED_RETRY: Duration = Duration::from_secs(1);

pub struct Writer {
    files: FileSet,
    next_seq: u64,
    fsync: Fsync,
    stdout: bool,
    /// Lines waiting to be written; `out[..written]` is already in the file.
    out: Vec<u8>,
    written: usize,
    /// Offsets in `out` before which the file must be rotated.
    rotations: VecDeque<usize>,
    /// Size the active file will have once `out` is written (since the last planned rotation).
    planned_size: u64,
    /// Completions, per loop, for the lines in `out`.
    completions: Vec<Vec<Completion>>,
    unwritten_records: u64,
    /// Pending-bytes to release once `out` is written.
    unreleased: usize,
    failures: u32,
    retry_at: Option<Instant>,
    dirty_since: Option<Instant>,
    shared: Arc<Shared>,
    log: Arc<ServerLog>,
    rx: Receiver<Command>,
    loops_done: usize,
    stats_at: Instant,
    stats_interval: Duration,
    stats_records: u64,
    stats_bytes: u64,
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
        shared: Arc<Shared>,
        log: Arc<ServerLog>,
        rx: Receiver<Command>,
    ) -> io::Result<Writer> {
        let opened = FileSet::open(&config.dir, "_main", config.max_file_size, config.max_files)?;
        for repair in &opened.repairs {
            log.warn(format_args!("repaired at start-up: {repair}"));
        }
        let last_seq = match &opened.last_line {
            None => 0,
            Some(line) => parse_seq(line).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "cannot read the sequence number of the last line in {}: is this directory \
                         written by logmill? Use another --dir.",
                        config.dir.display()
                    ),
                )
            })?,
        };
        log.info(format_args!(
            "storage: {} ({} bytes), next sequence number {}",
            opened.files.active_path().display(),
            opened.files.size(),
            last_seq + 1
        ));
        let loops = shared.mailboxes.len();
        Ok(Writer {
            planned_size: opened.files.size(),
            files: opened.files,
            next_seq: last_seq + 1,
            fsync: config.fsync,
            stdout: config.stdout,
            out: Vec::with_capacity(FLUSH_AT),
            written: 0,
            rotations: VecDeque::new(),
            completions: vec![Vec::new(); loops],
            unwritten_records: 0,
            unreleased: 0,
            failures: 0,
            retry_at: None,
            dirty_since: None,
            shared,
            log,
            rx,
            loops_done: 0,
            stats_at: Instant::now(),
            stats_interval: config.stats_interval,
            stats_records: 0,
            stats_bytes: 0,
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
            while self.out.len() < FLUSH_AT {
                match self.rx.try_recv() {
                    Ok(command) => self.handle(command),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            if !self.out.is_empty() && self.retry_at.is_none_or(|at| now >= at) {
                self.flush();
            }
            self.periodic_fsync(now);
            self.periodic_stats(now);

            if self.loops_done == self.completions.len() {
                let began = *shutdown_began.get_or_insert(now);
                if self.out.is_empty() {
                    if let Err(e) = self.files.sync() {
                        self.log.error(format_args!("final fsync failed: {e}"));
                    }
                    return Exit::Clean;
                }
                if now.duration_since(began) >= shutdown_timeout {
                    let lost = self.unwritten_records;
                    self.log.error(format_args!(
                        "shutdown: gave up after {shutdown_timeout:?}; {lost} received records \
                         could not be written to {}",
                        self.files.active_path().display()
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
            Command::Write(batch) => self.append(batch),
            Command::Reopen => {
                self.flush();
                match self.files.reopen() {
                    Ok(()) => self.log.info(format_args!(
                        "SIGHUP: reopened {}",
                        self.files.active_path().display()
                    )),
                    Err(e) => self.log.error(format_args!(
                        "SIGHUP: cannot reopen {}: {e}; still writing the old file",
                        self.files.active_path().display()
                    )),
                }
                self.planned_size = self.files.size() + (self.out.len() - self.written) as u64;
            }
            Command::LoopDone(_) => self.loops_done += 1,
        }
    }

    /// Numbers the batch's lines and appends them to `out`. This is the writer's per-record work:
    /// two copies and one integer to text; no allocation, no syscall.
    fn append(&mut self, batch: Batch) {
        let max = self.files.max_file_size();
        let mut pos = 0usize;
        let mut digits = itoa::Buffer::new();
        let mut owners = batch.owners.iter();
        let mut run = owners.next().copied();
        let mut in_run = 0u32;
        for &(head, tail) in &batch.spans {
            let (head, tail) = (head as usize, tail as usize);
            let seq = self.next_seq;
            self.next_seq += 1;
            let seq_text = digits.format(seq).as_bytes();
            let len = (head + seq_text.len() + tail) as u64;
            if self.planned_size > 0 && self.planned_size + len > max {
                self.rotations.push_back(self.out.len());
                self.planned_size = 0;
            }
            self.out.extend_from_slice(&batch.bytes[pos..pos + head]);
            self.out.extend_from_slice(seq_text);
            self.out
                .extend_from_slice(&batch.bytes[pos + head..pos + head + tail]);
            pos += head + tail;
            self.planned_size += len;

            if let Some((conn, count)) = run {
                in_run += 1;
                if in_run == count {
                    self.completions[batch.loop_id].push(Completion {
                        conn,
                        count: u64::from(count),
                        last_seq: seq,
                    });
                    run = owners.next().copied();
                    in_run = 0;
                }
            }
        }
        self.unwritten_records += batch.len() as u64;
        self.unreleased += batch.cost();
    }

    /// Writes `out`, rotating where planned; on failure keeps everything for the next try.
    fn flush(&mut self) {
        match self.write_out() {
            Ok(()) => self.written_ok(),
            Err(e) => {
                self.failures += 1;
                let retry = RETRY_BACKOFF
                    .get(self.failures as usize - 1)
                    .copied()
                    .unwrap_or(DEGRADED_RETRY);
                self.retry_at = Some(Instant::now() + retry);
                if self.failures as usize == RETRY_BACKOFF.len() + 1 {
                    self.shared.degraded.store(true, Ordering::Release);
                    self.log.error(format_args!(
                        "cannot write {}: {e}; DEGRADED: holding {} records in memory, reading \
                         from clients stops at --max-pending, retrying every {}s",
                        self.files.active_path().display(),
                        self.unwritten_records,
                        DEGRADED_RETRY.as_secs()
                    ));
                } else if self.failures as usize <= RETRY_BACKOFF.len() {
                    self.log.warn(format_args!(
                        "write to {} failed: {e}; retry {} of {} in {retry:?}",
                        self.files.active_path().display(),
                        self.failures,
                        RETRY_BACKOFF.len()
                    ));
                }
            }
        }
    }

    fn write_out(&mut self) -> io::Result<()> {
        loop {
            let stop = self.rotations.front().copied().unwrap_or(self.out.len());
            while self.written < stop {
                let n = self.files.write(&self.out[self.written..stop])?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                if self.stdout {
                    self.echo(self.written, self.written + n);
                }
                self.written += n;
            }
            match self.rotations.front() {
                Some(&at) if at == self.written => {
                    if self.fsync != Fsync::Never {
                        self.files.sync()?;
                    }
                    self.files.rotate()?;
                    self.rotations.pop_front();
                }
                _ => break,
            }
        }
        if self.fsync == Fsync::Always {
            self.files.sync()?;
        }
        Ok(())
    }

    fn echo(&self, from: usize, to: usize) {
        let mut stdout = io::stdout().lock();
        if let Err(e) = stdout.write_all(&self.out[from..to]) {
            self.log.warn(format_args!(
                "--stdout: cannot write to standard output: {e}"
            ));
        }
    }

    /// Everything in `out` is in the files: account, release, and hand back completions.
    fn written_ok(&mut self) {
        if self.failures > RETRY_BACKOFF.len() as u32 {
            self.log.info(format_args!(
                "writes to {} work again; no longer DEGRADED",
                self.files.active_path().display()
            ));
        }
        self.failures = 0;
        self.retry_at = None;
        self.shared.degraded.store(false, Ordering::Release);
        if self.fsync != Fsync::Always {
            self.dirty_since.get_or_insert_with(Instant::now);
        }
        let bytes = self.out.len() as u64;
        self.shared
            .records_written
            .fetch_add(self.unwritten_records, Ordering::Relaxed);
        self.shared
            .bytes_written
            .fetch_add(bytes, Ordering::Relaxed);
        self.stats_records += self.unwritten_records;
        self.stats_bytes += bytes;
        self.unwritten_records = 0;
        self.out.clear();
        self.written = 0;
        let before = self
            .shared
            .pending_bytes
            .fetch_sub(self.unreleased, Ordering::AcqRel);
        let room_made =
            before >= self.shared.max_pending && before - self.unreleased < self.shared.max_pending;
        self.unreleased = 0;
        for (loop_id, completions) in self.completions.iter_mut().enumerate() {
            let mailbox = &self.shared.mailboxes[loop_id];
            let resume = room_made && mailbox.paused.load(Ordering::Acquire);
            if completions.is_empty() && !resume {
                continue;
            }
            mailbox
                .completions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(completions);
            mailbox.wake();
        }
    }

    fn periodic_fsync(&mut self, now: Instant) {
        let Fsync::Every(every) = self.fsync else {
            return;
        };
        if let Some(since) = self.dirty_since
            && now.duration_since(since) >= every
        {
            match self.files.sync() {
                Ok(()) => self.dirty_since = None,
                Err(e) => self.log.error(format_args!(
                    "fsync of {} failed: {e}",
                    self.files.active_path().display()
                )),
            }
        }
    }

    fn periodic_stats(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.stats_at);
        if elapsed < self.stats_interval {
            return;
        }
        let secs = elapsed.as_secs_f64();
        self.log.info(format_args!(
            "stats: {:.0} records/s, {:.0} bytes/s, {} connections, {} pending bytes, {} decode errors",
            self.stats_records as f64 / secs,
            self.stats_bytes as f64 / secs,
            self.shared.connections.load(Ordering::Relaxed),
            self.shared.pending_bytes.load(Ordering::Relaxed),
            self.shared.decode_errors.load(Ordering::Relaxed),
        ));
        self.stats_at = now;
        self.stats_records = 0;
        self.stats_bytes = 0;
    }
}
