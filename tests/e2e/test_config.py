"""The configuration table (src/config/): every mistake refused with its key's
path, `par config check|show|docs`, precedence, paths relative to the file,
SIGHUP of reloadable and restart-only keys, and the embedded default with its
relative ./var from another directory."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import requests

from conftest import PAR, SOURCE, make_searchable, package, run

BASE = "auth: {mode: off}\n"
SERVE = BASE + "trust: {require_signatures: false}\n"

# (YAML, text the refusal must contain: the key's path, and what was expected)
MISTAKES = [
    ("listn: 127.0.0.1:1\n", "unknown key `listn` (did you mean `listen`?)"),
    ("limits: {timeout: 5000}\n", "unknown key `limits.timeout` (did you mean `limits.timeout_ms`?)"),
    ("workers: {mni: 2}\n", "unknown key `workers.mni` (did you mean `workers.min`?)"),
    ("limits: {timeout_ms: ten}\n", "`limits.timeout_ms`: expected a duration"),
    ("registry: {s3: {regoin: eu}}\n", "unknown key `registry.s3.regoin` (did you mean `registry.s3.region`?)"),
    ("auth: {mode: off, oidc: {isuer: https://x}}\n", "unknown key `auth.oidc.isuer` (did you mean `auth.oidc.issuer`?)"),
    ("timeout_ms: 5\n", "unknown key `timeout_ms` (did you mean `limits.timeout_ms`?)"),
    ("metering: {stripe: {evnt_name: x}}\n", "unknown key `metering.stripe.evnt_name` (did you mean `metering.stripe.event_name`?)"),
    ("http: {threads: 0}\n", "`http.threads`: expected a whole number from 1 to 64, not `0`"),
    ("http: {threads: 65}\n", "`http.threads`: expected a whole number from 1 to 64"),
    ("limits: {max_call_depth: 257}\n", "`limits.max_call_depth`: expected a whole number from 1 to 256"),
    ("limits: {max_in_flight: -1}\n", "`limits.max_in_flight`: expected a whole number"),
    ("limits: {memory_mb: 12 apples}\n", "`limits.memory_mb`: expected a size"),
    ("log: {level: loud}\n", "`log.level`: expected one of debug, info, warn, error, not `loud`"),
    ("log: {format: xml}\n", "`log.format`: expected one of json, text"),
    ("isolation: container\n", "`isolation`: expected one of worker, in-process"),
    ("metering: {sync: sometimes}\n", "`metering.sync`: expected one of normal, full"),
    ("log: {access: maybe}\n", "`log.access`: expected true or false, not `maybe`"),
    ("http: {http2: 2}\n", "`http.http2`: expected true or false"),
    ("http: 3\n", "`http`: expected a mapping"),
    ("listen: [a, b]\n", "`listen`: expected a string, not a list"),
    ("trusted: {a: b}\n", "`trusted`: expected a list of strings, not a mapping"),
    ("listen:\n", "`listen`: a value is required"),
    ("state_dir: ''\n", "`state_dir`: a path is required"),
    ("trust: {keys: [{packages: [acme-*]}]}\n", "`trust.keys[0]`: needs exactly one of `key`"),
    ("trust: {keys: [{file: a.pub, pakages: [x]}]}\n", "unknown key `trust.keys[0].pakages` (did you mean `trust.keys[0].packages`?)"),
    ("auth: {api_keys: [{subject: a}]}\n", "`auth.api_keys[0]`: needs sha256 and subject"),
    ("auth: {api_keys: [{sha256: ab, subject: a, tennant: t}]}\n", "unknown key `auth.api_keys[0].tennant`"),
    ("metering: {stripe: {event_names: [a]}}\n", "`metering.stripe.event_names`: expected a mapping"),
    ("reload: {rollback: {error_rate_percent: 0}}\n", "`reload.rollback.error_rate_percent`: expected a whole number from 1 to 100"),
    ("limits: {queue: 1}\nlimits: {queue: 2}\n", "duplicate key"),
    ("limits: {queue: 1, queue: 2}\n", "duplicate key: queue"),
    ("- listen\n", "must be a mapping of keys"),
]


def write(tmp_path, text, name="par.yaml"):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("yaml,needle", MISTAKES, ids=[m[1][:40] for m in MISTAKES])
def test_config_check_refuses_each_mistake(tmp_path, yaml, needle):
    conf = write(tmp_path, BASE + yaml if "auth" not in yaml and not yaml.startswith("-") else yaml)
    r = run("config", "check", conf)
    assert r.returncode == 2, r.stdout + r.stderr
    assert needle in r.stderr, r.stderr
    assert "par.yaml:" in r.stderr  # where


def test_mistakes_table_is_large_enough():
    assert len(MISTAKES) >= 20


@pytest.mark.parametrize("yaml,needle", MISTAKES[:6] + MISTAKES[13:16],
                         ids=[m[1][:40] for m in MISTAKES[:6] + MISTAKES[13:16]])
def test_serve_refuses_each_mistake_before_listening(tmp_path, yaml, needle):
    conf = write(tmp_path, BASE + yaml if "auth" not in yaml else yaml)
    r = subprocess.run([PAR, "serve", "--config", conf, "--listen", "127.0.0.1:0",
                        "--state-dir", str(tmp_path / "var")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr, r.stderr
    assert "nothing was started" in r.stderr
    assert not (tmp_path / "var").exists()  # refused before anything was created


def test_check_reports_every_mistake_at_once(tmp_path):
    conf = write(tmp_path, BASE + "listn: x\nlimits: {timeout_ms: ten}\nlog: {level: loud}\n")
    r = run("config", "check", conf)
    assert r.returncode == 2
    for key in ("`listn`", "`limits.timeout_ms`", "`log.level`"):
        assert key in r.stderr, r.stderr


def test_cross_key_checks_in_config_check(tmp_path):
    r = run("config", "check", write(tmp_path, "log: {level: info}\n"))
    assert r.returncode == 2 and "auth.mode is not set" in r.stderr
    r = run("config", "check", write(tmp_path, "auth: {mode: oidc}\n"))
    assert r.returncode == 2 and "auth.oidc.issuer" in r.stderr
    r = run("config", "check", write(tmp_path, BASE + "metering: {enabled: true, stripe: {value: units.tokens}}\n"))
    assert r.returncode == 2 and "no API key" in r.stderr
    conf = write(tmp_path, BASE + "metering: {enabled: true, stripe: {api_key: k, value: nope}}\n")
    r = run("config", "check", conf)
    assert r.returncode == 2, r.stderr
    # the file named once, then the key
    assert r.stderr.startswith(conf + ": metering.stripe.value: 'nope' is not"), r.stderr


# What the table cannot judge alone but `par serve` refused only after starting:
# `par config check` must refuse it too, and serve before creating anything.
UNLOADABLE = [
    ("trust: {keys: [{file: nope.pub}]}\n", "trust.keys[0]: ", "nope.pub: No such file"),
    ("trust: {keys: [{key: garbage}]}\n", "trust.keys[0]: public key: not valid base64", ""),
    ("tls: {cert: c.pem}\n", "tls.key is required with tls.cert", ""),
    ("tls: {cert: c.pem, key: k.pem}\n", "tls.cert: cannot load the certificate chain", "c.pem"),
    ("registry: {index_url: ftp://x/index.json}\n", "registry.index_url: 'ftp://x/index.json' is not", ""),
    ("registry: {index_url: http://x/i.json}\n", "registry.index_url: 'http://x/i.json' is not", ""),
    ("tls: {client_ca: ca.pem}\n", "tls.client_ca needs tls.cert and tls.key", ""),
    ("listen: 127.0.0.1:99999\n", "`listen`: '127.0.0.1:99999' is not IP:PORT", ""),
    ("listen: localhost:8080\n", "`listen`: 'localhost:8080' is not IP:PORT", ""),
    # a fleet's usage would be silently lost: refused, not ignored
    ("metering: {sink: postgres}\nfleet: {postgres: 'host=/nowhere'}\n",
     "metering.sink: postgres is set but metering.enabled is false", ""),
    ("metering: {enabled: false, sink: postgres}\n",
     "metering.sink: postgres is set but metering.enabled is false", ""),
]


@pytest.mark.parametrize("yaml,needle,also", UNLOADABLE, ids=[u[1][:30] for u in UNLOADABLE])
def test_check_and_serve_refuse_what_cannot_load(tmp_path, yaml, needle, also):
    conf = write(tmp_path, BASE + yaml)
    r = run("config", "check", conf)
    assert r.returncode == 2, r.stdout + r.stderr
    assert conf + ": " + needle in r.stderr and also in r.stderr, r.stderr
    r = subprocess.run([PAR, "serve", "--config", conf, "--state-dir", str(tmp_path / "var")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert not (tmp_path / "var").exists()  # refused before anything was created


def test_key_naming_a_pub_file_is_relative_to_the_file(tmp_path):
    """`{key: acme.pub, packages: [...]}` names a file as a bare `- acme.pub`
    does: both are relative to the configuration's directory, not to where par
    starts."""
    d = tmp_path / "etc"
    d.mkdir()
    r = run("keygen", "-W", "-p", str(d / "acme.pub"), "-s", str(d / "acme.key"))
    assert r.returncode == 0, r.stderr
    conf = write(d, BASE + "trust: {keys: [acme.pub, {key: acme.pub, packages: [acme-*]}]}\n")
    r = subprocess.run([PAR, "config", "check", conf], capture_output=True, text=True,
                       timeout=30, cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_bad_flags_and_variables_are_refused(tmp_path):
    r = subprocess.run([PAR, "serve", "--listn", "x"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "unknown option `--listn` (did you mean `--listen`?)" in r.stderr
    r = subprocess.run([PAR, "serve", "--http-threads", "lots"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "--http-threads: `http.threads`: expected a whole number" in r.stderr
    env = dict(os.environ, PAR_LOG_LEVEL="chatty")
    r = subprocess.run([PAR, "serve"], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 2 and "PAR_LOG_LEVEL: `log.level`: expected one of" in r.stderr
    r = subprocess.run([PAR, "serve", "--auth", "oidc.leeway=5"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "auth.oidc.leeway" in r.stderr


def test_misspelt_variable_is_refused(tmp_path):
    """PAR_LSTEN=… would otherwise start on the default address unnoticed; a
    PAR_* variable that is nowhere near one of ours (the client's PAR_TOKEN)
    is left alone."""
    for var, near in (("PAR_LSTEN", "PAR_LISTEN"), ("PAR_LOGLEVEL", "PAR_LOG_LEVEL"),
                      ("PAR_STATEDIR", "PAR_STATE_DIR")):
        env = dict(os.environ, **{var: "127.0.0.1:1"})
        r = subprocess.run([PAR, "serve", "--state-dir", str(tmp_path / "var")], env=env,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, r.stderr
        assert f"{var}: unknown variable (did you mean {near}?)" in r.stderr, r.stderr
        assert not (tmp_path / "var").exists()
    r = subprocess.run([PAR, "config", "show"], env=dict(os.environ, PAR_TOKEN="t"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_a_good_file_checks_ok(tmp_path):
    conf = write(tmp_path, BASE + "listen: 127.0.0.1:9\nlimits: {timeout_ms: 5s, memory_mb: 1GiB}\n"
                 "registry: {s3: {endpoint: null}}\n")
    r = run("config", "check", conf)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == conf + ": ok"


def show(*args, env=None, cwd=None):
    r = subprocess.run([PAR, "config", "show", *args], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, **(env or {})), cwd=cwd)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("#"):
            continue
        key, rest = line.split(None, 1)
        value, src = rest.rsplit("(", 1)
        out[key] = (value.strip(), src.rstrip(")"))
    return out


def test_show_names_each_source_and_precedence(tmp_path):
    conf = write(tmp_path, BASE + "listen: 127.0.0.1:1\nlimits: {timeout_ms: 1m, queue: 7}\n"
                 "log: {level: debug}\n")
    s = show("--config", conf, "--log-level", "warn",
             env={"PAR_LOG_LEVEL": "error", "PAR_MAX_QUEUE": "9", "PAR_LISTEN": "127.0.0.1:2"})
    assert s["listen"] == ("127.0.0.1:2", "env: PAR_LISTEN")               # env over file
    assert s["log.level"] == ("warn", "flag: --log-level")                # flag over env
    assert s["limits.queue"] == ("9", "env: PAR_MAX_QUEUE")
    assert s["limits.timeout_ms"] == ("60000", "file: %s:3" % conf)       # unit converted
    assert s["limits.max_call_depth"] == ("16", "default")
    assert s["limits.max_in_flight"] == ("1024", "default")
    assert s["http.reuse_port"] == ("false", "default")
    # secrets are never printed
    conf2 = write(tmp_path, BASE + "metering: {stripe: {api_key: sk_live_hush}}\n", "s.yaml")
    assert s_value(show("--config", conf2), "metering.stripe.api_key") == "(secret)"


def s_value(s, key):
    return s[key][0]


def test_paths_relative_to_the_file_and_to_the_start_directory(tmp_path):
    sub = tmp_path / "etc" / "par"
    conf = write(sub, BASE + "state_dir: ../../var\npackages: pk\n"
                 "trust: {require_signatures: false, keys: [{file: keys/a.pub}]}\n")
    other = tmp_path / "elsewhere"
    other.mkdir()
    s = show("--config", conf, cwd=str(other))
    assert s["state_dir"][0] == str(tmp_path / "var")
    assert s["packages"][0] == str(sub / "pk")
    assert json.loads(s["trust.keys"][0]) == [{"file": str(sub / "keys" / "a.pub")}]
    # flags, variables and defaults are relative to where par starts
    s = show("--config", conf, "--packages", "./p2", env={"PAR_STATE_DIR": "v2"}, cwd=str(other))
    assert s["packages"][0] == str(other / "p2")
    assert s["state_dir"][0] == str(other / "v2")
    s = show(cwd=str(other))
    assert s["state_dir"] == (str(other / "var"), "default")


def test_docs_page_is_the_generated_one():
    r = run("config", "docs")
    assert r.returncode == 0
    with open(os.path.join(SOURCE, "docs", "configuration.md")) as f:
        committed = f.read()
    assert committed == r.stdout, "docs/configuration.md is stale: run `par config docs > docs/configuration.md`"
    for key in ("http.http2", "http.reuse_port", "limits.max_in_flight", "tls.cert", "tls.key",
                "tls.client_ca", "limits.scratch_mb", "limits.max_call_depth"):
        assert "`%s`" % key in r.stdout


def test_serve_help_comes_from_the_table():
    r = run("serve", "--help")
    assert r.returncode == 0
    for flag in ("--listen", "--state-dir", "--trusted-key", "--auth-mode", "--shutdown-drain-ms"):
        assert flag in r.stdout
    assert "PAR_LISTEN" in r.stdout and "docs/configuration.md" in r.stdout


def wait_for(server, text, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in server.lines():
            if text in line.get("msg", ""):
                return line
        time.sleep(0.05)
    raise AssertionError("no log line with %r:\n%s" % (text, server.text()))


def test_sighup_applies_reloadable_and_refuses_restart_only(server_factory, tmp_path):
    conf = tmp_path / "par.yaml"
    conf.write_text(SERVE + "limits: {timeout_ms: 30000}\nworkers: {min: 1}\n")
    s = server_factory([package("echo")], args=["--config", str(conf)])
    s.post("echo", {"input": 0}, headers={"X-Request-ID": "before-hup"})
    conf.write_text(SERVE + "limits: {timeout_ms: 20000}\nworkers: {min: 2}\n"
                    "log: {access: false}\n")
    s.proc.send_signal(signal.SIGHUP)
    wait_for(s, "SIGHUP: configuration reloaded")
    # the reloadable key took effect: no access line any more
    s.post("echo", {"input": 0}, headers={"X-Request-ID": "after-hup"})
    time.sleep(0.2)
    ids = {l.get("request_id") for l in s.lines()}
    assert "before-hup" in ids and "after-hup" not in ids
    warn = wait_for(s, "SIGHUP: `workers.min` changed")
    assert warn["level"] == "warn" and "needs a restart" in warn["msg"] and "keeping 1" in warn["msg"]
    assert not any("`limits.timeout_ms`" in l.get("msg", "") for l in s.lines())
    assert s.post("echo", {"input": "x"}).json()["output"] == "x"
    # a second SIGHUP still compares against the running value of the restart-only key
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while sum("`workers.min` changed" in l.get("msg", "") for l in s.lines()) < 2:
        assert time.time() < deadline
        time.sleep(0.05)


def test_sighup_with_a_typo_changes_nothing(server_factory, tmp_path):
    conf = tmp_path / "par.yaml"
    conf.write_text(SERVE)
    s = server_factory([package("echo")], args=["--config", str(conf)])
    conf.write_text(SERVE + "log: {acess: false}\n")
    s.proc.send_signal(signal.SIGHUP)
    line = wait_for(s, "has errors")
    assert "unknown key `log.acess` (did you mean `log.access`?)" in line["msg"]
    s.expected_errors.append("has errors")
    assert s.post("echo", {"input": 1}).json()["output"] == 1


def test_embedded_default_with_relative_var_from_another_directory(tmp_path):
    """`par serve` with no flags from a fresh directory: ./packages and ./var
    are relative; the Python worker changes directory and must still find its
    package (it used to join the relative cache path again: 404)."""
    home = tmp_path / "fresh"
    (home / "packages").mkdir(parents=True)
    for name in ("hello-python", "echo"):
        shutil.copy(package(name), home / "packages")
    make_searchable(str(home))
    log_path = tmp_path / "par.log"
    env = dict(os.environ, PAR_LISTEN="127.0.0.1:0")
    for k in list(env):
        if k.startswith("PAR_") and k not in ("PAR_LISTEN",):
            del env[k]
    with open(log_path, "w") as log:
        proc = subprocess.Popen([PAR, "serve"], cwd=str(home), stdout=log, stderr=log, env=env,
                                stdin=subprocess.DEVNULL)
        try:
            url = None
            deadline = time.time() + 60
            while time.time() < deadline and url is None:
                for raw in log_path.read_text().splitlines():
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        continue
                    if line.get("msg") == "listening":
                        url = line["url"]
                assert proc.poll() is None, log_path.read_text()
                time.sleep(0.05)
            assert url, log_path.read_text()
            while time.time() < deadline:
                if requests.get(url + "/runtime/ready", timeout=5).status_code == 200:
                    break
                time.sleep(0.1)
            r = requests.post(url + "/agents/hello-python/invoke", json={"input": {"name": "Ada"}},
                              timeout=60)
            assert r.status_code == 200, (r.text, log_path.read_text()[-4000:])
            assert r.json()["output"]["message"] == "Hello, Ada!"
            r = requests.post(url + "/agents/echo/invoke", json={"input": "hi"}, timeout=30)
            assert r.status_code == 200 and r.json()["output"] == "hi", r.text
            assert (home / "var" / "cache").is_dir()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert "ERROR: AddressSanitizer" not in log_path.read_text()


@pytest.mark.parametrize("sub", ["check", "show"])
def test_help_after_a_subcommand_is_help(sub):
    # `par config check --help` used to read "--help" as the file to check
    r = subprocess.run([PAR, "config", sub, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "usage: par config check" in r.stdout and r.stderr == ""
