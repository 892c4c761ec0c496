//! Syslog over TCP, either framing of RFC 6587 (decided per message by `protocol::syslog`).
//! Senders never read, so nothing is ever replied. A message longer than `--max-line` is stored
//! in pieces, each flagged `truncated`.

use super::{Context, Handler, Progress, Sink};
use crate::protocol::lines;
use crate::protocol::syslog::{self, Continuation};

/// Where the stream is: between messages, or inside a long one being stored in pieces.
#[derive(Debug, Default)]
pub struct Syslog {
    continuation: Continuation,
    /// How much of a line-framed message at the front of the buffer was already searched for
    /// its newline, so a long message arriving in many reads is searched once.
    scan: lines::Scan,
}

impl Handler for Syslog {
    fn consume(&mut self, buf: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Progress {
        let mut used = 0;
        loop {
            match syslog::decode_frame_resuming(
                &buf[used..],
                cx.max_line,
                &mut self.continuation,
                &mut self.scan,
            ) {
                syslog::Frame::Message { msg, consumed } => {
                    used += consumed;
                    if !msg.is_empty() {
                        sink.push(&syslog::parse_message(msg), cx);
                    }
                }
                syslog::Frame::Truncated {
                    piece,
                    consumed,
                    first,
                } => {
                    used += consumed;
                    let mut record = if first {
                        syslog::parse_message(piece)
                    } else {
                        syslog::piece_record(piece)
                    };
                    record.truncated = true;
                    sink.push(&record, cx);
                }
                syslog::Frame::Incomplete => return Progress::Need { used, needed: None },
            }
        }
    }

    /// A line-framed message may end with the stream; an octet-counted one that promised more
    /// than arrived is discarded.
    fn finish(&mut self, rest: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> usize {
        let continuation = std::mem::take(&mut self.continuation);
        if rest.is_empty() {
            return 0;
        }
        match continuation {
            Continuation::Start if rest[0].is_ascii_digit() => rest.len(),
            Continuation::Start => {
                sink.push(&syslog::parse_message(rest), cx);
                0
            }
            Continuation::Line => {
                sink.push(&syslog::piece_record(rest), cx);
                0
            }
            Continuation::Counted { .. } => rest.len(),
        }
    }
}
