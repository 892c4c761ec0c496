//! UDP datagrams (`--udp-port`): each datagram is one record, either Python's
//! `logging.handlers.DatagramHandler` (the same length-prefixed pickle as `SocketHandler`) or a
//! syslog message (RFC 5424 or RFC 3164, RFC 5426 transport: one message per datagram).
//!
//! There is no stream to detect once per connection, so each datagram is looked at on its own:
//! a 4-byte big-endian length equal to the rest of the datagram, followed by a pickle's first
//! byte, is a pickle; anything else is syslog, which never starts with a zero byte.

use crate::protocol::pickle::{self, PickleError};
use crate::protocol::syslog;
use crate::record::Record;

/// What one datagram held.
#[derive(Debug)]
pub enum Datagram<'a> {
    /// A `DatagramHandler` record, or why its pickle was refused.
    Pickle(Result<Record<'static>, PickleError>),
    /// A syslog message (never refused: a malformed one is kept as text, flagged).
    Syslog(Record<'a>),
}

/// Decodes one datagram.
pub fn decode(datagram: &[u8]) -> Datagram<'_> {
    if let [a, b, c, d, first, ..] = *datagram {
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        if len == datagram.len() - 4 && pickle::can_start(first) {
            return Datagram::Pickle(pickle::decode_record(&datagram[4..]));
        }
    }
    // Senders differ on whether a datagram ends with a newline (or a NUL); none is part of it.
    let end = datagram
        .iter()
        .rposition(|&b| !matches!(b, b'\n' | b'\r' | 0))
        .map_or(0, |i| i + 1);
    Datagram::Syslog(syslog::parse_message(&datagram[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Body, Level};

    #[test]
    fn syslog_datagram_without_and_with_newline() {
        for d in [
            &b"<11>1 2026-11-22T01:00:00Z h app - - - disk full"[..],
            b"<11>1 2026-11-22T01:00:00Z h app - - - disk full\n",
        ] {
            let Datagram::Syslog(r) = decode(d) else {
                panic!("not syslog")
            };
            assert_eq!(r.level, Level::Error);
            assert_eq!(r.body, Body::Message("disk full".into()));
            assert!(!r.parse_error);
        }
    }

    #[test]
    fn pickle_datagram_needs_a_matching_length() {
        // A length that does not match the datagram: not a pickle, kept as (malformed) syslog.
        let d = [0, 0, 0, 9, b'}', b'q', 0];
        let Datagram::Syslog(r) = decode(&d) else {
            panic!("not syslog")
        };
        assert!(r.parse_error);
        // Matching length: handed to the pickle decoder (which refuses this truncated pickle).
        let d = [0, 0, 0, 3, b'}', b'q', 0];
        assert!(matches!(decode(&d), Datagram::Pickle(Err(_))));
    }

    #[test]
    fn empty_datagram_is_an_empty_syslog_record() {
        assert!(matches!(decode(b""), Datagram::Syslog(_)));
    }
}
