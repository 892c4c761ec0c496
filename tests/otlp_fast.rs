//! `protocol::otlp::decode_records` (the fast path, reading records straight from the wire)
//! against the reference, prost's `decode_protobuf` then `to_records`: for many generated
//! requests, and for each one truncated and with bytes changed, both give the same `Export`
//! or both an error of the same kind.
//!
//! The requests are written field by field from the `.proto` schema, not through prost, so
//! that they hold what an encoder never writes but a peer may: fields in any order, a
//! non-repeated field (scalar, string or message) given twice, a resource or scope after its
//! records, unknown fields of every wire type, known fields with the wrong wire type, strings
//! that are not UTF-8, ids of the wrong length, every `AnyValue` member nested in arrays and
//! key/value lists, and messages nested to prost's recursion limit and past it.

use std::mem::discriminant;

use logmill::protocol::otlp::{self, Limits};

const ROOMY: Limits = Limits {
    max_body: 1 << 24,
    max_records: 1 << 20,
    max_values: 1 << 22,
};

/// What a comparison found, to check that the inputs reach both outcomes.
#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    err: usize,
    records: usize,
    rejected: u64,
}

/// Both paths on `body`: equal exports, or errors of the same kind.
fn same(body: &[u8], limits: &Limits, tally: &mut Tally) {
    let reference = otlp::decode_protobuf(body, limits);
    let fast = otlp::decode_records(body, limits);
    match (&reference, fast) {
        (Ok(request), Ok(fast)) => {
            let want = otlp::to_records(request);
            assert_eq!(fast, want, "records differ for {body:02x?}");
            tally.ok += 1;
            tally.records += want.records.len();
            tally.rejected += want.rejected;
        }
        (Err(a), Err(b)) => {
            assert_eq!(
                discriminant(a),
                discriminant(&b),
                "errors differ ({a} / {b}) for {body:02x?}"
            );
            tally.err += 1;
        }
        (a, b) => panic!(
            "one path failed: reference {:?}, fast {:?} for {body:02x?}",
            a.as_ref().err(),
            b.err()
        ),
    }
}

/// xorshift64*: reproducible inputs without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_len(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The messages of an `ExportLogsServiceRequest`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Request,
    ResourceLogs,
    Resource,
    EntityRef,
    ScopeLogs,
    Scope,
    LogRecord,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// A field's declared type.
#[derive(Clone, Copy, Debug)]
enum Type {
    Message(Kind),
    Str,
    Bytes,
    Varint,
    Fixed64,
    Fixed32,
}

/// The fields of each message (the `.proto` files), each weighted by how often it is written.
fn schema(kind: Kind) -> &'static [(u32, Type, u32)] {
    use Kind as K;
    use Type as T;
    match kind {
        K::Request => &[(1, T::Message(K::ResourceLogs), 1)],
        K::ResourceLogs => &[
            (1, T::Message(K::Resource), 2),
            (2, T::Message(K::ScopeLogs), 3),
            (3, T::Str, 1),
        ],
        K::Resource => &[
            (1, T::Message(K::KeyValue), 6),
            (2, T::Varint, 1),
            (3, T::Message(K::EntityRef), 1),
        ],
        K::EntityRef => &[
            (1, T::Str, 1),
            (2, T::Str, 1),
            (3, T::Str, 1),
            (4, T::Str, 1),
        ],
        K::ScopeLogs => &[
            (1, T::Message(K::Scope), 2),
            (2, T::Message(K::LogRecord), 6),
            (3, T::Str, 1),
        ],
        K::Scope => &[
            (1, T::Str, 2),
            (2, T::Str, 2),
            (3, T::Message(K::KeyValue), 3),
            (4, T::Varint, 1),
        ],
        K::LogRecord => &[
            (1, T::Fixed64, 2),
            (2, T::Varint, 2),
            (3, T::Str, 2),
            (5, T::Message(K::AnyValue), 3),
            (6, T::Message(K::KeyValue), 5),
            (7, T::Varint, 1),
            (8, T::Fixed32, 2),
            (9, T::Bytes, 2),
            (10, T::Bytes, 2),
            (11, T::Fixed64, 2),
            (12, T::Str, 1),
        ],
        K::KeyValue => &[(1, T::Str, 3), (2, T::Message(K::AnyValue), 3)],
        K::AnyValue => &[
            (1, T::Str, 4),
            (2, T::Varint, 2),
            (3, T::Varint, 2),
            (4, T::Fixed64, 2),
            (5, T::Message(K::ArrayValue), 2),
            (6, T::Message(K::KeyValueList), 2),
            (7, T::Bytes, 1),
        ],
        K::ArrayValue => &[(1, T::Message(K::AnyValue), 1)],
        K::KeyValueList => &[(1, T::Message(K::KeyValue), 1)],
    }
}

const STRINGS: &[&str] = &[
    "",
    "k",
    "k",
    "k2",
    "service.name",
    "host.name",
    "checkout",
    "WARN",
    "warning",
    "INFO2",
    "Error",
    "fatal",
    "héllo \"wörld\"\n",
    "otel.scope.version",
    "trace_id",
    "severity_text",
];

const VARINTS: &[u64] = &[
    0,
    1,
    2,
    5,
    9,
    13,
    17,
    21,
    24,
    25,
    402,
    u32::MAX as u64,
    1 << 40,
    u64::MAX,
    (-3i64) as u64,
];

/// How many entries a message gets: the top ones a few, nested ones fewer.
fn entries(rng: &mut Rng, kind: Kind, depth: usize) -> usize {
    match kind {
        Kind::Request => 1 + rng.below(3),
        Kind::ArrayValue | Kind::KeyValueList if depth > 7 => rng.below(2),
        Kind::AnyValue => rng.below(3),
        Kind::KeyValue => 1 + rng.below(2),
        _ if depth > 9 => rng.below(2),
        _ => rng.below(7),
    }
}

/// A message of `kind` with random fields of its schema, and now and then what an encoder does
/// not write (see the file's docs).
fn message(rng: &mut Rng, kind: Kind, depth: usize) -> Vec<u8> {
    let fields = schema(kind);
    let total: u32 = fields.iter().map(|f| f.2).sum();
    let mut out = Vec::new();
    for _ in 0..entries(rng, kind, depth) {
        if rng.chance(4) {
            unknown_field(rng, &mut out);
            continue;
        }
        let mut at = rng.below(total as usize) as u32;
        let &(field, ty, _) = fields
            .iter()
            .find(|f| {
                let hit = at < f.2;
                at = at.saturating_sub(f.2);
                hit
            })
            .expect("a field");
        if rng.chance(1) {
            // The wrong wire type for a known field.
            let wire = *rng.pick(&[0u8, 1, 2, 5]);
            put_key(&mut out, field, wire);
            wire_value(rng, &mut out, wire);
            continue;
        }
        match ty {
            Type::Message(child) => {
                let inner = if depth > 12 {
                    Vec::new()
                } else {
                    message(rng, child, depth + 1)
                };
                put_len(&mut out, field, &inner);
            }
            Type::Str => {
                let mut s = rng.pick(STRINGS).as_bytes().to_vec();
                if rng.chance(2) {
                    s.push(0xff);
                }
                put_len(&mut out, field, &s);
            }
            Type::Bytes => {
                let len = *rng.pick(&[0usize, 16, 16, 8, 8, 3]);
                let zero = rng.chance(20);
                let b: Vec<u8> = (0..len)
                    .map(|_| if zero { 0 } else { rng.next() as u8 })
                    .collect();
                put_len(&mut out, field, &b);
            }
            Type::Varint => {
                put_key(&mut out, field, 0);
                put_varint(&mut out, *rng.pick(VARINTS));
            }
            Type::Fixed64 => {
                put_key(&mut out, field, 1);
                let random = rng.next();
                let v = *rng.pick(&[
                    0u64,
                    1_700_000_000_123_456_789,
                    0.5f64.to_bits(),
                    (-0.0f64).to_bits(),
                    f64::NAN.to_bits(),
                    f64::INFINITY.to_bits(),
                    1e300f64.to_bits(),
                    random,
                ]);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Type::Fixed32 => {
                put_key(&mut out, field, 5);
                let random = rng.next() as u32;
                let v = *rng.pick(&[0u32, 1, 0x101, 0xff, random]);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

fn wire_value(rng: &mut Rng, out: &mut Vec<u8>, wire: u8) {
    match wire {
        0 => put_varint(out, *rng.pick(VARINTS)),
        1 => out.extend_from_slice(&rng.next().to_le_bytes()),
        5 => out.extend_from_slice(&(rng.next() as u32).to_le_bytes()),
        _ => {
            let len = rng.below(4);
            put_varint(out, len as u64);
            out.extend((0..len).map(|_| rng.next() as u8));
        }
    }
}

fn unknown_field(rng: &mut Rng, out: &mut Vec<u8>) {
    let field = *rng.pick(&[4u32, 13, 15, 16, 100, 2047, (1 << 29) - 1]);
    let wire = *rng.pick(&[0u8, 1, 2, 5]);
    put_key(out, field, wire);
    wire_value(rng, out, wire);
}

#[test]
fn generated_requests_decode_the_same_both_ways() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut tally = Tally::default();
    for _ in 0..4000 {
        let body = message(&mut rng, Kind::Request, 0);
        same(&body, &ROOMY, &mut tally);
    }
    println!("{tally:?}");
    assert!(tally.ok > 1000, "too few requests decode: {tally:?}");
    assert!(tally.err > 100, "too few requests fail: {tally:?}");
    assert!(tally.records > 1000, "too few records: {tally:?}");
    assert!(tally.rejected > 100, "too few rejected records: {tally:?}");
}

#[test]
fn truncated_and_changed_requests_fail_or_decode_the_same_both_ways() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut tally = Tally::default();
    for _ in 0..400 {
        let body = message(&mut rng, Kind::Request, 0);
        for end in 0..body.len() {
            same(&body[..end], &ROOMY, &mut tally);
        }
        for _ in 0..20 {
            let mut changed = body.clone();
            if changed.is_empty() {
                break;
            }
            let at = rng.below(changed.len());
            let random = rng.next() as u8;
            changed[at] = *rng.pick(&[0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, random]);
            same(&changed, &ROOMY, &mut tally);
        }
    }
    println!("{tally:?}");
    assert!(tally.ok > 1000 && tally.err > 1000, "{tally:?}");
}

#[test]
fn the_limits_give_the_same_refusals_both_ways() {
    let mut rng = Rng(7);
    let mut tally = Tally::default();
    for _ in 0..3000 {
        let mut body = message(&mut rng, Kind::Request, 0);
        if rng.chance(30) {
            // A structural error somewhere, before or after the limit is reached.
            let end = rng.below(body.len() + 1);
            body.truncate(end);
        }
        let limits = Limits {
            max_body: *rng.pick(&[16, 100, 1000, 1 << 20]),
            max_records: *rng.pick(&[0, 1, 2, 5, 1000]),
            max_values: *rng.pick(&[0, 4, 20, 100, 10_000]),
        };
        same(&body, &limits, &mut tally);
    }
    assert!(tally.ok > 100 && tally.err > 100, "{tally:?}");
}

/// A record whose body is an array nested `levels` deep, the innermost holding `innermost`.
fn nested(levels: usize, innermost: &[u8]) -> Vec<u8> {
    // AnyValue { array_value: ArrayValue { values: [ ... ] } }, from the inside out.
    let mut any = innermost.to_vec();
    for _ in 0..levels {
        let mut array = Vec::new();
        put_len(&mut array, 1, &any);
        any = Vec::new();
        put_len(&mut any, 5, &array);
    }
    let mut record = Vec::new();
    put_len(&mut record, 5, &any);
    let mut scope_logs = Vec::new();
    put_len(&mut scope_logs, 2, &record);
    let mut resource_logs = Vec::new();
    put_len(&mut resource_logs, 2, &scope_logs);
    let mut request = Vec::new();
    put_len(&mut request, 1, &resource_logs);
    request
}

#[test]
fn nesting_at_and_past_prosts_recursion_limit_is_refused_the_same_way() {
    let mut tally = Tally::default();
    let mut unknown = Vec::new();
    put_key(&mut unknown, 9, 0);
    put_varint(&mut unknown, 1);
    let mut string = Vec::new();
    put_len(&mut string, 1, b"deep");
    // The record's body is at depth 4; each level adds two (AnyValue, ArrayValue).
    for levels in 44..52 {
        for innermost in [&[][..], &unknown, &string] {
            same(&nested(levels, innermost), &ROOMY, &mut tally);
        }
    }
    assert!(tally.ok > 3 && tally.err > 3, "{tally:?}");
}

#[test]
fn a_message_given_twice_is_merged_as_prost_merges_it() {
    // A record with two bodies: an array, a string, then two arrays (merged into one), and an
    // attribute whose value comes in two halves (a key/value list, extended).
    let mut tally = Tally::default();
    let array = |item: &str| {
        let mut any = Vec::new();
        put_len(&mut any, 1, item.as_bytes());
        let mut array = Vec::new();
        put_len(&mut array, 1, &any);
        let mut value = Vec::new();
        put_len(&mut value, 5, &array);
        value
    };
    let mut string = Vec::new();
    put_len(&mut string, 1, b"text");
    let mut record = Vec::new();
    put_len(&mut record, 5, &array("a"));
    put_len(&mut record, 5, &string);
    put_len(&mut record, 5, &array("b"));
    put_len(&mut record, 6, &{
        let mut kv = Vec::new();
        put_len(&mut kv, 1, b"attr");
        put_len(&mut kv, 2, &array("x"));
        put_len(&mut kv, 1, b"attr2");
        put_len(&mut kv, 2, &array("y"));
        kv
    });
    put_len(&mut record, 5, &array("c"));
    let mut scope_logs = Vec::new();
    put_len(&mut scope_logs, 2, &record);
    let mut resource_logs = Vec::new();
    put_len(&mut resource_logs, 2, &scope_logs);
    let mut request = Vec::new();
    put_len(&mut request, 1, &resource_logs);
    same(&request, &ROOMY, &mut tally);
    let export = otlp::decode_records(&request, &ROOMY).unwrap();
    let record = &export.records[0];
    assert_eq!(
        record.body,
        logmill::record::Body::Message(r#"["b","c"]"#.into())
    );
    assert_eq!(record.fields[0].0, "attr2");
    assert_eq!(record.fields[0].1.to_string(), r#"["x","y"]"#);
}
