"""The HTTP front of runs (docs/api.md "Runs", docs/runs.md): every route's
shape, event streams (framing, resume by Last-Event-ID and ?after=,
heartbeats, clients leaving), /runs/wait, invoke with Accept:
text/event-stream, ownership, bad input and CORS.

The agents are native: echo (answers at once, with a private sub-agent),
faulty/slow (sleeps its input in milliseconds) and the ticker fixture (emits
numbered events at a pace the test sets, tests/fixtures/ticker).
"""
import hashlib
import json
import random
import socket
import threading
import time

import pytest
import requests

from conftest import assert_error, package, run

ORIGIN = "https://app.example.com"


def sha(k):
    return hashlib.sha256(k.encode()).hexdigest()


ALICE, BOB, ADMIN = "k-alice-" + "a" * 24, "k-bob-" + "b" * 24, "k-admin-" + "c" * 24


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    d = tmp_path_factory.mktemp("conf")
    conf = d / "par.yaml"
    conf.write_text("""\
auth: {mode: off}
trust: {require_signatures: false}
runs: {heartbeat_ms: 200}
http:
  threads: 2   # events reach the streams from the supervisor's own thread
  cors: {origins: ["https://app.example.com", "http://localhost:3000"], credentials: true}
""")
    return server_factory([package("echo"), package("faulty"), package("ticker")],
                          args=["--config", str(conf)])


@pytest.fixture(scope="module")
def keyed(server_factory, tmp_path_factory):
    """API keys of two subjects and an admin; CORS on, to show preflights need no key."""
    d = tmp_path_factory.mktemp("conf")
    conf = d / "par.yaml"
    conf.write_text(f"""\
trust: {{require_signatures: false}}
http: {{cors: {{origins: ["{ORIGIN}"]}}}}
auth:
  mode: api_key
  open_paths: [/runtime/health, /runtime/ready]
  api_keys:
    - {{sha256: {sha(ALICE)}, subject: alice, permissions: [agents:invoke]}}
    - {{sha256: {sha(BOB)}, subject: bob, permissions: [agents:invoke]}}
    - {{sha256: {sha(ADMIN)}, subject: ops, permissions: [runtime:admin, agents:invoke]}}
""")
    return server_factory([package("echo"), package("faulty")], args=["--config", str(conf)])


@pytest.fixture(scope="module")
def plain(server_factory, tmp_path_factory):
    """No CORS configured: nothing is allowed."""
    d = tmp_path_factory.mktemp("conf")
    conf = d / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n")
    return server_factory([package("echo")], args=["--config", str(conf)])


def key(k):
    return {"X-API-Key": k}


def start(s, agent, body=None, kind="", headers=None, raw=None, stream=False):
    data = raw if raw is not None else json.dumps(body if body is not None else {"input": 1})
    return requests.post(f"{s.url}/agents/{agent}/runs{kind}", data=data, stream=stream,
                         headers={"content-type": "application/json", **(headers or {})},
                         timeout=30)


def sse(resp):
    """Parses a text/event-stream body: (events, comments)."""
    events, comments, cur = [], [], {}
    for line in resp.iter_lines(decode_unicode=True):
        if line == "":
            if cur:
                events.append(cur)
            cur = {}
        elif line.startswith(":"):
            comments.append(line)
        else:
            k, _, v = line.partition(": ")
            assert k in ("id", "event", "data"), line
            assert k not in cur, "a field twice in one event: " + line
            cur[k] = v
    assert cur == {}, "the stream ended inside an event"
    for e in events:
        e["id"] = int(e["id"])
        e["data"] = json.loads(e["data"])
    return events, comments


def assert_sse_headers(r):
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/event-stream"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-accel-buffering"] == "no"
    assert r.headers["x-request-id"]


def wait_status(s, run_id, want, headers=None, timeout=10):
    deadline = time.time() + timeout
    while True:
        j = s.get(f"/runs/{run_id}", headers=headers).json()
        if j["status"] in want or time.time() > deadline:
            return j
        time.sleep(0.05)


# ---- starting, reading, waiting -------------------------------------------------------------

def test_start_is_202_with_location(srv):
    r = start(srv, "echo", {"input": {"x": [1, 2]}, "metadata": {"ticket": 7}})
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"run_id", "agent_id", "status", "created_at"}
    assert body["agent_id"] == "echo" and body["status"] in ("queued", "running", "succeeded")
    assert r.headers["location"] == "/runs/" + body["run_id"]
    assert r.headers["content-type"] == "application/json"
    j = wait_status(srv, body["run_id"], ("succeeded",))
    assert j["status"] == "succeeded" and j["run_id"] == body["run_id"]
    assert j["agent_id"] == "echo" and j["metadata"] == {"ticket": 7}
    # "continue" is the default, and may be said
    r = start(srv, "echo", {"input": 1, "on_disconnect": "continue", "metadata": None})
    assert r.status_code == 202, r.text
    # a bare JSON value is the input, as with invoke
    r = start(srv, "echo", raw="[1,2,3]")
    assert r.status_code == 202, r.text


def test_wait_answers_like_invoke(srv):
    r = start(srv, "faulty/slow", {"input": 150}, kind="/wait")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output"] == 150 and body["agent_id"] == "faulty/slow" and body["run_id"]
    inv = srv.post("faulty/slow", {"input": 1}).json()
    assert set(inv) - {"run_id"} <= set(body) | {"duration_ms", "trace_id", "metadata"}
    assert srv.get("/runs/" + body["run_id"]).json()["status"] == "succeeded"


def test_wait_on_a_failing_agent_answers_its_error(srv):
    r = start(srv, "faulty/fail", {"input": 1}, kind="/wait")
    assert r.status_code >= 400
    body = r.json()
    assert body["error"] and body["message"] is not None and "request_id" in body


def wait_and_leave(s, body):
    """POST .../runs/wait on a raw connection, hang up before the answer;
    returns the run's id."""
    host, port = s.url.split("//")[1].split(":")
    data = json.dumps(body).encode()
    c = socket.create_connection((host, int(port)))
    c.sendall(b"POST /agents/faulty/slow/runs/wait HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" %
              (len(data), data))
    time.sleep(0.3)
    c.close()
    runs = s.get("/runs?agent=faulty/slow&limit=1").json()["runs"]
    assert runs, "the run is listed"
    return runs[0]["run_id"]


def test_wait_client_leaves_run_goes_on(srv):
    run_id = wait_and_leave(srv, {"input": 1800})
    time.sleep(0.7)  # the client's leaving is noticed within 500 ms
    assert srv.get(f"/runs/{run_id}").json()["status"] == "running"
    assert wait_status(srv, run_id, ("succeeded",))["status"] == "succeeded"


def test_wait_client_leaves_on_disconnect_cancel(srv):
    run_id = wait_and_leave(srv, {"input": 1500, "on_disconnect": "cancel"})
    assert wait_status(srv, run_id, ("cancelled",), timeout=5)["status"] == "cancelled"


# ---- event streams ---------------------------------------------------------------------------

def test_post_stream_framing(srv):
    r = start(srv, "echo", {"input": {"hello": "world"}}, kind="/stream", stream=True,
              headers={"X-Request-ID": "req-sse-1"})
    assert_sse_headers(r)
    assert r.headers["x-request-id"] == "req-sse-1"
    events, _ = sse(r)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event"] == "run.started"
    run_id = events[0]["data"]["run_id"]
    assert events[0]["data"]["agent_id"] == "echo"
    assert events[-1]["event"] == "run.completed"
    assert events[-1]["data"]["output"] == {"hello": "world"}
    assert events[-1]["data"]["run_id"] == run_id


def test_invoke_with_accept_streams(srv):
    r = requests.post(srv.url + "/agents/echo/invoke", json={"input": 5}, stream=True,
                      headers={"Accept": "text/event-stream"}, timeout=30)
    assert_sse_headers(r)
    events, _ = sse(r)
    assert events[0]["event"] == "run.started" and events[-1]["event"] == "run.completed"
    assert events[-1]["data"]["output"] == 5
    # without it, the unary answer is unchanged
    r = srv.post("echo", {"input": 5})
    assert r.headers["content-type"] == "application/json"
    assert r.json()["output"] == 5 and "run_id" not in r.json()
    r = srv.post("echo", {"input": 5}, headers={"Accept": "application/json, */*"})
    assert r.json()["output"] == 5


def test_heartbeat_while_silent(srv):
    r = start(srv, "faulty/slow", {"input": 1100}, kind="/stream", stream=True)
    assert_sse_headers(r)
    events, comments = sse(r)
    assert comments.count(": keep-alive") >= 3, comments
    assert [e["event"] for e in events] == ["run.started", "run.completed"]


def test_get_stream_replays_and_resumes(srv):
    run_id = start(srv, "faulty/slow", {"input": 400}).json()["run_id"]
    # live: follows until the end
    r = srv.get(f"/runs/{run_id}/stream", stream=True)
    assert_sse_headers(r)
    full, _ = sse(r)
    assert full[0]["event"] == "run.started" and full[-1]["event"] == "run.completed"
    n = len(full)
    # an ended run replays and closes, from any point
    for after in range(0, n):
        for how in ("header", "query"):
            if how == "header":
                r = srv.get(f"/runs/{run_id}/stream", headers={"Last-Event-ID": str(after)})
            else:
                r = srv.get(f"/runs/{run_id}/stream?after={after}")
            events, _ = sse(r)
            assert events == full[after:], (after, how)
    # the header wins over the URL (a reconnecting EventSource keeps its URL)
    events, _ = sse(srv.get(f"/runs/{run_id}/stream?after=0",
                            headers={"Last-Event-ID": str(n - 1)}))
    assert [e["id"] for e in events] == [n]
    # resuming at the last event: nothing more, the stream closes
    events, _ = sse(srv.get(f"/runs/{run_id}/stream", headers={"Last-Event-ID": str(n)}))
    assert events == []


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "1x", "", "99999999999999999999999", "0x10"])
def test_malformed_last_event_id(srv, bad):
    run_id = start(srv, "echo").json()["run_id"]
    r = srv.get(f"/runs/{run_id}/stream", headers={"Last-Event-ID": bad})
    assert_error(r, 400, "invalid_last_event_id")
    r = srv.get(f"/runs/{run_id}/stream", params={"after": bad})
    assert_error(r, 400, "invalid_last_event_id")


def test_resume_past_the_end(srv):
    run_id = start(srv, "echo", kind="/wait").json()["run_id"]
    assert_error(srv.get(f"/runs/{run_id}/stream?after=99"), 400, "invalid_last_event_id")
    assert_error(srv.get(f"/runs/{run_id}/stream", headers={"Last-Event-ID": "3"}), 400,
                 "invalid_last_event_id")


def stream_and_leave(s, agent, body, path="/runs/stream"):
    """Starts a stream, reads the first event, hangs up; returns the run id."""
    r = requests.post(f"{s.url}/agents/{agent}{path}", json=body, stream=True, timeout=30,
                      headers={"Accept": "text/event-stream"})
    assert_sse_headers(r)
    lines = r.iter_lines(decode_unicode=True)
    first = {}
    for line in lines:
        if line == "":
            break
        k, _, v = line.partition(": ")
        first[k] = v
    r.close()
    assert first["event"] == "run.started"
    return json.loads(first["data"])["run_id"]


def test_client_leaves_run_continues(srv):
    run_id = stream_and_leave(srv, "faulty/slow", {"input": 500})
    assert wait_status(srv, run_id, ("succeeded",))["status"] == "succeeded"
    # and its events are all there to read later
    events, _ = sse(srv.get(f"/runs/{run_id}/stream"))
    assert events[-1]["event"] == "run.completed"


def test_client_leaves_on_disconnect_cancel(srv):
    run_id = stream_and_leave(srv, "faulty/slow", {"input": 1500, "on_disconnect": "cancel"})
    assert wait_status(srv, run_id, ("cancelled",), timeout=5)["status"] == "cancelled"


def test_invoke_stream_client_leaves_cancels(srv):
    run_id = stream_and_leave(srv, "faulty/slow", {"input": 1500}, path="/invoke")
    assert wait_status(srv, run_id, ("cancelled",), timeout=5)["status"] == "cancelled"


# ---- agent events ------------------------------------------------------------------------------

def test_agent_events_in_order(srv):
    r = start(srv, "ticker", {"input": {"n": 5}}, kind="/stream", stream=True)
    assert_sse_headers(r)
    events, _ = sse(r)
    assert [e["id"] for e in events] == list(range(1, 8))
    assert [e["event"] for e in events] == ["run.started"] + ["data"] * 5 + ["run.completed"]
    assert [e["data"]["i"] for e in events[1:6]] == [1, 2, 3, 4, 5]
    assert events[-1]["data"]["output"] == {"count": 5}


def test_agent_event_types_and_big_events(srv):
    r = start(srv, "ticker", {"input": {"n": 2, "type": "token"}}, kind="/stream", stream=True)
    events, _ = sse(r)
    assert [e["event"] for e in events] == ["run.started", "token", "token", "run.completed"]
    # events bigger than one read (64 KiB) arrive whole and in order
    r = start(srv, "ticker", {"input": {"n": 6, "pad": 100000}}, kind="/stream", stream=True)
    events, _ = sse(r)
    assert [e["data"]["i"] for e in events[1:-1]] == [1, 2, 3, 4, 5, 6]
    assert all(len(e["data"]["pad"]) == 100000 for e in events[1:-1])


def test_resume_a_live_run_after_drops(srv):
    """Clients drop at random points and resume by Last-Event-ID: every event
    arrives exactly once and in order."""
    n = 40
    run_id = start(srv, "ticker", {"input": {"n": n, "ms": 15}}).json()["run_id"]
    got, rng = [], random.Random(18)
    while True:
        headers = {"Last-Event-ID": str(got[-1]["id"])} if got else {}
        r = srv.get(f"/runs/{run_id}/stream", headers=headers, stream=True)
        assert_sse_headers(r)
        take, cur, ended = rng.randint(1, 8), {}, True
        for line in r.iter_lines(decode_unicode=True):
            if line == "":
                if cur:
                    got.append({"id": int(cur["id"]), "event": cur["event"]})
                    cur = {}
                    take -= 1
                    if take == 0:
                        ended = False
                        break
            elif not line.startswith(":"):
                k, _, v = line.partition(": ")
                cur[k] = v
        r.close()
        if ended or got[-1]["event"] == "run.completed":
            break
    assert [e["id"] for e in got] == list(range(1, n + 3))
    assert got[-1]["event"] == "run.completed"
    assert wait_status(srv, run_id, ("succeeded",))["status"] == "succeeded"


def churn(url, seed, until, codes, errors):
    """One client: streams started, read a little, dropped and resumed; invokes
    with Accept: text/event-stream dropped early. Every status seen goes in
    `codes`, an exception in `errors`."""
    try:
        churn_until(url, random.Random(seed), until, codes)
    except Exception as e:  # noqa: BLE001 - reported by the test
        errors.append(repr(e))


def churn_until(url, rng, until, codes):
    s = requests.Session()
    while time.time() < until:
        if rng.random() < 0.5:
            r = s.post(f"{url}/agents/ticker/runs", timeout=30,
                       json={"input": {"n": 30, "ms": rng.choice([0, 1, 5])}})
            codes.append(r.status_code)
            run_id, last = r.json()["run_id"], None
            for _ in range(rng.randint(1, 4)):
                h = {"Last-Event-ID": str(last)} if last else {}
                r = s.get(f"{url}/runs/{run_id}/stream", headers=h, stream=True, timeout=30)
                codes.append(r.status_code)
                take = rng.randint(1, 8)
                for line in r.iter_lines(decode_unicode=True):
                    if line.startswith("id: "):
                        last, take = int(line[4:]), take - 1
                        if take == 0:
                            break
                r.close()
        elif rng.random() < 0.5:
            # a fast run: a message to the stream's loop for every event
            r = s.post(f"{url}/agents/ticker/runs/stream", stream=True, timeout=30,
                       json={"input": {"n": 5000, "ms": 0}, "on_disconnect": "cancel"})
            codes.append(r.status_code)
            time.sleep(rng.random() * 0.2)
            r.close()
        else:
            r = s.post(f"{url}/agents/ticker/invoke", stream=True, timeout=30,
                       json={"input": {"n": rng.randint(1, 6), "pad": rng.choice([10, 50000])}},
                       headers={"Accept": "text/event-stream"})
            codes.append(r.status_code)
            for _ in r.iter_content(rng.choice([100, 4096])):
                if rng.random() < 0.3:
                    break
            r.close()
        if rng.random() < 0.3:
            s = requests.Session()  # a new connection, possibly on the other loop


def test_two_loops_under_streams_that_come_and_go(srv):
    """Streams dropped and resumed from twelve clients at once, for a few
    seconds, on a server with two HTTP loops: run news crosses threads to
    both loops all the time. Every answer is 200/202, the server keeps
    serving, and (under the sanitizers) its log has no report."""
    codes, errors, until = [], [], time.time() + 6
    threads = [threading.Thread(target=churn, args=(srv.url, i, until, codes, errors))
               for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(codes) > 50 and set(codes) <= {200, 202}, sorted(set(codes))
    assert srv.get("/runtime/health").status_code == 200


def test_cancel_reaches_the_agent(srv):
    r = start(srv, "ticker", {"input": {"n": 100000, "ms": 10}}, kind="/stream", stream=True)
    lines = r.iter_lines(decode_unicode=True)
    first = {}
    for line in lines:
        if line == "":
            break
        k, _, v = line.partition(": ")
        first[k] = v
    run_id = json.loads(first["data"])["run_id"]
    time.sleep(0.2)
    assert requests.post(f"{srv.url}/runs/{run_id}/cancel").status_code == 202
    rest = []
    for line in lines:  # the stream ends with run.cancelled
        if line.startswith("event: "):
            rest.append(line[7:])
    assert rest and rest[-1] == "run.cancelled", rest[-5:]
    assert wait_status(srv, run_id, ("cancelled",))["status"] == "cancelled"


# ---- cancel, delete, list --------------------------------------------------------------------

def test_cancel_and_delete(srv):
    run_id = start(srv, "faulty/slow", {"input": 1500}).json()["run_id"]
    assert_error(requests.delete(f"{srv.url}/runs/{run_id}"), 409, "run_active")
    r = requests.post(f"{srv.url}/runs/{run_id}/cancel")
    assert r.status_code == 202, r.text
    assert r.json()["run_id"] == run_id
    assert wait_status(srv, run_id, ("cancelled",))["status"] == "cancelled"
    assert_error(requests.post(f"{srv.url}/runs/{run_id}/cancel"), 409, "run_ended")
    r = requests.delete(f"{srv.url}/runs/{run_id}")
    assert r.status_code == 204, r.text
    assert_error(srv.get(f"/runs/{run_id}"), 404, "run_not_found")


def test_cancel_of_an_ended_run(srv):
    run_id = start(srv, "echo", kind="/wait").json()["run_id"]
    assert_error(requests.post(f"{srv.url}/runs/{run_id}/cancel"), 409, "run_ended")
    assert srv.get(f"/runs/{run_id}").json()["status"] == "succeeded"


def test_unknown_run(srv):
    for r in (srv.get("/runs/nosuchrun"), srv.get("/runs/nosuchrun/stream"),
              requests.post(srv.url + "/runs/nosuchrun/cancel"),
              requests.delete(srv.url + "/runs/nosuchrun")):
        assert_error(r, 404, "run_not_found")
    assert_error(srv.get("/runs/bad%01id"), 400, "bad_request")
    assert_error(requests.put(srv.url + "/runs/x"), 405, "method_not_allowed")


def test_list(srv):
    a = start(srv, "echo", kind="/wait").json()["run_id"]
    b = start(srv, "faulty/slow", {"input": 1}, kind="/wait").json()["run_id"]
    ids = [x["run_id"] for x in srv.get("/runs").json()["runs"]]
    assert a in ids and b in ids
    only = srv.get("/runs", params={"agent": "faulty/slow"}).json()["runs"]
    assert only and all(x["agent_id"] == "faulty/slow" for x in only)
    page = srv.get("/runs?limit=1").json()
    assert len(page["runs"]) == 1 and "next_cursor" in page
    assert srv.get("/runs?status=succeeded").status_code == 200


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "limit=", "status=done",
                                   "colour=red", "limit=1&limit=2", "agent=%00", "cursor="])
def test_list_bad_query(srv, query):
    assert_error(srv.get("/runs?" + query), 400, "bad_request")


# ---- bad input when starting ---------------------------------------------------------------------

@pytest.mark.parametrize("body", [{"input": 1, "on_disconnect": "later"},
                                  {"input": 1, "on_disconnect": 1},
                                  {"input": 1, "metadata": [1]},
                                  {"input": 1, "metadata": "x"},
                                  {"input": 1, "context": 3}])
def test_bad_body(srv, body):
    for kind in ("", "/stream", "/wait"):
        assert_error(start(srv, "echo", body, kind=kind), 400, "bad_request")


def test_invalid_json_and_unknown_agents(srv):
    assert_error(start(srv, "echo", raw="{nope"), 400, "invalid_json")
    assert_error(start(srv, "nosuch"), 404, "agent_not_found")
    # a private sub-agent cannot be started as a run, in any form
    for kind in ("", "/stream", "/wait"):
        assert_error(start(srv, "echo/upper", kind=kind), 404, "agent_not_found")
    r = requests.post(srv.url + "/agents/echo/upper/invoke", json={"input": "a"},
                      headers={"Accept": "text/event-stream"})
    assert_error(r, 404, "agent_not_found")


def test_access_log_and_metrics(srv):
    start(srv, "echo", kind="/wait")
    text = requests.get(srv.url + "/metrics").text
    for label in ("runs_wait", "runs", "run_stream", "run"):
        assert f'par_http_requests_total{{route="{label}"' in text, label
    lines = [l for l in srv.lines() if l.get("msg") == "request"]
    assert any(l["path"].endswith("/runs/wait") and l["status"] == 200 for l in lines)
    assert any(l["path"].endswith("/runs/stream") and l.get("status") == 200 for l in lines)


# ---- ownership ---------------------------------------------------------------------------------------

def test_ownership(keyed):
    s = keyed
    r = start(s, "faulty/slow", {"input": 300}, headers=key(ALICE))
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    # another subject: the 404 of an unknown run, for read, stream, cancel and delete
    for r in (s.get(f"/runs/{run_id}", headers=key(BOB)),
              s.get(f"/runs/{run_id}/stream", headers=key(BOB)),
              requests.post(f"{s.url}/runs/{run_id}/cancel", headers=key(BOB)),
              requests.delete(f"{s.url}/runs/{run_id}", headers=key(BOB))):
        assert_error(r, 404, "run_not_found")
    assert run_id not in [x["run_id"] for x in
                          s.get("/runs", headers=key(BOB)).json()["runs"]]
    # the owner and the admin can
    assert s.get(f"/runs/{run_id}", headers=key(ALICE)).status_code == 200
    assert s.get(f"/runs/{run_id}", headers=key(ADMIN)).status_code == 200
    assert run_id in [x["run_id"] for x in s.get("/runs", headers=key(ALICE)).json()["runs"]]
    assert run_id in [x["run_id"] for x in s.get("/runs", headers=key(ADMIN)).json()["runs"]]
    events, _ = sse(s.get(f"/runs/{run_id}/stream", headers=key(ADMIN)))
    assert events[-1]["event"] == "run.completed"
    # no credential at all
    assert_error(s.get(f"/runs/{run_id}"), 401, "unauthorized")
    assert_error(start(s, "echo"), 401, "unauthorized")
    # the admin cancels another subject's run
    run_id = start(s, "faulty/slow", {"input": 1500}, headers=key(ALICE)).json()["run_id"]
    assert requests.post(f"{s.url}/runs/{run_id}/cancel",
                         headers=key(ADMIN)).status_code == 202
    assert wait_status(s, run_id, ("cancelled",), headers=key(ALICE))["status"] == "cancelled"


# ---- CORS ---------------------------------------------------------------------------------------------

def test_cors_allowed_origin(srv):
    for r in (srv.post("echo", {"input": 1}, headers={"Origin": ORIGIN}),
              start(srv, "echo", headers={"Origin": ORIGIN}),
              srv.get("/runs", headers={"Origin": ORIGIN}),
              srv.get("/runs/nosuch", headers={"Origin": ORIGIN})):  # errors too
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert r.headers["vary"] == "Origin"
        assert r.headers["access-control-allow-credentials"] == "true"
        exposed = r.headers["access-control-expose-headers"]
        for h in ("X-Request-ID", "Location", "traceparent"):
            assert h in exposed
    r = start(srv, "echo", kind="/stream", headers={"Origin": "http://localhost:3000"})
    assert r.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_cors_other_origin_gets_nothing(srv):
    for origin in ("https://evil.example.com", "https://app.example.com.evil.com",
                   "http://app.example.com"):
        r = srv.post("echo", {"input": 1}, headers={"Origin": origin})
        assert r.status_code == 200
        assert "access-control-allow-origin" not in r.headers
    # the routes that are not for browsers never get the headers
    r = srv.get("/agents", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in r.headers


def test_cors_preflight(srv):
    r = requests.options(srv.url + "/agents/echo/runs/stream", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, last-event-id"})
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    for h in ("authorization", "content-type", "last-event-id", "x-request-id", "traceparent",
              "x-par-timeout-ms"):
        assert h in allowed
    assert int(r.headers["access-control-max-age"]) > 0
    r = requests.options(srv.url + "/runs/x/stream", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert r.status_code == 204 and "GET" in r.headers["access-control-allow-methods"]
    r = requests.options(srv.url + "/agents/echo/invoke", headers={"Origin": "https://evil.com"})
    assert_error(r, 403, "forbidden")
    assert "access-control-allow-origin" not in r.headers


def test_cors_preflight_needs_no_credentials(keyed):
    r = requests.options(keyed.url + "/agents/echo/invoke", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-credentials" not in r.headers
    # the real request still needs its key, and its 401 is readable by the page
    r = keyed.post("echo", {"input": 1}, headers={"Origin": ORIGIN})
    assert_error(r, 401, "unauthorized")
    assert r.headers["access-control-allow-origin"] == ORIGIN


def test_cors_off_by_default(plain):
    r = plain.post("echo", {"input": 1}, headers={"Origin": ORIGIN})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = requests.options(plain.url + "/agents/echo/invoke", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert_error(r, 403, "forbidden")
    assert "http.cors.origins" in r.json()["message"]


@pytest.mark.parametrize("origins,creds,needle", [
    ('["*"]', "true", '"*" cannot be used with http.cors.credentials'),
    ('["https://app.example.com/"]', "false", "is not an origin"),
    ('["app.example.com"]', "false", "is not an origin"),
    ('["https://app.example.com:99999"]', "false", "is not an origin"),
    ('["https://app.example.com/path"]', "false", "is not an origin"),
])
def test_cors_misconfigured_is_refused(tmp_path, origins, creds, needle):
    conf = tmp_path / "par.yaml"
    conf.write_text(f"auth: {{mode: off}}\nhttp: {{cors: {{origins: {origins}, "
                    f"credentials: {creds}}}}}\n")
    r = run("config", "check", str(conf))
    assert r.returncode == 2, r.stdout + r.stderr
    assert needle in r.stderr and "http.cors.origins[0]" in r.stderr, r.stderr
    r = run("serve", "--config", str(conf), "--listen", "127.0.0.1:0",
            "--state-dir", str(tmp_path / "var"), "--packages", str(tmp_path))
    assert r.returncode != 0 and needle in r.stderr, r.stderr


# ---- limits -------------------------------------------------------------------------------------------

def test_too_many_runs(server_factory, tmp_path):
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n"
                    "limits: {runs_per_subject: 1}\n")
    s = server_factory([package("faulty")], args=["--config", str(conf)])
    first = start(s, "faulty/slow", {"input": 1000})
    assert first.status_code == 202, first.text
    for kind in ("", "/stream", "/wait"):
        r = start(s, "faulty/slow", {"input": 1}, kind=kind)
        assert_error(r, 429, "too_many_runs")
        assert int(r.headers["retry-after"]) >= 1
    # the unary invoke is not a run: unaffected
    assert s.post("faulty/slow", {"input": 1}).status_code == 200
    run_id = first.json()["run_id"]
    assert wait_status(s, run_id, ("succeeded",))["status"] == "succeeded"
    assert start(s, "faulty/slow", {"input": 1}).status_code == 202


# ---- HTTP/2 -----------------------------------------------------------------------------------------------

def test_http2_streams_and_resets(server_factory, tmp_path):
    """Over HTTP/2 (h2c, curl --http2-prior-knowledge) a stream is framed the
    same, and a reset stream is a client leaving: on_disconnect cancel cancels."""
    import shutil
    import subprocess
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    conf = tmp_path / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n"
                    "http: {http2: true}\nruns: {heartbeat_ms: 200}\n")
    s = server_factory([package("ticker"), package("faulty")], args=["--config", str(conf)])
    out = subprocess.run(["curl", "-sN", "--http2-prior-knowledge", "-XPOST",
                          "-H", "content-type: application/json",
                          "-d", '{"input": {"n": 3, "ms": 300}}',
                          s.url + "/agents/ticker/runs/stream"],
                         capture_output=True, text=True, timeout=30).stdout
    ids = [int(l[4:]) for l in out.splitlines() if l.startswith("id: ")]
    assert ids == [1, 2, 3, 4, 5], out
    assert ": keep-alive" in out and "event: run.completed" in out
    out = subprocess.run(["curl", "-sN", "--http2-prior-knowledge", "--max-time", "0.6",
                          "-XPOST", "-H", "content-type: application/json",
                          "-d", '{"input": 1500, "on_disconnect": "cancel"}',
                          s.url + "/agents/faulty/slow/runs/stream"],
                         capture_output=True, text=True, timeout=30).stdout
    run_id = json.loads(out.split("data: ", 1)[1].split("\n", 1)[0])["run_id"]
    assert wait_status(s, run_id, ("cancelled",), timeout=5)["status"] == "cancelled"


def test_heartbeat_changes_on_sighup(server_factory, tmp_path):
    import signal
    conf = tmp_path / "par.yaml"
    base = "auth: {mode: off}\ntrust: {require_signatures: false}\n"
    conf.write_text(base + "runs: {heartbeat_ms: 5000}\n")
    s = server_factory([package("faulty")], args=["--config", str(conf)])
    _, comments = sse(start(s, "faulty/slow", {"input": 900}, kind="/stream", stream=True))
    assert comments == []
    conf.write_text(base + "runs: {heartbeat_ms: 150}\n")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while not any("SIGHUP: configuration reloaded" in l.get("msg", "") for l in s.lines()):
        assert time.time() < deadline, "no reload"
        time.sleep(0.05)
    _, comments = sse(start(s, "faulty/slow", {"input": 900}, kind="/stream", stream=True))
    assert len(comments) >= 3, comments


def test_slow_client_throttles_the_agent(srv):
    """A client that does not read holds its run back (flow control: events
    are acknowledged only once written to the client), while the same run
    with no client goes at full speed; the slow client then gets every
    event once it reads."""
    n, inp = 6000, {"input": {"n": 6000, "pad": 1000}}
    host, port = srv.url.split("//")[1].split(":")
    c = socket.create_connection((host, int(port)))
    body = json.dumps(inp).encode()
    c.sendall(b"POST /agents/ticker/runs/stream HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" %
              (len(body), body))
    control = start(srv, "ticker", inp).json()["run_id"]
    assert wait_status(srv, control, ("succeeded",), timeout=30)["status"] == "succeeded"
    held = [r for r in srv.get("/runs?agent=ticker&limit=5").json()["runs"]
            if r["run_id"] != control][0]
    assert held["status"] == "running" and held["events"] < n, held
    data = b""
    c.settimeout(30)
    while not data.endswith(b"0\r\n\r\n"):  # the chunked body's end
        chunk = c.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    c.close()
    assert data.count(b"\nevent: data\n") == n
    assert b"event: run.completed" in data


# ---- Python agents ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def py(server_factory, tmp_path_factory):
    d = tmp_path_factory.mktemp("conf")
    conf = d / "par.yaml"
    conf.write_text("auth: {mode: off}\ntrust: {require_signatures: false}\n"
                    "runs: {heartbeat_ms: 300}\n")
    return server_factory([package("py-events")], args=["--config", str(conf)])


@pytest.mark.parametrize("agent,etype", [("gen", "data"), ("agen", "data"), ("emit", "tick"),
                                         ("aemit", "tick")])
def test_python_events_stream(py, agent, etype):
    r = start(py, "py-events/" + agent, {"input": 5}, kind="/stream", stream=True)
    assert_sse_headers(r)
    events, _ = sse(r)
    assert [e["id"] for e in events] == list(range(1, 8))
    assert [e["event"] for e in events] == ["run.started"] + [etype] * 5 + ["run.completed"]
    assert [e["data"]["i"] for e in events[1:6]] == [0, 1, 2, 3, 4]
    assert events[-1]["data"]["output"] == {"count": 5}
    # and the same through invoke with Accept: text/event-stream
    r = requests.post(f"{py.url}/agents/py-events/{agent}/invoke", json={"input": 2},
                      headers={"Accept": "text/event-stream"}, stream=True, timeout=30)
    events, _ = sse(r)
    assert [e["event"] for e in events] == ["run.started", etype, etype, "run.completed"]


def test_python_silent_agent_heartbeats(py):
    r = start(py, "py-events/silent", {"input": 1.2}, kind="/stream", stream=True)
    events, comments = sse(r)
    assert len(comments) >= 3, comments
    assert [e["event"] for e in events] == ["run.started", "data", "run.completed"]


@pytest.mark.parametrize("agent", ["coro-cancel", "sync-poll"])
def test_python_cancel_through_http(py, agent):
    run_id = stream_and_leave(py, "py-events/" + agent, {"input": 1, "on_disconnect": "cancel"})
    assert wait_status(py, run_id, ("cancelled",), timeout=10)["status"] == "cancelled"
