//! What `logmill bench` sends: the records' messages and their encoding in each wire protocol,
//! as reusable templates. Pure: bytes out, no sockets (the loops are in `native.rs`,
//! `unacked.rs` and `grpc.rs`).
//!
//! Nothing is encoded while the clock runs: a [`Template`] holds one batch of B records encoded
//! once, and where each record's 10-digit counter sits in it, so the same bytes can be sent
//! again and again with new record numbers. That works because every protocol here stores the
//! message text as plain bytes and the counter never changes its length.
//!
//! | protocol | a batch of B records is                                                   |
//! |----------|---------------------------------------------------------------------------|
//! | native   | one length-prefixed Cap'n Proto frame                                     |
//! | syslog   | B RFC 5424 lines, newline framing                                         |
//! | json     | B `{"level":"info","msg":...}` lines                                      |
//! | pickle   | B `SocketHandler` frames: 4-byte BE length, protocol-2 pickle of a dict   |
//! | grpc     | one gRPC message (flag, BE length, prost `PushRequest` of B records)      |
//! | otlp-http | one protobuf `ExportLogsServiceRequest` of B records ([`otlp::request`])  |
//! | otlp-grpc | that request as one gRPC message                                         |

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_pickle::{HashableValue, SerOptions, Value};

use super::args::Proto;
use super::otlp;
use crate::client::framing;
use crate::protocol::grpc::logmill_v1::{LogRecord, PushRequest, log_record};
use crate::protocol::grpc::{self as grpc_wire};
use crate::record::{Body, Record};

/// Digits of the per-connection record counter in each message (`n0000000042`).
pub const COUNTER_DIGITS: usize = 10;

/// The RFC 5424 header of every syslog record: PRI 134 (local0.info), version 1, a fixed
/// timestamp, host, app-name, and no procid, msgid or structured data.
const SYSLOG_HEADER: &str = "<134>1 2026-11-21T00:00:00.000000Z host app - - - ";

/// The logger name every bench record carries (native `logger`, pickle `name`, gRPC `logger`).
pub const LOGGER: &str = "bench";

/// One batch encoded once, and where each record's counter digits sit in it.
pub struct Template {
    /// The whole batch as it goes on the wire (length prefixes included).
    pub frame: Vec<u8>,
    pub records: u64,
    /// Offset in `frame` of each record's counter digits; empty when `--size` is too short to
    /// hold the counter (then every batch repeats the same records).
    pub counters: Vec<usize>,
}

impl Template {
    /// Encodes `records` records of connection `conn` in `proto`, each with a `size`-byte
    /// message.
    pub fn new(proto: Proto, conn: usize, records: usize, size: usize) -> Template {
        let messages: Vec<String> = (0..records as u64)
            .map(|n| record_message(conn, n, size))
            .collect();
        let mut frame = Vec::new();
        match proto {
            // WebSocket sends the native frame's payload, without its length prefix.
            Proto::Native | Proto::WebSocket => native_frame(&messages, &mut frame),
            Proto::Syslog => messages.iter().for_each(|m| syslog_line(m, &mut frame)),
            // `--proto http` sends no records (`bench::run` takes it with `--idle` only); its
            // template, never sent, is JSON lines.
            Proto::Json | Proto::Http => messages.iter().for_each(|m| json_line(m, &mut frame)),
            Proto::Pickle => {
                let created = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                messages
                    .iter()
                    .for_each(|m| pickle_frame(m, created, &mut frame));
            }
            // A gRPC message with its 5-byte prefix is also a gRPC-Web binary body.
            Proto::Grpc | Proto::GrpcWeb => grpc_message(&messages, &mut frame),
            Proto::OtlpHttp => frame = otlp::request(conn, &messages, LOGGER, unix_nanos()),
            Proto::OtlpGrpc => {
                grpc_wire::encode_message(
                    &otlp::request(conn, &messages, LOGGER, unix_nanos()),
                    &mut frame,
                );
            }
        }
        let counters = locate_counters(&frame, conn, records, size);
        Template {
            frame,
            records: records as u64,
            counters,
        }
    }

    /// Numbers the records `first`, `first + 1`, ...: the only per-record work while the clock
    /// runs, a few byte stores each.
    pub fn stamp(&mut self, first: u64) {
        for (j, &at) in self.counters.iter().enumerate() {
            write_digits(&mut self.frame[at..at + COUNTER_DIGITS], first + j as u64);
        }
    }
}

/// Where each record's counter digits are in `frame`, by record; empty if any is missing.
///
/// The encodings need not lay the texts out in order (Cap'n Proto spills a large message into
/// a new segment while small texts still fill old ones), so this scans the frame once for the
/// connection's `c00012 n` markers and reads, from the digits after each, which record the
/// counter belongs to.
fn locate_counters(frame: &[u8], conn: usize, records: usize, size: usize) -> Vec<usize> {
    let prefix = message_prefix(conn, 0);
    if size < prefix.len() {
        return Vec::new();
    }
    let marker = &prefix.as_bytes()[..prefix.len() - COUNTER_DIGITS - 1];
    let mut counters = vec![usize::MAX; records];
    let mut from = 0;
    while let Some(at) = find(&frame[from..], marker) {
        let digits = from + at + marker.len();
        from = digits;
        let Some(j) = read_counter(&frame[digits..]) else {
            continue;
        };
        if let Some(slot) = counters.get_mut(j) {
            *slot = digits;
        }
    }
    if counters.contains(&usize::MAX) {
        // Some record was not found: send as encoded.
        counters.clear();
    }
    counters
}

/// A native batch frame: one Cap'n Proto message holding every record, length prefix included.
fn native_frame(messages: &[String], out: &mut Vec<u8>) {
    let batch: Vec<Record<'_>> = messages
        .iter()
        .map(|m| Record {
            body: Body::Message(Cow::Borrowed(m.as_str())),
            logger: Cow::Borrowed(LOGGER),
            ..Record::default()
        })
        .collect();
    framing::encode_batch(&batch, out);
}

/// One RFC 5424 line with `message` as its MSG, newline-terminated.
pub fn syslog_line(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(SYSLOG_HEADER.as_bytes());
    out.extend_from_slice(message.as_bytes());
    out.push(b'\n');
}

/// One JSON line, `{"level":"info","msg":"..."}`, the message escaped as JSON requires.
pub fn json_line(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"level\":\"info\",\"msg\":");
    out.extend_from_slice(serde_json::Value::from(message).to_string().as_bytes());
    out.extend_from_slice(b"}\n");
}

/// One Python `SocketHandler` frame: the 4-byte big-endian length, then a protocol-2 pickle of
/// the attribute dict a `LogRecord` would have (`msg`, `levelno` 20, `levelname`, `name`,
/// `created`, Unix time in seconds).
///
/// # Panics
/// Never in practice: `serde-pickle` fails only on values it cannot pickle, and a dict of
/// strings and numbers is not one; a pickle over 4 GiB would need a message that large.
pub fn pickle_frame(message: &str, created: f64, out: &mut Vec<u8>) {
    let text = |s: &str| Value::String(s.to_string());
    let key = |s: &str| HashableValue::String(s.to_string());
    let dict = BTreeMap::from([
        (key("msg"), text(message)),
        (key("levelno"), Value::I64(20)),
        (key("levelname"), text("INFO")),
        (key("name"), text(LOGGER)),
        (key("created"), Value::F64(created)),
    ]);
    let pickle = serde_pickle::value_to_vec(&Value::Dict(dict), SerOptions::new().proto_v2())
        .expect("a dict of strings and numbers always pickles");
    let len = u32::try_from(pickle.len()).expect("a pickle under 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&pickle);
}

/// One gRPC message (compressed flag 0, big-endian length) holding a `PushRequest` of one
/// `LogRecord` per message, at level info with logger [`LOGGER`].
pub fn grpc_message(messages: &[String], out: &mut Vec<u8>) {
    let request = PushRequest {
        records: messages
            .iter()
            .map(|m| LogRecord {
                level: grpc_wire::level_to_wire(crate::record::Level::Info),
                body: Some(log_record::Body::Message(m.clone())),
                logger: LOGGER.to_string(),
                ..LogRecord::default()
            })
            .collect(),
    };
    grpc_wire::encode_message(&grpc_wire::encode_push_request(&request), out);
}

/// Nanoseconds since the Unix epoch now (0 if the clock is before it).
fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The record number in `COUNTER_DIGITS` digits and a space at the start of `bytes`.
pub fn read_counter(bytes: &[u8]) -> Option<usize> {
    let (digits, rest) = bytes.split_at_checked(COUNTER_DIGITS)?;
    if rest.first() != Some(&b' ') || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Writes `n` in decimal into `out`, zero-padded on the left; digits that do not fit are dropped.
pub fn write_digits(out: &mut [u8], mut n: u64) {
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// `c00012 n0000000042 `: which connection sent the record and its number there, so a stored
/// line can be traced back (and gaps or duplicates found) by reading the files.
pub fn message_prefix(conn: usize, n: u64) -> String {
    format!("c{conn:05} n{n:0width$} ", width = COUNTER_DIGITS)
}

/// The message of record `n` of connection `conn`: its prefix, then filler, `size` bytes in all
/// (the prefix is cut if `size` is shorter).
pub fn record_message(conn: usize, n: u64, size: usize) -> String {
    const FILLER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut message = message_prefix(conn, n).into_bytes();
    message.truncate(size);
    while message.len() < size {
        let take = (size - message.len()).min(FILLER.len());
        message.extend_from_slice(&FILLER[..take]);
    }
    // Only ASCII went in.
    String::from_utf8(message).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{self, Frame};
    use crate::protocol::native;
    use crate::protocol::otlp as otlp_wire;
    use crate::protocol::{jsonl, lines, pickle, syslog};
    use crate::record::Level;

    fn text(record: &Record<'_>) -> String {
        match &record.body {
            Body::Message(m) => m.to_string(),
            Body::Json(j) => panic!("json body {j}"),
        }
    }

    #[test]
    fn record_messages_have_their_size() {
        let m = record_message(12, 42, 200);
        assert_eq!(m.len(), 200);
        assert!(m.starts_with("c00012 n0000000042 abcdef"), "{m}");
        assert_eq!(record_message(12, 42, 10), "c00012 n00");
        assert_eq!(record_message(0, 0, 0), "");
        let long = record_message(1, 2, 100);
        assert_eq!(&long[19..55], "abcdefghijklmnopqrstuvwxyz0123456789");
        assert_eq!(&long[55..60], "abcde");
    }

    /// The messages of a batch, decoded with the server's own decoders.
    fn messages_of(proto: Proto, mut batch: &[u8]) -> Vec<String> {
        let mut messages = Vec::new();
        match proto {
            Proto::Native | Proto::WebSocket => {
                let Frame::Complete { payload, .. } = frame::decode(batch, u32::MAX).unwrap()
                else {
                    panic!("incomplete frame")
                };
                native::decode_client_frame(payload, |r| messages.push(text(&r))).unwrap();
            }
            Proto::Syslog | Proto::Json | Proto::Http => {
                while !batch.is_empty() {
                    let lines::Line::Complete { line, consumed } = lines::next_line(batch, 1 << 20)
                    else {
                        panic!("no whole line")
                    };
                    let record = if proto == Proto::Syslog {
                        syslog::parse_message(line).into_static()
                    } else {
                        jsonl::parse_line(line)
                    };
                    assert!(!record.parse_error, "{record:?}");
                    assert_eq!(record.level, Level::Info);
                    messages.push(text(&record));
                    batch = &batch[consumed..];
                }
            }
            Proto::Pickle => {
                while !batch.is_empty() {
                    let Frame::Complete { payload, consumed } =
                        frame::decode(batch, u32::MAX).unwrap()
                    else {
                        panic!("incomplete frame")
                    };
                    let record = pickle::decode_record(payload).unwrap();
                    assert_eq!(record.level, Level::Info);
                    assert_eq!(record.logger, LOGGER);
                    assert!(record.timestamp_ns > 0);
                    messages.push(text(&record));
                    batch = &batch[consumed..];
                }
            }
            Proto::OtlpGrpc | Proto::OtlpHttp => {
                let mut body = batch;
                if proto == Proto::OtlpGrpc {
                    let grpc_wire::Message::Complete {
                        compressed: false,
                        payload,
                        consumed,
                    } = grpc_wire::decode_message(batch, usize::MAX).unwrap()
                    else {
                        panic!("not one uncompressed message")
                    };
                    assert_eq!(consumed, batch.len());
                    body = payload;
                }
                let limits = otlp_wire::Limits::new(usize::MAX);
                let request = otlp_wire::decode_protobuf(body, &limits).unwrap();
                let export = otlp_wire::to_records(&request);
                assert_eq!(export.rejected, 0);
                for record in &export.records {
                    assert_eq!(record.level, Level::Info);
                    assert_eq!(record.service, otlp::SERVICE);
                    assert_eq!(record.logger, LOGGER);
                    assert!(record.timestamp_ns > 0);
                    messages.push(text(record));
                }
            }
            Proto::Grpc | Proto::GrpcWeb => {
                let grpc_wire::Message::Complete {
                    compressed,
                    payload,
                    consumed,
                } = grpc_wire::decode_message(batch, usize::MAX).unwrap()
                else {
                    panic!("incomplete message")
                };
                assert!(!compressed);
                assert_eq!(consumed, batch.len());
                let request = grpc_wire::decode_push_request(payload).unwrap();
                for r in &request.records {
                    let record = grpc_wire::to_record(r);
                    assert_eq!(record.level, Level::Info);
                    messages.push(text(&record));
                }
            }
        }
        messages
    }

    const PROTOS: [Proto; 7] = [
        Proto::Native,
        Proto::Syslog,
        Proto::Json,
        Proto::Pickle,
        Proto::Grpc,
        Proto::OtlpGrpc,
        Proto::OtlpHttp,
    ];

    #[test]
    fn stamped_templates_number_their_records() {
        for proto in PROTOS {
            // Sizes and counts that make multi-segment Cap'n Proto messages, where text is not
            // laid out in order.
            for size in [19, 40, 60, 200, 1000] {
                for records in [1, 5, 100, 256, 1000] {
                    let mut template = Template::new(proto, 3, records, size);
                    assert_eq!(
                        template.counters.len(),
                        records,
                        "{proto:?}: {records} of {size} bytes"
                    );
                    for first in [1000, 7_654_321] {
                        template.stamp(first);
                        let expected: Vec<String> = (0..records as u64)
                            .map(|j| record_message(3, first + j, size))
                            .collect();
                        assert_eq!(messages_of(proto, &template.frame), expected, "{proto:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn syslog_lines_are_rfc5424() {
        let mut out = Vec::new();
        syslog_line("hello", &mut out);
        assert_eq!(
            out,
            b"<134>1 2026-11-21T00:00:00.000000Z host app - - - hello\n"
        );
        let record = syslog::parse_message(&out[..out.len() - 1]);
        assert_eq!(text(&record), "hello");
        assert_eq!(record.host, "host");
        assert_eq!(record.service, "app");
        assert_eq!(record.timestamp_ns, 1_795_219_200_000_000_000);
    }

    #[test]
    fn json_lines_escape_their_message() {
        let mut out = Vec::new();
        json_line("say \"hi\"", &mut out);
        assert_eq!(out, b"{\"level\":\"info\",\"msg\":\"say \\\"hi\\\"\"}\n");
        let record = jsonl::parse_line(&out[..out.len() - 1]);
        assert_eq!(text(&record), "say \"hi\"");
        assert!(record.fields.is_empty(), "{:?}", record.fields);
    }

    #[test]
    fn pickles_are_socket_handler_frames() {
        let mut out = Vec::new();
        pickle_frame("hello", 1_700_000_000.5, &mut out);
        assert_eq!(out[4..6], [0x80, 2], "protocol 2");
        assert_eq!(
            crate::protocol::detect::detect(&out),
            crate::protocol::detect::Detect::Decided {
                protocol: crate::protocol::detect::Protocol::Pickle,
                consumed: 0
            }
        );
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len, out.len() - 4);
        let record = pickle::decode_record(&out[4..]).unwrap();
        assert_eq!(text(&record), "hello");
        assert_eq!(record.logger, "bench");
        assert_eq!(record.timestamp_ns, 1_700_000_000_500_000_000);
        assert!(record.fields.is_empty(), "{:?}", record.fields);
    }

    #[test]
    fn grpc_messages_decode_with_prost() {
        let mut out = Vec::new();
        grpc_message(&["a".to_string(), "b".to_string()], &mut out);
        assert_eq!(out[0], 0, "not compressed");
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len, out.len() - 5);
        let request = grpc_wire::decode_push_request(&out[5..]).unwrap();
        assert_eq!(request.records.len(), 2);
        assert_eq!(
            request.records[1].body,
            Some(log_record::Body::Message("b".into()))
        );
        assert_eq!(request.records[0].logger, "bench");
    }

    #[test]
    fn counters_are_read_only_when_well_formed() {
        assert_eq!(read_counter(b"0000000042 abc"), Some(42));
        assert_eq!(read_counter(b"0000000042x"), None);
        assert_eq!(read_counter(b"00000000x2 "), None);
        assert_eq!(read_counter(b"0000000042"), None);
    }

    #[test]
    fn short_messages_are_sent_unnumbered() {
        for proto in PROTOS {
            let mut template = Template::new(proto, 3, 4, 8);
            assert!(template.counters.is_empty());
            template.stamp(99);
            assert_eq!(messages_of(proto, &template.frame), vec!["c00003 n"; 4]);
        }
    }

    #[test]
    fn digits_are_zero_padded() {
        let mut out = [b'x'; 10];
        write_digits(&mut out, 42);
        assert_eq!(&out, b"0000000042");
        let mut short = [0u8; 2];
        write_digits(&mut short, 1234);
        assert_eq!(&short, b"34");
    }
}
