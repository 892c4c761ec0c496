//! Memory under hostile input (`--max-input`): clients that send most of a large frame or gRPC
//! message and then stop must not be able to grow the server's memory past what its flags allow
//! (README, "Memory"), and well-behaved clients must keep their records flowing meanwhile.
//!
//! The server's resident set size is read from `/proc/<pid>/status` (Linux only, like the
//! server's own deployment target).

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use bytes::Bytes;
use common::{DEADLINE, Server, TempDir, message, wait_for};
use http::Request;
use logmill::protocol::grpc;
use logmill::protocol::native::{self, ServerFrame};
use logmill::record::{Body, Record};

const WORKERS: usize = 2;
const MAX_FRAME: usize = 1 << 20;
const MAX_INPUT: usize = 8 << 20;
const MAX_PENDING: usize = 16 << 20;
/// The gRPC limits `--max-input 8MiB` gives (`GrpcLimits::from_config`): messages of at most
/// half the budget, a connection window of a quarter.
const MAX_MESSAGE: usize = MAX_INPUT / 2;
const CONNECTION_WINDOW: usize = MAX_INPUT / 4;

const HOSTILE_TCP: usize = 24;
const HOSTILE_STREAMS: usize = 100;
const GOOD_BATCHES: usize = 100;
const GOOD_PER_BATCH: usize = 50;

/// The README's worst-case formula ("Memory") for this test's flags, over the RSS the server
/// had once started (`base`, which already holds the code, the threads and their stacks), with
/// the allocator factor `a` = 1.5 (the README measures 1.1 to 2.5).
fn documented_bound(base: usize, tcp_connections: usize, grpc_connections: usize) -> usize {
    const KIB: usize = 1024;
    let per_loop = 1300 * KIB + MAX_FRAME;
    let unfinished = MAX_INPUT + WORKERS * (MAX_FRAME + 16).max(CONNECTION_WINDOW);
    base + WORKERS * per_loop
        + MAX_PENDING
        + unfinished * 3 / 2
        + tcp_connections * KIB
        + grpc_connections * 22 * KIB
}

fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

/// `name=value` from a `health` line.
fn health_field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

/// A native frame of one record of almost `--max-frame` bytes, less its last byte.
fn frame_prefix() -> Vec<u8> {
    let record = Record {
        body: Body::Message("h".repeat(MAX_FRAME - 256).into()),
        ..Record::default()
    };
    let mut frame = Vec::new();
    native::encode_records(&[record], &mut frame);
    assert!(frame.len() <= MAX_FRAME + 4, "a frame the server accepts");
    frame.pop();
    frame
}

/// Opens `HOSTILE_TCP` connections, each sending a frame prefix and stopping. Returns them
/// (held open) once every byte is written or the server closed them.
fn hostile_tcp(addr: SocketAddr) -> Vec<TcpStream> {
    let prefix = frame_prefix();
    let threads: Vec<_> = (0..HOSTILE_TCP)
        .map(|_| {
            let prefix = prefix.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(DEADLINE)).unwrap();
                // A shed connection is reset: the write may fail, which is the point.
                if let Err(e) = s.write_all(&prefix) {
                    eprintln!("hostile tcp: {e}");
                }
                s
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// One gRPC connection opening `HOSTILE_STREAMS` PushStream calls, each declaring a message of
/// `MAX_MESSAGE - 1` bytes and sending all of it but the last byte. Returns how many calls the
/// server ended (an error status, a reset, or the connection closed), once all have ended.
fn hostile_grpc(addr: SocketAddr) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("hostile gRPC connection ended: {e}");
            }
        });
        let mut body = Vec::with_capacity(MAX_MESSAGE + 4);
        body.push(0);
        body.extend_from_slice(&((MAX_MESSAGE - 1) as u32).to_be_bytes());
        body.resize(grpc::PREFIX_LEN + MAX_MESSAGE - 2, b'x');
        let body = Bytes::from(body);
        let mut calls = Vec::new();
        for _ in 0..HOSTILE_STREAMS {
            let request = Request::post("http://logmill/logmill.v1.LogService/PushStream")
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap();
            let Ok(ready) = client.clone().ready().await else {
                break; // the server sent GOAWAY
            };
            client = ready;
            let Ok((response, mut send)) = client.send_request(request, false) else {
                break;
            };
            // Queued whole: h2 sends it as the server's windows allow.
            if send.send_data(body.clone(), false).is_err() {
                break;
            }
            calls.push(tokio::spawn(async move {
                let _keep_open = send;
                match response.await {
                    Ok(response) => {
                        let status = response.headers().get("grpc-status");
                        eprintln!("hostile gRPC call answered: {status:?}");
                    }
                    Err(e) => eprintln!("hostile gRPC call ended: {e}"),
                }
            }));
        }
        let mut ended = 0;
        for call in calls {
            if call.await.is_ok() {
                ended += 1;
            }
        }
        ended
    })
}

/// The `health` line of the server at `addr`.
fn health_at(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"health\n").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
    answer
}

/// Sends `GOOD_BATCHES` batches with acks, each after the previous one's ack: a client that keeps
/// flowing only if the server keeps serving it. Half-way it waits until the server has shed
/// someone, so that the second half is sent while hostile clients are being dealt with.
fn good_client(server: &Server) -> std::thread::JoinHandle<u64> {
    let mut client = server.client();
    let addr = server.addr;
    std::thread::spawn(move || {
        match client.hello("good", true) {
            ServerFrame::Welcome { .. } => {}
            other => panic!("expected a welcome, got {other:?}"),
        }
        let mut last_seq = 0;
        for batch in 0..GOOD_BATCHES {
            if batch == GOOD_BATCHES / 2 {
                wait_for("a first shed", DEADLINE, || {
                    (health_field(&health_at(addr), "shed") > 0).then_some(())
                });
            }
            let records: Vec<_> = (0..GOOD_PER_BATCH)
                .map(|i| message(&format!("good {batch} {i}")))
                .collect();
            client.send(&records);
            last_seq = client.wait_ack(((batch + 1) * GOOD_PER_BATCH) as u64);
        }
        last_seq
    })
}

#[test]
fn hostile_partial_input_is_shed_within_the_documented_bound() {
    let dir = TempDir::new("memory");
    let mut command = common::logmill();
    command
        .args(["serve", "--port", "0", "--grpc-port", "0", "--dir"])
        .arg(&dir.0)
        .args([
            "--workers",
            &WORKERS.to_string(),
            "--max-input",
            &MAX_INPUT.to_string(),
            "--max-pending",
            &MAX_PENDING.to_string(),
        ]);
    let server = Server::spawn(command, &dir.0);
    let pid = server.child.id();
    let grpc_addr: SocketAddr = server.listening["grpc"].as_str().unwrap().parse().unwrap();
    let base = rss(pid);
    let bound = documented_bound(base, HOSTILE_TCP + 2, 1);
    eprintln!("RSS at start {base}, bound {bound}");

    let good = good_client(&server);
    let addr = server.addr;
    let tcp = std::thread::spawn(move || hostile_tcp(addr));
    let grpc = std::thread::spawn(move || hostile_grpc(grpc_addr));

    let mut peak = 0;
    let start = Instant::now();
    wait_for("the hostile clients to be dealt with", DEADLINE * 2, || {
        peak = peak.max(rss(pid));
        assert!(
            peak <= bound,
            "RSS {peak} over the documented bound {bound} after {:?}",
            start.elapsed()
        );
        (good.is_finished() && tcp.is_finished() && grpc.is_finished()).then_some(())
    });
    let last_seq = good.join().expect("the good client failed");
    let _hostile = tcp.join().unwrap();
    let ended = grpc.join().unwrap();
    peak = peak.max(rss(pid));
    eprintln!("peak RSS {peak} (bound {bound}); last good seq {last_seq}");
    assert!(peak <= bound);

    // Every hostile call was ended by the server (they never finish on their own).
    assert!(ended > 0, "no hostile gRPC call was started");

    let health = server.health();
    let shed = health_field(&health, "shed");
    let partial = health_field(&health, "partial_bytes") as usize;
    assert!(
        shed as usize >= HOSTILE_TCP - MAX_INPUT / MAX_FRAME,
        "too few shed: {health}"
    );
    assert!(partial <= MAX_INPUT, "{health}");

    // The good client's records are all stored; no hostile byte is.
    let good_lines = wait_for("the good records on disk", DEADLINE, || {
        // No token: the good client's records are in the anonymous bucket.
        let lines = common::read_lines_while_written(&dir.0);
        let n = lines.iter().filter(|l| l.contains(" good ")).count();
        (n >= GOOD_BATCHES * GOOD_PER_BATCH).then_some(lines)
    });
    assert!(!good_lines.iter().any(|l| l.contains("hhhhhhhh")));
    assert!(
        !common::read_lines(&dir.0)
            .iter()
            .any(|l| l.contains("hhhhhhhh"))
    );

    let log = std::fs::read_to_string(dir.0.join("_server.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("connection from") && l.contains(": shed")),
        "no TCP shed logged:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("gRPC")
                && (l.contains(": shed") || l.contains("RESOURCE_EXHAUSTED"))),
        "no gRPC shed logged:\n{log}"
    );
    let status = server.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_budget_that_cannot_hold_one_frame_is_refused() {
    let dir = TempDir::new("memory-min");
    let output = common::logmill()
        .args(["serve", "--port", "0", "--tcp-only", "--dir"])
        .arg(&dir.0)
        .args(["--max-frame", "1MiB", "--max-input", "1MiB"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--max-input")
            && stderr.contains(&format!("the minimum is {} bytes", MAX_FRAME + 16)),
        "{stderr}"
    );
}
