//! `logmill pipe`: standard input, one record per line, through a [`Logger`] with acks. A
//! reliable `logger(1)` for shell scripts: `make 2>&1 | logmill pipe --app build` exits 0 only
//! when the server has written every line.
//!
//! Plain lines become messages at `--level`; with `--json` each line is parsed as the JSON lines
//! protocol parses it ([`jsonl::parse_line`]: `level`, `message`, `logger`, ... fill the record,
//! other keys become fields; a line that is not a JSON object is kept as text). Empty lines are
//! skipped. `--field` adds fields to every record.

use std::io::{self, BufRead};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::framing::ClientOptions;
use super::logger::{self, Logger, LoggerOptions, WhenFull};
use super::oneshot::{DEFAULT_ADDR, parse_field, parse_level};
use crate::config;
use crate::protocol::jsonl;
use crate::record::{Body, Level, Record, Value};

/// The longest line read as one record; longer ones are cut (the rest is the next record), so
/// a stream without newlines cannot make `pipe` buffer without bound.
const MAX_LINE: usize = 1 << 20;

/// Options of `logmill pipe`.
#[derive(Args, Clone, Debug)]
pub struct PipeArgs {
    /// Server to send to (its TCP port).
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_ADDR)]
    addr: String,
    /// App name sent in the hello (see `logmill send --help`).
    #[arg(long, default_value = "")]
    app: String,
    /// Instance sent in the hello.
    #[arg(long, default_value = "")]
    instance: String,
    /// Application token (from `logmill token issue --app NAME`).
    #[arg(long, default_value = "")]
    token: String,
    /// Level of plain lines (JSON lines carry their own; info when they do not).
    #[arg(long, default_value = "info", value_parser = parse_level)]
    level: Level,
    /// Logger name, for records that do not name one.
    #[arg(long, default_value = "")]
    logger: String,
    /// An extra field on every record, KEY=VALUE (repeat for more).
    #[arg(long = "field", value_name = "KEY=VALUE", value_parser = parse_field)]
    fields: Vec<(String, String)>,
    /// Each line is a JSON object (as the JSON lines protocol reads it).
    #[arg(long)]
    json: bool,
    /// At the end of input, how long to wait for the last acks (e.g. 30s); also how long a
    /// server may stay unreachable before `pipe` gives up.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = config::parse_duration)]
    timeout: Duration,
    /// Spool directory: records the server has not acked by the end are kept there and sent
    /// by the next `pipe` (or Logger) using the same directory.
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
    #[command(flatten)]
    tls: super::tls::TlsArgs,
}

/// How `pipe` ended, when not every record was acked.
#[derive(Debug)]
pub enum Error {
    /// Reading standard input failed.
    Input(io::Error),
    /// The logger failed: a refused token, records not acked in time.
    Logger(logger::Error),
    /// `--ca` cannot be used.
    Tls(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Input(e) => write!(f, "reading standard input: {e}"),
            Error::Logger(logger::Error::Timeout { pending }) => write!(
                f,
                "{pending} records not acknowledged in time; is `logmill serve` running there?"
            ),
            Error::Logger(e) => write!(f, "{e}"),
            Error::Tls(why) => write!(f, "cannot use TLS: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// Sends every line of `input` and waits for the acks; returns how many records were acked.
///
/// # Errors
/// [`Error::Logger`] when not every record was acked (or the token was refused);
/// [`Error::Input`] when reading failed (what was read before is still sent).
pub fn run<R: BufRead>(args: &PipeArgs, input: &mut R) -> Result<u64, Error> {
    let hello = ClientOptions::new(args.app.as_str())
        .instance(args.instance.as_str())
        .token(args.token.as_str());
    let hello = args.tls.apply(hello, &args.addr).map_err(Error::Tls)?;
    let mut options = LoggerOptions::new(hello).when_full(WhenFull::Block(args.timeout));
    if let Some(dir) = &args.spool {
        options = options.spool(dir, logger::DEFAULT_SPOOL_BYTES);
    }
    let logger = Logger::start(args.addr.as_str(), options).map_err(Error::Logger)?;
    let mut line = Vec::new();
    let mut read = Ok(());
    loop {
        line.clear();
        match io::Read::take(&mut *input, MAX_LINE as u64).read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                read = Err(Error::Input(e));
                break;
            }
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            continue;
        }
        logger.log(record(args, text)).map_err(Error::Logger)?;
    }
    let flushed = logger.flush(args.timeout);
    let acked = logger.stats().acked;
    let closed = logger.close(Duration::ZERO);
    read?;
    flushed.and(closed).map_err(Error::Logger)?;
    Ok(acked)
}

fn record(args: &PipeArgs, text: &[u8]) -> Record<'static> {
    let mut record = if args.json {
        jsonl::parse_line(text)
    } else {
        Record {
            level: args.level,
            body: Body::Message(crate::record::lossy_utf8(text).into_owned().into()),
            ..Record::default()
        }
    };
    if record.logger.is_empty() {
        record.logger = args.logger.clone().into();
    }
    for (k, v) in &args.fields {
        record
            .fields
            .push((k.clone().into(), Value::Str(v.clone().into())));
    }
    record
}
