"""Sharing one interval's pool cost among its calls, to the exact decimal.

Everything is counted in whole quanta (nano-dollars, :data:`~aicost.pools.config.QUANTUM`) and in integer
units. The interval's cost ``C`` splits into the part calls used, ``U``, and idle, ``C - U``, where
``U = floor(C x used fraction)`` (the fraction: measured by the engine, or units over a declared capacity;
see :mod:`aicost.pools.meter`). ``U`` is then shared in proportion to the calls' units by **cumulative
rounding**: with ``S_k`` the units of the first ``k`` calls and ``W`` all units, call ``k`` gets
``floor(U x S_k / W) - floor(U x S_(k-1) / W)`` quanta. Each call's share is its exact share rounded down or
up to a whole quantum (never a quantum away), a call with no units gets nothing, and the shares add up to
``U`` exactly, so ``U + idle == C`` in every interval.

One pass of integer arithmetic, no sort and no Decimal per call until each share is one: linear in the number
of calls (benchmarks/README.md, "pools"). The pool meter allocates every closed interval with :func:`split`.

Amounts are made exactly (``MONEY``, ``subtract_usd``), in money's one canonical form (``0.3``, never
``0.300000000`` or ``0E-9``: :func:`~aicost.pricing.money.canonical`), and fractions in money's ``RATIO`` context,
never in the thread's decimal context: the meter closes intervals on its own thread, whose context is a copy of
``decimal.DefaultContext`` (a host may have lowered its precision), or on the app's thread (``close_due()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate
from operator import sub
from typing import Sequence

from ..pricing.cost import MONEY
from ..pricing.money import RATIO, canonical, subtract_usd
from .config import QUANTUM

_NOTHING = Decimal(0)  # a share of no quanta, canonical


@dataclass(frozen=True)
class Split:
    shares: list[Decimal]  # one per call, in the order given; each canonical, as used and idle are
    used: Decimal  # sum(shares)
    idle: Decimal  # cost - used
    utilisation: Decimal  # used / cost (0 when the interval cost nothing)


def quanta(cost: Decimal) -> int:
    """``cost`` as whole quanta; ValueError if it is not a whole number of them."""
    whole = int(MONEY.divide(cost, QUANTUM))
    if MONEY.multiply(whole, QUANTUM) != cost:
        raise ValueError(f"interval cost {cost} is not a whole number of quanta ({QUANTUM})")
    return whole


def used_quanta(total: int, part: Decimal, whole: Decimal) -> int:
    """``floor(total x min(1, part / whole))``, exactly (integers, no rounded division): the quanta calls used of
    an interval's ``total`` when they used ``part`` of ``whole``."""
    if part <= 0 or whole <= 0:
        return 0
    if part >= whole:
        return total
    (p, w), _ = as_ints([part, whole])
    return total * p // w


def as_ints(weights: Sequence[Decimal]) -> tuple[list[int], int]:
    """Exact integer weights and the power of ten they were scaled by (``weights[i] == ints[i] / 10**places``)."""
    places = max((-w.as_tuple().exponent for w in weights if w.as_tuple().exponent < 0), default=0)  # type: ignore[operator]
    return [int(RATIO.scaleb(w, places)) for w in weights], places


def split(cost: Decimal, units: Sequence[int], used: tuple[Decimal, Decimal] | None = None) -> Split:
    """``cost`` (whole quanta) shared among calls of integer ``units`` (>= 0; Decimal weights become integers
    with :func:`as_ints`), idle included. ``used``: the fraction of the interval calls used, as ``(part, whole)``
    (capped at 1: the engine's busy seconds of the interval's, or the calls' units of a declared capacity);
    None: all of it. Without units nothing is used: time no recorded call accounts for is idle, the owner's.

    Changed from ``split(cost, weights, capacity=None)`` (Decimal weights, a capacity in the same units): that
    call is ``split(cost, as_ints(weights)[0], None if capacity is None else (sum(weights), capacity))``."""
    total = quanta(cost)
    whole = sum(units)
    if not whole:
        taken = 0
    elif used is None:
        taken = total
    else:
        taken = used_quanta(total, *used)
    q = QUANTUM
    if taken:
        bounds = [taken * s // whole for s in accumulate(units)]
        # n quanta are n x 10^-9 exactly, canonical as made unless n ends in 0 (about one share in ten, and a share
        # of nothing): only those pay for canonical() (~2 k instructions), not every call of a million
        shares = [MONEY.multiply(q, n) if n % 10 else canonical(MONEY.multiply(q, n))
                  for n in map(sub, bounds, [0, *bounds])]
    else:
        shares = [_NOTHING] * len(units)
    used_usd = canonical(MONEY.multiply(q, taken))
    return Split(shares, used_usd, canonical(subtract_usd(cost, used_usd)),
                 RATIO.divide(used_usd, cost) if cost else Decimal(0))
