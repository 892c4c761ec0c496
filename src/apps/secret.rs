//! The server's signing secret: where it lives, creating it at first use, and refusing one that
//! others can read. Only the operator chooses its path (`--secret-file`, or `--dir`); nothing a
//! client sends names a file here.
//!
//! The file holds raw bytes, used as they are (no trimming): the 32 random bytes logmill writes,
//! or any 32 bytes or more an operator puts there (a mounted Kubernetes secret, say).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Bytes of a new secret: 256 bits, the HMAC-SHA256 output size, as RFC 7518 3.2 asks of HS256
/// keys.
pub const SECRET_LEN: usize = 32;

/// A secret shorter than this is refused: a short HMAC key can be guessed offline from any one
/// token.
pub const MIN_SECRET_LEN: usize = 32;

/// A "secret" larger than this is not one (a log file given by mistake, say).
const MAX_SECRET_LEN: u64 = 4096;

/// The directory under `--dir` that holds the secret and the token registry.
pub use crate::config::STATE_DIR;

/// The secret's path when `--secret-file` is not given: `<dir>/.logmill/secret`.
pub fn default_path(dir: &Path) -> PathBuf {
    crate::config::default_secret_path(dir)
}

/// The signing key. Its bytes never appear in `Debug` output.
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Why the secret cannot be used. Each message says what to do.
#[derive(Debug)]
pub enum SecretError {
    /// Group or others may read or write it.
    TooOpen { path: PathBuf, mode: u32 },
    /// Fewer than [`MIN_SECRET_LEN`] bytes (or empty).
    TooShort { path: PathBuf, len: u64 },
    /// More than 4 KiB.
    TooLong { path: PathBuf, len: u64 },
    /// Not a regular file.
    NotAFile(PathBuf),
    /// The random source failed while making a new secret.
    Random(getrandom::Error),
    /// Reading, creating or writing failed.
    Io { path: PathBuf, error: io::Error },
}

impl std::fmt::Display for SecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretError::TooOpen { path, mode } => write!(
                f,
                "the secret file {} can be read or written by group or others (mode {:04o}); \
                 run `chmod 600 {}`",
                path.display(),
                mode & 0o7777,
                path.display()
            ),
            SecretError::TooShort { path, len } => write!(
                f,
                "the secret file {} holds {len} bytes, fewer than the {MIN_SECRET_LEN} needed; \
                 remove it to have a new one made (tokens signed with it stop working)",
                path.display()
            ),
            SecretError::TooLong { path, len } => write!(
                f,
                "the secret file {} holds {len} bytes, more than {MAX_SECRET_LEN}: is it the \
                 right file?",
                path.display()
            ),
            SecretError::NotAFile(path) => {
                write!(
                    f,
                    "the secret file {} is not a regular file",
                    path.display()
                )
            }
            SecretError::Random(e) => write!(f, "cannot get random bytes for a new secret: {e}"),
            SecretError::Io { path, error } => {
                write!(f, "cannot use the secret file {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for SecretError {}

/// Reads the secret at `path`, creating it first if it does not exist: 32 random bytes, mode
/// 0600, its directory made with mode 0700 if missing (and that directory's parent, `--dir`,
/// with the default mode).
///
/// Creation is atomic: the bytes go to a private temporary file that is then hard-linked to
/// `path`, so two processes starting at once agree on one secret and neither reads a half
/// written one.
///
/// # Errors
/// See [`SecretError`]: a file others can read or write, too short or empty, not a file, or
/// an I/O error.
pub fn load_or_create(path: &Path) -> Result<Secret, SecretError> {
    match load(path) {
        Err(SecretError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
            create(path)?;
            load(path)
        }
        other => other,
    }
}

/// Reads the secret at `path` without creating it.
///
/// # Errors
/// As [`load_or_create`], and `NotFound` if it is missing.
pub fn load(path: &Path) -> Result<Secret, SecretError> {
    let io = |error| SecretError::Io {
        path: path.to_owned(),
        error,
    };
    // The checks are on the opened file, not the path, so they describe what is read.
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(SecretError::NotAFile(path.to_owned()));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(SecretError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    if meta.len() > MAX_SECRET_LEN {
        return Err(SecretError::TooLong {
            path: path.to_owned(),
            len: meta.len(),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_SECRET_LEN)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() < MIN_SECRET_LEN {
        return Err(SecretError::TooShort {
            path: path.to_owned(),
            len: bytes.len() as u64,
        });
    }
    Ok(Secret(bytes))
}

/// Makes a new secret at `path` unless one appears there first.
fn create(path: &Path) -> Result<(), SecretError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| SecretError::Io { path, error }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Some(grand) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(grand).map_err(io(grand))?;
        }
        match DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(dir)(e)),
        }
    }
    let mut bytes = [0u8; SECRET_LEN];
    getrandom::fill(&mut bytes).map_err(SecretError::Random)?;
    let tmp = path.with_file_name(format!(
        ".{}.new-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret"),
        std::process::id()
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_all()
        });
    let linked = written.and_then(|()| match fs::hard_link(&tmp, path) {
        // Another process made it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let removed = fs::remove_file(&tmp);
    linked.map_err(io(path))?;
    removed.map_err(io(&tmp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("logmill-secret-{name}-{}", std::process::id()));
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => panic!("{e}"),
            _ => {}
        }
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_at_first_use_with_mode_0600_in_a_0700_dir() {
        let dir = temp_dir("create");
        let path = default_path(&dir.join("logs"));
        let secret = load_or_create(&path).unwrap();
        assert_eq!(secret.as_bytes().len(), SECRET_LEN);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // The second use reads the same bytes and leaves no temporary file behind.
        let again = load_or_create(&path).unwrap();
        assert_eq!(secret.as_bytes(), again.as_bytes());
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        assert!(!format!("{secret:?}").contains(&format!("{:?}", secret.as_bytes())));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn readable_by_others_refused_with_the_fix() {
        let dir = temp_dir("open");
        let path = dir.join("secret");
        fs::write(&path, [7u8; 32]).unwrap();
        for open in [0o644, 0o640, 0o604, 0o660, 0o602] {
            fs::set_permissions(&path, fs::Permissions::from_mode(open)).unwrap();
            let e = load_or_create(&path).unwrap_err();
            assert!(matches!(e, SecretError::TooOpen { .. }), "{open:o}: {e}");
            let message = e.to_string();
            assert!(
                message.contains(&format!("chmod 600 {}", path.display())),
                "{message}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(load(&path).unwrap().as_bytes(), &[7u8; 32]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn short_or_empty_secret_refused() {
        let dir = temp_dir("short");
        let path = dir.join("secret");
        for len in [0, 1, MIN_SECRET_LEN - 1] {
            fs::write(&path, vec![b'x'; len]).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let e = load_or_create(&path).unwrap_err();
            assert!(matches!(e, SecretError::TooShort { .. }), "{len}: {e}");
        }
        fs::write(&path, vec![b'x'; 5000]).unwrap();
        assert!(matches!(load(&path), Err(SecretError::TooLong { .. })));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_directory_is_not_a_secret() {
        let dir = temp_dir("notfile");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(load(&dir), Err(SecretError::NotAFile(_))));
        fs::remove_dir_all(dir).unwrap();
    }
}
