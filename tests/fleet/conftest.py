"""The fleet suite (`make fleet-test`): several `par serve` nodes, PostgreSQL,
HAProxy and the S3-compatible store on loopback.

It reuses the e2e harness (tests/e2e/conftest.py: Server, server_factory,
assert_error, the sanitizer and error-line checks) unchanged: that module is
loaded under its own name and everything it defines is re-exported here, so
`from conftest import ...` works the same in both suites.
"""
import importlib.util
import os
import sys

E2E = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e")
sys.path.insert(0, os.path.abspath(E2E))

_spec = importlib.util.spec_from_file_location("par_e2e_conftest", os.path.join(E2E, "conftest.py"))
_e2e = importlib.util.module_from_spec(_spec)
sys.modules["par_e2e_conftest"] = _e2e
_spec.loader.exec_module(_e2e)

for _name in dir(_e2e):
    if not _name.startswith("__"):
        globals()[_name] = getattr(_e2e, _name)
