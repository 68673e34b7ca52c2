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

__all__ = [
    "connect",
    "Database",
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


def connect(path: Union[str, os.PathLike] = ".jammi", tenant: Optional[str] = None) -> "Database":
    """Open the jammi-db in data directory ``path`` (created if missing), as ``tenant`` (a
    UUID: its own plus shared rows and tables) or as the operator (``None``).

    The directory's ``jammi.toml``, ``JAMMI_CONFIG`` and ``JAMMI_*`` variables apply as for
    the ``jammi`` CLI, so a deployment's catalog and storage are reached the same way.
    """
    return Database(_connect(os.fspath(path), tenant))


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

    def import_(self, name: str, data: TableLike, *, id_column: str = "id", vector_column: str = "embedding", metric: Optional[str] = None, precision: Optional[str] = None) -> pa.Table:
        """Create vector table ``name`` from ``data`` (a pyarrow Table, pandas or polars
        DataFrame, or a path/URL the engine reads). ``metric``: cosine (default), l2, ip;
        ``precision``: int8, f16, f32 (default: the metric's)."""
        with _as_path(data) as path:
            return self._native.vectors_import(name, path, id_column, vector_column, metric, precision)

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

    def search(self, name: str, query: Any, k: int = 10, *, filter: Optional[str] = None, ef: Optional[int] = None, exact: bool = False) -> pa.Table:
        """The ``k`` nearest rows of ``name`` to ``query``: one vector (a list or 1-d numpy
        array), several (a 2-d numpy array or a list of lists: one table, numbered by a
        ``query`` column), or text (tables that embed their rows). ``filter`` is a SQL
        condition on payload columns."""
        if isinstance(query, str):
            return self._native.vectors_search(name, k, None, 0, query, filter, ef, exact)
        rows = _vector_rows(query)
        dims = len(rows[0]) if rows else 0
        if any(len(r) != dims for r in rows):
            raise InvalidArgument("every query vector must have the same number of dimensions")
        flat = [float(x) for r in rows for x in r]
        return self._native.vectors_search(name, k, flat, dims, None, filter, ef, exact)


def _vector_rows(query: Any) -> list:
    shape = getattr(query, "shape", None)
    if shape is not None:
        if len(shape) == 1:
            return [query.tolist()]
        if len(shape) == 2:
            return query.tolist()
        raise InvalidArgument(f"a query array has 1 or 2 dimensions, not {len(shape)}")
    if isinstance(query, Sequence) and query and isinstance(query[0], Sequence):
        return [list(r) for r in query]
    if isinstance(query, Sequence):
        return [list(query)]
    raise InvalidArgument(f"a query is a vector, a list of vectors or text; got {type(query).__name__}")


class Database:
    """An open jammi-db. Use :func:`connect`."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self.sources = Sources(native)
        self.vectors = Vectors(native)

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
