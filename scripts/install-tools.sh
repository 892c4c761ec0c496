#!/usr/bin/env bash
# Installs the system tools some tests need, from Debian packages (root; idempotent: installs only
# what is missing, and runs apt-get only then):
#   capnp     (capnproto)  the schema drift test regenerates src/logmill_capnp.rs and compares;
#   rsyslogd  (rsyslog)    the forwarding interop test runs rsyslogd in the foreground;
#   logger, script (bsdutils)  the syslog client tests; `script` gives `ship tx` a terminal in the
#             progress test (on every Debian machine; checked so a gap is plain);
#   go        (golang-go)  the Go client's tests (clients/go, `go test`; Debian's 1.19 is enough);
#   openssl   (openssl)    the TLS test's `openssl s_client` handshake (tests/tls.rs);
#   clickhouse-server, clickhouse-client (18.16)  the forwarding tests (tests/forward.rs) start a
#             server in the foreground from a config in a temporary directory; the benchmark
#             (scripts/forward-bench.sh) compares with clickhouse-client.
#   rsync     (rsync)      the reference copier of scripts/ship-bench.sh (not needed by the tests).
# The gRPC clients (Python grpcio, Node grpc-js) need no root: the tests install them themselves
# under target/tmp/tools/ (tests/common/tools.rs). `.ci/run` calls this script, and so does
# `cargo test` when it runs as root and finds a tool missing (unless LOGMILL_NO_INSTALL=1).
set -euo pipefail

need=()
command -v capnp >/dev/null || need+=(capnproto)
command -v rsyslogd >/dev/null || need+=(rsyslog)
command -v logger >/dev/null || need+=(bsdutils)
command -v script >/dev/null || need+=(bsdutils)
command -v go >/dev/null || need+=(golang-go)
command -v openssl >/dev/null || need+=(openssl)
command -v clickhouse-server >/dev/null || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null || need+=(clickhouse-client)
command -v rsync >/dev/null || need+=(rsync)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-tools: ${need[*]} missing; installing needs root: sudo $0" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
