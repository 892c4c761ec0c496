//! JSON lines and plain text: one record per line, cut by `protocol::lines`. They differ only
//! in how a line becomes a record, so they share this session. A line longer than `--max-line`
//! is stored in pieces flagged `truncated`; on a shed, the client is told why in one line.

use super::{Context, Farewell, Handler, Progress, Sink};
use crate::protocol::jsonl;
use crate::protocol::lines::{self, Line};
use crate::record::{Body, Record};

/// A line connection's state.
#[derive(Debug)]
pub struct Lines {
    /// JSON lines (else text).
    json: bool,
    /// The current line was cut at the line limit; its remaining pieces are stored flagged
    /// `truncated` too.
    cut: bool,
    /// How much of the line at the front of the buffer was already searched for its newline, so
    /// a long line arriving in many reads is searched once, not once per read.
    scan: lines::Scan,
}

impl Lines {
    pub fn json() -> Self {
        Lines {
            json: true,
            cut: false,
            scan: lines::Scan::default(),
        }
    }

    /// JSON lines (else text).
    pub fn is_json(&self) -> bool {
        self.json
    }

    pub fn text() -> Self {
        Lines {
            json: false,
            cut: false,
            scan: lines::Scan::default(),
        }
    }

    /// One line (blank lines are skipped). A piece of a cut line is stored as text: a JSON
    /// object cut in two is no longer JSON.
    fn record(&self, line: &[u8], truncated: bool, sink: &mut Sink<'_>, cx: &mut Context<'_>) {
        if line.is_empty() {
            return;
        }
        let mut record = if self.json && !truncated {
            jsonl::parse_line(line)
        } else {
            Record {
                body: Body::Message(crate::record::lossy_utf8(line)),
                ..Record::default()
            }
        };
        record.truncated = truncated;
        sink.push(&record, cx);
    }
}

impl Handler for Lines {
    fn consume(&mut self, buf: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Progress {
        let mut used = 0;
        loop {
            match self.scan.next_line(&buf[used..], cx.max_line) {
                Line::Complete { line, consumed } => {
                    used += consumed;
                    let truncated = std::mem::take(&mut self.cut);
                    self.record(line, truncated, sink, cx);
                }
                Line::Truncated { piece, consumed } => {
                    used += consumed;
                    self.cut = true;
                    self.record(piece, true, sink, cx);
                }
                Line::Incomplete => return Progress::Need { used, needed: None },
            }
        }
    }

    /// The last line may lack its newline: store it.
    fn finish(&mut self, rest: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> usize {
        if !rest.is_empty() {
            let truncated = std::mem::take(&mut self.cut);
            self.record(rest, truncated, sink, cx);
        }
        0
    }

    /// Only a shed is said: idle and shutdown closes were never answered on these protocols.
    fn farewell(&mut self, why: &Farewell, sink: &mut Sink<'_>) {
        if let Farewell::Shed { .. } = why {
            let out = sink.reply();
            out.extend_from_slice(b"logmill: ");
            out.extend_from_slice(why.message().as_bytes());
            out.push(b'\n');
        }
    }
}
