#!/usr/bin/env python3
"""Export throughput of the usage metering (docs/observability.md): PAR's
Stripe exporter against a local recording server that deduplicates meter
events by identifier like Stripe and answers each after a fixed latency.

For each latency (50 ms, 200 ms):
- per record (`aggregate: off`, concurrency 8): events accepted per second
  while a backlog is waiting;
- aggregated (window 10 s, grace 5 s): a fixed request rate for BENCH_EXPORT_SECONDS
  (default 60); records covered per second, events sent, the backlog at the end
  (also in windows' worth of records) and whether the sums are exact.
Then storage: bytes per record (the layout before this change, with the
request_id index, and now; both after VACUUM), and the database's growth per
hour at the fixed rate without retention and with a 20 s retention.

Writes bench/results/export.md and export.json. Run alone: `bench/run.sh export`.
Environment: BENCH_BUILD (default build-release), BENCH_EXPORT_RATE (requests/s,
default 2000), BENCH_EXPORT_SECONDS (default 60).
"""
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from common import free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(ROOT, os.environ.get("BENCH_BUILD", "build-release"))
PAR = os.path.join(BUILD, "par")
RATE = int(os.environ.get("BENCH_EXPORT_RATE", "2000"))
SECONDS = int(os.environ.get("BENCH_EXPORT_SECONDS", "60"))
SAMPLE = int(os.environ.get("BENCH_EXPORT_SAMPLE", "20"))  # seconds of per-record export measured
LUA = os.path.join(ROOT, "bench", "export.lua")
TMP = tempfile.mkdtemp(prefix="par-bench-export-")
os.chmod(TMP, 0o711)
ADMIN = "k-admin-" + "a" * 24
TENANTS = {f"k-t{i}-" + "b" * 24: f"t{i}" for i in range(4)}
CONNS = 16


class Recorder:
    """Meter events endpoint: dedups by identifier, answers after `latency`."""

    def __init__(self, latency):
        self.lock = threading.Lock()
        self.events = {}
        self.posts = 0
        rec = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
                time.sleep(latency)
                with rec.lock:
                    rec.posts += 1
                    rec.events.setdefault(form["identifier"], form)
                b = b'{"object":"billing.meter_event"}'
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(b)))
                    self.end_headers()
                    self.wfile.write(b)
                except OSError:
                    pass  # PAR stopped while the answer was on its way

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 128
        self.httpd.handle_error = lambda *a: None  # PAR stopping mid-request: not news
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.events)

    def total(self):
        with self.lock:
            return sum(int(f["payload[value]"]) for f in self.events.values())

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def config(path, rec_url, aggregate, retention=None):
    keys = "".join(f"    - {{sha256: {hashlib.sha256(k.encode()).hexdigest()}, subject: s,"
                   f" tenant: {t}, permissions: [agents:invoke]}}\n" for k, t in TENANTS.items())
    agg = "{window: 10s, grace: 5s}" if aggregate else "off"
    with open(path, "w") as f:
        f.write(f"""\
trust: {{require_signatures: false}}
auth:
  mode: api_key
  open_paths: [/runtime/health, /runtime/ready, /metrics]
  api_keys:
    - {{sha256: {hashlib.sha256(ADMIN.encode()).hexdigest()}, subject: ops,
       permissions: [runtime:admin]}}
{keys}metering:
  enabled: true
{f"  retention: {retention}" if retention else ""}
  stripe:
    api_key: sk_bench
    endpoint: {rec_url}
    allow_http: true
    concurrency: 8
    aggregate: {agg}
""")


class Par:
    def __init__(self, name, rec_url, aggregate, retention=None):
        self.dir = os.path.join(TMP, name)
        os.makedirs(os.path.join(self.dir, "packages"))
        shutil.copy(os.path.join(BUILD, "packages", "echo-1.0.0.apkg"),
                    os.path.join(self.dir, "packages"))
        conf = os.path.join(self.dir, "par.yaml")
        config(conf, rec_url, aggregate, retention)
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "par.log"), "w")
        self.proc = subprocess.Popen(
            [PAR, "serve", "--listen", f"127.0.0.1:{self.port}", "--packages",
             os.path.join(self.dir, "packages"), "--state-dir", os.path.join(self.dir, "var"),
             "--config", conf, "--log-level", "warn"], stdout=self.log, stderr=self.log)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(self.base + "/runtime/ready", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("par did not start: see " + self.log.name)

    def usage(self):
        return requests.get(self.base + "/runtime/usage", headers={"X-API-Key": ADMIN},
                            timeout=30).json()

    def db(self):
        return os.path.join(self.dir, "var", "usage.db")

    def db_bytes(self):
        """The main file and the WAL (bounded: checkpoints, journal_size_limit)."""
        return tuple(os.path.getsize(p) if os.path.exists(p) else 0
                     for p in (self.db(), self.db() + "-wal"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def wrk(url, seconds, rate=None):
    env = dict(os.environ, BENCH_KEYS=",".join(TENANTS),
               BENCH_DELAY_MS=str(int(CONNS * 1000 / rate)) if rate else "0")
    r = subprocess.run(["wrk", "-t1", f"-c{CONNS}", f"-d{seconds}s", "--timeout", "10s", "-s",
                        LUA, url + "/agents/echo/invoke"], capture_output=True, text=True,
                       env=env, timeout=seconds + 60)
    for line in r.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError("wrk gave no figures:\n" + r.stdout + r.stderr)


def expected_total(par):
    db = sqlite3.connect(par.db())
    try:
        return db.execute("SELECT count(*) FROM usage WHERE parent_id = '' AND status = 'ok'"
                          ).fetchone()[0]
    finally:
        db.close()


def per_record(latency):
    rec = Recorder(latency)
    par = Par(f"per-record-{int(latency * 1000)}", rec.url, aggregate=False)
    try:
        load = wrk(par.base, 5)  # a backlog, as fast as PAR serves
        time.sleep(2)
        n0, t0 = rec.count(), time.time()
        time.sleep(SAMPLE)
        n1, t1 = rec.count(), time.time()
        return {"latency_ms": latency * 1000, "records": load["requests"],
                "events_per_s": (n1 - n0) / (t1 - t0),
                "backlog_after": par.usage()["export"]["pending"]}
    finally:
        par.stop()
        rec.close()


def aggregated(latency):
    rec = Recorder(latency)
    par = Par(f"aggregated-{int(latency * 1000)}", rec.url, aggregate=True)
    try:
        t0 = time.time()
        load = wrk(par.base, SECONDS, RATE)
        rate = load["requests"] / (load["duration_us"] / 1e6)
        u = par.usage()["export"]
        backlog, covered = u["pending"], u["rate_per_s"]
        deadline = time.time() + 60
        while time.time() < deadline and par.usage()["export"]["pending"]:
            time.sleep(0.5)
        drained = time.time() - t0
        exact = rec.total() == expected_total(par)
        return {"latency_ms": latency * 1000, "request_rate": rate,
                "records": load["requests"], "events": rec.count(), "posts": rec.posts,
                "covered_per_s_last_minute": covered, "backlog_at_end": backlog,
                "backlog_windows": backlog / max(1.0, rate * 10), "exact_sums": exact,
                "drained_after_s": drained}
    finally:
        par.stop()
        rec.close()


def bytes_per_record(par_dir):
    db = os.path.join(par_dir, "var", "usage.db")
    out = {}
    for label, extra in (("now", ""), ("before", "CREATE INDEX usage_request ON usage(request_id);")):
        copy = os.path.join(TMP, f"copy-{label}.db")
        c = sqlite3.connect(db)
        c.execute(f"VACUUM INTO '{copy}'")
        c.close()
        c = sqlite3.connect(copy)
        n = c.execute("SELECT count(*) FROM usage").fetchone()[0]
        if extra:
            c.executescript(extra)
            c.execute("VACUUM")
        c.close()
        out[label] = os.path.getsize(copy) / max(1, n)
        out["records"] = n
    return out


def growth(retention):
    rec = Recorder(0.05)
    par = Par(f"growth-{retention or 'none'}", rec.url, aggregate=True, retention=retention)
    try:
        sizes = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                sizes.append((time.time(), par.db_bytes()))
                time.sleep(1)

        th = threading.Thread(target=sample)
        th.start()
        load = wrk(par.base, SECONDS, RATE)
        stop.set()
        th.join()
        half = [s for s in sizes if s[0] >= sizes[0][0] + SECONDS / 2]
        per_h = (half[-1][1][0] - half[0][1][0]) / max(1e-6, half[-1][0] - half[0][0]) * 3600
        return {"retention": retention or "30 days (default)", "records": load["requests"],
                "final_bytes": sizes[-1][1][0], "final_wal_bytes": sizes[-1][1][1],
                "max_wal_bytes": max(s[1][1] for s in sizes),
                "growth_per_hour_bytes": per_h, "dir": par.dir}
    finally:
        par.stop()
        rec.close()


def main():
    if not os.path.exists(PAR):
        sys.exit(f"{PAR} missing: build first (bench/run.sh export)")
    res = {"rate_target": RATE, "seconds": SECONDS,
           "load": open("/proc/loadavg").read().split()[:3], "per_record": [], "aggregated": []}
    for lat in (0.05, 0.2):
        res["per_record"].append(per_record(lat))
        print(json.dumps(res["per_record"][-1]), flush=True)
        res["aggregated"].append(aggregated(lat))
        print(json.dumps(res["aggregated"][-1]), flush=True)
    g = growth(None)
    res["bytes_per_record"] = bytes_per_record(g.pop("dir"))
    res["growth"] = [g, growth("20s")]
    res["growth"][1].pop("dir")
    print(json.dumps(res["bytes_per_record"]), json.dumps(res["growth"]), flush=True)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "export.json"), "w") as f:
        json.dump(res, f, indent=2)
    with open(os.path.join(ROOT, "bench", "results", "export.md"), "w") as f:
        f.write(report(res))
    print(report(res))
    shutil.rmtree(TMP, ignore_errors=True)


def report(r):
    lines = [f"# Export throughput (load average at start {' '.join(r['load'])})", "",
             f"Fixed request rate target {r['rate_target']}/s for {r['seconds']} s; "
             "recording server deduplicating by identifier.", "",
             "| latency | per-record events/s | aggregated: request rate | records covered/s |"
             " events | backlog at end | in windows (10 s) | exact sums |", "|---|---|---|---|---|---|---|---|"]
    for p, a in zip(r["per_record"], r["aggregated"]):
        lines.append(f"| {p['latency_ms']:.0f} ms | {p['events_per_s']:.1f} | "
                     f"{a['request_rate']:.0f}/s | {a['covered_per_s_last_minute']:.0f} | "
                     f"{a['events']} | {a['backlog_at_end']} | {a['backlog_windows']:.2f} | "
                     f"{a['exact_sums']} |")
    b = r["bytes_per_record"]
    lines += ["", f"Bytes per record ({b['records']} records, after VACUUM): before "
              f"{b['before']:.0f}, now {b['now']:.0f}.", ""]
    for g in r["growth"]:
        lines.append(f"- retention {g['retention']}: {g['records']} records, file "
                     f"{g['final_bytes'] / 1e6:.1f} MB at the end (WAL at most "
                     f"{g['max_wal_bytes'] / 1e6:.1f} MB), main file growth over the second half "
                     f"{g['growth_per_hour_bytes'] / 1e6:.0f} MB/hour")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
