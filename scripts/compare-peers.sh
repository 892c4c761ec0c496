#!/usr/bin/env bash
# compare-peers.sh -- logmill next to rsyslog and syslog-ng, in one run, on loopback.
#
# Installs the peers from Debian packages (../shared/peers/install.sh; run as root), starts each with
# its own private config, feeds every server the same syslog stream over TCP (RFC 5424 lines,
# newline-framed, from ../shared/peers/loadgen.py), waits until each has written every line to its
# plain files, and prints records/s, server CPU per record and peak memory side by side.
#
#   scripts/compare-peers.sh                  # 64 connections, 2,000,000 records of 200 bytes
#   C=1000 M=1000000 scripts/compare-peers.sh
#
# Everything talks to 127.0.0.1 only and every step is bounded by a timeout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS_DIR:-$ROOT/../shared/peers}
C=${C:-64}
M=${M:-2000000}
SIZE=${SIZE:-200}
TIMEOUT=${TIMEOUT:-300}
[ -d "$PEERS" ] || { echo "compare-peers: no peers folder at $PEERS (set PEERS_DIR)" >&2; exit 1; }

if ! command -v rsyslogd >/dev/null || [ ! -x /opt/syslog-ng/usr/sbin/syslog-ng ]; then
  [ "$(id -u)" = 0 ] || { echo "compare-peers: installing the peers needs root" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  bash "$PEERS/install.sh" >/dev/null
fi
(cd "$ROOT" && cargo build --release --quiet)
ulimit -n 20000

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peak_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

results=()
measure() { # NAME PORT PID GLOB
  local name=$1 port=$2 pid=$3 glob=$4 before after out rate
  before=$(cpu_ticks "$pid")
  out=$(python3 "$PEERS/loadgen.py" --port "$port" -c "$C" -m "$M" --size "$SIZE" --framing lf \
        --count-glob "$glob" --timeout "$TIMEOUT" --json | sed -n 's/^JSON //p')
  after=$(cpu_ticks "$pid")
  rate=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["msgs_per_s"] or 0))' "$out")
  local cpu_us
  cpu_us=$(python3 -c "print(round(($after-$before)/$ticks*1e6/$M, 2))")
  results+=("$(printf '%-10s %12s %14s %12s' "$name" "$rate" "$cpu_us" "$(($(peak_kib "$pid") / 1024))")")
  echo "$name: $out" >&2
}

# A peer left running by an interrupted run would hold its port; stop it on any exit too.
for peer in rsyslog syslog-ng; do bash "$PEERS/stop.sh" "$peer" >/dev/null 2>&1 || true; done
trap 'for p in rsyslog syslog-ng; do bash "$PEERS/stop.sh" "$p" >/dev/null 2>&1 || true; done' EXIT
for peer in rsyslog syslog-ng; do
  pid=$(bash "$PEERS/start.sh" "$peer")
  port=$([ "$peer" = rsyslog ] && echo 15140 || echo 15141)
  measure "$peer" "$port" "$pid" "/tmp/peers/$peer/out.log"
  bash "$PEERS/stop.sh" "$peer" >/dev/null
done

dir=/tmp/peers/logmill
rm -rf "$dir" && mkdir -p "$dir"
# One big file so the line count is not cut by rotation; no fsync, like the peers' configs.
"$ROOT/target/release/logmill" --port 0 --tcp-only --dir "$dir" --fsync never \
  --max-file-size 64GiB --max-files 1 >"$dir/stdout" 2>"$dir/stderr" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT  # (replaces the peers' trap: they are stopped)
for _ in $(seq 1 100); do [ -s "$dir/stdout" ] && break; sleep 0.1; done
port=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["tcp"].rsplit(":",1)[1])' "$dir/stdout")
measure logmill "$port" "$pid" "$dir/_main.log*"
kill -TERM "$pid"; wait "$pid" || true
trap - EXIT

echo
echo "$C connections, $M records of $SIZE bytes, syslog over TCP (newline framing), one run"
printf '%-10s %12s %14s %12s\n' server records/s "CPU us/record" "peak MiB"
printf '%s\n' "${results[@]}"
