"""Shared metering in PostgreSQL (docs/fleet.md): several real `par serve`
nodes with metering.sink: postgres, a real PostgreSQL, and the recording
Stripe endpoint of the billing tests.

What must hold: every node's records land in PostgreSQL exactly once (the
ids there are the union of the nodes' SQLite outboxes, none twice), through
kill -9 of a node while it ships and a PostgreSQL crash; /runtime/usage on
any node answers for the fleet; one node exports to Stripe, another takes
over when it dies, and each record is billed once."""
import json
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time

import pytest
import requests

from conftest import Server, assert_error, package, run
from meter_server import Meter
from pg import Postgres
from test_billing import CUSTOMERS, GLOBEX, conf
from test_metering import ACME, ADMIN, call, config, usage, wait_for

PG_ERRORS = [r"PostgreSQL", r"metering export"]  # logged while PostgreSQL is away


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    p = Postgres(str(tmp_path_factory.mktemp("pg")))
    yield p
    p.close()


@pytest.fixture(autouse=True)
def stripe_key(monkeypatch):
    monkeypatch.setenv("PAR_TEST_STRIPE_KEY", "sk_test_par")


@pytest.fixture
def meter():
    m = Meter()
    yield m
    m.close()


_dbs = [0]


def fresh_db(pg):
    """A database of its own for one test: the tables start empty."""
    _dbs[0] += 1
    name = f"t{_dbs[0]}_{os.getpid()}"
    pg.psql(f"CREATE DATABASE {name}")
    return pg.url.rsplit("/", 1)[0] + "/" + name


def q(url, sql):
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", url, "-c", sql],
                                     capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return [line.split("\t") for line in r.stdout.splitlines() if line]


def node_conf(tmp, name, url, meter_url=None, batch=None, extra_metering=""):
    os.makedirs(tmp, exist_ok=True)
    metering = f"  sink: postgres\n  node_id: {name}\n{extra_metering}"
    if batch:
        metering += f"  ship_batch: {batch}\n"
    fleet = f"fleet:\n  postgres: {url}\n"
    if meter_url:
        return conf(tmp, meter_url, extra=fleet, metering=metering)
    return _plain(tmp, metering, fleet)


def _plain(tmp, metering, fleet):
    path = config(tmp, metering=metering)
    with open(path, "a") as f:
        f.write(fleet)
    return path


def start(tmp, cfg, errors=()):
    os.makedirs(tmp, exist_ok=True)
    return Server(str(tmp), [package("echo")], args=["--config", cfg],
                  expected_errors=list(errors) + PG_ERRORS)


def outbox_ids(s):
    db = sqlite3.connect(os.path.join(s.tmp, "var", "usage.db"), timeout=30)
    try:
        return [r[0] for r in db.execute("SELECT id FROM usage")]
    finally:
        db.close()


def pg_ids(url):
    return [r[0] for r in q(url, "SELECT id FROM par_usage")]


def assert_exactly_once(url, nodes):
    """PostgreSQL holds each record of every node's outbox once, and nothing else."""
    local = [i for s in nodes for i in outbox_ids(s)]
    assert len(local) == len(set(local)), "a record id on two nodes"
    shipped = pg_ids(url)
    assert len(shipped) == len(set(shipped))
    assert set(shipped) == set(local), (len(shipped), len(local))
    return len(local)


def drained(url, nodes):
    return len(pg_ids(url)) == sum(len(outbox_ids(s)) for s in nodes)


def load(s, stop, keys, count):
    sess = requests.Session()
    i = 0
    while not stop.is_set():
        i += 1
        try:
            r = sess.post(f"{s.url}/agents/echo/shout/invoke",
                          data=json.dumps({"input": "q" * (i % 5 + 1)}), timeout=10,
                          headers={"X-API-Key": keys[i % len(keys)],
                                   "content-type": "application/json"})
        except requests.RequestException:
            return  # the node was killed
        if r.status_code == 200:
            count.append(1)


def under_load(nodes, keys, seconds=None):
    stop, count = threading.Event(), []
    threads = [threading.Thread(target=load, args=(s, stop, keys, count)) for s in nodes]
    for t in threads:
        t.start()
    if seconds:
        time.sleep(seconds)
    return stop, threads, count


def finish(stop, threads):
    stop.set()
    for t in threads:
        t.join()


def metric(s, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), s.get("/metrics").text, re.M)
    return float(m.group(1)) if m else None


def kill9(s):
    s.killed = True
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()


def restart(s, cfg, errors=()):
    """The same node (state directory, outbox) started again after a kill."""
    s.stop()  # checks the log of the killed process
    os.rename(s.log_path, s.log_path + f".{time.time()}")
    return start(s.tmp, cfg, errors)


# ---- configuration ----------------------------------------------------------------------

def test_sink_postgres_without_fleet_postgres_is_refused(tmp_path):
    cfg = config(tmp_path, metering="  sink: postgres\n")
    r = run("config", "check", cfg)
    assert r.returncode == 2
    assert "metering.sink: postgres needs fleet.postgres" in r.stdout + r.stderr
    r = run("serve", "--listen", "127.0.0.1:0", "--config", cfg, "--state-dir",
            str(tmp_path / "var"), timeout=30)
    assert r.returncode != 0
    assert "metering.sink: postgres needs fleet.postgres" in r.stdout + r.stderr


def test_unreachable_postgres_at_start_is_logged_and_retried(tmp_path, pg):
    from peers import free_port
    url = f"postgresql://par@127.0.0.1:{free_port()}/par"  # nothing listens
    s = start(tmp_path / "n", _plain(tmp_path, "  sink: postgres\n  node_id: lonely\n",
                                     f"fleet:\n  postgres: {url}\n"))
    try:
        assert call(s, "echo/shout", ACME).status_code == 200  # serving goes on
        wait_for(lambda: (metric(s, "par_usage_ship_failures_total") or 0) >= 2,
                 what="two failed attempts")
        assert metric(s, "par_usage_ship_connected") == 0
        wait_for(lambda: metric(s, "par_usage_ship_pending_records") >= 1,
                 what="the record waiting in the outbox")
        assert metric(s, "par_usage_ship_lag_seconds") > 0
        fail = [l for l in s.lines() if l.get("msg", "").startswith("metering: shipping usage")]
        assert fail and "connecting to fleet.postgres" in fail[0]["error"], fail
        assert fail[0]["retry_in_ms"] > 0
        # the fleet's usage cannot be read: a named error, not this node's alone
        r = s.get("/runtime/usage", headers={"X-API-Key": ADMIN})
        body = assert_error(r, 503, "not_ready")
        assert "fleet.postgres" in body["message"] or "PostgreSQL" in body["message"]
        info = s.get("/runtime/info", headers={"X-API-Key": ADMIN}).json()
        assert info["metering"]["sink"] == "postgres"
        assert info["metering"]["shipping"]["connected"] is False
    finally:
        s.stop()


# ---- shipping ---------------------------------------------------------------------------

def test_every_nodes_records_land_once_and_usage_answers_for_the_fleet(tmp_path, pg):
    url = fresh_db(pg)
    nodes = [start(tmp_path / n, node_conf(tmp_path / n, n, url)) for n in ("a", "b", "c")]
    try:
        # node b serves globex only, a and c acme only
        for i in range(20):
            assert call(nodes[0], "echo/shout", ACME, {"input": "x" * (i % 3 + 1)}).ok
            assert call(nodes[1], "echo/shout", GLOBEX, {"input": "yy"}).ok
            assert call(nodes[2], "echo/shout", ACME).ok
        wait_for(lambda: drained(url, nodes), what="every record in PostgreSQL")
        total = assert_exactly_once(url, nodes)
        by_node = dict((r[0], int(r[1])) for r in q(
            url, "SELECT node_id, count(*) FROM par_usage WHERE parent_id = '' GROUP BY 1"))
        assert by_node == {"a": 20, "b": 20, "c": 20}

        u = usage(nodes[0], "?group_by=tenant")  # node a answers for b and c too
        assert u["source"] == "postgres" and u["node_id"] == "a"
        assert u["total"]["count"] == total and u["total"]["roots"] == 60
        g = {x["key"]: x for x in u["groups"]}
        assert g["globex"]["roots"] == 20 and g["acme"]["roots"] == 40
        assert g["globex"]["count"] + g["acme"]["count"] == total
        db = sqlite3.connect(os.path.join(nodes[1].tmp, "var", "usage.db"))
        chars = sum(json.loads(u)["characters"] for (u,) in db.execute(
            "SELECT units FROM usage WHERE parent_id = '' AND units IS NOT NULL"))
        db.close()
        assert chars > 0 and g["globex"]["units"] == {"characters": chars}  # node b's alone
        # the same answer from every node, and the same shape as a single node's
        for s in nodes[1:]:
            assert usage(s, "?group_by=tenant")["groups"] == u["groups"]
        assert set(u) >= {"from", "to", "group_by", "groups", "total", "queued", "export",
                          "dead_letters", "shipping"}
        assert u["shipping"]["pending"] == 0 and u["shipping"]["connected"] is True
        assert metric(nodes[1], 'par_usage_ship_records_total{result="new"}') == \
            len(outbox_ids(nodes[1]))
        assert metric(nodes[1], "par_usage_ship_lag_seconds") == 0
        r = nodes[0].get("/runtime/usage?group_by=colour", headers={"X-API-Key": ADMIN})
        assert_error(r, 400, "bad_request")
    finally:
        for s in nodes:
            s.stop()


def test_kill_9_while_shipping_loses_and_doubles_nothing(tmp_path, pg):
    url = fresh_db(pg)
    cfgs = [node_conf(tmp_path / n, n, url, batch=1) for n in ("a", "b")]
    nodes = [start(tmp_path / n, c) for n, c in zip(("a", "b"), cfgs)]
    stop, threads, _ = under_load(nodes, [ACME, GLOBEX])
    try:
        wait_for(lambda: len(pg_ids(url)) >= 50, what="shipping under way")
        for round in range(2):  # each node killed while it ships
            victim = round % 2
            # a backlog: the shipper is mid-batch more or less all the time
            wait_for(lambda: (metric(nodes[victim], "par_usage_ship_pending_records") or 0) >= 5,
                     what="a shipping backlog")
            kill9(nodes[victim])
            nodes[victim] = restart(nodes[victim], cfgs[victim])
            threads.append(threading.Thread(target=load,
                                            args=(nodes[victim], stop, [ACME], [])))
            threads[-1].start()
            time.sleep(1)
    finally:
        finish(stop, threads)
    try:
        wait_for(lambda: drained(url, nodes), timeout=60, what="the outboxes to drain")
        n = assert_exactly_once(url, nodes)
        assert n > 100
    finally:
        for s in nodes:
            s.stop()


def test_postgres_crash_mid_shipping_resumes_without_loss_or_doubles(tmp_path, pg):
    url = fresh_db(pg)
    nodes = [start(tmp_path / n, node_conf(tmp_path / n, n, url, batch=10)) for n in ("a", "b")]
    stop, threads, count = under_load(nodes, [ACME])
    try:
        wait_for(lambda: len(pg_ids(url)) >= 30, what="shipping under way")
        pg.kill()
        time.sleep(2)  # records pile up in the outboxes
        before = len(count)
        wait_for(lambda: len(count) > before + 10, what="serving while PostgreSQL is down")
        assert all(metric(s, "par_usage_ship_failures_total") >= 1 for s in nodes)
        pg.start()
        time.sleep(1)
    finally:
        finish(stop, threads)
    try:
        wait_for(lambda: drained(url, nodes), timeout=60, what="shipping to resume")
        assert assert_exactly_once(url, nodes) >= 40
        assert all(metric(s, "par_usage_ship_connected") == 1 for s in nodes)
        assert any(l.get("msg") == "metering: shipping to PostgreSQL resumed"
                   for s in nodes for l in s.lines())
    finally:
        for s in nodes:
            s.stop()


# ---- the Stripe export, once per fleet ------------------------------------------------

def leaders(nodes):
    out = []
    for s in nodes:
        try:
            info = s.get("/runtime/info", headers={"X-API-Key": ADMIN}).json()
        except requests.RequestException:
            continue
        if info["metering"]["export_leader"]:
            out.append(s)
    return out


def expected_bill(url):
    """What the fleet's records bill: (customer, event) → summed characters."""
    out = {}
    for tenant, units in q(url, "SELECT tenant, units FROM par_usage WHERE parent_id = ''"
                                " AND status = 'ok'"):
        c = CUSTOMERS.get(tenant)
        v = json.loads(units).get("characters", 0) if units else 0
        if c and c != "cus_refused" and v:
            out[(c, "agent_invocations")] = out.get((c, "agent_invocations"), 0) + v
    return out


def fleet_exported(s):
    e = usage(s)["export"]
    return e["pending"] == 0 and e["windows_pending"] == 0


@pytest.mark.parametrize("aggregate", [True, False], ids=["windows", "per-record"])
def test_one_exporter_per_fleet_takes_over_when_the_leader_dies(tmp_path, pg, meter, aggregate):
    url = fresh_db(pg)
    names = ("a", "b", "c")
    cfgs = []
    for n in names:
        c = node_conf(tmp_path / n, n, url, meter_url=meter.url, batch=50)
        if not aggregate:
            with open(c) as f:
                text = f.read().replace("aggregate: {window: 1s, grace: 500ms}",
                                        "aggregate: {enabled: false}")
            with open(c, "w") as f:
                f.write(text)
        cfgs.append(c)
    nodes = [start(tmp_path / n, c) for n, c in zip(names, cfgs)]
    wait_for(lambda: len(leaders(nodes)) == 1, what="one leader")
    stop, threads, _ = under_load(nodes, [ACME, GLOBEX], seconds=2)
    try:
        lead = leaders(nodes)
        assert len(lead) == 1
        old = nodes.index(lead[0])
        assert metric(lead[0], "par_usage_export_leader") == 1
        assert all(metric(s, "par_usage_export_leader") == 0 for s in nodes if s is not lead[0])
        t0 = time.time()
        kill9(lead[0])
        others = [s for i, s in enumerate(nodes) if i != old]
        wait_for(lambda: len(leaders(others)) == 1, timeout=30, what="a new leader")
        takeover = time.time() - t0
        print(f"\nleader takeover after kill -9: {takeover:.3f} s")
        assert takeover < 5
        time.sleep(2)
    finally:
        finish(stop, threads)
    try:
        nodes[old] = restart(nodes[old], cfgs[old])  # ships what it had not shipped
        wait_for(lambda: drained(url, nodes), timeout=60, what="every record in PostgreSQL")
        assert_exactly_once(url, nodes)
        wait_for(lambda: fleet_exported(nodes[0]), timeout=60, what="the fleet's export")
        assert not meter.conflicts
        assert meter.sums() == expected_bill(url)
        if not aggregate:  # one event per record: each record id billed once
            billed = q(url, "SELECT id FROM par_usage WHERE parent_id = '' AND status = 'ok'")
            assert set(meter.events) == {r[0] for r in billed}
        u = usage(nodes[0])["export"]
        assert u["leader_node"] in names and u["leader_node"] != names[old]
        assert len(leaders(nodes)) == 1
    finally:
        for s in nodes:
            s.stop()


# ---- the shipping rate ----------------------------------------------------------------

def fill_outbox(path, n):
    db = sqlite3.connect(path, timeout=30)
    now = int(time.time() * 1000)
    db.executemany(
        "INSERT INTO usage (id, ts_ms, request_id, trace_id, span_id, parent_id, root_id, subject,"
        " tenant, agent, package, version, status, duration_ms, cpu_ms, bytes_in, bytes_out,"
        " units) VALUES (?, ?, ?, '', '', '', ?, 'alice', 'acme', 'echo/shout', 'echo', '1.0.0',"
        " 'ok', 1.5, 0.5, 10, 20, '{\"characters\": 3}')",
        ((f"{i:032x}", now, f"bench-{i}", f"{i:032x}") for i in range(n)))
    # values an array literal must escape, a NULL and a JSON string with quotes
    db.execute(
        "INSERT INTO usage (id, ts_ms, request_id, trace_id, span_id, parent_id, root_id, subject,"
        " tenant, agent, package, version, status, duration_ms, cpu_ms, bytes_in, bytes_out,"
        " units) VALUES ('tricky', ?, ?, '', '', '', 'tricky', NULL, 'acme', 'echo/shout', 'echo',"
        " '1.0.0', 'ok', 0.1, NULL, 0, 0, ?)",
        (now, 'a "quoted", {braced} \\ back\\slashed NULL', json.dumps({"note": 'say "hi"\\'})))
    db.commit()
    db.close()


@pytest.mark.parametrize("batch,n", [(1, 1000), (100, 10000), (1000, 20000)])
def test_shipping_rate(tmp_path, pg, batch, n):
    """Records/s from a full outbox into PostgreSQL (docs/fleet.md has the figures)."""
    n = int(os.environ.get("PAR_SHIP_RECORDS", n))
    url = fresh_db(pg)
    d = tmp_path / "n"
    s = start(d, _plain(tmp_path, "", ""))  # creates the outbox, then stops
    s.stop()
    fill_outbox(os.path.join(s.tmp, "var", "usage.db"), n)
    os.rename(s.log_path, s.log_path + ".first")
    t0 = time.time()
    s = start(d, node_conf(tmp_path, "bench", url, batch=batch))
    try:
        wait_for(lambda: int(q(url, "SELECT count(*) FROM par_usage")[0][0]) == n + 1, timeout=300,
                 what="the outbox shipped")
        dt = time.time() - t0
        # on PostgreSQL's clock, from the first batch's commit to the last's
        lo, hi = (int(x) for x in q(url, "SELECT min(shipped_ms), max(shipped_ms)"
                                         " FROM par_usage")[0])
        # (one batch holds everything: from the node's start)
        rate = (n - batch) / max((hi - lo) / 1000, 0.001) if n > 2 * batch else n / dt
        print(f"\nshipping rate, batch {batch}: {n} records, {rate:.0f} records/s"
              f" ({dt:.2f} s from the node's start)")
        assert metric(s, "par_usage_ship_pending_records") == 0
        rid, subject, cpu, units = q(url, "SELECT request_id, subject IS NULL, cpu_ms IS NULL,"
                                          " units::text FROM par_usage WHERE id = 'tricky'")[0]
        assert rid == 'a "quoted", {braced} \\ back\\slashed NULL'
        assert subject == "t" and cpu == "t"
        assert json.loads(units) == {"note": 'say "hi"\\'}
        assert metric(s, "par_usage_ship_batches_total") >= n / batch
    finally:
        s.stop()
