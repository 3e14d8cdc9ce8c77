#!/usr/bin/env python3
"""A small orchestrator: one question fanned out to three agents at once.

    make
    PYTHONPATH=build/python python3 examples/orchestrator/orchestrator.py "some text"

PAR runs in this process (the `par` module); the three agents are
  keywords            a Python agent in a sandboxed worker process (this example's own),
  echo/shout          a native agent the configuration trusts: it runs in-process,
  hello-python        a Python agent of the examples, in its own sandboxed workers,
called together with asyncio.gather; the answers are combined into one report.
Every call carries the orchestrator's identity and one trace id, as an HTTP
caller's would.
"""
import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time

import par

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("PAR_BUILD_DIR") or os.path.join(HERE, "..", "..", "build")


def packages():
    """The three packages `make` built."""
    b = os.path.abspath(BUILD)
    return [os.path.join(b, "examples", "orchestrator", "keywords-1.0.0.apkg"),
            os.path.join(b, "packages", "echo-1.0.0.apkg"),
            os.path.join(b, "packages", "hello-python-1.0.0.apkg")]


async def orchestrate(rt, text, user):
    trace = "orchestrator-%d" % int(time.time())
    opts = {"_subject": user, "_trace_id": trace, "_timeout": 10}
    t0 = time.perf_counter()
    words, headline, greeting = await asyncio.gather(
        rt.acall("keywords", text=text, count=3, **opts),
        rt.acall("echo/shout", text=text.split(".")[0], **opts),
        rt.acall("hello-python", name=user, **opts),
    )
    return {
        "greeting": greeting["message"],
        "headline": headline["text"],
        "keywords": words["keywords"],
        "words": words["words"],
        "trace_id": trace,
        "elapsed_ms": round((time.perf_counter() - t0) * 1000, 2),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("text", nargs="?", default="PAR runs agent packages. Agents written in "
                    "Python run in sandboxed workers; trusted native agents run in-process; "
                    "the orchestrator calls agents without HTTP.")
    ap.add_argument("--user", default="ada")
    args = ap.parse_args()
    missing = [p for p in packages() if not os.path.exists(p)]
    if missing:
        sys.exit("build PAR first (`make`): missing %s" % ", ".join(missing))
    state = tempfile.mkdtemp(prefix="par-orchestrator-")
    os.chmod(state, 0o755)  # as root, workers run as `nobody` and read their scratch from it
    config = {
        "state_dir": state,
        "trusted": ["echo"],                       # echo runs in this process
        "trust": {"require_signatures": False},    # the example packages are unsigned
        "log": {"level": "warn"},
    }
    try:
        with par.Runtime(config) as rt:
            for p in packages():
                rt.deploy(p)
            report = asyncio.run(orchestrate(rt, args.text, args.user))
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
