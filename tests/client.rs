//! The client library (`logmill::client`) against the real binary: what a program that links
//! the crate sees, through its public API only, and the bytes the server stores for it.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{Server, TempDir, assert_gap_free};
use logmill::client::{Client, ClientOptions, Error};
use logmill::protocol::native::ErrorKind;
use logmill::record::{Body, Level, Record};

fn record(level: Level, text: &str) -> Record<'static> {
    Record {
        level,
        body: Body::Message(text.to_string().into()),
        ..Record::default()
    }
}

/// A batch with acks: every record is acked once, the ack's last sequence number is the last
/// line's, and the lines on disk carry the hello's app and instance and the messages in order.
#[test]
fn a_batch_with_acks_is_stored_as_sent() {
    let dir = TempDir::new("client-batch");
    let server = Server::start(&dir.0, &[]);
    let options = ClientOptions::new("shop")
        .instance("web-1")
        .timeout(common::DEADLINE);
    let mut client = Client::connect(server.addr, &options).expect("connect");
    assert_eq!(client.welcome().max_frame(), 1 << 20);
    assert_eq!(client.peer_addr(), server.addr);

    let batch: Vec<Record<'static>> = (0..100)
        .map(|i| record(Level::Info, &format!("order {i}")))
        .collect();
    client.send_batch(&batch).unwrap();
    client
        .send(&record(Level::Error, "payment failed"))
        .unwrap();
    assert_eq!(client.unacked(), 101);
    let ack = client.wait_acked().unwrap();
    assert_eq!(ack.count(), 101);
    assert_eq!(client.unacked(), 0);
    assert!(matches!(client.read_ack(), Err(Error::NothingToAck)));

    // Acked means written: the files hold every line now, no waiting. No token: the app is
    // shown, the records are in the anonymous bucket (--auth optional).
    let lines = server.lines();
    assert_eq!(lines.len(), 101);
    assert_gap_free(&lines, 1);
    assert_eq!(common::seq_of(&lines[100]), ack.last_seq());
    for (i, line) in lines.iter().take(100).enumerate() {
        let rest = line.split_once(' ').unwrap().1;
        assert_eq!(rest, format!("INFO {} shop/web-1 - order {i}", i + 1));
    }
    assert!(
        lines[100].ends_with(" ERROR 101 shop/web-1 - payment failed"),
        "{}",
        lines[100]
    );
}

/// A second connection's acks count its own records from one, and `read_ack` returns each ack
/// as it comes.
#[test]
fn acks_count_per_connection() {
    let dir = TempDir::new("client-acks");
    let server = Server::start(&dir.0, &[]);
    let options = ClientOptions::new("a").timeout(common::DEADLINE);
    let mut first = Client::connect(server.addr, &options).unwrap();
    first
        .send_batch(&[record(Level::Info, "one"), record(Level::Info, "two")])
        .unwrap();
    assert_eq!(first.wait_acked().unwrap().count(), 2);

    let mut second = Client::connect(server.addr, &options).unwrap();
    second.send(&record(Level::Info, "three")).unwrap();
    let ack = second.read_ack().unwrap();
    assert_eq!((ack.count(), ack.last_seq()), (1, 3));
}

/// The server's error frame comes back as `Error::Refused` with its kind: a batch over the
/// server's --max-frame.
#[test]
fn an_error_frame_is_refused_with_its_kind() {
    let dir = TempDir::new("client-refused");
    let server = Server::start(&dir.0, &["--max-frame", "1024"]);
    let options = ClientOptions::new("big").timeout(common::DEADLINE);
    let mut client = Client::connect(server.addr, &options).unwrap();
    assert_eq!(client.welcome().max_frame(), 1024);
    client
        .send(&record(Level::Info, &"x".repeat(4000)))
        .unwrap();
    match client.wait_acked() {
        Err(Error::Refused {
            kind: Some(ErrorKind::FrameTooLarge),
            message,
        }) => assert!(!message.is_empty()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Nothing listening: `Error::Connect`; acks not asked for: nothing to wait for.
#[test]
fn no_server_and_no_acks() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let options = ClientOptions::new("x").timeout(Duration::from_secs(5));
    assert!(matches!(
        Client::connect(port, &options),
        Err(Error::Connect(_))
    ));

    let dir = TempDir::new("client-no-acks");
    let server = Server::start(&dir.0, &[]);
    let options = ClientOptions::new("quiet")
        .want_acks(false)
        .timeout(common::DEADLINE);
    let mut client = Client::connect(server.addr, &options).unwrap();
    client
        .send(&record(Level::Info, "fire and forget"))
        .unwrap();
    assert!(matches!(client.read_ack(), Err(Error::NothingToAck)));
    assert_eq!(client.wait_acked().unwrap().count(), 0);
    let lines = server.wait_lines(1);
    assert!(
        lines[0].ends_with(" quiet/127.0.0.1 - fire and forget"),
        "{}",
        lines[0]
    );
}
