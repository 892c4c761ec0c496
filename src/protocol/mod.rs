//! Wire formats, one file each. Every decoder here is pure: it takes bytes and returns a value and
//! the number of bytes it consumed, `Incomplete` when it needs more, or an error. None of them
//! touches a socket, so each can be unit-tested at every split point and fuzzed.
//!
//! - [`detect`]: the first bytes of a TCP connection decide which protocol it speaks.
//! - [`frame`]: the 4-byte big-endian length prefix shared by native frames.
//! - [`http1`]: HTTP/1.1 and 1.0 requests (`httparse` for the head; bodies framed here) and
//!   responses, for the HTTP side of the gRPC port.
//! - [`grpc`]: gRPC message framing, gzip, the `proto/` types and their conversion to records.
//! - [`grpc_web`]: gRPC-Web bodies (binary and base64 text), trailers-only answers, CORS.
//! - [`native`]: Cap'n Proto `ClientFrame` decoding and `ServerFrame` encoding (`schema/logmill.capnp`).
//! - [`native_fast`]: the fast path for record and batch frames, checked against the crate.
//! - [`native_encode`]: the fast encoder of record and batch frames, byte-identical to the crate's.
//! - [`otlp`]: OpenTelemetry logs (OTLP): protobuf and JSON requests to records, responses.
//! - [`lines`]: `\n`-terminated lines, cut into pieces when longer than the limit.
//! - [`syslog`]: RFC 6587 framing (octet counting or lines) and RFC 5424 / RFC 3164 messages.
//! - [`jsonl`]: one JSON object per line, known keys mapped onto the record.
//! - [`pickle`]: Python `logging.handlers.SocketHandler` records (a length prefix, then a pickle).
//! - [`ship`]: logship (issue 15): the name line, the offset line, name checks, stored names.
//! - [`datagram`]: one UDP datagram, a `DatagramHandler` pickle or a syslog message.
//! - [`websocket`]: RFC 6455 frames (decoder, encoder) and the opening handshake's checks.
//! - [`x509`]: a certificate's subject common name (a mutual-TLS client's app).

pub mod datagram;
pub mod detect;
pub mod frame;
pub mod grpc;
pub mod grpc_web;
pub mod http1;
pub mod jsonl;
pub mod lines;
pub mod native;
pub mod native_encode;
pub mod native_fast;
pub mod otlp;
pub mod pickle;
pub mod ship;
pub mod syslog;
pub mod websocket;
pub mod x509;
