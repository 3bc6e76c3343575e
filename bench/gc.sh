#!/usr/bin/env bash
# bench/gc.sh: garbage collection (issue 14): time and peak memory of a collection over
# 100,000 blobs with 10% garbage, and pull/push throughput during a collection against none;
# CNCF distribution 2.8's offline `garbage-collect` (Debian's `docker-registry`) over the same
# content for comparison.
#
# Usage: bench/gc.sh [--runs N] [--quick] [--no-build] [--wait-quiet MIN] [--out FILE] [--keep-tmp]
#
#   --runs N     runs per measurement (default 3, quick 1; medians are reported)
#   --quick      smoke mode: 10,000 blobs (1,000 garbage), windows of at most 3 s; a few minutes
#   --no-build   do not run `cargo build --release -p berth` (use target/release/berth as is)
#   --wait-quiet MIN  on a shared machine: before each phase and each run, wait (up to MIN
#                minutes each time) until processes outside this script use under 10% of the
#                CPUs; then go on anyway (the report shows the load per phase)
#   --out FILE   raw runs + table (default bench/results/gc-<timestamp>.txt, copied to
#                bench/results/gc-latest.txt)
#   --keep-tmp   keep the temp dir (stores, configs, server logs) for inspection
#
# What it does, once per invocation: fills a fresh Berth (and a fresh distribution) over HTTP
# with the same content: 10,000 OCI images of 1 config + 9 layers (distinct blobs of 1-4 KiB
# random bytes; quick: 1,000 images) in 100 repositories (quick: 10), then DELETEs every 10th
# tag's manifest by digest, so 10,000 of the 100,000 blobs are garbage (plus gc/pull:latest, a
# 64 MiB layer for the pull workload). Berth runs with `--gc-enabled false --gc-grace 0s`:
# no scheduled collection, and the unreferenced blobs are garbage at once. The registries are
# then stopped, and every run below starts on a fresh `cp -a` of that store (then `sync`).
#   1. Berth: POST /berth/v1/gc/runs, poll GET .../{id} every 50 ms until finished_at: wall
#      time, time before the first blob is removed, the process's CPU time and disk writes,
#      RSS before and peak during (VmHWM reset with clear_refs + 20 ms VmRSS sampling, after
#      one untimed admin login); the run must report exactly the garbage's blobs and bytes,
#      and afterwards HEADs of a sample answer 200 (kept) and 404 (garbage).
#   2. distribution: `docker-registry garbage-collect` (offline: no server runs) on its own
#      copy under /usr/bin/time -v: wall time, max RSS, CPU; its count must be the garbage
#      plus the deleted manifests (distribution keeps manifests as blobs); sample checked on
#      disk. Online throughput during its collection is n/a: it needs the registry stopped.
#      Its store is written directly in its filesystem layout with the same content (the same
#      files, byte for byte, that its own pushes and DELETEs leave; its HTTP path costs ~5 ms
#      of CPU per blob), then served by distribution and checked against Berth's.
#   3. Throughput, Berth, each workload for a window of W s (at most 10, quick 3, and at most
#      80% of step 1's collection time), once on a store with no collection and once while a
#      collection of the store runs (started just before the workloads; a workload's figure
#      counts only while the collection runs, and a workload the collection did not cover
#      for half its window is run again on a fresh copy):
#        pull        4 threads GETting the 64 MiB blob (anonymous), MB/s
#        manifest    wrk -t2 -c64 manifest GET by tag (anonymous), req/s and p99
#        push        3 threads pushing distinct 16 MiB blobs (one POST ?digest= each), MB/s
#        push-small  8 threads pushing distinct 4 KiB blobs, blobs/s
#      The collection must still remove exactly the garbage (nothing pushed meanwhile).
# A monitor samples the CPU used by processes outside this script (other builds and tests on
# the machine) and the report prints it per phase, with a warning when a phase was noisy.
# Everything started here is stopped on exit (trap), and the temp dir is removed.
# Needs: curl, wrk, python3 (standard library), /usr/bin/time; docker-registry for the
# comparison row (skipped if missing). Disk: about 2 GiB under $BENCH_TMPDIR for the stores,
# plus what the push windows write (up to ~1 GB per second of window).
# Environment: BENCH_TMPDIR (parent of the temp dir, default /tmp), BERTH_RUST_LOG (default warn).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="python3 $HERE/bench.py"   # CPU monitor, quiet wait, anonymous pull, RSS
GC="python3 $HERE/gc.py"      # populate, the measurements, the report

RUNS=""
QUICK=0
BUILD=1
OUT=""
KEEP_TMP=0
WAIT_QUIET=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --out) OUT="$2"; shift 2 ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        --wait-quiet) WAIT_QUIET="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gc.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ $QUICK == 1 ]]; then
    IMAGES=1000; REPOS=10; WINDOW_MAX=3; RUNS="${RUNS:-1}"; NEED_MB=4000
else
    IMAGES=10000; REPOS=100; WINDOW_MAX=10; RUNS="${RUNS:-3}"; NEED_MB=10000
fi
LAYERS=9
WORKLOADS=pull,manifest,push,push-small
for n in "$RUNS" "$WAIT_QUIET"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "gc.sh: expected a number, got '$n'" >&2; exit 2; }
done
[[ $RUNS -ge 1 ]] || { echo "gc.sh: --runs must be at least 1" >&2; exit 2; }

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ------------------------------------------------------------------------------------------------
# processes and cleanup
# ------------------------------------------------------------------------------------------------
declare -A PIDS=()
TMP=""
cleanup() {
    local rc=$?
    set +e
    for name in "${!PIDS[@]}"; do kill -TERM "${PIDS[$name]}" 2>/dev/null; done
    for name in "${!PIDS[@]}"; do wait "${PIDS[$name]}" 2>/dev/null; done
    [[ $rc != 0 && -n ${RAW:-} && -f $RAW ]] && log "failed (exit $rc); raw runs so far: $RAW"
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ $KEEP_TMP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# stop NAME: TERM the process, wait for it (KILL after 10 s)
stop() {
    local name=$1 pid=${PIDS[$1]:-}
    [[ -z $pid ]] && return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$name]"
}

# wait_ready NAME URL LOG: until URL answers 200 or 401 (60 s), failing early if the process died
wait_ready() {
    local name=$1 url=$2 logf=$3
    for _ in $(seq 600); do
        if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
            log "$name exited during start-up; its log:"; tail -n 30 "$logf" >&2; return 1
        fi
        case $(curl -s -o /dev/null -w '%{http_code}' "$url" || true) in 200|401) return 0 ;; esac
        sleep 0.1
    done
    log "$name not ready after 60 s at $url; its log:"; tail -n 30 "$logf" >&2; return 1
}

# start_berth DATADIR: Berth on $PORT with a known admin password, no scheduled collection,
# no grace (an unreferenced blob is garbage at once); its log is appended to $TMP/berth.log
BERTH_ADMIN="admin:berth-bench-$RANDOM$RANDOM$RANDOM"
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
start_berth() {
    local dir=$1
    mkdir -p "$dir"
    echo "--- start on $dir $(date -Is)" >>"$TMP/berth.log"
    env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${BERTH_RUST_LOG:-warn}" \
        BERTH_ADMIN_USERNAME="${BERTH_ADMIN%%:*}" BERTH_ADMIN_PASSWORD="${BERTH_ADMIN#*:}" \
        "$BERTH" serve --listen "127.0.0.1:$PORT" --data-dir "$dir" \
        --gc-enabled false --gc-grace 0s >>"$TMP/berth.log" 2>&1 &
    PIDS[berth]=$!
    wait_ready berth "$URL/v2/" "$TMP/berth.log"
}

# dist_config NAME DATADIR: a distribution config (shipped defaults, delete enabled, as run.sh)
dist_config() {
    cat >"$TMP/$1.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $2
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$PORT
  secret: berth-bench-not-a-secret
EOF
    echo "$TMP/$1.yml"
}

# copy_store SRC DST: a fresh copy of a filled store (its server stopped), flushed to disk
copy_store() {
    local t0=$SECONDS
    rm -rf "$2"
    cp -a "$1" "$2"
    sync
    log "copied $(basename "$1") in $((SECONDS - t0)) s"
}

record() { echo "$1 $2 $3 $4" >>"$RAW"; }       # measurement server run value
note() { echo "# $*" >>"$RAW"; log "$*"; }
field() { local v=${2#*"$1"=}; echo "${v%% *}"; } # field KEY "k=v k2=v2": the value of KEY
kib_to_mib() { echo "$(($1 / 1024)).$(($1 % 1024 * 10 / 1024))"; }
# quiet: with --wait-quiet, wait until other processes leave the CPUs (mostly) to us
quiet() {
    [[ $WAIT_QUIET == 0 ]] && return 0
    local pct
    pct=$($PY wait-quiet --root $$ --window 2 --max-wait "$((WAIT_QUIET * 60))")
    [[ ${pct%.*} -ge 10 ]] && log "other processes still use $pct% of the CPUs; going on"
    return 0
}
phase() {
    quiet
    echo "$(date +%s.%N) $1" >>"$TMP/phases"
    log "phase: $1 (loadavg $(cut -d' ' -f1-3 /proc/loadavg))"
}

# ------------------------------------------------------------------------------------------------
# build, set-up
# ------------------------------------------------------------------------------------------------
cd "$ROOT"
BERTH="$ROOT/target/release/berth"
if [[ $BUILD == 1 ]]; then
    log "cargo build --release -p berth (may wait for the cargo lock)"
    cargo build --release -p berth
fi
if [[ ! -x $BERTH ]]; then
    echo "gc.sh: $BERTH missing (build failed or --no-build)" >&2; exit 1
fi
command -v wrk >/dev/null || { echo "gc.sh: wrk missing (apt-get install wrk)" >&2; exit 1; }
DIST=0
command -v docker-registry >/dev/null && DIST=1

mkdir -p "$HERE/results"
STAMP=$(date +%Y%m%d-%H%M%S)
OUT="${OUT:-$HERE/results/gc-$STAMP.txt}"
RAW="$OUT.raw"
: >"$RAW"

TMP=$(mktemp -d -p "${BENCH_TMPDIR:-/tmp}" berth-gc-bench.XXXXXX)
FREE_MB=$(($(df --output=avail -k "$TMP" | tail -1) / 1024))
if [[ $FREE_MB -lt $NEED_MB ]]; then
    echo "gc.sh: only $FREE_MB MB free under $TMP; this needs about $NEED_MB MB" >&2; exit 1
fi
# CPU used by everything outside this script's process tree, to tell a quiet run from a noisy one
$PY cpu-monitor --root $$ --out "$TMP/cpu.log" &
PIDS[cpu-monitor]=$!
phase setup

note "berth gc benchmark $(date -Is) on $(hostname), $(nproc) CPUs, $(uname -r)"
note "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit') $(git -C "$ROOT" status --porcelain -- crates 2>/dev/null | wc -l) changed files under crates/"
note "berth binary: $BERTH built $(date -r "$BERTH" -Is), sha256 $(sha256sum "$BERTH" | cut -c1-12)"
# run a copy: other builds on the machine may replace target/release/berth during the run
cp "$BERTH" "$TMP/berth-bin"
BERTH="$TMP/berth-bin"
if [[ $DIST == 1 ]]; then
    note "distribution: $(docker-registry --version 2>&1 | head -1)"
else
    note "distribution: docker-registry not installed; its row is skipped (apt-get install docker-registry)"
fi
note "temp dir $TMP on $(df --output=source "$TMP" | tail -1), $FREE_MB MB free"

head -c $((64 << 20)) /dev/urandom >"$TMP/pull-blob"
head -c $((128 << 20)) /dev/urandom >"$TMP/push-pool"

# ------------------------------------------------------------------------------------------------
# the stores: the same content in Berth and in distribution, filled once
# ------------------------------------------------------------------------------------------------
phase populate-berth
t0=$SECONDS
start_berth "$TMP/berth-store"
$PY berth-anonymous-pull "$URL" --auth "$BERTH_ADMIN" >/dev/null
out=$($GC populate "$URL" --auth "$BERTH_ADMIN" --kind berth --images $IMAGES --layers $LAYERS \
    --repos $REPOS --pull-blob "$TMP/pull-blob" --plan "$TMP/berth-plan.json")
stop berth
note "berth store: $out; filled in $((SECONDS - t0)) s, $(du -sm "$TMP/berth-store" | cut -f1) MB on disk"
GARBAGE=$(field garbage "$out")
GARBAGE_BYTES=$(field garbage_bytes "$out")
BLOBS=$(field blobs "$out")
note "images=$IMAGES layers=$LAYERS repos=$REPOS blobs=$BLOBS garbage=$GARBAGE garbage_bytes=$GARBAGE_BYTES"

if [[ $DIST == 1 ]]; then
    # distribution spends ~5 ms of CPU per blob over HTTP (100,000 blobs: minutes of the two
    # cores), so its store is written straight into its layout, byte for byte what its own
    # pushes and DELETEs leave (checked against an HTTP-filled store when this was written:
    # identical trees); then a distribution serves it and must agree with Berth's plan
    phase populate-dist
    t0=$SECONDS
    out=$($GC dist-layout "$TMP/dist-store" --images $IMAGES --layers $LAYERS --repos $REPOS \
        --pull-blob "$TMP/pull-blob")
    [[ $(field garbage "$out") == "$GARBAGE" && $(field garbage_bytes "$out") == "$GARBAGE_BYTES" ]] ||
        { echo "gc.sh: the two stores differ: $out" >&2; exit 1; }
    cfg=$(dist_config dist-serve "$TMP/dist-store")
    env -i PATH="$PATH" HOME="$HOME" docker-registry serve "$cfg" >"$TMP/dist.log" 2>&1 &
    PIDS[dist]=$!
    wait_ready dist "$URL/v2/" "$TMP/dist.log"
    $GC dist-check "$URL" --plan "$TMP/berth-plan.json" >/dev/null
    stop dist
    note "distribution store: $out; written in $((SECONDS - t0)) s, $(du -sm "$TMP/dist-store" | cut -f1) MB on disk"
fi

# ------------------------------------------------------------------------------------------------
# 1-2. one collection of the store: Berth (online), distribution (offline)
# ------------------------------------------------------------------------------------------------
phase collect
for r in $(seq "$RUNS"); do
    order="berth dist"; [[ $((r % 2)) == 0 ]] && order="dist berth"
    for reg in $order; do
        quiet
        if [[ $reg == berth ]]; then
            copy_store "$TMP/berth-store" "$TMP/run"
            start_berth "$TMP/run"
            out=$($GC collect "$URL" --auth "$BERTH_ADMIN" --pid "${PIDS[berth]}" --plan "$TMP/berth-plan.json")
            log "berth collection run $r: $out"
            $GC verify "$URL" --plan "$TMP/berth-plan.json" >/dev/null
            stop berth
            secs=$(field secs "$out")
            record gc_secs berth "$r" "$secs"
            record gc_rate berth "$r" "$(python3 -c "print(f'{$GARBAGE / $secs:.1f}')")"
            record gc_first berth "$r" "$(field first_removed_s "$out")"
            record gc_cpu berth "$r" "$(field cpu_s "$out")"
            record gc_write berth "$r" "$(field write_mb "$out")"
            record gc_freed berth "$r" "$(python3 -c "print($(field bytes "$out") / 1e6)")"
            record rss_before berth "$r" "$(kib_to_mib "$(field before_kib "$out")")"
            record rss_peak berth "$r" "$(kib_to_mib "$(field peak_kib "$out")")"
        elif [[ $DIST == 1 ]]; then
            copy_store "$TMP/dist-store" "$TMP/run"
            cfg=$(dist_config dist-gc "$TMP/run")
            out=$($GC dist-gc "$cfg" --plan "$TMP/berth-plan.json" --data "$TMP/run")
            log "distribution collection run $r: $out"
            $GC verify-dist "$TMP/run" --plan "$TMP/berth-plan.json" >/dev/null
            secs=$(field secs "$out")
            record gc_secs dist "$r" "$secs"
            record gc_rate dist "$r" "$(python3 -c "print(f'{$GARBAGE / $secs:.1f}')")"
            record gc_cpu dist "$r" "$(field cpu_s "$out")"
            record rss_peak dist "$r" "$(kib_to_mib "$(field peak_kib "$out")")"
        fi
        rm -rf "$TMP/run"
    done
done

# ------------------------------------------------------------------------------------------------
# 3. throughput with no collection and during one
# ------------------------------------------------------------------------------------------------
phase prepare-pushes
GC_MED=$(awk '$1 == "gc_secs" && $2 == "berth" { print $4 }' "$RAW" | sort -g |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
WINDOW=$(python3 -c "print(max(1, min($WINDOW_MAX, int(0.8 * $GC_MED))))")
# distinct blobs for the push windows (slices of one random file, hashed now, untimed)
$GC prepare-pushes "$TMP/push-pool" --big-count $((WINDOW * 80 + 10)) \
    --small-count $((WINDOW * 3000 + 100)) --out "$TMP/pushes.json" >/dev/null
note "window=$WINDOW s per workload (collection median $GC_MED s); pull_clients=4 push_clients=3 small_push_clients=8"

phase throughput
for r in $(seq "$RUNS"); do
    order="none during"; [[ $((r % 2)) == 0 ]] && order="during none"
    for mode in $order; do
        left=$WORKLOADS
        tries=0
        while [[ -n $left ]]; do
            tries=$((tries + 1))
            if [[ $tries -gt 4 ]]; then
                note "run $r: no collection long enough for $left in 4 tries; left out"
                break
            fi
            quiet
            copy_store "$TMP/berth-store" "$TMP/run"
            start_berth "$TMP/run"
            log "run $r, $mode: $left"
            left=$($GC throughput "$URL" --auth "$BERTH_ADMIN" --plan "$TMP/berth-plan.json" \
                --pushes "$TMP/pushes.json" --workloads "$left" --seconds "$WINDOW" \
                --mode "$mode" --run "$r" --raw "$RAW")
            stop berth
            rm -rf "$TMP/run"
        done
    done
done

phase end
stop cpu-monitor
$PY cpu-summary "$TMP/cpu.log" "$TMP/phases" | while read -r line; do note "$line"; done
if grep -qiE 'panic|error' "$TMP/berth.log" 2>/dev/null; then
    note "berth logged errors:"
    grep -ihE 'panic|error' "$TMP/berth.log" | sort | uniq -c | sort -rn | head -5 |
        while read -r line; do note "  $line"; done
fi

TABLE=$($GC report "$RAW")
{ echo "$TABLE"; echo; echo "raw runs (measurement server|mode run value):"; cat "$RAW"; } >"$OUT"
rm -f "$RAW"
cp "$OUT" "$HERE/results/gc-latest.txt"
echo "$TABLE"
log "results: $OUT (and bench/results/gc-latest.txt)"
