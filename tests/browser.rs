//! A real browser against the real binary: headless Chromium (Debian's), driven by
//! `playwright-core` (tests/browser/run.mjs), opens tests/browser/page.html, served here on
//! another origin than the server's so that CORS is exercised. The page logs through the
//! published gRPC-Web client (the `grpc-web` npm package, text mode) and a WebSocket; this test
//! checks what the page was answered against the records on disk in the token's app's bucket,
//! and that a refused token's status shows on the page. One browser session for all of it:
//! starting Chromium is the slow part.
//!
//! The tools come from `scripts/install-browser.sh` and `tests/common/tools.rs` (`browser`):
//! under CI a missing one fails the test, elsewhere it skips visibly.

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{Server, TempDir, issue_token, read_lines, seq_of, wait_for};

/// Time for the whole browser run: Chromium's start, the page's four steps, the screenshot.
const BROWSER_DEADLINE: Duration = Duration::from_secs(120);

/// Serves the page and the client library on their own origin (`common::page_server`):
/// `/page.html` and `/grpc-web.js` only.
fn serve_page(grpc_web_js: PathBuf) -> u16 {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/page.html");
    common::page_server::serve(Arc::new(move |path: &str| match path {
        "/page.html" => Some((page.clone(), "text/html; charset=utf-8")),
        "/grpc-web.js" => Some((grpc_web_js.clone(), "text/javascript")),
        _ => None,
    }))
}

/// The token with one character of its signature changed: well formed, signed wrong.
fn tampered(token: &str) -> String {
    let at = token.rfind('.').expect("a JWT") + 3;
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// The stored line holding `text`, exactly once, in `lines`.
fn line_with<'a>(lines: &'a [String], text: &str) -> &'a str {
    let found: Vec<&String> = lines.iter().filter(|l| l.contains(text)).collect();
    assert_eq!(found.len(), 1, "{text:?} in {lines:#?}");
    found[0]
}

#[test]
fn a_page_logs_over_grpc_web_and_websocket() {
    let Some(browser) = tools::require(
        "browser::a_page_logs_over_grpc_web_and_websocket",
        tools::browser(),
    ) else {
        return;
    };
    let page_port = serve_page(browser.folder.join("node_modules/grpc-web/index.esm.js"));
    let origin = format!("http://127.0.0.1:{page_port}");

    let dir = TempDir::new("browser");
    let mut command = Command::new(env!("CARGO_BIN_EXE_logmill"));
    command
        .args(["serve", "--port", "0", "--grpc-port", "0", "--dir"])
        .arg(&dir.0)
        .args(["--cors-origin", &origin]);
    let server = Server::spawn(command, &dir.0);
    let grpc = server.listening["grpc"].as_str().unwrap().to_owned();
    let token = issue_token(&dir.0, "web");

    let url = format!(
        "{origin}/page.html?server=http://{grpc}&token={token}&bad={}",
        tampered(&token)
    );
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-page.png");
    let output = dir.0.join("run.json");
    let mut child = Command::new(&browser.node)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/run.mjs"))
        .arg(&url)
        .arg(&screenshot)
        .env("BROWSER_TOOLS", &browser.folder)
        .env("CHROMIUM", &browser.chromium)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&output).unwrap())
        .stderr(std::fs::File::create(dir.0.join("run.stderr")).unwrap())
        .spawn()
        .expect("start node tests/browser/run.mjs");
    let status = wait_for("the browser run", BROWSER_DEADLINE, || {
        child.try_wait().unwrap()
    });
    let stderr = std::fs::read_to_string(dir.0.join("run.stderr")).unwrap();
    assert!(status.success(), "run.mjs: {status}: {stderr}");
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(&output).unwrap())
        .unwrap_or_else(|e| panic!("run.mjs printed no JSON ({e}): {stderr}"));
    let about = format!("{run:#}");
    assert_eq!(run["done"], true, "{about}");
    let results = &run["results"];

    // gRPC-Web: LogMessage and Push answered once written, the seqs those of the lines on disk.
    let one = &results["LogMessage"];
    assert_eq!(one["accepted"], 1, "{about}");
    let push = &results["Push"];
    assert_eq!(push["accepted"], 2, "{about}");
    // The refused token: the page shows the status the client library read from the answer.
    let refused = &results["LogMessage with a bad token"];
    assert_eq!(refused["code"], 16, "{about}");
    let text = run["text"].as_str().unwrap();
    assert!(
        text.contains("LogMessage with a bad token: UNAUTHENTICATED (16)"),
        "{about}"
    );
    // The three calls went as the published client sends them in text mode, across origins.
    let calls = run["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 3, "{about}");
    for call in calls {
        assert_eq!(call["status"], 200, "{about}");
        assert_eq!(call["contentType"], "application/grpc-web-text", "{about}");
        assert_eq!(call["allowOrigin"], origin.as_str(), "{about}");
    }
    // WebSocket: the ack the page read covers its record.
    let ws = &results["WebSocket"];
    assert_eq!(ws["ack"], 1, "{about}");

    let lines = wait_for("the page's four records", common::DEADLINE, || {
        let lines = common::read_lines_while_written(&dir.0.join("web"));
        (lines.len() >= 4).then_some(lines)
    });
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let seq = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("{about}"));
    let by_log_message = seq_of(line_with(&lines, "from the page by LogMessage"));
    assert_eq!(by_log_message, seq(&one["first_seq"]), "{about}");
    assert_eq!(by_log_message, seq(&one["last_seq"]), "{about}");
    let first = seq_of(line_with(&lines, "from the page by Push, one"));
    let second = seq_of(line_with(&lines, "from the page by Push, two"));
    assert_eq!(first, seq(&push["first_seq"]), "{about}");
    assert_eq!(second, seq(&push["last_seq"]), "{about}");
    let by_websocket = seq_of(line_with(&lines, "from the page over a WebSocket"));
    assert_eq!(by_websocket, seq(&ws["last_seq"]), "{about}");
    for line in &lines {
        assert!(line.contains(" web/"), "not the token's app: {line}");
    }

    // Nothing of the refused call anywhere; the refusal has its line in _server.log.
    drop(server);
    let web = read_lines(&dir.0.join("web"));
    assert!(
        !web.iter().any(|l| l.contains("must not be stored")),
        "{web:#?}"
    );
    if dir.0.join("_main.log").exists() {
        let root = read_lines(&dir.0);
        assert!(
            !root.iter().any(|l| l.contains("must not be stored")),
            "{root:#?}"
        );
    }
    let server_log = std::fs::read_to_string(dir.0.join("_server.log")).unwrap_or_default();
    assert!(
        server_log.lines().any(|l| l.contains("token")),
        "no line about the refused token in _server.log:\n{server_log}"
    );
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
}
