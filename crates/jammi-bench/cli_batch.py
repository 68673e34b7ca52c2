"""The CLI batch path: `jammi search --query-file` over the shared corpus, timed as a user
runs it (a whole process, pinned to one core), with recall@10 from its CSV output.

For each ef: the best of N runs of the 1,000-query file, and of a one-query file (process
start, opening the catalog, loading the table); QPS is reported both for the whole process
and for the batch alone (the difference). Usage (run_cli_batch.sh sets it up):
    python3 cli_batch.py JAMMI DATA_DIR DATASET [--ef 10 12 16 32 64 128] [--runs 3]
"""

import argparse
import csv
import io
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq


def run(cmd: list) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0, done.stdout


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("jammi")
    p.add_argument("data_dir")
    p.add_argument("dataset", type=Path)
    p.add_argument("--ef", type=int, nargs="+", default=[10, 12, 16, 32, 64, 128])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--table", default="deb")
    a = p.parse_args()

    queries = pq.read_table(a.dataset / "queries.parquet", columns=["query_id", "embedding"])
    truth = pq.read_table(a.dataset / "ground_truth.parquet", columns=["query_id", "neighbors"])
    top10 = {q: set(n[:10]) for q, n in zip(truth.column("query_id").to_pylist(), truth.column("neighbors").to_pylist())}
    order = queries.column("query_id").to_pylist()
    one = Path(tempfile.mkdtemp()) / "one.parquet"
    pq.write_table(queries.slice(0, 1), one)

    base = ["taskset", "-c", "0", a.jammi, "--data-dir", a.data_dir, "--format", "csv", "search", a.table,
            "--query-column", "embedding", "--k", "10"]
    print("| ef | recall@10 | whole process (s) | one-query process (s) | QPS, whole process | QPS, batch alone |")
    print("|---:|---:|---:|---:|---:|---:|")
    for ef in a.ef:
        cmd = base + ["--ef", str(ef)]
        whole, out = min(run(cmd + ["--query-file", str(a.dataset / "queries.parquet")]) for _ in range(a.runs))
        start = min(run(cmd + ["--query-file", str(one)])[0] for _ in range(a.runs))
        found: dict[int, set] = {}
        for row in csv.DictReader(io.StringIO(out)):
            found.setdefault(int(row["query"]), set()).add(int(row["id"]))
        recall = sum(len(found.get(i, set()) & top10[q]) for i, q in enumerate(order)) / (10 * len(order))
        n = len(order)
        print(f"| {ef} | {recall:.4f} | {whole:.3f} | {start:.3f} | {n / whole:,.0f} | {(n - 1) / (whole - start):,.0f} |")


if __name__ == "__main__":
    main()
