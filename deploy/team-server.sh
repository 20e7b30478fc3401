#!/usr/bin/env bash
# The team MLflow server on a host without Docker: PostgreSQL (runs, params, metrics), an S3 store
# (MinIO started here, or any S3 endpoint you already have) and `mlflow server` proxying the artifacts,
# all as processes under one data directory. The Docker equivalent is deploy/docker-compose.yml.
#
#   deploy/team-server.sh start     # initialise on first use, start, wait until MLflow answers
#   deploy/team-server.sh status
#   deploy/team-server.sh stop
#
# Needs: PostgreSQL server binaries (apt-get install postgresql), mlflow, psycopg and boto3 in the Python
# that runs it (pip install 'pytest-hwbench[services]'), and `minio` on PATH unless S3_ENDPOINT is set.
# Settings (environment):
#   HWBENCH_SERVER_DIR  data, logs and pid files            (default /var/lib/hwbench-mlflow)
#   MLFLOW_HOST MLFLOW_PORT MLFLOW_WORKERS                   (default 0.0.0.0, 5000, 4)
#   MLFLOW_ALLOWED_HOSTS host names machines use to reach the server (MLflow rejects other Host headers)
#   PG_PORT             PostgreSQL port, listening on 127.0.0.1 only (default 5432)
#   S3_ENDPOINT         an existing S3 endpoint; empty: start MinIO on 127.0.0.1:$MINIO_PORT (default 9000)
#   S3_BUCKET S3_ACCESS_KEY S3_SECRET_KEY                    (bucket default mlflow; keys required)
#   PYTHON              the Python with mlflow (default python3)
# PostgreSQL listens on 127.0.0.1 with trust authentication: only this host's users can reach it, and only
# MLflow needs to. Machines under test talk to MLflow alone.
set -euo pipefail

DIR=${HWBENCH_SERVER_DIR:-/var/lib/hwbench-mlflow}
MLFLOW_HOST=${MLFLOW_HOST:-0.0.0.0}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
MLFLOW_WORKERS=${MLFLOW_WORKERS:-4}
PG_PORT=${PG_PORT:-5432}
MINIO_PORT=${MINIO_PORT:-9000}
S3_BUCKET=${S3_BUCKET:-mlflow}
PYTHON=${PYTHON:-python3}
START_TIMEOUT_S=${START_TIMEOUT_S:-180}

die() { echo "team-server: $*" >&2; exit 1; }
say() { echo "team-server: $*"; }

pg_bin() {
    local b
    b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$b" ] && [ -x "$b/initdb" ] || b=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")
    [ -x "$b/initdb" ] || die "PostgreSQL server binaries not found (apt-get install postgresql)"
    echo "$b"
}

# PostgreSQL refuses to run as root: run it as the 'postgres' user then.
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u "${PG_USER:-postgres}" -- "$@"; else "$@"; fi
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Start "$@" in its own session (so stop can end it with its workers) and record its pid.
daemon() {
    local name=$1; shift
    setsid "$@" >"$DIR/log/$name.log" 2>&1 </dev/null &
    echo $! >"$DIR/run/$name.pid"
}

stop_daemon() {
    local name=$1 pidfile="$DIR/run/$1.pid" pid
    pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$pidfile"
    say "$name stopped"
}

start_postgres() {
    local bin; bin=$(pg_bin)
    mkdir -p "$DIR/pgsock"
    if [ ! -f "$DIR/pg/PG_VERSION" ]; then
        mkdir -p "$DIR/pg"
        [ "$(id -u)" = 0 ] && chown "${PG_USER:-postgres}" "$DIR/pg" "$DIR/pgsock" "$DIR/log"
        chmod 700 "$DIR/pg"
        as_pg "$bin/initdb" -D "$DIR/pg" -U mlflow --auth=trust --encoding=UTF8 --locale=C >"$DIR/log/initdb.log"
        say "PostgreSQL cluster initialised in $DIR/pg"
    fi
    [ "$(id -u)" = 0 ] && chown "${PG_USER:-postgres}" "$DIR/pgsock" "$DIR/log"
    if ! as_pg "$bin/pg_ctl" -D "$DIR/pg" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$DIR/pg" -l "$DIR/log/postgres.log" -w -t 120 \
            -o "-p $PG_PORT -k $DIR/pgsock -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null \
            || die "PostgreSQL did not start; see $DIR/log/postgres.log"
    fi
    if ! as_pg "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U mlflow -d postgres -tAc \
            "select 1 from pg_database where datname = 'mlflow'" | grep -q 1; then
        as_pg "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U mlflow mlflow
    fi
    say "PostgreSQL on 127.0.0.1:$PG_PORT (database mlflow)"
}

start_s3() {
    [ -n "${S3_ACCESS_KEY:-}" ] && [ -n "${S3_SECRET_KEY:-}" ] || die "set S3_ACCESS_KEY and S3_SECRET_KEY"
    if [ -z "${S3_ENDPOINT:-}" ]; then
        command -v minio >/dev/null || die "minio not on PATH: install MinIO or set S3_ENDPOINT to an S3 store"
        S3_ENDPOINT="http://127.0.0.1:$MINIO_PORT"
        if ! pid_alive "$DIR/run/minio.pid"; then
            mkdir -p "$DIR/minio"
            MINIO_ROOT_USER=$S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$S3_SECRET_KEY \
                daemon minio minio server "$DIR/minio" --address "127.0.0.1:$MINIO_PORT"
        fi
    fi
    export MLFLOW_S3_ENDPOINT_URL=$S3_ENDPOINT AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
    export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
    "$PYTHON" - "$S3_ENDPOINT" "$S3_BUCKET" "$START_TIMEOUT_S" <<'PY'
import sys, time
import boto3, botocore.exceptions
endpoint, bucket, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=endpoint)
deadline = time.monotonic() + timeout
while True:
    try:
        names = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
        break
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError):
        if time.monotonic() > deadline:
            sys.exit(f"team-server: S3 endpoint {endpoint} does not answer")
        time.sleep(0.5)
if bucket not in names:
    s3.create_bucket(Bucket=bucket)
PY
    say "S3 artifacts in s3://$S3_BUCKET/ at $S3_ENDPOINT"
}

start_mlflow() {
    if pid_alive "$DIR/run/mlflow.pid"; then say "mlflow already running (pid $(cat "$DIR/run/mlflow.pid"))"; return; fi
    local allowed=()
    [ -n "${MLFLOW_ALLOWED_HOSTS:-}" ] && allowed=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS")
    # the job runner (mlflow 3) starts a pool of consumer processes the tracking server does not need
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
    daemon mlflow "$PYTHON" -m mlflow server --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" \
        --workers "$MLFLOW_WORKERS" \
        --backend-store-uri "postgresql+psycopg://mlflow@127.0.0.1:$PG_PORT/mlflow" \
        --artifacts-destination "s3://$S3_BUCKET/" "${allowed[@]}"
    local probe_host=$MLFLOW_HOST
    [ "$probe_host" = 0.0.0.0 ] && probe_host=127.0.0.1
    local t=0
    until "$PYTHON" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
            "http://$probe_host:$MLFLOW_PORT/health" 2>/dev/null; do
        pid_alive "$DIR/run/mlflow.pid" || { tail -20 "$DIR/log/mlflow.log" >&2; die "mlflow server exited"; }
        t=$((t + 1))
        [ "$t" -lt $((START_TIMEOUT_S * 2)) ] || { tail -20 "$DIR/log/mlflow.log" >&2; die "mlflow not healthy"; }
        sleep 0.5
    done
    say "MLflow on http://$probe_host:$MLFLOW_PORT (log: $DIR/log/mlflow.log)"
}

case "${1:-}" in
    start)
        mkdir -p "$DIR/log" "$DIR/run"
        start_postgres
        start_s3
        start_mlflow
        ;;
    stop)
        stop_daemon mlflow
        stop_daemon minio
        if [ -f "$DIR/pg/PG_VERSION" ]; then
            bin=$(pg_bin)
            if as_pg "$bin/pg_ctl" -D "$DIR/pg" status >/dev/null 2>&1; then
                as_pg "$bin/pg_ctl" -D "$DIR/pg" -m fast -w stop >/dev/null && say "PostgreSQL stopped"
            fi
        fi
        ;;
    status)
        for name in mlflow minio; do
            if pid_alive "$DIR/run/$name.pid"; then say "$name running (pid $(cat "$DIR/run/$name.pid"))"; fi
        done
        bin=$(pg_bin)
        as_pg "$bin/pg_ctl" -D "$DIR/pg" status >/dev/null 2>&1 && say "PostgreSQL running" || say "PostgreSQL stopped"
        ;;
    *)
        sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
