"""MCP over Streamable HTTP (docs/protocols.md "MCP"): the official TypeScript
SDK client (@modelcontextprotocol/sdk from tests/peers, run by
tests/peers/mcp/client.mjs) connects, lists tools, calls one with progress,
resumes a dropped stream and drives tasks; raw HTTP checks sessions and every
bad input's JSON-RPC error."""
import hashlib
import json
import os
import shutil
import time
import subprocess

import pytest
import requests

from conftest import SOURCE
from runs_util import write_config
from test_python import pypkg

CLIENT = os.path.join(SOURCE, "tests", "peers", "mcp", "client.mjs")
NODE = os.environ.get("PAR_NODE") or shutil.which("node")
SDK = os.path.join(SOURCE, "tests", "peers", "node_modules", "@modelcontextprotocol", "sdk")

AGENTS = '''\
import time


def count(input, context):
    """Emits n events, gap_ms apart; returns how many."""
    for i in range(input.get("n", 3)):
        if input.get("gap_ms"):
            time.sleep(input["gap_ms"] / 1000)
        context.emit({"i": i}, event="step")
    return {"emitted": input.get("n", 3)}


def fail(input):
    raise ValueError("no luck")


def plain(input):
    return "plain text"
'''

MCP_JSON = {"tools": [{"name": "mcpkit", "description": "Counts, from mcp.json",
                       "inputSchema": {"type": "object",
                                       "properties": {"n": {"type": "integer"}},
                                       "required": ["n"]}}]}

USER_KEY = "k-user-" + "y" * 24
ORIGIN = "https://app.example.com"


# Sub-agents declare their own input schema (and skills); the private one's
# never shows.
MCPKIT_SUBS = """\
  sub_agents:
    - {name: fail, public: true, entrypoint: "src.agents:fail",
       input_schema: {properties: {why: {type: string}}, required: [why]}}
    - {name: plain, public: true, entrypoint: "src.agents:plain"}
    - {name: hidden, public: false, entrypoint: "src.agents:plain",
       skills: [{id: secret, name: Secret, description: Hidden}],
       input_schema: {properties: {secret: {type: string}}}}
"""


def mcp_package(tmp):
    # pixell-kit's agent.yaml names the file it packs: mcp.config_file
    return pypkg(tmp, "mcpkit", {"src/agents.py": AGENTS,
                                 "conf/tools.json": json.dumps(MCP_JSON)},
                 entrypoint="src.agents:count\nmcp: {enabled: true, config_file: conf/tools.json}",
                 extra=MCPKIT_SUBS)


def other_package(tmp):
    # its input schema is declared in agent.yaml; a mcp.json that agent.yaml
    # does not name is not read; "type" is implied
    return pypkg(tmp, "other", {"src/agents.py": AGENTS, "mcp.json": json.dumps(MCP_JSON)},
                 entrypoint="src.agents:plain",
                 extra="  par:\n    input_schema:\n      properties: {topic: {type: string}}\n")


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcp")
    conf = write_config(tmp, "limits: {runs_per_subject: 0}\n"
                             f"http: {{cors: {{origins: [\"{ORIGIN}\"]}}}}\n")
    return server_factory([mcp_package(tmp), other_package(tmp)], args=["--config", conf],
                          expected_errors=["handler raised ValueError"])


def node(scenario, url, **args):
    if NODE is None or not os.path.isdir(SDK):
        pytest.skip("node or the MCP SDK (tests/peers) is missing")
    p = subprocess.run([NODE, CLIENT, scenario, url, json.dumps(args)], capture_output=True,
                       text=True, timeout=120)
    out = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {}
    assert p.returncode == 0 and "fatal" not in out, (p.returncode, out, p.stderr[-2000:])
    return out


# ---- the official client ------------------------------------------------------------

def test_sdk_connect_list_call_progress(srv):
    out = node("basic", srv.url + "/mcp", tool="mcpkit", arguments={"n": 4},
               failTool="mcpkit_fail", failArguments={})
    assert out["protocolVersion"] == "2025-11-25" and len(out["sessionId"]) == 32
    assert out["server"]["name"] == "par"
    assert "tasks" in out["capabilities"] and "tools" in out["capabilities"]
    tools = {t["name"]: t for t in out["tools"]}
    # public agents of both packages, sub-agents with '/' as '_'; never the private one
    assert set(tools) == {"mcpkit", "mcpkit_fail", "mcpkit_plain", "other"}, tools
    assert tools["mcpkit"]["description"] == "Counts, from mcp.json"
    assert tools["mcpkit"]["inputSchema"]["required"] == ["n"]
    assert tools["mcpkit_plain"]["inputSchema"] == {"type": "object", "additionalProperties": True}
    assert tools["mcpkit_fail"]["inputSchema"] == {
        "properties": {"why": {"type": "string"}}, "required": ["why"], "type": "object"}
    assert tools["other"]["inputSchema"] == {"properties": {"topic": {"type": "string"}},
                                             "type": "object"}
    assert tools["other"]["description"] == "test package"
    assert tools["mcpkit"]["execution"] == {"taskSupport": "optional"}
    res = out["result"]
    assert res["isError"] is False and res["structuredContent"] == {"emitted": 4}
    assert json.loads(res["content"][0]["text"]) == {"emitted": 4}
    # run.started and the four agent events, as progress with rising numbers
    prog = out["progress"]
    assert len(prog) == 5, prog
    assert [p["progress"] for p in prog] == sorted(p["progress"] for p in prog)
    assert prog[0]["message"].startswith("run.started")
    assert all(p["message"].startswith("step ") for p in prog[1:])
    assert json.loads(prog[1]["message"][5:]) == {"i": 0}
    failed = out["failed"]
    assert failed["isError"] is True and failed["content"][0]["text"].startswith("agent_error:")
    assert failed["structuredContent"]["error"] == "agent_error"
    assert out["unknownTool"]["code"] == -32602
    assert out["terminated"] is True


def test_sdk_resumes_a_dropped_stream(srv):
    out = node("resume", srv.url + "/mcp", tool="mcpkit",
               arguments={"n": 20, "gap_ms": 20}, cutAfter=5)
    assert out["result"]["structuredContent"] == {"emitted": 20}, out
    got = [p["progress"] for p in out["progress"]]
    # every event once, in order, across the drop: run.started (1) and 20 steps (2..21)
    assert got == list(range(1, 22)), got
    gets = [l for l in out["log"] if l["method"] == "GET" and l["lastEventId"]]
    assert gets and gets[0]["status"] == 200 and gets[0]["lastEventId"].endswith(":5"), out["log"]


def test_sdk_tasks(srv):
    out = node("tasks", srv.url + "/mcp", tool="mcpkit", arguments={"n": 5, "gap_ms": 100},
               slowArguments={"n": 1000, "gap_ms": 100})
    assert out.get("error") is None, out
    assert out["seen"][0]["type"] == "taskCreated"
    assert out["seen"][0]["task"]["status"] == "working"
    assert out["seen"][-1]["task"]["status"] == "completed"
    assert out["result"]["structuredContent"] == {"emitted": 5}
    task_id = out["seen"][0]["task"]["taskId"]
    assert task_id.startswith("run_") and out["got"]["status"] == "completed"
    assert task_id in out["listed"]
    # the task's end came as notifications/tasks/status on the tasks/result stream
    ended = [t for t in out["statuses"] if t["taskId"] == task_id]
    assert ended and ended[-1]["status"] == "completed", out["statuses"]
    assert out["cancelled"]["status"] == "cancelled"
    # the task is a run: PAR's own API shows it
    r = requests.get(f"{srv.url}/runs/{task_id}", timeout=10).json()
    assert r["status"] == "succeeded" and r["metadata"]["mcp"]["task"] is True


def test_sdk_package_endpoint(srv):
    out = node("basic", srv.url + "/agents/mcpkit/mcp", tool="mcpkit_plain", arguments={})
    assert {t["name"] for t in out["tools"]} == {"mcpkit", "mcpkit_fail", "mcpkit_plain"}
    assert out["result"]["content"][0]["text"] == "plain text"
    assert "structuredContent" not in out["result"]


# ---- raw HTTP: sessions and bad input ------------------------------------------------

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def post(srv, body, session=None, path="/mcp", headers=None, raw=None):
    h = dict(ACCEPT)
    if session:
        h["Mcp-Session-Id"] = session
    h.update(headers or {})
    data = raw if raw is not None else json.dumps(body)
    return requests.post(srv.url + path, data=data, headers=h, timeout=30)


def initialize(srv, version="2025-11-25", path="/mcp", headers=None):
    r = post(srv, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                   "params": {"protocolVersion": version, "capabilities": {},
                              "clientInfo": {"name": "raw", "version": "0"}}},
             path=path, headers=headers)
    assert r.status_code == 200, r.text
    return r.headers.get("mcp-session-id"), r.json()


def rpc_error(r, http, code):
    assert r.status_code == http, (r.status_code, r.text)
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["error"]["code"] == code, body
    return body


def test_version_negotiation_and_sessions(srv):
    sid, body = initialize(srv, "2025-06-18")
    assert body["result"]["protocolVersion"] == "2025-06-18"
    assert "tasks" not in body["result"]["capabilities"]
    # tasks are of revision 2025-11-25 only
    r = post(srv, {"jsonrpc": "2.0", "id": 2, "method": "tasks/list"}, sid)
    rpc_error(r, 200, -32601)
    tools = post(srv, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, sid).json()
    assert all("execution" not in t for t in tools["result"]["tools"])
    # an unsupported version: the spec's error, and no session
    r = post(srv, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                   "params": {"protocolVersion": "2024-11-05", "capabilities": {},
                              "clientInfo": {"name": "raw", "version": "0"}}})
    body = rpc_error(r, 200, -32602)
    assert body["error"]["data"] == {"supported": ["2025-11-25", "2025-06-18"],
                                     "requested": "2024-11-05"}
    assert "mcp-session-id" not in r.headers
    # a session is required after initialize; an unknown one is 404
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 4, "method": "ping"}), 400, -32600)
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 4, "method": "ping"}, "0" * 32), 404, -32001)
    r = post(srv, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    assert r.status_code == 202 and r.content == b""
    assert post(srv, {"jsonrpc": "2.0", "id": 5, "method": "ping"}, sid).json()["result"] == {}
    # a session of /mcp is not one of /agents/{id}/mcp
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 6, "method": "ping"}, sid,
                   path="/agents/mcpkit/mcp"), 404, -32001)
    # DELETE ends it; then it is unknown
    h = {"Mcp-Session-Id": sid}
    assert requests.delete(srv.url + "/mcp", headers=h, timeout=10).status_code == 204
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 7, "method": "ping"}, sid), 404, -32001)
    rpc_error(requests.delete(srv.url + "/mcp", headers=h, timeout=10), 404, -32001)
    # GET without Last-Event-ID: no server-initiated stream
    r = requests.get(srv.url + "/mcp", headers={"Accept": "text/event-stream"}, timeout=10)
    assert r.status_code == 405


def test_bad_input(srv):
    sid, _ = initialize(srv)
    rpc_error(post(srv, None, sid, raw="{not json"), 400, -32700)
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 2, "method": "ping"}]
    rpc_error(post(srv, batch, sid), 400, -32600)
    rpc_error(post(srv, {"jsonrpc": "1.0", "id": 1, "method": "ping"}, sid), 400, -32600)
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}, sid), 400, -32600)
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 1, "method": 7}, sid), 400, -32600)
    rpc_error(post(srv, "ping", sid), 400, -32600)
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 1, "method": "resources/list"}, sid), 200, -32601)
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [1]}, sid),
              200, -32602)
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                         "params": {"name": 5}}, sid), 200, -32602)
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                         "params": {"name": "mcpkit", "arguments": [1]}}, sid), 200, -32602)
    # the private sub-agent is no tool, nor is an id in another spelling
    for name in ("mcpkit_hidden", "mcpkit/plain", "../x", ""):
        rpc_error(post(srv, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                             "params": {"name": name, "arguments": {}}}, sid), 200, -32602)
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 1, "method": "tasks/get",
                         "params": {"taskId": "run_nope"}}, sid), 200, -32602)
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 1, "method": "tasks/result",
                         "params": {}}, sid), 200, -32602)
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 1, "method": "tasks/list",
                         "params": {"cursor": "bogus"}}, sid), 200, -32602)
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, sid,
                   headers={"MCP-Protocol-Version": "1999-01-01"}), 400, -32600)
    big = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
           "params": {"name": "mcpkit", "arguments": {"pad": "x" * (1100 << 10)}}}
    rpc_error(post(srv, big, sid), 413, -32600)
    # a client accepting JSON only gets the tool call's answer as JSON
    r = post(srv, {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                   "params": {"name": "mcpkit", "arguments": {"n": 1}}}, sid,
             headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["result"]["structuredContent"] == {"emitted": 1}
    # nothing else was disturbed
    assert post(srv, {"jsonrpc": "2.0", "id": 10, "method": "ping"}, sid).json()["result"] == {}
    assert requests.post(srv.url + "/agents/mcpkit/plain/invoke", json={"input": {}},
                         timeout=10).json()["output"] == "plain text"


def test_task_cancel_ended_and_resume_errors(srv):
    sid, _ = initialize(srv)
    r = post(srv, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "mcpkit_plain", "arguments": {}, "task": {"ttl": 1000}}}, sid)
    task = r.json()["result"]["task"]
    res = post(srv, {"jsonrpc": "2.0", "id": 2, "method": "tasks/result",
                     "params": {"taskId": task["taskId"]}}, sid,
               headers={"Accept": "application/json"}).json()
    assert res["id"] == 2 and res["result"]["content"][0]["text"] == "plain text"
    assert res["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"] == task["taskId"]
    rpc_error(post(srv, {"jsonrpc": "2.0", "id": 3, "method": "tasks/cancel",
                         "params": {"taskId": task["taskId"]}}, sid), 200, -32602)
    h = {"Mcp-Session-Id": sid, "Accept": "text/event-stream"}
    for bad in ("nocolon", "run_nope:1", task["taskId"] + ":x"):
        r = requests.get(srv.url + "/mcp", headers=dict(h, **{"Last-Event-ID": bad}), timeout=10)
        rpc_error(r, 400, -32600)
    # resuming an ended call replays what followed, under the original request id
    r = requests.get(srv.url + "/mcp", headers=dict(h, **{"Last-Event-ID": task["taskId"] + ":1"}),
                     timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    msgs = [json.loads(l[6:]) for l in r.text.split("\n") if l.startswith("data: {")]
    assert msgs[-1]["id"] == 1 and msgs[-1]["result"]["content"][0]["text"] == "plain text"


def test_auth_decides_the_tools(server_factory, tmp_path):
    sha = hashlib.sha256(USER_KEY.encode()).hexdigest()
    conf = tmp_path / "par.yaml"
    conf.write_text(f"""\
trust: {{require_signatures: false}}
auth:
  mode: api_key
  api_keys:
    - sha256: {sha}
      subject: shop
      permissions: ["agents:invoke:mcpkit/*"]
""")
    s = server_factory([mcp_package(tmp_path), other_package(tmp_path)],
                       args=["--config", str(conf)], expected_errors=["handler raised"])
    # no credential: refused before any protocol handling
    r = requests.post(s.url + "/mcp", data="{not json", headers=ACCEPT, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    auth = {"Authorization": "Bearer " + USER_KEY}
    sid, _ = initialize(s, headers=auth)
    tools = post(s, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sid, headers=auth).json()
    assert {t["name"] for t in tools["result"]["tools"]} == {"mcpkit_fail", "mcpkit_plain"}
    rpc_error(post(s, {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                       "params": {"name": "other", "arguments": {}}}, sid, headers=auth), 200, -32602)
    # the package endpoint needs agents:invoke for the package itself
    r = post(s, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, path="/agents/mcpkit/mcp",
             headers=auth)
    assert r.status_code == 403
    out = node("basic", s.url + "/mcp", tool="mcpkit_plain", arguments={}, token=USER_KEY)
    assert out["result"]["content"][0]["text"] == "plain text"


def test_cors(srv):
    for path in ("/mcp", "/agents/mcpkit/mcp"):
        r = requests.options(srv.url + path, headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, mcp-session-id, mcp-protocol-version"})
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == ORIGIN
        methods = r.headers["access-control-allow-methods"]
        assert all(m in methods for m in ("POST", "GET", "DELETE")), methods
        allowed = r.headers["access-control-allow-headers"].lower()
        for h in ("mcp-session-id", "mcp-protocol-version", "last-event-id", "authorization",
                  "content-type"):
            assert h in allowed, allowed
        # a page of that origin can read the session id it is given
        r = post(srv, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                  "clientInfo": {"name": "raw", "version": "0"}}},
                 path=path, headers={"Origin": ORIGIN})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
        assert "Mcp-Session-Id" in r.headers["access-control-expose-headers"]
        assert len(r.headers["mcp-session-id"]) == 32
    # another origin gets nothing
    r = requests.options(srv.url + "/mcp", headers={"Origin": "https://evil.example.com",
                                                    "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    r = post(srv, {"jsonrpc": "2.0", "id": 1, "method": "ping"},
             headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in r.headers


def test_tools_list_pages(server_factory, tmp_path):
    # 60 public sub-agents and the main agent: two pages of at most 50
    subs = "  sub_agents:\n" + "".join(f"    - {{name: s{i:02d}, public: true}}\n"
                                       for i in range(60))
    s = server_factory([pypkg(tmp_path, "many", {"src/agents.py": AGENTS},
                              entrypoint="src.agents:plain", extra=subs)])
    sid, _ = initialize(s)
    first = post(s, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, sid).json()["result"]
    assert len(first["tools"]) == 50 and isinstance(first["nextCursor"], str)
    second = post(s, {"jsonrpc": "2.0", "id": 2, "method": "tools/list",
                      "params": {"cursor": first["nextCursor"]}}, sid).json()["result"]
    assert len(second["tools"]) == 11 and "nextCursor" not in second
    names = [t["name"] for t in first["tools"] + second["tools"]]
    assert len(set(names)) == 61 and "many" in names and "many_s59" in names
    for bad in ("bogus", "c", "c-1", "cx", 5, "c12345678901"):
        rpc_error(post(s, {"jsonrpc": "2.0", "id": 3, "method": "tools/list",
                           "params": {"cursor": bad}}, sid), 200, -32602)
    # past the end (the list shrank): an empty last page
    r = post(s, {"jsonrpc": "2.0", "id": 4, "method": "tools/list",
                 "params": {"cursor": "c500"}}, sid).json()["result"]
    assert r == {"tools": []}
    # the official client follows nextCursor
    out = node("pages", s.url + "/mcp")
    assert out["sizes"] == [50, 11] and sorted(out["names"]) == sorted(names)


def test_tasks_result_stream_has_the_status_notification(srv):
    sid, _ = initialize(srv)
    r = post(srv, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "mcpkit", "arguments": {"n": 3, "gap_ms": 50},
                              "task": {"ttl": 1000}}}, sid)
    tid = r.json()["result"]["task"]["taskId"]
    r = post(srv, {"jsonrpc": "2.0", "id": 2, "method": "tasks/result",
                   "params": {"taskId": tid}}, sid)
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    msgs = [json.loads(l[6:]) for l in r.text.split("\n") if l.startswith("data: {")]
    assert [m.get("method") for m in msgs] == ["notifications/tasks/status", None], msgs
    assert msgs[0]["params"]["taskId"] == tid and msgs[0]["params"]["status"] == "completed"
    assert msgs[1]["id"] == 2 and msgs[1]["result"]["structuredContent"] == {"emitted": 3}
    # a client accepting JSON only gets the result alone
    r = post(srv, {"jsonrpc": "2.0", "id": 3, "method": "tasks/result",
                   "params": {"taskId": tid}}, sid, headers={"Accept": "application/json"})
    assert r.headers["content-type"] == "application/json" and r.json()["id"] == 3



def test_tasks_result_stream_skips_progress_without_stalling(srv):
    # the framer writes nothing for the task's progress events: the stream must
    # still read past them (not wait on the client for bytes never sent) and end
    # when the task ends, carrying only the status notification and the result
    sid, _ = initialize(srv)
    r = post(srv, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "mcpkit", "arguments": {"n": 40, "gap_ms": 25},
                              "task": {"ttl": 1000}}}, sid)
    tid = r.json()["result"]["task"]["taskId"]
    t0 = time.monotonic()
    r = requests.post(f"{srv.url}/mcp", timeout=20, json={
        "jsonrpc": "2.0", "id": 2, "method": "tasks/result", "params": {"taskId": tid}},
        headers={"Accept": "application/json, text/event-stream",
                 "Content-Type": "application/json", "Mcp-Session-Id": sid,
                 "MCP-Protocol-Version": "2025-11-25"})
    assert r.status_code == 200 and time.monotonic() - t0 < 15
    lines = [l for l in r.text.split("\n") if l]
    assert all(l.startswith(("data: {", "event: message", ": keep-alive")) for l in lines), lines
    msgs = [json.loads(l[6:]) for l in lines if l.startswith("data: {")]
    assert [m.get("method") for m in msgs] == ["notifications/tasks/status", None], msgs
    assert msgs[1]["result"]["structuredContent"] == {"emitted": 40}

def test_metrics_count_the_mcp_route(srv):
    sid, _ = initialize(srv)
    text = requests.get(srv.url + "/metrics", timeout=10).text
    assert 'par_http_requests_total{route="mcp",code="200"}' in text


def test_notifications_cancelled_cancels_the_call(srv):
    sid, _ = initialize(srv)
    call = {"jsonrpc": "2.0", "id": "c1", "method": "tools/call",
            "params": {"name": "mcpkit", "arguments": {"n": 1000, "gap_ms": 50}}}
    h = dict(ACCEPT, **{"Mcp-Session-Id": sid})
    with requests.post(srv.url + "/mcp", data=json.dumps(call), headers=h, stream=True,
                       timeout=30) as r:
        assert r.headers["content-type"] == "text/event-stream"
        lines = r.iter_lines(decode_unicode=True)
        first = next(l for l in lines if l.startswith("id: "))
        run_id = first[4:].split(":")[0]
        n = post(srv, {"jsonrpc": "2.0", "method": "notifications/cancelled",
                       "params": {"requestId": "c1", "reason": "test"}}, sid)
        assert n.status_code == 202
        last = None
        for l in lines:
            if l.startswith("data: {"):
                last = json.loads(l[6:])
    assert last["id"] == "c1" and last["result"]["isError"] is True, last
    assert last["result"]["structuredContent"]["error"] == "cancelled"
    assert requests.get(f"{srv.url}/runs/{run_id}", timeout=10).json()["status"] == "cancelled"
