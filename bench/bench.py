#!/usr/bin/env python3
"""Measurement helpers for bench/run.sh (Python 3.11, standard library only).

run.sh owns the processes (build, start, stop, cleanup); this file only measures and reports.
Every measuring subcommand prints one line on stdout, `value` or `key=value ...`, and
exits non-zero (with the reason on stderr) when the server misbehaves, so a broken
registry can never produce a good-looking number.

Subcommands:
  push-mono    URL REPO FILE DIGEST --single-post|--post-put   -> MB/s
  push-chunked URL REPO FILE DIGEST --chunk BYTES              -> MB/s
  push-image   URL REPO TAG LAYERFILE                          -> manifest digest (setup, untimed)
  hash         FILE openssl|sha256sum                          -> MB/s
  disk-write   FILE DEST [--fsync]                             -> MB/s (dd, reference)
  pull-one     URL --size N [--repeat K]                       -> MB/s (curl -o /dev/null)
  pull-many    URL --clients N --per-client K --pid PID        -> mbps=.. peak_kib=..
  manifest     URL --seconds S --pid PID                       -> rps=.. p99_ms=.. errors=..
  rss          PID                                             -> VmRSS in KiB
  cpu-monitor  --root PID --out FILE                           -> other processes' CPU, sampled
  cpu-summary  LOG PHASES                                      -> their CPU use per phase
  wait-quiet   --root PID --max-wait S                         -> waits for a quiet machine
  cpu-busy                                                     -> % of CPU busy over 1 s
  report       RAWFILE                                         -> the results table
"""

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MB = 1_000_000
MiB = 1 << 20


def die(msg):
    print(f"bench.py: {msg}", file=sys.stderr)
    sys.exit(1)


# --------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 client: http.client for framing, socket.sendfile for request bodies, so the
# client copies as little as possible and leaves the CPU to the server under test.
# --------------------------------------------------------------------------------------------
class Client:
    def __init__(self, base, auth=""):
        """AUTH "user:password": sent as Basic on every request (Berth's admin for pushes)."""
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80
        self.conn = None
        self.authz = None
        if auth:
            import base64
            self.authz = "Basic " + base64.b64encode(auth.encode()).decode()

    def _connect(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
            self.conn.connect()
        return self.conn

    def request(self, method, path, body=None, headers=None, file=None, offset=0, count=0):
        """Send one request; the body is `body` (bytes) or `count` bytes of `file` from
        `offset` via sendfile. Returns (status, headers dict lower-cased, body bytes)."""
        conn = self._connect()
        headers = dict(headers or {})
        if self.authz:
            headers.setdefault("Authorization", self.authz)
        length = len(body) if body is not None else count
        conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        if method in ("POST", "PUT", "PATCH") or length:
            conn.putheader("Content-Length", str(length))
        conn.endheaders()
        send_err = None
        try:
            if body:
                conn.sock.sendall(body)
            elif file is not None and count:
                sent = conn.sock.sendfile(file, offset, count)
                if sent != count:
                    send_err = f"sendfile sent {sent} of {count} bytes"
        except OSError as e:  # the server may have answered early (an error) and closed
            send_err = f"{type(e).__name__}: {e}"
        try:
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            die(f"{method} {path}: no response ({e}); send error: {send_err}")
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if send_err or resp.will_close:
            self.close()
        if send_err:
            die(f"{method} {path}: body not fully sent ({send_err}); got {resp.status} {data[:300]!r}")
        return resp.status, hdrs, data

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def expect(status, want, what, hdrs, data):
    if status not in want:
        die(f"{what}: HTTP {status}, wanted {want}: {data[:500]!r} headers={hdrs}")


def location_path(loc):
    """Location may be absolute or relative; we always talk to the same host."""
    u = urllib.parse.urlsplit(loc)
    return u.path + ("?" + u.query if u.query else "")


def with_query(path, **params):
    sep = "&" if "?" in path else "?"
    return path + sep + urllib.parse.urlencode(params)


def verify_blob(c, repo, digest, size):
    st, h, d = c.request("HEAD", f"/v2/{repo}/blobs/{digest}")
    expect(st, (200,), f"HEAD blob {digest} after push", h, d)
    if int(h.get("content-length", -1)) != size:
        die(f"HEAD blob after push: Content-Length {h.get('content-length')} != {size}")


def push_blob_post_put(c, repo, fd, size, digest):
    """Start an upload (POST), then send everything in the closing PUT ?digest=."""
    st, h, d = c.request("POST", f"/v2/{repo}/blobs/uploads/")
    expect(st, (202,), "POST upload", h, d)
    path = with_query(location_path(h["location"]), digest=digest)
    st, h, d = c.request("PUT", path, headers={"Content-Type": "application/octet-stream"},
                         file=fd, count=size)
    expect(st, (201,), "PUT upload ?digest=", h, d)


def client_for_push(a):
    """A client for pushes; with credentials, one untimed GET /v2/ first so a one-time login
    cost (Berth checks the admin password with Argon2, then caches the success) is not timed."""
    c = Client(a.url, a.auth)
    if a.auth:
        st, h, d = c.request("GET", "/v2/")
        expect(st, (200,), "GET /v2/ with credentials", h, d)
    return c


def cmd_push_mono(a):
    size = os.path.getsize(a.file)
    c = client_for_push(a)
    with open(a.file, "rb") as f:
        t0 = time.perf_counter()
        if a.single_post:
            path = f"/v2/{a.repo}/blobs/uploads/?" + urllib.parse.urlencode({"digest": a.digest})
            st, h, d = c.request("POST", path, headers={"Content-Type": "application/octet-stream"},
                                 file=f, count=size)
            expect(st, (201,), "single-POST monolithic upload", h, d)
        else:
            push_blob_post_put(c, a.repo, f, size, a.digest)
        dt = time.perf_counter() - t0
    verify_blob(c, a.repo, a.digest, size)
    print(f"{size / dt / MB:.1f}")


def cmd_push_chunked(a):
    size = os.path.getsize(a.file)
    c = client_for_push(a)
    with open(a.file, "rb") as f:
        t0 = time.perf_counter()
        st, h, d = c.request("POST", f"/v2/{a.repo}/blobs/uploads/")
        expect(st, (202,), "POST upload", h, d)
        loc = location_path(h["location"])
        off = 0
        while off < size:
            n = min(a.chunk, size - off)
            st, h, d = c.request("PATCH", loc, file=f, offset=off, count=n, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{off}-{off + n - 1}"})
            expect(st, (202,), f"PATCH chunk at {off}", h, d)
            loc = location_path(h["location"])
            off += n
        st, h, d = c.request("PUT", with_query(loc, digest=a.digest))
        expect(st, (201,), "closing PUT ?digest=", h, d)
        dt = time.perf_counter() - t0
    verify_blob(c, a.repo, a.digest, size)
    print(f"{size / dt / MB:.1f}")


def sha256_file(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def cmd_push_image(a):
    """Push config blob + one layer + an OCI image manifest under a tag; print its digest."""
    import hashlib
    c = client_for_push(a)
    layer_size = os.path.getsize(a.layer)
    layer_digest = sha256_file(a.layer)
    with open(a.layer, "rb") as f:
        push_blob_post_put(c, a.repo, f, layer_size, layer_digest)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }, separators=(",", ":")).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    st, h, d = c.request("POST", f"/v2/{a.repo}/blobs/uploads/")
    expect(st, (202,), "POST upload (config)", h, d)
    st, h, d = c.request("PUT", with_query(location_path(h["location"]), digest=config_digest),
                         body=config, headers={"Content-Type": "application/octet-stream"})
    expect(st, (201,), "PUT config blob", h, d)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_size}],
    }, separators=(",", ":")).encode()
    mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    st, h, d = c.request("PUT", f"/v2/{a.repo}/manifests/{a.tag}", body=manifest,
                         headers={"Content-Type": OCI_MANIFEST})
    expect(st, (201,), "PUT manifest", h, d)
    st, h, d = c.request("GET", f"/v2/{a.repo}/manifests/{a.tag}", headers={"Accept": OCI_MANIFEST})
    expect(st, (200,), "GET manifest after push", h, d)
    if d != manifest:
        die("GET manifest returned different bytes than were pushed")
    print(mdigest)


def cmd_push_blob(a):
    """Setup (untimed): push FILE as a blob with POST + PUT."""
    size = os.path.getsize(a.file)
    c = client_for_push(a)
    with open(a.file, "rb") as f:
        push_blob_post_put(c, a.repo, f, size, a.digest)
    verify_blob(c, a.repo, a.digest, size)
    print("ok")


# --------------------------------------------------------------------------------------------
# hashing ceiling, pulls, manifests, memory
# --------------------------------------------------------------------------------------------
def cmd_hash(a):
    size = os.path.getsize(a.file)
    argv = {"openssl": ["openssl", "dgst", "-sha256", a.file],
            "sha256sum": ["sha256sum", a.file]}[a.tool]
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    print(f"{size / dt / MB:.1f}")


def cmd_disk_write(a):
    """Copy FILE (warm in the page cache) to DEST with dd and 4 MiB blocks, optionally with a
    final fsync: what writing the blob costs this disk, without HTTP or hashing."""
    size = os.path.getsize(a.file)
    subprocess.run(["sync"], check=True)
    argv = ["dd", f"if={a.file}", f"of={a.dest}", "bs=4M", "status=none"]
    if a.fsync:
        argv.append("conv=fsync")
    t0 = time.perf_counter()
    subprocess.run(argv, check=True)
    dt = time.perf_counter() - t0
    os.unlink(a.dest)
    print(f"{size / dt / MB:.1f}")


def cmd_pull_one(a):
    """One curl process GETting the URL `repeat` times in a row over one connection; MB/s from
    the sum of curl's per-transfer times."""
    argv = ["curl", "-sS", "-w", "%{http_code} %{size_download} %{time_total}\n"]
    for _ in range(a.repeat):
        argv += ["-o", "/dev/null", a.url]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()
    secs = 0.0
    for code, got, t in zip(out[0::3], out[1::3], out[2::3]):
        if code != "200" or int(got) != a.size:
            die(f"GET {a.url}: HTTP {code}, {got} bytes (wanted 200, {a.size} bytes)")
        secs += float(t)
    if len(out) != 3 * a.repeat:
        die(f"GET {a.url}: {len(out) // 3} transfers, wanted {a.repeat}")
    print(f"{a.size * a.repeat / secs / MB:.1f}")


def read_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon"):
                out[k] = int(v.split()[0])  # KiB
    return out


class PeakRss:
    """Peak RSS of PID while the block runs: VmHWM after resetting it (clear_refs 5), and
    VmRSS sampled every 20 ms as a cross-check; reports the larger of the two."""

    def __init__(self, pid):
        self.pid, self.sampled, self.stop = pid, 0, threading.Event()
        self.hwm_ok = False

    def __enter__(self):
        self.before = 0
        if self.pid:
            self.before = read_status(self.pid)["VmRSS"]
            try:
                with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                    f.write("5")
                self.hwm_ok = True
            except OSError:
                pass
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop.is_set():
            try:
                self.sampled = max(self.sampled, read_status(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            self.stop.wait(0.02)

    def __exit__(self, *exc):
        if self.pid:
            self.stop.set()
            self.thread.join()
            hwm = read_status(self.pid).get("VmHWM", 0) if self.hwm_ok else 0
            self.peak = max(hwm, self.sampled)
        else:
            self.peak = 0


def cmd_pull_many(a):
    """N curl processes in parallel, each GETting the URL K times over one kept-alive connection;
    aggregate MB/s = all bytes / wall time from first start to last finish."""
    per = max(1, a.per_client)
    argv = ["curl", "-sS", "--fail", "-w", "%{http_code} %{size_download}\n"]
    for _ in range(per):
        argv += ["-o", "/dev/null", a.url]
    with PeakRss(a.pid) as mem:
        t0 = time.perf_counter()
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(a.clients)]
        outs = [p.communicate() for p in procs]
        dt = time.perf_counter() - t0
    total = 0
    for p, (out, err) in zip(procs, outs):
        lines = out.split()
        if p.returncode != 0:
            die(f"pull-many: curl exited {p.returncode}: {err.strip()[:300]}")
        for code, got in zip(lines[0::2], lines[1::2]):
            if code != "200" or int(got) != a.size:
                die(f"pull-many: HTTP {code}, {got} bytes (wanted 200, {a.size})")
            total += int(got)
    if total != a.size * a.clients * per:
        die(f"pull-many: got {total} bytes, wanted {a.size * a.clients * per}")
    print(f"mbps={total / dt / MB:.1f} peak_kib={mem.peak} before_kib={mem.before} secs={dt:.2f}")


def parse_wrk_latency(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[u]


def cmd_manifest(a):
    if a.expect_digest:  # wrk checks status codes only: check the answer itself once first
        import hashlib
        u = urllib.parse.urlsplit(a.url)
        st, h, d = Client(a.url).request("GET", u.path, headers={"Accept": OCI_MANIFEST})
        expect(st, (200,), "GET manifest by tag", h, d)
        got = "sha256:" + hashlib.sha256(d).hexdigest()
        if got != a.expect_digest or h.get("docker-content-digest", got) != got:
            die(f"GET manifest: body digest {got}, header {h.get('docker-content-digest')}, "
                f"wanted {a.expect_digest}")
        if h.get("content-type") != OCI_MANIFEST:
            die(f"GET manifest: Content-Type {h.get('content-type')!r}, wanted {OCI_MANIFEST}")
    argv = ["wrk", f"-c{a.connections}", f"-t{a.threads}", f"-d{a.seconds}s", "--latency",
            "--timeout", "10s", "-H", f"Accept: {OCI_MANIFEST}", a.url]
    with PeakRss(a.pid) as mem:
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if not (rps and p99 and total):
        die(f"could not parse wrk output:\n{out}")
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    if errors and errors * 100 > int(total.group(1)):
        die(f"manifest: {errors} errors of {total.group(1)} requests:\n{out}")
    print(f"rps={float(rps.group(1)):.0f} p99_ms={parse_wrk_latency(p99.group(1)):.2f} "
          f"errors={errors} peak_kib={mem.peak}")


def cmd_berth_anonymous_pull(a):
    """Berth always has auth: turn on anonymous pull (management API, as the admin), so pulls
    and manifest GETs run without credentials, as they do against distribution here."""
    c = Client(a.url, a.auth)
    st, h, d = c.request("PATCH", "/berth/v1/registry", body=b'{"anonymous_pull_enabled":true}',
                         headers={"Content-Type": "application/json"})
    expect(st, (200,), "PATCH /berth/v1/registry anonymous_pull_enabled", h, d)
    if not json.loads(d).get("anonymous_pull_enabled"):
        die(f"anonymous pull still off: {d[:300]!r}")
    print("ok")


def cmd_rss(a):
    print(read_status(a.pid)["RssAnon" if a.anon else "VmRSS"])


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
# raw file lines: "<measurement> <server> <run> <value>"; "# ..." lines are notes.
# servers: berth, dist, nginx-sendfile, nginx-rw, ceiling (hash rows)
ROWS = [  # key, label, unit, ceiling kind
    ("push_mono", "{big} push, monolithic", "MB/s", "openssl"),
    ("push_chunked", "{big} push, {chunk} chunks", "MB/s", "openssl"),
    ("hash_openssl", "SHA-256, openssl dgst (ceiling)", "MB/s", "self"),
    ("hash_sha256sum", "SHA-256, sha256sum (coreutils)", "MB/s", "self"),
    ("disk_write", "{big} dd to the data disk (page cache)", "MB/s", "self"),
    ("disk_write_fsync", "{big} dd to the data disk + fsync", "MB/s", "self"),
    ("pull_one", "{big} pull, 1 client, warm cache", "MB/s", "nginx"),
    ("pull_many", "{clients} clients x {small} pulls, aggregate", "MB/s", "nginx"),
    ("manifest_rps", "manifest GET by tag, 64 conns", "req/s", None),
    ("manifest_p99", "manifest GET p99 latency", "ms", None),
    ("rss_idle", "RSS idle after start", "MiB", None),
    ("rss_anon_idle", "  of it anonymous (RssAnon: not code)", "MiB", None),
    ("rss_after_login", "RSS after one admin login (Berth)", "MiB", None),
    ("rss_peak_manifest", "RSS peak, manifest load", "MiB", None),
    ("rss_before_pulls", "RSS just before the {clients} pulls", "MiB", None),
    ("rss_peak_pulls", "RSS peak, {clients} concurrent pulls", "MiB", None),
    ("rss_after", "RSS idle after everything", "MiB", None),
]
KEYS = {r[0] for r in ROWS}
NGINX = ("nginx-sendfile", "nginx-rw")


def human(n):
    for unit, f in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= f and n % f == 0:
            return f"{n // f} {unit}"
    return f"{n} B"


def params(meta):
    """key=integer tokens of the notes (big=, small=, chunk=, clients=, ...)."""
    p = {"big": 1 << 30, "small": 64 << 20, "chunk": 16 << 20, "clients": 64}
    for m in meta:
        for k, v in re.findall(r"\b(\w+)=(\d+)\b", m):
            p[k] = int(v)
    return {"big": human(p["big"]), "small": human(p["small"]), "chunk": human(p["chunk"]),
            "clients": p["clients"]}


def load_raw(path):
    runs, meta = {}, []
    with open(path) as f:
        for line in f:
            if line.startswith("# "):
                meta.append(line[2:].rstrip())
                continue
            parts = line.split()
            if len(parts) == 4 and parts[0] in KEYS:
                try:
                    runs.setdefault((parts[0], parts[1]), []).append(float(parts[3]))
                except ValueError:
                    pass
    return runs, meta


def ceiling(med, key, kind):
    """(value, label) of the ceiling for a row."""
    if kind == "openssl":
        v = med.get(("hash_openssl", "ceiling"))
        return v, "openssl"
    if kind == "self":
        return med.get((key, "ceiling")), ""
    if kind == "nginx":
        best = max(((med[(key, n)], n) for n in NGINX if (key, n) in med), default=(None, ""))
        return best
    return None, ""


def check_targets(med):
    """[(text, ok)] for the issue's floors and BENCH.md's aims, where measured."""
    out = []
    g = med.get

    def rel(k, ref):
        b = g((k, "berth"))
        r = g((k, "dist")) if ref == "dist" else ceiling(med, k, ref)[0]
        return b / r if b and r else None

    for k, name in (("push_mono", "monolithic push"), ("push_chunked", "chunked push")):
        r = rel(k, "dist")
        if r is not None:
            out.append((f"{name} >= 2x distribution: {r:.2f}x", r >= 2))
        r = rel(k, "openssl")
        if r is not None:
            out.append((f"{name} >= 80% of openssl SHA-256: {100 * r:.0f}%", r >= 0.8))
    for k, name in (("pull_one", "1-client pull"), ("pull_many", "64-client pulls")):
        r = rel(k, "nginx")
        if r is not None:
            out.append((f"{name} >= 90% of nginx (best config): {100 * r:.0f}%", r >= 0.9))
    r = rel("manifest_rps", "dist")
    if r is not None:
        out.append((f"manifest req/s >= 3x distribution: {r:.2f}x", r >= 3))
    v = g(("rss_idle", "berth"))
    if v is not None:
        out.append((f"idle RSS <= 15 MiB: {v:.1f} MiB", v <= 15))
    v = g(("rss_peak_pulls", "berth"))
    if v is not None:
        out.append((f"peak RSS during 64 concurrent pulls <= 100 MiB: {v:.1f} MiB", v <= 100))
    v = g(("manifest_rps", "berth"))
    if v is not None:
        out.append((f"aim: manifest req/s >= 20,000 (ahead of the fastest peer): {v:,.0f}", v >= 20000))
    v = g(("rss_idle", "berth"))
    if v is not None:
        out.append((f"aim: idle RSS < 10 MiB: {v:.1f} MiB", v < 10))
    v = g(("rss_peak_pulls", "berth"))
    if v is not None:
        out.append((f"aim: peak RSS during 64 concurrent pulls < 40 MiB: {v:.1f} MiB", v < 40))
    return out


def cmd_report(a):
    runs, meta = load_raw(a.raw)
    par = params(meta)
    med = {k: statistics.median(v) for k, v in runs.items()}

    def fmt(v, unit):
        if v is None:
            return "-"
        return f"{v:.1f}" if unit in ("ms", "MiB") else f"{v:,.0f}"

    hdr = ("measurement", "unit", "berth", "distribution", "ceiling", "berth/dist", "berth/ceiling", "runs")
    rows = []
    for key, label, unit, kind in ROWS:
        b, d = med.get((key, "berth")), med.get((key, "dist"))
        c, cname = ceiling(med, key, kind)
        if b is None and d is None and c is None:
            continue
        n = max(len(runs.get((key, s), [])) for s in ("berth", "dist", "ceiling") + NGINX)
        cstr = fmt(c, unit) + (f" {cname}" if c is not None and cname else "")
        rows.append((label.format(**par), unit, fmt(b, unit), fmt(d, unit), cstr,
                     f"{b / d:.2f}" if b and d else "-",
                     f"{b / c:.2f}" if b and c and kind != "self" else "-", str(n)))
    widths = [max(len(r[i]) for r in rows + [hdr]) for i in range(len(hdr))]
    lines = [m for m in meta if not m.startswith("  ")]
    lines += ["", "medians of the runs; ratios of medians; MB/s = 10^6 bytes/s; MiB = 2^20 bytes"]
    for i, r in enumerate([hdr] + rows):
        lines.append("  ".join(s.ljust(widths[j]) if j in (0, 1) else s.rjust(widths[j])
                               for j, s in enumerate(r)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for key in ("pull_one", "pull_many"):
        vals = [f"{n} {med[(key, n)]:,.0f}" for n in NGINX if (key, n) in med]
        if vals:
            lines.append(f"  nginx, {key}: " + ", ".join(vals) + " MB/s (ceiling = the faster)")
    lines += [m for m in meta if m.startswith("  ")]
    checks = check_targets(med)
    if checks:
        lines += ["", "targets (issue floors; 'aim' = BENCH.md's stronger aims):"]
        lines += [f"  [{'PASS' if ok else 'FAIL'}] {text}" for text, ok in checks]
    print("\n".join(lines))


def proc_times():
    """{pid: (ppid, utime+stime+cutime+cstime in ticks)} for user-space processes."""
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
        ppid = int(fields[1])
        pid = int(name)
        if pid == 2 or ppid == 2:  # kernel threads
            continue
        out[pid] = (ppid, sum(int(x) for x in fields[11:15]))
    return out


def foreign_ticks(root):
    """CPU ticks used so far by processes outside the process tree of ROOT."""
    procs = proc_times()
    children = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    ours, todo = set(), [root]
    while todo:
        p = todo.pop()
        if p not in ours:
            ours.add(p)
            todo.extend(children.get(p, ()))
    return sum(t for pid, (_, t) in procs.items() if pid not in ours)


def foreign_percent(root, seconds):
    """Percent of all CPUs used by processes outside ROOT's tree over the next SECONDS."""
    t0, c0 = time.time(), foreign_ticks(root)
    time.sleep(seconds)
    t1, c1 = time.time(), foreign_ticks(root)
    pct = 100.0 * (c1 - c0) / os.sysconf("SC_CLK_TCK") / ((t1 - t0) * (os.cpu_count() or 1))
    # CPU time moves into a parent's cutime only when it reaps the child, so single samples can
    # over- or undershoot; keep them within what the machine has
    return min(100.0, max(0.0, pct))


def cmd_cpu_monitor(a):
    """Every INTERVAL, append "epoch percent" to OUT: CPU used by processes outside the process
    tree of ROOT (other builds, tests) as a percentage of all CPUs. A process that exits is
    counted through its parent's cutime/cstime, so short-lived compilers count too."""
    with open(a.out, "a") as out:
        while os.path.exists(f"/proc/{a.root}"):
            pct = foreign_percent(a.root, a.interval)
            out.write(f"{time.time():.2f} {pct:.1f}\n")
            out.flush()


def cmd_wait_quiet(a):
    """Wait until processes outside ROOT's tree use under THRESHOLD% of the CPUs over WINDOW
    seconds, for at most MAX_WAIT seconds; print the last reading."""
    deadline = time.time() + a.max_wait
    t0 = time.time()
    while True:
        pct = foreign_percent(a.root, a.window)
        if pct < a.threshold or time.time() >= deadline:
            if getattr(a, "_said", False):
                print(f"bench.py: waited {time.time() - t0:.0f} s; other processes now use "
                      f"{pct:.0f}%", file=sys.stderr)
            print(f"{pct:.0f}")
            return
        if not getattr(a, "_said", False):
            print(f"bench.py: other processes use {pct:.0f}% of the CPUs; waiting up to "
                  f"{max(0, deadline - time.time()):.0f} s for a quieter machine", file=sys.stderr)
            a._said = True


def cmd_cpu_summary(a):
    """Per phase ("epoch name" lines in PHASES), mean and max of the monitor's samples."""
    samples = []
    with open(a.log) as f:
        for line in f:
            t, p = line.split()
            samples.append((float(t), float(p)))
    phases = []
    with open(a.phases) as f:
        for line in f:
            t, name = line.split(maxsplit=1)
            phases.append((float(t), name.strip()))
    noisy = []
    for (t0, name), (t1, _) in zip(phases, phases[1:] + [(float("inf"), "")]):
        vals = [p for t, p in samples if t0 < t <= t1]
        if not vals:
            continue
        mean = sum(vals) / len(vals)
        print(f"other processes' CPU during {name}: mean {mean:.0f}%, max {max(vals):.0f}% "
              f"of {os.cpu_count()} CPUs")
        if mean > 10:
            noisy.append(name)
    if noisy:
        print(f"  WARNING: other work competed for the CPUs during {', '.join(noisy)}: "
              f"those numbers are noisy; rerun on a quiet machine for numbers to quote")


def cmd_cpu_busy(a):
    """Percent of all CPUs busy over the next second (a gauge for other work on the machine)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = snap()
    time.sleep(a.seconds)
    t1, i1 = snap()
    print(f"{100 * (1 - (i1 - i0) / max(1, t1 - t0)):.0f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("push-mono")
    s.add_argument("--auth", default="", help="user:password, sent as Basic")
    s.add_argument("url"); s.add_argument("repo"); s.add_argument("file"); s.add_argument("digest")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--single-post", action="store_true")
    g.add_argument("--post-put", action="store_true")
    s.set_defaults(fn=cmd_push_mono)

    s = sub.add_parser("push-chunked")
    s.add_argument("--auth", default="", help="user:password, sent as Basic")
    s.add_argument("url"); s.add_argument("repo"); s.add_argument("file"); s.add_argument("digest")
    s.add_argument("--chunk", type=int, default=16 * MiB)
    s.set_defaults(fn=cmd_push_chunked)

    s = sub.add_parser("push-blob")
    s.add_argument("--auth", default="", help="user:password, sent as Basic")
    s.add_argument("url"); s.add_argument("repo"); s.add_argument("file"); s.add_argument("digest")
    s.set_defaults(fn=cmd_push_blob)

    s = sub.add_parser("push-image")
    s.add_argument("--auth", default="", help="user:password, sent as Basic")
    s.add_argument("url"); s.add_argument("repo"); s.add_argument("tag"); s.add_argument("layer")
    s.set_defaults(fn=cmd_push_image)

    s = sub.add_parser("hash")
    s.add_argument("file"); s.add_argument("tool", choices=["openssl", "sha256sum"])
    s.set_defaults(fn=cmd_hash)

    s = sub.add_parser("disk-write")
    s.add_argument("file"); s.add_argument("dest"); s.add_argument("--fsync", action="store_true")
    s.set_defaults(fn=cmd_disk_write)

    s = sub.add_parser("pull-one")
    s.add_argument("url"); s.add_argument("--size", type=int, required=True)
    s.add_argument("--repeat", type=int, default=1)
    s.set_defaults(fn=cmd_pull_one)

    s = sub.add_parser("pull-many")
    s.add_argument("url"); s.add_argument("--size", type=int, required=True)
    s.add_argument("--clients", type=int, default=64)
    s.add_argument("--per-client", type=int, default=1)
    s.add_argument("--pid", type=int, default=0)
    s.set_defaults(fn=cmd_pull_many)

    s = sub.add_parser("manifest")
    s.add_argument("url")
    s.add_argument("--seconds", type=int, default=10)
    s.add_argument("--connections", type=int, default=64)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--expect-digest", default="")
    s.add_argument("--pid", type=int, default=0)
    s.set_defaults(fn=cmd_manifest)

    s = sub.add_parser("berth-anonymous-pull")
    s.add_argument("url"); s.add_argument("--auth", required=True)
    s.set_defaults(fn=cmd_berth_anonymous_pull)

    s = sub.add_parser("rss")
    s.add_argument("pid", type=int)
    s.add_argument("--anon", action="store_true",
                   help="RssAnon (what the process allocated) instead of VmRSS (which also "
                        "counts the binary's and libraries' pages mapped in)")
    s.set_defaults(fn=cmd_rss)

    s = sub.add_parser("cpu-monitor")
    s.add_argument("--root", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--interval", type=float, default=0.5)
    s.set_defaults(fn=cmd_cpu_monitor)

    s = sub.add_parser("wait-quiet")
    s.add_argument("--root", type=int, required=True)
    s.add_argument("--max-wait", type=float, default=600)
    s.add_argument("--threshold", type=float, default=10)
    s.add_argument("--window", type=float, default=10)
    s.set_defaults(fn=cmd_wait_quiet)

    s = sub.add_parser("cpu-summary")
    s.add_argument("log"); s.add_argument("phases")
    s.set_defaults(fn=cmd_cpu_summary)

    s = sub.add_parser("cpu-busy")
    s.add_argument("--seconds", type=float, default=1.0)
    s.set_defaults(fn=cmd_cpu_busy)

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
