"""`par serve` under a service manager (deploy/systemd/par.service,
docs/deployment.md "systemd"): the notification protocol against a datagram
socket the test listens on as $NOTIFY_SOCKET — READY=1 once the listener is
up and the packages are mounted, RELOADING=1 / READY=1 around SIGHUP,
STOPPING=1 at the start of the SIGTERM shutdown (while readiness already
fails and the listener still answers), WATCHDOG=1 every $WATCHDOG_USEC/2 and
only for the process $WATCHDOG_PID names — and `systemd-analyze verify` of
the unit file, pointed at the binary this build made.
"""
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import PAR, SOURCE, Server, package

UNIT = os.path.join(SOURCE, "deploy", "systemd", "par.service")


def sanitizer_env():
    """The environment the harness gives `par serve` (conftest.Server)."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "abort_on_error=0:detect_leaks=1"
    env["LSAN_OPTIONS"] = "suppressions=" + os.path.join(SOURCE, "tests", "lsan.supp")
    return env


class Manager:
    """The manager's end: a datagram socket, every message with its arrival time."""

    def __init__(self, name):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + name[1:] if name.startswith("@") else name)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic seconds, {key: value})
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            with self.lock:
                self.messages.append((time.monotonic(), fields))

    def wait_for(self, key, value="1", after=0, timeout=30):
        """The first message at index >= `after` setting key=value: (index, time, fields)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for i, (t, f) in enumerate(self.messages[after:], after):
                    if f.get(key) == value:
                        return i, t, f
            time.sleep(0.01)
        raise AssertionError(f"no {key}={value} after message {after}: {self.messages}")

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def start(tmp_path, monkeypatch, notify, watchdog_usec=None, watchdog_pid=None, args=()):
    monkeypatch.setenv("NOTIFY_SOCKET", notify)
    for k, v in (("WATCHDOG_USEC", watchdog_usec), ("WATCHDOG_PID", watchdog_pid)):
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, str(v))
    return Server(str(tmp_path), [package("echo")], args, wait_ready=False)


def test_ready_reload_watchdog_stopping(tmp_path, monkeypatch):
    name = str(tmp_path / "notify")
    mgr = Manager(name)
    s = start(tmp_path, monkeypatch, name, watchdog_usec=400000,
              args=("--shutdown-grace-ms", "1500", "--shutdown-drain-ms", "1000"))
    try:
        i, t_ready, ready = mgr.wait_for("READY")
        # sent when serving: the listener answers, the package is mounted
        assert ready["MAINPID"] == str(s.proc.pid)
        mounted = []
        for _ in range(200):  # the log writer is asynchronous
            mounted = [line["msg"] for line in s.lines()
                       if line.get("msg", "").startswith("ready: ")]
            if mounted:
                break
            time.sleep(0.02)
        assert mounted and mounted[0] + "," in ready["STATUS"], (mounted, ready)
        assert s.get("/runtime/ready").status_code == 200
        assert s.post("echo", {"x": 1}).status_code == 200
        # nothing before READY=1 but READY=1 itself (no early watchdog ping)
        assert i == 0, mgr.messages

        # the watchdog: every 200 ms (WATCHDOG_USEC/2), from the main loop
        time.sleep(1.3)
        with mgr.lock:
            pings = [t for t, f in mgr.messages if f.get("WATCHDOG") == "1"]
        assert 4 <= len(pings) <= 9, pings
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert all(0.1 < g < 0.45 for g in gaps), gaps

        # SIGHUP: RELOADING=1 with the monotonic clock, then READY=1 again
        n = len(mgr.messages)
        before = time.monotonic()
        s.proc.send_signal(signal.SIGHUP)
        j, t_rel, rel = mgr.wait_for("RELOADING", after=n)
        assert before * 1e6 - 1e6 < int(rel["MONOTONIC_USEC"]) < time.monotonic() * 1e6 + 1e6
        k, _, again = mgr.wait_for("READY", after=j + 1)
        assert "reloaded" in again["STATUS"], again
        for _ in range(200):  # the log writer is asynchronous
            if any("SIGHUP: configuration reloaded" in line.get("msg", "") for line in s.lines()):
                break
            time.sleep(0.02)
        else:
            raise AssertionError("no reload line:\n" + s.text())

        # SIGTERM: STOPPING=1 first; readiness already fails while the listener
        # still answers (the grace period), and the process is still there
        n = len(mgr.messages)
        s.proc.send_signal(signal.SIGTERM)
        _, t_stop, stop = mgr.wait_for("STOPPING", after=n)
        assert "signal 15" in stop["STATUS"], stop
        assert s.proc.poll() is None
        assert s.get("/runtime/ready").status_code == 503
        s.proc.wait(timeout=30)
        assert time.monotonic() - t_stop > 1.0  # the grace came after STOPPING=1
    finally:
        s.stop()
        mgr.close()


def test_abstract_socket_and_foreign_watchdog_pid(tmp_path, monkeypatch):
    """An abstract name ('@…'), and a WATCHDOG_PID naming another process (a
    wrapper that started par): READY=1 arrives, and no WATCHDOG=1 ever."""
    name = f"@par-e2e-notify-{os.getpid()}"
    mgr = Manager(name)
    s = start(tmp_path, monkeypatch, name, watchdog_usec=200000, watchdog_pid=os.getpid())
    try:
        mgr.wait_for("READY")
        time.sleep(0.6)
        with mgr.lock:
            assert not [f for _, f in mgr.messages if "WATCHDOG" in f], mgr.messages
        assert not any("watchdog" in line.get("msg", "") for line in s.lines())
    finally:
        s.stop()
        mgr.close()


def test_unusable_notify_socket_is_logged_not_fatal(tmp_path, monkeypatch):
    s = start(tmp_path, monkeypatch, str(tmp_path / "nobody-listens"))
    try:
        s._wait_ready()
        assert s.post("echo", {"x": 1}).status_code == 200
        warn = [line for line in s.lines()
                if line.get("msg", "").startswith("cannot notify the service manager")]
        assert len(warn) == 1 and warn[0]["level"] == "warn", warn
    finally:
        s.stop()


def test_unit_file_verifies(tmp_path):
    """systemd-analyze verify on a copy whose ExecStart is this build's par
    (verify checks that the binary exists and is executable); every other
    line is the shipped file's."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    text = open(UNIT).read()
    assert "ExecStart=/usr/bin/par serve --config /etc/par/par.yaml\n" in text
    unit = tmp_path / "par.service"
    unit.write_text(text.replace("ExecStart=/usr/bin/par ", f"ExecStart={PAR} "))
    r = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                       text=True, timeout=120)
    out = r.stdout + r.stderr
    # only lines about this unit count: the machine's own units may be odd
    ours = [line for line in out.splitlines() if "par.service" in line]
    assert r.returncode == 0 and not ours, out
    # a typo is caught, so the verification is not vacuous
    bad = tmp_path / "bad" / "par.service"
    bad.parent.mkdir()
    for good, typo in (("ProtectSystem=strict", "ProtectSystem=strickt"),
                       ("NoNewPrivileges=", "NoNewPrivilege=")):
        bad.write_text(unit.read_text().replace(good, typo))
        r = subprocess.run([analyze, "verify", "--man=no", str(bad)], capture_output=True,
                           text=True, timeout=120)
        out = r.stdout + r.stderr
        assert [line for line in out.splitlines() if "par.service" in line], (typo, out)


def test_unit_file_settings_agree_with_par():
    """TimeoutStopSec covers shutdown.grace_ms + shutdown.drain_ms of the
    defaults; Type=notify, ExecReload is SIGHUP; the watchdog is on."""
    keys = {}
    for line in open(UNIT):
        if "=" in line and not line.startswith("#"):
            k, v = line.rstrip("\n").split("=", 1)
            keys[k] = v
    assert keys["Type"] == "notify" and keys["NotifyAccess"] == "main"
    assert keys["ExecReload"] == "/bin/kill -HUP $MAINPID"
    shown = subprocess.run([PAR, "config", "show"], capture_output=True, text=True,
                           timeout=30).stdout
    vals = {}
    for line in shown.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            vals[parts[0]] = parts[1]
    grace, drain = int(vals["shutdown.grace_ms"]), int(vals["shutdown.drain_ms"])
    assert int(keys["TimeoutStopSec"]) * 1000 > grace + drain + 5000, (keys, grace, drain)
    assert int(keys["WatchdogSec"]) >= 2
    assert keys["StateDirectory"] == "par" and keys["ProtectSystem"] == "strict"
    for directive in ("PrivateUsers", "MemoryDenyWriteExecute", "DynamicUser"):
        assert directive not in keys, directive  # they break the sandbox: the file says why
    assert keys["RestrictNamespaces"] == "net"


def test_unit_capabilities_leave_the_sandbox_whole(tmp_path):
    """The unit's CapabilityBoundingSet and NoNewPrivileges, applied with
    setpriv(1) as systemd would apply them: a worker still gets every layer
    (uid drop, network namespace, Landlock where the kernel has it, seccomp).
    Without CAP_SYS_ADMIN the network namespace is lost: the check is not
    vacuous."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux)")
    caps = None
    for line in open(UNIT):
        if line.startswith("CapabilityBoundingSet="):
            caps = line.split("=", 1)[1].split()
    assert caps and "CAP_SYS_ADMIN" in caps

    def sandbox_with(caps, sub):
        d = tmp_path / sub
        (d / "packages").mkdir(parents=True)
        os.chmod(d, 0o755)
        shutil.copy(package("echo"), d / "packages")
        bset = "-all," + ",".join("+" + c[4:].lower() for c in caps)
        s = Server.__new__(Server)  # the harness's checks, around a wrapped command
        s.tmp, s.pkgdir, s.expected_errors, s.killed = str(d), str(d / "packages"), [], False
        s.log_path = str(d / "par.log")
        s.log = open(s.log_path, "w")
        s.proc = subprocess.Popen(
            ["setpriv", "--bounding-set", bset, "--inh-caps=-all", "--no-new-privs", PAR,
             "serve", "--listen", "127.0.0.1:0", "--packages", s.pkgdir, "--state-dir",
             str(d / "var")], stdout=s.log, stderr=s.log, stdin=subprocess.DEVNULL, cwd=str(d),
            env=sanitizer_env())
        try:
            s.url = s._wait_url()
            s._wait_ready()
            assert s.post("echo", {"x": 1}).status_code == 200
            return s.get("/runtime/packages/echo").json()["sandbox"]
        finally:
            s.stop()

    full = sandbox_with(caps, "unit")
    assert full["degraded"] == [] or all(d.startswith("landlock") for d in full["degraded"]), full
    assert full["uid"] == 65534 and full["netns"] is True and full["seccomp"] is True, full
    assert full["rlimits"]["nproc"] == 1024, full
    less = sandbox_with([c for c in caps if c != "CAP_SYS_ADMIN"], "no-sys-admin")
    assert less["netns"] is False and any(d.startswith("netns") for d in less["degraded"]), less


def _thread_syscalls(pid):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                out[int(tid)] = f.read().split()[0]
        except (OSError, IndexError):
            pass
    return out


def test_watchdog_starves_while_an_event_loop_is_stuck(tmp_path, monkeypatch):
    """The watchdog proves the event loop turns, not only that a thread runs:
    with the HTTP loop thread frozen (ptrace-interrupted, the other threads
    and the main thread running on) WATCHDOG=1 stops and one error line says
    why; when the loop runs again the pings come back."""
    import ctypes
    if os.geteuid() != 0 or not os.path.exists("/proc/self/task/%d/syscall" % os.getpid()):
        pytest.skip("needs root (ptrace) and /proc/<pid>/task/<tid>/syscall")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH = 0x4206, 0x4207, 17
    name = str(tmp_path / "notify")
    mgr = Manager(name)
    s = start(tmp_path, monkeypatch, name, watchdog_usec=600000)  # a ping every 300 ms
    frozen = []
    try:
        mgr.wait_for("READY")
        s._wait_ready()
        # the HTTP loop: the thread (not the main one) that sits in epoll_wait
        # (232) or epoll_pwait (281) between its turns
        seen = set()
        for _ in range(50):
            seen |= {t for t, nr in _thread_syscalls(s.proc.pid).items()
                     if nr in ("232", "281") and t != s.proc.pid}
            time.sleep(0.01)
        assert seen, _thread_syscalls(s.proc.pid)
        for tid in seen:
            assert libc.ptrace(PTRACE_SEIZE, tid, None, None) == 0, ctypes.get_errno()
            assert libc.ptrace(PTRACE_INTERRUPT, tid, None, None) == 0, ctypes.get_errno()
            frozen.append(tid)
        os.waitpid(-1, getattr(os, "__WALL", 0x40000000))  # one of them has stopped
        time.sleep(0.5)
        n = len(mgr.messages)
        time.sleep(1.5)
        with mgr.lock:
            late = [f for _, f in mgr.messages[n:] if "WATCHDOG" in f]
        assert late == [], late  # five periods without a ping
        for tid in frozen:
            libc.ptrace(PTRACE_DETACH, tid, None, None)
        frozen.clear()
        mgr.wait_for("WATCHDOG", after=len(mgr.messages), timeout=5)
        for _ in range(200):  # the log writer is asynchronous
            msgs = [(line.get("level"), line.get("msg", "")) for line in s.lines()]
            if any("turn again" in m for _, m in msgs):
                break
            time.sleep(0.02)
        stuck = [lv for lv, m in msgs if "has not turned for" in m]
        assert stuck == ["error"], msgs
        assert any("watchdog fed" in m for _, m in msgs), msgs
        s.expected_errors.append("has not turned for")
    finally:
        for tid in frozen:
            libc.ptrace(PTRACE_DETACH, tid, None, None)
        s.stop()
        mgr.close()
