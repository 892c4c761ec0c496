"""One thread logging N records through one handler, and nothing else: the program to count
instructions of under valgrind, where time means little (the machine is shared and noisy) but
instruction counts repeat. The cost per record of a handler is the count at N minus the count
at 0, over N; ``nothing`` is the floor every handler pays (Python's ``logging`` itself).

    PY=$(python3 -c 'import sys; print(sys.executable)')   # not a pyenv shim
    target/release/logmill serve --port 4020 --tcp-only --dir /tmp/logmill-bench &
    for kind in nothing socket logmill; do for n in 0 20000; do
      PYTHONPATH=clients/python valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        $PY clients/python/bench_ir.py $kind $n 127.0.0.1:4020 2>&1 | grep Collected
    done; done

``encode`` needs no server: the sender thread's share alone, N ``LogRecord``s mapped and encoded
in batches of 500 as the sender does (``client._from_logging``, ``wire.encode_records``); its
cost per record is its count minus that of ``records`` (the same N records made, not encoded),
over N.

Instructions are user space only: SocketHandler's one ``send`` system call per record (this
handler makes one per batch) is not in its count.
"""

import logging
import logging.handlers
import sys

import logmill
from logmill import client, wire


class Nothing(logging.Handler):
    def emit(self, record):
        record.getMessage()


def records(n, encode):
    made = [logging.LogRecord("bench", logging.INFO, "/srv/app/main.py", 10 + i % 7,
                                 "record %d %s", (i, "x" * 100), None, func="handle")
            for i in range(n)]
    entries = [(r, r.getMessage(), "") for r in made]
    if encode:
        for k in range(0, n, 500):
            wire.encode_records([client._from_logging(e) for e in entries[k:k + 500]])


def main():
    kind, n = sys.argv[1], int(sys.argv[2])
    if kind in ("records", "encode"):
        records(n, kind == "encode")
        return
    addr = sys.argv[3]
    host, _, port = addr.rpartition(":")
    if kind == "nothing":
        handler = Nothing()
    elif kind == "socket":
        handler = logging.handlers.SocketHandler(host, int(port))
    elif kind == "logmill":
        handler = logmill.LogmillHandler(addr, app="bench", when_full="block")
    else:
        sys.exit(f"unknown kind {kind!r}: nothing, socket or logmill")
    log = logging.getLogger("bench")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    payload = "x" * 100
    for i in range(n):
        log.info("record %d %s", i, payload)
    if kind == "logmill" and not handler.client.flush(600):
        sys.exit("not every record was acked")
    handler.close()


if __name__ == "__main__":
    main()
