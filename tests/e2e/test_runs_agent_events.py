"""Bad events from agents: each a named error, nothing else disturbed.

- a native agent handing par_ctx_emit bytes that are not one JSON value, a
  bad type or an event over runs.max_event_kb gets PAR_E_INVALID_EVENT back,
  and its run goes on (the valid event after them is delivered);
- a worker that sends an EVENT frame whose body is not JSON, or is over the
  cap, fails that run with `invalid_agent_event` (run.failed on the stream);
- a private sub-agent cannot be started as a run.
Neighbour runs and calls keep working throughout.
"""
import threading

import pytest
import requests

from conftest import assert_error
from runs_util import (Stream, check_ids, get_run, native_package, py_runs_package, replay,
                       start_run, stream_run, wait_run, write_config)

MAX_EVENT_KB = 4


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs-bad-events")
    conf = write_config(tmp, f"runs: {{max_event_kb: {MAX_EVENT_KB}}}\n")
    return server_factory([py_runs_package(tmp), native_package()], args=["--config", conf])


class Neighbour:
    """A run on the native package emitting all along, read by a live client."""

    def __init__(self, srv):
        self.run_id = start_run(srv.url, "runsnative", [60, 25])  # 1.5 s
        self.st = stream_run(srv.url, self.run_id)
        self.evs = []
        self.t = threading.Thread(target=lambda: self.evs.extend(self.st.events()))
        self.t.start()

    def check(self):
        self.t.join(30)
        check_ids(self.evs)
        assert self.evs[-1].type == "run.completed", self.evs[-3:]
        assert [e.data for e in self.evs[1:-1]] == [{"i": i} for i in range(60)]


def unharmed(srv):
    r = requests.post(srv.url + "/agents/runspy/emitter/invoke", json={"input": {"n": 2}},
                      timeout=30)
    assert r.status_code == 200 and r.json()["output"] == {"emitted": 2}, r.text
    r = requests.post(srv.url + "/agents/runsnative/invoke", json={"input": [2, 0]}, timeout=30)
    assert r.status_code == 200 and r.json()["output"] == {"emitted": 2}, r.text
    assert wait_run(srv.url, start_run(srv.url, "runspy/sync-gen", {"n": 3}))["status"] == \
        "succeeded"


def test_native_emit_of_invalid_events_returns_an_error(srv):
    nb = Neighbour(srv)
    st = Stream(srv.url, "POST", "/agents/runsnative/badevents/runs/stream",
                body={"input": MAX_EVENT_KB})
    evs = list(st.events())
    check_ids(evs)
    # only the valid events became events of the run; one of exactly the cap is valid
    assert [e.type for e in evs] == ["run.started", "cap", "fine", "run.completed"], evs
    assert evs[1].data == "x" * (MAX_EVENT_KB * 1024 - 2)
    assert evs[2].data == {"still": "working"}
    assert evs[3].data["output"] == {
        "not_json": "invalid_agent_event", "two_values": "invalid_agent_event",
        "bad_type": "invalid_agent_event", "at_cap": "ok", "oversized": "invalid_agent_event",
        "valid": "ok"}
    nb.check()
    unharmed(srv)


@pytest.mark.parametrize("what", ["not_json", "oversized"])
def test_worker_sending_a_bad_event_fails_the_run(srv, what):
    nb = Neighbour(srv)
    st = Stream(srv.url, "POST", "/agents/runspy/raw-event/runs/stream", body={"input": what})
    evs = list(st.events())
    check_ids(evs)
    assert [e.type for e in evs] == ["run.started", "run.failed"], evs
    body = evs[-1].data
    assert body["error"] == "invalid_agent_event" and body["message"], body
    run_id = evs[0].data["run_id"]
    j = get_run(srv.url, run_id)
    assert j["status"] == "failed" and j["error"]["error"] == "invalid_agent_event", j
    assert [e.raw for e in replay(srv.url, run_id)] == [e.raw for e in evs]
    nb.check()
    unharmed(srv)


def test_python_emit_over_the_cap_is_refused(srv):
    """context.emit of a value over runs.max_event_kb raises ValueError in the
    handler (docs/python-agents.md), which goes on; nothing of it reaches the
    run's clients."""
    st = Stream(srv.url, "POST", "/agents/runspy/emit-big/runs/stream",
                body={"input": MAX_EVENT_KB + 1})
    evs = list(st.events())
    check_ids(evs)
    assert [e.type for e in evs] == ["run.started", "data", "run.completed"], evs
    assert evs[1].data == {"after": "refusal"}
    out = evs[-1].data["output"]
    assert out["raised"] == "ValueError" and "runs.max_event_kb" in out["message"], out
    unharmed(srv)


def test_private_sub_agent_cannot_be_a_run(srv):
    for path in ("/agents/runsnative/private/runs", "/agents/runsnative/private/runs/stream",
                 "/agents/runsnative/private/runs/wait"):
        assert_error(requests.post(srv.url + path, json={"input": [1, 0]}, timeout=30), 404,
                     "agent_not_found")
    # nor streamed through invoke
    r = requests.post(srv.url + "/agents/runsnative/private/invoke", json={"input": [1, 0]},
                      headers={"Accept": "text/event-stream"}, timeout=30)
    assert_error(r, 404, "agent_not_found")
    unharmed(srv)
