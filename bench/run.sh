#!/usr/bin/env bash
# `make bench`: release build, then bench/bench.py (see docs/performance.md).
# Then bench/export.py (metering export throughput); `bench/run.sh export` runs it alone.
# Then bench/longcall.py (long model calls); `bench/run.sh longcall` runs it alone.
# bench/pyembed.py (the par Python module beside HTTP): `bench/run.sh pyembed` alone.
# Then bench/runs.py (event streams of runs); `bench/run.sh runs` runs it alone
# (RUNS_BENCH_SMOKE=1: a small version, seconds long).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DPAR_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" >/dev/null
# BENCH_BASELINE_REV=<revision>: that revision is built too (build-baseline,
# from a temporary worktree) and its rows run beside this one's (bench.py).
if [ -n "${BENCH_BASELINE_REV:-}" ]; then
    base=$(mktemp -d /tmp/par-baseline.XXXXXX)
    git worktree add -q --detach "$base" "$BENCH_BASELINE_REV"
    trap 'git worktree remove --force "$base"' EXIT
    cmake -S "$base" -B "$base/build" -DCMAKE_BUILD_TYPE=Release -DPAR_TESTS=OFF >/dev/null
    cmake --build "$base/build" -j "$(nproc)" >/dev/null
    export BENCH_BASELINE="$base/build"
fi
if [ "${1:-}" = pyembed ]; then
    exec /usr/bin/python3 bench/pyembed.py
fi
if [ "${1:-}" = export ]; then
    exec /usr/bin/python3 bench/export.py
fi
# longcall holds thousands of connections: raise the descriptor limit to the hard one
if [ "${1:-}" = longcall ]; then
    ulimit -n "$(ulimit -Hn)"
    exec /usr/bin/python3 bench/longcall.py
fi
# runs holds 10,000 streams: the same
if [ "${1:-}" = runs ]; then
    ulimit -n "$(ulimit -Hn)"
    exec /usr/bin/python3 bench/runs.py
fi
/usr/bin/python3 bench/bench.py
/usr/bin/python3 bench/pyembed.py
/usr/bin/python3 bench/export.py
ulimit -n "$(ulimit -Hn)"
/usr/bin/python3 bench/longcall.py
/usr/bin/python3 bench/runs.py
