"""A recording OTLP/HTTP collector on loopback for the OTLP exporter's tests
(tests/e2e/test_otlp.py) and its benchmark row (bench/bench.py).

It accepts POST /v1/traces and /v1/metrics with JSON bodies, checks every body
against OTLP's JSON shapes (opentelemetry-proto: ExportTraceServiceRequest,
ExportMetricsServiceRequest; hex ids, 64-bit integers as decimal strings,
attributes as {key, value: {stringValue}}), records what it accepted and
answers like a collector. It can misbehave on purpose:
  - `plan`: per arriving request, None (normal), an HTTP status to answer
    instead (500, 429 ...), or ("status", {"retry-after": "1"});
  - `delay`: seconds to sleep before answering (a slow collector);
  - `stop()` / `start()` on the same port: a collector that is down.
A body that breaks the shapes is answered 400 and kept in `invalid`.
"""
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
UINT = re.compile(r"^[0-9]+$")
INT = re.compile(r"^-?[0-9]+$")


class ShapeError(Exception):
    pass


def need(cond, what):
    if not cond:
        raise ShapeError(what)


def check_attributes(attrs, where):
    need(isinstance(attrs, list), f"{where}.attributes: a list")
    for a in attrs:
        need(isinstance(a, dict) and isinstance(a.get("key"), str) and a["key"],
             f"{where}.attributes: {{key, value}}")
        v = a.get("value")
        need(isinstance(v, dict) and len(v) == 1 and isinstance(v.get("stringValue"), str),
             f"{where}.attributes[{a['key']}]: value {{stringValue}}")


def attr_map(attrs):
    return {a["key"]: a["value"]["stringValue"] for a in attrs or []}


def check_envelope(doc, outer, inner):
    need(isinstance(doc, dict) and set(doc) == {outer}, f"top level: only {outer}")
    need(isinstance(doc[outer], list) and doc[outer], f"{outer}: a non-empty list")
    for r in doc[outer]:
        res = r.get("resource")
        need(isinstance(res, dict), f"{outer}[].resource")
        check_attributes(res.get("attributes"), "resource")
        need(attr_map(res["attributes"]).get("service.name"), "resource: service.name")
        need(isinstance(r.get(inner), list) and r[inner], f"{outer}[].{inner}")
        for s in r[inner]:
            need(isinstance(s.get("scope"), dict) and isinstance(s["scope"].get("name"), str),
                 f"{inner}[].scope.name")


def check_span(s):
    need(HEX32.match(s.get("traceId", "")) and s["traceId"] != "0" * 32, "span.traceId: 32 hex")
    need(HEX16.match(s.get("spanId", "")), "span.spanId: 16 hex")
    if "parentSpanId" in s:
        need(HEX16.match(s["parentSpanId"]), "span.parentSpanId: 16 hex")
    need(isinstance(s.get("name"), str) and s["name"], "span.name")
    need(s.get("kind") in (1, 2, 3, 4, 5), "span.kind: an enum integer")
    for k in ("startTimeUnixNano", "endTimeUnixNano"):
        need(isinstance(s.get(k), str) and UINT.match(s[k]), f"span.{k}: a decimal string")
    need(int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"]), "span: ends after it starts")
    check_attributes(s.get("attributes", []), "span")
    st = s.get("status", {})
    need(st.get("code", 0) in (0, 1, 2), "span.status.code: 0, 1 or 2")


def check_traces(doc):
    check_envelope(doc, "resourceSpans", "scopeSpans")
    for r in doc["resourceSpans"]:
        for ss in r["scopeSpans"]:
            need(isinstance(ss.get("spans"), list), "scopeSpans[].spans")
            for s in ss["spans"]:
                check_span(s)


def check_point(p, where):
    check_attributes(p.get("attributes", []), where)
    for k in ("startTimeUnixNano", "timeUnixNano"):
        need(isinstance(p.get(k), str) and UINT.match(p[k]), f"{where}.{k}: a decimal string")


def check_metric(m):
    need(isinstance(m.get("name"), str) and m["name"], "metric.name")
    kinds = [k for k in ("sum", "gauge", "histogram") if k in m]
    need(len(kinds) == 1, f"metric {m['name']}: one of sum, gauge, histogram")
    data = m[kinds[0]]
    need(isinstance(data.get("dataPoints"), list), f"{m['name']}.dataPoints")
    if kinds[0] in ("sum", "histogram"):
        need(data.get("aggregationTemporality") == 2, f"{m['name']}: cumulative temporality")
    if kinds[0] == "sum":
        need(isinstance(data.get("isMonotonic"), bool), f"{m['name']}.isMonotonic")
    for p in data["dataPoints"]:
        check_point(p, m["name"])
        if kinds[0] == "histogram":
            need(UINT.match(p.get("count", "")), f"{m['name']}.count: a decimal string")
            bc, eb = p.get("bucketCounts", []), p.get("explicitBounds", [])
            need(all(isinstance(c, str) and UINT.match(c) for c in bc),
                 f"{m['name']}.bucketCounts: decimal strings")
            need(len(bc) == len(eb) + 1, f"{m['name']}: len(bucketCounts) = len(bounds) + 1")
            need(sum(int(c) for c in bc) == int(p["count"]), f"{m['name']}: buckets sum to count")
        else:
            need(("asInt" in p) != ("asDouble" in p), f"{m['name']}: asInt or asDouble")
            if "asInt" in p:
                need(isinstance(p["asInt"], str) and INT.match(p["asInt"]),
                     f"{m['name']}.asInt: a decimal string")


def check_metrics(doc):
    check_envelope(doc, "resourceMetrics", "scopeMetrics")
    for r in doc["resourceMetrics"]:
        for sm in r["scopeMetrics"]:
            need(isinstance(sm.get("metrics"), list), "scopeMetrics[].metrics")
            for m in sm["metrics"]:
                check_metric(m)


CHECKS = {"/v1/traces": check_traces, "/v1/metrics": check_metrics}


class Collector:
    def __init__(self, port=0, check=True):
        self.lock = threading.Lock()
        self.check = check
        self.traces, self.metrics = [], []  # accepted request bodies, parsed
        self.invalid = []                   # (path, error, body)
        self.arrivals = []                  # (time, path, status answered)
        self.plan = []
        self.delay = 0.0
        self.headers = []                   # request headers of accepted requests
        self.port = port
        self.httpd = None
        self.start()

    def start(self):
        col = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                body = self.rfile.read(n)
                with col.lock:
                    action = col.plan.pop(0) if col.plan else None
                    delay = col.delay
                if delay:
                    time.sleep(delay)
                status, extra = 200, {}
                if isinstance(action, tuple):
                    status, extra = action
                elif isinstance(action, int):
                    status = action
                elif self.path not in CHECKS:
                    status = 404
                elif self.headers.get("content-type") != "application/json":
                    status = 415
                else:
                    status = col.accept(self.path, body, dict(self.headers))
                with col.lock:
                    col.arrivals.append((time.time(), self.path, status))
                self.answer(status, extra)

            def answer(self, code, extra):
                b = b"{}"
                try:
                    self.send_response(code)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(b)))
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(b)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def accept(self, path, body, headers):
        try:
            doc = json.loads(body)
            if self.check:
                CHECKS[path](doc)
        except (ValueError, ShapeError, KeyError, TypeError, AttributeError) as e:
            with self.lock:
                self.invalid.append((path, repr(e), body[:2000]))
            return 400
        with self.lock:
            (self.traces if path == "/v1/traces" else self.metrics).append(doc)
            self.headers.append(headers)
        return 200

    def stop(self):
        """Down: nothing listens on the port any more (connections refused)."""
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    close = stop

    def spans(self):
        with self.lock:
            docs = list(self.traces)
        out = []
        for d in docs:
            for r in d["resourceSpans"]:
                res = attr_map(r["resource"]["attributes"])
                for ss in r["scopeSpans"]:
                    for s in ss["spans"]:
                        out.append(dict(s, resource=res, scope=ss["scope"],
                                        attrs=attr_map(s.get("attributes"))))
        return out

    def metric_docs(self):
        with self.lock:
            return list(self.metrics)

    def latest_metrics(self):
        """name → Metric of the newest snapshot accepted, or {}."""
        docs = self.metric_docs()
        if not docs:
            return {}
        out = {}
        for r in docs[-1]["resourceMetrics"]:
            for sm in r["scopeMetrics"]:
                for m in sm["metrics"]:
                    out[m["name"]] = m
        return out
