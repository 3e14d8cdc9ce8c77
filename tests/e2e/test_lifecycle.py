"""Graceful shutdown: SIGTERM lets in-flight requests finish and refuses new ones."""
import concurrent.futures
import signal
import time

import pytest
import requests

from conftest import package


def test_sigterm_drains_in_flight(server_factory):
    s = server_factory([package("faulty")])
    assert s.post("faulty", {"input": 1}).status_code == 200

    def slow(i):
        r = requests.post(s.url + "/agents/faulty/slow/invoke", json={"input": 300}, timeout=30)
        return r.status_code, r.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as ex:
        futures = [ex.submit(slow, i) for i in range(50)]
        time.sleep(0.15)
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        with pytest.raises(requests.ConnectionError):
            requests.get(s.url + "/runtime/health", timeout=2)
        results = [f.result() for f in futures]
    assert all(code == 200 and body["output"] == 300 for code, body in results), results
    assert s.proc.wait(timeout=10) == 0
    assert time.time() - t0 < 5
    msgs = [l.get("msg", "") for l in s.lines()]
    assert "drained: no request in flight" in msgs and "stopped" in msgs
    assert msgs.index("drained: no request in flight") < msgs.index("stopped")


def test_readiness_fails_during_grace(server_factory):
    s = server_factory([package("echo")], args=["--shutdown-grace-ms", "600"])
    assert s.get("/runtime/ready").status_code == 200
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    r = s.get("/runtime/ready")
    assert r.status_code == 503 and r.json()["error"] == "not_ready"
    # still serving during the grace period, so load balancers can move away
    assert s.post("echo", {"input": "still here"}).json()["output"] == "still here"
    assert s.proc.wait(timeout=10) == 0
