// The native wire format by hand (schema/logmill.capnp): what a client sends (hello, record and
// batch frames) and what it reads back (welcome, ack, error). Node only (Buffer); no socket here.
//
// A frame is a 4-byte big-endian length, then one Cap'n Proto message in the standard unpacked
// serialization: a one-segment table, then the segment. The encoder lays words out in the order
// the Rust encoder (`protocol::native::encode_records`) does, so tests compare the bytes exactly.
// The decoder reads only what a server sends, bounds-checks every pointer and accepts only
// one-segment messages (every server frame is one); anything else is a ProtocolError.

/** Largest server frame read: acks, welcomes and error messages are all under 1 KiB. */
export const MAX_SERVER_FRAME = 64 * 1024;

export const LEVEL_CODES = {
  trace: 1, debug: 2, info: 3, notice: 4, warning: 5, error: 6, critical: 7, alert: 8, emergency: 9,
};

const ERROR_KINDS = [
  'frameTooLarge', 'undecodable', 'helloNotFirst', 'shuttingDown', 'slowReader', 'idleTimeout',
  'unauthorized',
];

export class ProtocolError extends Error {}

// LogRecord: 4 data words, 11 pointers (body, logger, host, service, module, file, function,
// processName, threadName, stackTrace, fields).
const RECORD_DATA = 4;
const RECORD_PTRS = 11;
const RECORD_WORDS = RECORD_DATA + RECORD_PTRS;
const TEXT_PTRS = [
  ['logger', 1], ['host', 2], ['service', 3], ['module', 4], ['file', 5], ['function', 6],
  ['processName', 7], ['threadName', 8], ['stackTrace', 9],
];

const textWords = (bytes) => Math.floor(bytes / 8) + 1; // the NUL, rounded up to a word

/** Words a record's texts and field list take after its struct; caches UTF-8 lengths on `r`. */
function extraWords(r) {
  const body = r.json !== undefined ? r.json : r.message;
  let words = textWords(Buffer.byteLength(body));
  for (const [name] of TEXT_PTRS) {
    const t = r[name];
    if (t) words += textWords(Buffer.byteLength(t));
  }
  if (r.fields && r.fields.length) {
    words += 1 + 2 * r.fields.length;
    for (const [k, v] of r.fields) words += textWords(Buffer.byteLength(k)) + textWords(Buffer.byteLength(v));
  }
  return words;
}

/** Writes words into one buffer, allocating from the front as capnp's builder does. */
class Segment {
  constructor(words) {
    this.buf = Buffer.alloc(4 + 8 + words * 8); // frame length + segment table + segment
    this.base = 12;
    this.next = 0; // next free word
  }
  alloc(words) {
    const at = this.next;
    this.next += words;
    return at;
  }
  off(word) {
    return this.base + word * 8;
  }
  structPointer(ptrWord, target, data, ptrs) {
    const o = this.off(ptrWord);
    this.buf.writeUInt32LE(((target - ptrWord - 1) << 2) >>> 0, o);
    this.buf.writeUInt16LE(data, o + 4);
    this.buf.writeUInt16LE(ptrs, o + 6);
  }
  listPointer(ptrWord, target, elementSize, count) {
    const o = this.off(ptrWord);
    this.buf.writeUInt32LE((((target - ptrWord - 1) << 2) | 1) >>> 0, o);
    this.buf.writeUInt32LE(((count << 3) | elementSize) >>> 0, o + 4);
  }
  text(ptrWord, s) {
    const len = Buffer.byteLength(s);
    const at = this.alloc(textWords(len));
    this.buf.write(s, this.off(at), len, 'utf8');
    this.listPointer(ptrWord, at, 2, len + 1);
  }
  /** A composite list of `n` structs: its tag word, then the structs; returns the first's word. */
  structList(ptrWord, n, data, ptrs) {
    const tag = this.alloc(1 + n * (data + ptrs));
    this.listPointer(ptrWord, tag, 7, n * (data + ptrs));
    const o = this.off(tag);
    this.buf.writeUInt32LE((n << 2) >>> 0, o);
    this.buf.writeUInt16LE(data, o + 4);
    this.buf.writeUInt16LE(ptrs, o + 6);
    return tag + 1;
  }
  /** The frame: length prefix and segment table around the words used. */
  finish() {
    const bytes = 8 + this.next * 8;
    this.buf.writeUInt32BE(bytes, 0);
    this.buf.writeUInt32LE(0, 4);
    this.buf.writeUInt32LE(this.next, 8);
    return this.buf.subarray(0, 4 + bytes);
  }
}

function fillRecord(seg, at, r) {
  const d = seg.off(at);
  const buf = seg.buf;
  if (r.timestampUs) {
    // us * 1000 exactly, in two 32-bit halves: no BigInt on the hot path.
    const hiUs = Math.floor(r.timestampUs / 2 ** 32);
    const lo = (r.timestampUs - hiUs * 2 ** 32) * 1000;
    const carry = Math.floor(lo / 2 ** 32);
    buf.writeUInt32LE(lo - carry * 2 ** 32, d);
    buf.writeUInt32LE(hiUs * 1000 + carry, d + 4);
  } else if (r.timestampNs) buf.writeBigUInt64LE(BigInt(r.timestampNs), d);
  buf.writeUInt16LE(LEVEL_CODES[r.level] ?? 3, d + 8);
  if (r.json !== undefined) buf.writeUInt16LE(1, d + 10);
  if (r.line) buf.writeUInt32LE(r.line >>> 0, d + 12);
  if (r.processId) buf.writeUInt32LE(r.processId >>> 0, d + 16);
  if (r.threadId) buf.writeBigUInt64LE(BigInt(r.threadId), d + 24);
  const ptr = at + RECORD_DATA;
  seg.text(ptr, r.json !== undefined ? r.json : r.message);
  for (const [name, index] of TEXT_PTRS) {
    if (r[name]) seg.text(ptr + index, r[name]);
  }
  if (r.fields && r.fields.length) {
    const first = seg.structList(ptr + 10, r.fields.length, 0, 2);
    r.fields.forEach(([k, v], i) => {
      seg.text(first + 2 * i, k);
      seg.text(first + 2 * i + 1, v);
    });
  }
}

/**
 * One frame holding `records` (a `record` frame for one, a `batch` otherwise), length prefix
 * included. A record is `{ level, message | json, timestampUs? (a number) or timestampNs? (a
 * string or BigInt), logger?, host?, ..., fields? }`
 * with `fields` as `[[key, value], ...]` of strings. The one place per-record encoding work
 * happens: one buffer per batch, each text measured and copied once.
 */
export function encodeRecords(records) {
  let words = 3; // root pointer, ClientFrame (1 data word, 1 pointer)
  for (const r of records) words += RECORD_WORDS + extraWords(r);
  if (records.length !== 1) words += 1; // the batch list's tag
  const seg = new Segment(words);
  const root = seg.alloc(1);
  const frame = seg.alloc(2);
  seg.structPointer(root, frame, 1, 1);
  if (records.length === 1) {
    const at = seg.alloc(RECORD_WORDS);
    seg.structPointer(frame + 1, at, RECORD_DATA, RECORD_PTRS);
    fillRecord(seg, at, records[0]);
  } else {
    seg.buf.writeUInt16LE(1, seg.off(frame));
    const first = seg.structList(frame + 1, records.length, RECORD_DATA, RECORD_PTRS);
    records.forEach((r, i) => fillRecord(seg, first + i * RECORD_WORDS, r));
  }
  return seg.finish();
}

/** The hello frame: app, instance and token, asking for acks. */
export function encodeHello({ app = '', instance = '', token = '', wantAcks = true }) {
  const texts = [app, instance, token];
  let words = 3 + 4;
  for (const t of texts) words += textWords(Buffer.byteLength(t));
  const seg = new Segment(words);
  const root = seg.alloc(1);
  const frame = seg.alloc(2);
  seg.structPointer(root, frame, 1, 1);
  seg.buf.writeUInt16LE(2, seg.off(frame));
  const hello = seg.alloc(4);
  seg.structPointer(frame + 1, hello, 1, 3);
  texts.forEach((t, i) => seg.text(hello + 1 + i, t));
  if (wantAcks) seg.buf[seg.off(hello)] = 1;
  return seg.finish();
}

/** Reads one-segment messages; every offset is checked against the segment. */
class Reader {
  constructor(payload) {
    if (payload.length < 8) throw new ProtocolError('server frame shorter than a segment table');
    if (payload.readUInt32LE(0) !== 0) throw new ProtocolError('server frame has more than one segment');
    const words = payload.readUInt32LE(4);
    if (8 + words * 8 > payload.length) throw new ProtocolError('segment larger than the frame');
    this.seg = payload.subarray(8, 8 + words * 8);
    this.words = words;
  }
  word(at) {
    if (at < 0 || at >= this.words) throw new ProtocolError('pointer out of bounds');
    return this.seg.readUInt32LE(at * 8);
  }
  /** The struct a pointer at `ptrWord` points to, or null for a null pointer. */
  struct(ptrWord) {
    const lo = this.word(ptrWord);
    const hi = this.seg.readUInt32LE(ptrWord * 8 + 4);
    if (lo === 0 && hi === 0) return null;
    if ((lo & 3) !== 0) throw new ProtocolError('expected a struct pointer');
    const start = ptrWord + 1 + (lo >> 2);
    const data = hi & 0xffff;
    const ptrs = hi >>> 16;
    if (start < 0 || start + data + ptrs > this.words) throw new ProtocolError('struct out of bounds');
    return { start, data, ptrs };
  }
  u16(s, index) {
    return index * 2 + 2 <= s.data * 8 ? this.seg.readUInt16LE(s.start * 8 + index * 2) : 0;
  }
  u32(s, index) {
    return index * 4 + 4 <= s.data * 8 ? this.seg.readUInt32LE(s.start * 8 + index * 4) : 0;
  }
  u64(s, index) {
    return index * 8 + 8 <= s.data * 8 ? Number(this.seg.readBigUInt64LE(s.start * 8 + index * 8)) : 0;
  }
  text(s, index) {
    if (index >= s.ptrs) return '';
    const ptrWord = s.start + s.data + index;
    const lo = this.word(ptrWord);
    const hi = this.seg.readUInt32LE(ptrWord * 8 + 4);
    if (lo === 0 && hi === 0) return '';
    if ((lo & 3) !== 1 || (hi & 7) !== 2) throw new ProtocolError('expected a text pointer');
    const start = ptrWord + 1 + (lo >> 2);
    const bytes = hi >>> 3;
    if (start < 0 || bytes === 0 || start * 8 + bytes > this.words * 8) {
      throw new ProtocolError('text out of bounds');
    }
    return this.seg.toString('utf8', start * 8, start * 8 + bytes - 1);
  }
}

/**
 * A server frame's payload as `{ type: 'welcome', server, version, maxFrame }`,
 * `{ type: 'ack', count, lastSeq }` or `{ type: 'error', kind, message }`.
 * Throws ProtocolError on anything else.
 */
export function decodeServerFrame(payload) {
  const r = new Reader(payload);
  const root = r.struct(0);
  if (!root || root.ptrs < 1) throw new ProtocolError('server frame without a body');
  const which = r.u16(root, 0);
  const body = r.struct(root.start + root.data);
  if (!body) throw new ProtocolError('server frame with a null body');
  switch (which) {
    case 0:
      return { type: 'ack', count: r.u64(body, 0), lastSeq: r.u64(body, 1) };
    case 1:
      return { type: 'error', kind: ERROR_KINDS[r.u16(body, 0)] ?? 'unknown', message: r.text(body, 0) };
    case 2:
      return { type: 'welcome', server: r.text(body, 0), version: r.text(body, 1), maxFrame: r.u32(body, 0) };
    default:
      throw new ProtocolError(`unknown server frame ${which}`);
  }
}

/**
 * Takes whole frames off the front of `bytes`: returns `{ payloads, rest }`. Throws
 * ProtocolError on a length over MAX_SERVER_FRAME (the stream cannot be trusted after it).
 */
export function splitFrames(bytes) {
  const payloads = [];
  let at = 0;
  while (bytes.length - at >= 4) {
    const len = bytes.readUInt32BE(at);
    if (len > MAX_SERVER_FRAME) throw new ProtocolError(`server frame of ${len} bytes`);
    if (bytes.length - at - 4 < len) break;
    payloads.push(bytes.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  return { payloads, rest: bytes.subarray(at) };
}
