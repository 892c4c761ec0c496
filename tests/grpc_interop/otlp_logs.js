// The OpenTelemetry JS SDK in Node against logmill's OTLP/HTTP endpoint: @opentelemetry/sdk-logs
// with the OTLP HTTP exporter (@opentelemetry/exporter-logs-otlp-http), which sends JSON.
//
//   node otlp_logs.js ADDR [--gzip] [--app APP]
//
// ADDR is logmill's gRPC port (HOST:PORT), which answers HTTP/1.1 too. The script emits the
// records below on the logger `shop.web` (version 2.0.0), with the resource `service.name`
// web-shop, through a BatchLogRecordProcessor flushed once at the end, then shuts the SDK down
// and prints one JSON line: {"exports": [{"records": 4, "code": 0, "error": null}], ...}
// (code 0 is ExportResultCode.SUCCESS). It exits 0 whatever the result; the test judges it.
//
// CommonJS, not an ES module: the test points NODE_PATH at the packages, which `import` ignores.

'use strict';

const { SeverityNumber } = require('@opentelemetry/api-logs');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { LoggerProvider, BatchLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { OTLPLogExporter } = require('@opentelemetry/exporter-logs-otlp-http');

// The records, in order: the test expects exactly these.
const RECORDS = [
  {
    severityNumber: SeverityNumber.INFO,
    severityText: 'INFO',
    body: 'page /cart served',
    attributes: { 'http.route': '/cart', status: 200, 'duration.ms': 12.5, cached: false },
  },
  { severityNumber: SeverityNumber.WARN, severityText: 'WARN', body: 'slow upstream' },
  {
    severityNumber: SeverityNumber.ERROR,
    severityText: 'ERROR',
    body: 'checkout failed',
    attributes: { 'error.type': 'Timeout', tags: ['a', 'b'] },
  },
  // A structured body (an OTLP key/value list): logmill stores it as the JSON body.
  { severityNumber: SeverityNumber.DEBUG, body: { event: 'cart.updated', items: 3 } },
];

/** The real exporter, with the result of each export kept for the report. */
class Recorded {
  constructor(inner) {
    this.inner = inner;
    this.exports = [];
  }

  export(logs, done) {
    this.inner.export(logs, (result) => {
      this.exports.push({
        records: logs.length,
        code: result.code,
        error: result.error ? String(result.error) : null,
      });
      done(result);
    });
  }

  forceFlush() {
    return this.inner.forceFlush();
  }

  shutdown() {
    return this.inner.shutdown();
  }
}

async function main() {
  const args = process.argv.slice(2);
  const addr = args[0];
  const gzip = args.includes('--gzip');
  const appAt = args.indexOf('--app');
  const headers = appAt >= 0 ? { 'logmill-app': args[appAt + 1] } : {};
  const recorded = new Recorded(
    new OTLPLogExporter({
      url: `http://${addr}/v1/logs`,
      headers,
      compression: gzip ? 'gzip' : 'none',
      // A server that does not answer fails the test in seconds.
      timeoutMillis: 10000,
    }),
  );
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ 'service.name': 'web-shop', 'deployment.environment': 'test' }),
    // Exported by forceFlush below, all in one batch: a long delay so no timer splits it.
    processors: [new BatchLogRecordProcessor({ exporter: recorded, scheduledDelayMillis: 60000 })],
  });
  const logger = provider.getLogger('shop.web', '2.0.0');
  for (const record of RECORDS) {
    logger.emit(record);
  }
  await provider.forceFlush();
  await provider.shutdown();
  process.stdout.write(`${JSON.stringify({ exports: recorded.exports })}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
