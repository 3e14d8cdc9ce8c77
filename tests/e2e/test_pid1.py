"""`par serve` as PID 1, as in a container (deploy/container/, podman/docker
run without --init, a Kubernetes pod): its workers must start and serve.
A worker used to take "my parent is PID 1" for "the runtime died" and exit
at once, so every deploy in a container failed with 422 incompatible_package.
The runtime runs here as PID 1 of a new PID namespace (unshare(1), root).
"""
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import PAR, SOURCE, Server, package


def sanitizer_env():
    """The environment the harness gives `par serve` (conftest.Server)."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "abort_on_error=0:detect_leaks=1"
    env["LSAN_OPTIONS"] = "suppressions=" + os.path.join(SOURCE, "tests", "lsan.supp")
    return env


def test_workers_serve_under_a_runtime_that_is_pid_1(tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a PID namespace")
    d = tmp_path
    (d / "packages").mkdir()
    shutil.copy(package("echo"), d / "packages")
    s = Server.__new__(Server)  # the harness's checks, around a wrapped command
    s.tmp, s.pkgdir, s.expected_errors, s.killed = str(d), str(d / "packages"), [], False
    s.log_path = str(d / "par.log")
    s.log = open(s.log_path, "w")
    s.proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", PAR, "serve", "--listen", "127.0.0.1:0",
         "--packages", s.pkgdir, "--state-dir", str(d / "var")],
        stdout=s.log, stderr=s.log, stdin=subprocess.DEVNULL, cwd=str(d),
        env=sanitizer_env())
    try:
        s.url = s._wait_url()
        s._wait_ready()
        started = [line for line in s.lines() if line.get("msg") == "listening"]
        assert started and started[0]["pid"] == 1, started
        r = s.post("echo", {"x": 1})
        assert r.status_code == 200, (r.status_code, r.text, s.text()[-3000:])
        rec = s.get("/runtime/packages/echo").json()
        assert rec["state"] == "active" and rec["sandbox"]["enabled"] is True, rec
        # SIGTERM to the runtime (unshare does not pass signals on): a clean stop
        with open(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children") as f:
            runtime = int(f.read().split()[0])
        os.kill(runtime, signal.SIGTERM)
        s.proc.wait(timeout=30)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            time.sleep(0.1)
        s.stop()
