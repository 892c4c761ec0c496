//! Forwarding (`--forward`) against a real ClickHouse server (Debian's `clickhouse-server`,
//! started from a config in a temporary directory, `tests/common/clickhouse.rs`) and the real
//! binary: records stored by logmill arrive in the table once each after `FINAL`, whatever
//! crashes on either side, and a sink that can never work is a clear error that leaves
//! ingestion alone.
//!
//! The tests take turns (one ClickHouse at a time): each server wants a few hundred MiB and
//! seconds of CPU to start, and the machine is small.

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use common::clickhouse::{ClickHouse, PASSWORD};
use common::{Server, TempDir, read_lines, seq_of, wait_for};
use serde_json::Value as Json;

/// How long a forward of this file's volumes may take on a busy machine (debug build).
const FORWARD_DEADLINE: Duration = Duration::from_secs(180);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn clickhouse(test: &str) -> Option<PathBuf> {
    tools::require(test, tools::clickhouse_server())
}

/// Creates `default.<table>` with the statement `logmill forward schema clickhouse` prints.
fn create_table(ch: &ClickHouse, table: &str) {
    let out = common::logmill()
        .args(["forward", "schema", "clickhouse", "--table"])
        .arg(format!("default.{table}"))
        .output()
        .expect("logmill forward schema");
    assert!(out.status.success(), "{out:?}");
    ch.query(&String::from_utf8(out.stdout).unwrap());
}

/// Starts logmill in `dir` forwarding to `default.<table>` as `node`, logged in as `writer`
/// with `password` (through the environment, as a user would).
fn start_node(
    dir: &Path,
    ch: &ClickHouse,
    table: &str,
    node: &str,
    password: &str,
    extra: &[&str],
) -> Server {
    let mut command = common::logmill();
    command
        .args(["serve", "--tcp-only", "--port", "0", "--dir"])
        .arg(dir)
        .args(["--node-id", node, "--forward"])
        .arg(format!(
            "clickhouse+http://{}/default.{table}",
            ch.http_addr()
        ))
        .args(extra)
        .env("LOGMILL_CLICKHOUSE_USER", "writer")
        .env("LOGMILL_CLICKHOUSE_PASSWORD", password);
    Server::spawn(command, dir)
}

/// Stores `n` records through `logmill pipe` (with acks: every one is on disk when it returns),
/// each with the field `k=v`.
fn pipe(server: &Server, n: usize, prefix: &str) {
    let mut child = common::logmill()
        .args(["pipe", "--field", "k=v", "--addr"])
        .arg(server.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("logmill pipe");
    let mut text = String::with_capacity(n * 16);
    for i in 0..n {
        text.push_str(&format!("{prefix} record {i}\n"));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success(), "logmill pipe failed");
}

/// The first sink's entry of the server's `status` answer.
fn sink_status(server: &Server) -> Option<Json> {
    let mut s = TcpStream::connect(server.addr).ok()?;
    s.set_read_timeout(Some(common::DEADLINE)).ok()?;
    s.write_all(b"status\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let status: Json = serde_json::from_str(answer.trim()).ok()?;
    Some(status["_forward"][0].clone())
}

/// A number out of a query's one-line answer (`None` while ClickHouse is down).
fn number(ch: &ClickHouse, sql: &str) -> Option<u64> {
    match ch.post(sql)? {
        (200, body) => body.trim().parse().ok(),
        _ => None,
    }
}

/// Waits until `SELECT count() FROM t FINAL` is `n`.
fn wait_rows(ch: &ClickHouse, table: &str, n: u64) {
    let sql = format!("SELECT count() FROM default.{table} FINAL");
    wait_for(&format!("{n} rows in {table}"), FORWARD_DEADLINE, || {
        (number(ch, &sql)? == n).then_some(())
    });
}

/// Every record stored in `dir` is in the table once under `node`, with its sequence number:
/// the numbers on disk and in ClickHouse are the same set, with no gap.
fn assert_complete(ch: &ClickHouse, table: &str, node: &str, dir: &Path) {
    let stored: Vec<u64> = read_lines(dir).iter().map(|l| seq_of(l)).collect();
    let sql = format!(
        "SELECT count(), uniqExact(seq), min(seq), max(seq) FROM default.{table} FINAL \
         WHERE node = '{node}' AND bucket = '_main' FORMAT TSV"
    );
    let got: Vec<u64> = ch
        .query(&sql)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let n = stored.len() as u64;
    let (min, max) = (stored[0], *stored.last().unwrap());
    assert_eq!(max - min + 1, n, "the stored numbers have a gap");
    assert_eq!(
        got,
        [n, n, min, max],
        "node {node}: count, distinct, min, max"
    );
}

#[test]
fn two_nodes_forward_100k_records_into_one_table() {
    let Some(program) = clickhouse("two_nodes_forward_100k_records_into_one_table") else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (ch_dir, a_dir, b_dir) = (TempDir::new("ch"), TempDir::new("a"), TempDir::new("b"));
    let ch = ClickHouse::start(&program, &ch_dir.0);
    create_table(&ch, "t");
    let a = start_node(&a_dir.0, &ch, "t", "node-a", PASSWORD, &[]);
    let b = start_node(&b_dir.0, &ch, "t", "node-b", PASSWORD, &[]);
    std::thread::scope(|s| {
        s.spawn(|| pipe(&a, 50_000, "a"));
        s.spawn(|| pipe(&b, 50_000, "b"));
    });
    wait_rows(&ch, "t", 100_000);
    assert_complete(&ch, "t", "node-a", &a_dir.0);
    assert_complete(&ch, "t", "node-b", &b_dir.0);
    let row = ch.query(
        "SELECT level, message, fields, time_us < 1000000 FROM default.t FINAL \
         WHERE node = 'node-b' AND message = 'b record 7' FORMAT TSV",
    );
    assert_eq!(row.trim(), "INFO\tb record 7\t{\"k\":\"v\"}\t1");
    // The time to the microsecond, as stored (RowBinary: DateTime seconds and time_us).
    let stored = read_lines(&b_dir.0)
        .into_iter()
        .find(|l| l.contains(" b record 7 |"))
        .unwrap();
    let stamp = stored.split(' ').next().unwrap();
    let at =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).unwrap();
    let micros = at.unix_timestamp_nanos() / 1_000;
    let got = ch.query(
        "SELECT toUInt32(time) * 1000000 + time_us FROM default.t FINAL \
         WHERE node = 'node-b' AND message = 'b record 7' FORMAT TSV",
    );
    assert_eq!(got.trim(), micros.to_string(), "{stored}");
    // Caught up: nothing left to forward, as health says.
    wait_for("lag 0", common::DEADLINE, || {
        let health = a.health();
        health
            .contains("forward_lag_records=0 forward_lag_bytes=0 forward_oldest_s=0")
            .then_some(())
    });
}

#[test]
fn clickhouse_killed_mid_stream_and_restarted_loses_nothing() {
    let Some(program) = clickhouse("clickhouse_killed_mid_stream_and_restarted_loses_nothing")
    else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (ch_dir, dir) = (TempDir::new("ch"), TempDir::new("node"));
    let mut ch = ClickHouse::start(&program, &ch_dir.0);
    create_table(&ch, "t");
    let node = start_node(
        &dir.0,
        &ch,
        "t",
        "n1",
        PASSWORD,
        &["--forward-batch-rows", "200"],
    );
    pipe(&node, 20_000, "r");
    wait_for("the first rows", FORWARD_DEADLINE, || {
        (number(&ch, "SELECT count() FROM default.t")? > 0).then_some(())
    });
    ch.kill();
    wait_for("the forwarder retrying", FORWARD_DEADLINE, || {
        (sink_status(&node)?["state"] == "retrying").then_some(())
    });
    // Records stored while the sink is down are forwarded too.
    pipe(&node, 1_000, "while down");
    ch.restart(&program);
    wait_rows(&ch, "t", 21_000);
    assert_complete(&ch, "t", "n1", &dir.0);
    wait_for("state ok", common::DEADLINE, || {
        (sink_status(&node)?["state"] == "ok").then_some(())
    });
}

#[test]
fn logmill_killed_mid_forward_resumes_from_the_checkpoint() {
    let Some(program) = clickhouse("logmill_killed_mid_forward_resumes_from_the_checkpoint") else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (ch_dir, dir) = (TempDir::new("ch"), TempDir::new("node"));
    let ch = ClickHouse::start(&program, &ch_dir.0);
    create_table(&ch, "t");
    // The records are stored first, by a server that does not forward (a sink reachable only
    // later): the forward below has 200 batches to go through.
    let total = 20_000u64;
    let plain = Server::start(&dir.0, &[]);
    pipe(&plain, total as usize, "r");
    assert!(plain.stop().success());
    let args = ["--forward-batch-rows", "100"];
    let mut node = start_node(&dir.0, &ch, "t", "n1", PASSWORD, &args);
    let state = dir.0.join(".logmill").join(format!(
        "forward-clickhouse-{}-default.t.json",
        ch.http_addr().replace(':', "-")
    ));
    let checkpoint = || -> Option<u64> {
        let json: Json = serde_json::from_str(&std::fs::read_to_string(&state).ok()?).ok()?;
        json["buckets"]["_main"].as_u64()
    };
    wait_for("a first checkpoint", FORWARD_DEADLINE, || {
        checkpoint().filter(|&c| c > 0)
    });
    node.child.kill().unwrap();
    node.wait_exit();
    let at_kill = checkpoint().unwrap();
    assert!(at_kill < total, "the forward finished before the kill");
    let node = start_node(&dir.0, &ch, "t", "n1", PASSWORD, &args);
    wait_rows(&ch, "t", total);
    assert_complete(&ch, "t", "n1", &dir.0);
    // The restarted forwarder sent only what the checkpoint did not cover.
    let forwarded = wait_for(
        "the restarted forwarder caught up",
        FORWARD_DEADLINE,
        || {
            let sink = sink_status(&node)?;
            (sink["lag_records"] == 0 && sink["forwarded"].as_u64()? > 0)
                .then(|| sink["forwarded"].as_u64())
                .flatten()
        },
    );
    assert!(
        forwarded <= total - at_kill,
        "resent {forwarded} records; the checkpoint covered {at_kill} of {total}"
    );
    assert_eq!(checkpoint(), Some(total));
}

#[test]
fn wrong_password_and_wrong_schema_stop_with_a_clear_error_and_ingestion_goes_on() {
    let Some(program) =
        clickhouse("wrong_password_and_wrong_schema_stop_with_a_clear_error_and_ingestion_goes_on")
    else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (ch_dir, pw_dir, schema_dir) = (
        TempDir::new("ch"),
        TempDir::new("password"),
        TempDir::new("schema"),
    );
    let ch = ClickHouse::start(&program, &ch_dir.0);
    create_table(&ch, "t");
    // A table made by hand, without most of the columns logmill sends.
    ch.query(
        "CREATE TABLE default.partial (node String, bucket String, seq UInt64) \
         ENGINE = ReplacingMergeTree() ORDER BY (node, bucket, seq)",
    );
    let wrong_password = start_node(&pw_dir.0, &ch, "t", "n1", "not-the-password", &[]);
    let wrong_schema = start_node(&schema_dir.0, &ch, "partial", "n2", PASSWORD, &[]);
    for (server, says) in [
        (&wrong_password, "refused the login"),
        (&wrong_schema, "logmill forward schema clickhouse"),
    ] {
        pipe(server, 100, "before");
        let sink = wait_for("the forwarder stopped", FORWARD_DEADLINE, || {
            sink_status(server).filter(|s| s["state"] == "stopped")
        });
        let error = sink["error"].as_str().unwrap();
        assert!(error.contains(says), "{error}");
        let log = std::fs::read_to_string(server.dir.join("_server.log")).unwrap();
        assert!(log.contains("STOPPED") && log.contains(says), "{log}");
        // Ingestion is unaffected: records are still taken and stored, and health is OK.
        pipe(server, 100, "after");
        assert_eq!(read_lines(&server.dir).len(), 200);
        let health = server.health();
        assert!(
            health.starts_with("OK ") && health.contains("forward_stopped=1"),
            "{health}"
        );
    }
    // ClickHouse's own words are in the error: the password, and the column it does not know.
    let password_error = sink_status(&wrong_password).unwrap()["error"].to_string();
    assert!(
        password_error.contains("password") || password_error.contains("Authentication"),
        "{password_error}"
    );
    let schema_error = sink_status(&wrong_schema).unwrap()["error"].to_string();
    assert!(
        schema_error.contains("Unknown field") || schema_error.contains("No such column"),
        "{schema_error}"
    );
    assert_eq!(number(&ch, "SELECT count() FROM default.t"), Some(0));
    assert_eq!(number(&ch, "SELECT count() FROM default.partial"), Some(0));
}

/// The drop rule (`--forward-max-lag`): while the sink is down, rotation keeps the files it has
/// not read past `--max-files`, up to the bound; past it the oldest go anyway, counted and
/// logged. Once the sink is back, every record still on disk reaches it.
#[test]
fn a_sink_down_longer_than_the_lag_bound_keeps_files_then_drops_the_oldest_counted_and_logged() {
    let Some(program) = clickhouse(
        "a_sink_down_longer_than_the_lag_bound_keeps_files_then_drops_the_oldest_counted_and_logged",
    ) else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (ch_dir, dir) = (TempDir::new("ch"), TempDir::new("node"));
    let mut ch = ClickHouse::start(&program, &ch_dir.0);
    create_table(&ch, "t");
    ch.kill();
    let args = [
        "--max-file-size",
        "4KiB",
        "--max-files",
        "2",
        "--forward-max-lag",
        "32KiB",
    ];
    let node = start_node(&dir.0, &ch, "t", "n1", PASSWORD, &args);
    let rotated = || {
        std::fs::read_dir(&dir.0)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_prefix("_main.log.")?.parse::<usize>().ok()
            })
            .count()
    };
    // ~20 KiB of lines: five files or so rotate out, and none is deleted.
    pipe(&node, 400, "first");
    assert!(rotated() > 2, "no file was held: {} rotated", rotated());
    let health = node.health();
    assert!(health.contains("forward_dropped_files=0"), "{health}");
    assert_eq!(read_lines(&dir.0).len(), 400);
    // ~45 KiB more: past the bound, the oldest files go, counted and logged.
    pipe(&node, 800, "second");
    let health = node.health();
    assert!(!health.contains("forward_dropped_files=0"), "{health}");
    let log = std::fs::read_to_string(dir.0.join("_server.log")).unwrap();
    assert!(
        log.contains("BEFORE EVERY --forward SINK READ IT") && log.contains("--forward-max-lag"),
        "{log}"
    );
    let held: u64 = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let i: usize = name.strip_prefix("_main.log.")?.parse().ok()?;
            (i >= 2).then(|| e.metadata().unwrap().len())
        })
        .sum();
    assert!(held <= 32 * 1024, "{held} bytes held past --max-files");
    let on_disk: Vec<u64> = read_lines(&dir.0).iter().map(|l| seq_of(l)).collect();
    let (first, last) = (on_disk[0], *on_disk.last().unwrap());
    assert!(on_disk.len() < 1200 && first > 1, "nothing was deleted");
    assert_eq!(last - first + 1, on_disk.len() as u64, "a gap on disk");
    // The sink comes back: every record still on disk reaches it, once. (Records the forwarder
    // had read into its batch before their file went are sent too: more may arrive, never
    // fewer.)
    ch.restart(&program);
    let sql = format!("SELECT count() FROM default.t FINAL WHERE seq >= {first} AND seq <= {last}");
    wait_for(
        "the records on disk in ClickHouse",
        FORWARD_DEADLINE,
        || (number(&ch, &sql)? == on_disk.len() as u64).then_some(()),
    );
    wait_for("caught up", FORWARD_DEADLINE, || {
        (sink_status(&node)?["lag_records"] == 0).then_some(())
    });
    let all = ch.query("SELECT count(), uniqExact(seq), max(seq) FROM default.t FINAL FORMAT TSV");
    let all: Vec<u64> = all.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(
        (all[0], all[2]),
        (all[1], 1200),
        "count, distinct, max: {all:?}"
    );
}

/// An aggregator tier: one logmill forwards over OTLP/HTTP into another logmill's OTLP receiver;
/// the records arrive with their message, level, fields and where they were first stored.
#[test]
fn otlp_sink_into_a_second_logmill_delivers_records_with_their_fields() {
    let (edge_dir, hub_dir) = (TempDir::new("edge"), TempDir::new("hub"));
    let (hub, otlp) = common::http_client::start(&hub_dir.0, &["--format", "json"]);
    let edge = Server::start(
        &edge_dir.0,
        &[
            "--node-id",
            "edge-1",
            "--forward",
            &format!("otlp+http://{otlp}"),
        ],
    );
    pipe(&edge, 1_000, "edge");
    let lines = hub.wait_json(1_000);
    assert_eq!(lines.len(), 1_000);
    let stored: Vec<u64> = read_lines(&edge_dir.0).iter().map(|l| seq_of(l)).collect();
    for (line, seq) in lines.iter().zip(&stored) {
        let fields = &line["fields"];
        assert_eq!(fields["k"], "v", "{line}");
        assert_eq!(fields["logmill.node"], "edge-1", "{line}");
        assert_eq!(fields["logmill.bucket"], "_main", "{line}");
        assert_eq!(fields["logmill.seq"], *seq, "{line}");
        assert_eq!(line["level"], "info", "{line}");
    }
    assert_eq!(lines[7]["message"], "edge record 7");
    wait_for("caught up", common::DEADLINE, || {
        (sink_status(&edge)?["lag_records"] == 0).then_some(())
    });
    // The forwarder thread runs at the lowest priority; the other threads (the loops, the
    // writer) at the process's.
    let nice = thread_nices(edge.child.id());
    let forward = |name: &str| name.starts_with("logmill-forward");
    let base = nice.iter().find(|(_, _, main)| *main).unwrap().1;
    assert!(
        nice.iter().any(|(name, n, _)| forward(name) && *n == 19),
        "{nice:?}"
    );
    assert!(
        nice.iter().all(|(name, n, _)| forward(name) || *n == base),
        "{nice:?}"
    );
}

/// Each thread of process `pid`: its name, its nice value (`/proc/PID/task/TID/stat`, field
/// 19) and whether it is the main thread.
fn thread_nices(pid: u32) -> Vec<(String, i64, bool)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| {
            let path = task.ok()?.path();
            let main = path.file_name()? == pid.to_string().as_str();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            // After the name's closing parenthesis: state is field 3, nice field 19.
            let after = &stat[stat.rfind(')')? + 2..];
            let nice = after.split(' ').nth(16)?.parse().ok()?;
            Some((name.trim().to_string(), nice, main))
        })
        .collect()
}

/// A receiver with `--auth required` takes forwarded records only with an application token:
/// one from `--forward-token-file`, one from `LOGMILL_FORWARD_TOKEN` (sent as
/// `Authorization: Bearer`); a forwarder without one stops, saying where a token goes, and its
/// server keeps storing.
#[test]
fn otlp_sink_sends_its_token_to_a_logmill_with_auth_required() {
    let dirs = ["hub", "by-file", "by-env", "none", "token"].map(TempDir::new);
    let [hub_dir, file_dir, env_dir, none_dir, token_dir] = &dirs;
    let token = common::issue_token(&hub_dir.0, "edges");
    let (hub, otlp) =
        common::http_client::start(&hub_dir.0, &["--format", "json", "--auth", "required"]);
    let url = format!("otlp+http://{otlp}");
    let token_file = token_dir.0.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let by_file = Server::start(
        &file_dir.0,
        &[
            "--node-id",
            "by-file",
            "--forward",
            &url,
            "--forward-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let by_env = start_with_token(&env_dir.0, "by-env", &url, &token);
    let none = Server::start(&none_dir.0, &["--node-id", "none", "--forward", &url]);
    for server in [&by_file, &by_env, &none] {
        pipe(server, 100, "edge");
    }
    // The hub stores them in the bucket of the token's app.
    let lines = wait_bucket_json(&hub_dir.0, "edges", 200);
    for node in ["by-file", "by-env"] {
        let from = lines
            .iter()
            .filter(|l| l["fields"]["logmill.node"] == node)
            .count();
        assert_eq!(from, 100, "{node}");
    }
    assert!(lines.iter().all(|l| l["app"] == "edges"), "{:?}", lines[0]);
    assert_stopped_for_a_token(&none, "HTTP 401");
    assert_eq!(read_lines(&none.dir).len(), 100);
    assert!(hub.lines().is_empty(), "a record got in without a token");
}

/// OTLP over gRPC (`otlp+grpc://`) into a second logmill's receiver (`--grpc-port`, `--auth
/// required`): a forwarder started while the receiver is down retries (connection refused)
/// and delivers everything once it is up, with the fields and the token's app (the token goes
/// as `authorization` metadata); one without a token stops on `UNAUTHENTICATED`.
#[test]
fn otlp_grpc_sink_retries_a_receiver_that_is_down_then_delivers_records_with_their_fields() {
    let dirs = ["hub", "edge", "bare"].map(TempDir::new);
    let [hub_dir, edge_dir, bare_dir] = &dirs;
    let token = common::issue_token(&hub_dir.0, "edges");
    let port = common::free_port();
    let url = format!("otlp+grpc://127.0.0.1:{port}");
    let edge = start_with_token(&edge_dir.0, "edge-1", &url, &token);
    pipe(&edge, 1_000, "edge");
    wait_for("the forwarder retrying", FORWARD_DEADLINE, || {
        sink_status(&edge).filter(|s| s["state"] == "retrying")
    });

    let mut command = common::logmill();
    command
        .args([
            "serve",
            "--port",
            "0",
            "--grpc-port",
            &port.to_string(),
            "--dir",
        ])
        .arg(&hub_dir.0)
        .args(["--format", "json", "--auth", "required"]);
    let hub = Server::spawn(command, &hub_dir.0);
    let lines = wait_bucket_json(&hub_dir.0, "edges", 1_000);
    let stored: Vec<u64> = read_lines(&edge_dir.0).iter().map(|l| seq_of(l)).collect();
    assert_eq!(lines.len(), stored.len());
    for (line, seq) in lines.iter().zip(&stored) {
        let fields = &line["fields"];
        assert_eq!(fields["k"], "v", "{line}");
        assert_eq!(fields["logmill.node"], "edge-1", "{line}");
        assert_eq!(fields["logmill.seq"], *seq, "{line}");
        assert_eq!(line["app"], "edges", "{line}");
    }
    assert_eq!(lines[7]["message"], "edge record 7");
    let sink = wait_for("caught up", common::DEADLINE, || {
        sink_status(&edge).filter(|s| s["lag_records"] == 0 && s["state"] == "ok")
    });
    assert!(sink["retries"].as_u64().unwrap() > 0, "{sink}");

    let bare = Server::start(&bare_dir.0, &["--forward", &url]);
    pipe(&bare, 10, "bare");
    assert_stopped_for_a_token(&bare, "gRPC status 16");
    assert!(hub.lines().is_empty(), "a record got in without a token");
}

/// Starts logmill in `dir` as `node`, forwarding to `url` with `token` in
/// `LOGMILL_FORWARD_TOKEN` (as a user would give it).
fn start_with_token(dir: &Path, node: &str, url: &str, token: &str) -> Server {
    let mut command = common::logmill();
    command
        .args(["serve", "--tcp-only", "--port", "0", "--dir"])
        .arg(dir)
        .args(["--node-id", node, "--forward", url])
        .env("LOGMILL_FORWARD_TOKEN", token);
    Server::spawn(command, dir)
}

/// Waits until the bucket of `app` in `dir` (a server with `--format json`) holds `n` records,
/// and returns them parsed.
fn wait_bucket_json(dir: &Path, app: &str, n: usize) -> Vec<Json> {
    let bucket = dir.join(app);
    wait_for(
        &format!("{n} records in the bucket {app}"),
        FORWARD_DEADLINE,
        || {
            let lines = common::read_lines_while_written(bucket.exists().then_some(&bucket)?);
            (lines.len() >= n).then_some(lines)
        },
    )
    .iter()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// Waits until `server`'s forwarder stopped, refused for want of a token (`answer`: what the
/// receiver said), with the advice where a token goes.
fn assert_stopped_for_a_token(server: &Server, answer: &str) {
    let sink = wait_for("the tokenless forwarder stopped", FORWARD_DEADLINE, || {
        sink_status(server).filter(|s| s["state"] == "stopped")
    });
    let error = sink["error"].as_str().unwrap();
    assert!(
        error.contains(answer) && error.contains("LOGMILL_FORWARD_TOKEN"),
        "{error}"
    );
}
