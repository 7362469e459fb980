"""What Google bills for its service tiers and experimental models, through the real google-genai SDK over HTTP.

* Priority (Vertex AI Priority PayGo, ``usageMetadata.trafficType: ON_DEMAND_PRIORITY``, or the Gemini API's
  ``service_tier="priority"``) is billed above standard, at per-model rates ("75% to 100% more than standard",
  ai.google.dev/gemini-api/docs/optimization; "a higher rate than Standard PayGo", Vertex AI Priority PayGo docs).
  The catalog lists none, so such a call is cost-unknown with the reason, never priced at the standard rate;
  a price override for the tier prices it. A response that says it was served at standard is standard.
* Experimental 2.0 Flash builds have no published price (free tier only): unknown, never 2.0 Flash's price or $0.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from aicost.pricing import clear_overrides, price_call, set_price, unknown_models
from aicost.usage import Usage
from vendor_server import Reply

genai = pytest.importorskip("google.genai")
from google.genai import types  # noqa: E402
from google.oauth2.credentials import Credentials  # noqa: E402

USAGE = {"promptTokenCount": 1000, "candidatesTokenCount": 100, "totalTokenCount": 1100}


def _answer(usage: dict, model: str = "gemini-2.5-flash") -> Reply:
    return Reply.json({"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP",
                                       "index": 0}], "usageMetadata": usage, "modelVersion": model})


def _vertex(server, headers=None):
    return genai.Client(vertexai=True, project="p", location="global", credentials=Credentials(token="t"),
                        http_options=types.HttpOptions(base_url=server.url, headers=headers,
                                                       retry_options=types.HttpRetryOptions(attempts=1)))


def _gemini(server):
    return genai.Client(api_key="t", http_options=types.HttpOptions(
        base_url=server.url, retry_options=types.HttpRetryOptions(attempts=1)))


def test_vertex_priority_paygo_is_cost_unknown_not_standard(instrumented, replay_server):
    replay_server.enqueue(_answer({**USAGE, "trafficType": "ON_DEMAND_PRIORITY"}))
    client = _vertex(replay_server)  # held: a collected Client closes its HTTP client
    client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    (span,) = instrumented.aicost_spans()
    attrs = span.attributes
    assert attrs["aicost.price.known"] is False and "aicost.cost.total_usd" not in attrs
    assert attrs["aicost.service_tier"] == "priority"
    assert "priority tier" in attrs["aicost.price.unknown_reason"]
    assert attrs["gen_ai.usage.input_tokens"] == 1000  # the usage is still the vendor's, exact


def test_priority_paygo_answered_by_an_unlisted_snapshot_says_the_tier_is_why(instrumented, replay_server):
    # The answer names a build the catalog lacks; the model asked for is priced, but not at Priority PayGo.
    replay_server.enqueue(_answer({**USAGE, "trafficType": "ON_DEMAND_PRIORITY"}, model="gemini-2.5-flash-internal-7"))
    client = _vertex(replay_server)
    client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    (span,) = instrumented.aicost_spans()
    assert span.attributes["aicost.price.known"] is False
    assert "bills the priority tier at per-model rates" in span.attributes["aicost.price.unknown_reason"]
    listed = {u.model for u in unknown_models()}  # neither name is an unknown model: the tier is unpriced
    assert not listed & {"gemini-2.5-flash-internal-7", "gemini-2.5-flash"}


def test_a_budget_refuses_a_priority_call_with_the_tier_reason_the_span_would_carry(instrumented, replay_server):
    """The worst case of a priority call cannot be reserved: the refusal says why as pricing does (the tier,
    not "no price for the model"), the reason ``Cost.unknown_reason`` gives the span of such a call."""
    from aicost.budget import Budget, PolicyViolation, configure_budgets, disable_budgets, process_memory_store

    reason = price_call("gcp.gemini", "gemini-2.5-flash", Usage(input_tokens=1),
                        service_tier="priority").unknown_reason
    configure_budgets(budgets=[Budget(limit_usd="1", window="day", name="gemini")])
    try:
        client = _gemini(replay_server)
        with pytest.raises(PolicyViolation) as refused:
            client.models.generate_content(model="gemini-2.5-flash", contents="hi",
                                           config=types.GenerateContentConfig(service_tier="priority"))
    finally:
        disable_budgets()
        process_memory_store().reset()
    assert replay_server.requests == []  # nothing was sent
    assert refused.value.rule == "unknown_price"
    assert reason and refused.value.detail.startswith(reason + ", so its worst-case cost cannot be reserved")
    assert "no price is known" not in refused.value.detail


def test_a_priority_price_override_prices_it(instrumented, replay_server):
    set_price("gemini-2.5-flash", provider="gcp.vertex_ai", service_tier="priority", input="0.54", output="4.5")
    try:
        replay_server.enqueue(_answer({**USAGE, "trafficType": "ON_DEMAND_PRIORITY"}))
        client = _vertex(replay_server)
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    finally:
        clear_overrides()
    (span,) = instrumented.aicost_spans()
    assert Decimal(span.attributes["aicost.cost.total_usd"]) == (1000 * Decimal("0.54") + 100 * Decimal("4.5")) / 10**6


def test_the_request_tier_prices_a_call_whose_response_names_none(instrumented, replay_server):
    # The Gemini API's response does not carry its tier through the SDK: the request's service_tier stands in.
    replay_server.enqueue(_answer(USAGE))
    client = _gemini(replay_server)
    client.models.generate_content(model="gemini-2.5-flash", contents="hi",
                                   config=types.GenerateContentConfig(service_tier="priority"))
    assert replay_server.requests[0].json["serviceTier"] == "priority"
    (span,) = instrumented.aicost_spans()
    assert span.attributes["aicost.price.known"] is False
    assert span.attributes["aicost.service_tier"] == "priority"
    assert "priority tier" in span.attributes["aicost.price.unknown_reason"]  # pricing's reason, whichever side named it


def test_a_response_served_at_standard_is_standard_whatever_the_request_asked(instrumented, replay_server):
    # Vertex: the header asks for Priority PayGo; the response says the call ran on standard PayGo (ON_DEMAND).
    replay_server.enqueue(_answer({**USAGE, "trafficType": "ON_DEMAND"}))
    client = _vertex(replay_server, headers={"X-Vertex-AI-LLM-Shared-Request-Type": "priority"})
    client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert replay_server.requests[0].headers["x-vertex-ai-llm-shared-request-type"] == "priority"
    (span,) = instrumented.aicost_spans()
    assert Decimal(span.attributes["aicost.cost.total_usd"]) == (1000 * Decimal("0.3") + 100 * Decimal("2.5")) / 10**6


def test_the_priority_header_alone_makes_the_price_unknown(instrumented, replay_server):
    replay_server.enqueue(_answer(USAGE))  # no trafficType in the answer
    client = _vertex(replay_server, headers={"X-Vertex-AI-LLM-Shared-Request-Type": "priority"})
    client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    (span,) = instrumented.aicost_spans()
    assert span.attributes["aicost.price.known"] is False


@pytest.mark.parametrize("model", ["gemini-2.0-flash-exp", "gemini-2.0-flash-thinking-exp-01-21",
                                   "gemini-2.0-flash-thinking-exp-1219", "gemini-2.0-flash-exp-image-generation"])
def test_experimental_2_0_flash_builds_have_no_price(model):
    cost = price_call("gcp.gemini", model, Usage(input_tokens=1000, output_tokens=100))
    assert cost.known is False and cost.total is None


@pytest.mark.parametrize("model", ["gemini-2.0-flash", "gemini-2.0-flash-001", "gemini-2.0-flash-lite"])
def test_released_2_0_flash_models_keep_their_price(model):
    cost = price_call("gcp.gemini", model, Usage(input_tokens=1000, output_tokens=100))
    assert cost.known is True and cost.total > 0
