#!/usr/bin/env python3
"""bench/propagation.py: how long a change on the root takes to be in force down a hierarchy of
connected registries (issue 4; target: within 2 seconds).

Usage: bench/propagation.py [-n N] [--poll-ms MS] [--timeout S] [--no-build]
                            [--max-load L] [--wait-load S] [--keep-tmp]

  -n N          measurements per kind of change (default 30)
  --poll-ms MS  poll period (default 5 ms)
  --timeout S   give up on one measurement after S seconds (default 10; counted as a miss)
  --no-build    use target/release/berth as it is
  --max-load L  before measuring, wait until the 1-minute load average is below L (default 1.5),
  --wait-load S for at most S seconds (default 180); then go on anyway and say so
  --keep-tmp    keep the temp dir (data dirs, server logs)

What it does: builds Berth (release) and starts three `berth serve` processes on free loopback
ports, each with its own data dir: the root; `factory` (ReadWrite, parent: the root) and `line3`
(ReadOnly, parent: factory), created on the root with POST /berth/v1/connected-registries and
started with the connection string of POST .../<name>/settings {"parent_protocol":"http",
"generate_password":1}. A client token `client1` (scope map: content/read on hello-world) is a
client token of both. Then, N times each, in turn:
  disable     PATCH /berth/v1/tokens/client1 {"status":"disabled"}  until GET /v2/ with
              client1's Basic credentials answers 401
  enable      PATCH ... {"status":"enabled"}                        until it answers 200
  password1   POST /berth/v1/tokens/client1/credentials {"password1":true}
                                                                    until the NEW password1
                                                                    answers 200
The clock starts when the management call on the root has returned; from then line3 and
factory are polled every --poll-ms (each tick asks both, until each has turned), and the time
is taken when the answer showing the change arrives, so it is an upper bound with --poll-ms
resolution. Prints p50, p90, p99 and max per change and per level (factory: one level down,
line3: two levels down) against the 2-second target, plus the management calls' own latency.
The instances run with a high failed-login limit (BERTH_LOGIN_FAILURES_PER_MINUTE): the polls
with a disabled token or a not-yet-known password are failed logins, which the default limit
(10 a minute) would answer with 429.
Noise: the CPU used by processes other than these three servers and this script during the
measurements is printed as a share of all CPUs, with the load average before and after.
Every process started here is stopped on exit (try/finally, also on SIGINT/SIGTERM) and the
temp dir removed. Needs: cargo (unless --no-build) and Python 3.11 (stdlib only).
"""

import argparse
import base64
import http.client
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BERTH = os.path.join(ROOT_DIR, "target", "release", "berth")
TARGET_S = 2.0
LOGIN_LIMIT = "100000"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


class Conn:
    """One keep-alive HTTP/1.1 connection to a loopback server, reopened on failure."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, headers=None, body=None):
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.05)

    def close(self):
        if self.conn is not None:
            self.conn.close()


class Manage:
    """The root's management API as the admin."""

    def __init__(self, port, admin_password):
        self.conn = Conn(port)
        self.auth = basic("admin", admin_password)

    def call(self, method, path, body=None, want=(200,)):
        headers = {"Authorization": self.auth}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        status, raw = self.conn.request(method, path, headers, data)
        if status not in want:
            raise RuntimeError(f"{method} {path}: {status} (want {want}): {raw[:500]!r}")
        return json.loads(raw) if raw else None


class Server:
    def __init__(self, name, tmp, admin_password, extra_args=()):
        self.name = name
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.data = os.path.join(tmp, name)
        self.log_path = os.path.join(tmp, f"{name}.log")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "RUST_LOG": os.environ.get("BERTH_RUST_LOG", "warn"),
            "BERTH_ADMIN_PASSWORD": admin_password,
            "BERTH_LOGIN_FAILURES_PER_MINUTE": LOGIN_LIMIT,
        }
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(
                [BERTH, "serve", "--listen", self.host, "--data-dir", self.data, *extra_args],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env)
        self.conn = Conn(self.port)

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
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) during start-up:\n"
                                   f"{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.host} within {within} s")

    def login_status(self, user, password):
        status, _ = self.conn.request("GET", "/v2/", {"Authorization": basic(user, password)})
        return status

    def cpu_ticks(self):
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        except OSError:
            return 0

    def stop(self):
        self.conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def machine_busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def wait_until(what, within, check, period=0.05):
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return
        time.sleep(period)
    raise RuntimeError(f"timed out after {within} s waiting for {what} (last: {last})")


def measure(instances, user, password, want, poll_s, timeout_s):
    """From now, polls each instance every poll_s until GET /v2/ answers `want`; returns
    {name: seconds or None on timeout}."""
    t0 = time.monotonic()
    pending = list(instances)
    result = {}
    tick = t0
    while pending and time.monotonic() - t0 < timeout_s:
        for inst in list(pending):
            status = inst.login_status(user, password)
            if status == want:
                result[inst.name] = time.monotonic() - t0
                pending.remove(inst)
            elif status == 429:
                raise RuntimeError(f"{inst.name} rate-limited the polls (429)")
            elif status not in (200, 401):
                raise RuntimeError(f"{inst.name}: GET /v2/ answered {status}")
        tick += poll_s
        time.sleep(max(0.0, tick - time.monotonic()))
    for inst in pending:
        result[inst.name] = None
    return result


def percentile(sorted_values, p):
    """Nearest-rank percentile."""
    k = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[k - 1]


def report(results, n, poll_ms, mgmt):
    print()
    print(f"Propagation from the root, N={n} per change, polling every {poll_ms} ms "
          f"(times in ms, from the management call's return)")
    print(f"{'change':<11}{'level':<22}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}"
          f"{'misses':>8}  target {TARGET_S:.0f} s")
    ok_all = True
    for change in ("disable", "enable", "password1"):
        for name, label in (("factory", "factory (1 down)"), ("line3", "line3 (2 down)")):
            values = results[change][name]
            got = sorted(v for v in values if v is not None)
            misses = len(values) - len(got)
            if not got:
                print(f"{change:<11}{label:<22}{'-':>8}{'-':>8}{'-':>8}{'-':>8}{misses:>8}  FAIL")
                ok_all = False
                continue
            p50, p90, p99 = (percentile(got, p) * 1e3 for p in (50, 90, 99))
            mx = got[-1] * 1e3
            ok = misses == 0 and mx <= TARGET_S * 1e3
            ok_all &= ok
            print(f"{change:<11}{label:<22}{p50:>8.1f}{p90:>8.1f}{p99:>8.1f}{mx:>8.1f}"
                  f"{misses:>8}  {'PASS' if ok else 'FAIL'}")
    m = sorted(mgmt)
    print(f"\nmanagement calls on the root themselves (not included above): "
          f"p50 {percentile(m, 50) * 1e3:.1f} ms, p99 {percentile(m, 99) * 1e3:.1f} ms, "
          f"max {m[-1] * 1e3:.1f} ms")
    return ok_all


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--poll-ms", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--wait-load", type=int, default=180)
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args()
    if args.n < 1 or args.poll_ms <= 0 or args.timeout <= 0:
        ap.error("-n, --poll-ms and --timeout must be positive")

    # SIGTERM behaves like Ctrl-C, so the finally below always runs.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    if not args.no_build:
        log("building berth (release)")
        subprocess.run(["cargo", "build", "--release", "-p", "berth"], cwd=ROOT_DIR, check=True)
    if not os.access(BERTH, os.X_OK):
        sys.exit(f"{BERTH} is missing (build it, or drop --no-build)")

    tmp = tempfile.mkdtemp(prefix="berth-propagation.")
    servers = []
    try:
        admin_password = "propagation-" + secrets.token_hex(12)
        root = Server("root", tmp, admin_password)
        servers.append(root)
        root.wait_listening()
        manage = Manage(root.port, admin_password)

        manage.call("POST", "/berth/v1/scope-maps", {
            "name": "hello-pull",
            "repositories": [{"repository": "hello-world", "actions": ["content/read"]}],
        }, want=(201,))
        created = manage.call("POST", "/berth/v1/tokens",
                              {"name": "client1", "scope_map": "hello-pull"}, want=(201,))
        password = {p["name"]: p["value"] for p in created["passwords"]}["password1"]

        def connection_string(name):
            s = manage.call("POST", f"/berth/v1/connected-registries/{name}/settings",
                            {"parent_protocol": "http", "generate_password": 1})
            return s["connection_string"]

        def online(name):
            view = manage.call("GET", f"/berth/v1/connected-registries/{name}")
            return view["connection_state"] == "Online", view["connection_state"]

        def accepts(inst, pw):
            return lambda: ((s := inst.login_status("client1", pw)) == 200, s)

        manage.call("POST", "/berth/v1/connected-registries", {
            "name": "factory", "mode": "ReadWrite", "repositories": ["hello-world"],
            "client_tokens": ["client1"]}, want=(201,))
        factory = Server("factory", tmp, admin_password,
                         ["--connection-string", connection_string("factory")])
        servers.append(factory)
        factory.wait_listening()
        wait_until("factory Online on the root", 30, lambda: online("factory"))

        manage.call("POST", "/berth/v1/connected-registries", {
            "name": "line3", "mode": "ReadOnly", "parent": "factory",
            "repositories": ["hello-world"], "client_tokens": ["client1"]}, want=(201,))
        cs = connection_string("line3")
        if f"ParentGatewayEndpoint={factory.host}" not in cs:
            raise RuntimeError(f"line3's connection string does not name factory's instance: "
                               f"{cs.split('SyncTokenPassword')[0]}...")
        line3 = Server("line3", tmp, admin_password, ["--connection-string", cs])
        servers.append(line3)
        line3.wait_listening()
        wait_until("line3 Online on the root", 30, lambda: online("line3"))
        wait_until("client1 accepted on factory", 30, accepts(factory, password))
        wait_until("client1 accepted on line3", 30, accepts(line3, password))
        log(f"root {root.host} -> factory {factory.host} -> line3 {line3.host}: "
            "client1 accepted on both")

        waited = 0
        while load1() >= args.max_load:
            if waited >= args.wait_load:
                log(f"load average still {load1():.2f} after {waited} s; measuring anyway")
                break
            if waited == 0:
                log(f"load average {load1():.2f} >= {args.max_load}: waiting "
                    f"(up to {args.wait_load} s)")
            time.sleep(10)
            waited += 10
        up_before = uptime()
        log(f"uptime before measuring: {up_before}")

        instances = [factory, line3]
        results = {c: {"factory": [], "line3": []} for c in ("disable", "enable", "password1")}
        mgmt = []
        poll = args.poll_ms / 1e3
        busy0, total0 = machine_busy_ticks()
        own0 = sum(s.cpu_ticks() for s in servers)
        self0 = os.times()

        def timed(method, path, body):
            t = time.monotonic()
            out = manage.call(method, path, body)
            mgmt.append(time.monotonic() - t)
            return out

        for i in range(args.n):
            timed("PATCH", "/berth/v1/tokens/client1", {"status": "disabled"})
            r = measure(instances, "client1", password, 401, poll, args.timeout)
            for k, v in r.items():
                results["disable"][k].append(v)

            timed("PATCH", "/berth/v1/tokens/client1", {"status": "enabled"})
            r = measure(instances, "client1", password, 200, poll, args.timeout)
            for k, v in r.items():
                results["enable"][k].append(v)

            gen = timed("POST", "/berth/v1/tokens/client1/credentials", {"password1": True})
            password = {p["name"]: p["value"] for p in gen["passwords"]}["password1"]
            r = measure(instances, "client1", password, 200, poll, args.timeout)
            for k, v in r.items():
                results["password1"][k].append(v)

            if (i + 1) % 10 == 0 or i + 1 == args.n:
                last = {c: results[c]["line3"][-1] for c in results}
                log(f"{i + 1}/{args.n} rounds; last on line3: " + ", ".join(
                    f"{c} {'miss' if v is None else f'{v * 1e3:.1f} ms'}"
                    for c, v in last.items()))

        busy1, total1 = machine_busy_ticks()
        own1 = sum(s.cpu_ticks() for s in servers)
        self1 = os.times()
        hz = os.sysconf("SC_CLK_TCK")
        own = (own1 - own0) + (self1.user + self1.system - self0.user - self0.system) * hz
        outside = max(0.0, (busy1 - busy0 - own) / max(1, total1 - total0) * 100)
        up_after = uptime()
        log(f"uptime after measuring: {up_after}")

        ok = report(results, args.n, args.poll_ms, mgmt)
        print(f"\nload before: {up_before}\nload after:  {up_after}")
        print(f"CPU used by other processes while measuring: {outside:.0f}% of all "
              f"{os.cpu_count()} CPUs")
        return 0 if ok else 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        for s in reversed(servers):
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {s.name}: {e}")
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
