//! Syslog over TCP: RFC 6587 framing ([`decode_frame`]) and RFC 5424 / RFC 3164 messages
//! ([`parse_message`]).
//!
//! # Framing
//!
//! RFC 6587 allows two framings on one port, and senders do not announce which they use, so each
//! frame decides for itself from its first byte:
//!
//! | first bytes          | framing                                                          |
//! |----------------------|------------------------------------------------------------------|
//! | digits, then a space | octet counting: `<len> <msg>`, `len` bytes of message            |
//! | anything else        | non-transparent: the message ends at `\n` ([`super::lines`])     |
//!
//! A `<PRI>` message starts with `<`, so it is line-framed. A plain-text line that happens to
//! start with digits and a space (`2024 was a good year`) is taken as an octet count: a
//! connection should speak one framing, and this is the rule RFC 6587 leaves.
//!
//! A message longer than the line limit is never buffered whole, in either framing: it comes out
//! as [`Frame::Truncated`] pieces, the first with the syslog header, each at most `max_line`
//! bytes and cut on a UTF-8 boundary. An octet count over the limit is therefore not an error:
//! the count says exactly where the frame ends, so the stream stays in step and no byte is lost;
//! such a frame costs what an equally long line costs. The one piece of state this needs, "in
//! the middle of a long message", is a [`Continuation`] the connection keeps.
//!
//! # Messages
//!
//! RFC 5424 is a strict grammar and is parsed here, exactly, including structured data. RFC 3164
//! is a convention with many dialects; it is parsed by `syslog_loose` (the parser Vector uses),
//! whose heuristics for hostnames, tags and timestamps are the valuable part. Its RFC 5424 side
//! is not used, because it drops a structured-data element it cannot parse without saying so,
//! and unescapes `\n` in parameter values, which RFC 5424 does not define.
//!
//! A message neither parser accepts is kept whole, as text, flagged `parse_error`: nothing a
//! client sends is dropped.

use std::borrow::Cow;

use syslog_loose::{ProcId, Variant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::record::{Body, Level, Record, Value};

use super::lines::{self, Line};

/// The longest octet count read, in digits. Ten digits count up to 9.9 GB, far past any line
/// limit, so a longer run of digits is not a count: that frame is taken as a line instead.
pub const MAX_LEN_DIGITS: usize = 10;

/// What [`decode_frame`] found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole message (framing removed); `consumed` counts the framing too. May be empty (a
    /// blank line, or a count of 0), which a caller is free to skip.
    Message { msg: &'a [u8], consumed: usize },
    /// One piece of a message longer than `max_line`, to be stored flagged `truncated`. The
    /// `first` piece holds the syslog header and is worth [`parse_message`]; the later ones are
    /// the rest of the text ([`piece_record`]).
    Truncated {
        piece: &'a [u8],
        consumed: usize,
        first: bool,
    },
    /// Not enough bytes to say; wait for more.
    Incomplete,
}

/// Where [`decode_frame`] is in the stream: between frames, or inside a long one it has begun to
/// hand out in pieces. A connection keeps one and passes it to every call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Continuation {
    /// At the start of a frame.
    #[default]
    Start,
    /// Inside a line-framed message that was cut: the rest runs to the next `\n`.
    Line,
    /// Inside an octet-counted message that was cut: this many bytes of it remain.
    Counted { remaining: usize },
}

/// Cuts the next frame or piece from the front of `buf`, messages being at most `max_line`
/// bytes (0 is taken as 1). Buffering stays within the octet-count header plus `max_line` bytes
/// (plus a `\r` for lines) whatever the sender does.
pub fn decode_frame<'a>(buf: &'a [u8], max_line: usize, cont: &mut Continuation) -> Frame<'a> {
    decode_frame_resuming(buf, max_line, cont, &mut lines::Scan::default())
}

/// [`decode_frame`] on a buffer that grows between calls, as a connection's does: `scan` keeps
/// how much of a line-framed message was already searched for its newline, so that a message
/// arriving a byte at a time is searched once, not once per byte ([`lines::Scan::next_line`]).
pub fn decode_frame_resuming<'a>(
    buf: &'a [u8],
    max_line: usize,
    cont: &mut Continuation,
    scan: &mut lines::Scan,
) -> Frame<'a> {
    let max_line = max_line.max(1);
    match *cont {
        Continuation::Start => {}
        Continuation::Line => {
            return match scan.next_line(buf, max_line) {
                Line::Complete { line, consumed } => {
                    *cont = Continuation::Start;
                    piece(line, consumed, false)
                }
                Line::Truncated { piece: p, consumed } => piece(p, consumed, false),
                Line::Incomplete => Frame::Incomplete,
            };
        }
        Continuation::Counted { remaining } => {
            return match counted_piece(buf, remaining, max_line) {
                Some(len) => {
                    *cont = match remaining - len {
                        0 => Continuation::Start,
                        rest => Continuation::Counted { remaining: rest },
                    };
                    piece(&buf[..len], len, false)
                }
                None => Frame::Incomplete,
            };
        }
    }
    match header(buf) {
        Header::Incomplete => Frame::Incomplete,
        Header::Counted { len, header } => {
            let body = &buf[header..];
            if len <= max_line {
                return match body.get(..len) {
                    Some(msg) => Frame::Message {
                        msg,
                        consumed: header + len,
                    },
                    None => Frame::Incomplete,
                };
            }
            match counted_piece(body, len, max_line) {
                Some(first) => {
                    *cont = Continuation::Counted {
                        remaining: len - first,
                    };
                    piece(&body[..first], header + first, true)
                }
                None => Frame::Incomplete,
            }
        }
        Header::Line => match scan.next_line(buf, max_line) {
            Line::Complete { line, consumed } => Frame::Message {
                msg: line,
                consumed,
            },
            Line::Truncated { piece: p, consumed } => {
                *cont = Continuation::Line;
                piece(p, consumed, true)
            }
            Line::Incomplete => Frame::Incomplete,
        },
    }
}

fn piece(piece: &[u8], consumed: usize, first: bool) -> Frame<'_> {
    Frame::Truncated {
        piece,
        consumed,
        first,
    }
}

/// How long the next piece of a counted message with `remaining` bytes left is, once `buf` holds
/// it: the rest of the message if it fits the limit, else `max_line` bytes cut on a character
/// boundary.
fn counted_piece(buf: &[u8], remaining: usize, max_line: usize) -> Option<usize> {
    if remaining <= max_line {
        (buf.len() >= remaining).then_some(remaining)
    } else {
        (buf.len() >= max_line).then(|| lines::cut(buf, max_line))
    }
}

/// What the first bytes of a frame say about its framing.
enum Header {
    /// `header` bytes of digits and a space announce a message of `len` bytes.
    Counted { len: usize, header: usize },
    /// Only digits so far: a count or a line, the next byte will say.
    Incomplete,
    /// Not an octet count: the frame is a line.
    Line,
}

fn header(buf: &[u8]) -> Header {
    let digits = buf
        .iter()
        .take(MAX_LEN_DIGITS + 1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > MAX_LEN_DIGITS {
        return Header::Line;
    }
    match buf.get(digits) {
        None => Header::Incomplete,
        Some(b' ') => {
            // At most ten digits fit a 64-bit usize; checked all the same.
            let len = buf[..digits].iter().try_fold(0usize, |n, &d| {
                n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
            });
            match len {
                Some(len) => Header::Counted {
                    len,
                    header: digits + 1,
                },
                None => Header::Line,
            }
        }
        Some(_) => Header::Line,
    }
}

/// A later piece of a cut message, as a record: its text, flagged `truncated`.
pub fn piece_record(piece: &[u8]) -> Record<'_> {
    Record {
        body: Body::Message(crate::record::lossy_utf8(piece)),
        truncated: true,
        ..Record::default()
    }
}

/// Facility names, by code, as syslog implementations print them.
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clockd", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// Parses one syslog message (RFC 5424, else RFC 3164) into a record.
///
/// PRI gives the level and a `facility` field; the timestamp, hostname (`host`), app-name or
/// tag (`service`) and a numeric procid or PID (`process_id`) fill the record; a procid that is
/// not a number, the msgid and every structured-data parameter (`sdid.name`) become fields.
/// `-` (NILVALUE) means "not given". The message loses a leading UTF-8 BOM and trailing line
/// ends. Invalid UTF-8 is replaced, not rejected.
///
/// An RFC 3164 timestamp has no year and no zone: it is read as UTC in the current year, or the
/// previous one for a December message read in January. That is a guess the format forces (a
/// sender with a wrong clock or in another zone is misdated); it reads the clock only for such
/// messages.
pub fn parse_message(msg: &[u8]) -> Record<'_> {
    parse_message_with_clock(msg, now_year_month)
}

fn now_year_month() -> (i32, u8) {
    let now = OffsetDateTime::now_utc();
    (now.year(), u8::from(now.month()))
}

/// [`parse_message`], with the clock that dates RFC 3164 timestamps given as (year, month).
pub fn parse_message_with_clock(msg: &[u8], clock: fn() -> (i32, u8)) -> Record<'_> {
    match crate::record::lossy_utf8(msg) {
        Cow::Borrowed(text) => parse_text(text, clock),
        Cow::Owned(text) => parse_text(&text, clock).into_static(),
    }
}

fn parse_text(text: &str, clock: fn() -> (i32, u8)) -> Record<'_> {
    if let Some(record) = parse_5424(text) {
        return record;
    }
    if let Some(record) = parse_3164(text, clock) {
        return record;
    }
    // Kept whole. A readable PRI still says how bad it was.
    let mut record = Record {
        body: Body::Message(Cow::Borrowed(text)),
        parse_error: true,
        ..Record::default()
    };
    if let Some((pri, _)) = pri(text) {
        set_pri(&mut record, pri);
    }
    record
}

/// `<PRI>`: one to three digits, at most 191 (facility 23, severity 7).
fn pri(text: &str) -> Option<(u8, &str)> {
    let rest = text.strip_prefix('<')?;
    let (digits, rest) = rest.split_once('>')?;
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pri: u8 = digits.parse().ok().filter(|&p| p <= 191)?;
    Some((pri, rest))
}

fn set_pri(record: &mut Record<'_>, pri: u8) {
    record.level = Level::from_syslog(pri & 7);
    record
        .fields
        .push(("facility".into(), FACILITIES[usize::from(pri >> 3)].into()));
}

/// RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]`. Header fields are
/// separated by one space or more (the RFC says one; some senders pad).
fn parse_5424(text: &str) -> Option<Record<'_>> {
    let (pri, rest) = pri(text)?;
    let (version, rest) = token(rest)?;
    if !matches!(version.len(), 1..=3)
        || version.starts_with('0')
        || !version.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let (timestamp, rest) = token(rest)?;
    let (hostname, rest) = token(rest)?;
    let (app, rest) = token(rest)?;
    let (procid, rest) = token(rest)?;
    let (msgid, rest) = token(rest)?;
    let mut record = Record::default();
    set_pri(&mut record, pri);
    if timestamp != "-" {
        record.timestamp_ns = rfc3339_ns(timestamp)?;
    }
    record.host = nil(hostname).into();
    record.service = nil(app).into();
    set_procid(&mut record, nil(procid));
    if !nil(msgid).is_empty() {
        record.fields.push(("msgid".into(), msgid.into()));
    }
    let rest = structured_data(rest, &mut record.fields)?;
    // One space separates SD from MSG; a sender that leaves it out still gets its message.
    let msg = rest.strip_prefix(' ').unwrap_or(rest);
    record.body = Body::Message(clean_message(msg).into());
    Some(record)
}

/// The next header field and what follows the spaces after it; `None` when the field is empty or
/// the text ends without a space after it.
fn token(text: &str) -> Option<(&str, &str)> {
    let (field, rest) = text.split_once(' ')?;
    (!field.is_empty()).then(|| (field, rest.trim_start_matches(' ')))
}

/// NILVALUE (`-`) means "not given".
fn nil(field: &str) -> &str {
    if field == "-" { "" } else { field }
}

fn set_procid<'a>(record: &mut Record<'a>, procid: &'a str) {
    if procid.is_empty() {
        return;
    }
    match procid.parse::<u32>() {
        Ok(pid) => record.process_id = pid,
        Err(_) => record.fields.push(("procid".into(), procid.into())),
    }
}

/// RFC 3339 with an offset, to Unix nanoseconds. Before 1970 or past 2554 is not representable
/// in a record and reads as 0 ("stamp on arrival"); a malformed timestamp is `None`.
fn rfc3339_ns(text: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some(u64::try_from(t.unix_timestamp_nanos()).unwrap_or(0))
}

/// Parses STRUCTURED-DATA at the start of `text` into `fields` and returns what follows it.
/// `None` when it is malformed: RFC 5424 gives no way to find where a broken element ends.
fn structured_data<'a>(
    text: &'a str,
    fields: &mut Vec<(Cow<'a, str>, Value<'a>)>,
) -> Option<&'a str> {
    if let Some(rest) = text.strip_prefix('-') {
        return Some(rest);
    }
    let mut rest = text.strip_prefix('[')?;
    loop {
        let id_len = rest.find([' ', ']'])?;
        let id = sd_name(&rest[..id_len])?;
        rest = &rest[id_len..];
        while let Some(param) = rest.strip_prefix(' ') {
            let (name, value) = param.split_once("=\"")?;
            let name = sd_name(name)?;
            let (value, after) = sd_value(value)?;
            fields.push((format!("{id}.{name}").into(), value.into()));
            rest = after;
        }
        rest = rest.strip_prefix(']')?;
        match rest.strip_prefix('[') {
            Some(next) => rest = next,
            None => return Some(rest),
        }
    }
}

/// SD-NAME: 1 to 32 printable US-ASCII characters, except `=`, space, `]` and `"`.
fn sd_name(name: &str) -> Option<&str> {
    let valid = matches!(name.len(), 1..=32)
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"'));
    valid.then_some(name)
}

/// A PARAM-VALUE after its opening quote, unescaped, and what follows its closing quote.
fn sd_value(text: &str) -> Option<(Cow<'_, str>, &str)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    loop {
        match *bytes.get(i)? {
            b'"' => break,
            // Skips the escaped byte; a backslash at the very end makes `get` fail: malformed.
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Some((unescape(&text[..i]), &text[i + 1..]))
}

/// Only `\"`, `\\` and `\]` are escapes in a PARAM-VALUE; any other backslash is kept as it is
/// (RFC 5424, 6.3.3). Borrows unless there is something to unescape.
fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(&next @ ('"' | '\\' | ']'))) => {
                out.push(next);
                chars.next();
            }
            (c, _) => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The message: without a UTF-8 BOM (RFC 5424 marks UTF-8 with it) and without line ends at the
/// end (octet-counted senders often include the `\n` of their line framing).
fn clean_message(msg: &str) -> &str {
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    msg.trim_end_matches(['\r', '\n'])
}

/// RFC 3164 through `syslog_loose`, in UTC. Its structured data (it only takes well-formed
/// elements after the tag; anything else stays in the message) gets RFC 5424 unescaping.
fn parse_3164(text: &str, clock: fn() -> (i32, u8)) -> Option<Record<'_>> {
    let year = move |(month, ..): syslog_loose::IncompleteDate| {
        let (year, now_month) = clock();
        if month == 12 && now_month == 1 {
            year - 1
        } else {
            year
        }
    };
    let m = syslog_loose::parse_message_with_year_exact_tz(
        text,
        year,
        Some(chrono::Utc),
        Variant::RFC3164,
    )
    .ok()?;
    let mut record = Record::default();
    if let Some(severity) = m.severity {
        record.level = Level::from_syslog(severity as u8);
    }
    if let Some(facility) = m.facility {
        record
            .fields
            .push(("facility".into(), FACILITIES[facility as usize].into()));
    }
    if let Some(t) = m.timestamp {
        record.timestamp_ns = t
            .timestamp_nanos_opt()
            .and_then(|ns| u64::try_from(ns).ok())
            .unwrap_or(0);
    }
    record.host = m.hostname.unwrap_or_default().into();
    record.service = m.appname.unwrap_or_default().into();
    match m.procid {
        Some(ProcId::PID(pid)) => match u32::try_from(pid) {
            Ok(pid) => record.process_id = pid,
            Err(_) => record
                .fields
                .push(("procid".into(), pid.to_string().into())),
        },
        Some(ProcId::Name(name)) => set_procid(&mut record, nil(name)),
        None => {}
    }
    if let Some(msgid) = m.msgid {
        record.fields.push(("msgid".into(), msgid.into()));
    }
    for element in &m.structured_data {
        for &(name, value) in &element.params {
            record.fields.push((
                format!("{}.{name}", element.id).into(),
                unescape(value).into(),
            ));
        }
    }
    record.body = Body::Message(clean_message(m.msg).into());
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a connection makes of a stream fed `chunk` bytes at a time: (kind, text) per frame,
    /// kind being `M` (message), `F` (first piece) or `P` (later piece); and what is left over.
    fn frames(stream: &[u8], max: usize, chunk: usize) -> (Vec<(char, String)>, usize) {
        let mut buffered = Vec::new();
        let mut out = Vec::new();
        let mut cont = Continuation::default();
        let mut scan = lines::Scan::default();
        for part in stream.chunks(chunk.max(1)) {
            buffered.extend_from_slice(part);
            loop {
                let frame = decode_frame_resuming(&buffered, max, &mut cont, &mut scan);
                let (kind, text, consumed) = match frame {
                    Frame::Message { msg, consumed } => ('M', msg, consumed),
                    Frame::Truncated {
                        piece,
                        consumed,
                        first,
                    } => {
                        assert!(piece.len() <= max && consumed >= piece.len());
                        (if first { 'F' } else { 'P' }, piece, consumed)
                    }
                    Frame::Incomplete => break,
                };
                assert!(consumed > 0 && consumed <= buffered.len());
                out.push((kind, String::from_utf8_lossy(text).into_owned()));
                buffered.drain(..consumed);
            }
            assert!(
                buffered.len() <= MAX_LEN_DIGITS + 2 + max,
                "{}",
                buffered.len()
            );
        }
        (out, buffered.len())
    }

    fn expect(items: &[(char, &str)]) -> Vec<(char, String)> {
        items.iter().map(|&(k, s)| (k, s.to_string())).collect()
    }

    const STREAM: &[u8] = b"<13>one\r\n10 <14>two\nxx0 <15>three\n";

    #[test]
    fn a_growing_line_is_searched_once() {
        // As in `lines`: a newline planted in what was already searched goes unseen, in a
        // message's first bytes and in the rest of a cut one alike.
        let (mut cont, mut scan) = (Continuation::default(), lines::Scan::default());
        let mut frame = |buf: &'static [u8]| decode_frame_resuming(buf, 8, &mut cont, &mut scan);
        assert_eq!(frame(b"<13>ab"), Frame::Incomplete);
        assert_eq!(frame(b"<1\n>abc"), Frame::Incomplete);
        assert_eq!(
            frame(b"<13>abc\n"),
            Frame::Message {
                msg: b"<13>abc",
                consumed: 8
            }
        );
        assert_eq!(frame(b"<13>abcdefghij"), piece(b"<13>abcd", 8, true));
        assert_eq!(frame(b"efghij"), Frame::Incomplete);
        assert_eq!(frame(b"e\nghijk"), Frame::Incomplete);
        assert_eq!(frame(b"efghijk\n"), piece(b"efghijk", 8, false));
        assert_eq!(
            frame(b"<13>x\n"),
            Frame::Message {
                msg: b"<13>x",
                consumed: 6
            }
        );
    }

    #[test]
    fn pipelined_frames_of_both_framings() {
        let expected = expect(&[
            ('M', "<13>one"),
            ('M', "<14>two\nxx"),
            ('M', ""),
            ('M', "<15>three"),
        ]);
        assert_eq!(frames(STREAM, 64, STREAM.len()), (expected, 0));
    }

    #[test]
    fn incomplete_at_every_split_point() {
        let whole = frames(STREAM, 64, STREAM.len());
        for chunk in 1..STREAM.len() {
            assert_eq!(frames(STREAM, 64, chunk), whole, "chunk {chunk}");
        }
        let mut cont = Continuation::default();
        for cut in 0..7 {
            assert_eq!(
                decode_frame(&STREAM[..cut], 64, &mut cont),
                Frame::Incomplete
            );
        }
        for cut in 0..13 {
            let buf = b"10 <14>two\nxx";
            assert_eq!(decode_frame(&buf[..cut], 64, &mut cont), Frame::Incomplete);
        }
        assert_eq!(cont, Continuation::Start);
    }

    #[test]
    fn oversized_frames_come_out_in_pieces() {
        let stream = b"20 <13>0123456789abcdef<13>a long line without end\nok\n";
        let expected = expect(&[
            ('F', "<13>0123"),
            ('P', "456789ab"),
            ('P', "cdef"),
            ('F', "<13>a lo"),
            ('P', "ng line "),
            ('P', "without "),
            ('P', "end"),
            ('M', "ok"),
        ]);
        for chunk in 1..=stream.len() {
            assert_eq!(
                frames(stream, 8, chunk),
                (expected.clone(), 0),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn counted_pieces_keep_characters_whole() {
        let msg = "<13>é€😀".repeat(4);
        let stream = format!("{} {msg}x\n", msg.len());
        for max in 4..20 {
            let (out, rest) = frames(stream.as_bytes(), max, 5);
            assert_eq!(rest, 0);
            let joined: String = out[..out.len() - 1]
                .iter()
                .map(|(_, s)| s.as_str())
                .collect();
            assert_eq!(joined, msg, "max {max}: {out:?}");
            assert_eq!(out.last(), Some(&('M', "x".to_string())));
        }
    }

    #[test]
    fn what_is_not_a_count_is_a_line() {
        // Too many digits, digits then not a space, a huge count.
        let (out, _) = frames(b"12345678901 x\n12abc\n", 64, 3);
        assert_eq!(out, expect(&[('M', "12345678901 x"), ('M', "12abc")]));
        let mut cont = Continuation::default();
        let frame = decode_frame(b"9999999999 <13>x", 4, &mut cont);
        assert!(
            matches!(
                frame,
                Frame::Truncated {
                    first: true,
                    consumed: 15,
                    ..
                }
            ),
            "{frame:?}"
        );
        assert_eq!(
            cont,
            Continuation::Counted {
                remaining: 9_999_999_999 - 4
            }
        );
    }

    #[test]
    fn garbage_never_stalls() {
        let garbage: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        for max in [1, 7, 64, 1000] {
            for chunk in [1, 13, 5000] {
                frames(&garbage, max, chunk);
            }
        }
    }

    /// A clock for RFC 3164: November 2025.
    fn november() -> (i32, u8) {
        (2025, 11)
    }

    fn parse(msg: &str) -> Record<'_> {
        parse_message_with_clock(msg.as_bytes(), november)
    }

    fn field<'r>(r: &'r Record<'_>, key: &str) -> Option<&'r str> {
        r.field(key).and_then(Value::as_str)
    }

    #[test]
    fn rfc5424_examples() {
        // RFC 5424, 6.5, examples 1 to 4.
        let r = parse(
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick on /dev/pts/8",
        );
        assert_eq!(r.level, Level::Critical);
        assert_eq!(field(&r, "facility"), Some("auth"));
        assert_eq!(r.timestamp_ns, 1_065_910_455_003_000_000);
        assert_eq!(r.host, "mymachine.example.com");
        assert_eq!(r.service, "su");
        assert_eq!(r.process_id, 0);
        assert_eq!(field(&r, "msgid"), Some("ID47"));
        assert_eq!(
            r.body,
            Body::Message("'su root' failed for lonvick on /dev/pts/8".into())
        );
        assert!(!r.parse_error);

        let r = parse(
            "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
        );
        assert_eq!(r.level, Level::Notice);
        assert_eq!(field(&r, "facility"), Some("local4"));
        assert_eq!(r.timestamp_ns, 1_061_727_255_000_003_000);
        assert_eq!(r.process_id, 8710);
        assert_eq!(
            r.body,
            Body::Message("%% It's time to make the do-nuts.".into())
        );

        let r = parse(
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry..."#,
        );
        let sd: Vec<(&str, &str)> = r.fields[2..]
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_str().unwrap()))
            .collect();
        assert_eq!(
            sd,
            [
                ("exampleSDID@32473.iut", "3"),
                ("exampleSDID@32473.eventSource", "Application"),
                ("exampleSDID@32473.eventID", "1011"),
            ]
        );
        assert_eq!(
            r.body,
            Body::Message("An application event log entry...".into())
        );

        let r = parse(
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#,
        );
        assert_eq!(field(&r, "examplePriority@32473.class"), Some("high"));
        assert_eq!(r.body, Body::Message("".into()));
    }

    #[test]
    fn nil_values_and_named_procids() {
        let r = parse("<14>1 - - - - - -");
        assert_eq!(
            (r.timestamp_ns, r.host.as_ref(), r.service.as_ref()),
            (0, "", "")
        );
        assert_eq!(r.fields, vec![("facility".into(), "user".into())]);
        assert!(!r.parse_error);
        let r = parse("<14>1 - host app worker-3 - - hi");
        assert_eq!(field(&r, "procid"), Some("worker-3"));
        assert_eq!(r.process_id, 0);
        // Padding between header fields is tolerated.
        let r = parse("<14>1  2025-11-22T00:26:13Z   host app 7 - -  two spaces");
        assert_eq!((r.host.as_ref(), r.process_id), ("host", 7));
        assert_eq!(r.body, Body::Message(" two spaces".into()));
    }

    #[test]
    fn structured_data_escapes() {
        let r = parse(
            r#"<14>1 - - - - - [id a="q\"uote" b="back\\slash" c="br\]acket" d="C:\new" e=""] m"#,
        );
        let sd: Vec<(&str, &str)> = r.fields[1..]
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_str().unwrap()))
            .collect();
        assert_eq!(
            sd,
            [
                ("id.a", "q\"uote"),
                ("id.b", "back\\slash"),
                ("id.c", "br]acket"),
                ("id.d", "C:\\new"),
                ("id.e", ""),
            ]
        );
        assert_eq!(r.body, Body::Message("m".into()));
    }

    #[test]
    fn rfc3164_messages() {
        let r =
            parse("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(r.level, Level::Critical);
        assert_eq!(field(&r, "facility"), Some("auth"));
        assert_eq!(r.timestamp_ns, 1_760_220_855_000_000_000); // 2025-10-11T22:14:15Z
        assert_eq!((r.host.as_ref(), r.service.as_ref()), ("mymachine", "su"));
        assert_eq!(
            r.body,
            Body::Message("'su root' failed for lonvick on /dev/pts/8".into())
        );
        assert!(!r.parse_error);

        let r = parse("<13>Feb  5 17:32:18 10.0.0.99 sshd[1234]: Accepted publickey");
        assert_eq!(r.process_id, 1234);
        assert_eq!((r.host.as_ref(), r.service.as_ref()), ("10.0.0.99", "sshd"));
        assert_eq!(r.body, Body::Message("Accepted publickey".into()));
    }

    #[test]
    fn rfc3164_december_read_in_january_is_last_year() {
        let r = parse_message_with_clock(b"<13>Dec 31 23:59:59 host app: x", || (2026, 1));
        assert_eq!(r.timestamp_ns, 1_767_225_599_000_000_000); // 2025-12-31T23:59:59Z
        let r = parse_message_with_clock(b"<13>Jan  1 00:00:01 host app: x", || (2026, 1));
        assert_eq!(r.timestamp_ns, 1_767_225_601_000_000_000);
    }

    #[test]
    fn malformed_messages_are_kept_whole() {
        for (msg, level) in [
            ("hello world", Level::Info),
            ("<13>hello", Level::Notice),
            ("<999>1 - - - - - -", Level::Info),
            ("<14>1 - h a - - [bad", Level::Info),
            (
                "<11>1 2003-13-45T99:00:00Z h a - - - bad date",
                Level::Error,
            ),
            ("<14>1 - h a - - [id a=\"unterminated]", Level::Info),
            ("", Level::Info),
            ("<", Level::Info),
        ] {
            let r = parse(msg);
            assert!(r.parse_error, "{msg}: {r:?}");
            assert_eq!(r.body, Body::Message(msg.into()), "{msg}");
            assert_eq!(r.level, level, "{msg}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let r = parse_message_with_clock(b"<14>1 - h\xff a - - - bad \xfe byte", november);
        assert_eq!(r.host, "h\u{fffd}");
        assert_eq!(r.body, Body::Message("bad \u{fffd} byte".into()));
    }

    #[test]
    fn huge_and_hostile_messages_are_quick() {
        let big = |head: &str, unit: &str| {
            let mut s = head.to_string();
            while s.len() < 1 << 20 {
                s.push_str(unit);
            }
            s
        };
        for msg in [
            big("<13>Oct 11 22:14:15 host ", "["),
            big("<13>Oct 11 22:14:15 host app: ", "[a b=\"c\"]"),
            big("<13>Oct 11 22:14:15 ", "x"),
            big("<14>1 - - - - - ", "[a b=\"c\"]"),
            big("<14>1 - - - - - [a b=\"", "\\\""),
            big("", "<13>"),
            big("", " "),
        ] {
            let start = std::time::Instant::now();
            let r = parse(&msg);
            // Linear: a few milliseconds in a release build, well under a second in a debug one.
            assert!(start.elapsed().as_secs() < 2, "{:?}", &msg[..40]);
            if r.parse_error {
                assert_eq!(r.body, Body::Message(msg.as_str().into()));
            }
        }
    }

    #[test]
    fn pieces_are_text() {
        let r = piece_record(b"rest \xff");
        assert!(r.truncated);
        assert_eq!(r.body, Body::Message("rest \u{fffd}".into()));
    }
}
