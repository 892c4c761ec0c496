//! Protocol detection: the first bytes of a TCP connection decide what it speaks.
//!
//! This is the one place that knows every protocol on the TCP port. Each rule looks only at a
//! short prefix, and no two rules match the same prefix:
//!
//! | first bytes                         | protocol                                            |
//! |-------------------------------------|-----------------------------------------------------|
//! | `health\n` or `health\r\n`          | health check: one status line, then close           |
//! | `status\n` or `status\r\n`          | who is connected: one JSON document, then close     |
//! | `00 ?? ?? ??` then `80`, `7d` or `28` | Python `SocketHandler`: length, then a pickle       |
//! | `00 ?? ?? ??` then anything else    | native frames: length, then a Cap'n Proto message   |
//! | `{`                                 | JSON lines                                          |
//! | `<`                                 | syslog, newline-delimited (RFC 6587 non-transparent)|
//! | digits, a space, `<`                | syslog, octet counting (RFC 6587)                   |
//! | other text (UTF-8 or tab)           | plain text, one record per line                     |
//! | other control or invalid bytes      | not spoken: an error line, then close               |
//!
//! Why the fifth byte separates pickle from Cap'n Proto: a pickle starts with `PROTO` (0x80,
//! protocol 2 and later), or for protocol 1 (what `SocketHandler` sends) with `EMPTY_DICT`
//! (`}`) or `MARK` (`(`); a Cap'n Proto message starts with its segment count minus one as a
//! little-endian u32, which is 0 for nearly every message and never 0x28 or more in practice.
//! A length prefix starts with 0 because frames are under 16 MiB (`config::MAX_FRAME_LIMIT`).

use super::{pickle, syslog};

/// What a connection speaks, decided from its first bytes.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Protocol {
    /// `health` and a newline: answer with one status line and close.
    Health,
    /// `status` and a newline: answer with the connection registry's JSON and close.
    Status,
    /// Length-prefixed Cap'n Proto frames (`schema/logmill.capnp`).
    Native,
    /// Length-prefixed pickles from Python's `logging.handlers.SocketHandler`.
    Pickle,
    /// Syslog over TCP, either framing of RFC 6587 (decided per message).
    Syslog,
    /// One JSON object per line.
    JsonLines,
    /// One plain-text record per line.
    Text,
    /// Nothing logmill speaks.
    Unknown,
}

/// The result of looking at a connection's first bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Detect {
    /// Decided; `consumed` bytes belong to the detection itself (the `health` line) and are not
    /// part of the protocol's stream.
    Decided { protocol: Protocol, consumed: usize },
    /// The prefix fits more than one protocol; wait for more bytes.
    Incomplete,
}

const HEALTH: &[u8] = b"health";
const STATUS: &[u8] = b"status";

/// Decides the protocol of a connection from the bytes received so far.
pub fn detect(buf: &[u8]) -> Detect {
    let Some(&first) = buf.first() else {
        return Detect::Incomplete;
    };
    match first {
        0 => length_prefixed(buf),
        b'{' => decided(Protocol::JsonLines),
        b'<' => decided(Protocol::Syslog),
        b'0'..=b'9' => digits(buf),
        b'h' => request_or_text(buf, HEALTH, Protocol::Health),
        b's' => request_or_text(buf, STATUS, Protocol::Status),
        b'\t' | 0x20..=0x7e | 0xc2..=0xf4 => decided(Protocol::Text),
        _ => decided(Protocol::Unknown),
    }
}

fn decided(protocol: Protocol) -> Detect {
    Detect::Decided {
        protocol,
        consumed: 0,
    }
}

fn length_prefixed(buf: &[u8]) -> Detect {
    match buf {
        // A zero length is no pickle (a pickle is never empty): let the frame decoder have it.
        [0, 0, 0, 0, ..] => decided(Protocol::Native),
        [_, _, _, _, first, ..] if pickle::can_start(*first) => decided(Protocol::Pickle),
        [_, _, _, _, _, ..] => decided(Protocol::Native),
        _ => Detect::Incomplete,
    }
}

/// `123 <` is an octet-counted syslog frame; other text starting with a digit is plain text, as
/// is a count longer than the syslog framer reads.
fn digits(buf: &[u8]) -> Detect {
    let count = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    if count > syslog::MAX_LEN_DIGITS {
        return decided(Protocol::Text);
    }
    match &buf[count..] {
        [] => Detect::Incomplete,
        [b' '] => Detect::Incomplete,
        [b' ', b'<', ..] => decided(Protocol::Syslog),
        _ => decided(Protocol::Text),
    }
}

/// A one-word request (`health`, `status`), then `\n` or `\r\n`; any other line starting with
/// the word's first letter is text.
fn request_or_text(buf: &[u8], word: &[u8], protocol: Protocol) -> Detect {
    let common = buf.len().min(word.len());
    if buf[..common] != word[..common] {
        return decided(Protocol::Text);
    }
    let request = |consumed| Detect::Decided { protocol, consumed };
    match &buf[common..] {
        [] => Detect::Incomplete,
        [b'\n', ..] => request(word.len() + 1),
        [b'\r'] => Detect::Incomplete,
        [b'\r', b'\n', ..] => request(word.len() + 2),
        _ => decided(Protocol::Text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocol(buf: &[u8]) -> Option<Protocol> {
        match detect(buf) {
            Detect::Decided { protocol, .. } => Some(protocol),
            Detect::Incomplete => None,
        }
    }

    #[test]
    fn health_at_every_split_point() {
        for line in [&b"health\n"[..], b"health\r\n"] {
            for cut in 0..line.len() {
                assert_eq!(detect(&line[..cut]), Detect::Incomplete, "cut {cut}");
            }
            assert_eq!(
                detect(line),
                Detect::Decided {
                    protocol: Protocol::Health,
                    consumed: line.len()
                }
            );
        }
    }

    #[test]
    fn status_at_every_split_point() {
        for line in [&b"status\n"[..], b"status\r\n"] {
            for cut in 0..line.len() {
                assert_eq!(detect(&line[..cut]), Detect::Incomplete, "cut {cut}");
            }
            assert_eq!(
                detect(line),
                Detect::Decided {
                    protocol: Protocol::Status,
                    consumed: line.len()
                }
            );
        }
        assert_eq!(protocol(b"status ok\n"), Some(Protocol::Text));
        assert_eq!(protocol(b"started\n"), Some(Protocol::Text));
        assert_eq!(protocol(b"statusx"), Some(Protocol::Text));
    }

    #[test]
    fn length_prefixed_needs_five_bytes() {
        let native = [0, 0, 0, 12, 0, 0, 0, 0];
        let pickle = [0, 0, 1, 2, b'}', b'q', 0];
        for cut in 1..5 {
            assert_eq!(detect(&native[..cut]), Detect::Incomplete);
            assert_eq!(detect(&pickle[..cut]), Detect::Incomplete);
        }
        assert_eq!(protocol(&native), Some(Protocol::Native));
        assert_eq!(protocol(&pickle), Some(Protocol::Pickle));
        assert_eq!(protocol(&[0, 0, 0, 9, 0x80, 2]), Some(Protocol::Pickle));
        assert_eq!(protocol(&[0, 0, 0, 0]), Some(Protocol::Native));
    }

    #[test]
    fn syslog_both_framings() {
        assert_eq!(protocol(b"<34>1 2026-"), Some(Protocol::Syslog));
        let counted = b"123 <34>1";
        for cut in 1..5 {
            assert_eq!(detect(&counted[..cut]), Detect::Incomplete, "cut {cut}");
        }
        assert_eq!(protocol(counted), Some(Protocol::Syslog));
        assert_eq!(protocol(b"12 apples\n"), Some(Protocol::Text));
        assert_eq!(protocol(b"2026-11-22 started\n"), Some(Protocol::Text));
        assert_eq!(protocol(b"12345678901234 x"), Some(Protocol::Text));
    }

    #[test]
    fn json_text_and_unknown() {
        assert_eq!(protocol(b"{\"msg\":1}\n"), Some(Protocol::JsonLines));
        assert_eq!(protocol(b"hello\n"), Some(Protocol::Text));
        assert_eq!(protocol(b"healthy\n"), Some(Protocol::Text));
        assert_eq!(protocol(b"h"), None);
        assert_eq!(protocol(b"GET / HTTP/1.1\r\n"), Some(Protocol::Text));
        assert_eq!(protocol("été\n".as_bytes()), Some(Protocol::Text));
        assert_eq!(protocol(b"\x16\x03\x01"), Some(Protocol::Unknown)); // TLS hello
        assert_eq!(protocol(b"\xff\xfe"), Some(Protocol::Unknown));
    }
}
