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


# The adversarial part: a token holder over Flight SQL cannot name locations, set engine
# settings, pass absurd search arguments or send messages past the request-size limit.
def refused(sql, *needles):
    try:
        cur.execute(sql)
        cur.fetchall()
    except flight_sql.Error as e:
        for needle in needles:
            assert needle in str(e), (sql, str(e))
        return
    raise AssertionError(f"expected a refusal: {sql}")


import os
import tempfile

stolen = os.path.join(tempfile.gettempdir(), f"jammi-adbc-stolen-{os.getpid()}.csv")
refused("CREATE EXTERNAL TABLE loot STORED AS CSV LOCATION '/etc/hostname'", "refused", "jammi source add")
refused(f"COPY (SELECT 1 AS a) TO '{stolen}' STORED AS CSV", "refused")
assert not os.path.exists(stolen), stolen
refused("SELECT * FROM read_csv('/etc/hostname')", "refused")
refused("SET datafusion.execution.target_partitions = 100000", "refused")
refused("SELECT * FROM vector_search('docs', '[0.1, 0.1, 1.4, 0.1]', 9223372036854775807)", "'k'", "limit")
# One message past the server's request-size limit (16 MiB by default) is refused by the
# transport, before the server holds it.
try:
    cur.execute("SELECT '" + "x" * (17 << 20) + "' AS big")
    cur.fetchall()
    raise AssertionError("a 17 MiB message was accepted")
except flight_sql.Error as e:
    text = str(e).lower()
    assert "message" in text or "large" in text or "length" in text or "resource" in text, str(e)
# The connection still works.
cur.execute("SELECT 1 AS one")
assert cur.fetchall() == [(1,)]

cur.close()
conn.close()
print("ok")
