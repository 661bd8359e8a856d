#!/usr/bin/env bash
# Builds Slipway: the UI's wasm bundle and assets into target/site, and the
# `slipway` binary. `--release` optimises both (and runs wasm-opt); `--ui`
# builds the UI only (the tests run the binary `cargo test` built).
#
# These are the steps `cargo leptos build` takes, run directly, so a fresh
# machine does not compile cargo-leptos (20+ minutes) to get them; the
# settings come from `[workspace.metadata.leptos]` in Cargo.toml, which
# `cargo leptos watch` still reads for development.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLIPWAY_ROOT"

release=false server=true
for arg in "$@"; do
  case "$arg" in
    --release) release=true ;;
    --ui) server=false ;;
    *) die "usage: scripts/build.sh [--release] [--ui]" ;;
  esac
done

# Components are type-erased in every build (`always-erase-components`): the
# tests pass the same flag, so the server build reuses what they compiled.
export RUSTFLAGS="--cfg erase_components"
site="$SLIPWAY_ROOT/target/site"
pkg="$site/pkg"

if $release; then
  wasm_profile=(--profile wasm-release) wasm_dir=wasm-release server_profile=(--release)
else
  wasm_profile=() wasm_dir=debug server_profile=()
fi

log "building the UI (wasm)"
cargo build -p app --lib --target wasm32-unknown-unknown --no-default-features --features hydrate \
  "${wasm_profile[@]}"

rm -rf "$site"
mkdir -p "$pkg"
# The name Leptos' hydration script loads: `/pkg/slipway.js` and
# `/pkg/slipway.wasm` (LEPTOS_OUTPUT_NAME, set in .cargo/config.toml).
wasm-bindgen --target web --no-typescript --out-dir "$pkg" --out-name slipway \
  "target/wasm32-unknown-unknown/$wasm_dir/app.wasm"
mv "$pkg/slipway_bg.wasm" "$pkg/slipway.wasm"
if $release; then
  # From the npm package `binaryen` (Debian's is too old: its output never hydrates).
  PATH="$SLIPWAY_ROOT/end2end/node_modules/.bin:$PATH" wasm-opt -Oz --converge \
    --enable-bulk-memory --enable-nontrapping-float-to-int \
    "$pkg/slipway.wasm" -o "$pkg/slipway.wasm"
fi
cp style/main.css "$pkg/slipway.css"
cp -R public/. "$site/"

if $server; then
  log "building the server"
  cargo build -p server --bin slipway "${server_profile[@]}"
fi
