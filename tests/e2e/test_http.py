"""The HTTP API of `par serve` against the echo example and the faulty fixture."""
import concurrent.futures
import os
import re
import signal
import threading
import time

import pytest
import requests

from conftest import assert_error, package


@pytest.fixture(scope="module")
def srv(server_factory):
    return server_factory([package("echo"), package("faulty")])


def test_health_ready_info(srv):
    assert srv.get("/runtime/health").json() == {"status": "ok", "runs_in_flight": 0, "busy": False}
    assert srv.get("/runtime/ready").json() == {"status": "ready"}
    info = srv.get("/runtime/info").json()
    assert info["name"] == "par"
    assert info["packages"]["active"] == 2
    assert info["agents"] >= 3


def test_invoke_envelope(srv):
    r = srv.post("echo", {"input": {"text": "hi"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["agent_id"] == "echo"
    assert body["output"] == {"text": "hi"}
    assert body["duration_ms"] >= 0
    assert re.search(r',"duration_ms":\d+\.\d{3},', r.text)  # milliseconds, microsecond resolution
    assert set(body) == {"agent_id", "output", "duration_ms", "trace_id", "metadata"}
    assert len(body["trace_id"]) == 32
    assert body["metadata"]["package"] == "echo"
    assert body["metadata"]["version"] == "1.0.0"
    assert body["metadata"]["request_id"] == r.headers["x-request-id"]


def test_invoke_bare_value(srv):
    assert srv.post("echo", [1, 2, {"a": None}]).json()["output"] == [1, 2, {"a": None}]
    assert srv.post("echo", {"text": "no envelope"}).json()["output"] == {"text": "no envelope"}
    assert srv.post("echo", raw=' "s" ').json()["output"] == "s"


def test_request_id_and_trace(srv):
    r = srv.post("echo", {"input": 1}, headers={"X-Request-ID": "my-req-42"})
    assert r.headers["x-request-id"] == "my-req-42"
    assert r.json()["metadata"]["request_id"] == "my-req-42"
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert srv.post("echo", {"input": 1}, headers={"traceparent": tp}).json()["trace_id"] == \
        "4bf92f3577b34da6a3ce929d0e0e4736"
    assert srv.post("echo", {"input": 1, "trace_id": "abc123"}).json()["trace_id"] == "abc123"
    # a hostile request id is replaced, not echoed
    r = srv.post("echo", {"input": 1}, headers={"X-Request-ID": "bad id\"<>"})
    assert r.headers["x-request-id"] != "bad id\"<>"
    assert len(r.headers["x-request-id"]) == 32


def test_sub_agent_and_private(srv):
    r = srv.post("echo/shout", {"input": {"text": "hi", "n": 1}})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == {"text": "HI", "n": 1}
    assert r.json()["metadata"]["units"] == {"characters": len('{"text": "hi", "n": 1}')}
    private = assert_error(srv.post("echo/upper", {"input": {"text": "x"}}), 404,
                           "agent_not_found")
    unknown = assert_error(srv.post("nope/upper", {"input": {"text": "x"}}), 404,
                           "agent_not_found")
    assert private["message"].replace("echo", "nope") == unknown["message"]
    assert_error(srv.get("/agents/echo/upper"), 404, "agent_not_found")


def test_version_pins(srv):
    r = srv.post("echo@1.0.0", {"input": "pinned"})
    assert r.status_code == 200 and r.json()["output"] == "pinned"
    assert srv.post("echo@1.0.0/shout", {"input": {"t": "a"}}).json()["output"] == {"t": "A"}
    assert_error(srv.post("echo@9.9.9", {"input": 1}), 404, "agent_not_found")
    assert_error(srv.post("echo@1.0.0/upper", {"input": {}}), 404, "agent_not_found")
    assert_error(srv.post("Bad..id", {"input": 1}), 404, "agent_not_found")


def test_listings(srv):
    agents = srv.get("/agents").json()["agents"]
    ids = {a["id"] for a in agents}
    assert {"echo", "echo/shout", "faulty", "faulty/crash"} <= ids
    assert "echo/upper" not in ids
    assert all("@" not in i for i in ids)
    one = srv.get("/agents/echo").json()
    assert one["id"] == "echo" and one["description"] == "Returns its input unchanged."
    assert_error(srv.get("/agents/nope"), 404, "agent_not_found")
    pk = srv.get("/runtime/packages").json()["packages"]
    echo = next(p for p in pk if p["name"] == "echo")
    assert echo["state"] == "active" and len(echo["sha256"]) == 64
    assert echo["isolation"] == "worker"
    assert echo["workers"] and echo["workers"][0]["state"] == "ready"
    assert {e["id"] for e in echo["exports"]} == {"echo", "echo/shout", "echo/upper"}
    assert set(echo["timings_ms"]) == {"fetch", "verify", "extract", "load"}
    assert srv.get("/runtime/packages/echo").json()["version"] == "1.0.0"
    assert_error(srv.get("/runtime/packages/nope"), 404, "not_found")


def test_bad_requests(srv):
    before = srv.post("echo", {"input": "ok"}).json()["output"]
    assert_error(srv.post("echo", raw='{"input": '), 400, "invalid_json")
    assert_error(srv.post("echo", raw="{'single': 1}"), 400, "invalid_json")
    assert_error(srv.post("echo", raw=""), 400, "invalid_json")
    assert_error(srv.post("echo", raw="[" * 500 + "]" * 500), 400, "invalid_json")
    assert_error(srv.post("echo", {"input": 1, "context": 5}), 400, "bad_request")
    big = '{"input": "' + "x" * (2 << 20) + '"}'
    assert_error(srv.post("echo", raw=big), 413, "payload_too_large")
    assert_error(requests.get(srv.url + "/agents/echo/invoke"), 405, "method_not_allowed")
    assert_error(srv.get("/nothing/here"), 404, "not_found")
    assert_error(requests.delete(srv.url + "/agents"), 405, "method_not_allowed")
    # nothing else changed
    assert srv.post("echo", {"input": "ok"}).json()["output"] == before
    assert srv.get("/runtime/ready").status_code == 200


def test_deploy_path_must_be_absolute(srv):
    """The server does not resolve a relative "path" against its own working
    directory (here, the directory holding packages/echo-1.0.0.apkg)."""
    r = requests.post(srv.url + "/runtime/packages", timeout=30,
                      json={"path": "packages/echo-1.0.0.apkg"})
    body = assert_error(r, 400, "bad_request")
    assert "must be absolute" in body["message"], body
    r = requests.post(srv.url + "/runtime/packages", timeout=30,
                      json={"path": os.path.join(srv.pkgdir, "echo-1.0.0.apkg")})
    assert r.status_code == 201, r.text


def test_agent_errors(srv):
    b = assert_error(srv.post("faulty/fail", {"input": 1}), 500, "agent_error")
    assert b["message"] == "the faulty agent refuses this input"
    assert_error(srv.post("faulty/badjson", {"input": 1}), 502, "invalid_agent_output")
    b = assert_error(srv.post("faulty/huge", {"input": 20}), 502, "output_too_large")
    assert "16777216" in b["message"]
    assert srv.post("faulty/huge", {"input": 1}).status_code == 200
    assert srv.post("faulty", {"input": "still fine"}).json()["output"] == "still fine"


@pytest.mark.parametrize("export", ["crash", "abort", "exit"])
def test_worker_death_is_502_and_recovers(srv, export):
    b = assert_error(srv.post("faulty/" + export, {"input": 1}), 502, "agent_crashed")
    assert "died" in b["message"]
    # the runtime and other packages keep serving; the package itself recovers
    assert srv.get("/runtime/health").status_code == 200
    assert srv.post("echo", {"input": "other"}).json()["output"] == "other"
    deadline = time.time() + 10
    while True:
        r = srv.post("faulty", {"input": "back"})
        if r.status_code == 200:
            break
        assert time.time() < deadline, r.text
        time.sleep(0.05)
    assert r.json()["output"] == "back"


def test_kill_segv_mid_request(srv):
    pid = srv.post("faulty/pid", {"input": None}).json()["output"]
    assert isinstance(pid, int) and pid != os.getpid()
    result = {}

    def slow():
        result["r"] = srv.post("faulty/slow", {"input": 3000})

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGSEGV)
    t.join(20)
    b = assert_error(result["r"], 502, "agent_crashed")
    assert "signal 11" in b["message"]
    r = srv.post("faulty", {"input": "after"})
    assert r.status_code == 200 and r.json()["output"] == "after"
    assert srv.post("faulty/pid", {"input": None}).json()["output"] != pid
    restarts = srv.get("/runtime/packages/faulty").json()["restarts"]
    assert restarts >= 1


def test_timeout(srv):
    t0 = time.time()
    b = assert_error(srv.post("faulty/slow", {"input": 5000}, headers={"X-Par-Timeout-Ms": "300"}),
                     504, "agent_timeout")
    assert time.time() - t0 < 3
    assert "deadline" in b["message"]
    r = srv.post("faulty/slow", {"input": 10})
    assert r.status_code == 200 and r.json()["output"] == 10


def test_concurrent_200(srv):
    def one(i):
        r = srv.post("echo/shout" if i % 2 else "echo", {"input": {"i": i, "text": f"t{i}"}})
        return i, r.status_code, r.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=200) as ex:
        results = list(ex.map(one, range(200)))
    for i, status, body in results:
        assert status == 200, body
        assert body["output"] == {"i": i, "text": (f"T{i}" if i % 2 else f"t{i}")}


def test_access_log_lines(srv):
    srv.post("echo", {"input": 1}, headers={"X-Request-ID": "log-check-1"})
    time.sleep(0.2)
    lines = [l for l in srv.lines() if l.get("request_id") == "log-check-1"]
    assert lines, "no log line for the request"
    l = lines[-1]
    assert l["msg"] == "request" and l["status"] == 200 and l["agent"] == "echo"
    assert l["level"] == "info" and l["ts"].endswith("Z")


def test_in_process_trusted(server_factory):
    s = server_factory([package("echo")], args=["--trusted", "echo"])
    pk = s.get("/runtime/packages/echo").json()
    assert pk["isolation"] == "in-process"
    assert s.post("echo", {"input": {"a": "b"}}).json()["output"] == {"a": "b"}
    assert s.post("echo/shout", {"input": {"a": "b"}}).json()["output"] == {"a": "B"}
    assert_error(s.post("echo/upper", {"input": {}}), 404, "agent_not_found")


def test_workers_inherit_no_runtime_descriptors(srv):
    pid = srv.post("faulty/pid", {"input": None}).json()["output"]
    fds = sorted(int(f) for f in os.listdir(f"/proc/{pid}/fd"))
    # stdin (/dev/null), stdout+stderr (the output pipe), the protocol socket
    assert fds[:4] == [0, 1, 2, 3], fds
    targets = [os.readlink(f"/proc/{pid}/fd/{f}") for f in fds[4:]]
    assert all(not t.startswith(("socket:", "pipe:")) for t in targets), targets


def test_slow_request_does_not_hold_up_its_worker(server_factory, tmp_path):
    """A worker runs the first request it reads on its reading thread. When that
    request takes long, reading and the rest of its queue move to other threads:
    requests that arrive behind a slow one on the same (single) worker are answered
    while it still runs."""
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n"
                    "workers: {min: 1, max: 1}\n")
    s = server_factory([package("faulty")], args=["--config", str(conf)])
    assert len(s.get("/runtime/packages/faulty").json()["workers"]) == 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
        started = time.monotonic()
        slow = ex.submit(s.post, "faulty/slow", {"input": 1500})
        time.sleep(0.2)
        for i in range(20):
            r = s.post("faulty", {"input": {"i": i}})
            assert r.status_code == 200, r.text
        fast_done = time.monotonic() - started
        assert not slow.done(), "the slow request ended before the fast ones were sent"
        r = slow.result(timeout=10)
        assert r.status_code == 200 and r.json()["output"] == 1500
    assert fast_done < 1.4, f"fast requests waited for the slow one ({fast_done:.2f} s)"
    assert len(s.get("/runtime/packages/faulty").json()["workers"]) == 1


def test_sibling_calls_on_a_single_worker(server_factory, tmp_path):
    """shout calls its private sibling upper, which lands on the same worker: the
    thread waiting for the answer must not be the only one that could read it."""
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n"
                    "workers: {min: 1, max: 1}\n")
    s = server_factory([package("echo")], args=["--config", str(conf)])

    def one(i):
        r = s.post("echo/shout", {"input": {"text": f"t{i}"}})
        return i, r.status_code, r.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
        results = list(ex.map(one, range(200)))
    for i, status, body in results:
        assert status == 200, body
        assert body["output"] == {"text": f"T{i}"}
    assert len(s.get("/runtime/packages/echo").json()["workers"]) == 1


def test_slow_in_process_call_does_not_hold_up_others(server_factory):
    """Trusted packages' calls share the in-process executor, which takes the calls
    of one loop turn together: a call queued behind a slow one gets another thread."""
    s = server_factory([package("faulty")], args=["--trusted", "faulty"])
    assert s.get("/runtime/packages/faulty").json()["isolation"] == "in-process"
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
        started = time.monotonic()
        slows = [ex.submit(s.post, "faulty/slow", {"input": 1500}) for _ in range(3)]
        time.sleep(0.2)
        fast = list(ex.map(lambda i: s.post("faulty", {"input": {"i": i}}), range(20)))
        fast_done = time.monotonic() - started
        assert all(r.status_code == 200 for r in fast), [r.text for r in fast]
        assert not any(f.done() for f in slows), "a slow call ended before the fast ones"
        for f in slows:
            r = f.result(timeout=10)
            assert r.status_code == 200 and r.json()["output"] == 1500
    assert fast_done < 1.4, f"fast calls waited for the slow ones ({fast_done:.2f} s)"
