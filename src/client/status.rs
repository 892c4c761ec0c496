//! `logmill status`: who is connected to a server, as a table for people or as the server's JSON
//! (`--json`) for scripts.
//!
//! The request is the line `status` on the TCP port; the answer is one JSON document (the shape
//! is `apps::connections`'), then the server closes. [`table`] turns it into the table, a pure
//! function; names from clients are printed with control characters escaped, so a hostile
//! instance name cannot drive the terminal.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::oneshot::{DEFAULT_ADDR, Error, resolve};
use crate::apps::connections::MAX_STATUS_BYTES;

/// How long the request may take: the server answers from its event loop, even while its
/// writer is stuck.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `logmill status`.
#[derive(Args, Clone, Debug)]
pub struct StatusArgs {
    /// Server to ask (its TCP port).
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_ADDR)]
    addr: String,
    /// Print the server's JSON as it is (one line), for scripts.
    #[arg(long)]
    json: bool,
}

impl StatusArgs {
    /// Whether the JSON is wanted rather than the table.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// A server's answer to `status`.
#[derive(Debug, Clone)]
pub struct Status {
    /// The JSON as the server sent it (its order: apps by name, `_anonymous` last), without
    /// the newline.
    pub raw: String,
    /// The same, parsed.
    pub value: Value,
}

/// Asks the server at `--addr` who is connected; returns its JSON, checked to be a JSON object.
///
/// # Errors
/// [`Error::Address`], [`Error::NoAnswer`] when no server answers, [`Error::NotStatus`] when the
/// answer is not the status JSON (another program, or a logmill older than `status`).
pub fn status(args: &StatusArgs) -> Result<Status, Error> {
    let mut last = io::Error::other("no address to try");
    for addr in resolve(&args.addr)? {
        match ask_status(addr, ANSWER_TIMEOUT) {
            Ok(answer) => {
                let raw = answer.trim_end().to_string();
                return match serde_json::from_str::<Value>(&raw) {
                    Ok(value) if value.is_object() => Ok(Status { raw, value }),
                    _ => Err(Error::NotStatus {
                        addr,
                        answer: raw.chars().take(200).collect(),
                    }),
                };
            }
            Err(e) => last = e,
        }
    }
    Err(Error::NoAnswer {
        addr: args.addr.clone(),
        waited: None,
        last,
    })
}

/// Sends `status` on a connection of its own and reads the answer (at most what a server sends,
/// [`MAX_STATUS_BYTES`]), each step bounded by `timeout`.
///
/// # Errors
/// The connect, write or read error; `UnexpectedEof` when the server closed without answering.
pub fn ask_status(addr: SocketAddr, timeout: Duration) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"status\n")?;
    // A server that does not know `status` takes it as a text line: the end of the stream
    // makes it close, rather than wait for more.
    stream.shutdown(std::net::Shutdown::Write)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut answer = Vec::new();
    stream
        .take(MAX_STATUS_BYTES as u64)
        .read_to_end(&mut answer)?;
    if answer.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed without an answer (a logmill older than `status`?)",
        ));
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The status JSON as a table: one row per instance, apps and instances by name and
/// `_anonymous` last, then a summary line.
pub fn table(status: &Value) -> String {
    const HEADER: [&str; 9] = [
        "APP",
        "INSTANCE",
        "SOCKET",
        "CONNS",
        "PEER",
        "CONNECTED",
        "RECORDS",
        "BYTES",
        "LAST RECORD",
    ];
    let mut rows: Vec<[String; 9]> = Vec::new();
    let mut apps = 0;
    let mut connections = 0;
    let empty = serde_json::Map::new();
    let all = status.as_object().unwrap_or(&empty);
    let ordered = all
        .iter()
        .filter(|(app, _)| !app.starts_with('_'))
        .chain(all.get_key_value("_anonymous"));
    for (app, body) in ordered {
        if app != "_anonymous" {
            apps += 1;
        }
        let instances = body["instances"].as_object().unwrap_or(&empty);
        for (name, i) in instances {
            connections += i["connections"].as_u64().unwrap_or(0);
            let text = |key: &str| match &i[key] {
                Value::String(s) => printable(s),
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            rows.push([
                printable(app),
                printable(name),
                text("socket"),
                text("connections"),
                text("peer"),
                text("connected_at"),
                text("records"),
                text("bytes"),
                text("last_record_at"),
            ]);
        }
    }
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    if !rows.is_empty() {
        let header = HEADER.map(String::from);
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (col, (cell, width)) in row.iter().zip(widths).enumerate() {
                // Counts to the right, words to the left.
                let numeric = matches!(col, 3 | 6 | 7);
                if numeric {
                    line.push_str(&format!("{cell:>width$}  "));
                } else {
                    line.push_str(&format!("{cell:<width$}  "));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    if rows.is_empty() {
        out.push_str("nothing connected\n");
    } else {
        out.push_str(&format!(
            "{}, {}, {}\n",
            plural(apps, "app"),
            plural(rows.len() as u64, "instance"),
            plural(connections, "connection")
        ));
    }
    if let Some(Value::Array(sinks)) = all.get("_forward") {
        out.push_str(&forward_table(sinks));
    }
    if let Some(cut) = all.get("_truncated") {
        out.push_str(&format!(
            "(the answer was capped at {} KiB: {} more instances with {} connections not shown)\n",
            MAX_STATUS_BYTES / 1024,
            cut["instances"],
            cut["connections"]
        ));
    }
    out
}

/// The forwarders' lines: one per sink, with its state, lag and last error.
fn forward_table(sinks: &[Value]) -> String {
    let mut out = String::from("forwarding:\n");
    for sink in sinks {
        let n = |key: &str| sink[key].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "  {} {}: {} forwarded, lag {} records {} bytes, oldest unforwarded {}s ago{}\n",
            printable(sink["sink"].as_str().unwrap_or("?")),
            printable(sink["state"].as_str().unwrap_or("?")),
            n("forwarded"),
            n("lag_records"),
            n("lag_bytes"),
            n("oldest_unforwarded_age_s"),
            match sink["error"].as_str() {
                Some(e) if !e.is_empty() => format!(" ({})", printable(e)),
                _ => String::new(),
            }
        ));
    }
    out
}

fn plural(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// `s` with control characters escaped (`\n`, `\u{1b}`): safe to print on a terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_row_per_instance_and_a_summary() {
        let status = json!({
            "billing": {"running_instances": 2, "instances": {
                "pod-7": {"socket": "native", "connected_at": "2026-12-01T10:00:00Z",
                          "connections": 3, "peer": "10.0.0.7:51234", "records": 120034,
                          "bytes": 25103122, "last_record_at": "2026-12-01T10:04:31Z"},
                "pod-8": {"socket": "grpc", "connected_at": "2026-12-01T10:01:00Z",
                          "connections": 1, "peer": "10.0.0.8:40000", "records": 0,
                          "bytes": 0, "last_record_at": null}}},
            "_anonymous": {"running_instances": 1, "instances": {
                "10.0.0.9": {"socket": "syslog", "connected_at": "2026-12-01T10:02:00Z",
                             "connections": 1, "peer": "10.0.0.9:514", "records": 7,
                             "bytes": 300, "last_record_at": "2026-12-01T10:03:00Z"}}}
        });
        let text = table(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("APP "), "{text}");
        assert!(
            lines[1].contains("pod-7") && lines[1].contains("120034"),
            "{text}"
        );
        assert!(
            lines[2].contains("pod-8") && lines[2].ends_with('-'),
            "{text}"
        );
        assert_eq!(lines[4], "1 app, 3 instances, 5 connections");
        assert!(
            lines[3].starts_with("_anonymous "),
            "anonymous last: {text}"
        );
    }

    #[test]
    fn nothing_connected() {
        assert_eq!(table(&json!({})), "nothing connected\n");
    }

    #[test]
    fn hostile_names_are_escaped_and_truncation_is_said() {
        let status = json!({
            "a": {"running_instances": 1, "instances": {
                "\u{1b}[2Jx": {"socket": "native", "connected_at": "t", "connections": 1,
                                "peer": "p", "records": 0, "bytes": 0, "last_record_at": null}}},
            "_truncated": {"instances": 5, "connections": 9}
        });
        let text = table(&status);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("\\u{1b}[2Jx"), "{text}");
        assert!(
            text.contains("5 more instances with 9 connections"),
            "{text}"
        );
    }
}
