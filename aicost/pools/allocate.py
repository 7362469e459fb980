"""Sharing one interval's pool cost among its calls, to the exact decimal.

The interval's cost ``C`` (already whole quanta) splits into the part calls used, ``U``, and idle, ``C - U``.
``U`` is ``C x min(1, units / capacity)`` rounded down to a quantum (all of ``C`` when no capacity is declared
and any call was made). Each call's share of ``U`` is proportional to its units: every call first gets the
whole quanta of its exact share, and the quanta left over go one each to the calls with the largest
remainders (ties: the earlier call). So ``sum(shares) == U`` and ``U + idle == C`` exactly, always.

Integer arithmetic throughout: the weights are scaled to integers once, so allocating a million calls is a
few integer multiplications and one partial sort per call (benchmarks/README.md).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Sequence

from .config import QUANTUM


@dataclass(frozen=True)
class Split:
    shares: list[Decimal]  # one per call, in the order given
    used: Decimal  # sum(shares)
    idle: Decimal  # cost - used
    utilisation: Decimal  # used / cost (0 when the interval cost nothing)


def _as_ints(weights: Sequence[Decimal]) -> list[int]:
    """Exact integer weights: every Decimal scaled by the same power of ten."""
    places = max((-w.as_tuple().exponent for w in weights if w.as_tuple().exponent < 0), default=0)  # type: ignore[operator]
    if places == 0:
        return [int(w) for w in weights]
    scale = Decimal(10) ** places
    return [int(w * scale) for w in weights]


def split(cost: Decimal, weights: Sequence[Decimal], capacity: Decimal | None = None) -> Split:
    """``cost`` (whole quanta) shared among calls of the given ``weights`` (>= 0), idle included."""
    total_quanta = int(cost / QUANTUM)
    if total_quanta * QUANTUM != cost:
        raise ValueError(f"interval cost {cost} is not a whole number of quanta ({QUANTUM})")
    units = sum(weights, Decimal(0))
    if units <= 0:
        used_quanta = 0
    elif capacity is None or units >= capacity:
        used_quanta = total_quanta
    else:
        used_quanta = int((Decimal(total_quanta) * units / capacity).to_integral_value(rounding=ROUND_FLOOR))
    ints = _as_ints(list(weights)) if used_quanta else []
    whole = sum(ints)
    quanta = [0] * len(weights)
    if used_quanta and whole:
        remainders = []
        given = 0
        for i, w in enumerate(ints):
            q, r = divmod(used_quanta * w, whole)
            quanta[i] = q
            given += q
            remainders.append(r)
        left = used_quanta - given  # < len(weights)
        if left:
            for i in heapq.nlargest(left, range(len(remainders)), key=lambda i: (remainders[i], -i)):
                quanta[i] += 1
    elif used_quanta:  # calls with zero weight only: nothing measured, all idle
        used_quanta = 0
    shares = [QUANTUM * q for q in quanta]
    used = QUANTUM * used_quanta
    idle = cost - used
    return Split(shares, used, idle, (used / cost) if cost else Decimal(0))
