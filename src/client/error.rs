//! Why a client call failed: [`Error`], one enum for the library, with the server's error frames
//! mapped to [`Error::Refused`]. Callers with more context (an address, a connection number)
//! wrap it in their own enum: `oneshot::Error`, `bench::BenchError`.

use std::fmt;
use std::io;

use crate::protocol::native::ErrorKind;

/// Why connecting, sending or reading acks failed.
#[derive(Debug)]
pub enum Error {
    /// The address names nothing that can be connected to.
    Address(io::Error),
    /// No server accepted the connection (refused, unreachable, timed out): `source` is the
    /// last address's error.
    Connect(io::Error),
    /// Writing or reading failed after the connection was made, a step's timeout included
    /// (`WouldBlock` or `TimedOut`, as the platform says it).
    Io(io::Error),
    /// The server sent an error frame; it closes the connection after it. Records sent and
    /// not acked may or may not be stored.
    Refused {
        kind: Option<ErrorKind>,
        message: String,
    },
    /// The server closed the connection without an error frame.
    Closed,
    /// A server frame announced `len` bytes, more than any server frame takes
    /// ([`MAX_SERVER_FRAME`](super::MAX_SERVER_FRAME)): the bytes are not logmill's.
    FrameTooLarge { len: u32 },
    /// A whole frame that is not a `ServerFrame`: the bytes are not logmill's.
    Undecodable(String),
    /// A valid frame where another was due (an ack before the welcome, a welcome twice).
    Unexpected(String),
    /// [`Client::read_ack`](super::Client::read_ack) was called with no record to ack: it
    /// would wait forever.
    NothingToAck,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Address(e) => write!(f, "not a usable address: {e}"),
            Error::Connect(e) => write!(f, "cannot connect: {e}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Refused {
                kind: Some(kind),
                message,
            } => write!(f, "the server sent an error ({kind:?}): {message}"),
            Error::Refused {
                kind: None,
                message,
            } => write!(f, "the server sent an error: {message}"),
            Error::Closed => f.write_str("the server closed the connection"),
            Error::FrameTooLarge { len } => write!(f, "a frame announcing {len} bytes"),
            Error::Undecodable(detail) => f.write_str(detail),
            Error::Unexpected(detail) => f.write_str(detail),
            Error::NothingToAck => f.write_str("no record sent is waiting for an ack"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Address(e) | Error::Connect(e) | Error::Io(e) => Some(e),
            _ => None,
        }
    }
}
