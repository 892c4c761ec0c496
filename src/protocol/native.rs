//! The native protocol: Cap'n Proto `ClientFrame`s in, `ServerFrame`s out (`schema/logmill.capnp`).
//!
//! Decoding is zero-copy: text fields of a [`Record`] borrow from the frame's payload, and
//! invalid UTF-8 is replaced (lossily, then owned) rather than rejected, so one bad byte never
//! costs a record. The Cap'n Proto read limits are proportional to the payload, so a small
//! frame cannot make the server do large work however its pointers are arranged.
//!
//! Encoding of both directions lives here too: the server encodes `ServerFrame`s, and the
//! bench client, the tests and the fuzz targets encode `ClientFrame`s with the same code.

use std::borrow::Cow;
use std::fmt;

use capnp::message::{Builder, HeapAllocator, ReaderOptions};
use capnp::serialize;

use crate::logmill_capnp::{ErrorCode, Level as WireLevel};
use crate::logmill_capnp::{client_frame, log_record, server_frame};
use crate::protocol::{frame, native_fast};
use crate::record::{Body, Level, Record, lossy_utf8};

/// The deepest nesting a valid `ClientFrame` has is 4 (frame, batch, record, field); a little
/// slack and no more, so a hostile message cannot recurse.
const NESTING_LIMIT: i32 = 16;

/// The optional first frame of a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hello {
    pub app: String,
    pub instance: String,
    pub token: String,
    pub want_acks: bool,
}

/// What a `ClientFrame` held, once its records (if any) were handed to the callback.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientFrame {
    Hello(Hello),
    /// How many records were handed to the callback.
    Records(usize),
}

/// A payload that is not a valid `ClientFrame`.
#[derive(Debug)]
pub struct DecodeError(capnp::Error);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payload is not a valid ClientFrame: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

impl From<capnp::Error> for DecodeError {
    fn from(e: capnp::Error) -> Self {
        DecodeError(e)
    }
}

impl From<capnp::NotInSchema> for DecodeError {
    fn from(e: capnp::NotInSchema) -> Self {
        DecodeError(e.into())
    }
}

/// Traversal is counted in 8-byte words each time a struct or list is fetched; four times the
/// payload covers every legitimate read of every field with room to spare, and bounds the work
/// of a malicious message to a constant factor of its size.
pub(super) fn traversal_limit(payload_len: usize) -> usize {
    (payload_len / 8).saturating_mul(4).max(64)
}

fn reader_options(payload_len: usize) -> ReaderOptions {
    let mut options = ReaderOptions::new();
    options
        .traversal_limit_in_words(Some(traversal_limit(payload_len)))
        .nesting_limit(NESTING_LIMIT);
    options
}

/// Decodes one `ClientFrame` payload, handing each record to `on_record` in order.
///
/// On error some records may already have been handed over; a caller that needs the frame to be
/// all-or-nothing (the server does) keeps a mark and rolls back. Each record borrows the decoded
/// message and lives only for the call: the caller formats or copies what it keeps.
///
/// # Errors
/// [`DecodeError`] when the payload is not a Cap'n Proto message whose root is a `ClientFrame`.
pub fn decode_client_frame(
    payload: &[u8],
    mut on_record: impl FnMut(Record<'_>),
) -> Result<ClientFrame, DecodeError> {
    // Record and batch frames as encoders write them take the fast path; it hands over nothing
    // unless it takes the whole frame, so the crate can always start again from the beginning.
    let limit = traversal_limit(payload.len());
    match native_fast::decode(payload, limit, max_records(payload), &mut on_record) {
        Ok(records) => Ok(ClientFrame::Records(records)),
        Err(native_fast::Unsupported) => decode_client_frame_with_crate(payload, on_record),
    }
}

/// [`decode_client_frame`] by the `capnp` crate alone: the reference the fast path is tested
/// against, and the decoder of every frame the fast path leaves to it.
///
/// # Errors
/// [`DecodeError`] when the payload is not a Cap'n Proto message whose root is a `ClientFrame`.
pub fn decode_client_frame_with_crate(
    payload: &[u8],
    mut on_record: impl FnMut(Record<'_>),
) -> Result<ClientFrame, DecodeError> {
    let mut slice = payload;
    // The flat-slice reader computes the segment offsets once per message (one small allocation
    // per frame); the no-alloc reader walks the segment table again at every pointer of a
    // multi-segment message, which profiling showed costing more than the decoding itself.
    let message =
        serialize::read_message_from_flat_slice(&mut slice, reader_options(payload.len()))?;
    let root: client_frame::Reader<'_> = message.get_root()?;
    match root.which()? {
        client_frame::Record(record) => {
            on_record(to_record(record?)?);
            Ok(ClientFrame::Records(1))
        }
        client_frame::Batch(records) => {
            let records = records?;
            // A list of zero-size structs costs nothing on the wire but a whole stored line per
            // element; a real record takes at least a word, so more records than payload words is
            // an amplification attempt (found by fuzzing: 40 bytes made 1,020 records).
            if records.len() as usize > max_records(payload) {
                return Err(DecodeError(capnp::Error::failed(format!(
                    "batch declares {} records in {} bytes",
                    records.len(),
                    payload.len()
                ))));
            }
            for record in records.iter() {
                on_record(to_record(record)?);
            }
            Ok(ClientFrame::Records(records.len() as usize))
        }
        client_frame::Hello(hello) => {
            let hello = hello?;
            Ok(ClientFrame::Hello(Hello {
                app: lossy_utf8(hello.get_app()?.as_bytes()).into_owned(),
                instance: lossy_utf8(hello.get_instance()?.as_bytes()).into_owned(),
                token: lossy_utf8(hello.get_token()?.as_bytes()).into_owned(),
                want_acks: hello.get_want_acks(),
            }))
        }
    }
}

/// Builds a [`Record`] whose text borrows the message (no copies unless UTF-8 is invalid).
fn to_record(r: log_record::Reader<'_>) -> Result<Record<'_>, DecodeError> {
    fn text(t: capnp::text::Reader<'_>) -> Cow<'_, str> {
        lossy_utf8(t.as_bytes())
    }
    /// Unset fields are the common case; checking the pointer first skips the bounds checks and
    /// UTF-8 validation of an empty text.
    fn optional<'a>(
        has: bool,
        get: impl FnOnce() -> capnp::Result<capnp::text::Reader<'a>>,
    ) -> Result<Cow<'a, str>, DecodeError> {
        Ok(if has { text(get()?) } else { Cow::Borrowed("") })
    }
    let body = match r.get_body().which()? {
        log_record::body::Message(t) => Body::Message(text(t?)),
        log_record::body::Json(t) => Body::Json(text(t?)),
    };
    let fields = if r.has_fields() {
        let list = r.get_fields()?;
        let mut fields = Vec::with_capacity(list.len() as usize);
        for field in list.iter() {
            fields.push((text(field.get_key()?), text(field.get_value()?).into()));
        }
        fields
    } else {
        Vec::new()
    };
    Ok(Record {
        timestamp_ns: r.get_timestamp_ns(),
        level: native_fast::from_wire_level(r.get_level()),
        body,
        logger: optional(r.has_logger(), || r.get_logger())?,
        host: optional(r.has_host(), || r.get_host())?,
        service: optional(r.has_service(), || r.get_service())?,
        module: optional(r.has_module(), || r.get_module())?,
        file: optional(r.has_file(), || r.get_file())?,
        line: r.get_line(),
        function: optional(r.has_function(), || r.get_function())?,
        process_id: r.get_process_id(),
        process_name: optional(r.has_process_name(), || r.get_process_name())?,
        thread_id: r.get_thread_id(),
        thread_name: optional(r.has_thread_name(), || r.get_thread_name())?,
        stack_trace: optional(r.has_stack_trace(), || r.get_stack_trace())?,
        fields,
        parse_error: false,
        truncated: false,
    })
}

/// A real record takes at least a word, so a batch may not declare more records than its payload
/// has words.
pub(super) fn max_records(payload: &[u8]) -> usize {
    payload.len() / 8
}

/// The schema's value of `level` (shared with [`native_encode`](super::native_encode)).
pub(super) fn to_wire_level(level: Level) -> WireLevel {
    match level {
        Level::Trace => WireLevel::Trace,
        Level::Debug => WireLevel::Debug,
        Level::Info => WireLevel::Info,
        Level::Notice => WireLevel::Notice,
        Level::Warning => WireLevel::Warning,
        Level::Error => WireLevel::Error,
        Level::Critical => WireLevel::Critical,
        Level::Alert => WireLevel::Alert,
        Level::Emergency => WireLevel::Emergency,
    }
}

/// Why the server sent an `error` frame (`ErrorCode` in the schema).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    FrameTooLarge,
    Undecodable,
    HelloNotFirst,
    ShuttingDown,
    SlowReader,
    IdleTimeout,
    /// The hello's token was refused, or none was sent under `--auth required`.
    Unauthorized,
}

impl ErrorKind {
    fn to_wire(self) -> ErrorCode {
        match self {
            ErrorKind::FrameTooLarge => ErrorCode::FrameTooLarge,
            ErrorKind::Undecodable => ErrorCode::Undecodable,
            ErrorKind::HelloNotFirst => ErrorCode::HelloNotFirst,
            ErrorKind::ShuttingDown => ErrorCode::ShuttingDown,
            ErrorKind::SlowReader => ErrorCode::SlowReader,
            ErrorKind::IdleTimeout => ErrorCode::IdleTimeout,
            ErrorKind::Unauthorized => ErrorCode::Unauthorized,
        }
    }

    fn from_wire(code: ErrorCode) -> Self {
        match code {
            ErrorCode::FrameTooLarge => ErrorKind::FrameTooLarge,
            ErrorCode::Undecodable => ErrorKind::Undecodable,
            ErrorCode::HelloNotFirst => ErrorKind::HelloNotFirst,
            ErrorCode::ShuttingDown => ErrorKind::ShuttingDown,
            ErrorCode::SlowReader => ErrorKind::SlowReader,
            ErrorCode::IdleTimeout => ErrorKind::IdleTimeout,
            ErrorCode::Unauthorized => ErrorKind::Unauthorized,
        }
    }
}

/// A decoded `ServerFrame`, as a client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    Ack {
        count: u64,
        last_seq: u64,
    },
    Error {
        kind: Option<ErrorKind>,
        message: String,
    },
    Welcome {
        server: String,
        version: String,
        max_frame: u32,
    },
}

/// Appends `frame`, length prefix included, to `out`.
pub fn encode_server_frame(frame: &ServerFrame, out: &mut Vec<u8>) {
    let mut message = Builder::new_default();
    let root = message.init_root::<server_frame::Builder<'_>>();
    match frame {
        ServerFrame::Ack { count, last_seq } => {
            let mut ack = root.init_ack();
            ack.set_count(*count);
            ack.set_last_seq(*last_seq);
        }
        ServerFrame::Error { kind, message } => {
            let mut error = root.init_error();
            error.set_code(kind.unwrap_or(ErrorKind::Undecodable).to_wire());
            error.set_message(message.as_str());
        }
        ServerFrame::Welcome {
            server,
            version,
            max_frame,
        } => {
            let mut welcome = root.init_welcome();
            welcome.set_server(server.as_str());
            welcome.set_version(version.as_str());
            welcome.set_max_frame(*max_frame);
        }
    }
    frame::encode(&serialize::write_message_to_words(&message), out);
}

/// Decodes one `ServerFrame` payload (client side).
///
/// # Errors
/// [`DecodeError`] when the payload is not a `ServerFrame`.
pub fn decode_server_frame(payload: &[u8]) -> Result<ServerFrame, DecodeError> {
    let mut slice = payload;
    let message = serialize::read_message_from_flat_slice_no_alloc(
        &mut slice,
        reader_options(payload.len()),
    )?;
    let root: server_frame::Reader<'_> = message.get_root()?;
    Ok(match root.which()? {
        server_frame::Ack(ack) => {
            let ack = ack?;
            ServerFrame::Ack {
                count: ack.get_count(),
                last_seq: ack.get_last_seq(),
            }
        }
        server_frame::Error(error) => {
            let error = error?;
            ServerFrame::Error {
                kind: error.get_code().ok().map(ErrorKind::from_wire),
                message: lossy_utf8(error.get_message()?.as_bytes()).into_owned(),
            }
        }
        server_frame::Welcome(welcome) => {
            let welcome = welcome?;
            ServerFrame::Welcome {
                server: lossy_utf8(welcome.get_server()?.as_bytes()).into_owned(),
                version: lossy_utf8(welcome.get_version()?.as_bytes()).into_owned(),
                max_frame: welcome.get_max_frame(),
            }
        }
    })
}

/// Appends a `hello` frame to `out` (client side).
pub fn encode_hello(hello: &Hello, out: &mut Vec<u8>) {
    let mut message = Builder::new_default();
    let mut h = message
        .init_root::<client_frame::Builder<'_>>()
        .init_hello();
    h.set_app(hello.app.as_str());
    h.set_instance(hello.instance.as_str());
    h.set_token(hello.token.as_str());
    h.set_want_acks(hello.want_acks);
    frame::encode(&serialize::write_message_to_words(&message), out);
}

/// Appends one frame holding `records` to `out`: a `record` frame for one, a `batch` otherwise.
///
/// # Panics
/// If `records` holds more than `u32::MAX` records.
pub fn encode_records(records: &[Record<'_>], out: &mut Vec<u8>) {
    // One segment sized to the whole frame: a message that outgrows its first segment continues
    // in more, and every text that lands in another segment than its record costs the reader a
    // far pointer to follow and bounds-check (a 64 KiB batch in the default 8 KiB first segment
    // has them on nearly every record).
    let words = 8 + records.iter().map(record_words).sum::<usize>();
    let allocator =
        HeapAllocator::new().first_segment_words(u32::try_from(words).unwrap_or(u32::MAX));
    let mut message = Builder::new(allocator);
    let root = message.init_root::<client_frame::Builder<'_>>();
    if let [record] = records {
        fill_record(root.init_record(), record);
    } else {
        let len = u32::try_from(records.len()).expect("batch over u32::MAX records");
        let mut list = root.init_batch(len);
        for (i, record) in records.iter().enumerate() {
            fill_record(list.reborrow().get(i as u32), record);
        }
    }
    frame::encode(&serialize::write_message_to_words(&message), out);
}

/// Words a record takes in a message: its struct (data and pointer sections), each text rounded
/// up to a word with its NUL, and the field list.
fn record_words(r: &Record<'_>) -> usize {
    const STRUCT_WORDS: usize = 4 + 11;
    let text = |s: &str| s.len() / 8 + 1;
    let body = match &r.body {
        Body::Message(m) | Body::Json(m) => m,
    };
    let texts = [
        &r.logger,
        &r.host,
        &r.service,
        &r.module,
        &r.file,
        &r.function,
        &r.process_name,
        &r.thread_name,
        &r.stack_trace,
    ];
    let fields: usize = r
        .fields
        .iter()
        .map(|(k, v)| 2 + text(k) + text(&v.text()))
        .sum();
    STRUCT_WORDS
        + text(body)
        + texts.iter().map(|t| text(t)).sum::<usize>()
        + if r.fields.is_empty() { 0 } else { 1 + fields }
}

fn fill_record(mut b: log_record::Builder<'_>, r: &Record<'_>) {
    b.set_timestamp_ns(r.timestamp_ns);
    b.set_level(to_wire_level(r.level));
    match &r.body {
        Body::Message(m) => b.reborrow().init_body().set_message(m.as_ref()),
        Body::Json(j) => b.reborrow().init_body().set_json(j.as_ref()),
    }
    if !r.logger.is_empty() {
        b.set_logger(r.logger.as_ref());
    }
    if !r.host.is_empty() {
        b.set_host(r.host.as_ref());
    }
    if !r.service.is_empty() {
        b.set_service(r.service.as_ref());
    }
    if !r.module.is_empty() {
        b.set_module(r.module.as_ref());
    }
    if !r.file.is_empty() {
        b.set_file(r.file.as_ref());
    }
    b.set_line(r.line);
    if !r.function.is_empty() {
        b.set_function(r.function.as_ref());
    }
    b.set_process_id(r.process_id);
    if !r.process_name.is_empty() {
        b.set_process_name(r.process_name.as_ref());
    }
    b.set_thread_id(r.thread_id);
    if !r.thread_name.is_empty() {
        b.set_thread_name(r.thread_name.as_ref());
    }
    if !r.stack_trace.is_empty() {
        b.set_stack_trace(r.stack_trace.as_ref());
    }
    if !r.fields.is_empty() {
        let mut list = b.init_fields(r.fields.len() as u32);
        for (i, (k, v)) in r.fields.iter().enumerate() {
            let mut f = list.reborrow().get(i as u32);
            f.set_key(k.as_ref());
            f.set_value(v.text().as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{Frame, decode};

    fn sample() -> Record<'static> {
        Record {
            timestamp_ns: 1_700_000_000_123_456_789,
            level: Level::Warning,
            body: Body::Message("disk almost full".into()),
            logger: "app.disk".into(),
            host: "web-1".into(),
            line: 42,
            process_id: 7,
            fields: vec![("mount".into(), "/var".into())],
            ..Record::default()
        }
    }

    fn payload_of(buf: &[u8]) -> &[u8] {
        match decode(buf, u32::MAX).unwrap() {
            Frame::Complete { payload, .. } => payload,
            Frame::Incomplete { .. } => panic!("incomplete"),
        }
    }

    #[test]
    fn a_batch_is_encoded_in_one_segment_that_fits_it() {
        let records: Vec<Record<'static>> = (0..300)
            .map(|i| Record {
                body: Body::Message(format!("message {i} {}", "x".repeat(i)).into()),
                stack_trace: "trace".repeat(i % 7).into(),
                ..sample()
            })
            .collect();
        let mut buf = Vec::new();
        encode_records(&records, &mut buf);
        let payload = payload_of(&buf);
        // Standard framing: segment count minus one, then the first segment's size in words.
        assert_eq!(payload[..4], [0, 0, 0, 0], "more than one segment");
        let words = u32::from_le_bytes(payload[4..8].try_into().unwrap()) as usize;
        assert_eq!(8 + words * 8, payload.len());
        let mut decoded = 0;
        decode_client_frame(payload, |r| {
            assert_eq!(r, records[decoded]);
            decoded += 1;
        })
        .unwrap();
        assert_eq!(decoded, records.len());
    }

    #[test]
    fn record_round_trip_borrows_the_message() {
        let mut buf = Vec::new();
        encode_records(&[sample()], &mut buf);
        let mut got = Vec::new();
        let kind = decode_client_frame(payload_of(&buf), |r| {
            assert!(matches!(r.logger, Cow::Borrowed(_)));
            got.push(r.into_static())
        })
        .unwrap();
        assert_eq!(kind, ClientFrame::Records(1));
        assert_eq!(got, vec![sample()]);
    }

    #[test]
    fn batch_keeps_order() {
        let records: Vec<Record<'static>> = (0..50)
            .map(|i| Record {
                body: Body::Json(format!("{{\"i\":{i}}}").into()),
                ..Record::default()
            })
            .collect();
        let mut buf = Vec::new();
        encode_records(&records, &mut buf);
        let mut got = Vec::new();
        decode_client_frame(payload_of(&buf), |r| got.push(r.into_static())).unwrap();
        assert_eq!(got, records);
    }

    #[test]
    fn hello_round_trip() {
        let hello = Hello {
            app: "billing".into(),
            instance: "pod-7".into(),
            token: String::new(),
            want_acks: true,
        };
        let mut buf = Vec::new();
        encode_hello(&hello, &mut buf);
        let got = decode_client_frame(payload_of(&buf), |_| panic!("no records")).unwrap();
        assert_eq!(got, ClientFrame::Hello(hello));
    }

    #[test]
    fn server_frames_round_trip() {
        for frame in [
            ServerFrame::Ack {
                count: 10,
                last_seq: 99,
            },
            ServerFrame::Error {
                kind: Some(ErrorKind::FrameTooLarge),
                message: "too big".into(),
            },
            ServerFrame::Welcome {
                server: "LogServer".into(),
                version: "0.1.0".into(),
                max_frame: 1 << 20,
            },
        ] {
            let mut buf = Vec::new();
            encode_server_frame(&frame, &mut buf);
            assert_eq!(decode_server_frame(payload_of(&buf)).unwrap(), frame);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for garbage in [
            &b""[..],
            b"\x00",
            b"\xff\xff\xff\xff",
            b"\x00\x00\x00\x00\x10\x00\x00\x00",
        ] {
            assert!(decode_client_frame(garbage, |_| ()).is_err());
        }
    }

    #[test]
    fn zero_size_records_cannot_amplify() {
        // Segment table (1 segment of 4 words), root pointer to a struct with 1 data word and
        // 1 pointer, discriminant 1 (batch), then a list pointer to `n` zero-size structs.
        for n in [60u32, 1020] {
            let mut payload = vec![0, 0, 0, 0, 4, 0, 0, 0];
            payload.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
            payload.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
            payload.extend_from_slice(&[0x01, 0, 0, 0, 0x07, 0, 0, 0]); // composite list, 0 words
            payload.extend_from_slice(&(n << 2).to_le_bytes());
            payload.extend_from_slice(&[0, 0, 0, 0]);
            let mut count = 0;
            let result = decode_client_frame(&payload, |_| count += 1);
            assert!(result.is_err(), "{n} records: {result:?}");
            assert_eq!(count, 0);
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        let mut message = Builder::new_default();
        let mut r = message
            .init_root::<client_frame::Builder<'_>>()
            .init_record();
        r.reborrow()
            .init_body()
            .set_message(capnp::text::Reader::from(&b"bad \xff byte"[..]));
        let words = serialize::write_message_to_words(&message);
        let mut got = Vec::new();
        decode_client_frame(&words, |r| got.push(r.into_static())).unwrap();
        assert_eq!(got[0].body, Body::Message("bad \u{fffd} byte".into()));
    }
}
