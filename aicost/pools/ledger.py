"""Closed pool intervals into the spend ledger (schema version 3 tables ``aicost_pool_interval`` and
``aicost_pool_allocation``), and back out for ``aicost report --pool``.

A closed interval becomes :class:`PoolRows` records (its allocations in slices, then the interval's own row)
queued on a ledger writer (:mod:`aicost.ledger.writer`): written by its thread, never by a call, and with its
bounded spill and replay when the database is down, so nothing is lost. Writes are idempotent (``ON CONFLICT
DO NOTHING``): an interval or an allocation already stored is left as it is, so a replay never double counts.
The interval's row comes last: an interval row present means its allocations are too.

A call with no span (no OpenTelemetry SDK configured) has no span id to key its allocation by: it gets
``POOL@START#N`` (its place in the interval), so its final cost is still in the ledger, once.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Iterator

from ..ledger.writer import Record
from ..pricing.money import RATIO, format_usd
from .meter import Allocation, ClosedInterval

_INTERVAL_COLUMNS = ("pool", "start_ts", "end_ts", "owner", "alloc_key", "cost", "used", "idle", "calls",
                     "input_tokens", "output_tokens", "input_weight", "output_weight", "weights_from")
_ALLOCATION_COLUMNS = ("span_id", "pool", "start_ts", "team", "model", "input_tokens", "output_tokens", "units",
                       "provisional", "final")
_UTILISATION = "; utilisation: "  # weights_from holds where the weights and the utilisation came from


def _insert(table: str, columns: tuple[str, ...], key: str) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT ({key}) DO NOTHING")


_INSERT_INTERVAL = _insert("aicost_pool_interval", _INTERVAL_COLUMNS, "pool, start_ts")
_INSERT_ALLOCATION = _insert("aicost_pool_allocation", _ALLOCATION_COLUMNS, "span_id")


class PoolRows(Record):
    """Some of a closed interval's ledger rows, as text and integers (what spills to JSON and back unchanged):
    a slice of its allocations, and / or (in the last record) the interval's own row."""

    __slots__ = ("pool", "start", "allocations", "interval")

    def __init__(self, pool: str, start: str, allocations: list[list[Any]], interval: list[Any] | None) -> None:
        self.pool, self.start, self.allocations, self.interval = pool, start, allocations, interval

    def store_into(self, store: Any) -> None:
        at = store._ts(datetime.fromisoformat(self.start))
        pool = self.pool
        if store.dialect == "sqlite":  # money is stored as the exact decimal text it already is
            allocations = [(a[0], pool, at, *a[1:]) for a in self.allocations]
            interval = None if self.interval is None else (pool, at, store._ts(
                datetime.fromisoformat(self.interval[0])), *self.interval[1:])
        else:
            number = store._money
            allocations = [(a[0], pool, at, *a[1:6], number(_dec(a[6])), number(_dec(a[7])))
                           for a in self.allocations]
            interval = None if self.interval is None else (
                pool, at, store._ts(datetime.fromisoformat(self.interval[0])), *self.interval[1:3],
                *(number(_dec(x)) for x in self.interval[3:6]), *self.interval[6:])
        store.execute_many([(_INSERT_ALLOCATION, allocations), (_INSERT_INTERVAL, [interval] if interval else [])])

    def to_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "start": self.start, "allocations": self.allocations, "interval": self.interval}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PoolRows":
        return cls(data["pool"], data["start"], data["allocations"], data["interval"])


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def records(interval: ClosedInterval, slice_size: int = 5000) -> list[PoolRows]:
    """The interval as ledger records: its allocations in slices of ``slice_size``, the interval row last. Every
    decimal figure is written in money's one canonical form (:func:`~aicost.pricing.money.format_usd`), the units
    and weights too (``150``, ``0.00000025``; never ``150.0`` or ``2.5E-7``, which ``str()`` wrote): the ledger
    holds one text per value, as it does for amounts."""
    start = interval.start.isoformat()
    text = format_usd  # canonical decimal text: money, and the figures that are not money
    tag = f"{interval.pool}@{int(interval.start.timestamp())}#"
    rows = [[a.span_id or f"{tag}{i}", a.team, a.model, a.input_tokens, a.output_tokens, text(a.units),
             None if a.provisional is None else text(a.provisional), text(a.final)]
            for i, a in enumerate(interval.allocations)]
    weights_from = interval.weights_from + (_UTILISATION + interval.utilisation_from if interval.utilisation_from
                                            else "")
    row = [interval.end.isoformat(), interval.owner, interval.key, text(interval.cost), text(interval.used),
           text(interval.idle), len(interval.allocations), interval.input_tokens, interval.output_tokens,
           text(interval.input_weight), text(interval.output_weight), weights_from]
    out = [PoolRows(interval.pool, start, rows[i:i + slice_size], None) for i in range(0, len(rows), slice_size)]
    out.append(PoolRows(interval.pool, start, [], row))
    return out


def write_interval(store: Any, interval: ClosedInterval) -> None:
    """The interval written now, on this thread (tools and benchmarks; the meter queues on a ledger writer)."""
    for record in records(interval):
        record.store_into(store)


def ledger_sink(url: str) -> Any:
    """A ``PoolMeter`` sink queueing each closed interval on the ledger writer for ``url``: the one
    ``instrument(ledger=...)`` runs when it writes there, else one of the pools' own (opened now, so a bad URL
    is a ConfigurationError at configure time; with its own spill file). ``sink.flush()`` writes what is
    queued now."""
    from ..ledger import writer as ledger_writer

    state: dict[str, Any] = {}

    def writer() -> Any:
        active = ledger_writer.active()
        if active is not None and active.url == url and not active._closed:
            return active
        own = state.get("writer")
        if own is None:
            dir_, stem, _ = ledger_writer._spill_location(url, None)
            own = state["writer"] = ledger_writer.LedgerWriter(url, setting="configure_pools(ledger=...)",
                                                               spill_path=dir_ / f"{stem}-pools.jsonl")
        return own

    writer()

    def sink(interval: ClosedInterval) -> None:
        chosen = writer()
        chosen.add(records(interval, chosen.batch_size))

    def flush() -> None:
        writer().flush()

    def close() -> None:
        own = state.pop("writer", None)
        if own is not None:
            own.close()

    sink.flush, sink.close = flush, close  # type: ignore[attr-defined]
    return sink


def read_intervals(store: Any, pool: str, start: datetime, end: datetime) -> Iterator[ClosedInterval]:
    """The pool's intervals that start in ``[start, end)``, with their allocations, oldest first."""
    from ..ledger.store import _parse_ts

    ts = store._ts
    with store._lock:  # (each read through the store's own: a database lost is LedgerUnavailable, as for any read)
        intervals = store._fetch(store._sql(f"SELECT {', '.join(_INTERVAL_COLUMNS)} FROM aicost_pool_interval "
                                            "WHERE pool = ? AND start_ts >= ? AND start_ts < ? ORDER BY start_ts"),
                                 [pool, ts(start), ts(end)])
        allocations = store._fetch(store._sql(f"SELECT {', '.join(_ALLOCATION_COLUMNS)} FROM aicost_pool_allocation "
                                              "WHERE pool = ? AND start_ts >= ? AND start_ts < ?"),
                                   [pool, ts(start), ts(end)])
    by_start: dict[datetime, list[Allocation]] = {}
    for span_id, _, at, team, model, tin, tout, units, provisional, final in allocations:
        by_start.setdefault(_parse_ts(at), []).append(Allocation(
            span_id, team, model, int(tin), int(tout), Decimal(units),
            None if provisional is None else Decimal(provisional), Decimal(final)))
    for (name, at, until, owner, key, cost, used, idle, _calls, _tin, _tout, w_in, w_out, sources) in intervals:
        start_at = _parse_ts(at)
        used, cost = Decimal(used), Decimal(cost)
        weights_from, _, utilisation_from = sources.partition(_UTILISATION)
        yield ClosedInterval(name, owner, key, start_at, _parse_ts(until), cost, used, Decimal(idle),
                             RATIO.divide(used, cost) if cost else Decimal(0), Decimal(w_in), Decimal(w_out),
                             weights_from, tuple(by_start.get(start_at, ())), utilisation_from=utilisation_from)


def pools_in(store: Any) -> list[str]:
    return [name for (name,) in store._fetch("SELECT DISTINCT pool FROM aicost_pool_interval ORDER BY pool", [])]
