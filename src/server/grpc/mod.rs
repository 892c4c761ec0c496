//! gRPC, served from the event loops: HTTP/2 through `h2`, the calls of `proto/logmill.proto`
//! and `grpc.health.v1.Health`, and the timers `h2` does not have. The wire format itself
//! (message framing, gzip, timeouts, status codes) is `protocol::grpc`; this folder is the
//! server side, split by idea, each file importing only those below it:
//!
//! ```text
//! port.rs       the loop's side as one unit: listener, accept, the slab of connections, the
//!               ready queue, drive / serve / completions / shutdown / shed        (GrpcPort)
//!   lifecycle.rs  one connection: detect, handshake, serve, timers, keepalive, shutdown,
//!                 shed, budget                                              (GrpcConnection)
//!     calls.rs      a call's life: start, poll, read, fail; the FIFO of records in flight,
//!                   credited by the writer's completions                              (Calls)
//!                   (and gRPC-Web over h2: text decoding, answers via grpc_web)
//!       push.rs       a message to records: the token (admit), gzip, PushRequest, LogRecord,
//!                     OTLP export into the loop's batch                        (GrpcContext)
//!       replies.rs    response heads, status trailers, framed replies, health answers,
//!                     a gRPC-Web answer on an h2 stream (send_web)
//!     wake.rs       a wake from h2: the loop's ReadyQueue, a connection's WakeState
//! ```
//!
//! An event loop holds one [`GrpcPort`] and calls a few methods on it (`server::event_loop`);
//! `tests/grpc_driver.rs` drives the same `GrpcPort` with a test writer.

mod calls;
mod lifecycle;
mod port;
mod push;
mod replies;
mod wake;

pub use lifecycle::{Drive, GrpcConnection};
pub use port::{Accepted, Driven, GrpcPort, Http1};
pub use push::GrpcContext;
pub(crate) use push::admit;
pub use wake::ReadyQueue;

#[cfg(test)]
mod tests {
    #[test]
    fn the_prefix_length_in_the_settings_is_the_protocol_s() {
        assert_eq!(
            crate::config::GRPC_PREFIX_LEN,
            crate::protocol::grpc::PREFIX_LEN
        );
    }
}
