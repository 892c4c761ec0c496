//! The ClickHouse sink: `INSERT INTO db.table FORMAT JSONEachRow` over ClickHouse's HTTP
//! interface, one gzip-compressed `POST` per batch, and the `CREATE TABLE` it expects
//! ([`schema`]).
//!
//! The table is a `ReplacingMergeTree` ordered by `(node, bucket, seq)`: a batch sent again
//! after a lost acknowledgement (at least once) writes rows with the same key, which `FINAL`
//! (and the background merges) collapse into one. It must work on the ClickHouse Debian ships
//! (18.16) as on current releases, so it uses nothing newer: no `DateTime64` (the time is
//! `DateTime` seconds plus `time_us`, the microseconds), no `LowCardinality`, no `JSON` type
//! (fields are JSON text).
//!
//! Errors are sorted into those that can succeed later (the server is down, restarting, out of
//! memory: retried with backoff) and those that cannot (authentication, a table or column that
//! does not exist: the forwarder stops and says why, with ClickHouse's own message).

use std::io::Write;

use super::http::Client;
use super::{SendError, Sink};
use crate::record::{Body, Value};
use crate::storage::parse::ParsedLine;

/// The table `logmill forward schema clickhouse` names when none is given.
pub const DEFAULT_TABLE: &str = "logs.records";

/// The `CREATE TABLE` statement for `table` (`db.table`), in syntax 18.16 understands.
pub fn schema(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table}
(
    node String,
    bucket String,
    seq UInt64,
    time DateTime,
    time_us UInt32,
    level String,
    app String,
    instance String,
    logger String,
    message String,
    host String,
    service String,
    module String,
    file String,
    line UInt32,
    function String,
    process String,
    pid UInt32,
    thread String,
    tid UInt64,
    stack_trace String,
    fields String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (node, bucket, seq)
"
    )
}

/// Who the sink logs in as: `X-ClickHouse-User` and `X-ClickHouse-Key`.
#[derive(Clone, Default)]
pub struct Credentials {
    user: Option<String>,
    password: Option<String>,
}

impl Credentials {
    pub fn new(user: Option<String>, password: Option<String>) -> Credentials {
        Credentials { user, password }
    }
}

/// Never prints the password.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

pub struct ClickHouse {
    client: Client,
    /// `/?query=INSERT%20INTO%20db.table%20FORMAT%20JSONEachRow`.
    path: String,
    credentials: Credentials,
    node: String,
    /// The batch: one JSON object per line.
    rows: Vec<u8>,
    count: usize,
    /// `rows` compressed, kept so a retried batch is not compressed again.
    gzipped: Vec<u8>,
    /// A reused buffer for one record's fields.
    fields: Vec<u8>,
}

impl ClickHouse {
    pub fn new(
        host: &str,
        port: u16,
        table: &str,
        node: &str,
        credentials: Credentials,
    ) -> ClickHouse {
        ClickHouse {
            client: Client::new(host, port),
            path: format!("/?query=INSERT%20INTO%20{table}%20FORMAT%20JSONEachRow"),
            credentials,
            node: node.to_string(),
            rows: Vec::new(),
            count: 0,
            gzipped: Vec::new(),
            fields: Vec::new(),
        }
    }
}

/// Appends `s` as a JSON string.
fn string(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// The record's fields as one JSON object's text: values keep their JSON type.
fn fields_json(out: &mut Vec<u8>, fields: &[(std::borrow::Cow<'_, str>, Value<'_>)]) {
    out.clear();
    out.push(b'{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, key);
        out.push(b':');
        match value {
            Value::Str(s) => string(out, s),
            Value::Json(j) => out.extend_from_slice(j.as_str().as_bytes()),
            other => {
                // Int, Float (null when not finite), Bool, Null: their JSON spelling.
                if write!(out, "{other}").is_err() {
                    out.extend_from_slice(b"null");
                }
            }
        }
    }
    out.push(b'}');
}

impl Sink for ClickHouse {
    /// One JSONEachRow line per record: a few small writes into the batch's buffer, no
    /// allocation but the fields' text (a reused buffer).
    fn push(&mut self, bucket: &str, line: &ParsedLine<'_>) {
        let r = line.record();
        let out = &mut self.rows;
        out.extend_from_slice(b"{\"node\":");
        string(out, &self.node);
        out.extend_from_slice(b",\"bucket\":");
        string(out, bucket);
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(n.format(line.seq()).as_bytes());
        out.extend_from_slice(b",\"time\":");
        out.extend_from_slice(n.format(r.timestamp_ns / 1_000_000_000).as_bytes());
        out.extend_from_slice(b",\"time_us\":");
        out.extend_from_slice(n.format(r.timestamp_ns % 1_000_000_000 / 1_000).as_bytes());
        out.extend_from_slice(b",\"level\":\"");
        out.extend_from_slice(r.level.as_str().as_bytes());
        out.extend_from_slice(b"\",\"app\":");
        string(out, line.app());
        out.extend_from_slice(b",\"instance\":");
        string(out, line.instance());
        out.extend_from_slice(b",\"logger\":");
        string(out, &r.logger);
        out.extend_from_slice(b",\"message\":");
        match &r.body {
            Body::Message(m) | Body::Json(m) => string(out, m),
        }
        for (key, value) in [
            ("host", &r.host),
            ("service", &r.service),
            ("module", &r.module),
            ("file", &r.file),
            ("function", &r.function),
            ("process", &r.process_name),
            ("thread", &r.thread_name),
            ("stack_trace", &r.stack_trace),
        ] {
            if !value.is_empty() {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\":");
                string(out, value);
            }
        }
        for (key, value) in [
            ("line", u64::from(r.line)),
            ("pid", u64::from(r.process_id)),
            ("tid", r.thread_id),
        ] {
            if value != 0 {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\":");
                out.extend_from_slice(n.format(value).as_bytes());
            }
        }
        out.extend_from_slice(b",\"fields\":");
        fields_json(&mut self.fields, &r.fields);
        // The fields' text as one JSON string (ClickHouse stores it in a String column).
        match std::str::from_utf8(&self.fields) {
            Ok(text) => string(&mut self.rows, text),
            Err(_) => self.rows.extend_from_slice(b"\"{}\""),
        }
        self.rows.extend_from_slice(b"}\n");
        self.count += 1;
        self.gzipped.clear();
    }

    fn rows(&self) -> usize {
        self.count
    }

    fn bytes(&self) -> usize {
        self.rows.len()
    }

    fn send(&mut self) -> Result<(), SendError> {
        if self.count == 0 {
            return Ok(());
        }
        if self.gzipped.is_empty() {
            super::gzip(&self.rows, &mut self.gzipped)?;
        }
        let mut headers = vec![
            ("Content-Type", "application/x-ndjson"),
            ("Content-Encoding", "gzip"),
        ];
        if let Some(user) = &self.credentials.user {
            headers.push(("X-ClickHouse-User", user));
        }
        if let Some(password) = &self.credentials.password {
            if self.credentials.user.is_none() {
                headers.push(("X-ClickHouse-User", "default"));
            }
            headers.push(("X-ClickHouse-Key", password));
        }
        let response = self
            .client
            .post(&self.path, &headers, &self.gzipped)
            .map_err(|e| SendError::Retry(format!("ClickHouse cannot be reached: {e}")))?;
        if response.status == 200 {
            self.clear();
            return Ok(());
        }
        Err(classify(response.status, &response.body))
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.gzipped.clear();
        self.count = 0;
    }
}

/// ClickHouse error codes that no retry can fix: the request itself is wrong for this server
/// (authentication, a table or column that does not exist, rows the table cannot take).
const FATAL_CODES: [(u32, &str); 14] = [
    (16, "schema"),  // NO_SUCH_COLUMN_IN_TABLE
    (26, "schema"),  // CANNOT_PARSE_QUOTED_STRING
    (27, "schema"),  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    (47, "schema"),  // UNKNOWN_IDENTIFIER
    (53, "schema"),  // TYPE_MISMATCH
    (60, "schema"),  // UNKNOWN_TABLE
    (81, "schema"),  // UNKNOWN_DATABASE
    (117, "schema"), // INCORRECT_DATA (an unknown field in JSONEachRow)
    (192, "auth"),   // UNKNOWN_USER
    (193, "auth"),   // WRONG_PASSWORD
    (194, "auth"),   // REQUIRED_PASSWORD
    (195, "auth"),   // IP_ADDRESS_NOT_ALLOWED
    (497, "auth"),   // ACCESS_DENIED
    (516, "auth"),   // AUTHENTICATION_FAILED
];

/// The ClickHouse error code at the start of an error body (`Code: 193, e.displayText() = ...`
/// in 18.16, `Code: 516. DB::Exception: ...` today).
fn error_code(body: &str) -> Option<u32> {
    let rest = body.trim_start().strip_prefix("Code: ")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// Sorts a refusal into [`SendError::Retry`] or [`SendError::Fatal`], with ClickHouse's
/// message and what to do about it.
pub fn classify(status: u16, body: &[u8]) -> SendError {
    let text = String::from_utf8_lossy(body);
    let message = text.trim().lines().next().unwrap_or("").to_string();
    let kind = error_code(&text)
        .and_then(|code| FATAL_CODES.iter().find(|(c, _)| *c == code))
        .map(|&(_, kind)| kind)
        .or(match status {
            401 | 403 => Some("auth"),
            404 => Some("schema"),
            400..=499 if status != 408 && status != 429 => Some("request"),
            _ => None,
        });
    match kind {
        Some("auth") => SendError::Fatal(format!(
            "ClickHouse refused the login (HTTP {status}): {message}; check \
             LOGMILL_CLICKHOUSE_USER and LOGMILL_CLICKHOUSE_PASSWORD or --forward-password-file"
        )),
        Some("schema") => SendError::Fatal(format!(
            "ClickHouse refused the rows (HTTP {status}): {message}; the table must have the \
             columns `logmill forward schema clickhouse` prints"
        )),
        Some(_) => SendError::Fatal(format!(
            "ClickHouse refused the request (HTTP {status}): {message}"
        )),
        None => SendError::Retry(format!("ClickHouse answered HTTP {status}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::parse::parse_text_line;

    #[test]
    fn a_record_becomes_one_json_each_row_line() {
        let line = parse_text_line(
            "2026-11-22T00:26:13.123456Z WARNING 42 billing/pod-7 app.db lost \"it\" | host=web-1 retry=3",
        )
        .unwrap();
        let mut ch = ClickHouse::new("h", 1, "db.t", "node-1", Credentials::default());
        ch.push("billing", &line);
        let row: serde_json::Value =
            serde_json::from_slice(ch.rows.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(row["node"], "node-1");
        assert_eq!(row["bucket"], "billing");
        assert_eq!(row["seq"], 42);
        assert_eq!(row["time"], 1_795_307_173u64);
        assert_eq!(row["time_us"], 123_456);
        assert_eq!(row["level"], "WARNING");
        assert_eq!(row["app"], "billing");
        assert_eq!(row["instance"], "pod-7");
        assert_eq!(row["logger"], "app.db");
        assert_eq!(row["message"], "lost \"it\"");
        assert_eq!(row["host"], "web-1");
        assert_eq!(row["fields"], "{\"retry\":\"3\"}");
        assert_eq!((ch.rows(), ch.bytes()), (1, ch.rows.len()));
    }

    #[test]
    fn refusals_are_sorted_into_retry_and_stop() {
        let fatal = |s, b: &str| matches!(classify(s, b.as_bytes()), SendError::Fatal(_));
        assert!(fatal(
            401,
            "Code: 193, e.displayText() = DB::Exception: Wrong password for user writer"
        ));
        assert!(fatal(
            516,
            "Code: 516. DB::Exception: writer: Authentication failed"
        ));
        assert!(fatal(
            500,
            "Code: 117, e.displayText() = DB::Exception: Unknown field found while parsing JSONEachRow format: fields"
        ));
        assert!(fatal(404, "Code: 60, Table db.nope doesn't exist."));
        assert!(!fatal(503, "Code: 241, Memory limit exceeded"));
        assert!(!fatal(500, ""));
        assert!(!fatal(429, ""));
        let SendError::Fatal(why) = classify(401, b"Code: 193, Wrong password for user writer")
        else {
            panic!("not fatal");
        };
        assert!(why.contains("Wrong password") && why.contains("LOGMILL_CLICKHOUSE_PASSWORD"));
    }
}
