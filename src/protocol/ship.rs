//! The logship wire protocol's two lines, pure: the transmitter's name line (`app.log\n`) and
//! the receiver's offset answer (`1234\n`). After them the connection carries raw file bytes,
//! which nobody parses, so this is all of the protocol.
//!
//! - [`check_name`]: what a stored name may be, the same rule on both sides, so a transmitter
//!   never sends a name the receiver will refuse, and no name can leave the ship directory.
//! - [`name_line`]: the checked name and its newline.
//! - [`parse_offset`]: the receiver's answer, bounded to [`MAX_OFFSET_DIGITS`] digits, with
//!   checked arithmetic; a line that is not a number is the receiver's refusal, kept as text.
//!
//! What this file does not hold: sockets, files, or what either side does with the offset.

use std::fmt;

/// The longest stored name, in bytes: the usual file-name limit (`NAME_MAX`).
pub const MAX_NAME: usize = 255;

/// The most digits an offset answer may have: `u64::MAX` has 20.
pub const MAX_OFFSET_DIGITS: usize = 20;

/// The longest refusal line kept from a receiver (a longer one is cut): enough for a clear
/// message, and a bound on what a hostile receiver can make us hold.
pub const MAX_ANSWER_LINE: usize = 512;

/// Why a name is not a plain file name. Each refusal has its own reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    Slash,
    DotDot,
    LeadingDot,
    /// NUL, a control byte (below 0x20) or DEL.
    Control,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "empty name",
            NameError::TooLong => "name longer than 255 bytes",
            NameError::Slash => "name contains '/'",
            NameError::DotDot => "name contains '..'",
            NameError::LeadingDot => "name starts with '.'",
            NameError::Control => "name contains NUL or a control byte",
        })
    }
}

impl std::error::Error for NameError {}

/// Checks that `name` is a plain file name: not empty, at most [`MAX_NAME`] bytes, no `/`, no
/// `..`, not starting with `.`, no NUL or control byte. A name that passes stays inside the
/// directory it is joined to and is never a hidden file.
///
/// # Errors
///
/// The first rule `name` breaks, in the order above.
pub fn check_name(name: &[u8]) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong);
    }
    if name.contains(&b'/') {
        return Err(NameError::Slash);
    }
    if name.windows(2).any(|w| w == b"..") {
        return Err(NameError::DotDot);
    }
    if name[0] == b'.' {
        return Err(NameError::LeadingDot);
    }
    if name.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(NameError::Control);
    }
    Ok(())
}

/// `name` and a newline: the first bytes a transmitter sends.
///
/// # Errors
///
/// `name` is not a plain file name ([`check_name`]).
pub fn name_line(name: &str) -> Result<Vec<u8>, NameError> {
    check_name(name.as_bytes())?;
    let mut line = Vec::with_capacity(name.len() + 1);
    line.extend_from_slice(name.as_bytes());
    line.push(b'\n');
    Ok(line)
}

/// What [`parse_offset`] made of the front of a receiver's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The offset to resume from; `consumed` counts its digits and the newline.
    Offset { offset: u64, consumed: usize },
    /// A line that is not an offset: the receiver refused (its text, at most
    /// [`MAX_ANSWER_LINE`] bytes, lossily decoded, one `\r` dropped).
    Refused { text: String, consumed: usize },
    /// No newline yet, and no reason to give up: read more.
    Incomplete,
}

/// Why an answer is neither an offset nor a refusal line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerError {
    /// Digits beyond [`MAX_OFFSET_DIGITS`], or a number above `u64::MAX`.
    OffsetTooLarge,
    /// More than [`MAX_ANSWER_LINE`] bytes without a newline.
    LineTooLong,
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnswerError::OffsetTooLarge => {
                "offset answer too large (more than 20 digits or above 2^64-1)"
            }
            AnswerError::LineTooLong => "answer line longer than 512 bytes without a newline",
        })
    }
}

impl std::error::Error for AnswerError {}

/// Parses the receiver's answer at the front of `buf`: decimal digits and `\n` (one `\r` before
/// it tolerated). Digits are checked as they come, so an endless run of digits is an error after
/// 20 of them, not a buffer that grows; a non-digit line is a [`Answer::Refused`].
///
/// # Errors
///
/// [`AnswerError`] when no valid answer can come from these bytes.
pub fn parse_offset(buf: &[u8]) -> Result<Answer, AnswerError> {
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > MAX_OFFSET_DIGITS {
        return Err(AnswerError::OffsetTooLarge);
    }
    let rest = &buf[digits..];
    let end = match rest {
        [] => return Ok(Answer::Incomplete),
        [b'\n', ..] => Some(1),
        [b'\r'] => return Ok(Answer::Incomplete),
        [b'\r', b'\n', ..] => Some(2),
        _ => None,
    };
    if let (Some(end), true) = (end, digits > 0) {
        let mut offset: u64 = 0;
        for &d in &buf[..digits] {
            offset = offset
                .checked_mul(10)
                .and_then(|o| o.checked_add(u64::from(d - b'0')))
                .ok_or(AnswerError::OffsetTooLarge)?;
        }
        return Ok(Answer::Offset {
            offset,
            consumed: digits + end,
        });
    }
    // Not an offset: a refusal line, up to its newline.
    match memchr::memchr(b'\n', &buf[..buf.len().min(MAX_ANSWER_LINE + 1)]) {
        Some(newline) => {
            let line = &buf[..newline];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Ok(Answer::Refused {
                text: String::from_utf8_lossy(line).into_owned(),
                consumed: newline + 1,
            })
        }
        None if buf.len() > MAX_ANSWER_LINE => Err(AnswerError::LineTooLong),
        None => Ok(Answer::Incomplete),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        for name in ["app.log", "a", "x-1_2.log~3", "with space", "é.log"] {
            assert_eq!(check_name(name.as_bytes()), Ok(()), "{name}");
        }
        assert_eq!(check_name(&[b'a'; 255]), Ok(()));
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let cases: [(&[u8], NameError); 9] = [
            (b"", NameError::Empty),
            (&[b'a'; 256], NameError::TooLong),
            (b"a/b", NameError::Slash),
            (b"../x", NameError::Slash),
            (b"..", NameError::DotDot),
            (b"a..b", NameError::DotDot),
            (b".hidden", NameError::LeadingDot),
            (b"a\0b", NameError::Control),
            (b"a\nb", NameError::Control),
        ];
        for (name, want) in cases {
            assert_eq!(check_name(name), Err(want), "{name:?}");
        }
        assert_eq!(check_name(b"a\x7f"), Err(NameError::Control));
    }

    #[test]
    fn name_line_ends_with_a_newline() {
        assert_eq!(name_line("app.log").unwrap(), b"app.log\n");
        assert_eq!(name_line("a/b"), Err(NameError::Slash));
    }

    #[test]
    fn offset_at_every_split_point() {
        let whole = b"1234\nrest";
        for split in 0..5 {
            assert_eq!(
                parse_offset(&whole[..split]),
                Ok(Answer::Incomplete),
                "{split}"
            );
        }
        for split in 5..=whole.len() {
            assert_eq!(
                parse_offset(&whole[..split]),
                Ok(Answer::Offset {
                    offset: 1234,
                    consumed: 5
                })
            );
        }
        assert_eq!(
            parse_offset(b"0\r\n"),
            Ok(Answer::Offset {
                offset: 0,
                consumed: 3
            })
        );
        assert_eq!(parse_offset(b"7\r"), Ok(Answer::Incomplete));
    }

    #[test]
    fn offsets_are_bounded() {
        let max = format!("{}\n", u64::MAX);
        assert_eq!(
            parse_offset(max.as_bytes()),
            Ok(Answer::Offset {
                offset: u64::MAX,
                consumed: 21
            })
        );
        assert_eq!(
            parse_offset(b"18446744073709551616\n"),
            Err(AnswerError::OffsetTooLarge)
        );
        assert_eq!(parse_offset(&[b'9'; 21]), Err(AnswerError::OffsetTooLarge));
        // 20 digits without a newline yet: still waiting, and no more than that is held.
        assert_eq!(parse_offset(&[b'1'; 20]), Ok(Answer::Incomplete));
    }

    #[test]
    fn a_non_number_is_a_refusal_line() {
        assert_eq!(
            parse_offset(b"error: app.log is busy\n"),
            Ok(Answer::Refused {
                text: "error: app.log is busy".into(),
                consumed: 23
            })
        );
        assert_eq!(
            parse_offset(b"12x\n"),
            Ok(Answer::Refused {
                text: "12x".into(),
                consumed: 4
            })
        );
        assert_eq!(
            parse_offset(b"\n"),
            Ok(Answer::Refused {
                text: String::new(),
                consumed: 1
            })
        );
        assert_eq!(parse_offset(b"error"), Ok(Answer::Incomplete));
        assert_eq!(parse_offset(&[b'x'; 513]), Err(AnswerError::LineTooLong));
    }
}
