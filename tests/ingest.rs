//! End-to-end ingestion over real sockets: concurrency, framing at every split point, acks,
//! bad input and `health`. Each test starts the real binary (see `common`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use logmill::protocol::frame;
use logmill::protocol::native::{self, ErrorKind, ServerFrame};
use logmill::record::Body;

/// 1,000 connections at once, each sending 20 records in separate frames, interleaved: every record
/// is stored, sequence numbers are gap-free, and each connection's records keep their order.
#[test]
fn thousand_concurrent_connections_keep_per_connection_order() {
    const CONNS: usize = 1000;
    const PER_CONN: usize = 20;
    let dir = TempDir::new("concurrent");
    let server = Server::start(&dir.0, &[]);
    let mut streams: Vec<TcpStream> = (0..CONNS).map(|_| server.connect()).collect();
    for n in 0..PER_CONN {
        for (c, stream) in streams.iter_mut().enumerate() {
            let mut out = Vec::new();
            native::encode_records(&[message(&format!("c{c:04} n{n:03}"))], &mut out);
            stream.write_all(&out).unwrap();
        }
    }
    let lines = server.wait_lines(CONNS * PER_CONN);
    assert_eq!(lines.len(), CONNS * PER_CONN);
    assert_gap_free(&lines, 1);
    let mut next = vec![0usize; CONNS];
    for line in &lines {
        let msg = message_of(line);
        let c: usize = msg[1..5].parse().unwrap();
        let n: usize = msg[7..10].parse().unwrap();
        assert_eq!(n, next[c], "connection {c} out of order at {line}");
        next[c] += 1;
    }
    assert!(next.iter().all(|&n| n == PER_CONN));
    drop(streams);
    assert!(server.stop().success());
}

fn stream_of_frames(records: usize) -> Vec<u8> {
    let mut out = Vec::new();
    native::encode_hello(
        &native::Hello {
            app: "split".into(),
            ..Default::default()
        },
        &mut out,
    );
    for i in 0..records {
        native::encode_records(&[message(&format!("record {i}"))], &mut out);
    }
    out
}

/// The same stream cut at every byte boundary (one connection per cut), and once dribbled a byte at
/// a time, is stored exactly as when sent whole.
#[test]
fn frames_split_at_every_byte_boundary() {
    let dir = TempDir::new("split");
    let server = Server::start(&dir.0, &[]);
    let stream = stream_of_frames(3);
    for cut in 1..stream.len() {
        let mut s = server.connect();
        s.write_all(&stream[..cut]).unwrap();
        s.flush().unwrap();
        s.write_all(&stream[cut..]).unwrap();
    }
    let mut s = server.connect();
    for byte in &stream {
        s.write_all(std::slice::from_ref(byte)).unwrap();
    }
    let expected = stream.len() * 3;
    // Without a token (--auth optional), the app is a label: shown in the line, records in
    // the anonymous bucket, <dir>/_main.log (tests/auth.rs has the token's bucket).
    let lines = server.wait_lines(expected);
    assert_eq!(lines.len(), expected);
    for line in &lines {
        assert!(line.contains(" split/127.0.0.1 - record "), "{line}");
    }
    // Per connection order: record 0, 1, 2 for each of the connections.
    let mut counts = [0usize; 3];
    for line in &lines {
        let i: usize = message_of(line)["record ".len()..].parse().unwrap();
        counts[i] += 1;
    }
    assert_eq!(counts, [stream.len(); 3]);
    assert!(server.stop().success());
}

/// A client that asks for acks gets a welcome, then acks whose count and last sequence number
/// match what is in the file.
#[test]
fn acks_report_written_records() {
    let dir = TempDir::new("acks");
    for fsync in ["1000ms", "always"] {
        let server = Server::start(&dir.0, &["--fsync", fsync]);
        let mut client = server.client();
        match client.hello("acker", true) {
            ServerFrame::Welcome {
                server: name,
                max_frame,
                ..
            } => {
                assert_eq!(name, "LogServer");
                assert_eq!(max_frame, 1 << 20);
            }
            other => panic!("expected welcome, got {other:?}"),
        }
        let batch: Vec<_> = (0..100).map(|i| message(&format!("m{i}"))).collect();
        client.send(&batch);
        let last_seq = client.wait_ack(100);
        // No token: the anonymous bucket (see `frames_split_at_every_byte_boundary`).
        let lines = server.lines();
        assert_eq!(seq_of(lines.last().unwrap()), last_seq);
        assert!(
            lines.last().unwrap().ends_with("acker/127.0.0.1 - m99"),
            "{:?}",
            lines.last()
        );
        assert!(server.stop().success());
    }
}

/// Frames of nearly --max-frame (far more than one read of the server's) written back to back,
/// with small frames between them, are stored whole and in order, and acked.
#[test]
fn frames_larger_than_a_read_are_stored_whole() {
    let dir = TempDir::new("bigframes");
    let server = Server::start(&dir.0, &[]);
    let mut client = server.client();
    client.hello("big", true);
    let big = "x".repeat(300 * 1024);
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for i in 0..6 {
        // Three 300 KiB records: a frame of about 900 KiB, under the 1 MiB default.
        let records: Vec<_> = (0..3)
            .map(|j| message(&format!("big {i}.{j} {big}")))
            .collect();
        native::encode_records(&records, &mut stream);
        expected.extend((0..3).map(|j| format!("big {i}.{j} ")));
        native::encode_records(&[message(&format!("small {i}"))], &mut stream);
        expected.push(format!("small {i}"));
    }
    client.send_raw(&stream);
    client.wait_ack(expected.len() as u64);
    let lines = server.wait_lines(expected.len());
    assert_gap_free(&lines, 1);
    for (line, start) in lines.iter().zip(&expected) {
        let message = message_of(line);
        assert!(message.starts_with(start.as_str()), "{start}");
        if start.starts_with("big") {
            assert_eq!(message.len(), start.len() + big.len(), "{start}");
        }
    }
    assert!(server.stop().success());
}

/// A length prefix over --max-frame gets an error frame and the connection is closed.
#[test]
fn oversized_frame_gets_error_and_close() {
    let dir = TempDir::new("oversized");
    let server = Server::start(&dir.0, &["--max-frame", "1024"]);
    let mut client = server.client();
    client.send(&[message("before")]);
    client.send_raw(&(1025u32).to_be_bytes());
    client.send_raw(&[0u8; 64]);
    match client.read_frame() {
        Some(ServerFrame::Error { kind, message }) => {
            assert_eq!(kind, Some(ErrorKind::FrameTooLarge));
            assert!(message.contains("1025"), "{message}");
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
    assert_eq!(client.read_frame(), None, "connection should be closed");
    let lines = server.wait_lines(1);
    assert!(lines[0].ends_with(" before"));
    assert!(server.health().contains("OK"));
    assert!(server.stop().success());
}

/// A client that keeps sending after the server refused it still reads the error, then the end
/// of the stream: the server half-closes and drops what follows instead of closing with unread
/// input, which makes the kernel send a reset that can destroy the error before it is read.
#[test]
fn refused_client_that_keeps_sending_reads_its_error_then_eof() {
    let dir = TempDir::new("linger");
    let server = Server::start(&dir.0, &["--max-frame", "1024"]);
    for round in 0..5 {
        let mut client = server.client();
        client.send_raw(&(1025u32).to_be_bytes());
        // Sent after the refusal: 256 KiB in small writes, some of them certainly after the
        // server has answered (a write into a reset connection fails, which is the bug).
        for _ in 0..64 {
            if let Err(e) = client.stream.write_all(&[7u8; 4096]) {
                panic!("round {round}: the server reset the connection: {e}");
            }
        }
        match client.read_frame() {
            Some(ServerFrame::Error { kind, .. }) => {
                assert_eq!(kind, Some(ErrorKind::FrameTooLarge), "round {round}");
            }
            other => panic!("round {round}: expected an error frame, got {other:?}"),
        }
        assert_eq!(
            client.read_frame(),
            None,
            "round {round}: then the end of the stream"
        );
    }
    assert!(server.health().contains("OK"));
}

/// An undecodable frame gets an error frame and is counted; the frames after it are stored.
#[test]
fn undecodable_frame_is_skipped_and_connection_goes_on() {
    let dir = TempDir::new("undecodable");
    let server = Server::start(&dir.0, &[]);
    let mut client = server.client();
    client.hello("", true);
    client.send(&[message("first")]);
    let mut garbage = Vec::new();
    frame::encode(b"this is not cap'n proto at all!!", &mut garbage);
    client.send_raw(&garbage);
    // A batch with a broken pointer in its second record: all-or-nothing, none of it is stored.
    let mut out = Vec::new();
    native::encode_records(&[message("x"), message("y")], &mut out);
    let len = out.len();
    out[len - 8..].copy_from_slice(&[0xff; 8]);
    client.send_raw(&out);
    client.send(&[message("last")]);
    let mut errors = 0;
    let mut acked = 0;
    while acked < 2 {
        match client.read_frame().expect("connection closed early") {
            ServerFrame::Error { kind, .. } => {
                assert_eq!(kind, Some(ErrorKind::Undecodable));
                errors += 1;
            }
            ServerFrame::Ack { count, .. } => acked = count,
            other => panic!("unexpected {other:?}"),
        }
    }
    let lines = server.wait_lines(2);
    let messages: Vec<_> = lines.iter().map(|l| message_of(l).to_string()).collect();
    assert_eq!(messages.len(), 2, "{lines:?}");
    assert_eq!(messages[0], "first");
    assert_eq!(messages[1], "last");
    assert!(errors >= 1);
    assert!(server.stop().success());
}

/// `health` gets one status line and the connection closes; bytes that are no protocol logmill
/// speaks get an explanation and a close.
#[test]
fn health_and_unknown_protocol() {
    let dir = TempDir::new("health");
    let server = Server::start(&dir.0, &["--name", "My Log Server"]);
    let answer = server.health();
    assert_eq!(answer.lines().count(), 1, "{answer:?}");
    assert!(
        answer.starts_with("OK name=My_Log_Server version="),
        "{answer}"
    );
    for field in ["uptime=", "connections=", "records_written=0"] {
        assert!(answer.contains(field), "{answer}");
    }
    let mut s = server.connect();
    s.write_all(b"health\r\n").unwrap();
    let mut crlf = String::new();
    s.read_to_string(&mut crlf).unwrap();
    assert!(crlf.starts_with("OK "));

    let mut s = server.connect();
    // A TLS ClientHello: binary, not text, not a frame.
    s.write_all(b"\x16\x03\x01\x02\x00\x01").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("unrecognised protocol"), "{reply}");
    assert!(server.stop().success());
}

/// A connection silent for --idle-timeout gets an error frame and is closed.
#[test]
fn idle_connections_time_out() {
    let dir = TempDir::new("idle");
    let server = Server::start(&dir.0, &["--idle-timeout", "1s"]);
    let mut client = server.client();
    client.hello("idle", false);
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    match client.read_frame() {
        Some(ServerFrame::Error { kind, .. }) => assert_eq!(kind, Some(ErrorKind::IdleTimeout)),
        other => panic!("expected an idle timeout error, got {other:?}"),
    }
    assert_eq!(client.read_frame(), None);
    assert!(server.stop().success());
}

/// Beyond --max-connections new connections are closed at once, and the server says so.
#[test]
fn max_connections_refuses_cleanly() {
    let dir = TempDir::new("maxconn");
    let server = Server::start(&dir.0, &["--max-connections", "3", "--workers", "1"]);
    let mut held: Vec<_> = (0..3).map(|_| server.client()).collect();
    for c in &mut held {
        c.hello("held", false);
    }
    let mut extra = server.connect();
    let mut buf = [0u8; 16];
    // Refused: EOF (or a reset) without any byte.
    match extra.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("refused connection got {n} bytes"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    held.pop();
    // A slot is free again once the server saw the close.
    let answer = wait_for("a free slot", DEADLINE, || {
        server.try_health().filter(|a| a.contains("connections=3"))
    });
    assert!(answer.starts_with("OK"));
    let log = std::fs::read_to_string(server.dir.join("_server.log")).unwrap();
    assert!(log.contains("refused connection"), "{log}");
    assert!(server.stop().success());
}

/// Accepted sockets have TCP keepalive on, so peers that vanish without a FIN are noticed.
#[test]
fn accepted_sockets_have_keepalive() {
    let dir = TempDir::new("keepalive");
    let server = Server::start(&dir.0, &[]);
    let mut client = server.client();
    client.hello("", false);
    let port = server.addr.port();
    let local = client.stream.local_addr().unwrap().port();
    // The server's side of this connection: source port = server port, peer = our port.
    let out = std::process::Command::new("ss")
        .args(["-Htno", "state", "established"])
        .arg(format!("( sport = :{port} and dport = :{local} )"))
        .output()
        .expect("ss (iproute2) is needed for this test");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("timer:(keepalive"),
        "no keepalive timer: {text:?}"
    );
    assert!(server.stop().success());
}

/// Issue 8.6 and 8.10: JSON-lines values keep their JSON type into `--format json` (they were
/// all strings), and a record with no message has no `"message":""`.
#[test]
fn json_lines_keep_value_types_on_disk() {
    let dir = TempDir::new("typed-jsonl");
    let server = Server::start(&dir.0, &["--format", "json"]);
    let mut s = server.connect();
    s.write_all(
        b"{\"msg\":\"typed\",\"n\":3.5,\"ok\":true,\"ctx\":{\"b\":[1,\"x\"],\"a\":1},\"i\":-2,\"none\":null,\"s\":\"3.5\"}\n\
          {\"k\":1}\n",
    )
    .unwrap();
    drop(s);
    let lines = server.wait_lines(2);
    assert!(
        lines[0].ends_with(
            r#","message":"typed","fields":{"n":3.5,"ok":true,"ctx":{"a":1,"b":[1,"x"]},"i":-2,"none":null,"s":"3.5"}}"#
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].ends_with(r#","level":"info","fields":{"k":1}}"#),
        "{}",
        lines[1]
    );
    assert!(server.stop().success());
}

/// Issue 8.6: a pickle's `extra=` values keep their Python type, as the nearest JSON one.
#[test]
fn pickle_extras_keep_value_types_on_disk() {
    let dir = TempDir::new("typed-pickle");
    let server = Server::start(&dir.0, &["--format", "json"]);
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pickle/extra.pickle");
    let mut s = server.connect();
    s.write_all(&std::fs::read(fixture).unwrap()).unwrap();
    drop(s);
    let lines = server.wait_lines(1);
    assert!(
        lines[0].contains(
            r#","fields":{"big":1208925819614629174706176,"flag":true,"ids":[3],"nested":{"k":[1,null]},"nothing":null,"ratio":0.25,"raw":"b'\\x00\\xff\\''","request":"GET /x","tags":["a","b"],"user_id":42}"#
        ),
        "{}",
        lines[0]
    );
    assert!(server.stop().success());
}

/// Issue 8.5 and 8.10: a message cannot forge metadata in a text line, the line reads back as
/// the record that was sent, and a record with no message has no double space.
#[test]
fn text_lines_cannot_be_forged_and_read_back() {
    use logmill::storage::parse::parse_text_line;
    let dir = TempDir::new("forged");
    let server = Server::start(&dir.0, &[]);
    let mut s = server.connect();
    s.write_all(
        b"{\"msg\":\"two\\nlines | host=forged\",\"module\":\"m\",\"host\":\"real\",\"note\":\"a \\\"b\\\" | c=d\"}\n\
          {\"logger\":\"app\",\"k\":1}\n",
    )
    .unwrap();
    drop(s);
    let lines = server.wait_lines(2);
    assert!(
        lines[0].ends_with(
            r#" - - two\nlines \| host=forged | host=real module=m note="a \"b\" \| c=d""#
        ),
        "{}",
        lines[0]
    );
    let parsed = parse_text_line(&lines[0]).unwrap();
    let r = parsed.record();
    assert_eq!(r.body, Body::Message("two\nlines | host=forged".into()));
    assert_eq!((r.host.as_ref(), r.module.as_ref()), ("real", "m"));
    assert_eq!(r.fields, vec![("note".into(), "a \"b\" | c=d".into())]);
    assert!(lines[1].ends_with(" - app | k=1"), "{}", lines[1]);
    assert!(server.stop().success());
}
