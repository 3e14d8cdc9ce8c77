"""A hostile Python package against the worker sandbox.

The same escape attempts as test_sandbox.py makes with native code, written in
Python: the interpreter runs inside par-worker's sandbox (par-worker --exec), so
every layer applies to it. Each test checks that the runtime stays up, answers
with the right error, a neighbour keeps serving, and the attempt failed.
"""
import os
import socket
import time
import uuid

import pytest

from conftest import assert_error, package
from test_python import pypkg
from test_sandbox import EXPECT_LANDLOCK, EXPECT_ROOT, config

HOSTILE = """\
import ctypes
import errno
import os
import signal
import socket
import sys


def _err(e):
    return {"errno": errno.errorcode.get(e.errno, str(e.errno))}


def ok(input):
    return input


def segv(input):
    ctypes.string_at(0)


def abort(input):
    os.abort()


def spin(input):
    while True:
        pass


def alloc(input):
    return len(bytearray(10 << 30))


def forkbomb(input):
    forked = 0
    try:
        while True:
            if os.fork() == 0:
                os._exit(0)
            forked += 1
    except OSError as e:
        return dict(_err(e), forked=forked)


def read(path):
    try:
        with open(path) as f:
            f.read()
        return {"read": True}
    except OSError as e:
        return _err(e)


def write(path):
    path = path.replace("$TMPDIR", os.environ.get("TMPDIR", "/nonexistent"))
    try:
        with open(path, "w") as f:
            f.write("x")
        return {"written": True}
    except OSError as e:
        return _err(e)


def connect(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.close()
        return {"connected": True}
    except OSError as e:
        return _err(e)


def killparent(input):
    try:
        os.kill(os.getppid(), signal.SIGKILL)
        return {"killed": True}
    except OSError as e:
        return _err(e)


def closefd(input):
    os.close(3)
    return "closed"


def garbage(input):
    os.write(3, b"\\xff" * 64)
    return "written"


def flood(input):
    line = "y" * 99 + "\\n"
    for _ in range(250000):        # 25 MB through print()
        sys.stdout.write(line)
    chunk = ("z" * 1023 + "\\n").encode() * 1024
    for _ in range(25):            # 25 MB straight to file descriptor 1
        os.write(1, chunk)
    return {"flooded": True}


def whoami(input):
    return {"uid": os.getuid(), "tmpdir": os.environ.get("TMPDIR"), "cwd": os.getcwd()}
"""

NAMES = ["segv", "abort", "spin", "alloc", "forkbomb", "read", "write", "connect",
         "killparent", "closefd", "garbage", "flood", "whoami"]


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pyhostile")
    apkg = pypkg(tmp, "pyhostile", {"src/hostile.py": HOSTILE}, entrypoint="src.hostile:ok",
                 sub_agents=[(n, True, "src.hostile:" + n) for n in NAMES],
                 extra="  par:\n    limits: {timeout_ms: 20000}\n")
    return server_factory([apkg, package("echo")], args=["--config", config(tmp)],
                          expected_errors=["broke the protocol"])


def call(s, agent, inp, status=200, **kw):
    r = s.post(agent, {"input": inp}, **kw)
    assert r.status_code == status, (r.status_code, r.text)
    return r.json()["output"] if status == 200 else r.json()


def sandbox(s):
    return s.get("/runtime/packages/pyhostile").json()["sandbox"]


def still_serving(s):
    assert s.get("/runtime/health").status_code == 200
    assert call(s, "echo", "neighbour") == "neighbour"
    deadline = time.time() + 15
    while True:
        r = s.post("pyhostile", {"input": "again"})
        if r.status_code == 200:
            assert r.json()["output"] == "again"
            return
        assert time.time() < deadline, r.text
        time.sleep(0.05)


def test_the_interpreter_is_sandboxed(srv):
    sb = sandbox(srv)
    assert sb["enabled"] and sb["no_new_privs"] and sb["seccomp"]
    me = call(srv, "pyhostile/whoami", None)
    assert me["uid"] == sb["uid"]
    assert "/var/scratch/pyhostile@1.0.0." in me["tmpdir"]
    if EXPECT_ROOT and EXPECT_LANDLOCK:
        assert sb["degraded"] == [] and sb["uid"] != 0


def test_segfault(srv):
    b = assert_error(srv.post("pyhostile/segv", {"input": 1}), 502, "agent_crashed")
    assert "SIGSEGV" in b["message"] or "signal 11" in b["message"], b
    still_serving(srv)


def test_abort(srv):
    b = assert_error(srv.post("pyhostile/abort", {"input": 1}), 502, "agent_crashed")
    assert "SIGABRT" in b["message"] or "signal 6" in b["message"], b
    still_serving(srv)


def test_infinite_loop(srv):
    t0 = time.time()
    assert_error(srv.post("pyhostile/spin", {"input": 1},
                          headers={"X-Par-Timeout-Ms": "300"}), 504, "agent_timeout")
    assert time.time() - t0 < 5
    still_serving(srv)


def test_allocate_10_gb(srv):
    b = assert_error(srv.post("pyhostile/alloc", {"input": 1}), 500, "out_of_memory")
    assert "512 MB" in b["message"]
    still_serving(srv)


def test_fork_bomb(srv):
    got = call(srv, "pyhostile/forkbomb", None)
    if sandbox(srv)["seccomp"]:
        assert got == {"errno": "EPERM", "forked": 0}
    else:
        assert got["errno"] == "EAGAIN"
    still_serving(srv)


def test_read_secrets_and_files_outside_the_package(srv):
    path = f"/tmp/par-pyhostile-{uuid.uuid4().hex}"
    with open(path, "w") as f:
        f.write("secret\n")
    os.chmod(path, 0o644)
    try:
        assert call(srv, "pyhostile/read", "agent.yaml") == {"read": True}
        assert call(srv, "pyhostile/read", "/etc/shadow") == {"errno": "EACCES"}
        got = call(srv, "pyhostile/read", path)
        assert got == ({"errno": "EACCES"} if sandbox(srv)["landlock"] else {"read": True})
    finally:
        os.unlink(path)
    still_serving(srv)


def test_write_outside_the_scratch_directory(srv):
    path = f"/tmp/par-pyhostile-{uuid.uuid4().hex}"
    assert call(srv, "pyhostile/write", "$TMPDIR/mine.txt") == {"written": True}
    got = call(srv, "pyhostile/write", path)
    try:
        if sandbox(srv)["landlock"]:
            assert got == {"errno": "EACCES"} and not os.path.exists(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    assert call(srv, "pyhostile/write", "src/hostile.py") == {"errno": "EACCES"}
    still_serving(srv)


def test_tcp_connect_without_network_capability(srv):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    try:
        got = call(srv, "pyhostile/connect", listener.getsockname()[1])
        assert got in ({"errno": "EPERM"}, {"errno": "EACCES"}, {"errno": "ENETUNREACH"})
        if sandbox(srv)["seccomp"]:
            assert got == {"errno": "EPERM"}
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    still_serving(srv)


def test_kill_the_runtime(srv):
    assert call(srv, "pyhostile/killparent", None) == {"errno": "EPERM"}
    assert srv.proc.poll() is None
    still_serving(srv)


def test_close_the_protocol_descriptor(srv):
    assert_error(srv.post("pyhostile/closefd", {"input": 1}), 502, "agent_crashed")
    still_serving(srv)


def test_garbage_on_the_protocol_descriptor(srv):
    assert_error(srv.post("pyhostile/garbage", {"input": 1}), 502, "worker_protocol_error")
    still_serving(srv)


def test_50_mb_of_stdout(srv):
    t0 = time.time()
    assert call(srv, "pyhostile/flood", None, timeout=60) == {"flooded": True}
    assert time.time() - t0 < 30
    still_serving(srv)
    lines = [l for l in srv.lines() if l.get("package") == "pyhostile"
             and l.get("source") == "agent"]
    assert 0 < len(lines) < 20000  # rate-limited: not 275 000 lines


def test_network_packages_can_resolve_names(srv, server_factory, tmp_path):
    """`network` opens what name resolution and TLS read; without it /etc stays shut."""
    if not sandbox(srv)["landlock"]:
        pytest.skip("no Landlock on this kernel: nothing confines reads")
    assert call(srv, "pyhostile/read", "/etc/hosts") == {"errno": "EACCES"}
    code = ("import socket\n"
            "def handler(i):\n"
            "    with open('/etc/hosts') as f:\n"
            "        f.read()\n"
            "    return socket.getaddrinfo('localhost', 80)[0][4][0]\n")
    apkg = pypkg(tmp_path, "resolver", {"src/main.py": code}, extra="capabilities: [network]\n")
    s = server_factory([apkg], args=["--config", config(tmp_path)])
    r = s.post("resolver", {"input": None})
    assert r.status_code == 200, r.text
    assert r.json()["output"] in ("127.0.0.1", "::1")
