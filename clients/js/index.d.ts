// Types for the logmill client (Node entry index.js and browser entry browser.js share them).

export type Level =
  | 'trace' | 'debug' | 'info' | 'notice' | 'warning' | 'error' | 'critical' | 'alert' | 'emergency'
  | 'warn' | 'fatal';

/** A string body is a message; anything else is sent as a JSON body. An Error gives its stack. */
export type Body = string | Error | object | number | boolean | null;

/** Fields: strings kept, other values as JSON text; `logger` sets the record's logger. */
export type Fields = Record<string, unknown>;

export interface Options {
  /** Native TCP (Node): default 127.0.0.1:4020. */
  host?: string;
  port?: number;
  /** gRPC-Web instead of TCP, e.g. `http://localhost:4021` (required in the browser). */
  url?: string;
  app?: string;
  instance?: string;
  /** `logmill token issue --app APP`; a refused token fails the client with code `unauthorized`. */
  token?: string;
  /** Defaults for every record. */
  logger?: string;
  service?: string;
  /** Records per frame (500) and bytes per frame (256 KiB, and at most half the server's max frame). */
  batchSize?: number;
  batchBytes?: number;
  /** Records sent and not yet acked before sending pauses (5000). */
  maxInflight?: number;
  /** Records held in memory, queued and in flight (10000); past it: the spool, or dropped and counted. */
  maxQueue?: number;
  /** Reconnect delay: first (100 ms), doubled per failure up to the max (10 s), jitter [d/2, d]. */
  backoffMs?: number;
  backoffMaxMs?: number;
  connectTimeoutMs?: number;
  /** Node only: a directory for the spool files (see README). */
  spoolDir?: string;
  /** The spool's bound (64 MiB); the oldest segment is dropped past it. */
  spoolMaxBytes?: number;
  /** Segment size (maxBytes / 8, between 4 KiB and 1 MiB). */
  spoolSegmentBytes?: number;
  /** gRPC-Web: the fetch to use (default globalThis.fetch). */
  fetch?: typeof fetch;
}

export interface Stats {
  logged: number;
  sent: number;
  acked: number;
  /** Records sent again after a lost connection (the duplicate window's upper bound). */
  resent: number;
  /** Dropped because the queue was full and there is no spool. */
  dropped: number;
  spooled: number;
  /** Dropped from the spool at its bound, oldest first. */
  spoolDropped: number;
  reconnects: number;
  connectFailures: number;
}

export class LogmillError extends Error {
  code: 'unauthorized' | 'protocol' | 'closed' | 'timeout' | 'dropped' | 'spool-full';
}

export const LEVELS: Level[];

export class Client {
  readonly stats: Stats;
  /** connecting | ready | backoff | failed | closed */
  readonly state: string;
  /** The error that stopped the client (a refused token), or null. */
  readonly failure: LogmillError | null;
  log(level: Level, body: Body, fields?: Fields): void;
  trace(body: Body, fields?: Fields): void;
  debug(body: Body, fields?: Fields): void;
  info(body: Body, fields?: Fields): void;
  notice(body: Body, fields?: Fields): void;
  warning(body: Body, fields?: Fields): void;
  warn(body: Body, fields?: Fields): void;
  error(body: Body, fields?: Fields): void;
  critical(body: Body, fields?: Fields): void;
  fatal(body: Body, fields?: Fields): void;
  alert(body: Body, fields?: Fields): void;
  emergency(body: Body, fields?: Fields): void;
  /** Resolves once everything logged so far is acked; rejects on timeout or a refused token. */
  flush(timeoutMs?: number): Promise<void>;
  /** Flushes and closes; what is still unacked goes to the spool, or the promise rejects. */
  close(timeoutMs?: number): Promise<void>;
  on(event: 'ready', fn: (welcome: { server: string; version: string; maxFrame: number }) => void): this;
  on(event: 'disconnect', fn: (err: Error, retryInMs: number) => void): this;
  on(event: 'error' | 'warning', fn: (err: LogmillError) => void): this;
}

export function connect(options?: Options): Client;

/** Node only: a writable stream of pino/bunyan JSON lines into the client. */
export function stream(client: Client): import('node:stream').Writable;
