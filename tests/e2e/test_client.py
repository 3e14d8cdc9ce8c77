"""`par init` and the management client, as a user runs them.

par init NAME --python / --c → (make) → par pack → par inspect (no warnings)
→ par serve → invoke. Then every client command (deploy, ls, agents, usage,
reload, rm) against a running server with API-key authentication, as a
table and as --json, the credential from --token and from PAR_TOKEN, and
the refusals printed as "error_name: message" with exit status 1.
"""
import hashlib
import json
import os
import subprocess

import pytest

from conftest import package, run

ADMIN = "k-admin-" + "a" * 24


def sh(*args, cwd, **kw):
    r = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120, **kw)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def init_pack(tmp_path, name, lang):
    r = run("init", name, "--" + lang, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    d = tmp_path / name
    if lang == "c":
        sh("make", cwd=d)
    apkg = tmp_path / f"{name}-0.1.0.apkg"
    r = run("pack", str(d), "-o", str(apkg))
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    r = run("inspect", str(apkg))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["warnings"] == [] and r.stderr == "", (info, r.stderr)
    assert info["name"] == name and info["version"] == "0.1.0"
    return apkg


def test_init_layouts(tmp_path):
    assert run("init", "py-agent", cwd=tmp_path).returncode == 0  # --python is the default
    files = {str(p.relative_to(tmp_path / "py-agent")) for p in (tmp_path / "py-agent").rglob("*")
             if p.is_file()}
    assert files == {"agent.yaml", ".env", "requirements.txt", "src/__init__.py", "src/main.py"}
    assert run("init", "c-agent", "--c", cwd=tmp_path).returncode == 0
    files = {str(p.relative_to(tmp_path / "c-agent")) for p in (tmp_path / "c-agent").rglob("*")
             if p.is_file()}
    assert files == {"agent.yaml", "Makefile", "src/c-agent.c"}
    # refusals: an existing directory is never overwritten, a bad name is named
    before = (tmp_path / "py-agent" / "src" / "main.py").read_text()
    r = run("init", "py-agent", "--c", cwd=tmp_path)
    assert r.returncode == 1 and "not an empty directory" in r.stderr, r.stderr
    assert (tmp_path / "py-agent" / "src" / "main.py").read_text() == before
    assert not (tmp_path / "py-agent" / "Makefile").exists()
    r = run("init", "Bad_Name", cwd=tmp_path)
    assert r.returncode == 2 and "invalid_argument" in r.stderr and "Bad_Name" in r.stderr
    assert not (tmp_path / "Bad_Name").exists()
    r = run("init", cwd=tmp_path)
    assert r.returncode == 2 and "usage: par init" in r.stderr


@pytest.mark.parametrize("args,says", [
    (("x", "--python", "--c"), "par init: --python and --c: choose one"),
    (("x", "--rust"), "par init: unknown option `--rust`"),
    (("x", "y"), "par init: unexpected argument `y`"),
    (("x", "--dir"), "par init: --dir needs a directory"),
    ((), "par init: the package NAME is required"),
])
def test_init_misuse_names_the_argument(tmp_path, args, says):
    """Conflicting languages are refused (the last one won silently) and each
    mistake is named before the usage; nothing is written."""
    r = run("init", *args, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.split("\n")[0] == says, r.stderr
    assert "usage: par init" in r.stderr and not os.listdir(tmp_path)


@pytest.mark.parametrize("args,says", [
    (("pkgdir",), "par pack: -o FILE.apkg is required (e.g. -o NAME-VERSION.apkg)"),
    ((), "par pack: the package directory DIR is required"),
    (("pkgdir", "-o"), "par pack: a value is missing after `-o`"),
    (("pkgdir", "-o", "x.apkg", "--sgn"), "par pack: unknown option `--sgn`"),
    (("pkgdir", "other", "-o", "x.apkg"), "par pack: unexpected argument `other`"),
])
def test_pack_misuse_names_the_argument(tmp_path, args, says):
    r = run("pack", *args, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.split("\n")[0] == says, r.stderr
    assert "usage: par pack" in r.stderr and not os.listdir(tmp_path)


def test_init_pack_inspect_serve_invoke(server_factory, tmp_path):
    py = init_pack(tmp_path, "hello-new", "python")
    c = init_pack(tmp_path, "native-new", "c")
    s = server_factory([str(py), str(c)])
    r = s.post("hello-new", {"input": {"name": "Ada"}})
    assert r.status_code == 200 and r.json()["output"] == {"message": "Hello, Ada!"}, r.text
    r = s.post("native-new", {"input": {"n": [1, 2]}})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == {"agent": "native-new", "input": {"n": [1, 2]}}


def sha(k):
    return hashlib.sha256(k.encode()).hexdigest()


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conf")
    conf = tmp / "par.yaml"
    conf.write_text(f"""\
trust: {{require_signatures: false}}
auth:
  mode: api_key
  open_paths: [/runtime/health, /runtime/ready]
  api_keys:
    - sha256: {sha(ADMIN)}
      subject: ops
      permissions: [runtime:admin, agents:invoke]
metering:
  enabled: true
""")
    return server_factory([], args=("--config", str(conf)),
                          expected_errors=[r"package refused"])


def client(srv, *args, token=ADMIN, env_token=None):
    env = dict(os.environ)
    env.pop("PAR_TOKEN", None)
    env.pop("PAR_SERVER", None)
    if env_token:
        env["PAR_TOKEN"] = env_token
    extra = ["--server", srv.url] + (["--token", token] if token else [])
    return run(*args, *extra, env=env)


def table(out):
    lines = out.rstrip("\n").split("\n")
    return lines[0].split(), [ln.split() for ln in lines[1:]]


def test_client_commands(srv, tmp_path):
    # deploy FILE: the table, then the same record as JSON
    r = client(srv, "deploy", package("echo"))
    assert r.returncode == 0, r.stderr
    hdr, rows = table(r.stdout)
    assert hdr == ["NAME", "VERSION", "STATE", "WORKERS", "SIGNER", "SOURCE"]
    assert rows == [["echo", "1.0.0", "active", "1", "unsigned", package("echo")]]
    r = client(srv, "deploy", package("hello-python"), "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["name"] == "hello-python" and rec["state"] == "active"

    r = client(srv, "ls")
    assert r.returncode == 0, r.stderr
    hdr, rows = table(r.stdout)
    assert hdr[0] == "NAME" and {(x[0], x[1], x[2]) for x in rows} == {
        ("echo", "1.0.0", "active"), ("hello-python", "1.0.0", "active")}
    r = client(srv, "ls", "--json")
    assert r.returncode == 0
    assert {(p["name"], p["state"]) for p in json.loads(r.stdout)["packages"]} == {
        ("echo", "active"), ("hello-python", "active")}

    r = client(srv, "agents")
    assert r.returncode == 0, r.stderr
    hdr, rows = table(r.stdout)
    assert hdr == ["AGENT", "PACKAGE", "VERSION", "DESCRIPTION"]
    ids = {x[0] for x in rows}
    assert {"echo", "echo/shout", "hello-python", "hello-python/shout"} <= ids
    assert "echo/upper" not in ids  # private
    r = client(srv, "agents", "--json")
    assert {a["id"] for a in json.loads(r.stdout)["agents"]} == ids

    # usage, after two calls of echo/shout
    for _ in range(2):
        r = srv.post("echo/shout", {"input": {"text": "hi"}}, headers={"X-API-Key": ADMIN})
        assert r.status_code == 200, r.text
    r = client(srv, "usage")
    assert r.returncode == 0, r.stderr
    hdr, rows = table(r.stdout)
    assert hdr == ["KEY", "CALLS", "ERRORS", "ROOTS", "DURATION_MS", "UNITS"]
    shout = [x for x in rows if x[0] == "echo/shout"]
    assert shout and shout[0][1:4] == ["2", "0", "2"], r.stdout
    assert shout[0][5] == "characters=28", r.stdout
    r = client(srv, "usage", "--json", "--group-by", "package")
    u = json.loads(r.stdout)
    assert u["group_by"] == "package" and any(g["key"] == "echo" for g in u["groups"])

    # the credential from PAR_TOKEN
    r = client(srv, "reload", "echo", token=None, env_token=ADMIN)
    assert r.returncode == 0, r.stderr
    assert table(r.stdout)[1][0][:3] == ["echo", "1.0.0", "active"]

    r = client(srv, "rm", "hello-python@1.0.0")
    assert r.returncode == 0 and r.stdout == "removed hello-python 1.0.0\n", r.stdout + r.stderr
    r = client(srv, "rm", "echo", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["removed"] == "echo"
    left = json.loads(client(srv, "ls", "--json").stdout)["packages"]
    assert not [p for p in left if p["state"] == "active"], left


def test_client_reads_every_listen_form(srv):
    """PAR_LISTEN as par serve takes it (":PORT", "PORT", "0.0.0.0:PORT") names
    this host's loopback for the client, not a malformed URL or host "PORT"."""
    port = srv.url.rsplit(":", 1)[1]
    for listen in (":" + port, port, "0.0.0.0:" + port, "127.0.0.1:" + port):
        env = {k: v for k, v in os.environ.items() if k not in ("PAR_SERVER", "PAR_TOKEN")}
        env["PAR_LISTEN"] = listen
        r = run("agents", "--token", ADMIN, env=env)
        assert r.returncode == 0, (listen, r.stderr)
        assert r.stdout.startswith("AGENT"), (listen, r.stdout)


def test_client_errors(srv, tmp_path):
    def refused(r, name):
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert r.stdout == ""
        line = r.stderr.strip().split("\n")[-1]
        assert line.startswith(name + ": ") and len(line) > len(name) + 2, r.stderr
        return line

    refused(client(srv, "ls", token=None), "unauthorized")
    refused(client(srv, "ls", token="k-wrong-" + "z" * 24), "invalid_token")
    refused(client(srv, "rm", "nope"), "not_found")
    refused(client(srv, "reload", "nope"), "not_found")
    refused(client(srv, "deploy", str(tmp_path / "missing.apkg")), "not_found")
    bad = tmp_path / "bad.apkg"
    bad.write_bytes(b"not a zip")
    refused(client(srv, "deploy", str(bad)), "invalid_package")
    refused(client(srv, "usage", "--group-by", "colour"), "bad_request")
    r = run("ls", "--server", "http://127.0.0.1:1")
    assert "unreachable: http://127.0.0.1:1/runtime/packages" in refused(r, "unreachable")
    # misuse: exit 2 with the usage
    for args in (("rm",), ("ls", "extra"), ("deploy",), ("rm", "a/b"), ("ls", "--bogus"),
                 ("usage", "--from", "1&to=2"), ("usage", "--group-by", "a b"),
                 ("ls", "--group-by", "agent"), ("usage", "--to")):
        r = run(*args, "--server", srv.url)
        assert r.returncode == 2, (args, r.stderr)
    # the server is unharmed
    assert srv.get("/runtime/health").status_code == 200


@pytest.mark.parametrize("args,says", [
    (("ls", "--sever", "http://x"), "par ls: unknown option `--sever` (did you mean `--server`?)"),
    (("usage", "--form", "1"), "par usage: unknown option `--form` (did you mean `--from`?)"),
    (("ls", "--sha256", "ab"), "par ls: unknown option `--sha256` for this command"),
    (("ls", "extra"), "par ls: unexpected argument 'extra'"),
    (("rm", "a", "b"), "par rm: unexpected argument 'b'"),
    (("rm",), "par rm: which package? (NAME[@VERSION])"),
    (("deploy",), "par deploy: which package? (FILE or URL)"),
    (("ls", "--token"), "par ls: --token needs a value"),
])
def test_client_misuse_names_the_argument(args, says):
    """A typo in a client command's arguments is named on the first line, not
    only answered with the whole usage text."""
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.split("\n")[0] == says, r.stderr
    assert "usage: par deploy" in r.stderr
