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
