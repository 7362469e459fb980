"""Property tests of the money arithmetic: additive, never negative, exact in Decimal."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from aicost.pricing import resolve
from aicost.usage import Usage

counts = st.integers(min_value=0, max_value=50_000_000)


@st.composite
def consistent_usage(draw, max_input: int = 150_000) -> Usage:
    """A usage that obeys Usage's subset rules, below any long-context threshold."""
    cache_read = draw(st.integers(0, max_input // 3))
    cache_write = draw(st.integers(0, max_input // 3))
    audio_in = draw(st.integers(0, max_input // 6))
    image_in = draw(st.integers(0, max_input // 6))
    text_in = draw(st.integers(0, max_input // 6))
    reasoning = draw(st.integers(0, 100_000))
    audio_out = draw(st.integers(0, 10_000))
    image_out = draw(st.integers(0, 10_000))
    text_out = draw(st.integers(0, 100_000))
    return Usage(
        input_tokens=cache_read + cache_write + audio_in + image_in + text_in,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=draw(st.integers(0, cache_write)),
        input_audio_tokens=audio_in,
        input_image_tokens=image_in,
        output_tokens=reasoning + audio_out + image_out + text_out,
        reasoning_tokens=reasoning,
        output_audio_tokens=audio_out,
        output_image_tokens=image_out,
        web_search_requests=draw(st.integers(0, 20)),
    )


MODELS = [
    ("anthropic", "claude-sonnet-4-5-20250929"),  # tiered: the property inputs stay below 200K
    ("anthropic", "claude-3-5-haiku-20241022"),
    ("openai", "gpt-4o-realtime-preview"),
    ("openai", "gpt-5-mini"),
    ("openai", "gpt-image-1"),
]
PRICES = [resolve(p, m) for p, m in MODELS]


def billable(price, usage: Usage) -> Usage:
    """``usage`` as ``price`` can bill it. A model that lists no web search rate (gpt-4o-realtime-preview,
    gpt-image-1) has no price for searches: a call reporting some is cost-unknown (asserted here), and the
    arithmetic below is checked on the rest of it."""
    if usage.web_search_requests and "web_search" not in price.rates:
        cost = price.cost(usage)
        assert (cost.known, cost.total) == (False, None) and "web_search" in cost.unknown_reason
        return dataclasses.replace(usage, web_search_requests=0)
    return usage


@settings(max_examples=150, deadline=None)
@given(a=consistent_usage(max_input=90_000), b=consistent_usage(max_input=90_000), which=st.integers(0, len(MODELS) - 1))
def test_cost_is_additive_across_calls_and_token_classes(a, b, which):
    price = PRICES[which]
    a, b = billable(price, a), billable(price, b)
    whole = price.cost(a + b)
    assert whole.total == price.cost(a).total + price.cost(b).total
    for name, value in whole.parts.items():
        assert value == price.cost(a).parts.get(name, Decimal(0)) + price.cost(b).parts.get(name, Decimal(0))


@settings(max_examples=200, deadline=None)
@given(usage=consistent_usage(), which=st.integers(0, len(MODELS) - 1))
def test_cost_is_exact(usage, which):
    """Recompute with Fractions from the listed per-million rates: no rounding anywhere."""
    price = PRICES[which]
    usage = billable(price, usage)
    cost = price.cost(usage)
    assert sum(cost.parts.values(), Decimal(0)) == cost.total
    rates = price.rates

    def rate(name: str, *fallbacks: str) -> Fraction:
        for key in (name, *fallbacks):
            if key in rates:
                return Fraction(rates[key]) / 1_000_000
        return Fraction(0)

    u = usage
    expected = (
        (u.input_tokens - u.cache_read_tokens - u.cache_write_tokens - u.input_audio_tokens - u.input_image_tokens)
        * rate("input")
        + u.cache_read_tokens * rate("cache_read", "input")
        + (u.cache_write_tokens - u.cache_write_1h_tokens) * rate("cache_write", "input")
        + u.cache_write_1h_tokens * rate("cache_write_1h", "cache_write", "input")
        + u.input_audio_tokens * rate("input_audio", "input")
        + u.input_image_tokens * rate("input_image", "input")
        + (u.output_tokens - u.reasoning_tokens - u.output_audio_tokens - u.output_image_tokens) * rate("output")
        + u.reasoning_tokens * rate("reasoning", "output")
        + u.output_audio_tokens * rate("output_audio", "output")
        + u.output_image_tokens * rate("output_image", "output")
        + u.web_search_requests * (Fraction(rates["web_search"]) / 1000 if "web_search" in rates else 0)
    )
    assert Fraction(cost.total) == expected


@settings(max_examples=300, deadline=None)
@given(
    values=st.fixed_dictionaries({
        "input_tokens": counts, "output_tokens": counts, "cache_read_tokens": counts, "cache_write_tokens": counts,
        "cache_write_1h_tokens": counts, "reasoning_tokens": counts, "input_audio_tokens": counts,
        "output_audio_tokens": counts, "input_image_tokens": counts, "output_image_tokens": counts,
        "web_search_requests": st.integers(0, 1000),
    }),
    which=st.integers(0, len(MODELS) - 1),
)
def test_cost_is_never_negative_even_for_inconsistent_usage(values, which):
    """A reader bug may report subsets larger than their totals: the cost must still never go negative."""
    cost = PRICES[which].cost(billable(PRICES[which], Usage(**values)))
    assert cost.total >= 0
    assert all(v >= 0 for v in cost.parts.values())
    assert sum(cost.parts.values(), Decimal(0)) == cost.total


@settings(max_examples=100, deadline=None)
@given(extra=st.integers(1, 1_000_000), base=consistent_usage(max_input=150_000))
def test_more_tokens_never_cost_less(extra, base):
    price = PRICES[0]
    more = Usage(**{**{f: getattr(base, f) for f in base.__slots__ if f != "estimated"}, "output_tokens": base.output_tokens + extra})
    assert price.cost(more).total >= price.cost(base).total


def _single_class_usages(u: Usage) -> list[Usage]:
    """The same call split into one usage per token class (each a valid Usage on its own)."""
    text_in = u.input_tokens - u.cache_read_tokens - u.cache_write_tokens - u.input_audio_tokens - u.input_image_tokens
    text_out = u.output_tokens - u.reasoning_tokens - u.output_audio_tokens - u.output_image_tokens
    return [
        Usage(input_tokens=text_in),
        Usage(input_tokens=u.cache_read_tokens, cache_read_tokens=u.cache_read_tokens),
        Usage(input_tokens=u.cache_write_tokens - u.cache_write_1h_tokens,
              cache_write_tokens=u.cache_write_tokens - u.cache_write_1h_tokens),
        Usage(input_tokens=u.cache_write_1h_tokens, cache_write_tokens=u.cache_write_1h_tokens,
              cache_write_1h_tokens=u.cache_write_1h_tokens),
        Usage(input_tokens=u.input_audio_tokens, input_audio_tokens=u.input_audio_tokens),
        Usage(input_tokens=u.input_image_tokens, input_image_tokens=u.input_image_tokens),
        Usage(output_tokens=text_out),
        Usage(output_tokens=u.reasoning_tokens, reasoning_tokens=u.reasoning_tokens),
        Usage(output_tokens=u.output_audio_tokens, output_audio_tokens=u.output_audio_tokens),
        Usage(output_tokens=u.output_image_tokens, output_image_tokens=u.output_image_tokens),
        Usage(web_search_requests=u.web_search_requests),
    ]


@settings(max_examples=150, deadline=None)
@given(usage=consistent_usage(), which=st.integers(0, len(MODELS) - 1))
def test_cost_is_additive_across_token_classes(usage, which):
    """Pricing a call equals pricing each of its token classes alone and adding: no class is priced twice."""
    price = PRICES[which]
    usage = billable(price, usage)
    pieces = [price.cost(piece) for piece in _single_class_usages(usage)]
    assert price.cost(usage).total == sum((p.total for p in pieces), Decimal(0))
    for piece in pieces:
        assert len(piece.parts) <= 1  # a single-class usage touches exactly one part (or none when empty)
