"""Per-package concurrency limit with a bounded queue: overflow is 429 over_capacity."""
import concurrent.futures
import os
import shutil

import requests

from conftest import BUILD, assert_error, run


def faulty_as(tmp_path, name, limits):
    """The faulty fixture packed under another name with other limits."""
    d = tmp_path / name
    shutil.copytree(os.path.join(BUILD, "stage", "faulty"), d)
    y = (d / "agent.yaml").read_text().replace("name: faulty", "name: " + name).replace(
        "limits: {timeout_ms: 2000}", "limits: " + limits)
    (d / "agent.yaml").write_text(y)
    pkg = str(tmp_path / f"{name}-0.1.0.apkg")
    assert run("pack", str(d), "-o", pkg).returncode == 0
    return pkg


def test_concurrency_limit_and_queue(server_factory, tmp_path):
    pkg = faulty_as(tmp_path, "limited", "{timeout_ms: 5000, concurrency: 2}")
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\nlimits: {queue: 2}\n")
    s = server_factory([pkg], args=["--config", str(conf)])

    def slow(i):
        return requests.post(s.url + "/agents/limited/slow/invoke", json={"input": 1000},
                             timeout=30)

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as ex:
        responses = list(ex.map(slow, range(10)))
    ok = [r for r in responses if r.status_code == 200]
    over = [r for r in responses if r.status_code == 429]
    assert len(ok) == 4 and len(over) == 6, [r.status_code for r in responses]
    for r in over:
        assert_error(r, 429, "over_capacity")
        assert r.headers["retry-after"] == "1"
    assert all(r.json()["output"] == 1000 for r in ok)
    # slots come back: the package serves again, and the queue drains in order
    assert s.post("limited", {"input": "again"}).json()["output"] == "again"
    text = s.get("/metrics").text
    assert 'par_invocations_in_flight{agent="limited/slow"} 0' in text


def test_crash_loop_answers_fast_and_recovers(server_factory):
    from conftest import package
    import time
    s = server_factory([package("faulty"), package("echo")])
    codes = []
    for _ in range(12):
        r = s.post("faulty/crash", {"input": 1})
        codes.append(r.status_code)
        if r.status_code == 503:
            break
    assert set(codes) <= {502, 503} and codes[-1] == 503, codes
    t0 = time.time()
    b = assert_error(s.post("faulty", {"input": 1}), 503, "agent_unavailable")
    assert time.time() - t0 < 0.5 and "crash loop" in b["message"]
    rec = s.get("/runtime/packages/faulty").json()
    assert rec["health"] == "crash_loop" and rec["crashes_in_row"] >= 5
    assert s.get("/runtime/ready").status_code == 503
    # other packages are unaffected
    assert s.post("echo", {"input": "fine"}).json()["output"] == "fine"
    # after the backoff a worker comes back and serves again
    deadline = time.time() + 15
    while s.post("faulty", {"input": 2}).status_code != 200:
        assert time.time() < deadline
        time.sleep(0.1)
    assert s.get("/runtime/packages/faulty").json()["health"] == "ok"


def test_memory_limit_kills_the_worker_not_the_runtime(server_factory, tmp_path):
    import pytest
    from conftest import SANITIZE
    if SANITIZE:
        pytest.skip("AddressSanitizer reserves more address space than any limit allows; "
                    "the plain build runs this test")
    pkg = faulty_as(tmp_path, "hungry", "{timeout_ms: 20000, memory_mb: 256}")
    s = server_factory([pkg])

    def rss():
        for line in s.get("/metrics").text.splitlines():
            if line.startswith("process_resident_memory_bytes "):
                return float(line.split()[1])

    assert s.post("hungry/hog", {"input": 64}).status_code == 200  # within the limit
    assert s.get("/runtime/packages/hungry").json()["sandbox"]["rlimits"]["as_mb"] == 256
    before = rss()
    b = assert_error(s.post("hungry/hog", {"input": 10000}), 502, "agent_crashed")
    assert "limited to 256 MB" in b["message"]
    assert rss() - before < 16 * 1024 * 1024
    assert s.post("hungry", {"input": "after"}).json()["output"] == "after"


def test_cpu_limit_and_runaway_loop(server_factory, tmp_path):
    import time
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\nlimits: {worker_cpu_seconds: 1}\n")
    pkg = faulty_as(tmp_path, "cpu", "{timeout_ms: 30000}")
    s = server_factory([pkg], args=["--config", str(conf)])
    sb = s.get("/runtime/packages/cpu").json()["sandbox"]
    assert sb["rlimits"]["cpu_s"] == 1 and sb["seccomp"] is True
    # a loop that never ends: 504 at the deadline, the worker is replaced
    t0 = time.time()
    assert_error(s.post("cpu/spin", {"input": 0}, headers={"X-Par-Timeout-Ms": "300"}),
                 504, "agent_timeout")
    assert time.time() - t0 < 2
    assert s.post("cpu", {"input": "next"}).json()["output"] == "next"
    # burning more CPU than the worker may use: killed by the limit, which is named
    b = assert_error(s.post("cpu/spin", {"input": 8000}), 502, "agent_crashed")
    assert "CPU time limit of 1 s" in b["message"]
    assert s.post("cpu", {"input": "after"}).json()["output"] == "after"
