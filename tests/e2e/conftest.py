"""Black-box test harness: starts the real `par` binary on a free port.

Every server's stderr goes to a log file. When a server stops, the log must
hold no sanitizer report and no "level":"error" line other than those the
test declared expected.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import requests

BUILD = os.environ.get("PAR_BUILD_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
BUILD = os.path.abspath(BUILD)
SOURCE = os.path.abspath(os.environ.get("PAR_SOURCE_DIR") or
                         os.path.join(os.path.dirname(__file__), "..", ".."))
PAR = os.path.join(BUILD, "par")
SANITIZE = os.environ.get("PAR_SANITIZE", "0") in ("1", "ON", "TRUE", "true")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer")


def package(name):
    """Path of a package built by CMake: examples in packages/, fixtures in test-packages/."""
    for d in ("packages", "test-packages"):
        for f in sorted(os.listdir(os.path.join(BUILD, d))):
            if f.startswith(name + "-") and f.endswith(".apkg"):
                return os.path.join(BUILD, d, f)
    raise FileNotFoundError(name)


def run(*args, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 60)
    return subprocess.run([PAR, *args], **kw)


_OWN_BASETEMP = None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """As root, every test directory lives under a base of this session's own:
    pytest resets the shared /tmp/pytest-of-root to 0700 whenever any session
    starts, which would lock the workers' user out of a running test's files."""
    global _OWN_BASETEMP
    if os.geteuid() == 0 and not config.option.basetemp:
        _OWN_BASETEMP = tempfile.mkdtemp(prefix="par-e2e-")
        os.chmod(_OWN_BASETEMP, 0o711)
        config.option.basetemp = os.path.join(_OWN_BASETEMP, "t")


def pytest_unconfigure(config):
    if _OWN_BASETEMP:
        shutil.rmtree(_OWN_BASETEMP, ignore_errors=True)


def make_searchable(path):
    """Workers of a root runtime run as `nobody` (docs/sandbox.md): like an
    operator's state directory, the test's directories must be searchable by
    that user. pytest creates them 0700; add the search bit up the tree."""
    if os.geteuid() != 0:
        return
    path = os.path.abspath(path)
    while path != "/":
        st = os.stat(path)
        if st.st_uid == 0 and (st.st_mode & 0o001) == 0:
            os.chmod(path, (st.st_mode & 0o7777) | 0o011)
        path = os.path.dirname(path)


class Server:
    def __init__(self, tmp, packages, args=(), expected_errors=(), wait_ready=True):
        self.tmp = tmp
        make_searchable(tmp)
        self.pkgdir = os.path.join(tmp, "packages")
        os.makedirs(self.pkgdir, exist_ok=True)
        for p in packages:
            shutil.copy(p, self.pkgdir)
        self.log_path = os.path.join(tmp, "par.log")
        self.expected_errors = list(expected_errors)
        self.killed = False  # set by a test that kills the process on purpose
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = "abort_on_error=0:detect_leaks=1"
        env["LSAN_OPTIONS"] = "suppressions=" + os.path.join(SOURCE, "tests", "lsan.supp")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [PAR, "serve", "--listen", "127.0.0.1:0", "--packages", self.pkgdir,
             "--state-dir", os.path.join(tmp, "var"), *args],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env, cwd=tmp)
        try:
            self.url = self._wait_url()
            if wait_ready:
                self._wait_ready()
        except BaseException:
            self.proc.kill()  # a server that failed to start is not left running
            self.proc.wait()
            self.log.close()
            raise

    def _wait_url(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            for line in self.lines():
                if line.get("msg") == "listening":
                    return line["url"]
            if self.proc.poll() is not None:
                raise RuntimeError("par exited early:\n" + self.text())
            time.sleep(0.02)
        raise RuntimeError("par did not start listening:\n" + self.text())

    def _wait_ready(self):
        deadline = time.time() + 60
        while time.time() < deadline:
            if requests.get(self.url + "/runtime/ready", timeout=5).status_code == 200:
                return
            time.sleep(0.05)
        raise RuntimeError("par did not become ready:\n" + self.text())

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def lines(self):
        out = []
        for raw in self.text().splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"raw": raw})
        return out

    def post(self, agent, body=None, raw=None, headers=None, timeout=30):
        h = {"content-type": "application/json"}
        h.update(headers or {})
        data = raw if raw is not None else json.dumps(body)
        return requests.post(f"{self.url}/agents/{agent}/invoke", data=data, headers=h,
                             timeout=timeout)

    def get(self, path, **kw):
        return requests.get(self.url + path, timeout=30, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("par did not exit within 30 s of SIGTERM")
        self.log.close()
        text = self.text()
        for m in SANITIZER_MARKERS:
            assert m not in text, "sanitizer report in the server log:\n" + text[-8000:]
        for line in self.lines():
            if "raw" in line:
                continue
            if line.get("level") == "error":
                blob = json.dumps(line)
                if not any(re.search(p, blob) for p in self.expected_errors):
                    raise AssertionError("unexpected error line in the server log: " + blob)
        if not self.killed:
            assert self.proc.returncode == 0, f"par exited with {self.proc.returncode}"


@pytest.fixture(autouse=True)
def _searchable_tmp_path(request):
    """Tests that give `par` a state directory of their own under tmp_path."""
    if "tmp_path" in request.fixturenames:
        make_searchable(str(request.getfixturevalue("tmp_path")))
    yield


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory):
    servers = []

    def make(packages, args=(), expected_errors=(), wait_ready=True):
        s = Server(str(tmp_path_factory.mktemp("par")), packages, args, expected_errors,
                   wait_ready)
        servers.append(s)
        return s

    yield make
    stop_all(servers)


def stop_all(servers):
    """Stops every server, even when one of them fails its checks; then
    raises the first failure."""
    failures = []
    for s in servers:
        try:
            s.stop()
        except AssertionError as e:
            failures.append(e)
        finally:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
    if failures:
        raise failures[0]


def assert_error(resp, status, name):
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert body["error"] == name, body
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"]
    assert resp.headers["content-type"] == "application/json"
    return body
