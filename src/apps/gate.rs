//! The gate: what a connection's token (or its absence) decides under the server's `--auth`
//! policy. One [`Gate`] per server, asked once per connection (native hello) or per call (gRPC),
//! never per record.
//!
//! [`Gate::admit`] is the whole policy, read top to bottom:
//!
//! | `--auth`   | token                | the connection                                          |
//! |------------|----------------------|---------------------------------------------------------|
//! | `off`      | ignored              | the app it names chooses the bucket (trusted network)   |
//! | `optional` | none                 | anonymous bucket; the app it names is only a label      |
//! | `optional` | valid                | the token's app's bucket                                |
//! | any but off| invalid, revoked, .. | refused ([`Refusal::Token`])                            |
//! | any but off| valid, other app     | refused ([`Refusal::OtherApp`]): no picking a bucket    |
//! | `required` | none                 | refused ([`Refusal::TokenRequired`])                    |
//!
//! What this file does not do: read a token off the wire (the sessions do), answer the client
//! (an `error` frame, a gRPC status: the sessions again), or validate the app name a client
//! sends (the sessions check it before asking, with [`crate::storage::bucket::valid_app_name`]).

use std::sync::Mutex;

use super::registry::{self, Registry};
use super::secret::{self, Secret, SecretError};
use super::token::{self, Refused};
use crate::config::{Auth, Config};

/// Where a connection's records go, once admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// This app's bucket (`<dir>/<app>/_main.log`): a verified token's app, or under
    /// `--auth off` the app the client named.
    App(String),
    /// The anonymous bucket (`<dir>/_main.log`). `label` is the app the client named without a
    /// token: unverified, so it is shown in the lines (as before tokens) but chooses no files.
    Anonymous { label: String },
}

/// Why a connection was refused. [`Refusal::message`] is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The token failed a check. `app` is the app it names when its signature is good (an
    /// expired or revoked token of a real app), for the per-app count; `None` otherwise.
    Token {
        reason: Refused,
        app: Option<String>,
    },
    /// A valid token for `token_app`, on a connection that names `asked`.
    OtherApp { token_app: String, asked: String },
    /// `--auth required` and no token.
    TokenRequired,
}

impl Refusal {
    /// The app the refusal is counted against: the one a genuine token names.
    pub fn app(&self) -> Option<&str> {
        match self {
            Refusal::Token { app, .. } => app.as_deref(),
            Refusal::OtherApp { token_app, .. } => Some(token_app),
            Refusal::TokenRequired => None,
        }
    }

    /// What the client (and `_server.log`) is told: what was wrong and what to do about it.
    pub fn message(&self) -> String {
        let issue = |app: &Option<String>| match app {
            Some(app) => format!("issue a new one with `logmill token issue --app {app}`"),
            None => "issue a new one with `logmill token issue --app NAME`".to_owned(),
        };
        match self {
            Refusal::Token {
                reason: Refused::Expired { exp },
                app,
            } => format!(
                "token refused: expired at {} (exp {exp}); {}",
                registry::format_time(*exp),
                issue(app)
            ),
            Refusal::Token {
                reason: Refused::NotYetValid { nbf },
                ..
            } => format!(
                "token refused: not valid before {} (nbf {nbf}); check the clocks of this \
                 machine and of the one that issued it",
                registry::format_time(*nbf)
            ),
            Refusal::Token {
                reason: Refused::Revoked,
                app,
            } => format!(
                "token refused: it was revoked (`logmill token list` shows when); {}",
                issue(app)
            ),
            Refusal::Token {
                reason: Refused::BadSignature,
                ..
            } => "token refused: its signature does not match this server's secret (a token \
                  of another server, or altered); use a token from `logmill token issue` run \
                  against this server's --dir or --secret-file"
                .to_owned(),
            Refusal::Token {
                reason: Refused::RegistryUnreadable(_),
                ..
            } => "token refused: the server cannot read its token registry, so it cannot tell \
                  whether the token was revoked; the operator will find why in _server.log"
                .to_owned(),
            Refusal::Token { reason, app } => {
                format!("token refused: {reason}; {}", issue(app))
            }
            Refusal::OtherApp { token_app, asked } => format!(
                "refused: the token is for app {token_app:?} but the connection names app \
                 {asked:?}; a token's records go to its own app: name {token_app:?} or no app"
            ),
            Refusal::TokenRequired => "refused: this server requires an application token \
                 (--auth required) and none was sent; make one with `logmill token issue --app \
                 NAME`, or start the server with --auth optional to take connections without one"
                .to_owned(),
        }
    }

    /// The detail the server's log gets beyond [`message`](Self::message): why the registry
    /// could not be read.
    pub fn log_detail(&self) -> Option<&str> {
        match self {
            Refusal::Token {
                reason: Refused::RegistryUnreadable(why),
                ..
            } => Some(why),
            _ => None,
        }
    }
}

/// The policy, the secret and the registry of revocations: what [`Gate::admit`] needs.
#[derive(Debug)]
pub struct Gate {
    policy: Auth,
    /// `None` under `--auth off`, which reads no secret.
    secret: Option<Secret>,
    /// Re-read when the file changes (one `stat` per check), so `logmill token revoke` takes
    /// effect from the next connection without a restart. Behind a mutex since every loop asks;
    /// it is held for one `stat` once per connection or call, never per record.
    registry: Mutex<Registry>,
}

impl Gate {
    /// The gate for `config`: its `--auth`, and unless that is `off` the secret at
    /// [`Config::secret_path`], created if missing (mode 0600).
    ///
    /// # Errors
    /// The secret cannot be used: readable by group or others, too short, unreadable...; each
    /// message says how to fix it.
    pub fn open(config: &Config) -> Result<Gate, SecretError> {
        let path = config.secret_path();
        let secret = match config.auth {
            Auth::Off => None,
            Auth::Optional | Auth::Required => Some(secret::load_or_create(&path)?),
        };
        Ok(Gate {
            policy: config.auth,
            secret,
            registry: Mutex::new(Registry::new(registry::path_for(&path))),
        })
    }

    /// A gate that lets everyone in and lets the app a client names choose its bucket
    /// (`--auth off`): for embedders and tests that do not use tokens.
    pub fn off() -> Gate {
        Gate {
            policy: Auth::Off,
            secret: None,
            registry: Mutex::new(Registry::new(Default::default())),
        }
    }

    pub fn policy(&self) -> Auth {
        self.policy
    }

    /// Whether a connection that cannot carry a token (SocketHandler, syslog, JSON lines, text,
    /// UDP) is taken: not under `--auth required`.
    pub fn admits_anonymous(&self) -> bool {
        self.policy != Auth::Required
    }

    /// Decides a connection from its `token` (empty: none) and the app it names (`asked`,
    /// empty: none, already a valid app name), at `now` (seconds since the epoch). See the
    /// table at the top of this file.
    ///
    /// # Errors
    /// The [`Refusal`]: the connection must be told and closed, its records never stored.
    pub fn admit(&self, token: &str, asked: &str, now: u64) -> Result<Admit, Refusal> {
        let secret = match (&self.secret, self.policy) {
            (_, Auth::Off) | (None, _) => return Ok(named(asked)),
            (Some(secret), _) => secret.as_bytes(),
        };
        if token.is_empty() {
            return match self.policy {
                Auth::Required => Err(Refusal::TokenRequired),
                Auth::Optional | Auth::Off => Ok(Admit::Anonymous {
                    label: asked.to_owned(),
                }),
            };
        }
        let mut registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let claims = super::authenticate(token.as_bytes(), secret, &mut registry, now).map_err(
            |reason| Refusal::Token {
                reason,
                app: token::signed_app(token.as_bytes(), secret),
            },
        )?;
        drop(registry);
        if !asked.is_empty() && asked != claims.app() {
            return Err(Refusal::OtherApp {
                token_app: claims.app().to_owned(),
                asked: asked.to_owned(),
            });
        }
        Ok(Admit::App(claims.app().to_owned()))
    }
}

impl Gate {
    /// As [`admit`](Self::admit), for a connection that also presented a client certificate
    /// (mutual TLS, `--tls-client-ca`) whose subject CN is the valid app name `certified`. The
    /// certificate is a credential as a token is:
    ///
    /// | token | the connection |
    /// |-------|----------------|
    /// | given | decided by the token alone, as [`admit`](Self::admit) |
    /// | none, names no app or `certified` | `certified`'s bucket, under every `--auth` |
    /// | none, names another app | refused ([`Refusal::OtherApp`]), except under `--auth off` |
    ///
    /// # Errors
    /// The [`Refusal`], as for [`admit`](Self::admit).
    pub fn admit_certified(
        &self,
        token: &str,
        asked: &str,
        certified: &str,
        now: u64,
    ) -> Result<Admit, Refusal> {
        if !token.is_empty() {
            return self.admit(token, asked, now);
        }
        if asked.is_empty() || asked == certified {
            return Ok(Admit::App(certified.to_owned()));
        }
        if self.policy == Auth::Off {
            return Ok(named(asked));
        }
        Err(Refusal::OtherApp {
            token_app: certified.to_owned(),
            asked: asked.to_owned(),
        })
    }
}

/// `--auth off`: the app named is the bucket; no app, anonymous.
fn named(asked: &str) -> Admit {
    if asked.is_empty() {
        Admit::Anonymous {
            label: String::new(),
        }
    } else {
        Admit::App(asked.to_owned())
    }
}

/// The line a protocol without a reply format of its own (SocketHandler, syslog, JSON lines,
/// text) is sent before the server closes it under `--auth required`.
pub const ANONYMOUS_REFUSED: &str = "logmill: this server requires an application token (--auth \
required); Python SocketHandler, syslog, JSON lines and plain text cannot carry one. Send native \
frames with a token in the hello (`logmill token issue --app NAME` makes one) or gRPC with \
`authorization: Bearer TOKEN`, or ask the operator to start the server with --auth optional.\n";

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io;
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::PathBuf;

    const NOW: u64 = 1_800_000_000;

    struct Place(PathBuf);

    impl Drop for Place {
        fn drop(&mut self) {
            match fs::remove_dir_all(&self.0) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => panic!("{e}"),
                _ => {}
            }
        }
    }

    fn gate(name: &str, policy: Auth) -> (Place, Gate, Vec<u8>) {
        let dir = std::env::temp_dir().join(format!("logmill-gate-{name}-{}", std::process::id()));
        // Whatever an earlier run left goes first (dropping a `Place` removes it).
        drop(Place(dir.clone()));
        let place = Place(dir.clone());
        let config = Config {
            dir,
            auth: policy,
            ..Config::default()
        };
        let gate = Gate::open(&config).unwrap();
        let secret = fs::read(config.secret_path()).unwrap_or_default();
        (place, gate, secret)
    }

    fn issue(secret: &[u8], app: &str, exp: Option<u64>, jti: &str) -> String {
        token::issue(secret, app, NOW - 10, exp, jti).unwrap()
    }

    #[test]
    fn a_certificate_names_the_app_a_token_still_decides() {
        let (_off_place, off, _) = gate("certified-off", Auth::Off);
        let (_place, gate, secret) = gate("certified", Auth::Required);
        // No token: the certificate's app, named or not.
        for asked in ["", "billing"] {
            assert_eq!(
                gate.admit_certified("", asked, "billing", NOW),
                Ok(Admit::App("billing".into()))
            );
        }
        // Another app named: refused, as a token of another app would be.
        assert_eq!(
            gate.admit_certified("", "shop", "billing", NOW),
            Err(Refusal::OtherApp {
                token_app: "billing".into(),
                asked: "shop".into()
            })
        );
        // A token decides alone: its app, or its refusal.
        let shop = issue(&secret, "shop", None, "c1");
        assert_eq!(
            gate.admit_certified(&shop, "", "billing", NOW),
            Ok(Admit::App("shop".into()))
        );
        assert!(matches!(
            gate.admit_certified("garbage", "", "billing", NOW),
            Err(Refusal::Token { .. })
        ));
        assert_eq!(
            off.admit_certified("", "shop", "billing", NOW),
            Ok(Admit::App("shop".into()))
        );
    }

    #[test]
    fn off_lets_the_named_app_choose_and_reads_no_secret() {
        let (place, gate, secret) = gate("off", Auth::Off);
        assert!(secret.is_empty() && !place.0.exists(), "off made a secret");
        assert_eq!(
            gate.admit("garbage", "billing", NOW),
            Ok(Admit::App("billing".into()))
        );
        assert_eq!(
            gate.admit("", "", NOW),
            Ok(Admit::Anonymous {
                label: String::new()
            })
        );
        assert!(gate.admits_anonymous());
    }

    #[test]
    fn optional_without_a_token_is_anonymous_with_the_label() {
        let (_place, gate, secret) = gate("optional", Auth::Optional);
        assert_eq!(secret.len(), secret::SECRET_LEN);
        assert_eq!(
            gate.admit("", "billing", NOW),
            Ok(Admit::Anonymous {
                label: "billing".into()
            })
        );
        assert!(gate.admits_anonymous());
    }

    #[test]
    fn a_valid_token_chooses_its_app_and_no_other() {
        let (_place, gate, secret) = gate("valid", Auth::Optional);
        let token = issue(&secret, "billing", None, "j1");
        assert_eq!(
            gate.admit(&token, "", NOW),
            Ok(Admit::App("billing".into()))
        );
        assert_eq!(
            gate.admit(&token, "billing", NOW),
            Ok(Admit::App("billing".into()))
        );
        let refused = gate.admit(&token, "search", NOW).unwrap_err();
        assert_eq!(
            refused,
            Refusal::OtherApp {
                token_app: "billing".into(),
                asked: "search".into()
            }
        );
        assert_eq!(refused.app(), Some("billing"));
    }

    #[test]
    fn required_refuses_no_token_and_anonymous_protocols() {
        let (_place, gate, _secret) = gate("required", Auth::Required);
        let refused = gate.admit("", "billing", NOW).unwrap_err();
        assert_eq!(refused, Refusal::TokenRequired);
        assert!(refused.message().contains("--auth optional"));
        assert!(!gate.admits_anonymous());
    }

    #[test]
    fn refusals_name_their_reason_and_count_only_genuine_apps() {
        let (_place, gate, secret) = gate("refusals", Auth::Optional);
        let expired = issue(&secret, "billing", Some(NOW - 3600), "j2");
        let refused = gate.admit(&expired, "", NOW).unwrap_err();
        assert_eq!(refused.app(), Some("billing"));
        let message = refused.message();
        assert!(message.contains("expired at"), "{message}");
        assert!(
            message.contains("logmill token issue --app billing"),
            "{message}"
        );

        let other = token::issue(
            b"another secret of thirty-two byte",
            "billing",
            NOW,
            None,
            "j3",
        )
        .unwrap();
        let refused = gate.admit(&other, "", NOW).unwrap_err();
        assert_eq!(refused.app(), None, "an unsigned claim counts for nobody");
        assert!(refused.message().contains("signature"));

        let refused = gate.admit("not.a.token", "", NOW).unwrap_err();
        assert!(matches!(refused, Refusal::Token { app: None, .. }));
    }

    #[test]
    fn revoked_refused_from_the_next_check_on() {
        let (_place, gate, secret) = gate("revoked", Auth::Optional);
        let token = issue(&secret, "billing", None, "j4");
        let mut registry = Registry::new(gate.registry.lock().unwrap().path().to_owned());
        registry.record_issued("j4", "billing", NOW, None).unwrap();
        assert!(gate.admit(&token, "", NOW).is_ok());
        registry.revoke("j4", NOW).unwrap();
        let refused = gate.admit(&token, "", NOW).unwrap_err();
        assert_eq!(
            refused,
            Refusal::Token {
                reason: Refused::Revoked,
                app: Some("billing".into())
            }
        );
        assert!(refused.message().contains("revoked"));
    }

    #[test]
    fn a_secret_others_can_read_is_refused_with_the_fix() {
        let (place, _gate, _secret) = gate("open-secret", Auth::Optional);
        let path = secret::default_path(&place.0);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let config = Config {
            dir: place.0.clone(),
            ..Config::default()
        };
        let e = Gate::open(&config).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
