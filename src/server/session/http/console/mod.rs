//! The control panel on port 4021: who may use it ([`auth`]: the admin password, sessions,
//! CSRF, the login rate limit, and the guard every console route goes through), its JSON API
//! ([`api`]: connections, the server's state, tokens), log exploration ([`search`]: search,
//! counts, context, the live tail), and the pages a browser loads ([`assets`], embedded in the
//! binary).
//!
//! One [`Console`] serves every loop (it lives in `web::Web`, behind the `Arc` the loops
//! share); its sessions and limiter are behind their own locks, taken by console requests only.

pub mod api;
pub mod assets;
pub mod auth;
pub mod reply;
pub mod search;

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The console's state and settings.
pub struct Console {
    pub auth: auth::Auth,
    /// `--dir`: the buckets `/api/server` lists.
    pub dir: PathBuf,
    /// The signing secret (`--secret-file` or `<dir>/.logmill/secret`) and the token registry
    /// beside it, for the token routes.
    pub secret_path: PathBuf,
    /// The last sample of records written, for records/s: (when, count, rate then).
    sample: Mutex<Option<(Instant, u64, f64)>>,
}

impl Console {
    /// The console of a server writing to `dir`, signing tokens with the secret at
    /// `secret_path`, its admin password hash at `password_path`, sessions lasting `ttl`.
    pub fn new(
        dir: PathBuf,
        secret_path: PathBuf,
        password_path: PathBuf,
        ttl: Duration,
    ) -> Console {
        Console {
            auth: auth::Auth::new(password_path, ttl),
            dir,
            secret_path,
            sample: Mutex::new(None),
        }
    }

    /// Records per second: over the time since the last sample at least a second old (so two
    /// pages polling every 2 s each see a rate over a second or more); the first ask averages
    /// over the uptime.
    pub fn rate(&self, written: u64, now: Instant, uptime: Duration) -> f64 {
        let mut sample = self.sample.lock().unwrap_or_else(PoisonError::into_inner);
        match *sample {
            Some((at, _, rate)) if now.duration_since(at) < Duration::from_secs(1) => rate,
            Some((at, count_then, _)) => {
                let rate = written.saturating_sub(count_then) as f64
                    / now.duration_since(at).as_secs_f64();
                *sample = Some((now, written, rate));
                rate
            }
            None => {
                let rate = written as f64 / uptime.as_secs_f64().max(1.0);
                *sample = Some((now, written, rate));
                rate
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_per_second_from_successive_samples() {
        let console = Console::new("d".into(), "s".into(), "p".into(), Duration::from_secs(60));
        let t0 = Instant::now();
        // First ask: the average over the uptime.
        assert_eq!(console.rate(1000, t0, Duration::from_secs(10)), 100.0);
        // Within a second: the same figure, the sample kept.
        assert_eq!(
            console.rate(5000, t0 + Duration::from_millis(500), Duration::ZERO),
            100.0
        );
        // Two seconds on, 600 more: 300/s.
        assert_eq!(
            console.rate(1600, t0 + Duration::from_secs(2), Duration::ZERO),
            300.0
        );
    }
}
