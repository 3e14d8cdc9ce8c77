"""Sub-agent calls: the call-depth cap, declared callees (metadata.par.calls) and
what a worker may claim in its CALL and LOG frames (docs/worker-protocol.md,
docs/security.md). The hostile fixture (tests/fixtures/hostile) plays the agent:
`relay` calls the next id of its input, `rawcall` sends bytes that are not JSON,
`forgelog` writes LOG frames that claim another agent's request.
"""
import hashlib
import os
import shutil
import time
import uuid

import pytest

from conftest import BUILD, assert_error, package, run

LIMIT = 16  # limits.max_call_depth's default


def config(tmp_path, extra=""):
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n" + extra)
    return str(conf)


def hostile_as(tmp_path, name, calls=None):
    """The hostile fixture packed under another name, optionally declaring its callees."""
    d = tmp_path / name
    shutil.copytree(os.path.join(BUILD, "stage", "hostile"), d)
    y = (d / "agent.yaml").read_text().replace("name: hostile", "name: " + name)
    if calls is not None:
        y = y.replace("    abi: 1\n", "    abi: 1\n    calls: [%s]\n" %
                      ", ".join('"%s"' % c for c in calls))
    (d / "agent.yaml").write_text(y)
    pkg = str(tmp_path / f"{name}-0.1.0.apkg")
    r = run("pack", str(d), "-o", pkg)
    assert r.returncode == 0, r.stderr
    return pkg


def relay(s, agent, ids, headers=None):
    r = s.post(agent, {"input": ids}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["output"], r.headers["x-request-id"]


def hops(s, rid):
    return [l for l in s.lines() if l.get("msg") == "sub-agent call" and
            l.get("request_id") == rid]


def assert_depth_stopped(s, out, rid):
    assert isinstance(out, dict) and out.get("error") == "call_depth_exceeded", out
    assert "limits.max_call_depth" in out["message"] and str(LIMIT) in out["message"], out
    # the chain ended at the cap: LIMIT calls ran, the next one was refused
    deadline = time.time() + 5
    while time.time() < deadline and not (refused(s, rid) and len(hops(s, rid)) >= LIMIT):
        time.sleep(0.05)
    got = refused(s, rid)
    assert len(got) == 1 and got[0]["depth"] == LIMIT + 1, got
    assert len(hops(s, rid)) == LIMIT, len(hops(s, rid))


def refused(s, rid):
    return [l for l in s.lines() if l.get("msg") == "sub-agent call refused: call depth" and
            l.get("request_id") == rid]


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sub")
    return server_factory([package("hostile"), package("echo"),
                           hostile_as(tmp, "cyc-a"), hostile_as(tmp, "cyc-b")],
                          args=["--config", config(tmp)])


def test_self_recursion_in_a_worker_stops_at_the_depth_cap(srv):
    out, rid = relay(srv, "hostile/relay", "hostile/relay")
    assert_depth_stopped(srv, out, rid)
    assert srv.post("echo", {"input": "still"}).json()["output"] == "still"


def test_a_cycle_across_two_packages_stops_at_the_depth_cap(srv):
    out, rid = relay(srv, "cyc-a/relay", "cyc-b/relay cyc-a/relay")
    assert_depth_stopped(srv, out, rid)
    agents = {l["agent"] for l in hops(srv, rid)}
    assert agents == {"cyc-a/relay", "cyc-b/relay"}, agents


def test_self_recursion_in_process_stops_at_the_depth_cap(server_factory, tmp_path):
    s = server_factory([package("hostile"), package("echo")],
                       args=["--config", config(tmp_path, "trusted: [hostile]\n")])
    assert s.get("/runtime/packages/hostile").json()["isolation"] == "in-process"
    out, rid = relay(s, "hostile/relay", "hostile/relay")
    assert_depth_stopped(s, out, rid)


def test_the_depth_cap_is_configurable(server_factory, tmp_path):
    s = server_factory([package("hostile"), package("echo")],
                       args=["--config", config(tmp_path, "limits: {max_call_depth: 3}\n")])
    out, rid = relay(s, "hostile/relay", "hostile/relay")
    assert out["error"] == "call_depth_exceeded" and "= 3" in out["message"], out
    # a chain within the cap is not affected
    out, _ = relay(s, "hostile/relay", "echo")
    assert out == "echo"


def test_a_call_body_that_is_not_json_is_refused(srv):
    out, _ = relay(srv, "hostile/rawcall", "echo")
    assert out["error"] == "invalid_json", out
    assert "byte" in out["message"], out
    assert srv.post("echo", {"input": "fine"}).json()["output"] == "fine"


def test_log_frames_cannot_forge_agent_or_request(srv):
    victim = "victim-" + uuid.uuid4().hex[:12]
    r = srv.post("hostile/forgelog", {"input": victim})
    assert r.status_code == 200 and r.json()["output"] == {"forged": 2}, r.text
    rid = r.headers["x-request-id"]
    deadline = time.time() + 5
    while time.time() < deadline:
        forged = [l for l in srv.lines() if l.get("msg") == "forged line"]
        honest = [l for l in srv.lines() if l.get("msg") == "honest line"]
        if len(forged) >= 2 and honest:
            break
        time.sleep(0.05)
    assert len(forged) == 2, forged
    assert victim not in srv.text()
    for l in forged:
        # for no call in flight: the package's worker, never the claimed agent or request
        assert l.get("agent") != "echo" and l.get("request_id") != victim, l
        assert l.get("trace_id") != "forged", l
        assert l["package"] == "hostile" and "pid" in l, l
    assert honest[0]["request_id"] == rid and honest[0]["agent"] == "hostile/forgelog"


# ---- declared callees (metadata.par.calls) --------------------------------------------

def test_declared_callees_bound_the_calls(server_factory, tmp_path):
    s = server_factory([package("echo"), package("hostile"),
                        hostile_as(tmp_path, "shop-a", calls=["echo", "shop-*"]),
                        hostile_as(tmp_path, "shop-b"),
                        hostile_as(tmp_path, "free-c")],
                       args=["--config", config(tmp_path)])
    info = s.get("/runtime/packages/shop-a").json()
    assert info.get("calls") == ["echo", "shop-*"], info
    out, _ = relay(s, "shop-a/relay", "echo")
    assert out == "echo"
    out, _ = relay(s, "shop-a/relay", "shop-b")  # a pattern
    assert out == "shop-b"
    out, _ = relay(s, "shop-a/relay", "whoami")  # its own package: always
    assert "uid" in out, out
    out, _ = relay(s, "shop-a/relay", "shop-a/whoami")
    assert "uid" in out, out
    # refused before the target is looked up: unknown agents look the same
    for target in ("hostile/whoami", "free-c", "hostile@0.1.0/whoami", "nosuch/agent"):
        out, _ = relay(s, "shop-a/relay", target)
        assert out["error"] == "forbidden", (target, out)
        assert ("'%s'" % target) in out["message"] and "echo, shop-*" in out["message"], out
    # without a declaration a package calls any public agent, as before
    out, _ = relay(s, "free-c/relay", "hostile")
    assert out == "hostile"


def test_declared_callee_with_a_version(server_factory, tmp_path):
    """A pattern with a version (docs/agent-yaml.md: `echo@1.0.0/upper`) allows
    calls that name that version, and only those."""
    s = server_factory([package("echo"), package("hostile"),
                        hostile_as(tmp_path, "pin-d", calls=["hostile@0.1.0"])],
                       args=["--config", config(tmp_path)])
    out, _ = relay(s, "pin-d/relay", "hostile@0.1.0")
    assert out == "hostile@0.1.0", out  # the relay ends at the agent it reached
    for target in ("hostile", "hostile@9.9.9", "echo@1.0.0"):
        out, _ = relay(s, "pin-d/relay", target)
        assert out["error"] == "forbidden", (target, out)


def test_confused_deputy_choice(server_factory, tmp_path):
    """docs/security.md: a caller allowed only `shop-*` reaches what a `shop-*`
    package declares it calls (the package's authority, not the caller's), and
    nothing else."""
    key = "k-shop-" + "z" * 24
    sha = hashlib.sha256(key.encode()).hexdigest()
    conf = tmp_path / "par.yaml"
    conf.write_text(f"""\
trust: {{require_signatures: false}}
auth:
  mode: api_key
  api_keys:
    - sha256: {sha}
      subject: shop-frontend
      permissions: ["agents:invoke:shop-*"]
""")
    s = server_factory([package("echo"), package("hostile"),
                        hostile_as(tmp_path, "shop-a", calls=["echo"])],
                       args=["--config", str(conf)])
    h = {"X-API-Key": key}
    assert_error(s.post("echo", {"input": 1}, headers=h), 403, "forbidden")
    out, _ = relay(s, "shop-a/relay", "echo", headers=h)
    assert out == "echo"
    out, _ = relay(s, "shop-a/relay", "hostile/whoami", headers=h)
    assert out["error"] == "forbidden", out
