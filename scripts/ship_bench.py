#!/usr/bin/env python3
"""The logship benchmark's driver (run it through scripts/ship-bench.sh, which builds first).

Ships one large file (1 GiB by default) and 1,000 small files over loopback, four ways, on the
same files, each into an empty directory, and prints for each: MB/s (bytes of the files over
the wall time until every copy is complete, checked by size and then by SHA-256), and the CPU
seconds per GiB of the sending and of the receiving side (user + system, children included,
from /proc/<pid>/stat and getrusage):

  logmill ship tx --once  ->  logmill serve --ship-port (when this logmill has the receiver)
  logmill ship tx --once  ->  examples/ship_rx (a minimal Rust receiver)
  logmill ship tx --once  ->  examples/ship_rx - (the same, discarding: the sender's ceiling)
  logmill ship tx --once  ->  tests/ship/ship_rx.py (the Python stand-in of the tests)
  rsync -a --whole-file   ->  rsync --daemon on 127.0.0.1 (a reference file copier)

With --tls-vs-plain: only the large file, only into `logmill serve`, over TLS (`ship tx --tls
--ca` into `serve --tls-cert --tls-key`, a certificate made here with the openssl command) and
plain, interleaved (plain, TLS, plain, TLS, ...), --runs rounds.

usage: ship_bench.py LOGMILL SHIP_RX_EXAMPLE [--big-mib N] [--small N] [--small-kib N]
                     [--tls-vs-plain]
"""

import argparse
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
GIB = 1 << 30


def cpu_of(pid):
    """User + system seconds of a live process and its reaped children."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[11..14] are utime, stime, cutime, cstime (stat fields 14..17).
    return sum(int(x) for x in fields[11:15]) / TICK


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def make_inputs(root, big_mib, small, small_kib):
    big_dir = os.path.join(root, "big")
    small_dir = os.path.join(root, "small")
    os.makedirs(big_dir)
    os.makedirs(small_dir)
    chunk = os.urandom(1 << 20)
    with open(os.path.join(big_dir, "big.log"), "wb") as f:
        for i in range(big_mib):
            # Distinct MiBs (a counter in each), cheap to make.
            f.write(i.to_bytes(8, "little") + chunk[8:])
    for i in range(small):
        with open(os.path.join(small_dir, "f%04d.log" % i), "wb") as f:
            f.write(os.urandom(small_kib << 10))
    return big_dir, small_dir


def digest_dir(d):
    out = {}
    for name in sorted(os.listdir(d)):
        h = hashlib.sha256()
        with open(os.path.join(d, name), "rb") as f:
            while True:
                b = f.read(1 << 22)
                if not b:
                    break
                h.update(b)
        out[name] = h.hexdigest()
    return out


def total_size(d):
    return sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d))


def wait_sizes(src, dst, timeout=600):
    """Waits until every file of src has a copy of the same size in dst (the receiver may still
    be writing after the sender exits)."""
    want = {n: os.path.getsize(os.path.join(src, n)) for n in os.listdir(src)}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if all(os.path.getsize(os.path.join(dst, n)) == s for n, s in want.items()):
                return
        except OSError:
            pass
        time.sleep(0.005)  # polling a directory: nothing to wait on
    raise SystemExit("copy of %s incomplete after %ds" % (src, timeout))


def start_receiver(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    line = p.stdout.readline().decode()
    if line.startswith("{"):
        # `logmill serve`'s listening line: JSON, the ship port's address under "ship".
        return p, int(json.loads(line)["ship"].rsplit(":", 1)[1])
    assert line.startswith("listening "), line
    return p, int(line.split()[1])


def serves_ship(logmill):
    """Whether this logmill has the receiver (`serve --ship-port`, issue 15's other half)."""
    out = subprocess.run([logmill, "serve", "--help"], capture_output=True, text=True).stdout
    return "--ship-port" in out


def run_ship(logmill, rx_cmd, src, dst, state, extra):
    cmd = rx_cmd(dst)
    discard = cmd[-1] == "-"
    rx, port = start_receiver(cmd)
    try:
        rx_cpu0 = cpu_of(rx.pid)
        tx_cpu0 = children_cpu()
        t0 = time.monotonic()
        subprocess.run(
            [logmill, "ship", "tx", "--host", "127.0.0.1", "--port", str(port),
             "--glob", os.path.join(src, "*.log"), "--state", state, "--once",
             "--no-progress"] + extra,
            check=True, stdout=subprocess.DEVNULL)
        if not discard:
            wait_sizes(src, dst)
        wall = time.monotonic() - t0
        tx_cpu = children_cpu() - tx_cpu0
        rx_cpu = cpu_of(rx.pid) - rx_cpu0
    finally:
        rx.kill()
        rx.wait()
    return wall, tx_cpu, rx_cpu


def run_rsync(src, dst, tmp):
    port = free_port()
    conf = os.path.join(tmp, "rsyncd.conf")
    with open(conf, "w") as f:
        f.write("use chroot = no\n[bench]\n  path = %s\n  read only = no\n  uid = %d\n  gid = %d\n"
                % (dst, os.getuid(), os.getgid()))
    daemon = subprocess.Popen(["rsync", "--daemon", "--no-detach", "--address=127.0.0.1",
                               "--port=%d" % port, "--config=%s" % conf],
                              stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # waiting for the daemon to bind
        d_cpu0 = cpu_of(daemon.pid)
        c_cpu0 = children_cpu()
        t0 = time.monotonic()
        subprocess.run(["rsync", "-a", "--whole-file", src + "/",
                        "rsync://127.0.0.1:%d/bench/" % port], check=True)
        wait_sizes(src, dst)
        wall = time.monotonic() - t0
        c_cpu = children_cpu() - c_cpu0
        # The daemon forks a child per connection; its CPU counts once the daemon reaps it.
        children = "/proc/%d/task/%d/children" % (daemon.pid, daemon.pid)
        deadline = time.monotonic() + 10
        while open(children).read().strip() and time.monotonic() < deadline:
            time.sleep(0.01)  # waiting for the daemon's child to exit
        d_cpu = cpu_of(daemon.pid) - d_cpu0
    finally:
        daemon.terminate()
        daemon.wait()
    return wall, c_cpu, d_cpu


def make_certs(tmp):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl): (ca, cert, key)."""
    d = os.path.join(tmp, "certs")
    os.makedirs(d)
    p = lambda n: os.path.join(d, n)
    quiet = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", p("ca.key"),
                    "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=ship-bench CA"], **quiet)
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", p("server.key"),
                    "-out", p("server.csr"), "-subj", "/CN=127.0.0.1"], **quiet)
    with open(p("ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    subprocess.run(["openssl", "x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"),
                    "-CAkey", p("ca.key"), "-CAcreateserial", "-out", p("server.pem"),
                    "-days", "2", "-extfile", p("ext")], **quiet)
    return p("ca.pem"), p("server.pem"), p("server.key")


def tls_vs_plain(args, tmp, big):
    """The large file into `logmill serve`, plain and over TLS, interleaved."""
    ca, cert, key = make_certs(tmp)
    serve = lambda extra: lambda d: [args.logmill, "serve", "--tcp-only", "--port", "0",
                                     "--ship-port", "0", "--dir", d + ".logs",
                                     "--ship-dir", d] + extra
    variants = [("ship tx -> logmill serve, plain", serve([]), []),
                ("ship tx --tls -> serve --tls-cert", serve(["--tls-cert", cert, "--tls-key", key]),
                 ["--tls", "--ca", ca])]
    size = total_size(big)
    want = digest_dir(big)
    print("%-36s %-14s %9s %9s %14s %14s" % ("sender -> receiver", "files", "MB", "MB/s",
                                             "tx CPU s/GiB", "rx CPU s/GiB"))
    for n in range(args.runs):
        for name, rx_cmd, extra in variants:
            dst = os.path.join(tmp, "out")
            os.makedirs(dst)
            state = os.path.join(tmp, "ship.state")
            wall, tx_cpu, rx_cpu = run_ship(args.logmill, rx_cmd, big, dst, state, extra)
            assert digest_dir(dst) == want, "%s: copy differs" % name
            gib = size / GIB
            print("%-36s %-14s %9.0f %9.0f %14.2f %14.2f" % (
                name + " #%d" % (n + 1), "1 x %d MiB" % args.big_mib, size / 1e6,
                size / 1e6 / wall, tx_cpu / gib, rx_cpu / gib), flush=True)
            shutil.rmtree(dst)
            shutil.rmtree(dst + ".logs", ignore_errors=True)
            if os.path.exists(state):
                os.remove(state)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("logmill")
    ap.add_argument("ship_rx")
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--small-kib", type=int, default=16)
    ap.add_argument("--dir", default=None, help="where to put the files (default: a temp dir)")
    ap.add_argument("--runs", type=int, default=2,
                    help="runs of each (the first also pays for the page cache making room)")
    ap.add_argument("--tls-vs-plain", action="store_true",
                    help="only the large file into logmill serve, over TLS and plain")
    args = ap.parse_args()
    python_rx = os.path.join(ROOT, "tests", "ship", "ship_rx.py")
    tmp = tempfile.mkdtemp(prefix="ship-bench-", dir=args.dir)
    try:
        if args.tls_vs_plain:
            big, _ = make_inputs(tmp, args.big_mib, 0, args.small_kib)
            tls_vs_plain(args, tmp, big)
            return
        big, small = make_inputs(tmp, args.big_mib, args.small, args.small_kib)
        receivers = [
            ("ship tx -> Rust ship_rx", lambda d: [args.ship_rx, "127.0.0.1:0", d]),
            ("ship tx -> ship_rx discarding", lambda d: [args.ship_rx, "127.0.0.1:0", "-"]),
            ("ship tx -> Python ship_rx.py", lambda d: [sys.executable, python_rx, "--port", "0",
                                                        "--storage-path", d]),
        ]
        if serves_ship(args.logmill):
            receivers.insert(0, ("ship tx -> logmill serve", lambda d: [
                args.logmill, "serve", "--tcp-only", "--port", "0", "--ship-port", "0",
                "--dir", d + ".logs", "--ship-dir", d]))
        print("%-34s %-22s %9s %9s %14s %14s" % ("sender -> receiver", "files", "MB", "MB/s",
                                                 "tx CPU s/GiB", "rx CPU s/GiB"))
        for label, src in (("1 x %d MiB" % args.big_mib, big),
                           ("%d x %d KiB" % (args.small, args.small_kib), small)):
            size = total_size(src)
            want = digest_dir(src)
            runs = [(name, lambda dst, st, cmd=cmd: run_ship(args.logmill, cmd, src, dst, st, []))
                    for name, cmd in receivers]
            runs.append(("rsync -a -> rsync --daemon", lambda dst, st: run_rsync(src, dst, tmp)))
            for (name, run), n in [(r, n) for r in runs for n in range(args.runs)]:
                dst = os.path.join(tmp, "out")
                os.makedirs(dst)
                state = os.path.join(tmp, "ship.state")
                wall, tx_cpu, rx_cpu = run(dst, state)
                # The discarding receiver keeps nothing: --once ending is its only check.
                assert "discarding" in name or digest_dir(dst) == want, "%s: copy differs" % name
                gib = size / GIB
                print("%-34s %-22s %9.0f %9.0f %14.2f %14.2f" % (
                    name + " #%d" % (n + 1), label, size / 1e6, size / 1e6 / wall, tx_cpu / gib, rx_cpu / gib),
                    flush=True)
                shutil.rmtree(dst)
                shutil.rmtree(dst + ".logs", ignore_errors=True)
                if os.path.exists(state):
                    os.remove(state)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
