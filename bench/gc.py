#!/usr/bin/env python3
"""Measurement helpers for bench/gc.sh (Python 3.11, standard library only).

gc.sh owns the processes (build, start, stop, copies of the data dirs, cleanup); this file
fills registries, measures and reports. The HTTP client, the peak-RSS sampler, the wrk parser,
the CPU monitor and the quiet wait are bench.py's (imported, not copied). Every measuring
subcommand checks what the server answers and exits non-zero (with the reason on stderr) when
it is wrong, so a collection that removes too much or too little can never score.

The store (same content for Berth and distribution, generated from fixed seeds):
  IMAGES images, each an OCI manifest with 1 config + LAYERS distinct layers (1-4 KiB of
  random bytes each; the configs are ~0.8 KiB of JSON), spread over REPOS repositories
  (image i -> gc/rNNN, tag tNNNN); in every repository every 10th tag's manifest is then
  DELETEd by digest, so its config and layers (10% of all blobs) are garbage.
  Plus gc/pull:latest, a 64 MiB random layer and its config (the pull workload's blob).

Subcommands:
  populate   URL --kind berth|dist --plan OUT ...      -> fills the registry, writes the plan (JSON)
  dist-layout ROOT ...                                 -> the same content in distribution's layout
  dist-check URL --plan P                              -> a distribution serving it agrees
  collect    URL --auth A --pid PID --plan P           -> secs=.. blobs=.. bytes=.. peak_kib=..
  verify     URL --plan P                              -> HEADs: kept blobs 200, garbage 404
  verify-dist ROOT --plan P                            -> the same on distribution's files
  dist-gc    CONFIG --plan P --data ROOT               -> secs=.. peak_kib=.. blobs=..
  prepare-pushes POOL --big-count N --small-count M --out F   -> digests of the pushes' slices
  throughput URL --auth A --workloads W,.. --seconds S --mode none|during --run R --raw RAW
             -> appends "key mode run value" lines to RAW; prints the workloads left to do
                (during: the collection ended before they could run inside it)
  report     RAWFILE                                   -> the results tables
"""

import argparse
import hashlib
import http.client
import json
import os
import queue
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (Client, expect, PeakRss, read_status, parse_wrk_latency, OCI_*)

MB = 1_000_000
MiB = 1 << 20
BIG_PUSH = 16 * MiB
SMALL_PUSH = 4096
BIG_STEP = 64 * 1024  # big push i = POOL[i * 64 KiB : + 16 MiB]; small push i = POOL[i * 4 KiB : + 4 KiB]


def die(msg):
    print(f"gc.py: {msg}", file=sys.stderr)
    sys.exit(1)


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def authz(auth):
    import base64
    return "Basic " + base64.b64encode(auth.encode()).decode() if auth else None


class Failed(Exception):
    pass


def check(status, want, what, hdrs=None, data=b""):
    """bench.expect, but raising (worker threads cannot sys.exit the process)."""
    if status not in want:
        raise Failed(f"{what}: HTTP {status}, wanted {want}: {data[:300]!r}")


def run_threads(n, target, *args):
    """Run TARGET(k, *args) in N threads; re-raise the first failure in the caller."""
    errors = []

    def wrap(k):
        try:
            target(k, *args)
        except BaseException as e:  # noqa: BLE001  (SystemExit from bench.die too)
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    return threads, errors


def join_threads(threads, errors):
    for t in threads:
        t.join()
    if errors:
        die(f"worker failed: {type(errors[0]).__name__}: {errors[0]}")


# --------------------------------------------------------------------------------------------
# populate: the same content for both registries
# --------------------------------------------------------------------------------------------
def layer_bytes(image, j):
    rng = random.Random(f"berth-gc-bench {image} {j}")
    return rng.randbytes(1024 + rng.randrange(3 * 1024 + 1))


def image_name(a, i):
    return f"gc/r{i % a.repos:03d}", f"t{i // a.repos:04d}"


def is_garbage(a, i):
    return (i // a.repos) % 10 == 9  # every 10th tag of every repository


def push_blob(c, kind, repo, digest, body=None, file=None, size=0):
    """Berth: one monolithic POST ?digest= with the body; distribution has no single-POST
    upload: POST, then PUT ?digest= with the body."""
    if body is not None:
        size = len(body)
    kw = {"body": body} if body is not None else {"file": file, "count": size}
    hdrs = {"Content-Type": "application/octet-stream"}
    if kind == "berth":
        path = f"/v2/{repo}/blobs/uploads/?" + urllib.parse.urlencode({"digest": digest})
        st, h, d = c.request("POST", path, headers=hdrs, **kw)
        check(st, (201,), f"POST ?digest= {repo}", h, d)
    else:
        st, h, d = c.request("POST", f"/v2/{repo}/blobs/uploads/")
        check(st, (202,), f"POST upload {repo}", h, d)
        path = bench.with_query(bench.location_path(h["location"]), digest=digest)
        st, h, d = c.request("PUT", path, headers=hdrs, **kw)
        check(st, (201,), f"PUT upload {repo}", h, d)


def manifest_for(config, layers):
    """(config bytes, manifest bytes) for LAYERS [(digest, size)]."""
    cfg = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Labels": {"bench.image": config}},
        "rootfs": {"type": "layers", "diff_ids": [d for d, _ in layers]},
    }, separators=(",", ":")).encode()
    man = json.dumps({
        "schemaVersion": 2, "mediaType": bench.OCI_MANIFEST,
        "config": {"mediaType": bench.OCI_CONFIG, "digest": sha(cfg), "size": len(cfg)},
        "layers": [{"mediaType": bench.OCI_LAYER, "digest": d, "size": s} for d, s in layers],
    }, separators=(",", ":")).encode()
    return cfg, man


def push_image(c, kind, repo, tag, label, layers_data):
    """Push the layers (bytes), a config and the manifest; return (manifest digest,
    [(digest, size)] of all its blobs, config first)."""
    layers = []
    for data in layers_data:
        d = sha(data)
        push_blob(c, kind, repo, d, body=data)
        layers.append((d, len(data)))
    cfg, man = manifest_for(label, layers)
    push_blob(c, kind, repo, sha(cfg), body=cfg)
    st, h, d = c.request("PUT", f"/v2/{repo}/manifests/{tag}", body=man,
                         headers={"Content-Type": bench.OCI_MANIFEST})
    check(st, (201,), f"PUT manifest {repo}:{tag}", h, d)
    return sha(man), [(sha(cfg), len(cfg))] + layers


def cmd_populate(a):
    images = a.images
    done = {"n": 0}
    lock = threading.Lock()
    results = {}
    todo = queue.Queue()
    for i in range(images):
        todo.put(i)
    t0 = time.perf_counter()
    next_report = [0.1]

    def worker(_k):
        c = bench.Client(a.url, a.auth)
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            repo, tag = image_name(a, i)
            data = [layer_bytes(i, j) for j in range(a.layers)]
            mdigest, blobs = push_image(c, a.kind, repo, tag, f"image-{i}", data)
            with lock:
                results[i] = (mdigest, blobs)
                done["n"] += 1
                if done["n"] >= next_report[0] * images:
                    dt = time.perf_counter() - t0
                    print(f"gc.py: populate {a.kind}: {done['n']}/{images} images "
                          f"({done['n'] * (a.layers + 1) / dt:,.0f} blobs/s)", file=sys.stderr)
                    next_report[0] += 0.1

    join_threads(*run_threads(a.workers, worker))
    push_secs = time.perf_counter() - t0

    # the pull workload's image: a 64 MiB random layer, monolithic
    c = bench.Client(a.url, a.auth)
    size = os.path.getsize(a.pull_blob)
    pull_digest = bench.sha256_file(a.pull_blob)
    with open(a.pull_blob, "rb") as f:
        push_blob(c, a.kind, "gc/pull", pull_digest, file=f, size=size)
    cfg, man = manifest_for("pull", [(pull_digest, size)])
    push_blob(c, a.kind, "gc/pull", sha(cfg), body=cfg)
    st, h, d = c.request("PUT", "/v2/gc/pull/manifests/latest", body=man,
                         headers={"Content-Type": bench.OCI_MANIFEST})
    check(st, (201,), "PUT manifest gc/pull:latest", h, d)

    # delete every 10th tag's manifest by digest: its config and layers become garbage
    garbage = [i for i in range(images) if is_garbage(a, i)]
    dq = queue.Queue()
    for i in garbage:
        dq.put(i)

    def deleter(_k):
        c = bench.Client(a.url, a.auth)
        while True:
            try:
                i = dq.get_nowait()
            except queue.Empty:
                return
            repo, _ = image_name(a, i)
            st, h, d = c.request("DELETE", f"/v2/{repo}/manifests/{results[i][0]}")
            check(st, (202,), f"DELETE manifest {repo}@{results[i][0]}", h, d)

    join_threads(*run_threads(a.workers, deleter))

    gset = set(garbage)
    g_blobs = [(image_name(a, i)[0], d, s) for i in garbage for d, s in results[i][1]]
    k_blobs = [(image_name(a, i)[0], d, s) for i in range(images) if i not in gset
               for d, s in results[i][1]]
    step_g = max(1, len(g_blobs) // a.sample)
    step_k = max(1, len(k_blobs) // a.sample)
    repo0, tag0 = image_name(a, 0)
    plan = {
        "kind": a.kind, "images": images, "layers": a.layers, "repos": a.repos,
        "blobs_total": len(g_blobs) + len(k_blobs) + 2,
        "garbage_blobs": len(g_blobs),
        "garbage_bytes": sum(s for _, _, s in g_blobs),
        "deleted_manifests": len(garbage),
        "stored_bytes": sum(s for _, _, s in g_blobs + k_blobs) + size + len(cfg),
        "garbage_sample": [[r, d] for r, d, _ in g_blobs[::step_g]],
        "kept_sample": [[r, d] for r, d, _ in k_blobs[::step_k]] + [["gc/pull", pull_digest]],
        "deleted_manifest_sample": [[image_name(a, i)[0], results[i][0]]
                                    for i in garbage[::max(1, len(garbage) // 10)]],
        "manifest_path": f"/v2/{repo0}/manifests/{tag0}",
        "manifest_digest": results[0][0],
        "pull": {"path": f"/v2/gc/pull/blobs/{pull_digest}", "digest": pull_digest, "size": size},
        "push_secs": round(push_secs, 1),
    }
    with open(a.plan, "w") as f:
        json.dump(plan, f, indent=1)
    print(f"blobs={plan['blobs_total']} garbage={plan['garbage_blobs']} "
          f"garbage_bytes={plan['garbage_bytes']} deleted_manifests={len(garbage)} "
          f"secs={time.perf_counter() - t0:.1f}")


def cmd_dist_layout(a):
    """distribution's store written straight into its filesystem layout (what its own pushes
    and DELETEs leave, with the same content as `populate`): distribution takes ~5 ms of CPU
    per blob over HTTP, which for 100,000 blobs would be most of the benchmark's time. Checked
    afterwards by `dist-check` against a distribution serving it, and by its collection's
    counts. Deleted manifests are what a DELETE by digest leaves: the manifest's blob and the
    repository's layer links stay, its revision link and its tags go."""
    v2 = os.path.join(a.root, "docker/registry/v2")

    def write(path, data):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def blob(digest, data):
        write(dist_blob_path(a.root, digest), data)

    def link(repo, kind, digest):
        hexd = digest.split(":", 1)[1]
        write(os.path.join(v2, "repositories", repo, kind, "sha256", hexd, "link"), digest.encode())

    def tag(repo, name, digest):
        hexd = digest.split(":", 1)[1]
        base = os.path.join(v2, "repositories", repo, "_manifests/tags", name)
        write(os.path.join(base, "current/link"), digest.encode())
        write(os.path.join(base, "index/sha256", hexd, "link"), digest.encode())

    t0 = time.perf_counter()
    garbage = g_bytes = 0
    for i in range(a.images):
        repo, tname = image_name(a, i)
        layers = []
        for j in range(a.layers):
            data = layer_bytes(i, j)
            d = sha(data)
            blob(d, data)
            link(repo, "_layers", d)
            layers.append((d, len(data)))
        cfg, man = manifest_for(f"image-{i}", layers)
        blob(sha(cfg), cfg)
        link(repo, "_layers", sha(cfg))
        blob(sha(man), man)
        os.makedirs(os.path.join(v2, "repositories", repo, "_uploads"), exist_ok=True)
        if is_garbage(a, i):
            garbage += 1 + len(layers)
            g_bytes += len(cfg) + sum(s for _, s in layers)
            # a DELETE removes the revision's link file, not its directory
            os.makedirs(os.path.join(v2, "repositories", repo, "_manifests/revisions/sha256",
                                     sha(man).split(":", 1)[1]), exist_ok=True)
        else:
            link(repo, "_manifests/revisions", sha(man))
            tag(repo, tname, sha(man))
    with open(a.pull_blob, "rb") as f:
        data = f.read()
    cfg, man = manifest_for("pull", [(sha(data), len(data))])
    for d, b in ((sha(data), data), (sha(cfg), cfg)):
        blob(d, b)
        link("gc/pull", "_layers", d)
    blob(sha(man), man)
    os.makedirs(os.path.join(v2, "repositories/gc/pull/_uploads"), exist_ok=True)
    link("gc/pull", "_manifests/revisions", sha(man))
    tag("gc/pull", "latest", sha(man))
    print(f"blobs={a.images * (a.layers + 1) + 2} garbage={garbage} garbage_bytes={g_bytes} "
          f"deleted_manifests={a.images // 10} secs={time.perf_counter() - t0:.1f}")


def cmd_dist_check(a):
    """A distribution serving the layout: a kept image and the pull image by tag, their blobs,
    and a deleted image's manifest gone, as its own pushes and DELETEs would have left them."""
    plan = json.load(open(a.plan))
    c = bench.Client(a.url)
    st, h, d = c.request("GET", plan["manifest_path"], headers={"Accept": bench.OCI_MANIFEST})
    check(st, (200,), f"distribution: GET {plan['manifest_path']}", h, d)
    if sha(d) != plan["manifest_digest"]:
        die("distribution serves a different manifest than Berth for the same tag")
    st, h, d = c.request("GET", "/v2/gc/pull/manifests/latest", headers={"Accept": bench.OCI_MANIFEST})
    check(st, (200,), "distribution: GET gc/pull:latest", h, d)
    for repo, digest in plan["kept_sample"] + plan["garbage_sample"]:
        st, h, d = c.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        check(st, (200,), f"distribution: HEAD {repo}@{digest}", h, d)
    for repo, digest in plan["deleted_manifest_sample"]:
        st, h, d = c.request("GET", f"/v2/{repo}/manifests/{digest}", headers={"Accept": bench.OCI_MANIFEST})
        check(st, (404,), f"distribution: GET deleted manifest {repo}@{digest}", h, d)
    print("ok")


# --------------------------------------------------------------------------------------------
# one collection, measured
# --------------------------------------------------------------------------------------------
def proc_cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        st = f.read()
    fields = st[st.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_write_bytes(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def start_gc(c):
    st, h, d = c.request("POST", "/berth/v1/gc/runs", body=b'{"dry_run":false}',
                         headers={"Content-Type": "application/json"})
    check(st, (201, 202), "POST /berth/v1/gc/runs", h, d)
    return json.loads(d)["id"]


def gc_status(c, run_id):
    st, h, d = c.request("GET", f"/berth/v1/gc/runs/{run_id}")
    check(st, (200,), f"GET /berth/v1/gc/runs/{run_id}", h, d)
    return json.loads(d)


def check_run(v, plan):
    """A finished collection must have removed exactly the garbage: no more, no less."""
    if v["outcome"] != "finished" or v["dry_run"]:
        die(f"collection {v['id']}: outcome {v['outcome']!r}, dry_run {v['dry_run']}")
    if v["blobs_removed"] != plan["garbage_blobs"] or v["bytes_freed"] != plan["garbage_bytes"]:
        die(f"collection {v['id']} removed {v['blobs_removed']} blobs / {v['bytes_freed']} bytes; "
            f"the garbage is {plan['garbage_blobs']} blobs / {plan['garbage_bytes']} bytes")
    if v["manifests_removed"] or v["tags_removed"]:
        die(f"collection {v['id']} removed manifests/tags with no retention rule: {v}")


def cmd_collect(a):
    plan = json.load(open(a.plan))
    c = bench.Client(a.url, a.auth)
    st, h, d = c.request("GET", "/v2/")  # the one-time Argon2 login, before the baseline
    check(st, (200,), "GET /v2/ as the admin", h, d)
    time.sleep(0.5)
    cpu0, io0 = proc_cpu_secs(a.pid), proc_write_bytes(a.pid)
    first = None
    with bench.PeakRss(a.pid) as mem:
        t0 = time.perf_counter()
        run_id = start_gc(c)
        while True:
            time.sleep(0.05)
            v = gc_status(c, run_id)
            now = time.perf_counter()
            if first is None and v["blobs_removed"] > 0:
                first = now - t0
            if v["finished_at"]:
                break
            if now - t0 > a.timeout:
                die(f"collection {run_id} still running after {a.timeout} s: {v}")
        secs = now - t0
    cpu = proc_cpu_secs(a.pid) - cpu0
    wrote = proc_write_bytes(a.pid) - io0
    check_run(v, plan)
    print(f"secs={secs:.3f} blobs={v['blobs_removed']} bytes={v['bytes_freed']} "
          f"first_removed_s={first if first is not None else secs:.3f} cpu_s={cpu:.2f} "
          f"write_mb={wrote / MB:.1f} before_kib={mem.before} peak_kib={mem.peak}")


def cmd_verify(a):
    """After a collection: a sample of referenced blobs still answers HEAD 200 in its
    repository (anonymous), a sample of the garbage 404; the pull blob's bytes are intact."""
    plan = json.load(open(a.plan))
    c = bench.Client(a.url)
    for want, sample in ((200, plan["kept_sample"]), (404, plan["garbage_sample"])):
        for repo, digest in sample:
            st, h, d = c.request("HEAD", f"/v2/{repo}/blobs/{digest}")
            if st != want:
                die(f"after the collection: HEAD {repo}@{digest} answered {st}, wanted {want}")
    st, h, d = c.request("GET", plan["manifest_path"], headers={"Accept": bench.OCI_MANIFEST})
    check(st, (200,), "GET a kept manifest", h, d)
    if sha(d) != plan["manifest_digest"]:
        die("a kept manifest changed")
    print(f"ok kept={len(plan['kept_sample'])} garbage={len(plan['garbage_sample'])}")


def dist_blob_path(root, digest):
    hexd = digest.split(":", 1)[1]
    return os.path.join(root, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data")


def cmd_verify_dist(a):
    plan = json.load(open(a.plan))
    for want, sample in ((True, plan["kept_sample"]), (False, plan["garbage_sample"])):
        for _repo, digest in sample:
            if os.path.exists(dist_blob_path(a.root, digest)) != want:
                die(f"distribution after its collection: {digest} {'missing' if want else 'still there'}")
    print("ok")


def cmd_dist_gc(a):
    """distribution's offline collection: `docker-registry garbage-collect CONFIG` under
    /usr/bin/time -v (wall time, max RSS, CPU); checks the count it reports."""
    plan = json.load(open(a.plan))
    tfile = a.config + ".time"
    argv = ["env", "-i", f"PATH={os.environ['PATH']}", "/usr/bin/time", "-v", "-o", tfile,
            "docker-registry", "garbage-collect", a.config]
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        die(f"docker-registry garbage-collect exited {p.returncode}: {(p.stderr or p.stdout)[-800:]}")
    tv = open(tfile).read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv).group(1))
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", tv).group(1))
    syst = float(re.search(r"System time \(seconds\): ([\d.]+)", tv).group(1))
    m = re.search(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion",
                  p.stdout + p.stderr)
    if not m:
        die(f"no summary in docker-registry garbage-collect's output: {p.stdout[-500:]}")
    marked, eligible = int(m.group(1)), int(m.group(2))
    # distribution stores manifests as blobs: the deleted manifests are garbage there too
    want = plan["garbage_blobs"] + plan["deleted_manifests"]
    if eligible != want:
        die(f"distribution found {eligible} blobs eligible for deletion, wanted {want} "
            f"({plan['garbage_blobs']} layers/configs + {plan['deleted_manifests']} manifests)")
    print(f"secs={secs:.3f} blobs={eligible} marked={marked} cpu_s={user + syst:.2f} peak_kib={rss}")


# --------------------------------------------------------------------------------------------
# throughput with and without a collection
# --------------------------------------------------------------------------------------------
def cmd_prepare_pushes(a):
    """Digests of the push workloads' blobs: slices of one random POOL file, so a push needs no
    fresh random bytes or hashing while it is timed, and no two pushes send the same blob."""
    size = os.path.getsize(a.pool)
    big = []
    with open(a.pool, "rb") as f:
        pool = f.read()
    if (a.big_count - 1) * BIG_STEP + BIG_PUSH > size or a.small_count * SMALL_PUSH > size:
        die(f"pool {a.pool} too small for {a.big_count} big and {a.small_count} small pushes")
    mv = memoryview(pool)
    lock = threading.Lock()

    def hasher(k):
        for i in range(k, a.big_count, 2):
            d = hashlib.sha256(mv[i * BIG_STEP:i * BIG_STEP + BIG_PUSH]).hexdigest()
            with lock:
                big.append((i, d))

    join_threads(*run_threads(2, hasher))
    big.sort()
    small = [hashlib.sha256(mv[i * SMALL_PUSH:(i + 1) * SMALL_PUSH]).hexdigest()
             for i in range(a.small_count)]
    with open(a.out, "w") as f:
        json.dump({"pool": a.pool, "big": [d for _, d in big], "small": small}, f)
    print(f"big={len(big)} small={len(small)}")


class Meter:
    def __init__(self):
        self.lock = threading.Lock()
        self.bytes = 0
        self.ops = 0

    def add(self, n, ops=0):
        with self.lock:
            self.bytes += n
            self.ops += ops

    def read(self):
        with self.lock:
            return self.bytes, self.ops


class GcWatch:
    """Starts a collection and follows it (every 100 ms, its own connection)."""

    def __init__(self, url, auth):
        self.c = bench.Client(url, auth)
        self.t_start = time.perf_counter()
        self.id = start_gc(self.c)
        self.last = None
        self.samples = []  # (t, blobs_removed)
        self.done = threading.Event()
        self.t_end = None
        self.error = None
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self):
        try:
            while True:
                v = gc_status(self.c, self.id)
                now = time.perf_counter()
                self.last = v
                self.samples.append((now, v["blobs_removed"]))
                if v["finished_at"]:
                    self.t_end = now
                    self.done.set()
                    return
                time.sleep(0.1)
        except BaseException as e:  # noqa: BLE001
            self.error = e
            self.t_end = time.perf_counter()
            self.done.set()

    def removed_at(self, t):
        best = 0
        for ts, n in self.samples:
            if ts <= t:
                best = n
        return best


def pull_worker(k, url, path, size, meter, stop):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    buf = memoryview(bytearray(MiB))
    while not stop.is_set():
        conn.request("GET", path)
        r = conn.getresponse()
        if r.status != 200:
            raise Failed(f"GET {path}: HTTP {r.status}")
        got = 0
        while not stop.is_set():
            n = r.readinto(buf)
            if not n:
                break
            got += n
            meter.add(n)
        if stop.is_set():
            break
        if got != size:
            raise Failed(f"GET {path}: {got} bytes, wanted {size}")
        meter.add(0, 1)
    conn.close()


def push_worker(k, url, auth, repo, pool, jobs, size, step, meter, stop):
    c = bench.Client(url, auth)
    st, h, d = c.request("GET", "/v2/")
    check(st, (200,), "GET /v2/ as the admin", h, d)
    with open(pool, "rb") as f:
        while not stop.is_set():
            try:
                i, hexd = jobs.get_nowait()
            except queue.Empty:
                raise Failed("ran out of prepared push blobs: raise the counts in gc.sh") from None
            digest = "sha256:" + hexd
            path = f"/v2/{repo}/blobs/uploads/?" + urllib.parse.urlencode({"digest": digest})
            st, h, d = c.request("POST", path, headers={"Content-Type": "application/octet-stream"},
                                 file=f, offset=i * step, count=size)
            check(st, (201,), f"push {digest}", h, d)
            meter.add(size, 1)


def run_window(seconds, meter_fn, watch, warmup=0.5):
    """Sample the meter every 50 ms for SECONDS after a warm-up; stop early when the
    collection ends. Returns (bytes, ops, secs) over the window, overlap fraction, t0, t1."""
    time.sleep(warmup)
    t0 = time.perf_counter()
    b0, o0 = meter_fn()
    end = t0 + seconds
    while True:
        time.sleep(0.05)
        now = time.perf_counter()
        if now >= end or (watch and watch.done.is_set()):
            break
    b1, o1 = meter_fn()
    t1 = time.perf_counter()
    return b1 - b0, o1 - o0, t1 - t0, min(1.0, (t1 - t0) / seconds), t0, t1


def workload(name, a, plan, pushes, watch, emit):
    """Run one workload for a.seconds (less if the collection ends first); emit its lines.
    Returns False when there was no collection left to run it in."""
    if watch and watch.done.is_set():
        return False
    out_lines = []
    final_emit, emit = emit, out_lines.append
    mode, run = a.mode, a.run
    tag = f"{mode} {run}"
    if name == "manifest":
        argv = ["wrk", "-t2", "-c64", f"-d{a.seconds}s", "--latency", "--timeout", "10s",
                "-H", f"Accept: {bench.OCI_MANIFEST}", a.url + plan["manifest_path"]]
        t0 = time.perf_counter()
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        t1 = time.perf_counter()
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p99 = bench.parse_wrk_latency(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
        total = int(re.search(r"(\d+) requests in", out).group(1))
        errs = 0
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if m:
            errs += int(m.group(1))
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if m:
            errs += sum(int(x) for x in m.groups())
        if errs * 100 > total:
            die(f"manifest GETs: {errs} errors of {total}:\n{out}")
        overlap = 1.0
        if watch:
            overlap = min(1.0, ((watch.t_end or t1) - t0) / (t1 - t0))
        emit(f"manifest_rps {tag} {rps:.0f}")
        emit(f"manifest_p99 {tag} {p99:.2f}")
    else:
        meter, stop = Meter(), threading.Event()
        if name == "pull":
            threads, errors = run_threads(a.pull_clients, pull_worker, a.url, plan["pull"]["path"],
                                          plan["pull"]["size"], meter, stop)
        else:
            big = name == "push"
            jobs = queue.Queue()
            for i, d in enumerate(pushes["big"] if big else pushes["small"]):
                jobs.put((i, d))
            threads, errors = run_threads(
                a.push_clients if big else a.small_push_clients, push_worker, a.url, a.auth,
                f"gc/push-{name}-{mode}", pushes["pool"], jobs,
                BIG_PUSH if big else SMALL_PUSH, BIG_STEP if big else SMALL_PUSH, meter, stop)
        nbytes, ops, secs, overlap, t0, t1 = run_window(a.seconds, meter.read, watch)
        stop.set()
        join_threads(threads, errors)
        if name == "pull":
            emit(f"pull_mbps {tag} {nbytes / secs / MB:.1f}")
        elif name == "push":
            emit(f"push_mbps {tag} {nbytes / secs / MB:.1f}")
        else:
            emit(f"push_small_ops {tag} {ops / secs:.1f}")
    if watch:
        if overlap < 0.5:  # the collection ended early in the window: run it again in another
            print(f"gc.py: {name}: the collection ran for only {100 * overlap:.0f}% of the "
                  f"window; not counted", file=sys.stderr)
            return False
        emit(f"overlap_{name} {tag} {100 * overlap:.0f}")
        removed = watch.removed_at(t1) - watch.removed_at(t0)
        emit(f"gc_rate_{name} {tag} {removed / (t1 - t0):.1f}")
    for line in out_lines:
        final_emit(line)
    return True


def cmd_throughput(a):
    plan = json.load(open(a.plan))
    pushes = json.load(open(a.pushes))
    lines = []

    def emit(line):
        lines.append(line)
        with open(a.raw, "a") as f:
            f.write(line + "\n")
        print(f"gc.py: {line}", file=sys.stderr)

    c = bench.Client(a.url, a.auth)
    st, h, d = c.request("GET", "/v2/")
    check(st, (200,), "GET /v2/ as the admin", h, d)
    watch = GcWatch(a.url, a.auth) if a.mode == "during" else None
    left = []
    for name in a.workloads.split(","):
        if left or not workload(name, a, plan, pushes, watch, emit):
            left.append(name)
    if watch:
        watch.done.wait(a.timeout)
        if watch.error:
            die(f"following the collection: {watch.error}")
        if not watch.done.is_set():
            die(f"collection {watch.id} still running after {a.timeout} s")
        check_run(watch.last, plan)
        emit(f"gc_secs_loaded {a.mode} {a.run} {watch.t_end - watch.t_start:.2f}")
    print(",".join(left))


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
GC_ROWS = [  # key, label, unit
    ("gc_secs", "collection time (POST to finished)", "s"),
    ("gc_rate", "garbage blobs removed per second", "blobs/s"),
    ("gc_first", "time before the first blob is removed", "s"),
    ("gc_cpu", "CPU time of the process during it", "s"),
    ("gc_write", "bytes the process wrote to disk", "MB"),
    ("gc_freed", "bytes freed (reported)", "MB"),
    ("rss_before", "RSS before the collection (idle)", "MiB"),
    ("rss_peak", "RSS peak during the collection", "MiB"),
    ("gc_secs_loaded", "collection time under the workloads", "s"),
]
TP_ROWS = [  # key, label, unit
    ("pull_mbps", "pull, {pull_clients} clients x 64 MiB blob", "MB/s"),
    ("manifest_rps", "manifest GET by tag, wrk 64 conns", "req/s"),
    ("manifest_p99", "manifest GET p99", "ms"),
    ("push_mbps", "push, {push_clients} clients x 16 MiB, monolithic", "MB/s"),
    ("push_small_ops", "push, {small_push_clients} clients x 4 KiB, monolithic", "blobs/s"),
]
WORKLOAD_OF = {"pull_mbps": "pull", "manifest_rps": "manifest", "manifest_p99": "manifest",
               "push_mbps": "push", "push_small_ops": "push-small"}


def load_raw(path):
    runs, meta = {}, []
    with open(path) as f:
        for line in f:
            if line.startswith("# "):
                meta.append(line[2:].rstrip())
                continue
            parts = line.split()
            if len(parts) == 4:
                try:
                    runs.setdefault((parts[0], parts[1]), []).append(float(parts[3]))
                except ValueError:
                    pass
    return runs, meta


def fmt(v, unit):
    if v is None:
        return "-"
    if unit in ("MiB", "ms") or (unit == "s" and v < 100):
        return f"{v:.1f}" if unit != "s" or v >= 10 else f"{v:.2f}"
    return f"{v:,.0f}"


def table(hdr, rows):
    widths = [max(len(r[i]) for r in rows + [hdr]) for i in range(len(hdr))]
    out = []
    for i, r in enumerate([hdr] + rows):
        out.append("  ".join(s.ljust(widths[j]) if j in (0, 1) else s.rjust(widths[j])
                             for j, s in enumerate(r)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def cmd_report(a):
    runs, meta = load_raw(a.raw)
    med = {k: statistics.median(v) for k, v in runs.items()}
    par = {"pull_clients": 4, "push_clients": 3, "small_push_clients": 8}
    for m in meta:
        for k, v in re.findall(r"\b(\w+)=(\d+)\b", m):
            par[k] = int(v)
    lines = [m for m in meta if not m.startswith("  ")]
    lines += ["", "medians of the runs; MB/s = 10^6 bytes/s; MiB = 2^20 bytes", "",
              "collection of the store:"]
    rows = []
    for key, label, unit in GC_ROWS:
        b, d = med.get((key, "berth")), med.get((key, "dist"))
        if b is None and d is None:
            continue
        n = max(len(runs.get((key, s), [])) for s in ("berth", "dist"))
        rows.append((label, unit, fmt(b, unit), fmt(d, unit) if d is not None else "n/a",
                     f"{b / d:.2f}" if b and d else "-", str(n)))
    lines += table(("measurement", "unit", "berth", "distribution (offline)", "berth/dist", "runs"), rows)
    lines += ["", "throughput with no collection and during one (berth; distribution's collection "
              "is offline: n/a):"]
    rows = []
    for key, label, unit in TP_ROWS:
        n, d = med.get((key, "none")), med.get((key, "during"))
        if n is None and d is None:
            continue
        ov = med.get((f"overlap_{WORKLOAD_OF[key]}", "during"))
        rows.append((label.format(**par), unit, fmt(n, unit), fmt(d, unit),
                     f"{d / n:.2f}" if n and d else "-",
                     f"{ov:.0f}%" if ov is not None else "-",
                     str(max(len(runs.get((key, s), [])) for s in ("none", "during")))))
    lines += table(("workload", "unit", "none", "during GC", "during/none", "overlap", "runs"), rows)
    rates = [(w, med.get((f"gc_rate_{w}", "during"))) for w in ("pull", "manifest", "push", "push-small")]
    rates = [f"{w} {v:,.0f}" for w, v in rates if v is not None]
    idle = med.get(("gc_rate", "berth"))
    if rates:
        lines.append(f"  collection progress during each workload, blobs removed/s: {', '.join(rates)}"
                     + (f" (idle: {idle:,.0f} over the whole collection)" if idle else ""))
    lines.append("  overlap: the share of each workload's window that a collection was running "
                 "(median); a window is cut short when the collection ends")
    lines += [m for m in meta if m.startswith("  ")]
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("populate")
    s.add_argument("url")
    s.add_argument("--auth", default="")
    s.add_argument("--kind", choices=["berth", "dist"], required=True)
    s.add_argument("--images", type=int, required=True)
    s.add_argument("--layers", type=int, default=9)
    s.add_argument("--repos", type=int, required=True)
    s.add_argument("--workers", type=int, default=8)
    s.add_argument("--pull-blob", required=True)
    s.add_argument("--sample", type=int, default=50)
    s.add_argument("--plan", required=True)
    s.set_defaults(fn=cmd_populate)

    s = sub.add_parser("dist-layout")
    s.add_argument("root")
    s.add_argument("--images", type=int, required=True)
    s.add_argument("--layers", type=int, default=9)
    s.add_argument("--repos", type=int, required=True)
    s.add_argument("--pull-blob", required=True)
    s.set_defaults(fn=cmd_dist_layout)

    s = sub.add_parser("dist-check")
    s.add_argument("url"); s.add_argument("--plan", required=True)
    s.set_defaults(fn=cmd_dist_check)

    s = sub.add_parser("collect")
    s.add_argument("url")
    s.add_argument("--auth", required=True)
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--plan", required=True)
    s.add_argument("--timeout", type=float, default=3600)
    s.set_defaults(fn=cmd_collect)

    s = sub.add_parser("verify")
    s.add_argument("url"); s.add_argument("--plan", required=True)
    s.set_defaults(fn=cmd_verify)

    s = sub.add_parser("verify-dist")
    s.add_argument("root"); s.add_argument("--plan", required=True)
    s.set_defaults(fn=cmd_verify_dist)

    s = sub.add_parser("dist-gc")
    s.add_argument("config"); s.add_argument("--plan", required=True)
    s.add_argument("--data", required=True)
    s.set_defaults(fn=cmd_dist_gc)

    s = sub.add_parser("prepare-pushes")
    s.add_argument("pool")
    s.add_argument("--big-count", type=int, required=True)
    s.add_argument("--small-count", type=int, required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_prepare_pushes)

    s = sub.add_parser("throughput")
    s.add_argument("url")
    s.add_argument("--auth", required=True)
    s.add_argument("--plan", required=True)
    s.add_argument("--pushes", required=True)
    s.add_argument("--workloads", default="pull,manifest,push,push-small")
    s.add_argument("--seconds", type=int, required=True)
    s.add_argument("--mode", choices=["none", "during"], required=True)
    s.add_argument("--run", type=int, required=True)
    s.add_argument("--raw", required=True)
    s.add_argument("--pull-clients", type=int, default=4)
    s.add_argument("--push-clients", type=int, default=3)
    s.add_argument("--small-push-clients", type=int, default=8)
    s.add_argument("--timeout", type=float, default=3600)
    s.set_defaults(fn=cmd_throughput)

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
