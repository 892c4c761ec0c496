//! The logship protocol (issue 15), both directions, pure: bytes in, a value and the bytes
//! consumed (or "need more", or an error) out. Neither side's sockets or files are here: the
//! receiver is `server::ship` with `storage::ship`, the transmitter is `logmill ship tx`.
//!
//! The protocol, as logship's document describes it, unchanged on the wire:
//!
//! ```text
//! transmitter                              receiver
//!   "foo.log\n"           ------------->   reads up to the first newline: the file name
//!                         <-------------   "1234\n": the size of its copy (0 if new)
//!   raw bytes from offset 1234 --------->  appended, unparsed, until the connection closes
//! ```
//!
//! What this file adds to the document: bounds and checks. A name line is at most
//! [`MAX_NAME`] bytes and its newline, so a line that never ends is refused once
//! [`MAX_NAME_LINE`] bytes arrived ([`read_name_line`]); a name is a plain file name
//! ([`validate_name`]); the stored name is the name or, with `--host-in-filename`,
//! `<address>_<name>` ([`stored_name`]); the offset line is at most [`MAX_OFFSET_DIGITS`]
//! digits, parsed with checked arithmetic ([`parse_offset_line`]). A receiver that refuses a
//! connection says why on one line starting with `error: ` ([`error_line`]), which
//! [`parse_offset_line`] hands to the transmitter as [`Answer::Refused`].

use std::fmt;
use std::net::IpAddr;

/// The longest file name: the usual file system limit (`NAME_MAX`) for one path component.
pub const MAX_NAME: usize = 255;
/// A name line: the name and its newline. Once this many bytes arrived without a newline, the
/// line is refused, so a peer that never sends one holds at most this much.
pub const MAX_NAME_LINE: usize = MAX_NAME + 1;
/// `u64::MAX` has 20 digits: a longer offset is not a size.
pub const MAX_OFFSET_DIGITS: usize = 20;
/// The longest answer line a transmitter reads: an error line names the file (at most
/// [`MAX_NAME`] bytes, or the stored name with its address) and a reason.
pub const MAX_ANSWER_LINE: usize = 1024;
/// What starts a receiver's refusal line.
pub const ERROR_PREFIX: &str = "error: ";

/// What a reader found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Read<T> {
    /// A whole line: its value, and the bytes it took with the newline.
    Done { value: T, consumed: usize },
    /// No newline yet, and still within the line's bound: wait for more bytes.
    Incomplete,
}

/// Why a name (or the stored name made from it) is refused. Each has its own line to the peer
/// ([`NameError`]'s `Display`, sent through [`error_line`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// [`MAX_NAME_LINE`] bytes arrived without a newline.
    LineTooLong,
    /// Nothing before the newline.
    Empty,
    /// More than [`MAX_NAME`] bytes (with `--host-in-filename`: once the address is prefixed).
    TooLong,
    /// A `/`: the name would be a path, not a file in the ship directory.
    Slash,
    /// `..` anywhere in it.
    DotDot,
    /// Starts with `.`: `.`, `..` and hidden files.
    LeadingDot,
    /// NUL or another control byte (C0, DEL, or a C1 character): `\r`, `\t`, escapes.
    Control,
    /// Not UTF-8: names are shown in `_server.log` and `status`, and stored as they came.
    NotUtf8,
    /// A name logmill's own files use (`_main.*`, `_server.*`): an app bucket named like the
    /// ship directory would share it with the ship files.
    Reserved,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::LineTooLong => "no newline within 256 bytes: a name is at most 255 bytes",
            NameError::Empty => "empty file name",
            NameError::TooLong => "file name longer than 255 bytes",
            NameError::Slash => "file name contains '/': send a plain file name",
            NameError::DotDot => "file name contains '..'",
            NameError::LeadingDot => "file name starts with '.'",
            NameError::Control => "file name contains a NUL or control character",
            NameError::NotUtf8 => "file name is not UTF-8",
            NameError::Reserved => "file name is reserved for logmill's own files",
        })
    }
}

impl std::error::Error for NameError {}

/// Reads the name line at the front of `buf` (what a receiver got so far on a new connection)
/// and checks the name ([`validate_name`]).
///
/// Bounded: only the first [`MAX_NAME_LINE`] bytes are searched, so a caller that reads at most
/// that much before asking again holds no more.
///
/// # Errors
/// [`NameError::LineTooLong`] once [`MAX_NAME_LINE`] bytes hold no newline; otherwise the
/// name's refusal.
pub fn read_name_line(buf: &[u8]) -> Result<Read<&str>, NameError> {
    let window = &buf[..buf.len().min(MAX_NAME_LINE)];
    match memchr::memchr(b'\n', window) {
        Some(end) => Ok(Read::Done {
            value: validate_name(&window[..end])?,
            consumed: end + 1,
        }),
        None if window.len() >= MAX_NAME_LINE => Err(NameError::LineTooLong),
        None => Ok(Read::Incomplete),
    }
}

/// Checks that `name` is a plain file name: 1 to [`MAX_NAME`] bytes of UTF-8, no `/`, no `..`,
/// not starting with `.`, no NUL or control character, not one of logmill's own names.
/// The checks run in that order of bytes first, so the reason given is the most basic one.
///
/// # Errors
/// The first rule `name` breaks.
pub fn validate_name(name: &[u8]) -> Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong);
    }
    if name.contains(&b'/') {
        return Err(NameError::Slash);
    }
    if name.starts_with(b".") {
        return Err(NameError::LeadingDot);
    }
    if memchr::memmem::find(name, b"..").is_some() {
        return Err(NameError::DotDot);
    }
    if name.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(NameError::Control);
    }
    let text = std::str::from_utf8(name).map_err(|_| NameError::NotUtf8)?;
    if text.chars().any(char::is_control) {
        return Err(NameError::Control);
    }
    if reserved(text) {
        return Err(NameError::Reserved);
    }
    Ok(text)
}

/// Names logmill's own files take: a bucket's `_main.log`, its rotated `_main.log.N` and
/// `_main.seq`, and `_server.log`, `_server.lock` in the log directory.
fn reserved(name: &str) -> bool {
    name.starts_with("_main.") || name.starts_with("_server.")
}

/// The name a file is stored under in the ship directory: `name` itself, or with
/// `host_in_filename` the transmitter's address, an underscore and the name
/// (`127.0.0.1_app.log`, `::1_app.log`; an IPv4 address seen through an IPv6 socket is written
/// as IPv4, so one host gets one name whichever way the server listens).
///
/// # Errors
/// [`NameError::TooLong`] when the address makes it longer than [`MAX_NAME`] bytes, and
/// whatever [`validate_name`] refuses in `name`.
pub fn stored_name(name: &str, peer: IpAddr, host_in_filename: bool) -> Result<String, NameError> {
    let name = validate_name(name.as_bytes())?;
    if !host_in_filename {
        return Ok(name.to_owned());
    }
    let stored = format!("{}_{name}", peer.to_canonical());
    if stored.len() > MAX_NAME {
        return Err(NameError::TooLong);
    }
    Ok(stored)
}

/// The transmitter's first bytes: `name` and a newline, once [`validate_name`] accepts it (a
/// transmitter never sends a name this receiver would refuse).
///
/// # Errors
/// The rule `name` breaks.
pub fn name_line(name: &str) -> Result<Vec<u8>, NameError> {
    validate_name(name.as_bytes())?;
    let mut line = Vec::with_capacity(name.len() + 1);
    line.extend_from_slice(name.as_bytes());
    line.push(b'\n');
    Ok(line)
}

/// The receiver's answer: the offset in decimal and a newline (`"1234\n"`).
pub fn offset_line(offset: u64) -> String {
    format!("{offset}\n")
}

/// A refusal line: `error: <why>\n`, on one line whatever `why` holds (newlines and other
/// control characters become spaces) and within [`MAX_ANSWER_LINE`].
pub fn error_line(why: &str) -> String {
    let mut line = String::with_capacity(ERROR_PREFIX.len() + why.len() + 1);
    line.push_str(ERROR_PREFIX);
    for c in why.chars() {
        if line.len() + c.len_utf8() >= MAX_ANSWER_LINE {
            break;
        }
        line.push(if c.is_control() { ' ' } else { c });
    }
    line.push('\n');
    line
}

/// What a transmitter reads back after its name line.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send the file from this offset.
    Offset(u64),
    /// The receiver refused the name or the connection; its reason, without the prefix.
    Refused(String),
}

/// Why an answer line is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetError {
    /// An offset line that is not 1 to 20 ASCII digits before the newline.
    NotANumber,
    /// 20 digits past `u64::MAX`.
    Overflow,
    /// No newline within [`MAX_ANSWER_LINE`] bytes (or within 21 for digits).
    TooLong,
}

impl fmt::Display for OffsetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OffsetError::NotANumber => "the receiver's answer is not an offset",
            OffsetError::Overflow => "the receiver's offset is past 2^64",
            OffsetError::TooLong => "the receiver's answer line is too long",
        })
    }
}

impl std::error::Error for OffsetError {}

/// Reads the receiver's answer at the front of `buf`: `1234\n`, or an `error: ...\n` line.
/// An offset line is 1 to [`MAX_OFFSET_DIGITS`] ASCII digits (no sign, no spaces) and fits a
/// `u64`. One `\r` before the newline is dropped (a receiver written on another system may
/// end its lines so; logmill's never does).
///
/// # Errors
/// [`OffsetError`]: too long before the newline, not digits, or too large.
pub fn parse_offset_line(buf: &[u8]) -> Result<Read<Answer>, OffsetError> {
    let window = &buf[..buf.len().min(MAX_ANSWER_LINE)];
    let prefix = ERROR_PREFIX.as_bytes();
    if window.starts_with(prefix) {
        return match memchr::memchr(b'\n', window) {
            Some(end) => {
                let why = &window[prefix.len()..end];
                let why = why.strip_suffix(b"\r").unwrap_or(why);
                Ok(Read::Done {
                    value: Answer::Refused(String::from_utf8_lossy(why).into_owned()),
                    consumed: end + 1,
                })
            }
            None if window.len() >= MAX_ANSWER_LINE => Err(OffsetError::TooLong),
            None => Ok(Read::Incomplete),
        };
    }
    // An offset line, decided as soon as the bytes so far cannot be one (so a prefix decides
    // as the whole line would): digits, perhaps one `\r`, the newline.
    let digits = window.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > MAX_OFFSET_DIGITS {
        return Err(OffsetError::TooLong);
    }
    let consumed = match &window[digits..] {
        [] | [b'\r'] => return Ok(Read::Incomplete),
        [b'\n', ..] => digits + 1,
        [b'\r', b'\n', ..] => digits + 2,
        // The start of a refusal line.
        _ if prefix.starts_with(window) => return Ok(Read::Incomplete),
        _ => return Err(OffsetError::NotANumber),
    };
    if digits == 0 {
        return Err(OffsetError::NotANumber);
    }
    let mut offset: u64 = 0;
    for &digit in &window[..digits] {
        offset = offset
            .checked_mul(10)
            .and_then(|o| o.checked_add(u64::from(digit - b'0')))
            .ok_or(OffsetError::Overflow)?;
    }
    Ok(Read::Done {
        value: Answer::Offset(offset),
        consumed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn a_name_line_is_read_at_every_split_point() {
        let line = b"app.log\nDATA";
        for cut in 0..line.len() {
            let got = read_name_line(&line[..cut]).unwrap();
            if cut < 8 {
                assert_eq!(got, Read::Incomplete, "cut {cut}");
            } else {
                assert_eq!(
                    got,
                    Read::Done {
                        value: "app.log",
                        consumed: 8
                    }
                );
            }
        }
    }

    #[test]
    fn a_line_that_never_ends_is_refused_at_256_bytes() {
        let long = vec![b'a'; MAX_NAME_LINE];
        assert_eq!(read_name_line(&long[..MAX_NAME]).unwrap(), Read::Incomplete);
        assert_eq!(read_name_line(&long), Err(NameError::LineTooLong));
        // A newline past the bound is not looked for.
        let mut longer = vec![b'a'; 1000];
        longer.push(b'\n');
        assert_eq!(read_name_line(&longer), Err(NameError::LineTooLong));
    }

    #[test]
    fn a_255_byte_name_is_the_longest() {
        let mut line = vec![b'a'; MAX_NAME];
        line.push(b'\n');
        assert!(matches!(
            read_name_line(&line),
            Ok(Read::Done { consumed: 256, .. })
        ));
    }

    #[test]
    fn each_rule_refuses_its_names() {
        let cases: &[(&[u8], NameError)] = &[
            (b"", NameError::Empty),
            (b"a/b", NameError::Slash),
            (b"/etc/passwd", NameError::Slash),
            (b"../x", NameError::Slash),
            (b"..", NameError::LeadingDot),
            (b".", NameError::LeadingDot),
            (b".hidden", NameError::LeadingDot),
            (b"a..b", NameError::DotDot),
            (b"a\0b", NameError::Control),
            (b"a\rb", NameError::Control),
            (b"app.log\r", NameError::Control),
            (b"tab\there", NameError::Control),
            (b"del\x7f", NameError::Control),
            ("c1\u{85}".as_bytes(), NameError::Control),
            (b"\xff\xfe", NameError::NotUtf8),
            (b"_main.log", NameError::Reserved),
            (b"_main.log.3", NameError::Reserved),
            (b"_server.log", NameError::Reserved),
            (b"_main.seq", NameError::Reserved),
        ];
        for (name, why) in cases {
            assert_eq!(validate_name(name), Err(*why), "{name:?}");
        }
        assert_eq!(validate_name(&[b'a'; 256]), Err(NameError::TooLong));
        for good in [
            "app.log",
            "a",
            "ünïcode.log",
            "x_main.log",
            "_other",
            "a.b.c",
        ] {
            assert_eq!(validate_name(good.as_bytes()), Ok(good));
        }
    }

    #[test]
    fn stored_names_carry_the_address_when_asked() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert_eq!(stored_name("a.log", v4, false).unwrap(), "a.log");
        assert_eq!(stored_name("a.log", v4, true).unwrap(), "127.0.0.1_a.log");
        assert_eq!(stored_name("a.log", v6, true).unwrap(), "::1_a.log");
        assert_eq!(
            stored_name("a.log", mapped, true).unwrap(),
            "127.0.0.1_a.log"
        );
        assert_eq!(stored_name("../a", v4, true), Err(NameError::Slash));
        let long = "a".repeat(MAX_NAME);
        assert!(stored_name(&long, v4, false).is_ok());
        assert_eq!(stored_name(&long, v4, true), Err(NameError::TooLong));
    }

    #[test]
    fn name_lines_are_checked_names_and_a_newline() {
        assert_eq!(name_line("app.log").unwrap(), b"app.log\n");
        assert_eq!(name_line("../x"), Err(NameError::Slash));
        let line = name_line("app.log").unwrap();
        assert_eq!(
            read_name_line(&line),
            Ok(Read::Done {
                value: "app.log",
                consumed: line.len()
            })
        );
    }

    #[test]
    fn offset_lines_round_trip() {
        for offset in [0, 1, 1234, u64::MAX] {
            let line = offset_line(offset);
            assert_eq!(
                parse_offset_line(line.as_bytes()).unwrap(),
                Read::Done {
                    value: Answer::Offset(offset),
                    consumed: line.len()
                }
            );
            for cut in 0..line.len() {
                assert_eq!(
                    parse_offset_line(&line.as_bytes()[..cut]).unwrap(),
                    Read::Incomplete
                );
            }
        }
    }

    #[test]
    fn one_carriage_return_before_the_newline_is_dropped() {
        assert_eq!(
            parse_offset_line(b"12\r\n"),
            Ok(Read::Done {
                value: Answer::Offset(12),
                consumed: 4
            })
        );
    }

    #[test]
    fn bad_offset_lines_are_refused() {
        assert_eq!(
            parse_offset_line(b"18446744073709551616\n"),
            Err(OffsetError::Overflow)
        );
        assert_eq!(
            parse_offset_line(b"99999999999999999999\n"),
            Err(OffsetError::Overflow)
        );
        assert_eq!(
            parse_offset_line(b"000000000000000000001\n"),
            Err(OffsetError::TooLong)
        );
        assert_eq!(
            parse_offset_line(b"000000000000000000001"),
            Err(OffsetError::TooLong)
        );
        for bad in [
            &b"\n"[..],
            b"-1\n",
            b"+1\n",
            b" 1\n",
            b"1 \n",
            b"12\r\r\n",
            b"0x10\n",
        ] {
            assert_eq!(
                parse_offset_line(bad),
                Err(OffsetError::NotANumber),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_offset_line(&[b'e'; MAX_ANSWER_LINE]),
            Err(OffsetError::NotANumber)
        );
        assert_eq!(parse_offset_line(&[b'1'; 30]), Err(OffsetError::TooLong));
    }

    #[test]
    fn error_lines_are_one_line_and_read_back_as_refusals() {
        let line = error_line("a.log is being shipped\nby another connection");
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(
            parse_offset_line(line.as_bytes()).unwrap(),
            Read::Done {
                value: Answer::Refused("a.log is being shipped by another connection".into()),
                consumed: line.len()
            }
        );
        let long = error_line(&"x".repeat(5000));
        assert!(long.len() <= MAX_ANSWER_LINE);
        assert!(matches!(
            parse_offset_line(long.as_bytes()),
            Ok(Read::Done {
                value: Answer::Refused(_),
                ..
            })
        ));
    }
}
