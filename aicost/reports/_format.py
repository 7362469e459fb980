"""Money as people read it on a page or in a chat message (exact figures stay Decimal elsewhere)."""

from __future__ import annotations

from decimal import Decimal

from ..pricing.money import RATIO

_DOLLAR, _CENT, _BASIS_POINT = Decimal("1"), Decimal("0.01"), Decimal("0.0001")


def usd(value: Decimal | None) -> str:
    """``$1,234``, ``$12.34``, ``$0.4015``; ``-`` for no value. Rounded in money's RATIO context: in the calling
    thread's, a host's 4 digits could not quantize $12,345 to the dollar (InvalidOperation)."""
    if value is None:
        return "-"
    size = value.copy_abs()
    if size >= 100:
        return f"${RATIO.quantize(value, _DOLLAR):,}"
    if size >= 1:
        return f"${RATIO.quantize(value, _CENT):,}"
    return f"${RATIO.quantize(value, _BASIS_POINT):f}"


def usd_column(value: Decimal | None) -> str:
    """Dollars in a table column headed "USD": cents from a dollar up (1,234.50), four places below (0.0042);
    ``-`` for no value. Rounded in RATIO's context, as ``usd``."""
    if value is None:
        return "-"
    return f"{RATIO.quantize(value, _CENT if value.copy_abs() >= 1 else _BASIS_POINT):,}"


# Calls whose price is unknown, as `aicost report` names them: left out of an amount, never counted as $0.
def unknown_calls(calls: int) -> str:
    """``1,234 calls with an unknown price, not in the total``."""
    return f"{calls:,} calls with an unknown price, not in the total"


def plus_unknown(calls: int) -> str:
    """`` + 12 calls of unknown price`` after an amount that leaves them out ("" without any)."""
    return f" + {calls:,} calls of unknown price" if calls else ""
