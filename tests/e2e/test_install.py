"""`cmake --install` into a temporary prefix, then the README's embedding
program, exactly as README.md prints it, compiled with
`cc embed.c $(pkg-config --cflags --libs par)` against that prefix and run
against the built echo package: it must print {"text":"hi"}.

Where the test may (root, a mount namespace), the build tree and the source's
worker/ are hidden while the program runs, so the par-worker it starts can
only be the installed one (found from the location of libpar.so).
"""
import json
import os
import re
import shutil
import subprocess

from conftest import BUILD, SANITIZE, SOURCE, package


def readme_c_snippet():
    text = open(os.path.join(SOURCE, "README.md")).read()
    blocks = re.findall(r"^```c\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) == 1, "README.md must hold exactly one ```c block (the embedding program)"
    return blocks[0]


def hidden_tree(argv):
    """argv, run (when root can make a mount namespace) with the build tree and
    the source's worker/ hidden under empty tmpfs mounts: what it finds of PAR
    can only come from the install."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return argv
    hide = " && ".join(f"mount -t tmpfs none {d}" for d in (BUILD, os.path.join(SOURCE, "worker")))
    return ["unshare", "-m", "sh", "-c", f'{hide} && exec "$@"', "sh", *argv]


def install(prefix):
    r = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_install_layout(tmp_path):
    prefix = str(tmp_path / "prefix")
    install(prefix)
    for rel in ("bin/par", "bin/par-worker", "share/par/par_worker.py", "include/par/par.h",
                "include/par/agent.h", "lib/libpar.so", "lib/libpar.a", "lib/pkgconfig/par.pc"):
        assert os.path.exists(os.path.join(prefix, rel)), rel
    assert os.access(os.path.join(prefix, "bin/par-worker"), os.X_OK)
    # the shared library exports the embedding API and nothing internal
    r = subprocess.run(["nm", "-D", "--defined-only", os.path.join(prefix, "lib/libpar.so")],
                       capture_output=True, text=True, check=True)
    names = {ln.split()[-1] for ln in r.stdout.splitlines() if ln.strip()}
    assert {"par_runtime_new", "par_call", "par_config_init", "par_result_free"} <= names
    assert not [n for n in names if n.startswith("par__") or n.startswith("par_buf_")], names
    # the installed CLI runs from the prefix
    r = subprocess.run([os.path.join(prefix, "bin/par"), "version"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("par "), r.stderr


def test_installed_par_runs_python_agents(tmp_path):
    """The installed par finds the installed Python worker (share/par)."""
    prefix = str(tmp_path / "prefix")
    install(prefix)
    pkg = tmp_path / "hello-python-1.0.0.apkg"
    shutil.copy(package("hello-python"), pkg)
    env = {k: v for k, v in os.environ.items() if k not in ("PAR_WORKER", "PAR_PYTHON_SHIM")}
    r = subprocess.run(hidden_tree([os.path.join(prefix, "bin", "par"), "call", str(pkg),
                                    "hello-python", '{"name":"Ada"}']), env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"message": "Hello, Ada!", "caller": None}, r.stdout


def test_installed_init_builds_against_installed_headers(tmp_path):
    """`par init --c` run from the install writes a Makefile that uses the
    install's headers, and the package builds and packs with them."""
    prefix = str(tmp_path / "prefix")
    install(prefix)
    par = os.path.join(prefix, "bin", "par")
    r = subprocess.run([par, "init", "inst-agent", "--c"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    mk = (tmp_path / "inst-agent" / "Makefile").read_text()
    prefix = os.path.realpath(prefix)  # par finds its install through realpath(3)
    assert f"PAR_INCLUDE ?= {prefix}/include\n" in mk and f"PAR ?= {par}\n" in mk, mk
    r = subprocess.run(["make", "apkg"], cwd=tmp_path / "inst-agent", capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"-I{prefix}/include" in r.stdout, r.stdout
    assert (tmp_path / "inst-agent-0.1.0.apkg").exists()


def test_readme_embedding_snippet(tmp_path):
    prefix = str(tmp_path / "prefix")
    install(prefix)
    work = tmp_path / "host"
    work.mkdir()
    (work / "embed.c").write_text(readme_c_snippet())
    shutil.copy(package("echo"), work / "echo-1.0.0.apkg")
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
    env.pop("PAR_WORKER", None)
    env.pop("PAR_PYTHON_SHIM", None)
    # exactly the README's command line, through a shell
    line = "cc embed.c $(pkg-config --cflags --libs par) -o embed"
    if SANITIZE:  # a sanitized libpar needs its runtime in the host program
        line += " -fsanitize=address,undefined"
        env["ASAN_OPTIONS"] = "detect_leaks=1"
        env["LSAN_OPTIONS"] = "suppressions=" + os.path.join(SOURCE, "tests", "lsan.supp")
    r = subprocess.run(line, shell=True,
                       cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(hidden_tree(["./embed"]), cwd=work, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == '{"text":"hi"}\n', r.stdout + r.stderr
    # the library says that it deployed an unsigned package, as the CLI does
    assert "UNSIGNED" in r.stderr, r.stderr


def test_pkg_config_names_only_what_libpar_links(tmp_path):
    """par.pc's Requires.private are the libraries libpar links: on a machine
    with only what scripts/install-deps.sh installs (libyaml, no libfyaml) the
    README's `pkg-config --cflags --libs par` must resolve, and a static link
    must get -lyaml for the manifest parser."""
    prefix = str(tmp_path / "prefix")
    install(prefix)
    r = subprocess.run(["pkg-config", "--variable", "pc_path", "pkg-config"], capture_output=True,
                       text=True, check=True)
    only = tmp_path / "pc"  # the system's .pc files less libfyaml, which libpar does not use
    only.mkdir()
    for d in r.stdout.strip().split(":") + [os.path.join(prefix, "lib", "pkgconfig")]:
        for f in os.listdir(d) if os.path.isdir(d) else []:
            if f.endswith(".pc") and f != "libfyaml.pc" and not (only / f).exists():
                (only / f).symlink_to(os.path.join(d, f))
    env = dict(os.environ, PKG_CONFIG_LIBDIR=str(only))
    env.pop("PKG_CONFIG_PATH", None)
    r = subprocess.run(["pkg-config", "--cflags", "--libs", "par"], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["pkg-config", "--static", "--libs", "par"], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "-lyaml" in r.stdout.split(), r.stdout + r.stderr
