#!/usr/bin/env bash
# The image test (part of `make test`): `make image` builds it; its root
# filesystem holds Slipway's files and nothing of the build machine's
# secrets; its own binary, run from that filesystem as the image says
# (entrypoint, environment, uid 65532), starts and answers /healthz,
# /readyz and the UI; and what the image adds stays within its budget.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLIPWAY_ROOT"

# What Slipway adds to the base: the binary and the UI (33 MB now), and git
# with its dependencies (48 MB, most of it Perl).
budget_mb=100
image=localhost/slipway:test
base=docker.io/library/debian:bookworm-slim
work=$(mktemp -d "${TMPDIR:-/tmp}/slipway-image.XXXXXX")
planted=()
pid=
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  podman image unmount "$image" >/dev/null 2>&1 || true
  podman rmi -f "$image" >/dev/null 2>&1 || true
  for file in "${planted[@]}"; do rm -rf "$file"; done
  rm -rf "$work"
}
trap cleanup EXIT

# Secrets where a careless build would pick them up from the context: a
# .env, and a data directory with a database. Planted only where nothing is.
canary="canary-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
for file in .env slipway-data/slipway.db; do
  if [ ! -e "$file" ]; then
    mkdir -p "$(dirname "$file")"
    echo "SLIPWAY_WEBHOOK_SECRET=$canary" > "$file"
    planted+=("$file")
  fi
done
[ -e slipway-data ] && [ ${#planted[@]} -gt 0 ] && planted+=(slipway-data)

SLIPWAY_IMAGE=$image scripts/image.sh

mount=$(podman image mount "$image")
root="$work/root"
cp -a "$mount" "$root"
podman image unmount "$image" >/dev/null

# Nothing of the build machine's: no planted secret in any file.
if grep -rlF "$canary" "$root" 2>/dev/null; then
  die "the image holds a secret from the build context"
fi
# Only what the Containerfile adds, on top of the base.
base_mount=$(podman image mount "$base")
added=$(cd "$root" && find . -path ./proc -prune -o -print | while read -r path; do
  [ -e "$base_mount/$path" ] || [ -L "$base_mount/$path" ] || echo "$path"
done | sort)
podman image unmount "$base" >/dev/null
# (podman leaves an empty /etc/hosts where its RUN step had one mounted.)
# And what the packages it installs own (dpkg's file lists; /lib is
# /usr/lib here), with dpkg's and the CA certificates' bookkeeping.
owned=$(cat "$root"/var/lib/dpkg/info/*.list \
  | sed -e 's#^/lib/#/usr/lib/#' -e 's#^/bin/#/usr/bin/#' -e 's#^/sbin/#/usr/sbin/#' -e 's#^#.#' | LC_ALL=C sort -u)
unexpected=$(echo "$added" | grep -vE '^\./(usr/local/bin/slipway|usr/share/slipway(/.*)?|var/lib/slipway|etc/hosts)$' \
  | grep -vE '^\./(var/lib/dpkg/.*|var/cache/ldconfig(/.*)?|etc/ssl/certs/.*|etc/ca-certificates\.conf|usr/local/share/ca-certificates)$' \
  | LC_ALL=C sort | LC_ALL=C comm -23 - <(echo "$owned") || true)
[ ! -s "$root/etc/hosts" ] || die "the image's /etc/hosts is not empty: $(cat "$root/etc/hosts")"

[ -z "$unexpected" ] || die "the image adds files the Containerfile does not name:
$unexpected"
echo "$added" | grep -qx './usr/share/slipway/site/pkg/slipway.wasm' || die "the UI is missing: $added"

size=$(podman image inspect --format '{{.Size}}' "$image")
base_size=$(podman image inspect --format '{{.Size}}' "$base")
added_mb=$(( (size - base_size) / 1000000 ))
log "the image adds $added_mb MB to its base (budget $budget_mb MB); $((size / 1000000)) MB in all"
[ "$added_mb" -le "$budget_mb" ] || die "the image adds $added_mb MB, over its $budget_mb MB budget"

# Run as the image says: its user, entrypoint and environment.
user=$(podman image inspect --format '{{.Config.User}}' "$image")
entrypoint=$(podman image inspect --format '{{index .Config.Entrypoint 0}}' "$image")
mapfile -t environment < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image" | grep .)
[ "$user" = "65532:65532" ] || die "the image runs as '$user', not 65532:65532"
# Git runs there as Slipway's user (projects from a repository need it).
chroot --userspec="$user" "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp git --version | grep -q '^git version' \
  || die "git does not run in the image as $user"
port=$(free_port)
chroot --userspec="$user" "$root" /usr/bin/env -i "${environment[@]}" \
  SLIPWAY_LISTEN="127.0.0.1:$port" SLIPWAY_GATEWAY_LISTEN=127.0.0.1:0 SLIPWAY_REPLICA_NAME=image-test \
  SLIPWAY_MLFLOW_URI=http://127.0.0.1:9 "$entrypoint" >"$work/slipway.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/slipway.log" >&2; die "the image's slipway exited"; }
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")" = 200 ] \
  || { cat "$work/slipway.log" >&2; die "/healthz did not answer 200"; }
# Ready: its database (SQLite in the image's data directory, written as
# 65532) answers; MLflow, absent here, is said, not a reason to be unready.
readyz=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$port/readyz")
[ "${readyz##* }" = 200 ] || die "/readyz: $readyz"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/pkg/slipway.wasm")" = 200 ] \
  || die "the image's slipway does not serve its UI"
[ "$(stat -c %u "$root/var/lib/slipway/slipway.db")" = 65532 ] || die "the database is not 65532's"
kill "$pid"
wait "$pid" || true
pid=
log "the image's slipway ran as $user from the image's root filesystem: /healthz, /readyz and the UI answered"
