"""nginx from Debian as a reverse proxy in front of PAR, for the tests of
streams through a proxy (test_runs_proxy.py, test_a2a.py): one process, no
master, everything under its own directory, proxy buffering off and a 3 s read
timeout, so only PAR's keep-alives hold a quiet stream open."""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest

from peers import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def need_nginx():
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (scripts/install-deps.sh installs nginx-light)")


class Nginx:
    """`locations`: (path prefix, upstream URL, extra directives) per location."""

    def __init__(self, d, locations, connections=64):
        os.makedirs(d)
        self.dir = d
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.error_log = pathlib.Path(d, "error.log")
        locs = "".join(f"""
        location {path} {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";{extra}
            proxy_buffering off;
            proxy_read_timeout 3s;
        }}""" for path, upstream, extra in locations)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections {connections}; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};{locs}
    }}
}}
""")
        stderr = os.path.join(d, "stderr")
        self.proc = subprocess.Popen([NGINX, "-p", d, "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=open(stderr, "w"))
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise AssertionError("nginx did not start: " + open(stderr).read())
                time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
