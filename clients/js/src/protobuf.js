// proto/logmill.proto's PushRequest by hand, for gRPC-Web: just the fields a client sets. Plain
// Uint8Array and TextEncoder, so it runs in browsers as in Node.

const LEVEL_NUMBERS = { trace: 1, debug: 2, info: 3, notice: 4, warning: 5, error: 6, critical: 7, alert: 8, emergency: 9 };
const utf8 = new TextEncoder();

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.len = 0;
  }
  room(n) {
    if (this.len + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    bigger.set(this.buf.subarray(0, this.len));
    this.buf = bigger;
  }
  varint(n) {
    this.room(10);
    while (n > 127) {
      this.buf[this.len++] = (n % 128) | 128;
      n = Math.floor(n / 128);
    }
    this.buf[this.len++] = n;
  }
  bigVarint(n) {
    this.room(10);
    let v = BigInt(n);
    while (v > 127n) {
      this.buf[this.len++] = Number(v & 127n) | 128;
      v >>= 7n;
    }
    this.buf[this.len++] = Number(v);
  }
  bytes(field, b) {
    this.varint((field << 3) | 2);
    this.varint(b.length);
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  string(field, s) {
    if (s) this.bytes(field, utf8.encode(s));
  }
  done() {
    return this.buf.subarray(0, this.len);
  }
}

const STRINGS = [['logger', 5], ['host', 6], ['service', 7], ['module', 8], ['file', 9], ['function', 11],
  ['processName', 13], ['threadName', 15], ['stackTrace', 16]];

function logRecord(r) {
  const w = new Writer();
  const ns = r.timestampUs ? BigInt(r.timestampUs) * 1000n : r.timestampNs ? BigInt(r.timestampNs) : 0n;
  if (ns) {
    w.varint(1 << 3);
    w.bigVarint(ns);
  }
  w.varint(2 << 3);
  w.varint(LEVEL_NUMBERS[r.level] ?? 3);
  if (r.json !== undefined) w.bytes(4, utf8.encode(r.json));
  else w.bytes(3, utf8.encode(r.message));
  for (const [name, field] of STRINGS) w.string(field, r[name]);
  if (r.line) { w.varint(10 << 3); w.varint(r.line); }
  if (r.processId) { w.varint(12 << 3); w.varint(r.processId); }
  if (r.threadId) { w.varint(14 << 3); w.bigVarint(r.threadId); }
  for (const [k, v] of r.fields ?? []) {
    const entry = new Writer();
    entry.string(1, k);
    entry.string(2, v);
    w.bytes(17, entry.done());
  }
  return w.done();
}

/** A PushRequest holding `records` (the engine's record objects). */
export function encodePushRequest(records) {
  const w = new Writer();
  for (const r of records) w.bytes(1, logRecord(r));
  return w.done();
}

/** PushResponse: 1 accepted, 2 first_seq, 3 last_seq (varints); unknown fields skipped. */
export function decodePushResponse(bytes) {
  const names = [null, 'accepted', 'firstSeq', 'lastSeq'];
  const out = { accepted: 0, firstSeq: 0, lastSeq: 0 };
  let at = 0;
  const varint = () => {
    let n = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (at >= bytes.length) throw new Error('truncated PushResponse');
      const b = bytes[at++];
      n += (b & 127) * scale;
      scale *= 128;
      if (!(b & 128)) return n;
    }
    throw new Error('varint too long in PushResponse');
  };
  while (at < bytes.length) {
    const key = varint();
    const wire = key & 7;
    if (wire === 0) {
      const v = varint();
      if (names[key >> 3]) out[names[key >> 3]] = v;
    } else if (wire === 2) {
      const len = varint();
      at += len;
    } else throw new Error(`unexpected wire type ${wire} in PushResponse`);
  }
  return out;
}
