//! `logmill bench --idle N`: N native connections say hello, wait for the welcome and stay
//! silent; the spawned server's resident memory before and after says what an idle connection
//! costs. With `--apps`, the connections are spread over the apps with their tokens, as in a
//! load run. With `--proto http` ([`idle_http`]), they are HTTP/1.1 keep-alive connections on
//! the gRPC port, each after one `GET /healthz`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::apps::Apps;
use super::args::BenchArgs;
use super::error::{BenchError, setup};
use super::link::{READ_CHUNK, Tls, open};
use super::report::{Handshakes, IdleMemory, IdleReport};
use super::socket::poll_once;
use super::spawn::SpawnedServer;
use super::usage;

/// Opens `--idle N` connections (over TLS with `tls`), holds them `--idle-secs`, and measures
/// the server's memory with them.
pub fn idle(
    args: &BenchArgs,
    apps: &Apps,
    tls: Option<&Tls>,
    addr: SocketAddr,
    server: Option<&SpawnedServer>,
    deadline: Instant,
) -> Result<IdleReport, BenchError> {
    let n = args.idle.unwrap_or(0) as usize;
    let hold = Duration::from_secs(args.idle_secs);
    let timeout = args.timeout;
    let before = server.and_then(usage::memory);
    let mut poll = Poll::new().map_err(setup("cannot create a mio Poll"))?;
    eprintln!("logmill bench: opening {n} idle connections to {addr}");
    let set_up = Instant::now();
    let (mut links, _) = open(&mut poll, addr, n, apps, tls, deadline, timeout)?;
    let handshakes = tls.map(|_| Handshakes {
        count: n,
        elapsed: set_up.elapsed(),
    });
    eprintln!(
        "logmill bench: the server welcomed {n} connections; holding them for {} s",
        hold.as_secs_f64()
    );
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut replies = Vec::new();
    let until = Instant::now() + hold;
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        poll_once(&mut poll, &mut events, until - now)?;
        for event in events.iter() {
            let i = event.token().0;
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let closed = links[i].receive(i, &mut scratch, &mut replies)?;
                replies.clear();
                if closed {
                    return Err(BenchError::Closed {
                        conn: i,
                        detail: "while it was idle".into(),
                    });
                }
            }
        }
    }
    let after = server.and_then(usage::memory);
    let server = before.zip(after).map(|(before, after)| IdleMemory {
        rss_before_kib: before.rss_kib,
        rss_kib: after.rss_kib,
    });
    Ok(IdleReport {
        connections: links.len(),
        held: hold,
        handshakes,
        server,
    })
}

/// The request each HTTP connection sends to open, and again to prove it is still open.
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n";
/// The whole answer to [`HEALTHZ`] from a server that is not DEGRADED.
const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nOK\n";

/// Opens `n` HTTP/1.1 connections to `addr` (the gRPC port), each answering one `GET /healthz`,
/// holds them `hold`, measures the server's memory, then asks each once more to prove the
/// server kept them all.
///
/// # Errors
/// A connection refused, closed or answered wrongly, or the deadline.
pub fn idle_http(
    n: usize,
    hold: Duration,
    addr: SocketAddr,
    server: Option<&SpawnedServer>,
    deadline: Instant,
) -> Result<IdleReport, BenchError> {
    use std::io::{Read as _, Write as _};
    let before = server.and_then(usage::memory);
    eprintln!("logmill bench: opening {n} idle HTTP/1.1 connections to {addr}");
    let ask = |i: usize, stream: &mut std::net::TcpStream| -> Result<(), BenchError> {
        let io = |source| BenchError::Io { conn: i, source };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BenchError::Closed {
                conn: i,
                detail: "the deadline passed (--timeout)".into(),
            });
        }
        stream.set_read_timeout(Some(left)).map_err(io)?;
        stream.write_all(HEALTHZ).map_err(io)?;
        let mut answer = [0u8; OK.len()];
        stream.read_exact(&mut answer).map_err(io)?;
        if answer != OK {
            return Err(BenchError::Closed {
                conn: i,
                detail: format!("/healthz answered {:?}", String::from_utf8_lossy(&answer)),
            });
        }
        Ok(())
    };
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = std::net::TcpStream::connect(addr)
            .map_err(|source| BenchError::Connect { addr, source })?;
        ask(i, &mut stream)?;
        streams.push(stream);
    }
    eprintln!(
        "logmill bench: {n} HTTP connections answered; holding them for {} s",
        hold.as_secs_f64()
    );
    std::thread::sleep(hold);
    let after = server.and_then(usage::memory);
    for (i, stream) in streams.iter_mut().enumerate() {
        ask(i, stream)?;
    }
    let server = before.zip(after).map(|(before, after)| IdleMemory {
        rss_before_kib: before.rss_kib,
        rss_kib: after.rss_kib,
    });
    Ok(IdleReport {
        connections: streams.len(),
        held: hold,
        handshakes: None,
        server,
    })
}
