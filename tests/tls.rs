//! TLS end to end (`server::tls`, `net::stream`): the real binary with certificates made here
//! by `rcgen`, and real clients: `openssl s_client`, Python's `ssl` under a `SocketHandler`,
//! `grpcio` with `ssl_channel_credentials`, and rustls clients for mutual TLS, the reload and
//! the limits.

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use common::certs::{self, Ca, Leaf};
use common::{DEADLINE, Server, TempDir, http_client, wait_copy, wait_for};

/// A server with TLS on both ports, its CA and its certificate.
struct TlsServer {
    server: Server,
    grpc: SocketAddr,
    ca: Ca,
    leaf: Leaf,
    _dir: TempDir,
}

fn start(tag: &str, args: &[&str]) -> TlsServer {
    let dir = TempDir::new(tag);
    let certs = dir.0.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = Ca::new(&certs, "main");
    let leaf = ca.server(&certs, "server");
    let data = dir.0.join("data");
    let mut all = vec![
        "--tls-cert",
        leaf.cert.to_str().unwrap(),
        "--tls-key",
        leaf.key.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let (server, grpc) = http_client::start(&data, &all);
    TlsServer {
        server,
        grpc,
        ca,
        leaf,
        _dir: dir,
    }
}

impl TlsServer {
    fn certs(&self) -> std::path::PathBuf {
        self.leaf.cert.parent().unwrap().to_path_buf()
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.server.dir.join("_server.log")).unwrap_or_default()
    }

    fn wait_log(&self, what: &str) -> String {
        wait_for(&format!("{what:?} in _server.log"), DEADLINE, || {
            let log = self.server_log();
            log.contains(what).then_some(log)
        })
    }

    fn health(&self) -> String {
        certs::health(self.ca.client_config(None), self.server.addr, None).unwrap()
    }
}

fn run_with_input(command: &mut Command, input: &[u8]) -> (bool, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn openssl_s_client_handshakes_and_health_answers() {
    let test = "openssl_s_client_handshakes_and_health_answers";
    let Some(openssl) = tools::require(test, tools::openssl()) else {
        return;
    };
    let s = start("tls-openssl", &[]);
    let ca = s.ca.pem_path.to_str().unwrap().to_string();
    // The native port: a verified handshake, then `health` through it.
    let (ok, out) = run_with_input(
        Command::new(&openssl).args([
            "s_client",
            "-connect",
            &s.server.addr.to_string(),
            "-servername",
            "localhost",
            "-CAfile",
            &ca,
            "-verify_return_error",
            "-quiet",
        ]),
        b"health\n",
    );
    assert!(ok, "{out}");
    assert!(out.contains("OK name="), "{out}");
    // TLS 1.2 is offered too, and nothing older.
    let (ok, out) = run_with_input(
        Command::new(&openssl).args([
            "s_client",
            "-connect",
            &s.server.addr.to_string(),
            "-CAfile",
            &ca,
            "-tls1_2",
            "-quiet",
        ]),
        b"health\n",
    );
    assert!(ok && out.contains("OK name="), "TLS 1.2: {out}");
    let (ok, out) = run_with_input(
        Command::new(&openssl).args([
            "s_client",
            "-connect",
            &s.server.addr.to_string(),
            "-CAfile",
            &ca,
            "-tls1_1",
        ]),
        b"",
    );
    assert!(!ok, "TLS 1.1 must be refused: {out}");
    // The gRPC port says h2 to a client that offers only h2 (gRPC), and http/1.1 to one that
    // offers both (a browser: the console is served on the port's HTTP/1.1 side).
    for (offer, chosen) in [
        ("h2", "h2"),
        ("h2,http/1.1", "http/1.1"),
        ("http/1.1", "http/1.1"),
    ] {
        let (ok, out) = run_with_input(
            Command::new(&openssl).args([
                "s_client",
                "-connect",
                &s.grpc.to_string(),
                "-CAfile",
                &ca,
                "-verify_return_error",
                "-alpn",
                offer,
            ]),
            b"",
        );
        assert!(ok, "{out}");
        assert!(
            out.contains(&format!("ALPN protocol: {chosen}")),
            "offered {offer}: {out}"
        );
    }
}

/// Python's own `ssl` under a `logging.handlers.SocketHandler` (pickles over the native port).
#[test]
fn python_ssl_socket_handler_records_arrive() {
    let test = "python_ssl_socket_handler_records_arrive";
    let Some(python) = tools::require(test, tools::python3()) else {
        return;
    };
    let s = start("tls-python", &["--format", "json"]);
    let code = r#"
import logging, logging.handlers, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
context = ssl.create_default_context(cafile=ca)
class TlsSocketHandler(logging.handlers.SocketHandler):
    def makeSocket(self, timeout=1):
        return context.wrap_socket(super().makeSocket(timeout), server_hostname="localhost")
handler = TlsSocketHandler(host, port)
log = logging.getLogger("py-tls")
log.addHandler(handler)
log.setLevel(logging.INFO)
for i in range(3):
    log.info("over tls %d", i)
handler.close()
"#;
    let status = Command::new(python)
        .args(["-c", code, "127.0.0.1"])
        .arg(s.server.addr.port().to_string())
        .arg(&s.ca.pem_path)
        .status()
        .unwrap();
    assert!(status.success());
    let lines = s.server.wait_json(3);
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert_eq!(
        messages,
        ["over tls 0", "over tls 1", "over tls 2"],
        "{lines:?}"
    );
}

/// One port, one mode: a plain client on a TLS port is closed with a FIN (no reset), logged
/// and counted; it never hangs.
#[test]
fn a_plain_client_on_a_tls_port_is_closed_cleanly_and_logged() {
    let s = start("tls-plain", &[]);
    for (addr, ask) in [
        (s.server.addr, &b"health\n"[..]),
        (s.grpc, &b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
    ] {
        let mut plain = TcpStream::connect(addr).unwrap();
        plain.set_read_timeout(Some(DEADLINE)).unwrap();
        plain.write_all(ask).unwrap();
        let mut answer = Vec::new();
        let read = plain.read_to_end(&mut answer);
        assert!(
            matches!(read, Ok(0)),
            "a clean close with nothing said, not {read:?} {answer:?}"
        );
    }
    s.wait_log("not TLS (first byte 0x68");
    let health = s.health();
    assert!(health.contains(" tls_failed=2"), "{health}");
}

/// `grpcio` over TLS with `ssl_channel_credentials`: Push stores records, health says SERVING.
#[test]
fn python_grpcio_over_tls_pushes_and_checks_health() {
    let test = "python_grpcio_over_tls_pushes_and_checks_health";
    let Some(python) = tools::require(test, tools::python_grpc()) else {
        return;
    };
    let s = start("tls-grpcio", &["--format", "json"]);
    let code = r#"
import sys, grpc, logmill_pb2, logmill_pb2_grpc, health_pb2, health_pb2_grpc
target, ca = sys.argv[1], open(sys.argv[2], "rb").read()
channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca))
reply = logmill_pb2_grpc.LogServiceStub(channel).Push(
    logmill_pb2.PushRequest(records=[logmill_pb2.LogRecord(message=f"grpc tls {i}", logger="g") for i in range(2)]),
    timeout=20)
assert reply.accepted == 2, reply
health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=20)
assert health.status == health_pb2.HealthCheckResponse.SERVING, health
"#;
    let status = python
        .command_with_code(code)
        .arg(format!("localhost:{}", s.grpc.port()))
        .arg(&s.ca.pem_path)
        .status()
        .unwrap();
    assert!(status.success(), "the grpcio client failed");
    let lines = s.server.wait_json(2);
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert_eq!(messages, ["grpc tls 0", "grpc tls 1"], "{lines:?}");
}

/// Mutual TLS: a certificate from the CA is let in; none, another CA's and an expired one are
/// each refused and logged (each from its own loopback address: one line a minute per peer).
#[test]
fn mutual_tls_refuses_no_certificate_another_ca_and_an_expired_one() {
    let dir = TempDir::new("tls-mutual-ca");
    let clients = Ca::new(&dir.0, "clients");
    let other = Ca::new(&dir.0, "other");
    let ca_path = clients.pem_path.to_str().unwrap().to_string();
    let s = start("tls-mutual", &["--tls-client-ca", &ca_path]);
    let good = clients.client(&dir.0, "good", "billing", false);
    let answer = certs::health(s.ca.client_config(Some(&good)), s.server.addr, None)
        .expect("a client certificate from the CA is let in");
    assert!(answer.starts_with("OK "), "{answer}");
    let foreign = other.client(&dir.0, "foreign", "billing", false);
    let expired = clients.client(&dir.0, "expired", "billing", true);
    for (source, client, why) in [
        ("127.0.0.2", None, "no certificate"),
        ("127.0.0.3", Some(&foreign), "another CA"),
        ("127.0.0.4", Some(&expired), "expired"),
    ] {
        let result = certs::health(s.ca.client_config(client), s.server.addr, Some(source));
        assert!(result.is_err(), "{why}: let in: {result:?}");
        let log = s.wait_log(&format!("TLS connection from {source}:"));
        let line = log
            .lines()
            .find(|l| l.contains(&format!("from {source}:")))
            .unwrap();
        assert!(line.contains("handshake failed"), "{why}: {line}");
    }
    let health = certs::health(s.ca.client_config(Some(&good)), s.server.addr, None).unwrap();
    assert!(health.contains(" tls_failed=3"), "{health}");
}

/// SIGHUP: new connections get the new certificate while an open connection goes on; a broken
/// certificate is refused with a log line and the last good one stays.
#[test]
fn sighup_reloads_the_certificate_for_new_connections_only_and_keeps_it_on_a_broken_one() {
    let s = start("tls-reload", &["--format", "json"]);
    let config = s.ca.client_config(None);
    let peer_cert = |stream: &certs::TlsStream| stream.conn.peer_certificates().unwrap()[0].clone();
    let mut open = certs::connect(config.clone(), s.server.addr, None).unwrap();
    assert_eq!(peer_cert(&open), s.leaf.der);
    open.write_all(b"{\"message\": \"before the reload\"}\n")
        .unwrap();
    open.flush().unwrap();
    s.server.wait_json(1);

    let certs_dir = s.certs();
    let renewed = s.ca.server(&certs_dir, "renewed");
    std::fs::copy(&renewed.cert, &s.leaf.cert).unwrap();
    std::fs::copy(&renewed.key, &s.leaf.key).unwrap();
    s.server.signal("HUP");
    s.wait_log("TLS certificate");
    let fresh = certs::connect(config.clone(), s.server.addr, None).unwrap();
    assert_eq!(
        peer_cert(&fresh),
        renewed.der,
        "a new connection sees the new certificate"
    );
    drop(fresh);
    // The connection opened before goes on with its session.
    open.write_all(b"{\"message\": \"after the reload\"}\n")
        .unwrap();
    open.flush().unwrap();
    let lines = s.server.wait_json(2);
    assert_eq!(lines[1]["message"], "after the reload", "{lines:?}");

    std::fs::write(&s.leaf.cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    s.server.signal("HUP");
    let log = s.wait_log("TLS reload refused");
    assert!(log.contains("stays in use"), "{log}");
    let after = certs::connect(config, s.server.addr, None).unwrap();
    assert_eq!(
        peer_cert(&after),
        renewed.der,
        "the last good certificate stays"
    );
}

/// A client that connects and never finishes its handshake is closed at the (hidden, here
/// short) handshake timeout, on all three ports, and counted.
#[test]
fn a_handshake_not_finished_in_time_is_closed_and_counted() {
    let (s, ship, _) = start_shipping("tls-timeout", &["--tls-handshake-timeout", "1s"]);
    let ship = SocketAddr::from(([127, 0, 0, 1], ship));
    for addr in [s.server.addr, s.grpc, ship] {
        let mut silent = TcpStream::connect(addr).unwrap();
        silent.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut rest = Vec::new();
        let read = silent.read_to_end(&mut rest);
        assert!(
            read.is_ok(),
            "closed by the server, not timed out here: {read:?}"
        );
    }
    let log = s.wait_log("not finished within 1s");
    assert!(log.contains("handshake failed"), "{log}");
    let health = s.health();
    assert!(health.contains(" tls_failed=3"), "{health}");
}

/// Start-up refuses TLS files that cannot work, naming the flag.
#[test]
fn a_key_that_does_not_match_the_certificate_stops_the_start() {
    let dir = TempDir::new("tls-mismatch");
    let ca = Ca::new(&dir.0, "m");
    let a = ca.server(&dir.0, "a");
    let b = ca.server(&dir.0, "b");
    let out = common::logmill()
        .args(["serve", "--port", "0", "--tcp-only", "--dir"])
        .arg(dir.0.join("data"))
        .arg("--tls-cert")
        .arg(&a.cert)
        .arg("--tls-key")
        .arg(&b.key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log = std::fs::read_to_string(dir.0.join("data/_server.log")).unwrap_or_default();
    let said = format!("{log}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("--tls-key"), "{said}");
}

/// Mutual TLS names the app: a client certificate whose CN is `billing` writes to billing's
/// bucket, even in a protocol that cannot carry a token, even under `--auth required`.
#[test]
fn a_client_certificate_names_the_app_under_auth_required() {
    let dir = TempDir::new("tls-cn-ca");
    let clients = Ca::new(&dir.0, "clients");
    let ca_path = clients.pem_path.to_str().unwrap().to_string();
    let s = start(
        "tls-cn",
        &["--tls-client-ca", &ca_path, "--auth", "required"],
    );
    let billing = clients.client(&dir.0, "billing", "billing", false);
    let mut conn = certs::connect(s.ca.client_config(Some(&billing)), s.server.addr, None).unwrap();
    conn.write_all(b"{\"message\": \"certified\"}\n").unwrap();
    conn.flush().unwrap();
    let bucket = s.server.dir.join("billing/_main.log");
    wait_for("a line in billing's bucket", DEADLINE, || {
        std::fs::read_to_string(&bucket)
            .ok()
            .filter(|text| text.contains("certified"))
    });
}

/// `logmill send` and `logmill pipe` (the `Logger`: a writer thread and an ack-reading thread
/// sharing one TLS connection) with `--tls --ca`: acked, stored.
#[test]
fn send_and_pipe_over_tls_store_what_they_are_given() {
    let s = start("tls-send", &["--format", "json"]);
    let addr = format!("localhost:{}", s.server.addr.port());
    let ca = s.ca.pem_path.to_str().unwrap().to_string();
    let sent = common::logmill()
        .args([
            "send", "--tls", "--ca", &ca, "--addr", &addr, "sent", "over", "tls",
        ])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    let (ok, out) = run_with_input(
        common::logmill().args(["pipe", "--tls", "--ca", &ca, "--addr", &addr]),
        b"piped one\npiped two\n",
    );
    assert!(ok, "{out}");
    let lines = s.server.wait_json(3);
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert_eq!(
        messages,
        ["sent over tls", "piped one", "piped two"],
        "{lines:?}"
    );
    // Without --tls the same command is a plain client on a TLS port: refused, not stored.
    let plain = common::logmill()
        .args(["send", "--addr", &addr, "in the clear"])
        .output()
        .unwrap();
    assert!(!plain.status.success());
}

/// The OpenTelemetry Python SDK's two OTLP exporters over TLS (gRPC with
/// `ssl_channel_credentials`, HTTP with `certificate_file`): each export succeeds and is
/// stored.
#[test]
fn python_otel_sdk_exports_over_tls() {
    let test = "python_otel_sdk_exports_over_tls";
    let Some(python) = tools::require(test, tools::python_grpc()) else {
        return;
    };
    let s = start("tls-otlp", &["--format", "json"]);
    let addr = format!("localhost:{}", s.grpc.port());
    let mut stored = 0;
    for exporter in ["grpc", "http"] {
        let out = python
            .command("otlp_logging.py")
            .args([exporter, &addr, "--ca"])
            .arg(&s.ca.pem_path)
            // requests lets these override the exporter's `certificate_file` (its session's
            // `verify` loses to the environment's bundle), which would trust the system CAs
            // instead of the test CA.
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let report = report_of(&out, exporter);
        let exports = report["exports"].as_array().unwrap();
        assert!(
            exports.len() == 1 && exports[0]["result"] == "SUCCESS",
            "{exporter}: {report}"
        );
        let records = exports[0]["records"].as_u64().unwrap() as usize;
        stored += records;
        s.server.wait_json(stored);
    }
}

/// The console over https in a real browser (tests/browser/https.mjs, one browser session as
/// console.mjs runs): Chromium trusts the test key by its SPKI hash alone, loads the login
/// page, logs in, and fetches /healthz from the page, all over TLS with ALPN.
#[test]
fn the_console_over_https_in_a_browser() {
    let test = "the_console_over_https_in_a_browser";
    let Some(browser) = tools::require(test, tools::browser()) else {
        return;
    };
    const PASSWORD: &str = "correct horse battery staple";
    let dir = TempDir::new("tls-browser");
    let certs_dir = dir.0.join("certs");
    std::fs::create_dir_all(&certs_dir).unwrap();
    let ca = Ca::new(&certs_dir, "main");
    let leaf = ca.server(&certs_dir, "server");
    let data = dir.0.join("data");
    let (ok, out) = run_with_input(
        common::logmill()
            .args(["admin", "set-password", "--dir"])
            .arg(&data),
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(ok, "set-password: {out}");
    let (_server, grpc) = http_client::start(
        &data,
        &[
            "--tls-cert",
            leaf.cert.to_str().unwrap(),
            "--tls-key",
            leaf.key.to_str().unwrap(),
        ],
    );
    let out = Command::new(&browser.node)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/https.mjs"))
        .env("BROWSER_TOOLS", &browser.folder)
        .env("CHROMIUM", &browser.chromium)
        .env("CONSOLE_URL", format!("https://localhost:{}", grpc.port()))
        .env("CONSOLE_PASSWORD", PASSWORD)
        .env("SPKI", &leaf.spki_sha256)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = report_of(&out, "https.mjs");
    let seen = &report["seen"];
    assert_eq!(seen["step"], "done", "{report}");
    assert_eq!(seen["login_status"], 200, "{report}");
    assert_eq!(seen["protocol"], "https:", "{report}");
    assert!(
        seen["security"]
            .as_str()
            .is_some_and(|p| p.starts_with("TLS 1.")),
        "{report}"
    );
    assert_eq!(seen["healthz"], "OK\n", "{report}");
    assert!(seen["page"].is_string(), "{report}");
}

/// A `logmill serve` with TLS whose ship port stores into `<dir>/ship`, and its ship port.
fn start_shipping(tag: &str, args: &[&str]) -> (TlsServer, u16, std::path::PathBuf) {
    let s = start(tag, &[&["--ship-port", "0"], args].concat());
    let ship: SocketAddr = s.server.listening["ship"]
        .as_str()
        .expect("a ship address in the listening line")
        .parse()
        .unwrap();
    let stored = s.server.dir.join("ship");
    (s, ship.port(), stored)
}

/// `logmill ship tx` at 127.0.0.1:`port`, shipping `<input>/*.log` (`extra`: `--tls` and the
/// like), its output captured.
fn ship_tx(port: u16, input: &std::path::Path, extra: &[&str]) -> Command {
    let mut command = common::logmill();
    command
        .args([
            "ship",
            "tx",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .arg("--glob")
        .arg(input.join("*.log"))
        .arg("--state")
        .arg(input.join("ship.state"))
        .args(["--rescan-interval", "100ms", "--max-backoff", "300ms"])
        .args(["--timeout", "5s", "--no-progress"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// `ship tx --once`: its summary line, after it succeeded.
fn ship_once(port: u16, input: &std::path::Path, extra: &[&str]) -> String {
    let out = ship_tx(port, input, &[&["--once"], extra].concat())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ship tx --once failed: {text}");
    text
}

/// A transmitter that keeps retrying (it is refused), killed when dropped.
struct Retrying(std::process::Child);

impl Drop for Retrying {
    fn drop(&mut self) {
        // Already gone only if it died, which the test then reports through its asserts.
        if self.0.kill().is_ok() {
            let _status = self.0.wait();
        }
    }
}

/// `ship tx --tls --ca` into `logmill serve --tls-cert --tls-key`: a binary file and a text
/// file arrive byte-exact over TLS; an append is resumed from the receiver's offset (only the
/// new bytes go); `--server-name` checks the certificate against a name other than `--host`.
#[test]
fn ship_tx_over_tls_is_byte_exact_and_resumes_after_an_append() {
    let (s, port, stored) = start_shipping("tls-ship", &[]);
    let input = s._dir.0.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let bin: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let text: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("line {i} over tls\n").into_bytes())
        .collect();
    std::fs::write(input.join("data.log"), &bin).unwrap();
    std::fs::write(input.join("app.log"), &text).unwrap();
    let ca = s.ca.pem_path.to_str().unwrap().to_owned();
    let tls = ["--tls", "--ca", ca.as_str()];
    let summary = ship_once(port, &input, &tls);
    assert!(summary.contains("2 files up to date"), "{summary}");
    wait_copy(&stored.join("data.log"), &bin);
    wait_copy(&stored.join("app.log"), &text);
    let more = b"appended after the first run\n".repeat(100);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(input.join("app.log"))
        .unwrap();
    file.write_all(&more).unwrap();
    let again = ship_once(
        port,
        &input,
        &[&tls[..], &["--server-name", "localhost"]].concat(),
    );
    assert!(
        again.contains(&format!(" {} bytes sent", more.len())),
        "only the appended bytes go: {again}"
    );
    wait_copy(&stored.join("app.log"), &[text, more].concat());
    let log = s.server_log();
    assert!(!log.contains("handshake failed"), "{log}");
}

/// One port, one mode, on the ship port too: a plain transmitter is closed at its first byte
/// (the name line), logged and counted; nothing is stored. A TLS transmitter that checks the
/// certificate against a name it does not carry refuses the receiver.
#[test]
fn a_plain_transmitter_on_the_tls_ship_port_is_refused_and_logged() {
    let (s, port, stored) = start_shipping("tls-ship-plain", &[]);
    let input = s._dir.0.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("app.log"), b"not in the clear\n").unwrap();
    let _tx = Retrying(ship_tx(port, &input, &[]).spawn().unwrap());
    // The name line's first byte, 'a'.
    s.wait_log("handshake failed, not TLS (first byte 0x61");
    assert!(s.health().contains(" tls_failed="), "counted");
    let ca = s.ca.pem_path.to_str().unwrap().to_owned();
    let out = ship_tx(
        port,
        &input,
        &[
            "--once",
            "--tls",
            "--ca",
            &ca,
            "--server-name",
            "elsewhere.example",
        ],
    )
    .spawn()
    .unwrap();
    let mut wrong_name = Retrying(out);
    let mut said = String::new();
    let stderr = wrong_name.0.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    while !said.contains("retrying") {
        let line = lines.next().expect("ship tx said why").unwrap();
        said.push_str(&line);
    }
    assert!(said.contains("TLS handshake"), "{said}");
    assert!(!stored.join("app.log").exists(), "nothing stored");
}

/// Mutual TLS on the ship port: a transmitter without a client certificate is refused at the
/// handshake, logged and counted, and nothing is stored; with `--cert --key` from the clients'
/// CA its file arrives.
#[test]
fn mutual_tls_refuses_a_ship_transmitter_without_a_client_certificate() {
    let dir = TempDir::new("tls-ship-mutual-ca");
    let clients = Ca::new(&dir.0, "clients");
    let ca_path = clients.pem_path.to_str().unwrap().to_string();
    let (s, port, stored) = start_shipping("tls-ship-mutual", &["--tls-client-ca", &ca_path]);
    let input = s._dir.0.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let content = b"needs a certificate\n";
    std::fs::write(input.join("app.log"), content).unwrap();
    let ca = s.ca.pem_path.to_str().unwrap().to_owned();
    let tx = Retrying(
        ship_tx(port, &input, &["--tls", "--ca", &ca])
            .spawn()
            .unwrap(),
    );
    let log = s.wait_log("handshake failed");
    let line = log
        .lines()
        .find(|l| l.contains("handshake failed"))
        .unwrap();
    assert!(line.contains("TLS connection from 127.0.0.1"), "{line}");
    assert!(!stored.join("app.log").exists(), "nothing stored");
    drop(tx);
    let good = clients.client(&dir.0, "shipper", "shipper", false);
    let summary = ship_once(
        port,
        &input,
        &[
            "--tls",
            "--ca",
            &ca,
            "--cert",
            good.cert.to_str().unwrap(),
            "--key",
            good.key.to_str().unwrap(),
        ],
    );
    assert!(summary.contains("1 files up to date"), "{summary}");
    wait_copy(&stored.join("app.log"), content);
}

/// The receiver's answers travel over TLS: the offset line to a name it takes, and to a name it
/// refuses the `error:` line, then a clean close (`close_notify`, so the client reads an end).
#[test]
fn a_tls_ship_connection_gets_its_offset_line_and_its_refusal_line() {
    let (s, port, stored) = start_shipping("tls-ship-lines", &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut good = certs::connect(s.ca.client_config(None), addr, None).unwrap();
    good.write_all(b"first.log\n").unwrap();
    good.flush().unwrap();
    let mut offset = [0u8; 2];
    good.read_exact(&mut offset).unwrap();
    assert_eq!(&offset, b"0\n");
    good.write_all(b"through rustls\n").unwrap();
    good.conn.send_close_notify();
    good.flush().unwrap();
    wait_copy(&stored.join("first.log"), b"through rustls\n");
    let mut bad = certs::connect(s.ca.client_config(None), addr, None).unwrap();
    bad.write_all(b"../escape.log\n").unwrap();
    bad.flush().unwrap();
    let mut answer = String::new();
    bad.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("error: "), "{answer:?}");
    s.wait_log("file name contains '/'");
}

/// The report a test script printed last (its last JSON line), once it exited with success.
fn report_of(out: &std::process::Output, script: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{script}: no report in {stdout}"))
}
