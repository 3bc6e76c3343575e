#!/usr/bin/env bash
# bench/run.sh: Berth vs CNCF distribution 2.8 (Debian's `docker-registry`) vs nginx, side by side.
#
# Usage: bench/run.sh [--runs N] [--quick] [--no-build] [--wait-quiet MIN] [--out FILE] [--keep-tmp]
#
#   --runs N     runs per measurement (default 5; medians are reported)
#   --quick      smoke mode: 64 MiB instead of 1 GiB, 4 MiB instead of 64 MiB for the concurrent
#                pulls, 2 s manifest load, 2 runs (unless --runs is given); under ~2 minutes
#   --no-build   do not run `cargo build --release -p berth` (use target/release/berth as is)
#   --wait-quiet MIN  on a shared machine: before measuring, and again before each phase and
#                each run, wait (up to MIN minutes each time) until processes outside this script
#                use under 10% of the CPUs; then go on anyway (the report shows the load per phase)
#   --out FILE   raw runs + table (default bench/results/<timestamp>.txt, copied to latest.txt)
#   --keep-tmp   keep the temp dir (data dirs, configs, server logs) for inspection
#
# What it does: builds Berth (release), generates a random test blob into a temp dir on the same
# disk as the registries' data dirs, and measures over HTTP on 127.0.0.1:
#   1. 1 GiB monolithic push (Berth: one POST ?digest= with the body; distribution: POST + PUT)
#   2. 1 GiB chunked push, 16 MiB PATCHes with Content-Range, closing PUT ?digest=
#   3. hashing ceilings on the same file, warm page cache: openssl dgst -sha256, sha256sum;
#      for reference, dd of the file to the data disk, without and with fsync
#   4. 1 GiB pull, warm cache, one curl client (3 GETs in a row per run); Berth, distribution,
#      nginx (2 configs: sendfile on; sendfile off with 1 MiB buffers)
#   5. 64 parallel curl clients pulling a 64 MiB blob (3 times each): aggregate MB/s
#   6. manifest GET by tag, wrk -c64 -t2 -d10s --latency: req/s and p99
#   7. RSS: idle after start (and its anonymous part, RssAnon: without the code pages mapped
#      in), peak (VmHWM reset via clear_refs + 20 ms VmRSS sampling) during the 64 concurrent
#      pulls and during the manifest load, and RSS after everything
# Each push run starts a fresh registry process on an empty data dir, so every run really
# receives, hashes and writes the whole blob. Run order alternates between servers per run.
# Both registries use local-filesystem storage and log warnings/errors only. distribution runs
# without auth; Berth always has auth, so it gets a known admin password, pushes authenticate as
# the admin (Basic; one untimed request first so the Argon2 check is cached), and anonymous pull
# is switched on so pulls and manifest GETs carry no credentials, as against distribution.
# Output: a table of medians and Berth/distribution and Berth/ceiling ratios; raw runs in --out.
# A monitor samples the CPU used by processes outside this script (other builds and tests on the
# machine) and the report prints it per phase, with a warning when a phase was noisy.
# Everything started here is stopped on exit (trap), and the temp dir is removed.
# Environment: BENCH_TMPDIR (parent of the temp dir, default /tmp), BERTH_RUST_LOG (default warn),
# BERTH_BIN (the berth binary to measure, e.g. an older build to compare; implies --no-build).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="python3 $HERE/bench.py"

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
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ $QUICK == 1 ]]; then
    BIG=$((64 << 20)); SMALL=$((4 << 20)); PER_CLIENT=1; PULL_REPEAT=1; MANIFEST_SECS=2; RUNS="${RUNS:-2}"
else
    BIG=$((1 << 30)); SMALL=$((64 << 20)); PER_CLIENT=3; PULL_REPEAT=3; MANIFEST_SECS=10; RUNS="${RUNS:-5}"
fi
CHUNK=$((16 << 20))
CLIENTS=64

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
on_signal() { exit "$1"; }
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

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

# wait_ready NAME URL: until URL answers 200 or 401 (30 s), failing early if the process died
wait_ready() {
    local name=$1 url=$2
    for _ in $(seq 300); do
        if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
            log "$name exited during start-up; its log:"; tail -n 30 "$TMP/$name.log" >&2; return 1
        fi
        case $(curl -s -o /dev/null -w '%{http_code}' "$url" || true) in 200|401) return 0 ;; esac
        sleep 0.1
    done
    log "$name not ready after 30 s at $url; its log:"; tail -n 30 "$TMP/$name.log" >&2; return 1
}

# start_berth NAME PORT DATADIR. Berth has no auth-off switch: it runs with a known admin
# password, pushes send it (Basic), and anonymous pull is switched on for pulls and manifests.
BERTH_ADMIN="admin:berth-bench-$RANDOM$RANDOM$RANDOM"
start_berth() {
    local name=$1 port=$2 dir=$3
    mkdir -p "$dir"
    env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${BERTH_RUST_LOG:-warn}" \
        BERTH_ADMIN_USERNAME="${BERTH_ADMIN%%:*}" BERTH_ADMIN_PASSWORD="${BERTH_ADMIN#*:}" \
        "$BERTH" serve --listen "127.0.0.1:$port" --data-dir "$dir" >"$TMP/$name.log" 2>&1 &
    PIDS[$name]=$!
    wait_ready "$name" "http://127.0.0.1:$port/v2/"
}
# push_auth REGISTRY: the credentials option for bench.py's push commands
push_auth() { [[ $1 == berth ]] && echo "--auth=$BERTH_ADMIN" || echo "--auth="; }

# start_dist NAME PORT DATADIR (env -i: docker-registry reads REGISTRY_* variables as config)
start_dist() {
    local name=$1 port=$2 dir=$3
    mkdir -p "$dir"
    cat >"$TMP/$name.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
  secret: berth-bench-not-a-secret
EOF
    env -i PATH="$PATH" HOME="$HOME" docker-registry serve "$TMP/$name.yml" >"$TMP/$name.log" 2>&1 &
    PIDS[$name]=$!
    wait_ready "$name" "http://127.0.0.1:$port/v2/"
}

# start_nginx NAME PORT on|off: serves $TMP/data; "off" = read/write with 1 MiB buffers
start_nginx() {
    local name=$1 port=$2 sendfile=$3 d="$TMP/$1"
    mkdir -p "$d/tmp"
    local bufs=""
    [[ $sendfile == off ]] && bufs="output_buffers 2 1m;"
    cat >"$d/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile $sendfile;
  tcp_nopush on;
  $bufs
  keepalive_requests 100000;
  client_body_temp_path $d/tmp;
  proxy_temp_path $d/tmp;
  fastcgi_temp_path $d/tmp;
  uwsgi_temp_path $d/tmp;
  scgi_temp_path $d/tmp;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$port;
    location / { root $TMP/data; }
  }
}
EOF
    nginx -c "$d/nginx.conf" -p "$d" >"$TMP/$name.log" 2>&1 &
    PIDS[$name]=$!
    for _ in $(seq 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/small" || true) == 200 ]] && return 0
        kill -0 "${PIDS[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    log "nginx $name did not start:"; tail -n 20 "$TMP/$name.log" "$d/error.log" >&2 || true; return 1
}

# start_registry KIND NAME PORT DIR RUN: start, then record the idle RSS 1 s later (before any
# request with credentials); for Berth, also switch on anonymous pull (the first admin login) and
# record the RSS after it
start_registry() {
    local kind=$1 name=$2 port=$3 dir=$4 run=$5
    case "$kind" in berth) start_berth "$name" "$port" "$dir" ;; dist) start_dist "$name" "$port" "$dir" ;; esac
    sleep 1
    record rss_idle "$kind" "$run" "$(rss_mib "${PIDS[$name]}")"
    record rss_anon_idle "$kind" "$run" "$(kib_to_mib "$($PY rss --anon "${PIDS[$name]}")")"
    if [[ $kind == berth ]]; then
        $PY berth-anonymous-pull "http://127.0.0.1:$port" --auth "$BERTH_ADMIN" >/dev/null
        sleep 0.2
        record rss_after_login berth "$run" "$(rss_mib "${PIDS[$name]}")"
    fi
}

# rotate N ITEMS...: the items rotated left by N (alternates run order between servers)
rotate() {
    local n=$1; shift
    local a=("$@") k=${#a[@]} i
    for ((i = 0; i < k; i++)); do printf '%s ' "${a[$(((i + n) % k))]}"; done
}

kib_to_mib() { echo "$(($1 / 1024)).$(($1 % 1024 * 10 / 1024))"; }
rss_mib() { kib_to_mib "$($PY rss "$1")"; }
mib() { local k=${1#*peak_kib=}; kib_to_mib "${k%% *}"; } # the peak_kib=N field of a result line
record() { echo "$1 $2 $3 $4" >>"$RAW"; }       # measurement server run value
note() { echo "# $*" >>"$RAW"; log "$*"; }
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
# build, data
# ------------------------------------------------------------------------------------------------
cd "$ROOT"
BERTH="${BERTH_BIN:-$ROOT/target/release/berth}"
REGISTRIES=(berth dist)
if [[ $BUILD == 1 && -z ${BERTH_BIN:-} ]]; then
    log "cargo build --release -p berth (may wait for the cargo lock)"
    cargo build --release -p berth
fi
if [[ ! -x $BERTH ]]; then
    echo "run.sh: $BERTH missing (build failed or --no-build)" >&2; exit 1
fi

mkdir -p "$HERE/results"
STAMP=$(date +%Y%m%d-%H%M%S)
OUT="${OUT:-$HERE/results/$STAMP.txt}"
RAW="$OUT.raw"
: >"$RAW"

TMP=$(mktemp -d -p "${BENCH_TMPDIR:-/tmp}" berth-bench.XXXXXX)
mkdir -p "$TMP/data"
chmod 755 "$TMP" "$TMP/data" # nginx workers run as www-data
# CPU used by everything outside this script's process tree, to tell a quiet run from a noisy one
$PY cpu-monitor --root $$ --out "$TMP/cpu.log" &
PIDS[cpu-monitor]=$!
phase setup
BIGF="$TMP/data/big"; SMALLF="$TMP/data/small"; LAYERF="$TMP/data/layer"
log "generating test data in $TMP ($BIG + $SMALL bytes of random data)"
head -c "$BIG" /dev/urandom >"$BIGF"
head -c "$SMALL" /dev/urandom >"$SMALLF"
head -c 32768 /dev/urandom >"$LAYERF"
BIG_D="sha256:$(openssl dgst -sha256 -r "$BIGF" | cut -d' ' -f1)"
SMALL_D="sha256:$(openssl dgst -sha256 -r "$SMALLF" | cut -d' ' -f1)"

note "berth benchmark $(date -Is) on $(hostname), $(nproc) CPUs, $(uname -r)"
note "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit') $(git -C "$ROOT" status --porcelain -- crates 2>/dev/null | wc -l) changed files under crates/"
note "berth binary: $BERTH built $(date -r "$BERTH" -Is), sha256 $(sha256sum "$BERTH" | cut -c1-12)"
# run a copy: other builds on the machine may replace target/release/berth during the run
cp "$BERTH" "$TMP/berth-bin"
BERTH="$TMP/berth-bin"
note "distribution: $(docker-registry --version 2>&1 | head -1); nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
note "runs=$RUNS big=$BIG small=$SMALL chunk=$CHUNK (bytes) clients=$CLIENTS per_client=$PER_CLIENT pull_repeat=$PULL_REPEAT manifest_seconds=$MANIFEST_SECS"
note "temp dir $TMP on $(df --output=source "$TMP" | tail -1)"

# ------------------------------------------------------------------------------------------------
# 3. hashing ceilings (first: they need the machine quiet, and the pushes compare against them)
# ------------------------------------------------------------------------------------------------
phase hashing
cat "$BIGF" >/dev/null
for r in $(seq "$RUNS"); do
    record hash_openssl ceiling "$r" "$($PY hash "$BIGF" openssl)"
    record hash_sha256sum ceiling "$r" "$($PY hash "$BIGF" sha256sum)"
done
# reference, not a target: what writing the blob costs this disk (Berth fsyncs blobs it stores)
phase disk-writes
for r in $(seq "$RUNS"); do
    record disk_write ceiling "$r" "$($PY disk-write "$BIGF" "$TMP/dd-test")"
    record disk_write_fsync ceiling "$r" "$($PY disk-write "$BIGF" "$TMP/dd-test" --fsync)"
done

# ------------------------------------------------------------------------------------------------
# 1-2. pushes: a fresh registry on an empty data dir for every single push
# ------------------------------------------------------------------------------------------------
phase pushes
PUSH_PORT=$(free_port)
for r in $(seq "$RUNS"); do
    quiet
    for kind in mono chunked; do
        for reg in $(rotate "$r" "${REGISTRIES[@]}"); do
            name="push-$reg"
            rm -rf "$TMP/$name-data"; sync
            start_registry "$reg" "$name" "$PUSH_PORT" "$TMP/$name-data" "$r$kind"
            url="http://127.0.0.1:$PUSH_PORT"
            if [[ $kind == mono ]]; then
                mode=--post-put; [[ $reg == berth ]] && mode=--single-post
                v=$($PY push-mono "$url" "bench/push-$r" "$BIGF" "$BIG_D" $mode "$(push_auth "$reg")")
            else
                v=$($PY push-chunked "$url" "bench/push-$r" "$BIGF" "$BIG_D" --chunk "$CHUNK" "$(push_auth "$reg")")
            fi
            record "push_$kind" "$reg" "$r" "$v"
            log "push $kind $reg run $r: $v MB/s"
            stop "$name"
            rm -rf "$TMP/$name-data"
        done
    done
done

# ------------------------------------------------------------------------------------------------
# long-running servers for pulls, manifests, memory
# ------------------------------------------------------------------------------------------------
phase pull-setup
cp "$SMALLF" "$TMP/data/small.tmp" && mv "$TMP/data/small.tmp" "$TMP/data/small"
declare -A PORT=() URL_BIG=() URL_SMALL=()
for s in "${REGISTRIES[@]}" nginx-sendfile nginx-rw; do PORT[$s]=$(free_port); done
start_nginx nginx-sendfile "${PORT[nginx-sendfile]}" on
start_nginx nginx-rw "${PORT[nginx-rw]}" off
for s in nginx-sendfile nginx-rw; do
    URL_BIG[$s]="http://127.0.0.1:${PORT[$s]}/big"; URL_SMALL[$s]="http://127.0.0.1:${PORT[$s]}/small"
done
for reg in "${REGISTRIES[@]}"; do
    start_registry "$reg" "$reg" "${PORT[$reg]}" "$TMP/$reg-data" serve
    u="http://127.0.0.1:${PORT[$reg]}"
    $PY push-blob "$u" bench/pull "$BIGF" "$BIG_D" "$(push_auth "$reg")" >/dev/null
    $PY push-blob "$u" bench/pull "$SMALLF" "$SMALL_D" "$(push_auth "$reg")" >/dev/null
    MANIFEST_DIGEST=$($PY push-image "$u" bench/image latest "$LAYERF" "$(push_auth "$reg")")
    URL_BIG[$reg]="$u/v2/bench/pull/blobs/$BIG_D"; URL_SMALL[$reg]="$u/v2/bench/pull/blobs/$SMALL_D"
done
note "image manifest pushed: bench/image:latest = $MANIFEST_DIGEST"
SERVERS=("${REGISTRIES[@]}" nginx-sendfile nginx-rw)

# 6. manifests (before the pulls, so the pulls' buffers do not sit in the peak)
phase manifests
for r in $(seq "$RUNS"); do
    quiet
    for reg in $(rotate "$r" "${REGISTRIES[@]}"); do
        out=$($PY manifest "http://127.0.0.1:${PORT[$reg]}/v2/bench/image/manifests/latest" \
            --seconds "$MANIFEST_SECS" --pid "${PIDS[$reg]}" --expect-digest "$MANIFEST_DIGEST")
        log "manifest $reg run $r: $out"
        rps=${out#rps=}; rps=${rps%% *}; p99=${out#*p99_ms=}; p99=${p99%% *}
        record manifest_rps "$reg" "$r" "$rps"
        record manifest_p99 "$reg" "$r" "$p99"
        record rss_peak_manifest "$reg" "$r" "$(mib "$out")"
    done
done

# 4. one client, 1 GiB, warm page cache (one untimed GET per server first)
phase pulls-1-client
for s in "${SERVERS[@]}"; do curl -sS --fail -o /dev/null "${URL_BIG[$s]}"; done
for r in $(seq "$RUNS"); do
    quiet
    for s in $(rotate "$r" "${SERVERS[@]}"); do
        v=$($PY pull-one "${URL_BIG[$s]}" --size "$BIG" --repeat "$PULL_REPEAT")
        record pull_one "$s" "$r" "$v"
        log "pull 1 client $s run $r: $v MB/s"
    done
done

# 5. 64 concurrent clients
phase pulls-64-clients
for s in "${SERVERS[@]}"; do curl -sS --fail -o /dev/null "${URL_SMALL[$s]}"; done
for r in $(seq "$RUNS"); do
    quiet
    for s in $(rotate "$r" "${SERVERS[@]}"); do
        pid=0; [[ $s != nginx-* ]] && pid=${PIDS[$s]}
        out=$($PY pull-many "${URL_SMALL[$s]}" --size "$SMALL" --clients "$CLIENTS" \
            --per-client "$PER_CLIENT" --pid "$pid")
        log "pull $CLIENTS clients $s run $r: $out"
        v=${out#mbps=}; v=${v%% *}
        record pull_many "$s" "$r" "$v"
        if [[ $pid != 0 ]]; then
            record rss_peak_pulls "$s" "$r" "$(mib "$out")"
            k=${out#*before_kib=}; record rss_before_pulls "$s" "$r" "$(kib_to_mib "${k%% *}")"
        fi
    done
done

# 7. memory once everything is done and idle again
sleep 2
for reg in "${REGISTRIES[@]}"; do
    record rss_after "$reg" 1 "$(rss_mib "${PIDS[$reg]}")"
done
phase end
stop cpu-monitor
$PY cpu-summary "$TMP/cpu.log" "$TMP/phases" | while read -r line; do note "$line"; done

for reg in "${REGISTRIES[@]}"; do
    if grep -qiE 'panic|error' "$TMP/$reg.log" "$TMP/push-$reg.log" 2>/dev/null; then
        note "$reg logged errors:"
        grep -ihE 'panic|error' "$TMP/$reg.log" "$TMP/push-$reg.log" 2>/dev/null | sort | uniq -c | sort -rn | head -5 |
            while read -r line; do note "  $line"; done
    fi
done

TABLE=$($PY report "$RAW")
{ echo "$TABLE"; echo; echo "raw runs (measurement server run value):"; cat "$RAW"; } >"$OUT"
rm -f "$RAW"
cp "$OUT" "$HERE/results/latest.txt"
echo "$TABLE"
log "results: $OUT (and bench/results/latest.txt)"
