//! For the sessions' tests: a loop's side without a loop and a connection's side without a
//! connection, so a session can be fed bytes and its records and replies checked.

use std::sync::Arc;

use super::{Context, Sink};
use crate::apps::connections::Entry;
use crate::apps::gate::Gate;
use crate::config::Format;
use crate::server::shared::Shared;
use crate::stats::Stats;
use crate::storage::line::{LineFormatter, Origin};
use crate::storage::mailbox::{Handoff, Mailbox};
use crate::storage::server_log::ServerLog;
use crate::storage::{BatchBuilder, ConnKey};

/// A loop's side without a loop: a batch, the shared state and a log.
pub struct Loop {
    pub batch: BatchBuilder,
    pub shared: Shared,
    pub log: ServerLog,
    _poll: mio::Poll,
}

impl Loop {
    /// Text lines, no `--auth`.
    pub fn new() -> Self {
        Loop::with(Format::Text, Gate::off())
    }

    /// Lines in `format`, tokens judged by `gate`.
    pub fn with(format: Format, gate: Gate) -> Self {
        Loop::with_max_pending(format, gate, usize::MAX)
    }

    /// As [`Loop::with`], the writer full once `max_pending` bytes wait (0: full from the
    /// start, the server's backpressure).
    pub fn with_max_pending(format: Format, gate: Gate, max_pending: usize) -> Self {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let handoff = Arc::new(Handoff::new(max_pending, vec![Mailbox::new(waker)]));
        Loop {
            batch: BatchBuilder::new(0, LineFormatter::new(format), 1),
            shared: Shared::new("test".into(), handoff, Arc::new(Stats::default())).with_gate(gate),
            log: ServerLog::stderr_only(),
            _poll: poll,
        }
    }

    pub fn cx(&mut self) -> Context<'_> {
        Context {
            batch: &mut self.batch,
            now_ns: 0,
            max_frame: 1024,
            max_line: 64,
            shared: &self.shared,
            log: &self.log,
        }
    }
}

/// A connection's side without a connection.
pub struct Conn {
    pub origin: Origin,
    pub in_flight: u64,
    pub entry: Entry,
    pub output: Vec<u8>,
}

impl Conn {
    pub fn new() -> Self {
        Conn {
            origin: Origin::default(),
            in_flight: 0,
            entry: Entry::accepted(None),
            output: Vec::new(),
        }
    }

    pub fn sink(&mut self) -> Sink<'_> {
        Sink::new(
            ConnKey {
                token: 0,
                serial: 0,
            },
            "127.0.0.1:1".parse().unwrap(),
            None,
            &mut self.origin,
            &mut self.in_flight,
            &mut self.entry,
            &mut self.output,
        )
    }
}
