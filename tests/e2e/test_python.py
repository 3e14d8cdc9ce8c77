"""Python agents: pixell-kit packages run unchanged in PAR's Python worker."""
import base64
import concurrent.futures
import hashlib
import json
import os
import re
import textwrap
import time
import zipfile

import pytest
import requests
import yaml

from conftest import assert_error, package, run

MANIFEST = """\
version: "1.0"
name: {name}
display_name: {name}
description: test package
author: PAR tests
license: MIT
runtime: {runtime}
entrypoint: {entrypoint}
metadata:
  version: {version}
{extra}"""


def pypkg(tmp, name, files, version="1.0.0", entrypoint="src.main:handler",
          runtime="python3.11", extra="", sub_agents=None, pack_args=()):
    """Writes a pixell-kit style package directory and packs it; returns the .apkg path."""
    d = os.path.join(str(tmp), f"{name}-{version}")
    os.makedirs(d, exist_ok=True)
    if sub_agents:
        extra = "  sub_agents:\n" + "".join(
            f"    - {{name: {n}, description: {n}, public: {str(pub).lower()}"
            + (f", entrypoint: \"{e}\"" if e else "") + "}\n"
            for n, pub, e in sub_agents) + extra
    with open(os.path.join(d, "agent.yaml"), "w") as f:
        f.write(MANIFEST.format(name=name, runtime=runtime, entrypoint=entrypoint,
                                version=version, extra=extra))
    for rel, text in files.items():
        p = os.path.join(d, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(textwrap.dedent(text))
    if "src/__init__.py" not in files and any(k.startswith("src/") for k in files):
        open(os.path.join(d, "src", "__init__.py"), "w").close()
    out = os.path.join(str(tmp), f"{name}-{version}.apkg")
    r = run("pack", d, "-o", out, *pack_args)
    assert r.returncode == 0, r.stderr
    return out


def log_lines(s, pred, timeout=10):
    """The server's log lines matching `pred`, waiting for the log writer to catch up."""
    deadline = time.time() + timeout
    while True:
        found = [l for l in s.lines() if pred(l)]
        if found or time.time() > deadline:
            return found
        time.sleep(0.05)


def deploy(s, path, expect=201):
    r = requests.post(s.url + "/runtime/packages", json={"path": path}, timeout=120)
    assert r.status_code == expect, r.text
    return r.json()


HANDLERS = """\
import asyncio
import logging
import os
import sys


def plain(input):
    return {"got": input}


def with_context(input, context):
    return {"request_id": context.request_id, "trace_id": context.trace_id,
            "agent": context.agent, "sub_agent": context.sub_agent,
            "deadline_ms": context.deadline_ms, "data": context.data,
            "subject": context.subject}


async def coro(input):
    await asyncio.sleep(0.01)
    return {"async": True, "got": input}


async def coro_with_context(input, ctx):
    ctx.usage(tokens=3)
    ctx.usage(tokens=4, calls=1)
    out = await ctx.call("secret", {"from": "coro"})
    return {"agent": ctx.agent, "inner": out}


def calls_private(input, context):
    return {"inner": context.call("secret", {"from": "sync"})}


def secret(input):
    return {"secret": True, "echo": input}


def fails(input):
    raise ValueError("bad input: " + str(input))


def not_json(input):
    return {"when": object()}


def calls_missing(input, context):
    try:
        context.call("nope", {})
    except Exception as e:
        return {"error": e.error, "type": type(e).__name__}


def slow(input):
    import time
    time.sleep(input)
    return "done"


async def slow_async(input):
    await asyncio.sleep(input)
    return "done"


def chatty(input):
    print("hello from print", input)
    print("to stderr", file=sys.stderr)
    logging.getLogger("agent").warning("a warning from logging")
    os.write(1, b"raw bytes on fd 1\\n")
    print("x" * (5 << 20))
    return {"ok": True}


def env(input):
    return {k: os.environ.get(k) for k in input}


def host_modules(input):
    found = []
    for name in input:
        try:
            __import__(name)
            found.append(name)
        except ImportError:
            pass
    return found


def metered(input, context):
    context.usage(tokens=5)
    if isinstance(input, dict):  # many units: more than a kilobyte of them
        context.usage(**{"unit_%03d_with_a_long_name" % i: i for i in range(input["units"])})
        return "x"
    return "x" * input


def calls_metered(input, context):
    context.usage(tokens=1)
    try:
        out = context.call("metered", input)
        return {"len": len(out)}
    except Exception as e:
        return {"error": e.error, "message": e.message}


async def exits(input):
    import sys
    sys.exit(3)


def deep(input):
    out = []
    for _ in range(5000):
        out = [out]
    return out


def hog(input):
    blocks = []
    while True:
        blocks.append(bytearray(64 << 20))
"""

EXPORTS = ["plain", "with_context", "coro", "coro_with_context", "calls_private", "fails",
           "not_json", "calls_missing", "slow", "slow_async", "chatty", "env", "hog",
           "host_modules", "calls_metered", "exits", "deep"]


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pyagents")
    subs = [(n.replace("_", "-"), True, "src.handlers:" + n) for n in EXPORTS]
    subs.append(("secret", False, "src.handlers:secret"))
    subs.append(("metered", False, "src.handlers:metered"))
    apkg = pypkg(tmp, "pyagents", {"src/handlers.py": HANDLERS},
                 entrypoint="src.handlers:plain", sub_agents=subs,
                 extra="  par:\n    limits: {timeout_ms: 30000, memory_mb: 512}\n")
    return server_factory([apkg, package("hello-python"), package("echo")],
                          expected_errors=[r"handler raised ValueError",
                                           r"\"package refused\"",
                                           r"ended the event loop with SystemExit"])


def test_sync_handler(srv):
    r = srv.post("pyagents", {"input": {"a": [1, 2]}})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == {"got": {"a": [1, 2]}}


def test_context_argument(srv):
    r = srv.post("pyagents/with-context", {"input": None, "context": {"k": "v"}},
                 headers={"X-Request-ID": "req-python-1",
                          "traceparent": "00-0af7651916cd43dd8448eb211c80319c-"
                                         "b7ad6b7169203331-01"})
    assert r.status_code == 200, r.text
    out = r.json()["output"]
    assert out["request_id"] == "req-python-1"
    assert out["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert out["agent"] == "pyagents/with-context" and out["sub_agent"] == "with-context"
    assert 0 < out["deadline_ms"] <= 30000
    assert out["data"] == {"k": "v"}
    assert out["subject"] is None
    # a context far larger than the INVOKE header's stack buffer arrives whole
    big = {"k": "v" * 20000, "list": list(range(500)), "quote": 'a"b\\c'}
    r = srv.post("pyagents/with-context", {"input": None, "context": big})
    assert r.status_code == 200, r.text
    assert r.json()["output"]["data"] == big


def test_async_handlers_and_units(srv):
    r = srv.post("pyagents/coro", {"input": 7})
    assert r.status_code == 200 and r.json()["output"] == {"async": True, "got": 7}
    r = srv.post("pyagents/coro-with-context", {"input": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output"]["inner"] == {"secret": True, "echo": {"from": "coro"}}
    assert body["metadata"]["units"] == {"tokens": 7, "calls": 1}


def test_private_sub_agent(srv):
    r = srv.post("pyagents/calls-private", {"input": 1})
    assert r.status_code == 200, r.text
    assert r.json()["output"]["inner"] == {"secret": True, "echo": {"from": "sync"}}
    # over HTTP a private sub-agent answers exactly like an unknown one
    assert_error(srv.post("pyagents/secret", {"input": 1}), 404, "agent_not_found")
    agents = [a["id"] for a in srv.get("/agents").json()["agents"]]
    assert "pyagents/calls-private" in agents and "pyagents/secret" not in agents
    r = srv.post("pyagents/calls-missing", {"input": 1})
    assert r.json()["output"] == {"error": "agent_not_found", "type": "AgentCallError"}


def test_sub_agent_units_and_large_sub_agent_output(srv):
    r = srv.post("pyagents/calls-metered", {"input": 10})
    assert r.json()["output"] == {"len": 10}
    assert r.json()["metadata"]["units"] == {"tokens": 6}  # its own 1 + the callee's 5
    # a callee's units roll up however many there are
    r = srv.post("pyagents/calls-metered", {"input": {"units": 200}})
    assert r.status_code == 200, r.text
    units = r.json()["metadata"]["units"]
    assert units.pop("tokens") == 6
    assert units == {"unit_%03d_with_a_long_name" % i: i for i in range(200)}
    # more than the caller accepts (max_input 1 MiB): an error for the caller, whose
    # worker keeps serving
    r = srv.post("pyagents/calls-metered", {"input": 2 << 20})
    assert r.status_code == 200, r.text
    out = r.json()["output"]
    assert out["error"] == "output_too_large" and "exceeds what its caller accepts" in \
        out["message"]
    assert srv.post("pyagents", {"input": 5}).json()["output"] == {"got": 5}


def test_sys_exit_in_a_coroutine_ends_the_worker(srv):
    assert_error(srv.post("pyagents/exits", {"input": 1}), 502, "agent_crashed")
    deadline = time.time() + 15
    while srv.post("pyagents/coro", {"input": 1}).status_code != 200:
        assert time.time() < deadline
        time.sleep(0.05)


def test_output_json_cannot_encode(srv):
    b = assert_error(srv.post("pyagents/deep", {"input": 1}), 502, "invalid_agent_output")
    assert "recursion" in b["message"].lower()


def test_host_site_packages_are_invisible(srv):
    # installed on the host for PAR's own tests (python3-yaml, python3-requests)
    r = srv.post("pyagents/host-modules", {"input": ["yaml", "requests", "json"]})
    assert r.json()["output"] == ["json"]


def test_exception_is_agent_error(srv):
    b = assert_error(srv.post("pyagents/fails", {"input": 42}), 500, "agent_error")
    assert b["message"] == "ValueError: bad input: 42"
    assert "Traceback" not in b["message"]
    tb = log_lines(srv, lambda l: "handler raised ValueError" in l.get("msg", ""))
    assert tb and "Traceback (most recent call last)" in tb[-1]["msg"]
    assert tb[-1]["agent"] == "pyagents/fails" and tb[-1]["request_id"] == b["request_id"]
    b = assert_error(srv.post("pyagents/not-json", {"input": 1}), 502, "invalid_agent_output")
    assert "JSON-serialisable" in b["message"]
    assert srv.post("pyagents", {"input": 1}).status_code == 200


def test_print_and_logging_become_log_lines(srv):
    r = srv.post("pyagents/chatty", {"input": "abc"})
    assert r.status_code == 200 and r.json()["output"] == {"ok": True}
    rid = r.json()["metadata"]["request_id"]
    log_lines(srv, lambda l: l.get("msg", "").startswith("xxxx"))
    lines = srv.lines()
    printed = [l for l in lines if l.get("msg") == "hello from print abc"]
    assert printed and printed[0]["agent"] == "pyagents/chatty"
    assert printed[0]["request_id"] == rid and printed[0]["source"] == "agent"
    assert any(l.get("msg") == "to stderr" and l["level"] == "warn" for l in lines)
    assert any(l.get("msg") == "a warning from logging" and l["level"] == "warn"
               and l.get("request_id") == rid for l in lines)
    assert any(l.get("line") == "raw bytes on fd 1" for l in lines)
    big = [l for l in lines if l.get("msg", "").startswith("xxxx")]
    assert big and len(big[0]["msg"]) < 9000  # one line, cut
    # the protocol stream was never disturbed
    assert srv.post("pyagents", {"input": 2}).json()["output"] == {"got": 2}


def test_100_concurrent_calls(srv):
    def one(i):
        agent = "pyagents/slow" if i % 2 else "pyagents/slow-async"
        return srv.post(agent, {"input": 0.05}, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(100) as ex:
        rs = list(ex.map(one, range(100)))
    assert [r.status_code for r in rs] == [200] * 100
    assert all(r.json()["output"] == "done" for r in rs)


def test_timeout(srv):
    assert_error(srv.post("pyagents/slow-async", {"input": 30},
                          headers={"X-Par-Timeout-Ms": "300"}), 504, "agent_timeout")
    assert_error(srv.post("pyagents/slow", {"input": 30},
                          headers={"X-Par-Timeout-Ms": "300"}), 504, "agent_timeout")
    assert srv.post("pyagents/coro", {"input": 1}).status_code == 200


def test_memory_limit(srv):
    b = assert_error(srv.post("pyagents/hog", {"input": 1}), 500, "out_of_memory")
    assert "512 MB" in b["message"]
    assert srv.post("pyagents", {"input": 3}).status_code == 200


def test_hello_python_example(srv):
    r = srv.post("hello-python", {"input": {"name": "Ada"}})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == {"message": "Hello, Ada!", "caller": None}
    r = srv.post("hello-python/shout", {"input": {"name": "Ada"}})
    assert r.json()["output"] == {"message": "HELLO, ADA!"}
    assert r.json()["metadata"]["units"] == {"characters": 11}
    assert_error(srv.post("hello-python/format", {"input": {}}), 404, "agent_not_found")
    rec = srv.get("/runtime/packages/hello-python").json()
    assert rec["state"] == "active" and rec["runtime"] == "python3.11"
    assert srv.post("echo", {"input": "native beside python"}).status_code == 200


def test_one_handler_for_several_sub_agents(server_factory, tmp_path):
    """A sub-agent without an entrypoint runs the package's, which tells them apart
    through the context, attribute- or dict-style."""
    code = """\
        def handler(input, context=None):
            if context and context.get("sub_agent") == "upper":
                return {k: v.upper() for k, v in input.items()}
            if context["sub_agent"] == "lower":
                return {k: v.lower() for k, v in input.items()}
            return {"sub_agent": context.sub_agent, "input": input,
                    "k": context.get("k"), "has_k": "k" in context}
        """
    apkg = pypkg(tmp_path, "multi", {"src/main.py": code},
                 sub_agents=[("upper", True, None), ("lower", True, None)])
    s = server_factory([apkg])
    assert s.post("multi/upper", {"input": {"t": "Ab"}}).json()["output"] == {"t": "AB"}
    assert s.post("multi/lower", {"input": {"t": "Ab"}}).json()["output"] == {"t": "ab"}
    out = s.post("multi", {"input": 1, "context": {"k": "v", "sub_agent": "spoof"}}).json()
    assert out["output"] == {"sub_agent": None, "input": 1, "k": "v", "has_k": True}


def test_same_module_names_do_not_mix(server_factory, tmp_path):
    a = pypkg(tmp_path, "alpha", {"src/main.py": "def handler(i):\n    return 'alpha'\n",
                                  "main.py": "def handler(i):\n    return 'top alpha'\n"},
              sub_agents=[("top", True, "main:handler")])
    b = pypkg(tmp_path, "beta", {"src/main.py": "def handler(i):\n    return 'beta'\n",
                                 "main.py": "def handler(i):\n    return 'top beta'\n"},
              sub_agents=[("top", True, "main:handler")])
    s = server_factory([a, b])
    for _ in range(3):
        assert s.post("alpha", {"input": 0}).json()["output"] == "alpha"
        assert s.post("beta", {"input": 0}).json()["output"] == "beta"
        assert s.post("alpha/top", {"input": 0}).json()["output"] == "top alpha"
        assert s.post("beta/top", {"input": 0}).json()["output"] == "top beta"


def test_reload_runs_new_code(server_factory, tmp_path):
    s = server_factory([])
    v1 = pypkg(tmp_path, "reloady", {"src/main.py": "def handler(i):\n    return 'v1'\n"})
    deploy(s, v1)
    assert s.post("reloady", {"input": 0}).json()["output"] == "v1"
    v2 = pypkg(tmp_path, "reloady", {"src/main.py": "def handler(i):\n    return 'v2'\n"},
               version="1.0.1")
    deploy(s, v2)
    assert s.post("reloady", {"input": 0}).json()["output"] == "v2"
    # same version number, changed code (a directory deploy): still the new code
    d = os.path.join(str(tmp_path), "reloady-1.0.1")
    with open(os.path.join(d, "src", "main.py"), "w") as f:
        f.write("def handler(i):\n    return 'v2 edited'\n")
    deploy(s, d)
    assert s.post("reloady", {"input": 0}).json()["output"] == "v2 edited"


def test_environment(server_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("PAR_TEST_ALLOWED", "from the operator")
    monkeypatch.setenv("PAR_TEST_SECRET", "must not leak")
    apkg = pypkg(tmp_path, "envy", {
        "src/main.py": "import os\ndef handler(i):\n"
                       "    return {k: os.environ.get(k) for k in i}\n",
        ".env": "# comment\nFROM_DOTENV=dotenv value\nexport QUOTED=\"a \\\"b\\\"\"\n"
                "OVERRIDDEN=from .env\nSINGLE='p$$w${PAR_TEST_ALLOWED}'\n"
                "ESCAPED=\"\\${PAR_TEST_ALLOWED}\"\n"},
        extra="environment:\n  PLAIN: plain\n  OVERRIDDEN: from agent.yaml\n"
              "  ALLOWED: \"x ${PAR_TEST_ALLOWED} y\"\n  SECRET: \"${PAR_TEST_SECRET}\"\n"
              "  DOLLAR: \"$$5\"\n")
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n"
                    "env: {allow: [PAR_TEST_ALLOWED]}\n")
    s = server_factory([apkg], args=["--config", str(conf)])
    keys = ["PLAIN", "FROM_DOTENV", "QUOTED", "OVERRIDDEN", "ALLOWED", "SECRET", "DOLLAR",
            "SINGLE", "ESCAPED",
            "PAR_TEST_ALLOWED", "PAR_TEST_SECRET", "HOME"]
    out = s.post("envy", {"input": keys}).json()["output"]
    assert out["PLAIN"] == "plain"
    assert out["FROM_DOTENV"] == "dotenv value"
    assert out["QUOTED"] == 'a "b"'
    assert out["OVERRIDDEN"] == "from agent.yaml"
    assert out["ALLOWED"] == "x from the operator y"
    assert out["SECRET"] == ""
    assert out["DOLLAR"] == "$5"
    assert out["SINGLE"] == "p$$w${PAR_TEST_ALLOWED}"  # single quotes: literal
    assert out["ESCAPED"] == "${PAR_TEST_ALLOWED}"
    # the runtime's own environment never reaches the agent
    assert out["PAR_TEST_ALLOWED"] is None and out["PAR_TEST_SECRET"] is None
    warn = log_lines(s, lambda l: l.get("msg") == "package environment")
    assert warn and "PAR_TEST_SECRET" in warn[0]["warnings"]


def make_wheel(wheelhouse, name, version, module_text):
    """A minimal pure-Python wheel, built by hand (PEP 427)."""
    files = {
        f"{name}/__init__.py": module_text,
        f"{name}-{version}.dist-info/METADATA":
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{name}-{version}.dist-info/WHEEL":
            "Wheel-Version: 1.0\nGenerator: par-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
    }
    record = f"{name}-{version}.dist-info/RECORD"
    rows = []
    for p, c in files.items():
        d = base64.urlsafe_b64encode(hashlib.sha256(c.encode()).digest()).rstrip(b"=")
        rows.append(f"{p},sha256={d.decode()},{len(c.encode())}")
    files[record] = "\n".join(rows + [f"{record},,"]) + "\n"
    with zipfile.ZipFile(os.path.join(wheelhouse, f"{name}-{version}-py3-none-any.whl"),
                         "w") as z:
        for p, c in files.items():
            z.writestr(p, c)


def test_requirements_from_the_wheelhouse(server_factory, tmp_path):
    wh = tmp_path / "wheels"
    wh.mkdir()
    make_wheel(str(wh), "parhello", "1.2.0", "GREETING = 'hello from a wheel'\n")
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n"
                    f"python: {{wheelhouse: {wh}}}\n")
    s = server_factory([], args=["--config", str(conf)],
                       expected_errors=[r"\"package refused\""])
    code = "import parhello\ndef handler(i):\n    return parhello.GREETING\n"
    ok = pypkg(tmp_path, "withdeps", {"src/main.py": code, "requirements.txt":
                                      "# pinned\nparhello==1.2.0\n"})
    rec = deploy(s, ok)
    assert rec["state"] == "active"
    assert s.post("withdeps", {"input": 0}).json()["output"] == "hello from a wheel"
    venvs = os.listdir(os.path.join(s.tmp, "var", "venvs"))
    assert len(venvs) == 1
    # the same requirements reuse the environment
    ok2 = pypkg(tmp_path, "withdeps", {"src/main.py": code, "requirements.txt":
                                       "parhello==1.2.0\n"}, version="1.0.1")
    deploy(s, ok2)
    assert os.listdir(os.path.join(s.tmp, "var", "venvs")) == venvs
    # `dependencies` in agent.yaml count too; a missing one is named
    bad = pypkg(tmp_path, "missingdeps", {"src/main.py": code},
                extra="dependencies:\n  - nothere>=1.0\n")
    b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": bad},
                                   timeout=120), 422, "dependencies_unavailable")
    assert "nothere>=1.0" in b["message"]
    assert not [v for v in os.listdir(os.path.join(s.tmp, "var", "venvs"))
                if v.startswith(".tmp")]
    # pip options cannot smuggle in an index
    opt = pypkg(tmp_path, "sneaky", {"src/main.py": code, "requirements.txt":
                                     "--index-url https://example.com/simple\nparhello\n"},
                pack_args=["--no-compat"])
    b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": opt},
                                   timeout=120), 422, "incompatible_package")
    assert "pip options are not allowed" in b["message"]
    assert s.post("withdeps", {"input": 0}).status_code == 200


def test_requirements_without_a_wheelhouse(server_factory, tmp_path):
    s = server_factory([], expected_errors=[r"\"package refused\""])
    apkg = pypkg(tmp_path, "needsdeps", {"src/main.py": "def handler(i):\n    return 1\n",
                                         "requirements.txt": "requests>=2\n"})
    b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": apkg},
                                   timeout=60), 422, "dependencies_unavailable")
    assert "requests>=2" in b["message"] and "wheelhouse" in b["message"]
    # an empty requirements.txt (pixell-kit's default) needs nothing
    empty = pypkg(tmp_path, "nodeps", {"src/main.py": "def handler(i):\n    return 1\n",
                                       "requirements.txt": "\n# nothing\n"})
    deploy(s, empty)
    assert not os.path.exists(os.path.join(s.tmp, "var", "venvs"))


def test_load_failures_are_named(server_factory, tmp_path):
    s = server_factory([], expected_errors=[r"\"package refused\"", r"cannot import"])
    cases = [
        (pypkg(tmp_path, "nomodule", {"src/other.py": "x = 1\n"}, pack_args=["--no-compat"]),
         "incompatible_package", ["the package has no module src.main"]),
        (pypkg(tmp_path, "importfails", {"src/main.py": "x = 1\n1 / 0\n"}),
         "agent_load_failed",
         ["src/main.py:2: cannot import src.main: ZeroDivisionError: division by zero",
          'File "', "Traceback (most recent call last)"]),
        (pypkg(tmp_path, "syntaxerr", {"src/main.py": "x = 1\ndef handler(i):\n  return (\n"}),
         "agent_load_failed", ["src/main.py:3: cannot import src.main: SyntaxError: "]),
        (pypkg(tmp_path, "importerr", {"src/main.py": "import os\nimport nothere_at_all\n"}),
         "agent_load_failed",
         ["src/main.py:2: cannot import src.main: ModuleNotFoundError: "
          "No module named 'nothere_at_all'"]),
        (pypkg(tmp_path, "nofunc", {"src/main.py": "x = 1\n"}),
         "agent_load_failed", ["src/main.py: module src.main has no attribute handler "
                               "(entrypoint src.main:handler of the main export)"]),
        (pypkg(tmp_path, "future", {"src/main.py": "def handler(i):\n    return 1\n"},
               runtime="python3.99"), "incompatible_package",
         ["runtime python3.99 needs Python 3.99 or newer"]),
        (pypkg(tmp_path, "nodejs", {"src/main.py": "def handler(i):\n    return 1\n"},
               runtime="node20", pack_args=["--no-compat"]), "incompatible_package", ["no loader for runtime node20"]),
    ]
    for apkg, name, reasons in cases:
        b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": apkg},
                                       timeout=60), 422, name)
        for reason in reasons:
            assert reason in b["message"], (reason, b["message"])
        pkg = os.path.basename(apkg).rsplit("-", 1)[0]
        rec = s.get("/runtime/packages/" + pkg).json()
        assert rec["last_error_name"] == name and reasons[0] in rec["last_error"], rec
    # the traceback is there once, as text
    b = requests.post(s.url + "/runtime/packages", json={"path": cases[1][0]}, timeout=60).json()
    assert b["message"].count("Traceback (most recent call last)") == 1, b["message"]


def test_start_error_shows_the_workers_last_output(server_factory, tmp_path):
    """A worker that dies before it is ready: the deploy error, last_error and the
    log show how it ended and its last output lines (at most 20, 3 KiB)."""
    s = server_factory([], expected_errors=[r"\"package refused\""])
    code = ("import os, sys\n"
            "for i in range(50):\n"
            "    print('loading step %d' % i, file=sys.stderr)\n"
            "os.write(2, b'fatal: the model file is missing\\n')\n"
            "os._exit(3)\n")
    apkg = pypkg(tmp_path, "diesatstart", {"src/main.py": code})
    b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": apkg},
                                   timeout=60), 422, "incompatible_package")
    msg = b["message"]
    assert "exited with status 3 before it was ready" in msg, msg
    assert "fatal: the model file is missing" in msg, msg
    assert "loading step 49" in msg and "loading step 31" in msg, msg
    assert "loading step 30\n" not in msg and "loading step 5\n" not in msg, msg
    rec = s.get("/runtime/packages/diesatstart").json()
    assert "fatal: the model file is missing" in rec["last_error"], rec
    refused = log_lines(s, lambda l: l.get("msg") == "package refused")
    assert refused and "fatal: the model file is missing" in refused[-1]["reason"], refused
    # a long line is cut to its end, the whole stays within 3 KiB, and the log line
    # holds it all
    flood = pypkg(tmp_path, "floodsatstart", {"src/main.py": (
        "import os\nfor i in range(40):\n    os.write(2, (str(i) + 'x' * 5000 + '\\n').encode())\n"
        "os._exit(4)\n")})
    b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": flood},
                                   timeout=60), 422, "incompatible_package")
    assert "exited with status 4" in b["message"] and len(b["message"]) < 3072 + 400, \
        len(b["message"])
    assert b["message"].endswith("x" * 100), b["message"][-200:]
    line = log_lines(s, lambda l: l.get("msg") == "package refused" and
                     "floodsatstart" in l.get("reason", ""))
    assert line and not line[-1].get("truncated") and line[-1]["reason"].rstrip().endswith("x" * 100)


def test_start_error_after_a_burst_of_output_shows_its_end(server_factory, tmp_path):
    """More than a second's worth of log lines (200) before the worker dies: the
    start error still shows the last ones, not the end of the first second's."""
    s = server_factory([], expected_errors=[r"\"package refused\""])
    code = ("import os, sys\n"
            "for i in range(1000):\n"
            "    print('loading step %d' % i, file=sys.stderr)\n"
            "os._exit(3)\n")
    apkg = pypkg(tmp_path, "burstatstart", {"src/main.py": code})
    b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": apkg},
                                   timeout=60), 422, "incompatible_package")
    assert b["message"].endswith("loading step 999"), b["message"]


def test_output_line_with_a_nul_is_kept(server_factory, tmp_path):
    """A printed NUL is escaped, not the reason its whole line disappears."""
    s = server_factory([], expected_errors=[r"\"package refused\""])
    code = ("import os, sys\n"
            "print('bad \\x00 byte', file=sys.stderr)\n"
            "os._exit(3)\n")
    apkg = pypkg(tmp_path, "nulatstart", {"src/main.py": code})
    b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": apkg},
                                   timeout=60), 422, "incompatible_package")
    assert b["message"].endswith("bad \\x00 byte"), b["message"]


def test_python_self_recursion_stops_at_the_depth_cap(server_factory, tmp_path):
    code = """\
        def handler(input, context):
            try:
                return context.call(context.agent, input)
            except Exception as e:
                return {"error": getattr(e, "error", None), "message": str(e)}
        """
    apkg = pypkg(tmp_path, "pyrecurse", {"src/main.py": code})
    s = server_factory([apkg])
    r = s.post("pyrecurse", {"input": 1}, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()["output"]
    assert out["error"] == "call_depth_exceeded" and "limits.max_call_depth = 16" in out["message"]
    assert s.post("pyrecurse", {"input": 2}, timeout=60).json()["output"]["error"] == \
        "call_depth_exceeded"


def test_par_call_runs_python(tmp_path):
    r = run("call", package("hello-python"), "hello-python", '{"name": "CLI"}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"message": "Hello, CLI!", "caller": None}
    r = run("call", package("hello-python"), "hello-python/format",
            '{"greeting": "Hey", "name": "you"}')
    assert json.loads(r.stdout) == {"text": "Hey, you!"}


# pixell-kit's AgentManifest (pixell/models/agent_manifest.py): the rules `pixell build`
# validates, and the files its builder writes (pixell/core/builder.py).
PIXELL_RUNTIMES = {"node18", "node20", "python3.9", "python3.11", "go1.21"}
PIXELL_FIELDS = {"version", "name", "display_name", "description", "author", "license",
                 "entrypoint", "capabilities", "runtime", "environment", "dependencies", "mcp",
                 "metadata", "a2a", "rest", "ui", "ui_spec_version", "required_ui_capabilities"}
PIXELL_REQUIRED = {"name", "display_name", "description", "author", "license", "metadata"}
PIXELL_FILES = {"agent.yaml", ".env", "requirements.txt", ".pixell/package.json", "setup.py",
                "deploy.json", "src/__init__.py"}


def test_example_is_a_pixell_kit_layout():
    with zipfile.ZipFile(package("hello-python")) as z:
        names = set(z.namelist())
        files = {n for n in names if not n.endswith("/")}
        assert PIXELL_FILES <= files, PIXELL_FILES - files
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        m = yaml.safe_load(z.read("agent.yaml"))
        meta = json.loads(z.read(".pixell/package.json"))
    assert set(m) <= PIXELL_FIELDS, set(m) - PIXELL_FIELDS  # extra="forbid"
    assert PIXELL_REQUIRED <= set(m)
    assert re.match(r"^[a-z][a-z0-9-]*$", m["name"])
    assert m["runtime"] in PIXELL_RUNTIMES
    assert ":" in m["entrypoint"]
    module = m["entrypoint"].split(":")[0].replace(".", "/") + ".py"
    assert module in files
    assert "version" in m["metadata"]
    subs = m["metadata"]["sub_agents"]
    assert any(sa["public"] is False for sa in subs)
    assert meta["created_by"] == "pixell-kit" and meta["format_version"] == "1.0"
    for k in PIXELL_FIELDS & set(m):
        if k != "metadata":
            assert meta["manifest"][k] == m[k], k
    assert meta["manifest"]["metadata"]["version"] == m["metadata"]["version"]
    # PAR reads it as it is
    r = run("inspect", package("hello-python"))
    assert r.returncode == 0, r.stderr
    assert "hello-python/format" in r.stdout and "python3.11" in r.stdout


def test_configured_interpreter(server_factory, tmp_path):
    """An interpreter whose name does not tell its version is asked for it."""
    wrapper = tmp_path / "site-python"
    wrapper.write_text('#!/bin/sh\nexec /usr/bin/python3 "$@"\n')
    wrapper.chmod(0o755)
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n"
                    f"python: {{interpreter: {wrapper}}}\n")
    apkg = pypkg(tmp_path, "wrapped", {"src/main.py":
                                       "import sys\ndef handler(i):\n"
                                       "    return sys.version_info[0]\n"})
    s = server_factory([apkg], args=["--config", str(conf)])
    assert s.post("wrapped", {"input": 0}).json()["output"] == 3
    missing = tmp_path / "par2.yaml"
    missing.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n"
                       "python: {interpreter: /nonexistent/python3}\n")
    s2 = server_factory([], args=["--config", str(missing)],
                        expected_errors=[r"\"package refused\""])
    b = assert_error(requests.post(s2.url + "/runtime/packages", json={"path": apkg},
                                   timeout=60), 422, "incompatible_package")
    assert "/nonexistent/python3 is not available" in b["message"]


def test_an_archive_written_the_way_pixell_build_writes_it(server_factory, tmp_path):
    """pixell-kit's builder (0.4.x, pixell/core/builder.py) zips its build directory
    with Python's zipfile: ZIP_DEFLATED, an entry for every directory, files in
    os.walk order, no __pycache__. PAR must take such an archive as it is, not only
    the ones `par pack` writes. (pixell-kit itself comes from PyPI, which the test
    machines cannot reach; this reproduces its archive format.)"""
    src = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "agents",
                       "hello-python")
    out = str(tmp_path / "hello-python-1.0.0.apkg")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for base, dirs, files in os.walk(src):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for d in dirs:
                z.writestr(os.path.relpath(os.path.join(base, d), src) + "/", "")
            for f in files:
                if not f.endswith(".pyc"):
                    full = os.path.join(base, f)
                    z.write(full, os.path.relpath(full, src))
    s = server_factory([out])
    r = s.post("hello-python", {"input": {"name": "zip"}})
    assert r.status_code == 200, r.text
    assert r.json()["output"]["message"] == "Hello, zip!"
    assert s.get("/runtime/packages/hello-python").json()["source"].endswith(
        "hello-python-1.0.0.apkg")


def test_loader_variables_are_refused(server_factory, tmp_path):
    """Variables that steer the dynamic loader would act in par-worker before its
    sandbox: a package cannot set them."""
    s = server_factory([], expected_errors=[r"\"package refused\""])
    code = {"src/main.py": "def handler(i):\n    return 1\n"}
    a = pypkg(tmp_path, "preload", dict(code, **{".env": "LD_PRELOAD=/tmp/evil.so\n"}),
              pack_args=["--no-compat"])
    b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": a}, timeout=60),
                     422, "incompatible_package")
    assert "environment LD_PRELOAD: not allowed" in b["message"]
    c = pypkg(tmp_path, "tunables", code, extra="environment:\n  GLIBC_TUNABLES: x=1\n",
              pack_args=["--no-compat"])
    b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": c}, timeout=60),
                     422, "incompatible_package")
    assert "environment GLIBC_TUNABLES: not allowed" in b["message"]


def test_requirements_cannot_reach_beyond_the_wheelhouse(server_factory, tmp_path):
    wh = tmp_path / "wheels"
    wh.mkdir()
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n"
                    f"python: {{wheelhouse: {wh}}}\n")
    s = server_factory([], args=["--config", str(conf)],
                       expected_errors=[r"\"package refused\""])
    code = "def handler(i):\n    return 1\n"
    cases = [
        ({"requirements.txt": "foo\r-f http://127.0.0.1:9/\n"}, "", "control or non-ASCII"),
        ({"requirements.txt": "foo --find-links http://127.0.0.1:9/\n"}, "",
         "pip options are not allowed"),
        ({"requirements.txt": "evil @ https://127.0.0.1:9/evil-1.0-py3-none-any.whl\n"}, "",
         "direct references, URLs and paths are not allowed"),
        ({"requirements.txt": "./local-1.0-py3-none-any.whl\n"}, "",
         "direct references, URLs and paths are not allowed"),
        ({}, 'dependencies:\n  - " -f http://127.0.0.1:9/"\n', "pip options are not allowed"),
    ]
    for i, (files, extra, reason) in enumerate(cases):
        apkg = pypkg(tmp_path, f"sneaky{i}", dict(files, **{"src/main.py": code}), extra=extra,
                     pack_args=["--no-compat"])
        b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": apkg},
                                       timeout=60), 422, "incompatible_package")
        assert reason in b["message"], (i, b["message"])


def test_a_package_built_by_pixell_kit(server_factory, tmp_path):
    """The archive pixell-kit 0.4.9's `pixell build` wrote for examples/agents/hello-python
    (tests/fixtures/pixell-built/README.md) deploys unchanged and answers."""
    src = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pixell-built",
                       "hello-python-1.0.0.apkg")
    with open(src, "rb") as f:
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == \
        "5a1839af6e0196abd4d81aa842841d6bfc6e5b39c0816dff1808b9d06b0a25df"
    with zipfile.ZipFile(src) as z:
        made_by = json.loads(z.read(".pixell/package.json"))["created_by"]
    assert made_by == "pixell-kit"
    pk = tmp_path / "hello-python-1.0.0.apkg"
    pk.write_bytes(data)
    s = server_factory([str(pk)])
    rec = s.get("/runtime/packages/hello-python").json()
    assert rec["state"] == "active" and rec["sha256"] == hashlib.sha256(data).hexdigest()
    r = s.post("hello-python", {"input": {"name": "Ada"}})
    assert r.status_code == 200, r.text
    assert r.json()["output"]["message"] == "Hello, Ada!"
    r = s.post("hello-python/shout", {"input": {"name": "Ada"}})
    assert r.status_code == 200 and r.json()["output"] == {"message": "HELLO, ADA!"}
    assert_error(s.post("hello-python/format", {"input": {"name": "x"}}), 404, "agent_not_found")
