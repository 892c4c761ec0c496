//! logmill: a lightweight, fast log server built on a hand-written mio event loop.
//!
//! # Layout
//!
//! ```text
//!                      +-------------------+
//!  clients --TCP-->    | logmill-loop-0..N |  mio Poll, slab of connections (transport + session)
//!  (one listener,      |  accept, read,    |  protocol::detect -> server::session: native |
//!   shared by loops)   |  decode, format   |    pickle | syslog | lines | health; one Batch
//!  gRPC --h2c-->       |                   |  h2 polled from the same loop (server::grpc::GrpcPort),
//!                      |                   |    gRPC-Web over h2 too
//!  HTTP/1.1 (same port)|                   |  handed to the slab by the port's detection:
//!                      |                   |    session::http: /healthz, /metrics, /v1/status,
//!                      |                   |    gRPC-Web calls, the WebSocket upgrade,
//!                      |                   |    the console's /api (session::http::console)
//!                      |                   |    and its embedded pages (console::assets)
//!  UDP (loop 0) -->    |                   |  protocol::datagram: syslog or DatagramHandler
//!  logship --TCP-->    |                   |  server::ship: name line, offset, raw bytes
//!  (--ship-port 7447)  |                   |    --chunks (bounded)--> logmill-ship thread
//!                      |                   |    (storage::ship) appends to <dir>/ship/NAME
//!                      +---------+---------+
//!                                | Batch (mpsc), pending bytes counted (storage::backpressure)
//!                                v
//!                      +-------------------+
//!                      |  logmill-writer   |  sequence numbers, one write() per turn, rotation,
//!                      |                   |  fsync policy, retries, DEGRADED
//!                      +---------+---------+
//!                                | Completion (per-loop storage::mailbox + mio Waker)
//!                                v
//!                      loops send acks to clients that asked for them
//!
//!  logmill-signals: SIGINT/SIGTERM -> shutdown, SIGHUP -> reopen files, reload TLS certificate
//!
//!  start-up (main): validate flags, lock <dir>/_server.lock, bind the ports, then open
//!  _server.log and the record files, so a refused second server writes nothing
//! ```
//!
//! A record's path: bytes arrive on a connection ([`server::event_loop`],
//! [`server::connection`]), the first bytes pick a protocol ([`protocol::detect`]) and so its
//! session ([`server::session`]), frames or lines are cut ([`protocol::frame`],
//! [`protocol::lines`]) and decoded into a [`record::Record`] ([`protocol::native`] and its
//! siblings; gRPC messages through `server::grpc::calls`' `push_records`), which is formatted
//! into a line with a gap for its sequence number ([`storage::line`]) and appended to the loop's
//! [`storage::Batch`]. The writer
//! ([`storage::writer`]) puts the numbered lines in order, writes them to the rotating files
//! ([`storage::fileset`]) of their app's bucket ([`storage::bucket`]) and hands completions back,
//! which become acks.
//!
//! - [`config`]: settings and the reasons for their defaults (`config::defaults`, read by the
//!   command line too).
//! - [`record`]: the one record type every protocol decodes into, with typed field values.
//! - [`protocol`]: pure decoders and encoders, one file per wire format.
//! - [`server`]: the listener, the event loops, the connections: a connection is a transport
//!   (`server::transport`) plus the protocol session detection picked (`server::session`, one
//!   file per protocol); [`server::grpc`] is gRPC split by idea (a connection's lifecycle, its calls, replies), its
//!   loop side one unit, [`server::grpc::GrpcPort`].
//! - [`storage`]: the writer thread, line format, rotating files, the sequence high-water mark,
//!   the directory lock, the backpressure gauge and mailboxes, the server's own log.
//! - [`stats`]: the counters every thread bumps (atomics, and refusals by app behind a mutex
//!   taken once per refusal; the lowest room); the writer's histograms for `/metrics`
//!   (`server::session::http::metrics`, which sums the loops' own counts, `server::traffic`).
//! - [`net`]: mio-side plumbing shared by the server and the client: a socket plain or TLS
//!   (rustls sans-IO, `net::stream`), `h2` over a nonblocking socket, the waker for `h2` futures polled by hand, and the options of an accepted socket.
//! - [`client`]: the Rust client library: connect, hello, send records and batches, read acks;
//!   the `Logger` (a background thread that batches, reconnects, resends unacked records in
//!   order and spools to disk; a `log::Log` and a `tracing` layer); `logmill health`,
//!   `logmill status`, `logmill send` and `logmill pipe`; `logmill ship tx`, the logship
//!   transmitter (files streamed to a receiver, resumed from its offset; `client::ship`).
//! - [`apps`]: applications: HS256 tokens (issue, verify), the signing secret, the registry of
//!   issued and revoked tokens, the `--auth` gate a connection's token goes through once (native
//!   hello, gRPC call); `logmill token`; the console's admin password (argon2id) and
//!   `logmill admin set-password`; the registry of live connections the loops keep and
//!   publish (`apps::connections`), which `status` and `health` read.
//! - [`forward`]: forwarders, one thread per `--forward` sink (ClickHouse, OTLP over HTTP or
//!   gRPC), reading the stored files from a durable checkpoint and sending batches, at least
//!   once, at the lowest CPU priority; the server starts them and shows their lag.
//! - logship (issue 15): [`protocol::ship`] is the wire protocol, [`server::ship`] the receiver's
//!   connections on each loop, [`storage::ship`] the thread that writes the shipped files.
//! - [`bench`]: `logmill bench`, a load client with its own event loop, on the client's framing.

#![forbid(unsafe_code)]

pub mod apps;
pub mod bench;
pub mod client;
pub mod config;
pub mod forward;
// Generated by capnpc from schema/logmill.capnp (scripts/gen-schema.sh); never edited or
// reformatted by hand, so the drift test can compare it byte for byte.
#[allow(clippy::all, unused)]
#[rustfmt::skip]
pub mod logmill_capnp;
pub mod net;
pub mod protocol;
pub mod record;
pub mod server;
pub mod stats;
pub mod storage;
