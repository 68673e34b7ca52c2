#!/usr/bin/env bash
# Write throughput of one deployment with 1, 2 and 3 `jammi serve` replicas on one PostgreSQL
# catalog (scripts/cluster.sh: PostgreSQL, the S3 server, nats-server, release binaries):
# topic publishes one event per request and 100 per request, and one-row INSERTs into a
# mutable table, by `replica-load` clients spread over the replicas. Prints a Markdown table,
# with the CPU PostgreSQL and the replicas used during each run (100 % = one core).
# Usage: bash crates/jammi-bench/run_replicas.sh [--clients 8] [--seconds 10]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
CLIENTS=8 SECONDS_EACH=10
while [[ $# -gt 0 ]]; do
    case "$1" in
        --clients) CLIENTS=$2; shift 2 ;;
        --seconds) SECONDS_EACH=$2; shift 2 ;;
        *) echo "unknown flag $1; flags: --clients N --seconds N" >&2; exit 2 ;;
    esac
done
cargo build --release -p jammi-cli -p jammi-bench >&2  # one package set for every script: the same features, no rebuild
JAMMI="$CARGO_TARGET_DIR/release/jammi"
LOAD="$CARGO_TARGET_DIR/release/replica-load"
DIR=/tmp/jammi-replica-bench
# A Markdown row of replica-load's JSON line (its first error, if any, to stderr).
ROW='import json, sys
r = json.load(sys.stdin)
pg, jammi = (float(x) / r["seconds"] * 100 for x in sys.argv[1:3])
print("| %s | %s | %s | %.0f | %.0f | %s | %s | %s | %.0f %% | %.0f %% |" % (r["replicas"], r["kind"], r["clients"], r["requests_per_s"], r["rows_per_s"], r["p50_ms"], r["p99_ms"], r["errors"], pg, jammi))
if r.get("first_error"):
    print(r["first_error"], file=sys.stderr)'
# CPU seconds used so far by the processes whose command name is $1 (postgres, jammi).
cpu_seconds() {
    python3 - "$1" <<'PY'
import os, sys
ticks = os.sysconf("SC_CLK_TCK"); total = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
    if name == sys.argv[1]:
        total += int(fields[11]) + int(fields[12])
print(total / ticks)
PY
}
trap 'bash scripts/cluster.sh down "$DIR" >/dev/null 2>&1 || true' EXIT
echo "| replicas | write | clients | requests/s | rows/s | p50 ms | p99 ms | errors | PostgreSQL CPU | replicas' CPU |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for replicas in 1 2 3; do
    JAMMI_BIN="$JAMMI" bash scripts/cluster.sh up "$replicas" "$DIR" >"$DIR.out"
    mapfile -t URLS < <(grep -o '^replica [0-9]* http://[0-9.:]*' "$DIR.out" | awk '{print $3}')
    export JAMMI_CONFIG="$DIR/jammi.toml"
    "$JAMMI" -q --data-dir "$DIR/cli" topic create load --schema 'client:int64,n:int64' >/dev/null
    "$JAMMI" -q --data-dir "$DIR/cli" sql "CREATE TABLE mutable.public.load (id BIGINT PRIMARY KEY, client BIGINT, n BIGINT)" >/dev/null
    unset JAMMI_CONFIG
    args=()
    for url in "${URLS[@]}"; do args+=(--http "$url"); done
    for kind in single batch dml; do
        pg0=$(cpu_seconds postgres) jammi0=$(cpu_seconds jammi)
        result=$("$LOAD" "${args[@]}" --clients "$CLIENTS" --seconds "$SECONDS_EACH" --kind "$kind")
        pg=$(python3 -c "print($(cpu_seconds postgres) - $pg0)") jammi=$(python3 -c "print($(cpu_seconds jammi) - $jammi0)")
        echo "$result" | python3 -c "$ROW" "$pg" "$jammi"
    done
    # Offsets stay gap-free and unique with publishers on every replica.
    JAMMI_CONFIG="$DIR/jammi.toml" "$JAMMI" -q --data-dir "$DIR/cli" --format csv sql \
        "SELECT count(*) = count(DISTINCT _offset) AND max(_offset) - min(_offset) + 1 = count(*) AS gap_free_unique FROM topics.public.load" >&2
    bash scripts/cluster.sh down "$DIR"
done
