"""The OpenTelemetry exporter plugin (plugins/otlp, docs/extensions.md) against a
recording OTLP/HTTP collector (otlp_collector.py) that checks every body against
OTLP's JSON shapes, and that can be down, slow, or answer 500/429.

Two hosts drive the plugin: the real runtime (`plugins:` in par.yaml; spans of a
sub-agent chain, metrics, requests unharmed by a dead collector) and otlp-drive
(tests/fixtures/otlp-drive), a minimal host that hands the plugin exact numbers
of spans so the queue bound, the retries and the shutdown deadline can be
counted precisely.
"""
import json
import os
import re
import statistics
import subprocess
import time

import pytest

from conftest import BUILD, PAR, SANITIZER_MARKERS, package
from otlp_collector import Collector

PLUGIN = os.path.join(BUILD, "plugins", "otlp.so")
DRIVE = os.path.join(BUILD, "otlp-drive")


def wait_for(pred, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


def drive(conf, traces, wait_ms=0, timeout=60):
    r = subprocess.run([DRIVE, PLUGIN, json.dumps(conf), str(traces), str(wait_ms)],
                       capture_output=True, text=True, timeout=timeout)
    for m in SANITIZER_MARKERS:
        assert m not in r.stderr, r.stderr
    logs = [json.loads(l) for l in r.stderr.splitlines() if l.startswith("{")]
    out = json.loads(r.stdout) if r.returncode == 0 else None
    return r, out, logs


def stopped_line(logs):
    """(sent, dropped) spans from the exporter's last line, or None."""
    for l in logs:
        m = re.search(r"stopped; (\d+) span\(s\) sent, (\d+) dropped", l["msg"])
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


# ---- the plugin alone (otlp-drive) ---------------------------------------------------------

@pytest.mark.parametrize("conf, message", [
    ({}, "config.endpoint: required"),
    ({"endpoint": "http://127.0.0.1:4318", "endpiont": "x"},
     "config.endpiont: unknown key (did you mean endpoint?)"),
    ({"endpoint": "ftp://127.0.0.1/"}, "config.endpoint: \"ftp://127.0.0.1/\": the scheme"),
    ({"endpoint": "127.0.0.1 4318"}, "config.endpoint: \"127.0.0.1 4318\" is not a URL"),
    ({"endpoint": "http://127.0.0.1:4318", "queue_size": 0}, "config.queue_size"),
    ({"endpoint": "http://127.0.0.1:4318", "headers": {"a": 1}}, "config.headers.a"),
])
def test_config_mistakes_refuse_the_start(conf, message):
    r, _, _ = drive(conf, 0)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr, r.stderr


def test_spans_and_metrics_reach_the_collector(collector):
    conf = {"endpoint": collector.url + "/", "service_name": "par-test", "flush_ms": 50,
            "resource": {"deployment.environment": "test"}, "headers": {"x-api-key": "k1"}}
    r, out, logs = drive(conf, 10, wait_ms=300)
    assert r.returncode == 0, r.stderr
    assert not collector.invalid, collector.invalid
    spans = collector.spans()
    assert len(spans) == 30
    assert stopped_line(logs) is None  # nothing dropped: no summary line
    assert all(h.get("x-api-key") == "k1" for h in collector.headers)
    by_trace = {}
    for s in spans:
        by_trace.setdefault(s["traceId"], []).append(s)
        assert s["resource"]["service.name"] == "par-test"
        assert s["resource"]["service.version"] == "0.0.0-drive"
        assert s["resource"]["deployment.environment"] == "test"
        assert s["scope"]["name"] == "par"
    assert len(by_trace) == 10
    for chain in by_trace.values():
        root = [s for s in chain if "parentSpanId" not in s]
        assert len(root) == 1 and root[0]["kind"] == 2
        child = [s for s in chain if s.get("parentSpanId") == root[0]["spanId"]]
        assert len(child) == 1 and child[0]["kind"] == 1
        grand = [s for s in chain if s.get("parentSpanId") == child[0]["spanId"]]
        assert len(grand) == 1 and grand[0]["name"] == "echo"
        assert grand[0]["attrs"]["par.package"] == "echo"
    m = wait_for(collector.latest_metrics, what="a metrics snapshot")
    pts = m["par_invocations_total"]["sum"]["dataPoints"]
    assert pts[0]["asInt"] == "10"
    assert m["par_otlp_spans_total"]["sum"]["isMonotonic"] is True


def test_a_backlog_leaves_in_batches_each_span_once(collector):
    # 60 spans wait when the first request goes: batches of 7 are cut from
    # the waiting, already encoded spans, and every span arrives once, in
    # valid OTLP JSON
    conf = {"endpoint": collector.url, "metrics": False, "batch_size": 7, "flush_ms": 2000}
    r, out, logs = drive(conf, 20, wait_ms=1000)
    assert r.returncode == 0, r.stderr
    assert not collector.invalid, collector.invalid
    sizes = [len(d["resourceSpans"][0]["scopeSpans"][0]["spans"]) for d in collector.traces]
    assert max(sizes) == 7 and sum(sizes) == 60, sizes
    ids = [s["spanId"] for s in collector.spans()]
    assert len(ids) == 60 and len(set(ids)) == 60, ids


def test_down_collector_bounds_the_queue_and_counts_drops(collector):
    collector.stop()  # nothing listens on its port
    conf = {"endpoint": collector.url, "queue_size": 50, "batch_size": 10, "flush_ms": 20,
            "max_retries": 100, "backoff_min_ms": 50, "backoff_max_ms": 200, "shutdown_ms": 300}
    r, out, logs = drive(conf, 1000)  # 3000 spans
    assert r.returncode == 0, r.stderr
    # handing spans over never waited for the network (retrying 3000 spans with
    # this backoff would take seconds; 0.5 s leaves room for a busy machine)
    assert out["max_call_us"] < 500000, out
    # the stop respected shutdown_ms (plus one progress tick of libcurl at most)
    assert out["flush_ms"] < 300 + 1500, out
    sent, dropped = stopped_line(logs)
    assert sent == 0 and dropped == 3000, logs
    assert any("span queue full (50)" in l["msg"] for l in logs), logs


def test_500_is_retried_then_the_batch_dropped(collector):
    collector.plan = [500, 500, 500]
    conf = {"endpoint": collector.url, "metrics": False, "flush_ms": 20, "max_retries": 2,
            "backoff_min_ms": 10, "backoff_max_ms": 40}
    r, out, logs = drive(conf, 5, wait_ms=1000)
    assert r.returncode == 0, r.stderr
    assert [a[2] for a in collector.arrivals] == [500, 500, 500], (collector.arrivals, logs)
    assert collector.spans() == []
    assert stopped_line(logs) == (0, 15), logs
    assert any("dropped after 3 attempts" in l["msg"] and "HTTP 500" in l["msg"]
               for l in logs), logs


def test_retries_deliver_once_and_honour_retry_after(collector):
    collector.plan = [503, (429, {"retry-after": "1"})]
    conf = {"endpoint": collector.url, "metrics": False, "flush_ms": 20, "max_retries": 5,
            "backoff_min_ms": 10, "backoff_max_ms": 5000}
    r, out, logs = drive(conf, 4, wait_ms=2500)
    assert r.returncode == 0, r.stderr
    assert [a[2] for a in collector.arrivals] == [503, 429, 200], (collector.arrivals, logs)
    assert len(collector.spans()) == 12  # every span once
    t = [a[0] for a in collector.arrivals]
    assert t[1] - t[0] < 0.5  # a backoff of 10-20 ms
    assert t[2] - t[1] >= 0.9  # Retry-After: 1


def test_slow_collector_times_out_and_never_blocks(collector):
    collector.delay = 2.0
    conf = {"endpoint": collector.url, "metrics": False, "timeout_ms": 200, "max_retries": 1,
            "backoff_min_ms": 10, "backoff_max_ms": 20, "flush_ms": 20, "queue_size": 100,
            "shutdown_ms": 300}
    r, out, logs = drive(conf, 200, wait_ms=800)
    assert r.returncode == 0, r.stderr
    assert out["max_call_us"] < 500000, out  # the collector holds every request 2 s
    assert out["flush_ms"] < 300 + 1500, out
    sent, dropped = stopped_line(logs)
    assert sent == 0 and dropped == 600, logs
    assert any("timed out" in l["msg"].lower() for l in logs), logs


# ---- inside the runtime ----------------------------------------------------------------------

def par_config(tmp, collector_url, extra=None, metrics_interval_ms=300):
    conf = {"endpoint": collector_url, "flush_ms": 50, "service_name": "par-e2e",
            "metrics_interval_ms": metrics_interval_ms}
    conf.update(extra or {})
    p = os.path.join(str(tmp), "par.yaml")
    with open(p, "w") as f:
        f.write("auth: {mode: off}\ntrust: {require_signatures: false}\n"
                f"plugins:\n  - path: {PLUGIN}\n    config: {json.dumps(conf)}\n")
    return p


def test_sub_agent_chain_is_one_trace_with_parent_links(server_factory, tmp_path, collector):
    s = server_factory([package("hostile"), package("echo")],
                       args=["--config", par_config(tmp_path, collector.url)])
    trace, caller = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = s.post("hostile/relay", {"input": "hostile/relay echo"},
               headers={"traceparent": f"00-{trace}-{caller}-01", "x-request-id": "otlp-1"})
    assert r.status_code == 200, r.text
    spans = wait_for(lambda: [x for x in collector.spans() if x["traceId"] == trace]
                     if len([x for x in collector.spans() if x["traceId"] == trace]) >= 3
                     else None, what="three spans of the trace")
    assert not collector.invalid, collector.invalid
    assert len(spans) == 3, spans
    root = [x for x in spans if x.get("parentSpanId") == caller]
    assert len(root) == 1, spans
    root = root[0]
    assert root["name"] == "hostile/relay" and root["kind"] == 2
    assert root["spanId"] == r.headers["traceparent"].split("-")[2]
    child = [x for x in spans if x.get("parentSpanId") == root["spanId"]]
    assert len(child) == 1 and child[0]["name"] == "hostile/relay" and child[0]["kind"] == 1
    grand = [x for x in spans if x.get("parentSpanId") == child[0]["spanId"]]
    assert len(grand) == 1 and grand[0]["name"] == "echo" and grand[0]["kind"] == 1
    for x in spans:
        assert x["resource"]["service.name"] == "par-e2e"
        assert x["attrs"]["par.request_id"] == "otlp-1"
        assert x["status"]["code"] == 1
    assert int(root["startTimeUnixNano"]) <= int(grand[0]["startTimeUnixNano"])
    # the runtime stamps a sub-call's end once its answer has been passed on
    # to the caller, which may itself finish first: microseconds, not more
    assert int(grand[0]["endTimeUnixNano"]) <= int(root["endTimeUnixNano"]) + 5_000_000


def test_metrics_snapshots_arrive(server_factory, tmp_path, collector):
    s = server_factory([package("echo")], args=["--config", par_config(tmp_path, collector.url)])
    for _ in range(3):
        assert s.post("echo", {"input": "x"}).status_code == 200

    def echo_count():
        m = collector.latest_metrics().get("par_invocations_total")
        for p in (m or {}).get("sum", {}).get("dataPoints", []):
            a = {x["key"]: x["value"]["stringValue"] for x in p["attributes"]}
            if a.get("agent") == "echo" and a.get("status") == "ok" and int(p["asInt"]) >= 3:
                return m
        return None

    m = wait_for(echo_count, what="par_invocations_total of echo in a snapshot")
    assert m["sum"]["isMonotonic"] is True and m["sum"]["aggregationTemporality"] == 2
    latest = collector.latest_metrics()
    assert "histogram" in latest["par_invocation_duration_seconds"]
    assert not collector.invalid, collector.invalid


def test_the_exporter_joins_the_registry_after_prometheus(server_factory, tmp_path, collector):
    s = server_factory([package("echo")], args=["--config", par_config(tmp_path, collector.url)])
    assert s.post("echo", {"input": 1}).status_code == 200
    info = s.get("/runtime/info").json()
    assert info["telemetry_exporters"] == ["prometheus", "plugin:otlp"], info
    # the scrape, with the exporter's own families, is still valid exposition
    r = s.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'par_plugin_exporter_delivered_total{plugin="otlp"}' in r.text
    p = subprocess.run(["promtool", "check", "metrics"], input=r.text, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_dead_collector_never_slows_requests(server_factory, tmp_path, collector):
    collector.stop()
    conf = par_config(tmp_path, collector.url, {"queue_size": 16, "backoff_min_ms": 50,
                                                 "backoff_max_ms": 100, "max_retries": 100})
    s = server_factory([package("echo")], args=["--config", conf])
    lat = []
    for i in range(300):
        t = time.time()
        r = s.post("echo", {"input": i})
        lat.append(time.time() - t)
        assert r.status_code == 200 and r.json()["output"] == i
    assert statistics.median(lat) < 0.05, statistics.median(lat)
    assert max(lat) < 1.0, max(lat)
    # the host hands spans over in batches (at most ~100 ms late): every span
    # reached the plugin before the collector comes back
    wait_for(lambda: 'par_plugin_exporter_delivered_total{plugin="otlp"} 300\n' in
             s.get("/metrics").text, what="the 300 spans handed to the exporter")
    # the collector comes back: the drops were counted and are reported
    collector.start()

    # all but what the ring (16) and the batch being retried (16) held; the
    # host hands spans over in batches, so an early snapshot may count fewer
    def dropped():
        m = collector.latest_metrics().get("par_otlp_spans_total")
        for p in (m or {}).get("sum", {}).get("dataPoints", []):
            if p["attributes"][0]["value"]["stringValue"] == "dropped" and \
                    int(p["asInt"]) >= 300 - 32:
                return int(p["asInt"])
        return None

    n = wait_for(dropped, timeout=30, what="par_otlp_spans_total{result=dropped} >= 268")
    assert n <= 300, n


@pytest.mark.parametrize("conf, message", [
    ({"endpoint": "http://127.0.0.1:4318", "batchsize": 5}, "config.batchsize: unknown key"),
    ({"endpoint": "htp://127.0.0.1:4318"}, "the scheme must be http or https"),
])
def test_config_mistakes_stop_par_at_start(tmp_path, conf, message):
    p = tmp_path / "par.yaml"
    p.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n"
                 f"plugins:\n  - path: {PLUGIN}\n    config: {json.dumps(conf)}\n")
    r = subprocess.run([PAR, "serve", "--listen", "127.0.0.1:0", "--config", str(p),
                        "--state-dir", str(tmp_path / "var"), "--packages", str(tmp_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert message in r.stderr and "plugins[0]" in r.stderr, r.stderr
