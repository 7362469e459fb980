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


@pytest.mark.parametrize("how", ["betas", "extra_headers", "default_headers"])
def test_a_request_with_the_1m_beta_over_200k_is_billed_at_the_long_context_rates(
        how, instrumented, anthropic_client, replay_server) -> None:
    from vendor_server import anthropic_client as make_client

    replay_server.enqueue(paused_search_turn())
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
    assert Decimal(a[semconv.AICOST_COST_TOTAL]) == PREMIUM
    assert a[semconv.AICOST_PRICE_TIER] == "input>200000"
    assert a[semconv.AICOST_PRICE_TIER_REASON] == "input_over_threshold"


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
    # The same model on Vertex follows Anthropic's rule; other vendors' bands apply by input alone.
    vertex = "claude-sonnet-4-5@20250929"
    assert price_call("gcp.vertex_ai", vertex, usage, long_context=True).tier == "input>200000"
    assert price_call("gcp.vertex_ai", vertex, usage, long_context=False).tier is None
    gemini = price_call("gcp.gemini", "gemini-2.5-pro", Usage(input_tokens=250_000, output_tokens=10),
                        long_context=False)
    assert gemini.tier == "input>200000" and gemini.tier_reason == "input_over_threshold"


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
    assert Decimal(span.attributes[semconv.AICOST_COST_TOTAL]) == (PREMIUM if beta else BASE)
