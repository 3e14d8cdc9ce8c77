#!/usr/bin/env python3
"""The `par` Python module against the same calls over HTTP: writes
bench/results/python-embed.md and python-embed.json.

Rows, each for an in-process (trusted) native agent and for the same agent in
an isolated worker:
  - rt.call latency, p50 / p99 / p99.9 (one thread, one call at a time);
  - rt.call calls/s with 1, 4 and 16 Python threads;
  - rt.acall throughput with 1,000 concurrent asyncio tasks;
  - beside each, the same over HTTP/1.1 keep-alive to `par serve` (one
    connection per thread; 64 connections shared by the 1,000 tasks).
The agent is the echo example (its input back). Python clients on both sides,
so the difference is what HTTP costs a Python caller.

Environment: BENCH_BUILD (default build-release), BENCH_SMOKE=1 (a few
thousand calls a row, for checking the bench itself: not figures to quote),
BENCH_CALLS (latency samples, default 50000), BENCH_SECONDS (each throughput
row, default 5).
"""
import asyncio
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(ROOT, os.environ.get("BENCH_BUILD", "build-release"))
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
CALLS = int(os.environ.get("BENCH_CALLS", "3000" if SMOKE else "50000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "1" if SMOKE else "5"))
TASKS = 1000
sys.path.insert(0, os.path.join(BUILD, "python"))
import par  # noqa: E402

ECHO = os.path.join(BUILD, "packages", "echo-1.0.0.apkg")
INPUT = {"text": "hello"}
TMP = tempfile.mkdtemp(prefix="par-pybench-")
os.chmod(TMP, 0o711)  # sandboxed workers run as another user


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def latency(fn):
    for _ in range(min(2000, CALLS // 5)):  # warm-up
        fn()
    ns = []
    clock = time.perf_counter_ns
    for _ in range(CALLS):
        t = clock()
        fn()
        ns.append(clock() - t)
    us = [x / 1000 for x in ns]
    return {"p50_us": round(pct(us, 0.50), 2), "p99_us": round(pct(us, 0.99), 2),
            "p999_us": round(pct(us, 0.999), 2), "mean_us": round(statistics.mean(us), 2)}


def throughput(make_fn, threads):
    """Calls/s of `threads` threads each calling its own make_fn() for SECONDS."""
    stop = threading.Event()
    counts = [0] * threads

    def work(i):
        fn = make_fn()
        n = 0
        while not stop.is_set():
            fn()
            n += 1
        counts[i] = n
    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in ts:
        t.join()
    return round(sum(counts) / (time.perf_counter() - t0))


def acall_throughput(rt):
    async def main():
        async def one():
            await rt.acall("echo", **INPUT)
        await asyncio.gather(*[one() for _ in range(TASKS)])  # warm-up
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < SECONDS:
            await asyncio.gather(*[one() for _ in range(TASKS)])
            done += TASKS
        return round(done / (time.perf_counter() - t0))
    return asyncio.run(main())


# ---- HTTP ------------------------------------------------------------------------------

BODY = json.dumps({"input": INPUT}).encode()


def start_server(trusted):
    d = tempfile.mkdtemp(dir=TMP)
    os.chmod(d, 0o711)
    pk = os.path.join(d, "packages")
    os.makedirs(pk)
    shutil.copy(ECHO, pk)
    log = open(os.path.join(d, "par.log"), "w+")
    args = [os.path.join(BUILD, "par"), "serve", "--listen", "127.0.0.1:0", "--packages", pk,
            "--state-dir", os.path.join(d, "var")]  # info: the "listening" line
    if trusted:
        args += ["--trusted", "echo"]
    env = dict(os.environ, PAR_LOG_ACCESS="false")
    p = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    deadline = time.time() + 30
    url = None
    while time.time() < deadline and url is None:
        log.seek(0)
        for line in log:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("msg") == "listening":
                url = doc["url"]
        time.sleep(0.05)
    if url is None:
        p.kill()
        raise SystemExit("par serve did not start")
    host, port = url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port))
    for _ in range(200):  # ready and the package mounted
        try:
            c.request("POST", "/agents/echo/invoke", BODY, {"content-type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status == 200:
                break
        except OSError:
            c = http.client.HTTPConnection(host, int(port))
        time.sleep(0.05)
    return p, host, int(port)


def http_caller(host, port):
    c = http.client.HTTPConnection(host, port)
    h = {"content-type": "application/json"}

    def call():
        c.request("POST", "/agents/echo/invoke", BODY, h)
        r = c.getresponse()
        data = r.read()
        assert r.status == 200, data
        return json.loads(data)["output"]
    return call


def http_async_throughput(host, port, conns=64):
    req = (b"POST /agents/echo/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))

    async def main():
        pool = asyncio.Queue()
        for _ in range(conns):
            pool.put_nowait(await asyncio.open_connection(host, port))

        async def one():
            r, w = await pool.get()
            w.write(req)
            head = await r.readuntil(b"\r\n\r\n")
            n = int([x for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")]
                    [0].split(b":")[1])
            json.loads(await r.readexactly(n))
            pool.put_nowait((r, w))
        await asyncio.gather(*[one() for _ in range(TASKS)])
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < SECONDS:
            await asyncio.gather(*[one() for _ in range(TASKS)])
            done += TASKS
        while not pool.empty():
            pool.get_nowait()[1].close()
        return round(done / (time.perf_counter() - t0))
    return asyncio.run(main())


# ---- rows ----------------------------------------------------------------------------------

def embedded_rows(trusted):
    cfg = {"state_dir": os.path.join(TMP, "embed-%d" % trusted), "trusted": ["echo"] if trusted
           else [], "trust": {"require_signatures": False}, "log": {"level": "warn"}}
    with par.Runtime(cfg) as rt:
        rt.deploy(ECHO)
        row = {"latency": latency(lambda: rt.call("echo", **INPUT))}
        for n in (1, 4, 16):
            row["threads_%d" % n] = throughput(lambda: (lambda: rt.call("echo", **INPUT)), n)
        row["acall_1000"] = acall_throughput(rt)
    return row


def http_rows(trusted):
    p, host, port = start_server(trusted)
    try:
        row = {"latency": latency(http_caller(host, port))}
        for n in (1, 4, 16):
            row["threads_%d" % n] = throughput(lambda: http_caller(host, port), n)
        row["acall_1000"] = http_async_throughput(host, port)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    return row


def report(rows):
    lines = ["# The par Python module: rt.call beside HTTP keep-alive", "",
             "`bench/pyembed.py` (`make bench`, or `bench/run.sh pyembed`). Machine: %s, %d cores, "
             "load average %.1f at the end, Python %s. Agent: echo (its input back), input `%s`."
             % (platform.machine(), os.cpu_count(), os.getloadavg()[0],
                platform.python_version(), json.dumps(INPUT)),
             "%s" % ("**Smoke run** (BENCH_SMOKE=1: %d latency samples, %.0f s rows, on a "
                     "shared machine): checks the bench, not figures to quote." % (CALLS, SECONDS)
                     if SMOKE else "%d latency samples a row; throughput rows %.0f s each."
                     % (CALLS, SECONDS)), "",
             "| agent | path | p50 µs | p99 µs | p99.9 µs | calls/s 1 thread | 4 threads "
             "| 16 threads | 1,000 tasks (acall) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (agent, path), r in rows.items():
        lat = r["latency"]
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            agent, path, lat["p50_us"], lat["p99_us"], lat["p999_us"], r["threads_1"],
            r["threads_4"], r["threads_16"], r["acall_1000"]))
    lines += ["", "Targets (issue 19): rt.call p99 ≤ 10 µs to an in-process native agent, "
              "≤ 150 µs to an isolated worker.", ""]
    return "\n".join(lines)


def main():
    rows = {}
    try:
        rows[("in-process native", "rt.call / acall")] = embedded_rows(True)
        rows[("in-process native", "HTTP keep-alive")] = http_rows(True)
        rows[("isolated worker", "rt.call / acall")] = embedded_rows(False)
        rows[("isolated worker", "HTTP keep-alive")] = http_rows(False)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    text = report(rows)
    out = os.path.join(ROOT, "bench", "results")
    with open(os.path.join(out, "python-embed.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "python-embed.json"), "w") as f:
        json.dump({"%s / %s" % k: v for k, v in rows.items()}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
