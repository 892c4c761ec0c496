//! Server-Sent Events: a connection that, after its HTTP answer's head
//! (`Content-Type: text/event-stream`), only receives. The console's live tail
//! (`GET /api/tail`) is one: the HTTP session answers with the head and switches to this session
//! (module doc of `server::session`, "Switching sessions"), which the loop then turns every
//! [`STREAM_EVERY`] ([`Handler::stream`]).
//!
//! What it sends comes from a [`Feed`]: a function called at each turn that returns the new
//! events' data (one JSON text each), or why the stream must end. This session knows nothing of
//! files or searches; the feed does (`storage::search::Follower` for the tail).
//!
//! # A slow reader never slows anything else
//!
//! Nothing waits for the client: at each turn the feed is read, and its events are queued on the
//! connection. When the client does not read, the events it has not been sent pile up; past
//! [`MAX_BACKLOG`] bytes the stream ends with a `notice` event saying so, and the connection
//! closes once that is sent. The writer never knows a tail exists.
//!
//! A comment line goes out every [`KEEPALIVE`] when there is nothing to send, so proxies and
//! browsers keep the connection; a stream is never idle in `--idle-timeout`'s sense.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::{Context, Handler, Progress, Sink};

/// How often the loop turns every stream: the tail's latency bound.
pub const STREAM_EVERY: Duration = Duration::from_millis(200);

/// Unsent bytes past which a client is too slow for its stream, which then ends.
pub const MAX_BACKLOG: usize = 256 * 1024;

/// A comment line at least this often.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Where the events come from: each call returns the data of the events that are new since the
/// last call, or the reason the stream cannot go on.
pub type Feed = Box<dyn FnMut() -> Result<Vec<String>, String> + Send>;

/// The head of an event-stream answer (HTTP/1.1, kept open, no length).
pub fn head(extra: &[(&str, &str)]) -> Vec<u8> {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
         Connection: keep-alive\r\nX-Accel-Buffering: no\r\n",
    );
    for (name, value) in extra {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// What the loop does with a stream after its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Still streaming.
    Go,
    /// Ended (a notice was queued): close once the output is sent.
    End,
}

/// One event stream.
pub struct Events {
    feed: Feed,
    /// The event type every data item is sent as (`record` for the tail).
    event: &'static str,
    last_sent: Instant,
    ended: bool,
}

impl Events {
    pub fn new(event: &'static str, feed: Feed) -> Events {
        Events {
            feed,
            event,
            last_sent: Instant::now(),
            ended: false,
        }
    }

    /// Queues one event. `data` is one line (JSON has no raw newlines); any that slipped in are
    /// sent as further `data:` lines, which the client joins back.
    fn push(out: &mut Vec<u8>, event: &str, data: &str) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        for line in data.split('\n') {
            out.extend_from_slice(b"\ndata: ");
            out.extend_from_slice(line.trim_end_matches('\r').as_bytes());
        }
        out.extend_from_slice(b"\n\n");
    }

    /// A `notice` event saying why the stream ends, then the end.
    fn end(&mut self, out: &mut Vec<u8>, why: &str) -> Turn {
        let data = serde_json::json!({ "ended": why }).to_string();
        Events::push(out, "notice", &data);
        self.ended = true;
        Turn::End
    }
}

impl Handler for Events {
    /// A client sends nothing after its request; whatever it does send is dropped.
    fn consume(&mut self, buf: &[u8], _sink: &mut Sink<'_>, _cx: &mut Context<'_>) -> Progress {
        Progress::Need {
            used: buf.len(),
            needed: None,
        }
    }

    fn streams(&self) -> bool {
        !self.ended
    }

    fn stream(&mut self, now: Instant, backlog: usize, sink: &mut Sink<'_>) -> Turn {
        if self.ended {
            return Turn::End;
        }
        let out = sink.reply();
        if backlog > MAX_BACKLOG {
            return self.end(
                out,
                &format!(
                    "dropped: this client left {backlog} bytes unread (the limit is \
                     {MAX_BACKLOG}); reconnect to follow again"
                ),
            );
        }
        let before = out.len();
        match (self.feed)() {
            Ok(events) => {
                for data in events {
                    Events::push(out, self.event, &data);
                    if backlog + (out.len() - before) > MAX_BACKLOG {
                        return self.end(
                            out,
                            "dropped: more events than this client reads; reconnect to follow \
                             again",
                        );
                    }
                }
            }
            Err(why) => return self.end(out, &why),
        }
        if out.len() > before {
            self.last_sent = now;
        } else if now.duration_since(self.last_sent) >= KEEPALIVE {
            out.extend_from_slice(b": keepalive\n\n");
            self.last_sent = now;
        }
        Turn::Go
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::server::session::testing::Conn;

    /// A feed a test fills by hand.
    fn feed() -> (Arc<Mutex<Vec<String>>>, Feed) {
        let queue = Arc::new(Mutex::new(Vec::new()));
        let taken = queue.clone();
        let feed: Feed = Box::new(move || Ok(std::mem::take(&mut *taken.lock().unwrap())));
        (queue, feed)
    }

    #[test]
    fn events_go_out_as_they_come_with_keepalives_between() {
        let (queue, feed) = feed();
        let mut events = Events::new("record", feed);
        let mut conn = Conn::new();
        let t0 = Instant::now();
        assert_eq!(events.stream(t0, 0, &mut conn.sink()), Turn::Go);
        assert!(conn.output.is_empty(), "nothing new, not yet a keepalive");
        queue
            .lock()
            .unwrap()
            .extend([r#"{"seq":1}"#.to_string(), "a\nb".into()]);
        assert_eq!(events.stream(t0, 0, &mut conn.sink()), Turn::Go);
        assert_eq!(
            String::from_utf8(std::mem::take(&mut conn.output)).unwrap(),
            "event: record\ndata: {\"seq\":1}\n\nevent: record\ndata: a\ndata: b\n\n"
        );
        events.stream(t0 + KEEPALIVE, 0, &mut conn.sink());
        assert_eq!(conn.output, b": keepalive\n\n");
        assert!(events.streams());
    }

    #[test]
    fn a_slow_reader_is_dropped_with_a_notice() {
        let (queue, feed) = feed();
        let mut events = Events::new("record", feed);
        let mut conn = Conn::new();
        queue.lock().unwrap().push("x".into());
        let turn = events.stream(Instant::now(), MAX_BACKLOG + 1, &mut conn.sink());
        assert_eq!(turn, Turn::End);
        let out = String::from_utf8(conn.output.clone()).unwrap();
        assert!(
            out.starts_with("event: notice\ndata: {\"ended\":\"dropped: "),
            "{out}"
        );
        assert!(!out.contains("event: record"), "{out}");
        assert!(!events.streams());

        // Too much at once: the events that fit, then the notice.
        let (queue, more) = self::feed();
        let mut events = Events::new("record", more);
        let mut conn = Conn::new();
        let big = "y".repeat(100 * 1024);
        queue
            .lock()
            .unwrap()
            .extend([big.clone(), big.clone(), big.clone(), big]);
        assert_eq!(
            events.stream(Instant::now(), 0, &mut conn.sink()),
            Turn::End
        );
        let out = String::from_utf8(conn.output.clone()).unwrap();
        assert_eq!(
            out.matches("event: record").count(),
            3,
            "the third crosses the limit"
        );
        assert!(out.ends_with("\n\n") && out.contains("event: notice"));
    }

    #[test]
    fn a_failing_feed_ends_the_stream_saying_why() {
        let feed: Feed = Box::new(|| Err("the bucket was removed".into()));
        let mut events = Events::new("record", feed);
        let mut conn = Conn::new();
        assert_eq!(
            events.stream(Instant::now(), 0, &mut conn.sink()),
            Turn::End
        );
        assert_eq!(
            conn.output,
            b"event: notice\ndata: {\"ended\":\"the bucket was removed\"}\n\n"
        );
    }
}
