#!/usr/bin/env python3
"""A logship transmitter stand-in, written from the protocol in logship's document (issue 15),
standard library only. It ships one file once: it sends the file's name and a newline, reads the
receiver's offset line, then sends the file from that offset and closes.

    ship_tx.py --host H --port P FILE [--name NAME] [--limit N] [--stall] [--chunk N]

--name       the name to send (default: FILE's base name)
--limit N    stop after N bytes of the file in all (a partial send: the next run resumes)
--stall      after sending, keep the connection open without sending (a peer stopped
             mid-stream); exits when the receiver closes it
--raw-name   send this text as the whole name line, unchecked (for hostile names; \\n is added
             only if the text has none)

Prints one JSON line: {"offset": N, "sent": N} or {"refused": "why"}. Exit code 0, or 2 when
the receiver refused.
"""

import argparse
import json
import os
import socket
import sys

MAX_ANSWER_LINE = 1024


def read_line(sock):
    """The receiver's answer line, without its newline (bounded like logmill's parser)."""
    line = b""
    while not line.endswith(b"\n"):
        part = sock.recv(1)
        if not part:
            raise ConnectionError("the receiver closed before answering: %r" % line)
        line += part
        if len(line) > MAX_ANSWER_LINE:
            raise ValueError("answer line too long")
    return line[:-1].decode("utf-8", "replace")


def ship(host, port, path, name=None, limit=None, stall=False, raw_name=None, chunk=65536):
    sock = socket.create_connection((host, port))
    try:
        if raw_name is not None:
            line = raw_name.encode("utf-8", "surrogateescape")
            if b"\n" not in line:
                line += b"\n"
        else:
            line = (name or os.path.basename(path)).encode() + b"\n"
        sock.sendall(line)
        answer = read_line(sock)
        if answer.startswith("error: "):
            return {"refused": answer[len("error: "):]}
        if not answer.isdigit() or len(answer) > 20:
            raise ValueError("not an offset: %r" % answer)
        offset = int(answer)
        sent = 0
        with open(path, "rb") as f:
            f.seek(offset)
            while limit is None or offset + sent < limit:
                want = chunk if limit is None else min(chunk, limit - offset - sent)
                data = f.read(want)
                if not data:
                    break
                sock.sendall(data)
                sent += len(data)
        if stall:
            # Hold the connection, sending nothing, until the receiver gives up on it.
            try:
                while sock.recv(4096):
                    pass
            except ConnectionError:
                pass
        return {"offset": offset, "sent": sent}
    finally:
        sock.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7447)
    parser.add_argument("--name")
    parser.add_argument("--raw-name")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--stall", action="store_true")
    parser.add_argument("file")
    args = parser.parse_args()
    result = ship(args.host, args.port, args.file, args.name, args.limit, args.stall,
                  args.raw_name, args.chunk)
    print(json.dumps(result), flush=True)
    return 2 if "refused" in result else 0


if __name__ == "__main__":
    sys.exit(main())
