#!/usr/bin/env bash
# The vector benchmark, jammi-db and its peers in one run, on one machine:
#   1. peers/vector_peers.py: usearch, FAISS, hnswlib, LanceDB (PyPI) and numpy exact;
#   2. vector-bench: jammi-db through the Rust API and SQL, and the usearch crate directly;
# then one Markdown report (the tables of docs/BENCHMARKS.md) on stdout.
# Usage: bash crates/jammi-bench/run_vectors.sh [--queries N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
OUT="${JAMMI_BENCH_OUT:-$(mktemp -d /tmp/jammi-bench.XXXXXX)}"
mkdir -p "$OUT"
python3 -m pip install -q usearch faiss-cpu hnswlib lancedb pyarrow numpy pandas >&2
cargo build --release -p jammi-cli -p jammi-bench >&2  # one package set for every script: the same features, no rebuild
python3 crates/jammi-bench/peers/vector_peers.py --out "$OUT/peers.json" "$@" >&2
"$CARGO_TARGET_DIR/release/vector-bench" --out "$OUT/jammi.json" --peers "$OUT/peers.json" "$@"
echo "raw results: $OUT" >&2
