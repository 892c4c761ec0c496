//! What `--forward`, `--node-id`, `--forward-max-lag`, `--forward-password-file` and
//! `--forward-token-file` say, parsed
//! and checked: the sinks' URLs ([`Target`]) and the settings the forwarders start from. Below
//! the forwarders (`crate::forward`), which start from them; it reads nothing of the crate.

use std::fmt;
use std::path::PathBuf;

/// The most records in one batch: ClickHouse is at its best with large inserts (each insert
/// makes a part on disk), and this many rows are a few MiB.
pub const MAX_BATCH_ROWS: usize = 50_000;
/// Where a sink is: `--forward URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `clickhouse+http://HOST:PORT/DB.TABLE`
    ClickHouse {
        host: String,
        port: u16,
        database: String,
        table: String,
    },
    /// `otlp+http://HOST:PORT` (POST /v1/logs, protobuf)
    OtlpHttp { host: String, port: u16 },
    /// `otlp+grpc://HOST:PORT` (the gRPC `LogsService/Export` call)
    OtlpGrpc { host: String, port: u16 },
}

impl Target {
    /// Parses a `--forward` value.
    ///
    /// # Errors
    /// What is wrong with it, for the usage error.
    pub fn parse(url: &str) -> Result<Target, String> {
        if let Some(rest) = url.strip_prefix("otlp+http://") {
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            let (host, port) = host_port(authority, 4318).map_err(|e| format!("{url}: {e}"))?;
            return Ok(Target::OtlpHttp { host, port });
        }
        if let Some(rest) = url.strip_prefix("otlp+grpc://") {
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            let (host, port) = host_port(authority, 4317).map_err(|e| format!("{url}: {e}"))?;
            return Ok(Target::OtlpGrpc { host, port });
        }
        let Some(rest) = url.strip_prefix("clickhouse+http://") else {
            return Err(format!(
                "{url}: a sink is clickhouse+http://HOST:PORT/DB.TABLE, otlp+http://HOST:PORT or \
                 otlp+grpc://HOST:PORT"
            ));
        };
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{url}: the URL names no table (/DB.TABLE)"))?;
        let (host, port) = host_port(authority, 8123).map_err(|e| format!("{url}: {e}"))?;
        let (database, table) = path
            .split_once('.')
            .ok_or_else(|| format!("{url}: the table is DB.TABLE"))?;
        if !valid_name(database) || !valid_name(table) {
            return Err(format!(
                "{url}: database and table names are letters, digits and _"
            ));
        }
        Ok(Target::ClickHouse {
            host,
            port,
            database: database.to_string(),
            table: table.to_string(),
        })
    }

    /// A name for file names and metric labels: `clickhouse-HOST-PORT-DB.TABLE`.
    pub fn id(&self) -> String {
        match self {
            Target::ClickHouse {
                host,
                port,
                database,
                table,
            } => format!("clickhouse-{}-{port}-{database}.{table}", id_host(host)),
            Target::OtlpHttp { host, port } => format!("otlp-http-{}-{port}", id_host(host)),
            Target::OtlpGrpc { host, port } => format!("otlp-grpc-{}-{port}", id_host(host)),
        }
    }
}

/// A host in a file name: an IPv6 address's `:` become `_` (`clickhouse-__1-8123-db.t`).
fn id_host(host: &str) -> String {
    host.replace(':', "_")
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::ClickHouse {
                host,
                port,
                database,
                table,
            } => write!(
                f,
                "clickhouse+http://{}/{database}.{table}",
                authority(host, *port)
            ),
            Target::OtlpHttp { host, port } => write!(f, "otlp+http://{}", authority(host, *port)),
            Target::OtlpGrpc { host, port } => write!(f, "otlp+grpc://{}", authority(host, *port)),
        }
    }
}

/// `HOST` or `HOST:PORT`; a host is letters, digits, `.`, `-` (a name or an IPv4 address), or an
/// IPv6 address in brackets (`[::1]:8123`, kept without them).
fn host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    let port_of = |port: &str| {
        port.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("bad port {port:?}"))
    };
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad host {authority:?}: no closing ]"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("bad IPv6 address {host:?}"));
        }
        let port = match after {
            "" => default_port,
            _ => port_of(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("bad port {after:?}"))?,
            )?,
        };
        return Ok((host.to_string(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port_of(port)?),
        None => (authority, default_port),
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !ok {
        return Err(format!("bad host {host:?}"));
    }
    Ok((host.to_string(), port))
}

/// `HOST:PORT`, an IPv6 address in brackets (`[::1]:8123`): for URLs and the `Host` header.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The forwarding settings (`--forward`, `--node-id`, `--forward-max-lag`,
/// `--forward-password-file`, `--forward-token-file`).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    sinks: Vec<Target>,
    node_id: String,
    max_lag: u64,
    password_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    batch_rows: usize,
}

impl Settings {
    pub fn new(
        sinks: Vec<Target>,
        node_id: String,
        max_lag: u64,
        password_file: Option<PathBuf>,
    ) -> Settings {
        Settings {
            sinks,
            node_id,
            max_lag,
            password_file,
            token_file: None,
            batch_rows: MAX_BATCH_ROWS,
        }
    }

    /// Fewer records per batch than [`MAX_BATCH_ROWS`] (`--forward-batch-rows`, hidden: for
    /// tests that need a forward to be caught half-way, and for measuring).
    pub fn with_batch_rows(mut self, rows: usize) -> Settings {
        self.batch_rows = rows.clamp(1, MAX_BATCH_ROWS);
        self
    }

    /// `--forward-token-file`: where the OTLP sinks' application token is read from.
    pub fn with_token_file(mut self, path: Option<PathBuf>) -> Settings {
        self.token_file = path;
        self
    }

    pub fn token_file(&self) -> Option<&std::path::Path> {
        self.token_file.as_deref()
    }

    pub fn sinks(&self) -> &[Target] {
        &self.sinks
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// `--forward-max-lag`: bytes of files the writer keeps past `--max-files` for a sink that
    /// has not read them.
    pub fn max_lag(&self) -> u64 {
        self.max_lag
    }

    /// `--forward-password-file`: where the sinks' password is read from.
    pub fn password_file(&self) -> Option<&std::path::Path> {
        self.password_file.as_deref()
    }

    /// Records per batch at most.
    pub fn batch_rows(&self) -> usize {
        self.batch_rows
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`), the default `--node-id`.
pub fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Whether `name` may be a database or table name in the URL: letters, digits, `_` (so it
/// goes into the query as it is, never needing quotes).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_that_go_into_the_query_unquoted() {
        for ok in ["logs", "records_2", "_x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a.b", "a b", "1x", "a`b", "a;DROP"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
