//! The control panel's access control and JSON API, through the real binary and raw HTTP on
//! 127.0.0.1: `logmill admin set-password` (stdin), login (wrong and right password, the
//! cookie's flags), every `/api` route refused without a session or with a forged or expired
//! one, CSRF and cross-site refusals, the login rate limit, a token made through the API used
//! by a native client and then revoked, logout, and the admin token as an alternative.

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use common::http_client::{Answer, open, read_answer, start};
use common::{
    Client, DEADLINE, Server, TempDir, message, read_lines, set_admin_password, wait_for,
};
use logmill::protocol::native::{self, ErrorKind, Hello, ServerFrame};

const PASSWORD: &str = "correct horse battery";

/// A server in a new directory `name` whose admin password was set first (typed `twice` at the
/// prompt or once, as a script would pipe it), started with `args`.
fn console(name: &str, twice: bool, args: &[&str]) -> (TempDir, Server, SocketAddr) {
    let dir = TempDir::new(name);
    let input = if twice {
        format!("{PASSWORD}\n{PASSWORD}\n")
    } else {
        format!("{PASSWORD}\n")
    };
    let out = set_admin_password(&dir.0, &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (server, addr) = start(&dir.0, args);
    (dir, server, addr)
}

/// One request on a new connection: `headers` (each `Name: value`) after `Host`, a JSON body
/// if `body` is not empty.
fn call(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &str) -> Answer {
    let mut conn = open(addr);
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    conn.get_mut().write_all(request.as_bytes()).unwrap();
    read_answer(&mut conn)
}

fn json(answer: &Answer) -> serde_json::Value {
    serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", answer.text()))
}

/// Asserts `answer` is `status` with a JSON `{"error": ...}` containing `says`.
fn assert_error(answer: &Answer, status: u16, says: &str) {
    assert_eq!(answer.status, status, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let error = json(answer)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains(says), "{says:?} not in {error:?}");
}

/// A logged-in browser: the cookie header and the CSRF token.
struct Login {
    cookie: String,
    csrf: String,
}

impl Login {
    fn cookie(&self) -> String {
        format!("Cookie: {}", self.cookie)
    }

    fn csrf(&self) -> String {
        format!("X-CSRF-Token: {}", self.csrf)
    }
}

fn login(addr: SocketAddr, password: &str) -> Result<Login, Answer> {
    let answer = call(
        addr,
        "POST",
        "/api/login",
        &[],
        &serde_json::json!({ "password": password }).to_string(),
    );
    if answer.status != 200 {
        return Err(answer);
    }
    let set_cookie = answer
        .header("set-cookie")
        .expect("no Set-Cookie")
        .to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let csrf = json(&answer)["csrf"].as_str().unwrap().to_owned();
    Ok(Login { cookie, csrf })
}

fn server_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("_server.log")).unwrap_or_default()
}

/// The hello frame of a native client with `token`, acks on.
fn hello(token: &str) -> Vec<u8> {
    let mut out = Vec::new();
    native::encode_hello(
        &Hello {
            app: String::new(),
            instance: "pod-1".into(),
            token: token.into(),
            want_acks: true,
        },
        &mut out,
    );
    out
}

fn hello_with(server: &Server, token: &str) -> (Client, Option<ServerFrame>) {
    let mut client = server.client();
    client.send_raw(&hello(token));
    let answer = client.read_frame();
    (client, answer)
}

/// No password yet: login says how to set one; `set-password` (read at the next login, no
/// restart) stores an argon2id hash with mode 0600; a wrong password is 401, the right one 200
/// with a cookie that is HttpOnly, SameSite=Strict, Path=/ and has a Max-Age; every `/api`
/// route is 401 without a session and with a forged cookie, and answers with the session;
/// logout ends it server side.
#[test]
fn login_cookie_session_and_logout() {
    let dir = TempDir::new("console-login");
    let (server, addr) = start(&dir.0, &[]);

    let answer = call(addr, "POST", "/api/login", &[], r#"{"password":"x"}"#);
    assert_error(&answer, 503, "logmill admin set-password");

    // Two different entries: nothing is stored.
    let out = set_admin_password(&dir.0, &format!("{PASSWORD}\nsomething else\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("differ"));
    let out = set_admin_password(&dir.0, &format!("{PASSWORD}\n{PASSWORD}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.0.join(".logmill/admin_password");
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert!(!stored.contains(PASSWORD));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let wrong = login(addr, "not the password")
        .err()
        .expect("a wrong password got in");
    assert_error(&wrong, 401, "wrong password");
    assert!(wrong.header("set-cookie").is_none());
    let bad_body = call(addr, "POST", "/api/login", &[], "password=x");
    assert_error(&bad_body, 400, "JSON");

    let answer = call(
        addr,
        "POST",
        "/api/login",
        &[],
        &serde_json::json!({ "password": PASSWORD }).to_string(),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let set_cookie = answer.header("set-cookie").unwrap();
    let (pair, flags) = set_cookie.split_once(';').unwrap();
    let id = pair.strip_prefix("logmill_session=").unwrap();
    assert_eq!(id.len(), 64, "{set_cookie}");
    assert_eq!(flags, " HttpOnly; SameSite=Strict; Path=/; Max-Age=43200");
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let session = Login {
        cookie: pair.to_owned(),
        csrf: json(&answer)["csrf"].as_str().unwrap().to_owned(),
    };

    let routes = [
        ("GET", "/api/session"),
        ("GET", "/api/connections"),
        ("GET", "/api/server"),
        ("GET", "/api/tokens"),
        ("POST", "/api/tokens"),
        ("POST", "/api/tokens/abc/revoke"),
        ("POST", "/api/logout"),
        ("GET", "/api/no-such-route"),
    ];
    let forged = format!("Cookie: logmill_session={}", "0".repeat(64));
    for (method, path) in routes {
        assert_error(&call(addr, method, path, &[], ""), 401, "login required");
        assert_error(
            &call(addr, method, path, &[&forged], ""),
            401,
            "expired or unknown",
        );
    }

    let answer = call(addr, "GET", "/api/session", &[&session.cookie()], "");
    assert_eq!(answer.status, 200);
    assert_eq!(json(&answer)["csrf"], session.csrf.as_str());
    assert_eq!(json(&answer)["via"], "session");
    let answer = call(addr, "GET", "/api/connections", &[&session.cookie()], "");
    assert_eq!(answer.status, 200);
    assert!(json(&answer).is_object(), "{}", answer.text());
    let answer = call(addr, "GET", "/api/server", &[&session.cookie()], "");
    assert_eq!(answer.status, 200);
    let state = json(&answer);
    assert_eq!(state["status"], "OK");
    assert_eq!(state["degraded"], false);
    assert_eq!(state["buckets"][0]["app"], "_main");
    assert!(state["records_per_second"].is_number());
    assert_error(
        &call(addr, "GET", "/api/no-such-route", &[&session.cookie()], ""),
        404,
        "no such API path",
    );

    // Logout: the cookie is deleted in the browser, and the session on the server.
    let answer = call(addr, "POST", "/api/logout", &[&session.cookie()], "");
    assert_error(&answer, 403, "X-CSRF-Token");
    let answer = call(
        addr,
        "POST",
        "/api/logout",
        &[&session.cookie(), &session.csrf()],
        "",
    );
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("set-cookie"),
        Some("logmill_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
    );
    assert_error(
        &call(addr, "GET", "/api/session", &[&session.cookie()], ""),
        401,
        "expired or unknown",
    );
    let log = server_log(&dir.0);
    assert!(
        log.contains("console: admin logged in from 127.0.0.1"),
        "{log}"
    );
    assert!(log.contains("console: admin logged out"), "{log}");
    assert!(log.contains("POST /api/login from 127.0.0.1"), "{log}");
    assert!(log.contains("refused (401): wrong password"), "{log}");
    server.stop();
}

/// State-changing requests need the CSRF token and a same-site page: a POST without the token,
/// with a wrong one, from another site's page (`Sec-Fetch-Site`, `Origin`) is refused 403 even
/// with a valid cookie, and so is a cross-site login; nothing is created.
#[test]
fn csrf_and_cross_site_requests_are_refused() {
    let (dir, server, addr) = console("console-csrf", false, &[]);
    let s = login(addr, PASSWORD).unwrap_or_else(|a| panic!("{}", a.text()));
    let body = r#"{"app":"billing"}"#;
    let cookie = s.cookie();
    let csrf = s.csrf();
    let refused: [&[&str]; 5] = [
        &[&cookie],
        &[&cookie, "X-CSRF-Token: wrong"],
        &[&cookie, &csrf, "Sec-Fetch-Site: cross-site"],
        &[&cookie, &csrf, "Origin: http://evil.example"],
        &[&cookie, &csrf, "Origin: null"],
    ];
    for headers in refused {
        let answer = call(addr, "POST", "/api/tokens", headers, body);
        assert_eq!(answer.status, 403, "{headers:?}: {}", answer.text());
    }
    let answer = call(addr, "GET", "/api/tokens", &[&cookie], "");
    assert_eq!(json(&answer)["tokens"], serde_json::json!([]));
    // The same request from this host's own page is let through.
    let origin = format!("Origin: http://{addr}");
    let answer = call(
        addr,
        "POST",
        "/api/tokens",
        &[&cookie, &csrf, &origin, "Sec-Fetch-Site: same-origin"],
        body,
    );
    assert_eq!(answer.status, 201, "{}", answer.text());

    let password = serde_json::json!({ "password": PASSWORD }).to_string();
    let answer = call(
        addr,
        "POST",
        "/api/login",
        &["Origin: http://evil.example"],
        &password,
    );
    assert_error(&answer, 403, "cross-site login");
    assert!(server_log(&dir.0).contains("cross-site request refused"));
    server.stop();
}

/// A session ends when its lifetime is over (`--console-session-ttl`, hidden, for this test),
/// whatever the cookie's holder does.
#[test]
fn sessions_expire() {
    let (dir, server, addr) = console("console-expiry", false, &["--console-session-ttl", "1s"]);
    let answer = call(
        addr,
        "POST",
        "/api/login",
        &[],
        &serde_json::json!({ "password": PASSWORD }).to_string(),
    );
    assert_eq!(answer.status, 200);
    let set_cookie = answer.header("set-cookie").unwrap().to_owned();
    assert!(set_cookie.ends_with("Max-Age=1"), "{set_cookie}");
    let cookie = format!("Cookie: {}", set_cookie.split(';').next().unwrap());
    let expired = wait_for("the session to expire", DEADLINE, || {
        let answer = call(addr, "GET", "/api/session", &[&cookie], "");
        (answer.status != 200).then_some(answer)
    });
    assert_error(&expired, 401, "expired or unknown");
    server.stop();
    // A lifetime under a second is a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_logmill"))
        .args([
            "serve",
            "--port",
            "0",
            "--grpc-port",
            "0",
            "--console-session-ttl",
            "0s",
        ])
        .arg("--dir")
        .arg(&dir.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--console-session-ttl"));
}

/// Five wrong passwords from one address in a minute, then 429 with Retry-After, even for the
/// right password.
#[test]
fn login_attempts_are_rate_limited() {
    let (_dir, server, addr) = console("console-rate", false, &[]);
    let mut failures = 0;
    let limited = loop {
        let answer = login(addr, "guess").err().expect("a guess got in");
        match answer.status {
            401 => failures += 1,
            429 => break answer,
            other => panic!("{other}: {}", answer.text()),
        }
        assert!(failures <= 5, "a sixth wrong password was checked");
    };
    // The server-wide cap (10 checks a second) may answer 429 before the fifth failure on a
    // fast machine; the per-address limit answers it after.
    assert!(failures >= 1);
    assert_error(&limited, 429, "too many login attempts");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    if failures == 5 {
        let right = login(addr, PASSWORD)
            .err()
            .expect("the limit let a login through");
        assert_eq!(right.status, 429);
    }
    server.stop();
}

/// A token made through the API works for a native client and lands in its app's bucket; the
/// list shows it; revoking it through the API refuses the next connection. The admin token
/// (`logmill token issue --admin`) opens the API too, without a session or CSRF token.
#[test]
fn tokens_made_and_revoked_through_the_api() {
    let (dir, server, addr) = console("console-tokens", false, &[]);
    let s = login(addr, PASSWORD).unwrap_or_else(|a| panic!("{}", a.text()));
    let create = |body: &str| call(addr, "POST", "/api/tokens", &[&s.cookie(), &s.csrf()], body);
    assert_error(&create(r#"{"app":"no spaces"}"#), 400, "no spaces");
    assert_error(
        &create(r#"{"app":"billing","expires":"soon"}"#),
        400,
        "soon",
    );
    let answer = create(r#"{"app":"billing","expires":"30d"}"#);
    assert_eq!(answer.status, 201, "{}", answer.text());
    let made = json(&answer);
    let token = made["token"].as_str().unwrap().to_owned();
    let jti = made["jti"].as_str().unwrap().to_owned();
    assert_eq!(made["app"], "billing");
    assert!(made["expires"].as_u64().unwrap() > 0);

    let (mut client, welcome) = hello_with(&server, &token);
    assert!(
        matches!(welcome, Some(ServerFrame::Welcome { .. })),
        "{welcome:?}"
    );
    client.send(&[message("from a console token")]);
    client.wait_ack(1);
    let lines = read_lines(&dir.0.join("billing"));
    assert!(lines[0].ends_with(" from a console token"), "{lines:?}");

    let answer = call(addr, "GET", "/api/tokens", &[&s.cookie()], "");
    let list = json(&answer)["tokens"].clone();
    assert_eq!(list[0]["jti"], jti.as_str());
    assert_eq!(list[0]["app"], "billing");
    assert_eq!(list[0]["revoked"], serde_json::Value::Null);
    assert!(!answer.text().contains(&token), "the list shows the token");

    let revoke = format!("/api/tokens/{jti}/revoke");
    assert_error(
        &call(addr, "POST", &revoke, &[&s.cookie()], ""),
        403,
        "CSRF",
    );
    let answer = call(addr, "POST", &revoke, &[&s.cookie(), &s.csrf()], "");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(json(&answer)["revoked"], true);
    let answer = call(
        addr,
        "POST",
        "/api/tokens/nosuchtoken/revoke",
        &[&s.cookie(), &s.csrf()],
        "",
    );
    assert_error(&answer, 404, "no token with id");
    let (mut refused, answer) = hello_with(&server, &token);
    match answer {
        Some(ServerFrame::Error {
            kind: Some(ErrorKind::Unauthorized),
            message,
        }) => assert!(message.contains("revoked"), "{message}"),
        other => panic!("a revoked token was not refused: {other:?}"),
    }
    assert_eq!(refused.read_frame(), None);
    let answer = call(addr, "GET", "/api/tokens", &[&s.cookie()], "");
    assert!(json(&answer)["tokens"][0]["revoked"].is_u64());

    // The admin token: the API without a session, and without CSRF for a POST.
    let out = Command::new(env!("CARGO_BIN_EXE_logmill"))
        .args(["token", "issue", "--admin", "--app", "ops", "--dir"])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(out.status.success());
    let admin = format!(
        "Authorization: Bearer {}",
        String::from_utf8(out.stdout).unwrap().trim()
    );
    let answer = call(addr, "GET", "/api/tokens", &[&admin], "");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = call(addr, "POST", "/api/tokens", &[&admin], r#"{"app":"web"}"#);
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(json(&answer)["expires"], serde_json::Value::Null);
    // An app's token is not an admin token.
    let app = format!("Authorization: Bearer {token}");
    assert_eq!(call(addr, "GET", "/api/tokens", &[&app], "").status, 401);
    let log = server_log(&dir.0);
    assert!(log.contains(&format!("console: token {jti} issued for app billing")));
    assert!(log.contains(&format!("console: token {jti} revoked")));
    server.stop();
}

/// Exploration through the API, against records a native client stored: `/api/search` with
/// filters and a cursor (every record once, newest first), `/api/counts` by level, `/api/context`
/// around a record, and `/api/tail` (Server-Sent Events) delivering a record sent after it
/// opened; all refused without a session.
#[test]
fn explore_search_counts_context_and_live_tail() {
    use std::io::BufRead as _;

    let (dir, server, addr) = console("console-explore", true, &["--format", "json"]);
    for path in [
        "/api/search",
        "/api/counts",
        "/api/context?bucket=_main&seq=1",
        "/api/tail",
    ] {
        assert_error(&call(addr, "GET", path, &[], ""), 401, "");
    }
    let session = login(addr, PASSWORD).unwrap();
    let mut client = server.client();
    client.hello("shop", true);
    let records: Vec<_> = (0..30)
        .map(|i| {
            let mut r = message(&format!(
                "order {i} {}",
                if i % 3 == 0 { "failed" } else { "ok" }
            ));
            r.level = if i % 3 == 0 {
                logmill::record::Level::Error
            } else {
                logmill::record::Level::Info
            };
            r
        })
        .collect();
    client.send(&records);
    client.wait_ack(30);
    read_lines(&dir.0); // written

    // Errors containing "failed", three per page, newest first, each once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/search?level=error&q=FAILED&limit=3{cursor}");
        let answer = call(addr, "GET", &path, &[&session.cookie()], "");
        assert_eq!(answer.status, 200, "{}", answer.text());
        let page = json(&answer);
        for hit in page["records"].as_array().unwrap() {
            assert_eq!(hit["level"], "error");
            seen.push(hit["message"].as_str().unwrap().to_owned());
        }
        match page["cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let want: Vec<String> = (0..30)
        .rev()
        .filter(|i| i % 3 == 0)
        .map(|i| format!("order {i} failed"))
        .collect();
    assert_eq!(seen, want);

    let counts = json(&call(
        addr,
        "GET",
        "/api/counts?buckets=10",
        &[&session.cookie()],
        "",
    ));
    assert_eq!(counts["by_level"]["error"], 10, "{counts}");
    assert_eq!(counts["by_level"]["info"], 20, "{counts}");
    let histogram: u64 = counts["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["counts"].as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        histogram, 30,
        "the records are within the last day: {counts}"
    );

    let around = json(&call(
        addr,
        "GET",
        "/api/context?bucket=_main&seq=10&n=2",
        &[&session.cookie()],
        "",
    ));
    let seqs: Vec<u64> = around["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [8, 9, 10, 11, 12]);
    assert_error(
        &call(
            addr,
            "GET",
            "/api/search?level=loud",
            &[&session.cookie()],
            "",
        ),
        400,
        "level",
    );

    // The live tail: the stream's head, then a record sent after it opened.
    let mut tail = open(addr);
    write!(
        tail.get_mut(),
        "GET /api/tail?q=live HTTP/1.1\r\nHost: {addr}\r\n{}\r\n\r\n",
        session.cookie()
    )
    .unwrap();
    let mut head = String::new();
    loop {
        let mut line = String::new();
        tail.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/event-stream"), "{head}");
    wait_for("the tail to open", DEADLINE, || {
        server_log(&dir.0)
            .contains("live tail opened")
            .then_some(())
    });
    client.send(&[message("not this one"), message("a live record")]);
    client.wait_ack(32);
    let mut event = String::new();
    while !event.contains("\n\n") {
        let mut line = String::new();
        assert!(
            tail.read_line(&mut line).unwrap() > 0,
            "the stream ended: {event}"
        );
        if line.starts_with(':') {
            continue; // keepalive
        }
        event.push_str(&line);
    }
    assert!(event.starts_with("event: record\ndata: "), "{event}");
    let data = event
        .trim_end()
        .strip_prefix("event: record\ndata: ")
        .unwrap();
    let hit: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(hit["message"], "a live record");
    assert_eq!(hit["bucket"], "_main", "anonymous, labelled shop");
    assert_eq!(hit["app"], "shop");
    drop(server);
}

/// A live tail whose client does not read is dropped once it leaves 256 KiB unread: it gets a
/// `notice` event saying so, then the end of the stream; the server goes on storing and serving.
#[test]
fn a_tail_nobody_reads_is_dropped_with_a_notice() {
    use std::io::Read as _;

    let (dir, server, addr) = console("console-slow-tail", true, &["--format", "json"]);
    let session = login(addr, PASSWORD).unwrap();
    // A small receive buffer, so the server's output backs up soon after the kernel's buffers.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut tail: std::net::TcpStream = socket.into();
    tail.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        tail,
        "GET /api/tail HTTP/1.1\r\nHost: {addr}\r\n{}\r\n\r\n",
        session.cookie()
    )
    .unwrap();
    wait_for("the tail to open", DEADLINE, || {
        server_log(&dir.0)
            .contains("live tail opened")
            .then_some(())
    });
    // About 24 MB of records while the tail reads nothing.
    let mut client = server.client();
    client.hello("", true);
    let padding = "x".repeat(480);
    for batch in 0..48 {
        let records: Vec<_> = (0..1000)
            .map(|i| message(&format!("record {batch}/{i} {padding}")))
            .collect();
        client.send(&records);
    }
    client.wait_ack(48_000);
    let mut stream = Vec::new();
    tail.read_to_end(&mut stream).unwrap();
    let stream = String::from_utf8_lossy(&stream);
    let notice = stream
        .rfind("event: notice\ndata: ")
        .unwrap_or_else(|| panic!("no notice in the {} bytes read", stream.len()));
    assert!(
        stream[notice..].contains("dropped"),
        "{}",
        &stream[notice..]
    );
    assert!(stream.ends_with("\n\n"), "the notice is the last event");
    assert!(
        stream.matches("event: record").count() < 48_000,
        "the tail was cut short"
    );
    // The server went on: every record stored, and it still answers.
    assert_eq!(read_lines(&dir.0).len(), 48_000);
    let answer = call(addr, "GET", "/api/session", &[&session.cookie()], "");
    assert_eq!(answer.status, 200);
    drop(server);
}
