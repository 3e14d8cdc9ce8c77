"""Real peers on loopback for the registry tests.

- An HTTPS registry: Python's http.server over TLS with a certificate from a
  throwaway CA made by the openssl command line. It counts requests per path
  and can answer 500 a number of times, cut a body short, or serve ETags.
- An S3-compatible store: s3rver from npm (tests/peers), objects uploaded
  with curl's own SigV4 signing, the same way `aws s3 cp` would send them.
- minisign keys and signatures made by the real minisign tool.
"""
import hashlib
import http.server
import os
import socket
import ssl
import subprocess
import threading
import time

from conftest import SOURCE

PEERS = os.path.join(SOURCE, "tests", "peers", "node_modules", ".bin")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- a throwaway CA and an HTTPS registry -------------------------------------------

def make_ca(d):
    """CA + server certificate for 127.0.0.1; returns (ca_pem, cert_pem, key_pem)."""
    ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    key, csr, crt = (os.path.join(d, n) for n in ("srv.key", "srv.csr", "srv.pem"))
    ext = os.path.join(d, "srv.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    q = dict(check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    ca_key, "-out", ca, "-days", "2", "-subj", "/CN=PAR test CA"], **q)
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
                    csr, "-subj", "/CN=127.0.0.1"], **q)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                    "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext], **q)
    return ca, crt, key


class Registry:
    """Files served over HTTPS from memory."""

    def __init__(self, cert, key):
        self.files = {}     # path -> bytes
        self.hits = {}      # path -> GET count
        self.fail = {}      # path -> remaining 500 answers
        self.truncate = set()
        self.no_etag = set()  # paths served without an ETag (no conditional GET)
        reg = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                p = self.path
                reg.hits[p] = reg.hits.get(p, 0) + 1
                if reg.fail.get(p, 0) > 0:
                    reg.fail[p] -= 1
                    body = b"upstream trouble"
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if p not in reg.files:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = reg.files[p]
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if p in reg.no_etag:
                    etag = None
                elif self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                if etag:
                    self.send_header("ETag", etag)
                self.end_headers()
                if p in reg.truncate:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.daemon_threads = True
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def put(self, path, data):
        self.files[path] = data
        return self.url + path

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- s3rver ---------------------------------------------------------------------------

class S3:
    ACCESS, SECRET = "S3RVER", "S3RVER"  # s3rver's built-in account

    def __init__(self, d, bucket="packages"):
        self.bucket = bucket
        self.log = open(os.path.join(d, "s3rver.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(PEERS, "s3rver"), "-d", os.path.join(d, "s3data"), "-a", "127.0.0.1",
             "-p", "0", "--configure-bucket", bucket],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + 30
        self.endpoint = None
        while time.time() < deadline and self.endpoint is None:
            with open(os.path.join(d, "s3rver.log")) as f:
                for line in f:
                    if "listening on" in line:
                        self.endpoint = "http://" + line.strip().rsplit(" ", 1)[1]
            if self.proc.poll() is not None:
                raise RuntimeError("s3rver exited: " + open(os.path.join(d, "s3rver.log")).read())
            time.sleep(0.05)
        if self.endpoint is None:
            raise RuntimeError("s3rver did not start")

    def put(self, key, path):
        """Uploads a file with a SigV4-signed PUT (curl's own signing)."""
        r = subprocess.run(
            ["curl", "-sS", "-f", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
             f"{self.ACCESS}:{self.SECRET}", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
             "-T", path, f"{self.endpoint}/{self.bucket}/{key}"],
            capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return f"s3://{self.bucket}/{key}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ---- minisign ---------------------------------------------------------------------------

class Key:
    """An unencrypted minisign key pair made by `minisign -G -W`."""

    def __init__(self, d, name):
        self.pub = os.path.join(d, name + ".pub")
        self.sec = os.path.join(d, name + ".key")
        subprocess.run(["minisign", "-G", "-W", "-f", "-p", self.pub, "-s", self.sec],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
        lines = open(self.pub).read().splitlines()
        self.line = lines[1].strip()
        # minisign 0.11 prints the id without leading zeros; PAR always shows 16 digits
        self.id = lines[0].rsplit(" ", 1)[1].strip().zfill(16)

    def sign(self, path, legacy=False):
        args = ["minisign", "-S", "-s", self.sec, "-m", path]
        if legacy:
            args.append("-l")
        subprocess.run(args, check=True, capture_output=True, stdin=subprocess.DEVNULL)
        return path + ".minisig"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
