#!/usr/bin/env bash
# Measures Sluice's Kinesis HTTP API side by side with kinesalite on this machine, in one run:
# each server pinned to CPU 0, the load generator (sluice-perf) pinned to CPU 1, the scenarios
# alternating between the two servers RUNS times. Prints a Markdown table of medians and ratios
# and keeps the raw JSON under perf/results/<timestamp>/.
#
#   scripts/perf-http.sh            # RUNS=3 SECONDS_PER_RUN=10 by default
#
# kinesalite is installed from npm into $PEERS_DIR (outside the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
PEERS_DIR=${PEERS_DIR:-/tmp/sluice-peers}
SLUICE_PORT=4570
KINESALITE_PORT=4569

cargo build --release -q -p sluice -p sluice-perf
if [ ! -d "$PEERS_DIR/node_modules/kinesalite" ]; then
  mkdir -p "$PEERS_DIR"
  (cd "$PEERS_DIR" && npm init -y >/dev/null && npm install --no-audit --no-fund kinesalite@3.3.3 >/dev/null 2>&1)
fi

OUT=perf/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
DATA=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DATA"; }
trap cleanup EXIT

taskset -c 0 target/release/sluice serve --cores 1 --pin-cores false --data-dir "$DATA" \
  --http-addr 127.0.0.1:$SLUICE_PORT --create-delay-ms 0 --delete-delay-ms 0 >"$OUT/sluice.log" 2>&1 &
pids+=($!)
(cd "$PEERS_DIR" && exec taskset -c 0 node -e "require('kinesalite')({createStreamMs:0,deleteStreamMs:0,updateStreamMs:0,shardLimit:100}).listen($KINESALITE_PORT,'127.0.0.1')") >"$OUT/kinesalite.log" 2>&1 &
pids+=($!)
for port in $SLUICE_PORT $KINESALITE_PORT; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

perf() { taskset -c 1 target/release/sluice-perf "$@" 2>/dev/null; }
for run in $(seq "$RUNS"); do
  for target in sluice:$SLUICE_PORT kinesalite:$KINESALITE_PORT; do
    name=${target%%:*}; port=${target##*:}; ep=http://127.0.0.1:$port
    perf --endpoint "$ep" --stream "pr$run" put-records --record-bytes 100 --batch 500 --connections 8 --seconds "$SECONDS_PER_RUN" >"$OUT/$name-put-records-$run.json"
    perf --endpoint "$ep" --stream "p1$run" put-record --record-bytes 100 --rate 200 --count 2000 >"$OUT/$name-put-record-$run.json"
    perf --endpoint "$ep" --stream "gr$run" get-records --preload 100000 --record-bytes 100 >"$OUT/$name-get-records-$run.json"
  done
done

python3 - "$OUT" <<'PY'
import json, glob, os, statistics, sys
out = sys.argv[1]
def load(name, scenario):
    return [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{name}-{scenario}-*.json"))]
def med(xs): return statistics.median(xs) if xs else float("nan")
rows = []
def row(label, scenario, get, fmt, higher_is_better=True):
    s = med([get(r) for r in load("sluice", scenario)]); k = med([get(r) for r in load("kinesalite", scenario)])
    ratio = (s / k) if higher_is_better else (k / s)
    rows.append(f"| {label} | {fmt(s)} | {fmt(k)} | {ratio:,.1f}x |")
row("PutRecords 500 x 100 B, 8 connections: records/s", "put-records", lambda r: r["records_per_s"], lambda v: f"{v:,.0f}")
row("PutRecords payload MB/s", "put-records", lambda r: r["payload_mb_per_s"], lambda v: f"{v:,.1f}")
row("PutRecords call p50 (ms)", "put-records", lambda r: r["call_latency"]["p50_ms"], lambda v: f"{v:.2f}", False)
row("PutRecord at 200/s: p50 (ms)", "put-record", lambda r: r["latency"]["p50_ms"], lambda v: f"{v:.3f}", False)
row("PutRecord at 200/s: p99 (ms)", "put-record", lambda r: r["latency"]["p99_ms"], lambda v: f"{v:.3f}", False)
row("PutRecord at 200/s: p99.9 (ms)", "put-record", lambda r: r["latency"]["p99_9_ms"], lambda v: f"{v:.3f}", False)
row("GetRecords drain (Limit 10000): records/s", "get-records", lambda r: r["records_per_s"], lambda v: f"{v:,.0f}")
runs = len(load("sluice", "put-records"))
print(f"Medians of {runs} runs; ratio = how many times better Sluice is.\n")
print("| metric | Sluice (1 core, fsync) | kinesalite 3.3.3 | ratio |")
print("|---|---|---|---|")
print("\n".join(rows))
PY
echo "raw results: $OUT"
