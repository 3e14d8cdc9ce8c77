"""The HTTP front door: hostile paths, framing, HTTP/2 gating, the in-flight cap,
cancellation of abandoned calls, descriptor exhaustion, a busy port and TLS.

Most tests talk raw sockets: the point is what the server does with bytes a
well-behaved client library would never send.
"""
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest
import requests

from conftest import BUILD, PAR, assert_error, package, run


def raw(url, data, timeout=5.0, read_all=True):
    """Sends bytes on a fresh connection; returns everything read until EOF
    (or the timeout, when the server keeps the connection open)."""
    host, port = url.split("//")[1].split(":")
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if not read_all:
                break
    except socket.timeout:
        out += b"<timeout>"
    s.close()
    return out


def status_of(resp):
    return int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.") else None


def body_of(resp):
    return json.loads(resp.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.")[0])


def faulty_as(tmp_path, name, limits):
    d = tmp_path / name
    shutil.copytree(os.path.join(BUILD, "stage", "faulty"), d)
    y = (d / "agent.yaml").read_text().replace("name: faulty", "name: " + name).replace(
        "limits: {timeout_ms: 2000}", "limits: " + limits)
    (d / "agent.yaml").write_text(y)
    pkg = str(tmp_path / f"{name}-0.1.0.apkg")
    assert run("pack", str(d), "-o", pkg).returncode == 0
    return pkg


def config(tmp_path, text, name="par.yaml"):
    p = tmp_path / name
    p.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n" + text)
    return str(p)


# ---- finding 2: ids from paths -------------------------------------------------------


def test_nul_and_control_bytes_in_path_ids_are_refused(server_factory):
    s = server_factory([package("echo")])
    for path in (b"/agents/echo%00", b"/agents/echo%01", b"/agents/echo%0a"):
        r = raw(s.url, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(r) == 400, r
        assert body_of(r)["error"] == "bad_request"
    body = b'{"input": {"text": "smuggled"}}'
    r = raw(s.url, b"POST /agents/echo%%00junk/invoke HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert status_of(r) == 400, r
    assert b"smuggled" not in r
    for method, path in ((b"GET", b"/runtime/packages/echo%00"),
                         (b"DELETE", b"/runtime/packages/echo%00"),
                         (b"POST", b"/runtime/packages/echo%00/reload")):
        r = raw(s.url, method + b" " + path +
                b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        assert status_of(r) == 400, (path, r)
        assert body_of(r)["error"] == "bad_request"
    # an id longer than the id limit is refused before any lookup
    r = s.get("/agents/" + "a" * 300)
    assert_error(r, 400, "bad_request")
    r = s.post("a" * 300, {"input": 1})
    assert_error(r, 400, "bad_request")
    # the package is still there and serves
    assert s.get("/runtime/packages/echo").status_code == 200
    assert s.post("echo", {"input": {"text": "hi"}}).json()["output"] == {"text": "hi"}


# ---- finding 10: HTTP/1 framing --------------------------------------------------------


def test_two_content_lengths_are_refused_and_the_connection_closed(server_factory):
    s = server_factory([package("echo")])
    body = b'{"input": 1}'
    req = (b"POST /agents/echo/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n%s" % (len(body), len(body) + 30,
                                                                       body))
    second = b"GET /runtime/health HTTP/1.1\r\nHost: x\r\n\r\n"
    r = raw(s.url, req + second)
    assert status_of(r) == 400, r
    assert r.count(b"HTTP/1.1 ") == 1, r  # the pipelined request is not served
    assert b"<timeout>" not in r  # closed, not kept alive
    assert body_of(r)["error"] == "bad_request"


def test_content_length_with_transfer_encoding_is_refused(server_factory):
    s = server_factory([package("echo")])
    smuggled = b"GET /runtime/health HTTP/1.1\r\nHost: x\r\n\r\n"
    chunk = b'{"input": 1}'
    req = (b"POST /agents/echo/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk))
    r = raw(s.url, req + smuggled)
    assert status_of(r) == 400, r
    assert r.count(b"HTTP/1.1 ") == 1, r
    assert b"<timeout>" not in r
    # the same with an absolute-form target
    absolute = req.replace(b"POST /agents/", b"POST http://x/agents/", 1)
    r = raw(s.url, absolute + smuggled)
    assert status_of(r) == 400, r
    assert r.count(b"HTTP/1.1 ") == 1, r
    # an ordinary keep-alive pipeline still works
    ok = (b"POST /agents/echo/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n%s" % (len(chunk), chunk))
    r = raw(s.url, ok + b"GET /runtime/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r.count(b"HTTP/1.1 200") == 2, r


# ---- finding 11: UTF-8 -------------------------------------------------------------------


def test_invalid_utf8_and_lone_surrogates_are_refused(server_factory):
    s = server_factory([package("echo")])
    for bad in (b'{"input": {"text": "\xff\xfe"}}', b'{"input": "\xc0\xaf"}',
                b'{"input": "\xed\xa0\x80"}', b'{"input": "\xe2\x82"}',
                b'{"input": "\\ud800"}', b'{"input": "\\udc00x"}',
                b'{"input": "\\ud800\\u0041"}'):
        r = s.post("echo", raw=bad)
        body = assert_error(r, 400, "invalid_json")
        assert "UTF-8" in body["message"] or "surrogate" in body["message"], body
    # valid text, pairs and astral characters go through
    good = '{"input": {"text": "h\u00e9llo \U0001F600 \\ud83d\\ude00"}}'.encode()
    r = s.post("echo", raw=good)
    assert r.status_code == 200, r.text
    assert r.json()["output"]["text"] == "h\u00e9llo \U0001F600 \U0001F600"
    # headers PAR reads and forwards must be UTF-8 too
    r = raw(s.url, b"GET /runtime/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"X-Request-ID: ab\xff\xfe\r\n\r\n")
    assert status_of(r) == 400, r
    assert body_of(r)["error"] == "bad_request"
    assert s.get("/runtime/health").status_code == 200


# ---- finding 3: HTTP/2, the in-flight cap, cancellation ------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
UPGRADE = (b"GET /runtime/health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")


def test_http2_is_off_by_default(server_factory):
    s = server_factory([package("echo")])
    r = raw(s.url, PREFACE + SETTINGS, timeout=3)
    # no HTTP/2 SETTINGS frame comes back: an HTTP/1.1 refusal or a close
    assert r == b"" or r.startswith(b"HTTP/1.1 4"), r
    r = raw(s.url, UPGRADE, timeout=2, read_all=False)
    assert r.startswith(b"HTTP/1.1 200"), r  # answered as HTTP/1.1, not 101
    assert b"101" not in r.split(b"\r\n")[0]


def test_http2_when_configured(server_factory, tmp_path):
    s = server_factory([package("echo")], args=["--config", config(tmp_path,
                                                                   "http: {http2: true}\n")])
    r = raw(s.url, UPGRADE, timeout=2, read_all=False)
    assert r.startswith(b"HTTP/1.1 101"), r
    r = raw(s.url, PREFACE + SETTINGS, timeout=2, read_all=False)
    assert len(r) >= 9 and r[3] == 0x04, r  # a SETTINGS frame


def test_max_in_flight_answers_503_over_capacity(server_factory, tmp_path):
    pkg = faulty_as(tmp_path, "slowpoke", "{timeout_ms: 10000, concurrency: 50}")
    s = server_factory([pkg], args=["--config", config(tmp_path,
                                                       "limits: {max_in_flight: 3}\n")])

    def slow(i):
        return requests.post(s.url + "/agents/slowpoke/slow/invoke", json={"input": 1500},
                             timeout=30)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
        rs = list(ex.map(slow, range(8)))
    codes = sorted(r.status_code for r in rs)
    assert codes.count(200) == 3 and codes.count(503) == 5, codes
    for r in rs:
        if r.status_code == 503:
            assert_error(r, 503, "over_capacity")
    # the cap is global but not sticky
    assert slow(0).status_code == 200
    info = s.get("/runtime/info").json()
    assert info["http"]["max_in_flight"] == 3


def test_abandoned_call_is_cancelled_and_frees_its_slot(server_factory, tmp_path):
    pkg = faulty_as(tmp_path, "single", "{timeout_ms: 20000, concurrency: 1}")
    s = server_factory([pkg], args=["--config", config(tmp_path, "")])
    body = b'{"input": 15000}'
    host, port = s.url.split("//")[1].split(":")
    c = socket.create_connection((host, int(port)))
    c.sendall(b"POST /agents/single/slow/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: "
              b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    time.sleep(0.5)
    c.close()  # the client goes away
    t0 = time.time()
    # the only slot comes back well before the 15 s the agent sleeps
    r = requests.post(s.url + "/agents/single/slow/invoke", json={"input": 10}, timeout=5)
    assert r.status_code == 200, r.text
    assert time.time() - t0 < 4
    text = s.get("/metrics").text
    assert 'status="cancelled"' in text, text
    # the log line is written by the thread that cancelled, at the end of its turn
    deadline = time.time() + 5
    while not any(l.get("msg") == "call cancelled: the client went away" for l in s.lines()):
        assert time.time() < deadline, "no 'call cancelled' log line"
        time.sleep(0.05)


def test_many_abandoned_calls_are_cancelled_and_the_others_answered(server_factory, tmp_path):
    # 300 calls in flight (more than one poll batch), 200 clients hang up
    # together: exactly those are cancelled, the 100 that stay get answers
    pkg = faulty_as(tmp_path, "wide", "{timeout_ms: 20000, concurrency: 0}")
    s = server_factory([pkg], args=["--config", config(tmp_path, "")])
    host, port = s.url.split("//")[1].split(":")

    def start(ms):
        body = b'{"input": %d}' % ms
        c = socket.create_connection((host, int(port)))
        c.sendall(b"POST /agents/wide/slow/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return c

    leaving = [start(15000) for _ in range(200)]
    staying = [start(3000) for _ in range(100)]
    time.sleep(1.0)
    for c in leaving:
        c.close()
    for c in staying:
        c.settimeout(20)
        assert c.recv(64).startswith(b"HTTP/1.1 200"), "a call whose client stayed was lost"
        c.close()
    text = s.get("/metrics").text
    cancelled = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("par_invocations_total") and 'status="cancelled"' in line)
    assert cancelled == 200, text


# ---- finding 6: descriptor exhaustion ---------------------------------------------------------


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_descriptor_exhaustion_does_not_spin(server_factory):
    s = server_factory([package("echo")])
    pid = s.proc.pid
    assert any("RLIMIT_NOFILE" in l.get("msg", "") for l in s.lines())
    used = len(os.listdir(f"/proc/{pid}/fd"))
    limit = used + 20
    subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={limit}:{limit}"], check=True)
    conns = []
    for _ in range(60):
        c = socket.create_connection(("127.0.0.1", int(s.url.rsplit(":", 1)[1])))
        conns.append(c)
    time.sleep(0.5)
    t0 = cpu_seconds(pid)
    time.sleep(2.0)
    used_cpu = cpu_seconds(pid) - t0
    print(f"EMFILE: {used_cpu:.3f} s of CPU in 2 s")
    assert used_cpu < 0.5, f"the runtime used {used_cpu:.2f} s of CPU in 2 s at EMFILE"
    for c in conns:
        c.close()
    deadline = time.time() + 10
    while True:
        try:
            if requests.get(s.url + "/runtime/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.time() < deadline, "health did not answer after the clients left"
        time.sleep(0.2)
    assert any("descriptor limit" in l.get("msg", "") for l in s.lines())


# ---- issue 15, item 2: a busy port ---------------------------------------------------------------


def test_second_server_on_a_busy_port_exits_naming_the_address(server_factory, tmp_path):
    s = server_factory([package("echo")])
    addr = s.url.split("//")[1]
    t0 = time.time()
    p = subprocess.run([PAR, "serve", "--listen", addr, "--packages", str(tmp_path),
                        "--state-dir", str(tmp_path / "var")], capture_output=True, text=True,
                       timeout=20)
    assert time.time() - t0 < 5
    assert p.returncode != 0
    assert f"{addr} is already in use" in p.stderr, p.stderr
    assert s.post("echo", {"input": {"text": "still"}}).json()["output"] == {"text": "still"}


def test_reuse_port_when_configured(server_factory, tmp_path):
    conf = config(tmp_path, "http: {reuse_port: true}\n")
    (tmp_path / "none").mkdir()
    s = server_factory([package("echo")], args=["--config", conf])
    addr = s.url.split("//")[1]
    p = subprocess.Popen([PAR, "serve", "--config", conf, "--listen", addr, "--packages",
                          str(tmp_path / "none"), "--state-dir", str(tmp_path / "var2")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(2)
        assert p.poll() is None, p.stdout.read()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)


# ---- TLS on the listener -------------------------------------------------------------------------


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue(d, name, subject, ca="ca", ext=None):
    """A P-256 key and a certificate for `subject` signed by the test CA."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
    args = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2"]
    if ext:
        (d / f"{name}.ext").write_text(ext)
        args += ["-extfile", f"{name}.ext"]
    openssl(*args, cwd=d)


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=par test CA", "-days", "2",
            cwd=d)
    san = "subjectAltName=IP:127.0.0.1\n"
    issue(d, "server", "/CN=par-test-1", ext=san)
    issue(d, "server2", "/CN=par-test-2", ext=san)
    issue(d, "alice", "/O=acme/CN=alice")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "rogue.key", "-out", "rogue.crt", "-subj", "/CN=mallory", "-days", "2",
            cwd=d)
    return d


def tls_server(server_factory, tmp_path, pki, extra="", more=""):
    conf = config(tmp_path,
                  f"tls: {{cert: {pki}/server.crt, key: {pki}/server.key{extra}}}\n{more}")
    s = server_factory([package("echo"), package("whoami")], args=["--config", conf],
                       wait_ready=False)
    assert s.url.startswith("https://")
    client = "alice" if "client_ca" in extra else None
    deadline = time.time() + 60
    while https_get(s, pki, "/runtime/ready", client=client)[1] != 200:
        assert time.time() < deadline, s.text()
        time.sleep(0.1)
    return s


def ctx_for(pki, client=None):
    c = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if client:
        c.load_cert_chain(str(pki / f"{client}.crt"), str(pki / f"{client}.key"))
    return c


def https_get(s, pki, path, client=None):
    import http.client
    host, port = s.url.split("//")[1].split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=ctx_for(pki, client), timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    return conn, r.status, r.read()


def peer_cn(s, pki):
    host, port = s.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw_sock:
        with ctx_for(pki).wrap_socket(raw_sock, server_hostname=host) as t:
            subject = dict(x[0] for x in t.getpeercert()["subject"])
            return subject["commonName"], t.version()


def test_https_serves(server_factory, tmp_path, pki):
    s = tls_server(server_factory, tmp_path, pki)
    _, status, body = https_get(s, pki, "/runtime/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    cn, version = peer_cn(s, pki)
    assert cn == "par-test-1" and version in ("TLSv1.2", "TLSv1.3")
    # TLS 1.1 and older are refused
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    host, port = s.url.split("//")[1].split(":")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with socket.create_connection((host, int(port)), timeout=5) as raw_sock:
            old.wrap_socket(raw_sock).close()
    # no h2 in ALPN while HTTP/2 is off
    c = ctx_for(pki)
    c.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((host, int(port)), timeout=5) as raw_sock:
        with c.wrap_socket(raw_sock, server_hostname=host) as t:
            assert t.selected_alpn_protocol() != "h2"


@pytest.mark.parametrize("which,expect", [("cert", "tls.cert"), ("key", "tls.key")])
def test_bad_certificate_files_refused_at_start(tmp_path, pki, which, expect):
    files = {"cert": f"{pki}/server.crt", "key": f"{pki}/server.key"}
    files[which] = f"{pki}/missing.pem"
    conf = config(tmp_path, f"tls: {{cert: {files['cert']}, key: {files['key']}}}\n")
    p = subprocess.run([PAR, "serve", "--config", conf, "--listen", "127.0.0.1:0", "--packages",
                        str(tmp_path), "--state-dir", str(tmp_path / "var")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    # refused before starting (as `par config check` refuses it), naming key and file
    assert p.returncode == 2 and expect in p.stderr and "missing.pem" in p.stderr, p.stderr
    assert not (tmp_path / "var").exists()
    # a key that does not match the certificate
    conf = config(tmp_path, f"tls: {{cert: {pki}/server.crt, key: {pki}/server2.key}}\n")
    p = subprocess.run([PAR, "serve", "--config", conf, "--listen", "127.0.0.1:0", "--packages",
                        str(tmp_path), "--state-dir", str(tmp_path / "var")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "is not the key of the certificate" in p.stderr, p.stderr


def test_sighup_reloads_the_certificate_and_keeps_connections(server_factory, tmp_path, pki):
    s = tls_server(server_factory, tmp_path, pki)
    conn, status, _ = https_get(s, pki, "/runtime/health")
    assert status == 200
    shutil.copy(pki / "server2.crt", pki / "server.crt")
    shutil.copy(pki / "server2.key", pki / "server.key")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while not any("TLS certificate and key reloaded" in l.get("msg", "") for l in s.lines()):
        assert time.time() < deadline, s.text()
        time.sleep(0.05)
    assert peer_cn(s, pki)[0] == "par-test-2"  # new connections: the new certificate
    conn.request("GET", "/runtime/health")  # the old keep-alive connection survives
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["status"] == "ok"
    conn.close()
    # a broken file on the next reload keeps the current certificate
    (pki / "server.crt").write_text("not a certificate\n")
    s.expected_errors.append("the TLS certificate was not reloaded")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while not any("was not reloaded" in l.get("msg", "") for l in s.lines()):
        assert time.time() < deadline, s.text()
        time.sleep(0.05)
    assert peer_cn(s, pki)[0] == "par-test-2"


def test_client_certificates_when_client_ca_is_set(server_factory, tmp_path, pki):
    s = tls_server(server_factory, tmp_path, pki, extra=f", client_ca: {pki}/ca.crt")
    for client in (None, "rogue"):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            https_get(s, pki, "/runtime/health", client=client)
    import http.client
    host, port = s.url.split("//")[1].split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=ctx_for(pki, "alice"),
                                       timeout=10)
    conn.request("POST", "/agents/whoami/invoke", body=b'{"input": {}}',
                 headers={"content-type": "application/json"})
    r = conn.getresponse()
    body = json.loads(r.read())
    assert r.status == 200, body
    assert body["output"]["subject"] == "CN=alice,O=acme"
    # the identity reaches sub-agent calls too
    conn.request("POST", "/agents/whoami/via/invoke", body=b'{"input": {}}',
                 headers={"content-type": "application/json"})
    body = json.loads(conn.getresponse().read())
    assert body["output"]["inner"]["subject"] == "CN=alice,O=acme", body


def h2_frame(ftype, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + \
        stream.to_bytes(4, "big") + payload


def h2_string(b):
    assert len(b) < 127
    return bytes([len(b)]) + b


def test_http2_rapid_reset_is_bounded_and_cancelled(server_factory, tmp_path):
    """CVE-2023-44487 with HTTP/2 turned on: HEADERS+DATA+RST_STREAM triples on
    one connection. The in-flight cap bounds the calls started and every
    reset stream's call is cancelled, not left to its deadline."""
    pkg = faulty_as(tmp_path, "slowpoke", "{timeout_ms: 20000, concurrency: 200}")
    s = server_factory([pkg], args=["--config", config(
        tmp_path, "http: {http2: true}\nlimits: {max_in_flight: 50, queue: 1000}\n")])
    path = b"/agents/slowpoke/slow/invoke"
    block = (b"\x83\x86" + b"\x04" + h2_string(path) + b"\x01" + h2_string(b"x") +
             b"\x0f\x10" + h2_string(b"application/json"))
    body = b'{"input": 15000}'
    out = [PREFACE, h2_frame(4, 0, 0, b"")]
    n = int(os.environ.get("PAR_RAPID_RESET_STREAMS", "3000"))
    for i in range(n):
        sid = 2 * i + 1
        out += [h2_frame(1, 4, sid, block), h2_frame(0, 1, sid, body),
                h2_frame(3, 0, sid, (8).to_bytes(4, "big"))]
    host, port = s.url.split("//")[1].split(":")
    rss0 = int(open(f"/proc/{s.proc.pid}/statm").read().split()[1]) * 4096
    t0 = time.time()
    c = socket.create_connection((host, int(port)))
    c.sendall(b"".join(out))
    peak = 0
    deadline = time.time() + 10
    while time.time() < deadline:
        info = s.get("/runtime/info").json()["http"]
        peak = max(peak, info["in_flight"])
        if info["cancelled"] > 0 and info["in_flight"] == 0:
            break
        time.sleep(0.05)
    elapsed = time.time() - t0
    c.close()
    info = s.get("/runtime/info").json()["http"]
    rss1 = int(open(f"/proc/{s.proc.pid}/statm").read().split()[1]) * 4096
    print(f"rapid reset: {n} streams, peak in flight {peak}, cancelled {info['cancelled']}, "
          f"settled in {elapsed:.2f} s, RSS {rss0 >> 20} -> {rss1 >> 20} MiB")
    assert peak <= 50
    assert info["in_flight"] == 0 and info["cancelled"] > 0, info
    assert elapsed < 10  # well before the agents' 15 s
    assert rss1 - rss0 < 40 << 20
    assert s.get("/runtime/health").status_code == 200


def test_alpn_offers_h2_only_with_http2(server_factory, tmp_path, pki):
    s = tls_server(server_factory, tmp_path, pki, more="http: {http2: true}\n")
    host, port = s.url.split("//")[1].split(":")
    c = ctx_for(pki)
    c.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((host, int(port)), timeout=5) as raw_sock:
        with c.wrap_socket(raw_sock, server_hostname=host) as t:
            assert t.selected_alpn_protocol() == "h2"
    # HTTP/1.1 clients still get HTTP/1.1 over the same listener
    _, status, _ = https_get(s, pki, "/runtime/health")
    assert status == 200
