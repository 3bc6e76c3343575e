#!/usr/bin/env python3
"""Measurements for bench/nodes.sh (scale-out, issue 16; Python 3.11, standard library only).

nodes.sh owns the processes (PostgreSQL, s3s-fs, nginx, the Berth nodes); this file prepares
the test blobs, runs one workload at a time while it accounts the CPU time of every server
process, and prints the report. It reuses bench.py's HTTP client (request bodies sent with
sendfile from one pool file) and its wrk parsing.

Every workload prints one line, `key=value ...`, and exits non-zero (reason on stderr) when a
server misbehaves (a status, a byte count or a redirect count that is not the expected one),
so a broken cluster never scores. CPU is counted per group of processes (`--groups
"berth=PID,PID;s3=PID;pg=PID;nginx=PID"`): each PID's utime+stime plus those of all its
descendants (live ones, and exited ones through their parents' cutime/cstime), read from
/proc/PID/stat before and after the workload; printed as `cpu_<group>=<seconds>`.

Subcommands:
  prepare POOL --big-size B --big-count N --par-size S --par-count M --pull-size P --small-count K --out JSON
  warm URL --auth A --requests N                   -> ok   (Argon2 check cached on every node)
  push-big URL --auth A --blobs JSON --index I      -> mbps=.. bytes=.. secs=.. cpu_*=..
  push-par URL --auth A --blobs JSON --run R --clients C
  push-small URL --auth A --blobs JSON --run R --clients C --seconds S
  pull URL --repo R --digest D --size N --clients C --per-client K [--follow]
  manifest URL --seconds S [--expect-digest D]     -> rps=.. p99_ms=.. requests=..
  data-endpoint URL --auth A --repo R --digest D --enabled true|false --probes N
  report RAW                                       -> the table
"""

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (bench.py beside this file)
from bench import MB, MiB, Client, die, expect  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
SMALL = 4096
CONFIGS = ["a", "b", "c", "d"]
CONFIG_NAMES = {
    "a": "1 node, SQLite + disk",
    "b": "1 node, PG + S3",
    "c": "2 nodes, PG + S3, nginx",
    "d": "3 nodes, PG + S3, nginx",
}


# --------------------------------------------------------------------------------------------
# CPU accounting
# --------------------------------------------------------------------------------------------
def _proc_table():
    """{pid: (ppid, ticks)}: utime+stime+cutime+cstime of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        out[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    return out


def parse_groups(spec):
    """"berth=1,2;s3=3" -> {"berth": [1, 2], "s3": [3]}"""
    groups = {}
    for part in filter(None, (spec or "").split(";")):
        name, pids = part.split("=", 1)
        groups[name] = [int(p) for p in pids.split(",") if p]
    return groups


def cpu_snapshot(groups):
    """{group: seconds} of CPU used so far by the group's processes and their descendants."""
    table = _proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for name, roots in groups.items():
        seen, todo = set(), list(roots)
        while todo:
            p = todo.pop()
            if p in seen or p not in table:
                continue
            seen.add(p)
            todo.extend(children.get(p, ()))
        out[name] = sum(table[p][1] for p in seen) / CLK
    return out


class Cpu:
    """with Cpu(groups) as c: ...; c.fields(): {"cpu_berth": 1.23, ...}"""

    def __init__(self, groups):
        self.groups = groups

    def __enter__(self):
        self.before = cpu_snapshot(self.groups)
        return self

    def __exit__(self, *exc):
        self.after = cpu_snapshot(self.groups)

    def fields(self):
        return {f"cpu_{g}": round(self.after[g] - self.before[g], 3) for g in self.groups}


def emit(values, cpu):
    values.update(cpu.fields())
    print(" ".join(f"{k}={v}" for k, v in values.items()))


# --------------------------------------------------------------------------------------------
# test blobs: slices of one random pool file, at distinct offsets, so every blob is new
# --------------------------------------------------------------------------------------------
def slice_digest(f, offset, size):
    h = hashlib.sha256()
    f.seek(offset)
    left = size
    while left:
        chunk = f.read(min(4 * MiB, left))
        h.update(chunk)
        left -= len(chunk)
    return "sha256:" + h.hexdigest()


def cmd_prepare(a):
    biggest = max(a.big_size, a.par_size, a.pull_size)
    count = a.big_count + a.par_count + 1 + a.small_count
    need = biggest + count * 4096 + SMALL
    if not os.path.exists(a.pool) or os.path.getsize(a.pool) < need:
        with open(a.pool, "wb") as f:
            left = need
            while left:
                n = min(16 * MiB, left)
                f.write(os.urandom(n))
                left -= n
    plan = {"pool": a.pool, "big": [], "par": [], "small": []}
    k = 0
    with open(a.pool, "rb") as f:
        for kind, n, size in (("big", a.big_count, a.big_size), ("par", a.par_count, a.par_size)):
            for _ in range(n):
                plan[kind].append({"offset": k * 4096, "size": size,
                                   "digest": slice_digest(f, k * 4096, size)})
                k += 1
        plan["pull"] = {"offset": k * 4096, "size": a.pull_size,
                        "digest": slice_digest(f, k * 4096, a.pull_size)}
        k += 1
        for _ in range(a.small_count):
            # 4 KiB at an odd offset: never the start of a larger blob above
            off = k * 4096 + 7
            f.seek(off)
            plan["small"].append({"offset": off, "size": SMALL,
                                  "digest": "sha256:" + hashlib.sha256(f.read(SMALL)).hexdigest()})
            k += 1
    with open(a.out, "w") as out:
        json.dump(plan, out)
    print(f"blobs big={a.big_count}x{a.big_size} par={a.par_count}x{a.par_size} "
          f"pull={a.pull_size} small={a.small_count}")


def load_plan(path):
    with open(path) as f:
        return json.load(f)


def push_one(c, fd, blob, repo):
    """One monolithic `POST ?digest=` with the whole body (sendfile from the pool)."""
    path = f"/v2/{repo}/blobs/uploads/?" + urllib.parse.urlencode({"digest": blob["digest"]})
    st, h, d = c.request("POST", path, headers={"Content-Type": "application/octet-stream"},
                         file=fd, offset=blob["offset"], count=blob["size"])
    expect(st, (201,), f"POST ?digest= {blob['digest'][:19]}", h, d)


def verify(url, auth, repo, blobs):
    c = Client(url, auth)
    for blob in blobs:
        bench.verify_blob(c, repo, blob["digest"], blob["size"])
    c.close()


def cmd_warm(a):
    """GET /v2/ with the admin's credentials a few times over fresh connections: through a
    round-robin balancer every node checks the password once (Argon2, then cached), before
    any clock starts."""
    for _ in range(a.requests):
        c = Client(a.url, a.auth)
        st, h, d = c.request("GET", "/v2/")
        expect(st, (200,), "GET /v2/ with credentials", h, d)
        c.close()
    print("ok")


def cmd_push_big(a):
    plan = load_plan(a.blobs)
    blob = plan["pull"] if a.pull_blob else plan["big"][a.index]
    c = Client(a.url, a.auth)
    with open(plan["pool"], "rb") as f, Cpu(parse_groups(a.groups)) as cpu:
        t0 = time.perf_counter()
        push_one(c, f, blob, a.repo)
        dt = time.perf_counter() - t0
    c.close()
    verify(a.url, a.auth, a.repo, [blob])
    emit({"mbps": round(blob["size"] / dt / MB, 1), "bytes": blob["size"], "secs": round(dt, 3)}, cpu)


def run_threads(n, target):
    errors = []

    def wrap(i):
        try:
            target(i)
        except SystemExit as e:  # die() in a thread
            errors.append(f"thread {i}: exit {e.code}")
        except Exception as e:  # noqa: BLE001
            errors.append(f"thread {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        die("; ".join(errors))


def cmd_push_par(a):
    """C clients at once, each pushing its own blob (one monolithic POST); aggregate MB/s."""
    plan = load_plan(a.blobs)
    blobs = plan["par"][a.run * a.clients:(a.run + 1) * a.clients]
    if len(blobs) < a.clients:
        die("push-par: not enough prepared blobs for this run")
    clients = [Client(a.url, a.auth) for _ in blobs]

    def one(i):
        with open(plan["pool"], "rb") as f:
            push_one(clients[i], f, blobs[i], a.repo)

    with Cpu(parse_groups(a.groups)) as cpu:
        t0 = time.perf_counter()
        run_threads(len(blobs), one)
        dt = time.perf_counter() - t0
    for c in clients:
        c.close()
    verify(a.url, a.auth, a.repo, blobs)
    total = sum(b["size"] for b in blobs)
    emit({"mbps": round(total / dt / MB, 1), "bytes": total, "secs": round(dt, 3)}, cpu)


def cmd_push_small(a):
    """C clients pushing distinct 4 KiB blobs (one POST ?digest= each) for S seconds: each is
    an object write and a few short write transactions (claim, link), so this is the
    database-bound workload; blobs/s."""
    plan = load_plan(a.blobs)
    per_run = len(plan["small"]) // max(1, a.runs)
    pool = plan["small"][a.run * per_run:(a.run + 1) * per_run]
    lock = threading.Lock()
    state = {"next": 0, "done": []}
    deadline = [0.0]

    def one(i):
        c = Client(a.url, a.auth)
        with open(plan["pool"], "rb") as f:
            while time.perf_counter() < deadline[0]:
                with lock:
                    k = state["next"]
                    state["next"] += 1
                if k >= len(pool):
                    die("push-small: ran out of prepared blobs (raise --small-count)")
                push_one(c, f, pool[k], a.repo)
                with lock:
                    state["done"].append(pool[k])
        c.close()

    with Cpu(parse_groups(a.groups)) as cpu:
        t0 = time.perf_counter()
        deadline[0] = t0 + a.seconds
        run_threads(a.clients, one)
        dt = time.perf_counter() - t0
    done = state["done"]
    verify(a.url, a.auth, a.repo, done[:: max(1, len(done) // 20)])  # a sample
    emit({"blobs_per_s": round(len(done) / dt, 1), "blobs": len(done), "secs": round(dt, 3)}, cpu)


def cmd_pull(a):
    """C curl processes at once, each GETting the blob K times over one connection (with
    --follow: each GET answers 307 and curl follows it to the presigned URL); aggregate MB/s =
    all bytes / wall time. Status, size and number of redirects checked per transfer."""
    url = f"{a.url}/v2/{a.repo}/blobs/{a.digest}"
    argv = ["curl", "-sS", "-w", "%{http_code} %{size_download} %{num_redirects}\n"]
    if a.follow:
        argv.append("-L")
    for _ in range(a.per_client):
        argv += ["-o", "/dev/null", url]
    with Cpu(parse_groups(a.groups)) as cpu:
        t0 = time.perf_counter()
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(a.clients)]
        outs = [p.communicate() for p in procs]
        dt = time.perf_counter() - t0
    want_redirects = "1" if a.follow else "0"
    total = 0
    for p, (out, err) in zip(procs, outs):
        if p.returncode != 0:
            die(f"pull: curl exited {p.returncode}: {err.strip()[:300]}")
        lines = out.split()
        for code, got, redirects in zip(lines[0::3], lines[1::3], lines[2::3]):
            if code != "200" or int(got) != a.size or redirects != want_redirects:
                die(f"pull: HTTP {code}, {got} bytes, {redirects} redirects "
                    f"(wanted 200, {a.size}, {want_redirects})")
            total += int(got)
    if total != a.size * a.clients * a.per_client:
        die(f"pull: got {total} bytes, wanted {a.size * a.clients * a.per_client}")
    emit({"mbps": round(total / dt / MB, 1), "bytes": total, "gets": a.clients * a.per_client,
          "secs": round(dt, 3)}, cpu)


def cmd_manifest(a):
    """wrk -t2 -c64 on a manifest GET by tag, anonymous (as run.sh); the answer is checked
    once first (wrk checks status codes only)."""
    if a.expect_digest:
        u = urllib.parse.urlsplit(a.url)
        for _ in range(6):  # through a balancer: several nodes
            c = Client(a.url)
            st, h, d = c.request("GET", u.path, headers={"Accept": bench.OCI_MANIFEST})
            c.close()
            expect(st, (200,), "GET manifest by tag", h, d)
            if "sha256:" + hashlib.sha256(d).hexdigest() != a.expect_digest:
                die("GET manifest: the body is not the manifest pushed")
    argv = ["wrk", f"-c{a.connections}", f"-t{a.threads}", f"-d{a.seconds}s", "--latency",
            "--timeout", "10s", "-H", f"Accept: {bench.OCI_MANIFEST}", a.url]
    with Cpu(parse_groups(a.groups)) as cpu:
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if not (rps and p99 and total):
        die(f"could not parse wrk output:\n{out}")
    errors = 0
    for pat in (r"Non-2xx or 3xx responses: (\d+)",
                r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        m = re.search(pat, out)
        if m:
            errors += sum(int(x) for x in m.groups())
    if errors * 100 > int(total.group(1)):
        die(f"manifest: {errors} errors of {total.group(1)} requests:\n{out}")
    emit({"rps": round(float(rps.group(1))), "p99_ms": round(bench.parse_wrk_latency(p99.group(1)), 2),
          "requests": int(total.group(1)), "errors": errors}, cpu)


def cmd_data_endpoint(a):
    """Switch the data endpoint setting (PATCH /berth/v1/registry, admin Basic) and check
    with anonymous probes (each may reach another node) that a blob GET answers 307 to a
    presigned URL (on) or 200 (off)."""
    on = a.enabled == "true"
    c = Client(a.url, a.auth)
    body = json.dumps({"data_endpoint_enabled": on}).encode()
    st, h, d = c.request("PATCH", "/berth/v1/registry", body=body,
                         headers={"Content-Type": "application/json"})
    expect(st, (200,), "PATCH /berth/v1/registry data_endpoint_enabled", h, d)
    c.close()
    for _ in range(a.probes):
        c = Client(a.url)
        st, h, d = c.request("GET", f"/v2/{a.repo}/blobs/{a.digest}",
                             headers={"Range": "bytes=0-0"})
        c.close()
        if on and (st != 307 or "X-Amz-Signature=" not in h.get("location", "")):
            die(f"data endpoint on: GET answered {st} {h.get('location', '')[:120]!r}, "
                "wanted 307 to a presigned S3 URL")
        if not on and st not in (200, 206):
            die(f"data endpoint off: GET answered {st}, wanted the bytes")
    print("ok")


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------
def load_raw(path):
    """Lines "measurement config run key=value ..." (and "# note" lines)."""
    runs, notes = {}, []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                notes.append(line[2:])
                continue
            parts = line.split()
            if len(parts) < 4:
                continue
            m, cfg, _run = parts[:3]
            kv = dict(p.split("=", 1) for p in parts[3:])
            runs.setdefault((m, cfg), []).append({k: float(v) for k, v in kv.items()})
    return runs, notes


def median(rows, key):
    vals = [r[key] for r in rows if key in r]
    return statistics.median(vals) if vals else None


def per_unit(rows, group, unit_key, scale):
    """Median over runs of (CPU of GROUP) / (units) * scale."""
    vals = [r[f"cpu_{group}"] / r[unit_key] * scale for r in rows
            if f"cpu_{group}" in r and r.get(unit_key)]
    return statistics.median(vals) if vals else None


def cmd_report(a):
    runs, notes = load_raw(a.raw)
    nodes = {"a": 1, "b": 1, "c": 2, "d": 3}
    cfgs = [c for c in CONFIGS if any(k[1] == c for k in runs)]

    def fmt(v, digits=0):
        if v is None:
            return "-"
        return f"{v:,.{digits}f}"

    header = "| measurement | " + " | ".join(f"({c}) {CONFIG_NAMES[c]}" for c in cfgs) + " |"
    sep = "|---|" + "---|" * len(cfgs)
    lines = [header, sep]

    def row(label, fn, digits=0):
        lines.append(f"| {label} | " + " | ".join(fmt(fn(c), digits) for c in cfgs) + " |")

    g = lambda m, c: runs.get((m, c), [])  # noqa: E731
    big = next((r["bytes"] for rows in [g("push_big", c) for c in cfgs] for r in rows), 0)
    par = next((r for rows in [g("push_par", c) for c in cfgs] for r in rows), None)
    pull = next((r for rows in [g("pull_stream", c) for c in cfgs] for r in rows), None)
    npar = notes_value(notes, "par_clients")
    npull = notes_value(notes, "pull_clients")
    row(f"push, {big / MiB:.0f} MiB monolithic, MB/s", lambda c: median(g("push_big", c), "mbps"))
    row(f"push, {npar} clients x {par['bytes'] / MiB / max(1, int(npar or 1)):.0f} MiB, aggregate MB/s"
        if par else "push, parallel, MB/s", lambda c: median(g("push_par", c), "mbps"))
    row("push, 4 KiB blobs, 8 clients, blobs/s", lambda c: median(g("push_small", c), "blobs_per_s"))
    row(f"pull, {npull} clients, streamed by the nodes, MB/s" if pull else "pull, streamed, MB/s",
        lambda c: median(g("pull_stream", c), "mbps"))
    row("pull, same, 307 to presigned S3 URL, MB/s", lambda c: median(g("pull_redirect", c), "mbps"))
    row("manifest GET by tag, 64 connections, req/s", lambda c: median(g("manifest", c), "rps"))
    row("manifest GET p99, ms", lambda c: median(g("manifest", c), "p99_ms"), 2)
    lines.append("| **CPU, all Berth nodes together** | " + " | ".join("" for _ in cfgs) + " |")
    row("Berth ms per MB pushed (monolithic)", lambda c: per_unit(g("push_big", c), "berth", "bytes", 1e3 * MB), 2)
    row("Berth ms per MB pushed (parallel)", lambda c: per_unit(g("push_par", c), "berth", "bytes", 1e3 * MB), 2)
    row("Berth ms per 4 KiB blob pushed", lambda c: per_unit(g("push_small", c), "berth", "blobs", 1e3), 2)
    row("Berth ms per MB pulled, streamed", lambda c: per_unit(g("pull_stream", c), "berth", "bytes", 1e3 * MB), 2)
    row("Berth ms per MB pulled, redirected", lambda c: per_unit(g("pull_redirect", c), "berth", "bytes", 1e3 * MB), 3)
    row("Berth us per manifest GET", lambda c: per_unit(g("manifest", c), "berth", "requests", 1e6))
    row("Berth us per manifest GET, per node's share", lambda c: (
        (per_unit(g("manifest", c), "berth", "requests", 1e6) or 0) / nodes[c]) or None)
    lines.append("| **CPU elsewhere** | " + " | ".join("" for _ in cfgs) + " |")
    for grp, label in (("pg", "PostgreSQL"), ("s3", "s3s-fs"), ("nginx", "nginx")):
        row(f"{label} ms per MB pushed (monolithic)",
            lambda c, grp=grp: per_unit(g("push_big", c), grp, "bytes", 1e3 * MB), 2)
        row(f"{label} ms per 4 KiB blob pushed",
            lambda c, grp=grp: per_unit(g("push_small", c), grp, "blobs", 1e3), 2)
        row(f"{label} ms per MB pulled, streamed",
            lambda c, grp=grp: per_unit(g("pull_stream", c), grp, "bytes", 1e3 * MB), 2)
        row(f"{label} ms per MB pulled, redirected",
            lambda c, grp=grp: per_unit(g("pull_redirect", c), grp, "bytes", 1e3 * MB), 2)
        row(f"{label} us per manifest GET",
            lambda c, grp=grp: per_unit(g("manifest", c), grp, "requests", 1e6))
    # rows where a group has no process in a configuration print "-": drop all-empty rows
    lines = [ln for ln in lines if not re.fullmatch(r"\| [^|]+ \|( - \|)+", ln)]
    out = ["Berth scale-out benchmark (bench/nodes.sh): medians over runs"]
    out += [n for n in notes if not n.startswith("par_clients") and not n.startswith("pull_clients")]
    out += ["", *lines, "",
            "CPU columns: seconds of CPU the processes used during the workload (utime+stime from",
            "/proc, descendants included) divided by what the workload moved; 'per node's share'",
            "divides by the number of nodes. CPU is read in clock ticks (10 ms): a 0 means less",
            "than one tick over the whole workload (the 307s of the redirected pulls, for one).",
            "Every process shares this machine's cores with the others and with the clients",
            "(curl, wrk, the Python pushers)."]
    print("\n".join(out))


def notes_value(notes, key):
    for n in notes:
        if n.startswith(key + "="):
            return n.split("=", 1)[1].split()[0]
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(s, auth=True):
        s.add_argument("url")
        if auth:
            s.add_argument("--auth", required=True, help="user:password, sent as Basic")
        s.add_argument("--groups", default="", help='"name=PID,PID;name=PID": CPU accounted')

    s = sub.add_parser("prepare")
    s.add_argument("pool")
    for opt in ("--big-size", "--big-count", "--par-size", "--par-count", "--pull-size", "--small-count"):
        s.add_argument(opt, type=int, required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_prepare)

    s = sub.add_parser("warm")
    common(s)
    s.add_argument("--requests", type=int, default=6)
    s.set_defaults(fn=cmd_warm)

    s = sub.add_parser("push-big")
    common(s)
    s.add_argument("--blobs", required=True); s.add_argument("--index", type=int, default=0)
    s.add_argument("--pull-blob", action="store_true", help="push the pull workload's blob (set-up)")
    s.add_argument("--repo", default="bench/big")
    s.set_defaults(fn=cmd_push_big)

    s = sub.add_parser("push-par")
    common(s)
    s.add_argument("--blobs", required=True); s.add_argument("--run", type=int, required=True)
    s.add_argument("--clients", type=int, default=4)
    s.add_argument("--repo", default="bench/par")
    s.set_defaults(fn=cmd_push_par)

    s = sub.add_parser("push-small")
    common(s)
    s.add_argument("--blobs", required=True); s.add_argument("--run", type=int, required=True)
    s.add_argument("--runs", type=int, required=True)
    s.add_argument("--clients", type=int, default=8)
    s.add_argument("--seconds", type=float, default=5)
    s.add_argument("--repo", default="bench/small")
    s.set_defaults(fn=cmd_push_small)

    s = sub.add_parser("pull")
    common(s, auth=False)
    s.add_argument("--repo", required=True); s.add_argument("--digest", required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--clients", type=int, default=8)
    s.add_argument("--per-client", type=int, default=2)
    s.add_argument("--follow", action="store_true")
    s.set_defaults(fn=cmd_pull)

    s = sub.add_parser("manifest")
    common(s, auth=False)
    s.add_argument("--seconds", type=int, default=10)
    s.add_argument("--connections", type=int, default=64)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--expect-digest", default="")
    s.set_defaults(fn=cmd_manifest)

    s = sub.add_parser("data-endpoint")
    common(s)
    s.add_argument("--repo", required=True); s.add_argument("--digest", required=True)
    s.add_argument("--enabled", choices=["true", "false"], required=True)
    s.add_argument("--probes", type=int, default=6)
    s.set_defaults(fn=cmd_data_endpoint)

    s = sub.add_parser("report")
    s.add_argument("raw")
    s.set_defaults(fn=cmd_report)

    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
