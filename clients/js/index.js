// logmill for Node: the native TCP protocol with acks, batching, reconnect and a file spool.
// `connect({ host, port, app, instance, token, spoolDir })` returns a Client (src/core.js);
// `connect({ url })` speaks gRPC-Web instead, as the browser build does.

import { Writable } from 'node:stream';
import { Client, LogmillError, LEVELS } from './src/core.js';
import { TcpTransport } from './src/tcp.js';
import { GrpcWebTransport } from './src/grpcweb.js';
import { Spool } from './src/spool.js';

export { Client, LogmillError, LEVELS };

export function connect(options = {}) {
  const transport = options.url ? new GrpcWebTransport(options) : new TcpTransport(options);
  let client = null;
  const spool = options.spoolDir
    ? new Spool(options.spoolDir, {
        maxBytes: options.spoolMaxBytes,
        segmentBytes: options.spoolSegmentBytes,
        onDrop: (count, bound) => {
          client.stats.spoolDropped += count;
          client.emit('warning', new LogmillError('spool-full', `spool over ${bound} bytes: dropped its oldest ${count} records (stats.spoolDropped counts them)`));
        },
      })
    : null;
  client = new Client(options, transport, spool);
  return client;
}

// pino's numeric levels (and bunyan's, the same scale).
const PINO_LEVELS = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warning', 50: 'error', 60: 'critical' };
// winston's npm levels by name (the rest of its names are logmill's own or aliases core.js knows).
const NAMED_LEVELS = { verbose: 'debug', silly: 'trace', http: 'info' };
const RESERVED = new Set(['level', 'msg', 'message', 'time', 'timestamp', 'name', 'pid', 'hostname', 'v', 'err']);

function levelOf(level) {
  if (typeof level === 'number') return PINO_LEVELS[level] ?? 'info';
  const name = String(level ?? 'info').toLowerCase();
  if (NAMED_LEVELS[name]) return NAMED_LEVELS[name];
  return LEVELS.includes(name) || ['warn', 'fatal', 'crit', 'err', 'emerg'].includes(name) ? name : 'info';
}

/**
 * A writable stream of JSON lines into `client`: pino's output (`pino(stream(client))`) or
 * winston's with its json format (`new winston.transports.Stream({ stream: stream(client) })`).
 * `level` (pino's number or a name), `msg` or `message`, `name` as the logger, `err.stack` as
 * the stack trace, every other key a field.
 */
export function stream(client) {
  let partial = '';
  return new Writable({
    write(chunk, _encoding, done) {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop();
      for (const line of lines) {
        if (!line.trim()) continue;
        let o;
        try {
          o = JSON.parse(line);
        } catch {
          client.log('info', line);
          continue;
        }
        const level = levelOf(o.level);
        const fields = {};
        for (const [k, v] of Object.entries(o)) if (!RESERVED.has(k)) fields[k] = v;
        if (o.name) fields.logger = String(o.name);
        if (o.err && o.err.stack) fields.err = Object.assign(new Error(o.err.message), { stack: o.err.stack });
        client.log(level, String(o.msg ?? o.message ?? ''), fields);
      }
      done();
    },
    final(done) {
      client.flush().then(() => done(), done);
    },
  });
}
