//! `--apps N`: which app each bench connection is, and the token that proves it.
//!
//! Connection `i` is app `i mod N` (`logmill-bench-0000` ...; with one app, `logmill-bench`).
//! When bench starts the server, it creates the server's secret in the fresh directory first and
//! signs one token per app with it, so every connection is verified by the server exactly as a
//! real application's would be, and lands in its app's bucket. Against `--addr`, tokens are made
//! only with `--secret-file` (the server's secret); without it the connections name their app in
//! `hello.app` alone, which buckets them only on a server run with `--auth off`.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::apps::{secret, token};

use super::error::BenchError;

/// The apps bench's connections say they are, with a token each when a secret is known.
pub struct Apps {
    names: Vec<String>,
    tokens: Option<Vec<String>>,
}

impl Apps {
    /// `n` apps without tokens.
    pub fn named(n: usize) -> Apps {
        let n = n.max(1);
        let names = match n {
            1 => vec!["logmill-bench".to_string()],
            n => (0..n).map(|i| format!("logmill-bench-{i:04}")).collect(),
        };
        Apps {
            names,
            tokens: None,
        }
    }

    /// `n` apps, each with a token signed by the secret at `secret_file` (created if missing,
    /// as the server would at start-up).
    ///
    /// # Errors
    /// The secret cannot be read or created, or a token cannot be made.
    pub fn with_tokens(n: usize, secret_file: &Path) -> Result<Apps, BenchError> {
        let secret = secret::load_or_create(secret_file).map_err(|e| {
            BenchError::Usage(format!(
                "cannot use the secret to sign the apps' tokens: {e}"
            ))
        })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut apps = Apps::named(n);
        let tokens = apps
            .names
            .iter()
            .enumerate()
            .map(|(i, app)| {
                token::issue(secret.as_bytes(), app, now, None, &format!("bench-{i}"))
                    .map_err(|e| BenchError::Usage(format!("cannot make a token for {app}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        apps.tokens = Some(tokens);
        Ok(apps)
    }

    pub fn count(&self) -> usize {
        self.names.len()
    }

    pub fn has_tokens(&self) -> bool {
        self.tokens.is_some()
    }

    /// The app of connection `conn`, and its token (empty without a secret).
    pub fn of(&self, conn: usize) -> (&str, &str) {
        let i = conn % self.names.len();
        let token = self.tokens.as_ref().map_or("", |t| &t[i]);
        (&self.names[i], token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_take_the_apps_in_turn_with_their_tokens() {
        let dir = std::env::temp_dir().join(format!("logmill-bench-apps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("secret");
        let apps = Apps::with_tokens(3, &path).unwrap();
        assert_eq!(apps.count(), 3);
        assert_eq!(apps.of(4).0, "logmill-bench-0001");
        let secret = secret::load(&path).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = token::verify(apps.of(4).1.as_bytes(), secret.as_bytes(), now);
        assert_eq!(
            claims.map(|c| c.app().to_string()),
            Ok("logmill-bench-0001".into())
        );
        assert_eq!(Apps::named(1).of(7), ("logmill-bench", ""));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
