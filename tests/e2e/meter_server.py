"""A recording Stripe-compatible meter events endpoint for the billing tests
(tests/e2e/test_billing.py) and the fleet's (tests/fleet/).

It behaves like Stripe: an identifier seen before is answered with the event
already recorded, never counted twice; it answers after a delay, several
requests at a time, and can be told to refuse, fail or throttle."""
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Meter:
    """Records meter events by identifier, as Stripe does; notes any identifier
    that comes back with a different event (that would be a double bill
    hidden by the deduplication)."""

    def __init__(self, delay=0.0):
        self.lock = threading.Lock()
        self.events = {}      # identifier → form
        self.posts = []       # (time, identifier or status) in arrival order
        self.conflicts = []   # identifiers re-sent with another value, customer or time
        self.plan = []        # per arriving request: None, a status, (429, retry_after), "slow"
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        meter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
                with meter.lock:
                    action = meter.plan.pop(0) if meter.plan else None
                    meter.in_flight += 1
                    meter.max_in_flight = max(meter.max_in_flight, meter.in_flight)
                try:
                    self.handle_event(form, action)
                finally:
                    with meter.lock:
                        meter.in_flight -= 1

            def handle_event(self, form, action):
                now = time.time()
                if action == "slow":
                    time.sleep(1.5)  # longer than the exporter's timeout
                    return self.answer(500, {})
                if meter.delay:
                    time.sleep(meter.delay)
                if self.path != "/v1/billing/meter_events" or \
                        self.headers.get("authorization") != "Bearer sk_test_par" or \
                        self.headers.get("idempotency-key") != form.get("identifier"):
                    return self.answer(401, {"error": {"message": "bad request shape"}})
                if isinstance(action, tuple):
                    with meter.lock:
                        meter.posts.append((now, action[0]))
                    return self.answer(action[0], {"error": {"message": "slow down"}},
                                       {"Retry-After": str(action[1])})
                if isinstance(action, int):
                    with meter.lock:
                        meter.posts.append((now, action))
                    return self.answer(action, {"error": {"message": "try again"}})
                if form.get("payload[stripe_customer_id]") == "cus_refused":
                    return self.answer(400, {"error": {"message": "No such customer: cus_refused"}})
                ident = form["identifier"]
                with meter.lock:
                    meter.posts.append((now, ident))
                    old = meter.events.setdefault(ident, form)
                    if old != form:
                        meter.conflicts.append((ident, old, form))
                self.answer(200, {"object": "billing.meter_event", "identifier": ident})

            def answer(self, code, doc, headers=None):
                b = json.dumps(doc).encode()
                try:
                    self.send_response(code)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(b)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(b)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def identifiers(self):
        """The identifiers of the events accepted, in arrival order (re-sends
        included; refused and failed requests left out)."""
        with self.lock:
            return [p for _, p in self.posts if isinstance(p, str)]

    def sums(self):
        """(customer, event name) → summed value over distinct identifiers."""
        out = {}
        with self.lock:
            for f in self.events.values():
                k = (f["payload[stripe_customer_id]"], f["event_name"])
                out[k] = out.get(k, 0) + int(f["payload[value]"])
        return out

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
