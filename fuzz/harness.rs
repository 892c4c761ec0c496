//! The fuzz harnesses: one function per target, shared by the fuzz targets and the corpus replay.
//!
//! This file is the library of the `logmill-fuzz` crate (`fuzz/Cargo.toml`, `[lib] path`), which
//! the targets in `fuzz/fuzz_targets/` call, and it is included as a module by
//! `tests/fuzz_corpus.rs` (`#[path = "../fuzz/harness.rs"]`), so that `cargo test` on stable Rust
//! replays every corpus file through exactly the code libFuzzer runs (rustls does the same with
//! `test_read_fuzz_corpus`). It uses only `logmill` and `serde_json`, which both crates have.
//!
//! Each harness takes arbitrary bytes, calls one public decoder and panics when an invariant
//! breaks: that panic is what libFuzzer reports as a crash. What it does not hold: any fix. A
//! crash here is a bug in `src/`, or an invariant stated too strongly here.

#![forbid(unsafe_code)]

use std::hash::{DefaultHasher, Hasher};
use std::sync::{Mutex, PoisonError};

use logmill::config::{Format, MAX_FRAME_LIMIT};
use logmill::protocol::detect::{self, Detect, Protocol};
use logmill::protocol::frame::{self, Frame};
use logmill::protocol::jsonl;
use logmill::protocol::lines::{self, Line};
use logmill::protocol::native::{self, ClientFrame, ServerFrame};
use logmill::protocol::native_encode;
use logmill::protocol::pickle;
use logmill::protocol::syslog;
use logmill::record::{Body, Record};
use logmill::storage::line::{self, LineFormatter, Origin};

// ---------------------------------------------------------------------------------------------
// frame_stream: detection and framing over a stream cut into arbitrary chunks.
// ---------------------------------------------------------------------------------------------

/// Frame payload limits the first byte picks from (bits 3..6): tiny ones reach `TooLarge` with
/// a short input, 1 MiB is the server's default and `MAX_FRAME_LIMIT` its largest setting.
pub const MAX_PAYLOADS: [u32; 8] = [0, 1, 5, 64, 1000, 4096, 1 << 20, MAX_FRAME_LIMIT];

/// How a `frame_stream` input is laid out: the bytes that describe the chunking, then the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInput<'a> {
    /// Largest payload [`frame::decode`] accepts.
    pub max_payload: u32,
    /// Chunk lengths, used in turn, over and over, until the stream is used up.
    pub chunks: Vec<usize>,
    /// The bytes a client would send.
    pub stream: &'a [u8],
}

impl<'a> StreamInput<'a> {
    /// Splits a fuzz input. Byte 0: bits 0..3 are the count `n` of chunk-length bytes that follow
    /// (`0`: one byte per chunk), bits 3..6 index [`MAX_PAYLOADS`]; then `n` bytes, each a chunk
    /// length minus one; the rest is the stream. `None` when the input is too short to say.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&control, rest) = data.split_first()?;
        let n = usize::from(control & 0b111);
        let max_payload = MAX_PAYLOADS[usize::from((control >> 3) & 0b111)];
        let lengths = rest.get(..n)?;
        let chunks = if n == 0 {
            vec![1]
        } else {
            lengths.iter().map(|&b| usize::from(b) + 1).collect()
        };
        Some(StreamInput {
            max_payload,
            chunks,
            stream: &rest[n..],
        })
    }

    /// The inverse of [`StreamInput::parse`], for writing seeds. `chunks` must hold at most 7
    /// lengths of 1..=256 each, and `max_index` be under 8.
    pub fn encode(max_index: u8, chunks: &[usize], stream: &[u8]) -> Vec<u8> {
        assert!(max_index < 8 && chunks.len() < 8, "not representable");
        let mut out = vec![(max_index << 3) | chunks.len() as u8];
        for &c in chunks {
            out.push(u8::try_from(c - 1).expect("chunk length of 1..=256"));
        }
        out.extend_from_slice(stream);
        out
    }

    /// The stream cut into the chunks [`StreamInput::chunks`] asks for, as a client's reads
    /// would deliver it.
    pub fn pieces(&self) -> impl Iterator<Item = &'a [u8]> {
        let mut rest = self.stream;
        self.chunks.iter().cycle().map_while(move |&len| {
            if rest.is_empty() {
                return None;
            }
            let (chunk, tail) = rest.split_at(len.min(rest.len()));
            rest = tail;
            Some(chunk)
        })
    }
}

/// How a stream ended, once every chunk was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// Still waiting for bytes: `buffered` are held, `needed` is what [`frame::decode`] last
    /// said (always `None` while detecting).
    Waiting {
        needed: Option<usize>,
        buffered: usize,
    },
    /// Detection picked a protocol other than native frames (`health`, unknown, or one with a
    /// decoder and a target of its own): this target follows the stream no further.
    Other(Protocol),
    /// A length prefix over the limit: the connection closes.
    TooLarge { len: u32, max: u32 },
}

/// What a whole stream decoded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOutcome {
    /// The protocol detection decided on, if it did.
    pub protocol: Option<Protocol>,
    /// Every complete frame's payload, in order.
    pub payloads: Vec<Vec<u8>>,
    pub end: StreamEnd,
}

/// Detection must decide before this many bytes: the longest prefix any rule needs today is an
/// RFC 6587 octet count (10 digits and a space); an HTTP/2 preface would be 24.
const MAX_UNDECIDED: usize = 64;

/// A connection's input side, as `server::connection` runs it: bytes accumulate in `input`,
/// detection and then [`frame::decode`] take what is complete, and the rest stays for later.
struct StreamDecoder {
    max_payload: u32,
    input: Vec<u8>,
    outcome: StreamOutcome,
}

impl StreamDecoder {
    fn new(max_payload: u32) -> Self {
        StreamDecoder {
            max_payload,
            input: Vec::new(),
            outcome: StreamOutcome {
                protocol: None,
                payloads: Vec::new(),
                end: StreamEnd::Waiting {
                    needed: None,
                    buffered: 0,
                },
            },
        }
    }

    /// Takes one chunk as a read from the socket would deliver it.
    fn feed(&mut self, chunk: &[u8]) {
        if matches!(
            self.outcome.end,
            StreamEnd::Other(_) | StreamEnd::TooLarge { .. }
        ) {
            return; // The server closes, or hands the rest to another decoder.
        }
        self.input.extend_from_slice(chunk);
        let consumed = consume(&self.input, self.max_payload, &mut self.outcome);
        assert!(consumed <= self.input.len(), "consumed past the buffer");
        self.input.drain(..consumed);
    }
}

/// Decodes what is complete in `buf` into `outcome` and returns how many bytes that took.
fn consume(buf: &[u8], max_payload: u32, outcome: &mut StreamOutcome) -> usize {
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        match outcome.protocol {
            None => match detect::detect(rest) {
                Detect::Incomplete => {
                    // Detection decides within a short prefix, or a client could make the
                    // server buffer without limit before any protocol's checks apply.
                    assert!(
                        rest.len() < MAX_UNDECIDED,
                        "detection still undecided after {rest:?}"
                    );
                    outcome.end = StreamEnd::Waiting {
                        needed: None,
                        buffered: rest.len(),
                    };
                    return pos;
                }
                Detect::Decided { protocol, consumed } => {
                    assert!(consumed <= rest.len(), "detection consumed past the buffer");
                    outcome.protocol = Some(protocol);
                    pos += consumed;
                    assert_eq!(
                        protocol == Protocol::Health,
                        rest.starts_with(b"health\n") || rest.starts_with(b"health\r\n"),
                        "health detected on {rest:?}"
                    );
                    assert_eq!(
                        protocol == Protocol::Status,
                        rest.starts_with(b"status\n") || rest.starts_with(b"status\r\n"),
                        "status detected on {rest:?}"
                    );
                    if protocol != Protocol::Native {
                        outcome.end = StreamEnd::Other(protocol);
                        return buf.len();
                    }
                    // A length prefix is under 16 MiB, so native frames start with a 0 byte,
                    // which belongs to the frame, not to detection.
                    assert_eq!((consumed, rest.first()), (0, Some(&0)), "native detection");
                }
            },
            Some(_) => match frame::decode(rest, max_payload) {
                Ok(Frame::Complete { payload, consumed }) => {
                    assert!(consumed <= rest.len(), "frame consumed past the buffer");
                    assert_eq!(consumed, frame::HEADER_LEN + payload.len());
                    assert_eq!(payload, &rest[frame::HEADER_LEN..consumed]);
                    assert!(
                        payload.len() <= max_payload as usize,
                        "payload over the limit"
                    );
                    outcome.payloads.push(payload.to_vec());
                    pos += consumed;
                }
                Ok(Frame::Incomplete { needed }) => {
                    match needed {
                        None => assert!(rest.len() < frame::HEADER_LEN, "header was there"),
                        Some(needed) => {
                            assert!(needed > rest.len(), "incomplete, yet {needed} bytes held");
                            assert!(
                                needed as u64 <= u64::from(max_payload) + frame::HEADER_LEN as u64,
                                "needs {needed} bytes, over the limit {max_payload}"
                            );
                        }
                    }
                    outcome.end = StreamEnd::Waiting {
                        needed,
                        buffered: rest.len(),
                    };
                    return pos;
                }
                Err(e) => {
                    assert!(e.len > max_payload && e.max == max_payload, "{e:?}");
                    outcome.end = StreamEnd::TooLarge {
                        len: e.len,
                        max: e.max,
                    };
                    return buf.len();
                }
            },
        }
    }
}

fn decode_stream<'c>(
    stream: &[u8],
    max_payload: u32,
    chunks: impl Iterator<Item = &'c [u8]>,
) -> StreamOutcome {
    let mut decoder = StreamDecoder::new(max_payload);
    let mut fed = 0;
    for chunk in chunks {
        fed += chunk.len();
        decoder.feed(chunk);
    }
    assert_eq!(fed, stream.len(), "chunks do not cover the stream");
    decoder.outcome
}

/// The `frame_stream` target: decodes the stream in one chunk and in the chunks the input asks
/// for, checking each step, and requires both to give the same payloads and the same end.
/// Returns the outcome (`None` for an input too short to hold its chunking).
pub fn frame_stream(data: &[u8]) -> Option<StreamOutcome> {
    let input = StreamInput::parse(data)?;
    let whole = decode_stream(
        input.stream,
        input.max_payload,
        std::iter::once(input.stream),
    );
    let chunked = decode_stream(input.stream, input.max_payload, input.pieces());
    assert_eq!(whole, chunked, "chunking changed the outcome ({input:?})");
    Some(whole)
}

// ---------------------------------------------------------------------------------------------
// native_record: ClientFrame payloads, the lines they format to, and their round trip.
// ---------------------------------------------------------------------------------------------

/// Stamp for records without a time of their own (2025-11-22T00:26:13.123456789Z).
const NOW_NS: u64 = 1_763_771_173_123_456_789;

/// The sequence number spliced between head and tail.
const SEQ: u64 = 42;

/// Formats `record` in both formats for each origin and checks every line.
fn check_lines(record: &Record<'_>, formatters: &mut [LineFormatter; 2], origins: &[Origin; 2]) {
    // A non-empty buffer, as in a batch: head and tail count from where the line starts.
    const PREVIOUS: &[u8] = b"previous line\n";
    let mut out = Vec::with_capacity(1024);
    // The slot for the sequence number, which the writer fills in.
    let seq = SEQ.to_string();
    for origin in origins {
        for (formatter, format) in formatters.iter_mut().zip([Format::Text, Format::Json]) {
            out.clear();
            out.extend_from_slice(PREVIOUS);
            let start = out.len();
            let (head, tail) = formatter.format(record, origin, NOW_NS, seq.len(), &mut out);
            assert_eq!(
                start + head + seq.len() + tail,
                out.len(),
                "{format:?}: head + seq + tail"
            );
            let slot = start + head..start + head + seq.len();
            out[slot].copy_from_slice(seq.as_bytes());
            let line = &out[start..];
            check_line(format, record, line);
        }
    }
}

fn check_line(format: Format, record: &Record<'_>, line: &[u8]) {
    let text = std::str::from_utf8(line).expect("a line is UTF-8");
    assert_eq!(
        text.find('\n'),
        Some(line.len() - 1),
        "{format:?}: one newline, at the end: {text:?}"
    );
    // Control bytes are escaped in both formats (DEL too in text), so no byte can start a line
    // or move the cursor of whoever reads the file.
    let body = &line[..line.len() - 1];
    assert!(
        !body
            .iter()
            .any(|&b| b < 0x20 || (format == Format::Text && b == 0x7f)),
        "{format:?}: raw control byte in {text:?}"
    );
    // Start-up recovery finds the sequence number in either format.
    assert_eq!(line::parse_seq(line), Some(SEQ), "{format:?}: {text:?}");
    if format == Format::Json {
        let value: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
        assert_eq!(value["seq"], SEQ, "{text:?}");
        assert_eq!(value["level"], record.level.as_lower_str(), "{text:?}");
        if let Body::Message(m) = &record.body {
            // An empty message is left out.
            let stored = value.get("message").and_then(|v| v.as_str());
            assert_eq!(stored, (!m.is_empty()).then_some(&**m), "message: {text:?}");
        }
    } else {
        // A text line reads back: the message and the fields are the record's, whatever bytes
        // they hold (the full round trip is `storage::parse`'s test).
        let parsed = logmill::storage::parse::parse_text_line(text)
            .unwrap_or_else(|e| panic!("text line does not read back ({e}): {text:?}"));
        if let Body::Message(m) = &record.body {
            assert_eq!(parsed.record().body, Body::Message(m.clone()), "{text:?}");
        }
        assert_eq!(
            parsed.record().fields.len(),
            record.fields.len(),
            "{text:?}"
        );
    }
}

/// What [`native_record`] decoded: the decoder's result and the records it handed over (some
/// may come before an error, which the server then rolls back).
#[derive(Debug)]
pub struct ClientOutcome {
    pub result: Result<ClientFrame, native::DecodeError>,
    pub records: Vec<Record<'static>>,
}

/// The `native_record` target: decodes `data` as a `ClientFrame` payload, formats every record
/// it yields as text and JSON, and checks that encoding what was decoded decodes to the same.
pub fn native_record(data: &[u8]) -> ClientOutcome {
    let mut formatters = [
        LineFormatter::new(Format::Text),
        LineFormatter::new(Format::Json),
    ];
    let origins = [
        Origin::default(),
        Origin::new("app |x=\"1\"\n".into(), "pod 7\\\u{7f}".into()),
    ];
    let mut records = Vec::new();
    let result = native::decode_client_frame(data, |r| {
        check_lines(&r, &mut formatters, &origins);
        records.push(r.into_static());
    });
    // The fast path (`native_fast`) must agree with the crate: the same frame and records, or an
    // error from both (records handed over before an error may differ; the server drops them).
    let mut reference = Vec::new();
    let reference_result =
        native::decode_client_frame_with_crate(data, |r| reference.push(r.into_static()));
    match (&result, &reference_result) {
        (Ok(fast), Ok(crate_frame)) => {
            assert_eq!(
                fast, crate_frame,
                "fast path and crate decode different frames"
            );
            assert_eq!(
                records, reference,
                "fast path and crate decode different records"
            );
        }
        (Err(_), Err(_)) => {}
        _ => panic!("fast path and crate disagree: {result:?} vs {reference_result:?}"),
    }
    match &result {
        Ok(ClientFrame::Records(n)) => {
            assert_eq!(
                *n,
                records.len(),
                "count differs from the records handed over"
            );
            let mut encoded = Vec::new();
            native::encode_records(&records, &mut encoded);
            // The hand encoder the Rust client sends with must write the crate's bytes.
            let mut by_hand = Vec::new();
            native_encode::encode_records(&records, &mut by_hand);
            assert!(
                by_hand == encoded,
                "native_encode and the crate encode differently"
            );
            let mut again = Vec::new();
            let result = native::decode_client_frame(only_payload(&encoded), |r| {
                again.push(r.into_static())
            });
            assert_eq!(
                result.expect("re-encoded records decode"),
                ClientFrame::Records(records.len())
            );
            assert_eq!(again, records, "records changed in a round trip");
        }
        Ok(ClientFrame::Hello(hello)) => {
            assert!(records.is_empty(), "a hello with records");
            let mut encoded = Vec::new();
            native::encode_hello(hello, &mut encoded);
            let again = native::decode_client_frame(only_payload(&encoded), |_| {
                panic!("a re-encoded hello yields records")
            })
            .expect("a re-encoded hello decodes");
            assert_eq!(again, ClientFrame::Hello(hello.clone()), "hello round trip");
        }
        Err(_) => {}
    }
    ClientOutcome { result, records }
}

/// The payload of the one frame `buf` holds.
fn only_payload(buf: &[u8]) -> &[u8] {
    match frame::decode(buf, u32::MAX) {
        Ok(Frame::Complete { payload, consumed }) if consumed == buf.len() => payload,
        other => panic!("an encoder wrote something other than one frame: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// server_frame: what a client decodes.
// ---------------------------------------------------------------------------------------------

/// The `server_frame` target: decodes `data` as a `ServerFrame` payload and, when that works,
/// checks that encoding the result decodes to the same frame.
///
/// One loss is by design: an error code from a newer schema decodes as `kind: None`, and
/// `encode_server_frame` writes `None` as `undecodable`, so that is what the round trip expects.
pub fn server_frame(data: &[u8]) -> Option<ServerFrame> {
    let decoded = native::decode_server_frame(data).ok()?;
    let mut encoded = Vec::new();
    native::encode_server_frame(&decoded, &mut encoded);
    let again =
        native::decode_server_frame(only_payload(&encoded)).expect("a re-encoded frame decodes");
    let expected = match decoded.clone() {
        ServerFrame::Error {
            kind: None,
            message,
        } => ServerFrame::Error {
            kind: Some(native::ErrorKind::Undecodable),
            message,
        },
        other => other,
    };
    assert_eq!(again, expected, "server frame round trip");
    Some(decoded)
}

// ---------------------------------------------------------------------------------------------
// syslog, jsonl: line-based streams cut into arbitrary chunks; pickle: SocketHandler payloads.
// ---------------------------------------------------------------------------------------------

/// What a line-based stream decoded to, once every chunk was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinesOutcome {
    /// Where each message, line or piece's record comes from, in order ([`Decoded::sources`]):
    /// the harness makes a record only the first time it meets its source, to check it.
    sources: Vec<u8>,
    /// Bytes still held, waiting for the rest of a message.
    pub buffered: usize,
}

impl LinesOutcome {
    /// One record per message, line or piece, in order, made again from their sources.
    pub fn records(&self) -> Vec<Record<'static>> {
        let mut records = Vec::new();
        let mut rest = &self.sources[..];
        while let Some((&made, tail)) = rest.split_first() {
            let (len, tail) = tail.split_at(8);
            let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
            let (bytes, tail) = tail.split_at(len);
            records.push(Made::from_byte(made).record(bytes).into_static());
            rest = tail;
        }
        records
    }
}

/// The clock RFC 3164 timestamps are dated by: fixed, so a corpus file decodes the same on any
/// day (November 2025).
fn november_2025() -> (i32, u8) {
    (2025, 11)
}

/// Formatters and origins for [`check_lines`], one pair of each.
fn line_checker() -> ([LineFormatter; 2], [Origin; 2]) {
    (
        [
            LineFormatter::new(Format::Text),
            LineFormatter::new(Format::Json),
        ],
        [
            Origin::default(),
            Origin::new("app |x=\"1\"\n".into(), "pod 7\\\u{7f}".into()),
        ],
    )
}

/// The records [`check_lines_once`] has checked in this process: a table of their keys (the
/// SipHash of the bytes each was decoded from and of how it was decoded), each in the slot its
/// key picks. A key that lands on a taken slot replaces the one there, which is checked again if
/// it comes back. The table is allocated once and never grows: libFuzzer suspects an input that
/// keeps memory of a leak, and runs it again to look for one.
static CHECKED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Slots in [`CHECKED`] (8 MiB).
const CHECKED_SLOTS: usize = 1 << 20;

/// How a line-stream harness makes a record from its bytes ([`Made::record`]), which with the
/// bytes decides the record: part of the key [`check_lines_once`] remembers.
#[derive(Clone, Copy)]
enum Made {
    /// `syslog::parse_message_with_clock` on a whole message.
    SyslogMessage,
    /// `syslog::parse_message_with_clock` on the first piece of a cut message, marked truncated.
    SyslogFirstPiece,
    /// `syslog::piece_record` on a later piece.
    SyslogPiece,
    /// `jsonl::parse_line` on a whole line.
    JsonLine,
    /// A piece of a cut line, kept as text.
    JsonPiece,
}

impl Made {
    /// Every way, in the order of their bytes.
    const ALL: [Made; 5] = [
        Made::SyslogMessage,
        Made::SyslogFirstPiece,
        Made::SyslogPiece,
        Made::JsonLine,
        Made::JsonPiece,
    ];

    fn from_byte(byte: u8) -> Made {
        Made::ALL[usize::from(byte)]
    }

    /// The record made from `bytes` this way; a message or line that does not parse must be
    /// kept whole.
    fn record(self, bytes: &[u8]) -> Record<'_> {
        match self {
            Made::SyslogMessage | Made::SyslogFirstPiece => {
                let mut record = syslog::parse_message_with_clock(bytes, november_2025);
                if record.parse_error {
                    let raw = String::from_utf8_lossy(bytes);
                    assert_eq!(record.body, Body::Message(raw), "kept whole");
                }
                if let Made::SyslogFirstPiece = self {
                    record.truncated = true;
                }
                record
            }
            Made::SyslogPiece => syslog::piece_record(bytes),
            Made::JsonLine => {
                let record = jsonl::parse_line(bytes);
                if record.parse_error {
                    let raw = String::from_utf8_lossy(bytes);
                    assert_eq!(record.body, Body::Message(raw), "kept whole");
                }
                record
            }
            Made::JsonPiece => Record {
                body: Body::Message(String::from_utf8_lossy(bytes)),
                truncated: true,
                ..Record::default()
            },
        }
    }
}

/// Makes the record `bytes` give `made`'s way and checks it with [`check_lines`] and fresh
/// formatters, once per distinct record source in this process.
///
/// A line stream yields a record per line or piece, 15 per input on average, and checking them
/// all (four lines formatted, two parsed as JSON, each) took over 80% of the `syslog` and `jsonl`
/// targets' time; most recur, within an input and in the inputs mutated from it. A record is
/// decided by the bytes it was decoded from and by how (`made`: the decoders are pure and the
/// clock is fixed), and its lines by the record alone (the formatters are fresh, the origins
/// fixed), so checking the same bytes made the same way again can find nothing new. Every
/// distinct record is still checked: a lookup compares one slot, so a new source is taken for a
/// checked one with odds of 2^-64. The key is hashed from the bytes rather than from the
/// record's `Debug` text, which cost more to format than the checks it saved, and a record is
/// made only for a source not seen before: parsing the same bytes again can find nothing new.
fn check_lines_once(made: Made, bytes: &[u8]) {
    let mut hasher = DefaultHasher::new();
    hasher.write_u8(made as u8);
    hasher.write(bytes);
    let key = hasher.finish();
    let slot = (key % CHECKED_SLOTS as u64) as usize;
    let seen = |table: &[u64]| table.get(slot) == Some(&key);
    if seen(&CHECKED.lock().unwrap_or_else(PoisonError::into_inner)) {
        return;
    }
    // Checked outside the lock, and remembered only once it passed: a record that breaks an
    // invariant fails every input that yields it.
    let record = made.record(bytes);
    let (mut formatters, origins) = line_checker();
    check_lines(&record, &mut formatters, &origins);
    let mut table = CHECKED.lock().unwrap_or_else(PoisonError::into_inner);
    if table.is_empty() {
        table.resize(CHECKED_SLOTS, 0);
    }
    table[slot] = key;
}

/// What one decoding of a line stream framed, in order.
#[derive(Default)]
struct Decoded {
    /// How each record is made ([`Made`], a byte), the length of its bytes (8 bytes) and the
    /// bytes: everything a record is decided by, so two decodings with equal `sources` make equal
    /// records.
    sources: Vec<u8>,
}

impl Decoded {
    /// Logs the source of the next record.
    fn source(&mut self, made: Made, bytes: &[u8]) {
        self.sources.push(made as u8);
        self.sources
            .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.sources.extend_from_slice(bytes);
    }
}

/// Runs a connection's input loop over `chunks`: after each chunk, `step` takes what is complete
/// at the front of the buffer (logging it in `decoded` and returning the bytes it consumed,
/// `None` when it needs more), and at most `bound` bytes may stay buffered. Returns how many
/// bytes stay buffered at the end.
fn decode_lines(
    stream: &[u8],
    chunks: &mut dyn Iterator<Item = &[u8]>,
    bound: usize,
    decoded: &mut Decoded,
    mut step: impl FnMut(&[u8], &mut Decoded) -> Option<usize>,
) -> usize {
    let mut input = Vec::new();
    let mut fed = 0;
    for chunk in chunks {
        fed += chunk.len();
        input.extend_from_slice(chunk);
        let mut pos = 0;
        while let Some(consumed) = step(&input[pos..], decoded) {
            assert!(consumed > 0, "no progress");
            assert!(pos + consumed <= input.len(), "consumed past the buffer");
            pos += consumed;
        }
        input.drain(..pos);
        assert!(
            input.len() <= bound,
            "{} bytes buffered, over {bound}",
            input.len()
        );
    }
    assert_eq!(fed, stream.len(), "chunks do not cover the stream");
    input.len()
}

/// Decodes `input` in one chunk and in the chunks it asks for; both must agree. `decode` is
/// told whether it is the first decoding, which checks the records of sources it has not seen;
/// both log each record's source. A record is a pure function of its source (the decoders are
/// pure and the clock fixed), so equal sources mean equal records, and comparing them spares
/// parsing every message twice.
fn whole_and_chunked(
    input: &StreamInput<'_>,
    decode: impl Fn(&mut dyn Iterator<Item = &[u8]>, &mut Decoded, bool) -> usize,
) -> LinesOutcome {
    let mut whole = Decoded::default();
    let buffered = decode(&mut std::iter::once(input.stream), &mut whole, true);
    let mut chunked = Decoded::default();
    let chunked_buffered = decode(&mut input.pieces(), &mut chunked, false);
    assert!(
        whole.sources == chunked.sources && buffered == chunked_buffered,
        "chunking changed the outcome ({input:?})"
    );
    LinesOutcome {
        sources: whole.sources,
        buffered,
    }
}

/// The `syslog` target: RFC 6587 frames over a stream (laid out as for `frame_stream`, the
/// limit being the line limit), every message parsed with `syslog::parse_message` and every
/// record checked as a stored line. Frames and pieces stay within the limit, buffering within
/// a count header plus the limit, a message that does not parse is kept whole, and any chunking
/// gives the same records. `None` for an input too short to hold its chunking.
pub fn syslog(data: &[u8]) -> Option<LinesOutcome> {
    let input = StreamInput::parse(data)?;
    let max = (input.max_payload as usize).max(1);
    Some(whole_and_chunked(&input, |chunks, decoded, first_pass| {
        let mut cont = syslog::Continuation::default();
        let mut scan = lines::Scan::default();
        let bound = syslog::MAX_LEN_DIGITS + 2 + max;
        decode_lines(input.stream, chunks, bound, decoded, |buf, decoded| {
            let frame = syslog::decode_frame_resuming(buf, max, &mut cont, &mut scan);
            let (bytes, consumed, made) = match frame {
                syslog::Frame::Incomplete => return None,
                syslog::Frame::Message { msg, consumed } => {
                    assert!(msg.len() <= max, "message of {}", msg.len());
                    assert!(msg.len() < consumed && consumed <= buf.len());
                    (msg, consumed, Made::SyslogMessage)
                }
                syslog::Frame::Truncated {
                    piece,
                    consumed,
                    first,
                } => {
                    assert!(
                        !piece.is_empty() && piece.len() <= max,
                        "piece of {}",
                        piece.len()
                    );
                    assert!(piece.len() <= consumed && consumed <= buf.len());
                    let made = if first {
                        Made::SyslogFirstPiece
                    } else {
                        Made::SyslogPiece
                    };
                    (piece, consumed, made)
                }
            };
            decoded.source(made, bytes);
            if first_pass {
                check_lines_once(made, bytes);
            }
            Some(consumed)
        })
    }))
}

/// The `jsonl` target: lines over a stream (laid out as for `frame_stream`, the limit being the
/// line limit), each line parsed with `jsonl::parse_line`, each piece of a cut line kept as text,
/// and every record checked as a stored line. Lines and pieces stay within the limit and hold no
/// newline; when the stream is UTF-8 and the limit fits a character, every piece is UTF-8 too
/// (cuts fall between characters); what is not a JSON object is kept whole; any chunking gives
/// the same records. `None` for an input too short to hold its chunking.
pub fn jsonl(data: &[u8]) -> Option<LinesOutcome> {
    let input = StreamInput::parse(data)?;
    let max = (input.max_payload as usize).max(1);
    let utf8 = std::str::from_utf8(input.stream).is_ok() && max >= 4;
    Some(whole_and_chunked(&input, |chunks, decoded, first_pass| {
        let mut continuing = false;
        let mut scan = lines::Scan::default();
        decode_lines(input.stream, chunks, max + 1, decoded, |buf, decoded| {
            let (text, consumed, cut) = match scan.next_line(buf, max) {
                Line::Incomplete => return None,
                Line::Complete { line, consumed } => {
                    assert!(line.len() < consumed && consumed <= buf.len());
                    (line, consumed, std::mem::take(&mut continuing))
                }
                Line::Truncated { piece, consumed } => {
                    assert!(!piece.is_empty() && piece.len() == consumed);
                    continuing = true;
                    (piece, consumed, true)
                }
            };
            assert!(text.len() <= max && !text.contains(&b'\n'), "{text:?}");
            assert!(
                !utf8 || std::str::from_utf8(text).is_ok(),
                "cut inside a character"
            );
            let made = if cut { Made::JsonPiece } else { Made::JsonLine };
            decoded.source(made, text);
            if first_pass {
                check_lines_once(made, text);
            }
            Some(consumed)
        })
    }))
}

/// The `pickle` target: `pickle::decode_record` on arbitrary payloads. A record it returns must
/// have passed `pickle::check` and format to one line in both formats; an error must say what
/// it found. Its limits are what keep libFuzzer's memory and time limits from tripping: a
/// payload that passes the check yet blows up in `serde-pickle` is a crash (out of memory or
/// timeout) here.
pub fn pickle(data: &[u8]) -> Result<Record<'static>, pickle::PickleError> {
    let result = pickle::decode_record(data);
    match &result {
        Ok(record) => {
            assert_eq!(
                pickle::check(data),
                Ok(()),
                "decoded without passing the check"
            );
            let (mut formatters, origins) = line_checker();
            check_lines(record, &mut formatters, &origins);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    result
}
