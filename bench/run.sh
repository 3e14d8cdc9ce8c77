#!/usr/bin/env bash
# `make bench`: release build, then bench/bench.py (see docs/performance.md).
# Then bench/export.py (metering export throughput); `bench/run.sh export` runs it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DPAR_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" >/dev/null
if [ "${1:-}" = export ]; then
    exec /usr/bin/python3 bench/export.py
fi
/usr/bin/python3 bench/bench.py
exec /usr/bin/python3 bench/export.py
