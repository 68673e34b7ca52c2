#!/usr/bin/env bash
# SQL over files against DuckDB: writes the 10-million-row Parquet file once (reused by later
# runs), runs DuckDB (pip install duckdb) and jammi on it with the same threads, and prints
# the Markdown table of docs/BENCHMARKS.md.
# Usage: bash crates/jammi-bench/run_files.sh [THREADS] [REPS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
THREADS="${1:-2}"
REPS="${2:-5}"
FILE="${JAMMI_FILES_BENCH_FILE:-/tmp/jammi-files-bench/facts.parquet}"
cargo build --release -p jammi-bench --bin files-bench >&2
BIN="$CARGO_TARGET_DIR/release/files-bench"
[[ -f "$FILE" ]] || "$BIN" --file "$FILE" --write-only
PEERS="$(mktemp /tmp/jammi-files-peers.XXXXXX.json)"
trap 'rm -f "$PEERS"' EXIT
python3 crates/jammi-bench/peers/files_peers.py "$FILE" "$THREADS" "$REPS" "$("$BIN" --print-queries)" > "$PEERS"
"$BIN" --file "$FILE" --threads "$THREADS" --reps "$REPS" --peers "$PEERS"
