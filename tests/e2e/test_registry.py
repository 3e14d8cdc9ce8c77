"""Package trust and registries: signed packages from HTTPS and S3, deployed
through the management API or a polled index; every refusal named, the
previous version still serving."""
import json
import os
import shutil
import time

import pytest
import requests

from conftest import BUILD, assert_error, run
from peers import S3, Key, Registry, make_ca, sha256

REFUSED = [r"package refused", r"cannot restore"]


def stage(d, version, name="echo"):
    """A package directory: the echo example at `version`, renamed to `name`."""
    src = os.path.join(d, f"{name}-{version}")
    if not os.path.exists(src):
        shutil.copytree(os.path.join(BUILD, "stage", "echo"), src)
        y = open(os.path.join(src, "agent.yaml")).read()
        y = y.replace("version: 1.0.0", "version: " + version)
        if name != "echo":
            y = y.replace("name: echo", "name: " + name, 1)
        open(os.path.join(src, "agent.yaml"), "w").write(y)
    return src


def pack(d, src, *args):
    out = os.path.join(d, os.path.basename(src) + ".apkg")
    r = run("pack", src, "-o", out, *args)
    assert r.returncode == 0, r.stderr
    return out


def echo_version(d, version, name="echo"):
    """An echo package at `version` (and optionally another name), packed by par."""
    return pack(d, stage(d, version, name))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("world"))
    ca, crt, key = make_ca(d)
    reg = Registry(crt, key)
    s3 = S3(d)
    w = type("World", (), {})()
    w.d, w.ca, w.reg, w.s3 = d, ca, reg, s3
    w.acme = Key(d, "acme")        # trusted for acme-* only
    w.main = Key(d, "main")        # trusted for any unpinned name
    w.stranger = Key(d, "stranger")  # not trusted
    os.environ["AWS_ACCESS_KEY_ID"] = S3.ACCESS
    os.environ["AWS_SECRET_ACCESS_KEY"] = S3.SECRET
    yield w
    reg.stop()
    s3.stop()


def config(w, tmp, extra=""):
    path = os.path.join(tmp, "par.yaml")
    with open(path, "w") as f:
        f.write(f"""
auth:
  mode: "off"
trust:
  require_signatures: true
  keys:
    - {w.main.line}
    - key: {w.acme.pub}
      packages: ["acme-*"]
registry:
  ca_file: {w.ca}
  retries: 3
  connect_timeout_ms: 2000
  timeout_ms: 20000
  s3:
    endpoint: {w.s3.endpoint}
    region: us-east-1
    path_style: true
{extra}
""")
    return path


def deploy(s, **body):
    return requests.post(s.url + "/runtime/packages", json=body, timeout=120)


def active_version(s, name="echo"):
    r = s.get(f"/runtime/packages/{name}")
    if r.status_code != 200:
        return None
    for v in r.json()["versions"] if "versions" in r.json() else [r.json()]:
        if v["state"] == "active":
            return v["version"]
    return None


@pytest.fixture(scope="module")
def srv(world, server_factory, tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("srv"))
    s = server_factory([], args=("--config", config(world, tmp)), expected_errors=REFUSED)
    # the baseline every refusal must leave serving: echo 1.0.0 from HTTPS, signed
    p = echo_version(world.d, "1.0.0")
    world.main.sign(p)
    url = world.reg.put("/echo-1.0.0.apkg", open(p, "rb").read())
    world.reg.put("/echo-1.0.0.apkg.minisig", open(p + ".minisig", "rb").read())
    r = deploy(s, url=url)
    assert r.status_code == 201, r.text
    return s


def still_serving(s, version="1.0.0"):
    r = s.post("echo", {"input": {"x": 1}})
    assert r.status_code == 200, r.text
    assert active_version(s) == version


def test_https_deploy_reports_signer_digest_and_phases(world, srv):
    rec = srv.get("/runtime/packages/echo").json()
    rec = rec["versions"][-1] if "versions" in rec else rec
    assert rec["state"] == "active"
    assert rec["signer"] == world.main.id
    assert rec["sha256"] == sha256(os.path.join(world.d, "echo-1.0.0.apkg"))
    assert set(rec["timings_ms"]) == {"fetch", "verify", "extract", "load"}
    assert all(v >= 0 for v in rec["timings_ms"].values())
    assert rec["source"].startswith("https://127.0.0.1:")
    assert any(e["id"] == "echo" for e in rec["exports"])
    still_serving(srv)


def test_s3_deploy_with_sigv4(world, srv):
    p = echo_version(world.d, "1.1.0")
    world.main.sign(p)
    url = world.s3.put("echo/echo-1.1.0.apkg", p)
    world.s3.put("echo/echo-1.1.0.apkg.minisig", p + ".minisig")
    r = deploy(srv, url=url, sha256=sha256(p))
    assert r.status_code == 201, r.text
    assert r.json()["version"] == "1.1.0"
    assert r.json()["signer"] == world.main.id
    assert srv.post("echo", {"input": "s3"}).json()["output"] == "s3"
    # back to the baseline for the other tests
    r = deploy(srv, url=world.reg.url + "/echo-1.0.0.apkg")
    assert r.status_code == 201, r.text
    still_serving(srv)


def test_s3_wrong_access_key_is_refused(world, srv):
    os.environ["AWS_ACCESS_KEY_ID"] = "NOT-A-KEY"
    try:
        # the runtime read the variables at start; a CLI fetch reads them now
        r = run("fetch", "--s3-endpoint", world.s3.endpoint, "--s3-path-style",
                "s3://packages/echo/echo-1.1.0.apkg", "-o", os.path.join(world.d, "x.apkg"))
    finally:
        os.environ["AWS_ACCESS_KEY_ID"] = S3.ACCESS
    assert r.returncode != 0
    assert "InvalidAccessKeyId" in r.stderr, r.stderr


def test_wrong_digest(world, srv):
    p = echo_version(world.d, "2.0.0")
    world.main.sign(p)
    url = world.reg.put("/d/echo-2.0.0.apkg", open(p, "rb").read())
    world.reg.put("/d/echo-2.0.0.apkg.minisig", open(p + ".minisig", "rb").read())
    body = assert_error(deploy(srv, url=url, sha256="0" * 64), 422, "digest_mismatch")
    assert "0" * 64 in body["message"] and sha256(p) in body["message"]
    # a {url}.sha256 file is honoured too
    world.reg.put("/d/echo-2.0.0.apkg.sha256", ("f" * 64 + "  echo-2.0.0.apkg\n").encode())
    body = assert_error(deploy(srv, url=url), 422, "digest_mismatch")
    assert "f" * 64 in body["message"]
    still_serving(srv)


def test_unknown_signer(world, srv):
    p = echo_version(world.d, "2.1.0")
    world.stranger.sign(p)
    url = world.reg.put("/u/echo-2.1.0.apkg", open(p, "rb").read())
    world.reg.put("/u/echo-2.1.0.apkg.minisig", open(p + ".minisig", "rb").read())
    body = assert_error(deploy(srv, url=url), 422, "untrusted_signer")
    assert world.stranger.id in body["message"]
    still_serving(srv)


def test_tampered_byte(world, srv):
    p = echo_version(world.d, "2.2.0")
    world.main.sign(p)
    data = bytearray(open(p, "rb").read())
    data[len(data) // 2] ^= 0x01
    url = world.reg.put("/t/echo-2.2.0.apkg", bytes(data))
    world.reg.put("/t/echo-2.2.0.apkg.minisig", open(p + ".minisig", "rb").read())
    assert_error(deploy(srv, url=url), 422, "signature_invalid")
    # the legacy (non-prehashed) form is checked over the bytes too
    world.main.sign(p, legacy=True)
    world.reg.put("/t/echo-2.2.0.apkg.minisig", open(p + ".minisig", "rb").read())
    assert_error(deploy(srv, url=url), 422, "signature_invalid")
    still_serving(srv)


def test_legacy_signature_accepted(world, srv):
    p = echo_version(world.d, "2.2.1")
    world.main.sign(p, legacy=True)
    url = world.reg.put("/l/echo-2.2.1.apkg", open(p, "rb").read())
    world.reg.put("/l/echo-2.2.1.apkg.minisig", open(p + ".minisig", "rb").read())
    r = deploy(srv, url=url)
    assert r.status_code == 201, r.text
    r = deploy(srv, url=world.reg.url + "/echo-1.0.0.apkg")
    assert r.status_code == 201, r.text


def test_truncated_download(world, srv):
    p = echo_version(world.d, "2.3.0")
    world.main.sign(p)
    url = world.reg.put("/c/echo-2.3.0.apkg", open(p, "rb").read())
    world.reg.put("/c/echo-2.3.0.apkg.minisig", open(p + ".minisig", "rb").read())
    world.reg.truncate.add("/c/echo-2.3.0.apkg")
    body = assert_error(deploy(srv, url=url), 502, "fetch_failed")
    assert "ended after" in body["message"]
    assert world.reg.hits["/c/echo-2.3.0.apkg"] == 4  # first try + 3 retries
    still_serving(srv)


def test_missing_signature_when_required(world, srv):
    p = echo_version(world.d, "2.4.0")
    url = world.reg.put("/m/echo-2.4.0.apkg", open(p, "rb").read())
    body = assert_error(deploy(srv, url=url), 422, "signature_missing")
    assert "minisig" in body["message"]
    # an explicit signature_url that is not there
    assert_error(deploy(srv, url=url, signature_url=world.reg.url + "/nope.minisig"), 422,
                 "signature_missing")
    still_serving(srv)


def test_signer_not_allowed_for_that_name(world, srv):
    # the acme key is pinned to acme-*: it signs acme-* names and nothing else
    p = echo_version(world.d, "2.5.0")
    world.acme.sign(p)
    url = world.reg.put("/p/echo-2.5.0.apkg", open(p, "rb").read())
    world.reg.put("/p/echo-2.5.0.apkg.minisig", open(p + ".minisig", "rb").read())
    body = assert_error(deploy(srv, url=url), 422, "untrusted_signer")
    assert "acme-*" in body["message"] and "echo" in body["message"]
    # ...and it may sign acme-tools
    q = echo_version(world.d, "1.0.0", name="acme-tools")
    world.acme.sign(q)
    url = world.reg.put("/p/acme-tools-1.0.0.apkg", open(q, "rb").read())
    world.reg.put("/p/acme-tools-1.0.0.apkg.minisig", open(q + ".minisig", "rb").read())
    r = deploy(srv, url=url)
    assert r.status_code == 201, r.text
    assert r.json()["signer"] == world.acme.id
    assert requests.delete(srv.url + "/runtime/packages/acme-tools", timeout=10).status_code == 200
    # acme-* is pinned to the acme key: the unpinned main key may not sign it
    world.main.sign(q)
    url = world.reg.put("/p2/acme-tools-1.0.0.apkg", open(q, "rb").read())
    world.reg.put("/p2/acme-tools-1.0.0.apkg.minisig", open(q + ".minisig", "rb").read())
    body = assert_error(deploy(srv, url=url), 422, "untrusted_signer")
    assert "acme-*" in body["message"] and world.main.id in body["message"], body
    still_serving(srv)


def test_server_errors_are_retried(world, srv):
    p = echo_version(world.d, "2.6.0")
    world.main.sign(p)
    url = world.reg.put("/r/echo-2.6.0.apkg", open(p, "rb").read())
    world.reg.put("/r/echo-2.6.0.apkg.minisig", open(p + ".minisig", "rb").read())
    world.reg.fail["/r/echo-2.6.0.apkg"] = 2
    r = deploy(srv, url=url)
    assert r.status_code == 201, r.text
    assert world.reg.hits["/r/echo-2.6.0.apkg"] == 3
    retries = [l for l in srv.lines() if "retrying" in l.get("msg", "")]
    assert len(retries) >= 2
    # a 4xx is not retried
    world.reg.hits.pop("/r/missing.apkg", None)
    assert_error(deploy(srv, url=world.reg.url + "/r/missing.apkg"), 502, "fetch_failed")
    assert world.reg.hits["/r/missing.apkg"] == 1
    r = deploy(srv, url=world.reg.url + "/echo-1.0.0.apkg")
    assert r.status_code == 201, r.text


def test_same_digest_is_not_downloaded_twice(world, srv):
    path = "/echo-1.0.0.apkg"
    before = world.reg.hits[path]
    digest = sha256(os.path.join(world.d, "echo-1.0.0.apkg"))
    r = deploy(srv, url=world.reg.url + path, sha256=digest)
    assert r.status_code == 201, r.text
    assert world.reg.hits[path] == before  # signature fetched, package taken from the cache
    assert world.reg.hits[path + ".minisig"] >= 2


def test_bad_requests(srv):
    assert_error(deploy(srv), 400, "bad_request")
    body = assert_error(deploy(srv, url="ftp://x/y.apkg"), 400, "invalid_argument")
    assert body["message"].startswith("ftp://x/y.apkg: unsupported URL")
    assert_error(deploy(srv, url="https://127.0.0.1:1/x.apkg", sha256="nothex"), 400,
                 "invalid_argument")
    r = requests.post(srv.url + "/runtime/packages", data="{", timeout=10)
    assert_error(r, 400, "invalid_json")


def test_incompatible_requires(world, srv):
    src = stage(world.d, "3.0.0")
    y = open(os.path.join(src, "agent.yaml")).read()
    assert "    requires: " in y
    y = "\n".join("    requires: \">=9.0.0 <10.0.0\"" if l.startswith("    requires: ") else l
                  for l in y.split("\n"))
    open(os.path.join(src, "agent.yaml"), "w").write(y)
    p = pack(world.d, src, "--no-compat")  # for a PAR 9 runtime: this one refuses it
    world.main.sign(p)
    url = world.reg.put("/i/echo-3.0.0.apkg", open(p, "rb").read())
    world.reg.put("/i/echo-3.0.0.apkg.minisig", open(p + ".minisig", "rb").read())
    body = assert_error(deploy(srv, url=url), 422, "incompatible_package")
    assert ">=9.0.0 <10.0.0" in body["message"]
    still_serving(srv)


def test_oversize_download(world, server_factory, tmp_path):
    s = server_factory([], args=("--config", config(world, str(tmp_path),
                                                    "  max_download_mb: 1")),
                       expected_errors=REFUSED)
    p = os.path.join(world.d, "big.apkg")
    with open(p, "wb") as f:
        f.write(os.urandom(3 << 20))
    url = world.reg.put("/big/big.apkg", open(p, "rb").read())
    world.reg.put("/big/big.apkg.minisig", b"x")
    body = assert_error(deploy(s, url=url), 413, "payload_too_large")
    assert "max_download_mb" in body["message"]


def test_unsigned_local_file_refused_then_signed_accepted(world, server_factory, tmp_path):
    s = server_factory([], args=("--config", config(world, str(tmp_path))),
                       expected_errors=REFUSED)
    p = echo_version(str(tmp_path), "1.0.0")
    assert_error(deploy(s, path=p), 422, "signature_missing")
    world.main.sign(p)
    r = deploy(s, path=p)
    assert r.status_code == 201, r.text
    assert r.json()["signer"] == world.main.id
    # a sibling .sha256 that disagrees refuses the file
    with open(p + ".sha256", "w") as f:
        f.write("a" * 64 + "\n")
    assert_error(deploy(s, path=p), 422, "digest_mismatch")


def write_index(world, path, entries):
    data = json.dumps({"packages": entries}).encode()
    world.reg.put(path, data)
    return world.reg.url + path


def test_index_converges_and_survives_bad_entries(world, server_factory, tmp_path):
    a = echo_version(world.d, "1.0.0", name="idx-a")
    b = echo_version(world.d, "1.0.0", name="idx-b")
    for p in (a, b):
        world.main.sign(p)
        world.reg.put("/x/" + os.path.basename(p), open(p, "rb").read())
        world.reg.put("/x/" + os.path.basename(p) + ".minisig", open(p + ".minisig", "rb").read())
    u = world.reg.url
    index = write_index(world, "/index.json", [
        {"name": "idx-a", "version": "1.0.0", "url": u + "/x/idx-a-1.0.0.apkg", "sha256": sha256(a)},
        {"name": "idx-b", "version": "1.0.0", "url": u + "/x/idx-b-1.0.0.apkg",
         "sha256": "0" * 64},                      # wrong digest: refused, the others converge
        {"name": "Bad Name", "version": "1", "url": "x"},  # malformed entry
    ])
    s = server_factory([], args=("--config", config(world, str(tmp_path), f"""  index_url: {index}
  poll_interval_ms: 300""")), expected_errors=REFUSED)
    info = s.get("/runtime/info").json()["registry"]
    assert info["last_result"] == "ok" and info["entries"] == 3 and info["bad_entries"] == 1
    failed = {f["name"]: f["error"] for f in info["failed_entries"]}
    assert failed.get("idx-b") == "digest_mismatch"
    assert "invalid_index_entry" in failed.values()
    assert s.post("idx-a", {"input": 1}).status_code == 200
    assert s.post("idx-b", {"input": 1}).status_code == 404
    hits = world.reg.hits["/x/idx-b-1.0.0.apkg"]

    # fix b, bump a: both converge at the next polls
    a2 = echo_version(world.d, "1.1.0", name="idx-a")
    world.main.sign(a2)
    world.reg.put("/x/idx-a-1.1.0.apkg", open(a2, "rb").read())
    world.reg.put("/x/idx-a-1.1.0.apkg.minisig", open(a2 + ".minisig", "rb").read())
    write_index(world, "/index.json", [
        {"name": "idx-a", "version": "1.1.0", "url": u + "/x/idx-a-1.1.0.apkg"},
        {"name": "idx-b", "version": "1.0.0", "url": u + "/x/idx-b-1.0.0.apkg", "sha256": sha256(b)},
    ])
    deadline = time.time() + 30
    while time.time() < deadline:
        if active_version(s, "idx-a") == "1.1.0" and active_version(s, "idx-b") == "1.0.0":
            break
        time.sleep(0.1)
    assert active_version(s, "idx-a") == "1.1.0"
    assert active_version(s, "idx-b") == "1.0.0"
    assert world.reg.hits["/x/idx-b-1.0.0.apkg"] == hits + 1

    # an unreachable or broken index changes nothing
    world.reg.files["/index.json"] = b"{not json"
    time.sleep(1.0)
    info = s.get("/runtime/info").json()["registry"]
    assert info["last_result"] == "error" and "JSON" in info["last_error"]
    assert active_version(s, "idx-a") == "1.1.0"
    del world.reg.files["/index.json"]
    time.sleep(1.0)
    assert s.get("/runtime/info").json()["registry"]["last_result"] == "error"
    assert s.post("idx-b", {"input": 2}).status_code == 200
    m = s.get("/metrics").text
    assert 'par_registry_poll_total{result="error"}' in m

    # absent from the index: removed
    write_index(world, "/index.json", [
        {"name": "idx-a", "version": "1.1.0", "url": u + "/x/idx-a-1.1.0.apkg"}])
    deadline = time.time() + 30
    while time.time() < deadline and s.post("idx-b", {"input": 3}).status_code != 404:
        time.sleep(0.1)
    assert s.post("idx-b", {"input": 3}).status_code == 404
    assert s.post("idx-a", {"input": 3}).status_code == 200


def generation_metric(s):
    for line in s.get("/metrics").text.splitlines():
        if line.startswith("par_index_generation_info{"):
            return line
    return None


def test_index_generation_is_the_etag_or_the_digest(world, server_factory, tmp_path):
    """/runtime/info and /metrics name the index generation a node applied:
    the ETag, or sha256:<hex> of the document when the store sends none; a
    generation whose entries still need a retry is not applied."""
    import hashlib
    a = echo_version(world.d, "1.0.0", name="gen-a")
    world.main.sign(a)
    world.reg.put("/g/gen-a-1.0.0.apkg", open(a, "rb").read())
    world.reg.put("/g/gen-a-1.0.0.apkg.minisig", open(a + ".minisig", "rb").read())
    entry = {"name": "gen-a", "version": "1.0.0", "url": world.reg.url + "/g/gen-a-1.0.0.apkg"}
    world.reg.no_etag.add("/gen.json")
    index = write_index(world, "/gen.json", [entry])
    doc = world.reg.files["/gen.json"]
    s = server_factory([], args=("--config", config(world, str(tmp_path), f"""  index_url: {index}
  poll_interval_ms: 200""")), expected_errors=REFUSED)
    reg = s.get("/runtime/info").json()["registry"]
    digest = "sha256:" + hashlib.sha256(doc).hexdigest()
    assert reg["etag"] is None
    assert reg["generation"] == digest == reg["index_sha256"] == reg["latest_generation"]
    assert abs(reg["applied_ms"] / 1000 - time.time()) < 60
    m = s.get("/metrics").text
    assert generation_metric(s) == f'par_index_generation_info{{generation="{digest}"}} 1'
    stamp = [l for l in m.splitlines() if l.startswith("par_index_applied_timestamp_seconds ")]
    assert len(stamp) == 1 and abs(float(stamp[0].split()[1]) - reg["applied_ms"] / 1000) < 0.01

    # with an ETag: the generation is the ETag (quotes escaped in the label)
    b = echo_version(world.d, "1.0.0", name="gen-b")
    world.main.sign(b)
    world.reg.fail["/g/gen-b-1.0.0.apkg"] = 10**6   # a 500: a failure retried at every poll
    world.reg.put("/g/gen-b-1.0.0.apkg", open(b, "rb").read())
    world.reg.put("/g/gen-b-1.0.0.apkg.minisig", open(b + ".minisig", "rb").read())
    b_url = world.reg.url + "/g/gen-b-1.0.0.apkg"
    write_index(world, "/gen.json", [entry, {"name": "gen-b", "version": "1.0.0", "url": b_url}])
    doc2 = world.reg.files["/gen.json"]
    world.reg.no_etag.discard("/gen.json")  # after the new document: doc1 never has an ETag
    etag = '"' + hashlib.sha256(doc2).hexdigest()[:16] + '"'
    deadline = time.time() + 10
    while time.time() < deadline and s.get("/runtime/info").json()["registry"][
            "latest_generation"] != etag:
        time.sleep(0.05)
    time.sleep(0.5)
    reg = s.get("/runtime/info").json()["registry"]
    assert reg["latest_generation"] == etag and reg["etag"] == etag
    assert reg["generation"] == digest  # gen-b is retried: the new generation is not applied
    assert generation_metric(s) == f'par_index_generation_info{{generation="{digest}"}} 1'
    world.reg.fail["/g/gen-b-1.0.0.apkg"] = 0
    deadline = time.time() + 10
    while time.time() < deadline and s.get("/runtime/info").json()["registry"][
            "generation"] != etag:
        time.sleep(0.05)
    reg = s.get("/runtime/info").json()["registry"]
    assert reg["generation"] == etag
    assert reg["index_sha256"] == "sha256:" + hashlib.sha256(doc2).hexdigest()
    assert s.post("gen-b", {"input": 1}).status_code == 200
    assert generation_metric(s) == (
        'par_index_generation_info{generation="\\"' + etag.strip('"') + '\\""} 1')


def test_ready_waits_for_the_first_index_pass(world, server_factory, tmp_path):
    """While the index's first poll hangs, the node is not ready and does not
    log "ready"; SIGTERM then stops it at once and cleanly."""
    import signal
    import socket
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)  # accepts (the kernel does), never answers the TLS handshake
    try:
        index = f"https://127.0.0.1:{hang.getsockname()[1]}/index.json"
        s = server_factory([], args=("--config", config(world, str(tmp_path), f"""  index_url: {index}
  poll_interval_ms: 300""")), wait_ready=False)
        time.sleep(1.0)
        r = s.get("/runtime/ready")
        assert_error(r, 503, "not_ready")
        assert "registry index has not been polled" in r.json()["message"]
        assert not [ln for ln in s.lines() if ln.get("msg", "").startswith("ready: ")]
        assert "par_cold_start_seconds" not in s.get("/metrics").text
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        s.proc.wait(timeout=30)
        took = time.time() - t0
        assert s.proc.returncode == 0
        assert not [ln for ln in s.lines() if ln.get("msg", "").startswith("ready: ")]
        assert any(ln.get("msg", "").startswith("signal 15") for ln in s.lines())
        # the hung fetch is given up, not waited out (4 attempts x 2 s connect timeout)
        assert took < 5.0, took  # waited out, the attempts left would take ~8 s
    finally:
        hang.close()


def test_cache_discards_half_written_entries_and_evicts_lru(world, server_factory, tmp_path):
    state = tmp_path / "state" / "cache" / "sha256"
    state.mkdir(parents=True)
    half = state / ("e" * 64)
    half.mkdir()
    (half / "agent.yaml").write_text("name: half\n")
    (state / (".tmp-" + "e" * 64 + "-abc123")).mkdir()
    s = server_factory([], args=("--config", config(world, str(tmp_path), """cache:
  max_mb: 1"""), "--state-dir", str(tmp_path / "state")), expected_errors=REFUSED)
    assert not half.exists()
    assert not (state / (".tmp-" + "e" * 64 + "-abc123")).exists()
    # three packages with 600 KiB of incompressible payload each; cap 1 MiB:
    # deploying the third evicts the least recently used one that is not loaded
    digests = []
    for i in range(3):
        name = f"lru-{i}"
        src = stage(str(tmp_path), "1.0.0", name=name)
        with open(os.path.join(src, "payload.bin"), "wb") as f:
            f.write(os.urandom(600 * 1024))
        p = pack(str(tmp_path), src)
        world.main.sign(p)
        r = deploy(s, path=p)
        assert r.status_code == 201, r.text
        digests.append(r.json()["sha256"])
        if i == 0:
            assert requests.delete(s.url + f"/runtime/packages/{name}", timeout=10).status_code == 200
    assert not (state / digests[0]).exists(), "the unloaded package was not evicted"
    assert (state / digests[1]).exists() and (state / digests[2]).exists()
    assert (state / (digests[2] + ".complete")).exists()


def test_30mb_package_from_s3_and_file(world, server_factory, tmp_path):
    """A 30 MB package with an incompressible payload, from S3 and from a local file."""
    src = stage(str(tmp_path), "1.0.0", name="big")
    with open(os.path.join(src, "payload.bin"), "wb") as f:
        f.write(os.urandom(30 << 20))
    p = pack(str(tmp_path), src)
    world.main.sign(p)
    assert os.path.getsize(p) > 30 << 20
    url = world.s3.put("big/big-1.0.0.apkg", p)
    world.s3.put("big/big-1.0.0.apkg.minisig", p + ".minisig")
    timings = {}
    for how, body in (("s3", {"url": url}), ("file", {"path": p})):
        s = server_factory([], args=("--config", config(world, str(tmp_path / how))),
                           expected_errors=REFUSED) if os.makedirs(tmp_path / how) is None else None
        r = deploy(s, **body)
        assert r.status_code == 201, r.text
        assert r.json()["sha256"] == sha256(p)
        assert s.post("big", {"input": how}).json()["output"] == how
        timings[how] = r.json()["timings_ms"]
    print("30 MB package load phases (ms):", json.dumps(timings))


def test_par_keygen_pack_sign_then_minisign_verifies_and_par_deploys(world, server_factory,
                                                                     tmp_path):
    d = str(tmp_path)
    pub, sec = os.path.join(d, "par.pub"), os.path.join(d, "par.key")
    r = run("keygen", "-p", pub, "-s", sec, "--unencrypted")
    assert r.returncode == 0, r.stderr
    src = stage(d, "4.0.0")
    out = os.path.join(d, "echo-4.0.0.apkg")
    r = run("pack", src, "-o", out, "--sign", "-s", sec)
    assert r.returncode == 0, r.stderr
    import subprocess
    v = subprocess.run(["minisign", "-Vm", out, "-p", pub], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    conf = config(world, d).replace("trust:\n", "trust:\n", 1)
    text = open(conf).read().replace("  keys:\n", f"  keys:\n    - file: {pub}\n", 1)
    open(conf, "w").write(text)
    s = server_factory([], args=("--config", conf), expected_errors=REFUSED)
    r = deploy(s, path=out)
    assert r.status_code == 201, r.text
    key_id = open(pub).read().splitlines()[0].rsplit(" ", 1)[1].zfill(16)
    assert r.json()["signer"] == key_id
