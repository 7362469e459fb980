"""Claude's long-context premium applies only to a request that enabled the 1M-token window (issue 14, item 22).

Anthropic bills its >200K rates to ONE request whose input exceeds 200K tokens with the ``context-1m`` beta on;
without the beta the model's window is 200K, so no single request can be longer. A server-side tool loop (web
search, ``stop_reason: pause_turn``) reports its steps' input *summed*: the audit saw claude-sonnet-4-5 answer
with 401,468 input tokens over 10 internal search steps, billed by aicost at $6 / $22.50 per M ($2.53) instead
of $3 / $15 ($1.32). The response below has that shape; the calls go through the real SDK over HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aicost import semconv
from aicost.pricing import price_call
from aicost.usage import Usage
from pricing_helpers import _fresh_pricing_state, per_m  # noqa: F401
from vendor_server import Reply

MODEL = "claude-sonnet-4-5-20250929"
INPUT, OUTPUT, SEARCHES = 401_468, 1_040, 10
BASE = per_m(INPUT, "3") + per_m(OUTPUT, "15") + SEARCHES * Decimal("0.01")  # $10 per 1,000 searches
PREMIUM = per_m(INPUT, "6") + per_m(OUTPUT, "22.5") + SEARCHES * Decimal("0.01")


def paused_search_turn() -> Reply:
    """A server-side web-search loop that hit its step limit: input summed over its 10 sampling steps."""
    content = []
    for i in range(SEARCHES):
        content.append({"type": "server_tool_use", "id": f"srvtoolu_{i:02d}", "name": "web_search",
                        "input": {"query": f"query {i}"}})
    content.append({"type": "text", "text": "Still researching."})
    return Reply.json({
        "id": "msg_paused", "type": "message", "role": "assistant", "model": MODEL, "content": content,
        "stop_reason": "pause_turn", "stop_sequence": None,
        "usage": {"input_tokens": INPUT, "output_tokens": OUTPUT, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0, "server_tool_use": {"web_search_requests": SEARCHES},
                  "service_tier": "standard"},
    })


def test_the_audit_figures() -> None:
    assert BASE == Decimal("1.320004") and PREMIUM == Decimal("2.532208")


def _ask(client, *, beta: bool = False, **kwargs):
    request = dict(model=MODEL, max_tokens=2048, messages=[{"role": "user", "content": "research this"}],
                   tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 10}], **kwargs)
    if beta:
        return client.beta.messages.create(betas=["context-1m-2025-08-07"], **request)
    return client.messages.create(**request)


def test_a_summed_server_tool_loop_without_the_1m_beta_is_billed_at_base_rates(
        instrumented, anthropic_client, replay_server) -> None:
    replay_server.enqueue(paused_search_turn())
    message = _ask(anthropic_client)
    assert message.stop_reason == "pause_turn"
    (span,) = instrumented.cost_spans()
    a = span.attributes
    assert Decimal(a[semconv.AICOST_COST_TOTAL]) == BASE
    assert a[semconv.AICOST_PRICE_TIER_REASON] == "long_context_not_enabled"
    assert semconv.AICOST_PRICE_TIER not in a


def long_prompt() -> Reply:
    """One request whose own input is over 200K (no server tool ran): a long prompt, the case the premium is for."""
    return Reply.json({
        "id": "msg_long", "type": "message", "role": "assistant", "model": MODEL,
        "content": [{"type": "text", "text": "Summary."}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": INPUT, "output_tokens": OUTPUT, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0, "service_tier": "standard"},
    })


LONG_PROMPT_PREMIUM = per_m(INPUT, "6") + per_m(OUTPUT, "22.5")


@pytest.mark.parametrize("how", ["betas", "extra_headers", "default_headers"])
def test_a_request_with_the_1m_beta_over_200k_is_billed_at_the_long_context_rates(
        how, instrumented, anthropic_client, replay_server) -> None:
    from vendor_server import anthropic_client as make_client

    replay_server.enqueue(long_prompt())
    header = {"anthropic-beta": "interleaved-thinking-2025-05-14,context-1m-2025-08-07"}
    if how == "betas":
        _ask(anthropic_client, beta=True)
    elif how == "extra_headers":
        _ask(anthropic_client, extra_headers=header)
    else:
        client = make_client(replay_server, default_headers=header)
        try:
            _ask(client)
        finally:
            client.close()
    (span,) = instrumented.cost_spans()
    a = span.attributes
    assert Decimal(a[semconv.AICOST_COST_TOTAL]) == LONG_PROMPT_PREMIUM
    assert a[semconv.AICOST_PRICE_TIER] == "input>200000"
    assert a[semconv.AICOST_PRICE_TIER_REASON] == "input_over_threshold"
    assert semconv.AICOST_COST_ESTIMATED not in a


def test_a_call_under_the_threshold_has_no_tier_attributes(instrumented, anthropic_client, replay_server) -> None:
    from vendor_server import anthropic_message_reply

    replay_server.enqueue(anthropic_message_reply(MODEL, input_tokens=1000, output_tokens=10))
    anthropic_client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    (span,) = instrumented.cost_spans()
    assert semconv.AICOST_PRICE_TIER not in span.attributes
    assert semconv.AICOST_PRICE_TIER_REASON not in span.attributes


def test_price_call_follows_the_same_rule() -> None:
    usage = Usage(input_tokens=INPUT, output_tokens=OUTPUT, web_search_requests=SEARCHES)
    without = price_call("anthropic", MODEL, usage, long_context=False)
    assert (without.total, without.tier, without.tier_reason) == (BASE, None, "long_context_not_enabled")
    with_beta = price_call("anthropic", MODEL, usage, long_context=True)
    assert (with_beta.total, with_beta.tier, with_beta.tier_reason) == (PREMIUM, "input>200000", "input_over_threshold")
    # Not told (a direct caller pricing one request): the reported input is one request's input.
    assert price_call("anthropic", MODEL, usage).total == PREMIUM
    # The same model on Vertex follows Anthropic's rule; other vendors' bands apply by input alone. (Vertex's table
    # lists no web search rate for Claude: there a call with searches has no price, so none are reported here.)
    vertex, tokens = "claude-sonnet-4-5@20250929", Usage(input_tokens=INPUT, output_tokens=OUTPUT)
    assert price_call("gcp.vertex_ai", vertex, tokens, long_context=True).tier == "input>200000"
    assert price_call("gcp.vertex_ai", vertex, tokens, long_context=False).tier is None
    gemini = price_call("gcp.gemini", "gemini-2.5-pro", Usage(input_tokens=250_000, output_tokens=10),
                        long_context=False)
    assert gemini.tier == "input>200000" and gemini.tier_reason == "input_over_threshold"


def test_a_long_context_hint_given_as_a_callable_is_asked_only_when_the_input_crosses_a_threshold() -> None:
    # The Anthropic integration passes its header scan uncalled: nearly no call is large enough to need it.
    asked: list[int] = []

    def enabled(answer: bool):
        def ask() -> bool:
            asked.append(1)
            return answer
        return ask

    small = price_call("anthropic", MODEL, Usage(input_tokens=9, output_tokens=2), long_context=enabled(False))
    assert small.tier_reason is None and asked == []
    usage = Usage(input_tokens=INPUT, output_tokens=OUTPUT, web_search_requests=SEARCHES)
    assert price_call("anthropic", MODEL, usage, long_context=enabled(False)).total == BASE
    assert price_call("anthropic", MODEL, usage, long_context=enabled(True)).total == PREMIUM
    assert len(asked) == 2
    # A model whose bands apply by input alone never asks.
    gemini = price_call("gcp.gemini", "gemini-2.5-pro", Usage(input_tokens=250_000, output_tokens=10),
                        long_context=enabled(False))
    assert gemini.tier == "input>200000" and len(asked) == 2


def paused_search_stream() -> Reply:
    """The same paused search turn, streamed: usage in message_start, cumulative totals in message_delta."""
    from vendor_server import sse

    def events():
        start = {"input_tokens": INPUT, "output_tokens": 1, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0, "service_tier": "standard"}
        yield sse({"type": "message_start", "message": {
            "id": "msg_paused", "type": "message", "role": "assistant", "model": MODEL, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start}}, "message_start")
        yield sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                  "content_block_start")
        yield sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Still"}},
                  "content_block_delta")
        yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        yield sse({"type": "message_delta", "delta": {"stop_reason": "pause_turn", "stop_sequence": None},
                   "usage": {"input_tokens": INPUT, "output_tokens": OUTPUT, "cache_creation_input_tokens": 0,
                             "cache_read_input_tokens": 0, "server_tool_use": {"web_search_requests": SEARCHES}}},
                  "message_delta")
        yield sse({"type": "message_stop"}, "message_stop")

    return Reply.stream(events)


@pytest.mark.parametrize("beta", [False, True])
def test_streams_follow_the_same_rule(beta, instrumented, anthropic_client, replay_server) -> None:
    replay_server.enqueue(paused_search_stream())
    request = dict(model=MODEL, max_tokens=2048, messages=[{"role": "user", "content": "research this"}],
                   tools=[{"type": "web_search_20250305", "name": "web_search"}])
    if beta:
        manager = anthropic_client.beta.messages.stream(betas=["context-1m-2025-08-07"], **request)
    else:
        manager = anthropic_client.messages.stream(**request)
    with manager as stream:
        assert stream.get_final_message().stop_reason == "pause_turn"
    (span,) = instrumented.cost_spans()
    a = span.attributes
    # With the beta and no per-step usage: which steps were over 200K is unknown (see below).
    assert Decimal(a[semconv.AICOST_COST_TOTAL]) == BASE
    assert a[semconv.AICOST_PRICE_TIER_REASON] == ("step_inputs_unknown" if beta else "long_context_not_enabled")
    assert a.get(semconv.AICOST_COST_ESTIMATED, False) is beta


# ----------------------------------------------------------------------------- with the 1M beta: step by step
# Anthropic bills the long-context rates to a sampling step whose OWN input (cache reads and writes included)
# exceeds 200K. With the beta on, a server-side tool loop whose steps are each under 200K is billed at base rates
# however large their sum; a step over it is billed at the long-context rates, the other steps are not. The beta
# ``usage.iterations`` reports each step ("model sampling iterations, such as the turns of a server-side tool use
# loop", anthropic 2.17's BetaUsage), and the top-level usage is their sum.
#
# There is no real recording of a loop over 200K with iterations: the bodies below are built from the SDK's types
# (BetaUsage, BetaMessageIterationUsage, BetaMessageDeltaUsage) and Anthropic's docs, not captured from the API.

BETA = ["context-1m-2025-08-07"]
BETA_HEADER = {"anthropic-beta": "context-1m-2025-08-07"}


def step(input_tokens: int, output_tokens: int, cache_read: int = 0) -> dict:
    return {"type": "message", "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cache_read}


def summed(steps: list[dict], searches: int) -> dict:
    return {"input_tokens": sum(s["input_tokens"] for s in steps),
            "output_tokens": sum(s["output_tokens"] for s in steps),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": sum(s["cache_read_input_tokens"] for s in steps),
            "server_tool_use": {"web_search_requests": searches, "web_fetch_requests": 0},
            "service_tier": "standard", "iterations": steps}


def search_blocks(searches: int) -> list[dict]:
    return [{"type": "server_tool_use", "id": f"srvtoolu_{i:02d}", "name": "web_search",
             "input": {"query": f"query {i}"}} for i in range(searches)]


def loop_reply(steps: list[dict], searches: int, usage: dict | None = None) -> Reply:
    """A paused web-search loop, non-streaming, its usage reported per step in ``usage.iterations``. Built from the
    SDK's types, not recorded: no recording of such a loop exists."""
    return Reply.json({
        "id": "msg_loop", "type": "message", "role": "assistant", "model": MODEL,
        "content": search_blocks(searches) + [{"type": "text", "text": "Still researching."}],
        "stop_reason": "pause_turn", "stop_sequence": None, "usage": usage or summed(steps, searches),
    })


def loop_stream(steps: list[dict], searches: int) -> Reply:
    """The same loop streamed: the first step's input in ``message_start``, cumulative totals and the iterations
    in the final ``message_delta``, a ``content_block_start`` per server tool call. Built, not recorded, as above."""
    from vendor_server import sse

    total = summed(steps, searches)

    def events():
        first = steps[0]
        yield sse({"type": "message_start", "message": {
            "id": "msg_loop", "type": "message", "role": "assistant", "model": MODEL, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": first["input_tokens"], "output_tokens": 1, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": first["cache_read_input_tokens"], "service_tier": "standard"}}},
            "message_start")
        for i, block in enumerate(search_blocks(searches)):
            yield sse({"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}},
                      "content_block_start")
            yield sse({"type": "content_block_stop", "index": i}, "content_block_stop")
        yield sse({"type": "content_block_start", "index": searches, "content_block": {"type": "text", "text": ""}},
                  "content_block_start")
        yield sse({"type": "content_block_delta", "index": searches,
                   "delta": {"type": "text_delta", "text": "Still researching."}}, "content_block_delta")
        yield sse({"type": "content_block_stop", "index": searches}, "content_block_stop")
        yield sse({"type": "message_delta", "delta": {"stop_reason": "pause_turn", "stop_sequence": None},
                   "usage": {k: v for k, v in total.items() if k != "service_tier"}}, "message_delta")
        yield sse({"type": "message_stop"}, "message_stop")

    return Reply.stream(events)


# The audit's loop: 10 steps, 401,468 input tokens in all, every step under 200K.
UNDER = [step(30_000 + 1_000 * i, 104) for i in range(9)] + [step(401_468 - sum(30_000 + 1_000 * i for i in range(9)),
                                                                    104)]
# A loop that grows past 200K: its last step's own input is 210,500 (10,500 new + 200,000 read from the cache).
CROSSING = [step(150_000, 300), step(190_000, 400), step(10_500, 500, cache_read=200_000)]
CROSSING_COST = (per_m(150_000 + 190_000, "3") + per_m(300 + 400, "15")  # the steps under 200K: base rates
                 + per_m(10_500, "6") + per_m(200_000, "0.6") + per_m(500, "22.5")  # the step over: long context
                 + 2 * Decimal("0.01"))  # two searches at $10 per 1,000


def _loop_call(client, stream: bool, via: str):
    request = dict(model=MODEL, max_tokens=2048, messages=[{"role": "user", "content": "research this"}],
                   tools=[{"type": "web_search_20250305", "name": "web_search"}])
    if via == "betas":
        resource, request = client.beta.messages, {**request, "betas": BETA}
    else:  # the non-beta resource, beta enabled by header: the iterations are an undeclared field of its Usage
        resource, request = client.messages, {**request, "extra_headers": BETA_HEADER}
    if stream:
        with resource.stream(**request) as events:
            return events.get_final_message()
    return resource.create(**request)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("via", ["betas", "header"])
def test_with_the_beta_a_loop_whose_steps_are_each_under_200k_is_billed_at_base_rates(
        stream, via, instrumented, anthropic_client, replay_server) -> None:
    """Fails before per-step pricing: the 401,468 summed tokens were billed at the long-context rates ($2.53)."""
    replay_server.enqueue((loop_stream if stream else loop_reply)(UNDER, SEARCHES))
    assert _loop_call(anthropic_client, stream, via).stop_reason == "pause_turn"
    (span,) = instrumented.cost_spans()
    a = span.attributes
    assert a[semconv.GEN_AI_USAGE_INPUT_TOKENS] == INPUT
    assert Decimal(a[semconv.AICOST_COST_TOTAL]) == BASE
    assert a[semconv.AICOST_PRICE_TIER_REASON] == "steps_under_threshold"
    assert semconv.AICOST_PRICE_TIER not in a and semconv.AICOST_COST_ESTIMATED not in a


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("via", ["betas", "header"])
def test_with_the_beta_only_the_steps_over_200k_are_billed_at_the_long_context_rates(
        stream, via, instrumented, anthropic_client, replay_server) -> None:
    """Fails before per-step pricing: the whole call, 550,500 input tokens, was billed at the long-context rates."""
    replay_server.enqueue((loop_stream if stream else loop_reply)(CROSSING, 2))
    _loop_call(anthropic_client, stream, via)
    (span,) = instrumented.cost_spans()
    a = span.attributes
    assert a[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 550_500
    assert Decimal(a[semconv.AICOST_COST_TOTAL]) == CROSSING_COST
    assert a[semconv.AICOST_PRICE_TIER] == "input>200000"
    assert a[semconv.AICOST_PRICE_TIER_REASON] == "step_input_over_threshold"
    assert semconv.AICOST_COST_ESTIMATED not in a
    parts = {k: Decimal(str(v)) for k, v in a.items() if k.startswith("aicost.cost.") and k.endswith("_usd")
             and k != semconv.AICOST_COST_TOTAL}
    assert parts[semconv.AICOST_COST_PREFIX + "cache_read_usd"] == per_m(200_000, "0.6")
    assert parts[semconv.AICOST_COST_PREFIX + "web_search_usd"] == Decimal("0.02")


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_with_the_beta_a_loop_without_per_step_usage_is_an_estimate_at_base_rates(
        stream, instrumented, anthropic_client, replay_server) -> None:
    """No iterations: which steps were over 200K is unknown. Base rates (the least the call can have cost; at most
    it is the long-context price), said on the span. Fails before: priced at the long-context rates as exact."""
    replay_server.enqueue(paused_search_stream() if stream else paused_search_turn())
    _loop_call(anthropic_client, stream, "betas")
    (span,) = instrumented.cost_spans()
    a = span.attributes
    assert Decimal(a[semconv.AICOST_COST_TOTAL]) == BASE
    assert a[semconv.AICOST_PRICE_TIER_REASON] == "step_inputs_unknown"
    assert a[semconv.AICOST_COST_ESTIMATED] is True
    assert semconv.AICOST_PRICE_TIER not in a


def test_with_the_beta_iterations_that_do_not_add_up_are_an_estimate(
        instrumented, anthropic_client, replay_server) -> None:
    """Steps that are not the call's usage (here one step is missing) cannot say which steps were over 200K."""
    replay_server.enqueue(loop_reply(CROSSING, 2, usage={**summed(CROSSING, 2), "iterations": CROSSING[1:]}))
    _loop_call(anthropic_client, False, "betas")
    (span,) = instrumented.cost_spans()
    a = span.attributes
    assert a[semconv.AICOST_PRICE_TIER_REASON] == "step_inputs_unknown"
    assert a[semconv.AICOST_COST_ESTIMATED] is True
    assert Decimal(a[semconv.AICOST_COST_TOTAL]) == per_m(550_500 - 200_000, "3") + per_m(200_000, "0.3") + per_m(
        1_200, "15") + Decimal("0.02")


def test_price_call_prices_each_step_by_its_own_input() -> None:
    """The same rule through ``price_call(steps=...)``; a per-request fee is charged once, not once per band."""
    from aicost import pricing

    steps = (Usage(input_tokens=150_000, output_tokens=300), Usage(input_tokens=250_000, output_tokens=500))
    usage = steps[0] + steps[1]
    cost = price_call("anthropic", MODEL, usage, long_context=True, steps=steps)
    assert cost.total == per_m(150_000, "3") + per_m(300, "15") + per_m(250_000, "6") + per_m(500, "22.5")
    assert (cost.tier, cost.tier_reason, cost.estimated) == ("input>200000", "step_input_over_threshold", False)
    assert sum(cost.parts.values()) == cost.total
    unknown = price_call("anthropic", MODEL, usage, long_context=True, steps=())
    assert (unknown.total, unknown.tier, unknown.tier_reason, unknown.estimated) == (
        per_m(400_000, "3") + per_m(800, "15"), None, "step_inputs_unknown", True)
    # Steps larger than the call they belong to are not believed.
    too_big = price_call("anthropic", MODEL, usage, long_context=True, steps=(steps[1], steps[1]))
    assert too_big.tier_reason == "step_inputs_unknown"
    # Without the beta no step can be over 200K, whatever the steps say.
    assert price_call("anthropic", MODEL, usage, long_context=False, steps=steps).tier_reason == \
        "long_context_not_enabled"
    # A price with a per-request fee: once per call, whatever the bands.
    free_output = {"output": Decimal(0)}  # a rate of 0: with no output rate at all, the output has no price
    fee = pricing.ModelPrice(provider="p", model="m", rates={"input": Decimal(1), "request": Decimal(5), **free_output},
                             tiers=((200_000, {"input": Decimal(2), **free_output}),))
    priced = fee.cost(usage, steps=steps)
    assert priced.parts["request"] == Decimal("0.005")
    assert priced.total == per_m(150_000, "1") + per_m(250_000, "2") + Decimal("0.005")

