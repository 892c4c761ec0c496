//! The `status` request on the TCP port: the connection registry's JSON (`apps::connections`),
//! one line, then the connection closes. Like `health`, there is no session to keep;
//! [`Session::start`](super::Session::start) calls [`answer`] and closes.

use super::{Context, Sink};
use crate::apps::connections::{MAX_STATUS_BYTES, status_json};
use crate::server::shared::Shared;

/// The registry's JSON with `"_forward": [...]` (each sink's state and lag, see
/// [`crate::forward::Status::to_json`]) when the server forwards; unchanged otherwise. The
/// registry leaves 4 KiB under the cap for it (a few sinks' figures).
pub fn with_forward(json: String, shared: &Shared) -> String {
    let sinks = shared.forward();
    if sinks.sinks().is_empty() {
        return json;
    }
    let Some(open) = json.strip_suffix('}') else {
        return json;
    };
    let comma = if open.trim_end() == "{" { "" } else { "," };
    let forward = sinks.to_json(crate::storage::search::filter::now_ns());
    format!("{open}{comma}\"_forward\":{forward}}}")
}

/// Queues the JSON and a newline, [`MAX_STATUS_BYTES`] at most, as the loops last published it.
pub fn answer(sink: &mut Sink<'_>, cx: &mut Context<'_>) {
    let rows = cx.shared.connections().rows();
    let out = sink.reply();
    let json = status_json(&rows, MAX_STATUS_BYTES - 4096);
    out.extend_from_slice(with_forward(json, cx.shared).as_bytes());
    out.push(b'\n');
}
