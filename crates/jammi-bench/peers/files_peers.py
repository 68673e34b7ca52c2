"""DuckDB on the Parquet file of files-bench: the same five queries, the same threads, median
of several runs after a warm-up, in-process. Prints JSON for `files-bench --peers`.

    python3 files_peers.py FILE THREADS REPS QUERIES_JSON
"""
import json
import statistics
import sys
import time

import duckdb

path, threads, reps, queries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute(f"CREATE VIEW facts AS SELECT * FROM read_parquet('{path}')")
out = {}
for name, sql in queries:
    sql = sql.replace("{t}", "facts")
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description]
    first = cur.fetchone()
    cur.fetchall()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        con.sql(sql).to_arrow_table()
        times.append((time.perf_counter() - started) * 1000)
    row = None if first is None else {c: (float(v) if hasattr(v, "as_tuple") else v) for c, v in zip(cols, first)}
    out[name] = {"ms": statistics.median(times), "first_row": row}
    print(f"duckdb {name}: {out[name]['ms']:.1f} ms", file=sys.stderr)
print(json.dumps({"duckdb": out, "version": duckdb.__version__}))
