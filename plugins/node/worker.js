'use strict';
/*
 * worker.js: PAR's worker for Node.js agents (runtime: node18 | node20).
 *
 * Speaks the worker protocol (docs/worker-protocol.md) on file descriptor 3 and
 * runs the handlers of one package version, laid out as pixell-kit lays it
 * out (`entrypoint: src/main:handler`, `src/main.js` exporting `handler`).
 * Node's standard library only; Node >= 18. The Node loader plugin
 * (plugins/node/node_loader.c) starts it as
 *
 *     par-worker [sandbox options] --exec /usr/bin/node [V8 limits] worker.js
 *         --fd 3 --root PKGDIR [--max-input N] [--max-output N] [--max-event N]
 *         --export NAME=path/module:function ...
 *
 * so that par-worker's sandbox applies to it. Each package version runs in
 * its own processes: a reload (a new version, new processes) always loads the
 * new code. Handlers run on Node's single thread: a sync handler holds the
 * worker until it returns, an async one (a Promise) lets the worker take other
 * requests while it awaits. What the agent writes with console.* or to
 * process.stdout / process.stderr becomes LOG frames of the invocation it
 * runs for (AsyncLocalStorage); what reaches fds 1 and 2 another way is
 * logged by the runtime as the worker's output.
 *
 * It must never write to descriptor 3 except whole frames through `send`.
 */

const fs = require('fs');
const net = require('net');
const path = require('path');
const util = require('util');
const { AsyncLocalStorage } = require('async_hooks');
const { pathToFileURL } = require('url');

const PROTOCOL = 1;
const T = {
  HELLO: 1, INVOKE: 2, RESULT: 3, ERROR: 4, CALL: 5, CALL_RESULT: 6, LOG: 7,
  CANCEL: 10, EVENT: 12, EVENT_ACK: 13, CALL_EVENT: 14,
};
const HEADER_SIZE = 24;
const MAX_HEADER = 1 << 20;
const EVENT_WINDOW = 64; // EVENTs of one invocation sent and not yet granted back
const EVENT_TYPE = /^[A-Za-z0-9._:-]{1,64}$/;
const MAX_LOG_LINE = 8192;
const LOG_LINES_PER_SEC = 200; // the runtime's budget per worker
const MEMORY_CHECK_MS = 100;

const current = new AsyncLocalStorage(); // the invocation a log line belongs to

class AgentCallError extends Error {
  /** A sub-agent call failed: `error` is PAR's stable error name. */
  constructor(error, message, status) {
    super(`${error}: ${message}`);
    this.name = 'AgentCallError';
    this.error = error;
    this.status = status || 0;
    this.detail = message;
  }
}

class CancelledError extends Error {
  constructor(message) {
    super(message || 'the invocation was cancelled');
    this.name = 'AbortError';
    this.code = 'ABORT_ERR';
  }
}

/* ---- frames ------------------------------------------------------------------------------ */

function clean(text) {
  // the runtime refuses a header holding NUL; lone surrogates become U+FFFD in JSON.stringify
  return String(text).replace(/\0/g, '\\x00');
}

class Channel {
  constructor(fd, maxInput, onFrame, onEnd) {
    this.fd = fd;
    this.maxInput = maxInput;
    this.chunks = [];
    this.have = 0;
    this.sock = new net.Socket({ fd, readable: true, writable: true });
    this.sock.on('data', (c) => this.feed(c, onFrame));
    this.sock.on('end', onEnd);
    this.sock.on('error', onEnd);
  }

  frame(type, id, header, body) {
    const h = header === null || header === undefined ? Buffer.alloc(0)
      : Buffer.from(JSON.stringify(header), 'utf8');
    const b = body || Buffer.alloc(0);
    const f = Buffer.alloc(HEADER_SIZE);
    f.writeUInt8(type, 0);
    f.writeUInt8(PROTOCOL, 1);
    f.writeUInt16LE(0, 2);
    f.writeUInt32LE(h.length, 4);
    f.writeUInt32LE(b.length, 8);
    f.writeUInt32LE(0, 12);
    f.writeBigUInt64LE(BigInt(id), 16);
    return Buffer.concat([f, h, b]);
  }

  send(type, id, header, body) {
    this.sock.write(this.frame(type, id, header, body));
  }

  /** For the last words of a process that is about to exit: written at once. */
  sendNow(type, id, header) {
    const buf = this.frame(type, id, header, null);
    for (let off = 0, tries = 0; off < buf.length && tries < 1000;) {
      try {
        off += fs.writeSync(this.fd, buf, off);
      } catch (e) {
        if (e.code !== 'EAGAIN') return;
        tries++;
      }
    }
  }

  feed(chunk, onFrame) {
    this.chunks.push(chunk);
    this.have += chunk.length;
    for (;;) {
      if (this.have < HEADER_SIZE) return;
      let buf = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
      this.chunks = [buf];
      const ver = buf.readUInt8(1);
      const hlen = buf.readUInt32LE(4);
      const blen = buf.readUInt32LE(8);
      if (ver !== PROTOCOL || hlen > MAX_HEADER || blen > this.maxInput) {
        throw new Error(`bad frame (version ${ver}, header ${hlen}, body ${blen} bytes)`);
      }
      const total = HEADER_SIZE + hlen + blen;
      if (buf.length < total) return;
      const type = buf.readUInt8(0);
      const id = buf.readBigUInt64LE(16);
      const header = hlen ? JSON.parse(buf.toString('utf8', HEADER_SIZE, HEADER_SIZE + hlen)) : {};
      const body = buf.subarray(HEADER_SIZE + hlen, total);
      buf = buf.subarray(total);
      this.chunks = buf.length ? [Buffer.from(buf)] : [];
      this.have = buf.length;
      onFrame(type, id, header, Buffer.from(body));
    }
  }
}

/* ---- the worker -------------------------------------------------------------------------- */

class Worker {
  constructor(opts) {
    this.opts = opts;
    this.root = opts.root;
    this.handlers = []; // functions, in export order
    this.inflight = new Map(); // request id (BigInt) -> Invocation
    this.calls = new Map(); // call id -> {inv, resolve, reject} or a CallStream
    this.nextCall = 0n;
    this.logWindow = 0;
    this.logCount = 0;
    this.logDropped = 0;
    this.starting = true; // until HELLO every line goes out (the start error keeps them)
    this.chan = null;
  }

  /* -- loading ---------------------------------------------------------------------------- */

  relative(p) {
    return p && p.startsWith(this.root + path.sep) ? p.slice(this.root.length + 1) : p;
  }

  /** 'file:line: ' of a load failure: a SyntaxError's own position, else the first
   * frame of the stack in the package's files. */
  where(e) {
    const stack = e && typeof e.stack === 'string' ? e.stack : '';
    const first = /^(\/[^\n]*?):(\d+)\n/.exec(stack); // CommonJS SyntaxError
    if (first) return `${this.relative(first[1])}:${first[2]}: `;
    const re = /(?:\(|at )(?:file:\/\/)?(\/[^():\n]+):(\d+):\d+\)?/g;
    let m;
    while ((m = re.exec(stack)) !== null) {
      if (m[1].startsWith(this.root + path.sep)) return `${this.relative(m[1])}:${m[2]}: `;
    }
    return '';
  }

  /** The file of `module` (a path relative to the root, with or without its
   * extension, or a directory with an index), or null. */
  resolve(mod) {
    const base = path.resolve(this.root, mod);
    if (base !== this.root && !base.startsWith(this.root + path.sep)) return null;
    const cands = [base, `${base}.js`, `${base}.mjs`, `${base}.cjs`,
      path.join(base, 'index.js'), path.join(base, 'index.mjs'), path.join(base, 'index.cjs')];
    for (const c of cands) {
      try {
        if (fs.statSync(c).isFile()) return c;
      } catch (e) { /* next */ }
    }
    return null;
  }

  async importFile(file) {
    try {
      return require(file);
    } catch (e) {
      if (e && e.code === 'ERR_REQUIRE_ESM') return import(pathToFileURL(file).href);
      throw e;
    }
  }

  async load() {
    const cache = new Map();
    for (const [name, entry] of this.opts.exports) {
      const what = name ? `sub-agent ${name}` : 'the main export';
      const colon = entry.lastIndexOf(':');
      const mod = colon > 0 ? entry.slice(0, colon) : '';
      const func = colon > 0 ? entry.slice(colon + 1) : '';
      if (!mod || !func) {
        throw new LoadError(`export '${name || '(main)'}': entrypoint '${entry}' is not path/module:function`);
      }
      const file = this.resolve(mod);
      if (file === null) {
        throw new LoadError(`${mod}: no such module in the package (${mod}.js, ${mod}.mjs, ` +
          `${mod}.cjs or ${mod}/index.js; entrypoint ${entry} of ${what})`);
      }
      if (!cache.has(file)) {
        try {
          cache.set(file, await this.importFile(file));
        } catch (e) {
          this.log('error', `cannot load ${this.relative(file)}:\n${stackOf(e)}`);
          throw new LoadError(`${this.where(e) || this.relative(file) + ': '}cannot load ` +
            `${this.relative(file)}: ${errorText(e)}`);
        }
      }
      const m = cache.get(file);
      let fn = lookup(m, func);
      if (fn === undefined && m && m.default) fn = lookup(m.default, func);
      if (typeof fn !== 'function') {
        throw new LoadError(`${this.relative(file)}: ${fn === undefined ? 'exports no' : 'its'} ` +
          `${func}${fn === undefined ? '' : ' is not a function'} (entrypoint ${entry} of ${what})`);
      }
      this.handlers.push(fn);
    }
  }

  /* -- logging ---------------------------------------------------------------------------- */

  log(level, msg, inv) {
    const now = Math.floor(Date.now() / 1000);
    let dropped = 0;
    if (now !== this.logWindow) {
      dropped = this.logDropped;
      this.logDropped = 0;
      this.logWindow = now;
      this.logCount = 0;
    }
    this.logCount++;
    if (this.logCount > LOG_LINES_PER_SEC && !this.starting) {
      this.logDropped++;
      return;
    }
    if (dropped) this.sendLog('warn', `${dropped} agent log lines dropped (rate limit)`, null);
    this.sendLog(level, msg, inv !== undefined ? inv : current.getStore());
  }

  sendLog(level, msg, inv) {
    let m = clean(msg);
    if (m.length > MAX_LOG_LINE) {
      m = `${m.slice(0, MAX_LOG_LINE)}... (${m.length - MAX_LOG_LINE} more characters)`;
    }
    // the frame id says which invocation the line belongs to
    if (this.chan) this.chan.send(T.LOG, inv ? inv.wid : 0n, { level, msg: m });
  }

  /* -- invocations ------------------------------------------------------------------------ */

  invoke(wid, header, body) {
    const x = header.x === undefined ? 0 : header.x;
    const inv = new Invocation(this, wid, header);
    if (!Number.isInteger(x) || x < 0 || x >= this.handlers.length) {
      this.answerError(inv, 'bad_request', `no export #${JSON.stringify(x)} in this worker`);
      return;
    }
    let input;
    try {
      input = body.length ? JSON.parse(body.toString('utf8')) : null;
    } catch (e) {
      this.answerError(inv, 'invalid_json', `input is not JSON: ${e.message}`);
      return;
    }
    this.inflight.set(wid, inv);
    const fn = this.handlers[x];
    current.run(inv, () => {
      const t0 = process.cpuUsage();
      let out;
      try {
        out = fn(input, inv.context);
      } catch (e) {
        this.answerException(inv, e);
        return;
      }
      inv.cpu = process.cpuUsage(t0); // the synchronous part (metering)
      this.settle(inv, out);
    });
  }

  settle(inv, out) {
    let p;
    if (isGenerator(out)) p = this.driveGen(inv, out);
    else if (isAsyncGenerator(out)) p = this.driveAsyncGen(inv, out);
    else if (out && typeof out.then === 'function') p = out;
    else {
      this.answer(inv, out);
      return;
    }
    Promise.resolve(p).then((v) => this.answer(inv, v), (e) => this.answerException(inv, e));
  }

  /** A generator handler: each value it yields is an event; the output is its
   * return value, else what it gave context.result(). A cancel ends it. */
  async driveGen(inv, gen) {
    try {
      for (;;) {
        if (inv.cancelled) throw new CancelledError();
        const step = gen.next();
        if (step.done) return step.value !== undefined ? step.value : inv.result;
        await inv.context.emit(...yieldedEvent(step.value));
      }
    } finally {
      gen.return();
    }
  }

  async driveAsyncGen(inv, gen) {
    try {
      for (;;) {
        if (inv.cancelled) throw new CancelledError();
        const step = await gen.next();
        if (step.done) return step.value !== undefined ? step.value : inv.result;
        await inv.context.emit(...yieldedEvent(step.value));
      }
    } finally {
      await gen.return();
    }
  }

  answer(inv, out) {
    if (!this.inflight.has(inv.wid)) return;
    let text;
    try {
      text = JSON.stringify(out === undefined ? null : out);
      if (text === undefined) throw new TypeError(`a ${typeof out} is not JSON`);
    } catch (e) {
      this.answerError(inv, 'invalid_agent_output',
        `the handler returned a value that is not JSON-serialisable: ${e.message}`);
      return;
    }
    const body = Buffer.from(text, 'utf8');
    if (body.length > this.opts.maxOutput) {
      this.answerError(inv, 'output_too_large',
        `output of ${body.length} bytes exceeds the cap of ${this.opts.maxOutput}`);
      return;
    }
    const h = {};
    if (Object.keys(inv.units).length) h.units = inv.units;
    if (inv.cpu) h.cpu_ms = Math.round((inv.cpu.user + inv.cpu.system) / 1e3 * 1e3) / 1e3;
    this.inflight.delete(inv.wid);
    this.chan.send(T.RESULT, inv.wid, h, body);
  }

  answerException(inv, e) {
    if (inv.cancelled && (e instanceof CancelledError || (e && e.name === 'AbortError'))) {
      this.answerError(inv, 'cancelled', 'the invocation was cancelled');
      return;
    }
    if (e instanceof AgentCallError && e.error === 'agent_timeout') {
      this.answerError(inv, 'agent_timeout', e.detail);
      return;
    }
    const tb = stackOf(e);
    this.log('error', `handler threw ${errorName(e)}:\n${tb}`, inv);
    this.answerError(inv, 'agent_error', errorText(e), tb);
  }

  answerError(inv, name, message, tb) {
    this.inflight.delete(inv.wid);
    const h = { error: name, message: clean(message) };
    if (tb) h.traceback = clean(tb.slice(-MAX_LOG_LINE));
    this.chan.send(T.ERROR, inv.wid, h);
  }

  cancel(wid) {
    const inv = this.inflight.get(wid);
    if (inv) inv.cancel();
  }

  eventAck(wid, header) {
    const inv = this.inflight.get(wid);
    if (inv && Number.isInteger(header.n) && header.n > 0) inv.eventsAcked(header.n);
  }

  eventFrame(data, event) {
    const etype = event === undefined || event === null || event === '' ? 'data' : event;
    if (typeof etype !== 'string' || !EVENT_TYPE.test(etype)) {
      throw new TypeError(`event type ${JSON.stringify(etype)}: 1 to 64 characters of [A-Za-z0-9._:-]`);
    }
    let text;
    try {
      text = JSON.stringify(data === undefined ? null : data);
    } catch (e) {
      throw new TypeError(`the data of event '${etype}' is not JSON-serialisable: ${e.message}`);
    }
    if (text === undefined) throw new TypeError(`the data of event '${etype}' is not JSON-serialisable`);
    const body = Buffer.from(text, 'utf8');
    if (body.length > this.opts.maxEvent) {
      throw new RangeError(`event '${etype}' of ${body.length} bytes exceeds the cap of ` +
        `${this.opts.maxEvent} bytes (runs.max_event_kb)`);
    }
    return [etype, body];
  }

  /* -- sub-agent calls -------------------------------------------------------------------- */

  call(inv, agent, input, stream) {
    if (typeof agent !== 'string' || agent === '') throw new TypeError('context.call: an agent id is required');
    const text = JSON.stringify(input === undefined ? null : input);
    this.nextCall += 1n;
    const cid = this.nextCall;
    const h = { agent, parent: Number(inv.wid) };
    if (stream) h.stream = true;
    this.chan.send(T.CALL, cid, h, Buffer.from(text, 'utf8'));
    return cid;
  }

  callResult(cid, header, body) {
    const slot = this.calls.get(cid);
    if (!slot) return;
    this.calls.delete(cid);
    addUnits(slot.inv, header.units);
    slot.end(header.status || 0, body);
  }

  callEvent(cid, header, body) {
    const slot = this.calls.get(cid);
    if (slot && slot.event) slot.event(header.event || 'data', body);
  }

  /* -- main loop -------------------------------------------------------------------------- */

  onFrame(type, id, header, body) {
    switch (type) {
      case T.INVOKE: this.invoke(id, header, body); break;
      case T.CALL_RESULT: this.callResult(id, header, body); break;
      case T.CANCEL: this.cancel(id); break;
      case T.EVENT_ACK: this.eventAck(id, header); break;
      case T.CALL_EVENT: this.callEvent(id, header, body); break;
      default: break; // HELLO, LOG, ... are not the runtime's to send; ignored
    }
  }
}

class LoadError extends Error {}

/* ---- the context a handler receives ------------------------------------------------------ */

class Context {
  constructor(inv, header) {
    Object.defineProperty(this, '_inv', { value: inv });
    this.requestId = header.request_id || '';
    this.traceId = header.trace_id || '';
    this.spanId = header.span_id || '';
    this.agent = header.agent || '';
    const slash = this.agent.indexOf('/');
    this.subAgent = slash >= 0 ? this.agent.slice(slash + 1) : null;
    this.subject = header.subject === undefined ? null : header.subject;
    this.tenant = header.tenant === undefined ? null : header.tenant;
    this.deadlineMs = header.deadline_ms || 0;
    this.data = header.context || {};
    this.signal = inv.abort.signal;
    // the Python worker's names, for code ported from it
    this.request_id = this.requestId;
    this.trace_id = this.traceId;
    this.span_id = this.spanId;
    this.sub_agent = this.subAgent;
    this.deadline_ms = this.deadlineMs;
  }

  /** True once the runtime cancelled this invocation (its run cancelled, its
   * client gone, its deadline); `signal` is aborted at the same moment. */
  get cancelled() {
    return this._inv.cancelled;
  }

  /** Emits an event of a run: `data` any JSON value, `event` its type. Returns a
   * Promise, done once the event went out (it waits while the run's slowest
   * client is 64 events behind); it rejects once the invocation is cancelled.
   * A value that is not an event throws at once (nothing is sent). */
  emit(data, event) {
    const [etype, body] = this._inv.worker.eventFrame(data, event);
    return this._inv.queueEvent(etype, body);
  }

  /** The output of a generator handler whose return value is undefined. */
  result(value) {
    this._inv.result = value;
  }

  /** Calls another agent of this package (private sub-agents included):
   * a Promise of its output, rejected with an AgentCallError. */
  call(agentId, input) {
    const inv = this._inv;
    return new Promise((resolve, reject) => {
      const cid = inv.worker.call(inv, agentId, input, false);
      inv.worker.calls.set(cid, {
        inv,
        end: (status, body) => {
          try {
            resolve(callOutcome(status, body));
          } catch (e) {
            reject(e);
          }
        },
      });
    });
  }

  /** Calls another agent and iterates its events: `for await (const ev of
   * context.stream('sub', x)) ev.event, ev.data`; then `.output`. */
  stream(agentId, input) {
    return new CallStream(this._inv, agentId, input);
  }

  /** Reports usage units for this invocation (added up): usage({tokens: 12}). */
  usage(units) {
    for (const [k, v] of Object.entries(units || {})) {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError(`usage unit ${k} must be a number`);
      this._inv.units[k] = (this._inv.units[k] || 0) + v;
    }
  }

  log(msg, level) {
    this._inv.worker.log(level || 'info', String(msg), this._inv);
  }

  get(key, dflt) {
    const v = this[key] !== undefined && key !== '_inv' ? this[key] : this.data[key];
    return v === undefined || v === null ? dflt : v;
  }
}

class CallStream {
  constructor(inv, agent, input) {
    this.inv = inv;
    this.output = undefined;
    this.items = [];
    this.wake = null;
    const cid = inv.worker.call(inv, agent, input, true);
    inv.worker.calls.set(cid, {
      inv,
      event: (etype, body) => this.push({ kind: 'event', event: etype, body }),
      end: (status, body) => this.push({ kind: 'end', status, body }),
    });
  }

  push(item) {
    this.items.push(item);
    if (this.wake) {
      const w = this.wake;
      this.wake = null;
      w();
    }
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      while (this.items.length === 0) await new Promise((r) => { this.wake = r; });
      const it = this.items.shift();
      if (it.kind === 'end') {
        this.output = callOutcome(it.status, it.body);
        return;
      }
      let data = null;
      try {
        data = JSON.parse(it.body.toString('utf8'));
      } catch (e) { /* not JSON: null */ }
      yield { event: it.event, data };
    }
  }
}

class Invocation {
  constructor(worker, wid, header) {
    this.worker = worker;
    this.wid = wid;
    this.units = {};
    this.cancelled = false;
    this.cpu = null;
    this.result = undefined;
    this.unacked = 0;
    this.queue = []; // [type, body, resolve, reject] waiting for the window
    this.abort = new AbortController();
    this.context = new Context(this, header);
  }

  queueEvent(etype, body) {
    return new Promise((resolve, reject) => {
      if (this.cancelled) reject(new CancelledError());
      else if (this.unacked < EVENT_WINDOW && this.queue.length === 0) {
        this.sendEvent(etype, body);
        resolve();
      } else this.queue.push([etype, body, resolve, reject]);
    });
  }

  sendEvent(etype, body) {
    this.unacked++;
    this.worker.chan.send(T.EVENT, this.wid, { event: etype }, body);
  }

  eventsAcked(n) {
    this.unacked = Math.max(0, this.unacked - n);
    while (this.queue.length && this.unacked < EVENT_WINDOW) {
      const [etype, body, resolve] = this.queue.shift();
      this.sendEvent(etype, body);
      resolve();
    }
  }

  cancel() {
    if (this.cancelled) return;
    this.cancelled = true;
    for (const [, , , reject] of this.queue) reject(new CancelledError());
    this.queue = [];
    this.abort.abort();
  }
}

/* ---- helpers ----------------------------------------------------------------------------- */

function lookup(obj, dotted) {
  let v = obj;
  for (const part of dotted.split('.')) {
    if (v === null || v === undefined) return undefined;
    v = v[part];
  }
  return v;
}

function isGenerator(v) {
  return Object.prototype.toString.call(v) === '[object Generator]';
}

function isAsyncGenerator(v) {
  return Object.prototype.toString.call(v) === '[object AsyncGenerator]';
}

/** [data, event] of a value a generator handler yielded: a 2-array whose first
 * item is a string is [event type, data]; anything else is "data". */
function yieldedEvent(v) {
  if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string') return [v[1], v[0]];
  return [v, 'data'];
}

function callOutcome(status, body) {
  let out = null;
  try {
    out = body && body.length ? JSON.parse(body.toString('utf8')) : null;
  } catch (e) { /* not JSON */ }
  if (status === 0) return out;
  const err = out && typeof out === 'object' ? out : {};
  throw new AgentCallError(err.error || 'agent_error', err.message || 'call failed', status);
}

function addUnits(inv, units) {
  if (!inv || !units || typeof units !== 'object') return;
  for (const [k, v] of Object.entries(units)) {
    if (typeof v === 'number') inv.units[k] = (inv.units[k] || 0) + v;
  }
}

function errorName(e) {
  return e instanceof Error ? e.name : typeof e;
}

function errorText(e) {
  if (e instanceof Error) return e.message ? `${e.name}: ${e.message}` : e.name;
  return `${typeof e === 'string' ? 'Error' : 'thrown ' + typeof e}: ${util.inspect(e)}`;
}

/** The stack of what a handler threw, without the worker's own frames (and the
 * event-loop frames under them), which say nothing about the package. */
function stackOf(e) {
  if (e instanceof Error && typeof e.stack === 'string') {
    const lines = e.stack.split('\n');
    const mine = lines.findIndex((l) => /^\s+at /.test(l) && l.includes(__filename));
    // and without Node's module loader, which says nothing either
    return (mine > 0 ? lines.slice(0, mine) : lines)
      .filter((l) => !/\(node:internal\/modules\/|at require \(node:/.test(l)).join('\n');
  }
  return `${errorText(e)} (a thrown value that is not an Error has no stack)`;
}

/* ---- output capture ---------------------------------------------------------------------- */

/** console.* and process.stdout / process.stderr become LOG frames. */
function captureOutput(w) {
  const line = (level) => (...args) => w.log(level, util.format(...args));
  console.log = line('info');
  console.info = line('info');
  console.debug = line('debug');
  console.warn = line('warn');
  console.error = line('error');
  console.trace = (...args) => {
    const e = new Error(util.format(...args));
    w.log('error', `Trace: ${e.message}\n${e.stack.split('\n').slice(2).join('\n')}`);
  };
  for (const [stream, level] of [[process.stdout, 'info'], [process.stderr, 'warn']]) {
    let pending = '';
    stream.write = (chunk, enc, cb) => {
      pending += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        w.log(level, pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
      if (pending.length > MAX_LOG_LINE) {
        w.log(level, pending);
        pending = '';
      }
      const done = typeof enc === 'function' ? enc : cb;
      if (typeof done === 'function') process.nextTick(done);
      return true;
    };
  }
}

/* ---- start ------------------------------------------------------------------------------- */

function parseArgs(argv) {
  const o = {
    fd: 3, root: null, maxInput: 16 << 20, maxOutput: 16 << 20, maxEvent: 1 << 20, memoryMb: 0, exports: [],
  };
  for (let i = 0; i < argv.length; i += 2) {
    const a = argv[i];
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`worker.js: ${a} needs a value`);
    if (a === '--fd') o.fd = parseInt(v, 10);
    else if (a === '--root') o.root = v;
    else if (a === '--max-input') o.maxInput = parseInt(v, 10);
    else if (a === '--max-output') o.maxOutput = parseInt(v, 10);
    else if (a === '--max-event') o.maxEvent = parseInt(v, 10);
    else if (a === '--memory-mb') o.memoryMb = parseInt(v, 10);
    else if (a === '--cpu-seconds') { /* par-worker applied it */ }
    else if (a === '--export') {
      const eq = v.indexOf('=');
      o.exports.push(eq < 0 ? ['', v] : [v.slice(0, eq), v.slice(eq + 1)]);
    } else throw new Error(`worker.js: unknown option ${a}`);
  }
  if (!o.root || o.exports.length === 0) throw new Error('worker.js: --root and at least one --export are required');
  o.root = path.resolve(o.root);
  return o;
}

/** The memory limit: V8 cannot start under RLIMIT_AS, so the loader gives V8
 * a heap limit (--max-old-space-size) and this watchdog checks the resident
 * size of the whole process (Buffers and ArrayBuffers live outside the heap)
 * every MEMORY_CHECK_MS. It runs on a thread of its own (worker_threads), so
 * a handler that blocks the event loop cannot hide from it. Over the limit it
 * says so on descriptor 2 (the runtime logs the worker's output) and kills
 * the process: its requests fail with agent_crashed, as under RLIMIT_AS. */
const WATCHDOG = `
const fs = require('fs');
const { workerData } = require('worker_threads');
const limit = workerData.limitMb * 1048576;
setInterval(() => {
  const rss = process.memoryUsage.rss ? process.memoryUsage.rss() : process.memoryUsage().rss;
  if (rss > limit) {
    try {
      fs.writeSync(2, 'the worker uses ' + Math.round(rss / 1048576) + ' MB, over its limit of ' +
        workerData.limitMb + ' MB; it is killed\\n');
    } finally {
      process.kill(process.pid, 'SIGKILL');
    }
  }
}, workerData.everyMs);
`;

function watchMemory(limitMb) {
  if (!limitMb) return;
  const { Worker: Thread } = require('worker_threads');
  const t = new Thread(WATCHDOG, {
    eval: true, workerData: { limitMb, everyMs: MEMORY_CHECK_MS }, stdout: true, stderr: true,
    resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 2 },
  });
  t.unref();
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const w = new Worker(opts);
  w.chan = new Channel(opts.fd, opts.maxInput, (t, id, h, b) => {
    try {
      w.onFrame(t, id, h, b);
    } catch (e) {
      w.log('error', `protocol: ${e.message}`);
      process.exit(1);
    }
  }, () => {
    w.exiting = true;
    process.exit(0);
  });
  captureOutput(w);
  watchMemory(opts.memoryMb);
  process.chdir(opts.root);
  process.on('exit', (code) => {
    // called inside a handler: the line is that invocation's
    const inv = current.getStore();
    if (!w.exiting) {
      w.chan.sendNow(T.LOG, inv ? inv.wid : 0n,
        { level: 'error', msg: `process.exit(${code}) called; the worker stops` });
    }
  });
  process.on('uncaughtException', (e) => {
    // Node's own rule: an exception nobody catches ends the process
    w.chan.sendNow(T.LOG, 0n, { level: 'error', msg: clean(`uncaught ${errorName(e)}; the worker stops:\n${stackOf(e)}`) });
    w.exiting = true;
    process.exit(1);
  });
  try {
    await w.load();
  } catch (e) {
    const msg = e instanceof LoadError ? e.message : `${w.where(e)}${errorText(e)}`;
    w.chan.sendNow(T.ERROR, 0n, { error: 'agent_load_failed', message: clean(msg) });
    w.exiting = true;
    process.exit(1);
  }
  w.chan.send(T.HELLO, 0n, {
    protocol: PROTOCOL, runtime: 'node', node: process.versions.node, pid: process.pid,
    exports: opts.exports.map(([n]) => n),
  });
  w.starting = false;
}

main().catch((e) => {
  fs.writeSync(2, `worker.js: ${stackOf(e)}\n`);
  process.exit(2);
});
