#!/usr/bin/env bash
# gRPC interop with real, unmodified third-party clients, on its own:
#   - Python grpcio, with stubs generated from proto/ by grpcio-tools, in a throwaway virtualenv;
#   - Node @grpc/grpc-js with @grpc/proto-loader, installed with npm into a local folder.
# The tests install both themselves (tests/common/tools.rs, cached under target/tmp/tools/) and
# run the clients tests/grpc_interop/client.{py,js}:
#   1. against the standalone connection driver (tests/grpc_driver.rs);
#   2. against the real binary, which must then exit cleanly on SIGTERM (tests/clients.rs).
# `cargo test` runs all of this too; this script is for running just that.
#
# Usage: scripts/grpc-interop.sh [--driver-only]
# Needs: cargo, python3 (with venv), node and npm; access to PyPI and npm the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  --driver-only) targets=(--test grpc_driver) ;;
  "") targets=(--test grpc_driver --test clients) ;;
  *) echo "usage: $0 [--driver-only]" >&2; exit 2 ;;
esac

# CI=true: a client that cannot be installed fails its test instead of printing SKIPPED.
CI=true cargo test "${targets[@]}" -- python_grpcio_client node_grpc_js_client
