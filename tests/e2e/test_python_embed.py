"""The `par` Python module (python/, docs/python-embedding.md): a runtime in
the Python process, called with rt.call / rt.acall.

Each test runs its scenario in a fresh /usr/bin/python3 (the module is
loaded from the build, PYTHONPATH=<build>/python) and reads one JSON line of
findings from it: a crash of the interpreter fails the test instead of
taking pytest down, and under PAR_SANITIZE=1 the sanitizer build's module
runs in an uninstrumented interpreter with the ASan runtime preloaded
(LD_PRELOAD; leak checking off: the interpreter keeps memory on purpose, so
the 16-thread test measures RSS instead). A report by the sanitizer fails
the test.
"""
import json
import os
import shutil
import subprocess
import textwrap

import pytest

from conftest import BUILD, SANITIZE, SANITIZER_MARKERS, SOURCE, make_searchable, package

MODULE_DIR = os.path.join(BUILD, "python")
pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(MODULE_DIR, "par", "_par.abi3.so")),
    reason="the par module was not built (python3-dev missing at configure time)")


def asan_runtime():
    out = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True)
    return os.path.realpath(out.stdout.strip())


PRELUDE = """
import asyncio, json, os, sys, threading, time
import par
ECHO = %(echo)r
WHOAMI = %(whoami)r
FAULTY = %(faulty)r
HELLO = %(hello)r
TMP = %(tmp)r
def out(**kw):
    print("RESULT " + json.dumps(kw), flush=True)
def config(**extra):
    c = {"state_dir": os.path.join(TMP, "var"), "trusted": ["echo"],
         "trust": {"require_signatures": False}, "log": {"level": "warn"}}
    c.update(extra)
    return c
def error_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except par.Error as e:
        return {"cls": type(e).__name__, "name": e.name, "status": e.status,
                "message": e.message, "request_id": e.request_id}
    return None
"""


def run_py(tmp_path, body, timeout=180, python=None, env_extra=None):
    """Runs PRELUDE + body; returns the dict its out() printed."""
    make_searchable(str(tmp_path))
    script = tmp_path / "scenario.py"
    script.write_text(PRELUDE % {
        "echo": package("echo"), "whoami": package("whoami"), "faulty": package("faulty"),
        "hello": package("hello-python"), "tmp": str(tmp_path)} + textwrap.dedent(body))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if python is None:
        env["PYTHONPATH"] = MODULE_DIR
    if SANITIZE:
        env["LD_PRELOAD"] = asan_runtime()
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0"
    env.update(env_extra or {})
    p = subprocess.run([python or "/usr/bin/python3", str(script)], capture_output=True,
                       text=True, timeout=timeout, env=env, cwd=str(tmp_path))
    for m in SANITIZER_MARKERS:
        assert m not in p.stderr, "sanitizer report:\n" + p.stderr[-8000:]
    lines = [line for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    assert p.returncode == 0 and lines, \
        "scenario failed (%d):\n%s\n%s" % (p.returncode, p.stdout[-4000:], p.stderr[-8000:])
    return json.loads(lines[-1][7:])


def test_sync_and_async_calls_to_every_kind_of_agent(tmp_path):
    r = run_py(tmp_path, """
    with par.Runtime(config()) as rt:
        recs = [rt.deploy(p) for p in (ECHO, WHOAMI, HELLO)]
        sync = {
            "inproc": rt.call("echo", text="a"),
            "isolated": rt.call("whoami", _subject="sam")["subject"],
            "python": rt.call("hello-python", name="Ada"),
        }
        async def main():
            return await asyncio.gather(rt.acall("echo", text="b"),
                                        rt.acall("whoami", _subject="kim"),
                                        rt.acall("hello-python/shout", name="Bo"))
        a = asyncio.run(main())
        out(recs=[(x["name"], x["state"], x["isolation"]) for x in recs], sync=sync,
            async_=[a[0], a[1]["subject"], a[2]],
            agents=sorted(x["id"] for x in rt.agents()),
            private=sorted(x["id"] for x in rt.agents(include_private=True)),
            packages=sorted(p["name"] for p in rt.packages()))
    """)
    assert r["recs"] == [["echo", "active", "in-process"], ["whoami", "active", "worker"],
                         ["hello-python", "active", "worker"]]
    assert r["sync"] == {"inproc": {"text": "a"}, "isolated": "sam",
                         "python": {"message": "Hello, Ada!", "caller": None}}
    assert r["async_"] == [{"text": "b"}, "kim", {"message": "HELLO, BO!"}]
    assert "hello-python/format" not in r["agents"] and "hello-python/format" in r["private"]
    assert r["packages"] == ["echo", "hello-python", "whoami"]


def test_kwargs_mapping_identity_and_trace(tmp_path):
    r = run_py(tmp_path, """
    with par.Runtime(config()) as rt:
        rt.deploy(ECHO); rt.deploy(WHOAMI)
        res = {
            "kwargs": rt.call("echo", a=1, b=[1, 2], c={"d": None}, e="é"),
            "input_obj": rt.call("echo", input={"not an identifier": 1, "_x": 2}),
            "input_list": rt.call("echo", input=[1, "two"]),
            "input_str": rt.call("echo", input="plain"),
            "input_key": rt.call("echo", input={"input": 5}),
            "empty": rt.call("echo"),
        }
        tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        who = rt.call("whoami/via", _subject="alice", _tenant="acme", _request_id="req-42",
                      _trace_id=tp, _context={"k": "v"})
        plain = rt.call("whoami", _trace_id="my-trace.1")
        errs = {}
        for name, kw in {"mixed": {"input": 1, "x": 2}, "unknown": {"_tiemout": 1},
                         "ctx": {"_context": [1]}, "subj": {"_subject": 5}}.items():
            try:
                rt.call("echo", **kw)
            except TypeError as e:
                errs[name] = str(e)
        try:
            rt.call("echo", _timeout=0)
        except ValueError as e:
            errs["timeout"] = str(e)
        out(res=res, who=who, plain=plain, errs=errs,
            nan=error_of(rt.call, "echo", x=float("nan")),
            badtrace=error_of(rt.call, "echo", _trace_id="not a trace!"),
            badrid=error_of(rt.call, "echo", _request_id="x" * 200))
    """)
    assert r["res"] == {"kwargs": {"a": 1, "b": [1, 2], "c": {"d": None}, "e": "é"},
                        "input_obj": {"not an identifier": 1, "_x": 2},
                        "input_list": [1, "two"], "input_str": "plain",
                        "input_key": {"input": 5}, "empty": {}}
    who = r["who"]
    for view in (who["outer"], who["inner"]):  # the sub-agent call carries it on
        assert view["subject"] == "alice" and view["tenant"] == "acme"
        assert view["request_id"] == "req-42"
        assert view["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert who["outer"]["span_id"] != who["inner"]["span_id"]
    assert r["plain"]["trace_id"] == "my-trace.1" and r["plain"]["subject"] == ""
    assert set(r["errs"]) == {"mixed", "unknown", "ctx", "subj", "timeout"}
    assert "_tiemout" in r["errs"]["unknown"] and "_timeout" in r["errs"]["unknown"]
    assert r["nan"]["cls"] == "InvalidInput" and r["nan"]["name"] == "invalid_json"
    assert r["badtrace"]["cls"] == "InvalidInput" and r["badtrace"]["status"] == 400
    assert "trace_id" in r["badtrace"]["message"]
    assert r["badrid"]["name"] == "invalid_argument"


def test_every_exception_type(tmp_path):
    r = run_py(tmp_path, """
    from par import _par
    fam = {}
    for code, http, name, desc in _par.statuses():
        if code == 0:
            continue
        e = par._error(code, json.dumps({"error": name, "message": "m",
                                         "request_id": "r"}).encode())
        fam[name] = [type(e).__name__, e.status, e.name, e.message, e.request_id, http]
    with par.Runtime(config(limits={"concurrency": 1, "queue": 1})) as rt:
        rt.deploy(ECHO); rt.deploy(FAULTY)
        rt.call("faulty", warm=1)  # its worker is up: calls take slots, not the start queue
        async def busy():
            calls = [rt.acall("faulty/slow", input=500) for _ in range(3)]
            res = await asyncio.gather(*calls, return_exceptions=True)
            return [type(x).__name__ for x in res]
        overloaded = asyncio.run(busy())
        got = {"overloaded": overloaded,
            "agent_not_found": error_of(rt.call, "nope"),
            "private": error_of(rt.call, "faulty/nope"),
            "agent_error": error_of(rt.call, "faulty/fail"),
            "bad_output": error_of(rt.call, "faulty/badjson"),
            "crash": error_of(rt.call, "faulty/crash"),
            "timeout": error_of(rt.call, "faulty/slow", input=3000, _timeout=0.2),
            "package": error_of(rt.deploy, os.path.join(TMP, "missing.apkg")),
            "remove": error_of(rt.remove, "nothing-here"),
            "input": error_of(rt.call, "echo", _request_id="bad id"),
        }
        stuck = {}
        def slow():  # close() waits for a blocking call in flight in another thread
            stuck["sync"] = rt.call("faulty/slow", input=400)
        t = threading.Thread(target=slow)
        t.start()
        async def closing():  # ... and answers an asynchronous one `draining`
            await asyncio.sleep(0.05)  # the blocking call holds the one slot (concurrency 1)
            task = asyncio.ensure_future(rt.acall("faulty/slow", input=1500))
            await asyncio.sleep(0.1)
            rt.close()
            try:
                await task
            except par.Error as e:
                return {"cls": type(e).__name__, "name": e.name}
        got["draining"] = asyncio.run(closing())
    t.join()
    got["sync"] = stuck["sync"]
    try:
        rt.call("echo")
    except ValueError as e:
        got["closed"] = str(e)
    out(fam=fam, got=got)
    """)
    fam, got = r["fam"], r["got"]
    for name, (cls, status, ename, msg, rid, http) in fam.items():
        assert cls != "Error", "%s maps to no family" % name
        assert (status, ename, msg, rid) == (http, name, "m", "r")
    expect = {"agent_not_found": "AgentNotFound", "invalid_json": "InvalidInput",
              "payload_too_large": "TooLarge", "unauthorized": "Unauthorized",
              "forbidden": "Forbidden", "over_capacity": "Overloaded", "agent_error": "AgentError",
              "agent_crashed": "AgentCrashed", "agent_timeout": "Timeout",
              "agent_unavailable": "Unavailable", "draining": "Unavailable",
              "invalid_package": "PackageError", "call_depth_exceeded": "CallDepthExceeded",
              "cancelled": "Cancelled", "internal_error": "InternalError", "conflict": "Conflict",
              "not_found": "NotFound", "run_not_found": "NotFound"}
    for name, cls in expect.items():
        assert fam[name][0] == cls, name
    assert got["agent_not_found"]["cls"] == "AgentNotFound"
    assert got["agent_not_found"]["status"] == 404 and got["agent_not_found"]["request_id"]
    assert got["private"]["cls"] == "AgentNotFound"
    assert got["agent_error"]["cls"] == "AgentError"
    assert "refuses this input" in got["agent_error"]["message"]
    assert got["bad_output"]["name"] == "invalid_agent_output"
    assert got["crash"]["cls"] == "AgentCrashed" and got["crash"]["status"] == 502
    assert got["timeout"]["cls"] == "Timeout" and got["timeout"]["status"] == 504
    assert got["package"]["cls"] == "NotFound" and "missing.apkg" in got["package"]["message"]
    assert got["remove"]["cls"] == "NotFound"
    assert got["input"]["cls"] == "InvalidInput"
    assert sorted(got["overloaded"]) == ["Overloaded", "int", "int"]
    assert got["draining"]["cls"] == "Unavailable" and got["draining"]["name"] == "draining"
    assert "closed" in got["closed"]
    assert got["sync"] == 400


def test_deploy_failure_names_the_reason(tmp_path):
    bad = tmp_path / "bad.apkg"
    bad.write_bytes(b"not a zip")
    r = run_py(tmp_path, """
    with par.Runtime(config()) as rt:
        e = error_of(rt.deploy, os.path.join(TMP, "bad.apkg"))
        out(e=e, pk=[(p["name"], p["state"]) for p in rt.packages()])
    """)
    assert r["e"]["cls"] == "PackageError" and r["e"]["status"] == 422
    assert "ZIP" in r["e"]["message"]
    assert [st for _, st in r["pk"]] == ["failed"]  # listed as a failed deploy, as over HTTP


def test_timeouts_lower_the_deadline_only(tmp_path):
    r = run_py(tmp_path, """
    with par.Runtime(config()) as rt:
        rt.deploy(FAULTY)
        t0 = time.monotonic()
        e = error_of(rt.call, "faulty/slow", input=1500, _timeout=0.25)
        sync_s = time.monotonic() - t0
        async def a():
            t0 = time.monotonic()
            try:
                await rt.acall("faulty/slow", input=1500, _timeout=0.25)
            except par.Timeout as e:
                return time.monotonic() - t0, e.name
        async_s, name = asyncio.run(a())
        # the package's 2 s deadline stays the cap: a longer request cannot raise it
        t0 = time.monotonic()
        capped = error_of(rt.call, "faulty/slow", input=4000, _timeout=60)
        capped_s = time.monotonic() - t0
        ok = rt.call("faulty/slow", input=50, _timeout=5)
    out(e=e, sync_s=sync_s, async_s=async_s, name=name, capped=capped, capped_s=capped_s, ok=ok)
    """)
    assert r["e"]["cls"] == "Timeout"
    assert 0.2 <= r["sync_s"] < 1.2 and 0.2 <= r["async_s"] < 1.2
    assert r["name"] == "agent_timeout"
    assert r["capped"]["cls"] == "Timeout" and 1.8 <= r["capped_s"] < 3.5
    assert r["ok"] == 50


def test_many_threads_many_calls_rss_flat(tmp_path):
    # 16 threads x 10,000 calls (1,000 under the sanitizers, which are ~20x slower)
    n = 1000 if SANITIZE else 10000
    r = run_py(tmp_path, """
    N = %d
    def rss_kb():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    with par.Runtime(config()) as rt:
        rt.deploy(ECHO); rt.deploy(WHOAMI)
        errors = []
        def work(k, calls, agent):
            try:
                for i in range(calls):
                    o = rt.call(agent, k=k, i=i)
                    if agent == "echo" and o != {"k": k, "i": i}:
                        errors.append(o)
            except Exception as e:
                errors.append(repr(e))
        def round_(calls, agent="echo"):
            ts = [threading.Thread(target=work, args=(k, calls, agent)) for k in range(16)]
            for t in ts: t.start()
            for t in ts: t.join()
        round_(N // 10)               # warm up: arenas, caches
        before = rss_kb()
        t0 = time.monotonic()
        round_(N)
        elapsed = time.monotonic() - t0
        after = rss_kb()
        round_(max(N // 50, 20), "whoami")  # the same through a worker pool
        m = rt.metrics()
    ok = [l for l in m.splitlines() if l.startswith('par_inprocess_calls_total{status="ok"}')]
    out(errors=errors[:5], before=before, after=after, elapsed=elapsed, ok=ok)
    """ % n, timeout=900, env_extra={
        # ASan keeps freed blocks in a quarantine (256 MB) to catch late uses:
        # RSS then measures the quarantine, not leaks. Off for this test only.
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:quarantine_size_mb=0:"
                        "thread_local_quarantine_size_kb=0"} if SANITIZE else None)
    assert r["errors"] == []
    total = 16 * (n // 10 + n + max(n // 50, 20))
    assert r["ok"] == ['par_inprocess_calls_total{status="ok"} %d' % total]
    # a leak of even 64 bytes a call would be 10 MB here
    assert r["after"] - r["before"] < 8 * 1024, (r["before"], r["after"])


def test_asyncio_cancellation_takes_the_call_back(tmp_path):
    r = run_py(tmp_path, """
    with par.Runtime(config()) as rt:
        rt.deploy(FAULTY)
        async def main():
            loop = asyncio.get_running_loop()
            ticks = 0
            async def ticker():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1
            tk = asyncio.ensure_future(ticker())
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(rt.acall("faulty/slow", input=1800), 0.3)
            except asyncio.TimeoutError:
                pass
            waited = time.monotonic() - t0
            task = asyncio.ensure_future(rt.acall("faulty/slow", input=1800))
            await asyncio.sleep(0.2)
            task.cancel()
            try:
                await task
                cancelled = False
            except asyncio.CancelledError:
                cancelled = True
            tk.cancel()
            after = await rt.acall("faulty", input={"still": "serving"})
            return waited, cancelled, ticks, after
        waited, cancelled, ticks, after = asyncio.run(main())
        time.sleep(0.1)
        m = [l for l in rt.metrics().splitlines()
             if l.startswith("par_invocations_total") and "faulty/slow" in l]
    out(waited=waited, cancelled=cancelled, ticks=ticks, after=after, m=m)
    """)
    assert r["waited"] < 1.0 and r["cancelled"]
    assert r["ticks"] >= 10  # the loop kept running while calls were in flight
    assert r["after"] == {"still": "serving"}
    assert r["m"] == ['par_invocations_total{agent="faulty/slow",version="0.1.0",'
                      'status="cancelled"} 2']


def test_crashing_worker_is_an_exception_and_the_runtime_keeps_serving(tmp_path):
    r = run_py(tmp_path, """
    with par.Runtime(config()) as rt:
        rt.deploy(FAULTY)
        first = error_of(rt.call, "faulty/crash")
        async def again():
            return await asyncio.gather(rt.acall("faulty/abort"), rt.acall("faulty/exit"),
                                        return_exceptions=True)
        more = [type(e).__name__ for e in asyncio.run(again())]
        after = [rt.call("faulty", n=i) for i in range(3)]
    out(first=first, more=more, after=after)
    """)
    assert r["first"]["cls"] == "AgentCrashed" and r["first"]["name"] == "agent_crashed"
    assert r["more"] == ["AgentCrashed", "AgentCrashed"]
    assert r["after"] == [{"n": 0}, {"n": 1}, {"n": 2}]


@pytest.mark.skipif(SANITIZE, reason="the sanitizer build's module needs the ASan runtime, "
                    "which the sandboxed worker's interpreter does not preload; the normal "
                    "pass runs this test")
def test_python_agent_calling_back_into_the_host_is_refused(tmp_path):
    pkg = tmp_path / "callback-agent"
    (pkg / "src").mkdir(parents=True)
    shutil.copytree(os.path.join(MODULE_DIR, "par"), pkg / "par")
    (pkg / "agent.yaml").write_text(textwrap.dedent("""\
        name: callback-agent
        description: tries to start a runtime of its own from inside a worker
        runtime: python3.11
        entrypoint: src.main:handler
        metadata:
          version: 1.0.0
        """))
    (pkg / "src" / "__init__.py").write_text("")
    (pkg / "src" / "main.py").write_text(textwrap.dedent("""\
        import par

        def handler(input, context):
            try:
                par.Runtime()
            except par.Forbidden as e:
                return {"refused": e.name, "message": e.message}
            return {"refused": None}
        """))
    r = run_py(tmp_path, """
    with par.Runtime(config()) as rt:
        rt.deploy(os.path.join(TMP, "callback-agent"))
        t0 = time.monotonic()
        got = rt.call("callback-agent", _timeout=20)
        async def a():
            return await rt.acall("callback-agent")
        got2 = asyncio.run(a())
        out(got=got, got2=got2, s=time.monotonic() - t0)
    """)
    assert r["got"]["refused"] == "forbidden"
    assert "context.call" in r["got"]["message"]
    assert r["got2"] == r["got"]
    assert r["s"] < 15  # no deadlock: answered long before the deadline


def test_metering_records_subject_and_metrics_count_inprocess_calls(tmp_path):
    r = run_py(tmp_path, """
    import sqlite3
    db = os.path.join(TMP, "usage.db")
    with par.Runtime(config(metering={"enabled": True, "path": db})) as rt:
        rt.deploy(ECHO); rt.deploy(WHOAMI)
        rt.call("whoami", _subject="alice", _tenant="acme", _request_id="meter-1")
        asyncio.run(rt.acall("echo", _subject="bob"))
        error_of(rt.call, "nope")
        m = [l for l in rt.metrics().splitlines() if l.startswith("par_inprocess_calls_total")]
    rows = sqlite3.connect(db).execute(
        "SELECT agent, subject, tenant, request_id, status, units FROM usage ORDER BY seq").fetchall()
    out(rows=rows, m=m)
    """)
    assert r["rows"] == [["whoami", "alice", "acme", "meter-1", "ok", '{"tokens":7}'],
                         ["echo", "bob", None, r["rows"][1][3], "ok", None]]
    assert sorted(r["m"]) == ['par_inprocess_calls_total{status="agent_not_found"} 1',
                              'par_inprocess_calls_total{status="ok"} 2']


def test_configuration_is_checked_like_par_serve(tmp_path):
    (tmp_path / "par.yaml").write_text("state_dir: var\ntrust:\n  require_signatures: false\n"
                                       "isolaton: worker\n")
    (tmp_path / "good.yaml").write_text("state_dir: var2\ntrusted: [echo]\n"
                                        "trust:\n  require_signatures: false\n")
    pk = tmp_path / "pk"
    pk.mkdir()
    shutil.copy(package("echo"), pk)
    r = run_py(tmp_path, """
    res = {}
    res["dict"] = error_of(par.Runtime, {"limits": {"timeout_ms": "soon"}})
    res["file"] = error_of(par.Runtime, os.path.join(TMP, "par.yaml"))
    res["missing"] = error_of(par.Runtime, os.path.join(TMP, "nope.yaml"))
    try:
        par.Runtime(config=42)
    except TypeError as e:
        res["type"] = str(e)
    with par.Runtime(os.path.join(TMP, "good.yaml"), packages=os.path.join(TMP, "pk")) as rt:
        res["pk"] = [(p["name"], p["isolation"]) for p in rt.packages()]
        res["call"] = rt.call("echo", ok=True)
        rt.remove("echo")
        res["gone"] = error_of(rt.call, "echo")
    signed = par.Runtime({"state_dir": os.path.join(TMP, "var3")})
    res["unsigned"] = error_of(signed.deploy, ECHO)
    signed.close()
    res["var2"] = os.path.isdir(os.path.join(TMP, "var2"))
    out(**res)
    """)
    assert r["dict"]["cls"] == "InvalidInput" and "limits.timeout_ms" in r["dict"]["message"]
    assert r["file"]["cls"] == "InvalidInput"
    assert "par.yaml:4" in r["file"]["message"] and "isolation" in r["file"]["message"]
    assert "cannot open" in r["missing"]["message"]
    assert "config" in r["type"]
    assert r["pk"] == [["echo", "in-process"]] and r["call"] == {"ok": True}
    assert r["gone"]["cls"] == "AgentNotFound"
    assert r["unsigned"]["name"] == "signature_missing"  # a configuration requires signatures
    assert r["var2"]  # relative paths in a file are relative to the file


@pytest.mark.skipif(SANITIZE, reason="the venv build links the build's libpar_core.a, which "
                    "in the sanitizer build needs the ASan runtime at link and load time; the "
                    "normal pass runs this test")
def test_fresh_venv_install_imports_and_works(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, timeout=120)
    env = dict(os.environ, PAR_BUILD_DIR=BUILD)
    env.pop("PYTHONPATH", None)
    p = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index",
                        "--no-build-isolation", os.path.join(SOURCE, "python")],
                       capture_output=True, text=True, timeout=300, env=env,
                       cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    r = run_py(tmp_path, """
    assert "site-packages" in par.__file__, par.__file__
    with par.Runtime(config()) as rt:
        rt.deploy(ECHO); rt.deploy(WHOAMI)
        out(file=par.__file__, version=par.__version__, echo=rt.call("echo", v=1),
            who=asyncio.run(rt.acall("whoami", _subject="venv"))["subject"])
    """, python=str(venv / "bin" / "python"))
    assert r["echo"] == {"v": 1} and r["who"] == "venv"
    assert r["version"] == "0.1.0"
    assert os.path.exists(os.path.join(os.path.dirname(r["file"]), "__init__.pyi"))


def test_orchestrator_example_runs(tmp_path):
    env = dict(os.environ, PYTHONPATH=MODULE_DIR, PAR_BUILD_DIR=BUILD)
    if SANITIZE:
        env["LD_PRELOAD"] = asan_runtime()
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0"
    p = subprocess.run(["/usr/bin/python3",
                        os.path.join(SOURCE, "examples", "orchestrator", "orchestrator.py"),
                        "Agents call agents. Agents answer.", "--user", "grace"],
                       capture_output=True, text=True, timeout=180, env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(p.stdout)
    assert report["greeting"] == "Hello, grace!"
    assert report["headline"] == "AGENTS CALL AGENTS"
    assert report["keywords"][0] == "agents" and report["words"] == 5


def test_readme_python_example(tmp_path):
    """The README's Python example, as printed, from a copy of the build's packages."""
    import re
    text = open(os.path.join(SOURCE, "README.md")).read()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) == 1 and len(blocks[0].strip().splitlines()) == 3, blocks
    want = re.search(r"# (\{.*\})", blocks[0]).group(1)
    (tmp_path / "build").symlink_to(BUILD)
    (tmp_path / "example.py").write_text(blocks[0])
    env = dict(os.environ, PYTHONPATH=MODULE_DIR)
    if SANITIZE:
        env["LD_PRELOAD"] = asan_runtime()
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0"
    make_searchable(str(tmp_path))
    p = subprocess.run(["/usr/bin/python3", "example.py"], capture_output=True, text=True,
                       timeout=120, env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == want
