"""Runs across nodes (docs/fleet.md, "Runs across nodes"): real PostgreSQL,
three real `par serve` nodes sharing it.

A run started on node A is read, streamed (and resumed with Last-Event-ID),
waited on and cancelled through node B, which forwards to A with the
caller's credential: another subject gets the same 404 through B as on A.
A forwarded request naming a third node's run is a forwarding loop (508);
bad ids are 404 run_not_found. Node C is killed with -9 while B streams its
run: the stream ends with run.interrupted, and the run reads 503 interrupted
from B, within fleet.dead_after_ms; restarted on its state directory it
serves the interrupted run through B again. A forwarded wait whose client
hangs up stops. A node without fleet.postgres keeps the single-node ids and
never loads libpq; bad fleet settings are refused by `par config check`.
"""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import assert_error, package, run
from pg import Postgres

ALICE, BOB, ADMIN = "k-alice-" + "a" * 24, "k-bob-" + "b" * 24, "k-admin-" + "c" * 24
HEARTBEAT_MS, DEAD_AFTER_MS = 300, 1500
FLEET_ID = re.compile(r"^run_[0-9a-f]{32}_[a-z2-7]{6}$")


def sha(k):
    return hashlib.sha256(k.encode()).hexdigest()


def key(k):
    return {"X-API-Key": k}


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    p = Postgres(str(tmp_path_factory.mktemp("pg")))
    yield p
    p.close()


def conf_text(pg_url=None):
    fleet = (f"fleet: {{postgres: '{pg_url}', heartbeat_ms: {HEARTBEAT_MS}, "
             f"dead_after_ms: {DEAD_AFTER_MS}}}\n" if pg_url else "")
    return f"""\
trust: {{require_signatures: false}}
runs: {{heartbeat_ms: 200}}
http: {{threads: 2}}
{fleet}auth:
  mode: api_key
  open_paths: [/runtime/health, /runtime/ready]
  api_keys:
    - {{sha256: {sha(ALICE)}, subject: alice, permissions: [agents:invoke]}}
    - {{sha256: {sha(BOB)}, subject: bob, permissions: [agents:invoke]}}
    - {{sha256: {sha(ADMIN)}, subject: ops, permissions: [runtime:admin, agents:invoke]}}
"""


def node(server_factory, tmp_path_factory, pg, name, extra=()):
    d = tmp_path_factory.mktemp("conf-" + name)
    conf = d / "par.yaml"
    conf.write_text(conf_text(pg.url if pg else None))
    os.environ["PAR_METERING_NODE_ID"] = "node-" + name  # the Server copies the environment
    try:
        return server_factory([package("echo"), package("ticker")],
                              args=["--config", str(conf), *extra])
    finally:
        del os.environ["PAR_METERING_NODE_ID"]


@pytest.fixture(scope="module")
def fleet(server_factory, tmp_path_factory, pg):
    a = node(server_factory, tmp_path_factory, pg, "a")
    b = node(server_factory, tmp_path_factory, pg, "b")
    # every node registered and seen by the others
    deadline = time.time() + 10
    while len(pg.psql("SELECT node_id FROM par_nodes")) < 2 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(2 * HEARTBEAT_MS / 1000)
    return a, b


def start(s, agent, body, who=ALICE, kind=""):
    r = requests.post(f"{s.url}/agents/{agent}/runs{kind}", data=json.dumps(body),
                      headers={"content-type": "application/json", **key(who)}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["run_id"]


def sse(resp):
    events, cur = [], {}
    for line in resp.iter_lines(decode_unicode=True):
        if line == "":
            if cur:
                events.append(cur)
            cur = {}
        elif not line.startswith(":"):
            k, _, v = line.partition(": ")
            cur[k] = v
    assert cur == {}, "the stream ended inside an event"
    for e in events:
        e["id"] = int(e["id"])
        e["data"] = json.loads(e["data"])
    return events


def tag_of(run_id):
    return run_id[-6:]


def test_run_ids_carry_their_node_and_nodes_register(fleet, pg):
    a, b = fleet
    run_id = start(a, "echo", {"input": {"x": 1}})
    assert FLEET_ID.match(run_id), run_id
    rows = {r[0]: r for r in pg.psql(
        "SELECT node_id, tag, advertise_url, heartbeat_at > now() - interval '5 s' "
        "FROM par_nodes")}
    assert rows["node-a"][1] == tag_of(run_id)
    assert rows["node-a"][2] == a.url and rows["node-b"][2] == b.url
    assert rows["node-a"][3] == "t" and rows["node-b"][3] == "t"
    assert rows["node-a"][1] != rows["node-b"][1]
    # a run of B carries B's tag
    assert tag_of(start(b, "echo", {"input": 2})) == rows["node-b"][1]


def test_read_through_another_node_keeps_ownership(fleet):
    a, b = fleet
    run_id = start(a, "echo", {"input": {"x": 1}})
    direct = requests.get(f"{a.url}/runs/{run_id}", headers=key(ALICE), timeout=10)
    via = requests.get(f"{b.url}/runs/{run_id}", headers=key(ALICE), timeout=10)
    assert direct.status_code == via.status_code == 200, via.text
    assert via.json()["run_id"] == run_id
    assert via.json()["agent_id"] == direct.json()["agent_id"] == "echo"
    # another subject: the same not-found on the owner and through B
    for s in (a, b):
        r = requests.get(f"{s.url}/runs/{run_id}", headers=key(BOB), timeout=10)
        assert_error(r, 404, "run_not_found")
    # the credential is checked on B before anything is forwarded
    assert requests.get(f"{b.url}/runs/{run_id}", timeout=10).status_code == 401
    # an admin sees it through B too
    assert requests.get(f"{b.url}/runs/{run_id}", headers=key(ADMIN),
                        timeout=10).status_code == 200


def test_stream_and_resume_through_another_node(fleet):
    a, b = fleet
    run_id = start(a, "ticker", {"input": {"n": 5, "ms": 40}})
    r = requests.get(f"{b.url}/runs/{run_id}/stream", headers=key(ALICE), stream=True,
                     timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    events = sse(r)
    assert [e["id"] for e in events] == list(range(1, 8))
    assert events[0]["event"] == "run.started" and events[-1]["event"] == "run.completed"
    # resume after event 3, through B, with Last-Event-ID and with ?after=
    r = requests.get(f"{b.url}/runs/{run_id}/stream", stream=True, timeout=30,
                     headers={**key(ALICE), "Last-Event-ID": "3"})
    assert [e["id"] for e in sse(r)] == [4, 5, 6, 7]
    r = requests.get(f"{b.url}/runs/{run_id}/stream?after=6", stream=True, timeout=30,
                     headers=key(ALICE))
    assert [e["event"] for e in sse(r)] == ["run.completed"]
    # a bad resume point is the owner's named error, through B
    r = requests.get(f"{b.url}/runs/{run_id}/stream", headers={**key(ALICE),
                     "Last-Event-ID": "99"}, timeout=10)
    assert_error(r, 400, "invalid_last_event_id")


def test_wait_through_another_node(fleet):
    a, b = fleet
    run_id = start(a, "ticker", {"input": {"n": 3, "ms": 100}})
    r = requests.get(f"{b.url}/runs/{run_id}/wait", headers=key(ALICE), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["run_id"] == run_id and r.json()["agent_id"] == "ticker"
    # the same route on the owner itself
    r = requests.get(f"{a.url}/runs/{run_id}/wait", headers=key(ALICE), timeout=30)
    assert r.status_code == 200 and r.json()["run_id"] == run_id


def forwards_ok(s):
    m = requests.get(f"{s.url}/metrics", headers=key(ADMIN), timeout=10).text
    return int(re.search(r'par_fleet_forwards_total\{outcome="ok"\} (\d+)', m).group(1))


def test_forwarded_wait_whose_client_leaves_stops(fleet):
    a, b = fleet
    run_id = start(a, "ticker", {"input": {"n": 100000, "ms": 10}})
    before = forwards_ok(b)
    host, port = b.url.split("//")[1].split(":")
    c = socket.create_connection((host, int(port)))
    c.sendall(f"GET /runs/{run_id}/wait HTTP/1.1\r\nHost: x\r\nX-API-Key: {ALICE}\r\n\r\n"
              .encode())
    time.sleep(0.5)
    c.close()
    deadline = time.time() + 5
    while time.time() < deadline:
        lines = [l for l in b.lines() if l.get("msg") == "request"
                 and l.get("path", "").endswith(f"{run_id}/wait")]
        if lines and forwards_ok(b) > before:
            break
        time.sleep(0.1)
    assert lines and lines[-1]["status"] == 499
    assert forwards_ok(b) == before + 1  # the forward's thread ended
    assert requests.post(f"{b.url}/runs/{run_id}/cancel", headers=key(ALICE),
                         timeout=10).status_code == 202


def test_cancel_and_delete_through_another_node(fleet):
    a, b = fleet
    run_id = start(a, "ticker", {"input": {"n": 100000, "ms": 10}})
    r = requests.post(f"{b.url}/runs/{run_id}/cancel", headers=key(BOB), timeout=10)
    assert_error(r, 404, "run_not_found")
    r = requests.post(f"{b.url}/runs/{run_id}/cancel", headers=key(ALICE), timeout=10)
    assert r.status_code == 202, r.text
    assert requests.get(f"{a.url}/runs/{run_id}", headers=key(ALICE),
                        timeout=10).json()["status"] == "cancelled"
    r = requests.post(f"{b.url}/runs/{run_id}/cancel", headers=key(ALICE), timeout=10)
    assert_error(r, 409, "run_ended")
    r = requests.delete(f"{b.url}/runs/{run_id}", headers=key(ALICE), timeout=10)
    assert r.status_code == 204
    assert_error(requests.get(f"{a.url}/runs/{run_id}", headers=key(ALICE), timeout=10), 404,
                 "run_not_found")


def test_forwarding_loop_and_bad_ids(fleet):
    a, b = fleet
    run_id = start(a, "echo", {"input": 1})
    assert requests.get(f"{b.url}/runs/{run_id}", headers=key(ALICE),
                        timeout=10).status_code == 200
    r = requests.get(f"{b.url}/runs/{run_id}", timeout=10,
                     headers={**key(ALICE), "X-Par-Forwarded": "node-x"})
    assert_error(r, 508, "forwarding_loop")
    # the owner itself serves a forwarded request for its own run
    r = requests.get(f"{a.url}/runs/{run_id}", timeout=10,
                     headers={**key(ALICE), "X-Par-Forwarded": "node-b"})
    assert r.status_code == 200
    bad = [run_id[:-1], run_id.upper(), run_id[:-6] + "ABCDEF", run_id[:-7] + "-" + run_id[-6:],
           run_id[:-6] + "aaaa1a", "run_" + "g" * 32, run_id + "a"]
    for bid in bad:
        for route in ("", "/stream", "/wait"):
            assert_error(requests.get(f"{b.url}/runs/{bid}{route}", headers=key(ALICE),
                                      timeout=10), 404, "run_not_found")
        assert_error(requests.post(f"{b.url}/runs/{bid}/cancel", headers=key(ALICE),
                                   timeout=10), 404, "run_not_found")
    # a well-formed id of a node that does not exist
    r = requests.get(f"{b.url}/runs/{run_id[:-6]}zzzzzz", headers=key(ALICE), timeout=10)
    assert_error(r, 404, "run_not_found")
    m = requests.get(f"{b.url}/metrics", headers=key(ADMIN), timeout=10).text
    assert re.search(r'par_fleet_forwards_total\{outcome="ok"\} [1-9]', m)
    assert re.search(r'par_fleet_forwards_total\{outcome="loop"\} [1-9]', m)
    assert re.search(r'par_fleet_forwards_total\{outcome="unknown_node"\} [1-9]', m)
    assert 'par_fleet_nodes{state="alive"} 2' in m or 'par_fleet_nodes{state="alive"} 3' in m
    r = subprocess.run(["promtool", "check", "metrics"], input=m, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_owner_killed_reads_interrupted_from_other_nodes(fleet, pg, server_factory,
                                                         tmp_path_factory):
    a, b = fleet
    c = node(server_factory, tmp_path_factory, pg, "c")
    time.sleep(3 * HEARTBEAT_MS / 1000)  # B has seen C
    run_id = start(c, "ticker", {"input": {"n": 100000, "ms": 20}})
    got = {}

    def follow():
        r = requests.get(f"{b.url}/runs/{run_id}/stream", headers=key(ALICE), stream=True,
                         timeout=30)
        got["events"] = sse(r)

    t = threading.Thread(target=follow)
    t.start()
    time.sleep(0.5)
    c.killed = True
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait()
    t0 = time.time()
    t.join(15)
    assert not t.is_alive()
    events = got["events"]
    assert events[0]["event"] == "run.started" and len(events) > 3
    assert events[-1]["event"] == "run.interrupted"
    assert events[-1]["id"] == events[-2]["id"] + 1
    assert events[-1]["data"]["error"] == "interrupted"
    # from any node, at once (unreachable) and after the bound (heartbeat stale)
    for s in (a, b):
        r = requests.get(f"{s.url}/runs/{run_id}", headers=key(ALICE), timeout=10)
        assert_error(r, 503, "interrupted")
    deadline = t0 + (DEAD_AFTER_MS + 2 * HEARTBEAT_MS) / 1000 + 1
    while time.time() < deadline:
        m = requests.get(f"{b.url}/metrics", headers=key(ADMIN), timeout=10).text
        if 'par_fleet_nodes{state="dead"} 1' in m:
            break
        time.sleep(0.1)
    assert 'par_fleet_nodes{state="dead"} 1' in m
    stale = time.time() - t0
    r = requests.get(f"{b.url}/runs/{run_id}", headers=key(ALICE), timeout=10)
    assert_error(r, 503, "interrupted")
    assert "heartbeat" in r.json()["message"]
    r = requests.get(f"{b.url}/runs/{run_id}/stream", headers={**key(ALICE),
                     "Last-Event-ID": "5"}, stream=True, timeout=10)
    ev = sse(r)
    assert [(e["id"], e["event"]) for e in ev] == [(6, "run.interrupted")]
    for path in ("/wait", "/cancel"):
        fn = requests.post if path == "/cancel" else requests.get
        assert_error(fn(f"{a.url}/runs/{run_id}{path}", headers=key(ALICE), timeout=10), 503,
                     "interrupted")
    print(f"\nowner dead for the registry {stale:.2f} s after kill -9 "
          f"(bound: dead_after_ms {DEAD_AFTER_MS} + a heartbeat)")
    # the owner comes back on its state directory (another port): same tag,
    # its run is interrupted in its own record, readable through B
    c2 = node(server_factory, tmp_path_factory, pg, "c",
              extra=["--state-dir", os.path.join(c.tmp, "var")])
    deadline = time.time() + 10
    while time.time() < deadline:
        r = requests.get(f"{b.url}/runs/{run_id}", headers=key(ALICE), timeout=10)
        if r.status_code == 200:
            break
        time.sleep(0.1)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "interrupted"
    r = requests.get(f"{b.url}/runs/{run_id}/stream", headers={**key(ALICE),
                     "Last-Event-ID": "2"}, stream=True, timeout=10)
    ev = sse(r)
    assert ev[0]["id"] == 3 and ev[-1]["event"] == "run.interrupted"
    assert tag_of(start(c2, "echo", {"input": 1})) == tag_of(run_id)


def test_single_node_is_unchanged(server_factory, tmp_path_factory):
    s = node(server_factory, tmp_path_factory, None, "solo")
    run_id = start(s, "echo", {"input": 1})
    assert re.match(r"^run_[0-9a-f]{32}$", run_id)
    assert requests.get(f"{s.url}/runs/{run_id}", headers=key(ALICE),
                        timeout=10).status_code == 200
    # a fleet id is only an id: nothing to forward to
    assert_error(requests.get(f"{s.url}/runs/{run_id}_abcdef", headers=key(ALICE), timeout=10),
                 404, "run_not_found")
    with open(f"/proc/{s.proc.pid}/maps") as f:
        assert "libpq" not in f.read()
    m = requests.get(f"{s.url}/metrics", headers=key(ADMIN), timeout=10).text
    assert "par_fleet_forwards_total" not in m


@pytest.mark.skipif(os.environ.get("BENCH_SMOKE") != "1", reason="a measurement: BENCH_SMOKE=1")
def test_forwarding_overhead_smoke(fleet):
    """docs/fleet.md's numbers: GET /runs/{id} direct vs forwarded (one
    client, keep-alive), and a stream's events/s direct vs forwarded."""
    a, b = fleet
    run_id = start(a, "echo", {"input": 1})
    lat = {"direct": [], "forwarded": []}
    with requests.Session() as sess:
        for _ in range(5):  # interleaved rounds: the machine is shared
            for name, s in (("direct", a), ("forwarded", b)):
                for i in range(110):
                    t = time.perf_counter()
                    assert sess.get(f"{s.url}/runs/{run_id}", headers=key(ALICE),
                                    timeout=10).status_code == 200
                    if i >= 10:
                        lat[name].append(time.perf_counter() - t)
    out = {}
    for name, v in lat.items():
        v.sort()
        out[name] = (v[len(v) // 2] * 1e3, v[int(len(v) * 0.99)] * 1e3)
    n = 20000
    stream_id = start(a, "ticker", {"input": {"n": n, "ms": 0}})
    requests.get(f"{a.url}/runs/{stream_id}/wait", headers=key(ALICE), timeout=60)
    rates = {}
    for name, s in (("direct", a), ("forwarded", b)):
        t = time.perf_counter()
        r = requests.get(f"{s.url}/runs/{stream_id}/stream", headers=key(ALICE), stream=True,
                         timeout=60)
        count = sum(1 for line in r.iter_lines() if line.startswith(b"id: "))
        rates[name] = count / (time.perf_counter() - t)
        assert count == n + 2
    print(f"\nGET /runs/{{id}} p50/p99 ms: direct {out['direct'][0]:.2f}/{out['direct'][1]:.2f}, "
          f"forwarded {out['forwarded'][0]:.2f}/{out['forwarded'][1]:.2f}; "
          f"replayed stream events/s: direct {rates['direct']:.0f}, "
          f"forwarded {rates['forwarded']:.0f}")


def test_fleet_settings_are_checked(tmp_path):
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\nfleet:\n  postgres: 'postgresql://par@127.0.0.1:1/par'\n"
                    "  advertise_url: 'ftp://10.0.0.5/x'\n  heartbeat_ms: 2000\n"
                    "  dead_after_ms: 3000\n")
    r = run("config", "check", str(conf))
    assert r.returncode == 2
    assert "fleet.advertise_url: 'ftp://10.0.0.5/x' is not http://HOST:PORT" in r.stderr
    assert "fleet.dead_after_ms (3000) must be at least two fleet.heartbeat_ms (2000)" in r.stderr
    conf.write_text("auth: {mode: off}\nfleet:\n  postgres: 'postgresql://par@127.0.0.1:1/par'\n"
                    "  advertise_url: 'http://10.0.0.5:8080/'\n")
    r = run("config", "check", str(conf))
    assert r.returncode == 0, r.stderr


def test_nodes_silent_for_a_day_are_forgotten(fleet, pg):
    a, b = fleet
    pg.psql("INSERT INTO par_nodes (node_id, tag, advertise_url, started_at, heartbeat_at)"
            " VALUES ('node-gone', 'zzzzzz', 'http://127.0.0.1:9', now() - interval '3 days',"
            " now() - interval '25 hours'),"
            " ('node-away', 'yyyyyy', 'http://127.0.0.1:9', now() - interval '3 days',"
            " now() - interval '1 hour')")
    # the next heartbeat of any node removes the day-old row, keeps the hour-old one
    deadline = time.time() + 10
    while time.time() < deadline:
        ids = {r[0] for r in pg.psql("SELECT node_id FROM par_nodes")}
        if "node-gone" not in ids:
            break
        time.sleep(0.05)
    assert "node-gone" not in ids and {"node-away", "node-a", "node-b"} <= ids, ids
    time.sleep(2 * HEARTBEAT_MS / 1000)  # every node's snapshot has it too
    # a run of the forgotten node: unknown, like any id no node owns
    r = requests.get(f"{b.url}/runs/run_{'0' * 31}1_zzzzzz", headers=key(ALICE), timeout=15)
    assert_error(r, 404, "run_not_found")
    # a run of the node only dead for an hour still reads interrupted
    r = requests.get(f"{b.url}/runs/run_{'0' * 31}1_yyyyyy", headers=key(ALICE), timeout=15)
    assert r.status_code == 503 and r.json()["error"] == "interrupted", r.text
    pg.psql("DELETE FROM par_nodes WHERE node_id = 'node-away'")
