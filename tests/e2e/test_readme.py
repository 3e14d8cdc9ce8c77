"""The README's tour, as printed, from a fresh clone.

The repository's HEAD is cloned into a temporary directory and `make serve`
runs there exactly as the README says (it installs what serving needs, builds
in the clone, fills ./packages and runs `par serve` with no flags from the
clone's root). Then every command of the README's "A 30-second tour" section
runs in a shell at the clone's root, in order, and must exit 0; where the
README shows an answer (`# →` lines, `…` standing for anything; a bare `# →`
is an empty line) the output must match it. A command `NAME=$(…)` keeps its
value for the commands after it, as the shell the README is followed in does.
An event stream (`curl -N …/stream`) is also checked as SSE: blocks of
`id:`, `event:` and `data:` (one JSON line) with ids 1, 2, 3 …, `run.started`
first and `run.completed` last, of the run the command names. Commands and
answers are read from README.md, so the two cannot drift apart. If 127.0.0.1:8080 is taken, the test does what the README
says: PAR_LISTEN names another address and that port replaces 8080.

The slowest test: it builds the whole tree once more.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import SANITIZE, SANITIZER_MARKERS, SOURCE, make_searchable
from peers import free_port

BUILD_TIMEOUT_S = 3600


def readme_section(title):
    text = open(os.path.join(SOURCE, "README.md")).read()
    m = re.search(r"^## " + re.escape(title) + r"\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, f"README.md has no section '## {title}'"
    return m.group(1)


def tour_steps():
    """[(command, expected or None)] from the tour's ```sh blocks."""
    steps = []
    for block in re.findall(r"^```sh\n(.*?)^```", readme_section("A 30-second tour"),
                            re.S | re.M):
        for line in block.splitlines():
            if line.startswith("# → ") or line == "# →":
                assert steps, "an answer before any command: " + line
                cmd, want = steps[-1]
                steps[-1] = (cmd, line[4:] if want is None else want + "\n" + line[4:])
            elif line.strip() and not line.startswith("#"):
                steps.append((line, None))
    assert sum(1 for c, _ in steps if c.startswith("curl ")) >= 8, steps
    # every curl of the tour shows its answer: nothing in it goes untested
    assert all(w is not None for c, w in steps if c.startswith("curl ")), steps
    # the run step: started in the background, streamed, read back
    assert any(ASSIGN.match(c) and "/runs" in c for c, _ in steps), steps
    assert any(c.startswith("curl -N ") and c.endswith("/stream") for c, _ in steps), steps
    return steps


ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=\$\((.*)\)$")


def check_sse(out):
    """The output of a finished run's event stream: [(id, event, data)] or an
    AssertionError naming what is wrong."""
    events = []
    for block in out.split("\n\n"):
        if block.startswith(":"):  # keep-alive
            continue
        lines = block.split("\n")
        assert [ln.split(": ", 1)[0] for ln in lines] == ["id", "event", "data"], block
        seq, event, data = (ln.split(": ", 1)[1] for ln in lines)
        events.append((int(seq), event, json.loads(data)))
    assert [e[0] for e in events] == list(range(1, len(events) + 1)), events
    assert events[0][1] == "run.started" and events[-1][1] == "run.completed", events
    run_id = events[0][2]["run_id"]
    assert all(e[2]["run_id"] == run_id for e in events if e[1].startswith("run.")), events
    return events


def pattern(want):
    return re.compile(".*".join(re.escape(p) for p in want.split("…")), re.S)


def port_free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme") / "par"
    head = subprocess.run(["git", "-C", SOURCE, "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--no-checkout", SOURCE, str(d)], check=True,
                   timeout=300)
    subprocess.run(["git", "-C", str(d), "checkout", "-q", head], check=True, timeout=300)
    # the test peers are not needed to serve; nothing from the build under test is reused
    make_searchable(str(d))
    return d


class MakeServe:
    """`make serve` in the clone: a process group, its output in a log."""

    def __init__(self, root, env, make_args):
        self.log_path = os.path.join(os.path.dirname(root), "make-serve.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["make", "serve", *make_args], cwd=root, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_ready(self, url):
        deadline = time.time() + BUILD_TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("make serve exited:\n" + self.text()[-6000:])
            if '"msg":"listening"' in self.text():
                try:
                    if requests.get(url + "/runtime/ready", timeout=5).status_code == 200:
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.5)
        raise AssertionError("make serve did not become ready:\n" + self.text()[-6000:])

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def test_readme_tour(clone):
    steps = tour_steps()
    env = dict(os.environ)
    for k in ("PAR_LISTEN", "PAR_SERVER", "PAR_TOKEN", "PAR_WORKER", "PAR_PYTHON_SHIM"):
        env.pop(k, None)
    port = 8080
    if not port_free(port):  # as the README says: PAR_LISTEN, and that port for 8080
        port = free_port()
        env["PAR_LISTEN"] = f"127.0.0.1:{port}"
    make_args = ["CMAKE_ARGS=-DPAR_SANITIZE=ON"] if SANITIZE else []
    if SANITIZE:
        env["ASAN_OPTIONS"] = "abort_on_error=0:detect_leaks=1"
        env["LSAN_OPTIONS"] = "suppressions=" + os.path.join(SOURCE, "tests", "lsan.supp")
    srv = MakeServe(str(clone), env, make_args)
    failures = []
    try:
        srv.wait_ready(f"http://127.0.0.1:{port}")
        for cmd, want in steps:
            cmd = cmd.replace("localhost:8080", f"localhost:{port}")
            assign = ASSIGN.match(cmd)
            script = f'{cmd} && printf %s "${assign.group(1)}"' if assign else cmd
            r = subprocess.run(["bash", "-c", script], cwd=clone, env=env,
                               capture_output=True, text=True, timeout=600)
            out = r.stdout.rstrip("\n")
            if r.returncode != 0:
                failures.append(f"$ {cmd}\nexit {r.returncode}\n{r.stdout}{r.stderr}")
                continue
            if assign:
                if not out:
                    failures.append(f"$ {cmd}\n${assign.group(1)} is empty\n{r.stderr}")
                env[assign.group(1)] = out
            if want is not None and not pattern(want).fullmatch(out):
                failures.append(f"$ {cmd}\nREADME shows:\n{want}\ngot:\n{out}\n{r.stderr}")
            elif cmd.startswith("curl -N "):
                try:
                    run_id = check_sse(out)[0][2]["run_id"]
                    # the run streamed is the one started in the background
                    assert run_id in re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""),
                                            cmd), run_id
                except (AssertionError, ValueError, IndexError, KeyError) as e:
                    failures.append(f"$ {cmd}\nnot a finished run's SSE: {e!r}\n{out}")
    finally:
        srv.stop()
    log = srv.text()
    errors = [ln for ln in log.splitlines() if '"level":"error"' in ln]
    sanitizer = [m for m in SANITIZER_MARKERS if m in log]
    assert not failures, ("\n\n".join(failures) + "\n\nserver log (errors):\n" +
                          "\n".join(errors[-20:]))
    assert not errors, "\n".join(errors)
    assert not sanitizer, log[-6000:]
    # make serve filled ./packages with the examples, as the README says
    assert {"echo-1.0.0.apkg", "hello-python-1.0.0.apkg"} <= set(
        os.listdir(os.path.join(clone, "packages")))
