#!/usr/bin/env bash
# Installs the Debian packages PAR needs to build and test. Idempotent and
# non-interactive: it only calls apt-get when something is missing.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --bench  also what `make bench` needs
#   scripts/install-deps.sh --fuzz   also what `make fuzz` needs (clang, libFuzzer)
set -euo pipefail

pkgs=(
    build-essential cmake pkg-config
    libh2o-evloop-dev libssl-dev zlib1g-dev libcurl4-openssl-dev
    libarchive-dev libfyaml-dev libjansson-dev libsqlite3-dev libseccomp-dev
    libcmocka-dev prometheus libsodium-dev librhonabwy-dev minisign
    python3 python3-venv python3-pip python3-pytest python3-requests python3-yaml
    zip unzip curl
)
if [ "${1:-}" = "--bench" ]; then
    pkgs+=(wrk nginx-light python3-fastapi python3-uvicorn)
fi
if [ "${1:-}" = "--fuzz" ]; then
    pkgs+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
# The test peers (S3-compatible store, OIDC issuer) come from npm: Node.js and
# npm from Debian unless the machine already has them.
if ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    SUDO=
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm peers, pinned by tests/peers/package-lock.json; installed once.
peers="$(cd "$(dirname "$0")/.." && pwd)/tests/peers"
if [ ! -x "$peers/node_modules/.bin/s3rver" ] || [ ! -x "$peers/node_modules/.bin/oauth2-mock-server" ]; then
    echo "install-deps: installing test peers (npm ci in tests/peers)" >&2
    (cd "$peers" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
