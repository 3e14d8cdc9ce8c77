"""A2A (docs/protocols.md "A2A"): every public agent is an A2A agent, driven
here by the official clients — @a2a-js/sdk 1.x (protocol 1.0, JSON-RPC and
HTTP+JSON) and 0.3.x (installed as a2a-sdk-v03) — from the scripts
tests/peers/a2a_v1.mjs and a2a_v03.mjs, and by hand for the mistakes the
clients never make. A task is a run: the same ids, owners, events and cancel.
One streaming test goes through Debian's nginx with buffering off."""
import json
import os
import shutil
import subprocess

import pytest
import requests

from conftest import SOURCE, package
from nginx import Nginx, need_nginx
from test_python import pypkg

PEERS = os.path.join(SOURCE, "tests", "peers")
# PAR_NODE: another node to run the clients with (node 18 and 20 both work)
NODE = os.environ.get("PAR_NODE") or shutil.which("node")
TRANSPORTS = ["JSONRPC", "HTTP+JSON"]
SLOW = '{"n":6,"ms":300}'


need_node = pytest.mark.skipif(
    NODE is None or not os.path.isdir(os.path.join(PEERS, "node_modules", "@a2a-js")),
    reason="node and tests/peers/node_modules (npm ci in tests/peers) are needed")


def client(script, *args, token=None, timeout=60):
    env = dict(os.environ)
    if token:
        env["A2A_TOKEN"] = token
    p = subprocess.run([NODE, os.path.join(PEERS, script), *args], cwd=PEERS, env=env,
                       capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert lines, (p.returncode, p.stdout, p.stderr)
    out = json.loads(lines[-1])
    assert p.returncode == 0 and "failed" not in out, (out, p.stderr)
    return out


def v1(srv, scenario, agent, transport, arg=None, **kw):
    return client("a2a_v1.mjs", scenario, srv.url, agent, transport,
                  *([arg] if arg else []), **kw)


def v03(srv, scenario, agent, arg=None, **kw):
    return client("a2a_v03.mjs", scenario, srv.url, agent, *([arg] if arg else []), **kw)


def write(tmp, text):
    conf = tmp / "par.yaml"
    conf.write_text(text)
    return str(conf)


@pytest.fixture(scope="module")
def srv(server_factory, tmp_path_factory):
    conf = write(tmp_path_factory.mktemp("conf"), """\
auth: {mode: off}
trust: {require_signatures: false}
runs: {heartbeat_ms: 500}
limits: {max_input_kb: 4}
""")
    return server_factory([package("echo"), package("ticker")], args=["--config", conf])


KEY_A, KEY_B = "k-alice-" + "a" * 24, "k-bob-" + "b" * 24


@pytest.fixture(scope="module")
def keyed(server_factory, tmp_path_factory):
    import hashlib
    sha = lambda k: hashlib.sha256(k.encode()).hexdigest()  # noqa: E731
    conf = write(tmp_path_factory.mktemp("conf"), f"""\
trust: {{require_signatures: false}}
auth:
  mode: api_key
  api_keys:
    - {{sha256: {sha(KEY_A)}, subject: alice, permissions: ["agents:invoke:echo"]}}
    - {{sha256: {sha(KEY_B)}, subject: bob, permissions: [agents:invoke]}}
""")
    return server_factory([package("echo"), package("ticker")], args=["--config", conf])


def rpc(srv, agent, body, headers=None):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    r = requests.post(f"{srv.url}/a2a/{agent}", data=data,
                      headers={"Content-Type": "application/json", **(headers or {})})
    return r


def rpc_error(r):
    assert r.status_code == 200, (r.status_code, r.text)
    body = r.json()
    assert body["jsonrpc"] == "2.0" and "result" not in body, body
    return body["id"], body["error"]["code"]


def msg(parts):
    return {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": parts}}


# ---- cards -----------------------------------------------------------------------------

@need_node
def test_card_discovery(srv):
    for t in TRANSPORTS:
        out = v1(srv, "card", "echo", t)
        assert out["transport"] == t
        assert out["name"] == "Echo" and out["version"] == "1.0.0"
        assert out["streaming"] is True and out["push"] is False
        assert out["skills"] == ["echo"]
        url = f"{srv.url}/a2a/echo"
        assert ["JSONRPC", "1.0", url] in out["interfaces"]
        assert ["HTTP+JSON", "1.0", url] in out["interfaces"]
        assert ["JSONRPC", "0.3", url] in out["interfaces"]
        assert out["schemes"] == []  # auth off: no security scheme


SKILLED = """\
  sub_agents:
    - {name: plain, description: plain, public: true}
    - name: tagger
      public: true
      skills: [{id: tag, name: Tag, description: Tags words, tags: [nlp]}]
      input_schema: {properties: {words: {type: string}}, required: [words]}
    - name: secret
      skills: [{id: secret-skill, name: Secret, description: Never shown}]
      input_schema: {properties: {hush: {type: string}}}
  par:
    skills:
      - {id: summarize, name: Summarize, description: Shortens a text, tags: [text],
         examples: ["summarize this"]}
      - {id: count, name: Count, description: Counts words}
    input_schema:
      type: object
      properties: {doc: {type: string}, max: {type: integer}, lang: {type: string}}
      required: [doc]
"""


@pytest.fixture(scope="module")
def skilled(server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("skills")
    return server_factory([pypkg(tmp, "writer", {"src/main.py": "def handler(input):\n"
                                                                "    return input\n"},
                                 extra=SKILLED)])


@need_node
def test_declared_skills_and_input(skilled):
    for t in TRANSPORTS:
        assert v1(skilled, "card", "writer", t)["skills"] == ["summarize", "count"]
        # a text part fills the schema's required string property
        out = v1(skilled, "send", "writer", t, "hello")
        assert out["task"]["artifacts"][0]["parts"] == [{"doc": "hello"}]
        # a sub-agent declares nothing: one skill, text → {"text": ...}
        assert v1(skilled, "card", "writer/plain", t)["skills"] == ["writer/plain"]
        out = v1(skilled, "send", "writer/plain", t, "hello")
        assert out["task"]["artifacts"][0]["parts"] == [{"text": "hello"}]
        # a sub-agent that declares its own: its skills, its schema's property
        assert v1(skilled, "card", "writer/tagger", t)["skills"] == ["tag"]
        out = v1(skilled, "send", "writer/tagger", t, "hello")
        assert out["task"]["artifacts"][0]["parts"] == [{"words": "hello"}]
    card = requests.get(f"{skilled.url}/agents/writer/tagger/.well-known/agent-card.json").json()
    assert card["skills"] == [{"id": "tag", "name": "Tag", "description": "Tags words",
                               "tags": ["nlp"]}]
    # a private sub-agent's declarations show nowhere
    cat = requests.get(f"{skilled.url}/.well-known/agent-card.json").json()
    assert {a["id"] for a in cat["agents"]} == {"writer", "writer/plain", "writer/tagger"}
    assert "secret" not in json.dumps(cat)
    r = requests.get(f"{skilled.url}/agents/writer/secret/.well-known/agent-card.json")
    assert r.status_code == 404 and r.json()["error"] == "agent_not_found"
    card = requests.get(f"{skilled.url}/agents/writer/.well-known/agent-card.json").json()
    assert card["skills"] == [
        {"id": "summarize", "name": "Summarize", "description": "Shortens a text",
         "tags": ["text"], "examples": ["summarize this"]},
        {"id": "count", "name": "Count", "description": "Counts words", "tags": []}]
    # a data part is the input as it is
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": msg([{"data": {"doc": "d", "max": 3}}])}
    r = rpc(skilled, "writer", body).json()
    assert r["result"]["task"]["artifacts"][0]["parts"] == [{"data": {"doc": "d", "max": 3}}]


def test_catalog_lists_public_agents_only(srv):
    r = requests.get(f"{srv.url}/.well-known/agent-card.json")
    assert r.status_code == 200
    ids = {a["id"]: a["agentCardUrl"] for a in r.json()["agents"]}
    assert set(ids) == {"echo", "echo/shout", "ticker"}  # echo/upper is private
    assert ids["echo/shout"] == f"{srv.url}/agents/echo/shout/.well-known/agent-card.json"
    assert requests.get(ids["echo/shout"]).json()["skills"][0]["id"] == "echo/shout"
    r = requests.get(f"{srv.url}/agents/echo/upper/.well-known/agent-card.json")
    assert r.status_code == 404 and r.json()["error"] == "agent_not_found"
    assert rpc(srv, "echo/upper", {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                                   "params": msg([{"text": "x"}])}).status_code == 404


# ---- the 1.0 client, both transports ----------------------------------------------------

@need_node
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_send_and_get(srv, transport):
    out = v1(srv, "send", "echo", transport, '{"a":[1,2]}')
    t = out["task"]
    assert t["state"] == "completed" and t["id"].startswith("run_")
    assert t["artifacts"] == [{"id": "output", "parts": [{"a": [1, 2]}]}]
    # the task is the run
    run = requests.get(f"{srv.url}/runs/{t['id']}").json()
    assert run["status"] == "succeeded" and run["output"] == {"a": [1, 2]}
    assert run["metadata"]["a2a"]["contextId"] == t["contextId"]
    out = v1(srv, "send_get", "echo", transport, "words")
    assert out["got"]["state"] == "completed"
    assert out["got"]["artifacts"][0]["parts"] == [{"text": "words"}]  # text → {"text": ...}
    # historyLength: the user's message and the agent's answer (roles 1 user, 2 agent)
    assert out["history"] == [{"role": 1, "parts": ["words"]},
                              {"role": 2, "parts": [{"text": "words"}]}]
    assert out["last"] == [2]


@need_node
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_message_to_an_ended_task(srv, transport):
    err = v1(srv, "continue", "echo", transport)["error"]
    assert err in ("JsonRpcUnsupportedOperationError", "RestUnsupportedOperationError"), err


@need_node
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stream(srv, transport):
    ev = v1(srv, "stream", "ticker", transport, '{"n":3,"ms":20}')["events"]
    assert [e["kind"] for e in ev] == ["task", "status", "status", "status", "artifact", "status"]
    assert ev[0]["state"] == "submitted"
    assert [e["parts"] for e in ev[1:4]] == [[{"i": i, "pad": ""}] for i in (1, 2, 3)]
    assert all(e["state"] == "working" for e in ev[1:4])
    assert ev[4]["parts"] == [{"count": 3}]
    assert ev[5]["state"] == "completed"
    assert len({e.get("id") or e.get("taskId") for e in ev}) == 1


@need_node
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel(srv, transport):
    out = v1(srv, "cancel", "ticker", transport, SLOW)
    assert out["started"]["state"] in ("submitted", "working")
    assert out["cancelled"]["state"] == "canceled"
    assert out["got"]["state"] == "canceled"
    assert out["again"].endswith("TaskNotCancelableError")
    assert requests.get(f"{srv.url}/runs/{out['started']['id']}").json()["status"] == "cancelled"


@need_node
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_task(srv, transport):
    assert v1(srv, "missing", "echo", transport)["error"].endswith("TaskNotFoundError")


@need_node
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resubscribe_after_a_dropped_stream(srv, transport):
    out = v1(srv, "resubscribe", "ticker", transport, SLOW)
    assert out["dropped"] == "AbortError" and len(out["first"]) == 2
    second = out["second"]
    # the run went on without its client; the new stream has everything
    assert [e["parts"] for e in second if e["kind"] == "status" and e["state"] == "working"] == \
        [[{"i": i, "pad": ""}] for i in range(1, 7)]
    assert second[-1] == {"kind": "status", "taskId": out["final"]["id"], "state": "completed"}
    assert out["final"]["artifacts"][0]["parts"] == [{"count": 6}]


@need_node
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_list_tasks(srv, transport):
    out = v1(srv, "list", "echo", transport)
    assert out["id"] in out["ids"]
    agents = {requests.get(f"{srv.url}/runs/{i}").json()["agent_id"] for i in out["ids"]}
    assert agents == {"echo"}


# ---- the 0.3 client -------------------------------------------------------------------

@need_node
def test_v03_send_get(srv):
    out = v03(srv, "send", "echo", '{"k":"v"}')
    assert out["task"]["kind"] == "task" and out["task"]["state"] == "completed"
    assert out["task"]["artifacts"] == [[{"kind": "data", "data": {"k": "v"}}]]
    assert out["got"] == out["task"]
    assert out["history"] == [
        {"kind": "message", "role": "user", "parts": [{"kind": "data", "data": {"k": "v"}}]},
        {"kind": "message", "role": "agent", "parts": [{"kind": "data", "data": {"k": "v"}}]}]


@need_node
def test_v03_stream(srv):
    ev = v03(srv, "stream", "ticker", '{"n":2,"ms":20}')["events"]
    assert [e["kind"] for e in ev] == ["task", "status-update", "status-update",
                                       "artifact-update", "status-update"]
    assert [e.get("state") for e in ev] == ["submitted", "working", "working", None, "completed"]
    assert ev[1]["parts"] == [{"kind": "data", "data": {"i": 1, "pad": ""}}]
    assert ev[-1]["final"] is True and ev[1]["final"] is False
    assert ev[3]["parts"] == [{"kind": "data", "data": {"count": 2}}]


@need_node
def test_v03_cancel(srv):
    out = v03(srv, "cancel", "ticker", SLOW)
    assert out["cancelled"]["state"] == "canceled"
    assert out["again"] == -32002 and out["missing"] == -32001


# ---- mistakes: the protocol's own codes --------------------------------------------------

def test_malformed_json_rpc(srv):
    assert rpc_error(rpc(srv, "echo", "{not json")) == (None, -32700)
    assert rpc_error(rpc(srv, "echo", "[]")) == (None, -32600)  # a batch
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}]
    assert rpc_error(rpc(srv, "echo", batch)) == (None, -32600)
    assert rpc_error(rpc(srv, "echo", {"jsonrpc": "1.0", "id": 1, "method": "GetTask"}))[1] == -32600
    assert rpc_error(rpc(srv, "echo", {"jsonrpc": "2.0", "method": "GetTask"}))[1] == -32600
    assert rpc_error(rpc(srv, "echo", {"jsonrpc": "2.0", "id": 7, "method": "Nope"})) == (7, -32601)


@pytest.mark.parametrize("params", [None, {}, {"message": "hi"}, msg([]), msg(["x"]), 5])
def test_wrong_params(srv, params):
    body = {"jsonrpc": "2.0", "id": "a", "method": "SendMessage"}
    if params is not None:
        body["params"] = params
    assert rpc_error(rpc(srv, "echo", body)) == ("a", -32602)


def test_other_codes(srv):
    def call(method, params):
        return rpc_error(rpc(srv, "echo", {"jsonrpc": "2.0", "id": 1, "method": method,
                                           "params": params}))[1]
    assert call("SendMessage", msg([{"url": "https://x/y.pdf"}])) == -32005
    assert call("GetTask", {"id": "run_0000000000000000000000000000000f"}) == -32001
    assert call("tasks/get", {"id": "nope"}) == -32001
    assert call("GetTask", {}) == -32602
    assert call("CreateTaskPushNotificationConfig", {"taskId": "x"}) == -32003
    assert call("tasks/pushNotificationConfig/set", {"taskId": "x"}) == -32003
    # a message naming a task: unknown → TaskNotFound, ended → UnsupportedOperation
    assert call("SendMessage", {"message": {**msg([{"text": "x"}])["message"],
                                            "taskId": "run_x"}}) == -32001
    # a task of another agent is not this agent's task
    tid = rpc(srv, "ticker", {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                              "params": msg([{"data": {"n": 0}}])}).json()["result"]["task"]["id"]
    assert call("GetTask", {"id": tid}) == -32001


def test_message_naming_a_task(srv):
    def send(agent, task_id, method="SendMessage"):
        m = msg([{"text": "again"}])["message"]
        return rpc(srv, agent, {"jsonrpc": "2.0", "id": 7, "method": method,
                                "params": {"message": {**m, "taskId": task_id}}})
    done = rpc(srv, "echo", {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                             "params": msg([{"text": "first"}])}).json()["result"]["task"]["id"]
    r = send("echo", done)
    assert rpc_error(r) == (7, -32004) and "terminal" in r.json()["error"]["message"]
    assert rpc_error(send("echo", done, "message/send")) == (7, -32004)
    assert rpc_error(send("echo", done, "SendStreamingMessage")) == (7, -32004)
    # a running task takes no more input either
    slow = rpc(srv, "ticker", {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                               "params": {**msg([{"data": {"n": 20, "ms": 200}}]),
                                          "configuration": {"returnImmediately": True}}})
    running = slow.json()["result"]["task"]["id"]
    assert rpc_error(send("ticker", running)) == (7, -32004)
    # another agent's task, or an unknown one: TaskNotFound
    assert rpc_error(send("echo", running)) == (7, -32001)
    assert rpc_error(send("echo", "run_0000000000000000000000000000000f")) == (7, -32001)
    r = requests.post(f"{srv.url}/a2a/echo/message:send",
                      json={"message": {**msg([{"text": "x"}])["message"], "taskId": done}})
    assert r.status_code == 400 and r.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert r.json()["error"]["details"][0]["reason"] == "UNSUPPORTED_OPERATION"
    # nothing was started or changed
    assert requests.get(f"{srv.url}/runs/{done}").json()["status"] == "succeeded"
    requests.post(f"{srv.url}/runs/{running}/cancel")



def test_subscribe_to_an_ended_task(srv):
    done = rpc(srv, "echo", {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                             "params": msg([{"text": "first"}])}).json()["result"]["task"]["id"]
    # v1.0: a task in a terminal state answers UnsupportedOperation at once, no stream
    r = rpc(srv, "echo", {"jsonrpc": "2.0", "id": 9, "method": "SubscribeToTask",
                          "params": {"id": done}})
    assert r.headers["Content-Type"].startswith("application/json")
    assert rpc_error(r) == (9, -32004) and "terminal" in r.json()["error"]["message"]
    r = requests.post(f"{srv.url}/a2a/echo/tasks/{done}:subscribe")
    assert r.status_code == 400 and r.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert r.json()["error"]["details"][0]["reason"] == "UNSUPPORTED_OPERATION"
    # v0.3's tasks/resubscribe names no such error: it replays the ended task
    r = rpc(srv, "echo", {"jsonrpc": "2.0", "id": 3, "method": "tasks/resubscribe",
                          "params": {"id": done}})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    assert '"completed"' in r.text and '"id":3' in r.text.replace(" ", "")
    # a running task can still be subscribed to
    slow = rpc(srv, "ticker", {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                               "params": {**msg([{"data": {"n": 3, "ms": 100}}]),
                                          "configuration": {"returnImmediately": True}}})
    running = slow.json()["result"]["task"]["id"]
    r = requests.post(f"{srv.url}/a2a/ticker/tasks/{running}:subscribe", timeout=30)
    assert r.status_code == 200 and '"TASK_STATE_COMPLETED"' in r.text

def test_history_length(srv):
    def get(params):
        return rpc(srv, "echo", {"jsonrpc": "2.0", "id": 2, "method": "GetTask",
                                 "params": params}).json()
    sent = rpc(srv, "echo", {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                             "params": {"message": {"messageId": "mine", "role": "ROLE_USER",
                                                    "parts": [{"data": {"k": 1}}]}}}).json()
    tid = sent["result"]["task"]["id"]
    full = get({"id": tid})["result"]["history"]
    assert full == [
        {"messageId": "mine", "role": "ROLE_USER", "taskId": tid,
         "contextId": full[0]["contextId"], "parts": [{"data": {"k": 1}}]},
        {"messageId": f"{tid}-output", "role": "ROLE_AGENT", "taskId": tid,
         "contextId": full[0]["contextId"], "parts": [{"data": {"k": 1}}]}]
    assert [m["role"] for m in get({"id": tid, "historyLength": 1})["result"]["history"]] == [
        "ROLE_AGENT"]
    assert "history" not in get({"id": tid, "historyLength": 0})["result"]
    assert get({"id": tid, "historyLength": -1})["error"]["code"] == -32602
    assert get({"id": tid, "historyLength": "2"})["error"]["code"] == -32602
    v03 = rpc(srv, "echo", {"jsonrpc": "2.0", "id": 3, "method": "tasks/get",
                            "params": {"id": tid, "historyLength": 5}}).json()["result"]
    assert [(m["kind"], m["role"]) for m in v03["history"]] == [("message", "user"),
                                                                 ("message", "agent")]
    assert v03["history"][0]["parts"] == [{"kind": "data", "data": {"k": 1}}]
    r = requests.get(f"{srv.url}/a2a/echo/tasks/{tid}?historyLength=1")
    assert r.status_code == 200 and len(r.json()["history"]) == 1
    for bad in ("x", "-1", "", "1&historyLength=2"):
        r = requests.get(f"{srv.url}/a2a/echo/tasks/{tid}?historyLength={bad}")
        assert r.status_code == 400, bad
        assert r.json()["error"]["details"][0]["reason"] == "INVALID_PARAMS"


def test_rest_push_notification_configs(srv):
    tid = rpc(srv, "echo", {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                            "params": msg([{"text": "p"}])}).json()["result"]["task"]["id"]
    base = f"{srv.url}/a2a/echo/tasks/{tid}/pushNotificationConfigs"
    for r in (requests.post(base, json={"url": "https://hook.example/x"}),
              requests.get(base), requests.get(base + "/cfg-1"), requests.delete(base + "/cfg-1")):
        assert r.status_code == 400, (r.request.method, r.url, r.text)
        err = r.json()["error"]
        assert err["status"] == "FAILED_PRECONDITION"
        assert err["details"][0]["reason"] == "PUSH_NOTIFICATION_NOT_SUPPORTED"
    # consistent with the card
    card = requests.get(f"{srv.url}/agents/echo/.well-known/agent-card.json").json()
    assert card["capabilities"]["pushNotifications"] is False
    # a private or unknown agent is not found; a path without a task is no task
    r = requests.get(f"{srv.url}/a2a/echo/upper/tasks/{tid}/pushNotificationConfigs")
    assert r.status_code == 404
    r = requests.post(f"{srv.url}/a2a/echo/tasks/pushNotificationConfigs", json={})
    assert r.status_code == 404
    assert r.json()["error"]["details"][0]["reason"] == "TASK_NOT_FOUND"


def test_oversized_message(srv):
    big = "x" * 8000  # limits.max_input_kb: 4
    r = rpc(srv, "echo", {"jsonrpc": "2.0", "id": 3, "method": "SendMessage",
                          "params": msg([{"text": big}])})
    assert rpc_error(r) == (3, -32602)
    assert r.json()["error"]["data"]["error"] == "payload_too_large"
    # nothing else is disturbed
    ok = rpc(srv, "echo", {"jsonrpc": "2.0", "id": 4, "method": "SendMessage",
                           "params": msg([{"text": "small"}])}).json()
    assert ok["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


def test_rest_errors(srv):
    r = requests.get(f"{srv.url}/a2a/echo/tasks/run_0000000000000000000000000000000f")
    assert r.status_code == 404
    assert r.json()["error"]["details"][0]["reason"] == "TASK_NOT_FOUND"
    r = requests.post(f"{srv.url}/a2a/echo/message:send", data="{oops")
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = requests.post(f"{srv.url}/a2a/echo/message:send", json={"message": {"parts": []}})
    assert r.status_code == 400
    assert r.json()["error"]["details"][0]["reason"] == "INVALID_PARAMS"
    r = requests.delete(f"{srv.url}/a2a/echo")
    assert r.status_code == 405


def test_metrics_by_route(srv):
    rpc(srv, "echo", {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                      "params": msg([{"text": "m"}])})
    requests.get(f"{srv.url}/agents/echo/.well-known/agent-card.json")
    text = requests.get(f"{srv.url}/metrics").text
    assert 'par_http_requests_total{route="a2a",code="200"}' in text
    assert 'par_http_requests_total{route="a2a_card",code="200"}' in text


# ---- auth ----------------------------------------------------------------------------

def test_auth_before_protocol(keyed):
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": msg([{"text": "x"}])}
    assert rpc(keyed, "echo", body).status_code == 401
    assert rpc(keyed, "echo", "{garbage").status_code == 401  # checked before parsing
    a = {"Authorization": f"Bearer {KEY_A}"}
    b = {"Authorization": f"Bearer {KEY_B}"}
    assert rpc(keyed, "ticker", body, a).status_code == 403
    assert requests.get(f"{keyed.url}/agents/ticker/.well-known/agent-card.json",
                        headers=a).status_code == 403
    cat = requests.get(f"{keyed.url}/.well-known/agent-card.json", headers=a).json()
    assert {x["id"] for x in cat["agents"]} == {"echo", "echo/shout"}
    card = requests.get(f"{keyed.url}/agents/echo/.well-known/agent-card.json", headers=a).json()
    assert card["securitySchemes"] == {"bearer": {"httpAuthSecurityScheme": {
        "scheme": "Bearer", "description": "an OIDC access token or a PAR API key"}}}
    # bob's task is not alice's
    tid = rpc(keyed, "echo", body, b).json()["result"]["task"]["id"]
    get = {"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": tid}}
    assert rpc_error(rpc(keyed, "echo", get, a)) == (2, -32001)
    assert rpc(keyed, "echo", get, b).json()["result"]["id"] == tid
    r = requests.get(f"{keyed.url}/a2a/ticker/tasks/{tid}", headers=a)
    assert r.status_code == 403


def test_extended_card_is_the_callers_card(keyed):
    a = {"Authorization": f"Bearer {KEY_A}"}
    card = requests.get(f"{keyed.url}/agents/echo/.well-known/agent-card.json", headers=a).json()
    assert card["capabilities"]["extendedAgentCard"] is True
    assert card["supportsAuthenticatedExtendedCard"] is True
    for method in ("GetExtendedAgentCard", "agent/getAuthenticatedExtendedCard"):
        body = {"jsonrpc": "2.0", "id": 7, "method": method}
        assert rpc(keyed, "echo", body).status_code == 401
        assert rpc(keyed, "ticker", body, a).status_code == 403  # not alice's to invoke
        r = rpc(keyed, "echo", body, a)
        assert r.status_code == 200 and r.json()["id"] == 7
        assert r.json()["result"] == card
    r = requests.get(f"{keyed.url}/a2a/echo/extendedAgentCard", headers=a)
    assert r.status_code == 200 and r.json() == card
    assert requests.get(f"{keyed.url}/a2a/echo/extendedAgentCard").status_code == 401
    assert requests.get(f"{keyed.url}/a2a/ticker/extendedAgentCard", headers=a).status_code == 403
    r = requests.get(f"{keyed.url}/a2a/echo/upper/extendedAgentCard", headers=a)
    assert r.status_code == 404 and r.json()["error"] == "agent_not_found"


@need_node
def test_client_fetches_extended_card(keyed):
    for t in TRANSPORTS:
        out = v1(keyed, "extended", "echo", t, token=KEY_A)
        assert out["transport"] == t
        assert out["name"] == "Echo" and out["extended"] is True
        assert out["skills"] == ["echo"] and out["schemes"] == ["bearer"]


@need_node
def test_client_with_bearer(keyed):
    out = v1(keyed, "card", "echo", "JSONRPC", token=KEY_A)
    assert out["schemes"] == ["bearer"]
    assert v1(keyed, "send", "echo", "HTTP+JSON", "hi", token=KEY_A)["task"]["state"] == "completed"
    assert v03(keyed, "send", "echo", token=KEY_A)["task"]["state"] == "completed"


# ---- through nginx ---------------------------------------------------------------------

@need_node
def test_stream_through_nginx(srv, tmp_path):
    need_nginx()
    proxy = Nginx(str(tmp_path / "nginx"),
                  [("/", srv.url, "\n            proxy_set_header Host $http_host;")])
    try:
        class Via:
            url = proxy.url

        out = v1(Via, "card", "ticker", "JSONRPC")
        assert ["JSONRPC", "1.0", f"{Via.url}/a2a/ticker"] in out["interfaces"]  # nginx's address
        # 4 s between events: longer than nginx's 3 s timeout, so only PAR's
        # keep-alives (runs.heartbeat_ms 500) keep the stream open
        for transport in TRANSPORTS:
            ev = v1(Via, "stream", "ticker", transport, '{"n":2,"ms":4000}')["events"]
            assert [e["kind"] for e in ev] == ["task", "status", "status", "artifact", "status"]
            assert ev[-1]["state"] == "completed"
        assert v03(Via, "stream", "ticker", '{"n":1,"ms":10}')["events"][-1]["state"] == "completed"
    finally:
        proxy.stop()
