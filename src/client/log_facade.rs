//! [`Logger`] as a [`log::Log`] (feature `log`, on by default): every `log::info!` and friends
//! of a program and its libraries becomes a record, with its target as the logger, its module,
//! file and line, and its key-values (`info!(user = "ada"; "...")`) as fields.
//!
//! ```no_run
//! use logmill::client::{ClientOptions, Logger, LoggerOptions};
//!
//! let options = LoggerOptions::new(ClientOptions::new("shop").token("TOKEN"));
//! let logger = Logger::start("127.0.0.1:4020", options).expect("spool directory");
//! log::set_boxed_logger(Box::new(logger)).expect("no other logger yet");
//! log::set_max_level(log::LevelFilter::Info);
//! log::info!(order = 42; "checkout done");
//! log::logger().flush(); // before exit: waits (up to 10 s) for the acks
//! ```
//!
//! A logger installed with `set_boxed_logger` lives for the rest of the program and is never
//! dropped, so nothing closes it: call `log::logger().flush()` before exiting. Errors (a
//! refused token, a full queue) cannot be returned through `log`; they are counted in
//! [`Logger::stats`] and the refused token is reported once on stderr by the transmitter.

use std::borrow::Cow;
use std::time::Duration;

use super::logger::{Logger, now_ns};
use crate::record::{Body, Level, Record, Value};

/// How long `log::logger().flush()` waits for acks.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

impl log::Log for Logger {
    /// Every level: filtering is `log::set_max_level`'s job, which costs nothing per call.
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        match Logger::log(self, to_record(record)) {
            // Nowhere to return an error to: a dropped record is counted in the stats, a
            // refused token was reported once by the transmitter, after close nothing is sent.
            Ok(()) | Err(_) => {}
        }
    }

    fn flush(&self) {
        if let Err(e) = Logger::flush(self, FLUSH_TIMEOUT) {
            eprintln!("logmill client: flush: {e}");
        }
    }
}

fn to_record(record: &log::Record<'_>) -> Record<'static> {
    let mut fields = Fields(Vec::new());
    if let Err(e) = record.key_values().visit(&mut fields) {
        // A source that fails its own visit: keep what was collected, say why.
        fields
            .0
            .push(("kv_error".into(), Value::Str(Cow::Owned(e.to_string()))));
    }
    Record {
        timestamp_ns: now_ns(),
        level: match record.level() {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warning,
            log::Level::Info => Level::Info,
            log::Level::Debug => Level::Debug,
            log::Level::Trace => Level::Trace,
        },
        body: Body::Message(Cow::Owned(record.args().to_string())),
        logger: Cow::Owned(record.target().to_string()),
        module: Cow::Owned(record.module_path().unwrap_or("").to_string()),
        file: Cow::Owned(record.file().unwrap_or("").to_string()),
        line: record.line().unwrap_or(0),
        fields: fields.0,
        ..Record::default()
    }
}

struct Fields(Vec<(Cow<'static, str>, Value<'static>)>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let value = if let Some(i) = value.to_i64() {
            Value::Int(i)
        } else if let Some(b) = value.to_bool() {
            Value::Bool(b)
        } else if let Some(f) = value.to_f64() {
            Value::Float(f)
        } else {
            Value::Str(Cow::Owned(value.to_string()))
        };
        self.0.push((Cow::Owned(key.as_str().to_string()), value));
        Ok(())
    }
}
