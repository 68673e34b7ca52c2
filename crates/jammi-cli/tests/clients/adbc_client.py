"""The Python ADBC Flight SQL driver (adbc-driver-flightsql + pyarrow) against `jammi serve`.

Usage: python3 adbc_client.py FLIGHT_PORT TOKEN
Exits non-zero (with a traceback) on any mismatch; prints "ok" at the end.
"""
import sys

import adbc_driver_flightsql.dbapi as flight_sql

port, token = sys.argv[1], sys.argv[2]
conn = flight_sql.connect(
    f"grpc://127.0.0.1:{port}",
    db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"},
    autocommit=True,
)
cur = conn.cursor()
cur.execute("CREATE TABLE mutable.public.adbc_notes (id BIGINT PRIMARY KEY, body VARCHAR)")
cur.execute("INSERT INTO mutable.public.adbc_notes VALUES (1, 'one'), (2, 'two')")
cur.execute("SELECT id, body FROM mutable.public.adbc_notes ORDER BY id")
table = cur.fetch_arrow_table()
assert table.to_pylist() == [{"id": 1, "body": "one"}, {"id": 2, "body": "two"}], table.to_pylist()
# A prepared statement with a bound parameter.
cur.execute("SELECT body FROM mutable.public.adbc_notes WHERE id = $1", parameters=(2,))
assert cur.fetchall() == [("two",)]
# vector_search.
cur.execute("SELECT id FROM vector_search('docs', '[0.1, 0.1, 1.4, 0.1]', 2) ORDER BY _rank")
ids = [r[0] for r in cur.fetchall()]
assert len(ids) == 2 and all(i % 4 == 2 for i in ids), ids
# Catalog metadata.
objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
catalogs = {c["catalog_name"] for c in objects}
assert "mutable" in catalogs and "vectors" in catalogs, catalogs
# Errors name the problem.
try:
    cur.execute("SELECT * FROM mutable.public.missing_table")
    cur.fetchall()
    raise AssertionError("expected an error")
except flight_sql.Error as e:
    assert "missing_table" in str(e), str(e)
cur.close()
conn.close()
print("ok")
