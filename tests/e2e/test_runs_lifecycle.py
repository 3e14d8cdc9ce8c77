"""A run's life beyond its HTTP client: it outlives a streaming client that
leaves (or is cancelled with it when asked), a cancel reaches the agent's code
(Python coroutine, sync handler, native agent; a worker that ignores it is
killed after runs.cancel_grace_ms without harming its neighbours), kill -9
leaves it `interrupted` with its events, a reload lets it finish on its
version, SIGTERM ends it with run.interrupted on the live stream, and
/runtime/health tells a platform the node is busy."""
import signal
import time
import uuid

import pytest
import requests

from conftest import Server, assert_error
from runs_util import (Stream, agent_log, check_ids, get_run, native_package, py_runs_package,
                       replay, start_run, stream_run, wait_for, wait_run, write_config)

GRACE_MS = 1000

CONFIG = f"""\
limits: {{runs_per_subject: 0}}
runs: {{cancel_grace_ms: {GRACE_MS}}}
workers: {{min: 2, max: 2}}
"""


@pytest.fixture(scope="module")
def pkgs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs-pkgs")
    return {"py": py_runs_package(tmp), "py2": py_runs_package(tmp, "1.0.1", marker="v2"),
            "native": native_package(), "dir": tmp}


@pytest.fixture(scope="module")
def srv(server_factory, pkgs):
    conf = write_config(pkgs["dir"], CONFIG)
    return server_factory([pkgs["py"], pkgs["native"]], args=["--config", conf])


def read_until(st, pred, limit=10000):
    """Events of `st` up to and including the first for which pred is true."""
    out = []
    for ev in st.events():
        out.append(ev)
        if pred(ev):
            return out
        assert len(out) < limit
    raise AssertionError(f"stream ended before the awaited event: {out[-5:]}")


# ---- disconnect ------------------------------------------------------------------------

def test_background_run_outlives_its_streaming_client(srv):
    st = Stream(srv.url, "POST", "/agents/runspy/emitter/runs/stream",
                body={"input": {"n": 20, "gap_ms": 50}})
    assert st.status == 200 and st.headers["content-type"].startswith("text/event-stream")
    first = read_until(st, lambda e: e.type == "data")
    st.close()
    run_id = first[0].data["run_id"]
    assert first[0].type == "run.started" and first[0].id == 1
    assert get_run(srv.url, run_id)["status"] == "running"
    j = wait_run(srv.url, run_id)
    assert j["status"] == "succeeded", j
    assert j["output"] == {"emitted": 20} and j["events"] == 22, j
    assert j["agent_id"] == "runspy/emitter" and j["version"] == "1.0.0", j
    for k in ("created_at", "started_at", "ended_at"):
        assert isinstance(j[k], str) and j[k].endswith("Z"), j
    evs = replay(srv.url, run_id)
    check_ids(evs)
    assert [e.data for e in evs[1:-1]] == [{"i": i} for i in range(20)]
    assert evs[-1].type == "run.completed" and evs[-1].data["output"] == {"emitted": 20}
    # what the first client saw is what the replay gives
    assert [e.raw for e in first] == [e.raw for e in evs[:len(first)]]


def test_on_disconnect_cancel_cancels(srv):
    tag = uuid.uuid4().hex
    st = Stream(srv.url, "POST", "/agents/runspy/sync-polls/runs/stream",
                body={"input": {"tag": tag}, "on_disconnect": "cancel"})
    assert st.status == 200
    evs = read_until(st, lambda e: e.type == "waiting")
    run_id = evs[0].data["run_id"]
    t0 = time.time()
    st.close()
    j = wait_run(srv.url, run_id, timeout=10)
    assert j["status"] == "cancelled", j
    assert wait_for(lambda: agent_log(srv, "sync handler saw context.cancelled " + tag),
                    what="the handler's log line")
    assert time.time() - t0 < 5
    evs = replay(srv.url, run_id)
    check_ids(evs)
    assert evs[-1].type == "run.cancelled", evs[-1]


def test_invoke_as_event_stream_cancels_on_disconnect(srv):
    tag = uuid.uuid4().hex
    st = Stream(srv.url, "POST", "/agents/runspy/sync-polls/invoke", body={"input": {"tag": tag}})
    assert st.status == 200 and st.headers["content-type"].startswith("text/event-stream")
    evs = read_until(st, lambda e: e.type == "waiting")
    assert evs[0].type == "run.started"
    run_id = evs[0].data["run_id"]
    st.close()
    assert wait_run(srv.url, run_id, timeout=10)["status"] == "cancelled"
    assert wait_for(lambda: agent_log(srv, "sync handler saw context.cancelled " + tag),
                    what="the handler's log line")
    # without the header, invoke is unchanged
    r = requests.post(srv.url + "/agents/runspy/emitter/invoke", json={"input": {"n": 3}},
                      timeout=30)
    assert r.status_code == 200 and r.json()["output"] == {"emitted": 3}, r.text
    assert r.headers["content-type"] == "application/json"


def test_invoke_event_stream_runs_to_completion(srv):
    st = Stream(srv.url, "POST", "/agents/runsnative/invoke", body={"input": [5, 0]})
    evs = list(st.events())
    check_ids(evs)
    assert [e.type for e in evs] == ["run.started"] + ["data"] * 5 + ["run.completed"]
    assert evs[-1].data["output"] == {"emitted": 5} and evs[-1].data["agent_id"] == "runsnative"


# ---- cancel reaches the work -----------------------------------------------------------

CANCELLABLE = {
    "python_coroutine": ("runspy/coro-waits", "coroutine got CancelledError "),
    "python_sync_polling": ("runspy/sync-polls", "sync handler saw context.cancelled "),
    "native_polling": ("runsnative/cancellable", "native agent saw the cancel"),
}


@pytest.mark.parametrize("kind", list(CANCELLABLE))
def test_cancel_reaches_the_work(srv, kind):
    agent, line = CANCELLABLE[kind]
    tag = uuid.uuid4().hex
    inp = {"tag": tag} if agent.startswith("runspy") else 0
    run_id = start_run(srv.url, agent, inp)
    st = stream_run(srv.url, run_id)
    read_until(st, lambda e: e.type == "waiting")
    before = len(agent_log(srv, line))
    t0 = time.time()
    r = requests.post(f"{srv.url}/runs/{run_id}/cancel", timeout=30)
    assert r.status_code == 202, r.text
    # the live stream ends with run.cancelled, right after the waiting event
    rest = list(st.events())
    assert [e.type for e in rest] == ["run.cancelled"], rest
    assert rest[0].id == 3
    j = wait_run(srv.url, run_id, timeout=10)
    assert j["status"] == "cancelled", j
    # the agent's own code saw it, well before the grace would have killed it
    if agent.startswith("runspy"):
        wait_for(lambda: agent_log(srv, line + tag), what=line)
    else:
        wait_for(lambda: len(agent_log(srv, line)) > before, what=line)
    assert time.time() - t0 < GRACE_MS / 1000 + 0.5
    # a second cancel: the run has ended
    assert_error(requests.post(f"{srv.url}/runs/{run_id}/cancel", timeout=30), 409, "run_ended")
    assert requests.get(f"{srv.url}/runs/{run_id}", timeout=30).json()["status"] == "cancelled"


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ignored_cancel_kills_the_worker_after_the_grace(srv):
    """Two workers: the stubborn run holds one; the sibling run and the calls
    go to the other (the pool picks the worker with fewer calls)."""
    stubborn = start_run(srv.url, "runsnative/stubborn", 60)
    st = stream_run(srv.url, stubborn)
    pid_a = read_until(st, lambda e: e.type == "pid")[-1].data["pid"]
    pid_b = requests.post(srv.url + "/agents/runsnative/pid/invoke", json={"input": 0},
                          timeout=30).json()["output"]["pid"]
    assert pid_a != pid_b and alive(pid_a) and alive(pid_b)
    sibling = start_run(srv.url, "runsnative", [40, 50])  # 2 s of events
    sib = stream_run(srv.url, sibling)
    assert sib.next_event().type == "run.started"
    t0 = time.time()
    assert requests.post(f"{srv.url}/runs/{stubborn}/cancel", timeout=30).status_code == 202
    rest = list(st.events())
    assert [e.type for e in rest] == ["run.cancelled"], rest
    # within the grace the worker is left alone, and everything else answers
    time.sleep(GRACE_MS / 1000 / 2)
    assert alive(pid_a)
    r = requests.post(srv.url + "/agents/runsnative/pid/invoke", json={"input": 0}, timeout=30)
    assert r.status_code == 200, r.text
    wait_for(lambda: not alive(pid_a), timeout=10, what="the stubborn worker's end")
    killed_after = time.time() - t0
    assert GRACE_MS / 1000 * 0.9 <= killed_after < GRACE_MS / 1000 + 3, killed_after
    # the sibling run on the other worker finishes whole
    evs = list(sib.events())
    assert evs[-1].type == "run.completed", evs[-3:]
    assert [e.data for e in evs[:-1]] == [{"i": i} for i in range(40)]
    assert alive(pid_b)
    assert wait_run(srv.url, stubborn)["status"] == "cancelled"
    assert wait_run(srv.url, sibling)["status"] == "succeeded"
    # the pool replaced the killed worker: new calls and runs work
    r = requests.post(srv.url + "/agents/runsnative/invoke", json={"input": [2, 0]}, timeout=30)
    assert r.status_code == 200 and r.json()["output"] == {"emitted": 2}, r.text
    again = start_run(srv.url, "runsnative", [3, 0])
    assert wait_run(srv.url, again)["status"] == "succeeded"


# ---- health ----------------------------------------------------------------------------

def test_health_reports_runs_in_flight_and_busy(srv):
    def health():
        r = requests.get(srv.url + "/runtime/health", timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    wait_for(lambda: health()["runs_in_flight"] == 0, what="no run in flight")
    h = health()
    assert h["status"] == "ok" and h["busy"] is False, h
    ids = [start_run(srv.url, "runspy/sync-polls", {"tag": "health"}) for _ in range(2)]
    wait_for(lambda: health()["runs_in_flight"] == 2, what="two runs in flight")
    assert health()["busy"] is True
    for i in ids:
        assert requests.post(f"{srv.url}/runs/{i}/cancel", timeout=30).status_code == 202
    for i in ids:
        wait_run(srv.url, i)
    wait_for(lambda: health()["runs_in_flight"] == 0, what="the runs' end")
    assert health()["busy"] is False


# ---- restarts, reloads, shutdown -------------------------------------------------------

def test_kill_9_mid_run_then_restart_finds_it_interrupted(pkgs, tmp_path):
    tmp = str(tmp_path)
    conf = write_config(tmp_path, CONFIG)
    s = Server(tmp, [pkgs["py"]], args=["--config", conf])
    try:
        run_id = start_run(s.url, "runspy/emitter", {"n": 2000, "gap_ms": 10})
        st = stream_run(s.url, run_id)
        seen = [st.next_event() for _ in range(11)]
        assert seen[0].type == "run.started" and seen[-1].data == {"i": 9}
        time.sleep(0.5)  # the run goes on; its events reach the event file
        s.proc.kill()
        s.proc.wait()
        s.killed = True
        st.close()
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        s.log.close()
    s2 = Server(tmp, [pkgs["py"]], args=["--config", conf])
    try:
        j = get_run(s2.url, run_id)
        assert j["status"] == "interrupted", j
        assert j["error"]["error"] == "interrupted", j
        evs = replay(s2.url, run_id)
        check_ids(evs)
        assert evs[-1].type == "run.interrupted", evs[-1]
        assert evs[-1].data["error"] == "interrupted", evs[-1]
        # every event a client had before the kill is there, unchanged
        assert [e.raw for e in evs[:len(seen)]] == [e.raw for e in seen]
        assert all(e.type == "data" for e in evs[1:-1])
        assert len(evs) >= len(seen) + 1 and j["events"] == len(evs), (len(evs), j)
        # resumable from any point too
        st = stream_run(s2.url, run_id, after=5)
        assert [e.id for e in st.events()] == list(range(6, len(evs) + 1))
        # nothing else is disturbed: a new run works
        r2 = start_run(s2.url, "runspy/emitter", {"n": 3})
        assert wait_run(s2.url, r2)["status"] == "succeeded"
    finally:
        s2.stop()


def test_reload_during_a_stream_finishes_on_the_old_version(server_factory, pkgs):
    conf = write_config(pkgs["dir"], CONFIG)
    s = server_factory([pkgs["py"]], args=["--config", conf])
    st = Stream(s.url, "POST", "/agents/runspy/version/runs/stream",
                body={"input": {"n": 15, "gap_ms": 100}})
    evs = read_until(st, lambda e: e.type == "data")
    assert evs[0].data["version"] == "1.0.0"
    r = requests.post(s.url + "/runtime/packages", json={"path": pkgs["py2"]}, timeout=120)
    assert r.status_code == 201 and r.json()["version"] == "1.0.1", r.text
    # new calls get the new code at once …
    r = requests.post(s.url + "/agents/runspy/version/invoke",
                      json={"input": {"n": 0, "gap_ms": 0}}, timeout=30)
    assert r.json()["output"] == {"code": "v2"}, r.text
    # … while the stream started before goes on with the old one, to its end
    evs += list(st.events())
    check_ids(evs)
    assert [e.data for e in evs[1:-1]] == [{"i": i, "code": "1.0.0"} for i in range(15)]
    done = evs[-1]
    assert done.type == "run.completed", done
    assert done.data["output"] == {"code": "1.0.0"}, done
    assert done.data["metadata"]["version"] == "1.0.0", done
    assert get_run(s.url, done.data["run_id"])["version"] == "1.0.0"
    # and once it ended, a new run is on the new version
    r = start_run(s.url, "runspy/version", {"n": 1, "gap_ms": 0})
    j = wait_run(s.url, r)
    assert j["version"] == "1.0.1" and j["output"] == {"code": "v2"}, j


def test_sigterm_during_a_run_sends_run_interrupted(pkgs, tmp_path):
    tmp = str(tmp_path)
    conf = write_config(tmp_path, CONFIG + "shutdown: {grace_ms: 300, drain_ms: 2000}\n")
    s = Server(tmp, [pkgs["py"]], args=["--config", conf])
    try:
        st = Stream(s.url, "POST", "/agents/runspy/emitter/runs/stream",
                    body={"input": {"n": 100000, "gap_ms": 10}})
        evs = read_until(st, lambda e: e.type == "data" and e.data["i"] == 5)
        run_id = evs[0].data["run_id"]
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        evs += list(st.events())
        check_ids(evs)
        last = evs[-1]
        assert last.type == "run.interrupted", evs[-3:]
        assert last.data["error"] == "interrupted" and last.data["message"], last
        assert time.time() - t0 < 10
        assert s.proc.wait(timeout=30) == 0
    finally:
        s.stop()
    # after the restart the run is interrupted, with the same events
    s2 = Server(tmp, [pkgs["py"]], args=["--config", conf])
    try:
        j = get_run(s2.url, run_id)
        assert j["status"] == "interrupted" and j["events"] == len(evs), j
        assert [e.raw for e in replay(s2.url, run_id)] == [e.raw for e in evs]
    finally:
        s2.stop()


# ---- deadlines, drains, retention, flow control ----------------------------------------

def test_run_timeout_is_the_runs_own_deadline(server_factory, pkgs):
    (pkgs["dir"] / "timeout").mkdir()
    conf = write_config(pkgs["dir"] / "timeout", "limits: {run_timeout_ms: 1500}\n")
    s = server_factory([pkgs["native"]], args=["--config", conf])
    # a run past limits.run_timeout_ms fails agent_timeout, its clients told
    t0 = time.time()
    st = Stream(s.url, "POST", "/agents/runsnative/silent/runs/stream", body={"input": 60000})
    evs = list(st.events())
    took = time.time() - t0
    check_ids(evs)
    assert [e.type for e in evs] == ["run.started", "run.failed"], evs
    assert evs[-1].data["error"] == "agent_timeout", evs[-1]
    assert 1.4 < took < 5, took
    j = get_run(s.url, evs[0].data["run_id"])
    assert j["status"] == "failed" and j["error"]["error"] == "agent_timeout", j
    # within it, a run finishes; and a unary call keeps the package's deadline
    r = start_run(s.url, "runsnative/silent", 500)
    assert wait_run(s.url, r)["status"] == "succeeded"
    resp = requests.post(s.url + "/agents/runsnative/silent/invoke", json={"input": 2000},
                         timeout=30)
    assert resp.status_code == 200 and resp.json()["output"] == "spoke", resp.text


@pytest.mark.parametrize("unary_drain", [
    "drain_ms: 300, ",
    "",
], ids=["unary_drain_shorter", "unary_drain_default"])
def test_reload_drain_deadline_interrupts_the_old_versions_runs(server_factory, pkgs,
                                                                unary_drain):
    d = pkgs["dir"] / ("drain" + str(len(unary_drain)))
    d.mkdir()
    conf = write_config(d, "reload: {" + unary_drain + "run_drain_ms: 1000}\n")
    s = server_factory([pkgs["py"]], args=["--config", conf])
    tag = uuid.uuid4().hex
    st = Stream(s.url, "POST", "/agents/runspy/sync-polls/runs/stream",
                body={"input": {"tag": tag}}, timeout=8)  # a read waits 8 s at most
    evs = read_until(st, lambda e: e.type == "waiting")
    assert evs[0].data["version"] == "1.0.0"
    r = requests.post(s.url + "/runtime/packages", json={"path": pkgs["py2"]}, timeout=120)
    assert r.status_code == 201, r.text
    t0 = time.time()
    evs += list(st.events())
    took = time.time() - t0
    check_ids(evs)
    assert evs[-1].type == "run.interrupted", evs[-3:]
    assert evs[-1].data["error"] == "interrupted", evs[-1]
    assert 0.8 < took < 6, took
    j = get_run(s.url, evs[0].data["run_id"])
    assert j["status"] == "interrupted" and j["version"] == "1.0.0", j
    # the new version serves runs
    r2 = start_run(s.url, "runspy/version", {"n": 1, "gap_ms": 0})
    assert wait_run(s.url, r2)["output"] == {"code": "v2"}


def test_retention_expires_a_runs_events_then_the_run(server_factory, pkgs):
    (pkgs["dir"] / "retention").mkdir()
    conf = write_config(pkgs["dir"] / "retention", "runs: {retention: 1}\n")
    s = server_factory([pkgs["native"]], args=["--config", conf])
    run_id = start_run(s.url, "runsnative", [3, 0])
    assert wait_run(s.url, run_id)["status"] == "succeeded"
    assert len(replay(s.url, run_id)) == 5
    # past runs.retention: the events are gone (410), the record stays a while
    wait_for(lambda: stream_run(s.url, run_id, after=0).status == 410, timeout=10,
             what="run_expired")
    st = stream_run(s.url, run_id, after=0)
    assert st.status == 410 and st.json()["error"] == "run_expired", st.body
    j = get_run(s.url, run_id)
    assert j["status"] == "succeeded" and j["events"] == 5, j
    # then the run itself goes
    wait_for(lambda: requests.get(f"{s.url}/runs/{run_id}", timeout=30).status_code == 404,
             timeout=10, what="the run's removal")
    assert_error(requests.get(f"{s.url}/runs/{run_id}", timeout=30), 404, "run_not_found")
    # others are untouched
    assert wait_run(s.url, start_run(s.url, "runsnative", [1, 0]))["status"] == "succeeded"


def test_a_client_that_does_not_read_holds_the_agent_back(server_factory, pkgs):
    """Flow control: the agent emits 64 KB events as fast as it may; a live
    client that reads nothing stops it once the buffers on the way are full,
    well before its last event, and it finishes once the client reads."""
    (pkgs["dir"] / "flow").mkdir()
    conf = write_config(pkgs["dir"] / "flow", "runs: {memory_events: 16}\n")
    s = server_factory([pkgs["py"]], args=["--config", conf])
    n = 600  # 38 MB of events
    run_id = start_run(s.url, "runspy/emitter", {"n": n, "pad": 65536, "gap_ms": 0})
    st = stream_run(s.url, run_id, after=0)
    assert st.status == 200
    # the count stops growing (two reads a second apart agree) while running
    counts = [get_run(s.url, run_id)["events"]]
    deadline = time.time() + 30
    while True:
        time.sleep(1)
        j = get_run(s.url, run_id)
        assert j["status"] == "running", j
        counts.append(j["events"])
        if counts[-1] == counts[-2]:
            break
        assert time.time() < deadline, counts
    held = counts[-1]
    assert held < n / 2, counts
    evs = list(st.events())
    check_ids(evs)
    assert len(evs) == n + 2 and evs[-1].type == "run.completed", len(evs)
    assert [e.data["i"] for e in evs[1:-1]] == list(range(n))
