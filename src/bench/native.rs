//! The native load: C connections say hello asking for acks, send their share of the records
//! in batch frames as fast as their sockets take them (or within `--window`), and read acks
//! until every record is acknowledged; ack latency is measured per batch. [`LoadConn`], one
//! connection's share and how far it got, is also what the unacked protocols send with
//! (`unacked.rs`).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::apps::Apps;
use super::args::{BenchArgs, Proto, share};
use super::error::{BenchError, setup};
use super::link::{Link, READ_CHUNK, Tls, open};
use super::progress::Progress;
use super::report::{Handshakes, LoadReport, SlowlorisCount};
use super::slowloris::Slowloris;
use super::socket::wait;
use super::spawn::SpawnedServer;
use super::templates::Template;
use super::usage::Usage;
use crate::client::framing::Reply;
use crate::protocol::frame;

/// Native: opens the connections, sends every record, waits for every ack, and measures.
pub fn load(
    args: &BenchArgs,
    apps: &Apps,
    tls: Option<&Tls>,
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    server: Option<&SpawnedServer>,
    deadline: Instant,
) -> Result<LoadReport, BenchError> {
    let n = args.connections as usize;
    let batch = u64::from(args.batch);
    let size = args.size as usize;
    let mut poll = Poll::new().map_err(setup("cannot create a mio Poll"))?;
    let mut slow = match (args.slowloris, http_addr) {
        (Some(count), Some(http)) => Some(Slowloris::open(
            &mut poll,
            http,
            count as usize,
            deadline,
            args.timeout,
        )?),
        _ => None,
    };
    eprintln!("logmill bench: opening {n} connections to {addr}");
    let set_up = Instant::now();
    let (links, max_frame) = open(&mut poll, addr, n, apps, tls, deadline, args.timeout)?;
    let handshakes = tls.map(|_| Handshakes {
        count: n,
        elapsed: set_up.elapsed(),
    });

    // Everything is encoded here, before the clock starts.
    let mut conns: Vec<LoadConn> = links
        .into_iter()
        .enumerate()
        .map(|(i, link)| {
            let total = share(i, n, args.records);
            LoadConn::new(link, Proto::Native, i, total, batch, args.window, size)
        })
        .collect();
    if let Some(bytes) = conns.iter().map(LoadConn::largest_frame).max() {
        let payload = bytes.saturating_sub(frame::HEADER_LEN);
        if payload > max_frame as usize {
            return Err(BenchError::FrameTooLarge {
                bytes: payload,
                max: max_frame,
            });
        }
    }
    let batches: u64 = conns.iter().map(|c| c.total.div_ceil(batch)).sum();
    let mut latencies = Vec::with_capacity(usize::try_from(batches).unwrap_or(0));
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut replies = Vec::new();
    let mut progress = Progress::new(!args.no_progress, args.records);
    let mut acked: u64 = 0;
    let mut remaining = conns.len();

    let usage = Usage::before(server);
    eprintln!(
        "logmill bench: sending {} records of {size} bytes in batches of {batch}",
        args.records
    );
    let start = Instant::now();
    let mut end = start;
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send()
            .map_err(|source| BenchError::Io { conn: i, source })?;
    }
    while remaining > 0 {
        wait(&mut poll, &mut events, deadline, args.timeout, || {
            format!("acks ({acked} of {} records acknowledged)", args.records)
        })?;
        for event in events.iter() {
            if Slowloris::owns(event.token()) {
                if let Some(slow) = slow.as_mut() {
                    slow.on_event(&poll, event)?;
                }
                continue;
            }
            let i = event.token().0;
            let conn = &mut conns[i];
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let closed = conn.link.receive(i, &mut scratch, &mut replies)?;
                let now = Instant::now();
                for reply in replies.drain(..) {
                    if let Reply::Ack(ack) = reply {
                        acked += conn.on_ack(i, ack.count(), now, &mut latencies)?;
                    }
                }
                if args.window > 0 {
                    // The ack may have opened the window; no writable edge will say so.
                    conn.send()
                        .map_err(|source| BenchError::Io { conn: i, source })?;
                }
                if conn.acked == conn.total && !conn.complete {
                    conn.complete = true;
                    remaining -= 1;
                    end = now;
                }
                if closed && !conn.complete {
                    return Err(BenchError::Closed {
                        conn: i,
                        detail: format!(
                            "after acking {} of its {} records",
                            conn.acked, conn.total
                        ),
                    });
                }
            }
            if event.is_writable() {
                conn.send()
                    .map_err(|source| BenchError::Io { conn: i, source })?;
            }
        }
        if let Some(slow) = slow.as_mut() {
            slow.drip();
        }
        progress.update(acked, start.elapsed());
    }
    progress.finish();
    let mut report = usage.report(server, args, end - start, Some(&mut latencies));
    report.handshakes = handshakes;
    report.slowloris = slow.map(|s| SlowlorisCount {
        connections: args.slowloris.unwrap_or(0) as usize,
        held: s.held(),
        closed: s.closed,
        timeouts: s.timeouts,
    });
    Ok(report)
}

/// One connection's share of the load and how far it got.
pub struct LoadConn {
    link: Link,
    /// Records this connection sends in all.
    total: u64,
    batch: u64,
    /// Unacked records allowed before sending waits for acks (0: no limit).
    window: u64,
    /// Records whose batch frames were completely handed to the socket.
    queued: u64,
    /// Bytes of the current batch frame already handed to the socket.
    offset: usize,
    /// Records the server acknowledged (acks are cumulative).
    acked: u64,
    /// Every record is acknowledged.
    complete: bool,
    /// Batches handed to the socket and not yet acked: (`queued` once it was, when). Kept only
    /// for the native protocol: the others are never acked, and the list would only grow.
    unacked: VecDeque<(u64, Instant)>,
    acked_protocol: bool,
    /// A frame of `batch` records; present when `total >= batch`.
    full: Option<Template>,
    /// A frame of the last `total % batch` records; present when that is not zero.
    tail: Option<Template>,
}

impl LoadConn {
    pub fn new(
        link: Link,
        proto: Proto,
        conn: usize,
        total: u64,
        batch: u64,
        window: u64,
        size: usize,
    ) -> LoadConn {
        let tail = total % batch;
        LoadConn {
            link,
            total,
            batch,
            window,
            queued: 0,
            offset: 0,
            acked: 0,
            complete: total == 0,
            unacked: VecDeque::new(),
            acked_protocol: proto == Proto::Native,
            full: (total >= batch).then(|| Template::new(proto, conn, batch as usize, size)),
            tail: (tail > 0).then(|| Template::new(proto, conn, tail as usize, size)),
        }
    }

    /// Every record's batch was completely handed to the socket.
    pub fn all_queued(&self) -> bool {
        self.queued == self.total
    }

    /// Records whose batch frames were completely handed to the socket.
    pub fn queued(&self) -> u64 {
        self.queued
    }

    /// Reads what the server sent on a protocol without answers: see [`Link::expect_silence`].
    pub fn expect_silence(&mut self, conn: usize, scratch: &mut [u8]) -> Result<(), BenchError> {
        self.link.expect_silence(conn, scratch)
    }

    fn largest_frame(&self) -> usize {
        let len = |t: &Option<Template>| t.as_ref().map_or(0, |t| t.frame.len());
        len(&self.full).max(len(&self.tail))
    }

    /// The hot path: hands batch frames to the socket until it would block, the window is full,
    /// or all are sent.
    ///
    /// Batching is what keeps the client cheap: one `write` moves up to a whole frame of B
    /// records, and the only per-record work is [`Template::stamp`] writing each record's counter
    /// into the reused frame. A batch counts as sent when its last byte is handed over; that
    /// moment starts its ack latency.
    pub fn send(&mut self) -> io::Result<()> {
        while self.queued < self.total {
            // A frame once started is finished, so the window is only looked at between frames.
            if self.offset == 0 && self.window > 0 && self.queued - self.acked >= self.window {
                return Ok(());
            }
            let template = if self.total - self.queued >= self.batch {
                self.full.as_mut()
            } else {
                self.tail.as_mut()
            }
            .expect("`full` exists while a batch remains, `tail` when fewer remain");
            if self.offset == 0 {
                template.stamp(self.queued);
            }
            let Some(n) = self.link.write(&template.frame[self.offset..])? else {
                return Ok(());
            };
            self.offset += n;
            if self.offset == template.frame.len() {
                self.offset = 0;
                self.queued += template.records;
                if self.acked_protocol {
                    self.unacked.push_back((self.queued, Instant::now()));
                }
            }
        }
        // TLS may still hold the last records: they go as the socket takes them (this runs
        // again on every writable edge).
        self.link.flush()
    }

    /// Takes an ack (the cumulative count of this connection's records written), records the
    /// latency of each batch it completes, and returns how many records it newly acknowledged.
    fn on_ack(
        &mut self,
        conn: usize,
        count: u64,
        now: Instant,
        latencies: &mut Vec<Duration>,
    ) -> Result<u64, BenchError> {
        if count > self.queued {
            return Err(BenchError::Protocol {
                conn,
                detail: format!(
                    "an ack for {count} records, but only {} were completely sent",
                    self.queued
                ),
            });
        }
        if count < self.acked {
            return Err(BenchError::Protocol {
                conn,
                detail: format!("the ack count went back from {} to {count}", self.acked),
            });
        }
        while let Some(&(end, sent_at)) = self.unacked.front() {
            if end > count {
                break;
            }
            latencies.push(now.saturating_duration_since(sent_at));
            self.unacked.pop_front();
        }
        let newly = count - self.acked;
        self.acked = count;
        Ok(newly)
    }
}
