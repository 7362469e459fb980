"""Open a ledger by URL and read or write it: SQLite (embedded default) or PostgreSQL (many hosts).

``open_store(url)`` accepts:

* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's spelling), or a plain file
  path ending in ``.db`` / ``.sqlite`` / ``.sqlite3``. One file in WAL mode; several processes on one host may
  write to it (each write is one ``BEGIN IMMEDIATE`` transaction; the others wait up to ``busy_timeout``).
* ``postgresql://user@host:port/dbname`` (or ``postgres://``), with psycopg 3.

Bad input fails at configure time with :class:`~aicost.errors.ConfigurationError` naming the setting it came
from (``instrument(ledger=...)``, ``AICOST_LEDGER``, ``--ledger``): a malformed URL, a SQLite directory that does
not exist, a ledger file a reader expected, a PostgreSQL database that does not exist. A schema written by a newer
aicost is refused with its version (:class:`LedgerSchemaError`). A server that is merely down is
:class:`LedgerUnavailable`: the background writer retries it (with a spill file) rather than failing the app.

Writes are idempotent by ``span_id`` (and ``run_id`` for runs): rows already stored are skipped *before* the
rollups are updated, inside the same transaction, so a replayed batch never double counts. On PostgreSQL the
write transaction takes an advisory lock, which makes "skip what exists, then insert" safe across hosts.
"""

from __future__ import annotations

import json
import operator
import os
import re
import sqlite3
import threading
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..errors import AicostError, ConfigurationError
from ..pricing.cost import MONEY
from . import schema
from .row import ATTRIBUTION_FIELDS, TOKEN_FIELDS, FeatureRun, LedgerRow, decimal_text
from .rollup import aggregate
from .schema import MEASURES, MONEY_MEASURES, ROW_COLUMNS, RUN_COLUMNS, SCHEMA_VERSION

__all__ = [
    "LedgerStore",
    "LedgerSchemaError",
    "LedgerUnavailable",
    "open_store",
    "DEFAULT_SETTING",
    "FILTER_KEYS",
]

DEFAULT_SETTING = "instrument(ledger=...) / AICOST_LEDGER"
_ACCEPTED = "sqlite:///path/to/ledger.db (or a path ending in .db) or postgresql://user@host:port/dbname"
# Keys a row filter (``where``) accepts: attribution, model, provider, and tag:<name>.
FILTER_KEYS = ("team", "feature", "user", "customer", "model", "provider")
_COLUMN_OF = {"user": "user_id"}
_IN_CHUNK = 500
_tokens_of = operator.attrgetter(*TOKEN_FIELDS)
_MONEY_AT = tuple(i for i, name in enumerate(MEASURES) if name in MONEY_MEASURES)
_ADVISORY_LOCK = 0x61696C6564676572  # "ailedger": serialises ledger writers on one PostgreSQL database


class LedgerSchemaError(ConfigurationError):
    """The database holds a ledger schema this aicost cannot read (written by a newer aicost)."""


class LedgerUnavailable(AicostError):
    """The ledger database cannot be reached right now (a server down, a file locked for too long)."""


def open_store(url: str | os.PathLike[str], *, create: bool = True, setting: str = DEFAULT_SETTING) -> "LedgerStore":
    """Open the ledger at ``url``. ``create=False`` (readers: reports, exports) refuses a missing SQLite file
    instead of creating an empty ledger. ``setting`` names where the URL came from, for error messages."""
    text = os.fspath(url) if isinstance(url, os.PathLike) else url
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(f"{setting}: the ledger URL must be a non-empty string; use {_ACCEPTED}")
    text = text.strip()
    lowered = text.lower()
    if lowered.startswith("sqlite:"):
        if not lowered.startswith("sqlite:///") or len(text) <= len("sqlite:///"):
            raise ConfigurationError(f"{setting}: malformed SQLite ledger URL {text!r}; use {_ACCEPTED}")
        return SQLiteStore(Path(text[len("sqlite:///"):]), create=create, setting=setting)
    if lowered.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return PostgresStore(text.replace("postgresql+psycopg://", "postgresql://", 1), setting=setting)
    if "://" not in text and lowered.endswith((".db", ".sqlite", ".sqlite3")):
        return SQLiteStore(Path(text), create=create, setting=setting)
    raise ConfigurationError(f"{setting}: unsupported ledger URL {text!r}; use {_ACCEPTED}")


def parse_ts(value: Any) -> datetime:
    """A stored time (SQLite text or a PostgreSQL timestamp) as an aware UTC datetime."""
    return _parse_ts(value)


def _parse_ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc) if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)


class LedgerStore:
    """A ledger database. Thread-safe (one connection, one lock); each process opens its own.

    The read API (stable; reports, the FOCUS export, forecasts and dashboards use it):

    * :meth:`rows` -- raw rows in ``[start, end)``, oldest first, optionally filtered.
    * :meth:`runs` -- finished feature runs in ``[start, end)``.
    * :meth:`rollup` -- pre-summed measures per bucket for one dimension (what :func:`aicost.ledger.query.spend`
      reads; use that function rather than this one).
    * :meth:`time_range` -- the first and last row's time, or None for an empty ledger.
    """

    dialect = ""
    url = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    # -- dialect hooks ----------------------------------------------------------------------------------------
    def _ts(self, value: datetime) -> Any:
        raise NotImplementedError

    def _money(self, value: Decimal | None) -> Any:
        raise NotImplementedError

    def _json(self, value: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def _bool(self, value: bool) -> Any:
        return value

    def _sql(self, text: str) -> str:
        return text

    def _tag_condition(self) -> str:
        raise NotImplementedError

    def _load_json(self, value: Any) -> dict:
        if value is None:
            return {}
        return value if isinstance(value, dict) else json.loads(value)

    # -- writing ----------------------------------------------------------------------------------------------
    def row_params(self, row: LedgerRow) -> tuple:
        """One row as the ``aicost_ledger`` columns (:data:`~aicost.ledger.schema.ROW_COLUMNS`)."""
        return (
            row.span_id, row.kind, self._ts(row.time), row.trace_id, row.provider, row.operation, row.endpoint,
            row.request_model, row.response_model, row.model, row.service_tier,
            *_tokens_of(row),
            row.audio_seconds, self._bool(row.estimated), self._money(row.cost),
            _parts_json(row.cost_parts), self._bool(row.price_known),
            row.price_source, row.price_model, self._money(row.saved_cost), self._money(row.stopped_cost),
            row.cache_name, row.budget, row.team, row.feature, row.user, row.customer, self._json(row.tags),
            row.run_id, row.outcome, row.error_type, row.duration_s, row.vendor_project, row.api_key_fingerprint,
        )

    def run_params(self, run: FeatureRun) -> tuple:
        return (run.run_id, self._ts(run.time), run.feature, run.outcome, run.team, run.user, run.customer,
                self._json(run.tags), run.calls, self._money(run.cost), run.trace_id, run.duration_s)

    def write(self, rows: Sequence[LedgerRow], runs: Sequence[FeatureRun] = ()) -> int:
        """Store ``rows`` and ``runs`` in one transaction and update the rollups; return how many rows were new.

        Rows (runs) whose ``span_id`` (``run_id``) is already stored, or repeated in the batch, are skipped.
        Raises :class:`LedgerUnavailable` when the database cannot be reached (nothing is then written).
        """
        if not rows and not runs:
            return 0
        with self._lock:
            try:
                return self._write(rows, runs)
            except (sqlite3.OperationalError, OSError) as exc:
                raise LedgerUnavailable(f"ledger {self.url}: {exc}") from exc
            except Exception as exc:
                if _is_connection_error(exc):
                    raise LedgerUnavailable(f"ledger {self.url}: {exc}") from exc
                raise

    def _write(self, rows: Sequence[LedgerRow], runs: Sequence[FeatureRun]) -> int:
        raise NotImplementedError

    def execute_many(self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        """Run ``(sql, [params, ...])`` statements (``?`` placeholders) in one transaction: how a feature writes
        its own tables (``aicost.pools``). Raises :class:`LedgerUnavailable` when the database cannot be
        reached (nothing is then written)."""
        with self._lock:
            try:
                self._execute_many([(self._sql(sql), params) for sql, params in statements])
            except (sqlite3.OperationalError, OSError) as exc:
                raise LedgerUnavailable(f"ledger {self.url}: {exc}") from exc
            except Exception as exc:
                if _is_connection_error(exc):
                    raise LedgerUnavailable(f"ledger {self.url}: {exc}") from exc
                raise

    def _execute_many(self, statements: list[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        raise NotImplementedError

    def _fresh(self, cur: Any, table: str, key: str, items: Sequence[Any]) -> list[Any]:
        """The items whose key is neither stored nor repeated earlier in the batch."""
        seen: dict[str, Any] = {}
        for item in items:
            seen.setdefault(getattr(item, key), item)
        keys = list(seen)
        for i in range(0, len(keys), _IN_CHUNK):
            chunk = keys[i:i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            cur.execute(self._sql(f"SELECT {key} FROM {table} WHERE {key} IN ({marks})"), chunk)
            for (found,) in cur.fetchall():
                seen.pop(found, None)
        return list(seen.values())

    def _rollup_params(self, rows: Sequence[LedgerRow], runs: Sequence[FeatureRun]) -> list[tuple]:
        params = []
        money = self._money
        ts = self._ts
        buckets: dict[datetime, Any] = {}
        for (grain, bucket, dim, value), m in aggregate(rows, runs).items():
            for i in _MONEY_AT:
                m[i] = money(m[i])
            at = buckets.get(bucket)
            if at is None:
                at = buckets[bucket] = ts(bucket)
            params.append((grain, at, dim, value, *m))
        return params

    def _outcomes(self, cur: Any, rows: Sequence[LedgerRow], runs: Sequence[FeatureRun]) -> list[tuple[str, str]]:
        """(outcome, run_id) to write on call rows: new runs, and finished runs that new rows belong to."""
        outcomes = {run.run_id: run.outcome for run in runs}
        pending = list({r.run_id for r in rows if r.run_id is not None and r.run_id not in outcomes})
        for i in range(0, len(pending), _IN_CHUNK):
            chunk = pending[i:i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            cur.execute(self._sql(f"SELECT run_id, outcome FROM aicost_runs WHERE run_id IN ({marks})"), chunk)
            outcomes.update(dict(cur.fetchall()))
        return [(outcome, run_id) for run_id, outcome in outcomes.items()]

    # -- reading ----------------------------------------------------------------------------------------------
    def _where(self, start: datetime, end: datetime, where: Mapping[str, str] | None,
               kinds: Iterable[str] | None = None, runs: bool = False) -> tuple[str, list]:
        clauses = ["ts >= ?", "ts < ?"]
        params: list[Any] = [self._ts(start), self._ts(end)]
        if kinds is not None:
            kinds = list(kinds)
            clauses.append(f"kind IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
        for key, value in (where or {}).items():
            if key.startswith("tag:"):
                clauses.append(self._tag_condition())
                params.extend([key[4:], value])
            elif key in FILTER_KEYS:
                if runs and key in ("model", "provider"):
                    clauses.append("1 = 0")  # a run has no single model or provider
                    continue
                clauses.append(f"{_COLUMN_OF.get(key, key)} = ?")
                params.append(value)
            else:
                raise ValueError(f"unknown filter key {key!r}; use one of {', '.join(FILTER_KEYS)}, tag:<name>")
        return " AND ".join(clauses), params

    def _cursor(self) -> Any:
        raise NotImplementedError

    def rows(self, start: datetime, end: datetime, *, where: Mapping[str, str] | None = None,
             kinds: Iterable[str] | None = None) -> Iterator[LedgerRow]:
        """Rows with ``start <= time < end``, oldest first. ``where``: {team|feature|user|customer|model|provider|
        tag:<name>: value}. ``kinds``: a subset of (call, cache_hit, refusal). Streams: memory stays flat."""
        condition, params = self._where(start, end, where, kinds)
        sql = self._sql(f"SELECT {', '.join(ROW_COLUMNS)} FROM aicost_ledger WHERE {condition} ORDER BY ts, span_id")
        for values in self._stream(sql, params):
            yield self._row(values)

    def measure_rows(self, start: datetime, end: datetime, *, where: Mapping[str, str] | None = None
                     ) -> Iterator[tuple]:
        """The lean read behind reports' raw-row sums: per row (kind, cost, estimated, error_type, tokens tuple,
        saved_cost, stopped_cost, ts, team, feature, user, customer, model, provider, tags), money as Decimal,
        ``ts`` as stored (parse with :func:`parse_ts`), ``tags`` as stored (JSON). No order, no LedgerRow."""
        condition, params = self._where(start, end, where)
        n = len(TOKEN_FIELDS)
        sql = self._sql(f"SELECT kind, cost, estimated, error_type, {', '.join(TOKEN_FIELDS)}, saved_cost, "
                        "stopped_cost, ts, team, feature, user_id, customer, model, provider, tags "
                        f"FROM aicost_ledger WHERE {condition}")
        for v in self._stream(sql, params):
            cost, saved, stopped = v[1], v[4 + n], v[5 + n]
            yield (v[0], None if cost is None else Decimal(cost), v[2], v[3], v[4:4 + n],
                   None if saved is None else Decimal(saved), None if stopped is None else Decimal(stopped),
                   *v[6 + n:])

    def runs(self, start: datetime, end: datetime, *, where: Mapping[str, str] | None = None) -> Iterator[FeatureRun]:
        """Feature runs that ended in ``[start, end)``, oldest first."""
        condition, params = self._where(start, end, where, runs=True)
        sql = self._sql(f"SELECT {', '.join(RUN_COLUMNS)} FROM aicost_runs WHERE {condition} ORDER BY ts, run_id")
        for v in self._stream(sql, params):
            yield FeatureRun(run_id=v[0], time=_parse_ts(v[1]), feature=v[2], outcome=v[3], team=v[4], user=v[5],
                             customer=v[6], tags=self._load_json(v[7]), calls=int(v[8]), cost=Decimal(v[9]),
                             trace_id=v[10], duration_s=v[11])

    def rollup(self, grain: str, start: datetime, end: datetime, dim: str, value: str | None = None,
               value_prefix: str | None = None) -> Iterator[tuple[datetime, str, list]]:
        """(bucket start, value, measures) of ``aicost_rollup`` for ``grain`` buckets starting in ``[start, end)``."""
        sql = (f"SELECT bucket, value, {', '.join(MEASURES)} FROM aicost_rollup "
               "WHERE grain = ? AND dim = ? AND bucket >= ? AND bucket < ?")
        params: list[Any] = [grain, dim, self._ts(start), self._ts(end)]
        if value is not None:
            sql += " AND value = ?"
            params.append(value)
        elif value_prefix is not None:
            sql += " AND value >= ? AND value < ?"  # a prefix range: uses the primary key, unlike LIKE
            params.extend([value_prefix, value_prefix + "\U0010ffff"])
        money = [i for i, name in enumerate(MEASURES) if name in MONEY_MEASURES]
        for v in self._stream(self._sql(sql), params, named=False):
            m = list(v[2:])
            for i in money:
                m[i] = Decimal(m[i])
            yield _parse_ts(v[0]), v[1], m

    def time_range(self) -> tuple[datetime, datetime] | None:
        with self._lock:
            cur = self._cursor()
            cur.execute("SELECT MIN(ts), MAX(ts) FROM aicost_ledger")
            low, high = cur.fetchone()
        if low is None:
            return None
        return _parse_ts(low), _parse_ts(high)

    def schema_version(self) -> int:
        with self._lock:
            cur = self._cursor()
            cur.execute("SELECT MAX(version) FROM aicost_schema")
            (version,) = cur.fetchone()
        return int(version or 0)

    def _stream(self, sql: str, params: list, named: bool = True) -> Iterator[tuple]:
        raise NotImplementedError

    def _row(self, v: tuple) -> LedgerRow:
        n = len(TOKEN_FIELDS)
        tokens = dict(zip(TOKEN_FIELDS, (int(x) for x in v[11:11 + n])))
        (audio_seconds, estimated, cost, cost_parts, price_known, price_source, price_model, saved_cost,
         stopped_cost, cache_name, budget, team, feature, user, customer, tags, run_id, outcome, error_type,
         duration_s, vendor_project, api_key_fingerprint) = v[11 + n:]
        return LedgerRow(
            span_id=v[0], kind=v[1], time=_parse_ts(v[2]), trace_id=v[3], provider=v[4], operation=v[5],
            endpoint=v[6], request_model=v[7], response_model=v[8], service_tier=v[10], **tokens,
            audio_seconds=audio_seconds, estimated=bool(estimated), cost=None if cost is None else Decimal(cost),
            cost_parts={k: Decimal(x) for k, x in self._load_json(cost_parts).items()},
            price_known=bool(price_known), price_source=price_source, price_model=price_model,
            saved_cost=None if saved_cost is None else Decimal(saved_cost),
            stopped_cost=None if stopped_cost is None else Decimal(stopped_cost), cache_name=cache_name,
            budget=budget, team=team, feature=feature, user=user, customer=customer, tags=self._load_json(tags),
            run_id=run_id, outcome=outcome, error_type=error_type, duration_s=duration_s,
            vendor_project=vendor_project, api_key_fingerprint=api_key_fingerprint,
        )

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "LedgerStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


# One encoder, reused: json.dumps with options builds a new (slower, pure Python) encoder on every call.
_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _parts_json(parts: Mapping[str, Decimal]) -> str | None:
    """Cost parts as JSON text; keys are aicost's class names and values exact decimals (no escaping needed)."""
    if not parts:
        return None
    return "{" + ",".join(f'"{k}":"{decimal_text(v)}"' for k, v in sorted(parts.items())) + "}"


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


# ------------------------------------------------------------------------------------------------------- SQLite
def _dec_add(a: Any, b: Any) -> str:
    return decimal_text(MONEY.add(Decimal(a or 0), Decimal(b or 0)))  # type: ignore[return-value]


_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"


class SQLiteStore(LedgerStore):
    dialect = "sqlite"

    def __init__(self, path: Path, *, create: bool, setting: str) -> None:
        super().__init__()
        self.path = path
        self.url = f"sqlite:///{path}"
        if not create and not path.is_file():
            raise ConfigurationError(f"{setting}: no ledger at {str(path)!r} (the file does not exist)")
        if not path.parent.is_dir():
            raise ConfigurationError(
                f"{setting}: the directory of the SQLite ledger {str(path)!r} does not exist; create it or use {_ACCEPTED}")
        try:
            self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(f"{setting}: cannot open the SQLite ledger {str(path)!r}: {exc}") from exc
        self._conn.create_function("aicost_dec_add", 2, _dec_add, deterministic=True)
        self._migrate(setting)

    def _migrate(self, setting: str) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(schema.schema_table_ddl("sqlite"))
                (current,) = conn.execute("SELECT MAX(version) FROM aicost_schema").fetchone()
                current = int(current or 0)
                if current > SCHEMA_VERSION:
                    raise LedgerSchemaError(
                        f"{setting}: the ledger {str(self.path)!r} has schema version {current}, newer than this "
                        f"aicost reads (version {SCHEMA_VERSION}); upgrade aicost to use it")
                _apply(conn, "sqlite", current, self._ts(datetime.now(timezone.utc)))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(f"{setting}: {str(self.path)!r} is not a usable SQLite ledger: {exc}") from exc

    def _ts(self, value: datetime) -> str:
        if value.tzinfo is not timezone.utc:
            value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")  # = _SQLITE_TS, several times faster

    def _money(self, value: Decimal | None) -> str | None:
        return decimal_text(value)

    def _json(self, value: Mapping[str, Any]) -> str | None:
        return _JSON.encode(value) if value else None

    def _bool(self, value: bool) -> int:
        return 1 if value else 0

    def _tag_condition(self) -> str:
        return "json_extract(tags, '$.\"' || ? || '\"') = ?"

    def _cursor(self) -> Any:
        return self._conn.cursor()

    def _write(self, rows: Sequence[LedgerRow], runs: Sequence[FeatureRun]) -> int:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.cursor()
            rows = self._fresh(cur, "aicost_ledger", "span_id", rows)
            runs = self._fresh(cur, "aicost_runs", "run_id", runs)
            cur.executemany(_INSERT_ROW, [self.row_params(r) for r in rows])
            cur.executemany(_INSERT_RUN, [self.run_params(r) for r in runs])
            cur.executemany(_SET_OUTCOME, self._outcomes(cur, rows, runs))
            cur.executemany(_UPSERT_ROLLUP_SQLITE, self._rollup_params(rows, runs))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(rows)

    def _execute_many(self, statements: list[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.cursor()
            for sql, params in statements:
                cur.executemany(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _stream(self, sql: str, params: list, named: bool = True) -> Iterator[tuple]:
        # A cursor of its own, read in slices, so a long export does not hold the lock between slices' yields.
        with self._lock:
            cur = self._conn.cursor()
            cur.execute(sql, params)
        while True:
            with self._lock:
                batch = cur.fetchmany(2000)
            if not batch:
                return
            yield from batch

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _apply(conn: Any, dialect: str, current: int, now: Any, mark: str = "?") -> None:
    from .. import __version__

    for version in range(current + 1, SCHEMA_VERSION + 1):
        for statement in schema.ddl(dialect, version):
            conn.execute(statement)
        conn.execute(f"INSERT INTO aicost_schema (version, applied_at, aicost_version) VALUES ({mark}, {mark}, {mark})",
                     (version, now, __version__))


_INSERT_ROW = f"INSERT INTO aicost_ledger ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})"
_INSERT_RUN = f"INSERT INTO aicost_runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
_SET_OUTCOME = "UPDATE aicost_ledger SET outcome = ? WHERE run_id = ? AND outcome IS NULL"
_ROLLUP_COLUMNS = ("grain", "bucket", "dim", "value", *MEASURES)


def _upsert_rollup(money_add: str) -> str:
    updates = ", ".join(
        f"{m} = {money_add.format(a=f'aicost_rollup.{m}', b=f'excluded.{m}')}" if m in MONEY_MEASURES
        else f"{m} = aicost_rollup.{m} + excluded.{m}"
        for m in MEASURES
    )
    return (f"INSERT INTO aicost_rollup ({', '.join(_ROLLUP_COLUMNS)}) VALUES ({', '.join('?' * len(_ROLLUP_COLUMNS))})"
            f" ON CONFLICT (grain, dim, bucket, value) DO UPDATE SET {updates}")


# A Python function call per money column is the costly part of an upsert: skipped when nothing is added.
_UPSERT_ROLLUP_SQLITE = _upsert_rollup("CASE WHEN {b} = '0' THEN {a} ELSE aicost_dec_add({a}, {b}) END")
_UPSERT_ROLLUP_PG = _upsert_rollup("{a} + {b}").replace("?", "%s")


# --------------------------------------------------------------------------------------------------- PostgreSQL
_PG_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]*@")


class PostgresStore(LedgerStore):
    dialect = "postgresql"

    def __init__(self, url: str, *, setting: str) -> None:
        super().__init__()
        self.url = _PG_PASSWORD.sub(r"\1***@", url)  # never a password in logs or errors
        self._dsn = url
        self._setting = setting
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
        except ImportError as exc:
            raise ConfigurationError(
                f"{setting}: a PostgreSQL ledger needs psycopg 3: pip install 'aicost-otel[ledger-postgres]'") from exc
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(f"{setting}: malformed PostgreSQL ledger URL {self.url!r}: {exc}") from exc
        port = str(params.get("port") or "5432")
        if not all(p.isdigit() for p in port.split(",")):
            raise ConfigurationError(f"{setting}: malformed PostgreSQL ledger URL {self.url!r}: port {port!r} is "
                                     "not a number")
        self._conn: Any = None
        self._connect()
        self._migrate()

    def _connect(self) -> Any:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            message = str(exc)
            if "does not exist" in message or "authentication failed" in message:
                raise ConfigurationError(f"{self._setting}: cannot use the PostgreSQL ledger {self.url!r}: "
                                         f"{message.strip().splitlines()[-1]}") from exc
            raise LedgerUnavailable(f"ledger {self.url}: {message.strip()}") from exc
        return self._conn

    def _migrate(self) -> None:
        conn = self._conn
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))
            conn.execute(schema.schema_table_ddl("postgresql"))
            (current,) = conn.execute("SELECT MAX(version) FROM aicost_schema").fetchone()
            current = int(current or 0)
            if current > SCHEMA_VERSION:
                raise LedgerSchemaError(
                    f"{self._setting}: the ledger {self.url!r} has schema version {current}, newer than this aicost "
                    f"reads (version {SCHEMA_VERSION}); upgrade aicost to use it")
            _apply(conn, "postgresql", current, datetime.now(timezone.utc), mark="%s")

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def _ts(self, value: datetime) -> datetime:
        return value

    def _money(self, value: Decimal | None) -> Decimal | None:
        return value

    def _json(self, value: Mapping[str, Any]) -> str | None:
        return _JSON.encode(value) if value else None

    def _tag_condition(self) -> str:
        return "tags ->> ? = ?"

    def _cursor(self) -> Any:
        return self._connect().cursor()

    def _write(self, rows: Sequence[LedgerRow], runs: Sequence[FeatureRun]) -> int:
        conn = self._connect()
        try:
            with conn.transaction():
                cur = conn.cursor()
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))
                rows = self._fresh(cur, "aicost_ledger", "span_id", rows)
                runs = self._fresh(cur, "aicost_runs", "run_id", runs)
                if rows:
                    with cur.copy(f"COPY aicost_ledger ({', '.join(ROW_COLUMNS)}) FROM STDIN") as copy:
                        for r in rows:
                            copy.write_row(self.row_params(r))
                if runs:
                    with cur.copy(f"COPY aicost_runs ({', '.join(RUN_COLUMNS)}) FROM STDIN") as copy:
                        for run in runs:
                            copy.write_row(self.run_params(run))
                outcomes = self._outcomes(cur, rows, runs)
                if outcomes:
                    cur.executemany(self._sql(_SET_OUTCOME), outcomes)
                cur.executemany(_UPSERT_ROLLUP_PG, self._rollup_params(rows, runs))
        except Exception:
            if self._conn is not None and self._conn.broken:
                self._conn = None  # reconnect on the next write
            raise
        return len(rows)

    def _execute_many(self, statements: list[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        conn = self._connect()
        try:
            with conn.transaction():
                cur = conn.cursor()
                for sql, params in statements:
                    if params:
                        cur.executemany(sql, params)
        except Exception:
            if self._conn is not None and self._conn.broken:
                self._conn = None  # reconnect on the next write
            raise

    def _stream(self, sql: str, params: list, named: bool = True) -> Iterator[tuple]:
        import uuid

        # A server-side cursor in its own connection: an export of millions of rows streams with flat memory.
        import psycopg

        with psycopg.connect(self._dsn, connect_timeout=5) as conn:
            with conn.cursor(name=f"aicost_{uuid.uuid4().hex[:12]}") as cur:
                cur.itersize = 5000
                cur.execute(sql, params)
                yield from cur

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
