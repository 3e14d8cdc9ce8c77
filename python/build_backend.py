"""A PEP 517 build backend for the `par` module, with no dependency.

    make                                              # builds PAR (and libpar)
    python3 -m venv venv
    venv/bin/pip install --no-index --no-build-isolation ./python

Compiles par/_par.c (the stable ABI: the wheel is cp39-abi3, one build for
every CPython >= 3.9) and links libpar's static archive into it, every libpar
symbol kept inside the module, so the installed module needs no libpar.so.
libpar is found in $PAR_BUILD_DIR (libpar_core.a), else in ../build beside
this file, else where pkg-config's `par` says an installed libpar.a is
(`cmake --install build --prefix P`). The runtime the module starts finds
par-worker and the Python worker where that build or install put them
($PAR_WORKER overrides).

Why not setuptools: a venv made by `python3 -m venv` has no `wheel`
package, and setuptools before 70.1 cannot make a wheel without it; nothing
may come from the network. This file needs a C compiler, pkg-config and the
Python headers (Debian: build-essential, pkg-config, python3-dev).
"""
import base64
import hashlib
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import zipfile

NAME, VERSION = "par", "0.1.0"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEPS = "jansson yaml-0.1 libarchive libssl libcrypto libsodium sqlite3 libseccomp"
TAG = "cp39-abi3-" + sysconfig.get_platform().replace("-", "_").replace(".", "_")
FILES = ("__init__.py", "__init__.pyi", "py.typed")


def _pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def _libpar():
    """(static archive, include directory) of libpar."""
    for b in filter(None, (os.environ.get("PAR_BUILD_DIR"), os.path.join(ROOT, "build"))):
        a = os.path.join(os.path.abspath(b), "libpar_core.a")
        if os.path.exists(a):
            return a, os.path.join(ROOT, "include")
    libdir = _pkg_config("--variable=libdir", "par")
    if libdir and os.path.exists(os.path.join(libdir, "libpar.a")):
        return os.path.join(libdir, "libpar.a"), _pkg_config("--variable=includedir", "par")
    raise SystemExit("par: libpar not found. Build PAR first (`make` at the top of the source "
                     "tree), or set PAR_BUILD_DIR to a CMake build directory, or install PAR "
                     "(`cmake --install build --prefix P`, P/lib/pkgconfig on PKG_CONFIG_PATH)")


def _compile(out):
    archive, include = _libpar()
    libs = _pkg_config("--libs", *DEPS.split())
    if libs is None:
        raise SystemExit("par: pkg-config cannot find PAR's dependencies (%s): install them "
                         "(scripts/install-deps.sh)" % DEPS)
    pyinc = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(pyinc, "Python.h")):
        raise SystemExit("par: Python.h not found in %s: install the Python headers "
                         "(Debian: apt-get install python3-dev)" % pyinc)
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    cmd = [*cc, "-shared", "-fPIC", "-O2", "-g", "-fvisibility=hidden", "-D_GNU_SOURCE",
           "-I" + pyinc, "-I" + include, os.path.join(HERE, "par", "_par.c"), archive,
           "-Wl,--exclude-libs,ALL", *shlex.split(libs), "-lh2o-evloop", "-lz", "-lm",
           "-lpthread", "-ldl", "-o", out]
    print(" ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)


def _metadata():
    return ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n"
            "Summary: PAR, the Pixell Agent Runtime, embedded in Python\n"
            "Requires-Python: >=3.9\n" % (NAME, VERSION))


def _wheel_meta():
    return ("Wheel-Version: 1.0\nGenerator: par build_backend\nRoot-Is-Purelib: false\n"
            "Tag: %s\n" % TAG)


def _record_line(arc, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (arc, digest, len(data))


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    d = "%s-%s.dist-info" % (NAME, VERSION)
    os.makedirs(os.path.join(metadata_directory, d), exist_ok=True)
    for name, text in (("METADATA", _metadata()), ("WHEEL", _wheel_meta())):
        with open(os.path.join(metadata_directory, d, name), "w") as f:
            f.write(text)
    return d


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist = "%s-%s.dist-info" % (NAME, VERSION)
    wheel = "%s-%s-%s.whl" % (NAME, VERSION, TAG)
    with tempfile.TemporaryDirectory() as tmp:
        so = os.path.join(tmp, "_par.abi3.so")
        _compile(so)
        entries = []
        for f in FILES:
            with open(os.path.join(HERE, "par", f), "rb") as fh:
                entries.append(("par/" + f, fh.read()))
        with open(so, "rb") as fh:
            entries.append(("par/_par.abi3.so", fh.read()))
        entries.append((dist + "/METADATA", _metadata().encode()))
        entries.append((dist + "/WHEEL", _wheel_meta().encode()))
        entries.append((dist + "/top_level.txt", b"par\n"))
        record = [_record_line(a, d) for a, d in entries] + [dist + "/RECORD,,"]
        entries.append((dist + "/RECORD", ("\n".join(record) + "\n").encode()))
        path = os.path.join(wheel_directory, wheel)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for arc, data in entries:
                info = zipfile.ZipInfo(arc, (2020, 1, 1, 0, 0, 0))
                info.external_attr = (0o755 if arc.endswith(".so") else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, data)
    return wheel
