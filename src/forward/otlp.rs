//! The OTLP/HTTP sink: the records as OTLP logs (protobuf, [`crate::protocol::otlp::encode`]),
//! one `POST /v1/logs` per batch (gzip-compressed unless the receiver is on this host), to an OpenTelemetry Collector or to another
//! logmill's OTLP receiver (an aggregator tier).
//!
//! Each record carries the forwarder's attributes `logmill.node`, `logmill.bucket`,
//! `logmill.seq`, and the `logmill.app` and `logmill.instance` of the connection that sent it,
//! so a receiver can tell where a record was first stored (and drop a resent batch's duplicates).
//!
//! Answers, as the OTLP/HTTP specification sorts them: 200 is taken; 429, 502, 503 and 504 are
//! retried (so is any other 5xx, and a connection error); another 4xx (400 a body it refuses,
//! 401/403 a token it wants) stops the forwarder with the receiver's message.

use super::http::Client;
use super::{SendError, Sink};
use crate::protocol::otlp::encode::Encoder;
use crate::protocol::otlp::proto::common::v1::{AnyValue, KeyValue, any_value};
use crate::storage::parse::ParsedLine;

pub struct Otlp {
    client: Client,
    node: String,
    encoder: Encoder,
    /// `Authorization: Bearer TOKEN` (an application token, for a logmill with `--auth`).
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
    pub fn new(host: &str, port: u16, node: &str, compress: bool, token: Option<String>) -> Otlp {
        Otlp {
            authorization: token.map(|t| format!("Bearer {t}")),
            client: Client::new(host, port),
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
        let mut headers = vec![("Content-Type", "application/x-protobuf")];
        if self.compress {
            headers.push(("Content-Encoding", "gzip"));
        }
        if let Some(authorization) = &self.authorization {
            headers.push(("Authorization", authorization));
        }
        let response = self
            .client
            .post("/v1/logs", &headers, &self.body)
            .map_err(|e| SendError::Retry(format!("the OTLP receiver cannot be reached: {e}")))?;
        let status = response.status;
        if status == 200 {
            self.clear();
            return Ok(());
        }
        let message = String::from_utf8_lossy(&response.body);
        let message: String = message
            .chars()
            .filter(|c| !c.is_control() && *c != char::REPLACEMENT_CHARACTER)
            .take(500)
            .collect();
        match status {
            429 | 500..=599 => Err(SendError::Retry(format!(
                "the OTLP receiver answered HTTP {status}: {message}"
            ))),
            401 | 403 => Err(SendError::Fatal(format!(
                "the OTLP receiver refused the token (HTTP {status}): {message}; give the \
                 forwarder one in LOGMILL_FORWARD_TOKEN or --forward-token-file"
            ))),
            _ => Err(SendError::Fatal(format!(
                "the OTLP receiver refused the batch (HTTP {status}): {message}"
            ))),
        }
    }

    fn clear(&mut self) {
        self.encoder.clear();
        self.body.clear();
    }
}
