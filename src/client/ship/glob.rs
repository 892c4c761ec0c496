//! The `--glob` pattern: a literal directory and a file-name pattern with `*`, `?` and `[...]`.
//!
//! Written here rather than taken from the `glob` crate: the transmitter lists one directory
//! anyway (to find renamed files by inode, see `scan.rs`), so all it needs is a name matcher, some
//! fifty lines; a crate would also walk directories we do not want walked. Wildcards in the
//! directory part (`/var/log/*/app.log`) are refused with a clear error rather than half
//! supported.

use std::path::{Path, PathBuf};

/// A parsed `--glob`: the directory to list and the pattern its entries' names must match.
#[derive(Debug, Clone)]
pub struct Glob {
    dir: PathBuf,
    name: Vec<u8>,
}

impl Glob {
    /// Splits `pattern` into its directory (`.` when it has none) and file-name pattern.
    ///
    /// # Errors
    ///
    /// A wildcard in the directory part, an empty file-name part, or an unclosed `[`.
    pub fn parse(pattern: &str) -> Result<Glob, String> {
        let path = Path::new(pattern);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|_| !pattern.ends_with('/'))
            .ok_or_else(|| {
                format!("--glob {pattern:?}: no file-name pattern after the directory")
            })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if dir.to_string_lossy().contains(['*', '?', '[']) {
            return Err(format!(
                "--glob {pattern:?}: wildcards are allowed in the file name only, not in the directory"
            ));
        }
        let bytes = name.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            i += match bytes[i] {
                b'[' => {
                    class(&bytes[i..], 0)
                        .ok_or_else(|| format!("--glob {pattern:?}: '[' without ']'"))?
                        .1
                }
                _ => 1,
            };
        }
        Ok(Glob {
            dir,
            name: name.as_bytes().to_vec(),
        })
    }

    /// The directory whose entries are matched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a file name matches the pattern. `*` and `?` do not match a leading `.`, as in
    /// the shell (and a stored name may not start with one anyway).
    pub fn matches(&self, name: &[u8]) -> bool {
        if name.first() == Some(&b'.') && self.name.first() != Some(&b'.') {
            return false;
        }
        matches(&self.name, name)
    }
}

/// Iterative wildcard matching with one backtracking point (the last `*`): linear in practice,
/// at worst pattern length times name length, never exponential.
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some(b'[') => {
                if let Some((hit, len)) = class(&pattern[p..], name[n])
                    && hit
                {
                    p += len;
                    n += 1;
                    continue;
                }
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class at the front of `pattern` (`[abc]`, `[a-z]`, `[!x]` or `[^x]`):
/// whether it matched, and the class's length. `None` for a `[` without `]`.
fn class(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let lo = *pattern.get(i)?;
        if lo == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&h| h != b']') {
            hit |= (lo..=pattern[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::parse(pattern).unwrap().matches(name.as_bytes())
    }

    #[test]
    fn stars_questions_and_classes() {
        assert!(m("/var/log/*.log", "app.log"));
        assert!(!m("/var/log/*.log", ".log"));
        assert!(!m("/var/log/*.log", "app.log.1"));
        assert!(m("*.log*", "app.log.1"));
        assert!(m("app-?.log", "app-1.log"));
        assert!(!m("app-?.log", "app-12.log"));
        assert!(m("app-[0-9].log", "app-7.log"));
        assert!(!m("app-[!0-9].log", "app-7.log"));
        assert!(m("app-[]x].log", "app-].log"));
        assert!(m("a*b*c", "aXXbYYbZc"));
        assert!(!m("a*b*c", "aXXbYYbZ"));
        assert!(m("*", "x"));
        assert!(!m("*", ".hidden"));
    }

    #[test]
    fn directory_and_errors() {
        assert_eq!(Glob::parse("/a/b/*.log").unwrap().dir(), Path::new("/a/b"));
        assert_eq!(Glob::parse("*.log").unwrap().dir(), Path::new("."));
        assert!(Glob::parse("/a/*/x.log").is_err());
        assert!(Glob::parse("/a/b/").is_err());
        assert!(Glob::parse("/a/[x.log").is_err());
    }

    #[test]
    fn many_stars_stay_fast() {
        let name = "a".repeat(200);
        assert!(!m(&format!("{}b", "*a".repeat(30)), &name));
    }
}
