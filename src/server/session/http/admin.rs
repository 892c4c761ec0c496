//! Who may use the admin API (`/v1/status` and any later admin route): a token with the
//! `"admin": true` claim (`logmill token issue --admin`), sent as `Authorization: Bearer`,
//! verified with the server's secret and checked against the registry for a revocation; or
//! anyone, with `--admin-open`.
//!
//! [`Guard::check`] is a checklist read top to bottom; each refusal is a named [`Denied`], and
//! each is answered `401` with `WWW-Authenticate: Bearer` and a line saying which.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use crate::apps::registry::{self, Registry};
use crate::apps::secret::{self, Secret};
use crate::apps::token::Refused;

/// How the admin API is guarded.
pub enum Guard {
    /// `--admin-open`: no token asked.
    Open,
    /// Admin tokens, checked with the server's secret and its registry (one lock, taken only by
    /// an admin request, never on the record path).
    Tokens {
        secret: Secret,
        registry: Mutex<Registry>,
    },
    /// The secret could not be loaded at start-up (the reason): every admin request is refused.
    Unavailable(String),
}

/// Why an admin request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization` header.
    NoToken,
    /// `Authorization` is not `Bearer <token>`.
    NotBearer,
    /// The token itself was refused (bad signature, expired, revoked, ...).
    Token(Refused),
    /// A valid token without `"admin": true` (an app's token).
    NotAdmin,
    /// The server has no secret to check tokens with.
    NoSecret(String),
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::NoToken => f.write_str(
                "admin token required: send Authorization: Bearer <token from \
                 `logmill token issue --admin`>",
            ),
            Denied::NotBearer => f.write_str("Authorization is not Bearer <token>"),
            Denied::Token(refused) => write!(f, "{refused}"),
            Denied::NotAdmin => f.write_str(
                "token is not an admin token (issue one with `logmill token issue --admin`)",
            ),
            Denied::NoSecret(why) => write!(f, "the server cannot check tokens: {why}"),
        }
    }
}

impl Guard {
    /// The guard for tokens signed with the secret at `secret_path` (created if missing, as
    /// `logmill token issue` does), with the registry beside it; `open` is `--admin-open`.
    ///
    /// The secret is the server's (`Config::secret_path`: `--secret-file`, or the place
    /// `logmill token` uses by default under `--dir`).
    pub fn load(open: bool, secret_path: &Path) -> Guard {
        if open {
            return Guard::Open;
        }
        match secret::load_or_create(secret_path) {
            Ok(secret) => Guard::Tokens {
                secret,
                registry: Mutex::new(Registry::new(registry::path_for(secret_path))),
            },
            Err(e) => Guard::Unavailable(e.to_string()),
        }
    }

    /// Whether a request with this `Authorization` header may use the admin API at `now`
    /// (seconds since the epoch).
    ///
    /// # Errors
    /// The first check that fails, in the order below.
    pub fn check(&self, authorization: Option<&[u8]>, now: u64) -> Result<(), Denied> {
        let (secret, registry) = match self {
            Guard::Open => return Ok(()),
            Guard::Unavailable(why) => return Err(Denied::NoSecret(why.clone())),
            Guard::Tokens { secret, registry } => (secret, registry),
        };
        // 1. A header.
        let header = authorization.ok_or(Denied::NoToken)?;
        // 2. `Bearer <token>` (the scheme's case ignored, as RFC 9110 says).
        let token = bearer(header).ok_or(Denied::NotBearer)?;
        // 3. The token: signature, times, claims, and the registry for a revocation.
        let mut registry = registry.lock().unwrap_or_else(PoisonError::into_inner);
        let claims = crate::apps::authenticate(token, secret.as_bytes(), &mut registry, now)
            .map_err(Denied::Token)?;
        // 4. An admin token.
        if !claims.is_admin() {
            return Err(Denied::NotAdmin);
        }
        Ok(())
    }
}

/// The token of `Bearer <token>`.
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let header = header.trim_ascii();
    let (scheme, token) = header.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.trim_ascii().is_empty())
        .then(|| token.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::token;

    const NOW: u64 = 1_800_000_000;

    fn guard(name: &str) -> (Guard, Vec<u8>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("logmill-admin-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = secret::default_path(&dir);
        let guard = Guard::load(false, &path);
        let secret = secret::load(&path).unwrap().as_bytes().to_vec();
        (guard, secret, dir)
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let (guard, secret, dir) = guard("refusals");
        let admin = token::issue_with(&secret, "ops", NOW, None, "a1", true).unwrap();
        let app = token::issue(&secret, "billing", NOW, None, "b1").unwrap();
        let bearer = |t: &str| format!("Bearer {t}").into_bytes();
        assert_eq!(guard.check(None, NOW), Err(Denied::NoToken));
        assert_eq!(guard.check(Some(b"Basic abc"), NOW), Err(Denied::NotBearer));
        assert_eq!(guard.check(Some(&bearer(&app)), NOW), Err(Denied::NotAdmin));
        assert_eq!(
            guard.check(Some(&bearer("a.b.c")), NOW),
            Err(Denied::Token(Refused::BadBase64("header")))
        );
        assert_eq!(guard.check(Some(&bearer(&admin)), NOW), Ok(()));
        assert_eq!(
            guard.check(Some(&*format!("bearer  {admin} ").into_bytes()), NOW),
            Ok(())
        );
        let mut registry = Registry::new(registry::path_for(&secret::default_path(&dir)));
        registry.record_issued("a1", "ops", NOW, None).unwrap();
        registry.revoke("a1", NOW).unwrap();
        assert_eq!(
            guard.check(Some(&bearer(&admin)), NOW),
            Err(Denied::Token(Refused::Revoked))
        );
        assert_eq!(Guard::Open.check(None, NOW), Ok(()));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
