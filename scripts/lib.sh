# Shared by the project's scripts; source it, don't run it.
# Everything a script installs goes to one cache folder, reused across runs.

SLIPWAY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SLIPWAY_CACHE="${SLIPWAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slipway}"
SLIPWAY_VENV="$SLIPWAY_CACHE/venv"
# MLflow 2 (the newest 2.x), for running the MLflow-facing tests against it too.
SLIPWAY_VENV_MLFLOW2="$SLIPWAY_CACHE/venv-mlflow2"

log() { printf '\033[1m[slipway]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A TCP port nobody listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until URL answers 2xx, or fails after SECONDS; PID, if given, must stay alive.
wait_http() {
  local url=$1 seconds=$2 pid=${3:-} waited=0
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      die "the process behind $url exited before it was ready"
    fi
    waited=$((waited + 1))
    [ "$waited" -le "$seconds" ] || die "$url did not answer within ${seconds}s"
    sleep 1
  done
}

# Fernet key MLflow encrypts webhook secrets with. Fixed, so secrets survive
# restarts of these local, throwaway servers; a real deployment sets its own.
LOCAL_WEBHOOK_ENCRYPTION_KEY=H_TCKsz0U4OIeynnvJJYsMDaO7XoWv-yRygcwkkNHHM=
MLFLOW_PIDS=()

# Starts a lean MLflow server (one worker, no job runner) in the background,
# in a process group of its own so that stop_mlflow ends its workers too.
# Sets MLFLOW_PID and adds it to MLFLOW_PIDS. Logs go to DIR/mlflow.log.
# The MLflow is the one in $SLIPWAY_MLFLOW_VENV, by default $SLIPWAY_VENV.

start_mlflow() {
  local dir=$1 port=$2 admin_password=${3:-} login=() login_env=()
  mkdir -p "$dir/artifacts"
  # With a password, MLflow requires HTTP basic auth; `admin` has it. (Only
  # then is the auth config set: MLflow reads it even without the auth app.)
  if [ -n "$admin_password" ]; then
    # MLflow 2 reads the admin password from this file only; it stays private.
    (umask 077 && printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///%s/basic_auth.db\nadmin_username = admin\nadmin_password = %s\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n' \
      "$dir" "$admin_password" >"$dir/basic_auth.ini")
    login=(--app-name basic-auth)
    login_env=(
      MLFLOW_AUTH_CONFIG_PATH="$dir/basic_auth.ini"
      MLFLOW_FLASK_SERVER_SECRET_KEY="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    )
  fi
  env "${login_env[@]}" \
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
  MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https \
  MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true \
  MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY="$LOCAL_WEBHOOK_ENCRYPTION_KEY" \
    setsid "${SLIPWAY_MLFLOW_VENV:-$SLIPWAY_VENV}/bin/mlflow" server "${login[@]}" \
      --backend-store-uri "sqlite:///$dir/mlflow.db" \
      --artifacts-destination "$dir/artifacts" \
      --host 127.0.0.1 --port "$port" --workers 1 \
      >"$dir/mlflow.log" 2>&1 &
  MLFLOW_PID=$!
  MLFLOW_PIDS+=("$MLFLOW_PID")
  wait_http "http://127.0.0.1:$port/health" 120 "$MLFLOW_PID" || {
    tail -n 30 "$dir/mlflow.log" >&2
    kill -TERM -- "-$MLFLOW_PID" 2>/dev/null || true
    return 1
  }
}

# Stops every MLflow server start_mlflow started.
stop_mlflow() {
  local pid
  for pid in "${MLFLOW_PIDS[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  MLFLOW_PIDS=()
}

# Starts a throwaway PostgreSQL cluster in DIR on PORT (Debian's packages).
# Sets POSTGRES_URL. PostgreSQL refuses to run as root, so as root the
# cluster belongs to the `postgres` user.
start_postgres() {
  local dir=$1 port=$2 bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$bin" ] || die "PostgreSQL is not installed (run scripts/bootstrap.sh --test)"
  mkdir -p "$dir"
  local as=()
  if [ "$(id -u)" = 0 ]; then
    chmod 755 "$(dirname "$dir")"
    chown postgres "$dir"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U slipway >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
    || { cat "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
  POSTGRES_URL="postgres://slipway@127.0.0.1:$port/postgres"
  POSTGRES_STOP=("${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop)
}

# Processes given `tracking_uri` as their MLFLOW_TRACKING_URI (trainings and
# model servers that Slipway or a test started), one "pid command" per line.
processes_of_tracking_uri() {
  local tracking_uri=$1 environ pid
  for environ in /proc/[0-9]*/environ; do
    pid=${environ#/proc/}; pid=${pid%/environ}
    [ "$pid" = "$$" ] && continue
    if { tr '\0' '\n' < "$environ"; } 2>/dev/null | grep -qxF "MLFLOW_TRACKING_URI=$tracking_uri"; then
      echo "$pid $({ tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null)"
    fi
  done
}
