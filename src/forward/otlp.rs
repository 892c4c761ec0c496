//! The OTLP sink: the records as OTLP logs (protobuf, [`crate::protocol::otlp::encode`]), to an
//! OpenTelemetry Collector or to another logmill's OTLP receiver (an aggregator tier), one
//! request per batch, gzip-compressed unless the receiver is on this host:
//!
//! - over HTTP (`otlp+http://`): `POST /v1/logs` ([`super::http`]);
//! - over gRPC (`otlp+grpc://`): a unary `LogsService/Export` call ([`super::grpc`]), the batch
//!   kept under gRPC's usual 4 MiB message limit ([`MAX_GRPC_BATCH_BYTES`]).
//!
//! Each record carries the forwarder's attributes `logmill.node`, `logmill.bucket`,
//! `logmill.seq`, and the `logmill.app` and `logmill.instance` of the connection that sent it,
//! so a receiver can tell where a record was first stored (and drop a resent batch's duplicates).
//! A token for a receiver with `--auth` goes as `authorization: Bearer TOKEN` (header or
//! metadata).
//!
//! Answers, as the OTLP specification sorts them. HTTP: 200 is taken; 429 and any 5xx are
//! retried (so is a connection error); another 4xx (400 a body it refuses, 401/403 a token it
//! wants) stops the forwarder with the receiver's message. gRPC: `OK` is taken; `CANCELLED`,
//! `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE` and
//! `DATA_LOSS` are retried (so is a connection or HTTP/2 error); `UNAUTHENTICATED` and
//! `PERMISSION_DENIED` stop it asking for a token, any other code stops it with the message.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use super::{SendError, Sink};
use crate::protocol::otlp::encode::Encoder;
use crate::protocol::otlp::proto::common::v1::{AnyValue, KeyValue, any_value};
use crate::storage::parse::ParsedLine;

/// The largest encoded batch sent over gRPC: under the 4 MiB a gRPC server takes by default
/// (logmill's `--grpc-max-message`, a Collector's `max_recv_msg_size_mib`).
pub const MAX_GRPC_BATCH_BYTES: usize = 3 * 1024 * 1024;

/// How batches travel.
pub enum Transport {
    Http(super::http::Client),
    Grpc(super::grpc::Client),
}

pub struct Otlp {
    transport: Transport,
    node: String,
    encoder: Encoder,
    /// `Bearer TOKEN` (an application token, for a logmill with `--auth`).
    authorization: Option<String>,
    /// Whether batches are sent gzip-compressed (not to this host: [`super::compresses`]).
    compress: bool,
    /// The encoded (and compressed) batch, kept so a retry sends the same bytes.
    body: Vec<u8>,
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
    }
}

impl Otlp {
    pub fn new(transport: Transport, node: &str, compress: bool, token: Option<String>) -> Otlp {
        Otlp {
            authorization: token.map(|t| format!("Bearer {t}")),
            transport,
            node: node.to_string(),
            encoder: Encoder::new(),
            compress,
            body: Vec::new(),
        }
    }
}

impl Sink for Otlp {
    fn push(&mut self, bucket: &str, line: &ParsedLine<'_>) {
        let mut extra = vec![
            text("logmill.node", &self.node),
            text("logmill.bucket", bucket),
            KeyValue {
                key: "logmill.seq".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(
                        i64::try_from(line.seq()).unwrap_or(i64::MAX),
                    )),
                }),
            },
        ];
        if !line.app().is_empty() {
            extra.push(text("logmill.app", line.app()));
        }
        if !line.instance().is_empty() {
            extra.push(text("logmill.instance", line.instance()));
        }
        self.encoder.push(line.record(), extra);
        self.body.clear();
    }

    fn rows(&self) -> usize {
        self.encoder.records()
    }

    fn bytes(&self) -> usize {
        self.encoder.bytes()
    }

    fn max_bytes(&self) -> usize {
        match self.transport {
            Transport::Http(_) => super::MAX_BATCH_BYTES,
            Transport::Grpc(_) => MAX_GRPC_BATCH_BYTES,
        }
    }

    fn send(&mut self) -> Result<(), SendError> {
        if self.encoder.records() == 0 {
            return Ok(());
        }
        if self.body.is_empty() {
            if self.compress {
                super::gzip(&self.encoder.encode(), &mut self.body)?;
            } else {
                self.body = self.encoder.encode();
            }
        }
        let result = match &mut self.transport {
            Transport::Http(client) => send_http(
                client,
                &self.body,
                self.compress,
                self.authorization.as_deref(),
            ),
            Transport::Grpc(client) => send_grpc(
                client,
                &self.body,
                self.compress,
                self.authorization.as_deref(),
            ),
        };
        if result.is_ok() {
            self.clear();
        }
        result
    }

    fn clear(&mut self) {
        self.encoder.clear();
        self.body.clear();
    }
}

/// Text from a receiver, fit for a log line: no control characters, at most 500 of them.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && *c != char::REPLACEMENT_CHARACTER)
        .take(500)
        .collect()
}

fn send_http(
    client: &mut super::http::Client,
    body: &[u8],
    compress: bool,
    authorization: Option<&str>,
) -> Result<(), SendError> {
    let mut headers = vec![("Content-Type", "application/x-protobuf")];
    if compress {
        headers.push(("Content-Encoding", "gzip"));
    }
    if let Some(authorization) = authorization {
        headers.push(("Authorization", authorization));
    }
    let response = client
        .post("/v1/logs", &headers, body)
        .map_err(|e| SendError::Retry(format!("the OTLP receiver cannot be reached: {e}")))?;
    let status = response.status();
    let message = printable(&String::from_utf8_lossy(response.body()));
    match status {
        200 => Ok(()),
        429 | 500..=599 => Err(SendError::Retry(format!(
            "the OTLP receiver answered HTTP {status}: {message}"
        ))),
        401 | 403 => Err(refused_token(&format!("HTTP {status}"), &message)),
        _ => Err(SendError::Fatal(format!(
            "the OTLP receiver refused the batch (HTTP {status}): {message}"
        ))),
    }
}

fn refused_token(what: &str, message: &str) -> SendError {
    SendError::Fatal(format!(
        "the OTLP receiver refused the token ({what}): {message}; give the forwarder one in \
         LOGMILL_FORWARD_TOKEN or --forward-token-file"
    ))
}

/// The gRPC method of an OTLP logs export.
const EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

fn send_grpc(
    client: &mut super::grpc::Client,
    body: &[u8],
    compress: bool,
    authorization: Option<&str>,
) -> Result<(), SendError> {
    let Ok(len) = u32::try_from(body.len()) else {
        return Err(SendError::Fatal("a batch over 4 GiB".into()));
    };
    // One gRPC message: the compressed flag, the length (big-endian), the payload.
    let mut message = Vec::with_capacity(5 + body.len());
    message.push(u8::from(compress));
    message.extend_from_slice(&len.to_be_bytes());
    message.extend_from_slice(body);
    let mut headers = HeaderMap::new();
    if compress {
        headers.insert("grpc-encoding", HeaderValue::from_static("gzip"));
    }
    if let Some(authorization) = authorization {
        // A token with a control character was refused at start-up.
        let value = HeaderValue::try_from(authorization)
            .map_err(|_| SendError::Fatal("the token cannot go into a header".into()))?;
        headers.insert("authorization", value);
    }
    let reply = client
        .call(EXPORT, headers, Bytes::from(message))
        .map_err(|e| SendError::Retry(format!("the OTLP receiver cannot be reached: {e}")))?;
    let message = printable(reply.message());
    match (reply.http(), reply.code()) {
        (200, Some(0)) => Ok(()),
        (200, Some(code @ (1 | 4 | 8 | 10 | 11 | 14 | 15))) => Err(SendError::Retry(format!(
            "the OTLP receiver answered gRPC status {code}: {message}"
        ))),
        (200, Some(code @ (7 | 16))) => {
            Err(refused_token(&format!("gRPC status {code}"), &message))
        }
        (200, Some(code)) => Err(SendError::Fatal(format!(
            "the OTLP receiver refused the batch (gRPC status {code}): {message}"
        ))),
        (http @ (429 | 502..=504), _) => Err(SendError::Retry(format!(
            "the OTLP receiver answered HTTP {http} to a gRPC call"
        ))),
        (http, _) => Err(SendError::Fatal(format!(
            "the OTLP receiver does not answer gRPC (HTTP {http}, no grpc-status): is it \
             otlp+http?"
        ))),
    }
}
