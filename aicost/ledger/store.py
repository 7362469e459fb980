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
:class:`LedgerUnavailable`: the background writer retries it (with a spill file) rather than failing the app. A
write whose data the database refuses (a value it cannot hold or sum, a constraint) is :class:`LedgerRefused`: the
same rows would fail at every retry, so the writer writes the rest of the batch without them.

Writes are idempotent by ``span_id`` (and ``run_id`` for runs): rows already stored are skipped, inside the
write transaction, and the rollups are then summed in SQL over exactly the rows this batch inserted (named by
their ids; :mod:`aicost.ledger.rollup`), so a replayed batch never double counts. On PostgreSQL the write
transaction takes an advisory lock, which makes "skip what exists, then insert" safe across hosts.
"""

from __future__ import annotations

import contextlib
import decimal
import json
import logging
import math
import operator
import os
import re
import sqlite3
import time
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import reduce
from itertools import compress, repeat
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .. import _fork, _pg, semconv
from .._log import log_once
from .._urls import redact_secrets, redact_url
from ..errors import AicostError, ConfigurationError
from ..pricing.cost import MONEY
from ..pricing.money import canonical, format_usd
from . import schema
from .days import DAY, midnight
from .row import TOKEN_FIELDS, FeatureRun, LedgerRow, decimal_text, tag_name_left_out, within_bounds
from . import pairs, rollup
from .staging import STAGE, can_stage, stage_batch
from .schema import (MEASURES, MONEY_MEASURES, ROW_COLUMNS, RUN_COLUMNS, SCHEMA_VERSION,
                     UNIT_COST_DECIMALS)

__all__ = [
    "LedgerStore",
    "LedgerRefused",
    "LedgerSchemaError",
    "LedgerUnavailable",
    "open_store",
    "DEFAULT_SETTING",
    "FILTER_KEYS",
    "key_sql",
]

DEFAULT_SETTING = "instrument(ledger=...) / AICOST_LEDGER"
_ACCEPTED = "sqlite:///path/to/ledger.db (or a path ending in .db) or postgresql://user@host:port/dbname"
# Keys a row filter (``where``) accepts: attribution, model, provider, and tag:<name>.
FILTER_KEYS = ("team", "feature", "user", "customer", "model", "provider")
_COLUMN_OF = {"user": "user_id"}
_tokens_of = operator.attrgetter(*TOKEN_FIELDS)
_run_id_of = operator.attrgetter("run_id")
_SLICE = 128  # rows encoded between two chances for the writer's other thread to take the GIL
_TOKEN_GETTERS = tuple((name, operator.attrgetter(name)) for name in TOKEN_FIELDS)
# libpq's errors for an option of the URL it cannot use, found before (or without) reaching a server: a malformed
# URL (sslmode=bogus, port 99999, keepalives=abc, hostaddr=bogus), never an outage.
_PG_BAD_OPTION = re.compile(r'invalid "?\w+"? value:|invalid port number|invalid integer value|could not match \d+ '
                            r'|could not parse network address')
# libpq settings of every ledger connection, each unless the user sets it (aicost._pg.unless_set says where).
# Connecting gives up after 5 s. A server gone silent mid-session (no RST ever comes: a dead host or route) is found
# within about 30 s, not when the kernel gives up (many minutes): by keepalives on an idle connection (10 s + 4
# probes 5 s apart), by tcp_user_timeout (ms) when data sent is not acknowledged. The server's statement_timeout
# cannot end such a wait.
_PG_DEFAULTS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                "keepalives_count": 4, "tcp_user_timeout": 30_000}
_PG_CANCEL_S = 1.0  # how long cut() waits for the server to take a cancel request
# cut(until=): how long a cancel request is given at least, past ``until`` (one on loopback takes a few ms)
_CUT_MIN_S = 0.1
_ADVISORY_LOCK = 0x61696C6564676572  # "ailedger": serialises ledger writers on one PostgreSQL database
# Rows summed into the pair cells per transaction (compact_pairs): about 1.5 s of SQLite at 30 us a row, the
# longest the summing holds the write lock (other writers' batches wait, they are not refused).
PAIR_CHUNK_ROWS = 50_000
PAIR_LAG = timedelta(minutes=2)  # an hour is summed into the pair cells once it ended this long ago
# cut(by=): a write whose time limit ends no later than this past ``by`` is left to end by itself (its limit was
# computed from that deadline a moment before it was set)
_CUT_SLACK_S = 0.5
_CUT_DETAIL = "the write was cut short: its writer is closing, its rows are spilled"


@dataclass(slots=True)
class PreparedBatch:
    """A batch made ready for its write transaction (:meth:`LedgerStore.prepare`): rows and runs (each id once),
    their encoded columns and what the dialect staged of them: on SQLite their image
    (:func:`~aicost.ledger.staging.stage_batch`), on PostgreSQL their ``COPY`` data. The part of a batch not
    stored yet (``_new_in``, a replay) has on PostgreSQL the ``COPY`` data of that part; on SQLite it keeps the
    whole batch's image, as prepared: only the copy attached to the write transaction is cut down to the part."""

    rows: list[LedgerRow]
    runs: list[FeatureRun]
    row_params: list[tuple]
    run_params: list[tuple]
    staged: Any = None
    zero: frozenset[str] = frozenset()  # token classes 0 in every row (not summed)
    units: bool = False  # the rows' money may be summed as integers (rollup.fits_units, on SQLite)
    last: datetime | None = None  # its last row's or run's time (_last_time: the cube's days before it are closed)
    first: Any = None  # its earliest row's or run's time as encoded (_first_ts): late rows for the pair cells?


def _unique(items: Sequence[Any], key: str) -> list[Any]:
    """``items`` with each ``key`` once (the first)."""
    seen: dict[str, Any] = {}
    for item in items:
        seen.setdefault(getattr(item, key), item)
    return list(seen.values()) if len(seen) < len(items) else list(items)


def _held_to_bounds(items: list[Any]) -> list[Any]:
    """``items`` within the ledger's bounds (:func:`~aicost.ledger.row.within_bounds`: the one place every row and
    run is bounded, whatever made it). Those the in-process capture made are bounded already: their mark
    (``LedgerRow._bounded``, ``FeatureRun._bounded``) read each. A run without a feature or outcome it may keep
    raises :class:`LedgerRefused` (the writer refuses it alone)."""
    if all(map(_BOUNDED, items)):
        return items
    try:
        return [within_bounds(item) for item in items]
    except ValueError as exc:
        raise LedgerRefused(str(exc)) from None


_BOUNDED = operator.attrgetter("_bounded")  # the mark aicost.ledger.capture sets on the rows and runs it made


def _last_time(rows: Sequence[LedgerRow], runs: Sequence[FeatureRun]) -> datetime | None:
    """The later of the batch's last row's and last run's times: the queue holds them in the order the calls
    ended, nearly time order, so this is the batch's latest day but for a late row or two, which only makes the
    cube's fold of a closed day wait for a later batch (:meth:`LedgerStore._close_days`). Not a scan of the batch:
    that cost ~1 k instructions per row."""
    return max((items[-1].time for items in (rows, runs) if items), default=None)


def _first_ts(row_params: Sequence[tuple], run_params: Sequence[tuple]) -> Any:
    """The earliest time of a batch's encoded rows and runs (as the dialect encodes it: text on SQLite, which sorts
    as the times do): in C, a few dozen instructions a row. Unlike :func:`_last_time`, exact: a late row must not
    be missed (:meth:`LedgerStore._add_late_pairs`)."""
    return min((min(map(getter, params)) for getter, params in ((_ROW_TS, row_params), (_RUN_TS, run_params))
                if params), default=None)


_ROW_TS = operator.itemgetter(ROW_COLUMNS.index("ts"))
_RUN_TS = operator.itemgetter(RUN_COLUMNS.index("ts"))


def _zero_tokens(rows: Sequence[LedgerRow]) -> frozenset[str]:
    """The token classes that are 0 in every row (not summed)."""
    return frozenset(name for name, get in _TOKEN_GETTERS if not any(map(get, rows)))


@dataclass(frozen=True)
class _LineFormat:
    """How a report writes each group's measures on one line (CSV, JSON), for a database that can write the
    lines itself (:attr:`LedgerStore._fills_lines`: PostgreSQL): a month by day and user is 60,000 lines of 25
    values, which the client's one Python thread would otherwise make into objects and format; PostgreSQL
    writes them with ``concat()`` in its own process, the unit costs in its parallel workers (about 0.25 s of
    the client's CPU for about 0.2 s of the server's: benchmarks/README.md). A line is ``pieces[0]``, the text of ``slots[0]``, ``pieces[1]``... ``pieces[-1]``. A slot is a
    measure's name (a count as its digits, money as canonical decimal text, as the report prints them), or a
    unit cost ``(money measure, count measure)``: the quotient :func:`aicost.ledger.query.MONEY_DIV` makes,
    exactly, between ``quote``s, or ``null`` where the count is 0. ``zero``: the measures 0 in every group, not
    read (written as 0); a slot's measure that is neither read nor in ``zero`` is an error, never a 0."""

    pieces: tuple[str, ...]
    slots: tuple[str | tuple[str, str], ...]
    null: str = ""
    quote: str = ""
    zero: frozenset[str] = frozenset()

    def measures(self) -> set[str]:
        """Every measure a slot writes (a unit cost's two)."""
        return {name for slot in self.slots for name in ((slot,) if isinstance(slot, str) else slot)}

    def __post_init__(self) -> None:
        if len(self.pieces) != len(self.slots) + 1:
            raise ValueError("_LineFormat: one piece more than there are slots")
        if not all(piece.isascii() for piece in self.pieces + (self.null, self.quote)):
            raise ValueError("_LineFormat: pieces are ASCII (JSON's layout and CSV's separators are)")


class LedgerSchemaError(ConfigurationError):
    """The database holds a ledger schema this aicost cannot read (written by a newer aicost)."""


class LedgerUnavailable(AicostError):
    """The ledger database cannot be reached right now (a server down, a file locked for too long), or was lost
    while it was read (a server stopped, a connection dropped between two statements or during one, a database
    dropped, a SQLite file damaged or truncated under its reader: "database disk image is malformed"). Every read of
    a store (the reports, the FOCUS export, forecasts, dashboards, reconciliation) raises it rather than the driver's
    own error; its message names the ledger, never its password, and says what failed, on one line.

    ``state`` says which of these it is, for whoever tells it (:meth:`sentence`: the CLI, the writer's log):
    ``"unreachable"`` (a server down or stopped, a connection lost, a file locked past its timeout), ``"missing"``
    (the PostgreSQL database does not exist: dropped since the ledger was opened, or since its writer was
    configured) or ``"damaged"`` (a SQLite file SQLite cannot read as a database: :func:`_is_damaged_file`)."""

    _SENTENCES = {"unreachable": "cannot reach the ledger {ledger}: {detail}",
                  "missing": "the ledger {ledger} is missing, its database does not exist: {detail}",
                  "damaged": "cannot read the ledger {ledger}, its file is damaged or unreadable: {detail}"}
    STATES = tuple(_SENTENCES)

    def __init__(self, ledger: str, detail: str, state: str = "unreachable") -> None:
        if state not in self._SENTENCES:
            raise ValueError(f"LedgerUnavailable: state must be one of {sorted(self._SENTENCES)}, got {state!r}")
        super().__init__(f"ledger {ledger}: {detail}")
        self.ledger, self.detail, self.state = ledger, detail, state

    def __reduce__(self) -> tuple:
        return type(self), (self.ledger, self.detail, self.state)

    def sentence(self) -> str:
        """What failed, as one line to show: the ledger (never its password), what state it is in, the driver's
        words."""
        return self._SENTENCES[self.state].format(ledger=self.ledger, detail=self.detail)


class LedgerRefused(AicostError):
    """The database refused the data of a write, not the write as such: a value it cannot hold (a count past
    64 bits, text that is not Unicode), an amount its sums cannot add exactly, a constraint. The same rows fail at
    every retry, while other rows are written: the background writer writes the batch in parts and drops only the
    rows refused alone (:mod:`aicost.ledger.writer`). ``reason`` says why without quoting a value (a tag or a
    name could be anything the app put there): the error's class, SQLite's message or PostgreSQL's SQLSTATE."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def open_store(url: str | os.PathLike[str], *, create: bool = True, setting: str = DEFAULT_SETTING,
               reopen: bool = False, wait_s: float | None = None) -> "LedgerStore":
    """Open the ledger at ``url``. ``create=False`` (readers: reports, exports) refuses a missing SQLite file, and
    a database without aicost's schema (the app's own, an empty file), instead of creating an empty ledger in it;
    a ledger of an older schema is migrated either way. ``setting`` names where the URL came from, for errors.

    ``reopen=True``: the URL was accepted before (the background writer opening its ledger again after an outage,
    or in a forked child). A PostgreSQL database that does not exist now, or refuses the login, or a SQLite file
    SQLite cannot read (damaged since), is then the ledger lost, as for a read of an opened store
    (:class:`LedgerUnavailable`, state ``"missing"`` for a database dropped, ``"damaged"`` for such a file), not bad
    configuration: there is no configure-time caller left to tell.

    ``wait_s``: how long opening a SQLite file waits for another process's lock on it (a connection holding it
    exclusively), then fails (:class:`LedgerUnavailable` when reopened); None: SQLite's busy timeout, 30 s. The
    store's writes wait as long as ever (bounded by :meth:`LedgerStore.time_limit`, or ended by
    :meth:`LedgerStore.cut`). A PostgreSQL connect waits 5 s at most either way."""
    text = os.fspath(url) if isinstance(url, os.PathLike) else url
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(f"{setting}: the ledger URL must be a non-empty string; use {_ACCEPTED}")
    text = text.strip()
    lowered = text.lower()
    if lowered.startswith("sqlite:"):
        if not lowered.startswith("sqlite:///") or len(text) <= len("sqlite:///"):
            raise ConfigurationError(f"{setting}: malformed SQLite ledger URL {text!r}; use {_ACCEPTED}")
        return SQLiteStore(Path(text[len("sqlite:///"):]), create=create, setting=setting, reopen=reopen,
                           wait_s=wait_s)
    if lowered.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return PostgresStore(text.replace("postgresql+psycopg://", "postgresql://", 1), create=create, setting=setting,
                             reopen=reopen)
    if "://" not in text and lowered.endswith((".db", ".sqlite", ".sqlite3")):
        return SQLiteStore(Path(text), create=create, setting=setting, reopen=reopen, wait_s=wait_s)
    raise ConfigurationError(f"{setting}: unsupported ledger URL {redact_url(text)!r}; use {_ACCEPTED}")


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
    * :meth:`sum_period` / :meth:`sum_rows` -- measures summed in the database over rollup cells and raw rows
      (what :func:`aicost.ledger.query.spend` reads; use that function rather than these).
    * :meth:`time_range` -- the first and last row's time, or None for an empty ledger.
    """

    dialect = ""
    url = ""
    _dsn = ""  # what the store connects with, secrets and all: never shown (see _unavailable)
    _fills_lines = False  # writes a report's lines itself (:class:`_LineFormat`, ``line=`` of the sums)

    def __init__(self) -> None:
        self._lock = _fork.rlock()
        self._folded_before: datetime | None = None  # the cube's, as this store last read it (_close_days)
        self._reading = False  # inside snapshot()
        self._under_way = False  # a write transaction is under way (_cuttable): what cut() ends
        self._cut_short = False  # cut() ended a write: this store writes nothing more, it is only closed
        self._limit_until: float | None = None  # the end of time_limit() (time.monotonic()), inside it

    @contextlib.contextmanager
    def _closed_if_refused(self) -> Iterator[None]:
        """Around a constructor's connect and migrate: whatever refuses the store (a newer schema, no ledger, a
        database error) closes the connection it opened, or the file handle or server backend outlives the refusal
        for as long as anything holds the exception, or for every retry of a process that keeps trying."""
        try:
            yield
        except BaseException:
            conn = getattr(self, "_conn", None)
            if conn is not None:
                with contextlib.suppress(Exception):  # the refusal is what the caller needs to see, not this
                    conn.close()
            raise

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
    def row_params(self, row: LedgerRow, outcome: str | None = None) -> tuple:
        """One row as the ``aicost_ledger`` columns (:data:`~aicost.ledger.schema.ROW_COLUMNS`); ``outcome`` is
        written when the row has none of its own (its feature run's, finished in the same batch)."""
        return (
            row.span_id, row.kind, self._ts(row.time), row.trace_id, row.provider, row.operation, row.endpoint,
            row.request_model, row.response_model, row.model, row.service_tier,
            *_tokens_of(row),
            row.audio_seconds, self._bool(row.estimated), self._money(row.cost),
            _parts_json(row.cost_parts), self._bool(row.price_known),
            row.price_source, row.price_model, self._money(row.saved_cost), self._money(row.stopped_cost),
            row.cache_name, row.budget, row.team, row.feature, row.user, row.customer, self._json(row.tags),
            row.run_id, outcome if row.outcome is None else row.outcome, row.error_type, row.duration_s,
            row.vendor_project, row.api_key_fingerprint, row.price_unknown_reason,
        )

    def _rows_params(self, rows: Sequence[LedgerRow], runs: Sequence[FeatureRun]) -> list[tuple]:
        """:meth:`row_params` of each row; a row whose feature run finished in this same batch gets the run's
        outcome here, at insert, rather than from the outcome update after it (which would write it twice)."""
        params: list[tuple] = []
        outcome_of = {run.run_id: run.outcome for run in runs}
        for i in range(0, len(rows), _SLICE):
            chunk = rows[i:i + _SLICE]
            if outcome_of:
                params += map(self.row_params, chunk, map(outcome_of.get, map(_run_id_of, chunk)))
            else:
                params += map(self.row_params, chunk)
            time.sleep(0)  # lets the writer thread take the GIL now, not after the 5 ms switch interval
        return params

    def run_params(self, run: FeatureRun) -> tuple:
        return (run.run_id, self._ts(run.time), run.feature, run.outcome, run.team, run.user, run.customer,
                self._json(run.tags), run.calls, self._money(run.cost), run.trace_id, run.duration_s)

    def write(self, rows: Sequence[LedgerRow], runs: Sequence[FeatureRun] = ()) -> int:
        """Store ``rows`` and ``runs`` in one transaction and update the rollups; return how many rows were new.

        Rows (runs) whose ``span_id`` (``run_id``) is already stored, or repeated in the batch, are skipped.
        Raises :class:`LedgerUnavailable` when the database cannot be reached, :class:`LedgerRefused` when it
        refuses the batch's data (nothing is then written).
        """
        if not rows and not runs:
            return 0
        return self.write_prepared(self.prepare(rows, runs))

    def prepare(self, rows: Sequence[LedgerRow], runs: Sequence[FeatureRun] = ()) -> PreparedBatch:
        """The part of :meth:`write` that needs no database session: the batch's repeats removed, its rows encoded
        and staged (SQLite: an in-memory database image, :mod:`aicost.ledger.staging`; PostgreSQL: its ``COPY``
        data). Safe to call on another thread while this store
        writes: the background writer prepares the next batch meanwhile. A value that cannot be encoded, or an
        amount the ledger cannot sum exactly (:func:`aicost.ledger.rollup.summable`), raises
        :class:`LedgerRefused`, as the database refuses a value it cannot hold."""
        with self._classified():
            try:
                return self._prepare(rows, runs)
            except UnicodeEncodeError:  # a text no UTF-8 takes: made storable rather than its row dropped
                storable_rows, storable_runs = _storable(rows), _storable(runs)
                if storable_rows is rows and storable_runs is runs:
                    raise
                return self._prepare(storable_rows, storable_runs)

    def _prepare(self, rows: Sequence[LedgerRow], runs: Sequence[FeatureRun]) -> PreparedBatch:
        rows = _held_to_bounds(_unique(rows, "span_id"))
        runs = _held_to_bounds(_unique(runs, "run_id"))
        # Summed as integers (SQLite, nearly every batch): every amount is small, so each is summable too
        units = rollup.DIALECTS[self.dialect].to_units is not None and rollup.fits_units(rows)
        if not units and (amount := rollup.unsummable(rows)) is not None:
            raise LedgerRefused(f"a {amount} the ledger cannot sum exactly ({rollup.SUMMABLE_LIMIT:.0E} dollars "
                                f"or more, more than {rollup.SUMMABLE_DECIMALS} decimals, or not a number)")
        row_params = self._rows_params(rows, runs)
        run_params = [self.run_params(r) for r in runs]
        return PreparedBatch(rows, runs, row_params, run_params, self._stage(row_params, run_params),
                             _zero_tokens(rows), units, _last_time(rows, runs), _first_ts(row_params, run_params))

    def _stage(self, row_params: list[tuple], run_params: list[tuple]) -> Any:
        """What the dialect can make of the batch before the write (None: nothing; the write does it all)."""
        return None

    def write_prepared(self, batch: PreparedBatch) -> int:
        """:meth:`write` of a batch :meth:`prepare` made (by this store or another of the same dialect)."""
        if not batch.rows and not batch.runs:
            return 0
        with self._lock, self._classified(), self._cuttable():
            try:
                return self._write(batch)
            except BaseException:
                self._folded_before = None  # a fold this transaction made was rolled back: read it again
                raise

    def _write(self, batch: PreparedBatch) -> int:
        raise NotImplementedError

    @contextlib.contextmanager
    def time_limit(self, seconds: float | None) -> Iterator[None]:
        """Writes made inside (:meth:`write_prepared`, :meth:`execute_many`) wait for a lock, and on PostgreSQL
        run each statement, no longer than ``seconds``, then fail with :class:`LedgerUnavailable` (nothing
        written). The background writer bounds its writes at close and exit with it. None: no limit."""
        if seconds is None:
            yield
            return
        with self._lock:
            try:
                self._limit_until = time.monotonic() + seconds
                self._set_limit(max(1, int(seconds * 1000)))
                yield
            finally:
                self._limit_until = None
                self._set_limit(None)

    def cut(self, by: float | None = None, until: float | None = None) -> bool:
        """End the write under way now: called from another thread, without the store's lock (the write holds it).
        The write fails with :class:`LedgerUnavailable`, nothing of its transaction committed, and so does every
        later write of this store, which is then only to be closed. With ``by`` (a ``time.monotonic()`` deadline),
        a store inside a :meth:`time_limit` that ends by then (give or take :data:`_CUT_SLACK_S`) is left alone:
        its write ends by itself. With ``until`` (also ``time.monotonic()``), the cut returns by then, give or
        take :data:`_CUT_MIN_S` (PostgreSQL's cancel request waits no longer for the server to take it: the
        closing side cuts several writers' writes in turn, within one bound). True when a write was under way and
        is cut (False too where the dialect cannot end it: PostgreSQL without ``cancel_safe``).

        SQLite: a wait for another connection's lock ends within :data:`_SQLITE_WAIT_SLICE_MS` (SQLite's
        ``interrupt()`` does not end such a wait); a write past it is not cut (False): its statements, bounded by
        its batch's size, finish.
        PostgreSQL: the statement under way is cancelled (psycopg's ``cancel_safe``, which needs libpq 17 or later,
        as psycopg's binary package has it; without it nothing is sent). A cancel that reaches the server between two
        statements is lost: call again while the write is under way (:attr:`writing`). The background writer cuts
        a write that its close() or the exit's deadline would not end (:mod:`aicost.ledger.writer`)."""
        limit_until = self._limit_until
        if by is not None and limit_until is not None and limit_until <= by + _CUT_SLACK_S:
            return False
        self._cut_short = True  # before _under_way is read, as _cuttable sets that before reading this: a write
        if not self._under_way:  # beginning meanwhile is refused there, or seen under way here
            return False
        return self._interrupt(until)

    @property
    def writing(self) -> bool:
        """Whether a write transaction is under way (one :meth:`cut` can end)."""
        return self._under_way

    @property
    def cut_short(self) -> bool:
        """Whether :meth:`cut` ended a write of this store (it writes nothing more)."""
        return self._cut_short

    def _interrupt(self, until: float | None) -> bool:
        """:meth:`cut`'s part on the connection, from another thread (never raises), returning by ``until`` (give
        or take :data:`_CUT_MIN_S`): False when the dialect cannot end the write. Nothing by default: the write's
        waits look at :attr:`cut_short` themselves."""
        return True

    @contextlib.contextmanager
    def _cuttable(self) -> Iterator[None]:
        """Around each write transaction, under the store's lock: a write :meth:`cut` can end. A store cut begins
        none (LedgerUnavailable)."""
        self._under_way = True
        try:
            if self._cut_short:
                raise self._unavailable(_CUT_DETAIL)
            yield
        finally:
            self._under_way = False

    def _set_limit(self, ms: int | None) -> None:
        """Apply (or, with None, lift) :meth:`time_limit` on the connection, if the dialect does it there."""

    def _new_in(self, cur: Any, batch: PreparedBatch) -> PreparedBatch:
        """The part of ``batch`` not stored yet (one query per table, inside the write transaction). When all of
        it is new, ``batch`` itself; otherwise the new rows and runs with their encoded columns and what was
        staged of them (:meth:`_unstage`), as prepared: their rollups are then summed from the new rows only
        (by id, or from SQLite's stage), so a row stored before is never counted again. Only a new row that
        took at encoding the outcome of a run in the batch that turns out to be stored already is encoded
        again, without it (the stored run's outcome is written back after the insert), and then nothing staged
        is used."""
        stored_rows = self._stored(cur, "aicost_ledger", "span_id", [r.span_id for r in batch.rows])
        stored_runs = self._stored(cur, "aicost_runs", "run_id", [r.run_id for r in batch.runs])
        if not stored_rows and not stored_runs:
            return batch
        new_rows = [r.span_id not in stored_rows for r in batch.rows]
        new_runs = [r.run_id not in stored_runs for r in batch.runs]
        rows = list(compress(batch.rows, new_rows))
        runs = list(compress(batch.runs, new_runs))
        row_params = list(compress(batch.row_params, new_rows))
        run_params = list(compress(batch.run_params, new_runs))
        staged = batch.staged
        if stored_runs and any(r.outcome is None and r.run_id in stored_runs for r in rows):
            row_params = [self.row_params(r) if r.outcome is None and r.run_id in stored_runs else p
                          for r, p in zip(rows, row_params)]
            staged = None
        elif staged is not None:
            staged = self._unstage(cur, staged, new_rows, new_runs)
        # zero and units still hold for a part of the batch: a class 0 in every row is 0 in some of them, and
        # amounts whose absolute sum fits have a part whose sum fits
        return PreparedBatch(rows, runs, row_params, run_params, staged, zero=batch.zero, units=batch.units,
                             last=batch.last, first=batch.first)

    def _unstage(self, cur: Any, staged: Any, new_rows: list[bool], new_runs: list[bool]) -> Any:
        """What ``staged`` (of this dialect) holds of the rows and runs flagged new, in order (None: nothing
        usable; the write encodes them itself)."""
        return None

    def execute_many(self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        """Run ``(sql, [params, ...])`` statements (``?`` placeholders) in one transaction: how a feature writes
        its own tables (``aicost.pools``). Raises :class:`LedgerUnavailable` when the database cannot be
        reached, :class:`LedgerRefused` when it refuses their data (nothing is then written)."""
        with self._lock, self._classified(), self._cuttable():
            self._execute_many([(self._sql(sql), params) for sql, params in statements])

    @contextlib.contextmanager
    def _classified(self) -> Iterator[None]:
        """A write's failure as the writer handles it. The database refusing the data (:func:`_refusal`) raises
        :class:`LedgerRefused`: the writer writes the rest without the rows refused. A database that cannot be
        reached (SQLite's other operational errors: locked, disk I/O; OS errors; PostgreSQL's connection,
        resource and operator errors, ``psycopg.OperationalError``), or a SQLite file it cannot read
        (:func:`_is_file_failure`: "database disk image is malformed", damaged under the writer), raises
        :class:`LedgerUnavailable`: spilled and retried as an outage (the file repaired or restored, the rows are
        replayed), never a traceback per batch. Anything else (a schema a newer aicost migrated to, missing
        privileges, a bug) is raised as it is: the writer spills it and retries after a back-off too, since it is
        not about the rows."""
        try:
            yield
        except Exception as exc:
            reason = _refusal(exc)
            if reason is not None:
                raise LedgerRefused(reason) from exc
            if (isinstance(exc, (sqlite3.OperationalError, OSError)) or _is_connection_error(exc)
                    or _is_file_failure(exc)):
                raise self._unavailable(exc) from exc
            raise

    @contextlib.contextmanager
    def _reading_failures(self) -> Iterator[None]:
        """A read's failure as the readers see it: the database lost (psycopg's connection errors: a server stopped,
        a connection terminated between two statements or while rows stream, a new connection refused; a SQLite
        file that cannot be read, :func:`_is_file_failure`: damaged on disk, truncated under the reader) raises
        :class:`LedgerUnavailable`, never the driver's error, so that a report, an export or the CLI (exit status
        2, one line) handles it as a ledger it cannot reach at open. Anything else is raised as it is: SQLite's
        other errors are about the statement (an integer overflow, which a sum catches to add again exactly).
        Wraps every read: :meth:`_fetch`, :meth:`_fetch_lines`, :meth:`_stream`, :meth:`snapshot`, and
        PostgreSQL's schema check at open. (A reconnection of an opened store that fails, its database dropped
        since, is LedgerUnavailable too: :meth:`PostgresStore._connect`.)"""
        try:
            yield
        except Exception as exc:
            if not (_is_connection_error(exc) or _is_file_failure(exc)):
                raise
            # (not chained when the driver's text quotes a secret of the URL, as a new connection's error may)
            quotes_a_secret = redact_secrets(str(exc), self._dsn) != str(exc)
            raise self._unavailable(exc) from (None if quotes_a_secret else exc)

    def _unavailable(self, exc: BaseException | str, state: str | None = None) -> LedgerUnavailable:
        """The :class:`LedgerUnavailable` of the driver's error (or message) ``exc``: the ledger without its password,
        and the driver's text on one line with every secret of the URL hidden (:func:`redact_secrets`). Its state,
        unless given: ``"damaged"`` for a SQLite file SQLite cannot read (:func:`_is_damaged_file`), else
        ``"unreachable"``."""
        if state is None:
            state = "damaged" if isinstance(exc, BaseException) and _is_damaged_file(exc) else "unreachable"
        return LedgerUnavailable(self.url, " ".join(redact_secrets(str(exc), self._dsn).split()), state)

    def _execute_many(self, statements: list[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        raise NotImplementedError

    def _stored(self, cur: Any, table: str, key: str, ids: list[str]) -> set[str]:
        """Which of ``ids`` are stored in ``table`` already (one query)."""
        if not ids:
            return set()
        cur.execute(self._sql(f"SELECT {key} FROM {table} WHERE {self._in_ids(key)}"), [self._id_list(ids)])
        return {found for (found,) in cur.fetchall()}

    def _update_rollups(self, cur: Any, batch: PreparedBatch, stage: str = "") -> None:
        """Sum the rows and runs this batch inserted into the hour and day rollups and the cube, in SQL, skipping
        the token classes :meth:`prepare` found 0 in every row (``batch.zero``) and summing money as integers
        where it found that exact (``batch.units``); then close the days it ends (:meth:`_close_days`). The rows
        are named by id, or, with ``stage`` (SQLite's attached stage, all of whose rows went in), they are the
        stage's."""
        rows, runs = batch.rows, batch.runs
        if not rows and not runs:
            return
        d = rollup.DIALECTS[self.dialect]
        cur.execute(rollup.delta_ddl(d))
        wheres, params = {}, {}
        if rows:
            wheres["rows"], params["rows"] = ("true", []) if stage else (
                self._in_ids("span_id"), [self._id_list([r.span_id for r in rows])])
        if runs:
            wheres["runs"], params["runs"] = ("true", []) if stage else (
                self._in_ids("run_id"), [self._id_list([r.run_id for r in runs])])
        for sql, sources in rollup.rollup_sql(d, wheres, zero=batch.zero, units=batch.units, schema=stage):
            if sources:
                cur.execute(self._sql(sql), [p for source in sources for p in params[source]])
            else:
                cur.execute(sql)
        self._close_days(cur, batch.last)
        self._add_late_pairs(cur, batch, wheres, params, stage)

    def _add_late_pairs(self, cur: Any, batch: PreparedBatch, wheres: dict[str, str], params: dict[str, list],
                        stage: str) -> None:
        """Add the batch's late rows and runs, those before ``summed_before`` (read here, under the write lock:
        the pair summing moves it under the same lock), to the pair cells (:func:`aicost.ledger.pairs.
        late_statements`). Nearly every batch has none: one read of one row, and a comparison. The same read
        checks the schema version (:class:`LedgerSchemaError` if a newer aicost migrated the ledger since this
        store opened it)."""
        cur.execute(_READ_MARKS_AND_VERSION)
        summed, hours_from, version = cur.fetchone()
        # A migration by a newer aicost while this process had the ledger open: its write is refused (rolled
        # back, spilled by the writer), never made without what the newer schema maintains.
        _refuse_newer(int(version), "ledger write", self.url)
        summed = _parse_ts(summed)
        mark = self._ts(summed)
        if batch.first is None or batch.first >= mark:
            return
        late = {source: f"{where} AND ts < ?" for source, where in wheres.items()}
        hours_from = _parse_ts(hours_from)
        taken = {"sources": [p for source in late for p in (*params[source], mark)],
                 "hour_sources": [p for source in late for p in (*params[source], mark, self._ts(hours_from))],
                 "closed": [self._ts(pairs.prefixes_end(summed))],
                 "hours": [self._ts(pairs.hour_prefixes_end(summed))], "": []}
        d = rollup.DIALECTS[self.dialect]
        hours = hours_from < summed  # some day keeps hour prefixes (a late row of an earlier day adds to none)
        for sql, takes in pairs.late_statements(d, late, units=batch.units, schema=stage, hours=hours):
            cur.execute(self._sql(sql), taken[takes])

    def _close_days(self, cur: Any, last: datetime | None) -> None:
        """Inside a write transaction (which holds the ledger's write lock: SQLite's ``BEGIN IMMEDIATE``,
        PostgreSQL's advisory lock), after the batch's cells: when ``last`` (:func:`_last_time`) is of a day later
        than the cube's last folded day, fold the days before it (:func:`~aicost.ledger.rollup.close_days_sql`)
        and move ``folded_before`` there. A day is closed by the first batch of a later day, or by the writer's clock:
        never past today (a host whose clock is ahead cannot make today's batches write day cells).
        ``self._folded_before`` remembers the last value seen, so a batch of a day already folded costs nothing
        here: ``folded_before`` only moves forward. A failed write forgets it (:meth:`write_prepared`): the
        value it saw or set was rolled back with it."""
        if last is None:
            return
        day = midnight(min(last, datetime.now(timezone.utc)))
        if self._folded_before is not None and day <= self._folded_before:
            return
        cur.execute(schema.READ_FOLDED_SQL)
        folded = _parse_ts(cur.fetchone()[0])
        if folded < day:
            cur.execute(self._sql(rollup.close_days_sql(rollup.DIALECTS[self.dialect])),
                        [self._ts(folded), self._ts(day)])
            cur.execute(self._sql(schema.SET_FOLDED_SQL), [self._ts(day)])
            folded = day
        self._folded_before = folded

    def folded_before(self) -> datetime:
        """The cube's first day without day cells (:data:`~aicost.ledger.schema.CUBE_FOLDED_TABLE`): the days
        before it are read from day cells, it and later days from hour cells."""
        return _parse_ts(self._fetch(schema.READ_FOLDED_SQL, [])[0][0])

    def compact_pairs(self, *, max_rows: int | None = PAIR_CHUNK_ROWS, until: datetime | None = None) -> bool:
        """Sum one chunk of stored rows into the pair cells (:func:`aicost.ledger.pairs.compact`), in a write
        transaction of its own: from ``summed_before`` to ``until``, by default the start of the hour that two
        minutes ago was in (from 10:02 on, 10:00) or of the latest row's hour, whichever is earlier (so rows
        written now, and a backfill's past rows as they come in order, are rarely late), at most about
        ``max_rows`` rows. Returns whether it
        moved ``summed_before``: call again while it does. The background writer calls it behind its batches;
        raises :class:`LedgerUnavailable` when the database cannot be reached, :class:`LedgerSchemaError` once a
        newer aicost has migrated the ledger."""
        with self._lock, self._classified(), self._cuttable(), self._write_transaction() as cur:
            cur.execute("SELECT MAX(version) FROM aicost_schema")  # a newer aicost may keep more than this writes
            _refuse_newer(int(cur.fetchone()[0]), "ledger pair summing", self.url)
            until = until or _pairs_until(cur, self.dialect)
            return until is not None and _compact_pairs_in(cur, self.dialect, until, max_rows)

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[Any]:
        """A transaction holding the ledger's write lock (as a batch's), its cursor."""
        raise NotImplementedError
        yield

    def pairs_summed_before(self) -> datetime:
        """How far the pair cells are summed: every row and run before this time is in them, none after it."""
        return self.pair_marks()[0]

    def pair_marks(self) -> tuple[datetime, datetime]:
        """:meth:`pairs_summed_before`, and the first day whose hour prefixes the pair cells keep (every hour's of
        it and of each later day summed: :data:`aicost.ledger.pairs.HOUR_DAYS`), read together."""
        summed, hours_from = self._fetch(pairs.READ_MARKS_SQL, [])[0]
        return _parse_ts(summed), _parse_ts(hours_from)

    def _in_ids(self, column: str) -> str:
        """A condition: ``column`` is one of the ids of a list parameter (:meth:`_id_list`)."""
        raise NotImplementedError

    def _id_list(self, ids: list[str]) -> Any:
        raise NotImplementedError

    def _outcomes(self, cur: Any, rows: Sequence[LedgerRow], runs: Sequence[FeatureRun]) -> list[tuple[str, str]]:
        """(outcome, run_id) to write on call rows: new runs, and finished runs that new rows belong to."""
        outcomes = {run.run_id: run.outcome for run in runs}
        pending = list({r.run_id for r in rows if r.run_id is not None and r.run_id not in outcomes})
        if pending:
            cur.execute(self._sql(f"SELECT run_id, outcome FROM aicost_runs WHERE {self._in_ids('run_id')}"),
                        [self._id_list(pending)])
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
                column = _COLUMN_OF.get(key, key)
                if value == "":  # no value: NULL in a row, '' in the rollups' cells (which read it as no value)
                    clauses.append(f"COALESCE({column}, '') = ''")
                    continue
                clauses.append(f"{column} = ?")
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

    def runs(self, start: datetime, end: datetime, *, where: Mapping[str, str] | None = None) -> Iterator[FeatureRun]:
        """Feature runs that ended in ``[start, end)``, oldest first."""
        condition, params = self._where(start, end, where, runs=True)
        sql = self._sql(f"SELECT {', '.join(RUN_COLUMNS)} FROM aicost_runs WHERE {condition} ORDER BY ts, run_id")
        for v in self._stream(sql, params):
            yield FeatureRun(run_id=v[0], time=_parse_ts(v[1]), feature=v[2], outcome=v[3], team=v[4], user=v[5],
                             customer=v[6], tags=self._load_json(v[7]), calls=int(v[8]), cost=Decimal(v[9]),
                             trace_id=v[10], duration_s=v[11])

    def sum_period(self, dim: str, spans: Sequence[tuple[str, datetime, datetime]],
                   edges: Sequence[tuple[datetime, datetime]], *, value: str | None = None,
                   value_prefix: str | None = None, where: Mapping[str, str] | None = None,
                   group: Sequence[str] = ("v",), measures: Sequence[str] = MEASURES, cells: bool = False,
                   ordered: bool = False, nonzero: bool = False, _line: _LineFormat | None = None) -> list[tuple]:
        """``measures`` for one rollup dimension, summed in ONE statement over the ``aicost_rollup`` cells of
        ``spans`` ((grain, start, end): buckets starting in [start, end)) and the raw rows and feature runs of
        ``edges`` ((start, end): the minutes a period has outside whole hours), which are summed with the rollups'
        own measure expressions. ``group``: SQL expressions over ``v`` (the rollup value, '' for no value) and
        ``b`` (the bucket, or a raw row's time): one result per distinct tuple of them, as :meth:`_grouped`
        returns it. ``value`` / ``value_prefix`` select rollup values ('name=' for one tag's values); ``where``
        is the same selection as a row filter. ``cells``: the caller knows each group is one rollup cell (one
        span, no edges, grouped by its bucket and value): the cells are read, nothing is summed. ``ordered``
        and ``nonzero``: as :meth:`_sums` (``_line``: its ``line``, private)."""
        names = list(measures)
        parts: list[str] = []
        params: list[Any] = []
        for grain, low, high in spans:
            sql = (f"SELECT bucket AS b, value AS v, {', '.join(names)} "
                   "FROM aicost_rollup WHERE grain = ? AND dim = ? AND bucket >= ? AND bucket < ?")
            params.extend([grain, dim, self._ts(low), self._ts(high)])
            if value is not None:
                sql += " AND value = ?"
                params.append(value)
            elif value_prefix is not None:
                # a prefix range: uses the primary key, unlike LIKE; in code point order whatever the collation
                sql += f" AND value{self._COLLATE} >= ? AND value{self._COLLATE} < ?"
                params.extend([value_prefix, value_prefix + "\U0010ffff"])
            parts.append(sql)
        # The edges' raw rows as rollup cells (b, v) of this dimension; of one tag's values, rows with that tag.
        tag_name = (value_prefix or value or "").split("=", 1)[0] if dim == "tag" else ""
        for low, high in edges:
            raw, raw_params = self._raw_parts(
                low, high, where, names, lambda dims: ["ts AS b", f"{dims[dim]} AS v"], uses=[dim],
                tags=dim == "tag", conditions=["t.key = ?"] if tag_name else [],
                condition_params=[tag_name] if tag_name else [])
            parts += raw
            params += raw_params
        return self._sums(parts, params, group, names, summed=not cells, ordered=ordered, nonzero=nonzero,
                          line=_line)

    def sum_cube(self, spans: Sequence[tuple[str, datetime, datetime]], edges: Sequence[tuple[datetime, datetime]],
                 keys: Sequence[str], *, where: Mapping[str, str] | None = None, measures: Sequence[str] = MEASURES,
                 cells: bool = False, ordered: bool = False, nonzero: bool = False,
                 _line: _LineFormat | None = None) -> list[tuple]:
        """:meth:`sum_period` for the cube (``aicost_rollup_cube``): ``measures`` grouped by ``keys`` (any of
        :data:`~aicost.ledger.schema.CUBE_KEYS`, day, hour) and filtered by ``where`` on cube keys, in ONE
        statement over the cube cells of ``spans`` and the raw rows and feature runs of ``edges``. A feature run
        has no model or provider: grouped or filtered by either, runs are left out, as :meth:`sum_rows` leaves
        them (the cells' run counts read as 0, and a cell of runs alone is skipped). ``cells``: each group is one
        cell (keyed by every cube key and the span's time key), read as it is. ``ordered`` and ``nonzero``: as
        :meth:`_sums` (``_line``: its ``line``, private)."""
        d = rollup.DIALECTS[self.dialect]
        where = dict(where or {})
        names = list(measures)
        no_runs = any(k in ("model", "provider") for k in [*keys, *where])
        parts: list[str] = []
        params: list[Any] = []
        cols = ", ".join(f"0 AS {n}" if no_runs and n in ("runs", "succeeded_runs") else n for n in names)
        for grain, low, high in spans:
            sql = (f"SELECT bucket AS b, {', '.join(schema.CUBE_KEYS)}, {cols} FROM {schema.CUBE_TABLE} "
                   "WHERE grain = ? AND bucket >= ? AND bucket < ?")
            params.extend([grain, self._ts(low), self._ts(high)])
            for key, value in where.items():
                sql += f" AND {key} = ?"
                params.append(value)
            if no_runs:
                sql += " AND calls + cache_hits + refusals > 0"  # every ledger row is one of the three
            parts.append(sql)
        for low, high in edges:
            raw, raw_params = self._raw_parts(
                low, high, where, names,
                lambda dims: ["ts AS b", *(f"{dims[k]} AS {k}" if k in dims else f"'' AS {k}"
                                           for k in schema.CUBE_KEYS)],
                uses=[*keys, *where])
            parts += raw
            params += raw_params
        group = [key_sql(d, k, "b", k)[0] for k in keys]
        return self._sums(parts, params, group, names, summed=not cells, ordered=ordered, nonzero=nonzero,
                          line=_line)

    def sum_pairs(self, pair: tuple[str, str], sets: Sequence[tuple[int, datetime, int]],
                  edges: Sequence[tuple[datetime, datetime, int]], keys: Sequence[str], *,
                  where: Mapping[str, str] | None = None, measures: Sequence[str] = MEASURES, cells: bool = False,
                  ordered: bool = False, nonzero: bool = False, _line: _LineFormat | None = None) -> list[tuple]:
        """:meth:`sum_period` for a pair of rollup dimensions (:data:`aicost.ledger.pairs.PAIRS`, in their stored
        order): ``measures`` grouped by ``keys`` (keys of the pair's two dimensions, and day) and filtered by
        ``where`` (on those keys), in ONE statement over the pair cells of ``sets`` ((days, start, sign): the cells
        of the ``days`` days from ``start``, summed by :meth:`compact_pairs`, added or, sign -1, subtracted) and the
        raw rows and feature runs of ``edges`` ((start, end, sign)). A group that subtraction leaves with no row
        (every count 0) is left out. ``cells``: each group is one cell, read as it is. ``ordered`` and
        ``nonzero``: as :meth:`_sums` (``_line``: its ``line``, private). Up to JOIN_MAX of the cell sets are
        joined by primary key (:meth:`_sum_joined`) rather than sorted together. A set listed twice is refused
        (ValueError): summed together, its cells would be read once (``bucket IN``); joined, twice (an arm each)."""
        if len(set(sets)) != len(sets):
            raise ValueError(f"sum_pairs: a cell set listed twice in {sets}")
        d = rollup.DIALECTS[self.dialect]
        where = dict(where or {})
        names = list(measures)
        column = {}  # each key of the pair's dimensions -> the column holding its values
        for key in [*keys, *where]:
            if key != "day":
                column[key] = "va" if _rollup_dim(key) == pair[0] else "vb"
        conditions: list[str] = []  # on the cells of the table {t} names (its alias and a dot, or nothing)
        condition_params: list[Any] = []
        for key, col in column.items():  # a tag's values are 'name=value': of tag:<name>, those of that name
            stored = "{t}value_a" if col == "va" else "{t}value_b"
            if key in where:
                conditions.append(f"{stored} = ?")
                condition_params.append(f"{key[4:]}={where[key]}" if key.startswith("tag:") else where[key])
            elif key.startswith("tag:"):
                conditions.append(f"{stored}{self._COLLATE} >= ? AND {stored}{self._COLLATE} < ?")  # code points
                condition_params.extend([f"{key[4:]}=", f"{key[4:]}=\U0010ffff"])

        # SQLite's cells hold each amount's integer units too (NULL where they could not): summed as they are
        units = {n: u for n, u in pairs.units_of(d).items() if n in names and not cells and not nonzero}

        def filtered(table: str = "") -> str:
            return "".join(" AND " + c.format(t=table) for c in conditions)

        def signed(sign: int, cell: bool = True) -> str:
            """The measures (and the rows they stand for, net), negated for sign -1, then the units (a raw row's
            are NULL: its text is converted)."""
            out = [f"{rollup.negated(d, n) if sign < 0 else n} AS {n}" for n in ["net", *names]]
            out += [f"{'-' if sign < 0 else ''}{u} AS {u}" if cell else f"NULL AS {u}" for u in units.values()]
            return ", ".join(out)

        parts: list[str] = []
        params: list[Any] = []

        def add_cells(days: int, starts: list[datetime], sign: int) -> None:
            parts.append(f"SELECT b, va, vb, {signed(sign)} FROM (SELECT bucket AS b, value_a AS va, value_b AS vb, "
                         f"{', '.join([f'{pairs.net()} AS net', *names, *units.values()])} FROM {schema.PAIR_TABLE} "
                         f"WHERE days = ? AND bucket IN ({', '.join('?' * len(starts))}) AND dim_a = ? AND "
                         f"dim_b = ?{filtered()}) AS c")
            params.extend([days, *map(self._ts, starts), *pair, *condition_params])

        # one amount over sets all added, no raw rows: summed in Python (_sum_added), from the parts below
        added = len(units) == 1 == len(names) and keys and not edges and not ordered and "day" not in keys and all(
            sign > 0 for *_, sign in sets)
        joined = None if added or nonzero or cells or "day" in keys else _join_order(sets, len(names))
        by_set: dict[tuple[int, int], list[datetime]] = {}
        for days, start, sign in sets:
            if (days, start, sign) not in (joined or ()):
                by_set.setdefault((days, sign), []).append(start)
        for (days, sign), starts in by_set.items():
            add_cells(days, starts, sign)
        tag_names = [k[4:] for k in column if k.startswith("tag:")]
        for low, high, sign in edges:
            raw, raw_params = self._raw_parts(
                low, high, where, names,
                lambda dims: ["ts AS b", f"{dims[pair[0]]} AS va", f"{dims[pair[1]]} AS vb", "1 AS net"],
                uses=pair, tags="tag" in pair, conditions=["t.key = ?"] * len(tag_names), condition_params=tag_names)
            parts += [f"SELECT b, va, vb, {signed(sign, cell=False)} FROM ({part}) AS r" if sign < 0 or units
                      else part for part in raw]
            params += raw_params
        group = [key_sql(d, k, "b", column.get(k))[0] for k in keys]
        if added and (found := self._sum_added(parts, params, group, units[names[0]])) is not None:
            return found
        if joined is not None:
            found = self._sum_joined(pair, joined, (filtered, condition_params), parts, params, names, group, units,
                                     ordered=ordered, line=_line if self._fills_lines else None)
            if found is not None:
                return found
            for days, start, sign in joined:  # an amount past the integer path: summed as usual
                add_cells(days, [start], sign)
        return self._sums(parts, params, group, names, summed=not cells, ordered=ordered, nonzero=nonzero,
                          line=_line, counted="SUM(net)", units=units)

    def _sum_joined(self, pair: tuple[str, str], joined: Sequence[tuple[int, datetime, int]],
                    where_cells: tuple[Callable[[str], str], list], rest: list[str], rest_params: list,
                    names: list[str], group: list[str], units: Mapping[str, str], *, ordered: bool,
                    line: _LineFormat | None) -> list[tuple] | None:
        """:meth:`sum_pairs` of a period that reads the pair cell sets ``joined`` ((days, start, sign), in
        :func:`_join_order`'s order: an added set first) and the parts of ``rest`` (as :meth:`sum_pairs` makes them:
        the raw rows not summed yet, cell sets past JOIN_MAX), sorting nothing but the answer. Every set's cells are
        in primary key order, one per pair, so the sets are met as a full outer join by primary key: each set's cells
        that no earlier set holds, with their cells in the later sets looked up (an arm of a UNION ALL each). A set
        holding an earlier part of an earlier set's rows (:func:`_holds_before`: a window prefix less an earlier one;
        a day's cells less an hour prefix of it) holds no pair the earlier set lacks, so it has no arm, and the pairs
        of later arms are not looked up in it. The rest is grouped on its own (a few thousand pairs: the last hour's
        rows) and each of its pairs looks its cells up; the arms leave those pairs out (NOT IN the rest's, a hashed
        lookup: a text key that cannot be ambiguous, the first value's length before both). So no group is summed
        twice. ``where_cells``: the filter on a table's cells (a function of its alias) and its parameters;
        ``group``: the group-by keys over ``va`` / ``vb`` (the pair's two values); ``units``: the money measures'
        units columns (SQLite), which the cells' amounts are taken from. On the 10 M-row benchmark ledger, 24 hours
        by team and user with every measure (a day's cells less an hour prefix, and the next day's prefix: 32,000
        pairs) took SQLite 2.80 G instructions, against 3.20 G with the next day's prefix grouped as the rest and
        3.21 G with the three sets summed together; a week (a window prefix less a shorter one) 15 % fewer for the
        whole command than with a scan of the shorter prefix for pairs the longer one lacks.

        None where some amount is not exact that way (SQLite: a cell of $1 million or more, or negative, a sum of the
        rest past $1 million): the caller sums the sets as usual. The integer path adds at most JOIN_MAX cells and
        the rest's sum, each under PAIR_UNITS_LIMIT: under 2**63, where SQLite's + would turn to a double."""
        filtered, condition_params = where_cells
        d = rollup.DIALECTS[self.dialect]
        table = schema.PAIR_TABLE
        params: list[Any] = []

        def amount(t: str, n: str) -> str:  # SQLite: its units, or its text's (NULL where there is no cell)
            if n not in units:
                return f"{t}.{n}"
            column = f"{t}.{units[n]}"
            return f"CASE WHEN {column} IS NOT NULL THEN {column} ELSE {pairs.text_units(d, f'{t}.{n}')} END"

        def known(t: str) -> str:  # SQLite: units known, or text that allows them (under 10**18 either way)
            return " AND ".join(f"({t}.{units[n]} IS NOT NULL OR {t}.days IS NULL OR "
                                f"{rollup._sqlite_fits_positive(f'{t}.{n}')})" for n in names if n in units)

        def fits(*conditions: str) -> str:
            return f"CASE WHEN {' AND '.join(filter(None, conditions)) or 'TRUE'} THEN 1 ELSE 0 END"

        def key(a: str, b: str) -> str:
            return f"CAST(length({a}) AS TEXT) || ':' || {a} || {b}"

        def cells(i: int) -> str:  # the condition on the cells of joined set ``i`` (alias t<i>), parameters added
            days, start, _ = joined[i]
            params.extend([days, self._ts(start), *pair])
            t = f"t{i}"
            return f"{t}.days = ? AND {t}.bucket = ? AND {t}.dim_a = ? AND {t}.dim_b = ?"

        def cell_of(i: int, value_of: str) -> str:  # the cell of set ``i`` for the pair of the cell ``value_of``
            return f"{cells(i)} AND t{i}.value_a = {value_of}.value_a AND t{i}.value_b = {value_of}.value_b"

        def net(t: str) -> str:
            return f"({pairs.net(t + '.')})"

        def total(own: int | None, looked_up: list[int], expression: Callable[[str], str]) -> str:
            """The signed sum of ``expression`` (of a set's alias) over the arm's own set (``own``, if any) and the
            sets whose cells it looks up."""
            out = ""
            for i in ([] if own is None else [own]) + looked_up:
                term = expression(f"t{i}") if i == own else f"COALESCE({expression(f't{i}')}, 0)"
                minus = joined[i][2] < 0
                out += (f" - {term}" if minus else f" + {term}") if out else (f"-({term})" if minus else term)
            return out

        holders = _holders(joined)
        armed = [i for i, held in enumerate(holders) if not held]  # a set no earlier one holds has an arm
        ctes = outside = ""
        if rest:
            grouped = self._group_sums(" UNION ALL ".join(rest), ["va", "vb"], names, units=units)
            ctes = f"WITH pr AS MATERIALIZED ({grouped}) "
            params += rest_params
            outside = " AND {k} NOT IN (SELECT " + key("g0", "g1") + " FROM pr)"
        arms = []
        for position, i in enumerate(armed):
            own = f"t{i}"
            # the later sets its pairs can be in: its pairs are in no earlier armed set, so in no set one holds
            earlier = armed[:position]
            later = [k for k in range(i + 1, len(joined)) if holders[k].isdisjoint(earlier)]
            columns = [f"{own}.value_a AS va", f"{own}.value_b AS vb",
                       f"{fits(*(known(f't{k}') for k in [i, *later]))} AS fits",
                       f"{total(i, later, net)} AS rows_summed",
                       *(f"{total(i, later, lambda t: amount(t, n))} AS s{m}" for m, n in enumerate(names))]
            sql = f"SELECT {', '.join(columns)} FROM {table} {own}"
            for k in later:
                sql += f" LEFT JOIN {table} t{k} ON {cell_of(k, own)}"
            own_key = key(f"{own}.value_a", f"{own}.value_b")
            sql += f" WHERE {cells(i)}{filtered(own + '.')}{outside.format(k=own_key)}"
            params.extend(condition_params)
            for j in earlier:
                sql += f" AND NOT EXISTS (SELECT 1 FROM {table} t{j} WHERE {cell_of(j, own)})"
            arms.append(sql)
        if rest:  # the rest's pairs, each with its cells
            every = list(range(len(joined)))
            small = [f"abs(pr.s{m}) < {schema.PAIR_UNITS_LIMIT}" for m, n in enumerate(names) if n in units]
            columns = ["pr.g0", "pr.g1", fits("pr.fits = 1", *(known(f"t{k}") for k in every), *small),
                       f"pr.rows_summed + {total(None, every, net)}",
                       *(f"pr.s{m} + {total(None, every, lambda t: amount(t, n))}" for m, n in enumerate(names))]
            sql = f"SELECT {', '.join(columns)} FROM pr"
            for k in every:
                sql += f" LEFT JOIN {table} t{k} ON {cells(k)} AND t{k}.value_a = pr.g0 AND t{k}.value_b = pr.g1"
            arms.append(sql)
        inner = (f"SELECT {', '.join([*_keys(group), *(f's{i}' for i in range(len(names)))])}, fits, rows_summed "
                 f"FROM ({' UNION ALL '.join(arms)}) AS c")
        sql = ctes + self._final(inner, group, names, self._EXACT, order_by=ordered, extra=("fits", "rows_summed"),
                                 line=line)
        try:
            rows = (self._fetch_lines if line else self._fetch)(self._sql(sql), params)
        except sqlite3.OperationalError as exc:  # SQLite: a sum of the rest past 64 bits
            if "integer overflow" not in str(exc):
                raise
            return None
        rows = _in_final_order(rows, group, names, self._EXACT, ordered)
        if not all(r[-2] for r in rows):
            return None
        return [r[:-2] for r in rows if r[-1]]

    def _sum_added(self, parts: list[str], params: list, group: list[str], unit: str) -> list[tuple] | None:
        """:meth:`sum_pairs` of one money measure (SQLite: its integer units column ``unit``) over cell sets all
        added, with no raw rows (``parts``: their cells, as :meth:`sum_pairs` reads them): the cells read as they
        are stored, and summed in a Python dict, not sorted together by SQLite (~10,000 instructions a cell). Top
        movers' previous 24 hours (a day's suffix and the next day's prefix, by team and user: 43,000 cells, 32,000
        groups) so: the whole ``aicost report --period 24h --by team,user`` on the 10 M-row benchmark ledger takes
        4.97 G instructions, 5.48 G with them sorted (a dict of each set's cells made in C, only the groups of both
        added one by one, took no fewer). Every cell of a set stands for a row at least, and nothing is subtracted:
        no group is left empty. None where a cell has no units (the caller sums the texts as usual). ``group``: the
        key expressions over ``va`` / ``vb``."""
        keys = ", ".join(f"NULLIF({g}, '')" for g in group)  # no value: None (see key_sql)
        columns = list(zip(*self._fetch(f"SELECT {keys}, {unit} FROM ({' UNION ALL '.join(parts)}) AS c", params)))
        if not columns:
            return []
        if None in columns[-1]:
            return None
        sums: dict[tuple, int] = {}
        get = sums.get
        for key, units in zip(zip(*columns[:-1]), columns[-1]):
            sums[key] = get(key, 0) + units
        return list(zip(*zip(*sums), _units_texts(sums.values())))

    def sum_rows(self, start: datetime, end: datetime, keys: Sequence[str], *, where: Mapping[str, str] | None = None,
                 measures: Sequence[str] = MEASURES, ordered: bool = False, nonzero: bool = False,
                 _line: _LineFormat | None = None) -> list[tuple]:
        """``measures`` summed in the database over the raw rows and feature runs in ``[start, end)``, grouped by
        report keys (team / feature / user / customer / model / provider / tag / tag:<name> / day / hour), with
        the same measure expressions as the rollups; rows as :meth:`_grouped` returns them, a missing value
        (NULL or '') as None. A row without a tag is in no ``tag`` group. ``ordered`` and ``nonzero``:
        as :meth:`_sums` (``_line``: its ``line``, private)."""
        d = rollup.DIALECTS[self.dialect]
        group = [key_sql(d, k, "ts") for k in keys]
        tags = [k[4:] for k in keys if k.startswith("tag:")]  # a row without the tag is in no group of it
        parts, params = self._raw_parts(
            start, end, where, measures, lambda dims: [f"{sql} AS k{i}" for i, (sql, _) in enumerate(group)],
            column_params=[p for _, key_params in group for p in key_params], uses=[*keys, *(where or {})],
            tags="tag" in keys, conditions=[f"{d.tag_value} IS NOT NULL"] * len(tags), condition_params=tags)
        return self._sums(parts, params, [f"k{i}" for i in range(len(keys))], list(measures), ordered=ordered,
                          nonzero=nonzero, line=_line)

    def _raw_parts(self, start: datetime, end: datetime, where: Mapping[str, str] | None, names: Sequence[str],
                   columns: Callable[[Mapping[str, str]], list[str]], *, column_params: Sequence[Any] = (),
                   uses: Iterable[str] = (), tags: bool = False, conditions: Sequence[str] = (),
                   condition_params: Sequence[Any] = ()) -> tuple[list[str], list]:
        """One SELECT over the raw ledger rows and one over the feature runs of ``[start, end)`` filtered by
        ``where`` (and ``conditions``), summing nothing: ``columns(dims)`` (``dims``: the table's rollup
        dimensions as SQL over its columns), then ``names`` by the rollups' own measure expressions. ``tags``:
        the columns read the tags exploded as ``t``. A table without one of the dimensions a caller ``uses``
        is left out (a feature run has no single model or provider). With the statements' parameters."""
        d = rollup.DIALECTS[self.dialect]
        parts: list[str] = []
        params: list[Any] = []
        for table, exprs, dims, runs in (("aicost_ledger", rollup.row_measures(), rollup.ROW_DIMS, False),
                                         ("aicost_runs", rollup.run_measures(), rollup.RUN_DIMS, True)):
            if any(k in rollup.ROW_DIMS and k not in dims for k in uses):
                continue
            condition, where_params = self._where(start, end, where, runs=runs)
            measure_of = dict(zip(MEASURES, exprs))
            cols = [*columns(dims), *(f"{measure_of[n]} AS {n}" for n in names)]
            join = ", " + d.tag_pairs(f"{table}.tags") if tags else ""
            parts.append(f"SELECT {', '.join(cols)} FROM {table}{join} WHERE {' AND '.join([condition, *conditions])}")
            params.extend([*column_params, *where_params, *condition_params])
        return parts, params

    def _sums(self, parts: Sequence[str], params: list, group: Sequence[str], names: Sequence[str], *,
              summed: bool = True, ordered: bool = False, nonzero: bool = False,
              line: _LineFormat | None = None, counted: str = "COUNT(*)",
              units: Mapping[str, str] | None = None) -> list[tuple]:
        """:meth:`_grouped` over the UNION ALL of ``parts`` (none: no rows). ``units``: as :meth:`_grouped`'s.
        ``line``: where the database
        :attr:`_fills_lines`, each group's ``names`` come back written as one line of text (:class:`_LineFormat`;
        a measure of the line not among ``names`` must be in its ``zero``, else ValueError), after the group's
        values, and then the group's cost as text where ``names`` has it (what the order and top movers read):
        ``(g0, ..., line, cost)``; None instead of the line where it cannot be written exactly (the caller reads
        the measures then). Elsewhere ``line`` is ignored. ``nonzero``: instead, one tuple
        saying of each of ``names`` (counts only) whether any row or cell of ``parts`` holds anything but 0: a
        measure that is 0 in every part is 0 in every group, and a report then need not read it (fetching a
        column of 60,000 zeros costs as much as one of numbers)."""
        if not parts:
            return []
        union = " UNION ALL ".join(parts)
        if nonzero:
            if MONEY_MEASURES.intersection(names):
                raise ValueError("nonzero: counts only (money is text on SQLite)")
            # Each part checked on its own, then the few answers combined: the database scans each table's cells
            # or rows for the flags alone, not their UNION ALL of every column (a week by team and user, two sets
            # of 32,000 cells: 0.10 s on SQLite as a union, 0.04 s part by part).
            flags = ", ".join(f"MAX(CASE WHEN {n} <> 0 THEN 1 ELSE 0 END) AS f{i}" for i, n in enumerate(names))
            each = " UNION ALL ".join(f"SELECT {flags} FROM ({part}) AS part" for part in parts)
            any_ = ", ".join(f"COALESCE(MAX(f{i}), 0)" for i in range(len(names)))
            return self._fetch(self._sql(f"SELECT {any_} FROM ({each}) AS parts"), params)
        return self._grouped(union, params, group, names, summed=summed, ordered=ordered,
                             line=line if self._fills_lines else None, counted=counted, units=units)

    def _grouped(self, union: str, params: list, group: Sequence[str], names: Sequence[str], *,
                 summed: bool = True, ordered: bool = False, line: _LineFormat | None = None,
                 counted: str = "COUNT(*)", units: Mapping[str, str] | None = None) -> list[tuple]:
        """``SELECT <group>, <sums of names> FROM (<union>) GROUP BY <group>``: one tuple per group, the group's
        values then its sums, counts as int and money as exact, canonical decimal text (summed exactly: NUMERIC
        on PostgreSQL; on SQLite, which has no decimal type, see :meth:`SQLiteStore._grouped`). Without
        ``group``, one tuple of totals, or none when ``union`` has no row. ``summed=False``: the caller knows
        every group is one row of ``union`` (one rollup cell): its columns are read as they are, nothing is
        summed. ``ordered``: largest cost first (on SQLite, by the cost as a double: the caller makes the order
        exact), then most calls, then by the group values, each ascending in code point order with NULL (no
        value) as the text 'None': the order of :func:`aicost.ledger.query.spend`. ``line``: as
        :meth:`_sums` (only where the database :attr:`_fills_lines`). ``counted``: SQL summing how many rows a group
        stands for (``SUM(net)`` where parts are subtracted); a group of none is left out. ``units``: money
        measure -> a column of ``union`` holding its integer units where known (SQLite's pair cells: summed as
        they are; elsewhere NULL, and the amount's text is converted); only SQLite has them."""
        raise NotImplementedError

    _COLLATE = ""  # how this database compares text in code point order

    # What the money of :meth:`_group_sums` and :meth:`_sum_joined` holds, as :meth:`_final` reads it: 'units'
    # (SQLite's integers of 10**-UNIT_DIGITS dollars) or 'numeric'.
    _EXACT = "numeric"

    def _group_sums(self, union: str, group: Sequence[str], names: Sequence[str], counted: str = "SUM(net)",
                    units: Mapping[str, str] | None = None) -> str:
        """``SELECT g0.., s0.. (the sums of names, money as _EXACT says), fits, rows_summed FROM (union) GROUP BY
        group``: ``fits`` 0 where a group's money could not be summed exactly that way, ``rows_summed`` the
        ``counted`` SQL; ``units`` as :meth:`_grouped`'s."""
        raise NotImplementedError

    def _final(self, inner: str, group: Sequence[str], names: Sequence[str], money: str, *,
               order_by: bool = False, extra: Sequence[str] = (), line: _LineFormat | None = None) -> str:
        """The outer SELECT of :meth:`_grouped` over ``inner`` (columns g0.. for the group, s0.. for ``names``):
        the group's values ('' as NULL: no value, see :func:`key_sql`), the measures (money as canonical text), then
        ``extra`` columns of ``inner``. ``order_by``: in :meth:`_grouped`'s order, which the database sorts, but on
        SQLite's integer path (``money`` 'units'): there the rows come back unsorted, each followed by its ranks'
        integers (:func:`_ranked`), and the caller passes them through :func:`_in_final_order` (SQLite's sorter
        moves every column of every row:
        on 24 hours by team and user, 32,000 rows, it took 0.47 G instructions, the sort in Python about 0.27 G with
        the ranks fetched; elsewhere the database's sort is cheaper than fetching the keys and sorting in Python).
        ``money`` says what the s columns of money hold: 'units' (SQLite's integer path), 'text' or 'numeric'.
        ``line``: the measures written as one line (:meth:`_line_sql`) instead of a column each, followed by the
        cost's column where ``names`` has it."""
        out = [f"NULLIF(r.g{i}, '')" for i in range(len(group))]  # no value: NULL (see key_sql)
        rank = {}
        for i, name in enumerate(names):
            col = f"r.s{i}"
            if name not in MONEY_MEASURES:
                out.append(col)
            elif money == "units":
                out.append(rollup.SQLITE.from_units(col))
            else:
                out.append(col if money == "text" else f"trim_scale({col})::text")
            if name in _RANKS:
                rank[name] = f"CAST({col} AS REAL)" if name == "cost" and money == "text" else col
        ranks = [rank[name] for name in _ranked(names)]
        if _sorted_in_python(money, order_by):  # the ranks' integers after the rest, for _in_final_order
            return f"SELECT {', '.join([*out, *extra, *ranks])} FROM ({inner}) AS r"
        # no value and the text 'None' read alike: the text first, so the order is total
        ties = [t for e in out[:len(group)] for t in (f"COALESCE({e}, 'None'){self._COLLATE}", f"({e} IS NULL)")]
        if line is not None:  # sorted below, then written: not ~1 KB of text per sorted row
            text, below = self._line_sql(line, names)
            out[len(group):] = [text, *(out[len(group) + i] for i, name in enumerate(names) if name == "cost")]
            below += [f"{e} AS t{i}" for i, e in enumerate(ties)]
            inner = f"SELECT r.*, {', '.join(below) or '1 AS t'} FROM ({inner}) AS r"
            if order_by and (ranks or ties):
                inner += f" ORDER BY {', '.join([*(f'{e} DESC' for e in ranks), *ties])}"
                ties = [f"r.t{i}" for i in range(len(ties))]  # the same order: no second sort
            else:
                inner += " OFFSET 0"  # a level of its own: what it computes, it computes once
        sql = f"SELECT {', '.join([*out, *extra])} FROM ({inner}) AS r"
        if order_by and (ranks or ties):
            sql += " ORDER BY " + ", ".join([*(f"{e} DESC" for e in ranks), *ties])
        return sql

    def _line_sql(self, line: _LineFormat, names: Sequence[str]) -> tuple[str, list[str]]:
        """The SQL of :meth:`_final`'s one text column for ``line`` (over its s0.. columns, sums of ``names``), and
        the columns it reads that the query level below it computes (``expression AS name``)."""
        raise NotImplementedError

    def time_range(self) -> tuple[datetime, datetime] | None:
        low, high = self._fetch("SELECT MIN(ts), MAX(ts) FROM aicost_ledger", [])[0]
        if low is None:
            return None
        return _parse_ts(low), _parse_ts(high)

    def schema_version(self) -> int:
        (version,) = self._fetch("SELECT MAX(version) FROM aicost_schema", [])[0]
        return int(version or 0)

    def _stream(self, sql: str, params: list, named: bool = True) -> Iterator[tuple]:
        raise NotImplementedError

    _BEGIN_READ = "BEGIN"

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every sum read inside sees one state of the ledger: a report's totals, its zero check, its groups and
        its movers are separate statements, and a writer adding rows between them would make the groups disagree
        with the totals. One read transaction on the store's own connection, holding the store's lock (so this
        store's other users wait; other connections, such as a writer's, go on writing)."""
        with self._lock:
            if self._reading:  # inside a snapshot already (a report's): its reads are this one's
                yield
                return
            with self._reading_failures():
                cur = self._cursor()
                cur.execute(self._BEGIN_READ)
            self._reading = True
            try:
                yield
            except BaseException:
                self._reading = False
                with contextlib.suppress(Exception):  # the connection the read lost cannot end it: its error is told
                    cur.execute("COMMIT")
                raise
            self._reading = False
            with self._reading_failures():
                cur.execute("COMMIT")  # read only: nothing to keep or lose

    def _fetch(self, sql: str, params: list) -> list[tuple]:
        """All result rows of a short query (sums), on the store's own connection."""
        with self._lock, self._reading_failures():
            cur = self._cursor()
            cur.execute(sql, params)
            return cur.fetchall()

    def _row(self, v: tuple) -> LedgerRow:
        n = len(TOKEN_FIELDS)
        tokens = dict(zip(TOKEN_FIELDS, (int(x) for x in v[11:11 + n])))
        (audio_seconds, estimated, cost, cost_parts, price_known, price_source, price_model, saved_cost,
         stopped_cost, cache_name, budget, team, feature, user, customer, tags, run_id, outcome, error_type,
         duration_s, vendor_project, api_key_fingerprint, price_unknown_reason) = v[11 + n:]
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
            price_unknown_reason=price_unknown_reason,
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
    return "{" + ",".join([f'"{k}":"{format_usd(v)}"' for k, v in sorted(parts.items())]) + "}"


_tags_seen: dict[tuple, str] = {}


def _tags_json(tags: Mapping[str, str]) -> str | None:
    """Tags as JSON text, remembered: a ledger's rows repeat a few tag sets (env, region...), and encoding is a
    good part of a row's cost. Bounded: forgotten wholesale past 4,096 sets. A tag whose name breaks the tag name
    rule is left out (:func:`_named_tags`); None when no tag is left."""
    key = tuple(tags.items())
    try:
        text = _tags_seen.get(key)  # only sets of text are remembered, and nothing but text equals text
    except TypeError:  # an unhashable value: encoded, never remembered
        tags = _named_tags(tags)
        return _JSON.encode(tags) if tags else None
    if text is None:
        if not all(type(k) is str and type(v) is str for k, v in key):  # 1 == True == 1.0 as keys: only text
            tags = _named_tags(tags)  # is remembered
            return _JSON.encode(tags) if tags else None
        named = _named_tags(tags)
        if not named:
            return None
        if len(_tags_seen) >= 4096:
            _tags_seen.clear()
        text = _tags_seen[key] = _JSON.encode(named)
    return text


def _named_tags(tags: Mapping[str, Any]) -> Mapping[str, Any]:
    """``tags`` without those whose name breaks :data:`aicost.semconv.TAG_NAME_RULE` (logged once each). The
    rollups keep a tag as the text 'name=value' and SQLite reads one as a JSON path label, so a name with '=' or
    a '"' would be misread (tag 'a=b' counted as tag 'a' with value 'b=...'). The SDK never makes such a name; a
    span from elsewhere (the span exporter) or a hand-made row can. A NUL in a value is replaced (:func:`_no_nul`)
    here, in every batch, not left to :func:`_storable` (which repairs texts only once a write is refused):
    SQLite's JSON and string functions end a text at a NUL without refusing it, so no refusal would come."""
    if not all(semconv.is_tag_name(name) for name in tags):
        for name in tags:
            if not semconv.is_tag_name(name):
                tag_name_left_out(name)
        tags = {name: value for name, value in tags.items() if semconv.is_tag_name(name)}
    if any(type(value) is str and "\0" in value for value in tags.values()):
        tags = {name: _no_nul(value) if type(value) is str else value for name, value in tags.items()}
    return tags


def _no_nul(text: str) -> str:
    """``text`` with each NUL character replaced by U+FFFD, logged once. PostgreSQL text and JSON cannot hold a NUL
    (the batch's whole write failed, again at each retry), and SQLite's JSON and string functions end a text at
    one (the rollups summed tag values 'p\\0q' and 'p\\0r' as one value 'p')."""
    log_once("ledger:nul", logging.WARNING, "aicost ledger: a text value with a NUL character (a span from "
             "elsewhere?) is stored with U+FFFD in its place")
    return text.replace("\0", "\ufffd")


_UNSTORABLE = re.compile("[\0\ud800-\udfff]")  # NUL, and a lone surrogate, which no UTF-8 encoding takes


def _storable_text(text: str) -> str:
    """``text`` with each NUL (:func:`_no_nul`) and each lone surrogate replaced by U+FFFD, logged once. A
    surrogate (JSON's ``"\\ud800"`` read into a model name, text decoded with ``surrogateescape``) cannot be encoded
    as UTF-8 for either database: its row was refused and dropped, its spend with it."""
    if "\0" in text:
        text = _no_nul(text)
    if _UNSTORABLE.search(text) is None:
        return text
    log_once("ledger:surrogate", logging.WARNING, "aicost ledger: a text value with a lone surrogate (invalid "
             "Unicode) is stored with U+FFFD in its place")
    return _UNSTORABLE.sub("\ufffd", text)


def _storable(items: Sequence[Any]) -> Sequence[Any]:
    """Rows or runs with every text, tag values included, made storable (:func:`_storable_text`): copies of those
    that had one that was not; ``items`` itself when none had. Only on a write refused for its text (rare: a NUL on
    PostgreSQL, a lone surrogate on either), so the common batch is never scanned for it. NULs in tag values are
    not left to this: :func:`_named_tags` replaces them in every batch, as SQLite stores them without a refusal."""
    out = []
    for item in items:
        changed: dict[str, Any] = {}
        for f in fields(item):
            value = getattr(item, f.name)
            if type(value) is str and _UNSTORABLE.search(value):
                changed[f.name] = _storable_text(value)
            elif f.name == "tags" and value and any(type(v) is str and _UNSTORABLE.search(v) for v in value.values()):
                changed["tags"] = {name: _storable_text(v) if type(v) is str else v for name, v in value.items()}
        out.append(replace(item, **changed) if changed else item)
    return out if any(map(operator.is_not, out, items)) else items


def _up_to_date(current: int | None, setting: str, where: str) -> bool:
    """Whether a ledger whose schema version reads ``current`` (None: no schema table) needs no migration, so
    opening it takes no lock: a report does not wait for a writer's batch, and a database user who may only read
    can run it. A newer schema is refused here already."""
    if current is None:
        return False
    _refuse_newer(int(current), setting, where)
    return int(current) == SCHEMA_VERSION


def _not_a_ledger(setting: str, where: str) -> ConfigurationError:
    """A reader (``create=False``) pointed at a database that holds no ledger: it writes nothing there."""
    return ConfigurationError(f"{setting}: no ledger at {where!r} (not an aicost ledger: no aicost_schema table)")


def _refuse_newer(current: int, setting: str, where: str) -> None:
    """A ledger written by a newer aicost is refused with its version, never misread."""
    if current > SCHEMA_VERSION:
        raise LedgerSchemaError(
            f"{setting}: the ledger {where!r} has schema version {current}, newer than this aicost reads "
            f"(version {SCHEMA_VERSION}); upgrade aicost to use it")


# SQLite's messages for an error raised inside a function aicost registered (aicost_dec_sum, aicost_dec_add): they
# only fail on the values they are given (an amount their 60 digits cannot add exactly).
_SQLITE_FUNCTION_FAILED = ("user-defined function raised exception", "user-defined aggregate's")


def _refusal(exc: BaseException) -> str | None:
    """Why ``exc`` is the database refusing a write's data, not the database being unreachable or a bug; None if
    it is not. Refusals: a constraint or a value the database cannot hold (SQLite's IntegrityError and DataError,
    PostgreSQL's SQLSTATE classes 22 and 23, psycopg's DataError and IntegrityError), a value the driver cannot
    bind or encode (SQLite's "Error binding parameter", a UnicodeError, an integer past 64 bits: OverflowError, a
    decimal error), and on SQLite an error inside aicost's own SQL functions. The reason names
    the error, never a value (PostgreSQL's message would quote it: its SQLSTATE is given instead)."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError)):
        return f"SQLite {type(exc).__name__}: {exc}"  # SQLite names the constraint or the limit, not the value
    if isinstance(exc, sqlite3.OperationalError):
        if str(exc).startswith(_SQLITE_FUNCTION_FAILED):
            return "an amount SQLite's exact decimal sum (aicost_dec_sum, aicost_dec_add) cannot add"
        return None
    if isinstance(exc, sqlite3.ProgrammingError) and str(exc).startswith("Error binding parameter"):
        return f"SQLite {type(exc).__name__}: {exc}"  # the parameter's place and type, not its value
    if isinstance(exc, (UnicodeError, OverflowError, decimal.DecimalException)):  # (a UnicodeError's message
        # quotes the character)
        return f"{type(exc).__name__}: a value the database cannot hold"
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)):
        return f"PostgreSQL {type(exc).__name__} (SQLSTATE {exc.sqlstate or 'none: refused by the driver'})"
    return None


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


# SQLite's primary result codes (and their messages) that say the file cannot be read, not that a statement failed:
# locked past busy_timeout, an I/O error (a short read: the WAL truncated under its reader), damaged ("database disk
# image is malformed": the main file truncated under its reader, pages overwritten), gone, not a database.
_SQLITE_FILE_FAILURES = {5: "database is locked", 10: "disk I/O error", 11: "database disk image is malformed",
                         14: "unable to open database file", 26: "file is not a database"}


# Of those, the ones that say the file's content cannot be read, not that it is busy or cannot be opened: an I/O
# error, malformed, not a database (LedgerUnavailable's state "damaged").
_SQLITE_DAMAGED = frozenset({10, 11, 26})


def _file_failure(exc: BaseException) -> int | None:
    """The primary result code of ``exc`` when it is SQLite failing to read the ledger's file
    (:data:`_SQLITE_FILE_FAILURES`), else None: by its result code (``sqlite_errorcode``, Python 3.11+), else by
    SQLite's message for it."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF if code & 0xFF in _SQLITE_FILE_FAILURES else None
    text = str(exc)
    return next((code for code, message in _SQLITE_FILE_FAILURES.items() if text.startswith(message)), None)


def _is_file_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite failing to read the ledger's file (:func:`_file_failure`)."""
    return _file_failure(exc) is not None


def _is_damaged_file(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite unable to read the ledger file's content (:data:`_SQLITE_DAMAGED`)."""
    return _file_failure(exc) in _SQLITE_DAMAGED


# ------------------------------------------------------------------------------------------------------- SQLite
_ZERO = Decimal(0)


def _dec_add(a: Any, b: Any) -> str:
    return decimal_text(MONEY.add(Decimal(a or 0), Decimal(b or 0)))  # type: ignore[return-value]


class _DecSum:
    """SQLite aggregate ``aicost_dec_sum(text)``: the exact sum of decimal texts, as canonical text ('0' for none).
    Steps only collect the texts (the per-row callback is the cost; NULLs are skipped); the sum is one C-level
    pass at the end, in aicost's money context, which raises rather than rounds."""

    __slots__ = ("texts", "step")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.step = self.texts.append

    def finalize(self) -> str:
        if not self.texts:
            return "0"
        return decimal_text(reduce(MONEY.add, map(Decimal, filter(None, self.texts)), _ZERO))  # type: ignore


def _units_texts(units: Iterable[int]) -> Iterator[str]:
    """Integer units of 10**-UNIT_DIGITS dollars (not negative) as canonical money texts, as SQLite's
    ``from_units`` writes them: no trailing zeros, no exponent, '0' for zero (mapped in C: 32,000 of them)."""
    texts = map(_UNITS_FORMAT.__mod__, map(divmod, units, repeat(_UNIT)))
    return map(str.rstrip, map(str.rstrip, texts, repeat("0")), repeat("."))


_UNIT = 10 ** rollup.UNIT_DIGITS
_UNITS_FORMAT = f"%d.%0{rollup.UNIT_DIGITS}d"


def key_sql(d: "rollup.Dialect", key: str, time: str, value: str | None = None) -> tuple[str, list]:
    """A report's group-by key as an SQL expression (and its parameters): over the time column ``time``, and
    either a rollup cell's ``value`` column (one dimension; a tag as 'name=value'; '' for no value, which
    :meth:`LedgerStore._final` reads as NULL: grouping on the stored text rather than on an expression of it
    takes 14 % fewer instructions for three sets of 32,000 pair cells) or, when ``value`` is None, a raw row's
    own columns, '' (no value) as NULL (a ``tag`` key reads the tags exploded as ``t``)."""
    if key == "day":
        return d.day_text(time), []
    if key == "hour":
        return d.hour_text(time), []
    if value is not None:
        if key.startswith("tag:"):
            return f"substr({value}, {len(key) - 4 + 2})", []  # after 'name='
        return value, []
    if key == "tag":
        return "t.key || '=' || t.value", []
    if key.startswith("tag:"):
        return f"NULLIF({d.tag_value}, '')", [key[4:]]
    return f"NULLIF({_COLUMN_OF.get(key, key)}, '')", []


# At most this many pair cell sets are joined by primary key (the others are grouped with the raw rows): a report
# reads three or four (24 or 48 hours: days, hour prefixes), and the integer path's sum of a cell of each and the
# grouped rest's, each under PAIR_UNITS_LIMIT, stays under 2**63.
JOIN_MAX = 4
assert schema.PAIR_UNITS_LIMIT * (JOIN_MAX + 1) < 2 ** 63


def _join_order(sets: Sequence[tuple[int, datetime, int]], measures: int
                ) -> list[tuple[int, datetime, int]] | None:
    """Of pair cell sets (days, start, sign), those :meth:`LedgerStore._sum_joined` reads by primary key, in its
    order: the sets added, the longest first, then those subtracted, the longest first (so a set holding an earlier
    part of another's rows comes after it: a window prefix after a longer one, an hour prefix after its day's
    cells), JOIN_MAX at most. None where no set is added (nothing would drive the join), or where ``measures`` is
    1 and a set other than the first would need an arm of its own: each of its cells, and each of the first set's,
    then costs a primary key lookup in the other (~11,000 instructions on SQLite), and for one measure sorting the
    cells together costs less. The previous 24 hours' costs by team and user on the benchmark ledger (a day's
    cells less an hour prefix, and the next day's prefix): 1.41 G instructions summed together, 1.78 G joined;
    with every measure, 3.21 G against 2.80."""
    if not any(sign > 0 for _, _, sign in sets):
        return None
    order = sorted(sets, key=lambda s: (s[2] < 0, -_length(s[0], s[1])))[:JOIN_MAX]
    return None if measures == 1 and not all(_holders(order)[1:]) else order


def _holders(sets: Sequence[tuple[int, datetime, int]]) -> list[set[int]]:
    """For each of ``sets`` (in :func:`_join_order`'s order), the earlier ones that hold it
    (:func:`_holds_before`): a set held holds no pair its holder lacks, so it has no arm of its own in
    :meth:`LedgerStore._sum_joined`, and an arm whose pairs are in none of its holders need not look it up."""
    return [{j for j in range(i) if _holds_before(sets[j][:2], s[:2])} for i, s in enumerate(sets)]


def _length(days: int, start: datetime) -> timedelta:
    low, high = _span(days, start)
    return high - low


def _holds_before(plus: tuple[int, datetime], minus: tuple[int, datetime]) -> bool:
    """Whether the cell set ``minus`` holds the rows of an earlier part of the span of ``plus`` (the same start,
    an earlier end), so every pair of ``minus`` is one of ``plus``: the join meets each pair once."""
    (start_a, end_a), (start_b, end_b) = _span(*plus), _span(*minus)
    return start_a == start_b and end_a > end_b


def _span(days: int, start: datetime) -> tuple[datetime, datetime]:
    """The time a pair cell set holds the rows of: ``days`` days from ``start``; an hour prefix
    (:data:`pairs.PREFIX`), its day's rows before ``start``; an hour suffix (:data:`pairs.SUFFIX`), from it on."""
    if days == pairs.PREFIX:
        return midnight(start), start
    return (start, midnight(start) + DAY) if days == pairs.SUFFIX else (start, start + days * DAY)


def _rollup_dim(key: str) -> str:
    """The rollup dimension of a report key: a tag's, whatever its name ('tag:env' -> 'tag')."""
    return "tag" if key.startswith("tag") else key


def _keys(group: Sequence[str]) -> list[str]:
    return [f"{e} AS g{i}" for i, e in enumerate(group)]


def _cells(union: str, group: Sequence[str], names: Sequence[str]) -> str:
    """The rows of ``union`` as :meth:`LedgerStore._final` reads them (g0.., s0..), nothing summed."""
    sums = [f"{n} AS s{i}" for i, n in enumerate(names)]
    return f"SELECT {', '.join([*_keys(group), *sums])} FROM ({union}) AS parts"


def _group_by(group: Sequence[str]) -> str:
    return f" GROUP BY {', '.join(str(i + 1) for i in range(len(group)))}" if group else ""


_RANKS = ("cost", "calls")  # a report's groups: largest cost first, then most calls (then by their values)


def _ranked(names: Sequence[str]) -> list[str]:
    """Those of ``names`` a report's groups are ordered by, in that order (:data:`_RANKS`)."""
    return [name for name in _RANKS if name in names]


def _sorted_in_python(money: str, order_by: bool) -> bool:
    """Whether :meth:`LedgerStore._final` leaves its order to :func:`_in_final_order`: on SQLite's integer path,
    where the ranks are exact integers and SQLite's sorter would move every column of every row."""
    return order_by and money == "units"


def _in_final_order(rows: list[tuple], group: Sequence[str], names: Sequence[str], money: str,
                    order_by: bool) -> list[tuple]:
    """The rows of a :meth:`LedgerStore._final` statement (the same ``group``, ``names``, ``money`` and
    ``order_by``) in its order: as fetched where the database sorted them, else sorted here."""
    if not _sorted_in_python(money, order_by):
        return rows
    return _in_report_order(rows, len(group), len(_ranked(names)))


def _in_report_order(rows: list[tuple], keys: int, ranks: int) -> list[tuple]:
    """``rows`` (``keys`` group values first, then the rest, then ``ranks`` integers) in the order
    :meth:`LedgerStore._final`'s ORDER BY gives: the ranks largest first (NULL last), then each group value in code
    point order, no value (None) read as the text 'None' and after it. Returned without the ranks. One sort of a
    tuple per row, mapped in C (two stable sorts, by the values and then by the ranks as one integer, took a little
    more: 24 hours and 7 days by team and user)."""
    width = len(rows[0]) - ranks if rows else 0
    cut = operator.itemgetter(slice(width))
    if len(rows) < 2 or not ranks + keys:
        return list(map(cut, rows))
    order: list[Iterable] = []
    for i in range(width, width + ranks):
        column = list(map(operator.itemgetter(i), rows))
        order.append(map(operator.neg, column) if None not in column else
                     [math.inf if v is None else -v for v in column])
    for i in range(keys):
        column = list(map(operator.itemgetter(i), rows))
        if None in column:
            order += [["None" if v is None else v for v in column], map(operator.is_, column, repeat(None))]
        else:
            order.append(column)
    by = list(zip(*order))
    return list(map(cut, map(rows.__getitem__, sorted(range(len(rows)), key=by.__getitem__))))


def _sqlite_sums(union: str, group: Sequence[str], names: Sequence[str], *, units: bool,
                 counted: str = "COUNT(*)", known: Mapping[str, str] | None = None) -> str:
    """The grouped sums of ``union`` on SQLite (:meth:`SQLiteStore._grouped`): g0.. the group's values, s0.. the
    sums of ``names``, ``fits`` whether they are exact, ``rows_summed``. ``units``: money summed as integers of
    10**-UNIT_DIGITS dollars (``fits`` says whether every amount allowed it); otherwise as canonical decimal text
    by the exact Decimal aggregate (``fits`` is 1). ``known``: money measure -> a column of ``union`` holding its
    units where known (the pair cells'), taken as they are; the text is converted where it is NULL."""
    keys = _keys(group)
    if not units:
        sums = [f"{rollup.SQLITE.money_sum(n) if n in MONEY_MEASURES else f'SUM({n})'} AS s{i}"
                for i, n in enumerate(names)]
        return (f"SELECT {', '.join([*keys, *sums])}, 1 AS fits, {counted} AS rows_summed FROM ({union}) AS parts"
                f"{_group_by(group)}")
    to_units = rollup.SQLITE.to_units
    assert to_units is not None
    money = [n for n in names if n in MONEY_MEASURES]
    known = known or {}

    def amount_units(n: str) -> str:  # the known units, else the text's (a CASE computes only the one it returns)
        text = to_units(n)  # type: ignore[misc]
        return f"CASE WHEN {known[n]} IS NOT NULL THEN {known[n]} ELSE {text} END" if n in known else text

    def amount_fits(n: str) -> str:
        text = (f"({n} IS NULL OR (abs({n}) < {rollup.UNIT_LIMIT} AND (instr({n}, '.') = 0 OR "
                f"length({n}) - instr({n}, '.') <= {rollup.UNIT_DIGITS})))")
        return f"CASE WHEN {known[n]} IS NOT NULL THEN 1 ELSE {text} END" if n in known else text

    fits = " AND ".join(f"({amount_fits(n)})" for n in money) or "1"
    # The sums get names of their own (s0, s1...): inside the SELECT, a measure's name is the column summed.
    sums = [f"COALESCE(SUM({amount_units(n)}), 0) AS s{i}" if n in MONEY_MEASURES else f"SUM({n}) AS s{i}"
            for i, n in enumerate(names)]
    return (f"SELECT {', '.join([*keys, *sums])}, MIN({fits}) AS fits, {counted} AS rows_summed "
            f"FROM ({union}) AS parts{_group_by(group)}")


_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"


_SQLITE_BUSY_MS = 30_000  # how long a write waits for another process's write to end
# A write waits for another connection's write lock in slices this long (BEGIN IMMEDIATE, tried again after each):
# between two, it sees a cut() (LedgerStore.cut), which SQLite's interrupt() would not reach in its busy wait
_SQLITE_WAIT_SLICE_MS = 100


def _sqlite_ts(value: datetime) -> str:
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    # = _SQLITE_TS, several times faster: 'YYYY-MM-DD HH:MM:SS.ffffff' and the '+00:00' cut off
    return value.isoformat(" ", "microseconds")[:26]


class SQLiteStore(LedgerStore):
    dialect = "sqlite"

    def __init__(self, path: Path, *, create: bool, setting: str, reopen: bool = False,
                 wait_s: float | None = None) -> None:
        super().__init__()
        self.path = path
        self.url = f"sqlite:///{path}"
        self._reopen = reopen  # the URL was accepted before: a file SQLite cannot read is the ledger lost since
        if str(path) == ":memory:":  # sqlite3's name for a database of this connection alone, gone at exit
            raise ConfigurationError(f"{setting}: an in-memory SQLite ledger would lose every row when the process "
                                     f"exits, and no report could read it; give a file, {_ACCEPTED}")
        if not create and not path.is_file():
            raise ConfigurationError(f"{setting}: no ledger at {str(path)!r} (the file does not exist)")
        if not path.parent.is_dir():
            raise ConfigurationError(
                f"{setting}: the directory of the SQLite ledger {str(path)!r} does not exist; create it or use {_ACCEPTED}")
        wait_ms = _SQLITE_BUSY_MS if wait_s is None else max(1, min(_SQLITE_BUSY_MS, int(wait_s * 1000)))
        with self._closed_if_refused():
            self._open(create, setting, wait_ms)

    def _open(self, create: bool, setting: str, wait_ms: int) -> None:
        """Connect and migrate, waiting for another process's lock up to ``wait_ms`` (open_store's ``wait_s``); the
        writes then wait up to the busy timeout, :data:`_SQLITE_BUSY_MS`."""
        path = self.path
        try:
            self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                         timeout=wait_ms / 1000)
            if not create and not self._conn.execute(  # before WAL mode, which a reader would write to the file
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'aicost_schema'").fetchone():
                raise _not_a_ledger(setting, str(path))
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise self._refused(exc, f"{setting}: cannot open the SQLite ledger {str(path)!r}: {exc}") from exc
        self._conn.create_function("aicost_dec_add", 2, _dec_add, deterministic=True)
        self._conn.create_aggregate("aicost_dec_sum", 1, _DecSum)
        self._conn.execute("PRAGMA temp_store=MEMORY")
        self._stage_attached = False
        self._waiting_lock = False  # inside _begin's wait for another connection's write lock
        self._migrate(setting)
        self._set_limit(None)  # the busy timeout of the writes

    def _migrate(self, setting: str) -> None:
        conn = self._conn
        try:
            try:
                (current,) = conn.execute("SELECT MAX(version) FROM aicost_schema").fetchone()
            except sqlite3.OperationalError:  # no schema table yet: a new ledger, created below
                current = None
            if _up_to_date(current, setting, str(self.path)):
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(schema.schema_table_ddl("sqlite"))
                (current,) = conn.execute("SELECT MAX(version) FROM aicost_schema").fetchone()
                current = int(current or 0)
                _refuse_newer(current, setting, str(self.path))
                _apply(conn, "sqlite", current, self._ts(datetime.now(timezone.utc)))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise self._refused(exc, f"{setting}: {str(self.path)!r} is not a usable SQLite ledger: {exc}") from exc

    def _refused(self, exc: sqlite3.DatabaseError, message: str) -> AicostError:
        """Why the file cannot be opened as a ledger: ``message``, a ConfigurationError, unless the store is opened
        again (open_store's ``reopen``: the URL was accepted before) and SQLite cannot read the file
        (:func:`_is_file_failure`): then the ledger was lost since, :class:`LedgerUnavailable`, as for a read of an
        open store."""
        if self._reopen and _is_file_failure(exc):
            return self._unavailable(exc)
        return ConfigurationError(message)

    _ts = staticmethod(_sqlite_ts)

    def _money(self, value: Decimal | None) -> str | None:
        return None if value is None else format_usd(value)

    def _json(self, value: Mapping[str, Any]) -> str | None:
        return _tags_json(value) if value else None

    def _bool(self, value: bool) -> int:
        return 1 if value else 0

    def _tag_condition(self) -> str:
        return "json_extract(tags, '$.\"' || ? || '\"') = ?"

    def _in_ids(self, column: str) -> str:
        return f"{column} IN (SELECT value FROM json_each(?))"

    def _id_list(self, ids: list[str]) -> str:
        return json.dumps(ids)

    def _cursor(self) -> Any:
        return self._conn.cursor()

    def _stage(self, row_params: list[tuple], run_params: list[tuple]) -> bytes | None:
        return stage_batch(row_params, run_params) if can_stage() and (row_params or run_params) else None

    def _set_limit(self, ms: int | None) -> None:
        # A write waits for another process's write no longer than the limit (BEGIN IMMEDIATE: "database is
        # locked", :meth:`_begin`); its own statements are not interrupted (a batch's work is bounded by its size).
        self._wait_ms = _SQLITE_BUSY_MS if ms is None else min(ms, _SQLITE_BUSY_MS)
        try:
            self._conn.execute(f"PRAGMA busy_timeout={self._wait_ms}")
        except sqlite3.ProgrammingError:  # closed meanwhile
            pass

    def _begin(self) -> None:
        """BEGIN IMMEDIATE: wait for another connection's write lock up to the busy timeout (or
        :meth:`time_limit`'s), in slices of :data:`_SQLITE_WAIT_SLICE_MS`, so that a :meth:`cut` from another
        thread ends the wait within one (the connection is SQLite's to use meanwhile: nothing else can change its
        wait). Still locked at the end: "database is locked", as a single wait would fail."""
        conn = self._conn
        end = time.monotonic() + self._wait_ms / 1000
        self._waiting_lock = True  # what cut() can end (_interrupt); set before cut_short is read, as cut() does
        try:
            while True:
                left = max(0, int((end - time.monotonic()) * 1000))
                conn.execute(f"PRAGMA busy_timeout={min(left, _SQLITE_WAIT_SLICE_MS)}")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if left <= _SQLITE_WAIT_SLICE_MS or _file_failure(exc) != 5:  # not SQLITE_BUSY: failed
                        raise
                else:
                    self._waiting_lock = False
                    if self._cut_short:  # cut as the lock was taken: cut() said so, the write ends here too
                        conn.execute("ROLLBACK")
                        raise self._unavailable(_CUT_DETAIL)
                    return
                if self._cut_short:
                    raise self._unavailable(_CUT_DETAIL)
        finally:
            self._waiting_lock = False
            with contextlib.suppress(sqlite3.Error):  # the transaction's statements wait as long as the write may
                conn.execute(f"PRAGMA busy_timeout={self._wait_ms}")

    def _interrupt(self, until: float | None) -> bool:
        # Only a wait for another connection's lock ends (_begin looks at cut_short between its slices); a write
        # past it runs its statements to their end (bounded by its batch's size): not cut, it ends by itself.
        return self._waiting_lock

    def _write(self, batch: PreparedBatch) -> int:
        conn = self._conn
        if batch.staged is not None:
            self._attach_stage(batch.staged)
        self._begin()
        try:
            cur = conn.cursor()
            staged = batch.staged is not None and self._insert_staged(cur)
            if not staged:  # some of it stored already: the rest, still staged unless its encoding changed
                new = self._new_in(cur, batch)
                staged = (new is not batch and new.staged is not None and bool(new.rows or new.runs)
                          and self._insert_staged(cur))
                batch = new
            if staged:
                self._set_outcomes(cur, batch)  # the staged rows and runs (all new) went in, and are summed
                self._update_rollups(cur, batch, stage=STAGE)
            else:
                cur.executemany(_INSERT_ROW, batch.row_params)
                cur.executemany(_INSERT_RUN, batch.run_params)
                self._set_outcomes(cur, batch)
                self._update_rollups(cur, batch)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(batch.rows)

    def _insert_staged(self, cur: Any) -> bool:
        """Insert the staged rows and runs as they are; True if none of them was stored yet. One stored already
        (a replay, another process first) fails the insert on its key: the savepoint undoes the insert, and the
        caller takes the by-id path (which raises any other constraint's error itself). No query beforehand: the
        insert checks each key anyway."""
        cur.execute("SAVEPOINT aicost_staged")
        try:
            cur.execute(_STAGE_ROWS)
            cur.execute(_STAGE_RUNS)
        except sqlite3.IntegrityError:
            cur.execute("ROLLBACK TO aicost_staged")
            cur.execute("RELEASE aicost_staged")
            return False
        cur.execute("RELEASE aicost_staged")
        return True

    def _unstage(self, cur: Any, staged: Any, new_rows: list[bool], new_runs: list[bool]) -> Any:
        """The stage (attached: the write is under way) keeps only the new rows and runs: the stored ones are
        deleted from it, by their place in the batch (the staged rowids are 1, 2, ... in batch order)."""
        for table, new in (("aicost_ledger", new_rows), ("aicost_runs", new_runs)):
            stored = [i for i, is_new in enumerate(new, 1) if not is_new]
            if stored:
                cur.execute(f"DELETE FROM {STAGE}.{table} WHERE rowid IN (SELECT value FROM json_each(?))",
                            [json.dumps(stored)])
        return staged

    def _set_outcomes(self, cur: Any, batch: PreparedBatch) -> None:
        outcomes = self._outcomes(cur, batch.rows, batch.runs)
        if outcomes:
            cur.execute(_SET_OUTCOMES, [json.dumps({run_id: outcome for outcome, run_id in outcomes})])

    def write_prepared(self, batch: PreparedBatch) -> int:
        with self._lock:  # (reentrant) no other write attaches its image before this one's is detached
            try:
                return super().write_prepared(batch)
            finally:
                self._detach_stage()

    def _attach_stage(self, image: bytes) -> None:
        """The staged image as the schema ``aicost_stage`` of this connection (outside a transaction), until
        :meth:`_detach_stage` at the end of the write that uses it."""
        if not self._stage_attached:
            self._conn.execute(f"ATTACH DATABASE ':memory:' AS {STAGE}")
            self._stage_attached = True
        self._conn.deserialize(image, name=STAGE)

    def _detach_stage(self) -> None:
        """Detach the staged image, which frees its memory (about 7 MB for a batch of 20,000 rows) rather than
        keeping it until the next write, maybe long after. Should that fail, the image stays attached and the
        next write's image replaces it."""
        if self._stage_attached:
            try:
                self._conn.execute(f"DETACH DATABASE {STAGE}")
            except sqlite3.Error:
                return
            self._stage_attached = False

    def _execute_many(self, statements: list[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        with self._write_transaction() as cur:
            for sql, params in statements:
                cur.executemany(sql, params)

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[Any]:
        conn = self._conn
        self._begin()
        try:
            yield conn.cursor()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _grouped(self, union: str, params: list, group: Sequence[str], names: Sequence[str], *,
                 summed: bool = True, ordered: bool = False, line: _LineFormat | None = None,
                 counted: str = "COUNT(*)", units: Mapping[str, str] | None = None) -> list[tuple]:
        width = len(group) + len(names)
        if not summed:  # rollup cells hold canonical decimal text
            return self._fetch(self._final(_cells(union, group, names), group, names, "text", order_by=ordered),
                               params)
        # SQLite has no decimal type. Money is summed as 64-bit integers of 10**-UNIT_DIGITS dollars, in C,
        # when that is exact: every amount of the group has at most UNIT_DIGITS decimals and is under $9 million
        # (checked per group in the same statement), and no sum overflows (SQLite raises, never wraps). The
        # sums come back as canonical decimal text. Otherwise (amounts with more decimals, sums past $9.2
        # million) the statement runs again with the exact Decimal aggregate (aicost_dec_sum), in Python.
        flags = ("fits", "rows_summed")
        try:
            sql = self._final(_sqlite_sums(union, group, names, units=True, counted=counted, known=units), group,
                              names, "units", order_by=ordered, extra=flags)
            rows = _in_final_order(self._fetch(sql, params), group, names, "units", ordered)
            exact = all(r[-2] for r in rows)
        except sqlite3.OperationalError as exc:
            if "integer overflow" not in str(exc):
                raise
            exact = False
        if not exact:
            sql = self._final(_sqlite_sums(union, group, names, units=False, counted=counted), group, names, "text",
                              order_by=ordered, extra=flags)
            rows = self._fetch(sql, params)
        rows = [r for r in rows if r[-1]]  # not the totals of no row at all
        return list(map(operator.itemgetter(slice(width)), rows))

    _EXACT = "units"

    def _group_sums(self, union: str, group: Sequence[str], names: Sequence[str], counted: str = "SUM(net)",
                    units: Mapping[str, str] | None = None) -> str:
        return _sqlite_sums(union, group, names, units=True, counted=counted, known=units)

    def _stream(self, sql: str, params: list, named: bool = True) -> Iterator[tuple]:
        # A cursor of its own, read in slices, so a long export does not hold the lock between slices' yields.
        with self._reading_failures():
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
        if version == 7 and dialect == "sqlite" and current == 6:
            logging.getLogger("aicost.ledger").warning(
                "aicost ledger: schema 7 dropped the pair cells to sum them again with their integer units; reports "
                "by two keys read raw rows (exact, slower) until a writer of this aicost or `aicost sum-pairs "
                "--ledger URL` has summed them")


_READ_MARKS_AND_VERSION = (f"SELECT summed_before, hours_from, (SELECT MAX(version) FROM aicost_schema) "
                           f"FROM {schema.PAIR_MARK_TABLE}")


def _compact_pairs_in(cur: Any, dialect: str, until: datetime, max_rows: int | None) -> bool:
    """:func:`aicost.ledger.pairs.compact` on a cursor of a store's write transaction."""
    sql = (lambda text: text) if dialect == "sqlite" else (lambda text: text.replace("?", "%s"))

    def run(text: str, params: Sequence[Any]) -> Any:
        cur.execute(sql(text), params)
        return cur

    def fits(where: str, params: list) -> bool:
        """SQLite: whether the amounts of the stored rows matching ``where`` allow the integer path: what
        :func:`aicost.ledger.rollup.fits_units` checks of a batch's rows in Python, checked here in SQL of rows
        already stored (at most UNIT_DIGITS decimals each, not negative, a sum under UNIT_LIMIT)."""
        if dialect != "sqlite":
            return False
        money = ("cost", "saved_cost", "stopped_cost")
        odd = " OR ".join("NOT " + rollup._sqlite_fits_positive(f"COALESCE({m}, '0')") for m in money)
        total = " + ".join(f"TOTAL(CAST({m} AS REAL))" for m in money)
        bad, dollars = run(f"SELECT COUNT(*) FILTER (WHERE {odd}), {total} FROM aicost_ledger WHERE {where}",
                           params).fetchone()
        return not bad and dollars < rollup.UNIT_LIMIT

    return pairs.compact(run, rollup.DIALECTS[dialect], _sqlite_ts if dialect == "sqlite" else _same, _parse_ts,
                         until, max_rows=max_rows, fits=fits)


def _same(value: Any) -> Any:
    return value


def _pairs_until(cur: Any, dialect: str) -> datetime | None:
    """Where the pair summing goes next (:meth:`LedgerStore.compact_pairs`): the start of the hour that
    :data:`PAIR_LAG` ago was in (an hour is summed once it ended that long ago), or of the latest row's or run's
    hour if earlier; None for an empty ledger."""
    cur.execute("SELECT MAX(ts) FROM (SELECT MAX(ts) AS ts FROM aicost_ledger UNION ALL "
                "SELECT MAX(ts) FROM aicost_runs) AS m")
    (latest,) = cur.fetchone()
    if latest is None:
        return None
    return min(_parse_ts(latest), datetime.now(timezone.utc) - PAIR_LAG).replace(minute=0, second=0, microsecond=0)


_INSERT_ROW = f"INSERT INTO aicost_ledger ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})"
_INSERT_RUN = f"INSERT INTO aicost_runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
# A staged batch (aicost.ledger.staging): its rows and runs, copied in.
_STAGE_ROWS = (f"INSERT INTO main.aicost_ledger ({', '.join(ROW_COLUMNS)}) SELECT {', '.join(ROW_COLUMNS)} "
               f"FROM {STAGE}.aicost_ledger ORDER BY rowid")
_STAGE_RUNS = (f"INSERT INTO main.aicost_runs ({', '.join(RUN_COLUMNS)}) SELECT {', '.join(RUN_COLUMNS)} "
               f"FROM {STAGE}.aicost_runs ORDER BY rowid")
# SQLite: every run's outcome in one statement (a JSON object run_id -> outcome), not one statement per run.
_SET_OUTCOMES = ("UPDATE aicost_ledger SET outcome = o.value FROM json_each(?) AS o "
                 "WHERE aicost_ledger.run_id = o.key AND aicost_ledger.outcome IS NULL")


# --------------------------------------------------------------------------------------------------- PostgreSQL
_PG_SET_OUTCOMES = ("UPDATE aicost_ledger SET outcome = o.outcome "
                    "FROM unnest(%s::text[], %s::text[]) AS o(outcome, run_id) "
                    "WHERE aicost_ledger.run_id = o.run_id AND aicost_ledger.outcome IS NULL")
class _TextArray(str):
    """A ``text[]`` parameter already written as PostgreSQL's array literal (:func:`_pg_text_array`). psycopg
    would dump a list of 20,000 ids element by element in Python, which was most of the writing thread's own
    CPU on PostgreSQL; :func:`_text_array_dumper` sends this text as it is."""

    __slots__ = ()


def _pg_text_array(values: Sequence[str]) -> _TextArray:
    """``values`` (strings, no NUL) as a ``text[]`` literal: each element quoted, a quote or backslash in it
    escaped. One join in C for the usual ids, which need no escaping."""
    text = '","'.join(values)
    if '"' in text or "\\" in text:
        text = '","'.join(v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return _TextArray('{"' + text + '"}' if values else "{}")


def _text_array_dumper() -> type:
    """The psycopg dumper of :class:`_TextArray`: its text, typed ``text[]`` (so the server plans with the array's
    values, as with a list)."""
    from psycopg.adapt import Dumper
    from psycopg.postgres import types

    class TextArrayDumper(Dumper):
        oid = types["text"].array_oid

        def dump(self, obj: str) -> bytes:
            return obj.encode(self.connection.info.encoding if self.connection is not None else "utf-8")

    return TextArrayDumper


def _pg_literal(text: str) -> str:
    """An ASCII text as a PostgreSQL E'' literal, every character but letters, digits and spaces escaped."""
    return "E'" + "".join(c if c.isalnum() or c == " " else f"\\x{ord(c):02x}" for c in text) + "'"


_PG_MAX_ARGS = 100  # PostgreSQL's FUNC_MAX_ARGS (a compile-time constant; 100 by default)


def _pg_concat(args: Sequence[str]) -> str:
    """``concat()`` of ``args``, nested where there are more than a function may take (a line of many fields)."""
    while len(args) > _PG_MAX_ARGS:
        args = [f"concat({', '.join(args[i:i + _PG_MAX_ARGS])})" for i in range(0, len(args), _PG_MAX_ARGS)]
    return f"concat({', '.join(args)})"


def _pg_unit_cost(money: str, count: str) -> tuple[str, str]:
    """SQL for ``query.MONEY_DIV(money, count)`` (a positive count) as canonical text, and the condition under
    which it is that quotient exactly. MONEY_DIV divides to 60 significant digits, then rounds half-even to
    ``UNIT_COST_DECIMALS`` (10) decimals. Here x = money * 10**10 is divided exactly (``div`` and ``mod``
    truncate), twice the remainder against the count decides, and a tie goes to the even quotient. The two
    round alike unless the 60-digit quotient lands exactly on a tie that the exact one is not on, which takes an
    amount whose digits (its decimals included, as an integer) number 49 or more (docs/ledger.md); the
    condition (at most 24 decimals that are not trailing zeros, ``min_scale``: PostgreSQL 13+, under 10**24
    dollars) keeps far below that. It also asks for a count that is not negative: the rounding here follows the amount's sign, which is the
    quotient's only then (1 / -3 would round away from zero)."""
    x = f"{money} * 1{'0' * UNIT_COST_DECIMALS}"
    q = f"div({x}, {count})"
    up = (f"CASE sign(2 * abs(mod({x}, {count})) - {count}) WHEN 1 THEN sign({money}) "
          f"WHEN 0 THEN CASE WHEN mod({q}, 2) <> 0 THEN sign({money}) ELSE 0 END ELSE 0 END")
    return (f"trim_scale(({q} + {up}) * 0.{'0' * (UNIT_COST_DECIMALS - 1)}1)::text",
            f"min_scale({money}) <= 24 AND abs({money}) < 1e24 AND {count} >= 0")


class _StageContext:
    """What psycopg's ``Transformer`` reads of a connection (an ``AdaptContext``), without the connection: its
    adapters, and no connection (so text is encoded as UTF-8). :meth:`PostgresStore._stage` formats with it on
    the preparing thread."""

    __slots__ = ("adapters",)
    connection = None

    def __init__(self, adapters: Any) -> None:
        self.adapters = adapters


class PostgresStore(LedgerStore):
    dialect = "postgresql"
    _COLLATE = ' COLLATE "C"'  # bytes of UTF-8: code point order, whatever the database's locale
    _fills_lines = True

    def __init__(self, url: str, *, setting: str, create: bool = True, reopen: bool = False) -> None:
        super().__init__()
        self.url = redact_url(url)  # shown in reports, the dashboard, logs and errors: never a password
        self._dsn = url
        self._setting = setting
        self._create = create
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
        except ImportError as exc:
            raise ConfigurationError(
                f"{setting}: a PostgreSQL ledger needs psycopg 3: pip install 'aicost-otel[ledger-postgres]'") from exc
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:  # (not chained: libpq's message quotes the URL it could not parse)
            raise ConfigurationError(f"{setting}: malformed PostgreSQL ledger URL {self.url!r}: "
                                     f"{redact_secrets(str(exc), url)}") from None
        port = str(params.get("port") or "5432")
        if not all(p.isdigit() for p in port.split(",")):
            raise ConfigurationError(f"{setting}: malformed PostgreSQL ledger URL {self.url!r}: port {port!r} is "
                                     "not a number")
        self._libpq = _pg.unless_set(_PG_DEFAULTS, params)  # what the user sets wins
        self._url_keys = frozenset(params)
        if not reopen:  # (reopened: a setting gone bad since is the ledger lost, found when connecting)
            _pg.refuse_malformed(params, self._libpq, setting=setting, url_named=f"ledger URL {self.url!r}")
        self._conn: Any = None
        self._limit_ms: int | None = None  # time_limit()'s bound, applied to each write transaction
        self._stage_context: _StageContext | None = None
        # Until then a database that is not there is bad configuration; after, a ledger lost (at once for a store
        # reopened: its URL was accepted before, open_store's reopen)
        self._opened = reopen
        with self._closed_if_refused():
            self._connect()
            with self._reading_failures():  # (the ledger lost while its schema is checked: LedgerUnavailable)
                self._migrate()
        self._opened = True

    def _malformed(self, message: str) -> ConfigurationError:
        """libpq (or psycopg) refusing a setting before reaching any server (aicost._pg.malformed)."""
        return _pg.malformed(message, self._url_keys, setting=self._setting, url_named=f"ledger URL {self.url!r}")

    def _connect(self) -> Any:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            self._conn = psycopg.connect(self._dsn, autocommit=True, **self._libpq)
        except psycopg.OperationalError as exc:  # (not chained: libpq's message may quote a part of the URL)
            message = redact_secrets(str(exc), self._dsn)
            if self._opened:  # a reconnection: the URL was good; a database dropped since is the ledger lost
                raise self._unavailable(message, "missing" if "does not exist" in message else "unreachable") from None
            if "does not exist" in message or "authentication failed" in message:
                raise ConfigurationError(f"{self._setting}: cannot use the PostgreSQL ledger {self.url!r}: "
                                         f"{message.strip().splitlines()[-1]}") from None
            if _PG_BAD_OPTION.search(message):
                raise self._malformed(message) from None
            raise self._unavailable(message) from None
        except psycopg.ProgrammingError as exc:  # psycopg's own reading of a setting (PGCONNECT_TIMEOUT=abc)
            raise self._malformed(redact_secrets(str(exc), self._dsn)) from None
        # Every transaction this store begins (its writes, its migration) is READ COMMITTED whatever the server's
        # default (default_transaction_isolation): each statement sees what committed before it, so a writer that
        # waited for the write lock sees the fold or the late rows of the writer it waited for. Under REPEATABLE
        # READ its snapshot would date from before the wait, and late rows of a day folded meanwhile would miss
        # its day cells. Set per transaction (BEGIN ISOLATION LEVEL ...), so a transaction pooler keeps it; the
        # reports' snapshots begin their own REPEATABLE READ READ ONLY transaction (_BEGIN_READ).
        self._conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        self._conn.adapters.register_dumper(_TextArray, _text_array_dumper())
        self._stage_context = _StageContext(self._conn.adapters) if self._conn.info.encoding == "utf-8" else None
        return self._conn

    def _migrate(self) -> None:
        conn = self._conn
        with conn.transaction():
            current = None
            found = conn.execute("SELECT to_regclass('aicost_schema') IS NOT NULL").fetchone()[0]
            if found:
                (current,) = conn.execute("SELECT MAX(version) FROM aicost_schema").fetchone()
        if not found and not self._create:  # a reader writes nothing where there is no ledger
            raise _not_a_ledger(self._setting, self.url)
        if _up_to_date(current, self._setting, self.url):
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))
            conn.execute(schema.schema_table_ddl("postgresql"))
            (current,) = conn.execute("SELECT MAX(version) FROM aicost_schema").fetchone()
            current = int(current or 0)
            _refuse_newer(current, self._setting, self.url)
            _apply(conn, "postgresql", current, datetime.now(timezone.utc), mark="%s")

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def _ts(self, value: datetime) -> datetime:
        return value

    def _money(self, value: Decimal | None) -> Decimal | None:
        # canonical: NUMERIC keeps the scale it is given, and rows() would read 0.10 back where SQLite's text is 0.1
        return None if value is None else canonical(value)

    def _json(self, value: Mapping[str, Any]) -> str | None:
        return _tags_json(value) if value else None

    def _tag_condition(self) -> str:
        return "tags ->> ? = ?"

    def _in_ids(self, column: str) -> str:
        return f"{column} = ANY(?)"

    def _id_list(self, ids: list[str]) -> _TextArray:
        return _pg_text_array(ids)

    def _cursor(self) -> Any:
        return self._connect().cursor()

    _BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

    def _stage(self, row_params: list[tuple], run_params: list[tuple]) -> tuple[bytes, bytes] | None:
        """The rows' and runs' ``COPY`` data, formatted while preparing (by psycopg's own row formatter, with
        the connection's adapters) rather than by the write, which then only sends it. None (the write formats
        the rows itself) where psycopg does not offer that formatter.

        It never touches the connection, which the writing thread may be using, closing or replacing meanwhile
        (an outage, ``close()``): it formats with what :meth:`_connect` kept of it, its adapters and the
        knowledge that the session's encoding is UTF-8 (the formatter's default without a connection)."""
        try:
            from psycopg._copy_base import format_row_text  # psycopg 3.2+: what Copy.write_row calls
            from psycopg.adapt import Transformer
        except ImportError:  # pragma: no cover - another psycopg
            return None
        context = self._stage_context
        if context is None:  # not a UTF-8 session: the write formats the rows on its connection
            return None
        import psycopg

        transformer = Transformer(context)
        out = []
        for params in (row_params, run_params):
            data = bytearray()
            try:
                for values in params:
                    format_row_text(values, transformer, data)
            except psycopg.DataError:  # a value PostgreSQL cannot hold (a NUL): the write finds it (_write)
                return None
            out.append(bytes(data))
        return out[0], out[1]

    def _unstage(self, cur: Any, staged: tuple[bytes, bytes], new_rows: list[bool],
                 new_runs: list[bool]) -> tuple[bytes, bytes] | None:
        """The ``COPY`` lines of the new rows and runs: text format writes one line per row (a newline in a
        value is escaped), so the staged data splits into the batch's rows."""
        out = []
        for data, new in ((staged[0], new_rows), (staged[1], new_runs)):
            lines = data.split(b"\n")
            if len(lines) != len(new) + 1:  # pragma: no cover - not one line per row: the write formats them
                return None
            kept = b"\n".join(compress(lines, new))  # no line is empty: kept is empty only when no row is new
            out.append(kept + b"\n" if kept else b"")
        return out[0], out[1]

    def _write(self, batch: PreparedBatch) -> int:
        import psycopg

        try:
            return self._write_once(batch)
        except (psycopg.DataError, UnicodeEncodeError):
            rows, runs = _storable(batch.rows), _storable(batch.runs)
            if rows is batch.rows and runs is batch.runs:
                raise
        # A text with a NUL character, which PostgreSQL cannot store (in a value, or an id's array literal; every
        # retry of the batch would fail), or a lone surrogate, which no UTF-8 encoding takes: written again with
        # U+FFFD in its place, as :func:`_named_tags` does for NULs in tags on either database.
        return self._write_once(self.prepare(rows, runs))

    def _write_once(self, batch: PreparedBatch) -> int:
        conn = self._connect()
        if batch.staged is not None and self._stage_context is None:
            batch = replace(batch, staged=None)  # staged as UTF-8 on an earlier session; this one is not UTF-8
        try:
            with conn.transaction():
                cur = conn.cursor()
                self._limit_transaction(cur)
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))
                batch = self._new_in(cur, batch)  # what is not stored yet, as prepared
                for table, columns, params, data in (
                        ("aicost_ledger", ROW_COLUMNS, batch.row_params, batch.staged and batch.staged[0]),
                        ("aicost_runs", RUN_COLUMNS, batch.run_params, batch.staged and batch.staged[1])):
                    if not params:
                        continue
                    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        if data:
                            copy.write(data)  # formatted while preparing
                        else:
                            for values in params:
                                copy.write_row(values)
                outcomes = self._outcomes(cur, batch.rows, batch.runs)
                if outcomes:
                    cur.execute(_PG_SET_OUTCOMES, [_pg_text_array([o for o, _ in outcomes]),
                                                   _pg_text_array([r for _, r in outcomes])])
                self._update_rollups(cur, batch)
        except Exception:
            if self._conn is not None and self._conn.broken:
                self._conn = None  # reconnect on the next write
            raise
        return len(batch.rows)

    def _set_limit(self, ms: int | None) -> None:
        self._limit_ms = ms  # set on each write transaction (_limit_transaction), not on the session

    def _interrupt(self, until: float | None) -> bool:
        # The server cancels the statement under way (a lock wait: the advisory lock, a table or a row another
        # session holds), the transaction is rolled back. cancel_safe() connects with a timeout; the older cancel()
        # (libpq before 17) could wait minutes for a server gone silent: not used, and without cancel_safe nothing
        # ends the write (False). A cancel that could not be sent now (connecting, the server gone) is sent again
        # by the next cut() while the write is under way.
        try:
            from psycopg import capabilities

            if not capabilities.has_cancel_safe():
                return False
        except Exception:  # psycopg 3.1: no capabilities, no cancel_safe
            return False
        conn = self._conn
        if conn is not None:
            try:
                timeout = _PG_CANCEL_S
                if until is not None:  # never 0: cancel_safe would wait as long as it takes
                    timeout = min(timeout, max(_CUT_MIN_S, until - time.monotonic()))
                conn.cancel_safe(timeout=timeout)
            except Exception:  # the connection closed meanwhile, the server gone
                pass
        return True

    def _limit_transaction(self, cur: Any) -> None:
        """:meth:`time_limit` for this transaction only (SET LOCAL: a transaction pooler keeps it, and the session
        is left as it was): its lock waits (the advisory lock of another writer) and each statement."""
        if self._limit_ms is not None:
            cur.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                        (f"{self._limit_ms}ms", f"{self._limit_ms}ms"))

    def _execute_many(self, statements: list[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        conn = self._connect()
        try:
            with conn.transaction():
                cur = conn.cursor()
                self._limit_transaction(cur)
                for sql, params in statements:
                    if params:
                        cur.executemany(sql, params)
        except Exception:
            if self._conn is not None and self._conn.broken:
                self._conn = None  # reconnect on the next write
            raise

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[Any]:
        conn = self._connect()
        try:
            with conn.transaction():
                cur = conn.cursor()
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))
                yield cur
        except Exception:
            if self._conn is not None and self._conn.broken:
                self._conn = None  # reconnect on the next write
            raise

    def _grouped(self, union: str, params: list, group: Sequence[str], names: Sequence[str], *,
                 summed: bool = True, ordered: bool = False, line: _LineFormat | None = None,
                 counted: str = "COUNT(*)", units: Mapping[str, str] | None = None) -> list[tuple]:
        # NUMERIC sums are exact; money comes back as canonical text (trim_scale: no trailing zeros), counts as
        # bigint (a SUM of bigint is NUMERIC, which psycopg would make a Decimal).
        if not summed:
            sql = self._final(_cells(union, group, names), group, names, "numeric", order_by=ordered, line=line)
            return (self._fetch_lines if line else self._fetch)(self._sql(sql), params)
        rows = (self._fetch_lines if line else self._fetch)(
            self._sql(self._final(self._group_sums(union, group, names, counted), group, names, "numeric",
                                  order_by=ordered, extra=("rows_summed",), line=line)), params)
        return [r[:-1] for r in rows if r[-1]]

    def _group_sums(self, union: str, group: Sequence[str], names: Sequence[str], counted: str = "SUM(net)",
                    units: Mapping[str, str] | None = None) -> str:
        # a SUM of bigint is NUMERIC, which psycopg would make a Decimal
        sums = [f"COALESCE(SUM({n}), 0){'' if n in MONEY_MEASURES else '::bigint'} AS s{i}"
                for i, n in enumerate(names)]
        return (f"SELECT {', '.join([*_keys(group), *sums])}, 1 AS fits, {counted} AS rows_summed FROM ({union}) "
                f"AS parts{_group_by(group)}")

    def _fetch_lines(self, sql: str, params: list) -> list[tuple]:
        """:meth:`_fetch` of a query returning lines, read in chunks as the server writes them (its ``concat()``
        runs above the sort, row by row as it sends them): the client makes the first chunks' strings while the
        server still writes the next. Without chunks (psycopg 3.1, or a libpq before 17): all at once."""
        import psycopg

        capabilities = getattr(psycopg, "capabilities", None)  # psycopg 3.2+
        if capabilities is None or not capabilities.has_stream_chunked():
            return self._fetch(sql, params)
        with self._lock, self._reading_failures():
            return list(self._cursor().stream(sql, params, size=2000))

    def _line_sql(self, line: _LineFormat, names: Sequence[str]) -> tuple[str, list[str]]:
        # concat() of the pieces (E'' literals: the same whatever standard_conforming_strings says, with '?' and
        # '%' escaped too, for the placeholder rewriting) and the slots' text: a count's bigint as its digits,
        # money as trim_scale(...)::text (the canonical text), a measure 0 in every group (line.zero) as 0.
        # NULL (the caller reads the measures instead) where a unit cost might round otherwise than in Python (_pg_unit_cost). The unit
        # costs are computed below the sort (a few bytes each, by the parallel workers when there are some).
        column = {name: f"r.s{i}" for i, name in enumerate(names)}
        if missing := line.measures() - column.keys() - line.zero:
            raise ValueError(f"line: {', '.join(sorted(missing))} neither read nor 0 in every group")
        args, exact, below = [], [], []
        text = ""  # literal text not written yet: a constant run is one argument (concat's cost is per argument)
        for j, (piece, slot) in enumerate(zip(line.pieces, line.slots)):
            text += piece
            if isinstance(slot, tuple):
                money, count = map(column.get, slot)
                if money is None or count is None:  # a count 0 in every group (line.zero): no unit cost anywhere
                    text += line.null
                    continue
                quotient, guard = _pg_unit_cost(money, count)
                below.append(f"CASE WHEN {count} = 0 THEN {_pg_literal(line.null)} ELSE {_pg_literal(line.quote)} "
                             f"|| {quotient} || {_pg_literal(line.quote)} END AS u{j}")
                exact.append(guard)
                value = f"r.u{j}"
            elif slot not in column:
                text += "0"
                continue
            else:
                value = f"trim_scale({column[slot]})::text" if slot in MONEY_MEASURES else column[slot]
            args += [_pg_literal(text), value] if text else [value]
            text = ""
        args.append(_pg_literal(text + line.pieces[-1]))
        text = _pg_concat(args)
        if exact:
            below.append(f"{' AND '.join(dict.fromkeys(exact))} AS exact")
            text = f"CASE WHEN r.exact THEN {text} END"
        return text, below

    def _stream(self, sql: str, params: list, named: bool = True) -> Iterator[tuple]:
        import uuid

        # A server-side cursor in its own connection: an export of millions of rows streams with flat memory.
        import psycopg

        with self._reading_failures(), psycopg.connect(self._dsn, **self._libpq) as conn:
            with conn.cursor(name=f"aicost_{uuid.uuid4().hex[:12]}") as cur:
                cur.itersize = 5000
                cur.execute(sql, params)
                yield from cur

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
