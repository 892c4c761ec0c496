//! Buckets: each application's records in their own file set, `<dir>/<app>/_main.log`, and the
//! anonymous ones in `<dir>/_main.log`.
//!
//! This file holds the one rule that decides whether a name may become a directory
//! ([`valid_app_name`]), the instance a connection's records carry ([`default_instance`]) and
//! the start-up scan that finds the buckets already on disk. The writer
//! ([`super::writer`]) owns the open files, their order and their closing.

use std::io;
use std::path::Path;

/// The longest app name: 64 bytes, short enough for any file system's name limit.
pub const MAX_APP_NAME: usize = 64;

/// Whether `name` may name a bucket: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
///
/// The name becomes a directory under `--dir`, so this is the path check: no `/`, no NUL, no
/// `..` or `.` (a name cannot start with a dot), nothing empty, nothing longer than
/// [`MAX_APP_NAME`]. The empty name is not an app: callers treat it as anonymous before asking.
/// Tokens are checked by the same function before they are issued or accepted.
pub fn valid_app_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some((&first, rest)) = bytes.split_first() else {
        return false;
    };
    bytes.len() <= MAX_APP_NAME
        && first.is_ascii_alphanumeric()
        && rest
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The app names of the buckets already in `dir`: subdirectories with a valid name that hold a
/// `_main.log` or rotated file. Anything else in `dir` is not ours and is left alone.
///
/// # Errors
/// The error reading `dir`.
pub fn existing(dir: &Path) -> io::Result<Vec<String>> {
    let mut apps = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(apps),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !valid_app_name(&name) || !entry.file_type()?.is_dir() {
            continue;
        }
        let has_files = std::fs::read_dir(entry.path())?
            .filter_map(Result::ok)
            .any(|f| f.file_name().to_string_lossy().starts_with("_main.log"));
        if has_files {
            apps.push(name);
        }
    }
    apps.sort();
    Ok(apps)
}

/// The instance of a connection's records: the one it names or, for a connection that names an
/// app but no instance, the peer's IP address (a host is the natural instance then; the port
/// would make each connection an instance of its own). Anonymous records keep an empty one, so
/// their lines are unchanged.
pub fn default_instance(app: &str, instance: String, peer: std::net::SocketAddr) -> String {
    if instance.is_empty() && !app.is_empty() {
        peer.ip().to_string()
    } else {
        instance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_that_may_become_directories() {
        for ok in ["billing", "a", "A9", "pod-7.eu_west", "0", &"x".repeat(64)] {
            assert!(valid_app_name(ok), "{ok:?} refused");
        }
        let long = "x".repeat(65);
        for bad in [
            "", ".", "..", "../x", "a/b", "/abs", "a\0b", "\0", ".hidden", "-x", "_x", "a b",
            "a\\b", "é", "a:b", &long,
        ] {
            assert!(!valid_app_name(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_app_without_an_instance_gets_the_peer_ip() {
        let peer = "10.0.0.7:51234".parse().unwrap();
        assert_eq!(default_instance("billing", String::new(), peer), "10.0.0.7");
        assert_eq!(default_instance("billing", "pod-7".into(), peer), "pod-7");
        assert_eq!(default_instance("", String::new(), peer), "");
    }
}
