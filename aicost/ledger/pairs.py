"""aicost_rollup_pair (schema 6): sums per pair of attribution keys where one is user, customer or a tag, so a
report by team x customer (or user x model, customer x tag:env) over a month reads cells, not millions of rows.

Why not at write time, per batch, like the other rollups: a pair with customer or user is tens of thousands of
cells a day (the synthetic benchmark ledger: 15,000 team x customer, 32,000 team x user; about 110,000 for the
fifteen pairs), and summing them costs more CPU per row than everything else the writer does per row (on SQLite
48-140 us against ~57: docs/ledger.md, measured by ``benchmarks/ledger_pairs.py``). Summed per batch it would be
worse: a batch's few hours bring nearly as many cells as rows (a busy hour of the benchmark ledger, 34,000 rows,
makes 42,000). So the pairs are summed behind the
writer, from rows already stored, in chunks (:func:`compact`): the writer thread runs a chunk between its batches once a minute,
and at each wake while rows are left (:class:`aicost.ledger.writer.LedgerWriter`), never on a batch's own path, and a report reads the
rows not summed yet from the raw rows. ``aicost_rollup_pair_mark.summed_before`` (one row) says how far the
summing got: every row and run before it is in the pair cells, none after it.

Cells (``days`` x ``bucket`` x ``dim_a``/``value_a`` x ``dim_b``/``value_b``) hold the sums of the ``days`` days
from ``bucket``: each day's cells (``days`` 1), summed from its rows, and, per window of :data:`WINDOW` (64) days
aligned from 1970-01-01, each day's *prefix*: the window's first n days (``bucket`` the window's first day, ``days``
n), started on the day's first chunk as a copy of the prefix of n - 1 days, and each chunk of the day added to it
and to the day's cells. A period of whole days is then a few sets added and subtracted (:func:`spans`): per window
it covers, a prefix, or the difference of two, or one or two days alone; a month, four sets at most (two of them
single days), each at most as many cells as the pairs seen in a window (a month by team x customer reads 15,000 to
60,000 cells, where day cells would be 450,000). The day ``summed_before`` falls in has its day cells and its prefix
of its rows so far (before ``summed_before``).

Schema 8: for the last :data:`HOUR_DAYS` days, each day also has its *hour prefixes* (``days`` 0, ``bucket`` an hour
inside the day: the day's rows before it), so whole hours of such a day are its cells or a prefix, less a prefix,
and a period of hours (``24h``, and the 24 before it, which top movers read) reads cells, not a day of raw rows:
~7,700 ``team x user`` pairs an hour against 34,000 rows on the benchmark ledger's afternoon, and a day's prefixes
hold at most its day cells' pairs. On such a day a chunk sums one hour at most; the hour's first chunk starts the
prefix to the hour's end as a copy of the one before. Which days keep them is decided on each day's first chunk
(:func:`hour_prefixes_from`): the days near where the summing is going, not a backfill's; the same chunk drops the
prefixes of days now too old and moves ``aicost_rollup_pair_mark.hours_from``, the first day whose hour prefixes
are all kept.

Schema 9: such a day, once closed, also has its *hour suffixes* (``days`` -1, ``bucket`` an hour inside the day:
the day's rows from it on), so a period of hours starting inside it reads one set, not the day's cells less a
prefix: ``24h`` and the 24 hours before it are two sets each (the day before's suffix, the day's prefix), not
three, which halves the primary key probes of the join that meets them (:func:`suffix_kept`). A suffix is derived
once, from the day's cells less its prefix to that hour (:func:`suffix_sql`), by the chunk that starts the next
day's prefix to the same hour: the chunk that starts the prefix a ``24h`` report ending then reads (so the report
has both sets as soon as either), and one hour's suffix a chunk keeps each chunk's work near that of the prefix copy.
Late rows are added to the suffixes derived that start at or before their hour, and the suffixes are dropped with
their day's prefixes.

On SQLite (schema 7) a cell holds each amount twice: its exact decimal text, and its integer units
(:func:`units_of`), which a report sums as they are. Every statement here keeps them: the delta's its integer
sums (:func:`delta_sql`) or, summed as text, from its text (:func:`delta_units_sql`), an add by integers, a copy as
they are; NULL where an amount is negative, $1 million or more, or has more than 12 decimals, and NULL thereafter
in that cell (the report converts its text).

A row written after the summing passed its time (a spill replayed late, another host's batch, a backfill) is a
*late row*: its batch adds it to the cells itself (:func:`late_statements`), to its day's cells, to every
prefix already started that holds its day and to every hour prefix started that holds its hour, in the batch's
transaction. Both happen under the ledger's write
lock (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock), and each reads ``summed_before`` inside it: a
row is either before it when summed by :func:`compact`, or added by its batch as late, never both, never
neither.

The pairs (:data:`PAIRS`): every pair of :data:`PAIR_DIMS` but those the cube answers (two of team, feature,
model, provider) and two tags. A feature run has no model or provider: it is in no pair with either.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Sequence

from .days import DAY, EPOCH, HOUR, ceil, hour_start, midnight
from .rollup import Dialect, _CONSTANT_ZERO, _SOURCES, _sqlite_fits_positive, _sum, negated
from .schema import (CUBE_KEYS, MEASURES, MONEY_MEASURES, PAIR_MARK_TABLE, PAIR_TABLE, PAIR_UNITS,
                     PAIR_UNITS_DIALECTS, PAIR_UNITS_LIMIT)

__all__ = ["PAIR_DIMS", "PAIRS", "WINDOW", "HOUR_DAYS", "PAIR_DELTA", "PREFIX", "SUFFIX", "pair_of", "spans",
           "prefixes_end", "hour_prefixes_end", "suffix_kept", "compact", "late_statements",
           "delta_ddl", "delta_sql", "SET_SUMMED_SQL", "READ_MARKS_SQL"]

PAIR_DIMS = ("team", "feature", "model", "provider", "user", "customer", "tag")
PAIRS = tuple((a, b) for i, a in enumerate(PAIR_DIMS) for b in PAIR_DIMS[i + 1:]
              if not (a in CUBE_KEYS and b in CUBE_KEYS))
WINDOW = 64  # days: the pair cells keep, per window of 64 days aligned from 1970-01-01, each day's prefix
# days: the pair cells keep each hour's prefix of the day (days 0) for the day being summed and the one or two
# before it, so a period of hours ending now (24h, and the 24 hours before it, which top movers compare) reads cells
HOUR_DAYS = 3
PREFIX = 0  # ``days`` of an hour prefix: the day's rows before ``bucket``
SUFFIX = -1  # ``days`` of an hour suffix: the day's rows from ``bucket`` on
PAIR_DELTA = "aicost_pair_delta"
SET_SUMMED_SQL = f"UPDATE {PAIR_MARK_TABLE} SET summed_before = ?"
READ_MARKS_SQL = f"SELECT summed_before, hours_from FROM {PAIR_MARK_TABLE}"
_SET_HOURS_FROM_SQL = f"UPDATE {PAIR_MARK_TABLE} SET hours_from = ?"
_DROP_HOURS_SQL = f"DELETE FROM {PAIR_TABLE} WHERE days IN ({PREFIX}, {SUFFIX}) AND bucket < ?"
_CELL = "dim_a, value_a, dim_b, value_b"
# SQL: the hours of a day an hour prefix ends at or an hour suffix starts at, 1 to 23, as rows of a column n
_HOURS = " UNION ALL ".join(f"SELECT {n} AS n" for n in range(1, 24))


def pair_of(a: str, b: str) -> tuple[str, str] | None:
    """The stored order of two rollup dimensions ('user', 'tag'...) as a pair of :data:`PAIRS`, or None when no
    pair cell holds them together."""
    pair = tuple(sorted((a, b), key=PAIR_DIMS.index)) if a in PAIR_DIMS and b in PAIR_DIMS else None
    return pair if pair in PAIRS else None  # type: ignore[return-value]


def net(table: str = "") -> str:
    """SQL: how many ledger rows and runs a pair cell (of ``table``: its alias and a dot) stands for: every ledger
    row is a call, a cache hit or a refusal."""
    return " + ".join(f"{table}{count}" for count in ("calls", "cache_hits", "refusals", "runs"))


def day_number(day: datetime) -> int:
    return (day - EPOCH) // DAY


def spans(first: datetime, last: datetime) -> list[tuple[int, datetime, int]]:
    """The days [first, last) (UTC midnights, every one summed whole) as signed cell sets to add up: (days,
    start, sign), ``days`` 1 for a day's cells, else a window's prefix (``start`` the window's first day). Per
    window the period covers: its prefix when the period starts on the window's first day, else the prefix to
    the period's end in it minus the prefix before the period's start (two sets); one or two days alone, as day
    cells. A month is four sets at most (two prefixes and up to two single days), each at most as many cells as the
    pairs seen in a window."""
    out: list[tuple[int, datetime, int]] = []
    a, b = day_number(first), day_number(last)
    while a < b:
        w = a - a % WINDOW
        e = min(b, w + WINDOW)
        if e - a <= 2:
            out += [(1, EPOCH + day * DAY, 1) for day in range(a, e)]
        else:
            out.append((e - w, EPOCH + w * DAY, 1))
            if a > w:
                out.append((a - w, EPOCH + w * DAY, -1))
        a = e
    return out


def units_of(d: Dialect) -> dict[str, str]:
    """Money measure -> the pair cells' column of its integer units (:data:`~aicost.ledger.schema.PAIR_UNITS`),
    on a dialect whose cells have them (:data:`~aicost.ledger.schema.PAIR_UNITS_DIALECTS`: SQLite, whose money is
    text); else empty."""
    return PAIR_UNITS if d.name in PAIR_UNITS_DIALECTS else {}


def _stored(d: Dialect) -> str:
    """The summed columns of a pair cell: the measures, then the units (:func:`units_of`)."""
    return ", ".join([*MEASURES, *units_of(d).values()])


def delta_ddl(d: Dialect) -> str:
    """The per-connection table a chunk's (or a batch's late rows') day cells are summed into first."""
    cols = ", ".join([*(f"{m} {d.money_type} DEFAULT '0'" if m in MONEY_MEASURES else f"{m} BIGINT DEFAULT 0"
                        for m in MEASURES), *(f"{u} BIGINT" for u in units_of(d).values())])
    tail = " ON COMMIT DELETE ROWS" if d.name == "postgresql" else ""
    return (f"CREATE TEMP TABLE IF NOT EXISTS {PAIR_DELTA} (bucket {d.ts_type}, dim_a TEXT, value_a TEXT, "
            f"dim_b TEXT, value_b TEXT, {cols}){tail}")


def delta_sql(d: Dialect, wheres: dict[str, str], *, units: bool, schema: str = "", hourly: bool = False) -> str:
    """``INSERT INTO aicost_pair_delta``: the day cells of every pair of :data:`PAIRS` of the rows of each source
    in ``wheres`` ('rows' / 'runs' -> an SQL condition on aicost_ledger / aicost_runs), each cell once.

    Each source is read once with the rollups' own per-row measures (:func:`aicost.ledger.rollup.row_measures`),
    summed per day and every key at once (``f``: several times fewer rows than the source), and each pair is
    summed from that. ``units``: money summed as integers (the dialect's ``to_units``; the caller knows every
    amount allows it), written back as the dialect's money, and as the cells' units where they have them
    (:func:`units_of`; NULL for a negative sum, as :func:`text_units` has it; summed as text,
    :func:`delta_units_sql` makes them). ``schema``: the sources of that attached database (SQLite's staged
    batch). ``hourly``: cells per hour (``bucket`` the hour), for the hour prefixes (:func:`fold_hours_sql`)."""
    ctes: list[str] = []
    arms: dict[tuple[str, str], list[str]] = {pair: [] for pair in PAIRS}
    money = (lambda column: d.to_units(column)) if units and d.to_units else (lambda column: column)  # type: ignore
    for source, where in wheres.items():
        table, measures_of, dims = _SOURCES[source]
        exprs = dict(zip(MEASURES, measures_of(money)))
        own = [m for m in MEASURES if exprs[m] not in _CONSTANT_ZERO]
        keys = ["team", "feature", *(["model", "provider"] if "model" in dims else []), "user_id", "customer",
                "tags"]
        p = source[:2] + "_"
        cols = ", ".join(f"{exprs[m]} AS {m}" for m in own)
        bucket = (d.hour if hourly else d.day)("ts")
        ctes.append(f"{p}s AS MATERIALIZED (SELECT {bucket} AS bucket, {', '.join(keys)}, {cols} "
                    f"FROM {schema + '.' if schema else ''}{table} WHERE {where})")
        sums = ", ".join(_total(d, m, units) + f" AS {m}" for m in own)
        ctes.append(f"{p}f AS MATERIALIZED (SELECT bucket, {', '.join(keys)}, {sums} FROM {p}s "
                    f"GROUP BY bucket, {', '.join(keys)})")
        padded = ", ".join(m if m in own else ("CAST(NULL AS NUMERIC)" if m in MONEY_MEASURES else "0") + f" AS {m}"
                           for m in MEASURES)
        for a, b in PAIRS:
            if a not in dims or b not in dims:
                continue  # a run has no model or provider
            join = f", {d.tag_pairs(p + 'f.tags')}" if "tag" in (a, b) else ""
            arms[(a, b)].append(f"SELECT bucket, {dims[a]} AS va, {dims[b]} AS vb, {padded} FROM {p}f{join}")
    kept = units_of(d) if units else {}  # the integer sums are the units themselves (SQLite computes each once)
    final = ", ".join([*(f"{_final(d, m, units)} AS {m}" for m in MEASURES),
                       *(f"CASE WHEN COALESCE(SUM({m}), 0) BETWEEN 0 AND {PAIR_UNITS_LIMIT - 1} THEN "
                         f"COALESCE(SUM({m}), 0) END" for m in kept)])
    selects = [f"SELECT bucket, '{a}', va, '{b}', vb, {final} FROM ({' UNION ALL '.join(parts)}) AS cells "
               f"GROUP BY bucket, va, vb" for (a, b), parts in arms.items() if parts]
    return (f"WITH {', '.join(ctes)} INSERT INTO {PAIR_DELTA} (bucket, {_CELL}, "
            f"{', '.join([*MEASURES, *kept.values()])}) {' UNION ALL '.join(selects)}")


def text_units(d: Dialect, amount: str) -> str:
    """SQL: the integer units of the money text ``amount`` where it allows them exactly and two such add up
    without overflowing (:func:`aicost.ledger.rollup._sqlite_fits_positive`: not negative, under $1 million, at
    most UNIT_DIGITS decimals), else NULL (a report converts that cell's text)."""
    assert d.to_units is not None
    return f"CASE WHEN {_sqlite_fits_positive(amount)} THEN {d.to_units(amount)} END"


def delta_units_sql(d: Dialect, units: bool) -> str | None:
    """SQL: the delta's units (:func:`units_of`) from its amounts, after :func:`delta_sql` summed them as text
    (``units`` False: it wrote them itself otherwise); None where there is nothing to do."""
    units = {} if units else units_of(d)
    sets = ", ".join(f"{u} = {text_units(d, m)}" for m, u in units.items())
    return f"UPDATE {PAIR_DELTA} SET {sets}" if units else None


def _total(d: Dialect, measure: str, units: bool) -> str:
    """The sum of a measure within a chunk's steps (integers on the integer path)."""
    return f"SUM({measure})" if units or measure not in MONEY_MEASURES else _sum(d, measure, measure)


def _final(d: Dialect, measure: str, units: bool) -> str:
    if units and measure in MONEY_MEASURES and d.from_units is not None:
        return d.from_units(f"COALESCE(SUM({measure}), 0)")
    return _sum(d, measure, measure)


def window_start(d: Dialect, column: str) -> str:
    """SQL: the first day of the window (:data:`WINDOW` days, aligned from 1970-01-01) that the day ``column`` is
    in."""
    if d.name == "sqlite":
        return (f"strftime('%Y-%m-%d 00:00:00.000000', (CAST(strftime('%s', substr({column}, 1, 10)) AS INTEGER) "
                f"/ {86400 * WINDOW}) * {86400 * WINDOW}, 'unixepoch')")
    return f"to_timestamp(floor(extract(epoch FROM {column}) / {86400 * WINDOW}) * {86400 * WINDOW})"


def _plus_days(d: Dialect, column: str, days: int) -> str:
    """SQL: ``days`` days of 86,400 s after the time ``column`` (on PostgreSQL not ``+ interval``, which counts days
    of the session's time zone: 23 or 25 hours across a daylight-saving change)."""
    if d.name == "sqlite":
        return f"(datetime({column}, '+{days} days') || '.000000')"
    return f"to_timestamp(extract(epoch FROM {column}) + {86400 * days})"


def _plus_hours(d: Dialect, column: str, hours: str) -> str:
    """SQL: ``hours`` (an SQL integer) hours after the time ``column``."""
    if d.name == "sqlite":
        return f"(datetime({column}, '+' || {hours} || ' hours') || '.000000')"
    return f"to_timestamp(extract(epoch FROM {column}) + 3600 * {hours})"


def _insert(d: Dialect) -> str:
    return f"INSERT INTO {PAIR_TABLE} (days, bucket, {_CELL}, {_stored(d)})"


def fold_days_sql(d: Dialect) -> str:
    """Add the delta's day cells to the day cells (insert new cells, add to existing ones)."""
    # WHERE true: SQLite reads an upsert's ON after a bare FROM as a join's
    return f"{_insert(d)} SELECT 1, bucket, {_CELL}, {_stored(d)} FROM {PAIR_DELTA} WHERE true {_upsert(d)}"


def fold_into_sql(d: Dialect) -> str:
    """Add the delta's cells (of one day) to the one set given as two parameters (days, start): a chunk's day's
    prefix."""
    return f"{_insert(d)} SELECT ?, ?, {_CELL}, {_stored(d)} FROM {PAIR_DELTA} WHERE true {_upsert(d)}"


def fold_prefix_sql(d: Dialect, n: int, *, units: bool) -> str:
    """Add the delta's day cells (a batch's late rows, of any days) to the prefixes of ``n`` days of the windows
    that hold one of those days among their first n, where the prefix ends on or before the time given as the
    one parameter (the prefixes started: a later one will start from these, which then hold the row)."""
    start = window_start(d, "bucket")
    end = _plus_days(d, start, n)
    return _fold_grouped(d, str(n), start, f"bucket < {end} AND {end} <= ?", units=units)


def fold_hours_sql(d: Dialect, *, units: bool) -> str:
    """Add the delta's hour cells (a batch's late rows of the days keeping hour prefixes, :func:`delta_sql`
    ``hourly``) to the hour prefixes started that hold them: each to those of its day that end after its hour and
    on or before the time given as the one parameter (:func:`hour_prefixes_end`)."""
    end = _plus_hours(d, d.day("bucket"), "h.n")
    return _fold_grouped(d, str(PREFIX), end, f"bucket < {end} AND {end} <= ?", units=units,
                         each=f"({_HOURS}) AS h")


def fold_suffixes_sql(d: Dialect, *, units: bool) -> str:
    """Add the delta's hour cells (as for :func:`fold_hours_sql`) to the hour suffixes derived that hold them: each
    to those of its day that start at or before its hour and whose derivation has run (:func:`suffix_kept`: the
    next day's prefix to the same hour started, on or before the time given as the one parameter,
    :func:`hour_prefixes_end`)."""
    start = _plus_hours(d, d.day("bucket"), "h.n")
    return _fold_grouped(d, str(SUFFIX), start, f"{start} <= bucket AND {_plus_days(d, start, 1)} <= ?",
                         units=units, each=f"({_HOURS}) AS h")


def suffix_kept(start: datetime, summed: datetime, hours_from: datetime) -> bool:
    """Whether the pair cells hold the hour suffix from ``start`` (an hour inside a day, not its midnight) when
    they are summed to ``summed`` and keep hour prefixes from the day ``hours_from``: its day keeps them and the
    suffix was derived, by the chunk that started the next day's prefix to the same hour (:func:`compact`)."""
    return midnight(start) >= hours_from and start + DAY <= hour_prefixes_end(summed)


def suffix_sql(d: Dialect, hours: str = "(SELECT ? AS s, ? AS day) AS h") -> str:
    """Insert hour suffixes of closed days, each the day's cells less the day's prefix to the suffix's hour, cell
    by cell (a primary key lookup of the prefix per day cell), those left with a row. ``hours``: an SQL table (its
    alias ``h``) of the suffixes' hours (``s``) and their days' midnights (``day``); by default one, the two as
    parameters. Money on SQLite: the integer units' difference where both cells have units, else the exact decimal
    difference of the texts; a suffix cell's units are that difference's, or its text's where one cell had none
    (as a late row's fold takes them), NULL where the text allows none."""
    stored = units_of(d)

    def less(m: str) -> str:
        if m not in MONEY_MEASURES or d.name != "sqlite":
            return f"c.{m} - COALESCE(p.{m}, 0)"
        u = stored[m]
        assert d.from_units is not None
        return (f"CASE WHEN p.days IS NULL THEN c.{m} WHEN c.{u} IS NOT NULL AND p.{u} IS NOT NULL THEN "
                f"{d.from_units(f'c.{u} - p.{u}')} ELSE aicost_dec_add(c.{m}, {negated(d, f'p.{m}')}) END")

    # (not negative: a negative amount has none; rows of negative amounts can make the day's less its prefix's)
    units = [f"CASE WHEN p.days IS NULL THEN c.{u} WHEN c.{u} >= p.{u} THEN c.{u} - p.{u} END AS {u}"
             for u in stored.values()]
    same = " AND ".join(f"p.{c} = c.{c}" for c in ("dim_a", "dim_b", "value_a", "value_b"))
    cells = (f"SELECT h.s AS bucket, c.dim_a, c.value_a, c.dim_b, c.value_b, "
             f"{', '.join([*(f'{less(m)} AS {m}' for m in MEASURES), *units])} FROM {hours} JOIN {PAIR_TABLE} c ON "
             f"c.days = 1 AND c.bucket = h.day LEFT JOIN {PAIR_TABLE} p ON p.days = {PREFIX} AND p.bucket = h.s AND "
             f"{same} WHERE (p.days IS NULL OR {net('c.')} <> {net('p.')})")
    # units a cell lacked (an odd late row before the hour) taken from the difference's text where it allows them
    of_text = "".join(f", COALESCE({u}, {text_units(d, m)})" for m, u in stored.items())
    return f"{_insert(d)} SELECT {SUFFIX}, bucket, {_CELL}, {', '.join(MEASURES)}{of_text} FROM ({cells}) AS x"


def suffixes_kept_sql(d: Dialect) -> str:
    """SQL: a table (alias ``h``, as :func:`suffix_sql` takes) of the hour suffixes the pair cells hold by
    :func:`suffix_kept` (their hours ``s`` and days ``day``), from the marks: those a ledger summed before schema 9
    derives when it migrates."""
    s = _plus_hours(d, "x.bucket", "n.n")
    # s + 1 day <= summed_before's hour's end: s + 23 hours < summed_before
    return (f"(SELECT x.bucket AS day, {s} AS s FROM (SELECT DISTINCT bucket FROM {PAIR_TABLE} WHERE days = 1 AND "
            f"bucket >= (SELECT hours_from FROM {PAIR_MARK_TABLE})) AS x, ({_HOURS}) AS n WHERE "
            f"{_plus_hours(d, 'x.bucket', '(n.n + 23)')} < (SELECT summed_before FROM {PAIR_MARK_TABLE})) AS h")


def _fold_grouped(d: Dialect, days: str, bucket: str, condition: str, *, units: bool, each: str = "") -> str:
    """Add the delta's cells matching ``condition``, summed per target set (``days`` and ``bucket``, SQL over the
    delta's cell), to the cells of those sets. The units are taken from each sum's text: the delta's units of up
    to 64 days could overflow when summed. ``each``: a table (SQL, with its alias) whose rows each delta cell is
    taken with, once per row (the hours of a day), which ``bucket`` and ``condition`` may read."""
    def total(m: str) -> str:
        if units and m in MONEY_MEASURES and d.to_units and d.from_units:
            return d.from_units(f"COALESCE(SUM({d.to_units(m)}), 0)")
        return _sum(d, m, m)

    sums = (f"SELECT {days} AS days, {bucket} AS bucket, {_CELL}, "
            f"{', '.join(f'{total(m)} AS {m}' for m in MEASURES)} FROM {PAIR_DELTA}{', ' + each if each else ''} "
            f"WHERE {condition} GROUP BY {bucket}, {_CELL}")
    of_text = "".join(f", {text_units(d, m)}" for m in units_of(d))
    return (f"{_insert(d)} SELECT days, bucket, {_CELL}, {', '.join(MEASURES)}{of_text} FROM ({sums}) AS s "
            f"WHERE true {_upsert(d)}")


def _upsert(d: Dialect) -> str:
    updates = [f"{m} = {d.money_add(f'{PAIR_TABLE}.{m}', f'excluded.{m}')}" if m in MONEY_MEASURES
               else f"{m} = {PAIR_TABLE}.{m} + excluded.{m}" for m in MEASURES]
    # units of two amounts added: NULL unless both are known and the sum stays under the limit
    updates += [f"{u} = CASE WHEN {PAIR_TABLE}.{u} + excluded.{u} < {PAIR_UNITS_LIMIT} THEN {PAIR_TABLE}.{u} + "
                f"excluded.{u} END" for u in units_of(d).values()]
    return f"ON CONFLICT (days, bucket, {_CELL}) DO UPDATE SET {', '.join(updates)}"


def _copy_sql(d: Dialect) -> str:
    """Cells of one set copied as another (parameters: the new set's days and start, the old set's days and
    start): a day's prefix starts as the prefix through the day before."""
    return f"{_insert(d)} SELECT ?, ?, {_CELL}, {_stored(d)} FROM {PAIR_TABLE} WHERE days = ? AND bucket = ?"


Run = Callable[[str, Sequence[Any]], Any]  # executes one statement (``?`` marks) in the caller's transaction


def prefixes_end(summed: datetime) -> datetime:
    """The end of the last prefix :func:`compact` has started when it has summed to ``summed``: a day's prefix is
    started by its first chunk, so the next midnight once any of ``summed``'s day is summed."""
    return ceil(summed, DAY)


def hour_prefixes_end(summed: datetime) -> datetime:
    """The end of the last hour prefix :func:`compact` has started when it has summed to ``summed``: an hour's
    prefix (ending at the hour's end) is started by the hour's first chunk."""
    return ceil(summed, HOUR)


def hour_prefixes_from(hours_from: datetime, day: datetime, until: datetime) -> datetime:
    """``hours_from`` (the first day whose hour prefixes are all kept) once the summing starts ``day`` on its
    way to ``until``: the day keeps hour prefixes when it is one of the :data:`HOUR_DAYS` days to ``until``'s
    (a backfill's past days do not: they would be dropped in a few days), and then the days before those drop
    theirs; a day that does not keep them moves the mark past it."""
    keeps = day >= midnight(until) - (HOUR_DAYS - 1) * DAY
    return max(hours_from, day - (HOUR_DAYS - 1) * DAY if keeps else day + DAY)


def compact(run: Run, d: Dialect, ts: Callable[[datetime], Any], parse: Callable[[Any], datetime],
            until: datetime, *, max_rows: int | None = None, fits: Callable[[str, list], bool]) -> bool:
    """Inside a write transaction: sum the rows and runs from ``summed_before`` to ``until`` (or less: never past
    the next midnight, nor past a row's time where more than ``max_rows`` rows lie between; on a day keeping hour
    prefixes, never past the hour's end) into the cells of their day, of its window's prefix through that day and
    of its hour prefix through the hour, and move ``summed_before`` there. The first chunk of a day starts that
    day's prefix as the prefix through the day before (the window's first day is its own prefix), decides whether
    the day keeps hour prefixes and drops those too old; the first chunk of an hour starts its prefix likewise,
    and derives the day before's suffix from the same hour where that day keeps them (:func:`suffix_sql`).
    Returns whether it moved (not when no row or run lies at or after it: nothing to sum). ``run`` executes a
    statement in the transaction and returns the cursor; ``fits(where, params)`` says whether the money of the
    aicost_ledger rows matching that condition may be summed as integers (the integer path; False where the
    dialect has none)."""
    summed, hours_from = map(parse, run(READ_MARKS_SQL, []).fetchone())
    if until <= summed:
        return False
    first = run("SELECT MIN(ts) FROM (SELECT MIN(ts) AS ts FROM aicost_ledger WHERE ts >= ? UNION ALL "
                "SELECT MIN(ts) FROM aicost_runs WHERE ts >= ?) AS m", [ts(summed), ts(summed)]).fetchone()[0]
    if first is None:
        return False
    if summed == EPOCH:  # nothing summed yet: start on the first row's day (no prefix before it to carry)
        summed = min(midnight(parse(first)), until)
    day = midnight(summed)
    if summed == day:  # the day's first chunk: whether it keeps hour prefixes; those of days past keeping dropped
        kept_from = hour_prefixes_from(hours_from, day, until)
        if kept_from != hours_from:
            run(_SET_HOURS_FROM_SQL, [ts(kept_from)])
            run(_DROP_HOURS_SQL, [ts(kept_from)])
            hours_from = kept_from
    high = min(until, day + DAY)
    # on a day keeping hour prefixes, one hour's rows a chunk, into the prefix to the hour's end: none for the
    # day's last hour (the day's cells are that prefix)
    hour, keeps_hours = hour_start(summed), day >= hours_from
    into_hour = hour + HOUR if keeps_hours and hour + HOUR < day + DAY else None
    if keeps_hours:
        high = min(high, hour + HOUR)
    if max_rows:
        cut = run("SELECT ts FROM aicost_ledger WHERE ts >= ? AND ts < ? ORDER BY ts LIMIT 1 OFFSET ?",
                  [ts(summed), ts(high), max_rows]).fetchone()
        if cut is not None and parse(cut[0]) > summed:
            high = parse(cut[0])
    n = day_number(day) % WINDOW + 1  # the day's prefix: the window's first n days
    first_day = day - (n - 1) * DAY
    if summed == day and n > 1:
        run(_copy_sql(d), [n, ts(first_day), n - 1, ts(first_day)])
    if into_hour is not None and summed == hour:  # the hour's first chunk
        if hour > day:  # its prefix starts as the prefix before it
            run(_copy_sql(d), [PREFIX, ts(into_hour), PREFIX, ts(hour)])
        if day - DAY >= hours_from:  # the day before's suffix from the same hour (suffix_kept)
            run(suffix_sql(d), [ts(into_hour - DAY), ts(day - DAY)])
    if parse(first) < high:
        window = "ts >= ? AND ts < ?"
        params = [ts(summed), ts(high)]
        units = fits(window, params)
        run(delta_ddl(d), [])
        run(delta_sql(d, {"rows": window, "runs": window}, units=units), params + params)
        if (units_sql := delta_units_sql(d, units)) is not None:
            run(units_sql, [])
        run(fold_days_sql(d), [])
        if n > 1:
            run(fold_into_sql(d), [n, ts(first_day)])
        if into_hour is not None:
            run(fold_into_sql(d), [PREFIX, ts(into_hour)])
        run(f"DELETE FROM {PAIR_DELTA}", [])
    run(SET_SUMMED_SQL, [ts(high)])
    return True


def late_statements(d: Dialect, wheres: dict[str, str], *, units: bool, schema: str = "",
                    hours: bool = False) -> list[tuple[str, str]]:
    """The statements that add a batch's late rows (``wheres``: conditions on the batch's rows and runs that end
    in ``ts < ?``, ``summed_before``) to the pair cells, each with the parameters it takes: 'sources' (those of
    ``wheres``, in order), 'closed' (one: the end of the last prefix started: ``summed_before``'s midnight, or the
    next one when some of its day is summed), 'hour_sources' (those of ``wheres`` each followed by
    ``hours_from``), 'hours' (one: the end of the last hour prefix started, :func:`hour_prefixes_end`) or ''. The
    day cells, then every prefix started that holds a late row's day; with ``hours`` (some day keeps hour
    prefixes), the late rows of the days keeping them (from ``hours_from``) summed again per hour, into every hour
    prefix started that holds a late row's hour and every hour suffix derived that does (a replayed spill of older
    days costs no second pass)."""
    units_sql = delta_units_sql(d, units)
    statements = [(delta_ddl(d), ""), (delta_sql(d, wheres, units=units, schema=schema), "sources"),
                  *([(units_sql, "")] if units_sql else []),
                  (fold_days_sql(d), ""),
                  *((fold_prefix_sql(d, n, units=units), "closed") for n in range(2, WINDOW + 1)),
                  (f"DELETE FROM {PAIR_DELTA}", "")]
    if hours:
        kept = {source: f"{where} AND ts >= ?" for source, where in wheres.items()}
        statements += [(delta_sql(d, kept, units=units, schema=schema, hourly=True), "hour_sources"),
                       (fold_hours_sql(d, units=units), "hours"), (fold_suffixes_sql(d, units=units), "hours"),
                       (f"DELETE FROM {PAIR_DELTA}", "")]
    return statements
