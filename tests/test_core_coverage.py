"""Every entry point issue 2 names, through the real SDKs over loopback HTTP: one costed span each."""

from __future__ import annotations

from decimal import Decimal

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


def test_anthropic_beta_stream_compaction_iterations_are_billed(instrumented, replay_server, anthropic_client):
    from vendor_server import Reply, sse

    def events():
        start_usage = {"input_tokens": 30, "output_tokens": 1, "cache_creation_input_tokens": 0,
                       "cache_read_input_tokens": 0}
        yield sse({"type": "message_start", "message": {
            "id": "msg_c", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}, "message_start")
        yield sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                  "content_block_start")
        yield sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}},
                  "content_block_delta")
        yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        yield sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                   "usage": {"input_tokens": 30, "output_tokens": 3, "cache_creation_input_tokens": 0,
                             "cache_read_input_tokens": 0, "iterations": _ITERATIONS}}, "message_delta")
        yield sse({"type": "message_stop"}, "message_stop")

    replay_server.enqueue(Reply.stream(events))
    with anthropic_client.beta.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=20, messages=MSG) as st:
        final = st.get_final_message()
    assert final.usage.output_tokens == 3
    _compaction_usage_on(cost_span(instrumented))
