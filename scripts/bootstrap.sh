#!/usr/bin/env bash
# Installs what building, running and testing Slipway need, skipping what is
# already there. `--image` adds what builds the image (podman and mmdebstrap,
# unless docker or podman is there); `--test` adds that and what only the
# tests need (Chromium, PostgreSQL, kubectl for Kustomize).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

with_test_tools=false with_image_tools=false
case "${1:-}" in
  --test) with_test_tools=true with_image_tools=true ;;
  --image) with_image_tools=true ;;
esac

# Installs the Debian packages named, if their check command fails:
# ensure_apt_packages "PACKAGE:CHECK" …
ensure_apt_packages() {
  local missing=() entry
  for entry in "$@"; do
    bash -c "${entry#*:}" >/dev/null 2>&1 || missing+=("${entry%%:*}")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]} (apt)"
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_rust_tools() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "adding the wasm32 target"
    rustup target add wasm32-unknown-unknown
  fi
  # wasm-bindgen's CLI must match the library version in Cargo.lock exactly.
  local wasm_bindgen
  wasm_bindgen=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print }' "$SLIPWAY_ROOT/Cargo.lock")
  if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wasm_bindgen" ]; then
    log "installing wasm-bindgen-cli $wasm_bindgen"
    # Not --locked: its own lock file pins a crate version the registry lacks.
    cargo install wasm-bindgen-cli --version "$wasm_bindgen"
  fi
}

# Makes VENV hold what REQUIREMENTS lists (reinstalled when the file changes).
ensure_python_venv() {
  local venv=$1 requirements=$2 stamp="$1/.requirements"
  if [ -x "$venv/bin/mlflow" ] && cmp -s "$requirements" "$stamp"; then
    return
  fi
  log "installing $(basename "$requirements") into $venv (about a minute)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
}

ensure_node_modules() {
  local dir="$SLIPWAY_ROOT/end2end"
  local stamp="$dir/node_modules/.slipway-lock"
  if cmp -s "$dir/package-lock.json" "$stamp"; then
    return
  fi
  log "installing the browser-test and wasm-opt tools (npm)"
  (cd "$dir" && npm ci --silent --no-audit --no-fund)
  cp "$dir/package-lock.json" "$stamp"
}

ensure_apt_packages "curl:command -v curl"
if $with_test_tools; then
  ensure_apt_packages "chromium:command -v chromium" "postgresql:ls /usr/lib/postgresql/*/bin/initdb" \
    "kubectl:kubectl kustomize --help" "prometheus:command -v prometheus"
fi
if $with_image_tools; then
  # The tests run the image from its root filesystem, which podman gives.
  if $with_test_tools || ! command -v docker >/dev/null; then
    ensure_apt_packages "podman:command -v podman" "mmdebstrap:command -v mmdebstrap"
  fi
fi
ensure_rust_tools
ensure_python_venv "$SLIPWAY_VENV" "$SLIPWAY_ROOT/scripts/requirements.txt"
if $with_test_tools; then
  ensure_python_venv "$SLIPWAY_VENV_MLFLOW2" "$SLIPWAY_ROOT/scripts/requirements-mlflow2.txt"
fi
ensure_node_modules
