#!/usr/bin/env python3
"""PAR's runs benchmark (docs/runs.md): what event streams cost. Writes
bench/results/runs.md and runs.json (runs-smoke.* with RUNS_BENCH_SMOKE=1).

The client is bench/runbench.c (par-runbench, C, epoll); the agent is the
native test fixture `runsnative` (tests/fixtures/runs), built with the
examples. Each section starts a fresh PAR:

- idle streams: S clients stream silent runs (S / 1000 runs, at least one,
  so the streams are what grows, not the agents); the runtime's RSS after
  they are all connected minus before, per stream (target ≤ 8 KB); beside it
  the floor, S idle keep-alive connections after one plain request each;
- time to first event: N × (invoke, then POST …/runs/stream) of an agent that
  emits one event and answers, interleaved on two keep-alive connections:
  p99 of the time to the agent's event vs p99 of the invoke (target ≤ 2 ms
  above);
- events/s: one run emitting E events as fast as it may, read by one client,
  then by C clients at once (flow control: the agent waits for the slowest);
- resume cost: a running run's R events replayed whole, and its last 1,000,
  from memory (runs.memory_events ≥ R) and from the event file
  (runs.memory_events 16); then the same once the run ended.

Environment: RUNS_BENCH_STREAMS (10000), RUNS_BENCH_FANOUT (1000),
RUNS_BENCH_EVENTS (200000, one client), RUNS_BENCH_FANOUT_EVENTS (5000),
RUNS_BENCH_TTFE (2000), RUNS_BENCH_REPLAY_EVENTS (100000), RUNS_BENCH_SMOKE=1
(200 streams, 50 clients, small counts: proves the tool works in seconds),
RUNS_BENCH_SECTIONS (a comma list of idle, ttfe, events, resume: only those,
printed, no report written), BENCH_BUILD (default build-release).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import requests

from common import BUILD, PAR, free_port, rss_kb, save_results, spawn
from common import machine as machine_info
from common import stop as stop_within

TOOL = os.path.join(BUILD, "par-runbench")
SMOKE = os.environ.get("RUNS_BENCH_SMOKE") == "1"


def knob(name, full, smoke):
    return int(os.environ.get(name, smoke if SMOKE else full))


STREAMS = knob("RUNS_BENCH_STREAMS", 10000, 200)
FANOUT = knob("RUNS_BENCH_FANOUT", 1000, 50)
EVENTS = knob("RUNS_BENCH_EVENTS", 200000, 5000)
FANOUT_EVENTS = knob("RUNS_BENCH_FANOUT_EVENTS", 5000, 1000)
TTFE = knob("RUNS_BENCH_TTFE", 2000, 200)
REPLAY_EVENTS = knob("RUNS_BENCH_REPLAY_EVENTS", 100000, 5000)
SECTIONS = [x for x in os.environ.get("RUNS_BENCH_SECTIONS", "").split(",") if x]
TMP = tempfile.mkdtemp(prefix="par-runs-bench-")
os.chmod(TMP, 0o711)  # sandboxed workers run as another user: they must reach their package
PROCS = []

CONFIG = """\
auth: {mode: off}
trust: {require_signatures: false}
log: {level: warn, access: false}
limits: {runs_per_subject: 0, max_in_flight: 1000000}
"""


def package():
    d = os.path.join(BUILD, "test-packages")
    for f in sorted(os.listdir(d)):
        if f.startswith("runsnative-") and f.endswith(".apkg"):
            return os.path.join(d, f)
    raise FileNotFoundError("runsnative package in " + d)


def start_par(name, extra_config=""):
    port = free_port()
    d = os.path.join(TMP, name)
    os.makedirs(os.path.join(d, "packages"))
    shutil.copy(package(), os.path.join(d, "packages"))
    conf = os.path.join(d, "par.yaml")
    with open(conf, "w") as f:
        f.write(CONFIG + extra_config)
    p = spawn([PAR, "serve", "--listen", f"127.0.0.1:{port}", "--packages",
               os.path.join(d, "packages"), "--state-dir", os.path.join(d, "var"),
               "--config", conf], os.path.join(d, "par.log"))
    PROCS.append(p)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if requests.get(url + "/runtime/ready", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.time() > deadline or p.poll() is not None:
            raise RuntimeError(f"{name}: PAR did not become ready (see {d}/par.log)")
        time.sleep(0.05)
    return {"url": url, "addr": f"127.0.0.1:{port}", "proc": p, "dir": d}


def stop(p):
    stop_within(p, 30)


def start_run(par, agent, inp):
    r = requests.post(f"{par['url']}/agents/{agent}/runs", json={"input": inp}, timeout=30)
    if r.status_code != 202:
        raise RuntimeError(f"POST /agents/{agent}/runs: {r.status_code} {r.text}")
    return r.json()["run_id"]


def wait_status(par, run_id, want, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = requests.get(f"{par['url']}/runs/{run_id}", timeout=30).json()
        if j["status"] in want:
            return j
        time.sleep(0.1)
    raise RuntimeError(f"run {run_id} not {want}")


def tool(*args, timeout=900):
    r = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"par-runbench {args[0]} failed ({r.returncode}): {r.stderr}")
    out = json.loads(lines[-1])
    out["exit"] = r.returncode
    return out


# ---- sections ----------------------------------------------------------------------------

def rss_per(par, mode, n, paths):
    """Runtime RSS before and with n idle connections of `mode` (idle: event
    streams; conns: keep-alive connections after one plain request)."""
    time.sleep(1)
    before = rss_kb(par["proc"].pid)
    hold = 6
    p = subprocess.Popen([TOOL, mode, par["addr"], str(n), str(hold), *paths],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = p.stdout.readline()
    if not ready.startswith("READY "):
        p.kill()
        raise RuntimeError(f"par-runbench {mode}: " + ready + p.stderr.read())
    ready = json.loads(ready[6:])
    time.sleep(2)
    during = rss_kb(par["proc"].pid)
    health = requests.get(par["url"] + "/runtime/health", timeout=10).json()
    out, _ = p.communicate(timeout=hold + 60)
    final = json.loads(out.strip().splitlines()[-1])
    return {"streams": ready["streams"], "failed": ready["failed"] + final["failed"],
            "closed_early": final["closed_early"], "connect_s": ready["connect_s"],
            "rss_before_kb": before, "rss_during_kb": during,
            "kb_per_stream": round((during - before) / max(1, ready["streams"]), 2),
            "runs_in_flight": health.get("runs_in_flight")}


def idle_streams():
    # the floor: as many idle keep-alive connections, each after one plain request
    par = start_par("idle-conns")
    base = rss_per(par, "conns", STREAMS, ["/runtime/health"])
    stop(par["proc"])
    par = start_par("idle")
    nruns = max(1, STREAMS // 1000)
    runs = [start_run(par, "runsnative/silent", 3600000) for _ in range(nruns)]
    for r in runs:
        wait_status(par, r, ("running",))
    # warm: one stream of each run came and went
    tool("idle", par["addr"], nruns, 0, *[f"/runs/{r}/stream" for r in runs])
    out = rss_per(par, "idle", STREAMS, [f"/runs/{r}/stream" for r in runs])
    stop(par["proc"])
    out["runs"] = nruns
    out["kb_per_idle_connection"] = base["kb_per_stream"]
    out["idle_connections"] = base["streams"]
    return out


def ttfe():
    par = start_par("ttfe")
    r = tool("ttfe", par["addr"], TTFE, "runsnative", "[1,0]")
    stop(par["proc"])
    r["p99_above_invoke_ms"] = round(r["first_agent_event"]["p99_ms"] - r["invoke"]["p99_ms"], 3)
    return r


def events_per_s():
    par = start_par("events", "runs: {memory_events: 1000}\n")
    out = {}
    for label, clients, n in (("one client", 1, EVENTS), (f"{FANOUT} clients", FANOUT,
                                                          FANOUT_EVENTS)):
        delay = 1500 + clients * 3  # every client is connected before the burst
        run_id = start_run(par, "runsnative/burst", [n, delay])
        res = tool("fanout", par["addr"], clients, f"/runs/{run_id}/stream")
        res["events"] = n
        j = wait_status(par, run_id, ("succeeded", "failed", "cancelled", "interrupted"))
        res["run_status"] = j["status"]
        out[label] = res
    stop(par["proc"])
    return out


def resume_cost():
    """Replays of a run that emitted R events and is still running (its events
    in memory, or all but the newest 16 only in its event file), then of the
    same run once ended (ended runs are read from their event file)."""
    out = {}
    for where, mem in (("memory", REPLAY_EVENTS + 100), ("disk", 16)):
        par = start_par("replay-" + where, f"runs: {{memory_events: {mem}}}\n")
        run_id = start_run(par, "runsnative/burst", [REPLAY_EVENTS, 0, 3600000])
        n = REPLAY_EVENTS + 1  # run.started and the agent's events
        deadline = time.time() + 600
        while requests.get(f"{par['url']}/runs/{run_id}", timeout=30).json()["events"] < n:
            if time.time() > deadline:
                raise RuntimeError("the burst run did not emit its events")
            time.sleep(0.1)
        path = f"/runs/{run_id}/stream"
        out[where] = {
            "whole": tool("replay", par["addr"], 5, path, n),
            "last_1000": tool("replay", par["addr"], 50, f"{path}?after={n - 1000}", 1000),
        }
        if where == "disk":
            requests.post(f"{par['url']}/runs/{run_id}/cancel", timeout=30)
            wait_status(par, run_id, ("cancelled",))
            time.sleep(0.5)  # written out
            out["ended run"] = {
                "whole": tool("replay", par["addr"], 5, path),
                "last_1000": tool("replay", par["addr"], 50, f"{path}?after={n - 999}"),
            }
        stop(par["proc"])
    return out


# ---- report ------------------------------------------------------------------------------

def machine():
    return machine_info(smoke=SMOKE)


def report(res):
    m = res["machine"]
    L = [f"# PAR runs benchmark — {m['date']}{' (smoke)' if SMOKE else ''}", "",
         f"Revision `{m['revision']}`, {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, "
         f"load average at start {' '.join(m['load'])}. Client: bench/runbench.c (C, epoll); "
         "agent: the native fixture `runsnative`; a fresh PAR per section (bench/runs.py).", ""]
    i = res["idle"]
    L += ["## Idle event streams", "",
          f"{i['streams']} streams connected ({i['failed']} failed, {i['closed_early']} closed "
          f"early) to {i['runs']} silent run(s) in {i['connect_s']:.2f} s. Runtime RSS "
          f"{i['rss_before_kb']} KB before → {i['rss_during_kb']} KB with the streams: "
          f"**{i['kb_per_stream']} KB per stream**. The floor, {i['idle_connections']} idle "
          f"keep-alive connections after one plain request each: "
          f"{i['kb_per_idle_connection']} KB per connection.", ""]
    t = res["ttfe"]
    L += ["## Time to first event (concurrency 1, keep-alive, interleaved)", "",
          "| | p50 ms | p99 ms | max ms |", "|---|---|---|---|"]
    for k, name in (("invoke", "invoke (answer)"), ("run_started", "runs/stream → run.started"),
                    ("first_agent_event", "runs/stream → the agent's first event"),
                    ("stream_whole", "runs/stream → run.completed, stream closed")):
        L.append(f"| {name} | {t[k]['p50_ms']:.3f} | {t[k]['p99_ms']:.3f} | "
                 f"{t[k]['max_ms']:.3f} |")
    L += ["", f"{t['n']} of each. First event p99 − invoke p99: "
          f"**{t['p99_above_invoke_ms']:.3f} ms**.", ""]
    L += ["## Events per second", "",
          "| readers | events | complete | seconds | events/s delivered (all clients) | "
          "events/s per client |", "|---|---|---|---|---|---|"]
    for label, r in res["events"].items():
        L.append(f"| {label} | {r['events']} | {r['complete']}/{r['clients']} | "
                 f"{r['seconds']:.2f} | {r['events_per_s_total']:.0f} | "
                 f"{r['events_per_s_per_client']:.0f} |")
    L += ["", "## Resume cost (replay of a running run, then of an ended one)", "",
          "| events read from | replay | events | median ms | µs per event | events/s |",
          "|---|---|---|---|---|---|"]
    for where, rr in res["resume"].items():
        for what, r in rr.items():
            L.append(f"| {where} | {what.replace('_', ' ')} | {r['events']} | "
                     f"{r['median_ms']:.2f} | {r['us_per_event']:.3f} | "
                     f"{r['events_per_s']:.0f} |")
    L += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for tg in res["targets"]:
        L.append(f"| {tg['target']} | {tg['measured']} | {'yes' if tg['met'] else '**no**'} |")
    return "\n".join(L) + "\n"


def targets(res):
    i, t = res["idle"], res["ttfe"]
    return [
        {"target": f"{STREAMS} idle streams, runtime memory per stream ≤ 8 KB",
         "measured": f"{i['kb_per_stream']} KB ({i['streams']} connected, {i['failed']} failed)",
         "met": i["kb_per_stream"] <= 8 and i["streams"] == STREAMS and not i["failed"]},
        {"target": "time to first event p99 ≤ invoke p99 + 2 ms",
         "measured": f"{t['first_agent_event']['p99_ms']:.3f} ms vs {t['invoke']['p99_ms']:.3f}"
                     f" ms (+{t['p99_above_invoke_ms']:.3f})",
         "met": t["p99_above_invoke_ms"] <= 2.0},
    ]


def main():
    for f in (PAR, TOOL):
        if not os.path.exists(f):
            sys.exit(f"{f} is missing: run `make bench` (or build {BUILD})")
    res = {"machine": machine(), "config": {
        "streams": STREAMS, "fanout": FANOUT, "events": EVENTS,
        "fanout_events": FANOUT_EVENTS, "ttfe": TTFE, "replay_events": REPLAY_EVENTS}}
    try:
        for name, fn in (("idle", idle_streams), ("ttfe", ttfe), ("events", events_per_s),
                         ("resume", resume_cost)):
            if SECTIONS and name not in SECTIONS:
                continue
            t0 = time.time()
            res[name] = fn()
            print(f"{name}: {json.dumps(res[name])} ({time.time() - t0:.1f} s)", flush=True)
        if not SECTIONS:
            res["targets"] = targets(res)
    finally:
        for p in PROCS:
            stop(p)
    base = "runs-smoke" if SMOKE else "runs"
    if SECTIONS:  # a partial run prints its figures and overwrites no report
        print(json.dumps(res, indent=2))
        return
    save_results(base, res, report(res))
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
