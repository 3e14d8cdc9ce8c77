"""Node.js agents through the Node loader plugin (plugins/node, docs/node-agents.md).

A package in pixell-kit's layout (tests/fixtures/node-agent: `runtime: node18`,
`entrypoint: src/main:echo`, `.env`, `environment`) served by `par serve` with
`plugins: [{path: <build>/plugins/node.so}]`: sync and async
handlers, context.call to a private sibling, logs, errors with stack traces,
ES modules, reloads under load, crashes, and the sandbox battery's file and
network cases. Each hostile test checks that the attempt failed and that the
runtime and a neighbour go on serving.
"""
import concurrent.futures
import json
import os
import shutil
import socket
import struct
import subprocess
import textwrap
import threading
import time
import uuid

import pytest
import requests

from conftest import BUILD, SOURCE, assert_error, package, run
from test_sandbox import EXPECT_ROOT

PLUGIN = os.path.join(BUILD, "plugins", "node.so")
FIXTURE = os.path.join(SOURCE, "tests", "fixtures", "node-agent")
# PAR_TEST_NODE=/path/to/node: the whole module runs its agents with that
# interpreter (the plugin's `node:`), e.g. Debian 12's Node 18 beside a newer
# system node (docs/node-agents.md "Testing another Node.js")
NODE = os.environ.get("PAR_TEST_NODE", "")

pytestmark = pytest.mark.skipif(not NODE and shutil.which("node") is None and
                                shutil.which("nodejs") is None,
                                reason="Node.js is not installed (scripts/install-deps.sh)")


def config(tmp, extra="", plugin_config="", name="par.yaml"):
    if NODE and not plugin_config:
        plugin_config = f"    config: {{node: {NODE}}}\n"
    conf = os.path.join(str(tmp), name)
    with open(conf, "w") as f:
        f.write(f"plugins:\n  - path: {PLUGIN}\n{plugin_config}"
                "auth: {mode: off}\ntrust: {require_signatures: false}\n"
                "limits: {memory_mb: 512}\n" + extra)
    return conf


def pack(d, out, check=False):
    # checked by the plugin's loader as it is packed (`--plugin`); packages
    # meant to be refused at deploy are packed without that check
    how = ["--no-compat"]
    if check:  # with PAR_TEST_NODE, the plugin configured with that interpreter
        how = ["--config", config(os.path.dirname(str(out)), name="pack.yaml")] if NODE \
            else ["--plugin", PLUGIN]
    r = run("pack", str(d), "-o", str(out), *how)
    assert r.returncode == 0, r.stderr
    return str(out)


def fixture_as(tmp, name, version="1.0.0", capabilities=None, edit=None):
    """The fixture package under another name or version, optionally changed."""
    d = os.path.join(str(tmp), f"{name}-{version}-src")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(FIXTURE, d)
    y = open(os.path.join(d, "agent.yaml")).read()
    y = y.replace("name: node-agent", "name: " + name)
    y = y.replace("  version: 1.0.0", "  version: " + version)
    if capabilities:
        y = y.replace("runtime: node18", "runtime: node18\ncapabilities: [%s]" %
                      ", ".join(capabilities))
    with open(os.path.join(d, "agent.yaml"), "w") as f:
        f.write(y)
    if edit:
        edit(d)
    return pack(d, os.path.join(str(tmp), f"{name}-{version}.apkg"), check=True)


def nodepkg(tmp, name, main_js, runtime="node18", entrypoint="src/main:handler", extra=""):
    """A one-file package: src/main.js holding `main_js`."""
    d = os.path.join(str(tmp), name)
    os.makedirs(os.path.join(d, "src"), exist_ok=True)
    with open(os.path.join(d, "agent.yaml"), "w") as f:
        f.write(textwrap.dedent(f"""\
            version: "1.0"
            name: {name}
            display_name: {name}
            description: test package
            author: PAR tests
            license: MIT
            runtime: {runtime}
            entrypoint: {entrypoint}
            metadata:
              version: 1.0.0
            """) + extra)
    with open(os.path.join(d, "src", "main.js"), "w") as f:
        f.write(textwrap.dedent(main_js))
    return pack(d, os.path.join(str(tmp), f"{name}-1.0.0.apkg"))


def call(s, agent, value):
    r = s.post(agent, {"input": value})
    assert r.status_code == 200, r.text
    return r.json()["output"]


def log_lines(s, pred, timeout=10):
    deadline = time.time() + timeout
    while True:
        found = [l for l in s.lines() if pred(l)]
        if found or time.time() > deadline:
            return found
        time.sleep(0.05)


def still_serving(s):
    assert call(s, "node-agent", "again")["echo"] == "again"
    assert s.post("echo", {"input": "x"}).status_code == 200
    assert s.get("/runtime/health").status_code == 200


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nodeconf")
    return server_factory([package("node-agent"), package("echo")],
                          args=["--config", config(tmp)],
                          expected_errors=[r"handler threw", r"error line",
                                           r"process.exit\(3\) called", r"uncaught Error",
                                           r"cannot load src/main.js", r"\"package refused\"",
                                           r"over its limit of 512 MB"])


# ---- served ------------------------------------------------------------------------------


def test_sync_handler(srv):
    out = call(srv, "node-agent", {"k": [1, "two"]})
    assert out["echo"] == {"k": [1, "two"]} and out["agent"] == "node-agent"
    assert out["node"].split(".")[0] in ("18", "19", "20", "21", "22", "23", "24")
    r = srv.post("node-agent", {"input": "x"})
    assert r.json()["metadata"] == {"request_id": r.json()["metadata"]["request_id"],
                                    "package": "node-agent", "version": "1.0.0"}


@pytest.mark.skipif(not NODE, reason="PAR_TEST_NODE names no interpreter")
def test_the_configured_interpreter_runs_the_agents(srv):
    want = subprocess.run([NODE, "--version"], capture_output=True, text=True,
                          timeout=30).stdout.strip().lstrip("v")
    assert call(srv, "node-agent", 1)["node"] == want


def test_async_handlers_overlap(srv):
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
        outs = list(ex.map(lambda _: call(srv, "node-agent/slow", {"ms": 400}), range(8)))
    assert all(o == {"slept": 400, "request": True} for o in outs)
    assert time.time() - t0 < 8 * 0.4  # awaiting handlers overlap


def test_context_call_reaches_a_private_sibling(srv):
    assert call(srv, "node-agent/shout", "hi") == {"shout": "HI!"}
    assert_error(srv.post("node-agent/upper", {"input": "x"}), 404, "agent_not_found")


def test_es_module_export(srv):
    assert call(srv, "node-agent/esm", 5) == {"esm": True, "input": 5}


def test_generator_handler(srv):
    assert call(srv, "node-agent/events", {"n": 3}) == "ticked"


def test_dotenv_and_environment_and_no_node_options(srv):
    assert call(srv, "node-agent/env", None) == {
        "greeting": "hello from agent.yaml", "dotenv": "dotenv value", "node_options": ""}


def test_console_output_becomes_log_lines_of_the_request(srv):
    r = srv.post("node-agent/logs", {"input": 7})
    assert r.status_code == 200 and r.json()["output"] == "logged"
    rid = r.json()["metadata"]["request_id"]
    log_lines(srv, lambda l: l.get("request_id") == rid and l.get("msg") == "stdout line")
    mine = [l for l in srv.lines() if l.get("request_id") == rid and l.get("source") == "agent"]
    by_msg = {l["msg"]: l for l in mine}
    assert by_msg["log line 7"]["level"] == "info"
    assert by_msg["error line { n: 1 }"]["level"] == "error"
    assert by_msg["stdout line"]["agent"] == "node-agent/logs"


def test_errors_carry_the_stack(srv):
    b = assert_error(srv.post("node-agent/boom", {"input": 1}), 500, "agent_error")
    assert b["message"] == "TypeError: Cannot read properties of null (reading 'property')"
    assert "traceback" not in b  # the HTTP body never carries it
    logged = log_lines(srv, lambda l: l.get("request_id") == b["request_id"]
                       and "handler threw" in l.get("msg", ""))
    assert logged and "src/main.js:27" in logged[0]["msg"]
    assert "worker.js" not in logged[0]["msg"]  # the worker's own frames are cut
    b = assert_error(srv.post("node-agent/reject", {"input": 1}), 500, "agent_error")
    assert b["message"] == "RangeError: async failure"
    still_serving(srv)


# ---- crashes -----------------------------------------------------------------------------


def test_process_exit_is_a_crash_and_the_runtime_is_unharmed(srv):
    b = assert_error(srv.post("node-agent/exit", {"input": 1}), 502, "agent_crashed")
    assert "exited with status 3" in b["message"]
    assert log_lines(srv, lambda l: "process.exit(3) called" in l.get("msg", "")
                     and l.get("agent") == "node-agent/exit")
    still_serving(srv)


def test_a_throw_outside_any_handler_ends_the_worker_only(srv):
    assert call(srv, "node-agent/uncaught", None) == "scheduled"
    assert log_lines(srv, lambda l: "uncaught Error; the worker stops" in l.get("msg", "")
                     and "src/main.js" in l.get("msg", ""))
    deadline = time.time() + 10
    while time.time() < deadline:  # a new worker replaces it
        if srv.post("node-agent", {"input": "back"}).status_code == 200:
            break
        time.sleep(0.1)
    still_serving(srv)


def test_a_throw_at_load_refuses_the_deploy(srv, tmp_path):
    apkg = nodepkg(tmp_path, "loadfail", """\
        'use strict';
        const x = 1;
        throw new Error('cannot start');
        """)
    r = requests.post(srv.url + "/runtime/packages", json={"path": apkg}, timeout=120)
    b = assert_error(r, 422, "agent_load_failed")
    assert "src/main.js:3" in b["message"] and "Error: cannot start" in b["message"]
    apkg = nodepkg(tmp_path, "syntax", "exports.handler = (x) => {\n")
    b = assert_error(requests.post(srv.url + "/runtime/packages", json={"path": apkg},
                                   timeout=120), 422, "agent_load_failed")
    assert "src/main.js:" in b["message"] and "SyntaxError" in b["message"]
    still_serving(srv)


def test_deploy_checks_entrypoints(srv, tmp_path):
    apkg = nodepkg(tmp_path, "noentry", "exports.other = () => 1;\n",
                   entrypoint="src/missing:handler")
    b = assert_error(requests.post(srv.url + "/runtime/packages", json={"path": apkg},
                                   timeout=120), 422, "incompatible_package")
    assert "entrypoint: the package has no module src/missing" in b["message"]
    apkg = nodepkg(tmp_path, "nofunc", "exports.other = () => 1;\n")
    b = assert_error(requests.post(srv.url + "/runtime/packages", json={"path": apkg},
                                   timeout=120), 422, "agent_load_failed")
    assert "src/main.js: exports no handler" in b["message"]


def test_node_version_is_checked_at_deploy(server_factory, tmp_path):
    fake = tmp_path / "old-node"
    fake.write_text("#!/bin/sh\necho v16.20.2\n")
    fake.chmod(0o755)
    s = server_factory([], args=["--config", config(
        tmp_path, plugin_config=f"    config: {{node: {fake}}}\n")],
        expected_errors=[r"\"package refused\""])
    apkg = nodepkg(tmp_path, "tooold", "exports.handler = (x) => x;\n", runtime="node18")
    b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": apkg},
                                   timeout=120), 422, "incompatible_package")
    assert f"node18 needs Node.js 18 or newer; the interpreter {fake} is 16.20.2" in b["message"]


def test_dependencies_must_come_in_node_modules(srv, tmp_path):
    apkg = nodepkg(tmp_path, "needsdeps", "exports.handler = (x) => x;\n",
                   extra="dependencies:\n  - left-pad==1.3.0\n")
    b = assert_error(requests.post(srv.url + "/runtime/packages", json={"path": apkg},
                                   timeout=120), 422, "incompatible_package")
    assert "requires 'left-pad==1.3.0' and has no node_modules directory" in b["message"]


def test_an_unknown_plugin_setting_refuses_the_start(tmp_path):
    from conftest import Server
    conf = config(tmp_path, plugin_config="    config: {nodes: /usr/bin/node}\n")
    (tmp_path / "srv").mkdir()
    with pytest.raises(RuntimeError) as e:
        Server(str(tmp_path / "srv"), [], ["--config", conf])
    assert "config.nodes: unknown key (known: node, worker)" in str(e.value)


def test_without_the_plugin_node_packages_have_no_loader(server_factory, tmp_path):
    s = server_factory([], args=["--config", str(_conf_without_plugin(tmp_path))],
                       expected_errors=[r"\"package refused\""])
    b = assert_error(requests.post(s.url + "/runtime/packages",
                                   json={"path": package("node-agent")}, timeout=120),
                     422, "incompatible_package")
    assert "no loader for runtime node18" in b["message"]


def test_pack_checks_node_packages_with_the_plugin(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIXTURE, src)
    out = str(tmp_path / "a.apkg")
    # without the plugin: refused, and the message names the options
    r = run("pack", str(src), "-o", out)
    assert r.returncode == 1 and not os.path.exists(out)
    assert "no loader for runtime node18" in r.stderr, r.stderr
    assert "--plugin PATH" in r.stderr and "--config FILE" in r.stderr, r.stderr
    # with it (directly or through a configuration's plugins): checked and packed
    r = run("pack", str(src), "-o", out, "--plugin", PLUGIN)
    assert r.returncode == 0 and os.path.exists(out), r.stderr
    assert "plugin loaded" not in r.stderr, r.stderr  # quiet: warnings only
    conf = config(tmp_path)
    r = run("pack", str(src), "-o", str(tmp_path / "b.apkg"), "--config", conf)
    assert r.returncode == 0, r.stderr
    assert open(out, "rb").read() == open(tmp_path / "b.apkg", "rb").read()
    # the loader's own checks: a missing entrypoint module is refused at pack
    y = (src / "agent.yaml").read_text().replace("entrypoint: src/main:echo",
                                                 "entrypoint: src/missing:echo")
    (src / "agent.yaml").write_text(y)
    r = run("pack", str(src), "-o", str(tmp_path / "c.apkg"), "--plugin", PLUGIN)
    assert r.returncode == 1 and not os.path.exists(tmp_path / "c.apkg")
    assert "entrypoint: the package has no module src/missing" in r.stderr, r.stderr
    # a plugin that cannot be loaded is named
    r = run("pack", str(src), "-o", out, "--plugin", str(tmp_path / "none.so"))
    assert r.returncode == 1 and "plugins[0]" in r.stderr and "none.so" in r.stderr, r.stderr


def _conf_without_plugin(tmp):
    conf = tmp / "plain.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n")
    return conf


# ---- reload ------------------------------------------------------------------------------


def test_reload_under_load_fails_nothing(server_factory, tmp_path):
    v1 = fixture_as(tmp_path, "noder", "1.0.0")
    v2 = fixture_as(tmp_path, "noder", "1.0.1")
    s = server_factory([v1], args=["--config", config(tmp_path)])
    results, deployed = [], []
    reloaded = threading.Event()

    def client(n):
        # at least n requests each, and on until the last deploy is done
        sess = requests.Session()
        out = []
        while len(out) < n or not reloaded.is_set():
            out.append(sess.post(s.url + "/agents/noder/shout/invoke",
                                 json={"input": f"v{len(out)}"}, timeout=30))
        return out

    def reloader():
        try:
            for i in range(4):
                time.sleep(0.2)
                r = requests.post(s.url + "/runtime/packages",
                                  json={"path": v2 if i % 2 == 0 else v1}, timeout=120)
                deployed.append(r.status_code)
        finally:
            reloaded.set()

    t = threading.Thread(target=reloader)
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as ex:
        futures = [ex.submit(client, 40) for _ in range(16)]  # 640 requests or more
        t.start()
        for f in futures:
            results += f.result()
    t.join()
    assert deployed == [201] * 4
    failed = [(r.status_code, r.text) for r in results if r.status_code != 200]
    assert not failed, failed[:5]
    assert all(r.json()["output"]["shout"].startswith("V") for r in results)
    assert {r.json()["metadata"]["version"] for r in results} == {"1.0.0", "1.0.1"}


# ---- hostile -----------------------------------------------------------------------------


def sandbox(s, agent="node-agent"):
    return call(s, agent + "/whoami", None)["sandbox"]


def test_runs_inside_the_sandbox(srv):
    me = call(srv, "node-agent/whoami", None)
    sb = me["sandbox"]
    assert sb["enabled"] and sb["seccomp"] and sb["no_new_privs"]
    assert sb["network"] is False and sb["subprocess"] is False
    assert "/scratch/node-agent@1.0.0." in me["tmpdir"]
    if EXPECT_ROOT:
        assert me["uid"] != 0 and sb["uid"] == me["uid"]


def test_read_etc_shadow(srv):
    assert call(srv, "node-agent/read", "/etc/shadow") == {"errno": "EACCES"}
    still_serving(srv)


def test_read_outside_the_package(srv):
    path = f"/tmp/par-node-{uuid.uuid4().hex}"
    with open(path, "w") as f:
        f.write("secret\n")
    os.chmod(path, 0o644)
    try:
        assert call(srv, "node-agent/read", "agent.yaml") == {"read": True}
        got = call(srv, "node-agent/read", path)
        assert got == ({"errno": "EACCES"} if sandbox(srv)["landlock"] else {"read": True})
    finally:
        os.unlink(path)
    still_serving(srv)


def test_write_outside_the_scratch_directory(srv):
    path = f"/tmp/par-node-{uuid.uuid4().hex}"
    assert call(srv, "node-agent/write", "$TMPDIR/mine.txt") == {"written": True}
    got = call(srv, "node-agent/write", path)
    try:
        if sandbox(srv)["landlock"]:
            assert got == {"errno": "EACCES"} and not os.path.exists(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    assert call(srv, "node-agent/write", "agent.yaml") == {"errno": "EACCES"}
    still_serving(srv)


@pytest.fixture()
def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.settimeout(0.2)
    yield s
    s.close()


def accepted(sock):
    try:
        c, _ = sock.accept()
        c.close()
        return True
    except socket.timeout:
        return False


def test_tcp_connect_without_network_capability(srv, listener):
    got = call(srv, "node-agent/connect", listener.getsockname()[1])
    assert got == {"errno": "EPERM"}
    assert not accepted(listener)
    still_serving(srv)


def test_no_subprocess_without_the_capability(srv):
    assert call(srv, "node-agent/spawn", None) == {"errno": "EPERM"}
    still_serving(srv)


def test_buffers_over_the_memory_limit_end_the_worker(srv):
    b = assert_error(srv.post("node-agent/buffers", {"input": 1}), 502, "agent_crashed")
    assert "killed by signal 9" in b["message"]
    assert log_lines(srv, lambda l: "over its limit of 512 MB; it is killed" in l.get("line", ""))
    still_serving(srv)


def test_a_full_v8_heap_ends_the_worker(srv):
    r = srv.post("node-agent/heap", {"input": 1}, timeout=60)
    assert_error(r, 502, "agent_crashed")
    still_serving(srv)


def test_tcp_connect_with_network_capability(server_factory, tmp_path, listener):
    pkg = fixture_as(tmp_path, "netnode", capabilities=["network"])
    s = server_factory([pkg], args=["--config", config(tmp_path)])
    assert sandbox(s, "netnode")["network"] is True
    assert call(s, "netnode/connect", listener.getsockname()[1]) == {"connected": True}
    assert accepted(listener)
    assert call(s, "netnode/read", "/etc/shadow") == {"errno": "EACCES"}


# ---- the worker protocol, without a runtime ------------------------------------------------
# worker.js on one end of a socketpair (--fd N; par-worker --exec gives it descriptor 3):
# the event window, cancels and streamed calls, which HTTP invocations do not show.

PROTO_HANDLERS = """\
exports.emitter = async (n, ctx) => {
  for (let i = 0; i < n; i++) await ctx.emit({ i }, 'tick');
  return 'emitted';
};
exports.waiter = (x, ctx) => new Promise((resolve, reject) => {
  ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
});
exports.badEvent = (x, ctx) => ctx.emit(1, 'not a type!');
exports.streamer = async (x, ctx) => {
  const s = ctx.stream('child', x);
  const seen = [];
  for await (const ev of s) seen.push([ev.event, ev.data]);
  return { seen, output: s.output };
};
"""
FRAME = struct.Struct("<BBHIIIQ")


class RawWorker:
    def __init__(self, tmp, exports):
        root = tmp / "rawpkg"
        (root / "src").mkdir(parents=True, exist_ok=True)
        (root / "src" / "main.js").write_text(PROTO_HANDLERS)
        self.sock, theirs = socket.socketpair()
        node = shutil.which("node") or shutil.which("nodejs")
        args = [node, os.path.join(BUILD, "plugins", "node", "worker.js"), "--fd",
                str(theirs.fileno()), "--root", str(root)]
        for name, fn in exports:
            args += ["--export", f"{name}=src/main:{fn}"]
        self.proc = subprocess.Popen(args, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self.sock.settimeout(10)
        self.buf = b""

    def send(self, ftype, fid, header=None, body=b""):
        h = json.dumps(header).encode() if header is not None else b""
        self.sock.sendall(FRAME.pack(ftype, 1, 0, len(h), len(body), 0, fid) + h + body)

    def recv(self):
        while True:
            if len(self.buf) >= FRAME.size:
                ftype, _v, _f, hl, bl, _r, fid = FRAME.unpack_from(self.buf)
                end = FRAME.size + hl + bl
                if len(self.buf) >= end:
                    h = json.loads(self.buf[FRAME.size:FRAME.size + hl]) if hl else {}
                    body = self.buf[FRAME.size + hl:end]
                    self.buf = self.buf[end:]
                    if ftype != 7:  # LOG lines are not what these tests look at
                        return ftype, fid, h, body
                    continue
            chunk = self.sock.recv(65536)
            assert chunk, "the worker closed the socket"
            self.buf += chunk

    def pending(self, wait=0.3):
        """True when the worker sent nothing (but LOG) within `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            self.recv()
            return False
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(10)

    def close(self):
        self.sock.close()
        assert self.proc.wait(timeout=10) == 0  # EOF on descriptor 3: exit 0


@pytest.fixture()
def raw(tmp_path):
    w = RawWorker(tmp_path, [("", "emitter"), ("waiter", "waiter"), ("bad", "badEvent"),
                             ("streamer", "streamer")])
    ftype, _, hello, _ = w.recv()
    assert ftype == 1 and hello["exports"] == ["", "waiter", "bad", "streamer"]
    assert hello["runtime"] == "node" and hello["pid"] == w.proc.pid
    yield w
    w.close()


def test_emit_keeps_to_the_window_of_64(raw):
    raw.send(2, 7, {"x": 0}, b"100")
    got = [raw.recv() for _ in range(64)]
    assert all(f[0] == 12 and f[1] == 7 and f[2] == {"event": "tick"} for f in got)
    assert [json.loads(f[3])["i"] for f in got] == list(range(64))
    assert raw.pending()  # the window is full: nothing more until EVENT_ACK
    raw.send(13, 7, {"n": 40})
    got = [raw.recv() for _ in range(36)]
    assert [json.loads(f[3])["i"] for f in got] == list(range(64, 100))
    ftype, fid, _, body = raw.recv()
    assert (ftype, fid, body) == (3, 7, b'"emitted"')


def test_cancel_aborts_the_signal_and_is_answered(raw):
    raw.send(2, 9, {"x": 1}, b"null")
    assert raw.pending()
    raw.send(10, 9)
    ftype, fid, h, _ = raw.recv()
    assert (ftype, fid, h["error"]) == (4, 9, "cancelled")


def test_an_invalid_event_is_the_agents_error(raw):
    raw.send(2, 11, {"x": 2}, b"null")
    ftype, fid, h, _ = raw.recv()
    assert (ftype, fid, h["error"]) == (4, 11, "agent_error")
    assert "1 to 64 characters" in h["message"] and "traceback" in h


def test_stream_gives_the_callees_events_then_its_output(raw):
    raw.send(2, 13, {"x": 3}, b'"in"')
    ftype, cid, h, body = raw.recv()
    assert ftype == 5 and h == {"agent": "child", "parent": 13, "stream": True} and body == b'"in"'
    raw.send(14, cid, {"event": "step"}, b'{"n":1}')
    raw.send(14, cid, {"event": "step"}, b'{"n":2}')
    raw.send(6, cid, {"status": 0}, b'"out"')
    ftype, fid, _, body = raw.recv()
    assert (ftype, fid) == (3, 13)
    assert json.loads(body) == {"seen": [["step", {"n": 1}], ["step", {"n": 2}]], "output": "out"}
