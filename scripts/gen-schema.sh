#!/usr/bin/env bash
# Regenerate src/logmill_capnp.rs from schema/logmill.capnp (needs `capnp`: apt-get install -y capnproto).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v capnp >/dev/null || { echo "gen-schema: install the Cap'n Proto compiler: apt-get install -y capnproto" >&2; exit 1; }
LOGMILL_REGENERATE=1 cargo test --quiet -p logmill-codegen-check --test schema_drift
echo "regenerated src/logmill_capnp.rs"
