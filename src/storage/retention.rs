//! What the forwarders have not read yet, asked by the writer before it deletes a file.
//!
//! The rule (`--forward-max-lag`): a rotation that would delete the oldest file (past
//! `--max-files`) keeps it instead while some `--forward` sink has not acknowledged every record
//! in it, as long as the files kept this way (those past `--max-files`) weigh no more than
//! `--forward-max-lag` bytes. Past that, the oldest file is deleted anyway, the loss is counted
//! ([`Retention::dropped_files`], `/metrics`) and logged as an error: a sink that is down must
//! never fill the disk and stop ingestion. Without a sink, files rotate exactly as before.
//!
//! The forwarders tell this what each acknowledged ([`Retention::set_acked`], once per batch);
//! the writer asks once per rotation ([`Hold::keeps`]). A mutex taken that rarely costs nothing;
//! the record path never touches it.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Shared between the forwarders and the writer.
#[derive(Debug, Default)]
pub struct Retention {
    sinks: usize,
    max_lag: u64,
    /// Per bucket, what each sink acknowledged (indexed by sink).
    acked: Mutex<HashMap<String, Vec<u64>>>,
    dropped_files: AtomicU64,
    dropped_bytes: AtomicU64,
}

impl Retention {
    /// For `sinks` forwarders (0: nothing is ever held) and `--forward-max-lag` bytes.
    pub fn new(sinks: usize, max_lag: u64) -> Retention {
        Retention {
            sinks,
            max_lag,
            ..Retention::default()
        }
    }

    /// Whether some sink may hold files (a file set gets a [`Hold`] only then).
    pub fn active(&self) -> bool {
        self.sinks > 0
    }

    /// Sink `sink` acknowledged `bucket`'s records up to `seq`.
    pub fn set_acked(&self, sink: usize, bucket: &str, seq: u64) {
        if sink >= self.sinks {
            return;
        }
        if let Ok(mut acked) = self.acked.lock() {
            let per_sink = acked
                .entry(bucket.to_string())
                .or_insert_with(|| vec![0; self.sinks]);
            per_sink[sink] = per_sink[sink].max(seq);
        }
    }

    /// The highest number every sink acknowledged in `bucket` (0 when one has nothing).
    pub fn floor(&self, bucket: &str) -> u64 {
        let Ok(acked) = self.acked.lock() else {
            return 0;
        };
        acked
            .get(bucket)
            .and_then(|per_sink| per_sink.iter().min().copied())
            .unwrap_or(0)
    }

    /// Files deleted before every sink had read them (over `--forward-max-lag`).
    pub fn dropped_files(&self) -> u64 {
        self.dropped_files.load(Ordering::Relaxed)
    }

    /// Their bytes.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes.load(Ordering::Relaxed)
    }
}

/// One bucket's view of the [`Retention`], held by its file set.
#[derive(Clone, Debug)]
pub struct Hold {
    retention: Arc<Retention>,
    bucket: String,
}

/// What [`Hold::keeps`] decided about the oldest file.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every sink read it (or there is no sink): delete it as usual.
    Delete,
    /// A sink has not read it and the files held are within the bound: keep it.
    Keep,
    /// A sink has not read it, but keeping it would pass `--forward-max-lag`: delete it anyway;
    /// the sentence says what was lost, for the server's log.
    Drop(String),
}

impl Hold {
    pub fn new(retention: Arc<Retention>, bucket: &str) -> Hold {
        Hold {
            retention,
            bucket: bucket.to_string(),
        }
    }

    /// Whether the oldest file, `oldest`, may go: `next_first` is the first sequence number
    /// of the file just newer (every record of `oldest` is below it; `None` when unknown), and
    /// `held` the bytes of the files already past `--max-files` plus `oldest`'s.
    ///
    /// # Errors
    /// The error reading `oldest`'s size.
    pub fn keeps(&self, oldest: &Path, next_first: Option<u64>, held: u64) -> io::Result<Decision> {
        let r = &self.retention;
        if r.sinks == 0 {
            return Ok(Decision::Delete);
        }
        let floor = r.floor(&self.bucket);
        if next_first.is_some_and(|next| next <= floor.saturating_add(1)) {
            return Ok(Decision::Delete);
        }
        if held <= r.max_lag {
            return Ok(Decision::Keep);
        }
        let bytes = fs::metadata(oldest)?.len();
        r.dropped_files.fetch_add(1, Ordering::Relaxed);
        r.dropped_bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(Decision::Drop(format!(
            "DELETED {} ({bytes} bytes) BEFORE EVERY --forward SINK READ IT: the files held for \
             the sinks passed --forward-max-lag ({} bytes); the sinks acknowledged bucket {} up to \
             sequence number {floor}, and the records of this file are lost to the sink that \
             has not ({} dropped so far)",
            oldest.display(),
            r.max_lag,
            self.bucket,
            r.dropped_files()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_kept_while_unread_and_within_the_bound() {
        let file = std::env::temp_dir().join(format!("logmill-retention-{}", std::process::id()));
        fs::write(&file, b"0123456789").unwrap();
        let none = Hold::new(Arc::new(Retention::new(0, 0)), "_main");
        assert_eq!(none.keeps(&file, Some(5), 10).unwrap(), Decision::Delete);
        let r = Arc::new(Retention::new(2, 100));
        let hold = Hold::new(r.clone(), "_main");
        // Neither sink read records 1..=4 of the file.
        assert_eq!(hold.keeps(&file, Some(5), 10).unwrap(), Decision::Keep);
        r.set_acked(0, "_main", 4);
        assert_eq!(hold.keeps(&file, Some(5), 10).unwrap(), Decision::Keep);
        r.set_acked(1, "_main", 4);
        assert_eq!(hold.keeps(&file, Some(5), 10).unwrap(), Decision::Delete);
        // Unread, and over the bound: deleted anyway, counted.
        assert!(matches!(
            hold.keeps(&file, Some(9), 101).unwrap(),
            Decision::Drop(why) if why.contains("--forward-max-lag")
        ));
        assert_eq!((r.dropped_files(), r.dropped_bytes()), (1, 10));
        fs::remove_file(&file).unwrap();
    }
}
