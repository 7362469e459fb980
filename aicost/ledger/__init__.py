"""The spend ledger: every priced call as one row in SQLite or PostgreSQL, for reports, exports and BI tools.

Turn it on with ``aicost.instrument(ledger="sqlite:///aicost-ledger.db")`` or ``AICOST_LEDGER=...`` (off by
default). Calls are never slowed by it: the core's hooks hand each finished call to a bounded queue, and a
background writer stores rows in batches (see :mod:`aicost.ledger.writer`).

Reading (stable API, documented in docs/ledger.md)::

    from aicost.ledger import open_store, spend, spend_table
    store = open_store("sqlite:///aicost-ledger.db", create=False)
    for group in spend(store, start, end, group_by=("team",)):
        print(group.key["team"], group.cost, group.calls, group.cost_per_success)
    table = spend_table(store, start, end, ("day", "user"), measures=("cost", "calls"))  # column by column
    for row in store.rows(start, end, where={"team": "search"}):
        ...  # LedgerRow

Modules: :mod:`.row` (LedgerRow, FeatureRun), :mod:`.schema` (versioned DDL), :mod:`.store` (open a ledger by
URL, write, read), :mod:`.rollup` (the sums kept at write time), :mod:`.query` (spend over a period, grouped),
:mod:`.capture` (what the hooks record -> rows), :mod:`.writer` (queue, background writer, spill),
:mod:`.exporter` (the OpenTelemetry span exporter), :mod:`.report` (``aicost report``), :mod:`.focus`
(``aicost export --format focus``), :mod:`.synthetic` (realistic synthetic ledgers).
"""

from __future__ import annotations

from .query import GROUP_KEYS, SpendGroup, SpendTable, UnknownGroupKey, check_group_by, spend, spend_table, totals
from .row import CACHE_HIT, CALL, KINDS, REFUSAL, TOKEN_FIELDS, FeatureRun, LedgerRow
from .schema import SCHEMA_VERSION
from .store import LedgerSchemaError, LedgerStore, LedgerUnavailable, open_store

__all__ = [
    "CACHE_HIT",
    "CALL",
    "GROUP_KEYS",
    "KINDS",
    "REFUSAL",
    "SCHEMA_VERSION",
    "TOKEN_FIELDS",
    "FeatureRun",
    "LedgerRow",
    "LedgerSchemaError",
    "LedgerStore",
    "LedgerUnavailable",
    "SpendGroup",
    "SpendTable",
    "UnknownGroupKey",
    "check_group_by",
    "open_store",
    "spend",
    "spend_table",
    "totals",
]
