"""Read-modify-write through two `jammi serve` processes sharing one catalog.

Usage: python3 psycopg_counter.py PG_PORT_1 PG_PORT_2 CLIENTS ROUNDS
Each client (half on each server) runs ROUNDS x `BEGIN; SELECT n; UPDATE ... SET n = <n+1>;
COMMIT`, retrying on SQLSTATE 40001/40P01. Prints the final counter.
"""
import sys
import threading

import psycopg

ports = [sys.argv[1], sys.argv[2]]
clients, rounds = int(sys.argv[3]), int(sys.argv[4])
errors = []


def client(port):
    try:
        with psycopg.connect(f"postgresql://c:x@127.0.0.1:{port}/jammi") as conn:
            cur = conn.cursor()
            done = 0
            while done < rounds:
                try:
                    cur.execute("SELECT n FROM mutable.public.counter WHERE id = 1")
                    n = cur.fetchone()[0]
                    cur.execute("UPDATE mutable.public.counter SET n = %s WHERE id = 1", (n + 1,))
                    conn.commit()
                    done += 1
                except psycopg.Error as e:
                    conn.rollback()
                    if e.sqlstate not in ("40001", "40P01"):
                        raise
    except Exception as e:  # reported by the main thread
        errors.append(repr(e))


threads = [threading.Thread(target=client, args=(ports[i % 2],)) for i in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
with psycopg.connect(f"postgresql://c:x@127.0.0.1:{ports[0]}/jammi", autocommit=True) as conn:
    print(conn.execute("SELECT n FROM mutable.public.counter WHERE id = 1").fetchone()[0])
