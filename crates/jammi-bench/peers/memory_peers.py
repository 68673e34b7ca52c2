"""Memory of a process that serves searches: FAISS and hnswlib beside jammi.

`replicate` writes the corpus several times over (a larger input of the same kind, for import
memory). `build` makes each peer's index of the shared corpus (HNSW, M=16, efConstruction=128, as
vector_peers.py) and saves it to a file. `search SYSTEM` is one serving process: it opens the
saved index, answers every held-out query (k=10, ef=64) and exits — run_memory.sh measures
its peak RSS with /usr/bin/time. `idle SYSTEM` does the same imports and reads the queries
but opens no index: the interpreter's and library's own share of that peak.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def vectors(path: Path, column: str = "embedding") -> np.ndarray:
    col = pq.read_table(path, columns=[column]).column(column).combine_chunks()
    flat = col.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    out = flat.reshape(len(col), -1)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def build(systems: list, embeddings: Path, out: Path, m: int, ef_construction: int) -> None:
    base = vectors(embeddings)
    if "faiss" in systems:
        import faiss

        faiss.omp_set_num_threads(os.cpu_count() or 1)
        index = faiss.IndexHNSWFlat(base.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.add(base)
        faiss.write_index(index, str(out / "faiss.index"))
    if "hnswlib" in systems:
        import hnswlib

        h = hnswlib.Index(space="cosine", dim=base.shape[1])
        h.init_index(max_elements=len(base), ef_construction=ef_construction, M=m)
        h.add_items(base, np.arange(len(base)), num_threads=os.cpu_count() or 1)
        h.save_index(str(out / "hnswlib.index"))


def replicate(embeddings: Path, copies: int, target: Path) -> None:
    """The corpus `copies` times over (ids offset, each copy's vectors nudged so no two rows
    are equal), written in row groups of 8,192 rows: a larger input of the same kind."""
    import pyarrow as pa

    table = pq.read_table(embeddings)
    ids = table.column("id").to_numpy()
    span = int(ids.max()) + 1
    col = table.column("embedding").combine_chunks()
    flat = col.values.to_numpy(zero_copy_only=False).astype(np.float32)
    dims = len(flat) // len(col)
    rng = np.random.default_rng(7)
    with pq.ParquetWriter(str(target), pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32(), dims))])) as writer:
        for copy in range(copies):
            noisy = flat + (rng.standard_normal(flat.shape).astype(np.float32) * 0.01 if copy else 0)
            part = pa.table({
                "id": pa.array(ids.astype(np.int64) + copy * span),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(noisy), dims),
            })
            writer.write_table(part, row_group_size=8192)


def serve(system: str, data: Path, out: Path, idle: bool) -> None:
    queries = vectors(data / "queries.parquet")
    if system == "faiss":
        import faiss

        faiss.omp_set_num_threads(1)
        if idle:
            return
        index = faiss.read_index(str(out / "faiss.index"))
        params = faiss.SearchParametersHNSW(efSearch=64)
        found = sum(int((index.search(q[None, :], 10, params=params)[1] >= 0).sum()) for q in queries)
    elif system == "hnswlib":
        import hnswlib

        if idle:
            return
        h = hnswlib.Index(space="cosine", dim=queries.shape[1])
        h.load_index(str(out / "hnswlib.index"))
        h.set_ef(64)
        h.set_num_threads(1)
        found = sum(len(h.knn_query(q, k=10)[0][0]) for q in queries)
    else:
        raise SystemExit(f"unknown system {system}")
    assert found == 10 * len(queries), found


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["build", "search", "idle", "replicate"])
    p.add_argument("system", nargs="?", help="search/idle: the system; build: one system (default both)")
    p.add_argument("--embeddings", type=Path, help="build from this file (default: the corpus)")
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--target", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=128)
    a = p.parse_args()
    if a.mode == "build":
        systems = [a.system] if a.system else ["faiss", "hnswlib"]
        build(systems, a.embeddings or a.data / "embeddings.parquet", a.out, a.m, a.ef_construction)
    elif a.mode == "replicate":
        replicate(a.data / "embeddings.parquet", a.copies, a.target)
    else:
        serve(a.system, a.data, a.out, a.mode == "idle")


if __name__ == "__main__":
    sys.exit(main())
