//! A push call's messages, from bytes to records in the loop's batch: its token judged by the
//! gate ([`admit`], once per call; gRPC-Web over HTTP/1.1 uses it too), a compressed message
//! inflated ([`inflate`]), and each message decoded and its records pushed: `PushRequest`
//! ([`push_records`]), `LogRecord` ([`push_record`]), OTLP's `ExportLogsServiceRequest`
//! ([`push_otlp`], refused with `UNAVAILABLE` under backpressure: [`otlp_backpressure`]).
//! [`GrpcContext`] is what they push into: the loop's batch, clock, shared state and log.
//!
//! `calls` decides when (a call's life, flow control, the FIFO of records in flight); this file
//! only turns one message into records.

use crate::apps::gate::Admit;
use crate::protocol::grpc::{self, Code, Encoding, Status};
use crate::protocol::otlp;
use crate::server::shared::Shared;
use crate::storage::bucket::default_instance;
use crate::storage::line::Origin;
use crate::storage::server_log::ServerLog;
use crate::storage::{BatchBuilder, ConnKey};

/// What driving a connection needs from the loop: the batch records go to, and the loop's
/// shared state and log.
pub struct GrpcContext<'a> {
    pub batch: &'a mut BatchBuilder,
    /// Stamps records that carry no time of their own.
    pub now_ns: u64,
    pub shared: &'a Shared,
    pub log: &'a ServerLog,
}

/// Why a call was refused by `--auth`: what the client is told (`grpc-message`), what only the
/// log gets, and the app a genuine token names (for the per-app count).
pub(crate) struct Unauthenticated {
    pub(crate) message: String,
    pub(crate) detail: String,
    pub(crate) app: Option<String>,
}

/// A push call's token (its `authorization` metadata, `Bearer TOKEN`) judged by the gate, once
/// per call, and the origin of its records: the token's app and bucket, or anonymous with the
/// `logmill-app` it names as a label (see [`crate::apps::gate`]). `app` is already a valid name
/// or empty. gRPC over h2 and gRPC-Web (`server::session::grpc_web`) both call this.
pub(crate) fn admit(
    authorization: Option<&[u8]>,
    app: String,
    instance: String,
    shared: &Shared,
    peer: std::net::SocketAddr,
) -> Result<Origin, Unauthenticated> {
    let gate = shared.gate();
    let token = match authorization {
        None => String::new(),
        // Tokens are ignored, whatever shape the header has.
        Some(_) if gate.policy() == crate::config::Auth::Off => String::new(),
        Some(value) => match bearer(value) {
            Some(token) => String::from_utf8_lossy(token).into_owned(),
            None => {
                return Err(Unauthenticated {
                    message: "refused: the authorization metadata must be `Bearer TOKEN`, with a \
                              token from `logmill token issue`"
                        .into(),
                    detail: String::new(),
                    app: None,
                });
            }
        },
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match gate.admit(&token, &app, now) {
        Ok(Admit::App(app)) => {
            let instance = default_instance(&app, instance, peer);
            Ok(Origin::new(app, instance))
        }
        Ok(Admit::Anonymous { label }) => {
            let instance = default_instance(&label, instance, peer);
            Ok(Origin::anonymous(label, instance))
        }
        Err(refusal) => Err(Unauthenticated {
            message: refusal.message(),
            detail: refusal
                .log_detail()
                .map_or_else(String::new, |why| format!(" ({why})")),
            app: refusal.app().map(str::to_owned),
        }),
    }
}

/// The token of an `authorization` value `Bearer TOKEN` (the scheme in any case, RFC 6750), or
/// `None` for another scheme or shape.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let head = value.get(..SCHEME.len())?;
    if !head.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = value[SCHEME.len()..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The gRPC record path: request message number `number` of a call, decoded (prost) as one
/// `PushRequest`, each of its records formatted into the loop's batch under the connection's
/// `key`. Returns how many records were pushed; a message that is not a `PushRequest` pushes
/// none and fails the call with INVALID_ARGUMENT.
///
/// The hot path: one formatted line per record, appended to the loop's batch (which goes to
/// the writer once per loop turn). prost has already allocated each non-empty string once while
/// decoding; `to_record` only borrows them.
pub(super) fn push_records(
    payload: &[u8],
    number: u64,
    key: ConnKey,
    origin: &Origin,
    cx: &mut GrpcContext<'_>,
) -> Result<u64, Status> {
    let request = grpc::decode_push_request(payload).map_err(|e| {
        Status::new(
            Code::InvalidArgument,
            format!("request message {number} is not a valid PushRequest: {e}"),
        )
    })?;
    for record in &request.records {
        cx.batch
            .push(key, &grpc::to_record(record), origin, cx.now_ns);
    }
    Ok(request.records.len() as u64)
}

/// `LogMessage`'s record path: the request message decoded (prost) as one `LogRecord` and
/// pushed as [`push_records`] pushes each of a `PushRequest`'s. Returns 1; a message that is not
/// a `LogRecord` pushes nothing and fails the call with INVALID_ARGUMENT.
pub(super) fn push_record(
    payload: &[u8],
    key: ConnKey,
    origin: &Origin,
    cx: &mut GrpcContext<'_>,
) -> Result<u64, Status> {
    let record = grpc::decode_log_record(payload).map_err(|e| {
        Status::new(
            Code::InvalidArgument,
            format!("request message is not a valid LogRecord: {e}"),
        )
    })?;
    cx.batch
        .push(key, &grpc::to_record(&record), origin, cx.now_ns);
    Ok(1)
}

/// OTLP/gRPC's record path: the request message decoded as one `ExportLogsServiceRequest`
/// (`protocol::otlp`, the limits under `max` bytes), each storable record pushed as
/// [`push_records`] pushes a `PushRequest`'s. Returns how many were pushed, and how many were
/// refused and why (`partial_success`); a message that does not decode pushes none and fails
/// the call (`INVALID_ARGUMENT`, or `RESOURCE_EXHAUSTED` for too many records or values).
pub(super) fn push_otlp(
    payload: &[u8],
    max: usize,
    key: ConnKey,
    origin: &Origin,
    cx: &mut GrpcContext<'_>,
) -> Result<(u64, u64, String), Status> {
    let export = otlp::decode_records(payload, &otlp::Limits::new(max)).map_err(|e| {
        let code = match e {
            otlp::Error::TooLarge { .. }
            | otlp::Error::TooManyRecords { .. }
            | otlp::Error::TooManyValues { .. } => Code::ResourceExhausted,
            _ => Code::InvalidArgument,
        };
        Status::new(code, format!("request message: {e}"))
    })?;
    if export.rejected > 0 {
        cx.log
            .warn(format_args!("OTLP/gRPC export: {}", export.error_message));
    }
    for record in &export.records {
        cx.batch.push(key, record, origin, cx.now_ns);
    }
    Ok((
        export.records.len() as u64,
        export.rejected,
        export.error_message,
    ))
}

/// `UNAVAILABLE` for an OTLP export while the writer is full or the disk failing (the OTLP/HTTP
/// side answers `503` then: `server::session::otlp`, "Backpressure"), else `None`.
pub(super) fn otlp_backpressure(shared: &Shared) -> Option<Status> {
    let why = if shared.stats().degraded() {
        "the server cannot write to its disk at the moment (DEGRADED); retry later"
    } else if shared.pending_full() {
        "the server's writer is full (--max-pending); retry later"
    } else {
        return None;
    };
    Some(Status::new(Code::Unavailable, why))
}

/// Undoes a message's compression (`grpc-encoding`) into `inflated`, at most `max` bytes.
pub(super) fn inflate<'a>(
    encoding: &Encoding,
    payload: &[u8],
    max: usize,
    inflated: &'a mut Vec<u8>,
) -> Result<&'a [u8], Status> {
    match encoding {
        Encoding::Gzip => {
            grpc::gunzip(payload, max, inflated).map_err(|e| match e {
                grpc::InflateError::TooLarge { .. } => {
                    Status::new(Code::ResourceExhausted, e.to_string())
                }
                grpc::InflateError::Corrupt(_) => Status::new(Code::Internal, e.to_string()),
            })?;
            Ok(&inflated[..])
        }
        Encoding::Identity => Err(Status::new(
            Code::Internal,
            "compressed flag set but the call has no grpc-encoding",
        )),
        Encoding::Unsupported(name) => Err(Status::new(
            Code::Unimplemented,
            format!(
                "grpc-encoding {name:?} is not supported; use one of {}",
                grpc::ACCEPT_ENCODING
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_takes_the_token_of_a_bearer_value_only() {
        assert_eq!(bearer(b"Bearer abc.def.ghi"), Some(&b"abc.def.ghi"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"BEARER abc"), Some(&b"abc"[..]));
        for refused in [
            &b"Basic dXNlcjpwdw=="[..],
            b"Bearer",
            b"Bearer ",
            b"Bearerabc",
            b"",
        ] {
            assert_eq!(
                bearer(refused),
                None,
                "{:?}",
                String::from_utf8_lossy(refused)
            );
        }
    }
}
