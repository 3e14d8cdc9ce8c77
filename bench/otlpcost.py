#!/usr/bin/env python3
"""Instructions per request of the OTLP exporter, independent of the machine's load.

Runs `par serve` under `valgrind --tool=callgrind` on the bench's production
row (access log, metering, API-key auth; the native echo agent in a worker
process, which callgrind does not count) with or without the OTLP exporter
plugin sending to a local sink, sends N sequential requests after a warm-up,
and prints the instructions the par process executed (all its threads) per
request, from callgrind_control's zeroing after the warm-up to a dump 3 s after
the last request (the exporter's flush timers: its work for those requests is
counted). The cost of the exporter is the difference between two modes at the
same N.

usage: bench/otlpcost.py BUILD_DIR MODE [N [SCALE]]
  MODE: off | otlp | otlp-nometrics (spans only) | otlp-nospans (metrics only)

Per-request figures include the exporter's per-POST and per-snapshot work,
which at callgrind's slow request rate (tens per second) is spread over far
fewer requests than under real load. SCALE (default 1) stretches the
exporter's timers by that factor (metrics_interval_ms 10 000 x SCALE,
flush_ms 1 000 x SCALE), so a snapshot and a batch cover as many requests
as they would at SCALE x the measured rate: the script prints that
equivalent rate. The host's own batching (plugin/export.c: a 100 ms gather)
is not stretched, so its wakeups stay over-weighted. With OTLPCOST_KEEP=FILE
the callgrind dump is kept there (callgrind_annotate FILE).

usage: bench/otlpcost.py BUILD_DIR cpu [N [ROUNDS]]
  Server CPU time per request instead (user + system of par and its workers,
  from /proc, load-dependent): off against the exporter at its defaults,
  N keep-alive requests each (wrk), ROUNDS alternating rounds (cpu_main).
"""
import glob
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from common import free_port


def start_sink():
    """A recording collector on 127.0.0.1 that answers 200 at once; (server, counts)."""
    got = {"requests": 0, "bytes": 0}

    class Sink(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            got["requests"] += 1
            got["bytes"] += len(body)
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    sink.daemon_threads = True
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    return sink, got


def prepare(build, tmp, mode, scale, key, sink):
    """The production row's configuration (bench.py: access log at info, metering,
    API-key auth) with the OTLP exporter for `mode`, and the echo package, in tmp."""
    lines = ["log: {level: info, access: true}", "trust: {require_signatures: false}",
             "metering: {enabled: true}", "auth:", "  mode: api_key", "  api_keys:",
             f"    - {{sha256: {hashlib.sha256(key.encode()).hexdigest()}, subject: bench, "
             "tenant: bench, permissions: [agents:invoke]}"]
    if mode != "off":
        extra = {"otlp-nospans": ", spans: false", "otlp-nometrics": ", metrics: false"}[mode] \
            if mode != "otlp" else ""
        if scale != 1.0:
            extra += (f", metrics_interval_ms: {min(int(10000 * scale), 3600000)}"
                      f", flush_ms: {min(int(1000 * scale), 600000)}")
        lines += ["plugins:", f"  - path: {build}/plugins/otlp.so",
                  f"    config: {{endpoint: http://127.0.0.1:{sink.server_address[1]}{extra}}}"]
    os.makedirs(f"{tmp}/packages")
    shutil.copy(f"{build}/packages/echo-1.0.0.apkg", f"{tmp}/packages")
    with open(f"{tmp}/par.yaml", "w") as f:
        f.write("\n".join(lines) + "\n")


def serve_args(build, tmp, port):
    return [f"{build}/par", "serve", "--listen", f"127.0.0.1:{port}", "--packages",
            f"{tmp}/packages", "--state-dir", f"{tmp}/var", "--config", f"{tmp}/par.yaml"]


def wait_ready(sess, url, auth, body):
    for _ in range(600):
        try:
            if sess.post(url, json=body, headers=auth, timeout=30).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit("par did not answer")


def callgrind_main():
    build, mode = os.path.abspath(sys.argv[1]), sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    scale = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    tmp = tempfile.mkdtemp(prefix="par-otlpcost-")
    os.chmod(tmp, 0o711)  # the sandboxed worker runs as another user
    key = "bench-" + os.urandom(8).hex()
    sink, got = start_sink()
    prepare(build, tmp, mode, scale, key, sink)
    port = free_port()
    out = f"{tmp}/callgrind.out"
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
                         + serve_args(build, tmp, port),
                         stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/par.log", "w"))
    url = f"http://127.0.0.1:{port}/agents/echo/invoke"
    auth = {"Authorization": "Bearer " + key}
    body = {"input": {"text": "hello"}}
    sess = requests.Session()
    try:
        wait_ready(sess, url, auth, body)
        for _ in range(50):
            sess.post(url, json=body, headers=auth)
        time.sleep(3)
        subprocess.run(["callgrind_control", "-z", str(p.pid)], capture_output=True)
        t0 = time.monotonic()
        for _ in range(n):
            r = sess.post(url, json=body, headers=auth)
            assert r.status_code == 200, r.text
        rate = n / (time.monotonic() - t0)
        time.sleep(3 + (scale - 1 if mode != "off" else 0))  # the last batch's flush
        subprocess.run(["callgrind_control", "-d", str(p.pid)], capture_output=True)
        time.sleep(1)
    finally:
        p.terminate()
        p.wait()
    total = 0
    for f in glob.glob(out + ".*"):  # the dump; `out` itself is written at exit
        for line in open(f):
            if line.startswith("summary:"):
                total += int(line.split()[1])
    print(f"{mode}: {n} requests, {total} instructions, {total / n:.0f} per request; "
          f"sink: {got['requests']} requests, {got['bytes']} bytes; {rate:.0f} requests/s "
          f"under callgrind, timers x{scale:g}: as at {rate * scale:.0f} requests/s")
    if os.environ.get("OTLPCOST_KEEP"):  # the dump, for callgrind_annotate
        for f in glob.glob(out + ".*"):
            shutil.copy(f, os.environ["OTLPCOST_KEEP"])
    shutil.rmtree(tmp, ignore_errors=True)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"input": {"text": "hello"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("OTLPCOST_KEY")
local done, bad, limit = 0, 0, tonumber(os.getenv("OTLPCOST_N"))
response = function(status, headers, body)
  done = done + 1
  if status ~= 200 then bad = bad + 1 end
  if done >= limit then  -- thread:stop() would still wait out -d: leave at once
    io.stdout:write("responses ", done, " non200 ", bad, "\\n")
    io.stdout:flush()
    os.exit(0)
  end
end
"""


def tree_cpu(pid):
    """User + system CPU seconds of pid and every process below it (the
    sandboxed workers), from /proc/*/stat; threads are included."""
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        procs[int(d)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += procs.get(p, (0, 0))[1]
        todo += [c for c, (pp, _) in procs.items() if pp == p]
    return total / tick


def cpu_main():
    """usage: bench/otlpcost.py BUILD_DIR cpu [N [ROUNDS]]

    Server CPU time (user + system, par and its workers, /proc) per request
    on the production row, off against the OTLP exporter (spans and metrics,
    default timers, to a local collector answering 200 at once), alternating
    ROUNDS times; N keep-alive requests per measurement (wrk -t1 -c16)."""
    build = os.path.abspath(sys.argv[1])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    key = "bench-" + os.urandom(8).hex()
    sink, got = start_sink()
    servers, tmps = {}, []
    try:
        for mode in ("off", "otlp"):
            tmp = tempfile.mkdtemp(prefix="par-otlpcost-")
            tmps.append(tmp)
            os.chmod(tmp, 0o711)  # the sandboxed worker runs as another user
            prepare(build, tmp, mode, 1.0, key, sink)
            with open(f"{tmp}/req.lua", "w") as f:
                f.write(WRK_SCRIPT)
            port = free_port()
            p = subprocess.Popen(serve_args(build, tmp, port), stdout=subprocess.DEVNULL,
                                 stderr=open(f"{tmp}/par.log", "w"))
            url = f"http://127.0.0.1:{port}/agents/echo/invoke"
            sess = requests.Session()
            wait_ready(sess, url, {"Authorization": "Bearer " + key}, {"input": {"text": "x"}})
            servers[mode] = (p, url, tmp)
        env = dict(os.environ, OTLPCOST_KEY=key, OTLPCOST_N=str(n))
        res = {"off": [], "otlp": []}
        for r in range(rounds + 1):  # round 0 warms up both
            for mode in ("off", "otlp") if r % 2 else ("otlp", "off"):
                p, url, tmp = servers[mode]
                load = os.getloadavg()[0]
                c0, t0 = tree_cpu(p.pid), time.monotonic()
                w = subprocess.run(["wrk", "-t1", "-c16", "-d120s", "-s", f"{tmp}/req.lua", url],
                                   env=env, capture_output=True, text=True)
                wall = time.monotonic() - t0
                time.sleep(1.5)  # the exporter's flush (flush_ms 1000) of the last spans
                cpu = tree_cpu(p.pid) - c0
                got_n = w.stdout.split("responses ")[1].split()
                done, bad = int(got_n[0]), int(got_n[2])
                if r == 0:
                    continue
                res[mode].append(cpu / done * 1e6)
                print(f"round {r} {mode}: {done} requests, {cpu:.2f} s CPU, "
                      f"{cpu / done * 1e6:.1f} us/request, {done / wall:.0f} req/s, "
                      f"load {load:.1f}{f' {bad} NOT 200' if bad else ''}", flush=True)
        off, on = statistics.median(res["off"]), statistics.median(res["otlp"])
        print(f"median: off {off:.1f} us/request, otlp {on:.1f} us/request, "
              f"ratio {on / off:.3f} ({(on / off - 1) * 100:+.1f} %); "
              f"collector: {got['requests']} requests, {got['bytes']} bytes; "
              f"load average now {os.getloadavg()[0]:.1f}")
    finally:
        for p, _, _ in servers.values():
            p.terminate()
            p.wait()
        for t in tmps:
            shutil.rmtree(t, ignore_errors=True)


def main():
    if len(sys.argv) > 2 and sys.argv[2] == "cpu":
        cpu_main()
    else:
        callgrind_main()


if __name__ == "__main__":
    main()
