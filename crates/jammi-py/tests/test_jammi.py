"""The `jammi` package against the real engine (built into the wheel scripts/test.sh installs)."""

import math
import os
import threading
import time

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import jammi

TENANT_A = "3f2b8c1e-0000-4000-8000-0000000000c1"
TENANT_B = "3f2b8c1e-0000-4000-8000-0000000000c2"


@pytest.fixture()
def db(tmp_path):
    with jammi.connect(tmp_path / "data") as db:
        yield db


def test_sql_returns_arrow_tables_with_the_engines_types(db):
    db.sql("CREATE TABLE mutable.public.notes (id BIGINT PRIMARY KEY, body TEXT, score DOUBLE)")
    db.sql("INSERT INTO mutable.public.notes VALUES (1, 'alpha', 0.5), (2, 'beta', NULL)")
    table = db.sql("SELECT id, body, score FROM mutable.public.notes ORDER BY id")
    assert isinstance(table, pa.Table)
    assert table.schema.field("id").type == pa.int64()
    assert table.to_pylist() == [{"id": 1, "body": "alpha", "score": 0.5}, {"id": 2, "body": "beta", "score": None}]
    frame = table.to_pandas()
    assert list(frame["body"]) == ["alpha", "beta"] and math.isnan(frame["score"][1])
    # Several statements: the last one's rows.
    assert db.sql("INSERT INTO mutable.public.notes VALUES (3, 'gamma', 1.0); SELECT count(*) AS n FROM mutable.public.notes").to_pylist() == [{"n": 3}]
    # An empty answer keeps its schema.
    empty = db.sql("SELECT id FROM mutable.public.notes WHERE id > 100")
    assert empty.num_rows == 0 and empty.schema.names == ["id"]


def test_parameters_fill_placeholders(db):
    db.sql("CREATE TABLE mutable.public.t (id BIGINT PRIMARY KEY, name TEXT)")
    db.sql("INSERT INTO mutable.public.t VALUES (1, 'one'), (2, 'two'), (3, 'three')")
    got = db.sql("SELECT name FROM mutable.public.t WHERE id >= $1 AND name <> $2 ORDER BY id", params=[2, "three"])
    assert got.column("name").to_pylist() == ["two"]
    with pytest.raises(jammi.InvalidArgument):
        db.sql("SELECT 1", params="not a list")


def test_streaming_reads_batch_by_batch(db):
    reader = db.sql_reader("SELECT value FROM generate_series(1, 100000)")
    assert isinstance(reader, pa.RecordBatchReader)
    total, batches = 0, 0
    for batch in reader:
        total += pc_sum(batch.column(0))
        batches += 1
    assert total == 100000 * 100001 // 2 and batches > 1
    # The Arrow PyCapsule stream interface: any consumer of __arrow_c_stream__ reads it.
    assert hasattr(db.sql_reader("SELECT 1 AS x"), "__arrow_c_stream__")


def pc_sum(column):
    return sum(column.to_pylist())


def test_errors_are_typed_and_carry_the_engines_message(db):
    with pytest.raises(jammi.NotFound) as missing:
        db.sql("SELECT * FROM mutable.public.nowhere")
    assert "nowhere" in str(missing.value)
    with pytest.raises(jammi.InvalidArgument) as syntax:
        db.sql("SELEKT 1")
    assert "SELEKT" in str(syntax.value) or "syntax" in str(syntax.value).lower()
    db.sql("CREATE TABLE mutable.public.u (id BIGINT PRIMARY KEY)")
    db.sql("INSERT INTO mutable.public.u VALUES (1)")
    with pytest.raises(jammi.Conflict):
        db.sql("INSERT INTO mutable.public.u VALUES (1)")
    assert issubclass(jammi.NotFound, jammi.Error) and issubclass(jammi.Conflict, jammi.Error)
    # Nothing was half-written.
    assert db.sql("SELECT count(*) AS n FROM mutable.public.u").to_pylist() == [{"n": 1}]


def test_transactions_commit_or_roll_back_as_a_block(db):
    db.sql("CREATE TABLE mutable.public.acct (id BIGINT PRIMARY KEY, balance BIGINT)")
    with db.transaction():
        db.sql("INSERT INTO mutable.public.acct VALUES (1, 100)")
        db.sql("INSERT INTO mutable.public.acct VALUES (2, 50)")
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.sql("UPDATE mutable.public.acct SET balance = 0 WHERE id = 1")
            raise RuntimeError("abandon")
    assert db.sql("SELECT id, balance FROM mutable.public.acct ORDER BY id").to_pylist() == [{"id": 1, "balance": 100}, {"id": 2, "balance": 50}]


def test_sources_from_files_with_pandas_round_trip(db, tmp_path):
    frame = pd.DataFrame({"city": ["Oslo", "Lima", "Pune"], "population": [709_000, 10_000_000, 7_000_000]})
    path = tmp_path / "cities.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    added = db.sources.add("geo", str(path))
    assert added.column("name").to_pylist() == ["geo"]
    back = db.sql("SELECT city, population FROM geo.public.cities ORDER BY population DESC").to_pandas()
    assert back["city"].tolist() == ["Lima", "Pune", "Oslo"]
    assert "geo" in db.sources.list().column("name").to_pylist()
    db.sources.remove("geo")
    with pytest.raises(jammi.NotFound):
        db.sql("SELECT * FROM geo.public.cities")
    with pytest.raises(jammi.Error):
        db.sources.add("bad", str(tmp_path / "missing.parquet"))


def test_polars_round_trip(db):
    table = db.sql("SELECT value AS v, value * 2 AS w FROM generate_series(1, 5)")
    frame = pl.from_arrow(table)
    assert frame["w"].to_list() == [2, 4, 6, 8, 10]


def vectors_frame(n, dims, seed):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dims)).astype(np.float32)
    return pd.DataFrame({"id": np.arange(n, dtype=np.int64), "category": ["even" if i % 2 == 0 else "odd" for i in range(n)], "embedding": list(vectors)}), vectors


def vectors_table(frame, dims):
    fields = [("id", pa.int64()), ("category", pa.string()), ("embedding", pa.list_(pa.float32(), dims))]
    if "body" in frame:
        fields.append(("body", pa.string()))
    return pa.Table.from_pandas(frame, preserve_index=False).cast(pa.schema(fields))


def with_bodies(frame):
    """A text column: every row 'plain', row 77 about zebras."""
    frame["body"] = [f"item {i} " + ("striped zebra crossing" if i == 77 else "plain") for i in range(len(frame))]
    return frame


def test_text_and_hybrid_search(db):
    frame, vectors = vectors_frame(200, 8, 5)
    db.vectors.import_("notes", vectors_table(with_bodies(frame), 8), text_columns="body")
    # Text on a table with a full-text index searches it.
    text = db.vectors.search("notes", "zebra", k=3)
    assert text.column("id").to_pylist() == [77]
    # A vector with text= is a hybrid search: the vector's nearest row and the text's match.
    hybrid = db.vectors.search("notes", vectors[5], text="zebra", k=10)
    assert {5, 77} <= set(hybrid.column("id").to_pylist())
    weighted = db.vectors.search("notes", vectors[5], text="zebra", k=10, fusion={"fusion": "weighted", "weights": "0.5:0.5"})
    assert {5, 77} <= set(weighted.column("id").to_pylist())
    # Vector mode alone ignores the words: row 77 is not near vectors[5].
    assert db.vectors.search("notes", vectors[5], k=1, mode="vector").column("id").to_pylist() == [5]
    with pytest.raises(jammi.InvalidArgument):
        db.vectors.search("notes", vectors[5], text="zebra", fusion="fusion = nonsense")
    with pytest.raises(jammi.InvalidArgument):
        db.vectors.search("notes", vectors[[1, 2]], text="zebra")
    with pytest.raises(jammi.InvalidArgument):
        db.vectors.search("notes", vectors[5], mode="sideways")
    with pytest.raises(jammi.InvalidArgument):
        db.vectors.search("notes")


def test_vector_tables_import_search_append_delete(db):
    frame, vectors = vectors_frame(500, 16, 7)
    table = vectors_table(frame, 16)
    info = db.vectors.import_("docs", table, metric="l2")
    assert info.column("rows").to_pylist() == [500]
    # One vector (numpy), exact answers: each row is its own nearest neighbour.
    hits = db.vectors.search("docs", vectors[42], k=3, exact=True)
    assert hits.column("id").to_pylist()[0] == 42
    # Several at once: one table, numbered by `query`.
    batch = db.vectors.search("docs", vectors[[1, 2, 3]], k=1, exact=True)
    assert batch.column("query").to_pylist() == [0, 1, 2] and batch.column("id").to_pylist() == [1, 2, 3]
    # A vector crosses as float32 whatever its form: float64 numpy, a strided view, a list.
    expected = hits.column("id").to_pylist()
    wide = np.repeat(vectors.astype(np.float64), 2, axis=1)
    for form in (vectors[42].astype(np.float64), wide[42, ::2], vectors[42].tolist()):
        assert db.vectors.search("docs", form, k=3, exact=True).column("id").to_pylist() == expected
    for bad in (vectors.reshape(500, 4, 4), np.array(["a"] * 16), np.zeros((0, 16), dtype=np.float32), ["x"] * 16):
        with pytest.raises(jammi.InvalidArgument):
            db.vectors.search("docs", bad, k=1)
    # A filter on payload columns.
    odd = db.vectors.search("docs", vectors[42], k=5, filter="category = 'odd'")
    assert set(odd.column("category").to_pylist()) == {"odd"}
    more, _ = vectors_frame(10, 16, 8)
    more["id"] = more["id"] + 1000
    assert db.vectors.append("docs", more) == 10
    assert db.vectors.delete("docs", [42]) == 1
    assert 42 not in db.vectors.search("docs", vectors[42], k=3, exact=True).column("id").to_pylist()
    assert db.sql("SELECT count(*) AS n FROM vectors.public.docs").to_pylist() == [{"n": 509}]
    with pytest.raises(jammi.InvalidArgument):
        db.vectors.search("docs", [[1.0, 2.0], [1.0]], k=1)
    with pytest.raises(jammi.Error):
        db.vectors.search("docs", np.zeros(3, dtype=np.float32), k=1)
    with pytest.raises(jammi.NotFound):
        db.vectors.search("nowhere", vectors[0], k=1)
    db.vectors.drop("docs")
    assert db.vectors.list().num_rows == 0


def test_tenants_see_their_own_rows_and_tables(tmp_path):
    path = tmp_path / "data"
    with jammi.connect(path) as operator:
        operator.sql("CREATE TABLE mutable.public.shared_notes (id BIGINT PRIMARY KEY, body TEXT)")
    a = jammi.connect(path, tenant=TENANT_A)
    b = a.as_tenant(TENANT_B)
    assert (a.tenant, b.tenant) == (TENANT_A, TENANT_B)
    a.sql("CREATE TABLE mutable.public.private_a (id BIGINT PRIMARY KEY)")
    a.sql("INSERT INTO mutable.public.private_a VALUES (1)")
    with pytest.raises(jammi.NotFound):
        b.sql("SELECT * FROM mutable.public.private_a")
    with pytest.raises(jammi.InvalidArgument):
        jammi.connect(path, tenant="not-a-uuid")
    a.close()


def test_calls_release_the_gil(db):
    # A thread of pure Python keeps running while the engine works.
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    thread = threading.Thread(target=tick)
    thread.start()
    started = len(ticks)
    db.sql("SELECT sum(a.value * b.value) FROM generate_series(1, 2000) a CROSS JOIN generate_series(1, 2000) b")
    stop.set()
    thread.join()
    assert len(ticks) - started > 5, "the Python thread did not run during the query"


def test_version_and_types():
    assert jammi.__version__
    assert os.path.exists(os.path.join(os.path.dirname(jammi.__file__), "py.typed"))


def test_ctrl_c_interrupts_a_long_call(tmp_path):
    import signal
    import subprocess
    import sys

    script = (
        "import jammi, sys, time\n"
        f"db = jammi.connect({str(tmp_path / 'data')!r})\n"
        "print('ready', flush=True)\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    db.sql('SELECT count(*) FROM generate_series(1, 100000000000)')\n"
        "except KeyboardInterrupt:\n"
        "    print(f'interrupted {time.monotonic() - started:.2f}', flush=True)\n"
        "    sys.exit(0)\n"
        "print('finished', flush=True)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0 and out.startswith("interrupted"), out
    assert float(out.split()[1]) < 10, out


def test_topics_publish_subscribe_and_groups(db):
    db.topics.create("clicks", {"user_id": "int64", "page": "string"})
    first = db.topics.publish("clicks", [{"user_id": 1, "page": "/a"}, {"user_id": 2, "page": "/b"}])
    assert first == {"first_offset": 0, "count": 2}
    frame = pd.DataFrame({"user_id": [3, 4], "page": ["/c", "/d"]})
    assert db.topics.publish("clicks", frame) == {"first_offset": 2, "count": 2}
    with pytest.raises(jammi.InvalidArgument):
        db.topics.publish("clicks", [{"user_id": "not a number", "page": "/x"}])
    assert db.sql("SELECT count(*) AS n FROM topics.public.clicks").to_pylist() == [{"n": 4}], "a rejected publish writes nothing"

    # Replay from the beginning, with a filter.
    users, offsets = [], []
    with db.topics.subscribe("clicks", from_beginning=True, filter="user_id % 2 = 0") as sub:
        for batch in sub:
            users += batch.column("user_id").to_pylist()
            offsets += batch.column("_offset").to_pylist()
            if len(users) >= 2:
                break
    assert (users, offsets) == ([2, 4], [1, 3])

    # A consumer group: a member that stops early hands unacknowledged events back, and the
    # next member gets them — every event to the group, none lost.
    seen = []
    sub = db.topics.subscribe("clicks", from_beginning=True, group="g")
    assert sub.member
    for batch in sub:
        seen.extend(batch.column("_offset").to_pylist())
        break  # consumed but never acknowledged
    sub.close()
    again = []
    with db.topics.subscribe("clicks", from_beginning=True, group="g") as sub2:
        for batch in sub2:
            again.extend(batch.column("_offset").to_pylist())
            if len(set(again)) >= 4:
                break
    assert sorted(set(again)) == [0, 1, 2, 3], again

    # Live events reach an `async for` subscriber.
    import asyncio

    async def live():
        sub = db.topics.subscribe("clicks")
        async def publish_soon():
            await asyncio.sleep(0.3)
            await asyncio.to_thread(db.topics.publish, "clicks", [{"user_id": 9, "page": "/live"}])
        task = asyncio.ensure_future(publish_soon())
        async for batch in sub:
            await task
            sub.close()
            return batch.column("page").to_pylist()

    assert asyncio.run(asyncio.wait_for(live(), 30)) == ["/live"]
    db.topics.drop("clicks")
    assert db.topics.list().num_rows == 0


def test_artifacts_and_models(db, tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(100_000))
    config = tmp_path / "config.json"
    config.write_text('{"layers": 2}')
    root = (tmp_path / "store").as_uri()
    prefix = db.artifacts.put(root, "models/tiny/v1", [weights, config])
    assert prefix.startswith(root) and "tiny" in prefix
    local = db.artifacts.fetch(prefix)
    assert open(os.path.join(local, "weights.bin"), "rb").read() == weights.read_bytes()
    assert open(os.path.join(local, "config.json")).read() == '{"layers": 2}'
    with pytest.raises(jammi.Error):
        db.artifacts.put(root, "models/tiny/v2", [tmp_path / "missing.bin"])
    db.artifacts.rm(prefix)
    with pytest.raises(jammi.Error, match="manifest.json is missing"):
        db.artifacts.fetch(prefix)

    db.models.register("ranker", "v1", task="classification", metadata={"auc": 0.91})
    db.models.register("ranker", "v2", task="classification")
    with pytest.raises(jammi.Conflict):
        db.models.register("ranker", "v1", task="classification")
    db.models.alias("ranker", "prod", "v1")
    assert db.models.describe("ranker", "prod").column("version").to_pylist() == ["v1"]
    db.models.alias("ranker", "prod", "v2")
    assert db.models.describe("ranker", "prod").column("version").to_pylist() == ["v2"]
    db.models.rm("ranker", "v1")
    assert db.models.list().column("version").to_pylist() == ["v2"]
    with pytest.raises(jammi.NotFound):
        db.models.describe("ranker", "v1")


def test_a_server_through_flight_sql(tmp_path):
    import json
    import subprocess

    jammi_bin = os.environ["JAMMI_BIN"]  # scripts/test.sh: the jammi binary of this build
    data = str(tmp_path / "served")
    run = lambda *args: subprocess.run([jammi_bin, "--data-dir", data, *args], check=True, capture_output=True, text=True).stdout
    run("--tenant", TENANT_A, "sql", "CREATE TABLE mutable.public.notes (id BIGINT PRIMARY KEY, body TEXT); INSERT INTO mutable.public.notes VALUES (1, 'from a')")
    run("--tenant", TENANT_B, "sql", "CREATE TABLE mutable.public.notes (id BIGINT PRIMARY KEY, body TEXT); INSERT INTO mutable.public.notes VALUES (2, 'from b')")
    token_a = json.loads(run("--tenant", TENANT_A, "--format", "json", "token", "create", "--name", "py"))[0]["token"]
    token_b = json.loads(run("--tenant", TENANT_B, "--format", "json", "token", "create", "--name", "py"))[0]["token"]
    # Tenant A's vector table, and what an in-process search of it answers.
    frame, vectors = vectors_frame(300, 8, 11)
    with jammi.connect(data, tenant=TENANT_A) as local:
        local.vectors.import_("docs", vectors_table(with_bodies(frame), 8), text_columns=["body"])
        expected_one = local.vectors.search("docs", vectors[5], k=4)
        expected_hybrid = local.vectors.search("docs", vectors[5], text="zebra", k=6)
        expected_many = local.vectors.search("docs", vectors[[5, 6]], k=2, filter="category = 'even'")
    server = subprocess.Popen([jammi_bin, "--data-dir", data, "serve", "--http", "127.0.0.1:0", "--pg", "127.0.0.1:0", "--flight", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        flight = json.loads(server.stdout.readline())["listening"]["flight"]
        with jammi.connect(f"grpc://{flight}", token=token_a) as remote:
            table = remote.sql("SELECT id, body FROM mutable.public.notes ORDER BY id")
            assert isinstance(table, pa.Table)
            assert table.to_pylist() == [{"id": 1, "body": "from a"}], "the token's tenant sees its own rows only"
            assert remote.sql_reader("SELECT 1 AS one").read_all().to_pylist() == [{"one": 1}]
            with pytest.raises(jammi.NotFound):
                remote.sql("SELECT * FROM mutable.public.nowhere")
            with pytest.raises(jammi.InvalidArgument):
                remote.sql("SELEKT 1")
            # Parameters travel as a prepared statement's values, typed as given.
            assert remote.sql("SELECT body FROM mutable.public.notes WHERE id = $1", [1]).to_pylist() == [{"body": "from a"}]
            remote.sql("INSERT INTO mutable.public.notes VALUES ($1, $2)", [3, "it's a parameter"])
            assert remote.sql("SELECT body FROM mutable.public.notes WHERE id = $1", [3]).column("body").to_pylist() == ["it's a parameter"]
            assert remote.sql("SELECT $1 || '!' AS s, $2 + 1 AS n", ["x", 41]).to_pylist() == [{"s": "x!", "n": 42}]
            # Vector search over the server answers what the same search in-process does.
            one = remote.vectors.search("docs", vectors[5], k=4)
            assert one.column("id").to_pylist() == expected_one.column("id").to_pylist()
            assert np.allclose(one.column("_distance").to_numpy(), expected_one.column("_distance").to_numpy(), atol=1e-5)
            many = remote.vectors.search("docs", vectors[[5, 6]], k=2, filter="category = 'even'")
            assert many.column("query").to_pylist() == expected_many.column("query").to_pylist()
            assert many.column("id").to_pylist() == expected_many.column("id").to_pylist()
            assert set(many.column("category").to_pylist()) == {"even"}
            # Full-text and hybrid search through text_search / hybrid_search.
            assert remote.vectors.search("docs", "zebra", k=3, mode="text").column("id").to_pylist() == [77]
            hybrid = remote.vectors.search("docs", vectors[5], text="zebra", k=6)
            assert hybrid.column("id").to_pylist() == expected_hybrid.column("id").to_pylist()
            assert remote.vectors.delete("docs", [int(expected_one.column("id")[0].as_py())]) == 1
            assert expected_one.column("id")[0].as_py() not in remote.vectors.search("docs", vectors[5], k=4).column("id").to_pylist()
            with pytest.raises(jammi.InvalidArgument, match="dimensions"):
                remote.vectors.search("docs", [1.0, 2.0], k=1)
            with pytest.raises(jammi.InvalidArgument, match="in-process only"):
                remote.vectors.search("docs", vectors[5], k=1, exact=True)
            # What reaches the server's files and credentials stays on its host: each
            # method exists, and says so; a misspelt one is an AttributeError.
            with pytest.raises(jammi.InvalidArgument, match=r"db\.sources\.add\(\) runs in-process only"):
                remote.sources.add("etc", "/etc/passwd", format="csv")
            with pytest.raises(jammi.InvalidArgument, match="in-process only"):
                remote.vectors.import_("more", frame)
            with pytest.raises(jammi.InvalidArgument, match="in-process only"):
                remote.artifacts.fetch("file:///etc")
            with pytest.raises(jammi.InvalidArgument, match="in-process only"):
                remote.transaction()
            with pytest.raises(AttributeError):
                remote.sources.add_everything
        # Another tenant's token sees neither A's rows nor A's vector table, and cannot
        # delete from it.
        with jammi.connect(f"grpc://{flight}", token=token_b) as remote_b:
            assert remote_b.sql("SELECT id FROM mutable.public.notes WHERE id >= $1", [0]).column("id").to_pylist() == [2]
            with pytest.raises(jammi.NotFound):
                remote_b.vectors.search("docs", vectors[5], k=4)
            with pytest.raises(jammi.NotFound):
                remote_b.vectors.delete("docs", [6])
        with pytest.raises(jammi.PermissionDenied):
            jammi.connect(f"grpc://{flight}", token="jammi_not_a_token").sql("SELECT 1")
        with pytest.raises(jammi.InvalidArgument):
            jammi.connect(f"grpc://{flight}", tenant=TENANT_A)
    finally:
        server.terminate()
        server.wait(timeout=30)
    with pytest.raises(jammi.Unavailable):
        jammi.connect("grpc://127.0.0.1:1", token=token_a)
    with pytest.raises(jammi.InvalidArgument):
        jammi.connect("http://example:1")


def test_job_queue_worker_side_finalizes_each_job_once(db, tmp_path):
    root = (tmp_path / "models").as_uri()
    db.models.register("ranker", "v7", task="classification")
    db.jobs.enqueue("ranker", "v7", root, payload={"epochs": 3})
    assert db.jobs.list().column("state").to_pylist() == ["queued"]

    # A worker claims the job and dies without a word (a 1 s lease).
    doomed = db.jobs.claim("doomed", lease_seconds=1)
    assert doomed["payload"] == {"epochs": 3} and doomed["attempt"] == 1
    assert db.jobs.claim("other") is None, "the job is leased"
    time.sleep(1.2)

    # Another claims it after the lease, puts its files where the lease says, finalizes.
    lease = db.jobs.claim("survivor")
    assert lease["attempt"] == 2
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"trained by survivor")
    assert db.artifacts.put(lease["artifact_root"], lease["segments"], [weights]) == lease["artifact_prefix"]
    assert db.jobs.heartbeat(lease) > 0
    prefix = db.jobs.finalize(lease)
    assert db.models.describe("ranker", "v7").column("version").to_pylist() == ["v7"]
    local = db.artifacts.fetch(prefix)
    assert open(os.path.join(local, "weights.bin"), "rb").read() == b"trained by survivor"

    # The dead worker wakes up: its lease is gone, nothing is finalized twice.
    with pytest.raises(jammi.Error):
        db.jobs.finalize(doomed)
    assert db.jobs.list().column("state").to_pylist() == ["succeeded"]
