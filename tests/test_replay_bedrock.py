"""Every recorded AWS Bedrock response, replayed through the real boto3 ``bedrock-runtime`` client, is costed exactly.

The 67 recordings in ``tests/fixtures/recordings/bedrock`` are genuine Bedrock runtime traffic (see NOTICE.md there;
event streams are the recorded bytes, CRCs and all). Each is served over real HTTP on 127.0.0.1 to a boto3 client
(``endpoint_url`` at the loopback server, placeholder credentials: botocore signs as usual), and the one span
carrying ``gen_ai.usage.cost`` must report the recorded usage and a cost equal to usage x AWS's published price, or
an unknown cost (never $0, never another model's price) where AWS bills the model some other way or aicost's
catalog has no price for it. Errors must reach the caller exactly as botocore raises them.

Expected values never come from aicost: usage is read here from the recorded bodies, headers and (decoded) event
streams, and prices come from :data:`PUBLISHED` below (aws.amazon.com/bedrock/pricing, on-demand, us-east-1;
cross-checked against genai-prices 0.2.3).
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any, Optional

import pytest

boto3 = pytest.importorskip("boto3")

from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from aicost import semconv as sc  # noqa: E402
from replay_helpers import (MILLION, check_cost, check_usage, checked_unbilled, replay, the_cost_span,  # noqa: E402
                            with_known_gaps)
from vendor_server import all_recording_ids, load_recording  # noqa: E402

PROBE = "aicost replay probe 9b2c: say hi"

# USD per million tokens: (input, output, cache read, cache write). Anthropic models on a regional (us. / eu.)
# cross-region profile of a model launched from Sonnet 4.5 on cost 10 % more than on the global profile.
P = tuple[str, str, Optional[str], Optional[str]]
PUBLISHED: dict[str, P] = {
    "amazon.nova-micro": ("0.035", "0.14", "0.00875", None),
    "amazon.nova-lite": ("0.06", "0.24", "0.015", None),
    "amazon.nova-pro": ("0.80", "3.20", "0.20", None),
    "amazon.titan-text-express": ("0.20", "0.60", None, None),
    "amazon.titan-embed-text-v2": ("0.02", "0", None, None),
    "anthropic.claude-v2": ("8", "24", None, None),
    "anthropic.claude-instant": ("0.80", "2.40", None, None),
    "anthropic.claude-3-haiku": ("0.25", "1.25", None, None),
    "anthropic.claude-3-sonnet": ("3", "15", None, None),
    "anthropic.claude-3-5-sonnet": ("3", "15", "0.30", "3.75"),
    "anthropic.claude-3-7-sonnet": ("3", "15", "0.30", "3.75"),
    "anthropic.claude-sonnet-4-2": ("3", "15", "0.30", "3.75"),  # claude-sonnet-4-20250514
    "us.anthropic.claude-sonnet-4-5": ("3.30", "16.50", "0.33", "4.125"),
    "eu.anthropic.claude-haiku-4-5": ("1.10", "5.50", "0.11", "1.375"),
    "cohere.command-light-text": ("0.30", "0.60", None, None),
    "cohere.embed-v4": ("0.12", "0", None, None),
    "ai21.j2-mid": ("12.5", "12.5", None, None),
    "meta.llama3-70b-instruct": ("2.65", "3.50", None, None),
    "mistral.mistral-7b-instruct": ("0.15", "0.20", None, None),
    "deepseek.r1": ("1.35", "5.40", None, None),
    "openai.gpt-oss-120b": ("0.15", "0.60", None, None),
    "qwen.qwen3-32b": ("0.15", "0.60", None, None),
    "meta.llama4-maverick": ("0.24", "0.97", None, None),
    "mistral.pixtral-large": ("2", "6", None, None),
    "writer.palmyra-x4": ("2.50", "10", None, None),
    "google.gemma-3-27b": ("0.23", "0.38", None, None),
    # Later models, written down from the catalog's source (genai-prices 0.2.3), not re-verified here.
    "us.amazon.nova-2-lite": ("0.33", "2.75", "0.0825", None),
    "us.anthropic.claude-sonnet-4-6": ("3.30", "16.50", "0.33", "4.125"),
    "us.anthropic.claude-sonnet-5": ("2.20", "11", "0.22", "2.75"),
    "us.anthropic.claude-opus-4-8": ("5.50", "27.50", "0.55", "6.875"),
}
# Billed some other way, or not priced in the catalog: the cost must be unknown (a SageMaker endpoint bills
# instance hours; an application inference profile's ARN does not say its model; the rest have no catalog entry).
UNPRICED = ("application-inference-profile/", "arn:aws:sagemaker:", "titan-tg1-large", "minimax.", "moonshot.",
            "nvidia.nemotron-nano-12b", "zai.glm-4.7", "nova-2-multimodal-embeddings")
# AWS prices latency-optimised inference separately; the catalog has no such rates yet (the span says the tier, and
# the cost is unknown: tests/test_bedrock_streams.py).
LATENCY_OPTIMIZED: dict[str, P] = {"amazon.nova-pro": ("1.00", "4.00", None, None)}
KNOWN_GAPS = {"bedrock-converse-nonstream-013": "latency-optimised rates are not in the catalog"}

IDS = all_recording_ids(("bedrock",))


def published(model: str, latency_optimized: bool = False) -> Optional[P]:
    ref = model.split("/")[-1]
    if any(marker in model for marker in UNPRICED):
        return None
    table = LATENCY_OPTIMIZED if latency_optimized else PUBLISHED
    for key in sorted(table, key=len, reverse=True):  # the most specific name first (us.…-4-5 before …-4)
        bare = key.split(".", 1)[1] if key.startswith(("us.", "eu.")) else key
        if key.startswith(("us.", "eu.")) and not ref.startswith(key[:3]):
            continue
        if bare in ref:
            return table[key]
    raise AssertionError(f"no published price written down for {model!r}")


# ================================================================================================= expectations
def _usage(u: dict, prefix: str = "") -> dict[str, int]:
    read = int(u.get(f"cacheRead{prefix}InputTokens", u.get(f"cacheRead{prefix}InputTokenCount", 0)) or 0)
    write = int(u.get(f"cacheWrite{prefix}InputTokens", u.get(f"cacheWrite{prefix}InputTokenCount", 0)) or 0)
    return {"input": int(u.get("inputTokens", u.get("inputTokenCount", 0))) + read + write,
            "output": int(u.get("outputTokens", u.get("outputTokenCount", 0))), "cache_read": read,
            "cache_write": write}


def expected_usage(rec: dict) -> Optional[dict[str, int]]:
    endpoint = rec["endpoint"]
    response = rec["response"]
    if endpoint == "Converse":
        return _usage(json.loads(response["body"])["usage"])
    if endpoint == "InvokeModel":
        h = {k.lower(): int(v[-1]) for k, v in response["headers"].items() if k.lower().endswith("token-count")}
        read = h.get("x-amzn-bedrock-cache-read-input-token-count", 0)
        write = h.get("x-amzn-bedrock-cache-write-input-token-count", 0)
        return {"input": h["x-amzn-bedrock-input-token-count"] + read + write,
                "output": h.get("x-amzn-bedrock-output-token-count", 0), "cache_read": read, "cache_write": write}
    events = rec["derived"]["eventstream"]["events"]
    if endpoint == "ConverseStream":
        meta = [e["payload"] for e in events if e["event_type"] == "metadata"]
        return _usage(meta[-1]["usage"]) if meta else None
    for event in reversed(events):  # InvokeModelWithResponseStream: the last chunk's invocation metrics
        if event["event_type"] == "chunk":
            data = json.loads(base64.b64decode(event["payload"]["bytes"]))
            if "amazon-bedrock-invocationMetrics" in data:
                return _usage(data["amazon-bedrock-invocationMetrics"])
    return None


def expected_cost(model: str, u: dict[str, int], latency_optimized: bool) -> Optional[Decimal]:
    price = published(model, latency_optimized)
    if price is None:
        return None
    rate_in, rate_out = Decimal(price[0]), Decimal(price[1])
    rate_read = Decimal(price[2]) if price[2] else rate_in
    rate_write = Decimal(price[3]) if price[3] else rate_in
    plain = u["input"] - u["cache_read"] - u["cache_write"]
    return (plain * rate_in + u["cache_read"] * rate_read + u["cache_write"] * rate_write
            + u["output"] * rate_out) / MILLION


# ================================================================================================= calls
def _client(server: Any) -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=server.url,
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def _call(client: Any, rec: dict) -> Any:
    model = rec["request"]["model_id"]
    messages = [{"role": "user", "content": [{"text": PROBE}]}]
    endpoint = rec["endpoint"]
    if endpoint == "Converse":
        return client.converse(modelId=model, messages=messages)
    if endpoint == "ConverseStream":
        return list(client.converse_stream(modelId=model, messages=messages)["stream"])
    if endpoint == "CountTokens":
        return client.count_tokens(modelId=model, input={"converse": {"messages": messages}})
    body = json.dumps({"messages": messages, "max_tokens": 64})
    if endpoint == "InvokeModel":
        return client.invoke_model(modelId=model, body=body)["body"].read()
    return list(client.invoke_model_with_response_stream(modelId=model, body=body)["body"])


# ================================================================================================= the test
@pytest.mark.parametrize("rid", with_known_gaps(IDS, KNOWN_GAPS))
def test_bedrock_recording_is_costed_exactly(rid: str, instrumented: Any, replay_server: Any) -> None:
    rec = load_recording(rid)
    client = _client(replay_server)
    replay(replay_server, rec, lambda: _call(client, rec), ClientError,
           lambda error: error.response["ResponseMetadata"]["HTTPStatusCode"])

    attrs = the_cost_span(instrumented, rid, PROBE)
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "aws.bedrock", rid
    assert attrs[sc.GEN_AI_REQUEST_MODEL] == rec["request"]["model_id"], rid
    if checked_unbilled(rec, attrs):
        return

    u = expected_usage(rec)
    assert u is not None, f"{rid}: every successful recording carries its usage"
    check_usage(rid, attrs, u)
    if rec["stream"]:
        assert attrs[sc.AICOST_STREAM_ENDED_BY] == "exhausted", rid
    optimized = '"latency": "optimized"' in (rec["response"]["body"] or "")
    if optimized:
        assert attrs[sc.AICOST_SERVICE_TIER] == "latency_optimized", rid
    check_cost(rid, attrs, expected_cost(rec["request"]["model_id"], u, optimized), str(u))


def test_every_bedrock_recording_is_replayed() -> None:
    assert len(IDS) == 67
