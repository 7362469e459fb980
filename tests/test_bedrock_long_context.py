"""Claude on Bedrock gets the tier rule Claude gets on Anthropic's API (issue 14 item 22, for the new vendor).

AWS bills a request whose input exceeds 200K tokens at the long-context rates only when it enabled the 1M-token
window with Anthropic's beta flag, passed in the InvokeModel body (``anthropic_beta``) or, for Converse, in
``additionalModelRequestFields``; without it the window is 200K tokens, so a larger input figure never takes the
premium. Real boto3 over HTTP on 127.0.0.1; the span says which band priced the call and why."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from aicost import semconv
from vendor_server import Reply

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"  # a regional profile: AWS's rates 10 % over the global ones
INPUT, OUTPUT = 250_000, 1_000
BETA = ["context-1m-2025-08-07"]
BASE = (INPUT * Decimal("3.3") + OUTPUT * Decimal("16.5")) / 1_000_000
PREMIUM = (INPUT * Decimal("6.6") + OUTPUT * Decimal("24.75")) / 1_000_000


def _client(server):
    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=server.url,
                        aws_access_key_id="t", aws_secret_access_key="t", config=Config(retries={"max_attempts": 1}))


def _invoke(server, beta: bool):
    server.enqueue(Reply.json({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                               "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn"},
                              headers={"X-Amzn-Bedrock-Input-Token-Count": str(INPUT),
                                       "X-Amzn-Bedrock-Output-Token-Count": str(OUTPUT)}))
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 2000,
            "messages": [{"role": "user", "content": "read this"}]}
    if beta:
        body["anthropic_beta"] = BETA
    _client(server).invoke_model(modelId=MODEL, body=json.dumps(body))["body"].read()


def _converse(server, beta: bool):
    server.enqueue(Reply.json({"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
                               "stopReason": "end_turn", "metrics": {"latencyMs": 9},
                               "usage": {"inputTokens": INPUT, "outputTokens": OUTPUT,
                                         "totalTokens": INPUT + OUTPUT}}))
    extra = {"additionalModelRequestFields": {"anthropic_beta": BETA}} if beta else {}
    _client(server).converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "read this"}]}], **extra)


@pytest.mark.parametrize("call", [_invoke, _converse], ids=["invoke_model", "converse"])
@pytest.mark.parametrize("beta", [False, True], ids=["no_beta", "1m_beta"])
def test_claude_on_bedrock_takes_the_long_context_rates_only_with_the_1m_beta(call, beta, instrumented,
                                                                              replay_server):
    call(replay_server, beta)
    (span,) = instrumented.cost_spans()
    attrs = span.attributes
    assert attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] == INPUT
    assert Decimal(attrs["aicost.cost.total_usd"]) == (PREMIUM if beta else BASE)
    if beta:
        assert attrs[semconv.AICOST_PRICE_TIER] == "input>200000"
        assert attrs[semconv.AICOST_PRICE_TIER_REASON] == "input_over_threshold"
    else:
        assert semconv.AICOST_PRICE_TIER not in attrs
        assert attrs[semconv.AICOST_PRICE_TIER_REASON] == "long_context_not_enabled"
