//! The gRPC side of an event loop (`server::grpc::GrpcPort`) on its own: a thread polls and
//! calls the port's methods as the server's loop does (accept, drive on events, wakes and
//! deadlines, shutdown), collects what the connections push into a real `BatchBuilder`, and
//! stands in for the writer (sequence numbers, completions in order through the port, an
//! optional hold that stands for a slow disk). Real clients talk to it over loopback:
//! the `h2` crate's client (on a tokio runtime, in this test only), raw sockets for the
//! HTTP/1 and timeout cases, and the real Python `grpcio` and Node `@grpc/grpc-js` clients of
//! `tests/grpc_interop/`, which `tests/common/tools.rs` installs (or says why it could not).
//!
//! Every wait is bounded; nothing sleeps a fixed time to let something happen, except where a
//! test proves that something does *not* happen (a reply held back by the writer).

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::collections::HashMap;
use std::future::poll_fn;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request};
use logmill::config::Format;
use logmill::config::GrpcLimits;
use logmill::protocol::grpc::health_v1::{HealthCheckRequest, HealthCheckResponse};
use logmill::protocol::grpc::logmill_v1::{LogRecord, PushRequest, PushResponse, log_record};
use logmill::protocol::grpc::{self, percent_decode};
use logmill::server::grpc::{Accepted, GrpcContext, GrpcPort};
use logmill::server::shared::Shared;
use logmill::storage::line::LineFormatter;
use logmill::storage::mailbox::{Handoff, Mailbox};
use logmill::storage::server_log::ServerLog;
use logmill::storage::{Batch, BatchBuilder};
use mio::net::TcpListener;
use mio::{Events, Poll, Token, Waker};
use prost::Message as _;

const DEADLINE: Duration = Duration::from_secs(60);
const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

/// The methods the tests call.
const PUSH: &str = "/logmill.v1.LogService/Push";
const PUSH_STREAM: &str = "/logmill.v1.LogService/PushStream";
const LOG_MESSAGE: &str = "/logmill.v1.LogService/LogMessage";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

// ---------------------------------------------------------------------------------------------
// The test loop
// ---------------------------------------------------------------------------------------------

/// What a test can see and steer of its loop.
struct Control {
    shared: Arc<Shared>,
    /// While set, the fake writer keeps batches unwritten: a slow or stuck disk.
    hold: AtomicBool,
    shutdown: AtomicBool,
    /// Set by the loop once every connection has been told to shut down.
    shutdown_begun: AtomicBool,
    stop: AtomicBool,
    keep_lines: bool,
    lines: Mutex<Vec<String>>,
    written: AtomicU64,
    connections: AtomicUsize,
    /// The first bytes of connections the port handed over as not HTTP/2 (the server's loop
    /// adopts them for HTTP/1.1; this loop closes them).
    handed_over: Mutex<Vec<Vec<u8>>>,
}

struct TestServer {
    addr: SocketAddr,
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

struct Options {
    limits: GrpcLimits,
    max_pending: usize,
    keep_lines: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: GrpcLimits::default(),
            max_pending: 64 << 20,
            keep_lines: true,
        }
    }
}

impl TestServer {
    fn start(options: Options) -> TestServer {
        let poll = Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), WAKER).unwrap();
        let handoff = Arc::new(Handoff::new(options.max_pending, vec![Mailbox::new(waker)]));
        let shared = Arc::new(Shared::new("grpc-test".into(), handoff, Arc::default()));
        // Registered by the port.
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let control = Arc::new(Control {
            shared,
            hold: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            shutdown_begun: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            keep_lines: options.keep_lines,
            lines: Mutex::new(Vec::new()),
            written: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            handed_over: Mutex::new(Vec::new()),
        });
        let c = control.clone();
        let thread = std::thread::Builder::new()
            .name("grpc-test-loop".into())
            .spawn(move || run_loop(poll, listener, options.limits, c))
            .unwrap();
        TestServer {
            addr,
            control,
            thread: Some(thread),
        }
    }

    /// A loop with the default options but these limits.
    fn with_limits(limits: GrpcLimits) -> TestServer {
        TestServer::start(Options {
            limits,
            ..Options::default()
        })
    }

    fn set_hold(&self, hold: bool) {
        self.control.hold.store(hold, Ordering::SeqCst);
        self.control.shared.mailbox(0).wake();
    }

    fn shutdown(&self) {
        self.control.shutdown.store(true, Ordering::SeqCst);
        self.control.shared.mailbox(0).wake();
    }

    fn lines(&self) -> Vec<serde_json::Value> {
        self.control
            .lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn written(&self) -> u64 {
        self.control.written.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.control.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::SeqCst);
        self.control.shared.mailbox(0).wake();
        if let Some(thread) = self.thread.take() {
            let panicked = thread.join().is_err();
            if panicked && !std::thread::panicking() {
                panic!("the test loop panicked");
            }
        }
    }
}

/// The loop: the server's turn reduced to its gRPC side, every step a call on the real
/// [`GrpcPort`]; what is the test's own is the writer below.
fn run_loop(mut poll: Poll, listener: TcpListener, limits: GrpcLimits, control: Arc<Control>) {
    let shared = control.shared.clone();
    let log = ServerLog::stderr_only();
    let notify_shared = shared.clone();
    let mut port = GrpcPort::new(
        Some(listener),
        poll.registry(),
        LISTENER,
        limits,
        move || notify_shared.mailbox(0).wake(),
    )
    .unwrap();
    let mut batch = BatchBuilder::new(0, LineFormatter::new(Format::Json), 1);
    let mut held: Vec<Batch> = Vec::new();
    let mut next_seq = 1u64;
    let mut events = Events::with_capacity(256);
    let mut shutting_down = false;
    while !control.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let mut timeout = Duration::from_millis(100);
        if port.has_ready() && !shared.pending_full() {
            timeout = Duration::ZERO;
        }
        if let Some(at) = port.next_deadline() {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("poll: {e}"),
        }
        let drive = |port: &mut GrpcPort, token: Token, batch: &mut BatchBuilder| {
            let mut cx = GrpcContext {
                batch,
                now_ns: 1_700_000_000_000_000_000,
                shared: &shared,
                log: &log,
            };
            if let Some(http1) = port
                .drive(token, &mut cx, poll.registry(), true)
                .and_then(|mut driven| driven.take_http1())
            {
                control.handed_over.lock().unwrap().push(http1.first);
            }
        };
        for event in events.iter() {
            match event.token() {
                LISTENER => loop {
                    match port.accept(poll.registry(), &shared, &log, usize::MAX) {
                        Accepted::Conn(token) => drive(&mut port, token, &mut batch),
                        Accepted::Done => break,
                        other => panic!("accept: {other:?}"),
                    }
                },
                WAKER => {}
                token => drive(&mut port, token, &mut batch),
            }
        }
        if control.shutdown.load(Ordering::SeqCst) && !shutting_down {
            shutting_down = true;
            port.begin_shutdown();
            control.shutdown_begun.store(true, Ordering::SeqCst);
        }
        port.collect_due(Instant::now());
        while let Some(token) = port.next_due() {
            drive(&mut port, token, &mut batch);
        }
        control.connections.store(port.len(), Ordering::SeqCst);
        // The batch goes to the writer once per turn, as in the server.
        if !batch.is_empty() {
            let b = batch.take(next_seq, None);
            shared.handoff().pending().add(b.cost());
            held.push(b);
        }
        if control.hold.load(Ordering::SeqCst) {
            continue;
        }
        // The fake writer: number the lines, keep them, complete in order.
        for b in held.drain(..) {
            let mut owners = b.owners.iter().copied();
            let mut run = owners.next();
            let mut in_run = 0;
            let mut lines = control.lines.lock().unwrap();
            for (head, tail) in b.lines() {
                let seq = next_seq;
                next_seq += 1;
                if control.keep_lines {
                    let mut line = String::from_utf8(head.to_vec()).unwrap();
                    line.push_str(&seq.to_string());
                    line.push_str(std::str::from_utf8(tail).unwrap());
                    lines.push(line);
                }
                control.written.fetch_add(1, Ordering::SeqCst);
                let (conn_key, count) = run.expect("a line without an owner");
                in_run += 1;
                if in_run == count {
                    assert!(GrpcPort::owns(conn_key.token), "a gRPC connection's line");
                    port.completed(conn_key, u64::from(count), seq);
                    run = owners.next();
                    in_run = 0;
                }
            }
            shared.handoff().pending().release(b.cost());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A Rust client: h2 over a tokio runtime (tests only)
// ---------------------------------------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap()
}

/// Runs a client on a fresh runtime, failing (not hanging) if it takes longer than `limit`: a
/// flow-control stall shows up as this timeout.
fn block_on<F: std::future::Future>(limit: Duration, f: F) -> F::Output {
    runtime().block_on(async {
        tokio::time::timeout(limit, f)
            .await
            .unwrap_or_else(|_| panic!("the client did not finish within {limit:?}"))
    })
}

async fn connect(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .handshake(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("client connection ended: {e}");
        }
    });
    client
}

/// What came back for one call.
#[derive(Debug, Default)]
struct Reply {
    http_status: u16,
    headers: HeaderMap,
    messages: Vec<Vec<u8>>,
    trailers: HeaderMap,
}

impl Reply {
    /// `grpc-status` from the trailers, or from the headers of a trailers-only response.
    fn code(&self) -> Option<u32> {
        self.trailers
            .get("grpc-status")
            .or(self.headers.get("grpc-status"))
            .map(|v| v.to_str().unwrap().parse().unwrap())
    }

    fn message(&self) -> String {
        self.trailers
            .get("grpc-message")
            .or(self.headers.get("grpc-message"))
            .map(|v| percent_decode(v.to_str().unwrap()))
            .unwrap_or_default()
    }

    fn push(&self) -> PushResponse {
        assert_eq!(self.http_status, 200);
        assert_eq!(self.code(), Some(0), "{self:?} {}", self.message());
        assert_eq!(self.messages.len(), 1);
        PushResponse::decode(self.messages[0].as_slice()).unwrap()
    }
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    grpc::encode_message(payload, &mut out);
    out
}

fn push_request(tag: &str, from: usize, n: usize, pad: usize) -> Vec<u8> {
    PushRequest {
        records: (from..from + n)
            .map(|i| LogRecord {
                body: Some(log_record::Body::Message(format!(
                    "{tag} {i} {}",
                    "x".repeat(pad)
                ))),
                logger: tag.into(),
                level: 5,
                ..LogRecord::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

/// [`push_request`] as one framed gRPC message: what a call's body is made of.
fn push_message(tag: &str, from: usize, n: usize, pad: usize) -> Vec<u8> {
    framed(&push_request(tag, from, n, pad))
}

/// Starts a call; the caller sends the body through the returned stream.
async fn start(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    headers: &[(&str, &str)],
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let mut request = Request::post(format!("http://logmill{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut ready = client.clone().ready().await.unwrap();
    let (response, send) = ready
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    *client = ready;
    (response, send)
}

/// Sends `data`, waiting for flow-control capacity as a well-behaved client must: if the
/// server failed to release capacity, this would wait forever (the test's timeout catches it).
async fn send_all(send: &mut h2::SendStream<Bytes>, mut data: Bytes, end: bool) {
    while !data.is_empty() {
        send.reserve_capacity(data.len().min(1 << 20));
        let granted = poll_fn(|cx| send.poll_capacity(cx))
            .await
            .expect("stream closed")
            .expect("capacity error");
        let part = data.split_to(granted.min(data.len()));
        send.send_data(part, false).unwrap();
    }
    if end {
        send.send_data(Bytes::new(), true).unwrap();
    }
}

async fn finish(response: h2::client::ResponseFuture) -> Reply {
    let response = response.await.unwrap();
    let http_status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    let mut messages = Vec::new();
    let mut rest = &data[..];
    while let Ok(grpc::Message::Complete {
        payload, consumed, ..
    }) = grpc::decode_message(rest, usize::MAX)
    {
        messages.push(payload.to_vec());
        rest = &rest[consumed..];
    }
    assert!(rest.is_empty(), "trailing bytes in the response body");
    Reply {
        http_status,
        headers,
        messages,
        trailers,
    }
}

/// A whole call: one body (any number of framed messages), then the reply.
async fn call(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let (response, mut send) = start(client, path, headers).await;
    send_all(&mut send, Bytes::from(body), true).await;
    finish(response).await
}

/// A plain socket to the loop, for clients that are not HTTP/2 (or not well-behaved ones).
fn raw_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Polls `f` until it holds, with the deadline of the shared test helper.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    common::wait_for(what, DEADLINE, || f().then_some(()));
}

/// [`wait_for`] inside the client's runtime: yields to it between polls instead of blocking it.
async fn wait_for_async(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn messages_of(lines: &[serde_json::Value], logger: &str) -> Vec<(u64, String)> {
    lines
        .iter()
        .filter(|l| l["logger"] == logger)
        .map(|l| {
            (
                l["seq"].as_u64().unwrap(),
                l["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn unary_push_replies_only_once_written() {
    let server = TestServer::start(Options::default());
    server.set_hold(true);
    block_on(DEADLINE, async {
        let mut client = connect(server.addr).await;
        let body = push_message("unary", 0, 3, 0);
        let (response, mut send) = start(
            &mut client,
            PUSH,
            &[("logmill-app", "billing"), ("logmill-instance", "pod-7")],
        )
        .await;
        send_all(&mut send, Bytes::from(body), true).await;
        let mut response = Box::pin(finish(response));
        // The records are in the batch, but the writer holds them: no reply yet.
        let early = tokio::time::timeout(Duration::from_millis(300), &mut response).await;
        assert!(early.is_err(), "replied before the records were written");
        assert_eq!(server.written(), 0);
        server.set_hold(false);
        let reply = response.await.push();
        assert_eq!(reply.accepted, 3);
        assert_eq!((reply.first_seq, reply.last_seq), (1, 3));
    });
    let lines = server.lines();
    let got = messages_of(&lines, "unary");
    assert_eq!(
        got,
        vec![
            (1, "unary 0 ".to_string()),
            (2, "unary 1 ".to_string()),
            (3, "unary 2 ".to_string())
        ]
    );
    assert_eq!(lines[0]["app"], "billing");
    assert_eq!(lines[0]["instance"], "pod-7");
    assert_eq!(lines[0]["level"], "warning");
}

#[test]
fn empty_push_replies_zero() {
    let server = TestServer::start(Options::default());
    block_on(DEADLINE, async {
        let mut client = connect(server.addr).await;
        let reply = call(
            &mut client,
            PUSH,
            &[],
            framed(&PushRequest::default().encode_to_vec()),
        )
        .await
        .push();
        assert_eq!((reply.accepted, reply.first_seq, reply.last_seq), (0, 0, 0));
    });
}

/// `LogMessage` (the seed's `client.logMessage`): one `LogRecord`, stored as a Push of one
/// record would be, under the call's app and instance, and answered only once written.
#[test]
fn log_message_replies_only_once_written() {
    let server = TestServer::start(Options::default());
    server.set_hold(true);
    block_on(DEADLINE, async {
        let mut client = connect(server.addr).await;
        let record = LogRecord {
            body: Some(log_record::Body::Message("one record".into())),
            logger: "logmessage".into(),
            level: 6,
            fields: [("k".to_string(), "v".to_string())].into(),
            ..LogRecord::default()
        };
        let (response, mut send) = start(
            &mut client,
            LOG_MESSAGE,
            &[("logmill-app", "web"), ("logmill-instance", "tab-1")],
        )
        .await;
        send_all(
            &mut send,
            Bytes::from(framed(&record.encode_to_vec())),
            true,
        )
        .await;
        let mut response = Box::pin(finish(response));
        let early = tokio::time::timeout(Duration::from_millis(300), &mut response).await;
        assert!(early.is_err(), "replied before the record was written");
        server.set_hold(false);
        let reply = response.await.push();
        assert_eq!((reply.accepted, reply.first_seq, reply.last_seq), (1, 1, 1));

        // Errors: not a LogRecord, two messages, none.
        let r = call(&mut client, LOG_MESSAGE, &[], framed(b"\x1a\x05ab")).await;
        assert_eq!(r.code(), Some(3), "undecodable: {r:?}");
        assert!(
            r.message().contains("not a valid LogRecord"),
            "{}",
            r.message()
        );
        let mut two = framed(&record.encode_to_vec());
        two.extend(framed(&record.encode_to_vec()));
        let r = call(&mut client, LOG_MESSAGE, &[], two).await;
        assert_eq!(r.code(), Some(13), "two messages: {r:?}");
        assert!(
            r.message().contains("LogMessage is unary"),
            "{}",
            r.message()
        );
        let r = call(&mut client, LOG_MESSAGE, &[], Vec::new()).await;
        assert_eq!(r.code(), Some(13), "no message: {r:?}");
    });
    let lines = server.lines();
    let got = messages_of(&lines, "logmessage");
    // The two-message call stored its first record before failing on the second.
    assert_eq!(got[0], (1, "one record".to_string()));
    assert_eq!(lines[0]["app"], "web");
    assert_eq!(lines[0]["instance"], "tab-1");
    assert_eq!(lines[0]["level"], "error");
    assert_eq!(lines[0]["fields"]["k"], "v");
}

/// 100 MB through one PushStream: flow control must be released as records are taken, or the
/// client (which only sends within its windows) would wait forever.
#[test]
fn hundred_megabyte_stream_never_stalls() {
    let server = TestServer::start(Options {
        keep_lines: false,
        ..Options::default()
    });
    let started = Instant::now();
    let (records, bytes) = block_on(Duration::from_secs(300), async {
        let mut client = connect(server.addr).await;
        let (response, mut send) = start(&mut client, PUSH_STREAM, &[]).await;
        let mut records = 0u64;
        let mut bytes = 0usize;
        let mut i = 0;
        while bytes < 100_000_000 {
            let message = push_message("big", i, 1000, 230);
            bytes += message.len();
            records += 1000;
            i += 1000;
            send_all(&mut send, Bytes::from(message), false).await;
        }
        send_all(&mut send, Bytes::new(), true).await;
        let reply = finish(response).await.push();
        assert_eq!(reply.accepted, records);
        assert_eq!(reply.last_seq - reply.first_seq + 1, records);
        (records, bytes)
    });
    assert_eq!(server.written(), records);
    eprintln!(
        "{bytes} bytes, {records} records in {:?}",
        started.elapsed()
    );
}

#[test]
fn concurrent_streams_and_connections_keep_each_calls_order() {
    let server = TestServer::start(Options::default());
    const CONNS: usize = 4;
    const STREAMS: usize = 8;
    const MESSAGES: usize = 25;
    const PER: usize = 20;
    let replies = block_on(DEADLINE, async {
        let mut tasks = Vec::new();
        for c in 0..CONNS {
            let client = connect(server.addr).await;
            for s in 0..STREAMS {
                let mut client = client.clone();
                tasks.push(tokio::spawn(async move {
                    let tag = format!("c{c}s{s}");
                    let path = if s % 2 == 0 { PUSH_STREAM } else { PUSH };
                    let count = if s % 2 == 0 { MESSAGES } else { 1 };
                    let (response, mut send) = start(&mut client, path, &[]).await;
                    for m in 0..count {
                        let message = push_message(&tag, m * PER, PER, 10);
                        send_all(&mut send, Bytes::from(message), false).await;
                        tokio::task::yield_now().await;
                    }
                    send_all(&mut send, Bytes::new(), true).await;
                    (tag, count * PER, finish(response).await.push())
                }));
            }
        }
        let mut replies = Vec::new();
        for task in tasks {
            replies.push(task.await.unwrap());
        }
        replies
    });
    let lines = server.lines();
    let mut seqs: HashMap<u64, ()> = HashMap::new();
    for (tag, count, reply) in replies {
        assert_eq!(reply.accepted, count as u64, "{tag}");
        let got = messages_of(&lines, &tag);
        assert_eq!(got.len(), count, "{tag}");
        for (i, (seq, message)) in got.iter().enumerate() {
            assert_eq!(
                message,
                &format!("{tag} {i} {}", "x".repeat(10)),
                "{tag} order"
            );
            assert!(seqs.insert(*seq, ()).is_none());
        }
        assert_eq!(reply.first_seq, got[0].0, "{tag} first_seq");
        assert_eq!(reply.last_seq, got[count - 1].0, "{tag} last_seq");
    }
}

/// A `logmill-app` that is not a valid bucket name (it would name a path) is refused with
/// INVALID_ARGUMENT before any record is read; nothing is stored.
#[test]
fn invalid_app_names_are_refused() {
    let server = TestServer::start(Options::default());
    block_on(DEADLINE, async {
        let mut client = connect(server.addr).await;
        for app in ["..", "../x", "a/b", ".hidden", &"x".repeat(65)] {
            let body = push_message("refused", 0, 1, 0);
            let r = call(&mut client, PUSH, &[("logmill-app", app)], body).await;
            assert_eq!(r.code(), Some(3), "{app:?}: {r:?}");
            assert!(
                r.message().contains("is not [A-Za-z0-9]"),
                "{}",
                r.message()
            );
        }
    });
    assert_eq!(server.written(), 0);
}

#[test]
fn every_error_code() {
    let server = TestServer::with_limits(GrpcLimits {
        max_message: 64 * 1024,
        ..GrpcLimits::default()
    });
    block_on(DEADLINE, async {
        let mut client = connect(server.addr).await;
        let good = push_message("ok", 0, 1, 0);

        let r = call(
            &mut client,
            "/logmill.v1.LogService/Nope",
            &[],
            good.clone(),
        )
        .await;
        assert_eq!(r.code(), Some(12), "unknown method: {r:?}");
        assert!(
            r.message()
                .contains("unknown method /logmill.v1.LogService/Nope")
        );
        let r = call(&mut client, "/other.Service/Push", &[], good.clone()).await;
        assert_eq!(r.code(), Some(12), "unknown service");

        let r = call(&mut client, PUSH, &[], framed(b"\x0a\x05\x08")).await;
        assert_eq!(r.code(), Some(3), "undecodable");
        assert!(
            r.message().contains("not a valid PushRequest"),
            "{}",
            r.message()
        );

        // The prefix alone announces too much: refused before the payload is read.
        let mut big = vec![0u8, 0, 1, 0, 1];
        big.extend_from_slice(&[0; 100]);
        let r = call(&mut client, PUSH, &[], big).await;
        assert_eq!(r.code(), Some(8), "too large: {}", r.message());
        assert!(
            r.message()
                .contains("65537 bytes is over the limit of 65536")
        );

        let mut compressed = good.clone();
        compressed[0] = 1;
        let r = call(
            &mut client,
            PUSH,
            &[("grpc-encoding", "snappy")],
            compressed.clone(),
        )
        .await;
        assert_eq!(r.code(), Some(12), "unsupported encoding");
        assert_eq!(r.headers["grpc-accept-encoding"], "identity,gzip");
        let r = call(&mut client, PUSH, &[], compressed).await;
        assert_eq!(r.code(), Some(13), "compressed without encoding");

        let gz = gzip(&push_request("gzip", 0, 2, 0));
        let mut body = vec![1u8];
        body.extend_from_slice(&(gz.len() as u32).to_be_bytes());
        body.extend_from_slice(&gz);
        let r = call(&mut client, PUSH, &[("grpc-encoding", "gzip")], body).await;
        assert_eq!(r.push().accepted, 2, "gzip");

        // A gzip bomb: 70 KB of zeros in a few hundred bytes; the inflated size is capped.
        let bomb = gzip(&vec![0u8; 70_000]);
        let mut body = vec![1u8];
        body.extend_from_slice(&(bomb.len() as u32).to_be_bytes());
        body.extend_from_slice(&bomb);
        let r = call(&mut client, PUSH, &[("grpc-encoding", "gzip")], body).await;
        assert_eq!(r.code(), Some(8), "gzip bomb: {}", r.message());

        let r = call(&mut client, PUSH, &[("grpc-timeout", "soon")], good.clone()).await;
        assert_eq!(r.code(), Some(13), "bad grpc-timeout");

        let mut two = good.clone();
        two.extend_from_slice(&good);
        let r = call(&mut client, PUSH, &[], two).await;
        assert_eq!(r.code(), Some(13), "two messages on a unary call");
        let r = call(&mut client, PUSH, &[], Vec::new()).await;
        assert_eq!(r.code(), Some(13), "no message on a unary call");
        let r = call(&mut client, PUSH, &[], good[..good.len() - 1].to_vec()).await;
        assert_eq!(r.code(), Some(13), "body ends inside a message");
        assert!(r.message().contains("ended inside a message"));
        let r = call(&mut client, PUSH, &[], vec![7, 0, 0, 0, 0]).await;
        assert_eq!(r.code(), Some(13), "bad flag");

        // A stream that goes bad half-way: earlier records are stored, and the error says so.
        let mut body = push_message("half", 0, 5, 0);
        body.extend(framed(b"\xff"));
        let r = call(&mut client, PUSH_STREAM, &[], body).await;
        assert_eq!(r.code(), Some(3));
        assert!(
            r.message()
                .contains("5 records before this point are stored"),
            "{}",
            r.message()
        );

        // Not gRPC: plain HTTP statuses.
        let mut ready = client.clone().ready().await.unwrap();
        let (response, _) = ready
            .send_request(Request::get("http://logmill/").body(()).unwrap(), true)
            .unwrap();
        assert_eq!(response.await.unwrap().status(), 405);
        let (response, _) = ready
            .send_request(
                Request::post("http://logmill/logmill.v1.LogService/Push")
                    .header("content-type", "application/json")
                    .body(())
                    .unwrap(),
                true,
            )
            .unwrap();
        assert_eq!(response.await.unwrap().status(), 415);

        // Headers over the limit: refused, and the connection still works afterwards.
        let huge = "v".repeat(20_000);
        let (response, _send) = start(&mut client, PUSH, &[("x-huge", &huge)]).await;
        let refused = response.await;
        match refused {
            Ok(r) => assert_eq!(r.status(), 431),
            Err(e) => eprintln!("oversized headers refused: {e}"),
        }
        let r = call(&mut client, PUSH, &[], good.clone()).await;
        assert_eq!(r.push().accepted, 1, "the connection survives every error");
    });
    assert!(server.control.shared.stats().decode_errors() >= 2);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn grpc_timeout_is_honoured() {
    let server = TestServer::start(Options::default());
    server.set_hold(true);
    block_on(DEADLINE, async {
        let mut client = connect(server.addr).await;
        let started = Instant::now();
        // The client sends a timeout but does not enforce it: the status comes from the server.
        let r = call(
            &mut client,
            PUSH,
            &[("grpc-timeout", "200m")],
            push_message("late", 0, 4, 0),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(r.code(), Some(4), "{r:?}");
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(r.message().contains("the rest will still be stored"));
        server.set_hold(false);
        wait_for("late records stored", || server.written() == 4);
        // A call with a generous timeout is unaffected.
        let r = call(
            &mut client,
            PUSH,
            &[("grpc-timeout", "10S")],
            push_message("timely", 0, 1, 0),
        )
        .await;
        assert_eq!(r.push().accepted, 1);
    });
    wait_for("the client's connection closed", || {
        server.connections() == 0
    });
}

/// OpenTelemetry's `LogsService/Export` on the same call path: the reply once written, with
/// `partial_success` for refused records; a request that is not OTLP is INVALID_ARGUMENT; under
/// backpressure (the disk failing) UNAVAILABLE at once, which exporters retry.
#[test]
fn otlp_export_replies_once_written_with_partial_success() {
    use logmill::protocol::otlp::proto::common::v1::{AnyValue, KeyValue, any_value};
    use logmill::protocol::otlp::proto::logs::v1::{
        LogRecord as OtlpRecord, ResourceLogs, ScopeLogs,
    };
    use logmill::protocol::otlp::proto::resource::v1::Resource;
    use logmill::protocol::otlp::{self, ExportLogsServiceRequest};

    let text = |s: &str| {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.into())),
        })
    };
    let records = |spans: &[&[u8]]| ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: text("checkout"),
                }],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(otlp::proto::common::v1::InstrumentationScope {
                    name: "otlp".into(),
                    ..Default::default()
                }),
                log_records: spans
                    .iter()
                    .enumerate()
                    .map(|(i, span)| OtlpRecord {
                        severity_number: 17,
                        body: text(&format!("otlp {i}")),
                        span_id: span.to_vec(),
                        ..OtlpRecord::default()
                    })
                    .collect(),
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    const EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    let server = TestServer::start(Options::default());
    server.set_hold(true);
    block_on(DEADLINE, async {
        let mut client = connect(server.addr).await;
        let body = framed(&otlp::encode_request(&records(&[b"12345678", b"bad", b""])));
        let (response, mut send) = start(&mut client, EXPORT, &[("logmill-app", "shop")]).await;
        send_all(&mut send, Bytes::from(body), true).await;
        let mut response = Box::pin(finish(response));
        let early = tokio::time::timeout(Duration::from_millis(300), &mut response).await;
        assert!(early.is_err(), "replied before the records were written");
        server.set_hold(false);
        let reply = response.await;
        assert_eq!(reply.code(), Some(0), "{reply:?}");
        let partial = otlp::decode_response(&reply.messages[0])
            .unwrap()
            .partial_success
            .unwrap();
        assert_eq!(partial.rejected_log_records, 1);
        assert!(partial.error_message.contains("span_id is 3 bytes"));

        let r = call(&mut client, EXPORT, &[], framed(b"\x0a\x05\x08")).await;
        assert_eq!(r.code(), Some(3), "INVALID_ARGUMENT: {r:?}");

        server.control.shared.stats().set_degraded(true);
        let r = call(
            &mut client,
            EXPORT,
            &[],
            framed(&otlp::encode_request(&records(&[b""]))),
        )
        .await;
        assert_eq!(r.code(), Some(14), "UNAVAILABLE while degraded: {r:?}");
        assert!(r.message().contains("DEGRADED"), "{}", r.message());
        server.control.shared.stats().set_degraded(false);
    });
    let lines = server.lines();
    let got = messages_of(&lines, "otlp");
    assert_eq!(
        got,
        vec![(1, "otlp 0".to_string()), (2, "otlp 2".to_string())]
    );
    assert_eq!(lines[0]["service"], "checkout");
    assert_eq!(lines[0]["app"], "shop");
    assert_eq!(lines[0]["level"], "error");
}

#[test]
fn health_check_and_watch() {
    let server = TestServer::start(Options::default());
    let health = |service: &str| {
        framed(
            &HealthCheckRequest {
                service: service.into(),
            }
            .encode_to_vec(),
        )
    };
    let status = |bytes: &[u8]| HealthCheckResponse::decode(bytes).unwrap().status;
    block_on(DEADLINE, async {
        let mut client = connect(server.addr).await;
        for service in ["", "logmill.v1.LogService"] {
            let r = call(&mut client, HEALTH_CHECK, &[], health(service)).await;
            assert_eq!(r.code(), Some(0));
            assert_eq!(status(&r.messages[0]), 1, "SERVING");
        }
        let r = call(&mut client, HEALTH_CHECK, &[], health("nope")).await;
        assert_eq!(r.code(), Some(5), "NOT_FOUND");

        // Watch: the current status at once, then each change.
        let (response, mut send) = start(&mut client, "/grpc.health.v1.Health/Watch", &[]).await;
        send_all(&mut send, Bytes::from(health("")), true).await;
        let response = response.await.unwrap();
        let mut body = response.into_body();
        assert_eq!(next_status(&mut body).await, 1, "SERVING");
        server.control.shared.stats().set_degraded(true);
        assert_eq!(
            next_status(&mut body).await,
            2,
            "NOT_SERVING while degraded"
        );
        let r = call(&mut client, HEALTH_CHECK, &[], health("")).await;
        assert_eq!(status(&r.messages[0]), 2);
        server.control.shared.stats().set_degraded(false);
        assert_eq!(next_status(&mut body).await, 1, "SERVING again");
        // Shutdown ends the watch: NOT_SERVING, then UNAVAILABLE.
        server.shutdown();
        assert_eq!(next_status(&mut body).await, 2);
        let trailers = body.trailers().await.unwrap().unwrap();
        assert_eq!(trailers["grpc-status"], "14");
    });
}

/// The next message of a health `Watch`.
async fn next_status(body: &mut h2::RecvStream) -> i32 {
    let mut data = Vec::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.data())
            .await
            .expect("a watch update")
            .unwrap()
            .unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        data.extend_from_slice(&chunk);
        if let Ok(grpc::Message::Complete { payload, .. }) = grpc::decode_message(&data, 100) {
            return HealthCheckResponse::decode(payload).unwrap().status;
        }
    }
}

/// What is not HTTP/2 leaves the port once a byte differs from the preface, with the bytes
/// read so far: the server's loop answers it as HTTP/1.1 (`tests/http.rs`).
#[test]
fn http1_and_garbage_are_handed_over_at_the_first_differing_byte() {
    let server = TestServer::start(Options::default());
    let requests: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/1.1\r\n\r\n",
        b"\x00\x00\x00\x10garbage",
    ];
    for request in requests {
        let mut s = raw_connect(server.addr);
        s.write_all(request).unwrap();
        let mut rest = Vec::new();
        // This test loop drops what it is handed: the client reads the end of the stream.
        let _ = s.read_to_end(&mut rest);
    }
    wait_for("HTTP/1 connections handed over", || {
        server.control.handed_over.lock().unwrap().len() == 3
    });
    let handed = server.control.handed_over.lock().unwrap().clone();
    for (first, request) in handed.iter().zip(requests) {
        // Detection reads at most the preface's length; whatever it read goes with the socket.
        assert!(!first.is_empty() && request.starts_with(first), "{first:?}");
    }
    wait_for("nothing left in the port", || server.connections() == 0);
}

#[test]
fn silent_or_half_preface_clients_are_closed_after_the_handshake_timeout() {
    let server = TestServer::with_limits(GrpcLimits {
        handshake_timeout: Duration::from_millis(300),
        ..GrpcLimits::default()
    });
    for sent in [&b""[..], &grpc::PREFACE[..10], grpc::PREFACE] {
        let started = Instant::now();
        let mut s = raw_connect(server.addr);
        s.write_all(sent).unwrap();
        let mut rest = Vec::new();
        // For the magic alone (no SETTINGS frame) the server's SETTINGS arrive, then the close.
        s.read_to_end(&mut rest).unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
}

/// A peer that completes the handshake and then goes silent (no PING answers) is closed after
/// keepalive interval + timeout; a PING was sent before.
#[test]
fn keepalive_closes_a_silent_peer() {
    let server = TestServer::with_limits(GrpcLimits {
        keepalive_interval: Duration::from_millis(200),
        keepalive_timeout: Duration::from_millis(200),
        ..GrpcLimits::default()
    });
    let mut s = raw_connect(server.addr);
    s.write_all(grpc::PREFACE).unwrap();
    // An empty SETTINGS frame, then an ACK of the server's SETTINGS: handshake done.
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    s.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).unwrap();
    let started = Instant::now();
    let mut frames = Vec::new();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let mut rest = &all[..];
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        frames.push(rest[3]);
        rest = &rest[9 + len..];
    }
    let took = started.elapsed();
    assert!(
        frames.contains(&6),
        "a PING was sent: frame types {frames:?}"
    );
    assert!(took >= Duration::from_millis(350), "{took:?}");
}

#[test]
fn idle_connections_get_goaway() {
    let server = TestServer::with_limits(GrpcLimits {
        idle_timeout: Some(Duration::from_millis(300)),
        ..GrpcLimits::default()
    });
    block_on(DEADLINE, async {
        let mut client = connect(server.addr).await;
        let r = call(&mut client, PUSH, &[], push_message("before-idle", 0, 1, 0)).await;
        assert_eq!(r.push().accepted, 1);
    });
    wait_for("the idle connection closed", || server.connections() == 0);
}

/// GOAWAY on shutdown: a stream already open finishes, with every record stored and a reply;
/// the connection then closes.
#[test]
fn shutdown_lets_open_calls_finish() {
    let server = TestServer::start(Options::default());
    block_on(DEADLINE, async {
        let mut client = connect(server.addr).await;
        let (response, mut send) = start(&mut client, PUSH_STREAM, &[]).await;
        send_all(
            &mut send,
            Bytes::from(push_message("inflight", 0, 10, 0)),
            false,
        )
        .await;
        wait_for_async("the first records written", || server.written() == 10).await;
        server.shutdown();
        wait_for_async("the loop to begin its shutdown", || {
            server.control.shutdown_begun.load(Ordering::SeqCst)
        })
        .await;
        // The client keeps sending on the stream it had open.
        send_all(
            &mut send,
            Bytes::from(push_message("inflight", 10, 10, 0)),
            true,
        )
        .await;
        let reply = finish(response).await.push();
        assert_eq!(reply.accepted, 20);
        // No new calls are taken on this connection.
        let refused = client.clone().ready().await;
        if let Ok(mut ready) = refused {
            let request = Request::post("http://logmill/logmill.v1.LogService/Push")
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            if let Ok((response, _)) = ready.send_request(request, true) {
                assert!(
                    response.await.is_err(),
                    "a new call after GOAWAY is refused"
                );
            }
        }
    });
    wait_for("the connection closed after its last call", || {
        server.connections() == 0
    });
    assert_eq!(messages_of(&server.lines(), "inflight").len(), 20);
}

/// The shutdown grace bounds a call that never ends.
#[test]
fn shutdown_grace_closes_calls_that_never_end() {
    let server = TestServer::with_limits(GrpcLimits {
        shutdown_grace: Duration::from_millis(300),
        ..GrpcLimits::default()
    });
    block_on(DEADLINE, async {
        let mut client = connect(server.addr).await;
        let (response, _send) = start(&mut client, PUSH_STREAM, &[]).await;
        server.shutdown();
        // Never ends its stream: the grace runs out and the connection goes.
        let r = tokio::time::timeout(Duration::from_secs(10), response).await;
        assert!(r.expect("closed within the grace").is_err());
    });
    wait_for("closed", || server.connections() == 0);
}

/// While the writer is full, no request data is taken (the client's windows close), but
/// health checks are still answered; once it drains, the stream completes.
#[test]
fn backpressure_stops_taking_data_but_not_health() {
    let server = TestServer::start(Options {
        max_pending: 256 * 1024,
        ..Options::default()
    });
    server.set_hold(true);
    block_on(DEADLINE, async {
        let mut client = connect(server.addr).await;
        let (response, mut send) = start(&mut client, PUSH_STREAM, &[]).await;
        let total = 20_000usize;
        let sender = tokio::spawn(async move {
            for m in 0..(total / 500) {
                let message = push_message("pressure", m * 500, 500, 100);
                send_all(&mut send, Bytes::from(message), false).await;
            }
            send_all(&mut send, Bytes::new(), true).await;
        });
        wait_for_async("the writer full", || server.control.shared.pending_full()).await;
        // The loop counts a turn's batch as pending only after driving every connection, so
        // what was received is final from here on: no time to settle is needed.
        let received = server.control.shared.stats().records_received();
        assert!(
            received < total as u64,
            "everything was taken despite a full writer"
        );
        let r = call(
            &mut client,
            HEALTH_CHECK,
            &[],
            framed(&HealthCheckRequest::default().encode_to_vec()),
        )
        .await;
        assert_eq!(r.code(), Some(0), "health answered while paused");
        // Proving that nothing happens takes a window, not a condition: 500 ms in which the
        // stalled call is driven on every turn of the loop.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            server.control.shared.stats().records_received(),
            received,
            "no more data taken while paused"
        );
        server.set_hold(false);
        sender.await.unwrap();
        let reply = finish(response).await.push();
        assert_eq!(reply.accepted, total as u64);
    });
    let got = messages_of(&server.lines(), "pressure");
    assert_eq!(got.len(), 20_000);
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
}

/// A client that cancels a call (RST_STREAM) loses nothing else: the connection goes on.
#[test]
fn cancelled_calls_leave_the_connection_working() {
    let server = TestServer::start(Options::default());
    server.set_hold(true);
    block_on(DEADLINE, async {
        let mut client = connect(server.addr).await;
        let (response, mut send) = start(&mut client, PUSH_STREAM, &[]).await;
        send_all(
            &mut send,
            Bytes::from(push_message("cancel", 0, 3, 0)),
            false,
        )
        .await;
        send.send_reset(h2::Reason::CANCEL);
        assert!(response.await.is_err());
        server.set_hold(false);
        let r = call(&mut client, PUSH, &[], push_message("after", 0, 1, 0)).await;
        assert_eq!(r.push().accepted, 1);
    });
}

/// Runs a third-party client script against a fresh test loop, then checks what was stored:
/// every call's records in the order sent (each call has its own logger, and its records are
/// numbered in the field `i`).
fn interop(client: &tools::ClientTool, script: &str) {
    let server = TestServer::start(Options::default());
    let status = client
        .command(script)
        .arg("--target")
        .arg(server.addr.to_string())
        .arg("--standalone")
        .status()
        .expect("run the client");
    assert!(status.success(), "the client failed");
    let lines = server.lines();
    assert!(lines.len() >= 20_000, "{} lines", lines.len());
    let mut last: HashMap<String, i64> = HashMap::new();
    for line in &lines {
        let logger = line["logger"].as_str().unwrap().to_string();
        let i: i64 = line["fields"]["i"].as_str().unwrap().parse().unwrap();
        let previous = last.insert(logger.clone(), i).unwrap_or(-1);
        assert_eq!(i, previous + 1, "{logger} out of order");
    }
}

/// The real Python `grpcio` client, with stubs generated by `grpcio-tools`.
#[test]
fn python_grpcio_client() {
    if let Some(python) = tools::require("python_grpcio_client", tools::python_grpc()) {
        interop(&python, "client.py");
    }
}

/// The real Node `@grpc/grpc-js` client, with `@grpc/proto-loader`.
#[test]
fn node_grpc_js_client() {
    if let Some(node) = tools::require("node_grpc_js_client", tools::node_grpc()) {
        interop(&node, "client.js");
    }
}
