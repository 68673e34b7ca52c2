#!/usr/bin/env python3
"""Peer vector-search benchmark on the debian-packages dataset.

Runs usearch, faiss, hnswlib and LanceDB (all HNSW) plus an exact numpy
baseline over the same base vectors, queries and ground truth that the Rust
benchmark uses, so the two can be read side by side.

Contract shared with the Rust benchmark:
  * every search is single-threaded and issued one query at a time;
    QPS = queries / wall seconds of the timed query loop (time.perf_counter);
  * index builds may use every core; their wall time is reported separately;
  * recall@10 is |returned ids ∩ true top-10 ids| / 10, averaged over queries
    (plus a tie-aware variant, see TIE_EPS: the base has many exact duplicates);
  * filtered search means "section == query's section", evaluated by each
    library's own filtering mechanism, scored against filtered_ground_truth.

Usage (from the repository root):
    python3 crates/jammi-bench/peers/vector_peers.py --out /tmp/peers.json
"""

import os
import sys

# Thread pools are sized when the native libraries load, so the single-thread
# contract must be in the environment before numpy / faiss / lancedb import.
# Builds that should use all cores pass explicit thread counts instead.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

# LanceDB has no per-call thread knob: its compute pool is sized from
# LANCE_CPU_THREADS once per process. The index is therefore built in a child
# process (this same script, hidden flag) with every core, and searched here
# with one compute thread.
_LANCE_BUILD_CHILD = "--_lance-build" in sys.argv
os.environ["LANCE_CPU_THREADS"] = str(os.cpu_count() or 1) if _LANCE_BUILD_CHILD else "1"

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

SCRIPT_DIR = Path(__file__).resolve().parent
DEFAULT_DATASET = (SCRIPT_DIR / "../../../../shared/datasets/debian-packages").resolve()
ALL_PEERS = ("usearch", "faiss", "hnswlib", "lancedb", "numpy")
NCPU = os.cpu_count() or 1
# Untimed queries before each timed loop: the first queries pay for page
# faults, lazy index loading (LanceDB) and allocator warm-up, none of which is
# steady-state search cost.
WARMUP_QUERIES = 20


# --------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------


def vectors_of(column: pa.ChunkedArray, dims: int | None = None) -> np.ndarray:
    """FixedSizeList<float32, d> column -> contiguous (n, d) float32 matrix."""
    arr = column.combine_chunks()
    d = dims or arr.type.list_size
    # flatten() honours slicing offsets, unlike .values.
    return np.ascontiguousarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, d)


@dataclass
class Dataset:
    path: Path
    base: np.ndarray  # (n, d) float32, unit norm, row i has id i
    sections: np.ndarray  # (n,) int32 section code per base row
    section_names: list[str]
    queries: np.ndarray  # (q, d) float32
    query_sections: np.ndarray  # (q,) int32 section code per query
    gt10: list[set[int]]  # unfiltered true top-10 per query
    fgt10: list[set[int]]  # filtered true top-min(10, valid) per query
    gt_kth: np.ndarray  # (q,) cosine distance of the true k-th neighbour
    fgt_kth: np.ndarray  # (q,) same under the filter (last valid one if fewer than k)
    section_ids: list[np.ndarray] = field(default_factory=list)  # base ids per section code

    @property
    def rows(self) -> int:
        return self.base.shape[0]

    @property
    def dims(self) -> int:
        return self.base.shape[1]


def load_dataset(path: Path, n_queries: int, k: int) -> Dataset:
    emb = pq.read_table(path / "embeddings.parquet", columns=["id", "embedding"])
    ids = emb.column("id").to_numpy()
    # Every peer uses the row number as the id; the dataset promises they agree.
    if not np.array_equal(ids, np.arange(len(ids))):
        raise SystemExit("embeddings.parquet ids are not 0..N-1 in row order")
    base = vectors_of(emb.column("embedding"))

    pkgs = pq.read_table(path / "packages.parquet", columns=["id", "section"])
    if not np.array_equal(pkgs.column("id").to_numpy(), ids):
        raise SystemExit("packages.parquet is not in the same order as embeddings.parquet")
    base_section_str = pkgs.column("section").to_pylist()

    qt = pq.read_table(path / "queries.parquet", columns=["query_id", "section", "embedding"]).sort_by("query_id")
    gt = pq.read_table(path / "ground_truth.parquet", columns=["query_id", "neighbors", "distances"]).sort_by("query_id")
    fgt = pq.read_table(
        path / "filtered_ground_truth.parquet", columns=["query_id", "section", "neighbors", "distances"]
    ).sort_by("query_id")
    qids = qt.column("query_id").to_numpy()
    if not (np.array_equal(qids, gt.column("query_id").to_numpy()) and np.array_equal(qids, fgt.column("query_id").to_numpy())):
        raise SystemExit("queries / ground truth / filtered ground truth disagree on query ids")

    n_queries = min(n_queries, len(qids))
    queries = vectors_of(qt.column("embedding"))[:n_queries]
    query_section_str = qt.column("section").to_pylist()[:n_queries]
    if query_section_str != fgt.column("section").to_pylist()[:n_queries]:
        raise SystemExit("queries.parquet and filtered_ground_truth.parquet disagree on sections")

    names = sorted(set(base_section_str) | set(query_section_str))
    code = {s: i for i, s in enumerate(names)}
    sections = np.array([code[s] for s in base_section_str], dtype=np.int32)
    query_sections = np.array([code[s] for s in query_section_str], dtype=np.int32)

    gt_nb = vectors_of_int(gt.column("neighbors"))[:n_queries]
    fgt_nb = vectors_of_int(fgt.column("neighbors"))[:n_queries]
    gt10 = [set(row[:k].tolist()) for row in gt_nb]
    # -1 pads sections with fewer than 100 rows; a query can only be asked to
    # find the valid ones.
    fgt10 = [set(row[row >= 0][:k].tolist()) for row in fgt_nb]
    gt_kth = vectors_of(gt.column("distances"))[:n_queries, k - 1].astype(np.float64)
    fgt_dist = vectors_of(fgt.column("distances"))[:n_queries]
    fgt_kth = np.array([row[: len(t)][-1] if t else np.nan for row, t in zip(fgt_dist, fgt10)], dtype=np.float64)

    ds = Dataset(path, base, sections, names, queries, query_sections, gt10, fgt10, gt_kth, fgt_kth)
    order = np.argsort(sections, kind="stable")
    bounds = np.searchsorted(sections[order], np.arange(len(names) + 1))
    ds.section_ids = [order[bounds[c] : bounds[c + 1]].astype(np.int64) for c in range(len(names))]
    return ds


def vectors_of_int(column: pa.ChunkedArray) -> np.ndarray:
    arr = column.combine_chunks()
    return arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64).reshape(-1, arr.type.list_size)


# --------------------------------------------------------------------------
# Scoring and timing
# --------------------------------------------------------------------------


# Exact ties are common here (identical descriptions in the base): even
# exact float32 search misses ~1.5% of the float64 ground-truth ids at rank 10,
# with distance gaps below 1e-8. So besides the id-based recall that was asked
# for, a returned id also counts as a hit when its distance is within TIE_EPS
# of the true k-th distance (the ann-benchmarks convention). That tie-aware
# recall has a ceiling of 1.0; the id-based one does not.
TIE_EPS = 1e-6


def cosine_distance(ds: Dataset, ids: np.ndarray, qi: int) -> np.ndarray:
    """Cosine distance in float64, vectors re-normalised, as the ground truth was computed."""
    v = ds.base[ids].astype(np.float64)
    q = ds.queries[qi].astype(np.float64)
    return 1.0 - (v @ q) / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))


def score(ds: Dataset, results: list, k: int, filtered: bool) -> dict:
    """Recall@k (by id and tie-aware), short result lists, and for filtered
    search the mean recall per query section."""
    by_id, tie_aware, short = [], [], 0
    by_section: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for i, r in enumerate(results):
        ids = np.asarray(r, dtype=np.int64)[:k]
        ids = ids[ids >= 0]  # faiss pads with -1 when the walk found too few matches
        if filtered:
            # An id from the wrong section is simply wrong, never a tie.
            section = ds.query_sections[i]
            ids = ids[ds.sections[ids] == section]
            truth, kth = ds.fgt10[i], ds.fgt_kth[i]
        else:
            truth, kth = ds.gt10[i], ds.gt_kth[i]
        short += len(ids) < min(k, len(truth))
        need = len(truth)
        if need == 0:
            by_id.append(1.0)
            tie_aware.append(1.0)
            continue
        by_id.append(len(truth & set(ids.tolist())) / need)
        near = int(np.count_nonzero(cosine_distance(ds, ids, i) <= kth + TIE_EPS)) if len(ids) else 0
        tie_aware.append(min(near, need) / need)
        if filtered:
            by_section[ds.section_names[section]].append((by_id[-1], tie_aware[-1]))
    out = {
        "recall10": round(float(np.mean(by_id)), 4),
        "recall10_ties": round(float(np.mean(tie_aware)), 4),
        "short_results": short,
    }
    if filtered:
        # Sections such as devel hold many byte-identical descriptions (distance
        # 0 ties), so the worst section by id and the worst with ties differ.
        per_id = {s: float(np.mean([a for a, _ in v])) for s, v in sorted(by_section.items())}
        per_tie = {s: float(np.mean([b for _, b in v])) for s, v in sorted(by_section.items())}
        worst_id = min(per_id, key=per_id.get)
        worst_tie = min(per_tie, key=per_tie.get)
        out["min_section_recall10"] = round(per_id[worst_id], 4)
        out["min_section"] = worst_id
        out["min_section_recall10_ties"] = round(per_tie[worst_tie], 4)
        out["min_section_ties"] = worst_tie
        out["per_section_recall10"] = {s: [round(per_id[s], 4), round(per_tie[s], 4)] for s in per_id}
    return out


def timed_loop(search, n: int) -> tuple[list, float]:
    """Call search(i) for every query i; return results and the loop's wall seconds.

    Results are kept as returned and scored afterwards, so the timed region
    contains nothing but the library calls and a list append.
    """
    for i in range(min(WARMUP_QUERIES, n)):
        search(i)
    out = [None] * n
    t0 = time.perf_counter()
    for i in range(n):
        out[i] = search(i)
    return out, time.perf_counter() - t0


# --------------------------------------------------------------------------
# Peers
# --------------------------------------------------------------------------


class Peer:
    """One library under test. Subclasses import their library in __init__ so a
    missing package turns into an "unavailable" entry instead of a crash."""

    name = ""
    package = ""  # distribution name for the version lookup
    filtered_supported = True

    def __init__(self, args):
        self.args = args
        self.params: dict = {}
        self.notes: list[str] = []

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def build(self, ds: Dataset) -> float:
        """Build the index; return wall seconds."""
        raise NotImplementedError

    def set_ef(self, ef: int) -> None:
        raise NotImplementedError

    def search(self, q: np.ndarray, k: int):
        """q is a (1, d) row view; return the ids of the k best matches."""
        raise NotImplementedError

    def search_filtered(self, q: np.ndarray, section: int, k: int):
        raise NotImplementedError

    def close(self) -> None:
        pass


class USearchPeer(Peer):
    name = "usearch"
    package = "usearch"

    def __init__(self, args):
        super().__init__(args)
        from usearch.index import Index

        self._Index = Index
        # usearch 2.x's Python Index.search has no predicate argument (the C++
        # core has filtered search, the binding does not expose it).
        import inspect

        sig = inspect.signature(Index.search).parameters
        self.filtered_supported = any(p in sig for p in ("filter", "predicate", "filter_fn"))
        if not self.filtered_supported:
            self.notes.append("Python Index.search has no filter/predicate parameter in this version: filtered search not supported.")

    def build(self, ds):
        # dtype is pinned to f32: left to itself usearch picks bf16/f16 storage
        # on capable CPUs, which would be a different (quantised) index than the
        # float32 graphs the other peers build.
        self.index = self._Index(
            ndim=ds.dims,
            metric="cos",
            dtype="f32",
            connectivity=self.args.m,
            expansion_add=self.args.ef_construction,
        )
        self.params = {
            "metric": "cos",
            "dtype": "f32",
            "connectivity": self.args.m,
            "expansion_add": self.args.ef_construction,
        }
        keys = np.arange(ds.rows, dtype=np.uint64)
        t0 = time.perf_counter()
        self.index.add(keys, ds.base, threads=NCPU)
        return time.perf_counter() - t0

    def set_ef(self, ef):
        self.index.expansion_search = ef

    def search(self, q, k):
        return self.index.search(q[0], k, threads=1).keys


class FaissPeer(Peer):
    name = "faiss"
    package = "faiss-cpu"

    def __init__(self, args):
        super().__init__(args)
        import faiss

        self.faiss = faiss
        self.notes.append(
            "IndexHNSWFlat with METRIC_INNER_PRODUCT (faiss has no cosine metric; the vectors are unit-norm so IP ranks identically)."
        )
        self.notes.append("Filter: SearchParametersHNSW(sel=IDSelectorBitmap), one bitmap per section prepared before timing.")

    def build(self, ds):
        f = self.faiss
        self.index = f.IndexHNSWFlat(ds.dims, self.args.m, f.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.args.ef_construction
        self.params = {"index": "IndexHNSWFlat", "metric": "inner_product", "M": self.args.m, "efConstruction": self.args.ef_construction}
        f.omp_set_num_threads(NCPU)
        t0 = time.perf_counter()
        self.index.add(ds.base)
        elapsed = time.perf_counter() - t0
        f.omp_set_num_threads(1)
        # A database would hold the filter as a bitmap already; building it per
        # query would measure numpy, not faiss.
        self.bitmaps = []
        self.selectors = []
        for ids in ds.section_ids:
            mask = np.zeros(ds.rows, dtype=bool)
            mask[ids] = True
            bits = np.packbits(mask, bitorder="little")  # faiss tests bit (i & 7) of byte i >> 3
            self.bitmaps.append(bits)
            self.selectors.append(f.IDSelectorBitmap(bits))
        return elapsed

    def set_ef(self, ef):
        self.ef = ef
        self.plain_params = self.faiss.SearchParametersHNSW(efSearch=ef)
        self.filter_params = [self.faiss.SearchParametersHNSW(efSearch=ef, sel=s) for s in self.selectors]

    def search(self, q, k):
        _, ids = self.index.search(q, k, params=self.plain_params)
        return ids[0]

    def search_filtered(self, q, section, k):
        _, ids = self.index.search(q, k, params=self.filter_params[section])
        return ids[0]


class HnswlibPeer(Peer):
    name = "hnswlib"
    package = "hnswlib"

    def __init__(self, args):
        super().__init__(args)
        import hnswlib

        self.hnswlib = hnswlib
        self.notes.append(
            "Filter: knn_query(filter=callable); hnswlib calls back into Python for every candidate, "
            "so its filtered QPS includes that interpreter cost (a set's __contains__, prepared before timing)."
        )

    def build(self, ds):
        self.index = self.hnswlib.Index(space="cosine", dim=ds.dims)
        self.index.init_index(max_elements=ds.rows, ef_construction=self.args.ef_construction, M=self.args.m)
        self.params = {"space": "cosine", "M": self.args.m, "ef_construction": self.args.ef_construction}
        t0 = time.perf_counter()
        self.index.add_items(ds.base, np.arange(ds.rows), num_threads=NCPU)
        elapsed = time.perf_counter() - t0
        self.index.set_num_threads(1)
        self.members = [frozenset(ids.tolist()).__contains__ for ids in ds.section_ids]
        return elapsed

    def set_ef(self, ef):
        self.index.set_ef(ef)

    def search(self, q, k):
        labels, _ = self.index.knn_query(q, k=k, num_threads=1)
        return labels[0]

    def search_filtered(self, q, section, k):
        labels, _ = self.index.knn_query(q, k=k, num_threads=1, filter=self.members[section])
        return labels[0]


class LanceDBPeer(Peer):
    """LanceDB with its HNSW index.

    IVF_HNSW_FLAT is the one HNSW variant that keeps float32 vectors (the _SQ
    and _PQ variants quantise), so it is the like-for-like choice. With a single
    IVF partition it is one HNSW graph over all rows, and nprobes=1 visits it.
    """

    name = "lancedb"
    package = "lancedb"
    table_name = "packages"

    def __init__(self, args):
        super().__init__(args)
        import lancedb

        self.lancedb = lancedb
        self.tmp = tempfile.TemporaryDirectory(prefix="jammi-peers-lancedb-")
        self.notes.append(
            "Index IVF_HNSW_FLAT, num_partitions=1 (a single HNSW graph), metric cosine, nprobes=1, ef via .ef(). "
            "Filtered: .where(\"section = '...'\", prefilter=True) with a BITMAP scalar index on section; "
            "the where clause is parsed and evaluated inside the timed loop, as a user query would be."
        )
        self.notes.append(
            "Built in a child process with LANCE_CPU_THREADS=ncpu; searched with LANCE_CPU_THREADS=1. "
            "Lance still runs its tokio IO runtime alongside, so 'single-threaded' is one compute thread, "
            "and every query crosses Python -> Rust -> Arrow, which dominates at this dataset size."
        )

    def build(self, ds):
        self.section_names = ds.section_names
        self.params = {
            "index_type": "IVF_HNSW_FLAT",
            "metric": "cosine",
            "num_partitions": 1,
            "m": self.args.m,
            "ef_construction": self.args.ef_construction,
            "nprobes": 1,
            "scalar_index": {"section": "BITMAP"},
        }
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--_lance-build",
            self.tmp.name,
            "--dataset",
            str(ds.path),
            "--m",
            str(self.args.m),
            "--ef-construction",
            str(self.args.ef_construction),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"LanceDB build child failed:\n{proc.stderr[-4000:]}")
        timings = json.loads(proc.stdout.strip().splitlines()[-1])
        self.params["build_breakdown_s"] = timings
        db = self.lancedb.connect(self.tmp.name)
        self.table = db.open_table(self.table_name)
        self.plan = None
        return timings["vector_index_s"]

    def set_ef(self, ef):
        self.ef = ef

    def _query(self, q, k):
        return (
            self.table.search(q[0], vector_column_name="vector")
            .distance_type("cosine")
            .nprobes(1)
            .ef(self.ef)
            # _distance is asked for explicitly: lance warns on every query
            # (deprecated auto-projection) when it is left out.
            .select(["id", "_distance"])
            .limit(k)
        )

    def search(self, q, k):
        return self._query(q, k).to_arrow().column("id").to_numpy()

    def search_filtered(self, q, section, k):
        where = "section = '" + self.section_names[section].replace("'", "''") + "'"
        return self._query(q, k).where(where, prefilter=True).to_arrow().column("id").to_numpy()

    def explain(self, ds, k) -> str:
        """Query plan of one filtered search, kept in the notes so a reader can
        see the vector index (not a flat scan) was used."""
        try:
            section = int(ds.query_sections[0])
            where = "section = '" + ds.section_names[section].replace("'", "''") + "'"
            return self._query(ds.queries[0:1], k).where(where, prefilter=True).explain_plan(verbose=False)
        except Exception as exc:  # the plan is informational only
            return f"explain_plan failed: {exc}"

    def close(self):
        self.table = None
        self.tmp.cleanup()


def lance_build_child(db_dir: str, dataset: Path, m: int, ef_construction: int) -> None:
    """Runs in the child process: write the table, build both indexes, print timings as JSON."""
    import lancedb

    emb = pq.read_table(dataset / "embeddings.parquet", columns=["id", "embedding"])
    pkgs = pq.read_table(dataset / "packages.parquet", columns=["section"])
    data = pa.table(
        {
            "id": emb.column("id"),
            "section": pkgs.column("section"),
            "vector": emb.column("embedding"),
        }
    )
    db = lancedb.connect(db_dir)
    t0 = time.perf_counter()
    table = db.create_table(LanceDBPeer.table_name, data)
    t1 = time.perf_counter()
    table.create_index(
        metric="cosine",
        vector_column_name="vector",
        index_type="IVF_HNSW_FLAT",
        num_partitions=1,
        m=m,
        ef_construction=ef_construction,
    )
    t2 = time.perf_counter()
    table.create_scalar_index("section", index_type="BITMAP")
    t3 = time.perf_counter()
    print(
        json.dumps(
            {
                "write_table_s": round(t1 - t0, 3),
                "vector_index_s": round(t2 - t1, 3),
                "section_bitmap_index_s": round(t3 - t2, 3),
                "lance_cpu_threads": int(os.environ["LANCE_CPU_THREADS"]),
            }
        )
    )


PEER_CLASSES = {"usearch": USearchPeer, "faiss": FaissPeer, "hnswlib": HnswlibPeer, "lancedb": LanceDBPeer}


# --------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------


def run_peer(cls, ds: Dataset, args) -> dict:
    k = args.k
    try:
        peer = cls(args)
    except Exception as exc:  # ImportError, or a broken native extension
        return {"status": "unavailable", "error": f"{type(exc).__name__}: {exc}"}
    entry: dict = {"status": "ok", "version": peer.version()}
    try:
        print(f"[{peer.name}] building ...", flush=True)
        entry["build_s"] = round(peer.build(ds), 3)
        entry["build_threads"] = NCPU
        entry["params"] = peer.params

        unfiltered = []
        for ef in args.ef:
            peer.set_ef(ef)
            results, secs = timed_loop(lambda i: peer.search(ds.queries[i : i + 1], k), len(ds.queries))
            row = {"ef": ef, **score(ds, results, k, filtered=False), "qps": round(len(results) / secs, 1)}
            unfiltered.append(row)
            print(
                f"[{peer.name}] ef={ef:<4} recall@{k}={row['recall10']:.4f} (ties {row['recall10_ties']:.4f}) "
                f"qps={row['qps']:.1f}",
                flush=True,
            )
        entry["unfiltered"] = unfiltered

        if not peer.filtered_supported:
            entry["filtered"] = "not supported"
        else:
            filtered = []
            for ef in args.filtered_ef:
                peer.set_ef(ef)
                results, secs = timed_loop(
                    lambda i: peer.search_filtered(ds.queries[i : i + 1], int(ds.query_sections[i]), k),
                    len(ds.queries),
                )
                sc = score(ds, results, k, filtered=True)
                per_section = sc.pop("per_section_recall10")
                # per-section detail last, so the JSON stays readable; each value
                # is [by-id recall, tie-aware recall]
                row = {"ef": ef, **sc, "qps": round(len(results) / secs, 1), "per_section_recall10": per_section}
                filtered.append(row)
                print(
                    f"[{peer.name}] filtered ef={ef:<4} recall@{k}={row['recall10']:.4f} (ties {row['recall10_ties']:.4f}) "
                    f"min-section={row['min_section_recall10']:.4f} ({row['min_section']}) "
                    f"ties {row['min_section_recall10_ties']:.4f} ({row['min_section_ties']}) qps={row['qps']:.1f}",
                    flush=True,
                )
            entry["filtered"] = filtered
        if isinstance(peer, LanceDBPeer):
            peer.notes.append("Filtered query plan: " + " | ".join(peer.explain(ds, k).split("\n")))
    except Exception as exc:
        entry["status"] = "error"
        entry["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        entry["notes"] = " ".join(peer.notes)
        peer.close()
    return entry


def run_numpy_exact(ds: Dataset, k: int) -> dict:
    """Brute force: one matrix-vector product and a partial sort per query."""
    base = ds.base

    def top_k(scores: np.ndarray) -> np.ndarray:
        if scores.shape[0] <= k:
            return np.argsort(-scores)
        part = np.argpartition(-scores, k)[:k]
        return part[np.argsort(-scores[part])]

    results, secs = timed_loop(lambda i: top_k(base @ ds.queries[i]), len(ds.queries))
    sc = score(ds, results, k, filtered=False)
    out = {
        "version": np.__version__,
        "ms_per_query": round(1000 * secs / len(results), 3),
        "recall10": sc["recall10"],
        "recall10_ties": sc["recall10_ties"],
        "qps": round(len(results) / secs, 1),
    }

    # Filtered exact search over rows pre-grouped by section: the best case for
    # brute force (no filter evaluation, contiguous section data), which is the
    # plan a database should pick when a filter is very selective.
    by_section = [np.ascontiguousarray(base[ids]) for ids in ds.section_ids]
    results, secs = timed_loop(
        lambda i: ds.section_ids[ds.query_sections[i]][top_k(by_section[ds.query_sections[i]] @ ds.queries[i])],
        len(ds.queries),
    )
    sc = score(ds, results, k, filtered=True)
    out["filtered_ms_per_query"] = round(1000 * secs / len(results), 3)
    out["filtered_recall10"] = sc["recall10"]
    out["filtered_recall10_ties"] = sc["recall10_ties"]
    out["filtered_min_section_recall10"] = sc["min_section_recall10"]
    out["filtered_min_section_recall10_ties"] = sc["min_section_recall10_ties"]
    out["notes"] = (
        "Single-threaded BLAS (OPENBLAS/OMP/MKL_NUM_THREADS=1), float32 base @ q then argpartition top-10. "
        "Id-based recall below 1.0 comes only from exact ties at rank 10 (duplicate descriptions in the base) "
        "and float32 vs float64 rounding; recall10_ties should be 1.0. Filtered: the same over rows pre-grouped "
        "by section (pre-grouping done before timing)."
    )
    return out


# --------------------------------------------------------------------------
# CLI and report
# --------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="debian-packages dataset directory")
    p.add_argument("--ef", type=int_list, default=[10, 12, 16, 32, 64, 128, 256], help="search ef values (comma list)")
    p.add_argument("--filtered-ef", type=int_list, default=None, help="ef values for filtered search (default: --ef)")
    p.add_argument("--m", type=int, default=16, help="HNSW M (links per node)")
    p.add_argument("--ef-construction", type=int, default=128)
    p.add_argument("--queries", type=int, default=1000, help="use the first N queries")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--peers", default=",".join(ALL_PEERS), help="comma list of " + ",".join(ALL_PEERS))
    p.add_argument("--out", type=Path, help="write JSON results here")
    p.add_argument("--_lance-build", dest="lance_build", metavar="DB_DIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.filtered_ef is None:
        args.filtered_ef = args.ef
    args.peers = [x.strip() for x in args.peers.split(",") if x.strip()]
    unknown = [x for x in args.peers if x not in ALL_PEERS]
    if unknown:
        p.error(f"unknown peers {unknown}; choose from {ALL_PEERS}")
    return args


def print_report(report: dict) -> None:
    k = report["k"]
    rk, rt = f"R@{k}", f"R@{k}ties"
    print()
    print(
        f"dataset {report['dataset']}: {report['rows']} rows x {report['dims']} dims, "
        f"{report['queries']} queries, k={k}, search threads=1, build threads={report['build_threads']}"
    )
    print(f"{rk} = id-based recall; {rt} = a returned id within {TIE_EPS:g} of the true k-th distance also counts")
    print()
    print(f"{'peer':<9} {'version':<9} {'build_s':>8}  {'ef':>4} {rk:>7} {rt:>9} {'QPS':>9}")
    for name, e in report["peers"].items():
        if e.get("status") != "ok":
            print(f"{name:<9} {e.get('status', '?').upper()}: {e.get('error', '')}")
            continue
        for j, row in enumerate(e["unfiltered"]):
            head = f"{name:<9} {e['version']:<9} {e['build_s']:>8.2f}" if j == 0 else " " * 28
            print(f"{head}  {row['ef']:>4} {row['recall10']:>7.4f} {row['recall10_ties']:>9.4f} {row['qps']:>9.1f}")

    print()
    print(f"filtered (section == query section), against filtered ground truth; short = queries with < {k} valid results")
    print(
        f"{'peer':<9} {'ef':>4} {rk:>7} {rt:>9} {'min sect.':>9} {'(section)':<14} "
        f"{'min ties':>9} {'(section)':<14} {'short':>5} {'QPS':>9}"
    )
    for name, e in report["peers"].items():
        if e.get("status") != "ok":
            print(f"{name:<9} {'':>4} {e.get('status', '?')}")
            continue
        if not isinstance(e.get("filtered"), list):
            print(f"{name:<9} {'':>4} {e.get('filtered')}")
            continue
        for row in e["filtered"]:
            print(
                f"{name:<9} {row['ef']:>4} {row['recall10']:>7.4f} {row['recall10_ties']:>9.4f} "
                f"{row['min_section_recall10']:>9.4f} {'(' + row['min_section'] + ')':<14} "
                f"{row['min_section_recall10_ties']:>9.4f} {'(' + row['min_section_ties'] + ')':<14} "
                f"{row['short_results']:>5} {row['qps']:>9.1f}"
            )

    ne = report.get("numpy_exact")
    if ne:
        print()
        print(
            f"numpy exact {ne['version']}: {ne['ms_per_query']:.3f} ms/query ({ne['qps']:.1f} QPS), "
            f"{rk}={ne['recall10']:.4f} {rt}={ne['recall10_ties']:.4f}; filtered {ne['filtered_ms_per_query']:.3f} "
            f"ms/query, {rk}={ne['filtered_recall10']:.4f} {rt}={ne['filtered_recall10_ties']:.4f}"
        )
    print()
    for name, e in report["peers"].items():
        if e.get("notes"):
            print(f"note [{name}]: {e['notes']}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.lance_build:
        lance_build_child(args.lance_build, args.dataset, args.m, args.ef_construction)
        return 0

    t_start = time.perf_counter()
    ds = load_dataset(args.dataset, args.queries, args.k)
    print(f"loaded {ds.rows} x {ds.dims} base vectors, {len(ds.queries)} queries, {len(ds.section_names)} sections", flush=True)

    report = {
        "dataset": str(ds.path),
        "rows": ds.rows,
        "dims": ds.dims,
        "queries": len(ds.queries),
        "k": args.k,
        "search_threads": 1,
        "build_threads": NCPU,
        "warmup_queries": WARMUP_QUERIES,
        # QPS is only comparable on a quiet machine; the load average lets a
        # reader spot a run that shared its cores with something else.
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "peers": {},
    }
    for name in args.peers:
        if name == "numpy":
            continue
        report["peers"][name] = run_peer(PEER_CLASSES[name], ds, args)
    if "numpy" in args.peers:
        print("[numpy] exact search ...", flush=True)
        report["numpy_exact"] = run_numpy_exact(ds, args.k)
    report["total_wall_s"] = round(time.perf_counter() - t_start, 1)
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    print_report(report)
    print(f"\ntotal wall time {report['total_wall_s']} s; load average (1/5/15 min) at start "
          f"{report['loadavg_start']}, at end {report['loadavg_end']} on {NCPU} cores")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
