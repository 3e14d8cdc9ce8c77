"""par_worker.py: PAR's worker for Python agents.

Speaks the worker protocol (docs/worker-protocol.md) on file descriptor 3 and
runs the handlers of one package version, as pixell-kit lays it out
(`entrypoint: src.main:handler`). Standard library only; Python >= 3.9.

    python3 -I -S -B par_worker.py --fd 3 --root PKGDIR [--max-input N]
        [--max-output N] [--max-event N] [--memory-mb N] [--cpu-seconds N]
        [--site DIR]... --export NAME=MODULE:FUNCTION ...

Each package version runs in its own processes, so two packages that both
have a module `src.main` never share `sys.modules`, and a reload (a new
version, new processes) always imports the new code.
"""

import asyncio
import collections
import concurrent.futures
import contextvars
import importlib
import inspect
import io
import json
import logging
import os
import re
import socket
import struct
import sys
import threading
import time
import traceback

PROTOCOL = 1
HELLO, INVOKE, RESULT, ERROR, CALL, CALL_RESULT, LOG, USAGE, CHUNK, CANCEL = range(1, 11)
EVENT, EVENT_ACK, CALL_EVENT = 12, 13, 14
EVENT_WINDOW = 64  # EVENTs of one invocation sent and not yet granted back by EVENT_ACK
EVENT_TYPE = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")
HEADER = struct.Struct("<BBHIIIQ")  # type, version, flags, header_len, body_len, reserved, id
MAX_HEADER = 1 << 20
MAX_LOG_LINE = 8192
LOG_LINES_PER_SEC = 200  # the runtime's budget per worker, shared with fd 1/2 lines
MAX_THREADS = 256

# The invocation the current thread or task is serving (for print/logging).
_current = contextvars.ContextVar("par_current", default=None)


class AgentCallError(Exception):
    """A sub-agent call failed: `error` is PAR's stable error name."""

    def __init__(self, error, message, status=0):
        super().__init__("%s: %s" % (error, message))
        self.error = error
        self.message = message
        self.status = status


class Channel:
    """Frames over the protocol socket. Writes are whole frames, one at a time."""

    def __init__(self, fd, max_input):
        self.sock = socket.socket(fileno=fd)
        self.max_input = max_input
        self.lock = threading.Lock()
        self.buf = bytearray()

    def send(self, ftype, fid, header=None, body=b""):
        h = b"" if header is None else json.dumps(header, separators=(",", ":")).encode()
        frame = HEADER.pack(ftype, PROTOCOL, 0, len(h), len(body), 0, fid)
        with self.lock:
            self.sock.sendall(frame + h + body if len(body) < 65536 else frame + h)
            if len(body) >= 65536:
                self.sock.sendall(body)

    def recv(self):
        """Returns (type, id, header dict, body bytes), or None at end of stream."""
        while True:
            if len(self.buf) >= HEADER.size:
                ftype, ver, _flags, hlen, blen, _r, fid = HEADER.unpack_from(self.buf)
                if ver != PROTOCOL or hlen > MAX_HEADER or blen > self.max_input:
                    raise ValueError("bad frame (version %d, header %d, body %d bytes)" %
                                     (ver, hlen, blen))
                total = HEADER.size + hlen + blen
                if len(self.buf) >= total:
                    raw = bytes(self.buf[HEADER.size:total])
                    del self.buf[:total]
                    header = json.loads(raw[:hlen]) if hlen else {}
                    return ftype, fid, header, raw[hlen:]
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None
            self.buf += chunk


class Worker:
    def __init__(self, chan, root, exports, max_output, max_event=1 << 20):
        self.chan = chan
        self.root = root
        self.exports = exports  # [(name, "module:function")]
        self.handlers = []  # [(function, wants_context, kind)]: kind in HANDLER_KINDS
        self.max_output = max_output
        self.max_event = max_event
        self.memory_mb = 0
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=MAX_THREADS,
                                                          thread_name_prefix="par-handler")
        self.loop = None
        self.inflight = {}  # request id -> Invocation
        self.calls = {}  # call id -> [event, status, body, inv], or a CallStream
        self.lock = threading.Lock()
        self.next_call = 0
        self.log_window = 0
        self.log_count = 0
        # until HELLO every line goes out: the runtime keeps the last ones for
        # the start error (and rate-limits its log itself)
        self.starting = True
        self.log_dropped = 0

    # -- loading ---------------------------------------------------------------
    def load(self):
        sys.path.insert(0, self.root)
        os.chdir(self.root)
        cache = {}
        for name, entry in self.exports:
            module, _, func = entry.partition(":")
            if not module or not func:
                raise LoadError("export '%s': entrypoint '%s' is not module:function" %
                                (name or "(main)", entry))
            if module not in cache:
                try:
                    cache[module] = importlib.import_module(module)
                except BaseException as e:  # noqa: B036 (an agent may raise anything)
                    self.log("error", "cannot import %s:\n%s" % (module, import_traceback(e)))
                    raise LoadError("%scannot import %s: %s" %
                                    (self.where(e), module, exception_text(e))) from None
            fn = cache[module]
            for part in func.split("."):
                fn = getattr(fn, part, None)
                if fn is None:
                    path = self.relative(getattr(cache[module], "__file__", None) or "")
                    raise LoadError("%smodule %s has no attribute %s (entrypoint %s of %s)" %
                                    (path + ": " if path else "", module, func, entry,
                                     "sub-agent " + name if name else "the main export"))
            if not callable(fn):
                raise LoadError("%s:%s is not callable" % (module, func))
            self.handlers.append((fn, wants_context(fn), handler_kind(fn)))
        if any(h[2] in ("coro", "agen") for h in self.handlers):
            self.start_loop()

    def relative(self, path):
        """A file of the package as a path relative to its root; others as they are."""
        if path and os.path.isabs(path) and path.startswith(self.root + os.sep):
            return path[len(self.root) + 1:]
        return path

    def where(self, e):
        """'file:line: ' of a load failure: a SyntaxError's own position, else the
        innermost frame of the traceback in the package's files (the last one when
        none is)."""
        if isinstance(e, SyntaxError) and e.filename:
            return "%s:%s: " % (self.relative(e.filename), e.lineno or "?")
        frames = traceback.extract_tb(e.__traceback__)
        mine = [f for f in frames if f.filename.startswith(self.root + os.sep)]
        f = (mine or frames or [None])[-1]
        return "%s:%s: " % (self.relative(f.filename), f.lineno) if f else ""

    def start_loop(self):
        ready = threading.Event()

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            ready.set()
            try:
                self.loop.run_forever()
            except BaseException as e:  # noqa: B036 (sys.exit() in a coroutine ends the loop)
                self.log("error", "a coroutine ended the event loop with %s; the worker stops" %
                         type(e).__name__)
                os._exit(1)

        threading.Thread(target=run, name="par-asyncio", daemon=True).start()
        ready.wait()

    # -- logging ---------------------------------------------------------------
    def log(self, level, msg, inv=None):
        """Sends one LOG frame, rate limited like the runtime's output lines."""
        now = int(time.monotonic())
        with self.lock:
            if now != self.log_window:
                dropped, self.log_dropped = self.log_dropped, 0
                self.log_window, self.log_count = now, 0
            else:
                dropped = 0
            self.log_count += 1
            if self.log_count > LOG_LINES_PER_SEC and not self.starting:
                self.log_dropped += 1
                return
        if dropped:
            self._send_log("warn", "%d agent log lines dropped (rate limit)" % dropped, None)
        self._send_log(level, msg, inv if inv is not None else _current.get())

    def _send_log(self, level, msg, inv):
        msg = clean(msg)
        if len(msg) > MAX_LOG_LINE:
            msg = msg[:MAX_LOG_LINE] + "... (%d more characters)" % (len(msg) - MAX_LOG_LINE)
        # the frame id says which invocation the line belongs to: the runtime
        # takes the agent, request and trace from it (docs/worker-protocol.md)
        h = {"level": level, "msg": msg}
        try:
            self.chan.send(LOG, inv.wid if inv is not None else 0, h)
        except OSError:
            pass

    # -- invocations -----------------------------------------------------------
    def invoke(self, wid, header, body):
        x = header.get("x", 0)
        inv = Invocation(self, wid, header)
        if not isinstance(x, int) or not 0 <= x < len(self.handlers):
            self.answer_error(inv, "bad_request", "no export #%r in this worker" % (x,))
            return
        fn, with_ctx, kind = self.handlers[x]
        try:
            data = json.loads(body) if body else None
        except ValueError as e:
            self.answer_error(inv, "invalid_json", "input is not JSON: %s" % e)
            return
        with self.lock:
            self.inflight[wid] = inv
        args = (data, inv.context) if with_ctx else (data,)
        if kind in ("coro", "agen"):
            ctx = contextvars.copy_context()
            ctx.run(_current.set, inv)

            def start():
                try:
                    coro = fn(*args) if kind == "coro" else self.drive_agen(inv, fn(*args))
                    task = self.loop.create_task(coro, context=ctx) if sys.version_info >= (
                        3, 11) else ctx.run(self.loop.create_task, coro)
                except BaseException as e:  # noqa: B036
                    self.answer_exception(inv, e)
                    return
                inv.task = task
                if inv.cancelled:
                    task.cancel()
                task.add_done_callback(lambda t: self.finish_task(inv, t))

            self.loop.call_soon_threadsafe(start)
        else:
            try:
                self.pool.submit(self.run_sync, inv, fn, args)
            except RuntimeError as e:  # no thread left under the address-space limit
                self.answer_error(inv, "out_of_memory", "the worker cannot start another "
                                  "handler thread: %s" % e)

    def run_sync(self, inv, fn, args):
        with self.lock:
            live = self.inflight.get(inv.wid) is inv
        if not live:
            return  # answered already (no thread was free)
        if inv.cancelled:  # given up while queued: answered, so no grace runs out
            self.answer_error(inv, "cancelled", "the invocation was cancelled before it started")
            return
        token = _current.set(inv)
        inv.cpu0 = time.thread_time()
        try:
            out = fn(*args)
            if inspect.isgenerator(out):  # each value it yields is an event
                out = self.drive_gen(inv, out)
            elif inspect.isasyncgen(out):
                out = self.await_here(self.drive_agen(inv, out))
            elif inspect.isawaitable(out):  # a sync function that returned a coroutine
                out = self.await_here(out)
        except BaseException as e:  # noqa: B036
            self.answer_exception(inv, e)
            return
        finally:
            _current.reset(token)
        self.answer(inv, out)

    @staticmethod
    def drive_gen(inv, gen):
        """Runs a generator handler: each yielded value is an event; the output
        is its return value, else what it gave context.result(). A cancel closes
        it (GeneratorExit at its yield: its finally blocks run)."""
        try:
            while True:
                if inv.cancelled:
                    raise asyncio.CancelledError()
                try:
                    value = next(gen)
                except StopIteration as stop:
                    return stop.value if stop.value is not None else inv.result
                inv.context.emit(*yielded_event(value))
        finally:
            gen.close()

    @staticmethod
    async def drive_agen(inv, agen):
        """Runs an async generator handler: each yielded value is an event
        (awaiting the window); the output is what it gave context.result()."""
        try:
            async for value in agen:
                await inv.context.aemit(*yielded_event(value))
        finally:
            await agen.aclose()
        return inv.result

    def await_here(self, awaitable):
        if self.loop is None:
            self.start_loop()

        async def wrap():
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result()

    def finish_task(self, inv, task):
        if task.cancelled():
            if inv.cancelled:  # the runtime cancelled it: nobody reads the answer
                self.answer_error(inv, "cancelled", "the invocation was cancelled")
            else:
                self.answer_error(inv, "agent_timeout", "the handler was cancelled")
            return
        e = task.exception()
        if e is not None:
            self.answer_exception(inv, e)
        else:
            self.answer(inv, task.result())

    def answer(self, inv, out):
        try:
            body = json.dumps(out, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode()
        except MemoryError:
            self.answer_error(inv, "out_of_memory", "no memory left to serialise the output")
            return
        except (TypeError, ValueError, RecursionError, UnicodeError) as e:
            self.answer_error(inv, "invalid_agent_output",
                              "the handler returned a value that is not JSON-serialisable: %s" % e)
            return
        if len(body) > self.max_output:
            self.answer_error(inv, "output_too_large",
                              "output of %d bytes exceeds the cap of %d" %
                              (len(body), self.max_output))
            return
        h = {"units": inv.units} if inv.units else {}
        if inv.cpu0 is not None:  # sync handlers: this thread's CPU time (metering)
            h["cpu_ms"] = round((time.thread_time() - inv.cpu0) * 1e3, 3)
        self.done(inv)
        try:
            self.chan.send(RESULT, inv.wid, h, body)
        except OSError:
            os._exit(1)

    def answer_exception(self, inv, e):
        if inv.cancelled and isinstance(e, asyncio.CancelledError):
            self.answer_error(inv, "cancelled", "the invocation was cancelled")
            return
        if isinstance(e, AgentCallError) and e.error == "agent_timeout":
            self.answer_error(inv, "agent_timeout", e.message)
            return
        if isinstance(e, SystemExit):
            self.log("error", "handler called sys.exit(%r); the worker stops" % (e.code,), inv)
            os._exit(e.code if isinstance(e.code, int) else 1)
        if isinstance(e, MemoryError):
            limit = self.memory_mb
            self.answer_error(inv, "out_of_memory", "the handler ran out of memory" +
                              (" (the worker's limit is %d MB)" % limit if limit else ""))
            return
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip()
        self.log("error", "handler raised %s:\n%s" % (type(e).__name__, tb), inv)
        msg = str(e)
        self.answer_error(inv, "agent_error", "%s: %s" % (type(e).__name__, msg) if msg else
                          type(e).__name__, tb)

    def answer_error(self, inv, name, message, tb=None):
        self.done(inv)
        h = {"error": name, "message": clean(message)}
        if tb:
            h["traceback"] = clean(tb[-MAX_LOG_LINE:])
        try:
            self.chan.send(ERROR, inv.wid, h)
        except OSError:
            os._exit(1)

    def done(self, inv):
        with self.lock:
            self.inflight.pop(inv.wid, None)

    def cancel(self, wid):
        with self.lock:
            inv = self.inflight.get(wid)
        if inv is None:
            return
        inv.cancelled = True
        inv.events_cancelled()
        if inv.task is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(inv.task.cancel)

    def event_ack(self, wid, header):
        n = header.get("n", 0)
        with self.lock:
            inv = self.inflight.get(wid)
        if inv is not None and isinstance(n, int) and n > 0:
            inv.events_acked(n)

    def event_frame(self, data, event):
        """Checks an event as the runtime will (docs/worker-protocol.md
        "Events"): its type and its data serialised; raises when it is not one."""
        if event is None or event == "":
            event = "data"
        if not isinstance(event, str) or not EVENT_TYPE.match(event):
            raise ValueError("event type %r: 1 to 64 characters of [A-Za-z0-9._:-]" % (event,))
        try:
            body = json.dumps(data, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as e:
            raise TypeError("the data of event %r is not JSON-serialisable: %s" % (event, e)) \
                from None
        if len(body) > self.max_event:
            raise ValueError("event %r of %d bytes exceeds the cap of %d bytes "
                             "(runs.max_event_kb)" % (event, len(body), self.max_event))
        return event, body

    # -- sub-agent calls -------------------------------------------------------
    def call(self, inv, agent, data, on_done=None):
        """Sends CALL; `on_done` (or the returned slot's event) fires with the answer."""
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        slot = [on_done or threading.Event(), None, None, inv]
        with self.lock:
            self.next_call += 1
            cid = self.next_call
            self.calls[cid] = slot
        self.chan.send(CALL, cid, {"agent": agent, "parent": inv.wid}, body)
        return slot

    def call_stream(self, inv, agent, data, stream):
        """Sends CALL with "stream":true: the callee's events come as CALL_EVENT."""
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        with self.lock:
            self.next_call += 1
            cid = self.next_call
            self.calls[cid] = stream
        self.chan.send(CALL, cid, {"agent": agent, "parent": inv.wid, "stream": True}, body)

    def call_event(self, cid, header, body):
        with self.lock:
            stream = self.calls.get(cid)
        if isinstance(stream, CallStream):
            stream.push(("event", header.get("event") or "data", body))

    def add_units(self, inv, units):
        if isinstance(units, dict):  # the callee's usage counts in the caller's
            with self.lock:
                for k, v in units.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        inv.units[k] = inv.units.get(k, 0) + v

    def call_result(self, cid, header, body):
        with self.lock:
            slot = self.calls.pop(cid, None)
        if slot is None:
            return
        if isinstance(slot, CallStream):
            self.add_units(slot.inv, header.get("units"))
            slot.push(("end", header.get("status", 0), body))
            return
        slot[1] = header.get("status", 0)
        slot[2] = body
        self.add_units(slot[3], header.get("units"))
        callback = slot[0]
        if isinstance(callback, threading.Event):
            callback.set()
        else:
            callback()

    # -- main loop -------------------------------------------------------------
    def serve(self):
        while True:
            try:
                frame = self.chan.recv()
            except (OSError, ValueError) as e:
                self.log("error", "protocol: %s" % e)
                break
            if frame is None:
                break
            ftype, fid, header, body = frame
            if ftype == INVOKE:
                self.invoke(fid, header, body)
            elif ftype == CALL_RESULT:
                self.call_result(fid, header, body)
            elif ftype == CANCEL:
                self.cancel(fid)
            elif ftype == EVENT_ACK:
                self.event_ack(fid, header)
            elif ftype == CALL_EVENT:
                self.call_event(fid, header, body)
        os._exit(0)


def clean(text):
    """Text safe for a JSON header: lone surrogates (undecodable file names in an
    exception, say) become backslash escapes instead of invalid JSON, and so does
    NUL (the runtime refuses a header holding \\u0000, so the line was lost)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\0", "\\x00")


HANDLER_KINDS = ("sync", "gen", "coro", "agen")


def handler_kind(fn):
    """How a handler runs: a plain function, a generator (its values are
    events), a coroutine, an async generator."""
    if inspect.isasyncgenfunction(fn):
        return "agen"
    if inspect.iscoroutinefunction(fn):
        return "coro"
    if inspect.isgeneratorfunction(fn):
        return "gen"
    return "sync"


def yielded_event(value):
    """(data, event) of a value a generator handler yielded: a 2-tuple whose
    first item is a string is (event type, data); anything else is "data"."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return value[1], value[0]
    return value, "data"


def _set_done(fut):
    if not fut.done():
        fut.set_result(None)


StreamEvent = collections.namedtuple("StreamEvent", "event data")


class CallStream:
    """A sibling's invocation with its events (context.stream / astream).

    Iterate it with `for` or `async for`: each item is a StreamEvent (event,
    data). The iteration ends when the callee answers; `output` then holds its
    output, or AgentCallError is raised when it failed."""

    def __init__(self, inv, agent, data):
        self.inv = inv
        self.output = None
        self._items = collections.deque()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._wake = None  # an async iterator's waker
        self._ended = False
        inv.worker.call_stream(inv, agent, data, self)

    def push(self, item):
        """From the reader thread: an event or the end."""
        with self._lock:
            self._items.append(item)
            wake = self._wake
        self._ready.set()
        if wake is not None:
            wake()

    def _take(self):
        """The next StreamEvent, StopIteration at the end, or None when empty. Lock held."""
        if self._ended:
            raise StopIteration
        if not self._items:
            return None
        kind, a, b = self._items.popleft()
        if kind == "event":
            try:
                return StreamEvent(a, json.loads(b))
            except ValueError:
                return StreamEvent(a, None)
        self._ended = True
        self.output = call_outcome(a, b)
        raise StopIteration

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            with self._lock:
                item = self._take()
                if item is None:
                    self._ready.clear()
            if item is not None:
                return item
            self._ready.wait()

    def __aiter__(self):
        return self

    async def __anext__(self):
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                try:
                    item = self._take()
                except StopIteration:
                    raise StopAsyncIteration from None
                if item is None:
                    fut = loop.create_future()
                    self._wake = lambda: loop.call_soon_threadsafe(_set_done, fut)
            if item is not None:
                return item
            try:
                await fut
            finally:
                with self._lock:
                    self._wake = None


def call_outcome(status, body):
    """Turns a CALL_RESULT into the output or an AgentCallError."""
    try:
        out = json.loads(body) if body else None
    except ValueError:
        out = None
    if status == 0:
        return out
    err = out if isinstance(out, dict) else {}
    raise AgentCallError(err.get("error", "agent_error"), err.get("message", "call failed"), status)


class Context:
    """What a handler's second parameter receives."""

    def __init__(self, inv, header):
        self._inv = inv
        self.request_id = header.get("request_id", "")
        self.trace_id = header.get("trace_id", "")
        self.span_id = header.get("span_id", "")
        self.agent = header.get("agent", "")
        self.sub_agent = self.agent.partition("/")[2] or None
        self.subject = header.get("subject")
        self.tenant = header.get("tenant")
        self.deadline_ms = header.get("deadline_ms", 0)
        self.data = header.get("context") or {}

    # Dict-style access, as runtimes that pass the context as a dict offer it:
    # the runtime's own facts (sub_agent, request_id, ...) first, then the
    # request's `context` object.
    FACTS = ("request_id", "trace_id", "span_id", "agent", "sub_agent", "subject", "tenant",
             "deadline_ms")

    def __getitem__(self, key):
        if key in self.FACTS:
            return getattr(self, key)
        return self.data[key]

    def get(self, key, default=None):
        if key in self.FACTS:
            v = getattr(self, key)
            return default if v is None else v
        return self.data.get(key, default)

    def __contains__(self, key):
        return (key in self.FACTS and getattr(self, key) is not None) or key in self.data

    @property
    def cancelled(self):
        """True once the runtime cancelled this invocation (a run's cancel, its
        client gone, its deadline): a sync handler polls it; a coroutine gets
        asyncio.CancelledError instead."""
        return self._inv.cancelled

    def emit(self, data, event="data"):
        """Emits an event of a run (docs/python-agents.md): `data` any
        JSON-serialisable value, `event` its type (1-64 of [A-Za-z0-9._:-]).
        Raises TypeError / ValueError for what is not an event (nothing is
        sent), asyncio.CancelledError once the invocation is cancelled.

        From a sync handler (or any thread of it) it blocks while the run's
        slowest client is 64 events behind. Called inside a coroutine it never
        blocks the event loop: it returns an awaitable, done once the event
        went out; `await` it (or use `await context.aemit(...)`) to be held
        back by slow clients. In a unary invocation events are dropped."""
        etype, body = self._inv.worker.event_frame(data, event)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            self._inv.send_event(etype, body)
            return None
        return self._inv.queue_event(etype, body, loop)

    async def aemit(self, data, event="data"):
        """`await context.aemit(data, event=...)`: emit from a coroutine,
        waiting without blocking the loop while the window is full."""
        etype, body = self._inv.worker.event_frame(data, event)
        await self._inv.queue_event(etype, body, asyncio.get_running_loop())

    def result(self, value):
        """The output of a generator handler (an async generator cannot
        return a value); a sync generator's own return value comes first."""
        self._inv.result = value

    def stream(self, agent_id, input=None):  # noqa: A002 (the protocol's name)
        """Calls another agent and iterates its events as they come:
        `for ev in context.stream("sub", x): ev.event, ev.data`, then
        `.output`; `async for` works on it too (see astream)."""
        return CallStream(self._inv, agent_id, input)

    def astream(self, agent_id, input=None):  # noqa: A002
        """context.stream for coroutines: `async for ev in context.astream(...)`."""
        return CallStream(self._inv, agent_id, input)

    def call(self, agent_id, input=None):  # noqa: A002 (the protocol's name)
        """Calls another agent of this package (private sub-agents included).

        From a sync handler it returns the output; inside a coroutine it returns
        an awaitable: `await context.call("upper", {...})`. A failure raises
        AgentCallError with the callee's error name."""
        try:
            asyncio.get_running_loop()
            in_loop = True
        except RuntimeError:
            in_loop = False
        w = self._inv.worker
        if not in_loop:
            slot = w.call(self._inv, agent_id, input)
            slot[0].wait()
            return call_outcome(slot[1], slot[2])
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def finish():
            if fut.done():
                return
            try:
                fut.set_result(call_outcome(slot[1], slot[2]))
            except AgentCallError as e:
                fut.set_exception(e)

        slot = w.call(self._inv, agent_id, input, lambda: loop.call_soon_threadsafe(finish))
        return fut

    def usage(self, **units):
        """Reports usage units for this invocation (added up): usage(tokens=12)."""
        for k, v in units.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise TypeError("usage unit %s must be a number" % k)
            self._inv.units[k] = self._inv.units.get(k, 0) + v

    def log(self, msg, level="info"):
        self._inv.worker.log(level, str(msg), self._inv)


class Invocation:
    __slots__ = ("worker", "wid", "request_id", "agent", "trace_id", "context", "units",
                 "cancelled", "task", "cpu0", "result", "ev_cond", "ev_unacked", "ev_queue")

    def __init__(self, worker, wid, header):
        self.worker = worker
        self.wid = wid
        self.request_id = header.get("request_id", "")
        self.agent = header.get("agent", "")
        self.trace_id = header.get("trace_id", "")
        self.units = {}
        self.cancelled = False
        self.task = None
        self.cpu0 = None
        self.result = None
        # events: sent and not acknowledged; a coroutine's waiting for room
        self.ev_cond = threading.Condition()
        self.ev_unacked = 0
        self.ev_queue = collections.deque()  # (type, body, future, loop)
        self.context = Context(self, header)

    def _send(self, etype, body):
        """ev_cond held."""
        self.ev_unacked += 1
        try:
            self.worker.chan.send(EVENT, self.wid, {"event": etype}, body)
        except OSError:
            os._exit(1)

    def send_event(self, etype, body):
        """Blocks while the window is full (any thread but the event loop's)."""
        with self.ev_cond:
            while not self.cancelled and (self.ev_unacked >= EVENT_WINDOW or self.ev_queue):
                self.ev_cond.wait()
            if self.cancelled:
                raise asyncio.CancelledError()
            self._send(etype, body)

    def queue_event(self, etype, body, loop):
        """On the event loop: sends now if the window has room, else queues; the
        future is done once sent."""
        fut = loop.create_future()
        with self.ev_cond:
            if self.cancelled:
                fut.cancel()
            elif self.ev_unacked < EVENT_WINDOW and not self.ev_queue:
                self._send(etype, body)
                fut.set_result(None)
            else:
                self.ev_queue.append((etype, body, fut, loop))
        return fut

    def events_acked(self, n):
        """EVENT_ACK, on the reader thread: queued events go out, waiters wake."""
        with self.ev_cond:
            self.ev_unacked = max(0, self.ev_unacked - n)
            while self.ev_queue and self.ev_unacked < EVENT_WINDOW:
                etype, body, fut, loop = self.ev_queue.popleft()
                self._send(etype, body)
                loop.call_soon_threadsafe(_set_done, fut)
            self.ev_cond.notify_all()

    def events_cancelled(self):
        with self.ev_cond:
            for _t, _b, fut, loop in self.ev_queue:
                loop.call_soon_threadsafe(fut.cancel)
            self.ev_queue.clear()
            self.ev_cond.notify_all()


class LoadError(Exception):
    """The package's code cannot be loaded: agent_load_failed, with the file and
    line in the message (the traceback goes to the log before it)."""


def import_traceback(e):
    """The traceback of an import that failed, without the import machinery's
    own frames (importlib), which say nothing about the package."""
    te = traceback.TracebackException(type(e), e, e.__traceback__)
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if "importlib" not in f.filename and f.filename != __file__])
    return "".join(te.format()).rstrip()


def exception_text(e):
    """'SyntaxError: invalid syntax', 'ModuleNotFoundError: No module named x'."""
    if isinstance(e, SyntaxError):
        return "%s: %s" % (type(e).__name__, e.msg)
    msg = str(e)
    return "%s: %s" % (type(e).__name__, msg) if msg else type(e).__name__


def wants_context(fn):
    """True when the handler takes a second positional parameter."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


class LogStream(io.TextIOBase):
    """sys.stdout / sys.stderr of the agent: each line becomes a LOG frame."""

    def __init__(self, worker, level, name):
        self.worker = worker
        self.level = level
        self.name = name
        self.local = threading.local()

    def writable(self):
        return True

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        pending = getattr(self.local, "pending", "") + s
        while True:
            nl = pending.find("\n")
            if nl < 0:
                break
            self.worker.log(self.level, pending[:nl])
            pending = pending[nl + 1:]
        if len(pending) > MAX_LOG_LINE:
            self.worker.log(self.level, pending)
            pending = ""
        self.local.pending = pending
        return len(s)

    def flush(self):
        pending = getattr(self.local, "pending", "")
        if pending:
            self.local.pending = ""
            self.worker.log(self.level, pending)

    @property
    def encoding(self):
        return "utf-8"

    def isatty(self):
        return False

    def fileno(self):
        raise io.UnsupportedOperation("the agent's %s is a log stream" % self.name)


class LogHandler(logging.Handler):
    LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error",
              "CRITICAL": "error"}

    def __init__(self, worker):
        super().__init__()
        self.worker = worker

    def emit(self, record):
        try:
            msg = self.format(record)
        except Exception:  # noqa: BLE001 (a bad log call must not kill a handler)
            msg = str(record.msg)
        self.worker.log(self.LEVELS.get(record.levelname, "info"), msg)


def apply_limits(memory_mb, cpu_seconds):
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb:
        b = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (b, b))
    if cpu_seconds:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))


def parse_args(argv):
    opts = {"fd": 3, "root": None, "max_input": 16 << 20, "max_output": 16 << 20,
            "max_event": 1 << 20, "memory_mb": 0, "cpu_seconds": 0, "exports": [], "site": []}
    it = iter(argv)
    for a in it:
        try:
            v = next(it)
        except StopIteration:
            raise SystemExit("par_worker.py: %s needs a value" % a) from None
        if a == "--fd":
            opts["fd"] = int(v)
        elif a == "--root":
            opts["root"] = v
        elif a == "--max-input":
            opts["max_input"] = int(v)
        elif a == "--max-output":
            opts["max_output"] = int(v)
        elif a == "--max-event":
            opts["max_event"] = int(v)
        elif a == "--memory-mb":
            opts["memory_mb"] = int(v)
        elif a == "--cpu-seconds":
            opts["cpu_seconds"] = int(v)
        elif a == "--site":
            opts["site"].append(v)
        elif a == "--export":
            name, _, entry = v.partition("=")
            opts["exports"].append((name, entry))
        else:
            raise SystemExit("par_worker.py: unknown option %s" % a)
    if not opts["root"] or not opts["exports"]:
        raise SystemExit("par_worker.py: --root and at least one --export are required")
    return opts


def main(argv):
    opts = parse_args(argv)
    threading.stack_size(2 << 20)  # address space is limited: no 8 MiB thread stacks
    apply_limits(opts["memory_mb"], opts["cpu_seconds"])
    chan = Channel(opts["fd"], opts["max_input"])
    w = Worker(chan, os.path.abspath(opts["root"]), opts["exports"], opts["max_output"],
               opts["max_event"])
    w.memory_mb = opts["memory_mb"]
    # print() and logging become LOG frames; fds 1 and 2 stay the runtime's pipe
    # for output that bypasses sys.stdout (C extensions, os.write).
    sys.stdout = LogStream(w, "info", "stdout")
    sys.stderr = LogStream(w, "warn", "stderr")
    root = logging.getLogger()
    root.handlers[:] = [LogHandler(w)]
    root.setLevel(logging.INFO)
    if opts["site"]:
        import site  # -S: not imported at start; addsitedir also reads .pth files

        for d in opts["site"]:
            site.addsitedir(d)
    try:
        w.load()
    except LoadError as e:
        chan.send(ERROR, 0, {"error": "agent_load_failed", "message": clean(str(e))})
        os._exit(1)
    chan.send(HELLO, 0, {"protocol": PROTOCOL, "runtime": "python",
                         "python": "%d.%d.%d" % sys.version_info[:3], "pid": os.getpid(),
                         "exports": [n for n, _ in opts["exports"]]})
    w.starting = False
    w.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
