//! `logmill bench`: a load client with its own mio event loop, the mirror image of the server's.
//!
//! Load mode: C connections each send a `hello` asking for acks, then their share of M records
//! in batch frames of B records, as fast as their sockets take them, and read acks until every
//! record is acknowledged. It reports records/s, MB/s of record text, the ack latency of batches
//! and, when bench started the server itself, the server's CPU time and memory (from `/proc`).
//! `--proto` picks the wire protocol; `--idle N` instead measures what N idle connections cost
//! the server.
//!
//! The client must never be what limits the measurement, so nothing is encoded while the clock
//! runs: each connection encodes one batch frame beforehand (a `Template`) and resends it,
//! writing only each record's 10-digit counter into it between sends. Connection set-up
//! (connect, hello, welcome) also happens before the clock starts. Everything runs on the
//! calling thread, except a small thread that drains a spawned server's standard output.
//!
//! This is a measuring tool built on the client library's framing ([`crate::client::framing`]);
//! programs that send records use [`crate::client::Client`]. One file per idea, arrows only
//! downward (this file runs the others; none imports it):
//!
//! - [`apps`]: `--apps N`, each connection's app and the token bench signs for it.
//! - [`args`]: the options and the protocols; how records are shared over connections.
//! - [`native`]: the native load (hello, batches, acks, latency) and `LoadConn`, one
//!   connection's share of it.
//! - [`unacked`]: syslog, JSON lines and pickle, which have no acks: send, then ask `health`
//!   until every record is written.
//! - [`grpc`]: the same load as gRPC calls through `h2`, driven by hand from the loop
//!   (woken through the server's own [`crate::net::waker`]): logmill's `Push` and OTLP's
//!   `Export`.
//! - [`web`]: gRPC-Web and WebSocket on the gRPC port's HTTP/1.1 side, one blocking thread
//!   per connection (the browser's protocols; the single-thread rule above is the other
//!   loads'); OTLP/HTTP's `POST /v1/logs` the same way.
//! - [`otlp`]: the OTLP request both OTLP loads send and the check of its answer.
//! - [`idle`]: `--idle N`, the server's memory per idle connection.
//! - [`slowloris`]: `--slowloris N`, HTTP connections that never finish their head, held in
//!   the native load's loop.
//! - [`templates`]: what is sent, encoded once per batch in each wire protocol.
//! - [`link`]: native connections in a mio loop, set up many at once; [`socket`]: connect,
//!   register, write, poll.
//! - [`spawn`]: the server bench starts; [`usage`]: CPU and memory from `/proc`.
//! - [`report`]: the figures for people and the JSON line for scripts; [`progress`]: the bar;
//!   [`error`]: why a run failed.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

pub mod apps;
pub mod args;
pub mod error;
pub mod grpc;
pub mod idle;
pub mod link;
pub mod native;
pub mod otlp;
pub mod progress;
pub mod report;
pub mod slowloris;
pub mod socket;
pub mod spawn;
pub mod templates;
pub mod unacked;
pub mod usage;
pub mod web;

pub use args::{BenchArgs, GrpcMode, Proto};
pub use error::BenchError;
pub use report::{
    CpuTime, Handshakes, IdleMemory, IdleReport, Latency, LoadReport, Report, ServerUsage,
    SlowlorisCount,
};

use error::setup;
use spawn::SpawnedServer;

/// File descriptors this process needs besides its connections (stdio, poll, pipes, /proc).
const FD_SPARE: u64 = 64;

/// Runs a bench as `args` say: starts a server unless `--addr` is given, measures, stops the
/// server it started. Progress and notes go to stderr; the caller prints the report.
///
/// # Errors
/// [`BenchError`] for anything that makes the figures meaningless: a server that errs, closes,
/// acks wrongly or does not finish before `--timeout`. A server bench started is stopped in any
/// case; after a failure its files and stderr are kept and their place is printed.
pub fn run(args: BenchArgs) -> Result<Report, BenchError> {
    let hold = Duration::from_secs(args.idle_secs);
    let deadline = Instant::now()
        + args.timeout
        + if args.idle.is_some() {
            hold
        } else {
            Duration::ZERO
        };
    let connections = args.idle.unwrap_or(args.connections);
    if args.idle.is_some() && !matches!(args.proto, Proto::Native | Proto::Http) {
        return Err(BenchError::Usage(
            "--idle measures native or HTTP connections only: --proto native or http".into(),
        ));
    }
    if args.idle.is_none() && args.proto == Proto::Http {
        return Err(BenchError::Usage(
            "--proto http measures idle connections only: add --idle N".into(),
        ));
    }
    if args.tls && args.proto != Proto::Native {
        return Err(BenchError::Usage(
            "--tls measures the native load and --idle only: --proto native".into(),
        ));
    }
    let tls = match &args.ca {
        Some(ca) if args.tls => Some(
            crate::client::tls::client_config(ca)
                .map_err(|e| BenchError::Usage(format!("--ca {}: {e}", ca.display())))?,
        ),
        _ => None,
    };
    if args.slowloris.is_some() && args.proto != Proto::Native {
        return Err(BenchError::Usage(
            "--slowloris runs beside the native load only: --proto native".into(),
        ));
    }
    if args.slowloris.is_some() && args.addr.is_some() && args.http_addr.is_none() {
        return Err(BenchError::Usage(
            "--slowloris with --addr needs the server's gRPC port as --http-addr HOST:PORT".into(),
        ));
    }
    let slowloris = args.slowloris.unwrap_or(0);
    raise_fd_limit(u64::from(connections) + u64::from(slowloris))?;

    // HTTP/1.1 is served on the gRPC port too.
    let grpc = args.slowloris.is_some() || args.proto.on_grpc_port();
    let (addr, mut server) = match &args.addr {
        Some(addr) => (resolve(addr)?, None),
        None => {
            let extra = args.server_args.as_deref().unwrap_or("");
            let server = SpawnedServer::start(extra, grpc, deadline, args.timeout)?;
            let addr = match server.grpc_addr() {
                Some(grpc_addr) if grpc && args.proto != Proto::Native => grpc_addr,
                _ => server.addr(),
            };
            eprintln!(
                "logmill bench: started a server (pid {}) on {addr}, files in {}",
                server.pid(),
                server.base().display()
            );
            (addr, Some(server))
        }
    };
    let http_addr = match (&args.http_addr, &server) {
        (Some(http), _) => Some(resolve(http)?),
        (None, Some(server)) => server.grpc_addr(),
        (None, None) => None,
    };
    let apps = match (&args.secret_file, &server) {
        (Some(file), _) => apps::Apps::with_tokens(args.apps as usize, file),
        (None, Some(server)) => apps::Apps::with_tokens(
            args.apps as usize,
            &crate::apps::secret::default_path(&server.data_dir()),
        ),
        (None, None) => Ok(apps::Apps::named(args.apps as usize)),
    };
    let apps = match apps {
        Ok(apps) => apps,
        Err(e) => {
            if let Some(server) = server.as_mut() {
                let _ = server.stop(true);
            }
            return Err(e);
        }
    };
    if args.apps > 1 && !apps.has_tokens() {
        eprintln!(
            "logmill bench: no --secret-file, so the {} apps are named in hello only: they get \
             buckets of their own only if the server runs with --auth off (OTLP connections, \
             which send no hello, are all the server's default app)",
            apps.count()
        );
    }
    let result = match args.idle {
        Some(n) if args.proto == Proto::Http => {
            idle::idle_http(n as usize, hold, addr, server.as_ref(), deadline).map(Report::Idle)
        }
        Some(_) => idle::idle(&args, &apps, tls.as_ref(), addr, server.as_ref(), deadline)
            .map(Report::Idle),
        None => match args.proto {
            Proto::Native => native::load(
                &args,
                &apps,
                tls.as_ref(),
                addr,
                http_addr,
                server.as_ref(),
                deadline,
            ),
            Proto::Grpc | Proto::OtlpGrpc => {
                grpc::load(&args, &apps, addr, server.as_ref(), deadline)
            }
            Proto::GrpcWeb | Proto::WebSocket | Proto::OtlpHttp => {
                web::load(&args, &apps, addr, server.as_ref(), deadline)
            }
            Proto::Syslog | Proto::Json | Proto::Pickle | Proto::Http => {
                unacked::load(&args, addr, server.as_ref(), deadline)
            }
        }
        .map(Report::Load),
    };
    if let Some(server) = server.as_mut() {
        match (&result, server.stop(result.is_err())) {
            (Ok(_), Err(stop)) => return Err(stop),
            (Err(_), Err(stop)) => eprintln!("logmill bench: also, {stop}"),
            (_, Ok(())) => {}
        }
    }
    result
}

/// Raises this process's open files limit to its hard limit and checks `connections` fit.
fn raise_fd_limit(connections: u64) -> Result<(), BenchError> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .map_err(setup("cannot raise the open files limit"))?;
    let needed = connections.saturating_add(FD_SPARE);
    if limit < needed {
        return Err(BenchError::Usage(format!(
            "{connections} connections need {needed} open files but this process may open only \
             {limit}; raise the hard limit (ulimit -Hn) or use fewer connections"
        )));
    }
    Ok(())
}

fn resolve(addr: &str) -> Result<SocketAddr, BenchError> {
    let mut addrs = addr.to_socket_addrs().map_err(|e| BenchError::Address {
        addr: addr.to_string(),
        detail: e.to_string(),
    })?;
    addrs.next().ok_or_else(|| BenchError::Address {
        addr: addr.to_string(),
        detail: "resolves to no address".into(),
    })
}
