//! The `status` request on the TCP port: the connection registry's JSON (`apps::connections`),
//! one line, then the connection closes. Like `health`, there is no session to keep;
//! [`Session::start`](super::Session::start) calls [`answer`] and closes.

use super::{Context, Sink};
use crate::apps::connections::{MAX_STATUS_BYTES, status_json};

/// Queues the JSON and a newline, [`MAX_STATUS_BYTES`] at most, as the loops last published it.
pub fn answer(sink: &mut Sink<'_>, cx: &mut Context<'_>) {
    let rows = cx.shared.connections().rows();
    let mut json = status_json(
        &rows,
        MAX_STATUS_BYTES - 1 - crate::server::ship::STATUS_ROOM,
    );
    crate::server::ship::add_status(&mut json, cx.shared);
    let out = sink.reply();
    out.extend_from_slice(json.as_bytes());
    out.push(b'\n');
}
