"""`par keygen`, `par sign`, `par verify` against the real minisign tool, both ways.

Every signature here is over a real package built by `par pack`. Keys made by
minisign are used by par and the other way round; encrypted keys use minisign's
real scrypt parameters (1 GiB, a few seconds per key derivation), because that
is the path operators take.
"""
import base64
import os
import pty
import select
import shutil
import stat
import subprocess
import time

import pytest
import requests

from conftest import BUILD, assert_error, run

MINISIGN = shutil.which("minisign")


@pytest.fixture(scope="module")
def minisign():
    if MINISIGN is None:
        pytest.fail("the minisign tool is not installed (or not on PATH): these tests check "
                    "par against it; install it with scripts/install-deps.sh")
    return MINISIGN


def ms(*args, input=None):
    return subprocess.run([MINISIGN, *args], input=input, capture_output=True, text=True,
                          timeout=120, start_new_session=True)


def par(*args, **kw):
    # a new session: no controlling terminal, as in CI, whatever runs the tests
    kw.setdefault("start_new_session", True)
    kw.setdefault("timeout", 120)
    return run(*args, **kw)


@pytest.fixture(scope="module")
def apkg(tmp_path_factory):
    d = tmp_path_factory.mktemp("pkg")
    out = d / "echo-1.0.0.apkg"
    r = run("pack", os.path.join(BUILD, "stage", "echo"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    return out


def copy_pkg(apkg, tmp_path, name="pkg.apkg"):
    p = tmp_path / name
    shutil.copy(apkg, p)
    return p


def key_id(pub_path):
    """The key id in the public key's comment, as 16 hex digits: minisign 0.11
    drops leading zeros there (and in its messages), par always prints 16."""
    first = open(pub_path).readline()
    assert first.startswith("untrusted comment: minisign public key ")
    shown = first.split()[-1]
    assert shown == shown.upper() and 0 < len(shown) <= 16
    return "%016X" % int(shown, 16)


def secret_key_bytes(key_path):
    return base64.b64decode(open(key_path).read().splitlines()[1])


def test_help():
    for cmd in ("keygen", "sign", "verify"):
        r = par(cmd, "--help")
        assert r.returncode == 0 and r.stdout.startswith("usage: par " + cmd), r.stdout
    r = par("--help")
    assert all(c in r.stdout for c in ("keygen", "sign", "verify"))
    r = par("sign")
    assert r.returncode == 2 and "usage: par sign" in r.stderr
    r = par("verify", "a", "b")
    assert r.returncode == 2 and "unexpected argument 'b'" in r.stderr


def test_minisign_signs_par_verifies(minisign, apkg, tmp_path):
    pkg = copy_pkg(apkg, tmp_path)
    pub, key = tmp_path / "ms.pub", tmp_path / "ms.key"
    assert ms("-G", "-W", "-p", str(pub), "-s", str(key)).returncode == 0
    r = ms("-S", "-s", str(key), "-m", str(pkg), "-t", "package echo 1.0.0")
    assert r.returncode == 0, r.stderr
    r = par("verify", str(pkg), "-p", str(pub))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("Signature and comment signature verified\n"
                        "Trusted comment: package echo 1.0.0\n")
    # the same output as minisign's own
    assert ms("-V", "-p", str(pub), "-m", str(pkg)).stdout == r.stdout
    # the key as a base64 string, as configuration gives it
    b64 = open(pub).read().splitlines()[1]
    r = par("verify", str(pkg), "-P", b64, "-q")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    # a legacy (non-prehashed) signature, in another file
    sig = tmp_path / "legacy.minisig"
    assert ms("-S", "-l", "-s", str(key), "-m", str(pkg), "-x", str(sig)).returncode == 0
    assert base64.b64decode(open(sig).read().splitlines()[1])[:2] == b"Ed"
    r = par("verify", str(pkg), "-p", str(pub), "-x", str(sig))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Signature and comment signature verified\nTrusted comment: "
                               "timestamp:")


def test_par_signs_minisign_verifies(minisign, apkg, tmp_path):
    pkg = copy_pkg(apkg, tmp_path)
    pub, key = tmp_path / "p.pub", tmp_path / "p.key"
    r = par("keygen", "--unencrypted", "-p", str(pub), "-s", str(key))
    assert r.returncode == 0, r.stderr
    kid = key_id(pub)
    b64 = open(pub).read().splitlines()[1]
    assert f"Key id: {kid}\n" in r.stdout and f"Public key: {b64}\n" in r.stdout
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert secret_key_bytes(key)[2:4] == b"\0\0"

    r = par("sign", str(pkg), "-s", str(key))
    assert r.returncode == 0, r.stderr
    sig = open(str(pkg) + ".minisig").read().splitlines()
    assert sig[0] == "untrusted comment: signature from minisign secret key"
    assert sig[2].startswith("trusted comment: timestamp:")
    assert sig[2].endswith("\tfile:pkg.apkg\thashed")
    r = ms("-V", "-p", str(pub), "-m", str(pkg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Signature and comment signature verified" in r.stdout
    assert ms("-V", "-H", "-P", b64, "-m", str(pkg)).returncode == 0  # -H: prehashed only

    r = par("sign", str(pkg), "-s", str(key), "--legacy", "-t", "legacy, for old verifiers")
    assert r.returncode == 0, r.stderr
    r = ms("-V", "-p", str(pub), "-m", str(pkg))
    assert r.returncode == 0 and "Trusted comment: legacy, for old verifiers" in r.stdout
    assert ms("-V", "-H", "-p", str(pub), "-m", str(pkg)).returncode != 0

    # minisign signs with par's secret key
    sig2 = tmp_path / "by-minisign.minisig"
    assert ms("-S", "-s", str(key), "-m", str(pkg), "-x", str(sig2)).returncode == 0
    assert par("verify", str(pkg), "-p", str(pub), "-x", str(sig2)).returncode == 0


def test_wrong_key_names_both_ids(minisign, apkg, tmp_path):
    pkg = copy_pkg(apkg, tmp_path)
    for n in ("a", "b"):
        assert ms("-G", "-W", "-p", str(tmp_path / f"{n}.pub"), "-s",
                  str(tmp_path / f"{n}.key")).returncode == 0
    # make "a" a key whose id starts with a zero (one key in 16), which minisign
    # 0.11 prints with fewer digits
    for _ in range(300):
        if len(open(tmp_path / "a.pub").readline().split()[-1]) < 16:
            break
        assert ms("-G", "-f", "-W", "-p", str(tmp_path / "a.pub"), "-s",
                  str(tmp_path / "a.key")).returncode == 0
    assert key_id(tmp_path / "a.pub").startswith("0")
    assert ms("-S", "-s", str(tmp_path / "a.key"), "-m", str(pkg)).returncode == 0
    ida, idb = key_id(tmp_path / "a.pub"), key_id(tmp_path / "b.pub")
    r = par("verify", str(pkg), "-p", str(tmp_path / "b.pub"))
    assert r.returncode == 1 and r.stdout == ""
    assert "untrusted_signer" in r.stderr and ida in r.stderr and idb in r.stderr, r.stderr
    # minisign agrees
    assert ms("-V", "-p", str(tmp_path / "b.pub"), "-m", str(pkg)).returncode != 0
    assert par("verify", str(pkg), "-p", str(tmp_path / "a.pub")).returncode == 0


def test_tampering_is_refused(minisign, apkg, tmp_path):
    pkg = copy_pkg(apkg, tmp_path)
    pub, key = tmp_path / "k.pub", tmp_path / "k.key"
    assert par("keygen", "-W", "-p", str(pub), "-s", str(key)).returncode == 0
    assert par("sign", str(pkg), "-s", str(key), "-t", "echo 1.0.0").returncode == 0
    assert par("verify", str(pkg), "-p", str(pub)).returncode == 0
    sig_path = str(pkg) + ".minisig"
    sig_text = open(sig_path).read()

    # one byte of the package
    data = bytearray(pkg.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "bad.apkg"
    bad.write_bytes(bytes(data))
    r = par("verify", str(bad), "-p", str(pub), "-x", sig_path)
    assert r.returncode == 1 and "signature_invalid" in r.stderr, r.stderr
    assert "does not match the contents" in r.stderr
    assert ms("-V", "-p", str(pub), "-m", str(bad), "-x", sig_path).returncode != 0

    # the trusted comment
    with open(sig_path, "w") as f:
        f.write(sig_text.replace("trusted comment: echo 1.0.0", "trusted comment: echo 9.9.9"))
    r = par("verify", str(pkg), "-p", str(pub))
    assert r.returncode == 1 and "signature_invalid" in r.stderr
    assert "trusted comment" in r.stderr and "9.9.9" not in r.stdout
    assert ms("-V", "-p", str(pub), "-m", str(pkg)).returncode != 0

    # the untrusted comment may change freely (as with minisign)
    with open(sig_path, "w") as f:
        f.write(sig_text.replace("signature from minisign secret key", "anything"))
    assert par("verify", str(pkg), "-p", str(pub)).returncode == 0

    # a garbled signature file: the error names the line
    lines = sig_text.splitlines()
    with open(sig_path, "w") as f:
        f.write("\n".join([lines[0], lines[1][:-4], lines[2], lines[3]]) + "\n")
    r = par("verify", str(pkg), "-p", str(pub))
    assert r.returncode == 1 and "line 2" in r.stderr and sig_path in r.stderr, r.stderr
    # no signature at all
    os.unlink(sig_path)
    r = par("verify", str(pkg), "-p", str(pub))
    assert r.returncode == 1 and sig_path in r.stderr


def test_par_encrypted_key(minisign, apkg, tmp_path):
    pkg = copy_pkg(apkg, tmp_path)
    pub, key, pw = tmp_path / "e.pub", tmp_path / "e.key", tmp_path / "pw"
    pw.write_text("s3cret pass phrase\n")
    r = par("keygen", "-p", str(pub), "-s", str(key), "--password-file", str(pw))
    assert r.returncode == 0, r.stderr
    raw = secret_key_bytes(key)
    assert raw[:6] == b"EdScB2"
    assert int.from_bytes(raw[38:46], "little") == 33554432  # minisign's OPSLIMIT_SENSITIVE
    assert int.from_bytes(raw[46:54], "little") == 1 << 30  # MEMLIMIT_SENSITIVE

    bad = tmp_path / "badpw"
    bad.write_text("not it\n")
    r = par("sign", str(pkg), "-s", str(key), "--password-file", str(bad))
    assert r.returncode == 1 and "wrong password or corrupt secret key" in r.stderr
    assert not os.path.exists(str(pkg) + ".minisig")

    # the password on standard input
    r = par("sign", str(pkg), "-s", str(key), "--password-file", "-",
            input="s3cret pass phrase\n")
    assert r.returncode == 0, r.stderr
    assert ms("-V", "-p", str(pub), "-m", str(pkg)).returncode == 0

    # minisign decrypts par's key (it reads the password from stdin when not a tty)
    sig2 = tmp_path / "ms.minisig"
    r = ms("-S", "-s", str(key), "-m", str(pkg), "-x", str(sig2), input="s3cret pass phrase\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert par("verify", str(pkg), "-p", str(pub), "-x", str(sig2)).returncode == 0


def test_minisign_encrypted_key(minisign, apkg, tmp_path):
    pkg = copy_pkg(apkg, tmp_path)
    pub, key = tmp_path / "m.pub", tmp_path / "m.key"
    r = ms("-G", "-p", str(pub), "-s", str(key), input="hunter2\nhunter2\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert secret_key_bytes(key)[2:4] == b"Sc"
    r = ms("-S", "-s", str(key), "-m", str(pkg), input="hunter2\n")
    assert r.returncode == 0, r.stdout + r.stderr
    r = par("verify", str(pkg), "-p", str(pub))
    assert r.returncode == 0 and "Signature and comment signature verified" in r.stdout

    # par signs with minisign's encrypted key
    pw = tmp_path / "pw"
    pw.write_text("hunter2\r\n")  # a CR LF line end is not part of the password
    sig = tmp_path / "par.minisig"
    r = par("sign", str(pkg), "-s", str(key), "--password-file", str(pw), "-x", str(sig))
    assert r.returncode == 0, r.stderr
    r = ms("-V", "-p", str(pub), "-m", str(pkg), "-x", str(sig))
    assert r.returncode == 0, r.stdout + r.stderr


def test_keygen_refusals(tmp_path):
    pub, key = tmp_path / "k.pub", tmp_path / "k.key"
    assert par("keygen", "-W", "-p", str(pub), "-s", str(key)).returncode == 0
    before = (pub.read_bytes(), key.read_bytes())
    r = par("keygen", "-W", "-p", str(pub), "-s", str(key))
    assert r.returncode == 1 and "already exists" in r.stderr and "--force" in r.stderr
    assert (pub.read_bytes(), key.read_bytes()) == before
    r = par("keygen", "-W", "-p", str(pub), "-s", str(key), "--force")
    assert r.returncode == 0, r.stderr
    assert pub.read_bytes() != before[0] and key.read_bytes() != before[1]
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600

    # no password source and no terminal: refused, nothing written
    p2, k2 = tmp_path / "n.pub", tmp_path / "n.key"
    r = par("keygen", "-p", str(p2), "-s", str(k2), stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert ("no terminal to read a password from; pass --password-file or --unencrypted"
            in r.stderr)
    assert not p2.exists() and not k2.exists()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    r = par("keygen", "-p", str(p2), "-s", str(k2), "--password-file", str(empty))
    assert r.returncode == 1 and "empty password" in r.stderr
    r = par("keygen", "-p", str(p2), "-s", str(k2), "-W", "--password-file", str(empty))
    assert r.returncode == 2
    r = par("keygen", "-W", "-p", str(p2), "-s", str(p2))
    assert r.returncode == 2 and not p2.exists()

    # signing with an encrypted key and no password source
    enc_key = tmp_path / "enc.key"
    enc_key.write_text("untrusted comment: x\n" + base64.b64encode(
        b"EdScB2" + bytes(152)).decode() + "\n")
    f = tmp_path / "f"
    f.write_text("x")
    r = par("sign", str(f), "-s", str(enc_key), stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "no terminal" in r.stderr and "--password-file" in r.stderr


def _pty_run(args, answers, timeout=120):
    """Runs par with a pseudo-terminal as its controlling terminal; answers each
    prompt (a substring of the output) with a line. Returns (exit code, output)."""
    master, slave = pty.openpty()
    env = dict(os.environ)

    def ctty():
        import fcntl
        import termios
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([os.path.join(BUILD, "par"), *args], stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True, preexec_fn=ctty, env=env)
    os.close(slave)
    out = b""
    pending = list(answers)
    deadline = time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        if pending and pending[0][0].encode() in out:
            prompt, line = pending.pop(0)
            out = out.replace(prompt.encode(), b"<" + prompt.encode() + b">", 1)
            os.write(master, line.encode() + b"\n")
        if proc.poll() is not None and not r:
            break
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, out.decode(errors="replace")


def test_terminal_prompts(minisign, apkg, tmp_path):
    pkg = copy_pkg(apkg, tmp_path)
    pub, key = tmp_path / "t.pub", tmp_path / "t.key"
    # two different answers: refused before any key derivation
    rc, out = _pty_run(["keygen", "-p", str(pub), "-s", str(key)],
                       [("Password for the new secret key: ", "one"),
                        ("Password (again): ", "two")])
    assert rc == 1 and "do not match" in out, out
    assert not pub.exists() and not key.exists()

    rc, out = _pty_run(["keygen", "-p", str(pub), "-s", str(key)],
                       [("Password for the new secret key: ", "typed secret"),
                        ("Password (again): ", "typed secret")])
    assert rc == 0, out
    assert "typed secret" not in out  # echo was off
    assert secret_key_bytes(key)[2:4] == b"Sc"

    rc, out = _pty_run(["sign", str(pkg), "-s", str(key)],
                       [(f"Password for {key}: ", "typed secret")])
    assert rc == 0, out
    assert "typed secret" not in out
    assert ms("-V", "-p", str(pub), "-m", str(pkg)).returncode == 0


# ---- name pins: trust.keys[].packages ---------------------------------------------


def named_echo(tmp_path, name):
    """The echo example renamed to `name`, packed by par."""
    src = tmp_path / name
    shutil.copytree(os.path.join(BUILD, "stage", "echo"), src)
    y = (src / "agent.yaml").read_text()
    (src / "agent.yaml").write_text(y.replace("name: echo", "name: " + name, 1))
    out = tmp_path / f"{name}-1.0.0.apkg"
    r = run("pack", str(src), "-o", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_name_pins(server_factory, tmp_path):
    """acme-* is pinned to key A: only A signs acme-*; the unpinned key C signs
    every other name; A signs nothing outside its pin; an unsigned acme-* is
    refused even where unsigned packages are accepted."""
    keys = {}
    for n in ("a", "c"):
        pub, sec = tmp_path / f"{n}.pub", tmp_path / f"{n}.key"
        assert par("keygen", "-W", "-p", str(pub), "-s", str(sec)).returncode == 0
        keys[n] = (pub, sec, key_id(pub))
    conf = tmp_path / "par.yaml"
    conf.write_text(f"""
auth:
  mode: "off"
trust:
  require_signatures: false
  keys:
    - {{key: {keys['a'][0]}, packages: ["acme-*"]}}
    - {{key: {keys['c'][0]}}}
""")
    srv = server_factory([], args=("--config", str(conf)),
                         expected_errors=[r"package refused"])

    def deploy(name, signer):
        d = tmp_path / f"{name}-by-{signer}"
        d.mkdir()
        pkg = named_echo(d, name)
        if signer:
            assert par("sign", str(pkg), "-s", str(keys[signer][1])).returncode == 0
        return requests.post(srv.url + "/runtime/packages", json={"path": str(pkg)}, timeout=60)

    ida, idc = keys["a"][2], keys["c"][2]
    # a pinned name signed by another trusted key: refused, naming pattern and signer
    body = assert_error(deploy("acme-tools", "c"), 422, "untrusted_signer")
    assert "acme-*" in body["message"] and idc in body["message"], body
    assert ida in body["message"], body  # ... and the key that may sign it
    # ... unsigned, although unsigned packages are accepted here
    body = assert_error(deploy("acme-tools", None), 422, "signature_missing")
    assert "acme-*" in body["message"] and ida in body["message"], body
    # a pinned key signing a name outside its pin
    body = assert_error(deploy("echo", "a"), 422, "untrusted_signer")
    assert "acme-*" in body["message"] and "'echo'" in body["message"], body
    assert ida in body["message"], body
    # the accepted pairs
    r = deploy("acme-tools", "a")
    assert r.status_code == 201, r.text
    assert r.json()["signer"] == ida
    r = deploy("echo", "c")
    assert r.status_code == 201, r.text
    assert r.json()["signer"] == idc
    r = deploy("other", None)  # unpinned and unsigned: the usual warning, deployed
    assert r.status_code == 201, r.text
    for agent in ("acme-tools", "echo", "other"):
        r = srv.post(agent, {"input": {"x": 1}})
        assert r.status_code == 200 and r.json()["output"] == {"x": 1}, r.text
