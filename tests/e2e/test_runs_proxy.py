"""A run's event stream through a reverse proxy that cuts idle connections:
Debian's nginx with proxy_read_timeout 3s and buffering off in front of PAR.
With runs.heartbeat_ms 1000 the `: keep-alive` comments keep a stream of an
agent silent for 10 s open until its event; with heartbeats rarer than the
proxy's timeout (the control) the proxy cuts the stream, which shows the
proxy does what the test relies on."""
import concurrent.futures
import time

import pytest

from nginx import Nginx, need_nginx
from runs_util import Stream, check_ids, native_package, stream_run, wait_run, write_config

SILENT_MS = 10000


@pytest.fixture(scope="module")
def nginx(server_factory, tmp_path_factory):
    need_nginx()
    tmp = tmp_path_factory.mktemp("runs-proxy")
    servers = {}
    for name, beat in (("beating", 1000), ("quiet", 60000)):
        (tmp / name).mkdir()
        conf = write_config(tmp / name, f"runs: {{heartbeat_ms: {beat}}}\n")
        servers[name] = server_factory([native_package()], args=["--config", conf])
    beating, quiet = servers["beating"], servers["quiet"]
    proxy = Nginx(str(tmp / "nginx"), [(f"/{name}/", servers[name].url + "/", "")
                                        for name in ("beating", "quiet")], connections=256)
    yield {"url": proxy.url, "beating": beating, "quiet": quiet,
           "error_log": proxy.error_log}
    proxy.stop()


def silent_stream(base):
    t0 = time.time()
    st = Stream(base, "POST", "/agents/runsnative/silent/runs/stream",
                body={"input": SILENT_MS}, timeout=SILENT_MS / 1000 + 20)
    assert st.status == 200, (st.status, getattr(st, "body", b""))
    evs = list(st.events())
    return evs, st.comments, time.time() - t0


def test_stream_survives_an_idle_timeout_proxy(nginx):
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        beating = ex.submit(silent_stream, nginx["url"] + "/beating")
        quiet = ex.submit(silent_stream, nginx["url"] + "/quiet")
        evs, comments, took = beating.result()
        cut, _, cut_after = quiet.result()
    # with heartbeats every second: the whole run, the late event included
    check_ids(evs)
    assert [e.type for e in evs] == ["run.started", "late", "run.completed"], evs
    assert evs[1].data == {"after_ms": SILENT_MS}
    assert evs[2].data["output"] == "spoke"
    assert took >= SILENT_MS / 1000
    assert comments >= SILENT_MS / 1000 / 2, comments  # ~1 a second while silent
    # the control: without a heartbeat within 3 s, nginx cuts the stream
    assert [e.type for e in cut] == ["run.started"], cut
    assert 2.5 < cut_after < SILENT_MS / 1000, cut_after
    assert "upstream timed out" in nginx["error_log"].read_text()
    # the run behind the cut stream went on (a background run by default) and
    # is resumable through the proxy
    run_id = cut[0].data["run_id"]
    j = wait_run(nginx["quiet"].url, run_id, timeout=SILENT_MS / 1000 + 10)
    assert j["status"] == "succeeded", j
    st = stream_run(nginx["url"] + "/quiet", run_id, after=1)
    assert [(e.id, e.type) for e in st.events()] == [(2, "late"), (3, "run.completed")]
