"""Rows -> the sums kept in ``aicost_rollup``: one vector of :data:`~aicost.ledger.schema.MEASURES` per key.

Why in Python, once, for both databases: one function (:func:`_sparse_row`) says what a row adds to the sums; the
writer's rollups and a report's sums over raw rows (the edges of a period that do not fill a whole hour) both use
it, so they agree by construction. Per row, its few non-zero measures are added into one sparse cell per
dimension at the hour grain; the day grain is folded from the hour cells afterwards.
"""

from __future__ import annotations

import decimal
import operator
from datetime import datetime
from typing import Iterable

from ..pricing.cost import MONEY
from .row import CACHE_HIT, CALL, REFUSAL, SUCCEEDED, TOKEN_FIELDS, FeatureRun, LedgerRow
from .schema import MEASURES

__all__ = ["INDEX", "NO_HOUR_GRAIN", "sparse", "new_measures", "run_measures", "add_into", "aggregate"]

INDEX = {name: i for i, name in enumerate(MEASURES)}
_N = len(MEASURES)
_ZERO = decimal.Decimal(0)
_MONEY_AT = tuple(INDEX[m] for m in ("cost", "saved_cost", "stopped_cost"))
_CALLS, _UNKNOWN, _ESTIMATED, _ERRORS, _COST = (INDEX[m] for m in (
    "calls", "unknown_cost_calls", "estimated_calls", "error_calls", "cost"))
_TOKENS = tuple((INDEX[name], name) for name in TOKEN_FIELDS)
_HITS, _SAVED, _REFUSALS, _STOPPED, _RUNS, _SUCCEEDED = (INDEX[m] for m in (
    "cache_hits", "saved_cost", "refusals", "stopped_cost", "runs", "succeeded_runs"))


def new_measures() -> list:
    m: list = [0] * _N
    for i in _MONEY_AT:
        m[i] = _ZERO
    return m


def run_measures(run: FeatureRun) -> list:
    m = new_measures()
    for i, v in _sparse_run(run):
        m[i] = v
    return m


def add_into(acc: list, m: list) -> None:
    """acc += m, exactly (the caller runs inside ``decimal.localcontext(MONEY)``)."""
    for i in range(_N):
        acc[i] += m[i]


def sparse(kind: str, cost: object, estimated: bool, error_type: str | None, tokens: tuple, saved: object,
           stopped: object) -> list[tuple[int, object]]:
    """What one row adds to the sums, as its non-zero (measure index, value) pairs: a typical call has five, not
    thirty. ``tokens`` are the row's TOKEN_FIELDS in order. The one definition the writer's rollups and the
    reports' raw-row sums share."""
    if kind == CALL:
        pairs: list[tuple[int, object]] = [(_CALLS, 1)]
        if cost is None:
            pairs.append((_UNKNOWN, 1))
        elif cost:
            pairs.append((_COST, cost))
        if estimated:
            pairs.append((_ESTIMATED, 1))
        if error_type:
            pairs.append((_ERRORS, 1))
        for (i, _), value in zip(_TOKENS, tokens):
            if value:
                pairs.append((i, value))
        return pairs
    if kind == CACHE_HIT:
        return [(_HITS, 1)] if not saved else [(_HITS, 1), (_SAVED, saved)]
    if kind == REFUSAL:
        return [(_REFUSALS, 1)] if not stopped else [(_REFUSALS, 1), (_STOPPED, stopped)]
    return []


_tokens_of = operator.attrgetter(*TOKEN_FIELDS)


def _sparse_row(row: LedgerRow) -> list[tuple[int, object]]:
    return sparse(row.kind, row.cost, row.estimated, row.error_type, _tokens_of(row), row.saved_cost,
                  row.stopped_cost)


def _sparse_run(run: FeatureRun) -> list[tuple[int, object]]:
    return [(_RUNS, 1), (_SUCCEEDED, 1)] if run.outcome == SUCCEEDED else [(_RUNS, 1)]


# Rollup dimensions: all (totals, value ''), team, feature, user, customer, model, provider (a feature run has no
# model or provider, so it is in neither), and tag (value "name=value"). A missing attribution value is the
# value '': reports show it as unattributed spend, which finance wants to see.
# Dimensions without an hour grain: one row per user per hour would be about one rollup row per call, so a
# period edge grouped by user is summed from the raw rows instead (see aicost.ledger.query).
NO_HOUR_GRAIN = frozenset({"user"})


def aggregate(rows: Iterable[LedgerRow], runs: Iterable[FeatureRun] = ()) -> dict[tuple[str, datetime, str, str], list]:
    """(grain, bucket start, dim, value) -> measures, for the hour and day grains.

    Per row, its non-zero measures are added into one sparse accumulator per dimension at the hour grain; the day
    grain is then folded from the hour cells (a batch spans few hours, so that costs per cell, not per row)."""
    hours: dict[tuple[datetime, str, str], dict[int, object]] = {}
    days: dict[tuple[datetime, str, str], dict[int, object]] = {}
    with decimal.localcontext(MONEY):
        for is_run, items in ((False, rows), (True, runs)):
            for item in items:
                hour = item.time.replace(minute=0, second=0, microsecond=0)
                if is_run:
                    pairs = _sparse_run(item)  # type: ignore[arg-type]
                    keys = [(hour, "all", ""), (hour, "team", item.team or ""), (hour, "feature", item.feature or ""),
                            (hour, "customer", item.customer or "")]
                else:
                    pairs = _sparse_row(item)  # type: ignore[arg-type]
                    keys = [(hour, "all", ""), (hour, "team", item.team or ""), (hour, "feature", item.feature or ""),
                            (hour, "customer", item.customer or ""), (hour, "model", item.model or ""),
                            (hour, "provider", item.provider or "")]
                if item.tags:
                    keys.extend((hour, "tag", f"{name}={value}") for name, value in item.tags.items())
                # The same accumulation, inlined: this loop runs ~10 times per row.
                for key in keys:
                    cell = hours.get(key)
                    if cell is None:
                        hours[key] = dict(pairs)
                    else:
                        for i, v in pairs:
                            cell[i] = cell.get(i, 0) + v
                _add(days, (hour.replace(hour=0), "user", item.user or ""), pairs)  # NO_HOUR_GRAIN
        for (hour, dim, value), cell in hours.items():
            _add(days, (hour.replace(hour=0), dim, value), cell.items())
    out: dict[tuple[str, datetime, str, str], list] = {}
    for grain, cells in (("hour", hours), ("day", days)):
        for (bucket, dim, value), cell in cells.items():
            m = new_measures()
            for i, v in cell.items():
                m[i] = v
            out[(grain, bucket, dim, value)] = m
    return out


def _add(cells: dict, key: tuple, pairs: Iterable[tuple[int, object]]) -> None:
    cell = cells.get(key)
    if cell is None:
        cells[key] = dict(pairs)
    else:
        for i, v in pairs:
            cell[i] = cell.get(i, 0) + v
