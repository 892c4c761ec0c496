//! What `logmill bench` is asked to do: its options ([`BenchArgs`]), the wire protocols it can
//! send ([`Proto`], [`GrpcMode`]), and how the records are shared out over the connections.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::config;

/// Options of `logmill bench`. Public so tests and other tools can build them and call [`run`](super::run).
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Server to measure (HOST:PORT; for the protocols of the gRPC port, grpc, grpc-web,
    /// websocket, otlp-grpc, otlp-http, that port). Without it, bench starts
    /// `logmill serve` itself, on a free port with a fresh directory and --fsync never, and also
    /// reports its CPU and memory.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Connections sending at once.
    #[arg(
        short = 'c',
        long,
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub connections: u32,
    /// Records to send in all, spread evenly over the connections.
    #[arg(
        short = 'n',
        long,
        default_value_t = 2_000_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub records: u64,
    /// Bytes in each record's message.
    #[arg(short = 's', long, default_value_t = 200)]
    pub size: u32,
    /// Records per batch frame (syslog, json, pickle: per write; grpc: per message; otlp-grpc,
    /// otlp-http: per ExportLogsServiceRequest, measured with 512 as issue 12 asks).
    #[arg(
        long,
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    pub batch: u32,
    /// Records a connection may have sent but not yet seen acked before it waits (0: no limit,
    /// every record is sent as fast as the socket takes it). Without a limit, ack latency
    /// measures how long the queue in the socket buffers and the server is.
    #[arg(long, default_value_t = 0, value_name = "RECORDS")]
    pub window: u64,
    /// Wire protocol to send.
    #[arg(long, value_enum, default_value_t = Proto::Native)]
    pub proto: Proto,
    /// With --proto grpc: one PushStream call per connection, or unary Push calls of --batch
    /// records each.
    #[arg(long = "grpc-mode", value_enum, default_value_t = GrpcMode::Stream)]
    pub grpc_mode: GrpcMode,
    /// With --proto grpc --grpc-mode unary or --proto otlp-grpc: calls each connection keeps in
    /// flight.
    #[arg(
        long = "grpc-calls",
        default_value_t = 8,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=100)
    )]
    pub grpc_calls: u32,
    /// Spread the native and OTLP connections (of a load or of --idle) over N apps
    /// (`logmill-bench-0000` ...), each its own bucket; connection i is app i mod N. 1: every
    /// connection is app `logmill-bench`. Each connection sends its app's token (native: in
    /// hello; OTLP: `authorization: Bearer`), signed with the secret of the server bench starts
    /// (or the one --secret-file names), so the server verifies it as it would a real
    /// application's.
    #[arg(
        long,
        default_value_t = 1,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub apps: u32,
    /// With --addr: the server's secret file, to sign the apps' tokens. Without it, against
    /// --addr, connections name their app in hello only (a bucket of its own only under
    /// `--auth off`). With a server bench starts and `--server-args "--secret-file F"`, give
    /// the same F here.
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<std::path::PathBuf>,
    /// Instead of sending records, hold N idle connections and report the server's memory per
    /// connection.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..),
        conflicts_with_all = ["connections", "records", "size", "batch", "window"]
    )]
    pub idle: Option<u32>,
    /// With the native load: first open N connections to the HTTP/1.1 side of the gRPC port
    /// that never finish their request head (a byte of it every second, as a slowloris does),
    /// hold them during the load, replacing each the server closes, and report how many were
    /// held and closed. A server bench starts then serves its gRPC port too; with --addr, give
    /// that port as --http-addr.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "idle")]
    pub slowloris: Option<u32>,
    /// With --addr and --slowloris: the server's gRPC port (HOST:PORT), which speaks HTTP/1.1.
    #[arg(long = "http-addr", value_name = "HOST:PORT", requires = "addr")]
    pub http_addr: Option<String>,
    /// Seconds --idle holds its connections before measuring.
    #[arg(long = "idle-secs", default_value_t = 5, value_name = "SECS")]
    pub idle_secs: u64,
    /// Extra arguments for the server bench starts, split on whitespace (e.g. "--workers 4").
    #[arg(
        long = "server-args",
        value_name = "ARGS",
        allow_hyphen_values = true,
        conflicts_with = "addr"
    )]
    pub server_args: Option<String>,
    /// The run must end within this (the --idle hold comes on top), or bench fails.
    #[arg(long, default_value = "300s", value_parser = config::parse_duration)]
    pub timeout: Duration,
    /// Never draw the progress bar (it is drawn only on a terminal, for runs over a second).
    #[arg(long = "no-progress")]
    pub no_progress: bool,
    /// Native load and --idle over TLS (rustls, as the server): the server must serve TLS
    /// (with a server bench starts: --server-args "--tls-cert C --tls-key K"). Reports the
    /// handshakes per second of the set-up.
    #[arg(long, requires = "ca")]
    pub tls: bool,
    /// With --tls: the CA certificate (PEM) the server's certificate must chain to; the
    /// server is verified as `localhost` (or the host of --addr).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<std::path::PathBuf>,
}

/// Wire protocols bench can send.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// Length-prefixed Cap'n Proto frames (schema/logmill.capnp), acked.
    Native,
    /// RFC 5424 lines, newline framing; no acks.
    Syslog,
    /// JSON lines; no acks.
    Json,
    /// Python SocketHandler frames (length, protocol-2 pickle); no acks.
    Pickle,
    /// gRPC (proto/logmill.proto) on the gRPC port; each call's reply is its ack.
    Grpc,
    /// HTTP/1.1 keep-alive connections on the gRPC port; with --idle only (what an idle HTTP
    /// client costs the server).
    Http,
    /// gRPC-Web (binary mode) on the gRPC port: keep-alive HTTP/1.1 POSTs of Push with --batch
    /// records, one call in flight per connection; each answer is its ack.
    #[value(name = "grpc-web")]
    GrpcWeb,
    /// WebSocket at /v1/ws?acks=1 on the gRPC port: masked binary frames each holding one
    /// native batch of --batch records, sent as fast as the socket takes them; acks awaited.
    #[value(name = "websocket")]
    WebSocket,
    /// OTLP/gRPC on the gRPC port: unary `LogsService/Export` calls of --batch records
    /// (protobuf), --grpc-calls in flight per connection, as `--grpc-mode unary`; each reply
    /// is its ack.
    #[value(name = "otlp-grpc")]
    OtlpGrpc,
    /// OTLP/HTTP on the gRPC port: keep-alive HTTP/1.1 `POST /v1/logs` of --batch records
    /// (`application/x-protobuf` only; the server's JSON side is not measured here), one in
    /// flight per connection; each answer is its ack.
    #[value(name = "otlp-http")]
    OtlpHttp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Native => "native",
            Proto::Syslog => "syslog",
            Proto::Json => "json",
            Proto::Pickle => "pickle",
            Proto::Grpc => "grpc",
            Proto::Http => "http",
            Proto::GrpcWeb => "grpc-web",
            Proto::WebSocket => "websocket",
            Proto::OtlpGrpc => "otlp-grpc",
            Proto::OtlpHttp => "otlp-http",
        }
    }

    /// Served on the gRPC port (its h2 or its HTTP/1.1 side), not the native one.
    pub fn on_grpc_port(self) -> bool {
        matches!(
            self,
            Proto::Grpc
                | Proto::Http
                | Proto::GrpcWeb
                | Proto::WebSocket
                | Proto::OtlpGrpc
                | Proto::OtlpHttp
        )
    }
}

/// How `--proto grpc` sends its records.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcMode {
    /// One client-streaming PushStream call per connection, --batch records per message.
    Stream,
    /// Unary Push calls of --batch records, --grpc-calls in flight per connection.
    Unary,
}

/// Connection `i`'s share of `total` records over `n` connections: the remainder goes to the
/// first connections, one each.
pub fn share(i: usize, n: usize, total: u64) -> u64 {
    let n = n as u64;
    total / n + u64::from((i as u64) < total % n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_spread_the_remainder() {
        let shares: Vec<u64> = (0..4).map(|i| share(i, 4, 10)).collect();
        assert_eq!(shares, vec![3, 3, 2, 2]);
        assert_eq!(
            (0..64).map(|i| share(i, 64, 2_000_000)).sum::<u64>(),
            2_000_000
        );
        assert_eq!(share(3, 4, 2), 0);
    }
}
