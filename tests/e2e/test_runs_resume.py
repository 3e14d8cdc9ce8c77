"""The resume battery: many runs, each read by a client that drops its stream at
random points (inside an event too) and resumes by Last-Event-ID until the run
ends. Every event must arrive exactly once and in order: ids 1..N with no gap
or repeat across the resumes, and the agent's own sequence numbers matching,
for each way an agent emits (Python sync and async generators, context.emit,
and par_ctx_emit of a native agent).

runs.memory_events is small, so resumes from early points read the event file.
PAR_RESUME_BATTERY="runs,events" changes the size (default 200 runs × 500
events per kind; 100 × 300 under the sanitizers).
"""
import concurrent.futures
import os
import random
import time

import pytest
import requests

from conftest import SANITIZE
from runs_util import (Stream, check_ids, get_run, native_package, py_runs_package, replay,
                       stream_run, wait_for, write_config)

RUNS, EVENTS = (int(x) for x in os.environ.get(
    "PAR_RESUME_BATTERY", "100,300" if SANITIZE else "200,500").split(","))
SEED = int(os.environ.get("PAR_RESUME_SEED", str(int(time.time()))))

# kind -> (agent, input, event type of the agent's events)
KINDS = {
    "python_sync_generator": ("runspy/sync-gen", {"n": EVENTS}, "data"),
    "python_async_generator": ("runspy/async-gen", {"n": EVENTS}, "data"),
    "python_context_emit": ("runspy/emitter", {"n": EVENTS, "event": "progress"}, "progress"),
    "native_par_ctx_emit": ("runsnative", [EVENTS, 0], "data"),
}


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs-resume")
    conf = write_config(tmp, "limits: {runs_per_subject: 0, max_in_flight: 4096}\n"
                             "runs: {memory_events: 50}\n")
    return server_factory([py_runs_package(tmp), native_package()], args=["--config", conf])


def check_events(evs, agent, inp, etype, run_id=None):
    """The whole event sequence of one run, as the issue defines it."""
    check_ids(evs)
    assert len(evs) == EVENTS + 2, (len(evs), evs[-3:])
    first, last = evs[0], evs[-1]
    assert first.type == "run.started", first
    assert first.data["agent_id"] == agent and first.data["version"], first
    if run_id is not None:
        assert first.data["run_id"] == run_id, first
    for k, e in enumerate(evs[1:-1]):
        assert e.type == etype and e.data == {"i": k}, (k, e)
    assert last.type == "run.completed", last
    assert last.data["run_id"] == first.data["run_id"], last
    assert last.data["output"] == {"emitted": EVENTS}, last
    return first.data["run_id"]


def one_client(base, agent, inp, seed):
    """Starts a run and reads it to the end through random drops; returns the
    run id, the events as received and how many connections it took."""
    rng = random.Random(seed)
    drops = rng.randint(1, 6)
    got, conns = [], 0
    start_with_stream = rng.random() < 0.5
    run_id = None
    if not start_with_stream:
        r = requests.post(f"{base}/agents/{agent}/runs", json={"input": inp}, timeout=30)
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
    while True:
        if run_id is None:
            st = Stream(base, "POST", f"/agents/{agent}/runs/stream", body={"input": inp})
        else:
            after = got[-1].id if got else None
            st = stream_run(base, run_id, after, header=rng.random() < 0.8)
        conns += 1
        assert st.status == 200, (st.status, st.body)
        if drops > 0:
            drops -= 1
            # at least the first event when it is the only way to learn the run id;
            # at most about 5/6 of the whole stream (~36 bytes an event)
            low = 400 if run_id is None else 1
            evs, ended = st.read_until_dropped(rng.randint(low, 30 * EVENTS))
        else:
            evs, ended = list(st.events()), True
        if evs and run_id is None:
            assert evs[0].type == "run.started", evs[0]
            run_id = evs[0].data["run_id"]
        assert run_id is not None, "the first connection gave no run.started"
        # exactly once, in order, across connections
        expect = (got[-1].id if got else 0) + 1
        assert [e.id for e in evs] == list(range(expect, expect + len(evs))), \
            (run_id, expect, [e.id for e in evs][:10])
        got += evs
        if ended:
            assert got and got[-1].type.startswith("run."), (run_id, got[-1:])
            return run_id, got, conns
        if rng.random() < 0.5:
            time.sleep(rng.random() * 0.02)  # the run goes on with nobody listening


@pytest.mark.parametrize("kind", list(KINDS))
def test_resume_battery(srv, kind):
    agent, inp, etype = KINDS[kind]
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=RUNS) as ex:
        futs = [ex.submit(one_client, srv.url, agent, inp, SEED * 1000 + i)
                for i in range(RUNS)]
        results = [f.result() for f in futs]
    wall = time.time() - t0
    conns = sum(c for _, _, c in results)
    print(f"{kind}: {RUNS} runs × {EVENTS} events, {conns} connections, {wall:.1f} s, "
          f"seed {SEED}")
    ids = set()
    for run_id, evs, _ in results:
        assert check_events(evs, agent, inp, etype) == run_id
        ids.add(run_id)
    assert len(ids) == RUNS
    # the runs' records agree; a replay from the start (memory and event file)
    # gives the same sequence as the resumed reads
    for run_id, evs, _ in results[:10]:
        j = get_run(srv.url, run_id)
        assert j["status"] == "succeeded" and j["output"] == {"emitted": EVENTS}, j
        assert j["events"] == EVENTS + 2, j
        again = replay(srv.url, run_id)
        assert [(e.id, e.type, e.raw) for e in again] == [(e.id, e.type, e.raw) for e in evs]
    assert sum(c > 1 for _, _, c in results) == RUNS  # every client resumed at least once


def storm_client(base, i, seed):
    """One of three fates, at a random moment: cancelled by POST /cancel,
    cancelled by its client leaving (on_disconnect: cancel), or read to the
    end by a client that drops and resumes. Returns (fate, run id, events
    seen live)."""
    rng = random.Random(seed)
    fate = ("cancel", "leave", "finish")[i % 3]
    agent, inp, _ = KINDS[list(KINDS)[i % len(KINDS)]]
    # a run to cancel does not end by itself: 100 × the events, 2 ms apart
    if fate != "finish":
        inp = [100 * EVENTS, 2] if isinstance(inp, list) else dict(inp, n=100 * EVENTS, gap_ms=2)
    extra = {"on_disconnect": "cancel"} if fate == "leave" else {}
    st = Stream(base, "POST", f"/agents/{agent}/runs/stream", body=dict({"input": inp}, **extra))
    assert st.status == 200, (st.status, st.body)
    evs, ended = st.read_until_dropped(rng.randint(400, 30 * EVENTS)) if fate != "cancel" \
        else ([], False)
    if fate == "cancel":
        evs = [st.next_event()]
        time.sleep(rng.random() * 0.05)
        r = requests.post(f"{base}/runs/{evs[0].data['run_id']}/cancel", timeout=30)
        assert r.status_code == 202, r.text
        evs += list(st.events())
        return fate, evs[0].data["run_id"], evs
    run_id = evs[0].data["run_id"]
    if fate == "finish" and not ended:
        evs += list(stream_run(base, run_id, evs[-1].id).events())
    return fate, run_id, evs


def test_cancel_and_leave_storm(srv):
    """Cancels, clients leaving with on_disconnect: cancel and resumes, all
    at once on every kind of agent (the runs to cancel would not end for
    minutes): each run ends once, with the status its fate gives, its events
    contiguous and its last event the one of its status."""
    n = RUNS
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
        results = [f.result() for f in
                   [ex.submit(storm_client, srv.url, i, SEED * 7 + i) for i in range(n)]]
    last_type = {"succeeded": "run.completed", "cancelled": "run.cancelled"}
    fates = {}
    for fate, run_id, seen in results:
        check_ids(seen)
        j = get_run(srv.url, run_id) if fate != "leave" else None
        if fate == "leave":  # the cancel follows the client's leaving
            deadline = time.time() + 30
            while (j := get_run(srv.url, run_id))["status"] == "running":
                assert time.time() < deadline, j
                time.sleep(0.05)
        else:
            assert j["status"] in last_type, (fate, j)
        assert j["status"] == ("succeeded" if fate == "finish" else "cancelled"), (fate, j)
        fates.setdefault(fate, []).append(j["status"])
        evs = replay(srv.url, run_id)
        check_ids(evs)
        assert evs[-1].type == last_type[j["status"]], (fate, evs[-1])
        assert j["events"] == len(evs)
        assert [e.raw for e in evs[:len(seen)]] == [e.raw for e in seen]
        if j["status"] == "cancelled":
            assert evs[-1].data["error"] == "cancelled", evs[-1]
    assert {k: len(v) for k, v in fates.items()} == {"cancel": (n + 2) // 3,
                                                      "leave": (n + 1) // 3, "finish": n // 3}
    # nothing is left running, and the runtime still serves
    wait_for(lambda: requests.get(srv.url + "/runtime/health", timeout=30).json()[
        "runs_in_flight"] == 0, timeout=10, what="no run in flight")
    assert one_client(srv.url, "runsnative", [EVENTS, 0], SEED)[1][-1].type == "run.completed"
