#!/usr/bin/env bash
# Regenerates docs/PERFORMANCE.md in one go:
#
#   1. builds release binaries (sluice, sluice-perf);
#   2. installs the peers outside the repository (kinesalite 3.3.3 and kinesis-local 0.6.2 from
#      npm into $PEERS_DIR; fio and iperf3 from apt if missing);
#   3. records the machine (CPU, cores, memory, kernel, disk) and measures its physical limits:
#      fio O_DIRECT sequential write bandwidth (256 KiB and 1 MiB, io_uring QD8), fio 4 KiB
#      write + fdatasync latency, iperf3 loopback TCP;
#   4. starts Sluice, kinesalite and kinesis-local on loopback, each server pinned to CPU 0 and
#      the load generator to CPU 1, and runs every scenario of perf/scenarios RUNS times,
#      rotating the order of the servers from run to run;
#      Over the binary protocol each run also sends the same load into a 1,000-shard stream
#      (`producer_throughput_1000_shards`), compared with that run's 4-shard figure;
#   5. with the servers still up, on Sluice over the binary protocol: 1 KB records for
#      $ONE_KB_SECONDS s (`producer_throughput_1k`); open-loop batches at half the binary
#      `producer_throughput` median just measured (`ack_latency_half_load --rate`);
#      `put_record_latency` over both wires on a Sluice whose core polls $SPIN_US µs before it
#      sleeps (`--idle-spin-us`); and a `perf record -e cpu-clock` profile of the server during
#      `producer_throughput`;
#   6. restart: a fresh Sluice on its own data directory, VmRSS before any stream and with one
#      idle 1,000-shard stream; $RECOVERY_GB GB of 1,000 B records into 100 shards
#      (`restart_cold_read --preload-only`), one marker record per shard, kill -9, page cache
#      dropped, restart, time to /health, to the first acknowledged PutRecord and until every
#      shard's marker is readable (perf/restart.py), VmRSS, then every shard read once from
#      TRIM_HORIZON (`restart_cold_read --read-once`);
#   7. video (issue 11), on a fresh Sluice per phase with the other servers stopped:
#      perf/video/measure.py encodes a 2 Mbit/s 720p H.264 clip with 1 s fragments, then sends it
#      at real time over 1, 4, 16, 64, ... 1,024 concurrent PutMedia sessions until the acks fall
#      behind (RECEIVED/PERSISTED latency, server CPU), fetches stored HLS fragments from many
#      clients for a while, and times LIVE HLS from a fragment's last byte sent to its fetch;
#   7b. Firehose (issue 9), on its own Sluice and s3s-fs: perf/firehose/measure.py sends DirectPut
#      records for $FIREHOSE_SECONDS s per compression format (GZIP, ZSTD) and times their
#      freshness, drains a $FIREHOSE_BACKLOG_MB MB backlog, and measures the compressor alone and
#      s3s-fs's PUT rate beside them;
#   7c. Analytics (issue 10): perf/analytics/measure.py runs a filter + projection and a tumbling
#      aggregate over $ANALYTICS_RECORDS JSON records with `sluice sql run --measure` and with
#      DuckDB (threads=1) on the same CPU, and a bare JSON parse of the same records;
#   8. runs the criterion benches with short measurement times;
#   9. writes docs/PERFORMANCE.md: medians of the runs with [min–max], ratios computed within
#      the same run, and the issue-3 and issue-8 targets with how far each is from being met.
#
#   scripts/perf.sh                      # RUNS=3 SECONDS_PER_RUN=10, RECOVERY_GB=10
#   RUNS=1 SECONDS_PER_RUN=2 FIO_RUNS=1 FIO_SECONDS=1 PRELOAD_RECORDS=5000 SKIP_BENCHES=1 \
#     ONE_KB_SECONDS=3 PROFILE_SECONDS=2 RECOVERY_GB=0.2 DOC=/tmp/p.md scripts/perf.sh  # a quick dry run
#
# Knobs for the parts above (environment variables):
#   ONE_KB_SECONDS=30     measured seconds of the 1 KB ingest run    SKIP_ONE_KB=1 skips it
#   HALF_LOAD_RUNS=$RUNS  HALF_LOAD_SECONDS=$SECONDS_PER_RUN          SKIP_HALF_LOAD=1 skips it
#                         (it needs the binary producer_throughput runs of step 4)
#   SKIP_SHARDS_1000=1    no 1,000-shard runs in step 4
#   SPIN_US=10000         --idle-spin-us of the polling-core single puts   SKIP_SPIN=1 skips them
#   PROFILE_SECONDS=5     seconds sampled by perf record              SKIP_PROFILE=1 skips it
#   RECOVERY_GB=10        data written before the kill -9 (decimal GB) SKIP_RECOVERY=1 skips
#                         the fill, kill, restart and cold read (the two idle RSS figures stay)
#   SKIP_OVERLOAD=1       no scripts/overload.sh                      SKIP_BENCHES=1 no criterion
#   SKIP_VIDEO=1          no video step (7)
#   SKIP_FIREHOSE=1       no step 7b; FIREHOSE_SECONDS=15 FIREHOSE_BACKLOG_MB=100 FIREHOSE_LIMIT_SECONDS=5
#   SKIP_ANALYTICS=1      no step 7c; ANALYTICS_RECORDS=2000000 ANALYTICS_RUNS=$RUNS
#                         (7b and 7c use $VIDEO_PYTHON, which needs scripts/test's .venv: boto3,
#                         cramjam, duckdb; 7b needs s3s-fs, installed here if missing)
#   VIDEO_STREAMS=1,4,16,64,256,512,1024  PutMedia session counts, stopping after the first not sustained
#   VIDEO_CLIP_SECONDS=20 clip length (= fragments per session)      VIDEO_RESOLUTION=1280x720
#   VIDEO_SERVE_SECONDS=10 VIDEO_SERVE_CLIENTS=8  HLS fragment fetching time and client threads
#   VIDEO_G2G_FRAGMENTS=20 fragments timed through LIVE HLS          VIDEO_PYTHON=.venv/bin/python
#   ONLY_VIDEO=1          build sluice only, record the machine, measure the physical limits, run
#                         step 7 and write only the video section to $DOC (no peers installed);
#                         with SPLICE=1 that section replaces the one in the existing $DOC
#                         (docs/PERFORMANCE.md by default), the rest of which is left as it was:
#   ONLY_VIDEO=1 FIO_RUNS=1 FIO_SECONDS=2 VIDEO_STREAMS=1,4,16 VIDEO_CLIP_SECONDS=8 \
#     VIDEO_SERVE_SECONDS=3 VIDEO_G2G_FRAGMENTS=8 DOC=/tmp/video.md scripts/perf.sh   # its dry run
#   ONLY_ANALYTICS=1      the same for the Analytics section (step 7c); with SPLICE=1 it replaces
#                         that section of the existing $DOC and says which invocation it comes from
#
# Raw results (JSON, .hgrm, SVG, logs, the exact commands) go to $OUT, outside the repository.
# Dropping the page cache needs root; if it fails the doc says so. perf record needs the right
# to sample the server (root, or a low enough perf_event_paranoid); if it fails the doc says so.
# The binary-protocol scenarios run only if `sluice serve` has a `--binary-addr` flag.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
WARMUP_S=${WARMUP_S:-1}
FIO_RUNS=${FIO_RUNS:-3}
FIO_SECONDS=${FIO_SECONDS:-5}
SKIP_BENCHES=${SKIP_BENCHES:-0}
ONE_KB_SECONDS=${ONE_KB_SECONDS:-30}
SKIP_ONE_KB=${SKIP_ONE_KB:-0}
HALF_LOAD_RUNS=${HALF_LOAD_RUNS:-$RUNS}
HALF_LOAD_SECONDS=${HALF_LOAD_SECONDS:-$SECONDS_PER_RUN}
SKIP_HALF_LOAD=${SKIP_HALF_LOAD:-0}
SPIN_US=${SPIN_US:-10000}
SKIP_SPIN=${SKIP_SPIN:-0}
SKIP_SHARDS_1000=${SKIP_SHARDS_1000:-0}
PROFILE_SECONDS=${PROFILE_SECONDS:-5}
SKIP_PROFILE=${SKIP_PROFILE:-0}
RECOVERY_GB=${RECOVERY_GB:-10}
SKIP_RECOVERY=${SKIP_RECOVERY:-0}
SKIP_VIDEO=${SKIP_VIDEO:-0}
SKIP_FIREHOSE=${SKIP_FIREHOSE:-0}
FIREHOSE_SECONDS=${FIREHOSE_SECONDS:-15}
FIREHOSE_BACKLOG_MB=${FIREHOSE_BACKLOG_MB:-100}
FIREHOSE_LIMIT_SECONDS=${FIREHOSE_LIMIT_SECONDS:-5}
SKIP_ANALYTICS=${SKIP_ANALYTICS:-0}
ANALYTICS_RECORDS=${ANALYTICS_RECORDS:-2000000}
ANALYTICS_RUNS=${ANALYTICS_RUNS:-$RUNS}
ONLY_VIDEO=${ONLY_VIDEO:-0}
ONLY_ANALYTICS=${ONLY_ANALYTICS:-0}
VIDEO_PYTHON=${VIDEO_PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
PEERS_DIR=${PEERS_DIR:-/tmp/sluice-peers}
OUT=${OUT:-/tmp/sluice-perf-results/$(date -u +%Y%m%dT%H%M%SZ)}
DOC=${DOC:-docs/PERFORMANCE.md}
# Scratch space for fio and Sluice's data: on the same file system as the repository.
SCRATCH_BASE=${SCRATCH_BASE:-/var/tmp}
SLUICE_PORT=4570
BINARY_PORT=4568
KINESALITE_PORT=4569
KINESIS_LOCAL_PORT=4584
KINESIS_LOCAL_TLS_PORT=4585
IPERF_PORT=4575
SERVER_CPU=0
CLIENT_CPU=1
SCENARIOS=(producer_throughput put_record_latency end_to_end_latency fanout_consumers get_records_throughput)
# kinesis-local sustains ~110 PutRecord calls/s on one core here, below the 500 records/s
# the end-to-end scenarios send one by one: their backlog would grow for minutes and measure
# only the queue. They are skipped for it (the doc says so).
KINESIS_LOCAL_SKIP=" end_to_end_latency fanout_consumers "
# It also ingests only ~1.4k records/s, so its read scenario preloads 10,000 records per shard
# (still full 10,000-record pages) instead of 25,000, to keep the run within minutes.
KINESIS_LOCAL_PRELOAD=${KINESIS_LOCAL_PRELOAD:-40000}

mkdir -p "$OUT/runs" "$OUT/logs"
SCRATCH=$(mktemp -d -p "$SCRATCH_BASE" sluice-perf.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
log() { echo "[perf.sh $(date -u +%H:%M:%S)] $*" >&2; }
# Step 7: the video measurements (issue 11). measure.py starts its own server per phase, pinned to
# CPU 0, and pins itself to CPU 1.
run_video() {
  local V=$OUT/video
  mkdir -p "$V"
  {
    echo "path=$(command -v mediamtx || echo none)"
    echo "apt=$(apt-cache policy mediamtx 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)' || true)"
  } >"$V/mediamtx.txt"
  local knobs=()
  for k in VIDEO_STREAMS VIDEO_CLIP_SECONDS VIDEO_RESOLUTION VIDEO_SERVE_SECONDS VIDEO_SERVE_CLIENTS VIDEO_G2G_FRAGMENTS; do
    if [ -n "${!k:-}" ]; then knobs+=("$k=${!k}"); fi
  done
  echo "${knobs[*]} SLUICE_BIN=target/release/sluice VIDEO_SCRATCH=\$SCRATCH SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU python3 perf/video/measure.py \$OUT/video/video.json" \
    | sed 's/^ //' >"$V/command.txt"
  log "video: PutMedia streams, HLS serving, LIVE HLS delay (perf/video/measure.py)"
  if ! SLUICE_BIN=$SLUICE VIDEO_SCRATCH=$SCRATCH SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU \
    timeout 3600 "$VIDEO_PYTHON" perf/video/measure.py "$V/video.json" >/dev/null 2>"$OUT/logs/video.log"; then
    log "video: measure.py failed; see $OUT/logs/video.log"
    echo "video" >>"$OUT/failures.txt"
  fi
}
# Step 7b: Firehose DirectPut -> S3 (issue 9). measure.py starts its own s3s-fs (CPU 1) and Sluice
# (CPU 0), and produces from CPU 1.
run_firehose() {
  local F=$OUT/firehose
  mkdir -p "$F"
  if ! command -v s3s-fs >/dev/null; then
    log "firehose: installing s3s-fs 0.14.1 (as scripts/test does)"
    cargo install -q s3s-fs@0.14.1 --locked --features binary >"$OUT/logs/s3s-fs-install.log" 2>&1 ||
      { log "firehose: installing s3s-fs failed"; echo "firehose" >>"$OUT/failures.txt"; return; }
  fi
  echo "FIREHOSE_SECONDS=$FIREHOSE_SECONDS FIREHOSE_BACKLOG_MB=$FIREHOSE_BACKLOG_MB FIREHOSE_LIMIT_SECONDS=$FIREHOSE_LIMIT_SECONDS SLUICE_BIN=target/release/sluice SLUICE_PERF_BIN=target/release/sluice-perf python3 perf/firehose/measure.py \$OUT/firehose/firehose.json" >"$F/command.txt"
  log "firehose: DirectPut -> S3 with GZIP and ZSTD, backlog drain, compressor and S3 PUT limits (perf/firehose/measure.py)"
  if ! FIREHOSE_SECONDS=$FIREHOSE_SECONDS FIREHOSE_BACKLOG_MB=$FIREHOSE_BACKLOG_MB \
    FIREHOSE_LIMIT_SECONDS=$FIREHOSE_LIMIT_SECONDS SLUICE_BIN=$SLUICE SLUICE_PERF_BIN=$PERF timeout 1800 "$VIDEO_PYTHON" perf/firehose/measure.py "$F/firehose.json" \
    >"$OUT/logs/firehose.log" 2>&1; then
    log "firehose: measure.py failed; see $OUT/logs/firehose.log"
    echo "firehose" >>"$OUT/failures.txt"
  fi
}
# Step 7c: Kinesis Data Analytics SQL vs DuckDB on one core (issue 10).
run_analytics() {
  local A=$OUT/analytics
  mkdir -p "$A"
  echo "RECORDS=$ANALYTICS_RECORDS RUNS=$ANALYTICS_RUNS CPU=$SERVER_CPU SLUICE_BIN=target/release/sluice python3 perf/analytics/measure.py \$OUT/analytics/analytics.json" >"$A/command.txt"
  log "analytics: filter + projection and tumbling aggregate, Sluice vs DuckDB (perf/analytics/measure.py)"
  if ! RECORDS=$ANALYTICS_RECORDS RUNS=$ANALYTICS_RUNS CPU=$SERVER_CPU SLUICE_BIN=$SLUICE \
    timeout 1800 "$VIDEO_PYTHON" perf/analytics/measure.py "$A/analytics.json" >"$OUT/logs/analytics.log" 2>&1; then
    log "analytics: measure.py failed; see $OUT/logs/analytics.log"
    echo "analytics" >>"$OUT/failures.txt"
  fi
}
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
echo "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/loadavg-start.txt"

# ---------------------------------------------------------------------------------------------
log "building release binaries"
if [ "$ONLY_VIDEO" = 1 ] || [ "$ONLY_ANALYTICS" = 1 ]; then cargo build --release -q --bin sluice; else cargo build --release -q -p sluice -p sluice-perf; fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PERF=$TARGET_DIR/release/sluice-perf
SLUICE=$TARGET_DIR/release/sluice

KINESALITE_VERSION="not installed (ONLY_VIDEO or ONLY_ANALYTICS)"
KINESIS_LOCAL_VERSION=$KINESALITE_VERSION
if [ "$ONLY_VIDEO" != 1 ] && [ "$ONLY_ANALYTICS" != 1 ]; then
  log "installing peers into $PEERS_DIR (outside the repository)"
  mkdir -p "$PEERS_DIR"
  if [ ! -f "$PEERS_DIR/package.json" ]; then (cd "$PEERS_DIR" && npm init -y >/dev/null); fi
  need=()
  [ -d "$PEERS_DIR/node_modules/kinesalite" ] || need+=(kinesalite@3.3.3)
  [ -d "$PEERS_DIR/node_modules/kinesis-local" ] || need+=(kinesis-local@0.6.2)
  if [ ${#need[@]} -gt 0 ]; then
    (cd "$PEERS_DIR" && npm install --no-audit --no-fund "${need[@]}" >"$OUT/logs/npm.log" 2>&1)
  fi
  KINESALITE_VERSION=$(node -p "require('$PEERS_DIR/node_modules/kinesalite/package.json').version")
  KINESIS_LOCAL_VERSION=$(node -p "require('$PEERS_DIR/node_modules/kinesis-local/package.json').version")
fi
missing=()
command -v fio >/dev/null || missing+=(fio)
command -v iperf3 >/dev/null || missing+=(iperf3)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} with apt"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get install -y -q "${missing[@]}" >"$OUT/logs/apt.log" 2>&1 ||
    { $SUDO apt-get update -q >>"$OUT/logs/apt.log" 2>&1 && $SUDO apt-get install -y -q "${missing[@]}" >>"$OUT/logs/apt.log" 2>&1; }
fi

# ---------------------------------------------------------------------------------------------
log "recording the machine"
{
  echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "cpu_flags_of_note=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|sha_ni|sse4_2|vaes|hypervisor)$' | tr '\n' ' ')"
  echo "nproc=$(nproc)"
  echo "memory=$(free -h | awk '/^Mem:/ {print $2}')"
  echo "kernel=$(uname -sr)"
  echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "disk=$(findmnt -no SOURCE,FSTYPE -T "$SCRATCH_BASE" | tr -s ' ')"
  echo "disk_model=$(lsblk -dno NAME,SIZE,ROTA,MODEL "$(findmnt -no SOURCE -T "$SCRATCH_BASE")" 2>/dev/null | tr -s ' ' || true)"
  echo "rustc=$(rustc --version)"
  echo "node=$(node --version 2>/dev/null || echo none)"
  echo "ffmpeg=$(ffmpeg -version 2>/dev/null | head -1 | cut -d' ' -f1-3)"
  echo "fio=$(fio --version)"
  echo "iperf3=$(iperf3 --version | head -1)"
  echo "kinesalite=$KINESALITE_VERSION"
  echo "kinesis_local=$KINESIS_LOCAL_VERSION"
  echo "sluice_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
} >"$OUT/machine.txt"

# ---------------------------------------------------------------------------------------------
log "measuring physical limits (fio ${FIO_RUNS}x${FIO_SECONDS}s per test, iperf3)"
mkdir -p "$OUT/physical"
for i in $(seq "$FIO_RUNS"); do
  for bs in 256k 1m; do
    fio --name=seq-$bs --filename="$SCRATCH/fio-seq.dat" --rw=write --bs=$bs --size=4G --direct=1 \
      --ioengine=io_uring --iodepth=8 --time_based --runtime="$FIO_SECONDS" --output-format=json \
      >"$OUT/physical/fio-seq-$bs-$i.json"
    rm -f "$SCRATCH/fio-seq.dat"
  done
  fio --name=fsync4k --filename="$SCRATCH/fio-sync.dat" --rw=write --bs=4k --size=64M --overwrite=1 --direct=1 \
    --ioengine=psync --fdatasync=1 --time_based --runtime="$FIO_SECONDS" --output-format=json \
    >"$OUT/physical/fio-fdatasync-4k-$i.json"
  rm -f "$SCRATCH/fio-sync.dat"
  taskset -c $SERVER_CPU iperf3 -s -B 127.0.0.1 -p $IPERF_PORT -1 >/dev/null 2>&1 &
  iperf_pid=$!
  sleep 0.5
  taskset -c $CLIENT_CPU iperf3 -c 127.0.0.1 -p $IPERF_PORT -t "$FIO_SECONDS" -J >"$OUT/physical/iperf3-$i.json" || true
  wait $iperf_pid 2>/dev/null || true
done

if [ "$ONLY_ANALYTICS" = 1 ]; then
  run_analytics
  echo "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/loadavg-end.txt"
  log "writing the analytics section alone to $DOC"
  REPORT_ONLY=analytics python3 perf/report.py "$OUT" "$DOC" "$started_at" "$RUNS" "$SECONDS_PER_RUN" "$WARMUP_S" "$FIO_RUNS" "$FIO_SECONDS" 0
  log "done: $DOC (raw results in $OUT)"
  exit 0
fi
if [ "$ONLY_VIDEO" = 1 ]; then
  run_video
  echo "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/loadavg-end.txt"
  log "writing the video section alone to $DOC"
  REPORT_ONLY=video python3 perf/report.py "$OUT" "$DOC" "$started_at" "$RUNS" "$SECONDS_PER_RUN" "$WARMUP_S" "$FIO_RUNS" "$FIO_SECONDS" 0
  log "done: $DOC (raw results in $OUT)"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
BINARY=0
if "$SLUICE" serve --help 2>/dev/null | grep -q -- '--binary-addr'; then BINARY=1; fi
log "starting servers (binary protocol available: $BINARY)"
sluice_args=(serve --cores 1 --pin-cores false --data-dir "$SCRATCH/sluice-data" --http-addr 127.0.0.1:$SLUICE_PORT
  --create-delay-ms 0 --delete-delay-ms 0 --update-delay-ms 0 --shard-limit 10000)
[ $BINARY -eq 1 ] && sluice_args+=(--binary-addr 127.0.0.1:$BINARY_PORT)
taskset -c $SERVER_CPU "$SLUICE" "${sluice_args[@]}" >"$OUT/logs/sluice.log" 2>&1 &
pids+=($!)
# Waits (up to 10 s) until nothing accepts connections on 127.0.0.1:PORT, so that a server
# started next cannot be mistaken for the old one, nor find it still listening. (The dead
# server's connection sockets may hold the port a minute longer; Sluice's own start-up check
# tolerates those.)
wait_port_free() {
  local _
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null || return 0; sleep 0.1; done
  return 1
}
# Starts Sluice again on an empty data directory (its pid stays first in `pids`), with
# `sluice_args` and any extra arguments given. Called before
# each block of Sluice runs: at ~2 M records/s a run round writes ~6 GB that nothing deletes
# (the streams keep their 24-hour retention), and a whole invocation once filled the disk. The
# peers keep everything in memory, so only Sluice needs this.
restart_sluice() {
  kill "${pids[0]}" 2>/dev/null || true
  wait "${pids[0]}" 2>/dev/null || true
  wait_port_free $SLUICE_PORT || log "something still listens on 127.0.0.1:$SLUICE_PORT after 10 s"
  wait_port_free $BINARY_PORT || log "something still listens on 127.0.0.1:$BINARY_PORT after 10 s"
  rm -rf "$SCRATCH/sluice-data"
  taskset -c $SERVER_CPU "$SLUICE" "${sluice_args[@]}" "$@" >>"$OUT/logs/sluice.log" 2>&1 &
  pids[0]=$!
  # Ready means /health answers 200 (a port that accepts is not enough: in one invocation the
  # first request after such a check was refused).
  if ! python3 - "http://127.0.0.1:$SLUICE_PORT/health" <<'EOF'
import sys, time, urllib.request
for _ in range(300):
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=1) as answer:
            if answer.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
  then
    log "Sluice did not come back on 127.0.0.1:$SLUICE_PORT; see $OUT/logs/sluice.log"
    exit 1
  fi
}
(cd "$PEERS_DIR" && exec taskset -c $SERVER_CPU node -e \
  "require('kinesalite')({createStreamMs:0,deleteStreamMs:0,updateStreamMs:0,shardLimit:10000}).listen($KINESALITE_PORT,'127.0.0.1')") \
  >"$OUT/logs/kinesalite.log" 2>&1 &
pids+=($!)
# kinesis-local loads server.json relative to its working directory, and binds 0.0.0.0: traffic
# is only ever sent to 127.0.0.1.
(cd "$PEERS_DIR/node_modules/kinesis-local" && KINESIS_MOCK_PLAIN_PORT=$KINESIS_LOCAL_PORT \
  KINESIS_MOCK_TLS_PORT=$KINESIS_LOCAL_TLS_PORT CREATE_STREAM_DURATION=0ms DELETE_STREAM_DURATION=0ms \
  UPDATE_STREAM_DURATION=0ms SHARD_LIMIT=10000 LOG_LEVEL=WARN exec taskset -c $SERVER_CPU node main.js) \
  >"$OUT/logs/kinesis-local.log" 2>&1 &
pids+=($!)
for port in $SLUICE_PORT $KINESALITE_PORT $KINESIS_LOCAL_PORT; do
  ok=0
  for _ in $(seq 300); do if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then ok=1; break; fi; sleep 0.1; done
  [ $ok -eq 1 ] || { log "nothing listens on 127.0.0.1:$port; see $OUT/logs"; exit 1; }
done

# ---------------------------------------------------------------------------------------------
servers=(sluice kinesalite kinesis-local)
endpoint_of() {
  case $1 in
    sluice) echo http://127.0.0.1:$SLUICE_PORT ;;
    kinesalite) echo http://127.0.0.1:$KINESALITE_PORT ;;
    kinesis-local) echo http://127.0.0.1:$KINESIS_LOCAL_PORT ;;
  esac
}
pid_of() {
  local i
  for i in "${!servers[@]}"; do if [ "${servers[$i]}" = "$1" ]; then echo "${pids[$i]}"; fi; done
}
perf_run() { # label protocol endpoint scenario server-pid [more sluice-perf flags]; RUN_SECONDS
  local cmd=(taskset -c $CLIENT_CPU "$PERF" run --quiet --label "$1" --protocol "$2" --out "$OUT/runs"
    --duration-s "${RUN_SECONDS:-$SECONDS_PER_RUN}" --warmup-s "$WARMUP_S" --server-pid "$5" "${@:6}")
  if [ -n "${PRELOAD_RECORDS:-}" ]; then
    cmd+=(--preload-records "$PRELOAD_RECORDS")
  elif [[ "$1" == kinesis-local-* ]]; then
    cmd+=(--preload-records "$KINESIS_LOCAL_PRELOAD")
  fi
  if [ "$2" = binary ]; then cmd+=(--binary-addr "$3"); else cmd+=(--endpoint "$3"); fi
  # Sluice's own commit counters over the measured window (fdatasyncs, records per commit).
  if [[ "$1" == sluice-* ]]; then cmd+=(--server-metrics "http://127.0.0.1:$SLUICE_PORT/metrics"); fi
  cmd+=("perf/scenarios/$4.toml")
  echo "${cmd[*]}" | sed "s|$TARGET_DIR/|target/|g; s|$ROOT/||g; s|$OUT|\$OUT|g; s|--server-pid [0-9]*|--server-pid \$PID|" >>"$OUT/commands.txt"
  if ! timeout 600 "${cmd[@]}" >>"$OUT/runs/summaries.jsonl" 2>>"$OUT/logs/perf-$1-$4-$2.log"; then
    echo "$1 $2 $4" >>"$OUT/failures.txt"
    log "FAILED: $1 $2 $4 (see $OUT/logs/perf-$1-$4-$2.log)"
  fi
}
for run in $(seq "$RUNS"); do
  # Rotate the order so no server always runs first (or right after the disk-heavy one).
  offset=$(( (run - 1) % ${#servers[@]} ))
  order=("${servers[@]:$offset}" "${servers[@]:0:$offset}")
  for server in "${order[@]}"; do
    if [ "$server" = sluice ]; then restart_sluice; fi
    for scenario in "${SCENARIOS[@]}"; do
      if [ "$server" = kinesis-local ] && [[ "$KINESIS_LOCAL_SKIP" == *" $scenario "* ]]; then continue; fi
      log "run $run/$RUNS: $server http $scenario"
      perf_run "$server-r$run" http "$(endpoint_of "$server")" "$scenario" "$(pid_of "$server")"
    done
    if [ "$server" = sluice ] && [ $BINARY -eq 1 ]; then
      for scenario in "${SCENARIOS[@]}"; do
        log "run $run/$RUNS: sluice binary $scenario"
        perf_run "sluice-r$run" binary 127.0.0.1:$BINARY_PORT "$scenario" "$(pid_of sluice)"
      done
      if [ "$SKIP_SHARDS_1000" != 1 ]; then
        log "run $run/$RUNS: sluice binary producer_throughput_1000_shards"
        perf_run "sluice-r$run" binary 127.0.0.1:$BINARY_PORT producer_throughput_1000_shards "$(pid_of sluice)"
      fi
    fi
  done
done
for i in "${!servers[@]}"; do
  echo "${servers[$i]} $(ps -o rss= -p "${pids[$i]}" 2>/dev/null | tr -d ' ')"
done >"$OUT/server-rss.txt"

# ---------------------------------------------------------------------------------------------
# Issue 8's sustained, half-load and profile runs, on the same Sluice with the peers idle.
if [ $BINARY -eq 1 ]; then
  restart_sluice
  sluice_pid=$(pid_of sluice)
  if [ "$SKIP_ONE_KB" != 1 ]; then
    log "sluice binary producer_throughput_1k for ${ONE_KB_SECONDS}s"
    RUN_SECONDS=$ONE_KB_SECONDS perf_run sluice-r1 binary 127.0.0.1:$BINARY_PORT producer_throughput_1k "$sluice_pid"
  fi
  # Saturation is the median of this invocation's binary producer_throughput runs; half of it,
  # in batches of 500 records, is the open-loop request rate.
  saturation=$(python3 - "$OUT/runs" <<'EOF'
import glob, json, statistics, sys
xs = []
for p in glob.glob(f"{sys.argv[1]}/sluice-r*-producer_throughput-binary.json"):
    with open(p) as f:
        xs.append(json.load(f)["records_per_s"])
print(f"{statistics.median(xs):.0f}" if xs else "")
EOF
)
  if [ "$SKIP_HALF_LOAD" != 1 ] && [ -n "$saturation" ]; then
    half_rate=$(python3 -c "print(f'{$saturation / 2 / 500:.3f}')")
    echo "saturation_records_per_s=$saturation rate_requests_per_s=$half_rate" >"$OUT/half-load.txt"
    restart_sluice
    sluice_pid=$(pid_of sluice)
    for i in $(seq "$HALF_LOAD_RUNS"); do
      log "half load $i/$HALF_LOAD_RUNS: $half_rate batches/s (saturation $saturation rec/s)"
      RUN_SECONDS=$HALF_LOAD_SECONDS perf_run "sluice-r$i" binary 127.0.0.1:$BINARY_PORT ack_latency_half_load "$sluice_pid" \
        --rate "$half_rate"
    done
  fi
  if [ "$SKIP_SPIN" != 1 ]; then
    # Single puts on a core that polls for SPIN_US after its last event before it sleeps: the
    # wake-ups of a parked core (request arrival, write and fdatasync completions) cost tens to
    # hundreds of µs each on this VM. With SPIN_US above the 5 ms between puts the core never
    # sleeps, so the server's CPU is its whole core; the default (parking) rows are above.
    echo "spin_us=$SPIN_US" >"$OUT/spin.txt"
    restart_sluice --idle-spin-us "$SPIN_US"
    sluice_pid=$(pid_of sluice)
    for i in $(seq "$RUNS"); do
      for protocol in binary http; do
        if [ $protocol = binary ]; then addr=127.0.0.1:$BINARY_PORT; else addr=$(endpoint_of sluice); fi
        log "polling core ($SPIN_US µs) $i/$RUNS: sluice $protocol put_record_latency"
        perf_run "sluice-spin-r$i" $protocol "$addr" put_record_latency "$sluice_pid"
      done
    done
  fi
  if [ "$SKIP_PROFILE" != 1 ]; then
    # A run of its own: sampling slows the server, so its figures stay out of the tables. perf
    # runs on the load generator's CPU and starts once the warm-up is over.
    restart_sluice
    sluice_pid=$(pid_of sluice)
    log "profiling the server for ${PROFILE_SECONDS}s during binary producer_throughput"
    mkdir -p "$OUT/profile"
    RUN_SECONDS=$((PROFILE_SECONDS + 2)) perf_run sluice-profile binary 127.0.0.1:$BINARY_PORT producer_throughput "$sluice_pid" &
    load_pid=$!
    sleep "$(python3 -c "print($WARMUP_S + 0.5)")"
    echo "perf record -e cpu-clock -F 1999 -p \$PID -o \$OUT/profile/perf.data -- sleep $PROFILE_SECONDS" >"$OUT/profile/command.txt"
    if taskset -c $CLIENT_CPU perf record -e cpu-clock -F 1999 -p "$sluice_pid" -o "$OUT/profile/perf.data" \
      -- sleep "$PROFILE_SECONDS" >"$OUT/logs/perf-record.log" 2>&1; then
      perf report -i "$OUT/profile/perf.data" --stdio --no-children --sort symbol \
        >"$OUT/profile/report.txt" 2>"$OUT/logs/perf-report.log" || log "perf report failed; see $OUT/logs/perf-report.log"
    else
      log "perf record failed; see $OUT/logs/perf-record.log"
    fi
    wait $load_pid || true
  fi
fi
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
# Their ports must be free before the restart step starts a server on Sluice's ports again.
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
if [ $BINARY -eq 1 ]; then
  for port in $SLUICE_PORT $BINARY_PORT; do
    wait_port_free $port || log "something still listens on 127.0.0.1:$port after 10 s"
  done
fi
pids=()

# The disk's flush latency changes mode with other tenants' I/O: measure it again after the
# runs so the doc can show whether the runs saw the fast or the slow mode.
fio --name=fsync4k --filename="$SCRATCH/fio-sync.dat" --rw=write --bs=4k --size=64M --overwrite=1 --direct=1 \
  --ioengine=psync --fdatasync=1 --time_based --runtime="$FIO_SECONDS" --output-format=json \
  >"$OUT/physical/fio-fdatasync-4k-end.json"
rm -f "$SCRATCH/fio-sync.dat"

# Combined latency plots, the first run of each server on one chart.
mkdir -p "$OUT/plots"
for scenario in "${SCENARIOS[@]}"; do
  curves=()
  for server in "${servers[@]}"; do
    f="$OUT/runs/$server-r1-$scenario-http.hgrm"
    [ -f "$f" ] && curves+=("$server http=$f")
    f="$OUT/runs/$server-r1-$scenario-binary.hgrm"
    [ -f "$f" ] && curves+=("$server binary=$f")
  done
  if [ ${#curves[@]} -gt 0 ]; then
    "$PERF" plot --title "$scenario (run 1)" --out "$OUT/plots/$scenario.svg" "${curves[@]}" || true
  fi
done

# ---------------------------------------------------------------------------------------------
# Restart after kill -9, cold reads and idle memory, on a fresh Sluice with its own data.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
wait_port() {
  local _
  for _ in $(seq 3000); do if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi; sleep 0.01; done
  log "nothing listens on 127.0.0.1:$1"; return 1
}
if [ $BINARY -eq 1 ]; then
  R=$OUT/restart
  mkdir -p "$R"
  restart_args=(serve --cores 1 --pin-cores false --data-dir "$SCRATCH/restart-data" --http-addr 127.0.0.1:$SLUICE_PORT
    --binary-addr 127.0.0.1:$BINARY_PORT --create-delay-ms 0 --delete-delay-ms 0 --update-delay-ms 0 --shard-limit 10000)
  echo "taskset -c $SERVER_CPU target/release/sluice ${restart_args[*]}" | sed "s|$SCRATCH|\$SCRATCH|g" >"$R/commands.txt"
  log "restart: a fresh server, idle memory"
  taskset -c $SERVER_CPU "$SLUICE" "${restart_args[@]}" >"$OUT/logs/sluice-restart-1.log" 2>&1 &
  restart_pid=$!
  pids+=($restart_pid)
  wait_port $SLUICE_PORT
  wait_port $BINARY_PORT
  sleep 1
  echo "before_any_stream $(rss_kib $restart_pid)" >"$R/rss.txt"
  idle_cmd=(taskset -c $CLIENT_CPU "$PERF" run --quiet --protocol binary --binary-addr 127.0.0.1:$BINARY_PORT
    --stream idle-1000-shards --preload-only perf/scenarios/producer_throughput_1000_shards.toml)
  echo "${idle_cmd[*]}" | sed "s|$TARGET_DIR/|target/|g" >>"$R/commands.txt"
  "${idle_cmd[@]}" >"$R/idle-stream.json" 2>"$OUT/logs/restart-idle-stream.log" ||
    { log "restart: creating the idle stream failed"; echo "restart idle stream" >>"$OUT/failures.txt"; }
  sleep 2
  echo "one_idle_1000_shard_stream $(rss_kib $restart_pid)" >>"$R/rss.txt"
  if [ "$SKIP_RECOVERY" != 1 ]; then
    fill_records=$(python3 -c "print(round($RECOVERY_GB * 1e9 / 1000))")
    echo "recovery_gb=$RECOVERY_GB records=$fill_records" >"$R/size.txt"
    log "restart: writing $RECOVERY_GB GB ($fill_records records of 1,000 B) into 100 shards"
    fill_cmd=(taskset -c $CLIENT_CPU "$PERF" run --quiet --protocol binary --binary-addr 127.0.0.1:$BINARY_PORT
      --stream restart --preload-only --preload-records "$fill_records" perf/scenarios/restart_cold_read.toml)
    echo "${fill_cmd[*]}" | sed "s|$TARGET_DIR/|target/|g" >>"$R/commands.txt"
    if ! "${fill_cmd[@]}" >"$R/fill.json" 2>"$OUT/logs/restart-fill.log"; then
      log "restart: the fill failed; see $OUT/logs/restart-fill.log"
      echo "restart fill" >>"$OUT/failures.txt"
      SKIP_RECOVERY=1
    fi
  fi
  if [ "$SKIP_RECOVERY" != 1 ]; then
    echo "python3 perf/restart.py markers http://127.0.0.1:$SLUICE_PORT restart \$OUT/restart/markers.json" >>"$R/commands.txt"
    taskset -c $CLIENT_CPU python3 perf/restart.py markers http://127.0.0.1:$SLUICE_PORT restart "$R/markers.json" >/dev/null
    du -sb "$SCRATCH/restart-data" | cut -f1 >"$R/data-dir-bytes.txt"
    log "restart: kill -9 $restart_pid"
    echo "kill -9 \$PID; sync; echo 3 > /proc/sys/vm/drop_caches" >>"$R/commands.txt"
    kill -9 $restart_pid
    wait $restart_pid 2>/dev/null || true
    pids=()
    sync
    if (echo 3 >/proc/sys/vm/drop_caches) 2>"$R/drop-caches.err"; then
      echo dropped >"$R/drop-caches.txt"
    else
      echo "failed: $(tr '\n' ' ' <"$R/drop-caches.err")" >"$R/drop-caches.txt"
    fi
    echo "T0=\$(date +%s%N); taskset -c $SERVER_CPU target/release/sluice ${restart_args[*]} &" | sed "s|$SCRATCH|\$SCRATCH|g" >>"$R/commands.txt"
    echo "python3 perf/restart.py wait http://127.0.0.1:$SLUICE_PORT restart \$OUT/restart/markers.json \$T0 \$OUT/restart/times.json" >>"$R/commands.txt"
    t0_ns=$(date +%s%N)
    taskset -c $SERVER_CPU "$SLUICE" "${restart_args[@]}" >"$OUT/logs/sluice-restart-2.log" 2>&1 &
    restart_pid=$!
    pids+=($restart_pid)
    log "restart: waiting for writes and for every shard's last record"
    taskset -c $CLIENT_CPU python3 perf/restart.py wait http://127.0.0.1:$SLUICE_PORT restart "$R/markers.json" "$t0_ns" "$R/times.json" \
      >/dev/null 2>"$OUT/logs/restart-wait.log" || { log "restart: timing failed; see $OUT/logs/restart-wait.log"; echo "restart wait" >>"$OUT/failures.txt"; }
    echo "after_kill_9_and_recovery $(rss_kib $restart_pid)" >>"$R/rss.txt"
    log "restart: cold read of every shard"
    read_cmd=(taskset -c $CLIENT_CPU "$PERF" run --quiet --label sluice-restart --protocol binary --binary-addr 127.0.0.1:$BINARY_PORT
      --out "$R" --server-pid "$restart_pid" --stream restart --read-once --preload-records 0 perf/scenarios/restart_cold_read.toml)
    echo "${read_cmd[*]}" | sed "s|$TARGET_DIR/|target/|g; s|$OUT|\$OUT|g; s|--server-pid [0-9]*|--server-pid \$PID|" >>"$R/commands.txt"
    "${read_cmd[@]}" >"$R/cold-read.jsonl" 2>"$OUT/logs/restart-cold-read.log" ||
      { log "restart: the cold read failed; see $OUT/logs/restart-cold-read.log"; echo "restart cold read" >>"$OUT/failures.txt"; }
    echo "after_cold_read $(rss_kib $restart_pid)" >>"$R/rss.txt"
  fi
  kill $restart_pid 2>/dev/null || true
  wait $restart_pid 2>/dev/null || true
  pids=()
  rm -rf "$SCRATCH/restart-data"
fi

# ---------------------------------------------------------------------------------------------
if [ "$SKIP_VIDEO" != 1 ]; then run_video; fi
if [ "$SKIP_FIREHOSE" != 1 ]; then run_firehose; fi
if [ "$SKIP_ANALYTICS" != 1 ]; then run_analytics; fi

# ---------------------------------------------------------------------------------------------
if [ "$SKIP_BENCHES" != 1 ]; then
  log "running criterion benches"
  touch "$OUT/bench-marker"
  cargo bench -q --bench protocols_json --bench core_routing --bench io_segment_append -- \
    --warm-up-time 1 --measurement-time 2 >"$OUT/logs/bench.log" 2>&1 || log "cargo bench failed; see $OUT/logs/bench.log"
  mkdir -p "$OUT/criterion"
  # No criterion directory when every bench failed to build: the report then says so, and the
  # script must not stop here.
  [ -d "$TARGET_DIR/criterion" ] && find "$TARGET_DIR/criterion" -path '*/new/estimates.json' -newer "$OUT/bench-marker" | while read -r f; do
    d=$(dirname "$f")
    name=$(echo "$d" | sed "s|^$TARGET_DIR/criterion/||; s|/new\$||; s|/|__|g")
    cp "$f" "$OUT/criterion/$name.estimates.json"
    [ -f "$d/benchmark.json" ] && cp "$d/benchmark.json" "$OUT/criterion/$name.benchmark.json"
  done
fi
echo "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/loadavg-end.txt"

# ---------------------------------------------------------------------------------------------
if [ "${SKIP_OVERLOAD:-0}" != 1 ]; then
  log "overload: storms and slow clients per allocator (scripts/overload.sh)"
  OUT="$OUT" scripts/overload.sh 2>"$OUT/logs/overload.log" || log "overload.sh failed; see $OUT/logs/overload.log"
fi

# ---------------------------------------------------------------------------------------------
log "writing $DOC"
python3 perf/report.py "$OUT" "$DOC" "$started_at" "$RUNS" "$SECONDS_PER_RUN" "$WARMUP_S" "$FIO_RUNS" "$FIO_SECONDS" "$BINARY"
log "done: $DOC (raw results in $OUT)"
