#!/usr/bin/env bash
# The federation benchmark: starts a throwaway PostgreSQL on loopback (the machine's
# packages), builds the release benchmark and prints the Markdown table of
# docs/BENCHMARKS.md. Usage: bash crates/jammi-bench/run_federation.sh [--scale N] [--reps N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
WORK="$(mktemp -d /tmp/jammi-fed-bench.XXXXXX)"
chmod 755 "$WORK"
PG_BIN="$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")"
as_pg_user() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$WORK/pg"; [[ "$(id -u)" == 0 ]] && chown postgres "$WORK/pg"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
as_pg_user "$PG_BIN/initdb" -D "$WORK/pg" -U jammi --auth=trust -E UTF8 >/dev/null
as_pg_user "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w -o "-p $PORT -k $WORK/pg -c listen_addresses=127.0.0.1" start >/dev/null
trap 'as_pg_user "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
cargo build --release -p jammi-bench --bin federation-bench >&2
"$CARGO_TARGET_DIR/release/federation-bench" --pg "postgres://jammi@127.0.0.1:$PORT/postgres" "$@"
