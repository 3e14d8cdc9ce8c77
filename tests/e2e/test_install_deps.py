"""scripts/install-deps.sh: `--serve` (make serve) installs only what building
and serving need — no test tools, no Node.js, no `npm ci` of the test peers —
while the default (make check) installs everything.

The script runs from a copy of scripts/ beside an empty tests/peers, with
dpkg-query, apt-get, npm and sudo replaced by recorders on PATH: nothing is
installed for real.
"""
import os
import shutil
import stat
import subprocess

from conftest import SOURCE

SERVE_ONLY = {"build-essential", "cmake", "libh2o-evloop-dev", "libcmocka-dev", "python3",
              "python3-venv", "python3-pip", "curl"}
TEST_ONLY = {"python3-pytest", "python3-requests", "minisign", "prometheus", "zip", "git",
             "nodejs", "npm"}


def fake(bindir, name, body):
    p = bindir / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def run_script(tmp_path, *args, have_npm=False, have_node=True, installed_lock=None,
               have_kubectl=False):
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    (tree / "tests" / "peers").mkdir(parents=True)
    (tree / "tests" / "peers" / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    if installed_lock is not None:  # what an earlier `npm ci` installed from
        (tree / "tests" / "peers" / "node_modules").mkdir()
        (tree / "tests" / "peers" / "node_modules" / ".par-installed-lock.json").write_text(
            installed_lock)
    shutil.copy(os.path.join(SOURCE, "scripts", "install-deps.sh"), tree / "scripts")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    fake(bindir, "dpkg-query", "exit 1\n")  # nothing is installed
    npm = f'#!/bin/sh\necho "npm $*" >> {log}\n'
    # apt-get records its arguments and "installs" npm when asked to
    fake(bindir, "apt-get", f'echo "apt-get $*" >> {log}\n'
         f'case " $* " in *" npm "*) printf \'{npm}\' > {bindir}/npm; '
         f'chmod +x {bindir}/npm;; esac\n')
    fake(bindir, "sudo", 'exec "$@"\n')
    if have_npm:
        fake(bindir, "npm", f'echo "npm $*" >> {log}\n')
    if have_npm and have_node:
        fake(bindir, "node", "echo v18.19.0\n")
    if have_kubectl:
        fake(bindir, "kubectl", "exit 0\n")
    # a PATH with the recorders and the base tools the script uses, but no real npm
    for tool in ("bash", "grep", "id", "dirname", "cat", "chmod"):
        os.symlink(shutil.which(tool), bindir / tool)
    env = {"PATH": str(bindir), "HOME": str(tmp_path)}
    r = subprocess.run([str(bindir / "bash"), str(tree / "scripts" / "install-deps.sh"), *args],
                       env=env, capture_output=True, text=True, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return r, calls


def installed(calls):
    pkgs = set()
    for c in calls:
        if c.startswith("apt-get") and " install " in c:
            pkgs |= {w for w in c.split() if not w.startswith("-")} - {"apt-get", "install"}
    return pkgs


def test_serve_installs_only_what_serving_needs(tmp_path):
    r, calls = run_script(tmp_path, "--serve", have_npm=True)
    assert r.returncode == 0, r.stderr
    pkgs = installed(calls)
    assert SERVE_ONLY <= pkgs, pkgs
    assert not (TEST_ONLY & pkgs), TEST_ONLY & pkgs
    assert not [c for c in calls if c.startswith("npm")], calls


def test_default_installs_everything_for_the_tests(tmp_path):
    r, calls = run_script(tmp_path)  # what make check runs
    assert r.returncode == 0, r.stderr
    pkgs = installed(calls)
    assert SERVE_ONLY | TEST_ONLY <= pkgs, (SERVE_ONLY | TEST_ONLY) - pkgs
    assert "npm ci --no-audit --no-fund --loglevel=error" in calls, calls


def test_default_runs_npm_ci_for_the_test_peers(tmp_path):
    r, calls = run_script(tmp_path, have_npm=True)
    assert r.returncode == 0, r.stderr
    assert "npm ci --no-audit --no-fund --loglevel=error" in calls, calls
    assert "nodejs" not in installed(calls)  # npm is there already


def test_npm_ci_runs_again_only_when_the_lock_file_changed(tmp_path):
    (tmp_path / "same").mkdir()
    r, calls = run_script(tmp_path / "same", have_npm=True,
                          installed_lock='{"lockfileVersion": 3}\n')
    assert r.returncode == 0, r.stderr
    assert not [c for c in calls if c.startswith("npm")], calls
    (tmp_path / "changed").mkdir()
    r, calls = run_script(tmp_path / "changed", have_npm=True,
                          installed_lock='{"lockfileVersion": 2}\n')
    assert r.returncode == 0, r.stderr
    assert "npm ci --no-audit --no-fund --loglevel=error" in calls, calls


def test_default_installs_node_when_only_npm_is_there(tmp_path):
    # the Node.js loader plugin's tests run agents with `node`
    r, calls = run_script(tmp_path, have_npm=True, have_node=False)
    assert r.returncode == 0, r.stderr
    assert "nodejs" in installed(calls) and "npm" not in installed(calls)


def test_container_installs_podman_and_debootstrap_only(tmp_path):
    # make container-test: the image is built from a debootstrap base, run by runc
    r, calls = run_script(tmp_path, "--container")
    assert r.returncode == 0, r.stderr
    pkgs = installed(calls)
    assert {"podman", "runc", "debootstrap"} <= pkgs, pkgs
    assert not ({"build-essential", "libh2o-evloop-dev", "kubernetes-client"} | TEST_ONLY) & pkgs
    assert not [c for c in calls if c.startswith("npm")], calls


def test_kubectl_from_debian_only_when_none_is_there(tmp_path):
    # the Kubernetes manifests are rendered by `kubectl kustomize` in the tests
    (tmp_path / "none").mkdir()
    r, calls = run_script(tmp_path / "none", have_npm=True)
    assert r.returncode == 0 and "kubernetes-client" in installed(calls), (r.stderr, calls)
    (tmp_path / "have").mkdir()
    r, calls = run_script(tmp_path / "have", have_npm=True, have_kubectl=True)
    assert r.returncode == 0 and "kubernetes-client" not in installed(calls), calls
    (tmp_path / "serve").mkdir()
    r, calls = run_script(tmp_path / "serve", "--serve")
    assert "kubernetes-client" not in installed(calls), calls


def test_unknown_mode_is_refused(tmp_path):
    r, calls = run_script(tmp_path, "--sevre")
    assert r.returncode == 2 and "usage:" in r.stderr and calls == []
