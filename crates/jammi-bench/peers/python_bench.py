#!/usr/bin/env python3
"""jammi-db from Python against LanceDB's and DuckDB's Python APIs, in one process.

Vector search: the `jammi` module and LanceDB on the debian-packages set (62,663 MiniLM
vectors, 1,000 held-out queries, exact top-10 ground truth), the same HNSW parameters
(M=16, ef_construction=128, float32 vectors, cosine), one query per call on one thread,
an ef sweep for each, recall@10 against the ground truth, plain and filtered by section.
The LanceDB side and every scoring and timing rule are those of vector_peers.py.

SQL: the same queries over packages.parquet, read in place, through `db.sql(...)` and
DuckDB's `con.sql(...)`, each answer fetched as a pyarrow Table; one thread each
(jammi: `[query] target_partitions = 1`; DuckDB: `SET threads = 1`); median latency of
REPS runs after a warm-up; the two answers compared.

Usage (after `pip install` of the release module, lancedb and duckdb; run_python.sh does it):
    python3 crates/jammi-bench/peers/python_bench.py --out /tmp/python-bench.json
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Sets the single-thread environment (LANCE_CPU_THREADS=1, BLAS threads) before any
# native library loads.
import vector_peers as vp  # noqa: E402

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

SQL_QUERIES = [
    ("count", "SELECT count(*) AS n FROM {t}"),
    ("point lookup", "SELECT package, version, section FROM {t} WHERE id = 4242"),
    ("group by section, top 10", "SELECT section, count(*) AS n, avg(installed_size_kb) AS avg_kb FROM {t} GROUP BY section ORDER BY n DESC, section LIMIT 10"),
    ("prefix filter, sorted", "SELECT package, version FROM {t} WHERE package LIKE 'python3-%' ORDER BY package LIMIT 20"),
    ("count distinct", "SELECT count(DISTINCT maintainer) AS n FROM {t}"),
    ("substring scan of descriptions", "SELECT count(*) AS n FROM {t} WHERE description LIKE '%compression%'"),
]


class JammiPeer(vp.Peer):
    """The `jammi` module in-process: a vector table made with SQL from the dataset's rows,
    searched with `db.vectors.search(name, vector, k, ef=…, filter=…)`."""

    name = "jammi"
    package = "jammi-db"

    def __init__(self, args):
        super().__init__(args)
        import jammi

        self.jammi = jammi
        self.precision = args.precision
        self.name = f"jammi ({self.precision})"
        self.tmp = tempfile.TemporaryDirectory(prefix="jammi-python-bench-")
        (Path(self.tmp.name) / "jammi.toml").write_text("[query]\ntarget_partitions = 1\n")
        self.db = jammi.connect(self.tmp.name)
        self.notes.append(
            f"jammi.connect() in-process; CREATE TABLE vectors.public.packages WITH (metric = 'cosine', precision = '{self.precision}', "
            f"m = {args.m}, ef_construction = {args.ef_construction}) AS SELECT id, section, embedding FROM the dataset; "
            "searched with db.vectors.search('packages', numpy_vector, k, ef=ef[, filter=\"section = '…'\"]), the answer a pyarrow.Table."
        )

    def version(self) -> str:
        return self.jammi.__version__

    def build(self, ds):
        self.section_names = ds.section_names
        rows = Path(self.tmp.name) / "rows.parquet"
        emb = pq.read_table(ds.path / "embeddings.parquet", columns=["id", "embedding"])
        sections = pq.read_table(ds.path / "packages.parquet", columns=["section"]).column("section")
        pq.write_table(pa.table({"id": emb.column("id"), "section": sections, "embedding": emb.column("embedding")}), rows)
        self.db.sources.add("dataset", str(rows))
        self.params = {"metric": "cosine", "precision": self.precision, "m": self.args.m, "ef_construction": self.args.ef_construction}
        started = time.perf_counter()
        self.db.sql(
            "CREATE TABLE vectors.public.packages WITH (id_column = 'id', vector_column = 'embedding', metric = 'cosine', "
            f"precision = '{self.precision}', m = {self.args.m}, ef_construction = {self.args.ef_construction}) "
            "AS SELECT id, section, embedding FROM dataset.public.rows"
        )
        return time.perf_counter() - started

    def set_ef(self, ef):
        self.ef = ef

    def search(self, q, k):
        return self.db.vectors.search("packages", q[0], k=k, ef=self.ef).column("id").to_numpy()

    def search_filtered(self, q, section, k):
        where = "section = '" + self.section_names[section].replace("'", "''") + "'"
        return self.db.vectors.search("packages", q[0], k=k, ef=self.ef, filter=where).column("id").to_numpy()

    def close(self):
        self.db.close()
        self.tmp.cleanup()


def qps_at_recall(rows: list, recall: float):
    """The highest QPS among the sweep's points that reach `recall` (tie-aware), or None."""
    reached = [r for r in rows if r["recall10_ties"] >= recall]
    return max(reached, key=lambda r: r["qps"]) if reached else None


def same_answer(a: pa.Table, b: pa.Table) -> bool:
    """Equal rows, floats to 1e-9 relative (the two sum in different orders)."""
    if a.num_rows != b.num_rows or a.num_columns != b.num_columns:
        return False
    for ra, rb in zip(a.to_pylist(), b.to_pylist()):
        for va, vb in zip(ra.values(), rb.values()):
            if isinstance(va, float) or isinstance(vb, float):
                if abs(float(va) - float(vb)) > 1e-9 * max(1.0, abs(float(va))):
                    return False
            elif va != vb:
                return False
    return True


def median_ms(run, reps: int) -> float:
    run()  # warm-up: file metadata, plans, caches
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run_sql(dataset: Path, reps: int) -> dict:
    import duckdb
    import jammi

    path = str(dataset / "packages.parquet")
    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.execute(f"CREATE VIEW packages AS SELECT * FROM read_parquet('{path}')")
    fetch = (lambda q: con.sql(q).to_arrow_table()) if hasattr(duckdb.DuckDBPyRelation, "to_arrow_table") else (lambda q: con.sql(q).arrow())
    out = {"duckdb_version": duckdb.__version__, "jammi_version": jammi.__version__, "queries": []}
    with tempfile.TemporaryDirectory(prefix="jammi-python-sql-") as tmp:
        (Path(tmp) / "jammi.toml").write_text("[query]\ntarget_partitions = 1\n")
        db = jammi.connect(tmp)
        db.sources.add("deb", path)
        for name, sql in SQL_QUERIES:
            ours, theirs = sql.format(t="deb.public.packages"), sql.format(t="packages")
            agree = same_answer(db.sql(ours), fetch(theirs))
            jammi_ms = median_ms(lambda: db.sql(ours), reps)
            duck_ms = median_ms(lambda: fetch(theirs), reps)
            row = {"query": name, "sql": sql.format(t="packages"), "jammi_ms": round(jammi_ms, 3), "duckdb_ms": round(duck_ms, 3), "ratio": round(jammi_ms / duck_ms, 2), "same_answer": agree}
            out["queries"].append(row)
            print(f"[sql] {name}: jammi {jammi_ms:.2f} ms, duckdb {duck_ms:.2f} ms ({row['ratio']}x){'' if agree else '  ANSWERS DIFFER'}", flush=True)
        db.close()
    out["median_ratio"] = round(statistics.median(r["ratio"] for r in out["queries"]), 2)
    return out


def print_report(report: dict) -> None:
    vectors = report["vectors"]
    print("\n### Vector search from Python (recall@10 tie-aware / QPS, one thread)\n")
    for kind in ("unfiltered", "filtered"):
        print(f"{kind}:\n")
        print("| system | ef | recall@10 | recall@10 (ties) | QPS |")
        print("|---|---:|---:|---:|---:|")
        for name, entry in vectors.items():
            if entry.get("status") != "ok":
                print(f"| {name} | — | {entry.get('status')}: {entry.get('error', '')} | | |")
                continue
            for r in entry[kind]:
                print(f"| {name} | {r['ef']} | {r['recall10']:.4f} | {r['recall10_ties']:.4f} | {r['qps']:.0f} |")
        print()
    print("QPS at equal recall (the fastest sweep point reaching it):\n")
    print("| search | recall ≥ | " + " | ".join(vectors) + " | jammi ÷ LanceDB |")
    print("|---|---:|" + "---:|" * (len(vectors) + 1))
    for row in report["equal_recall"]:
        cells = [f"{row[n]['qps']:.0f} (ef {row[n]['ef']})" if row.get(n) else "—" for n in vectors]
        print(f"| {row['search']} | {row['recall']} | " + " | ".join(cells) + f" | {row['ratio'] or '—'} |")
    sql = report["sql"]
    print(f"\n### SQL from Python against DuckDB {sql['duckdb_version']} (median ms, one thread)\n")
    print("| query | jammi ms | DuckDB ms | jammi ÷ DuckDB | same answer |")
    print("|---|---:|---:|---:|---|")
    for r in sql["queries"]:
        print(f"| {r['query']} | {r['jammi_ms']:.2f} | {r['duckdb_ms']:.2f} | {r['ratio']:.2f}× | {'yes' if r['same_answer'] else 'NO'} |")
    print(f"\nMedian ratio: {sql['median_ratio']}×")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, default=vp.DEFAULT_DATASET)
    p.add_argument("--ef", type=vp.int_list, default=[10, 16, 32, 64, 128, 256])
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=128)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--precisions", default="f32,int8", help="jammi table precisions to run (f32 is like-for-like with LanceDB's IVF_HNSW_FLAT; int8 is jammi's default for cosine)")
    p.add_argument("--sql-reps", type=int, default=30)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    args.filtered_ef = args.ef

    ds = vp.load_dataset(args.dataset, args.queries, args.k)
    vectors = {}
    for precision in args.precisions.split(","):
        args.precision = precision
        vectors[f"jammi ({precision})"] = vp.run_peer(JammiPeer, ds, args)
    vectors["lancedb"] = vp.run_peer(vp.LanceDBPeer, ds, args)

    equal = []
    ours = f"jammi ({args.precisions.split(',')[0]})"
    for kind in ("unfiltered", "filtered"):
        for recall in (0.90, 0.95, 0.99):
            row = {"search": kind, "recall": recall}
            for name, entry in vectors.items():
                row[name] = qps_at_recall(entry.get(kind, []), recall) if entry.get("status") == "ok" else None
            a, b = row.get(ours), row.get("lancedb")
            row["ratio"] = f"{a['qps'] / b['qps']:.1f}×" if a and b else None
            equal.append(row)

    report = {"vectors": vectors, "equal_recall": equal, "sql": run_sql(args.dataset, args.sql_reps), "queries": len(ds.queries), "cpus": os.cpu_count()}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
