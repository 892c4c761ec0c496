//! The transmitter's state file: which file (by device, inode and birth time) is shipped under
//! which stored name, and the next generation number of each local name. This is what a
//! restarted transmitter needs to keep shipping a rotated file under its old name and a new file
//! under a new one; offsets are not kept here, the receiver's answer is the truth.
//!
//! The format is text, one record a line, fields separated by tabs (a stored name never holds a
//! tab: `protocol::ship::validate_name` refuses control bytes):
//!
//! ```text
//! logmill-ship-state 1
//! file <dev> <ino> <born> <generation> <origin> <stored>
//! next <origin> <generation>
//! ```
//!
//! Saved atomically: written to `<file>.tmp`, fsynced, renamed over the file, so a crash leaves
//! the old state or the new one, never half of one.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

const HEADER: &str = "logmill-ship-state 1";

/// A file's identity: its device and inode, and its birth time (nanoseconds since the epoch, 0
/// where the file system does not say), so an inode number reused by a new file while the
/// transmitter was down is not taken for the old file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) born: u128,
}

/// What the state remembers of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name the file had when first seen: rotation's new files share it.
    pub(super) origin: String,
    /// The name it is shipped under.
    pub(super) stored: String,
    /// 0 for the first file of an origin (stored under the origin itself), then 1, 2, ...
    pub(super) generation: u64,
}

/// The whole state: entries by identity, and the next generation of each origin, which only
/// grows, so a stored name is never handed to a second file.
#[derive(Debug, Default)]
pub struct State {
    path: PathBuf,
    files: HashMap<Identity, Entry>,
    next: HashMap<String, u64>,
    dirty: bool,
}

impl State {
    /// Reads the state at `path`; a missing file is an empty state.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or is not a state file (a clear message naming the line).
    pub fn load(path: &Path) -> Result<State, String> {
        let mut state = State {
            path: path.to_path_buf(),
            ..State::default()
        };
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(state),
            Err(e) => {
                return Err(format!(
                    "cannot read the state file {}: {e}",
                    path.display()
                ));
            }
        };
        let bad = |n: usize| {
            format!(
                "state file {}: line {} is not understood",
                path.display(),
                n + 1
            )
        };
        let mut lines = text.lines().enumerate();
        if lines.next().map(|(_, l)| l) != Some(HEADER) {
            return Err(bad(0));
        }
        for (n, line) in lines {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["file", dev, ino, born, generation, origin, stored] => {
                    let id = Identity {
                        dev: dev.parse().map_err(|_| bad(n))?,
                        ino: ino.parse().map_err(|_| bad(n))?,
                        born: born.parse().map_err(|_| bad(n))?,
                    };
                    let entry = Entry {
                        origin: (*origin).to_owned(),
                        stored: (*stored).to_owned(),
                        generation: generation.parse().map_err(|_| bad(n))?,
                    };
                    state.files.insert(id, entry);
                }
                ["next", origin, generation] => {
                    let generation = generation.parse().map_err(|_| bad(n))?;
                    state.next.insert((*origin).to_owned(), generation);
                }
                _ => return Err(bad(n)),
            }
        }
        Ok(state)
    }

    /// The identities the state remembers.
    pub fn ids(&self) -> impl Iterator<Item = &Identity> {
        self.files.keys()
    }

    pub fn get(&self, id: &Identity) -> Option<&Entry> {
        self.files.get(id)
    }

    /// Gives `id`, first seen as `origin`, the next stored name of that origin: `origin` itself
    /// the first time, then `origin~1`, `origin~2`, ... (also after a truncation of the same
    /// file). Never a name given before, as long as the state file is kept.
    pub fn assign(&mut self, id: Identity, origin: &str) -> &Entry {
        let next = self.next.entry(origin.to_owned()).or_insert(0);
        let mut generation = *next;
        let mut stored = stored_name(origin, generation);
        // A local file may itself be called like a generation of another (`app.log~1`): skip
        // any name some other file already has, so two files never share one stored copy.
        while self
            .files
            .iter()
            .any(|(other, e)| *other != id && e.stored == stored)
        {
            generation += 1;
            stored = stored_name(origin, generation);
        }
        *next = generation + 1;
        self.dirty = true;
        self.files.insert(
            id,
            Entry {
                origin: origin.to_owned(),
                stored,
                generation,
            },
        );
        &self.files[&id]
    }

    /// Forgets a file that is gone and fully shipped (its origin's counter stays).
    pub fn forget(&mut self, id: &Identity) {
        if self.files.remove(id).is_some() {
            self.dirty = true;
        }
    }

    /// Writes the state if it changed since the last save: `<path>.tmp`, fsync, rename.
    ///
    /// # Errors
    ///
    /// The directory or the file cannot be written.
    pub fn save(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut text = format!("{HEADER}\n");
        let mut files: Vec<_> = self.files.iter().collect();
        files.sort_by_key(|(id, _)| **id);
        for (id, e) in files {
            text.push_str(&format!(
                "file\t{}\t{}\t{}\t{}\t{}\t{}\n",
                id.dev, id.ino, id.born, e.generation, e.origin, e.stored
            ));
        }
        let mut next: Vec<_> = self.next.iter().collect();
        next.sort();
        for (origin, n) in next {
            text.push_str(&format!("next\t{origin}\t{n}\n"));
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        self.dirty = false;
        Ok(())
    }
}

/// The stored name of an origin's `generation`: the origin itself, then `origin~N`.
fn stored_name(origin: &str, generation: u64) -> String {
    match generation {
        0 => origin.to_owned(),
        n => format!("{origin}~{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("logmill-ship-state-{tag}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir.join("ship.state")
    }

    #[test]
    fn names_are_never_reused_and_survive_a_reload() {
        let path = temp("reload");
        let a = Identity {
            dev: 1,
            ino: 10,
            born: 5,
        };
        let b = Identity {
            dev: 1,
            ino: 11,
            born: 6,
        };
        let mut state = State::load(&path).unwrap();
        assert_eq!(state.assign(a, "app.log").stored, "app.log");
        assert_eq!(state.assign(b, "app.log").stored, "app.log~1");
        assert_eq!(state.assign(a, "app.log").stored, "app.log~2");
        state.forget(&b);
        state.save().unwrap();
        let mut again = State::load(&path).unwrap();
        assert_eq!(again.get(&a).unwrap().stored, "app.log~2");
        assert!(again.get(&b).is_none());
        assert_eq!(again.assign(b, "app.log").stored, "app.log~3");
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let path = temp("foreign");
        fs::write(&path, "not a state\n").unwrap();
        assert!(State::load(&path).unwrap_err().contains("line 1"));
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
