"""``aicost report``: spend over a period, grouped, with unit costs and the top movers, as a table, CSV or JSON.

The same functions serve Python callers: ``build_report(store, start, end, group_by=("team",))`` returns a
:class:`Report`; ``render_table`` / ``render_csv`` / ``render_json`` turn it into text.

Periods (``parse_period``): ``today``, ``yesterday``, ``7d`` / ``30d`` / ``Nd`` (N whole days: today and the N - 1
before it), ``Nh`` (the last N hours up to the end of the current hour), ``this-month``, ``last-month``, ``YYYY-MM``
(a month), ``YYYY-MM-DD`` (a day), or explicit ``since`` / ``until`` (ISO dates or times, ``until`` exclusive). All
UTC. Top movers compare the period with the previous one, of the same length just before (a calendar month's:
the calendar month before); of a period still under way (``7d``, ``today``, ``this-month``: it ends
after the current hour), its whole days elapsed (today joins them tomorrow, or from 23:00 UTC) with the same span
of the previous one, or, on its first day, the hours elapsed with the same hours: never part of a period with a
whole one.

Days are whole UTC days, as ``today`` and the months are, for what a bill is made of: vendors bill and report
usage by the UTC day (a FOCUS export's charge periods are UTC hours, inside those days), and the ledger's rollups
and pair cells hold days, so a report by ``team,customer`` over ``30d`` is a few sets of cells, not the rows of two
part days.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import operator
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from itertools import chain, compress, islice, repeat
from json.encoder import encode_basestring_ascii as _json_string  # what json.dumps writes a str as
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping, Sequence, TextIO

from ..pricing.money import RATIO, canonical, format_usd, percent, subtract_usd, sum_usd
from .csvtext import csv_text
from .days import DAY, EPOCH, midnight, month_of
from .query import TIME_KEYS, SpendGroup, SpendTable, check_group_by, spend_table, totals, unit_cost_texts
from .row import TOKEN_FIELDS
from .schema import MEASURES, MONEY_MEASURES
from .store import LedgerStore, _LineFormat

__all__ = ["Period", "parse_period", "Mover", "Report", "build_report", "render_table", "render_csv", "render_json",
           "write_report", "FIELDS", "FORMAT_MEASURES", "aligned"]


class PeriodError(ValueError):
    """A period that cannot be parsed; the message lists the accepted forms."""


_ACCEPTED = ("today, yesterday, 7d / 30d / Nd, Nh, this-month, last-month, YYYY-MM, YYYY-MM-DD, "
             "or --since/--until ISO dates")


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # exclusive
    label: str = ""
    elapsed: datetime | None = None  # of a period under way: the end of what has elapsed (the current hour's end)

    @property
    def compared(self) -> "Period":
        """What top movers compare of this period: all of it; of a period under way, its whole days elapsed,
        counted from its start (a week on its fifth day: its first four), or, before a whole day has, its hours
        elapsed. A whole previous period against part of this one would show every group down."""
        if self.elapsed is None:
            return self
        days = (self.elapsed - self.start) // DAY  # elapsed: the end of the current hour
        return Period(self.start, self.start + days * DAY if days else self.elapsed, "compared")

    @property
    def previous(self) -> "Period":
        """What top movers compare :attr:`compared` with: the same span one period earlier (the previous period;
        of a week under way, the same weekdays of the week before), never before 1970-01-01. A calendar month's
        is the calendar month before (November's is October, whole; on November 20th, October 1st to 19th)."""
        length = self.end - self.start
        month = self.start.day == 1 and self.start == midnight(self.start) and self.end == month_of(self.start)[1]
        if month:
            first = max((self.start - DAY).replace(day=1), EPOCH)
        else:  # (not before 1970: a long period's start would be before year 1)
            first = self.start - length if self.start - EPOCH > length else EPOCH
        end = self.start if self.elapsed is None else min(first + (self.compared.end - self.start), self.start)
        return Period(first, end, "previous month" if month else "previous period")

    def describe(self) -> str:
        fmt = "%Y-%m-%d %H:%M"
        return f"{self.start.strftime(fmt)} to {self.end.strftime(fmt)} UTC"


def _parse_time(text: str, what: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PeriodError(f"{what}: not an ISO date or time: {text!r}") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def parse_period(period: str | None = None, *, since: str | None = None, until: str | None = None,
                 now: datetime | None = None) -> Period:
    """A period from the CLI's words. Default: ``7d``, the 7 whole days through today. ``since`` alone ends at the
    end of the current hour; ``until`` alone starts where ``7d`` does."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    today = midnight(now)
    if since or until:
        if period:
            raise PeriodError("give either a period or --since/--until, not both")
        start = _parse_time(since, "--since") if since else today - timedelta(days=6)
        end = _parse_time(until, "--until") if until else next_hour
        if end <= start:
            after = "--since" if since else "the start of 7d, the default when --since is not given"
            raise PeriodError(f"--until ({end.isoformat()}) must be after {after} ({start.isoformat()})")
        found = Period(start, end, "custom")
    else:
        try:
            found = _named(period, today, next_hour)
        except OverflowError:  # its end is past what a datetime holds: refused as any bad period is
            raise PeriodError(f"period {period!r} ends after 9999-12-31, the last day a date can hold") from None
    # a period that ends after the current hour is under way: top movers compare what has elapsed of it
    # (Period.compared); from 23:00 UTC, today counts as elapsed
    return _checked(replace(found, elapsed=next_hour) if found.start < next_hour < found.end else found)


def _checked(period: Period) -> Period:
    """``period``, once it is known to start on or after 1970-01-01, the ledger's epoch (PeriodError otherwise:
    an earlier start is a typo)."""
    if period.start < EPOCH:
        raise PeriodError(f"period {period.describe()}: starts before 1970-01-01, the ledger's epoch")
    return period


def _named(period: str | None, today: datetime, next_hour: datetime) -> Period:
    text = (period or "7d").strip().lower()
    if text == "today":
        return Period(today, today + DAY, text)
    if text == "yesterday":
        return Period(today - DAY, today, text)
    match = re.fullmatch(r"(\d{1,4})([dh])", text)
    if match:
        n = int(match.group(1))
        if n <= 0:
            raise PeriodError(f"period {period!r} must be at least 1{match.group(2)}")
        if match.group(2) == "d":
            return Period(today - (n - 1) * DAY, today + DAY, text)
        return Period(next_hour - timedelta(hours=n), next_hour, text)
    if text in ("this-month", "month"):
        return Period(*month_of(today), "this month")
    if text == "last-month":
        return Period(*month_of(today.replace(day=1) - DAY), "last month")
    if re.fullmatch(r"\d{4}-\d{2}", text):
        start = _parse_time(text + "-01", "period")
        return Period(*month_of(start), text)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        start = _parse_time(text, "period")
        return Period(start, start + timedelta(days=1), text)
    raise PeriodError(f"unknown period {period!r}; use {_ACCEPTED}")


# A group's share, as money.percent() makes it (whatever the thread's decimal context), mapped over the column in C.
_TENTH = Decimal("0.1")


@dataclass
class Mover:
    key: dict[str, str | None]
    previous: Decimal
    current: Decimal

    @property
    def change(self) -> Decimal:
        return subtract_usd(self.current, self.previous)

    @property
    def change_pct(self) -> Decimal | None:
        if not self.previous:
            return None
        return percent(self.change, self.previous)


@dataclass
class Report:
    period: Period
    group_by: tuple[str, ...]
    totals: SpendGroup
    table: SpendTable  # the groups, largest first, column by column
    movers: list[Mover] = field(default_factory=list)
    ledger: str = ""
    _lines: str | None = None  # the format ('csv', 'json') whose lines the database wrote (table._lines)

    @property
    def groups(self) -> list[SpendGroup]:
        """The groups as :class:`SpendGroup` objects (made from :attr:`table` on each access; the renderers
        print the table itself: a month by day and user is 60,000 groups). Only for a report of every measure
        (``build_report``'s default)."""
        if self._lines is not None:  # (only a report with group-by keys has lines)
            raise ValueError(f"this report's groups were written by the database as {self._lines} lines "
                             "(build_report(lines=...)); build it without lines= to have them as SpendGroup objects")
        if self.group_by and self.table.measures != MEASURES:
            raise ValueError(f"this report read only {', '.join(self.table.measures)} of the groups; "
                             "build it with every measure to have them as SpendGroup objects")
        return [SpendGroup.from_row(self.group_by, row) for row in self.table.rows()]

    @property
    def empty(self) -> bool:
        t = self.totals
        return not (t.calls or t.cache_hits or t.refusals or t.runs)


def build_report(store: LedgerStore, start: datetime | date | None = None, end: datetime | date | None = None, *,
                 period: Period | None = None, group_by: Iterable[str] = ("team",),
                 where: Mapping[str, str] | None = None, movers: int = 5,
                 measures: Sequence[str] = MEASURES, lines: str | None = None) -> Report:
    """Totals, groups (largest first) and the ``movers`` groups whose spend changed most against the previous
    period (:attr:`Period.previous`). Group-by keys are checked first (``UnknownGroupKey`` lists the valid ones).
    ``measures``: the groups' measures to read (the totals have them all); :data:`FORMAT_MEASURES` says which
    each output format shows (a table shows 13 of the 25). ``lines`` ('csv' or 'json'): the report will be
    written in that format, and a database that can write the groups' lines itself (PostgreSQL) does: the
    report then renders in that format only (the same text), and has no :attr:`Report.groups`."""
    keys = check_group_by(group_by)
    if isinstance(movers, bool) or not isinstance(movers, int) or movers < 0:  # -1 would keep all groups but one
        raise ValueError(f"build_report: movers is how many top movers to show, a whole number 0 or more, "
                         f"not {movers!r}")
    if period is None:
        if start is None or end is None:
            raise ValueError("build_report: give start and end, or period")
        from .query import _utc

        period = Period(_utc(start), _utc(end))
    _checked(period)
    wanted = {*measures, "cost"}  # cost (the order) always
    if unknown := wanted - set(MEASURES):
        raise ValueError(f"build_report: unknown measures {sorted(unknown)}; valid: {', '.join(MEASURES)}")
    measures = tuple(m for m in MEASURES if m in wanted)  # in their order
    if lines not in (None, "csv", "json"):
        raise ValueError(f"build_report: lines is 'csv', 'json' or None, not {lines!r}")
    line = _line_format(lines, keys) if lines and keys else None
    if line is not None and set(_measures_of(FIELDS)) - set(measures):
        raise ValueError(f"build_report: lines={lines!r} writes every measure; leave measures= out")
    with store.snapshot():  # the reads below agree with each other while a writer adds rows
        total = totals(store, period.start, period.end, where)  # from the 'all' rollups: a few cells
        if keys:  # a count whose total is 0 (a token class no call used) is most likely 0 in every group
            idle = [name for name, value in zip(MEASURES, total.measures()) if not value]
            table = spend_table(store, period.start, period.end, keys, where, measures=measures, maybe_zero=idle,
                                _line=line)
        else:
            table = SpendTable.from_rows((), measures, [])  # totals only: no groups
        report = Report(period=period, group_by=keys, totals=total, table=table, ledger=getattr(store, "url", ""),
                        _lines=lines if table._lines is not None else None)
        mover_keys = tuple(k for k in keys if k not in TIME_KEYS)
        if movers and mover_keys and not report.empty:
            report.movers = _top_movers(store, period, table, mover_keys, where, movers)
    return report


_ZERO = Decimal(0)


def _costs_by(table: SpendTable, keys: tuple[str, ...]) -> dict[tuple, Decimal]:
    """The table's cost per distinct value of ``keys`` (some of its keys), summed exactly: each key's costs
    collected, then summed in C (a third of the time of adding them one by one). Keyed by all of the table's
    keys, each group is its own value: nothing to sum."""
    values = zip(*(table.columns[table.keys.index(k)] for k in keys))
    if len(keys) == len(table.keys):
        return dict(zip(values, table.column("cost")))
    costs: defaultdict[tuple, list[Decimal]] = defaultdict(list)
    for key, cost in zip(values, table.column("cost")):
        costs[key].append(cost)
    return {key: sum_usd(values) for key, values in costs.items()}


def _top_movers(store: LedgerStore, period: Period, table: SpendTable, mover_keys: tuple[str, ...],
                where: Mapping[str, str] | None, limit: int) -> list[Mover]:
    """The ``limit`` groups of ``mover_keys`` (the group-by keys without the time keys) whose cost changed most
    from the previous period (:attr:`Period.previous`). This period's costs are the table's (which has them even
    where the database wrote its lines), summed over its time keys (which split every group of the other keys
    exactly), less those of the part not compared (:attr:`Period.compared`: today, of a period under way), read as
    costs alone. None when there is no previous period (a period from 1970-01-01)."""
    def costs(p: Period) -> SpendTable:
        return spend_table(store, p.start, p.end, mover_keys, where, measures=("cost",), order=False)

    if period.previous.end <= period.previous.start:
        return []
    before = _costs_by(costs(period.previous), mover_keys)
    compared = period.compared  # [start, compared.end): all of the period, or the part elapsed
    now = _costs_by(table, mover_keys)
    if compared.end < period.end:  # the table less the rest (today's rows): a day of cells, not the whole span
        rest = _costs_by(costs(Period(compared.end, period.end)), mover_keys)
        now = {key: subtract_usd(cost, rest.get(key, _ZERO)) for key, cost in now.items()}
    # Each group's change: now's costs, then each of before's subtracted, mapped in C (no bytecode per group: a
    # day by team and user is 32,000 of them). One lookup and one store per group of before: a list of both
    # periods' keys, each looked up in both dicts, took twice as long.
    changes = dict(now)
    changes.update(zip(before, map(subtract_usd, map(changes.get, before, repeat(_ZERO)), before.values())))
    # The largest changes, ties ordered by key as text: only the groups that can make the top (those changing at
    # least as much as the limit-th largest, which is not 0) become Movers and are sorted. Sizes are copy_abs(), not
    # abs(), which rounds to the thread's context: at a host's 4 digits 1234567.25 and 1234567 were one size.
    sizes = heapq.nlargest(limit, map(Decimal.copy_abs, filter(None, changes.values())))
    if not sizes:
        return []
    top = compress(changes, map(operator.ge, map(Decimal.copy_abs, changes.values()), repeat(sizes[-1])))
    movers = [Mover(dict(zip(mover_keys, k)), canonical(before.get(k, _ZERO)), canonical(now.get(k, _ZERO)))
              for k in top]  # canonical: today's subtracted may not be
    movers.sort(key=lambda m: (m.change.copy_abs().copy_negate(), str(m.key)))
    return movers[:limit]


# --------------------------------------------------------------------------------------------------- rendering
def _money(value: Decimal | None) -> str:
    return "-" if value is None else format_usd(value)


def _label(value: str | None) -> str:
    return "(none)" if value is None else value


# The fields of a group, in the order CSV writes them (JSON too, with the token classes nested in "tokens"): the
# measures, money as exact text (*_usd), and the unit costs (None without runs). The table shows some of them.
FIELDS = ("cost_usd", "calls", "unknown_cost_calls", "estimated_calls", "error_calls", *TOKEN_FIELDS, "cache_hits",
          "saved_usd", "refusals", "stopped_usd", "runs", "succeeded_runs", "cost_per_run_usd", "cost_per_success_usd")
_MONEY_FIELDS = {"cost_usd": "cost", "saved_usd": "saved_cost", "stopped_usd": "stopped_cost"}
_UNIT_FIELDS = {"cost_per_run_usd": "runs", "cost_per_success_usd": "succeeded_runs"}  # cost / this count
# The group table's columns: (header, field); "share" is the group's part of the total cost.
_TABLE_COLUMNS = (("cost USD", "cost_usd"), ("share", "share"), ("calls", "calls"), ("unpriced", "unknown_cost_calls"),
                  ("input", "input_tokens"), ("cached", "cache_read_tokens"), ("output", "output_tokens"),
                  ("reasoning", "reasoning_tokens"), ("cache hits", "cache_hits"), ("saved USD", "saved_usd"),
                  ("refused", "refusals"), ("stopped USD", "stopped_usd"), ("runs", "runs"),
                  ("USD/run", "cost_per_run_usd"), ("USD/success", "cost_per_success_usd"))


def _measures_of(fields: Iterable[str]) -> tuple[str, ...]:
    """The measures that ``fields`` are made of, in :data:`MEASURES` order."""
    needed = {"cost"}
    for name in fields:
        needed.add(_MONEY_FIELDS.get(name) or _UNIT_FIELDS.get(name) or name)
    return tuple(m for m in MEASURES if m in needed)


# What each output format reads of the groups (``build_report(measures=...)``; ``aicost report`` asks for these).
FORMAT_MEASURES = {"table": _measures_of(f for _, f in _TABLE_COLUMNS), "csv": MEASURES, "json": MEASURES}


def _line_format(fmt: str, keys: Sequence[str]) -> _LineFormat:
    """What the database writes of each group's CSV or JSON line (``build_report(lines=...)``): every field
    after the keys (the keys, whose quoting the csv and json modules decide, are written here)."""
    slots = tuple(("cost", _UNIT_FIELDS[name]) if name in _UNIT_FIELDS else _MONEY_FIELDS.get(name, name)
                  for name in FIELDS)
    if fmt == "csv":
        return _LineFormat(tuple(_csv_layout(len(keys) + len(FIELDS))[len(keys):]), slots)
    return _LineFormat(tuple(_json_layout(keys, _GROUP_DEPTH, _MONEY_FIELDS)[len(keys):]), slots, null="null",
                       quote='"')


def _csv_layout(columns: int) -> list[str]:
    """The text around a CSV line's ``columns`` values, as the csv module writes them (none needing quotes)."""
    return ["", *[","] * (columns - 1), "\r\n"]


_GROUP_DEPTH = 2  # a group's level in the report's JSON: {"groups": [{...}]}


def _json_layout(keys: Sequence[str], depth: int, quoted: Collection[str]) -> list[str]:
    """The text around a group's values as ``json.dumps(..., indent=2)`` writes the group ``depth`` levels deep,
    made by json itself with a slot for every value: the keys' values, then :data:`FIELDS` (the token classes
    nested in "tokens"); a field in ``quoted`` has its slot inside the quotes of a string."""
    shape: dict[str, Any] = {"key": {k: _SLOT for k in keys}}
    for name in FIELDS:
        slot = _TEXT_SLOT if name in quoted else _SLOT
        if name in TOKEN_FIELDS:
            shape.setdefault("tokens", {})[name] = slot
        else:
            shape[name] = slot
    return _JSON_SLOTS.split(json.dumps(shape, indent=2).replace("\n", "\n" + "  " * depth))


def _check_lines(report: Report, fmt: str) -> None:
    if report._lines not in (None, fmt):
        raise ValueError(f"this report's groups were written by the database as {report._lines}; build it with "
                         f"lines={fmt!r}, or without lines=, to render it as {fmt}")


def _written_lines(report: Report, fmt: str, keys: Sequence[Sequence[str]], pieces: Sequence[str],
                   separator: str = "") -> Iterator[str]:
    """The groups' lines of a report whose database wrote them in ``fmt`` (``build_report(lines=...)``): each
    line's key values (already quoted for ``fmt``) between ``pieces``, then the database's text."""
    _check_lines(report, fmt)
    return _lines([*pieces, "", ""], [*keys, report.table._lines], separator)


def _table_of(report: Report) -> SpendTable:
    """The groups, or without group-by keys the totals as a one-row table."""
    if report.group_by:
        return report.table
    t = report.totals
    return SpendTable((), MEASURES, [(format_usd(v) if name in MONEY_MEASURES else v,)
                                     for name, v in zip(MEASURES, t.measures())])


def _field(table: SpendTable, name: str) -> Sequence:
    """One field of every group: counts as int, money as exact text, a unit cost as text or None."""
    if name in _UNIT_FIELDS:
        return unit_cost_texts(table.column("cost"), table.column(_UNIT_FIELDS[name]))
    return table.text(_MONEY_FIELDS.get(name, name))


def aligned(header: Sequence[str], columns: Sequence[Sequence], left: int) -> list[str]:
    """``header`` and the rows of ``columns`` as lines of columns padded to their widest cell, two spaces
    apart: the first ``left`` left-aligned, the others right-aligned; ints with thousands separators, each
    distinct value formatted once where most repeat. Column by column, each cell padded by one call mapped in C
    (an int formatted and padded by the same ``format``), then each line joined: a month by day and user is
    60,000 lines, and a ``%`` format per line, which parses its widths again for every line, cost twice as much."""
    padded: list[Sequence[str]] = []
    for i, (title, column) in enumerate(zip(header, columns)):
        side = "<" if i < left else ">"
        if column and isinstance(column[0], int):  # as wide as its largest or smallest value (monotonic)
            width = max(len(title), len(f"{max(column):,}"), len(f"{min(column):,}"))
            spec = f"{side}{width},"
            distinct = set(column)
            if len(distinct) * 4 < len(column):
                column = list(map(dict(zip(distinct, map(format, distinct, repeat(spec)))).__getitem__, column))
            else:
                column = list(map(format, column, repeat(spec)))
        else:
            width = max(len(title), max(map(len, column), default=0))
            column = list(map(str.ljust if i < left else str.rjust, column, repeat(width)))
        padded.append([format(title, f"{side}{width}"), *column])
    lines = list(map("  ".join, zip(*padded)))
    return [text.rstrip() for text in lines] if left == len(padded) else lines


# The groups a table shows by default, largest first; the others are summed in one line. A table is read by a
# person: 50 lines is a screen, and every team of the 50 the benchmark ledger has. A month by team and user is
# 32,000 groups: a table of them is read by nobody, and formatting it cost 0.3 s of a one-second report. The CSV
# and the JSON carry every group.
TABLE_ROWS = 50


def _shown(table: SpendTable, rows: int) -> tuple[SpendTable, SpendTable | None]:
    """The first ``rows`` groups of ``table`` (all for 0), and the others summed into one group labelled with
    how many they are (None when there are none): every measure summed exactly, money as canonical text."""
    if not rows or len(table) <= rows:
        return table, None
    n = len(table.keys)
    head = SpendTable(table.keys, table.measures, [column[:rows] for column in table.columns])
    others = len(table) - rows
    keys: list[Sequence] = [[f"({others:,} others)"], *[[""]] * (n - 1)]
    sums = [[format_usd(sum_usd(table.column(name)[rows:])) if name in MONEY_MEASURES
             else sum(table.text(name)[rows:])] for name in table.measures]
    return head, SpendTable(table.keys, table.measures, [*keys, *sums])


def _table_lines(report: Report, rows: int = TABLE_ROWS) -> list[str]:
    """The group table (header first): the key labels, then :data:`_TABLE_COLUMNS`; the first ``rows`` groups
    (0: all) and a line summing the others."""
    _check_lines(report, "table")
    head, others = _shown(report.table, rows)
    columns = _table_columns(head, report.totals.cost)
    if others is not None:
        for column, summed in zip(columns, _table_columns(others, report.totals.cost)):
            column.extend(summed)
    return aligned([*head.keys, *(h for h, _ in _TABLE_COLUMNS)], columns, len(head.keys))


def _table_columns(table: SpendTable, total: Decimal | None) -> list[list]:
    """The table's cells, column by column: the key labels, then :data:`_TABLE_COLUMNS`."""
    columns: list[list] = [_each_distinct(table.columns[i], _label) for i in range(len(table.keys))]
    for _, name in _TABLE_COLUMNS:
        if name == "share":
            if total:  # as f"{cost * 100 / total:.1f}%" in the default context, mapped in C (format(x, ".1f") would
                # round by the thread's rounding: rounded to 0.1 first, format() has nothing left to round)
                shares = map(RATIO.divide, map(RATIO.multiply, table.column("cost"), repeat(100)), repeat(total))
                shares = map(RATIO.quantize, shares, repeat(_TENTH))
                columns.append(list(map(str.__add__, map(format, shares, repeat("f")), repeat("%"))))
            else:
                columns.append(["-"] * len(table))
        elif name in _UNIT_FIELDS:
            columns.append(["-" if v is None else v for v in _field(table, name)])
        else:
            columns.append(list(_field(table, name)))
    return columns


def render_table(report: Report, rows: int = TABLE_ROWS) -> str:
    """The report as a person reads it: totals, the first ``rows`` groups (largest first; 0: every group) with
    the others summed in one line, and the top movers."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise ValueError(f"render_table: rows is how many groups to show, a whole number 0 or more (0: all), "
                         f"not {rows!r}")
    p = report.period
    lines = [f"aicost report: {p.describe()}" + (f" ({p.label})" if p.label and p.label != "custom" else "")]
    if report.ledger:
        lines.append(f"ledger: {report.ledger}")
    if report.empty:
        lines.append("")
        lines.append(f"No spend recorded between {p.start.isoformat()} and {p.end.isoformat()}: the ledger has no "
                     "rows in this period.")
        return "\n".join(lines) + "\n"
    t = report.totals
    lines.append("")
    unknown = f"; {t.unknown_cost_calls:,} with an unknown price, not in the total" if t.unknown_cost_calls else ""
    estimated = f"; {t.estimated_calls:,} estimated" if t.estimated_calls else ""
    lines.append(f"Total spend   {_money(t.cost)} USD   ({t.calls:,} calls{unknown}{estimated})")
    tokens = [f"{name.removesuffix('_tokens').replace('_', ' ')} {t.tokens[name]:,}"
              for name in TOKEN_FIELDS if t.tokens.get(name)]
    if tokens:
        lines.append("Tokens        " + ", ".join(tokens))
    lines.append(f"Cache         {t.cache_hits:,} hits saved {_money(t.saved_cost)} USD")
    lines.append(f"Refusals      {t.refusals:,} refused calls stopped up to {_money(t.stopped_cost)} USD")
    if t.runs:
        lines.append(f"Feature runs  {t.runs:,} ({t.succeeded_runs:,} succeeded): {_money(t.cost_per_run)} USD per "
                     f"run, {_money(t.cost_per_success)} USD per successful outcome")
    if groups := len(report.table):
        lines.append("")
        shown = f" (the {rows:,} largest of {groups:,} groups, then the others summed)" if 0 < rows < groups else ""
        lines.append("by " + ", ".join(report.group_by) + shown)
        lines.extend(_table_lines(report, rows))
    if report.movers:
        p = report.period
        lines.append("")
        compared = "" if p.elapsed is None else f" ({p.compared.describe()}, the part elapsed)"
        lines.append(f"Top movers{compared} against {p.previous.describe()}")
        header = [*report.movers[0].key.keys(), "before USD", "now USD", "change USD", "change"]
        body = [[*(_label(v) for v in m.key.values()), _money(m.previous), _money(m.current),
                 ("+" if m.change > 0 else "") + _money(m.change),
                 "new" if m.change_pct is None else f"{'+' if m.change_pct > 0 else ''}{m.change_pct}%"]
                for m in report.movers]
        lines.extend(aligned(header, list(zip(*body)), len(header) - 4))
    return "\n".join(lines) + "\n"


# Stand for the values while json.dumps makes the layout: a whole value, and the inside of a string.
_SLOT, _TEXT_SLOT = "\x00aicost-json-value\x00", "\x00aicost-json-text\x00"
_JSON_SLOTS = re.compile("|".join(map(re.escape, (json.dumps(_SLOT), json.dumps(_TEXT_SLOT)[1:-1]))))


def _json_groups(report: Report, depth: int, separator: str = "") -> Iterator[str]:
    """Each group (or the totals, without group-by keys) as ``json.dumps(..., indent=2)`` writes it ``depth``
    levels deep, byte for byte: the layout is made once by json itself, with a slot for every value, and each
    group fills the slots (``%``-formatting, in C) with its values already in JSON: money as exact decimal
    strings (JSON numbers would be read as doubles), the token classes nested in "tokens". Made one by one as
    they are read (a month by day and user is 58 MB), every group but the first preceded by ``separator``."""
    table = _table_of(report)
    if not len(table):
        return iter(())
    values: list[Sequence] = [_each_distinct(table.columns[i], _json_key) for i in range(len(table.keys))]
    if report._lines is not None:
        return _written_lines(report, "json", values, _json_layout(table.keys, depth, ())[:len(table.keys)],
                              separator)
    quoted = set(_MONEY_FIELDS)  # decimal text: nothing to escape
    for name in FIELDS:
        column = _field(table, name)
        if name in _UNIT_FIELDS:
            if None in column:  # a group without runs has no unit cost: null
                column = ["null" if v is None else f'"{v}"' for v in column]
            else:
                quoted.add(name)
        values.append(column)
    return _lines(_json_layout(table.keys, depth, quoted), values, separator)


def _json_key(value: str | None) -> str:
    return "null" if value is None else _json_string(value)


def _each_distinct(column: Sequence, fn: Callable[[Any], str]) -> list[str]:
    """``fn`` of every value of ``column``, called once per distinct value (keys repeat: 30 days, 2,000 users)."""
    distinct = set(column)
    return list(map(dict(zip(distinct, map(fn, distinct))).__getitem__, column))


def render_json(report: Report) -> str:
    """Money as exact decimal strings (JSON numbers would be read as doubles). The same text as
    ``json.dumps(..., indent=2)`` of the report as a dict, written group by group from templates."""
    return "".join(_json_pieces(report))


def _json_pieces(report: Report) -> Iterator[str]:
    """:func:`render_json`'s text in pieces (a group each, made as they are written), so a month by day and user
    (58 MB) is never held in memory whole."""
    p = report.period
    movers = [{"key": m.key, "previous_usd": _money(m.previous), "current_usd": _money(m.current),
               "change_usd": _money(m.change), "change_pct": None if m.change_pct is None else str(m.change_pct)}
              for m in report.movers]
    groups = len(report.table) and report.group_by
    fields = [
        ("period", json.dumps({"start": p.start.isoformat(), "end": p.end.isoformat(), "label": p.label}, indent=2)),
        ("compared_period", json.dumps({"start": p.compared.start.isoformat(), "end": p.compared.end.isoformat()},
                                       indent=2)),
        ("previous_period", json.dumps({"start": p.previous.start.isoformat(), "end": p.previous.end.isoformat()},
                                       indent=2)),
        ("ledger", json.dumps(report.ledger)),
        ("group_by", json.dumps(list(report.group_by), indent=2)),
        ("empty", json.dumps(report.empty)),
        ("totals", next(_json_groups(Report(p, (), report.totals, report.table), 0))),
        ("groups", None),
        ("movers", json.dumps(movers, indent=2)),
    ]
    head, tail = ["{\n"], []
    for name, value in fields:
        if value is None:  # the groups, already indented, one piece each, made as they are written
            head.append('  "groups": [\n    ' if groups else '  "groups": [],\n')
            if groups:
                tail.append("\n  ],\n")
        else:
            (tail if tail else head).append(
                f'  "{name}": ' + value.replace("\n", "\n  ") + ("," if name != "movers" else "") + "\n")
    tail.append("}\n")
    return chain(head, _json_groups(report, _GROUP_DEPTH, ",\n    ") if groups else (), tail)


def _csv_line(fields: Sequence[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(fields)
    return out.getvalue()


def _csv_field(value: str | None) -> str:
    """A key's value as its CSV cell: text kept from running as a formula (:func:`csv_text`: '=x' -> "'=x"), then
    quoted as csv writes it ('a,b' -> '"a,b"'), without the line end."""
    return "" if value is None else _csv_line([csv_text(value), ""])[:-3]


def render_csv(report: Report) -> str:
    """One line per group (the totals when there is no grouping), every token class a column."""
    return "".join(_csv_pieces(report))


def _csv_pieces(report: Report) -> list[str]:
    """:func:`render_csv`'s text, a line each: the header, then one line per group (the totals when there is no
    grouping) of :data:`FIELDS`. The csv module writes the header and quotes each distinct key value (once, after
    :func:`csv_text`: the keys are the only text cells); the numbers, which never need quoting and are never
    escaped (a negative cost stays a number), go into one %-format per line."""
    header = _csv_line([*report.group_by, *FIELDS])
    table = _table_of(report)
    if not len(table):
        return [header]
    columns = [_each_distinct(table.columns[i], _csv_field) for i in range(len(table.keys))]
    if report._lines is not None:
        return [header, *_written_lines(report, "csv", columns, _csv_layout(len(columns))[:-1])]
    for name in FIELDS:
        column = _field(table, name)
        columns.append(["" if v is None else v for v in column] if name in _UNIT_FIELDS else column)
    return [header, *_lines(_csv_layout(len(columns)), columns)]


def _lines(pieces: Sequence[str], columns: Sequence[Sequence], separator: str = "") -> Iterator[str]:
    """For each row: ``pieces[0]``, its value of ``columns[0]``, ``pieces[1]``... ``pieces[-1]``, made by one
    ``%``-format per line (in C), every line but the first preceded by ``separator``. A column of int zeros
    alone (a token class no call used) is written into the format once, so each line is made of fewer values."""
    fmt, filled = [pieces[0]], []
    for column, piece in zip(columns, pieces[1:]):
        if isinstance(column[0], int) and not any(column):
            fmt.append("0")
        else:
            fmt.append("\0")
            filled.append(column)
        fmt.append(piece)
    line = "".join(fmt).replace("%", "%%").replace("\0", "%s")
    rows = zip(*filled) if filled else repeat((), len(columns[0]))
    return chain((line % next(rows),), map((separator + line).__mod__, rows))


def write_report(report: Report, fmt: str, out: TextIO, rows: int = TABLE_ROWS) -> None:
    """``render_table`` / ``render_csv`` / ``render_json`` (``fmt``: table, csv, json) of ``report``, written to
    ``out`` in pieces: the same text, without first copying a month by day and user into one string. A piece is
    a line or a group; they are joined 256 at a time (a text file's ``write`` of each of 60,000 pieces cost about
    as much again as making them). ``rows``: the groups a table shows (:func:`render_table`)."""
    if fmt == "table":
        out.write(render_table(report, rows))
        return
    pieces = iter(_csv_pieces(report) if fmt == "csv" else _json_pieces(report))
    while chunk := list(islice(pieces, 256)):  # to the last piece, empty ones included
        out.write("".join(chunk))
