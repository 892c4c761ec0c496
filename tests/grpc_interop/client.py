#!/usr/bin/env python3
"""logmill gRPC interop client: the real, unmodified `grpcio` library with stubs generated from
proto/ by `grpcio-tools`. tests/common/tools.rs sets up the virtualenv and the stubs (on
PYTHONPATH); tests/clients.rs runs this against the real server, tests/grpc_driver.rs against the
standalone connection driver (--standalone).

Each scenario checks what the server answered; with --dir it also checks what the server stored
(the server must run with --format json). Exits non-zero on the first failure.
"""

import argparse
import concurrent.futures
import glob
import json
import os
import sys
import threading
import time
import uuid

import grpc

import health_pb2
import health_pb2_grpc
import logmill_pb2
import logmill_pb2_grpc

RUN = uuid.uuid4().hex[:8]
SENT = {}  # logger -> number of records sent in calls that succeeded
SENT_LOCK = threading.Lock()


def record(tag, i, pad=0):
    return logmill_pb2.LogRecord(
        message=f"{tag} {i} {'x' * pad}".rstrip(),
        logger=tag,
        level=logmill_pb2.LEVEL_WARNING,
        host="interop",
        line=i,
        fields={"run": RUN, "i": str(i)},
    )


def request(tag, start, n, pad=0):
    return logmill_pb2.PushRequest(records=[record(tag, i, pad) for i in range(start, start + n)])


def sent(tag, n):
    with SENT_LOCK:
        SENT[tag] = SENT.get(tag, 0) + n


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_code(fn, code, what, contains=None):
    try:
        fn()
    except grpc.RpcError as e:
        expect(e.code() == code, f"{what}: expected {code}, got {e.code()} {e.details()!r}")
        if contains:
            expect(contains in (e.details() or ""), f"{what}: {e.details()!r} lacks {contains!r}")
        return e
    raise AssertionError(f"{what}: expected {code}, the call succeeded")


def tag(name):
    return f"py-{RUN}-{name}"


# ---------------------------------------------------------------------------------------------


def health(channel, args):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ["", "logmill.v1.LogService"]:
        r = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        expect(r.status == health_pb2.HealthCheckResponse.SERVING, f"Check {service!r}: {r}")
    expect_code(
        lambda: stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10),
        grpc.StatusCode.NOT_FOUND,
        "Check of an unknown service",
    )
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    first = next(watch)
    expect(first.status == health_pb2.HealthCheckResponse.SERVING, f"Watch: {first}")
    watch.cancel()
    watch = stub.Watch(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    first = next(watch)
    expect(first.status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN, f"Watch nope: {first}")
    watch.cancel()


def unary(channel, args):
    stub = logmill_pb2_grpc.LogServiceStub(channel)
    t = tag("unary")
    r = stub.Push(
        request(t, 0, 1),
        timeout=30,
        metadata=[("logmill-app", "interop"), ("logmill-instance", RUN)],
    )
    expect(r.accepted == 1 and r.first_seq == r.last_seq and r.first_seq > 0, f"Push: {r}")
    sent(t, 1)
    t = tag("unary10k")
    r = stub.Push(request(t, 0, 10_000), timeout=60)
    expect(r.accepted == 10_000, f"Push 10k: {r}")
    expect(r.last_seq - r.first_seq + 1 >= 10_000, f"Push 10k seqs: {r}")
    sent(t, 10_000)
    r = stub.Push(logmill_pb2.PushRequest(), timeout=10)
    expect((r.accepted, r.first_seq, r.last_seq) == (0, 0, 0), f"empty Push: {r}")
    # LogMessage: the seed's `client.logMessage(logEntry)`, one record per call.
    t = tag("logmessage")
    for i in range(3):
        r = stub.LogMessage(
            record(t, i),
            timeout=30,
            metadata=[("logmill-app", "interop"), ("logmill-instance", RUN)],
        )
        expect(r.accepted == 1 and r.first_seq == r.last_seq and r.first_seq > 0, f"LogMessage: {r}")
        sent(t, 1)


def streaming(channel, args):
    stub = logmill_pb2_grpc.LogServiceStub(channel)
    t = tag("stream")
    r = stub.PushStream((request(t, m * 100, 100) for m in range(100)), timeout=60)
    expect(r.accepted == 10_000, f"PushStream: {r}")
    sent(t, 10_000)
    # A big stream: flow control must keep it moving.
    t = tag("bigstream")
    messages = 80
    started = time.monotonic()
    r = stub.PushStream((request(t, m * 1000, 1000, 200) for m in range(messages)), timeout=300)
    expect(r.accepted == messages * 1000, f"big PushStream: {r}")
    sent(t, messages * 1000)
    print(f"  big stream: {messages * 1000} records (~20 MB) in {time.monotonic() - started:.1f}s")


def concurrency(target, args):
    channels = [grpc.insecure_channel(target) for _ in range(4)]

    def work(c, k):
        stub = logmill_pb2_grpc.LogServiceStub(channels[c])
        t = tag(f"conc-{c}-{k}")
        if k % 2 == 0:
            r = stub.Push(request(t, 0, 500), timeout=60)
            n = 500
        else:
            r = stub.PushStream((request(t, m * 50, 50) for m in range(10)), timeout=60)
            n = 500
        expect(r.accepted == n, f"{t}: {r}")
        sent(t, n)
        return (r.first_seq, r.last_seq)

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(work, c, k) for c in range(4) for k in range(6)]
        ranges = [f.result() for f in futures]
    expect(all(a <= b for a, b in ranges), f"ranges {ranges}")
    for ch in channels:
        ch.close()


def errors(channel, args):
    stub = logmill_pb2_grpc.LogServiceStub(channel)
    raw = lambda method: channel.unary_unary(  # noqa: E731
        method, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    expect_code(
        lambda: raw("/logmill.v1.LogService/Nope")(b"", timeout=10),
        grpc.StatusCode.UNIMPLEMENTED,
        "unknown method",
        "unknown method",
    )
    expect_code(
        lambda: raw("/no.Such/Service")(b"", timeout=10),
        grpc.StatusCode.UNIMPLEMENTED,
        "unknown service",
    )
    expect_code(
        lambda: raw("/logmill.v1.LogService/Push")(b"\x0a\x05\x08", timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
        "undecodable message",
        "not a valid PushRequest",
    )
    expect_code(
        lambda: raw("/logmill.v1.LogService/LogMessage")(b"\x1a\x05ab", timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
        "undecodable LogRecord",
        "not a valid LogRecord",
    )
    big = logmill_pb2.PushRequest(records=[record(tag("big"), 0, 5 * 1024 * 1024)])
    expect_code(
        lambda: stub.Push(big, timeout=30),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "message over the limit",
    )
    t = tag("gzip")
    r = stub.Push(request(t, 0, 100, 50), timeout=10, compression=grpc.Compression.Gzip)
    expect(r.accepted == 100, f"gzip: {r}")
    sent(t, 100)
    expect_code(
        lambda: stub.Push(request(tag("deflate"), 0, 100, 50), timeout=10,
                          compression=grpc.Compression.Deflate),
        grpc.StatusCode.UNIMPLEMENTED,
        "unsupported compression",
    )
    def slow_stream():
        yield request(tag("late"), 0, 1)
        time.sleep(1.5)  # past the deadline, with the call still open
        yield request(tag("late"), 1, 1)

    expect_code(
        lambda: stub.PushStream(slow_stream(), timeout=0.3),
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "deadline",
    )
    e = None
    try:
        stub.Push(request(tag("hdr"), 0, 1), timeout=10, metadata=[("x-huge", "v" * 20_000)])
    except grpc.RpcError as err:
        e = err
    expect(e is not None, "metadata over the header list limit was accepted")
    print(f"  oversized metadata: {e.code()}")
    # The channel still works after all of that.
    t = tag("after-errors")
    r = stub.Push(request(t, 0, 1), timeout=10)
    expect(r.accepted == 1, f"after errors: {r}")
    sent(t, 1)


def check_files(directory):
    """Every record sent in a successful call is stored once, each call's records in order."""
    seen = {}
    # The anonymous files and every app's bucket (<dir>/<app>/_main.log*).
    paths = glob.glob(os.path.join(directory, "_main.log*"))
    paths += glob.glob(os.path.join(directory, "*", "_main.log*"))
    for path in sorted(paths):
        with open(path, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                logger = rec.get("logger", "")
                if not logger.startswith(f"py-{RUN}-"):
                    continue
                seen.setdefault(logger, []).append((rec["seq"], int(rec["fields"]["i"])))
    for logger, n in SENT.items():
        got = seen.get(logger, [])
        got.sort()
        expect(len(got) == n, f"{logger}: {len(got)} stored, {n} sent")
        indices = [i for _, i in got]
        expect(indices == list(range(n)), f"{logger}: stored out of order")
    print(f"  files: {sum(SENT.values())} records stored, in order")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--dir", help="the server's --dir, to check the stored records")
    parser.add_argument("--standalone", action="store_true", help="the test driver, not the server")
    args = parser.parse_args()
    channel = grpc.insecure_channel(args.target)
    grpc.channel_ready_future(channel).result(timeout=30)
    scenarios = [
        ("health", lambda: health(channel, args)),
        ("unary", lambda: unary(channel, args)),
        ("streaming", lambda: streaming(channel, args)),
        ("concurrency", lambda: concurrency(args.target, args)),
        ("errors", lambda: errors(channel, args)),
    ]
    for name, run in scenarios:
        started = time.monotonic()
        run()
        print(f"python grpcio: {name} ok ({time.monotonic() - started:.1f}s)")
    if args.dir:
        check_files(args.dir)
    channel.close()
    print(f"python grpcio {grpc.__version__}: all {len(scenarios)} scenarios ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"python grpcio: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
