#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/ (run from the repository root).

Seeds are small, meaningful inputs each harness starts from: real manifests
and archives, protocol frames as the worker writes them, versions and ranges
from the semver documentation, real minisign files made by the `minisign`
tool. Campaign finds are merged in with libFuzzer's -merge=1 (make fuzz-merge),
not by this script. Re-running it rewrites only the files it names.
"""
import io
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile

warnings.filterwarnings("ignore", "Duplicate name")

ROOT = os.getcwd()
C = os.path.join(ROOT, "fuzz", "corpus")


def put(harness, name, data):
    d = os.path.join(C, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def manifests():
    for p in ["examples/agents/echo/agent.yaml", "examples/agents/hello-python/agent.yaml",
              "tests/fixtures/faulty/agent.yaml", "tests/fixtures/hostile/agent.yaml",
              "tests/fixtures/whoami/agent.yaml"]:
        with open(os.path.join(ROOT, p), "rb") as f:
            put("manifest", p.split("/")[-2], f.read())
    put("manifest", "anchors", "name: a\nx: &a [1, 2]\ny: *a\nmetadata: {version: 1.0.0}\n")
    put("manifest", "sub-agents",
        "name: shop\nentrypoint: m:f\nruntime: python3.11\nmetadata:\n  version: 1.2.3-rc.1\n"
        "  sub_agents:\n    - {name: cart, description: c, public: true, entrypoint: m:cart}\n"
        "  par: {requires: '>=0.1.0 <1.0.0', abi: 1, limits: {timeout_ms: 100}}\n"
        "environment: {A: '1', B: \"${HOME}\"}\ncapabilities: [network]\n")


def zipped(entries, compression=zipfile.ZIP_DEFLATED):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", compression) as z:
        for e in entries:
            name, data = e[0], e[1]
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = compression
            if len(e) > 2:
                info.external_attr = e[2] << 16
            z.writestr(info, data)
    return b.getvalue()


def archives():
    yaml = b"name: echo\nruntime: native\nentrypoint: lib/libecho.so:echo\nmetadata: {version: 1.0.0}\n"
    with open(os.path.join(ROOT, "tests/fixtures/pixell-built/hello-python-1.0.0.apkg"), "rb") as f:
        put("archive", "pixell-built", f.read())
    put("archive", "package", zipped([("agent.yaml", yaml), ("lib/", b"", stat.S_IFDIR | 0o755),
                                      ("lib/libecho.so", b"\x7fELF" + b"\0" * 60, 0o100755)]))
    put("archive", "stored", zipped([("agent.yaml", yaml), (".env", b"A=1\n")], zipfile.ZIP_STORED))
    put("archive", "slip", zipped([("agent.yaml", yaml), ("../../evil.txt", b"owned")]))
    put("archive", "absolute", zipped([("agent.yaml", yaml), ("/tmp/evil.txt", b"owned")]))
    put("archive", "symlink-out", zipped([("agent.yaml", yaml), ("l", b"../../etc", stat.S_IFLNK | 0o777),
                                          ("l/passwd", b"x")]))
    put("archive", "symlink-in", zipped([("agent.yaml", yaml), ("a/b", b"x"),
                                         ("c", b"a/b", stat.S_IFLNK | 0o777)]))
    put("archive", "device", zipped([("agent.yaml", yaml), ("dev", b"", stat.S_IFCHR | 0o644)]))
    put("archive", "duplicate", zipped([("agent.yaml", yaml), ("agent.yaml", b"name: other\n")]))
    put("archive", "deep", zipped([("agent.yaml", yaml), ("d/" * 40 + "f", b"x")]))
    put("archive", "bomb", zipped([("agent.yaml", yaml), ("zeros", b"\0" * 300000)]))
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        with z.open(zipfile.ZipInfo("agent.yaml", (2020, 1, 1, 0, 0, 0)), "w", force_zip64=True) as w:
            w.write(yaml)
    put("archive", "zip64", b.getvalue())


def frame(t, rid, header=b"", body=b"", version=1):
    return struct.pack("<BBHIIIQ", t, version, 0, len(header), len(body), 0, rid) + header + body


def frames():
    put("proto", "hello", b"\x02" + frame(11, 0, b'{"sandbox":{"seccomp":true}}') +
        frame(1, 0, b'{"protocol":1,"runtime":"native","pid":7,"exports":["","upper"]}'))
    put("proto", "invoke", b"\x02" + frame(2, 9, b'{"agent":"echo","request_id":"r1","deadline_ms":100,'
                                            b'"context":{"k":"v"}}', b'{"msg":"hi"}'))
    put("proto", "result", b"\x02" + frame(3, 9, b'{"units":{"tokens":12},"cpu_ms":0.42}', b'{"ok":true}') +
        frame(8, 9, b'{"units":{"tokens":1}}'))
    put("proto", "error", b"\x02" + frame(4, 0, b'{"error":"load_failed","message":"no"}'))
    put("proto", "call", b"\x03" + frame(5, 1, b'{"agent":"upper","parent":9}', b'"x"') +
        frame(6, 1, b'{"status":0}', b'"X"'))
    put("proto", "log", b"\x02" + frame(7, 9, b'{"level":"info","msg":"m","request_id":"r1"}') +
        frame(9, 9, b"", b"chunk") + frame(10, 9))
    put("proto", "bad-version", b"\x02" + frame(2, 1, b"{}", version=2))
    put("proto", "body-over", b"\x01" + frame(3, 1, b"{}", b"x" * 40))
    put("proto", "partial", b"\x02" + frame(3, 1, b"{}", b"xyz")[:-1])


def small():
    put("semver", "basic", "1.2.3\n1.2.4-rc.1\n>=1.0.0 <2.0.0")
    put("semver", "caret", "0.2.3+build.5\n0.3.0\n^0.2.3 || ~1.2")
    put("semver", "hyphen", "1.2.3-alpha.1\n1.2.3\n1.2.3-alpha - 2.3.4")
    put("semver", "wild", "2.0.0\n1.9.9\n1.x || >=2.0.0-beta <2.1 || *")
    put("semver", "pre", "1.2.3-beta.2\n1.2.3-beta.11\n>=1.2.3-beta <1.3.0-0")
    put("dotenv", "basic", "# comment\nexport A=1\nB = two words # note\nC='lit ${HOME} $$'\n"
        "D=\"esc \\n \\t \\\" \\\\ \\$ ${PAR_FUZZ_ALLOWED}\"\n\nbad line\nB=again\n")
    put("dotenv", "crlf", "A=1\r\nB='x'\r\n")
    put("dotenv", "refused", "LD_PRELOAD=/x.so\nGLIBC_TUNABLES=a\nOK=${UNLISTED}\n")
    for name, s in [("plain", "echo"), ("sub", "echo/shout"), ("pinned", "echo@1.0.0"),
                    ("pinned-sub", "echo@1.0.0-rc.1+b/shout"), ("nul", "echo\0junk"),
                    ("encoded", "echo%00"), ("dash", "a-b-c/d-e")]:
        put("id", name, s)
    put("json", "invoke", '{"input":{"msg":"hi","n":[1,2.5e3,-0,true,false,null]},'
        '"context":{"k":"v"},"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}')
    put("json", "escapes", '{"input":"a\\u00e9\\ud83d\\ude00\\n\\"\\/","k":"\\u0041","k":2}')
    put("json", "escaped-key", '{"input":1,"in\\u0070ut":2}')
    put("json", "scalars", ' [ 1 , "x" , { } , [ ] , 1e400 , 123456789012345678901234567890 ] ')
    put("json", "utf8", '{"input":"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"}'.encode("latin-1"))
    put("json", "bad-utf8", b'{"input":"\xc3\x28 \xed\xa0\x80"}')
    put("json", "lone-surrogate", '{"input":"\\ud800x"}')
    put("json", "nul", '{"input":"a\\u0000b"}')
    put("json", "deep", "[" * 128 + "]" * 128)


def minisign():
    t = tempfile.mkdtemp()
    try:
        run = lambda *a: subprocess.run(["minisign", *a], cwd=t, check=True, capture_output=True,
                                        input=b"")
        run("-G", "-W", "-p", "k.pub", "-s", "k.key")
        with open(os.path.join(t, "m"), "wb") as f:
            f.write(b"package bytes\n")
        run("-S", "-s", "k.key", "-m", "m", "-t", "timestamp:1700000000\tfile:m")
        shutil.copy(os.path.join(t, "m.minisig"), os.path.join(t, "h"))
        run("-S", "-l", "-s", "k.key", "-m", "m", "-x", "legacy", "-t", "legacy")
        r = lambda n: open(os.path.join(t, n), "rb").read()
        pub, sig, leg, key, msg = r("k.pub"), r("h"), r("legacy"), r("k.key"), r("m")
        put("minisign", "prehashed", pub + b"\0" + sig + b"\0" + msg + b"\0" + key)
        put("minisign", "legacy", pub + b"\0" + leg + b"\0" + msg)
        put("minisign", "base64-key", pub.splitlines()[1] + b"\0" + sig + b"\0" + b"other\n")
        put("minisign", "crlf", pub.replace(b"\n", b"\r\n") + b"\0" + sig.replace(b"\n", b"\r\n") +
            b"\0" + msg)
    finally:
        shutil.rmtree(t)


if __name__ == "__main__":
    manifests()
    archives()
    frames()
    small()
    minisign()
    sys.exit(0)
