//! The ClickHouse sink: `INSERT INTO db.table (columns) FORMAT RowBinary` over ClickHouse's
//! HTTP interface, one `POST` per batch (gzip-compressed unless ClickHouse is on this host),
//! and the `CREATE TABLE` it expects ([`schema`]).
//!
//! RowBinary (in ClickHouse since long before 18.16, over HTTP too) is the cheapest format for
//! both sides: lengths and little-endian numbers, nothing to escape or to parse. The columns
//! are named in the query, so a table with columns in another order, or more columns with
//! defaults, takes the rows too.
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

/// The columns, in the order [`schema`] declares them and [`ClickHouse::push`] writes them.
const COLUMNS: &str = "node,bucket,seq,time,time_us,level,app,instance,logger,message,host,\
                       service,module,file,line,function,process,pid,thread,tid,stack_trace,\
                       fields";

pub struct ClickHouse {
    client: Client,
    /// `/?query=INSERT INTO db.table (columns) FORMAT RowBinary`, URL-encoded.
    path: String,
    credentials: Credentials,
    node: String,
    /// Whether batches are sent gzip-compressed (not to a sink on this host: see
    /// [`super::compresses`]).
    compress: bool,
    /// The batch: the rows in RowBinary.
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
        compress: bool,
    ) -> ClickHouse {
        ClickHouse {
            client: Client::new(host, port),
            path: format!("/?query=INSERT%20INTO%20{table}%20({COLUMNS})%20FORMAT%20RowBinary"),
            credentials,
            node: node.to_string(),
            compress,
            rows: Vec::new(),
            count: 0,
            gzipped: Vec::new(),
            fields: Vec::new(),
        }
    }
}

/// Appends `s` as a JSON string.
fn json_string(out: &mut Vec<u8>, s: &str) {
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
        json_string(out, key);
        out.push(b':');
        match value {
            Value::Str(s) => json_string(out, s),
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

/// A RowBinary `String`: its length as an unsigned LEB128 varint, then its bytes.
fn string(out: &mut Vec<u8>, s: &[u8]) {
    let mut n = s.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(s);
}

impl Sink for ClickHouse {
    /// One RowBinary row per record, the columns in [`COLUMNS`]' order: `String` is a varint
    /// length and the bytes, `UInt32`/`UInt64`/`DateTime` (seconds, a `UInt32`) little-endian.
    /// No escaping, no number formatting; the only text made is the fields' JSON (a reused
    /// buffer).
    fn push(&mut self, bucket: &str, line: &ParsedLine<'_>) {
        let r = line.record();
        let out = &mut self.rows;
        string(out, self.node.as_bytes());
        string(out, bucket.as_bytes());
        out.extend_from_slice(&line.seq().to_le_bytes());
        // DateTime is seconds in a UInt32: up to 2106; a time outside is clamped.
        let seconds = u32::try_from(r.timestamp_ns / 1_000_000_000).unwrap_or(u32::MAX);
        out.extend_from_slice(&seconds.to_le_bytes());
        let micros = (r.timestamp_ns % 1_000_000_000 / 1_000) as u32;
        out.extend_from_slice(&micros.to_le_bytes());
        string(out, r.level.as_str().as_bytes());
        string(out, line.app().as_bytes());
        string(out, line.instance().as_bytes());
        string(out, r.logger.as_bytes());
        match &r.body {
            Body::Message(m) | Body::Json(m) => string(out, m.as_bytes()),
        }
        string(out, r.host.as_bytes());
        string(out, r.service.as_bytes());
        string(out, r.module.as_bytes());
        string(out, r.file.as_bytes());
        out.extend_from_slice(&r.line.to_le_bytes());
        string(out, r.function.as_bytes());
        string(out, r.process_name.as_bytes());
        out.extend_from_slice(&r.process_id.to_le_bytes());
        string(out, r.thread_name.as_bytes());
        out.extend_from_slice(&r.thread_id.to_le_bytes());
        string(out, r.stack_trace.as_bytes());
        fields_json(&mut self.fields, &r.fields);
        string(&mut self.rows, &self.fields);
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
        let mut headers = vec![("Content-Type", "application/octet-stream")];
        let body = if self.compress {
            if self.gzipped.is_empty() {
                super::gzip(&self.rows, &mut self.gzipped)?;
            }
            headers.push(("Content-Encoding", "gzip"));
            &self.gzipped
        } else {
            &self.rows
        };
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
            .post(&self.path, &headers, body)
            .map_err(|e| SendError::Retry(format!("ClickHouse cannot be reached: {e}")))?;
        if response.status() == 200 {
            self.clear();
            return Ok(());
        }
        Err(classify(response.status(), response.body()))
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.gzipped.clear();
        self.count = 0;
    }
}

/// ClickHouse error codes that no retry can fix: the request itself is wrong for this server
/// (authentication, a table or column that does not exist, rows the table cannot take).
const FATAL_CODES: [(u32, &str); 15] = [
    (16, "schema"),  // NO_SUCH_COLUMN_IN_TABLE
    (33, "schema"),  // CANNOT_READ_ALL_DATA (RowBinary rows of other columns than the table's)
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

    /// Reads one RowBinary row of [`COLUMNS`] back: (column, text of its value).
    fn read_row(mut b: &[u8]) -> (Vec<(&'static str, String)>, usize) {
        let total = b.len();
        let mut row = Vec::new();
        for column in COLUMNS.split(',') {
            let value = match column {
                "seq" | "tid" => {
                    let (v, rest) = b.split_at(8);
                    b = rest;
                    u64::from_le_bytes(v.try_into().unwrap()).to_string()
                }
                "time" | "time_us" | "line" | "pid" => {
                    let (v, rest) = b.split_at(4);
                    b = rest;
                    u32::from_le_bytes(v.try_into().unwrap()).to_string()
                }
                _ => {
                    let (mut len, mut shift) = (0usize, 0);
                    loop {
                        let byte = b[0];
                        b = &b[1..];
                        len |= usize::from(byte & 0x7f) << shift;
                        shift += 7;
                        if byte < 0x80 {
                            break;
                        }
                    }
                    let (v, rest) = b.split_at(len);
                    b = rest;
                    String::from_utf8(v.to_vec()).unwrap()
                }
            };
            row.push((column, value));
        }
        (row, total - b.len())
    }

    #[test]
    fn a_record_becomes_one_row_binary_row() {
        let line = parse_text_line(
            "2026-11-22T00:26:13.123456Z WARNING 42 billing/pod-7 app.db lost \"it\" | host=web-1 retry=3",
        )
        .unwrap();
        let mut ch = ClickHouse::new("h", 1, "db.t", "node-1", Credentials::default(), false);
        ch.push("billing", &line);
        let (row, used) = read_row(&ch.rows);
        assert_eq!(used, ch.rows.len(), "one row, every byte of it");
        let get = |c: &str| row.iter().find(|(k, _)| *k == c).unwrap().1.clone();
        assert_eq!(get("node"), "node-1");
        assert_eq!(get("bucket"), "billing");
        assert_eq!(get("seq"), "42");
        assert_eq!(get("time"), "1795307173");
        assert_eq!(get("time_us"), "123456");
        assert_eq!(get("level"), "WARNING");
        assert_eq!(get("app"), "billing");
        assert_eq!(get("instance"), "pod-7");
        assert_eq!(get("logger"), "app.db");
        assert_eq!(get("message"), "lost \"it\"");
        assert_eq!(get("host"), "web-1");
        assert_eq!(get("line"), "0");
        assert_eq!(get("fields"), "{\"retry\":\"3\"}");
        assert_eq!((ch.rows(), ch.bytes()), (1, ch.rows.len()));
        assert!(ch.path.ends_with("%20FORMAT%20RowBinary") && !ch.path.contains(' '));
    }

    #[test]
    fn long_strings_have_a_varint_length() {
        let mut out = Vec::new();
        string(&mut out, &[b'x'; 300]);
        assert_eq!(&out[..2], &[0xac, 0x02]);
        assert_eq!(out.len(), 302);
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
