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
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from .query import TIME_KEYS, SpendGroup, check_group_by, spend, totals
from .row import TOKEN_FIELDS, decimal_text
from .store import LedgerStore

__all__ = ["Period", "parse_period", "Mover", "Report", "build_report", "render_table", "render_csv", "render_json"]


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
    groups: list[SpendGroup]
    movers: list[Mover] = field(default_factory=list)
    ledger: str = ""

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
    total = totals(store, period.start, period.end, where)
    groups = spend(store, period.start, period.end, keys, where) if keys else []
    report = Report(period=period, group_by=keys, totals=total, groups=groups, ledger=getattr(store, "url", ""))
    mover_keys = tuple(k for k in keys if k not in TIME_KEYS)
    if movers and mover_keys and not report.empty:
        before = {tuple(g.key.values()): g.cost for g in
                  spend(store, period.previous.start, period.previous.end, mover_keys, where)}
        now = {tuple(g.key.values()): g.cost for g in
               (groups if mover_keys == keys else spend(store, period.start, period.end, mover_keys, where))}
        changes = [Mover(dict(zip(mover_keys, k)), before.get(k, Decimal(0)), now.get(k, Decimal(0)))
                   for k in set(before) | set(now)]
        changes = [m for m in changes if m.change]
        changes.sort(key=lambda m: (-abs(m.change), str(m.key)))
        report.movers = changes[:movers]
    return report


# --------------------------------------------------------------------------------------------------- rendering
def _money(value: Decimal | None) -> str:
    return "-" if value is None else (decimal_text(value) or "0")


def _label(value: str | None) -> str:
    return "(none)" if value is None else value


_TABLE_TOKENS = (("input", "input_tokens"), ("cached", "cache_read_tokens"), ("output", "output_tokens"),
                 ("reasoning", "reasoning_tokens"))


def _group_cells(g: SpendGroup, total: Decimal) -> list[str]:
    share = "-" if not total else f"{(g.cost * 100 / total):.1f}%"
    return [
        _money(g.cost), share, f"{g.calls:,}", f"{g.unknown_cost_calls:,}",
        *(f"{g.tokens.get(name, 0):,}" for _, name in _TABLE_TOKENS),
        f"{g.cache_hits:,}", _money(g.saved_cost), f"{g.refusals:,}", _money(g.stopped_cost), f"{g.runs:,}",
        _money(g.cost_per_run), _money(g.cost_per_success),
    ]


_NUMERIC_HEADERS = ["cost USD", "share", "calls", "unpriced", *(h for h, _ in _TABLE_TOKENS), "cache hits",
                    "saved USD", "refused", "stopped USD", "runs", "USD/run", "USD/success"]


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
    if report.groups:
        lines.append("")
        lines.append("by " + ", ".join(report.group_by))
        header = [*report.group_by, *_NUMERIC_HEADERS]
        body = [[*(_label(v) for v in g.key.values()), *_group_cells(g, t.cost)] for g in report.groups]
        lines.extend(_align([header, *body], len(report.group_by)))
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


def _group_dict(g: SpendGroup) -> dict[str, Any]:
    return {
        "key": g.key, "cost_usd": _money(g.cost), "calls": g.calls, "unknown_cost_calls": g.unknown_cost_calls,
        "estimated_calls": g.estimated_calls, "error_calls": g.error_calls, "tokens": g.tokens,
        "cache_hits": g.cache_hits, "saved_usd": _money(g.saved_cost), "refusals": g.refusals,
        "stopped_usd": _money(g.stopped_cost), "runs": g.runs, "succeeded_runs": g.succeeded_runs,
        "cost_per_run_usd": None if g.cost_per_run is None else _money(g.cost_per_run),
        "cost_per_success_usd": None if g.cost_per_success is None else _money(g.cost_per_success),
    }


def render_json(report: Report) -> str:
    """Money as exact decimal strings (JSON numbers would be read as doubles)."""
    p = report.period
    data = {
        "period": {"start": p.start.isoformat(), "end": p.end.isoformat(), "label": p.label},
        "previous_period": {"start": p.previous.start.isoformat(), "end": p.previous.end.isoformat()},
        "ledger": report.ledger,
        "group_by": list(report.group_by),
        "empty": report.empty,
        "totals": _group_dict(report.totals),
        "groups": [_group_dict(g) for g in report.groups],
        "movers": [{"key": m.key, "previous_usd": _money(m.previous), "current_usd": _money(m.current),
                    "change_usd": _money(m.change), "change_pct": None if m.change_pct is None else str(m.change_pct)}
                   for m in report.movers],
    }
    return json.dumps(data, indent=2) + "\n"


def render_csv(report: Report) -> str:
    """One line per group (the totals when there is no grouping), every token class a column."""
    out = io.StringIO()
    writer = csv.writer(out)
    money = ["cost_usd", "calls", "unknown_cost_calls", "estimated_calls", "error_calls", *TOKEN_FIELDS, "cache_hits",
             "saved_usd", "refusals", "stopped_usd", "runs", "succeeded_runs", "cost_per_run_usd",
             "cost_per_success_usd"]
    writer.writerow([*report.group_by, *money])
    for g in (report.groups if report.group_by else [report.totals]):
        d = _group_dict(g)
        writer.writerow([*("" if v is None else v for v in g.key.values()),
                         *(d["tokens"][name] if name in TOKEN_FIELDS else ("" if d[name] is None else d[name])
                           for name in money)])
    return out.getvalue()
