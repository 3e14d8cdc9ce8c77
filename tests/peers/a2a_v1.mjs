// Drives PAR with the official A2A client, @a2a-js/sdk 1.x (protocol 1.0),
// for tests/e2e/test_a2a.py: one scenario per run, its findings as one JSON
// line on stdout. Usage: node a2a_v1.mjs <scenario> <base> <agent> <transport> [json]
// (transport JSONRPC or HTTP+JSON; A2A_TOKEN, when set, is sent as a bearer token).
import {
  ClientFactory,
  DefaultAgentCardResolver,
  JsonRpcTransportFactory,
  RestTransportFactory,
} from "@a2a-js/sdk/client";

const [scenario, base, agent, transport, arg] = process.argv.slice(2);
const token = process.env.A2A_TOKEN;
const fetchImpl = (url, init = {}) => {
  const headers = new Headers(init.headers || {});
  if (token) headers.set("Authorization", `Bearer ${token}`);
  return fetch(url, { ...init, headers });
};
const factory = new ClientFactory({
  transports: [new JsonRpcTransportFactory({ fetchImpl }), new RestTransportFactory({ fetchImpl })],
  cardResolver: new DefaultAgentCardResolver({ fetchImpl }),
  preferredTransports: [transport],
});

const STATES = ["unspecified", "submitted", "working", "completed", "failed", "canceled"];
const partValue = (p) => p.content?.value;
const task = (t) => ({
  id: t.id,
  contextId: t.contextId,
  state: STATES[t.status?.state] ?? t.status?.state,
  artifacts: (t.artifacts || []).map((a) => ({ id: a.artifactId, parts: a.parts.map(partValue) })),
  error: t.status?.message ? t.status.message.parts.map(partValue) : undefined,
});
const event = (e) => {
  const p = e.payload ?? { $case: e.kind, value: e };
  if (p.$case === "task") return { kind: "task", ...task(p.value) };
  if (p.$case === "statusUpdate")
    return {
      kind: "status",
      taskId: p.value.taskId,
      state: STATES[p.value.status?.state],
      parts: p.value.status?.message?.parts.map(partValue),
    };
  if (p.$case === "artifactUpdate")
    return { kind: "artifact", taskId: p.value.taskId, parts: p.value.artifact.parts.map(partValue) };
  return { kind: p.$case };
};
const message = (input) => ({
  messageId: `m-${Date.now()}-${Math.random()}`,
  role: 1, // ROLE_USER
  parts:
    typeof input === "string"
      ? [{ content: { $case: "text", value: input } }]
      : [{ content: { $case: "data", value: input } }],
});
const input = arg === undefined ? "hello" : arg.startsWith("{") ? JSON.parse(arg) : arg;

async function main() {
  const client = await factory.createFromUrl(`${base}/agents/${agent}/`, ".well-known/agent-card.json");
  const out = { transport: client.transport.protocolName };
  switch (scenario) {
    case "card": {
      const c = client.agentCard;
      Object.assign(out, {
        name: c.name,
        version: c.version,
        streaming: c.capabilities?.streaming,
        push: c.capabilities?.pushNotifications,
        skills: c.skills.map((s) => s.id),
        interfaces: c.supportedInterfaces.map((i) => [i.protocolBinding, i.protocolVersion, i.url]),
        schemes: Object.keys(c.securitySchemes || {}),
      });
      break;
    }
    case "extended": {
      // the client asks the agent for its extended card when the card says it has one
      const c = await client.getAgentCard();
      Object.assign(out, {
        name: c.name,
        extended: c.capabilities?.extendedAgentCard,
        skills: c.skills.map((s) => s.id),
        schemes: Object.keys(c.securitySchemes || {}),
      });
      break;
    }
    case "send":
      out.task = task(await client.sendMessage({ message: message(input) }));
      break;
    case "send_get": {
      const t = await client.sendMessage({ message: message(input) });
      out.got = task(await client.getTask({ id: t.id }));
      // the task's history: the user's message, then the agent's answer
      const h = await client.getTask({ id: t.id, historyLength: 2 });
      out.history = (h.history || []).map((m) => ({ role: m.role, parts: m.parts.map(partValue) }));
      const last = await client.getTask({ id: t.id, historyLength: 1 });
      out.last = (last.history || []).map((m) => m.role);
      break;
    }
    case "continue": {
      // a message naming an ended task
      const t = await client.sendMessage({ message: message(input) });
      try {
        await client.sendMessage({ message: { ...message(input), taskId: t.id } });
        out.error = "no error";
      } catch (e) {
        out.error = e.constructor.name;
      }
      break;
    }
    case "stream":
      out.events = [];
      for await (const e of client.sendMessageStream({ message: message(input) })) out.events.push(event(e));
      break;
    case "cancel": {
      // start without waiting, cancel, then read it back
      const t = await client.sendMessage({ message: message(input), configuration: { returnImmediately: true } });
      out.started = task(t);
      out.cancelled = task(await client.cancelTask({ id: t.id }));
      out.got = task(await client.getTask({ id: t.id }));
      try {
        await client.cancelTask({ id: t.id });
        out.again = "no error";
      } catch (e) {
        out.again = e.constructor.name;
      }
      break;
    }
    case "missing":
      try {
        await client.getTask({ id: "run_0000000000000000000000000000000f" });
        out.error = "no error";
      } catch (e) {
        out.error = e.constructor.name;
      }
      break;
    case "resubscribe": {
      // read two events, drop the stream, come back with SubscribeToTask
      const ac = new AbortController();
      out.first = [];
      let id;
      try {
        for await (const e of client.sendMessageStream({ message: message(input) }, { signal: ac.signal })) {
          const ev = event(e);
          out.first.push(ev);
          id = id ?? ev.id ?? ev.taskId;
          if (out.first.length === 2) ac.abort();
        }
      } catch (e) {
        out.dropped = e.name;
      }
      out.second = [];
      for await (const e of client.resubscribeTask({ id })) out.second.push(event(e));
      out.final = task(await client.getTask({ id }));
      break;
    }
    case "list": {
      const t = await client.sendMessage({ message: message(input) });
      const page = await client.listTasks({ pageSize: 10 });
      out.id = t.id;
      out.ids = page.tasks.map((x) => x.id);
      break;
    }
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ failed: `${e.constructor.name}: ${e.message}` }));
  process.exit(1);
});
