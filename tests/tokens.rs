//! `logmill token issue|list|revoke` through the real binary: the token it prints verifies
//! against the secret file it made, the files have private modes, the registry records issues
//! and revocations, and bad input is refused with a reason and nothing written.
//!
//! These tests cover the operator's commands and the files they leave; tokens presented by
//! connections (native hello, gRPC bearer, `--auth`) are tests/auth.rs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use common::TempDir;
use logmill::apps::registry::Registry;
use logmill::apps::token::{self, Refused};
use logmill::apps::{authenticate, secret};

fn token(args: &[&str]) -> Output {
    common::logmill()
        .arg("token")
        .args(args)
        .output()
        .expect("run logmill token")
}

/// Runs `logmill token ARGS` and returns its stdout; panics unless it succeeded.
fn ok(args: &[&str]) -> String {
    let out = token(args);
    assert!(
        out.status.success(),
        "logmill token {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `logmill token ARGS` and returns its stderr; panics if it succeeded.
fn refused(args: &[&str]) -> String {
    let out = token(args);
    assert!(!out.status.success(), "logmill token {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn issued_token_verifies_against_the_secret_file() {
    let dir = TempDir::new("token-issue");
    let logs = dir.0.join("logs");
    let d = logs.to_str().unwrap();
    let jwt = ok(&["issue", "--app", "billing", "--dir", d]);
    let jwt = jwt.trim_end();

    let secret_path = logs.join(".logmill/secret");
    assert_eq!(mode(&secret_path), 0o600);
    assert_eq!(mode(&logs.join(".logmill")), 0o700);
    assert_eq!(fs::read(&secret_path).unwrap().len(), secret::SECRET_LEN);

    let secret = secret::load(&secret_path).unwrap();
    let claims = token::verify(jwt.as_bytes(), secret.as_bytes(), now()).unwrap();
    assert_eq!(claims.app(), "billing");
    assert_eq!(claims.exp(), None);
    let iat = claims.iat().unwrap();
    assert!(iat.abs_diff(now()) < 60, "iat {iat}");

    // Another secret does not verify it.
    assert_eq!(
        token::verify(jwt.as_bytes(), &[1u8; 32], now()),
        Err(Refused::BadSignature)
    );

    // The registry names it, mode 0600; a second issue reuses the secret.
    let registry = logs.join(".logmill/tokens");
    assert_eq!(mode(&registry), 0o600);
    let text = fs::read_to_string(&registry).unwrap();
    assert!(
        text.contains(&format!("issued {} billing ", claims.jti())),
        "{text}"
    );
    let second = ok(&["issue", "--app", "billing", "--dir", d]);
    let second = token::verify(second.trim_end().as_bytes(), secret.as_bytes(), now()).unwrap();
    assert_ne!(second.jti(), claims.jti(), "each token has its own jti");
}

#[test]
fn expires_sets_exp() {
    let dir = TempDir::new("token-expires");
    let d = dir.0.to_str().unwrap();
    let before = now();
    let jwt = ok(&["issue", "--app", "web-1", "--expires", "30d", "--dir", d]);
    let secret = secret::load(&secret::default_path(&dir.0)).unwrap();
    let claims = token::verify(jwt.trim_end().as_bytes(), secret.as_bytes(), now()).unwrap();
    let exp = claims.exp().unwrap();
    assert!(
        (before + 30 * 86_400..=now() + 30 * 86_400).contains(&exp),
        "exp {exp}"
    );
    // 31 days later (past the leeway) it is refused.
    let later = exp + token::LEEWAY_SECS + 1;
    assert_eq!(
        token::verify(jwt.trim_end().as_bytes(), secret.as_bytes(), later),
        Err(Refused::Expired { exp })
    );
    let stderr = refused(&["issue", "--app", "web-1", "--expires", "0", "--dir", d]);
    assert!(stderr.contains("--expires"), "{stderr}");
    let stderr = refused(&["issue", "--app", "web-1", "--expires", "soon", "--dir", d]);
    assert!(stderr.contains("duration"), "{stderr}");
}

#[test]
fn list_and_revoke() {
    let dir = TempDir::new("token-revoke");
    let d = dir.0.to_str().unwrap();
    let billing = ok(&["issue", "--app", "billing", "--expires", "1h", "--dir", d]);
    ok(&["issue", "--app", "payroll", "--dir", d]);
    let secret = secret::load(&secret::default_path(&dir.0)).unwrap();
    let billing = billing.trim_end().as_bytes().to_vec();
    let jti = token::verify(&billing, secret.as_bytes(), now())
        .unwrap()
        .jti()
        .to_owned();

    let list = ok(&["list", "--dir", d]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    for column in ["JTI", "APP", "ISSUED", "EXPIRES", "REVOKED"] {
        assert!(lines[0].contains(column), "{list}");
    }
    assert!(
        lines[1].starts_with(&jti) && lines[1].contains("billing"),
        "{list}"
    );
    assert!(lines[1].ends_with(" -"), "not revoked yet: {list}");
    assert!(
        lines[2].contains("payroll") && lines[2].contains("never"),
        "{list}"
    );

    // A server's registry, opened before the revoke, sees it without a restart.
    let mut server = Registry::new(dir.0.join(".logmill/tokens"));
    assert!(authenticate(&billing, secret.as_bytes(), &mut server, now()).is_ok());
    assert_eq!(
        ok(&["revoke", &jti, "--dir", d]).trim_end(),
        format!("revoked {jti}")
    );
    assert_eq!(
        authenticate(&billing, secret.as_bytes(), &mut server, now()),
        Err(Refused::Revoked)
    );
    let list = ok(&["list", "--dir", d]);
    let row = list.lines().nth(1).unwrap();
    assert!(!row.ends_with(" -"), "revoked time shown: {list}");
    assert!(ok(&["revoke", &jti, "--dir", d]).contains("already revoked"));
    let stderr = refused(&["revoke", "no-such-jti", "--dir", d]);
    assert!(stderr.contains("no token with id"), "{stderr}");
}

#[test]
fn secret_file_flag_and_open_modes() {
    let dir = TempDir::new("token-secret-file");
    let path = dir.0.join("keys/secret");
    let p = path.to_str().unwrap();
    let jwt = ok(&["issue", "--app", "billing", "--secret-file", p]);
    assert_eq!(mode(&path), 0o600);
    assert!(
        dir.0.join("keys/tokens").exists(),
        "registry beside the secret"
    );
    assert_eq!(ok(&["list", "--secret-file", p]).lines().count(), 2);
    let secret = secret::load(&path).unwrap();
    assert!(token::verify(jwt.trim_end().as_bytes(), secret.as_bytes(), now()).is_ok());

    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = refused(&["issue", "--app", "billing", "--secret-file", p]);
    assert!(stderr.contains(&format!("chmod 600 {p}")), "{stderr}");

    fs::write(&path, b"short").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let stderr = refused(&["issue", "--app", "billing", "--secret-file", p]);
    assert!(stderr.contains("fewer than the 32"), "{stderr}");
}

#[test]
fn bad_app_names_refused_and_nothing_written() {
    let dir = TempDir::new("token-bad-app");
    let logs = dir.0.join("logs");
    let d = logs.to_str().unwrap();
    let long = "a".repeat(65);
    for app in ["..", "../etc", "a/b", "", &long, ".hidden", "-x"] {
        let app_flag = format!("--app={app}");
        let stderr = refused(&["issue", &app_flag, "--dir", d]);
        assert!(stderr.contains("not a valid app name"), "{app:?}: {stderr}");
    }
    assert!(!logs.exists(), "nothing created for a refused name");
    assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 0);
}
