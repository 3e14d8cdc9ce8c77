#!/usr/bin/env bash
# `make bench`: release build, then bench/bench.py (see docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DPAR_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" >/dev/null
exec /usr/bin/python3 bench/bench.py
