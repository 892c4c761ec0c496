"""Real, unmodified Python logging handlers against a logmill server (stdlib only).

    python3 python_logging.py tcp PORT     SocketHandler: threads, loggers, traceback, extra=,
                                           unicode, embedded newlines
    python3 python_logging.py udp PORT     DatagramHandler: a few records
    python3 python_logging.py restart PORT SocketHandler across a server restart (reads "go"
                                           on stdin once the server is back)

Prints one JSON object per record it logged, {"logger", "message", "thread", "phase"}, exactly as
the handler formatted it (record.getMessage()), so the test can compare with the stored lines.
"""

import json
import logging
import logging.handlers
import sys
import threading


class Expect(logging.Handler):
    """Records what the real handler was given, formatted the way SocketHandler formats it."""

    def __init__(self, phase):
        super().__init__()
        self.phase = phase

    def emit(self, record):
        print(json.dumps({
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
            "phase": self.phase[0],
        }), flush=True)


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    phase = ["before"]
    if mode == "udp":
        handler = logging.handlers.DatagramHandler("127.0.0.1", port)
    else:
        handler = logging.handlers.SocketHandler("127.0.0.1", port)
    root = logging.getLogger("app")
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    root.addHandler(Expect(phase))
    root.propagate = False

    if mode == "udp":
        for i in range(5):
            logging.getLogger("app.udp").warning("datagram %d", i, extra={"n": i})
    elif mode == "tcp":
        def worker(t):
            log = logging.getLogger(f"app.worker{t}")
            for i in range(200):
                log.info("thread %d record %d", t, i)
        threads = [threading.Thread(target=worker, args=(t,), name=f"worker-{t}") for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        log = logging.getLogger("app.misc")
        log.debug("unicode: héllo wörld ✓ 日本語 🚀")
        log.warning("two\nlines\r\nand a tab\there")
        log.error("with extra", extra={"request_id": "r-42", "user": "ada lovelace", "attempt": 3})
        try:
            {}["missing"]
        except KeyError:
            log.exception("lookup failed")
        log.critical("last")
    else:  # restart
        log = logging.getLogger("app.restart")
        for i in range(10):
            log.info("before restart %d", i)
        print("sent", flush=True)
        assert sys.stdin.readline().strip() == "go"
        phase[0] = "after"
        for i in range(20):
            log.info("after restart %d", i)
    handler.close()


if __name__ == "__main__":
    main()
