"""Read what forecasts, anomalies and the dashboard need from the ledger, as plain series.

Everything goes through the ledger's read API (:func:`aicost.ledger.spend` and its column-wise form
``spend_table``, which read the rollups kept at write time, and :meth:`LedgerStore.rows` for the few calls behind
an anomaly), so the analytic modules work on ``{group: [(bucket, Decimal), ...]}`` and never on SQL.

The amounts are the priced spend. A call whose price is unknown has no cost in the ledger (never $0): a series
carries those calls apart (:attr:`Series.unknown`), so whatever is computed from a group that has some is known to
be a lower bound and can be shown as one.
"""

from __future__ import annotations

import heapq
from itertools import repeat
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping

from ..ledger import CALL, LedgerRow, LedgerStore, check_group_by
from ..ledger.query import spend_table

# Dimensions a forecast or an anomaly scan may be split by: those the rollups keep per day and hour.
DIMENSIONS = ("team", "feature", "customer", "user", "model", "provider")
ALL = "(all)"  # the group name of an ungrouped series
UNATTRIBUTED = "(none)"  # the group of calls without a value for the dimension


def check_dimension(dimension: str) -> str:
    """``dimension`` if forecasts / anomalies can be split by it; ValueError listing the valid ones otherwise."""
    if dimension in (*DIMENSIONS, "global") or dimension.startswith("tag:"):
        if dimension.startswith("tag:"):
            check_group_by((dimension,))
        return dimension
    raise ValueError(f"unknown dimension {dimension!r}; use one of {', '.join(DIMENSIONS)}, tag:<name>, global")


def label(value: str | None) -> str:
    return UNATTRIBUTED if value is None else value


def utc(value: datetime | date) -> datetime:
    """A timezone-aware UTC datetime: a date is its midnight, a naive datetime is taken as UTC."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)


class Series(dict):
    """``{group: [(bucket, exact cost), ...]}``, the priced spend per group, and :attr:`unknown`: per group, the
    buckets that had calls with an unknown price and how many (``{group: {bucket: calls}}``, only buckets with
    some). Their cost is in no amount and is not zero, so a group listed there is not complete. A plain dict
    otherwise: code that only wants the amounts reads it as before."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unknown: dict[str, dict[Any, int]] = {}

    def unknown_calls(self, group: str, first: Any = None, last: Any = None) -> int:
        """Calls of ``group`` with an unknown price in the buckets from ``first`` to ``last`` (inclusive; None:
        open)."""
        return sum(n for bucket, n in self.unknown.get(group, {}).items()
                   if (first is None or bucket >= first) and (last is None or bucket <= last))


def daily_series(store: LedgerStore, start: datetime | date, end: datetime | date, dimension: str = "global",
                 where: Mapping[str, str] | None = None) -> Series:
    """``{group: [(day, exact cost), ...]}`` over ``[start, end)``; ``dimension="global"`` gives one series."""
    return _series(store, start, end, dimension, where, "day", date.fromisoformat)


def hourly_series(store: LedgerStore, start: datetime | date, end: datetime | date, dimension: str = "global",
                  where: Mapping[str, str] | None = None) -> Series:
    """``{group: [(hour start, exact cost), ...]}`` over ``[start, end)``."""
    return _series(store, start, end, dimension, where, "hour", _hour_start)


def _hour_start(key: str) -> datetime:
    return datetime.strptime(key, "%Y-%m-%dT%H:00Z").replace(tzinfo=timezone.utc)


def _series(store: LedgerStore, start: datetime | date, end: datetime | date, dimension: str,
            where: Mapping[str, str] | None, bucket: str, parse: Callable[[str], Any]) -> Series:
    """Spend per ``bucket`` ("day" or "hour", the rollups' time keys) and group, in time order."""
    keys = (bucket,) if dimension == "global" else (bucket, check_dimension(dimension))
    # Costs and unknown-price calls alone, unordered, column by column: a month of 500 customers by day is 15,000
    # groups.
    table = spend_table(store, utc(start), utc(end), keys, where, measures=("cost", "unknown_cost_calls"),
                        order=False)
    groups = repeat(ALL) if dimension == "global" else map(label, table.columns[1])
    out = Series()
    for group, when, cost, unknown in zip(groups, table.columns[0], table.column("cost"),
                                          table.column("unknown_cost_calls")):
        bucket_start = parse(when)
        out.setdefault(group, []).append((bucket_start, cost))
        if unknown:
            out.unknown.setdefault(group, {})[bucket_start] = unknown
    for points in out.values():
        points.sort()
    return out


def costliest_calls(store: LedgerStore, start: datetime | date, end: datetime | date, dimension: str,
                    group: str, limit: int = 5) -> list[LedgerRow]:
    """The ``limit`` most expensive calls of ``group`` in ``[start, end)`` (the calls behind an anomaly).

    Streams the bucket's rows and keeps a heap of ``limit``: memory does not grow with the number of calls.
    Calls without a value for the dimension (``(none)``) cannot be filtered in SQL and are picked out here.
    """
    if limit <= 0:
        return []
    where: dict[str, str] | None
    if dimension == "global" or group == UNATTRIBUTED:
        where = None
    else:
        where = {dimension: group}
    rows: Iterable[LedgerRow] = store.rows(utc(start), utc(end), where=where, kinds=(CALL,))
    if group == UNATTRIBUTED and dimension != "global":
        rows = (r for r in rows if r.group_value(dimension) is None)
    counter = 0
    heap: list[tuple[Decimal, int, Any]] = []
    for row in rows:
        if row.cost is None:
            continue
        counter += 1
        item = (row.cost, -counter, row)
        if len(heap) < limit:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    return [row for _, _, row in sorted(heap, key=lambda t: (t[0], t[1]), reverse=True)]

