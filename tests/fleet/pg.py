"""PostgreSQL from Debian, started on loopback for one test module.

A cluster of its own (initdb into a temporary directory, trust authentication
on 127.0.0.1 only, a free port, its socket inside the data directory), owned
by the `postgres` system user when the tests run as root (PostgreSQL refuses
to run as root). `Postgres.url` is a libpq URL for the database `par`.
"""
import glob
import os
import pwd
import shutil
import signal
import subprocess
import time

from peers import free_port


def _bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (scripts/install-deps.sh --fleet)")
    return os.path.dirname(found[-1])


class Postgres:
    def __init__(self, d):
        self.bindir = _bindir()
        self.dir = os.path.join(d, "pgdata")
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.makedirs(self.dir, mode=0o700)
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
            for p in (d, os.path.dirname(d)):  # the postgres user must reach its directory
                os.chmod(p, os.stat(p).st_mode | 0o711)
        self._run("initdb", "-D", self.dir, "-A", "trust", "-U", "par", "--no-sync", "-E", "UTF8")
        with open(os.path.join(self.dir, "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.dir}'\nfsync = off\n"
                    "max_connections = 200\n")
        self.log = os.path.join(self.dir, "server.log")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "par", "par")
        self.url = f"postgresql://par@127.0.0.1:{self.port}/par"

    def _run(self, prog, *args, check=True):
        cmd = [os.path.join(self.bindir, prog), *args]
        if self.user is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"{prog} failed: {r.stdout}{r.stderr}")
        return r

    def start(self):
        """The postmaster is this process's child, in a process group of its own
        with its backends, so kill() can end all of them and reap them (pg_ctl
        would leave a zombie where nothing reaps orphans, and a zombie's pid in
        postmaster.pid stops the next start)."""
        kw = {}
        if self.user is not None:  # the postmaster itself is the child, not a runuser
            kw = dict(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        self._log = open(self.log, "a")
        self.proc = subprocess.Popen([os.path.join(self.bindir, "postgres"), "-D", self.dir],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True, **kw)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-U", "par",
                         check=False).returncode == 0:
                return
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited:\n" + open(self.log).read()[-3000:])
            time.sleep(0.1)
        raise RuntimeError("postgres did not start:\n" + open(self.log).read()[-3000:])

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def kill(self):
        """kill -9 of the postmaster and its backends (a crash the next start
        recovers from)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._log.close()

    def psql(self, sql):
        """Runs SQL and returns the rows as lists of strings (unaligned, tab-separated)."""
        r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                            self.url, "-c", sql], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr}")
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
