"""USD amounts as integer nanodollars inside the stores.

Stores must add and compare atomically, and Redis scripts run Lua, whose numbers are doubles: integers are
exact up to 2**53. Nanodollars (1e-9 USD) keep every per-token price in today's catalogs exact and still allow
limits up to about nine million USD per window. Amounts are rounded *up* (reservations and charges) and limits
*down*, so the stored figures are never below the exact Decimal costs nor above the configured limit: rounding can
only make a budget stricter than the truth, never looser.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from ..pricing.money import canonical

NANOS_PER_USD = 10**9
MAX_NANOS = 2**53 - 1  # largest integer a Lua number (double) represents exactly
MAX_LIMIT_USD = Decimal(MAX_NANOS) / NANOS_PER_USD
MIN_LIMIT_USD = Decimal(1).scaleb(-9)


def to_nanos(usd: Decimal) -> int:
    return int((usd * NANOS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def limit_to_nanos(usd: Decimal) -> int:
    """Limits round *down*, so that rounding can only make a budget stricter."""
    return int((usd * NANOS_PER_USD).to_integral_value(rounding=ROUND_FLOOR))


def to_usd(nanos: int) -> Decimal:
    return canonical(Decimal(nanos).scaleb(-9))  # 0.120000000 -> 0.12, as every amount aicost reports
