#!/usr/bin/env bash
# gRPC interop with real, unmodified third-party clients:
#   - Python grpcio, with stubs generated from proto/ by grpcio-tools, in a throwaway virtualenv;
#   - Node @grpc/grpc-js with @grpc/proto-loader, installed with npm into a local folder.
# Both are cached under target/grpc-interop/ (ignored by git) and reinstalled when the pinned
# versions below change. The clients are tests/grpc_interop/client.{py,js}.
#
# It runs them twice:
#   1. against the standalone connection driver (cargo test --test grpc_driver), which needs no
#      server wiring;
#   2. against the real binary, `logmill serve --port 0 --grpc-port 0 --format json --dir <tmp>`,
#      whose gRPC address comes from the `grpc` field of the JSON listening line; the clients then
#      also check the stored files, and the server must exit cleanly on SIGTERM.
#
# Usage: scripts/grpc-interop.sh [--driver-only]
# Needs: cargo, python3 (with venv), node and npm; network access to PyPI and npm the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PY_PACKAGES="grpcio==1.85.1 grpcio-tools==1.85.1"
CACHE="$ROOT/target/grpc-interop"
VENV="$CACHE/venv"
STUBS="$CACHE/py"
NODE_DIR="$CACHE/node"

driver_only=false
case "${1:-}" in
  --driver-only) driver_only=true ;;
  "") ;;
  *) echo "usage: $0 [--driver-only]" >&2; exit 2 ;;
esac

say() { printf '\n--- %s\n' "$*"; }
die() { echo "grpc-interop: $*" >&2; exit 1; }

for tool in cargo python3 node npm; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done
mkdir -p "$CACHE"

say "Python: grpcio and grpcio-tools in $VENV"
if [ "$(cat "$VENV/.packages" 2>/dev/null)" != "$PY_PACKAGES" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  # shellcheck disable=SC2086 # one word per package
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $PY_PACKAGES
  echo "$PY_PACKAGES" > "$VENV/.packages"
fi
rm -rf "$STUBS" && mkdir -p "$STUBS"
"$VENV/bin/python" -m grpc_tools.protoc -I proto --python_out="$STUBS" --grpc_python_out="$STUBS" \
  logmill.proto
# Compiled from its own directory so the module is `health_pb2`, not a `grpc` package that would
# shadow grpcio's.
"$VENV/bin/python" -m grpc_tools.protoc -I proto/grpc/health/v1 --python_out="$STUBS" \
  --grpc_python_out="$STUBS" health.proto

say "Node: @grpc/grpc-js and @grpc/proto-loader in $NODE_DIR"
mkdir -p "$NODE_DIR"
if ! cmp -s tests/grpc_interop/package.json "$NODE_DIR/package.json" \
  || [ ! -d "$NODE_DIR/node_modules/@grpc/grpc-js" ]; then
  rm -rf "$NODE_DIR/node_modules"
  cp tests/grpc_interop/package.json "$NODE_DIR/package.json"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error)
fi

export PYTHONPATH="$STUBS"
export NODE_PATH="$NODE_DIR/node_modules"

say "1. both clients against the standalone connection driver"
LOGMILL_GRPC_PYTHON="$VENV/bin/python" LOGMILL_GRPC_NODE="$(command -v node)" \
  cargo test --test grpc_driver -- python_grpcio_client node_grpc_js_client --nocapture

if $driver_only; then
  echo "grpc-interop: driver checks passed (--driver-only: the binary was not run)"
  exit 0
fi

say "2. both clients against the real binary"
cargo build
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/logmill"
DIR=$(mktemp -d "${TMPDIR:-/tmp}/logmill-grpc-interop.XXXXXX")
OUT="$DIR/stdout"
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT
mkdir "$DIR/logs"
"$BIN" serve --port 0 --grpc-port 0 --format json --dir "$DIR/logs" >"$OUT" 2>"$DIR/stderr" &
SERVER_PID=$!

# The listening line is the first line of stdout; wait for it (bounded).
for _ in $(seq 1 300); do
  [ -s "$OUT" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$DIR/stderr" >&2; die "the server exited at start-up"; }
  sleep 0.1
done
[ -s "$OUT" ] || die "no listening line within 30s"
GRPC=$("$VENV/bin/python" -c 'import json,sys; print(json.loads(sys.stdin.readline())["grpc"] or "")' <"$OUT")
[ -n "$GRPC" ] || die "the listening line has no gRPC address ($(head -1 "$OUT")): this build does not serve gRPC yet"
echo "server pid $SERVER_PID, gRPC on $GRPC"

"$VENV/bin/python" tests/grpc_interop/client.py --target "$GRPC" --dir "$DIR/logs"
node tests/grpc_interop/client.js --target "$GRPC" --dir "$DIR/logs"

say "3. SIGTERM: a clean exit"
kill -TERM "$SERVER_PID"
status=0
for _ in $(seq 1 300); do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$SERVER_PID" 2>/dev/null; then
  cat "$DIR/stderr" >&2
  die "the server did not exit within 30s of SIGTERM"
fi
wait "$SERVER_PID" || status=$?
SERVER_PID=
[ "$status" -eq 0 ] || { cat "$DIR/stderr" >&2; die "the server exited with status $status"; }
echo "grpc-interop: all checks passed (driver and binary, Python grpcio and Node grpc-js)"
