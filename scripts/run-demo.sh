#!/usr/bin/env bash
# `make run`: the embedded default on one machine. Installs what is missing,
# starts MLflow with demo data, and serves Slipway. Ctrl-C stops everything.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLIPWAY_ROOT"

data_dir="${SLIPWAY_DATA_DIR:-$SLIPWAY_ROOT/slipway-data}"
mlflow_port="${SLIPWAY_DEMO_MLFLOW_PORT:-5000}"
listen="${SLIPWAY_LISTEN:-127.0.0.1:3000}"

scripts/bootstrap.sh

if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$mlflow_port/" 2>/dev/null; then
  die "port $mlflow_port is in use; stop what runs there or set SLIPWAY_DEMO_MLFLOW_PORT"
fi

slipway_pid=
cleanup() {
  [ -z "$slipway_pid" ] || kill -TERM "$slipway_pid" 2>/dev/null || true
  stop_mlflow
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting MLflow on http://127.0.0.1:$mlflow_port (data in $data_dir/mlflow)"
start_mlflow "$data_dir/mlflow" "$mlflow_port"
"$SLIPWAY_VENV/bin/python" scripts/seed_demo.py "http://127.0.0.1:$mlflow_port" 2>&1 \
  | grep -E '^demo data' >&2 || die "seeding the demo data failed"

scripts/build.sh

# Demo only: one account per role, all with the same published password.
demo_password=slipway-demo
for role in viewer trainer deployer approver admin; do
  printf '%s\n' "$demo_password" \
    | SLIPWAY_DATA_DIR="$data_dir" target/debug/slipway users add "$role" --role "$role" --exists-ok >/dev/null
done
log "demo accounts viewer, trainer, deployer, approver and admin; password: $demo_password"

log "Slipway on http://$listen — Ctrl-C stops Slipway and MLflow"
SLIPWAY_LISTEN="$listen" \
SLIPWAY_MLFLOW_URI="http://127.0.0.1:$mlflow_port" \
SLIPWAY_DATA_DIR="$data_dir" \
SLIPWAY_SITE_ROOT="$SLIPWAY_ROOT/target/site" \
SLIPWAY_CATALOG="${SLIPWAY_CATALOG:-$SLIPWAY_ROOT/deploy/demo/catalog.toml}" \
PATH="$SLIPWAY_VENV/bin:$PATH" \
  target/debug/slipway &
slipway_pid=$!
wait "$slipway_pid"
