#!/usr/bin/env bash
# Installs the Debian packages PAR needs. Idempotent and non-interactive: it
# only calls apt-get (and npm) when something is missing.
#   scripts/install-deps.sh          build + serve + test dependencies (make check)
#   scripts/install-deps.sh --serve  only what building and serving need (make serve):
#                                    no test tools, no Node.js, no npm test peers
#   scripts/install-deps.sh --bench  everything, and what `make bench` needs
#   scripts/install-deps.sh --fuzz   everything, and what `make fuzz` needs (clang, libFuzzer)
#   scripts/install-deps.sh --fleet  everything, and what `make fleet-test` needs
#                                    (PostgreSQL, HAProxy)
#   scripts/install-deps.sh --container  only what `make container-test` needs: podman,
#                                    runc and debootstrap (deploy/container/build.sh)
set -euo pipefail

mode="${1:-test}"
case "$mode" in
    test | --test) mode=test ;;
    --serve) mode=serve ;;
    --bench) mode=bench ;;
    --fuzz) mode=fuzz ;;
    --fleet) mode=fleet ;;
    --container) mode=container ;;
    *)
        echo "usage: $0 [--serve | --test | --bench | --fuzz | --fleet | --container]" >&2
        exit 2
        ;;
esac

# Building (the unit tests' cmocka is configured with the build) and serving:
# the Python worker and pip/venv for packages' requirements, python3-dev and
# setuptools/wheel for the `par` Python module, curl for the tour.
if [ "$mode" = container ]; then
    # the image is built from a base made locally with debootstrap (no image
    # registry needed) and run with runc: crun refuses a hybrid cgroup layout;
    # uidmap gives rootless podman its subordinate ids, slirp4netns its network
    pkgs=(podman runc debootstrap uidmap slirp4netns fuse-overlayfs curl python3)
else
pkgs=(
    build-essential cmake pkg-config
    libh2o-evloop-dev libssl-dev zlib1g-dev libcurl4-openssl-dev
    libarchive-dev libyaml-dev libjansson-dev libsqlite3-dev libseccomp-dev
    libcmocka-dev libsodium-dev librhonabwy-dev libpq-dev
    python3 python3-venv python3-pip python3-dev python3-setuptools python3-wheel curl
)
fi
if [ "$mode" != serve ] && [ "$mode" != container ]; then
    # the test suites: pytest and its clients, minisign and promtool to check
    # PAR against, zip tools for hand-made archives, git for the README test,
    # nginx as the idle-timeout proxy in front of run streams (bench too)
    pkgs+=(python3-pytest python3-requests python3-yaml prometheus minisign zip unzip git openssl util-linux
        nginx-light)
fi
if [ "$mode" = bench ]; then
    pkgs+=(wrk python3-fastapi python3-uvicorn)
fi
if [ "$mode" = fleet ]; then
    pkgs+=(postgresql haproxy)
fi
if [ "$mode" = fuzz ]; then
    pkgs+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
# The test peers (S3-compatible store, OIDC issuer, A2A and MCP clients) come from npm: Node.js and
# npm from Debian unless the machine already has them.
# kubectl renders the Kubernetes manifests offline (kubectl kustomize,
# deploy/kubernetes/): Debian's kubernetes-client unless one is installed.
if [ "$mode" != serve ] && [ "$mode" != container ] && ! command -v kubectl >/dev/null 2>&1; then
    missing+=(kubernetes-client)
fi
case "$mode" in serve | container) nonode=1 ;; *) nonode=0 ;; esac
if [ "$nonode" = 0 ] && ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
elif [ "$nonode" = 0 ] && ! command -v node >/dev/null 2>&1 &&
    ! command -v nodejs >/dev/null 2>&1; then
    # the Node.js loader plugin (plugins/node) runs its tests' agents with it
    missing+=(nodejs)
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

[ "$nonode" = 1 ] && exit 0

# npm peers, pinned by tests/peers/package-lock.json; installed again whenever
# the lock file changes (the stamp is a copy of the lock file it was installed from).
peers="$(cd "$(dirname "$0")/.." && pwd)/tests/peers"
lock="$(<"$peers/package-lock.json")"
stamp="$peers/node_modules/.par-installed-lock.json"
if [ ! -f "$stamp" ] || [ "$(<"$stamp")" != "$lock" ]; then
    echo "install-deps: installing test peers (npm ci in tests/peers)" >&2
    (cd "$peers" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    printf '%s\n' "$lock" > "$stamp" 2>/dev/null || true
fi
