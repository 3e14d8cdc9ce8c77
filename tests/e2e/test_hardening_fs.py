"""File-system hardening: trees of any depth, ZIP readers that agree, scratch quotas.

- A package whose entry names nest directories thousands of levels deep is
  refused (bad_archive) instead of crashing the deploy thread, and no content of
  the cache (however deep, however unremovable) stops the runtime from starting.
- A ZIP64 locator that libarchive would ignore is refused, so `par inspect`, a
  deploy and Python's zipfile always see the same entries with the same bytes.
- A worker that fills its scratch directory past limits.scratch_mb is stopped,
  its call gets scratch_quota_exceeded, the directory is gone afterwards,
  however deep it was, and neighbours keep serving.
"""
import hashlib
import io
import json
import os
import struct
import subprocess
import time
import zipfile

import pytest
import requests

from conftest import Server, assert_error, package, run
from test_python import pypkg

MANIFEST = """\
version: "1.0"
name: {name}
runtime: python3.11
entrypoint: src.main:handler
metadata:
  version: 1.0.0
"""
MAIN = "def handler(input, context=None):\n    return input\n"


def config(tmp, extra=""):
    p = os.path.join(str(tmp), "par.yaml")
    with open(p, "w") as f:
        f.write("auth: {mode: off}\ntrust: {require_signatures: false}\n" + extra)
    return p


def deploy(s, path):
    return requests.post(s.url + "/runtime/packages", json={"path": path}, timeout=120)


def still_serving(s):
    assert s.get("/runtime/health").status_code == 200
    r = s.post("echo", {"input": "neighbour"})
    assert r.status_code == 200 and r.json()["output"] == "neighbour", r.text


# ---- finding 1: depth -------------------------------------------------------------


def deep_archive(path, name="deep", levels=2040):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("agent.yaml", MANIFEST.format(name=name))
        z.writestr("src/main.py", MAIN)
        z.writestr("d/" * levels, "")        # the directory chain itself
        z.writestr("d/" * levels + "f", "x")  # and a file at its bottom
    return path


def deep_tree(top, levels, payload=b"x"):
    """Builds top/d/d/.../d/f with descriptors (the path is far past PATH_MAX)."""
    os.makedirs(top, exist_ok=True)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    f = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(f, payload)
    os.close(f)
    os.close(fd)


def test_deep_archive_is_refused_and_the_runtime_lives(server_factory, tmp_path):
    s = server_factory([package("echo")], args=["--config", config(tmp_path)],
                       expected_errors=["package refused"])
    apkg = deep_archive(str(tmp_path / "deep-1.0.0.apkg"))
    assert len(("d/" * 2040).encode()) < 4096  # passes the name-length check
    assert_error(deploy(s, apkg), 422, "bad_archive")
    assert "directory levels deep" in deploy(s, apkg).json()["message"]
    assert s.proc.poll() is None
    still_serving(s)
    r = run("inspect", apkg)
    assert r.returncode != 0 and "directory levels deep" in r.stderr, r.stderr


def test_start_survives_any_cache_content(tmp_path):
    """Deep half-written entries and extractions in progress are removed at start
    (the walk that removes them used to overflow the stack); the runtime serves."""
    cache = tmp_path / "var" / "cache" / "sha256"
    os.makedirs(cache)
    half = "ab" * 32  # a digest without its .complete marker
    deep_tree(str(cache / half), 3000)
    deep_tree(str(cache / ".tmp-deadbeef-XXXXXX"), 3000)
    # a directory its owner locked itself out of
    deep_tree(str(cache / ("cd" * 32)), 10)
    os.chmod(cache / ("cd" * 32) / "d", 0)
    # a "complete" deep entry whose marker is a FIFO: eviction measures and removes it
    old = "01" * 32
    deep_tree(str(cache / old), 3000)
    os.mkfifo(cache / (old + ".complete"))
    conf = config(tmp_path, "cache: {max_mb: 1}\n")
    s = Server(str(tmp_path), [package("echo")], args=["--config", conf])
    try:
        still_serving(s)
        left = sorted(os.listdir(cache))
        assert half not in left and ".tmp-deadbeef-XXXXXX" not in left and "cd" * 32 not in left, left
        deadline = time.time() + 30
        while old in os.listdir(cache):  # evicted after the deploy, least recently used
            assert time.time() < deadline, os.listdir(cache)
            time.sleep(0.1)
        assert any("half-written entry " + half in l.get("msg", "") for l in s.lines())
    finally:
        s.stop()


def test_an_entry_that_cannot_be_removed_is_quarantined(tmp_path):
    cache = tmp_path / "var" / "cache" / "sha256"
    stuck = "ef" * 32
    deep_tree(str(cache / stuck), 100)
    bottom = str(cache / stuck / "/".join(["d"] * 100) / "f")
    if subprocess.run(["chattr", "+i", bottom], capture_output=True).returncode != 0:
        pytest.skip("chattr +i needs CAP_LINUX_IMMUTABLE and ext2/3/4, xfs or btrfs")
    try:
        for attempt in (1, 2):  # quarantined at the first start, retried at the next
            s = Server(str(tmp_path), [package("echo")], args=["--config", config(tmp_path)])
            try:
                still_serving(s)
                left = os.listdir(cache)
                assert stuck not in left, left
                quarantined = [n for n in left if n.startswith(".quarantine-" + stuck)]
                assert len(quarantined) == 1, left
                msgs = [l.get("msg", "") for l in s.lines() if l.get("level") == "warn"]
                want = "quarantined" if attempt == 1 else "still cannot be removed"
                assert any(stuck in m and want in m for m in msgs), msgs
            finally:
                s.stop()
    finally:
        for n in os.listdir(cache):
            if n.startswith(".quarantine-"):
                subprocess.run(["chattr", "-R", "-i", str(cache / n)], capture_output=True)
    # once the cause is gone, the next start removes it
    s = Server(str(tmp_path), [package("echo")], args=["--config", config(tmp_path)])
    try:
        still_serving(s)
        assert not [n for n in os.listdir(cache) if n.startswith(".quarantine-")]
    finally:
        s.stop()


# ---- finding 4: one view of the archive ---------------------------------------------


def _records(data):
    """(central directory records, their start) of a zipfile-written archive."""
    eocd = data.rindex(b"PK\x05\x06")
    size, off = struct.unpack("<II", data[eocd + 12:eocd + 20])
    cd = data[off:off + size]
    recs, p = [], 0
    while p < len(cd):
        n, x, c = struct.unpack("<HHH", cd[p + 28:p + 34])
        recs.append(cd[p:p + 46 + n + x + c])
        p += 46 + n + x + c
    return recs, off


def _zip(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


def _z64(cd_off, cd_size, count, disks=1, rec_at=None, pad=b""):
    """A ZIP64 end record (+ optional extensible data) and its locator."""
    rec = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44 + len(pad), 45, 45, 0, 0, count, count,
                      cd_size, cd_off) + pad
    return rec, lambda at: struct.pack("<4sIQI", b"PK\x06\x07", 0,
                                       at if rec_at is None else rec_at, disks)


def _eocd(count, cd_size, cd_off):
    return struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_off, 0)


def crafted(kind):
    """Archives whose ZIP64 locator is handled differently by different readers.

    `two-dirs`: a locator with total disks = 0. Python's zipfile (and unzip)
    honour it and read the central directory it points to; libarchive ignores
    it and reads from where the classic end record points, one directory
    earlier, where an extra entry hides."""
    shown = [("agent.yaml", MANIFEST.format(name="twodirs")), ("src/main.py", MAIN)]
    hidden = [("src/hidden.py", "print('not listed by zipfile')\n")]
    data = _zip(hidden + shown)
    recs, cd0 = _records(data)
    body = data[:cd0]
    cd_hidden = b"".join(recs[:len(hidden)])
    cd_shown = b"".join(recs[len(hidden):])
    if kind == "canonical":  # a well-formed ZIP64 end: every reader takes it alike
        cd = cd_hidden + cd_shown
        rec, loc = _z64(len(body), len(cd), len(recs))
        z = len(body) + len(cd)
        return body + cd + rec + loc(z) + _eocd(0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    if kind == "size-mismatch":  # the end record's size covers 46 bytes more than the records
        cd = cd_hidden + cd_shown
        junk = b"\0" * 46
        return body + junk + cd + _eocd(len(recs), len(junk) + len(cd), len(body))
    a_off = len(body) + len(cd_hidden)
    disks = {"two-dirs": 0, "many-disks": 2}.get(kind, 1)
    pad = b"\0" * 8 if kind == "extensible" else b""
    rec, loc = _z64(a_off, len(cd_shown), len(shown), disks=disks, pad=pad,
                    rec_at=0 if kind == "elsewhere" else None)
    z = a_off + len(cd_shown)
    tail = cd_hidden + cd_shown + rec + loc(z)
    return body + tail + _eocd(len(recs), len(tail), len(body))


def zipfile_view(path):
    try:
        with zipfile.ZipFile(path) as z:
            return {i.filename.rstrip("/"): hashlib.sha256(z.read(i)).hexdigest()
                    for i in z.infolist() if not i.is_dir()}
    except zipfile.BadZipFile:
        return None


def deployed_view(s, apkg):
    """The tree the deploy extracted: the cache entry named by the archive's digest."""
    with open(apkg, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    root = os.path.join(s.tmp, "var", "cache", "sha256", digest)
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.mark.parametrize("kind", ["two-dirs", "many-disks", "extensible", "elsewhere",
                                  "size-mismatch", "canonical"])
def test_readers_agree_on_every_entry(server_factory, tmp_path, kind):
    apkg = str(tmp_path / f"twodirs-{kind}.apkg")
    with open(apkg, "wb") as f:
        f.write(crafted(kind))
    s = server_factory([package("echo")], args=["--config", config(tmp_path)],
                       expected_errors=["package refused"])
    py = zipfile_view(apkg)
    ins = run("inspect", apkg)
    r = deploy(s, apkg)
    if kind == "canonical":
        assert py is not None and "src/hidden.py" in py
        assert ins.returncode == 0, ins.stderr
        listed = {e["name"]: e["sha256"] for e in json.loads(ins.stdout)["entries"]
                  if e["type"] == "file"}
        assert r.status_code == 201, r.text
        assert listed == py == deployed_view(s, apkg)
        requests.delete(s.url + "/runtime/packages/twodirs", timeout=30)
    else:
        # zipfile would list a package without src/hidden.py; libarchive would
        # extract it: PAR refuses the archive in both of its readers
        if kind == "two-dirs":
            assert py is not None and "src/hidden.py" not in py
        assert ins.returncode != 0 and ins.stdout == "", ins.stdout
        assert "ZIP readers would disagree" in ins.stderr, ins.stderr
        assert_error(r, 422, "bad_archive")
    still_serving(s)


# ---- finding 5: scratch ---------------------------------------------------------------

SCRATCHY = """\
import os
import time


def ok(input, context=None):
    return input


def whoami(input, context=None):
    return {"tmpdir": os.environ.get("TMPDIR")}


def fill(input, context=None):
    # a chain of directories deeper than PATH_MAX, then data at its bottom
    fd = os.open(os.environ["TMPDIR"], os.O_RDONLY | os.O_DIRECTORY)
    os.mkdir(input["top"], dir_fd=fd)
    nfd = os.open(input["top"], os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = nfd
    for _ in range(input["levels"]):
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    chunk = b"x" * (1 << 20)
    for i in range(input["mb"]):
        f = os.open("f%d" % i, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(f, chunk)
        os.close(f)
    os.close(fd)
    time.sleep(input.get("hold", 0))  # an agent that keeps working on its files
    return {"written_mb": input["mb"]}
"""


def scratchy(tmp):
    return pypkg(tmp, "scratchy", {"src/scratchy.py": SCRATCHY}, entrypoint="src.scratchy:ok",
                 sub_agents=[(n, True, "src.scratchy:" + n) for n in ("whoami", "fill")],
                 extra="  par:\n    limits: {timeout_ms: 30000}\n")


def output(s, agent, inp):
    r = s.post(agent, {"input": inp}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["output"]


def wait_gone(path, timeout=30):
    deadline = time.time() + timeout
    while os.path.lexists(path):
        assert time.time() < deadline, path + " is still there"
        time.sleep(0.1)


def test_scratch_quota(server_factory, tmp_path):
    apkg = scratchy(tmp_path)
    s = server_factory([apkg, package("echo")],
                       args=["--config", config(tmp_path, "limits: {scratch_mb: 16}\n")])
    scratch = output(s, "scratchy/whoami", None)["tmpdir"]
    assert os.path.isdir(scratch)
    # no single file may be larger than the whole quota
    assert s.get("/runtime/packages/scratchy").json()["sandbox"]["rlimits"]["fsize_mb"] == 16
    # under the quota: served
    assert output(s, "scratchy/fill", {"top": "a", "levels": 10, "mb": 4})["written_mb"] == 4
    # over it, at the bottom of a chain deeper than PATH_MAX: stopped, named
    t0 = time.time()
    b = assert_error(s.post("scratchy/fill", {"input": {"top": "b", "levels": 2500, "mb": 64, "hold": 20}},
                            timeout=60), 507, "scratch_quota_exceeded")
    assert "limits.scratch_mb" in b["message"] and "16 MB" in b["message"], b
    assert time.time() - t0 < 15  # stopped by the accountant, not by the deadline
    wait_gone(scratch)  # the deep tree went with the worker
    assert not any("cannot remove" in l.get("msg", "") for l in s.lines())
    still_serving(s)
    assert output(s, "scratchy", "again") == "again"  # a fresh worker, a fresh scratch
    assert output(s, "scratchy/whoami", None)["tmpdir"] != scratch


def test_deep_scratch_does_not_outlive_a_crash(tmp_path):
    """A runtime killed outright leaves its workers' scratch behind; the next
    start removes it however deep it is, with no warning per entry."""
    apkg = scratchy(tmp_path)
    args = ["--config", config(tmp_path)]
    s = Server(str(tmp_path), [apkg, package("echo")], args=args)
    try:
        scratch = output(s, "scratchy/whoami", None)["tmpdir"]
        assert output(s, "scratchy/fill", {"top": "a", "levels": 2500, "mb": 2})["written_mb"] == 2
    finally:
        s.killed = True
        s.proc.kill()
        s.proc.wait()
        s.stop()
    # the worker may take a moment to notice its runtime is gone
    assert os.path.isdir(scratch)
    s = Server(str(tmp_path), [apkg, package("echo")], args=args)
    try:
        still_serving(s)
        # a new worker may be given the same scratch name: the old tree is what must be gone
        assert not os.path.lexists(os.path.join(scratch, "a"))
        warnings = [l for l in s.lines() if "cannot remove" in l.get("msg", "")]
        assert warnings == [], warnings
    finally:
        s.stop()


def test_one_file_larger_than_the_quota(server_factory, tmp_path):
    """A native worker writing one file past the quota is stopped by RLIMIT_FSIZE
    before the accountant even looks: the same named error, a fresh worker."""
    s = server_factory([package("hostile"), package("echo")],
                       args=["--config", config(tmp_path, "limits: {scratch_mb: 8}\n")])
    scratch = output(s, "hostile/whoami", None)["tmpdir"]
    assert output(s, "hostile/bigfile", "4") == {"written": True}
    b = assert_error(s.post("hostile/bigfile", {"input": "64"}), 507, "scratch_quota_exceeded")
    assert "RLIMIT_FSIZE" in b["message"] and "8 MB" in b["message"], b
    wait_gone(scratch)
    still_serving(s)
    assert output(s, "hostile", "again") == "again"
