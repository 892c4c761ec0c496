#!/usr/bin/env node
// logmill gRPC interop client: the real, unmodified @grpc/grpc-js with @grpc/proto-loader reading
// proto/ at run time. tests/common/tools.rs installs both into target/tmp/tools/node (NODE_PATH
// points there); tests/clients.rs runs this against the real server, tests/grpc_driver.rs against
// the standalone connection driver (--standalone).
//
// Each scenario checks what the server answered; with --dir it also checks what the server stored
// (the server must run with --format json). Exits non-zero on the first failure.

'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const RUN = crypto.randomBytes(4).toString('hex');
const SENT = new Map(); // logger -> records sent in calls that succeeded

function parseArgs() {
  const args = { target: null, dir: null, standalone: false };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--target') args.target = argv[++i];
    else if (argv[i] === '--dir') args.dir = argv[++i];
    else if (argv[i] === '--standalone') args.standalone = true;
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!args.target) throw new Error('--target HOST:PORT is required');
  return args;
}

const protoDir = path.join(__dirname, '..', '..', 'proto');
const definition = protoLoader.loadSync(['logmill.proto', 'grpc/health/v1/health.proto'], {
  includeDirs: [protoDir],
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const loaded = grpc.loadPackageDefinition(definition);
const LogService = loaded.logmill.v1.LogService;
const Health = loaded.grpc.health.v1.Health;

function expect(cond, what) {
  if (!cond) throw new Error(what);
}

function tag(name) {
  return `js-${RUN}-${name}`;
}

function sent(t, n) {
  SENT.set(t, (SENT.get(t) || 0) + n);
}

function record(t, i, pad = 0) {
  return {
    message: `${t} ${i} ${'x'.repeat(pad)}`.trimEnd(),
    logger: t,
    level: 'LEVEL_ERROR',
    host: 'interop',
    line: i,
    fields: { run: RUN, i: String(i) },
  };
}

function request(t, start, n, pad = 0) {
  const records = [];
  for (let i = start; i < start + n; i++) records.push(record(t, i, pad));
  return { records };
}

function deadline(seconds) {
  return new Date(Date.now() + seconds * 1000);
}

function unaryCall(client, method, req, options = {}, metadata = new grpc.Metadata()) {
  return new Promise((resolve, reject) => {
    client[method](req, metadata, { deadline: deadline(60), ...options }, (err, res) =>
      err ? reject(err) : resolve(res));
  });
}

function streamCall(client, requests, options = {}, pauseMs = 0) {
  return new Promise((resolve, reject) => {
    const call = client.PushStream({ deadline: deadline(120), ...options }, (err, res) =>
      err ? reject(err) : resolve(res));
    (async () => {
      for (const r of requests) {
        if (!call.write(r)) await new Promise((ok) => call.once('drain', ok));
        if (pauseMs) await new Promise((ok) => setTimeout(ok, pauseMs));
      }
      call.end();
    })().catch(reject);
  });
}

async function expectCode(promise, code, what, contains) {
  try {
    await promise;
  } catch (e) {
    expect(e.code === code, `${what}: expected ${code}, got ${e.code} ${e.details}`);
    if (contains) expect((e.details || '').includes(contains), `${what}: ${e.details} lacks ${contains}`);
    return e;
  }
  throw new Error(`${what}: expected code ${code}, the call succeeded`);
}

// ---------------------------------------------------------------------------------------------

async function health(target) {
  const client = new Health(target, grpc.credentials.createInsecure());
  for (const service of ['', 'logmill.v1.LogService']) {
    const r = await unaryCall(client, 'Check', { service });
    expect(r.status === 'SERVING', `Check ${service}: ${JSON.stringify(r)}`);
  }
  await expectCode(unaryCall(client, 'Check', { service: 'nope' }), grpc.status.NOT_FOUND, 'Check nope');
  const first = await new Promise((resolve, reject) => {
    const call = client.Watch({ service: '' }, { deadline: deadline(10) });
    call.on('data', (r) => { resolve(r); call.cancel(); });
    call.on('error', (e) => { if (e.code !== grpc.status.CANCELLED) reject(e); });
  });
  expect(first.status === 'SERVING', `Watch: ${JSON.stringify(first)}`);
  client.close();
}

async function unary(target) {
  const client = new LogService(target, grpc.credentials.createInsecure());
  let t = tag('unary');
  const md = new grpc.Metadata();
  md.set('logmill-app', 'interop-js');
  md.set('logmill-instance', RUN);
  let r = await unaryCall(client, 'Push', request(t, 0, 1), {}, md);
  expect(r.accepted === 1 && r.first_seq === r.last_seq && r.first_seq > 0, `Push: ${JSON.stringify(r)}`);
  sent(t, 1);
  t = tag('unary10k');
  r = await unaryCall(client, 'Push', request(t, 0, 10000));
  expect(r.accepted === 10000 && r.last_seq - r.first_seq + 1 >= 10000, `Push 10k: ${JSON.stringify(r)}`);
  sent(t, 10000);
  // LogMessage: the seed's `client.logMessage(logEntry)`, one record per call.
  t = tag('logmessage');
  for (let i = 0; i < 3; i++) {
    r = await unaryCall(client, 'LogMessage', record(t, i), {}, md);
    expect(r.accepted === 1 && r.first_seq === r.last_seq && r.first_seq > 0,
      `LogMessage: ${JSON.stringify(r)}`);
    sent(t, 1);
  }
  client.close();
}

async function streaming(target) {
  const client = new LogService(target, grpc.credentials.createInsecure());
  const t = tag('stream');
  const requests = [];
  for (let m = 0; m < 100; m++) requests.push(request(t, m * 100, 100));
  const r = await streamCall(client, requests);
  expect(r.accepted === 10000, `PushStream: ${JSON.stringify(r)}`);
  sent(t, 10000);
  client.close();
}

async function concurrency(target) {
  const clients = [];
  for (let c = 0; c < 4; c++) {
    // Distinct channel options give distinct subchannels, so four TCP connections.
    clients.push(new LogService(target, grpc.credentials.createInsecure(), { 'grpc.channel_id': c }));
  }
  const calls = [];
  for (let c = 0; c < 4; c++) {
    for (let k = 0; k < 6; k++) {
      const t = tag(`conc-${c}-${k}`);
      const p = k % 2 === 0
        ? unaryCall(clients[c], 'Push', request(t, 0, 500))
        : streamCall(clients[c], Array.from({ length: 10 }, (_, m) => request(t, m * 50, 50)));
      calls.push(p.then((r) => {
        expect(r.accepted === 500, `${t}: ${JSON.stringify(r)}`);
        sent(t, 500);
      }));
    }
  }
  await Promise.all(calls);
  clients.forEach((c) => c.close());
}

async function errors(target) {
  const raw = new grpc.Client(target, grpc.credentials.createInsecure());
  const rawCall = (method, bytes) => new Promise((resolve, reject) => {
    raw.makeUnaryRequest(method, (b) => b, (b) => b, bytes, new grpc.Metadata(),
      { deadline: deadline(10) }, (err, res) => (err ? reject(err) : resolve(res)));
  });
  await expectCode(rawCall('/logmill.v1.LogService/Nope', Buffer.alloc(0)), grpc.status.UNIMPLEMENTED,
    'unknown method', 'unknown method');
  await expectCode(rawCall('/no.Such/Service', Buffer.alloc(0)), grpc.status.UNIMPLEMENTED, 'unknown service');
  await expectCode(rawCall('/logmill.v1.LogService/Push', Buffer.from([0x0a, 0x05, 0x08])),
    grpc.status.INVALID_ARGUMENT, 'undecodable', 'not a valid PushRequest');
  await expectCode(rawCall('/logmill.v1.LogService/LogMessage', Buffer.from([0x1a, 0x05, 0x61, 0x62])),
    grpc.status.INVALID_ARGUMENT, 'undecodable LogRecord', 'not a valid LogRecord');
  raw.close();

  const client = new LogService(target, grpc.credentials.createInsecure());
  await expectCode(unaryCall(client, 'Push', request(tag('big'), 0, 1, 5 * 1024 * 1024)),
    grpc.status.RESOURCE_EXHAUSTED, 'message over the limit');
  const slow = streamCall(client, [request(tag('late'), 0, 1), request(tag('late'), 1, 1)],
    { deadline: deadline(0.3) }, 1500);
  await expectCode(slow, grpc.status.DEADLINE_EXCEEDED, 'deadline');
  const md = new grpc.Metadata();
  md.set('x-huge', 'v'.repeat(20000));
  const e = await unaryCall(client, 'Push', request(tag('hdr'), 0, 1), {}, md).then(() => null, (err) => err);
  expect(e !== null, 'metadata over the header list limit was accepted');
  console.log(`  oversized metadata: code ${e.code}`);
  client.close();

  const gz = new LogService(target, grpc.credentials.createInsecure(),
    { 'grpc.default_compression_algorithm': 2, 'grpc.channel_id': 'gzip' });
  const t = tag('gzip');
  const r = await unaryCall(gz, 'Push', request(t, 0, 100, 50));
  expect(r.accepted === 100, `gzip: ${JSON.stringify(r)}`);
  sent(t, 100);
  gz.close();
  const deflate = new LogService(target, grpc.credentials.createInsecure(),
    { 'grpc.default_compression_algorithm': 1, 'grpc.channel_id': 'deflate' });
  await expectCode(unaryCall(deflate, 'Push', request(tag('deflate'), 0, 100, 50)),
    grpc.status.UNIMPLEMENTED, 'unsupported compression');
  deflate.close();
}

function checkFiles(dir) {
  const seen = new Map();
  // The anonymous files and every app's bucket (<dir>/<app>/_main.log*).
  const dirs = [dir].concat(
    fs.readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => path.join(dir, e.name)),
  );
  const files = dirs.flatMap((d) =>
    fs.readdirSync(d).filter((n) => n.startsWith('_main.log')).map((n) => path.join(d, n)));
  for (const file of files.sort()) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      if (!line) continue;
      const rec = JSON.parse(line);
      if (!(rec.logger || '').startsWith(`js-${RUN}-`)) continue;
      if (!seen.has(rec.logger)) seen.set(rec.logger, []);
      seen.get(rec.logger).push([rec.seq, Number(rec.fields.i)]);
    }
  }
  let total = 0;
  for (const [logger, n] of SENT) {
    const got = (seen.get(logger) || []).sort((a, b) => a[0] - b[0]);
    expect(got.length === n, `${logger}: ${got.length} stored, ${n} sent`);
    got.forEach(([, i], k) => expect(i === k, `${logger}: stored out of order`));
    total += n;
  }
  console.log(`  files: ${total} records stored, in order`);
}

async function main() {
  const args = parseArgs();
  const scenarios = [
    ['health', () => health(args.target)],
    ['unary', () => unary(args.target)],
    ['streaming', () => streaming(args.target)],
    ['concurrency', () => concurrency(args.target)],
    ['errors', () => errors(args.target)],
  ];
  for (const [name, run] of scenarios) {
    const started = Date.now();
    await run();
    console.log(`node grpc-js: ${name} ok (${((Date.now() - started) / 1000).toFixed(1)}s)`);
  }
  if (args.dir) checkFiles(args.dir);
  const version = require('@grpc/grpc-js/package.json').version;
  console.log(`node grpc-js ${version}: all ${scenarios.length} scenarios ok`);
}

main().catch((e) => {
  console.error(`node grpc-js: FAILED: ${e.stack || e}`);
  process.exit(1);
});
