//! Application tokens end to end (`--auth`): the real binary, real loopback sockets, bytes on
//! disk. Tokens made by `logmill token issue` put a connection's records in its app's bucket;
//! every kind of bad token is refused at hello with its reason (an `unauthorized` error frame,
//! a `_server.log` line) and nothing of the connection is stored; a revoked token is refused
//! from the next connection on; `--auth required` refuses what cannot carry a token with a
//! readable line; gRPC answers UNAUTHENTICATED; a secret others can read stops the start.
//!
//! The negative tokens are forged here with the same crates the server uses (hmac, sha2,
//! base64), signed with the server's own secret where the point is another defect.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hmac::{Hmac, KeyInit as _, Mac as _};
use http::{HeaderMap, Request};
use prost::Message as _;

use common::*;
use logmill::protocol::grpc::logmill_v1::{LogRecord, PushRequest, log_record};
use logmill::protocol::grpc::{self, percent_decode};
use logmill::protocol::native::{self, ErrorKind, Hello, ServerFrame};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `logmill token ARGS --dir DIR`'s stdout, trimmed; panics unless it succeeded.
fn token_cli(dir: &Path, args: &[&str]) -> String {
    let out = common::logmill()
        .arg("token")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run logmill token");
    assert!(
        out.status.success(),
        "logmill token {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A token for `app` from `logmill token issue`.
fn issue(dir: &Path, app: &str) -> String {
    token_cli(dir, &["issue", "--app", app])
}

/// The `jti` of a token (its payload, unverified: the test made it).
fn jti_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    json["jti"].as_str().unwrap().to_owned()
}

/// A token with any header and payload, its signature made by `sign` over `header.payload`.
fn forge(header: &str, payload: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = URL_SAFE_NO_PAD.encode(sign(signed.as_bytes()));
    format!("{signed}.{signature}")
}

fn hs256(secret: &[u8]) -> impl Fn(&[u8]) -> Vec<u8> {
    let secret = secret.to_vec();
    move |message| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
}

fn hs512(secret: &[u8]) -> impl Fn(&[u8]) -> Vec<u8> {
    let secret = secret.to_vec();
    move |message| {
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(&secret).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
}

const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The server's secret, as `logmill serve` made it.
fn secret_of(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(".logmill/secret")).unwrap()
}

/// The hello frame of a connection naming `app` with `token`, acks on.
fn hello_frame(app: &str, token: &str) -> Vec<u8> {
    let mut out = Vec::new();
    native::encode_hello(
        &Hello {
            app: app.into(),
            instance: "pod-1".into(),
            token: token.into(),
            want_acks: true,
        },
        &mut out,
    );
    out
}

/// Says hello with `token`, sends a record in the same write, and returns the server's answer
/// to the hello.
fn hello_and_record(server: &Server, app: &str, token: &str, text: &str) -> (Client, ServerFrame) {
    let mut client = server.client();
    let mut out = hello_frame(app, token);
    native::encode_records(&[message(text)], &mut out);
    client.send_raw(&out);
    let answer = client.read_frame().expect("no answer to the hello");
    (client, answer)
}

/// A client welcomed with `token` (and `app`).
fn welcomed(server: &Server, app: &str, token: &str) -> Client {
    let mut client = server.client();
    client.send_raw(&hello_frame(app, token));
    match client.read_frame() {
        Some(ServerFrame::Welcome { .. }) => client,
        other => panic!("no welcome for {app:?}: {other:?}"),
    }
}

/// Asserts `answer` is an `unauthorized` error saying `reason`, and that the server then closed
/// the connection; returns the message.
fn assert_refused(client: &mut Client, answer: ServerFrame, reason: &str) -> String {
    let message = match answer {
        ServerFrame::Error {
            kind: Some(ErrorKind::Unauthorized),
            message,
        } => message,
        other => panic!("expected unauthorized ({reason}), got {other:?}"),
    };
    assert!(message.contains(reason), "{reason:?} not in {message:?}");
    assert_eq!(client.read_frame(), None, "the connection stays open");
    message
}

/// `_server.log`, once it holds `n` lines containing `what`.
fn wait_log(dir: &Path, what: &str, n: usize) -> String {
    wait_for(&format!("{n} x {what:?} in _server.log"), DEADLINE, || {
        let log = std::fs::read_to_string(dir.join("_server.log")).ok()?;
        (log.matches(what).count() >= n).then_some(log)
    })
}

/// `name=N` of a `health` line.
fn health_field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

/// The lines of a bucket directory, empty if it does not exist.
fn bucket_lines(dir: &Path) -> Vec<String> {
    if dir.exists() {
        read_lines(dir)
    } else {
        Vec::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Native
// ---------------------------------------------------------------------------------------------

/// Tokens from `logmill token issue` are accepted: the records are in the token's app's files,
/// whether the hello names no app or the token's own; `logmill send --token` too. Without a
/// token (`--auth optional`) a hello's app is a label only: the line shows it, the record is
/// in the anonymous files.
#[test]
fn cli_tokens_put_records_in_their_apps_bucket() {
    let dir = TempDir::new("auth-accepted");
    let server = Server::start(&dir.0, &[]);
    let billing = issue(&dir.0, "billing");
    let search = issue(&dir.0, "search");

    let mut a = welcomed(&server, "", &billing);
    a.send(&[message("billing without naming it")]);
    a.wait_ack(1);
    let mut b = welcomed(&server, "search", &search);
    b.send(&[message("search naming itself")]);
    b.wait_ack(1);
    let mut label = welcomed(&server, "billing", "");
    label.send(&[message("billing without a token")]);
    label.wait_ack(1);

    // `logmill status` lists each connection under the bucket its token chose: billing's
    // and search's, and the labelled one without a token under `_anonymous`.
    let listed = wait_for("status to list the three connections", DEADLINE, || {
        let out = common::logmill()
            .args(["status", "--json", "--addr", &server.addr.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let records =
            |app: &str, instance: &str| status[app]["instances"][instance]["records"].as_u64();
        (records("billing", "pod-1") == Some(1)
            && records("search", "pod-1") == Some(1)
            && records("_anonymous", "pod-1") == Some(1))
        .then_some(status)
    });
    assert_eq!(listed.as_object().unwrap().len(), 3, "{listed}");

    let out = common::logmill()
        .args([
            "send",
            "--addr",
            &server.addr.to_string(),
            "--token",
            &billing,
        ])
        .args(["--logger", "cli", "sent", "with", "a", "token"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let billing_lines = read_lines(&dir.0.join("billing"));
    assert_eq!(billing_lines.len(), 2, "{billing_lines:?}");
    assert!(billing_lines[0].ends_with(" billing/pod-1 - billing without naming it"));
    assert!(billing_lines[1].ends_with(" billing/127.0.0.1 cli sent with a token"));
    let search_lines = read_lines(&dir.0.join("search"));
    assert_eq!(search_lines.len(), 1);
    assert!(search_lines[0].ends_with(" search/pod-1 - search naming itself"));
    let root = read_lines(&dir.0);
    assert_eq!(root.len(), 1, "{root:?}");
    assert!(
        root[0].ends_with(" billing/pod-1 - billing without a token"),
        "{}",
        root[0]
    );
    assert_eq!(health_field(&server.health(), "refused_auth"), 0);
    assert!(server.stop().success());
}

/// Every kind of bad token is refused at hello with its reason, in the error frame and in
/// `_server.log`; the record sent right behind the hello is not stored, nor anything else.
#[test]
fn bad_tokens_are_refused_with_their_reason() {
    let dir = TempDir::new("auth-refused");
    let server = Server::start(&dir.0, &[]);
    let secret = secret_of(&dir.0);
    let t = now();
    let claims = |extra: &str| format!(r#"{{"app":"billing","iat":{t},"jti":"forged1"{extra}}}"#);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong secret",
            forge(HS256, &claims(""), hs256(&[7u8; 32])),
            "signature does not match",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(claims(""))
            ),
            r#"algorithm "none" refused"#,
        ),
        (
            "HS512",
            forge(
                r#"{"alg":"HS512","typ":"JWT"}"#,
                &claims(""),
                hs512(&secret),
            ),
            r#"algorithm "HS512" refused"#,
        ),
        (
            "expired",
            forge(
                HS256,
                &claims(&format!(r#","exp":{}"#, t - 3600)),
                hs256(&secret),
            ),
            "expired at",
        ),
        (
            "not yet valid",
            forge(
                HS256,
                &claims(&format!(r#","nbf":{}"#, t + 3600)),
                hs256(&secret),
            ),
            "not valid before",
        ),
        ("garbage", "garbage".into(), "not a JWT"),
        (
            "oversized",
            format!("{}.x.y", "a".repeat(9000)),
            "more than the 8192 accepted",
        ),
    ];
    for (what, token, reason) in &cases {
        let (mut client, answer) = hello_and_record(&server, "", token, "must not be stored");
        let message = assert_refused(&mut client, answer, reason);
        assert!(message.starts_with("token refused: "), "{what}: {message}");
    }
    // The expired one is a real billing token: the message says how to get a new one.
    let (mut client, answer) = hello_and_record(&server, "", &cases[3].1, "x");
    let message = assert_refused(&mut client, answer, "logmill token issue --app billing");
    assert!(message.contains("expired at"), "{message}");

    let log = wait_log(&dir.0, "token refused:", cases.len() + 1);
    for (what, _, reason) in &cases {
        assert!(
            log.contains(reason),
            "{what}: {reason:?} not logged:\n{log}"
        );
    }
    // Nothing of a refused connection is stored, anywhere.
    assert!(read_lines(&dir.0).is_empty());
    assert!(!dir.0.join("billing").exists());
    let health = server.health();
    assert_eq!(
        health_field(&health, "refused_auth"),
        cases.len() as u64 + 1
    );
    assert!(server.stop().success());
}

/// A hello naming another app than its token's is refused: a client cannot pick a bucket.
#[test]
fn hello_naming_another_app_is_refused() {
    let dir = TempDir::new("auth-other-app");
    let server = Server::start(&dir.0, &[]);
    let billing = issue(&dir.0, "billing");
    let (mut client, answer) = hello_and_record(&server, "payroll", &billing, "into payroll?");
    let message = assert_refused(&mut client, answer, r#"the token is for app "billing""#);
    assert!(message.contains(r#""payroll""#), "{message}");
    wait_log(&dir.0, r#"the token is for app "billing""#, 1);
    assert!(!dir.0.join("payroll").exists());
    assert!(bucket_lines(&dir.0.join("billing")).is_empty());
    assert!(read_lines(&dir.0).is_empty());
    assert!(server.stop().success());
}

/// `logmill token revoke` takes effect from the next connection, without a restart: the open
/// connection keeps working, the next one with the same token is refused, and the refusal is
/// counted for billing in the stats line.
#[test]
fn revoked_while_connected_refuses_the_next_connection() {
    let dir = TempDir::new("auth-revoked");
    let server = Server::start(&dir.0, &["--stats-interval", "1s"]);
    let billing = issue(&dir.0, "billing");
    let mut open = welcomed(&server, "", &billing);
    open.send(&[message("before revoke")]);
    open.wait_ack(1);

    token_cli(&dir.0, &["revoke", &jti_of(&billing)]);

    open.send(&[message("after revoke, same connection")]);
    open.wait_ack(2);
    let (mut next, answer) = hello_and_record(&server, "", &billing, "next connection");
    assert_refused(&mut next, answer, "revoked");

    let lines = read_lines(&dir.0.join("billing"));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].ends_with(" after revoke, same connection"));
    wait_log(&dir.0, "token refused: it was revoked", 1);
    wait_log(&dir.0, "refused_auth=1 (billing=1)", 1);
    assert!(server.stop().success());
}

// ---------------------------------------------------------------------------------------------
// --auth required
// ---------------------------------------------------------------------------------------------

/// `--auth required`: a hello without a token, records without a hello, a SocketHandler
/// (pickle) client, a syslog client and UDP datagrams are all refused, each with what it can be
/// told, and nothing of them is stored; a token still works.
#[test]
fn required_refuses_every_connection_without_a_token() {
    let dir = TempDir::new("auth-required");
    let server = Server::start(&dir.0, &["--auth", "required", "--udp-port", "0"]);

    let (mut client, answer) = hello_and_record(&server, "billing", "", "no token");
    assert_refused(&mut client, answer, "--auth optional");

    let mut no_hello = server.client();
    let mut out = Vec::new();
    native::encode_records(&[message("no hello")], &mut out);
    no_hello.send_raw(&out);
    let answer = no_hello.read_frame().expect("no answer");
    assert_refused(&mut no_hello, answer, "requires an application token");

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pickle/info.pickle");
    for (what, bytes) in [
        ("SocketHandler", std::fs::read(fixture).unwrap()),
        (
            "syslog",
            b"<13>Oct 11 22:14:15 web-1 app[7]: via syslog\n".to_vec(),
        ),
    ] {
        let mut stream = server.connect();
        stream.write_all(&bytes).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with(
                "logmill: this server requires an application token (--auth required)"
            ) && answer.contains("cannot carry one")
                && answer.ends_with('\n'),
            "{what}: {answer:?}"
        );
    }

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target: SocketAddr = server.udp.unwrap();
    for i in 0..3 {
        udp.send_to(
            format!("<13>Oct 11 22:14:15 web-1 app: datagram {i}").as_bytes(),
            target,
        )
        .unwrap();
    }
    // 2 native, 2 stream protocols, 3 datagrams.
    wait_for("7 refusals counted", DEADLINE, || {
        (health_field(&server.health(), "refused_auth") == 7).then_some(())
    });
    let log = wait_log(&dir.0, "requires one (--auth required)", 3);
    assert!(
        log.contains("Python SocketHandler (pickle) cannot carry"),
        "{log}"
    );
    assert!(log.contains("syslog cannot carry"), "{log}");
    assert_eq!(
        log.matches("udp datagram from").count(),
        1,
        "datagram refusals are logged once a minute:\n{log}"
    );

    // A token is what gets in.
    let billing = issue(&dir.0, "billing");
    let mut ok = welcomed(&server, "", &billing);
    ok.send(&[message("with a token")]);
    ok.wait_ack(1);
    assert_eq!(read_lines(&dir.0.join("billing")).len(), 1);
    assert!(
        read_lines(&dir.0).is_empty(),
        "an anonymous record was stored"
    );
    assert!(server.stop().success());
}

// ---------------------------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------------------------

/// What came back for one unary gRPC call.
struct Reply {
    code: Option<u32>,
    message: String,
}

/// One `Push` of one record with `metadata`, over a fresh h2 connection (tokio runtime, tests
/// only, as in tests/grpc_driver.rs).
fn push(addr: SocketAddr, metadata: &[(&str, &str)], text: &str) -> Reply {
    let body = {
        let request = PushRequest {
            records: vec![LogRecord {
                body: Some(log_record::Body::Message(text.into())),
                level: 3,
                ..LogRecord::default()
            }],
        };
        let mut out = Vec::new();
        grpc::encode_message(&request.encode_to_vec(), &mut out);
        out
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(DEADLINE, async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (client, connection) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    eprintln!("client connection ended: {e}");
                }
            });
            let mut request =
                Request::post(format!("http://logmill{}", "/logmill.v1.LogService/Push"))
                    .header("content-type", "application/grpc")
                    .header("te", "trailers");
            for (k, v) in metadata {
                request = request.header(*k, *v);
            }
            let mut client = client.ready().await.unwrap();
            let (response, mut send) = client
                .send_request(request.body(()).unwrap(), false)
                .unwrap();
            send.send_data(Bytes::from(body), true).unwrap();
            let response = response.await.unwrap();
            let headers = response.headers().clone();
            let mut body = response.into_body();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                body.flow_control().release_capacity(chunk.len()).unwrap();
            }
            let trailers = body.trailers().await.unwrap().unwrap_or_default();
            let get =
                |name: &str, h: &HeaderMap| h.get(name).map(|v| v.to_str().unwrap().to_owned());
            let code = get("grpc-status", &trailers)
                .or_else(|| get("grpc-status", &headers))
                .map(|v| v.parse().unwrap());
            let message = get("grpc-message", &trailers)
                .or_else(|| get("grpc-message", &headers))
                .map(|v| percent_decode(&v))
                .unwrap_or_default();
            Reply { code, message }
        })
        .await
        .expect("the gRPC call did not finish")
    })
}

/// gRPC: `authorization: Bearer TOKEN` is judged per call. A bad bearer (or one naming
/// another app than `logmill-app`) gets UNAUTHENTICATED with the reason and a `_server.log`
/// line; a good one stores in the token's bucket; none (optional) stores anonymously.
#[test]
fn grpc_bearer_tokens() {
    let dir = TempDir::new("auth-grpc");
    let (server, grpc) = common::http_client::start(&dir.0, &[]);
    let billing = issue(&dir.0, "billing");

    let bad = push(grpc, &[("authorization", "Bearer not-a-token")], "refused");
    assert_eq!(bad.code, Some(16), "{}", bad.message);
    assert!(
        bad.message.contains("token refused: token is not a JWT"),
        "{}",
        bad.message
    );
    let scheme = push(grpc, &[("authorization", "Basic dXNlcjpwdw==")], "refused");
    assert_eq!(scheme.code, Some(16), "{}", scheme.message);
    assert!(
        scheme.message.contains("Bearer TOKEN"),
        "{}",
        scheme.message
    );
    let bearer = format!("Bearer {billing}");
    let other = push(
        grpc,
        &[("authorization", &bearer), ("logmill-app", "payroll")],
        "refused",
    );
    assert_eq!(other.code, Some(16), "{}", other.message);
    assert!(other.message.contains(r#"the token is for app "billing""#));

    let good = push(grpc, &[("authorization", &bearer)], "billing over grpc");
    assert_eq!(good.code, Some(0), "{}", good.message);
    let anonymous = push(
        grpc,
        &[("logmill-app", "billing")],
        "billing label over grpc",
    );
    assert_eq!(anonymous.code, Some(0), "{}", anonymous.message);

    let lines = read_lines(&dir.0.join("billing"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].ends_with(" billing over grpc"), "{}", lines[0]);
    let root = read_lines(&dir.0);
    assert_eq!(root.len(), 1, "{root:?}");
    assert!(root[0].contains(" billing/127.0.0.1 "), "{}", root[0]);
    let log = wait_log(&dir.0, "answered UNAUTHENTICATED", 3);
    assert!(log.contains("token refused: token is not a JWT"), "{log}");
    assert!(server.stop().success());

    // `--auth required`: no bearer, no push; the token still works.
    let (server, grpc) = common::http_client::start(&dir.0, &["--auth", "required"]);
    let none = push(grpc, &[("logmill-app", "billing")], "refused");
    assert_eq!(none.code, Some(16), "{}", none.message);
    assert!(none.message.contains("--auth optional"), "{}", none.message);
    let good = push(grpc, &[("authorization", &bearer)], "billing again");
    assert_eq!(good.code, Some(0), "{}", good.message);
    assert_eq!(read_lines(&dir.0.join("billing")).len(), 2);
    assert_eq!(
        read_lines(&dir.0).len(),
        1,
        "an anonymous record was stored"
    );
    assert!(server.stop().success());
}

// ---------------------------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------------------------

/// A secret file that group or others can read stops `logmill serve` with the fix on stderr,
/// the default one and one given with `--secret-file`.
#[test]
fn a_secret_others_can_read_stops_the_start() {
    let dir = TempDir::new("auth-open-secret");
    let state = dir.0.join(".logmill");
    std::fs::create_dir_all(&state).unwrap();
    let elsewhere = dir.0.join("elsewhere-secret");
    for path in [state.join("secret"), elsewhere.clone()] {
        std::fs::write(&path, [9u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    for extra in [
        vec![],
        vec!["--secret-file".to_owned(), elsewhere.display().to_string()],
    ] {
        let mut child = common::logmill()
            .args(["serve", "--tcp-only", "--port", "0", "--dir"])
            .arg(&dir.0)
            .args(&extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_for("serve to exit", DEADLINE, || child.try_wait().unwrap());
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success(), "{extra:?}: started with an open secret");
        assert!(stderr.contains("chmod 600"), "{extra:?}: {stderr}");
        assert!(stderr.contains("group or others"), "{extra:?}: {stderr}");
    }
    // `--auth off` reads no secret, so the same file does not stop it.
    let server = Server::start(&dir.0, &["--auth", "off"]);
    assert!(server.stop().success());
}
