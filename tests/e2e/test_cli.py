"""The `par` command line and the embedding example."""
import hashlib
import json
import os
import shutil
import subprocess
import zipfile

from conftest import BUILD, package, run


def test_help():
    r = run("--help")
    assert r.returncode == 0 and "serve" in r.stdout and "pack" in r.stdout
    for cmd in ("serve", "pack", "inspect", "call"):
        r = run(cmd, "--help")
        assert r.returncode == 0 and r.stdout.startswith("usage: par " + cmd), r.stdout
    r = run("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr


def test_misspelt_commands_are_named():
    r = run("serv")
    assert r.returncode == 2 and "unknown command 'serv' (did you mean 'serve'?)" in r.stderr, r.stderr
    r = run("zzzz")
    assert r.returncode == 2 and "unknown command 'zzzz'\n" in r.stderr, r.stderr
    r = run("config", "chek")
    assert r.returncode == 2, r.stderr
    assert "unknown subcommand 'chek' (did you mean 'check'?)" in r.stderr, r.stderr


def test_pack_is_deterministic(tmp_path):
    src = os.path.join(BUILD, "stage", "echo")
    a, b = tmp_path / "a.apkg", tmp_path / "b.apkg"
    assert run("pack", src, "-o", str(a)).returncode == 0
    # same content, different mtimes and a different copy: same bytes
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    os.utime(copy / "agent.yaml", (1, 1))
    assert run("pack", str(copy), "-o", str(b)).returncode == 0
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as z:
        names = z.namelist()
        assert "agent.yaml" in names and "lib/libecho.so" in names
        assert z.read("agent.yaml") == (copy / "agent.yaml").read_bytes()


def test_pack_refuses_bad_manifest(tmp_path):
    (tmp_path / "agent.yaml").write_text("name: Bad_Name\nmetadata:\n  version: x\n")
    r = run("pack", str(tmp_path), "-o", str(tmp_path / "out.apkg"))
    assert r.returncode == 1
    assert "agent.yaml: name:" in r.stderr and "metadata.version" in r.stderr
    assert not (tmp_path / "out.apkg").exists()


def test_inspect():
    p = package("echo")
    r = run("inspect", p)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["name"] == "echo" and info["version"] == "1.0.0"
    assert info["sha256"] == hashlib.sha256(open(p, "rb").read()).hexdigest()
    assert {e["id"]: e["public"] for e in info["exports"]} == {
        "echo": True, "echo/shout": True, "echo/upper": False}
    r = run("inspect", "/nonexistent.apkg")
    assert r.returncode == 1 and "/nonexistent.apkg" in r.stderr


def test_call():
    p = package("echo")
    r = run("call", p, "echo", '{"a": [1, 2]}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"a": [1, 2]}
    r = run("call", p, "echo/upper", '{"a": "b"}')
    assert json.loads(r.stdout) == {"a": "B"}
    r = run("call", os.path.join(BUILD, "stage", "echo"), "echo/shout", "-", input='{"x":"y"}')
    assert r.returncode == 0 and json.loads(r.stdout) == {"x": "Y"}
    r = run("call", p, "missing", "1")
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("par call: missing: agent_not_found (404): no agent 'missing'\n")
    r = run("call", p, "echo", "{bad json")
    assert r.returncode == 1 and "echo: invalid_json (400): input is not valid JSON" in r.stderr


def pyapp(tmp_path, name, code):
    d = tmp_path / name
    (d / "src").mkdir(parents=True)
    (d / "src" / "__init__.py").write_text("")
    (d / "src" / "main.py").write_text(code)
    (d / "agent.yaml").write_text(
        f"name: {name}\ndisplay_name: {name}\ndescription: t\nauthor: t\nlicense: MIT\n"
        "runtime: python3.11\nentrypoint: src.main:handler\nmetadata:\n  version: 1.0.0\n")
    return str(d)


def test_call_prints_a_python_traceback_once_as_text(tmp_path):
    code = "def helper(x):\n    raise ValueError('boom %s' % x)\n\n\ndef handler(i):\n" \
           "    return helper(i)\n"
    r = run("call", pyapp(tmp_path, "raiser", code), "raiser", "7")
    assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
    err = r.stderr
    assert err.startswith("par call: raiser: agent_error (500): ValueError: boom 7\n"), err
    assert err.count("Traceback (most recent call last):") == 1, err
    assert err.count("boom 7") == 2, err  # the summary and the traceback's last line
    assert 'main.py", line 2, in helper\n' in err, err
    assert "\\n" not in err and '{"' not in err, err  # text, not escaped JSON
    assert "request id: " in err


def test_call_names_a_load_failure_with_file_and_line(tmp_path):
    r = run("call", pyapp(tmp_path, "broken", "x = 1\ndef handler(i)\n    return i\n"),
            "broken", "1")
    assert r.returncode == 1, r.stderr
    err = r.stderr
    assert "agent_load_failed" in err and "incompatible_package" not in err, err
    assert "src/main.py:2: cannot import src.main: SyntaxError: " in err, err
    # Python's own rendering, once: the file, the line and the caret
    assert err.count('main.py", line 2\n    def handler(i)\n') == 1, err
    assert "\\n" not in err and '{"' not in err, err


def test_embed_example(tmp_path):
    exe = os.path.join(BUILD, "par-embed-example")
    r = subprocess.run([exe, package("echo"), str(tmp_path / "var")], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, PAR_WORKER=os.path.join(
                           BUILD, "par-worker")))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == 'echo -> ok {"text":"hello from the host"}'
    assert lines[1] == 'echo/upper -> ok {"text":"HELLO FROM THE HOST"}'
    # the package landed in the content-addressed cache
    digest = hashlib.sha256(open(package("echo"), "rb").read()).hexdigest()
    assert (tmp_path / "var" / "cache" / "sha256" / digest / "agent.yaml").exists()
    assert (tmp_path / "var" / "cache" / "sha256" / (digest + ".complete")).exists()
