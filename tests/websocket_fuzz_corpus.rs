//! The `websocket` fuzz target's corpus under `cargo test`: every file of
//! `fuzz/corpus/websocket/` replayed through the harness the target runs
//! (`fuzz/websocket_harness.rs`), and the seeds, made from the real encoder, checked to decode
//! to what their names say. To rewrite the seeds after a change:
//! `LOGMILL_WRITE_CORPUS=1 cargo test --test websocket_fuzz_corpus`.

#[path = "common/corpus.rs"]
mod corpus;

#[path = "../fuzz/websocket_harness.rs"]
mod websocket_harness;

use logmill::protocol::websocket::{Error, Opcode, encode_client_frame};
use websocket_harness::{End, Owned, WebSocketOutcome, input};

#[test]
fn replay_fuzz_corpus() {
    corpus::replay("websocket", |data| {
        websocket_harness::websocket(data);
    });
}

/// Indexes into `MAX_MESSAGES`.
const LIMIT_5: u8 = 2;
const LIMIT_125: u8 = 3;
const LIMIT_1000: u8 = 5;
const LIMIT_1_MIB: u8 = 7;

fn frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_client_frame(fin, opcode, [0x12, 0x34, 0x56, 0x78], payload, &mut out);
    out
}

fn frames(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn done(messages: Vec<Owned>) -> impl Fn(&WebSocketOutcome) -> bool {
    move |o| {
        o.messages == messages
            && o.end
                == End::Waiting {
                    buffered: 0,
                    held: 0,
                }
    }
}

fn fails(error: Error) -> impl Fn(&WebSocketOutcome) -> bool {
    move |o| o.end == End::Error(error)
}

type Check = Box<dyn Fn(&WebSocketOutcome) -> bool>;

/// (file name, input, what it must decode to).
fn seeds() -> Vec<(&'static str, Vec<u8>, Check)> {
    let json = br#"{"msg":"hello","level":"info"}"#;
    let array = br#"[{"msg":"a"},{"msg":"b"}]"#;
    vec![
        (
            "seed-text",
            input(LIMIT_1000, 3, &frame(true, Opcode::Text, json)),
            Box::new(done(vec![Owned::Text(
                String::from_utf8(json.to_vec()).unwrap(),
            )])),
        ),
        (
            "seed-fragments-and-ping",
            input(
                LIMIT_1000,
                5,
                &frames(&[
                    frame(false, Opcode::Text, &array[..7]),
                    frame(true, Opcode::Ping, b"ping"),
                    frame(false, Opcode::Continuation, &array[7..]),
                    frame(true, Opcode::Continuation, b""),
                ]),
            ),
            Box::new(done(vec![
                Owned::Ping(b"ping".to_vec()),
                Owned::Text(String::from_utf8(array.to_vec()).unwrap()),
            ])),
        ),
        (
            "seed-binary-16bit-length",
            input(LIMIT_1000, 32, &frame(true, Opcode::Binary, &[7; 300])),
            Box::new(done(vec![Owned::Binary(vec![7; 300])])),
        ),
        // A 64-bit length, its frame cut short: a 64 KiB seed would raise libFuzzer's input
        // length for every run.
        (
            "seed-binary-64bit-length-waiting",
            input(
                LIMIT_1_MIB,
                32,
                &frame(true, Opcode::Binary, &[1; 65_536])[..30],
            ),
            Box::new(|o: &WebSocketOutcome| {
                o.messages.is_empty()
                    && o.end
                        == End::Waiting {
                            buffered: 30,
                            held: 0,
                        }
            }),
        ),
        (
            "seed-binary-64bit-length-too-big",
            input(
                LIMIT_1000,
                4,
                &frame(true, Opcode::Binary, &[1; 65_536])[..14],
            ),
            Box::new(fails(Error::TooBig {
                len: 65_536,
                max: 1000,
            })),
        ),
        (
            "seed-close-with-reason",
            input(
                LIMIT_125,
                1,
                &frames(&[
                    frame(true, Opcode::Pong, b""),
                    frame(true, Opcode::Close, b"\x03\xe8bye \xc3\xa9"),
                ]),
            ),
            Box::new(done(vec![
                Owned::Pong(vec![]),
                Owned::Close(Some((1000, "bye é".into()))),
            ])),
        ),
        (
            "seed-unmasked",
            input(LIMIT_125, 2, b"\x81\x02hi"),
            Box::new(fails(Error::Unmasked)),
        ),
        (
            "seed-too-big-across-fragments",
            input(
                LIMIT_5,
                4,
                &frames(&[
                    frame(false, Opcode::Binary, b"abc"),
                    frame(true, Opcode::Continuation, b"def"),
                ]),
            ),
            Box::new(fails(Error::TooBig { len: 6, max: 5 })),
        ),
        (
            "seed-invalid-utf8-split",
            input(
                LIMIT_125,
                3,
                &frames(&[
                    frame(false, Opcode::Text, b"ok \xe2\x82"),
                    frame(true, Opcode::Continuation, b"!"),
                ]),
            ),
            Box::new(fails(Error::InvalidUtf8)),
        ),
        (
            "seed-control-fragmented",
            input(LIMIT_125, 1, &frame(false, Opcode::Ping, b"x")),
            Box::new(fails(Error::ControlFragmented(Opcode::Ping))),
        ),
        (
            "seed-bad-close-code",
            input(LIMIT_125, 2, &frame(true, Opcode::Close, b"\x03\xed")),
            Box::new(fails(Error::InvalidCloseCode(1005))),
        ),
        (
            "seed-continuation-first",
            input(LIMIT_125, 6, &frame(true, Opcode::Continuation, b"x")),
            Box::new(fails(Error::UnexpectedContinuation)),
        ),
        (
            "seed-reserved-bits",
            input(LIMIT_125, 1, b"\xc1\x80\x00\x00\x00\x00"),
            Box::new(fails(Error::ReservedBits(4))),
        ),
        (
            "seed-length-top-bit",
            input(
                LIMIT_1_MIB,
                7,
                b"\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04",
            ),
            Box::new(fails(Error::LengthTopBit)),
        ),
        (
            "seed-unfinished",
            input(
                LIMIT_1000,
                9,
                &frames(&[
                    frame(false, Opcode::Binary, b"held"),
                    frame(true, Opcode::Continuation, b"cut")[..5].to_vec(),
                ]),
            ),
            Box::new(|o: &WebSocketOutcome| {
                o.messages.is_empty()
                    && o.end
                        == End::Waiting {
                            buffered: 5,
                            held: 4,
                        }
            }),
        ),
    ]
}

#[test]
fn seeds_decode_as_intended() {
    for (name, data, ok) in seeds() {
        let outcome = websocket_harness::websocket(&data).expect("an input");
        assert!(ok(&outcome), "{name}: {outcome:?}");
    }
}

/// Writes the seeds when `LOGMILL_WRITE_CORPUS` is set; otherwise checks the committed ones are
/// current.
#[test]
fn seed_corpus_is_current() {
    let seeds = seeds();
    corpus::check_seeds(
        "websocket",
        "websocket_fuzz_corpus",
        seeds.iter().map(|(name, data, _)| (*name, data.as_slice())),
    );
}
