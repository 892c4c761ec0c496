//! Line framing, shared by syslog (non-transparent framing), JSON lines and plain text: a line
//! ends at `\n`, and one `\r` before it is dropped.
//!
//! A line longer than the limit is not buffered until its newline arrives: its first `max_line`
//! bytes are handed out as a [`Line::Truncated`] piece, and the rest of the line follows as
//! further pieces, the last of which is the [`Line::Complete`] that ends at the newline. So a
//! connection never holds more than one line's worth of bytes, whatever a client sends.
//!
//! A connection calls [`Scan::next_line`] after every read, with the line it is waiting for
//! still at the front of its buffer; a [`Scan`] it keeps says how much of that line was already
//! searched for the newline, so each byte is searched once however the line arrives. Searching
//! from the start on every call made a line cost its length squared: a client sending a 1 MiB
//! line one byte per read made the server scan half a terabyte.
//!
//! What this file does not do: decide what a line means (`syslog`, `jsonl`), or remember that a
//! line was cut. That is one bool in the caller: after a `Truncated`, every piece up to and
//! including the next `Complete` belongs to the same cut line and is flagged `truncated` too.

/// What [`next_line`] found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A whole line, without its `\n` and without one `\r` before it; `consumed` counts both.
    Complete { line: &'a [u8], consumed: usize },
    /// No newline within `max_line` bytes: the first piece of a longer line (or the next piece of
    /// one already cut), at most `max_line` bytes, with nothing after it in the buffer skipped.
    Truncated { piece: &'a [u8], consumed: usize },
    /// No newline yet and fewer than `max_line` bytes: wait for more.
    Incomplete,
}

/// How much of the line at the front of a buffer [`Scan::next_line`] has searched for its
/// newline without finding one. A connection keeps one next to its buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Bytes at the front of the buffer known to hold no `\n`.
    searched: usize,
}

/// Cuts the line at the front of `buf`, allowing lines of at most `max_line` bytes (a
/// `max_line` of 0 is taken as 1, so every piece makes progress). For a buffer looked at once;
/// a buffer that grows between calls goes to [`Scan::next_line`].
///
/// A line of exactly `max_line` bytes is `Complete` once its newline arrives, so `Incomplete`
/// can be returned with up to `max_line` bytes (and a trailing `\r`) buffered, and no more.
pub fn next_line(buf: &[u8], max_line: usize) -> Line<'_> {
    Scan::default().next_line(buf, max_line)
}

impl Scan {
    /// [`next_line`] on a buffer that grows: after an `Incomplete`, the scan remembers that what
    /// was buffered holds no newline, and the next call searches only the bytes appended since.
    ///
    /// The caller must call again with the same line at the front of `buf` (what was there, and
    /// more) until the answer is not `Incomplete`; any other answer resets the scan for the next
    /// line.
    pub fn next_line<'a>(&mut self, buf: &'a [u8], max_line: usize) -> Line<'a> {
        let max_line = max_line.max(1);
        // The newline may sit right after `max_line` bytes, or after `max_line` bytes and a `\r`.
        let window = &buf[..buf.len().min(max_line.saturating_add(2))];
        let from = std::mem::take(&mut self.searched).min(window.len());
        if let Some(at) = window[from..].iter().position(|&b| b == b'\n') {
            let at = from + at;
            let line = strip_cr(&buf[..at]);
            if line.len() <= max_line {
                return Line::Complete {
                    line,
                    consumed: at + 1,
                };
            }
        } else if buf.len() <= max_line || (buf.len() == max_line + 1 && buf[max_line] == b'\r') {
            self.searched = buf.len();
            return Line::Incomplete;
        }
        let end = cut(buf, max_line);
        Line::Truncated {
            piece: &buf[..end],
            consumed: end,
        }
    }
}

/// Where to cut `buf` so the piece holds at most `max` bytes (`buf` holds at least `max`).
///
/// Cutting in the middle of a UTF-8 character would make both pieces invalid UTF-8, which the
/// stored line would show as replacement characters; so when the last character that starts
/// before the cut (a lead byte, then only continuation bytes up to the cut) is too wide to end
/// by it, the piece ends before that character instead. Only `buf[..max]` is looked at, so where
/// a piece ends never depends on how much of the stream has arrived. Never returns 0 for
/// `max > 0`, so a caller always makes progress: a limit shorter than one character still cuts
/// inside it, as there is no better choice.
pub fn cut(buf: &[u8], max: usize) -> usize {
    debug_assert!(buf.len() >= max);
    // The lead byte of the character the cut lands in is at most 3 bytes back; every byte after
    // it, up to the cut, is a continuation byte.
    let lowest = max.saturating_sub(3);
    let Some(lead) = (lowest..max).rev().find(|&i| !is_continuation(buf[i])) else {
        return max; // Only continuation bytes: not UTF-8, cut anywhere.
    };
    let width = match buf[lead] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return max, // ASCII, or not a lead byte: the cut splits no character.
    };
    if lead + width > max && lead > 0 {
        lead
    } else {
        max
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0xc0 == 0x80
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` to `next_line` as a connection would, `chunk` bytes at a time, and returns
    /// every line and piece with a flag saying whether it was cut.
    fn split(stream: &[u8], max: usize, chunk: usize) -> (Vec<(String, bool)>, usize) {
        let mut buffered = Vec::new();
        let mut out = Vec::new();
        let mut continuing = false;
        let mut scan = Scan::default();
        for part in stream.chunks(chunk.max(1)) {
            buffered.extend_from_slice(part);
            loop {
                match scan.next_line(&buffered, max) {
                    Line::Complete { line, consumed } => {
                        out.push((String::from_utf8_lossy(line).into_owned(), continuing));
                        continuing = false;
                        buffered.drain(..consumed);
                    }
                    Line::Truncated { piece, consumed } => {
                        assert!(piece.len() <= max.max(1) && consumed == piece.len());
                        assert!(consumed > 0, "no progress");
                        out.push((String::from_utf8_lossy(piece).into_owned(), true));
                        continuing = true;
                        buffered.drain(..consumed);
                    }
                    Line::Incomplete => break,
                }
            }
            assert!(
                buffered.len() <= max.max(1) + 1,
                "buffered {}",
                buffered.len()
            );
        }
        (out, buffered.len())
    }

    fn lines(items: &[(&str, bool)]) -> Vec<(String, bool)> {
        items.iter().map(|&(s, t)| (s.to_string(), t)).collect()
    }

    #[test]
    fn complete_lines_strip_one_cr() {
        assert_eq!(
            next_line(b"abc\r\ndef", 10),
            Line::Complete {
                line: b"abc",
                consumed: 5
            }
        );
        assert_eq!(
            next_line(b"abc\r\r\n", 10),
            Line::Complete {
                line: b"abc\r",
                consumed: 6
            }
        );
        assert_eq!(
            next_line(b"\n", 10),
            Line::Complete {
                line: b"",
                consumed: 1
            }
        );
    }

    #[test]
    fn incomplete_at_every_split_point() {
        let stream = b"first line\r\nsecond\n";
        for cut in 0..11 {
            assert_eq!(next_line(&stream[..cut], 64), Line::Incomplete, "cut {cut}");
        }
        for chunk in 1..stream.len() {
            assert_eq!(
                split(stream, 64, chunk),
                (lines(&[("first line", false), ("second", false)]), 0),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_growing_line_is_searched_once() {
        let mut scan = Scan::default();
        assert_eq!(scan.next_line(b"abcdef", 64), Line::Incomplete);
        assert_eq!(scan, Scan { searched: 6 });
        // Only what was appended is searched: a newline planted in the searched part, which a
        // caller keeping its buffer never does, goes unseen. Searching from the start again
        // would find it, and make a line sent a byte per read cost its length squared.
        assert_eq!(scan.next_line(b"ab\ndefgh", 64), Line::Incomplete);
        assert_eq!(scan, Scan { searched: 8 });
        assert_eq!(
            scan.next_line(b"abcdefgh\nnext", 64),
            Line::Complete {
                line: b"abcdefgh",
                consumed: 9
            }
        );
        // An answer other than `Incomplete` starts the next line afresh.
        assert_eq!(scan, Scan::default());
        assert_eq!(
            scan.next_line(b"next", 3),
            Line::Truncated {
                piece: b"nex",
                consumed: 3
            }
        );
        assert_eq!(scan, Scan::default());
    }

    #[test]
    fn pipelined_lines() {
        let (out, rest) = split(b"a\nb\r\n\nc", 8, 100);
        assert_eq!(out, lines(&[("a", false), ("b", false), ("", false)]));
        assert_eq!(rest, 1);
    }

    #[test]
    fn a_line_of_exactly_max_is_whole() {
        assert_eq!(next_line(b"abcd", 4), Line::Incomplete);
        assert_eq!(next_line(b"abcd\r", 4), Line::Incomplete);
        assert_eq!(
            next_line(b"abcd\r\n", 4),
            Line::Complete {
                line: b"abcd",
                consumed: 6
            }
        );
        assert_eq!(
            next_line(b"abcde", 4),
            Line::Truncated {
                piece: b"abcd",
                consumed: 4
            }
        );
        assert_eq!(
            next_line(b"abcd\rx", 4),
            Line::Truncated {
                piece: b"abcd",
                consumed: 4
            }
        );
    }

    #[test]
    fn oversized_lines_come_out_in_pieces_at_every_chunking() {
        let stream = b"0123456789abc\nok\n";
        let expected = lines(&[
            ("01234", true),
            ("56789", true),
            ("abc", true),
            ("ok", false),
        ]);
        for chunk in 1..=stream.len() {
            assert_eq!(
                split(stream, 5, chunk),
                (expected.clone(), 0),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn pieces_end_on_character_boundaries() {
        // "aé€😀": 1 + 2 + 3 + 4 bytes; every limit that fits a character cuts between them.
        let text = "aé€😀z".repeat(3);
        for max in 4..20 {
            let mut stream = text.clone().into_bytes();
            stream.push(b'\n');
            let (out, rest) = split(&stream, max, 7);
            assert_eq!(rest, 0);
            let joined: String = out.iter().map(|(s, _)| s.as_str()).collect();
            assert_eq!(joined, text, "max {max}: {out:?}");
            assert!(!joined.contains('\u{fffd}'));
        }
    }

    #[test]
    fn a_limit_below_one_character_still_makes_progress() {
        let (out, _) = split("😀\n".as_bytes(), 2, 1);
        assert_eq!(out.len(), 2);
        let (out, _) = split(b"abc\n", 0, 1);
        assert_eq!(out, lines(&[("a", true), ("b", true), ("c", true)]));
    }

    #[test]
    fn garbage_is_cut_anywhere() {
        let garbage = [0x80u8, 0x80, 0x80, 0x80, 0xff, 0xfe, 0xc3, 0xc3, 0xc3];
        for max in 1..garbage.len() {
            let at = cut(&garbage, max);
            assert!(at > 0 && at <= max && at + 3 >= max, "max {max}: {at}");
        }
        assert_eq!(cut(&garbage, 4), 4); // continuation bytes only
        assert_eq!(cut(&garbage, 5), 5); // after 0xff, which starts nothing
        assert_eq!(cut(&garbage, 7), 6); // before 0xc3, which could start a character
        // A character that straddles the cut goes whole into the next piece, whatever follows
        // the cut (it is not looked at: the answer must not depend on what has arrived).
        assert_eq!(cut("ab€".as_bytes(), 4), 2);
        assert_eq!(cut(b"ab\xe2\x82x", 4), 2);
        assert_eq!(cut(b"ab\xe2\x82", 4), 2);
        // A character that ends by the cut stays.
        assert_eq!(cut("a€x".as_bytes(), 4), 4);
    }
}
