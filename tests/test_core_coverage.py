"""Every entry point issue 2 names, through the real SDKs over loopback HTTP: one costed span each."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import anthropic
import pydantic
import pytest

from aicost import semconv as s
from vendor_server import (
    anthropic_message_reply,
    anthropic_stream_reply,
    openai_chat_reply,
    openai_responses_reply,
    openai_responses_stream_reply,
)

MSG = [{"role": "user", "content": "What is the capital of France?"}]


class Answer(pydantic.BaseModel):
    city: str


def cost_span(instrumented):
    spans = instrumented.cost_spans()
    assert len(spans) == 1, [(x.name, dict(x.attributes or {})) for x in instrumented.spans()]
    return dict(spans[0].attributes)


def test_chat_parse(instrumented, replay_server, openai_client):
    replay_server.enqueue(openai_chat_reply("gpt-4o-2024-08-06", text='{"city": "Paris"}', prompt_tokens=100,
                                            completion_tokens=10))
    parsed = openai_client.chat.completions.parse(model="gpt-4o", messages=MSG, response_format=Answer)
    assert parsed.choices[0].message.parsed == Answer(city="Paris")
    a = cost_span(instrumented)
    assert a[s.AICOST_ENDPOINT] == "openai.chat.completions.parse"
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (100 * Decimal("2.50") + 10 * Decimal("10")) / 10**6


def test_responses_create_parse_and_compact(instrumented, replay_server, openai_client):
    replay_server.enqueue(openai_responses_reply("gpt-4.1-nano-2025-04-14", input_tokens=50, output_tokens=5))
    openai_client.responses.create(model="gpt-4.1-nano", input="hello")
    replay_server.enqueue(openai_responses_reply("gpt-4.1-nano-2025-04-14", input_tokens=50, output_tokens=5))
    openai_client.responses.parse(model="gpt-4.1-nano", input="hello")
    from vendor_server import Reply

    # A compaction has usage but no model field: it is priced by the model the request named.
    replay_server.enqueue(Reply.json({"id": "cmp_1", "object": "response.compaction", "created_at": 1_700_000_000,
                                      "output": [], "usage": {"input_tokens": 1000, "output_tokens": 100,
                                                              "total_tokens": 1100,
                                                              "input_tokens_details": {"cached_tokens": 0},
                                                              "output_tokens_details": {"reasoning_tokens": 0}}}))
    openai_client.responses.compact(model="gpt-4.1-nano", input="a long conversation")
    spans = {dict(x.attributes)[s.AICOST_ENDPOINT]: dict(x.attributes) for x in instrumented.cost_spans()}
    assert sorted(spans) == ["openai.responses.compact", "openai.responses.create", "openai.responses.parse"]
    compact = spans["openai.responses.compact"]
    assert Decimal(compact[s.AICOST_COST_TOTAL]) == (1000 * Decimal("0.10") + 100 * Decimal("0.40")) / 10**6


def test_resumed_responses_stream_is_billed_polling_is_not(instrumented, replay_server, openai_client):
    replay_server.enqueue(openai_responses_reply("gpt-4.1-nano-2025-04-14", input_tokens=50, output_tokens=5))
    openai_client.responses.retrieve("resp_replay")  # polling a finished response: not a new charge
    assert instrumented.cost_spans() == []
    replay_server.enqueue(openai_responses_stream_reply(12, input_tokens=40))
    events = list(openai_client.responses.retrieve("resp_replay", stream=True))
    assert events[-1].type == "response.completed"
    a = cost_span(instrumented)
    assert a[s.AICOST_ENDPOINT] == "openai.responses.retrieve"
    assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 40 and a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 12


def test_anthropic_parse_and_beta(instrumented, replay_server, anthropic_client):
    replay_server.enqueue(anthropic_message_reply(input_tokens=30, output_tokens=3))
    anthropic_client.messages.parse(model="claude-3-5-haiku-20241022", max_tokens=20, messages=MSG)
    replay_server.enqueue(anthropic_message_reply(input_tokens=30, output_tokens=3))
    anthropic_client.beta.messages.create(model="claude-3-5-haiku-20241022", max_tokens=20, messages=MSG)
    replay_server.enqueue(anthropic_stream_reply(4, input_tokens=30))
    with anthropic_client.beta.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=20, messages=MSG) as st:
        st.get_final_message()
    endpoints = sorted(dict(x.attributes)[s.AICOST_ENDPOINT] for x in instrumented.cost_spans())
    assert endpoints == ["anthropic.beta.messages.create", "anthropic.beta.messages.stream", "anthropic.messages.parse"]


@pytest.mark.parametrize("beta", [False, True])
def test_vertex_client(instrumented, replay_server, beta):
    client = anthropic.AnthropicVertex(region="us-east5", project_id="p", access_token="token",
                                       base_url=replay_server.url + "/v1", max_retries=0)
    replay_server.enqueue(anthropic_message_reply("claude-3-5-haiku@20241022", input_tokens=100, output_tokens=10))
    messages = client.beta.messages if beta else client.messages
    messages.create(model="claude-3-5-haiku@20241022", max_tokens=20, messages=MSG)
    assert replay_server.requests[-1].path.endswith("claude-3-5-haiku@20241022:rawPredict")
    a = cost_span(instrumented)
    assert a[s.GEN_AI_PROVIDER_NAME] == "gcp.vertex_ai"
    assert a[s.AICOST_ENDPOINT] == ("anthropic.vertex.beta.messages.create" if beta else "anthropic.messages.create")
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (100 * Decimal("0.80") + 10 * Decimal("4")) / 10**6


@pytest.mark.parametrize("beta", [False, True])
def test_bedrock_client(instrumented, replay_server, beta):
    import boto3  # noqa: F401  (in the test extra, via anthropic[bedrock]: the Bedrock client signs with it)
    client = anthropic.AnthropicBedrock(aws_region="us-east-1", aws_access_key="AKIAEXAMPLE",
                                        aws_secret_key="secret", base_url=replay_server.url, max_retries=0)
    model = "anthropic.claude-3-5-haiku-20241022-v1:0"
    replay_server.enqueue(anthropic_message_reply(model, input_tokens=100, output_tokens=10))
    messages = client.beta.messages if beta else client.messages
    messages.create(model=model, max_tokens=20, messages=MSG)
    assert replay_server.requests[-1].path == f"/model/{model}/invoke"
    assert "authorization" in replay_server.requests[-1].headers  # signed, yet never on the span
    a = cost_span(instrumented)
    assert a[s.GEN_AI_PROVIDER_NAME] == "aws.bedrock"
    assert a[s.AICOST_ENDPOINT] == ("anthropic.bedrock.beta.messages.create" if beta else "anthropic.messages.create")
    assert a[s.AICOST_PRICE_KNOWN] is True and Decimal(a[s.AICOST_COST_TOTAL]) > 0
    assert not any("AKIAEXAMPLE" in str(v) for v in a.values())


# Beta usage.iterations: per the SDK, "a compaction entry's tokens are not included in the top-level usage fields",
# yet they are billed. Top level here: 30 in / 3 out; the compaction: 5000 in + 1000 cache read / 400 out.
_ITERATIONS = [
    {"type": "compaction", "input_tokens": 5000, "output_tokens": 400, "cache_read_input_tokens": 1000,
     "cache_creation_input_tokens": 0},
    {"type": "message", "input_tokens": 30, "output_tokens": 3, "cache_read_input_tokens": 0,
     "cache_creation_input_tokens": 0},
]
# claude-3-5-haiku: $0.80 in, $0.08 cache read, $4 out per million tokens
_WITH_COMPACTION = ((30 + 5000) * Decimal("0.80") + 1000 * Decimal("0.08") + (3 + 400) * Decimal("4")) / 10**6


def _compaction_usage_on(a: dict) -> None:
    """Counts and cost include the compaction, on aicost's span and on the SDK's own (which says only 30 in)."""
    assert Decimal(a[s.AICOST_COST_TOTAL]) == _WITH_COMPACTION
    assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 6030 and a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 403
    assert a[s.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 1000


@pytest.mark.parametrize("native", [True, False])
def test_anthropic_beta_compaction_iterations_are_billed(instrumented, replay_server, native):
    from vendor_server import Reply, anthropic_client

    client = anthropic_client(replay_server, **({} if native else {"open_telemetry": False}))

    replay_server.enqueue(Reply.json({
        "id": "msg_c", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 3, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0, "iterations": _ITERATIONS}}))
    message = client.beta.messages.create(model="claude-3-5-haiku-20241022", max_tokens=20, messages=MSG)
    assert message.usage.input_tokens == 30  # the application sees the response untouched
    a = cost_span(instrumented)
    assert a[s.AICOST_SPAN_SOURCE] == ("anthropic-sdk" if native else "aicost")
    _compaction_usage_on(a)


def _anthropic_stream(model: str, start_usage: dict, final_usage: dict) -> Any:
    """A one-text-block Anthropic message stream: ``message_start`` with ``start_usage``, the final (cumulative)
    ``message_delta`` with ``final_usage``, which is where beta ``usage.iterations`` arrive."""
    from vendor_server import Reply, sse

    def events():
        yield sse({"type": "message_start", "message": {
            "id": "msg_s", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}}, "message_start")
        yield sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                  "content_block_start")
        yield sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}},
                  "content_block_delta")
        yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        yield sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                   "usage": final_usage}, "message_delta")
        yield sse({"type": "message_stop"}, "message_stop")

    return Reply.stream(events)


def test_anthropic_beta_stream_compaction_iterations_are_billed(instrumented, replay_server, anthropic_client):
    start = {"input_tokens": 30, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    replay_server.enqueue(_anthropic_stream("claude-3-5-haiku-20241022", start,
                                            {**start, "output_tokens": 3, "iterations": _ITERATIONS}))
    with anthropic_client.beta.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=20, messages=MSG) as st:
        final = st.get_final_message()
    assert final.usage.output_tokens == 3
    _compaction_usage_on(cost_span(instrumented))


# Responses' hosted image generation: the SDK's ToolUsage is "usage reported by hosted tools, separate from base
# model usage"; the images are billed at the image model's rates. gpt-4.1-nano: $0.10 in / $0.40 out; gpt-image-1.5:
# $5 text in, $8 image in, $1.25 cached, $32 image out per million tokens.
def _responses_with_image_tool(image_gen: dict) -> dict:
    from vendor_server import _response_object

    body = _response_object("gpt-4.1-nano-2025-04-14", "completed", 20, 50, "Here is your image.")
    body["tool_usage"] = {"image_gen": image_gen, "web_search": {"num_requests": 0}}
    return body


_IMAGE_GEN = {"input_tokens": 60, "input_tokens_details": {"image_tokens": 20, "text_tokens": 40},
              "output_tokens": 4160, "total_tokens": 4220,
              "output_tokens_details": {"image_tokens": 4160, "text_tokens": 0}}
_NANO = (50 * Decimal("0.10") + 20 * Decimal("0.40")) / 10**6


def test_responses_hosted_image_generation_is_billed_at_the_image_model(instrumented, replay_server, openai_client):
    from vendor_server import Reply

    replay_server.enqueue(Reply.json(_responses_with_image_tool(_IMAGE_GEN)))
    openai_client.responses.create(model="gpt-4.1-nano", input="draw a cat",
                                   tools=[{"type": "image_generation", "model": "gpt-image-1.5"}])
    a = cost_span(instrumented)
    image = (40 * Decimal("5") + 20 * Decimal("8") + 4160 * Decimal("32")) / 10**6
    assert Decimal(a[s.AICOST_COST_TOTAL]) == _NANO + image
    assert a["aicost.cost.image_generation_usd"] == float(image)
    assert a["aicost.image_generation.model"] == "gpt-image-1.5"
    assert a["aicost.usage.image_generation.output_tokens"] == 4160
    assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 50 and a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 20  # the base model's


def test_responses_hosted_image_generation_cached_tokens_and_omitted_details(instrumented, replay_server,
                                                                            openai_client):
    """Cached input is priced at the image model's cached rates (text and image apart); omitted output details
    mean image output."""
    from vendor_server import Reply

    image_gen = {"input_tokens": 100, "input_tokens_details": {"image_tokens": 30, "text_tokens": 70},
                 "cached_tokens": 50, "cached_tokens_details": {"cached_image_tokens": 10, "cached_text_tokens": 40},
                 "output_tokens": 1000, "total_tokens": 1100}
    replay_server.enqueue(Reply.json(_responses_with_image_tool(image_gen)))
    openai_client.responses.create(model="gpt-4.1-nano", input="draw a cat",
                                   tools=[{"type": "image_generation", "model": "gpt-image-1.5"}])
    a = cost_span(instrumented)
    # 20 uncached image tokens, 50 cached (10 image at $2, 40 text at $1.25), 30 plain text; 1000 image tokens out
    image = (30 * Decimal("5") + 20 * Decimal("8") + 40 * Decimal("1.25") + 10 * Decimal("2")
             + 1000 * Decimal("32")) / 10**6
    assert Decimal(a[s.AICOST_COST_TOTAL]) == _NANO + image


def test_responses_image_tool_without_a_model_leaves_the_cost_unknown(instrumented, replay_server, openai_client):
    """The vendor's default image model is not named in the response: no guess, and no total without it."""
    from vendor_server import Reply

    replay_server.enqueue(Reply.json(_responses_with_image_tool(_IMAGE_GEN)))
    openai_client.responses.create(model="gpt-4.1-nano", input="draw a cat", tools=[{"type": "image_generation"}])
    assert instrumented.cost_spans() == []
    (span,) = instrumented.aicost_spans()
    assert span.attributes[s.AICOST_PRICE_KNOWN] is False
    assert span.attributes["aicost.usage.image_generation.output_tokens"] == 4160


def test_responses_without_image_tool_usage_add_nothing(instrumented, replay_server, openai_client):
    """ToolUsage "when present, tool families with no recorded usage have zero counts"."""
    from vendor_server import Reply

    replay_server.enqueue(Reply.json(_responses_with_image_tool(
        {"input_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0}, "output_tokens": 0,
         "total_tokens": 0})))
    openai_client.responses.create(model="gpt-4.1-nano", input="hi")
    a = cost_span(instrumented)
    assert Decimal(a[s.AICOST_COST_TOTAL]) == _NANO
    assert not any("image_generation" in k for k in a)


# The advisor tool (Anthropic's docs, "Usage and billing"): "Top-level usage fields reflect executor tokens only.
# Advisor tokens are not rolled into the top-level totals because they are billed at a different rate", and
# advisor_message iterations "are billed at the advisor model's rates". The docs' own example, with the executor
# claude-sonnet-4-6 ($3 in, $0.30 cache read, $15 out per million) and the advisor claude-opus-4-6 ($5 / $25):
# the top level is the sum of the two executor entries only.
_ADVISOR_TOP = {"input_tokens": 1760, "output_tokens": 531, "cache_read_input_tokens": 412,
                "cache_creation_input_tokens": 0}
_ADVISOR_ITERATIONS = [
    {"type": "message", "input_tokens": 412, "output_tokens": 89, "cache_read_input_tokens": 0,
     "cache_creation_input_tokens": 0},
    {"type": "advisor_message", "model": "claude-opus-4-6", "input_tokens": 823, "output_tokens": 1612,
     "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
    {"type": "message", "input_tokens": 1348, "output_tokens": 442, "cache_read_input_tokens": 412,
     "cache_creation_input_tokens": 0},
]
_EXECUTOR_COST = (1760 * Decimal("3") + 412 * Decimal("0.30") + 531 * Decimal("15")) / 10**6
_ADVISOR_COST = (823 * Decimal("5") + 1612 * Decimal("25")) / 10**6


def _advisor_message(iterations=_ADVISOR_ITERATIONS, model="claude-sonnet-4-6") -> dict:
    return {"id": "msg_a", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "done"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {**_ADVISOR_TOP, "iterations": iterations}}


def _advisor_billed_on(a: dict) -> None:
    """Executor tokens stay gen_ai.usage.* (the vendor's top level); the advisor's are priced at its own model."""
    assert Decimal(a[s.AICOST_COST_TOTAL]) == _EXECUTOR_COST + _ADVISOR_COST
    assert a[s.GEN_AI_USAGE_COST] == float(_EXECUTOR_COST + _ADVISOR_COST)
    assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 1760 + 412 and a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 531
    assert a["aicost.advisor.model"] == "claude-opus-4-6"
    assert a["aicost.usage.advisor.input_tokens"] == 823 and a["aicost.usage.advisor.output_tokens"] == 1612
    assert a["aicost.cost.advisor_usd"] == float(_ADVISOR_COST)
    assert a[s.AICOST_PRICE_MODEL] == "claude-sonnet-4-6"  # the call is priced as the executor's, plus a part
    parts = [v for k, v in a.items() if k.startswith("aicost.cost.") and k.endswith("_usd") and k != s.AICOST_COST_TOTAL]
    assert sum(Decimal(str(v)) for v in parts) == pytest.approx(_EXECUTOR_COST + _ADVISOR_COST)


@pytest.mark.parametrize("native", [True, False])
def test_anthropic_advisor_iterations_are_billed_at_the_advisor_model(instrumented, replay_server, native):
    from vendor_server import Reply, anthropic_client

    client = anthropic_client(replay_server, **({} if native else {"open_telemetry": False}))
    replay_server.enqueue(Reply.json(_advisor_message()))
    message = client.beta.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=MSG)
    assert message.usage.input_tokens == 1760  # the application sees the response untouched
    a = cost_span(instrumented)
    assert a[s.AICOST_SPAN_SOURCE] == ("anthropic-sdk" if native else "aicost")
    _advisor_billed_on(a)
    cost_points = instrumented.metrics()["aicost.cost"]
    assert sum(Decimal(str(p.value)) for p in cost_points) == pytest.approx(_EXECUTOR_COST + _ADVISOR_COST)


def test_anthropic_advisor_iterations_on_the_non_beta_client(instrumented, replay_server, anthropic_client):
    """``messages.create`` with the beta header: the non-beta Usage keeps ``iterations`` as plain JSON."""
    from vendor_server import Reply

    replay_server.enqueue(Reply.json(_advisor_message()))
    anthropic_client.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=MSG,
                                     extra_headers={"anthropic-beta": "advisor-tool-2026-03-01"})
    _advisor_billed_on(cost_span(instrumented))


def test_anthropic_advisor_iterations_in_a_stream(instrumented, replay_server, anthropic_client):
    """Streams: "a message_delta event follows with the updated usage.iterations array" (cumulative)."""
    start = {"input_tokens": 412, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    replay_server.enqueue(_anthropic_stream("claude-sonnet-4-6", start,
                                            {**_ADVISOR_TOP, "iterations": _ADVISOR_ITERATIONS}))
    with anthropic_client.beta.messages.stream(model="claude-sonnet-4-6", max_tokens=20, messages=MSG) as st:
        st.get_final_message()
    _advisor_billed_on(cost_span(instrumented))


def test_an_unpriced_advisor_model_makes_the_call_cost_unknown_not_low(instrumented, replay_server, anthropic_client,
                                                                     caplog):
    from vendor_server import Reply

    iterations = [dict(e, model="claude-advisor-from-the-future") if e["type"] == "advisor_message" else e
                  for e in _ADVISOR_ITERATIONS]
    replay_server.enqueue(Reply.json(_advisor_message(iterations)))
    anthropic_client.beta.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=MSG)
    assert instrumented.cost_spans() == []  # no gen_ai.usage.cost that silently leaves the advisor out
    (span,) = instrumented.aicost_spans()
    a = dict(span.attributes)
    assert a[s.AICOST_PRICE_KNOWN] is False
    assert a[s.AICOST_PRICE_MODEL] == "claude-advisor-from-the-future"
    assert a["aicost.usage.advisor.output_tokens"] == 1612
    assert "claude-advisor-from-the-future" in caplog.text


def test_a_sub_inference_whose_pricing_failed_makes_the_cost_unknown_saying_why(instrumented, replay_server,
                                                                               anthropic_client, monkeypatch):
    """Pricing a call's sub-inferences raised inside aicost (here: naming the model of an advisor iteration that
    names none): the call's cost is unknown, never low, but its reason was the generic "no price for this model
    ... in the catalog", as if the catalog lacked a price. It is aicost's pricing that failed, said as for a call
    whose own pricing failed."""
    from vendor_server import Reply

    from aicost.integrations.anthropic import AnthropicIntegration

    def broken(self, kind, kwargs):
        raise RuntimeError("naming the sub-inference's model exploded")

    monkeypatch.setattr(AnthropicIntegration, "sub_inference_model", broken)
    iterations = [dict(e, model=None) if e["type"] == "advisor_message" else e for e in _ADVISOR_ITERATIONS]
    replay_server.enqueue(Reply.json(_advisor_message(iterations)))
    anthropic_client.beta.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=MSG)
    (span,) = instrumented.aicost_spans()
    a = dict(span.attributes)
    assert a[s.AICOST_PRICE_KNOWN] is False and s.GEN_AI_USAGE_COST not in a
    assert a[s.AICOST_PRICE_UNKNOWN_REASON].startswith("aicost's pricing failed on this call"), a


def test_a_sub_inference_whose_usage_failed_validation_makes_the_cost_unknown_saying_so(instrumented,
                                                                                      replay_server,
                                                                                      anthropic_client):
    """An advisor iteration whose usage fails validation (a negative count) is never priced as exact: the call's
    cost is unknown. Its reason was the generic "no price for this model ... in the catalog" while
    aicost.usage.invalid_reason said why; it now says the usage failed validation, worded as for a call whose own
    usage failed (pricing's reason), and names the advisor's model."""
    from vendor_server import Reply

    iterations = [dict(e, output_tokens=-5) if e["type"] == "advisor_message" else e for e in _ADVISOR_ITERATIONS]
    replay_server.enqueue(Reply.json(_advisor_message(iterations)))
    anthropic_client.beta.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=MSG)
    assert instrumented.cost_spans() == []
    (span,) = instrumented.aicost_spans()
    a = dict(span.attributes)
    assert a[s.AICOST_PRICE_KNOWN] is False
    assert a[s.AICOST_USAGE_INVALID_REASON].startswith("advisor: "), a
    problem = a[s.AICOST_USAGE_INVALID_REASON].removeprefix("advisor: ")
    assert a[s.AICOST_PRICE_UNKNOWN_REASON] == f"the usage failed validation: {problem}", a
    assert a[s.AICOST_PRICE_MODEL] == "claude-opus-4-6"


def test_anthropic_server_side_fallback_is_priced_as_the_serving_model(instrumented, replay_server, anthropic_client):
    """Refusals-and-fallback docs: "the top-level usage counts describe only the attempt that produced the
    returned message", billed "at the rates of the model that ran it"; a hop that declined before producing output
    "costs nothing". So the declined hop's 535 input tokens are not added."""
    from vendor_server import Reply

    iterations = [
        {"type": "message", "model": "claude-sonnet-4-6", "input_tokens": 535, "output_tokens": 0,
         "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
        {"type": "fallback_message", "model": "claude-opus-4-6", "input_tokens": 412, "output_tokens": 264,
         "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
    ]
    reply = _advisor_message(iterations, model="claude-opus-4-6")
    reply["usage"] = {"input_tokens": 412, "output_tokens": 264, "cache_read_input_tokens": 0,
                      "cache_creation_input_tokens": 0, "iterations": iterations}
    replay_server.enqueue(Reply.json(reply))
    anthropic_client.beta.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=MSG)
    a = cost_span(instrumented)
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (412 * Decimal("5") + 264 * Decimal("25")) / 10**6
    assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 412 and a[s.AICOST_PRICE_MODEL] == "claude-opus-4-6"
    assert not any(k.startswith("aicost.usage.advisor") for k in a)


def test_anthropic_fallback_mid_stream_is_priced_as_the_model_that_served(instrumented, replay_server,
                                                                          anthropic_client):
    """Declined mid-output: message_start names the first model; the docs say to "read the serving model ...
    from the fallback_message entry in the final message_delta's usage.iterations"."""

    iterations = [
        {"type": "message", "model": "claude-sonnet-4-6", "input_tokens": 535, "output_tokens": 12,
         "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
        {"type": "fallback_message", "model": "claude-opus-4-6", "input_tokens": 412, "output_tokens": 264,
         "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
    ]

    start = {"input_tokens": 535, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    replay_server.enqueue(_anthropic_stream("claude-sonnet-4-6", start,
                                            {**start, "input_tokens": 412, "output_tokens": 264,
                                             "iterations": iterations}))
    with anthropic_client.beta.messages.stream(model="claude-sonnet-4-6", max_tokens=300, messages=MSG) as st:
        st.get_final_message()
    a = cost_span(instrumented)
    assert a[s.AICOST_PRICE_MODEL] == "claude-opus-4-6" and a[s.GEN_AI_RESPONSE_MODEL] == "claude-opus-4-6"
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (412 * Decimal("5") + 264 * Decimal("25")) / 10**6
