// Drives PAR with the official A2A v0.3 client (@a2a-js/sdk 0.3.x, installed
// as a2a-sdk-v03) for tests/e2e/test_a2a.py: one scenario per run, its
// findings as one JSON line on stdout.
// Usage: node a2a_v03.mjs <scenario> <base> <agent> [json]
import { A2AClient } from "a2a-sdk-v03/client";

const [scenario, base, agent, arg] = process.argv.slice(2);
const token = process.env.A2A_TOKEN;
const fetchImpl = (url, init = {}) => {
  const headers = new Headers(init.headers || {});
  if (token) headers.set("Authorization", `Bearer ${token}`);
  return fetch(url, { ...init, headers });
};
const input = arg === undefined ? "hello" : arg.startsWith("{") ? JSON.parse(arg) : arg;
const message = () => ({
  kind: "message",
  messageId: `m-${Date.now()}-${Math.random()}`,
  role: "user",
  parts: typeof input === "string" ? [{ kind: "text", text: input }] : [{ kind: "data", data: input }],
});
const result = (r) => {
  if ("error" in r) throw new Error(`JSON-RPC error ${r.error.code}: ${r.error.message}`);
  return r.result;
};
const task = (t) => ({
  kind: t.kind,
  id: t.id,
  state: t.status?.state,
  artifacts: (t.artifacts || []).map((a) => a.parts),
});

async function main() {
  const client = await A2AClient.fromCardUrl(`${base}/agents/${agent}/.well-known/agent-card.json`, { fetchImpl });
  const out = {};
  switch (scenario) {
    case "send": {
      const t = result(await client.sendMessage({ message: message() }));
      out.task = task(t);
      out.got = task(result(await client.getTask({ id: t.id })));
      const h = result(await client.getTask({ id: t.id, historyLength: 2 }));
      out.history = (h.history || []).map((m) => ({ kind: m.kind, role: m.role, parts: m.parts }));
      break;
    }
    case "stream":
      out.events = [];
      for await (const e of client.sendMessageStream({ message: message() }))
        out.events.push({ kind: e.kind, state: e.status?.state, final: e.final, parts: (e.artifact || e.status?.message)?.parts });
      break;
    case "cancel": {
      const t = result(await client.sendMessage({ message: message(), configuration: { blocking: false } }));
      out.started = task(t);
      out.cancelled = task(result(await client.cancelTask({ id: t.id })));
      const again = await client.cancelTask({ id: t.id });
      out.again = again.error?.code;
      const missing = await client.getTask({ id: "run_0000000000000000000000000000000f" });
      out.missing = missing.error?.code;
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
