"""``aicost report``: spend over a period, grouped, with unit costs and the top movers, as a table, CSV or JSON.

The same functions serve Python callers: ``build_report(store, start, end, group_by=("team",))`` returns a
:class:`Report`; ``render_table`` / ``render_csv`` / ``render_json`` turn it into text.

Periods (``parse_period``): ``today``, ``yesterday``, ``7d`` / ``30d`` / ``Nd`` (the last N days up to the end of the
current hour), ``Nh``, ``this-month``, ``last-month``, ``YYYY-MM`` (a month), ``YYYY-MM-DD`` (a day), or explicit
``since`` / ``until`` (ISO dates or times, ``until`` exclusive). All UTC. The previous period, for top movers, is
the same length just before.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from itertools import chain, repeat
from json.encoder import encode_basestring_ascii as _json_string  # what json.dumps writes a str as
from typing import Any, Iterable, Iterator, Mapping, Sequence, TextIO

from ..pricing.money import format_usd, sum_usd
from .query import TIME_KEYS, SpendGroup, SpendTable, check_group_by, spend_table, totals, unit_costs
from .row import TOKEN_FIELDS, decimal_text
from .schema import MEASURES, MONEY_MEASURES
from .store import LedgerStore

__all__ = ["Period", "parse_period", "Mover", "Report", "build_report", "render_table", "render_csv", "render_json",
           "write_report"]


class PeriodError(ValueError):
    """A period that cannot be parsed; the message lists the accepted forms."""


_ACCEPTED = ("today, yesterday, 7d / 30d / Nd, Nh, this-month, last-month, YYYY-MM, YYYY-MM-DD, "
             "or --since/--until ISO dates")


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # exclusive
    label: str = ""

    @property
    def previous(self) -> "Period":
        length = self.end - self.start
        return Period(self.start - length, self.start, "previous period")

    def describe(self) -> str:
        fmt = "%Y-%m-%d %H:%M"
        return f"{self.start.strftime(fmt)} to {self.end.strftime(fmt)} UTC"


def _day(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _parse_time(text: str, what: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PeriodError(f"{what}: not an ISO date or time: {text!r}") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def parse_period(period: str | None = None, *, since: str | None = None, until: str | None = None,
                 now: datetime | None = None) -> Period:
    """A period from the CLI's words. Default: the last 7 days."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if since or until:
        if period:
            raise PeriodError("give either a period or --since/--until, not both")
        start = _parse_time(since, "--since") if since else _day(now) - timedelta(days=7)
        end = _parse_time(until, "--until") if until else next_hour
        if end <= start:
            raise PeriodError(f"--until ({end.isoformat()}) must be after --since ({start.isoformat()})")
        return Period(start, end, "custom")
    text = (period or "7d").strip().lower()
    today = _day(now)
    if text == "today":
        return Period(today, today + timedelta(days=1), text)
    if text == "yesterday":
        return Period(today - timedelta(days=1), today, text)
    match = re.fullmatch(r"(\d{1,4})([dh])", text)
    if match:
        n = int(match.group(1))
        if n <= 0:
            raise PeriodError(f"period {period!r} must be at least 1{match.group(2)}")
        length = timedelta(days=n) if match.group(2) == "d" else timedelta(hours=n)
        return Period(next_hour - length, next_hour, text)
    if text in ("this-month", "month"):
        start = today.replace(day=1)
        return Period(start, (start + timedelta(days=32)).replace(day=1), "this month")
    if text == "last-month":
        end = today.replace(day=1)
        return Period((end - timedelta(days=1)).replace(day=1), end, "last month")
    if re.fullmatch(r"\d{4}-\d{2}", text):
        start = _parse_time(text + "-01", "period")
        return Period(start, (start + timedelta(days=32)).replace(day=1), text)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        start = _parse_time(text, "period")
        return Period(start, start + timedelta(days=1), text)
    raise PeriodError(f"unknown period {period!r}; use {_ACCEPTED}")


@dataclass
class Mover:
    key: dict[str, str | None]
    previous: Decimal
    current: Decimal

    @property
    def change(self) -> Decimal:
        return self.current - self.previous

    @property
    def change_pct(self) -> Decimal | None:
        if not self.previous:
            return None
        return (self.change * 100 / self.previous).quantize(Decimal("0.1"))


@dataclass
class Report:
    period: Period
    group_by: tuple[str, ...]
    totals: SpendGroup
    table: SpendTable  # the groups, largest first, column by column
    movers: list[Mover] = field(default_factory=list)
    ledger: str = ""

    @property
    def groups(self) -> list[SpendGroup]:
        """The groups as :class:`SpendGroup` objects (made from :attr:`table` on each access; the renderers
        print the table itself: a month by day and user is 60,000 groups)."""
        return [SpendGroup.from_row(self.group_by, row) for row in self.table.rows()]

    @property
    def empty(self) -> bool:
        t = self.totals
        return not (t.calls or t.cache_hits or t.refusals or t.runs)


def build_report(store: LedgerStore, start: datetime | date | None = None, end: datetime | date | None = None, *,
                 period: Period | None = None, group_by: Iterable[str] = ("team",),
                 where: Mapping[str, str] | None = None, movers: int = 5) -> Report:
    """Totals, groups (largest first) and the ``movers`` groups whose spend changed most against the previous
    period of the same length. Group-by keys are checked first (``UnknownGroupKey`` lists the valid ones)."""
    keys = check_group_by(group_by)
    if period is None:
        if start is None or end is None:
            raise ValueError("build_report: give start and end, or period")
        from .query import _utc

        period = Period(_utc(start), _utc(end))
    if keys:
        table = spend_table(store, period.start, period.end, keys, where)
    else:
        table = SpendTable.from_rows((), MEASURES, [])  # totals only: no groups
    if keys and all(k in _PARTITIONS for k in keys):
        # Every row and run is in exactly one group: the totals are the groups' sums, no second read of the period.
        total = SpendGroup.from_measures({}, _column_sums(table))
    else:
        total = totals(store, period.start, period.end, where)
    report = Report(period=period, group_by=keys, totals=total, table=table, ledger=getattr(store, "url", ""))
    mover_keys = tuple(k for k in keys if k not in TIME_KEYS)
    if movers and mover_keys and not report.empty:
        report.movers = _top_movers(store, period, table, mover_keys, where, movers)
    return report


# Group-by keys that put every row and every feature run in exactly one group (a missing value is a group too),
# so the totals are the groups' sum. Not model / provider (a run has neither) nor tags (a row has 0..n).
_PARTITIONS = frozenset({"team", "feature", "user", "customer", *TIME_KEYS})
_ZERO = Decimal(0)


def _column_sums(table: SpendTable) -> list:
    """Each measure summed over the groups, exactly (the default decimal context would round past 28 digits)."""
    return [sum_usd(table.column(name)) if name in MONEY_MEASURES else sum(table.column(name)) for name in MEASURES]


def _top_movers(store: LedgerStore, period: Period, table: SpendTable, mover_keys: tuple[str, ...],
                where: Mapping[str, str] | None, limit: int) -> list[Mover]:
    """The ``limit`` groups of ``mover_keys`` (the group-by keys without the time keys) whose cost changed most
    from the previous period. This period's costs are the table's, summed over its time keys (which split every
    group of the other keys exactly); the previous period's are read as costs alone."""
    key_columns = [table.columns[table.keys.index(k)] for k in mover_keys]
    now: dict[tuple, Decimal] = {}
    if len(mover_keys) == len(table.keys):
        now = dict(zip(zip(*key_columns), table.column("cost")))
    else:  # each key's costs collected, then summed exactly in C: a third of adding one by one
        costs: defaultdict[Any, list[Decimal]] = defaultdict(list)
        single = len(key_columns) == 1  # the values themselves as keys: no tuple per group
        for key, cost in zip(key_columns[0] if single else zip(*key_columns), table.column("cost")):
            costs[key].append(cost)
        now = {(key,) if single else key: sum_usd(values) for key, values in costs.items()}
    previous = spend_table(store, period.previous.start, period.previous.end, mover_keys, where,
                           measures=("cost",), order=False)
    before = dict(zip(zip(*previous.columns[:-1]), previous.column("cost")))
    changes = [Mover(dict(zip(mover_keys, k)), before.get(k, _ZERO), now.get(k, _ZERO))
               for k in set(before) | set(now)]
    changes = [m for m in changes if m.change]
    changes.sort(key=lambda m: (-abs(m.change), str(m.key)))
    return changes[:limit]


# --------------------------------------------------------------------------------------------------- rendering
def _money(value: Decimal | None) -> str:
    return "-" if value is None else format_usd(value)


def _label(value: str | None) -> str:
    return "(none)" if value is None else value


def _columns(report: Report) -> dict[str, Sequence]:
    """The groups (or, without group-by keys, the totals) column by column, as the renderers print them: the key
    values (``key0``...; None for no value), every measure as summed, and the money as exact text
    (``cost_usd``...; None where there is no unit cost)."""
    table = report.table
    if not report.group_by:
        t = report.totals
        table = SpendTable((), MEASURES, [(v,) for v in t.measures()],
                           {name: (format_usd(getattr(t, name)),) for name in MONEY_MEASURES})
    if not len(table):
        return {}
    out: dict[str, Sequence] = {f"key{i}": table.columns[i] for i in range(len(table.keys))}
    out.update(zip(table.measures, table.columns[len(table.keys):]))
    for name, text in (("cost", "cost_usd"), ("saved_cost", "saved_usd"), ("stopped_cost", "stopped_usd")):
        out[text] = table.texts[name]
    for count, text in (("runs", "cost_per_run_usd"), ("succeeded_runs", "cost_per_success_usd")):
        out[text] = list(map(decimal_text, unit_costs(out["cost"], out[count])))
    return out


_TABLE_TOKENS = (("input", "input_tokens"), ("cached", "cache_read_tokens"), ("output", "output_tokens"),
                 ("reasoning", "reasoning_tokens"))
_NUMERIC_HEADERS = ["cost USD", "share", "calls", "unpriced", *(h for h, _ in _TABLE_TOKENS), "cache hits",
                    "saved USD", "refused", "stopped USD", "runs", "USD/run", "USD/success"]


def _table_lines(report: Report) -> list[str]:
    """The group table, aligned as :func:`_align` aligns it (header first): the key labels, then the numbers.
    Column by column, in C (``map``): each cell padded to its column's width, counts with their thousands
    separators in the same format (a count column's width is that of its largest or smallest value: the
    formatted length is monotonic), each distinct count formatted once where most repeat. Then a line is a
    join."""
    c = _columns(report)
    total = report.totals.cost
    keys = len(report.group_by)
    labels = [["(none)" if v is None else v for v in c[f"key{i}"]] for i in range(keys)]
    share = [f"{(v * 100 / total):.1f}%" for v in c["cost"]] if total else ["-"] * len(c["cost"])
    units = [["-" if v is None else v for v in c[name]] for name in ("cost_per_run_usd", "cost_per_success_usd")]
    columns: list[Sequence] = [
        *labels, c["cost_usd"], share, c["calls"], c["unknown_cost_calls"], *(c[name] for _, name in _TABLE_TOKENS),
        c["cache_hits"], c["saved_usd"], c["refusals"], c["stopped_usd"], c["runs"], *units,
    ]
    header = [*report.group_by, *_NUMERIC_HEADERS]
    padded = []
    for i, (title, column) in enumerate(zip(header, columns)):
        if isinstance(column[0], int):
            width = max(len(title), len(f"{max(column):,}"), len(f"{min(column):,}"))
            cells = map(format, column, repeat(f">{width},"))
            distinct = set(column)
            if len(distinct) * 4 < len(column):  # each distinct count formatted once
                cells = map(dict(zip(distinct, map(format, distinct, repeat(f">{width},")))).__getitem__, column)
            padded.append([title.rjust(width), *cells])
        else:
            width = max(len(title), max(map(len, column)))
            pad = str.ljust if i < keys else str.rjust
            padded.append([pad(title, width), *map(pad, column, repeat(width))])
    return [line.rstrip() for line in map("  ".join, zip(*padded))]


def _align(rows: Sequence[Sequence[str]], left: int) -> list[str]:
    """Columns padded to their widest cell: the first ``left`` columns left-aligned, numbers right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i]) if i < left else c.rjust(widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
    return lines


def render_table(report: Report) -> str:
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
    if len(report.table):
        lines.append("")
        lines.append("by " + ", ".join(report.group_by))
        lines.extend(_table_lines(report))
    if report.movers:
        prev = report.period.previous
        lines.append("")
        lines.append(f"Top movers against {prev.describe()}")
        header = [*report.movers[0].key.keys(), "before USD", "now USD", "change USD", "change"]
        body = [[*(_label(v) for v in m.key.values()), _money(m.previous), _money(m.current),
                 ("+" if m.change > 0 else "") + _money(m.change),
                 "new" if m.change_pct is None else f"{'+' if m.change_pct > 0 else ''}{m.change_pct}%"]
                for m in report.movers]
        lines.extend(_align([header, *body], len(header) - 4))
    return "\n".join(lines) + "\n"


# A group in JSON, field by field: (name, column of _columns, how a value is written: "int", "money" (always a
# decimal text), "unit" (a decimal text or null)). "tokens" is a nested object of every token class.
_JSON_FIELDS = (
    ("cost_usd", "money"), ("calls", "int"), ("unknown_cost_calls", "int"), ("estimated_calls", "int"),
    ("error_calls", "int"), ("tokens", None), ("cache_hits", "int"), ("saved_usd", "money"), ("refusals", "int"),
    ("stopped_usd", "money"), ("runs", "int"), ("succeeded_runs", "int"), ("cost_per_run_usd", "unit"),
    ("cost_per_success_usd", "unit"),
)
# Stand for the values while json.dumps makes the layout: a whole value, and the inside of a string.
_SLOT, _TEXT_SLOT = "\x00aicost-json-value\x00", "\x00aicost-json-text\x00"


def _json_groups(report: Report, depth: int, separator: str = "") -> Iterator[str]:
    """Each group (or the totals, without group-by keys) as ``json.dumps(..., indent=2)`` writes it ``depth``
    levels deep, byte for byte: the layout is made once by json itself, with a slot for every value, and each
    group fills the slots (``%``-formatting, in C) with its values already in JSON: money as exact decimal
    strings (JSON numbers would be read as doubles). Made one by one as they are read (a month by day and user
    is 58 MB), every group but the first preceded by ``separator``."""
    c = _columns(report)
    if not c:
        return iter(())
    keys = report.group_by
    shape: dict[str, Any] = {"key": {k: _SLOT for k in keys}}
    for name, kind in _JSON_FIELDS:
        shape[name] = {t: _SLOT for t in TOKEN_FIELDS} if name == "tokens" else _TEXT_SLOT if kind == "money" else _SLOT
    layout = json.dumps(shape, indent=2).replace("\n", "\n" + "  " * depth).replace("%", "%%")
    template = layout.replace(json.dumps(_SLOT), "%s").replace(json.dumps(_TEXT_SLOT)[1:-1], "%s")

    encoded: dict[str | None, str] = {None: "null"}  # a key value as a JSON string, once per distinct value

    def key_column(i: int) -> list[str]:
        known = encoded.get
        return [known(v) or encoded.setdefault(v, _json_string(v)) for v in c[f"key{i}"]]

    values: list[Sequence] = [key_column(i) for i in range(len(keys))]
    for name, kind in _JSON_FIELDS:
        if name == "tokens":
            values.extend(c[t] for t in TOKEN_FIELDS)
        elif kind == "unit":
            values.append(["null" if v is None else f'"{v}"' for v in c[name]])  # decimal text: nothing to escape
        else:
            values.append(c[name])
    rows = zip(*values)
    return chain((template % next(rows),), map((separator + template).__mod__, rows))


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
    return chain(head, _json_groups(report, 2, ",\n    ") if groups else (), tail)


_CSV_COLUMNS = ("cost_usd", "calls", "unknown_cost_calls", "estimated_calls", "error_calls", *TOKEN_FIELDS,
                "cache_hits", "saved_usd", "refusals", "stopped_usd", "runs", "succeeded_runs", "cost_per_run_usd",
                "cost_per_success_usd")


_UNIT_COLUMNS = ("cost_per_run_usd", "cost_per_success_usd")  # None without runs: an empty field


def _csv_line(fields: Sequence[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(fields)
    return out.getvalue()


def render_csv(report: Report) -> str:
    """One line per group (the totals when there is no grouping), every token class a column."""
    return "".join(_csv_pieces(report))


def _csv_pieces(report: Report) -> list[str]:
    """:func:`render_csv`'s text, a line each. One line per group (the totals when there is no grouping), every token class a column. The csv module
    writes the header and quotes each distinct key value (once); the numbers, which never need quoting, go
    into one %-format per line."""
    header = _csv_line([*report.group_by, *_CSV_COLUMNS])
    c = _columns(report)
    if not c:
        return [header]
    quoted: dict[str | None, str] = {None: ""}

    def key_column(i: int) -> list[str]:  # 'a,b' -> '"a,b"': the field as csv writes it, without the line end
        return [quoted[v] if v in quoted else quoted.setdefault(v, _csv_line([v, ""])[:-3]) for v in c[f"key{i}"]]

    columns = [key_column(i) for i in range(len(report.group_by))]
    columns += [["" if v is None else v for v in c[name]] if name in _UNIT_COLUMNS else c[name]
                for name in _CSV_COLUMNS]
    line = ",".join(["%s"] * len(columns)) + "\r\n"
    return [header, *map(line.__mod__, zip(*columns))]


def write_report(report: Report, fmt: str, out: TextIO) -> None:
    """``render_table`` / ``render_csv`` / ``render_json`` (``fmt``: table, csv, json) of ``report``, written to
    ``out`` in pieces: the same text, without first copying a month by day and user into one string."""
    if fmt == "table":
        out.write(render_table(report))
    else:
        out.writelines(_csv_pieces(report) if fmt == "csv" else _json_pieces(report))
