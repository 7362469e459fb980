"""The ledger's tables: versioned, documented (docs/ledger.md) and stable, so BI tools can query them directly.

The tables below, with ``aicost_rollup_cube_folded`` (one row: the cube's first day without day cells) and
``aicost_rollup_pair_mark`` (one row: how far the pair cells are summed), the self-hosted pools' two (version
3, :func:`_v3`), and ``aicost_schema`` (one row per migration applied, the highest ``version`` is the schema's):

* ``aicost_ledger``: one row per call / cache hit / refusal (:class:`aicost.ledger.row.LedgerRow`), keyed by
  ``span_id`` (re-inserting a row is a no-op, so a replay never double counts).
* ``aicost_runs``: one row per finished ``aicost.feature`` unit of work (:class:`~aicost.ledger.row.FeatureRun`).
* ``aicost_rollup``: sums maintained at write time (in SQL, :mod:`aicost.ledger.rollup`), per ``grain`` ('hour' /
  'day') x ``bucket`` (its start, UTC) x ``dim`` (all / team / feature / user / customer / model / provider / tag)
  x ``value`` (for 'tag': ``name=value``; for 'all': ''). Reports read these instead of scanning millions of rows.
* ``aicost_rollup_cube`` (version 5): the same sums per ``grain`` x ``bucket`` x every combination of ``team``,
  ``feature``, ``model`` and ``provider`` that occurred ('' for no value; a feature run is in its team and
  feature's cell with model and provider ''), so a report grouped by, or filtered on, any of those four together
  (team x model) reads cells too (on the synthetic benchmark ledger: 1,424 day and 27,665 hour cells for a
  day's 330,000 rows). Its hour cells are written by every batch; its day cells only for *closed* days, those
  before ``aicost_rollup_cube_folded.folded_before`` (one row): the writer folds a day's hour cells into day cells
  once, when it first writes a row of a later day, and from then on adds a late row of a folded day to both.
  Days from ``folded_before`` on (today) have hour cells only.
* ``aicost_rollup_pair`` (version 6): the same sums per pair of attribution keys where one is user, customer or
  a tag (``dim_a`` / ``value_a``, ``dim_b`` / ``value_b``: team x customer, user x model, customer x 'env=prod'),
  over the ``days`` days from ``bucket``: each day's, and each day's prefix of its 64-day window. Summed behind
  the writer from the rows stored before ``aicost_rollup_pair_mark.summed_before`` (:mod:`aicost.ledger.pairs`).
  On SQLite (version 7) each amount also as integer units (:data:`PAIR_UNITS`), which reports sum as they are.
  Version 8: for the last few days, each day's hour prefixes too (``days`` 0), from
  ``aicost_rollup_pair_mark.hours_from``. Version 9: and each closed such day's hour suffixes (``days`` -1).

Types differ by dialect only where they must: money is ``NUMERIC`` in PostgreSQL and ``TEXT`` holding an exact
decimal in SQLite (a SQLite ``NUMERIC`` column would turn it into a float); times are ``TIMESTAMPTZ`` in
PostgreSQL and ``TEXT`` 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC, SQLite's own datetime format) in SQLite; tags and
cost parts are ``JSONB`` / JSON text.

A database whose schema is newer than :data:`SCHEMA_VERSION` is refused (``LedgerSchemaError``), never misread.
A new version appends to :data:`MIGRATIONS`; it never edits an old one.
"""

from __future__ import annotations

from .row import TOKEN_FIELDS

__all__ = [
    "SCHEMA_VERSION",
    "MIGRATIONS",
    "ROW_COLUMNS",
    "RUN_COLUMNS",
    "MEASURES",
    "MONEY_MEASURES",
    "ROLLUP_DIMS",
    "CUBE_KEYS",
    "CUBE_TABLE",
    "CUBE_FOLDED_TABLE",
    "FOLDED_FLOOR",
    "GRAINS",
    "PAIR_TABLE",
    "PAIR_MARK_TABLE",
    "ddl",
]

SCHEMA_VERSION = 10

# Rollup dimensions, in the order they are written. 'all' holds the totals.
ROLLUP_DIMS = ("all", "team", "feature", "user", "customer", "model", "provider", "tag")
GRAINS = ("hour", "day")
# The keys of aicost_rollup_cube's cells: the attribution keys few enough in combination to sum at write time
# (customer and user are hundreds to thousands each: their pairs would be tens of thousands of cells a day).
CUBE_KEYS = ("team", "feature", "model", "provider")
CUBE_TABLE = "aicost_rollup_cube"
# One row: the cube has day cells for the days before folded_before (and only for them).
CUBE_FOLDED_TABLE = "aicost_rollup_cube_folded"
# Pair cells (version 6, aicost.ledger.pairs) and the one-row table saying how far they are summed (version 7's
# name; version 6's was _V6_PAIR_MARK_TABLE).
PAIR_TABLE = "aicost_rollup_pair"
PAIR_MARK_TABLE = "aicost_rollup_pair_mark"
_V6_PAIR_MARK_TABLE = "aicost_rollup_pair_summed"
# The cube's first day without day cells, read and moved forward (by the writer's fold, and by fill_copies)
READ_FOLDED_SQL = f"SELECT folded_before FROM {CUBE_FOLDED_TABLE}"
SET_FOLDED_SQL = f"UPDATE {CUBE_FOLDED_TABLE} SET folded_before = ?"
# The database's clock, UTC: the migration folds no day past today's (as the writer caps its fold).
_NOW = {"sqlite": "datetime('now')", "postgresql": "now()"}
# folded_before of a ledger with no closed day yet, per dialect (before any row's time)
FOLDED_FLOOR = {"sqlite": "1970-01-01 00:00:00.000000", "postgresql": "1970-01-01 00:00:00+00"}

# Summed columns of aicost_rollup, in order. Money measures are exact decimals.
MEASURES = (
    "calls",  # kind = call
    "unknown_cost_calls",  # calls whose price is unknown (not in cost)
    "estimated_calls",
    "error_calls",
    "cost",
    *TOKEN_FIELDS,
    "cache_hits",
    "saved_cost",
    "refusals",
    "stopped_cost",
    "runs",  # finished feature runs (attribution dims only: a run has no single model)
    "succeeded_runs",
)
MONEY_MEASURES = frozenset({"cost", "saved_cost", "stopped_cost"})
# SQLite's pair cells (version 7) also hold each amount as integer units of 10**-UNIT_DIGITS dollars
# (aicost.ledger.rollup): NULL where it is not under PAIR_UNITS_LIMIT ($1 million), or negative, or has more decimals.
# Only the dialects of PAIR_UNITS_DIALECTS have them (PostgreSQL's money is NUMERIC, summed as it is).
PAIR_UNITS = {m: f"{m}_units" for m in MEASURES if m in MONEY_MEASURES}
PAIR_UNITS_DIALECTS = ("sqlite",)
PAIR_UNITS_LIMIT = 10 ** 18  # two such add up far from 2**63: SQLite's + makes an overflowing integer a double

# Unit costs (cost per run, per success) are quotients, rounded half-even to this many decimals (a tenth of a
# nano-dollar): by Python (query.MONEY_DIV) and, writing a report's lines, by PostgreSQL (store._pg_unit_cost).
UNIT_COST_DECIMALS = 10

# aicost_ledger columns in insert order (the Python field ``user`` is the column ``user_id``: USER is reserved).
ROW_COLUMNS = (
    "span_id", "kind", "ts", "trace_id", "provider", "operation", "endpoint", "request_model", "response_model",
    "model", "service_tier", *TOKEN_FIELDS, "audio_seconds", "estimated", "cost", "cost_parts", "price_known",
    "price_source", "price_model", "saved_cost", "stopped_cost", "cache_name", "budget", "team", "feature",
    "user_id", "customer", "tags", "run_id", "outcome", "error_type", "duration_s",
    "vendor_project", "api_key_fingerprint", "price_unknown_reason",
)
RUN_COLUMNS = (
    "run_id", "ts", "feature", "outcome", "team", "user_id", "customer", "tags", "calls", "cost", "trace_id",
    "duration_s",
)

_TYPES = {
    "sqlite": {"ts": "TEXT", "money": "TEXT", "json": "TEXT", "bool": "INTEGER", "int": "INTEGER",
               "float": "REAL"},
    "postgresql": {"ts": "TIMESTAMPTZ", "money": "NUMERIC", "json": "JSONB", "bool": "BOOLEAN", "int": "BIGINT",
                   "float": "DOUBLE PRECISION"},
}


def _v1(dialect: str) -> list[str]:
    t = _TYPES[dialect]
    tokens = ",\n  ".join(f"{name} {t['int']} NOT NULL DEFAULT 0" for name in TOKEN_FIELDS)
    measures = _measure_columns(dialect)
    return [
        f"""CREATE TABLE aicost_ledger (
  span_id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  ts {t['ts']} NOT NULL,
  trace_id TEXT,
  provider TEXT,
  operation TEXT,
  endpoint TEXT,
  request_model TEXT,
  response_model TEXT,
  model TEXT,
  service_tier TEXT,
  {tokens},
  audio_seconds {t['float']},
  estimated {t['bool']} NOT NULL,
  cost {t['money']},
  cost_parts {t['json']},
  price_known {t['bool']} NOT NULL,
  price_source TEXT,
  price_model TEXT,
  saved_cost {t['money']},
  stopped_cost {t['money']},
  cache_name TEXT,
  budget TEXT,
  team TEXT,
  feature TEXT,
  user_id TEXT,
  customer TEXT,
  tags {t['json']},
  run_id TEXT,
  outcome TEXT,
  error_type TEXT,
  duration_s {t['float']}
)""",
        "CREATE INDEX aicost_ledger_ts ON aicost_ledger (ts)",
        "CREATE INDEX aicost_ledger_run ON aicost_ledger (run_id)",
        f"""CREATE TABLE aicost_runs (
  run_id TEXT PRIMARY KEY,
  ts {t['ts']} NOT NULL,
  feature TEXT NOT NULL,
  outcome TEXT NOT NULL,
  team TEXT,
  user_id TEXT,
  customer TEXT,
  tags {t['json']},
  calls {t['int']} NOT NULL,
  cost {t['money']} NOT NULL,
  trace_id TEXT,
  duration_s {t['float']}
)""",
        "CREATE INDEX aicost_runs_ts ON aicost_runs (ts)",
        f"""CREATE TABLE aicost_rollup (
  grain TEXT NOT NULL,
  bucket {t['ts']} NOT NULL,
  dim TEXT NOT NULL,
  value TEXT NOT NULL,
  {measures},
  PRIMARY KEY (grain, dim, bucket, value)
)""",
    ]


def _v2(dialect: str) -> list[str]:
    """The vendor account billed, to join rows to the vendor's usage and cost reports (aicost reconcile)."""
    return ["ALTER TABLE aicost_ledger ADD COLUMN vendor_project TEXT",
            "ALTER TABLE aicost_ledger ADD COLUMN api_key_fingerprint TEXT"]


def _v3(dialect: str) -> list[str]:
    """Self-hosted GPU pools (aicost.pools, docs/self-hosted.md): one row per closed interval (its cost, the part
    calls used, the idle part the owner pays) and one per call's final allocation (keyed by the call's span id;
    the call's own aicost_ledger row keeps the provisional cost it was priced at). Kept out of aicost_ledger and
    its rollups so no total ever adds a provisional figure to a final one."""
    t = _TYPES[dialect]
    m, i = t["money"], t["int"]
    return [
        f"""CREATE TABLE aicost_pool_interval (
  pool TEXT NOT NULL,
  start_ts {t['ts']} NOT NULL,
  end_ts {t['ts']} NOT NULL,
  owner TEXT NOT NULL,
  alloc_key TEXT NOT NULL,
  cost {m} NOT NULL,
  used {m} NOT NULL,
  idle {m} NOT NULL,
  calls {i} NOT NULL,
  input_tokens {i} NOT NULL,
  output_tokens {i} NOT NULL,
  input_weight TEXT NOT NULL,
  output_weight TEXT NOT NULL,
  weights_from TEXT NOT NULL,
  PRIMARY KEY (pool, start_ts)
)""",
        f"""CREATE TABLE aicost_pool_allocation (
  span_id TEXT PRIMARY KEY,
  pool TEXT NOT NULL,
  start_ts {t['ts']} NOT NULL,
  team TEXT,
  model TEXT,
  input_tokens {i} NOT NULL,
  output_tokens {i} NOT NULL,
  units TEXT NOT NULL,
  provisional {m},
  final {m} NOT NULL
)""",
        "CREATE INDEX aicost_pool_allocation_interval ON aicost_pool_allocation (pool, start_ts)",
    ]


def _v4(dialect: str) -> list[str]:
    """The ``user`` dimension gains hour buckets in aicost_rollup (versions 1-3 kept day buckets only), so a
    report by user over hours reads rollups, not raw rows. The migration sums the hour cells of the rows already
    stored, with the writer's own SQL; the version bump keeps an older aicost, which would not maintain them,
    from writing to this ledger."""
    from . import rollup

    d = rollup.DIALECTS[dialect]
    return [rollup.delta_ddl(d), *(sql for sql, _ in rollup.rollup_sql(d, {"rows": "true", "runs": "true"},
                                                                         grains=("hour",), dims=("user",)))]


def _measure_columns(dialect: str) -> str:
    t = _TYPES[dialect]
    return ",\n  ".join(
        f"{name} {t['money']} NOT NULL DEFAULT '0'" if name in MONEY_MEASURES else f"{name} {t['int']} NOT NULL DEFAULT 0"
        for name in MEASURES)


# SQLite: a table keyed by its primary key alone, one b-tree (a rowid table has a second one for the key): a
# rollup cell's upsert finds and rewrites it in one place.
_WITHOUT_ROWID = {"sqlite": " WITHOUT ROWID", "postgresql": ""}


def _v5(dialect: str) -> list[str]:
    """aicost_rollup_cube: the rollup sums per combination of :data:`CUBE_KEYS`, so two of them together
    (team x model, feature x provider) are answered from cells, not raw rows, and
    :data:`CUBE_FOLDED_TABLE`, which says which days have day cells. The migration sums the cells of the rows and
    runs already stored with the writer's own SQL, in the migration's transaction: hour cells for all of them, day
    cells for the days before the last row's day, or before today if a row is dated later (those are closed; the
    last day is folded by the writer when it first writes a later day, and never past today: a future-dated row
    would otherwise make every later batch write day cells). The version bump keeps an older aicost, which would
    not maintain them, from writing to this ledger."""
    from . import rollup

    t = _TYPES[dialect]
    keys = ",\n  ".join(f"{k} TEXT NOT NULL" for k in CUBE_KEYS)
    d = rollup.DIALECTS[dialect]
    last = "SELECT MAX(ts) AS ts FROM aicost_ledger UNION ALL SELECT MAX(ts) FROM aicost_runs"
    last_day, today = d.day("MAX(ts)"), d.day(_NOW[dialect])
    return [
        f"""CREATE TABLE {CUBE_TABLE} (
  grain TEXT NOT NULL,
  bucket {t['ts']} NOT NULL,
  {keys},
  {_measure_columns(dialect)},
  PRIMARY KEY (grain, bucket, {', '.join(CUBE_KEYS)})
){_WITHOUT_ROWID[dialect]}""",
        f"""CREATE TABLE {CUBE_FOLDED_TABLE} (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  folded_before {t['ts']} NOT NULL
)""",
        f"INSERT INTO {CUBE_FOLDED_TABLE} (id, folded_before) SELECT 1, COALESCE(CASE WHEN {last_day} > {today} "
        f"THEN {today} ELSE {last_day} END, '{FOLDED_FLOOR[dialect]}') FROM ({last}) AS last",
        rollup.delta_ddl(d),
        *(sql for sql, _ in rollup.rollup_sql(d, {"rows": "true", "runs": "true"}, dims=(rollup.CUBE,))),
    ]


def _v6(dialect: str) -> list[str]:
    """aicost_rollup_pair: sums per pair of attribution keys where one is user, customer or a tag, per day and per
    day's prefix of its 64-day window (:mod:`aicost.ledger.pairs`), and ``aicost_rollup_pair_summed`` (renamed
    :data:`PAIR_MARK_TABLE` by version 7), how far the rows are summed into them: nowhere yet. The migration sums
    nothing (on a large ledger that takes minutes, which one transaction holding the write lock must not): the
    background writer, or ``aicost sum-pairs``, sums the rows already stored in committed chunks, as it sums new
    ones, and reports read raw rows until then, exact either way."""
    return _pair_tables(dialect, _V6_PAIR_MARK_TABLE)


def _pair_tables(dialect: str, mark: str, units: bool = False) -> list[str]:
    """The pair cells' table (``units``: with :data:`PAIR_UNITS`) and the one-row table ``mark`` saying how far
    they are summed: nowhere yet."""
    t = _TYPES[dialect]
    extra = "".join(f"  {column} INTEGER,\n" for column in PAIR_UNITS.values()) if units else ""
    return [
        f"""CREATE TABLE {PAIR_TABLE} (
  days {t['int']} NOT NULL,
  bucket {t['ts']} NOT NULL,
  dim_a TEXT NOT NULL,
  value_a TEXT NOT NULL,
  dim_b TEXT NOT NULL,
  value_b TEXT NOT NULL,
  {_measure_columns(dialect)},
{extra}  PRIMARY KEY (days, bucket, dim_a, dim_b, value_a, value_b)
){_WITHOUT_ROWID[dialect]}""",
        f"""CREATE TABLE {mark} (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  summed_before {t['ts']} NOT NULL
)""",
        f"INSERT INTO {mark} (id, summed_before) VALUES (1, '{FOLDED_FLOOR[dialect]}')",
    ]


def _v7(dialect: str) -> list[str]:
    """SQLite: the pair cells hold each amount twice, as its exact decimal text and as integer units
    (:data:`PAIR_UNITS`), which a report sums in C: converting the text of every cell it reads was most of a
    report's time over tens of thousands of cells (a week by team and user). The cells are derived from the rows,
    so the migration drops them and creates the table anew, empty, with the units; the writer, or ``aicost
    sum-pairs``, sums the stored rows again, as after version 6 (reports read raw rows until then, exact either
    way). Both dialects: the one-row table saying how far the cells are summed is renamed
    :data:`PAIR_MARK_TABLE`, so that an older aicost still running, which would add to a cell's text and not to its
    units, fails on the name it reads first and writes nothing (PostgreSQL keeps its cells: its money is NUMERIC,
    summed as it is)."""
    if dialect not in PAIR_UNITS_DIALECTS:
        return [f"ALTER TABLE {_V6_PAIR_MARK_TABLE} RENAME TO {PAIR_MARK_TABLE}"]
    return [f"DROP TABLE {PAIR_TABLE}", f"DROP TABLE {_V6_PAIR_MARK_TABLE}",
            *_pair_tables(dialect, PAIR_MARK_TABLE, units=True)]


def _v8(dialect: str) -> list[str]:
    """Hour prefixes: the pair cells keep, for the last few days, each hour's prefix of the day (``days`` 0,
    ``bucket`` the prefix's end: the day's rows before it), so a period of hours (``24h``) reads cells, not a
    day's raw rows (:mod:`aicost.ledger.pairs`). ``aicost_rollup_pair_mark.hours_from``: the first day whose hour
    prefixes are all kept, the day after the one being summed: its hours before the migration have none. An older
    aicost still running refuses the newer schema (its summing and late rows check the version) rather than add
    rows to the cells without their hour prefixes."""
    from . import rollup
    from .pairs import _plus_days  # the pair cells' own day arithmetic

    d = rollup.DIALECTS[dialect]
    return [f"ALTER TABLE {PAIR_MARK_TABLE} ADD COLUMN hours_from {_TYPES[dialect]['ts']} NOT NULL "
            f"DEFAULT '{FOLDED_FLOOR[dialect]}'",
            f"UPDATE {PAIR_MARK_TABLE} SET hours_from = {_plus_days(d, d.day('summed_before'), 1)}"]


def _v9(dialect: str) -> list[str]:
    """Hour suffixes: a closed day keeping hour prefixes also keeps each hour's suffix (``days`` -1, ``bucket``
    the suffix's first hour: the day's rows from it on), so a period of hours starting inside it reads one set, not
    the day's cells less a prefix (:mod:`aicost.ledger.pairs`). The migration derives those the summing so far
    would have (:func:`~aicost.ledger.pairs.suffix_kept`) from the day cells and hour prefixes: at most two days'
    (on the 10 M-row benchmark ledger, 46 suffixes of two days, 3.7 million cells, in 46 s on SQLite and 122 s on
    PostgreSQL; summing their rows again would take many minutes). An older aicost still running refuses the newer
    schema rather than add rows to the cells without their suffixes."""
    from . import rollup
    from .pairs import suffix_sql, suffixes_kept_sql

    d = rollup.DIALECTS[dialect]
    return [suffix_sql(d, suffixes_kept_sql(d))]


def _v10(dialect: str) -> list[str]:
    """Why a call's price is unknown (the span's ``aicost.price.unknown_reason``, one of aicost's own sentences,
    capped at :data:`~aicost.ledger.row.UNKNOWN_REASON_MAX` characters), so finance can tell a model the catalog
    lacks from usage that failed validation or a hosted tool aicost cannot price. NULL where the price is known, and
    for the rows stored before: the migration adds the column and writes nothing (no older row says why)."""
    return ["ALTER TABLE aicost_ledger ADD COLUMN price_unknown_reason TEXT"]


# version -> DDL statements for a dialect. The versions a ledger lacks are applied in order, all in one transaction
# (store._apply): a failed step leaves the ledger at the version it had.
MIGRATIONS = {1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5, 6: _v6, 7: _v7, 8: _v8, 9: _v9, 10: _v10}


def schema_table_ddl(dialect: str) -> str:
    t = _TYPES[dialect]
    return (f"CREATE TABLE IF NOT EXISTS aicost_schema (version {t['int']} PRIMARY KEY, applied_at {t['ts']} NOT NULL,"
            " aicost_version TEXT)")


def ddl(dialect: str, version: int) -> list[str]:
    """The statements that bring a database at ``version - 1`` to ``version``."""
    return MIGRATIONS[version](dialect)
