// Prints the frames this package encodes for fixed records, one JSON line each, for
// tests/client_js.rs to compare byte for byte with the Rust encoder's frames.
import { encodeRecords, encodeHello } from '../src/capnp.js';

const rich = {
  timestampNs: '1700000000123456789', level: 'error', message: 'disk almost full ✓', logger: 'app.disk',
  host: 'web-1', service: 'billing', module: 'disk', file: 'disk.js', line: 42, function: 'check',
  processId: 7, processName: 'node', threadId: 9, threadName: 'main', stackTrace: 'Error: x\n    at y',
  fields: [['mount', '/var'], ['ünï', '{"a":1}']],
};
const frames = {
  one: encodeRecords([{ level: 'warning', message: 'hello' }]),
  rich: encodeRecords([rich]),
  batch: encodeRecords([rich, { level: 'debug', json: '{"k":[1,2]}' }, { level: 'info', message: '' }]),
  // The client's own stamps are microseconds, turned into nanoseconds without BigInt.
  stamped: encodeRecords([{ level: 'info', message: 'm', timestampUs: 1764650000123456 }]),
  hello: encodeHello({ app: 'billing', instance: 'pod-7', token: 'tok', wantAcks: true }),
};
for (const [name, bytes] of Object.entries(frames)) console.log(JSON.stringify({ name, hex: bytes.toString('hex') }));
