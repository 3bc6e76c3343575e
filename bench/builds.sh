#!/usr/bin/env bash
# bench/builds.sh: two builds of Berth side by side on manifest GETs by tag, the measurement
# whose 5% a run of run.sh cannot see on these 2-core machines (wrk shares the cores, and
# three runs of one build in a row drift with the machine). Both builds serve at once, each
# on its own data directory holding the same image; every round runs wrk against each in
# turn, the order alternating, so drift hits both alike. Prints each build's idle RSS after
# start (VmRSS, and its anonymous part), then per round req/s and the ratio, then medians.
#
# Usage: bench/builds.sh OLD_BIN NEW_BIN [--rounds N] [--seconds S] [--out FILE]
#
#   OLD_BIN, NEW_BIN  the two `berth` binaries (e.g. a worktree's target/release/berth)
#   --rounds N        rounds (default 8; medians are reported)
#   --seconds S       length of each wrk run (default 8)
#   --out FILE        raw rounds + summary (default bench/results/builds-<timestamp>.txt,
#                     copied to bench/results/builds-latest.txt)
#
# Both run with RUST_LOG=warn, as in run.sh (a build with an access log writes none), and
# anonymous pull on, so wrk sends no credentials. `wrk -t2 -c64 --latency` through
# bench.py's `manifest`, which checks the answer's digest before each run.
# Needs: curl, wrk, python3. Environment: BENCH_TMPDIR (default /tmp).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="python3 $HERE/bench.py"

ROUNDS=8
SECONDS_PER_RUN=8
OUT=""
BINS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "builds.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) BINS+=("$1"); shift ;;
    esac
done
[[ ${#BINS[@]} == 2 ]] || { echo "builds.sh: give two binaries, OLD_BIN NEW_BIN (see --help)" >&2; exit 2; }
for bin in "${BINS[@]}"; do
    [[ -x "$bin" ]] || { echo "builds.sh: no binary at $bin" >&2; exit 2; }
done
for tool in curl wrk python3; do
    command -v "$tool" >/dev/null || { echo "builds.sh: needs $tool" >&2; exit 2; }
done

TMP=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/berth-builds-bench.XXXXXX")
mkdir -p "$ROOT/bench/results"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/bench/results/builds-$STAMP.txt}
: >"$OUT"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

log() { echo "$*" | tee -a "$OUT"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ADMIN="admin:bench-admin-password"
NAMES=(old new)
URLS=()
DIGESTS=()
head -c 4096 /dev/urandom >"$TMP/layer"
log "# bench/builds.sh $STAMP: rounds=$ROUNDS seconds=$SECONDS_PER_RUN"
log "# machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
for i in 0 1; do
    port=$(free_port)
    url="http://127.0.0.1:$port"
    RUST_LOG=warn BERTH_ADMIN_PASSWORD=${ADMIN#admin:} "${BINS[$i]}" serve \
        --listen "127.0.0.1:$port" --data-dir "$TMP/data-$i" >"$TMP/log-$i" 2>&1 &
    PIDS+=($!)
    # /v2/ answers (200 or 401) once the listener is up; older builds have no /healthz.
    for _ in $(seq 300); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$url/v2/" || true)
        [[ $code == 200 || $code == 401 ]] && break
        sleep 0.1
    done
    [[ $code == 200 || $code == 401 ]] || { echo "builds.sh: ${BINS[$i]} did not start:" >&2; cat "$TMP/log-$i" >&2; exit 1; }
    sleep 1
    rss=$($PY rss "${PIDS[$i]}") anon=$($PY rss --anon "${PIDS[$i]}")
    log "${NAMES[$i]}: ${BINS[$i]}: idle RSS $(mib "$rss") MiB, of it anonymous $(mib "$anon") MiB"
    DIGESTS+=("$($PY push-image "$url" bench/image latest "$TMP/layer" --auth "$ADMIN")")
    $PY berth-anonymous-pull "$url" --auth "$ADMIN" >/dev/null
    URLS+=("$url/v2/bench/image/manifests/latest")
done

declare -A RPS=()
RATIOS=""
for r in $(seq "$ROUNDS"); do
    if (( r % 2 )); then order=(0 1); else order=(1 0); fi
    declare -A got=()
    for i in "${order[@]}"; do
        out=$($PY manifest "${URLS[$i]}" --seconds "$SECONDS_PER_RUN" --pid "${PIDS[$i]}" \
            --expect-digest "${DIGESTS[$i]}")
        rps=${out#rps=}; rps=${rps%% *}
        got[$i]=$rps
        RPS[$i]+="$rps "
        log "round $r ${NAMES[$i]}: $out"
    done
    ratio=$(python3 -c "print(f'{${got[1]} / ${got[0]}:.3f}')")
    RATIOS+="$ratio "
    log "round $r new/old: $ratio"
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
old=$(echo "${RPS[0]}" | median); new=$(echo "${RPS[1]}" | median)
log ""
log "manifest GET by tag, wrk -t2 -c64, $ROUNDS alternating rounds of ${SECONDS_PER_RUN}s:"
log "  old: median $old req/s"
log "  new: median $new req/s"
log "  new/old: $(python3 -c "print(f'{$new / $old:.3f}')") (ratio of medians), $(echo "$RATIOS" | median) (median of the rounds' ratios)"
log "# load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
cp "$OUT" "$ROOT/bench/results/builds-latest.txt"
