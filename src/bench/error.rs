//! Why a bench run failed: [`BenchError`], each message saying what to do about it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::client::error::Error as ClientError;
use crate::protocol::native::ErrorKind;

/// Why a run failed. Each message says what to do about it.
#[derive(Debug)]
pub enum BenchError {
    /// The options cannot work on this machine.
    Usage(String),
    /// Something bench needs locally failed (temp dir, poll, open files limit).
    Setup { what: String, source: io::Error },
    /// The server bench tried to start did not come up.
    ServerStart(String),
    /// `--addr` names no usable address.
    Address { addr: String, detail: String },
    /// A connection could not be established.
    Connect { addr: SocketAddr, source: io::Error },
    /// Reading or writing connection `conn` failed.
    Io { conn: usize, source: io::Error },
    /// The server sent an error frame on connection `conn`.
    ServerError {
        conn: usize,
        kind: Option<ErrorKind>,
        message: String,
    },
    /// A gRPC call on connection `conn` ended with a status other than OK.
    GrpcStatus {
        conn: usize,
        status: String,
        message: String,
    },
    /// An HTTP call on connection `conn` (OTLP/HTTP's `POST /v1/logs`) was answered with a
    /// status other than 200; `message` is the answer's own (its `google.rpc.Status`).
    HttpStatus {
        conn: usize,
        status: u16,
        message: String,
    },
    /// The server broke the protocol on connection `conn` (bad frame, impossible ack).
    Protocol { conn: usize, detail: String },
    /// Asking the server's `health` (to count records written) failed.
    Health(String),
    /// The server closed connection `conn` early.
    Closed { conn: usize, detail: String },
    /// A batch frame is over the server's `--max-frame`.
    FrameTooLarge { bytes: usize, max: u32 },
    /// `--timeout` passed.
    Timeout {
        timeout: Duration,
        waiting_for: String,
    },
    /// The spawned server did not stop cleanly.
    ServerStop(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(message) => f.write_str(message),
            BenchError::Setup { what, source } => write!(f, "{what}: {source}"),
            BenchError::ServerStart(message) => write!(
                f,
                "the server did not start: {message}\n(check --server-args, or measure a running \
                 server with --addr)"
            ),
            BenchError::Address { addr, detail } => write!(
                f,
                "--addr {addr}: {detail}; give HOST:PORT of a running logmill server"
            ),
            BenchError::Connect { addr, source } => write!(
                f,
                "cannot connect to {addr}: {source}; is the server running and listening there?"
            ),
            BenchError::Io { conn, source } => write!(
                f,
                "connection {conn}: {source}; the server may have crashed or dropped the \
                 connection (see its log)"
            ),
            BenchError::ServerError {
                conn,
                kind,
                message,
            } => {
                let kind = kind.map_or_else(|| "unknown error".to_string(), |k| format!("{k:?}"));
                write!(
                    f,
                    "the server sent an error on connection {conn}: {kind}: {message}"
                )
            }
            BenchError::GrpcStatus {
                conn,
                status,
                message,
            } => write!(
                f,
                "a gRPC call on connection {conn} failed with grpc-status {status}: {message}"
            ),
            BenchError::HttpStatus {
                conn,
                status,
                message,
            } => write!(
                f,
                "a call on connection {conn} was answered HTTP {status}: {message}"
            ),
            BenchError::Protocol { conn, detail } => write!(
                f,
                "the server broke the protocol on connection {conn}: {detail}; this is a server \
                 bug worth reporting"
            ),
            BenchError::Health(detail) => write!(
                f,
                "asking the server's health failed: {detail}; without it bench cannot tell when \
                 the records are written"
            ),
            BenchError::Closed { conn, detail } => write!(
                f,
                "the server closed connection {conn} {detail}; see the server's log for why"
            ),
            BenchError::FrameTooLarge { bytes, max } => write!(
                f,
                "a batch frame takes {bytes} bytes but the server accepts at most {max} \
                 (--max-frame); lower --batch or --size, or raise the server's --max-frame"
            ),
            BenchError::Timeout {
                timeout,
                waiting_for,
            } => write!(
                f,
                "--timeout {timeout:?} passed while waiting for {waiting_for}; the server may be \
                 stuck, or the run needs a longer --timeout or fewer records"
            ),
            BenchError::ServerStop(message) => write!(
                f,
                "the server did not stop cleanly: {message}; this is a server bug worth reporting"
            ),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Setup { source, .. }
            | BenchError::Connect { source, .. }
            | BenchError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A closure turning a local set-up failure into [`BenchError::Setup`] saying `what` failed.
pub fn setup(what: &str) -> impl FnOnce(io::Error) -> BenchError + '_ {
    move |source| BenchError::Setup {
        what: what.to_string(),
        source,
    }
}

impl BenchError {
    /// The client library's error on connection `conn`, in bench's words.
    pub fn from_client(conn: usize, e: ClientError) -> BenchError {
        match e {
            ClientError::Refused { kind, message } => BenchError::ServerError {
                conn,
                kind,
                message,
            },
            ClientError::Closed => BenchError::Closed {
                conn,
                detail: "unexpectedly".into(),
            },
            ClientError::Address(source)
            | ClientError::Connect(source)
            | ClientError::Io(source) => BenchError::Io { conn, source },
            ClientError::Undecodable(detail) => BenchError::Protocol { conn, detail },
            e @ (ClientError::FrameTooLarge { .. }
            | ClientError::Unexpected(_)
            | ClientError::NothingToAck) => BenchError::Protocol {
                conn,
                detail: e.to_string(),
            },
        }
    }
}
