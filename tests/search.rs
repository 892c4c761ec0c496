//! Search over the stored files (`logmill::storage::search`, `logmill query`, `logmill tail`),
//! end to end: the real server writes the files (both line formats, small files so they
//! rotate), then the engine reads them: every filter, pages that neither repeat nor skip across
//! a rotation, counts and the histogram, context, the follower across rotations, and the two
//! commands as processes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;

use common::*;
use logmill::protocol::native::{self, Hello};
use logmill::record::{Body, Level, Record};
use logmill::storage::search::{self, Filter, Follower, Hit, LEVELS, Page};

/// 2026-01-01T00:00:00Z: record `i` is stamped `BASE + i` seconds.
const BASE_NS: u64 = 1_767_225_600_000_000_000;
const SECOND: u64 = 1_000_000_000;
const RECORDS: usize = 200;

/// Record `i` of the data set: its bucket is `billing` when `i.is_multiple_of(5)` (instance `pod-1`
/// when `i.is_multiple_of(10)`, else `pod-2`), else the anonymous one; every other property cycles.
fn record(i: usize) -> Record<'static> {
    let disk = if i.is_multiple_of(7) {
        " Disk FULL on /var"
    } else {
        " ok"
    };
    Record {
        timestamp_ns: BASE_NS + i as u64 * SECOND,
        level: LEVELS[i % 9],
        logger: if i.is_multiple_of(3) {
            "app.db"
        } else {
            "app.web"
        }
        .into(),
        body: Body::Message(format!("rec {i:04}{disk}").into()),
        host: format!("web-{}", i % 2).into(),
        fields: vec![("user".into(), format!("u{}", i % 4).into())],
        ..Record::default()
    }
}

fn in_billing(i: usize) -> bool {
    i.is_multiple_of(5)
}

/// A native client that says hello with a token and an instance (the common one has neither).
fn client(server: &Server, token: &str, instance: &str) -> Client {
    let mut client = server.client();
    let mut out = Vec::new();
    native::encode_hello(
        &Hello {
            app: String::new(),
            instance: instance.into(),
            token: token.into(),
            want_acks: true,
        },
        &mut out,
    );
    client.send_raw(&out);
    client.read_frame().expect("no welcome");
    client
}

/// Sends records `range` of the data set, each to its bucket, and waits until all are written.
fn send_range(server: &Server, token: &str, range: std::ops::Range<usize>) {
    let mut anon = client(server, "", "");
    let mut pod1 = client(server, token, "pod-1");
    let mut pod2 = client(server, token, "pod-2");
    for i in range {
        let c = match (in_billing(i), i.is_multiple_of(10)) {
            (false, _) => &mut anon,
            (true, true) => &mut pod1,
            (true, false) => &mut pod2,
        };
        // One record per frame, acked before the next: the files hold them in `i` order.
        c.send(&[record(i)]);
        c.wait_ack(1);
    }
}

/// The data set's index of a hit (`rec 0042 ...`).
fn index(hit: &Hit) -> usize {
    hit.message[4..8].parse().unwrap()
}

/// Every match, page after page, newest first; asserts the order on the way.
fn all(dir: &Path, filter: &Filter, limit: usize, budget: u64) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut cursor = None;
    for _ in 0..100_000 {
        let page = Page { cursor, limit };
        let results = search::search(dir, filter, &page, budget).unwrap();
        assert!(results.records.len() <= limit);
        out.extend(results.records.iter().map(index));
        assert_eq!(results.more, results.cursor.is_some());
        match results.cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
    panic!("the search never ended");
}

fn expect(pred: impl Fn(usize) -> bool) -> Vec<usize> {
    (0..RECORDS).rev().filter(|&i| pred(i)).collect()
}

fn start(dir: &TempDir, format: &str) -> (Server, String) {
    let token = issue_token(&dir.0, "billing");
    let server = Server::start(
        &dir.0,
        &[
            "--format",
            format,
            "--max-file-size",
            "4KiB",
            "--max-files",
            "1000",
        ],
    );
    (server, token)
}

/// Each filter alone and together, on text and JSON files, over rotated files in two buckets,
/// in one page and in tiny pages with a tiny budget.
#[test]
fn every_filter_in_both_formats() {
    for format in ["text", "json"] {
        let dir = TempDir::new(&format!("search-filters-{format}"));
        let (server, token) = start(&dir, format);
        send_range(&server, &token, 0..RECORDS);
        let rotated = std::fs::read_dir(&dir.0)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("_main.log.")
            })
            .count();
        assert!(rotated >= 3, "{format}: only {rotated} rotated files");
        let f = |filter: Filter| filter;
        let level_of = |i: usize| search::level_index(LEVELS[i % 9]);
        let cases: Vec<(&str, Filter, Vec<usize>)> = vec![
            ("none", Filter::default(), expect(|_| true)),
            (
                "app billing",
                f(Filter {
                    apps: Some(vec!["billing".into()]),
                    ..Filter::default()
                }),
                expect(in_billing),
            ),
            (
                "app _main",
                f(Filter {
                    apps: Some(vec!["_main".into()]),
                    ..Filter::default()
                }),
                expect(|i| !in_billing(i)),
            ),
            (
                "instance",
                f(Filter {
                    instance: Some("pod-1".into()),
                    ..Filter::default()
                }),
                expect(|i| i.is_multiple_of(10)),
            ),
            (
                "level",
                f(Filter {
                    min_level: Some(Level::Error),
                    ..Filter::default()
                }),
                expect(|i| level_of(i) >= search::level_index(Level::Error)),
            ),
            (
                "logger",
                f(Filter {
                    logger: Some("app.db".into()),
                    ..Filter::default()
                }),
                expect(|i| i.is_multiple_of(3)),
            ),
            (
                "text",
                f(Filter {
                    text: Some("disk full".into()),
                    ..Filter::default()
                }),
                expect(|i| i.is_multiple_of(7)),
            ),
            (
                "phrase",
                f(Filter {
                    phrase: Some("Disk FULL".into()),
                    ..Filter::default()
                }),
                expect(|i| i.is_multiple_of(7)),
            ),
            (
                "phrase is case-sensitive",
                f(Filter {
                    phrase: Some("disk full".into()),
                    ..Filter::default()
                }),
                vec![],
            ),
            (
                "field",
                f(Filter {
                    fields: vec![("user".into(), "u1".into())],
                    ..Filter::default()
                }),
                expect(|i| i % 4 == 1),
            ),
            (
                "metadata field",
                f(Filter {
                    fields: vec![("host".into(), "web-1".into())],
                    ..Filter::default()
                }),
                expect(|i| i % 2 == 1),
            ),
            (
                "time range",
                f(Filter {
                    since_ns: Some(BASE_NS + 50 * SECOND),
                    until_ns: Some(BASE_NS + 60 * SECOND),
                    ..Filter::default()
                }),
                expect(|i| (50..60).contains(&i)),
            ),
            (
                "together",
                f(Filter {
                    apps: Some(vec!["billing".into()]),
                    min_level: Some(Level::Warning),
                    text: Some("DISK".into()),
                    ..Filter::default()
                }),
                expect(|i| {
                    in_billing(i)
                        && level_of(i) >= search::level_index(Level::Warning)
                        && i.is_multiple_of(7)
                }),
            ),
        ];
        for (name, filter, want) in &cases {
            assert_eq!(
                &all(&dir.0, filter, 1000, u64::MAX),
                want,
                "{format} {name}"
            );
            assert_eq!(
                &all(&dir.0, filter, 3, 700),
                want,
                "{format} {name}, small pages"
            );
            let counts = search::count(&dir.0, filter, None, u64::MAX, 1, None).unwrap();
            assert_eq!(counts.total(), want.len() as u64, "{format} {name}, count");
        }
        // A hit carries the record's parts.
        let page = Page {
            cursor: None,
            limit: 1,
        };
        let hit = search::search(&dir.0, &Filter::default(), &page, u64::MAX)
            .unwrap()
            .records
            .remove(0);
        assert_eq!(index(&hit), RECORDS - 1);
        assert_eq!(hit.bucket, "_main");
        assert_eq!(hit.level, LEVELS[(RECORDS - 1) % 9]);
        assert_eq!(hit.time_ns, BASE_NS + (RECORDS as u64 - 1) * SECOND);
        assert_eq!(hit.logger, "app.web");
        assert_eq!(hit.fields["user"], "u3");
        assert_eq!(hit.fields["host"], "web-1");
        let last_line = server.lines().pop().unwrap();
        assert_eq!(hit.raw, last_line, "{format}");
        assert_eq!(
            hit.to_json()["level"],
            LEVELS[(RECORDS - 1) % 9].as_lower_str()
        );
        assert!(server.stop().success());
    }
}

/// Pages of a search taken while the server goes on writing and rotating: every record that
/// was there at the first page comes exactly once, newest first, and none written later.
#[test]
fn pages_neither_repeat_nor_skip_across_rotations() {
    for format in ["text", "json"] {
        let dir = TempDir::new(&format!("search-paging-{format}"));
        let (server, token) = start(&dir, format);
        send_range(&server, &token, 0..RECORDS);
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut more = RECORDS;
        loop {
            let page = Page { cursor, limit: 7 };
            let results = search::search(&dir.0, &Filter::default(), &page, 2048).unwrap();
            seen.extend(results.records.iter().map(index));
            let Some(c) = results.cursor else { break };
            cursor = Some(c);
            // Forty records more (a rotation of 4 KiB files or two) before the next page.
            if more < RECORDS + 400 {
                send_range(&server, &token, more..more + 40);
                more += 40;
            }
        }
        assert!(more > RECORDS + 100, "{format}: the writer did not go on");
        assert_eq!(seen, expect(|_| true), "{format}");
        assert!(server.stop().success());
    }
}

/// Counts by level, the histogram's slices, and a count resumed through its cursor.
#[test]
fn counts_by_level_and_time() {
    let dir = TempDir::new("search-counts");
    let (server, token) = start(&dir, "text");
    send_range(&server, &token, 0..RECORDS);
    let range = Some((BASE_NS, BASE_NS + 100 * SECOND));
    let whole = search::count(&dir.0, &Filter::default(), None, u64::MAX, 10, range).unwrap();
    assert_eq!(whole.total(), RECORDS as u64);
    for (level, &n) in whole.by_level.iter().enumerate() {
        assert_eq!(n, (0..RECORDS).filter(|i| i % 9 == level).count() as u64);
    }
    assert_eq!(whole.histogram.len(), 10);
    for (slice, (start, counts)) in whole.histogram.iter().enumerate() {
        assert_eq!(*start, BASE_NS + slice as u64 * 10 * SECOND);
        assert_eq!(counts.iter().sum::<u64>(), 10, "slice {slice}");
        let want_errors = (slice * 10..slice * 10 + 10).filter(|i| i % 9 == 5).count();
        assert_eq!(counts[5], want_errors as u64, "slice {slice}");
    }
    assert!(whole.cursor.is_none() && !whole.more);
    // The same count in slices of a small budget adds up to the same.
    let mut sum: Option<search::Counts> = None;
    let mut cursor = None;
    let mut calls = 0;
    loop {
        let part = search::count(
            &dir.0,
            &Filter::default(),
            cursor.as_deref(),
            3000,
            10,
            range,
        )
        .unwrap();
        calls += 1;
        cursor = part.cursor.clone();
        match &mut sum {
            None => sum = Some(part),
            Some(sum) => sum.add(&part),
        }
        if cursor.is_none() {
            break;
        }
    }
    let sum = sum.unwrap();
    assert!(
        calls > 3,
        "the budget did not slice the count ({calls} calls)"
    );
    assert_eq!(sum.by_level, whole.by_level);
    assert_eq!(sum.histogram, whole.histogram);
    let json = whole.to_json();
    assert_eq!(json["by_level"]["error"], whole.by_level[5]);
    assert_eq!(json["histogram"][0]["start"], BASE_NS);
    assert!(search::count(&dir.0, &Filter::default(), Some("nonsense"), 1, 1, None).is_err());
    assert!(search::count(&dir.0, &Filter::default(), Some("../x:1:2:3"), 1, 1, None).is_err());
    assert!(server.stop().success());
}

/// The records around one, in its bucket only, across a file boundary.
#[test]
fn context_around_a_record() {
    let dir = TempDir::new("search-context");
    let (server, token) = start(&dir, "json");
    send_range(&server, &token, 0..RECORDS);
    let hit = all_hits(
        &dir.0,
        &Filter {
            text: Some("rec 0101".into()),
            ..Filter::default()
        },
    );
    let around = search::context(&dir.0, &hit.bucket, hit.seq, 5).unwrap();
    let got: Vec<usize> = around.iter().map(index).collect();
    let want: Vec<usize> = (0..RECORDS).filter(|&i| !in_billing(i)).collect();
    let at = want.iter().position(|&i| i == 101).unwrap();
    assert_eq!(got, want[at - 5..=at + 5]);
    // At the newest record, nothing after it; a number that is not there, nothing.
    let newest = all_hits(
        &dir.0,
        &Filter {
            text: Some("rec 0199".into()),
            ..Filter::default()
        },
    );
    let around = search::context(&dir.0, "_main", newest.seq, 3).unwrap();
    assert_eq!(
        around.iter().map(index).collect::<Vec<_>>(),
        [196, 197, 198, 199]
    );
    assert!(
        search::context(&dir.0, "_main", 1_000_000, 3)
            .unwrap()
            .is_empty()
    );
    assert!(search::context(&dir.0, "../etc", 1, 3).is_err());
    assert!(server.stop().success());
}

fn all_hits(dir: &Path, filter: &Filter) -> Hit {
    let page = Page {
        cursor: None,
        limit: 10,
    };
    let mut records = search::search(dir, filter, &page, u64::MAX)
        .unwrap()
        .records;
    assert_eq!(records.len(), 1, "{records:?}");
    records.remove(0)
}

/// The follower starts at the end, sees a new record, and follows the active file through
/// several rotations without losing or repeating one; a filter applies.
#[test]
fn follower_sees_new_records_across_rotations() {
    for format in ["text", "json"] {
        let dir = TempDir::new(&format!("search-follow-{format}"));
        let (server, token) = start(&dir, format);
        send_range(&server, &token, 0..50);
        let mut follower = Follower::new(&dir.0, &Filter::default()).unwrap();
        let mut errors = Follower::new(
            &dir.0,
            &Filter {
                min_level: Some(Level::Error),
                ..Filter::default()
            },
        )
        .unwrap();
        assert!(
            follower.poll().unwrap().is_empty(),
            "{format}: not at the end"
        );
        send_range(&server, &token, 50..51);
        let first = wait_for("the follower to see a new record", DEADLINE, || {
            let hits = follower.poll().unwrap();
            (!hits.is_empty()).then_some(hits)
        });
        assert_eq!(first.iter().map(index).collect::<Vec<_>>(), [50]);
        // Enough for several 4 KiB files; the follower polls between them.
        let mut got = Vec::new();
        for from in (51..251).step_by(20) {
            send_range(&server, &token, from..from + 20);
            got.extend(follower.poll().unwrap().iter().map(index));
        }
        wait_for("the follower to catch up", DEADLINE, || {
            got.extend(follower.poll().unwrap().iter().map(index));
            (got.len() >= 200).then_some(())
        });
        assert_eq!(got, (51..251).collect::<Vec<_>>(), "{format}");
        let errors: Vec<usize> = errors.poll().unwrap().iter().map(index).collect();
        let want: Vec<usize> = (50..251).filter(|i| i % 9 >= 5).collect();
        assert_eq!(errors, want, "{format}");
        assert!(server.stop().success());
    }
}

/// `logmill query` prints the matching stored lines, oldest of the page first, or counts.
#[test]
fn query_command() {
    let dir = TempDir::new("search-query-cli");
    let (server, token) = start(&dir, "text");
    send_range(&server, &token, 0..RECORDS);
    let run = |args: &[&str]| {
        let out = common::logmill()
            .arg("query")
            .arg("--dir")
            .arg(&dir.0)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let lines = server.lines();
    let out = run(&["--level", "error", "--grep", "disk full", "--limit", "3"]);
    let want: Vec<&String> = lines
        .iter()
        .filter(|l| {
            l.contains("Disk FULL")
                && [" ERROR ", " CRITICAL ", " ALERT ", " EMERGENCY "]
                    .iter()
                    .any(|lv| l.contains(lv))
        })
        .collect();
    let want: Vec<&str> = want[want.len() - 3..].iter().map(|s| s.as_str()).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    let out = run(&["--app", "billing", "--count"]);
    assert!(
        out.starts_with(&format!("total {}\n", RECORDS / 5)),
        "{out}"
    );
    let out = run(&["--field", "user=u2", "--limit", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["fields"]["user"], "u2");
    assert_eq!(v["message"].as_str().unwrap()[..8], *"rec 0198");
    let bad = common::logmill()
        .args(["query", "--level", "loud", "--dir"])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown level"));
    assert!(server.stop().success());
}

/// `logmill tail -f` prints the last lines, then a record sent after it started, and goes on
/// across a rotation; it is killed at the end.
#[test]
fn tail_follow_command() {
    let dir = TempDir::new("search-tail-cli");
    let (server, token) = start(&dir, "text");
    send_range(&server, &token, 0..20);
    let mut tail = common::logmill()
        .args(["tail", "-f", "-n", "2", "--app", "_main", "--dir"])
        .arg(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        let line = rx.recv_timeout(DEADLINE).expect("tail printed nothing");
        line[line.find("rec ").unwrap() + 4..][..4]
            .parse::<usize>()
            .unwrap()
    };
    assert_eq!([next(), next()], [18, 19]);
    send_range(&server, &token, 20..120);
    let got: Vec<usize> = (0..80).map(|_| next()).collect();
    let want: Vec<usize> = (20..120).filter(|&i| !in_billing(i)).collect();
    assert_eq!(got, want);
    tail.kill().unwrap();
    tail.wait().unwrap();
    std::io::stdout().flush().unwrap();
    assert!(server.stop().success());
}
