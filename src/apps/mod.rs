//! Applications: the tokens that name them and the files that back the tokens.
//!
//! - [`token`]: HS256 JWTs, issued and verified as pure functions (bytes, secret, time in;
//!   claims or a named refusal out). App names are checked by the one rule every bucket obeys,
//!   [`crate::storage::bucket::valid_app_name`].
//! - [`secret`]: the signing secret, `<dir>/.logmill/secret` or `--secret-file`, created at
//!   first use with mode 0600.
//! - [`registry`]: the append-only list of issued and revoked tokens beside the secret.
//! - [`gate`]: the `--auth` policy: what a connection's token (or its absence) decides, asked
//!   by the server's sessions once per connection (gRPC: once per call).
//! - [`cli`]: `logmill token issue|list|revoke`, and the functions behind them that the
//!   console's JSON API calls too ([`cli::issue`], [`cli::list`], [`cli::revoke`]).
//! - [`password`]: the console's admin password (argon2id), `logmill admin set-password`
//!   ([`password::run`]).
//! - [`connections`]: the registry of live connections (kept by the event loops, published to a
//!   board) and the `logmill status` JSON built from it.
//!
//! Not here: reading a token off the wire and answering a refusal (`server::session::native`,
//! `server::grpc::calls`).

use registry::Registry;
use token::{Claims, Refused};

pub mod cli;
pub mod connections;
pub mod gate;
pub mod password;
pub mod registry;
pub mod secret;
pub mod token;

/// The whole check a connection's token goes through: [`token::verify`], then the registry for a
/// revocation (one `stat`, a re-read only if the file changed: once per connection, never per
/// record).
///
/// # Errors
/// The first refusal; a registry that cannot be read refuses the token
/// ([`Refused::RegistryUnreadable`]) rather than let a revoked one through.
pub fn authenticate(
    token: &[u8],
    secret: &[u8],
    registry: &mut Registry,
    now: u64,
) -> Result<Claims, Refused> {
    let claims = token::verify(token, secret, now)?;
    match registry.is_revoked(claims.jti()) {
        Ok(false) => Ok(claims),
        Ok(true) => Err(Refused::Revoked),
        Err(e) => Err(Refused::RegistryUnreadable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("logmill-apps-{name}-{}", std::process::id()));
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => panic!("{e}"),
            _ => {}
        }
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn revoked_token_refused_from_the_next_check_on() {
        let dir = temp_dir("revoked");
        let mut server = Registry::new(dir.join("tokens"));
        let token = token::issue(SECRET, "billing", NOW, None, "j1").unwrap();
        Registry::new(dir.join("tokens"))
            .record_issued("j1", "billing", NOW, None)
            .unwrap();
        let claims = authenticate(token.as_bytes(), SECRET, &mut server, NOW).unwrap();
        assert_eq!(claims.app(), "billing");
        Registry::new(dir.join("tokens")).revoke("j1", NOW).unwrap();
        assert_eq!(
            authenticate(token.as_bytes(), SECRET, &mut server, NOW),
            Err(Refused::Revoked)
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unreadable_registry_refuses() {
        let dir = temp_dir("unreadable");
        fs::write(dir.join("tokens"), "not a registry\n").unwrap();
        let mut server = Registry::new(dir.join("tokens"));
        let token = token::issue(SECRET, "billing", NOW, None, "j1").unwrap();
        assert!(matches!(
            authenticate(token.as_bytes(), SECRET, &mut server, NOW),
            Err(Refused::RegistryUnreadable(_))
        ));
        fs::remove_dir_all(dir).unwrap();
    }
}
