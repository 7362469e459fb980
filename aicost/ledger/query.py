"""Spend over a period, grouped: the one query reports, exports, forecasts and dashboards build on.

``spend(store, start, end, group_by=("team",))`` returns one :class:`SpendGroup` per group value with exact
totals, tokens by class, calls, cache savings, refusals and feature runs; ``spend_table`` the same groups column
by column (:class:`SpendTable`), for reports of tens of thousands of groups.

Why it is fast over millions of rows: a period is cut into whole days (read from the day rollups), whole hours at
its edges (hour rollups), and the minutes left at either end, which are summed from the raw rows (through the
time index) with the very SQL expressions the writer used to build the rollups. Every part is summed in the
database (``GROUP BY``), so Python sees one result row per group, not one per rollup cell or ledger row, with
money as exact decimal text; where each group is one rollup cell, the cells are read as they are.

Group-by keys (:data:`GROUP_KEYS`): ``team``, ``feature``, ``customer``, ``user``, ``model``, ``provider``,
``tag`` (one group per ``name=value``: a row with two tags counts in both), ``tag:<name>`` (the value of that
tag), and the time keys ``day`` / ``hour`` (UTC). Any number of time keys combine with one other key (plus a
``where`` filter on that very key) from the rollups, or with any of team / feature / model / provider together
(and filters on them) from the cube (``aicost_rollup_cube``); two keys one of which is user, customer or a tag
(team x customer), with or without ``day``, from the pair cells (``aicost_rollup_pair``) and the rows not summed
into them yet; other combinations (three keys, two tags, a pair by ``hour``) sum the raw rows of the period in SQL,
which is exact but reads every row of the period (:func:`plan` chooses).

Rows without a value for a key (a call made outside any team scope) form the group ``None``.
"""

from __future__ import annotations

import decimal
import operator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from decimal import Decimal
from itertools import compress, repeat
from typing import Collection, Iterable, Mapping, Sequence

from ..pricing.money import private_context, sci_text
from . import pairs
from .days import DAY, HOUR, ceil, hour_start, midnight
from .rollup import DIALECTS, INDEX, new_measures
from .row import TOKEN_FIELDS
from .schema import CUBE_KEYS, MEASURES, MONEY_MEASURES, UNIT_COST_DECIMALS
from .store import FILTER_KEYS, LedgerStore, _LineFormat, _rollup_dim, key_sql

__all__ = ["GROUP_KEYS", "TIME_KEYS", "SpendGroup", "SpendTable", "spend", "spend_table", "totals", "check_group_by",
           "UnknownGroupKey", "unit_cost_texts", "plan"]

TIME_KEYS = ("day", "hour")
GROUP_KEYS = ("team", "feature", "customer", "user", "model", "provider", "tag", "tag:<name>", *TIME_KEYS)
_DIMS = ("team", "feature", "customer", "user", "model", "provider")


class UnknownGroupKey(ValueError):
    """A group-by key that is not one of :data:`GROUP_KEYS`; the message lists the valid ones."""


@dataclass(slots=True)
class SpendGroup:
    """The sums of one group. ``cost`` is exact and excludes calls whose price is unknown (counted apart)."""

    key: dict[str, str | None]  # group-by key -> this group's value ({"team": "search", "day": "2026-12-01"})
    cost: Decimal = Decimal(0)
    calls: int = 0
    unknown_cost_calls: int = 0
    estimated_calls: int = 0
    error_calls: int = 0
    tokens: dict[str, int] = field(default_factory=dict)  # TOKEN_FIELDS -> count
    cache_hits: int = 0
    saved_cost: Decimal = Decimal(0)
    refusals: int = 0
    stopped_cost: Decimal = Decimal(0)
    runs: int = 0
    succeeded_runs: int = 0

    @property
    def cost_per_run(self) -> Decimal | None:
        """Spend per finished feature run (None without runs)."""
        return None if not self.runs else MONEY_DIV(self.cost, self.runs)

    @property
    def cost_per_success(self) -> Decimal | None:
        """Spend of every attempt, failed ones included, per successful outcome (None without a success)."""
        return None if not self.succeeded_runs else MONEY_DIV(self.cost, self.succeeded_runs)

    @classmethod
    def from_row(cls, keys: Sequence[str], row: Sequence) -> "SpendGroup":
        """The group of one :meth:`SpendTable.rows` row (all measures)."""
        n = len(keys)
        return cls.from_measures(dict(zip(keys, row[:n])), row[n:])

    def measures(self) -> tuple:
        """The sums in :data:`~aicost.ledger.schema.MEASURES` order (a :meth:`SpendTable.rows` row without its key)."""
        return tuple(self.tokens.get(name, 0) if name in _TOKENS else getattr(self, name) for name in MEASURES)

    @classmethod
    def from_measures(cls, key: dict[str, str | None], m: Sequence) -> "SpendGroup":
        return cls(
            key=key,
            cost=m[INDEX["cost"]], calls=m[INDEX["calls"]], unknown_cost_calls=m[INDEX["unknown_cost_calls"]],
            estimated_calls=m[INDEX["estimated_calls"]], error_calls=m[INDEX["error_calls"]],
            tokens={name: m[INDEX[name]] for name in TOKEN_FIELDS},
            cache_hits=m[INDEX["cache_hits"]], saved_cost=m[INDEX["saved_cost"]], refusals=m[INDEX["refusals"]],
            stopped_cost=m[INDEX["stopped_cost"]], runs=m[INDEX["runs"]], succeeded_runs=m[INDEX["succeeded_runs"]],
        )


_TOKENS = frozenset(TOKEN_FIELDS)

_UNIT = Decimal(f"1E-{UNIT_COST_DECIMALS}")  # a unit cost's quantum (from text: no context, the thread's neither)


# Of aicost's own, not the thread's nor DefaultContext's (a host's that trapped Inexact failed every unit cost that
# does not divide exactly).
_DIVISION = private_context(60, traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])


def MONEY_DIV(amount: Decimal, count: int) -> Decimal:
    return _DIVISION.quantize(_DIVISION.divide(amount, count), _UNIT)


def unit_cost_texts(amounts: Sequence[Decimal], counts: Sequence[int]) -> list[str | None]:
    """``format_usd(MONEY_DIV(a, n))`` for whole columns (None where the count is 0): the division context's
    own methods mapped in C (a month by day and user is 120,000 quotients), and the text made without a call
    per value: every quotient has exactly 10 decimals, so its plain notation without trailing zeros (and a
    trailing '.') is the canonical text. ``str`` writes that plain notation but under a millionth (then an
    exponent: those few are written again with ``format``), and a quotient rounded to zero from below as
    '-0' (mended to '0')."""
    nonzero = list(map(bool, counts))
    quotients = list(map(_DIVISION.quantize, map(_DIVISION.divide, compress(amounts, nonzero),
                                                 compress(counts, nonzero)), repeat(_UNIT)))
    plain = list(map(sci_text, quotients))  # str(), with a capital E whatever the thread's context
    if "E" in "".join(plain):
        plain = [format(q, "f") if "E" in t else t for q, t in zip(quotients, plain)]
    texts = list(map(str.rstrip, map(str.rstrip, plain, repeat("0")), repeat(".")))
    if "-0" in texts:
        texts = ["0" if t == "-0" else t for t in texts]
    if all(nonzero):
        return texts  # type: ignore[return-value]
    found = iter(texts)
    return [next(found) if k else None for k in nonzero]


def check_group_by(group_by: Iterable[str]) -> tuple[str, ...]:
    """Validate group-by keys; raise :class:`UnknownGroupKey` listing the valid ones."""
    if isinstance(group_by, str):
        group_by = [k for k in group_by.split(",") if k.strip()]
    keys = tuple(k.strip() for k in group_by)
    for key in keys:
        if key in GROUP_KEYS and key != "tag:<name>":
            continue
        if key.startswith("tag:") and len(key) > 4:
            continue
        raise UnknownGroupKey(f"unknown group-by key {key!r}; valid keys: {', '.join(GROUP_KEYS)}")
    if len(set(keys)) != len(keys):
        raise UnknownGroupKey(f"group-by key repeated in {', '.join(keys)}")
    return keys


def _utc(value: datetime | date) -> datetime:
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def spend(store: LedgerStore, start: datetime | date, end: datetime | date, group_by: Iterable[str] = (),
          where: Mapping[str, str] | None = None) -> list[SpendGroup]:
    """Sums over ``start <= time < end`` (UTC; naive datetimes are UTC), one group per distinct key value,
    largest cost first. ``where`` filters ({"team": "search"}). An empty period gives ``[]``."""
    keys = check_group_by(group_by)
    return [SpendGroup.from_row(keys, row) for row in spend_table(store, start, end, keys, where).rows()]


@dataclass
class SpendTable:
    """The groups of :func:`spend`, column by column: a report of tens of thousands of groups (a month by day and
    user is 60,000) is read, summed and printed without an object, or even a tuple, per group. Money is kept as
    the database wrote it, canonical decimal text (what reports print); :meth:`column` gives it as ``Decimal``,
    made when first asked for."""

    keys: tuple[str, ...]
    measures: tuple[str, ...]
    columns: list[Sequence]  # one per key (its values; None for no value), then one per measure (money: text)
    _lines: Sequence[str] | None = None  # each group's measures written by the database (spend_table's _line=)
    _decimals: dict[str, list[Decimal]] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def text(self, name: str) -> Sequence:
        """A measure's column as read: counts as int, money as canonical decimal text."""
        return self.columns[len(self.keys) + self.measures.index(name)]

    def column(self, name: str) -> Sequence:
        """A measure's column: counts as int, money as exact ``Decimal``."""
        if name not in MONEY_MEASURES:
            return self.text(name)
        if name not in self._decimals:
            self._decimals[name] = list(map(Decimal, self.text(name)))
        return self._decimals[name]

    def rows(self) -> list[tuple]:
        """One tuple per group: its key values, then its measures (money as ``Decimal``)."""
        n = len(self.keys)
        return list(zip(*self.columns[:n], *map(self.column, self.measures)))

    @classmethod
    def from_rows(cls, keys: tuple[str, ...], measures: tuple[str, ...], rows: Sequence[Sequence],
                  order: bool = False, zero: Collection[str] = ()) -> "SpendTable":
        """The table of ``rows`` as the store returns them (money as decimal text): the keys, then ``measures``
        but those in ``zero``, which are 0 in every group. ``order``: they came ordered by the database
        (:meth:`LedgerStore._grouped`); made exact here."""
        read = [m for m in measures if m not in zero]
        found = iter(list(zip(*rows)) if rows else [() for _ in range(len(keys) + len(read))])
        zeros = (0,) * len(rows)
        columns: list[Sequence] = [*(next(found) for _ in keys),
                                   *(zeros if m in zero else next(found) for m in measures)]
        table = cls(keys, measures, columns)
        if order and "cost" in measures:
            _exact_order(table)
        return table


def spend_table(store: LedgerStore, start: datetime | date, end: datetime | date, group_by: Iterable[str] = (),
                where: Mapping[str, str] | None = None, *, measures: Sequence[str] = MEASURES,
                order: bool = True, maybe_zero: Iterable[str] = (), _line: _LineFormat | None = None) -> SpendTable:
    """:func:`spend` as a :class:`SpendTable` of ``measures``. ``order``: largest cost first, then most calls,
    then by key values (as text, ascending), as :func:`spend`. ``maybe_zero``: counts likely to be 0 in every
    group (their period total is 0: token classes no call used): checked first, in one pass over what would be
    summed, and those 0 everywhere are not read (their columns are zeros). ``_line`` (private, for
    :func:`aicost.ledger.report.build_report`): where the store ``_fills_lines``, the table holds the keys and
    each group's ``measures`` written by the database as ``_line`` says (``SpendTable._lines``), and no measure
    column but the cost; elsewhere (or where a line cannot be written exactly) the measures, as without it."""
    keys = check_group_by(group_by)
    measures = tuple(measures)
    if _line is not None and (missing := _line.measures() - set(measures)):
        raise ValueError(f"spend_table: the line writes {', '.join(sorted(missing))}, not among measures")
    where = dict(where or {})
    for key in where:
        if key not in FILTER_KEYS and not (key.startswith("tag:") and len(key) > 4):
            raise UnknownGroupKey(f"unknown filter key {key!r}; valid keys: {', '.join(FILTER_KEYS)}, tag:<name>")
    start, end = _utc(start), _utc(end)
    rows: list[tuple] = []
    zero: set[str] = set()
    if end > start:
        maybe = set(maybe_zero) - MONEY_MEASURES
        candidates = [m for m in measures if m in maybe]
        if candidates:
            found = _sums(store, start, end, keys, where, candidates, order=False, nonzero=True)
            zero = {m for m, nonzero in zip(candidates, found[0] if found else repeat(0)) if not nonzero}
            if zero.issuperset(measures):  # every measure 0: one is read all the same, which finds the groups
                zero.discard(measures[0])
        read = [m for m in measures if m not in zero]
        if _line is not None and store._fills_lines and keys:
            rows = _sums(store, start, end, keys, where, read, order, line=replace(_line, zero=frozenset(zero)))
            costs = ("cost",) if "cost" in read else ()  # each line is followed by its group's cost (top movers)
            columns = list(zip(*rows)) if rows else [() for _ in range(len(keys) + 1 + len(costs))]
            cost = [columns.pop()] if costs else []
            lines = columns.pop()
            if None not in lines:
                return SpendTable(keys, costs, [*columns, *cost], lines)
        rows = _sums(store, start, end, keys, where, read, order)
    return SpendTable.from_rows(keys, measures, rows, order, zero=zero)


def _sums(store: LedgerStore, start: datetime, end: datetime, keys: tuple[str, ...], where: dict[str, str],
          measures: Sequence[str], order: bool, nonzero: bool = False, line: _LineFormat | None = None) -> list[tuple]:
    """The groups' sums as the store returns them: from the rollups or the cube where they answer, else from the
    raw rows (:func:`plan` chooses). ``nonzero`` and ``line``: as :meth:`LedgerStore._sums`."""
    how = plan(keys, where)
    if how == "rollup":
        return _from_rollups(store, start, end, keys, [k for k in keys if k not in TIME_KEYS], where, measures,
                             order, nonzero, line)
    if how == "cube":
        return _from_cube(store, start, end, keys, where, measures, order, nonzero, line)
    if how == "pairs":
        with store.snapshot():  # summed_before and the sums, one state: a summing commits between them otherwise
            return _from_pairs(store, start, end, keys, where, measures, order, nonzero, line)
    return store.sum_rows(start, end, keys, where=where, measures=measures, ordered=order, nonzero=nonzero,
                          _line=line)


def plan(keys: Sequence[str], where: Mapping[str, str] | None = None) -> str:
    """Which table answers a grouping (and filter): 'rollup' (aicost_rollup: one dimension per cell, so one key,
    filtered if at all on that same key), 'cube' (aicost_rollup_cube: keys and filters all among
    :data:`~aicost.ledger.schema.CUBE_KEYS`, team x model), 'pairs' (aicost_rollup_pair: two keys, grouped or
    filtered, one of them user, customer or a tag, with or without day: team x customer), or 'rows' (the raw rows:
    any other combination, three keys, two tags, or a pair by hour). Time keys combine with the first two."""
    used = {*(k for k in keys if k not in TIME_KEYS), *(where or {})}
    if len(used) <= 1 and all(k in _DIMS or k.startswith("tag") for k in used):
        return "rollup"
    if used <= set(CUBE_KEYS):
        return "cube"
    if len(used) == 2 and "hour" not in keys and _pair(used) is not None:
        return "pairs"
    return "rows"


def _pair(used: Collection[str]) -> tuple[str, str] | None:
    a, b = (_rollup_dim(k) for k in used)
    return pairs.pair_of(a, b)


def _exact_order(table: SpendTable) -> None:
    """The database ordered the groups by cost, then calls, then key values; SQLite compared costs as doubles,
    which can misorder amounts that differ only past 15 digits (equal amounts are equal doubles, so ties are in
    order). Checked exactly here, in one pass, and in that rare case sorted again, stably by (cost, calls):
    groups equal in both keep the database's key order."""
    cost = table.column("cost")
    if all(map(operator.ge, cost, cost[1:])):
        return
    ranks = list(zip(cost, table.column("calls"))) if "calls" in table.measures else list(cost)
    order = sorted(range(len(ranks)), key=ranks.__getitem__, reverse=True)
    table.columns = [tuple(column[i] for i in order) for column in table.columns]
    table._decimals.clear()


def totals(store: LedgerStore, start: datetime | date, end: datetime | date,
           where: Mapping[str, str] | None = None) -> SpendGroup:
    """The period's totals as one group (zeros for an empty period)."""
    found = spend(store, start, end, (), where)
    return found[0] if found else SpendGroup.from_measures({}, new_measures())


def _from_rollups(store: LedgerStore, start: datetime, end: datetime, keys: tuple[str, ...], dims: list[str],
                  where: dict[str, str], measures: Sequence[str], order: bool, nonzero: bool,
                  line: _LineFormat | None = None) -> list[tuple]:
    key = dims[0] if dims else (next(iter(where)) if where else None)
    dim = "all" if key is None else _rollup_dim(key)
    value = value_prefix = None
    if key is not None and key in where:
        value = where[key] if not key.startswith("tag:") else f"{key[4:]}={where[key]}"
    elif key is not None and key.startswith("tag:"):
        value_prefix = f"{key[4:]}="

    # Each group-by key as an SQL expression over the rollup value v and the bucket b (a raw row's time), so the
    # database returns one row per group: '' (no value) as NULL, one tag's values without their 'name='.
    group = [key_sql(DIALECTS[store.dialect], k, "b", "v")[0] for k in keys]

    spans, edges = _split(start, end, keys)
    return store.sum_period(dim, spans, edges, value=value, value_prefix=value_prefix, where=where, group=group,
                            measures=measures, cells=_one_cell_each(spans, edges, keys), ordered=order,
                            nonzero=nonzero, _line=line)


def _from_cube(store: LedgerStore, start: datetime, end: datetime, keys: tuple[str, ...],
               where: dict[str, str], measures: Sequence[str], order: bool, nonzero: bool,
               line: _LineFormat | None = None) -> list[tuple]:
    """Keys (and a ``where``) all among :data:`~aicost.ledger.schema.CUBE_KEYS` (and time keys): summed over
    the cube's cells (and the raw rows of the minutes at the edges): whole days from day cells where the day is
    closed (folded), from hour cells otherwise (today). Each group is one cell when it is keyed by every cube key
    and the span's time."""
    spans, edges = _split(start, end, keys)
    # Day cells exist for the days before folded_before (closed days); later days are read from hour cells.
    folded = store.folded_before()
    spans = [part for grain, low, high in spans
             for part in ([(grain, low, high)] if grain == "hour" or high <= folded else
                          [("hour", low, high)] if folded <= low else
                          [("day", low, folded), ("hour", folded, high)])]
    cells = set(CUBE_KEYS) <= set(keys) and _one_cell_each(spans, edges, keys)
    return store.sum_cube(spans, edges, keys, where=where, measures=measures, cells=cells, ordered=order,
                          nonzero=nonzero, _line=line)


def _from_pairs(store: LedgerStore, start: datetime, end: datetime, keys: tuple[str, ...],
                where: dict[str, str], measures: Sequence[str], order: bool, nonzero: bool,
                line: _LineFormat | None = None) -> list[tuple]:
    """Two keys, one of them user, customer or a tag (and maybe day): summed over the pair cells of the days the
    period reads from cells (a few window prefixes added and subtracted, :func:`pairs.spans`, or each day's cells
    when grouped by day) and the raw rows of the rest (:func:`_pair_days`)."""
    pair = _pair({*(k for k in keys if k not in TIME_KEYS), *where})
    assert pair is not None
    runs, hours, edges = _pair_days(start, end, *store.pair_marks())
    sets = list(hours)
    for first, last in runs:
        if "day" in keys:
            sets += [(1, first + i * DAY, 1) for i in range((last - first) // DAY)]
        else:
            sets += pairs.spans(first, last)
    grouped = {_rollup_dim(k) for k in keys if k not in TIME_KEYS}
    cells = (not edges and grouped == set(pair) and all(sign > 0 for *_, sign in sets)
             and ("day" in keys or len(sets) == 1))
    return store.sum_pairs(pair, sets, edges, keys, where=where, measures=measures, cells=cells, ordered=order,
                           nonzero=nonzero, _line=line)


def _pair_days(start: datetime, end: datetime, summed: datetime, hours_from: datetime | None = None
               ) -> tuple[list[tuple[datetime, datetime]], list[tuple[int, datetime, int]],
                          list[tuple[datetime, datetime, int]]]:
    """How a pair report reads ``[start, end)`` when the pair cells hold every row before ``summed``, and each
    hour's prefix and suffix of the days from ``hours_from`` (None: no day's; a suffix where
    :func:`pairs.suffix_kept`): the runs of days read from their day cells ((first, last) midnights), the hour
    prefixes and suffixes to add (sign 1) or subtract (-1) (cell sets, (days, bucket, sign): ``days``
    :data:`pairs.PREFIX`, the day's rows before ``bucket``, or :data:`pairs.SUFFIX`, from ``bucket`` on), and the
    raw rows to add or subtract ((start, end, sign)).

    A day's cells hold ``[midnight, held)``: the whole day before the day being summed, that day up to
    ``summed``, nothing after; an hour prefix of a day from ``hours_from`` holds ``[midnight, its end)`` where
    that is before ``held``. Each day the period touches is read the cheaper way, counted in hours of raw rows:
    as raw rows of the part the period covers, or as the set that holds the rows up to its end less the set that
    holds those up to its start, each the one ending nearest (and plus or less the raw rows between). So a period
    whose edges fall inside days reads at most half of each edge day as raw rows (a period from 09:00 reads the
    first day's cells less its first nine hours; one ending at 15:00, the last day's cells less its last nine),
    and none where the day keeps hour prefixes and the edges are on the hour (the day's cells less its prefix to
    09:00; its prefix to 15:00). Where a closed day's suffix from the hour nearest the start costs no more raw rows
    than that, it is read alone (a period from 09:00 to past the day's end: the day's suffix from 09:00, one set
    where the cells less the prefix are two)."""
    runs: list[tuple[datetime, datetime]] = []
    hours: list[tuple[int, datetime, int]] = []
    edges: list[tuple[datetime, datetime, int]] = []
    summed_day = midnight(summed)

    def edge(low: datetime, high: datetime, sign: int) -> None:
        if low >= high:
            return
        if edges and edges[-1][1] == low and edges[-1][2] == sign:  # one range of raw rows, not one per day
            low = edges.pop()[0]
        edges.append((low, high, sign))

    def cells(first: datetime, last: datetime) -> None:
        if runs and runs[-1][1] == first:
            first = runs.pop()[0]
        runs.append((first, last))

    def nearest(day: datetime, held: datetime, t: datetime) -> datetime:
        """The end of the set holding ``[day, end)`` nearest to ``t``: ``day`` (nothing), an hour prefix's, or
        ``held`` (the day's cells); the latest of equals."""
        ends = [day, held]
        if hours_from is not None and day >= hours_from:
            ends += [day + k * HOUR for k in range(1, 24) if day + k * HOUR < held]
        return min(ends, key=lambda e: (abs(t - e), -e.timestamp()))

    def read(day: datetime, held: datetime, end_: datetime, t: datetime, sign: int) -> None:
        """Add (or subtract) the rows of ``[day, t)`` as the set holding ``[day, end_)``, and the raw rows
        between ``end_`` and ``t``."""
        if end_ == held:
            assert sign > 0  # the day's cells: only ever added (a start nearer them than its end shares them)
            cells(day, day + DAY)
        elif end_ > day:
            hours.append((pairs.PREFIX, end_, sign))
        edge(end_, t, sign)
        edge(t, end_, -sign)

    day = midnight(start)
    while day < end:
        if day > summed_day:  # nothing of it or after it summed: the rest is raw rows
            edge(max(start, day), end, 1)
            break
        whole = min(midnight(end), summed_day)
        if start <= day < whole:  # whole days the period covers before the day being summed: cells, in one step
            cells(day, whole)
            day = whole
            continue
        low, high, next_day = max(start, day), min(end, day + DAY), day + DAY
        held = next_day if day < summed_day else summed
        after, before = nearest(day, held, high), nearest(day, held, low)
        two = abs(high - after) + abs(low - before) if after != before else high - low
        suffix = min((day + k * HOUR for k in range(1, 24)), key=lambda s: (abs(low - s), s))
        alone = abs(low - suffix) + held - high  # the raw rows the suffix needs (its day is closed: held >= high)
        if hours_from is not None and pairs.suffix_kept(suffix, summed, hours_from) and alone <= two and (
                alone < high - low):
            hours.append((pairs.SUFFIX, suffix, 1))  # [suffix, held), less or plus raw rows at either end
            edge(suffix, low, -1)
            edge(low, suffix, 1)
            edge(high, held, -1)
        elif two < high - low:
            read(day, held, before, low, -1)
            read(day, held, after, high, 1)
        else:
            edge(low, high, 1)
        day = next_day
    return runs, hours, edges


def _split(start: datetime, end: datetime, keys: tuple[str, ...]
           ) -> tuple[list[tuple[str, datetime, datetime]], list[tuple[datetime, datetime]]]:
    """``[start, end)`` as rollup spans ((grain, start, end): whole days from day cells, whole hours at the edges,
    or every hour when grouped by hour, from hour cells) and the minutes left at either end (from raw rows)."""
    spans: list[tuple[str, datetime, datetime]] = []
    edges: list[tuple[datetime, datetime]] = []
    first_hour, last_hour = ceil(start, HOUR), hour_start(end)
    if first_hour >= last_hour:
        edges.append((start, end))
    else:
        if start < first_hour:
            edges.append((start, first_hour))
        if last_hour < end:
            edges.append((last_hour, end))
        first_day, last_day = ceil(first_hour, DAY), midnight(last_hour)
        if "hour" in keys or first_day >= last_day:
            spans.append(("hour", first_hour, last_hour))
        else:
            spans.append(("day", first_day, last_day))
            if first_hour < first_day:
                spans.append(("hour", first_hour, first_day))
            if last_day < last_hour:
                spans.append(("hour", last_day, last_hour))
    return spans, edges


def _one_cell_each(spans: list[tuple[str, datetime, datetime]], edges: list[tuple[datetime, datetime]],
                   keys: tuple[str, ...]) -> bool:
    """A rollup cell is one (bucket, value): read from one span, grouped by its grain's time key and the value (or
    a single value), each group is one cell, and there is nothing to sum (a month by day and user: 60,000)."""
    return not edges and len(spans) == 1 and ("hour" in keys or ("day" in keys and spans[0][0] == "day"))
