"""Shared fixtures for the pricing tests: every test starts from catalog prices only."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aicost.pricing import clear_overrides, engine, use_bundled_catalog

M = Decimal(1_000_000)


def per_m(tokens: int, usd_per_million: str) -> Decimal:
    """Expected cost written the way price lists are: tokens x USD per million."""
    return Decimal(tokens) * Decimal(usd_per_million) / M


@pytest.fixture(autouse=True)
def _fresh_pricing_state():
    clear_overrides()
    use_bundled_catalog()
    engine.reset_unknown_models()
    yield
    clear_overrides()
    use_bundled_catalog()
    engine.reset_unknown_models()
