#!/usr/bin/env python3
"""A logship receiver written from the protocol as the logship document describes it, for the
transmitter's tests (tests/ship_tx.rs) and as the reference in scripts/ship-bench.sh.

Standard library only. One thread per connection:
  read the name up to the first newline (at most 256 bytes, else an error line and a close),
  check it is a plain file name (no '/', no '..', no NUL or control byte, <= 255 bytes, not
  starting with '.'), open <storage>/<name> for appending, answer its size and a newline, then
  append every byte that follows until the transmitter closes. A second connection for a name
  that is being received is refused with a line ("error: ... busy"), never interleaved.

Prints "listening <port>" on stdout once bound (--port 0 picks a free port). For tests:
--rate B (receive at most B bytes a second per connection, so a test can act mid-file) and
--peak-file F (the most connections ever open at once, rewritten when it grows).
"""

import argparse
import os
import socket
import sys
import threading
import time

MAX_NAME = 255

busy = set()
busy_lock = threading.Lock()
open_now = 0
peak = 0


def valid(name: bytes) -> bool:
    return (
        0 < len(name) <= MAX_NAME
        and b"/" not in name
        and b".." not in name
        and not name.startswith(b".")
        and all(b >= 0x20 and b != 0x7F for b in name)
    )


def read_name(conn):
    buf = b""
    while b"\n" not in buf:
        if len(buf) > MAX_NAME:
            return None
        chunk = conn.recv(MAX_NAME + 1 - len(buf) if len(buf) <= MAX_NAME else 1)
        if not chunk:
            return None
        buf += chunk
    name, _, rest = buf.partition(b"\n")
    return name, rest


def count(delta, peak_file):
    global open_now, peak
    with busy_lock:
        open_now += delta
        if open_now > peak:
            peak = open_now
            if peak_file:
                with open(peak_file + ".tmp", "w") as f:
                    f.write("%d\n" % peak)
                os.replace(peak_file + ".tmp", peak_file)


def serve(conn, storage, host_in_filename, peer, rate, peak_file):
    count(1, peak_file)
    try:
        got = read_name(conn)
        if got is None:
            conn.sendall(b"error: no name line within 256 bytes\n")
            return
        name, rest = got
        if not valid(name):
            conn.sendall(b"error: not a plain file name\n")
            return
        if host_in_filename:
            name = peer.encode() + b"_" + name
        with busy_lock:
            if name in busy:
                conn.sendall(b"error: " + name + b" is busy (another connection ships it)\n")
                return
            busy.add(name)
        try:
            path = os.path.join(storage, os.fsdecode(name))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                conn.sendall(b"%d\n" % os.fstat(fd).st_size)
                data = rest
                started = time.monotonic()
                received = 0
                while True:
                    if data:
                        view = memoryview(data)
                        while view:
                            view = view[os.write(fd, view):]
                    received += len(data)
                    if rate:
                        # The throttle is the behaviour asked for: at most `rate` bytes a second.
                        ahead = received / rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
                    data = conn.recv(min(rate, 1 << 16) if rate else 1 << 20)
                    if not data:
                        break
            finally:
                os.close(fd)
        finally:
            # Released before the socket closes, so a transmitter that saw our close can
            # reconnect for the same name at once.
            with busy_lock:
                busy.discard(name)
    except OSError:
        pass
    finally:
        conn.close()
        count(-1, peak_file)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bindhost", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7447)
    parser.add_argument("--storage-path", default="/var/tmp/logship")
    parser.add_argument("--host-in-filename", action="store_true")
    parser.add_argument("--rate", type=int, default=0)
    parser.add_argument("--peak-file")
    args = parser.parse_args()
    os.makedirs(args.storage_path, exist_ok=True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.bindhost, args.port))
    listener.listen(1024)
    print("listening %d" % listener.getsockname()[1], flush=True)
    while True:
        conn, addr = listener.accept()
        threading.Thread(
            target=serve,
            args=(conn, args.storage_path, args.host_in_filename, addr[0], args.rate, args.peak_file),
            daemon=True,
        ).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
