"""USD amounts as integer nanodollars inside the stores.

Stores must add and compare atomically, and Redis scripts run Lua, whose numbers are doubles: integers are
exact up to 2**53. Nanodollars (1e-9 USD) keep every per-token price in today's catalogs exact and still allow
limits up to about nine million USD per window. Amounts are rounded *up* (reservations and charges) and limits
*down*, so the stored figures are never below the exact Decimal costs nor above the configured limit: rounding can
only make a budget stricter than the truth, never looser.

Every operation here runs in the budget's own decimal context, never the thread's. A host application may lower
its precision (``prec=2`` turned a $0.0149 limit into $0.015: a looser budget) or trap ``Inexact`` (the guard
then failed inside and the call went ahead unguarded); neither may change what a budget allows, as neither
changes what pricing charges (``pricing.cost.MONEY``).
"""

from __future__ import annotations

import decimal
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from ..pricing.money import canonical, private_context

# Exact: the operations are shifts by a power of ten and one product of two finite amounts, which at the widest
# precision never round. The exponent limits are the widest too, so no amount a budget is given overflows.
_EXACT = private_context(decimal.MAX_PREC, traps=[decimal.InvalidOperation, decimal.Inexact], emax=decimal.MAX_EMAX,
                         emin=decimal.MIN_EMIN)

NANOS_PER_USD = 10**9
MAX_NANOS = 2**53 - 1  # largest integer a Lua number (double) represents exactly
MAX_LIMIT_USD = Decimal(MAX_NANOS).scaleb(-9, _EXACT)
MIN_LIMIT_USD = Decimal(1).scaleb(-9, _EXACT)


def to_nanos(usd: Decimal) -> int:
    return int(usd.scaleb(9, _EXACT).to_integral_value(ROUND_CEILING, _EXACT))


def limit_to_nanos(usd: Decimal) -> int:
    """Limits round *down*, so that rounding can only make a budget stricter."""
    return int(usd.scaleb(9, _EXACT).to_integral_value(ROUND_FLOOR, _EXACT))


def fraction_to_nanos(usd: Decimal, fraction: Decimal) -> int:
    """``fraction`` of ``usd`` (a threshold of a limit), rounded *up* like every amount."""
    return to_nanos(_EXACT.multiply(usd, fraction))


def ceil_times(count: int, factor: Decimal) -> int:
    """``count * factor`` rounded up to a whole number (an estimated token count inflated by a margin)."""
    return int(_EXACT.multiply(Decimal(count), factor).to_integral_value(ROUND_CEILING, _EXACT))


def to_usd(nanos: int) -> Decimal:
    return canonical(Decimal(nanos).scaleb(-9, _EXACT))  # 0.120000000 -> 0.12, as every amount aicost reports
