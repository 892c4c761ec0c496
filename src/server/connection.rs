//! One client connection: its socket, its buffers and its protocol state.
//!
//! [`Connection::consume`] is where received bytes become records: it runs detection, then the
//! protocol's decoder, over bytes that the loop has read, and queues answers in `output`. It
//! never reads or writes the socket itself; the loop does that (`event_loop.rs`).
//!
//! Memory: an idle connection holds no buffer at all. The loop reads into one scratch buffer per
//! loop and only the unfinished tail of a frame is copied into `input`, which grows to what that
//! frame announced and is freed once the frame is complete.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mio::net::TcpStream;

use crate::protocol::detect::{self, Detect, Protocol};
use crate::protocol::frame::{self, Frame};
use crate::protocol::lines::{self, Line};
use crate::protocol::native::{self, ClientFrame, ErrorKind, ServerFrame};
use crate::protocol::{jsonl, pickle, syslog};
use crate::record::{Body, Record};
use crate::server_log::ServerLog;
use crate::shared::Shared;
use crate::storage::line::Origin;
use crate::storage::{BatchBuilder, ConnKey};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No protocol decided yet.
    Detecting,
    /// Native frames.
    Native,
    /// Python `SocketHandler` pickles.
    Pickle,
    /// Syslog, either RFC 6587 framing.
    Syslog,
    /// One JSON object per line.
    JsonLines,
    /// One plain-text record per line.
    Text,
    /// No more input is taken; the connection closes once `output` is sent (and, if the client
    /// wants acks, once its records are written).
    Closing,
}

pub struct Connection {
    pub stream: TcpStream,
    pub key: ConnKey,
    pub peer: SocketAddr,
    pub phase: Phase,
    pub origin: Origin,
    pub want_acks: bool,
    /// A hello is only valid before the first record.
    pub seen_records: bool,
    /// The unfinished tail of the input (a partial frame or detection prefix).
    pub input: Vec<u8>,
    /// Bytes the tail's frame will need in total, when known: the read size hint.
    pub input_needed: Option<usize>,
    /// Answers not yet sent; `output[..output_sent]` went out already.
    pub output: Vec<u8>,
    pub output_sent: usize,
    pub last_active: Instant,
    /// Records handed to the writer and not yet written.
    pub in_flight: u64,
    /// Records written (cumulative): what acks report.
    pub written: u64,
    pub last_seq: u64,
    pub ack_due: bool,
    /// WRITABLE interest is registered (only while output is pending).
    pub writable: bool,
    /// In the loop's ready list.
    pub queued: bool,
    /// The peer closed its sending side.
    pub eof: bool,
    /// Syslog: between frames, or inside a long message being stored in pieces.
    pub syslog: syslog::Continuation,
    /// JSON lines and text: the current line was cut at the line limit; its remaining pieces are
    /// stored flagged `truncated` too.
    pub line_cut: bool,
    /// Syslog, JSON lines and text: how much of the line at the front of `input` was already
    /// searched for its newline, so that a line arriving in many reads is searched once.
    scan: lines::Scan,
}

/// Everything `consume` needs from the loop besides the connection.
pub struct Context<'a> {
    pub batch: &'a mut BatchBuilder,
    pub now_ns: u64,
    pub max_frame: u32,
    /// The longest line (syslog, JSON lines, text) stored as one record; longer ones are cut.
    pub max_line: usize,
    pub shared: &'a Shared,
    pub log: &'a ServerLog,
}

const UNKNOWN_PROTOCOL: &[u8] = b"logmill: unrecognised protocol. This port takes native frames \
(schema/logmill.capnp), Python SocketHandler pickles, syslog, JSON lines, plain text lines, or the \
line `health`.\n";

impl Connection {
    pub fn new(stream: TcpStream, key: ConnKey, peer: SocketAddr) -> Self {
        Connection {
            stream,
            key,
            peer,
            phase: Phase::Detecting,
            origin: Origin::default(),
            want_acks: false,
            seen_records: false,
            input: Vec::new(),
            input_needed: None,
            output: Vec::new(),
            output_sent: 0,
            last_active: Instant::now(),
            in_flight: 0,
            written: 0,
            last_seq: 0,
            ack_due: false,
            writable: false,
            queued: false,
            eof: false,
            syslog: syslog::Continuation::Start,
            line_cut: false,
            scan: lines::Scan::default(),
        }
    }

    /// Takes what it can from `buf` and returns how many bytes it consumed; the caller keeps the
    /// rest for the next call. Complete frames are decoded and their records pushed to the batch.
    pub fn consume(&mut self, buf: &[u8], cx: &mut Context<'_>) -> usize {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.phase {
                Phase::Closing => return buf.len(),
                Phase::Detecting => match detect::detect(rest) {
                    Detect::Incomplete => {
                        self.input_needed = None;
                        return pos;
                    }
                    Detect::Decided { protocol, consumed } => {
                        pos += consumed;
                        self.start(protocol, cx);
                    }
                },
                Phase::Pickle => match frame::decode(rest, cx.max_frame) {
                    Ok(Frame::Complete { payload, consumed }) => {
                        pos += consumed;
                        self.pickle_frame(payload, cx);
                    }
                    Ok(Frame::Incomplete { needed }) => {
                        self.input_needed = needed;
                        return pos;
                    }
                    Err(too_large) => {
                        // SocketHandler never reads from its socket, so the log is the only place
                        // to say it; the stream cannot be resynchronised.
                        cx.log.warn(format_args!(
                            "connection from {} (Python SocketHandler): {too_large} (--max-frame); \
                             closing",
                            self.peer
                        ));
                        cx.shared.decode_errors.fetch_add(1, Ordering::Relaxed);
                        self.phase = Phase::Closing;
                        return buf.len();
                    }
                },
                Phase::Syslog => match syslog::decode_frame_resuming(
                    rest,
                    cx.max_line,
                    &mut self.syslog,
                    &mut self.scan,
                ) {
                    syslog::Frame::Message { msg, consumed } => {
                        pos += consumed;
                        if !msg.is_empty() {
                            self.push(&syslog::parse_message(msg), cx);
                        }
                    }
                    syslog::Frame::Truncated {
                        piece,
                        consumed,
                        first,
                    } => {
                        pos += consumed;
                        let mut record = if first {
                            syslog::parse_message(piece)
                        } else {
                            syslog::piece_record(piece)
                        };
                        record.truncated = true;
                        self.push(&record, cx);
                    }
                    syslog::Frame::Incomplete => {
                        self.input_needed = None;
                        return pos;
                    }
                },
                Phase::JsonLines | Phase::Text => match self.scan.next_line(rest, cx.max_line) {
                    Line::Complete { line, consumed } => {
                        pos += consumed;
                        let truncated = std::mem::take(&mut self.line_cut);
                        self.line_record(line, truncated, cx);
                    }
                    Line::Truncated { piece, consumed } => {
                        pos += consumed;
                        self.line_cut = true;
                        self.line_record(piece, true, cx);
                    }
                    Line::Incomplete => {
                        self.input_needed = None;
                        return pos;
                    }
                },
                Phase::Native => match frame::decode(rest, cx.max_frame) {
                    Ok(Frame::Complete { payload, consumed }) => {
                        pos += consumed;
                        self.native_frame(payload, cx);
                    }
                    Ok(Frame::Incomplete { needed }) => {
                        self.input_needed = needed;
                        return pos;
                    }
                    Err(too_large) => {
                        let message = format!(
                            "frame of {} bytes is over the limit of {} (--max-frame); closing, \
                             since the stream cannot be resynchronised",
                            too_large.len, too_large.max
                        );
                        cx.log
                            .warn(format_args!("connection from {}: {message}", self.peer));
                        cx.shared.decode_errors.fetch_add(1, Ordering::Relaxed);
                        self.send_error(ErrorKind::FrameTooLarge, message);
                        self.phase = Phase::Closing;
                        return buf.len();
                    }
                },
            }
        }
    }

    fn start(&mut self, protocol: Protocol, cx: &mut Context<'_>) {
        match protocol {
            Protocol::Native => self.phase = Phase::Native,
            Protocol::Pickle => self.phase = Phase::Pickle,
            Protocol::Syslog => self.phase = Phase::Syslog,
            Protocol::JsonLines => self.phase = Phase::JsonLines,
            Protocol::Text => self.phase = Phase::Text,
            Protocol::Health => {
                self.output
                    .extend_from_slice(cx.shared.health_line().as_bytes());
                self.phase = Phase::Closing;
            }
            Protocol::Unknown => {
                cx.log.warn(format_args!(
                    "connection from {}: unrecognised protocol; closed",
                    self.peer
                ));
                self.output.extend_from_slice(UNKNOWN_PROTOCOL);
                self.phase = Phase::Closing;
            }
        }
    }

    fn native_frame(&mut self, payload: &[u8], cx: &mut Context<'_>) {
        // A frame is all or nothing: if record 7 of a batch is broken, records 1-6 are taken back.
        let mark = cx.batch.mark();
        let key = self.key;
        let origin = &self.origin;
        let batch = &mut *cx.batch;
        let now_ns = cx.now_ns;
        match native::decode_client_frame(payload, |record| {
            batch.push(key, &record, origin, now_ns)
        }) {
            Ok(ClientFrame::Records(n)) => {
                self.seen_records = true;
                self.in_flight += n as u64;
                cx.shared
                    .records_received
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok(ClientFrame::Hello(hello)) => {
                if self.seen_records {
                    self.send_error(
                        ErrorKind::HelloNotFirst,
                        "hello must be the first frame; ignored".into(),
                    );
                    return;
                }
                self.origin = Origin::new(hello.app, hello.instance);
                self.want_acks = hello.want_acks;
                native::encode_server_frame(
                    &ServerFrame::Welcome {
                        server: cx.shared.name.clone(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        max_frame: cx.max_frame,
                    },
                    &mut self.output,
                );
            }
            Err(e) => {
                cx.batch.rollback(mark);
                let count = cx.shared.decode_errors.fetch_add(1, Ordering::Relaxed) + 1;
                cx.log.warn(format_args!(
                    "connection from {}: undecodable frame of {} bytes skipped ({e}); {count} \
                     decode errors so far",
                    self.peer,
                    payload.len()
                ));
                self.send_error(ErrorKind::Undecodable, format!("frame skipped: {e}"));
            }
        }
    }

    /// Hands one record to the batch. Records of the line and pickle protocols go through here;
    /// native frames push whole frames at once (see `native_frame`).
    fn push(&mut self, record: &Record<'_>, cx: &mut Context<'_>) {
        cx.batch.push(self.key, record, &self.origin, cx.now_ns);
        self.seen_records = true;
        self.in_flight += 1;
        cx.shared.records_received.fetch_add(1, Ordering::Relaxed);
    }

    fn pickle_frame(&mut self, payload: &[u8], cx: &mut Context<'_>) {
        match pickle::decode_record(payload) {
            Ok(record) => self.push(&record, cx),
            Err(e) => {
                let count = cx.shared.decode_errors.fetch_add(1, Ordering::Relaxed) + 1;
                cx.log.warn(format_args!(
                    "connection from {} (Python SocketHandler): pickle of {} bytes rejected ({e}); \
                     {count} decode errors so far",
                    self.peer,
                    payload.len()
                ));
            }
        }
    }

    /// One line of a JSON-lines or text connection (blank lines are skipped). A piece of a cut
    /// line is stored as text: a JSON object cut in two is no longer JSON.
    fn line_record(&mut self, line: &[u8], truncated: bool, cx: &mut Context<'_>) {
        if line.is_empty() {
            return;
        }
        let mut record = if self.phase == Phase::JsonLines && !truncated {
            jsonl::parse_line(line)
        } else {
            Record {
                body: Body::Message(crate::record::lossy_utf8(line)),
                ..Record::default()
            }
        };
        record.truncated = truncated;
        self.push(&record, cx);
    }

    /// The peer closed its side: a line protocol's last line may lack its newline; store it.
    /// Returns how many bytes had to be discarded (an unfinished frame).
    pub fn finish_input(&mut self, cx: &mut Context<'_>) -> usize {
        let input = std::mem::take(&mut self.input);
        let discarded = match self.phase {
            Phase::Text | Phase::JsonLines if !input.is_empty() => {
                let truncated = std::mem::take(&mut self.line_cut);
                self.line_record(&input, truncated, cx);
                0
            }
            Phase::Syslog if !input.is_empty() => {
                match self.syslog {
                    syslog::Continuation::Start if input[0].is_ascii_digit() => input.len(),
                    syslog::Continuation::Start => {
                        self.push(&syslog::parse_message(&input), cx);
                        0
                    }
                    syslog::Continuation::Line => {
                        self.push(&syslog::piece_record(&input), cx);
                        0
                    }
                    // An octet count promised more than arrived.
                    syslog::Continuation::Counted { .. } => input.len(),
                }
            }
            Phase::Closing => 0,
            _ => input.len(),
        };
        self.syslog = syslog::Continuation::Start;
        self.scan = lines::Scan::default();
        discarded
    }

    fn send_error(&mut self, kind: ErrorKind, message: String) {
        native::encode_server_frame(
            &ServerFrame::Error {
                kind: Some(kind),
                message,
            },
            &mut self.output,
        );
    }

    /// The writer wrote `count` more of this connection's records.
    pub fn completed(&mut self, count: u64, last_seq: u64) {
        self.in_flight = self.in_flight.saturating_sub(count);
        self.written += count;
        self.last_seq = last_seq;
        self.ack_due |= self.want_acks;
    }

    /// Queues one ack covering everything written so far (acks coalesce: one per loop turn).
    pub fn queue_ack(&mut self) {
        if std::mem::take(&mut self.ack_due) {
            native::encode_server_frame(
                &ServerFrame::Ack {
                    count: self.written,
                    last_seq: self.last_seq,
                },
                &mut self.output,
            );
        }
    }

    /// Queues an error frame, for loop-level reasons (idle timeout, shutdown, slow reader).
    pub fn queue_error(&mut self, kind: ErrorKind, message: String) {
        if self.phase == Phase::Native {
            self.send_error(kind, message);
        }
    }

    pub fn has_output(&self) -> bool {
        self.output_sent < self.output.len()
    }

    /// Nothing more will happen on this connection: close it.
    pub fn finished(&self) -> bool {
        let waiting_for_acks = self.want_acks && self.in_flight > 0;
        (self.phase == Phase::Closing || self.eof) && !self.has_output() && !waiting_for_acks
    }
}
