"""A call that raises before any output arrived is $0 only where the vendor provably billed nothing: it answered with
an HTTP error, or the request never reached it. A call the vendor accepted (HTTP 200) and that failed afterwards is
priced from the usage the error carries, or estimated, with the reason on the span. Real SDKs over real HTTP on
127.0.0.1 (tests/vendor_server.py)."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal
from typing import Any, Iterator

import openai
import pydantic
import pytest

from vendor_server import Reply, openai_chat_reply, openai_chat_stream_reply, openai_error_reply

MSG = [{"role": "user", "content": "please write a long essay about the sea " * 20}]
M = Decimal(1_000_000)


class Out(pydantic.BaseModel):
    text: str


def _completion(finish_reason: str, content: str) -> dict[str, Any]:
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                         "message": {"role": "assistant", "content": content, "refusal": None}}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}}


@pytest.fixture
def results(instrumented: Any) -> Iterator[list[Any]]:
    from aicost import hooks

    seen: list[Any] = []
    hooks.add_listener(seen.append)
    yield seen
    hooks.remove_listener(seen.append)


def _one(instrumented: Any) -> dict[str, Any]:
    (span,) = instrumented.aicost_spans()
    return dict(span.attributes or {})


def _estimated_not_free(attrs: dict[str, Any], result: Any, error: str) -> None:
    assert attrs["error.type"] == error
    assert attrs["aicost.usage.estimated"] is True
    assert "after the request was sent" in attrs["aicost.usage.invalid_reason"]
    assert attrs["gen_ai.usage.input_tokens"] > 100  # counted from the request
    assert attrs["gen_ai.usage.cost"] > 0
    assert result.usage.estimated is True and result.usage.invalid and result.cost.total > 0


def test_parse_length_error_is_priced_from_the_completion_it_carries(instrumented, results, replay_server,
                                                                    openai_client):
    replay_server.enqueue(Reply.json(_completion("length", '{"text": "hel')))
    with pytest.raises(openai.LengthFinishReasonError) as raised:
        openai_client.chat.completions.parse(model="gpt-4o-mini", messages=MSG, response_format=Out, max_tokens=500)
    assert raised.value.completion.usage.completion_tokens == 500  # the SDK's error, unchanged
    attrs = _one(instrumented)
    assert attrs["error.type"] == "LengthFinishReasonError"
    assert attrs["gen_ai.usage.input_tokens"] == 1000 and attrs["gen_ai.usage.output_tokens"] == 500
    assert "aicost.usage.estimated" not in attrs and "aicost.usage.invalid_reason" not in attrs
    # gpt-4o-mini: $0.15 / $0.60 per million tokens
    assert Decimal(attrs["aicost.cost.total_usd"]) == (1000 * Decimal("0.15") + 500 * Decimal("0.6")) / M
    (result,) = results
    assert result.usage.estimated is False and result.cost.total == Decimal(attrs["aicost.cost.total_usd"])


def test_parse_validation_error_after_a_200_is_estimated_not_free(instrumented, results, replay_server,
                                                                  openai_client):
    replay_server.enqueue(Reply.json(_completion("stop", "not json")))
    with pytest.raises(pydantic.ValidationError):
        openai_client.chat.completions.parse(model="gpt-4o-mini", messages=MSG, response_format=Out)
    _estimated_not_free(_one(instrumented), results[0], "ValidationError")


def test_read_timeout_after_a_200_is_estimated_not_free(instrumented, results, replay_server, openai_client):
    reply = openai_chat_reply()
    reply.first_chunk_delay = 0.8  # headers sent, the body late: the client's read timeout fires
    replay_server.enqueue(reply)
    with pytest.raises(openai.APITimeoutError):
        openai_client.with_options(timeout=0.2).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    _estimated_not_free(_one(instrumented), results[0], "APITimeoutError")


def test_stream_that_stalls_before_its_first_chunk_is_estimated_not_free(instrumented, results, replay_server,
                                                                         openai_client):
    reply = openai_chat_stream_reply(5)
    reply.first_chunk_delay = 0.8
    replay_server.enqueue(reply)
    stream = openai_client.with_options(timeout=0.2).chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                                                             stream=True)
    assert stream.response.status_code == 200
    with pytest.raises(openai.APITimeoutError):
        list(stream)
    attrs = _one(instrumented)
    assert attrs["aicost.stream.chunks"] == 0
    _estimated_not_free(attrs, results[0], "APITimeoutError")


async def test_cancelled_call_is_estimated_not_free(instrumented, results, replay_server, async_openai_client):
    reply = openai_chat_reply()
    reply.first_chunk_delay = 0.8
    replay_server.enqueue(reply)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG), 0.2)
    _estimated_not_free(_one(instrumented), results[0], "CancelledError")


# ------------------------------------------------------------------------------ still exactly $0
def _free(attrs: dict[str, Any], result: Any) -> None:
    assert attrs["gen_ai.usage.cost"] == 0 and attrs["gen_ai.usage.input_tokens"] == 0
    assert "aicost.usage.estimated" not in attrs
    assert result.usage.estimated is False and result.cost.total == 0


def test_an_http_error_response_is_free(instrumented, results, replay_server, openai_client):
    replay_server.enqueue(openai_error_reply(429, type_="rate_limit_exceeded"))
    with pytest.raises(openai.RateLimitError):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    _free(_one(instrumented), results[0])


def test_a_refused_connection_is_free(instrumented, results):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = openai.OpenAI(api_key="test", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    _free(_one(instrumented), results[0])


def test_arguments_the_sdk_refuses_before_sending_are_free(instrumented, results, replay_server, openai_client):
    with pytest.raises(TypeError):
        openai_client.chat.completions.create(model="gpt-4o-mini")  # no messages: refused, nothing sent
    assert replay_server.pending == 0 and not replay_server.requests
    _free(_one(instrumented), results[0])

