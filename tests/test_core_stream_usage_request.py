"""Where the README says aicost asks OpenAI for the usage chunk of a chat stream, it does: through the
``chat.completions.stream()`` helper (which passes ``stream_options`` as the SDK's ``omit`` placeholder), and on
OpenAI's regional hosts (the SDK's ``data_residency`` option, ``eu.api.openai.com``). Real SDK over real HTTP on
127.0.0.1 (tests/vendor_server.py); a regional host is reached through a transport that sends it to the loopback
server."""

from __future__ import annotations

from typing import Any, Iterator

import httpx2
import openai
import pytest

import aicost
from vendor_server import openai_chat_stream_reply, openai_client

MSG = [{"role": "user", "content": "hi there"}]


def _cost_span(span_exporter: Any) -> dict[str, Any]:
    (span,) = [x for x in span_exporter.get_finished_spans() if "gen_ai.usage.cost" in (x.attributes or {})]
    return dict(span.attributes or {})


@pytest.fixture
def always(tracer_provider: Any) -> Iterator[None]:
    aicost.instrument(tracer_provider=tracer_provider, stream_usage="always")
    try:
        yield
    finally:
        aicost.uninstrument()


def test_the_stream_helper_asks_for_the_usage_chunk_and_hides_it(always, replay_server, span_exporter):
    client = openai_client(replay_server)
    replay_server.enqueue(openai_chat_stream_reply(4, prompt_tokens=12))
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MSG) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()
    assert replay_server.requests[-1].json["stream_options"] == {"include_usage": True}
    assert events.count("chunk") == 6 and final.usage is None  # as without aicost: the caller asked for no usage
    attrs = _cost_span(span_exporter)
    assert attrs["gen_ai.usage.input_tokens"] == 12 and attrs["gen_ai.usage.output_tokens"] == 4
    assert "aicost.usage.estimated" not in attrs


class _ToLoopback(httpx2.HTTPTransport):
    """Sends every request to the loopback server, whatever host the client addressed."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.hosts: list[str] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.hosts.append(request.url.host)
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return super().handle_request(request)


@pytest.mark.parametrize("where", [{"data_residency": "eu"}, {"base_url": "https://eu.api.openai.com/v1"}])
def test_openai_regional_hosts_get_the_usage_chunk(instrumented, replay_server, where):
    transport = _ToLoopback(replay_server.port)
    client = openai.OpenAI(api_key="test", max_retries=0, http_client=httpx2.Client(transport=transport), **where)
    replay_server.enqueue(openai_chat_stream_reply(3, prompt_tokens=7))
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    assert transport.hosts == ["eu.api.openai.com"]
    assert replay_server.requests[-1].json["stream_options"] == {"include_usage": True}
    assert all(chunk.choices for chunk in chunks)  # the usage chunk is hidden
    attrs = _cost_span(instrumented.span_exporter)
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] == 7 and "aicost.usage.estimated" not in attrs


@pytest.mark.parametrize("host", ["api.openai.com.example.com", "evilapi.openai.com", "example.com"])
def test_other_hosts_are_not_asked(instrumented, replay_server, host):
    transport = _ToLoopback(replay_server.port)
    client = openai.OpenAI(api_key="test", max_retries=0, base_url=f"https://{host}/v1",
                           http_client=httpx2.Client(transport=transport))
    replay_server.enqueue(openai_chat_stream_reply(3, include_usage=False))
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    assert "stream_options" not in replay_server.requests[-1].json
