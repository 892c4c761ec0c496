//! Protocol detection: the first bytes of a TCP connection decide what it speaks.
//!
//! This is the one place that knows every protocol on the TCP port. Each rule looks only at a
//! short prefix, and the rules cannot overlap:
//!
//! | first bytes                  | protocol                                           |
//! |------------------------------|----------------------------------------------------|
//! | `health\n` or `health\r\n`   | health check: one status line, then close          |
//! | `0x00`                       | native frames (a big-endian length under 16 MiB)   |
//! | anything else                | not spoken (yet): an error line, then close        |

/// What a connection speaks, decided from its first bytes.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Protocol {
    /// `health` and a newline: answer with one status line and close.
    Health,
    /// Length-prefixed Cap'n Proto frames (`schema/logmill.capnp`).
    Native,
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

/// Decides the protocol of a connection from the bytes received so far.
pub fn detect(buf: &[u8]) -> Detect {
    let Some(&first) = buf.first() else {
        return Detect::Incomplete;
    };
    if first == 0 {
        return Detect::Decided {
            protocol: Protocol::Native,
            consumed: 0,
        };
    }
    // `health`, then `\n` or `\r\n`.
    let common = buf.len().min(HEALTH.len());
    if buf[..common] == HEALTH[..common] {
        return match &buf[common..] {
            [] => Detect::Incomplete,
            [b'\n', ..] => health(HEALTH.len() + 1),
            [b'\r'] => Detect::Incomplete,
            [b'\r', b'\n', ..] => health(HEALTH.len() + 2),
            _ => unknown(),
        };
    }
    unknown()
}

fn health(consumed: usize) -> Detect {
    Detect::Decided {
        protocol: Protocol::Health,
        consumed,
    }
}

fn unknown() -> Detect {
    Detect::Decided {
        protocol: Protocol::Unknown,
        consumed: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_at_every_split_point() {
        for line in [&b"health\n"[..], b"health\r\n"] {
            for cut in 0..line.len() {
                assert_eq!(detect(&line[..cut]), Detect::Incomplete, "cut {cut}");
            }
            assert_eq!(detect(line), health(line.len()));
        }
    }

    #[test]
    fn frames_start_with_zero() {
        assert_eq!(
            detect(&[0, 0, 0, 12]),
            Detect::Decided {
                protocol: Protocol::Native,
                consumed: 0
            }
        );
    }

    #[test]
    fn other_bytes_are_unknown() {
        assert_eq!(detect(b"hello\n"), unknown());
        assert_eq!(detect(b"healthy\n"), unknown());
        assert_eq!(detect(b"GET / HTTP/1.1\r\n"), unknown());
    }
}
