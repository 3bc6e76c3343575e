#!/usr/bin/env bash
# bench/data_endpoint.sh: blob pulls through the data endpoint's signed 307 redirect, next to
# direct pulls from the login server (issue 6: the redirect at least 95% of a direct pull).
#
# Usage: bench/data_endpoint.sh [--runs N] [--quick] [--no-build] [--wait-quiet MIN] [--out FILE] [--keep-tmp]
#
#   --runs N     runs per measurement (default 5; medians are reported)
#   --quick      smoke mode: 64 MiB instead of 1 GiB, 4 MiB instead of 64 MiB for the concurrent
#                pulls (one GET per client and per run), 2 runs (unless --runs is given)
#   --no-build   do not run `cargo build --release -p berth` (use target/release/berth as is)
#   --wait-quiet MIN  on a shared machine: before measuring, and again before each phase and
#                each run, wait (up to MIN minutes each time) until processes outside this script
#                use under 10% of the CPUs; then go on anyway (the report shows the load per phase)
#   --out FILE   raw runs + table (default bench/results/data-endpoint-<timestamp>.txt, copied
#                to bench/results/data-endpoint-latest.txt)
#   --keep-tmp   keep the temp dir (data dir, server log) for inspection
#
# What it does: builds Berth (release) and starts one Berth with a data endpoint
# (`--listen 127.0.0.1:P --data-endpoint-listen 127.0.0.3:Q`), anonymous pull switched on so
# pulls carry no credentials (as in bench/run.sh). Pushes, as the admin, a 1 GiB, a 64 MiB and
# a 4 KiB random blob (each one monolithic POST ?digest= with the body). Then, per run, in an
# order that rotates from run to run, three variants of the same blob GET:
#   direct    the login server's blob URL with data_endpoint_enabled off: 200 with the bytes
#   redirect  the same URL with data_endpoint_enabled on, `curl -L`: 307, then the signed URL
#   signed    the 307's Location fetched directly (the data endpoint alone, no redirect step),
#             to tell the cost of the extra round trip from the data endpoint's own speed
# and measures:
#   1. 1 GiB pull, warm cache, one curl client (3 GETs in a row per run), MB/s
#   2. 64 parallel curl clients pulling the 64 MiB blob (3 times each), aggregate MB/s
#   3. 200 sequential GETs of the 4 KiB blob (one curl, kept-alive connections): total time,
#      p50 and p99 per GET; the redirect costs a second request (a reference, no target)
# and, for each, Berth's CPU time (all its threads, from /proc/PID/task/*/schedstat) per GB
# served or per GET: where a gap comes from, the round trip or the serving.
# The setting is switched with `PATCH /berth/v1/registry {"data_endpoint_enabled": ...}` (admin
# Basic) before each variant, and checked: a blob GET must answer 200 (off) or 307 to the data
# endpoint (on). Every GET is checked for status 200, byte count and number of redirects; the
# blobs are checked once by digest through each path before measuring.
# Output: a table of medians and redirect/direct ratios against the 95% target; raw runs in --out.
# A monitor samples the CPU used by processes outside this script (other builds and tests on the
# machine) and the report prints it per phase, with a warning when a phase was noisy.
# Everything started here is stopped on exit (trap), and the temp dir is removed.
# Environment: BENCH_TMPDIR (parent of the temp dir, default /tmp), BERTH_RUST_LOG (default warn).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="python3 $HERE/bench.py"          # CPU monitor, quiet wait, pushes, anonymous pull
DE="python3 $HERE/data_endpoint.py"  # toggling, the measurements, the report

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
        *) echo "data_endpoint.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ $QUICK == 1 ]]; then
    BIG=$((64 << 20)); SMALL=$((4 << 20)); PER_CLIENT=1; PULL_REPEAT=1; RUNS="${RUNS:-2}"
else
    BIG=$((1 << 30)); SMALL=$((64 << 20)); PER_CLIENT=3; PULL_REPEAT=3; RUNS="${RUNS:-5}"
fi
TINY=4096
COUNT=200
CLIENTS=64
for n in "$RUNS" "$WAIT_QUIET"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "data_endpoint.sh: expected a number, got '$n'" >&2; exit 2; }
done
[[ $RUNS -ge 1 ]] || { echo "data_endpoint.sh: --runs must be at least 1" >&2; exit 2; }

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

free_port() { python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"; }

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

# wait_ready NAME URL CODES: until URL answers one of CODES (30 s), failing early if it died
wait_ready() {
    local name=$1 url=$2 codes=$3
    for _ in $(seq 300); do
        if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
            log "$name exited during start-up; its log:"; tail -n 30 "$TMP/$name.log" >&2; return 1
        fi
        [[ " $codes " == *" $(curl -s -o /dev/null -w '%{http_code}' "$url" || true) "* ]] && return 0
        sleep 0.1
    done
    log "$name not ready after 30 s at $url; its log:"; tail -n 30 "$TMP/$name.log" >&2; return 1
}

record() { echo "$1 $2 $3 $4" >>"$RAW"; }       # measurement variant run value
note() { echo "# $*" >>"$RAW"; log "$*"; }
field() { local v=${2#*"$1"=}; echo "${v%% *}"; } # field KEY "k=v k2=v2": the value of KEY
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
# rotate N ITEMS...: the items rotated left by N (alternates run order between variants)
rotate() {
    local n=$1; shift
    local a=("$@") k=${#a[@]} i
    for ((i = 0; i < k; i++)); do printf '%s ' "${a[$(((i + n) % k))]}"; done
}

# ------------------------------------------------------------------------------------------------
# build, data, the server
# ------------------------------------------------------------------------------------------------
cd "$ROOT"
BERTH="$ROOT/target/release/berth"
if [[ $BUILD == 1 ]]; then
    log "cargo build --release -p berth (may wait for the cargo lock)"
    cargo build --release -p berth
fi
if [[ ! -x $BERTH ]]; then
    echo "data_endpoint.sh: $BERTH missing (build failed or --no-build)" >&2; exit 1
fi

mkdir -p "$HERE/results"
STAMP=$(date +%Y%m%d-%H%M%S)
OUT="${OUT:-$HERE/results/data-endpoint-$STAMP.txt}"
RAW="$OUT.raw"
: >"$RAW"

TMP=$(mktemp -d -p "${BENCH_TMPDIR:-/tmp}" berth-data-endpoint.XXXXXX)
mkdir -p "$TMP/files"
# CPU used by everything outside this script's process tree, to tell a quiet run from a noisy one
$PY cpu-monitor --root $$ --out "$TMP/cpu.log" &
PIDS[cpu-monitor]=$!
phase setup
BIGF="$TMP/files/big"; SMALLF="$TMP/files/small"; TINYF="$TMP/files/tiny"
log "generating test data in $TMP ($BIG + $SMALL + $TINY bytes of random data)"
head -c "$BIG" /dev/urandom >"$BIGF"
head -c "$SMALL" /dev/urandom >"$SMALLF"
head -c "$TINY" /dev/urandom >"$TINYF"
digest() { echo "sha256:$(openssl dgst -sha256 -r "$1" | cut -d' ' -f1)"; }
BIG_D=$(digest "$BIGF"); SMALL_D=$(digest "$SMALLF"); TINY_D=$(digest "$TINYF")

note "berth data endpoint benchmark $(date -Is) on $(hostname), $(nproc) CPUs, $(uname -r)"
note "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit') $(git -C "$ROOT" status --porcelain -- crates 2>/dev/null | wc -l) changed files under crates/"
note "berth binary: $BERTH built $(date -r "$BERTH" -Is), sha256 $(sha256sum "$BERTH" | cut -c1-12)"
# run a copy: other builds on the machine may replace target/release/berth during the run
cp "$BERTH" "$TMP/berth-bin"
BERTH="$TMP/berth-bin"
note "curl: $(curl --version | head -1 | cut -d' ' -f1-2)"
note "runs=$RUNS big=$BIG small=$SMALL tiny=$TINY (bytes) clients=$CLIENTS per_client=$PER_CLIENT pull_repeat=$PULL_REPEAT count=$COUNT"
note "temp dir $TMP on $(df --output=source "$TMP" | tail -1)"

PORT=$(free_port 127.0.0.1)
DPORT=$(free_port 127.0.0.3)
BASE="http://127.0.0.1:$PORT"
DATA_URL="http://127.0.0.3:$DPORT"
# Berth has no auth-off switch: a known admin password for pushes and the management API
ADMIN="admin:berth-bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
log "starting berth serve on $BASE, data endpoint on $DATA_URL"
mkdir -p "$TMP/berth-data"
env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${BERTH_RUST_LOG:-warn}" \
    BERTH_ADMIN_USERNAME="${ADMIN%%:*}" BERTH_ADMIN_PASSWORD="${ADMIN#*:}" \
    "$BERTH" serve --listen "127.0.0.1:$PORT" --data-dir "$TMP/berth-data" \
    --data-endpoint-listen "127.0.0.3:$DPORT" >"$TMP/berth.log" 2>&1 &
PIDS[berth]=$!
wait_ready berth "$BASE/v2/" "200 401"
wait_ready berth "$DATA_URL/" "404"
$PY berth-anonymous-pull "$BASE" --auth "$ADMIN" >/dev/null

REPO=bench/blob
declare -A SIZE=([big]=$BIG [small]=$SMALL [tiny]=$TINY)
declare -A PATHS=([big]="/v2/$REPO/blobs/$BIG_D" [small]="/v2/$REPO/blobs/$SMALL_D" [tiny]="/v2/$REPO/blobs/$TINY_D")
for b in big small tiny; do
    f="$TMP/files/$b"; d=$(digest "$f")
    v=$($PY push-mono "$BASE" "$REPO" "$f" "$d" --single-post "--auth=$ADMIN")
    record push_mono "$b" 1 "$v"
    log "pushed the $b blob (${SIZE[$b]} bytes, monolithic POST ?digest=): $v MB/s"
done

# set_variant VARIANT: the data endpoint setting the variant needs (checked with a probe GET)
set_variant() {
    local on=--on
    [[ $1 == direct ]] && on=--off
    $DE toggle "$BASE" --auth "$ADMIN" $on --probe "${PATHS[tiny]}" --data-url "$DATA_URL" >/dev/null
}
# url VARIANT BLOB / redirects VARIANT: what to GET, and how many redirects that takes
url() {
    case $1 in
        direct|redirect) echo "$BASE${PATHS[$2]}" ;;
        signed) $DE signed-url "$BASE" "${PATHS[$2]}" ;; # a fresh URL (they live 20-30 min)
    esac
}
redirects() { [[ $1 == redirect ]] && echo 1 || echo 0; }

# every path serves the right bytes (and warms the page cache)
VARIANTS=(direct redirect signed)
for v in "${VARIANTS[@]}"; do
    set_variant "$v"
    for b in big small tiny; do
        f="$TMP/files/$b"
        follow=""; [[ $v == redirect ]] && follow=--follow
        $DE verify "$(url "$v" "$b")" --digest "$(digest "$f")" --size "${SIZE[$b]}" $follow >/dev/null
    done
done
note "every blob checked by digest through all three paths; a blob GET answers 307 to $DATA_URL/berth/data/v1/... when the data endpoint is on"

# ------------------------------------------------------------------------------------------------
# 1. one client, big blob, warm page cache (one untimed GET per variant first)
# ------------------------------------------------------------------------------------------------
phase pulls-1-client
for r in $(seq "$RUNS"); do
    quiet
    for v in $(rotate "$r" "${VARIANTS[@]}"); do
        set_variant "$v"
        u=$(url "$v" big)
        [[ $r == 1 ]] && $DE pull-one "$u" --size "$BIG" --redirects "$(redirects "$v")" >/dev/null
        out=$($DE pull-one "$u" --size "$BIG" --repeat "$PULL_REPEAT" --redirects "$(redirects "$v")" \
            --pid "${PIDS[berth]}")
        record pull_one "$v" "$r" "$(field mbps "$out")"
        record cpu_pull_one "$v" "$r" "$(field cpu_ms_per_gb "$out")"
        [[ $v == redirect ]] && record redirect_ms "$v" "$r" "$(field redirect_ms "$out")"
        log "pull 1 client $v run $r: $out"
    done
done

# ------------------------------------------------------------------------------------------------
# 2. 64 concurrent clients
# ------------------------------------------------------------------------------------------------
phase pulls-64-clients
for r in $(seq "$RUNS"); do
    quiet
    for v in $(rotate "$r" "${VARIANTS[@]}"); do
        set_variant "$v"
        u=$(url "$v" small)
        [[ $r == 1 ]] && $DE pull-one "$u" --size "$SMALL" --redirects "$(redirects "$v")" >/dev/null
        out=$($DE pull-many "$u" --size "$SMALL" --clients "$CLIENTS" --per-client "$PER_CLIENT" \
            --redirects "$(redirects "$v")" --pid "${PIDS[berth]}")
        record pull_many "$v" "$r" "$(field mbps "$out")"
        record cpu_pull_many "$v" "$r" "$(field cpu_ms_per_gb "$out")"
        log "pull $CLIENTS clients $v run $r: $out"
    done
done

# ------------------------------------------------------------------------------------------------
# 3. the redirect's own cost: sequential small GETs
# ------------------------------------------------------------------------------------------------
phase small-gets
for r in $(seq "$RUNS"); do
    quiet
    for v in $(rotate "$r" "${VARIANTS[@]}"); do
        set_variant "$v"
        u=$(url "$v" tiny)
        # untimed warm-up of the same shape (the connections of a curl do not outlive it)
        $DE latency "$u" --size "$TINY" --count 20 --redirects "$(redirects "$v")" >/dev/null
        out=$($DE latency "$u" --size "$TINY" --count "$COUNT" --redirects "$(redirects "$v")" \
            --pid "${PIDS[berth]}")
        record small_total "$v" "$r" "$(field total_ms "$out")"
        record small_p50 "$v" "$r" "$(field p50_us "$out")"
        record small_p99 "$v" "$r" "$(field p99_us "$out")"
        record cpu_small "$v" "$r" "$(field cpu_us "$out")"
        log "$COUNT small GETs $v run $r: $out"
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

TABLE=$($DE report "$RAW")
{ echo "$TABLE"; echo; echo "raw runs (measurement variant run value):"; cat "$RAW"; } >"$OUT"
rm -f "$RAW"
cp "$OUT" "$HERE/results/data-endpoint-latest.txt"
echo "$TABLE"
log "results: $OUT (and bench/results/data-endpoint-latest.txt)"
