#!/usr/bin/env bash
# Index build time on 1 and 2 cores: `jammi vectors import` (default table: int8 graph,
# cosine) beside FAISS HNSW and hnswlib (M=16, efConstruction=128), each pinned with taskset
# to that many cores and given that many build threads; best of --runs. jammi's time is the
# whole import (read Parquet, build, write and hash the files) and its index-build phase
# alone (from its progress lines); the peers' is read + build + save, and build alone.
# Prints a Markdown table. Usage: bash crates/jammi-bench/run_build.sh [--dataset DIR] [--runs N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
DATA="$ROOT/../shared/datasets/debian-packages"
RUNS=2
while [ $# -gt 0 ]; do
    case "$1" in
        --dataset) DATA="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
OUT="${JAMMI_BENCH_OUT:-$(mktemp -d /tmp/jammi-build.XXXXXX)}"
mkdir -p "$OUT"
python3 -m pip install -q faiss-cpu hnswlib pyarrow numpy >&2
cargo build --release -p jammi-cli -p jammi-bench >&2  # one package set for every script: the same features, no rebuild
JAMMI="$CARGO_TARGET_DIR/release/jammi"

best() { sort -g | head -1; }
best_json() { # FILE KEY → the least KEY over the file's JSON lines, 2 decimals
    python3 -c "import json, sys; print('%.2f' % min(json.loads(l)[sys.argv[2]] for l in open(sys.argv[1])))" "$1" "$2"
}
echo "$(python3 -c 'import pyarrow.parquet as pq, sys; print(pq.read_metadata(sys.argv[1]).num_rows)' "$DATA/embeddings.parquet") rows of $DATA"
echo
echo "| cores | jammi import (s) | jammi index build (s) | FAISS read+build+save (s) | FAISS build (s) | hnswlib read+build+save (s) | hnswlib build (s) |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for cores in 1 2; do
    cpus=$([ "$cores" = 1 ] && echo 0 || echo "0-$((cores - 1))")
    : >"$OUT/jammi-$cores.txt"
    for _ in $(seq "$RUNS"); do
        rm -rf "$OUT/jammi"
        start=$(date +%s.%N)
        JAMMI_PROGRESS_INTERVAL_MS=0 taskset -c "$cpus" "$JAMMI" --data-dir "$OUT/jammi" vectors import deb "$DATA/embeddings.parquet" \
            --id-column id --vector-column embedding >/dev/null 2>"$OUT/import.log"
        end=$(date +%s.%N)
        build=$(grep -E "^[^:]*index[^:]*: done" "$OUT/import.log" | sed -E 's/.* in ([0-9.]+) s.*/\1/' | tail -1)
        echo "$(echo "$end - $start" | bc) ${build:-nan}" >>"$OUT/jammi-$cores.txt"
    done
    jammi_total=$(cut -d' ' -f1 "$OUT/jammi-$cores.txt" | best)
    jammi_build=$(cut -d' ' -f2 "$OUT/jammi-$cores.txt" | best)
    row="| $cores | $(printf %.2f "$jammi_total") | $jammi_build"
    for system in faiss hnswlib; do
        : >"$OUT/$system-$cores.json"
        for _ in $(seq "$RUNS"); do
            taskset -c "$cpus" python3 crates/jammi-bench/peers/build_peers.py "$system" --data "$DATA" --out "$OUT" --threads "$cores" >>"$OUT/$system-$cores.json"
        done
        total=$(best_json "$OUT/$system-$cores.json" total_s)
        build=$(best_json "$OUT/$system-$cores.json" build_s)
        row="$row | $total | $build"
    done
    echo "$row |"
done
rm -rf "$OUT/jammi"
echo "raw files: $OUT" >&2
