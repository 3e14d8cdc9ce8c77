"""Helpers of the runs tests (test_runs_*.py): an event-stream client over a raw
socket, the runs' agent fixtures, and small waits.

The client speaks HTTP/1.1 itself (chunked bodies included) so a test can drop
a stream at any byte, the way a client whose connection breaks does, and read
what the runtime sent up to there: whole events only count.
"""
import json
import os
import socket
import time
import urllib.parse

import requests

from conftest import package
from test_python import pypkg


class Event:
    __slots__ = ("id", "type", "data", "raw")

    def __init__(self, id, type, data, raw):
        self.id, self.type, self.data, self.raw = id, type, data, raw

    def __repr__(self):
        return f"Event({self.id}, {self.type!r}, {self.raw!r})"


def parse_event(block):
    """One event's lines (without the blank line) as an Event, or None for a
    block of comments only. Fails the test on framing the issue does not allow."""
    eid, etype, data, comments = None, "message", [], 0
    for line in block.split("\n"):
        if line.startswith(":"):
            comments += 1
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "id":
            eid = int(value)
        elif name == "event":
            etype = value
        elif name == "data":
            data.append(value)
        else:
            raise AssertionError(f"unexpected SSE field {line!r} in {block!r}")
    if eid is None and not data:
        return None
    assert eid is not None and len(data) == 1, f"event without id or one data line: {block!r}"
    return Event(eid, etype, json.loads(data[0]), data[0])


class Stream:
    """One HTTP request whose answer is read as an event stream.

    `status` and `headers` (lower-case names) are known after the constructor;
    a non-200 answer's body is in `body`. Events come from next_event() or
    events(); keep-alive comments are counted in `comments`.
    """

    def __init__(self, base, method, path, body=None, headers=None, timeout=30):
        u = urllib.parse.urlsplit(base)
        path = u.path.rstrip("/") + path  # a base behind a proxy's prefix
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        data = b"" if body is None else (body if isinstance(body, bytes)
                                         else json.dumps(body).encode())
        h = {"Host": u.netloc, "Accept": "text/event-stream"}
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        if body is not None or method == "POST":
            h["Content-Length"] = str(len(data))
        req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
        self.sock.sendall(req.encode() + b"\r\n" + data)
        self.raw = bytearray()  # received, not yet decoded
        self.payload = bytearray()  # decoded body bytes, not yet parsed into events
        self.total = 0  # decoded body bytes so far
        self.comments = 0
        self.eof = False
        self.closed = False
        self._chunk_left = 0
        self._read_head()

    # -- transport ---------------------------------------------------------------
    def _recv(self):
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.raw += chunk
        return True

    def _read_head(self):
        while b"\r\n\r\n" not in self.raw:
            if not self._recv():
                raise AssertionError("connection closed before the response head: "
                                     + bytes(self.raw).decode(errors="replace"))
        head, _, rest = bytes(self.raw).partition(b"\r\n\r\n")
        self.raw = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self.length = int(self.headers["content-length"]) if "content-length" in self.headers \
            else None
        if self.status != 200 or not self.headers.get("content-type", "").startswith(
                "text/event-stream"):
            self.body = self.read_all()
            self.close()

    def _decode(self):
        """Moves decoded body bytes from `raw` to `payload`; True at the body's end."""
        if not self.chunked:
            self.payload += self.raw
            self.total += len(self.raw)
            self.raw.clear()
            return self.length is not None and self.total >= self.length
        while True:
            if self._chunk_left > 0:
                take = min(self._chunk_left, len(self.raw))
                self.payload += self.raw[:take]
                self.total += take
                del self.raw[:take]
                self._chunk_left -= take
                if self._chunk_left > 0:
                    return False
                self._chunk_left = -2  # the chunk's CRLF
            if self._chunk_left == -2:
                if len(self.raw) < 2:
                    return False
                assert self.raw[:2] == b"\r\n", bytes(self.raw[:16])
                del self.raw[:2]
                self._chunk_left = 0
            i = self.raw.find(b"\r\n")
            if i < 0:
                return False
            size = int(bytes(self.raw[:i]).split(b";")[0], 16)
            del self.raw[:i + 2]
            if size == 0:
                return True
            self._chunk_left = size

    def read_all(self):
        """The rest of a plain (non-stream) body."""
        done = self._decode()
        while not done and self._recv():
            done = self._decode()
        out = bytes(self.payload)
        self.payload.clear()
        return out

    def json(self):
        return json.loads(self.body)

    # -- events ------------------------------------------------------------------
    def _take_event(self):
        while True:
            i = self.payload.find(b"\n\n")
            if i < 0:
                return None
            block = bytes(self.payload[:i]).decode()
            del self.payload[:i + 2]
            ev = parse_event(block)
            if ev is None:
                self.comments += block.count("\n") + 1
                continue
            return ev

    def next_event(self):
        """The next whole event, or None when the stream ended (or was dropped)."""
        while True:
            ev = self._take_event()
            if ev is not None:
                return ev
            if self.closed:
                return None
            ended = self._decode()
            if ended:
                self.closed = True
                self.sock.close()
                continue
            ev = self._take_event()  # what was decoded, before waiting for more
            if ev is not None:
                return ev
            if not self._recv():
                self.closed = True
                self.sock.close()

    def events(self):
        while True:
            ev = self.next_event()
            if ev is None:
                return
            yield ev

    def read_until_dropped(self, budget):
        """Reads until `budget` body bytes arrived (or the stream ended), drops
        the connection there — possibly inside an event — and returns the whole
        events in the first `budget` bytes, and whether the stream had ended."""
        ended = False
        while self.total < budget:
            if self._decode():
                ended = True
                break
            if not self._recv():
                ended = True
                break
        if self.total > budget:
            # what arrived past the budget was never read by this client
            del self.payload[len(self.payload) - (self.total - budget):]
            ended = False
        out = []
        while True:
            ev = self._take_event()
            if ev is None:
                break
            out.append(ev)
        self.close()
        return out, ended

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


def stream_run(base, run_id, after=None, header=True, timeout=30):
    """GET /runs/{id}/stream resuming after `after` (Last-Event-ID, or ?after=)."""
    path = f"/runs/{run_id}/stream"
    headers = {}
    if after is not None:
        if header:
            headers["Last-Event-ID"] = str(after)
        else:
            path += f"?after={after}"
    return Stream(base, "GET", path, headers=headers, timeout=timeout)


def start_run(base, agent, inp, extra=None, headers=None):
    body = {"input": inp}
    body.update(extra or {})
    r = requests.post(f"{base}/agents/{agent}/runs", json=body, headers=headers, timeout=30)
    assert r.status_code == 202, (r.status_code, r.text)
    j = r.json()
    assert r.headers["location"] == "/runs/" + j["run_id"], r.headers
    assert j["agent_id"] == agent.split("@")[0] or j["agent_id"] == agent, j
    assert j["status"] in ("queued", "running"), j
    return j["run_id"]


def get_run(base, run_id, headers=None):
    r = requests.get(f"{base}/runs/{run_id}", headers=headers, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def wait_run(base, run_id, statuses=("succeeded", "failed", "cancelled", "interrupted"),
             timeout=30):
    deadline = time.time() + timeout
    while True:
        j = get_run(base, run_id)
        if j["status"] in statuses:
            return j
        assert time.time() < deadline, f"run {run_id} still {j['status']}: {j}"
        time.sleep(0.05)


def wait_for(pred, timeout=15, what="condition"):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def agent_log(s, text):
    """The server's log lines whose message contains `text`."""
    return [l for l in s.lines() if text in str(l.get("msg", "")) or text in str(l.get("raw", ""))]


def replay(base, run_id):
    """Every event of an ended run, replayed from the start."""
    st = stream_run(base, run_id)
    assert st.status == 200, (st.status, getattr(st, "body", b""))
    evs = list(st.events())
    return evs


def check_ids(evs):
    ids = [e.id for e in evs]
    assert ids == list(range(1, len(ids) + 1)), ids


# ---- fixtures -----------------------------------------------------------------------

PY_AGENTS = '''\
import asyncio
import logging
import os
import time


def sync_gen(input):
    """A generator: each value yielded is an event; its return value the output."""
    n = input["n"]
    for i in range(n):
        if input.get("gap_ms"):
            time.sleep(input["gap_ms"] / 1000)
        yield {"i": i}
    return {"emitted": n}


async def async_gen(input, context):
    """An async generator: yields are events, context.result() the output."""
    n = input["n"]
    for i in range(n):
        if input.get("gap_ms"):
            await asyncio.sleep(input["gap_ms"] / 1000)
        yield {"i": i}
    context.result({"emitted": n})


def emitter(input, context):
    """context.emit from a sync handler, with an event type of its own (and
    `pad` characters of padding in each event)."""
    n = input["n"]
    for i in range(n):
        if input.get("gap_ms"):
            time.sleep(input["gap_ms"] / 1000)
        ev = {"i": i, "pad": "x" * input["pad"]} if input.get("pad") else {"i": i}
        context.emit(ev, event=input.get("event", "data"))
    return {"emitted": n}


async def async_emitter(input, context):
    n = input["n"]
    for i in range(n):
        if input.get("gap_ms"):
            await asyncio.sleep(input["gap_ms"] / 1000)
        context.emit({"i": i})
    return {"emitted": n}


async def coro_waits(input, context):
    """Waits for a cancel; says so in the log when it gets CancelledError."""
    context.emit({"waiting": True}, event="waiting")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        logging.getLogger("runs").warning("coroutine got CancelledError " + input["tag"])
        raise
    return "never cancelled"


def sync_polls(input, context):
    """Polls context.cancelled; says so in the log when it turns true."""
    context.emit({"waiting": True}, event="waiting")
    deadline = time.time() + 60
    while time.time() < deadline:
        if context.cancelled:
            logging.getLogger("runs").warning("sync handler saw context.cancelled " + input["tag"])
            return "stopped"
        time.sleep(0.01)
    return "never cancelled"


def version(input, context):
    """Emits slowly; every event and the output say which code ran."""
    for i in range(input["n"]):
        time.sleep(input["gap_ms"] / 1000)
        context.emit({"i": i, "code": VERSION})
    return {"code": VERSION}


def pid(input):
    return {"pid": os.getpid()}


def raw_event(input, context):
    """Sends an EVENT frame by hand on the protocol descriptor, as a broken
    worker would: `input` says what is wrong with it."""
    import __main__
    import gc
    import json
    import struct
    inv = __main__._current.get()
    worker = next(o for o in gc.get_objects() if type(o).__name__ == "Worker"
                  and hasattr(o, "inflight"))
    rid = next(k for k, v in list(worker.inflight.items()) if v is inv)
    header = json.dumps({"event": "data"}).encode()
    if input == "not_json":
        body = b"{not json"
    elif input == "oversized":
        body = b'"' + b"x" * (2 * 1024 * 1024) + b'"'
    else:
        body = b"{}"
    frame = struct.pack("<BBHIIIQ", 12, 1, 0, len(header), len(body), 0, rid)
    with worker.chan.lock:
        worker.chan.sock.sendall(frame + header + body)
    time.sleep(5)
    return "still running"


def emit_big(input, context):
    """context.emit of a value over runs.max_event_kb: answers what emit did."""
    try:
        context.emit("x" * (input * 1024))
    except Exception as e:
        context.emit({"after": "refusal"})
        return {"raised": type(e).__name__, "error": getattr(e, "error", None),
                "message": str(e)}
    return {"raised": None}
'''


def py_runs_package(tmp, version="1.0.0", name="runspy", marker=None):
    """The Python fixture package: every handler above as a public sub-agent."""
    names = ["sync_gen", "async_gen", "emitter", "async_emitter", "coro_waits", "sync_polls",
             "version", "pid", "raw_event", "emit_big"]
    src = PY_AGENTS + f"\n\nVERSION = {json.dumps(marker or version)}\n"
    return pypkg(tmp, name, {"src/agents.py": src}, version=version,
                 entrypoint="src.agents:sync_gen",
                 sub_agents=[(n.replace("_", "-"), True, "src.agents:" + n) for n in names],
                 extra="  par:\n    limits: {timeout_ms: 120000}\n")


def native_package():
    return package("runsnative")


def write_config(tmp, text):
    path = os.path.join(str(tmp), "par.yaml")
    with open(path, "w") as f:
        f.write("auth: {mode: off}\ntrust: {require_signatures: false}\n" + text)
    return path
