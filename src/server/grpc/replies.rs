//! What goes back to a gRPC client: response heads, `grpc-status` headers and trailers, framed
//! reply messages, and the health service's answers (`Check`'s status, `Watch`'s updates); and
//! a gRPC-Web answer (`protocol::grpc_web::Reply`, built there) carried on an h2 stream.
//!
//! Encoding only: these functions write to `h2` stream handles they are given and decide
//! nothing about when a call ends (that is `calls`). A stream the client already reset takes
//! nothing, which is not an error here.

use bytes::Bytes;
use h2::SendStream;
use h2::server::SendResponse;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::protocol::grpc::health_v1::HealthCheckResponse;
use crate::protocol::grpc::health_v1::health_check_response::ServingStatus;
use crate::protocol::grpc::{self, Code, Status};
use crate::protocol::grpc_web;
use crate::server::shared::Shared;

/// Service names `grpc.health.v1.Health` knows: the whole server, and the log service.
pub(super) const HEALTH_SERVICES: [&str; 2] = ["", "logmill.v1.LogService"];

pub(super) fn serving_status(shared: &Shared, shutting_down: bool) -> ServingStatus {
    if crate::server::health::serving(shared, shutting_down) {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

fn response_head() -> Response<()> {
    let mut response = Response::new(());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-accept-encoding",
        HeaderValue::from_static(grpc::ACCEPT_ENCODING),
    );
    response
}

fn status_headers(status: &Status, headers: &mut HeaderMap) {
    headers.insert(
        "grpc-status",
        HeaderValue::from_static(status.code.as_str()),
    );
    if !status.message.is_empty()
        && let Ok(value) = HeaderValue::from_str(&grpc::percent_encode(&status.message))
    {
        headers.insert("grpc-message", value);
    }
}

/// Sends a final status: trailers after a started response, else a trailers-only response.
/// A stream the client already reset takes nothing; that is not an error here.
pub(super) fn send_status(
    respond: &mut Option<SendResponse<Bytes>>,
    send: &mut Option<SendStream<Bytes>>,
    status: &Status,
) {
    if let Some(send) = send {
        let mut trailers = HeaderMap::new();
        status_headers(status, &mut trailers);
        if send.send_trailers(trailers).is_err() {
            // Reset by the client meanwhile.
        }
    } else if let Some(respond) = respond {
        let mut response = response_head();
        status_headers(status, response.headers_mut());
        if respond.send_response(response, true).is_err() {
            // Reset by the client meanwhile.
        }
    }
}

/// One reply message with its gRPC prefix: the body of a DATA frame.
fn framed(reply: &impl prost::Message) -> Bytes {
    let mut body = Vec::with_capacity(grpc::PREFIX_LEN + reply.encoded_len());
    grpc::encode_message(&reply.encode_to_vec(), &mut body);
    Bytes::from(body)
}

/// Sends one reply message and status OK.
pub(super) fn send_reply(respond: &mut Option<SendResponse<Bytes>>, reply: &impl prost::Message) {
    let Some(respond) = respond else {
        return;
    };
    let Ok(mut send) = respond.send_response(response_head(), false) else {
        return;
    };
    if send.send_data(framed(reply), false).is_err() {
        return;
    }
    let mut trailers = HeaderMap::new();
    status_headers(&Status::new(Code::Ok, ""), &mut trailers);
    if send.send_trailers(trailers).is_err() {
        // Reset by the client meanwhile.
    }
}

/// Sends a health `Watch` update if the status changed since the last one (`sent`): the
/// response head first if it has not gone yet (`respond` then becomes `send`).
pub(super) fn watch_update(
    respond: &mut Option<SendResponse<Bytes>>,
    send: &mut Option<SendStream<Bytes>>,
    sent: &mut Option<ServingStatus>,
    status: ServingStatus,
) {
    if *sent == Some(status) {
        return;
    }
    if send.is_none() {
        let Some(head) = respond else {
            return;
        };
        match head.send_response(response_head(), false) {
            Ok(stream) => *send = Some(stream),
            Err(_) => return,
        }
        *respond = None;
    }
    let Some(stream) = send else {
        return;
    };
    let reply = HealthCheckResponse {
        status: status as i32,
    };
    if stream.send_data(framed(&reply), false).is_ok() {
        *sent = Some(status);
    }
}

/// Sends a whole gRPC-Web answer (a reply, a trailers-only status or a preflight, as
/// `protocol::grpc_web` builds them for HTTP/1.1) on an h2 stream, with `extra` headers (CORS):
/// the head, then the body in ordinary DATA frames ending the stream; no HTTP/2 trailers, since
/// the status is in the body's trailers frame or in the head.
pub(super) fn send_web(
    respond: &mut Option<SendResponse<Bytes>>,
    reply: grpc_web::Reply,
    extra: &[(&'static str, String)],
) {
    let Some(respond) = respond else {
        return;
    };
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in reply.headers.iter().chain(extra) {
        // The names are constants and the values ours (a percent-encoded message, an allowed
        // origin): none fails, but a value that did would be left out rather than panic.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    let empty = reply.body.is_empty();
    let Ok(mut send) = respond.send_response(response, empty) else {
        return;
    };
    if !empty && send.send_data(Bytes::from(reply.body), true).is_err() {
        // Reset by the client meanwhile.
    }
}
