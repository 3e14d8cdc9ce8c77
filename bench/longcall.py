#!/usr/bin/env python3
"""PAR under long agent calls: an agent that waits on a model API for seconds and
reads its token stream, PAR beside the reference Python runtime, on loopback.
Writes bench/results/longcall.md and longcall.json.

Pieces (all in bench/longcall/):
- mock_model.py: a chat-completion stand-in (asyncio, standard library, 127.0.0.1)
  answering after `delay_ms` with a server-sent-event stream of `tokens` chunks;
- agent/: the `longcall` agent in pixell-kit's layout (runtime python3.11, the
  `network` capability, an async handler using asyncio.open_connection) that
  calls it and returns the text; packed by `par pack` for PAR and zipped as it is
  for the reference runtime (../shared/peers/fastapi_par, which awaits coroutines).

Each run starts the system fresh, holds C clients (`wrk -cC`, one call each at a
time, keep-alive; each client's first call starts at a random moment within the
first model delay, so calls do not start and end in one wave) on `longcall` for S
seconds and samples the RSS of the runtime and
of all its processes every 0.25 s. During PAR's runs a second, light load (4
connections, one call per 10 ms each) calls the native echo agent on the same PAR,
starting once the long calls are all in flight. The `direct` system is wrk calling
the mock model itself: the floor that the client and the model alone account for.

Environment: LONGCALL_DELAYS (ms, default "1000,5000"), LONGCALL_CLIENTS (default
"500,2000,5000"), LONGCALL_SYSTEMS (default "par,reference,direct"),
LONGCALL_SECONDS (per run; default 2 × delay + 8 s), LONGCALL_TOKENS (default 32),
LONGCALL_RAMP_MS (spread of the first calls, default the model delay),
LONGCALL_PAR_DEFAULTS=1 (PAR without the settings below), LONGCALL_MERGE=1 (the
cells measured replace theirs in the last bench/results/longcall.json, the others
stay), BENCH_BUILD (default build-release).
"""
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile

from common import BUILD, PAR, PEER, ROOT, cpu_s, descendants, free_port, rss_kb
from common import machine as machine_info
from common import spawn as spawn_logged
from common import stop as stop_within

HERE = os.path.join(ROOT, "bench", "longcall")
LUA = os.path.join(ROOT, "bench", "longcall.lua")
DELAYS = [int(x) for x in os.environ.get("LONGCALL_DELAYS", "1000,5000").split(",")]
CLIENTS = [int(x) for x in os.environ.get("LONGCALL_CLIENTS", "500,2000,5000").split(",")]
SYSTEMS = os.environ.get("LONGCALL_SYSTEMS", "par,reference,direct").split(",")
TOKENS = int(os.environ.get("LONGCALL_TOKENS", "32"))
SHORT_CONNS, SHORT_PACE_MS = 4, 10
TMP = tempfile.mkdtemp(prefix="par-longcall-")
os.chmod(TMP, 0o711)  # sandboxed workers run as another user: they must reach their package
PROCS = []

# What an operator running long calls sets, and why (docs/performance.md):
PAR_CONFIG = """\
auth: {mode: off}
trust: {require_signatures: false}     # the bench's packages are unsigned
log: {level: info, access: true}       # the defaults: one access line per call
env: {allow: [MODEL_URL]}              # the agent's ${MODEL_URL} comes from PAR's environment
limits:
  max_in_flight: 16384                 # default 1024: the 1025th concurrent call gets 503
  timeout_ms: 60000                    # default 30 s: a slow model must not be cut at 30 s
sandbox:
  max_files: 16384                     # default 1024 per worker: one socket per call to the model
"""


# LONGCALL_PAR_DEFAULTS=1: only the first four lines (PAR's own limits), to see
# which defaults refuse the load.
if os.environ.get("LONGCALL_PAR_DEFAULTS") == "1":
    PAR_CONFIG = "".join(PAR_CONFIG.splitlines(True)[:4])


def seconds_for(delay_ms):
    if os.environ.get("LONGCALL_SECONDS"):
        return int(os.environ["LONGCALL_SECONDS"])
    return 2 * delay_ms // 1000 + 8


def spawn(args, env=None, log="proc.log"):
    p = spawn_logged(args, os.path.join(TMP, log), env=env)
    PROCS.append(p)
    return p


def stop(p):
    stop_within(p, 15)


def post(url, body, timeout=30):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_ok(url, body, timeout=60):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            if post(url, body, timeout=15)[0] == 200:
                return
        except Exception as e:  # noqa: BLE001 (not up yet)
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"no answer from {url}: {last}")


def memory(pid):
    """(RSS of the process, RSS of it and all its descendants) in KB."""
    own = rss_kb(pid)
    return own, own + sum(rss_kb(k) for k in descendants(pid))


def cpu(pid):
    """CPU seconds used by the process and by its descendants (alive ones)."""
    return cpu_s(pid), sum(cpu_s(k) for k in descendants(pid))


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.halt = pid, (0, 0), threading.Event()

    def run(self):
        while not self.halt.is_set():
            own, total = memory(self.pid)
            self.peak = (max(self.peak[0], own), max(self.peak[1], total))
            self.halt.wait(0.25)


# ---- packages and systems -------------------------------------------------------------

def zip_agent(out):
    src = os.path.join(HERE, "agent")
    with zipfile.ZipFile(out, "w") as z:
        for base, _, files in os.walk(src):
            for f in files:
                full = os.path.join(base, f)
                z.write(full, os.path.relpath(full, src))
    return out


def pack_agent(out):
    r = subprocess.run([PAR, "pack", os.path.join(HERE, "agent"), "-o", out],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr)
    return out


def start_mock():
    port = free_port()
    p = spawn(["/usr/bin/python3", os.path.join(HERE, "mock_model.py"), "--port", str(port),
               "--tokens", str(TOKENS)], log="mock.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.02)
    return {"name": "direct", "proc": p, "url": url + "/v1/chat/completions",
            "model_url": url}


def start_par(model_url, tag):
    d = os.path.join(TMP, "par-" + tag)
    os.makedirs(os.path.join(d, "packages"))
    pack_agent(os.path.join(d, "packages", "longcall-1.0.0.apkg"))
    shutil.copy(os.path.join(BUILD, "packages", "echo-1.0.0.apkg"), os.path.join(d, "packages"))
    with open(os.path.join(d, "par.yaml"), "w") as f:
        f.write(PAR_CONFIG)
    port = free_port()
    env = dict(os.environ, MODEL_URL=model_url)
    p = spawn([PAR, "serve", "--config", os.path.join(d, "par.yaml"), "--listen",
               f"127.0.0.1:{port}", "--packages", os.path.join(d, "packages"), "--state-dir",
               os.path.join(d, "var")], env=env, log=f"par-{tag}.log")
    base = f"http://127.0.0.1:{port}"
    wait_ok(base + "/agents/echo/invoke", {"input": {"text": "hello"}})
    return {"name": "par", "proc": p, "url": base + "/agents/longcall/invoke",
            "short_url": base + "/agents/echo/invoke", "log": os.path.join(TMP, f"par-{tag}.log")}


def start_reference(model_url, tag):
    pk = os.path.join(TMP, "ref-" + tag)
    os.makedirs(pk)
    zip_agent(os.path.join(pk, "longcall-1.0.0.apkg"))
    port = free_port()
    env = dict(os.environ, PEER_PACKAGES=pk, MODEL_URL=model_url)
    p = spawn(["/usr/bin/python3", "-m", "uvicorn", "app:app", "--app-dir", PEER, "--host",
               "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
               "--backlog", "8192"], env=env, log=f"ref-{tag}.log")
    return {"name": "reference", "proc": p,
            "url": f"http://127.0.0.1:{port}/agents/longcall/invoke"}


# ---- measurement ----------------------------------------------------------------------

def wrk_start(url, conns, seconds, body, pace_ms=0, threads=2, ramp_ms=0):
    env = dict(os.environ, LONGCALL_BODY=json.dumps(body), LONGCALL_PACE_MS=str(pace_ms),
               LONGCALL_RAMP_MS=str(ramp_ms), LONGCALL_PER_THREAD=str(-(-conns // threads)))
    return subprocess.Popen(["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout",
                             "60s", "-s", LUA, url], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def wrk_result(p, seconds):
    out, _ = p.communicate(timeout=seconds + 120)
    for line in out.splitlines():
        if line.startswith("BENCH "):
            r = json.loads(line[6:])
            failed = r["non2xx"] + r["connect"] + r["read"] + r["write"]
            r["ok"] = r["requests"] - r["non2xx"]
            r["success_rate"] = r["ok"] / (r["requests"] + r["connect"] + r["read"] + r["write"]) \
                if r["requests"] + failed else 0.0
            return r
    raise RuntimeError("wrk gave no figures:\n" + out)


def warnings(path):
    """Warn and error lines of a PAR log, counted by message and error name."""
    counts = {}
    with open(path, "rb") as f:
        for line in f:
            if b'"level":"warn"' not in line and b'"level":"error"' not in line:
                continue
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("msg") == "request":
                key = f"request {j.get('status')} {j.get('error', '')}".strip()
            else:
                key = (j.get("msg") or "")[:120] + (f" ({j['error']})" if j.get("error") else "")
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:8])


def run_one(system, delay_ms, clients):
    body = {"input": {"prompt": "Say something.", "delay_ms": delay_ms, "tokens": TOKENS}}
    if system["name"] == "direct":
        body = body["input"]
    seconds = seconds_for(delay_ms)
    pid = system["proc"].pid
    idle = memory(pid)
    cpu0 = cpu(pid)
    sampler = Sampler(pid)
    sampler.start()
    # the clients' first calls spread over one model delay (no single wave)
    long = wrk_start(system["url"], clients, seconds, body,
                     ramp_ms=int(os.environ.get("LONGCALL_RAMP_MS", delay_ms)))
    short = None
    if system.get("short_url"):
        # once every long call is in flight (the first answers come after delay_ms)
        lead = min(delay_ms / 1000.0 + 0.5, seconds / 2)
        time.sleep(lead)
        short = wrk_start(system["short_url"], SHORT_CONNS, max(1, int(seconds - lead - 1)),
                          {"input": {"text": "hello"}}, pace_ms=SHORT_PACE_MS, threads=1)
    res = wrk_result(long, seconds)
    cpu1 = cpu(pid)
    sampler.halt.set()
    sampler.join()
    out = {"long": res, "idle_rss_kb": {"runtime": idle[0], "all": idle[1]},
           "peak_rss_kb": {"runtime": sampler.peak[0], "all": sampler.peak[1]},
           "seconds": seconds,
           # Little's law: calls in flight = throughput × time in the system
           "in_flight": round(res["rps"] * res["p50_ms"] / 1000.0),
           "p99_over_model_ms": res["p99_ms"] - delay_ms,
           # CPU time per answered call: the runtime's process, its worker processes
           "cpu_ms_per_call": {
               "runtime": round((cpu1[0] - cpu0[0]) * 1000 / max(1, res["requests"]), 3),
               "workers": round((cpu1[1] - cpu0[1]) * 1000 / max(1, res["requests"]), 3)}}
    if short:
        out["short"] = wrk_result(short, seconds)
    if system.get("log"):
        out["log_warnings"] = warnings(system["log"])
    r = res
    print(f"{system['name']:<9} delay {delay_ms:>4} ms c={clients:<5} {r['rps']:>7.0f} req/s "
          f"ok {r['success_rate'] * 100:6.2f}% p50 {r['p50_ms']:.0f} p99 {r['p99_ms']:.0f} ms "
          f"in flight {out['in_flight']} peak RSS {out['peak_rss_kb']['runtime']} / "
          f"{out['peak_rss_kb']['all']} KB cpu/call {out['cpu_ms_per_call']}"
          + (f" | short p99 {out['short']['p99_ms']:.2f} ms ok "
             f"{out['short']['success_rate'] * 100:.2f}%" if short else ""), flush=True)
    return out


def measure(mock):
    results = {}
    for delay in DELAYS:
        for clients in CLIENTS:
            for name in SYSTEMS:
                tag = f"{delay}-{clients}"
                if name == "direct":
                    system = mock
                elif name == "par":
                    system = start_par(mock["model_url"], tag)
                else:
                    system = start_reference(mock["model_url"], tag)
                try:
                    if name != "direct":
                        wait_ok(system["url"], {"input": {"prompt": "warm", "delay_ms": 0,
                                                          "tokens": TOKENS}})
                    results.setdefault(name, {}).setdefault(str(delay), {})[str(clients)] = \
                        run_one(system, delay, clients)
                finally:
                    if name != "direct":
                        stop(system["proc"])
                        PROCS.remove(system["proc"])
                time.sleep(1)  # let TIME_WAIT sockets and the scheduler settle
    return results


# ---- report ---------------------------------------------------------------------------

def machine():
    return machine_info(tokens=TOKENS)


def sustained(runs, delay, rate):
    """The most clients a system served at `delay` with at least `rate` success."""
    best = 0
    for c, r in runs.get(str(delay), {}).items():
        if r["long"]["success_rate"] >= rate:
            best = max(best, int(c))
    return best


def targets(res):
    rows = []
    par = res["runs"].get("par", {})
    ref = res["runs"].get("reference", {})
    direct = res["runs"].get("direct", {})
    top = par.get("5000", {}).get("5000")
    if top:
        lg = top["long"]
        tried = lg["requests"] + lg["connect"] + lg["read"] + lg["write"]
        fails = tried - lg["ok"]
        rows.append(("5,000 concurrent calls at 5 s model latency, 0 failures",
                     f"{fails} failed of {tried} ({lg['success_rate'] * 100:.2f} % ok)",
                     fails == 0))
        d = direct.get("5000", {}).get("5000")
        added = lg["p99_ms"] - (d["long"]["p99_ms"] if d else 5000)
        rows.append(("PAR's added p99 ≤ 20 ms (5 s, 5,000 clients; p99 − direct p99)",
                     f"{added:.1f} ms" + ("" if d else " (over the 5 s delay: no direct run)"),
                     added <= 20))
        per_call = (top["peak_rss_kb"]["runtime"] - top["idle_rss_kb"]["runtime"]) / 5000
        rows.append(("≤ 20 KB runtime memory per in-flight call (peak − idle RSS) / 5,000",
                     f"{per_call:.1f} KB (with workers "
                     f"{(top['peak_rss_kb']['all'] - top['idle_rss_kb']['all']) / 5000:.1f} KB)",
                     per_call <= 20))
        if top.get("short"):
            rows.append(("short echo calls' p99 ≤ 5 ms during the 5,000 long calls",
                         f"{top['short']['p99_ms']:.2f} ms ({top['short']['requests']} calls, "
                         f"{top['short']['success_rate'] * 100:.2f} % ok)",
                         top["short"]["p99_ms"] <= 5 and top["short"]["success_rate"] == 1.0))
    if par and ref:
        for delay in DELAYS:
            rate = min(r["long"]["success_rate"] for r in par.get(str(delay), {}).values())
            p, q = sustained(par, delay, rate), sustained(ref, delay, rate)
            rows.append((f"≥ 10× the concurrent calls the reference sustains ({delay} ms, at "
                         f"≥ {rate * 100:.2f} % success)",
                         f"PAR {p}, reference {q}" + (f": {p / q:.1f}×" if q else "")
                         + (" (PAR's largest load tried)" if p == max(CLIENTS) else ""),
                         bool(q) and p >= 10 * q or (not q and p > 0)))
    return [{"target": a, "measured": b, "met": bool(c)} for a, b, c in rows]


def report(res):
    m = res["machine"]
    lines = [f"# PAR under long agent calls — {m['date']}", "",
             f"Revision `{m['revision']}`, {m['cpu']}, {m['cores']} cores, kernel "
             f"{m['kernel']}, load average at start {m['load_average'][0]:.2f}. The `longcall` "
             f"agent (Python, async, standard library) calls a mock model that answers after "
             f"the delay with {m['tokens']} SSE tokens. wrk -t2 -cC, one call at a time per "
             "client; `direct` is wrk calling the mock model itself. RSS: the runtime's "
             "process, and the runtime with all its processes (PAR's workers; uvicorn is one "
             "process). In flight = req/s × p50 (Little's law).", "",
             "| system | model delay | clients | req/s | ok % | failed | in flight | p50 ms | "
             "p99 ms | p99 − delay ms | runtime RSS idle → peak MB | all processes idle → "
             "peak MB | KB per call (runtime / all) | short calls p50 / p99 ms (n, ok %) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, by_delay in res["runs"].items():
        for delay, by_c in by_delay.items():
            for c, r in by_c.items():
                lg = r["long"]
                failed = lg["requests"] + lg["connect"] + lg["read"] + lg["write"] - lg["ok"]
                rt = (r["peak_rss_kb"]["runtime"] - r["idle_rss_kb"]["runtime"]) / int(c)
                al = (r["peak_rss_kb"]["all"] - r["idle_rss_kb"]["all"]) / int(c)
                mem = "—" if name == "direct" else (
                    f"{r['idle_rss_kb']['runtime'] / 1024:.1f} → "
                    f"{r['peak_rss_kb']['runtime'] / 1024:.1f} | "
                    f"{r['idle_rss_kb']['all'] / 1024:.1f} → "
                    f"{r['peak_rss_kb']['all'] / 1024:.1f} | {rt:.1f} / {al:.1f}")
                if name == "direct":
                    mem = "— | — | —"
                short = "—"
                if r.get("short"):
                    s = r["short"]
                    short = (f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} ({s['requests']}, "
                             f"{s['success_rate'] * 100:.2f})")
                lines.append(f"| {name} | {int(delay) / 1000:g} s | {c} | {lg['rps']:.0f} | "
                             f"{lg['success_rate'] * 100:.2f} | {failed} | {r['in_flight']} | "
                             f"{lg['p50_ms']:.0f} | {lg['p99_ms']:.0f} | "
                             f"{r['p99_over_model_ms']:.0f} | {mem} | {short} |")
    lines += ["", "PAR's configuration for these runs (docs/performance.md says why):", "",
              "```yaml", PAR_CONFIG.rstrip(), "```", "",
              "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in res["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def main():
    if not os.path.exists(PAR):
        sys.exit(f"{PAR} is missing: run `bench/run.sh longcall`")
    if "reference" in SYSTEMS and not os.path.isdir(PEER):
        sys.exit(f"{PEER} is missing (see ../shared/peers/README.md)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 3 * max(CLIENTS) + 1024
    if hard < need:
        sys.exit(f"ulimit -n allows {hard} files; {need} are needed for {max(CLIENTS)} clients")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by every child
    res = {"machine": machine()}
    out = os.path.join(ROOT, "bench", "results")
    try:
        mock = start_mock()
        res["runs"] = measure(mock)
        if os.environ.get("LONGCALL_MERGE") == "1":
            # re-measure some cells of the last report, keep the others
            with open(os.path.join(out, "longcall.json")) as f:
                old = json.load(f)
            for name, by_delay in res["runs"].items():
                for delay, by_c in by_delay.items():
                    old["runs"].setdefault(name, {}).setdefault(delay, {}).update(by_c)
            res["runs"] = old["runs"]
            res["machine"]["merged_into"] = old["machine"]
        res["targets"] = targets(res)
    finally:
        for p in list(PROCS):
            stop(p)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "longcall.json"), "w") as f:
        json.dump(res, f, indent=2)
    md = report(res)
    with open(os.path.join(out, "longcall.md"), "w") as f:
        f.write(md)
    print(md)
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
