//! What runs on the sending side of a logmill connection. Nothing here is used by the server.
//!
//! - [`bench`](mod@bench): `logmill bench`, a load client with its own mio event loop. It
//!   starts a server (or measures one at `--addr`), sends records over many connections, waits
//!   for their acks, and reports throughput, ack latency and the server's CPU and memory;
//!   `--idle N` instead measures what N idle connections cost the server.
//! - `bench_grpc`: `logmill bench --proto grpc`, the same load sent as gRPC
//!   calls through `h2`, driven by hand from bench's mio loop.
//! - [`load`](mod@load): what bench sends, encoded once per batch in each wire protocol.
//! - [`oneshot`]: `logmill health` and `logmill send`, one request on one blocking connection.

pub mod bench;
mod bench_grpc;
pub mod load;
pub mod oneshot;
