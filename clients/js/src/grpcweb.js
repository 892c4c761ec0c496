// The browser's transport: gRPC-Web over fetch to /logmill.v1.LogService/Push, one call at a time
// (the server runs one call per connection at a time anyway). A call's answer comes once its
// records are written, so a 200 with grpc-status 0 acks the whole batch; a network failure is a
// lost connection (the batch is sent again after the backoff); grpc-status 16 is a refused token.
// No Node APIs: Uint8Array, TextEncoder, fetch.

import { encodePushRequest, decodePushResponse } from './protobuf.js';
import { LogmillError } from './core.js';

export class GrpcWebTransport {
  constructor({ url, app = '', instance = '', token = '', fetch: fetchFn }) {
    this.url = `${url.replace(/\/$/, '')}/logmill.v1.LogService/Push`;
    this.headers = { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' };
    if (token) this.headers.authorization = `Bearer ${token}`;
    if (app) this.headers['logmill-app'] = app;
    if (instance) this.headers['logmill-instance'] = instance;
    this.fetch = fetchFn ?? globalThis.fetch.bind(globalThis);
    this.busy = false;
    this.open = false;
  }

  connect(handlers) {
    this.handlers = handlers;
    this.open = true;
    this.reached = false;
    // Nothing to open: the first call shows whether the server is there.
    handlers.ready({ server: '', version: '', maxFrame: 0 });
  }

  writable() {
    return this.open && !this.busy;
  }

  async send(records) {
    this.busy = true;
    const handlers = this.handlers;
    let outcome;
    try {
      outcome = await this.call(records);
    } catch (e) {
      outcome = { lost: e };
    }
    this.busy = false;
    if (!this.open) return;
    if (outcome.fatal) {
      this.open = false;
      handlers.fatal(outcome.fatal);
    } else if (outcome.lost) {
      this.open = false;
      handlers.lost(outcome.lost, this.reached);
    } else {
      this.reached = true;
      handlers.acked(records.length);
    }
  }

  async call(records) {
    const message = encodePushRequest(records);
    const body = new Uint8Array(5 + message.length);
    new DataView(body.buffer).setUint32(1, message.length);
    body.set(message, 5);
    const response = await this.fetch(this.url, { method: 'POST', headers: this.headers, body });
    const bytes = new Uint8Array(await response.arrayBuffer());
    let status = response.headers.get('grpc-status');
    let text = response.headers.get('grpc-message') ?? '';
    let reply = null;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at + 5 <= bytes.length;) {
      const len = view.getUint32(at + 1);
      if (at + 5 + len > bytes.length) break;
      const payload = bytes.subarray(at + 5, at + 5 + len);
      if (bytes[at] & 0x80) {
        const trailers = new TextDecoder().decode(payload);
        status = /grpc-status:\s*(\d+)/.exec(trailers)?.[1] ?? status;
        text = /grpc-message:\s*(.*)\r\n/.exec(trailers)?.[1] ?? text;
      } else {
        reply = decodePushResponse(payload);
      }
      at += 5 + len;
    }
    const message_ = decodeURIComponent(text);
    if (status === '16') return { fatal: new LogmillError('unauthorized', `logmill server refused the token (UNAUTHENTICATED): ${message_}`) };
    if (status === '0' && reply && reply.accepted === records.length) return {};
    if (!response.ok || status === '14' || status === '8' || status === null) {
      return { lost: new Error(`HTTP ${response.status}, grpc-status ${status}: ${message_}`) };
    }
    if (status === '0') return { fatal: new LogmillError('protocol', `server accepted ${reply?.accepted} of ${records.length} records`) };
    return { fatal: new LogmillError('protocol', `grpc-status ${status}: ${message_}`) };
  }

  close() {
    this.open = false;
  }
}
