//! `logmill bench --idle N`: N native connections say hello, wait for the welcome and stay
//! silent; the spawned server's resident memory before and after says what an idle connection
//! costs. With `--apps`, the connections are spread over the apps with their tokens, as in a
//! load run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::apps::Apps;
use super::error::{BenchError, setup};
use super::link::{READ_CHUNK, open};
use super::report::{IdleMemory, IdleReport};
use super::socket::poll_once;
use super::spawn::SpawnedServer;
use super::usage;

/// Opens `n` connections, holds them `hold`, and measures the server's memory with them.
pub fn idle(
    n: usize,
    apps: &Apps,
    hold: Duration,
    addr: SocketAddr,
    server: Option<&SpawnedServer>,
    deadline: Instant,
    timeout: Duration,
) -> Result<IdleReport, BenchError> {
    let before = server.and_then(usage::memory);
    let mut poll = Poll::new().map_err(setup("cannot create a mio Poll"))?;
    eprintln!("logmill bench: opening {n} idle connections to {addr}");
    let (mut links, _) = open(&mut poll, addr, n, apps, deadline, timeout)?;
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
        server,
    })
}
