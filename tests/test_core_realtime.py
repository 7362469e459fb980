"""WebSocket connections (Realtime, beta Realtime, the Responses API's ``responses.connect()``), through the real
SDK over a real WebSocket on 127.0.0.1: one costed span per response the model generates, read from the events.

gpt-realtime, per million tokens: text $4 in, $0.40 cached, $16 out; audio $32 in, $0.40 cached, $64 out;
image $5 in. gpt-realtime-mini: text $0.60 in, $0.06 cached, $2.40 out; audio $10 in, $0.30 cached, $20 out.
The usage shapes are the SDK's ``RealtimeResponseUsage``: text, audio and image counts each include their cached
part, which ``cached_tokens_details`` breaks down.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import openai
import pytest

import aicost
from aicost import semconv as s
from socket_server import SocketServer

M = Decimal(10**6)

USAGE = {"total_tokens": 300, "input_tokens": 200, "output_tokens": 100,
         "input_token_details": {"text_tokens": 50, "audio_tokens": 150, "image_tokens": 0, "cached_tokens": 64,
                                 "cached_tokens_details": {"text_tokens": 32, "audio_tokens": 32, "image_tokens": 0}},
         "output_token_details": {"text_tokens": 20, "audio_tokens": 80}}
# 18 plain text in, 32 cached text, 32 cached audio, 118 audio in; 20 text out, 80 audio out
COST = (18 * Decimal(4) + 32 * Decimal("0.4") + 32 * Decimal("0.4") + 118 * Decimal(32)
        + 20 * Decimal(16) + 80 * Decimal(64)) / M
def session(model: str) -> dict:
    return {"type": "session.created", "event_id": "ev_0",
            "session": {"type": "realtime", "object": "realtime.session", "id": "sess_1", "model": model}}


def realtime_vendor(usage: dict | None = USAGE, status: str = "completed",
                    model: str = "gpt-realtime-2025-08-28") -> SocketServer:
    """Answers each ``response.create`` with ``response.created`` and ``response.done`` (ids resp_1, resp_2...)."""
    count = 0

    def reply(event: dict) -> list[dict]:
        nonlocal count
        if event.get("type") != "response.create":
            return []
        count += 1
        response = {"id": f"resp_{count}", "object": "realtime.response", "status": "in_progress", "output": []}
        done = {**response, "status": status}
        if usage is not None:
            done["usage"] = usage
        return [{"type": "response.created", "event_id": f"ev_{count}a", "response": response},
                {"type": "response.done", "event_id": f"ev_{count}b", "response": done}]

    return SocketServer([session(model)], reply)


def one_response(connection) -> None:
    """Ask for a response and read events until it is done, as an application's event loop would."""
    connection.response.create()
    for event in connection:
        if event.type == "response.done":
            return


def _client(server: SocketServer, is_async: bool = False):
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cls(api_key="test", base_url=server.url, websocket_base_url=server.url.replace("http://", "ws://"),
               max_retries=0)


def test_each_realtime_response_is_one_costed_span(instrumented):
    with realtime_vendor() as server:
        with aicost.attribute(team="voice", feature="agent"), aicost.collect_calls() as calls:
            with _client(server).realtime.connect(model="gpt-realtime") as connection:
                for _ in range(2):
                    connection.response.create()
                    for event in connection:
                        if event.type == "response.done":
                            assert event.response.usage.input_tokens == 200  # the caller sees the event as sent
                            break
    assert server.paths == ["/v1/realtime?model=gpt-realtime"]  # the request model aicost reports is this one
    assert [event["type"] for event in server.received] == ["response.create"] * 2  # aicost sends nothing
    spans = instrumented.cost_spans()
    assert [x.attributes[s.GEN_AI_RESPONSE_ID] for x in spans] == ["resp_1", "resp_2"]
    a = dict(spans[0].attributes)
    assert spans[0].name == "chat gpt-realtime"
    assert a[s.AICOST_ENDPOINT] == "openai.realtime.response" and a[s.GEN_AI_OPERATION_NAME] == "chat"
    assert a[s.GEN_AI_REQUEST_MODEL] == "gpt-realtime"  # what the connection asked for
    assert a[s.GEN_AI_RESPONSE_MODEL] == "gpt-realtime-2025-08-28"  # what its session reported
    assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 200 and a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 100
    assert a[s.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 64 and a[s.AICOST_USAGE_CACHE_READ_AUDIO] == 32
    assert a[s.AICOST_USAGE_INPUT_AUDIO] == 118 and a[s.AICOST_USAGE_OUTPUT_AUDIO] == 80
    assert Decimal(a[s.AICOST_COST_TOTAL]) == COST
    assert a[s.GEN_AI_RESPONSE_FINISH_REASONS] == ("completed",)
    assert a["aicost.team"] == "voice" and a["aicost.feature"] == "agent"
    assert calls.calls == 2 and calls.cost_usd == 2 * COST


async def test_async_realtime_responses_are_costed(instrumented):
    with realtime_vendor() as server:
        client = _client(server, is_async=True)
        async with client.realtime.connect(model="gpt-realtime") as connection:
            await connection.response.create()
            async for event in connection:
                if event.type == "response.done":
                    break
        await client.close()
    (span,) = instrumented.cost_spans()
    assert Decimal(span.attributes[s.AICOST_COST_TOTAL]) == COST


def test_events_read_as_bytes_and_parsed_by_the_caller_are_costed(instrumented):
    """``recv_bytes()`` + ``parse_event()``, the SDK's documented way to get at the raw message."""
    with realtime_vendor() as server:
        with _client(server).realtime.connect(model="gpt-realtime") as connection:
            connection.response.create()
            while connection.parse_event(connection.recv_bytes()).type != "response.done":
                pass
    (span,) = instrumented.cost_spans()
    assert Decimal(span.attributes[s.AICOST_COST_TOTAL]) == COST


def test_cached_text_and_audio_are_priced_at_their_own_cached_rates(instrumented):
    """gpt-realtime-mini caches text at $0.06 and audio at $0.30 per million: one rate for both would be wrong."""
    usage = {"input_tokens": 1000, "output_tokens": 100,
             "input_token_details": {"text_tokens": 400, "audio_tokens": 600, "cached_tokens": 500,
                                     "cached_tokens_details": {"text_tokens": 200, "audio_tokens": 300}},
             "output_token_details": {"text_tokens": 100, "audio_tokens": 0}}
    with realtime_vendor(usage, model="gpt-realtime-mini-2025-10-06") as server:
        with _client(server).realtime.connect(model="gpt-realtime-mini") as connection:
            one_response(connection)
    (span,) = instrumented.cost_spans()
    expected = (200 * Decimal("0.6") + 200 * Decimal("0.06") + 300 * Decimal("0.3") + 300 * Decimal(10)
                + 100 * Decimal("2.4")) / M
    assert Decimal(span.attributes[s.AICOST_COST_TOTAL]) == expected


def test_a_cancelled_response_is_billed_for_what_it_generated(instrumented):
    with realtime_vendor(status="cancelled") as server:
        with _client(server).realtime.connect(model="gpt-realtime") as connection:
            one_response(connection)
    (span,) = instrumented.cost_spans()
    assert span.attributes[s.GEN_AI_RESPONSE_FINISH_REASONS] == ("cancelled",)
    assert Decimal(span.attributes[s.AICOST_COST_TOTAL]) == COST


def test_a_response_without_usage_says_so_and_is_not_estimated(instrumented):
    with realtime_vendor(usage=None) as server:
        with _client(server).realtime.connect(model="gpt-realtime") as connection:
            one_response(connection)
    (span,) = instrumented.aicost_spans()
    a = dict(span.attributes)
    assert a[s.AICOST_PRICE_KNOWN] is False and "response.done" in a[s.AICOST_PRICE_UNKNOWN_REASON]
    assert s.AICOST_USAGE_ESTIMATED not in a and s.GEN_AI_USAGE_INPUT_TOKENS not in a


def test_the_beta_realtime_connection_is_costed_too(instrumented):
    with realtime_vendor() as server:
        with _client(server).beta.realtime.connect(model="gpt-realtime") as connection:
            one_response(connection)
    (span,) = instrumented.cost_spans()
    assert span.attributes[s.AICOST_ENDPOINT] == "openai.beta.realtime.response"
    assert Decimal(span.attributes[s.AICOST_COST_TOTAL]) == COST


def test_nothing_is_recorded_once_uninstrumented():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from openai.resources.realtime.realtime import RealtimeConnection

    original = RealtimeConnection.__dict__["parse_event"]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    aicost.instrument(tracer_provider=provider)
    assert RealtimeConnection.__dict__["parse_event"] is not original
    aicost.uninstrument()
    assert RealtimeConnection.__dict__["parse_event"] is original
    with realtime_vendor() as server:
        with _client(server).realtime.connect(model="gpt-realtime") as connection:
            one_response(connection)
    assert exporter.get_finished_spans() == ()


# -------------------------------------------------------------------------------- Responses over a WebSocket
def _response(response_id: str, status: str, usage: dict | None = None) -> dict:
    body = {"id": response_id, "object": "response", "created_at": 1_700_000_000, "model": "gpt-4.1-mini-2025-04-14",
            "status": status, "output": [], "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    if usage is not None:
        body["usage"] = usage
    return body


def responses_vendor() -> SocketServer:
    usage = {"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 400, "cache_write_tokens": 0},
             "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1050}

    def reply(event: dict) -> list[dict]:
        if event.get("type") != "response.create":
            return []
        return [{"type": "response.created", "sequence_number": 0, "response": _response("resp_w", "in_progress")},
                {"type": "response.completed", "sequence_number": 1,
                 "response": _response("resp_w", "completed", usage)}]

    return SocketServer((), reply)


@pytest.mark.parametrize("is_async", [False, True])
def test_a_response_over_the_responses_websocket_is_costed(instrumented, is_async):
    """gpt-4.1-mini: $0.40 in, $0.10 cached, $1.60 out per million."""
    with responses_vendor() as server:
        if is_async:
            async def run() -> None:
                client = _client(server, is_async=True)
                async with client.responses.connect() as connection:
                    await connection.response.create(model="gpt-4.1-mini", input="hi")
                    async for event in connection:
                        if event.type == "response.completed":
                            break
                await client.close()

            asyncio.run(run())
        else:
            with _client(server).responses.connect() as connection:
                connection.response.create(model="gpt-4.1-mini", input="hi")
                for event in connection:
                    if event.type == "response.completed":
                        break
    (span,) = instrumented.cost_spans()
    a = dict(span.attributes)
    assert a[s.AICOST_ENDPOINT] == "openai.responses.connect" and a[s.GEN_AI_RESPONSE_ID] == "resp_w"
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (600 * Decimal("0.4") + 400 * Decimal("0.1") + 50 * Decimal("1.6")) / M


# ----------------------------------------------------------------------------- input audio transcription
def transcribing_vendor(transcription_model: str | None, usage: dict, transcription_only: bool = False) -> SocketServer:
    """A session that transcribes its input audio with ``transcription_model``: each committed buffer yields a
    ``conversation.item.input_audio_transcription.completed`` event with the transcription's own usage. A
    transcription-only session (``intent=transcription``) has no conversation model at all."""
    greeting = session("gpt-realtime-2025-08-28")
    if transcription_only:
        greeting["session"] = {"type": "transcription", "object": "realtime.transcription_session", "id": "sess_t"}
    if transcription_model is not None:
        greeting["session"]["audio"] = {"input": {"transcription": {"model": transcription_model}}}

    def reply(event: dict) -> list[dict]:
        if event.get("type") != "input_audio_buffer.commit":
            return []
        return [{"type": "input_audio_buffer.committed", "event_id": "ev_c", "item_id": "item_1"},
                {"type": "conversation.item.input_audio_transcription.completed", "event_id": "ev_t",
                 "item_id": "item_1", "content_index": 0, "transcript": "Hello there.", "usage": usage}]

    return SocketServer([greeting], reply)


def _transcribe_once(server: SocketServer) -> None:
    with _client(server).realtime.connect(model="gpt-realtime") as connection:
        connection.input_audio_buffer.commit()
        for event in connection:
            if event.type == "conversation.item.input_audio_transcription.completed":
                return


@pytest.mark.parametrize("transcription_only", [False, True])
def test_input_audio_transcription_is_billed_at_the_transcription_model(instrumented, transcription_only):
    """gpt-4o-transcribe: $2.50 text in, $6 audio in, $10 out per million, not the realtime model's rates."""
    usage = {"type": "tokens", "input_tokens": 1500, "input_token_details": {"audio_tokens": 1480, "text_tokens": 20},
             "output_tokens": 300, "total_tokens": 1800}
    with transcribing_vendor("gpt-4o-transcribe", usage, transcription_only) as server:
        with aicost.attribute(team="voice"):
            _transcribe_once(server)
    (span,) = instrumented.cost_spans()
    a = dict(span.attributes)
    assert a[s.AICOST_ENDPOINT] == "openai.realtime.input_audio_transcription"
    assert a[s.GEN_AI_OPERATION_NAME] == "generate_content" and a[s.GEN_AI_RESPONSE_MODEL] == "gpt-4o-transcribe"
    assert a[s.AICOST_USAGE_INPUT_AUDIO] == 1480 and a["aicost.team"] == "voice"
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (20 * Decimal("2.50") + 1480 * Decimal(6) + 300 * Decimal(10)) / M
    assert "Hello there" not in str(a)


def test_duration_billed_input_transcription_says_so(instrumented):
    with transcribing_vendor("whisper-1", {"type": "duration", "seconds": 4.2}) as server:
        _transcribe_once(server)
    (span,) = instrumented.aicost_spans()
    a = dict(span.attributes)
    assert a[s.AICOST_USAGE_AUDIO_SECONDS] == 4.2 and a[s.AICOST_PRICE_KNOWN] is False
    assert "per second" in a[s.AICOST_PRICE_UNKNOWN_REASON]


def test_input_transcription_without_a_known_model_keeps_its_tokens_and_an_unknown_cost(instrumented):
    usage = {"type": "tokens", "input_tokens": 100, "output_tokens": 10, "total_tokens": 110}
    with transcribing_vendor(None, usage) as server:
        _transcribe_once(server)
    (span,) = instrumented.aicost_spans()
    a = dict(span.attributes)
    assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 100 and a[s.AICOST_PRICE_KNOWN] is False
    assert "transcription model" in a[s.AICOST_PRICE_UNKNOWN_REASON]


# ----------------------------------------------------------------------------------------------- budgets
def test_budgets_count_realtime_spend_without_refusing_it():
    """A Realtime response cannot be refused (the vendor starts it before any event says so) and nothing is
    raised into the caller's event loop, even over the limit; its actual cost is counted against the budget, so
    the next HTTP call sees it."""
    from aicost.budget import Budget, BudgetExceeded, configure_budgets, disable_budgets
    from vendor_server import ReplayServer, openai_chat_reply

    aicost.instrument()
    guard = configure_budgets(budgets=[Budget(limit_usd="0.01", scope="team", value="voice")])
    try:
        with realtime_vendor() as server, aicost.attribute(team="voice"):
            with _client(server).realtime.connect(model="gpt-realtime") as connection:
                one_response(connection)  # $0.0093136
                one_response(connection)  # over the $0.01 limit now: still delivered, still counted
        (status,) = guard.status({"aicost.team": "voice"})
        assert status.spent_usd == 2 * COST and status.reserved_usd == 0
        with ReplayServer() as http, aicost.attribute(team="voice"):
            http.enqueue(openai_chat_reply())
            with pytest.raises(BudgetExceeded):
                openai.OpenAI(api_key="test", base_url=http.url + "/v1", max_retries=0).chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    finally:
        disable_budgets()
        guard.close()
        aicost.uninstrument()
