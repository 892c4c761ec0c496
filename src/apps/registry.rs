//! The registry of issued tokens: an append-only text file next to the secret
//! (`<dir>/.logmill/tokens`), one line per event, for people and for [`Registry::is_revoked`].
//!
//! ```text
//! # logmill token registry: one line per event, appended by `logmill token issue|revoke`
//! issued HbH0Lq2tW0m3sPCd1xPx8A billing 2026-12-01T10:00:00Z 2026-12-31T10:00:00Z
//! issued 9kDzeU1f0Gk7uJx2hJ5vRw payroll 2026-12-01T10:05:00Z never
//! revoked HbH0Lq2tW0m3sPCd1xPx8A 2026-12-02T08:00:00Z
//! ```
//!
//! Tokens themselves are not stored (only their ids), so the file holds nothing that grants
//! access; it is still created with mode 0600, as only the operator has business with it.
//! Lines are appended with one `write` each, so a reader never needs a lock.
//!
//! What this file does not do: verify tokens ([`super::token`]), or hold the secret
//! ([`super::secret`]).

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::token::valid_jti;
use crate::storage::bucket::valid_app_name;

const HEADER: &str =
    "# logmill token registry: one line per event, appended by `logmill token issue|revoke`\n";

/// The registry's path for a secret at `secret`: the file `tokens` beside it.
pub fn path_for(secret: &Path) -> PathBuf {
    secret.with_file_name("tokens")
}

/// One issued token, as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    jti: String,
    app: String,
    issued: u64,
    expires: Option<u64>,
    revoked: Option<u64>,
}

impl Entry {
    pub fn jti(&self) -> &str {
        &self.jti
    }
    pub fn app(&self) -> &str {
        &self.app
    }
    /// Seconds since the epoch.
    pub fn issued(&self) -> u64 {
        self.issued
    }
    /// Seconds since the epoch; `None` never expires.
    pub fn expires(&self) -> Option<u64> {
        self.expires
    }
    /// When it was revoked, seconds since the epoch.
    pub fn revoked(&self) -> Option<u64> {
        self.revoked
    }
}

/// What [`Registry::revoke`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoke {
    /// A `revoked` line was appended.
    Done,
    /// It was already revoked, at this time; nothing was written.
    Already(u64),
}

#[derive(Debug)]
pub enum RegistryError {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    /// A line that is not an event this version writes.
    Malformed {
        path: PathBuf,
        line: usize,
    },
    /// `revoke` of an id that was never issued (a typo, most likely).
    UnknownJti(String),
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::Io { path, error } => {
                write!(
                    f,
                    "cannot use the token registry {}: {error}",
                    path.display()
                )
            }
            RegistryError::Malformed { path, line } => write!(
                f,
                "the token registry {} has a malformed line {line}: fix or remove that line",
                path.display()
            ),
            RegistryError::UnknownJti(jti) => write!(
                f,
                "no token with id {jti:?} was issued (see `logmill token list`)"
            ),
        }
    }
}

impl std::error::Error for RegistryError {}

/// Which version of the file the cache holds. Appends change the length; a file replaced by
/// another (an edit, a restore) changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    ino: u64,
    modified: Option<SystemTime>,
}

/// The registry file and a parsed copy of it, refreshed when the file changes.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    seen: Option<Stamp>,
    entries: Vec<Entry>,
    /// Index into `entries` by jti.
    by_jti: HashMap<String, usize>,
}

impl Registry {
    /// The registry at `path`; nothing is read until it is asked something. A missing file is an
    /// empty registry.
    pub fn new(path: PathBuf) -> Registry {
        Registry {
            path,
            seen: None,
            entries: Vec::new(),
            by_jti: HashMap::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `jti` was revoked, by this process or any other. Costs one `stat`; the file is
    /// re-read only when it changed. Meant once per connection, never per record.
    ///
    /// # Errors
    /// The file cannot be read or has a malformed line. A caller deciding on a token must then
    /// refuse it: a registry it cannot read cannot say the token is not revoked.
    pub fn is_revoked(&mut self, jti: &str) -> Result<bool, RegistryError> {
        self.refresh()?;
        Ok(self
            .by_jti
            .get(jti)
            .is_some_and(|&i| self.entries[i].revoked.is_some()))
    }

    /// Every issued token, in the order issued.
    ///
    /// # Errors
    /// As [`Registry::is_revoked`].
    pub fn entries(&mut self) -> Result<&[Entry], RegistryError> {
        self.refresh()?;
        Ok(&self.entries)
    }

    /// Appends an `issued` line. The caller made the token with these values.
    ///
    /// # Errors
    /// The file cannot be created or written.
    pub fn record_issued(
        &mut self,
        jti: &str,
        app: &str,
        issued: u64,
        expires: Option<u64>,
    ) -> Result<(), RegistryError> {
        debug_assert!(valid_jti(jti) && valid_app_name(app));
        let expires = expires.map_or_else(|| "never".to_owned(), format_time);
        self.append(&format!(
            "issued {jti} {app} {} {expires}\n",
            format_time(issued)
        ))
    }

    /// Appends a `revoked` line for `jti` at time `now`; connections that present the token
    /// after this are refused, in every process reading this registry.
    ///
    /// # Errors
    /// `jti` was never issued, or the file cannot be read or written.
    pub fn revoke(&mut self, jti: &str, now: u64) -> Result<Revoke, RegistryError> {
        self.refresh()?;
        let Some(&i) = self.by_jti.get(jti) else {
            return Err(RegistryError::UnknownJti(jti.to_owned()));
        };
        if let Some(at) = self.entries[i].revoked {
            return Ok(Revoke::Already(at));
        }
        self.append(&format!("revoked {jti} {}\n", format_time(now)))?;
        Ok(Revoke::Done)
    }

    /// Writes `line` at the end of the file in one `write`, creating the file (mode 0600) with
    /// its header line if needed.
    fn append(&mut self, line: &str) -> Result<(), RegistryError> {
        let io = |error| RegistryError::Io {
            path: self.path.clone(),
            error,
        };
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(io)?;
        let empty = file.metadata().map_err(io)?.len() == 0;
        let text = if empty {
            format!("{HEADER}{line}")
        } else {
            line.to_owned()
        };
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(io)
    }

    /// Re-reads the file if it changed since the last read.
    fn refresh(&mut self) -> Result<(), RegistryError> {
        let meta = match fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.seen = None;
                self.entries.clear();
                self.by_jti.clear();
                return Ok(());
            }
            Err(error) => {
                return Err(RegistryError::Io {
                    path: self.path.clone(),
                    error,
                });
            }
        };
        let stamp = Stamp {
            len: meta.len(),
            ino: meta.ino(),
            modified: meta.modified().ok(),
        };
        if self.seen == Some(stamp) {
            return Ok(());
        }
        let text = fs::read_to_string(&self.path).map_err(|error| RegistryError::Io {
            path: self.path.clone(),
            error,
        })?;
        let entries = parse(&text).map_err(|line| RegistryError::Malformed {
            path: self.path.clone(),
            line,
        })?;
        self.by_jti = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.jti.clone(), i))
            .collect();
        self.entries = entries;
        // The stamp of what was read may be newer than `stamp` if a line was appended meanwhile;
        // keeping the older stamp only means one more read next time.
        self.seen = Some(stamp);
        Ok(())
    }
}

/// Parses the registry's text into entries, revocations applied.
///
/// # Errors
/// The number (from 1) of the first malformed line.
fn parse(text: &str) -> Result<Vec<Entry>, usize> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut by_jti: HashMap<&str, usize> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let bad = n + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["issued", jti, app, issued, expires] if valid_jti(jti) && valid_app_name(app) => {
                let issued = parse_time(issued).ok_or(bad)?;
                let expires = match *expires {
                    "never" => None,
                    t => Some(parse_time(t).ok_or(bad)?),
                };
                by_jti.insert(jti, entries.len());
                entries.push(Entry {
                    jti: (*jti).to_owned(),
                    app: (*app).to_owned(),
                    issued,
                    expires,
                    revoked: None,
                });
            }
            ["revoked", jti, at] => {
                let at = parse_time(at).ok_or(bad)?;
                let i = *by_jti.get(jti).ok_or(bad)?;
                entries[i].revoked.get_or_insert(at);
            }
            _ => return Err(bad),
        }
    }
    Ok(entries)
}

/// `2026-12-01T10:00:00Z`.
pub fn format_time(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

fn parse_time(text: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    fn temp_file(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("logmill-registry-{name}-{}", std::process::id()));
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => panic!("{e}"),
            _ => {}
        }
        fs::create_dir_all(&dir).unwrap();
        dir.join("tokens")
    }

    #[test]
    fn issue_and_revoke_are_lines_a_person_reads() {
        let path = temp_file("lines");
        let mut registry = Registry::new(path.clone());
        registry
            .record_issued("j1", "billing", T0, Some(T0 + 86_400))
            .unwrap();
        registry.record_issued("j2", "payroll", T0, None).unwrap();
        assert_eq!(registry.revoke("j1", T0 + 60).unwrap(), Revoke::Done);
        assert_eq!(
            registry.revoke("j1", T0 + 120).unwrap(),
            Revoke::Already(T0 + 60)
        );
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "{HEADER}issued j1 billing 2027-01-15T08:00:00Z 2027-01-16T08:00:00Z\n\
                 issued j2 payroll 2027-01-15T08:00:00Z never\n\
                 revoked j1 2027-01-15T08:01:00Z\n"
            )
        );
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let entries = registry.entries().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].revoked(), Some(T0 + 60));
        assert_eq!(entries[1].expires(), None);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn revoked_by_another_process_is_seen_without_a_restart() {
        let path = temp_file("other");
        let mut server = Registry::new(path.clone());
        assert!(
            !server.is_revoked("j1").unwrap(),
            "no file: nothing revoked"
        );
        let mut cli = Registry::new(path.clone());
        cli.record_issued("j1", "billing", T0, None).unwrap();
        assert!(!server.is_revoked("j1").unwrap());
        // Another Registry, as `logmill token revoke` in another process would be.
        Registry::new(path.clone()).revoke("j1", T0).unwrap();
        assert!(server.is_revoked("j1").unwrap());
        assert!(!server.is_revoked("j2").unwrap());
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn unknown_jti_is_not_revoked_silently() {
        let path = temp_file("unknown");
        let mut registry = Registry::new(path.clone());
        registry.record_issued("j1", "billing", T0, None).unwrap();
        assert!(matches!(
            registry.revoke("j9", T0),
            Err(RegistryError::UnknownJti(_))
        ));
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn malformed_lines_are_errors_with_their_number() {
        assert_eq!(
            parse("# header\n\nissued j a 2027-01-15T08:00:00Z never\n")
                .unwrap()
                .len(),
            1
        );
        for (text, line) in [
            ("hello\n", 1),
            ("# h\nissued j a yesterday never\n", 2),
            ("issued j ../a 2027-01-15T08:00:00Z never\n", 1),
            ("revoked j 2027-01-15T08:00:00Z\n", 1),
            ("issued j a 2027-01-15T08:00:00Z never extra\n", 1),
        ] {
            assert_eq!(parse(text), Err(line), "{text:?}");
        }
    }
}
