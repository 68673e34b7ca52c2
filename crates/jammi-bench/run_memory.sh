#!/usr/bin/env bash
# Peak memory of a process serving searches, jammi beside FAISS and hnswlib, on the shared
# corpus (1,000 held-out queries, k=10, ef=64, one thread). Each system's index is built and
# saved once; then each serving process opens it from disk, answers every query and exits
# under /usr/bin/time. "idle" is the same process without an index: its runtime's own share.
# Then import memory against input size (see below). Prints Markdown tables. Usage: bash crates/jammi-bench/run_memory.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jammi-target}"
DATA="${JAMMI_DATASET:-$ROOT/../shared/datasets/debian-packages}"
OUT="${JAMMI_BENCH_OUT:-$(mktemp -d /tmp/jammi-memory.XXXXXX)}"
mkdir -p "$OUT"
python3 -m pip install -q faiss-cpu hnswlib pyarrow numpy >&2
cargo build --release -p jammi-cli -p jammi-bench >&2  # one package set for every script: the same features, no rebuild
JAMMI="$CARGO_TARGET_DIR/release/jammi"
PEERS="crates/jammi-bench/peers/memory_peers.py"

peak_mb() { # command... → peak RSS in MB
    /usr/bin/time -f "%M" -o "$OUT/time.txt" "$@" >/dev/null
    echo $(( $(tail -1 "$OUT/time.txt") / 1024 ))
}
size_mb() { du -sm "$@" | awk '{s += $1} END {print s}'; }

python3 "$PEERS" build --data "$DATA" --out "$OUT" >&2
rm -rf "$OUT/jammi"
"$JAMMI" -q --data-dir "$OUT/jammi" vectors import deb "$DATA/embeddings.parquet" --id-column id --vector-column embedding >&2
import_peak=$(peak_mb "$JAMMI" -q --data-dir "$OUT/jammi-import" vectors import deb "$DATA/embeddings.parquet" --id-column id --vector-column embedding)
rm -rf "$OUT/jammi-import"

jammi_files=$(size_mb "$OUT/jammi/storage/vectors")
jammi_parquet_graph=$(find "$OUT/jammi/storage/vectors" \( -name data.parquet -o -name index.usearch \) -print0 | du -cm --files0-from=- | tail -1 | cut -f1)
jammi_search=$(peak_mb "$JAMMI" --data-dir "$OUT/jammi" --format csv search deb --query-file "$DATA/queries.parquet" --query-column embedding --k 10)
jammi_idle=$(peak_mb "$JAMMI" --data-dir "$OUT/jammi" sql "SELECT 1")
echo "| system | index files (MB) | serving process peak RSS (MB) | idle process (MB) | peak − idle (MB) |"
echo "|---|---:|---:|---:|---:|"
echo "| jammi (default int8 table) | $jammi_files ($jammi_parquet_graph without vectors.f32) | $jammi_search | $jammi_idle | $((jammi_search - jammi_idle)) |"
for system in faiss hnswlib; do
    files=$(size_mb "$OUT/$system.index")
    search=$(peak_mb python3 "$PEERS" search "$system" --data "$DATA" --out "$OUT")
    idle=$(peak_mb python3 "$PEERS" idle "$system" --data "$DATA" --out "$OUT")
    echo "| $system | $files | $search | $idle | $((search - idle)) |"
done
echo
echo "jammi vectors import peak RSS: $import_peak MB"

# Import memory against input size: the corpus once and four times over, jammi with its
# default segment size (512 MiB: one segment for both) and with 32 MiB segments (~21,800
# rows of 384 dims), beside each peer's whole build (read, build, save) on the same file.
python3 "$PEERS" replicate --data "$DATA" --out "$OUT" --copies 4 --target "$OUT/x4.parquet" >&2
echo
echo "| input | rows | jammi import, default segments (MB) | jammi import, 32 MiB segments (MB) | segments | FAISS build (MB) | hnswlib build (MB) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for input in "$DATA/embeddings.parquet" "$OUT/x4.parquet"; do
    rows=$(python3 -c "import pyarrow.parquet as pq, sys; print(pq.ParquetFile(sys.argv[1]).metadata.num_rows)" "$input")
    rm -rf "$OUT/imp"
    whole=$(peak_mb "$JAMMI" -q --data-dir "$OUT/imp" vectors import deb "$input" --id-column id --vector-column embedding)
    rm -rf "$OUT/imp"
    bounded=$(JAMMI_VECTORS__SEGMENT_MB=32 peak_mb "$JAMMI" -q --data-dir "$OUT/imp" vectors import deb "$input" --id-column id --vector-column embedding)
    segments=$("$JAMMI" --data-dir "$OUT/imp" --format ndjson vectors list | python3 -c "import json, sys; print(json.loads(sys.stdin.readline())['segments'])")
    rm -rf "$OUT/imp"
    faiss=$(peak_mb python3 "$PEERS" build faiss --data "$DATA" --out "$OUT" --embeddings "$input")
    hnsw=$(peak_mb python3 "$PEERS" build hnswlib --data "$DATA" --out "$OUT" --embeddings "$input")
    echo "| $(basename "$input") | $rows | $whole | $bounded | $segments | $faiss | $hnsw |"
done
# The peers' saved indexes of the corpus itself, for anyone rerunning the serving part.
python3 "$PEERS" build --data "$DATA" --out "$OUT" >&2
echo "raw files: $OUT" >&2
