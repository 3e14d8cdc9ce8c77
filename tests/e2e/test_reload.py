"""Deploy, reload and remove over the management API; reloads under load fail nothing."""
import concurrent.futures
import os
import shutil
import threading
import time

import requests

from conftest import BUILD, assert_error, package, run


def echo_version(tmp, version):
    d = os.path.join(tmp, "echo-" + version)
    shutil.copytree(os.path.join(BUILD, "stage", "echo"), d)
    y = open(os.path.join(d, "agent.yaml")).read().replace("version: 1.0.0", "version: " + version)
    open(os.path.join(d, "agent.yaml"), "w").write(y)
    out = os.path.join(tmp, f"echo-{version}.apkg")
    assert run("pack", d, "-o", out).returncode == 0
    return out


def children(pid):
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            out |= {int(x) for x in f.read().split()}
    return out


def test_deploy_reload_remove(server_factory, tmp_path):
    s = server_factory([], expected_errors=[r"\"package refused\""])
    assert_error(s.post("echo", {"input": 1}), 404, "agent_not_found")
    r = requests.post(s.url + "/runtime/packages", json={"path": package("echo")}, timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "active" and r.json()["version"] == "1.0.0"
    assert s.post("echo", {"input": 1}).json()["output"] == 1
    r = requests.post(s.url + "/runtime/packages/echo/reload", timeout=30)
    assert r.status_code == 200 and r.json()["state"] == "active"
    # bad deploys: named errors, nothing else changes
    assert_error(requests.post(s.url + "/runtime/packages", data="{", timeout=30), 400,
                 "invalid_json")
    assert_error(requests.post(s.url + "/runtime/packages", json={}, timeout=30), 400,
                 "bad_request")
    assert_error(requests.post(s.url + "/runtime/packages", json={"path": "/nonexistent.apkg"},
                               timeout=30), 404, "not_found")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "agent.yaml").write_text("name: echo\nruntime: native\nentrypoint: lib/x.so:f\n"
                                    "metadata: {version: 2.0.0}\n")
    b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": str(bad)},
                                   timeout=30), 422, "incompatible_package")
    assert "lib/x.so: not found" in b["message"]
    assert s.post("echo", {"input": 2}).json()["output"] == 2
    rec = s.get("/runtime/packages/echo").json()
    assert rec["state"] == "active" and rec["version"] == "1.0.0"
    assert "lib/x.so" in rec["last_error"]
    # remove
    assert requests.delete(s.url + "/runtime/packages/echo@9.9.9", timeout=30).status_code == 404
    assert requests.delete(s.url + "/runtime/packages/echo", timeout=30).status_code == 200
    assert_error(s.post("echo", {"input": 1}), 404, "agent_not_found")
    assert_error(requests.post(s.url + "/runtime/packages/echo/reload", timeout=30), 404,
                 "not_found")


def test_reload_under_load_fails_nothing(server_factory, tmp_path):
    v1 = echo_version(str(tmp_path), "1.0.0")
    v2 = echo_version(str(tmp_path), "1.0.1")
    s = server_factory([v1])
    results = []

    def client(n):
        sess = requests.Session()
        out = []
        for i in range(n):
            r = sess.post(s.url + "/agents/echo/shout/invoke",
                          json={"input": {"k": f"v{i}"}}, timeout=30)
            out.append((r.status_code, r.json()))
        return out

    def reloader():
        for i in range(5):
            time.sleep(0.1)
            path = v2 if i % 2 == 0 else v1
            r = requests.post(s.url + "/runtime/packages", json={"path": path}, timeout=30)
            assert r.status_code == 201, r.text

    t = threading.Thread(target=reloader)
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
        futures = [ex.submit(client, 63) for _ in range(32)]  # 2016 requests
        t.start()
        for f in futures:
            results += f.result()
    t.join()
    assert len(results) >= 2000
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed[:5]
    versions = {body["metadata"]["version"] for _, body in results}
    assert versions <= {"1.0.0", "1.0.1"} and len(versions) == 2
    assert all(body["output"]["k"].startswith("V") for _, body in results)
    # the last deploy (v2 at i=4) is active; old versions' workers are gone
    deadline = time.time() + 10
    while True:
        pk = s.get("/runtime/packages").json()["packages"]
        live = {w["pid"] for p in pk for w in p.get("workers", [])}
        if children(s.proc.pid) == live:
            break
        assert time.time() < deadline, (children(s.proc.pid), live)
        time.sleep(0.05)
    assert [p["version"] for p in pk if p["name"] == "echo"] == ["1.0.1"]


def test_kill_9_then_restart_restores_from_cache(server_factory, tmp_path):
    import signal
    from conftest import Server
    v2 = echo_version(str(tmp_path), "1.0.1")
    s = server_factory([])
    r = requests.post(s.url + "/runtime/packages", json={"path": v2}, timeout=30)
    assert r.status_code == 201
    digest = r.json()["sha256"]
    stop = threading.Event()
    codes = []

    def load():
        while not stop.is_set():
            try:
                codes.append(s.post("echo", {"input": 1}, timeout=5).status_code)
            except requests.RequestException:
                codes.append(0)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(0.3)
    s.killed = True
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait(10)
    stop.set()
    t.join()
    assert codes.count(200) > 10
    os.remove(v2)  # the source is gone: only the cache can bring it back
    again = Server(s.tmp, [])
    try:
        rec = again.get("/runtime/packages/echo").json()
        assert rec["state"] == "active" and rec["version"] == "1.0.1"
        assert rec["sha256"] == digest and rec["source"] == v2
        assert again.post("echo/shout", {"input": {"a": "b"}}).json()["output"] == {"a": "B"}
        deadline = time.time() + 5
        while not any(l.get("msg") == "restored 1 package(s) from the cache"
                      for l in again.lines()):
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        again.stop()


def test_watched_folder_deploys_replaces_and_removes(server_factory, tmp_path):
    v1 = echo_version(str(tmp_path), "1.0.0")
    v2 = echo_version(str(tmp_path), "1.0.1")
    s = server_factory([])

    def wait_for(pred):
        deadline = time.time() + 15
        while not pred():
            assert time.time() < deadline
            time.sleep(0.05)

    def version():
        r = s.post("echo", {"input": 1})
        return r.json()["metadata"]["version"] if r.status_code == 200 else None

    # a publisher writes a temporary name, then renames: only the .apkg counts
    tmp = os.path.join(s.pkgdir, ".echo.part")
    shutil.copy(v1, tmp)
    os.rename(tmp, os.path.join(s.pkgdir, "echo-1.0.0.apkg"))
    wait_for(lambda: version() == "1.0.0")
    shutil.copy(v2, os.path.join(s.pkgdir, "echo-1.0.1.apkg"))
    wait_for(lambda: version() == "1.0.1")
    os.remove(os.path.join(s.pkgdir, "echo-1.0.0.apkg"))  # not the active one: nothing changes
    time.sleep(0.3)
    assert version() == "1.0.1"
    os.remove(os.path.join(s.pkgdir, "echo-1.0.1.apkg"))
    wait_for(lambda: s.post("echo", {"input": 1}).status_code == 404)


def faulty_version(tmp, version):
    d = os.path.join(tmp, "faulty-" + version)
    shutil.copytree(os.path.join(BUILD, "stage", "faulty"), d)
    y = open(os.path.join(d, "agent.yaml")).read().replace("version: 0.1.0", "version: " + version)
    y = y.replace("limits: {timeout_ms: 2000}", "limits: {timeout_ms: 10000}")
    open(os.path.join(d, "agent.yaml"), "w").write(y)
    out = os.path.join(tmp, f"faulty-{version}.apkg")
    assert run("pack", d, "-o", out).returncode == 0
    return out


def test_old_version_drains_pinned_then_unloads(server_factory, tmp_path):
    old = faulty_version(str(tmp_path), "1.0.0")
    new = faulty_version(str(tmp_path), "2.0.0")
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\nreload: {drain_ms: 1500}\n")
    s = server_factory([old], args=["--config", str(conf)])
    out = {}

    def slow(key, ms):
        out[key] = s.post("faulty@1.0.0/slow", {"input": ms}, timeout=30)

    t1 = threading.Thread(target=slow, args=("short", 700))
    t2 = threading.Thread(target=slow, args=("long", 5000))
    t1.start(), t2.start()
    time.sleep(0.2)
    r = requests.post(s.url + "/runtime/packages", json={"path": new}, timeout=30)
    assert r.status_code == 201
    assert s.post("faulty", {"input": 1}).json()["metadata"]["version"] == "2.0.0"
    # while the old version drains, pinned requests still reach it
    r = s.post("faulty@1.0.0", {"input": "pinned"})
    assert r.status_code == 200 and r.json()["metadata"]["version"] == "1.0.0"
    states = {p["version"]: p["state"] for p in s.get("/runtime/packages").json()["packages"]}
    assert states == {"1.0.0": "draining", "2.0.0": "active"}
    t1.join(30), t2.join(30)
    assert out["short"].status_code == 200 and out["short"].json()["output"] == 700
    # past the drain deadline the remaining call ends with 503 draining
    b = assert_error(out["long"], 503, "draining")
    assert "unloaded" in b["message"]
    assert_error(s.post("faulty@1.0.0", {"input": 1}), 404, "agent_not_found")
    assert [p["version"] for p in s.get("/runtime/packages").json()["packages"]] == ["2.0.0"]


def test_automatic_rollback(server_factory, tmp_path):
    good = faulty_version(str(tmp_path), "1.0.0")
    d = os.path.join(str(tmp_path), "faulty-2.0.0")
    bad = faulty_version(str(tmp_path), "2.0.0")
    y = open(os.path.join(d, "agent.yaml")).read().replace("lib/libfaulty.so:ok",
                                                           "lib/libfaulty.so:fail")
    open(os.path.join(d, "agent.yaml"), "w").write(y)
    assert run("pack", d, "-o", bad).returncode == 0
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\nreload: {rollback: {requests: 5, error_rate_percent: 60}}\n")
    s = server_factory([good], args=["--config", str(conf)],
                       expected_errors=[])
    r = requests.post(s.url + "/runtime/packages", json={"path": bad}, timeout=30)
    assert r.status_code == 201 and r.json()["version"] == "2.0.0"
    for _ in range(5):
        assert_error(s.post("faulty", {"input": 1}), 500, "agent_error")
    deadline = time.time() + 10
    while True:
        r = s.post("faulty", {"input": "back"})
        if r.status_code == 200:
            break
        assert time.time() < deadline, r.text
        time.sleep(0.05)
    assert r.json()["metadata"]["version"] == "1.0.0"
    while not any("rolled back faulty from 2.0.0 to 1.0.0" in l.get("msg", "")
                  for l in s.lines()):
        assert time.time() < deadline
        time.sleep(0.05)
    # no ping-pong: the restored version is not judged against the bad one
    time.sleep(0.3)
    assert s.get("/runtime/packages/faulty").json()["version"] == "1.0.0"


def test_a_corrupt_deployed_list_is_said_and_the_rest_serves(server_factory, tmp_path):
    # state_dir/deployed.json cut short by a full disk: start anyway, say so
    # (it used to be read as "nothing deployed" without a word)
    from conftest import Server
    said = [r"cannot read .*deployed\.json"]
    s = server_factory([package("echo")], expected_errors=said)  # both write par.log
    s.stop()
    with open(os.path.join(s.tmp, "var", "deployed.json"), "w") as f:
        f.write('{"format": 1, "packages": [')
    again = Server(s.tmp, [], expected_errors=said)
    try:
        assert again.post("echo", {"input": 1}).status_code == 200
        assert any("deployed.json" in l.get("msg", "") and l.get("level") == "error"
                   for l in again.lines())
    finally:
        again.stop()
