//! gRPC's wire pieces, pure: the HTTP/2 preface test, the 5-byte message prefix, gzip, the
//! protobuf messages of `proto/` and their conversion to [`Record`], `grpc-timeout`, status codes.
//!
//! What this file does not hold: HTTP/2 itself (the `h2` crate), and anything that touches a
//! socket or a clock; `server/grpc.rs` drives calls with these functions.
//!
//! A gRPC message on the wire (the body of a request or response, after HTTP/2 framing):
//!
//! ```text
//! +------------+------------------+---------------------+
//! | compressed | length (u32, BE) | payload             |
//! | 1 byte 0/1 | 4 bytes          | `length` bytes      |
//! +------------+------------------+---------------------+
//! ```
//!
//! The length is checked against the limit at the prefix, before a byte of payload is buffered
//! (as `protocol::frame` does for native frames), and a compressed payload is inflated through a
//! reader that stops at the same limit, so neither a prefix nor a gzip bomb can make the server
//! allocate more than the limit.
//!
//! The generated types ([`logmill_v1`], [`health_v1`]) are committed, with a drift test
//! (`codegen-check/tests/grpc_codegen_drift.rs`) that regenerates them from `proto/` with pure-Rust tools.

#[allow(clippy::all, missing_docs)]
#[rustfmt::skip]
pub mod health_v1;
#[allow(clippy::all, missing_docs)]
#[rustfmt::skip]
pub mod logmill_v1;

use std::borrow::Cow;
use std::fmt;
use std::io::Read as _;
use std::time::Duration;

use prost::Message as _;

use crate::record::{Body, Level, Record, Value};
use logmill_v1::{LogRecord, PushRequest, log_record};

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113, section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The first bytes of a connection to the gRPC port, judged against [`PREFACE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preface {
    /// The whole preface: HTTP/2, hand the connection to `h2` (bytes included).
    Http2,
    /// A prefix of the preface so far: wait for more.
    Incomplete,
    /// Anything else: HTTP/1.1, or not HTTP at all (the server's HTTP/1.1 session answers it:
    /// `server::session::http`).
    Other,
}

/// Judges the bytes received so far; decides as soon as one byte differs from the preface.
pub fn detect_preface(buf: &[u8]) -> Preface {
    let common = buf.len().min(PREFACE.len());
    if buf[..common] != PREFACE[..common] {
        Preface::Other
    } else if common == PREFACE.len() {
        Preface::Http2
    } else {
        Preface::Incomplete
    }
}

// ---------------------------------------------------------------------------------------------
// Message framing
// ---------------------------------------------------------------------------------------------

/// Bytes in a message prefix: the compressed flag and the big-endian length.
pub const PREFIX_LEN: usize = 5;

/// What [`decode_message`] found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A whole message and how many bytes it took (prefix included).
    Complete {
        compressed: bool,
        payload: &'a [u8],
        consumed: usize,
    },
    /// More bytes needed; `needed` is the message's total size once its prefix is known.
    Incomplete { needed: Option<usize> },
}

/// A prefix that cannot start a valid message; nothing after it can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// The announced length is over the limit (`RESOURCE_EXHAUSTED`).
    TooLarge { len: u32, max: usize },
    /// The flag byte is neither 0 nor 1 (`INTERNAL`: not gRPC).
    BadFlag(u8),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes is over the limit of {max} bytes")
            }
            MessageError::BadFlag(flag) => write!(
                f,
                "message prefix has compressed flag {flag}; only 0 and 1 are valid"
            ),
        }
    }
}

impl std::error::Error for MessageError {}

/// Decodes the message at the start of `buf`, refusing payloads over `max` bytes.
///
/// # Errors
/// [`MessageError`] when the prefix is invalid or announces more than `max`.
pub fn decode_message(buf: &[u8], max: usize) -> Result<Message<'_>, MessageError> {
    let Some(prefix) = buf.first_chunk::<PREFIX_LEN>() else {
        return Ok(Message::Incomplete { needed: None });
    };
    let compressed = match prefix[0] {
        0 => false,
        1 => true,
        flag => return Err(MessageError::BadFlag(flag)),
    };
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
    let too_large = MessageError::TooLarge { len, max };
    let len_usize = usize::try_from(len).map_err(|_| too_large)?;
    if len_usize > max {
        return Err(too_large);
    }
    let total = len_usize.checked_add(PREFIX_LEN).ok_or(too_large)?;
    match buf.get(PREFIX_LEN..total) {
        Some(payload) => Ok(Message::Complete {
            compressed,
            payload,
            consumed: total,
        }),
        None => Ok(Message::Incomplete {
            needed: Some(total),
        }),
    }
}

/// Appends one uncompressed message (prefix and payload) to `out`.
///
/// # Panics
/// If `payload` is 4 GiB or more, which no caller produces (replies are a few bytes).
pub fn encode_message(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("gRPC message over 4 GiB");
    out.push(0);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Cuts a request body, arriving in DATA chunks of any size, into messages.
///
/// Messages that lie whole inside a chunk are handed out as slices of it (no copy); only a
/// message split across chunks is copied into `partial`, which grows with what actually arrived
/// (never to what a prefix announced) and is freed once the message is complete.
#[derive(Debug, Default)]
pub struct Deframer {
    partial: Vec<u8>,
}

/// Why [`Deframer::feed`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedError<E> {
    /// The stream is not valid gRPC framing.
    Message(MessageError),
    /// The handler refused a message.
    Handler(E),
}

impl Deframer {
    /// Hands every message completed by `chunk` to `on_message(compressed, payload)`, in order.
    ///
    /// # Errors
    /// The first framing error, or the first error `on_message` returned; the deframer must not
    /// be fed again after one.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        max: usize,
        mut on_message: impl FnMut(bool, &[u8]) -> Result<(), E>,
    ) -> Result<(), FeedError<E>> {
        let mut rest = chunk;
        if !self.partial.is_empty() {
            // Complete the split message first: take only what it still needs from the chunk.
            let take = match decode_message(&self.partial, max).map_err(FeedError::Message)? {
                Message::Incomplete { needed: Some(n) } => (n - self.partial.len()).min(rest.len()),
                Message::Incomplete { needed: None } => {
                    (PREFIX_LEN - self.partial.len()).min(rest.len())
                }
                Message::Complete { .. } => unreachable!("a complete message is never kept"),
            };
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            match decode_message(&self.partial, max).map_err(FeedError::Message)? {
                Message::Complete {
                    compressed,
                    payload,
                    ..
                } => {
                    let result = on_message(compressed, payload);
                    self.partial = Vec::new();
                    result.map_err(FeedError::Handler)?;
                }
                // Either the chunk is used up, or only the prefix was completed: go round again.
                Message::Incomplete { .. } if rest.is_empty() => return Ok(()),
                Message::Incomplete { .. } => return self.feed(rest, max, on_message),
            }
        }
        loop {
            match decode_message(rest, max).map_err(FeedError::Message)? {
                Message::Complete {
                    compressed,
                    payload,
                    consumed,
                } => {
                    on_message(compressed, payload).map_err(FeedError::Handler)?;
                    rest = &rest[consumed..];
                }
                Message::Incomplete { .. } => {
                    self.partial.extend_from_slice(rest);
                    return Ok(());
                }
            }
        }
    }

    /// Bytes of an unfinished message: a body that ends with some is truncated.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------------------------

/// A request's `grpc-encoding`: how its compressed messages are compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    /// Named by the client, not supported here; a compressed message is `UNIMPLEMENTED`.
    Unsupported(String),
}

/// What the server tells clients it can inflate (`grpc-accept-encoding`).
pub const ACCEPT_ENCODING: &str = "identity,gzip";

impl Encoding {
    /// From the `grpc-encoding` header value; absent means identity.
    pub fn from_header(value: Option<&[u8]>) -> Encoding {
        match value {
            None | Some(b"identity") => Encoding::Identity,
            Some(b"gzip") => Encoding::Gzip,
            Some(other) => Encoding::Unsupported(String::from_utf8_lossy(other).into_owned()),
        }
    }
}

/// A compressed payload that cannot be inflated within the limit.
#[derive(Debug)]
pub enum InflateError {
    /// More than `max` bytes once inflated (`RESOURCE_EXHAUSTED`).
    TooLarge { max: usize },
    /// Not valid gzip (`INTERNAL`).
    Corrupt(std::io::Error),
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InflateError::TooLarge { max } => write!(
                f,
                "gzip message inflates to more than the limit of {max} bytes"
            ),
            InflateError::Corrupt(e) => write!(f, "gzip message cannot be inflated: {e}"),
        }
    }
}

impl std::error::Error for InflateError {}

/// Inflates a gzip payload into `out` (cleared first), stopping at `max` bytes of output.
///
/// # Errors
/// [`InflateError::TooLarge`] past `max` (a "gzip bomb" costs at most `max` bytes), or
/// [`InflateError::Corrupt`].
pub fn gunzip(payload: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), InflateError> {
    out.clear();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::GzDecoder::new(payload)
        .take(limit)
        .read_to_end(out)
        .map_err(InflateError::Corrupt)?;
    if out.len() > max {
        out.clear();
        return Err(InflateError::TooLarge { max });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// A protobuf `Level` value (an `i32` on the wire) on logmill's scale; unspecified and values
/// from a newer schema are `info`, as in the native protocol.
pub fn level_from_wire(value: i32) -> Level {
    use logmill_v1::Level as W;
    match W::try_from(value) {
        Ok(W::Trace) => Level::Trace,
        Ok(W::Debug) => Level::Debug,
        Ok(W::Notice) => Level::Notice,
        Ok(W::Warning) => Level::Warning,
        Ok(W::Error) => Level::Error,
        Ok(W::Critical) => Level::Critical,
        Ok(W::Alert) => Level::Alert,
        Ok(W::Emergency) => Level::Emergency,
        Ok(W::Info | W::Unspecified) | Err(_) => Level::Info,
    }
}

/// The protobuf `Level` value of `level`.
pub fn level_to_wire(level: Level) -> i32 {
    use logmill_v1::Level as W;
    let wire = match level {
        Level::Trace => W::Trace,
        Level::Debug => W::Debug,
        Level::Info => W::Info,
        Level::Notice => W::Notice,
        Level::Warning => W::Warning,
        Level::Error => W::Error,
        Level::Critical => W::Critical,
        Level::Alert => W::Alert,
        Level::Emergency => W::Emergency,
    };
    wire as i32
}

/// Decodes a `PushRequest` message payload (after decompression).
///
/// # Errors
/// prost's error when the bytes are not a valid `PushRequest` (bad wire types, lengths past the
/// end, invalid UTF-8 in a string).
pub fn decode_push_request(payload: &[u8]) -> Result<PushRequest, prost::DecodeError> {
    PushRequest::decode(payload)
}

/// Decodes a `LogRecord` message payload (the request of `LogMessage`), after decompression.
///
/// # Errors
/// prost's error when the bytes are not a valid `LogRecord`.
pub fn decode_log_record(payload: &[u8]) -> Result<LogRecord, prost::DecodeError> {
    LogRecord::decode(payload)
}

/// Encodes a `PushRequest` payload (clients, tests, fuzzing); frame it with [`encode_message`].
pub fn encode_push_request(request: &PushRequest) -> Vec<u8> {
    request.encode_to_vec()
}

/// Views a decoded `LogRecord` as a [`Record`] that borrows its strings (no copies).
///
/// prost has already validated UTF-8 (a `string` field with invalid UTF-8 fails the whole
/// message). The map's entries come sorted by key (`BTreeMap`).
pub fn to_record(r: &LogRecord) -> Record<'_> {
    let body = match &r.body {
        Some(log_record::Body::Message(m)) => Body::Message(Cow::Borrowed(m)),
        Some(log_record::Body::Json(j)) => Body::Json(Cow::Borrowed(j)),
        None => Body::Message(Cow::Borrowed("")),
    };
    Record {
        timestamp_ns: r.timestamp_ns,
        level: level_from_wire(r.level),
        body,
        logger: Cow::Borrowed(&r.logger),
        host: Cow::Borrowed(&r.host),
        service: Cow::Borrowed(&r.service),
        module: Cow::Borrowed(&r.module),
        file: Cow::Borrowed(&r.file),
        line: r.line,
        function: Cow::Borrowed(&r.function),
        process_id: r.process_id,
        process_name: Cow::Borrowed(&r.process_name),
        thread_id: r.thread_id,
        thread_name: Cow::Borrowed(&r.thread_name),
        stack_trace: Cow::Borrowed(&r.stack_trace),
        fields: r
            .fields
            .iter()
            .map(|(k, v)| (Cow::Borrowed(k.as_str()), Value::from(v.as_str())))
            .collect(),
        parse_error: false,
        truncated: false,
    }
}

/// The `LogRecord` a client sends for `r` (clients, tests, fuzzing). A key given twice keeps
/// its last value, as a protobuf map does.
pub fn from_record(r: &Record<'_>) -> LogRecord {
    LogRecord {
        timestamp_ns: r.timestamp_ns,
        level: level_to_wire(r.level),
        body: Some(match &r.body {
            Body::Message(m) => log_record::Body::Message(m.to_string()),
            Body::Json(j) => log_record::Body::Json(j.to_string()),
        }),
        logger: r.logger.to_string(),
        host: r.host.to_string(),
        service: r.service.to_string(),
        module: r.module.to_string(),
        file: r.file.to_string(),
        line: r.line,
        function: r.function.to_string(),
        process_id: r.process_id,
        process_name: r.process_name.to_string(),
        thread_id: r.thread_id,
        thread_name: r.thread_name.to_string(),
        stack_trace: r.stack_trace.to_string(),
        fields: r
            .fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.text().into_owned()))
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata: deadlines and status
// ---------------------------------------------------------------------------------------------

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits and a unit (`H`, `M`, `S`, `m`, `u`,
/// `n`), as the gRPC HTTP/2 protocol defines it. `None` for anything else.
pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 99,999,999: no overflow in any unit below.
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status codes this server sends (`grpc-status`), with their numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl Code {
    /// The `grpc-status` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "0",
            Code::Cancelled => "1",
            Code::InvalidArgument => "3",
            Code::DeadlineExceeded => "4",
            Code::NotFound => "5",
            Code::ResourceExhausted => "8",
            Code::Unimplemented => "12",
            Code::Internal => "13",
            Code::Unavailable => "14",
            Code::Unauthenticated => "16",
        }
    }
}

/// A call's outcome: a code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub message: String,
}

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
        }
    }
}

/// Percent-encodes a `grpc-message`: every byte outside printable ASCII, and `%`, becomes
/// `%XX`, as the gRPC HTTP/2 protocol requires (header values are ASCII).
pub fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`percent_encode`] (clients, tests); malformed escapes are kept as they are.
pub fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn message(compressed: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_message(payload, &mut out);
        out[0] = u8::from(compressed);
        out
    }

    #[test]
    fn preface_at_every_split_point() {
        for cut in 0..PREFACE.len() {
            assert_eq!(
                detect_preface(&PREFACE[..cut]),
                Preface::Incomplete,
                "{cut}"
            );
        }
        assert_eq!(detect_preface(PREFACE), Preface::Http2);
        let mut more = PREFACE.to_vec();
        more.extend_from_slice(b"\x00\x00\x00\x04");
        assert_eq!(detect_preface(&more), Preface::Http2);
        assert_eq!(detect_preface(b"GET / HTTP/1.1\r\n"), Preface::Other);
        assert_eq!(detect_preface(b"PRI * HTTP/1.1"), Preface::Other);
        assert_eq!(detect_preface(b"\x00\x00"), Preface::Other);
    }

    #[test]
    fn message_at_every_split_point() {
        let buf = message(false, b"hello");
        for cut in 0..buf.len() {
            let needed = if cut < PREFIX_LEN { None } else { Some(10) };
            assert_eq!(
                decode_message(&buf[..cut], 100),
                Ok(Message::Incomplete { needed }),
                "cut {cut}"
            );
        }
        assert_eq!(
            decode_message(&buf, 100),
            Ok(Message::Complete {
                compressed: false,
                payload: b"hello",
                consumed: 10
            })
        );
    }

    #[test]
    fn pipelined_and_empty_messages() {
        let mut buf = message(false, b"");
        buf.extend(message(true, b"ab"));
        let Ok(Message::Complete {
            payload, consumed, ..
        }) = decode_message(&buf, 10)
        else {
            panic!()
        };
        assert_eq!((payload, consumed), (&b""[..], 5));
        assert_eq!(
            decode_message(&buf[5..], 10),
            Ok(Message::Complete {
                compressed: true,
                payload: b"ab",
                consumed: 7
            })
        );
    }

    #[test]
    fn oversized_and_bad_prefixes_are_rejected_at_the_prefix() {
        assert_eq!(
            decode_message(&[0, 0, 0, 0, 11], 10),
            Err(MessageError::TooLarge { len: 11, max: 10 })
        );
        assert_eq!(
            decode_message(&[0, 0xff, 0xff, 0xff, 0xff], usize::MAX),
            Ok(Message::Incomplete {
                needed: Some(0xffff_ffff + 5)
            })
        );
        assert_eq!(
            decode_message(&[2, 0, 0, 0, 0], 10),
            Err(MessageError::BadFlag(2))
        );
    }

    /// Feeds `stream` in chunks of `size`, collecting (compressed, payload).
    fn deframe(stream: &[u8], size: usize, max: usize) -> Result<Vec<(bool, Vec<u8>)>, String> {
        let mut deframer = Deframer::default();
        let mut got = Vec::new();
        for chunk in stream.chunks(size.max(1)) {
            deframer
                .feed(chunk, max, |c, p| {
                    got.push((c, p.to_vec()));
                    Ok::<(), ()>(())
                })
                .map_err(|e| format!("{e:?}"))?;
        }
        if deframer.pending() > 0 {
            return Err(format!("{} bytes pending", deframer.pending()));
        }
        Ok(got)
    }

    #[test]
    fn deframer_gives_the_same_messages_for_every_chunking() {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (i, len) in [0usize, 1, 4, 5, 6, 300, 17, 0].into_iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            stream.extend(message(i % 2 == 1, &payload));
            expected.push((i % 2 == 1, payload));
        }
        for size in 1..=stream.len() {
            assert_eq!(
                deframe(&stream, size, 1000).unwrap(),
                expected,
                "size {size}"
            );
        }
    }

    #[test]
    fn deframer_reports_truncation_and_limits() {
        let buf = message(false, b"0123456789");
        assert_eq!(
            deframe(&buf[..8], 3, 100),
            Err("8 bytes pending".to_string())
        );
        assert!(deframe(&buf, 2, 9).unwrap_err().contains("TooLarge"));
        let mut deframer = Deframer::default();
        assert_eq!(
            deframer.feed(&buf, 100, |_, _| Err("no")),
            Err(FeedError::Handler("no"))
        );
    }

    #[test]
    fn encodings() {
        assert_eq!(Encoding::from_header(None), Encoding::Identity);
        assert_eq!(Encoding::from_header(Some(b"gzip")), Encoding::Gzip);
        assert_eq!(
            Encoding::from_header(Some(b"snappy")),
            Encoding::Unsupported("snappy".into())
        );
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_is_bounded() {
        let data = vec![b'a'; 100_000];
        let packed = gzip(&data);
        assert!(packed.len() < 1000, "a bomb: small in, large out");
        let mut out = Vec::new();
        gunzip(&packed, 100_000, &mut out).unwrap();
        assert_eq!(out, data);
        assert!(matches!(
            gunzip(&packed, 99_999, &mut out),
            Err(InflateError::TooLarge { max: 99_999 })
        ));
        assert!(out.is_empty());
        assert!(matches!(
            gunzip(b"not gzip", 100, &mut out),
            Err(InflateError::Corrupt(_))
        ));
    }

    fn sample() -> Record<'static> {
        Record {
            timestamp_ns: 1_700_000_000_123_456_789,
            level: Level::Warning,
            body: Body::Json(r#"{"a":1}"#.into()),
            logger: "app.disk".into(),
            host: "web-1".into(),
            service: "billing".into(),
            module: "disk".into(),
            file: "disk.py".into(),
            line: 42,
            function: "check".into(),
            process_id: 7,
            process_name: "python".into(),
            thread_id: 99,
            thread_name: "main".into(),
            stack_trace: "Traceback".into(),
            fields: vec![("a".into(), "1".into()), ("b".into(), "x y".into())],
            parse_error: false,
            truncated: false,
        }
    }

    #[test]
    fn record_round_trip_through_protobuf() {
        let request = PushRequest {
            records: vec![from_record(&sample()), LogRecord::default()],
        };
        let decoded = PushRequest::decode(request.encode_to_vec().as_slice()).unwrap();
        assert_eq!(to_record(&decoded.records[0]), sample());
        let empty = to_record(&decoded.records[1]);
        assert_eq!(empty.level, Level::Info);
        assert_eq!(empty.body, Body::Message("".into()));
    }

    #[test]
    fn fields_are_sorted_by_key() {
        let mut r = sample();
        r.fields = vec![("z".into(), "1".into()), ("a".into(), "2".into())];
        let keys: Vec<String> = to_record(&from_record(&r))
            .fields
            .iter()
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(keys, ["a", "z"]);
    }

    #[test]
    fn levels_match_the_capnp_values() {
        // The same numbers as `Level` in schema/logmill.capnp.
        let all = [
            (1, Level::Trace),
            (2, Level::Debug),
            (3, Level::Info),
            (4, Level::Notice),
            (5, Level::Warning),
            (6, Level::Error),
            (7, Level::Critical),
            (8, Level::Alert),
            (9, Level::Emergency),
        ];
        for (wire, level) in all {
            assert_eq!(level_from_wire(wire), level);
            assert_eq!(level_to_wire(level), wire);
        }
        assert_eq!(level_from_wire(0), Level::Info);
        assert_eq!(level_from_wire(10), Level::Info);
        assert_eq!(level_from_wire(-1), Level::Info);
    }

    #[test]
    fn invalid_protobuf_is_an_error() {
        // Field 1 (records), length 5, but only 2 bytes follow.
        assert!(PushRequest::decode(&b"\x0a\x05\x08\x01"[..]).is_err());
        // A string field holding invalid UTF-8.
        assert!(PushRequest::decode(&b"\x0a\x03\x2a\x01\xff"[..]).is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout(b"1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout(b"5u"), Some(Duration::from_micros(5)));
        assert_eq!(
            parse_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [
            &b""[..],
            b"S",
            b"1",
            b"123456789S",
            b"1s",
            b"-1S",
            b"1.5S",
            b" 1S",
        ] {
            assert_eq!(
                parse_timeout(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn grpc_message_percent_encoding() {
        let text = "bad record 3: 100% \"wrong\"\nnext é";
        let encoded = percent_encode(text);
        assert!(encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        assert!(encoded.contains("100%25"));
        assert_eq!(percent_decode(&encoded), text);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
