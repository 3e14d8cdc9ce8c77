"""The container image (deploy/container/): `make container-test` builds it
with deploy/container/build.sh (base made with debootstrap, no registry),
then this file runs it with podman the way docs/deployment.md says: read-only
root file system, a volume for /var/lib/par, the configuration mounted at
/etc/par/par.yaml, explicit ulimits, runc with cgroupfs. It deploys the
example packages over the management API, invokes them, checks the
HEALTHCHECK and the graceful stop, and measures which worker sandbox layers
the runtime gets under several podman settings (docs/deployment.md has the
table; the measurement is written to BUILD/container/sandbox-layers.json).

Not part of `make check`: building the image downloads Debian packages and
compiles PAR (minutes).
"""
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time

import pytest
import requests

BUILD = os.path.abspath(os.environ.get("PAR_BUILD_DIR") or "build")
SOURCE = os.path.abspath(os.environ.get("PAR_SOURCE_DIR") or ".")
IMAGE = os.environ.get("PAR_IMAGE", "localhost/par:dev")
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
KEY = secrets.token_urlsafe(32)

# podman settings measured: name -> extra `podman run` arguments
SETTINGS = {
    "default (uid 10001)": [],
    "uid 10001, seccomp=unconfined": ["--security-opt", "seccomp=unconfined"],
    # what the Kubernetes manifests give the pod (deploy/kubernetes/base)
    "uid 10001, --cap-drop ALL, no-new-privileges": [
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges"],
    "--user 0": ["--user", "0"],
    "--user 0 --cap-add SYS_ADMIN": ["--user", "0", "--cap-add", "SYS_ADMIN"],
    "--user 0 --cap-add SYS_ADMIN, seccomp=unconfined": [
        "--user", "0", "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined"],
}


def podman(*args, check=True, timeout=120):
    r = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def image():
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/install-deps.sh --container)")
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.skip(f"{IMAGE} is not built: run deploy/container/build.sh (make container-test)")
    return IMAGE


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The configuration and the packages the containers get (mounted read-only)."""
    d = tmp_path_factory.mktemp("container")
    os.chmod(d, 0o755)
    pkgs = d / "incoming"
    pkgs.mkdir()
    os.chmod(pkgs, 0o755)
    for f in os.listdir(os.path.join(BUILD, "packages")):
        if f.startswith(("echo-", "hello-python-")) and f.endswith(".apkg"):
            shutil.copy(os.path.join(BUILD, "packages", f), pkgs / f)
            os.chmod(pkgs / f, 0o644)
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    conf = d / "par.yaml"
    # the image's file, with an API key for the management API; the example
    # packages are not signed, so signatures are not required here
    conf.write_text(open(os.path.join(SOURCE, "deploy", "container", "par.yaml")).read()
                    .replace("auth:\n  mode: off\n", "")
                    + "trust: {require_signatures: false}\n"
                    + "auth:\n  mode: api_key\n  api_keys:\n"
                    + f"    - {{sha256: \"{digest}\", subject: test, "
                    + "permissions: [runtime:admin, agents:invoke]}\n")
    os.chmod(conf, 0o644)
    return {"conf": str(conf), "pkgs": str(pkgs),
            "files": sorted(os.listdir(pkgs))}


class Container:
    def __init__(self, image, inputs, extra, name):
        self.port = free_port()
        self.name = name
        self.volume = name + "-state"
        podman("rm", "-f", "-v", name, check=False)
        podman("volume", "rm", "-f", self.volume, check=False)
        podman("run", "-d", "--name", name, "--read-only", *ULIMITS,
               "-p", f"127.0.0.1:{self.port}:8080",
               "-v", f"{self.volume}:/var/lib/par",
               "-v", f"{inputs['conf']}:/etc/par/par.yaml:ro",
               "-v", f"{inputs['pkgs']}:/srv/incoming:ro",
               *extra, image)
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth = {"Authorization": "Bearer " + KEY}

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/runtime/ready", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if podman("inspect", "-f", "{{.State.Running}}", self.name).stdout.strip() != "true":
                break
            time.sleep(0.25)
        raise AssertionError("not ready:\n" + self.logs())

    def logs(self):
        r = podman("logs", self.name, check=False)
        return r.stdout + r.stderr

    def deploy(self, filename):
        return requests.post(self.url + "/runtime/packages", headers=self.auth, timeout=120,
                             json={"path": "/srv/incoming/" + filename})

    def invoke(self, agent, body):
        return requests.post(f"{self.url}/agents/{agent}/invoke", headers=self.auth,
                             json=body, timeout=60)

    def remove(self):
        podman("rm", "-f", "-t", "0", self.name, check=False)
        podman("volume", "rm", "-f", self.volume, check=False)


def test_serves_deploys_invokes_and_stops_gracefully(image, inputs):
    c = Container(image, inputs, [], "par-ct-main")
    try:
        c.wait_ready()
        # the HEALTHCHECK the image declares passes
        cfg = json.loads(podman("image", "inspect", image).stdout)[0]
        hc = cfg.get("Healthcheck") or cfg["Config"].get("Healthcheck")
        assert "/runtime/health" in " ".join(hc["Test"]), hc
        assert podman("healthcheck", "run", c.name, check=False).returncode == 0, c.logs()
        # the process runs as the image's non-root user, on a read-only root
        assert podman("exec", c.name, "id", "-u").stdout.strip() == "10001"
        r = podman("exec", c.name, "touch", "/usr/x", check=False)
        assert r.returncode != 0 and "Read-only file system" in r.stderr, r.stderr
        for f in inputs["files"]:
            r = c.deploy(f)
            assert r.status_code == 201, (f, r.status_code, r.text, c.logs()[-4000:])
        r = c.invoke("echo", {"input": {"text": "hi from the container"}})
        assert r.status_code == 200 and "hi from the container" in r.text, (r.text, c.logs())
        r = c.invoke("hello-python", {"input": {"name": "container"}})
        assert r.status_code == 200, (r.status_code, r.text, c.logs()[-4000:])
        # unauthenticated management is refused
        assert requests.get(c.url + "/runtime/packages", timeout=5).status_code == 401
        # the package survives a restart of the container: the cache is on the volume
        podman("restart", "-t", "40", c.name, timeout=90)
        c.wait_ready()
        assert c.invoke("echo", {"input": {"text": "again"}}).status_code == 200
        # podman stop sends SIGTERM to par (PID 1): a graceful, complete stop
        t0 = time.time()
        podman("stop", "-t", "40", c.name, timeout=90)
        took = time.time() - t0
        state = json.loads(podman("inspect", c.name).stdout)[0]["State"]
        logs = c.logs()
        assert state["ExitCode"] == 0, (state, logs[-3000:])
        assert '"msg":"stopped"' in logs and "signal 15: shutting down" in logs, logs[-3000:]
        assert 4.0 < took < 40, took  # waited out shutdown.grace_ms (5 s), no SIGKILL
    finally:
        c.remove()


def measure(image, inputs, extra, name):
    c = Container(image, inputs, extra, name)
    try:
        c.wait_ready()
        r = c.deploy(next(f for f in inputs["files"] if f.startswith("echo-")))
        out = {"deploy": r.status_code}
        if r.status_code == 201:
            rec = requests.get(c.url + "/runtime/packages/echo", headers=c.auth, timeout=10).json()
            out["invoke"] = c.invoke("echo", {"input": {"text": "x"}}).status_code
            rec = requests.get(c.url + "/runtime/packages/echo", headers=c.auth, timeout=10).json()
            out["sandbox"] = rec.get("sandbox")
        else:
            out["error"] = r.text[:500]
        return out
    finally:
        c.remove()


def test_sandbox_layers_by_podman_setting(image, inputs):
    results = {}
    for i, (label, extra) in enumerate(SETTINGS.items()):
        results[label] = {"podman": " ".join(extra) or "(none)",
                          **measure(image, inputs, extra, f"par-ct-m{i}")}
    out = os.path.join(BUILD, "container", "sandbox-layers.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))
    # every setting serves; the default one invokes with the sandbox on
    for label, r in results.items():
        assert r["deploy"] == 201 and r["invoke"] == 200, (label, r)
        assert r["sandbox"]["enabled"] is True and r["sandbox"]["no_new_privs"] is True, r
    # non-root (the image's user): workers share its uid, so no RLIMIT_NPROC
    for label in ("default (uid 10001)", "uid 10001, --cap-drop ALL, no-new-privileges"):
        sb = results[label]["sandbox"]
        assert sb["uid"] == 10001 and sb["seccomp"] is True and sb["rlimits"]["nproc"] is None, sb
        assert any(d.startswith("nproc") for d in sb["degraded"]), sb
    # root in the container: the uid drop; the network namespace needs CAP_SYS_ADMIN
    root = results["--user 0"]["sandbox"]
    assert root["uid"] == 65534 and root["rlimits"]["nproc"] == 1024, root
    assert root["netns"] is False and any(d.startswith("netns") for d in root["degraded"]), root
    full = results["--user 0 --cap-add SYS_ADMIN"]["sandbox"]
    assert full["seccomp"] is True and full["netns"] is True and full["uid"] == 65534, full
    assert all(d.startswith("landlock") for d in full["degraded"]), full  # kernel-dependent
