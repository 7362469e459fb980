"""Money as people read it on a page or in a chat message (exact figures stay Decimal elsewhere)."""

from __future__ import annotations

from decimal import Decimal


def usd(value: Decimal | None) -> str:
    """``$1,234``, ``$12.34``, ``$0.4015``; ``-`` for no value."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"${value.quantize(Decimal('1')):,}"
    if abs(value) >= 1:
        return f"${value.quantize(Decimal('0.01')):,}"
    return f"${value.quantize(Decimal('0.0001')):f}"


# Calls whose price is unknown, as `aicost report` names them: left out of an amount, never counted as $0.
def unknown_calls(calls: int) -> str:
    """``1,234 calls with an unknown price, not in the total``."""
    return f"{calls:,} calls with an unknown price, not in the total"


def plus_unknown(calls: int) -> str:
    """`` + 12 calls of unknown price`` after an amount that leaves them out ("" without any)."""
    return f" + {calls:,} calls of unknown price" if calls else ""
