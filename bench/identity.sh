#!/usr/bin/env bash
# bench/identity.sh: authenticated manifest GET throughput next to anonymous (issue 3).
#
# Usage: bench/identity.sh [--runs N] [--seconds S] [--connections C] [--threads T]
#                          [--no-build] [--max-load L] [--wait-load SECS] [--keep-tmp]
#
#   --runs N          runs per variant (default 5; medians are reported)
#   --seconds S       length of each wrk run (default 10)
#   --connections C   wrk connections (default 64); --threads T wrk threads (default 2)
#   --no-build        use target/release/berth as it is
#   --max-load L      before measuring, wait until the 1-minute load average is below L
#                     (default 1.5), for at most --wait-load SECS (default 180); then go on anyway
#   --keep-tmp        keep the temp dir (data dir, server log, raw wrk output)
#
# What it does: builds Berth (release), starts `berth serve` on a free loopback port with a fresh
# data dir and a known admin password, pushes a small OCI image (config blob + one 4 KiB layer)
# as the admin, creates a scope map with content/read on the repository and a token on it,
# switches anonymous pull on, and measures `GET /v2/<repo>/manifests/latest` (with an OCI Accept
# header) with `wrk -t2 -c64 -d10s --latency` for:
#   anon-bearer   Authorization: Bearer <access token of GET /oauth2/token without credentials>
#                 (what docker/containerd send after the 401 on /v2/): THE anonymous baseline
#   token-bearer  Authorization: Bearer <access token of GET /oauth2/token with the token's
#                 Basic credentials>
#   token-basic   Authorization: Basic <token:password1> on every request
#   no-auth       no Authorization header (allowed on manifest GETs when anonymous pull is on;
#                 Docker-style clients never send this: their first request, GET /v2/, is a 401
#                 without credentials, so they go through the token endpoint = anon-bearer)
# Every variant is checked once first (200 and the pushed manifest's exact bytes); a wrk run
# with any non-2xx answer or socket error fails the script. Variants are interleaved run by run
# (rotating the order) so machine noise hits all of them alike; access tokens are fetched afresh
# before each run. Output: req/s and p99 per variant (median of the runs, with the min-max range)
# and the ratios token-bearer/anon-bearer and token-basic/anon-bearer against the 90% target.
# Noise: for each run, the CPU time used by processes other than the server and wrk (from
# /proc/stat, minus the server's and wrk's own) is printed as a share of all CPUs; the load
# average is printed before and after, and checked before measuring (--max-load).
# Everything started here is stopped on exit (trap) and the temp dir removed.
# Needs: cargo (unless --no-build), python3 (stdlib), wrk.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BERTH="$ROOT/target/release/berth"

RUNS=5
SECS=10
CONNS=64
THREADS=2
BUILD=1
MAX_LOAD=1.5
WAIT_LOAD=180
KEEP_TMP=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --seconds) SECS="$2"; shift 2 ;;
        --connections) CONNS="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --max-load) MAX_LOAD="$2"; shift 2 ;;
        --wait-load) WAIT_LOAD="$2"; shift 2 ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "identity.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for n in "$RUNS" "$SECS" "$CONNS" "$THREADS" "$WAIT_LOAD"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "identity.sh: expected a positive integer, got '$n'" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "identity.sh: wrk is not installed" >&2; exit 2; }

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# ------------------------------------------------------------------------------------------------
# processes and cleanup
# ------------------------------------------------------------------------------------------------
SERVER_PID=""
TMP=""
cleanup() {
    local rc=$?
    set +e
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ $KEEP_TMP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $BUILD == 1 ]]; then
    log "building berth (release)"
    (cd "$ROOT" && cargo build --release -p berth)
fi
[[ -x $BERTH ]] || { log "$BERTH is missing (build it, or drop --no-build)"; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/berth-identity.XXXXXX")"
mkdir -m 0700 "$TMP/data" "$TMP/raw"

# ------------------------------------------------------------------------------------------------
# helper (stdlib Python): free port, readiness, set-up, access tokens, wrk parsing, summary
# ------------------------------------------------------------------------------------------------
cat >"$TMP/helper.py" <<'PY'
import base64, hashlib, json, os, re, socket, statistics, sys, time, urllib.error, urllib.request

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

def call(method, url, body=None, headers=None, ok=(200,)):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, data = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, data = e.code, e.read()
    if status not in ok:
        sys.exit(f"{method} {url}: {status} (want {ok}): {data[:500]!r}")
    return status, data

def cmd_freeport():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()

def cmd_wait(base, pid):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except OSError:
            sys.exit("berth serve exited during start-up")
        try:
            call("GET", base + "/v2/", ok=(200, 401))
            return
        except Exception:
            time.sleep(0.1)
    sys.exit("berth serve did not answer within 30 s")

def cmd_setup(base, repo, admin_password, out):
    admin = {"Authorization": basic("admin", admin_password)}
    jh = dict(admin, **{"Content-Type": "application/json"})
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(4096)
    descs = []
    for blob, mt in ((config, "application/vnd.oci.image.config.v1+json"),
                     (layer, "application/vnd.oci.image.layer.v1.tar+gzip")):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        call("POST", f"{base}/v2/{repo}/blobs/uploads/?digest={digest}", blob,
             dict(admin, **{"Content-Type": "application/octet-stream"}), ok=(201,))
        descs.append({"mediaType": mt, "digest": digest, "size": len(blob)})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": descs[0], "layers": descs[1:]}).encode()
    call("PUT", f"{base}/v2/{repo}/manifests/latest", manifest,
         dict(admin, **{"Content-Type": OCI_MANIFEST}), ok=(201,))
    call("POST", f"{base}/berth/v1/scope-maps", json.dumps(
        {"name": "bench-pull", "repositories": [{"repository": repo, "actions": ["content/read"]}]}
    ).encode(), jh, ok=(201,))
    _, data = call("POST", f"{base}/berth/v1/tokens", json.dumps(
        {"name": "bench-robot", "scope_map": "bench-pull"}).encode(), jh, ok=(201,))
    pw = {p["name"]: p["value"] for p in json.loads(data)["passwords"]}["password1"]
    _, data = call("PATCH", f"{base}/berth/v1/registry",
                   json.dumps({"anonymous_pull_enabled": True}).encode(), jh)
    assert json.loads(data)["anonymous_pull_enabled"] is True
    with open(out, "w") as f:
        json.dump({"user": "bench-robot", "password": pw,
                   "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
                   "manifest_len": len(manifest)}, f)
    os.chmod(out, 0o600)

def access_token(data, scope):
    d = json.loads(data)
    if d.get("scope") != scope:  # the token must carry the pull it was asked for
        sys.exit(f"the token endpoint granted {d.get('scope')!r}, not {scope!r}")
    return d.get("access_token") or d["token"]

def cmd_header(base, repo, variant, setup):
    """Prints the Authorization header value for a variant (empty for no-auth)."""
    s = json.load(open(setup))
    service = base.split("://", 1)[1]
    url = f"{base}/oauth2/token?service={service}&scope=repository:{repo}:pull"
    if variant == "anon-bearer":
        _, data = call("GET", url)
        print("Bearer " + access_token(data, "repository:" + repo + ":pull"))
    elif variant == "token-bearer":
        _, data = call("GET", url, headers={"Authorization": basic(s["user"], s["password"])})
        print("Bearer " + access_token(data, "repository:" + repo + ":pull"))
    elif variant == "token-basic":
        print(basic(s["user"], s["password"]))
    elif variant == "no-auth":
        print("")
    else:
        sys.exit(f"unknown variant {variant}")

def cmd_check(base, repo, authz, setup):
    """One GET with the variant's header: must be 200 with the pushed bytes."""
    s = json.load(open(setup))
    h = {"Accept": OCI_MANIFEST}
    if authz:
        h["Authorization"] = authz
    _, data = call("GET", f"{base}/v2/{repo}/manifests/latest", headers=h)
    if hashlib.sha256(data).hexdigest() != s["manifest_sha256"]:
        sys.exit("the manifest came back with other bytes than were pushed")

def cmd_status(url):
    """Prints the status of a credential-less GET (for the notes)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=10) as r:
            print(r.status)
    except urllib.error.HTTPError as e:
        print(e.code)

def busy_ticks():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f) - idle, sum(f)

def proc_ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime
    except OSError:
        return 0

def cmd_wrk(server_pid, out, *argv):
    """Runs wrk, its output to `out`; prints the CPU share (% of all CPUs) used meanwhile by
    processes other than the server and wrk: other work on the machine, i.e. noise."""
    hz = os.sysconf("SC_CLK_TCK")
    b0, t0 = busy_ticks(); s0 = proc_ticks(server_pid)
    with open(out, "w") as f:
        child = __import__("subprocess").Popen(["wrk", *argv], stdout=f, stderr=f)
        _, status, ru = os.wait4(child.pid, 0)
    b1, t1 = busy_ticks(); s1 = proc_ticks(server_pid)
    if status != 0:
        sys.exit(f"wrk failed (status {status}):\n{open(out).read()}")
    own = (s1 - s0) + (ru.ru_utime + ru.ru_stime) * hz
    print(f"{max(0.0, (b1 - b0 - own) / max(1, t1 - t0) * 100):.1f}")

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}

def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * UNIT[m.group(2)]

def cmd_parse(path):
    """wrk --latency output -> 'rps p50_ms p99_ms requests'; fails on errors or non-2xx."""
    out = open(path).read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if not (rps and p50 and p99 and total):
        sys.exit(f"could not parse wrk output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        sys.exit(f"wrk saw {bad.group(1)} non-2xx/3xx answers:\n{out}")
    errs = re.search(r"Socket errors:.*", out)
    if errs and re.search(r"[1-9]", errs.group(0)):
        sys.exit(f"wrk saw socket errors:\n{out}")
    print(f"{float(rps.group(1)):.0f} {ms(p50.group(1)):.3f} {ms(p99.group(1)):.3f} {total.group(1)}")

def cmd_summary(results, variants, target):
    rows = {}
    for line in open(results):
        v, run, rps, p50, p99, n, outside = line.split()
        rows.setdefault(v, []).append((float(rps), float(p50), float(p99), float(outside)))
    med = lambda xs: statistics.median(xs)
    print(f"{'variant':<14}{'runs':>5}{'req/s (median)':>16}{'min-max':>17}"
          f"{'p50 ms':>9}{'p99 ms':>9}{'p99 max':>9}")
    for v in variants.split(","):
        r = rows.get(v, [])
        if not r:
            continue
        rps = [x[0] for x in r]
        print(f"{v:<14}{len(r):>5}{med(rps):>16,.0f}{f'{min(rps):,.0f}-{max(rps):,.0f}':>17}"
              f"{med([x[1] for x in r]):>9.2f}{med([x[2] for x in r]):>9.2f}"
              f"{max(x[2] for x in r):>9.2f}")
    base = med([x[0] for x in rows["anon-bearer"]])
    target = float(target)
    print()
    for v in ("token-bearer", "token-basic", "no-auth"):
        if v not in rows:
            continue
        ratio = med([x[0] for x in rows[v]]) / base
        verdict = "" if v == "no-auth" else ("  PASS" if ratio >= target else "  BELOW TARGET")
        print(f"{v}/anon-bearer = {ratio:.1%}" +
              (f" (target >= {target:.0%}){verdict}" if v != "no-auth" else " (for reference)"))
    noise = [x[3] for rs in rows.values() for x in rs]
    print(f"\nCPU used by other processes during the runs (% of all {os.cpu_count()} CPUs): "
          f"median {med(noise):.0f}%, max {max(noise):.0f}%")
    if max(noise) > 10:
        print("WARNING: other work on the machine took over 10% of the CPUs during some runs; "
              "compare ratios, not absolute numbers")

if __name__ == "__main__":
    globals()["cmd_" + sys.argv[1]](*sys.argv[2:])
PY
H="python3 $TMP/helper.py"

# ------------------------------------------------------------------------------------------------
# the registry and its contents
# ------------------------------------------------------------------------------------------------
PORT="$($H freeport)"
BASE="http://127.0.0.1:$PORT"
REPO="bench/identity"
ADMIN_PW="identity-bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
log "starting berth serve on 127.0.0.1:$PORT"
env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${BERTH_RUST_LOG:-warn}" \
    BERTH_ADMIN_PASSWORD="$ADMIN_PW" BERTH_ACCESS_TOKEN_TTL=30m \
    "$BERTH" serve --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" >"$TMP/berth.log" 2>&1 &
SERVER_PID=$!
$H wait "$BASE" "$SERVER_PID" || { tail -n 30 "$TMP/berth.log" >&2; exit 1; }
$H setup "$BASE" "$REPO" "$ADMIN_PW" "$TMP/setup.json"
unset ADMIN_PW

VARIANTS=(anon-bearer token-bearer token-basic no-auth)
URL="$BASE/v2/$REPO/manifests/latest"
ACCEPT="Accept: application/vnd.oci.image.manifest.v1+json"

# wrk_run VARIANT SECONDS OUTFILE: fresh header, one wrk run
wrk_run() {
    local v=$1 secs=$2 out=$3 authz
    authz="$($H header "$BASE" "$REPO" "$v" "$TMP/setup.json")"
    local args=(-t"$THREADS" -c"$CONNS" -d"${secs}s" --latency -H "$ACCEPT")
    [[ -n $authz ]] && args+=(-H "Authorization: $authz")
    $H wrk "$SERVER_PID" "$out" "${args[@]}" "$URL"
}

for v in "${VARIANTS[@]}"; do
    $H check "$BASE" "$REPO" "$($H header "$BASE" "$REPO" "$v" "$TMP/setup.json")" "$TMP/setup.json"
done
V2_NOAUTH="$($H status "$BASE/v2/")"
log "every variant answers 200 with the pushed manifest; GET /v2/ without credentials: $V2_NOAUTH"

# Quiet enough? (other agents may be compiling on the same cores)
waited=0
while awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN{exit !(l >= m)}'; do
    if (( waited >= WAIT_LOAD )); then
        log "load average still $(load1) after ${waited}s; measuring anyway (see the load column)"
        break
    fi
    (( waited == 0 )) && log "load average $(load1) >= $MAX_LOAD: waiting (up to ${WAIT_LOAD}s)"
    sleep 10; waited=$((waited + 10))
done
log "uptime before measuring: $(uptime)"

log "warm-up: 2 s per variant"
for v in "${VARIANTS[@]}"; do wrk_run "$v" 2 "$TMP/raw/warmup-$v.txt" >/dev/null; done

RESULTS="$TMP/raw/results.txt"
: >"$RESULTS"
n=${#VARIANTS[@]}
for run in $(seq "$RUNS"); do
    for i in $(seq 0 $((n - 1))); do
        v=${VARIANTS[$(((i + run - 1) % n))]}
        out="$TMP/raw/run$run-$v.txt"
        outside="$(wrk_run "$v" "$SECS" "$out")"
        read -r rps p50 p99 total < <($H parse "$out")
        echo "$v $run $rps $p50 $p99 $total $outside" >>"$RESULTS"
        log "run $run/$RUNS $(printf '%-13s' "$v") $(printf '%7s' "$rps") req/s  p99 ${p99} ms  (other processes: ${outside}% CPU)"
    done
done
log "uptime after measuring: $(uptime)"

echo
echo "Manifest GET by tag ($REPO:latest, OCI manifest), wrk -t$THREADS -c$CONNS -d${SECS}s, medians of $RUNS runs"
echo "berth $("$BERTH" --version 2>/dev/null || echo '(version unknown)'), $(nproc) CPUs, wrk on the same machine"
echo
$H summary "$RESULTS" "$(IFS=,; echo "${VARIANTS[*]}")" 0.9
echo
echo "Note: GET /v2/ without credentials answers $V2_NOAUTH, so Docker-style clients take the anonymous"
echo "token flow (anon-bearer), the baseline above; no-auth is a bare manifest GET, for reference."
