//! The `health` check on the TCP port: one status line, then the connection closes. There is no
//! session to keep; [`Session::start`](super::Session::start) calls [`answer`] and closes.

use super::{Context, Sink};

/// Queues the status line (`server::health`).
pub fn answer(sink: &mut Sink<'_>, cx: &mut Context<'_>) {
    sink.reply()
        .extend_from_slice(crate::server::health::health_line(cx.shared).as_bytes());
}
