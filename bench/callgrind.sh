#!/usr/bin/env bash
# bench/callgrind.sh: instructions per manifest GET, counted by valgrind's callgrind.
#
# Usage: bench/callgrind.sh [--requests N] [--log warn|info|off] [--keep DIR] [BERTH_BINARY ...]
#
#   --requests N       manifest GETs counted (default 2000), by tag, anonymous, on one kept-alive
#                      connection (one curl process)
#   --log warn         (default) as bench/run.sh runs Berth: RUST_LOG=warn, access log on but
#                      silenced by the level (requests are still recorded for the metrics)
#   --log info         RUST_LOG=info: an access log line per request
#   --log off          RUST_LOG=warn and --access-log off: nothing recorded per request
#   --keep DIR         keep each binary's callgrind output in DIR (callgrind_annotate reads it)
#   BERTH_BINARY       binaries to compare (default target/release/berth)
#
# Why: wall-clock req/s on these 2-core machines moves 10-20% with whatever else runs; the count
# of instructions executed per request does not. For each binary it starts `berth serve` under
# callgrind on an empty data dir, pushes bench/image:latest (one 1 MiB layer), turns on anonymous
# pull, warms up with 200 GETs, zeroes the counters (callgrind_control --zero), sends N GETs,
# dumps, and prints instructions per GET (all threads together).
# Needs valgrind (Debian package `valgrind`), curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=2000 LOG=warn KEEP="" BINS=()
while (($#)); do
    case $1 in
        --requests) REQUESTS=$2; shift 2 ;;
        --log) LOG=$2; shift 2 ;;
        --keep) KEEP=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) BINS+=("$1"); shift ;;
    esac
done
((${#BINS[@]})) || BINS=(target/release/berth)
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }

TMP=$(mktemp -d)
PID=""
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
ADMIN="admin:berth-callgrind-$RANDOM$RANDOM"
PY="python3 bench/bench.py"
head -c $((1024 * 1024)) /dev/urandom >"$TMP/layer"

# total_ir FILE...: the summed "summary:" / "totals:" instruction counts of callgrind outputs
total_ir() { awk '/^summary:/ { s += $2 } END { print s + 0 }' "$@"; }

measure() {
    local bin=$1 n=$2 port dir log_level args=()
    port=$((20000 + RANDOM % 20000)) dir="$TMP/data-$n"
    log_level=warn
    if [[ $LOG == info ]]; then
        log_level=info
    elif [[ $LOG == off ]] && "$bin" serve --help | grep -q -- --access-log; then
        args+=(--access-log off) # builds before the access log have no switch and no log
    fi
    mkdir -p "$dir" "$TMP/cg-$n"
    env -i PATH="$PATH" HOME="$HOME" RUST_LOG=$log_level \
        BERTH_ADMIN_USERNAME="${ADMIN%%:*}" BERTH_ADMIN_PASSWORD="${ADMIN#*:}" \
        valgrind --tool=callgrind --callgrind-out-file="$TMP/cg-$n/callgrind.out.%p" \
        "$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir" "${args[@]}" \
        >"$TMP/berth-$n.log" 2>&1 &
    PID=$!
    local u="http://127.0.0.1:$port"
    for _ in $(seq 600); do
        case $(curl -s -o /dev/null -w '%{http_code}' "$u/v2/" || true) in 200|401) break ;; esac
        kill -0 "$PID" 2>/dev/null || { tail -n 20 "$TMP/berth-$n.log" >&2; exit 1; }
        sleep 0.2
    done
    $PY push-image "$u" bench/image latest "$TMP/layer" --auth="$ADMIN" >/dev/null
    $PY berth-anonymous-pull "$u" --auth "$ADMIN" >/dev/null
    local url="$u/v2/bench/image/manifests/latest"
    local accept="Accept: application/vnd.oci.image.manifest.v1+json"
    # curl_many N: N GETs of the manifest in one curl process (one kept-alive connection)
    curl_many() {
        for _ in $(seq "$1"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url"; done >"$TMP/curl.conf"
        curl -sf -H "$accept" -K "$TMP/curl.conf"
    }
    curl_many 200
    callgrind_control --zero "$PID" >/dev/null 2>&1
    curl_many "$REQUESTS"
    callgrind_control --dump=requests "$PID" >/dev/null 2>&1
    kill -INT "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    # callgrind writes the zeroed-then-dumped part as callgrind.out.PID.1 (one file per dump)
    local dumped per
    dumped=$(total_ir "$TMP/cg-$n"/callgrind.out.*.1)
    per=$((dumped / REQUESTS))
    printf '%s\t%d instructions per manifest GET (%d GETs, --log %s)\n' "$bin" "$per" "$REQUESTS" "$LOG"
    if [[ -n $KEEP ]]; then mkdir -p "$KEEP/$n"; cp "$TMP/cg-$n"/callgrind.out.* "$KEEP/$n/"; fi
}

n=0
for bin in "${BINS[@]}"; do measure "$bin" "$n"; n=$((n + 1)); done
