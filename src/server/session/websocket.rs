//! WebSocket ingestion (RFC 6455): the session a connection runs once the HTTP side has answered
//! `GET /v1/ws` with `101 Switching Protocols`. Frames are cut and checked by
//! `protocol::websocket`; this file turns messages into records and replies in frames. The
//! upgrade (headers, token, app, `?acks=1`) is the HTTP side's: this session is handed its
//! outcome ([`Session::websocket`](super::Session::websocket)).
//!
//! - A text message is one JSON record or a JSON array of them, mapped as JSON lines are
//!   (`protocol::jsonl::parse_message`); text that is not JSON is kept as a `parse_error` record.
//! - A binary message is one native `ClientFrame` payload (`schema/logmill.capnp`, without the
//!   4-byte length prefix): records or a batch, all or nothing. A hello is ignored (one line in
//!   `_server.log` per connection): on WebSocket the app, instance and acks are the upgrade's.
//! - With acks wanted, the server sends text frames `{"ack":COUNT,"last_seq":N}` as records are
//!   written, cumulative and coalesced as native acks are (one per loop turn at most).
//! - A ping is answered with a pong; a close is echoed (its code, or 1000) and the connection
//!   closes. Errors (`protocol::websocket::Error`, an undecodable binary message) close with
//!   their code and a reason, and a line in `_server.log`. The server's own closes (shed, idle,
//!   shutdown) are close frames too ([`WebSocket::farewell`]).
//!
//! Nothing follows a close frame (RFC 6455 5.5.1). So when the session decides to close while
//! the client waits for acks of records still being written, the close is owed and sent after
//! the ack that covers them.

use super::{Context, Farewell, Handler, Progress, Sink};
use crate::protocol::jsonl;
use crate::protocol::native::{self, ClientFrame};
use crate::protocol::websocket::{self, Decoded, Decoder, Message, code};
use crate::storage::server_log::count;

// A message of `--max-frame` bytes in one frame must fit the input a connection may hold.
const _: () = assert!(websocket::MAX_HEADER_LEN <= crate::config::INPUT_SLACK);

/// A WebSocket connection's state.
#[derive(Debug)]
pub struct WebSocket {
    decoder: Decoder,
    want_acks: bool,
    /// A close the session decided on while acked records were still being written: sent after
    /// the ack that covers the last of them.
    owed_close: Option<(u16, String)>,
    /// A close frame went out: no frame may follow it.
    closed: bool,
    /// A hello was seen (and ignored) already: said once in `_server.log`, not per frame.
    hello_seen: bool,
}

impl WebSocket {
    /// `want_acks`: the upgrade asked for acks (`?acks=1`).
    pub fn new(want_acks: bool) -> Self {
        WebSocket {
            decoder: Decoder::new(),
            want_acks,
            owed_close: None,
            closed: false,
            hello_seen: false,
        }
    }

    /// Closes with `code` and `reason`: now, or once the client's records are written and
    /// acked (see the module doc).
    fn close(&mut self, code: u16, reason: String, sink: &mut Sink<'_>) {
        if self.closed || self.owed_close.is_some() {
            return;
        }
        if self.want_acks && *sink.in_flight > 0 {
            self.owed_close = Some((code, reason));
        } else {
            self.send_close(code, &reason, sink);
        }
    }

    fn send_close(&mut self, code: u16, reason: &str, sink: &mut Sink<'_>) {
        websocket::encode_close(code, reason, sink.reply());
        self.closed = true;
    }
}

/// What one message asks of the session beyond its records.
enum Then {
    GoOn,
    /// Close with this code and reason (an echo, or an error already logged).
    Close(u16, String),
}

impl Handler for WebSocket {
    fn consume(&mut self, buf: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Progress {
        if self.closed || self.owed_close.is_some() {
            return Progress::Close;
        }
        let max_message = cx.max_frame as usize;
        let mut used = 0;
        let progress = loop {
            let then = match self.decoder.decode(&buf[used..], max_message) {
                Ok(Decoded::Frame { consumed, message }) => {
                    used += consumed;
                    match message {
                        None => Then::GoOn,
                        Some(Message::Text(text)) => {
                            // The mapping JSON lines use; each record is pushed as it comes.
                            if !text.is_empty() {
                                jsonl::parse_message(text.as_bytes(), |record| {
                                    sink.push(&record, cx)
                                });
                            }
                            Then::GoOn
                        }
                        Some(Message::Binary(payload)) => {
                            binary(payload, &mut self.hello_seen, sink, cx)
                        }
                        Some(Message::Ping(payload)) => {
                            websocket::encode_pong(payload, sink.reply());
                            Then::GoOn
                        }
                        Some(Message::Pong(_)) => Then::GoOn,
                        Some(Message::Close(close)) => {
                            Then::Close(close.map_or(code::NORMAL, |c| c.code), String::new())
                        }
                    }
                }
                Ok(Decoded::Incomplete { needed }) => break Progress::Need { used, needed },
                Err(e) => {
                    let errors = cx
                        .shared
                        .stats()
                        .decode_error(crate::stats::Decoder::WebSocket);
                    cx.log.warn(format_args!(
                        "connection from {}: websocket: {e}; closed with {} ({} so far)",
                        sink.peer,
                        e.close_code(),
                        count(errors, "decode error")
                    ));
                    Then::Close(e.close_code(), e.to_string())
                }
            };
            if let Then::Close(code, reason) = then {
                self.close(code, reason, sink);
                break Progress::Close;
            }
        };
        self.decoder.release();
        progress
    }

    /// The client went away without a close frame: its unfinished frame and the fragments of
    /// an unfinished message are lost.
    fn finish(&mut self, rest: &[u8], _sink: &mut Sink<'_>, _cx: &mut Context<'_>) -> usize {
        rest.len() + self.decoder.held()
    }

    /// Shed, idle and shutdown closes, each with the code that tells the client what to do:
    /// 1013 (try again later: the server is short of memory, not the client wrong), 1008 (a
    /// rule of this server, `--idle-timeout`), 1001 (going away). A close already owed gives way
    /// to this one, which is final.
    fn farewell(&mut self, why: &Farewell, sink: &mut Sink<'_>) {
        if self.closed {
            return;
        }
        self.owed_close = None;
        let (code, reason) = match why {
            // The shared sentence is longer than the 123 bytes a close frame has room for.
            Farewell::Shed { held } => (
                code::TRY_AGAIN_LATER,
                format!(
                    "server input memory (--max-input) is full and this connection held the \
                     most ({held} bytes); closing"
                ),
            ),
            Farewell::IdleTimeout(_) => (code::POLICY, why.message()),
            Farewell::ShuttingDown => (code::GOING_AWAY, why.message()),
        };
        self.send_close(code, &reason, sink);
    }

    fn wants_acks(&self) -> bool {
        self.want_acks
    }

    /// The fragments of an unfinished message (the decoder's reassembly buffer, at most
    /// `--max-frame`): unfinished input like a cut frame, counted against `--max-input`.
    fn held(&self) -> usize {
        self.decoder.held()
    }

    /// One text frame per call (the connection coalesces: one per loop turn at most), then the
    /// owed close once nothing is in flight.
    fn ack(&mut self, written: u64, last_seq: u64, sink: &mut Sink<'_>) {
        if self.closed {
            return;
        }
        let mut ack = itoa::Buffer::new();
        let mut seq = itoa::Buffer::new();
        let text = [
            "{\"ack\":",
            ack.format(written),
            ",\"last_seq\":",
            seq.format(last_seq),
            "}",
        ]
        .concat();
        websocket::encode_text(&text, sink.reply());
        if *sink.in_flight == 0
            && let Some((code, reason)) = self.owed_close.take()
        {
            self.send_close(code, &reason, sink);
        }
    }
}

/// A binary message: one native `ClientFrame` payload, all its records or none.
fn binary(
    payload: &[u8],
    hello_seen: &mut bool,
    sink: &mut Sink<'_>,
    cx: &mut Context<'_>,
) -> Then {
    let mark = cx.batch.mark();
    let key = sink.key;
    let origin = &*sink.origin;
    let batch = &mut *cx.batch;
    let now_ns = cx.now_ns;
    match native::decode_client_frame(payload, |record| batch.push(key, &record, origin, now_ns)) {
        Ok(ClientFrame::Records(n)) => {
            sink.received(n as u64, cx);
            Then::GoOn
        }
        Ok(ClientFrame::Hello(_)) => {
            if !std::mem::replace(hello_seen, true) {
                cx.log.info(format_args!(
                    "connection from {}: websocket: native hello ignored (the app, instance \
                     and acks of a WebSocket connection are its upgrade request's)",
                    sink.peer
                ));
            }
            Then::GoOn
        }
        Err(e) => {
            cx.batch.rollback(mark);
            let errors = cx
                .shared
                .stats()
                .decode_error(crate::stats::Decoder::WebSocket);
            cx.log.warn(format_args!(
                "connection from {}: websocket: binary message of {} is not a native frame \
                 ({e}); closed with {} ({} so far)",
                sink.peer,
                count(payload.len() as u64, "byte"),
                code::INVALID_DATA,
                count(errors, "decode error")
            ));
            Then::Close(
                code::INVALID_DATA,
                format!("binary message is not a native ClientFrame: {e}"),
            )
        }
    }
}
