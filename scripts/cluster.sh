#!/usr/bin/env bash
# A whole jammi-db deployment on loopback, from nothing: PostgreSQL (the catalog), an
# S3-compatible server (the storage root), nats-server with JetStream (the broker) and N
# `jammi serve` replicas sharing them. See docs/scale-out.md.
#
#   scripts/cluster.sh up [N] [DIR] [--ballista E]
#                                     start N replicas (default 2) under DIR (default
#                                     /tmp/jammi-cluster), print every address, write
#                                     DIR/cluster.env and DIR/jammi.toml, and return; with
#                                     --ballista, also a Ballista scheduler and E executors
#                                     that the replicas send file scans to (docs/ballista.md)
#   scripts/cluster.sh down [DIR]     stop the replicas (SIGTERM: they drain), then the
#                                     services, and remove DIR
#
# The jammi binary is $JAMMI_BIN, else the release build, else the debug build (built with
# `cargo build --release -p jammi-cli` when there is none).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_TAG=cluster.sh
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"

jammi_bin() {
    if [[ -n "${JAMMI_BIN:-}" ]]; then echo "$JAMMI_BIN"; return; fi
    for profile in release debug; do
        if [[ -x "$CARGO_TARGET_DIR/$profile/jammi" ]]; then echo "$CARGO_TARGET_DIR/$profile/jammi"; return; fi
    done
    (cd "$ROOT" && cargo build --release -p jammi-cli >&2)
    echo "$CARGO_TARGET_DIR/release/jammi"
}

up() {
    local positional=() executors=0
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --ballista) executors="$2"; shift 2 ;;
            *) positional+=("$1"); shift ;;
        esac
    done
    local replicas=${positional[0]:-2} dir=${positional[1]:-/tmp/jammi-cluster}
    if [[ -e "$dir/cluster.env" ]]; then
        log "$dir already holds a cluster: scripts/cluster.sh down $dir first"
        exit 1
    fi
    mkdir -p "$dir"
    chmod 755 "$dir"
    if [[ "$(id -u)" == 0 ]] && ! runuser -u postgres -- test -x "$dir"; then
        log "the postgres user cannot reach $dir (a parent directory is private): choose a DIR under a world-readable path such as /tmp"
        exit 1
    fi
    local bin
    bin="$(jammi_bin)"
    PIDS=()
    start_postgres "$dir/pg" "-c max_connections=300"
    psql "postgres://jammi@127.0.0.1:$PG_PORT/postgres" -q -c "CREATE DATABASE jammi" >/dev/null
    start_s3 "$dir"
    start_nats "$dir"
    local catalog="postgres://jammi@127.0.0.1:$PG_PORT/jammi"
    cat >"$dir/jammi.toml" <<TOML
# The shared configuration every replica (and every CLI run on this deployment) uses.
[catalog]
url = "$catalog"

[storage]
root = "s3://jammi-test/jammi"
options = { endpoint = "http://127.0.0.1:$S3_PORT", region = "us-east-1", allow_http = "true", access_key_id = "test", secret_access_key = "test" }

[broker]
kind = "jetstream"
url = "nats://127.0.0.1:$NATS_PORT"
TOML
    {
        echo "PG_DATA=$dir/pg"
        echo "PG_BIN=$PG_BIN"
        echo "SERVICE_PIDS=\"${PIDS[*]}\""
        echo "JAMMI_CONFIG=$dir/jammi.toml"
        echo "JAMMI_CATALOG=$catalog"
        echo "S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
        echo "NATS_URL=nats://127.0.0.1:$NATS_PORT"
    } >"$dir/cluster.env"
    echo "catalog   $catalog"
    echo "storage   s3://jammi-test/jammi at http://127.0.0.1:$S3_PORT"
    echo "broker    nats://127.0.0.1:$NATS_PORT (JetStream)"
    local replica_pids=()
    if [[ "$executors" -gt 0 ]]; then
        # Ballista: the scheduler and executors read the same jammi.toml (the catalog's
        # sources tell them the object stores); the replicas then send file scans to them.
        local scheduler="127.0.0.1:$(free_port)"
        JAMMI_CONFIG="$dir/jammi.toml" setsid "$bin" --data-dir "$dir/scheduler" cluster scheduler --bind "$scheduler" \
            >/dev/null 2>"$dir/scheduler.log" </dev/null &
        replica_pids+=($!)
        wait_for 60 "ballista scheduler" python3 -c "import socket; socket.create_connection(('127.0.0.1', ${scheduler##*:}), 1)"
        echo "ballista  df://$scheduler (log $dir/scheduler.log)"
        for i in $(seq 1 "$executors"); do
            local flight="127.0.0.1:$(free_port)" grpc_port
            grpc_port="$(free_port)"
            JAMMI_CONFIG="$dir/jammi.toml" setsid "$bin" --data-dir "$dir/executor-$i" cluster executor --scheduler "df://$scheduler" \
                --bind "$flight" --grpc-port "$grpc_port" >/dev/null 2>"$dir/executor-$i.log" </dev/null &
            replica_pids+=($!)
            wait_for 60 "ballista executor $i" grep -q "Executor registration succeed" "$dir/executor-$i.log"
            echo "executor $i flight $flight  grpc 127.0.0.1:$grpc_port  (log $dir/executor-$i.log)"
        done
        printf '\n[query]\nengine = "ballista"\nscheduler = "df://%s"\n' "$scheduler" >>"$dir/jammi.toml"
    fi
    for i in $(seq 1 "$replicas"); do
        local home="$dir/replica-$i" http pg flight
        mkdir -p "$home"
        http="127.0.0.1:$(free_port)" pg="127.0.0.1:$(free_port)" flight="127.0.0.1:$(free_port)"
        JAMMI_CONFIG="$dir/jammi.toml" setsid "$bin" --data-dir "$home" serve --http "$http" --pg "$pg" --flight "$flight" \
            >"$home/serve.out" 2>"$home/serve.log" </dev/null &
        replica_pids+=($!)
        wait_for 60 "replica $i" curl -sf "http://$http/readyz"
        echo "replica $i http://$http  postgres://$pg  grpc://$flight  (log $home/serve.log)"
    done
    echo "REPLICA_PIDS=\"${replica_pids[*]}\"" >>"$dir/cluster.env"
    echo "CLI on this deployment: JAMMI_CONFIG=$dir/jammi.toml $bin --data-dir $dir/cli ..."
    echo "stop: scripts/cluster.sh down $dir"
}

down() {
    local dir=${1:-/tmp/jammi-cluster}
    if [[ ! -f "$dir/cluster.env" ]]; then
        log "no cluster in $dir"
        exit 1
    fi
    # shellcheck disable=SC1091
    source "$dir/cluster.env"
    local pid
    for pid in ${REPLICA_PIDS:-}; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in ${REPLICA_PIDS:-}; do
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in ${SERVICE_PIDS:-}; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in ${SERVICE_PIDS:-}; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    stop_postgres "$PG_DATA" fast
    rm -rf "$dir"
    log "stopped"
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) shift; down "$@" ;;
    *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
