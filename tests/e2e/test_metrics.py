"""GET /metrics: valid for promtool, and the counters move with traffic."""
import os
import re
import subprocess

import pytest
import requests

from conftest import SOURCE, assert_error, package


def scrape(s):
    r = s.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.text


def value(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + "{" + want + "}") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def srv(server_factory):
    return server_factory([package("echo"), package("faulty")])


def test_promtool_accepts_the_scrape(srv):
    srv.post("echo", {"input": 1})
    srv.post("faulty/fail", {"input": 1})
    text = scrape(srv)
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_scrape_is_the_prometheus_entry_of_the_exporter_registry(srv):
    # the built-in exposition is the telemetry-exporter registry's first entry
    # (plugins' exporters come after it), and /metrics is answered through it
    info = srv.get("/runtime/info").json()
    assert info["telemetry_exporters"] == ["prometheus"], info
    assert "par_invocations_total" in scrape(srv)


def test_counters_move(srv):
    before = scrape(srv)
    for _ in range(3):
        assert srv.post("echo", {"input": 1}).status_code == 200
    assert_error(srv.post("faulty/fail", {"input": 1}), 500, "agent_error")
    assert_error(srv.post("faulty/crash", {"input": 1}), 502, "agent_crashed")
    assert_error(srv.post("faulty/slow", {"input": 3000}, headers={"X-Par-Timeout-Ms": "200"}),
                 504, "agent_timeout")
    after = scrape(srv)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("par_invocations_total", agent="echo", version="1.0.0", status="ok") == 3
    assert delta("par_invocations_total", agent="faulty/fail", version="0.1.0",
                 status="agent_error") == 1
    assert delta("par_invocations_total", agent="faulty/crash", version="0.1.0",
                 status="agent_crashed") == 1
    assert delta("par_invocations_total", agent="faulty/slow", version="0.1.0",
                 status="agent_timeout") == 1
    assert delta("par_invocation_duration_seconds_count", agent="echo") == 3
    assert delta("par_http_requests_total", route="invoke", code="200") >= 3
    assert delta("par_http_requests_total", route="invoke", code="502") == 1
    assert delta("par_http_requests_total", route="invoke", code="504") == 1
    assert delta("par_worker_restarts_total", package="faulty", reason="crash") == 1
    assert value(after, "par_invocations_in_flight", agent="echo") == 0
    assert value(after, "par_packages", state="active") == 2
    assert value(after, "process_resident_memory_bytes") > 1e6
    assert re.search(r'^par_build_info\{version="[^"]+",agent_abi="1"\} 1$', after, re.M)
    assert value(after, "par_package_load_seconds_count", phase="load") == 2
    assert value(after, "par_cold_start_seconds") > 0


def test_deploys_are_counted_by_their_code(srv):
    before = scrape(srv)
    r = srv_deploy(srv, package("whoami"))
    assert r.status_code == 201, r.text
    after = scrape(srv)
    d = value(after, "par_http_requests_total", route="packages", code="201") - \
        value(before, "par_http_requests_total", route="packages", code="201")
    assert d == 1, after
    assert value(after, "par_http_requests_total", route="packages", code="other") == 0, after


def srv_deploy(s, path):
    return requests.post(s.url + "/runtime/packages", json={"path": path}, timeout=60)


def test_alert_rules_are_valid():
    rules = os.path.join(SOURCE, "deploy", "prometheus", "alerts.yml")
    r = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 11 rules found" in r.stdout, r.stdout


def test_every_series_the_docs_promise(srv):
    text = scrape(srv)
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    for n in ("par_invocations_total", "par_invocation_duration_seconds",
              "par_invocations_in_flight", "par_http_requests_total", "par_worker_restarts_total",
              "par_workers", "par_package_load_seconds", "par_cold_start_seconds",
              "par_registry_poll_total", "par_auth_failures_total", "par_metering_backlog_records",
              "par_metering_export_total", "par_metering_records_total",
              "par_log_lines_dropped_total", "process_resident_memory_bytes",
              "process_cpu_seconds_total", "process_open_fds", "process_start_time_seconds",
              "par_build_info"):
        assert n in names, n
    for phase in ("fetch", "verify", "extract", "load"):
        assert f'par_package_load_seconds_count{{phase="{phase}"}}' in text
    doc = open(os.path.join(SOURCE, "docs", "observability.md")).read()
    for n in names:
        assert f"`{n}`" in doc, f"{n} is not documented in docs/observability.md"
