"""Extension plugins (docs/extensions.md): the trusted-header auth provider
end to end, the ABI checks at start (an older plugin works; a newer one, a
shared object without the entry symbol, a failing init and a missing file
are refused with a clear error), and a test plugin that is both a loader
(packages of runtime `pyplug` run by PAR's Python worker under the sandbox)
and a telemetry exporter (spans with parent links, usage, metrics
snapshots, a bounded queue that drops instead of blocking requests)."""
import json
import os
import subprocess
import time

import pytest
import requests

from conftest import BUILD, PAR, SOURCE, assert_error, package, run

TRUSTED = os.path.join(BUILD, "plugins", "trusted-header.so")
FIX = os.path.join(BUILD, "fixtures", "plugins")
SHIM = os.path.join(SOURCE, "worker", "python", "par_worker.py")


def write_config(tmp, plugins, auth="off", extra=""):
    path = os.path.join(str(tmp), "par.yaml")
    with open(path, "w") as f:
        f.write("plugins:\n")
        for p in plugins:
            f.write("  - path: %s\n" % p["path"])
            if "config" in p:
                f.write("    config: %s\n" % json.dumps(p["config"]))
        f.write("auth:\n  mode: %s\n" % auth)
        f.write("trust:\n  require_signatures: false\n")  # the test packages are unsigned
        f.write(extra)
    return path


def start_fails(tmp, cfg, expect):
    """`par serve` with this configuration exits non-zero, saying `expect`."""
    p = subprocess.run([PAR, "serve", "--config", cfg, "--listen", "127.0.0.1:0",
                        "--packages", os.path.join(str(tmp), "pk"),
                        "--state-dir", os.path.join(str(tmp), "var")],
                       capture_output=True, text=True, timeout=60)
    msgs = []
    for raw in p.stderr.splitlines():
        try:
            msgs.append(json.loads(raw).get("msg", ""))
        except ValueError:
            msgs.append(raw)
    text = "\n".join(msgs)
    assert p.returncode != 0, text
    assert expect in text, text
    assert "listening" not in text
    return text


def wait_lines(s, pred, timeout=5):
    """The server's log lines matching `pred`, once there is one (logs are written by a thread)."""
    deadline = time.time() + timeout
    while True:
        found = [l for l in s.lines() if pred(l)]
        if found or time.time() > deadline:
            return found
        time.sleep(0.02)


# ---- trusted-header -------------------------------------------------------------------

def trusted(proxies, **more):
    conf = {"proxies": proxies, "subject_header": "X-Forwarded-User",
            "tenant_header": "X-Forwarded-Tenant", "permissions_header": "X-Forwarded-Groups",
            "permissions": ["agents:invoke"]}
    conf.update(more)
    return {"path": TRUSTED, "config": conf}


def test_trusted_header_identity_from_a_proxy(server_factory, tmp_path):
    cfg = write_config(tmp_path, [trusted(["10.0.0.0/8", "127.0.0.1/32", "::1/128"])],
                       "plugin:trusted-header")
    s = server_factory([package("whoami")], ["--config", cfg])
    h = {"X-Forwarded-User": "alice@example.com", "X-Forwarded-Tenant": "acme"}
    r = s.post("whoami", {}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["output"]["subject"] == "alice@example.com"
    assert r.json()["output"]["tenant"] == "acme"
    # sub-agent calls keep the identity
    r = s.post("whoami/via", {}, headers=h)
    assert r.json()["output"]["inner"]["subject"] == "alice@example.com"
    # no identity header from the proxy: 401 unauthorized
    assert_error(s.post("whoami", {}), 401, "unauthorized")
    # the permissions header adds to the configured ones: admin only when sent
    assert_error(s.get("/runtime/packages", headers=h), 403, "forbidden")
    r = s.get("/runtime/packages", headers=dict(h, **{"X-Forwarded-Groups": "runtime:admin"}))
    assert r.status_code == 200, r.text
    info = s.get("/runtime/info", headers=dict(h, **{"X-Forwarded-Groups": "runtime:admin"}))
    assert info.json()["auth"]["provider"] == "plugin"
    assert info.json()["auth"]["plugin"] == "trusted-header"
    assert any(l.get("msg") == "plugin loaded" and l.get("plugin") == "trusted-header"
               for l in s.lines())


def test_trusted_header_refuses_other_peers(server_factory, tmp_path):
    cfg = write_config(tmp_path, [trusted(["10.0.0.0/8", "2001:db8::/32"])],
                       "plugin:trusted-header")
    s = server_factory([package("whoami")], ["--config", cfg])
    h = {"X-Forwarded-User": "mallory", "X-Forwarded-Groups": "runtime:admin"}
    assert_error(s.post("whoami", {}, headers=h), 401, "invalid_token")
    assert_error(s.get("/runtime/packages", headers=h), 401, "invalid_token")
    refusals = wait_lines(s, lambda l: l.get("msg") == "authentication failed")
    assert refusals and refusals[-1]["reason"] == "refused_by_plugin"
    assert "127.0.0.1" in refusals[-1]["detail"] and "not from a configured proxy" in \
        refusals[-1]["detail"]
    m = s.get("/metrics", headers=h)  # /metrics is not open: refused the same way
    assert m.status_code == 401


@pytest.mark.parametrize("conf,expect", [
    ({"proxies": ["10.0.0.0/8"], "bogus": 1}, "config.bogus: unknown key"),
    ({"proxies": []}, "config.proxies: a non-empty list"),
    ({"proxies": ["10.0.0.0/33"]}, "config.proxies[0]: '10.0.0.0/33' is not an address"),
])
def test_trusted_header_bad_config_stops_the_start(tmp_path, conf, expect):
    cfg = write_config(tmp_path, [{"path": TRUSTED, "config": conf}], "plugin:trusted-header")
    err = start_fails(tmp_path, cfg, expect)
    assert "plugins[0]" in err and "its init failed" in err


# ---- the ABI ------------------------------------------------------------------------

def test_an_older_plugin_works_and_answers_asynchronously(server_factory, tmp_path):
    cfg = write_config(tmp_path, [{"path": os.path.join(FIX, "abi_old.so")}], "plugin:abi-old")
    s = server_factory([package("whoami")], ["--config", cfg])
    r = s.post("whoami", {}, headers={"Authorization": "Bearer old-ok"})
    assert r.status_code == 200, r.text
    assert (r.json()["output"]["subject"], r.json()["output"]["tenant"]) == ("old-user",
                                                                             "old-tenant")
    # answered 50 ms later from the plugin's own thread: the request was parked
    t0 = time.time()
    r = s.post("whoami", {}, headers={"Authorization": "Bearer later"})
    assert r.status_code == 200, r.text
    assert r.json()["output"]["subject"] == "later-user" and time.time() - t0 >= 0.05
    assert_error(s.post("whoami", {}, headers={"Authorization": "Bearer nope"}), 401,
                 "invalid_token")
    # its shorter auth table has no `ready`: always ready
    assert s.get("/runtime/ready").status_code == 200


def test_a_plugin_for_a_newer_abi_is_refused(tmp_path):
    cfg = write_config(tmp_path, [{"path": os.path.join(FIX, "abi_new.so")}])
    err = start_fails(tmp_path, cfg, "was built for plugin ABI 2 and this runtime")
    assert "supports plugin ABI 1 at most" in err and "abi_new.so" in err


def test_a_shared_object_without_the_entry_symbol_is_refused(tmp_path):
    cfg = write_config(tmp_path, [{"path": os.path.join(FIX, "no_entry.so")}])
    start_fails(tmp_path, cfg, "exports no par_plugin_entry function: not a PAR plugin")


def test_a_failing_init_stops_the_start(tmp_path):
    cfg = write_config(tmp_path, [{"path": os.path.join(FIX, "init_fails.so"),
                                   "config": {"x": 1}}])
    start_fails(tmp_path, cfg, 'its init failed: config.api_url is required (got {"x":1})')


def test_a_missing_shared_object_is_refused(tmp_path):
    cfg = write_config(tmp_path, [{"path": os.path.join(FIX, "nothing-here.so")}])
    start_fails(tmp_path, cfg, "cannot load it: ")


def test_an_unknown_provider_is_refused(tmp_path):
    cfg = write_config(tmp_path, [], "plugin:nope")
    start_fails(tmp_path, cfg, "no auth provider named 'plugin:nope'")


def test_plugin_entries_are_checked_by_the_configuration(tmp_path):
    cfg = os.path.join(str(tmp_path), "bad.yaml")
    with open(cfg, "w") as f:
        f.write("plugins:\n  - path: x.so\n    conf: {}\n  - config: {}\n  - just-a-string\n"
                "auth:\n  mode: off\n")
    r = run("config", "check", cfg)
    assert r.returncode == 2, r.stderr
    assert "unknown key `plugins[0].conf` (did you mean `plugins[0].config`?)" in r.stderr
    assert "`plugins[1]`: needs `path`" in r.stderr
    assert "`plugins[2]`: expected a mapping {path, config}" in r.stderr
    # the path is made absolute against the file's directory
    ok = write_config(tmp_path, [{"path": "rel/x.so"}])
    r = run("config", "show", "--config", ok)
    assert os.path.join(str(tmp_path), "rel", "x.so") in r.stdout


# ---- a loader and an exporter -----------------------------------------------------------

def pyplug_package(tmp, name="plugged", refuse=False):
    d = os.path.join(str(tmp), name)
    os.makedirs(os.path.join(d, "src"), exist_ok=True)
    with open(os.path.join(d, "agent.yaml"), "w") as f:
        f.write("version: '1.0'\nname: %s\nentrypoint: src.main:handler\nruntime: pyplug\n"
                "metadata:\n  version: 1.0.0\n  refuse: %s\n" % (name, "true" if refuse else
                                                                   "false"))
    with open(os.path.join(d, "src", "__init__.py"), "w") as f:
        f.write("")
    with open(os.path.join(d, "src", "main.py"), "w") as f:
        f.write("import os\n\ndef handler(data, context=None):\n"
                "    try:\n        open('/etc/shadow').read()\n        shadow = 'read'\n"
                "    except OSError:\n        shadow = 'denied'\n"
                "    return {'echo': data, 'cache': os.environ.get('PYPLUG_CACHE'),"
                " 'shadow': shadow}\n")
    os.chmod(d, 0o755)
    return d


def recorder(tmp, **conf):
    c = {"shim": SHIM, "python": "/usr/bin/python3", "out": str(tmp)}
    c.update(conf)
    return {"path": os.path.join(FIX, "recorder.so"), "config": c}


def records(tmp, kind):
    with open(os.path.join(str(tmp), "telemetry.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]


def test_a_plugin_loader_runs_its_packages_in_the_sandbox(server_factory, tmp_path):
    cfg = write_config(tmp_path, [recorder(tmp_path)])
    s = server_factory([], ["--config", cfg])
    d = pyplug_package(tmp_path)
    r = requests.post(s.url + "/runtime/packages", json={"path": d}, timeout=120)
    assert r.status_code in (200, 201), r.text
    r = s.post("plugged", {"input": {"x": 1}})
    assert r.status_code == 200, r.text
    out = r.json()["output"]
    assert out["echo"] == {"x": 1}
    cache = os.path.join(s.tmp, "var", "plugins", "recorder", "cache", "plugged@1.0.0")
    assert out["cache"] == cache  # the command's environment reached the worker
    assert out["shadow"] == "denied"
    with open(os.path.join(cache, "prepared")) as f:  # prepare ran at deploy
        assert f.read() == "plugged@1.0.0 pyplug\n"
    # validate refuses with every line of its message: 422, the runtime unharmed
    bad = pyplug_package(tmp_path, "refused", refuse=True)
    b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": bad}, timeout=120),
                     422, "incompatible_package")
    assert "metadata.refuse: the recorder loader refuses this package" in b["message"]
    assert "second line" in b["message"]
    assert s.post("plugged", {"input": 2}).status_code == 200
    s.expected_errors.append("package refused")


def test_an_unknown_runtime_names_the_loaders(server_factory, tmp_path):
    cfg = write_config(tmp_path, [recorder(tmp_path)])
    s = server_factory([], ["--config", cfg])
    d = pyplug_package(tmp_path, "other")
    with open(os.path.join(d, "agent.yaml")) as f:
        y = f.read().replace("runtime: pyplug", "runtime: node99")
    with open(os.path.join(d, "agent.yaml"), "w") as f:
        f.write(y)
    b = assert_error(requests.post(s.url + "/runtime/packages", json={"path": d}, timeout=120),
                     422, "incompatible_package")
    assert "no loader for runtime node99 (this runtime serves native, python3.N, pyplug)" in \
        b["message"]
    s.expected_errors.append("package refused")


def test_the_exporter_gets_spans_usage_and_metrics(server_factory, tmp_path):
    cfg = write_config(tmp_path, [recorder(tmp_path)])
    s = server_factory([package("whoami")], ["--config", cfg])
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = s.post("whoami/via", {}, headers={"traceparent": "00-%s-00f067aa0ba902b7-01" % trace})
    assert r.status_code == 200, r.text
    assert_error(s.post("whoami/nope", {}), 404, "agent_not_found")
    time.sleep(0.6)  # a metrics interval (200 ms) or more
    m = s.get("/metrics").text
    assert 'par_plugin_exporter_dropped_total{plugin="recorder"} 0' in m
    s.stop()
    spans = [x for x in records(tmp_path, "span") if x["trace_id"] == trace]
    outer = [x for x in spans if x["agent"] == "whoami/via"]
    inner = [x for x in spans if x["agent"] != "whoami/via"]
    assert len(outer) == 1 and len(inner) == 1, spans
    assert outer[0]["parent"] == "00f067aa0ba902b7" and not outer[0]["sub_call"]
    assert inner[0]["parent"] == outer[0]["span_id"] and inner[0]["sub_call"]
    assert outer[0]["start"] <= inner[0]["start"] <= inner[0]["end"] <= outer[0]["end"]
    assert outer[0]["status"] == 0 and outer[0]["error"] == ""
    usage = records(tmp_path, "usage")
    # the outer record carries the inner call's units rolled up (docs/metering.md)
    assert {"agent": "whoami/via", "status": "ok", "units": {"tokens": 10}, "kind": "usage"} in usage
    assert {"agent": "whoami/inner", "status": "ok", "units": {"tokens": 7}, "kind": "usage"} in usage
    metrics = records(tmp_path, "metrics")
    assert metrics and metrics[-1]["has_dropped"] and metrics[-1]["counters"] > 0
    assert metrics[-1]["labelled"] > 0 and metrics[-1]["text_bytes"] > 1000
    kinds = [json.loads(l)["kind"] for l in open(os.path.join(str(tmp_path), "telemetry.jsonl"))]
    assert kinds[-2:] == ["flush", "fini"]  # delivered, flushed, then fini


def test_a_slow_exporter_drops_and_never_blocks_requests(server_factory, tmp_path):
    cfg = write_config(tmp_path, [recorder(tmp_path, delay_ms=3000, queue_max=4)])
    s = server_factory([package("whoami")], ["--config", cfg])
    sess = requests.Session()
    t0 = time.time()
    for _ in range(40):
        assert sess.post(s.url + "/agents/whoami/invoke", json={}, timeout=10).status_code == 200
    assert time.time() - t0 < 2.5  # the exporter sleeps 3 s per batch: requests never wait
    m = s.get("/metrics").text
    line = [l for l in m.splitlines()
            if l.startswith('par_plugin_exporter_dropped_total{plugin="recorder"}')]
    # 80 items (a span and a usage record per call); while its first batch
    # sleeps, the exporter holds at most that batch and a full queue of 4
    assert line and int(line[0].split()[-1]) >= 80 - 8, m
