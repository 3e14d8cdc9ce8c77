"""agent.yaml mistakes a person makes: `par pack`, `par inspect` and a deploy each refuse
(or warn about) every one exactly as docs/agent-yaml.md says, with the field path; a
manifest that crashed the old YAML parser cannot take the runtime down; no typo makes a
private sub-agent public."""
import json
import os
import shutil
import zipfile

import pytest
import requests

from conftest import BUILD, assert_error, package, run

ECHO_STAGE = os.path.join(BUILD, "stage", "echo")
REFUSED = [r'"package refused"']

HEAD = "name: {name}\nruntime: native\nentrypoint: lib/libecho.so:echo\n"
SUBS = ("metadata:\n  version: 1.0.0\n  sub_agents:\n"
        "    - name: p\n      entrypoint: lib/libecho.so:upper\n{sub}")
NATIVE = HEAD + SUBS
PAR = HEAD + "metadata:\n  version: 1.0.0\n  par:\n{par}"

# (name, agent.yaml, extra files, expected: ("invalid"|"incompatible"|"warn"), text)
MISTAKES = [
    ("pubic", NATIVE.format(name="pubic", sub="      pubic: false\n"), {}, "invalid",
     "metadata.sub_agents[0].pubic: unknown key `pubic` (did you mean `public`?)"),
    ("public-str", NATIVE.format(name="public-str", sub="      public: \"false\"\n"), {},
     "invalid", "metadata.sub_agents[0].public: must be true or false"),
    ("entrypont", "name: entrypont\nruntime: native\nentrypont: lib/libecho.so:echo\n"
     "metadata:\n  version: 1.0.0\n", {}, "invalid",
     "entrypont: unknown key `entrypont` (did you mean `entrypoint`?)"),
    ("pyhton", "name: pyhton\nruntime: pyhton3.11\nentrypoint: src.main:handler\n"
     "metadata:\n  version: 1.0.0\n", {"src/main.py": b"def handler(i):\n    return i\n"},
     "incompatible", "runtime: no loader for runtime pyhton3.11 (did you mean python3.11?)"),
    ("nolib", "name: nolib\nruntime: native\nentrypoint: lib/libnone.so:echo\n"
     "metadata:\n  version: 1.0.0\n", {}, "incompatible",
     "entrypoint: lib/libnone.so: not found in the package"),
    ("notelf", "name: notelf\nruntime: native\nentrypoint: lib/libfake.so:echo\n"
     "metadata:\n  version: 1.0.0\n", {"lib/libfake.so": b"#!/bin/sh\necho not a library\n"},
     "incompatible", "entrypoint: lib/libfake.so: not an ELF shared object"),
    ("subnolib", NATIVE.format(name="subnolib", sub="").replace("libecho.so:upper",
                                                                  "libgone.so:upper"), {},
     "incompatible", "metadata.sub_agents[0].entrypoint: lib/libgone.so: not found"),
    ("nomodule", "name: nomodule\nruntime: python3.11\nentrypoint: src.main:handler\n"
     "metadata:\n  version: 1.0.0\n", {"src/__init__.py": b""}, "incompatible",
     "entrypoint: the package has no module src.main"),
    ("pipopt", "name: pipopt\nruntime: python3.11\nentrypoint: src.main:handler\n"
     "metadata:\n  version: 1.0.0\n", {"src/main.py": b"def handler(i):\n    return i\n",
                                         "requirements.txt": b"x --index-url http://h/\n"},
     "incompatible", "requirements.txt:1: pip options are not allowed"),
    ("parkey", PAR.format(name="parkey", par="    isolation: none\n"), {}, "invalid",
     "metadata.par.isolation: unknown key `isolation` (known: requires, abi, limits, exports, "
     "calls, skills, input_schema)"),
    ("partypo", PAR.format(name="partypo", par="    requries: \">=0.1\"\n"), {}, "invalid",
     "metadata.par.requries: unknown key `requries` (did you mean `requires`?)"),
    ("limitkey", PAR.format(name="limitkey", par="    limits: {timeout: 5000}\n"), {},
     "invalid", "metadata.par.limits.timeout: unknown limit `timeout`"),
    ("limittype", PAR.format(name="limittype", par="    limits: {timeout_ms: ten}\n"), {},
     "invalid", "metadata.par.limits.timeout_ms: must be a non-negative integer"),
    ("captype", "name: captype\nruntime: native\nentrypoint: lib/libecho.so:echo\n"
     "capabilities: network\nmetadata:\n  version: 1.0.0\n", {}, "invalid",
     "capabilities: must be a list of strings"),
    ("abitype", PAR.format(name="abitype", par="    abi: [1]\n"), {}, "invalid",
     "metadata.par.abi: must be a positive integer"),
    ("abi", PAR.format(name="abi", par="    abi: 99\n"), {}, "incompatible",
     "metadata.par.abi: the package's abi is 99"),
    ("requires", PAR.format(name="requires", par="    requires: \">=99.0.0\"\n"), {},
     "incompatible", "metadata.par.requires: \">=99.0.0\" does not match this runtime"),
    ("longversion", "name: longversion\nruntime: native\nentrypoint: lib/libecho.so:echo\n"
     "metadata:\n  version: 1.0." + "7" * 5000 + "\n", {}, "invalid",
     "metadata.version: must be at most 64 characters (it has 5004)"),
    ("homepage", "name: homepage\nruntime: native\nentrypoint: lib/libecho.so:echo\n"
     "homepage: https://example.com\nmetadata:\n  version: 1.0.0\n", {}, "warn",
     "agent.yaml: homepage: unknown top-level key, ignored"),
]
ERROR_NAME = {"invalid": "invalid_package", "incompatible": "incompatible_package"}


def write_dir(tmp, name, manifest, files):
    d = os.path.join(str(tmp), "src-" + name)
    os.makedirs(os.path.join(d, "lib"), exist_ok=True)
    shutil.copy(os.path.join(ECHO_STAGE, "lib", "libecho.so"), os.path.join(d, "lib"))
    with open(os.path.join(d, "agent.yaml"), "w") as f:
        f.write(manifest)
    for rel, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
        with open(os.path.join(d, rel), "wb") as f:
            f.write(data)
    return d


def zip_dir(d, out):
    """An .apkg written without par's checks (what a careless or hostile builder ships)."""
    with zipfile.ZipFile(out, "w") as z:
        for root, _, names in os.walk(d):
            for n in sorted(names):
                p = os.path.join(root, n)
                z.write(p, os.path.relpath(p, d))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mistakes")
    out = {}
    for name, manifest, files, kind, text in MISTAKES:
        d = write_dir(tmp, name, manifest, files)
        out[name] = (d, zip_dir(d, os.path.join(str(tmp), name + ".apkg")))
    return tmp, out


def lines_with(stderr, text):
    return [l for l in stderr.splitlines() if text in l]


@pytest.mark.parametrize("name,manifest,files,kind,text", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_pack_refuses_or_warns(built, name, manifest, files, kind, text):
    tmp, dirs = built
    out = os.path.join(str(tmp), name + "-packed.apkg")
    r = run("pack", dirs[name][0], "-o", out)
    if kind == "warn":
        assert r.returncode == 0, r.stderr
        assert lines_with(r.stderr, "par pack: warning: " + text), r.stderr
        assert os.path.exists(out)
    else:
        assert r.returncode == 1, r.stderr
        assert lines_with(r.stderr, text), r.stderr
        assert all(l.startswith("par pack: agent.yaml: ") for l in r.stderr.splitlines()), r.stderr
        assert not os.path.exists(out)


@pytest.mark.parametrize("name,manifest,files,kind,text", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_inspect_refuses_or_warns(built, name, manifest, files, kind, text):
    _, dirs = built
    r = run("inspect", dirs[name][1])
    if kind == "warn":
        assert r.returncode == 0, r.stderr
        assert text in json.loads(r.stdout)["warnings"]
    else:
        assert r.returncode == 1, r.stderr
        assert lines_with(r.stderr, text), r.stderr
        if kind == "incompatible":  # the manifest itself is fine: shown, with the problem
            assert json.loads(r.stdout)["name"] == name


@pytest.fixture(scope="module")
def srv(server_factory):
    return server_factory([package("echo")], expected_errors=REFUSED)


@pytest.mark.parametrize("name,manifest,files,kind,text", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_deploy_refuses_or_warns(srv, built, name, manifest, files, kind, text):
    _, dirs = built
    r = requests.post(srv.url + "/runtime/packages", json={"path": dirs[name][1]}, timeout=60)
    if kind == "warn":
        assert r.status_code == 201, r.text
        assert text in r.json()["warnings"]
    else:
        b = assert_error(r, 422, ERROR_NAME[kind])
        assert text in b["message"], b["message"]
        assert_error(srv.post(name, {"input": 1}), 404, "agent_not_found")
    assert srv.post("echo", {"input": {"still": "serving"}}).json()["output"] == {"still": "serving"}


# ---- the red-team manifest: libfyaml 0.7.12 crashed on it ------------------------------

CRASH = "? p ] x:\t|"


def crash_apkg(tmp):
    out = os.path.join(str(tmp), "crash-1.0.0.apkg")
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("agent.yaml", CRASH)
    return out


def test_crash_manifest_in_the_packages_folder(server_factory, tmp_path):
    s = server_factory([package("echo"), crash_apkg(tmp_path)], expected_errors=REFUSED)
    assert s.get("/runtime/ready").status_code == 200
    p = s.get("/runtime/packages/crash-1.0.0.apkg").json()
    assert p["state"] == "failed" and p["last_error_name"] == "invalid_package", p
    assert "agent.yaml: line 1, column" in p["last_error"], p
    assert s.post("echo", {"input": "ok"}).json()["output"] == "ok"
    r = run("inspect", crash_apkg(tmp_path))
    assert r.returncode == 1 and "par inspect: agent.yaml: line 1, column" in r.stderr, r.stderr


def test_crash_manifest_posted(srv, tmp_path):
    r = requests.post(srv.url + "/runtime/packages", json={"path": crash_apkg(tmp_path)},
                      timeout=60)
    b = assert_error(r, 422, "invalid_package")
    assert "agent.yaml: line 1, column" in b["message"]
    assert srv.get("/runtime/health").status_code == 200
    assert srv.post("echo", {"input": "ok"}).json()["output"] == "ok"


# ---- no typo makes a private sub-agent public -------------------------------------------
# (tests/unit/test_manifest.c tries every single-character edit; here a sample goes all
# the way through a deploy and an HTTP call)

TYPOS = [("public", t) for t in ("pubic", "Public", "publc", "pubilc", "#public", "public_",
                                  "pub lic", "ppublic")] + \
        [("sub_agents", t) for t in ("sub_agent", "subagents", "sub-agents", "Sub_agents",
                                     "#sub_agents", "sub_agentss")] + \
        [("false", t) for t in ("flase", "False", "fals", "\"false\"", "0", "no")]


@pytest.mark.parametrize("word,typo", TYPOS, ids=[f"{w}->{t}" for w, t in TYPOS])
def test_typo_never_publishes(srv, tmp_path, word, typo):
    y = ("name: typo\nruntime: native\nentrypoint: lib/libecho.so:echo\nmetadata:\n"
         "  version: 1.0.0\n  sub_agents:\n    - name: p\n"
         "      entrypoint: lib/libecho.so:upper\n      public: false\n")
    y = y.replace(f"  {word}:" if word != "false" else ": false", f"  {typo}:" if word != "false"
                  else f": {typo}")
    assert typo in y
    d = write_dir(tmp_path, "typo", y, {})
    apkg = zip_dir(d, os.path.join(str(tmp_path), "typo.apkg"))
    r = requests.post(srv.url + "/runtime/packages", json={"path": apkg}, timeout=60)
    assert r.status_code in (201, 422), r.text
    if r.status_code == 201:
        exports = {e["name"]: e["public"] for e in r.json()["exports"]}
        assert exports.get("p") in (None, False), (y, exports)
        assert_error(srv.post("typo/p", {"input": "x"}), 404, "agent_not_found")
        requests.delete(srv.url + "/runtime/packages/typo", timeout=30)


# ---- a failed `par pack --sign` leaves nothing behind ------------------------------------

def test_failed_sign_leaves_no_unsigned_package(tmp_path):
    src = os.path.join(BUILD, "stage", "echo")
    out = str(tmp_path / "echo.apkg")
    # a missing key
    r = run("pack", src, "-o", out, "--sign", "-s", str(tmp_path / "absent.key"))
    assert r.returncode == 1 and "was not written" in r.stderr, r.stderr
    assert sorted(os.listdir(tmp_path)) == []
    # an encrypted key and the wrong password
    pw = tmp_path / "pw"
    pw.write_text("right horse battery\n")
    sec, pub = str(tmp_path / "k.key"), str(tmp_path / "k.pub")
    assert run("keygen", "-p", pub, "-s", sec, "--password-file", str(pw)).returncode == 0
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong horse\n")
    r = run("pack", src, "-o", out, "--sign", "-s", sec, "--password-file", str(wrong))
    assert r.returncode == 1, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["k.key", "k.pub", "pw", "wrong"]
    # the right password: the package and its signature, and no partial file
    r = run("pack", src, "-o", out, "--sign", "-s", sec, "--password-file", str(pw))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["echo.apkg", "echo.apkg.minisig", "k.key", "k.pub",
                                           "pw", "wrong"]
    assert "file:echo.apkg" in open(out + ".minisig").read()
    assert run("verify", out, "-p", pub).returncode == 0
