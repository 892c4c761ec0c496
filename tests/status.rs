//! End-to-end `logmill status`: the connection registry seen through the real binary. Apps,
//! instances and anonymous clients connect over real sockets; `logmill status --json` (run as a
//! process) must list them with their protocol, peer and counts, drop them when they leave, and
//! the `health` line and the stats line of `_server.log` must agree.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;

use common::*;
use logmill::protocol::native::{self, Hello, ServerFrame};
use logmill::record::Record;
use serde_json::Value;

/// `logmill status --json --addr ADDR`, run as a process; its JSON.
fn status(addr: SocketAddr) -> Value {
    let out = common::logmill()
        .args(["status", "--json", "--addr", &addr.to_string()])
        .output()
        .expect("cannot run logmill status");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "logmill status failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one line of JSON: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Waits until `status` satisfies `ok`, and returns it.
fn wait_status(addr: SocketAddr, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_for(what, DEADLINE, || {
        last = status(addr);
        ok(&last).then(|| last.clone())
    })
}

fn hello_frame(app: &str, instance: &str) -> Vec<u8> {
    let mut out = Vec::new();
    native::encode_hello(
        &Hello {
            app: app.into(),
            instance: instance.into(),
            token: String::new(),
            want_acks: true,
        },
        &mut out,
    );
    out
}

/// A native client that said hello as `app`/`instance` (acks on); the bytes it sent.
fn client_as(server: &Server, app: &str, instance: &str) -> (Client, u64) {
    let mut client = server.client();
    let hello = hello_frame(app, instance);
    client.send_raw(&hello);
    assert!(
        matches!(client.read_frame(), Some(ServerFrame::Welcome { .. })),
        "no welcome for {app}/{instance}"
    );
    (client, hello.len() as u64)
}

fn records(tag: &str, n: usize) -> Vec<Record<'static>> {
    (0..n).map(|i| message(&format!("{tag} {i}"))).collect()
}

/// Sends `records` in one frame and waits for their ack; the frame's bytes.
fn send_acked(client: &mut Client, records: &[Record<'_>], acked_before: u64) -> u64 {
    let mut frame = Vec::new();
    native::encode_records(records, &mut frame);
    client.send_raw(&frame);
    client.wait_ack(acked_before + records.len() as u64);
    frame.len() as u64
}

fn instance<'a>(status: &'a Value, app: &str, name: &str) -> &'a Value {
    &status[app]["instances"][name]
}

/// The records each app wrote, summed over every stats line in `_server.log` so far (a stats
/// line counts what was written since the one before).
fn stats_records_by_app(dir: &std::path::Path) -> HashMap<String, u64> {
    let log = std::fs::read_to_string(dir.join("_server.log")).unwrap_or_default();
    let mut sums = HashMap::new();
    for line in log.lines().filter(|l| l.contains(" stats: ")) {
        let Some((_, apps)) = line.split_once("; by app: ") else {
            continue;
        };
        for part in apps.split(", ") {
            // `billing 60 records 2400 bytes`; the summary of the rest is `N other apps: ...`.
            let words: Vec<&str> = part.split(' ').collect();
            if let [app, n, "records" | "record", ..] = words[..]
                && let Ok(n) = n.parse::<u64>()
            {
                *sums.entry(app.to_string()).or_default() += n;
            }
        }
    }
    sums
}

/// Two apps x three instances (one instance with two connections) over native frames, and an
/// anonymous plain-text client: `status` lists each instance with its socket, peer, connection
/// count, records and bytes; `health` counts the apps and instances; the stats line has each
/// app's records; the human table shows the same. Clients that leave are dropped.
#[test]
fn status_lists_apps_instances_and_anonymous_clients() {
    let dir = TempDir::new("status");
    // `--auth off`: the hello's app chooses the bucket (tokens are `tests/auth.rs`'s, which
    // checks that a token's connection is listed under its app).
    let server = Server::start(&dir.0, &["--stats-interval", "1s", "--auth", "off"]);
    assert_eq!(status(server.addr), serde_json::json!({}), "nothing yet");

    const N: usize = 25;
    // (app, instance, client, bytes sent)
    let mut clients = Vec::new();
    for app in ["billing", "search"] {
        for pod in 1..=3 {
            let instance = format!("pod-{pod}");
            let (mut client, hello) = client_as(&server, app, &instance);
            let frame = send_acked(&mut client, &records(&instance, N), 0);
            clients.push((app, instance, client, hello + frame));
        }
    }
    // A second connection of billing/pod-1, opened after the first: it counts, the first
    // connection's peer is shown.
    let (mut second, hello) = client_as(&server, "billing", "pod-1");
    let second_bytes = hello + send_acked(&mut second, &records("second", 5), 0);
    let mut text = server.connect();
    text.write_all(b"one\ntwo\nthree\n").unwrap();

    let listed = wait_status(server.addr, "every client listed with its records", |s| {
        instance(s, "billing", "pod-1")["records"] == N as u64 + 5
            && clients
                .iter()
                .all(|(app, pod, ..)| instance(s, app, pod)["records"].as_u64() >= Some(N as u64))
            && instance(s, "_anonymous", "127.0.0.1")["records"] == 3
    });
    for app in ["billing", "search"] {
        assert_eq!(listed[app]["running_instances"], 3, "{listed}");
        assert_eq!(listed[app]["instances"].as_object().unwrap().len(), 3);
    }
    for (app, pod, client, bytes) in &clients {
        let i = instance(&listed, app, pod);
        assert_eq!(i["socket"], "native", "{app}/{pod}: {i}");
        let peer = client.stream.local_addr().unwrap().to_string();
        assert_eq!(
            i["peer"],
            peer.as_str(),
            "{app}/{pod}: the first connection's peer"
        );
        let (connections, records, bytes) = if (*app, pod.as_str()) == ("billing", "pod-1") {
            (2, N as u64 + 5, bytes + second_bytes)
        } else {
            (1, N as u64, *bytes)
        };
        assert_eq!(i["connections"], connections, "{app}/{pod}");
        assert_eq!(i["records"], records, "{app}/{pod}");
        assert_eq!(
            i["bytes"], bytes,
            "{app}/{pod}: every byte the clients sent"
        );
        for time in ["connected_at", "last_record_at"] {
            let t = i[time].as_str().unwrap();
            assert!(
                t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
                "{t}"
            );
        }
        assert!(i["connected_at"].as_str() <= i["last_record_at"].as_str());
    }
    let anonymous = &listed["_anonymous"];
    assert_eq!(anonymous["running_instances"], 1, "{listed}");
    let i = &anonymous["instances"]["127.0.0.1"];
    assert_eq!(i["socket"], "text");
    assert_eq!(i["connections"], 1);
    assert_eq!(i["bytes"], 14);
    assert_eq!(i["peer"], text.local_addr().unwrap().to_string().as_str());

    // The same for a person: one row per instance, and the totals.
    let out = common::logmill()
        .args(["status", "--addr", &server.addr.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 1 + 7 + 1, "{table}");
    assert!(rows[0].starts_with("APP "), "{table}");
    assert!(
        rows[1].starts_with("billing ") && rows[1].contains(" pod-1 "),
        "{table}"
    );
    assert!(
        rows[7].starts_with("_anonymous ") && rows[7].contains(" text "),
        "{table}"
    );
    assert_eq!(rows[8], "2 apps, 7 instances, 8 connections", "{table}");

    let health = server.health();
    assert!(health.contains(" apps=2 instances=7"), "{health}");

    // Per-app records in the stats line (summed over its lines: each counts its own interval).
    let billing = 3 * N as u64 + 5;
    wait_for("per-app records in the stats lines", DEADLINE, || {
        let sums = stats_records_by_app(&dir.0);
        (sums.get("billing") == Some(&billing)
            && sums.get("search") == Some(&(3 * N as u64))
            && sums.get("_anonymous") == Some(&3))
        .then_some(())
    });

    // Leaving: search's clients and the text client go, billing's second connection too.
    clients.retain(|(app, ..)| *app == "billing");
    drop(text);
    drop(second);
    let after = wait_status(server.addr, "the clients that left dropped", |s| {
        s.get("search").is_none()
            && s.get("_anonymous").is_none()
            && instance(s, "billing", "pod-1")["connections"] == 1
    });
    assert_eq!(after["billing"]["running_instances"], 3, "{after}");
    assert_eq!(after.as_object().unwrap().len(), 1, "{after}");
    let health = wait_for("health counts the app left", DEADLINE, || {
        Some(server.health()).filter(|h| h.contains(" apps=1 instances=3"))
    });
    assert!(health.starts_with("OK "), "{health}");

    drop(clients);
    wait_status(server.addr, "everyone gone", |s| {
        s == &serde_json::json!({})
    });
    assert!(server.stop().success());
}

/// A gRPC connection is listed with socket `grpc` under its push call's `logmill-app` and
/// `logmill-instance`; its calls' records are counted; a later call naming another app moves
/// it there (the documented rule); it goes when it closes.
#[test]
fn grpc_connections_are_listed_under_their_latest_push_call() {
    let dir = TempDir::new("status-grpc");
    let mut command = common::logmill();
    command
        .args([
            "serve",
            "--port",
            "0",
            "--grpc-port",
            "0",
            "--auth",
            "off",
            "--dir",
        ])
        .arg(&dir.0);
    let server = Server::spawn(command, &dir.0);
    let grpc_addr: SocketAddr = server.listening["grpc"].as_str().unwrap().parse().unwrap();
    let addr = server.addr;

    let (step_tx, step_rx) = std::sync::mpsc::channel::<&'static str>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let client = std::thread::spawn(move || grpc::run(grpc_addr, &done_tx, step_rx));
    let local = done_rx.recv().unwrap();

    let listed = wait_status(addr, "the gRPC connection", |s| {
        instance(s, "billing", "pod-9")["records"] == 3
    });
    let i = instance(&listed, "billing", "pod-9");
    assert_eq!(i["socket"], "grpc", "{listed}");
    assert_eq!(i["connections"], 1);
    assert_eq!(i["peer"], local.to_string().as_str());
    assert!(i["bytes"].as_u64().unwrap() > 0, "{i}");
    assert!(i["last_record_at"].is_string(), "{i}");

    step_tx.send("search").unwrap();
    done_rx.recv().unwrap();
    let moved = wait_status(addr, "the connection under its latest call's app", |s| {
        s.get("billing").is_none() && instance(s, "search", "pod-9")["records"] == 5
    });
    assert_eq!(instance(&moved, "search", "pod-9")["socket"], "grpc");

    step_tx.send("close").unwrap();
    client.join().unwrap();
    wait_status(addr, "the closed gRPC connection dropped", |s| {
        s == &serde_json::json!({})
    });
    assert!(server.stop().success());
}

/// A small gRPC client on its own thread: it pushes 3 records as billing/pod-9, reports its
/// local address, then on "search" pushes 2 more as search/pod-9 on the same connection, and
/// on "close" closes it.
mod grpc {
    use std::net::SocketAddr;
    use std::sync::mpsc::{Receiver, Sender};

    use bytes::Bytes;
    use http::Request;
    use logmill::protocol::grpc as wire;
    use logmill::protocol::grpc::logmill_v1::{LogRecord, PushRequest, log_record};
    use prost::Message as _;

    const PUSH: &str = "/logmill.v1.LogService/Push";

    pub fn run(addr: SocketAddr, done: &Sender<SocketAddr>, steps: Receiver<&'static str>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let local = tcp.local_addr().unwrap();
            let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
            let driver = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    eprintln!("client connection ended: {e}");
                }
            });
            push(&mut client, "billing", 3).await;
            done.send(local).unwrap();
            let steps = std::sync::Arc::new(std::sync::Mutex::new(steps));
            let next = || {
                let steps = steps.clone();
                tokio::task::spawn_blocking(move || steps.lock().unwrap().recv().unwrap())
            };
            assert_eq!(next().await.unwrap(), "search");
            push(&mut client, "search", 2).await;
            done.send(local).unwrap();
            assert_eq!(next().await.unwrap(), "close");
            drop(client);
            driver.await.unwrap();
        });
    }

    /// One unary Push of `n` records as `app`/pod-9; waits for its reply.
    async fn push(client: &mut h2::client::SendRequest<Bytes>, app: &str, n: usize) {
        let request = PushRequest {
            records: (0..n)
                .map(|i| LogRecord {
                    body: Some(log_record::Body::Message(format!("grpc {app} {i}"))),
                    ..LogRecord::default()
                })
                .collect(),
        };
        let mut body = Vec::new();
        wire::encode_message(&request.encode_to_vec(), &mut body);
        let head = Request::post(format!("http://logmill{PUSH}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("logmill-app", app)
            .header("logmill-instance", "pod-9")
            .body(())
            .unwrap();
        let mut ready = client.clone().ready().await.unwrap();
        let (response, mut send) = ready.send_request(head, false).unwrap();
        *client = ready;
        send.send_data(Bytes::from(body), true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);
        let mut reply = response.into_body();
        while let Some(chunk) = reply.data().await {
            let chunk = chunk.unwrap();
            reply.flow_control().release_capacity(chunk.len()).unwrap();
        }
        let trailers = reply.trailers().await.unwrap().unwrap_or_default();
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..]),
            "{trailers:?}"
        );
    }
}
