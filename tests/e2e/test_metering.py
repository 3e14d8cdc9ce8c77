"""Trace context across sub-agent calls, usage records in SQLite (durable
before the answer, even across kill -9), /runtime/usage, and the export of
records to a Stripe-compatible meter events endpoint."""
import hashlib
import json
import os
import re
import signal
import sqlite3
import threading
import time

import pytest
import requests

from conftest import Server, assert_error, package
from meter_server import Meter

ADMIN = "k-admin-" + "a" * 24
KEYS = {  # key → (subject, tenant)
    "k-acme-" + "b" * 24: ("alice", "acme"),
    "k-globex-" + "c" * 24: ("bob", "globex"),
    "k-refused-" + "d" * 24: ("carol", "initech"),
    "k-nomap-" + "e" * 24: ("dave", "umbrella"),
}
ACME = "k-acme-" + "b" * 24


def sha(k):
    return hashlib.sha256(k.encode()).hexdigest()


def config(tmp, metering="", trusted=False):
    keys = "".join(f"""\
    - sha256: {sha(k)}
      subject: {s}
      tenant: {t}
      permissions: [agents:invoke]
""" for k, (s, t) in KEYS.items())
    path = os.path.join(str(tmp), "par.yaml")
    with open(path, "w") as f:
        f.write(f"""\
trust: {{require_signatures: false}}
auth:
  mode: api_key
  open_paths: [/runtime/health, /runtime/ready, /metrics]
  api_keys:
    - sha256: {sha(ADMIN)}
      subject: ops
      permissions: [runtime:admin, agents:invoke]
{keys}metering:
  enabled: true
{metering}""")
    return path


def call(s, agent, key, body=None, rid=None, headers=None):
    h = {"X-API-Key": key}
    if rid:
        h["X-Request-ID"] = rid
    h.update(headers or {})
    return s.post(agent, body if body is not None else {"input": "hi"}, headers=h)


def records(s, where="1", args=()):
    db = sqlite3.connect(os.path.join(s.tmp, "var", "usage.db"), timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(f"SELECT * FROM usage WHERE {where} ORDER BY seq",
                                            args)]
    finally:
        db.close()


def usage(s, query=""):
    r = s.get("/runtime/usage" + query, headers={"X-API-Key": ADMIN})
    assert r.status_code == 200, r.text
    return r.json()


# ---- trace context -----------------------------------------------------------------------

@pytest.mark.parametrize("trusted", [False, True], ids=["worker", "in-process"])
def test_trace_context_across_a_sub_agent_chain(server_factory, tmp_path, trusted):
    args = ["--config", config(tmp_path)] + (["--trusted", "whoami"] if trusted else [])
    s = server_factory([package("whoami")], args=args)
    trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = call(s, "whoami/via", ACME, rid="chain-1",
             headers={"traceparent": f"00-{trace}-{parent}-01"})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "chain-1"
    out = r.json()["output"]
    outer, inner = out["outer"], out["inner"]
    assert outer["trace_id"] == inner["trace_id"] == trace == r.json()["trace_id"]
    assert re.fullmatch(r"[0-9a-f]{16}", outer["span_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", inner["span_id"])
    assert len({outer["span_id"], inner["span_id"], parent}) == 3
    assert r.headers["traceparent"] == f"00-{trace}-{outer['span_id']}-01"

    # the access line is written just after the answer: wait for it
    lines = wait_for(lambda: [l for l in s.lines() if l.get("request_id") == "chain-1"
                              and l.get("msg") == "request"] and
                     [l for l in s.lines() if l.get("request_id") == "chain-1"],
                     what="the access log line")
    assert all("raw" not in l for l in s.lines()), "every log line is JSON"
    access = [l for l in lines if l.get("msg") == "request"]
    hop = [l for l in lines if l.get("msg") == "sub-agent call"]
    assert len(access) == 1 and len(hop) == 1, lines
    a, h = access[0], hop[0]
    assert a["trace_id"] == h["trace_id"] == trace
    assert a["span_id"] == outer["span_id"] and a["parent_span_id"] == parent
    assert h["span_id"] == inner["span_id"] and h["parent_span_id"] == outer["span_id"]
    assert a["subject"] == h["subject"] == "alice"
    assert a["agent"] == "whoami/via" and a["package"] == "whoami" and a["version"] == "0.1.0"
    assert a["status"] == 200 and h["status"] == "ok"
    assert a["duration_ms"] >= h["duration_ms"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", a["ts"])

    # a malformed traceparent is ignored; a fresh trace id is generated
    r = call(s, "whoami", ACME, headers={"traceparent": "00-" + "0" * 32 + "-" + parent + "-01"})
    assert r.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", r.json()["trace_id"]) and r.json()["trace_id"] != "0" * 32
    # without one, every request gets its own trace
    t1 = call(s, "whoami", ACME).json()["trace_id"]
    t2 = call(s, "whoami", ACME).json()["trace_id"]
    assert t1 != t2


# ---- usage records ---------------------------------------------------------------------

def test_every_invocation_has_one_record(server_factory, tmp_path):
    s = server_factory([package("echo"), package("whoami"), package("faulty")],
                       args=["--config", config(tmp_path)])
    t0 = time.time() * 1000
    n = 12
    for i in range(n):
        body = {"input": {"text": "x" * i}}
        assert call(s, "echo/shout", ACME, body, rid=f"echo-{i}").status_code == 200
    r = call(s, "whoami/via", "k-globex-" + "c" * 24, {"input": 5}, rid="via-1")
    assert r.status_code == 200
    assert r.json()["metadata"]["units"] == {"tokens": 10}
    assert_error(call(s, "faulty/fail", ADMIN, {"input": 1}, rid="fail-1"), 500, "agent_error")
    t1 = time.time() * 1000

    recs = records(s)
    assert len(recs) == 2 * n + 3  # shout and its upper hop ×n, via and its hop, the failure
    assert len({x["id"] for x in recs}) == len(recs)
    for i in range(n):
        x, hop = [x for x in recs if x["request_id"] == f"echo-{i}"]
        if x["parent_id"]:
            x, hop = hop, x
        assert hop["agent"] == "echo/upper" and hop["parent_id"] == x["id"]
        body = json.dumps({"text": "x" * i})  # the raw input, as sent
        assert x["agent"] == "echo/shout" and x["package"] == "echo" and x["version"] == "1.0.0"
        assert x["status"] == "ok" and x["subject"] == "alice" and x["tenant"] == "acme"
        assert x["parent_id"] == "" and x["root_id"] == x["id"]
        assert t0 - 1000 <= x["ts_ms"] <= t1 + 1000
        assert 0 < x["duration_ms"] < 5000 and x["cpu_ms"] is not None and x["cpu_ms"] >= 0
        assert x["bytes_in"] == len(body) and x["bytes_out"] == len(body)
        assert json.loads(x["units"]) == {"characters": len(body)}  # the hop's, rolled up
        assert json.loads(hop["units"]) == {"characters": len(body)}
        assert re.fullmatch(r"[0-9a-f]{32}", x["id"])
    root, hop = [x for x in recs if x["request_id"] == "via-1"]
    if root["parent_id"]:
        root, hop = hop, root
    assert root["agent"] == "whoami/via" and hop["agent"] == "whoami/inner"
    assert root["parent_id"] == "" and hop["parent_id"] == root["id"]
    assert hop["root_id"] == root["id"] == root["root_id"]
    assert hop["trace_id"] == root["trace_id"] and hop["span_id"] != root["span_id"]
    assert hop["subject"] == "bob" and hop["tenant"] == "globex"
    assert json.loads(root["units"]) == {"tokens": 10} and json.loads(hop["units"]) == {"tokens": 7}
    (fail,) = [x for x in recs if x["request_id"] == "fail-1"]
    assert fail["status"] == "agent_error" and fail["subject"] == "ops" and fail["units"] is None

    u = usage(s, "?group_by=agent")
    g = {x["key"]: x for x in u["groups"]}
    e = g["echo/shout"]
    assert e["count"] == n and e["errors"] == 0 and e["roots"] == n
    assert e["bytes_in"] == e["units"]["characters"] > 0
    assert g["whoami/via"]["units"] == {"tokens": 10}
    assert g["whoami/inner"]["count"] == 1 and g["whoami/inner"]["units"] == {}  # in its root
    assert g["echo/upper"]["count"] == n and g["echo/upper"]["roots"] == 0
    assert g["faulty/fail"]["errors"] == 1
    assert u["total"] == {"count": 2 * n + 3, "errors": 1, "roots": n + 2}
    assert u["export"]["enabled"] is False and u["dead_letters"] == []
    g = {x["key"]: x for x in usage(s, "?group_by=subject")["groups"]}
    assert g["alice"]["count"] == 2 * n and g["bob"]["count"] == 2 and g["ops"]["count"] == 1
    # the time window
    assert usage(s, f"?from={int(t1) + 5000}")["total"]["count"] == 0
    assert usage(s, f"?from={int(t0) - 1000}&to={int(t1) + 1000}")["total"]["count"] == 2 * n + 3
    # bad queries, and the permission
    r = s.get("/runtime/usage?group_by=colour", headers={"X-API-Key": ADMIN})
    assert_error(r, 400, "bad_request")
    assert_error(s.get("/runtime/usage?from=yesterday", headers={"X-API-Key": ADMIN}), 400,
                 "bad_request")
    assert_error(s.get("/runtime/usage", headers={"X-API-Key": ACME}), 403, "forbidden")


def test_metering_off_has_no_usage_route(server_factory):
    s = server_factory([package("echo")])
    assert s.post("echo", {"input": 1}).status_code == 200
    assert_error(s.get("/runtime/usage"), 404, "not_found")


def load(s, stop, ok_ids, prefix):
    """Sends echo requests until told to stop; remembers the ids answered 200."""
    sess = requests.Session()
    i = 0
    while not stop.is_set():
        rid = f"{prefix}-{i}"
        i += 1
        try:
            r = sess.post(f"{s.url}/agents/echo/invoke", data='{"input":"x"}', timeout=10,
                          headers={"X-API-Key": ACME, "X-Request-ID": rid,
                                   "content-type": "application/json"})
        except requests.RequestException:
            return
        if r.status_code == 200:
            assert r.headers["x-request-id"] == rid
            ok_ids.append(rid)


def test_kill_9_during_load_loses_no_answered_request(tmp_path):
    conf = config(tmp_path)
    s = Server(str(tmp_path), [package("echo")], args=["--config", conf])
    s.killed = True
    stop, ok_ids, threads = threading.Event(), [], []
    try:
        for t in range(6):
            th = threading.Thread(target=load, args=(s, stop, ok_ids, f"c{t}"))
            th.start()
            threads.append(th)
        deadline = time.time() + 30
        while len(ok_ids) < 300 and time.time() < deadline:
            time.sleep(0.05)
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
    finally:
        stop.set()
        for th in threads:
            th.join()
        s.stop()
    assert len(ok_ids) >= 300
    s2 = Server(str(tmp_path), [package("echo")], args=["--config", conf])
    try:
        assert call(s2, "echo", ACME, rid="after").status_code == 200
        recs = records(s2, "parent_id = ''")
        by_rid = {}
        for x in recs:
            by_rid[x["request_id"]] = by_rid.get(x["request_id"], 0) + 1
        missing = [r for r in ok_ids if by_rid.get(r) != 1]
        assert not missing, f"{len(missing)} answered requests without exactly one record"
        assert len({x["id"] for x in recs}) == len(recs)
        assert usage(s2)["total"]["count"] == len(recs)
    finally:
        s2.stop()


@pytest.mark.parametrize("durability", ["answered", "async"])
def test_durability_decides_whether_an_answer_waits_for_its_record(server_factory, tmp_path,
                                                                    durability):
    # Another process holds the database's write lock for 2 s: with `answered`
    # (the default) the answer waits until its record is committed after it;
    # with `async` it leaves at once and the record follows. Both are recorded.
    s = server_factory([package("echo")],
                       args=["--config", config(tmp_path, f"  durability: {durability}\n")])
    assert call(s, "echo", ACME, rid="warm").status_code == 200
    db = sqlite3.connect(os.path.join(s.tmp, "var", "usage.db"), timeout=30,
                         isolation_level=None, check_same_thread=False)
    db.execute("BEGIN IMMEDIATE")
    release = threading.Timer(2.0, lambda: db.execute("COMMIT"))
    release.start()
    try:
        t0 = time.monotonic()
        assert call(s, "echo", ACME, rid="held").status_code == 200
        took = time.monotonic() - t0
    finally:
        release.join()
        db.close()
    if durability == "answered":
        assert took >= 1.5, f"answered in {took:.2f} s while its record could not be written"
    else:
        assert took < 1.0, f"async mode waited {took:.2f} s for the database"
    deadline = time.time() + 10
    while not records(s, "request_id = 'held'"):
        assert time.time() < deadline, "the record never arrived"
        time.sleep(0.05)


# ---- export to a Stripe-compatible endpoint --------------------------------------------

@pytest.fixture
def meter():
    m = Meter()
    yield m
    m.close()


def stripe_conf(url, extra=""):
    return f"""\
  stripe:
    api_key_env: PAR_TEST_STRIPE_KEY
    endpoint: {url}/
    allow_http: true
    timeout_ms: 500
    backoff_min_ms: 20
    backoff_max_ms: 200
    event_name: agent_invocations
    event_names: {{"whoami/via": chained_calls}}
    customer_field: tenant
    customers: {{acme: cus_acme, globex: cus_globex, initech: cus_refused}}
    value: units.characters
    aggregate: off
{extra}"""


def wait_for(pred, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def stripe_key(monkeypatch):
    monkeypatch.setenv("PAR_TEST_STRIPE_KEY", "sk_test_par")


def test_export_sends_every_record_once_with_retries(server_factory, tmp_path, meter,
                                                     stripe_key):
    meter.plan = [500, 500, 503, None, "slow", None, 429]
    s = server_factory([package("echo"), package("whoami")],
                       args=["--config", config(tmp_path, stripe_conf(meter.url))])
    n = 20
    for i in range(n):
        body = {"input": "y" * (i + 1)}
        assert call(s, "echo/shout", ACME if i % 2 else "k-globex-" + "c" * 24,
                    body).status_code == 200
    assert call(s, "whoami/via", ACME, {"input": 1}).status_code == 200  # no characters: skipped
    roots = records(s, "parent_id = '' AND agent = 'echo/shout'")
    assert len(roots) == n
    wait_for(lambda: len(meter.events) == n, what="every record at the endpoint")
    wait_for(lambda: usage(s)["export"]["pending"] == 0, what="the cursor to catch up")
    assert sorted(meter.identifiers()) == sorted(x["id"] for x in roots)  # each once, none re-sent
    for x in roots:
        ev = meter.events[x["id"]]
        assert ev["event_name"] == "agent_invocations"
        assert ev["payload[stripe_customer_id]"] == {"acme": "cus_acme",
                                                       "globex": "cus_globex"}[x["tenant"]]
        assert ev["payload[value]"] == str(json.loads(x["units"])["characters"])
        assert int(ev["timestamp"]) == x["ts_ms"] // 1000
    st = usage(s)["export"]
    assert st["exported"] == n + 1 and st["dead"] == 0 and st["last_error"] == ""
    m = s.get("/metrics").text
    assert re.search(r'^par_metering_export_total\{result="ok"\} 20$', m, re.M)
    assert re.search(r'^par_metering_export_total\{result="skipped"\} 1$', m, re.M)
    retries = float(re.search(r'^par_metering_export_total\{result="retry"\} (\S+)$', m,
                              re.M).group(1))
    assert retries >= 5  # three 5xx, the timeout, the 429
    assert re.search(r"^par_metering_backlog_records 0$", m, re.M)


def test_permanent_refusals_go_to_dead_letters(server_factory, tmp_path, meter, stripe_key):
    s = server_factory([package("echo")],
                       args=["--config", config(tmp_path, stripe_conf(meter.url))])
    assert call(s, "echo/shout", "k-refused-" + "d" * 24, rid="refused").status_code == 200
    assert call(s, "echo/shout", "k-nomap-" + "e" * 24, rid="unmapped").status_code == 200
    assert call(s, "echo/shout", ACME, rid="fine").status_code == 200
    wait_for(lambda: usage(s)["export"]["pending"] == 0, what="the export")
    u = usage(s)
    ids = {x["request_id"]: x["id"] for x in records(s)}
    dead = {d["id"]: d for d in u["dead_letters"]}
    assert set(dead) == {ids["refused"], ids["unmapped"]}
    assert dead[ids["refused"]]["http_status"] == 400
    assert "No such customer" in dead[ids["refused"]]["body"]
    assert dead[ids["unmapped"]]["http_status"] == 422
    assert "umbrella" in dead[ids["unmapped"]]["body"]
    assert list(meter.events) == [ids["fine"]]
    assert u["export"]["dead"] == 2 and u["export"]["exported"] == 1


def test_kill_9_during_export_no_duplicates_no_gaps(tmp_path, meter, stripe_key):
    meter.delay = 0.02
    conf = config(tmp_path, stripe_conf(meter.url))
    s = Server(str(tmp_path), [package("echo")], args=["--config", conf])
    s.killed = True
    try:
        for i in range(80):
            assert call(s, "echo/shout", ACME, {"input": f"r{i}"}).status_code == 200
        wait_for(lambda: len(meter.events) >= 10, what="the export to start")
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
    finally:
        s.stop()
    sent_before = len(meter.events)
    assert sent_before < 80, "the export finished before the kill: nothing was tested"
    s2 = Server(str(tmp_path), [package("echo")], args=["--config", conf])
    try:
        roots = records(s2, "parent_id = ''")
        assert len(roots) == 80 and len(records(s2)) == 160
        wait_for(lambda: len(meter.events) == 80, what="the export to resume")
        wait_for(lambda: usage(s2)["export"]["pending"] == 0, what="the cursor")
        assert set(meter.events) == {x["id"] for x in roots}  # no gaps
        accepted = meter.identifiers()
        resent = len(accepted) - len(set(accepted))
        # the sender runs at most 2 x concurrency past the lowest unfinished record, so a
        # crash re-sends at most that many acknowledged past the persisted prefix
        assert resent <= 2 * 8, f"{resent} identifiers sent twice"
        assert usage(s2)["export"]["exported"] == 80
    finally:
        s2.stop()
