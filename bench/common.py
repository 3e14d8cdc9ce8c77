"""What the benchmark scripts share: where the build is, free ports,
processes started in their own session and stopped by group, readings from
/proc, and the description of the machine a result was measured on.

Importing it starts nothing and creates nothing.
"""
import json
import os
import platform
import signal
import socket
import subprocess
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(ROOT, os.environ.get("BENCH_BUILD", "build-release"))
PAR = os.path.join(BUILD, "par")
PEER = os.path.abspath(os.path.join(ROOT, "..", "shared", "peers", "fastapi_par"))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(args, log_path, env=None, cwd=None):
    """A process in its own session (stop() ends its whole group), its output
    appended to `log_path`."""
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=open(log_path, "ab"),
                            stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)


def stop(p, grace=10):
    """SIGTERM to the process group, SIGKILL after `grace` seconds."""
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def rss_kb(pid):
    """Resident memory of a process in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    """The direct children of a process (all its threads')."""
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def descendants(pid):
    """Every living descendant of a process."""
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def cpu_s(pid):
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return 0.0


def machine(**extra):
    """The CPU, cores, kernel, revision, date and load of this run, with the
    script's own settings in `extra`."""
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "revision": rev, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average": list(os.getloadavg()), **extra}


def save_results(base, res, md):
    """bench/results/<base>.json and .md, and the report on standard output."""
    out = os.path.join(ROOT, "bench", "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, base + ".json"), "w") as f:
        json.dump(res, f, indent=2)
    with open(os.path.join(out, base + ".md"), "w") as f:
        f.write(md)
    print(md)
