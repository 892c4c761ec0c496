//! Python `logging.handlers.SocketHandler`: length-prefixed pickles, one record each. The
//! sender never reads its socket, so errors can only go to the server's log.

use super::{Context, Handler, Progress, Sink};
use crate::protocol::frame::{self, Frame};
use crate::protocol::pickle;
use crate::storage::server_log::count;

/// A pickle stream keeps no state between frames.
pub struct Pickle;

impl Handler for Pickle {
    fn consume(&mut self, buf: &[u8], sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Progress {
        let mut used = 0;
        loop {
            match frame::decode(&buf[used..], cx.max_frame) {
                Ok(Frame::Complete { payload, consumed }) => {
                    used += consumed;
                    match pickle::decode_record(payload) {
                        Ok(record) => sink.push(&record, cx),
                        Err(e) => {
                            let errors = cx
                                .shared
                                .stats()
                                .decode_error(crate::stats::Decoder::Pickle);
                            cx.log.warn(format_args!(
                                "connection from {} (Python SocketHandler): pickle of {} \
                                 rejected ({e}); {} so far",
                                sink.peer,
                                count(payload.len() as u64, "byte"),
                                count(errors, "decode error")
                            ));
                        }
                    }
                }
                Ok(Frame::Incomplete { needed }) => return Progress::Need { used, needed },
                Err(too_large) => {
                    // The stream cannot be resynchronised.
                    cx.log.warn(format_args!(
                        "connection from {} (Python SocketHandler): {too_large} (--max-frame); \
                         closing",
                        sink.peer
                    ));
                    cx.shared
                        .stats()
                        .decode_error(crate::stats::Decoder::Pickle);
                    return Progress::Close;
                }
            }
        }
    }
}
