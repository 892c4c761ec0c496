//! Replays the fuzz corpus on stable Rust, and writes its seeds.
//!
//! Every file under `fuzz/corpus/<target>/` goes through the same harness function the fuzz
//! target calls (`fuzz/harness.rs`, included below), so `cargo test` catches a regression on any
//! input the fuzzers ever kept, without nightly or libFuzzer (rustls `test_read_fuzz_corpus`).
//!
//! The seeds (`seed-*` files) are made here from the real encoders; each states what it should
//! decode to, which `seeds_decode_as_intended` checks. To rewrite them after a wire change:
//! `LOGMILL_WRITE_CORPUS=1 cargo test --test fuzz_corpus write_seed_corpus`.

#[path = "../fuzz/harness.rs"]
mod harness;
// The gRPC target's harness; its seeds and their checks are in tests/grpc_fuzz_corpus.rs.
#[path = "../fuzz/grpc_harness.rs"]
mod grpc_harness;
// The HTTP/1.1 target's harness; its seeds and their checks are in tests/http1_fuzz_corpus.rs.
#[path = "../fuzz/http1_harness.rs"]
mod http1_harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use harness::{ClientOutcome, LinesOutcome, StreamEnd, StreamInput, StreamOutcome};
use logmill::protocol::detect::Protocol;
use logmill::protocol::frame;
use logmill::protocol::native::{self, ClientFrame, ErrorKind, Hello, ServerFrame};
use logmill::protocol::pickle::PickleError;
use logmill::record::{Body, Level, Record};

/// Each target's corpus must hold at least this many files, so that a lost or empty directory
/// fails the test instead of replaying nothing.
const MIN_FILES: usize = 10;

const TARGETS: [&str; 8] = [
    "frame_stream",
    "native_record",
    "server_frame",
    "syslog",
    "jsonl",
    "pickle",
    "grpc_message",
    "http1",
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Runs one input through `target`'s harness; panics, as the fuzz target would, on a broken
/// invariant.
fn run(target: &str, data: &[u8]) {
    match target {
        "frame_stream" => {
            harness::frame_stream(data);
        }
        "native_record" => {
            harness::native_record(data);
        }
        "server_frame" => {
            harness::server_frame(data);
        }
        "syslog" => {
            harness::syslog(data);
        }
        "jsonl" => {
            harness::jsonl(data);
        }
        "pickle" => {
            // An error is an answer, not a failure: only a panic is.
            harness::pickle(data).ok();
        }
        "grpc_message" => {
            // Every outcome, refusals included, is an answer: only a panic fails.
            grpc_harness::grpc_message(data);
        }
        "http1" => {
            // Refusals are answers: only a panic (a broken invariant) fails.
            http1_harness::http1(data);
        }
        _ => panic!("unknown fuzz target {target}"),
    }
}

#[test]
fn replay_fuzz_corpus() {
    let mut failures = Vec::new();
    for target in TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        assert!(
            files.len() >= MIN_FILES,
            "{}: {} files, expected at least {MIN_FILES}",
            dir.display(),
            files.len()
        );
        for path in &files {
            let data = std::fs::read(path).expect("a readable corpus file");
            if catch_unwind(AssertUnwindSafe(|| run(target, &data))).is_err() {
                failures.push(path.display().to_string());
            }
        }
        eprintln!("{target}: replayed {} files", files.len());
    }
    assert!(failures.is_empty(), "corpus files that fail: {failures:#?}");
}

// -------------------------------------------------------------------------------------------------
// Seeds
// -------------------------------------------------------------------------------------------------

/// One seed file: its target, its name (`seed-` is prepended), its bytes and what it must do.
struct Seed {
    target: &'static str,
    name: &'static str,
    data: Vec<u8>,
    expect: Expect,
}

enum Expect {
    Stream(Box<dyn Fn(&StreamOutcome) -> bool>),
    Client(Box<dyn Fn(&ClientOutcome) -> bool>),
    Server(Option<ServerFrame>),
    Lines(Box<dyn Fn(&LinesOutcome) -> bool>),
    Pickle(Box<dyn Fn(&PickleResult) -> bool>),
}

/// What the `pickle` harness returns.
type PickleResult = Result<Record<'static>, PickleError>;

fn seed(target: &'static str, name: &'static str, data: Vec<u8>, expect: Expect) -> Seed {
    Seed {
        target,
        name,
        data,
        expect,
    }
}

fn stream(f: impl Fn(&StreamOutcome) -> bool + 'static) -> Expect {
    Expect::Stream(Box::new(f))
}

fn client(f: impl Fn(&ClientOutcome) -> bool + 'static) -> Expect {
    Expect::Client(Box::new(f))
}

/// The payload of the one frame in `buf`.
fn payload(buf: Vec<u8>) -> Vec<u8> {
    buf[frame::HEADER_LEN..].to_vec()
}

fn hello_frame() -> Vec<u8> {
    let mut out = Vec::new();
    native::encode_hello(
        &Hello {
            app: "billing".into(),
            instance: "pod-7".into(),
            token: "s3cret".into(),
            want_acks: true,
        },
        &mut out,
    );
    out
}

fn records_frame(records: &[Record<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    native::encode_records(records, &mut out);
    out
}

fn simple_record() -> Record<'static> {
    Record {
        body: Body::Message("hello".into()),
        ..Record::default()
    }
}

/// A record with every field set, so every pointer and data word of `LogRecord` is exercised.
fn full_record(level: Level, body: Body<'static>) -> Record<'static> {
    Record {
        timestamp_ns: 1_763_771_173_123_456_789,
        level,
        body,
        logger: "app.db".into(),
        host: "web-1".into(),
        service: "billing".into(),
        module: "db.pool".into(),
        file: "src/db/pool.py".into(),
        line: 421,
        function: "acquire".into(),
        process_id: 4242,
        process_name: "gunicorn: worker".into(),
        thread_id: 140_245_000_000,
        thread_name: "MainThread".into(),
        stack_trace: "Traceback (most recent call last):\n  File \"x.py\", line 1\nError".into(),
        fields: vec![
            ("retry".into(), "3".into()),
            ("why".into(), "peer reset".into()),
            ("quote\"d".into(), "a=b|c".into()),
        ],
        parse_error: false,
        truncated: false,
    }
}

/// Replaces `marker` in `buf` with `bytes` of the same length: how invalid UTF-8 gets into a
/// message the encoders (which take `&str`) cannot write.
fn patch(mut buf: Vec<u8>, marker: &[u8], bytes: &[u8]) -> Vec<u8> {
    assert_eq!(marker.len(), bytes.len());
    let at = buf
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker in the message");
    buf[at..at + marker.len()].copy_from_slice(bytes);
    buf
}

const INVALID_UTF8: &[u8] = b"\xff\xfe\xc3(\xed\xa0\x80";
const MARKER: &[u8] = b"@@@@@@@";

fn invalid_utf8_record() -> Vec<u8> {
    let marker = std::str::from_utf8(MARKER).unwrap();
    let record = Record {
        body: Body::Message(format!("bad {marker} body").into()),
        logger: format!("log{marker}").into(),
        fields: vec![(format!("k{marker}").into(), "v".into())],
        ..Record::default()
    };
    let mut out = records_frame(&[record]);
    for _ in 0..3 {
        out = patch(out, MARKER, INVALID_UTF8);
    }
    out
}

fn control_record() -> Record<'static> {
    let nasty: String = (0u8..0x80).map(char::from).collect();
    Record {
        body: Body::Message(format!("line one\nFAKE 2 forged\r\x1b[31m\\ {nasty}").into()),
        logger: "a b|c".into(),
        host: "h\nh".into(),
        fields: vec![
            (nasty.clone().into(), nasty.clone().into()),
            ("".into(), "".into()),
        ],
        stack_trace: nasty.into(),
        ..Record::default()
    }
}

/// A frame with the given length prefix and no payload.
fn prefix(len: u32) -> Vec<u8> {
    len.to_be_bytes().to_vec()
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Chunked streams: `max` indexes `harness::MAX_PAYLOADS` (6 is the server's 1 MiB default).
fn chunked(max: u8, chunks: &[usize], stream: &[u8]) -> Vec<u8> {
    StreamInput::encode(max, chunks, stream)
}

fn frame_stream_seeds() -> Vec<Seed> {
    let t = "frame_stream";
    let hello = hello_frame();
    let one = records_frame(&[simple_record()]);
    let batch = records_frame(&[
        full_record(Level::Error, Body::Message("connection lost".into())),
        full_record(
            Level::Debug,
            Body::Json("{\"a\":[1,2,{\"b\":null}]}".into()),
        ),
    ]);
    let session = concat(&[&hello, &one, &batch]);
    let frames = |n: usize| {
        move |o: &StreamOutcome| o.protocol == Some(Protocol::Native) && o.payloads.len() == n
    };
    let waiting = |needed: Option<usize>, buffered: usize| {
        move |o: &StreamOutcome| o.end == StreamEnd::Waiting { needed, buffered }
    };
    let too_large = |len: u32| move |o: &StreamOutcome| matches!(o.end, StreamEnd::TooLarge { len: l, .. } if l == len);
    let health = |o: &StreamOutcome| o.end == StreamEnd::Other(Protocol::Health);
    // Which protocol other bytes pick is up to `detect` (its table grows); only that they are
    // neither health nor native frames is fixed.
    let not_native = |o: &StreamOutcome| {
        matches!(o.end, StreamEnd::Other(p) if p != Protocol::Native && p != Protocol::Health)
            && o.payloads.is_empty()
    };
    vec![
        seed(
            t,
            "health-lf-bytewise",
            chunked(6, &[], b"health\n"),
            stream(health),
        ),
        seed(
            t,
            "health-crlf-split",
            chunked(6, &[6, 1, 1], b"health\r\nleftover"),
            stream(health),
        ),
        seed(
            t,
            "health-prefix-only",
            chunked(6, &[3], b"health\r"),
            stream(waiting(None, 7)),
        ),
        seed(
            t,
            "healthy-line",
            chunked(6, &[2], b"healthy\n"),
            stream(not_native),
        ),
        seed(
            t,
            "http-request",
            chunked(6, &[5, 100], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            stream(not_native),
        ),
        seed(
            t,
            "empty-stream",
            chunked(6, &[1], b""),
            stream(waiting(None, 0)),
        ),
        seed(
            t,
            "session-bytewise",
            chunked(6, &[], &session),
            stream(frames(3)),
        ),
        seed(
            t,
            "session-odd-chunks",
            chunked(6, &[3, 7, 1, 200, 4], &session),
            stream(frames(3)),
        ),
        seed(
            t,
            "session-one-chunk",
            chunked(6, &[256], &session),
            stream(frames(3)),
        ),
        seed(
            t,
            "session-tight-limit",
            chunked(5, &[13, 5], &concat(&[&session, &one])),
            stream(frames(4)),
        ),
        seed(
            t,
            "zero-length-frames",
            chunked(0, &[2, 3], &concat(&[&prefix(0), &prefix(0), &prefix(0)])),
            stream(frames(3)),
        ),
        seed(
            t,
            "zero-length-then-record",
            chunked(6, &[1, 4], &concat(&[&prefix(0), &one])),
            stream(frames(2)),
        ),
        seed(
            t,
            "oversized-prefix",
            chunked(
                6,
                &[2, 2],
                &concat(&[&hello, &prefix(0x0010_0001), b"rest"]),
            ),
            stream(too_large(0x0010_0001)),
        ),
        seed(
            t,
            "oversized-small-limit",
            chunked(3, &[1], &concat(&[&prefix(65), &[0; 65]])),
            stream(too_large(65)),
        ),
        seed(
            t,
            "prefix-at-limit",
            chunked(3, &[4, 10], &concat(&[&prefix(64), &[7; 30]])),
            stream(waiting(Some(68), 34)),
        ),
        seed(
            t,
            "prefix-max-frame-limit",
            chunked(7, &[3], &concat(&[&prefix(0x00ff_ffff), &[0]])),
            stream(waiting(Some(0x00ff_ffff + 4), 5)),
        ),
        seed(
            t,
            "truncated-header",
            chunked(6, &[1], &concat(&[&one, &[0, 0]])),
            stream(waiting(None, 2)),
        ),
        seed(
            t,
            "truncated-payload",
            chunked(6, &[9, 2], &hello[..hello.len() - 5]),
            stream(waiting(Some(hello.len()), hello.len() - 5)),
        ),
        seed(
            t,
            "garbage-after-frames",
            chunked(6, &[17], &concat(&[&one, b"\xff\xff\xff\xffgarbage"])),
            stream(too_large(u32::MAX)),
        ),
        seed(
            t,
            "tls-client-hello",
            chunked(
                2,
                &[1, 2, 3],
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            ),
            stream(not_native),
        ),
        seed(
            t,
            "json-line",
            chunked(6, &[4], b"{\"msg\":\"started\",\"level\":\"info\"}\n"),
            stream(not_native),
        ),
        seed(
            t,
            "syslog-octet-counted",
            chunked(6, &[1, 2], b"27 <34>1 2026-11-22T00:26:13Z x\n"),
            stream(not_native),
        ),
        // A length prefix then a pickle opcode: whatever `detect` makes of it, nothing breaks.
        seed(
            t,
            "pickle-prefix",
            chunked(
                6,
                &[5],
                &concat(&[&prefix(9), b"}q\x00(X\x03\x00\x00\x00msgq"]),
            ),
            stream(|_| true),
        ),
    ]
}

fn native_record_seeds() -> Vec<Seed> {
    let t = "native_record";
    let records = |n: usize| {
        move |o: &ClientOutcome| {
            matches!(o.result, Ok(ClientFrame::Records(k)) if k == n) && o.records.len() == n
        }
    };
    let error = || |o: &ClientOutcome| o.result.is_err();
    let levels = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Notice,
        Level::Warning,
        Level::Error,
        Level::Critical,
        Level::Alert,
        Level::Emergency,
    ];
    let all_levels: Vec<Record<'static>> = levels
        .iter()
        .map(|&level| full_record(level, Body::Message(format!("{level:?} happened").into())))
        .collect();
    let single = payload(records_frame(&[full_record(
        Level::Warning,
        Body::Message("disk almost full".into()),
    )]));
    let many_fields = Record {
        fields: (0..64)
            .map(|i| (format!("k{i}").into(), format!("v {i}").into()))
            .collect(),
        ..simple_record()
    };
    vec![
        seed(
            t,
            "hello",
            payload(hello_frame()),
            client(|o| matches!(&o.result, Ok(ClientFrame::Hello(h)) if h.want_acks)),
        ),
        seed(
            t,
            "hello-empty",
            {
                let mut out = Vec::new();
                native::encode_hello(&Hello::default(), &mut out);
                payload(out)
            },
            client(|o| matches!(o.result, Ok(ClientFrame::Hello(_)))),
        ),
        seed(
            t,
            "record-minimal",
            payload(records_frame(&[Record::default()])),
            client(records(1)),
        ),
        seed(
            t,
            "record-single",
            payload(records_frame(&[simple_record()])),
            client(records(1)),
        ),
        seed(t, "record-all-fields", single.clone(), client(records(1))),
        seed(
            t,
            "batch-all-fields",
            payload(records_frame(&all_levels)),
            client(records(levels.len())),
        ),
        seed(
            t,
            "batch-empty",
            payload(records_frame(&[])),
            client(records(0)),
        ),
        seed(
            t,
            "json-body",
            payload(records_frame(&[full_record(
                Level::Info,
                Body::Json(
                    "{\"user\":{\"id\":7,\"tags\":[\"a\",\"b\"]},\"ok\":true,\"n\":1.5e3}".into(),
                ),
            )])),
            client(records(1)),
        ),
        seed(
            t,
            "json-body-invalid",
            payload(records_frame(&[Record {
                body: Body::Json("{\"a\":1,\n".into()),
                ..Record::default()
            }])),
            client(records(1)),
        ),
        seed(
            t,
            "json-body-not-object",
            payload(records_frame(&[Record {
                body: Body::Json("[1,2,3]".into()),
                ..Record::default()
            }])),
            client(records(1)),
        ),
        seed(
            t,
            "invalid-utf8",
            payload(invalid_utf8_record()),
            client(|o| {
                matches!(o.result, Ok(ClientFrame::Records(1)))
                    && o.records[0].body
                        == Body::Message(
                            "bad \u{fffd}\u{fffd}\u{fffd}(\u{fffd}\u{fffd}\u{fffd} body".into(),
                        )
            }),
        ),
        seed(
            t,
            "control-characters",
            payload(records_frame(&[control_record()])),
            client(records(1)),
        ),
        seed(
            t,
            "many-fields",
            payload(records_frame(&[many_fields])),
            client(records(1)),
        ),
        seed(
            t,
            "max-numbers",
            payload(records_frame(&[Record {
                timestamp_ns: u64::MAX,
                line: u32::MAX,
                process_id: u32::MAX,
                thread_id: u64::MAX,
                ..simple_record()
            }])),
            client(records(1)),
        ),
        seed(
            t,
            "truncated",
            single[..single.len() / 2].to_vec(),
            client(error()),
        ),
        seed(
            t,
            "truncated-segment-table",
            single[..6].to_vec(),
            client(error()),
        ),
        seed(t, "zero-length", Vec::new(), client(error())),
        seed(
            t,
            "oversized-segment",
            vec![0, 0, 0, 0, 0xff, 0xff, 0xff, 0x0f],
            client(error()),
        ),
        seed(
            t,
            "many-segments",
            vec![0xff, 0xff, 0, 0, 1, 0, 0, 0],
            client(error()),
        ),
        seed(
            t,
            "garbage",
            b"GET / HTTP/1.1\r\nHost: logmill\r\n\r\n".to_vec(),
            client(error()),
        ),
    ]
}

fn server_frame_seeds() -> Vec<Seed> {
    let t = "server_frame";
    let encoded = |frame: &ServerFrame| {
        let mut out = Vec::new();
        native::encode_server_frame(frame, &mut out);
        payload(out)
    };
    let ack = ServerFrame::Ack {
        count: 10,
        last_seq: 99,
    };
    let ack_max = ServerFrame::Ack {
        count: u64::MAX,
        last_seq: u64::MAX,
    };
    let welcome = ServerFrame::Welcome {
        server: "LogServer".into(),
        version: "0.1.0".into(),
        max_frame: 1 << 20,
    };
    let welcome_empty = ServerFrame::Welcome {
        server: String::new(),
        version: String::new(),
        max_frame: 0,
    };
    let error = |kind: ErrorKind, message: &str| ServerFrame::Error {
        kind: Some(kind),
        message: message.into(),
    };
    let too_large = error(
        ErrorKind::FrameTooLarge,
        "frame of 2000000 bytes is over the limit",
    );
    let marked = error(ErrorKind::Undecodable, std::str::from_utf8(MARKER).unwrap());
    let invalid_utf8 = patch(encoded(&marked), MARKER, INVALID_UTF8);
    let mut seeds = vec![
        seed(t, "ack", encoded(&ack), Expect::Server(Some(ack.clone()))),
        seed(
            t,
            "ack-max",
            encoded(&ack_max),
            Expect::Server(Some(ack_max)),
        ),
        seed(
            t,
            "welcome",
            encoded(&welcome),
            Expect::Server(Some(welcome.clone())),
        ),
        seed(
            t,
            "welcome-empty",
            encoded(&welcome_empty),
            Expect::Server(Some(welcome_empty)),
        ),
        seed(
            t,
            "error-invalid-utf8",
            invalid_utf8,
            Expect::Server(Some(error(
                ErrorKind::Undecodable,
                "\u{fffd}\u{fffd}\u{fffd}(\u{fffd}\u{fffd}\u{fffd}",
            ))),
        ),
        seed(
            t,
            "truncated",
            encoded(&welcome)[..20].to_vec(),
            Expect::Server(None),
        ),
        seed(t, "zero-length", Vec::new(), Expect::Server(None)),
        seed(
            t,
            "oversized-segment",
            vec![0, 0, 0, 0, 0xff, 0xff, 0xff, 0x0f],
            Expect::Server(None),
        ),
        seed(
            t,
            "garbage",
            b"logmill: unrecognised protocol.\n".to_vec(),
            Expect::Server(None),
        ),
        // Cap'n Proto is not self-describing: a client's hello has the shape of a welcome.
        seed(
            t,
            "client-hello-reads-as-welcome",
            payload(hello_frame()),
            Expect::Server(Some(ServerFrame::Welcome {
                server: "billing".into(),
                version: "pod-7".into(),
                max_frame: 1,
            })),
        ),
    ];
    for (name, kind) in [
        ("error-frame-too-large", ErrorKind::FrameTooLarge),
        ("error-undecodable", ErrorKind::Undecodable),
        ("error-hello-not-first", ErrorKind::HelloNotFirst),
        ("error-shutting-down", ErrorKind::ShuttingDown),
        ("error-slow-reader", ErrorKind::SlowReader),
        ("error-idle-timeout", ErrorKind::IdleTimeout),
        ("error-unauthorized", ErrorKind::Unauthorized),
    ] {
        let frame = if kind == ErrorKind::FrameTooLarge {
            too_large.clone()
        } else {
            error(kind, "closing")
        };
        seeds.push(seed(t, name, encoded(&frame), Expect::Server(Some(frame))));
    }
    seeds
}

/// `LinesOutcome` checks for the `syslog` and `jsonl` seeds.
fn lines(f: impl Fn(&LinesOutcome) -> bool + 'static) -> Expect {
    Expect::Lines(Box::new(f))
}

fn decoded(f: impl Fn(&Result<Record<'static>, PickleError>) -> bool + 'static) -> Expect {
    Expect::Pickle(Box::new(f))
}

/// `n` records, none of them a parse error, nothing left buffered.
fn parsed(n: usize) -> Expect {
    lines(move |o| {
        o.records().len() == n && o.buffered == 0 && o.records().iter().all(|r| !r.parse_error)
    })
}

/// Indexes into `harness::MAX_PAYLOADS`, which the line targets use as their line limit.
const LIMIT_5: u8 = 2;
const LIMIT_64: u8 = 3;
const LIMIT_1000: u8 = 4;

fn syslog_seeds() -> Vec<Seed> {
    let t = "syslog";
    let rfc5424 = "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick on /dev/pts/8";
    let sd = r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"] An application event log entry"#;
    let counted = |msg: &str| format!("{} {msg}", msg.len());
    let mixed = format!(
        "{}<13>Oct 11 22:14:15 host app[7]: line framed\n{}",
        counted(rfc5424),
        counted(sd)
    );
    vec![
        seed(
            t,
            "rfc5424",
            StreamInput::encode(LIMIT_1000, &[256], format!("{rfc5424}\n").as_bytes()),
            lines(|o| {
                o.records().len() == 1
                    && o.records()[0].level == Level::Critical
                    && o.records()[0].host == "mymachine.example.com"
                    && !o.records()[0].parse_error
            }),
        ),
        seed(
            t,
            "rfc5424-structured-data",
            StreamInput::encode(LIMIT_1000, &[100, 3], format!("{sd}\n").as_bytes()),
            lines(|o| o.records().len() == 1 && o.records()[0].fields.len() == 6),
        ),
        seed(
            t,
            "rfc5424-sd-escapes",
            StreamInput::encode(
                LIMIT_1000,
                &[],
                br#"<14>1 - - - - - [id a="q\"uote" b="back\\slash" c="br\]acket" d="C:\new"] m
"#,
            ),
            lines(|o| o.records().len() == 1 && o.records()[0].fields.len() == 5),
        ),
        seed(
            t,
            "rfc5424-nil-values",
            StreamInput::encode(LIMIT_64, &[7], b"<14>1 - - - - - -\n<14>1 - host app worker-3 - -\n"),
            parsed(2),
        ),
        seed(
            t,
            "rfc3164",
            StreamInput::encode(
                LIMIT_1000,
                &[40],
                b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick\n<13>Feb  5 17:32:18 10.0.0.99 sshd[1234]: Accepted publickey\n",
            ),
            lines(|o| o.records().len() == 2 && o.records()[1].process_id == 1234),
        ),
        seed(
            t,
            "octet-counted",
            StreamInput::encode(LIMIT_1000, &[17, 1, 255], format!("{}{}", counted(rfc5424), counted(sd)).as_bytes()),
            parsed(2),
        ),
        seed(
            t,
            "mixed-framing-bytewise",
            StreamInput::encode(LIMIT_1000, &[], mixed.as_bytes()),
            parsed(3),
        ),
        seed(
            t,
            "oversized-line",
            StreamInput::encode(LIMIT_5, &[3], b"<13>Oct 11 22:14:15 host app: a long message\nok\n"),
            lines(|o| o.records().len() > 2 && o.records().iter().filter(|r| r.truncated).count() == o.records().len() - 1),
        ),
        seed(
            t,
            "oversized-count",
            StreamInput::encode(LIMIT_64, &[50], format!("{}x\n", counted(sd)).as_bytes()),
            lines(|o| o.records().len() > 2 && o.records()[0].truncated && !o.records().last().is_some_and(|r| r.truncated)),
        ),
        seed(
            t,
            "count-too-long",
            StreamInput::encode(LIMIT_64, &[5], b"12345678901 not a count\n12abc\n0 "),
            lines(|o| o.records().len() == 3 && o.records().iter().all(|r| r.parse_error)),
        ),
        seed(
            t,
            "crlf-and-blank-lines",
            StreamInput::encode(LIMIT_64, &[2], b"<13>1 - - - - - - a\r\n\r\n\n<13>1 - - - - - - b\r\n"),
            lines(|o| o.records().len() == 4),
        ),
        seed(
            t,
            "utf8-pieces",
            StreamInput::encode(LIMIT_5, &[1, 2], "<13>é€😀é€😀\n".as_bytes()),
            lines(|o| o.records().iter().all(|r| matches!(&r.body, Body::Message(m) if !m.contains('\u{fffd}')))),
        ),
        seed(
            t,
            "invalid-utf8",
            StreamInput::encode(LIMIT_64, &[9], b"<14>1 - h\xff a - - - bad \xfe byte\n"),
            lines(|o| o.records().len() == 1 && o.records()[0].host == "h\u{fffd}"),
        ),
        seed(
            t,
            "malformed",
            StreamInput::encode(LIMIT_64, &[4], b"<13>hello\nhello\n<999>1 x\n<14>1 - h a - - [bad\n"),
            lines(|o| o.records().len() == 4 && o.records().iter().all(|r| r.parse_error)),
        ),
        seed(
            t,
            "incomplete",
            StreamInput::encode(LIMIT_64, &[3], b"<13>no newline yet"),
            lines(|o| o.records().is_empty() && o.buffered == 18),
        ),
        seed(
            t,
            "garbage",
            StreamInput::encode(LIMIT_64, &[1, 2, 3], b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\x00\xff\n"),
            lines(|o| o.records().len() == 2),
        ),
    ]
}

fn jsonl_seeds() -> Vec<Seed> {
    let t = "jsonl";
    let python = br#"{"asctime": "2025-11-22 00:26:13,123", "levelname": "WARNING", "name": "app.db", "message": "slow query", "filename": "db.py", "lineno": 42, "funcName": "run", "process": 7, "threadName": "MainThread", "timestamp": "2025-11-22T00:26:13.123456+01:00", "query_ms": 812.5}
"#;
    vec![
        seed(
            t,
            "python-json-logger",
            StreamInput::encode(LIMIT_1000, &[256], python),
            lines(|o| o.records().len() == 1 && o.records()[0].level == Level::Warning && o.records()[0].line == 42),
        ),
        seed(
            t,
            "structlog-and-zap",
            StreamInput::encode(
                LIMIT_1000,
                &[30],
                br#"{"event": "login", "level": "info", "timestamp": "2025-11-22T00:26:13Z", "user": "ada"}
{"level":"error","ts":1763771173.123,"logger":"http","caller":"srv/main.go:42","msg":"bad gateway","status":502}
"#,
            ),
            parsed(2),
        ),
        seed(
            t,
            "numeric-levels",
            StreamInput::encode(LIMIT_64, &[], b"{\"level\":10}\n{\"level\":30}\n{\"level\":3}\n{\"level\":\"50\"}\n"),
            lines(|o| o.records().iter().map(|r| r.level).eq([Level::Debug, Level::Warning, Level::Error, Level::Critical])),
        ),
        seed(
            t,
            "unix-times",
            StreamInput::encode(
                LIMIT_64,
                &[11],
                b"{\"ts\":1763771173}\n{\"ts\":1763771173123}\n{\"ts\":1763771173123456}\n{\"ts\":1763771173123456789}\n{\"time\":\"yesterday\"}\n",
            ),
            lines(|o| o.records().len() == 5 && o.records()[..4].iter().all(|r| r.timestamp_ns / 1_000_000_000 == 1_763_771_173)),
        ),
        seed(
            t,
            "nested-values",
            StreamInput::encode(LIMIT_1000, &[64], br#"{"msg":"x","user":{"id":7,"tags":["a","b"]},"ok":true,"none":null,"n":1.5e3}
"#),
            lines(|o| o.records().len() == 1 && o.records()[0].fields.len() == 4),
        ),
        seed(
            t,
            "escapes-and-unicode",
            StreamInput::encode(LIMIT_1000, &[5], br#"{"message":"line1\nline2 \u00e9\ud83d\ude00 \"q\" \u0000","k\"ey":"v\\"}
"#),
            parsed(1),
        ),
        seed(
            t,
            "not-objects",
            StreamInput::encode(LIMIT_64, &[8], b"plain text\n[1,2]\n42\n\"s\"\n{\"a\":\n{\"a\":1} x\n\n"),
            lines(|o| o.records().len() == 7 && o.records().iter().all(|r| r.parse_error)),
        ),
        seed(
            t,
            "deep-nesting",
            StreamInput::encode(LIMIT_1000, &[200], format!("{{\"a\":{}{}}}\n{{\"b\":{}}}\n", "[".repeat(100), "]".repeat(100), "[".repeat(300)).as_bytes()),
            lines(|o| o.records().len() == 2 && !o.records()[0].parse_error && o.records()[1].parse_error),
        ),
        seed(
            t,
            "oversized-line",
            StreamInput::encode(LIMIT_64, &[100], format!("{python}{{\"msg\":\"ok\"}}\n", python = std::str::from_utf8(python).unwrap()).as_bytes()),
            lines(|o| o.records().len() > 2 && o.records().last().is_some_and(|r| !r.truncated && !r.parse_error)),
        ),
        seed(
            t,
            "utf8-pieces",
            StreamInput::encode(LIMIT_5, &[3], "{\"msg\":\"é€😀é€😀\"}\n".as_bytes()),
            lines(|o| o.records().iter().all(|r| matches!(&r.body, Body::Message(m) if !m.contains('\u{fffd}')))),
        ),
        seed(
            t,
            "crlf-bom-blank",
            StreamInput::encode(LIMIT_64, &[2], b"\xef\xbb\xbf{\"msg\":\"a\"}\r\n\r\n{\"msg\":\"b\"}\n"),
            lines(|o| o.records().len() == 3 && !o.records()[0].parse_error && o.records()[1].parse_error),
        ),
        seed(
            t,
            "invalid-utf8",
            StreamInput::encode(LIMIT_64, &[4], b"{\"msg\":\"bad \xff\"}\n\xfe\xff\n"),
            lines(|o| o.records().len() == 2 && o.records().iter().all(|r| r.parse_error)),
        ),
        seed(
            t,
            "incomplete",
            StreamInput::encode(LIMIT_64, &[1], b"{\"msg\":\"no newline\"}"),
            lines(|o| o.records().is_empty() && o.buffered == 20),
        ),
        seed(t, "empty", StreamInput::encode(LIMIT_64, &[1], b""), parsed(0)),
    ]
}

/// A fixture as SocketHandler sent it, without its length prefix.
fn socket_handler(framed: &[u8]) -> Vec<u8> {
    framed[frame::HEADER_LEN..].to_vec()
}

fn pickle_seeds() -> Vec<Seed> {
    let t = "pickle";
    let record =
        |check: fn(&Record<'static>) -> bool| decoded(move |r| r.as_ref().is_ok_and(check));
    let not_data = || decoded(|r| matches!(r, Err(PickleError::NotData { .. })));
    let too_complex = || decoded(|r| matches!(r, Err(PickleError::TooComplex { .. })));
    let nested = |depth: usize| {
        let mut p = b"}(X\x01\x00\x00\x00k".to_vec();
        p.extend(std::iter::repeat_n(b']', depth));
        p.extend(std::iter::repeat_n(b'a', depth - 1));
        p.extend(b"u.");
        p
    };
    let laughs = {
        let mut p = b"}(X\x01\x00\x00\x00k]q\x00".to_vec();
        for i in 0u8..30 {
            p.extend([b']', b'(', b'h', i, b'h', i, b'e', b'q', i + 1]);
        }
        p.extend(b"u.");
        p
    };
    vec![
        seed(
            t,
            "info",
            socket_handler(include_bytes!("fixtures/pickle/info.pickle")),
            record(|r| r.body == Body::Message("hello world".into()) && r.fields.is_empty()),
        ),
        seed(
            t,
            "unicode",
            socket_handler(include_bytes!("fixtures/pickle/unicode.pickle")),
            record(|r| r.level == Level::Warning),
        ),
        seed(
            t,
            "exception",
            socket_handler(include_bytes!("fixtures/pickle/exception.pickle")),
            record(|r| r.stack_trace.starts_with("Traceback")),
        ),
        seed(
            t,
            "extra",
            socket_handler(include_bytes!("fixtures/pickle/extra.pickle")),
            record(|r| r.fields.len() == 10),
        ),
        seed(
            t,
            "stack-info",
            socket_handler(include_bytes!("fixtures/pickle/stack.pickle")),
            record(|r| r.stack_trace.starts_with("Stack")),
        ),
        seed(
            t,
            "custom-level",
            socket_handler(include_bytes!("fixtures/pickle/custom-level.pickle")),
            record(|r| r.level == Level::Info),
        ),
        seed(
            t,
            "protocol2",
            socket_handler(include_bytes!("fixtures/pickle/info-protocol2.pickle")),
            record(|r| r.body == Body::Message("hello world".into())),
        ),
        seed(
            t,
            "protocol5",
            socket_handler(include_bytes!("fixtures/pickle/info-protocol5.pickle")),
            record(|r| r.body == Body::Message("hello world".into())),
        ),
        seed(
            t,
            "set-and-bytes-builtins",
            b"}(X\x01\x00\x00\x00sc__builtin__\nset\n(]K\x01atRX\x01\x00\x00\x00bc_codecs\nencode\n(X\x02\x00\x00\x00xyX\x06\x00\x00\x00latin1tRu.".to_vec(),
            record(|r| r.fields.len() == 2),
        ),
        seed(t, "evil-reduce", include_bytes!("fixtures/pickle/evil-reduce.bin").to_vec(), not_data()),
        seed(
            t,
            "evil-reduce-protocol4",
            include_bytes!("fixtures/pickle/evil-reduce-protocol4.bin").to_vec(),
            not_data(),
        ),
        seed(
            t,
            "instance-protocol0",
            include_bytes!("fixtures/pickle/instance-protocol0.bin").to_vec(),
            not_data(),
        ),
        seed(
            t,
            "instance-protocol2",
            include_bytes!("fixtures/pickle/instance-protocol2.bin").to_vec(),
            not_data(),
        ),
        seed(
            t,
            "class-reference",
            include_bytes!("fixtures/pickle/class-reference.bin").to_vec(),
            not_data(),
        ),
        seed(
            t,
            "function-reference",
            include_bytes!("fixtures/pickle/function-reference.bin").to_vec(),
            not_data(),
        ),
        seed(t, "nested-64", nested(63), record(|r| r.fields.len() == 1)),
        seed(t, "nested-65", nested(64), too_complex()),
        seed(t, "marks-65", vec![b'('; 65], too_complex()),
        seed(t, "billion-laughs", laughs, too_complex()),
        seed(
            t,
            "recursive-list",
            b"}(X\x01\x00\x00\x00k]q\x00h\x00au.".to_vec(),
            not_data(),
        ),
        seed(
            t,
            "huge-declared-length",
            b"}(X\x01\x00\x00\x00kX\xff\xff\xff\x7fabcu.".to_vec(),
            decoded(|r| matches!(r, Err(PickleError::Truncated))),
        ),
        seed(
            t,
            "huge-memo-index",
            b"}(X\x01\x00\x00\x00kr\xff\xff\xff\xffK\x07u.".to_vec(),
            record(|r| r.fields.len() == 1),
        ),
        seed(
            t,
            "not-a-dict",
            b"\x80\x02]q\x00(K\x01K\x02e.".to_vec(),
            decoded(|r| matches!(r, Err(PickleError::NotADict(_)))),
        ),
        seed(t, "truncated", b"}(X\x01\x00".to_vec(), decoded(|r| r.is_err())),
        seed(t, "empty", Vec::new(), decoded(|r| r.is_err())),
    ]
}

fn seeds() -> Vec<Seed> {
    let mut all = frame_stream_seeds();
    all.extend(native_record_seeds());
    all.extend(server_frame_seeds());
    all.extend(syslog_seeds());
    all.extend(jsonl_seeds());
    all.extend(pickle_seeds());
    all
}

/// Each seed decodes to what its name says, so the corpus starts where it is meant to.
#[test]
fn seeds_decode_as_intended() {
    for seed in seeds() {
        let what = format!("{}/seed-{}", seed.target, seed.name);
        match (&seed.expect, seed.target) {
            (Expect::Stream(ok), "frame_stream") => {
                let outcome = harness::frame_stream(&seed.data).expect("a stream input");
                assert!(ok(&outcome), "{what}: {outcome:?}");
            }
            (Expect::Client(ok), "native_record") => {
                let outcome = harness::native_record(&seed.data);
                assert!(ok(&outcome), "{what}: {outcome:?}");
            }
            (Expect::Server(expected), "server_frame") => {
                assert_eq!(&harness::server_frame(&seed.data), expected, "{what}");
            }
            (Expect::Lines(ok), "syslog" | "jsonl") => {
                let outcome = if seed.target == "syslog" {
                    harness::syslog(&seed.data)
                } else {
                    harness::jsonl(&seed.data)
                };
                let outcome = outcome.expect("a stream input");
                assert!(ok(&outcome), "{what}: {outcome:#?}");
            }
            (Expect::Pickle(ok), "pickle") => {
                let result = harness::pickle(&seed.data);
                assert!(ok(&result), "{what}: {result:?}");
            }
            _ => panic!("{what}: expectation for another target"),
        }
    }
}

/// Writes the seeds into `fuzz/corpus/<target>/seed-<name>` when `LOGMILL_WRITE_CORPUS=1`,
/// replacing stale `seed-*` files and leaving the inputs the fuzzers found alone. Without the
/// variable it does nothing: a seed that drifted from today's encoders is still a valid input,
/// and `seeds_decode_as_intended` checks the generator itself.
#[test]
fn write_seed_corpus() {
    if std::env::var_os("LOGMILL_WRITE_CORPUS").is_none_or(|v| v != "1") {
        eprintln!("seeds not written: set LOGMILL_WRITE_CORPUS=1 to write them");
        return;
    }
    let seeds = seeds();
    // grpc_message's seeds are written by tests/grpc_fuzz_corpus.rs: leave its directory alone.
    for target in TARGETS.into_iter().filter(|&t| t != "grpc_message") {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        for entry in std::fs::read_dir(&dir).expect("corpus directory") {
            let path = entry.expect("a directory entry").path();
            let stale = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"));
            if stale {
                std::fs::remove_file(&path).expect("remove a stale seed");
            }
        }
        for seed in seeds.iter().filter(|s| s.target == target) {
            let path = dir.join(format!("seed-{}", seed.name));
            std::fs::write(&path, &seed.data).expect("write a seed");
        }
    }
}
