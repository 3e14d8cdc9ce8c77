"""The agents of the runs tests, through a real server: the native `events`
and Python `py-events` fixtures (tests/fixtures/) deploy, and their events are
accepted and dropped in a unary invoke (more than the 64-event window: the
runtime grants credit back), what is not an event is refused to the agent,
and a Python agent iterates a sibling's events (CALL "stream":true,
CALL_EVENT) through the runtime. Runs themselves (HTTP, SSE) are tested in
the runs suites."""
import pytest

from conftest import package


@pytest.fixture(scope="module")
def srv(server_factory):
    return server_factory([package("events"), package("py-events")],
                          expected_errors=[r"handler raised AgentCallError"])


def ok(srv, agent, body):
    r = srv.post(agent, body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["output"]


def test_native_unary_events_are_dropped(srv):
    assert ok(srv, "events", {"input": 500}) == {"emitted": 500}
    assert ok(srv, "events/echo", {"input": [1]}) == [1]


def test_native_invalid_events_are_refused_to_the_agent(srv):
    # PAR_E_INVALID_EVENT for bad JSON, a bad type and an event over 1 MiB
    out = ok(srv, "events/bad", {"input": 0})
    assert out["ok"] == 0
    assert out["json"] == out["type"] == out["size"] != 0


@pytest.mark.parametrize("agent,event_count", [("py-events/gen", 200), ("py-events/agen", 200),
                                               ("py-events/emit", 200),
                                               ("py-events/aemit", 200)])
def test_python_generators_and_emit_unary(srv, agent, event_count):
    assert ok(srv, agent, {"input": event_count}) == {"count": event_count}


def test_python_invalid_events_raise(srv):
    assert ok(srv, "py-events/bad", {"input": 0}) == {
        "type": "ValueError", "json": "TypeError", "size": "ValueError"}


def test_python_silent_then_emits(srv):
    assert ok(srv, "py-events/silent", {"input": 0.2}) == {"after_s": 0.2}
    assert ok(srv, "py-events/asilent", {"input": 0.2}) == {"after_s": 0.2}


@pytest.mark.parametrize("agent", ["py-events/stream-child", "py-events/astream-child"])
def test_python_streams_a_sibling(srv, agent):
    out = ok(srv, agent, {"input": {"agent": "emit", "input": 70}})
    assert out["output"] == {"count": 70}
    assert out["events"] == [["tick", {"i": i}] for i in range(70)]


def test_python_stream_of_a_failing_sibling_raises(srv):
    r = srv.post("py-events/stream-child", {"input": {"agent": "missing", "input": 1}})
    assert r.status_code == 500, r.text
    assert "AgentCallError" in r.json()["message"]
