"""rt.stream / rt.astream (docs/python-embedding.md): a run's events in the
Python host, over par_stream_start (include/par/par.h). Scenarios run in a
fresh interpreter, as in test_python_embed.py."""
import textwrap

from conftest import package
import test_python_embed
from test_python_embed import run_py

pytestmark = test_python_embed.pytestmark  # skipped when the module is not built

STREAM_PRELUDE = """
EVENTS = %r
PYEV = %r
def evs(it):
    return [(e.id, e.event, e.data) for e in it]
"""


def run_stream(tmp_path, body, **kw):
    return run_py(tmp_path, STREAM_PRELUDE % (package("events"), package("py-events")) +
                  textwrap.dedent(body),
                  **kw)


def test_events_in_order_from_python_and_native_agents(tmp_path):
    r = run_stream(tmp_path, """
    with par.Runtime(config()) as rt:
        rt.deploy(EVENTS); rt.deploy(PYEV); rt.deploy(ECHO)
        py = evs(rt.stream("py-events/gen", input=3))
        native = evs(rt.stream("events", input=2, _subject="sam"))
        inproc = evs(rt.stream("echo", text="hi"))
        async def main():
            return [(e.id, e.event, e.data) async for e in rt.astream("py-events/agen", input=2)]
        a = asyncio.run(main())
        out(py=py, native=native, inproc=inproc, a=a)
    """)
    py = r["py"]
    assert [e[0] for e in py] == [1, 2, 3, 4, 5]
    assert py[0][1] == "run.started" and py[0][2]["agent_id"] == "py-events/gen"
    assert [e[1:] for e in py[1:4]] == [["data", {"i": 0}], ["data", {"i": 1}],
                                       ["data", {"i": 2}]]
    assert py[4][1] == "run.completed" and py[4][2]["output"] == {"count": 3}
    assert py[4][2]["run_id"] == py[0][2]["run_id"]
    nat = r["native"]
    assert [e[1] for e in nat] == ["run.started", "tick", "tick", "run.completed"]
    assert [e[2] for e in nat[1:3]] == [{"i": 0}, {"i": 1}]
    assert nat[3][2]["output"] == {"emitted": 2}
    assert [e[1] for e in r["inproc"]] == ["run.started", "run.completed"]
    assert r["inproc"][1][2]["output"] == {"text": "hi"}
    assert [e[1:] for e in r["a"][1:3]] == [["data", {"i": 0}], ["data", {"i": 1}]]
    assert r["a"][-1][1] == "run.completed"


def test_errors_map_to_exceptions(tmp_path):
    r = run_stream(tmp_path, """
    with par.Runtime(config()) as rt:
        rt.deploy(FAULTY); rt.deploy(PYEV)
        def drain(*a, **kw):
            seen = []
            try:
                for e in rt.stream(*a, **kw):
                    seen.append(e.event)
            except par.Error as e:
                return seen, {"cls": type(e).__name__, "name": e.name, "status": e.status}
            return seen, None
        out(missing=error_of(lambda: rt.stream("nope")),
            fail=drain("faulty/fail"), crash=drain("faulty/crash"),
            timeout=drain("py-events/slow-gen", input=30, _timeout=0.5),
            badopt=error_of(lambda: rt.stream("faulty", _trace_id="bad id!")))
    """)
    assert r["missing"]["cls"] == "AgentNotFound" and r["missing"]["status"] == 404
    assert r["fail"][0] == ["run.started"] and r["fail"][1]["cls"] == "AgentError"
    assert r["crash"][1]["cls"] == "AgentCrashed"
    assert r["timeout"][1]["cls"] == "Timeout"
    assert r["badopt"]["cls"] == "InvalidInput"


def test_early_close_and_asyncio_cancel_cancel_the_run(tmp_path):
    r = run_stream(tmp_path, """
    with par.Runtime(config()) as rt:
        rt.deploy(PYEV)
        it = rt.stream("py-events/slow-gen", input=30)
        first = next(it)
        run_id = first.data["run_id"]
        t0 = time.time()
        it.close()
        closed_in = time.time() - t0
        # the run is over: a new stream of the same agent works at once
        again = [e.event for e in rt.stream("py-events/gen", input=1)]
        async def main():
            got = []
            async def consume():
                async for e in rt.astream("py-events/slow-agen", input=30):
                    got.append(e.event)
            t = asyncio.ensure_future(consume())
            while len(got) < 2:
                await asyncio.sleep(0.02)
            t.cancel()
            try:
                await t
            except asyncio.CancelledError:
                pass
            return got
        got = asyncio.run(main())
        m = rt.metrics()
        out(first=first.event, closed_in=closed_in, again=again, got=got,
            cancelled=[l for l in m.splitlines() if l.startswith("par_runs") and "cancel" in l])
    """)
    assert r["first"] == "run.started"
    assert r["closed_in"] < 10
    assert r["again"][-1] == "run.completed"
    assert r["got"][:1] == ["run.started"]
    assert r["cancelled"], "no cancelled runs counted"


def test_slow_consumer_holds_the_agent_back(tmp_path):
    r = run_stream(tmp_path, """
    def rss_kb():  # the current resident size (ru_maxrss is a high-water mark)
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    with par.Runtime(config()) as rt:
        rt.deploy(EVENTS)
        sum(1 for _ in rt.stream("events", input=1000))  # warm: the worker is up
        rss0 = rss_kb()
        it = rt.stream("events", input=200000)
        next(it); next(it)
        # unheld, the agent emits 200000 events (~15 MB queued here) in ~3 s
        time.sleep(3)
        rss1 = rss_kb()
        n = 2
        last = None
        for e in it:
            n += 1
            last = e
        out(n=n, last=last.event, out_=last.data["output"], grow_kb=rss1 - rss0)
    """, timeout=300)
    assert r["n"] == 200002 and r["last"] == "run.completed"
    assert r["out_"] == {"emitted": 200000}
    assert r["grow_kb"] < 8192, r
