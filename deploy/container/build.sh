#!/usr/bin/env bash
# deploy/container/build.sh [BUILD_DIR] — builds PAR's image with podman
# without any image registry: the Debian 12 base is made here with
# debootstrap (--variant=minbase bookworm, from Debian's archive), imported
# with `podman import`, and passed to the Dockerfile as both of its bases.
# The debootstrap tarball is kept under BUILD_DIR/container (default
# ./build/container), so a second run starts at the image build.
#
# Environment: PAR_IMAGE (default localhost/par:dev), DEBIAN_MIRROR (default
# http://deb.debian.org/debian). Needs root (debootstrap, rootful podman):
# scripts/install-deps.sh --container installs podman, runc and debootstrap.
# Podman runs with runc and the cgroupfs manager (crun refuses the hybrid
# cgroup layout of some hosts).
set -euo pipefail

src="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(mkdir -p "${1:-$src/build}/container" && cd "${1:-$src/build}/container" && pwd)"
image="${PAR_IMAGE:-localhost/par:dev}"
base=localhost/par-debian:bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
tarball="$out/bookworm-minbase.tar"
podman=(podman --runtime runc --cgroup-manager=cgroupfs)
say() { printf 'container: %s\n' "$*" >&2; }

if [ ! -s "$tarball" ]; then
    root="$out/rootfs"
    if [ ! -x "$root/usr/bin/apt-get" ]; then
        rm -rf "$root"
        say "debootstrap --variant=minbase bookworm from $mirror (a few minutes, once)"
        debootstrap --variant=minbase bookworm "$root" "$mirror" >"$out/debootstrap.log" 2>&1 ||
            { tail -20 "$out/debootstrap.log" >&2; exit 1; }
    fi
    rm -f "$root"/var/cache/apt/archives/*.deb
    rm -rf "$root"/var/lib/apt/lists/*
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
fi
stamp="$out/base.imported"
if ! "${podman[@]}" image exists "$base" || [ "$tarball" -nt "$stamp" ]; then
    say "podman import $tarball as $base"
    "${podman[@]}" import --change 'CMD ["/bin/bash"]' "$tarball" "$base" >/dev/null
    touch "$stamp"
fi
say "podman build -f deploy/container/Dockerfile -t $image"
# --network host: the build stages reach Debian's archive as this host does;
# --format docker: HEALTHCHECK is a Docker image field (OCI has none)
"${podman[@]}" build --network host --format docker \
    --ignorefile "$src/deploy/container/containerignore" \
    --build-arg BUILD_IMAGE="$base" --build-arg RUNTIME_IMAGE="$base" \
    -f "$src/deploy/container/Dockerfile" -t "$image" "$src"
say "built $image ($("${podman[@]}" image inspect --format '{{.Size}}' "$image") bytes)"
