//! The `tls` fuzz target's corpus (`fuzz/corpus/tls/`), replayed through its harness, and its
//! seeds: real ClientHellos (TLS 1.3 and 1.2 only, with and without ALPN) made by a rustls
//! client, cut short, corrupted, and a plain client's bytes. A ClientHello carries fresh random
//! bytes, so the seeds are written only on request: `LOGMILL_WRITE_CORPUS=1 cargo test --test
//! tls_fuzz_corpus`; the replay runs every time.

#[path = "common/corpus.rs"]
mod corpus;

#[path = "../fuzz/tls_harness.rs"]
mod tls_harness;

use std::sync::Arc;

/// A ClientHello (the first flight) from a rustls client offering `versions` and `alpn`.
fn client_hello(versions: &[&'static rustls::SupportedProtocolVersion], alpn: &[&[u8]]) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let tls13 = client_hello(&[&rustls::version::TLS13], &[b"h2", b"http/1.1"]);
    let tls12 = client_hello(&[&rustls::version::TLS12], &[]);
    let both = client_hello(
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"h2"],
    );
    let mut corrupt = tls13.clone();
    corrupt[5] = 0x02; // a ServerHello where the ClientHello must be
    let mut huge_length = tls13.clone();
    huge_length[3] = 0xff;
    huge_length[4] = 0xff;
    let with = |control: u8, bytes: &[u8]| {
        let mut input = vec![control];
        input.extend_from_slice(bytes);
        input
    };
    vec![
        ("seed-tls13-alpn".into(), with(1, &tls13)),
        ("seed-tls13-alpn-small-reads".into(), with(0, &tls13)),
        ("seed-tls12".into(), with(0, &tls12)),
        ("seed-both-versions".into(), with(255, &both)),
        ("seed-cut-short".into(), with(1, &tls13[..tls13.len() / 2])),
        ("seed-header-only".into(), with(0, &tls13[..5])),
        ("seed-corrupt".into(), with(1, &corrupt)),
        ("seed-huge-length".into(), with(0, &huge_length)),
        ("seed-plain-health".into(), with(0, b"health\n")),
        ("seed-plain-http".into(), with(1, b"GET / HTTP/1.1\r\n\r\n")),
        (
            "seed-hello-twice".into(),
            with(1, &[tls13.clone(), tls13].concat()),
        ),
        ("seed-empty".into(), vec![]),
    ]
}

#[test]
fn tls_corpus_replays_without_panic() {
    if std::env::var_os("LOGMILL_WRITE_CORPUS").is_some() {
        let dir = corpus::dir("tls");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds() {
            std::fs::write(dir.join(name), data).unwrap();
        }
    }
    corpus::replay("tls", |data| {
        tls_harness::tls(data);
    });
}

/// The seeds do what they are there for: a real ClientHello gets the server's answer, a plain
/// client's bytes and a corrupted hello are refused.
#[test]
fn seeds_reach_the_states_they_are_for() {
    let seeds: std::collections::HashMap<String, Vec<u8>> = seeds().into_iter().collect();
    let answered = tls_harness::tls(&seeds["seed-tls13-alpn"]);
    assert!(
        answered.answered > 0 && answered.error.is_none(),
        "{answered:?}"
    );
    let tls12 = tls_harness::tls(&seeds["seed-tls12"]);
    assert!(tls12.answered > 0 && tls12.error.is_none(), "{tls12:?}");
    for refused in ["seed-plain-health", "seed-corrupt"] {
        let outcome = tls_harness::tls(&seeds[refused]);
        assert!(outcome.error.is_some(), "{refused}: {outcome:?}");
    }
    let cut = tls_harness::tls(&seeds["seed-cut-short"]);
    assert!(
        cut.answered == 0 && cut.error.is_none(),
        "waits for the rest: {cut:?}"
    );
}
