//! `--proto grpc-web` and `--proto websocket` (the browser's protocols) and `--proto otlp-http`,
//! on the gRPC port's HTTP/1.1 side. One blocking thread per connection (set up before the clock starts), since
//! each connection is a plain request/answer or send/ack exchange; the records are encoded
//! once per connection (a [`Template`] each for a full batch and the last, shorter one) and
//! resent as they are, so the client does no per-record work while the clock runs (the
//! records of a connection repeat their numbers from batch to batch).
//!
//! - gRPC-Web: keep-alive `POST /logmill.v1.LogService/Push` calls, binary mode
//!   (`application/grpc-web+proto`), `--batch` records each, one call in flight per connection
//!   (the server reads no further request while a call waits for the writer, so pipelining
//!   would only queue bytes). A call's answer comes once its records are written: its ack.
//!   Latency is per call.
//! - OTLP/HTTP: the same keep-alive calls as gRPC-Web, each a `POST /v1/logs` of one
//!   `ExportLogsServiceRequest` (`application/x-protobuf`, the connection's app token as
//!   `Authorization: Bearer`, see `--apps`); the answer, `200` with an
//!   `ExportLogsServiceResponse` that rejects nothing, is the call's ack.
//! - WebSocket: `GET /v1/ws?acks=1`, then masked binary frames each holding one native batch
//!   (`ClientFrame` without its length prefix), sent as fast as the socket takes them; done
//!   when the acks count every record. No latency (acks are cumulative).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::apps::Apps;
use super::args::{BenchArgs, Proto, share};
use super::error::BenchError;
use super::otlp;
use super::report::LoadReport;
use super::socket::time_left;
use super::spawn::SpawnedServer;
use super::templates::Template;
use super::usage::Usage;
use crate::protocol::websocket::{self, Opcode};

/// The mask of every frame a bench connection sends (a client must mask; any key will do).
const MASK: [u8; 4] = [0x5a, 0x3c, 0x96, 0x0f];

/// Runs the load (module doc).
///
/// # Errors
/// [`BenchError`]: a connection that cannot be set up, a refused call or upgrade, a server
/// that closes early, or `--timeout`.
pub fn load(
    args: &BenchArgs,
    apps: &Apps,
    addr: SocketAddr,
    server: Option<&SpawnedServer>,
    deadline: Instant,
) -> Result<LoadReport, BenchError> {
    let n = args.connections as usize;
    let batch = args.batch as usize;
    let size = args.size as usize;
    eprintln!(
        "logmill bench: opening {n} {} connections to {addr}",
        args.proto.name()
    );
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let total = share(i, n, args.records);
        if total == 0 {
            continue;
        }
        let left = time_left(deadline, args.timeout, || "connections".into())?;
        let stream = TcpStream::connect_timeout(&addr, left)
            .map_err(|source| BenchError::Connect { addr, source })?;
        let io = |source| BenchError::Io { conn: i, source };
        stream.set_nodelay(true).map_err(io)?;
        stream.set_read_timeout(Some(left)).map_err(io)?;
        let mut reader = BufReader::new(stream);
        let job = match args.proto {
            Proto::WebSocket => {
                upgrade(i, &mut reader)?;
                Job::WebSocket(frames(i, total, batch, size))
            }
            Proto::OtlpHttp => Job::OtlpHttp(otlp_calls(i, apps.of(i).1, total, batch, size)),
            _ => Job::GrpcWeb(calls(i, total, batch, size)),
        };
        conns.push((i, reader, total, job));
    }
    let usage = Usage::before(server);
    eprintln!(
        "logmill bench: sending {} {} records of {size} bytes, {batch} per {}",
        args.records,
        args.proto.name(),
        match args.proto {
            Proto::WebSocket => "message",
            Proto::OtlpHttp => "POST /v1/logs",
            _ => "call",
        }
    );
    let start = Instant::now();
    let results: Vec<Result<Vec<Duration>, BenchError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = conns
            .into_iter()
            .map(|(i, mut reader, total, job)| {
                scope.spawn(move || match job {
                    Job::GrpcWeb(calls) => run_calls(i, &mut reader, &calls, grpc_web_answer),
                    Job::OtlpHttp(calls) => run_calls(i, &mut reader, &calls, otlp_answer),
                    Job::WebSocket(frames) => run_frames(i, &mut reader, &frames, total),
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BenchError::Protocol {
                        conn: 0,
                        detail: "a bench thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let mut latencies = Vec::new();
    for result in results {
        latencies.extend(result?);
    }
    if Instant::now() > deadline {
        return Err(BenchError::Timeout {
            timeout: args.timeout,
            waiting_for: "every record acknowledged".into(),
        });
    }
    let latencies = (!latencies.is_empty()).then_some(&mut latencies[..]);
    Ok(usage.report(server, args, elapsed, latencies))
}

/// What one connection sends, encoded before the clock starts.
enum Job {
    /// Whole HTTP requests, one per call.
    GrpcWeb(Plan),
    /// Whole HTTP requests, one per call.
    OtlpHttp(Plan),
    /// Masked WebSocket frames, one per batch.
    WebSocket(Plan),
}

/// A connection's sends: `count` times `full` (a whole batch of `batch` records), then `tail`
/// (the rest, `rest` records).
struct Plan {
    full: Vec<u8>,
    batch: u64,
    count: u64,
    tail: Option<Vec<u8>>,
    rest: u64,
}

impl Plan {
    /// `total` records in batches of `batch`, each batch encoded by `encode(records)`.
    fn new(total: u64, batch: usize, encode: impl Fn(usize) -> Vec<u8>) -> Plan {
        let rest = total % batch as u64;
        Plan {
            full: encode(batch),
            batch: batch as u64,
            count: total / batch as u64,
            tail: (rest > 0).then(|| encode(rest as usize)),
            rest,
        }
    }

    /// Each send and the records it holds.
    fn sends(&self) -> impl Iterator<Item = (&[u8], u64)> {
        (0..self.count)
            .map(|_| (self.full.as_slice(), self.batch))
            .chain(self.tail.as_deref().map(|tail| (tail, self.rest)))
    }
}

/// The Push requests of connection `i`.
fn calls(i: usize, total: u64, batch: usize, size: usize) -> Plan {
    Plan::new(total, batch, |records| {
        let body = Template::new(Proto::GrpcWeb, i, records, size).frame;
        let mut request = format!(
            "POST /logmill.v1.LogService/Push HTTP/1.1\r\nHost: bench\r\n\
             Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request
    })
}

/// The `POST /v1/logs` requests of connection `i`, with its app's `token` (none if empty).
fn otlp_calls(i: usize, token: &str, total: u64, batch: usize, size: usize) -> Plan {
    let authorization = if token.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {token}\r\n")
    };
    Plan::new(total, batch, |records| {
        let body = Template::new(Proto::OtlpHttp, i, records, size).frame;
        let mut request = format!(
            "POST /v1/logs HTTP/1.1\r\nHost: bench\r\n\
             Content-Type: application/x-protobuf\r\n{authorization}\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request
    })
}

/// The WebSocket frames of connection `i`: a native batch each, masked.
fn frames(i: usize, total: u64, batch: usize, size: usize) -> Plan {
    Plan::new(total, batch, |records| {
        let native = Template::new(Proto::WebSocket, i, records, size).frame;
        let mut frame = Vec::with_capacity(native.len() + websocket::MAX_HEADER_LEN);
        // Without the 4-byte length prefix: the WebSocket frame has its own length.
        websocket::encode_client_frame(true, Opcode::Binary, MASK, &native[4..], &mut frame);
        frame
    })
}

/// The handshake of `GET /v1/ws?acks=1`, before the clock starts.
fn upgrade(i: usize, reader: &mut BufReader<TcpStream>) -> Result<(), BenchError> {
    let io = |source| BenchError::Io { conn: i, source };
    reader
        .get_mut()
        .write_all(
            b"GET /v1/ws?acks=1 HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .map_err(io)?;
    let (status, _, body) = read_answer(i, reader)?;
    if status != 101 {
        return Err(BenchError::Closed {
            conn: i,
            detail: format!(
                "WebSocket upgrade answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ),
        });
    }
    Ok(())
}

/// One HTTP answer: status, `grpc-status` if in the headers, body (`Content-Length`; none for
/// a `101`).
fn read_answer(
    i: usize,
    reader: &mut BufReader<TcpStream>,
) -> Result<(u16, Option<String>, Vec<u8>), BenchError> {
    let io = |source| BenchError::Io { conn: i, source };
    let protocol = |detail: String| BenchError::Protocol { conn: i, detail };
    let mut line = String::new();
    if reader.read_line(&mut line).map_err(io)? == 0 {
        return Err(BenchError::Closed {
            conn: i,
            detail: "the server closed the connection before answering".into(),
        });
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| protocol(format!("not an HTTP status line: {line:?}")))?;
    let (mut length, mut grpc_status) = (0usize, None);
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(io)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        if name.eq_ignore_ascii_case("content-length") {
            length = value
                .trim()
                .parse()
                .map_err(|_| protocol(format!("bad Content-Length {value:?}")))?;
        } else if name.eq_ignore_ascii_case("grpc-status") {
            grpc_status = Some(value.trim().to_owned());
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(io)?;
    Ok((status, grpc_status, body))
}

/// What a call's answer says: its status, `grpc-status` if in the headers, and body.
struct Answer {
    status: u16,
    grpc_status: Option<String>,
    body: Vec<u8>,
}

/// Sends each call and reads its answer, which `check` must find an ack of the call's records;
/// returns each call's latency.
fn run_calls(
    i: usize,
    reader: &mut BufReader<TcpStream>,
    calls: &Plan,
    check: fn(usize, Answer, u64) -> Result<(), BenchError>,
) -> Result<Vec<Duration>, BenchError> {
    let mut latencies = Vec::new();
    for (request, records) in calls.sends() {
        let sent = Instant::now();
        reader
            .get_mut()
            .write_all(request)
            .map_err(|source| BenchError::Io { conn: i, source })?;
        let (status, grpc_status, body) = read_answer(i, reader)?;
        let answer = Answer {
            status,
            grpc_status,
            body,
        };
        check(i, answer, records)?;
        latencies.push(sent.elapsed());
    }
    Ok(latencies)
}

/// A gRPC-Web `Push` succeeded: a trailers-only refusal has grpc-status in the headers; success
/// has it in the trailers frame at the end of the body.
fn grpc_web_answer(i: usize, answer: Answer, _records: u64) -> Result<(), BenchError> {
    let ok = answer.status == 200
        && answer.grpc_status.is_none()
        && answer
            .body
            .windows(b"grpc-status:0\r\n".len())
            .any(|w| w == b"grpc-status:0\r\n");
    if ok {
        return Ok(());
    }
    Err(BenchError::GrpcStatus {
        conn: i,
        status: answer
            .grpc_status
            .unwrap_or_else(|| format!("HTTP {}", answer.status)),
        message: String::from_utf8_lossy(&answer.body).into_owned(),
    })
}

/// An OTLP/HTTP export stored all its `records`: `200` and an `ExportLogsServiceResponse` that
/// rejects none.
fn otlp_answer(i: usize, answer: Answer, records: u64) -> Result<(), BenchError> {
    if answer.status != 200 {
        return Err(BenchError::HttpStatus {
            conn: i,
            status: answer.status,
            message: otlp::refusal(&answer.body),
        });
    }
    otlp::accepted(&answer.body, records)
        .map(|_| ())
        .map_err(|detail| BenchError::Protocol { conn: i, detail })
}

/// Sends every frame, then reads acks until they count `total` records.
fn run_frames(
    i: usize,
    reader: &mut BufReader<TcpStream>,
    frames: &Plan,
    total: u64,
) -> Result<Vec<Duration>, BenchError> {
    let io = |source| BenchError::Io { conn: i, source };
    for (frame, _) in frames.sends() {
        reader.get_mut().write_all(frame).map_err(io)?;
    }
    let mut acked = 0;
    while acked < total {
        let (opcode, payload) = read_frame(i, reader)?;
        match opcode {
            1 => {
                acked = ack_count(&payload).ok_or_else(|| BenchError::Protocol {
                    conn: i,
                    detail: format!("not an ack: {:?}", String::from_utf8_lossy(&payload)),
                })?
            }
            8 => {
                return Err(BenchError::Closed {
                    conn: i,
                    detail: format!(
                        "close frame {:?} with {acked} of {total} records acked",
                        String::from_utf8_lossy(payload.get(2..).unwrap_or_default())
                    ),
                });
            }
            _ => {}
        }
    }
    let mut close = Vec::new();
    websocket::encode_client_frame(
        true,
        Opcode::Close,
        MASK,
        &1000u16.to_be_bytes(),
        &mut close,
    );
    reader.get_mut().write_all(&close).map_err(io)?;
    Ok(Vec::new())
}

/// `{"ack":N,"last_seq":S}`'s N.
fn ack_count(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    let rest = text.strip_prefix("{\"ack\":")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// One server frame (unmasked): opcode and payload.
fn read_frame(i: usize, reader: &mut BufReader<TcpStream>) -> Result<(u8, Vec<u8>), BenchError> {
    let io = |source| BenchError::Io { conn: i, source };
    let mut head = [0; 2];
    reader.read_exact(&mut head).map_err(io)?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut l = [0; 2];
            reader.read_exact(&mut l).map_err(io)?;
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0; 8];
            reader.read_exact(&mut l).map_err(io)?;
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    if len > 1 << 20 {
        return Err(BenchError::Protocol {
            conn: i,
            detail: format!("a server frame of {len} bytes"),
        });
    }
    let mut payload = vec![0; len as usize];
    reader.read_exact(&mut payload).map_err(io)?;
    Ok((head[0] & 0x0f, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_and_acks() {
        let plan = Plan::new(10, 4, |n| vec![0; n]);
        let sizes: Vec<(usize, u64)> = plan.sends().map(|(b, n)| (b.len(), n)).collect();
        assert_eq!(sizes, vec![(4, 4), (4, 4), (2, 2)]);
        assert_eq!(Plan::new(8, 4, |n| vec![0; n]).sends().count(), 2);
        assert_eq!(ack_count(br#"{"ack":42,"last_seq":7}"#), Some(42));
        assert_eq!(ack_count(b"nope"), None);
    }
}
