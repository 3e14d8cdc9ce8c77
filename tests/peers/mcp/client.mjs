// The official MCP TypeScript SDK client against PAR (tests/e2e/test_mcp.py).
// Usage: node client.mjs <scenario> <endpoint url> [json args]; prints one
// JSON object with what the client saw. Works on Node 18 (Debian 12).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, TaskStatusNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

const [scenario, url, rawArgs] = process.argv.slice(2);
const args = rawArgs ? JSON.parse(rawArgs) : {};
const headers = args.token ? { Authorization: `Bearer ${args.token}` } : {};

// A fetch that cuts the first tool call's event stream after `cutAfter`
// events, the way a broken connection does; the SDK then resumes with GET
// and Last-Event-ID.
function cuttingFetch(cutAfter, log) {
    let cut = false;
    return async (input, init) => {
        const res = await fetch(input, init);
        const isCall = init?.method === 'POST' && String(init.body || '').includes('"tools/call"');
        log.push({ method: init?.method || 'GET', status: res.status,
                   lastEventId: new Headers(init?.headers).get('last-event-id') });
        if (cut || !isCall || !(res.headers.get('content-type') || '').includes('text/event-stream'))
            return res;
        cut = true;
        const reader = res.body.getReader();
        let seen = 0;
        let text = '';
        const body = new ReadableStream({
            async pull(ctrl) {
                const { value, done } = await reader.read();
                if (done) { ctrl.close(); return; }
                const chunk = new TextDecoder().decode(value);
                // pass whole events only, up to the cut
                text += chunk;
                let out = '';
                let i;
                while ((i = text.indexOf('\n\n')) >= 0 && seen < cutAfter) {
                    out += text.slice(0, i + 2);
                    text = text.slice(i + 2);
                    seen++;
                }
                if (out) ctrl.enqueue(new TextEncoder().encode(out));
                if (seen >= cutAfter) {
                    reader.cancel().catch(() => {});
                    ctrl.error(new Error('connection dropped by the test'));
                }
            },
        });
        return new Response(body, { status: res.status, headers: res.headers });
    };
}

async function connect(extra = {}) {
    const client = new Client({ name: 'par-e2e', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers },
        reconnectionOptions: { initialReconnectionDelay: 50, maxReconnectionDelay: 200,
                               reconnectionDelayGrowFactor: 1.5, maxRetries: 5 },
        ...extra,
    });
    const errors = [];
    client.onerror = (e) => errors.push(String(e));
    await client.connect(transport);
    return { client, transport, errors };
}

async function basic() {
    const { client, transport } = await connect();
    const out = { sessionId: transport.sessionId, protocolVersion: transport.protocolVersion,
                  server: client.getServerVersion(), capabilities: client.getServerCapabilities() };
    out.tools = (await client.listTools()).tools;
    const progress = [];
    out.result = await client.callTool({ name: args.tool, arguments: args.arguments }, undefined,
                                       { onprogress: (p) => progress.push(p) });
    out.progress = progress;
    if (args.failTool)
        out.failed = await client.callTool({ name: args.failTool, arguments: args.failArguments });
    try {
        await client.callTool({ name: 'no_such_tool', arguments: {} });
    } catch (e) {
        out.unknownTool = { code: e.code, message: e.message };
    }
    await client.ping();
    await transport.terminateSession();
    out.terminated = transport.sessionId === undefined;
    await client.close();
    return out;
}

async function resume() {
    const log = [];
    const { client, errors } = await connect({ fetch: cuttingFetch(args.cutAfter, log) });
    const progress = [];
    const result = await client.callTool({ name: args.tool, arguments: args.arguments },
                                         CallToolResultSchema,
                                         { onprogress: (p) => progress.push(p), timeout: 60000 });
    await client.close();
    return { result, progress, log, errors };
}

async function tasks() {
    const { client } = await connect();
    const seen = [];
    // notifications/tasks/status, which PAR sends on the tasks/result stream
    const statuses = [];
    client.setNotificationHandler(TaskStatusNotificationSchema, (n) => { statuses.push(n.params); });
    const stream = client.experimental.tasks.callToolStream(
        { name: args.tool, arguments: args.arguments }, CallToolResultSchema,
        { task: { ttl: 60000 }, timeout: 60000 });
    let result, error;
    for await (const m of stream) {
        if (m.type === 'taskCreated' || m.type === 'taskStatus') seen.push({ type: m.type, task: m.task });
        else if (m.type === 'result') result = m.result;
        else if (m.type === 'error') error = String(m.error);
    }
    const taskId = seen[0]?.task?.taskId;
    const got = taskId ? await client.experimental.tasks.getTask(taskId) : null;
    const list = await client.experimental.tasks.listTasks();
    // a second, slow one, cancelled
    const created = await client.request(
        { method: 'tools/call', params: { name: args.tool, arguments: args.slowArguments, task: { ttl: 60000 } } },
        (await import('@modelcontextprotocol/sdk/types.js')).CreateTaskResultSchema);
    const cancelled = await client.experimental.tasks.cancelTask(created.task.taskId);
    await client.close();
    return { seen, result, error, got, listed: list.tasks.map((t) => t.taskId), created, cancelled,
             statuses };
}

// tools/list page by page, as a client that follows nextCursor does
async function pages() {
    const { client } = await connect();
    const sizes = [];
    const names = [];
    let cursor;
    do {
        const page = await client.listTools(cursor ? { cursor } : {});
        sizes.push(page.tools.length);
        names.push(...page.tools.map((t) => t.name));
        cursor = page.nextCursor;
    } while (cursor);
    await client.close();
    return { sizes, names };
}

const scenarios = { basic, resume, tasks, pages };
try {
    const out = await scenarios[scenario]();
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exit(0);
} catch (e) {
    process.stdout.write(JSON.stringify({ fatal: String(e && e.stack || e) }) + '\n');
    process.exit(1);
}
