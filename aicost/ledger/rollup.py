"""Rows -> the sums kept in ``aicost_rollup``: one vector of :data:`~aicost.ledger.schema.MEASURES` per key.

Why in Python, once, for both databases: the same function builds the rollups a writer upserts, and sums the raw
rows a report reads for the edges of a period that do not fill a whole hour, so both agree by construction.
A batch is first grouped by hour and full attribution (few groups for many rows), and only the groups are
spread over the dimensions: the per-row work is one dict lookup and one vector add.
"""

from __future__ import annotations

import decimal
from datetime import datetime
from typing import Iterable, Iterator

from ..pricing.cost import MONEY
from .row import CACHE_HIT, CALL, REFUSAL, SUCCEEDED, TOKEN_FIELDS, FeatureRun, LedgerRow
from .schema import MEASURES

__all__ = ["INDEX", "new_measures", "row_measures", "run_measures", "add_into", "aggregate", "dims_of"]

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


def row_measures(row: LedgerRow) -> list:
    m = new_measures()
    kind = row.kind
    if kind == CALL:
        m[_CALLS] = 1
        if row.cost is None:
            m[_UNKNOWN] = 1
        else:
            m[_COST] = row.cost
        if row.estimated:
            m[_ESTIMATED] = 1
        if row.error_type:
            m[_ERRORS] = 1
        for i, name in _TOKENS:
            m[i] = getattr(row, name)
    elif kind == CACHE_HIT:
        m[_HITS] = 1
        if row.saved_cost is not None:
            m[_SAVED] = row.saved_cost
    elif kind == REFUSAL:
        m[_REFUSALS] = 1
        if row.stopped_cost is not None:
            m[_STOPPED] = row.stopped_cost
    return m


def run_measures(run: FeatureRun) -> list:
    m = new_measures()
    m[_RUNS] = 1
    if run.outcome == SUCCEEDED:
        m[_SUCCEEDED] = 1
    return m


def add_into(acc: list, m: list) -> None:
    """acc += m, exactly (the caller runs inside ``decimal.localcontext(MONEY)``)."""
    for i in range(_N):
        acc[i] += m[i]


def dims_of(team: str | None, feature: str | None, user: str | None, customer: str | None, model: str | None,
            provider: str | None, tags: Iterable[tuple[str, str]], *, run: bool = False) -> Iterator[tuple[str, str]]:
    """The (dim, value) rollup keys one row contributes to. A missing attribution value is the value ''
    (reports show it as unattributed spend, which finance wants to see); a feature run has no model or provider,
    so it is in neither dimension."""
    yield "all", ""
    yield "team", team or ""
    yield "feature", feature or ""
    yield "user", user or ""
    yield "customer", customer or ""
    if not run:
        yield "model", model or ""
        yield "provider", provider or ""
    for name, value in tags:
        yield "tag", f"{name}={value}"


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def aggregate(rows: Iterable[LedgerRow], runs: Iterable[FeatureRun] = ()) -> dict[tuple[str, datetime, str, str], list]:
    """(grain, bucket start, dim, value) -> measures, for the hour and day grains."""
    groups: dict[tuple, list] = {}
    with decimal.localcontext(MONEY):
        for row in rows:
            key = (_hour(row.time), row.team, row.feature, row.user, row.customer, row.model, row.provider,
                   tuple(sorted(row.tags.items())) if row.tags else (), False)
            m = row_measures(row)
            acc = groups.get(key)
            if acc is None:
                groups[key] = m
            else:
                add_into(acc, m)
        for run in runs:
            key = (_hour(run.time), run.team, run.feature, run.user, run.customer, None, None,
                   tuple(sorted(run.tags.items())) if run.tags else (), True)
            m = run_measures(run)
            acc = groups.get(key)
            if acc is None:
                groups[key] = m
            else:
                add_into(acc, m)
        out: dict[tuple[str, datetime, str, str], list] = {}
        for (hour, team, feature, user, customer, model, provider, tags, is_run), m in groups.items():
            day = hour.replace(hour=0)
            for dim, value in dims_of(team, feature, user, customer, model, provider, tags, run=is_run):
                for grain, bucket in (("hour", hour), ("day", day)):
                    k = (grain, bucket, dim, value)
                    acc = out.get(k)
                    if acc is None:
                        out[k] = list(m)
                    else:
                        add_into(acc, m)
    return out
