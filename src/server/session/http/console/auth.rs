//! Who may use the console: login with the admin password, sessions held in memory, the CSRF
//! token of each, the cross-site check, and the login rate limit. [`Auth::check`] is the one
//! guard every console route (the JSON API and the pages) goes through.
//!
//! # What protects what
//!
//! - **The password** is checked with argon2id (`apps::password`), on the event loop thread:
//!   one verify is about 25 ms on the 2-core test machine, and at most
//!   [`MAX_VERIFIES_PER_SECOND`] run each second, so logins can take at most a quarter of one
//!   loop's time, however many arrive (the rest are answered `429` without hashing).
//! - **A session** is 32 random bytes (the cookie `logmill_session`, hex), kept server side as
//!   the SHA-256 of the id (a lookup by a hash leaks nothing of a live id through timing); it
//!   ends [`Sessions::ttl`] after login (12 h) or [`IDLE_TIMEOUT`] after its last request
//!   (1 h), at logout, or when [`MAX_SESSIONS`] newer ones push it out. The cookie is
//!   `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends it),
//!   `Path=/`, with `Max-Age` the session's lifetime.
//! - **CSRF**: a second random value per session, given by login and `GET /api/session`; every
//!   state-changing request with a session cookie must carry it in `X-CSRF-Token` (compared in
//!   constant time). A request whose `Sec-Fetch-Site` is `cross-site`, or whose `Origin` is not
//!   this host, is refused `403` before that, as is a cross-site login.
//! - **The admin token** (`Authorization: Bearer`, `logmill token issue --admin`) opens every
//!   console API route too, for scripts; no CSRF token is asked of it, as a browser never adds
//!   that header on its own.
//! - **Login attempts**: [`MAX_FAILURES`] failed logins per peer IP per [`FAILURE_WINDOW`],
//!   then `429` with `Retry-After` until the window ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::protocol::http1::Request;
use crate::server::session::http::admin::{Denied, Guard};

/// The session cookie's name.
pub const COOKIE: &str = "logmill_session";
/// The header that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session with no request for this long ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Sessions kept at once; a new one past this pushes out the oldest. A few admins log in from a
/// few browsers: 1,000 is far more than they need, and bounds what logins can make the server
/// hold (about 200 bytes each).
pub const MAX_SESSIONS: usize = 1000;
/// Failed logins from one IP within [`FAILURE_WINDOW`] before it is answered `429`.
pub const MAX_FAILURES: u32 = 5;
/// The window failures are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Password checks run per second by the whole server: bounds the event loop time logins take
/// (about 25 ms each) whatever their number and source.
pub const MAX_VERIFIES_PER_SECOND: u32 = 10;
/// Peer IPs whose failures are remembered; past it the oldest windows are forgotten first.
const MAX_TRACKED_IPS: usize = 10_000;

/// Random bytes in a session id and a CSRF token.
const ID_BYTES: usize = 32;

/// One session, as the guard hands it to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The token `X-CSRF-Token` must carry.
    pub csrf: String,
    /// Time left before the session ends, whichever of its limits comes first.
    pub expires_in: Duration,
    /// The SHA-256 of the id, to end it ([`Sessions::remove`]).
    key: [u8; 32],
}

/// Who a guarded request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A logged-in browser.
    Session(SessionInfo),
    /// The admin token (`Authorization: Bearer`), or `--admin-open` with an `Authorization`
    /// header.
    AdminToken,
}

/// Why a request was refused: the status and the message of the `{"error": ...}` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    pub message: String,
    /// `Retry-After` seconds (`429`).
    pub retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Refusal {
        let reason = match status {
            401 => "Unauthorized",
            403 => "Forbidden",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Bad Request",
        };
        Refusal {
            status,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }
}

struct Entry {
    csrf: String,
    created: Instant,
    last: Instant,
}

/// The sessions of the server, shared by the loops (one lock, taken by console requests only:
/// a few a second).
pub struct Sessions {
    store: Mutex<HashMap<[u8; 32], Entry>>,
    /// Absolute lifetime (`--console-session-ttl`, 12 h).
    ttl: Duration,
    /// Idle lifetime: [`IDLE_TIMEOUT`], or `ttl` if shorter.
    idle: Duration,
}

fn key_of(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; ID_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            store: Mutex::new(HashMap::new()),
            ttl,
            idle: IDLE_TIMEOUT.min(ttl),
        }
    }

    /// The absolute lifetime of a session (the cookie's `Max-Age`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new session at `now`: its id (the cookie's value) and its info. The oldest session
    /// goes if [`MAX_SESSIONS`] are live.
    ///
    /// # Errors
    /// The operating system's random source failed.
    pub fn create(&self, now: Instant) -> Result<(String, SessionInfo), getrandom::Error> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let key = key_of(&id);
        let mut store = self.lock();
        if store.len() >= MAX_SESSIONS {
            store.retain(|_, e| self.alive(e, now).is_some());
        }
        if store.len() >= MAX_SESSIONS
            && let Some(oldest) = store.iter().min_by_key(|(_, e)| e.created).map(|(k, _)| *k)
        {
            store.remove(&oldest);
        }
        store.insert(
            key,
            Entry {
                csrf: csrf.clone(),
                created: now,
                last: now,
            },
        );
        Ok((
            id,
            SessionInfo {
                csrf,
                expires_in: self.ttl,
                key,
            },
        ))
    }

    /// Time left of `entry` at `now`, or `None` if it has ended.
    fn alive(&self, entry: &Entry, now: Instant) -> Option<Duration> {
        let absolute = (entry.created + self.ttl).checked_duration_since(now)?;
        let idle = (entry.last + self.idle).checked_duration_since(now)?;
        (!absolute.is_zero() && !idle.is_zero()).then_some(absolute)
    }

    /// The live session whose id is `id`, its idle clock restarted; an ended one is removed.
    pub fn get(&self, id: &str, now: Instant) -> Option<SessionInfo> {
        let key = key_of(id);
        let mut store = self.lock();
        let entry = store.get_mut(&key)?;
        let Some(left) = self.alive(entry, now) else {
            store.remove(&key);
            return None;
        };
        entry.last = now;
        Some(SessionInfo {
            csrf: entry.csrf.clone(),
            expires_in: left,
            key,
        })
    }

    /// Ends `session` (logout).
    pub fn remove(&self, session: &SessionInfo) {
        self.lock().remove(&session.key);
    }

    /// Live sessions (for tests and the server page).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Failed logins per peer IP, and the password checks of the current second.
pub struct Limiter {
    state: Mutex<LimiterState>,
}

struct LimiterState {
    /// Per IP: when its window started, failures in it.
    by_ip: HashMap<IpAddr, (Instant, u32)>,
    /// The current second and the checks run in it.
    second: Option<Instant>,
    verifies: u32,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            state: Mutex::new(LimiterState {
                by_ip: HashMap::new(),
                second: None,
                verifies: 0,
            }),
        }
    }
}

impl Limiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `ip` may try a password at `now`; counts the check if so.
    ///
    /// # Errors
    /// The seconds to wait: the IP failed too often, or the server's checks for this second
    /// are used up.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let mut state = self.lock();
        if let Some(&(since, failures)) = state.by_ip.get(&ip) {
            let ends = since + FAILURE_WINDOW;
            if now >= ends {
                state.by_ip.remove(&ip);
            } else if failures >= MAX_FAILURES {
                return Err(ends.duration_since(now).as_secs().max(1));
            }
        }
        match state.second {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {
                if state.verifies >= MAX_VERIFIES_PER_SECOND {
                    return Err(1);
                }
                state.verifies += 1;
            }
            _ => {
                state.second = Some(now);
                state.verifies = 1;
            }
        }
        Ok(())
    }

    /// A wrong password from `ip` at `now`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut state = self.lock();
        if state.by_ip.len() >= MAX_TRACKED_IPS && !state.by_ip.contains_key(&ip) {
            state
                .by_ip
                .retain(|_, (since, _)| now.duration_since(*since) < FAILURE_WINDOW);
            if state.by_ip.len() >= MAX_TRACKED_IPS
                && let Some(oldest) = state.by_ip.iter().min_by_key(|(_, v)| v.0).map(|(k, _)| *k)
            {
                state.by_ip.remove(&oldest);
            }
        }
        let entry = state.by_ip.entry(ip).or_insert((now, 0));
        entry.1 = entry.1.saturating_add(1);
    }

    /// A right password from `ip`: its failures are forgotten.
    pub fn succeeded(&self, ip: IpAddr) {
        self.lock().by_ip.remove(&ip);
    }
}

/// `a == b` in time that depends on their lengths only.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of the cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(request: &Request<'a>, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

/// Why the request comes from another site's page, if it does: `Sec-Fetch-Site: cross-site`
/// (what a browser says), or an `Origin` that is not `Host` (`null` included). A request
/// with neither (curl, a script) is not cross-site: it carries no browser's cookie by itself.
pub fn cross_site(request: &Request<'_>) -> Option<String> {
    let text = |name| {
        request
            .header(name)
            .map(|v| String::from_utf8_lossy(v).trim().to_owned())
    };
    if let Some(site) = text("sec-fetch-site")
        && site.eq_ignore_ascii_case("cross-site")
    {
        return Some("Sec-Fetch-Site: cross-site".into());
    }
    let origin = text("origin")?;
    let host = text("host").unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match origin_host {
        Some(h) if !host.is_empty() && h.eq_ignore_ascii_case(&host) => None,
        _ => Some(format!("Origin {origin:?} is not this host ({host:?})")),
    }
}

/// The console's access control: the sessions, the limiter, where the password is.
pub struct Auth {
    sessions: Sessions,
    limiter: Limiter,
    /// The admin password file (`--admin-password-file` or `<dir>/.logmill/admin_password`),
    /// read at each login.
    password_path: std::path::PathBuf,
}

impl Auth {
    /// Ends `session` on the server (logout).
    pub fn logout(&self, session: &SessionInfo) {
        self.sessions.remove(session);
    }

    /// How many sessions are live (for `/api/server`).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn new(password_path: std::path::PathBuf, ttl: Duration) -> Auth {
        Auth {
            sessions: Sessions::new(ttl),
            limiter: Limiter::default(),
            password_path,
        }
    }

    /// The guard: who `request` is, or why it is refused.
    ///
    /// 1. An `Authorization` header: the admin token, checked by `admin` (`401` if refused).
    /// 2. Otherwise the cookie [`COOKIE`] naming a live session (`401` if missing, unknown or
    ///    ended).
    /// 3. For a method other than `GET`/`HEAD`: not cross-site ([`cross_site`], `403`), and
    ///    `X-CSRF-Token` equal to the session's (`403`).
    ///
    /// # Errors
    /// The [`Refusal`] to answer (as JSON: [`super::api::refusal`]).
    pub fn check(
        &self,
        request: &Request<'_>,
        admin: &Guard,
        now: Instant,
        unix_now: u64,
    ) -> Result<Access, Refusal> {
        if let Some(authorization) = request.header("authorization") {
            return match admin.check(Some(authorization), unix_now) {
                Ok(()) => Ok(Access::AdminToken),
                Err(Denied::NoSecret(why)) => Err(Refusal::new(
                    503,
                    format!("the server cannot check tokens: {why}"),
                )),
                Err(denied) => Err(Refusal::new(401, denied.to_string())),
            };
        }
        let id = cookie(request, COOKIE)
            .ok_or_else(|| Refusal::new(401, "login required (POST /api/login)"))?;
        let session = self
            .sessions
            .get(id, now)
            .ok_or_else(|| Refusal::new(401, "session expired or unknown: log in again"))?;
        if !matches!(request.method, "GET" | "HEAD") {
            if let Some(why) = cross_site(request) {
                return Err(Refusal::new(
                    403,
                    format!("cross-site request refused: {why}"),
                ));
            }
            let sent = request.header(CSRF_HEADER).unwrap_or_default();
            if !ct_eq(sent.trim_ascii(), session.csrf.as_bytes()) {
                return Err(Refusal::new(
                    403,
                    "missing or wrong X-CSRF-Token (GET /api/session gives it)",
                ));
            }
        }
        Ok(Access::Session(session))
    }

    /// `POST /api/login` with `{"password": "..."}` from `peer`: a new session, or the
    /// refusal. Checks, in order: not cross-site (`403`), the rate limit (`429`), a body that
    /// is JSON with a string `password` (`400`), a password file (`503`), the password
    /// (`401`).
    ///
    /// # Errors
    /// The [`Refusal`]; the caller logs it.
    pub fn login(
        &self,
        request: &Request<'_>,
        peer: IpAddr,
        now: Instant,
    ) -> Result<(String, SessionInfo), Refusal> {
        if let Some(why) = cross_site(request) {
            return Err(Refusal::new(
                403,
                format!("cross-site login refused: {why}"),
            ));
        }
        let password = serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|v| v.get("password")?.as_str().map(str::to_owned))
            .ok_or_else(|| Refusal::new(400, "expected a JSON body {\"password\": \"...\"}"))?;
        let phc = crate::apps::password::load(&self.password_path)
            .map_err(|e| Refusal::new(503, e.to_string()))?;
        if let Err(seconds) = self.limiter.admit(peer, now) {
            let mut refusal = Refusal::new(
                429,
                format!("too many login attempts: try again in {seconds}s"),
            );
            refusal.retry_after = Some(seconds);
            return Err(refusal);
        }
        if !crate::apps::password::verify(password.as_bytes(), &phc) {
            self.limiter.failed(peer, now);
            return Err(Refusal::new(401, "wrong password"));
        }
        self.limiter.succeeded(peer);
        self.sessions
            .create(now)
            .map_err(|e| Refusal::new(503, format!("cannot make a session id: {e}")))
    }

    /// The `Set-Cookie` value for session `id` (`None`: the cookie deleted, at logout).
    pub fn set_cookie(&self, id: Option<&str>) -> String {
        let (value, max_age) = match id {
            Some(id) => (id, self.sessions.ttl().as_secs()),
            None => ("", 0),
        };
        format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http1::Version;
    use std::borrow::Cow;

    fn request<'a>(method: &'a str, headers: Vec<(&'a str, &'a [u8])>) -> Request<'a> {
        Request {
            method,
            path: "/api/tokens",
            query: None,
            version: Version::Http11,
            headers,
            body: Cow::Borrowed(b""),
            keep_alive: true,
        }
    }

    #[test]
    fn sessions_expire_idle_and_absolute_and_are_bounded() {
        let t0 = Instant::now();
        let sessions = Sessions::new(Duration::from_secs(7200));
        let (id, info) = sessions.create(t0).unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.get(&id, t0).unwrap().csrf, info.csrf);
        assert_eq!(sessions.get("forged", t0), None);
        // Idle: alive at 59 min, and each request restarts the clock.
        assert!(
            sessions
                .get(&id, t0 + Duration::from_secs(59 * 60))
                .is_some()
        );
        // Absolute: gone at 2 h even though it was used a minute before.
        assert!(
            sessions
                .get(&id, t0 + Duration::from_secs(7199 - 60))
                .is_some()
        );
        assert_eq!(sessions.get(&id, t0 + Duration::from_secs(7200)), None);
        assert!(sessions.is_empty());
        // Idle for an hour: gone.
        let (id, _) = sessions.create(t0).unwrap();
        assert_eq!(sessions.get(&id, t0 + IDLE_TIMEOUT), None);
        // Logout.
        let (id, info) = sessions.create(t0).unwrap();
        sessions.remove(&info);
        assert_eq!(sessions.get(&id, t0), None);
        // Bounded: the oldest goes.
        let (first, _) = sessions.create(t0).unwrap();
        for i in 1..=MAX_SESSIONS as u64 {
            sessions.create(t0 + Duration::from_millis(i)).unwrap();
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert_eq!(sessions.get(&first, t0 + Duration::from_secs(1)), None);
    }

    #[test]
    fn limiter_per_ip_and_per_second() {
        let t0 = Instant::now();
        let limiter = Limiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for i in 0..MAX_FAILURES {
            let t = t0 + Duration::from_secs(u64::from(i) * 2);
            assert_eq!(limiter.admit(ip, t), Ok(()));
            limiter.failed(ip, t);
        }
        assert_eq!(limiter.admit(ip, t0 + Duration::from_secs(20)), Err(40));
        assert_eq!(limiter.admit(other, t0 + Duration::from_secs(20)), Ok(()));
        assert_eq!(limiter.admit(ip, t0 + FAILURE_WINDOW), Ok(()));
        limiter.succeeded(ip);
        // The global cap: MAX_VERIFIES_PER_SECOND in one second, from anywhere.
        let t = t0 + Duration::from_secs(100);
        for _ in 0..MAX_VERIFIES_PER_SECOND {
            assert_eq!(limiter.admit(ip, t), Ok(()));
        }
        assert_eq!(limiter.admit(other, t), Err(1));
        assert_eq!(limiter.admit(other, t + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn cookies_cross_site_and_ct_eq() {
        let r = request(
            "POST",
            vec![
                ("Cookie", b"a=1; logmill_session=abc ; b=2"),
                ("Host", b"127.0.0.1:4021"),
            ],
        );
        assert_eq!(cookie(&r, COOKIE), Some("abc"));
        assert_eq!(cookie(&r, "c"), None);
        assert_eq!(cross_site(&r), None);
        let same = request(
            "POST",
            vec![
                ("Host", b"127.0.0.1:4021"),
                ("Origin", b"http://127.0.0.1:4021"),
            ],
        );
        assert_eq!(cross_site(&same), None);
        for (name, value) in [
            ("Origin", &b"http://evil.example"[..]),
            ("Origin", b"null"),
            ("Sec-Fetch-Site", b"cross-site"),
        ] {
            let r = request("POST", vec![("Host", b"127.0.0.1:4021"), (name, value)]);
            assert!(cross_site(&r).is_some(), "{name}: {value:?}");
        }
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn the_guard_asks_a_session_and_csrf() {
        let t0 = Instant::now();
        let console = Auth::new("/nonexistent".into(), Duration::from_secs(60));
        let admin = Guard::Unavailable("test".into());
        let (id, info) = console.sessions.create(t0).unwrap();
        let cookie = format!("{COOKIE}={id}");
        let check = |method, headers: Vec<(&str, &[u8])>| {
            console
                .check(&request(method, headers), &admin, t0, 0)
                .map_err(|r| r.status)
        };
        assert_eq!(check("GET", vec![]), Err(401));
        assert_eq!(
            check("GET", vec![("Cookie", b"logmill_session=forged")]),
            Err(401)
        );
        assert_eq!(
            check("GET", vec![("Cookie", cookie.as_bytes())]),
            Ok(Access::Session(SessionInfo {
                expires_in: Duration::from_secs(60),
                ..info.clone()
            }))
        );
        assert_eq!(check("POST", vec![("Cookie", cookie.as_bytes())]), Err(403));
        let csrf = info.csrf.as_bytes();
        assert!(
            check(
                "POST",
                vec![("Cookie", cookie.as_bytes()), ("X-CSRF-Token", csrf)]
            )
            .is_ok()
        );
        assert_eq!(
            check(
                "POST",
                vec![
                    ("Cookie", cookie.as_bytes()),
                    ("X-CSRF-Token", csrf),
                    ("Sec-Fetch-Site", b"cross-site")
                ]
            ),
            Err(403)
        );
        // A bearer header goes to the admin guard (here: no secret, 503).
        assert_eq!(check("GET", vec![("Authorization", b"Bearer x")]), Err(503));
        assert_eq!(
            console.set_cookie(Some("abc")),
            "logmill_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
    }
}
