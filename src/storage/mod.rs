//! The storage stage: a writer thread that owns the files and the order.
//!
//! - [`line`]: how a record becomes a stored line (formatted by the loops, see there why).
//! - [`parse`]: a stored line read back into a record (the inverse of `line`, for searches).
//! - [`search`]: search, counts, context and follow over the stored files (console and CLI).
//! - [`bucket`]: which app names may become a bucket directory; the buckets found at start-up.
//! - [`fileset`]: one rotating set of files, its crash repair at start-up.
//! - [`retention`]: what the `--forward` sinks have not read yet, which a rotation keeps (up
//!   to `--forward-max-lag`) instead of deleting.
//! - [`high_water`]: the highest sequence number given, kept in `_main.seq` so numbers never
//!   repeat when the files were moved away.
//! - [`lock`]: one server per directory (`_server.lock`, an `flock` the kernel releases).
//! - [`writer`]: the thread: sequence numbers, batching, rotation, fsync, retries, completions.
//! - [`backpressure`]: the pending-bytes gauge (`--max-pending`) that stops the loops reading.
//! - [`mailbox`]: what goes back from the writer to each loop (completions, spare batches, a
//!   wake-up), and the sequence counter the loops number their batches from.
//! - [`server_log`]: the server's own log, `_server.log`, rotated in the data directory.
//!
//! The loops hand the writer [`Batch`]es over a channel; the writer hands back [`Completion`]s
//! through each loop's mailbox once the lines are written (and fsynced under `--fsync always`).
//! Nothing here imports the server: the server builds on storage, never the other way round.

pub mod backpressure;
pub mod bucket;
pub mod fileset;
pub mod high_water;
pub mod line;
pub mod lock;
pub mod mailbox;
pub mod parse;
pub mod retention;
pub mod search;
pub mod server_log;
pub mod writer;

use std::sync::Arc;

use crate::record::Record;
use line::{LineFormatter, Origin};

/// Identifies a connection across threads: its slab slot and a per-loop serial number, so a
/// completion for a closed connection is never credited to a new one in the same slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnKey {
    pub token: usize,
    pub serial: u64,
}

/// "`count` more records of connection `conn` are written; the last has sequence `last_seq`."
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub conn: ConnKey,
    pub count: u64,
    pub last_seq: u64,
}

/// Lines formatted by one loop, waiting for their sequence numbers.
///
/// `bytes` holds, per line, the head (before the sequence number), `seq_width` bytes reserved
/// for the number, then the tail; `spans` holds the head and tail lengths; `owners` says which
/// connection sent each run of consecutive lines. A loop sends one batch per turn for all its
/// connections: this is where records are batched, so the channel and the writer see one message
/// per turn, not one per record.
///
/// Sequence numbers are given by the loop when it sends the batch ([`Batch::number`]): it takes
/// a range from the shared counter ([`Handoff::take_seq`](mailbox::Handoff::take_seq)) and prints the
/// numbers into the reserved digits while the lines are still in its own core's cache. The
/// reserved width is that of the counter when the batch was started; a batch whose numbers turn
/// out wider or narrower (it crosses a power of ten) is rebuilt once with the right digits. The
/// writer then writes `bytes` as they are, in the order of the numbers: the lines are never
/// copied on their way to the file.
#[derive(Default)]
pub struct Batch {
    pub loop_id: usize,
    pub bytes: Vec<u8>,
    pub spans: Vec<(u32, u32)>,
    pub owners: Vec<(ConnKey, u32)>,
    pub seq_width: usize,
    /// The number of the first line, once [`Batch::number`] has given them (0 before).
    pub first_seq: u64,
    /// Which bucket each run of consecutive lines goes to (`None`: anonymous), as `owners` says
    /// whose they are. One run when every line goes to the same bucket, the common case the
    /// writer handles without copying a byte.
    buckets: Vec<(Option<Arc<str>>, u32)>,
}

impl Batch {
    /// What this batch counts for in the pending-bytes gauge.
    pub fn cost(&self) -> usize {
        self.bytes.len() + self.spans.len() * 8 + self.owners.len() * 24 + self.buckets.len() * 24
    }

    /// Empties the batch for reuse, keeping its buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
        self.owners.clear();
        self.buckets.clear();
    }

    /// The runs of consecutive lines that go to one bucket, `(app, lines)`; `None` is anonymous.
    pub fn buckets(&self) -> &[(Option<Arc<str>>, u32)] {
        &self.buckets
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Gives the lines the numbers `first..`: printed into the digits each line reserved or,
    /// when the numbers have another width than was reserved, by rebuilding the lines with the
    /// right digits. Afterwards line `i` is `head`, the digits of `first + i`, `tail`.
    pub fn number(&mut self, first: u64) {
        self.first_seq = first;
        let Some(last) = (self.len() as u64).checked_sub(1).map(|n| first + n) else {
            return;
        };
        let width = self.seq_width;
        let mut digits = itoa::Buffer::new();
        if decimal_width(first) == width && decimal_width(last) == width {
            let mut pos = 0;
            for (seq, &(head, tail)) in (first..).zip(&self.spans) {
                let (head, tail) = (head as usize, tail as usize);
                self.bytes[pos + head..pos + head + width]
                    .copy_from_slice(digits.format(seq).as_bytes());
                pos += head + width + tail;
            }
            return;
        }
        let mut lines = Vec::with_capacity(self.bytes.len() + self.len());
        for (seq, (head, tail)) in (first..).zip(self.lines()) {
            lines.extend_from_slice(head);
            lines.extend_from_slice(digits.format(seq).as_bytes());
            lines.extend_from_slice(tail);
        }
        self.bytes = lines;
    }

    /// Each line's head and tail, without the bytes reserved for its sequence number (before
    /// [`Batch::number`]).
    pub fn lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut pos = 0;
        self.spans.iter().map(move |&(head, tail)| {
            let (head, tail) = (head as usize, tail as usize);
            let line = &self.bytes[pos..pos + head + self.seq_width + tail];
            pos += line.len();
            (&line[..head], &line[head + self.seq_width..])
        })
    }
}

/// Whether two runs go to the same bucket: the same shared name (a connection's records), or
/// equal names (two connections of one app).
fn same_bucket(a: Option<&Arc<str>>, b: Option<&Arc<str>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}

/// Written batches kept per loop for reuse ([`Mailbox::give_back`](mailbox::Mailbox::give_back)):
/// about what the writer holds between two writes. Beyond these, and batches whose buffer grew
/// past `SPARE_CAPACITY` (a turn of very large frames), are freed.
pub const SPARE_BATCHES: usize = 8;
pub const SPARE_CAPACITY: usize = 2 * 1024 * 1024;

/// Decimal digits of `n`: the bytes a line reserves for a sequence number near `n`.
pub fn decimal_width(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// A position in a [`BatchBuilder`] to roll back to (a frame that fails half-way).
#[derive(Clone, Copy)]
pub struct Mark {
    bytes: usize,
    spans: usize,
    owners: usize,
    last_owner_count: u32,
    buckets: usize,
    last_bucket_count: u32,
}

/// Builds a loop's [`Batch`], one record at a time.
pub struct BatchBuilder {
    batch: Batch,
    formatter: LineFormatter,
}

impl BatchBuilder {
    /// `next_seq`: the next sequence number to give, or a recent value of it (the width to
    /// reserve for the numbers; see [`Batch`]).
    pub fn new(loop_id: usize, formatter: LineFormatter, next_seq: u64) -> Self {
        BatchBuilder {
            batch: Batch {
                loop_id,
                seq_width: decimal_width(next_seq),
                ..Batch::default()
            },
            formatter,
        }
    }

    /// Formats `record` and appends it for connection `conn`.
    pub fn push(&mut self, conn: ConnKey, record: &Record<'_>, origin: &Origin, now_ns: u64) {
        let (head, tail) = self.formatter.format(
            record,
            origin,
            now_ns,
            self.batch.seq_width,
            &mut self.batch.bytes,
        );
        // A line is at most a frame (16 MiB) plus escaping (4x): far below u32::MAX.
        self.batch.spans.push((head as u32, tail as u32));
        match self.batch.owners.last_mut() {
            Some((key, count)) if *key == conn => *count += 1,
            _ => self.batch.owners.push((conn, 1)),
        }
        // A pointer comparison per record: the app's name is never looked at here.
        let bucket = origin.bucket();
        match self.batch.buckets.last_mut() {
            Some((b, count)) if same_bucket(b.as_ref(), bucket) => *count += 1,
            _ => self.batch.buckets.push((bucket.cloned(), 1)),
        }
    }

    pub fn mark(&self) -> Mark {
        Mark {
            bytes: self.batch.bytes.len(),
            spans: self.batch.spans.len(),
            owners: self.batch.owners.len(),
            last_owner_count: self.batch.owners.last().map_or(0, |o| o.1),
            buckets: self.batch.buckets.len(),
            last_bucket_count: self.batch.buckets.last().map_or(0, |b| b.1),
        }
    }

    /// Forgets everything pushed since `mark`.
    pub fn rollback(&mut self, mark: Mark) {
        self.batch.bytes.truncate(mark.bytes);
        self.batch.spans.truncate(mark.spans);
        self.batch.owners.truncate(mark.owners);
        if let Some(last) = self.batch.owners.last_mut() {
            last.1 = mark.last_owner_count;
        }
        self.batch.buckets.truncate(mark.buckets);
        if let Some(last) = self.batch.buckets.last_mut() {
            last.1 = mark.last_bucket_count;
        }
    }

    /// Bytes formatted so far.
    pub fn bytes(&self) -> usize {
        self.batch.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Lines pushed so far.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Takes the batch, leaving an empty one that reserves the width of `next_seq` for its
    /// sequence numbers: `spare` (an emptied batch the writer handed back) or, without one, a
    /// new one with as much room as the batch taken had.
    pub fn take(&mut self, next_seq: u64, spare: Option<Batch>) -> Batch {
        let loop_id = self.batch.loop_id;
        let next = spare.unwrap_or_else(|| Batch {
            bytes: Vec::with_capacity(self.batch.bytes.capacity()),
            spans: Vec::with_capacity(self.batch.spans.capacity()),
            ..Batch::default()
        });
        std::mem::replace(
            &mut self.batch,
            Batch {
                loop_id,
                seq_width: decimal_width(next_seq),
                ..next
            },
        )
    }
}

/// What the writer thread is told.
pub enum Command {
    Write(Batch),
    /// SIGHUP: reopen the active files (an external logrotate moved them).
    Reopen,
    /// Loop `n` has sent its last batch (shutdown).
    LoopDone(usize),
}
