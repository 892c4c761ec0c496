//! The fast path of [`native`](super::native) decoding: record and batch frames in the shape every
//! encoder produces (one segment, no far pointers), read straight from the bytes.
//!
//! The `capnp` crate checks every pointer again at each access, through its arena and read
//! limiter: on a 200-byte record that was about 900 instructions, 45% of the server's work per
//! record. Here a frame is validated first, whole, in one pass over its pointers (kinds, bounds,
//! NUL terminators, the same traversal budget as the crate's read limiter), and only a frame that
//! passes is decoded, with no further checks that could fail. Anything else (hello frames,
//! several segments, far pointers, list encodings the schema allows but no encoder writes,
//! unknown union members, a frame over the budget) is [`Unsupported`] and the caller decodes it
//! with the crate, which stays the reference: the tests and the `native_record` fuzz target
//! check that both give the same records, or both an error, for every input.
//!
//! Layout (Cap'n Proto encoding spec, standard unpacked serialization): a segment table (segment
//! count − 1, then each size in words, padded to a word), then the segment. A struct pointer is
//! `offset << 2 | 0` in its low 32 bits (offset in words from the word after the pointer) and the
//! data and pointer section sizes in its high 32; a list pointer is `offset << 2 | 1` and
//! `count << 3 | element size`; an inline-composite list (element size 7) counts words and starts
//! with a tag word shaped like a struct pointer whose offset is the element count.

use crate::logmill_capnp::Level as WireLevel;
use crate::record::{Body, Level, Record, lossy_utf8};

/// The frame is valid Cap'n Proto the fast path does not read, or not valid at all: decode it
/// with the crate, which handles the one and gives the precise error for the other.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsupported;

/// `ClientFrame`'s union tag values (`schema/logmill.capnp`).
const CLIENT_FRAME_RECORD: u16 = 0;
const CLIENT_FRAME_BATCH: u16 = 1;
/// `LogRecord`'s pointer slots: the body (`message` or `json`), nine optional texts, `fields`.
const FIELDS: usize = 10;

const STRUCT: u64 = 0;
const LIST: u64 = 1;
const BYTE_ELEMENTS: u64 = 2;
const INLINE_COMPOSITE: u64 = 7;

/// One segment's words, read with bounds checks (a failed check is [`Unsupported`]).
#[derive(Clone, Copy)]
struct Segment<'a> {
    bytes: &'a [u8],
}

/// Where a struct is, in words from the segment start, and its section sizes.
#[derive(Clone, Copy)]
struct StructAt {
    data: usize,
    data_words: usize,
    pointers: usize,
    pointer_count: usize,
}

/// `count` structs of the same sizes, one after the other: an inline-composite list's elements,
/// or the one record of a record frame.
#[derive(Clone, Copy)]
struct Structs {
    first: usize,
    count: usize,
    data_words: usize,
    pointer_count: usize,
}

impl Structs {
    fn get(&self, i: usize) -> StructAt {
        let data = self.first + i * (self.data_words + self.pointer_count);
        StructAt {
            data,
            data_words: self.data_words,
            pointers: data + self.data_words,
            pointer_count: self.pointer_count,
        }
    }
}

impl<'a> Segment<'a> {
    fn words(&self) -> usize {
        self.bytes.len() / 8
    }

    fn word(&self, index: usize) -> Result<u64, Unsupported> {
        let start = index.checked_mul(8).ok_or(Unsupported)?;
        let bytes = self.bytes.get(start..start + 8).ok_or(Unsupported)?;
        Ok(u64::from_le_bytes(
            bytes.try_into().map_err(|_| Unsupported)?,
        ))
    }

    /// The word a pointer at `at` points to: one past the pointer, plus its signed offset.
    fn target(&self, at: usize, pointer: u64) -> Result<usize, Unsupported> {
        let offset = i64::from((pointer as u32 as i32) >> 2);
        let target = (at as i64).checked_add(1 + offset).ok_or(Unsupported)?;
        usize::try_from(target).map_err(|_| Unsupported)
    }

    /// True if `len` words from `start` lie inside the segment.
    fn contains(&self, start: usize, len: usize) -> bool {
        start
            .checked_add(len)
            .is_some_and(|end| end <= self.words())
    }

    /// The struct a (non-null) struct pointer at `at` points to.
    fn struct_at(&self, at: usize, pointer: u64) -> Result<StructAt, Unsupported> {
        if pointer & 3 != STRUCT || pointer == 0 {
            return Err(Unsupported);
        }
        let data = self.target(at, pointer)?;
        let data_words = usize::from((pointer >> 32) as u16);
        let pointer_count = usize::from((pointer >> 48) as u16);
        if data_words + pointer_count == 0 || !self.contains(data, data_words + pointer_count) {
            return Err(Unsupported);
        }
        Ok(StructAt {
            data,
            data_words,
            pointers: data + data_words,
            pointer_count,
        })
    }

    /// The pointer in slot `index` of `s`: its position and value (0, null, past the section).
    fn pointer(&self, s: StructAt, index: usize) -> (usize, u64) {
        let at = s.pointers + index;
        if index < s.pointer_count {
            (at, self.word(at).unwrap_or(0))
        } else {
            (at, 0)
        }
    }

    /// `N` bytes of `s`'s data section at byte `offset`; zeros past the section, as the
    /// encoding says of fields a smaller (older) struct does not have.
    fn data<const N: usize>(&self, s: StructAt, offset: usize) -> [u8; N] {
        if offset + N > s.data_words * 8 {
            return [0; N];
        }
        let start = s.data * 8 + offset;
        self.bytes
            .get(start..start + N)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; N])
    }

    /// The elements of the inline-composite list a pointer at `at` points to, and the words the
    /// list takes (tag included).
    fn struct_list(&self, at: usize, pointer: u64) -> Result<(Structs, usize), Unsupported> {
        if pointer & 3 != LIST || (pointer >> 32) & 7 != INLINE_COMPOSITE {
            return Err(Unsupported);
        }
        let tag_at = self.target(at, pointer)?;
        let words = (pointer >> 35) as usize;
        if !self.contains(tag_at, words + 1) {
            return Err(Unsupported);
        }
        let tag = self.word(tag_at)?;
        if tag & 3 != STRUCT {
            return Err(Unsupported);
        }
        let count = (tag as u32 >> 2) as usize;
        let data_words = usize::from((tag >> 32) as u16);
        let pointer_count = usize::from((tag >> 48) as u16);
        let step = data_words + pointer_count;
        // Zero-sized elements would let a few bytes declare many records; the crate's
        // amplification rules decide those.
        if step == 0 || count.checked_mul(step).is_none_or(|w| w > words) {
            return Err(Unsupported);
        }
        let list = Structs {
            first: tag_at + 1,
            count,
            data_words,
            pointer_count,
        };
        Ok((list, words + 1))
    }

    /// The bytes of the text a pointer at `at` points to, without its NUL, and the words it
    /// takes; a null pointer is the empty text.
    fn text(&self, at: usize, pointer: u64) -> Result<(&'a [u8], usize), Unsupported> {
        if pointer == 0 {
            return Ok((&[], 0));
        }
        if pointer & 3 != LIST || (pointer >> 32) & 7 != BYTE_ELEMENTS {
            return Err(Unsupported);
        }
        let start = self.target(at, pointer)?;
        let len = (pointer >> 35) as usize;
        let words = len.div_ceil(8);
        if len == 0 || !self.contains(start, words) {
            return Err(Unsupported);
        }
        let bytes = &self.bytes[start * 8..start * 8 + len];
        match bytes.split_last() {
            Some((0, text)) => Ok((text, words)),
            _ => Err(Unsupported),
        }
    }

    /// The first `n` pointer slots of `s` (fewer if it has fewer), with their positions; read
    /// as one slice, so a record's slots cost one bounds check, not one each.
    fn pointers(&self, s: StructAt, n: usize) -> impl Iterator<Item = (usize, u64)> + 'a {
        let n = n.min(s.pointer_count);
        let slots = self
            .bytes
            .get(s.pointers * 8..(s.pointers + n) * 8)
            .unwrap_or(&[]);
        let first = s.pointers;
        slots.chunks_exact(8).enumerate().map(move |(i, word)| {
            let word: [u8; 8] = word.try_into().expect("chunks_exact yields 8 bytes");
            (first + i, u64::from_le_bytes(word))
        })
    }

    /// The text slots `0..N` of `s`, already validated (an invalid one reads as empty).
    fn valid_texts<const N: usize>(&self, s: StructAt) -> [&'a [u8]; N] {
        let mut texts: [&[u8]; N] = [&[]; N];
        for ((at, pointer), text) in self.pointers(s, N).zip(&mut texts) {
            if pointer != 0 {
                // `validate` checked the kind, the bounds and the NUL: only locate the bytes.
                let start = (at as i64 + 1 + i64::from((pointer as u32 as i32) >> 2)) as usize;
                let len = ((pointer >> 35) as usize).saturating_sub(1);
                *text = self
                    .bytes
                    .get(start.wrapping_mul(8)..start.wrapping_mul(8).wrapping_add(len))
                    .unwrap_or(&[]);
            }
        }
        texts
    }
}

/// The one segment of a single-segment message (the segment table is 8 bytes: a segment count
/// of one, minus one, then its size in words). Bytes after the segment are ignored, as the crate
/// ignores them.
fn single_segment(payload: &[u8]) -> Result<Segment<'_>, Unsupported> {
    let header = payload.get(..8).ok_or(Unsupported)?;
    let (count, words) = header.split_at(4);
    if count != [0, 0, 0, 0] {
        return Err(Unsupported);
    }
    let words = u32::from_le_bytes(words.try_into().map_err(|_| Unsupported)?) as usize;
    let bytes = payload
        .get(8..8 + words.checked_mul(8).ok_or(Unsupported)?)
        .ok_or(Unsupported)?;
    Ok(Segment { bytes })
}

/// Decodes a record or batch frame, handing each record to `on_record`, or says [`Unsupported`]
/// before handing over any. `budget` is the crate's traversal limit for this payload, in words;
/// `max_records` the most records the payload may declare.
///
/// # Errors
/// [`Unsupported`]: decode this frame with the crate.
pub fn decode<'a>(
    payload: &'a [u8],
    budget: usize,
    max_records: usize,
    mut on_record: impl FnMut(Record<'a>),
) -> Result<usize, Unsupported> {
    let segment = single_segment(payload)?;
    let mut budget = budget;
    let mut spend = |words: usize| -> Result<(), Unsupported> {
        budget = budget.checked_sub(words).ok_or(Unsupported)?;
        Ok(())
    };
    let root = segment.struct_at(0, segment.word(0)?)?;
    spend(root.data_words + root.pointer_count)?;
    if root.data_words == 0 || root.pointer_count == 0 {
        return Err(Unsupported);
    }
    let (union_at, union) = segment.pointer(root, 0);
    let records = match u16::from_le_bytes(segment.data(root, 0)) {
        CLIENT_FRAME_RECORD => {
            let r = segment.struct_at(union_at, union)?;
            spend(r.data_words + r.pointer_count)?;
            Structs {
                first: r.data,
                count: 1,
                data_words: r.data_words,
                pointer_count: r.pointer_count,
            }
        }
        CLIENT_FRAME_BATCH => {
            let (list, words) = segment.struct_list(union_at, union)?;
            spend(words)?;
            list
        }
        _ => return Err(Unsupported),
    };
    if records.count > max_records {
        return Err(Unsupported);
    }
    // Pass 1: every pointer the records use, checked and counted; nothing is handed over yet.
    for i in 0..records.count {
        spend(validate(segment, records.get(i))?)?;
    }
    // Pass 2: the frame is valid; build the records.
    for i in 0..records.count {
        on_record(read(segment, records.get(i)));
    }
    Ok(records.count)
}

/// Checks what [`read`] will read of record `r`; returns the words its texts and field list
/// take (what the crate's read limiter counts).
fn validate(segment: Segment<'_>, r: StructAt) -> Result<usize, Unsupported> {
    if u16::from_le_bytes(segment.data(r, BODY_TAG)) > BODY_JSON {
        return Err(Unsupported);
    }
    let mut words = 0;
    for (at, pointer) in segment.pointers(r, FIELDS) {
        if pointer != 0 {
            words += segment.text(at, pointer)?.1;
        }
    }
    let (at, pointer) = segment.pointer(r, FIELDS);
    if pointer != 0 {
        let (fields, list_words) = segment.struct_list(at, pointer)?;
        words += list_words;
        for i in 0..fields.count {
            let field = fields.get(i);
            for (at, pointer) in segment.pointers(field, 2) {
                words += segment.text(at, pointer)?.1;
            }
        }
    }
    Ok(words)
}

/// `LogRecord`'s data section: byte offsets of its fields (`schema/logmill.capnp`). A schema
/// change that moves a field fails `takes_what_the_encoder_writes`, which sets every field
/// through the generated builder and reads it back here.
const TIMESTAMP: usize = 0;
const LEVEL: usize = 8;
const BODY_TAG: usize = 10;
const LINE: usize = 12;
const PROCESS_ID: usize = 16;
const THREAD_ID: usize = 24;
const BODY_JSON: u16 = 1;

/// Record `r`, which [`validate`] accepted.
fn read<'a>(segment: Segment<'a>, r: StructAt) -> Record<'a> {
    let [
        body,
        logger,
        host,
        service,
        module,
        file,
        function,
        process_name,
        thread_name,
        stack,
    ] = segment.valid_texts::<FIELDS>(r);
    let (at, pointer) = segment.pointer(r, FIELDS);
    let fields = match segment.struct_list(at, pointer) {
        Ok((list, _)) if pointer != 0 => (0..list.count)
            .map(|i| {
                let [key, value] = segment.valid_texts::<2>(list.get(i));
                (lossy_utf8(key), lossy_utf8(value).into())
            })
            .collect(),
        _ => Vec::new(),
    };
    let body = lossy_utf8(body);
    Record {
        timestamp_ns: u64::from_le_bytes(segment.data(r, TIMESTAMP)),
        level: level_from_wire(u16::from_le_bytes(segment.data(r, LEVEL))),
        body: if u16::from_le_bytes(segment.data(r, BODY_TAG)) == BODY_JSON {
            Body::Json(body)
        } else {
            Body::Message(body)
        },
        logger: lossy_utf8(logger),
        host: lossy_utf8(host),
        service: lossy_utf8(service),
        module: lossy_utf8(module),
        file: lossy_utf8(file),
        line: u32::from_le_bytes(segment.data(r, LINE)),
        function: lossy_utf8(function),
        process_id: u32::from_le_bytes(segment.data(r, PROCESS_ID)),
        process_name: lossy_utf8(process_name),
        thread_id: u64::from_le_bytes(segment.data(r, THREAD_ID)),
        thread_name: lossy_utf8(thread_name),
        stack_trace: lossy_utf8(stack),
        fields,
        parse_error: false,
        truncated: false,
    }
}

/// The level of a `LogRecord.level` value; [`from_wire_level`] is shared with the crate's path
/// in [`native`](super::native), so both readers map levels alike.
pub(super) fn level_from_wire(value: u16) -> Level {
    from_wire_level(WireLevel::try_from(value))
}

pub(super) fn from_wire_level(level: Result<WireLevel, capnp::NotInSchema>) -> Level {
    match level {
        Ok(WireLevel::Trace) => Level::Trace,
        Ok(WireLevel::Debug) => Level::Debug,
        Ok(WireLevel::Notice) => Level::Notice,
        Ok(WireLevel::Warning) => Level::Warning,
        Ok(WireLevel::Error) => Level::Error,
        Ok(WireLevel::Critical) => Level::Critical,
        Ok(WireLevel::Alert) => Level::Alert,
        Ok(WireLevel::Emergency) => Level::Emergency,
        // `unspecified` and values from a newer schema are stored as info.
        Ok(WireLevel::Info | WireLevel::Unspecified) | Err(_) => Level::Info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{Frame, decode as deframe};
    use crate::protocol::native;

    fn payload(buf: &[u8]) -> Vec<u8> {
        match deframe(buf, u32::MAX).unwrap() {
            Frame::Complete { payload, .. } => payload.to_vec(),
            Frame::Incomplete { .. } => panic!("incomplete"),
        }
    }

    /// Records with every field the schema has, set and unset, both bodies, fields.
    fn varied(n: usize) -> Vec<Record<'static>> {
        (0..n)
            .map(|i| Record {
                timestamp_ns: 1_700_000_000_000_000_000 + i as u64,
                level: [Level::Info, Level::Error, Level::Trace][i % 3],
                body: if i % 4 == 3 {
                    Body::Json(format!("{{\"n\":{i}}}").into())
                } else {
                    Body::Message(format!("message {i} héllo\n{}", "x".repeat(i * 7)).into())
                },
                logger: if i % 2 == 0 {
                    "app.db".into()
                } else {
                    "".into()
                },
                host: "web-1".into(),
                service: if i % 3 == 0 {
                    "billing".into()
                } else {
                    "".into()
                },
                module: "m".into(),
                file: "f.py".into(),
                line: i as u32,
                function: "fn".into(),
                process_id: 7,
                process_name: "proc".into(),
                thread_id: 9,
                thread_name: "main".into(),
                stack_trace: if i % 5 == 0 {
                    "trace\nline".into()
                } else {
                    "".into()
                },
                fields: (0..i % 3)
                    .map(|k| (format!("k{k}").into(), format!("v {k}").into()))
                    .collect(),
                parse_error: false,
                truncated: false,
            })
            .collect()
    }

    /// `decode_client_frame` (fast path first) and the crate alone agree on `payload`: the same
    /// frame and records, or an error from both. Returns whether the fast path took it.
    fn agree(payload: &[u8]) -> bool {
        let (mut fast, mut reference) = (Vec::new(), Vec::new());
        let got = native::decode_client_frame(payload, |r| fast.push(r.into_static()));
        let want =
            native::decode_client_frame_with_crate(payload, |r| reference.push(r.into_static()));
        match (&got, &want) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b);
                assert_eq!(fast, reference);
            }
            (Err(_), Err(_)) => {}
            _ => panic!("disagree on {payload:?}: {got:?} vs {want:?}"),
        }
        let limit = native::traversal_limit(payload.len());
        decode(payload, limit, native::max_records(payload), |_| {}).is_ok()
    }

    #[test]
    fn takes_what_the_encoder_writes() {
        for records in [varied(1), varied(40)] {
            let mut buf = Vec::new();
            native::encode_records(&records, &mut buf);
            let payload = payload(&buf);
            let mut got = Vec::new();
            let n = decode(&payload, 1 << 20, 1 << 20, |r| got.push(r.into_static()));
            assert_eq!(n, Ok(records.len()));
            assert_eq!(got, records);
            assert!(agree(&payload));
        }
    }

    /// Every byte of a record frame and of a batch frame flipped in several ways: whatever the
    /// fast path takes, it reads exactly as the crate does, and what it leaves, the crate decides.
    #[test]
    fn agrees_with_the_crate_on_every_mutation() {
        let mut taken = 0;
        let mut cases = 0;
        for records in [varied(1), varied(6)] {
            let mut buf = Vec::new();
            native::encode_records(&records, &mut buf);
            let original = payload(&buf);
            for at in 0..original.len() {
                for flip in [0x01u8, 0x02, 0x04, 0x08, 0x10, 0x40, 0x80, 0xff] {
                    let mut p = original.clone();
                    p[at] ^= flip;
                    taken += usize::from(agree(&p));
                    cases += 1;
                }
            }
            // Cut short at every length.
            for len in 0..original.len() {
                agree(&original[..len]);
            }
        }
        // Most flips land in text bytes and still decode; the check is not vacuous.
        assert!(taken > cases / 2, "fast path took {taken} of {cases}");
    }

    /// Frames the fast path leaves to the crate: hello, several segments (the crate's own
    /// default encoder), an unknown union member, zero-sized list elements.
    #[test]
    fn leaves_the_rest_to_the_crate() {
        let mut buf = Vec::new();
        native::encode_hello(&native::Hello::default(), &mut buf);
        assert!(!agree(&payload(&buf)));

        let mut message = capnp::message::Builder::new_default();
        let records = varied(50);
        {
            let root = message.init_root::<crate::logmill_capnp::client_frame::Builder<'_>>();
            let mut list = root.init_batch(records.len() as u32);
            for (i, r) in records.iter().enumerate() {
                let mut b = list.reborrow().get(i as u32);
                b.set_logger(r.logger.as_ref());
                b.init_body().set_message(match &r.body {
                    Body::Message(m) | Body::Json(m) => m.as_ref(),
                });
            }
        }
        let words = capnp::serialize::write_message_to_words(&message);
        assert_ne!(
            words[..4],
            [0, 0, 0, 0],
            "the default encoder made one segment"
        );
        assert!(!agree(&words));

        // Union tag 3 does not exist.
        let mut buf = Vec::new();
        native::encode_records(&varied(1), &mut buf);
        let mut p = payload(&buf);
        let root = u64::from_le_bytes(p[8..16].try_into().unwrap());
        let data = 8 + 8 * (1 + ((root as u32 as i32) >> 2) as usize);
        p[data] = 3;
        assert!(!agree(&p));
        assert!(native::decode_client_frame(&p, |_| {}).is_err());
    }

    /// Many records whose bodies all point at one large text: the work the frame asks for is
    /// far beyond its size. The fast path counts every text it would read against the crate's
    /// traversal limit and leaves such a frame to the crate, which refuses it.
    #[test]
    fn shared_texts_cannot_amplify_work() {
        let big = "y".repeat(4000);
        let mut records = vec![Record {
            body: Body::Message(big.as_str().into()),
            ..Record::default()
        }];
        records.extend((0..300).map(|_| Record::default()));
        let mut buf = Vec::new();
        native::encode_records(&records, &mut buf);
        let mut p = payload(&buf);
        // Segment word w is at byte 8 + 8w. Root struct -> batch list pointer -> tag.
        let word =
            |p: &[u8], w: usize| u64::from_le_bytes(p[8 + 8 * w..16 + 8 * w].try_into().unwrap());
        let target =
            |at: usize, ptr: u64| (at as i64 + 1 + i64::from((ptr as u32 as i32) >> 2)) as usize;
        let root = word(&p, 0);
        let list_at = target(0, root) + usize::from((root >> 32) as u16);
        let tag_at = target(list_at, word(&p, list_at));
        let tag = word(&p, tag_at);
        let step = usize::from((tag >> 32) as u16) + usize::from((tag >> 48) as u16);
        let data_words = usize::from((tag >> 32) as u16);
        let body_of = |i: usize| tag_at + 1 + i * step + data_words;
        let first_body = body_of(0);
        let big_at = target(first_body, word(&p, first_body));
        for i in 1..records.len() {
            let at = body_of(i);
            let offset = big_at as i64 - at as i64 - 1;
            let ptr = (word(&p, first_body) & !0xffff_fffc) | (((offset as u32) << 2) as u64);
            p[8 + 8 * at..16 + 8 * at].copy_from_slice(&ptr.to_le_bytes());
        }
        // Well-formed: without a budget every record reads the big text.
        let mut bodies = 0;
        let n = decode(&p, usize::MAX, usize::MAX, |r| {
            assert_eq!(r.body, Body::Message(big.as_str().into()));
            bodies += 1;
        });
        assert_eq!((n, bodies), (Ok(records.len()), records.len()));
        assert!(!agree(&p), "the fast path took an amplifying frame");
        assert!(native::decode_client_frame(&p, |_| {}).is_err());
    }
}
