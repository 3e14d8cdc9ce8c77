"""MCP over Streamable HTTP (docs/protocols.md "MCP"): the official TypeScript
SDK client (@modelcontextprotocol/sdk from tests/peers, run by
tests/peers/mcp/client.mjs) connects, lists tools, calls one with progress,
resumes a dropped stream and drives tasks; raw HTTP checks sessions and every
bad input's JSON-RPC error."""
import hashlib
import json
import os
import shutil
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


def mcp_package(tmp):
    return pypkg(tmp, "mcpkit", {"src/agents.py": AGENTS, "mcp.json": json.dumps(MCP_JSON)},
                 entrypoint="src.agents:count",
                 sub_agents=[("fail", True, "src.agents:fail"), ("plain", True, "src.agents:plain"),
                             ("hidden", False, "src.agents:plain")])


def other_package(tmp):
    return pypkg(tmp, "other", {"src/agents.py": AGENTS}, entrypoint="src.agents:plain")


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcp")
    conf = write_config(tmp, "limits: {runs_per_subject: 0}\n")
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
    assert out["cancelled"]["status"] == "cancelled"
    # the task is a run: PAR's own API shows it
    r = requests.get(f"{srv.url}/runs/{task_id}", timeout=10).json()
    assert r["status"] == "succeeded" and r["metadata"]["mcp"]["task"] is True


def test_sdk_package_endpoint(srv):
    out = node("basic", srv.url + "/agents/mcpkit/mcp", tool="mcpkit_plain", arguments={})
    assert {t["name"] for t in out["tools"]} == {"mcpkit", "mcpkit_fail", "mcpkit_plain"}
    assert out["result"]["content"][0]["text"] == "plain text"
    assert "structuredContent" not in out["result"]
