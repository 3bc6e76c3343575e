#!/usr/bin/env python3
"""Measurement helpers for bench/data_endpoint.sh (Python 3.11, standard library only).

The script owns the processes (build, start, stop, cleanup); this file only switches the data
endpoint, measures and reports. The CPU monitor, the quiet-machine wait and the per-phase CPU
summary are bench.py's (`python3 bench/bench.py cpu-monitor|wait-quiet|cpu-summary`).
Every measuring subcommand prints one line on stdout and exits non-zero (with the reason on
stderr) when an answer is wrong (status, byte count, number of redirects), so a broken
redirect can never produce a good-looking number.

Variants (the second column of the raw file):
  direct     the login server's blob URL, data endpoint switched off: 200 with the bytes
  redirect   the same URL, data endpoint switched on, `curl -L`: 307, then the signed URL
  signed     the signed URL itself, fetched once beforehand: the data endpoint alone, no 307

Subcommands:
  toggle     URL --auth USER:PW --on|--off --probe PATH  -> switch data_endpoint_enabled, check
  signed-url URL PATH                                     -> the Location of the 307
  verify     URL --digest D --size N [--follow]           -> GET, check length and SHA-256
  pull-one   URL --size N --repeat K --redirects R        -> mbps=.. redirect_ms=..
  pull-many  URL --size N --clients C --per-client K --redirects R -> mbps=.. secs=..
  latency    URL --size N --count K --redirects R         -> total_ms=.. mean_us=.. p50_us=.. p99_us=..
  report     RAWFILE                                      -> the results table
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.parse

MB = 1_000_000
TARGET = 0.95  # the issue: redirect at least 95% of a direct pull


def die(msg):
    print(f"data_endpoint.py: {msg}", file=sys.stderr)
    sys.exit(1)


def request(url, method="GET", body=None, headers=None):
    """One request on a fresh connection, redirects not followed: (status, headers, body)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=600)
    path = u.path + ("?" + u.query if u.query else "")
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return resp.status, hdrs, data


# --------------------------------------------------------------------------------------------
# set-up
# --------------------------------------------------------------------------------------------
def cmd_toggle(a):
    """PATCH /berth/v1/registry {"data_endpoint_enabled": on}, then check that a credential-less
    GET of PROBE (a blob path on the login server) answers as it should: 307 to the data
    endpoint when on, 200 when off."""
    on = bool(a.on)
    authz = "Basic " + base64.b64encode(a.auth.encode()).decode()
    st, h, d = request(a.url + "/berth/v1/registry", "PATCH",
                       json.dumps({"data_endpoint_enabled": on}).encode(),
                       {"Authorization": authz, "Content-Type": "application/json"})
    if st != 200:
        die(f"PATCH data_endpoint_enabled={on}: HTTP {st}: {d[:300]!r}")
    if json.loads(d).get("data_endpoint_enabled") is not on:
        die(f"PATCH data_endpoint_enabled={on}: the answer says {d[:300]!r}")
    st, h, d = request(a.url + a.probe)
    want = 307 if on else 200
    if st != want:
        die(f"GET {a.probe} with the data endpoint {'on' if on else 'off'}: HTTP {st}, wanted {want}")
    if on and a.data_url and not h.get("location", "").startswith(a.data_url + "/"):
        die(f"307 Location {h.get('location')!r} is not on the data endpoint {a.data_url}")
    print("on" if on else "off")


def cmd_signed_url(a):
    st, h, d = request(a.url + a.path)
    if st != 307 or "location" not in h:
        die(f"GET {a.path}: HTTP {st} (wanted 307 with a Location): {d[:300]!r}")
    print(h["location"])


def cmd_verify(a):
    """GET (curl, optionally following redirects) to a pipe; check the length and digest."""
    argv = ["curl", "-sS", "--fail"] + (["-L"] if a.follow else []) + [a.url]
    h = hashlib.sha256()
    n = 0
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as p:
        while chunk := p.stdout.read(4 << 20):
            h.update(chunk)
            n += len(chunk)
    if p.returncode != 0:
        die(f"verify: curl exited {p.returncode} for {a.url}")
    got = "sha256:" + h.hexdigest()
    if n != a.size or got != a.digest:
        die(f"verify {a.url}: {n} bytes, {got} (wanted {a.size} bytes, {a.digest})")
    print("ok")


# --------------------------------------------------------------------------------------------
# measurements: curl, as bench.py's pulls; -L when a redirect is expected
# --------------------------------------------------------------------------------------------
W_FMT = "%{http_code} %{size_download} %{time_total} %{num_redirects} %{time_redirect}\n"


def curl_argv(url, count, redirects):
    argv = ["curl", "-sS", "-w", W_FMT]
    if redirects:
        argv.append("-L")
    for _ in range(count):
        argv += ["-o", "/dev/null", url]
    return argv


def parse_transfers(out, url, count, size, redirects):
    """[(time_total s, time_redirect s)] per transfer; dies on a wrong status, byte count or
    number of redirects."""
    f = out.split()
    if len(f) != 5 * count:
        die(f"GET {url}: {len(f) // 5} transfers, wanted {count}")
    res = []
    for i in range(0, len(f), 5):
        code, got, total, nred, tred = f[i:i + 5]
        if code != "200" or int(got) != size or int(nred) != redirects:
            die(f"GET {url}: HTTP {code}, {got} bytes, {nred} redirects "
                f"(wanted 200, {size} bytes, {redirects} redirects)")
        res.append((float(total), float(tred)))
    return res


def cpu_ticks(pid):
    """{thread id: CPU time in ns} of PID's threads (the server: both listeners are one
    process), from /proc/PID/task/*/schedstat, which is exact where /proc/PID/stat counts
    10 ms ticks."""
    if not pid:
        return {}
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def cpu_ms(pid, t0):
    """CPU ms used by PID's threads since the snapshot T0: threads started since count from 0;
    a thread that ended in between (tokio retires idle blocking threads) drops out, and with it
    at most the little it ran before ending."""
    t1 = cpu_ticks(pid)
    return sum(max(0, v - t0.get(tid, 0)) for tid, v in t1.items()) / 1e6


def cmd_pull_one(a):
    """One curl process GETting the URL `repeat` times in a row (connections kept alive, to
    both hosts when redirected); MB/s from the sum of curl's per-transfer times, which include
    the redirect step. Also prints curl's time_redirect per GET (0 without a redirect) and the
    server's CPU time per GB served."""
    c0 = cpu_ticks(a.pid)
    out = subprocess.run(curl_argv(a.url, a.repeat, a.redirects), check=True,
                         capture_output=True, text=True).stdout
    t = parse_transfers(out, a.url, a.repeat, a.size, a.redirects)
    cpu = cpu_ms(a.pid, c0)
    secs = sum(x[0] for x in t)
    print(f"mbps={a.size * a.repeat / secs / MB:.1f} "
          f"redirect_ms={1000 * sum(x[1] for x in t) / len(t):.3f} secs={secs:.3f} "
          f"cpu_ms_per_gb={cpu / (a.size * a.repeat / 1e9):.0f}")


def cmd_pull_many(a):
    """N curl processes in parallel, each GETting the URL K times (over kept-alive
    connections); aggregate MB/s = all bytes / wall time from first start to last finish; and
    the server's CPU time per GB served."""
    argv = curl_argv(a.url, a.per_client, a.redirects)
    c0 = cpu_ticks(a.pid)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(a.clients)]
    outs = [p.communicate() for p in procs]
    dt = time.perf_counter() - t0
    cpu = cpu_ms(a.pid, c0)
    total = 0
    for p, (out, err) in zip(procs, outs):
        if p.returncode != 0:
            die(f"pull-many: curl exited {p.returncode}: {err.strip()[:300]}")
        total += a.size * len(parse_transfers(out, a.url, a.per_client, a.size, a.redirects))
    print(f"mbps={total / dt / MB:.1f} secs={dt:.2f} cpu_ms_per_gb={cpu / (total / 1e9):.0f}")


def cmd_latency(a):
    """One curl process, COUNT sequential GETs of a small blob over kept-alive connections;
    curl's per-transfer time_total (redirect included): the sum and the distribution; and the
    server's CPU time per GET (both requests of a redirected one)."""
    c0 = cpu_ticks(a.pid)
    out = subprocess.run(curl_argv(a.url, a.count, a.redirects), check=True,
                         capture_output=True, text=True).stdout
    cpu = cpu_ms(a.pid, c0)
    t = sorted(x[0] * 1e6 for x in parse_transfers(out, a.url, a.count, a.size, a.redirects))
    p99 = t[min(len(t) - 1, int(round(0.99 * len(t))) - 1)]
    print(f"total_ms={sum(t) / 1000:.2f} mean_us={statistics.fmean(t):.0f} "
          f"p50_us={statistics.median(t):.0f} p99_us={p99:.0f} cpu_us={1000 * cpu / a.count:.0f}")


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
# raw lines: "<measurement> <variant> <run> <value>"; "# ..." lines are notes.
VARIANTS = ("direct", "redirect", "signed")
ROWS = [  # key, label, unit, higher is better
    ("pull_one", "{big} pull, 1 client, warm cache", "MB/s", True),
    ("cpu_pull_one", "  Berth CPU time per GB served", "ms", False),
    ("pull_many", "{clients} clients x {small} pulls, aggregate", "MB/s", True),
    ("cpu_pull_many", "  Berth CPU time per GB served", "ms", False),
    ("small_total", "{count} sequential {tiny} GETs, total", "ms", False),
    ("small_p50", "  one {tiny} GET, p50", "us", False),
    ("small_p99", "  one {tiny} GET, p99", "us", False),
    ("cpu_small", "  Berth CPU time per GET", "us", False),
]
KEYS = {r[0] for r in ROWS} | {"redirect_ms", "push_mono"}


def human(n):
    for unit, f in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= f and n % f == 0:
            return f"{n // f} {unit}"
    return f"{n} B"


def load_raw(path):
    runs, meta = {}, []
    with open(path) as f:
        for line in f:
            if line.startswith("# "):
                meta.append(line[2:].rstrip())
                continue
            p = line.split()
            if len(p) == 4 and p[0] in KEYS:
                try:
                    runs.setdefault((p[0], p[1]), {})[p[2]] = float(p[3])
                except ValueError:
                    pass
    return runs, meta


def cmd_report(a):
    runs, meta = load_raw(a.raw)
    par = {"big": 1 << 30, "small": 64 << 20, "tiny": 4096, "clients": 64, "count": 200}
    for m in meta:
        for k, v in re.findall(r"\b(\w+)=(\d+)\b", m):
            if k in par:
                par[k] = int(v)
    par = {k: (human(v) if k in ("big", "small", "tiny") else v) for k, v in par.items()}
    med = {k: statistics.median(v.values()) for k, v in runs.items()}

    def fmt(v, unit):
        if v is None:
            return "-"
        return f"{v:.1f}" if unit == "ms" and v < 100 else f"{v:,.0f}"

    def ratio(key, var, better_high):
        d, x = med.get((key, "direct")), med.get((key, var))
        if not d or not x:
            return "-"
        return f"{x / d:.3f}" if better_high else f"{x / d:.2f}x"

    hdr = ("measurement", "unit", "direct", "redirect", "signed URL", "redirect/direct",
           "signed/direct", "runs")
    rows = []
    for key, label, unit, high in ROWS:
        if not any((key, v) in med for v in VARIANTS):
            continue
        n = max(len(runs.get((key, v), {})) for v in VARIANTS)
        rows.append((label.format(**par), unit,
                     *(fmt(med.get((key, v)), unit) for v in VARIANTS),
                     ratio(key, "redirect", high), ratio(key, "signed", high), str(n)))
    widths = [max(len(r[i]) for r in rows + [hdr]) for i in range(len(hdr))]
    lines = [m for m in meta if not m.startswith("  ")]
    lines += ["", "medians of the runs; ratios of medians; MB/s = 10^6 bytes/s; us = microseconds",
              "direct = login server, data endpoint off; redirect = same URL, data endpoint on, "
              "curl -L (307, then the data endpoint);",
              "signed URL = the 307's Location fetched directly (the data endpoint without the "
              "redirect step); small GETs: lower is better"]
    for i, r in enumerate([hdr] + rows):
        lines.append("  ".join(s.ljust(widths[j]) if j in (0, 1) else s.rjust(widths[j])
                               for j, s in enumerate(r)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    # runs are paired (same run, alternating order): the ratio per run shows the spread
    for key in ("pull_one", "pull_many"):
        d, x = runs.get((key, "direct"), {}), runs.get((key, "redirect"), {})
        per = [f"{x[r] / d[r]:.2f}" for r in sorted(d, key=int) if r in x and d[r]]
        if per:
            lines.append(f"  redirect/direct per run, {key}: {' '.join(per)}")
    r = runs.get(("redirect_ms", "redirect"))
    if r:
        v = statistics.median(r.values())
        lines.append(f"  redirect step of the {par['big']} pulls (curl time_redirect, per GET): "
                     f"median {v:.2f} ms")
    pushes = [f"{b} {runs[('push_mono', b)]['1']:,.0f}" for b in ("big", "small")
              if ("push_mono", b) in runs and "1" in runs[("push_mono", b)]]
    if pushes:
        lines.append(f"  set-up pushes (monolithic POST ?digest=, once, MB/s): {', '.join(pushes)}")
    lines += [m for m in meta if m.startswith("  ")]
    checks = []
    for key, name in (("pull_one", "1-client pull"), ("pull_many", f"{par['clients']}-client pulls")):
        d, x = med.get((key, "direct")), med.get((key, "redirect"))
        if d and x:
            checks.append((f"{name} through the redirect >= {TARGET:.0%} of direct: {x / d:.1%}",
                           x / d >= TARGET))
    if checks:
        lines += ["", "target (issue: pull throughput through the data endpoint redirect, "
                      "at least 95% of a direct pull):"]
        lines += [f"  [{'PASS' if ok else 'FAIL'}] {text}" for text, ok in checks]
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("toggle")
    s.add_argument("url"); s.add_argument("--auth", required=True)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--on", action="store_true"); g.add_argument("--off", action="store_true")
    s.add_argument("--probe", required=True, help="a blob path on the login server")
    s.add_argument("--data-url", default="", help="the data endpoint's base URL (checked when on)")
    s.set_defaults(fn=cmd_toggle)

    s = sub.add_parser("signed-url")
    s.add_argument("url"); s.add_argument("path")
    s.set_defaults(fn=cmd_signed_url)

    s = sub.add_parser("verify")
    s.add_argument("url"); s.add_argument("--digest", required=True)
    s.add_argument("--size", type=int, required=True); s.add_argument("--follow", action="store_true")
    s.set_defaults(fn=cmd_verify)

    for name, fn in (("pull-one", cmd_pull_one), ("pull-many", cmd_pull_many), ("latency", cmd_latency)):
        s = sub.add_parser(name)
        s.add_argument("url"); s.add_argument("--size", type=int, required=True)
        s.add_argument("--redirects", type=int, default=0, help="redirects each GET must take (-L if > 0)")
        s.add_argument("--pid", type=int, default=0, help="the server, for its CPU time")
        if name == "pull-one":
            s.add_argument("--repeat", type=int, default=1)
        if name == "pull-many":
            s.add_argument("--clients", type=int, default=64)
            s.add_argument("--per-client", type=int, default=1)
        if name == "latency":
            s.add_argument("--count", type=int, default=200)
        s.set_defaults(fn=fn)

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
