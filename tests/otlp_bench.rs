//! `logmill bench --proto otlp-grpc` and `--proto otlp-http`, the real binary against a real
//! server on 127.0.0.1 that requires tokens (`--auth required`): bench signs one per app
//! (`--apps 2`, `--secret-file`), sends its ExportLogsServiceRequest batches, and must report
//! every record acknowledged; the records are then checked on disk, in their apps' buckets, with
//! the fields the OTLP mapping gives them. Without a token the server's 401 makes bench fail
//! and say so.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use common::{Server, TempDir, read_lines};

/// Records per run: not a multiple of the batch nor of the connections, so full batches, a
/// shorter last batch and uneven shares are all sent.
const RECORDS: u64 = 3001;
const CONNECTIONS: u64 = 4;

/// Starts the server with its gRPC (and HTTP) port on an ephemeral port, tokens required and
/// JSON lines on disk.
fn start(dir: &Path) -> (Server, String) {
    let mut command = common::logmill();
    command
        .args(["serve", "--port", "0", "--grpc-port", "0", "--dir"])
        .arg(dir)
        .args(["--auth", "required", "--format", "json"]);
    let server = Server::spawn(command, dir);
    let grpc = server.listening["grpc"].as_str().unwrap().to_string();
    (server, grpc)
}

fn bench(proto: &str, addr: &str, extra: &[&str]) -> Output {
    common::logmill()
        .args(["bench", "--proto", proto, "--addr", addr, "--no-progress"])
        .args(["-n", &RECORDS.to_string(), "-c", &CONNECTIONS.to_string()])
        .args(["--batch", "512", "--timeout", "60s"])
        .args(extra)
        .output()
        .unwrap()
}

/// The report's JSON line (its last line of stdout), after checking bench succeeded.
fn report(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// Every stored record of `app`'s bucket, parsed.
fn records_of(dir: &Path, app: &str) -> Vec<serde_json::Value> {
    read_lines(&dir.join(app))
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// `c00002 n0000000042 ...`: connection 2, record 42.
fn origin(message: &str) -> (u64, u64) {
    let conn = message[1..6].parse().unwrap();
    let n = message[8..18].parse().unwrap();
    (conn, n)
}

#[test]
fn otlp_bench_records_are_all_acked_and_stored_with_their_fields() {
    let dir = TempDir::new("otlp-bench");
    let (_server, grpc) = start(&dir.0);
    let secret = dir.0.join(".logmill/secret");
    let secret = secret.to_str().unwrap();
    let apps = ["logmill-bench-0000", "logmill-bench-0001"];

    for (round, proto) in ["otlp-grpc", "otlp-http"].into_iter().enumerate() {
        let json = report(&bench(
            proto,
            &grpc,
            &["--apps", "2", "--secret-file", secret],
        ));
        assert_eq!(json["bench"], proto, "{json}");
        assert_eq!(json["records"], RECORDS, "{json}");
        assert_eq!(json["batch"], 512, "{json}");
        assert!(json["ack_p50_us"].as_u64().is_some(), "{json}");

        // The answer is sent once the records are written: they are on disk now.
        let mut seen = BTreeSet::new();
        let mut stored = 0;
        for (a, app) in apps.iter().enumerate() {
            let records = records_of(&dir.0, app);
            stored += records.len() as u64;
            for record in records {
                let message = record["message"].as_str().unwrap();
                let (conn, n) = origin(message);
                // Connection i is app i mod 2, and says which connection it is.
                assert_eq!(conn % 2, a as u64, "{record}");
                assert_eq!(record["app"], *app, "{record}");
                assert_eq!(record["fields"]["bench.connection"], conn, "{record}");
                assert_eq!(record["service"], "logmill-bench", "{record}");
                assert_eq!(record["host"], "bench-host", "{record}");
                assert_eq!(record["logger"], "bench", "{record}");
                assert_eq!(record["level"], "info", "{record}");
                assert_eq!(record["fields"]["http.route"], "/api/orders", "{record}");
                assert_eq!(record["fields"]["otel.scope.version"], "1.0.0", "{record}");
                assert_eq!(message.len(), 200, "{record}");
                seen.insert((conn, n));
            }
        }
        assert_eq!(stored, RECORDS * (round as u64 + 1), "{proto}");
        if proto == "otlp-grpc" {
            // otlp-grpc numbers every record of a connection: each of its share is there once.
            let expected: BTreeSet<(u64, u64)> = (0..CONNECTIONS)
                .flat_map(|c| {
                    let share = RECORDS / CONNECTIONS + u64::from(c < RECORDS % CONNECTIONS);
                    (0..share).map(move |n| (c, n))
                })
                .collect();
            assert_eq!(seen, expected);
        }
    }

    // Without a token the server answers 401 (HTTP) or UNAUTHENTICATED (gRPC), and bench fails
    // saying so; nothing more is stored.
    for proto in ["otlp-grpc", "otlp-http"] {
        let out = bench(proto, &grpc, &[]);
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let refused = match proto {
            "otlp-http" => "answered HTTP 401",
            _ => "grpc-status 16",
        };
        assert!(stderr.contains(refused), "{proto}: {stderr}");
        assert!(
            stderr.contains("requires an application token"),
            "{proto}: {stderr}"
        );
    }
    let stored: usize = apps.iter().map(|a| records_of(&dir.0, a).len()).sum();
    assert_eq!(stored as u64, RECORDS * 2);
    assert!(read_lines(&dir.0).is_empty());
}

/// Against a server bench starts itself (the usual measuring run), with the default batch and
/// one app: every record acked, and the server's CPU per record reported.
#[test]
fn otlp_bench_reports_server_cpu_per_record() {
    for proto in ["otlp-grpc", "otlp-http"] {
        let out = common::logmill()
            .args(["bench", "--proto", proto, "-n", "2000", "-c", "2"])
            .args(["--no-progress", "--timeout", "60s"])
            .output()
            .unwrap();
        let json = report(&out);
        assert_eq!(json["records"], 2000, "{json}");
        assert!(
            json["server_cpu_us_per_record"].as_f64().is_some(),
            "{json}"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("µs per record"), "{stdout}");
    }
}
