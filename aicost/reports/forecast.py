"""Month-end spend forecasts with an interval, per group (budget, team, feature, ...).

Method: **STL + ETS** (Hyndman's ``stlf``), from statsmodels. A robust STL decomposition splits the daily spend
series into a weekly seasonal part (weekday/weekend traffic) and a seasonally adjusted part; an additive-error
ETS model with a damped additive trend, ETS(A,Ad,N), forecasts the adjusted part, and the weekly pattern is
carried forward (seasonal naive). ``statsmodels.tsa.forecasting.stl.STLForecast`` fits it and gives each future
day's mean and prediction interval from the ETS state-space equations.

The month-end figure is the exact spend so far plus the sum of the remaining days' means. Its interval is the
sum of the days' interval bounds, i.e. it treats the days' errors as fully correlated. That is deliberate: the
backtest shows the error of a spend forecast is mostly a misjudged level or trend, shared by every remaining
day, and an interval that assumed independent days (simulated sample paths, tried first) covered well under
half of the actual totals at a nominal 80 %. Negative days are clipped to zero: spend never is.

Shorter histories get a simpler model from the same library: under two full weeks there is no weekly pattern to
estimate, so ETS(A,Ad,N) alone; under ``MIN_DAYS`` days nothing is fitted and only the spend so far is reported
(``method="insufficient history"``, no interval). :func:`backtest` scores all of this on a ledger's history,
next to a run-rate baseline, so the figures in docs/reports.md can be judged.

Inputs are plain: a daily series ``[(date, Decimal), ...]`` per group, missing days meaning zero spend. Money
stays Decimal at the edges; the model works in floats, and its outputs are rounded to 6 decimal places.

Calls whose price is unknown have no amount (never $0): a forecast counts those of its period so far
(``unknown_cost_calls``), and one with any is incomplete: its spend so far and projection are lower bounds.
"""

from __future__ import annotations

import calendar
import math
import warnings
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from ..pricing.cost import MONEY
from ..pricing.money import RATIO, sum_usd

MIN_DAYS = 4  # fewer complete days than this: no model is fitted
SEASONAL_PERIOD = 7  # days
DEFAULT_LEVEL = 0.8  # central 80 % interval
_QUANT = Decimal("0.000001")
_ZERO = Decimal(0)

METHOD_STL_ETS = "STL(7, robust) + ETS(A,Ad,N)"
METHOD_ETS = "ETS(A,Ad,N)"
METHOD_NONE = "insufficient history"


@dataclass(frozen=True)
class Forecast:
    """The projected total of one group over a period (normally: to the end of ``as_of``'s month)."""

    group: str
    period_start: date
    period_end: date  # last day of the period, inclusive
    as_of: date  # last day counted as actual
    actual: Decimal  # spend from period_start to as_of, exact
    projected: Decimal  # actual + expected spend of the remaining days
    low: Decimal | None  # interval bounds on the period total (None without a model)
    high: Decimal | None
    level: float
    method: str
    history_days: int
    budget: Decimal | None = None
    # Calls from period_start to as_of whose price is unknown: not in actual (nor projected), so both are lower
    # bounds when there are any.
    unknown_cost_calls: int = 0

    @property
    def remaining_days(self) -> int:
        return (self.period_end - self.as_of).days

    @property
    def over_budget(self) -> bool:
        """True when the *expected* total exceeds the budget."""
        return self.budget is not None and self.projected > self.budget

    @property
    def over_budget_likely(self) -> bool:
        """True when even the interval's low end exceeds the budget."""
        return self.budget is not None and self.low is not None and self.low > self.budget


def month_bounds(day: date) -> tuple[date, date]:
    """First and last day of ``day``'s calendar month."""
    last = calendar.monthrange(day.year, day.month)[1]
    return day.replace(day=1), day.replace(day=last)


def dense_daily(points: Iterable[tuple[date, Decimal]], start: date, end: date) -> list[Decimal]:
    """The series as one value per day from ``start`` to ``end`` inclusive; missing days are zero spend."""
    by_day: dict[date, Decimal] = {}
    for day, amount in points:
        if start <= day <= end:
            by_day[day] = MONEY.add(by_day.get(day, _ZERO), Decimal(amount))  # exact, any thread's context
    n = (end - start).days + 1
    return [by_day.get(start + timedelta(days=i), Decimal(0)) for i in range(max(n, 0))]


def predict_total(history: Sequence[float], horizon: int, *, level: float = DEFAULT_LEVEL
                  ) -> tuple[float, float, float, str]:
    """``(low, expected, high, method)`` of the total of the next ``horizon`` days after ``history``.

    Raises ValueError when the history is too short for any model (fewer than ``MIN_DAYS`` days).
    """
    import numpy as np
    import pandas as pd

    if len(history) < MIN_DAYS:
        raise ValueError(f"need at least {MIN_DAYS} days of history, got {len(history)}")
    method = METHOD_STL_ETS if len(history) >= 2 * SEASONAL_PERIOD else METHOD_ETS
    y = pd.Series(np.asarray(history, dtype=float))
    if horizon <= 0 or not y.any():  # nothing left to forecast, or a group that never spent
        return 0.0, 0.0, 0.0, method
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    ets = {"error": "add", "trend": "add", "damped_trend": True}
    with warnings.catch_warnings():
        # Short, noisy spend series routinely trip the optimiser's convergence warnings; the fit is still the
        # maximum-likelihood one it found, and the backtest measures how good that is.
        warnings.simplefilter("ignore")
        if method == METHOD_STL_ETS:
            from statsmodels.tsa.forecasting.stl import STLForecast

            fitted = STLForecast(y, ETSModel, period=SEASONAL_PERIOD, robust=True, model_kwargs=ets
                                 ).fit(fit_kwargs={"disp": False})
        else:
            fitted = ETSModel(y, **ets).fit(disp=False)
        frame = fitted.get_prediction(start=len(y), end=len(y) + horizon - 1).summary_frame(alpha=1.0 - level)
    # Columns are mean, mean_se, lower, upper; taken by position (their names differ between the two models).
    mean = np.clip(frame.iloc[:, 0].to_numpy(), 0.0, None)
    lower = np.clip(frame.iloc[:, -2].to_numpy(), 0.0, None)
    upper = np.clip(frame.iloc[:, -1].to_numpy(), 0.0, None)
    low, mid, high = float(lower.sum()), float(mean.sum()), float(upper.sum())
    if not all(map(math.isfinite, (low, mid, high))):
        raise ValueError("the model produced no finite forecast")
    return low, mid, high, method


def _money(value: float) -> Decimal:
    if not math.isfinite(value):
        value = 0.0
    return RATIO.quantize(Decimal(repr(max(value, 0.0))), _QUANT)


def forecast_period(
    group: str,
    points: Iterable[tuple[date, Decimal]],
    *,
    as_of: date,
    period_start: date | None = None,
    period_end: date | None = None,
    history_start: date | None = None,
    budget: Decimal | None = None,
    level: float = DEFAULT_LEVEL,
    unknown_cost_calls: int = 0,
) -> Forecast:
    """Project ``group``'s spend to the end of the period containing ``as_of`` (default: its calendar month).

    ``points`` is the group's daily spend; days up to and including ``as_of`` are history, from ``history_start``
    (default: the first day with spend) on. The projection is the actual spend so far plus the expected spend of the
    remaining days, and ``[low, high]`` the central ``level`` interval of the period total. ``unknown_cost_calls``:
    the period's calls so far whose price is unknown (not in ``points``), carried so the forecast says so.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    points = [(d, Decimal(v)) for d, v in points]
    month_start, month_end = month_bounds(as_of)
    period_start = period_start or month_start
    period_end = period_end or month_end
    if not period_start <= as_of <= period_end:
        raise ValueError(f"as_of {as_of} is outside the period {period_start}..{period_end}")
    spent_days = [d for d, v in points if d <= as_of and v != 0]
    first = history_start or (min(spent_days) if spent_days else period_start)
    first = min(first, period_start)
    history = dense_daily(points, first, as_of)
    actual = sum_usd(v for d, v in points if period_start <= d <= as_of)
    horizon = (period_end - as_of).days
    # Leading zero days before a group's first spend are not history of it (a new team spends from day one).
    while history and history[0] == 0 and len(history) > 1:
        history.pop(0)
    try:
        low, mid, high, method = predict_total([float(v) for v in history], horizon, level=level)
    except ValueError:
        return Forecast(group, period_start, period_end, as_of, actual, actual, None, None, level, METHOD_NONE,
                        len(history), budget, unknown_cost_calls)
    return Forecast(group, period_start, period_end, as_of, actual, MONEY.add(actual, _money(mid)),
                    MONEY.add(actual, _money(low)), MONEY.add(actual, _money(high)), level, method, len(history),
                    budget, unknown_cost_calls)


def forecast_groups(
    series: Mapping[str, Iterable[tuple[date, Decimal]]],
    *,
    as_of: date,
    budgets: Mapping[str, Decimal] | None = None,
    level: float = DEFAULT_LEVEL,
    unknown_cost_calls: Mapping[str, int] | None = None,
) -> list[Forecast]:
    """:func:`forecast_period` for every group, largest projection first. ``unknown_cost_calls``: per group, the
    period's calls so far whose price is unknown."""
    budgets = budgets or {}
    unknown = unknown_cost_calls or {}
    out = [forecast_period(g, pts, as_of=as_of, budget=budgets.get(g), level=level,
                           unknown_cost_calls=unknown.get(g, 0))
           for g, pts in series.items()]
    out.sort(key=lambda f: (f.projected.copy_negate(), f.group))  # not -x: it rounds to the thread's context
    return out


# ---------------------------------------------------------------------------------------------------------------
# Backtest


@dataclass(frozen=True)
class BacktestResult:
    """Rolling-origin backtest of the h-day spend total, over every group and origin.

    ``wape`` is the weighted absolute percentage error of the forecast totals (sum |error| / sum actual), the
    figure finance reads as "off by x %"; ``mape`` the mean of per-forecast percentage errors; ``coverage`` the
    share of actual totals inside the interval (should be near ``level``); ``naive_wape`` the same WAPE for the
    run-rate baseline (mean of the last 7 days x h), so the method's figure can be judged against it.
    """

    horizon: int
    forecasts: int
    wape: float
    mape: float
    coverage: float
    naive_wape: float
    level: float
    methods: Mapping[str, int]


def backtest(
    series: Mapping[str, Iterable[tuple[date, Decimal]]],
    *,
    horizon: int = 7,
    min_history: int = 14,
    step: int = 1,
    level: float = DEFAULT_LEVEL,
) -> BacktestResult:
    """Score the forecaster on ``series``: at every origin with at least ``min_history`` days before it and
    ``horizon`` days after it, forecast the next ``horizon`` days' total from the days before, and compare."""
    abs_err = actual_sum = naive_err = 0.0
    pct: list[float] = []
    inside = n = 0
    methods: dict[str, int] = {}
    for group, points in series.items():
        points = list(points)
        if not points:
            continue
        start = min(d for d, _ in points)
        end = max(d for d, _ in points)
        values = [float(v) for v in dense_daily(points, start, end)]
        for origin in range(min_history, len(values) - horizon + 1, step):
            history, future = values[:origin], values[origin:origin + horizon]
            truth = sum(future)
            try:
                low, mid, high, method = predict_total(history, horizon, level=level)
            except ValueError:
                continue
            naive = sum(history[-7:]) / len(history[-7:]) * horizon
            abs_err += abs(mid - truth)
            naive_err += abs(naive - truth)
            actual_sum += truth
            if truth > 0:
                pct.append(abs(mid - truth) / truth)
            inside += low <= truth <= high
            n += 1
            methods[method] = methods.get(method, 0) + 1
    if n == 0:
        raise ValueError(f"no origin has {min_history} days of history and {horizon} days after it")
    return BacktestResult(
        horizon=horizon,
        forecasts=n,
        wape=abs_err / actual_sum if actual_sum else float("nan"),
        mape=sum(pct) / len(pct) if pct else float("nan"),
        coverage=inside / n,
        naive_wape=naive_err / actual_sum if actual_sum else float("nan"),
        level=level,
        methods=methods,
    )


# ---------------------------------------------------------------------------------------------------------------
# From the ledger

HISTORY_DAYS = 56  # eight weeks of history feed each fit: enough weekly cycles, recent enough to be relevant


def default_as_of(store: Any, today: date | None = None) -> date | None:
    """The last complete day with spend: yesterday (UTC), or the ledger's last day if it ends earlier."""
    span = store.time_range()
    if span is None:
        return None
    today = today or datetime.now(timezone.utc).date()
    return min(today - timedelta(days=1), span[1].date())


def forecast_ledger(store: Any, *, by: str = "team", as_of: date, level: float = DEFAULT_LEVEL,
                    where: Mapping[str, str] | None = None, limit: int | None = None) -> list[Forecast]:
    """Month-end forecasts for every group of ``by`` (``"global"``: the whole ledger), largest first.

    ``limit`` keeps the largest groups by spend so far this month (a fit costs tens of milliseconds); among equal
    spend, those with more calls of unknown price (a group of unpriced calls only has spent "0")."""
    from .data import daily_series

    month_start, _ = month_bounds(as_of)
    start = min(month_start, as_of - timedelta(days=HISTORY_DAYS - 1))
    series = daily_series(store, start, as_of + timedelta(days=1), by, where=where)
    unknown = {g: series.unknown_calls(g, month_start, as_of) for g in series}
    if limit is not None:
        series = _largest(series, month_start, unknown, limit)
    return forecast_groups(series, as_of=as_of, level=level, unknown_cost_calls=unknown)


def _largest(series: Mapping[str, Any], month_start: date, unknown: Mapping[str, int], limit: int) -> dict[str, Any]:
    """The ``limit`` groups with the most spend since ``month_start``, then the most calls of unknown price."""
    spent = {g: sum_usd(v for d, v in pts if d >= month_start) for g, pts in series.items()}
    return {g: series[g] for g in sorted(series, key=lambda g: (spent[g].copy_negate(), -unknown.get(g, 0), g))[:limit]}


def budget_scope(budget: Any) -> tuple[str, str | None]:
    """(ledger dimension, value) of a :class:`aicost.Budget`'s scope: ``tag.env`` -> ``tag:env``."""
    scope = budget.scope
    if scope.startswith("tag."):
        scope = "tag:" + scope[4:]
    return scope, budget.value


def forecast_budgets(store: Any, budgets: Iterable[Any], *, as_of: date, level: float = DEFAULT_LEVEL,
                     per_value_limit: int | None = None) -> list[Forecast]:
    """Each monthly budget's month-end forecast against its limit (``group`` = the budget's name, plus the scope
    value for a per-value budget: ``team/month[search]``). Budgets over other windows have no month-end and are
    skipped. A per-value budget gets one forecast per value seen in the ledger's history, or, with
    ``per_value_limit``, for that many values with the most spend this month: one limit applies to every value,
    so the biggest spenders so far are the ones nearest to it."""
    from .data import UNATTRIBUTED, daily_series

    month_start, _ = month_bounds(as_of)
    start = min(month_start, as_of - timedelta(days=HISTORY_DAYS - 1))
    end = as_of + timedelta(days=1)
    out = []
    for budget in budgets:
        if budget.window != "month":
            continue
        dimension, value = budget_scope(budget)
        if dimension == "global":
            read = daily_series(store, start, end)
        elif value is not None:
            read = daily_series(store, start, end, dimension, where={dimension: value})
        else:
            read = daily_series(store, start, end, dimension)
            read.pop(UNATTRIBUTED, None)  # calls without the scope's attribute do not count against it
        unknown = {g: read.unknown_calls(g, month_start, as_of) for g in read}
        series: Mapping[str, Any] = read
        if value is not None:
            series = {value: read.get(value, [])}
        elif dimension != "global" and per_value_limit is not None:
            series = _largest(read, month_start, unknown, per_value_limit)
        for group, points in series.items():
            name = budget.name if dimension == "global" or value is not None else f"{budget.name}[{group}]"
            out.append(forecast_period(name, points, as_of=as_of, budget=budget.limit_usd, level=level,
                                       unknown_cost_calls=unknown.get(group, 0)))
    out.sort(key=lambda f: (RATIO.divide(f.projected, f.budget).copy_negate() if f.budget else 0, f.group))
    return out
