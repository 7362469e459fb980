"""What a ledger row adds to the sums, as SQL: the one definition the writer's rollups and the reports share.

Why SQL, for both databases: the writer used to build the rollups in Python, row by row, and that was most of its
CPU (about 80 us per row). Now each batch inserts its rows, then sums exactly those rows in the database with one
``INSERT ... SELECT ... GROUP BY`` into a per-connection delta table, and folds the delta into ``aicost_rollup``
(one dimension per cell) and ``aicost_rollup_cube`` (one cell per combination of team, feature, model and
provider; its day cells for closed days only, :func:`close_days_sql`) at the hour and the day grain with
``INSERT ... SELECT ... ON CONFLICT DO UPDATE``. The rows summed are named by their ids (the ones this batch
actually inserted, after the idempotency check), or, for a SQLite batch staged ahead (:mod:`aicost.ledger.staging`)
none of whose rows was stored yet, they are the staged rows themselves; either way a replayed row is never counted
twice. A report summing raw rows (the minutes at a period's edges, or keys neither rollup table holds together)
uses the very same measure expressions (:func:`row_measures`, :func:`run_measures`), so rollups and raw sums agree by
construction; the tests compare them on both databases.

Money stays exact: PostgreSQL sums ``NUMERIC`` natively. SQLite has no exact decimal type (its ``SUM`` of text is a
double). A batch whose amounts are all whole numbers of 10**-12 dollars and add up to under $9 million
(:func:`fits_units`; nearly every batch) is summed as 64-bit integers of that unit, converted from and back to
decimal text per cell (:attr:`Dialect.to_units` / ``from_units``). Any other batch is summed with
``aicost_dec_sum`` / ``aicost_dec_add``, an aggregate and a function the store registers over canonical decimal
text, computed with Python's ``Decimal`` in aicost's 60-digit money context (an amount that would not fit raises,
it is never rounded). See :mod:`aicost.ledger.store`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable

from ..pricing.cost import MONEY
from .row import TOKEN_FIELDS
from .schema import CUBE_FOLDED_TABLE, CUBE_KEYS, CUBE_TABLE, MEASURES, MONEY_MEASURES

__all__ = ["INDEX", "Dialect", "SQLITE", "POSTGRESQL", "DIALECTS", "ROW_DIMS", "RUN_DIMS", "CUBE", "row_measures",
           "run_measures", "new_measures", "delta_ddl", "delta_sql", "fold_sql", "rollup_sql", "close_days_sql",
           "fits_units", "summable", "unsummable", "SUMMABLE_DECIMALS", "SUMMABLE_LIMIT", "UNIT_DIGITS", "DELTA_TABLE"]

INDEX = {name: i for i, name in enumerate(MEASURES)}
_N = len(MEASURES)


UNIT_DIGITS = 12  # the integer path's unit: 10**-12 dollars (a pico-dollar)


@dataclass(frozen=True)
class Dialect:
    """The few SQL spellings that differ between SQLite and PostgreSQL."""

    name: str
    money_sum: Callable[[str], str]  # exact sum of a money expression ('0' / 0 when nothing is summed)
    money_add: Callable[[str, str], str]  # exact a + b of two money values
    hour: Callable[[str], str]  # the UTC hour a time falls in, as stored in aicost_rollup.bucket
    day: Callable[[str], str]  # the UTC day a time falls in
    day_text: Callable[[str], str]  # 'YYYY-MM-DD' of a time
    hour_text: Callable[[str], str]  # 'YYYY-MM-DDTHH:00Z' of a time
    tag_pairs: Callable[[str], str]  # a FROM item exploding a JSON tags column into (key, value)
    tag_value: str  # the value of tag ? in tags (one parameter: the name)
    money_type: str
    ts_type: str
    # Optional integer path (see :func:`fits_units`): a money text as integer units of 10**-UNIT_DIGITS dollars,
    # and such an integer back as canonical decimal text. None: the dialect sums its money type directly.
    to_units: Callable[[str], str] | None = None
    from_units: Callable[[str], str] | None = None


_UNIT = 10**UNIT_DIGITS


def _sqlite_units(x: str) -> str:
    """SQLite: a canonical money text as integer units of the integer path. '0.0002025' -> 2025 * 10**(12 - 7):
    the digits without the point, times 10 to the missing places. Exact only for texts with at most UNIT_DIGITS
    decimals that fit (:func:`fits_units`, :func:`_sqlite_fits_positive`)."""
    return (f"CAST(replace({x}, '.', '') AS INTEGER) * CAST(substr('{_UNIT}', 1, {UNIT_DIGITS + 1} - "
            f"CASE WHEN instr({x}, '.') THEN length({x}) - instr({x}, '.') ELSE 0 END) AS INTEGER)")


def _sqlite_units_text(n: str) -> str:
    """SQLite: integer units back to canonical money text (as :func:`aicost.pricing.money.format_usd` writes it:
    no trailing zeros, no exponent, '0' for zero), in SQL: no Python call, so SQLite keeps running without the
    GIL while the writer's other thread works. The sign, then :func:`_sqlite_positive_units_text` of ``abs(n)``."""
    return (f"CASE WHEN {n} = 0 THEN '0' ELSE (CASE WHEN {n} < 0 THEN '-' ELSE '' END) || "
            f"{_sqlite_positive_units_text(f'abs({n})')} END")


def _sqlite_fits_positive(x: str) -> str:
    """SQLite: whether a money text has no sign, at most UNIT_DIGITS decimals and is under a million dollars (two
    such add up to far less than a 64-bit integer of units). Rollup amounts are sums of prices: a negative one
    takes the Decimal add."""
    return (f"(CASE WHEN instr({x}, '.') THEN instr({x}, '.') <= 7 AND length({x}) - instr({x}, '.') <= {UNIT_DIGITS} "
            f"ELSE length({x}) <= 6 END AND substr({x}, 1, 1) <> '-')")


def _sqlite_positive_units_text(n: str) -> str:
    """SQLite: :func:`_sqlite_units_text` of integer units known not to be negative: ``n`` is written twice, not
    four times (a fold's ``n`` is the sum of two texts' units, a dozen string functions; the folds' adds were
    most of their time)."""
    return f"rtrim(rtrim(printf('%d.%0{UNIT_DIGITS}d', {n} / {_UNIT}, {n} % {_UNIT}), '0'), '.')"


SQLITE = Dialect(
    name="sqlite",
    # FILTER: the Python aggregate is only called for amounts that add something (most are NULL or '0').
    money_sum=lambda e: f"COALESCE(aicost_dec_sum({e}) FILTER (WHERE {e} <> '0'), '0')",
    # Two amounts that fit are added as integers in SQL; others (huge totals, more decimals) exactly in Python.
    money_add=lambda a, b: (f"CASE WHEN {b} = '0' THEN {a} WHEN {_sqlite_fits_positive(a)} AND "
                            f"{_sqlite_fits_positive(b)} THEN "
                            f"{_sqlite_positive_units_text(f'({_sqlite_units(a)} + {_sqlite_units(b)})')} "
                            f"ELSE aicost_dec_add({a}, {b}) END"),
    hour=lambda t: f"substr({t}, 1, 13) || ':00:00.000000'",
    day=lambda t: f"substr({t}, 1, 10) || ' 00:00:00.000000'",
    day_text=lambda t: f"substr({t}, 1, 10)",
    hour_text=lambda t: f"substr({t}, 1, 10) || 'T' || substr({t}, 12, 2) || ':00Z'",
    tag_pairs=lambda col: f"json_each({col}) AS t",
    tag_value="json_extract(tags, '$.\"' || ? || '\"')",
    money_type="TEXT",
    ts_type="TEXT",
    # Only used on batches whose every amount has at most UNIT_DIGITS decimals and fits (fits_units): exact.
    to_units=_sqlite_units,
    from_units=_sqlite_units_text,
)
POSTGRESQL = Dialect(
    name="postgresql",
    money_sum=lambda e: f"COALESCE(SUM({e}), 0)",
    money_add=lambda a, b: f"{a} + {b}",
    hour=lambda t: f"(date_trunc('hour', {t} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')",
    day=lambda t: f"(date_trunc('day', {t} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')",
    day_text=lambda t: f"to_char({t} AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    hour_text=lambda t: f"to_char({t} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24\":00Z\"')",
    tag_pairs=lambda col: f"jsonb_each_text({col}) AS t(key, value)",
    tag_value="(tags ->> ?)",
    money_type="NUMERIC",
    ts_type="TIMESTAMPTZ",
)


def negated(d: Dialect, column: str) -> str:
    """SQL: ``-column`` of a count or, money being text on SQLite, of an amount ('0' and NULL as they are)."""
    if d.name != "sqlite" or column.rpartition(".")[2] not in MONEY_MEASURES:
        return f"-{column}"
    return f"CASE WHEN {column} = '0' THEN '0' WHEN {column} LIKE '-%' THEN substr({column}, 2) ELSE '-' || {column} END"


DIALECTS = {d.name: d for d in (SQLITE, POSTGRESQL)}


UNIT_LIMIT = 9 * 10**6  # dollars: a batch whose amounts add up to less never overflows a 64-bit integer sum
_MONEY_FIELDS = ("cost", "saved_cost", "stopped_cost")
_ZERO = Decimal(0)

# The amounts a ledger holds, on every database: under SUMMABLE_LIMIT dollars, either sign, with at most
# SUMMABLE_DECIMALS decimals (trailing zeros not counted). A per-row bound such that every sum of rows fits: SQLite's
# Decimal sums (aicost_dec_sum / aicost_dec_add, and a report's sums in Python) work to MONEY's 60 significant
# digits and raise rather than round, in the transaction that inserts the raw row, so a sum that did not fit lost
# the row too. A ledger holds fewer than 2**63 rows (SQLite's 64-bit row ids; every amount of a cell is counted
# beside it in a 64-bit count), under 10**19: any sum of distinct rows (a rollup cell at any grain, cube or pair
# cell, a report's total) and any difference of two (a period's change, pairs.py) is under 10**(11 + 19) dollars
# and has at most 30 decimals, 11 + 19 + 30 = 60 digits. (The bound was $10**24 and 36 decimals: each row fit
# alone, but two of $9 x 10**23 made a cell of 25 integer digits to which no later row of 36 decimals could be
# added; $1e300 beside $0.25 never could.) 30 decimals: a price file's rate has at most 18 per million tokens, 24
# per token, and a discount or a batch tier's factor multiplies in a few more.
SUMMABLE_DECIMALS = 30
SUMMABLE_LIMIT = Decimal("1E+11")  # (not Decimal(10) ** 11: that is computed in the thread's context, at import)
_ROW_COUNT_DIGITS = 19  # 2**63 - 1 has 19
assert SUMMABLE_LIMIT.adjusted() + _ROW_COUNT_DIGITS + SUMMABLE_DECIMALS <= MONEY.prec


def summable(value: Decimal) -> bool:
    """Whether ``value`` is an amount the ledger sums exactly (:data:`SUMMABLE_LIMIT`, :data:`SUMMABLE_DECIMALS`);
    NaN and infinities are not. Exact whatever the thread's decimal context (no arithmetic, only a comparison)."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        return False
    if exponent < -SUMMABLE_DECIMALS and any(digits[exponent + SUMMABLE_DECIMALS:]):
        return False  # a non-zero digit past the last decimal allowed
    return value.copy_abs() < SUMMABLE_LIMIT


def unsummable(rows: Iterable[Any]) -> str | None:
    """The name of the first amount of ``rows`` (ledger rows) that is not :func:`summable` (None: all are)."""
    for row in rows:
        for name in _MONEY_FIELDS:
            value = getattr(row, name)
            if value is not None and not summable(value):
                return name
    return None


def fits_units(rows: Iterable[Any]) -> bool:
    """Whether every amount of ``rows`` (ledger rows) is a whole number of 10**-UNIT_DIGITS dollars and their
    absolute sum is under $9 million: then SQLite sums the batch as 64-bit integers, exactly and without
    overflow (every partial sum is bounded by the absolute sum). Otherwise the batch takes the Decimal
    aggregate: an amount with more decimals, or a huge one, is still summed exactly, only slower.

    The absolute sum is exact whatever the thread's decimal context (the writer's thread starts with a copy of
    ``decimal.DefaultContext``, which a host may have lowered): at 4 digits, $8,999,000 and a thousand $400.50
    added up to $8,999,000, under the bound, and SQLite's integer sum of the batch overflowed."""
    total = _ZERO
    for row in rows:
        for name in _MONEY_FIELDS:
            value = getattr(row, name)
            if value is None:
                continue
            _, digits, exponent = value.as_tuple()
            if not isinstance(exponent, int):
                return False  # NaN / Infinity: never summed as an integer
            if exponent < -UNIT_DIGITS and any(digits[exponent + UNIT_DIGITS:]):
                return False  # a non-zero digit below the unit
            size = value.copy_abs()
            if size >= UNIT_LIMIT:
                return False
            total = MONEY.add(total, size)  # two amounts under the bound with at most 12 decimals: exact
            if total >= UNIT_LIMIT:
                return False
    return True


def row_measures(money: Callable[[str], str] = lambda column: column) -> list[str]:
    """Per aicost_ledger row, what it adds to each of :data:`~aicost.ledger.schema.MEASURES`, in order.

    A call adds 1 call, its tokens and its cost (a NULL cost, an unknown price, adds an unknown-cost call and no
    money: never $0); a cache hit adds a hit and what it saved; a refusal adds a refusal and the money it
    stopped. Rows are not feature runs: their run measures are 0. ``money`` wraps each money column (the
    integer path's conversion, :attr:`Dialect.to_units`)."""
    call = "kind = 'call'"
    out = {
        "calls": f"CASE WHEN {call} THEN 1 ELSE 0 END",
        "unknown_cost_calls": f"CASE WHEN {call} AND cost IS NULL THEN 1 ELSE 0 END",
        "estimated_calls": f"CASE WHEN {call} AND estimated THEN 1 ELSE 0 END",
        "error_calls": f"CASE WHEN {call} AND error_type <> '' THEN 1 ELSE 0 END",
        "cost": f"CASE WHEN {call} THEN {money('cost')} END",
        **{name: f"CASE WHEN {call} THEN {name} ELSE 0 END" for name in TOKEN_FIELDS},
        "cache_hits": "CASE WHEN kind = 'cache_hit' THEN 1 ELSE 0 END",
        "saved_cost": f"CASE WHEN kind = 'cache_hit' THEN {money('saved_cost')} END",
        "refusals": "CASE WHEN kind = 'refusal' THEN 1 ELSE 0 END",
        "stopped_cost": f"CASE WHEN kind = 'refusal' THEN {money('stopped_cost')} END",
        "runs": "0",
        "succeeded_runs": "0",
    }
    return [out[m] for m in MEASURES]


def run_measures(money: Callable[[str], str] | None = None) -> list[str]:
    """Per aicost_runs row: one run, and one success when its outcome is 'succeeded'; nothing else (``money`` is
    unused: a run adds no money; it is there to match :func:`row_measures`)."""
    out = {m: ("CAST(NULL AS NUMERIC)" if m in MONEY_MEASURES else "0") for m in MEASURES}
    out["runs"] = "1"
    out["succeeded_runs"] = "CASE WHEN outcome = 'succeeded' THEN 1 ELSE 0 END"
    return [out[m] for m in MEASURES]


# Rollup dimensions and the column each reads ('all' holds the totals, value ''). A missing attribution value is
# the value '': reports show it as unattributed spend, which finance wants to see. A feature run has no model or
# provider, so it is in neither. 'tag' has one value per "name=value" of the row's tags.
ROW_DIMS = {"all": "''", "team": "COALESCE(team, '')", "feature": "COALESCE(feature, '')",
            "user": "COALESCE(user_id, '')", "customer": "COALESCE(customer, '')", "model": "COALESCE(model, '')",
            "provider": "COALESCE(provider, '')", "tag": "t.key || '=' || t.value"}
RUN_DIMS = {k: v for k, v in ROW_DIMS.items() if k not in ("model", "provider")}
# The pseudo-dimension of the cube (aicost_rollup_cube): one cell per combination of CUBE_KEYS, held in the
# delta's key columns (its value is ''). A feature run is in the cell of its team and feature, model and
# provider '' (it has neither).
CUBE = "cube"

DELTA_TABLE = "aicost_delta"


def delta_ddl(d: Dialect) -> str:
    """The per-connection table a batch's hour cells are summed into before they are folded into the rollups:
    (dim, value) cells for aicost_rollup, and dim 'cube' cells keyed by :data:`CUBE_KEYS` for the cube.
    Every measure defaults to 0, so a statement writes only the measures its rows can add to."""
    cols = ", ".join(f"{m} {d.money_type} DEFAULT '0'" if m in MONEY_MEASURES else f"{m} BIGINT DEFAULT 0"
                     for m in MEASURES)
    keys = ", ".join(f"{k} TEXT DEFAULT ''" for k in CUBE_KEYS)
    tail = " ON COMMIT DELETE ROWS" if d.name == "postgresql" else ""
    return (f"CREATE TEMP TABLE IF NOT EXISTS {DELTA_TABLE} (bucket {d.ts_type}, dim TEXT, value TEXT, {keys}, "
            f"{cols}){tail}")


_CONSTANT_ZERO = ("0", "CAST(NULL AS NUMERIC)")
# source -> (table, per-row measures, dimensions)
_SOURCES = {"rows": ("aicost_ledger", row_measures, ROW_DIMS), "runs": ("aicost_runs", run_measures, RUN_DIMS)}


def rollup_sql(d: Dialect, wheres: dict[str, str], *, grains: tuple[str, ...] = ("hour", "day"),
               dims: tuple[str, ...] | None = None, zero: frozenset[str] = frozenset(),
               units: bool = False, schema: str = "") -> list[tuple[str, tuple[str, ...]]]:
    """The statements that add the rows of each source in ``wheres`` ('rows' -> a condition on aicost_ledger,
    'runs' -> on aicost_runs) to the rollups at ``grains``: the delta insert (:func:`delta_sql`, both sources in
    one statement), then the folds (:func:`fold_sql`) into each rollup table ``dims`` reach (aicost_rollup; the
    cube, :data:`CUBE`) and a delete of the delta. Returned as (sql, the sources
    whose parameters it takes, in order). Only the measures a source can add to are summed (a run adds 2 of the
    25, a call never adds a run), minus ``zero``: most of the work is the sums, so the narrower the cheaper."""
    live = frozenset(m for source in wheres for m, e in zip(MEASURES, _SOURCES[source][1]())
                     if e not in _CONSTANT_ZERO and m not in zero)
    skip = frozenset(MEASURES) - live
    out: list[tuple[str, tuple[str, ...]]] = [
        (delta_sql(d, wheres, dims=dims, zero=skip, units=units, schema=schema), tuple(wheres))]
    tables = [cube for cube in (False, True) if dims is None or any((dim == CUBE) == cube for dim in dims)]
    out.extend((fold_sql(d, grain, skip, units=units, cube=cube), ()) for cube in tables for grain in grains)
    out.append((f"DELETE FROM {DELTA_TABLE}", ()))
    return out


# The step of delta_sql's per-hour sums that each rollup dimension's cells are read from.
_STEP_OF = {"all": "tf", "team": "tf", "feature": "tf", "model": "mp", "provider": "mp", "tag": "tg", "user": "sp",
            "customer": "sp", CUBE: "sc"}


def delta_sql(d: Dialect, wheres: dict[str, str], dims: tuple[str, ...] | None = None,
              zero: frozenset[str] = frozenset(), units: bool = False, schema: str = "") -> str:
    """``INSERT INTO aicost_delta``: the hour cells of the rows of each source in ``wheres`` ('rows':
    aicost_ledger, 'runs': aicost_runs -> an SQL condition on it), for every rollup dimension and the cube (or
    ``dims``), each cell once (so the folds write each rollup cell once).

    Each source is read once (a materialized CTE with the per-row measures), summed per hour in steps and
    exploded into one arm per dimension; a final ``GROUP BY`` sums the arms of both sources per cell (one for
    aicost_rollup's cells, one for the cube's). A source
    sums only the measures it can add to (a run adds 2 of the 25), less ``zero``: measures the caller knows are 0
    in every row summed (most token classes in a typical batch), left out (the delta's default, 0): the sums are
    most of the statement's work. ``units``: sum money as integers (:func:`fits_units` must hold for the rows
    summed; the dialect's ``to_units``), written back to the delta in the dialect's money type. ``schema``: read
    the source tables of that attached database (a staged batch, :mod:`aicost.ledger.staging`)."""
    names = [m for m in MEASURES if m not in zero]
    ctes: list[str] = []
    arms: list[str] = []
    cube_arms: list[str] = []
    for source, where in wheres.items():
        table, measures_of, dim_cols = _SOURCES[source]
        exprs = dict(zip(MEASURES, measures_of(d.to_units if units else (lambda column: column))))
        own = [m for m in names if exprs[m] not in _CONSTANT_ZERO]
        sums = ", ".join(f"SUM({m}) AS {m}" if units or m not in MONEY_MEASURES else f"{_sum(d, m, m)} AS {m}"
                         for m in own)
        p = source[:2] + "_"  # this source's CTEs: ro_s, ro_sc... / ru_s, ru_sc...
        cube_keys = [c for c in CUBE_KEYS if c in dim_cols]  # a run has no model or provider
        coarse = [*cube_keys, "tags"]
        cols = ", ".join(f"{exprs[m]} AS {m}" for m in own)
        ctes.append(f"{p}s AS MATERIALIZED (SELECT {d.hour('ts')} AS bucket, user_id, customer, {', '.join(coarse)}, "
                    f"{cols} FROM {schema + '.' if schema else ''}{table} WHERE {where})")
        # Summed per hour in steps, each step reading the one before (several times fewer rows each), so the arms
        # that explode the sums per dimension read a few rows each: s -> sc (team, feature, model, provider, tags)
        # -> tf (team, feature), mp (model, provider), tg (tags); s -> sp (user, customer). The cube's arm reads sc
        # too (its cells are sc's without the tags: summed by the final GROUP BY, not by a step of their own).
        steps = {"sc": ("s", coarse), "tf": ("sc", ["team", "feature"]), "mp": ("sc", ["model", "provider"]),
                 "tg": ("sc", ["tags"]), "sp": ("s", ["user_id", "customer"])}
        wanted = [dim for dim in (*dim_cols, CUBE) if dims is None or dim in dims]
        needed = {_STEP_OF[dim] for dim in wanted}
        needed |= {steps[n][0] for n in needed} - {"s"}
        for name, (parent, keys) in steps.items():
            if name in needed:
                ctes.append(f"{p}{name} AS MATERIALIZED (SELECT bucket, {', '.join(keys)}, {sums} FROM {p}{parent} "
                            f"GROUP BY bucket, {', '.join(keys)})")
        # measures this source never adds: 0, or no money (NULL: not summed)
        pad = {m: m if m in own else "CAST(NULL AS NUMERIC)" if m in MONEY_MEASURES else "0" for m in names}
        padded = ", ".join(f"{pad[m]} AS {m}" for m in names)
        for dim in wanted:
            rel = p + _STEP_OF[dim]
            join = f", {d.tag_pairs(rel + '.tags')}" if dim == "tag" else ""
            if dim == CUBE:
                keys = ", ".join(f"COALESCE({k}, '') AS {k}" if k in cube_keys else f"'' AS {k}" for k in CUBE_KEYS)
                cube_arms.append(f"SELECT bucket, {keys}, {padded} FROM {rel}")
            else:
                arms.append(f"SELECT bucket, '{dim}' AS dim, {dim_cols[dim]} AS value, {padded} FROM {rel}{join}")
    if units:
        assert d.from_units is not None
        final = [f"{d.from_units(f'COALESCE(SUM({m}), 0)')} AS {m}" if m in MONEY_MEASURES else f"SUM({m}) AS {m}"
                 for m in names]
    else:
        final = [f"{_sum(d, m, m)} AS {m}" for m in names]
    # Two GROUP BYs, each over its own arms and keys: the rollup's (dim, value) cells (their cube key columns keep
    # the default ''), and the cube's (its keys; dim 'cube'): one over both would compare and carry the other's
    # constant columns for every cell.
    all_keys = ", ".join(CUBE_KEYS)
    selects = []
    if arms:
        selects.append(f"SELECT bucket, dim, value, {_NO_KEYS}, {', '.join(final)} FROM ({' UNION ALL '.join(arms)}) "
                       f"AS cells GROUP BY bucket, dim, value")
    if cube_arms:
        selects.append(f"SELECT bucket, '{CUBE}', '', {all_keys}, {', '.join(final)} "
                       f"FROM ({' UNION ALL '.join(cube_arms)}) AS cells GROUP BY bucket, {all_keys}")
    return (f"WITH {', '.join(ctes)} INSERT INTO {DELTA_TABLE} (bucket, dim, value, {all_keys}, {', '.join(names)}) "
            f"{' UNION ALL '.join(selects)}")


_NO_KEYS = ", ".join("''" for _ in CUBE_KEYS)


def _sum(d: Dialect, measure: str, expr: str) -> str:
    return d.money_sum(expr) if measure in MONEY_MEASURES else f"SUM({expr})"


def fold_sql(d: Dialect, grain: str, zero: frozenset[str] = frozenset(), units: bool = False,
             cube: bool = False) -> str:
    """Fold ``aicost_delta`` (each hour cell once: :func:`delta_sql`) into ``aicost_rollup`` (``cube``: its 'cube'
    cells into the cube table) at ``grain`` ('hour' as is, 'day' summed per day): insert new cells, add to
    existing ones. Measures in ``zero`` are 0 in the delta: left out (a new cell's default is 0). ``units``: the
    delta's money was summed from a batch :func:`fits_units` allows, so its cells are summed per day as integers
    too (the dialect's ``to_units``), not with the exact-decimal aggregate."""
    names = [m for m in MEASURES if m not in zero]

    def total(m: str) -> str:
        if units and m in MONEY_MEASURES and d.to_units is not None and d.from_units is not None:
            return d.from_units(f"COALESCE(SUM({d.to_units(m)}), 0)")
        return _sum(d, m, m)

    table, cell = (CUBE_TABLE, ", ".join(CUBE_KEYS)) if cube else ("aicost_rollup", "dim, value")
    which = f"dim {'=' if cube else '<>'} '{CUBE}'"
    if cube and grain == "day":
        # The cube's day cells are those of closed days (folded, :func:`close_days_sql`): of a batch, only its
        # late rows (of a day already folded) go to day cells too; a day not folded yet has hour cells alone.
        which += f" AND bucket < (SELECT folded_before FROM {CUBE_FOLDED_TABLE})"
    if grain == "hour":
        select = f"SELECT 'hour', bucket, {cell}, {', '.join(names)} FROM {DELTA_TABLE} WHERE {which}"
    else:
        select = (f"SELECT 'day', {d.day('bucket')}, {cell}, {', '.join(map(total, names))} "
                  f"FROM {DELTA_TABLE} WHERE {which} GROUP BY {d.day('bucket')}, {cell}")
    updates = ", ".join(
        f"{m} = {d.money_add(f'{table}.{m}', f'excluded.{m}')}" if m in MONEY_MEASURES
        else f"{m} = {table}.{m} + excluded.{m}" for m in names)
    conflict = f"grain, bucket, {cell}" if cube else "grain, dim, bucket, value"
    return (f"INSERT INTO {table} (grain, bucket, {cell}, {', '.join(names)}) {select} "
            f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}")


def close_days_sql(d: Dialect) -> str:
    """Fold the cube's hour cells of the days in [?, ?) (two parameters: the first day not folded yet, from
    :data:`~aicost.ledger.schema.CUBE_FOLDED_TABLE`, and the day to fold up to) into day cells, exactly (money by
    the dialect's exact sum: this runs once per day). The caller then moves ``folded_before`` to the second
    parameter, in the same transaction, and holds the ledger's write lock: no day cell of those days exists yet
    (:func:`fold_sql` writes day cells only before ``folded_before``), and no batch writes hour cells meanwhile."""
    cells = ", ".join(CUBE_KEYS)
    sums = ", ".join(_sum(d, m, m) for m in MEASURES)
    return (f"INSERT INTO {CUBE_TABLE} (grain, bucket, {cells}, {', '.join(MEASURES)}) "
            f"SELECT 'day', {d.day('bucket')}, {cells}, {sums} FROM {CUBE_TABLE} "
            f"WHERE grain = 'hour' AND bucket >= ? AND bucket < ? GROUP BY {d.day('bucket')}, {cells}")


def new_measures() -> list:
    """Zero sums (money as Decimal 0), in :data:`~aicost.ledger.schema.MEASURES` order."""
    from decimal import Decimal

    m: list = [0] * _N
    for name in MONEY_MEASURES:
        m[INDEX[name]] = Decimal(0)
    return m
