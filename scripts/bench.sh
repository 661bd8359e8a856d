#!/usr/bin/env bash
# `make bench`, release builds, figures only (nothing here passes or fails):
# 0. the wasm bundle as shipped (release, wasm-opt), gzipped;
# 1. the runs page against an experiment of 10,000 runs: Slipway's
#    server-side render next to the raw runs/search call, and time until the
#    table is visible in Chromium for Slipway and for MLflow's own UI;
#    then many browsers at once (server/examples/load_bench.rs): 100
#    connections on /experiments and /models for 5 minutes (latency, MLflow
#    requests per page view, resident memory), next to MLflow's own API;
# 2. launching (server/examples/launch_bench.rs): submit → Job created (on a
#    simulated and on a real API server) or process started, and status
#    change → launch page;
# 3. serving (server/examples/serving_bench.rs): promote → SeldonDeployment
#    applied (simulated) and present (real API server), deleted → re-created
#    (on the watch event, and by the poll alone), → local model ready,
#    webhook → reconcile, poll over 1,000 models;
# 4. failover (server/examples/failover_bench.rs): the leader of two
#    replicas killed → the first pass by the other;
# 5. traffic (server/examples/gateway_bench.rs): what the gateway adds to a
#    model request, and the load generator's requests per second next to
#    Locust's (from PyPI, scripts/requirements-bench.txt).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/kube.sh"
cd "$SLIPWAY_ROOT"

RUNS=10000
# The flags scripts/build.sh uses: the examples share its compiled crates.
export RUSTFLAGS="--cfg erase_components"
bench_dir="$SLIPWAY_CACHE/bench-mlflow"

scripts/bootstrap.sh --test
install_kube

if [ ! -f "$bench_dir/seeded-$RUNS" ]; then
  log "creating an experiment of $RUNS runs in $bench_dir (about 3 minutes, once)"
  rm -rf "$bench_dir" && mkdir -p "$bench_dir"
  "$SLIPWAY_VENV/bin/python" scripts/seed_bench.py "sqlite:///$bench_dir/mlflow.db" "$RUNS" 2>&1 | grep -v WARNING >&2
  touch "$bench_dir/seeded-$RUNS"
fi

scripts/build.sh --release

wasm="$SLIPWAY_ROOT/target/site/pkg/slipway.wasm"
echo "wasm bundle: $(wc -c < "$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) gzipped (budget: 500000 gzipped)"

work=$(mktemp -d "${TMPDIR:-/tmp}/slipway-bench.XXXXXX")
slipway_pid=
cleanup() {
  [ -z "$slipway_pid" ] || kill -TERM "$slipway_pid" 2>/dev/null || true
  stop_kube
  stop_mlflow
  [ -z "${POSTGRES_STOP+x}" ] || "${POSTGRES_STOP[@]}" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mlflow_port=$(free_port)
start_mlflow "$bench_dir" "$mlflow_port"
slipway_port=$(free_port)
bench_password="bench-$(date +%s%N)"
printf '%s' "$bench_password" | SLIPWAY_DATA_DIR="$work" target/release/slipway users add bench --role viewer
SLIPWAY_LISTEN="127.0.0.1:$slipway_port" SLIPWAY_GATEWAY_LISTEN=127.0.0.1:0 \
SLIPWAY_MLFLOW_URI="http://127.0.0.1:$mlflow_port" \
SLIPWAY_DATA_DIR="$work" \
SLIPWAY_SITE_ROOT="$SLIPWAY_ROOT/target/site" \
SLIPWAY_LOG_FORMAT=json RUST_LOG=warn \
  target/release/slipway &
slipway_pid=$!
wait_http "http://127.0.0.1:$slipway_port/readyz" 60 "$slipway_pid"

BENCH_MLFLOW_URL="http://127.0.0.1:$mlflow_port" \
BENCH_SLIPWAY_URL="http://127.0.0.1:$slipway_port" \
BENCH_USER=bench BENCH_PASSWORD="$bench_password" \
BENCH_EXPERIMENT=bench-10k-runs \
  node end2end/bench/runs-page.mjs

cargo build --release -p server --example load_bench
BENCH_MLFLOW_URL="http://127.0.0.1:$mlflow_port" \
BENCH_SLIPWAY_URL="http://127.0.0.1:$slipway_port" BENCH_SLIPWAY_PID="$slipway_pid" \
BENCH_USER=bench BENCH_PASSWORD="$bench_password" \
  target/release/examples/load_bench

# Launching: submit → Job created (simulated and real API server) / process
# started, and status change → launch page, against a fresh MLflow of its
# own. Slipway talks to the real API server as deploy/base/rbac.yaml's account.
stop_mlflow
launch_port=$(free_port)
start_mlflow "$work/launch-mlflow" "$launch_port"
start_kube "$work/kube"
kube_service_account_config slipway-bench "$work/slipway.kubeconfig"
export BENCH_KUBECONFIG="$work/slipway.kubeconfig" BENCH_KUBE_ADMIN="$KUBE_ADMIN_CONFIG" BENCH_KUBE_NAMESPACE=slipway-bench
cargo build --release -p server --example launch_bench
BENCH_MLFLOW_URL="http://127.0.0.1:$launch_port" target/release/examples/launch_bench

# Serving: promote → applied / ready, webhook → pass, and a poll pass over
# 1,000 registered models, on the same fresh MLflow.
cargo build --release -p server --example serving_bench
PATH="$SLIPWAY_VENV/bin:$PATH" BENCH_MLFLOW_URL="http://127.0.0.1:$launch_port" target/release/examples/serving_bench

# Failover: two replicas of the release binary on one PostgreSQL, the
# leader killed ten times; the first pass by the next one is timed.
start_postgres "$work/postgres" "$(free_port)"
kube_service_account_config slipway-failover "$work/failover.kubeconfig"
cargo build --release -p server --example failover_bench
BENCH_SLIPWAY_BIN="$SLIPWAY_ROOT/target/release/slipway" BENCH_DATABASE_URL="$POSTGRES_URL" \
BENCH_MLFLOW_URL="http://127.0.0.1:$launch_port" \
BENCH_KUBECONFIG="$work/failover.kubeconfig" BENCH_KUBE_NAMESPACE=slipway-failover \
  target/release/examples/failover_bench

# Traffic: the gateway's own cost, and the load generator next to Locust.
locust_venv="$SLIPWAY_CACHE/venv-locust"
if ! cmp -s scripts/requirements-bench.txt "$locust_venv/.requirements"; then
  log "installing Locust into $locust_venv"
  python3 -m venv "$locust_venv"
  "$locust_venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-bench.txt
  cp scripts/requirements-bench.txt "$locust_venv/.requirements"
fi
cargo build --release -p server --example gateway_bench
BENCH_LOCUST="$locust_venv/bin/locust" target/release/examples/gateway_bench
