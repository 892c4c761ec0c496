//! Seeds for `fuzz/corpus/ship/`, what each must read as (`seeds_read_as_intended`), and the
//! replay of the whole corpus through the harness the `ship` fuzz target runs. To rewrite the
//! seeds: `LOGMILL_WRITE_CORPUS=1 cargo test --test ship_fuzz_corpus`.

#[path = "common/corpus.rs"]
mod corpus;

#[path = "../fuzz/ship_harness.rs"]
mod ship_harness;

use logmill::protocol::ship::{Answer, NameError, OffsetError};

/// Byte 0: the prefix step minus one.
fn input(step: u8, stream: &[u8]) -> Vec<u8> {
    let mut data = vec![step - 1];
    data.extend_from_slice(stream);
    data
}

type Seed = (
    &'static str,
    Vec<u8>,
    Result<Option<String>, NameError>,
    Result<Option<Answer>, OffsetError>,
);

fn seeds() -> Vec<Seed> {
    let mut long_name = vec![b'a'; 255];
    long_name.push(b'\n');
    let mut no_newline = vec![b'7'; 300];
    no_newline.push(b'\n');
    vec![
        ("seed-empty", input(1, b""), Ok(None), Ok(None)),
        (
            "seed-name",
            input(1, b"app.log\nDATA"),
            Ok(Some("app.log".into())),
            Err(OffsetError::NotANumber),
        ),
        (
            "seed-offset",
            input(2, b"1234\n"),
            Ok(Some("1234".into())),
            Ok(Some(Answer::Offset(1234))),
        ),
        (
            "seed-max-offset",
            input(5, b"18446744073709551615\n"),
            Ok(Some("18446744073709551615".into())),
            Ok(Some(Answer::Offset(u64::MAX))),
        ),
        (
            "seed-overflow",
            input(20, b"18446744073709551616\n"),
            Ok(Some("18446744073709551616".into())),
            Err(OffsetError::Overflow),
        ),
        (
            "seed-refusal",
            input(3, b"error: a.log is being shipped by another connection\n"),
            Ok(Some(
                "error: a.log is being shipped by another connection".into(),
            )),
            Ok(Some(Answer::Refused(
                "a.log is being shipped by another connection".into(),
            ))),
        ),
        (
            "seed-traversal",
            input(4, b"../../etc/passwd\n"),
            Err(NameError::Slash),
            Err(OffsetError::NotANumber),
        ),
        (
            "seed-dotdot",
            input(1, b"a..b\n"),
            Err(NameError::DotDot),
            Err(OffsetError::NotANumber),
        ),
        (
            "seed-nul",
            input(1, b"a\0b\n"),
            Err(NameError::Control),
            Err(OffsetError::NotANumber),
        ),
        (
            "seed-not-utf8",
            input(2, b"\xff\xfe\n"),
            Err(NameError::NotUtf8),
            Err(OffsetError::NotANumber),
        ),
        (
            "seed-reserved",
            input(9, b"_main.log\n"),
            Err(NameError::Reserved),
            Err(OffsetError::NotANumber),
        ),
        (
            "seed-longest-name",
            input(64, &long_name),
            Ok(Some("a".repeat(255))),
            Err(OffsetError::NotANumber),
        ),
        (
            "seed-endless-line",
            input(100, &no_newline),
            Err(NameError::LineTooLong),
            Err(OffsetError::TooLong),
        ),
    ]
}

#[test]
fn seeds_read_as_intended() {
    for (name, data, want_name, want_answer) in seeds() {
        let outcome = ship_harness::ship(&data);
        assert_eq!(
            (outcome.name, outcome.answer),
            (want_name, want_answer),
            "{name}"
        );
    }
}

#[test]
fn seed_corpus_is_current() {
    let seeds = seeds();
    corpus::check_seeds(
        "ship",
        "ship_fuzz_corpus",
        seeds
            .iter()
            .map(|(name, data, _, _)| (*name, data.as_slice())),
    );
}

#[test]
fn corpus_replays_without_a_broken_invariant() {
    corpus::replay("ship", |data| {
        ship_harness::ship(data);
    });
}
