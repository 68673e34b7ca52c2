"""The Python ADBC Flight SQL driver (adbc-driver-flightsql + pyarrow) against `jammi serve`.

Usage: python3 adbc_client.py FLIGHT_PORT TOKEN [OTHER_TENANTS_TOKEN]
Exits non-zero (with a traceback) on any mismatch; prints "ok" at the end.
"""
import sys

import adbc_driver_flightsql.dbapi as flight_sql

port, token = sys.argv[1], sys.argv[2]
other_token = sys.argv[3] if len(sys.argv) > 3 else None


def connect(bearer):
    return flight_sql.connect(
        f"grpc://127.0.0.1:{port}",
        db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {bearer}"},
        autocommit=True,
    )


conn = connect(token)
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
# text_search and hybrid_search over Flight SQL (docs_text indexes its title column).
cur.execute("SELECT id, _retrieved_by FROM text_search('docs_text', $1, $2) ORDER BY _rank", parameters=("beta", 3))
rows = cur.fetchall()
assert len(rows) == 3 and all(r[0] % 2 == 1 and list(r[1]) == ["text"] for r in rows), rows
cur.execute("SELECT id, _vector_rank, _text_rank FROM hybrid_search('docs_text', 'beta', '[0.1, 1.3, 0.1, 0.1]', 2, NULL, 'fusion = rrf') ORDER BY _rank")
rows = cur.fetchall()
assert len(rows) == 2 and rows[0][1] is not None and rows[0][2] is not None, rows
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

# Two tenants over Flight SQL: the other tenant's token sees neither the name nor the columns
# of this tenant's table, cannot read or write it, and keeps its own table of the same name.
if other_token:
    other_conn = connect(other_token)
    other = other_conn.cursor()

    def other_refused(sql, needle, parameters=None):
        try:
            other.execute(sql, parameters=parameters)
            other.fetchall()
        except flight_sql.Error as e:
            assert needle in str(e), (sql, str(e))
            return
        raise AssertionError(f"tenant B reached tenant A's table: {sql}")

    def table_names(connection):
        names = set()
        for catalog in connection.adbc_get_objects(depth="tables").read_all().to_pylist():
            for schema in catalog["catalog_db_schemas"] or []:
                for table in schema["db_schema_tables"] or []:
                    names.add((catalog["catalog_name"], table["table_name"]))
        return names

    assert ("mutable", "adbc_notes") in table_names(conn)
    assert ("mutable", "adbc_notes") not in table_names(other_conn), table_names(other_conn)
    other.execute("SELECT table_name FROM information_schema.tables WHERE table_name = 'adbc_notes'")
    assert other.fetchall() == [], "information_schema shows another tenant's table"
    other.execute("SELECT column_name FROM information_schema.columns WHERE column_name = 'body'")
    assert other.fetchall() == [], "information_schema shows another tenant's columns"
    other_refused("SELECT * FROM mutable.public.adbc_notes", "adbc_notes")
    other_refused("INSERT INTO mutable.public.adbc_notes VALUES (3, 'planted')", "adbc_notes")
    other_refused("UPDATE mutable.public.adbc_notes SET body = 'gone'", "adbc_notes")
    other_refused("DROP TABLE mutable.public.adbc_notes", "adbc_notes")
    other_refused("SELECT body FROM mutable.public.adbc_notes WHERE id = $1", "adbc_notes", parameters=(1,))
    other_refused("WITH t AS (SELECT * FROM mutable.public.adbc_notes) SELECT count(*) FROM t", "adbc_notes")
    other_refused("SELECT x FROM (VALUES (1)) v(x) WHERE x IN (SELECT id FROM mutable.public.adbc_notes)", "adbc_notes")
    # Its own table of the same name, with other columns, and a prepared statement on it.
    other.execute("CREATE TABLE mutable.public.adbc_notes (id BIGINT PRIMARY KEY, other VARCHAR)")
    other.execute("INSERT INTO mutable.public.adbc_notes VALUES (9, 'b')")
    other.execute("SELECT * FROM mutable.public.adbc_notes WHERE id > $1", parameters=(0,))
    assert other.fetch_arrow_table().to_pylist() == [{"id": 9, "other": "b"}]
    # vector_search with a filter, as the other tenant.
    other.execute("SELECT id FROM vector_search('docs', '[0.1, 0.1, 1.4, 0.1]', 8, 'id >= 4') ORDER BY _rank")
    ids = [r[0] for r in other.fetchall()]
    assert ids and all(i >= 4 for i in ids), ids
    other.close()
    other_conn.close()
    # Tenant A's rows are intact.
    cur.execute("SELECT id, body FROM mutable.public.adbc_notes ORDER BY id")
    assert cur.fetch_arrow_table().to_pylist() == [{"id": 1, "body": "one"}, {"id": 2, "body": "two"}]

cur.close()
conn.close()
print("ok")
