"""A stream read past the SDK's ``parse()``: ``with_streaming_response`` read with ``iter_lines()`` / ``iter_bytes()``
/ ``iter_text()``, how apps proxy server-sent events to a browser. aicost parses the events in the bytes as they
pass (``aicost/integrations/_sse.py``, ``stainless.EventBodyReader``) and reads the vendor's usage in them.

Every recorded stream is also replayed this way, sync and async, in ``test_replay_recordings.py`` (variants
``lines``, ``bytes``, ``text``): the cost equals the published price of the recorded usage, as for ``parse()``.
Here: the parser's edge cases, and what the replays cannot show (a stream without usage, a body closed early, an
event too large to keep, a reader that fails, the same response parsed after all).
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from aicost import semconv as s
from aicost.integrations._sse import EventParser
from vendor_server import (Reply, anthropic_stream_reply, openai_chat_stream_reply, openai_client,
                           openai_responses_stream_reply, sse)

MSG = [{"role": "user", "content": "What is the capital of France?"}]


def attrs(span):
    return dict(span.attributes or {})


def only_cost_span(instrumented):
    spans = instrumented.cost_spans()
    assert len(spans) == 1, [(x.name, attrs(x)) for x in instrumented.spans()]
    return attrs(spans[0])


def _events(body: bytes, size: int, limit: int = 1 << 20) -> tuple[list[tuple[str | None, bytes]], int]:
    parser = EventParser(limit)
    out = []
    for i in range(0, len(body), size):
        out.extend(parser.feed(body[i:i + size]))
    return out, parser.oversized


# ------------------------------------------------------------------------------------------ the parser
@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_events_are_parsed_however_the_bytes_are_split(eol, size):
    """Lines end with LF, CRLF or CR (a CRLF may be split between two chunks); data lines are joined with LF;
    comments, ids and unknown fields are passed over; a blank line ends the event, and an unended one is not
    dispatched (as the SDKs' own decoders do)."""
    text = ("event: message_start\ndata: {\"a\":\ndata:  1}\n\n"
            ": a comment\nid: 7\nretry: 10\nfoo: bar\ndata:{\"é\": 2}\n\n"
            "\n\n"  # blank lines between events dispatch nothing
            "data: [DONE]\n\n"
            "data: {\"unended\": true}\n")
    body = text.replace("\n", eol).encode()
    events, oversized = _events(body, size)
    assert events == [("message_start", b"{\"a\":\n 1}"), (None, "{\"é\": 2}".encode()), (None, b"[DONE]")]
    assert oversized == 0


@pytest.mark.parametrize("size", [1, 5, 64, 4096])
def test_an_event_over_the_limit_is_let_go_and_the_next_one_is_read(size):
    body = (sse({"n": 1}) + sse({"big": "x" * 300}, "big") + sse({"n": 2})).encode()
    events, oversized = _events(body, size, limit=100)
    assert events == [(None, b'{"n":1}'), (None, b'{"n":2}')] and oversized == 1


def test_the_parser_keeps_no_more_than_the_event_it_reads():
    parser = EventParser(100)
    parser.feed(b"data: " + b"x" * 10_000)  # one line, never ended: let go, not kept
    assert parser.oversized == 1 and not parser.partial and not parser.data
    assert parser.feed(b"x" * 10_000 + b"\n\ndata: 1\n\n") == [(None, b"1")]


# ------------------------------------------------------------------------------------------ through the SDKs
def test_a_chat_stream_without_usage_is_estimated_from_the_text_the_caller_relayed(instrumented, replay_server,
                                                                                   openai_client):
    """Without ``stream_options.include_usage`` OpenAI sends no usage. aicost never asks for it here (the caller
    relays the bytes: a chunk added to them could not be hidden), so the call is estimated, output included."""
    replay_server.enqueue(openai_chat_stream_reply(12, include_usage=False))
    with openai_client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MSG,
                                                                        stream=True) as response:
        lines = list(response.iter_lines())
    assert "stream_options" not in replay_server.requests[-1].json
    assert sum(" tok" in line for line in lines) == 12
    a = only_cost_span(instrumented)
    assert a[s.AICOST_USAGE_ESTIMATED] is True and a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 12  # one token per " tok"
    assert a[s.AICOST_STREAM_CHUNKS] == 14 and a[s.AICOST_STREAM_ENDED_BY] == "exhausted"


def test_a_stream_with_crlf_lines_and_split_data_read_a_byte_at_a_time_is_exact(instrumented, replay_server,
                                                                                openai_client):
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18"}
    usage = {"prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290}
    body = (sse({**chunk, "choices": [{"index": 0, "delta": {"content": "Paris"}, "finish_reason": "stop"}]})
            + ": keep-alive\n\n"
            + "data: " + json.dumps({**chunk, "choices": [], "usage": usage}, indent=1).replace("\n", "\ndata: ")
            + "\n\n" + sse("[DONE]")).replace("\n", "\r\n").encode()
    replay_server.enqueue(Reply.stream([body[i:i + 1] for i in range(len(body))]))
    with openai_client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True}) as response:
        got = b"".join(response.iter_bytes(chunk_size=3))
    assert got == body
    a = only_cost_span(instrumented)
    assert (a[s.GEN_AI_USAGE_INPUT_TOKENS], a[s.GEN_AI_USAGE_OUTPUT_TOKENS]) == (1234, 56)
    assert s.AICOST_USAGE_ESTIMATED not in a
    # gpt-4o-mini: $0.15 / $0.60 per MTok
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (1234 * Decimal("0.15") + 56 * Decimal("0.60")) / 10**6


def test_a_body_closed_before_the_usage_event_stays_estimated(instrumented, replay_server, anthropic_client):
    """The caller stops relaying after a few events: as for a parsed stream closed early, the vendor's input count
    (message_start) is kept, the output is counted from what was read, and the whole is an estimate."""
    replay_server.enqueue(anthropic_stream_reply(50, input_tokens=1234))
    with anthropic_client.messages.with_streaming_response.create(model="claude-3-5-haiku-20241022", max_tokens=99,
                                                                  messages=MSG, stream=True) as response:
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data:") and "content_block_delta" in line:
                break
    a = only_cost_span(instrumented)
    assert a[s.AICOST_USAGE_ESTIMATED] is True and a[s.AICOST_STREAM_ENDED_BY] == "closed"
    assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 1234 and a[s.GEN_AI_USAGE_OUTPUT_TOKENS] >= 1


def _without(name: str, n: int = 5) -> Reply:
    """An Anthropic stream of ``n`` deltas whose ``name`` event is missing: it ends cleanly, unfinished."""
    return Reply.stream([e for e in anthropic_stream_reply(n, input_tokens=1234).iter_chunks() if name not in e])


@pytest.mark.parametrize("missing", ["message_stop", "message_delta"])
@pytest.mark.parametrize("read", ["lines", "bytes"])
def test_a_body_read_to_its_end_without_the_final_event_says_why_as_a_parsed_stream_does(
        instrumented, replay_server, anthropic_client, missing, read):
    """The caller relays every byte, but the vendor's last word never came (docs/concepts.md, Faults: a stream
    "ended cleanly without the vendor's final event" says why). Read to its end, the body is the stream
    exhausted, as the SDK's own stream of the same bytes is: not a stream the caller closed early."""
    replay_server.enqueue(_without(missing))
    parsed = anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=99, messages=MSG,
                                              stream=True)
    for _ in parsed:
        pass
    expected = only_cost_span(instrumented)
    instrumented.clear()
    replay_server.enqueue(_without(missing))
    with anthropic_client.messages.with_streaming_response.create(model="claude-3-5-haiku-20241022", max_tokens=99,
                                                                  messages=MSG, stream=True) as response:
        for _ in (response.iter_lines() if read == "lines" else response.iter_bytes(chunk_size=7)):
            pass
    a = only_cost_span(instrumented)
    assert a[s.AICOST_STREAM_ENDED_BY] == expected[s.AICOST_STREAM_ENDED_BY] == "exhausted"
    assert a[s.AICOST_USAGE_INVALID_REASON] == expected[s.AICOST_USAGE_INVALID_REASON] == (
        "the stream ended without the vendor's final event")
    assert a[s.AICOST_USAGE_ESTIMATED] is True
    assert (a[s.GEN_AI_USAGE_INPUT_TOKENS], a[s.GEN_AI_USAGE_OUTPUT_TOKENS]) == (
        expected[s.GEN_AI_USAGE_INPUT_TOKENS], expected[s.GEN_AI_USAGE_OUTPUT_TOKENS])


async def test_an_async_body_read_to_its_end_without_the_final_event_says_why(instrumented, replay_server):
    from vendor_server import anthropic_client as make_anthropic_client

    client = make_anthropic_client(replay_server, is_async=True)
    replay_server.enqueue(_without("message_stop"))
    try:
        async with client.messages.with_streaming_response.create(model="claude-3-5-haiku-20241022", max_tokens=99,
                                                                  messages=MSG, stream=True) as response:
            async for _ in response.iter_lines():
                pass
    finally:
        await client.close()
    a = only_cost_span(instrumented)
    assert a[s.AICOST_STREAM_ENDED_BY] == "exhausted" and a[s.AICOST_USAGE_ESTIMATED] is True
    assert a[s.AICOST_USAGE_INVALID_REASON] == "the stream ended without the vendor's final event"


def _failed_stream() -> Reply:
    """An Anthropic stream that Anthropic ends, after 5 deltas, with an ``event: error`` (``overloaded_error``), as
    it documents a mid-stream error (no recording of one exists: ../shared/recordings/INDEX.md)."""
    return anthropic_stream_reply(20, input_tokens=1234, error_after=5)


def _call_span(instrumented):
    spans = instrumented.cost_spans()
    assert len(spans) == 1, [(x.name, attrs(x)) for x in instrumented.spans()]
    return spans[0]


@pytest.mark.parametrize("read", ["lines", "bytes"])
def test_an_error_event_in_relayed_bytes_fails_the_call_as_a_parsed_stream_does(instrumented, replay_server,
                                                                                anthropic_client, read):
    """A mid-stream ``event: error`` is a failed call: the SDK's own stream raises it, and the span says
    ``error.type`` (Anthropic's error type) with an error status. The caller relaying the bytes gets them all,
    the error event included; the call is failed just the same, not ``exhausted``."""
    import anthropic

    replay_server.enqueue(_failed_stream())
    with pytest.raises(anthropic.APIStatusError):
        for _ in anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=99, messages=MSG,
                                                  stream=True):
            pass
    parsed = _call_span(instrumented)
    expected = attrs(parsed)
    instrumented.clear()
    replay_server.enqueue(_failed_stream())
    with anthropic_client.messages.with_streaming_response.create(model="claude-3-5-haiku-20241022", max_tokens=99,
                                                                  messages=MSG, stream=True) as response:
        body = "\n".join(response.iter_lines()) if read == "lines" else b"".join(
            response.iter_bytes(chunk_size=7)).decode()
    assert "event: error" in body and "overloaded_error" in body  # relayed whole
    span = _call_span(instrumented)
    a = attrs(span)
    assert a[s.ERROR_TYPE] == expected[s.ERROR_TYPE] == "overloaded_error"
    assert span.status.status_code.name == parsed.status.status_code.name == "ERROR"
    assert a[s.AICOST_STREAM_ENDED_BY] == expected[s.AICOST_STREAM_ENDED_BY] == "error"
    assert a[s.AICOST_USAGE_ESTIMATED] is expected[s.AICOST_USAGE_ESTIMATED] is True
    assert (a[s.GEN_AI_USAGE_INPUT_TOKENS], a[s.GEN_AI_USAGE_OUTPUT_TOKENS]) == (
        expected[s.GEN_AI_USAGE_INPUT_TOKENS], expected[s.GEN_AI_USAGE_OUTPUT_TOKENS])
    assert a[s.AICOST_COST_TOTAL] == expected[s.AICOST_COST_TOTAL]


async def test_an_error_event_in_async_relayed_bytes_fails_the_call(instrumented, replay_server):
    from vendor_server import anthropic_client as make_anthropic_client

    client = make_anthropic_client(replay_server, is_async=True)
    replay_server.enqueue(_failed_stream())
    try:
        async with client.messages.with_streaming_response.create(model="claude-3-5-haiku-20241022", max_tokens=99,
                                                                  messages=MSG, stream=True) as response:
            lines = [line async for line in response.iter_lines()]
    finally:
        await client.close()
    assert "event: error" in lines
    span = _call_span(instrumented)
    a = attrs(span)
    assert a[s.ERROR_TYPE] == "overloaded_error" and span.status.status_code.name == "ERROR"
    assert a[s.AICOST_STREAM_ENDED_BY] == "error" and a[s.AICOST_USAGE_ESTIMATED] is True


def _openai_failed_stream() -> Reply:
    """An OpenAI chat stream that the API ends, after 5 content chunks, with an event whose data carries ``error``
    (``server_error``), which the SDK's stream raises as ``openai.APIError``."""
    return openai_chat_stream_reply(20, error_after=5)


def _openai_failed_call(client):
    return client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True})


@pytest.mark.parametrize("read", ["lines", "bytes"])
def test_an_openai_error_event_in_relayed_bytes_fails_the_call_as_a_parsed_stream_does(instrumented, replay_server,
                                                                                       openai_client, read):
    """OpenAI's mid-stream error (an event whose data carries ``error``) is a failed call as Anthropic's
    ``event: error`` is: relayed whole, the span is the span of the parsed stream that raised ``openai.APIError``."""
    import openai

    replay_server.enqueue(_openai_failed_stream())
    with pytest.raises(openai.APIError) as raised:
        for _ in openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                       stream_options={"include_usage": True}):
            pass
    assert type(raised.value) is openai.APIError and raised.value.type == "server_error"
    parsed = _call_span(instrumented)
    expected = attrs(parsed)
    instrumented.clear()
    replay_server.enqueue(_openai_failed_stream())
    with _openai_failed_call(openai_client) as response:
        body = "\n".join(response.iter_lines()) if read == "lines" else b"".join(
            response.iter_bytes(chunk_size=7)).decode()
    assert '"error"' in body and "server_error" in body  # relayed whole
    span = _call_span(instrumented)
    assert span.status.status_code.name == parsed.status.status_code.name == "ERROR"
    assert span.status.description == parsed.status.description
    a = attrs(span)
    assert a[s.ERROR_TYPE] == "server_error" and a[s.AICOST_STREAM_ENDED_BY] == "error"
    timing = {s.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK}  # a time: the rest is the same, key by key
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in expected.items() if k not in timing}


def test_each_relayed_openai_event_is_parsed_once_the_error_event_too(instrumented, replay_server, openai_client,
                                                                       monkeypatch):
    """The event the SDK raises at is read for its item and for its error in one parse of its JSON."""
    from aicost.integrations import openai as integration

    parsed: list[bytes] = []

    class CountingJson:
        def __getattr__(self, name):
            return getattr(json, name)

        @staticmethod
        def loads(data, *args, **kwargs):
            parsed.append(bytes(data) if isinstance(data, (bytes, bytearray)) else data.encode())
            return json.loads(data, *args, **kwargs)

    monkeypatch.setattr(integration, "json", CountingJson())
    replay_server.enqueue(_openai_failed_stream())
    with _openai_failed_call(openai_client) as response:
        body = "\n".join(response.iter_lines())
    events = [line[len("data: "):].encode() for line in body.splitlines() if line.startswith("data: {")]
    assert b'"error"' in events[-1] and not any(b'"error"' in e for e in events[:-1])
    assert parsed == events  # each once, in order
    assert attrs(_call_span(instrumented))[s.ERROR_TYPE] == "server_error"


async def test_an_openai_error_event_in_async_relayed_bytes_fails_the_call(instrumented, replay_server):
    client = openai_client(replay_server, is_async=True)
    replay_server.enqueue(_openai_failed_stream())
    try:
        async with _openai_failed_call(client) as response:
            lines = [line async for line in response.iter_lines()]
    finally:
        await client.close()
    assert any('"server_error"' in line for line in lines)
    span = _call_span(instrumented)
    a = attrs(span)
    assert a[s.ERROR_TYPE] == "server_error" and span.status.status_code.name == "ERROR"
    assert a[s.AICOST_STREAM_ENDED_BY] == "error" and a[s.AICOST_USAGE_ESTIMATED] is True


def _with_null_events(vendor: str) -> Reply:
    """A stream with events whose data is JSON ``null``: each SDK's ``Stream`` builds an item from it as from any
    event (``_process_response_data``: ``None``) and yields it to the caller. OpenAI: one before the first chunk
    and one after the finish; Anthropic: a ``content_block_delta`` whose data is ``null``, after ``message_start``."""
    if vendor == "openai":
        events = list(openai_chat_stream_reply(3).iter_chunks())
        return Reply.stream([sse("null"), *events[:-2], sse("null"), *events[-2:]])
    events = list(anthropic_stream_reply(3, input_tokens=1234).iter_chunks())
    return Reply.stream([events[0], sse("null", event="content_block_delta"), *events[1:]])


def _create(client, vendor: str, raw: bool):
    create = (client.chat.completions if vendor == "openai" else client.messages)
    create = create.with_streaming_response.create if raw else create.create
    if vendor == "openai":
        return create(model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True})
    return create(model="claude-3-5-haiku-20241022", max_tokens=99, messages=MSG, stream=True)


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
@pytest.mark.parametrize("read", ["lines", "bytes"])
def test_a_null_event_in_relayed_bytes_is_read_as_the_sdks_stream_reads_it(instrumented, replay_server,
                                                                           openai_client, anthropic_client,
                                                                           vendor, read):
    """An event whose data is ``null`` is an item to the SDK's own stream (the caller gets ``None``), not an event
    without one: relayed as bytes, the call is recorded as the parsed stream's is, key by key (the chunk count
    included), and the caller gets every byte as sent."""
    client = openai_client if vendor == "openai" else anthropic_client
    replay_server.enqueue(_with_null_events(vendor))
    items = list(_create(client, vendor, raw=False))
    assert items.count(None) == (2 if vendor == "openai" else 1)  # what the caller gets from the SDK
    expected = only_cost_span(instrumented)
    instrumented.clear()
    reply = _with_null_events(vendor)
    replay_server.enqueue(reply)
    with _create(client, vendor, raw=True) as response:
        body = ("\n".join(response.iter_lines()) + "\n" if read == "lines"
                else b"".join(response.iter_bytes(chunk_size=7)).decode())
    sent = "".join(reply.iter_chunks())
    assert body.split() == sent.split() and "data: null" in body  # relayed as sent
    a = only_cost_span(instrumented)
    assert a[s.AICOST_STREAM_CHUNKS] == expected[s.AICOST_STREAM_CHUNKS] == (8 if vendor == "openai" else 9)
    timing = {s.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK}  # a time: the rest is the same, key by key
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in expected.items() if k not in timing}


def test_an_event_too_large_to_keep_is_let_go_and_the_estimate_says_why(instrumented, replay_server, openai_client,
                                                                        monkeypatch):
    """A Responses stream's usage comes in ``response.completed``, which carries the whole response: over the
    reader's limit it is let go unread (memory stays bounded) and the call is estimated, with the reason."""
    from aicost.integrations.stainless import EventBodyReader

    monkeypatch.setattr(EventBodyReader, "_KEEP", 600)  # response.completed below is larger; the others are not
    replay_server.enqueue(openai_responses_stream_reply(3, input_tokens=1234))
    with openai_client.responses.with_streaming_response.create(model="gpt-4.1-nano", input="hi",
                                                                stream=True) as response:
        body = b"".join(response.iter_bytes())
    assert b"response.completed" in body
    a = only_cost_span(instrumented)
    assert a[s.AICOST_USAGE_ESTIMATED] is True and a[s.GEN_AI_USAGE_INPUT_TOKENS] != 1234
    assert a[s.AICOST_USAGE_INVALID_REASON] == "a stream event over 600 bytes was let go unread"


def test_without_an_oversized_event_the_same_stream_is_exact(instrumented, replay_server, openai_client):
    replay_server.enqueue(openai_responses_stream_reply(3, input_tokens=1234))
    with openai_client.responses.with_streaming_response.create(model="gpt-4.1-nano", input="hi",
                                                                stream=True) as response:
        for _ in response.iter_text():
            pass
    a = only_cost_span(instrumented)
    assert (a[s.GEN_AI_USAGE_INPUT_TOKENS], a[s.GEN_AI_USAGE_OUTPUT_TOKENS]) == (1234, 3)
    assert s.AICOST_USAGE_ESTIMATED not in a and s.AICOST_USAGE_INVALID_REASON not in a


def test_a_failing_event_reader_never_breaks_the_callers_read(instrumented, replay_server, anthropic_client,
                                                              monkeypatch, caplog):
    from aicost import _log

    def broken(self, chunk):
        raise RuntimeError("parser bug")

    monkeypatch.setattr(EventParser, "feed", broken)
    _log.forget("body:feed")
    replay_server.enqueue(anthropic_stream_reply(5, input_tokens=1234))
    with anthropic_client.messages.with_streaming_response.create(model="claude-3-5-haiku-20241022", max_tokens=99,
                                                                  messages=MSG, stream=True) as response:
        lines = list(response.iter_lines())
    assert sum("content_block_delta" in line for line in lines) == 10  # event: and data: lines, all there
    a = only_cost_span(instrumented)  # recorded all the same, estimated: nothing could be read
    assert a[s.AICOST_USAGE_ESTIMATED] is True
    assert [r.getMessage() for r in caplog.records if "parser bug" in str(r.exc_info)] == [
        "aicost: could not read a response's bytes on the way (the caller gets them all)"]  # said once


def test_a_stream_parsed_after_all_is_read_once(instrumented, replay_server, anthropic_client):
    """``parse()`` on the streaming response: the SDK's stream reads the same bytes, and its items are watched as
    it yields them, so the events in the bytes are not read a second time."""
    replay_server.enqueue(anthropic_stream_reply(5, input_tokens=1234))
    with anthropic_client.messages.with_streaming_response.create(model="claude-3-5-haiku-20241022", max_tokens=99,
                                                                  messages=MSG, stream=True) as response:
        items = list(response.parse())
    a = only_cost_span(instrumented)
    assert a[s.AICOST_STREAM_CHUNKS] == len(items) == 10  # the ping is not an item
    assert (a[s.GEN_AI_USAGE_INPUT_TOKENS], a[s.GEN_AI_USAGE_OUTPUT_TOKENS]) == (1234, 5)


async def test_an_async_stream_read_by_lines_is_exact(instrumented, replay_server):
    client = openai_client(replay_server, is_async=True)
    replay_server.enqueue(openai_chat_stream_reply(7, prompt_tokens=1234))
    try:
        async with client.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True}) as response:
            lines = [line async for line in response.iter_lines()]
    finally:
        await client.close()
    assert lines[-2:] == ["data: [DONE]", ""]
    a = only_cost_span(instrumented)
    assert (a[s.GEN_AI_USAGE_INPUT_TOKENS], a[s.GEN_AI_USAGE_OUTPUT_TOKENS]) == (1234, 7)
    assert s.AICOST_USAGE_ESTIMATED not in a and a[s.AICOST_STREAM_ENDED_BY] == "exhausted"


# ------------------------------------------------------------------------------------------ parsed == relayed
def _parsed_and_relayed(vendor: str, usage: bool, cache: bool) -> Reply:
    if vendor == "openai":
        return openai_chat_stream_reply(6, prompt_tokens=1234, include_usage=usage)
    return anthropic_stream_reply(6, input_tokens=1234, cache_read=300 if cache else 0,
                                  cache_write=200 if cache else 0)


def _stream(client, vendor: str, raw: bool, usage: bool):
    create = (client.chat.completions if vendor == "openai" else client.messages)
    create = create.with_streaming_response.create if raw else create.create
    if vendor == "openai":
        return create(model="gpt-4o-mini", messages=MSG, stream=True,
                      **({"stream_options": {"include_usage": True}} if usage else {}))
    return create(model="claude-3-5-haiku-20241022", max_tokens=99, messages=MSG, stream=True)


@pytest.mark.parametrize("vendor,usage,cache", [("openai", True, False), ("openai", False, False),
                                                ("anthropic", True, False), ("anthropic", True, True)])
@pytest.mark.parametrize("read", ["lines", "bytes"])
def test_a_relayed_stream_is_recorded_as_the_parsed_stream_of_the_same_bytes(
        instrumented, replay_server, openai_client, anthropic_client, vendor, usage, cache, read):
    """The span says the same whichever way the caller read the same bytes: key by key, every attribute (on
    Anthropic's own span too, whose stop reason and cache counts the SDK records from the events it is handed),
    but the time to the first chunk, a time. (OpenAI without ``include_usage``: aicost asks for usage only on a
    stream it parses, where it can hide the chunk it added; relayed, both are estimated from the same text.)"""
    client = openai_client if vendor == "openai" else anthropic_client
    replay_server.enqueue(_parsed_and_relayed(vendor, usage, cache))
    for _ in _stream(client, vendor, raw=False, usage=usage):
        pass
    parsed = _call_span(instrumented)
    expected = attrs(parsed)
    instrumented.clear()
    replay_server.enqueue(_parsed_and_relayed(vendor, usage, cache))
    with _stream(client, vendor, raw=True, usage=usage) as response:
        for _ in (response.iter_lines() if read == "lines" else response.iter_bytes(chunk_size=7)):
            pass
    span = _call_span(instrumented)
    a = attrs(span)
    timing = {s.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK}
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in expected.items() if k not in timing}
    assert span.status.status_code == parsed.status.status_code and span.name == parsed.name


async def test_an_async_relayed_anthropic_stream_is_recorded_as_the_parsed_stream(instrumented, replay_server):
    from vendor_server import anthropic_client as make_anthropic_client

    client = make_anthropic_client(replay_server, is_async=True)
    try:
        replay_server.enqueue(_parsed_and_relayed("anthropic", True, True))
        async for _ in await _stream(client, "anthropic", raw=False, usage=True):
            pass
        parsed = _call_span(instrumented)
        expected = attrs(parsed)
        instrumented.clear()
        replay_server.enqueue(_parsed_and_relayed("anthropic", True, True))
        async with _stream(client, "anthropic", raw=True, usage=True) as response:
            async for _ in response.iter_bytes(chunk_size=7):
                pass
    finally:
        await client.close()
    span = _call_span(instrumented)
    timing = {s.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK}
    assert {k: v for k, v in attrs(span).items() if k not in timing} == {
        k: v for k, v in expected.items() if k not in timing}
    assert span.status.status_code == parsed.status.status_code
