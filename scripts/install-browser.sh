#!/usr/bin/env bash
# Installs what tests/browser.rs needs (idempotent: does nothing when all is there):
#   chromium         Debian's package (/usr/bin/chromium), installed with apt-get when root;
#   playwright-core  and grpc-web, the pins of tests/browser/package.json, installed with npm into
#                    target/tmp/tools/browser/ (or $LOGMILL_TOOLS_DIR/browser), the folder the
#                    tests own; no browser download (playwright-core never fetches one).
# The npm half is the same install tests/common/tools.rs makes when the folder is missing or its
# pins changed (same folder, same lock, same stamp), so `cargo test` alone also sets it up.
# `.ci/run` calls this script; so does the test itself when it runs as root and chromium is missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser: chromium missing; installing needs root: sudo $0 (or apt-get install chromium)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

command -v npm >/dev/null || { echo "install-browser: npm missing (apt-get install nodejs npm)" >&2; exit 1; }
tools="${LOGMILL_TOOLS_DIR:-$root/target/tmp/tools}"
folder="$tools/browser"
mkdir -p "$tools"
(
  flock 9
  if ! cmp -s "$root/tests/browser/package.json" "$folder/.stamp" 2>/dev/null; then
    rm -rf "$folder"
    mkdir -p "$folder"
    cp "$root/tests/browser/package.json" "$folder/package.json"
    (cd "$folder" && npm install --no-audit --no-fund --loglevel=error)
    cp "$root/tests/browser/package.json" "$folder/.stamp"
  fi
) 9>"$tools/.lock"
