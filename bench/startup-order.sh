#!/usr/bin/env bash
# bench/startup-order.sh: regenerates crates/berth/startup-order.txt, the linker's list of the
# functions to place together (crates/berth/build.rs), from what a release build runs.
#
# Usage: bench/startup-order.sh [BERTH_BINARY]   (default target/release/berth)
#
# Why: Linux maps a binary's code in 64 KiB pieces around each page that runs. Start-up code
# spread over the 16 MB of .text maps most of it (158 of 258 pieces: ~10 MiB of RSS for
# ~2.6 MB of functions); placed together it maps about what it uses. Symbol names carry
# hashes that change with dependency versions, features and the compiler: a list made
# before such a change places fewer functions (the build skips unknown names quietly), so
# run this after upgrading them, then rebuild and compare bench/run.sh's idle RSS.
#
# It starts `berth serve` under callgrind (--dump-instr=yes) on an empty data dir; group 1 is
# what runs until one second after it answers (start-up, as bench/run.sh measures idle RSS);
# group 2 what a push, a pull and manifest GETs add (the request path, after it).
# Needs valgrind (Debian package `valgrind`), curl, python3, nm (binutils).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/berth}
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }

TMP=$(mktemp -d)
PID=""
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
ADMIN="admin:berth-order-$RANDOM$RANDOM"
PY="python3 bench/bench.py"
head -c $((1024 * 1024)) /dev/urandom >"$TMP/layer"
port=$((20000 + RANDOM % 20000))
u="http://127.0.0.1:$port"

env -i PATH="$PATH" HOME="$HOME" RUST_LOG=warn \
    BERTH_ADMIN_USERNAME="${ADMIN%%:*}" BERTH_ADMIN_PASSWORD="${ADMIN#*:}" \
    valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$TMP/callgrind.out" \
    "$BIN" serve --listen "127.0.0.1:$port" --data-dir "$TMP/data" >"$TMP/berth.log" 2>&1 &
PID=$!
for _ in $(seq 600); do
    case $(curl -s -o /dev/null -w '%{http_code}' "$u/v2/" || true) in 200|401) break ;; esac
    kill -0 "$PID" 2>/dev/null || { tail -n 20 "$TMP/berth.log" >&2; exit 1; }
    sleep 0.2
done
sleep 1
callgrind_control --dump=startup "$PID" >/dev/null
$PY push-image "$u" bench/image latest "$TMP/layer" --auth="$ADMIN" >/dev/null
$PY berth-anonymous-pull "$u" --auth "$ADMIN" >/dev/null
accept="Accept: application/vnd.oci.image.manifest.v1+json"
for _ in $(seq 20); do
    curl -sf -o /dev/null -H "$accept" "$u/v2/bench/image/manifests/latest"
done
digest=$(curl -sf -H "$accept" "$u/v2/bench/image/manifests/latest" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')
curl -sf -o /dev/null "$u/v2/bench/image/blobs/$digest"
callgrind_control --dump=requests "$PID" >/dev/null
kill -INT "$PID"; wait "$PID" 2>/dev/null || true; PID=""
python3 bench/startup_order.py "$BIN" crates/berth/startup-order.txt \
    "$TMP/callgrind.out.1" "$TMP/callgrind.out.2"
