"""The worker sandbox against a hostile native package (tests/fixtures/hostile).

Each test makes one escape attempt and checks that the runtime stays up, answers
with the right error, another package keeps serving, and the attempt failed with
the errno the active layer gives. Where this machine cannot give a layer (no
Landlock, no network namespaces, not root), the test asserts that the package
record reports it as degraded instead.
"""
import ctypes
import os
import pwd
import shutil
import socket
import time
import uuid

import pytest

from conftest import BUILD, SANITIZE, assert_error, package, run

HOSTILE_OPTS = ["--config"]


def landlock_abi():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # create_ruleset
    return abi if abi > 0 else 0


EXPECT_ROOT = os.geteuid() == 0
EXPECT_LANDLOCK = landlock_abi()


def config(tmp_path, extra=""):
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n"
                    "limits: {memory_mb: 512}\n" + extra)
    return str(conf)


def hostile_as(tmp_path, name, capabilities=None):
    """The hostile fixture packed under another name, optionally with capabilities."""
    d = tmp_path / name
    shutil.copytree(os.path.join(BUILD, "stage", "hostile"), d)
    y = (d / "agent.yaml").read_text().replace("name: hostile", "name: " + name)
    if capabilities:
        y = y.replace("runtime: native", "runtime: native\ncapabilities: [%s]" %
                      ", ".join(capabilities))
    (d / "agent.yaml").write_text(y)
    pkg = str(tmp_path / f"{name}-0.1.0.apkg")
    assert run("pack", str(d), "-o", pkg).returncode == 0
    return pkg


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conf")
    return server_factory([package("hostile"), package("echo")],
                          args=["--config", config(tmp)],
                          expected_errors=["broke the protocol"])


def sandbox(s, name="hostile"):
    return s.get("/runtime/packages/" + name).json()["sandbox"]


def call(s, agent, inp, status=200):
    r = s.post(agent, {"input": inp})
    assert r.status_code == status, (r.status_code, r.text)
    return r.json()["output"] if status == 200 else r.json()


def still_serving(s):
    """The runtime, the hostile package's next worker and a neighbour all answer."""
    assert s.get("/runtime/health").status_code == 200
    assert call(s, "echo", "neighbour") == "neighbour"
    deadline = time.time() + 15
    while True:
        r = s.post("hostile", {"input": "again"})
        if r.status_code == 200:
            assert r.json()["output"] == "again"
            return
        assert time.time() < deadline, r.text
        time.sleep(0.05)


def test_package_record_shows_every_layer(srv):
    sb = sandbox(srv)
    assert sb["enabled"] is True and sb["no_new_privs"] is True
    assert sb["seccomp"] is True
    assert sb["network"] is False and sb["subprocess"] is False
    assert sb["rlimits"]["core"] == 0 and sb["rlimits"]["nofile"] == 1024
    if not SANITIZE:
        assert sb["rlimits"]["as_mb"] == 512
    if EXPECT_LANDLOCK:
        assert sb["landlock"] == EXPECT_LANDLOCK
    else:
        assert sb["landlock"] is False
        assert any(d.startswith("landlock") for d in sb["degraded"]), sb
    if EXPECT_ROOT:
        nobody = pwd.getpwnam("nobody")
        assert sb["uid"] == nobody.pw_uid and sb["gid"] == nobody.pw_gid
        assert sb["netns"] is True
        assert sb["rlimits"]["nproc"] == 1024
    elif not sb["netns"]:
        assert any(d.startswith("netns") for d in sb["degraded"]), sb
    if EXPECT_ROOT and EXPECT_LANDLOCK:
        assert sb["degraded"] == [], sb  # this machine gives every layer
    me = call(srv, "hostile/whoami", None)
    assert me["uid"] == sb["uid"]
    assert "/var/scratch/hostile@0.1.0." in me["tmpdir"]
    assert me["cwd"].startswith(os.path.join(srv.tmp, "var", "cache"))
    # the degraded layers, if any, were logged once, not per worker
    warned = [l for l in srv.lines() if l.get("msg") == "worker sandbox degraded"]
    assert len(warned) == (1 if sb["degraded"] else 0)


def test_trusted_in_process_package_says_it_has_no_sandbox(server_factory):
    s = server_factory([package("echo")], args=["--trusted", "echo"])
    assert call(s, "echo", 1) == 1
    rec = s.get("/runtime/packages/echo").json()
    assert rec["isolation"] == "in-process"
    assert rec["sandbox"] == {"enabled": False, "reason": "trusted in-process"}


def test_segfault(srv):
    scratch = call(srv, "hostile/whoami", None)["tmpdir"]
    assert os.path.isdir(scratch)
    assert_error(srv.post("hostile/segv", {"input": 1}), 502, "agent_crashed")
    still_serving(srv)
    assert not os.path.exists(scratch)  # removed with its worker


def test_read_etc_shadow(srv):
    assert call(srv, "hostile/read", "/etc/shadow") == {"errno": "EACCES"}
    still_serving(srv)


def test_read_outside_the_package(srv):
    # world-readable and in a world-searchable directory: only the sandbox stands in the way
    path = f"/tmp/par-hostile-{uuid.uuid4().hex}"
    with open(path, "w") as f:
        f.write("secret\n")
    os.chmod(path, 0o644)
    try:
        assert call(srv, "hostile/read", "agent.yaml") == {"read": True}  # its own package
        got = call(srv, "hostile/read", path)
        if sandbox(srv)["landlock"]:
            assert got == {"errno": "EACCES"}
        else:
            assert got == {"read": True}  # nothing confines reads: the record says so
    finally:
        os.unlink(path)
    still_serving(srv)


def test_write_outside_the_scratch_directory(srv):
    path = f"/tmp/par-hostile-{uuid.uuid4().hex}"
    assert call(srv, "hostile/write", "$TMPDIR/mine.txt") == {"written": True}
    got = call(srv, "hostile/write", path)
    try:
        if sandbox(srv)["landlock"]:
            assert got == {"errno": "EACCES"}
            assert not os.path.exists(path)
        else:
            assert got == {"written": True}
    finally:
        if os.path.exists(path):
            os.unlink(path)
    assert call(srv, "hostile/write", "agent.yaml") == {"errno": "EACCES"}  # package is read-only
    still_serving(srv)


@pytest.fixture()
def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.settimeout(0.2)
    yield s
    s.close()


def accepted(listener):
    try:
        c, _ = listener.accept()
        c.close()
        return True
    except socket.timeout:
        return False


def test_tcp_connect_without_network_capability(srv, listener):
    port = listener.getsockname()[1]
    got = call(srv, "hostile/connect", port)
    sb = sandbox(srv)
    if sb["seccomp"]:
        assert got == {"errno": "EPERM"}
    elif sb["landlock"] and sb["landlock"] >= 4:
        assert got == {"errno": "EACCES"}
    else:
        assert sb["netns"] and got == {"errno": "ENETUNREACH"}
    assert not accepted(listener)
    still_serving(srv)


def test_tcp_connect_with_network_capability(server_factory, tmp_path, listener):
    pkg = hostile_as(tmp_path, "netty", ["network"])
    s = server_factory([pkg], args=["--config", config(tmp_path)])
    sb = sandbox(s, "netty")
    assert sb["network"] is True and sb["netns"] is False and sb["degraded"] == [] or \
        not EXPECT_ROOT
    assert call(s, "netty/connect", listener.getsockname()[1]) == {"connected": True}
    assert accepted(listener)
    # the network is all it gets: the file system stays closed
    assert call(s, "netty/read", "/etc/shadow") == {"errno": "EACCES"}


def test_fork_bomb(srv):
    got = call(srv, "hostile/forkbomb", None)
    if sandbox(srv)["seccomp"]:
        assert got == {"errno": "EPERM", "forked": 0}
    else:
        assert got["errno"] == "EAGAIN"  # RLIMIT_NPROC
    still_serving(srv)


def test_kill_the_runtime(srv):
    assert call(srv, "hostile/killparent", None) == {"errno": "EPERM"}
    assert srv.proc.poll() is None
    still_serving(srv)


def test_ptrace_the_runtime(srv):
    assert call(srv, "hostile/ptrace", None) == {"errno": "EPERM"}
    assert srv.proc.poll() is None
    still_serving(srv)


def test_close_the_protocol_descriptor(srv):
    b = assert_error(srv.post("hostile/closefd", {"input": 1}), 502, "agent_crashed")
    assert "hostile/closefd" in b["message"]
    still_serving(srv)


def test_garbage_on_the_protocol_descriptor(srv):
    b = assert_error(srv.post("hostile/garbage", {"input": 1}), 502, "worker_protocol_error")
    assert "broke the worker protocol" in b["message"]
    still_serving(srv)


def test_50_mb_of_stdout(srv):
    t0 = time.time()
    assert call(srv, "hostile/flood", None) == {"flooded": True}
    assert time.time() - t0 < 15
    still_serving(srv)
    lines = [l for l in srv.lines() if l.get("msg") == "agent output"
             and l.get("package") == "hostile"]
    assert 0 < len(lines) < 5000  # rate-limited, not 260 000 lines


def test_allocate_10_gb(srv):
    if SANITIZE:
        pytest.skip("AddressSanitizer reserves more address space than any limit allows; "
                    "the plain build runs this test")
    assert call(srv, "hostile/alloc", None) == {"errno": "ENOMEM"}
    still_serving(srv)


def read_frame(sock):
    """One worker-protocol frame: (type, JSON header or None)."""
    import json
    import struct
    hdr = b""
    while len(hdr) < 24:
        chunk = sock.recv(24 - len(hdr))
        assert chunk, "the worker closed the socket"
        hdr += chunk
    ftype, _ver, _flags, hlen, blen, _r, _id = struct.unpack("<BBHIIIQ", hdr)
    rest = b""
    while len(rest) < hlen + blen:
        rest += sock.recv(hlen + blen - len(rest))
    return ftype, json.loads(rest[:hlen]) if hlen else None


def test_exec_mode_runs_a_program_inside_the_sandbox(tmp_path):
    """par-worker --exec: what a worker in another language is started with."""
    import json
    import subprocess
    from conftest import make_searchable
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "data.txt").write_text("mine\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o700)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "lib.txt").write_text("granted\n")
    outside = f"/tmp/par-exec-{uuid.uuid4().hex}"
    with open(outside, "w") as f:
        f.write("secret\n")
    os.chmod(outside, 0o644)
    make_searchable(str(root))
    os.chmod(root, 0o755)
    os.chmod(extra, 0o755)
    args = []
    if EXPECT_ROOT:
        nobody = pwd.getpwnam("nobody")
        os.chown(scratch, nobody.pw_uid, nobody.pw_gid)
        args += ["--uid", str(nobody.pw_uid), "--gid", str(nobody.pw_gid)]
    script = (
        'for f in "$@"; do if read l < "$f"; then echo "read $f"; else echo "denied $f"; fi; done; '
        'if echo x > "$TMPDIR/f"; then echo scratch-ok; fi; '
        'if echo x > "$PWD/new"; then echo pkg-writable; fi; '
        'echo "$PAR_SANDBOX"; echo "cwd $PWD"; echo fd3 >&3')
    parent, worker_end = socket.socketpair()
    try:
        p = subprocess.run(
            [os.path.join(BUILD, "par-worker"), "--fd", str(worker_end.fileno()), "--root",
             str(root), "--scratch", str(scratch), "--ro", str(extra), *args,
             "--exec", "/bin/sh", "-c", script, "sh", "data.txt", str(extra / "lib.txt"),
             outside],
            pass_fds=[worker_end.fileno()], capture_output=True, text=True, timeout=30,
            env={"PATH": "/usr/bin:/bin"})
        worker_end.close()
        ftype, hdr = read_frame(parent)
        assert ftype == 11, ftype  # SANDBOX, from par-worker before the exec
        report = hdr["sandbox"]
        assert parent.recv(64) == b"fd3\n"  # the program inherited descriptor 3
    finally:
        parent.close()
        os.unlink(outside)
    out = p.stdout.splitlines()
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert "read data.txt" in out and f"read {extra / 'lib.txt'}" in out
    assert "scratch-ok" in out and f"cwd {root}" in out
    assert json.loads(out[out.index("scratch-ok") + 1 + ("pkg-writable" in out)]) == report
    assert report["no_new_privs"] is True and report["seccomp"] is True
    if report["landlock"]:
        assert f"denied {outside}" in out and "pkg-writable" not in out
    else:
        assert any(d.startswith("landlock") for d in report["degraded"])
    assert (scratch / "f").exists()


def test_exec_mode_refuses_a_relative_program(tmp_path):
    import subprocess
    p = subprocess.run([os.path.join(BUILD, "par-worker"), "--fd", "1", "--root", str(tmp_path),
                        "--exec", "sh"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 3 and "absolute program path" in p.stderr


def test_python_workers_get_the_same_sandbox(server_factory):
    """Python workers are par-worker --exec python3: par-worker's report is kept."""
    s = server_factory([package("hello-python")])
    assert s.post("hello-python", {"input": {"name": "x"}}).status_code == 200
    sb = sandbox(s, "hello-python")
    assert sb["enabled"] is True and sb["no_new_privs"] is True and sb["seccomp"] is True
    if EXPECT_LANDLOCK:
        assert sb["landlock"] == EXPECT_LANDLOCK
    if EXPECT_ROOT:
        assert sb["uid"] == pwd.getpwnam("nobody").pw_uid and sb["netns"] is True
    if EXPECT_ROOT and EXPECT_LANDLOCK:
        assert sb["degraded"] == []
