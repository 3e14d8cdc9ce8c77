"""Packages that must be refused at deploy, each with its reason, while the
rest keep serving."""
import os
import shutil
import struct
import zipfile

import pytest

from conftest import BUILD, assert_error, package, run

ECHO_STAGE = os.path.join(BUILD, "stage", "echo")


def make_pkg(tmp, name, manifest, files=None, so=True):
    d = os.path.join(tmp, "src-" + name)
    os.makedirs(os.path.join(d, "lib"), exist_ok=True)
    with open(os.path.join(d, "agent.yaml"), "w") as f:
        f.write(manifest)
    if so:
        shutil.copy(os.path.join(ECHO_STAGE, "lib", "libecho.so"), os.path.join(d, "lib"))
    for rel, data in (files or {}).items():
        with open(os.path.join(d, rel), "wb") as f:
            f.write(data)
    out = os.path.join(tmp, name + ".apkg")
    # --no-compat: these packages are meant to be refused by the deploy, not by pack
    r = run("pack", d, "-o", out, "--no-compat")
    assert r.returncode == 0, r.stderr
    return out


def native_manifest(name, entry="lib/libecho.so:echo", extra=""):
    return (f"name: {name}\nruntime: native\nentrypoint: {entry}\n"
            f"metadata:\n  version: 1.0.0\n{extra}")


@pytest.fixture(scope="module")
def bad(tmp_path_factory, server_factory):
    tmp = str(tmp_path_factory.mktemp("pkgs"))
    pk = [package("echo")]
    pk.append(make_pkg(tmp, "nosym", native_manifest("nosym", "lib/libecho.so:nope")))
    # an aarch64 ELF header where the x86_64 object should be
    elf = bytearray(64)
    elf[0:4] = b"\x7fELF"
    elf[4] = 2  # 64-bit
    elf[5] = 1  # little endian
    elf[6] = 1
    struct.pack_into("<HH", elf, 16, 3, 183)  # ET_DYN, EM_AARCH64
    pk.append(make_pkg(tmp, "wrongarch", native_manifest("wrongarch", "lib/libarm.so:echo"),
                       files={"lib/libarm.so": bytes(elf)}))
    pk.append(make_pkg(tmp, "pyonly", "name: pyonly\nruntime: node18\nentrypoint: a:b\n"
                       "metadata:\n  version: 1.0.0\n", so=False))
    pk.append(make_pkg(tmp, "badabi", native_manifest("badabi", extra="  par:\n    abi: 99\n")))
    # a zip-slip archive written by hand
    slip = os.path.join(tmp, "slip.apkg")
    with zipfile.ZipFile(slip, "w") as z:
        z.writestr("agent.yaml", native_manifest("slip"))
        z.writestr("../../evil.txt", "owned")
    pk.append(slip)
    # a character-device entry (ZIP keeps the Unix mode in the external attributes)
    dev = os.path.join(tmp, "device.apkg")
    with zipfile.ZipFile(dev, "w") as z:
        z.writestr("agent.yaml", native_manifest("device"))
        info = zipfile.ZipInfo("lib/null")
        info.create_system = 3
        info.external_attr = (0o020644 << 16)
        z.writestr(info, "")
    pk.append(dev)
    notzip = os.path.join(tmp, "garbage.apkg")
    with open(notzip, "wb") as f:
        f.write(b"this is not a zip file at all" * 10)
    pk.append(notzip)
    s = server_factory(pk, expected_errors=[r'"package refused"'])
    return s, tmp


def failed(s, name, error="incompatible_package"):
    p = s.get("/runtime/packages/" + name).json()
    assert p["state"] == "failed", p
    if error:
        assert p["last_error_name"] == error, p
    return p["last_error"]


def test_refusals_listed_with_reasons(bad):
    s, tmp = bad
    assert "symbol 'nope' not found" in failed(s, "nosym")
    assert "built for aarch64" in failed(s, "wrongarch")
    assert "no loader for runtime node18" in failed(s, "pyonly")
    assert "abi is 99" in failed(s, "badabi")
    assert ".." in failed(s, "slip", "unsafe_archive")
    assert "special files" in failed(s, "device", "unsafe_archive")
    assert failed(s, "garbage.apkg", "invalid_package")
    assert not os.path.exists(os.path.join(tmp, "..", "evil.txt"))
    for name in ("nosym", "wrongarch", "pyonly", "badabi"):
        assert_error(s.post(name, {"input": 1}), 404, "agent_not_found")


def test_others_keep_serving(bad):
    s, _ = bad
    assert s.get("/runtime/ready").status_code == 200
    assert s.post("echo", {"input": "fine"}).json()["output"] == "fine"
    info = s.get("/runtime/info").json()
    assert info["packages"]["active"] == 1
    assert info["packages"]["failed"] == 7
