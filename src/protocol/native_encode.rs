//! The fast path of [`native`](super::native) encoding: record and batch frames written straight
//! into the output buffer, byte for byte what [`native::encode_records`](super::native::encode_records)
//! (the `capnp` crate's builder) writes. Hello and server frames stay with the crate.
//!
//! The crate's builder goes through its arena and a pointer check at every setter, and copies
//! the finished segment out again; here each record is a few word writes and one copy per text,
//! in the one buffer the frame is sent from. The crate stays the reference: the tests below and
//! the `native_record` fuzz target compare both encoders' bytes.
//!
//! Layout (as [`native_fast`](super::native_fast) reads it, and as the Python, Go and JS
//! clients write it): the length prefix, a one-segment table (count − 1 = 0, then the segment's
//! size in words), then the segment, allocated in the order the crate allocates: the root
//! pointer, the `ClientFrame` (one data word with the union tag, one pointer), then either the
//! one record's struct or a composite list (tag word, then every record's struct), then each
//! record's texts in schema order and its field list (tag word, the key and value pointers of
//! every field, then their texts).

use crate::protocol::frame;
use crate::protocol::native::to_wire_level;
use crate::record::{Body, Record};

/// `ClientFrame`'s union tags (`schema/logmill.capnp`).
const CLIENT_FRAME_RECORD: u16 = 0;
const CLIENT_FRAME_BATCH: u16 = 1;
/// Struct sizes (data words, pointers) from the schema, as the generated code has them.
const FRAME_DATA: u64 = 1;
const FRAME_POINTERS: u64 = 1;
const RECORD_DATA: usize = 4;
const RECORD_POINTERS: usize = 11;
const RECORD_WORDS: usize = RECORD_DATA + RECORD_POINTERS;
const FIELD_POINTERS: usize = 2;
/// `LogRecord`'s pointer slots: the body, nine optional texts, then `fields`.
const FIELDS_SLOT: usize = 10;

const BYTE_ELEMENTS: u64 = 2;
const INLINE_COMPOSITE: u64 = 7;
/// A list pointer's element count is 29 bits: a text (with its NUL) or a list must fit.
const MAX_LIST_COUNT: usize = (1 << 29) - 1;

/// Bytes before the segment: the length prefix and the one-segment table.
const HEAD: usize = frame::HEADER_LEN + 8;

/// Appends one frame holding `records` to `out`: a `record` frame for one, a `batch` otherwise;
/// the same bytes as [`native::encode_records`](super::native::encode_records).
///
/// # Panics
/// If a text (or a batch, in words) is over the 2^29 − 1 a Cap'n Proto list can count, or the
/// frame is over `u32::MAX` bytes; the crate's encoder cannot write those either. Callers keep
/// frames under the server's frame size, megabytes at most.
pub fn encode_records(records: &[Record<'_>], out: &mut Vec<u8>) {
    let start = out.len();
    // Enough for the structs and the bodies of a typical record, so a batch is one allocation.
    out.reserve(HEAD + 8 * (3 + records.len() * (RECORD_WORDS + 4)));
    out.resize(start + HEAD, 0);
    let mut s = Segment {
        out,
        base: start + HEAD,
    };
    let root = s.alloc(1);
    let client_frame = s.alloc((FRAME_DATA + FRAME_POINTERS) as usize);
    s.put(
        root,
        struct_pointer(root, client_frame, FRAME_DATA, FRAME_POINTERS),
    );
    let slot = client_frame + FRAME_DATA as usize;
    if let [record] = records {
        s.put_u16(client_frame, 0, CLIENT_FRAME_RECORD);
        let at = s.alloc(RECORD_WORDS);
        s.put(
            slot,
            struct_pointer(slot, at, RECORD_DATA as u64, RECORD_POINTERS as u64),
        );
        fill_record(&mut s, at, record);
    } else {
        s.put_u16(client_frame, 0, CLIENT_FRAME_BATCH);
        let words = records.len().checked_mul(RECORD_WORDS);
        let words = words
            .filter(|&w| w <= MAX_LIST_COUNT)
            .expect("batch over a Cap'n Proto list's size");
        let tag = s.alloc(1 + words);
        s.put(slot, list_pointer(slot, tag, INLINE_COMPOSITE, words));
        s.put(
            tag,
            composite_tag(records.len(), RECORD_DATA as u64, RECORD_POINTERS as u64),
        );
        for (i, record) in records.iter().enumerate() {
            fill_record(&mut s, tag + 1 + i * RECORD_WORDS, record);
        }
    }
    let segment_words = s.end();
    let payload = out.len() - start - frame::HEADER_LEN;
    let payload = u32::try_from(payload).expect("frame over u32::MAX bytes");
    let segment_words = u32::try_from(segment_words).expect("segment over u32::MAX words");
    out[start..start + 4].copy_from_slice(&payload.to_be_bytes());
    // Segment count − 1 stays 0 (one segment), as `resize` wrote it.
    out[start + 8..start + 12].copy_from_slice(&segment_words.to_le_bytes());
}

/// Writes record `r` into the struct at word `at`, allocating its texts and fields after
/// everything allocated so far, in the crate's order.
fn fill_record(s: &mut Segment<'_>, at: usize, r: &Record<'_>) {
    s.put(at, r.timestamp_ns);
    s.put_u16(at, 8, to_wire_level(r.level) as u16);
    let pointers = at + RECORD_DATA;
    match &r.body {
        Body::Message(m) => s.text(pointers, m),
        Body::Json(j) => {
            s.put_u16(at, 10, 1);
            s.text(pointers, j);
        }
    }
    let optional = [
        &r.logger,
        &r.host,
        &r.service,
        &r.module,
        &r.file,
        &r.function,
        &r.process_name,
        &r.thread_name,
        &r.stack_trace,
    ];
    for (i, text) in optional.into_iter().enumerate() {
        if !text.is_empty() {
            s.text(pointers + 1 + i, text);
        }
    }
    s.put_u32(at, 12, r.line);
    s.put_u32(at, 16, r.process_id);
    s.put(at + 3, r.thread_id);
    if !r.fields.is_empty() {
        let words = r.fields.len() * FIELD_POINTERS;
        assert!(words <= MAX_LIST_COUNT, "field list over a list's size");
        let tag = s.alloc(1 + words);
        let slot = pointers + FIELDS_SLOT;
        s.put(slot, list_pointer(slot, tag, INLINE_COMPOSITE, words));
        s.put(tag, composite_tag(r.fields.len(), 0, FIELD_POINTERS as u64));
        for (i, (key, value)) in r.fields.iter().enumerate() {
            let field = tag + 1 + i * FIELD_POINTERS;
            s.text(field, key);
            s.text(field + 1, &value.text());
        }
    }
}

/// A struct pointer at word `at` to the struct at word `target` (always after it here).
fn struct_pointer(at: usize, target: usize, data: u64, pointers: u64) -> u64 {
    offset(at, target) | data << 32 | pointers << 48
}

/// A list pointer at word `at` to the list at word `target`; `count` is in elements, or in
/// words for an inline-composite list.
fn list_pointer(at: usize, target: usize, element_size: u64, count: usize) -> u64 {
    offset(at, target) | 1 | element_size << 32 | (count as u64) << 35
}

/// The tag word of an inline-composite list: shaped as a struct pointer whose offset is the
/// element count.
fn composite_tag(count: usize, data: u64, pointers: u64) -> u64 {
    (count as u64) << 2 | data << 32 | pointers << 48
}

/// A pointer's offset field: words from the one after the pointer to the target, shifted past
/// the kind bits. Targets here always follow their pointer, so it is never negative.
fn offset(at: usize, target: usize) -> u64 {
    u64::from(((target - at - 1) as u32) << 2)
}

/// The segment being built at the end of `out`, from byte `base`; word `w` is at
/// `base + 8 * w`. Allocation bumps the end, zeroed, as the crate's builder does.
struct Segment<'o> {
    out: &'o mut Vec<u8>,
    base: usize,
}

impl Segment<'_> {
    /// The segment's size in words, which is also the next word to be allocated.
    fn end(&self) -> usize {
        (self.out.len() - self.base) / 8
    }

    fn alloc(&mut self, words: usize) -> usize {
        let at = self.end();
        self.out.resize(self.out.len() + words * 8, 0);
        at
    }

    fn put(&mut self, word: usize, value: u64) {
        let i = self.base + word * 8;
        self.out[i..i + 8].copy_from_slice(&value.to_le_bytes());
    }

    fn put_u32(&mut self, word: usize, byte: usize, value: u32) {
        let i = self.base + word * 8 + byte;
        self.out[i..i + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn put_u16(&mut self, word: usize, byte: usize, value: u16) {
        let i = self.base + word * 8 + byte;
        self.out[i..i + 2].copy_from_slice(&value.to_le_bytes());
    }

    /// Appends `text` and its NUL, padded to a word, and points word `at` to it. The empty text
    /// is a NUL in a word of its own, as the crate writes it.
    fn text(&mut self, at: usize, text: &str) {
        let count = text.len() + 1;
        assert!(count <= MAX_LIST_COUNT, "text over a list's size");
        let target = self.end();
        self.out.extend_from_slice(text.as_bytes());
        let padded = self.out.len() + (count.div_ceil(8) * 8 - text.len());
        self.out.resize(padded, 0);
        self.put(at, list_pointer(at, target, BYTE_ELEMENTS, count));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::native;
    use crate::record::{Level, Value};

    /// Both encoders write the same bytes for `records`, appended after the same prefix.
    fn assert_identical(records: &[Record<'_>]) {
        let (mut fast, mut reference) = (b"prefix".to_vec(), b"prefix".to_vec());
        encode_records(records, &mut fast);
        native::encode_records(records, &mut reference);
        assert!(
            fast == reference,
            "{} records differ\n fast: {fast:?}\n  ref: {reference:?}",
            records.len()
        );
    }

    /// A small deterministic generator (xorshift), so a failure names its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// Empty, short, word-boundary, long, UTF-8 and JSON texts.
        fn text(&mut self) -> String {
            match self.below(9) {
                0 => String::new(),
                1 => "x".repeat(self.below(17)),
                2 => "y".repeat(8 * self.below(4) + 7),
                3 => "z".repeat(8 * self.below(4) + 8),
                4 => "long ".repeat(self.below(400)),
                5 => "héllo wörld ✓ 日本語 🦀".repeat(self.below(5)),
                6 => format!("{{\"n\":{},\"s\":\"é\"}}", self.next()),
                7 => "line\nwith\ttabs\r\n\0nul".into(),
                _ => format!("message {}", self.next()),
            }
        }

        fn record(&mut self) -> Record<'static> {
            let body = if self.below(3) == 0 {
                Body::Json(self.text().into())
            } else {
                Body::Message(self.text().into())
            };
            let fields = (0..[0, 0, 1, 2, 5][self.below(5)])
                .map(|_| {
                    let value = match self.below(4) {
                        0 => Value::Int(self.next() as i64),
                        1 => Value::Bool(self.below(2) == 0),
                        _ => Value::Str(self.text().into()),
                    };
                    (self.text().into(), value)
                })
                .collect();
            Record {
                timestamp_ns: [0, 1, u64::MAX, self.next()][self.below(4)],
                level: Level::ALL[self.below(Level::ALL.len())],
                body,
                logger: self.text().into(),
                host: self.text().into(),
                service: self.text().into(),
                module: self.text().into(),
                file: self.text().into(),
                line: self.next() as u32,
                function: self.text().into(),
                process_id: [0, u32::MAX, self.next() as u32][self.below(3)],
                process_name: self.text().into(),
                thread_id: [0, u64::MAX, self.next()][self.below(3)],
                thread_name: self.text().into(),
                stack_trace: self.text().into(),
                fields,
                parse_error: false,
                truncated: false,
            }
        }
    }

    #[test]
    fn every_level_and_body_alone_is_identical() {
        for level in Level::ALL {
            for body in [Body::Message("".into()), Body::Json("{}".into())] {
                assert_identical(&[Record {
                    level,
                    body,
                    ..Record::default()
                }]);
            }
        }
        assert_identical(&[Record::default()]);
    }

    #[test]
    fn empty_batch_is_identical() {
        assert_identical(&[]);
    }

    #[test]
    fn generated_records_and_batches_are_identical() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for n in (1..=40).chain([63, 64, 65, 100, 257, 1000]) {
            let records: Vec<_> = (0..n).map(|_| rng.record()).collect();
            assert_identical(&records);
        }
        for _ in 0..500 {
            assert_identical(&[rng.record()]);
        }
    }

    #[test]
    fn what_the_logger_sends_is_identical() {
        let records: Vec<_> = (0..1000)
            .map(|i| Record {
                timestamp_ns: 1_700_000_000_000_000_000 + i,
                body: Body::Message("x".repeat(200).into()),
                ..Record::default()
            })
            .collect();
        for n in [1, 2, 255, 1000] {
            assert_identical(&records[..n]);
        }
    }

    #[test]
    fn the_frame_decodes_by_both_decoders() {
        let mut rng = Rng(7);
        let records: Vec<_> = (0..50).map(|_| rng.record()).collect();
        let mut buf = Vec::new();
        encode_records(&records, &mut buf);
        let frame::Frame::Complete { payload, consumed } = frame::decode(&buf, u32::MAX).unwrap()
        else {
            panic!("incomplete frame");
        };
        assert_eq!(consumed, buf.len());
        let mut got = Vec::new();
        native::decode_client_frame_with_crate(payload, |r| got.push(r.into_static())).unwrap();
        let expected: Vec<_> = records
            .iter()
            .map(|r| Record {
                fields: r
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::Str(v.text().into_owned().into())))
                    .collect(),
                ..r.clone()
            })
            .collect();
        assert_eq!(got, expected);
    }
}
