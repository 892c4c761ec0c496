//! Native frames (`schema/logmill.capnp`): a hello, batches of records, and the server's
//! welcome, ack and error frames. The only TCP protocol that replies as it goes.

use super::{Context, Farewell, Handler, Progress, Sink};
use crate::protocol::frame::{self, Frame};
use crate::protocol::native::{self, ClientFrame, ErrorKind, ServerFrame};
use crate::storage::bucket::{default_instance, valid_app_name};
use crate::storage::line::Origin;
use crate::storage::server_log::count;

/// A native connection's state: what its hello asked for.
#[derive(Debug, Default)]
pub struct Native {
    want_acks: bool,
    /// A hello is only valid before the first record.
    seen_records: bool,
}

impl Handler for Native {
    fn consume(&mut self, buf: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Progress {
        let mut used = 0;
        loop {
            match frame::decode(&buf[used..], cx.max_frame) {
                Ok(Frame::Complete { payload, consumed }) => {
                    used += consumed;
                    self.frame(payload, sink, cx);
                }
                Ok(Frame::Incomplete { needed }) => return Progress::Need { used, needed },
                Err(too_large) => {
                    let message = format!(
                        "frame of {} bytes is over the limit of {} (--max-frame); closing, \
                         since the stream cannot be resynchronised",
                        too_large.len, too_large.max
                    );
                    cx.log
                        .warn(format_args!("connection from {}: {message}", sink.peer));
                    cx.shared
                        .stats()
                        .decode_error(crate::stats::Decoder::Native);
                    send_error(sink, ErrorKind::FrameTooLarge, message);
                    return Progress::Close;
                }
            }
        }
    }

    /// The frame being shed cannot be held: `FrameTooLarge`, since a new kind would be an error
    /// older clients cannot decode.
    fn farewell(&mut self, why: &Farewell, sink: &mut Sink<'_>) {
        let kind = match why {
            Farewell::Shed { .. } => ErrorKind::FrameTooLarge,
            Farewell::IdleTimeout(_) => ErrorKind::IdleTimeout,
            Farewell::ShuttingDown => ErrorKind::ShuttingDown,
        };
        send_error(sink, kind, why.message());
    }

    fn wants_acks(&self) -> bool {
        self.want_acks
    }

    fn ack(&mut self, written: u64, last_seq: u64, sink: &mut Sink<'_>) {
        native::encode_server_frame(
            &ServerFrame::Ack {
                count: written,
                last_seq,
            },
            sink.reply(),
        );
    }
}

impl Native {
    fn frame(&mut self, payload: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) {
        // A frame is all or nothing: if record 7 of a batch is broken, records 1-6 are taken back.
        let mark = cx.batch.mark();
        let key = sink.key;
        let origin = &*sink.origin;
        let batch = &mut *cx.batch;
        let now_ns = cx.now_ns;
        match native::decode_client_frame(payload, |record| {
            batch.push(key, &record, origin, now_ns)
        }) {
            Ok(ClientFrame::Records(n)) => {
                self.seen_records = true;
                sink.received(n as u64, cx);
            }
            Ok(ClientFrame::Hello(hello)) => {
                if self.seen_records {
                    send_error(
                        sink,
                        ErrorKind::HelloNotFirst,
                        "hello must be the first frame; ignored".into(),
                    );
                    return;
                }
                self.want_acks = hello.want_acks;
                if !hello.app.is_empty() && !valid_app_name(&hello.app) {
                    // The app names a directory: refused here, before it is ever a path. The
                    // connection goes on, its records in the anonymous bucket, as the error says.
                    cx.log.warn(format_args!(
                        "connection from {}: hello refused: app name {:?} is not \
                         [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}; its records go to the anonymous bucket",
                        sink.peer, hello.app
                    ));
                    send_error(
                        sink,
                        ErrorKind::Undecodable,
                        format!(
                            "hello refused: app name {:?} is not [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}; \
                             this connection's records go to the anonymous bucket",
                            hello.app
                        ),
                    );
                    return;
                }
                let instance = default_instance(&hello.app, hello.instance, sink.peer);
                sink.set_origin(Origin::new(hello.app, instance));
                native::encode_server_frame(
                    &ServerFrame::Welcome {
                        server: cx.shared.name().to_string(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        max_frame: cx.max_frame,
                    },
                    sink.reply(),
                );
            }
            Err(e) => {
                cx.batch.rollback(mark);
                let errors = cx
                    .shared
                    .stats()
                    .decode_error(crate::stats::Decoder::Native);
                cx.log.warn(format_args!(
                    "connection from {}: undecodable frame of {} skipped ({e}); {} so far",
                    sink.peer,
                    count(payload.len() as u64, "byte"),
                    count(errors, "decode error")
                ));
                send_error(sink, ErrorKind::Undecodable, format!("frame skipped: {e}"));
            }
        }
    }
}

fn send_error(sink: &mut Sink<'_>, kind: ErrorKind, message: String) {
    native::encode_server_frame(
        &ServerFrame::Error {
            kind: Some(kind),
            message,
        },
        sink.reply(),
    );
}
