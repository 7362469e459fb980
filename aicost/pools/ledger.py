"""Closed pool intervals into the spend ledger (schema version 3 tables ``aicost_pool_interval`` and
``aicost_pool_allocation``), and back out for ``aicost report --pool``.

Writes happen when an interval closes (the closing thread, never a call), idempotently: an interval or an
allocation already stored is left as it is, so a retried close never double counts. A ledger that is down loses
the interval's ledger copy (logged once); the meter still holds it in memory.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Iterator

from .meter import Allocation, ClosedInterval

_INTERVAL_COLUMNS = ("pool", "start_ts", "end_ts", "owner", "alloc_key", "cost", "used", "idle", "calls",
                     "input_tokens", "output_tokens", "input_weight", "output_weight", "weights_from")
_ALLOCATION_COLUMNS = ("span_id", "pool", "start_ts", "team", "model", "input_tokens", "output_tokens", "units",
                       "provisional", "final")


def _insert(table: str, columns: tuple[str, ...], key: str) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT ({key}) DO NOTHING")


_INSERT_INTERVAL = _insert("aicost_pool_interval", _INTERVAL_COLUMNS, "pool, start_ts")
_INSERT_ALLOCATION = _insert("aicost_pool_allocation", _ALLOCATION_COLUMNS, "span_id")


def write_interval(store: Any, interval: ClosedInterval) -> None:
    """Allocations first, the interval row last: an interval row present means its allocations are too."""
    ts, money = store._ts, store._money
    start = ts(interval.start)
    allocations = [(a.span_id, interval.pool, start, a.team, a.model, a.input_tokens, a.output_tokens, str(a.units),
                    money(a.provisional), money(a.final)) for a in interval.allocations if a.span_id]
    row = (interval.pool, start, ts(interval.end), interval.owner, interval.key, money(interval.cost),
           money(interval.used), money(interval.idle), len(interval.allocations), interval.input_tokens,
           interval.output_tokens, str(interval.input_weight), str(interval.output_weight), interval.weights_from)
    with store._lock:
        cur = store._cursor()
        if allocations:
            cur.executemany(store._sql(_INSERT_ALLOCATION), allocations)
        cur.execute(store._sql(_INSERT_INTERVAL), row)  # both dialects' connections autocommit


def ledger_sink(url: str) -> Any:
    """A ``PoolMeter`` sink writing each closed interval to the ledger at ``url`` (opened on first use)."""
    from ..ledger import open_store

    state: dict[str, Any] = {}

    def sink(interval: ClosedInterval) -> None:
        store = state.get("store")
        if store is None:
            store = state["store"] = open_store(url)
        write_interval(store, interval)

    return sink


def read_intervals(store: Any, pool: str, start: datetime, end: datetime) -> Iterator[ClosedInterval]:
    """The pool's intervals that start in ``[start, end)``, with their allocations, oldest first."""
    from ..ledger.store import _parse_ts

    ts = store._ts
    with store._lock:
        cur = store._cursor()
        cur.execute(store._sql(f"SELECT {', '.join(_INTERVAL_COLUMNS)} FROM aicost_pool_interval "
                               "WHERE pool = ? AND start_ts >= ? AND start_ts < ? ORDER BY start_ts"),
                    (pool, ts(start), ts(end)))
        intervals = cur.fetchall()
        cur.execute(store._sql(f"SELECT {', '.join(_ALLOCATION_COLUMNS)} FROM aicost_pool_allocation "
                               "WHERE pool = ? AND start_ts >= ? AND start_ts < ?"), (pool, ts(start), ts(end)))
        allocations = cur.fetchall()
    by_start: dict[datetime, list[Allocation]] = {}
    for span_id, _, at, team, model, tin, tout, units, provisional, final in allocations:
        by_start.setdefault(_parse_ts(at), []).append(Allocation(
            span_id, team, model, int(tin), int(tout), Decimal(units),
            None if provisional is None else Decimal(provisional), Decimal(final)))
    for (name, at, until, owner, key, cost, used, idle, _calls, _tin, _tout, w_in, w_out, weights_from) in intervals:
        start_at = _parse_ts(at)
        used, cost = Decimal(used), Decimal(cost)
        yield ClosedInterval(name, owner, key, start_at, _parse_ts(until), cost, used, Decimal(idle),
                             used / cost if cost else Decimal(0), Decimal(w_in), Decimal(w_out), weights_from,
                             tuple(by_start.get(start_at, ())))


def pools_in(store: Any) -> list[str]:
    with store._lock:
        cur = store._cursor()
        cur.execute("SELECT DISTINCT pool FROM aicost_pool_interval ORDER BY pool")
        return [name for (name,) in cur.fetchall()]
