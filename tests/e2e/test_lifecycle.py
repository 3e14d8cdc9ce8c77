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


def test_sighup_reloads_what_can_change_live(server_factory, tmp_path):
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\nlog: {level: info}\n")
    s = server_factory([package("echo")], args=["--config", str(conf)])
    s.post("echo", {"input": 1}, headers={"X-Request-ID": "before-hup"})
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\nlog: {level: info, access: false}\nhttp: {threads: 2}\n")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while not any("SIGHUP: configuration reloaded" in l.get("msg", "") for l in s.lines()):
        assert time.time() < deadline
        time.sleep(0.05)
    msg = next(l["msg"] for l in s.lines() if "SIGHUP" in l.get("msg", ""))
    assert "access log off" in msg and "'http.threads' changes need a restart" in msg
    assert s.post("echo", {"input": 2}, headers={"X-Request-ID": "after-hup"}).status_code == 200
    time.sleep(0.2)
    ids = {l.get("request_id") for l in s.lines()}
    assert "before-hup" in ids and "after-hup" not in ids
    # a broken file changes nothing and says so
    conf.write_text("log: [unclosed\n")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while not any("has errors" in l.get("msg", "") for l in s.lines()):
        assert time.time() < deadline
        time.sleep(0.05)
    assert s.post("echo", {"input": 3}).status_code == 200
    s.expected_errors.append("has errors")


def test_second_signal_exits_at_once(server_factory):
    import threading
    s = server_factory([package("faulty")])
    s.killed = True  # exits 1 on purpose
    t = threading.Thread(target=lambda: requests.post(s.url + "/agents/faulty/slow/invoke",
                                                      json={"input": 5000}, timeout=30))
    t.start()
    time.sleep(0.2)
    t0 = time.time()
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(timeout=5) == 1
    assert time.time() - t0 < 2
    assert any("second signal" in l.get("msg", "") for l in s.lines())
    t.join(30)
