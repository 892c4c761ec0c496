#!/usr/bin/env bash
# Measures forwarding (issue 17) on this machine, in the same minutes, interleaved:
#
#   1. forward: N stored records (made by `logmill bench`, 200-byte messages) forwarded into a
#      local ClickHouse by `logmill serve --forward clickhouse+http://...` from a fresh
#      checkpoint, timed from the start of the server to the last row counted in the table;
#      against `clickhouse-client --query "INSERT INTO t FORMAT JSONEachRow" < rows` of the same
#      rows (exported from the table the first forward filled). Rows/s of each, ROUNDS times
#      each, alternating.
#   2. ingestion: `logmill bench` against a server without a forwarder and one forwarding to
#      ClickHouse, alternating, ROUNDS times each; records/s of each.
#
# Needs a release build (cargo build --release) and clickhouse-server/clickhouse-client
# (scripts/install-tools.sh). Usage: scripts/forward-bench.sh [N] [ROUNDS]
#
# CH_NICE=1 runs clickhouse-server under `nice -n 19`: in production ClickHouse is on another
# machine, and on this 2-core box it otherwise takes CPU from the event loops during the
# ingestion rounds, which measures ClickHouse's share, not the forwarder's. Report both.
#
# The forwarder's threads run at nice 19 (they use the CPU ingestion leaves), so on a machine
# other programs keep busy they get little of it; CLIENT_NICE=1 runs `clickhouse-client` at
# the same nice 19, so the comparison of rows/s is of the work, not of the priorities.
set -euo pipefail

N=${1:-2000000}
ROUNDS=${2:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/logmill
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d /tmp/logmill-forward-bench.XXXXXX)
CH_PID=""
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [ -n "$CH_PID" ] && kill "$CH_PID" 2>/dev/null && wait "$CH_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

# --- ClickHouse, in the foreground of a background job, from a config in $WORK -------------
HTTP=$(free_port); TCP=$(free_port)
mkdir -p "$WORK/ch"
cat > "$WORK/ch/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$HTTP</http_port>
  <tcp_port>$TCP</tcp_port>
  <path>$WORK/ch/data/</path>
  <tmp_path>$WORK/ch/tmp/</tmp_path>
  <user_files_path>$WORK/ch/user_files/</user_files_path>
  <format_schema_path>$WORK/ch/format_schemas/</format_schema_path>
  <users_config>$WORK/ch/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
</yandex>
EOF
cat > "$WORK/ch/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
EOF
NICE=()
[ "${CH_NICE:-0}" = 1 ] && NICE=(nice -n 19)
"${NICE[@]}" clickhouse-server --config-file="$WORK/ch/config.xml" > "$WORK/ch/out.log" 2>&1 &
CH_PID=$!
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$HTTP/ping" >/dev/null && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$HTTP/ping" >/dev/null || { cat "$WORK/ch/out.log" >&2; exit 1; }
q() { curl -sf "http://127.0.0.1:$HTTP/" --data-binary "$1"; }
for t in first viaforward viaclient; do
  q "DROP TABLE IF EXISTS default.$t"
  q "$("$BIN" forward schema clickhouse --table "default.$t")"
done

# Starts `logmill serve` in $1 with the rest as flags; sets SERVER_PID and ADDR.
serve() {
  local dir=$1; shift
  "$BIN" serve --tcp-only --port 0 --fsync never --dir "$dir" "$@" > "$dir.out" 2> "$dir.err" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    [ -s "$dir.out" ] && break
    sleep 0.1
  done
  ADDR=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["tcp"])' "$dir.out")
}
stop() { kill "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""; }
wait_rows() {
  until [ "$(q "SELECT count() FROM default.$1")" -ge "$2" ]; do sleep 0.1; done
}

# --- the stored records ----------------------------------------------------------------------
STORE=$WORK/store
mkdir -p "$STORE"
serve "$STORE" --max-files 1000
"$BIN" bench --addr "$ADDR" -c 16 -n "$N" -s 200 > "$WORK/bench-fill.txt"
stop
echo "stored: $N records, $(du -sh "$STORE" | cut -f1) in $STORE"

FORWARD_URL="clickhouse+http://127.0.0.1:$HTTP/default"
serve "$STORE" --max-files 1000 --forward "$FORWARD_URL.first"
wait_rows first "$N"
stop
q "SELECT * FROM default.first FORMAT JSONEachRow" > "$WORK/rows.json"
echo "rows file: $(du -h "$WORK/rows.json" | cut -f1), $(wc -l < "$WORK/rows.json") rows"

# --- 1. forward vs clickhouse-client, interleaved -------------------------------------------
echo
CLIENT=()
[ "${CLIENT_NICE:-0}" = 1 ] && CLIENT=(nice -n 19)
echo "forwarding $N rows into ClickHouse $(q 'SELECT version()')${NICE:+ (server under ${NICE[*]})}${CLIENT:+ (clickhouse-client under ${CLIENT[*]})}, rows/s:"
for round in $(seq 1 "$ROUNDS"); do
  q "TRUNCATE TABLE default.viaclient"
  t0=$(now)
  "${CLIENT[@]}" clickhouse-client --port "$TCP" --query "INSERT INTO default.viaclient FORMAT JSONEachRow" < "$WORK/rows.json"
  t1=$(now)
  client=$(python3 -c "print(round($N / ($t1 - $t0)))")

  q "TRUNCATE TABLE default.viaforward"
  rm -f "$STORE"/.logmill/forward-*viaforward*.json
  t0=$(now)
  serve "$STORE" --max-files 1000 --forward "$FORWARD_URL.viaforward"
  wait_rows viaforward "$N"
  t1=$(now)
  stop
  forward=$(python3 -c "print(round($N / ($t1 - $t0)))")
  echo "  round $round: clickhouse-client $client rows/s, logmill forward $forward rows/s ($(python3 -c "print(round(100 * $forward / $client))")%)"
done

# --- 2. ingestion with and without a forwarder, interleaved --------------------------------
echo
echo "ingestion (logmill bench -c 64 -n $N -s 200), records/s:"
for round in $(seq 1 "$ROUNDS"); do
  for mode in plain forwarding; do
    dir=$WORK/ingest-$mode-$round
    mkdir -p "$dir"
    if [ "$mode" = plain ]; then
      serve "$dir" --max-files 1000
    else
      q "TRUNCATE TABLE default.viaforward"
      serve "$dir" --max-files 1000 --forward "$FORWARD_URL.viaforward"
    fi
    rate=$("$BIN" bench --addr "$ADDR" -c 64 -n "$N" -s 200 | python3 -c 'import json,sys; print([json.loads(l) for l in sys.stdin if l.startswith("{")][-1]["records_per_sec"])')
    stop
    rm -rf "$dir"
    echo "  round $round: $mode $rate"
  done
done
