"""A pool over a period: what it cost, how much of it was used, who used it, and what hosted APIs would have cost.

Provisional and final figures are kept apart: ``final`` is what closed intervals allocated, ``provisional`` is
what the spans said at call time for the same calls. They are never added together.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Iterable

from ..pricing.cost import MONEY
from ..pricing.money import RATIO, canonical, percent, sum_usd
from .meter import MILLION, ClosedInterval

if TYPE_CHECKING:
    from ..pricing.cost import Cost


@dataclass(frozen=True)
class PoolSummary:
    pool: str
    owner: str
    intervals: int
    cost: Decimal  # the pool's cost over the period (= used + idle, exactly)
    used: Decimal  # final allocations to calls
    idle: Decimal  # the owner's
    input_tokens: int
    output_tokens: int
    calls: int
    by_team: dict[str | None, Decimal]  # final, calls only; idle is separate
    provisional: Decimal  # what the spans said at call time (calls that had a provisional rate)
    provisional_calls: int  # calls priced provisionally (the rest had no closed interval yet: unknown)
    estimated_intervals: int = 0  # intervals whose calls' shares are an estimate (ClosedInterval.estimate_reason)
    estimate_reasons: tuple[str, ...] = ()  # why, each reason once

    def estimate_note(self) -> str | None:
        """The line a report shows when some of the team shares are estimates (None: every one is exact)."""
        if not self.estimated_intervals:
            return None
        return (f"{self.estimated_intervals} of {self.intervals} interval{'' if self.intervals == 1 else 's'}: "
                f"{'; '.join(self.estimate_reasons)}")

    @property
    def utilisation(self) -> Decimal:
        return RATIO.divide(self.used, self.cost) if self.cost else Decimal(0)  # any thread's context

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_per_million_tokens(self) -> Decimal | None:
        """The whole pool cost (idle included) per million tokens served: the price actually achieved."""
        return canonical(RATIO.divide(RATIO.multiply(self.cost, MILLION), self.tokens)) if self.tokens else None


def summarise(intervals: Iterable[ClosedInterval]) -> PoolSummary:
    """One pool's closed intervals over a period (``read_intervals``, or the meter's ``close_due()`` filtered to one
    pool: it closes every pool's), summed.

    ValueError when there are none: a summary has no pool or owner to name then, and its $0 at 0 % utilisation
    would read as a pool that sat idle, not as a period nothing measured (``aicost report --pool`` and the dashboard
    check for none first and say "no figures"). ValueError too when they hold more than one pool: their sum,
    under the first one's name and owner, would be no pool's figures."""
    intervals = list(intervals)
    if not intervals:
        raise ValueError("summarise: intervals is empty (no closed interval of the pool in the period); it takes one "
                         "or more ClosedInterval, e.g. from read_intervals(); check for none first, as aicost report "
                         "--pool does")
    pools = sorted({i.pool for i in intervals})
    if len(pools) > 1:
        shown = ", ".join(repr(name) for name in pools[:5]) + (", ..." if len(pools) > 5 else "")
        raise ValueError(f"summarise: intervals hold more than one pool ({shown}); it takes one pool's "
                         "ClosedInterval, e.g. from read_intervals(store, pool, start, end), or a meter's close_due() "
                         "filtered to one pool ([i for i in closed if i.pool == name])")
    # Exact sums (MONEY, sum_usd), whatever the decimal context of the host thread that summarises
    by_team: dict[str | None, Decimal] = {}
    provisional = Decimal(0)
    provisional_calls = calls = input_tokens = output_tokens = 0
    for interval in intervals:
        for a in interval.allocations:
            by_team[a.team] = MONEY.add(by_team.get(a.team, Decimal(0)), a.final)
            calls += 1
            input_tokens += a.input_tokens
            output_tokens += a.output_tokens
            if a.provisional is not None:
                provisional = MONEY.add(provisional, a.provisional)
                provisional_calls += 1
    first = intervals[0]
    reasons = [reason for reason in (i.estimate_reason for i in intervals) if reason is not None]
    return PoolSummary(
        pool=first.pool, owner=first.owner, intervals=len(intervals),
        cost=sum_usd(i.cost for i in intervals), used=sum_usd(i.used for i in intervals),
        idle=sum_usd(i.idle for i in intervals), input_tokens=input_tokens,
        output_tokens=output_tokens, calls=calls,
        by_team={team: canonical(share) for team, share in sorted(by_team.items(),
                                                                   key=lambda kv: (kv[1].copy_negate(), kv[0] or ""))},
        provisional=canonical(provisional), provisional_calls=provisional_calls,
        estimated_intervals=len(reasons), estimate_reasons=tuple(dict.fromkeys(reasons)))


@dataclass(frozen=True)
class WhatIf:
    provider: str
    model: str
    cost: Decimal  # the period's measured input and output tokens at the model's catalog list prices
    pool_cost: Decimal
    utilisation: Decimal

    def sentence(self) -> str:
        from ..pricing.money import format_usd

        utilisation = percent(self.utilisation, quantum=Decimal(1))  # not format()'s rounding
        return (f"your pool cost ${format_usd(self.pool_cost)} at {utilisation:f} % utilisation; "
                f"the same tokens on {self.model} ({self.provider}) would have cost ${format_usd(self.cost)}")


def what_if(summary: PoolSummary, provider: str, model: str) -> WhatIf:
    """The same tokens on a hosted model the user picks. "Comparable" is the user's call (a model of similar
    quality for the task); what is compared is exact: the input and output tokens the pool actually served,
    priced at that model's catalog list prices (standard tier, no cache or batch discounts). An unknown model
    raises ConfigurationError rather than comparing with $0 (:func:`check_comparable`)."""
    cost = _list_price(provider, model, summary.input_tokens, summary.output_tokens)
    return WhatIf(provider, model, cost.total, summary.cost, summary.utilisation)  # type: ignore[arg-type]


def check_comparable(provider: str, model: str) -> None:
    """Raise ConfigurationError, as :func:`what_if` would, unless the catalog prices ``provider``/``model``'s input
    and output tokens: so ``aicost report --compare`` refuses a model it cannot price before reading the ledger,
    whether or not the pool has figures in the period."""
    _list_price(provider, model, 1, 1)


def _list_price(provider: str, model: str, input_tokens: int, output_tokens: int) -> "Cost":
    from .. import pricing
    from ..errors import ConfigurationError
    from ..usage import Usage

    # The vendor's list price: not this process's overrides or discounts (a provider-less rule for the pool's own
    # model would compare the pool with itself), which ``aicost report --compare`` in another process lacks anyway.
    price = pricing.list_price(provider, model)
    cost = None if price is None else price.cost(Usage(input_tokens=input_tokens, output_tokens=output_tokens))
    if cost is None or not cost.known:
        raise ConfigurationError(f"what-if model: the catalog has no price for {provider}/{model}; pick a "
                                 "catalog model (aicost prices --list shows them)")
    return cost
