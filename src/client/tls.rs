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
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
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
