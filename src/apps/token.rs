//! Application tokens: HS256 JWTs naming an app, issued and verified as pure functions over
//! bytes, a secret and the time. No files, no clock, no sockets here: the secret comes from
//! [`super::secret`], revocations from [`super::registry`], the time from the caller.
//!
//! [`verify`] is a checklist read top to bottom; each step that can refuse has its own
//! [`Refused`] variant and a test below. The algorithm is pinned: only `alg: HS256` is accepted,
//! whatever else the header says, so a token cannot choose how it is checked (`none`, `HS512`,
//! `RS256` with the secret as a "public key", ...).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::storage::bucket::valid_app_name;

type HmacSha256 = Hmac<Sha256>;

/// Tokens longer than this are refused before any decoding. Ours are about 200 bytes; 8 KiB
/// leaves room for tokens made by other tools with extra claims, and bounds the work a client
/// can ask for.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Clock skew tolerated on `exp` and `nbf`, in seconds: the issuing machine's clock and the
/// server's may differ by this much without a token being refused. One minute is the usual
/// choice (and small next to token lifetimes of days).
pub const LEEWAY_SECS: u64 = 60;

/// Longest `jti` accepted. Ours are 22 characters (16 random bytes); a UUID is 36.
const MAX_JTI_LEN: usize = 64;

/// Why a token was refused. Each variant says enough for the client's error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Longer than [`MAX_TOKEN_LEN`].
    TooLong(usize),
    /// Not `header.payload.signature`.
    NotThreeParts,
    /// A part is not unpadded base64url (names the part).
    BadBase64(&'static str),
    /// A part is not a JSON object (names the part).
    BadJson(&'static str),
    /// The header has no `alg`.
    MissingAlg,
    /// `alg` is not `HS256` (`none`, `HS512`, `RS256`, ...).
    Algorithm(String),
    /// The header has `crit`: it names extensions we would have to understand, and we do not.
    Crit,
    /// `typ` is present and is not `JWT`.
    Typ(String),
    /// The signature does not match: wrong secret, or the token was altered.
    BadSignature,
    /// `exp`, `nbf` or `iat` is present but not a non-negative whole number of seconds.
    BadTime(&'static str),
    /// `exp` (plus the leeway) has passed.
    Expired { exp: u64 },
    /// `nbf` (minus the leeway) has not come yet.
    NotYetValid { nbf: u64 },
    /// No `app` claim.
    MissingApp,
    /// `app` is not a string.
    AppNotString,
    /// `app` is not a valid app name (see [`valid_app_name`]).
    BadAppName(String),
    /// No `jti` claim.
    MissingJti,
    /// `jti` is not a string of 1 to 64 characters from `[A-Za-z0-9_-]`.
    BadJti,
    /// The registry says this token was revoked.
    Revoked,
    /// The registry cannot be read, so revocation cannot be ruled out (the reason is for the
    /// server's log): refused rather than let a revoked token through.
    RegistryUnreadable(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::TooLong(n) => write!(
                f,
                "token is {n} bytes, more than the {MAX_TOKEN_LEN} accepted"
            ),
            Refused::NotThreeParts => f.write_str("token is not a JWT (header.payload.signature)"),
            Refused::BadBase64(part) => write!(f, "token {part} is not base64url"),
            Refused::BadJson(part) => write!(f, "token {part} is not a JSON object"),
            Refused::MissingAlg => f.write_str("token header has no alg"),
            Refused::Algorithm(alg) => {
                write!(f, "token algorithm {alg:?} refused: only HS256 is accepted")
            }
            Refused::Crit => f.write_str("token header has crit: no extension is supported"),
            Refused::Typ(typ) => write!(f, "token typ {typ:?} refused: only JWT is accepted"),
            Refused::BadSignature => {
                f.write_str("token signature does not match (wrong secret or altered token)")
            }
            Refused::BadTime(claim) => {
                write!(f, "token {claim} is not a whole number of seconds")
            }
            Refused::Expired { exp } => write!(f, "token expired (exp {exp})"),
            Refused::NotYetValid { nbf } => write!(f, "token not valid yet (nbf {nbf})"),
            Refused::MissingApp => f.write_str("token has no app claim"),
            Refused::AppNotString => f.write_str("token app claim is not a string"),
            Refused::BadAppName(app) => write!(
                f,
                "token app {app:?} is not a valid app name ([A-Za-z0-9][A-Za-z0-9._-]{{0,63}})"
            ),
            Refused::MissingJti => f.write_str("token has no jti claim"),
            Refused::BadJti => f.write_str("token jti is not 1 to 64 characters of [A-Za-z0-9_-]"),
            Refused::Revoked => f.write_str("token was revoked"),
            Refused::RegistryUnreadable(_) => {
                f.write_str("token cannot be checked: the server cannot read its token registry")
            }
        }
    }
}

impl std::error::Error for Refused {}

/// What a verified token says. Fields are private: a `Claims` only comes out of [`verify`] (or
/// [`issue`]'s caller knows them already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    app: String,
    jti: String,
    iat: Option<u64>,
    exp: Option<u64>,
    /// `"admin": true`: the token also opens the admin API (`server::session::http`).
    admin: bool,
}

impl Claims {
    /// Whether the token carries `"admin": true` (`logmill token issue --admin`). Any other
    /// value, or none, is not admin.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// The app this token belongs to; always a [`valid_app_name`].
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The token's id, as in the registry.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// Issued at, seconds since the epoch, if the token says.
    pub fn iat(&self) -> Option<u64> {
        self.iat
    }

    /// Expires at, seconds since the epoch; `None` never expires.
    pub fn exp(&self) -> Option<u64> {
        self.exp
    }
}

/// Whether `jti` is a token id we accept and can write in the registry as one word.
pub fn valid_jti(jti: &str) -> bool {
    !jti.is_empty()
        && jti.len() <= MAX_JTI_LEN
        && jti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Why [`issue`] would not make a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueError {
    BadAppName(String),
    BadJti(String),
}

impl std::fmt::Display for IssueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssueError::BadAppName(app) => write!(
                f,
                "{app:?} is not a valid app name: use 1 to 64 characters of letters, digits, \
                 '.', '_' and '-', starting with a letter or digit"
            ),
            IssueError::BadJti(jti) => write!(f, "{jti:?} is not a valid token id"),
        }
    }
}

impl std::error::Error for IssueError {}

/// Makes a token for `app`: header `{"alg":"HS256","typ":"JWT"}`, payload
/// `{"app","iat","exp"?,"jti"}`, signed with `secret`.
///
/// # Errors
/// An app name or jti that [`verify`] would refuse.
pub fn issue(
    secret: &[u8],
    app: &str,
    iat: u64,
    exp: Option<u64>,
    jti: &str,
) -> Result<String, IssueError> {
    issue_with(secret, app, iat, exp, jti, false)
}

/// As [`issue`]; with `admin`, the payload also has `"admin": true` ([`Claims::is_admin`]).
///
/// # Errors
/// As [`issue`].
pub fn issue_with(
    secret: &[u8],
    app: &str,
    iat: u64,
    exp: Option<u64>,
    jti: &str,
    admin: bool,
) -> Result<String, IssueError> {
    if !valid_app_name(app) {
        return Err(IssueError::BadAppName(app.to_owned()));
    }
    if !valid_jti(jti) {
        return Err(IssueError::BadJti(jti.to_owned()));
    }
    let mut payload = Map::new();
    payload.insert("app".into(), app.into());
    payload.insert("iat".into(), iat.into());
    if let Some(exp) = exp {
        payload.insert("exp".into(), exp.into());
    }
    payload.insert("jti".into(), jti.into());
    if admin {
        payload.insert("admin".into(), true.into());
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(Value::Object(payload).to_string());
    let signed = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(sign(secret, signed.as_bytes()));
    Ok(format!("{signed}.{signature}"))
}

/// A new random token id: 16 bytes from the operating system, base64url (22 characters).
///
/// # Errors
/// The operating system's random source failed.
pub fn new_jti() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Checks `token` against `secret` at time `now` (seconds since the epoch) and returns its
/// claims. Revocation is not checked here (it needs the registry): see
/// [`super::registry::Registry::is_revoked`].
///
/// # Errors
/// The first check that fails, in the order below.
pub fn verify(token: &[u8], secret: &[u8], now: u64) -> Result<Claims, Refused> {
    // 1-4. Size, shape, header, signature.
    let claims = signed_payload(token, secret)?;
    // 5. Times, with the leeway.
    let exp = seconds(&claims, "exp")?;
    if let Some(exp) = exp
        && now > exp.saturating_add(LEEWAY_SECS)
    {
        return Err(Refused::Expired { exp });
    }
    if let Some(nbf) = seconds(&claims, "nbf")?
        && now.saturating_add(LEEWAY_SECS) < nbf
    {
        return Err(Refused::NotYetValid { nbf });
    }
    let iat = seconds(&claims, "iat")?;
    // 6. The app.
    let app = match claims.get("app") {
        None => return Err(Refused::MissingApp),
        Some(Value::String(app)) => app,
        Some(_) => return Err(Refused::AppNotString),
    };
    if !valid_app_name(app) {
        return Err(Refused::BadAppName(app.clone()));
    }
    // 7. The token id, which revocation needs.
    let jti = match claims.get("jti") {
        None => return Err(Refused::MissingJti),
        Some(Value::String(jti)) if valid_jti(jti) => jti,
        Some(_) => return Err(Refused::BadJti),
    };
    // 8. Admin, only as the JSON value `true`.
    let admin = claims.get("admin") == Some(&Value::Bool(true));
    Ok(Claims {
        app: app.clone(),
        jti: jti.clone(),
        iat,
        exp,
        admin,
    })
}

/// Steps 1 to 4 of [`verify`]: the token's payload, once its size, shape, header and signature
/// are checked. Nothing in it is trusted before the signature is.
fn signed_payload(token: &[u8], secret: &[u8]) -> Result<Map<String, Value>, Refused> {
    // 1. Size, before anything is decoded.
    if token.len() > MAX_TOKEN_LEN {
        return Err(Refused::TooLong(token.len()));
    }
    // 2. Three parts.
    let mut parts = token.split(|&b| b == b'.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused::NotThreeParts);
    };
    // 3. The header pins the algorithm; nothing in it changes how the rest is checked.
    let header = json_object(header, "header")?;
    match header.get("alg") {
        None => return Err(Refused::MissingAlg),
        Some(Value::String(alg)) if alg == "HS256" => {}
        Some(Value::String(alg)) => return Err(Refused::Algorithm(alg.clone())),
        Some(other) => return Err(Refused::Algorithm(other.to_string())),
    }
    if header.contains_key("crit") {
        return Err(Refused::Crit);
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) if typ.eq_ignore_ascii_case("JWT") => {}
        Some(Value::String(typ)) => return Err(Refused::Typ(typ.clone())),
        Some(other) => return Err(Refused::Typ(other.to_string())),
    }
    // 4. The signature, compared in constant time (`verify_slice`), before the payload is read.
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Refused::BadBase64("signature"))?;
    let signed_len = header_len(token);
    let mut mac = mac(secret);
    mac.update(&token[..signed_len]);
    mac.verify_slice(&signature)
        .map_err(|_| Refused::BadSignature)?;
    json_object(payload, "payload")
}

/// The app a token names, if its signature is good, whatever else is wrong with it (expired,
/// not yet valid, revoked): whom a refusal is counted against. `None` for a token whose
/// signature does not verify, since anyone can write any app into one of those.
pub fn signed_app(token: &[u8], secret: &[u8]) -> Option<String> {
    match signed_payload(token, secret).ok()?.get("app") {
        Some(Value::String(app)) if valid_app_name(app) => Some(app.clone()),
        _ => None,
    }
}

/// An HMAC-SHA256 keyed with `secret`.
///
/// # Panics
/// Never: HMAC takes keys of any length (a long one is hashed), so `new_from_slice` cannot
/// fail for it.
fn mac(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// HMAC-SHA256 of `message` under `secret`.
fn sign(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = mac(secret);
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Length of `header.payload`, the signed part (the token has two dots, checked by the caller).
fn header_len(token: &[u8]) -> usize {
    token.iter().rposition(|&b| b == b'.').unwrap_or(0)
}

/// Decodes one base64url part into a JSON object.
fn json_object(part: &[u8], name: &'static str) -> Result<Map<String, Value>, Refused> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Refused::BadBase64(name))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Refused::BadJson(name)),
    }
}

/// A NumericDate claim: absent, or a non-negative integer (fractions are refused, not rounded).
fn seconds(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, Refused> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or(Refused::BadTime(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with any header and payload, signed with HS256 under `secret`.
    fn forge(header: &str, payload: &str, secret: &[u8]) -> String {
        let signed = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let signature = b64(&sign(secret, signed.as_bytes()));
        format!("{signed}.{signature}")
    }

    const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

    fn payload_with(extra: &str) -> String {
        format!(r#"{{"app":"billing","iat":{NOW},"jti":"abc123"{extra}}}"#)
    }

    fn check(token: &str) -> Result<Claims, Refused> {
        verify(token.as_bytes(), SECRET, NOW)
    }

    #[test]
    fn issued_token_verifies() {
        let token = issue(SECRET, "billing", NOW, Some(NOW + 3600), "abc123").unwrap();
        let claims = check(&token).unwrap();
        assert_eq!(claims.app(), "billing");
        assert_eq!(claims.jti(), "abc123");
        assert_eq!(claims.iat(), Some(NOW));
        assert_eq!(claims.exp(), Some(NOW + 3600));
        let forever = issue(SECRET, "billing", NOW, None, "abc123").unwrap();
        assert_eq!(check(&forever).unwrap().exp(), None);
    }

    /// Only `"admin": true` makes an admin token; an app token never is one.
    #[test]
    fn admin_claim() {
        let admin = issue_with(SECRET, "ops", NOW, None, "a1", true).unwrap();
        assert!(check(&admin).unwrap().is_admin());
        let plain = issue(SECRET, "ops", NOW, None, "a1").unwrap();
        assert!(!check(&plain).unwrap().is_admin());
        for value in [r#""true""#, "1", "null", "false"] {
            let forged = forge(
                HEADER,
                &payload_with(&format!(r#","admin":{value}"#)),
                SECRET,
            );
            assert!(!check(&forged).unwrap().is_admin(), "{value}");
        }
    }

    #[test]
    fn new_jti_is_random_and_valid() {
        let (a, b) = (new_jti().unwrap(), new_jti().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(valid_jti(&a));
    }

    #[test]
    fn wrong_secret_refused() {
        let token = issue(
            b"another secret of thirty-two b..",
            "billing",
            NOW,
            None,
            "j",
        )
        .unwrap();
        assert_eq!(check(&token), Err(Refused::BadSignature));
    }

    #[test]
    fn altered_payload_refused() {
        let token = issue(SECRET, "billing", NOW, None, "j").unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let other = b64(payload_with("").replace("billing", "payroll").as_bytes());
        let altered = format!("{}.{other}.{}", parts[0], parts[2]);
        assert_eq!(check(&altered), Err(Refused::BadSignature));
    }

    #[test]
    fn alg_none_refused() {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let token = format!("{header}.{}.", b64(payload_with("").as_bytes()));
        assert_eq!(check(&token), Err(Refused::Algorithm("none".into())));
    }

    #[test]
    fn hs512_refused_even_when_signed_with_the_secret() {
        let token = forge(r#"{"alg":"HS512"}"#, &payload_with(""), SECRET);
        assert_eq!(check(&token), Err(Refused::Algorithm("HS512".into())));
    }

    #[test]
    fn rs256_refused() {
        let token = forge(r#"{"alg":"RS256"}"#, &payload_with(""), SECRET);
        assert_eq!(check(&token), Err(Refused::Algorithm("RS256".into())));
    }

    #[test]
    fn other_algs_refused() {
        for header in [r#"{"alg":"hs256"}"#, r#"{"alg":""}"#, r#"{"alg":256}"#] {
            let token = forge(header, &payload_with(""), SECRET);
            assert!(
                matches!(check(&token), Err(Refused::Algorithm(_))),
                "{header}"
            );
        }
        let token = forge(r#"{"typ":"JWT"}"#, &payload_with(""), SECRET);
        assert_eq!(check(&token), Err(Refused::MissingAlg));
    }

    #[test]
    fn crit_refused() {
        let token = forge(
            r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
            &payload_with(""),
            SECRET,
        );
        assert_eq!(check(&token), Err(Refused::Crit));
    }

    #[test]
    fn typ_other_than_jwt_refused() {
        let token = forge(r#"{"alg":"HS256","typ":"JWE"}"#, &payload_with(""), SECRET);
        assert_eq!(check(&token), Err(Refused::Typ("JWE".into())));
        // typ is optional, and case-insensitive like the media type it is.
        assert!(check(&forge(r#"{"alg":"HS256"}"#, &payload_with(""), SECRET)).is_ok());
        assert!(
            check(&forge(
                r#"{"alg":"HS256","typ":"jwt"}"#,
                &payload_with(""),
                SECRET
            ))
            .is_ok()
        );
    }

    #[test]
    fn expired_refused_after_the_leeway_only() {
        let at = |exp: u64| forge(HEADER, &payload_with(&format!(r#","exp":{exp}"#)), SECRET);
        assert_eq!(
            check(&at(NOW - LEEWAY_SECS - 1)),
            Err(Refused::Expired {
                exp: NOW - LEEWAY_SECS - 1
            })
        );
        assert!(check(&at(NOW - LEEWAY_SECS)).is_ok(), "within the leeway");
        assert!(check(&at(NOW - 1)).is_ok(), "within the leeway");
        assert!(check(&at(NOW + 1)).is_ok());
    }

    #[test]
    fn not_yet_valid_refused_before_the_leeway_only() {
        let at = |nbf: u64| forge(HEADER, &payload_with(&format!(r#","nbf":{nbf}"#)), SECRET);
        assert_eq!(
            check(&at(NOW + LEEWAY_SECS + 1)),
            Err(Refused::NotYetValid {
                nbf: NOW + LEEWAY_SECS + 1
            })
        );
        assert!(check(&at(NOW + LEEWAY_SECS)).is_ok(), "within the leeway");
        assert!(check(&at(NOW)).is_ok());
    }

    #[test]
    fn times_must_be_whole_seconds() {
        for (extra, claim) in [
            (r#","exp":"tomorrow""#, "exp"),
            (r#","exp":1.5e9"#, "exp"),
            (r#","nbf":-1"#, "nbf"),
        ] {
            let token = forge(HEADER, &payload_with(extra), SECRET);
            assert_eq!(check(&token), Err(Refused::BadTime(claim)), "{extra}");
        }
        let token = forge(HEADER, r#"{"app":"a","iat":"now","jti":"j"}"#, SECRET);
        assert_eq!(check(&token), Err(Refused::BadTime("iat")));
    }

    #[test]
    fn garbage_refused() {
        assert_eq!(check(""), Err(Refused::NotThreeParts));
        assert_eq!(check("hello"), Err(Refused::NotThreeParts));
        assert_eq!(check("a.b.c.d"), Err(Refused::NotThreeParts));
        assert_eq!(check("!!.e30.xx"), Err(Refused::BadBase64("header")));
        // "e30" is `{}`; "W10" is `[]`; "bnVsbA" is `null`.
        assert_eq!(check("W10.e30.xx"), Err(Refused::BadJson("header")));
        assert_eq!(check("bnVsbA.e30.xx"), Err(Refused::BadJson("header")));
        let header = b64(HEADER.as_bytes());
        assert_eq!(
            check(&format!("{header}.e30.!!")),
            Err(Refused::BadBase64("signature"))
        );
        // Padding is not base64url as JWTs use it.
        let token = issue(SECRET, "billing", NOW, None, "j").unwrap();
        assert_eq!(
            check(&format!("{token}=")),
            Err(Refused::BadBase64("signature"))
        );
        assert_eq!(
            verify(&[0xff, b'.', 0xfe, b'.', 0], SECRET, NOW),
            Err(Refused::BadBase64("header"))
        );
        // A payload that is not JSON, correctly signed.
        let signed = format!("{header}.{}", b64(b"not json"));
        let token = format!("{signed}.{}", b64(&sign(SECRET, signed.as_bytes())));
        assert_eq!(check(&token), Err(Refused::BadJson("payload")));
    }

    #[test]
    fn oversized_refused_before_decoding() {
        // Not even a JWT: the size check comes first.
        let big = vec![b'!'; MAX_TOKEN_LEN + 1];
        assert_eq!(
            verify(&big, SECRET, NOW),
            Err(Refused::TooLong(MAX_TOKEN_LEN + 1))
        );
        // A well-signed token just over the limit.
        let pad = "x".repeat(MAX_TOKEN_LEN);
        let token = forge(HEADER, &payload_with(&format!(r#","pad":"{pad}""#)), SECRET);
        assert_eq!(check(&token), Err(Refused::TooLong(token.len())));
    }

    #[test]
    fn missing_or_non_string_app_refused() {
        let token = forge(HEADER, r#"{"iat":1,"jti":"j"}"#, SECRET);
        assert_eq!(check(&token), Err(Refused::MissingApp));
        for app in ["42", "null", r#"["billing"]"#, r#"{"name":"billing"}"#] {
            let token = forge(HEADER, &format!(r#"{{"app":{app},"jti":"j"}}"#), SECRET);
            assert_eq!(check(&token), Err(Refused::AppNotString), "{app}");
        }
    }

    #[test]
    fn bad_app_names_refused_in_tokens() {
        for app in [
            "..",
            "../etc",
            "a/b",
            "a\u{0}b",
            "",
            &"a".repeat(65),
            ".hidden",
        ] {
            let payload = serde_json::json!({"app": app, "jti": "j"}).to_string();
            let token = forge(HEADER, &payload, SECRET);
            assert_eq!(
                check(&token),
                Err(Refused::BadAppName(app.into())),
                "{app:?}"
            );
            assert_eq!(
                issue(SECRET, app, NOW, None, "j"),
                Err(IssueError::BadAppName(app.into()))
            );
        }
    }

    #[test]
    fn signed_app_only_for_a_good_signature() {
        let expired = forge(HEADER, &payload_with(r#","exp":1"#), SECRET);
        assert!(matches!(check(&expired), Err(Refused::Expired { .. })));
        assert_eq!(
            signed_app(expired.as_bytes(), SECRET).as_deref(),
            Some("billing")
        );
        let wrong_secret = forge(
            HEADER,
            &payload_with(""),
            b"another secret, 32 bytes long..",
        );
        assert_eq!(signed_app(wrong_secret.as_bytes(), SECRET), None);
        assert_eq!(signed_app(b"garbage", SECRET), None);
        let bad_name = forge(HEADER, r#"{"app":"../x","jti":"j"}"#, SECRET);
        assert_eq!(signed_app(bad_name.as_bytes(), SECRET), None);
    }

    #[test]
    fn missing_or_bad_jti_refused() {
        let token = forge(HEADER, r#"{"app":"billing","iat":1}"#, SECRET);
        assert_eq!(check(&token), Err(Refused::MissingJti));
        let long = "j".repeat(65);
        for jti in ["", "has space", "new\nline", &long] {
            let payload = serde_json::json!({"app": "billing", "jti": jti}).to_string();
            assert_eq!(
                check(&forge(HEADER, &payload, SECRET)),
                Err(Refused::BadJti),
                "{jti:?}"
            );
        }
        let token = forge(HEADER, r#"{"app":"billing","jti":7}"#, SECRET);
        assert_eq!(check(&token), Err(Refused::BadJti));
        let uuid = r#"{"app":"billing","jti":"3f2c1d9e-8b7a-4c6d-9e0f-1a2b3c4d5e6f"}"#;
        assert!(check(&forge(HEADER, uuid, SECRET)).is_ok());
    }

    #[test]
    fn every_refusal_reads_as_a_reason() {
        let message = Refused::Algorithm("none".into()).to_string();
        assert!(message.contains("only HS256"), "{message}");
        assert!(Refused::Revoked.to_string().contains("revoked"));
    }
}
