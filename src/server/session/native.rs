//! Native frames (`schema/logmill.capnp`): a hello, batches of records, and the server's
//! welcome, ack and error frames. The only TCP protocol that replies as it goes, and the only
//! one that carries a token: the hello's, judged once per connection by the `--auth` gate
//! ([`crate::apps::gate`]) before any record of the connection is taken.

use super::{Context, Farewell, Handler, Progress, Sink};
use crate::apps::gate::{Admit, Refusal};
use crate::protocol::frame::{self, Frame};
use crate::protocol::native::{self, ClientFrame, ErrorKind, Hello, ServerFrame};
use crate::storage::bucket::{default_instance, valid_app_name};
use crate::storage::line::Origin;
use crate::storage::server_log::count;

/// A native connection's state: what its hello asked for.
#[derive(Debug, Default)]
pub struct Native {
    want_acks: bool,
    /// A hello is only valid before the first record.
    seen_records: bool,
    /// The hello was taken (and its token judged): a second one is ignored, so a connection is
    /// judged once.
    said_hello: bool,
}

/// What became of a frame: the stream goes on, or the connection is refused and closes.
enum Next {
    Go,
    Close,
}

impl Handler for Native {
    fn consume(&mut self, buf: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Progress {
        let mut used = 0;
        loop {
            match frame::decode(&buf[used..], cx.max_frame) {
                Ok(Frame::Complete { payload, consumed }) => {
                    used += consumed;
                    if let Next::Close = self.frame(payload, sink, cx) {
                        // Refused: nothing after this frame is read, let alone stored.
                        return Progress::Close;
                    }
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
    fn frame(&mut self, payload: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Next {
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
                if !self.said_hello
                    && sink.certified().is_none()
                    && !cx.shared.gate().admits_anonymous()
                {
                    // Records with no hello, so no token, under `--auth required`: taken back
                    // before the batch leaves the loop.
                    cx.batch.rollback(mark);
                    refuse(&Refusal::TokenRequired, sink, cx);
                    return Next::Close;
                }
                self.seen_records = true;
                sink.received(n as u64, cx);
                Next::Go
            }
            Ok(ClientFrame::Hello(hello)) => self.hello(hello, sink, cx),
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
                Next::Go
            }
        }
    }

    /// The hello: its app name checked, its token judged by the gate (once per connection),
    /// and the connection's origin set: whose bucket its records go to, what the lines show.
    fn hello(&mut self, hello: Hello, sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Next {
        if self.seen_records || self.said_hello {
            send_error(
                sink,
                ErrorKind::HelloNotFirst,
                "hello must be the first frame, and comes once; ignored".into(),
            );
            return Next::Go;
        }
        self.said_hello = true;
        if !hello.app.is_empty() && !valid_app_name(&hello.app) {
            self.want_acks = hello.want_acks;
            // The app names a directory: refused here, before it is ever a path. The
            // connection goes on, its records in the anonymous bucket, as the error says
            // (unless anonymous connections are refused).
            let required = !cx.shared.gate().admits_anonymous();
            let then = if required {
                "closing, since this server takes no anonymous connections (--auth required)"
            } else {
                "this connection's records go to the anonymous bucket"
            };
            let message = format!(
                "hello refused: app name {:?} is not [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}; {then}",
                hello.app
            );
            cx.log
                .warn(format_args!("connection from {}: {message}", sink.peer));
            if required {
                cx.shared.stats().count_refused_auth(None);
                send_error(sink, ErrorKind::Unauthorized, message);
                return Next::Close;
            }
            send_error(sink, ErrorKind::Undecodable, message);
            return Next::Go;
        }
        let gate = cx.shared.gate();
        let admitted = match sink.certified() {
            Some(app) => gate.admit_certified(&hello.token, &hello.app, app, unix_now()),
            None => gate.admit(&hello.token, &hello.app, unix_now()),
        };
        let origin = match admitted {
            Ok(Admit::App(app)) => {
                let instance = default_instance(&app, hello.instance, sink.peer);
                Origin::new(app, instance)
            }
            Ok(Admit::Anonymous { label }) => {
                let instance = default_instance(&label, hello.instance, sink.peer);
                Origin::anonymous(label, instance)
            }
            Err(refusal) => {
                refuse(&refusal, sink, cx);
                return Next::Close;
            }
        };
        sink.set_origin(origin);
        self.want_acks = hello.want_acks;
        native::encode_server_frame(
            &ServerFrame::Welcome {
                server: cx.shared.name().to_string(),
                version: env!("CARGO_PKG_VERSION").into(),
                max_frame: cx.max_frame,
            },
            sink.reply(),
        );
        Next::Go
    }
}

/// Tells the client why it is refused (`unauthorized`), logs it and counts it; the caller
/// closes the connection.
fn refuse(refusal: &Refusal, sink: &mut Sink<'_>, cx: &mut Context<'_>) {
    let message = refusal.message();
    let refused = cx.shared.stats().count_refused_auth(refusal.app());
    let detail = refusal
        .log_detail()
        .map_or_else(String::new, |why| format!(" ({why})"));
    cx.log.warn(format_args!(
        "connection from {}: {message}{detail}; closed ({} so far)",
        sink.peer,
        count(refused, "refusal")
    ));
    send_error(sink, ErrorKind::Unauthorized, message);
}

/// Seconds since the epoch, for token times (`exp`, `nbf`); a clock before 1970 reads as 0.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
