//! Certificates made at test time with `rcgen` (never committed keys): a CA, server
//! certificates for `localhost` and `127.0.0.1` it signs, client certificates with a CN, and
//! rustls clients that trust the CA, for the TLS tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::DEADLINE;

/// A certificate authority whose certificate is written to `<dir>/<name>-ca.pem`.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem_path: PathBuf,
}

/// A certificate and its key, written as PEM files.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
    /// Base64 of the SHA-256 of the key's SubjectPublicKeyInfo: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes.
    pub spki_sha256: String,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem_path, issuer.pem()).unwrap();
        Ca { issuer, pem_path }
    }

    /// A server certificate for `localhost` and 127.0.0.1, as `<dir>/<name>.pem` and its key.
    pub fn server(&self, dir: &Path, name: &str) -> Leaf {
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        self.sign(dir, name, params)
    }

    /// A client certificate whose subject CN is `cn`; `expired`: valid only in the past.
    pub fn client(&self, dir: &Path, name: &str, cn: &str, expired: bool) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        self.sign(dir, name, params)
    }

    fn sign(&self, dir: &Path, name: &str, mut params: CertificateParams) -> Leaf {
        // OpenSSL 3's strict verification (Python 3.13's default context) wants it.
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}-key.pem")),
            der: cert.der().clone(),
            spki_sha256: {
                use base64::Engine as _;
                use rcgen::PublicKeyData as _;
                use sha2::Digest as _;
                base64::engine::general_purpose::STANDARD
                    .encode(sha2::Sha256::digest(key.subject_public_key_info()))
            },
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }

    /// A rustls client configuration trusting this CA, with `client` as its certificate.
    pub fn client_config(&self, client: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some(leaf) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_file(&leaf.cert).unwrap()],
                    PrivateKeyDer::from_pem_file(&leaf.key).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

/// A blocking TLS connection to `addr` (from `source`, a loopback address of its own, when
/// given: failures are logged once a minute per address), handshake done.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects and completes the handshake.
///
/// # Errors
/// The handshake's error (a refused client certificate shows here or at the first read).
pub fn connect(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    source: Option<&str>,
) -> std::io::Result<TlsStream> {
    let tcp = match source {
        Some(ip) => {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            let from: SocketAddr = format!("{ip}:0").parse().unwrap();
            socket.bind(&from.into())?;
            socket.connect(&addr.into())?;
            TcpStream::from(socket)
        }
        None => TcpStream::connect(addr)?,
    };
    tcp.set_read_timeout(Some(DEADLINE))?;
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// `health` over TLS: the answer line, or the error (a refused client certificate).
///
/// # Errors
/// What the connection failed with.
pub fn health(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    source: Option<&str>,
) -> std::io::Result<String> {
    let mut stream = connect(config, addr, source)?;
    stream.write_all(b"health\n")?;
    stream.flush()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}
