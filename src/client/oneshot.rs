//! `logmill health` and `logmill send`: one request on one connection, for a person at a shell
//! or a script, so that trying logmill needs no third-party tool (no `nc`).
//!
//! - [`health`] asks a server's TCP port `health` and returns its one-line answer. With `--wait`
//!   it keeps trying until the server answers or the time is up, so a script can start a server
//!   in the background and go on once it listens, without guessing a sleep.
//! - [`send`] stores one record over the native protocol with acks and returns its sequence
//!   number, once the server has written it.
//!
//! Both are the library's blocking calls ([`Client`], [`ask_health`]) with the CLI's options
//! around them and errors that say what to check at a shell.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use clap::Args;

use super::blocking::{Client, ask_health};
use super::error::Error as ClientError;
use super::framing::ClientOptions;
use crate::config;
use crate::protocol::jsonl::level_from_name;
use crate::protocol::native::ErrorKind;
use crate::record::{Body, Level, Record, Value};

/// Where `logmill serve` listens without flags.
pub(super) const DEFAULT_ADDR: &str = "127.0.0.1:4020";

/// How long `health` may take without `--wait`, and each step of `send` (connect, hello, the
/// ack). A server answers `health` from its event loop, even while its writer is stuck, and acks
/// a record once it is written: seconds mean something is wrong.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// App name sent in the hello; the files show it as APP/INSTANCE. With --token it may be
    /// left out (the token names the app) or must be the token's app; without one, a server
    /// under --auth optional shows it but stores the record in <dir>/_main.log.
    #[arg(long, default_value = "")]
    app: String,
    /// Application token (from `logmill token issue --app NAME`) sent in the hello: the record
    /// goes to that app's files, <dir>/<app>/_main.log.
    #[arg(long, default_value = "")]
    token: String,
    /// Instance of the app sent in the hello (a host, a pid, a worker); the files show
    /// APP/INSTANCE. Without it the server shows the connection's address.
    #[arg(long, default_value = "")]
    instance: String,
    /// Logger name.
    #[arg(long, default_value = "")]
    logger: String,
    /// An extra field, KEY=VALUE (repeat for more); sent as text.
    #[arg(long = "field", value_name = "KEY=VALUE", value_parser = parse_field)]
    fields: Vec<(String, String)>,
    /// The message; several words are joined with single spaces.
    #[arg(required = true, value_name = "MESSAGE")]
    message: Vec<String>,
    #[command(flatten)]
    tls: super::tls::TlsArgs,
}

/// `KEY=VALUE` for `--field`: the key is what precedes the first `=`, and must not be empty.
pub(super) fn parse_field(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

pub(super) fn parse_level(s: &str) -> Result<Level, String> {
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
    /// `--ca` cannot be used (said with its name).
    Tls(String),
    /// No server answered before the deadline; `last` is the last attempt's error.
    NoAnswer {
        addr: String,
        waited: Option<Duration>,
        last: io::Error,
    },
    /// Something answered `health` with what is not a health line.
    NotHealth { addr: SocketAddr, answer: String },
    /// Something answered `status` with what is not the status JSON (its first characters).
    NotStatus { addr: SocketAddr, answer: String },
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
            Error::NotStatus { addr, answer } => write!(
                f,
                "{addr} answered {answer:?}, which is not logmill's status JSON: is another \
                 program on that port, or a logmill older than `status`?"
            ),
            Error::Io { addr, source } => write!(f, "talking to {addr} failed: {source}"),
            Error::Tls(why) => write!(f, "cannot use TLS: {why}"),
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
            match until(deadline).and_then(|left| ask_health(addr, left)) {
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
    let options = ClientOptions::new(args.app.as_str())
        .instance(args.instance.as_str())
        .token(args.token.as_str())
        .timeout(ANSWER_TIMEOUT);
    let options = args.tls.apply(options, &args.addr).map_err(Error::Tls)?;
    let record = Record {
        level: args.level,
        logger: args.logger.as_str().into(),
        body: Body::Message(args.message.join(" ").into()),
        fields: args
            .fields
            .iter()
            .map(|(k, v)| (k.as_str().into(), Value::Str(v.as_str().into())))
            .collect(),
        ..Record::default()
    };
    let mut last = io::Error::other("no address to try");
    for addr in resolve(&args.addr)? {
        let sent = Client::connect(addr, &options).and_then(|mut client| {
            client.send(&record)?;
            client.wait_acked()
        });
        match sent {
            Ok(ack) => return Ok(ack.last_seq()),
            // Not accepted: the next address may be.
            Err(ClientError::Connect(e)) => last = e,
            Err(e) => return Err(Error::from_client(addr, e)),
        }
    }
    Err(Error::NoAnswer {
        addr: args.addr.clone(),
        waited: None,
        last,
    })
}

impl Error {
    /// The library's error for a connection to `addr`, as this command words it.
    fn from_client(addr: SocketAddr, e: ClientError) -> Error {
        match e {
            ClientError::Address(source)
            | ClientError::Connect(source)
            | ClientError::Io(source) => Error::Io { addr, source },
            ClientError::Refused { kind, message } => Error::Refused { kind, message },
            ClientError::Closed => Error::Closed { addr },
            e @ (ClientError::FrameTooLarge { .. }
            | ClientError::Undecodable(_)
            | ClientError::Unexpected(_)
            | ClientError::NothingToAck) => Error::Protocol {
                addr,
                detail: e.to_string(),
            },
        }
    }
}

pub(super) fn resolve(addr: &str) -> Result<Vec<SocketAddr>, Error> {
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
