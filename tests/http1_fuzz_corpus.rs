//! Seeds for `fuzz/corpus/http1/`, and what each must read as (`seeds_read_as_intended`); the
//! corpus itself is replayed with every other target's by `tests/fuzz_corpus.rs`. To rewrite
//! the seeds: `LOGMILL_WRITE_CORPUS=1 cargo test --test http1_fuzz_corpus`.

#[path = "common/corpus.rs"]
mod corpus;

#[path = "../fuzz/http1_harness.rs"]
mod http1_harness;

use logmill::protocol::http1::Error;

/// Byte 0 of an input: the body limit's index in `MAX_BODIES` and the read size.
fn input(max_index: u8, read: u8, stream: &[u8]) -> Vec<u8> {
    assert!(max_index < 8 && (1..=32).contains(&read));
    let mut data = vec![max_index | ((read - 1) << 3)];
    data.extend_from_slice(stream);
    data
}

/// (file name, input, requests read, the error if any).
fn seeds() -> Vec<(&'static str, Vec<u8>, usize, Option<Error>)> {
    let big_head = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(17_000));
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: 1\r\n".repeat(101));
    let mut long_target = b"GET ".to_vec();
    long_target.extend_from_slice(&[b'a'; 16_500]);
    long_target.extend_from_slice(b"\x01 HTTP/1.1\r\n\r\n");
    vec![
        ("seed-empty", input(0, 1, b""), 0, None),
        (
            "seed-get",
            input(7, 1, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            1,
            None,
        ),
        (
            "seed-pipelined",
            input(
                7,
                7,
                b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
                  GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /d",
            ),
            3,
            None,
        ),
        (
            "seed-chunked",
            input(
                5,
                3,
                b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                  4;name=value\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: 1\r\n\r\n",
            ),
            1,
            None,
        ),
        (
            "seed-continue",
            input(
                4,
                16,
                b"POST /p HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
            ),
            1,
            None,
        ),
        (
            "seed-body-too-large",
            input(2, 9, b"POST /p HTTP/1.1\r\nContent-Length: 6\r\n\r\nsixsix"),
            0,
            Some(Error::BodyTooLarge { limit: 5 }),
        ),
        (
            "seed-chunks-too-large",
            input(
                2,
                2,
                b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\n",
            ),
            0,
            Some(Error::BodyTooLarge { limit: 5 }),
        ),
        (
            "seed-head-too-large",
            input(7, 32, big_head.as_bytes()),
            0,
            Some(Error::HeadTooLarge),
        ),
        (
            "seed-too-many-headers",
            input(7, 32, many.as_bytes()),
            0,
            Some(Error::TooManyHeaders),
        ),
        (
            // Found by the fuzzer: a bad byte past the head limit made the answer depend on
            // how the bytes arrived (400 read whole, 431 a read at a time).
            "seed-bad-byte-past-the-head-limit",
            input(7, 32, &long_target),
            0,
            Some(Error::HeadTooLarge),
        ),
        (
            "seed-smuggling",
            input(
                7,
                5,
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            0,
            Some(Error::Malformed(
                "both Content-Length and Transfer-Encoding",
            )),
        ),
        (
            "seed-garbage",
            input(7, 1, b"\x00\x00\x00\x10garbage\r\n\r\n"),
            0,
            Some(Error::Malformed("invalid method or token")),
        ),
        (
            "seed-overflowing-chunk",
            input(
                7,
                4,
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
            ),
            0,
            Some(Error::Malformed("bad chunk size line")),
        ),
    ]
}

#[test]
fn seeds_read_as_intended() {
    for (name, data, requests, error) in seeds() {
        let outcome = http1_harness::http1(&data);
        assert_eq!(
            (outcome.requests.len(), &outcome.error),
            (requests, &error),
            "{name}: {outcome:?}"
        );
    }
}

/// Writes the seeds when `LOGMILL_WRITE_CORPUS` is set; otherwise checks the committed ones are
/// current.
#[test]
fn seed_corpus_is_current() {
    let seeds = seeds();
    corpus::check_seeds(
        "http1",
        "http1_fuzz_corpus",
        seeds
            .iter()
            .map(|(name, data, _, _)| (*name, data.as_slice())),
    );
}
