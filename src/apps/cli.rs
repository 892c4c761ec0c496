//! `logmill token issue|list|revoke`: the operator's side of application tokens. Each command
//! works on files only (the secret and the registry); none talks to a running server, which
//! reads the registry itself.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use super::registry::{self, Registry, RegistryError, Revoke, format_time};
use super::secret::{self, SecretError};
use super::token::{self, IssueError};
use crate::config::{self, defaults};

/// Options of `logmill token`.
#[derive(Args, Clone, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand, Clone, Debug)]
enum TokenCommand {
    /// Make a token for an app and print it (its id and expiry go to standard error).
    Issue {
        /// The app the token names: 1 to 64 letters, digits, '.', '_' or '-', starting with a
        /// letter or digit.
        #[arg(long)]
        app: String,
        /// Lifetime (e.g. 30d, 12h); without it the token does not expire (revoke it to end it).
        #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
        expires: Option<Duration>,
        /// Also open the admin API of the HTTP port (`/v1/status`): the token carries
        /// `"admin": true`. Give it to operators, not to applications.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        place: Place,
    },
    /// Print every issued token: id, app, issued, expires, revoked.
    List {
        #[command(flatten)]
        place: Place,
    },
    /// Revoke a token by its id: connections presenting it are refused from then on.
    Revoke {
        /// The token's id (`jti`), as `logmill token list` shows it.
        jti: String,
        #[command(flatten)]
        place: Place,
    },
}

/// Where the secret (and the registry beside it) lives.
#[derive(Args, Clone, Debug)]
struct Place {
    /// The server's directory; the secret is <DIR>/.logmill/secret.
    #[arg(long, default_value = defaults::DIR, conflicts_with = "secret_file")]
    dir: PathBuf,
    /// The secret file, if not the one under --dir; the registry is the file `tokens` beside it.
    #[arg(long = "secret-file", value_name = "PATH")]
    secret_file: Option<PathBuf>,
}

impl Place {
    fn secret(&self) -> PathBuf {
        self.secret_file
            .clone()
            .unwrap_or_else(|| secret::default_path(&self.dir))
    }
}

/// Why a `logmill token` command failed.
#[derive(Debug)]
pub enum CliError {
    Secret(SecretError),
    Registry(RegistryError),
    Issue(IssueError),
    Random(getrandom::Error),
    /// `--expires 0`, or so long the expiry would not fit.
    Expires(Duration),
    Output(io::Error),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Secret(e) => e.fmt(f),
            CliError::Registry(e) => e.fmt(f),
            CliError::Issue(e) => e.fmt(f),
            CliError::Random(e) => write!(f, "cannot get random bytes for a token id: {e}"),
            CliError::Expires(d) => write!(
                f,
                "--expires {d:?} is not a usable lifetime: give at least 1s, or leave it out \
                 for a token that does not expire"
            ),
            CliError::Output(e) => write!(f, "cannot write the answer: {e}"),
        }
    }
}

impl std::error::Error for CliError {}

/// Runs one `logmill token` command, writing its answer to `out` and notes to `err`.
///
/// # Errors
/// See [`CliError`]; the message says what to do.
pub fn run(args: &TokenArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    let now = now();
    match &args.command {
        TokenCommand::Issue {
            app,
            expires,
            admin,
            place,
        } => {
            let issued = issue(&place.secret(), app, *expires, *admin, now)?;
            writeln!(out, "{}", issued.token).map_err(CliError::Output)?;
            let until = issued.expires.map_or_else(
                || "never expires".to_owned(),
                |e| format!("expires {}", format_time(e)),
            );
            let admin = if *admin { " (admin)" } else { "" };
            writeln!(err, "token {} for app {app}{admin}, {until}", issued.jti)
                .map_err(CliError::Output)?;
        }
        TokenCommand::List { place } => {
            let entries = list(&place.secret())?;
            let table = table(&entries, now);
            out.write_all(table.as_bytes()).map_err(CliError::Output)?;
        }
        TokenCommand::Revoke { jti, place } => {
            let said = match revoke(&place.secret(), jti, now)? {
                Revoke::Done => format!("revoked {jti}"),
                Revoke::Already(at) => format!("{jti} was already revoked at {}", format_time(at)),
            };
            writeln!(out, "{said}").map_err(CliError::Output)?;
        }
    }
    Ok(())
}

/// A token just made: shown once, never stored (the registry keeps its id, app and times).
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub jti: String,
    pub app: String,
    /// Seconds since the epoch; `None`: never.
    pub expires: Option<u64>,
}

/// `logmill token issue`: a token for `app` signed with the secret at `secret_path` (created if
/// missing), valid `expires` from `now` (`None`: until revoked), recorded in the registry beside
/// the secret. The console's `POST /api/tokens` calls this too.
///
/// # Errors
/// A bad app name or lifetime (checked before anything is created), or the secret, the random
/// source or the registry failed.
pub fn issue(
    secret_path: &Path,
    app: &str,
    expires: Option<Duration>,
    admin: bool,
    now: u64,
) -> Result<Issued, CliError> {
    let exp = match expires {
        None => None,
        Some(d) => Some(expiry(now, d).ok_or(CliError::Expires(d))?),
    };
    // Checked before the secret is made, so a typo creates nothing.
    if !crate::storage::bucket::valid_app_name(app) {
        return Err(CliError::Issue(IssueError::BadAppName(app.to_owned())));
    }
    let secret = secret::load_or_create(secret_path).map_err(CliError::Secret)?;
    let jti = token::new_jti().map_err(CliError::Random)?;
    let jwt = token::issue_with(secret.as_bytes(), app, now, exp, &jti, admin)
        .map_err(CliError::Issue)?;
    Registry::new(registry::path_for(secret_path))
        .record_issued(&jti, app, now, exp)
        .map_err(CliError::Registry)?;
    Ok(Issued {
        token: jwt,
        jti,
        app: app.to_owned(),
        expires: exp,
    })
}

/// `logmill token list`: every token issued with the secret at `secret_path`, in order.
///
/// # Errors
/// The registry cannot be read or is malformed.
pub fn list(secret_path: &Path) -> Result<Vec<registry::Entry>, CliError> {
    let mut registry = Registry::new(registry::path_for(secret_path));
    registry
        .entries()
        .map(<[registry::Entry]>::to_vec)
        .map_err(CliError::Registry)
}

/// `logmill token revoke`: revokes `jti` at `now`; connections presenting it are refused from
/// then on, by every server reading this registry.
///
/// # Errors
/// No such token, or the registry cannot be read or written.
pub fn revoke(secret_path: &Path, jti: &str, now: u64) -> Result<Revoke, CliError> {
    Registry::new(registry::path_for(secret_path))
        .revoke(jti, now)
        .map_err(CliError::Registry)
}

/// The expiry `lifetime` after `now`, in whole seconds rounded up; `None` for a zero lifetime.
fn expiry(now: u64, lifetime: Duration) -> Option<u64> {
    if lifetime.is_zero() {
        return None;
    }
    let secs = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
    now.checked_add(secs)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `list` table: one row per token, columns padded to the widest cell.
fn table(entries: &[registry::Entry], now: u64) -> String {
    let mut rows = vec![[
        "JTI".to_owned(),
        "APP".to_owned(),
        "ISSUED".to_owned(),
        "EXPIRES".to_owned(),
        "REVOKED".to_owned(),
    ]];
    for e in entries {
        let expires = match e.expires() {
            None => "never".to_owned(),
            Some(t) if t < now => format!("{} (expired)", format_time(t)),
            Some(t) => format_time(t),
        };
        rows.push([
            e.jti().to_owned(),
            e.app().to_owned(),
            format_time(e.issued()),
            expires,
            e.revoked().map_or_else(|| "-".to_owned(), format_time),
        ]);
    }
    let mut widths = [0; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_rounds_up_and_refuses_zero() {
        assert_eq!(
            expiry(100, Duration::from_secs(30 * 86_400)),
            Some(100 + 2_592_000)
        );
        assert_eq!(expiry(100, Duration::from_millis(1500)), Some(102));
        assert_eq!(expiry(100, Duration::ZERO), None);
        assert_eq!(expiry(u64::MAX, Duration::from_secs(1)), None);
    }
}
