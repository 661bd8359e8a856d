#!/usr/bin/env bash
# `make image`: Slipway's image (Containerfile) from a release build, tagged
# $SLIPWAY_IMAGE (default localhost/slipway:latest). podman where present
# (as root it needs no daemon: chroot isolation), else docker. Where the
# base image cannot be pulled (no registry in reach), it is made from
# Debian's own packages with the machine's apt sources, under the name the
# Containerfile's FROM uses.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLIPWAY_ROOT"

image=${SLIPWAY_IMAGE:-localhost/slipway:latest}
base=docker.io/library/debian:bookworm-slim
# Debian 12's glibc: a binary that needs a newer one does not start there.
base_glibc=2.36

scripts/bootstrap.sh --image
scripts/build.sh --release

needed=$(objdump -T target/release/slipway | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
if [ "$(printf '%s\n%s\n' "$needed" "$base_glibc" | sort -V | tail -n 1)" != "$base_glibc" ]; then
  die "target/release/slipway needs glibc $needed; the image's Debian 12 has $base_glibc.
Build on Debian 12, or inside it: docker run --rm -v \"\$PWD\":/src -w /src rust:1-bookworm make image"
fi

if command -v podman >/dev/null; then
  engine=(podman) build=(podman build --isolation chroot --pull=never)
else
  engine=(docker) build=(docker build)
fi

if ! "${engine[@]}" image inspect "$base" >/dev/null 2>&1 \
  && ! "${engine[@]}" pull -q "$base" >/dev/null 2>&1; then
  log "no registry answers: making $base from Debian's packages (about a minute)"
  # What the official slim image leaves out: documentation, manuals,
  # translations, and apt's lists.
  mmdebstrap --variant=minbase --quiet \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm - | "${engine[@]}" import - "$base" >/dev/null
fi

log "building $image"
"${build[@]}" --file Containerfile --tag "$image" . >/dev/null
size=$("${engine[@]}" image inspect --format '{{.Size}}' "$image")
log "$image: $((size / 1000000)) MB"
