#!/usr/bin/env bash
# Before/after comparison of two builds of Sluice in one run: each scenario runs against the
# "before" and the "after" server alternately, $ROUNDS times, server on CPU 0 and the load
# generator (each build's own sluice-perf) on CPU 1, and the medians and the after/before ratio
# are printed as a Markdown table. Used to check that a change costs no performance; the machine
# is noisy, so only the ratios within this one run mean anything.
#
#   scripts/ab.sh BEFORE_BIN_DIR AFTER_BIN_DIR     # each holds sluice and sluice-perf
#   ROUNDS=5 SECONDS_PER_RUN=10 scripts/ab.sh /tmp/bin-old /tmp/bin-new
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BEFORE=$1
AFTER=$2
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
SCENARIOS=${SCENARIOS:-"producer_throughput:http producer_throughput:binary get_records_throughput:http put_record_latency:http"}
OUT=${OUT:-/tmp/sluice-ab/$(date -u +%Y%m%dT%H%M%SZ)}
PORT=4596
BINARY_PORT=4597
mkdir -p "$OUT"
log() { echo "[ab.sh $(date -u +%H:%M:%S)] $*" >&2; }
server_pid=""
scratch=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$scratch" ] && rm -rf "$scratch"
  true
}
trap cleanup EXIT

run_one() { # label bin_dir scenario protocol
  local label=$1 dir=$2 scenario=$3 protocol=$4
  scratch=$(mktemp -d -p /var/tmp sluice-ab.XXXXXX)
  taskset -c 0 "$dir/sluice" serve --cores 1 --pin-cores false --data-dir "$scratch/data" \
    --http-addr 127.0.0.1:$PORT --binary-addr 127.0.0.1:$BINARY_PORT \
    --create-delay-ms 0 --delete-delay-ms 0 --update-delay-ms 0 >"$OUT/server-$label.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  local target=(--endpoint http://127.0.0.1:$PORT)
  [ "$protocol" = binary ] && target=(--binary-addr 127.0.0.1:$BINARY_PORT)
  taskset -c 1 "$dir/sluice-perf" run --quiet --label "$label" --protocol "$protocol" --out "$OUT/runs" \
    --duration-s "$SECONDS_PER_RUN" --warmup-s 1 --server-pid "$server_pid" "${target[@]}" \
    "$ROOT/perf/scenarios/$scenario.toml" >>"$OUT/summaries.jsonl" 2>>"$OUT/perf-$label.log" ||
    log "FAILED: $label $scenario $protocol"
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  rm -rf "$scratch"
  scratch=""
}

for round in $(seq "$ROUNDS"); do
  for item in $SCENARIOS; do
    scenario=${item%%:*}
    protocol=${item##*:}
    # Alternate which build goes first.
    if [ $((round % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
    for which in $order; do
      dir=$BEFORE
      [ "$which" = after ] && dir=$AFTER
      log "round $round: $which $scenario $protocol"
      run_one "$which-r$round-$scenario-$protocol" "$dir" "$scenario" "$protocol"
    done
  done
done

python3 - "$OUT/summaries.jsonl" <<'PY'
import json, statistics, sys
# Throughput is reported twice: per wall second, and per second of the server's CPU time. On a
# machine shared with other work the server does not always get its core, and records per CPU
# second is then the fairer comparison of the two builds' efficiency.
rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    s = json.loads(line)
    which, _, rest = s.get("label", "").partition("-r")
    key = rest.split("-", 1)[1] if "-" in rest else rest
    rows.setdefault(key, {}).setdefault(which, []).append(s)
def values(runs, per_cpu):
    out = []
    for s in runs:
        v = s.get("records_per_s")
        cpu = s.get("server_cpu_pct")
        if v is None:
            continue
        if per_cpu:
            if not cpu:
                continue
            v = v / (cpu / 100.0)
        out.append(v)
    return out
print("| scenario | metric | before (median) | after (median) | after / before |")
print("|---|---|---|---|---|")
for key, sides in sorted(rows.items()):
    for per_cpu, name in ((False, "records/s"), (True, "records per server CPU-second")):
        med = {w: (statistics.median(v) if (v := values(sides.get(w, []), per_cpu)) else None) for w in ("before", "after")}
        ratio = med["after"] / med["before"] if med["before"] and med["after"] else None
        fmt = lambda v: "—" if v is None else f"{v:,.0f}"
        print(f"| {key} | {name} | {fmt(med['before'])} | {fmt(med['after'])} | {'—' if ratio is None else f'{ratio:.2f}'} |")
    for pct in ("p50_ms", "p99_ms"):
        med = {}
        for w in ("before", "after"):
            v = [s["latency"][pct] for s in sides.get(w, []) if s.get("latency", {}).get(pct) is not None]
            med[w] = statistics.median(v) if v else None
        ratio = med["after"] / med["before"] if med["before"] and med["after"] else None
        fmt = lambda v: "—" if v is None else f"{v:.3f}"
        print(f"| {key} | latency {pct} | {fmt(med['before'])} | {fmt(med['after'])} | {'—' if ratio is None else f'{ratio:.2f}'} |")
PY
log "raw results in $OUT"
