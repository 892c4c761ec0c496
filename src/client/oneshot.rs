//! `logmill health` and `logmill send`: one request on one connection, for a person at a shell
//! or a script, so that trying logmill needs no third-party tool (no `nc`).
//!
//! - [`health`] asks a server's TCP port `health` and returns its one-line answer. With `--wait`
//!   it keeps trying until the server answers or the time is up, so a script can start a server
//!   in the background and go on once it listens, without guessing a sleep.
//! - [`send`] stores one record over the native protocol with acks and returns its sequence
//!   number, once the server has written it.
//!
//! Both use blocking std sockets with timeouts: one connection, one answer. The load client with
//! its own event loop is [`bench`](super::bench); this file shares nothing with it but the
//! protocol encoders.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use clap::Args;

use crate::config;
use crate::protocol::frame::{self, Frame};
use crate::protocol::jsonl::level_from_name;
use crate::protocol::native::{self, ErrorKind, Hello, ServerFrame};
use crate::record::{Body, Level, Record};

/// Where `logmill serve` listens without flags.
const DEFAULT_ADDR: &str = "127.0.0.1:4020";

/// How long one connection may take to connect and answer when no `--wait` is given. A server
/// answers `health` from its event loop, even while its writer is stuck, and acks a record once
/// it is written: seconds mean something is wrong.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest answer read: a health line is under 200 bytes, a server frame here under 1 KiB.
/// Whatever else listens on the port cannot make us buffer more.
const MAX_ANSWER: u32 = 64 * 1024;

/// Options of `logmill health`.
#[derive(Args, Clone, Debug)]
pub struct HealthArgs {
    /// Server to ask (its TCP port).
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_ADDR)]
    addr: String,
    /// Keep trying until the server answers or this much time has passed (e.g. 10s, 500ms):
    /// for scripts that start a server and go on once it listens.
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    wait: Option<Duration>,
}

/// Options of `logmill send`.
#[derive(Args, Clone, Debug)]
pub struct SendArgs {
    /// Server to send to (its TCP port).
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_ADDR)]
    addr: String,
    /// The record's level: trace, debug, info, notice, warning, error, critical, alert or
    /// emergency (also warn, err, fatal and other common spellings).
    #[arg(long, default_value = "info", value_parser = parse_level)]
    level: Level,
    /// App name sent in the hello; the files show it as APP/INSTANCE.
    #[arg(long, default_value = "")]
    app: String,
    /// Logger name.
    #[arg(long, default_value = "")]
    logger: String,
    /// The message; several words are joined with single spaces.
    #[arg(required = true, value_name = "MESSAGE")]
    message: Vec<String>,
}

fn parse_level(s: &str) -> Result<Level, String> {
    level_from_name(s).ok_or_else(|| {
        format!(
            "unknown level `{s}`: use trace, debug, info, notice, warning, error, critical, \
             alert or emergency"
        )
    })
}

/// A server's answer to `health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    line: String,
}

impl Health {
    /// The answer without its newline: `OK name=LogServer version=0.1.0 uptime=3s ...`.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// `OK`, as opposed to `DEGRADED` (the writer cannot write and is holding records).
    pub fn is_ok(&self) -> bool {
        self.line.starts_with("OK ")
    }
}

/// Why `health` or `send` failed. Each message says what to check.
#[derive(Debug)]
pub enum Error {
    /// `--addr` names no usable address.
    Address { addr: String, detail: String },
    /// No server answered before the deadline; `last` is the last attempt's error.
    NoAnswer {
        addr: String,
        waited: Option<Duration>,
        last: io::Error,
    },
    /// Something answered `health` with what is not a health line.
    NotHealth { addr: SocketAddr, answer: String },
    /// Connecting, writing or reading failed while sending a record.
    Io { addr: SocketAddr, source: io::Error },
    /// The server answered the record with an error frame.
    Refused {
        kind: Option<ErrorKind>,
        message: String,
    },
    /// The server closed the connection before acknowledging the record.
    Closed { addr: SocketAddr },
    /// The server's bytes are not logmill frames.
    Protocol { addr: SocketAddr, detail: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Address { addr, detail } => write!(
                f,
                "`{addr}` is not a usable address ({detail}): give HOST:PORT, like {DEFAULT_ADDR}"
            ),
            Error::NoAnswer {
                addr,
                waited: Some(waited),
                last,
            } => write!(
                f,
                "no logmill answered at {addr} within {:.1}s (last try: {last}); is `logmill \
                 serve` running with that --host and --port?",
                waited.as_secs_f64()
            ),
            Error::NoAnswer {
                addr,
                waited: None,
                last,
            } => write!(
                f,
                "no answer from {addr}: {last}; is `logmill serve` running with that --host and \
                 --port? (`logmill health --wait 10s` waits for one that is starting)"
            ),
            Error::NotHealth { addr, answer } => write!(
                f,
                "{addr} answered {answer:?}, which is not a logmill health line: is another \
                 program on that port?"
            ),
            Error::Io { addr, source } => write!(f, "talking to {addr} failed: {source}"),
            Error::Refused {
                kind: Some(kind),
                message,
            } => write!(f, "the server refused the record ({kind:?}): {message}"),
            Error::Refused {
                kind: None,
                message,
            } => write!(f, "the server refused the record: {message}"),
            Error::Closed { addr } => write!(
                f,
                "{addr} closed the connection before acknowledging the record; it may not be stored"
            ),
            Error::Protocol { addr, detail } => write!(
                f,
                "{addr} does not speak logmill's native protocol ({detail}): is another program \
                 on that port?"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::NoAnswer { last: source, .. } | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Asks the server at `--addr` for its health line; with `--wait`, retries (refused, reset,
/// closed without an answer) until one answers or the time is up.
///
/// # Errors
/// [`Error::NoAnswer`] when nothing answered in time, [`Error::NotHealth`] when something that
/// is not logmill did, [`Error::Address`] for an address that does not resolve.
pub fn health(args: &HealthArgs) -> Result<Health, Error> {
    let start = Instant::now();
    let deadline = start + args.wait.unwrap_or(ANSWER_TIMEOUT);
    let addrs = resolve(&args.addr)?;
    let mut pause = Duration::from_millis(10);
    let mut last = None;
    loop {
        for &addr in &addrs {
            match ask_health(addr, deadline) {
                Ok(answer) if answer.starts_with("OK ") || answer.starts_with("DEGRADED ") => {
                    return Ok(Health {
                        line: answer.trim_end().to_string(),
                    });
                }
                Ok(answer) => {
                    return Err(Error::NotHealth {
                        addr,
                        answer: answer.trim_end().to_string(),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if args.wait.is_none() || left.is_zero() {
            break;
        }
        // Not ready yet: a server that is starting binds within milliseconds of its exec, so
        // poll often at first, then settle at five tries a second.
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(200));
        if Instant::now() >= deadline {
            break;
        }
    }
    Err(Error::NoAnswer {
        addr: args.addr.clone(),
        waited: args.wait.map(|_| start.elapsed()),
        last: last.unwrap_or_else(|| io::Error::other("no address to try")),
    })
}

/// One `health` request to `addr`; every step is bounded by `deadline`.
fn ask_health(addr: SocketAddr, deadline: Instant) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, until(deadline)?)?;
    stream.set_write_timeout(Some(until(deadline)?))?;
    stream.write_all(b"health\n")?;
    stream.set_read_timeout(Some(until(deadline)?))?;
    let mut answer = Vec::new();
    stream
        .take(u64::from(MAX_ANSWER))
        .read_to_end(&mut answer)?;
    if answer.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed without an answer",
        ));
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The time left before `deadline`, as a socket timeout (which must not be zero).
fn until(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
    }
    Ok(left)
}

/// Sends one record with acks and waits until the server has written it; returns its sequence
/// number.
///
/// # Errors
/// [`Error::NoAnswer`] when no server accepts the connection; [`Error::Refused`],
/// [`Error::Closed`] or [`Error::Io`] when the record was not acknowledged (it may or may not be
/// stored); [`Error::Protocol`] when the answer is not logmill's.
pub fn send(args: &SendArgs) -> Result<u64, Error> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let (mut stream, addr) = connect(&args.addr, deadline)?;
    let io_error = |source| Error::Io { addr, source };
    let text = args.message.join(" ");
    let mut out = Vec::new();
    native::encode_hello(
        &Hello {
            app: args.app.clone(),
            want_acks: true,
            ..Hello::default()
        },
        &mut out,
    );
    native::encode_records(
        &[Record {
            level: args.level,
            logger: args.logger.as_str().into(),
            body: Body::Message(text.into()),
            ..Record::default()
        }],
        &mut out,
    );
    stream
        .set_write_timeout(Some(until(deadline).map_err(io_error)?))
        .and_then(|()| stream.write_all(&out))
        .map_err(io_error)?;
    let mut buf = Vec::new();
    loop {
        let protocol_error = |detail: String| Error::Protocol { addr, detail };
        while let Frame::Complete { payload, consumed } =
            frame::decode(&buf, MAX_ANSWER).map_err(|e| protocol_error(e.to_string()))?
        {
            let reply =
                native::decode_server_frame(payload).map_err(|e| protocol_error(e.to_string()))?;
            buf.drain(..consumed);
            match reply {
                ServerFrame::Ack { count, last_seq } if count >= 1 => return Ok(last_seq),
                ServerFrame::Ack { .. } | ServerFrame::Welcome { .. } => {}
                ServerFrame::Error { kind, message } => {
                    return Err(Error::Refused { kind, message });
                }
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream
            .set_read_timeout(Some(until(deadline).map_err(io_error)?))
            .and_then(|()| stream.read(&mut chunk))
            .map_err(io_error)?;
        if n == 0 {
            return Err(Error::Closed { addr });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connects to the first of `addr`'s addresses that accepts.
fn connect(addr: &str, deadline: Instant) -> Result<(TcpStream, SocketAddr), Error> {
    let mut last = io::Error::other("no address to try");
    for a in resolve(addr)? {
        match until(deadline).and_then(|t| TcpStream::connect_timeout(&a, t)) {
            Ok(stream) => return Ok((stream, a)),
            Err(e) => last = e,
        }
    }
    Err(Error::NoAnswer {
        addr: addr.to_string(),
        waited: None,
        last,
    })
}

fn resolve(addr: &str) -> Result<Vec<SocketAddr>, Error> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::Address {
            addr: addr.to_string(),
            detail: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Address {
            addr: addr.to_string(),
            detail: "resolves to no address".into(),
        });
    }
    Ok(addrs)
}
