"""Billing at the speed PAR serves: the aggregated, pipelined export to a
Stripe-compatible meter events endpoint (docs/observability.md).

The recording endpoint (meter_server.py, shared with the fleet suite) behaves
like Stripe: an identifier seen before is answered with the event already
recorded, never counted twice; it answers after a delay, several requests at a
time, and can be told to refuse, fail or throttle."""
import json
import os
import random
import re
import signal
import sqlite3
import threading
import time
import uuid

import pytest
import requests

from conftest import Server, package
from meter_server import Meter
from test_metering import ACME, call, config, records, usage, wait_for

GLOBEX = "k-globex-" + "c" * 24
REFUSED = "k-refused-" + "d" * 24
CUSTOMERS = {"acme": "cus_acme", "globex": "cus_globex", "initech": "cus_refused"}


@pytest.fixture
def meter():
    m = Meter()
    yield m
    m.close()


@pytest.fixture(autouse=True)
def stripe_key(monkeypatch):
    monkeypatch.setenv("PAR_TEST_STRIPE_KEY", "sk_test_par")


def conf(tmp, url, window="1s", grace="500ms", extra="", metering=""):
    return config(tmp, f"""{metering}\
  stripe:
    api_key_env: PAR_TEST_STRIPE_KEY
    endpoint: {url}
    allow_http: true
    timeout_ms: 500
    backoff_min_ms: 20
    backoff_max_ms: 200
    event_name: agent_invocations
    customer_field: tenant
    customers: {{acme: cus_acme, globex: cus_globex, initech: cus_refused}}
    value: units.characters
    aggregate: {{window: {window}, grace: {grace}}}
{extra}""")


def expected_sums(s):
    """What the usage records bill: (customer, event) → summed characters."""
    out = {}
    for x in records(s, "parent_id = '' AND status = 'ok'"):
        c = CUSTOMERS.get(x["tenant"])
        if c is None or c == "cus_refused" or not x["units"]:
            continue
        v = json.loads(x["units"]).get("characters", 0)
        if v:
            out[(c, "agent_invocations")] = out.get((c, "agent_invocations"), 0) + v
    return out


def drained(s):
    e = usage(s)["export"]
    return e["pending"] == 0 and e["windows_pending"] == 0


def insert_records(s, records, tenant="acme"):
    """Committed records with chosen times ((ts_ms, chars) each, in one
    transaction), as records recovered after a crash would be: the exporter
    must bill them whatever their age."""
    db = sqlite3.connect(os.path.join(s.tmp, "var", "usage.db"), timeout=30)
    try:
        for ts_ms, chars in records:
            rid = uuid.uuid4().hex
            db.execute(
                "INSERT INTO usage (id, ts_ms, request_id, trace_id, span_id, parent_id, root_id,"
                " subject, tenant, agent, package, version, status, duration_ms, cpu_ms,"
                " bytes_in, bytes_out, units) VALUES (?, ?, ?, '', '', '', ?, 'x', ?,"
                " 'echo/shout', 'echo', '1.0.0', 'ok', 1, 1, 1, 1, ?)",
                (rid, ts_ms, "late-" + rid, rid, tenant, json.dumps({"characters": chars})))
        db.commit()
    finally:
        db.close()


# ---- aggregation -----------------------------------------------------------------------

def test_one_event_per_customer_and_window_with_the_exact_sum(server_factory, tmp_path, meter):
    s = server_factory([package("echo")], args=["--config", conf(tmp_path, meter.url)])
    t_end = time.time() + 2.5
    i = 0
    while time.time() < t_end:
        key = ACME if i % 3 else GLOBEX
        assert call(s, "echo/shout", key, {"input": "z" * (i % 7 + 1)}).status_code == 200
        i += 1
    wait_for(lambda: drained(s), what="every window to be sent")
    assert not meter.conflicts
    roots = records(s, "parent_id = ''")
    assert len(roots) == i
    assert meter.sums() == expected_sums(s)
    # one event per (customer, window): far fewer than records
    windows = {(x["tenant"], x["ts_ms"] // 1000) for x in roots}
    assert len(meter.events) == len(windows) < i
    for ident, f in meter.events.items():
        m = re.fullmatch(r"w(\d+)-0-[0-9a-f]{32}", ident)
        assert m, ident
        assert f["timestamp"] == m.group(1)  # the window's start
        ws = int(m.group(1)) * 1000
        cust = {"cus_acme": "acme", "cus_globex": "globex"}[f["payload[stripe_customer_id]"]]
        assert int(f["payload[value]"]) == sum(
            json.loads(x["units"])["characters"] for x in roots
            if x["tenant"] == cust and ws <= x["ts_ms"] < ws + 1000)
    u = usage(s)["export"]
    assert u["exported"] == i and u["dead"] == 0 and u["pending"] == 0
    assert u["oldest_unexported_ms"] is None
    assert u["last_window_sent"] == max(x["ts_ms"] // 1000 for x in roots) * 1000
    assert u["rate_per_s"] > 0 and u["aggregate"] is True
    m = s.get("/metrics").text
    assert re.search(r'^par_metering_export_total\{result="ok"\} %d$' % len(meter.events), m,
                     re.M)


def test_window_edges_and_late_records(server_factory, tmp_path, meter):
    s = server_factory([package("echo")],
                       args=["--config", conf(tmp_path, meter.url, window="10s", grace="0s")])
    now = int(time.time() * 1000)
    w0 = (now // 10000 - 6) * 10000  # a window that closed a minute ago
    insert_records(s, [(w0 - 1, 1),          # the last millisecond of the window before
                       (w0, 2),              # the first of this one
                       (w0 + 9999, 4)])      # its last
    wait_for(lambda: drained(s), what="the windows")
    ev = {f["timestamp"]: f for f in meter.events.values()}
    assert {k: int(f["payload[value]"]) for k, f in ev.items()} == {
        str(w0 // 1000 - 10): 1, str(w0 // 1000): 6}
    first = {i for i in meter.events}
    # late: a record for a window already sent is billed as an event of its own
    # (in one commit: the exporter may run between two, and the second would
    # then be a late part of its own)
    insert_records(s, [(w0 + 5000, 8), (w0 + 6000, 16)])
    wait_for(lambda: drained(s) and len(meter.events) == 3, what="the late event")
    (late,) = set(meter.events) - first
    assert re.fullmatch(r"w%d-1-[0-9a-f]{32}" % (w0 // 1000), late)
    assert meter.events[late]["payload[value]"] == "24"
    assert meter.events[late]["timestamp"] == str(w0 // 1000)
    assert meter.sums() == expected_sums(s) and not meter.conflicts


def test_two_nodes_never_share_an_identifier(tmp_path, meter):
    servers = []
    try:
        for n in range(2):
            d = tmp_path / f"node{n}"
            d.mkdir()
            servers.append(Server(str(d), [package("echo")],
                                  args=["--config", conf(d, meter.url, window="2s")]))
        for s in servers:
            for i in range(5):
                assert call(s, "echo/shout", ACME, {"input": "abc"}).status_code == 200
        for s in servers:
            wait_for(lambda: drained(s), what="the export")
        ids = [set(), set()]
        # each node's windows carry its own node id in the identifier's hash
        assert sum(int(f["payload[value]"]) for f in meter.events.values()) == 2 * 5 * 5
        assert len(meter.events) >= 2 and not meter.conflicts
        db = [sqlite3.connect(os.path.join(s.tmp, "var", "usage.db")) for s in servers]
        for n in range(2):
            ids[n] = {r[0] for r in db[n].execute("SELECT identifier FROM export_windows")}
            db[n].close()
        assert ids[0] and ids[1] and not ids[0] & ids[1]
    finally:
        for s in servers:
            s.stop()


# ---- failures --------------------------------------------------------------------------

def test_retry_after_is_honoured_and_failures_retried(server_factory, tmp_path, meter):
    meter.plan = [(429, 2), 500, 503, "slow"]
    s = server_factory([package("echo")],
                       args=["--config", conf(tmp_path, meter.url, extra="    concurrency: 1\n")])
    assert call(s, "echo/shout", ACME, {"input": "abcd"}).status_code == 200
    wait_for(lambda: drained(s), what="the export")
    posts = list(meter.posts)
    assert posts[0][1] == 429
    assert posts[1][0] - posts[0][0] >= 1.9, "the next request came before Retry-After"
    assert len(meter.events) == 1 and meter.sums() == {("cus_acme", "agent_invocations"): len('"abcd"')}
    m = s.get("/metrics").text
    assert float(re.search(r'^par_metering_export_total\{result="retry"\} (\S+)$', m,
                           re.M).group(1)) >= 4


def test_permanent_refusal_is_a_dead_letter_with_its_window(server_factory, tmp_path, meter):
    s = server_factory([package("echo")], args=["--config", conf(tmp_path, meter.url)])
    assert call(s, "echo/shout", REFUSED, {"input": "abc"}).status_code == 200
    assert call(s, "echo/shout", REFUSED, {"input": "de"}).status_code == 200
    assert call(s, "echo/shout", ACME, {"input": "fine"}).status_code == 200
    wait_for(lambda: drained(s), what="the export")
    u = usage(s)
    dead = [d for d in u["dead_letters"] if "window_start" in d]
    assert dead, u["dead_letters"]
    assert sum(d["records"] for d in dead) == 2
    assert sum(d["value"] for d in dead) == len('"abc"') + len('"de"')
    for d in dead:
        assert d["http_status"] == 400 and "No such customer" in d["body"]
        assert d["customer"] == "cus_refused" and d["event"] == "agent_invocations"
        assert d["window_ms"] == 1000 and d["window_start"] % 1000 == 0
        assert re.fullmatch(r"w\d+-0-[0-9a-f]{32}", d["id"])
    assert u["export"]["dead"] == 2 and u["export"]["exported"] == 1
    assert meter.sums() == {("cus_acme", "agent_invocations"): len('"fine"')}


# ---- sustained load, kill -9, restarts -------------------------------------------------

LOAD_SECONDS = 30  # sustained load with kill -9 at random moments


def load(s, stop, count, tenant_keys):
    sess = requests.Session()
    i = 0
    while not stop.is_set():
        key = tenant_keys[i % len(tenant_keys)]
        i += 1
        try:
            r = sess.post(f"{s.url}/agents/echo/shout/invoke",
                          data=json.dumps({"input": "q" * (i % 5 + 1)}), timeout=10,
                          headers={"X-API-Key": key, "content-type": "application/json"})
        except requests.RequestException:
            return  # the server was killed
        if r.status_code == 200:
            count.append(1)


def test_sustained_load_with_kill_9_bills_exactly(tmp_path):
    meter = Meter(delay=0.05)
    c = conf(tmp_path, meter.url, window="1s", grace="500ms")
    rng = random.Random(7)
    samples = []  # (time, pending) while the load runs
    kills = 0
    try:
        t0 = time.time()
        while time.time() - t0 < LOAD_SECONDS:
            s = Server(str(tmp_path), [package("echo")], args=["--config", c])
            s.killed = True
            stop, count, threads = threading.Event(), [], []
            for t in range(3):
                th = threading.Thread(target=load, args=(s, stop, count, [ACME, GLOBEX]))
                th.start()
                threads.append(th)
            run_for = min(rng.uniform(2.0, 4.5), LOAD_SECONDS - (time.time() - t0) + 0.5)
            t_run = time.time()
            while time.time() - t_run < run_for:
                time.sleep(0.25)
                try:
                    samples.append((time.time() - t0, usage(s)["export"]["pending"]))
                except requests.RequestException:
                    pass
            if time.time() - t0 < LOAD_SECONDS:
                s.proc.send_signal(signal.SIGKILL)  # at a random moment of the export
                s.proc.wait()
                kills += 1
            stop.set()
            for th in threads:
                th.join()
            s.stop()
        assert kills >= 2
        s = Server(str(tmp_path), [package("echo")], args=["--config", c])
        try:
            wait_for(lambda: drained(s), timeout=60, what="the backlog to drain")
            assert not meter.conflicts, meter.conflicts[:3]
            want = expected_sums(s)
            assert meter.sums() == want
            assert sum(want.values()) > 500
            n = len(records(s, "parent_id = ''"))
        finally:
            s.stop()
        # bounded: after the first windows, the backlog is at most what ~3 windows hold
        rate = n / LOAD_SECONDS
        late = [p for t, p in samples if t > 3]
        assert late and max(late) <= max(200, rate * 4), (max(late), rate)
    finally:
        meter.close()


# ---- retention -------------------------------------------------------------------------

def db_path(s):
    return os.path.join(s.tmp, "var", "usage.db")


def test_retention_prunes_exported_keeps_unexported_and_rollups_answer(server_factory, tmp_path,
                                                                         meter):
    meter.plan = [503] * 100000  # the endpoint is down: nothing can be exported
    c = conf(tmp_path, meter.url, metering="  retention: 2s\n")
    s = server_factory([package("echo"), package("whoami")], args=["--config", c])
    for i in range(20):
        assert call(s, "echo/shout", ACME if i % 2 else GLOBEX,
                    {"input": "x" * (i + 1)}).status_code == 200
    assert call(s, "whoami/via", ACME, {"input": 1}).status_code == 200
    before = {q: usage(s, q) for q in ("", "?group_by=agent", "?group_by=tenant")}
    n = len(records(s))
    assert n == 2 * 20 + 2
    time.sleep(4)  # twice the retention, several maintenance passes
    # hop records are never exported: rolled up, they go; unexported roots stay
    assert len(records(s, "parent_id = ''")) == 21
    assert usage(s)["export"]["pending"] == 21 - 1  # whoami/via reports no characters
    with meter.lock:
        meter.plan.clear()
    wait_for(lambda: drained(s), what="the export")
    try:
        wait_for(lambda: records(s) == [], what="retention to delete the exported records")
    except AssertionError:
        db = sqlite3.connect(db_path(s))
        print("LEFT", [r[:3] for r in db.execute("SELECT seq, ts_ms, parent_id FROM usage")],
              list(db.execute("SELECT * FROM export_cursor")),
              list(db.execute("SELECT wid, state, first_seq, last_seq FROM export_windows")),
              list(db.execute("SELECT * FROM usage_meta")), time.time())
        raise
    for q, old in before.items():
        new = usage(s, q)
        assert new["total"] == old["total"], q
        assert len(new["groups"]) == len(old["groups"]) > 0
        for a, b in zip(new["groups"], old["groups"]):
            for k in b:  # counts, bytes and units exactly; sums of reals to rounding
                want = pytest.approx(b[k], rel=1e-9) if isinstance(b[k], float) else b[k]
                assert a[k] == want, (q, k)
    assert meter.sums() == {("cus_acme", "agent_invocations"):
                            sum(len(json.dumps("x" * (i + 1))) for i in range(20) if i % 2),
                            ("cus_globex", "agent_invocations"):
                            sum(len(json.dumps("x" * (i + 1))) for i in range(20) if not i % 2)}
    m = s.get("/metrics").text
    assert int(re.search(r"^par_metering_pruned_records_total (\d+)$", m, re.M).group(1)) == n
    assert int(re.search(r"^par_metering_db_bytes (\d+)$", m, re.M).group(1)) > 0
    assert re.search(r"^par_metering_oldest_unexported_seconds 0\.000$", m, re.M)
    db = sqlite3.connect(db_path(s))
    try:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    finally:
        db.close()


def test_file_stops_growing_under_steady_load(server_factory, tmp_path):
    c = config(tmp_path, "  retention: 2s\n")
    s = server_factory([package("echo")], args=["--config", c])
    stop, count, threads = threading.Event(), [], []
    for t in range(2):
        th = threading.Thread(target=load, args=(s, stop, count, [ACME]))
        th.start()
        threads.append(th)
    sizes = []
    try:
        t0 = time.time()
        while time.time() - t0 < 18:
            time.sleep(0.5)
            sizes.append((time.time() - t0, os.path.getsize(db_path(s)), len(count)))
    finally:
        stop.set()
        for th in threads:
            th.join()
    total = len(count)
    assert total > 1000, "too little load to tell"
    mid = max(sz for t, sz, _ in sizes if 6 <= t < 12)
    end = max(sz for t, sz, _ in sizes if t >= 12)
    # records keep coming; the file does not grow with them once retention deletes
    # (a margin for maintenance passes that a loaded machine delays)
    assert end <= mid * 1.25 + 131072, sizes
    late = [n for t, _, n in sizes if t >= 6]
    assert late[-1] - late[0] > 300, "the load stopped: nothing was tested"
