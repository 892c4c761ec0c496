"""The Python side of tests/client_python.rs: each mode runs one scenario against the real
server the Rust test started, and prints one JSON line (its result) on stdout last.

    python3 scenarios.py MODE ADDR [ARGS...]     (with clients/python on PYTHONPATH)
"""

import json
import logging
import os
import sys

import logmill
from logmill import wire


def out(**result):
    print(json.dumps(result), flush=True)


def wire_check(cases_path):
    """Encodes every case of the Rust test's file and compares with the Rust encoder's bytes;
    decodes its server frames."""
    with open(cases_path) as f:
        cases = json.load(f)
    mismatches = []
    for case in cases["records"]:
        records = [wire.record(r["body"], r["level"], json=r["json"],
                               timestamp_ns=r["timestamp_ns"], logger=r["logger"],
                               host=r["host"], service=r["service"], module=r["module"],
                               file=r["file"], line=r["line"], function=r["function"],
                               process_id=r["process_id"], process_name=r["process_name"],
                               thread_id=r["thread_id"], thread_name=r["thread_name"],
                               stack_trace=r["stack_trace"],
                               fields=[tuple(kv) for kv in r["fields"]] or None)
                   for r in case["records"]]
        got = wire.encode_records(records).hex()
        if got != case["hex"]:
            mismatches.append({"name": case["name"], "python": got, "rust": case["hex"]})
        if wire.frame_records(bytes.fromhex(got)) != len(records):
            mismatches.append({"name": case["name"], "count": len(records)})
    for h in cases["hellos"]:
        got = wire.encode_hello(h["app"], h["instance"], h["token"], h["want_acks"]).hex()
        if got != h["hex"]:
            mismatches.append({"name": "hello", "python": got, "rust": h["hex"]})
    decoded = []
    for hexed in cases["server_frames"]:
        payload, used = wire.take_frame(bytearray.fromhex(hexed))
        decoded.append(repr(wire.decode_server_frame(payload)))
    out(mismatches=mismatches, server_frames=decoded)


def records(addr, token):
    """Levels, string and JSON bodies, fields, the app and instance, through the client and
    through the logging handler (extra= fields, an exception's traceback)."""
    client = logmill.Client(addr, app="shop", instance="py-1", token=token)
    for level in ("trace", "debug", "info", "notice", "warning", "error", "critical", "alert",
                  "emergency"):
        client.send(f"level {level}", level, logger="levels")
    client.send({"order": "A-17", "items": [1, 2], "paid": True}, "info", logger="json")
    client.send("with fields", "info", logger="fields",
                fields={"request_id": "r-42", "n": 3, "ok": True, "tag": None})
    client.send("héllo wörld ✓", "info", logger="utf8")
    handler = logmill.LogmillHandler(client=client)
    log = logging.getLogger("app.handler")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    log.debug("debug %s", "formatted")
    log.warning("disk %s almost full", "/var", extra={"request_id": "r-43", "attempt": 2})
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup failed")
    log.info("after the exception")
    ok = client.close(30)
    out(ok=ok, stats=client.stats())


def restart(addr, n):
    """Sends the first half, says ``half`` and waits for ``go`` on stdin (the test stops the
    server meanwhile), sends the rest and closes, waiting for every ack."""
    client = logmill.Client(addr, app="restart", backoff_initial=0.02, backoff_max=0.2)
    for i in range(n // 2):
        client.send(f"r{i}")
    print("half", flush=True)
    sys.stdin.readline()
    for i in range(n // 2, n):
        client.send(f"r{i}")
    ok = client.close(60)
    out(ok=ok, stats=client.stats())


def spool_write(addr, spool, n, max_bytes):
    """The server is down: ``n`` records go to the spool; close gives up after a second."""
    client = logmill.Client(addr, app="spool", spool_dir=spool, spool_max_bytes=max_bytes,
                            queue_max=1000, backoff_initial=0.02, backoff_max=0.2)
    for i in range(n):
        client.send(f"s{i} " + "x" * 40)
    ok = client.close(1)
    files = sorted(os.listdir(spool))
    size = sum(os.path.getsize(os.path.join(spool, f)) for f in files)
    out(ok=ok, stats=client.stats(), files=len(files), bytes=size)


def spool_replay(addr, spool):
    """A new process on the same spool: replays it once the server is there."""
    client = logmill.Client(addr, app="spool", spool_dir=spool, backoff_initial=0.02,
                            backoff_max=0.2)
    ok = client.close(60)
    out(ok=ok, stats=client.stats(), left=os.listdir(spool))


def exit_without_close(addr, n):
    """Logs through the handler and returns from main without close or flush: the atexit hook
    must wait for the acks."""
    logging.basicConfig(handlers=[logmill.LogmillHandler(addr, app="exit")], level=logging.INFO)
    for i in range(n):
        logging.getLogger("exit").info("e%d", i)
    out(ok=True)


def refused(addr, token):
    """A refused token: flush raises Refused, and so does the next send."""
    client = logmill.Client(addr, app="shop", token=token)
    result = {}
    try:
        # The refusal may come before this send (it raises then) or after it (flush raises).
        client.send("never stored")
        client.flush(30)
        result["flush"] = "returned"
    except logmill.Refused as e:
        result.update(flush="raised", code=e.code, error=str(e))
    try:
        client.send("after")
        result["send"] = "returned"
    except logmill.Refused:
        result["send"] = "raised"
    client.close(1)
    out(**result)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "wire":
        wire_check(*args)
    elif mode == "records":
        records(*args)
    elif mode == "restart":
        restart(args[0], int(args[1]))
    elif mode == "spool_write":
        spool_write(args[0], args[1], int(args[2]), int(args[3]))
    elif mode == "spool_replay":
        spool_replay(*args)
    elif mode == "exit":
        exit_without_close(args[0], int(args[1]))
    elif mode == "refused":
        refused(*args)
    else:
        sys.exit(f"unknown mode {mode}")
