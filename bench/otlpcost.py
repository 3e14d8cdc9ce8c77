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
"""
import glob
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


def main():
    build, mode = os.path.abspath(sys.argv[1]), sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    scale = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    tmp = tempfile.mkdtemp(prefix="par-otlpcost-")
    os.chmod(tmp, 0o711)  # the sandboxed worker runs as another user
    key = "bench-" + os.urandom(8).hex()
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
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = f"{tmp}/callgrind.out"
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                          f"{build}/par", "serve", "--listen", f"127.0.0.1:{port}",
                          "--packages", f"{tmp}/packages", "--state-dir", f"{tmp}/var",
                          "--config", f"{tmp}/par.yaml"],
                         stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/par.log", "w"))
    url = f"http://127.0.0.1:{port}/agents/echo/invoke"
    auth = {"Authorization": "Bearer " + key}
    body = {"input": {"text": "hello"}}
    sess = requests.Session()
    try:
        for _ in range(600):
            try:
                if sess.post(url, json=body, headers=auth, timeout=30).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
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


if __name__ == "__main__":
    main()
