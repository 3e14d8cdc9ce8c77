"""par: PAR, the Pixell Agent Runtime, embedded in a Python program.

    import par
    with par.Runtime(packages="packages") as rt:
        print(rt.call("echo", text="hi"))

A `Runtime` runs agent packages in this process's runtime: native agents the
configuration trusts run in-process, every other agent (Python agents
always) in sandboxed worker processes. Calls need no HTTP; identity, deadline
and trace travel as they do for HTTP callers. See docs/python-embedding.md.

The C half (`par._par`) speaks par.h; this file owns the Python API: keyword
arguments, JSON, exceptions and asyncio. The GIL is released while PAR works,
and no Python code ever runs on PAR's threads: asynchronous answers are
queued in C and picked up by the event loop through an eventfd it watches.
"""

import asyncio
import json
import os
import sys
import threading
import weakref

from . import _par

__all__ = [
    "Runtime", "Error", "InvalidInput", "Unauthorized", "Forbidden", "NotFound",
    "AgentNotFound", "Conflict", "TooLarge", "PackageError", "Overloaded", "AgentError",
    "AgentCrashed", "Timeout", "Unavailable", "CallDepthExceeded", "Cancelled",
    "InternalError", "Event", "__version__",
]

__version__ = _par.version()


class Error(Exception):
    """A PAR error: `name` is the stable error name ("agent_timeout"),
    `message` the human text, `status` the HTTP status that goes with it (504),
    `request_id` the call's request id and `traceback` a Python agent's own
    traceback (or None)."""

    def __init__(self, name, message, status, request_id=None, traceback=None):
        super().__init__("%s: %s" % (name, message))
        self.name = name
        self.message = message
        self.status = status
        self.request_id = request_id
        self.traceback = traceback


class InvalidInput(Error):
    """The call or its input is malformed (400)."""


class Unauthorized(Error):
    """Credentials are missing or not valid (401)."""


class Forbidden(Error):
    """The caller (or the calling package) lacks a permission (403)."""


class NotFound(Error):
    """No such package, version or run (404, 410)."""


class AgentNotFound(NotFound):
    """No such agent (404): not deployed, or a typo in its id."""


class Conflict(Error):
    """The resource exists already or is in the wrong state (409)."""


class TooLarge(InvalidInput):
    """The input exceeds the agent's cap (413)."""


class PackageError(Error):
    """A package was refused: invalid, unsigned, untrusted, incompatible,
    unfetchable (422, 502 fetch_failed)."""


class Overloaded(Error):
    """The agent or the runtime is at its limit: retry later (429, 503 over_capacity)."""


class AgentError(Error):
    """The agent failed: it raised, answered something that is not JSON, or
    broke the protocol (500, 502, 507)."""


class AgentCrashed(AgentError):
    """The agent's worker died during the call (502); the runtime replaced it."""


class Timeout(Error):
    """The agent did not answer before its deadline (504)."""


class Unavailable(Error):
    """The agent has no live worker, or the runtime is draining (503)."""


class CallDepthExceeded(Error):
    """The chain of sub-agent calls is too deep (508)."""


class Cancelled(Error):
    """The call was cancelled (499)."""


class InternalError(Error):
    """The runtime failed: out of memory, input/output (500)."""


# Every stable error name of par.h's PAR_STATUS_MAP and its family.
_FAMILY = {
    "bad_request": InvalidInput, "invalid_json": InvalidInput,
    "invalid_argument": InvalidInput, "invalid_last_event_id": InvalidInput,
    "unauthorized": Unauthorized, "invalid_token": Unauthorized,
    "auth_unavailable": Unavailable,
    "forbidden": Forbidden,
    "not_found": NotFound, "run_not_found": NotFound, "run_expired": NotFound,
    "agent_not_found": AgentNotFound,
    "method_not_allowed": InvalidInput,
    "conflict": Conflict, "run_ended": Conflict, "run_active": Conflict,
    "payload_too_large": TooLarge,
    "invalid_package": PackageError, "unsafe_archive": PackageError,
    "incompatible_package": PackageError, "digest_mismatch": PackageError,
    "signature_missing": PackageError, "signature_invalid": PackageError,
    "untrusted_signer": PackageError, "fetch_failed": PackageError,
    "dependencies_unavailable": PackageError, "bad_archive": PackageError,
    "agent_load_failed": PackageError,
    "over_capacity": Overloaded, "too_many_runs": Overloaded,
    "agent_error": AgentError, "invalid_agent_output": AgentError,
    "output_too_large": AgentError, "worker_protocol_error": AgentError,
    "invalid_agent_event": AgentError, "scratch_quota_exceeded": AgentError,
    "agent_crashed": AgentCrashed,
    "agent_timeout": Timeout,
    "agent_unavailable": Unavailable, "draining": Unavailable, "not_ready": Unavailable,
    "interrupted": Unavailable,
    "call_depth_exceeded": CallDepthExceeded,
    "cancelled": Cancelled,
    "internal_error": InternalError, "out_of_memory": InternalError, "io_error": InternalError,
    "forwarding_loop": InternalError,
}

_STATUS = {code: (http, name, desc) for code, http, name, desc in _par.statuses()}


def _error(code, body=None, message=None):
    """The exception for status `code`: `body` is the error JSON of a call
    ({"error","message","request_id","traceback"}), or `message` a text."""
    http, name, desc = _STATUS.get(code, (500, "internal_error", "internal error"))
    request_id = traceback = None
    if body:
        try:
            doc = json.loads(body)
            message = doc.get("message", message)
            request_id = doc.get("request_id")
            traceback = doc.get("traceback")
        except ValueError:
            message = body.decode("utf-8", "replace")
    cls = _FAMILY.get(name, Error)
    return cls(name, (message or desc).rstrip("\n"), http, request_id, traceback)


def _in_worker():
    """True inside a PAR worker process: agent code, sandboxed, whose way to
    other agents is `context.call`."""
    main = sys.modules.get("__main__")
    return os.path.basename(getattr(main, "__file__", "") or "") == "par_worker.py" and \
        hasattr(main, "Channel")


_OPTIONS = ("_context", "_subject", "_tenant", "_timeout", "_trace_id", "_request_id")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_loads = json.loads


def _options(agent_id, kwargs):
    """Splits rt.call's keyword arguments into the arguments of _Runtime.call."""
    opts = {}
    if any(k[:1] == "_" for k in kwargs):
        for k in [k for k in kwargs if k[:1] == "_"]:
            if k not in _OPTIONS:
                raise TypeError("unknown option %s= (options: %s; an input key that starts "
                                "with '_' goes in input={...})" % (k, ", ".join(_OPTIONS)))
            opts[k] = kwargs.pop(k)
    if "input" in kwargs:
        if len(kwargs) != 1:
            raise TypeError("input= is the whole input: give it alone, or give the input's "
                            "keys as keyword arguments")
        value = kwargs["input"]
    else:
        value = kwargs
    if not isinstance(agent_id, str):
        raise TypeError("agent_id must be a str, not %s" % type(agent_id).__name__)
    try:
        args = {"input": _dumps(value).encode()}
    except (TypeError, ValueError) as e:
        raise InvalidInput("invalid_json", "the input cannot be JSON: %s" % e, 400) from None
    if not opts:
        return args
    ctx = opts.get("_context")
    if ctx is not None:
        if not isinstance(ctx, dict):
            raise TypeError("_context must be a dict")
        args["context"] = _dumps(ctx).encode()
    for key in ("subject", "tenant", "trace_id", "request_id"):
        v = opts.get("_" + key)
        if v is not None:
            if not isinstance(v, str):
                raise TypeError("_%s must be a str" % key)
            args[key] = v
    t = opts.get("_timeout")
    if t is not None:
        if not isinstance(t, (int, float)) or isinstance(t, bool) or t <= 0:
            raise ValueError("_timeout is in seconds and must be > 0")
        args["timeout_ms"] = max(1, int(round(t * 1000)))
    return args


class Event:
    """One event of a streamed run: `id` its sequence number (1 = run.started),
    `event` its type ("run.started", the agent's type, "data" by default,
    "run.completed"), `data` its JSON value as Python objects."""

    __slots__ = ("id", "event", "data")

    def __init__(self, id, event, data):
        self.id, self.event, self.data = id, event, data

    def __repr__(self):
        return "Event(id=%r, event=%r, data=%r)" % (self.id, self.event, self.data)

    def __eq__(self, other):
        return isinstance(other, Event) and \
            (self.id, self.event, self.data) == (other.id, other.event, other.data)


class Runtime:
    """A PAR runtime in this process.

    config: None (the local default: unsigned packages accepted, state in
    ./var), the path of a `par serve` configuration file, or a dict of the
    same keys ({"isolation": "in-process", "trusted": ["echo"], ...}), read
    and checked by the same loader: a typo raises InvalidInput naming it.
    packages: a folder whose .apkg files are deployed now (not watched).
    """

    def __init__(self, config=None, packages=None):
        if _in_worker():
            raise Forbidden("forbidden", "par.Runtime cannot run inside a PAR worker: agent "
                            "code reaches other agents with context.call(agent_id, input)", 403)
        kw = {}
        if isinstance(config, dict):
            kw["config_text"] = json.dumps(config).encode()
        elif isinstance(config, (str, os.PathLike)):
            kw["config_file"] = os.fspath(config)
        elif config is not None:
            raise TypeError("config must be None, a file path or a dict")
        try:
            self._rt = _par._Runtime(**kw)
        except RuntimeError as e:
            if len(e.args) == 2 and isinstance(e.args[0], int):
                raise _error(e.args[0], message=e.args[1]) from None
            raise
        self._ports = weakref.WeakKeyDictionary()
        self._ports_lock = threading.Lock()
        self._streams = weakref.WeakSet()
        if packages is not None:
            if self._rt.deploy_dir(os.fspath(packages)) != 0:
                self._rt.close()
                raise NotFound("not_found", "cannot read the packages folder %s" % packages, 404)

    # -- lifetime
    def close(self):
        """Stops the workers and frees the runtime. Blocking calls in flight
        in other threads finish first (within their deadlines); asynchronous
        calls in flight fail with `draining` (Unavailable); later calls raise
        ValueError. Idempotent."""
        rt = getattr(self, "_rt", None)
        if rt is not None:
            for c in list(getattr(self, "_streams", ())):
                c.close()  # their runs are cancelled; a stream never outlives its runtime
            rt.close()  # the loops' readers stay: they deliver the last answers

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- packages
    def deploy(self, path_or_url, sha256=None):
        """Deploys an .apkg file, a package directory or a URL (https://,
        s3://) and returns its package record (the dict GET /runtime/packages
        lists). Blocks until its workers are ready; PackageError on refusal."""
        st, text = self._rt.deploy(os.fspath(path_or_url), sha256)
        if st != 0:
            raise _error(st, message=text)
        return _loads(text)

    def remove(self, name, version=None):
        """Removes a package (every version, or one). NotFound when absent."""
        st = self._rt.remove(name, version)
        if st != 0:
            raise _error(st, message="no package %s%s" % (name, "@" + version if version else ""))

    def packages(self):
        """The package versions held, failed deploys included: a list of dicts."""
        st, text = self._rt.packages()
        if st != 0:
            raise _error(st, message=text)
        return _loads(text)

    def agents(self, include_private=False):
        """The agents: [{"id","package","version","description","public"}]."""
        return self._rt.agents(include_private)

    def metrics(self):
        """The runtime's metrics in the Prometheus text format (as GET /metrics)."""
        st, text = self._rt.metrics()
        if st != 0:
            raise _error(st, message=text)
        return text

    # -- calls
    def call(self, agent_id, /, **kwargs):
        """Calls an agent and returns its output as Python objects.

        The keyword arguments are the input object (rt.call("echo", text="hi")
        sends {"text": "hi"}); input=... gives the whole input instead (any
        JSON value, or keys that are not identifiers). Options: _context
        (dict), _subject, _tenant, _timeout (seconds; can only lower the
        package's deadline), _trace_id (a W3C traceparent or a trace id),
        _request_id. Raises a par.Error subclass when the call fails.
        Releases the GIL while the agent works."""
        for k in kwargs:  # the common case, only input keywords, without _options()
            if k[0] == "_" or k == "input":
                st, data = self._rt.call(agent_id, **_options(agent_id, kwargs))
                break
        else:
            try:
                body = _dumps(kwargs).encode()
            except (TypeError, ValueError):
                body = _options(agent_id, kwargs)["input"]  # raises InvalidInput
            st, data = self._rt.call(agent_id, body)
        if st == 0:
            return _loads(data)
        raise _error(st, data)

    async def acall(self, agent_id, /, **kwargs):
        """call() for asyncio: never blocks the event loop. Cancelling the
        awaiting task cancels the call (its worker is sent CANCEL)."""
        args = _options(agent_id, kwargs)
        loop = asyncio.get_running_loop()
        port = self._port(loop)
        fut = loop.create_future()
        handle = self._rt.start(port, fut, agent_id, **args)
        try:
            st, data = await fut
        except asyncio.CancelledError:
            handle.cancel()
            raise
        if st == 0:
            return _loads(data)
        raise _error(st, data)

    def _open_stream(self, agent_id, kwargs):
        s = self._rt.stream(agent_id, **_options(agent_id, kwargs))
        if isinstance(s, tuple):
            raise _error(s[0], s[1])
        box = _Box(s)
        self._streams.add(box)
        return box

    def stream(self, agent_id, /, **kwargs):
        """Starts a run of the agent (arguments as for call()) and returns an
        iterator of its events (par.Event: id, event, data) in order, from
        run.started to run.completed. A run that fails, is cancelled or
        interrupted raises the par.Error of its error body in place of its
        last event. Waiting releases the GIL; the run's flow control holds the
        agent back while the consumer is slow. Closing the iterator early (or
        dropping it) cancels the run."""
        return _events(self._open_stream(agent_id, kwargs))

    async def astream(self, agent_id, /, **kwargs):
        """stream() for asyncio: `async for ev in rt.astream(...)`; never blocks
        the event loop. Cancelling the consuming task, or closing the
        iterator early, cancels the run."""
        box = self._open_stream(agent_id, kwargs)
        s = box.s
        loop = asyncio.get_running_loop()
        waiter = [None]

        def wake():
            s.clear()
            fut = waiter[0]
            if fut is not None and not fut.done():
                fut.set_result(None)

        fd = s.fileno()
        loop.add_reader(fd, wake)
        try:
            while True:
                item = s.get(False)
                if item is None:
                    waiter[0] = loop.create_future()
                    await waiter[0]
                    continue
                seq, typ, data, st = item
                if typ is None:
                    if st != 0:
                        raise _error(st, data)
                    return
                if typ in _FAILED:
                    continue  # the end raises its error
                yield Event(seq, typ, _loads(data))
        finally:
            loop.remove_reader(fd)
            s.close()

    def _port(self, loop):
        port = self._ports.get(loop)
        if port is not None:
            return port
        with self._ports_lock:
            port = self._ports.get(loop)
            if port is None:
                port = _par._Port()
                loop.add_reader(port.fileno(), _deliver, port)
                self._ports[loop] = port
        return port


def _deliver(port):
    """On the loop's thread: the answers that arrived resolve their futures."""
    for fut, st, data in port.drain():
        if not fut.done():
            fut.set_result((st, data))


class _Box:
    """An open stream, held by its iterator; Runtime.close() knows it by a
    weak reference (a _Stream itself cannot be weakly referenced)."""

    __slots__ = ("s", "__weakref__")

    def __init__(self, s):
        self.s = s

    def close(self):
        self.s.close()


_FAILED = ("run.failed", "run.cancelled", "run.interrupted")


def _events(box):
    s = box.s
    try:
        while True:
            seq, typ, data, st = s.get(True)
            if typ is None:
                if st != 0:
                    raise _error(st, data)
                return
            if typ in _FAILED:
                continue  # the end raises its error
            yield Event(seq, typ, _loads(data))
    finally:
        s.close()
