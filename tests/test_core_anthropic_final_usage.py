"""An Anthropic stream's final output count is the usage of its ``message_delta``: ``message_start``'s is a
placeholder (1). A stream whose ``message_delta`` has no usage, or that has no ``message_delta`` before
``message_stop``, never had its output counted by the vendor: estimated, with the reason on the span, never priced
as exact. Real SDK over real HTTP on 127.0.0.1 (tests/vendor_server.py)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from vendor_server import Reply, sse

_ABSENT = object()
_NO_DELTA = object()


def _events(delta_usage: Any, start_usage: Any = None) -> Iterator[str]:
    yield sse({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": start_usage or {"input_tokens": 9, "output_tokens": 1}}},
        "message_start")
    yield sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
              "content_block_start")
    for _ in range(300):
        yield sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " word"}},
                  "content_block_delta")
    yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    if delta_usage is not _NO_DELTA:
        delta: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
        if delta_usage is not _ABSENT:
            delta["usage"] = delta_usage
        yield sse(delta, "message_delta")
    yield sse({"type": "message_stop"}, "message_stop")


def _stream(replay_server: Any, client: Any, delta_usage: Any, start_usage: Any = None) -> None:
    replay_server.enqueue(Reply.stream(list(_events(delta_usage, start_usage))))
    stream = client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=1000, stream=True,
                                    messages=[{"role": "user", "content": "hi"}])
    assert sum(1 for event in stream if event.type == "content_block_delta") == 300


@pytest.mark.parametrize("delta_usage", [None, _ABSENT, _NO_DELTA], ids=["usage-null", "usage-absent", "no-delta"])
def test_a_stream_without_the_final_usage_is_estimated_not_priced_from_the_placeholder(
        instrumented, replay_server, anthropic_client, delta_usage):
    _stream(replay_server, anthropic_client, delta_usage)
    (span,) = instrumented.cost_spans()
    attrs = dict(span.attributes or {})
    assert attrs["aicost.usage.estimated"] is True
    assert attrs["aicost.usage.invalid_reason"] == "the stream ended without the vendor's final event"
    assert attrs["gen_ai.usage.input_tokens"] == 9  # message_start's input side is the vendor's
    assert attrs["gen_ai.usage.output_tokens"] >= 300  # counted from the text, not the placeholder 1


def test_a_stream_with_the_final_usage_is_exact(instrumented, replay_server, anthropic_client):
    _stream(replay_server, anthropic_client, {"output_tokens": 300})
    (span,) = instrumented.cost_spans()
    attrs = dict(span.attributes or {})
    assert "aicost.usage.estimated" not in attrs and "aicost.usage.invalid_reason" not in attrs
    assert attrs["gen_ai.usage.input_tokens"] == 9 and attrs["gen_ai.usage.output_tokens"] == 300


def test_the_final_usage_is_judged_not_message_starts_placeholder(instrumented, replay_server, anthropic_client):
    """``message_start``'s output count is a placeholder that ``message_delta`` overwrites: usage is judged once,
    as it stands at the end. A placeholder smaller than a subset of it (thinking tokens over the output of 1) is
    no verdict on the final usage, which is valid and exact."""
    _stream(replay_server, anthropic_client, {"output_tokens": 300, "output_tokens_details": {"thinking_tokens": 30}},
            start_usage={"input_tokens": 9, "output_tokens": 1, "output_tokens_details": {"thinking_tokens": 30}})
    (span,) = instrumented.cost_spans()
    attrs = dict(span.attributes or {})
    assert "aicost.usage.estimated" not in attrs and "aicost.usage.invalid_reason" not in attrs
    assert attrs["gen_ai.usage.output_tokens"] == 300 and attrs["gen_ai.usage.reasoning.output_tokens"] == 30
