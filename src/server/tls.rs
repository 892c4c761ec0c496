//! TLS for the server's ports: the certificate and key (`--tls-cert`, `--tls-key`), client
//! certificates (`--tls-client-ca`), their reload at `SIGHUP`, and the handshake failures'
//! count and log. The bytes themselves go through `net::stream` (rustls sans-IO) inside each
//! connection; this file only decides what a new connection's TLS is made of.
//!
//! - **One port, one mode.** With `--tls-cert` every TCP port speaks TLS only: the native port,
//!   the gRPC port (ALPN `http/1.1` first, then `h2`: gRPC clients offer only `h2`, browsers
//!   both; so gRPC, gRPC-Web, OTLP/HTTP, WebSocket and the console) and any port accepted through [`Tls::stream`]. A client whose first byte is not a
//!   TLS handshake record (0x16) is closed at once, logged and counted
//!   (`net::stream::TlsFailure::NotTls`); the server does not sniff and serve plain bytes on a
//!   TLS port, so a misconfigured client fails loudly instead of sending secrets in the clear.
//! - **Versions**: TLS 1.3 and 1.2 only; rustls has no older ones.
//! - **Provider**: ring (see README, "TLS": builds with a C compiler alone).
//! - **Reload**: [`Tls::reload`] reads the files again and swaps the configuration new
//!   connections take; connections already open keep theirs. A file that does not load is
//!   refused with a log line saying why, and the old configuration stays.
//! - **Failures**: a failed or timed-out handshake is counted (`/metrics`
//!   `logmill_connections_refused_total{reason="tls_handshake"}`, `health`'s `tls_failed=`) and
//!   logged at most once a minute per peer address ([`FailureLog`]).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::TlsFiles;
use crate::net::stream::Stream;
use crate::stats::Stats;
use crate::storage::server_log::ServerLog;

/// What a port offers in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// Nothing: a port with one protocol of its own (native, ship).
    None,
    /// `http/1.1`, then `h2`: the gRPC port, whose detection then looks at the decrypted bytes.
    Http,
}

/// Why the TLS files could not be used. Each names the file and the flag.
#[derive(Debug)]
pub enum TlsError {
    Read {
        flag: &'static str,
        path: String,
        source: io::Error,
    },
    /// The file holds no PEM block of the kind the flag needs.
    Empty { flag: &'static str, path: String },
    /// rustls refused the certificate, the key or the CA (a key that does not match the
    /// certificate, say).
    Rejected { flag: &'static str, why: String },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { flag, path, source } => write!(f, "{flag} {path}: {source}"),
            TlsError::Empty { flag, path } => write!(
                f,
                "{flag} {path}: no PEM {} found",
                if *flag == "--tls-key" {
                    "private key"
                } else {
                    "certificate"
                }
            ),
            TlsError::Rejected { flag, why } => write!(f, "{flag}: {why}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The configurations new connections take, one per [`Alpn`].
#[derive(Clone)]
struct Configs {
    plain: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
}

/// The server's TLS: off, or the files and the configurations made from them.
pub struct Tls {
    files: Option<TlsFiles>,
    /// Read by every accept (a clone of an `Arc`), written by a reload.
    current: RwLock<Option<Configs>>,
    handshake_timeout: Duration,
    failures: FailureLog,
}

impl Tls {
    /// No TLS: every port speaks plain TCP.
    pub fn off() -> Tls {
        Tls {
            files: None,
            current: RwLock::new(None),
            handshake_timeout: crate::config::defaults::TLS_HANDSHAKE_TIMEOUT,
            failures: FailureLog::default(),
        }
    }

    /// Loads `files` (if any): the server does not start on files that do not load.
    ///
    /// # Errors
    /// [`TlsError`], naming the file and its flag.
    pub fn load(files: Option<&TlsFiles>, handshake_timeout: Duration) -> Result<Tls, TlsError> {
        let current = files.map(build).transpose()?;
        Ok(Tls {
            files: files.cloned(),
            current: RwLock::new(current),
            handshake_timeout,
            failures: FailureLog::default(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.files.is_some()
    }

    /// Client certificates are required (`--tls-client-ca`).
    pub fn mutual(&self) -> bool {
        self.files.as_ref().is_some_and(|f| f.client_ca().is_some())
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The stream a newly accepted `tcp` socket is served through: TLS with the current
    /// configuration when TLS is on, else plain. Serving TLS on one more port is this call in
    /// its accept.
    ///
    /// # Errors
    /// rustls could not start a connection (it does not, with a configuration that loaded).
    pub fn stream(&self, alpn: Alpn, tcp: TcpStream) -> io::Result<Stream> {
        match self.unbuffered(alpn)? {
            Some(conn) => Ok(Stream::tls_server(tcp, conn)),
            None => Ok(Stream::plain(tcp)),
        }
    }

    /// A new server connection on rustls's unbuffered API (what [`stream`](Self::stream)
    /// serves through); `None` when TLS is off.
    ///
    /// # Errors
    /// As [`stream`](Self::stream).
    pub fn unbuffered(
        &self,
        alpn: Alpn,
    ) -> io::Result<Option<rustls::server::UnbufferedServerConnection>> {
        let Some(config) = self.config(alpn) else {
            return Ok(None);
        };
        rustls::server::UnbufferedServerConnection::new(config)
            .map(Some)
            .map_err(io::Error::other)
    }

    /// The current configuration for `alpn`; `None` when TLS is off.
    fn config(&self, alpn: Alpn) -> Option<Arc<rustls::ServerConfig>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().map(|configs| match alpn {
            Alpn::None => configs.plain.clone(),
            Alpn::Http => configs.http.clone(),
        })
    }

    /// Reads the files again (`SIGHUP`): new connections take the new certificate, open ones
    /// keep theirs. Files that do not load are refused and logged; the old ones stay in use.
    pub fn reload(&self, log: &ServerLog) {
        let Some(files) = &self.files else {
            return;
        };
        match build(files) {
            Ok(configs) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(configs);
                log.info(format_args!(
                    "SIGHUP: TLS certificate {} and key {} reloaded; new connections use them",
                    files.cert().display(),
                    files.key().display()
                ));
            }
            Err(e) => log.error(format_args!(
                "SIGHUP: TLS reload refused, {e}; the certificate loaded before stays in use"
            )),
        }
    }

    /// A handshake with `peer` failed (`why`) or did not finish in time: counts it, and logs it
    /// unless this address was logged within the last minute.
    pub fn handshake_failed(
        &self,
        peer: SocketAddr,
        why: &dyn fmt::Display,
        stats: &Stats,
        log: &ServerLog,
    ) {
        let count = stats.tls_failure();
        if self.failures.should_log(peer.ip(), Instant::now()) {
            log.warn(format_args!(
                "TLS connection from {peer}: handshake failed, {why}; closed ({} so far; \
                 logged at most once a minute per address)",
                crate::storage::server_log::count(count, "failed handshake")
            ));
        }
    }
}

/// Reads the PEM files and builds both configurations.
fn build(files: &TlsFiles) -> Result<Configs, TlsError> {
    let certs = read_certs("--tls-cert", files.cert())?;
    let key = read_key(files.key())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rejected {
            flag: "--tls-cert",
            why: e.to_string(),
        })?;
    let builder = match files.client_ca() {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in read_certs("--tls-client-ca", path)? {
                roots.add(ca).map_err(|e| TlsError::Rejected {
                    flag: "--tls-client-ca",
                    why: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Rejected {
                    flag: "--tls-client-ca",
                    why: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let plain = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rejected {
            flag: "--tls-key",
            why: format!("{e} (does the key belong to the certificate?)"),
        })?;
    let mut plain = plain;
    // No TLS 1.3 session tickets. A server sends them right after the handshake, unasked; a
    // client that only writes and then closes (Python's `SocketHandler`, `logmill send`) never
    // reads them, and closing a socket with unread input makes its kernel send a reset, which
    // can destroy the client's last records before the server reads them (measured: all of
    // them, with a three-record SocketHandler). Resumption would save one round trip per
    // reconnect, which long-lived log connections rarely make.
    plain.send_tls13_tickets = 0;
    let mut http = plain.clone();
    // rustls picks the first of ours the client offers: a client offering both (a browser,
    // curl) gets HTTP/1.1, which serves everything the port serves (the console, gRPC-Web,
    // WebSocket, OTLP/HTTP); a gRPC client offers only h2 and gets it. Preferring h2 would put
    // browsers on the port's HTTP/2 side, which serves gRPC only.
    http.alpn_protocols = vec![b"http/1.1".to_vec(), b"h2".to_vec()];
    Ok(Configs {
        plain: Arc::new(plain),
        http: Arc::new(http),
    })
}

/// The certificates of a PEM file, in order.
///
/// # Errors
/// [`TlsError::Read`] or [`TlsError::Empty`].
pub fn read_certs(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |source: io::Error| TlsError::Read {
        flag,
        path: path.display().to_string(),
        source,
    };
    let pem = std::fs::read(path).map_err(read_error)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            flag,
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let flag = "--tls-key";
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.display().to_string(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::Empty {
        flag,
        path: path.display().to_string(),
    })
}

/// When each peer address's failed handshake was last logged: one line a minute per address,
/// so a client retrying in a loop (or a scanner) cannot flood `_server.log`.
#[derive(Default)]
struct FailureLog {
    logged: Mutex<HashMap<IpAddr, Instant>>,
}

/// Log a peer's failures at most this often.
const FAILURES_LOGGED_EVERY: Duration = Duration::from_secs(60);

/// Addresses remembered at most: past it, entries older than a minute are dropped, and if all
/// are recent, new addresses are not logged until some expire (the count still grows).
const FAILURE_ADDRESSES: usize = 4096;

impl FailureLog {
    fn should_log(&self, ip: IpAddr, now: Instant) -> bool {
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = logged.get(&ip)
            && now.duration_since(*at) < FAILURES_LOGGED_EVERY
        {
            return false;
        }
        if logged.len() >= FAILURE_ADDRESSES && !logged.contains_key(&ip) {
            logged.retain(|_, at| now.duration_since(*at) < FAILURES_LOGGED_EVERY);
            if logged.len() >= FAILURE_ADDRESSES {
                return false;
            }
        }
        logged.insert(ip, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_logged_once_a_minute_per_address() {
        let log = FailureLog::default();
        let t0 = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(log.should_log(a, t0));
        assert!(!log.should_log(a, t0 + Duration::from_secs(59)));
        assert!(log.should_log(b, t0 + Duration::from_secs(1)));
        assert!(log.should_log(a, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn the_address_table_is_bounded() {
        let log = FailureLog::default();
        let t0 = Instant::now();
        for i in 0..FAILURE_ADDRESSES as u32 {
            assert!(log.should_log(IpAddr::from(i.to_be_bytes()), t0));
        }
        let newcomer = IpAddr::from([255, 255, 255, 255]);
        assert!(!log.should_log(newcomer, t0), "full of recent addresses");
        assert!(log.should_log(newcomer, t0 + FAILURES_LOGGED_EVERY));
        assert!(log.logged.lock().unwrap().len() <= FAILURE_ADDRESSES);
    }

    #[test]
    fn missing_files_name_their_flag() {
        let files = TlsFiles::new(
            "/nonexistent/cert.pem".into(),
            "/nonexistent/key.pem".into(),
            None,
        );
        let e = Tls::load(Some(&files), Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("--tls-cert /nonexistent/cert.pem"),
            "{e}"
        );
    }
}
