"""DDL inside psycopg's default transaction, through two `jammi serve` processes sharing one
catalog: a definition rolls back with its transaction, and commits with it.

Usage: python3 psycopg_ddl.py PG_PORT_1 PG_PORT_2
Creates mutable.public.counter (id 1, n 0) for psycopg_counter.py; prints "ok".
"""
import sys

import psycopg

first, second = (f"postgresql://c:x@127.0.0.1:{p}/jammi" for p in sys.argv[1:3])

with psycopg.connect(first) as conn:  # not autocommit: psycopg sends BEGIN first
    conn.execute("CREATE TABLE mutable.public.counter (id BIGINT PRIMARY KEY)")
    conn.execute("INSERT INTO mutable.public.counter VALUES (7)")
    assert conn.execute("SELECT count(*) FROM mutable.public.counter").fetchone()[0] == 1
    with psycopg.connect(second, autocommit=True) as other:
        try:
            other.execute("SELECT * FROM mutable.public.counter")
            raise AssertionError("another server saw an uncommitted CREATE TABLE")
        except psycopg.Error:
            pass
    conn.rollback()
    try:
        conn.execute("SELECT * FROM mutable.public.counter")
        raise AssertionError("a rolled-back CREATE TABLE left its table")
    except psycopg.Error:
        conn.rollback()
    conn.execute("CREATE TABLE mutable.public.counter (id BIGINT PRIMARY KEY)")
    conn.execute("ALTER TABLE mutable.public.counter ADD COLUMN n BIGINT NOT NULL DEFAULT 0")
    conn.execute("INSERT INTO mutable.public.counter (id) VALUES (1)")
    conn.commit()

class Undo(Exception):
    pass


# Nested transaction blocks: psycopg makes a savepoint for the inner one.
with psycopg.connect(second) as conn:
    with conn.transaction():
        conn.execute("INSERT INTO mutable.public.counter (id, n) VALUES (2, 5)")
        try:
            with conn.transaction():
                conn.execute("UPDATE mutable.public.counter SET n = 99 WHERE id = 2")
                raise Undo()
        except Undo:
            pass
        assert conn.execute("SELECT n FROM mutable.public.counter WHERE id = 2").fetchone()[0] == 5

with psycopg.connect(second, autocommit=True) as other:
    assert other.execute("SELECT id, n FROM mutable.public.counter ORDER BY id").fetchall() == [(1, 0), (2, 5)]
print("ok")
