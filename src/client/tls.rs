//! TLS for the clients (`logmill send`/`pipe`, `Logger`, `logmill bench`): a rustls client
//! configuration that trusts the CA file given with `--ca`, TLS 1.3 and 1.2, the ring provider
//! (as the server, `server::tls`). The server is checked against the name the client
//! connects to ([`server_name`]).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A client configuration trusting the certificates of the PEM file `ca`.
///
/// # Errors
/// The file cannot be read, holds no certificate, or one rustls refuses, said in words.
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    Ok(Arc::new(trusting(ca)?.with_no_client_auth()))
}

/// As [`client_config`], presenting the certificate chain of the PEM file `cert` (leaf first)
/// with its key `key` to a server that asks for one (`--tls-client-ca`).
///
/// # Errors
/// As [`client_config`], and for `cert` and `key`, each named.
pub fn client_config_with_cert(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = trusting(ca).map_err(|e| format!("--ca {}: {e}", ca.display()))?;
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--cert {}: no PEM certificate in it",
            cert.display()
        ));
    }
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--key {}: {e}", key.display()))?;
    let config = builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("--cert/--key: {e} (does the key belong to the certificate?)"))?;
    Ok(Arc::new(config))
}

/// The configuration's first steps: TLS 1.3 and 1.2, ring, the roots of the PEM file `ca`.
fn trusting(
    ca: &Path,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, String> {
    let pem = std::fs::read(ca).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots))
}

/// The name the server's certificate must carry: the host of `addr` (`HOST:PORT`), an IP
/// address or a DNS name; `localhost` if it has none that parses.
pub fn server_name(addr: &str) -> ServerName<'static> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::try_from("localhost").expect("a valid DNS name"))
}

/// A client connection to `addr` (see [`server_name`]).
///
/// # Errors
/// rustls could not start one (it does not, with a configuration that built).
pub fn connection(
    config: &Arc<rustls::ClientConfig>,
    addr: &str,
) -> Result<rustls::ClientConnection, rustls::Error> {
    rustls::ClientConnection::new(config.clone(), server_name(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_host_of_the_address() {
        assert_eq!(
            server_name("localhost:4020"),
            ServerName::try_from("localhost").unwrap()
        );
        assert_eq!(
            server_name("127.0.0.1:4020"),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            server_name("[::1]:4020"),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name("logs.example.com:1"),
            ServerName::try_from("logs.example.com").unwrap()
        );
    }
}

/// A blocking connection, plain or TLS, that two threads may share as the
/// [`Logger`](super::Logger) does (one writes records, one reads acks): [`try_clone`] gives a
/// second handle on the same socket and, for TLS, the same rustls state behind a mutex. The
/// reading side waits for the socket without the lock and takes it only to hand rustls what
/// arrived, so a reader blocked on a quiet socket never holds up the writer.
///
/// [`try_clone`]: Socket::try_clone
#[derive(Debug)]
pub struct Socket {
    tcp: std::net::TcpStream,
    tls: Option<Arc<std::sync::Mutex<rustls::ClientConnection>>>,
}

impl Socket {
    pub fn plain(tcp: std::net::TcpStream) -> Socket {
        Socket { tcp, tls: None }
    }

    /// TLS over `tcp`, with the handshake done before it returns (bounded by `tcp`'s
    /// timeouts).
    ///
    /// # Errors
    /// The handshake failed: the server's certificate is not trusted, or it does not speak TLS.
    pub fn tls(
        mut tcp: std::net::TcpStream,
        config: &Arc<rustls::ClientConfig>,
        addr: &str,
    ) -> std::io::Result<Socket> {
        let mut conn = connection(config, addr).map_err(std::io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(Socket {
            tcp,
            tls: Some(Arc::new(std::sync::Mutex::new(conn))),
        })
    }

    pub fn tcp(&self) -> &std::net::TcpStream {
        &self.tcp
    }

    /// A second handle on the same connection (see the type's documentation).
    ///
    /// # Errors
    /// As [`std::net::TcpStream::try_clone`].
    pub fn try_clone(&self) -> std::io::Result<Socket> {
        Ok(Socket {
            tcp: self.tcp.try_clone()?,
            tls: self.tls.clone(),
        })
    }

    fn lock(
        tls: &std::sync::Mutex<rustls::ClientConnection>,
    ) -> std::sync::MutexGuard<'_, rustls::ClientConnection> {
        tls.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::io::Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::ErrorKind;
        let Some(tls) = &self.tls else {
            return self.tcp.read(buf);
        };
        let mut cipher = [0u8; 16 * 1024];
        loop {
            {
                let mut conn = Socket::lock(tls);
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            // Wait for the socket without the lock: the writer goes on meanwhile.
            let n = self.tcp.read(&mut cipher)?;
            if n == 0 {
                return Ok(0);
            }
            let mut conn = Socket::lock(tls);
            let mut arrived = &cipher[..n];
            while !arrived.is_empty() {
                conn.read_tls(&mut arrived)?;
                conn.process_new_packets()
                    .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
            }
            while conn.wants_write() {
                conn.write_tls(&mut self.tcp)?;
            }
        }
    }
}

impl std::io::Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.tcp.write(buf);
        };
        let mut conn = Socket::lock(tls);
        let n = conn.writer().write(buf)?;
        while conn.wants_write() {
            conn.write_tls(&mut self.tcp)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(tls) = &self.tls {
            let mut conn = Socket::lock(tls);
            while conn.wants_write() {
                conn.write_tls(&mut self.tcp)?;
            }
        }
        Ok(())
    }
}

/// `--tls` and `--ca FILE`, as `logmill send` and `logmill pipe` take them.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// Connect over TLS (the server runs with --tls-cert); its certificate is checked against
    /// the host of --addr.
    #[arg(long, requires = "ca")]
    tls: bool,
    /// With --tls: the CA certificate (PEM) the server's certificate must chain to.
    #[arg(long, value_name = "FILE", requires = "tls")]
    ca: Option<std::path::PathBuf>,
}

impl TlsArgs {
    /// `options` with TLS to `addr` when `--tls` was given.
    ///
    /// # Errors
    /// The CA file cannot be used, said with its name.
    pub fn apply(
        &self,
        options: super::framing::ClientOptions,
        addr: &str,
    ) -> Result<super::framing::ClientOptions, String> {
        match &self.ca {
            Some(ca) if self.tls => {
                let config =
                    client_config(ca).map_err(|e| format!("--ca {}: {e}", ca.display()))?;
                Ok(options.tls(config, addr))
            }
            _ => Ok(options),
        }
    }
}
