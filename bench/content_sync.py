#!/usr/bin/env python3
"""bench/content_sync.py: how fast and how lean content sync is through a hierarchy of connected
registries (issue 5, item 9), next to what a user would script instead with skopeo.

Usage: bench/content_sync.py [--quick] [--only LIST] [--no-build] [--berth PATH] [--no-skopeo]
                             [--poll-ms MS] [--big-mib N] [--big-runs N] [--keep-tmp]

  --quick        small sizes and counts (about 1-2 minutes); the default is the full run
  --only LIST    comma-separated subset of: propagation,bytes,outage,big (default: all)
  --no-build     use target/release/berth as it is (default: cargo build --release -p berth)
  --berth PATH   use this berth binary (implies --no-build)
  --no-skopeo    skip the skopeo comparisons
  --poll-ms MS   poll period for "has it arrived" checks (default 5 ms; 10 ms for the big blob)
  --big-mib N    size of the big layer in MiB (default 1024, --quick 64)
  --big-runs N   big-layer runs (default 3, --quick 2)
  --keep-tmp     keep the temp dir (data dirs, server logs)

Set-up: three `berth serve` processes on free loopback ports, each with its own data dir,
RUST_LOG=warn and BERTH_ADMIN_PASSWORD: the root; `factory` (ReadWrite, repositories
`bench/*`, parent: the root) and `line3` (ReadOnly, parent: factory, repositories
bench/prop, bench/layers and bench/outage, so it never syncs the big layer), created on the
root with POST /berth/v1/connected-registries and started with the connection string of
POST .../<name>/settings {"parent_protocol":"http","generate_password":1}. line3 is started
with `--parent-gateway-endpoint` pointing at a counting proxy (Python asyncio, HTTP/1.1-aware)
in front of factory, so every byte between them is counted, per request, headers and bodies
apart. Everything is pushed over HTTP as the admin (monolithic POST ?digest=, then PUT
manifest by tag); every layer is a valid gzip stream (stored blocks) of random bytes, so skopeo
copies it as it is.

Measurements (full / --quick):
 1 propagation  50 / 10 successive small images (config + one 1 KiB layer), each pushed at the
                root; the clock starts when the manifest PUT returned; factory and line3 are
                polled (GET manifest by tag, admin Basic, every --poll-ms) until 200 with the
                pushed bytes. p50/p90/p99/max per level (nearest rank; with 50 samples p99 is
                the maximum). Target: line3 p50 <= 1 s.
                skopeo: `skopeo copy --preserve-digests` root -> plain Berth A -> plain Berth B,
                per tag, started right after the push (the best case of a scripted copy: a
                cron-driven `skopeo sync` adds the wait for its next run, 30 s on average at
                one run a minute), plus `skopeo sync` of the whole repository root -> A.
 2 bytes        20 / 5 images sharing 3 base layers (4 MiB / 1 MiB each) with one unique layer
                (256 KiB / 64 KiB) each, pushed at the root one after the other; counted on the
                factory -> line3 link until line3 holds all of them. Compared with the unique
                bytes line3 was missing (distinct blobs + manifests). Target: <= 1.02x with
                HTTP headers. skopeo: `skopeo sync` of the same repository from the root,
                through another counting proxy, into an empty plain Berth.
 3 outage       line3 holds 20 / 10 tags; it is killed (SIGKILL); 100 / 30 changes are made
                at the root (new tags, tag moves, untags); line3 is restarted; the time from
                the restart until its tag list and every tag's digest equal the root's.
                skopeo: a plain Berth synced with `skopeo sync` before the changes, synced
                again after them (skopeo never deletes, so untagged tags stay there).
 4 big          a 1 GiB / 64 MiB layer pushed to the root; the time from the manifest PUT
                until factory (one level down) serves the manifest (blob fetched, hashed,
                fsynced), against a direct pull of the same blob from the root with curl to
                /dev/null (median of 3) and to a file with fsync. Target: sync >= 80% of the
                direct pull to /dev/null. skopeo: `skopeo copy` of the image root -> plain
                Berth. Each run uses a new blob (same random payload, a different gzip header);
                after each run the page cache of the big files is dropped (posix_fadvise), or
                later runs get slower (kernel time in writes on this VM), pushes and syncs alike.

Noise: before and after each measurement the load average is printed, with the CPU used by
processes other than these servers, this script and its children (skopeo, curl) as a share of
all CPUs. Other agents compiling on the same cores make the absolute numbers move; compare
ratios within one run. Every process started here is stopped on exit (try/finally, also on
SIGINT/SIGTERM) and the temp dir removed (unless --keep-tmp). Exit status: 0 when every
measurement ran (targets are printed PASS/FAIL), 1 when one failed (a timeout, an error answer,
wrong content: a Berth bug to report). Needs: Python 3.11 (stdlib only), curl, skopeo (unless
--no-skopeo), cargo (unless --no-build). Disk: about 1 + 3 x runs GiB under $TMPDIR for the
full run.
"""

import argparse
import asyncio
import base64
import copy
import gzip
import hashlib
import http.client
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BERTH = os.path.join(ROOT_DIR, "target", "release", "berth")
MIB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
WAIT_S = 60.0

FULL = dict(prop_n=50, prop_skopeo=10, prop_skopeo_sync=3,
            bytes_images=20, bytes_base=3, bytes_base_size=4 * MIB, bytes_unique=256 * 1024,
            outage_initial=20, outage_changes=100,
            big_mib=1024, big_runs=3)
QUICK = dict(prop_n=10, prop_skopeo=3, prop_skopeo_sync=1,
             bytes_images=5, bytes_base=3, bytes_base_size=1 * MIB, bytes_unique=64 * 1024,
             outage_initial=10, outage_changes=30,
             big_mib=64, big_runs=2)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def percentile(sorted_values, p):
    """Nearest-rank percentile."""
    k = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[k - 1]


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def fmt_bytes(n):
    return f"{n:,} B ({n / MIB:.2f} MiB)"


class BenchError(RuntimeError):
    """A measurement could not complete: the registry misbehaved (or the machine did)."""


# --------------------------------------------------------------------------------------------
# Load and CPU accounting


CLK_TCK = os.sysconf("SC_CLK_TCK")


def load_avg():
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def machine_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


class Meter:
    """CPU used by other processes (not our servers, this script or its reaped children) during
    a phase, as a share of all CPUs, and the load average at both ends."""

    def __init__(self, servers):
        self.servers = servers

    def own_seconds(self):
        t = os.times()
        live = sum(s.cpu_ticks() for s in self.servers) / CLK_TCK
        return t.user + t.system + t.children_user + t.children_system + live

    def start(self):
        self.load0 = load_avg()
        self.busy0, self.total0 = machine_ticks()
        self.own0 = self.own_seconds()

    def stop(self):
        busy1, total1 = machine_ticks()
        own = self.own_seconds() - self.own0
        busy = (busy1 - self.busy0) / CLK_TCK
        total = (total1 - self.total0) / CLK_TCK
        other = max(0.0, busy - own) / total if total > 0 else 0.0
        return {"load_before": self.load0, "load_after": load_avg(), "other_cpu": other}


def describe_load(m):
    lb, la = m["load_before"], m["load_after"]
    warn = " (LOADED: load > 1.5, numbers are noisy)" if max(float(lb[0]), float(la[0])) > 1.5 \
        else ""
    return (f"load average {'/'.join(lb)} before, {'/'.join(la)} after; "
            f"other processes used {m['other_cpu'] * 100:.0f}% of the CPUs{warn}")


# --------------------------------------------------------------------------------------------
# HTTP


class Conn:
    """One keep-alive HTTP/1.1 connection to a loopback server, reopened on failure."""

    def __init__(self, port, auth=None, timeout=60, blocksize=MIB):
        self.port = port
        self.auth = auth
        self.timeout = timeout
        self.blocksize = blocksize
        self.conn = None

    def request(self, method, path, headers=None, body=None, retry=True):
        headers = dict(headers or {})
        if self.auth and "Authorization" not in headers:
            headers["Authorization"] = self.auth
        attempts = 3 if retry else 1
        for attempt in range(attempts):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout,
                                                       blocksize=self.blocksize)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, resp.headers, data
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == attempts - 1:
                    raise
                time.sleep(0.05)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Manage:
    """The root's management API as the admin."""

    def __init__(self, port, auth):
        self.conn = Conn(port, auth)

    def call(self, method, path, body=None, want=(200,)):
        headers = {}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        status, _, raw = self.conn.request(method, path, headers, data)
        if status not in want:
            raise BenchError(f"{method} {path}: {status} (want {want}): {raw[:500]!r}")
        return json.loads(raw) if raw else None


# --------------------------------------------------------------------------------------------
# Servers


class Server:
    def __init__(self, name, berth, tmp, admin_password, extra_args=()):
        self.name = name
        self.berth = berth
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.data = os.path.join(tmp, name)
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.args = [berth, "serve", "--listen", self.host, "--data-dir", self.data,
                     *extra_args]
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "RUST_LOG": os.environ.get("BERTH_RUST_LOG", "warn"),
            "BERTH_ADMIN_PASSWORD": admin_password,
            "BERTH_LOGIN_FAILURES_PER_MINUTE": "100000",
        }
        self.auth = basic("admin", admin_password)
        self.proc = None
        self.conn = Conn(self.port, self.auth)
        self.start()

    def start(self):
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, env=self.env)

    def tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def wait_listening(self, within=30.0):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.proc.returncode}) during start-up:\n"
                                 f"{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.01)
        raise BenchError(f"{self.name} did not listen on {self.host} within {within} s")

    def cpu_ticks(self):
        if self.proc is None or self.proc.poll() is not None:
            return 0
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        except OSError:
            return 0

    def kill(self):
        """SIGKILL, as a power cut would."""
        self.conn.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    # Registry API, as the admin.

    def push_blob(self, repo, data, digest=None):
        digest = digest or sha256(data)
        status, _, body = self.conn.request(
            "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}",
            {"Content-Type": "application/octet-stream"}, data)
        if status != 201:
            raise BenchError(f"{self.name}: blob push {repo}@{digest[:19]}: {status} "
                             f"{body[:300]!r}")
        return digest

    def put_manifest(self, repo, ref, manifest):
        status, headers, body = self.conn.request(
            "PUT", f"/v2/{repo}/manifests/{ref}", {"Content-Type": OCI_MANIFEST}, manifest)
        if status != 201:
            raise BenchError(f"{self.name}: manifest PUT {repo}:{ref}: {status} {body[:300]!r}")
        return headers.get("Docker-Content-Digest")

    def get_manifest(self, repo, ref):
        status, _, body = self.conn.request("GET", f"/v2/{repo}/manifests/{ref}",
                                            {"Accept": OCI_MANIFEST})
        return status, body

    def head_manifest(self, repo, ref):
        status, headers, _ = self.conn.request("HEAD", f"/v2/{repo}/manifests/{ref}",
                                               {"Accept": OCI_MANIFEST})
        return status, headers.get("Docker-Content-Digest")

    def delete_manifest(self, repo, ref):
        status, _, body = self.conn.request("DELETE", f"/v2/{repo}/manifests/{ref}")
        if status != 202:
            raise BenchError(f"{self.name}: DELETE {repo}:{ref}: {status} {body[:300]!r}")

    def tags(self, repo):
        status, _, body = self.conn.request("GET", f"/v2/{repo}/tags/list?n=10000")
        if status == 404:
            return []
        if status != 200:
            raise BenchError(f"{self.name}: tags/list {repo}: {status} {body[:300]!r}")
        return json.loads(body).get("tags") or []

    def head_blob(self, repo, digest):
        status, headers, _ = self.conn.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        return status, int(headers.get("Content-Length") or -1)


# --------------------------------------------------------------------------------------------
# A counting HTTP/1.1 proxy (loopback), in its own thread with its own asyncio loop


def category(path):
    p = path.split("?", 1)[0]
    if "/blobs/" in p:
        return "blob"
    if "/manifests/" in p:
        return "manifest"
    if p.endswith("/messages"):
        return "messages"
    return "other"


class CountingProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<upstream>, parsing HTTP/1.1 requests and responses
    (Content-Length, chunked, or to EOF) so bytes can be counted per request, head and body
    apart. `down` is upstream -> client (what the client receives), `up` the other way."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.raw = {"down": 0, "up": 0}
        # category -> [responses, head_down, body_down, head_up, body_up]
        self.cats = {}
        self.records = []  # (method, path, status, body_down)
        self.errors = []
        self.tasks = set()
        self.writers = set()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise BenchError("the counting proxy did not start")

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, limit=MIB))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def close(self):
        async def shut():
            self.server.close()
            for w in list(self.writers):
                w.close()
            for t in list(self.tasks):
                t.cancel()
            await asyncio.sleep(0.05)
        try:
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def snapshot(self):
        with self.lock:
            return {"raw": dict(self.raw), "cats": copy.deepcopy(self.cats),
                    "n": len(self.records)}

    def since(self, snap):
        """Counts since `snap`: raw, per category, and the new records."""
        with self.lock:
            raw = {k: self.raw[k] - snap["raw"][k] for k in self.raw}
            cats = {}
            for cat, v in self.cats.items():
                old = snap["cats"].get(cat, [0] * 5)
                cats[cat] = [a - b for a, b in zip(v, old)]
            records = list(self.records[snap["n"]:])
        return {"raw": raw, "cats": cats, "records": records}

    def _count(self, direction, n):
        with self.lock:
            self.raw[direction] += n

    async def _copy(self, reader, writer, n, direction):
        while n > 0:
            chunk = await reader.read(min(n, MIB))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", n)
            writer.write(chunk)
            self._count(direction, len(chunk))
            n -= len(chunk)
            await writer.drain()

    async def _body(self, reader, writer, headers, direction, to_eof):
        """Forwards one message body; returns (payload bytes, whether the connection ends)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            total = 0
            while True:
                line = await reader.readuntil(b"\r\n")
                writer.write(line)
                self._count(direction, len(line))
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        trailer = await reader.readuntil(b"\r\n")
                        writer.write(trailer)
                        self._count(direction, len(trailer))
                        if trailer == b"\r\n":
                            break
                    await writer.drain()
                    return total, False
                await self._copy(reader, writer, size, direction)
                crlf = await reader.readexactly(2)
                writer.write(crlf)
                self._count(direction, 2)
                total += size
        if "content-length" in headers:
            n = int(headers["content-length"])
            await self._copy(reader, writer, n, direction)
            return n, False
        if not to_eof:
            return 0, False
        total = 0
        while True:
            chunk = await reader.read(MIB)
            if not chunk:
                break
            writer.write(chunk)
            self._count(direction, len(chunk))
            total += len(chunk)
            await writer.drain()
        return total, True

    @staticmethod
    def _parse(head):
        lines = head.decode("latin-1").split("\r\n")
        first = lines[0]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return first, headers

    async def _handle(self, creader, cwriter):
        self.tasks.add(asyncio.current_task())
        self.writers.add(cwriter)
        uwriter = None
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port,
                                                             limit=MIB)
            self.writers.add(uwriter)
            while True:
                try:
                    first_byte = await creader.readexactly(1)
                    if not first_byte.isalpha():
                        # Not HTTP/1.1 (skopeo tries TLS first): close, as Berth does.
                        break
                    head = first_byte + await creader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                first, req_headers = self._parse(head)
                method, path = (first.split(" ") + ["", ""])[:2]
                uwriter.write(head)
                self._count("up", len(head))
                body_up, _ = await self._body(creader, uwriter, req_headers, "up", False)
                await uwriter.drain()
                head_down = 0
                while True:
                    rhead = await ureader.readuntil(b"\r\n\r\n")
                    rfirst, resp_headers = self._parse(rhead)
                    status = int(rfirst.split(" ")[1])
                    cwriter.write(rhead)
                    self._count("down", len(rhead))
                    head_down += len(rhead)
                    if 100 <= status < 200 and status != 101:
                        continue
                    break
                no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
                if no_body:
                    body_down, ends = 0, False
                else:
                    body_down, ends = await self._body(ureader, cwriter, resp_headers, "down",
                                                       True)
                await cwriter.drain()
                cat = category(path)
                with self.lock:
                    c = self.cats.setdefault(cat, [0] * 5)
                    c[0] += 1
                    c[1] += head_down
                    c[2] += body_down
                    c[3] += len(head)
                    c[4] += body_up
                    self.records.append((method, path, status, body_down))
                if ends or "close" in resp_headers.get("connection", "").lower() \
                        or "close" in req_headers.get("connection", "").lower():
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                OSError, ValueError, IndexError) as e:
            with self.lock:
                self.errors.append(repr(e))
        except asyncio.CancelledError:
            pass
        finally:
            for w in (cwriter, uwriter):
                if w is not None:
                    w.close()
                    self.writers.discard(w)
            self.tasks.discard(asyncio.current_task())


# --------------------------------------------------------------------------------------------
# Images


def gz(data):
    """A valid gzip stream of `data`, stored blocks (no compression): cheap and incompressible."""
    return gzip.compress(data, compresslevel=0, mtime=0)


class Image:
    def __init__(self, label, layers):
        """`layers`: [(gzip bytes, diff_id)] or [(None, diff_id, digest, size)] for a big layer
        pushed separately."""
        self.label = label
        self.blobs = {}  # digest -> bytes (small ones)
        descs = []
        diff_ids = []
        for layer in layers:
            if layer[0] is None:
                _, diff_id, digest, size = layer
            else:
                data, diff_id = layer
                digest, size = sha256(data), len(data)
                self.blobs[digest] = data
            descs.append({"mediaType": OCI_LAYER, "digest": digest, "size": size})
            diff_ids.append(diff_id)
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"bench": label}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }, sort_keys=True, separators=(",", ":")).encode()
        self.config_digest = sha256(config)
        self.blobs[self.config_digest] = config
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.config_digest,
                       "size": len(config)},
            "layers": descs,
        }, separators=(",", ":")).encode()
        self.digest = sha256(self.manifest)
        self.layer_digests = [d["digest"] for d in descs]
        self.layer_sizes = [d["size"] for d in descs]


def random_layer(size):
    payload = os.urandom(size)
    return gz(payload), sha256(payload)


def push_image(server, repo, image, tag, have=None):
    """Pushes the image's small blobs (skipping digests in `have`) and its manifest by tag."""
    for digest, data in image.blobs.items():
        if have is not None and digest in have:
            continue
        server.push_blob(repo, data, digest)
        if have is not None:
            have.add(digest)
    got = server.put_manifest(repo, tag, image.manifest)
    if got and got != image.digest:
        raise BenchError(f"{server.name} stored {repo}:{tag} as {got}, expected {image.digest}")


# --------------------------------------------------------------------------------------------
# skopeo


class Skopeo:
    def __init__(self, tmp, admin_password):
        self.tmp = os.path.join(tmp, "skopeo")
        os.makedirs(self.tmp, exist_ok=True)
        self.policy = os.path.join(self.tmp, "policy.json")
        with open(self.policy, "w") as f:
            json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
        self.creds = f"admin:{admin_password}"
        self.env = dict(os.environ, TMPDIR=self.tmp)

    def run(self, args, timeout=600):
        cmd = ["skopeo", "--policy", self.policy, *args]
        t = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout)
        dt = time.monotonic() - t
        if p.returncode != 0:
            raise BenchError(f"{' '.join(cmd[:4])} ... failed ({p.returncode}): "
                             f"{p.stderr.strip()[-800:]}")
        return dt

    def copy(self, src, dst):
        return self.run(["copy", "--preserve-digests",
                         "--src-tls-verify=false", "--dest-tls-verify=false",
                         "--src-creds", self.creds, "--dest-creds", self.creds,
                         f"docker://{src}", f"docker://{dst}"])

    def sync(self, src_repo, dst_prefix):
        """`skopeo sync` of every tag of `src_repo` (host/repo) to `dst_prefix` (host/prefix):
        the images land in <dst_prefix>/<last component of the repository>."""
        return self.run(["sync", "--src", "docker", "--dest", "docker", "--preserve-digests",
                         "--src-tls-verify=false", "--dest-tls-verify=false",
                         "--src-creds", self.creds, "--dest-creds", self.creds,
                         src_repo, dst_prefix])


# --------------------------------------------------------------------------------------------
# Measurements


def wait_until(what, within, check, period=0.02):
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return
        time.sleep(period)
    raise BenchError(f"timed out after {within} s waiting for {what} (last: {last})")


def poll_arrival(targets, repo, tag, expected, poll_s, timeout_s):
    """Polls each server in `targets` every poll_s (from now) until it serves repo:tag with the
    `expected` manifest bytes; returns {name: seconds or None}."""
    t0 = time.monotonic()
    pending = list(targets)
    result = {}
    tick = t0
    while pending and time.monotonic() - t0 < timeout_s:
        for s in list(pending):
            status, body = s.get_manifest(repo, tag)
            if status == 200:
                if body != expected:
                    raise BenchError(f"{s.name} serves {repo}:{tag} with other bytes than the "
                                     f"root's: {body[:200]!r}")
                result[s.name] = time.monotonic() - t0
                pending.remove(s)
            elif status != 404:
                raise BenchError(f"{s.name}: GET {repo}:{tag} answered {status}: {body[:300]!r}")
        tick += poll_s
        time.sleep(max(0.0, tick - time.monotonic()))
    for s in pending:
        result[s.name] = None
    return result


def stats_line(label, values_s, target_s=None):
    got = sorted(v for v in values_s if v is not None)
    misses = len(values_s) - len(got)
    if not got:
        return f"  {label:<34}{'-':>9}{'-':>9}{'-':>9}{'-':>9}{misses:>7}", False
    p50, p90, p99 = (percentile(got, p) * 1e3 for p in (50, 90, 99))
    line = (f"  {label:<34}{p50:>9.1f}{p90:>9.1f}{p99:>9.1f}{got[-1] * 1e3:>9.1f}"
            f"{misses:>7}")
    ok = None
    if target_s is not None:
        ok = misses == 0 and percentile(got, 50) <= target_s
        line += f"   target p50 <= {target_s:.0f} s: {'PASS' if ok else 'FAIL'}"
    return line, ok


def measure_propagation(ctx, out):
    cfg, root, factory, line3 = ctx.cfg, ctx.root, ctx.factory, ctx.line3
    repo = "bench/prop"
    n = cfg["prop_n"]
    poll_s = ctx.poll_ms / 1e3
    res = {"factory": [], "line3": []}
    pushes = []
    images = []
    log(f"propagation: {n} small images pushed at the root, polling factory and line3 "
        f"every {ctx.poll_ms:g} ms")
    ctx.meter.start()
    for i in range(n):
        img = Image(f"prop-{i}", [random_layer(1024)])
        tag = f"p{i:03d}"
        for digest, data in img.blobs.items():
            root.push_blob(repo, data, digest)
        t = time.monotonic()
        root.put_manifest(repo, tag, img.manifest)
        pushes.append(time.monotonic() - t)
        r = poll_arrival([factory, line3], repo, tag, img.manifest, poll_s, 30.0)
        for k, v in r.items():
            res[k].append(v)
        images.append((tag, img))
        if r["line3"] is None:
            raise BenchError(f"{repo}:{tag} did not reach line3 within 30 s\nline3 log:\n"
                             f"{line3.tail()}\nfactory log:\n{factory.tail()}")
    load = ctx.meter.stop()

    out.append("1. Propagation of a small image pushed at the root "
               f"(N={n}, polled every {ctx.poll_ms:g} ms; ms from the manifest PUT's return)")
    out.append(f"  {'':<34}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'misses':>7}")
    line, _ = stats_line("Berth: factory (1 level down)", res["factory"])
    out.append(line)
    line, ok = stats_line("Berth: line3 (2 levels down)", res["line3"], 1.0)
    out.append(line)
    ctx.targets.append(("propagation root -> line3, p50 <= 1 s", ok))
    ps = sorted(pushes)
    out.append(f"  (the manifest PUT at the root itself: p50 {percentile(ps, 50) * 1e3:.1f} ms, "
               f"max {ps[-1] * 1e3:.1f} ms; not included above)")
    out.append(f"  {describe_load(load)}")

    if ctx.skopeo:
        k = min(cfg["prop_skopeo"], n)
        log(f"propagation: skopeo copy root -> A -> B for {k} tags")
        ctx.meter.start()
        hop1, hop2 = [], []
        for tag, _img in images[:k]:
            hop1.append(ctx.skopeo.copy(f"{root.host}/{repo}:{tag}",
                                        f"{ctx.plain_a.host}/{repo}:{tag}"))
            hop2.append(ctx.skopeo.copy(f"{ctx.plain_a.host}/{repo}:{tag}",
                                        f"{ctx.plain_b.host}/{repo}:{tag}"))
        for tag, img in images[:k]:
            status, body = ctx.plain_b.get_manifest(repo, tag)
            if status != 200 or body != img.manifest:
                raise BenchError(f"skopeo copy: {repo}:{tag} on B is not the root's ({status})")
        syncs = []
        for j in range(cfg["prop_skopeo_sync"]):
            # What a cron job would run: one new tag, then a sync of the whole repository.
            img = Image(f"prop-sync-{j}", [random_layer(1024)])
            push_image(root, repo, img, f"s{j:03d}")
            syncs.append(ctx.skopeo.sync(f"{root.host}/{repo}", f"{ctx.plain_a.host}/sync"))
        load = ctx.meter.stop()
        both = [a + b for a, b in zip(hop1, hop2)]
        out.append(f"  skopeo (best case, run at once; a cron job adds its wait), N={k}:")
        out.append(stats_line("skopeo copy root -> A", hop1)[0])
        out.append(stats_line("skopeo copy root -> A -> B", both)[0])
        out.append(f"  skopeo sync of the whole repository root -> A, right after one new tag "
                   f"({n + 1}+ tags; what a cron job would run): median "
                   f"{median(syncs) * 1e3:.0f} ms over {len(syncs)} run(s)")
        out.append(f"  {describe_load(load)}")


def measure_bytes(ctx, out):
    cfg, root, line3, proxy = ctx.cfg, ctx.root, ctx.line3, ctx.proxy
    repo = "bench/layers"
    n, nb = cfg["bytes_images"], cfg["bytes_base"]
    log(f"bytes: {n} images sharing {nb} base layers of {cfg['bytes_base_size'] // 1024} KiB, "
        f"one unique {cfg['bytes_unique'] // 1024} KiB layer each")
    base = [random_layer(cfg["bytes_base_size"]) for _ in range(nb)]
    images = [Image(f"layers-{i}", base + [random_layer(cfg["bytes_unique"])])
              for i in range(n)]
    unique_blobs = {}
    for img in images:
        unique_blobs.update({d: len(b) for d, b in img.blobs.items()})
    blob_bytes = sum(unique_blobs.values())
    manifest_bytes = sum(len(img.manifest) for img in images)
    unique = blob_bytes + manifest_bytes

    ctx.meter.start()
    snap = proxy.snapshot()
    t0 = time.monotonic()
    have = set()
    for i, img in enumerate(images):
        push_image(root, repo, img, f"l{i:03d}", have)
    t_pushed = time.monotonic()
    pending = {f"l{i:03d}": img for i, img in enumerate(images)}

    def arrived():
        for tag in sorted(pending):
            status, body = line3.get_manifest(repo, tag)
            if status != 200:
                return False, f"{tag}: {status}"
            if body != pending[tag].manifest:
                raise BenchError(f"line3 serves {repo}:{tag} with other bytes than the root's")
            del pending[tag]
        return True, None
    wait_until(f"all {n} images on line3", WAIT_S * 2, arrived, period=0.01)
    t_done = time.monotonic()
    time.sleep(0.3)  # let the feed's response for the last change finish on the proxy
    got = proxy.since(snap)
    load = ctx.meter.stop()
    for img in images:
        for d, size in zip(img.layer_digests, img.layer_sizes):
            status, length = line3.head_blob(repo, d)
            if status != 200 or length != size:
                raise BenchError(f"line3: blob {d[:19]} of {img.label}: {status}, {length} bytes")

    cats = got["cats"]

    def c(cat, i):
        return cats.get(cat, [0] * 5)[i]
    content_body = c("blob", 2) + c("manifest", 2)
    content_with_heads = content_body + c("blob", 1) + c("manifest", 1)
    feed = c("messages", 1) + c("messages", 2)
    sync_down = content_with_heads + feed
    blob_gets = [r for r in got["records"] if r[0] == "GET" and category(r[1]) == "blob"]
    fetched = {}
    for r in blob_gets:
        d = r[1].split("/blobs/", 1)[1].split("?")[0]
        fetched[d] = fetched.get(d, 0) + 1
    dups = {d: k for d, k in fetched.items() if k > 1}
    errors = [r for r in got["records"] if r[2] >= 400]

    out.append("")
    out.append(f"2. Bytes on the wire, factory -> line3, for {n} images sharing {nb} base layers "
               f"of {cfg['bytes_base_size'] // 1024} KiB (+1 unique layer of "
               f"{cfg['bytes_unique'] // 1024} KiB each)")
    out.append(f"  unique bytes line3 was missing: {fmt_bytes(unique)} = {len(unique_blobs)} "
               f"distinct blobs {blob_bytes:,} B + {n} manifests {manifest_bytes:,} B")
    ratio_body = content_body / unique
    ratio_heads = sync_down / unique
    ratio_all = got["raw"]["down"] / unique
    out.append(f"  blob + manifest response bodies:           {content_body:>14,} B  "
               f"{ratio_body:.4f}x")
    ok = ratio_heads <= 1.02
    out.append(f"  + their headers + the change feed:         {sync_down:>14,} B  "
               f"{ratio_heads:.4f}x   target <= 1.02x: {'PASS' if ok else 'FAIL'}")
    ctx.targets.append(("bytes for shared layers <= 1.02x the unique bytes", ok))
    out.append(f"  everything into line3 on the link:         {got['raw']['down']:>14,} B  "
               f"{ratio_all:.4f}x  (also configuration and status traffic during the phase)")
    out.append(f"  line3 -> factory (requests):               {got['raw']['up']:>14,} B")
    reqs = {cat: v[0] for cat, v in sorted(cats.items())}
    out.append(f"  requests by kind: {reqs}; blob GETs {len(blob_gets)} for "
               f"{len(unique_blobs)} distinct blobs"
               + (f"; FETCHED MORE THAN ONCE: {dups}" if dups else "; none fetched twice"))
    if errors:
        out.append(f"  error answers on the link: {errors[:10]}")
    out.append(f"  time: pushes took {t_pushed - t0:.2f} s; line3 held all {n} images "
               f"{t_done - t_pushed:.2f} s after the last push")
    out.append(f"  {describe_load(load)}")

    if ctx.skopeo:
        log("bytes: skopeo sync of the same repository from the root through a counting proxy")
        sproxy = CountingProxy(root.port)
        ctx.proxies.append(sproxy)
        mirror = ctx.new_plain("mirror-bytes")
        ctx.meter.start()
        snap = sproxy.snapshot()
        dt = ctx.skopeo.sync(f"127.0.0.1:{sproxy.port}/{repo}", f"{mirror.host}/mirror")
        sgot = sproxy.since(snap)
        load = ctx.meter.stop()
        for i, img in enumerate(images):
            status, body = mirror.get_manifest("mirror/layers", f"l{i:03d}")
            if status != 200 or body != img.manifest:
                raise BenchError(f"skopeo sync: mirror/layers:l{i:03d} is not the root's")
        sc = sgot["cats"]
        sbody = sum(sc.get(k, [0] * 5)[2] for k in ("blob", "manifest"))
        out.append(f"  skopeo sync root -> empty plain Berth (same {n} images, {dt:.2f} s): "
                   f"bodies {sbody:,} B {sbody / unique:.4f}x, everything "
                   f"{sgot['raw']['down']:,} B {sgot['raw']['down'] / unique:.4f}x "
                   f"({sum(v[0] for v in sc.values())} requests)")
        out.append(f"  {describe_load(load)}")


def measure_outage(ctx, out):
    cfg, root, line3, proxy = ctx.cfg, ctx.root, ctx.line3, ctx.proxy
    repo = "bench/outage"
    rng = random.Random(5)
    n0, nchanges = cfg["outage_initial"], cfg["outage_changes"]
    log(f"outage: {n0} tags on line3, line3 killed, {nchanges} changes at the root, restart")
    pool = []  # every image pushed: (image)
    state = {}  # tag -> image
    have = set()
    for i in range(n0):
        img = Image(f"outage-{i}", [random_layer(4096)])
        push_image(root, repo, img, f"t{i:03d}", have)
        pool.append(img)
        state[f"t{i:03d}"] = img

    def converged(server):
        def check():
            tags = set(server.tags(repo))
            if tags != set(state):
                return False, f"{len(tags)} tags, {len(tags ^ set(state))} differ"
            for tag, img in state.items():
                status, digest = server.head_manifest(repo, tag)
                if status != 200 or digest != img.digest:
                    return False, f"{tag}: {status} {digest}"
            return True, None
        return check
    wait_until("line3 holding the initial tags", WAIT_S, converged(line3))
    mirror = None
    if ctx.skopeo:
        mirror = ctx.new_plain("mirror-outage")
        ctx.skopeo.sync(f"{root.host}/{repo}", f"{mirror.host}/mirror")

    line3.kill()
    counts = {"new tag": 0, "tag move": 0, "untag": 0}
    next_tag = n0
    t_changes = time.monotonic()
    for _ in range(nchanges):
        kind = rng.choices(["new tag", "tag move", "untag"], weights=[5, 3, 2])[0]
        if kind != "new tag" and len(state) < 3:
            kind = "new tag"
        if kind == "new tag":
            img = Image(f"outage-{next_tag}", [random_layer(4096)])
            tag = f"t{next_tag:03d}"
            next_tag += 1
            push_image(root, repo, img, tag, have)
            pool.append(img)
            state[tag] = img
        elif kind == "tag move":
            tag = rng.choice(sorted(state))
            if rng.random() < 0.5:
                img = Image(f"outage-moved-{next_tag}", [random_layer(4096)])
                next_tag += 1
                pool.append(img)
            else:
                img = rng.choice([p for p in pool if p is not state[tag]])
            push_image(root, repo, img, tag, have)
            state[tag] = img
        else:
            tag = rng.choice(sorted(state))
            root.delete_manifest(repo, tag)
            del state[tag]
        counts[kind] += 1
    t_changes = time.monotonic() - t_changes
    ok_root, last = converged(root)()
    if not ok_root:
        raise BenchError(f"the root does not hold what was pushed to it: {last}")

    ctx.meter.start()
    snap = proxy.snapshot()
    t0 = time.monotonic()
    line3.start()
    line3.wait_listening()
    t_listen = time.monotonic() - t0
    wait_until(f"line3 holding the root's {len(state)} tags", WAIT_S * 2, converged(line3),
               period=0.01)
    t_conv = time.monotonic() - t0
    got = proxy.since(snap)
    load = ctx.meter.stop()

    out.append("")
    out.append(f"3. Catch-up after an outage: line3 killed, {nchanges} changes at the root "
               f"({', '.join(f'{v} {k}s' for k, v in counts.items())}; made in "
               f"{t_changes:.1f} s), line3 restarted")
    out.append(f"  Berth: line3 listening {t_listen * 1e3:.0f} ms after the restart; holding "
               f"exactly the root's {len(state)} tags (same digests) {t_conv * 1e3:.0f} ms after "
               f"it")
    out.append(f"  link during catch-up: {got['raw']['down']:,} B into line3 in "
               f"{sum(v[0] for v in got['cats'].values())} requests")
    out.append(f"  {describe_load(load)}")

    if mirror is not None:
        ctx.meter.start()
        dt = ctx.skopeo.sync(f"{root.host}/{repo}", f"{mirror.host}/mirror")
        load = ctx.meter.stop()
        mtags = set(mirror.tags("mirror/outage"))
        stale = sorted(mtags - set(state))
        wrong = [t for t, img in state.items()
                 if mirror.head_manifest("mirror/outage", t) != (200, img.digest)]
        out.append(f"  skopeo sync root -> plain Berth (synced before the changes): {dt * 1e3:.0f} "
                   f"ms; afterwards it holds {len(stale)} tags the root no longer has "
                   f"(skopeo never deletes), {len(wrong)} tags with another digest")
        out.append(f"  {describe_load(load)}")


class BigLayer:
    """A big layer file: a gzip stream (stored blocks) of random bytes, whose header carries a
    fixed-length name that changes per run, so each run is a new blob without regenerating."""

    NAME_LEN = 16

    def __init__(self, path, size):
        self.path = path
        payload_hash = hashlib.sha256()
        crc = 0
        deflate = zlib.compressobj(0, zlib.DEFLATED, -15)
        # gzip header: magic, deflate, FNAME flag, mtime 0, xfl 0, os 255, then the name.
        header = b"\x1f\x8b\x08\x08" + b"\0\0\0\0" + b"\x00\xff"
        with open(path, "wb") as f:
            f.write(header + self._name(0))
            left = size
            while left > 0:
                chunk = os.urandom(min(left, 16 * MIB))
                left -= len(chunk)
                payload_hash.update(chunk)
                crc = zlib.crc32(chunk, crc)
                f.write(deflate.compress(chunk))
            f.write(deflate.flush())
            f.write(struct.pack("<II", crc, size & 0xFFFFFFFF))
        self.name_offset = len(header)
        self.diff_id = "sha256:" + payload_hash.hexdigest()
        self.size = os.path.getsize(path)

    def _name(self, run):
        return f"berth-bench-{run:03d}".encode().ljust(self.NAME_LEN - 1, b"_")[:15] + b"\0"

    def for_run(self, run):
        with open(self.path, "r+b") as f:
            f.seek(self.name_offset)
            f.write(self._name(run))
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            while chunk := f.read(4 * MIB):
                h.update(chunk)
        return "sha256:" + h.hexdigest()


def drop_page_cache(top, keep):
    """Drops the page cache of the big files under `top` (but `keep`). Without it, each run's
    gigabytes land in never-used memory, and on this VM the kernel time of writes doubled by the
    third run, for pushes and syncs alike."""
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                if path == keep or os.path.getsize(path) < 16 * MIB:
                    continue
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def push_big_blob(server, repo, path, digest, size):
    conn = Conn(server.port, server.auth, timeout=600, blocksize=MIB)
    try:
        with open(path, "rb") as f:
            t = time.monotonic()
            status, _, body = conn.request(
                "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}",
                {"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                f, retry=False)
            dt = time.monotonic() - t
    finally:
        conn.close()
    if status != 201:
        raise BenchError(f"big blob push to {server.name}: {status} {body[:300]!r}")
    return dt


def curl_get(url, auth_user, auth_pw, dest):
    p = subprocess.run(["curl", "-sS", "-f", "-u", f"{auth_user}:{auth_pw}", "-o", dest,
                        "-w", "%{size_download} %{time_total}", url],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise BenchError(f"curl {url}: {p.returncode} {p.stderr.strip()}")
    size, t = p.stdout.split()
    return int(size), float(t)


def measure_big(ctx, out):
    cfg, root, factory = ctx.cfg, ctx.root, ctx.factory
    repo = "bench/big"
    size = cfg["big_mib"] * MIB
    runs = cfg["big_runs"]
    poll_s = max(ctx.poll_ms, 10) / 1e3
    log(f"big: generating a {cfg['big_mib']} MiB layer")
    t = time.monotonic()
    big = BigLayer(os.path.join(ctx.tmp, "big.layer"), size)
    log(f"big: generated in {time.monotonic() - t:.1f} s; {runs} runs")
    mirror = ctx.new_plain("mirror-big") if ctx.skopeo else None
    rows = []
    ctx.meter.start()
    for run in range(runs):
        digest = big.for_run(run)
        subprocess.run(["sync"], check=False)
        cpu_push0 = root.cpu_ticks()
        t_push = push_big_blob(root, repo, big.path, digest, big.size)
        cpu_push = (root.cpu_ticks() - cpu_push0) / CLK_TCK
        img = Image(f"big-{run}", [(None, big.diff_id, digest, big.size)])
        for d, data in img.blobs.items():
            root.push_blob(repo, data, d)
        tag = f"big{run}"
        cpu0 = (root.cpu_ticks(), factory.cpu_ticks())
        root.put_manifest(repo, tag, img.manifest)
        r = poll_arrival([factory], repo, tag, img.manifest, poll_s, 600.0)
        cpu = [(b - a) / CLK_TCK for a, b in zip(cpu0, (root.cpu_ticks(), factory.cpu_ticks()))]
        t_sync = r["factory"]
        if t_sync is None:
            raise BenchError(f"{repo}:{tag} did not reach factory within 600 s\n{factory.tail()}")
        status, length = factory.head_blob(repo, digest)
        if status != 200 or length != big.size:
            raise BenchError(f"factory: the big blob answers {status}, {length} bytes")
        url = f"http://{root.host}/v2/{repo}/blobs/{digest}"
        pulls = []
        for _ in range(3):
            n, dt = curl_get(url, "admin", ctx.admin_password, "/dev/null")
            if n != big.size:
                raise BenchError(f"direct pull got {n} bytes, expected {big.size}")
            pulls.append(dt)
        dest = os.path.join(ctx.tmp, "pulled.blob")
        t = time.monotonic()
        curl_get(url, "admin", ctx.admin_password, dest)
        with open(dest, "rb") as f:
            os.fsync(f.fileno())
        t_file = time.monotonic() - t
        os.unlink(dest)
        t_skopeo = None
        if mirror is not None:
            t_skopeo = ctx.skopeo.copy(f"{root.host}/{repo}:{tag}", f"{mirror.host}/{repo}:{tag}")
            status, length = mirror.head_blob(repo, digest)
            if status != 200 or length != big.size:
                raise BenchError(f"skopeo copy: the big blob on the mirror: {status}, {length}")
        rows.append({"push": t_push, "sync": t_sync, "pull": median(pulls), "file": t_file,
                     "skopeo": t_skopeo, "cpu_root": cpu[0], "cpu_factory": cpu[1],
                     "cpu_push": cpu_push})
        drop_page_cache(ctx.tmp, big.path)
        log(f"big run {run + 1}/{runs}: push {big.size / t_push / 1e6:.0f} MB/s, sync "
            f"{big.size / t_sync / 1e6:.0f} MB/s, direct pull {big.size / median(pulls) / 1e6:.0f}"
            f" MB/s")
    load = ctx.meter.stop()

    def mbs(t):
        return big.size / t / 1e6

    def med(key):
        return median([r[key] for r in rows])
    # Ratios per run (the machine drifts between runs: later runs are often slower for pushes
    # and syncs alike), then their median.
    vs_pull = median([r["pull"] / r["sync"] for r in rows])
    vs_file = median([r["file"] / r["sync"] for r in rows])
    vs_push = median([r["push"] / r["sync"] for r in rows])
    ok = vs_pull >= 0.8
    ctx.targets.append(("big layer sync >= 80% of a direct pull", ok))
    out.append("")
    out.append(f"4. A {big.size / MIB:.0f} MiB layer, root -> factory (one level), {runs} runs, "
               f"MB/s = 10^6 B/s (medians; ratios are medians of per-run ratios)")
    out.append(f"  Berth sync (manifest PUT at the root -> manifest served by factory; blob "
               f"fetched, hashed, fsynced): {mbs(med('sync')):6.0f} MB/s")
    out.append(f"  direct pull from the root, curl -> /dev/null (median of 3 per run):   "
               f"{mbs(med('pull')):6.0f} MB/s")
    out.append(f"  direct pull from the root, curl -> file + fsync:                      "
               f"{mbs(med('file')):6.0f} MB/s")
    out.append(f"  push of the same blob to the root (one POST ?digest=; hashed, written, "
               f"fsynced): {mbs(med('push')):6.0f} MB/s")
    if mirror is not None:
        out.append(f"  skopeo copy root -> plain Berth (pull + push):                        "
                   f"{mbs(med('skopeo')):6.0f} MB/s")
    out.append(f"  sync / direct pull to /dev/null: {vs_pull * 100:.0f}%   target >= 80%: "
               f"{'PASS' if ok else 'FAIL'}")
    out.append(f"  sync / pull to file + fsync: {vs_file * 100:.0f}%;  sync / push to the root "
               f"(Berth's own receive path): {vs_push * 100:.0f}%")
    out.append("  per run, MB/s: " + "; ".join(
        f"sync {mbs(r['sync']):.0f} pull {mbs(r['pull']):.0f} file {mbs(r['file']):.0f} "
        f"push {mbs(r['push']):.0f}"
        + (f" skopeo {mbs(r['skopeo']):.0f}" if r["skopeo"] is not None else "") for r in rows))
    out.append("  CPU seconds per run: " + "; ".join(
        f"sync: factory {r['cpu_factory']:.2f} root {r['cpu_root']:.2f}, push: root "
        f"{r['cpu_push']:.2f}" for r in rows))
    out.append(f"  {describe_load(load)}")


# --------------------------------------------------------------------------------------------


class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="propagation,bytes,outage,big")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--berth")
    ap.add_argument("--no-skopeo", action="store_true")
    ap.add_argument("--poll-ms", type=float, default=5.0)
    ap.add_argument("--big-mib", type=int)
    ap.add_argument("--big-runs", type=int)
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args()
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    known = ["propagation", "bytes", "outage", "big"]
    if any(x not in known for x in only):
        ap.error(f"--only takes a comma-separated subset of {','.join(known)}")
    if args.poll_ms <= 0:
        ap.error("--poll-ms must be positive")
    cfg = dict(QUICK if args.quick else FULL)
    if args.big_mib:
        cfg["big_mib"] = args.big_mib
    if args.big_runs:
        cfg["big_runs"] = args.big_runs

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    berth = args.berth or DEFAULT_BERTH
    if not args.berth and not args.no_build:
        log("building berth (release)")
        if subprocess.run(["cargo", "build", "--release", "-p", "berth"],
                          cwd=ROOT_DIR).returncode != 0:
            sys.exit("cargo build --release -p berth failed (or use --no-build / --berth PATH)")
    if not os.access(berth, os.X_OK):
        sys.exit(f"{berth} is missing (build it, or drop --no-build)")
    use_skopeo = not args.no_skopeo
    if use_skopeo and shutil.which("skopeo") is None:
        log("skopeo not found: skipping the skopeo comparisons")
        use_skopeo = False
    if shutil.which("curl") is None and "big" in only:
        sys.exit("curl is needed for the big-layer measurement")

    tmp = tempfile.mkdtemp(prefix="berth-content-sync.")
    ctx = Ctx()
    ctx.cfg, ctx.tmp, ctx.poll_ms = cfg, tmp, args.poll_ms
    ctx.targets, ctx.proxies = [], []
    servers = []
    failures = []
    out = []
    try:
        admin_password = "content-sync-" + secrets.token_hex(12)
        ctx.admin_password = admin_password
        ctx.meter = Meter(servers)

        def new_server(name, extra=()):
            s = Server(name, berth, tmp, admin_password, extra)
            servers.append(s)
            s.wait_listening()
            return s
        ctx.new_plain = new_server
        root = new_server("root")
        manage = Manage(root.port, root.auth)

        def connection_string(name):
            s = manage.call("POST", f"/berth/v1/connected-registries/{name}/settings",
                            {"parent_protocol": "http", "generate_password": 1})
            return s["connection_string"]

        def online(name):
            view = manage.call("GET", f"/berth/v1/connected-registries/{name}")
            return view["connection_state"] == "Online", view["connection_state"]

        manage.call("POST", "/berth/v1/connected-registries", {
            "name": "factory", "mode": "ReadWrite", "repositories": ["bench/*"]}, want=(201,))
        factory = new_server("factory", ["--connection-string", connection_string("factory")])
        wait_until("factory Online on the root", 30, lambda: online("factory"), 0.05)
        manage.call("POST", "/berth/v1/connected-registries", {
            "name": "line3", "mode": "ReadOnly", "parent": "factory",
            "repositories": ["bench/prop", "bench/layers", "bench/outage"]}, want=(201,))
        cs = connection_string("line3")
        if f"ParentGatewayEndpoint={factory.host}" not in cs:
            raise BenchError("line3's connection string does not name factory's instance: "
                             f"{cs.split('SyncTokenPassword')[0]}...")
        proxy = CountingProxy(factory.port)
        ctx.proxies.append(proxy)
        line3 = new_server("line3", ["--connection-string", cs,
                                     "--parent-gateway-endpoint", f"127.0.0.1:{proxy.port}"])
        wait_until("line3 Online on the root", 30, lambda: online("line3"), 0.05)
        ctx.root, ctx.factory, ctx.line3, ctx.proxy = root, factory, line3, proxy
        ctx.skopeo = Skopeo(tmp, admin_password) if use_skopeo else None
        if ctx.skopeo:
            ctx.plain_a = new_server("plain-a")
            ctx.plain_b = new_server("plain-b")
        log(f"root {root.host} -> factory {factory.host} -> proxy 127.0.0.1:{proxy.port} -> "
            f"line3 {line3.host}; uptime: {load_avg()}")

        out.append(f"Berth content sync, {'--quick' if args.quick else 'full run'}, "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} CPUs; "
                   f"{subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
        out.append("")
        steps = {"propagation": measure_propagation, "bytes": measure_bytes,
                 "outage": measure_outage, "big": measure_big}
        for name in known:
            if name not in only:
                continue
            try:
                steps[name](ctx, out)
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                failures.append(name)
                out.append(f"\n{name}: FAILED: {e}")
                log(f"{name} FAILED: {e}")
                for s in servers:
                    log(f"--- {s.name} log tail ---\n{s.tail(15)}")
                if line3.proc.poll() is not None:
                    # Later measurements need line3.
                    line3.start()
                    line3.wait_listening()
        out.append("")
        out.append("Targets: " + "; ".join(
            f"{what}: {'PASS' if ok else 'FAIL'}" for what, ok in ctx.targets))
        if failures:
            out.append(f"FAILED measurements: {', '.join(failures)}")
        proxy_errors = [e for p in ctx.proxies for e in p.errors
                        if "IncompleteRead" not in e and "Reset" not in e]
        if proxy_errors:
            out.append(f"(proxy connection errors, usually a killed instance: "
                       f"{proxy_errors[:5]})")
        out.append(f"uptime at the end: "
                   f"{subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
        print("\n".join(out), flush=True)
    finally:
        # No second signal interrupts the clean-up.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # SIGTERM to all at once (a graceful shutdown waits for open long polls), then SIGKILL
        # whatever is still running after 5 s.
        for s in servers:
            s.conn.close()
            if s.proc is not None and s.proc.poll() is None:
                s.proc.terminate()
        deadline = time.monotonic() + 5
        for s in servers:
            if s.proc is None:
                continue
            try:
                s.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(timeout=10)
        for p in ctx.proxies:
            p.close()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
