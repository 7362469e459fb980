"""One written form of money everywhere (issue 13, item 6): no trailing zeros, never exponent notation, whatever
path produced the amount and whatever decimal precision the host thread runs with. ``canonical`` and
``format_usd`` are the only writers; each surface that shows an amount is checked here."""

from __future__ import annotations

import datetime
import decimal
import io
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicost import cli, semconv
from aicost.pricing import Cost, canonical, format_usd, price_call, sum_usd
from aicost.usage import Usage
from pricing_helpers import _fresh_pricing_state  # noqa: F401


def _is_canonical_text(text: str) -> bool:
    return "E" not in text.upper() and not (("." in text) and (text.endswith("0") or text.endswith(".")))


def _is_canonical(value: Decimal) -> bool:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    negative_zero = value.is_zero() and value.is_signed()
    return exponent <= 0 and (exponent == 0 or value.as_tuple().digits[-1] != 0) and not negative_zero


_amounts = st.decimals(allow_nan=False, allow_infinity=False, min_value=Decimal("-1E+12"), max_value=Decimal("1E+12"),
                       places=None).filter(lambda d: d.is_zero() or -40 <= d.adjusted() <= 12)


@settings(max_examples=400, deadline=None)
@given(_amounts)
def test_canonical_keeps_the_value_and_drops_trailing_zeros_and_exponents(value: Decimal) -> None:
    result = canonical(value)
    assert result == value  # the same amount, exactly
    assert _is_canonical(result)
    text = format_usd(value)
    assert Decimal(text) == value  # round-trips exactly
    assert _is_canonical_text(text), text
    assert canonical(Decimal(text)) == result and format_usd(result) == text  # one form per amount


@pytest.mark.parametrize("raw, text", [
    ("0.8400000", "0.84"), ("1E+1", "10"), ("100", "100"), ("0E-7", "0"), ("-0", "0"), ("0.00003060", "0.0000306"),
    ("3.06E-8", "0.0000000306"), ("1.000", "1"), ("12345678901234567890.123456789012345678900", 
                                                   "12345678901234567890.1234567890123456789"),
])
def test_canonical_examples(raw: str, text: str) -> None:
    assert format_usd(Decimal(raw)) == text
    assert canonical(Decimal(raw)) == Decimal(text) and _is_canonical(canonical(Decimal(raw)))


def test_the_hosts_decimal_precision_never_rounds_a_written_amount() -> None:
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        assert format_usd(Decimal("0.18518505")) == "0.18518505"
        assert sum_usd([Decimal("0.18518505"), Decimal("1000")]) == Decimal("1000.18518505")


def test_price_call_returns_canonical_amounts() -> None:
    # gpt-4o-mini: $0.15 / $0.60 per 1M tokens; 1,000 and 100 tokens made 0.00015000 and 0.0000600 before.
    cost = price_call("openai", "gpt-4o-mini", Usage(input_tokens=1000, output_tokens=100))
    assert cost.total == Decimal("0.00021")
    assert _is_canonical(cost.total) and all(_is_canonical(v) for v in cost.parts.values()), cost
    assert repr(cost.parts["input"]) == "Decimal('0.00015')"
    long = price_call("anthropic", "claude-sonnet-4-5-20250929", Usage(input_tokens=140_000, output_tokens=2_000))
    assert repr(long.total) == "Decimal('0.45')"  # 0.42 + 0.03: not Decimal('0.450000')


_rates = st.decimals(allow_nan=False, allow_infinity=False, min_value=Decimal("0"), max_value=Decimal("1000"),
                     places=None).filter(lambda d: d.is_zero() or (-8 <= d.adjusted() <= 3
                                                                   and len(d.as_tuple().digits) <= 40))
# (Real rates have a few digits; a 61-digit one cannot be held exactly in aicost's 60-digit money context, which
# refuses it with decimal.Inexact when the price is built.)


@settings(max_examples=400, deadline=None)
@given(_rates, _rates, st.integers(0, 10**7), st.integers(0, 10**6))
def test_every_priced_amount_is_canonical_and_exact(input_rate: Decimal, output_rate: Decimal, tokens_in: int,
                                                    tokens_out: int) -> None:
    # A plain call's parts skip the Decimal normalisation when an integer test shows the product has no trailing
    # zero (``cost._digits``): rates written with trailing zeros ("0.80"), exponents ("8E+1") and products that
    # end in 0 (5 x 2) must still come out canonical and exact.
    from aicost.pricing.cost import ModelPrice

    price = ModelPrice(provider="p", model="m", rates={"input": input_rate, "output": output_rate})
    cost = price.cost(Usage(input_tokens=tokens_in, output_tokens=tokens_out))
    with decimal.localcontext(decimal.Context(prec=100, traps=[decimal.Inexact])):  # exact, as aicost's money
        expected = {"input": input_rate * tokens_in / 10**6, "output": output_rate * tokens_out / 10**6}
        assert cost.total == sum(cost.parts.values(), Decimal(0))
    assert dict(cost.parts) == {k: v for k, v in expected.items() if k in cost.parts}
    assert _is_canonical(cost.total) and all(_is_canonical(v) for v in cost.parts.values()), cost
    assert format_usd(cost.total) == format(cost.total, "f")


def test_a_hand_built_cost_is_canonical_too() -> None:
    cost = Cost(known=True, total=Decimal("0.8400000"), parts={"input": Decimal("0.8400000")})
    assert repr(cost.total) == "Decimal('0.84')" and repr(cost.parts["input"]) == "Decimal('0.84')"


def test_cost_span_attribute_is_exact_under_a_low_host_precision(instrumented, openai_client, replay_server) -> None:
    from vendor_server import openai_chat_reply

    replay_server.enqueue(openai_chat_reply("gpt-4o-mini-2024-07-18", prompt_tokens=1_234_567, completion_tokens=3))
    with decimal.localcontext() as ctx:
        ctx.prec = 3  # the host's own business: it must not round aicost's money
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    (span,) = instrumented.cost_spans()
    assert span.attributes[semconv.AICOST_COST_TOTAL] == "0.18518685"  # 1234567 x 0.15 + 3 x 0.60, per 1M


def test_rollup_and_unit_totals_are_canonical(span_exporter) -> None:
    from aicost.attribution import feature

    from attribution_helpers import call

    with feature("canon") as unit:
        call(cost="0.10")
        call(cost="0.20")
        call(cost="0.000150")
    assert repr(unit.cost_usd) == "Decimal('0.30015')"
    (span,) = [s for s in span_exporter.get_finished_spans() if s.name == "aicost.feature canon"]
    assert span.attributes[semconv.AICOST_ROLLUP_PREFIX + "cost.total_usd"] == "0.30015"


def test_metric_cost_totals_are_canonical() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from aicost import metrics

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    metrics.configure(provider)
    try:
        instruments = metrics._instruments()
        instruments.add_cost({"team": "canon"}, Decimal("0.10"))
        instruments.add_cost({"team": "canon"}, Decimal("0.20"))
        totals = instruments.cost_totals()
    finally:
        provider.shutdown()
    assert repr(totals[(("team", "canon"),)]) == "Decimal('0.3')"


def test_cli_price_table_amounts_are_canonical() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["prices", "gpt-4o"], out=out, err=err) == 0
    amounts = [line.split()[-1] for line in out.getvalue().splitlines()[1:] if line.startswith("  ") and
               line.split()[-1][:1].isdigit()]
    assert amounts and all(_is_canonical_text(a) for a in amounts), amounts


def test_budget_amounts_in_results_and_messages_are_canonical() -> None:
    from aicost.budget.errors import BudgetExceeded
    from aicost.budget.money import to_usd

    assert repr(to_usd(100_000_000)) == "Decimal('0.1')"  # was Decimal('0.10')
    error = BudgetExceeded(budget="b", scope="global", scope_value=None, limit_usd=Decimal("0.000001"),
                           spent_usd=Decimal("1.5E-7"), reserved_usd=Decimal("0E-9"),
                           requested_usd=Decimal("0.0000010000"),
                           resets_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
    message = str(error)
    assert "E-" not in message and "$0.00000015" in message and "$0.000001," in message and "$0," in message


def test_cache_saved_usd_attribute_is_canonical() -> None:
    from aicost.cache.telemetry import record_lookup

    class Span:
        attributes: dict = {}

        def set_attributes(self, attrs: dict) -> None:
            self.attributes = attrs

    span = Span()
    record_lookup(span, name="c", outcome="hit", tier="exact", lookup_s=0.0, saved_usd=Decimal("1.5E-7"),
                  verifier_cost_usd=Decimal("0.000100"))
    assert span.attributes[semconv.AICOST_CACHE_SAVED_USD] == "0.00000015"
    assert span.attributes[semconv.AICOST_CACHE_VERIFIER_COST_USD] == "0.0001"


def test_budget_remaining_is_exact_and_canonical_under_a_low_host_precision() -> None:
    from aicost.budget.guard import BudgetStatus

    status = BudgetStatus(budget="b", scope_value=None, window="day",
                          resets_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
                          limit_usd=Decimal("10.00"), spent_usd=Decimal("0.123456"), reserved_usd=Decimal("0.0100"))
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        assert repr(status.remaining_usd) == "Decimal('9.866544')"
