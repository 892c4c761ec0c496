"""The OpenTelemetry Python SDK against logmill's OTLP endpoints, as an application uses it:
Python's `logging` through the SDK's LoggingHandler, a LoggerProvider with a Resource and a
BatchLogRecordProcessor, records emitted inside a span of a TracerProvider, and one of the two
OTLP exporters (gRPC, or HTTP with protobuf).

    otlp_logging.py grpc|http ADDR [--token TOKEN] [--gzip]

ADDR is logmill's gRPC port (HOST:PORT). The script logs the records below on the logger
`shop.checkout`, exports them in one batch (force_flush), shuts the SDK down, and prints one JSON
object on stdout for the test to compare with what was stored:

    {"exports": [{"records": 7, "result": "SUCCESS"}],
     "trace_id": "<32 hex>", "span_id": "<16 hex>", "trace_flags": N,
     "records": [{"message": ..., "time": "<as logmill writes it>", "line": N}, ...],
     "sdk_log": [what the SDK logged at INFO and above, such as a failed export]}

It exits 0 whatever the exports' results; the test judges them.
"""

import argparse
import datetime
import json
import logging
import sys
import warnings

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

# The records, in the order they are logged: (level, message template, args, extra, in the span).
RECORDS = [
    (logging.DEBUG, "cart %s opened", ("c-1",), {"cart": "c-1"}, True),
    (
        logging.INFO,
        "order %s paid",
        ("A-17",),
        {"order_id": "A-17", "items": 3, "total": 12.5, "paid": True},
        True,
    ),
    (logging.WARNING, "stock low for %s", ("sku-9",), {"sku": "sku-9"}, True),
    (logging.ERROR, "card declined", (), {}, True),
    (logging.CRITICAL, "payment service down", (), {}, True),
    (logging.INFO, "after the span", (), {}, False),
]


class Recorded(LogRecordExporter):
    """The real exporter, with the result of each export kept for the report."""

    def __init__(self, inner):
        self.inner = inner
        self.exports = []

    def export(self, batch):
        result = self.inner.export(batch)
        self.exports.append({"records": len(batch), "result": result.name})
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30_000):
        return self.inner.force_flush(timeout_millis)


class Said(logging.Handler):
    """What the SDK itself logs (a failed export with its status, a retry, a partial success),
    for the report."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


class Seen(logging.Filter):
    """Notes what the handler is given: the time the SDK sends (`int(created * 1e9)`, written by
    logmill to the microsecond) and the line number, for each record."""

    def __init__(self):
        super().__init__()
        self.records = []

    def filter(self, record):
        ns = int(record.created * 1e9)
        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        time = epoch + datetime.timedelta(microseconds=ns // 1000)
        self.records.append(
            {
                "message": record.getMessage(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "line": record.lineno,
                "function": record.funcName,
            }
        )
        return True


def exporter(kind, addr, token, gzip, ca=None):
    """ca: a CA file to trust; the exporter then speaks TLS (https)."""
    headers = {"authorization": f"Bearer {token}"} if token else None
    scheme = "https" if ca else "http"
    # Short: a server that does not answer fails the test in seconds, not in minutes of retries.
    timeout = 10
    if kind == "grpc":
        from grpc import Compression
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        import grpc

        credentials = None
        if ca:
            with open(ca, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        return OTLPLogExporter(
            endpoint=f"{scheme}://{addr}",
            insecure=not ca,
            credentials=credentials,
            headers=headers,
            timeout=timeout,
            compression=Compression.Gzip if gzip else Compression.NoCompression,
        )
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter(
        endpoint=f"{scheme}://{addr}/v1/logs",
        certificate_file=ca if ca else None,
        headers=headers,
        timeout=timeout,
        compression=Compression.Gzip if gzip else Compression.NoCompression,
    )


def log_records(logger):
    """Logs RECORDS; returns the span's context."""
    tracer = trace.get_tracer("shop.checkout")
    with tracer.start_as_current_span("checkout") as span:
        for level, template, args, extra, in_span in RECORDS:
            if in_span:
                logger.log(level, template, *args, extra=extra)
        context = span.get_span_context()
    for level, template, args, extra, in_span in RECORDS:
        if not in_span:
            logger.log(level, template, *args, extra=extra)
    return context


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["grpc", "http"])
    parser.add_argument("addr")
    parser.add_argument("--token")
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--ca", help="trust this CA file and export over TLS")
    args = parser.parse_args()

    # The SDK's own messages (a failed export, a retry, a partial success) go to the report and
    # to stderr; the application's logger does not propagate there.
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    said = Said()
    logging.getLogger("opentelemetry").addHandler(said)
    trace.set_tracer_provider(TracerProvider())
    resource = Resource.create(
        {"service.name": "checkout", "service.version": "1.2.3", "host.name": "web-7"}
    )
    provider = LoggerProvider(resource=resource)
    recorded = Recorded(exporter(args.kind, args.addr, args.token, args.gzip, args.ca))
    # Exported by force_flush below, all in one batch: a long delay so no timer splits it.
    provider.add_log_record_processor(
        BatchLogRecordProcessor(recorded, schedule_delay_millis=60_000)
    )
    with warnings.catch_warnings():
        # 1.45 deprecates this handler for opentelemetry-instrumentation-logging's; it is still
        # the SDK's logging bridge, and the one the issue names.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(level=logging.NOTSET, logger_provider=provider)
    seen = Seen()
    handler.addFilter(seen)
    logger = logging.getLogger("shop.checkout")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)

    context = log_records(logger)
    provider.force_flush(timeout_millis=30_000)
    provider.shutdown()
    print(
        json.dumps(
            {
                "exports": recorded.exports,
                "trace_id": format(context.trace_id, "032x"),
                "span_id": format(context.span_id, "016x"),
                "trace_flags": int(context.trace_flags),
                "records": seen.records,
                "sdk_log": said.lines,
            }
        )
    )


if __name__ == "__main__":
    main()
