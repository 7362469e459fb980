"""What a ledger row adds to the sums, as SQL: the one definition the writer's rollups and the reports share.

Why SQL, for both databases: the writer used to build the rollups in Python, row by row, and that was most of its
CPU (about 80 us per row). Now each batch inserts its rows, then sums exactly those rows in the database with one
``INSERT ... SELECT ... GROUP BY`` into a per-connection delta table, and folds the delta into ``aicost_rollup``
at the hour and the day grain with ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``. The rows summed are named by
their ids (the ones this batch actually inserted, after the idempotency check), so a replayed row is never
counted twice. A report summing raw rows (the minutes at a period's edges, or two attribution keys at once) uses
the very same measure expressions (:func:`row_measures`, :func:`run_measures`), so rollups and raw sums agree by
construction; the tests compare them on both databases.

Money stays exact: PostgreSQL sums ``NUMERIC`` natively. SQLite has no exact decimal type (its ``SUM`` of text is a
double), so the store registers ``aicost_dec_sum`` / ``aicost_dec_add``: an aggregate and a function over
canonical decimal text, computed with Python's ``Decimal`` in aicost's 60-digit money context (an amount that
would not fit raises, it is never rounded). See :mod:`aicost.ledger.store`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .row import TOKEN_FIELDS
from .schema import MEASURES, MONEY_MEASURES

__all__ = ["INDEX", "Dialect", "SQLITE", "POSTGRESQL", "DIALECTS", "ROW_DIMS", "RUN_DIMS", "row_measures",
           "run_measures", "sums", "new_measures", "add_into", "delta_ddl", "delta_sql", "fold_sql", "DELTA_TABLE"]

INDEX = {name: i for i, name in enumerate(MEASURES)}
_N = len(MEASURES)


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


SQLITE = Dialect(
    name="sqlite",
    # FILTER: the Python aggregate is only called for amounts that add something (most are NULL or '0').
    money_sum=lambda e: f"COALESCE(aicost_dec_sum({e}) FILTER (WHERE {e} <> '0'), '0')",
    money_add=lambda a, b: f"CASE WHEN {b} = '0' THEN {a} ELSE aicost_dec_add({a}, {b}) END",
    hour=lambda t: f"substr({t}, 1, 13) || ':00:00.000000'",
    day=lambda t: f"substr({t}, 1, 10) || ' 00:00:00.000000'",
    day_text=lambda t: f"substr({t}, 1, 10)",
    hour_text=lambda t: f"substr({t}, 1, 10) || 'T' || substr({t}, 12, 2) || ':00Z'",
    tag_pairs=lambda col: f"json_each({col}) AS t",
    tag_value="json_extract(tags, '$.\"' || ? || '\"')",
    money_type="TEXT",
    ts_type="TEXT",
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
DIALECTS = {d.name: d for d in (SQLITE, POSTGRESQL)}


def row_measures() -> list[str]:
    """Per aicost_ledger row, what it adds to each of :data:`~aicost.ledger.schema.MEASURES`, in order.

    A call adds 1 call, its tokens and its cost (a NULL cost, an unknown price, adds an unknown-cost call and no
    money: never $0); a cache hit adds a hit and what it saved; a refusal adds a refusal and the money it
    stopped. Rows are not feature runs: their run measures are 0."""
    call = "kind = 'call'"
    out = {
        "calls": f"CASE WHEN {call} THEN 1 ELSE 0 END",
        "unknown_cost_calls": f"CASE WHEN {call} AND cost IS NULL THEN 1 ELSE 0 END",
        "estimated_calls": f"CASE WHEN {call} AND estimated THEN 1 ELSE 0 END",
        "error_calls": f"CASE WHEN {call} AND error_type <> '' THEN 1 ELSE 0 END",
        "cost": f"CASE WHEN {call} THEN cost END",
        **{name: f"CASE WHEN {call} THEN {name} ELSE 0 END" for name in TOKEN_FIELDS},
        "cache_hits": "CASE WHEN kind = 'cache_hit' THEN 1 ELSE 0 END",
        "saved_cost": "CASE WHEN kind = 'cache_hit' THEN saved_cost END",
        "refusals": "CASE WHEN kind = 'refusal' THEN 1 ELSE 0 END",
        "stopped_cost": "CASE WHEN kind = 'refusal' THEN stopped_cost END",
        "runs": "0",
        "succeeded_runs": "0",
    }
    return [out[m] for m in MEASURES]


def run_measures() -> list[str]:
    """Per aicost_runs row: one run, and one success when its outcome is 'succeeded'; nothing else."""
    out = {m: ("CAST(NULL AS NUMERIC)" if m in MONEY_MEASURES else "0") for m in MEASURES}
    out["runs"] = "1"
    out["succeeded_runs"] = "CASE WHEN outcome = 'succeeded' THEN 1 ELSE 0 END"
    return [out[m] for m in MEASURES]


def sums(d: Dialect, exprs: list[str], zero: frozenset[str] = frozenset()) -> list[str]:
    """SUM of each measure expression, exact for money; a measure in ``zero`` is known to be 0 (not summed)."""
    return ["0" if m in zero else d.money_sum(e) if m in MONEY_MEASURES else f"SUM({e})"
            for m, e in zip(MEASURES, exprs)]


# Rollup dimensions and the column each reads ('all' holds the totals, value ''). A missing attribution value is
# the value '': reports show it as unattributed spend, which finance wants to see. A feature run has no model or
# provider, so it is in neither. 'tag' has one value per "name=value" of the row's tags.
ROW_DIMS = {"all": "''", "team": "COALESCE(team, '')", "feature": "COALESCE(feature, '')",
            "user": "COALESCE(user_id, '')", "customer": "COALESCE(customer, '')", "model": "COALESCE(model, '')",
            "provider": "COALESCE(provider, '')", "tag": "t.key || '=' || t.value"}
RUN_DIMS = {k: v for k, v in ROW_DIMS.items() if k not in ("model", "provider")}

DELTA_TABLE = "aicost_delta"


def delta_ddl(d: Dialect) -> str:
    """The per-connection table a batch's hour cells are summed into before they are folded into the rollups."""
    cols = ", ".join(f"{m} {d.money_type if m in MONEY_MEASURES else 'BIGINT'}" for m in MEASURES)
    tail = " ON COMMIT DELETE ROWS" if d.name == "postgresql" else ""
    return f"CREATE TEMP TABLE IF NOT EXISTS {DELTA_TABLE} (bucket {d.ts_type}, dim TEXT, value TEXT, {cols}){tail}"


def delta_sql(d: Dialect, rows_where: str | None, runs_where: str | None, dims: tuple[str, ...] | None = None,
              zero: frozenset[str] = frozenset()) -> str:
    """``INSERT INTO aicost_delta``: the hour cells of the ledger rows matching ``rows_where`` and the runs matching
    ``runs_where`` (SQL conditions; None leaves that table out), for every rollup dimension (or ``dims``).

    Each source is read once (a materialized CTE with the per-row measures), then exploded into one arm per
    dimension and grouped. ``zero``: token counts the caller knows are 0 in every row summed (most of the 14
    classes, in a typical batch), written as 0 rather than summed: the sums are most of the statement's work."""
    names = list(MEASURES)
    ctes, arms = [], []
    for source, table, where, measures, dim_cols in (
            ("r", "aicost_ledger", rows_where, row_measures(), ROW_DIMS),
            ("u", "aicost_runs", runs_where, run_measures(), RUN_DIMS)):
        if where is None:
            continue
        coarse = [c for c in ("team", "feature", "model", "provider", "tags") if c in dim_cols or c == "tags"]
        cols = ", ".join(f"{'0' if n in zero else e} AS {n}" for n, e in zip(names, measures))
        ctes.append(f"{source} AS MATERIALIZED (SELECT {d.hour('ts')} AS bucket, user_id, customer, "
                    f"{', '.join(coarse)}, {cols} FROM {table} WHERE {where})")
        # Each dimension's arm reads the rows pre-summed per hour and either (team, feature, model, provider, tags)
        # or (user, customer): several times fewer than the rows, so each arm sums far less.
        ctes.append(f"{source}c AS MATERIALIZED (SELECT bucket, {', '.join(coarse)}, "
                    f"{', '.join(f'{e} AS {n}' for n, e in zip(names, sums(d, names, zero)))} FROM {source} "
                    f"GROUP BY bucket, {', '.join(coarse)})")
        ctes.append(f"{source}p AS MATERIALIZED (SELECT bucket, user_id, customer, "
                    f"{', '.join(f'{e} AS {n}' for n, e in zip(names, sums(d, names, zero)))} FROM {source} "
                    "GROUP BY bucket, user_id, customer)")
        for dim, value in dim_cols.items():
            if dims is not None and dim not in dims:
                continue
            rel = source + ("p" if dim in ("user", "customer") else "c")
            join = f", {d.tag_pairs(rel + '.tags')}" if dim == "tag" else ""
            arms.append(f"SELECT bucket, '{dim}' AS dim, {value} AS value, {', '.join(names)} FROM {rel}{join}")
    return (f"WITH {', '.join(ctes)} INSERT INTO {DELTA_TABLE} (bucket, dim, value, {', '.join(names)}) "
            f"SELECT bucket, dim, value, {', '.join(sums(d, names, zero))} FROM ({' UNION ALL '.join(arms)}) AS cells "
            "GROUP BY bucket, dim, value")


def fold_sql(d: Dialect, grain: str) -> str:
    """Fold ``aicost_delta`` into ``aicost_rollup`` at ``grain`` ('hour' as is, 'day' summed per day): insert new
    cells, add to existing ones."""
    names = list(MEASURES)
    if grain == "hour":
        select = f"SELECT 'hour', bucket, dim, value, {', '.join(names)} FROM {DELTA_TABLE} WHERE true"
    else:
        select = (f"SELECT 'day', {d.day('bucket')}, dim, value, {', '.join(sums(d, names))} FROM {DELTA_TABLE} "
                  f"WHERE true GROUP BY {d.day('bucket')}, dim, value")
    updates = ", ".join(
        f"{m} = {d.money_add(f'aicost_rollup.{m}', f'excluded.{m}')}" if m in MONEY_MEASURES
        else f"{m} = aicost_rollup.{m} + excluded.{m}" for m in names)
    return (f"INSERT INTO aicost_rollup (grain, bucket, dim, value, {', '.join(names)}) {select} "
            f"ON CONFLICT (grain, dim, bucket, value) DO UPDATE SET {updates}")


def new_measures() -> list:
    """Zero sums (money as Decimal 0), in :data:`~aicost.ledger.schema.MEASURES` order."""
    from decimal import Decimal

    m: list = [0] * _N
    for name in MONEY_MEASURES:
        m[INDEX[name]] = Decimal(0)
    return m


def add_into(acc: list, m: list) -> None:
    """acc += m, exactly (the caller runs inside ``decimal.localcontext(MONEY)``)."""
    for i in range(_N):
        acc[i] += m[i]
