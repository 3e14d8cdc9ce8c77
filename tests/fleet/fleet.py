"""A PAR fleet on loopback: N `par serve` nodes polling one registry index on
the S3-compatible test store, HAProxy in front, and a load generator.

    store = Store(d)                       # s3rver + the packages it serves
    fleet = Fleet(d, store, n=3)           # nodes, then HAProxy over them
    with Load(fleet.url, threads=6) as load:
        ...                                # deploy, SIGTERM, kill -9 ...
    load.failed() == 0

Nodes are conftest.Server processes (the e2e harness: its log checks run at
stop), each with its own state directory (deployed.json, the package cache)
and a port chosen up front, so a node killed with SIGKILL restarts on the
same address with the same cache.

HAProxy (haproxy.cfg written here): roundrobin; `option httpchk GET
/runtime/ready` every `inter` ms, a server is down after `fall` failed checks
and up after `rise` good ones. A failed request is retried (`retries`, on
another server: `option redispatch 1`) only on `retry-on conn-failure`: the
connection was refused or never established, so the invoke never reached a
node and sending it elsewhere cannot run it twice. `empty-response`,
`response-timeout` and `5xx`-class retries are left off on purpose: an
invoke is not idempotent (an agent may have charged a card before the node
died) and a retry after the request was delivered could run it twice. The
cost is visible and bounded: the invokes in flight on a node that dies get a
502, and the test counts them.

Shutdown rule the configuration follows (docs/fleet.md): a node's
shutdown.grace_ms must be at least HAProxy's inter × fall plus a margin (one
check's timeout and the time to finish a check in progress), so the balancer
has marked the node down before its listener closes.
"""
import collections
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import requests

from conftest import BUILD, SOURCE, Server, run, stop_all
from peers import S3, free_port

sys.path.insert(0, os.path.join(SOURCE, "bench"))
from common import descendants, rss_kb  # noqa: E402 - /proc readings, shared with the benchmarks

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

# HAProxy's health checks: every INTER_MS, down after FALL failures, up after RISE
INTER_MS, FALL, RISE = 200, 2, 2
# grace >= inter x fall + margin (a check in progress, its timeout, scheduling)
GRACE_MS = INTER_MS * FALL + 600
POLL_MS = 1000  # registry.poll_interval_ms of every node


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def faulty_version(d, version):
    """The faulty fixture (its `slow` export sleeps `input` ms) at `version`,
    packed by par into d."""
    src = os.path.join(d, f"faulty-{version}")
    if not os.path.exists(src):
        shutil.copytree(os.path.join(BUILD, "stage", "faulty"), src)
        y = open(os.path.join(src, "agent.yaml")).read()
        assert "version: 0.1.0" in y
        open(os.path.join(src, "agent.yaml"), "w").write(y.replace("version: 0.1.0",
                                                                   "version: " + version))
    out = os.path.join(d, f"faulty-{version}.apkg")
    if not os.path.exists(out):
        r = run("pack", src, "-o", out)
        assert r.returncode == 0, r.stderr
    return out


class Store:
    """The S3-compatible store holding the packages and the index."""

    def __init__(self, d):
        self.d = d
        self.s3 = S3(d)
        os.environ["AWS_ACCESS_KEY_ID"] = S3.ACCESS
        os.environ["AWS_SECRET_ACCESS_KEY"] = S3.SECRET
        self.index_url = f"s3://{self.s3.bucket}/index.json"

    def publish(self, version):
        """Uploads faulty@version; returns its index entry."""
        p = faulty_version(self.d, version)
        url = self.s3.put(f"faulty/faulty-{version}.apkg", p)
        return {"name": "faulty", "version": version, "url": url, "sha256": sha256(p)}

    def set_index(self, entries):
        """Writes the index; returns the sha256 of the document (its bytes).
        `etag` is then the store's ETag for it (an MD5 for a one-part upload)."""
        path = os.path.join(self.d, "index.json")
        data = json.dumps({"packages": entries}).encode()
        with open(path, "wb") as f:
            f.write(data)
        self.s3.put("index.json", path)
        self.published = time.time()  # the PUT is done: the document is live
        self.etag = '"' + hashlib.md5(data).hexdigest() + '"'
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def stop(self):
        self.s3.stop()

    def restart(self):
        """The same store again (same data directory), on a new port: nodes
        that still point at the old port keep failing, as with an outage."""
        self.s3 = S3(self.d)


def node_config(path, store, extra=""):
    with open(path, "w") as f:
        f.write(f"""
auth:
  mode: "off"
trust:
  require_signatures: false
registry:
  index_url: {store.index_url}
  poll_interval_ms: {POLL_MS}
  retries: 0
  connect_timeout_ms: 1000
  timeout_ms: 10000
  s3:
    endpoint: {store.s3.endpoint}
    region: us-east-1
    path_style: true
shutdown:
  grace_ms: {GRACE_MS}
  drain_ms: 10000
{extra}
""")
    return path


class Node(Server):
    """One `par serve` on a fixed port, restartable on the same state."""

    def __init__(self, d, name, store, extra="", wait_ready=True):
        self.name = name
        self.port = free_port()
        self.dir = os.path.join(d, name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = node_config(os.path.join(self.dir, "par.yaml"), store,
                                f"metering:\n  node_id: {name}\n" + extra)
        self.starts = 0
        self._start(wait_ready)

    def _start(self, wait_ready=True):
        if self.starts:  # keep the previous life's log next to the new one
            os.replace(os.path.join(self.dir, "par.log"),
                       os.path.join(self.dir, f"par.log.{self.starts}"))
        self.starts += 1
        Server.__init__(self, self.dir, [], ("--config", self.conf, "--listen",
                                             f"127.0.0.1:{self.port}"), wait_ready=wait_ready)
        assert self.url == f"http://127.0.0.1:{self.port}", self.url

    def restart(self, wait_ready=True):
        self._start(wait_ready)

    def kill9(self):
        self.killed = True
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def info(self):
        return requests.get(self.url + "/runtime/info", timeout=5).json()

    def generation(self):
        return (self.info().get("registry") or {}).get("generation")

    def packages(self):
        """{name: (version, sha256)} of the active versions."""
        r = requests.get(self.url + "/runtime/packages", timeout=5).json()
        out = {}
        for p in r if isinstance(r, list) else r.get("packages", []):
            for v in p.get("versions", [p]):
                if v.get("state") == "active":
                    out[v["name"] if "name" in v else p["name"]] = (v["version"], v.get("sha256"))
        return out

    def rss_kb(self):
        """Resident memory of the node and its worker processes, in KiB."""
        return sum(rss_kb(pid) for pid in [self.proc.pid, *descendants(self.proc.pid)])


class HAProxy:
    """HAProxy in front of the nodes, with its admin socket and request log."""

    def __init__(self, d, nodes):
        self.d = d
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sock = os.path.join(d, "haproxy.sock")
        self.cfg = os.path.join(d, "haproxy.cfg")
        servers = "\n".join(f"    server {n.name} 127.0.0.1:{n.port} check" for n in nodes)
        with open(self.cfg, "w") as f:
            f.write(f"""global
    maxconn 4096
    stats socket {self.sock} mode 600 level admin
    log stdout format raw local0 info

defaults
    mode http
    log global
    # accept time (ms since epoch), server, status, termination state, total,
    # handshake and idle times (ms): the request began at accept + Th + Ti
    log-format "%Ts%ms %s %ST %ts %Tt %Th %Ti"
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 5s
    # a request is resent elsewhere only when it never reached a node; every
    # request gets a connection of its own to the node, so a dead node's
    # refused connect is that signal (a reused idle connection would fail
    # only after the invoke was written, when resending is no longer safe)
    retries 3
    retry-on conn-failure
    option redispatch 1
    http-reuse never

frontend fleet
    bind 127.0.0.1:{self.port}
    default_backend par

backend par
    balance roundrobin
    option httpchk GET /runtime/ready
    http-check expect status 200
    default-server inter {INTER_MS}ms fastinter {INTER_MS}ms downinter {INTER_MS}ms fall {FALL} rise {RISE}
{servers}
""")
        self.log_path = os.path.join(d, "haproxy.log")
        r = subprocess.run([HAPROXY, "-c", "-f", self.cfg], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("haproxy exited:\n" + open(self.log_path).read())
            if os.path.exists(self.sock) and all(s == "UP" for s in self.states().values()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"haproxy: servers not up: {self.states()}")

    def command(self, cmd):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.sock)
            s.sendall(cmd.encode() + b"\n")
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out.decode()
                out += chunk

    def states(self):
        """{server: "UP" | "DOWN" | ...} from `show stat`."""
        try:
            lines = self.command("show stat").splitlines()
        except OSError:
            return {}
        if not lines:
            return {}
        cols = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(cols, line.split(",")))
            if row.get("pxname") == "par" and row.get("svname") not in ("BACKEND", None):
                out[row["svname"]] = row["status"].split(" ")[0]
        return out

    def wait_state(self, server, state, timeout=20):
        """Waits until `server` is `state`; returns the time.time() it was seen."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.states().get(server) == state:
                return time.time()
            time.sleep(0.01)
        raise AssertionError(f"{server} not {state} within {timeout}s: {self.states()}")

    def requests_log(self):
        """[(start_s, server, status, termination_state)] per request."""
        out = []
        for line in open(self.log_path):
            parts = line.split()
            if len(parts) == 7 and parts[0].isdigit():
                wait = sum(max(0, int(x)) for x in parts[5:7])
                out.append(((int(parts[0]) + wait) / 1000.0, parts[1], int(parts[2]), parts[3]))
        return out

    def in_flight(self, server):
        """Requests HAProxy has open on `server` now (`show stat` scur)."""
        lines = self.command("show stat").splitlines()
        cols = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(cols, line.split(",")))
            if row.get("pxname") == "par" and row.get("svname") == server:
                return int(row["scur"])
        raise KeyError(server)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Fleet:
    def __init__(self, d, store, n, extra=""):
        self.d = d
        self.store = store
        self.nodes = []
        try:
            for i in range(n):
                self.nodes.append(Node(d, f"n{i + 1}", store, extra))
            self.lb = HAProxy(d, self.nodes)
        except BaseException:
            self.close()
            raise
        self.url = self.lb.url

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def wait_generation(self, generation, timeout):
        """Waits until every node applied `generation` (the document's
        sha256), each node watched by a thread of its own; returns
        {node: seconds from the end of the index's PUT to the first answer
        that showed it} (a node may fetch it before the PUT's answer: 0).
        `self.seen` gets the same for the fetch alone (latest_generation is
        the store's ETag): converge = seen + the deploy."""
        applied, seen = {}, {}
        etag, since = self.store.etag, self.store.published

        def watch(n):
            deadline = time.time() + timeout
            while time.time() < deadline:
                try:
                    reg = n.info()["registry"]
                except requests.RequestException:
                    time.sleep(0.02)
                    continue
                now = max(time.time(), since)
                if n.name not in seen and reg.get("latest_generation") == etag:
                    seen[n.name] = now - since
                if reg.get("index_sha256") == generation:
                    seen.setdefault(n.name, now - since)
                    applied[n.name] = now - since
                    return
                time.sleep(0.02)

        threads = [threading.Thread(target=watch, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.seen = seen
        assert len(applied) == len(self.nodes), (generation, applied)
        return applied

    def close(self):
        lb = getattr(self, "lb", None)
        if lb:
            lb.stop()
        # a node killed on purpose and gone is not stopped again
        stop_all([n for n in self.nodes if not (n.killed and n.proc.poll() is not None)])


class Load:
    """Threads invoking faulty/slow (`ms` each) through `url` until stopped;
    every request is recorded as (start, end, status or exception name)."""

    def __init__(self, url, threads=6, ms=20, path="/agents/faulty/slow/invoke"):
        self.url = url + path
        self.ms = ms
        self.records = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        s = requests.Session()
        mine = []
        while not self._stop.is_set():
            t0 = time.time()
            try:
                r = s.post(self.url, json={"input": self.ms}, timeout=30)
                status = r.status_code
                if status == 200 and r.json().get("output") != self.ms:
                    status = "wrong_output"
            except requests.RequestException as e:
                status = type(e).__name__
                s = requests.Session()
            mine.append((t0, time.time(), status))
        with self._lock:
            self.records.extend(mine)

    def __enter__(self):
        self.started = time.time()
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
        self.elapsed = time.time() - self.started
        return False

    def by_status(self):
        return dict(collections.Counter(st for _, _, st in self.records))

    def failures(self):
        return [r for r in self.records if r[2] != 200]

    def rate(self):
        return len(self.records) / self.elapsed
