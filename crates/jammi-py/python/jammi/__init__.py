"""jammi-db embedded in Python: the whole engine in-process, answers as Arrow.

    >>> import jammi
    >>> db = jammi.connect("./.jammi")
    >>> db.sql("SELECT 1 AS one").to_pylist()
    [{'one': 1}]

Every call runs in the engine with the GIL released; Ctrl-C interrupts a long one. Errors
are typed: :class:`NotFound`, :class:`InvalidArgument`, :class:`Conflict`,
:class:`PermissionDenied`, :class:`Unavailable`, :class:`Timeout`, :class:`InternalError`,
all subclasses of :class:`Error`. See docs/python.md.
"""

from __future__ import annotations

import array
import contextlib
import os
import tempfile
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import pyarrow as pa
import pyarrow.parquet as pq

from ._jammi import (  # noqa: F401  (re-exported)
    Conflict,
    Error,
    InternalError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Timeout,
    Unavailable,
    __version__,
)
from ._jammi import connect as _connect
from ._jammi import connect_remote as _connect_remote

__all__ = [
    "connect",
    "Database",
    "RemoteDatabase",
    "Subscription",
    "Error",
    "NotFound",
    "InvalidArgument",
    "Conflict",
    "PermissionDenied",
    "Unavailable",
    "Timeout",
    "InternalError",
    "__version__",
]

TableLike = Union[pa.Table, "pandas.DataFrame", "polars.DataFrame", str, os.PathLike]  # noqa: F821


def connect(path: Union[str, os.PathLike] = ".jammi", tenant: Optional[str] = None, *, token: Optional[str] = None) -> Union["Database", "RemoteDatabase"]:
    """Open the jammi-db in data directory ``path`` (created if missing), as ``tenant`` (a
    UUID: its own plus shared rows and tables) or as the operator (``None``).

    The directory's ``jammi.toml``, ``JAMMI_CONFIG`` and ``JAMMI_*`` variables apply as for
    the ``jammi`` CLI, so a deployment's catalog and storage are reached the same way.

    ``connect("grpc://host:port", token=...)`` (or ``grpc+tls://``) talks to a ``jammi
    serve`` through Arrow Flight SQL instead: the token decides the tenant.
    """
    target = os.fspath(path)
    if target.startswith(("grpc://", "grpc+tls://")):
        if tenant is not None:
            raise InvalidArgument("over a server connection the token decides the tenant: leave tenant unset")
        return RemoteDatabase(_connect_remote(target, token))
    if token is not None:
        raise InvalidArgument("token is for server connections (grpc://HOST:PORT)")
    if "://" in target:
        raise InvalidArgument(f"{target!r}: connect takes a data directory or grpc://HOST:PORT (grpc+tls:// with TLS)")
    return Database(_connect(target, tenant))


def _as_arrow(data: TableLike) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "to_arrow"):  # polars
        return data.to_arrow()
    if type(data).__module__.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise InvalidArgument(f"expected a pyarrow Table, a pandas or polars DataFrame, or a path; got {type(data).__name__}")


@contextlib.contextmanager
def _as_path(data: TableLike) -> Iterator[str]:
    """A path the engine can read ``data`` from: the path itself, or a temporary Parquet file."""
    if isinstance(data, (str, os.PathLike)):
        yield os.fspath(data)
        return
    table = _as_arrow(data)
    with tempfile.TemporaryDirectory(prefix="jammi-") as tmp:
        path = os.path.join(tmp, "data.parquet")
        pq.write_table(table, path)
        yield path


def _parameters(params: Optional[Sequence[Any]]) -> Optional[pa.RecordBatch]:
    if params is None:
        return None
    if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
        raise InvalidArgument("params is a list of values for $1, $2, …")
    return pa.RecordBatch.from_arrays([pa.array([v]) for v in params], names=[f"p{i + 1}" for i in range(len(params))])


class Sources:
    """Named sources: files, directories, object-store prefixes, live databases."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def add(self, name: str, url: str, *, tenant_column: Optional[str] = None, format: Optional[str] = None, **options: str) -> pa.Table:
        """Register ``url`` as source ``name`` (``name.public.TABLE`` in SQL). Keyword
        options are format and storage options (``delimiter=';'``, ``endpoint=...``)."""
        return self._native.source_add(name, url, {k: str(v) for k, v in options.items()}, tenant_column, format)

    def list(self) -> pa.Table:
        """The sources this handle sees (secrets masked)."""
        return self._native.source_list()

    def remove(self, name: str) -> None:
        """Unregister ``name`` (its data is not touched)."""
        self._native.source_remove(name)


class Vectors:
    """Vector tables: import, append, delete, search."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def import_(
        self,
        name: str,
        data: TableLike,
        *,
        id_column: str = "id",
        vector_column: str = "embedding",
        metric: Optional[str] = None,
        precision: Optional[str] = None,
        text_columns: Union[str, Sequence[str], None] = None,
        m: Optional[int] = None,
        ef_construction: Optional[int] = None,
    ) -> pa.Table:
        """Create vector table ``name`` from ``data`` (a pyarrow Table, pandas or polars
        DataFrame, or a path/URL the engine reads). ``metric``: cosine (default), l2, ip;
        ``precision``: int8, f16, f32 (default: the metric's); ``text_columns``: payload
        columns to index for full-text and hybrid search (``"description"``,
        ``["title", "tag:raw"]``); ``m`` / ``ef_construction``: the HNSW graph's."""
        columns = [text_columns] if isinstance(text_columns, str) else list(text_columns or [])
        with _as_path(data) as path:
            return self._native.vectors_import(name, path, id_column, vector_column, metric, precision, columns, m, ef_construction)

    def append(self, name: str, data: TableLike, *, id_column: str = "id", vector_column: str = "embedding") -> int:
        """Add rows to ``name``; the number of rows added."""
        with _as_path(data) as path:
            return self._native.vectors_append(name, path, id_column, vector_column)

    def delete(self, name: str, ids: Sequence[Any]) -> int:
        """Delete rows by id; the number deleted."""
        return self._native.vectors_delete(name, [str(i) for i in ids])

    def list(self) -> pa.Table:
        return self._native.vectors_list()

    def drop(self, name: str) -> None:
        self._native.vectors_drop(name)

    def search(
        self,
        name: str,
        query: Any = None,
        k: int = 10,
        *,
        text: Optional[str] = None,
        mode: Optional[str] = None,
        filter: Optional[str] = None,
        ef: Optional[int] = None,
        exact: bool = False,
        fusion: Union[str, Mapping[str, Any], None] = None,
    ) -> pa.Table:
        """The ``k`` best rows of ``name`` for ``query``: one vector (a list or 1-d numpy
        array), several (a 2-d numpy array or a list of lists: one table, numbered by a
        ``query`` column), or text. Text searches the table's full-text index where it has
        one, otherwise it is embedded with the table's model; a vector and ``text=`` together
        are a hybrid search. ``mode`` ("vector", "text", "hybrid") overrides that choice;
        ``fusion`` sets hybrid fusion (``{"fusion": "rrf", "rrf_k": 60}`` or
        ``{"fusion": "weighted", "weights": "0.7:0.3"}``). ``filter`` is a SQL condition
        on payload columns."""
        vector, dims, text = _search_input(query, text)
        return self._native.vectors_search(name, k, vector, dims, text, mode, filter, ef, exact, _fusion_text(fusion))


def _search_input(query: Any, text: Optional[str]) -> tuple:
    """``(the query vectors as packed native float32 or None, dimensions, text or None)``."""
    if isinstance(query, str):
        if text is not None:
            raise InvalidArgument("give the text once: as the query or as text=, not both")
        return None, 0, query
    if query is None:
        if text is None:
            raise InvalidArgument("search takes a query: a vector, several, or text")
        return None, 0, text
    packed, dims = _packed_vectors(query)
    return packed, dims, text


def _packed_vectors(query: Any) -> tuple:
    """One query vector or several, equally long, as native float32 bytes and their
    dimensions. A numpy array crosses as one buffer: no Python object per value."""
    shape = getattr(query, "shape", None)
    if shape is not None and hasattr(query, "astype") and hasattr(query, "tobytes"):
        if len(shape) not in (1, 2):
            raise InvalidArgument(f"a query array has 1 or 2 dimensions, not {len(shape)}")
        if 0 in shape:
            raise InvalidArgument("a query vector has at least one value")
        try:
            values = query.astype("float32", copy=False)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"a query vector holds numbers: {exc}") from None
        return values.tobytes(order="C"), shape[-1]
    rows = _vector_rows(query)
    try:
        packed = array.array("f", [float(x) for row in rows for x in row])
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgument(f"a query vector holds numbers: {exc}") from None
    return packed.tobytes(), len(rows[0])


def _unpacked_vectors(packed: Optional[bytes], dims: int) -> list:
    """The vectors of :func:`_packed_vectors` as lists of floats."""
    if not packed:
        return []
    values = array.array("f")
    values.frombytes(packed)
    return [values[i : i + dims].tolist() for i in range(0, len(values), dims)]


def _fusion_text(fusion: Union[str, Mapping[str, Any], None]) -> Optional[str]:
    if fusion is None or isinstance(fusion, str):
        return fusion
    return ", ".join(f"{key} = {value}" for key, value in fusion.items())


def _vector_rows(query: Any) -> list:
    """``query`` as a non-empty list of equally long vectors."""
    shape = getattr(query, "shape", None)
    if shape is not None:
        if len(shape) == 1:
            rows = [query.tolist()]
        elif len(shape) == 2:
            rows = query.tolist()
        else:
            raise InvalidArgument(f"a query array has 1 or 2 dimensions, not {len(shape)}")
    elif isinstance(query, Sequence) and query and isinstance(query[0], Sequence):
        rows = [list(r) for r in query]
    elif isinstance(query, Sequence):
        rows = [list(query)]
    else:
        raise InvalidArgument(f"a query is a vector, a list of vectors or text; got {type(query).__name__}")
    if not rows or not rows[0]:
        raise InvalidArgument("a query vector has at least one value")
    if any(len(r) != len(rows[0]) for r in rows):
        raise InvalidArgument("every query vector must have the same number of dimensions")
    return rows


class Subscription:
    """Events of a topic, batch by batch (``pyarrow.RecordBatch`` with ``_offset`` and
    ``_published_at`` columns). Iterate it (``for batch in sub``) or ``async for`` it; each
    batch is acknowledged when the next one is asked for, so a consumer group delivers an
    event again only if its member died or gave up before finishing it. Leaving the loop
    (``break``, an exception) and :meth:`close` hand unacknowledged events back to the
    group at once."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self._unacked: Optional[pa.RecordBatch] = None

    @property
    def member(self) -> Optional[str]:
        """This consumer-group member's id (None outside a group)."""
        return self._native.member

    def _ack_previous(self) -> None:
        if self._unacked is not None:
            self._native.ack(self._unacked)
            self._unacked = None

    def __iter__(self) -> "Subscription":
        return self

    def __next__(self) -> pa.RecordBatch:
        self._ack_previous()
        batch = self._native.next_batch()
        if batch is None:
            raise StopIteration
        self._unacked = batch
        return batch

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> pa.RecordBatch:
        import asyncio

        self._ack_previous()
        batch = await asyncio.to_thread(self._native.next_batch)
        if batch is None:
            raise StopAsyncIteration
        self._unacked = batch
        return batch

    def close(self) -> None:
        """Stop; events claimed but not acknowledged go back to the group."""
        self._unacked = None
        self._native.close()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._native.close()
        except Exception:
            pass


_TOPIC_TYPES = {
    pa.bool_(): "bool",
    pa.int16(): "int16",
    pa.int32(): "int32",
    pa.int64(): "int64",
    pa.float32(): "float32",
    pa.float64(): "float64",
    pa.string(): "string",
    pa.large_string(): "string",
    pa.date32(): "date",
}


def _schema_text(schema: Union[str, Mapping[str, str], pa.Schema]) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, pa.Schema):
        parts = []
        for field in schema:
            kind = "timestamp" if pa.types.is_timestamp(field.type) else _TOPIC_TYPES.get(field.type)
            if kind is None:
                raise InvalidArgument(f"column {field.name!r}: {field.type} is not a topic type (bool, int16/32/64, float32/64, string, json, date, timestamp)")
            parts.append(f"{field.name}:{kind}" + (":nullable" if field.nullable else ""))
        return ",".join(parts)
    return ",".join(f"{name}:{kind}" for name, kind in schema.items())


class Topics:
    """Topics: typed events in a durable log (``topics.public.NAME`` in SQL)."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def create(self, name: str, schema: Union[str, Mapping[str, str], pa.Schema, None] = None, *, from_table: Optional[str] = None, max_age_seconds: Optional[int] = None, max_events: Optional[int] = None) -> pa.Table:
        """Create topic ``name``: columns as ``"id:int64,label:string:nullable"``, a
        ``{column: type}`` dict or a ``pyarrow.Schema``; or the change feed of mutable
        table ``from_table``."""
        text = None if schema is None else _schema_text(schema)
        return self._native.topic_create(name, text, from_table, max_age_seconds, max_events)

    def list(self) -> pa.Table:
        return self._native.topic_list()

    def drop(self, name: str) -> None:
        self._native.topic_drop(name)

    def publish(self, name: str, rows: Any) -> dict:
        """Publish rows — a list of dicts, a pyarrow Table/RecordBatch, or a pandas/polars
        DataFrame — all or none; returns ``{"first_offset": …, "count": …}``."""
        if isinstance(rows, dict):
            rows = [rows]
        if isinstance(rows, list):
            import json

            first, count = self._native.topic_publish_json(name, "\n".join(json.dumps(r, default=str) for r in rows))
        else:
            # One batch: a publish is all or none.
            table = _as_arrow(rows).combine_chunks()
            batches = table.to_batches()
            batch = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
            first, count = self._native.topic_publish(name, batch)
        return {"first_offset": first, "count": count}

    def subscribe(self, name: str, *, from_offset: Optional[int] = None, from_beginning: bool = False, group: Optional[str] = None, filter: Optional[str] = None, ack_timeout_seconds: int = 30) -> Subscription:
        """Subscribe to ``name``: live events by default, or from an offset / the
        beginning; as a member of consumer ``group`` (each event to one member); only
        events matching the SQL condition ``filter``."""
        return Subscription(self._native.topic_subscribe(name, from_offset, from_beginning, group, filter, ack_timeout_seconds))


class Artifacts:
    """Artifact bundles on object storage: files stored together under one prefix,
    verified by a manifest of SHA-256 digests."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def put(self, root: str, segments: Union[str, Sequence[str]], files: Sequence[Union[str, os.PathLike]], **options: str) -> str:
        """Store ``files`` as one bundle under ``root`` / ``segments`` (``"a/b"`` or a
        list); returns the bundle's prefix URL. Options: storage options (``endpoint=…``)."""
        parts = segments.split("/") if isinstance(segments, str) else list(segments)
        return self._native.artifact_put(root, parts, [os.fspath(f) for f in files], {k: str(v) for k, v in options.items()})

    def fetch(self, prefix: str, **options: str) -> str:
        """Download (verified; cached locally) the bundle at ``prefix``; the local directory."""
        return os.fspath(self._native.artifact_fetch(prefix, {k: str(v) for k, v in options.items()}))

    def rm(self, prefix: str, **options: str) -> None:
        self._native.artifact_rm(prefix, {k: str(v) for k, v in options.items()})


class Models:
    """The model registry: versions, aliases, files in the artifact store."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def register(self, name: str, version: str, *, task: str, dimensions: Optional[int] = None, metadata: Optional[Mapping[str, Any]] = None, from_dir: Optional[Union[str, os.PathLike]] = None) -> pa.Table:
        """Register ``name``/``version``; with ``from_dir``, its files are stored in the
        artifact store (an embedding model registered this way embeds text in the engine)."""
        import json

        return self._native.model_register(name, version, task, dimensions, json.dumps(dict(metadata or {})), None if from_dir is None else os.fspath(from_dir))

    def list(self) -> pa.Table:
        return self._native.model_list()

    def describe(self, name: str, version_or_alias: str) -> pa.Table:
        return self._native.model_describe(name, version_or_alias)

    def alias(self, name: str, alias: str, version: str) -> None:
        """Point ``name@alias`` at ``version``."""
        self._native.model_alias(name, alias, version)

    def rm(self, name: str, version: str) -> None:
        self._native.model_rm(name, version)


class Lease(dict):
    """A claimed job: ``job_id``, ``attempt``, ``token``, ``artifact_root``, ``segments``,
    ``artifact_prefix`` (where this attempt's files go), ``expires_at_ms``, ``payload``."""


class Jobs:
    """The training-job queue: enqueue, and the worker side (claim, heartbeat, fail,
    finalize). Each job finalizes at most once; a worker that dies loses its lease and the
    job is claimed again."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def enqueue(self, model: str, version: str, artifact_root: str, *, priority: int = 0, max_attempts: int = 3, payload: Optional[Mapping[str, Any]] = None) -> pa.Table:
        import json

        return self._native.job_enqueue(model, version, artifact_root, priority, max_attempts, json.dumps(dict(payload or {})))

    def list(self) -> pa.Table:
        return self._native.job_list()

    def claim(self, worker: str, *, lease_seconds: int = 30) -> Optional[Lease]:
        """The next job for ``worker``, or None when there is none."""
        import json

        text = self._native.job_claim(worker, lease_seconds)
        return None if text is None else Lease(json.loads(text))

    def heartbeat(self, lease: Mapping[str, Any], *, lease_seconds: int = 30) -> int:
        """Extend the lease; its new expiry (ms). Raises Conflict when it was lost."""
        return self._native.job_heartbeat(lease["job_id"], lease["token"], lease_seconds)

    def fail(self, lease: Mapping[str, Any], error: str, **options: str) -> str:
        """Give the attempt up; the job's state after (queued again, or failed)."""
        return self._native.job_fail(lease["job_id"], lease["token"], error, {k: str(v) for k, v in options.items()})

    def finalize(self, lease: Mapping[str, Any], **options: str) -> str:
        """Verify the attempt's artifact (put under ``lease["artifact_prefix"]``) and make
        it the job's model version; its prefix."""
        return self._native.job_finalize(lease["job_id"], lease["token"], {k: str(v) for k, v in options.items()})


class Database:
    """An open jammi-db. Use :func:`connect`."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self.sources = Sources(native)
        self.vectors = Vectors(native)
        self.topics = Topics(native)
        self.artifacts = Artifacts(native)
        self.models = Models(native)
        self.jobs = Jobs(native)

    @property
    def tenant(self) -> Optional[str]:
        """The tenant this handle acts as, or None for the operator."""
        return self._native.tenant

    def as_tenant(self, tenant: Optional[str]) -> "Database":
        """The same database seen as ``tenant`` (or the operator for ``None``)."""
        return Database(self._native.as_tenant(tenant))

    def sql(self, query: str, params: Optional[Sequence[Any]] = None) -> pa.Table:
        """Run SQL and return its rows as a ``pyarrow.Table`` (``.to_pandas()``,
        ``polars.from_arrow(...)``). ``params`` fill ``$1, $2, …``. Several statements
        separated by ``;`` run in order; the last one's rows are returned."""
        return self._native.sql(query, _parameters(params))

    def sql_reader(self, query: str) -> pa.RecordBatchReader:
        """Run SQL and stream its rows batch by batch (a ``pyarrow.RecordBatchReader``,
        which is also an Arrow PyCapsule stream)."""
        return self._native.sql_reader(query)

    @contextlib.contextmanager
    def transaction(self) -> Iterator["Database"]:
        """``with db.transaction():`` — BEGIN; COMMIT when the block ends, ROLLBACK if it
        raises. Mutable-table statements inside see their own writes."""
        self._native.sql("BEGIN", None)
        try:
            yield self
        except BaseException:
            self._native.sql("ROLLBACK", None)
            raise
        self._native.sql("COMMIT", None)

    def close(self) -> None:
        """Close the catalog's connections."""
        self._native.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_REMOTE_METHODS = "sql(), sql_reader(), vectors.search() and vectors.delete()"


class _InProcessOnly:
    """A namespace of :class:`Database` over a server connection: its methods exist, and
    each says it runs only where the data directory is. A server does not let a token
    holder register sources, write artifacts or models, or take jobs, because those reach
    the server's own files and credentials."""

    def __init__(self, name: str, local: type) -> None:
        self._name = name
        self._local = local

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_") or not callable(getattr(self._local, attr, None)):
            raise AttributeError(f"{self._local.__name__} has no method {attr!r}")

        def refused(*args: Any, **kwargs: Any) -> Any:
            raise InvalidArgument(
                f"db.{self._name}.{attr}() runs in-process only (jammi.connect(path) on the server's host); "
                f"a server connection offers {_REMOTE_METHODS}"
            )

        return refused


class RemoteVectors(_InProcessOnly):
    """Vector tables on a server: ``search`` and ``delete`` through SQL
    (``vector_search(...)``, ``DELETE FROM vectors.public.NAME``); the rest in-process only."""

    def __init__(self, db: "RemoteDatabase") -> None:
        super().__init__("vectors", Vectors)
        self._db = db

    def search(
        self,
        name: str,
        query: Any = None,
        k: int = 10,
        *,
        text: Optional[str] = None,
        mode: Optional[str] = None,
        filter: Optional[str] = None,
        ef: Optional[int] = None,
        exact: bool = False,
        fusion: Union[str, Mapping[str, Any], None] = None,
    ) -> pa.Table:
        """As :meth:`Vectors.search`, through the server's search table functions:
        ``vector_search`` (vectors; text embedded with the table's model),
        ``text_search`` (``mode="text"``) and ``hybrid_search`` (a vector and text, or
        ``mode="hybrid"``). Several vectors are searched one by one and numbered by a
        ``query`` column. Text alone is embedded unless ``mode="text"`` (in-process, a
        table with a full-text index searches it by default). ``exact`` is in-process only."""
        if exact:
            raise InvalidArgument("exact=True is in-process only; over a server, raise ef for a more thorough search")
        for what, value in (("k", k), ("ef", ef)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidArgument(f"{what} is a positive whole number, not {value!r}")
        packed, dims, text = _search_input(query, text)
        vectors = _unpacked_vectors(packed, dims)
        mode = mode or ("hybrid" if vectors and text is not None else "vector")
        table, where = _sql_string(name), pa.array([filter], pa.string())
        if mode not in ("vector", "text", "hybrid"):
            raise InvalidArgument(f"mode '{mode}' is not a search mode; use vector, text or hybrid")
        if len(vectors) > 1 and (mode != "vector" or text is not None):
            raise InvalidArgument("several query vectors are searched in vector mode only; give one vector (and text) for a hybrid search")
        if mode != "vector" and text is None:
            raise InvalidArgument(f"a {mode} search needs text (text=...)")
        if fusion is not None and mode != "hybrid":
            raise InvalidArgument("fusion applies to hybrid search only")
        as_vector = lambda v: pa.array([v], pa.list_(pa.float32()))  # noqa: E731
        if mode == "text":
            return self._run(f"SELECT * FROM text_search({table}, $1, {k}, $2)", [pa.array([text], pa.string()), where])
        if mode == "hybrid":
            second = as_vector(vectors[0]) if vectors else pa.array([None], pa.string())
            options = _sql_string(_fusion_text(fusion) or "")
            return self._run(f"SELECT * FROM hybrid_search({table}, $1, $3, {k}, $2, {options})", [pa.array([text], pa.string()), where, second])
        call = f"SELECT * FROM vector_search({table}, $1, {k}, $2" + (f", {ef})" if ef is not None else ")")
        if not vectors:
            return self._run(call, [pa.array([text], pa.string()), where])
        answers = [self._run(call, [as_vector(v), where]) for v in vectors]
        if len(answers) == 1:
            return answers[0]
        numbered = [a.add_column(0, pa.field("query", pa.uint64(), nullable=False), pa.array([i] * a.num_rows, pa.uint64())) for i, a in enumerate(answers)]
        return pa.concat_tables(numbered)

    def _run(self, query: str, values: Sequence[pa.Array]) -> pa.Table:
        return self._db._native.sql(query, pa.RecordBatch.from_arrays(list(values), names=[f"p{i + 1}" for i in range(len(values))]))

    def delete(self, name: str, ids: Sequence[Any]) -> int:
        """Delete rows by id; the number deleted."""
        ids = list(ids)
        if not ids:
            return 0
        marks = ", ".join(f"${i + 1}" for i in range(len(ids)))
        answer = self._db.sql(f"DELETE FROM vectors.public.{_sql_ident(name)} WHERE id IN ({marks})", ids)
        return int(answer.column(0)[0].as_py()) if answer.num_rows else 0


class RemoteDatabase:
    """A ``jammi serve`` reached through Arrow Flight SQL (``connect("grpc://…")``): SQL
    with parameters and Arrow answers, the same typed errors, the server's token deciding
    the tenant. ``vectors.search`` and ``vectors.delete`` work as in-process; the other
    namespaces' methods exist and refuse (see :class:`_InProcessOnly`)."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self.vectors = RemoteVectors(self)
        self.sources = _InProcessOnly("sources", Sources)
        self.topics = _InProcessOnly("topics", Topics)
        self.artifacts = _InProcessOnly("artifacts", Artifacts)
        self.models = _InProcessOnly("models", Models)
        self.jobs = _InProcessOnly("jobs", Jobs)

    def sql(self, query: str, params: Optional[Sequence[Any]] = None) -> pa.Table:
        """Run one SQL statement on the server; its rows as a ``pyarrow.Table``. ``params``
        fill ``$1, $2, …`` (sent as a Flight SQL prepared statement's parameters)."""
        return self._native.sql(query, _parameters(params))

    def sql_reader(self, query: str) -> pa.RecordBatchReader:
        """Run SQL on the server; its rows as a ``pyarrow.RecordBatchReader``."""
        table = self.sql(query)
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())

    def transaction(self) -> Any:
        """In-process only: a Flight SQL connection carries no transaction here."""
        raise InvalidArgument(f"transaction() is in-process only; a server connection offers {_REMOTE_METHODS}")

    def close(self) -> None:
        """Nothing to release beyond the connection, which closes with the object."""

    def __enter__(self) -> "RemoteDatabase":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
