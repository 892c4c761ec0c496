//! The console's JSON API: login, logout and the session ([`super::auth`] decides), who is
//! connected, the server's state, and the application tokens (the same functions as
//! `logmill token issue|list|revoke`, `apps::cli`). Every answer is JSON; every refusal is
//! `{"error": "..."}` with its status, and a line in `_server.log`.
//!
//! Each route is answered on the event loop: the token routes read or append one small file
//! (the registry), `/api/server` lists the bucket directories (bounded by [`MAX_BUCKETS`]).

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::Console;
use super::auth::{Access, Refusal};
use crate::apps::cli::{self, CliError};
use crate::apps::connections::{MAX_STATUS_BYTES, status_json};
use crate::apps::registry::{RegistryError, Revoke, format_time};
use crate::apps::token;
use crate::protocol::http1::Request;
use crate::server::session::http::admin::Guard;
use crate::server::session::http::answer::Answer;
use crate::server::session::http::routes::{self, Api};
use crate::server::session::{Context, Sink};
use crate::storage::bucket::valid_app_name;

/// A login or token request body larger than this is refused (`413`): they are a few words.
pub const MAX_BODY: usize = 4096;
/// Buckets listed by `/api/server`; more are counted, not listed.
pub const MAX_BUCKETS: usize = 1000;

pub use super::reply::{json, refusal};

fn error(status: u16, message: impl Into<String>) -> Refusal {
    let reason = match status {
        404 => "Not Found",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        _ => "Bad Request",
    };
    Refusal {
        status,
        reason,
        message: message.into(),
        retry_after: None,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The guard with its edge: who `request` is ([`super::auth::Auth::check`]), or the JSON
/// refusal to send back, already logged in `_server.log`. For the lead's `/api` routes (search,
/// counts, tail) as for these.
///
/// # Errors
/// The refusal's answer, boxed (it is large; refusals are rare) (`401`, `403` or `503`, `{"error": ...}`).
pub fn guard(
    request: &Request<'_>,
    console: &Console,
    admin: &Guard,
    sink: &Sink<'_>,
    cx: &mut Context<'_>,
) -> Result<Access, Box<Answer>> {
    console
        .auth
        .check(request, admin, Instant::now(), unix_now())
        .map_err(|refused| {
            cx.log.warn(format_args!(
                "console: {} {} from {} refused ({}): {}",
                request.method,
                request.path,
                sink.peer(),
                refused.status,
                refused.message
            ));
            Box::new(refusal(&refused))
        })
}

/// The answer to one console API request: the guard first (but for login), then the route.
pub fn answer(
    api: Api,
    request: &Request<'_>,
    console: &Console,
    admin: &Guard,
    sink: &mut Sink<'_>,
    cx: &mut Context<'_>,
) -> Answer {
    let peer = sink.peer();
    let now = Instant::now();
    let refused = |refused: Refusal, cx: &mut Context<'_>| {
        cx.log.warn(format_args!(
            "console: {} {} from {peer} refused ({}): {}",
            request.method, request.path, refused.status, refused.message
        ));
        refusal(&refused)
    };
    if request.body.len() > MAX_BODY {
        return refused(
            error(
                413,
                format!("a body over {MAX_BODY} bytes: not a console request"),
            ),
            cx,
        );
    }
    if api == Api::Login {
        return match console.auth.login(request, peer.ip(), now) {
            Ok((id, session)) => {
                cx.log
                    .info(format_args!("console: admin logged in from {peer}"));
                let mut answer = json(
                    200,
                    "OK",
                    &json!({ "csrf": session.csrf, "expires_in": session.expires_in.as_secs() }),
                );
                answer
                    .headers
                    .push(("Set-Cookie", console.auth.set_cookie(Some(&id))));
                answer
            }
            Err(refusal) => refused(refusal, cx),
        };
    }
    let access = match guard(request, console, admin, sink, cx) {
        Ok(access) => access,
        Err(answer) => return *answer,
    };
    let result = match api {
        // Answered above, before the guard.
        Api::Login => Err(error(400, "login is answered before the guard")),
        Api::Logout => {
            if let Access::Session(session) = &access {
                console.auth.logout(session);
            }
            cx.log
                .info(format_args!("console: admin logged out from {peer}"));
            let mut answer = json(200, "OK", &json!({ "ok": true }));
            answer
                .headers
                .push(("Set-Cookie", console.auth.set_cookie(None)));
            return answer;
        }
        Api::Session => Ok(match &access {
            Access::Session(s) => json!({
                "via": "session",
                "csrf": s.csrf,
                "expires_in": s.expires_in.as_secs(),
            }),
            Access::AdminToken => json!({ "via": "admin_token" }),
        }),
        Api::Connections => {
            let rows = cx.shared.connections().rows();
            let body = status_json(&rows, MAX_STATUS_BYTES - 1024);
            let mut answer = json(200, "OK", &Value::Null);
            answer.body = body.into_bytes();
            return answer;
        }
        Api::Server => Ok(server(console, cx)),
        Api::Tokens => tokens(console),
        Api::CreateToken => create_token(console, request, cx, peer),
        Api::RevokeToken => revoke_token(console, request, cx, peer),
        Api::Search | Api::Counts | Api::Context | Api::Tail => {
            return super::search::answer(api, request, console, sink, cx);
        }
        Api::Unknown => Err(error(404, format!("no such API path: {}", request.path))),
    };
    match result {
        Ok(value) => {
            let status = if api == Api::CreateToken { 201 } else { 200 };
            json(status, if status == 201 { "Created" } else { "OK" }, &value)
        }
        Err(refusal) => refused(refusal, cx),
    }
}

/// `GET /api/server`: the health line's fields, records/s since the last ask, disk use.
fn server(console: &Console, cx: &Context<'_>) -> Value {
    let shared = cx.shared;
    let stats = shared.stats();
    let listed = shared.connections().counts();
    let written = stats.records_written();
    let (buckets, more) = buckets(&console.dir);
    json!({
        "status": if stats.degraded() { "DEGRADED" } else { "OK" },
        "degraded": stats.degraded(),
        "name": shared.name(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": shared.uptime().as_secs(),
        "connections": stats.connections(),
        "records_written": written,
        "records_per_second": console.rate(written, Instant::now(), shared.uptime()),
        "pending_bytes": shared.handoff().pending().pending(),
        "partial_bytes": stats.partial_bytes(),
        "shed": stats.shed(),
        "refused_auth": stats.refused_auth(),
        "apps": listed.apps,
        "instances": listed.instances,
        "sessions": console.auth.session_count(),
        "buckets": buckets,
        "buckets_not_listed": more,
        "forward": shared.forward().to_json(crate::storage::search::filter::now_ns()),
    })
}

/// `[{app, bytes, files}]` for `_main` (the files `<dir>/_main.log*`) and each bucket
/// directory; and how many more there were past [`MAX_BUCKETS`]. An unreadable entry is left
/// out.
fn buckets(dir: &Path) -> (Vec<Value>, usize) {
    let sum = |dir: &Path| -> (u64, u64) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return (0, 0);
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("_main.log"))
            .filter_map(|e| e.metadata().ok())
            .filter(std::fs::Metadata::is_file)
            .fold((0, 0), |(bytes, files), m| {
                (bytes.saturating_add(m.len()), files + 1)
            })
    };
    let (bytes, files) = sum(dir);
    let mut list = vec![json!({ "app": "_main", "bytes": bytes, "files": files })];
    let mut more = 0;
    let mut apps: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| valid_app_name(name))
        .collect();
    apps.sort();
    for app in apps {
        if list.len() > MAX_BUCKETS {
            more += 1;
            continue;
        }
        let (bytes, files) = sum(&dir.join(&app));
        if files > 0 {
            list.push(json!({ "app": app, "bytes": bytes, "files": files }));
        }
    }
    (list, more)
}

fn registry_error(e: &CliError) -> Refusal {
    match e {
        CliError::Registry(RegistryError::UnknownJti(_)) => error(404, e.to_string()),
        CliError::Issue(_) | CliError::Expires(_) => error(400, e.to_string()),
        _ => error(500, e.to_string()),
    }
}

/// `GET /api/tokens`: every issued token (never the token itself: it is shown once).
fn tokens(console: &Console) -> Result<Value, Refusal> {
    let now = unix_now();
    let entries = cli::list(&console.secret_path).map_err(|e| registry_error(&e))?;
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "jti": e.jti(),
                "app": e.app(),
                "issued": e.issued(),
                "issued_text": format_time(e.issued()),
                "expires": e.expires(),
                "expired": e.expires().is_some_and(|t| t < now),
                "revoked": e.revoked(),
            })
        })
        .collect();
    Ok(json!({ "tokens": rows }))
}

/// `POST /api/tokens` `{"app": "billing", "expires": "30d" | null}`: a new app token, shown
/// once.
fn create_token(
    console: &Console,
    request: &Request<'_>,
    cx: &mut Context<'_>,
    peer: std::net::SocketAddr,
) -> Result<Value, Refusal> {
    let body: Value = serde_json::from_slice(&request.body).map_err(|_| {
        error(
            400,
            "expected a JSON body {\"app\": \"...\", \"expires\": \"30d\"}",
        )
    })?;
    let app = body
        .get("app")
        .and_then(Value::as_str)
        .ok_or_else(|| error(400, "\"app\" (a string) is required"))?;
    let expires = match body.get("expires") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            Some(crate::config::parse_duration(s).map_err(|e| error(400, e))?)
        }
        Some(_) => {
            return Err(error(
                400,
                "\"expires\" is a duration like \"30d\", or null",
            ));
        }
    };
    let issued = cli::issue(&console.secret_path, app, expires, false, unix_now())
        .map_err(|e| registry_error(&e))?;
    cx.log.info(format_args!(
        "console: token {} issued for app {} from {peer}",
        issued.jti, issued.app
    ));
    Ok(json!({
        "token": issued.token,
        "jti": issued.jti,
        "app": issued.app,
        "expires": issued.expires,
    }))
}

/// `POST /api/tokens/<jti>/revoke`.
fn revoke_token(
    console: &Console,
    request: &Request<'_>,
    cx: &mut Context<'_>,
    peer: std::net::SocketAddr,
) -> Result<Value, Refusal> {
    let jti = routes::revoke_jti(request.path)
        .filter(|jti| token::valid_jti(jti))
        .ok_or_else(|| error(400, "not a token id"))?;
    let already =
        match cli::revoke(&console.secret_path, jti, unix_now()).map_err(|e| registry_error(&e))? {
            Revoke::Done => None,
            Revoke::Already(at) => Some(at),
        };
    cx.log.info(format_args!(
        "console: token {jti} revoked from {peer}{}",
        if already.is_some() { " (already)" } else { "" }
    ));
    Ok(json!({ "jti": jti, "revoked": true, "already_revoked_at": already }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_sum_main_and_app_directories() {
        let dir = std::env::temp_dir().join(format!("logmill-api-buckets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("billing")).unwrap();
        std::fs::create_dir_all(dir.join(".logmill")).unwrap();
        std::fs::write(dir.join("_main.log"), b"12345").unwrap();
        std::fs::write(dir.join("_main.log.0"), b"123").unwrap();
        std::fs::write(dir.join("_server.log"), b"not records").unwrap();
        std::fs::write(dir.join("billing/_main.log"), b"12").unwrap();
        let (list, more) = buckets(&dir);
        assert_eq!(
            Value::Array(list),
            json!([
                {"app": "_main", "bytes": 8, "files": 2},
                {"app": "billing", "bytes": 2, "files": 1},
            ])
        );
        assert_eq!(more, 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refusals_are_json_errors() {
        let mut refused = error(404, "no such thing");
        refused.retry_after = Some(3);
        let answer = refusal(&refused);
        assert_eq!(answer.status, 404);
        assert_eq!(answer.body, br#"{"error":"no such thing"}"#);
        assert!(answer.headers.contains(&("Retry-After", "3".into())));
    }
}
