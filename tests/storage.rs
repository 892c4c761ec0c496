//! End-to-end storage: rotation, restart continuity, crash repair, line formats, `--stdout`,
//! SIGHUP reopen. Bytes are checked on disk.

mod common;

use std::io::BufRead;

use common::*;
use logmill::record::{Body, Level, Record};

fn send_numbered(server: &Server, from: usize, to: usize) {
    let mut client = server.client();
    client.hello("", true);
    let batch: Vec<_> = (from..to)
        .map(|i| message(&format!("record {i:05}")))
        .collect();
    for chunk in batch.chunks(50) {
        client.send(chunk);
    }
    client.wait_ack((to - from) as u64);
}

/// With a tiny --max-file-size: the file count stays at --max-files + 1, no file passes the
/// size, no record is split, the oldest are deleted, and what remains is in order.
#[test]
fn rotation_with_tiny_files() {
    let dir = TempDir::new("rotation");
    let server = Server::start(&dir.0, &["--max-file-size", "2KiB", "--max-files", "3"]);
    send_numbered(&server, 0, 400);
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("_main.log"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["_main.log", "_main.log.0", "_main.log.1", "_main.log.2"]
    );
    for name in &names {
        let len = std::fs::metadata(dir.0.join(name)).unwrap().len();
        assert!(len <= 2048, "{name} is {len} bytes");
    }
    let lines = server.lines(); // read_lines asserts every file ends with a whole line
    // The oldest records were deleted; what is left is the newest, contiguous and in order.
    let first = seq_of(&lines[0]);
    assert!(first > 1, "nothing was deleted");
    assert_gap_free(&lines, first);
    assert_eq!(seq_of(lines.last().unwrap()), 400);
    for line in &lines {
        let i: u64 = message_of(line)["record ".len()..].parse().unwrap();
        assert_eq!(i + 1, seq_of(line), "record split or out of order: {line}");
    }
    assert!(server.stop().success());
}

/// Sequence numbers continue after a restart, in the same files.
#[test]
fn restart_continues_sequence() {
    let dir = TempDir::new("restart");
    let server = Server::start(&dir.0, &[]);
    send_numbered(&server, 0, 100);
    assert!(server.stop().success());
    let server = Server::start(&dir.0, &[]);
    send_numbered(&server, 100, 150);
    let lines = server.lines();
    assert_eq!(lines.len(), 150);
    assert_gap_free(&lines, 1);
    assert!(server.stop().success());
}

/// A crash in the middle of a rotation (a gap in the numbering, no active file) and a torn last
/// line are repaired at start-up; numbering continues from the newest complete line.
#[test]
fn start_up_repairs_interrupted_rotation_and_torn_line() {
    let dir = TempDir::new("repair");
    let line = |seq: u64| format!("2026-01-01T00:00:00.000000Z INFO {seq} - - old {seq}\n");
    // .0 holds 5-6, .2 holds 1-2 (.1 went missing mid-shift), and no active file.
    std::fs::write(dir.0.join("_main.log.0"), line(5) + &line(6)).unwrap();
    std::fs::write(dir.0.join("_main.log.2"), line(1) + &line(2)).unwrap();
    let server = Server::start(&dir.0, &[]);
    send_numbered(&server, 0, 1);
    assert!(server.stop().success());
    assert!(dir.0.join("_main.log.1").exists() && !dir.0.join("_main.log.2").exists());
    let lines = read_lines(&dir.0);
    let seqs: Vec<u64> = lines.iter().map(|l| seq_of(l)).collect();
    assert_eq!(seqs, [1, 2, 5, 6, 7]);

    // Now a torn line at the end of the active file.
    let active = dir.0.join("_main.log");
    let mut text = std::fs::read_to_string(&active).unwrap();
    text.push_str("2026-01-01T00:00:00.000000Z INFO 8 - - torn wri");
    std::fs::write(&active, text).unwrap();
    let server = Server::start(&dir.0, &[]);
    send_numbered(&server, 1, 2);
    let lines = server.lines();
    let last = lines.last().unwrap();
    assert_eq!(seq_of(last), 8, "{last}");
    assert!(last.ends_with("record 00001"));
    assert!(!lines.iter().any(|l| l.contains("torn")));
    assert!(server.stop().success());
    let log = std::fs::read_to_string(dir.0.join("_server.log")).unwrap();
    assert!(log.contains("torn last line"), "{log}");
    assert!(log.contains("interrupted"), "{log}");
}

fn full_record() -> Record<'static> {
    Record {
        timestamp_ns: 1_700_000_000_000_001_000,
        level: Level::Critical,
        body: Body::Message("line one\nline two \u{1b}[31m".into()),
        logger: "app.core".into(),
        host: "web-1".into(),
        service: "billing".into(),
        file: "core.py".into(),
        line: 12,
        function: "run".into(),
        process_id: 4242,
        thread_name: "MainThread".into(),
        stack_trace: "Traceback\n  File x".into(),
        fields: vec![("user".into(), "ada lovelace".into())],
        ..Record::default()
    }
}

/// `--format json` writes one JSON object per line with stable keys; newlines stay escaped.
#[test]
fn json_format_lines() {
    let dir = TempDir::new("json");
    let server = Server::start(&dir.0, &["--format", "json"]);
    let mut client = server.client();
    client.hello("billing", true);
    client.send(&[full_record()]);
    client.send(&[Record {
        body: Body::Json("{\"order\": 17,\n \"ok\": true}".into()),
        ..Record::default()
    }]);
    client.wait_ack(2);
    let lines = server.lines();
    assert_eq!(lines.len(), 2);
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["seq"], 1);
    assert_eq!(v["time"], "2023-11-14T22:13:20.000001Z");
    assert_eq!(v["level"], "critical");
    assert_eq!(v["app"], "billing");
    // No instance in the hello: the peer's address (README, "Buckets").
    assert_eq!(v["instance"], "127.0.0.1");
    assert_eq!(v["logger"], "app.core");
    assert_eq!(v["message"], "line one\nline two \u{1b}[31m");
    assert_eq!(v["pid"], 4242);
    assert_eq!(v["fields"]["user"], "ada lovelace");
    assert_eq!(v["stack_trace"], "Traceback\n  File x");
    let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(v["json"]["order"], 17);
    assert_eq!(v["level"], "info");
    assert!(server.stop().success());
}

/// The text format escapes control characters and shows metadata as key=value pairs.
#[test]
fn text_format_escapes_and_shows_fields() {
    let dir = TempDir::new("text");
    let server = Server::start(&dir.0, &[]);
    let mut client = server.client();
    client.hello("billing", true);
    client.send(&[full_record()]);
    client.wait_ack(1);
    let lines = server.lines();
    assert_eq!(
        lines,
        [
            "2023-11-14T22:13:20.000001Z CRITICAL 1 billing/127.0.0.1 app.core line one\\nline two \\x1b[31m \
          | host=web-1 service=billing file=core.py line=12 function=run pid=4242 \
          thread=MainThread user=\"ada lovelace\" stack_trace=\"Traceback\\n  File x\""
        ]
    );
    assert!(server.stop().success());
}

/// `--stdout` prints each stored line on standard output too.
#[test]
fn stdout_echoes_stored_lines() {
    let dir = TempDir::new("stdout");
    let mut server = Server::start(&dir.0, &["--stdout"]);
    send_numbered(&server, 0, 3);
    let mut stdout = server.stdout.take().unwrap();
    let mut echoed = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        echoed.push(line.trim_end().to_string());
    }
    assert_eq!(echoed, server.lines());
    assert!(server.stop().success());
}

/// SIGHUP reopens the files, so an external logrotate can move `_main.log` away.
#[test]
fn sighup_reopens_files() {
    let dir = TempDir::new("sighup");
    let server = Server::start(&dir.0, &[]);
    send_numbered(&server, 0, 2);
    std::fs::rename(dir.0.join("_main.log"), dir.0.join("moved.log")).unwrap();
    server.signal("HUP");
    wait_for("a new _main.log", DEADLINE, || {
        dir.0.join("_main.log").exists().then_some(())
    });
    send_numbered(&server, 2, 3);
    let lines = server.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(seq_of(&lines[0]), 3);
    assert_eq!(
        std::fs::read_to_string(dir.0.join("moved.log"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    assert!(server.stop().success());
}

/// Moves every `_main.log*` file of `dir` into `dir/<to>` (what an external logrotate does).
fn move_record_files(dir: &std::path::Path, to: &str) {
    let target = dir.join(to);
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name == "_main.log" || name.starts_with("_main.log.") {
            std::fs::rename(&path, target.join(&name)).unwrap();
        }
    }
}

/// Numbers never repeat when the record files were moved away: the logrotate pattern (move,
/// SIGHUP), then a restart with none of the numbered files left, continues above the old numbers
/// (from `_main.seq`). Deleting `_main.seq` falls back to the files.
#[test]
fn numbers_continue_after_the_files_were_moved_away() {
    let dir = TempDir::new("moved");
    let server = Server::start(&dir.0, &["--max-file-size", "2KiB"]);
    send_numbered(&server, 0, 100); // rotates: _main.log.0 .. exist too
    // A directory whose name is not an app name (a leading dot) is not a bucket.
    move_record_files(&dir.0, ".rotated-1");
    server.signal("HUP");
    wait_for("a new _main.log", DEADLINE, || {
        dir.0.join("_main.log").exists().then_some(())
    });
    send_numbered(&server, 100, 105);
    assert!(server.stop().success());
    let lines = read_lines(&dir.0);
    assert_eq!(lines.first().map(|l| seq_of(l)), Some(101));
    assert_gap_free(&lines, 101);

    move_record_files(&dir.0, ".rotated-2");
    assert!(read_lines(&dir.0).is_empty());
    let server = Server::start(&dir.0, &[]);
    send_numbered(&server, 105, 110);
    assert_gap_free(&server.lines(), 106);
    assert!(server.stop().success());
    let log = std::fs::read_to_string(dir.0.join("_server.log")).unwrap();
    assert!(log.contains("continuing after 105"), "{log}");

    // Without the state file the files decide (here: they hold 106..110).
    std::fs::remove_file(dir.0.join("_main.seq")).unwrap();
    let server = Server::start(&dir.0, &[]);
    send_numbered(&server, 110, 111);
    assert_gap_free(&server.lines(), 106);
    assert!(server.stop().success());
}

/// After SIGKILL the state file is as current as the acks: numbers continue without a gap in
/// the same files, and above the old ones once the files are moved away.
#[test]
fn numbers_continue_after_sigkill_with_and_without_the_files() {
    for fsync in ["never", "always", "1000ms"] {
        let dir = TempDir::new("sigkill-seq");
        let mut server = Server::start(&dir.0, &["--fsync", fsync]);
        send_numbered(&server, 0, 300);
        server.child.kill().unwrap(); // SIGKILL
        server.wait_exit();
        let server = Server::start(&dir.0, &["--fsync", fsync]);
        send_numbered(&server, 300, 310);
        assert_gap_free(&server.lines(), 1);
        let mut server = server;
        server.child.kill().unwrap();
        server.wait_exit();

        move_record_files(&dir.0, "away");
        let server = Server::start(&dir.0, &["--fsync", fsync]);
        send_numbered(&server, 310, 320);
        assert_gap_free(&server.lines(), 311);
        assert!(server.stop().success(), "--fsync {fsync}");
    }
}
