"""InvokeModelWithResponseStream read in part, and the tier its response reports: real boto3 over HTTP on 127.0.0.1.

A caller that closes the stream before its last chunk (or a guardrail that cuts it) gets no
``amazon-bedrock-invocationMetrics``: the output is then estimated from the text the model generated, which each
family's chunk JSON holds in its own field. The expected values are read here from the recorded chunks (decoded
independently of aicost), and bounded by the usage AWS reported for the whole stream.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

boto3 = pytest.importorskip("boto3")

from botocore.config import Config  # noqa: E402

import aicost  # noqa: E402
from aicost import semconv as sc  # noqa: E402
from aicost.integrations import bedrock as brk  # noqa: E402
from vendor_server import Reply, load_recording  # noqa: E402

BODY = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}], "max_tokens": 64,
                   "anthropic_version": "bedrock-2023-05-31"})
# Recorded streams of several model families, and where each family's chunks hold the generated text (read here
# without aicost: the expected text).
FAMILIES = {
    "bedrock-invokemodelwithresponsestream-stream-009": (  # Claude: text, then a tool call's input JSON
        lambda c: (c.get("delta") or {}).get("text") or (c.get("delta") or {}).get("partial_json")),
    "bedrock-invokemodelwithresponsestream-stream-001": (  # Nova
        lambda c: ((c.get("contentBlockDelta") or {}).get("delta") or {}).get("text")),
    "bedrock-invokemodelwithresponsestream-stream-004": lambda c: c.get("outputText"),  # Titan
    "bedrock-invokemodelwithresponsestream-stream-008": lambda c: c.get("text"),  # Cohere Command
}


def _client(server: Any) -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=server.url,
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def _chunks(rec: dict) -> list[dict]:
    return [json.loads(base64.b64decode(e["payload"]["bytes"])) for e in rec["derived"]["eventstream"]["events"]
            if e["event_type"] == "chunk"]


def _read_all_but_the_last(server: Any, rec: dict) -> list[dict]:
    """Read the stream up to (not including) its last chunk, the one with the usage, then close it."""
    return _read(server, rec, len(_chunks(rec)) - 1)


def _read(server: Any, rec: dict, up_to: int | None = None) -> list[dict]:
    """Read the stream's first ``up_to`` chunks and close it (None: read it to its end)."""
    server.enqueue(Reply.from_recording(rec))
    body = _client(server).invoke_model_with_response_stream(modelId=rec["request"]["model_id"], body=BODY)["body"]
    read = []
    for event in body:
        read.append(json.loads(event["chunk"]["bytes"]))
        if len(read) == up_to:
            break
    body.close()
    return read


@contextlib.contextmanager
def _instrumented(tracer_provider: Any, span_exporter: Any, capture: bool) -> Iterator[Any]:
    """aicost with content capture on or off (whatever the environment says); yields the cost spans' reader."""
    aicost.instrument(tracer_provider=tracer_provider, capture_content=capture)
    try:
        span_exporter.clear()
        yield lambda: [s for s in span_exporter.get_finished_spans() if sc.GEN_AI_USAGE_COST in (s.attributes or {})]
    finally:
        aicost.uninstrument()
        aicost.instrument(capture_content=False)
        aicost.uninstrument()


@pytest.mark.parametrize("rid", list(FAMILIES))
def test_a_stream_closed_early_estimates_the_generated_text_not_the_chunk_json(rid: str, instrumented: Any,
                                                                              replay_server: Any) -> None:
    rec = load_recording(rid)
    read = _read_all_but_the_last(replay_server, rec)
    assert all("amazon-bedrock-invocationMetrics" not in c for c in read), rid
    whole = _chunks(rec)[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"]
    (span,) = instrumented.cost_spans()
    attrs = span.attributes
    assert attrs[sc.AICOST_USAGE_ESTIMATED] is True and attrs[sc.AICOST_STREAM_ENDED_BY] == "closed"
    # Part of the stream cannot have generated more than the whole stream billed (the chunks' JSON counted
    # as output came to 471 tokens for stream-009, whose whole output was 97).
    assert 0 < attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] <= whole, (attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS], whole)


@pytest.mark.parametrize("rid", list(FAMILIES))
def test_captured_stream_output_is_the_generated_text(rid: str, replay_server: Any, tracer_provider: Any,
                                                      span_exporter: Any) -> None:
    rec = load_recording(rid)
    with _instrumented(tracer_provider, span_exporter, capture=True) as cost_spans:
        read = _read_all_but_the_last(replay_server, rec)
        (span,) = cost_spans()
        messages = json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])
        assert messages[0]["parts"][0]["content"] == "".join(filter(None, map(FAMILIES[rid], read)))


@pytest.fixture
def chunk_parses(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """What the Bedrock integration parses on the calling thread: the JSON bytes it decodes (the request body is
    text, not counted) and the chunks it reads text from."""
    seen: dict[str, list] = {"loads": [], "texts": []}
    loads, chunk_text = json.loads, brk._chunk_text

    def counted_loads(data: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(data, (bytes, bytearray)):
            seen["loads"].append(json.loads(data))
        return loads(data, *args, **kwargs)

    def counted_text(payload: Any) -> Any:
        seen["texts"].append(payload)
        return chunk_text(payload)

    monkeypatch.setattr(brk, "json", SimpleNamespace(loads=counted_loads, dumps=json.dumps))
    monkeypatch.setattr(brk, "_chunk_text", counted_text)
    return seen


@pytest.mark.parametrize("rid", list(FAMILIES))
def test_a_complete_stream_without_capture_parses_only_its_last_chunk(rid: str, replay_server: Any,
                                                                      tracer_provider: Any, span_exporter: Any,
                                                                      chunk_parses: dict) -> None:
    """Its usage is the vendor's: no text is wanted, so no chunk but the one with the usage is parsed (each one
    was, for the text, on the caller's thread)."""
    rec = load_recording(rid)
    with _instrumented(tracer_provider, span_exporter, capture=False) as cost_spans:
        read = _read(replay_server, rec)
        (span,) = cost_spans()
    assert len(read) == len(_chunks(rec))
    attrs = span.attributes
    assert attrs[sc.AICOST_STREAM_ENDED_BY] == "exhausted" and sc.AICOST_USAGE_ESTIMATED not in attrs
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == read[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"]
    assert chunk_parses["loads"] == [read[-1]], len(chunk_parses["loads"])
    assert chunk_parses["texts"] == []


@pytest.mark.parametrize("rid", list(FAMILIES))
def test_a_complete_captured_stream_records_all_its_generated_text(rid: str, replay_server: Any,
                                                                   tracer_provider: Any, span_exporter: Any,
                                                                   chunk_parses: dict) -> None:
    """Capture asks for the text after the stream ended: every chunk's, the last one's too (Titan's carries text
    with the usage), each parsed once for it."""
    rec = load_recording(rid)
    with _instrumented(tracer_provider, span_exporter, capture=True) as cost_spans:
        read = _read(replay_server, rec)
        (span,) = cost_spans()
    messages = json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])
    assert messages[0]["parts"][0]["content"] == "".join(filter(None, map(FAMILIES[rid], read)))
    assert chunk_parses["texts"] == read


# ================================================================================================= service tiers
# AWS bills these at per-model rates (flex below standard, priority above, latency-optimised its own) that the
# catalog does not list: the cost is unknown, and says which tier, never the standard rate.
UNPRICED_TIERS = ("flex", "priority")
MESSAGES = [{"role": "user", "content": [{"text": "hi"}]}]


def _converse_served_at(server: Any, tier: str) -> None:
    rec = copy.deepcopy(load_recording("bedrock-converse-nonstream-014"))
    body = json.loads(rec["response"]["body"])
    body["serviceTier"] = {"type": tier}
    rec["response"]["body"] = json.dumps(body)
    server.enqueue(Reply.from_recording(rec))
    _client(server).converse(modelId=rec["request"]["model_id"], messages=MESSAGES)


def _unknown_because_of(attrs: Any, tier: str) -> None:
    assert attrs[sc.AICOST_SERVICE_TIER] == tier
    assert attrs[sc.AICOST_PRICE_KNOWN] is False and "aicost.cost.total_usd" not in attrs, tier
    assert f"the {tier} tier" in attrs[sc.AICOST_PRICE_UNKNOWN_REASON], attrs[sc.AICOST_PRICE_UNKNOWN_REASON]


@pytest.mark.parametrize("tier", UNPRICED_TIERS)
def test_a_call_served_at_a_tier_aws_bills_per_model_has_an_unknown_cost(tier: str, instrumented: Any,
                                                                          replay_server: Any) -> None:
    _converse_served_at(replay_server, tier)
    (span,) = instrumented.aicost_spans()
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] > 0  # the usage is exact; only the rate is unknown
    _unknown_because_of(span.attributes, tier)


def test_latency_optimized_inference_has_an_unknown_cost(instrumented: Any, replay_server: Any) -> None:
    rec = load_recording("bedrock-converse-nonstream-013")  # performanceConfig: latency optimized
    replay_server.enqueue(Reply.from_recording(rec))
    _client(replay_server).converse(modelId=rec["request"]["model_id"], messages=MESSAGES,
                                    performanceConfig={"latency": "optimized"})
    (span,) = instrumented.aicost_spans()
    _unknown_because_of(span.attributes, "latency_optimized")


@pytest.mark.parametrize("headers, tier", [
    ({"X-Amzn-Bedrock-Service-Tier": "flex"}, "flex"),
    ({"X-Amzn-Bedrock-Service-Tier": "priority"}, "priority"),
    ({"X-Amzn-Bedrock-PerformanceConfig-Latency": "optimized"}, "latency_optimized"),
], ids=["flex", "priority", "latency_optimized"])
def test_invoke_model_with_response_stream_reads_the_tier_its_headers_report(headers: dict, tier: str,
                                                                            instrumented: Any,
                                                                            replay_server: Any) -> None:
    rec = load_recording("bedrock-invokemodelwithresponsestream-stream-009")
    reply = Reply.from_recording(rec)
    reply.headers = {**reply.headers, **headers}
    replay_server.enqueue(reply)
    response = _client(replay_server).invoke_model_with_response_stream(modelId=rec["request"]["model_id"],
                                                                        body=BODY)
    list(response["body"])
    (span,) = instrumented.aicost_spans()
    assert span.attributes[sc.AICOST_STREAM_ENDED_BY] == "exhausted"
    _unknown_because_of(span.attributes, tier)


# ======================================================================================= Claude's server tools
# An InvokeModelWithResponseStream of Claude carries its Messages API events as chunks: the ``container`` of a
# message_delta (code execution ran, billed by container time) and ``usage.server_tool_use`` (web searches, billed per
# search) are read as Anthropic's own integration reads them, and priced (or said unknown) the same way.
def _frame(payload: bytes, headers: dict[str, str]) -> bytes:
    """One AWS event-stream message (``application/vnd.amazon.eventstream``): prelude, string headers, payload,
    each part CRC32-checked as botocore checks it."""
    import struct
    import zlib

    head = b"".join(struct.pack("B", len(k)) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
                    for k, v in headers.items())
    prelude = struct.pack(">II", 16 + len(head) + len(payload), len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _claude_stream(delta: dict, usage: dict) -> Reply:
    """A Claude stream as Bedrock sends it: message_start, a text block, a message_delta with ``delta`` and
    ``usage``, and message_stop with the invocation metrics."""
    events = [
        {"type": "message_start", "message": {"id": "msg_bdrk_1", "type": "message", "role": "assistant",
                                              "model": "claude-sonnet-4-20250514", "content": [], "stop_reason": None,
                                              "usage": {"input_tokens": 1000, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "The \"container\" is 42."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", **delta}, "usage": usage},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 1000, "outputTokenCount": 90,
                                                                      "invocationLatency": 900,
                                                                      "firstByteLatency": 300}},
    ]
    headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    frames = [_frame(json.dumps({"bytes": base64.b64encode(json.dumps(e).encode()).decode()}).encode(), headers)
              for e in events]
    return Reply(status=200, chunks=frames, content_type="application/vnd.amazon.eventstream",
                 headers={"X-Amzn-Bedrock-Content-Type": "application/json"})


def _stream_claude(server: Any, reply: Reply) -> list[dict]:
    server.enqueue(reply)
    body = _client(server).invoke_model_with_response_stream(
        modelId="us.anthropic.claude-sonnet-4-20250514-v1:0", body=BODY)["body"]
    return [json.loads(event["chunk"]["bytes"]) for event in body]


def test_claude_code_execution_on_invoke_model_with_response_stream_is_cost_unknown(instrumented: Any,
                                                                                    replay_server: Any) -> None:
    read = _stream_claude(replay_server, _claude_stream({"container": {"id": "container_1",
                                                                       "expires_at": "2026-12-07T13:00:00Z"}},
                                                        {"output_tokens": 90}))
    assert read[4]["delta"]["container"]["id"] == "container_1"  # the caller reads every chunk as it came
    (span,) = instrumented.aicost_spans()
    attrs = dict(span.attributes)
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1000 and attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 90  # still exact
    assert attrs[sc.AICOST_PRICE_KNOWN] is False and sc.GEN_AI_USAGE_COST not in attrs
    assert "hosted tools billed per call or session (code_execution)" in attrs[sc.AICOST_PRICE_UNKNOWN_REASON]


def test_claude_web_searches_on_invoke_model_with_response_stream_are_counted(instrumented: Any,
                                                                              replay_server: Any) -> None:
    """Counted as Anthropic's reader counts them; the AWS price list has no web search rate, so the call's cost is
    unknown, naming the rate, never its tokens alone."""
    _stream_claude(replay_server, _claude_stream({}, {"output_tokens": 90,
                                                      "server_tool_use": {"web_search_requests": 2}}))
    (span,) = instrumented.aicost_spans()
    attrs = dict(span.attributes)
    assert attrs["aicost.usage.web_search_requests"] == 2
    assert attrs[sc.AICOST_PRICE_KNOWN] is False and "web_search rate" in attrs[sc.AICOST_PRICE_UNKNOWN_REASON]


def _stream_claude_cut(server: Any, reply: Reply) -> list[dict]:
    """Read a Claude stream up to (not including) its last chunk, the one with the invocation metrics; close it."""
    server.enqueue(reply)
    body = _client(server).invoke_model_with_response_stream(
        modelId="us.anthropic.claude-sonnet-4-20250514-v1:0", body=BODY)["body"]
    read = []
    for event in body:
        read.append(json.loads(event["chunk"]["bytes"]))
        if read[-1]["type"] == "message_delta":
            break
    body.close()
    return read


@pytest.mark.parametrize("delta, tools", [
    ({}, "web_search"),
    ({"container": {"id": "container_1", "expires_at": "2026-12-07T13:00:00Z"}}, "code_execution, web_search"),
])
def test_a_claude_stream_cut_before_its_usage_keeps_the_server_tools_it_showed(delta: dict, tools: str,
                                                                               instrumented: Any,
                                                                               replay_server: Any) -> None:
    """Cut before the chunk with the invocation metrics, the call's tokens are estimated. The web searches its
    message_delta counted were lost with the usage they would be counted on, so the estimate was priced as its
    tokens alone; they now name web search among the hosted tools (as a container does), and the cost is unknown."""
    read = _stream_claude_cut(replay_server, _claude_stream(delta, {"output_tokens": 90,
                                                                    "server_tool_use": {"web_search_requests": 2}}))
    assert read[-1]["usage"]["server_tool_use"]["web_search_requests"] == 2
    (span,) = instrumented.aicost_spans()
    attrs = dict(span.attributes)
    assert attrs[sc.AICOST_USAGE_ESTIMATED] is True
    assert attrs[sc.AICOST_PRICE_KNOWN] is False and sc.GEN_AI_USAGE_COST not in attrs
    assert f"hosted tools billed per call or session ({tools})" in attrs[sc.AICOST_PRICE_UNKNOWN_REASON]


def test_a_claude_stream_without_server_tools_stays_exact(instrumented: Any, replay_server: Any) -> None:
    """A text delta that mentions "container" is no container: only the events' own keys count."""
    _stream_claude(replay_server, _claude_stream({}, {"output_tokens": 90}))
    (span,) = instrumented.aicost_spans()
    attrs = dict(span.attributes)
    assert attrs[sc.AICOST_PRICE_KNOWN] is True and attrs[sc.GEN_AI_USAGE_COST] > 0
