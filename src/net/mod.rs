//! Plumbing between mio and the `h2` crate, shared by the server's gRPC port and the client
//! side (the load tool's gRPC load), and the options of an accepted socket: no runtime, no
//! protocol logic.
//!
//! - [`socket`]: keepalive and no Nagle on an accepted TCP socket ([`socket::tune_socket`]).
//! - [`h2_io`]: a nonblocking mio socket seen as `AsyncRead + AsyncWrite`, so `h2` runs over it.
//! - [`stream`]: a nonblocking socket, plain or TLS (rustls sans-IO): plaintext in and out.
//! - [`waker`]: the one waker mechanism for `h2` futures polled by hand from an event loop.

pub mod h2_io;
pub mod socket;
pub mod stream;
pub mod waker;
