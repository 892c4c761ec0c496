"""Records per second and caller overhead: the stdlib SocketHandler against LogmillHandler (and
the Client's own send), one thread logging into the same running server.

    target/release/logmill serve --port 4020 --tcp-only --dir /tmp/logmill-bench &
    PYTHONPATH=clients/python python3 clients/python/bench.py --addr 127.0.0.1:4020

Records/s is counted from the first call to the moment the server has them all: for
SocketHandler, when the server's ``health`` line says ``records_written`` went up by N (it has no
acks); for LogmillHandler and Client, when ``flush`` returns (every record acked, so written).
Caller overhead is the time the logging calls themselves took, per record; the "logging alone"
row is the same calls into a handler that does nothing, the cost of Python's logging itself.
CPU is this process's (every thread, user and system) from the first call to the end, per
record: what the logging costs the program, whatever else the machine is doing.
"""

import argparse
import os
import logging
import logging.handlers
import re
import socket
import sys
import time

import logmill


def records_written(addr):
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(b"health\n")
        answer = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    match = re.search(rb"records_written=(\d+)", answer)
    if not match:
        sys.exit(f"no records_written in the health line: {answer!r}")
    return int(match.group(1))


def wait_written(addr, target, timeout=600):
    deadline = time.monotonic() + timeout
    while records_written(addr) < target:
        if time.monotonic() > deadline:
            sys.exit("the server did not store the records in time")
        time.sleep(0.005)


def log_loop(handler, n, payload):
    log = logging.getLogger(f"bench.{id(handler)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    start = time.perf_counter()
    for i in range(n):
        log.info("record %d %s", i, payload)
    caller = time.perf_counter() - start
    log.removeHandler(handler)
    return start, caller


class Nothing(logging.Handler):
    def emit(self, record):
        record.getMessage()


def cpu():
    t = os.times()
    return t.user + t.system


def check(client, n):
    stats = client.stats()
    if stats.get("acked") != n or stats.get("dropped"):
        sys.exit(f"not every record was acked: {stats}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:4020")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100, help="bytes of payload per message")
    args = parser.parse_args()
    host, _, port = args.addr.rpartition(":")
    addr = (host, int(port))
    n = args.records
    payload = "x" * args.size
    rows = []

    used = cpu()
    _, caller = log_loop(Nothing(), n, payload)
    rows.append(("logging alone (a handler that does nothing)", None, caller / n,
                 (cpu() - used) / n))

    base = records_written(addr)
    handler = logging.handlers.SocketHandler(host, int(port))
    used = cpu()
    start, caller = log_loop(handler, n, payload)
    handler.close()  # its socket is flushed: only the wait for the server is left
    used = cpu() - used
    wait_written(addr, base + n)
    total = time.perf_counter() - start
    rows.append(("logging.handlers.SocketHandler", n / total, caller / n, used / n))
    socket_rate = n / total

    # Blocking when the queue is full, so that every record is counted, none dropped.
    handler = logmill.LogmillHandler(args.addr, app="bench", when_full="block")
    used = cpu()
    start, caller = log_loop(handler, n, payload)
    if not handler.client.flush(600):
        sys.exit("LogmillHandler: not all acked")
    total = time.perf_counter() - start
    used = cpu() - used
    handler.close()
    check(handler.client, n)
    rows.append(("logmill.LogmillHandler", n / total, caller / n, used / n))
    handler_rate = n / total

    client = logmill.Client(args.addr, app="bench", when_full="block")
    used = cpu()
    start = time.perf_counter()
    for i in range(n):
        client.send(payload, logger="bench")
    caller = time.perf_counter() - start
    if not client.flush(600):
        sys.exit("Client: not all acked")
    total = time.perf_counter() - start
    used = cpu() - used
    client.close()
    check(client, n)
    rows.append(("logmill.Client.send", n / total, caller / n, used / n))

    print(f"{n} records of about {args.size + 14} bytes, Python {sys.version.split()[0]}")
    print(f"{'':46} {'records/s':>10} {'caller us/record':>17} {'CPU us/record':>14}")
    for name, rate, per, used in rows:
        rate_text = f"{rate:10.0f}" if rate else f"{'-':>10}"
        print(f"{name:46} {rate_text} {per * 1e6:17.2f} {used * 1e6:14.2f}")
    print(f"LogmillHandler / SocketHandler: {handler_rate / socket_rate:.1f}x")


if __name__ == "__main__":
    main()
