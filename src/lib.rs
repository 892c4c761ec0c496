//! logmill: a lightweight, fast log server built on a hand-written mio event loop.
//!
//! # Layout
//!
//! ```text
//!                      +-------------------+
//!  clients --TCP-->    | logmill-loop-0..N |  mio Poll, slab of connections, read/write buffers
//!  (one listener,      |  accept, read,    |  protocol::detect -> protocol::frame -> protocol::native
//!   shared by loops)   |  decode, format   |  records formatted into one Batch per loop turn
//!                      +---------+---------+
//!                                | Batch (mpsc), pending bytes counted in Shared (backpressure)
//!                                v
//!                      +-------------------+
//!                      |  logmill-writer   |  sequence numbers, one write() per turn, rotation,
//!                      |                   |  fsync policy, retries, DEGRADED
//!                      +---------+---------+
//!                                | Completion (per-loop Mailbox + mio Waker)
//!                                v
//!                      loops send acks to clients that asked for them
//!
//!  logmill-signals: SIGINT/SIGTERM -> shutdown, SIGHUP -> reopen files
//! ```
//!
//! A record's path: bytes arrive on a connection ([`server::event_loop`]), the first bytes pick a
//! protocol ([`protocol::detect`]), frames are cut ([`protocol::frame`]) and decoded into a
//! [`record::Record`] ([`protocol::native`]), which is formatted into a line with a gap for its
//! sequence number ([`storage::line`]) and appended to the loop's [`storage::Batch`]. The writer
//! ([`storage::writer`]) numbers the lines, writes them to the rotating files
//! ([`storage::fileset`]) and hands completions back, which become acks.
//!
//! - [`config`]: settings and the reasons for their defaults.
//! - [`record`]: the one record type every protocol decodes into.
//! - [`protocol`]: pure decoders and encoders, one file per wire format.
//! - [`server`]: the listener, the event loops, the connections.
//! - [`storage`]: the writer thread, line format, rotating files.
//! - [`shared`]: counters and mailboxes shared across threads.
//! - [`server_log`]: the server's own log (`_server.log`).
//! - [`client`]: the sending side: `logmill bench`, a load client with its own event loop.

#![forbid(unsafe_code)]

pub mod client;
pub mod config;
#[allow(clippy::all, unused)]
pub mod logmill_capnp;
pub mod protocol;
pub mod record;
pub mod server;
pub mod server_log;
pub mod shared;
pub mod storage;
