"""Every billing dimension, service tiers, history, name resolution, unknown models, thread safety."""

from __future__ import annotations

import decimal
import enum
import logging
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from aicost.pricing import Cost, price_call, resolve, unknown_models, with_sub_inferences
from aicost.pricing import engine, names
from aicost.pricing.catalog import bundled
from aicost.usage import Usage
from pricing_helpers import _fresh_pricing_state, per_m  # noqa: F401

UTC = timezone.utc


def assert_consistent(cost: Cost) -> None:
    assert cost.known
    assert sum(cost.parts.values(), Decimal(0)) == cost.total
    assert all(isinstance(v, Decimal) and v >= 0 for v in cost.parts.values())


# --- Anthropic: cache read + cache write (5m and 1h) + long context ------------------------------------


def test_anthropic_cache_read_write_below_long_context_threshold():
    usage = Usage(input_tokens=100_000, cache_read_tokens=50_000, cache_write_tokens=20_000,
                  cache_write_1h_tokens=5_000, output_tokens=1_000)
    cost = price_call("anthropic", "claude-sonnet-4-5-20250929", usage)
    assert_consistent(cost)
    assert cost.parts == {
        "input": per_m(30_000, "3"),
        "cache_read": per_m(50_000, "0.3"),
        "cache_write": per_m(15_000, "3.75"),
        "cache_write_1h": per_m(5_000, "6"),
        "output": per_m(1_000, "15"),
    }
    assert cost.total == Decimal("0.20625")


def test_anthropic_long_context_reprices_the_whole_request():
    # 250K input tokens (cache included) > 200K: every token at the long-context rate, not just the excess.
    usage = Usage(input_tokens=250_000, cache_read_tokens=150_000, cache_write_tokens=40_000,
                  cache_write_1h_tokens=10_000, output_tokens=2_000)
    cost = price_call("anthropic", "claude-sonnet-4-5-20250929", usage)
    assert_consistent(cost)
    assert cost.parts == {
        "input": per_m(60_000, "6"),
        "cache_read": per_m(150_000, "0.6"),
        "cache_write": per_m(30_000, "7.5"),
        "cache_write_1h": per_m(10_000, "12"),
        "output": per_m(2_000, "22.5"),
    }
    assert cost.total == Decimal("0.84")


def test_long_context_threshold_is_exclusive():
    at = Usage(input_tokens=200_000, output_tokens=0)
    above = Usage(input_tokens=200_001, output_tokens=0)
    assert price_call("anthropic", "claude-sonnet-4-5", at).total == per_m(200_000, "3")
    assert price_call("anthropic", "claude-sonnet-4-5", above).total == per_m(200_001, "6")


def test_gemini_long_context_tier():
    cost = price_call("gcp.gemini", "gemini-2.5-pro", Usage(input_tokens=300_000, output_tokens=1_000))
    assert cost.total == per_m(300_000, "2.5") + per_m(1_000, "15")


# --- OpenAI reasoning, audio, image, web search, per-request fees ---------------------------------------


def test_reasoning_heavy_openai_call_is_billed_as_output_once():
    usage = Usage(input_tokens=2_000, cache_read_tokens=1_500, output_tokens=30_000, reasoning_tokens=28_000)
    cost = price_call("openai", "gpt-5-2025-08-07", usage)
    assert_consistent(cost)
    assert cost.parts == {
        "input": per_m(500, "1.25"),
        "cache_read": per_m(1_500, "0.125"),
        "output": per_m(2_000, "10"),
        "reasoning": per_m(28_000, "10"),
    }
    # Reasoning is inside output_tokens: never priced on top of it.
    assert cost.total == per_m(500, "1.25") + per_m(1_500, "0.125") + per_m(30_000, "10")


def test_audio_tokens_at_audio_rates():
    usage = Usage(input_tokens=1_000, input_audio_tokens=600, output_tokens=500, output_audio_tokens=400)
    cost = price_call("openai", "gpt-4o-realtime-preview-2024-12-17", usage)
    assert_consistent(cost)
    assert cost.parts == {
        "input": per_m(400, "5"),
        "input_audio": per_m(600, "40"),
        "output": per_m(100, "20"),
        "output_audio": per_m(400, "80"),
    }


def test_image_input_tokens_at_image_rate():
    cost = price_call("openai", "gpt-image-1", Usage(input_tokens=1_500, input_image_tokens=1_000, output_tokens=0))
    assert cost.parts == {"input": per_m(500, "5"), "input_image": per_m(1_000, "10")}


def test_cached_image_tokens_at_the_cached_image_rate():
    """gpt-image-1 lists cached text input at $1.25 and cached image input at $2.50 per million: a cached image
    token priced as a plain cache read would be billed at half its price."""
    usage = Usage(input_tokens=1_000, cache_read_tokens=300, cache_read_image_tokens=200, input_image_tokens=500,
                  output_tokens=100, output_image_tokens=100)
    cost = price_call("openai", "gpt-image-1", usage)
    assert_consistent(cost)
    assert cost.parts == {
        "input": per_m(200, "5"),
        "cache_read": per_m(100, "1.25"),
        "cache_read_image": per_m(200, "2.5"),
        "input_image": per_m(500, "10"),
        "output_image": per_m(100, "40"),
    }
    batch = price_call("openai", "gpt-image-1", usage, service_tier="batch")
    assert batch.parts["cache_read_image"] == per_m(200, "1.25")


def test_realtime_cached_text_audio_and_image_tokens_each_at_their_rate():
    """gpt-realtime-mini lists cached text at $0.06, cached audio at $0.30 and cached image at $0.08 per million."""
    usage = Usage(input_tokens=10_000, cache_read_tokens=6_000, cache_read_audio_tokens=4_000,
                  cache_read_image_tokens=500, input_audio_tokens=2_000, input_image_tokens=100,
                  output_tokens=1_000, output_audio_tokens=800)
    cost = price_call("openai", "gpt-realtime-mini", usage)
    assert_consistent(cost)
    assert cost.parts == {
        "input": per_m(1_900, "0.6"),
        "cache_read": per_m(1_500, "0.06"),
        "cache_read_image": per_m(500, "0.08"),
        "cache_read_audio": per_m(4_000, "0.3"),
        "input_audio": per_m(2_000, "10"),
        "input_image": per_m(100, "0.8"),
        "output": per_m(200, "2.4"),
        "output_audio": per_m(800, "20"),
    }


def test_cached_image_tokens_without_their_own_rate_are_cache_reads():
    """A model that lists no cached-image rate bills them as what it does list: its cache-read rate."""
    usage = Usage(input_tokens=1_000, cache_read_tokens=400, cache_read_image_tokens=400, output_tokens=10)
    cost = price_call("openai", "gpt-4o-2024-08-06", usage)
    assert cost.parts == {"input": per_m(600, "2.5"), "cache_read_image": per_m(400, "1.25"),
                          "output": per_m(10, "10")}


def test_cached_image_tokens_beyond_the_cache_reads_are_ignored_not_double_billed():
    with pytest.raises(ValueError, match="cache_read_image_tokens \\+ cache_read_audio_tokens exceeds"):
        Usage(input_tokens=10, cache_read_tokens=1, cache_read_image_tokens=2).validate()
    usage = Usage(input_tokens=10, cache_read_tokens=1, cache_read_image_tokens=2)
    cost = resolve("openai", "gpt-image-1").cost(usage)  # the rates' own arithmetic clamps, never bills twice
    assert cost.parts == {"input": per_m(9, "5"), "cache_read_image": per_m(1, "2.5")}
    assert price_call("openai", "gpt-image-1", usage).known is False  # but such usage is never priced as exact


def test_speech_billed_per_input_character():
    """tts-1 / tts-1-hd: $15 / $30 per million characters of input, no tokens."""
    assert price_call("openai", "tts-1", Usage(input_characters=1_000)).parts == {"input_characters": Decimal("0.015")}
    assert price_call("openai", "tts-1-hd", Usage(input_characters=1_000)).total == Decimal("0.03")


def test_characters_at_a_model_not_billed_per_character_are_unknown_not_free():
    cost = price_call("openai", "gpt-4o-mini-tts", Usage(input_characters=1_000))
    assert cost.known is False and cost.total is None


def test_tokens_of_a_class_with_no_rate_make_the_cost_unknown_not_free(caplog):
    """An embedding model lists an input rate only, and so may an override: output tokens reported for it have
    no price, so the call's cost is unknown, naming the missing rate; never a $0 output part marked known."""
    embed = price_call("openai", "text-embedding-3-small", Usage(input_tokens=1_000, output_tokens=5))
    assert (embed.known, embed.total, embed.parts) == (False, None, {})
    assert "no output rate" in embed.unknown_reason and "text-embedding-3-small" in embed.unknown_reason
    # An embedding call (no output) stays priced and exact.
    assert price_call("openai", "text-embedding-3-small", Usage(input_tokens=1_000)).total == per_m(1_000, "0.02")
    engine.set_price("acme-embed", input="0.1")
    with caplog.at_level(logging.WARNING, logger="aicost"):
        for _ in range(2):
            cost = price_call("acme", "acme-embed", Usage(input_tokens=10, output_tokens=3, reasoning_tokens=3))
    assert cost.known is False and "no reasoning or output rate" in cost.unknown_reason  # its fallback is gone too
    assert [r.getMessage() for r in caplog.records].count(
        f"aicost: {cost.unknown_reason}; such calls are marked cost-unknown, not priced at $0") == 1
    # An output-only override: input tokens, and cache reads (billed as input without their own rate), unknown.
    engine.set_price("acme-gen", output="2")
    cached = price_call("acme", "acme-gen", Usage(input_tokens=10, cache_read_tokens=10, output_tokens=1))
    assert cached.known is False and "no cache_read or input rate" in cached.unknown_reason
    assert price_call("acme", "acme-gen", Usage(output_tokens=1_000)).total == per_m(1_000, "2")
    # The same on a long-context band and on a service tier: every band has the rates its base has.
    engine.set_price("acme-long", input="1", long_context=[{"above": 100, "input": "2"}])
    assert price_call("acme", "acme-long", Usage(input_tokens=200, output_tokens=1)).known is False
    assert price_call("acme", "acme-long", Usage(input_tokens=200)).total == per_m(200, "2")
    batch = price_call("azure.ai.openai", "text-embedding-3-small", Usage(input_tokens=10, output_tokens=1),
                       service_tier="batch")
    assert batch.known is False and batch.service_tier == "batch"


def test_web_search_requests_per_request_fee():
    usage = Usage(input_tokens=1_000, output_tokens=100, web_search_requests=3)
    cost = price_call("anthropic", "claude-sonnet-4-5", usage)
    assert cost.parts["web_search"] == Decimal("0.03")  # $10 per 1,000 searches
    assert_consistent(cost)


def test_web_searches_at_a_model_with_no_web_search_rate_are_unknown_not_free():
    """Most OpenAI models list no web search rate (gpt-4.1-nano): searches a call reports there have no price, so
    its cost is unknown, naming the rate; never searches left out of a total that looks exact."""
    usage = Usage(input_tokens=1_000, output_tokens=100, web_search_requests=2)
    assert "web_search" not in resolve("openai", "gpt-4.1-nano").rates
    for tool in (None, "web_search_preview"):
        nano = price_call("openai", "gpt-4.1-nano", usage, web_search_tool=tool)
        assert (nano.known, nano.total, nano.parts) == (False, None, {})
        assert "no web_search rate" in nano.unknown_reason and "web searches" in nano.unknown_reason
    assert price_call("openai", "gpt-4.1-nano", Usage(input_tokens=1_000, output_tokens=100)).known  # no searches
    engine.set_price("acme-search", input="1", output="1")
    assert price_call("acme", "acme-search", usage).known is False
    engine.set_price("acme-free-search", input="1", output="1", web_search="0")  # searches free, as written
    assert price_call("acme", "acme-free-search", usage).total == per_m(1_100, "1")
    # A model the vendor gives away (no rates at all): its tokens are free, but searches were never priced.
    assert price_call("openai", "omni-moderation-latest", Usage(web_search_requests=1)).known is False


def test_hosted_tools_billed_per_call_without_a_rate_make_the_cost_unknown():
    """File search and code interpreter are billed per call / session at rates no price lists: a call that ran one
    is cost-unknown, naming them, whatever its token rates (a summed call keeps them), never its tokens alone."""
    usage = Usage(input_tokens=1_000, output_tokens=100, hosted_tools=("file_search",))
    cost = price_call("openai", "gpt-4.1", usage)
    assert (cost.known, cost.total, cost.parts) == (False, None, {})
    assert "(file_search) on openai" in cost.unknown_reason
    engine.set_price("acme-tools", input="1", output="1", web_search="10")
    assert price_call("acme", "acme-tools", usage).known is False
    both = usage + Usage(output_tokens=1, hosted_tools=("code_interpreter", "file_search"))
    assert both.hosted_tools == ("file_search", "code_interpreter") and both.output_tokens == 101
    assert price_call("openai", "gpt-4.1", Usage(input_tokens=1_000, output_tokens=100)).known


def test_per_request_fee_from_override():
    engine.set_price("router-model", input="1", output="2", request="5")  # $5 per 1,000 requests
    cost = price_call("openai", "router-model", Usage(input_tokens=1_000, output_tokens=1_000))
    assert cost.parts["request"] == Decimal("0.005")
    assert cost.total == Decimal("0.001") + Decimal("0.002") + Decimal("0.005")


def test_missing_rates_fall_back_to_what_the_vendor_bills():
    # gpt-3.5-turbo has no cache-read rate: cached tokens are billed as plain input, never free.
    cost = price_call("openai", "gpt-3.5-turbo", Usage(input_tokens=1_000, cache_read_tokens=400, output_tokens=0))
    assert cost.total == per_m(1_000, "0.5")
    # Anthropic 1h writes on a model listing only 5m writes are billed at the 5m write rate (the dearer known).
    price = resolve("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert "cache_write_1h" not in price.rates
    cost = price.cost(Usage(input_tokens=1_000, cache_write_tokens=1_000, cache_write_1h_tokens=1_000))
    assert cost.parts == {"cache_write_1h": per_m(1_000, "3.75")}


# --- service tiers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw,normalised", [
    ("default", "standard"), ("auto", "standard"), ("standard", "standard"), ("DEFAULT", "standard"),
    ("flex", "flex"), ("priority", "priority"), ("batch", "batch"), ("scale", "scale"), (None, None), ("", None),
])
def test_service_tier_normalisation(raw, normalised):
    assert names.normalise_tier(raw) == normalised


def test_standard_tier_words_price_alike():
    usage = Usage(input_tokens=10_000, output_tokens=1_000)
    totals = {price_call("openai", "gpt-4o", usage, service_tier=t).total for t in (None, "default", "auto", "scale")}
    assert totals == {per_m(10_000, "2.5") + per_m(1_000, "10")}
    assert price_call("openai", "gpt-4o", usage, service_tier="default").service_tier == "standard"


def test_batch_tier_openai_and_anthropic():
    usage = Usage(input_tokens=10_000, output_tokens=1_000)
    now = price_call("openai", "gpt-4o", usage, service_tier="batch")
    assert now.total == per_m(10_000, "1.25") + per_m(1_000, "5")
    assert now.service_tier == "batch"
    # Before the catalog lists explicit batch rates, the vendor-wide 50 % Batch API discount applies.
    past = price_call("openai", "gpt-4o", usage, service_tier="batch", at=datetime(2025, 1, 15, tzinfo=UTC))
    assert past.total == now.total
    claude = price_call("anthropic", "claude-3-5-haiku-20241022", usage, service_tier="batch")
    assert claude.total == per_m(10_000, "0.4") + per_m(1_000, "2")


@pytest.mark.parametrize("model", ["amazon.nova-pro-v1:0", "us.anthropic.claude-3-5-haiku-20241022-v1:0"])
def test_bedrock_batch_inference_is_cost_unknown_never_the_on_demand_rate(model):
    """AWS bills batch inference at per-model rates (for the models that offer it) that the catalog does not list:
    usage priced at ``service_tier="batch"`` (docs/concepts.md, "Not covered": Bedrock batch results read by hand)
    is unknown, with the reason, never the on-demand price marked exact."""
    usage = Usage(input_tokens=10_000, output_tokens=1_000)
    assert price_call("aws.bedrock", model, usage).known
    cost = price_call("aws.bedrock", model, usage, service_tier="batch")
    assert (cost.known, cost.total, cost.service_tier) == (False, None, "batch")
    assert "bills the batch tier at per-model rates" in cost.unknown_reason


def test_batch_discount_does_not_touch_per_request_fees():
    usage = Usage(input_tokens=1_000, output_tokens=0, web_search_requests=2)
    cost = price_call("anthropic", "claude-3-5-haiku-20241022", usage, service_tier="batch")
    assert cost.parts == {"input": per_m(1_000, "0.4"), "web_search": Decimal("0.02")}


def test_flex_tier():
    usage = Usage(input_tokens=10_000, output_tokens=10_000, reasoning_tokens=8_000)
    cost = price_call("openai", "gpt-5-2025-08-07", usage, service_tier="flex")
    assert cost.total == per_m(10_000, "0.625") + per_m(10_000, "5")
    # o3 on flex in July 2025 (before the catalog's explicit flex rows): half of that day's standard price.
    o3 = price_call("openai", "o3", usage, service_tier="flex", at=datetime(2025, 7, 1, tzinfo=UTC))
    assert o3.total == per_m(10_000, "1") + per_m(10_000, "4")


def test_priority_tier():
    usage = Usage(input_tokens=10_000, output_tokens=1_000)
    cost = price_call("openai", "gpt-4o-2024-08-06", usage, service_tier="priority")
    assert cost.total == per_m(10_000, "4.25") + per_m(1_000, "17")


@pytest.fixture
def acme_flex_unlisted(monkeypatch):
    """A catalog whose vendor bills its flex tier at per-model rates (a null ``tier_factor``) and lists none."""
    from aicost import _log
    from aicost.pricing.catalog import catalog_from_data

    monkeypatch.setattr(_log, "_seen", set())  # its warning is logged once per process: once per test here

    raw = {"schema": 1, "catalog_version": "acme-1", "providers": [{"id": "acme", "models": [
        {"id": "m1", "match": {"equals": "m1"}, "prices": [{"rates": {"input": "1", "output": "2"}}]},
        {"id": "m2", "match": {"equals": "m2"}, "prices": [{"rates": {"input": "1", "output": "2"}}]}]}]}
    engine._switch_catalog(catalog_from_data(raw, label="t", supplement={"tier_factor": {"acme": {"flex": None}}}))
    yield ("acme bills the flex tier at per-model rates the price catalog does not list for m1 (a price override "
           "for the tier prices it)")
    engine._switch_catalog(None)


def test_a_tier_billed_at_unlisted_per_model_rates_is_unknown_with_the_reason_from_pricing(acme_flex_unlisted, caplog):
    """Any vendor, any tier whose ``tier_factor`` is null: unknown (never the standard rate), and pricing says
    why, without listing the model as unknown (it is priced at every other tier)."""
    usage = Usage(input_tokens=1_000, output_tokens=10)
    assert price_call("acme", "m1", usage).known
    with caplog.at_level(logging.WARNING, logger="aicost"):
        cost = price_call("acme", "m1", usage, service_tier="flex")
    assert (cost.known, cost.total, cost.service_tier) == (False, None, "flex")
    assert cost.unknown_reason == acme_flex_unlisted
    assert "acme bills the flex tier" in caplog.text and "no price for model" not in caplog.text
    assert unknown_models() == []
    assert price_call("acme", "nope", usage, service_tier="flex").unknown_reason is None  # not the tier's fault


def test_a_fallback_model_priced_but_not_at_the_tier_gives_the_tier_reason(acme_flex_unlisted):
    """The answer names a snapshot the catalog lacks; the model asked for is priced, but not at this tier: the
    call is unknown because of the tier, and says so, as a call naming that model would. No unknown model."""
    usage = Usage(input_tokens=1_000, output_tokens=10)
    for at in (None, datetime(2025, 7, 1, tzinfo=UTC)):
        cost = price_call("acme", "m1-internal-0915", usage, service_tier="flex", fallback_model="m1", at=at)
        assert (cost.known, cost.model, cost.unknown_reason) == (False, "m1", acme_flex_unlisted)
    assert unknown_models() == []
    assert price_call("acme", "m1-internal-0915", usage, fallback_model="m1").known  # priced at standard
    # the model that answered has its own tier reason: it is kept, whatever the fallback: one without a price...
    assert price_call("acme", "m1", usage, service_tier="flex", fallback_model="nope").unknown_reason == (
        acme_flex_unlisted)
    # ...or one priced, but not at this tier either, with a reason of its own (naming m2)
    for at in (None, datetime(2025, 7, 1, tzinfo=UTC)):
        cost = price_call("acme", "m1", usage, service_tier="flex", fallback_model="m2", at=at)
        assert (cost.known, cost.model, cost.unknown_reason) == (False, "m1", acme_flex_unlisted)


def test_an_override_drops_a_cached_unpriced_tier(acme_flex_unlisted, tmp_path):
    """The lookup's (no price, the tier's reason) pair is cached; an override for the tier that arrives after it
    (set_price, a price file) prices the next call at once, and clear_overrides brings the reason back: now, at a
    past time, and for what a budget asks (current_price, unknown_reason)."""
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)

    def state():
        costs = [price_call("acme", "m1", usage, service_tier="flex", at=at)
                 for at in (None, datetime(2025, 7, 1, tzinfo=UTC))]
        return ([(c.known, c.total, c.unknown_reason) for c in costs]
                + [engine.current_price("acme", "m1", "flex") is not None, engine.unknown_reason("acme", "m1", "flex")])

    unpriced = [(False, None, acme_flex_unlisted)] * 2 + [False, acme_flex_unlisted]
    assert state() == unpriced
    engine.set_price("m1", provider="acme", service_tier="flex", input="0.5", output="1")
    assert state() == [(True, Decimal("1.5"), None)] * 2 + [True, None]
    engine.clear_overrides()
    assert state() == unpriced
    path = tmp_path / "prices.json"
    path.write_text('{"model": [{"model": "m1", "provider": "acme", "service_tier": "flex", "input": "0.25", '
                    '"output": "0.5"}]}', encoding="utf-8")
    engine.load_price_file(path)
    assert state() == [(True, Decimal("0.75"), None)] * 2 + [True, None]


def test_unknown_reason_says_why_current_price_is_none_when_the_tier_is_why(acme_flex_unlisted, caplog):
    """What a budget asks before a call: quiet (nothing logged, nothing listed), the reason a call would carry."""
    with caplog.at_level(logging.WARNING, logger="aicost"):
        assert engine.current_price("acme", "m1", "flex") is None
        assert engine.unknown_reason("acme", "m1", "flex") == acme_flex_unlisted
        assert engine.unknown_reason("acme", "m1") is None  # priced
        assert engine.unknown_reason("acme", "nope", "flex") is None  # no price at any tier: nothing more to say
    assert caplog.text == "" and unknown_models() == []


def test_an_unpriced_tier_is_decided_once_per_resolution_not_once_per_call(acme_flex_unlisted, monkeypatch, caplog):
    """The lookup that finds no price at the tier also finds why; each call then reads both from the cache: no
    second lookup of the model's period and tier rates, and one warning however many calls."""
    from aicost.pricing.catalog import ModelEntry

    selects = []
    select = ModelEntry.select
    monkeypatch.setattr(ModelEntry, "select", lambda self, at, tier: selects.append(at) or select(self, at, tier))
    usage = Usage(input_tokens=1_000, output_tokens=10)
    with caplog.at_level(logging.WARNING, logger="aicost"):
        costs = [price_call("acme", "m1", usage, service_tier="flex") for _ in range(5)]
    assert [c.unknown_reason for c in costs] == [acme_flex_unlisted] * 5
    assert len(selects) == 1  # the price now, with its reason, cached until it can next change
    assert caplog.text.count("acme bills the flex tier") == 1
    selects.clear()
    past = datetime(2025, 7, 1, tzinfo=UTC)
    costs = [price_call("acme", "m1", usage, service_tier="flex", at=past) for _ in range(3)]
    assert [c.unknown_reason for c in costs] == [acme_flex_unlisted] * 3
    assert len(selects) == 3  # a call at a past time picks its dated period once, and finds the reason with it


def test_a_lookup_racing_a_price_change_does_not_cache_the_old_answer(acme_flex_unlisted, monkeypatch):
    """A price override arrives while another thread is looking the price up: that lookup may answer with the old
    price, but must not cache it as the price now, or the override would be ignored until the cached answer
    expires (the next UTC midnight). Interleaved deterministically: the writer, holding the lock, lets the reader
    read the resolved name just before the caches are cleared."""
    assert engine.current_price("acme", "m1", "flex") is None  # cached: no price, the tier's reason
    engine._now.clear()  # the reader goes to the resolved name, as after the price now expires
    read_it = threading.Event()
    reader = threading.Thread(target=engine.current_price, args=("acme", "m1", "flex"))

    class Resolved(dict):
        def __getitem__(self, key):
            value = super().__getitem__(key)
            read_it.set()
            return value

        def clear(self):  # the writer, in the middle of a price change: the reader reads the old name now
            if reader.ident is None:
                reader.start()
                assert read_it.wait(30)
            super().clear()

    monkeypatch.setattr(engine, "_resolved", Resolved(engine._resolved))
    engine.set_price("m1", provider="acme", service_tier="flex", input="1.5", output="3")
    reader.join()
    assert engine.current_price("acme", "m1", "flex") is not None


def test_google_priority_is_unknown_with_the_tier_reason():
    cost = price_call("gcp.vertex_ai", "gemini-2.5-flash", Usage(input_tokens=10, output_tokens=1),
                      service_tier="priority")
    assert not cost.known and "bills the priority tier at per-model rates" in cost.unknown_reason
    # a sub-inference priced at that tier (the advisor tool's part) keeps the reason: the span says why
    executor = price_call("gcp.vertex_ai", "gemini-2.5-flash", Usage(input_tokens=10, output_tokens=1))
    combined = with_sub_inferences(executor, [("advisor", cost)])
    assert not combined.known and combined.unknown_reason == cost.unknown_reason


# --- history: a call is priced at the time it was made -----------------------------------------------------


def test_historical_price_change_o3():
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cache_read_tokens=0)
    before = price_call("openai", "o3-2025-04-16", usage, at=datetime(2025, 6, 9, 23, 59, tzinfo=UTC))
    after = price_call("openai", "o3-2025-04-16", usage, at=datetime(2025, 6, 10, 0, 1, tzinfo=UTC))
    assert before.total == Decimal(50) and after.total == Decimal(10)
    price = resolve("openai", "o3", at=datetime(2025, 6, 1, tzinfo=UTC))
    assert price.effective_until is not None and price.effective_until.isoformat() == "2025-06-10"


def test_historical_long_context_removed_sonnet_4_6():
    usage = Usage(input_tokens=500_000, output_tokens=0)
    before = price_call("anthropic", "claude-sonnet-4-6", usage, at=datetime(2026, 3, 1, tzinfo=UTC))
    after = price_call("anthropic", "claude-sonnet-4-6", usage, at=datetime(2026, 4, 1, tzinfo=UTC))
    assert before.total == per_m(500_000, "6")
    assert after.total == per_m(500_000, "3")


def test_naive_and_offset_timestamps_are_utc_instants():
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    naive = price_call("openai", "o3", usage, at=datetime(2025, 6, 10, 1, 0))
    # 2025-06-10 01:00 at UTC+2 is 2025-06-09 23:00 UTC: the old price.
    offset = price_call("openai", "o3", usage, at=datetime(2025, 6, 10, 1, 0, tzinfo=timezone(timedelta(hours=2))))
    assert naive.total == Decimal(2) and offset.total == Decimal(10)


def test_time_of_day_prices():
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    day = datetime(2025, 7, 1, tzinfo=UTC)
    peak = price_call("deepseek", "deepseek-chat", usage, at=day.replace(hour=10))
    off_peak = price_call("deepseek", "deepseek-chat", usage, at=day.replace(hour=18))
    assert peak.total == Decimal("0.27") and off_peak.total == Decimal("0.135")
    entry = bundled().find("deepseek", "deepseek-chat")
    assert entry.valid_until(day.replace(hour=10)) == day.replace(hour=16, minute=30)


def test_now_cache_expires_at_the_next_price_boundary(monkeypatch):
    usage = Usage(input_tokens=1_000, output_tokens=0)
    price_call("openai", "gpt-4o", usage)
    _, until = engine._now[("openai", "gpt-4o", None)]
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert until == datetime.combine(tomorrow, datetime.min.time(), UTC).timestamp()


# --- names: snapshots, aliases, prefixes, cloud spellings --------------------------------------------------


@pytest.mark.parametrize("provider,model,catalog_model", [
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
    ("openai", "GPT-4o", "gpt-4o"),
    ("openai", "openai/gpt-4o", "gpt-4o"),
    (None, "anthropic/claude-3-5-haiku-latest", "claude-3-5-haiku-latest"),
    (None, "claude-3-5-haiku-20241022", "claude-3-5-haiku-latest"),
    ("openai", "gpt-4o-20240806", "gpt-4o"),
    ("azure.ai.openai", "gpt-35-turbo", "gpt-3.5-turbo"),
    ("aws.bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "regional.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("aws.bedrock", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
     "regional.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("gcp.vertex_ai", "claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
    ("gcp.vertex_ai", "publishers/google/models/gemini-2.5-pro", "gemini-2.5-pro"),
    ("gcp.gemini", "models/gemini-2.0-flash", "gemini-2.0-flash"),
    ("some.gateway", "gpt-4o-mini", "gpt-4o-mini"),
])
def test_name_resolution(provider, model, catalog_model):
    price = resolve(provider, model)
    assert price is not None and price.model == catalog_model


def test_azure_prices_like_openai():
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    assert price_call("azure.ai.openai", "gpt-4o-2024-08-06", usage).total == price_call(
        "openai", "gpt-4o-2024-08-06", usage).total


# --- unknown models: never $0 -----------------------------------------------------------------------------


def test_unknown_model_is_unknown_not_free(caplog):
    caplog.set_level(logging.WARNING, logger="aicost")
    usage = Usage(input_tokens=100, output_tokens=10, estimated=True)
    first = price_call("openai", "my-private-llama", usage)
    second = price_call("openai", "my-private-llama", usage)
    assert first.known is False and first.total is None and dict(first.parts) == {}
    assert first.estimated is True and first.model == "my-private-llama"
    assert second.total is None
    warnings = [r for r in caplog.records if "my-private-llama" in r.getMessage()]
    assert len(warnings) == 1
    [seen] = [u for u in unknown_models() if u.model == "my-private-llama"]
    assert seen.calls == 2 and seen.provider == "openai"


def test_fallback_model_prices_an_unpriced_snapshot_name_quietly(caplog):
    caplog.set_level(logging.WARNING, logger="aicost")
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    for at in (None, datetime(2025, 6, 1, tzinfo=UTC)):
        cost = price_call("openai", "zz-internal-snapshot-7", usage, fallback_model="gpt-4o", at=at)
        assert cost.known and cost.model == "gpt-4o" and cost.total == Decimal("2.5")
    known = price_call("openai", "gpt-4o-mini", usage, fallback_model="gpt-4o")  # a priced name wins
    assert known.model == "gpt-4o-mini" and known.total == Decimal("0.15")
    assert not [r for r in caplog.records if "zz-internal" in r.getMessage()]
    assert not [u for u in unknown_models() if u.model == "zz-internal-snapshot-7"]
    neither = price_call("openai", "my-snapshot-x", usage, fallback_model="my-private-llama-2")
    assert neither.known is False and neither.model == "my-snapshot-x"
    assert [u.model for u in unknown_models() if u.model.startswith("my-")] == ["my-snapshot-x"]


def test_missing_model_name_is_unknown():
    assert price_call("openai", None, Usage(input_tokens=1)).known is False
    assert resolve("openai", None) is None


def test_price_call_never_raises_on_bad_input(caplog):
    cost = price_call("openai", "gpt-4o", None)  # type: ignore[arg-type]
    assert cost.known is False and cost.total is None


# --- arithmetic safety -------------------------------------------------------------------------------------


def test_host_decimal_context_cannot_round_our_money():
    results = []

    def hostile() -> None:
        decimal.getcontext().prec = 3
        decimal.getcontext().rounding = decimal.ROUND_DOWN
        results.append(price_call("openai", "gpt-4o-mini", Usage(input_tokens=123_457, output_tokens=98_765)).total)

    thread = threading.Thread(target=hostile)
    thread.start()
    thread.join()
    assert results == [per_m(123_457, "0.15") + per_m(98_765, "0.6")]


def test_thread_safety_many_threads_same_answers():
    cases = [
        ("openai", "gpt-4o", Usage(input_tokens=1_234, output_tokens=567), None),
        ("anthropic", "claude-sonnet-4-5", Usage(input_tokens=210_000, cache_read_tokens=10_000, output_tokens=9), None),
        ("openai", "gpt-5-mini", Usage(input_tokens=5, output_tokens=50, reasoning_tokens=40), "flex"),
        ("aws.bedrock", "amazon.nova-pro-v1:0", Usage(input_tokens=77, output_tokens=7), None),
        ("openai", "nope-model", Usage(input_tokens=1), None),
    ]
    expected = [price_call(p, m, u, service_tier=t).total for p, m, u, t in cases]
    engine._resolved.clear()
    engine._now.clear()
    errors: list[object] = []
    barrier = threading.Barrier(8)

    def worker(offset: int) -> None:
        barrier.wait(timeout=10)
        for i in range(600):
            p, m, u, t = cases[(i + offset) % len(cases)]
            got = price_call(p, m, u, service_tier=t).total
            if got != expected[(i + offset) % len(cases)]:
                errors.append((p, m, got))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []


def test_upper_bound_for_budget_reservations():
    price = resolve("anthropic", "claude-sonnet-4-5")
    # Worst case: all input as 1h cache writes ($6/M), all output at $15/M.
    assert price.upper_bound(10_000, 1_000) == per_m(10_000, "6") + per_m(1_000, "15")
    assert price.upper_bound(300_000, 0) == per_m(300_000, "12")


def test_upper_bound_has_no_value_where_a_token_it_bounds_has_no_rate():
    """An embedding model lists an input rate only: the worst case of a request that may generate output is
    unknown (None), never the input's cost alone, as if output were free."""
    price = resolve("openai", "text-embedding-3-small")
    assert price.upper_bound(1_000, 0) == per_m(1_000, "0.02")
    assert price.upper_bound(1_000, 10) is None


def test_openai_web_search_preview_tool_on_non_reasoning_models():
    usage = Usage(input_tokens=1_000, output_tokens=100, web_search_requests=2)
    ga = price_call("openai", "gpt-4o-2024-08-06", usage)
    preview = price_call("openai", "gpt-4o-2024-08-06", usage, web_search_tool="web_search_preview")
    assert ga.parts["web_search"] == Decimal("0.02")  # $10 per 1K calls
    assert preview.parts["web_search"] == Decimal("0.05")  # $25 per 1K calls
    # Reasoning models: the preview tool costs the same as the GA tool.
    gpt5 = price_call("openai", "gpt-5", usage, web_search_tool="web_search_preview")
    assert gpt5.parts["web_search"] == Decimal("0.02")


def test_models_billed_in_units_usage_cannot_carry_are_unknown_not_free():
    # whisper-1 is billed per audio minute, tts-1 per character: no token price exists, so no $0 either.
    for model in ("whisper-1", "tts-1"):
        cost = price_call("openai", model, Usage(input_tokens=100))
        assert cost.known is False and cost.total is None, model
    # A model the vendor really gives away is known and free.
    free = price_call("openai", "omni-moderation-latest", Usage(input_tokens=100))
    assert free.known is True and free.total == 0


@pytest.mark.parametrize("model,input_rate", [
    ("anthropic.claude-instant-v1", "0.8"),  # not in Bedrock's table: Anthropic's own list price
    ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "0.8"),
    ("anthropic.claude-v2:1", "8"),
])
def test_bedrock_anthropic_models_fall_back_to_anthropic_prices(model, input_rate):
    assert resolve("aws.bedrock", model).rates["input"] == Decimal(input_rate)


def test_bedrock_does_not_borrow_other_vendors_prices():
    # Cohere on Bedrock bills differently from Cohere direct: no borrowed price, so unknown.
    assert resolve("aws.bedrock", "cohere.command-r-plus-v1:0") is None


def test_vertex_version_suffix():
    assert resolve("gcp.vertex_ai", "gemini-2.5-flash-001").model == "gemini-2.5-flash"


@pytest.mark.parametrize("mixin", [None, str], ids=["Enum", "str-Enum"])
def test_service_tier_given_as_an_enum(mixin):
    """Typed SDK models give tiers as enums; every way into pricing prices them by value. ``str()`` of a
    ``class Tier(str, Enum)`` member is ``"Tier.FLEX"``: an unknown word, which would be priced at standard rates."""
    import enum

    Tier = enum.Enum("Tier", {"FLEX": "flex", "PRIORITY": "priority"}, type=mixin)
    usage = Usage(input_tokens=1_000_000)
    assert price_call("openai", "gpt-5", usage, service_tier=Tier.FLEX).total == Decimal("0.625")
    past = datetime(2025, 10, 1, tzinfo=UTC)
    for price, at in ((resolve("openai", "gpt-5", service_tier=Tier.FLEX), None),
                      (resolve("openai", "gpt-5", service_tier=Tier.FLEX, at=past), past),
                      (engine.current_price("openai", "gpt-5", Tier.FLEX), None)):
        flex = resolve("openai", "gpt-5", service_tier="flex", at=at)
        assert (price.rates, price.service_tier) == (flex.rates, "flex") and flex.rates != resolve(
            "openai", "gpt-5", at=at).rates
    gemini = ("gcp.vertex_ai", "gemini-2.5-flash")
    assert engine.current_price(*gemini, Tier.PRIORITY) is None  # never the standard rate
    assert engine.unknown_reason(*gemini, Tier.PRIORITY) == engine.unknown_reason(*gemini, "priority") is not None
    assert price_call(*gemini, usage, service_tier=Tier.PRIORITY).unknown_reason == engine.unknown_reason(
        *gemini, "priority")


@pytest.mark.parametrize("tier", [{"type": "flex"}, ["flex"], 5, enum.Enum("Level", {"ONE": 1}).ONE],
                         ids=["dict", "list", "int", "int-Enum"])
def test_a_service_tier_that_is_not_text_is_an_unknown_tier_with_its_reason(tier, caplog):
    """A tier that is neither text nor an enum of text (unhashable ones included) is no tier pricing can read:
    every way into pricing says the price is unknown, with the same reason naming its type, never a TypeError and
    never the standard rate; the model is not listed as unknown, and the warning is logged once."""
    usage = Usage(input_tokens=1_000_000)
    reason = engine.unknown_reason("openai", "gpt-5", tier)
    assert reason is not None and f"service tier is a {type(tier).__name__}, not text" in reason
    assert engine.current_price("openai", "gpt-5", tier) is None
    assert resolve("openai", "gpt-5", service_tier=tier) is None
    assert resolve("openai", "gpt-5", service_tier=tier, at=datetime(2025, 10, 1, tzinfo=UTC)) is None
    caplog.set_level(logging.WARNING, logger="aicost")
    for at in (None, datetime(2025, 10, 1, tzinfo=UTC), None):
        cost = price_call("openai", "gpt-5", usage, service_tier=tier, at=at)
        assert (cost.known, cost.total, cost.unknown_reason, cost.service_tier) == (False, None, reason, None)
    assert caplog.text.count(reason) == 1 and "could not price" not in caplog.text
    assert not [u for u in unknown_models() if u.model == "gpt-5"]
    assert engine.current_price_and_reason("openai", "gpt-5", tier) == (None, reason)  # one lookup, the same answer
    flex = engine.current_price("openai", "gpt-5", "flex")  # text still prices
    assert flex is not None and engine.current_price_and_reason("openai", "gpt-5", "flex") == (flex, None)
    # a model the catalog lacks, with such a tier: an unknown model (no tier on its cost), not an error
    unlisted = price_call("openai", "no-such-model-zz", usage, service_tier=tier)
    assert (unlisted.known, unlisted.service_tier) == (False, None) and "could not price" not in caplog.text
    assert [u for u in unknown_models() if u.model == "no-such-model-zz"]


def test_unknown_model_list_is_bounded(monkeypatch):
    monkeypatch.setattr(engine, "_MAX_NAMES", 5)
    for i in range(20):
        assert price_call("openai", f"flood-{i}", Usage(input_tokens=1)).known is False
    assert len(unknown_models()) == 5


def test_at_accepts_epoch_seconds():
    usage = Usage(input_tokens=1_000_000)
    before = datetime(2025, 6, 9, 12, tzinfo=UTC).timestamp()
    assert price_call("openai", "o3", usage, at=before).total == Decimal(10)


@pytest.mark.parametrize("provider,model", [("anthropic", "claude-sonnet-4-20250514"),
                                            ("gcp.vertex_ai", "claude-sonnet-4@20250514")])
def test_sonnet_4_long_context_from_supplement(provider, model):
    usage = Usage(input_tokens=300_000, cache_read_tokens=100_000, output_tokens=1_000)
    cost = price_call(provider, model, usage)
    assert cost.total == per_m(200_000, "6") + per_m(100_000, "0.6") + per_m(1_000, "22.5")


def test_history_from_supplement_o1_mini_price_cut():
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    launch = price_call("openai", "o1-mini-2024-09-12", usage, at=datetime(2024, 10, 1, tzinfo=UTC))
    after = price_call("openai", "o1-mini-2024-09-12", usage, at=datetime(2025, 2, 1, tzinfo=UTC))
    assert launch.total == Decimal(15) and after.total == Decimal("5.5")
    assert resolve("openai", "o1-mini", at=datetime(2024, 10, 1, tzinfo=UTC)).effective_until.isoformat() == "2025-01-31"


def test_overrides_changed_while_other_threads_price_never_leave_stale_prices():
    usage = Usage(input_tokens=1_000_000)
    stop = threading.Event()

    def pricer() -> None:
        while not stop.is_set():
            price_call("openai", "gpt-4o-mini", usage)

    threads = [threading.Thread(target=pricer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(30):
            engine.set_price("gpt-4o-mini", provider="openai", input=str(i + 1))
            engine.clear_overrides()
        engine.set_price("gpt-4o-mini", provider="openai", input="42")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert price_call("openai", "gpt-4o-mini", usage).total == Decimal(42)


@pytest.mark.parametrize("model", ["deepseek-r1:14b", "deepseek-r1:latest", "llama3.1:8b", "qwen2.5:7b-instruct-q4_K_M"])
def test_local_ollama_models_are_not_priced_by_guesswork(model):
    # An OpenAI-compatible local server reports the vendor as "openai": a name that merely resembles a hosted
    # model must stay unknown (price it with set_price / a price file), not borrow DeepSeek's API price.
    assert price_call("openai", model, Usage(input_tokens=10)).known is False


def test_bare_vendor_names_are_inferred_only_when_no_vendor_is_named():
    # No vendor named (or one aicost does not know, such as a gateway's name): the naming scheme says who sells it.
    assert resolve(None, "deepseek-reasoner").provider == "deepseek"
    assert resolve("litellm", "claude-3-5-haiku-20241022").provider == "anthropic"
    # A named vendor bills at its own prices: another vendor's model name there is unknown, never that vendor's price.
    assert resolve("openai", "claude-3-5-haiku-20241022") is None
    assert price_call("openai", "claude-3-5-haiku-20241022", Usage(input_tokens=10)).known is False


@pytest.mark.parametrize("provider, model", [
    ("groq", "gpt-4o-mini"),
    ("deepseek", "gpt-4o-mini"),
    ("aws.bedrock", "gpt-4o-mini"),
    ("gcp.gemini", "gpt-4o"),
    ("gcp.vertex_ai", "gpt-4o"),
    ("anthropic", "gpt-4o"),
    ("openai", "claude-3-haiku-20240307"),
    ("mistral_ai", "gpt-4o"),
    ("together_ai", "mistralai/Mixtral-8x7B-Instruct-v0.1"),  # a vendor/model prefix is not a resale either
    ("groq", "openai/gpt-4o"),
])
def test_a_named_vendor_is_never_billed_at_another_vendors_price(provider, model):
    assert resolve(provider, model) is None
    assert engine.current_price(provider, model) is None
    cost = price_call(provider, model, Usage(input_tokens=1_000, output_tokens=10))
    assert cost.known is False and cost.total is None  # unknown, never $0
    assert (provider, model) in {(u.provider, u.model) for u in unknown_models()}


@pytest.mark.parametrize("provider, model, vendor", [
    ("azure.ai.openai", "gpt-4o", "openai"),  # the catalog's own fallback tables (genai-prices)
    ("azure.ai.openai", "claude-3-haiku-20240307", "anthropic"),
    ("gcp.vertex_ai", "claude-3-5-sonnet@20240620", "google"),  # Vertex's own Claude table
    ("aws.bedrock", "anthropic.claude-instant-v1", "anthropic"),  # supplement ``resells``: Bedrock -> Anthropic
    ("openrouter", "anthropic/claude-3-haiku-20240307", "anthropic"),  # a router passing prices through
    ("openai", "openai/gpt-4o", "openai"),  # the vendor's own prefix
    (None, "openai/gpt-4o", "openai"),  # no vendor named: the prefix says who sells it
])
def test_a_declared_resale_prices_at_the_resold_vendors_list_price(provider, model, vendor):
    price = resolve(provider, model)
    assert price is not None and price.provider == vendor


def test_a_discount_goes_to_the_vendor_that_bills_a_resold_call():
    # OpenRouter bills an openai/ model at OpenAI's list price, but a discount negotiated with OpenAI is not
    # OpenRouter's: the discount applies to the vendor the call named.
    list_price = resolve("openrouter", "openai/gpt-4o").rates["input"]
    engine.add_discount(10, provider="openai")
    assert resolve("openrouter", "openai/gpt-4o").rates["input"] == list_price
    assert resolve("openai", "gpt-4o").rates["input"] == list_price * Decimal("0.9")
    engine.add_discount(20, provider="openrouter")
    assert resolve("openrouter", "openai/gpt-4o").rates["input"] == list_price * Decimal("0.8")


def test_cost_is_immutable_picklable_and_copyable():
    import copy
    import pickle

    cost = price_call("openai", "gpt-4o", Usage(input_tokens=1_000, output_tokens=10))
    with pytest.raises(TypeError):
        cost.parts["input"] = Decimal(0)  # type: ignore[index]
    for clone in (pickle.loads(pickle.dumps(cost)), copy.deepcopy(cost), copy.copy(cost)):
        assert clone == cost and clone.parts == cost.parts
    unknown = price_call("openai", "no-such-model-x", Usage(input_tokens=1))
    assert pickle.loads(pickle.dumps(unknown)) == unknown


def test_dated_change_ends_time_of_day_pricing_deepseek():
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    night = datetime(2025, 10, 10, 18, tzinfo=UTC)  # was off-peak before 2025-09-05; one price since
    day = datetime(2025, 10, 10, 10, tzinfo=UTC)
    assert price_call("deepseek", "deepseek-chat", usage, at=night).total == Decimal("0.70")
    assert price_call("deepseek", "deepseek-chat", usage, at=day).total == Decimal("0.70")
    assert price_call("deepseek", "deepseek-reasoner", usage, at=datetime(2025, 9, 10, tzinfo=UTC)).total == Decimal("2.24")


def test_tier_rates_known_only_from_a_later_date_apply_to_earlier_calls_on_that_tier():
    # gpt-5 priority rows start in the data in 2026-10, but a 2025 response that says "priority" ran on it.
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    cost = price_call("openai", "gpt-5-2025-08-07", usage, service_tier="priority", at=datetime(2025, 10, 1, tzinfo=UTC))
    assert cost.total == Decimal("22.5")  # $2.50 + $20


def test_sub_inferences_are_parts_of_the_call_cost_and_an_unknown_one_makes_it_unknown():
    """Anthropic's advisor tool bills the advisor's tokens at its own model: one more part, still summing up."""
    executor = price_call("anthropic", "claude-sonnet-4-6", Usage(input_tokens=1000, output_tokens=100))
    advisor = price_call("anthropic", "claude-opus-4-6", Usage(input_tokens=800, output_tokens=1600))
    both = with_sub_inferences(executor, [("advisor", advisor), ("advisor", advisor)])
    assert both.known and both.model == "claude-sonnet-4-6"
    assert both.total == executor.total + 2 * advisor.total
    assert both.parts["advisor"] == 2 * advisor.total
    assert sum(both.parts.values()) == both.total
    assert executor.parts == {"input": executor.parts["input"], "output": executor.parts["output"]}  # untouched

    unknown = price_call("anthropic", "claude-advisor-nobody-priced", Usage(input_tokens=1, output_tokens=1))
    combined = with_sub_inferences(executor, [("advisor", unknown)])
    assert not combined.known and combined.total is None and combined.model == "claude-advisor-nobody-priced"
    assert not with_sub_inferences(executor, [("advisor", None)]).known  # a part that could not be priced at all
    assert with_sub_inferences(executor, []) is executor


@pytest.mark.parametrize("usage,problem", [
    (Usage(input_tokens=10, cache_read_tokens=1_000, output_tokens=5), "cache_read_tokens exceeds its total"),
    (Usage(input_tokens=10, output_tokens=5, reasoning_tokens=500), "reasoning_tokens exceeds its total"),
    (Usage(input_tokens=-1_000, output_tokens=5), "a count is negative"),
    (Usage(input_tokens=10, output_tokens=5, invalid="output_tokens is missing"), "output_tokens is missing"),
])
def test_usage_that_fails_validation_is_never_priced_as_exact(usage, problem):
    """price_call is public (aicost.price_call): usage that breaks Usage's rules was priced, clamped or with the
    bad count read as none, as an exact known cost. It is unknown, saying why."""
    cost = price_call("openai", "o3", usage)
    assert not cost.known and cost.total is None
    assert cost.unknown_reason == f"the usage failed validation: {problem}"


def test_price_checked_prices_by_the_usages_verdict():
    """``price_checked`` is the core's: its usage went through ``Usage.checked()`` (the integrations' readers end
    with it), whose ``invalid`` it takes as the verdict instead of asking the rules again. What a reader found
    wrong stays unknown; ``price_call`` asks the rules of whatever it is handed."""
    from aicost.pricing import price_checked

    usage = Usage(input_tokens=10, cache_read_tokens=1_000, output_tokens=5)
    cost = price_checked("openai", "o3", usage.checked())
    assert not cost.known and cost.unknown_reason == "the usage failed validation: cache_read_tokens exceeds its total"
    valid = Usage(input_tokens=1000, cache_read_tokens=200, output_tokens=300)
    assert price_checked("openai", "gpt-4o-mini", valid.checked()) == price_call("openai", "gpt-4o-mini", valid)
    assert price_checked("openai", "gpt-4o-mini", valid).known
