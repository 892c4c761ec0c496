//! The `tls` fuzz harness: a server TLS connection (`server::tls`, as a port with ALPN makes
//! it) fed arbitrary bytes through `net::stream::receive_server`, the receiving step every TLS
//! connection of the server takes (rustls's unbuffered API), with the answers written to memory.
//!
//! Its own file, as `http1_harness.rs` is: `fuzz_targets/tls.rs` includes it with `#[path]`,
//! and `tests/tls_fuzz_corpus.rs` includes it to write the seeds and replay the corpus. The
//! certificate is made once per process with `rcgen` (no key is committed).
//!
//! Input layout: byte 0 picks the ALPN flavour (bit 0: the gRPC port's `h2`/`http/1.1`, else
//! none) and the read size (bits 1..8, plus one, times 64 bytes); the rest is what a client
//! sends.
//!
//! Invariants: no panic; each step takes at most one read's worth and never more than was
//! given; what the server answers stays bounded (a handshake flight, alerts), and so does the
//! plaintext held for the reader.

#![allow(dead_code)]

use std::sync::OnceLock;

use logmill::config::TlsFiles;
use logmill::net::stream::{ServerTls, receive_server, take_plaintext};
use logmill::server::tls::{Alpn, Tls};

/// What the server may answer to one input, at most: its handshake flight (certificate
/// included) is a few KiB; alerts are bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// The server's TLS, made once: a fresh CA-less self-signed certificate for `localhost`.
pub fn server_tls() -> &'static Tls {
    static TLS: OnceLock<Tls> = OnceLock::new();
    TLS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("logmill-tls-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("rcgen makes a certificate");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).expect("write the certificate");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write the key");
        let files = TlsFiles::new(cert, key, None);
        let tls = Tls::load(Some(&files), std::time::Duration::from_secs(10))
            .expect("the made certificate loads");
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            eprintln!("could not remove {}: {e}", dir.display());
        }
        tls
    })
}

/// What one input did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TlsOutcome {
    /// Receiving steps taken.
    pub steps: usize,
    /// Bytes the server answered.
    pub answered: usize,
    /// Plaintext the reader got (only after a handshake, which random bytes never finish).
    pub plaintext: usize,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

pub fn tls(data: &[u8]) -> TlsOutcome {
    let Some((&control, stream)) = data.split_first() else {
        return TlsOutcome::default();
    };
    let alpn = if control & 1 == 1 {
        Alpn::Http
    } else {
        Alpn::None
    };
    let read = (usize::from(control >> 1) + 1) * 64;
    let conn = server_tls()
        .unbuffered(alpn)
        .expect("a connection")
        .expect("TLS is on");
    let mut conn = ServerTls::new(conn);
    let mut outcome = TlsOutcome::default();
    let mut answer = Vec::new();
    let mut plain = vec![0u8; 16 * 1024];
    let mut rest = stream;
    while !rest.is_empty() {
        let mut chunk = &rest[..read.min(rest.len())];
        let before = chunk.len();
        let step = receive_server(&mut conn, &mut chunk, &mut answer);
        let taken = before - chunk.len();
        assert!(taken <= before, "a step takes no more than it was given");
        rest = &rest[taken..];
        outcome.steps += 1;
        assert!(
            answer.len() <= MAX_ANSWER,
            "answered {} bytes",
            answer.len()
        );
        match step {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                outcome.error = Some(e.to_string());
                break;
            }
        }
        loop {
            match take_plaintext(&mut conn, &mut plain) {
                0 => break,
                n => outcome.plaintext += n,
            }
        }
        if taken == 0 {
            break;
        }
    }
    outcome.answered = answer.len();
    outcome
}
