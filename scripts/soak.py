#!/usr/bin/env python3
"""Soak: mixed load against `jammi serve` for a while, reporting errors, latency by kind and
the server's memory and open files over time.

    python3 scripts/soak.py --jammi PATH/TO/jammi [--seconds 1800] [--sample 60]

Load, all at once from worker threads: SQL over HTTP, DML transactions over the Postgres
protocol (psycopg), vector search over HTTP, topic publish (HTTP) and group subscribe (SSE),
and artifact put + fetch (the CLI, on the same data directory). Every `--sample` seconds the
server's RSS and open file descriptors are recorded. Prints one JSON report; exits 1 on any
request error, or when open files or memory keep growing (a leak), 0 otherwise.
Needs psycopg and pyarrow (scripts/test.sh installs both); runs the 60-second version after
the test suite.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

DIMS = 16


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jammi", required=True)
    parser.add_argument("--seconds", type=int, default=1800)
    parser.add_argument("--sample", type=int, default=60)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="jammi-soak.")
    jammi = [args.jammi, "--data-dir", home]

    def cli(*argv):
        return subprocess.run(jammi + list(argv), check=True, capture_output=True, text=True).stdout

    rng = random.Random(1)
    ids = list(range(5000))
    vectors = [[rng.uniform(-1, 1) for _ in range(DIMS)] for _ in ids]
    table = pa.table({"id": ids, "lang": [["en", "de", "fr"][i % 3] for i in ids],
                      "emb": pa.array(vectors, type=pa.list_(pa.float32(), DIMS))})
    pq.write_table(table, os.path.join(home, "docs.parquet"))
    cli("vectors", "import", "docs", os.path.join(home, "docs.parquet"), "--id-column", "id", "--vector-column", "emb")
    cli("sql", "CREATE TABLE mutable.public.counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL); INSERT INTO mutable.public.counter VALUES (1, 0);"
        "CREATE TABLE mutable.public.notes (id BIGINT PRIMARY KEY, body TEXT)")
    cli("topic", "create", "ev", "--schema", "n:int64,body:string")
    with open(os.path.join(home, "weights.bin"), "wb") as f:
        f.write(os.urandom(256 << 10))

    server = subprocess.Popen(jammi + ["serve", "--http", "127.0.0.1:0", "--pg", "127.0.0.1:0", "--flight", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    started = json.loads(server.stdout.readline())
    http = "http://" + started["listening"]["http"]
    pg_port = started["listening"]["pg"].rsplit(":", 1)[1]

    stop = threading.Event()
    lock = threading.Lock()
    latencies = {}
    errors = {}

    def record(kind, seconds, error=None):
        with lock:
            latencies.setdefault(kind, []).append(seconds)
            if error is not None:
                errors.setdefault(kind, []).append(str(error)[:300])

    def post(path, body, raw=False):
        data = body if raw else json.dumps(body).encode()
        request = urllib.request.Request(http + path, data=data, headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def loop(kind, step):
        def run():
            i = 0
            while not stop.is_set():
                begin = time.monotonic()
                try:
                    step(i)
                    record(kind, time.monotonic() - begin)
                except Exception as e:  # counted and reported, never fatal
                    record(kind, time.monotonic() - begin, e)
                i += 1
        return threading.Thread(target=run, name=kind)

    def sql(i):
        post("/v1/sql", {"sql": f"SELECT lang, count(*) FROM vectors.public.docs WHERE id > {i % 1000} GROUP BY lang"})

    conn_box = {}

    def dml(i):
        conn = conn_box.get("c")
        if conn is None:
            conn = conn_box["c"] = psycopg.connect(f"postgresql://soak:x@127.0.0.1:{pg_port}/jammi")
        try:
            n = conn.execute("SELECT n FROM mutable.public.counter WHERE id = 1").fetchone()[0]
            conn.execute("UPDATE mutable.public.counter SET n = %s WHERE id = 1", (n + 1,))
            conn.execute("INSERT INTO mutable.public.notes VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET body = excluded.body", (i % 500, f"note {i}"))
            conn.commit()
        except Exception:
            conn.rollback()
            raise

    def search(i):
        post("/v1/search", {"table": "docs", "vector": vectors[i % len(vectors)], "k": 10, "filter": "lang = 'en'" if i % 2 else None})

    def publish(i):
        post("/v1/topics/ev/events", f'{{"n": {i}, "body": "event {i}"}}'.encode(), raw=True)

    def subscribe(i):
        url = f"{http}/v1/topics/ev/events?from_beginning=true&group=soak&limit=20"
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()

    def artifacts(i):
        prefix = cli("artifact", "put", os.path.join(home, "store"), f"job/w/{i}", os.path.join(home, "weights.bin")).strip()
        cli("artifact", "fetch", prefix)

    workers = [loop("sql", sql), loop("dml", dml), loop("search", search), loop("search", search),
               loop("publish", publish), loop("subscribe", subscribe), loop("artifact", artifacts)]
    for w in workers:
        w.start()

    samples = []

    def sample():
        with open(f"/proc/{server.pid}/status") as f:
            rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{server.pid}/fd"))
        samples.append({"t": round(time.monotonic() - start), "rss_mb": round(rss_kb / 1024, 1), "fds": fds})

    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        time.sleep(min(args.sample, args.seconds - (time.monotonic() - start)) if args.seconds > 0 else 0)
        sample()
    stop.set()
    for w in workers:
        w.join(timeout=60)
    server.terminate()
    server.wait(timeout=30)

    def percentile(values, p):
        values = sorted(values)
        return round(values[min(len(values) - 1, int(len(values) * p))] * 1000, 1) if values else None

    kinds = {k: {"requests": len(v), "errors": len(errors.get(k, [])), "p50_ms": percentile(v, 0.5), "p99_ms": percentile(v, 0.99)}
             for k, v in sorted(latencies.items())}
    # Leak checks, after the first sample (warm-up: caches fill): open files must not keep
    # climbing, and memory must not double.
    steady = samples[1:] if len(samples) > 2 else samples
    fd_growth = steady[-1]["fds"] - min(s["fds"] for s in steady)
    rss_growth = steady[-1]["rss_mb"] / max(1.0, steady[0]["rss_mb"])
    problems = []
    if any(v["errors"] for v in kinds.values()):
        problems.append("request errors")
    if fd_growth > 32:
        problems.append(f"open files grew by {fd_growth}")
    if rss_growth > 2.0:
        problems.append(f"RSS grew {rss_growth:.1f}x after warm-up")
    if any(v["requests"] == 0 for v in kinds.values()) or len(kinds) < 6:
        problems.append("a kind of load made no requests")
    report = {"seconds": args.seconds, "kinds": kinds, "samples": samples, "problems": problems,
              "first_errors": {k: v[:3] for k, v in errors.items()}}
    print(json.dumps(report, indent=1))
    summary = ", ".join("%s %d req p99 %s ms" % (k, v["requests"], v["p99_ms"]) for k, v in kinds.items())
    print("soak: %s | rss MB %s | fds %s | %s" % (summary, [s["rss_mb"] for s in samples], [s["fds"] for s in samples],
                                                  "; ".join(problems) or "no problems"), file=sys.stderr)
    subprocess.run(["rm", "-rf", home])
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
