//! End-to-end buckets: each app's records in `<dir>/<app>/_main.log*`, anonymous ones in
//! `<dir>/_main.log*`, one global sequence; app names that could leave `--dir` refused; many
//! apps with rotation and more buckets than the open-file budget. Bytes are checked on disk.
//! The servers run with `--auth off`, where `hello.app` names the bucket.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use common::*;
use logmill::protocol::native::{self, ErrorKind, Hello, ServerFrame};

/// These tests are about buckets, not tokens: under `--auth off` the hello's app chooses the
/// bucket (tests/auth.rs covers the same with tokens).
const OFF: &[&str] = &["--auth", "off"];

/// A native client that said hello as `app`/`instance` (acks on) and got its welcome.
fn client_as(server: &Server, app: &str, instance: &str) -> Client {
    let mut client = server.client();
    assert!(
        matches!(
            say_hello(&mut client, app, instance),
            ServerFrame::Welcome { .. }
        ),
        "no welcome for {app:?}"
    );
    client
}

fn say_hello(client: &mut Client, app: &str, instance: &str) -> ServerFrame {
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
    client.stream.write_all(&out).unwrap();
    client.read_frame().expect("no answer to hello")
}

/// The text line's `APP/INSTANCE` column.
fn origin_of(line: &str) -> &str {
    line.split(' ').nth(3).unwrap()
}

fn assert_increasing(lines: &[String], what: &str) {
    for pair in lines.windows(2) {
        assert!(
            seq_of(&pair[0]) < seq_of(&pair[1]),
            "{what}: not increasing: {} then {}",
            pair[0],
            pair[1]
        );
    }
}

/// Names of the directories in `dir`.
fn subdirs(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect()
}

/// Two apps x three instances and an anonymous client, their records interleaved: each app's
/// records are in its own files with their instance, the anonymous ones in the root file, the
/// sequence numbers are one gap-free sequence over all buckets, increasing in each; after a
/// restart (with `_main.seq` gone) numbering continues after the highest in any bucket.
#[test]
fn two_apps_three_instances_each_in_its_bucket() {
    let dir = TempDir::new("buckets-two-apps");
    let server = Server::start(&dir.0, OFF);
    let apps = ["billing", "search"];
    let mut clients = Vec::new();
    for app in apps {
        for pod in 1..=3 {
            let instance = format!("pod-{pod}");
            clients.push((app, instance.clone(), client_as(&server, app, &instance)));
        }
    }
    let mut anonymous = server.client();
    anonymous.hello("", true);
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        for (app, instance, client) in &mut clients {
            client.send(&[
                message(&format!("{app} {instance} {round} a")),
                message(&format!("{app} {instance} {round} b")),
            ]);
        }
        anonymous.send(&[message(&format!("anonymous {round}"))]);
    }
    for (_, _, client) in &mut clients {
        client.wait_ack(2 * ROUNDS as u64);
    }
    anonymous.wait_ack(ROUNDS as u64);
    // One more, sent after every other record is written, so the highest number is surely in
    // an app's bucket (the loops number their batches in whatever order they send them).
    let (app, instance, client) = &mut clients[0];
    client.send(&[message(&format!("{app} {instance} last"))]);
    client.wait_ack(2 * ROUNDS as u64 + 1);

    let mut all = Vec::new();
    for app in apps {
        let lines = read_lines(&dir.0.join(app));
        let last = usize::from(app == "billing");
        assert_eq!(lines.len(), 3 * 2 * ROUNDS + last, "{app}");
        assert_increasing(&lines, app);
        for line in &lines {
            let (origin, text) = (origin_of(line), message_of_app(line));
            let mut words = text.split(' ');
            assert_eq!(words.next(), Some(app), "{line}");
            let instance = words.next().unwrap();
            assert_eq!(origin, format!("{app}/{instance}"), "{line}");
        }
        all.extend(lines);
    }
    let root = read_lines(&dir.0);
    assert_eq!(root.len(), ROUNDS);
    assert_increasing(&root, "anonymous");
    assert!(root.iter().all(|l| message_of(l).starts_with("anonymous ")));
    all.extend(root);
    let seqs: BTreeSet<u64> = all.iter().map(|l| seq_of(l)).collect();
    let total = (2 * 3 * 2 + 1) * ROUNDS as u64 + 1;
    assert_eq!(seqs, (1..=total).collect(), "one gap-free sequence");
    assert_eq!(
        subdirs(&dir.0),
        apps.iter().map(|a| a.to_string()).collect()
    );
    // One more record in billing once every other is acked: the highest number is then in an
    // app's bucket, not the root's (the loops number batches in the order they hand them over,
    // not the order clients sent them).
    clients[0].2.send(&[message("billing pod-1 last")]);
    let total = total + 1;
    assert_eq!(clients[0].2.wait_ack(2 * ROUNDS as u64 + 1), total);
    drop(clients);
    drop(anonymous);
    assert!(server.stop().success());

    // The state file gone: only the buckets' files say where numbering stopped.
    std::fs::remove_file(dir.0.join("_main.seq")).unwrap();
    let last_in_root = seq_of(read_lines(&dir.0).last().unwrap());
    assert!(last_in_root < total);
    let server = Server::start(&dir.0, OFF);
    let mut client = client_as(&server, "billing", "pod-9");
    client.send(&[message("billing pod-9 after restart")]);
    assert_eq!(client.wait_ack(1), total + 1);
    let lines = read_lines(&dir.0.join("billing"));
    assert_eq!(origin_of(lines.last().unwrap()), "billing/pod-9");
    assert!(server.stop().success());
}

/// What follows the app/instance and logger columns of a text line.
fn message_of_app(line: &str) -> &str {
    line.splitn(6, ' ').nth(5).unwrap()
}

/// App names that could name a path outside `--dir` (or are not names at all) are refused at
/// hello with an error frame and a line in `_server.log`; the connection's records go to the
/// anonymous bucket, and nothing is created anywhere but in `--dir`'s own files.
#[test]
fn traversal_app_names_are_refused() {
    let outer = TempDir::new("buckets-traversal");
    let dir = outer.0.join("data");
    let server = Server::start(&dir, OFF);
    let long = "x".repeat(65);
    let bad = [
        "..", ".", "a/b", "../x", "../../x", "/tmp/x", "a\0b", &long, "-x", "a b",
    ];
    for name in bad {
        let mut client = server.client();
        match say_hello(&mut client, name, "pod") {
            ServerFrame::Error {
                kind: Some(ErrorKind::Undecodable),
                message,
            } => assert!(
                message.contains("hello refused") && message.contains("anonymous bucket"),
                "{name:?}: {message}"
            ),
            other => panic!("{name:?} not refused: {other:?}"),
        }
        client.send(&[message(
            &format!("from {name:?}").replace(['/', '\0', ' '], "_"),
        )]);
        client.wait_ack(1);
    }
    // An empty app is anonymous, not an error.
    let mut client = client_as(&server, "", "");
    client.send(&[message("empty app")]);
    client.wait_ack(1);

    let lines = read_lines(&dir);
    assert_eq!(lines.len(), bad.len() + 1, "every record in the root file");
    assert!(
        subdirs(&dir).is_empty(),
        "a bucket was made: {:?}",
        subdirs(&dir)
    );
    let outside: Vec<_> = std::fs::read_dir(&outer.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["data"], "something was created outside --dir");
    let log = wait_for("refusals in _server.log", DEADLINE, || {
        let log = std::fs::read_to_string(dir.join("_server.log")).ok()?;
        (log.matches("hello refused").count() == bad.len()).then_some(log)
    });
    assert!(log.contains(r#"app name "../x" is not"#), "{log}");
    assert!(server.stop().success());
}

/// More apps than the open-file budget (256 buckets open at most), each rotating its own small
/// files: every record is stored in its app's files, no file passes --max-file-size, and the
/// server holds far fewer descriptors than there are buckets.
#[test]
fn many_apps_rotate_and_close_their_files() {
    const APPS: usize = 300;
    const RECORDS: usize = 20;
    let dir = TempDir::new("buckets-many");
    let server = Server::start(
        &dir.0,
        &[
            "--auth",
            "off",
            "--max-file-size",
            "1KiB",
            "--max-files",
            "5",
        ],
    );
    for app in 0..APPS {
        let mut client = client_as(&server, &format!("app-{app:03}"), "i");
        let records: Vec<_> = (0..RECORDS)
            .map(|i| message(&format!("app {app:03} record {i:02} padding padding")))
            .collect();
        client.send(&records);
        client.wait_ack(RECORDS as u64);
    }
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.child.id()))
        .unwrap()
        .count();
    assert!(fds < APPS, "{fds} descriptors open for {APPS} buckets");
    let mut seqs = BTreeSet::new();
    for app in 0..APPS {
        let bucket = dir.0.join(format!("app-{app:03}"));
        let lines = read_lines(&bucket);
        assert_eq!(lines.len(), RECORDS, "app {app}");
        assert_increasing(&lines, "bucket");
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(
                message_of_app(line),
                format!("app {app:03} record {i:02} padding padding")
            );
            seqs.insert(seq_of(line));
        }
        assert!(
            bucket.join("_main.log.0").exists(),
            "app {app} never rotated"
        );
        for file in std::fs::read_dir(&bucket).unwrap() {
            let len = file.unwrap().metadata().unwrap().len();
            assert!(len <= 1024, "app {app}: a file of {len} bytes");
        }
    }
    assert_eq!(seqs, (1..=(APPS * RECORDS) as u64).collect());
    assert!(server.stop().success());
}
