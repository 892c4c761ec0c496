//! The durable checkpoint of one sink: per bucket, the highest sequence number the sink
//! acknowledged, in `<dir>/.logmill/forward-<sink id>.json`.
//!
//! Written atomically (a temporary file, `fsync`, `rename`, then an `fsync` of the directory),
//! so a crash at any point leaves the old checkpoint or the new one, never half of one. The
//! checkpoint only ever moves after the sink said yes, so a restart resends at most the batch
//! that was in flight: at least once, never a gap.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json, json};

/// The most a state file may weigh: it holds one number per bucket, and a bucket name is at
/// most 64 bytes, so 10 000 buckets fit in well under this.
const MAX_STATE_FILE: u64 = 4 * 1024 * 1024;

/// Per bucket, the last sequence number the sink acknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    acked: BTreeMap<String, u64>,
}

impl Checkpoint {
    /// The last acknowledged number of `bucket` (0: nothing yet).
    pub fn acked(&self, bucket: &str) -> u64 {
        self.acked.get(bucket).copied().unwrap_or(0)
    }

    /// Records that the sink acknowledged `bucket`'s records up to `seq` (never moves back).
    pub fn advance(&mut self, bucket: &str, seq: u64) {
        let at = self.acked.entry(bucket.to_string()).or_insert(0);
        *at = (*at).max(seq);
    }

    pub fn buckets(&self) -> impl Iterator<Item = (&str, u64)> {
        self.acked.iter().map(|(b, &s)| (b.as_str(), s))
    }

    /// Reads the checkpoint at `path`; an empty one when the file does not exist (a new sink).
    ///
    /// # Errors
    /// A read error, or a file that is not a checkpoint (refused rather than guessed at: a
    /// wrong guess would resend or skip records).
    pub fn load(path: &Path) -> io::Result<Checkpoint> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Checkpoint::default()),
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() > MAX_STATE_FILE {
            return Err(invalid(path, "larger than a checkpoint can be"));
        }
        let json: Json = serde_json::from_reader(io::BufReader::new(file))
            .map_err(|e| invalid(path, &e.to_string()))?;
        let mut checkpoint = Checkpoint::default();
        let Some(buckets) = json.get("buckets").and_then(Json::as_object) else {
            return Err(invalid(path, "no \"buckets\" object"));
        };
        for (bucket, seq) in buckets {
            let seq = seq
                .as_u64()
                .ok_or_else(|| invalid(path, "a sequence number is not a number"))?;
            checkpoint.acked.insert(bucket.clone(), seq);
        }
        Ok(checkpoint)
    }

    /// Writes the checkpoint to `path`: tmp + fsync + rename + fsync of the directory.
    ///
    /// # Errors
    /// The first failing create, write, sync or rename.
    pub fn save(&self, path: &Path, sink: &str) -> io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let mut buckets = Map::new();
        for (bucket, seq) in &self.acked {
            buckets.insert(bucket.clone(), json!(seq));
        }
        let text = json!({"sink": sink, "buckets": buckets}).to_string();
        let tmp = tmp_path(path);
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn invalid(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} is not a forwarding checkpoint: {why}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_survives_a_save_and_load_and_never_moves_back() {
        let dir = std::env::temp_dir().join(format!("logmill-ckpt-{}", std::process::id()));
        let path = dir.join(".logmill/forward-x.json");
        assert_eq!(Checkpoint::load(&path).unwrap(), Checkpoint::default());
        let mut c = Checkpoint::default();
        c.advance("_main", 10);
        c.advance("billing", 7);
        c.advance("_main", 3);
        c.save(&path, "clickhouse+http://h:8123/db.t").unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back.acked("_main"), 10);
        assert_eq!(back.acked("billing"), 7);
        assert_eq!(back.acked("other"), 0);
        assert!(!tmp_path(&path).exists());
        fs::write(&path, "{\"buckets\":{\"_main\":\"x\"}}").unwrap();
        assert!(Checkpoint::load(&path).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
