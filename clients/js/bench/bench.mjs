// Records/s from one Node process into a running server, acks on:
//   node clients/js/bench/bench.mjs [HOST:PORT] [COUNT] [BYTES]      (default 127.0.0.1:4020 1000000 200)
// Prints the caller's cost per record (time inside log() calls) and the end-to-end rate (first
// log() to the last ack).
import { connect } from '../index.js';

const [addr = '127.0.0.1:4020', countArg = '1000000', bytesArg = '200'] = process.argv.slice(2);
const [host, port] = addr.split(':');
const count = Number(countArg);
const body = 'x'.repeat(Number(bytesArg));
const log = connect({ host, port: Number(port), app: 'bench', maxQueue: 200000, maxInflight: 50000 });
log.on('error', (e) => {
  console.error(e.message);
  process.exit(1);
});
await new Promise((resolve) => log.on('ready', resolve));

const start = process.hrtime.bigint();
let callerNs = 0n;
let i = 0;
// Log in slices of 10,000 so the event loop can write frames and read acks in between, as it
// does in a real program; the slice only bounds memory, it does not wait for acks.
while (i < count) {
  const t = process.hrtime.bigint();
  for (let k = 0; k < 10000 && i < count; k++, i++) log.info(body);
  callerNs += process.hrtime.bigint() - t;
  while (log.queue.length > 100000) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
}
await log.flush(120000);
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
await log.close();
console.log(JSON.stringify({
  records: count,
  bytes: Number(bytesArg),
  seconds: Number(seconds.toFixed(3)),
  records_per_s: Math.round(count / seconds),
  caller_ns_per_record: Math.round(Number(callerNs) / count),
  acked: log.stats.acked,
}));
