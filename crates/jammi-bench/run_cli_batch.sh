#!/usr/bin/env bash
# The CLI batch path on the shared corpus: import with defaults, then `jammi search
# --query-file` (1,000 queries, k=10) at several ef, pinned to one core; recall@10 and QPS
# (whole process, and batch alone). Prints a Markdown table.
# Usage: bash crates/jammi-bench/run_cli_batch.sh [--ef 16 32 64] [--runs 3]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
DATA="${JAMMI_DATASET:-$ROOT/../shared/datasets/debian-packages}"
OUT="${JAMMI_BENCH_OUT:-$(mktemp -d /tmp/jammi-cli-batch.XXXXXX)}"
python3 -m pip install -q pyarrow >&2
cargo build --release -p jammi-cli -p jammi-bench >&2  # one package set for every script: the same features, no rebuild
JAMMI="$CARGO_TARGET_DIR/release/jammi"
rm -rf "$OUT/data"
"$JAMMI" -q --data-dir "$OUT/data" vectors import deb "$DATA/embeddings.parquet" --id-column id --vector-column embedding >&2
python3 crates/jammi-bench/cli_batch.py "$JAMMI" "$OUT/data" "$DATA" "$@"
