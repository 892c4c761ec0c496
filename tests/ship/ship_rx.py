#!/usr/bin/env python3
"""A logship receiver stand-in, written from the protocol in logship's document (issue 15),
standard library only: the other side for interop tests of a transmitter.

    ship_rx.py [--bindhost H] [--port P] [--storage-path D] [--host-in-filename]
               [--timeout S] [--rate B] [--peak-file F]

It reads the name line (at most 255 bytes and a newline), refuses what is not a plain file
name with `error: <why>\\n`, answers the size of its copy (`1234\\n`), and appends every byte
that follows until the connection closes. One connection per stored name at a time (a second is
refused). With --host-in-filename the stored name is `<address>_<name>`, as logmill's.

Prints `listening <port>` on stdout once bound (--port 0 picks a free port). Stops on SIGTERM
or SIGINT. For tests: --timeout S closes a connection silent that long (its bytes are kept);
--rate B receives at most B bytes a second per connection, so a test can act mid-file;
--peak-file F holds the most connections ever open at once, rewritten when it grows.
"""

import argparse
import ipaddress
import os
import signal
import socket
import sys
import threading
import time

MAX_NAME = 255

busy = set()
busy_lock = threading.Lock()
open_now = 0
peak = 0


def count(delta, peak_file):
    """Connections open now; the peak, written to `peak_file` when it grows."""
    global open_now, peak
    with busy_lock:
        open_now += delta
        if open_now > peak:
            peak = open_now
            if peak_file:
                with open(peak_file + ".tmp", "w") as f:
                    f.write("%d\n" % peak)
                os.replace(peak_file + ".tmp", peak_file)


def check_name(raw):
    """The name, or raise ValueError with the reason (logmill's rules)."""
    if not raw:
        raise ValueError("empty file name")
    if len(raw) > MAX_NAME:
        raise ValueError("file name longer than 255 bytes")
    if b"/" in raw:
        raise ValueError("file name contains '/'")
    if raw.startswith(b"."):
        raise ValueError("file name starts with '.'")
    if b".." in raw:
        raise ValueError("file name contains '..'")
    if any(b < 0x20 or b == 0x7F for b in raw):
        raise ValueError("file name contains a control character")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("file name is not UTF-8")


def read_name_line(conn):
    line = b""
    while not line.endswith(b"\n"):
        if len(line) > MAX_NAME:
            raise ValueError("no newline within 256 bytes")
        part = conn.recv(MAX_NAME + 1 - len(line))
        if not part:
            raise ConnectionError("closed before the name line")
        line += part
        if b"\n" in line and not line.endswith(b"\n"):
            raise ValueError("data before the offset line")
    return line[:-1]


def serve(conn, addr, storage, host_in_filename, timeout, rate, peak_file):
    count(1, peak_file)
    conn.settimeout(timeout)
    stored = None
    try:
        try:
            name = check_name(read_name_line(conn))
            stored = name
            if host_in_filename:
                ip = ipaddress.ip_address(addr[0].split("%")[0])
                if ip.version == 6 and ip.ipv4_mapped:
                    ip = ip.ipv4_mapped
                stored = "%s_%s" % (ip, name)
                if len(stored.encode()) > MAX_NAME:
                    raise ValueError("file name longer than 255 bytes")
            with busy_lock:
                if stored in busy:
                    stored_busy, stored = stored, None
                    raise ValueError("%s is being shipped by another connection" % stored_busy)
                busy.add(stored)
        except (ValueError, socket.timeout) as e:
            conn.sendall(("error: %s\n" % e).encode())
            return
        path = os.path.join(storage, stored)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
        with os.fdopen(fd, "ab", buffering=0) as f:
            conn.sendall(b"%d\n" % os.fstat(fd).st_size)
            started = time.monotonic()
            received = 0
            while True:
                try:
                    data = conn.recv(min(rate, 65536) if rate else 65536)
                except socket.timeout:
                    return
                if not data:
                    return
                f.write(data)
                received += len(data)
                if rate:
                    # The throttle is the behaviour asked for: at most `rate` bytes a second.
                    ahead = received / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
    except ConnectionError:
        return
    finally:
        # Released before the socket closes, so a transmitter that saw the close can reconnect
        # for the same name at once.
        if stored is not None:
            with busy_lock:
                busy.discard(stored)
        conn.close()
        count(-1, peak_file)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bindhost", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7447)
    parser.add_argument("--storage-path", default="/var/tmp/logship")
    parser.add_argument("--host-in-filename", action="store_true")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--rate", type=int, default=0)
    parser.add_argument("--peak-file")
    args = parser.parse_args()
    os.makedirs(args.storage_path, exist_ok=True)
    family = socket.AF_INET6 if ":" in args.bindhost else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.bindhost, args.port))
    listener.listen(1024)
    print("listening %d" % listener.getsockname()[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            conn, addr = listener.accept()
            threading.Thread(
                target=serve,
                args=(
                    conn,
                    addr,
                    args.storage_path,
                    args.host_in_filename,
                    args.timeout,
                    args.rate,
                    args.peak_file,
                ),
                daemon=True,
            ).start()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
