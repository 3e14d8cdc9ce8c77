#!/usr/bin/env python3
"""PAR's benchmark: PAR beside the reference Python runtime and the nginx ceiling,
in one run, on loopback. Writes bench/results/latest.md and latest.json.

Every load is bounded (wrk -d) and stops by itself. Figures are medians of
interleaved rounds (A B C A B C ...), with min and max.

Environment: BENCH_SMOKE=1 (a short run: 2 rounds of 3 s unless set below),
BENCH_OUT (the results' base name, default latest, or partial with
BENCH_SYSTEMS), BENCH_ROUNDS (default 3), BENCH_SECONDS (default 5),
BENCH_BUILD (default build-release), BENCH_SYSTEMS (a comma list of throughput
rows, e.g. "par-isolated,par-isolated-production,nginx-ceiling": only those rows
are measured and the par_call, cold-start and scale sections are skipped — for
short runs while working on one row).
"""
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

import requests

from common import BUILD, PAR, PEER, ROOT, children, cpu_s, descendants, free_port, rss_kb
from common import machine as machine_info
from common import spawn as spawn_logged
from common import save_results, stop

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2" if SMOKE else "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "3" if SMOKE else "5"))
# BENCH_BASELINE: the build directory of another revision (bench/run.sh builds
# it from BENCH_BASELINE_REV); its isolated and in-process rows run in the
# same interleaved rounds, so a change is judged against noise of one run.
BASELINE = os.environ.get("BENCH_BASELINE", "")
CONCURRENCY = [1, 64, 512]
SYSTEMS = [x.strip() for x in os.environ.get("BENCH_SYSTEMS", "").split(",") if x.strip()]
LUA = os.path.join(ROOT, "bench", "post.lua")
OTLP_PLUGIN = os.path.join(BUILD, "plugins", "otlp.so")
# The API key of the auth rows (bench/post.lua sends it when BENCH_API_KEY is set).
API_KEY = "bench-" + os.urandom(16).hex()
BODY = {"input": {"text": "hello"}}
TMP = tempfile.mkdtemp(prefix="par-bench-")
os.chmod(TMP, 0o711)  # sandboxed workers run as another user: they must reach their package
PROCS = []


def wait_ok(url, timeout=30, body=BODY, headers=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.post(url, json=body, headers=headers, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.005)
    raise RuntimeError("no answer from " + url)


def spawn(args, env=None, cwd=None, log="proc.log"):
    p = spawn_logged(args, os.path.join(TMP, log), env=env, cwd=cwd)
    PROCS.append(p)
    return p


# ---- packages -------------------------------------------------------------------------

def pack(src, out):
    r = subprocess.run([PAR, "pack", src, "-o", out], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr)
    return out


def native_echo_copy(name, extra_bytes=0):
    """The echo package under another name, optionally with an incompressible payload."""
    d = os.path.join(TMP, "src-" + name)
    shutil.copytree(os.path.join(BUILD, "stage", "echo"), d)
    with open(os.path.join(d, "agent.yaml")) as f:
        y = f.read().replace("name: echo", "name: " + name, 1)
    with open(os.path.join(d, "agent.yaml"), "w") as f:
        f.write(y)
    if extra_bytes:
        with open(os.path.join(d, "payload.bin"), "wb") as f:
            f.write(os.urandom(extra_bytes))
    return pack(d, os.path.join(TMP, f"{name}-1.0.0.apkg"))


def peer_package(dirpath):
    os.makedirs(dirpath, exist_ok=True)
    src = os.path.join(PEER, "echo-agent")
    with zipfile.ZipFile(os.path.join(dirpath, "echo-1.0.0.apkg"), "w") as z:
        for base, _, files in os.walk(src):
            for f in files:
                full = os.path.join(base, f)
                z.write(full, os.path.relpath(full, src))


def python_echo_package():
    """The reference runtime's Python echo agent, byte for byte, as PAR's package."""
    d = os.path.join(TMP, "python-echo")
    peer_package(d)
    return os.path.join(d, "echo-1.0.0.apkg")


NODE_PLUGIN = os.path.join(BUILD, "plugins", "node.so")


def node_echo_package():
    """The echo agent in JavaScript (pixell-kit's layout, runtime node18), for
    the Node loader plugin (plugins/node)."""
    d = os.path.join(TMP, "src-node-echo")
    os.makedirs(os.path.join(d, "src"), exist_ok=True)
    with open(os.path.join(d, "agent.yaml"), "w") as f:
        f.write('version: "1.0"\nname: echo\ndisplay_name: echo\ndescription: echo in Node.js\n'
                "author: PAR bench\nlicense: MIT\nruntime: node18\nentrypoint: src/main:handler\n"
                "metadata:\n  version: 1.0.0\n")
    with open(os.path.join(d, "src", "main.js"), "w") as f:
        f.write("'use strict';\nexports.handler = (input) => input;\n")
    out = os.path.join(TMP, "node-echo-1.0.0.apkg")
    # checked by the Node loader plugin as it is packed
    r = subprocess.run([PAR, "pack", d, "-o", out, "--plugin", NODE_PLUGIN],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr)
    return out


def start_par_node():
    return start_par("par-node", pkg=node_echo_package(),
                     config=f"plugins: [{{path: {NODE_PLUGIN}}}]\nauth: {{mode: off}}\n"
                     "trust: {require_signatures: false}\nlog: {level: warn, access: false}\n")


def signing_key():
    """A throwaway minisign key pair (unencrypted) made by `par keygen`."""
    d = os.path.join(TMP, "key")
    os.makedirs(d, exist_ok=True)
    r = subprocess.run([PAR, "keygen", "--unencrypted", "-p", os.path.join(d, "k.pub"),
                        "-s", os.path.join(d, "k.key")], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr)
    conf = os.path.join(d, "par.yaml")
    with open(conf, "w") as f:
        f.write("auth: {mode: off}\nlog: {level: warn, access: false}\n"
                f"trust: {{require_signatures: true, keys: [{{file: {d}/k.pub}}]}}\n")
    return os.path.join(d, "k.key"), conf


def sign(pkg, key):
    r = subprocess.run([PAR, "sign", pkg, "-s", key], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr)
    return pkg


# ---- systems --------------------------------------------------------------------------

def start_par(name, extra=(), pkg=None, binary=None, config=None, log_level="warn",
              api_key=None):
    port = free_port()
    d = os.path.join(TMP, name)
    os.makedirs(os.path.join(d, "packages"))
    shutil.copy(pkg or os.path.join(BUILD, "packages", "echo-1.0.0.apkg"),
                os.path.join(d, "packages"))
    conf = []
    if config is not None:
        conf = ["--config", os.path.join(d, "par.yaml")]
        with open(conf[1], "w") as f:
            f.write(config)
    p = spawn([binary or PAR, "serve", "--listen", f"127.0.0.1:{port}", "--packages",
               os.path.join(d, "packages"), "--state-dir", os.path.join(d, "var"),
               "--log-level", log_level, *conf, *extra], log=name + ".log")
    url = f"http://127.0.0.1:{port}/agents/echo/invoke"
    headers = {"Authorization": "Bearer " + api_key} if api_key else None
    wait_ok(url, headers=headers)
    return {"name": name, "url": url, "proc": p, "api_key": api_key,
            "log": os.path.join(TMP, name + ".log")}


def production_config(access=False, metering=False, auth=False, otlp=None):
    """A configuration file with the given features of a production PAR turned on.

    Access lines are written at `log.level: info` (the default), as one JSON line
    per request on standard error, which spawn() sends to the row's log file.
    Metering writes <state_dir>/usage.db with the defaults (sync normal). Auth
    checks one static API key. Signatures are not required (the bench's echo
    package is unsigned; a file without `trust.require_signatures` requires them).
    """
    lines = [f"log: {{level: {'info' if access else 'warn'}, access: {str(access).lower()}}}",
             "trust: {require_signatures: false}",
             f"metering: {{enabled: {str(metering).lower()}}}"]
    if auth:
        digest = hashlib.sha256(API_KEY.encode()).hexdigest()
        lines += ["auth:", "  mode: api_key", "  api_keys:",
                  f"    - {{sha256: {digest}, subject: bench, tenant: bench, "
                  "permissions: [agents:invoke]}"]
    else:
        lines.append("auth: {mode: off}")
    if otlp:
        # the OTLP exporter plugin, sending to the local sink (OtlpSink) with
        # its default batching, queue and metrics interval
        lines += ["plugins:", f"  - path: {OTLP_PLUGIN}", f"    config: {{endpoint: {otlp}}}"]
    return "\n".join(lines) + "\n"


def start_par_features(name, access=False, metering=False, auth=False, otlp=None):
    return start_par(name, config=production_config(access, metering, auth, otlp),
                     log_level="info" if access else "warn",
                     api_key=API_KEY if auth else None)


class OtlpSink:
    """A local OTLP/HTTP collector for the production-otlp row: reads each POST
    (/v1/traces, /v1/metrics) and answers 200 {}, counting requests and bytes."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading
        sink = self
        self.requests = self.bytes = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                self.rfile.read(n)
                sink.requests += 1
                sink.bytes += n
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def start_par_otlp(name):
    """The production row with the OTLP exporter on, sending to a local sink."""
    if not os.path.exists(OTLP_PLUGIN):
        sys.exit(f"{OTLP_PLUGIN} is missing: build the plugins (cmake --build {BUILD})")
    sink = OtlpSink()
    s = start_par_features(name, True, True, True, otlp=sink.url)
    s["otlp_sink"] = sink
    return s


def start_peer(workers):
    port = free_port()
    pk = os.path.join(TMP, "peer-packages")
    peer_package(pk)
    env = dict(os.environ, PEER_PACKAGES=pk)
    args = ["/usr/bin/python3", "-m", "uvicorn", "app:app", "--app-dir", PEER, "--host",
            "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"]
    if workers > 1:
        args += ["--workers", str(workers)]
    p = spawn(args, env=env, log=f"peer{workers}.log")
    url = f"http://127.0.0.1:{port}/agents/echo/invoke"
    wait_ok(url, timeout=60)
    return {"name": f"reference-python-{workers}w", "url": url, "proc": p}


def start_nginx():
    port = free_port()
    d = os.path.join(TMP, "nginx")
    os.makedirs(d)
    body = json.dumps({"agent_id": "echo", "output": {"text": "hello"}, "duration_ms": 0.01,
                       "trace_id": "0" * 32, "metadata": {}})
    conf = f"""
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    p = spawn(["/usr/sbin/nginx", "-c", os.path.join(d, "nginx.conf"), "-p", d],
              log="nginx.log")
    url = f"http://127.0.0.1:{port}/agents/echo/invoke"
    wait_ok(url)
    return {"name": "nginx-ceiling", "url": url, "proc": p}


# ---- measurements ---------------------------------------------------------------------

def wrk(url, conns, api_key=None):
    env = dict(os.environ, BENCH_API_KEY=api_key or "")
    r = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{SECONDS}s", "--timeout", "10s",
                        "-s", LUA, url], capture_output=True, text=True, timeout=SECONDS + 60,
                       env=env)
    for line in r.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError("wrk gave no figures:\n" + r.stdout + r.stderr)


def cpu_seconds(pid):
    """User + system CPU time of a process and of its living descendants."""
    return cpu_s(pid) + sum(cpu_s(k) for k in descendants(pid))


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def throughput(systems):
    raw = {s["name"]: {c: [] for c in CONCURRENCY} for s in systems}
    for rnd in range(ROUNDS):
        for c in CONCURRENCY:
            for s in systems:
                cpu0 = cpu_seconds(s["proc"].pid)
                res = wrk(s["url"], c, s.get("api_key"))
                # the server's CPU per request (all its processes): a cost that
                # holds on a busy machine, where req/s follow the neighbours
                res["cpu_us"] = (cpu_seconds(s["proc"].pid) - cpu0) * 1e6 / max(1, res["requests"])
                raw[s["name"]][c].append(res)
                print(f"round {rnd + 1} c={c:<3} {s['name']:<26} {res['rps']:>9.0f} req/s "
                      f"p99 {res['p99_ms']:.2f} ms cpu {res['cpu_us']:.1f} µs/req "
                      f"errors {res['errors'] + res['non2xx']}",
                      flush=True)
    out = {}
    for name, by_c in raw.items():
        out[name] = {}
        for c, runs in by_c.items():
            out[name][str(c)] = {k: summary([r[k] for r in runs])
                                 for k in ("rps", "p50_ms", "p99_ms", "p999_ms", "cpu_us")}
            out[name][str(c)]["errors"] = sum(r["errors"] + r["non2xx"] for r in runs)
    return out


def cold_start(label, pkg, runs=5, config=None):
    """Process start -> first successful invoke, with a cold cache each time."""
    name = os.path.basename(pkg).rsplit("-", 1)[0]
    totals, phases = [], []
    for i in range(runs):
        d = os.path.join(TMP, f"cold-{label}-{i}")
        os.makedirs(os.path.join(d, "packages"))
        shutil.copy(pkg, os.path.join(d, "packages"))
        if os.path.exists(pkg + ".minisig"):
            shutil.copy(pkg + ".minisig", os.path.join(d, "packages"))
        port = free_port()
        conf = ["--config", config] if config else []
        t0 = time.perf_counter()
        p = spawn([PAR, "serve", "--listen", f"127.0.0.1:{port}", "--packages",
                   os.path.join(d, "packages"), "--state-dir", os.path.join(d, "var"),
                   "--log-level", "warn", *conf], log="cold.log")
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if requests.post(f"{url}/agents/{name}/invoke", json=BODY,
                                 timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.perf_counter() - t0 > 30:
                raise RuntimeError("cold start did not finish")
            time.sleep(0.0005)
        totals.append((time.perf_counter() - t0) * 1000)
        phases.append(requests.get(f"{url}/runtime/packages/{name}").json()["timings_ms"])
        stop(p)
    return {"process_start_to_first_invoke_ms": summary(totals),
            "phases_ms": {k: summary([ph[k] for ph in phases]) for k in phases[0]},
            "package_bytes": os.path.getsize(pkg),
            "signed": os.path.exists(pkg + ".minisig")}


def deploy_to_invoke(label, pkg, runs=5, config=None):
    """A running PAR: POST /runtime/packages -> first successful invoke (cold cache)."""
    name = os.path.basename(pkg).rsplit("-", 1)[0]
    d = os.path.join(TMP, f"deploy-{label}")
    os.makedirs(os.path.join(d, "packages"))
    port = free_port()
    conf = ["--config", config] if config else []
    p = spawn([PAR, "serve", "--listen", f"127.0.0.1:{port}", "--packages",
               os.path.join(d, "packages"), "--state-dir", os.path.join(d, "var"),
               "--log-level", "warn", *conf], log="deploy.log")
    url = f"http://127.0.0.1:{port}"
    wait_ready(url)
    totals = []
    for i in range(runs):
        shutil.rmtree(os.path.join(d, "var", "cache"), ignore_errors=True)
        os.makedirs(os.path.join(d, "var", "cache", "sha256"), exist_ok=True)
        t0 = time.perf_counter()
        r = requests.post(url + "/runtime/packages", json={"path": pkg}, timeout=60)
        if r.status_code != 201:
            raise RuntimeError(r.text)
        while requests.post(f"{url}/agents/{name}/invoke", json=BODY,
                            timeout=5).status_code != 200:
            time.sleep(0.0005)
        totals.append((time.perf_counter() - t0) * 1000)
        requests.delete(f"{url}/runtime/packages/{name}", timeout=30)
        time.sleep(0.2)
    stop(p)
    return summary(totals)


def wait_ready(url):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if requests.get(url + "/runtime/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.002)
    raise RuntimeError("not ready: " + url)


def scale(counts=(1, 10, 100)):
    out = {}
    pkgs = [native_echo_copy(f"echo{i}") for i in range(max(counts))]
    for n in counts:
        d = os.path.join(TMP, f"scale-{n}")
        os.makedirs(os.path.join(d, "packages"))
        for p in pkgs[:n]:
            shutil.copy(p, os.path.join(d, "packages"))
        port = free_port()
        t0 = time.perf_counter()
        p = spawn([PAR, "serve", "--listen", f"127.0.0.1:{port}", "--packages",
                   os.path.join(d, "packages"), "--state-dir", os.path.join(d, "var"),
                   "--log-level", "warn"], log="scale.log")
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if requests.get(url + "/runtime/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.001)
        ready_ms = (time.perf_counter() - t0) * 1000
        time.sleep(1.0)  # idle
        kids = children(p.pid)
        worker_rss = [rss_kb(k) for k in kids]
        loads = [pk["timings_ms"]["load"] + pk["timings_ms"]["extract"] + pk["timings_ms"]["fetch"]
                 for pk in requests.get(url + "/runtime/packages").json()["packages"]]
        out[str(n)] = {"start_to_ready_ms": round(ready_ms, 1),
                       "runtime_rss_kb": rss_kb(p.pid),
                       "workers": len(kids),
                       "worker_rss_kb_avg": round(statistics.mean(worker_rss), 1)
                       if worker_rss else 0,
                       "deploy_ms_per_package_median": round(statistics.median(loads), 3)}
        stop(p)
    return out


def callbench():
    out = {}
    for mode, n in (("in-process", 200000), ("worker", 20000)):
        r = subprocess.run([os.path.join(BUILD, "par-callbench"),
                            os.path.join(BUILD, "packages", "echo-1.0.0.apkg"),
                            os.path.join(TMP, "callbench-" + mode), mode, str(n)],
                           capture_output=True, text=True, timeout=300)
        out[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def access_lines(path):
    """Access lines ("msg":"request") a PAR row wrote to its log file."""
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if b'"msg":"request"' in line)
    except OSError:
        return 0


FEATURES = ("accesslog", "metering", "auth")


def ratios(t):
    rps = {n: t[n]["64"]["rps"]["median"] for n in t}
    out = {}

    def put(key, a, b):
        if a in rps and b in rps and rps[b]:
            out[key] = rps[a] / rps[b]

    refs = [rps[n] for n in ("reference-python-1w", "reference-python-2w") if n in rps]
    if refs:
        rps["reference-best"] = max(refs)
    put("par-isolated / nginx", "par-isolated", "nginx-ceiling")
    put("par-isolated-production / nginx", "par-isolated-production", "nginx-ceiling")
    put("par-in-process / nginx", "par-in-process", "nginx-ceiling")
    put("par-isolated / reference (best of 1 or 2 workers)", "par-isolated", "reference-best")
    put("par-in-process / reference (best of 1 or 2 workers)", "par-in-process",
        "reference-best")
    put("par-python / reference (best of 1 or 2 workers)", "par-python", "reference-best")
    put("par-isolated-production-otlp / par-isolated-production",
        "par-isolated-production-otlp", "par-isolated-production")
    put("par-node / par-python", "par-node", "par-python")
    cpu = {n: t[n]["64"]["cpu_us"]["median"] for n in t}
    for f in FEATURES + ("production",):
        if f"par-isolated-{f}" in rps and "par-isolated" in rps:
            out[f"cost of {f} (1 − par-isolated-{f} / par-isolated)"] = \
                1 - rps[f"par-isolated-{f}"] / rps["par-isolated"]
            out[f"server CPU per request of {f} / par-isolated"] = \
                cpu[f"par-isolated-{f}"] / cpu["par-isolated"]
    return out


# ---- report ---------------------------------------------------------------------------

def machine():
    return machine_info(rounds=ROUNDS, seconds_per_load=SECONDS, smoke=SMOKE)


def fmt(s, key, scale=1.0, digits=0):
    v = s[key]
    return (f"{v['median'] * scale:.{digits}f} ({v['min'] * scale:.{digits}f}–"
            f"{v['max'] * scale:.{digits}f})")


def report(res):
    lines = [f"# PAR benchmark — {res['machine']['date']}", "",
             f"Revision `{res['machine']['revision']}`, {res['machine']['cpu']}, "
             f"{res['machine']['cores']} cores, kernel {res['machine']['kernel']}. "
             f"wrk -t1, {SECONDS} s per load, median of {ROUNDS} interleaved rounds "
             "(min–max). Echo agent, input `{\"text\":\"hello\"}`. Load average at start "
             + " ".join(f"{x:.2f}" for x in res["machine"].get("load_average", [])) + "."
             + (" **Smoke run** (BENCH_SMOKE=1): a shared machine, short loads; ratios, "
                "not absolute figures." if res["machine"].get("smoke") else ""), ""]
    for c in CONCURRENCY:
        lines += [f"## Concurrency {c}", "",
                  "| system | req/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/req | errors |",
                  "|---|---|---|---|---|---|---|"]
        for name, by_c in res["throughput"].items():
            s = by_c[str(c)]
            lines.append(f"| {name} | {fmt(s, 'rps')} | {fmt(s, 'p50_ms', digits=2)} | "
                         f"{fmt(s, 'p99_ms', digits=2)} | {fmt(s, 'p999_ms', digits=2)} | "
                         f"{fmt(s, 'cpu_us', digits=1)} | {s['errors']} |")
        lines.append("")
    lines += ["## Ratios at concurrency 64 (median req/s)", ""]
    for k, v in res["ratios_c64"].items():
        lines.append(f"- {k}: {v:.2f}")
    if res.get("access_lines_written"):
        lines += ["", "Access lines written to each PAR row's log file: " + ", ".join(
            f"{n} {v}" for n, v in res["access_lines_written"].items()) + "."]
    if "par_call" in res:
        lines += ["", "## In-process `par_call` (no HTTP)", "",
                  "| mode | calls | p50 µs | p99 µs | p99.9 µs | calls/s |", "|---|---|---|---|---|---|"]
        for mode, r in res["par_call"].items():
            lines.append(f"| {mode} | {r['iterations']} | {r['p50_us']} | {r['p99_us']} | "
                         f"{r['p999_us']} | {r['calls_per_s']:.0f} |")
        lines += ["", "## Cold start (process start → first successful invoke, cold cache)", "",
                  "| package | bytes | signed | total ms | fetch ms | verify ms | extract ms | "
                  "load ms |", "|---|---|---|---|---|---|---|---|"]
        for name, r in res["cold_start"].items():
            ph = r["phases_ms"]
            lines.append(f"| {name} | {r['package_bytes']} | {'yes' if r['signed'] else 'no'} | "
                         f"{fmt(r, 'process_start_to_first_invoke_ms', digits=1)} | "
                         f"{fmt(ph, 'fetch', digits=2)} | {fmt(ph, 'verify', digits=2)} | "
                         f"{fmt(ph, 'extract', digits=2)} | {fmt(ph, 'load', digits=2)} |")
        lines += ["", "Deploy into a running PAR (`POST /runtime/packages`, cold cache) → first "
                  "successful invoke:", ""]
        for name, r in res["deploy_to_invoke"].items():
            lines.append(f"- {name}: {fmt({'v': r}, 'v', digits=1)} ms")
        lines += ["", "## Memory and deploy cost as packages grow", "",
                  "| packages | start → ready ms | runtime RSS KB | workers | RSS per worker KB | "
                  "deploy ms per package |", "|---|---|---|---|---|---|"]
        for n, r in res["scale"].items():
            lines.append(f"| {n} | {r['start_to_ready_ms']} | {r['runtime_rss_kb']} | "
                         f"{r['workers']} | {r['worker_rss_kb_avg']} | "
                         f"{r['deploy_ms_per_package_median']} |")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in res["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def targets(res):
    t = res["throughput"]
    rps = {n: t[n]["64"]["rps"]["median"] for n in t}
    p99 = {n: t[n]["64"]["p99_ms"]["median"] for n in t}
    refs = [rps[n] for n in ("reference-python-1w", "reference-python-2w") if n in rps]
    best_ref = max(refs) if refs else 0
    nginx = rps.get("nginx-ceiling", 0)
    have = set(rps)
    rows = []

    def row(needs, target, measured, met):
        if set(needs) <= have:
            rows.append((target, measured(), met()))

    row(["par-isolated", "nginx-ceiling"], "isolated c=64 ≥ 0.5× nginx",
        lambda: f"{rps['par-isolated'] / nginx:.2f}×",
        lambda: rps["par-isolated"] >= 0.5 * nginx)
    row(["par-isolated-production", "nginx-ceiling"],
        "production (access log + metering + API key) c=64 ≥ 0.45× nginx",
        lambda: f"{rps['par-isolated-production'] / nginx:.2f}×",
        lambda: rps["par-isolated-production"] >= 0.45 * nginx)
    row(["par-isolated-production"], "production p99 at c=64 ≤ 5 ms",
        lambda: f"{p99['par-isolated-production']:.2f} ms",
        lambda: p99["par-isolated-production"] <= 5.0)
    cpu = {n: t[n]["64"]["cpu_us"]["median"] for n in t}
    prod, otlp = "par-isolated-production", "par-isolated-production-otlp"
    row([prod, otlp], "OTLP exporter (spans + metrics to a local collector) costs ≤ 5 % of "
        "the production row (c=64 req/s)",
        lambda: f"{(1 - rps[otlp] / rps[prod]) * 100:.1f} % (server CPU per request "
                f"{(cpu[otlp] / cpu[prod] - 1) * 100:+.1f} %)",
        lambda: rps[otlp] >= 0.95 * rps[prod])
    for f in FEATURES:
        row([f"par-isolated-{f}", "par-isolated"], f"{f} alone costs ≤ 10 % (c=64 req/s)",
            lambda f=f: f"{(1 - rps[f'par-isolated-{f}'] / rps['par-isolated']) * 100:.1f} % "
                        f"(server CPU per request "
                        f"{(cpu[f'par-isolated-{f}'] / cpu['par-isolated'] - 1) * 100:+.1f} %)",
            lambda f=f: rps[f"par-isolated-{f}"] >= 0.9 * rps["par-isolated"])
    if best_ref:
        row(["par-isolated"], "isolated c=64 ≥ 3× reference (best of 1, 2 workers)",
            lambda: f"{rps['par-isolated'] / best_ref:.1f}×",
            lambda: rps["par-isolated"] >= 3 * best_ref)
    row(["par-in-process", "nginx-ceiling"], "in-process c=64 ≥ 0.7× nginx",
        lambda: f"{rps['par-in-process'] / nginx:.2f}×",
        lambda: rps["par-in-process"] >= 0.7 * nginx)
    row(["par-isolated"], "isolated p99 at c=64 ≤ 2 ms", lambda: f"{p99['par-isolated']:.2f} ms",
        lambda: p99["par-isolated"] <= 2.0)
    if "par_call" in res:
        rows.append(("in-process par_call p99 ≤ 20 µs",
                     f"{res['par_call']['in-process']['p99_us']} µs",
                     res["par_call"]["in-process"]["p99_us"] <= 20))
    if best_ref:
        row(["par-python"], "Python echo through PAR ≥ reference serving the same agent (c=64)",
            lambda: f"{rps['par-python'] / best_ref:.2f}×", lambda: rps["par-python"] >= best_ref)
    if "cold_start" in res:
        cs = res["cold_start"]["30MB-signed"]["process_start_to_first_invoke_ms"]["median"]
        ten = res["scale"]["10"]
        rows += [
            ("30 MB signed package, process start → first invoke ≤ 60 ms", f"{cs:.1f} ms",
             cs <= 60),
            ("process start → ready with 10 packages ≤ 100 ms", f"{ten['start_to_ready_ms']} ms",
             ten["start_to_ready_ms"] <= 100),
            ("idle runtime RSS ≤ 15 MB", f"{res['scale']['1']['runtime_rss_kb'] / 1024:.1f} MB",
             res["scale"]["1"]["runtime_rss_kb"] <= 15 * 1024),
            ("idle native worker RSS ≤ 4 MB",
             f"{res['scale']['1']['worker_rss_kb_avg'] / 1024:.1f} MB",
             res["scale"]["1"]["worker_rss_kb_avg"] <= 4 * 1024),
        ]
    return [{"target": a, "measured": b, "met": bool(c)} for a, b, c in rows]


def main():
    if not os.path.exists(PAR):
        sys.exit(f"{PAR} is missing: run `make bench`")
    if not os.path.isdir(PEER):
        sys.exit(f"{PEER} is missing: the reference runtime is expected in ../shared/peers "
                 "beside this checkout (see ../shared/peers/README.md)")
    res = {"machine": machine()}
    try:
        starters = [
            ("par-isolated", lambda: start_par("par-isolated")),
            ("par-isolated-production",
             lambda: start_par_features("par-isolated-production", True, True, True)),
            ("par-isolated-production-otlp",
             lambda: start_par_otlp("par-isolated-production-otlp")),
            ("par-isolated-accesslog",
             lambda: start_par_features("par-isolated-accesslog", access=True)),
            ("par-isolated-metering",
             lambda: start_par_features("par-isolated-metering", metering=True)),
            ("par-isolated-auth", lambda: start_par_features("par-isolated-auth", auth=True)),
            ("par-in-process", lambda: start_par("par-in-process", ["--trusted", "echo"])),
            ("par-python", lambda: start_par("par-python", pkg=python_echo_package())),
            ("par-node", start_par_node),
            ("reference-python-1w", lambda: start_peer(1)),
            ("reference-python-2w", lambda: start_peer(2)),
            ("nginx-ceiling", start_nginx),
        ]
        if BASELINE:
            base = os.path.join(os.path.abspath(BASELINE), "par")
            rev = subprocess.run(["git", "-C", BASELINE, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip() or "baseline"
            starters[5:5] = [
                (f"par-isolated@{rev}", lambda: start_par(f"par-isolated@{rev}", binary=base)),
                (f"par-in-process@{rev}", lambda: start_par(f"par-in-process@{rev}",
                                                            ["--trusted", "echo"],
                                                            binary=base))]
        unknown = set(SYSTEMS) - {n for n, _ in starters}
        if unknown:
            sys.exit(f"BENCH_SYSTEMS: unknown row(s) {', '.join(sorted(unknown))}; rows: "
                     + ", ".join(n for n, _ in starters))
        systems = [start() for n, start in starters if not SYSTEMS or n in SYSTEMS]
        res["throughput"] = throughput(systems)
        for s in systems:
            if "otlp_sink" in s:  # what the exporter delivered during the row's rounds
                res["otlp_sink"] = {"requests": s["otlp_sink"].requests,
                                    "bytes": s["otlp_sink"].bytes}
        for s in systems:
            stop(s["proc"])
        # after the stop: the log thread has flushed its buffer
        res["access_lines_written"] = {s["name"]: access_lines(s["log"])
                                       for s in systems if "log" in s}
        res["ratios_c64"] = ratios(res["throughput"])
        if SYSTEMS:
            res["targets"] = targets(res)
            return finish(res)
        res["par_call"] = callbench()
        key, conf = signing_key()
        small = os.path.join(BUILD, "packages", "echo-1.0.0.apkg")
        big = native_echo_copy("big", 30 * 1024 * 1024)
        big_signed = sign(native_echo_copy("bigsigned", 30 * 1024 * 1024), key)
        res["cold_start"] = {
            "1KB": cold_start("1KB", small),
            "30MB": cold_start("30MB", big),
            "30MB-signed": cold_start("30MB-signed", big_signed, config=conf),
            "python-echo": cold_start("python-echo", python_echo_package()),
        }
        res["deploy_to_invoke"] = {
            "1KB": deploy_to_invoke("1KB", small),
            "30MB-signed": deploy_to_invoke("30MB-signed", big_signed, config=conf),
        }
        res["scale"] = scale()
        res["targets"] = targets(res)
    finally:
        for p in PROCS:
            stop(p)
    finish(res)


def finish(res):
    for p in PROCS:
        stop(p)
    # a partial run (BENCH_SYSTEMS) must not overwrite the full report
    save_results(os.environ.get("BENCH_OUT") or ("partial" if SYSTEMS else "latest"), res,
                 report(res))
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
