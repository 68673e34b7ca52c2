"""Index build time of FAISS HNSW and hnswlib, for run_build.sh to set beside `jammi
vectors import`.

One system per process, with `--threads` build threads (run_build.sh also pins the process
to that many cores). Prints one JSON line: seconds to read the vectors from Parquet and
normalise them, to build the graph (M=16, efConstruction=128, as vector_peers.py), and to
save it — the same work `jammi vectors import` does, which also writes its Parquet file.
Usage: python3 build_peers.py SYSTEM --data DIR --out DIR --threads N
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("system", choices=["faiss", "hnswlib"])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=128)
    a = p.parse_args()

    t0 = time.perf_counter()
    col = pq.read_table(a.data / "embeddings.parquet", columns=["embedding"]).column("embedding").combine_chunks()
    base = col.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(col), -1)
    base = base / np.linalg.norm(base, axis=1, keepdims=True)
    t1 = time.perf_counter()
    path = a.out / f"{a.system}-build.index"
    if a.system == "faiss":
        import faiss

        faiss.omp_set_num_threads(a.threads)
        index = faiss.IndexHNSWFlat(base.shape[1], a.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = a.ef_construction
        index.add(base)
        t2 = time.perf_counter()
        faiss.write_index(index, str(path))
    else:
        import hnswlib

        index = hnswlib.Index(space="cosine", dim=base.shape[1])
        index.init_index(max_elements=len(base), ef_construction=a.ef_construction, M=a.m)
        index.add_items(base, np.arange(len(base)), num_threads=a.threads)
        t2 = time.perf_counter()
        index.save_index(str(path))
    t3 = time.perf_counter()
    path.unlink()
    print(json.dumps({"system": a.system, "threads": a.threads, "read_s": t1 - t0, "build_s": t2 - t1, "save_s": t3 - t2, "total_s": t3 - t0}))


if __name__ == "__main__":
    main()
