"""Spend-rate spikes per group (team, feature, model, customer) against the group's own baseline.

Method: a **robust STL decomposition** (statsmodels ``STL(robust=True)``) of each group's spend per bucket (day,
or hour) into trend + seasonal (weekly for days, daily for hours) + residual. The baseline of a bucket is its
trend + seasonal part; robust STL down-weights outliers while fitting, so a spike does not drag the baseline
up to meet it. A bucket is a spike when all three hold:

* its residual is at least ``z`` robust standard deviations (1.4826 x the median absolute deviation of the
  group's residuals, a scale that one spike cannot inflate) above zero;
* it spent at least ``min_ratio`` times its baseline (a doubling by default: "who doubled our bill overnight?");
* the excess over the baseline is at least ``min_usd`` (ignore a $0.01 -> $0.05 "spike").

At the end of a series a smoother bends to meet its newest points, so a spike on the last day would become its own
baseline: the last ``EDGE`` buckets (a week of days, a day of hours) are judged against a fit of the series
before them instead (its last trend level plus the same weekday's, or hour's, seasonal value).

A series too short for STL (two seasonal cycles or less) is scored against the median and MAD of the buckets
before it (a Hampel identifier), the classical robust rule, so a new team is still watched from its third day.
The detection rate and false alarms are measured by :func:`evaluate` on spikes injected into synthetic ledgers
(figures in docs/reports.md).

Inputs are plain: ``{group: [(bucket_start, Decimal), ...]}``; missing buckets are zero spend.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from ..pricing.cost import MONEY
from ..pricing.money import RATIO, subtract_usd, usd_amount

DEFAULT_Z = 4.0
DEFAULT_MIN_RATIO = 2.0
DEFAULT_MIN_USD = Decimal("1")
_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution x this = its standard deviation
_QUANT = Decimal("0.000001")
_ZERO = Decimal(0)

METHOD_STL = "robust STL"
METHOD_HAMPEL = "median/MAD (short history)"


@dataclass(frozen=True)
class Anomaly:
    """One bucket of one group that spent far above its baseline."""

    dimension: str  # team / feature / model / customer ...
    group: str
    start: datetime | date  # the bucket
    end: datetime | date  # exclusive
    actual: Decimal
    baseline: Decimal  # expected spend of the bucket (trend + seasonal)
    score: float  # robust z-score of the residual
    method: str
    calls: tuple[Any, ...] = field(default=())  # the costliest calls of the bucket, when a source gave them
    # The bucket's calls whose price is unknown (when a source counted them): not in actual, a lower bound then.
    unknown_cost_calls: int = 0

    @property
    def excess(self) -> Decimal:
        return subtract_usd(self.actual, self.baseline)

    @property
    def ratio(self) -> float:
        return float(RATIO.divide(self.actual, self.baseline)) if self.baseline > 0 else math.inf


# Bucket size -> (step, seasonal period, STL seasonal window, STL trend window). The windows are wider than
# statsmodels' defaults: with the defaults, a month of days leaves 4 points per weekday and a 15-day trend, and
# the fit bends to meet a spike instead of exposing it. Five cycles of seasonal smoothing keep the weekly (daily)
# pattern nearly fixed over a month; a trend of about a month (four days for hours) follows drift, not one bucket.
# Chosen on the injected-spike evaluation (docs/reports.md).
GRANULARITIES = {
    "day": (timedelta(days=1), 7, 35, 31),
    "hour": (timedelta(hours=1), 24, 121, 97),
}
# At the end of a series a smoother bends to meet its last points: a spike on the last day would be its own
# baseline. The last EDGE buckets are therefore judged against the fit of the series *before* them (its last
# trend level + the same-phase seasonal value), i.e. against what was expected before they happened.
EDGE = {"day": 7, "hour": 24}


def _bucket_step(granularity: str) -> tuple[timedelta, int, int, int]:
    try:
        return GRANULARITIES[granularity]
    except KeyError:
        raise ValueError(f"unknown granularity {granularity!r}; expected one of {', '.join(GRANULARITIES)}") from None


def _dense(points: Iterable[tuple[Any, Decimal]], step: timedelta, first: Any = None,
           last: Any = None) -> tuple[list, list[float], list[Decimal]]:
    by_bucket: dict[Any, Decimal] = {}
    for when, amount in points:
        by_bucket[when] = MONEY.add(by_bucket.get(when, _ZERO), Decimal(amount))  # exact, any thread's context
    if not by_bucket:
        return [], [], []
    first = min(by_bucket) if first is None else min(first, min(by_bucket))
    last = max(by_bucket) if last is None else max(last, max(by_bucket))
    buckets = []
    cur = first
    while cur <= last:
        buckets.append(cur)
        cur = cur + step
    exact = [by_bucket.get(b, Decimal(0)) for b in buckets]
    return buckets, [float(v) for v in exact], exact


def _robust_sigma(values: Sequence[float]) -> float:
    import numpy as np

    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return 0.0
    return float(_MAD_TO_SIGMA * np.median(np.abs(arr - np.median(arr))))


def baseline(values: Sequence[float], granularity: str = "day") -> tuple[list[float], list[float], str]:
    """``(baseline, residual scale per bucket, method)`` of a dense series.

    With more than two cycles: robust STL, baseline = trend + seasonal, one scale for the whole series from the
    residuals' MAD. Shorter: each bucket against the median and MAD of the buckets before it (none for the first
    two, which get an infinite scale: never a spike).
    """
    import numpy as np

    _, period, seasonal, trend = _bucket_step(granularity)
    n = len(values)
    if n >= 2 * period + 1:
        from statsmodels.tsa.seasonal import STL

        y = np.asarray(values, dtype=float)

        def fit(part: Any) -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return STL(part, period=period, seasonal=seasonal, trend=trend, robust=True).fit()

        full = fit(y)
        base = np.asarray(full.trend) + np.asarray(full.seasonal)
        resid = np.asarray(full.resid)
        edge = min(EDGE[granularity], n - (2 * period + 1))
        if edge > 0:
            head = n - edge
            before = fit(y[:head])
            level = float(np.asarray(before.trend)[-1])
            last_cycle = np.asarray(before.seasonal)[head - period:head]
            for j in range(head, n):
                base[j] = level + last_cycle[(j - head) % period]
            resid = np.asarray(before.resid)
        sigma = _robust_sigma(resid)
        return base.tolist(), [sigma] * n, METHOD_STL
    base, scale = [], []
    for i in range(n):
        before = values[:i]
        if len(before) < 2:
            base.append(values[i])
            scale.append(math.inf)
            continue
        base.append(float(np.median(before)))
        scale.append(_robust_sigma(before))
    return base, scale, METHOD_HAMPEL


def detect(
    dimension: str,
    series: Mapping[str, Iterable[tuple[Any, Decimal]]],
    *,
    granularity: str = "day",
    z: float = DEFAULT_Z,
    min_ratio: float = DEFAULT_MIN_RATIO,
    min_usd: Decimal = DEFAULT_MIN_USD,
    since: Any = None,
    first: Any = None,
    last: Any = None,
) -> list[Anomaly]:
    """Spikes in every group of ``series`` (``{group: [(bucket_start, amount), ...]}``), strongest first.

    ``since`` (a bucket start) limits the report to recent buckets; the baseline still uses the whole series.
    ``first`` / ``last`` (bucket starts) is the range the series cover: a group without spend before its first
    bucket then has a baseline of zero there, so spend appearing from nothing is found too.
    """
    step = _bucket_step(granularity)[0]
    min_usd = usd_amount(min_usd, "min_usd")  # 0.1 is 0.1 (a float's repr), not Decimal(0.1)'s 0.1000...0055
    found: list[Anomaly] = []
    for group, points in series.items():
        points = list(points)
        # A group that never spent min_usd in one bucket of the scanned range cannot exceed its baseline by
        # min_usd there: skip its fit (most of a long tail of customers).
        if not any(v >= min_usd and (since is None or when >= since) for when, v in points):
            continue
        buckets, values, exact = _dense(points, step, first, last)
        if not buckets:
            continue
        base, scale, method = baseline(values, granularity)
        for i, when in enumerate(buckets):
            if since is not None and when < since:
                continue
            expected = max(base[i], 0.0)
            resid = values[i] - base[i]
            sigma = scale[i]
            if not math.isfinite(sigma):
                continue
            # A flat history has zero MAD: any rise is infinitely unusual, so the ratio and min_usd rules decide.
            score = resid / sigma if sigma > 0 else (math.inf if resid > 0 else 0.0)
            if score < z:
                continue
            baseline_usd = RATIO.quantize(Decimal(repr(expected)), _QUANT)
            if subtract_usd(exact[i], baseline_usd) < min_usd:
                continue
            if expected > 0 and values[i] < min_ratio * expected:
                continue
            found.append(Anomaly(dimension, group, when, when + step, exact[i], baseline_usd, score, method))
    found.sort(key=lambda a: (a.excess.copy_negate(), a.group))  # not -x: it rounds to the thread's context
    return found


# ---------------------------------------------------------------------------------------------------------------
# Evaluation on injected spikes


@dataclass(frozen=True)
class Evaluation:
    """Detection on a series set with known injected spikes: recall = found / injected, and false alarms per
    1,000 group-buckets that had no spike."""

    injected: int
    detected: int
    false_alarms: int
    clean_buckets: int

    @property
    def recall(self) -> float:
        return self.detected / self.injected if self.injected else float("nan")

    @property
    def false_alarms_per_1000(self) -> float:
        return 1000.0 * self.false_alarms / self.clean_buckets if self.clean_buckets else float("nan")

    @property
    def precision(self) -> float:
        flagged = self.detected + self.false_alarms
        return self.detected / flagged if flagged else float("nan")


def evaluate(series: Mapping[str, Sequence[tuple[Any, Decimal]]], injected: Mapping[str, set], *,
             dimension: str = "group", granularity: str = "day", **options: Any) -> Evaluation:
    """Run :func:`detect` on ``series`` where ``injected[group]`` is the set of bucket starts given a spike."""
    found = detect(dimension, series, granularity=granularity, **options)
    hits = {(a.group, a.start) for a in found}
    truth = {(g, b) for g, buckets in injected.items() for b in buckets}
    step = _bucket_step(granularity)[0]
    total = sum(len(_dense(points, step)[0]) for points in series.values())
    return Evaluation(
        injected=len(truth),
        detected=len(hits & truth),
        false_alarms=len(hits - truth),
        clean_buckets=total - len(truth),
    )


# ---------------------------------------------------------------------------------------------------------------
# From the ledger

BASELINE_DAYS = 28  # history read before the scanned period, so its first buckets have a baseline too
DEFAULT_DIMENSIONS = ("team", "feature", "model", "customer")


def scan_ledger(store: Any, start: datetime | date, end: datetime | date, *,
                dimensions: Sequence[str] = DEFAULT_DIMENSIONS, granularity: str = "day", calls: int = 5,
                z: float = DEFAULT_Z, min_ratio: float = DEFAULT_MIN_RATIO,
                min_usd: Decimal = DEFAULT_MIN_USD) -> list[Anomaly]:
    """Spikes in ``[start, end)`` per group of each dimension, each with its ``calls`` costliest calls.

    The baseline is fitted on the ``BASELINE_DAYS`` before ``start`` as well as the period itself. Spikes are in
    priced spend: calls whose price is unknown have no amount to judge; a spike's bucket counts its own
    (``unknown_cost_calls``), so its spend is shown as the lower bound it is."""
    from .data import check_dimension, costliest_calls, daily_series, hourly_series, utc

    for dimension in dimensions:
        check_dimension(dimension)
    start_dt = start if isinstance(start, datetime) else datetime(start.year, start.month, start.day)
    history_start = start_dt - timedelta(days=BASELINE_DAYS)
    span = store.time_range()
    if span is None:
        return []
    # Before the ledger's first row there is no history at all (not "zero spend"): the baseline starts there.
    ledger_start = span[0].replace(minute=0, second=0, microsecond=0, tzinfo=None)
    if granularity == "day":
        ledger_start = ledger_start.replace(hour=0)
    history_start = max(history_start.replace(tzinfo=None), ledger_start)
    read = daily_series if granularity == "day" else hourly_series
    step = _bucket_step(granularity)[0]
    if granularity == "day":
        since: Any = start_dt.date()
        first: Any = history_start.date()
        last: Any = (utc(end) - step).date()
    else:
        since, first, last = utc(start_dt), utc(history_start), utc(end) - step
    found: list[Anomaly] = []
    for dimension in dimensions:
        series = read(store, history_start, end, dimension)
        for anomaly in detect(dimension, series, granularity=granularity, z=z, min_ratio=min_ratio,
                              min_usd=min_usd, since=since, first=first, last=last):
            if utc(anomaly.start) >= utc(end):
                continue
            # The bucket's calls up to ``end`` only: a bucket cut by it (today, or "now" when a past ledger is
            # replayed) must not be explained by calls that are not in its spend.
            behind = tuple(costliest_calls(store, anomaly.start, min(utc(anomaly.end), utc(end)), dimension,
                                           anomaly.group, calls))
            unknown = series.unknown_calls(anomaly.group, anomaly.start, anomaly.start)
            found.append(dataclasses.replace(anomaly, calls=behind, unknown_cost_calls=unknown))
    found.sort(key=lambda a: (a.excess.copy_negate(), a.dimension, a.group))
    return found

