//! The `ship` target's harness: `protocol::ship`, logship's name line and offset line (issue
//! 15), read from the same bytes whole and a prefix at a time, which must agree. Shared by
//! `fuzz_targets/ship.rs` and `tests/ship_fuzz_corpus.rs`, which replays the corpus.
//!
//! Byte 0 of an input is the prefix step (1 to 256 bytes); the rest is the stream, read as a
//! receiver reads a name line and as a transmitter reads an answer line.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use logmill::protocol::ship::{
    self, Answer, MAX_ANSWER_LINE, MAX_NAME, MAX_NAME_LINE, NameError, OffsetError, Read,
};

/// What the whole stream read as, for the seeds' checks.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub name: Result<Option<String>, NameError>,
    pub answer: Result<Option<Answer>, OffsetError>,
}

pub fn ship(data: &[u8]) -> Outcome {
    let Some((&step, stream)) = data.split_first() else {
        return Outcome {
            name: Ok(None),
            answer: Ok(None),
        };
    };
    let step = usize::from(step) + 1;
    let name = name_line(stream, step);
    let answer = answer_line(stream, step);
    // Any text makes one refusal line that reads back as a refusal.
    let why = String::from_utf8_lossy(stream);
    let line = ship::error_line(&why);
    assert!(line.len() <= MAX_ANSWER_LINE && line.ends_with('\n'));
    assert_eq!(line.matches('\n').count(), 1);
    assert!(matches!(
        ship::parse_offset_line(line.as_bytes()),
        Ok(Read::Done { value: Answer::Refused(_), consumed }) if consumed == line.len()
    ));
    Outcome { name, answer }
}

fn name_line(stream: &[u8], step: usize) -> Result<Option<String>, NameError> {
    let whole = ship::read_name_line(stream);
    // Read a prefix at a time: undecided until the whole line (or 256 bytes) is there, then the
    // same answer as the whole stream.
    let mut end = 0;
    loop {
        end = (end + step).min(stream.len());
        match ship::read_name_line(&stream[..end]) {
            Ok(Read::Incomplete) => {
                assert!(end < MAX_NAME_LINE && !stream[..end].contains(&b'\n'));
            }
            other => {
                assert_eq!(other, whole, "a prefix of {end} bytes decided differently");
                break;
            }
        }
        if end == stream.len() {
            break;
        }
    }
    match whole? {
        Read::Incomplete => {
            assert!(stream.len() < MAX_NAME_LINE && !stream.contains(&b'\n'));
            Ok(None)
        }
        Read::Done { value, consumed } => {
            assert!(consumed <= MAX_NAME_LINE && consumed <= stream.len());
            assert_eq!(&stream[..consumed - 1], value.as_bytes());
            assert_eq!(stream[consumed - 1], b'\n');
            assert!(!value.is_empty() && value.len() <= MAX_NAME);
            assert!(!value.contains('/') && !value.starts_with('.') && !value.contains(".."));
            assert!(!value.chars().any(char::is_control));
            for peer in [
                IpAddr::V4(Ipv4Addr::new(192, 168, 10, 200)),
                IpAddr::V6(Ipv6Addr::new(0xfe80, 1, 2, 3, 4, 5, 6, 7)),
            ] {
                assert_eq!(ship::stored_name(value, peer, false).as_deref(), Ok(value));
                if let Ok(stored) = ship::stored_name(value, peer, true) {
                    assert!(stored.len() <= MAX_NAME && stored.ends_with(value));
                    assert!(!stored.contains('/') && !stored.starts_with('.'));
                }
            }
            Ok(Some(value.to_owned()))
        }
    }
}

fn answer_line(stream: &[u8], step: usize) -> Result<Option<Answer>, OffsetError> {
    let whole = ship::parse_offset_line(stream);
    let mut end = 0;
    loop {
        end = (end + step).min(stream.len());
        match ship::parse_offset_line(&stream[..end]) {
            Ok(Read::Incomplete) => assert!(!stream[..end].contains(&b'\n')),
            other => {
                assert_eq!(other, whole, "a prefix of {end} bytes decided differently");
                break;
            }
        }
        if end == stream.len() {
            break;
        }
    }
    match whole? {
        Read::Incomplete => Ok(None),
        Read::Done { value, consumed } => {
            assert!(consumed <= stream.len() && consumed <= MAX_ANSWER_LINE);
            assert_eq!(stream[consumed - 1], b'\n');
            if let Answer::Offset(offset) = value {
                // The canonical line for the offset reads back as itself.
                let line = ship::offset_line(offset);
                assert_eq!(
                    ship::parse_offset_line(line.as_bytes()),
                    Ok(Read::Done {
                        value: Answer::Offset(offset),
                        consumed: line.len()
                    })
                );
                // Digits, perhaps one `\r`, and the newline.
                assert!(consumed <= ship::MAX_OFFSET_DIGITS + 2);
            }
            Ok(Some(value))
        }
    }
}
