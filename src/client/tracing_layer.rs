//! [`LogmillLayer`]: a `tracing_subscriber::Layer` over a [`Logger`] (feature `tracing`): each
//! event becomes a record, its `message` the body, its other fields the record's fields with
//! their types (integers, floats, booleans, strings; anything else as its `Debug` text), its
//! target the logger, its module, file and line kept.
//!
//! ```ignore
//! use tracing_subscriber::prelude::*;
//! let logger = Logger::start("127.0.0.1:4020", options)?;
//! tracing_subscriber::registry().with(LogmillLayer::new(logger)).init();
//! tracing::info!(order = 42, "checkout done");
//! ```
//!
//! Only the event's own fields are sent: the fields of the spans around it would need a span
//! registry (`tracing-subscriber`'s `registry` feature, two more crates), which this layer
//! does not ask for.
//!
//! Why a feature and not always on: `tracing-subscriber` without its default features adds one
//! crate (`tracing-core` is its only dependency), but a program that does not use `tracing`
//! should not compile it.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use tracing_core::field::{Field, Visit};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::logger::{Logger, now_ns};
use crate::record::{Body, Level, Record, Value};

/// A `Layer` that sends every event it sees to a [`Logger`]. Clone it to share one logger.
#[derive(Clone, Debug)]
pub struct LogmillLayer {
    logger: Arc<Logger>,
}

impl LogmillLayer {
    pub fn new(logger: Logger) -> LogmillLayer {
        LogmillLayer {
            logger: Arc::new(logger),
        }
    }

    /// The logger, to [`flush`](Logger::flush) before exit or read its stats.
    pub fn logger(&self) -> &Logger {
        &self.logger
    }
}

impl<S: Subscriber> Layer<S> for LogmillLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let mut visitor = Fields {
            message: String::new(),
            fields: Vec::new(),
        };
        event.record(&mut visitor);
        let level = match *meta.level() {
            tracing_core::Level::ERROR => Level::Error,
            tracing_core::Level::WARN => Level::Warning,
            tracing_core::Level::INFO => Level::Info,
            tracing_core::Level::DEBUG => Level::Debug,
            _ => Level::Trace,
        };
        let record = Record {
            timestamp_ns: now_ns(),
            level,
            body: Body::Message(Cow::Owned(visitor.message)),
            logger: Cow::Owned(meta.target().to_string()),
            module: Cow::Owned(meta.module_path().unwrap_or("").to_string()),
            file: Cow::Owned(meta.file().unwrap_or("").to_string()),
            line: meta.line().unwrap_or(0),
            fields: visitor.fields,
            ..Record::default()
        };
        match self.logger.log(record) {
            // Nowhere to return an error to: a dropped record is counted in the stats, a
            // refused token was reported once by the transmitter.
            Ok(()) | Err(_) => {}
        }
    }
}

struct Fields {
    message: String,
    fields: Vec<(Cow<'static, str>, Value<'static>)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value<'static>) {
        self.fields.push((Cow::Borrowed(field.name()), value));
    }
}

impl Visit for Fields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(i) => self.push(field, Value::Int(i)),
            Err(_) => self.push(field, Value::Str(Cow::Owned(value.to_string()))),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::Float(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.push(field, Value::Str(Cow::Owned(value.to_string())));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.push(field, Value::Str(Cow::Owned(format!("{value:?}"))));
        }
    }
}
