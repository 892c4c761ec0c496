// The spool: records that memory cannot hold (queue full) or that wait for an unreachable server,
// in append-only files under one directory, replayed oldest first. Node only.
//
// Files are `NNNNNNNNNNNN.spool` (a counter, so names sort in order), each a run of JSON lines, one
// record per line as the engine holds it. A segment is closed at `segmentBytes`; the engine takes
// whole segments back (take()) and the file is deleted once the last of its records is acked
// (done()), so a crash replays a segment rather than losing it. When the files pass `maxBytes`,
// the oldest segment not being replayed is deleted: its records are counted in `dropped` and a
// warning is raised. Writes are batched: append() buffers, sync() (once per event-loop turn, from
// the engine) writes the buffer with one appendFileSync.

import fs from 'node:fs';
import path from 'node:path';

export class Spool {
  constructor(dir, { maxBytes = 64 * 1024 * 1024, segmentBytes = 0, onDrop = () => {} } = {}) {
    this.dir = dir;
    this.maxBytes = maxBytes;
    this.segmentBytes = segmentBytes || Math.max(4096, Math.min(1024 * 1024, Math.floor(maxBytes / 8)));
    this.onDrop = onDrop;
    this.buffer = [];
    this.bufferBytes = 0;
    this.dropped = 0;
    fs.mkdirSync(dir, { recursive: true });
    // Segments left by an earlier process come first.
    this.segments = fs.readdirSync(dir).filter((f) => /^\d{12}\.spool$/.test(f)).sort().map((name) => {
      const file = path.join(dir, name);
      const text = fs.readFileSync(file, 'utf8');
      return { file, bytes: Buffer.byteLength(text), count: text.split('\n').length - 1, taken: false };
    });
    const last = this.segments.at(-1);
    this.counter = last ? Number(path.basename(last.file, '.spool')) + 1 : 1;
    this.active = null; // the segment being appended to
  }

  /** Records not yet taken back (buffered or in files). */
  count() {
    let n = this.buffer.length;
    for (const s of this.segments) if (!s.taken) n += s.count;
    return n;
  }

  pending() {
    return this.buffer.length > 0 || this.segments.some((s) => !s.taken);
  }

  append(...records) {
    for (const r of records) {
      const { spoolSegment, spoolLast, ...plain } = r;
      const line = JSON.stringify(plain) + '\n';
      this.buffer.push(line);
      this.bufferBytes += Buffer.byteLength(line);
    }
  }

  /** Writes the buffered lines, rolling segments at segmentBytes and enforcing maxBytes. */
  sync() {
    if (!this.buffer.length) return;
    let lines = [];
    let bytes = 0;
    const write = () => {
      if (!lines.length) return;
      fs.appendFileSync(this.active.file, lines.join(''));
      this.active.bytes += bytes;
      this.active.count += lines.length;
      lines = [];
      bytes = 0;
    };
    for (const line of this.buffer) {
      if (!this.active || this.active.taken || this.active.bytes + bytes >= this.segmentBytes) {
        write();
        this.active = { file: path.join(this.dir, `${String(this.counter++).padStart(12, '0')}.spool`), bytes: 0, count: 0, taken: false };
        this.segments.push(this.active);
      }
      lines.push(line);
      bytes += Buffer.byteLength(line);
    }
    write();
    this.buffer = [];
    this.bufferBytes = 0;
    this.enforce();
  }

  /** Drops the oldest segments not being replayed until the files fit maxBytes. */
  enforce() {
    let total = this.segments.reduce((n, s) => n + s.bytes, 0);
    while (total > this.maxBytes) {
      const victim = this.segments.find((s) => !s.taken && s !== this.active) ?? null;
      if (!victim) break;
      fs.rmSync(victim.file, { force: true });
      this.segments = this.segments.filter((s) => s !== victim);
      total -= victim.bytes;
      this.dropped += victim.count;
      this.onDrop(victim.count, this.maxBytes);
    }
  }

  /** The oldest untaken segment's records (the last one marked), or null. */
  take() {
    this.sync();
    const seg = this.segments.find((s) => !s.taken);
    if (!seg) return null;
    seg.taken = true;
    if (seg === this.active) this.active = null;
    const records = [];
    for (const line of fs.readFileSync(seg.file, 'utf8').split('\n')) {
      if (!line) continue;
      try {
        records.push(JSON.parse(line));
      } catch {
        // A line torn by a crash while it was written: the rest of the file is still good.
      }
    }
    if (!records.length) {
      this.done(seg.file);
      return this.take();
    }
    for (const r of records) r.spoolSegment = seg.file;
    records.at(-1).spoolLast = true;
    return records;
  }

  /** Every record of `file` is acked: delete it. */
  done(file) {
    fs.rmSync(file, { force: true });
    this.segments = this.segments.filter((s) => s.file !== file);
  }

  close() {
    this.sync();
  }
}
