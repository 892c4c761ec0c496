//! The Rust client's [`Logger`] against the real binary: records with their levels, bodies,
//! fields and instance on disk; a server restarted mid-stream; a server down at start (spool,
//! then replay in order, also across a new process's logger); the spool's bound; a refused
//! token. Everything is waited for with a deadline, and checked in the stored files.

mod common;

use std::collections::HashMap;

use std::path::Path;
use std::time::Duration;

use common::{DEADLINE, Server, TempDir, free_port, issue_token, read_lines, wait_for};
use logmill::client::logger::Error;
use logmill::client::{ClientOptions, Logger, LoggerOptions, WhenFull};
use logmill::protocol::native::ErrorKind;
use logmill::record::{Body, Level, Record, Value};

fn text(level: Level, message: String) -> Record<'static> {
    Record {
        level,
        body: Body::Message(message.into()),
        ..Record::default()
    }
}

fn options(app: &str) -> LoggerOptions {
    LoggerOptions::new(ClientOptions::new(app).instance("w1").timeout(DEADLINE))
        .backoff(Duration::from_millis(10), Duration::from_millis(200))
}

/// The messages of `dir`'s text lines (`... LEVEL SEQ APP/INSTANCE LOGGER MESSAGE`).
fn messages(dir: &Path) -> Vec<String> {
    read_lines(dir)
        .iter()
        .map(|l| common::message_of(l).to_string())
        .collect()
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("record {i}")).collect()
}

/// Levels, a string body, a JSON body, a logger, typed fields, the instance, and the token's
/// app: all in the JSON lines, in the order logged.
#[test]
fn rust_logger_records_arrive_with_levels_bodies_fields_and_instance() {
    let dir = TempDir::new("crust-records");
    let token = issue_token(&dir.0, "shop");
    let server = Server::start(&dir.0, &["--format", "json"]);
    let logger = Logger::start(
        server.addr.to_string(),
        options("shop").map_hello(|h| h.token(token.as_str())),
    )
    .unwrap();
    let levels = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warning,
        Level::Error,
        Level::Critical,
    ];
    for (i, level) in levels.iter().enumerate() {
        logger.log(text(*level, format!("level {i}"))).unwrap();
    }
    logger
        .log(Record {
            level: Level::Notice,
            logger: "checkout".into(),
            body: Body::Json(r#"{"order":42,"paid":true}"#.into()),
            fields: vec![
                ("user".into(), Value::Str("ada".into())),
                ("attempt".into(), Value::Int(3)),
            ],
            ..Record::default()
        })
        .unwrap();
    logger.flush(DEADLINE).unwrap();
    assert_eq!(logger.stats().acked, 7);
    logger.close(DEADLINE).unwrap();

    let lines: Vec<serde_json::Value> = read_lines(&dir.0.join("shop"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7, "{lines:?}");
    for (i, level) in levels.iter().enumerate() {
        assert_eq!(lines[i]["message"], format!("level {i}"), "{}", lines[i]);
        assert_eq!(lines[i]["level"], level.as_lower_str());
        assert_eq!(lines[i]["app"], "shop");
        assert_eq!(lines[i]["instance"], "w1");
    }
    let json = &lines[6];
    assert_eq!(json["level"], "notice", "{json}");
    assert_eq!(json["logger"], "checkout");
    assert_eq!(json["fields"]["user"], "ada");
    assert_eq!(json["fields"]["attempt"], "3");
    let body = serde_json::to_string(json).unwrap();
    assert!(body.contains(r#""order":42"#), "{body}");
    assert!(server.stop().success());
}

/// Killed (SIGKILL) with records acked, then records logged while it is down, then started again
/// on the same port and directory: every record is stored exactly once, in order. Then stopped
/// (SIGTERM) while a second thread logs without pause: everything is stored, in order of first
/// appearance, with duplicates only from the records in flight at the break.
#[test]
fn rust_logger_restarted_server_loses_nothing_acked() {
    let dir = TempDir::new("crust-restart");
    let server = Server::start(&dir.0, &[]);
    let port = server.addr.port();
    let max_in_flight = 512;
    let logger = Logger::start(
        server.addr.to_string(),
        options("shop").max_in_flight(max_in_flight).batch(64),
    )
    .unwrap();
    let all = numbered(6000);
    for m in &all[..2000] {
        logger.log(text(Level::Info, m.clone())).unwrap();
    }
    logger.flush(DEADLINE).unwrap();
    server.signal("KILL");
    let mut server = server;
    server.wait_exit();
    drop(server);
    for m in &all[2000..4000] {
        logger.log(text(Level::Info, m.clone())).unwrap();
    }
    let server = Server::start_on(&dir.0, port, &[]);
    logger.flush(DEADLINE).unwrap();
    assert_eq!(messages(&dir.0), all[..4000]);
    assert!(logger.stats().connects >= 2);

    // SIGTERM while a thread logs: the server acks what it wrote before it closes.
    std::thread::scope(|s| {
        s.spawn(|| {
            for m in &all[4000..] {
                logger.log(text(Level::Info, m.clone())).unwrap();
            }
        });
        wait_for("records after 4000 stored", DEADLINE, || {
            (common::read_lines_while_written(&dir.0).len() > 4100).then_some(())
        });
        assert!(server.stop().success());
    });
    let _server = Server::start_on(&dir.0, port, &[]);
    logger.flush(DEADLINE).unwrap();
    logger.close(DEADLINE).unwrap();

    let stored = messages(&dir.0);
    let mut first_seen = Vec::new();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for m in &stored {
        let n = count.entry(m.as_str()).or_default();
        if *n == 0 {
            first_seen.push(m.clone());
        }
        *n += 1;
    }
    assert_eq!(
        first_seen, all,
        "every record, in order of first appearance"
    );
    let duplicates = stored.len() - all.len();
    assert!(
        duplicates <= max_in_flight,
        "{duplicates} duplicates, more than the {max_in_flight} in flight"
    );
    assert!(count.iter().all(|(_, n)| *n <= 2));
}

/// No server at start: records go to the spool. The logger closes with them still there; a new
/// logger (a new run of the program) logs more, and when the server comes up everything is
/// stored in the order logged.
#[test]
fn rust_logger_server_down_at_start_spools_then_replays_in_order() {
    let dir = TempDir::new("crust-spool");
    let spool = TempDir::new("crust-spool-dir");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let all = numbered(300);

    let first = Logger::start(addr.as_str(), options("shop").spool(&spool.0, 1 << 20)).unwrap();
    for m in &all[..100] {
        first.log(text(Level::Info, m.clone())).unwrap();
    }
    wait_for("the spool to hold records", DEADLINE, || {
        let files = std::fs::read_dir(&spool.0).unwrap().count();
        (files > 0 && first.stats().pending == 100).then_some(())
    });
    assert!(matches!(
        first.close(Duration::from_millis(50)),
        Err(Error::Timeout { pending: 100 })
    ));

    let second = Logger::start(addr.as_str(), options("shop").spool(&spool.0, 1 << 20)).unwrap();
    for m in &all[100..200] {
        second.log(text(Level::Info, m.clone())).unwrap();
    }
    assert_eq!(second.stats().pending, 200);
    let server = Server::start_on(&dir.0, port, &[]);
    for m in &all[200..] {
        second.log(text(Level::Info, m.clone())).unwrap();
    }
    second.flush(DEADLINE).unwrap();
    second.close(DEADLINE).unwrap();
    assert_eq!(messages(&dir.0), all);
    assert_eq!(std::fs::read_dir(&spool.0).unwrap().count(), 0);
    assert!(server.stop().success());
}

/// A spool bound far below what is logged: the files never pass it, the oldest records are the
/// ones dropped (counted), and what is replayed is the newest, in order.
#[test]
fn rust_logger_spool_bound_drops_the_oldest() {
    let dir = TempDir::new("crust-bound");
    let spool = TempDir::new("crust-bound-dir");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let bound = 32 * 1024;
    let all: Vec<String> = (0..2000)
        .map(|i| format!("{i} {}", "x".repeat(200)))
        .collect();

    let first = Logger::start(addr.as_str(), options("shop").spool(&spool.0, bound)).unwrap();
    for m in &all {
        first.log(text(Level::Info, m.clone())).unwrap();
    }
    let stats = wait_for("all records spooled or dropped", DEADLINE, || {
        let stats = first.stats();
        (stats.dropped > 0 && stats.dropped + stats.pending == 2000).then_some(stats)
    });
    let on_disk: u64 = std::fs::read_dir(&spool.0)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= bound, "{on_disk} bytes in the spool");
    assert!(first.close(Duration::from_millis(50)).is_err());

    let server = Server::start_on(&dir.0, port, &[]);
    let second = Logger::start(addr.as_str(), options("shop").spool(&spool.0, bound)).unwrap();
    second.flush(DEADLINE).unwrap();
    second.close(DEADLINE).unwrap();
    // Close may have spooled (and so dropped) more after the figures were read.
    let stored = messages(&dir.0);
    assert!(!stored.is_empty() && stored.len() as u64 <= stats.pending);
    assert_eq!(stored[..], all[all.len() - stored.len()..]);
    assert!(server.stop().success());
}

/// A token the server refuses: `flush` and `log` say so with the reason, and the logger does
/// not try again (one connect attempt, none made).
#[test]
fn rust_logger_refused_token_is_a_clear_error() {
    let dir = TempDir::new("crust-refused");
    let server = Server::start(&dir.0, &[]);
    let logger = Logger::start(
        server.addr.to_string(),
        options("shop").map_hello(|h| h.token("not-a-token")),
    )
    .unwrap();
    logger.log(text(Level::Info, "lost".into())).unwrap();
    let e = logger.flush(DEADLINE).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Refused {
                kind: Some(ErrorKind::Unauthorized),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("refused the token"), "{e}");
    assert!(matches!(
        logger.log(text(Level::Info, "after".into())),
        Err(Error::Refused { .. })
    ));
    assert_eq!(logger.stats().connects, 0);
    assert!(logger.close(DEADLINE).is_err());
    assert!(messages(&dir.0).is_empty());
    assert!(server.stop().success());
}

/// Runs `logmill ARGS` with `stdin` as its input; returns the exit status and stderr.
fn logmill(args: &[&str], stdin: &str) -> (std::process::ExitStatus, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_logmill"));
    command.args(args);
    let out = common::output_with_stdin(&mut command, stdin);
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `logmill send` with an instance and fields, and `logmill pipe` with plain and JSON lines:
/// exit 0 once stored, every line a record, in order, fields and levels kept.
#[test]
fn rust_send_and_pipe_store_what_they_are_given() {
    let dir = TempDir::new("crust-pipe");
    let server = Server::start(&dir.0, &["--format", "json"]);
    let addr = server.addr.to_string();
    let (status, err) = logmill(
        &[
            "send",
            "--addr",
            &addr,
            "--app",
            "ops",
            "--instance",
            "box-1",
            "--field",
            "ticket=T-7",
            "--field",
            "by=ci",
            "--level",
            "warning",
            "disk",
            "almost",
            "full",
        ],
        "",
    );
    assert!(status.success(), "{err}");

    let (status, err) = logmill(
        &[
            "pipe",
            "--addr",
            &addr,
            "--app",
            "ops",
            "--instance",
            "box-2",
            "--level",
            "error",
            "--field",
            "job=nightly",
        ],
        "first line\n\nsecond line\r\nthird, no newline",
    );
    assert!(status.success(), "{err}");
    let json_lines = concat!(
        r#"{"level":"debug","message":"parsed","logger":"app","user":"ada"}"#,
        "\n",
        "not json\n",
    );
    let (status, err) = logmill(
        &["pipe", "--addr", &addr, "--app", "ops", "--json"],
        json_lines,
    );
    assert!(status.success(), "{err}");

    let lines = server.wait_json(6);
    assert_eq!(lines.len(), 6);
    let sent = &lines[0];
    assert_eq!(sent["message"], "disk almost full");
    assert_eq!(sent["level"], "warning");
    assert_eq!(sent["instance"], "box-1");
    assert_eq!(sent["fields"]["ticket"], "T-7");
    assert_eq!(sent["fields"]["by"], "ci");
    for (line, text) in lines[1..4]
        .iter()
        .zip(["first line", "second line", "third, no newline"])
    {
        assert_eq!(line["message"], text, "{line}");
        assert_eq!(line["level"], "error");
        assert_eq!(line["instance"], "box-2");
        assert_eq!(line["fields"]["job"], "nightly");
    }
    assert_eq!(lines[4]["message"], "parsed", "{}", lines[4]);
    assert_eq!(lines[4]["level"], "debug");
    assert_eq!(lines[4]["logger"], "app");
    assert_eq!(lines[4]["fields"]["user"], "ada");
    assert_eq!(lines[5]["message"], "not json");
    assert!(server.stop().success());
}

/// `logmill pipe` says when records were not stored: a refused token, and no server within
/// `--timeout`.
#[test]
fn rust_pipe_fails_when_not_everything_is_acked() {
    let dir = TempDir::new("crust-pipe-fail");
    let server = Server::start(&dir.0, &[]);
    let addr = server.addr.to_string();
    let (status, err) = logmill(&["pipe", "--addr", &addr, "--token", "nope"], "a\nb\n");
    assert!(!status.success());
    assert!(err.contains("refused the token"), "{err}");

    let nobody = format!("127.0.0.1:{}", free_port());
    let (status, err) = logmill(&["pipe", "--addr", &nobody, "--timeout", "300ms"], "a\n");
    assert!(!status.success());
    assert!(err.contains("1 records not acknowledged in time"), "{err}");
    assert!(read_lines(&dir.0).is_empty());
    assert!(server.stop().success());
}

/// The `log` facade: `log::warn!` with key-values through the Logger, flushed with
/// `log::logger().flush()`; target, module, file, line and typed fields arrive.
#[test]
fn rust_log_facade_sends_records_with_their_fields() {
    let dir = TempDir::new("crust-log");
    let server = Server::start(&dir.0, &["--format", "json"]);
    let logger = Logger::start(server.addr.to_string(), options("shop")).unwrap();
    log::set_boxed_logger(Box::new(logger)).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    log::warn!(target: "payments", order = 42, user = "ada"; "card declined");
    log::trace!("filtered out by the max level");
    log::debug!("last");
    log::logger().flush();
    let lines = server.wait_json(2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first = &lines[0];
    assert_eq!(first["message"], "card declined", "{first}");
    assert_eq!(first["level"], "warning");
    assert_eq!(first["logger"], "payments");
    assert_eq!(first["fields"]["order"], "42");
    assert_eq!(first["fields"]["user"], "ada");
    assert!(first["file"].as_str().unwrap().ends_with("client_rust.rs"));
    assert!(first["line"].as_u64().unwrap() > 0);
    assert_eq!(lines[1]["message"], "last");
    assert_eq!(lines[1]["level"], "debug");
}

/// The `tracing` layer: an event's message, level, target and typed fields arrive.
#[test]
fn rust_tracing_layer_sends_events_with_their_fields() {
    use logmill::client::tracing_layer::LogmillLayer;
    use tracing::span::{Attributes, Id, Record as SpanRecord};
    use tracing::{Event, Metadata};
    use tracing_subscriber::layer::Layer as _;

    /// The smallest subscriber under the layer: every event enabled, spans ignored.
    struct Events;
    impl tracing::Subscriber for Events {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &SpanRecord<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    let dir = TempDir::new("crust-tracing");
    let server = Server::start(&dir.0, &["--format", "json"]);
    let layer = LogmillLayer::new(Logger::start(server.addr.to_string(), options("shop")).unwrap());
    tracing::subscriber::with_default(layer.clone().with_subscriber(Events), || {
        tracing::error!(target: "checkout", order = 42, paid = false, user = "ada", "card declined");
        tracing::info!("plain");
    });
    layer.logger().flush(DEADLINE).unwrap();
    let lines = server.wait_json(2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first = &lines[0];
    assert_eq!(first["message"], "card declined", "{first}");
    assert_eq!(first["level"], "error");
    assert_eq!(first["logger"], "checkout");
    assert_eq!(first["fields"]["order"], "42");
    assert_eq!(first["fields"]["paid"], "false");
    assert_eq!(first["fields"]["user"], "ada");
    assert_eq!(lines[1]["message"], "plain");
    assert_eq!(lines[1]["level"], "info");
}

/// No spool and no server: the queue's bound holds, and past it the policy is explicit. `Drop`
/// refuses at once and counts; `Block` waits its timeout, then does the same; close says how
/// many records were not acked.
#[test]
fn rust_logger_full_queue_without_spool_drops_and_counts() {
    let addr = format!("127.0.0.1:{}", free_port());
    let logger = Logger::start(
        addr.as_str(),
        options("shop").queue(10).when_full(WhenFull::Drop),
    )
    .unwrap();
    for i in 0..10 {
        logger.log(text(Level::Info, format!("kept {i}"))).unwrap();
    }
    assert!(matches!(
        logger.log(text(Level::Info, "one too many".into())),
        Err(Error::Dropped)
    ));
    assert_eq!(logger.stats().dropped, 1);
    assert!(matches!(
        logger.close(Duration::ZERO),
        Err(Error::Timeout { pending: 10 })
    ));

    let logger = Logger::start(
        addr.as_str(),
        options("shop")
            .queue(1)
            .when_full(WhenFull::Block(Duration::from_millis(20))),
    )
    .unwrap();
    logger.log(text(Level::Info, "kept".into())).unwrap();
    assert!(matches!(
        logger.log(text(Level::Info, "waited, then dropped".into())),
        Err(Error::Dropped)
    ));
    assert_eq!(logger.stats().dropped, 1);
    assert!(matches!(
        logger.close(Duration::ZERO),
        Err(Error::Timeout { pending: 1 })
    ));
}
