#!/usr/bin/env bash
# Overload measurements of the HTTP front end (issue 12), one JSON line per allocator:
#
#   1. a storm: wrk with $STORM_CONNECTIONS connections, each POSTing PutRecords of 500 x 100 B
#      records, for $STORM_SECONDS s against `sluice serve --cores 1` (server on CPU 0, wrk on
#      CPU 1); the server's RSS is sampled every 100 ms (peak), and again $SETTLE_SECONDS s after
#      the storm ends; wrk's requests/s, latency percentiles and non-2xx answers are kept;
#   2. slow clients: $SLOW_CLIENTS connections each send half a request header and hold it, while
#      one PutRecord at a time is timed ($SLOW_PROBES of them).
#
# Each allocator the binary can be built with (jemalloc, the default feature alloc-jemalloc; the
# system allocator, --no-default-features; mimalloc, alloc-mimalloc without the default) is
# measured in the same invocation, so the choice in docs/DECISIONS.md rests on one run.
#
#   scripts/overload.sh                 # writes $OUT/overload.jsonl
#   ALLOCATORS="system" STORM_CONNECTIONS=500 scripts/overload.sh   # a quick look
#   SERVER_ARGS="--memory-budget-bytes 134217728" scripts/overload.sh # other server settings
#   ALLOCATORS="before jemalloc" BEFORE_BIN=/tmp/old/sluice scripts/overload.sh  # vs an older build
#
# Installs wrk from apt if missing. Sends traffic to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

OUT=${OUT:-/tmp/sluice-overload/$(date -u +%Y%m%dT%H%M%SZ)}
ALLOCATORS=${ALLOCATORS:-"system jemalloc mimalloc"}
STORM_CONNECTIONS=${STORM_CONNECTIONS:-5000}
STORM_SECONDS=${STORM_SECONDS:-10}
SETTLE_SECONDS=${SETTLE_SECONDS:-15}
SLOW_CLIENTS=${SLOW_CLIENTS:-2000}
SLOW_PROBES=${SLOW_PROBES:-20}
PORT=${OVERLOAD_PORT:-4590}
SERVER_CPU=0
CLIENT_CPU=1
SCRATCH_BASE=${SCRATCH_BASE:-/var/tmp}

mkdir -p "$OUT"
log() { echo "[overload.sh $(date -u +%H:%M:%S)] $*" >&2; }
command -v wrk >/dev/null || {
  log "installing wrk with apt"
  apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wrk >/dev/null 2>&1; }
}
# wrk and the server each hold one descriptor per connection.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

server_pid=""
scratch=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$scratch" ] && rm -rf "$scratch"
  true
}
trap cleanup EXIT

# The request body: 500 records of 100 bytes, base64 in JSON, as the SDKs send them.
python3 - "$OUT/put_records.json" <<'PY'
import base64, json, sys
records = [{"Data": base64.b64encode(bytes([65 + i % 26]) * 100).decode(), "PartitionKey": f"pk-{i}"} for i in range(500)]
open(sys.argv[1], "w").write(json.dumps({"StreamName": "storm", "Records": records}))
PY
cat >"$OUT/put_records.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.1"
wrk.headers["X-Amz-Target"] = "Kinesis_20131202.PutRecords"
-- Without configured credentials a loopback server takes any well-formed signature.
wrk.headers["X-Amz-Date"] = "20250101T000000Z"
wrk.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
local f = io.open("$OUT/put_records.json", "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format('WRK {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
LUA

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

for allocator in $ALLOCATORS; do
  case $allocator in
    system) features="--no-default-features" ;;
    jemalloc) features="" ;;
    mimalloc) features="--no-default-features --features alloc-mimalloc" ;;
    before) features="" ;;
    *) log "unknown allocator $allocator"; exit 1 ;;
  esac
  bin="$OUT/sluice-$allocator"
  server_args=${SERVER_ARGS:-}
  if [ "$allocator" = before ]; then
    # An earlier build to compare with ($BEFORE_BIN), run with its own defaults.
    cp "$BEFORE_BIN" "$bin"
    server_args=""
  else
    log "building sluice ($allocator)"
    # shellcheck disable=SC2086
    cargo build --release -q -p sluice $features
    cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice" "$bin"
  fi

  scratch=$(mktemp -d -p "$SCRATCH_BASE" sluice-overload.XXXXXX)
  taskset -c $SERVER_CPU "$bin" serve --cores 1 --pin-cores false --data-dir "$scratch/data" \
    --http-addr 127.0.0.1:$PORT --binary-addr off --create-delay-ms 0 $server_args >"$OUT/server-$allocator.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  curl -s -X POST http://127.0.0.1:$PORT/ -H 'Content-Type: application/x-amz-json-1.1' \
    -H 'X-Amz-Date: 20250101T000000Z' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00' \
    -H 'X-Amz-Target: Kinesis_20131202.CreateStream' -d '{"StreamName":"storm","ShardCount":4}' >/dev/null
  sleep 0.5
  idle_kib=$(rss_kib $server_pid)

  log "$allocator: storm of $STORM_CONNECTIONS connections for ${STORM_SECONDS}s"
  peak_kib=$idle_kib
  taskset -c $CLIENT_CPU wrk -t1 -c"$STORM_CONNECTIONS" -d"${STORM_SECONDS}s" --timeout 60s \
    -s "$OUT/put_records.lua" "http://127.0.0.1:$PORT/" >"$OUT/wrk-$allocator.txt" 2>&1 &
  wrk_pid=$!
  while kill -0 $wrk_pid 2>/dev/null; do
    r=$(rss_kib $server_pid); [ "$r" -gt "$peak_kib" ] && peak_kib=$r
    sleep 0.1
  done
  wait $wrk_pid || true
  sleep "$SETTLE_SECONDS"
  after_kib=$(rss_kib $server_pid)
  wrk_json=$(grep '^WRK ' "$OUT/wrk-$allocator.txt" | sed 's/^WRK //' || echo '{}')
  metrics=$(curl -s http://127.0.0.1:$PORT/metrics | grep -E '^frontend_(requests_refused_total|requests_delayed_total|connections_refused_total)' | tr '\n' ' ' || true)

  log "$allocator: $SLOW_CLIENTS slow clients, $SLOW_PROBES timed PutRecords"
  slow_json=$(taskset -c $CLIENT_CPU python3 - "$PORT" "$SLOW_CLIENTS" "$SLOW_PROBES" <<'PY'
import http.client, json, socket, statistics, sys, time
port, slow, probes = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
held = []
for _ in range(slow):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: Kinesis_2013")
    held.append(s)
times = []
body = json.dumps({"StreamName": "storm", "PartitionKey": "probe", "Data": "cHJvYmU="})
for _ in range(probes):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.monotonic()
    c.request("POST", "/", body, {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Kinesis_20131202.PutRecord",
        "X-Amz-Date": "20250101T000000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"})
    r = c.getresponse(); r.read()
    times.append((time.monotonic() - started) * 1000)
    assert r.status == 200, r.status
    c.close()
print(json.dumps({"slow_clients": slow, "probes": probes, "put_record_p50_ms": statistics.median(times), "put_record_max_ms": max(times)}))
for s in held:
    s.close()
PY
)
  kill $server_pid 2>/dev/null || true; wait $server_pid 2>/dev/null || true; server_pid=""
  rm -rf "$scratch"; scratch=""
  python3 - "$allocator" "$STORM_CONNECTIONS" "$STORM_SECONDS" "$SETTLE_SECONDS" "$idle_kib" "$peak_kib" "$after_kib" \
    "$(stat -c %s "$OUT/put_records.json")" "$wrk_json" "$slow_json" "$metrics" >>"$OUT/overload.jsonl" <<'PY'
import json, sys
a = sys.argv
metrics = {}
fields = a[11].split()
for i in range(0, len(fields) - 1, 2):
    metrics[fields[i].split("{")[0]] = float(fields[i + 1])
print(json.dumps({
    "allocator": a[1], "connections": int(a[2]), "storm_s": int(a[3]), "settle_s": int(a[4]),
    "rss_idle_kib": int(a[5]), "rss_peak_kib": int(a[6]), "rss_after_kib": int(a[7]),
    "request_bytes": int(a[8]), "wrk": json.loads(a[9] or "{}"), "slow": json.loads(a[10] or "{}"),
    "metrics": metrics,
}))
PY
  log "$allocator: $(tail -1 "$OUT/overload.jsonl")"
done
# Leave target/release/sluice as the default build, as perf.sh and people expect it.
cargo build --release -q -p sluice
log "done: $OUT/overload.jsonl"
