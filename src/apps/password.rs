//! The admin password: hashed with argon2id (a random 16-byte salt, the PHC string
//! `$argon2id$v=19$m=..,t=..,p=..$salt$hash`), kept in `<dir>/.logmill/admin_password` (mode
//! 0600, or the file `--admin-password-file` names), written by `logmill admin set-password`
//! and read by the server at each login (so a new password works without a restart).
//!
//! What is not here: sessions, rate limits and HTTP (see `server::session::http::console::auth`).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};

/// argon2id memory cost in KiB: 19 MiB, t=2, p=1 is OWASP's first recommended setting. On this
/// project's 2-core test machine one hash or verify takes about 25 ms (optimised build; see the
/// README's "Control panel"): slow enough that a stolen file costs an attacker that per guess,
/// short enough to run on an event loop thread at the few logins a second the rate limit lets
/// through ((`server::session::http::console::auth`)).
pub const M_COST_KIB: u32 = 19 * 1024;
/// argon2id passes over the memory.
pub const T_COST: u32 = 2;
/// argon2id lanes: 1, as the server verifies on one thread.
pub const P_COST: u32 = 1;
/// Salt bytes (RFC 9106 recommends 16).
const SALT_LEN: usize = 16;

/// Shortest password `set-password` accepts, in characters.
pub const MIN_LEN: usize = 8;
/// Longest password accepted anywhere (set-password and login): bounds the work per attempt.
pub const MAX_LEN: usize = 1024;
/// A password file larger than this is not one.
const MAX_FILE_LEN: u64 = 1024;

/// The file's name under `<dir>/.logmill/`.
pub const FILE_NAME: &str = "admin_password";

/// The password file's path when `--admin-password-file` is not given.
pub fn default_path(dir: &Path) -> PathBuf {
    dir.join(crate::config::STATE_DIR).join(FILE_NAME)
}

/// Why the password cannot be set or checked. Each message says what to do.
#[derive(Debug)]
pub enum PasswordError {
    /// No password file: the console has no admin yet.
    Missing(PathBuf),
    /// Group or others may read or write the file.
    TooOpen {
        path: PathBuf,
        mode: u32,
    },
    /// The file does not hold an argon2 PHC string.
    Malformed(PathBuf),
    /// A new password shorter than [`MIN_LEN`] or longer than [`MAX_LEN`].
    Length(usize),
    /// The random source failed (the salt).
    Random(getrandom::Error),
    /// argon2 refused its input (cannot happen with the constants above).
    Hash(String),
    Io {
        path: PathBuf,
        error: io::Error,
    },
}

impl std::fmt::Display for PasswordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordError::Missing(path) => write!(
                f,
                "no admin password is set ({} does not exist): run `logmill admin set-password`",
                path.display()
            ),
            PasswordError::TooOpen { path, mode } => write!(
                f,
                "the admin password file {} can be read or written by group or others (mode \
                 {:04o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o7777,
                path.display()
            ),
            PasswordError::Malformed(path) => write!(
                f,
                "the admin password file {} does not hold an argon2 hash: write it with \
                 `logmill admin set-password`",
                path.display()
            ),
            PasswordError::Length(n) => write!(
                f,
                "a password of {n} characters: give {MIN_LEN} to {MAX_LEN} characters"
            ),
            PasswordError::Random(e) => write!(f, "cannot get random bytes for a salt: {e}"),
            PasswordError::Hash(e) => write!(f, "argon2: {e}"),
            PasswordError::Io { path, error } => write!(
                f,
                "cannot use the admin password file {}: {error}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for PasswordError {}

fn hasher() -> Argon2<'static> {
    // The constants are valid argon2 parameters (the unit test hashes with them).
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).unwrap_or(Params::DEFAULT);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// `password` hashed with argon2id and a new random salt, as a PHC string.
///
/// # Errors
/// A password of the wrong length, or the random source failed.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let chars = password.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&chars) {
        return Err(PasswordError::Length(chars));
    }
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(PasswordError::Random)?;
    hasher()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|phc| phc.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `phc`. The parameters are the string's own (a
/// file written with other costs still verifies); the comparison of the outputs is argon2's,
/// in constant time. A password over [`MAX_LEN`] bytes is refused without hashing.
pub fn verify(password: &[u8], phc: &str) -> bool {
    password.len() <= MAX_LEN * 4 && hasher().verify_password(password, phc).is_ok()
}

/// Writes `phc` to `path` (mode 0600) atomically: a private temporary file renamed over it, its
/// directory made (0700) if missing.
///
/// # Errors
/// The directory or file cannot be made or written.
pub fn store(path: &Path, phc: &str) -> Result<(), PasswordError> {
    let io = |error| PasswordError::Io {
        path: path.to_owned(),
        error,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io)?;
    }
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp{}", std::process::id()));
    let temp = path.with_file_name(name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        // An existing temporary file keeps its mode: make sure.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(format!("{phc}\n").as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ignored_cleanup = fs::remove_file(&temp);
    }
    written.map_err(io)
}

/// The PHC string in the file at `path`, checked: a regular file only its owner can read, a
/// `$argon2` string.
///
/// # Errors
/// See [`PasswordError`]; `Missing` if there is no file.
pub fn load(path: &Path) -> Result<String, PasswordError> {
    let io = |error: io::Error| {
        if error.kind() == io::ErrorKind::NotFound {
            PasswordError::Missing(path.to_owned())
        } else {
            PasswordError::Io {
                path: path.to_owned(),
                error,
            }
        }
    };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(PasswordError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    if !meta.is_file() || meta.len() > MAX_FILE_LEN {
        return Err(PasswordError::Malformed(path.to_owned()));
    }
    let mut text = String::new();
    file.take(MAX_FILE_LEN)
        .read_to_string(&mut text)
        .map_err(|_| PasswordError::Malformed(path.to_owned()))?;
    let phc = text.trim();
    if !phc.starts_with("$argon2") {
        return Err(PasswordError::Malformed(path.to_owned()));
    }
    Ok(phc.to_owned())
}

/// Options of `logmill admin`.
#[derive(clap::Args, Clone, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Subcommand, Clone, Debug)]
enum AdminCommand {
    /// Set the control panel's admin password: read from standard input twice (once from a
    /// pipe: `echo "$PW" | logmill admin set-password`), stored as an argon2id hash.
    SetPassword {
        /// The server's directory; the hash goes to <DIR>/.logmill/admin_password.
        #[arg(long, default_value = crate::config::defaults::DIR, conflicts_with = "file")]
        dir: PathBuf,
        /// Write the hash to this file instead (give the same to `serve
        /// --admin-password-file`).
        #[arg(long = "admin-password-file", value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// Why `logmill admin` failed.
#[derive(Debug)]
pub enum AdminError {
    Password(PasswordError),
    /// Standard input ended before a password, or could not be read.
    NoInput(Option<io::Error>),
    /// The two entries differ.
    Mismatch,
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Password(e) => e.fmt(f),
            AdminError::NoInput(None) => f.write_str("no password on standard input"),
            AdminError::NoInput(Some(e)) => write!(f, "cannot read standard input: {e}"),
            AdminError::Mismatch => f.write_str("the two passwords differ; nothing was changed"),
        }
    }
}

impl std::error::Error for AdminError {}

/// Runs `logmill admin ...`: reads the password from `input` (a second line, if there is one,
/// must repeat it; `prompt` writes the prompts to `err`, for a terminal), hashes and stores it,
/// and says where on `err`.
///
/// # Errors
/// See [`AdminError`].
pub fn run(
    args: &AdminArgs,
    input: &mut dyn io::BufRead,
    prompt: bool,
    err: &mut dyn io::Write,
) -> Result<(), AdminError> {
    let AdminCommand::SetPassword { dir, file } = &args.command;
    let path = file.clone().unwrap_or_else(|| default_path(dir));
    let mut read = |what: &str| -> Result<Option<String>, AdminError> {
        if prompt {
            write!(err, "{what}: ").map_err(|e| AdminError::NoInput(Some(e)))?;
            err.flush().map_err(|e| AdminError::NoInput(Some(e)))?;
        }
        let mut line = String::new();
        // Bounded: a password is at most MAX_LEN characters of up to 4 bytes.
        let n = io::BufRead::read_line(&mut input.take((MAX_LEN * 4 + 2) as u64), &mut line)
            .map_err(|e| AdminError::NoInput(Some(e)))?;
        if prompt {
            writeln!(err).map_err(|e| AdminError::NoInput(Some(e)))?;
        }
        Ok((n > 0).then(|| line.trim_end_matches(['\r', '\n']).to_owned()))
    };
    let first = read("New admin password")?.ok_or(AdminError::NoInput(None))?;
    if first.is_empty() {
        return Err(AdminError::NoInput(None));
    }
    match read("Again")? {
        Some(again) if again != first => return Err(AdminError::Mismatch),
        None if prompt => return Err(AdminError::Mismatch),
        _ => {}
    }
    let phc = hash(&first).map_err(AdminError::Password)?;
    store(&path, &phc).map_err(AdminError::Password)?;
    writeln!(
        err,
        "admin password set in {} (argon2id); log in at http://<host>:4021/",
        path.display()
    )
    .map_err(|e| AdminError::NoInput(Some(e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn hash_verify_store_load() {
        // The figure the README quotes (printed, not asserted: no timing assertions): wall time,
        // and this thread's time on a CPU (schedstat's first field, ns), which a loaded machine
        // does not inflate.
        let cpu = || {
            fs::read_to_string("/proc/thread-self/schedstat")
                .ok()
                .and_then(|s| s.split(' ').next()?.parse::<u64>().ok())
        };
        let (started, cpu_before) = (Instant::now(), cpu());
        let phc = hash("correct horse").unwrap();
        for _ in 0..4 {
            assert!(verify(b"correct horse", &phc));
        }
        let on_cpu = cpu().zip(cpu_before).map(|(a, b)| (a - b) / 5 / 1_000_000);
        println!(
            "argon2id: {:?} wall, {on_cpu:?} ms on a CPU, per hash or verify",
            started.elapsed() / 5
        );
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(b"correct horse", &phc));
        assert!(!verify(b"correct horsE", &phc));
        assert!(!verify(b"", &phc));
        assert!(!verify(b"correct horse", "not a hash"));
        // A new salt each time.
        assert_ne!(hash("correct horse").unwrap(), phc);
        assert!(matches!(hash("short"), Err(PasswordError::Length(5))));
        assert!(hash(&"x".repeat(MAX_LEN + 1)).is_err());

        let dir = std::env::temp_dir().join(format!("logmill-password-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = default_path(&dir);
        assert!(matches!(load(&path), Err(PasswordError::Missing(_))));
        store(&path, &phc).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(&path).unwrap(), phc);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load(&path), Err(PasswordError::TooOpen { .. })));
        fs::write(&path, "plain text\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load(&path), Err(PasswordError::Malformed(_))));
        // Storing again replaces it (and fixes the mode).
        store(&path, &phc).unwrap();
        assert_eq!(load(&path).unwrap(), phc);
        fs::remove_dir_all(dir).unwrap();
    }
}
