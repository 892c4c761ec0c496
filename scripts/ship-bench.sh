#!/usr/bin/env bash
# The logship benchmark: one 1 GiB file and 1,000 small files shipped over loopback by
# `logmill ship tx` to `logmill serve`'s receiver, to a minimal Rust receiver (examples/ship_rx.rs,
# the floor) and to the Python stand-in of the tests (tests/ship/ship_rx.py), and the
# same files copied by rsync to an rsync daemon on 127.0.0.1, as references. Prints MB/s and CPU
# seconds per GiB of both sides; every copy is checked by SHA-256. Needs rsync
# (scripts/install-tools.sh installs it) and about 3 GiB free under $TMPDIR.
#
# With --tls-vs-plain: the 1 GiB file only, into `logmill serve`, over TLS and plain,
# interleaved (needs the openssl command for the certificate instead of rsync).
#
#   scripts/ship-bench.sh [--big-mib 1024] [--small 1000] [--small-kib 16] [--dir DIR]
#                         [--runs 2] [--tls-vs-plain]
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in
*" --tls-vs-plain "*)
    command -v openssl >/dev/null || { echo "ship-bench: openssl missing" >&2; exit 1; } ;;
*)
    command -v rsync >/dev/null || { echo "ship-bench: rsync missing: scripts/install-tools.sh" >&2; exit 1; } ;;
esac
cargo build --release --bin logmill --example ship_rx
exec python3 scripts/ship_bench.py target/release/logmill target/release/examples/ship_rx "$@"
