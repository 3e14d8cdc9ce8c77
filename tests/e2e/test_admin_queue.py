"""The admin queue: deploys, reloads and usage reports wait for the runtime's
management threads in a bounded queue; past its bound a request is answered
at once with 503 over_capacity, and the queue serves again once it drains."""
import concurrent.futures
import os
import time

import requests

from conftest import assert_error, package

# http/admin.c: two threads, 64 jobs waiting
RUNNING, WAITING = 2, 64


def test_full_admin_queue_is_over_capacity(server_factory, tmp_path):
    srv = server_factory([package("echo")], expected_errors=["slow.apkg"])
    fifo = str(tmp_path / "slow.apkg")
    os.mkfifo(fifo)  # a deploy of it blocks in open() until a writer comes
    n = RUNNING + WAITING + 14

    def deploy():
        return requests.post(srv.url + "/runtime/packages", json={"path": fifo}, timeout=120)

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
        futs = [ex.submit(deploy) for _ in range(n)]
        # the ones past the bound are answered at once, while the rest wait
        deadline = time.time() + 60
        while sum(f.done() for f in futs) < n - RUNNING - WAITING and time.time() < deadline:
            time.sleep(0.05)
        done = [f.result() for f in futs if f.done()]
        assert len(done) == n - RUNNING - WAITING, [r.status_code for r in done]
        for r in done:
            body = assert_error(r, 503, "over_capacity")
            assert "retry shortly" in body["message"]
            assert r.headers["retry-after"] == "1"
        # the loop is not held up by the queue
        assert srv.get("/runtime/health").status_code == 200
        assert srv.post("echo", {"input": {"x": 1}}).status_code == 200
        # let every blocked reader see the end of an empty file
        while not all(f.done() for f in futs) and time.time() < deadline:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                os.close(fd)
            except OSError:
                time.sleep(0.01)
        results = [f.result() for f in futs]
    refused = [r for r in results if r.status_code == 503]
    assert len(refused) == n - RUNNING - WAITING
    for r in results:
        if r.status_code != 503:
            assert 400 <= r.status_code < 500, (r.status_code, r.text)  # an empty "package"
    # drained: the queue takes work again
    os.unlink(fifo)
    r = requests.post(srv.url + "/runtime/packages", json={"path": fifo}, timeout=60)
    assert_error(r, 404, "not_found")
