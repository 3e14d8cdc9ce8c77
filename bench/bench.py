#!/usr/bin/env python3
"""PAR's benchmark: PAR beside the reference Python runtime and the nginx ceiling,
in one run, on loopback. Writes bench/results/latest.md and latest.json.

Every load is bounded (wrk -d) and stops by itself. Figures are medians of
interleaved rounds (A B C A B C ...), with min and max.

Environment: BENCH_ROUNDS (default 3), BENCH_SECONDS (default 5),
BENCH_BUILD (default build-release).
"""
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(ROOT, os.environ.get("BENCH_BUILD", "build-release"))
PAR = os.path.join(BUILD, "par")
PEER = os.path.abspath(os.path.join(ROOT, "..", "shared", "peers", "fastapi_par"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
# BENCH_BASELINE: the build directory of another revision (bench/run.sh builds
# it from BENCH_BASELINE_REV); its isolated and in-process rows run in the
# same interleaved rounds, so a change is judged against noise of one run.
BASELINE = os.environ.get("BENCH_BASELINE", "")
CONCURRENCY = [1, 64, 512]
LUA = os.path.join(ROOT, "bench", "post.lua")
BODY = {"input": {"text": "hello"}}
TMP = tempfile.mkdtemp(prefix="par-bench-")
os.chmod(TMP, 0o711)  # sandboxed workers run as another user: they must reach their package
PROCS = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_ok(url, timeout=30, body=BODY):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.post(url, json=body, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.005)
    raise RuntimeError("no answer from " + url)


def spawn(args, env=None, cwd=None, log="proc.log"):
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                         stdout=open(os.path.join(TMP, log), "ab"),
                         stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    PROCS.append(p)
    return p


def stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid):
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


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

def start_par(name, extra=(), pkg=None, binary=None):
    port = free_port()
    d = os.path.join(TMP, name)
    os.makedirs(os.path.join(d, "packages"))
    shutil.copy(pkg or os.path.join(BUILD, "packages", "echo-1.0.0.apkg"),
                os.path.join(d, "packages"))
    p = spawn([binary or PAR, "serve", "--listen", f"127.0.0.1:{port}", "--packages",
               os.path.join(d, "packages"), "--state-dir", os.path.join(d, "var"),
               "--log-level", "warn", *extra], log=name + ".log")
    url = f"http://127.0.0.1:{port}/agents/echo/invoke"
    wait_ok(url)
    return {"name": name, "url": url, "proc": p}


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

def wrk(url, conns):
    r = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{SECONDS}s", "--timeout", "10s",
                        "-s", LUA, url], capture_output=True, text=True, timeout=SECONDS + 60)
    for line in r.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError("wrk gave no figures:\n" + r.stdout + r.stderr)


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def throughput(systems):
    raw = {s["name"]: {c: [] for c in CONCURRENCY} for s in systems}
    for rnd in range(ROUNDS):
        for c in CONCURRENCY:
            for s in systems:
                res = wrk(s["url"], c)
                raw[s["name"]][c].append(res)
                print(f"round {rnd + 1} c={c:<3} {s['name']:<22} {res['rps']:>9.0f} req/s "
                      f"p99 {res['p99_ms']:.2f} ms errors {res['errors'] + res['non2xx']}",
                      flush=True)
    out = {}
    for name, by_c in raw.items():
        out[name] = {}
        for c, runs in by_c.items():
            out[name][str(c)] = {k: summary([r[k] for r in runs])
                                 for k in ("rps", "p50_ms", "p99_ms", "p999_ms")}
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


# ---- report ---------------------------------------------------------------------------

def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "revision": rev, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rounds": ROUNDS, "seconds_per_load": SECONDS}


def fmt(s, key, scale=1.0, digits=0):
    v = s[key]
    return (f"{v['median'] * scale:.{digits}f} ({v['min'] * scale:.{digits}f}–"
            f"{v['max'] * scale:.{digits}f})")


def report(res):
    lines = [f"# PAR benchmark — {res['machine']['date']}", "",
             f"Revision `{res['machine']['revision']}`, {res['machine']['cpu']}, "
             f"{res['machine']['cores']} cores, kernel {res['machine']['kernel']}. "
             f"wrk -t1, {SECONDS} s per load, median of {ROUNDS} interleaved rounds "
             "(min–max). Echo agent, input `{\"text\":\"hello\"}`.", ""]
    for c in CONCURRENCY:
        lines += [f"## Concurrency {c}", "",
                  "| system | req/s | p50 ms | p99 ms | p99.9 ms | errors |",
                  "|---|---|---|---|---|---|"]
        for name, by_c in res["throughput"].items():
            s = by_c[str(c)]
            lines.append(f"| {name} | {fmt(s, 'rps')} | {fmt(s, 'p50_ms', digits=2)} | "
                         f"{fmt(s, 'p99_ms', digits=2)} | {fmt(s, 'p999_ms', digits=2)} | "
                         f"{s['errors']} |")
        lines.append("")
    lines += ["## Ratios at concurrency 64 (median req/s)", ""]
    for k, v in res["ratios_c64"].items():
        lines.append(f"- {k}: {v:.2f}")
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
    p99 = t["par-isolated"]["64"]["p99_ms"]["median"]
    best_ref = max(rps["reference-python-1w"], rps["reference-python-2w"])
    cs = res["cold_start"]["30MB-signed"]["process_start_to_first_invoke_ms"]["median"]
    ten = res["scale"]["10"]
    rows = [
        ("isolated c=64 ≥ 0.5× nginx", f"{rps['par-isolated'] / rps['nginx-ceiling']:.2f}×",
         rps["par-isolated"] >= 0.5 * rps["nginx-ceiling"]),
        ("isolated c=64 ≥ 3× reference (best of 1, 2 workers)",
         f"{rps['par-isolated'] / best_ref:.1f}×", rps["par-isolated"] >= 3 * best_ref),
        ("in-process c=64 ≥ 0.7× nginx", f"{rps['par-in-process'] / rps['nginx-ceiling']:.2f}×",
         rps["par-in-process"] >= 0.7 * rps["nginx-ceiling"]),
        ("isolated p99 at c=64 ≤ 2 ms", f"{p99:.2f} ms", p99 <= 2.0),
        ("in-process par_call p99 ≤ 20 µs", f"{res['par_call']['in-process']['p99_us']} µs",
         res["par_call"]["in-process"]["p99_us"] <= 20),
        ("Python echo through PAR ≥ reference serving the same agent (c=64)",
         f"{rps['par-python'] / best_ref:.2f}×", rps["par-python"] >= best_ref),
        ("30 MB signed package, process start → first invoke ≤ 60 ms", f"{cs:.1f} ms",
         cs <= 60),
        ("process start → ready with 10 packages ≤ 100 ms", f"{ten['start_to_ready_ms']} ms",
         ten["start_to_ready_ms"] <= 100),
        ("idle runtime RSS ≤ 15 MB", f"{res['scale']['1']['runtime_rss_kb'] / 1024:.1f} MB",
         res["scale"]["1"]["runtime_rss_kb"] <= 15 * 1024),
        ("idle native worker RSS ≤ 4 MB", f"{res['scale']['1']['worker_rss_kb_avg'] / 1024:.1f} MB",
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
        systems = [start_par("par-isolated"),
                   start_par("par-in-process", ["--trusted", "echo"]),
                   start_par("par-python", pkg=python_echo_package()),
                   start_peer(1), start_peer(2), start_nginx()]
        if BASELINE:
            base = os.path.join(os.path.abspath(BASELINE), "par")
            rev = subprocess.run(["git", "-C", BASELINE, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip() or "baseline"
            systems[2:2] = [start_par(f"par-isolated@{rev}", binary=base),
                            start_par(f"par-in-process@{rev}", ["--trusted", "echo"],
                                      binary=base)]
        res["throughput"] = throughput(systems)
        for s in systems:
            stop(s["proc"])
        t = res["throughput"]
        rps = {n: t[n]["64"]["rps"]["median"] for n in t}
        best_ref = max(rps["reference-python-1w"], rps["reference-python-2w"])
        res["ratios_c64"] = {
            "par-isolated / nginx": rps["par-isolated"] / rps["nginx-ceiling"],
            "par-in-process / nginx": rps["par-in-process"] / rps["nginx-ceiling"],
            "par-isolated / reference (best of 1 or 2 workers)": rps["par-isolated"] / best_ref,
            "par-in-process / reference (best of 1 or 2 workers)":
                rps["par-in-process"] / best_ref,
            "par-python / reference (best of 1 or 2 workers)": rps["par-python"] / best_ref,
        }
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
    out = os.path.join(ROOT, "bench", "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "latest.json"), "w") as f:
        json.dump(res, f, indent=2)
    md = report(res)
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write(md)
    print(md)
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
