// logmill for the browser: the same Client over gRPC-Web (fetch). No spool (no files); when the
// queue is full new records are dropped and counted (client.stats.dropped).

import { Client, LogmillError, LEVELS } from './src/core.js';
import { GrpcWebTransport } from './src/grpcweb.js';

export { Client, LogmillError, LEVELS };

export function connect(options = {}) {
  if (!options.url) throw new TypeError('connect({ url: "http://host:4021", ... }) in the browser');
  return new Client(options, new GrpcWebTransport(options), null);
}
