"""A real Python Postgres driver (psycopg 3) against `jammi serve`.

Usage: python3 psycopg_client.py PG_PORT TOKEN
Exits non-zero (with a traceback) on any mismatch; prints "ok" at the end.
"""
import sys

import psycopg

port, token = sys.argv[1], sys.argv[2]
with psycopg.connect(f"postgresql://client:{token}@127.0.0.1:{port}/jammi") as conn:
    cur = conn.cursor()
    # DDL in autocommit mode here (inside transactions it works too: see psycopg_ddl.py).
    conn.autocommit = True
    cur.execute("CREATE TABLE mutable.public.py_notes (id BIGINT PRIMARY KEY, body VARCHAR, score DOUBLE)")
    conn.autocommit = False
    # Server-side parameters (extended protocol), inside psycopg's implicit transaction.
    cur.executemany("INSERT INTO mutable.public.py_notes VALUES (%s, %s, %s)", [(1, "one", 0.5), (2, "two", 1.5), (3, None, None)])
    conn.commit()
    cur.execute("SELECT id, body, score FROM mutable.public.py_notes WHERE id >= %s ORDER BY id", (2,))
    assert cur.fetchall() == [(2, "two", 1.5), (3, None, None)], "text results"
    cur.execute("SELECT id, body FROM mutable.public.py_notes WHERE body = %s", ("one",), binary=True)
    assert cur.fetchall() == [(1, "one")], "binary results"
    # A rolled-back write leaves nothing.
    cur.execute("DELETE FROM mutable.public.py_notes WHERE id = %s", (1,))
    conn.rollback()
    cur.execute("SELECT count(*) FROM mutable.public.py_notes")
    assert cur.fetchone()[0] == 3, "rollback"
    # vector_search with the query vector as a parameter.
    cur.execute("SELECT id FROM vector_search('docs', %s, 2) ORDER BY _rank", ("[0.1, 0.1, 1.4, 0.1]",))
    ids = [r[0] for r in cur.fetchall()]
    assert len(ids) == 2 and all(i % 4 == 2 for i in ids), ids
    # Errors are Postgres errors with a message naming the problem.
    try:
        cur.execute("SELECT * FROM mutable.public.missing_table")
        raise AssertionError("expected an error")
    except psycopg.Error as e:
        assert "missing_table" in str(e), str(e)
    conn.rollback()
print("ok")
