//! Settings and limits, with the reason for each default. `main.rs` fills a [`Config`] from the
//! command line; tests and embedders build one with [`Config::default`] and change what they need.

pub mod forward;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How each stored line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// `TIME LEVEL SEQ APP/INSTANCE LOGGER MESSAGE | key=value ...`, for people and grep.
    #[default]
    Text,
    /// One JSON object per line with stable keys, for machines.
    Json,
}

/// When the writer calls `fsync` (`sync_data`) on the active file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Leave it to the kernel: fastest, loses what is in the page cache on power loss.
    Never,
    /// After every batch, before acks are sent: an ack then means "on disk".
    Always,
    /// At most this long after a write.
    Every(Duration),
}

/// Who may choose a bucket (`--auth`): what the server does with application tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Auth {
    /// Tokens are ignored; the app a client names (native `hello.app`, gRPC `logmill-app`)
    /// chooses its bucket. For a trusted network where every client is yours.
    Off,
    /// A valid token puts the connection in its app's bucket; an invalid one is refused; a
    /// connection without one is anonymous (`<dir>/_main.log`). Anyone can still log, nobody can
    /// write into an app's files without its token.
    #[default]
    Optional,
    /// As `optional`, and a connection without a token is refused, including every protocol
    /// that cannot carry one (SocketHandler, syslog, JSON lines, text, UDP).
    Required,
}

/// Every default, with its reason. `Config::default` and the command line (`main.rs`, where
/// `--help` prints them) both read these, so a default is written once.
pub mod defaults {
    use std::time::Duration;

    use super::{Auth, Format, Fsync};

    pub const NAME: &str = "LogServer";
    /// Loopback: a log server should be exposed to a network on purpose, not by accident.
    pub const HOST: &str = "127.0.0.1";
    pub const PORT: u16 = 4020;
    pub const GRPC_PORT: u16 = 4021;
    pub const DIR: &str = "./logs";
    /// 10 MiB: small enough to open in an editor, large enough that rotation is rare.
    pub const MAX_FILE_SIZE: u64 = 10 << 20;
    /// Ten rotated files: 110 MiB of history at the default size.
    pub const MAX_FILES: usize = 10;
    /// Text, for people and grep; `json` is one `--format` away for machines.
    pub const FORMAT: Format = Format::Text;
    /// Every second: at most a second of acknowledged records at risk on power loss, for a cost
    /// too small to measure.
    pub const FSYNC: Fsync = Fsync::Every(Duration::from_secs(1));
    /// Far above what one machine's clients need, low enough that a connection flood is refused
    /// before the process runs out of descriptors.
    pub const MAX_CONNECTIONS: usize = 100_000;
    /// A few hundred milliseconds of writes at full speed: enough to absorb a slow disk moment,
    /// small enough to never matter for memory.
    pub const MAX_PENDING: u64 = 64 << 20;
    /// 1 MiB holds thousands of records per batch; anything larger is more likely an attack or a
    /// bug than a log record.
    pub const MAX_FRAME: u64 = 1 << 20;
    /// The longest line (syslog, JSON lines, text) stored as one record: as large as a frame, so
    /// a long stack trace arrives whole whichever way it is sent.
    pub const MAX_LINE: u64 = 1 << 20;
    /// Holds a maximal frame in the middle of arriving on each of 256 connections at once, and
    /// thousands of ordinary ones (a batch is typically tens of KiB).
    pub const MAX_INPUT: u64 = 256 << 20;
    /// An hour: long enough for a quiet batch job between runs, short enough that abandoned
    /// connections do not pile up; dead peers are caught sooner by TCP keepalive.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
    /// Ten seconds: what a service manager usually waits before SIGKILL.
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
    /// A minute: a trend in `_server.log` without drowning it.
    pub const STATS_INTERVAL: Duration = Duration::from_secs(60);
    /// Optional: a server upgraded to tokens keeps taking what its clients send today (they go
    /// to the anonymous bucket), and an app's bucket is written only with the app's token.
    pub const AUTH: Auth = Auth::Optional;
    /// `--header-timeout`: an HTTP/1.1 client that has not finished its request head this long
    /// after its first byte gets `408` and is closed (the slowloris bound). Ten seconds is far
    /// more than any real client needs on any network, and keeps what a crowd of slow clients
    /// holds (one small buffer each) short-lived.
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// A console session ends 12 h after login whatever it does (a working day; a stolen cookie
    /// is good for no longer), and after 1 h without a request
    /// (`server::session::http::console::auth::IDLE_TIMEOUT`).
    pub const CONSOLE_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
    /// A TLS handshake takes two round trips and a few milliseconds of CPU; 10 s covers a slow
    /// link many times over, while a client that opens sockets and never finishes (a
    /// slowloris on the handshake) holds each for no longer.
    pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// `--forward-max-lag`: 1 GiB of files the writer keeps past `--max-files` for a sink that
    /// has not read them (an hour's outage of a sink at some 300 KiB/s), before it deletes the
    /// oldest anyway so the disk never fills because a sink is down.
    pub const FORWARD_MAX_LAG: u64 = 1 << 30;
    /// The logship receiver's port: logship's own (its document's `localhost:7447`), so a
    /// transmitter written from that document finds logmill where it found logship.
    pub const SHIP_PORT: u16 = 7447;
    /// A shipping connection silent for five minutes is closed (the bytes it sent are kept; the
    /// transmitter resumes after them). Long enough for a quiet log file between two appends
    /// without a reconnection each time, short enough that a transmitter cut off without a FIN
    /// (whose connection still holds its stored name) gets its name back soon; TCP keepalive
    /// notices most dead peers sooner, in about two minutes.
    pub const SHIP_TIMEOUT: Duration = Duration::from_secs(300);
    /// The listen backlog (`ship rx --socket-queue-length`), as the other ports'.
    pub const SHIP_BACKLOG: u32 = 4096;
}

/// What the server is told to do. Each field's default and its reason is in [`defaults`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Reported by `health` and in the welcome frame, so an operator can tell servers apart.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub grpc_port: u16,
    pub tcp_only: bool,
    /// UDP port for syslog datagrams and Python's `DatagramHandler`; off unless given, since UDP
    /// has no flow control and no acks (a datagram the kernel drops is lost silently).
    pub udp_port: Option<u16>,
    pub dir: PathBuf,
    pub max_file_size: u64,
    /// Rotated files kept (`_main.log.0` .. `_main.log.{N-1}`).
    pub max_files: usize,
    pub format: Format,
    pub fsync: Fsync,
    /// Event loops; default is the number of cores, since each loop is one busy thread at most.
    pub workers: usize,
    /// Connections beyond this are accepted and closed at once, so the listen queue never
    /// fills with clients that will never be served.
    pub max_connections: usize,
    /// Bytes of formatted records between the loops and the writer. When it is full the loops stop
    /// reading sockets and TCP flow control pushes back on clients.
    pub max_pending: usize,
    /// Largest frame payload (native, pickle).
    pub max_frame: u32,
    /// Longest line (syslog, JSON lines, text) stored as one record; a longer one is cut into
    /// records flagged `truncated`, never buffered without bound.
    pub max_line: usize,
    /// Bytes of unfinished input the server holds for all clients together: frame and line tails
    /// in connection buffers, gRPC messages being assembled and request data `h2` buffered
    /// (`server::budget`). Past it, the connections holding the most are closed (shed). Next to
    /// `max_pending`, it is what bounds the server's memory whatever clients send (README,
    /// "Memory"). At least [`min_max_input`], so one frame or line can always arrive.
    pub max_input: usize,
    /// Largest gRPC request message, before and after decompression (`--grpc-max-message`);
    /// see [`GRPC_MAX_MESSAGE`] and [`GrpcLimits::from_config`].
    pub grpc_max_message: usize,
    /// Connections silent this long are closed (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Also print every stored line to standard output.
    pub stdout: bool,
    /// How long a SIGTERM may take to store what was received before the process gives up.
    pub shutdown_timeout: Duration,
    /// How often the server logs its stats line (records/s, bytes/s, connections, pending).
    pub stats_interval: Duration,
    /// What tokens decide (`--auth`); see [`Auth`].
    pub auth: Auth,
    /// The signing secret (`--secret-file`); `None` is `<dir>/.logmill/secret`
    /// ([`Config::secret_path`]). Read (or created) at start-up unless `auth` is `Off`.
    pub secret_file: Option<PathBuf>,
    /// How long an HTTP client on the gRPC port has to send a whole request head, from its
    /// first byte (`defaults::HEADER_TIMEOUT`, the slowloris bound).
    pub header_timeout: Duration,
    /// Serve the HTTP admin API (`/v1/status`) without an admin token.
    pub admin_open: bool,
    /// The pages (`Origin`s) allowed to call gRPC-Web from a browser (`--cors-origin`); none
    /// by default.
    pub cors: crate::protocol::grpc_web::Cors,
    /// The console's admin password hash (`--admin-password-file`); `None` is
    /// `<dir>/.logmill/admin_password` ([`Config::admin_password_path`]).
    pub admin_password_file: Option<PathBuf>,
    /// How long a console session lasts after login (`defaults::CONSOLE_SESSION_TTL`).
    pub console_session_ttl: Duration,
    /// TLS on the native TCP port and the gRPC port (`--tls-cert`, `--tls-key`,
    /// `--tls-client-ca`); `None`: plain TCP. One port, one mode (`server::tls`).
    pub tls: Option<TlsFiles>,
    /// A TLS handshake not finished this long after accept is closed
    /// (`defaults::TLS_HANDSHAKE_TIMEOUT`).
    pub tls_handshake_timeout: Duration,
    /// Where the stored records are forwarded (`--forward`, `--node-id`, ...); no sink by
    /// default.
    pub forward: forward::Settings,
    /// The logship receiver's port (`--ship-port`; `None`: `--no-ship`).
    pub ship_port: Option<u16>,
    /// Where it listens (`ship rx --bindhost`); `None`: `host`.
    pub ship_host: Option<String>,
    /// Where it stores (`--ship-dir`); `None`: `<dir>/ship` ([`Config::ship_path`]).
    pub ship_dir: Option<PathBuf>,
    /// Prefix stored names with the transmitter's address (`--host-in-filename`).
    pub ship_host_in_filename: bool,
    /// Close a shipping connection silent this long (`--ship-timeout`, `ship rx --timeout`).
    pub ship_timeout: Duration,
    /// The ship listener's backlog (`ship rx --socket-queue-length`).
    pub ship_backlog: u32,
}

/// The PEM files TLS is made of, read at start-up and again at each `SIGHUP`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The server's certificate chain (`cert`, leaf first) and its private key (`key`);
    /// `client_ca`: the CA certificates a client's certificate must chain to (mutual TLS).
    pub fn new(cert: PathBuf, key: PathBuf, client_ca: Option<PathBuf>) -> TlsFiles {
        TlsFiles {
            cert,
            key,
            client_ca,
        }
    }

    pub fn cert(&self) -> &Path {
        &self.cert
    }

    pub fn key(&self) -> &Path {
        &self.key
    }

    pub fn client_ca(&self) -> Option<&Path> {
        self.client_ca.as_deref()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: defaults::NAME.into(),
            host: defaults::HOST.into(),
            port: defaults::PORT,
            grpc_port: defaults::GRPC_PORT,
            tcp_only: false,
            udp_port: None,
            dir: PathBuf::from(defaults::DIR),
            max_file_size: defaults::MAX_FILE_SIZE,
            max_files: defaults::MAX_FILES,
            format: defaults::FORMAT,
            fsync: defaults::FSYNC,
            workers: default_workers(),
            max_connections: defaults::MAX_CONNECTIONS,
            max_pending: to_usize(defaults::MAX_PENDING),
            max_frame: defaults::MAX_FRAME as u32,
            max_line: to_usize(defaults::MAX_LINE),
            max_input: to_usize(defaults::MAX_INPUT),
            grpc_max_message: GRPC_MAX_MESSAGE,
            idle_timeout: Some(defaults::IDLE_TIMEOUT),
            stdout: false,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            stats_interval: defaults::STATS_INTERVAL,
            auth: defaults::AUTH,
            secret_file: None,
            header_timeout: defaults::HEADER_TIMEOUT,
            admin_open: false,
            cors: crate::protocol::grpc_web::Cors::default(),
            admin_password_file: None,
            forward: forward::Settings::new(
                Vec::new(),
                forward::default_node_id(),
                defaults::FORWARD_MAX_LAG,
                None,
            ),
            console_session_ttl: defaults::CONSOLE_SESSION_TTL,
            ship_port: Some(defaults::SHIP_PORT),
            ship_host: None,
            ship_dir: None,
            ship_host_in_filename: false,
            ship_timeout: defaults::SHIP_TIMEOUT,
            ship_backlog: defaults::SHIP_BACKLOG,
            tls: None,
            tls_handshake_timeout: defaults::TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

/// One event loop per core (see [`Config::workers`]).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A byte count from a flag, saturated to what this machine can address.
pub fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A setting that cannot work, with the value that would ([`Config::validate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// `flag` is below `minimum` (in the flag's own unit); `why` says what breaks below it.
    TooSmall {
        flag: &'static str,
        value: String,
        minimum: String,
        why: &'static str,
    },
    /// `flag` is above `maximum`.
    TooLarge {
        flag: &'static str,
        value: String,
        maximum: String,
        why: &'static str,
    },
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::TooSmall {
                flag,
                value,
                minimum,
                why,
            } => write!(
                f,
                "{flag} {value} cannot work: the minimum is {minimum} ({why})"
            ),
            Invalid::TooLarge {
                flag,
                value,
                maximum,
                why,
            } => write!(
                f,
                "{flag} {value} cannot work: the maximum is {maximum} ({why})"
            ),
        }
    }
}

impl std::error::Error for Invalid {}

/// The directory under `--dir` that holds the signing secret and the token registry
/// (`apps::secret`).
pub const STATE_DIR: &str = ".logmill";

/// The secret's path when `--secret-file` is not given: `<dir>/.logmill/secret`.
pub fn default_secret_path(dir: &std::path::Path) -> PathBuf {
    dir.join(STATE_DIR).join("secret")
}

impl Config {
    /// Where the logship receiver stores: `--ship-dir`, or `<dir>/ship`.
    pub fn ship_path(&self) -> PathBuf {
        self.ship_dir
            .clone()
            .unwrap_or_else(|| self.dir.join("ship"))
    }

    /// Where the signing secret is: `--secret-file`, or `<dir>/.logmill/secret`. The token
    /// registry is the file `tokens` beside it.
    pub fn secret_path(&self) -> PathBuf {
        self.secret_file
            .clone()
            .unwrap_or_else(|| default_secret_path(&self.dir))
    }

    /// Where the console's admin password hash is: `--admin-password-file`, or
    /// `<dir>/.logmill/admin_password`.
    pub fn admin_password_path(&self) -> PathBuf {
        self.admin_password_file
            .clone()
            .unwrap_or_else(|| self.dir.join(STATE_DIR).join("admin_password"))
    }

    /// Refuses settings with which the server would start and then not work: `--max-pending 0`
    /// never reads a byte, `--workers 0` has no loop to read with, `--max-connections 0` closes
    /// every client. Checked once at start-up, before anything is bound or written.
    ///
    /// # Errors
    /// The first setting out of range, saying the minimum (or maximum) and why.
    pub fn validate(&self) -> Result<(), Invalid> {
        fn too_small(
            flag: &'static str,
            value: impl ToString,
            minimum: impl ToString,
            why: &'static str,
        ) -> Result<(), Invalid> {
            Err(Invalid::TooSmall {
                flag,
                value: value.to_string(),
                minimum: minimum.to_string(),
                why,
            })
        }
        if self.max_frame == 0 {
            return too_small(
                "--max-frame",
                0,
                "1 byte",
                "no record fits in an empty frame",
            );
        }
        if self.console_session_ttl < Duration::from_secs(1) {
            return too_small(
                "--console-session-ttl",
                format!("{:?}", self.console_session_ttl),
                "1s",
                "a console session must outlive its login",
            );
        }
        if self.ship_port.is_some() && self.ship_timeout < Duration::from_millis(100) {
            return too_small(
                "--ship-timeout",
                format!("{:?}", self.ship_timeout),
                "100ms",
                "a transmitter needs time to send its name and its first bytes",
            );
        }
        if self.max_frame > MAX_FRAME_LIMIT {
            return Err(Invalid::TooLarge {
                flag: "--max-frame",
                value: self.max_frame.to_string(),
                maximum: format!("{MAX_FRAME_LIMIT} bytes (16MiB-1)"),
                why: "a frame's first byte must be 0 for protocol detection",
            });
        }
        if self.grpc_max_message == 0 {
            return too_small(
                "--grpc-max-message",
                0,
                "1 byte",
                "no request fits in an empty message",
            );
        }
        if self.grpc_max_message > MAX_FRAME_LIMIT as usize {
            return Err(Invalid::TooLarge {
                flag: "--grpc-max-message",
                value: self.grpc_max_message.to_string(),
                maximum: format!("{MAX_FRAME_LIMIT} bytes (16MiB-1)"),
                why: "a record is stored as one line, bounded like a native frame",
            });
        }
        // The loops stop reading while `max_pending` bytes wait for the writer; below one
        // largest frame, a connection sending large frames could be paused on every frame (and
        // at 0 the loops never read at all). The pending gauge counts formatted lines, not frame
        // headers, so the minimum is the payload size itself.
        if self.max_pending < self.max_frame as usize {
            return too_small(
                "--max-pending",
                self.max_pending,
                format_args!("{} bytes (one --max-frame)", self.max_frame),
                "reading stops while this much waits for the disk, so it must hold one whole frame",
            );
        }
        // Below one frame and its header, a client sending a frame of `--max-frame` would be shed
        // every time.
        if self.max_line == 0 {
            return too_small(
                "--max-line",
                0,
                "1 byte",
                "a line is stored in pieces of at most this size",
            );
        }
        let min_input = min_max_input(self.max_frame, self.max_line);
        if self.max_input < min_input {
            return too_small(
                "--max-input",
                self.max_input,
                format_args!(
                    "{min_input} bytes (one --max-frame or --max-line, the larger, and its header)"
                ),
                "a connection may hold one unfinished frame or line",
            );
        }
        if self.workers == 0 {
            return too_small("--workers", 0, 1, "with no event loop nothing is read");
        }
        if self.max_connections == 0 {
            return too_small(
                "--max-connections",
                0,
                1,
                "every client would be closed at once",
            );
        }
        if self.max_files == 0 {
            return too_small(
                "--max-files",
                0,
                1,
                "a rotation moves the active file to .0",
            );
        }
        if self.max_file_size == 0 {
            return too_small(
                "--max-file-size",
                0,
                "1 byte",
                "a file must be able to hold a line",
            );
        }
        if self.stats_interval < Duration::from_secs(1) {
            return too_small(
                "--stats-interval",
                format_args!("{}ms", self.stats_interval.as_millis()),
                "1s",
                "the writer checks it about once a second",
            );
        }
        Ok(())
    }
}

/// A bucket (one app's file set) that has written nothing for this long closes its file; the
/// next record reopens it. A minute: an app that logs at all keeps its file open, while thousands
/// of apps that log once in a while do not hold thousands of descriptors.
pub const BUCKET_IDLE_CLOSE: Duration = Duration::from_secs(60);

/// At most this many buckets keep their file open; beyond it the least recently written closes
/// first. Far below the usual 1024-descriptor soft limit, which the connections share.
pub const MAX_OPEN_BUCKETS: usize = 256;

/// The largest `--max-frame`: a frame's first byte must be 0 for detection (`protocol::detect`),
/// so lengths stay under 16 MiB.
pub const MAX_FRAME_LIMIT: u32 = (1 << 24) - 1;

/// Bytes a connection may hold of one unfinished frame or line beyond `max_frame`: a frame's
/// 4-byte length, a line's `\r` and newline, a syslog octet count and its space, a WebSocket
/// frame's header (14 bytes at most).
pub const INPUT_SLACK: usize = 16;

/// The smallest `--max-input` for a given `--max-frame` and `--max-line`: one frame or line of
/// the largest size must fit, or a client sending one would be shed every time.
pub fn min_max_input(max_frame: u32, max_line: usize) -> usize {
    (max_frame as usize)
        .max(max_line)
        .saturating_add(INPUT_SLACK)
}

/// A byte size as a flag takes it (`10MiB`, `512KiB`, `4096`) and `--help` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl std::str::FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_size(s).map(Size)
    }
}

impl std::fmt::Display for Size {
    /// The largest unit that divides the size exactly, so it reads back as the same size.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n != 0 && n.trailing_zeros() >= shift {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

/// A duration as a flag takes it (`1h`, `10s`, `250ms`) and `--help` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl std::str::FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(Span)
    }
}

impl std::fmt::Display for Span {
    /// The largest unit that divides the duration exactly, so it reads back the same.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        for (per, unit) in [(3_600_000, "h"), (60_000, "m"), (1000, "s")] {
            if ms != 0 && ms.is_multiple_of(per) {
                return write!(f, "{}{unit}", ms / per);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl std::str::FromStr for Fsync {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_fsync(s)
    }
}

impl std::fmt::Display for Fsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fsync::Never => f.write_str("never"),
            Fsync::Always => f.write_str("always"),
            Fsync::Every(every) => Span(*every).fmt(f),
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format `{other}`: use text or json")),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Text => "text",
            Format::Json => "json",
        })
    }
}

impl std::str::FromStr for Auth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Auth::Off),
            "optional" => Ok(Auth::Optional),
            "required" => Ok(Auth::Required),
            other => Err(format!(
                "unknown auth policy `{other}`: use off, optional or required"
            )),
        }
    }
}

impl std::fmt::Display for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::Off => "off",
            Auth::Optional => "optional",
            Auth::Required => "required",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC limits
// ---------------------------------------------------------------------------------------------

/// The default largest gRPC request message (`--grpc-max-message`): 4 MiB is gRPC's own default
/// receive limit, so clients already expect it. Its own setting rather than `--max-frame`,
/// whose 1 MiB default would refuse messages every gRPC client may send.
pub const GRPC_MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// A gRPC message's prefix: a compressed flag and a 4-byte length (`protocol::grpc::PREFIX_LEN`,
/// repeated here so that settings import no protocol).
pub const GRPC_PREFIX_LEN: usize = 5;

/// Limits and timeouts of the gRPC port, with the reason for each default.
#[derive(Clone, Debug)]
pub struct GrpcLimits {
    /// Largest request message, before and after decompression ([`GRPC_MAX_MESSAGE`]); at most
    /// 16 MiB-1 like a native frame, which bounds the length of a stored line.
    pub max_message: usize,
    /// Concurrent calls per connection. Each may hold a partial message of up to
    /// `max_message`, so this times that is the worst-case memory of one connection.
    pub max_concurrent_streams: u32,
    /// Largest request header list (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`): gRPC metadata is
    /// small, and a large header list is a memory attack.
    pub max_header_list: u32,
    /// HTTP/2 flow-control window per call: how much a client may send on one call ahead of
    /// what the loop has taken. 1 MiB keeps a fast client streaming at full speed on a LAN.
    pub stream_window: u32,
    /// The same for the whole connection (4 MiB): what one connection can make `h2` buffer.
    pub connection_window: u32,
    /// From accept to a complete HTTP/2 handshake (and the whole HTTP/1 answer).
    pub handshake_timeout: Duration,
    /// A connection with no call open for this long is sent GOAWAY and closed.
    pub idle_timeout: Option<Duration>,
    /// After this long without a byte from the peer, a PING is sent: this catches a peer that
    /// vanished while a call was open, much sooner than TCP keepalive would.
    pub keepalive_interval: Duration,
    /// Without a byte (the PING's answer or anything else) this long after the PING, the
    /// connection is closed.
    pub keepalive_timeout: Duration,
    /// After a shutdown begins, how long open calls get before the connection is closed.
    pub shutdown_grace: Duration,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        GrpcLimits {
            max_message: GRPC_MAX_MESSAGE,
            max_concurrent_streams: 100,
            max_header_list: 16 * 1024,
            stream_window: 1024 * 1024,
            connection_window: 4 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(3600)),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl GrpcLimits {
    /// The defaults, with `--grpc-max-message`, the idle and shutdown timeouts of the TCP side,
    /// and sizes that fit the input budget (`--max-input`): a message at most half of it, so
    /// that one connection's unfinished messages ([`GrpcLimits::max_partial`]) fit; windows at
    /// most a quarter of it, since they are what one connection may send before the loop looks
    /// at the budget. With the default budget (256 MiB) these are the defaults above.
    pub fn from_config(config: &Config) -> GrpcLimits {
        let defaults = GrpcLimits::default();
        // Below 65,535 bytes HTTP/2 cannot shrink a connection window.
        let connection_window =
            (config.max_input / 4).clamp(65_535, defaults.connection_window as usize) as u32;
        GrpcLimits {
            max_message: (config.max_input / 2).clamp(1, config.grpc_max_message.max(1)),
            stream_window: defaults.stream_window.min(connection_window),
            connection_window,
            idle_timeout: config.idle_timeout,
            shutdown_grace: config.shutdown_timeout,
            ..defaults
        }
    }

    /// The message limit in force: `max_message`, within 1 byte and [`MAX_FRAME_LIMIT`].
    pub fn max_message(&self) -> usize {
        self.max_message.clamp(1, MAX_FRAME_LIMIT as usize)
    }

    /// Bytes of unfinished messages one connection may hold: two largest messages (one
    /// finishing while the next begins). Past it, the call holding the most is failed with
    /// RESOURCE_EXHAUSTED: 100 calls each holding most of a 4 MiB message took 400 MB.
    pub fn max_partial(&self) -> usize {
        2 * (self.max_message() + GRPC_PREFIX_LEN)
    }
}

/// Parses a byte size: `1048576`, `512KiB`, `10MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, `MB`, `GB`,
/// all powers of 1024).
///
/// # Errors
/// A message saying what was expected.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size: use bytes or a unit, like 10MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown size unit `{other}`: use KiB, MiB or GiB")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Parses a duration: `250ms`, `10s`, `5m`, `1h`, `30d` (days, for token lifetimes); a bare
/// number is seconds.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: use a number and ms, s, m, h or d"))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        other => {
            return Err(format!(
                "unknown duration unit `{other}`: use ms, s, m, h or d"
            ));
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is too long"))
}

/// Parses `--fsync`: `never`, `always`, or an interval such as `1000ms`.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_fsync(s: &str) -> Result<Fsync, String> {
    match s {
        "never" => Ok(Fsync::Never),
        "always" => Ok(Fsync::Always),
        other => match parse_duration(other) {
            Ok(d) if d.is_zero() => Ok(Fsync::Always),
            Ok(d) => Ok(Fsync::Every(d)),
            Err(_) => Err(format!(
                "`{other}` is not an fsync policy: use never, always or an interval like 1000ms"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn validate_names_the_minimum() {
        assert_eq!(Config::default().validate(), Ok(()));
        let zero_pending = Config {
            max_pending: 0,
            ..Config::default()
        };
        let err = zero_pending.validate().unwrap_err().to_string();
        assert!(err.starts_with("--max-pending 0 cannot work"), "{err}");
        assert!(
            err.contains("the minimum is 1048576 bytes (one --max-frame)"),
            "{err}"
        );
        let one_frame = Config {
            max_pending: 1 << 20,
            ..Config::default()
        };
        assert_eq!(one_frame.validate(), Ok(()));
        for (config, flag) in [
            (
                Config {
                    workers: 0,
                    ..Config::default()
                },
                "--workers 0",
            ),
            (
                Config {
                    max_connections: 0,
                    ..Config::default()
                },
                "--max-connections 0",
            ),
            (
                Config {
                    max_files: 0,
                    ..Config::default()
                },
                "--max-files 0",
            ),
            (
                Config {
                    max_file_size: 0,
                    ..Config::default()
                },
                "--max-file-size 0",
            ),
            (
                Config {
                    stats_interval: Duration::ZERO,
                    ..Config::default()
                },
                "--stats-interval 0ms",
            ),
            (
                Config {
                    max_frame: MAX_FRAME_LIMIT + 1,
                    ..Config::default()
                },
                "--max-frame 16777216",
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.starts_with(flag), "{err}");
            assert!(err.contains("the m"), "{err}");
        }
    }

    #[test]
    fn flag_values_print_as_they_parse() {
        for text in ["10MiB", "1GiB", "512KiB", "4097", "0"] {
            assert_eq!(text.parse::<Size>().unwrap().to_string(), text);
        }
        for text in ["1h", "90m", "10s", "250ms", "0ms"] {
            assert_eq!(text.parse::<Span>().unwrap().to_string(), text);
        }
        for text in ["never", "always", "1s", "250ms"] {
            assert_eq!(text.parse::<Fsync>().unwrap().to_string(), text);
        }
        for text in ["text", "json"] {
            assert_eq!(text.parse::<Format>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn durations_and_fsync() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("1w").is_err());
        assert_eq!(
            parse_fsync("1000ms"),
            Ok(Fsync::Every(Duration::from_secs(1)))
        );
        assert_eq!(parse_fsync("always"), Ok(Fsync::Always));
        assert!(parse_fsync("sometimes").is_err());
    }

    #[test]
    fn max_input_must_hold_one_frame() {
        assert_eq!(min_max_input(1024, 512), 1024 + INPUT_SLACK);
        assert_eq!(min_max_input(512, 1024), 1024 + INPUT_SLACK);
        let mut config = Config {
            max_frame: 1024,
            max_line: 1024,
            max_pending: 1024,
            max_input: 1040,
            ..Config::default()
        };
        assert!(config.validate().is_ok());
        config.max_input = 1039;
        let refused = config.validate().unwrap_err().to_string();
        assert!(refused.contains("the minimum is 1040 bytes"), "{refused}");
        let default = Config::default();
        assert!(default.max_input >= min_max_input(default.max_frame, default.max_line));
    }

    #[test]
    fn grpc_limits_are_clamped_to_the_line_limit_and_follow_the_flags() {
        let limits = GrpcLimits {
            max_message: usize::MAX,
            ..GrpcLimits::default()
        };
        assert_eq!(limits.max_message(), MAX_FRAME_LIMIT as usize);
        let from_config = GrpcLimits::from_config(&Config {
            idle_timeout: None,
            ..Config::default()
        });
        assert_eq!(from_config.idle_timeout, None);
        assert_eq!(from_config.max_message, GRPC_MAX_MESSAGE);
        let small = GrpcLimits::from_config(&Config {
            grpc_max_message: 1000,
            ..Config::default()
        });
        assert_eq!(small.max_message, 1000, "--grpc-max-message is honoured");
        let refused = Config {
            grpc_max_message: MAX_FRAME_LIMIT as usize + 1,
            ..Config::default()
        };
        assert!(matches!(
            refused.validate(),
            Err(Invalid::TooLarge {
                flag: "--grpc-max-message",
                ..
            })
        ));
    }
}
