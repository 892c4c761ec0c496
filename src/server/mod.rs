//! The server: binds the listener, builds the loops and the writer, and runs them on named
//! threads until a shutdown.
//!
//! Listener sharing: there is one listening socket, and every loop registers its own handle on it
//! (a `dup` of the descriptor). A new connection wakes the loops; a loop holding two more
//! connections than the least loaded one leaves it to that loop and wakes it with an accept hint
//! (`EventLoop::over_share`), so connections spread evenly. We chose this over `SO_REUSEPORT`
//! listeners, which would let a second logmill started by mistake on the same port silently take
//! half the clients.
//!
//! - [`event_loop`]: one loop, its accept/read/write discipline.
//! - [`budget`]: the budget for unfinished input (`--max-input`) and who sheds when it is hit.
//! - [`connection`]: one TCP connection: a transport plus a session; its buffers, limits,
//!   output and closing.
//! - [`transport`]: the socket under a connection (plain TCP; TLS later).
//! - [`session`]: one protocol each (native, pickle, syslog, JSON lines and text, health), chosen
//!   from detection's result in one place.
//! - [`grpc`]: gRPC (HTTP/2 through `h2`): a loop's side of it as one unit ([`grpc::GrpcPort`]),
//!   a connection's lifecycle, its calls, its replies.
//! - [`ship`]: the logship receiver (`--ship-port`): a loop's listener and shipping connections,
//!   which hand their bytes to the ship writer (`storage::ship`).
//! - [`shared`]: what the loops share (counters, hand-off to the writer, budget, balance).
//! - [`balance`]: which loop takes a new connection.
//! - [`health`]: the `health` line and gRPC's serving status.
//! - [`http`]: HTTP/1.1 on the gRPC port: the hand-over from the port's detection, the routes,
//!   `/healthz`, `/metrics` and the admin API.
//! - [`tls`]: what a new connection's TLS is made of (certificate, key, client CAs), its
//!   reload at `SIGHUP`, and failed handshakes' count and log; the bytes go through
//!   `net::stream` in each connection.
//! - [`traffic`]: records, bytes and connections per protocol and app, counted per loop and
//!   published for `/metrics`.

pub mod balance;
pub mod budget;
pub mod connection;
pub mod event_loop;
pub mod grpc;
pub mod health;
pub mod session;
pub mod shared;
pub mod ship;
pub mod tls;
pub mod traffic;
pub mod transport;

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::thread;

use mio::{Poll, Waker};

use crate::apps::gate::Gate;
use crate::config::Config;
use crate::stats::Stats;
use crate::storage::Command;
use crate::storage::mailbox::{Handoff, Mailbox};
use crate::storage::server_log::ServerLog;
use crate::storage::ship::ShipWriter;
use crate::storage::writer::{Exit, Writer};
use event_loop::EventLoop;
use shared::Shared;

/// Which of the server's sockets an error is about, so the message names the flag that sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    Tcp,
    Grpc,
    Udp,
    Ship,
}

impl Port {
    fn name(self) -> &'static str {
        match self {
            Port::Tcp => "tcp",
            Port::Grpc => "gRPC",
            Port::Udp => "udp",
            Port::Ship => "ship",
        }
    }

    /// The flag that sets this port.
    pub fn flag(self) -> &'static str {
        match self {
            Port::Tcp => "--port",
            Port::Grpc => "--grpc-port",
            Port::Udp => "--udp-port",
            Port::Ship => "--ship-port",
        }
    }

    /// What to do when the port is taken.
    fn when_in_use(self) -> &'static str {
        match self {
            Port::Tcp => "choose another with --port, or --port 0 for any free port",
            Port::Grpc => {
                "choose another with --grpc-port (--grpc-port 0 for any free port), or serve no \
                 gRPC with --tcp-only"
            }
            Port::Udp => {
                "choose another with --udp-port (--udp-port 0 for any free port), or leave \
                 --udp-port out"
            }
            Port::Ship => {
                "choose another with --ship-port (--ship-port 0 for any free port), or receive \
                 no shipped files with --no-ship"
            }
        }
    }
}

/// Why the server could not start or stopped badly. Each says what to do.
#[derive(Debug)]
pub enum Error {
    Bind {
        port: Port,
        addr: String,
        source: io::Error,
    },
    Storage {
        dir: String,
        source: io::Error,
    },
    Setup(io::Error),
    /// The signing secret cannot be used (`--secret-file`, `--auth`).
    Secret(crate::apps::secret::SecretError),
    /// The TLS files cannot be used (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
    Tls(tls::TlsError),
    LoopFailed(String),
    RecordsLost(u64),
    /// A forwarder cannot start (`--forward`): its checkpoint or password file.
    Forward(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind { port, addr, source } if source.kind() == io::ErrorKind::AddrInUse => {
                write!(
                    f,
                    "cannot listen on {} {addr}: the port is in use (another logmill?); {}",
                    port.name(),
                    port.when_in_use()
                )
            }
            Error::Bind { port, addr, source } => write!(
                f,
                "cannot listen on {} {addr}: {source}; check --host and {}",
                port.name(),
                port.flag()
            ),
            Error::Storage { dir, source } => write!(
                f,
                "cannot use the log directory {dir}: {source}; check it exists and is writable, \
                 or choose another with --dir"
            ),
            Error::Setup(e) => write!(f, "cannot set up the event loops: {e}"),
            Error::Secret(e) => write!(
                f,
                "{e} (the secret signs application tokens; --auth off runs without one)"
            ),
            Error::Tls(e) => write!(f, "cannot serve TLS: {e}"),
            Error::LoopFailed(why) => write!(f, "an event loop failed: {why}"),
            Error::RecordsLost(n) => write!(
                f,
                "stopped with {} received and unwritten: the disk kept failing (see _server.log)",
                crate::storage::server_log::count(*n, "record")
            ),
            Error::Forward(why) => write!(f, "cannot start forwarding: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// The server's bound sockets, before anything else is set up: binding first means a second
/// logmill started by mistake fails before it opens (or writes) any file.
pub struct Listeners {
    tcp: std::net::TcpListener,
    grpc: Option<std::net::TcpListener>,
    udp: Option<mio::net::UdpSocket>,
    ship: Option<std::net::TcpListener>,
    tcp_addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    udp_addr: Option<SocketAddr>,
    ship_addr: Option<SocketAddr>,
}

impl Listeners {
    /// Binds `config.host:config.port`, the gRPC port unless `--tcp-only`, and the UDP port if
    /// given.
    ///
    /// # Errors
    /// [`Error::Bind`], naming the flag of the port that failed.
    pub fn bind(config: &Config) -> Result<Listeners, Error> {
        let bind_error = |port: Port, addr: String| {
            move |source| Error::Bind {
                port,
                addr: addr.clone(),
                source,
            }
        };
        let addr_text = format!("{}:{}", config.host, config.port);
        let tcp_error = bind_error(Port::Tcp, addr_text.clone());
        let addr = addr_text
            .to_socket_addrs()
            .map_err(&tcp_error)?
            .next()
            .ok_or_else(|| tcp_error(io::ErrorKind::AddrNotAvailable.into()))?;
        let tcp = listen(addr).map_err(&tcp_error)?;
        let tcp_addr = tcp.local_addr().map_err(&tcp_error)?;
        let grpc = if config.tcp_only {
            None
        } else {
            let grpc_addr = SocketAddr::new(addr.ip(), config.grpc_port);
            let grpc_error = bind_error(Port::Grpc, grpc_addr.to_string());
            let listener = listen(grpc_addr).map_err(&grpc_error)?;
            let bound = listener.local_addr().map_err(&grpc_error)?;
            Some((listener, bound))
        };
        let udp = match config.udp_port {
            Some(port) => {
                let udp_addr = SocketAddr::new(addr.ip(), port);
                let udp_error = bind_error(Port::Udp, udp_addr.to_string());
                let socket = std::net::UdpSocket::bind(udp_addr).map_err(&udp_error)?;
                socket.set_nonblocking(true).map_err(&udp_error)?;
                let bound = socket.local_addr().map_err(&udp_error)?;
                Some((mio::net::UdpSocket::from_std(socket), bound))
            }
            None => None,
        };
        let ship = match config.ship_port {
            Some(port) => {
                let host = config.ship_host.as_deref().unwrap_or(&config.host);
                let ship_text = format!("{host}:{port}");
                let ship_error = bind_error(Port::Ship, ship_text.clone());
                let ship_addr = ship_text
                    .to_socket_addrs()
                    .map_err(&ship_error)?
                    .next()
                    .ok_or_else(|| ship_error(io::ErrorKind::AddrNotAvailable.into()))?;
                let backlog = i32::try_from(config.ship_backlog).unwrap_or(i32::MAX);
                let listener = listen_with(ship_addr, backlog).map_err(&ship_error)?;
                let bound = listener.local_addr().map_err(&ship_error)?;
                Some((listener, bound))
            }
            None => None,
        };
        let (ship, ship_addr) = ship.map_or((None, None), |(l, a)| (Some(l), Some(a)));
        let (grpc, grpc_addr) = grpc.map_or((None, None), |(l, a)| (Some(l), Some(a)));
        let (udp, udp_addr) = udp.map_or((None, None), |(s, a)| (Some(s), Some(a)));
        Ok(Listeners {
            tcp,
            grpc,
            udp,
            ship,
            tcp_addr,
            grpc_addr,
            udp_addr,
            ship_addr,
        })
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The bound gRPC address, unless `--tcp-only`.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// The bound UDP address, with `--udp-port`.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The bound logship receiver address, unless `--no-ship`.
    pub fn ship_addr(&self) -> Option<SocketAddr> {
        self.ship_addr
    }
}

/// A bound, ready-to-run server. [`Server::new`] does everything that can fail at start-up after
/// binding (opening and repairing the files, building the loops), so an error is reported before
/// any thread runs.
pub struct Server {
    config: Config,
    tcp_addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    udp_addr: Option<SocketAddr>,
    ship_addr: Option<SocketAddr>,
    loops: Vec<EventLoop>,
    writer: Writer,
    ship_writer: Option<ShipWriter>,
    writer_tx: Sender<Command>,
    shared: Arc<Shared>,
    log: Arc<ServerLog>,
}

/// Lets another thread (signal handling, a test) stop the server or reopen its files.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    writer_tx: Sender<Command>,
    log: Arc<ServerLog>,
}

impl Handle {
    /// Stop accepting, store what was received, exit [`Server::run`].
    pub fn shutdown(&self) {
        self.shared.begin_shutdown();
    }

    /// Reopen the record files and `_server.log` (after an external logrotate), and reload the
    /// TLS certificate and key for new connections.
    pub fn reopen(&self) {
        self.log.reopen();
        self.shared.tls().reload(&self.log);
        if self.writer_tx.send(Command::Reopen).is_err() {
            self.log
                .warn(format_args!("SIGHUP: the writer is already stopped"));
        }
    }
}

impl Server {
    /// Binds the ports ([`Listeners::bind`]), then builds the server on them ([`Server::new`]).
    ///
    /// # Errors
    /// [`Error::Bind`], [`Error::Storage`] or [`Error::Setup`], each saying what to change.
    pub fn bind(config: Config, log: Arc<ServerLog>) -> Result<Server, Error> {
        let listeners = Listeners::bind(&config)?;
        Server::new(config, listeners, log)
    }

    /// Opens the storage in `config.dir` and builds `config.workers` loops on `listeners`.
    ///
    /// # Errors
    /// [`Error::Storage`] or [`Error::Setup`], each saying what to change.
    pub fn new(config: Config, listeners: Listeners, log: Arc<ServerLog>) -> Result<Server, Error> {
        let Listeners {
            tcp: listener,
            grpc: grpc_listener,
            mut udp,
            ship: ship_listener,
            tcp_addr,
            grpc_addr,
            udp_addr,
            ship_addr,
        } = listeners;
        // First, before any record file is opened: a secret others can read stops the start.
        let gate = Gate::open(&config).map_err(Error::Secret)?;
        let tls = tls::Tls::load(config.tls.as_ref(), config.tls_handshake_timeout)
            .map_err(Error::Tls)?;
        let workers = config.workers.max(1);
        let mut polls = Vec::with_capacity(workers);
        let mut mailboxes = Vec::with_capacity(workers);
        for _ in 0..workers {
            let poll = Poll::new().map_err(Error::Setup)?;
            let waker = Waker::new(poll.registry(), event_loop::WAKER).map_err(Error::Setup)?;
            mailboxes.push(Mailbox::new(waker));
            polls.push(poll);
        }
        let handoff = Arc::new(Handoff::new(config.max_pending, mailboxes));
        let stats = Arc::new(Stats::default());
        let forward = crate::forward::Forwarders::status_of(&config.forward, &config.dir);
        let retention = forward.retention();
        let shared = Arc::new(
            Shared::new(config.name.clone(), handoff.clone(), stats.clone())
                .with_forward(forward)
                .with_max_input(config.max_input)
                .with_gate(gate)
                .with_cors(config.cors.clone())
                .with_tls(tls),
        );
        let (writer_tx, writer_rx) = mpsc::channel();
        let writer = Writer::open(
            &config,
            handoff,
            stats.clone(),
            log.clone(),
            writer_rx,
            retention,
        )
        .map_err(|source| Error::Storage {
            dir: config.dir.display().to_string(),
            source,
        })?;
        // The HTTP side of the gRPC port: its settings and the admin guard, one for all loops.
        // Admin tokens are checked with the same secret as application tokens (`--secret-file`,
        // or `<dir>/.logmill/secret`); nothing is created under --dir when the port is off.
        let secret_path = (!config.tcp_only).then(|| config.secret_path());
        let web = Arc::new(
            session::http::web::Web::new(
                config.header_timeout,
                config.admin_open,
                secret_path.as_deref(),
            )
            .with_cors(config.cors.clone())
            // The control panel: its sessions, and the admin password read at each login.
            .with_console(session::http::console::Console::new(
                config.dir.clone(),
                config.secret_path(),
                config.admin_password_path(),
                config.console_session_ttl,
            )),
        );
        if let (Some(why), Some(_)) = (web.admin_unavailable(), &secret_path) {
            log.error(format_args!(
                "the HTTP admin API refuses every request: cannot load the secret ({why}); \
                 fix it, or serve it without tokens with --admin-open"
            ));
        }
        // The logship receiver: its directory, and the writer thread its connections hand their
        // bytes to, with one link per loop.
        let (ship_writer, mut ship_links) = match &ship_listener {
            Some(_) => {
                let dir = ship_dir(&config)?;
                let wakes = (0..workers)
                    .map(|id| {
                        let notify = shared.clone();
                        Box::new(move || notify.mailbox(id).wake()) as Box<dyn Fn() + Send>
                    })
                    .collect();
                let (writer, links) =
                    ShipWriter::new(dir, config.fsync, wakes, stats.clone(), log.clone());
                (Some(writer), links.into_iter().map(Some).collect())
            }
            None => (None, Vec::new()),
        };
        let mut loops = Vec::with_capacity(workers);
        for (id, poll) in polls.into_iter().enumerate() {
            let ship = match (
                &ship_listener,
                ship_links.get_mut(id).and_then(Option::take),
            ) {
                (Some(l), Some(link)) => Some((
                    mio::net::TcpListener::from_std(l.try_clone().map_err(Error::Setup)?),
                    link,
                )),
                _ => None,
            };
            let handle =
                mio::net::TcpListener::from_std(listener.try_clone().map_err(Error::Setup)?);
            loops.push(
                EventLoop::new(
                    id,
                    poll,
                    event_loop::Sockets {
                        tcp: handle,
                        grpc: match &grpc_listener {
                            Some(l) => Some(mio::net::TcpListener::from_std(
                                l.try_clone().map_err(Error::Setup)?,
                            )),
                            None => None,
                        },
                        // One socket, one reader: datagrams carry no per-sender order to keep,
                        // and one loop reads them in arrival order.
                        udp: if id == 0 { udp.take() } else { None },
                        web: web.clone(),
                        ship,
                    },
                    &config,
                    writer_tx.clone(),
                    shared.clone(),
                    log.clone(),
                )
                .map_err(Error::Setup)?,
            );
        }
        Ok(Server {
            config,
            tcp_addr,
            grpc_addr,
            udp_addr,
            ship_addr,
            loops,
            writer,
            ship_writer,
            writer_tx,
            shared,
            log,
        })
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The bound gRPC address, unless `--tcp-only`.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// The bound UDP address, with `--udp-port`.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The bound logship receiver address, unless `--no-ship`.
    pub fn ship_addr(&self) -> Option<SocketAddr> {
        self.ship_addr
    }

    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
            writer_tx: self.writer_tx.clone(),
            log: self.log.clone(),
        }
    }

    /// Runs the loops and the writer until [`Handle::shutdown`], then returns once every received
    /// record is written and synced (or the shutdown timeout gave up on a failing disk).
    ///
    /// # Errors
    /// [`Error::LoopFailed`] if a loop died, [`Error::RecordsLost`] if records could not be written.
    pub fn run(self) -> Result<(), Error> {
        let Server {
            config,
            loops,
            writer,
            writer_tx,
            ship_writer,
            log,
            shared,
            ..
        } = self;
        let ship_thread = match ship_writer {
            Some(ship_writer) => Some(
                thread::Builder::new()
                    .name("logmill-ship".into())
                    .spawn(move || ship_writer.run())
                    .map_err(Error::Setup)?,
            ),
            None => None,
        };
        // The loops hold the only other senders; the writer stops on LoopDone from each.
        drop(writer_tx);
        let shutdown_timeout = config.shutdown_timeout;
        // The forwarders read what the writer writes; they start first (a checkpoint or a
        // password file they cannot read stops the start before any thread runs) and stop
        // after it.
        let forwarders = crate::forward::Forwarders::start(
            &config.dir,
            &config.forward,
            shared.forward_status(),
            log.clone(),
        )
        .map_err(Error::Forward)?;
        let writer_thread = thread::Builder::new()
            .name("logmill-writer".into())
            .spawn(move || writer.run(shutdown_timeout))
            .map_err(Error::Setup)?;

        let mut loop_threads = Vec::with_capacity(loops.len());
        for (id, event_loop) in loops.into_iter().enumerate() {
            let thread = thread::Builder::new()
                .name(format!("logmill-loop-{id}"))
                .spawn(move || event_loop.run())
                .map_err(Error::Setup)?;
            loop_threads.push(thread);
        }
        let mut failure = None;
        for thread in loop_threads {
            let result = match thread.join() {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "panicked".to_string(),
            };
            log.error(format_args!("event loop failed: {result}"));
            failure = Some(Error::LoopFailed(result));
        }
        // The loops dropped their links: the ship writer writes what they handed it and stops.
        if let Some(thread) = ship_thread
            && thread.join().is_err()
        {
            log.error(format_args!("the ship writer thread panicked"));
            failure = Some(Error::LoopFailed("the ship writer thread panicked".into()));
        }
        let writer_exit = writer_thread.join();
        forwarders.stop();
        match writer_exit {
            Ok(Exit::Clean) => {}
            Ok(Exit::Lost(n)) => return Err(Error::RecordsLost(n)),
            Err(_) => return Err(Error::LoopFailed("the writer thread panicked".into())),
        }
        failure.map_or(Ok(()), Err)
    }
}

/// The logship receiver's directory, refused when it is the record directory (shipped names
/// would sit beside `_main.log`). It is created by the ship writer with its first file, so a
/// server nobody ships to adds nothing to `--dir`.
fn ship_dir(config: &Config) -> Result<std::path::PathBuf, Error> {
    let dir = config.ship_path();
    let storage_error = |source| Error::Storage {
        dir: dir.display().to_string(),
        source,
    };
    // Not there yet: it cannot be `--dir`, which exists by now (the lock is in it).
    if let Ok(resolved) = dir.canonicalize() {
        if config.dir.canonicalize().is_ok_and(|d| d == resolved) {
            return Err(storage_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the ship directory (--ship-dir) cannot be the record directory (--dir)",
            )));
        }
        if !resolved.is_dir() {
            return Err(storage_error(io::ErrorKind::NotADirectory.into()));
        }
    }
    Ok(dir)
}

/// A nonblocking listening socket with a deep backlog (thousands of clients may connect at once).
fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    listen_with(addr, 4096)
}

fn listen_with(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // Lets a restarted server bind while old connections sit in TIME_WAIT; it does not let two
    // servers listen on one port.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
