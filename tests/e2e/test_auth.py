"""Authentication and permissions (docs/auth.md) against a real OpenID Connect
issuer on loopback: oauth2-mock-server (tests/peers/issuer.js) serving
discovery, JWKS and tokens over HTTPS with a CA made by openssl for the test."""
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import SOURCE, assert_error, package, run

PEERS = os.path.join(SOURCE, "tests", "peers")


# ---- the issuer ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1, made with openssl."""
    d = tmp_path_factory.mktemp("tls")

    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=par-test-ca")
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                               "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    # a second CA that never signed anything: trusting it must not be enough
    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "other.key", "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=other-ca")
    return {"ca": str(d / "ca.pem"), "cert": str(d / "server.pem"),
            "key": str(d / "server.key"), "other_ca": str(d / "other-ca.pem")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Issuer:
    """tests/peers/issuer.js: oauth2-mock-server's issuer with a control API."""

    def __init__(self, tls, port=0, algs=("RS256", "ES256")):
        if not os.path.isdir(os.path.join(PEERS, "node_modules", "oauth2-mock-server")):
            raise RuntimeError("tests/peers/node_modules is missing: run scripts/install-deps.sh")
        self.tls = tls
        self.proc = subprocess.Popen(
            ["node", os.path.join(PEERS, "issuer.js"), "--host", "127.0.0.1", "--port", str(port),
             "--cert", tls["cert"], "--key", tls["key"], "--algs", ",".join(algs)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PEERS)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the issuer did not start: " + self.proc.stderr.read())
        info = json.loads(line)
        self.url, self.port, self.kids = info["issuer"], info["port"], info["kids"]

    def _post(self, path, body):
        r = requests.post(self.url + "/_control/" + path, json=body, verify=self.tls["ca"],
                          timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def token(self, alg="RS256", kid=None, expires_in=None, omit=(), **claims):
        claims.setdefault("aud", "par")
        body = {"alg": alg, "claims": claims, "omit": list(omit)}
        if kid:
            body["kid"] = kid
        if expires_in is not None:
            body["expires_in"] = expires_in
        return self._post("token", body)["token"]

    def foreign(self, alg="RS256", kid="k", **claims):
        claims.setdefault("aud", "par")
        return self._post("foreign", {"alg": alg, "kid": kid, "claims": claims})["token"]

    def generate(self, alg):
        return self._post("generate", {"alg": alg})["kid"]

    def retire(self, kid):
        self._post("retire", {"kid": kid})

    def set(self, **kw):
        self._post("set", kw)

    def stats(self):
        return requests.get(self.url + "/_control/stats", verify=self.tls["ca"], timeout=30).json()

    def public_pem(self, kid):
        return requests.get(self.url + "/_control/public_pem", params={"kid": kid},
                            verify=self.tls["ca"], timeout=30).text

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def issuers(tls):
    started = []

    def make(**kw):
        i = Issuer(tls, **kw)
        started.append(i)
        return i

    yield make
    for i in started:
        i.stop()


# ---- PAR configured for it -----------------------------------------------------------

GRANTS = """\
  permissions:
    claims: [scope, realm_access.roles]
    grants:
      "par:admin": [runtime:admin, agents:invoke]
      "par:invoke": [agents:invoke]
      "par:whoami": ["agents:invoke:whoami"]
      "par:shout": ["agents:invoke:echo/shout"]
"""


def oidc_config(tmp_path, issuer_url, ca, name="par.yaml", extra=""):
    conf = tmp_path / name
    conf.write_text(f"""\
trust: {{require_signatures: false}}
auth:
  mode: oidc
  tenant_claim: org
  oidc:
    issuer: {issuer_url}
    audience: par
    ca_file: {ca}
    leeway_s: 30
    unknown_kid_refresh_s: 1
    fetch_timeout_ms: 2000
    retry_max_s: 1
{extra}{GRANTS}""")
    return str(conf)


def wait_keys(s, timeout=20):
    """Waits until the server has the issuer's keys (readiness says so)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if s.get("/runtime/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("the issuer's keys were not obtained:\n" + s.text()[-3000:])


@pytest.fixture(scope="module")
def issuer(issuers):
    return issuers()


@pytest.fixture(scope="module")
def srv(server_factory, issuer, tls, tmp_path_factory):
    conf = oidc_config(tmp_path_factory.mktemp("conf"), issuer.url, tls["ca"])
    s = server_factory([package("echo"), package("whoami")], args=["--config", conf])
    wait_keys(s)
    return s


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def invoke(s, agent, tok=None, body=None, headers=None):
    h = dict(headers or {})
    if tok is not None:
        h.update(bearer(tok))
    return s.post(agent, {"input": body if body is not None else {"x": 1}}, headers=h)


def auth_log(s, request_id):
    """The server's log line explaining why a request was refused."""
    deadline = time.time() + 5
    while time.time() < deadline:
        for line in s.lines():
            if line.get("request_id") == request_id and line.get("msg") in (
                    "authentication failed", "authorization refused"):
                return line
        time.sleep(0.02)
    raise AssertionError("no auth log line for " + request_id)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def admin(issuer, **kw):
    return issuer.token(sub="root", scope="par:admin", **kw)


# ---- valid tokens ------------------------------------------------------------------------

def test_valid_rs256_and_es256(srv, issuer):
    for alg in ("RS256", "ES256"):
        tok = issuer.token(alg=alg, sub=f"user-{alg}", scope="par:invoke")
        assert json.loads(unb64(tok.split(".")[0]))["alg"] == alg
        r = invoke(srv, "whoami", tok)
        assert r.status_code == 200, r.text
        assert r.json()["output"]["subject"] == f"user-{alg}"
        # a second call with the same token is answered from the verified-token cache
        assert invoke(srv, "whoami", tok).status_code == 200


def test_token_endpoint_client_credentials(srv, issuer):
    """A token as a client gets it: the issuer's own token endpoint."""
    r = requests.post(issuer.url + "/token", verify=issuer.tls["ca"], timeout=30,
                      data={"grant_type": "client_credentials", "client_id": "svc-a",
                            "scope": "par:invoke", "aud": "par"})
    assert r.status_code == 200, r.text
    tok = r.json()["access_token"]
    r = invoke(srv, "echo", tok, {"hi": 1})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == {"hi": 1}
    out = invoke(srv, "whoami", tok).json()["output"]
    assert out["subject"] == "svc-a" and out["tenant"] == ""


def refused(s, tok, reason, name="invalid_token", headers=None):
    h = dict(headers or {})
    if tok is not None:
        h.update(bearer(tok))
    r = s.post("whoami", {"input": 1}, headers=h)
    body = assert_error(r, 401, name)
    challenge = r.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer"), challenge
    if name == "invalid_token":
        assert 'error="invalid_token"' in challenge
        # no oracle: the body never says why
        assert body["message"] == "the bearer credential is not valid"
    else:
        assert "error=" not in challenge
    line = auth_log(s, r.headers["x-request-id"])
    assert line["reason"] in ((reason,) if isinstance(reason, str) else reason), line
    assert line["level"] == "info"
    return line


def test_expired(srv, issuer):
    now = int(time.time())
    tok = issuer.token(sub="u", scope="par:invoke", exp=now - 3600, iat=now - 7200,
                       nbf=now - 7200)
    refused(srv, tok, "expired")


def test_within_leeway_is_accepted(srv, issuer):
    now = int(time.time())
    tok = issuer.token(sub="u", scope="par:invoke", exp=now - 5)
    assert invoke(srv, "whoami", tok).status_code == 200


def test_not_yet_valid(srv, issuer):
    tok = issuer.token(sub="u", scope="par:invoke", nbf=int(time.time()) + 3600)
    refused(srv, tok, "not_yet_valid")


def test_issued_in_the_future(srv, issuer):
    tok = issuer.token(sub="u", scope="par:invoke", iat=int(time.time()) + 3600)
    refused(srv, tok, "issued_in_future")


def test_wrong_issuer(srv, issuer):
    refused(srv, issuer.token(sub="u", scope="par:invoke", iss="https://evil.example"),
            "wrong_issuer")
    refused(srv, issuer.token(sub="u", scope="par:invoke", iss=issuer.url + "/"), "wrong_issuer")


def test_wrong_audience(srv, issuer):
    refused(srv, issuer.token(sub="u", scope="par:invoke", aud="other"), "wrong_audience")
    refused(srv, issuer.token(sub="u", scope="par:invoke", aud=["a", "b"]), "wrong_audience")
    refused(srv, issuer.token(sub="u", scope="par:invoke", omit=["aud"]), "wrong_audience")
    assert invoke(srv, "whoami", issuer.token(sub="u", scope="par:invoke",
                                              aud=["x", "par"])).status_code == 200


def test_tampered_payload(srv, issuer):
    tok = issuer.token(sub="mallory", scope="par:invoke")
    h, p, sig = tok.split(".")
    claims = json.loads(unb64(p))
    claims["scope"] = "par:admin"
    refused(srv, ".".join([h, b64(json.dumps(claims).encode()), sig]), "bad_signature")


def test_signature_from_another_key(srv, issuer):
    # the issuer's kid, someone else's key
    refused(srv, issuer.foreign("RS256", kid=issuer.kids["RS256"], iss=issuer.url, sub="u",
                                scope="par:admin"), "bad_signature")
    refused(srv, issuer.foreign("ES256", kid=issuer.kids["ES256"], iss=issuer.url, sub="u",
                                scope="par:admin"), "bad_signature")


def test_alg_and_key_must_agree(srv, issuer):
    # an ES256 token naming the RSA key's kid
    refused(srv, issuer.foreign("ES256", kid=issuer.kids["RS256"], iss=issuer.url, sub="u"),
            "key_mismatch")


def test_unknown_kid(srv, issuer):
    time.sleep(1.1)  # past the unknown-kid refresh interval: this one may refresh
    refused(srv, issuer.foreign("RS256", kid="not-a-key-of-the-issuer", iss=issuer.url, sub="u"),
            "unknown_kid")


def test_alg_none(srv, issuer):
    tok = issuer.token(sub="u", scope="par:admin")
    _, p, _ = tok.split(".")
    for alg in ("none", "None", "NONE"):
        h = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        refused(srv, f"{h}.{p}.", "alg_not_allowed")
        refused(srv, f"{h}.{p}.c2ln", "alg_not_allowed")


def test_hs256_with_the_public_key_as_secret(srv, issuer):
    pem = issuer.public_pem(issuer.kids["RS256"]).encode()
    tok = issuer.token(sub="u", scope="par:admin")
    _, p, _ = tok.split(".")
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.kids["RS256"]}).encode())
    signing_input = f"{h}.{p}".encode()
    sig = b64(hmac.new(pem, signing_input, hashlib.sha256).digest())
    refused(srv, f"{h}.{p}.{sig}", "alg_not_allowed")


def test_truncated(srv, issuer):
    tok = issuer.token(sub="u", scope="par:invoke")
    refused(srv, tok[:20], "malformed_token")
    refused(srv, tok.rsplit(".", 1)[0], "malformed_token")
    refused(srv, tok[: len(tok) // 2], ("malformed_token", "bad_signature"))
    # a signature cut short no longer decodes (or no longer verifies)
    refused(srv, tok[:-1], ("malformed_token", "bad_signature"))
    refused(srv, tok[:-4], ("malformed_token", "bad_signature"))


def test_garbage(srv):
    refused(srv, "not-a-token", "malformed_token")
    refused(srv, "a.b.c", "malformed_token")
    refused(srv, "e30.e30.", "malformed_token")
    refused(srv, "@@.@@.@@", "malformed_token")


def test_64k_token(srv, issuer):
    tok = issuer.token(sub="u", scope="par:invoke")
    h, p, s = tok.split(".")
    refused(srv, h + "." + p + "A" * (64 * 1024) + "." + s, "token_too_large")
    refused(srv, "A" * (64 * 1024), "token_too_large")


def test_missing_credentials(srv):
    refused(srv, None, "missing_credentials", name="unauthorized")
    refused(srv, None, "missing_credentials", name="unauthorized",
            headers={"Authorization": "Basic dXNlcjpwYXNz"})
    r = refused(srv, "", "malformed_token")  # "Bearer " with nothing after it
    assert r


def test_still_serving_after_refusals(srv, issuer):
    r = invoke(srv, "echo", issuer.token(sub="u", scope="par:invoke"), {"after": True})
    assert r.status_code == 200 and r.json()["output"] == {"after": True}


def test_open_paths(srv):
    assert srv.get("/runtime/health").status_code == 200
    assert srv.get("/runtime/ready").status_code == 200
    assert_error(srv.get("/metrics"), 401, "unauthorized")
    assert_error(srv.get("/runtime/info"), 401, "unauthorized")
    assert_error(srv.get("/agents"), 401, "unauthorized")


# ---- permissions -------------------------------------------------------------------------

def test_invoke_only_token_cannot_manage(srv, issuer):
    tok = issuer.token(sub="worker", scope="par:invoke")
    assert invoke(srv, "echo", tok).status_code == 200
    for method, path, body in [("GET", "/runtime/packages", None),
                               ("GET", "/runtime/packages/echo", None),
                               ("GET", "/runtime/info", None),
                               ("GET", "/metrics", None),
                               ("POST", "/runtime/packages", {"path": package("echo")}),
                               ("POST", "/runtime/packages/echo/reload", None),
                               ("DELETE", "/runtime/packages/echo", None)]:
        r = requests.request(method, srv.url + path, json=body, headers=bearer(tok), timeout=30)
        body = assert_error(r, 403, "forbidden")
        assert "runtime:admin" in body["message"], body
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
        line = auth_log(srv, r.headers["x-request-id"])
        assert line["reason"] == "forbidden" and "runtime:admin" in line["detail"]
    # nothing was changed by the refused calls
    adm = admin(issuer)
    pk = requests.get(srv.url + "/runtime/packages", headers=bearer(adm), timeout=30).json()
    assert sorted(p["name"] for p in pk["packages"]) == ["echo", "whoami"]


def test_admin_can_manage(srv, issuer):
    tok = admin(issuer)
    h = bearer(tok)
    r = requests.get(srv.url + "/runtime/packages", headers=h, timeout=30)
    assert r.status_code == 200
    info = requests.get(srv.url + "/runtime/info", headers=h, timeout=30).json()
    assert info["auth"]["mode"] == "oidc" and info["auth"]["state"] == "ok"
    assert info["auth"]["issuer"] == issuer.url
    assert {k["kid"] for k in info["auth"]["keys"]} >= set(issuer.kids.values())
    assert requests.get(srv.url + "/metrics", headers=h, timeout=30).status_code == 200
    # deploy, list, remove
    r = requests.post(srv.url + "/runtime/packages", json={"path": package("faulty")}, headers=h,
                      timeout=60)
    assert r.status_code == 201, r.text
    r = requests.delete(srv.url + "/runtime/packages/faulty", headers=h, timeout=30)
    assert r.status_code == 200, r.text
    # the access log names who did it
    deadline = time.time() + 5
    while time.time() < deadline:
        lines = [l for l in srv.lines() if l.get("msg") == "request" and l.get("method") == "POST"
                 and l.get("path") == "/runtime/packages" and l.get("status") == 201]
        if lines:
            break
        time.sleep(0.05)
    assert lines and lines[-1]["subject"] == "root"


def test_agent_patterns(srv, issuer):
    tok = issuer.token(sub="w", scope="openid par:whoami")
    assert invoke(srv, "whoami", tok).status_code == 200
    assert invoke(srv, "whoami/via", tok).status_code == 200
    assert invoke(srv, "whoami@0.1.0", tok).status_code == 200
    body = assert_error(invoke(srv, "echo", tok), 403, "forbidden")
    assert "agents:invoke" in body["message"] and "'echo'" in body["message"]
    assert_error(invoke(srv, "echo/shout", tok), 403, "forbidden")
    # listings show what the caller may invoke, and no more
    ids = {a["id"] for a in srv.get("/agents", headers=bearer(tok)).json()["agents"]}
    assert ids == {"whoami", "whoami/via"}
    assert srv.get("/agents/whoami", headers=bearer(tok)).status_code == 200
    assert_error(srv.get("/agents/echo", headers=bearer(tok)), 403, "forbidden")

    tok = issuer.token(sub="s", realm_access={"roles": ["par:shout"]})
    r = invoke(srv, "echo/shout", tok, {"text": "hi"})
    assert r.status_code == 200 and r.json()["output"] == {"text": "HI"}
    assert_error(invoke(srv, "echo", tok), 403, "forbidden")

    # a raw permission name in scope is not a grant when grants are configured
    tok = issuer.token(sub="n", scope="openid runtime:admin agents:invoke")
    assert_error(invoke(srv, "echo", tok), 403, "forbidden")
    assert_error(srv.get("/runtime/info", headers=bearer(tok)), 403, "forbidden")
    assert srv.get("/agents", headers=bearer(tok)).json()["agents"] == []


def test_private_sub_agents_stay_404_for_admins(srv, issuer):
    tok = admin(issuer)
    assert_error(invoke(srv, "whoami/inner", tok), 404, "agent_not_found")
    assert_error(invoke(srv, "echo/upper", tok), 404, "agent_not_found")
    assert_error(srv.get("/agents/echo/upper", headers=bearer(tok)), 404, "agent_not_found")
    # and the public one that calls it works
    assert invoke(srv, "echo/shout", tok, {"text": "ok"}).json()["output"] == {"text": "OK"}


# ---- identity ---------------------------------------------------------------------------

def test_identity_reaches_the_agent_and_its_sub_agents(srv, issuer):
    tok = issuer.token(sub="alice", org="acme", scope="par:invoke")
    r = invoke(srv, "whoami/via", tok, headers={"X-Request-ID": "idflow-1"})
    assert r.status_code == 200, r.text
    out = r.json()["output"]
    ident = lambda v: {k: v[k] for k in ("subject", "tenant", "request_id")}  # noqa: E731
    assert ident(out["outer"]) == {"subject": "alice", "tenant": "acme", "request_id": "idflow-1"}
    assert ident(out["inner"]) == ident(out["outer"])
    deadline = time.time() + 5
    line = None
    while line is None and time.time() < deadline:
        line = next((l for l in srv.lines() if l.get("msg") == "request"
                     and l.get("request_id") == "idflow-1"), None)
        time.sleep(0.02)
    assert line["subject"] == "alice" and line["tenant"] == "acme"
    # a numeric tenant claim is accepted; a malformed one refuses the token
    out = invoke(srv, "whoami", issuer.token(sub="bob", org=42, scope="par:invoke")).json()
    assert out["output"]["tenant"] == "42"
    refused(srv, issuer.token(sub="eve", org={"x": 1}, scope="par:invoke"), "invalid_claims")
    refused(srv, issuer.token(sub="", scope="par:invoke"), "invalid_claims")
    # a subject that needs escaping in the worker protocol reaches the agent exactly
    odd = 'al"ice\\ \u00e9\U0001F600/x'
    tok = issuer.token(sub=odd, org='a\\"b', scope="par:invoke")
    r = invoke(srv, "whoami/via", tok)
    assert r.status_code == 200, r.text
    out = r.json()["output"]
    assert out["outer"]["subject"] == odd and out["inner"]["subject"] == odd
    assert out["outer"]["tenant"] == 'a\\"b' and out["inner"]["tenant"] == 'a\\"b'


def test_identity_in_process(server_factory, issuer, tls, tmp_path):
    """The same through the in-process loader (a trusted package)."""
    conf = oidc_config(tmp_path, issuer.url, tls["ca"])
    s = server_factory([package("whoami")], args=["--config", conf, "--trusted", "whoami"])
    wait_keys(s)
    tok = issuer.token(sub="carol", org="beta", scope="par:invoke")
    out = invoke(s, "whoami/via", tok).json()["output"]
    assert out["outer"]["subject"] == "carol" and out["outer"]["tenant"] == "beta"
    assert out["inner"]["subject"] == "carol" and out["inner"]["tenant"] == "beta"


def test_metrics_count_refusals(srv, issuer):
    text = requests.get(srv.url + "/metrics", headers=bearer(admin(issuer)), timeout=30).text
    counts = {}
    for line in text.splitlines():
        if line.startswith("par_auth_failures_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            counts[reason] = float(line.rsplit(" ", 1)[1])
    for reason in ("expired", "not_yet_valid", "wrong_issuer", "wrong_audience", "bad_signature",
                   "unknown_kid", "alg_not_allowed", "malformed_token", "token_too_large",
                   "missing_credentials", "forbidden"):
        assert counts.get(reason, 0) >= 1, (reason, counts)
    assert "par_auth_token_cache_total{result=\"hit\"}" in text
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# ---- the issuer's keys over time --------------------------------------------------------

def test_key_rotation_without_restart(server_factory, issuers, tls, tmp_path):
    iss = issuers()
    conf = oidc_config(tmp_path, iss.url, tls["ca"], extra="    jwks_cache_min_s: 1\n")
    s = server_factory([package("echo")], args=["--config", conf])
    wait_keys(s)
    old = iss.token(sub="u", scope="par:invoke")
    assert invoke(s, "echo", old).status_code == 200
    fetched = iss.stats()["jwks"]

    # the issuer starts signing with a new key: the first token with its kid
    # waits for one refresh and is accepted
    time.sleep(1.1)
    kid = iss.generate("ES256")
    new = iss.token(kid=kid, sub="u", scope="par:invoke")
    r = invoke(s, "echo", new)
    assert r.status_code == 200, r.text
    assert iss.stats()["jwks"] == fetched + 1
    assert any(l.get("msg") == "auth: issuer keys changed" and kid in l.get("kids", "")
               for l in s.lines())

    # made-up kids cannot make PAR hammer the issuer: at most one refresh per interval
    before = iss.stats()["jwks"]
    t0 = time.time()
    for i in range(30):
        refused(s, iss.foreign("RS256", kid=f"bogus-{i}", iss=iss.url, sub="u"), "unknown_kid")
    elapsed = time.time() - t0
    assert iss.stats()["jwks"] - before <= int(elapsed) + 2

    # a key the issuer stops publishing stops working at PAR's next refresh,
    # even for a token verified (and cached) before
    iss.set(cache_control="max-age=1")
    iss.retire(iss.kids["RS256"])
    time.sleep(1.1)
    refused(s, iss.foreign("RS256", kid="trigger", iss=iss.url, sub="u"), "unknown_kid")
    refused(s, old, "unknown_kid")
    assert invoke(s, "echo", new).status_code == 200

    # that refresh also learnt max-age=1: keys published later arrive on schedule,
    # with no request asking for them
    adm = iss.token(kid=kid, sub="root", scope="par:admin")
    later = iss.generate("RS256")
    deadline = time.time() + 10
    kids = set()
    while time.time() < deadline and later not in kids:
        info = s.get("/runtime/info", headers=bearer(adm)).json()["auth"]
        kids = {k["kid"] for k in info["keys"]}
        time.sleep(0.2)
    assert later in kids and iss.kids["RS256"] not in kids


def test_issuer_down_with_cached_keys(server_factory, issuers, tls, tmp_path):
    iss = issuers()
    iss.set(cache_control="max-age=1")  # PAR refreshes every second
    conf = oidc_config(tmp_path, iss.url, tls["ca"], extra="    jwks_cache_min_s: 1\n")
    s = server_factory([package("echo")], args=["--config", conf])
    wait_keys(s)
    # tokens minted while the issuer is up, used after it is gone
    toks = [iss.token(sub=f"u{i}", scope="par:invoke") for i in range(3)]
    adm = admin(iss)
    assert invoke(s, "echo", toks[0]).status_code == 200
    iss.stop()
    deadline = time.time() + 15
    while time.time() < deadline and not any(
            "cannot fetch the signing keys" in l.get("msg", "") for l in s.lines()):
        time.sleep(0.1)
    line = next(l for l in s.lines() if "cannot fetch the signing keys" in l.get("msg", ""))
    assert line["level"] == "warn" and "keeping the keys already held" in line["msg"]
    for t in toks:
        assert invoke(s, "echo", t).status_code == 200
    assert s.get("/runtime/ready").status_code == 200
    info = s.get("/runtime/info", headers=bearer(adm)).json()["auth"]
    assert info["state"] == "stale" and info["last_error"]
    assert info["consecutive_failures"] >= 1


def test_issuer_down_at_start(server_factory, issuers, tls, tmp_path):
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    conf = oidc_config(tmp_path, url, tls["ca"])
    s = server_factory([package("echo")], args=["--config", conf], wait_ready=False)
    assert s.get("/runtime/health").status_code == 200
    body = assert_error(s.get("/runtime/ready"), 503, "not_ready")
    assert "signing keys" in body["message"] and url in body["message"]
    # a token cannot be checked: 503, never accepted unverified
    fake = b64(b'{"alg":"RS256","kid":"x"}') + "." + b64(
        json.dumps({"iss": url, "aud": "par", "sub": "u", "scope": "par:admin",
                    "exp": int(time.time()) + 600}).encode()) + "." + b64(b"\0" * 256)
    r = invoke(s, "echo", fake)
    assert_error(r, 503, "auth_unavailable")
    assert r.headers.get("retry-after")
    assert_error(s.get("/runtime/packages", headers=bearer(fake)), 503, "auth_unavailable")
    assert_error(invoke(s, "echo"), 401, "unauthorized")
    line = auth_log(s, r.headers["x-request-id"])
    assert line["reason"] == "keys_unavailable"
    # the issuer comes up: PAR picks its keys up by itself and serves
    iss = issuers(port=port)
    wait_keys(s)
    assert invoke(s, "echo", iss.token(sub="u", scope="par:invoke")).status_code == 200
    assert_error(invoke(s, "echo", fake), 401, "invalid_token")


def test_tls_is_verified(server_factory, issuer, tls, tmp_path):
    """An issuer whose certificate the configured CA did not sign is not trusted."""
    conf = oidc_config(tmp_path, issuer.url, tls["other_ca"])
    s = server_factory([package("echo")], args=["--config", conf], wait_ready=False)
    deadline = time.time() + 10
    msg = ""
    while time.time() < deadline and "certificate" not in msg.lower():
        msg = s.get("/runtime/ready").json().get("message", "")
        time.sleep(0.1)
    assert "certificate" in msg.lower(), msg
    assert_error(invoke(s, "echo", issuer.token(sub="u", scope="par:invoke")), 503,
                 "auth_unavailable")


# ---- API keys ----------------------------------------------------------------------------

def test_api_key_mode(server_factory, tmp_path):
    admin_key, user_key = "k-admin-" + "x" * 24, "k-user-" + "y" * 24
    sha = lambda k: hashlib.sha256(k.encode()).hexdigest()  # noqa: E731
    conf = tmp_path / "par.yaml"
    conf.write_text(f"""\
trust: {{require_signatures: false}}
auth:
  mode: api_key
  open_paths: [/runtime/health, /runtime/ready, /metrics]
  api_keys:
    - sha256: {sha(admin_key)}
      subject: ops
      permissions: [runtime:admin, agents:invoke]
    - sha256: {sha(user_key).upper()}
      subject: shop-frontend
      tenant: shop
      permissions: ["agents:invoke:whoami"]
""")
    s = server_factory([package("echo"), package("whoami")], args=["--config", str(conf)])
    out = invoke(s, "whoami/via", user_key).json()["output"]
    assert out["inner"]["subject"] == "shop-frontend" and out["inner"]["tenant"] == "shop"
    r = s.post("whoami", {"input": 1}, headers={"X-API-Key": user_key})
    assert r.status_code == 200
    assert_error(invoke(s, "echo", user_key), 403, "forbidden")
    assert_error(s.get("/runtime/packages", headers=bearer(user_key)), 403, "forbidden")
    assert s.get("/runtime/packages", headers=bearer(admin_key)).status_code == 200
    assert invoke(s, "echo", admin_key).status_code == 200
    r = invoke(s, "whoami", "k-user-" + "y" * 23 + "z")
    assert_error(r, 401, "invalid_token")
    assert auth_log(s, r.headers["x-request-id"])["reason"] == "unknown_api_key"
    r = invoke(s, "whoami")
    assert_error(r, 401, "unauthorized")
    assert "X-API-Key" in r.json()["message"]
    assert s.get("/metrics").status_code == 200  # opened by configuration
    info = s.get("/runtime/info", headers=bearer(admin_key)).json()["auth"]
    assert info["mode"] == "api_key" and info["subjects"] == ["ops", "shop-frontend"]
    assert admin_key not in s.text() and user_key not in s.text()


# ---- configuration -----------------------------------------------------------------------

def test_auth_must_be_configured(tmp_path):
    conf = tmp_path / "par.yaml"
    conf.write_text("log: {level: info}\n")
    r = run("serve", "--config", str(conf), "--listen", "127.0.0.1:0",
            "--state-dir", str(tmp_path / "var"), "--packages", str(tmp_path))
    assert r.returncode == 2 and "auth.mode is not set" in r.stderr, r.stderr
    conf.write_text("auth: {mode: oidc, oidc: {issuer: 'https://i', audience: par, "
                    "algorithms: [RS256, HS256]}}\n")
    r = run("serve", "--config", str(conf), "--listen", "127.0.0.1:0",
            "--state-dir", str(tmp_path / "var"), "--packages", str(tmp_path))
    assert r.returncode == 2 and "HS256" in r.stderr and "never accepted" in r.stderr, r.stderr
    conf.write_text("auth: {mode: oidc, oidc: {issuer: 'https://i', audiense: par}}\n")
    r = run("serve", "--config", str(conf), "--listen", "127.0.0.1:0",
            "--state-dir", str(tmp_path / "var"), "--packages", str(tmp_path))
    assert r.returncode == 2 and "unknown key `auth.oidc.audiense` (did you mean `auth.oidc.audience`?)" in r.stderr, r.stderr


def test_auth_off_when_configured_warns(server_factory, tmp_path):
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n")
    s = server_factory([package("echo")], args=["--config", str(conf)])
    assert s.post("echo", {"input": 1}).status_code == 200
    assert s.get("/runtime/packages").status_code == 200
    assert any(l.get("level") == "warn" and "authentication is off" in l.get("msg", "")
               for l in s.lines())
    # the same from a flag over the file
    s2 = server_factory([package("echo")], args=["--config", str(conf), "--auth", "mode=off"])
    assert s2.get("/runtime/info").json()["auth"] == {"mode": "off"}
