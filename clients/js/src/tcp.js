// One native TCP connection at a time (Node's net.Socket): hello, wait for the welcome, then
// batch frames out and cumulative acks in. Reports to the engine (src/core.js) through handlers:
// ready(welcome), acked(n), writable(), lost(err, reached) and fatal(err) for a refused token.

import net from 'node:net';
import { encodeHello, encodeRecords, decodeServerFrame, splitFrames, ProtocolError } from './capnp.js';
import { LogmillError } from './core.js';

const KEEPALIVE_MS = 15000;

export class TcpTransport {
  constructor({ host = '127.0.0.1', port = 4020, app = '', instance = '', token = '', connectTimeoutMs = 10000 }) {
    Object.assign(this, { host, port, hello: encodeHello({ app, instance, token }), connectTimeoutMs });
    this.socket = null;
  }

  connect(handlers) {
    const socket = net.createConnection({ host: this.host, port: this.port });
    this.socket = socket;
    let reached = false; // the welcome arrived
    let refused = null; // an error frame that explains the close
    let acked = 0; // cumulative count of this connection
    let inbox = Buffer.alloc(0);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_MS);
    socket.setTimeout(this.connectTimeoutMs);
    socket.on('timeout', () => socket.destroy(new Error('no welcome from the server in time')));
    socket.on('connect', () => socket.write(this.hello));
    socket.on('drain', () => handlers.writable());
    socket.on('data', (chunk) => {
      if (this.socket !== socket) return;
      inbox = inbox.length ? Buffer.concat([inbox, chunk]) : chunk;
      let frames;
      try {
        frames = splitFrames(inbox);
        inbox = Buffer.from(frames.rest);
        for (const payload of frames.payloads) {
          const frame = decodeServerFrame(payload);
          if (frame.type === 'welcome') {
            reached = true;
            socket.setTimeout(0);
            handlers.ready(frame);
          } else if (frame.type === 'ack') {
            if (frame.count < acked) throw new ProtocolError(`ack count went back from ${acked} to ${frame.count}`);
            const n = frame.count - acked;
            acked = frame.count;
            if (n > 0) handlers.acked(n);
          } else if (frame.kind === 'unauthorized' || frame.kind === 'undecodable') {
            refused = new LogmillError(frame.kind === 'unauthorized' ? 'unauthorized' : 'protocol',
              `logmill server refused the connection (${frame.kind}): ${frame.message}`);
          } else {
            refused = refused ?? new Error(`server closing the connection (${frame.kind}): ${frame.message}`);
          }
        }
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        refused = new LogmillError('protocol', `bad answer from ${this.host}:${this.port}: ${e.message}`);
      }
      if (refused instanceof LogmillError) {
        this.socket = null;
        socket.destroy();
        handlers.fatal(refused);
      }
    });
    let failure = null;
    socket.on('error', (e) => { failure = e; }); // 'close' follows
    socket.on('close', (hadError) => {
      if (this.socket !== socket) return;
      this.socket = null;
      handlers.lost(refused ?? failure ?? new Error('server closed the connection'), reached);
    });
  }

  writable() {
    return this.socket !== null && !this.socket.writableNeedDrain;
  }

  /** A record's exact payload size in a frame of its own. */
  frameBytes(record) {
    return encodeRecords([record]).length - 4;
  }

  send(records) {
    this.socket.write(encodeRecords(records));
  }

  /** Keeps the process alive only while records wait for their acks. */
  hold(busy) {
    if (this.socket) busy ? this.socket.ref() : this.socket.unref();
  }

  close() {
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.end();
  }
}
