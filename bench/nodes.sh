#!/usr/bin/env bash
# bench/nodes.sh: scale-out (issue 16), side by side in one run:
#   (a) 1 node on SQLite + local disk (the embedded defaults),
#   (b) 1 node on PostgreSQL + S3 (s3s-fs), clients talking to the node,
#   (c) 2 nodes and (d) 3 nodes on PostgreSQL + S3 behind nginx (round robin, the README's
#       "Running several nodes" configuration), clients talking to nginx.
#
# Usage: bench/nodes.sh [--quick] [--runs N] [--no-build] [--configs a,b,c,d]
#                       [--wait-quiet MIN] [--out FILE] [--keep-tmp]
#
#   --quick      smoke mode: small blobs, short windows, 1 run; about 2-3 minutes
#   --runs N     runs per measurement (default 3, quick 1; medians are reported)
#   --no-build   do not run `cargo build --release -p berth` (use target/release/berth as is)
#   --configs L  only these configurations (default a,b,c,d)
#   --wait-quiet MIN  on a shared machine: before each workload, wait (up to MIN minutes)
#                until processes outside this script use under 10% of the CPUs
#   --out FILE   table + raw runs (default bench/results/nodes-<timestamp>.txt, copied to
#                bench/results/nodes-latest.txt)
#   --keep-tmp   keep the temp dir (databases, bucket, logs) for inspection
#
# Per configuration, on a fresh PostgreSQL database and a fresh bucket (one PostgreSQL server
# and one s3s-fs for the whole run, with their default durability: PostgreSQL fsyncs its
# commits; s3s-fs writes files without fsync), each workload RUNS times:
#   push-big    one monolithic POST ?digest= of a 256 MiB blob (quick: 64 MiB), MB/s
#   push-par    4 clients at once, each one POST ?digest= of its own 32 MiB blob (quick: 8 MiB),
#               aggregate MB/s
#   push-small  8 clients pushing distinct 4 KiB blobs for 8 s (quick: 3 s), blobs/s: little
#               bytes, mostly the database's write transactions (claim, link)
#   pull        8 curl clients (quick: 4), each GETting a 64 MiB blob (quick: 16 MiB) twice over
#               one connection, anonymous, aggregate MB/s: streamed by the nodes (data endpoint
#               setting off) and, on (b)-(d), redirected (setting on: the GET answers 307 to
#               a presigned S3 URL and curl -L fetches it from s3s-fs); the two alternate
#   manifest    wrk -t2 -c64 for 10 s (quick: 3 s) on a manifest GET by tag, anonymous (as
#               run.sh), req/s and p99
# Every blob pushed is new to the store (slices of one random file at distinct offsets) and is
# checked with HEAD afterwards; every pull checks status, size and the number of redirects.
# Around each workload the CPU time (utime+stime, children included, from /proc) of the Berth
# nodes, PostgreSQL (postmaster and backends), s3s-fs and nginx is read, and the table gives
# it per MB and per request. A monitor samples the CPU used by processes outside this script
# (other builds and tests) and the report prints it per phase, with a warning when noisy.
# Everything started here is stopped on exit (trap), and the temp dir is removed.
# Needs: PostgreSQL 15 server binaries (apt postgresql), nginx, wrk, curl, python3 (standard
# library), s3s-fs 0.14.1 (in ~/.cache/berth-test-tools/bin as scripts/test.sh installs it,
# or on PATH). Disk: about 2 GiB under $BENCH_TMPDIR (quick: 0.5 GiB).
# Environment: BERTH_BIN (a berth binary to use instead of target/release/berth; no build),
# BENCH_TMPDIR (parent of the temp dir, default /tmp), BERTH_RUST_LOG (default warn),
# BERTH_TEST_TOOLS (where s3s-fs is installed, default ~/.cache/berth-test-tools).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="python3 $HERE/bench.py"    # CPU monitor, quiet wait, anonymous pull, push-image, blobs
NODES="python3 $HERE/nodes.py" # the workloads with CPU accounting, the report

RUNS=""
QUICK=0
BUILD=1
OUT=""
KEEP_TMP=0
WAIT_QUIET=0
CONFIGS=a,b,c,d
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --configs) CONFIGS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        --wait-quiet) WAIT_QUIET="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "nodes.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ $QUICK == 1 ]]; then
    BIG=$((64 << 20)); PAR=$((8 << 20)); PULL=$((16 << 20)); PULL_CLIENTS=4
    SMALL_SECS=3; MANIFEST_SECS=3; RUNS="${RUNS:-1}"; NEED_MB=600
else
    BIG=$((256 << 20)); PAR=$((32 << 20)); PULL=$((64 << 20)); PULL_CLIENTS=8
    SMALL_SECS=8; MANIFEST_SECS=10; RUNS="${RUNS:-3}"; NEED_MB=2500
fi
PAR_CLIENTS=4
SMALL_CLIENTS=8
PULL_PER_CLIENT=2
for n in "$RUNS" "$WAIT_QUIET"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "nodes.sh: expected a number, got '$n'" >&2; exit 2; }
done
[[ $RUNS -ge 1 ]] || { echo "nodes.sh: --runs must be at least 1" >&2; exit 2; }
[[ $CONFIGS =~ ^[abcd](,[abcd])*$ ]] || { echo "nodes.sh: --configs takes a list of a,b,c,d" >&2; exit 2; }

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

# wait_http NAME URL LOG CODES: until URL answers one of CODES (60 s), failing early if NAME died
wait_http() {
    local name=$1 url=$2 logf=$3 codes=$4
    for _ in $(seq 600); do
        if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
            log "$name exited during start-up; its log:"; tail -n 30 "$logf" >&2; return 1
        fi
        [[ " $codes " == *" $(curl -s -o /dev/null -w '%{http_code}' "$url" || true) "* ]] && return 0
        sleep 0.1
    done
    log "$name not ready after 60 s at $url; its log:"; tail -n 30 "$logf" >&2; return 1
}

record() { echo "$1 $2 $3 $4" >>"$RAW"; }       # measurement config run "key=value ..."
note() { echo "# $*" >>"$RAW"; log "$*"; }
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
# build, tools
# ------------------------------------------------------------------------------------------------
cd "$ROOT"
if [[ -n ${BERTH_BIN:-} ]]; then
    BERTH="$BERTH_BIN"
else
    BERTH="$ROOT/target/release/berth"
    if [[ $BUILD == 1 ]]; then
        log "cargo build --release -p berth (may wait for the cargo lock)"
        cargo build --release -p berth
    fi
fi
[[ -x $BERTH ]] || { echo "nodes.sh: $BERTH missing (build failed, --no-build, or BERTH_BIN)" >&2; exit 1; }
PGBIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
[[ -n $PGBIN && -x $PGBIN/initdb ]] || { echo "nodes.sh: PostgreSQL's server missing (apt-get install postgresql)" >&2; exit 1; }
S3FS="${BERTH_TEST_TOOLS:-$HOME/.cache/berth-test-tools}/bin/s3s-fs"
[[ -x $S3FS ]] || S3FS=$(command -v s3s-fs || true)
[[ -n $S3FS ]] || { echo "nodes.sh: s3s-fs missing: cargo install --locked s3s-fs --version 0.14.1 --features binary --root ~/.cache/berth-test-tools" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { echo "nodes.sh: nginx missing (apt-get install nginx)" >&2; exit 1; }
for t in wrk curl; do command -v $t >/dev/null || { echo "nodes.sh: $t missing (apt-get install $t)" >&2; exit 1; }; done

mkdir -p "$HERE/results"
STAMP=$(date +%Y%m%d-%H%M%S)
OUT="${OUT:-$HERE/results/nodes-$STAMP.txt}"
RAW="$OUT.raw"
: >"$RAW"

TMP=$(mktemp -d -p "${BENCH_TMPDIR:-/tmp}" berth-nodes-bench.XXXXXX)
chmod 755 "$TMP"   # PostgreSQL runs as `postgres` when we are root
FREE_MB=$(($(df --output=avail -k "$TMP" | tail -1) / 1024))
if [[ $FREE_MB -lt $NEED_MB ]]; then
    echo "nodes.sh: only $FREE_MB MB free under $TMP; this needs about $NEED_MB MB" >&2; exit 1
fi
$PY cpu-monitor --root $$ --out "$TMP/cpu.log" &
PIDS[cpu-monitor]=$!
phase setup

note "berth scale-out benchmark $(date -Is) on $(hostname), $(nproc) CPUs, $(uname -r)"
note "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit') $(git -C "$ROOT" status --porcelain -- crates 2>/dev/null | wc -l) changed files under crates/"
note "berth binary: $BERTH built $(date -r "$BERTH" -Is), sha256 $(sha256sum "$BERTH" | cut -c1-12)"
cp "$BERTH" "$TMP/berth-bin"   # other builds may replace the binary during the run
BERTH="$TMP/berth-bin"
note "PostgreSQL: $("$PGBIN/postgres" --version); s3s-fs: $S3FS; $("$NGINX" -v 2>&1)"
note "runs=$RUNS push_big=$((BIG >> 20))MiB pull=$((PULL >> 20))MiB small_secs=$SMALL_SECS manifest_secs=$MANIFEST_SECS"
note "par_clients=$PAR_CLIENTS x $((PAR >> 20)) MiB"
note "pull_clients=$PULL_CLIENTS x $PULL_PER_CLIENT GETs"

# ------------------------------------------------------------------------------------------------
# PostgreSQL and s3s-fs, one of each for the whole run (a database and a bucket per config)
# ------------------------------------------------------------------------------------------------
AS_PG=()
if [[ $(id -u) == 0 ]]; then
    AS_PG=(runuser -u postgres --)
    install -d -o postgres -g postgres "$TMP/pg"
else
    mkdir -p "$TMP/pg"
fi
PG_PORT=$(free_port)
"${AS_PG[@]}" "$PGBIN/initdb" -D "$TMP/pg/data" -U berth --auth=trust --encoding=UTF8 \
    --locale=C --no-sync >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; exit 1; }
# in the foreground (a child of this script, so its CPU and the monitor see it as ours);
# durability as shipped: fsync and synchronous_commit on
"${AS_PG[@]}" "$PGBIN/postgres" -D "$TMP/pg/data" -p "$PG_PORT" -k "$TMP/pg" \
    -c listen_addresses=127.0.0.1 -c max_connections=300 >"$TMP/pg.log" 2>&1 &
PIDS[postgres]=$!
for _ in $(seq 300); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
    kill -0 "${PIDS[postgres]}" 2>/dev/null || { cat "$TMP/pg.log" >&2; exit 1; }
    sleep 0.1
done
pg_db() { "${AS_PG[@]}" "$PGBIN/$1" -h 127.0.0.1 -p "$PG_PORT" -U berth "$2"; }

S3_PORT=$(free_port)
mkdir -p "$TMP/s3"
export AWS_ACCESS_KEY_ID=berth-bench-access AWS_SECRET_ACCESS_KEY=berth-bench-secret-key
"$S3FS" --host 127.0.0.1 --port "$S3_PORT" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$TMP/s3" >"$TMP/s3.log" 2>&1 &
PIDS[s3]=$!
wait_http s3 "http://127.0.0.1:$S3_PORT/" "$TMP/s3.log" "200 403"

# the test blobs (untimed): slices of one random file, digests computed once
SMALL_COUNT=$((RUNS * SMALL_SECS * 1500 + 500))
$NODES prepare "$TMP/pool" --big-size $BIG --big-count "$RUNS" --par-size $PAR \
    --par-count $((RUNS * PAR_CLIENTS)) --pull-size $PULL --small-count $SMALL_COUNT \
    --out "$TMP/plan.json" >/dev/null
PULL_DIGEST=$(python3 -c "import json; print(json.load(open('$TMP/plan.json'))['pull']['digest'])")
head -c 4096 /dev/urandom >"$TMP/layer"

# ------------------------------------------------------------------------------------------------
# the nodes and the balancer
# ------------------------------------------------------------------------------------------------
BERTH_ADMIN="admin:berth-bench-$RANDOM$RANDOM$RANDOM"
NODE_PIDS=()
# start_node CFG I [serve args...]: node I of configuration CFG on a free port, data dir of its own
start_node() {
    local cfg=$1 i=$2 port
    shift 2
    port=$(free_port)
    mkdir -p "$TMP/$cfg/node$i"
    env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${BERTH_RUST_LOG:-warn}" \
        AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
        BERTH_ADMIN_USERNAME="${BERTH_ADMIN%%:*}" BERTH_ADMIN_PASSWORD="${BERTH_ADMIN#*:}" \
        "$BERTH" serve --listen "127.0.0.1:$port" --data-dir "$TMP/$cfg/node$i" \
        --gc-enabled false --trusted-proxies 127.0.0.1 "$@" >>"$TMP/$cfg/node$i.log" 2>&1 &
    PIDS[node$i]=$!
    NODE_PIDS+=("$!")
    NODE_ADDRS+=("127.0.0.1:$port")
    wait_http "node$i" "http://127.0.0.1:$port/readyz" "$TMP/$cfg/node$i.log" 200
}

# start_nginx CFG: round robin over NODE_ADDRS, the README's settings
start_nginx() {
    local cfg=$1 port servers=""
    port=$(free_port)
    for addr in "${NODE_ADDRS[@]}"; do servers+="        server $addr max_fails=1 fail_timeout=2s;"$'\n'; done
    mkdir -p "$TMP/$cfg/nginx"
    cat >"$TMP/$cfg/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $TMP/$cfg/nginx/nginx.pid;
error_log $TMP/$cfg/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/$cfg/nginx/body;
    proxy_temp_path $TMP/$cfg/nginx/proxy;
    upstream berth {
$servers        keepalive 32;
    }
    server {
        listen 127.0.0.1:$port;
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host \$http_host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto \$scheme;
        proxy_read_timeout 900s;
        proxy_send_timeout 900s;
        proxy_next_upstream error timeout;
        location / { proxy_pass http://berth; }
    }
}
EOF
    "$NGINX" -p "$TMP/$cfg/nginx" -c "$TMP/$cfg/nginx/nginx.conf" >"$TMP/$cfg/nginx/out.log" 2>&1 &
    PIDS[nginx]=$!
    URL="http://127.0.0.1:$port"
    wait_http nginx "$URL/readyz" "$TMP/$cfg/nginx/error.log" 200
}

# ------------------------------------------------------------------------------------------------
# one configuration: start, workloads, stop
# ------------------------------------------------------------------------------------------------
bench_config() {
    local cfg=$1 n args=() r out groups order follow
    case $cfg in a|b) n=1 ;; c) n=2 ;; d) n=3 ;; esac
    phase "$cfg:start"
    NODE_PIDS=(); NODE_ADDRS=()
    if [[ $cfg != a ]]; then
        pg_db createdb "nodes_$cfg"
        mkdir -p "$TMP/s3/nodes-$cfg"
        args=(--database-url "postgres://berth@127.0.0.1:$PG_PORT/nodes_$cfg"
              --storage-url "s3://nodes-$cfg?endpoint=http://127.0.0.1:$S3_PORT&region=us-east-1")
    fi
    for i in $(seq "$n"); do start_node "$cfg" "$i" "${args[@]}"; done
    URL="http://${NODE_ADDRS[0]}"
    [[ $n -gt 1 ]] && start_nginx "$cfg"
    groups="berth=$(IFS=,; echo "${NODE_PIDS[*]}");pg=${PIDS[postgres]};s3=${PIDS[s3]}"
    [[ -n ${PIDS[nginx]:-} ]] && groups+=";nginx=${PIDS[nginx]}"
    note "config $cfg: $n node(s), clients on $URL"

    # set-up, untimed: every node has checked the admin password once, anonymous pull on,
    # the pull blob and a small image for the manifest GETs
    $NODES warm "$URL" --auth "$BERTH_ADMIN" --requests $((3 * n)) >/dev/null
    $PY berth-anonymous-pull "$URL" --auth "$BERTH_ADMIN" >/dev/null
    $NODES push-big "$URL" --auth "$BERTH_ADMIN" --blobs "$TMP/plan.json" --pull-blob --repo bench/pull >/dev/null
    MDIGEST=$($PY push-image "$URL" bench/image latest "$TMP/layer" --auth "$BERTH_ADMIN")

    phase "$cfg:push-big"
    for r in $(seq "$RUNS"); do
        quiet
        out=$($NODES push-big "$URL" --auth "$BERTH_ADMIN" --groups "$groups" --blobs "$TMP/plan.json" --index $((r - 1)))
        record push_big "$cfg" "$r" "$out"; log "$cfg push-big run $r: $out"
    done
    phase "$cfg:push-par"
    for r in $(seq "$RUNS"); do
        quiet
        out=$($NODES push-par "$URL" --auth "$BERTH_ADMIN" --groups "$groups" --blobs "$TMP/plan.json" \
            --run $((r - 1)) --clients $PAR_CLIENTS)
        record push_par "$cfg" "$r" "$out"; log "$cfg push-par run $r: $out"
    done
    phase "$cfg:push-small"
    for r in $(seq "$RUNS"); do
        quiet
        out=$($NODES push-small "$URL" --auth "$BERTH_ADMIN" --groups "$groups" --blobs "$TMP/plan.json" \
            --run $((r - 1)) --runs "$RUNS" --clients $SMALL_CLIENTS --seconds $SMALL_SECS)
        record push_small "$cfg" "$r" "$out"; log "$cfg push-small run $r: $out"
    done
    phase "$cfg:pull"
    for r in $(seq "$RUNS"); do
        order="stream redirect"; [[ $((r % 2)) == 0 ]] && order="redirect stream"
        [[ $cfg == a ]] && order="stream"   # local disk signs no URL: nothing to redirect to
        for mode in $order; do
            quiet
            follow=(); [[ $mode == redirect ]] && follow=(--follow)
            $NODES data-endpoint "$URL" --auth "$BERTH_ADMIN" --repo bench/pull --digest "$PULL_DIGEST" \
                --enabled "$([[ $mode == redirect ]] && echo true || echo false)" --probes $((2 * n)) >/dev/null
            out=$($NODES pull "$URL" --groups "$groups" --repo bench/pull --digest "$PULL_DIGEST" --size $PULL \
                --clients $PULL_CLIENTS --per-client $PULL_PER_CLIENT "${follow[@]}")
            record "pull_$mode" "$cfg" "$r" "$out"; log "$cfg pull $mode run $r: $out"
        done
    done
    [[ $cfg != a ]] && $NODES data-endpoint "$URL" --auth "$BERTH_ADMIN" --repo bench/pull \
        --digest "$PULL_DIGEST" --enabled false --probes 1 >/dev/null
    phase "$cfg:manifest"
    for r in $(seq "$RUNS"); do
        quiet
        out=$($NODES manifest "$URL/v2/bench/image/manifests/latest" --groups "$groups" \
            --seconds $MANIFEST_SECS --expect-digest "$MDIGEST")
        record manifest "$cfg" "$r" "$out"; log "$cfg manifest run $r: $out"
    done

    phase "$cfg:stop"
    stop nginx
    for i in $(seq "$n"); do stop "node$i"; done
    if grep -qiE 'panic|error' "$TMP/$cfg"/node*.log 2>/dev/null; then
        note "config $cfg: the nodes logged errors:"
        grep -ihE 'panic|error' "$TMP/$cfg"/node*.log | sort | uniq -c | sort -rn | head -5 |
            while read -r line; do note "  $line"; done
    fi
    [[ $KEEP_TMP == 1 ]] || rm -rf "${TMP:?}/$cfg" "$TMP/s3/nodes-$cfg"
}

for cfg in ${CONFIGS//,/ }; do bench_config "$cfg"; done

phase end
stop cpu-monitor
$PY cpu-summary "$TMP/cpu.log" "$TMP/phases" | while read -r line; do note "$line"; done

TABLE=$($NODES report "$RAW")
{ echo "$TABLE"; echo; echo "raw runs (measurement config run values):"; cat "$RAW"; } >"$OUT"
rm -f "$RAW"
cp "$OUT" "$HERE/results/nodes-latest.txt"
echo "$TABLE"
log "results: $OUT (and bench/results/nodes-latest.txt)"
