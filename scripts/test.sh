#!/usr/bin/env bash
# `make test`: installs what is missing, starts throwaway PostgreSQL and MLflow
# servers, and runs the unit, integration and browser tests against them;
# then builds the image and runs it from its root filesystem.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/kube.sh"
cd "$SLIPWAY_ROOT"

scripts/bootstrap.sh --test
install_kube

work=$(mktemp -d "${TMPDIR:-/tmp}/slipway-test.XXXXXX")
cleanup() {
  stop_kube
  stop_mlflow
  [ -z "${POSTGRES_STOP+x}" ] || "${POSTGRES_STOP[@]}" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

log "starting PostgreSQL, MLflow and a Kubernetes API server for the tests"
start_postgres "$work/postgres" "$(free_port)"
start_kube "$work/kube"
mlflow_port=$(free_port)
start_mlflow "$work/mlflow" "$mlflow_port"
export SLIPWAY_TEST_POSTGRES_URL="$POSTGRES_URL"
export SLIPWAY_TEST_MLFLOW_URL="http://127.0.0.1:$mlflow_port"
export SLIPWAY_TEST_KUBE_ADMIN="$KUBE_ADMIN_CONFIG"
export SLIPWAY_TEST_KUBE_AUDIT="$KUBE_AUDIT_LOG"
# Launch tests run real trainings: `python` with mlflow comes from the venv.
export PATH="$SLIPWAY_VENV/bin:$PATH"

log "unit and integration tests"
# The flags scripts/build.sh uses (always-erase-components): the tests
# exercise what ships, and both builds share one set of compiled crates.
export RUSTFLAGS="--cfg erase_components"
cargo test -p app --features ssr
cargo test

log "the integration tests again, against MLflow 2 (teams still run it)"
mlflow2_port=$(free_port)
SLIPWAY_MLFLOW_VENV="$SLIPWAY_VENV_MLFLOW2" start_mlflow "$work/mlflow2" "$mlflow2_port"
mlflow2_url="http://127.0.0.1:$mlflow2_port"
SLIPWAY_TEST_MLFLOW_URL="$mlflow2_url" SLIPWAY_MLFLOW_VENV="$SLIPWAY_VENV_MLFLOW2" \
  PATH="$SLIPWAY_VENV_MLFLOW2/bin:$PATH" cargo test -p server --tests

log "building the UI for the browser tests"
# They run the `slipway` binary `cargo test` built (with the tests' features).
scripts/build.sh --ui

log "browser tests (Chromium)"
SLIPWAY_BIN="$SLIPWAY_ROOT/target/debug/slipway" SLIPWAY_SITE_ROOT="$SLIPWAY_ROOT/target/site" \
  node --test --test-concurrency=1 end2end/tests/

# Whatever the tests started, they stopped: no training or model server
# outlives the suite (a few seconds for the last ones to exit).
for _ in $(seq 50); do
  left=$(processes_of_tracking_uri "$SLIPWAY_TEST_MLFLOW_URL"; processes_of_tracking_uri "$mlflow2_url")
  [ -z "$left" ] && break
  sleep 0.2
done
[ -z "$left" ] || die "processes the tests started are still running:
$left"
log "no training or model server outlived the tests"

log "the image (a release build)"
scripts/test-image.sh
