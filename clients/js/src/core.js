// The client's engine, shared by Node (TCP, src/tcp.js) and the browser (gRPC-Web, src/grpcweb.js):
// the in-memory queue, background batching, the window of sent-but-unacked records, reconnect with
// backoff, the spool hand-off and flush/close. No I/O here: a transport moves batches and reports
// acks; a spool (Node only, src/spool.js) stores what memory cannot hold.
//
// A record's life: log() -> queue (or the spool) -> a batch frame -> inflight -> acked and dropped.
// On a lost connection every inflight record goes back to the front of the queue, in order, and is
// sent again once a new connection is ready: at-least-once, duplicates only from that window.

export const LEVELS = ['trace', 'debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];
const ALIASES = { warn: 'warning', fatal: 'critical', crit: 'critical', err: 'error', emerg: 'emergency' };

/** Why the client gave up: `code` is `unauthorized`, `protocol`, `closed` or `timeout`. */
export class LogmillError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'LogmillError';
    this.code = code;
  }
}

export const DEFAULTS = {
  app: '',
  instance: '',
  token: '',
  batchSize: 500, // records per frame: amortises the frame and the server's ack per batch
  batchBytes: 256 * 1024, // and bytes per frame, under any sane --max-frame
  maxInflight: 5000, // records sent and not yet acked before sending pauses
  maxQueue: 10000, // records held in memory (queue + inflight) before the spool or dropping
  backoffMs: 100, // first reconnect delay, doubled per failure ...
  backoffMaxMs: 10000, // ... up to this, each with jitter in [d/2, d]
  connectTimeoutMs: 10000,
};

const now = typeof performance !== 'undefined' ? () => performance.timeOrigin + performance.now() : () => Date.now();

function text(v) {
  return typeof v === 'string' ? v : v === undefined ? '' : JSON.stringify(v) ?? String(v);
}

/**
 * Turns what the caller gave into the record the encoders take. `body` is a string (message) or
 * anything else (JSON body); `fields` an object whose non-string values are kept as JSON text.
 */
export function makeRecord(level, body, fields, defaults) {
  const lv = ALIASES[level] ?? level;
  if (!LEVELS.includes(lv)) throw new TypeError(`unknown level ${level}`);
  const r = { level: lv, timestampUs: Math.round(now() * 1000) };
  if (typeof body === 'string') r.message = body;
  else if (body instanceof Error) {
    r.message = body.message;
    r.stackTrace = body.stack ?? '';
  } else r.json = JSON.stringify(body ?? null);
  if (defaults.logger) r.logger = defaults.logger;
  if (defaults.service) r.service = defaults.service;
  if (fields) {
    const list = [];
    for (const [k, v] of Object.entries(fields)) {
      if (k === 'logger' && typeof v === 'string') r.logger = v;
      else if (v instanceof Error) r.stackTrace = v.stack ?? v.message;
      else list.push([k, text(v)]);
    }
    if (list.length) r.fields = list;
  }
  return r;
}

export class Client {
  /**
   * @param options see DEFAULTS and index.d.ts
   * @param transport `{ connect(handlers), send(frameRecords) -> void, close() }`
   * @param spool a Spool (Node) or null
   */
  constructor(options, transport, spool) {
    this.options = { ...DEFAULTS, ...options };
    this.transport = transport;
    this.spool = spool;
    this.queue = [];
    this.inflight = []; // records sent on the current connection, oldest first
    this.inflightHead = 0; // acked records at the front of `inflight` not yet cut off
    this.state = 'connecting'; // connecting | ready | backoff | failed | closed
    this.unreachable = false; // the last connection attempt failed
    this.retries = 0;
    this.failure = null; // the LogmillError that stopped the client
    this.waiters = []; // flush() promises: { resolve, reject, timer }
    this.listeners = {};
    this.scheduled = false;
    this.warned = false;
    this.batchBytes = this.options.batchBytes;
    this.stats = { logged: 0, sent: 0, acked: 0, resent: 0, dropped: 0, spooled: 0, spoolDropped: 0, reconnects: 0, connectFailures: 0 };
    this.connect();
  }

  on(event, fn) {
    (this.listeners[event] ??= []).push(fn);
    return this;
  }

  emit(event, ...args) {
    const fns = this.listeners[event];
    if (fns && fns.length) for (const fn of fns) fn(...args);
    else if (event === 'error' || event === 'warning') console.warn(`logmill: ${args[0]?.message ?? args[0]}`);
  }

  log(level, body, fields) {
    if (this.state === 'closed') {
      // A logging call never throws into the program: after close() records are counted, not sent.
      this.stats.dropped++;
      if (!this.warned) {
        this.warned = true;
        this.emit('warning', new LogmillError('closed', 'logmill client is closed: dropping records logged after close() (stats.dropped counts them)'));
      }
      return;
    }
    const r = makeRecord(level, body, fields, this.options);
    this.stats.logged++;
    const held = this.queue.length + this.inflight.length - this.inflightHead;
    if (this.spool && (this.spool.pending() || this.unreachable || held >= this.options.maxQueue || this.state === 'failed')) {
      this.spool.append(r);
      this.stats.spooled++;
    } else if (held >= this.options.maxQueue) {
      this.stats.dropped++;
      if (!this.warned) {
        this.warned = true;
        this.emit('warning', new LogmillError('dropped', `queue full (${this.options.maxQueue} records) and no spool: dropping new records (stats.dropped counts them)`));
      }
    } else {
      this.queue.push(r);
      this.warned = false; // the next drop is a new episode, with its own warning
    }
    this.schedule();
  }

  /** Resolves once everything logged so far is acked (spool included); rejects on timeout or failure. */
  flush(timeoutMs = 10000) {
    if (this.failure) return Promise.reject(this.failure);
    this.schedule();
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      waiter.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new LogmillError('timeout', `flush: ${this.pendingCount()} records not acked after ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /**
   * Flushes, then closes the connection. Records still unacked at the timeout go to the spool when
   * there is one (replayed by the next client on that directory); otherwise the promise rejects
   * with their count.
   */
  async close(timeoutMs = 10000) {
    if (this.state === 'closed') return;
    let failure = null;
    try {
      await this.flush(timeoutMs);
    } catch (e) {
      failure = e;
    }
    const left = this.takeUnacked();
    this.state = 'closed';
    this.warned = false;
    this.transport.close();
    clearTimeout(this.timer);
    if (left.length && this.spool) {
      this.spool.append(...left);
      this.stats.spooled += left.length;
    }
    // With a spool a timeout loses nothing (the next client replays it); a refusal still throws.
    if (failure && failure.code === 'timeout' && this.spool) failure = null;
    if (this.spool) this.spool.close();
    if (failure) throw failure;
  }

  pendingCount() {
    return this.queue.length + this.inflight.length - this.inflightHead + (this.spool ? this.spool.count() : 0);
  }

  idle() {
    return this.pendingCount() === 0;
  }

  /** Unacked records not from the spool (those are still in its files), oldest first. */
  takeUnacked() {
    const all = this.inflight.slice(this.inflightHead).concat(this.queue);
    this.inflight = [];
    this.inflightHead = 0;
    this.queue = [];
    return all.filter((r) => !r.spoolSegment);
  }

  schedule() {
    if (this.scheduled || this.state === 'closed') return;
    this.scheduled = true;
    // Records logged in the same turn of the event loop go out in one frame.
    setTimeout(() => {
      this.scheduled = false;
      this.pump();
    }, 0);
  }

  pump() {
    if (this.spool) this.spool.sync();
    if (this.state !== 'ready') {
      this.settle();
      return;
    }
    const o = this.options;
    for (;;) {
      if (this.queue.length === 0 && this.spool && this.spool.pending()) {
        const records = this.spool.take();
        if (records) for (const r of records) this.queue.push(r);
      }
      const window = o.maxInflight - (this.inflight.length - this.inflightHead);
      if (this.queue.length === 0 || window <= 0 || !this.transport.writable()) break;
      let n = 0;
      let bytes = 0;
      const limit = Math.min(o.batchSize, window, this.queue.length);
      while (n < limit && n < this.queue.length) {
        const size = recordSize(this.queue[n]);
        if (size > this.batchBytes && this.tooLarge(n, size)) continue;
        bytes += size;
        if (n > 0 && bytes > this.batchBytes) break;
        n++;
      }
      if (n === 0) continue; // every candidate was over the max frame and dropped
      const batch = this.queue.splice(0, n);
      for (const r of batch) this.inflight.push(r);
      this.stats.sent += n;
      this.transport.send(batch);
    }
    this.settle();
  }

  /**
   * A record whose frame would pass the server's max frame would be refused, the connection
   * closed, and the record sent again forever: it is dropped here, counted and warned about.
   * Returns true when the record at `at` was removed from the queue.
   */
  tooLarge(at, size) {
    const max = this.welcome?.maxFrame;
    if (!max || size <= max || (this.transport.frameBytes && this.transport.frameBytes(this.queue[at]) <= max)) return false;
    const [r] = this.queue.splice(at, 1);
    this.stats.dropped++;
    this.emit('warning', new LogmillError('dropped', `a record of about ${size} bytes is over the server's max frame (${max} bytes): dropped (stats.dropped counts it)`));
    if (r.spoolLast) {
      // The segment's file goes once its last record is acked: that mark moves to the one before.
      const before = at > 0 ? this.queue[at - 1] : this.inflight.at(-1);
      if (before && before.spoolSegment === r.spoolSegment) before.spoolLast = true;
      else this.spool.done(r.spoolSegment);
    }
    return true;
  }

  /** Resolves the flush waiters once nothing is pending. */
  settle() {
    const busy = this.queue.length + this.inflight.length - this.inflightHead > 0;
    this.transport.hold?.(busy);
    if (this.timer && this.timer.unref) busy ? this.timer.ref() : this.timer.unref();
    if (this.idle() && this.waiters.length) {
      for (const w of this.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.resolve();
      }
    }
  }

  connect() {
    this.state = 'connecting';
    this.transport.connect({
      ready: (welcome) => {
        if (this.state === 'closed') return;
        this.state = 'ready';
        this.unreachable = false;
        this.retries = 0;
        this.welcome = welcome;
        if (welcome.maxFrame) this.batchBytes = Math.min(this.options.batchBytes, Math.floor(welcome.maxFrame / 2));
        this.emit('ready', welcome);
        this.pump();
      },
      acked: (n) => this.acked(n),
      writable: () => this.pump(),
      lost: (err, reached) => this.lost(err, reached),
      fatal: (err) => this.fail(err),
    });
  }

  acked(n) {
    const head = this.inflightHead + n;
    if (head > this.inflight.length) {
      this.fail(new LogmillError('protocol', `server acked ${n} records, only ${this.inflight.length - this.inflightHead} in flight`));
      return;
    }
    for (let i = this.inflightHead; i < head; i++) {
      const seg = this.inflight[i].spoolSegment;
      if (seg && this.inflight[i].spoolLast) this.spool.done(seg);
    }
    this.inflightHead = head;
    this.stats.acked += n;
    if (this.inflightHead > 1024 && this.inflightHead * 2 > this.inflight.length) {
      this.inflight = this.inflight.slice(this.inflightHead);
      this.inflightHead = 0;
    }
    this.pump();
  }

  /** The connection is gone: unacked records go back to the front of the queue, in order. */
  lost(err, reached) {
    if (this.state === 'closed' || this.state === 'failed') return;
    const unacked = this.inflight.slice(this.inflightHead);
    this.stats.resent += unacked.length;
    this.queue = unacked.concat(this.queue);
    this.inflight = [];
    this.inflightHead = 0;
    if (!reached) {
      this.unreachable = true;
      this.stats.connectFailures++;
    }
    this.retries++;
    this.state = 'backoff';
    const ceiling = Math.min(this.options.backoffMaxMs, this.options.backoffMs * 2 ** Math.min(this.retries - 1, 20));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.emit('disconnect', err, delay);
    this.timer = setTimeout(() => {
      this.stats.reconnects++;
      this.connect();
    }, delay);
    this.settle();
  }

  /** A refusal (bad token) or a broken protocol: no reconnect loop; flush and close reject. */
  fail(err) {
    if (this.state === 'closed') return;
    this.state = 'failed';
    this.failure = err;
    this.transport.close();
    clearTimeout(this.timer);
    if (this.spool) {
      const left = this.takeUnacked();
      if (left.length) this.spool.append(...left);
    }
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.emit('error', err);
  }
}

const TEXTS = ['logger', 'host', 'service', 'module', 'file', 'function', 'processName', 'threadName', 'stackTrace'];

/**
 * An upper bound of a record's bytes in a frame: its struct and pointers, 3 bytes per UTF-16 unit
 * (the most UTF-8 needs) and a word of padding per text. A batch under `batchBytes` by this count
 * is under it on the wire, whatever the text.
 */
function recordSize(r) {
  let n = 120 + 8 + 3 * (r.message ?? r.json).length;
  for (const name of TEXTS) if (r[name]) n += 8 + 3 * r[name].length;
  if (r.fields) for (const [k, v] of r.fields) n += 32 + 3 * (k.length + v.length);
  return n;
}

// client.info(body, fields), client.warning(...), ...: one method per level, plus warn and fatal.
for (const level of [...LEVELS, 'warn', 'fatal']) {
  Client.prototype[level] = function (body, fields) {
    this.log(level, body, fields);
  };
}
