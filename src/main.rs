//! The `logmill` binary: parses the command line, builds the server, runs it. Thin on purpose;
//! everything it calls is in the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, CommandFactory as _, Parser, Subcommand};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use logmill::config::{self, Config, Format, Fsync, Size, Span, defaults};
use logmill::server::{Listeners, Server};
use logmill::storage::lock::DirLock;
use logmill::storage::server_log::{ServerLog, count};

#[derive(Parser)]
#[command(
    name = "logmill",
    version,
    about = "A lightweight, fast log server: many clients in, ordered rotating files out.",
    long_about = "A lightweight, fast log server. Programs send it log records on one TCP port \
(native length-prefixed Cap'n Proto frames with acks, Python's logging SocketHandler, syslog, JSON \
lines or plain text, told apart by their first bytes) or over gRPC (proto/logmill.proto); it \
stores them in order in rotating files (<dir>/_main.log, then _main.log.0 newest .. _main.log.9 \
oldest) and never drops a record it has accepted.\n\nWith no subcommand, `logmill` is `logmill \
serve`.\n\nExamples:\n  \
logmill                              serve on 127.0.0.1:4020, files in ./logs\n  \
logmill --port 5000 --grpc_port 5001\n  logmill --tcp_only --name MyLogServer\n  \
logmill health                       ask a running server how it is\n  \
logmill status                       who is connected, by app and instance\n  \
logmill send --level warning disk almost full\n  \
logmill query --grep timeout         search the stored files\n  \
logmill tail -f --app billing        follow new records",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the log server (the default). Boxed: its flags (TLS, forwarding, limits) make it
    /// far larger than the other commands'.
    Serve(Box<ServeArgs>),
    /// Measure a server: C connections send M records and wait for their acks.
    Bench(logmill::bench::BenchArgs),
    /// Ask a running server how it is; prints its health line (exit 1 unless OK).
    Health(logmill::client::oneshot::HealthArgs),
    /// Who is connected to a running server, by app and instance (a table; --json for scripts).
    Status(logmill::client::status::StatusArgs),
    /// Store one record (native protocol, with acks); prints its sequence number once written.
    Send(logmill::client::oneshot::SendArgs),
    /// Standard input to records, one per line (--json for JSON lines), with acks: exits 0 once
    /// the server has written every line.
    Pipe(logmill::client::pipe::PipeArgs),
    /// Application tokens: issue one for an app, list them, revoke one.
    Token(logmill::apps::cli::TokenArgs),
    /// The control panel's admin account: `logmill admin set-password`.
    Admin(logmill::apps::password::AdminArgs),
    /// Search the stored files (no server needed): the newest matching records, or --count.
    Query(logmill::client::query::QueryArgs),
    /// The last matching records of the stored files; -f to keep following new ones.
    Tail(logmill::client::query::TailArgs),
    /// Forwarding: `logmill forward schema clickhouse` prints the table a sink expects.
    Forward(ForwardArgs),
    /// logship: ship growing files to a receiver (`ship tx`), or receive them (`ship rx`).
    /// Boxed, as `Serve`: the transmitter's flags (TLS among them) make it the largest.
    Ship(Box<ShipArgs>),
}

#[derive(Args)]
struct ForwardArgs {
    #[command(subcommand)]
    command: ForwardCommand,
}

#[derive(Subcommand)]
enum ForwardCommand {
    /// Prints the CREATE TABLE statement of a sink (works on ClickHouse 18.16 and current).
    Schema {
        /// The sink: clickhouse.
        #[arg(value_parser = ["clickhouse"])]
        sink: String,
        /// The table, DB.TABLE.
        #[arg(long, default_value = logmill::forward::clickhouse::DEFAULT_TABLE)]
        table: String,
    },
}

/// Runs `logmill forward ...`.
fn forward(args: &ForwardArgs) -> ExitCode {
    match &args.command {
        ForwardCommand::Schema { table, .. } => {
            let valid = table.split_once('.').is_some_and(|(db, t)| {
                logmill::config::forward::valid_name(db) && logmill::config::forward::valid_name(t)
            });
            if !valid {
                eprintln!("logmill forward schema: --table is DB.TABLE (letters, digits, _)");
                return ExitCode::from(2);
            }
            print!("{}", logmill::forward::clickhouse::schema(table));
            ExitCode::SUCCESS
        }
    }
}

/// `logmill ship`: a subcommand, or the transmitter's flags straight away.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct ShipArgs {
    #[command(subcommand)]
    command: Option<ShipCommand>,
    #[command(flatten)]
    tx: Option<logmill::client::ship::TxArgs>,
}

#[derive(Subcommand)]
enum ShipCommand {
    /// Receive shipped files: a server with only the logship receiver on (no gRPC, no UDP; the
    /// record port on loopback at any free port, for health and status; its own log in
    /// <storage-path>/.logmill/_server.log).
    Rx(ShipRxArgs),
    /// The transmitter: ship every file matching --glob to the receiver at --host, following
    /// appends, rotation and truncation, resuming from the receiver's offset.
    Tx(logmill::client::ship::TxArgs),
}

/// `logmill ship rx`: logship's receiver flags, spelled as logship spells them.
#[derive(Args, Clone)]
struct ShipRxArgs {
    /// Address to listen on (0.0.0.0 or :: to receive from the network).
    #[arg(long, default_value = defaults::HOST)]
    bindhost: String,
    /// Port to listen on (0: any free port, printed at start-up).
    #[arg(long, default_value_t = defaults::SHIP_PORT)]
    port: u16,
    /// Where the shipped files are stored (created if missing).
    #[arg(
        long = "storage-path",
        alias = "storage_path",
        default_value = "/var/tmp/logship"
    )]
    storage_path: PathBuf,
    /// Prefix each stored name with the transmitter's address (`127.0.0.1_app.log`), so two
    /// hosts shipping app.log do not mix. A bare flag means yes; logship's `--host-in-filename
    /// VALUE` spelling takes true/false, yes/no, 1/0.
    #[arg(long = "host-in-filename", alias = "host_in_filename", num_args = 0..=1,
          default_missing_value = "true", default_value = "false", value_parser = parse_yes_no)]
    host_in_filename: bool,
    /// The listen backlog.
    #[arg(long = "socket-queue-length", alias = "socket_queue_length", default_value_t = defaults::SHIP_BACKLOG)]
    socket_queue_length: u32,
    /// Close a connection silent this long (seconds, or 5m, 1h); its bytes are kept.
    #[arg(long, default_value_t = Span(defaults::SHIP_TIMEOUT))]
    timeout: Span,
    /// When to fsync the shipped files: never, always (the offset answered is on disk), or an
    /// interval like 1000ms.
    #[arg(long, default_value_t = defaults::FSYNC)]
    fsync: Fsync,
    /// Event loop threads (default: number of cores).
    #[arg(long)]
    workers: Option<usize>,
}

/// logship's boolean flag values.
fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        other => Err(format!("`{other}` is not yes or no: use true or false")),
    }
}

impl ShipRxArgs {
    /// A server with only the receiver: the record port is on loopback on any free port (it
    /// answers `health` and `status`), no gRPC, no UDP, tokens off; logmill's own files in
    /// `<storage-path>/.logmill`, a name no shipped file can take (names never start with `.`).
    fn into_config(self) -> Config {
        Config {
            host: defaults::HOST.into(),
            port: 0,
            tcp_only: true,
            dir: self.storage_path.join(".logmill"),
            fsync: self.fsync,
            workers: self.workers.unwrap_or_else(config::default_workers),
            auth: config::Auth::Off,
            ship_port: Some(self.port),
            ship_host: Some(self.bindhost),
            ship_dir: Some(self.storage_path),
            ship_host_in_filename: self.host_in_filename,
            ship_timeout: self.timeout.0,
            ship_backlog: self.socket_queue_length,
            ..Config::default()
        }
    }
}

/// `logmill serve`'s flags. Every default comes from `config::defaults`, where its reason is
/// written; `--help` prints it.
#[derive(Args, Clone)]
struct ServeArgs {
    /// Server name, reported by `health` and in the welcome frame.
    #[arg(long, default_value = defaults::NAME)]
    name: String,
    /// Address to listen on. The default keeps the server on this machine; use 0.0.0.0 or :: to
    /// accept clients from the network.
    #[arg(long, default_value = defaults::HOST)]
    host: String,
    /// TCP port for native frames and `health` (0: any free port, printed at start-up).
    #[arg(long, default_value_t = defaults::PORT)]
    port: u16,
    /// gRPC port (h2c; logmill.v1.LogService and grpc.health.v1.Health), which also answers
    /// HTTP/1.1: GET /healthz, /metrics (Prometheus) and /v1/status (admin); 0: any free port.
    #[arg(long = "grpc-port", alias = "grpc_port", default_value_t = defaults::GRPC_PORT)]
    grpc_port: u16,
    /// Serve TCP only: no gRPC port (and so no HTTP: /healthz, /metrics, /v1/status).
    #[arg(long = "tcp-only", aliases = ["tcp_only", "only_tcp", "only-tcp"])]
    tcp_only: bool,
    /// Also listen on this UDP port for syslog datagrams and Python's DatagramHandler (off unless
    /// given; UDP has no acks and no flow control, so prefer TCP).
    #[arg(long = "udp-port", alias = "udp_port")]
    udp_port: Option<u16>,
    /// Directory for the record files and _server.log (created if missing).
    #[arg(long, default_value = defaults::DIR)]
    dir: PathBuf,
    /// Rotate the active file before it would pass this size (e.g. 10MiB, 512KiB, 4096).
    #[arg(long = "max-file-size", default_value_t = Size(defaults::MAX_FILE_SIZE))]
    max_file_size: Size,
    /// Rotated files to keep (_main.log.0 .. _main.log.N-1); the oldest is deleted.
    #[arg(long = "max-files", default_value_t = defaults::MAX_FILES as u32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_files: u32,
    /// Line format of the stored files: text (for people) or json (one object per line).
    #[arg(long, default_value_t = defaults::FORMAT)]
    format: Format,
    /// When to fsync: never, always (acks mean on disk), or an interval like 1000ms.
    #[arg(long, default_value_t = defaults::FSYNC)]
    fsync: Fsync,
    /// Event loop threads (default: number of cores; at least 1).
    #[arg(long)]
    workers: Option<usize>,
    /// Connections beyond this are accepted and closed at once.
    #[arg(long = "max-connections", default_value_t = defaults::MAX_CONNECTIONS)]
    max_connections: usize,
    /// Memory for records received but not yet written; when full, reading stops (backpressure).
    /// At least --max-frame.
    #[arg(long = "max-pending", default_value_t = Size(defaults::MAX_PENDING))]
    max_pending: Size,
    /// Largest frame payload accepted (native, pickle; at most 16MiB-1); a larger frame closes the
    /// connection.
    #[arg(long = "max-frame", default_value_t = Size(defaults::MAX_FRAME), value_parser = parse_max_frame)]
    max_frame: Size,
    /// Longest line (syslog, JSON lines, text) stored as one record; a longer one is stored in
    /// pieces flagged truncated.
    #[arg(long = "max-line", default_value_t = Size(defaults::MAX_LINE))]
    max_line: Size,
    /// Memory for unfinished input (partial frames, lines and gRPC messages) of all clients
    /// together; past it, the clients holding the most are closed. At least the larger of
    /// --max-frame and --max-line, plus 16.
    #[arg(long = "max-input", default_value_t = Size(defaults::MAX_INPUT))]
    max_input: Size,
    /// Largest gRPC request message, before and after decompression (at most 16MiB-1).
    #[arg(long = "grpc-max-message", default_value_t = Size(config::GRPC_MAX_MESSAGE as u64))]
    grpc_max_message: Size,
    /// Close connections silent for this long (e.g. 1h, 300s; 0 = never).
    #[arg(long = "idle-timeout", default_value_t = Span(defaults::IDLE_TIMEOUT))]
    idle_timeout: Span,
    /// How long a SIGTERM may take to store what was received.
    #[arg(long = "shutdown-timeout", default_value_t = Span(defaults::SHUTDOWN_TIMEOUT))]
    shutdown_timeout: Span,
    /// How often to log a stats line (records/s, bytes/s, connections, pending bytes).
    #[arg(long = "stats-interval", default_value_t = Span(defaults::STATS_INTERVAL))]
    stats_interval: Span,
    /// Also print every stored line to standard output.
    #[arg(long)]
    stdout: bool,
    /// What application tokens decide. optional: a connection with a valid token (native
    /// hello.token, gRPC `authorization: Bearer TOKEN`) writes to its app's files
    /// (<dir>/<app>/_main.log), an invalid, expired or revoked token is refused, and a connection
    /// without one writes to <dir>/_main.log (the app it names is shown in its lines, unverified).
    /// required: as optional, and connections without a token are refused, including
    /// SocketHandler, syslog, JSON lines, text and UDP, which cannot carry one. off: tokens are
    /// ignored and the app a client names chooses its files (a trusted network only).
    #[arg(long, default_value_t = defaults::AUTH, value_name = "off|optional|required")]
    auth: config::Auth,
    /// The secret that signs application tokens (`logmill token issue` uses the same one):
    /// created with 32 random bytes and mode 0600 if missing; a file group or others can read is
    /// refused at start-up (fix: chmod 600 FILE). Not read with --auth off. Default:
    /// <dir>/.logmill/secret, with the token registry beside it.
    #[arg(long = "secret-file", value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// HTTP/1.1 on the gRPC port: close a client that has not sent a whole request head this
    /// long after its first byte (slowloris), with 408.
    #[arg(long = "header-timeout", default_value_t = Span(logmill::config::defaults::HEADER_TIMEOUT))]
    header_timeout: Span,
    /// Serve the HTTP admin API (/v1/status: who is connected) without a token. Without it, the
    /// admin API asks for `Authorization: Bearer <token>` with a token from
    /// `logmill token issue --admin` (checked with --secret-file); /healthz and
    /// /metrics never ask.
    #[arg(long = "admin-open")]
    admin_open: bool,
    /// Pages allowed to call gRPC-Web (POST /logmill.v1.LogService/Push, /LogMessage on the
    /// gRPC port) from a browser: an origin as the browser sends it (http://localhost:8080,
    /// scheme and host and port, no path), a comma list, or * for any page. Repeatable. Default:
    /// none (preflights are refused). CORS only limits what a page may read; who may store
    /// records is decided by the token (--auth).
    #[arg(long = "cors-origin", value_name = "ORIGIN", value_parser = parse_cors_origin)]
    cors_origin: Vec<String>,
    /// The control panel's admin password hash (argon2id, as `logmill admin set-password
    /// --admin-password-file FILE` writes it; mode 0600), for containers that mount it. Default:
    /// <dir>/.logmill/admin_password. Read at each login.
    #[arg(long = "admin-password-file", value_name = "FILE")]
    admin_password_file: Option<PathBuf>,
    /// Control panel sessions end this long after login (idle: after at most 1h without a
    /// request). Hidden: for tests of expiry.
    #[arg(long = "console-session-ttl", hide = true, default_value_t = Span(defaults::CONSOLE_SESSION_TTL))]
    console_session_ttl: Span,
    /// Serve TLS (1.2 and 1.3) on every TCP port with this certificate chain (PEM, leaf
    /// first): the native port, and the gRPC port with ALPN http/1.1 and h2 (gRPC, gRPC-Web,
    /// OTLP/HTTP, WebSocket, the console). One port, one mode: a plain client is closed.
    /// Reloaded at SIGHUP for new connections.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require a client certificate signed by one of these CAs (PEM): mutual TLS. The
    /// certificate's subject CN names the connection's app when it sends no token (README,
    /// "TLS").
    #[arg(long = "tls-client-ca", value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Close a TLS handshake not finished this long after accept. Hidden: for tests.
    #[arg(long = "tls-handshake-timeout", hide = true, default_value_t = Span(defaults::TLS_HANDSHAKE_TIMEOUT))]
    tls_handshake_timeout: Span,
    /// Forward the stored records to a sink, at least once, from the files:
    /// clickhouse+http://HOST:8123/DB.TABLE (the table `logmill forward schema clickhouse`
    /// prints), otlp+http://HOST:4318 or otlp+grpc://HOST:4317 (OTLP logs, protobuf, to a
    /// Collector or another logmill). Repeatable. The login comes from LOGMILL_CLICKHOUSE_USER and
    /// LOGMILL_CLICKHOUSE_PASSWORD (or --forward-password-file), never from the command line.
    #[arg(long = "forward", value_name = "URL", value_parser = logmill::forward::Target::parse)]
    forward: Vec<logmill::forward::Target>,
    /// This node's name on every forwarded record, so several nodes can share one table.
    /// Default: the host name.
    #[arg(long = "node-id", value_name = "NAME")]
    node_id: Option<String>,
    /// Bytes of files kept past --max-files for a sink that has not read them yet; past it the
    /// oldest file is deleted anyway (counted, and logged loudly), so a sink that is down never
    /// fills the disk.
    #[arg(long = "forward-max-lag", default_value_t = Size(defaults::FORWARD_MAX_LAG))]
    forward_max_lag: Size,
    /// A file holding the sink's password (ClickHouse), instead of LOGMILL_CLICKHOUSE_PASSWORD.
    #[arg(long = "forward-password-file", value_name = "FILE")]
    forward_password_file: Option<PathBuf>,
    /// A file holding the application token an OTLP sink wants (another logmill with
    /// --auth required), instead of LOGMILL_FORWARD_TOKEN; sent as `Authorization: Bearer`.
    #[arg(long = "forward-token-file", value_name = "FILE")]
    forward_token_file: Option<PathBuf>,
    /// Records per forwarded batch at most. Hidden: for tests and measurements.
    #[arg(long = "forward-batch-rows", hide = true, default_value_t = logmill::forward::MAX_BATCH_ROWS)]
    forward_batch_rows: usize,
    /// The logship receiver's port (files shipped by `logmill ship tx` or any logship
    /// transmitter; 0: any free port). Default: 7447, or $LOGMILL_SHIP_PORT when set (the test
    /// suite sets 0, so servers in parallel do not contend for 7447). --tcp-only keeps it on.
    #[arg(long = "ship-port", alias = "ship_port")]
    ship_port: Option<u16>,
    /// Receive no shipped files: no ship port.
    #[arg(long = "no-ship", alias = "no_ship", conflicts_with = "ship_port")]
    no_ship: bool,
    /// Where shipped files are stored (created if missing). Default: <dir>/ship.
    #[arg(long = "ship-dir", alias = "ship_dir", value_name = "DIR")]
    ship_dir: Option<PathBuf>,
    /// Prefix each shipped file's stored name with the transmitter's address
    /// (127.0.0.1_app.log, ::1_app.log).
    #[arg(long = "host-in-filename", alias = "host_in_filename")]
    host_in_filename: bool,
    /// Close a shipping connection silent this long; what it sent is kept and the transmitter
    /// resumes after it.
    #[arg(long = "ship-timeout", alias = "ship_timeout", default_value_t = Span(defaults::SHIP_TIMEOUT))]
    ship_timeout: Span,
}

/// The ship port when no flag names one: `$LOGMILL_SHIP_PORT`, else 7447.
fn default_ship_port() -> u16 {
    std::env::var("LOGMILL_SHIP_PORT")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(defaults::SHIP_PORT)
}

/// One `--cors-origin` value, checked at start-up (a bad one is a usage error).
fn parse_cors_origin(s: &str) -> Result<String, String> {
    logmill::protocol::grpc_web::Cors::parse([s])
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_max_frame(s: &str) -> Result<Size, String> {
    let n = config::parse_size(s)?;
    if n == 0 || n > u64::from(config::MAX_FRAME_LIMIT) {
        return Err(format!(
            "--max-frame must be between 1 byte and {} bytes (16MiB-1)",
            config::MAX_FRAME_LIMIT
        ));
    }
    Ok(Size(n))
}

impl ServeArgs {
    fn into_config(self) -> Config {
        Config {
            name: self.name,
            host: self.host,
            port: self.port,
            grpc_port: self.grpc_port,
            udp_port: self.udp_port,
            tcp_only: self.tcp_only,
            dir: self.dir,
            max_file_size: self.max_file_size.0,
            max_files: self.max_files as usize,
            format: self.format,
            fsync: self.fsync,
            workers: self.workers.unwrap_or_else(config::default_workers),
            max_connections: self.max_connections,
            max_pending: config::to_usize(self.max_pending.0),
            // parse_max_frame keeps it under 16 MiB.
            max_frame: self.max_frame.0 as u32,
            max_line: config::to_usize(self.max_line.0),
            max_input: config::to_usize(self.max_input.0),
            grpc_max_message: config::to_usize(self.grpc_max_message.0),
            idle_timeout: (!self.idle_timeout.0.is_zero()).then_some(self.idle_timeout.0),
            stdout: self.stdout,
            shutdown_timeout: self.shutdown_timeout.0,
            stats_interval: self.stats_interval.0,
            auth: self.auth,
            secret_file: self.secret_file,
            header_timeout: self.header_timeout.0,
            admin_open: self.admin_open,
            admin_password_file: self.admin_password_file,
            console_session_ttl: self.console_session_ttl.0,
            tls: match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => {
                    Some(config::TlsFiles::new(cert, key, self.tls_client_ca))
                }
                _ => None,
            },
            tls_handshake_timeout: self.tls_handshake_timeout.0,
            forward: logmill::forward::Settings::new(
                self.forward,
                self.node_id
                    .unwrap_or_else(logmill::forward::default_node_id),
                self.forward_max_lag.0,
                self.forward_password_file,
            )
            .with_batch_rows(self.forward_batch_rows)
            .with_token_file(self.forward_token_file),
            // Each value was checked by parse_cors_origin.
            cors: logmill::protocol::grpc_web::Cors::parse(
                self.cors_origin.iter().map(String::as_str),
            )
            .unwrap_or_default(),
            ship_port: (!self.no_ship).then(|| self.ship_port.unwrap_or_else(default_ship_port)),
            ship_host: None,
            ship_dir: self.ship_dir,
            ship_host_in_filename: self.host_in_filename,
            ship_timeout: self.ship_timeout.0,
            ship_backlog: defaults::SHIP_BACKLOG,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.command {
        None => cli.serve.into_config(),
        Some(Command::Serve(args)) => (*args).into_config(),
        Some(Command::Bench(args)) => return bench(args),
        Some(Command::Health(args)) => return health(&args),
        Some(Command::Status(args)) => return status(&args),
        Some(Command::Send(args)) => return send(&args),
        Some(Command::Pipe(args)) => return pipe(&args),
        Some(Command::Token(args)) => return token(&args),
        Some(Command::Admin(args)) => return admin(&args),
        Some(Command::Query(args)) => return logmill::client::query::query(&args),
        Some(Command::Tail(args)) => return logmill::client::query::tail(&args),
        Some(Command::Forward(args)) => return forward(&args),
        Some(Command::Ship(args)) => match *args {
            ShipArgs {
                command: Some(ShipCommand::Rx(args)),
                ..
            } => args.into_config(),
            ShipArgs {
                command: Some(ShipCommand::Tx(tx)),
                ..
            }
            | ShipArgs {
                command: None,
                tx: Some(tx),
            } => return ship(&tx),
            ShipArgs {
                command: None,
                tx: None,
            } => {
                eprintln!("logmill ship: give --host and --glob (or a subcommand: tx, rx)");
                return ExitCode::from(2);
            }
        },
    };
    // Values that parse but cannot work are refused like any bad flag (exit code 2).
    if let Err(e) = config.validate() {
        Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, e)
            .exit();
    }
    serve(config)
}

/// Runs `logmill ship tx` (or the short `logmill ship --host ... --glob ...`).
fn ship(tx: &logmill::client::ship::TxArgs) -> ExitCode {
    match logmill::client::ship::run(tx) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("logmill ship: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `logmill health`: the server's line on stdout; exit 0 only for `OK`, so scripts can
/// write `logmill health --wait 10s && ...`.
fn health(args: &logmill::client::oneshot::HealthArgs) -> ExitCode {
    match logmill::client::oneshot::health(args) {
        Ok(health) => {
            println!("{}", health.line());
            if health.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("logmill health: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `logmill status`: the table (or with `--json` the server's JSON, one line) on stdout.
fn status(args: &logmill::client::status::StatusArgs) -> ExitCode {
    match logmill::client::status::status(args) {
        Ok(status) => {
            if args.json() {
                println!("{}", status.raw);
            } else {
                print!("{}", logmill::client::status::table(&status.value));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("logmill status: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `logmill send`: the record's sequence number on stdout once the server has written it.
fn send(args: &logmill::client::oneshot::SendArgs) -> ExitCode {
    match logmill::client::oneshot::send(args) {
        Ok(seq) => {
            println!("{seq}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("logmill send: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `logmill pipe`: stdin to records; exit 0 only when every record was acked.
fn pipe(args: &logmill::client::pipe::PipeArgs) -> ExitCode {
    match logmill::client::pipe::run(args, &mut std::io::stdin().lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logmill pipe: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `logmill token issue|list|revoke`: the answer on stdout, notes on stderr.
fn token(args: &logmill::apps::cli::TokenArgs) -> ExitCode {
    let result = logmill::apps::cli::run(args, &mut std::io::stdout(), &mut std::io::stderr());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logmill token: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `logmill admin set-password`: the password from stdin (typed twice, not echoed, on a
/// terminal), a note on stderr.
fn admin(args: &logmill::apps::password::AdminArgs) -> ExitCode {
    use std::io::IsTerminal as _;
    let terminal = std::io::stdin().is_terminal();
    // No echo while the password is typed: `stty` rather than a terminal crate for one call.
    let stty = |mode: &str| {
        std::process::Command::new("stty")
            .arg(mode)
            .stdin(std::process::Stdio::inherit())
            .status()
            .is_ok_and(|s| s.success())
    };
    let echo_off = terminal && stty("-echo");
    let result = logmill::apps::password::run(
        args,
        &mut std::io::stdin().lock(),
        terminal,
        &mut std::io::stderr(),
    );
    if echo_off {
        stty("echo");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logmill admin: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `logmill bench`: the figures for people, then one JSON line for scripts, on stdout.
fn bench(args: logmill::bench::BenchArgs) -> ExitCode {
    let report = match logmill::bench::run(args) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("logmill bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    match write!(stdout, "{report}")
        .and_then(|()| writeln!(stdout, "{}", report.to_json()))
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logmill bench: cannot write the report to standard output: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> ExitCode {
    // Start-up order: lock the directory, bind the ports, then open `_server.log` and the record
    // files. A second logmill started by mistake (same directory, or a port in use) stops at one
    // of the first two steps and says why on its own stderr, without writing into the running
    // server's files.
    let lock = match DirLock::acquire(&config.dir) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("logmill: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listeners = match Listeners::bind(&config) {
        Ok(listeners) => listeners,
        Err(e) => {
            eprintln!("logmill: {e}");
            return ExitCode::FAILURE;
        }
    };
    // For a refused second server to name this one.
    let described = lock.describe(
        Some(listeners.tcp_addr()),
        listeners.grpc_addr(),
        listeners.udp_addr(),
    );
    let log = match ServerLog::open(&config.dir, config.max_file_size, config.max_files) {
        Ok(log) => Arc::new(log),
        Err(e) => {
            eprintln!(
                "logmill: cannot use the log directory {}: {e}; check it is writable or choose \
                 another with --dir",
                config.dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = described {
        log.warn(format_args!(
            "cannot write {}: {e}; a second logmill on this directory will be refused without \
             being told this one's pid and ports",
            lock.path().display()
        ));
    }
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log.info(format_args!("open files limit: {limit}")),
        Err(e) => log.warn(format_args!("cannot raise the open files limit: {e}")),
    }
    let server = match Server::new(config.clone(), listeners, log.clone()) {
        Ok(server) => server,
        Err(e) => {
            log.error(format_args!("{e}"));
            return ExitCode::FAILURE;
        }
    };
    let addr = server.tcp_addr();
    match config.auth {
        config::Auth::Off => log.info(format_args!(
            "--auth off: tokens are ignored; the app a client names chooses its files"
        )),
        policy => log.info(format_args!(
            "--auth {policy}: application tokens signed with {}",
            config.secret_path().display()
        )),
    }
    log.info(format_args!(
        "{} {} listening on tcp {addr} ({}), storing in {}",
        config.name,
        env!("CARGO_PKG_VERSION"),
        count(config.workers as u64, "event loop"),
        config.dir.display()
    ));
    if let Some(ship) = server.ship_addr() {
        log.info(format_args!(
            "logship receiver on {ship}, storing in {}{}",
            config.ship_path().display(),
            if config.ship_host_in_filename {
                " (names prefixed with the transmitter's address)"
            } else {
                ""
            }
        ));
    }
    let handle = server.handle();
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            log.error(format_args!("cannot install signal handlers: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let signals_handle = signals.handle();
    let signal_log = log.clone();
    let signal_thread = std::thread::Builder::new()
        .name("logmill-signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                match signal {
                    SIGHUP => handle.reopen(),
                    _ if stopping => {
                        signal_log.error(format_args!("second stop signal: exiting at once"));
                        std::process::exit(130);
                    }
                    _ => {
                        stopping = true;
                        signal_log.info(format_args!(
                            "stop signal: no new connections; storing what was received"
                        ));
                        handle.shutdown();
                    }
                }
            }
        });
    let signal_thread = match signal_thread {
        Ok(t) => t,
        Err(e) => {
            log.error(format_args!("cannot start the signal thread: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // One machine-readable line on stdout with every bound address, for scripts and tests.
    // Printed only once the signal handlers are in place, so a script that reads this line
    // and sends SIGTERM at once gets a clean shutdown.
    let listening = serde_json::json!({
        "event": "listening",
        "tcp": addr.to_string(),
        "grpc": server.grpc_addr().map(|a| a.to_string()),
        "udp": server.udp_addr().map(|a| a.to_string()),
        "ship": server.ship_addr().map(|a| a.to_string()),
    });
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{listening}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        log.warn(format_args!(
            "cannot write the listening line to standard output"
        ));
    }
    drop(stdout);

    let result = server.run();
    signals_handle.close();
    if signal_thread.join().is_err() {
        log.error(format_args!("the signal thread panicked"));
    }
    let code = match result {
        Ok(()) => {
            log.info(format_args!("stopped; every received record is stored"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            log.error(format_args!("{e}"));
            ExitCode::FAILURE
        }
    };
    // Held until the last line is logged; released here, or by the kernel if the process dies.
    drop(lock);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line and `Config::default` read the same defaults: a bare `logmill` is the
    /// default configuration, field for field.
    #[test]
    fn command_line_defaults_are_the_config_defaults() {
        let cli = Cli::try_parse_from(["logmill"]).unwrap();
        let mut from_flags = cli.serve.into_config();
        // The tests' servers run with $LOGMILL_SHIP_PORT=0 (tests/common's `logmill()`); that
        // one default is the environment's.
        assert_eq!(from_flags.ship_port, Some(default_ship_port()));
        from_flags.ship_port = Config::default().ship_port;
        assert_eq!(
            format!("{from_flags:?}"),
            format!("{:?}", Config::default())
        );
    }

    /// `--help` shows each default as a flag would take it.
    #[test]
    fn help_shows_defaults_in_flag_units() {
        let help = Cli::command().render_long_help().to_string();
        for shown in [
            "[default: 10MiB]",
            "[default: 64MiB]",
            "[default: 1MiB]",
            "[default: 256MiB]",
            "[default: 1h]",
            "[default: 1s]",
            "[default: text]",
            "[default: optional]",
        ] {
            assert!(help.contains(shown), "{shown} missing from --help");
        }
    }
}
