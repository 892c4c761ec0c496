//! The Rust client library: connect to a logmill server, say hello, send records and batches,
//! read acks; and the CLI's readers of the stored files. Nothing here is used by the server.
//!
//! ```no_run
//! use logmill::client::{Client, ClientOptions};
//! use logmill::record::{Body, Level, Record};
//!
//! # fn main() -> Result<(), logmill::client::Error> {
//! let options = ClientOptions::new("shop").instance("web-1");
//! let mut client = Client::connect("127.0.0.1:4020", &options)?;
//! let records: Vec<Record> = ["checkout started", "checkout done"]
//!     .into_iter()
//!     .map(|text| Record {
//!         level: Level::Info,
//!         body: Body::Message(text.into()),
//!         ..Record::default()
//!     })
//!     .collect();
//! client.send_batch(&records)?;
//! let ack = client.wait_acked()?; // both are in the files now
//! println!("stored up to sequence number {}", ack.last_seq());
//! # Ok(())
//! # }
//! ```
//!
//! - [`framing`]: what a client sends and what it makes of the server's bytes, without a
//!   socket: the hello ([`ClientOptions`]), batch frames, and [`Inbox`], the read buffer that
//!   hands out welcomes and acks and turns the server's error frames into [`Error::Refused`].
//!   Shared by everything that speaks the native protocol from the client side: the blocking
//!   [`Client`], `logmill bench`'s mio loop ([`crate::bench`]), `examples/send.rs`.
//! - [`blocking`]: [`Client`] over a blocking std socket, each step with a timeout; and
//!   [`ask_health`], the one-line `health` request.
//! - [`error`]: [`Error`], why a call failed.
//! - [`oneshot`]: `logmill health` and `logmill send`, the CLI's one-request commands, built
//!   on the above.
//! - [`logger`]: [`Logger`], the client a program keeps: a bounded queue, a background thread
//!   that batches, reads acks, reconnects with backoff and resends in order, and a spool
//!   ([`spool`]) on disk while the server is unreachable.
//! - `log_facade` (feature `log`): [`Logger`] as a `log::Log`.
//! - `tracing_layer` (feature `tracing`): `LogmillLayer`, a `tracing_subscriber::Layer`.
//! - [`pipe`]: `logmill pipe`, standard input to records through a [`Logger`], with acks.
//! - [`query`]: `logmill query` and `logmill tail [-f]`, the search engine
//!   ([`crate::storage::search`]) over the stored files; no server needed.
//! - [`ship`]: `logmill ship tx`, the logship transmitter: files matching a glob streamed to a
//!   receiver byte for byte, resumed from the receiver's offset, across rotation and truncation.
//! - [`status`]: `logmill status`, who is connected (the `status` request), as a table or JSON.

pub mod blocking;
pub mod error;
pub mod framing;
#[cfg(feature = "log")]
pub mod log_facade;
pub mod logger;
pub mod oneshot;
pub mod pipe;
pub mod query;
pub mod ship;
pub mod spool;
pub mod status;
pub mod tls;
#[cfg(feature = "tracing")]
pub mod tracing_layer;

pub use blocking::{Client, ask_health};
pub use error::Error;
pub use framing::{Ack, ClientOptions, Inbox, MAX_SERVER_FRAME, Reply, Welcome};
pub use logger::{Logger, LoggerOptions, Stats, WhenFull};
