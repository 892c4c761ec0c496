//! The web console in a real browser against the real binary: headless Chromium (Debian's),
//! driven by `playwright-core` (tests/browser/console.mjs), in one browser session: log in
//! (a wrong password refused first), issue a token, use it from the native client, see the
//! instance in Connections, find its records in Explore by level and text (details, context),
//! watch a new record arrive in the live tail (and wait while paused), see its bucket on the
//! Server page, revoke the token and see the next connection refused, log out and be refused.
//!
//! The page's script asks this test, one JSON line at a time, for what a browser cannot do
//! (the native client's connections); this test answers and, at the end, judges what the pages
//! showed against what it sent and what is on disk. Screenshots of each page (1280x800) go to
//! `target/tmp/console-screenshots/`; with `LOGMILL_UPDATE_SCREENSHOTS=1` they are copied to
//! `docs/screenshots/`, which the README shows.
//!
//! Also here, without a browser: the pages and files as served (types, the security headers).
//!
//! The tools come from `scripts/install-browser.sh` and `tests/common/tools.rs` (`browser`):
//! under CI a missing one fails the test, elsewhere it skips visibly.

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::http_client;
use common::{Client, Server, TempDir, read_lines_while_written, seq_of, wait_for};
use logmill::protocol::native::{self, ErrorKind, Hello, ServerFrame};
use logmill::record::{Body, Level, Record, Value};
use serde_json::{Value as Json, json};

/// Time for the whole browser run: Chromium's start and every step of the pages.
const BROWSER_DEADLINE: Duration = Duration::from_secs(180);
const PASSWORD: &str = "correct horse battery staple";
/// The instance the native client names: the test looks for it in Connections.
const INSTANCE: &str = "console-test";

/// The server, with the admin password set for the console (`logmill admin set-password`,
/// the password on stdin), on ephemeral ports.
fn start(dir: &Path) -> Server {
    let out = common::set_admin_password(dir, &format!("{PASSWORD}\n"));
    assert!(
        out.status.success(),
        "set-password: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_logmill"));
    command
        .args(["serve", "--port", "0", "--grpc-port", "0", "--dir"])
        .arg(dir);
    Server::spawn(command, dir)
}

fn record(level: Level, message: &str) -> Record<'static> {
    Record {
        level,
        body: Body::Message(message.to_owned().into()),
        logger: "checkout".into(),
        fields: vec![("order".into(), Value::Str("43".into()))],
        ..Record::default()
    }
}

/// Ordinary traffic over the last two hours for the histogram of the screenshot: one to five
/// records a minute, stamped by the client (its time is the record's), at every level from
/// debug to error; no message says "payment".
fn background() -> Vec<Record<'static>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let levels = [
        Level::Info,
        Level::Debug,
        Level::Info,
        Level::Notice,
        Level::Info,
        Level::Warning,
        Level::Info,
        Level::Error,
    ];
    let messages = [
        "GET /cart 200 in 12 ms",
        "cache miss for cart 7",
        "GET /products 200 in 31 ms",
        "stock sync done",
        "POST /cart/items 201 in 18 ms",
    ];
    let mut records = Vec::new();
    for minutes_ago in (1..=120u64).rev() {
        // A wave of traffic, and a pseudo-random wobble on it.
        let per_minute = 1 + (minutes_ago % 40) / 10 + (minutes_ago * 7919 % 3);
        for k in 0..per_minute {
            let i = records.len();
            records.push(Record {
                timestamp_ns: now - minutes_ago * 60_000_000_000 + k * 1_000_000_000,
                level: levels[(i * 7 + i / 5) % levels.len()],
                body: Body::Message(messages[i % messages.len()].into()),
                logger: ["http", "cache", "worker"][i % 3].into(),
                ..Record::default()
            });
        }
    }
    records
}

/// The hello of a native client with `token`, naming [`INSTANCE`].
fn hello(token: &str) -> Vec<u8> {
    let mut out = Vec::new();
    native::encode_hello(
        &Hello {
            app: String::new(),
            instance: INSTANCE.into(),
            token: token.into(),
            want_acks: true,
        },
        &mut out,
    );
    out
}

/// The native client the page's questions are about: one connection, kept open so that it
/// shows in Connections, and the records it sent.
struct Native {
    client: Option<Client>,
    sent: u64,
}

impl Native {
    /// Answers one of console.mjs's questions.
    fn answer(&mut self, server: &Server, question: &Json) -> Json {
        if let Some(token) = question["connect"].as_str() {
            let mut client = server.client();
            client.send_raw(&hello(token));
            let welcome = client.read_frame();
            assert!(
                matches!(welcome, Some(ServerFrame::Welcome { .. })),
                "the token was refused: {welcome:?}"
            );
            // An hour of ordinary traffic first, for the histogram of the screenshot.
            let background = background();
            client.send(&background);
            client.send(&[
                record(Level::Info, "checkout started for order 43"),
                record(Level::Warning, "payment slow for order 43"),
                record(Level::Error, "payment failed for order 43"),
            ]);
            self.sent = background.len() as u64 + 3;
            let last_seq = client.wait_ack(self.sent);
            self.client = Some(client);
            return json!({ "last_seq": last_seq });
        }
        if let Some(message) = question["send"].as_str() {
            let level = match question["level"].as_str() {
                Some("warning") => Level::Warning,
                _ => Level::Info,
            };
            let client = self.client.as_mut().expect("a send before the connect");
            client.send(&[record(level, message)]);
            self.sent += 1;
            return json!({ "last_seq": client.wait_ack(self.sent) });
        }
        if let Some(token) = question["connect_again"].as_str() {
            let mut client = server.client();
            client.send_raw(&hello(token));
            return match client.read_frame() {
                Some(ServerFrame::Error {
                    kind: Some(ErrorKind::Unauthorized),
                    message,
                }) => json!({ "refused": message }),
                other => json!({ "not_refused": format!("{other:?}") }),
            };
        }
        panic!("console.mjs asked what this test cannot answer: {question}");
    }
}

/// Writes one JSON line to console.mjs.
fn tell(stdin: &mut ChildStdin, answer: &Json) {
    writeln!(stdin, "{answer}").expect("write to console.mjs");
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

const PAGES: [&str; 6] = [
    "login",
    "tokens",
    "connections",
    "explore",
    "explore-record",
    "server",
];

/// With `LOGMILL_UPDATE_SCREENSHOTS=1`, the run's screenshots become the README's.
fn update_docs() {
    if std::env::var_os("LOGMILL_UPDATE_SCREENSHOTS").is_none_or(|v| v != "1") {
        return;
    }
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&docs).unwrap();
    for page in PAGES {
        let name = format!("{page}.png");
        std::fs::copy(screenshots().join(&name), docs.join(&name)).unwrap();
    }
}

fn strings(value: &Json) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn console_in_a_browser_from_login_to_logout() {
    let Some(browser) = tools::require(
        "console_browser::console_in_a_browser_from_login_to_logout",
        tools::browser(),
    ) else {
        return;
    };
    let dir = TempDir::new("console-browser");
    let server = start(&dir.0);
    let http = server.listening["grpc"].as_str().unwrap().to_owned();
    let shots = screenshots();
    std::fs::create_dir_all(&shots).unwrap();
    for page in PAGES {
        // A screenshot left by an earlier run must not pass for this one's.
        let _ = std::fs::remove_file(shots.join(format!("{page}.png")));
    }

    let stderr_path = dir.0.join("console.stderr");
    let mut child = Command::new(&browser.node)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.mjs"))
        .env("BROWSER_TOOLS", &browser.folder)
        .env("CHROMIUM", &browser.chromium)
        .env("CONSOLE_URL", format!("http://{http}"))
        .env("CONSOLE_PASSWORD", PASSWORD)
        .env("SCREENSHOTS", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start node tests/browser/console.mjs");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // Lines are read on a thread so that waiting for one has a deadline.
    let (lines, from_page) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });

    let started = Instant::now();
    let mut native = Native {
        client: None,
        sent: 0,
    };
    let run: Json = loop {
        let left = BROWSER_DEADLINE.saturating_sub(started.elapsed());
        let line = match from_page.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("console.mjs said nothing more ({e}): {stderr}");
            }
        };
        let message: Json = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("console.mjs printed {line:?}: {e}"));
        match message.get("ask") {
            Some(question) => tell(&mut stdin, &native.answer(&server, question)),
            None => break message,
        }
    };
    let status = wait_for("console.mjs to exit", common::DEADLINE, || {
        child.try_wait().unwrap()
    });
    let about = format!("{run:#}");
    assert!(status.success(), "console.mjs: {status}: {about}");
    assert_eq!(run["done"], true, "{about}");
    let seen = &run["seen"];

    // The login: no session, the login page; a wrong password refused there.
    assert_eq!(seen["redirected_to"], "/login", "{about}");
    assert!(
        seen["wrong_password"]
            .as_str()
            .unwrap()
            .contains("Wrong password"),
        "{about}"
    );
    assert_eq!(seen["after_wrong_password"], "/login", "{about}");
    let cookie = &seen["cookie"];
    assert_eq!(cookie["httpOnly"], true, "{about}");
    assert_eq!(cookie["sameSite"], "Strict", "{about}");

    // The token: shown once with its snippets, listed, and it works from the native client.
    let snippets = seen["token_snippets"].as_str().unwrap();
    for what in ["Native client", "gRPC", "WebSocket", "not shown again"] {
        assert!(snippets.contains(what), "{what:?} in {snippets:?}");
    }
    assert!(
        seen["token_row"].as_str().unwrap().contains("valid"),
        "{about}"
    );
    let connection = seen["connection_row"].as_str().unwrap();
    assert!(
        connection.contains("native") && connection.contains(INSTANCE),
        "{connection:?}"
    );

    // Explore's first page is 100 records; scrolling to its end loads the next, newest first
    // and none twice.
    assert_eq!(seen["first_page"], 100, "{about}");
    let seqs: Vec<u64> = seen["scrolled_seqs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert!(seqs.len() > 100, "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");

    // Explore: level warning and above, "PAYMENT" in any case: the warning and the error.
    assert_eq!(seen["explore_level_field"], "warning", "{about}");
    assert_eq!(seen["explore_text_field"], "PAYMENT", "{about}");
    let results = strings(&seen["explore_results"]);
    assert_eq!(results.len(), 2, "{results:#?}");
    assert!(
        results[0].contains("payment failed for order 43") && results[0].contains("ERROR"),
        "newest first: {results:#?}"
    );
    assert!(
        results[1].contains("payment slow for order 43") && results[1].contains("WARNING"),
        "{results:#?}"
    );
    // "error 1": the legend's words, whatever the layout put between them.
    let levels: Vec<String> = strings(&seen["explore_levels"])
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let levels = levels.join(" | ");
    assert!(
        levels.contains("error 1") && levels.contains("warning 1") && !levels.contains("info"),
        "{levels}"
    );
    // The details: the fields, and the stored line as it is on disk.
    let details = seen["details"].as_str().unwrap();
    assert!(
        details.contains("order") && details.contains("checkout") && details.contains(INSTANCE),
        "{details}"
    );
    let on_disk = wait_for("the records on disk", common::DEADLINE, || {
        let lines = read_lines_while_written(&dir.0.join("shop"));
        (lines.len() as u64 >= native.sent).then_some(lines)
    });
    let failed = on_disk
        .iter()
        .find(|l| l.contains("payment failed for order 43"))
        .unwrap();
    assert_eq!(
        seen["raw"].as_str().unwrap().trim(),
        failed.as_str(),
        "{about}"
    );
    // Its context: the three records of the connection around it, itself marked.
    let context = strings(&seen["context"]);
    assert!(
        context.iter().any(|l| l.contains("checkout started")),
        "{context:#?}"
    );
    assert!(
        seen["context_current"]
            .as_str()
            .unwrap()
            .contains("payment failed"),
        "{about}"
    );

    // The live tail: the record sent while live on top, the one sent while paused held back.
    assert!(
        seen["tail_first"]
            .as_str()
            .unwrap()
            .contains("payment retried for order 43"),
        "{about}"
    );
    assert_eq!(seen["while_paused"], 0, "{about}");
    assert!(
        seen["tail_after_resume"]
            .as_str()
            .unwrap()
            .contains("payment settled for order 43"),
        "{about}"
    );
    let live_seq = seen["sent_live"]["last_seq"].as_u64().unwrap();
    let retried = on_disk
        .iter()
        .chain(read_lines_while_written(&dir.0.join("shop")).iter())
        .find(|l| l.contains("payment retried"))
        .map(|l| seq_of(l));
    assert_eq!(retried, Some(live_seq), "{about}");

    // The Server page lists the bucket.
    let buckets = strings(&seen["server_buckets"]).join(" | ");
    assert!(buckets.contains("shop"), "{buckets}");

    // Revoked: the row says so, and the next connection with the token is refused.
    assert!(
        seen["revoked_row"].as_str().unwrap().contains("revoked"),
        "{about}"
    );
    let refused = seen["reconnected"]["refused"]
        .as_str()
        .unwrap_or_else(|| panic!("not refused: {about}"));
    assert!(refused.contains("revoked"), "{refused}");

    // Logged out: the login page, and the API refuses the old cookie.
    assert_eq!(seen["after_logout"], "/login", "{about}");
    assert_eq!(seen["api_after_logout"], 401, "{about}");
    assert_eq!(seen["page_after_logout"], "/login", "{about}");

    // Nothing went elsewhere, nothing broke the policy, no script error.
    for line in strings(&run["log"]) {
        assert!(
            !line.starts_with("request elsewhere")
                && !line.starts_with("page error")
                && !line.contains("Content Security Policy"),
            "{line}"
        );
    }
    for page in PAGES {
        assert!(shots.join(format!("{page}.png")).is_file(), "{page}.png");
    }
    update_docs();
}

/// The pages and files as a browser gets them: their types, a strict policy, no caching of an
/// old version, and nothing served that is not embedded.
#[test]
fn console_files_are_served_with_a_strict_policy() {
    let dir = TempDir::new("console-files");
    let (_server, http) = http_client::start(&dir.0, &[]);
    let get = |path: &str| {
        let mut conn = http_client::Conn::open(http);
        conn.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        conn.answer()
    };
    for (path, content_type) in [
        ("/login", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/explore.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let answer = get(path);
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(answer.header("content-type"), Some(content_type), "{path}");
        let policy = answer.header("content-security-policy").unwrap_or("");
        assert!(
            policy.contains("default-src 'self'")
                && policy.contains("script-src 'self'")
                && !policy.contains("unsafe"),
            "{path}: {policy:?}"
        );
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(answer.header("cache-control"), Some("no-cache"));
    }
    let login = get("/login");
    let page = String::from_utf8_lossy(&login.body);
    assert!(
        page.contains("<script type=\"module\" src=\"/assets/login.js\"></script>"),
        "{page}"
    );
    // The app page shows data: without a session, the login page instead.
    let page = get("/");
    assert_eq!(page.status, 303, "{page:?}");
    assert_eq!(page.header("location"), Some("/login"));
    assert!(page.body.len() < 100, "{page:?}");
    for path in ["/assets/nope.js", "/assets/../Cargo.toml", "/assets/"] {
        assert_eq!(get(path).status, 404, "{path}");
    }
}
