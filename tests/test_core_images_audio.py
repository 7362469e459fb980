"""OpenAI images, audio transcription and text to speech, through the real SDK over loopback HTTP: one span each, priced from the
tokens the vendor reports, or marked unknown (with the reason) when it bills by a unit the catalog has no rate for.

Prices used (per million tokens): gpt-image-1.5 $5 text in, $8 image in, $10 text out, $32 image out;
gpt-image-1 $5 text in, $10 image in, $40 out; gpt-4o-transcribe $2.50 text in, $6 audio in, $10 out. Text to
speech: see its section.
"""

from __future__ import annotations

import io
from decimal import Decimal

import pytest

from aicost import semconv as s
from vendor_server import Reply, openai_client, sse

M = Decimal(10**6)


def one_span(instrumented) -> dict:
    spans = instrumented.aicost_spans()
    assert len(spans) == 1, [(x.name, dict(x.attributes or {})) for x in instrumented.spans()]
    return dict(spans[0].attributes)


def _image_usage(text_in: int, image_in: int, image_out: int) -> dict:
    return {"input_tokens": text_in + image_in, "input_tokens_details": {"text_tokens": text_in, "image_tokens": image_in},
            "output_tokens": image_out, "total_tokens": text_in + image_in + image_out,
            "output_tokens_details": {"image_tokens": image_out, "text_tokens": 0}}


def _images_response(usage: dict | None = None, **extra) -> dict:
    body = {"created": 1_700_000_000, "data": [{"b64_json": "aGVsbG8="}], **extra}
    if usage is not None:
        body["usage"] = usage
    return body


def test_image_generation_is_priced_from_its_token_usage(instrumented, replay_server, openai_client):
    replay_server.enqueue(Reply.json(_images_response(_image_usage(50, 0, 4160))))
    result = openai_client.images.generate(model="gpt-image-1.5", prompt="a cat in a hat")
    assert result.data[0].b64_json == "aGVsbG8="  # the application's object, untouched
    a = one_span(instrumented)
    assert a[s.AICOST_ENDPOINT] == "openai.images.generate"
    assert a[s.GEN_AI_OPERATION_NAME] == "generate_content" and a[s.GEN_AI_REQUEST_MODEL] == "gpt-image-1.5"
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (50 * Decimal(5) + 4160 * Decimal(32)) / M
    assert a[s.AICOST_USAGE_OUTPUT_IMAGE] == 4160
    assert replay_server.requests[-1].path == "/v1/images/generations"


def test_image_edit_with_an_input_image_is_priced(instrumented, replay_server, openai_client):
    """Multipart upload; image input tokens at the image input rate. gpt-image-1 has one output rate."""
    replay_server.enqueue(Reply.json(_images_response(_image_usage(20, 323, 1056))))
    openai_client.images.edit(model="gpt-image-1", image=("in.png", io.BytesIO(b"\x89PNG fake"), "image/png"),
                              prompt="add a hat")
    a = one_span(instrumented)
    assert a[s.AICOST_ENDPOINT] == "openai.images.edit"
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (20 * Decimal(5) + 323 * Decimal(10) + 1056 * Decimal(40)) / M


def test_dall_e_images_are_billed_per_image_so_the_cost_is_unknown_not_estimated(instrumented, replay_server,
                                                                                openai_client):
    replay_server.enqueue(Reply.json(_images_response()))
    openai_client.images.generate(model="dall-e-3", prompt="a cat in a hat")
    a = one_span(instrumented)
    assert a[s.AICOST_PRICE_KNOWN] is False and s.GEN_AI_USAGE_COST not in a
    assert "per image" in a[s.AICOST_PRICE_UNKNOWN_REASON]
    assert s.AICOST_USAGE_ESTIMATED not in a  # no token estimate from the prompt: it would look like a price


def test_image_stream_usage_comes_from_the_completed_event(instrumented, replay_server, openai_client):
    def events():
        yield sse({"type": "image_generation.partial_image", "b64_json": "cGFy", "partial_image_index": 0,
                   "background": "auto", "created_at": 1, "output_format": "png", "quality": "high",
                   "size": "1024x1024"}, "image_generation.partial_image")
        yield sse({"type": "image_generation.completed", "b64_json": "ZG9uZQ==", "background": "auto",
                   "created_at": 2, "output_format": "png", "quality": "high", "size": "1024x1024",
                   "usage": _image_usage(50, 0, 4160)}, "image_generation.completed")

    replay_server.enqueue(Reply.stream(events))
    stream = openai_client.images.generate(model="gpt-image-1.5", prompt="a cat", stream=True, partial_images=1)
    assert [e.type for e in stream] == ["image_generation.partial_image", "image_generation.completed"]
    a = one_span(instrumented)
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (50 * Decimal(5) + 4160 * Decimal(32)) / M
    assert a[s.AICOST_STREAM_ENDED_BY] == "exhausted" and a[s.AICOST_STREAM_CHUNKS] == 2


def test_svg_authoring_is_priced_at_its_own_model(instrumented, replay_server, openai_client):
    """``svg_usage``: "token usage for SVG authoring, separate from image rendering usage", naming its model."""
    svg = {"input_tokens": 100, "output_tokens": 300, "reasoning_tokens": 200, "total_tokens": 400,
           "model": "gpt-4.1-mini"}
    replay_server.enqueue(Reply.json(_images_response(_image_usage(50, 0, 1000), svg_usage=svg, output_format="svg")))
    openai_client.images.generate(model="gpt-image-1.5", prompt="a logo", output_format="svg")
    a = one_span(instrumented)
    image = (50 * Decimal(5) + 1000 * Decimal(32)) / M
    svg_cost = (100 * Decimal("0.40") + 300 * Decimal("1.60")) / M  # gpt-4.1-mini: $0.40 in, $1.60 out
    assert Decimal(a[s.AICOST_COST_TOTAL]) == image + svg_cost
    assert a["aicost.svg.model"] == "gpt-4.1-mini" and a["aicost.cost.svg_usd"] == float(svg_cost)


async def test_async_image_generation_and_raw_response(instrumented, replay_server):
    client = openai_client(replay_server, is_async=True)
    replay_server.enqueue(Reply.json(_images_response(_image_usage(50, 0, 4160))))
    await client.images.generate(model="gpt-image-1.5", prompt="a cat")
    replay_server.enqueue(Reply.json(_images_response(_image_usage(50, 0, 4160))))
    raw = await client.images.with_raw_response.generate(model="gpt-image-1.5", prompt="a cat")
    assert raw.parse().data[0].b64_json == "aGVsbG8="  # openai's with_raw_response parses synchronously
    await client.close()
    spans = instrumented.cost_spans()
    assert [Decimal(x.attributes[s.AICOST_COST_TOTAL]) for x in spans] == [(50 * Decimal(5) + 4160 * Decimal(32)) / M] * 2


# ------------------------------------------------------------------------------------------------- audio
def _audio() -> tuple:
    return ("speech.mp3", io.BytesIO(b"ID3 fake audio"), "audio/mpeg")


def test_token_billed_transcription_is_priced_with_audio_input_rates(instrumented, replay_server, openai_client):
    usage = {"type": "tokens", "input_tokens": 1500, "input_token_details": {"audio_tokens": 1480, "text_tokens": 20},
             "output_tokens": 300, "total_tokens": 1800}
    replay_server.enqueue(Reply.json({"text": "Hello there.", "usage": usage}))
    result = openai_client.audio.transcriptions.create(model="gpt-4o-transcribe", file=_audio())
    assert result.text == "Hello there."
    a = one_span(instrumented)
    assert a[s.AICOST_ENDPOINT] == "openai.audio.transcriptions.create"
    assert a[s.AICOST_USAGE_INPUT_AUDIO] == 1480 and a[s.GEN_AI_USAGE_INPUT_TOKENS] == 1500
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (20 * Decimal("2.50") + 1480 * Decimal(6) + 300 * Decimal(10)) / M
    assert "Hello there" not in str(a)  # no transcript on the span without content capture


def test_duration_billed_transcription_says_so_and_has_no_cost(instrumented, replay_server, openai_client):
    replay_server.enqueue(Reply.json({"text": "Hello there.", "usage": {"type": "duration", "seconds": 42.5}}))
    openai_client.audio.transcriptions.create(model="whisper-1", file=_audio())
    a = one_span(instrumented)
    assert a[s.AICOST_USAGE_AUDIO_SECONDS] == 42.5
    assert a[s.AICOST_PRICE_KNOWN] is False and "per second" in a[s.AICOST_PRICE_UNKNOWN_REASON]
    assert s.GEN_AI_USAGE_COST not in a and s.GEN_AI_USAGE_INPUT_TOKENS not in a  # no tokens reported: none written
    assert "gen_ai.client.token.usage" not in instrumented.metrics()  # no 0-token points either


def test_unpriced_calls_count_as_unknown_cost_and_keep_the_budget_reservation(replay_server, openai_client):
    """A call whose response carries no usage is still spend: collectors count it as unknown-cost, and a budget
    keeps the worst-case reservation it made (the model is priced) instead of releasing it as "nothing billed"."""
    import aicost
    from aicost.budget import Budget, configure_budgets, disable_budgets

    aicost.instrument()
    guard = configure_budgets(budgets=[Budget(limit_usd="10", scope="team", value="audio")])
    try:
        with aicost.attribute(team="audio"), aicost.collect_calls() as calls:
            replay_server.enqueue(Reply(body="Hello there.", content_type="text/plain"))
            openai_client.audio.transcriptions.create(model="gpt-4o-transcribe", file=_audio(), response_format="text")
        assert calls.calls == 1 and calls.unknown_cost_calls == 1 and calls.cost_usd == 0
        (status,) = guard.status({"aicost.team": "audio"})
        assert status.spent_usd > 0 and status.reserved_usd == 0  # the reservation was settled as spent
    finally:
        disable_budgets()
        guard.close()
        aicost.uninstrument()


@pytest.mark.parametrize("call", ["transcription_text", "translation"])
def test_audio_responses_without_usage_are_recorded_unpriced(instrumented, replay_server, openai_client, call):
    if call == "transcription_text":
        replay_server.enqueue(Reply(body="Hello there.", content_type="text/plain"))
        text = openai_client.audio.transcriptions.create(model="gpt-4o-transcribe", file=_audio(), response_format="text")
        assert text.strip() == "Hello there."
    else:
        replay_server.enqueue(Reply.json({"text": "Hello there."}))
        openai_client.audio.translations.create(model="whisper-1", file=_audio())
    a = one_span(instrumented)
    assert a[s.AICOST_PRICE_KNOWN] is False and a[s.AICOST_PRICE_UNKNOWN_REASON]
    assert s.AICOST_USAGE_ESTIMATED not in a


def test_transcription_stream_usage_comes_from_the_done_event(instrumented, replay_server, openai_client):
    usage = {"type": "tokens", "input_tokens": 1500, "input_token_details": {"audio_tokens": 1480, "text_tokens": 20},
             "output_tokens": 300, "total_tokens": 1800}

    def events():
        yield sse({"type": "transcript.text.delta", "delta": "Hello"}, "transcript.text.delta")
        yield sse({"type": "transcript.text.delta", "delta": " there."}, "transcript.text.delta")
        yield sse({"type": "transcript.text.done", "text": "Hello there.", "usage": usage}, "transcript.text.done")

    replay_server.enqueue(Reply.stream(events))
    stream = openai_client.audio.transcriptions.create(model="gpt-4o-transcribe", file=_audio(), stream=True)
    assert [e.type for e in stream][-1] == "transcript.text.done"
    a = one_span(instrumented)
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (20 * Decimal("2.50") + 1480 * Decimal(6) + 300 * Decimal(10)) / M
    assert a[s.AICOST_STREAM_ENDED_BY] == "exhausted"


def test_a_request_level_call_to_the_images_endpoint_is_recorded(instrumented, replay_server, openai_client):
    """The safety net routes by URL path: a direct ``client.post`` to the images endpoint is still costed."""
    from openai.types import ImagesResponse

    replay_server.enqueue(Reply.json(_images_response(_image_usage(50, 0, 4160))))
    openai_client.post("/images/generations", body={"model": "gpt-image-1.5", "prompt": "a cat"},
                       cast_to=ImagesResponse)
    a = one_span(instrumented)
    assert a[s.AICOST_ENDPOINT] == "openai.images.generate"
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (50 * Decimal(5) + 4160 * Decimal(32)) / M


def test_image_streaming_response_and_vendor_error(instrumented, replay_server, openai_client):
    """``with_streaming_response`` is observed when the caller parses; a rejected request is an error, billed $0."""
    import openai

    replay_server.enqueue(Reply.json(_images_response(_image_usage(50, 0, 4160))))
    with openai_client.images.with_streaming_response.generate(model="gpt-image-1.5", prompt="a cat") as raw:
        assert raw.parse().data[0].b64_json == "aGVsbG8="
    replay_server.enqueue(Reply.json({"error": {"message": "bad size", "type": "invalid_request_error",
                                                "param": "size", "code": None}}, status=400))
    with pytest.raises(openai.BadRequestError):
        openai_client.images.generate(model="gpt-image-1.5", prompt="a cat", size="1x1")
    first, second = (dict(x.attributes) for x in instrumented.aicost_spans())
    assert Decimal(first[s.AICOST_COST_TOTAL]) == (50 * Decimal(5) + 4160 * Decimal(32)) / M
    assert second[s.ERROR_TYPE] == "invalid_request_error" and second[s.GEN_AI_USAGE_COST] == 0


async def test_async_transcription_stream(instrumented, replay_server):
    usage = {"type": "tokens", "input_tokens": 100, "input_token_details": {"audio_tokens": 100, "text_tokens": 0},
             "output_tokens": 10, "total_tokens": 110}

    def events():
        yield sse({"type": "transcript.text.delta", "delta": "Hi"}, "transcript.text.delta")
        yield sse({"type": "transcript.text.done", "text": "Hi", "usage": usage}, "transcript.text.done")

    client = openai_client(replay_server, is_async=True)
    replay_server.enqueue(Reply.stream(events))
    stream = await client.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=_audio(), stream=True)
    assert [e.type async for e in stream] == ["transcript.text.delta", "transcript.text.done"]
    await client.close()
    a = one_span(instrumented)
    assert Decimal(a[s.AICOST_COST_TOTAL]) == (100 * Decimal(3) + 10 * Decimal(5)) / M  # $3 audio in, $5 out


# ------------------------------------------------------------------------------------------ text to speech
# gpt-4o-mini-tts: $0.60 per million text tokens in, $12 per million audio tokens out. It reports its usage only
# with stream_format="sse", in the final speech.audio.done event; audio formats carry none. tts-1 / tts-1-hd bill
# $15 / $30 per million input characters, which the request says.
_SPEECH_USAGE = {"input_tokens": 14, "output_tokens": 101, "total_tokens": 115}
_SPEECH_COST = (14 * Decimal("0.60") + 101 * Decimal(12)) / M


def _speech_events() -> Reply:
    return Reply.stream([sse({"type": "speech.audio.delta", "audio": "SUQzZmFrZQ=="}),
                         sse({"type": "speech.audio.delta", "audio": "YXVkaW8="}),
                         sse({"type": "speech.audio.done", "usage": _SPEECH_USAGE})])


def _assert_speech_priced(a: dict) -> None:
    assert a[s.AICOST_ENDPOINT] == "openai.audio.speech.create"
    assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 14 and a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 101
    assert a[s.AICOST_USAGE_OUTPUT_AUDIO] == 101
    assert Decimal(a[s.AICOST_COST_TOTAL]) == _SPEECH_COST
    assert s.AICOST_USAGE_ESTIMATED not in a


@pytest.mark.parametrize("raw", [False, True])
def test_speech_events_are_priced_from_the_done_event(instrumented, replay_server, openai_client, raw):
    replay_server.enqueue(_speech_events())
    kwargs = dict(model="gpt-4o-mini-tts", voice="alloy", input="Hello there.", stream_format="sse")
    if raw:
        body = openai_client.audio.speech.with_raw_response.create(**kwargs).parse().content
    else:
        body = openai_client.audio.speech.create(**kwargs).content
    assert body.count(b"speech.audio.delta") == 2 and body.endswith(b"\n\n")  # the caller gets every byte
    _assert_speech_priced(one_span(instrumented))


async def test_async_speech_events_are_priced(instrumented, replay_server):
    client = openai_client(replay_server, is_async=True)
    replay_server.enqueue(_speech_events())
    result = await client.audio.speech.create(model="gpt-4o-mini-tts-2025-03-20", voice="alloy", input="Hello there.",
                                              stream_format="sse")
    assert b"speech.audio.done" in result.content
    await client.close()
    _assert_speech_priced(one_span(instrumented))


def test_token_billed_speech_in_an_audio_format_is_recorded_with_an_unknown_cost(instrumented, replay_server,
                                                                                   openai_client):
    """No usage in the response: the call is recorded and says why it has no cost; nothing is estimated."""
    replay_server.enqueue(Reply(body=b"ID3 fake mp3", content_type="audio/mpeg"))
    result = openai_client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="Hello there.")
    assert result.content == b"ID3 fake mp3"
    a = one_span(instrumented)
    assert a[s.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini-tts" and a[s.AICOST_ENDPOINT] == "openai.audio.speech.create"
    assert a[s.AICOST_PRICE_KNOWN] is False and "stream_format='sse'" in a[s.AICOST_PRICE_UNKNOWN_REASON]
    assert s.GEN_AI_USAGE_COST not in a and s.GEN_AI_USAGE_INPUT_TOKENS not in a and s.AICOST_USAGE_ESTIMATED not in a
    assert "Hello there" not in str(a)


@pytest.mark.parametrize(("model", "rate"), [("tts-1", "15"), ("tts-1-hd", "30"), ("tts-1-hd-1106", "30")])
@pytest.mark.parametrize("how", ["create", "raw", "streaming"])
def test_character_billed_speech_is_priced_per_input_character(instrumented, replay_server, openai_client, model,
                                                               rate, how):
    text = "Grüße, world! 👋"  # 15 characters (the emoji is one), 20 bytes of UTF-8
    replay_server.enqueue(Reply(body=b"ID3 fake mp3", content_type="audio/mpeg"))
    kwargs = dict(model=model, voice="alloy", input=text)
    if how == "create":
        body = openai_client.audio.speech.create(**kwargs).content
    elif how == "raw":
        body = openai_client.audio.speech.with_raw_response.create(**kwargs).parse().content
    else:
        with openai_client.audio.speech.with_streaming_response.create(**kwargs) as response:
            body = b"".join(response.iter_bytes())
    assert body == b"ID3 fake mp3"
    a = one_span(instrumented)
    assert a[s.AICOST_USAGE_INPUT_CHARACTERS] == 15
    assert Decimal(a[s.AICOST_COST_TOTAL]) == 15 * Decimal(rate) / M
    assert a["aicost.cost.input_characters_usd"] == float(15 * Decimal(rate) / M)
    assert s.GEN_AI_USAGE_INPUT_TOKENS not in a and s.AICOST_USAGE_ESTIMATED not in a  # no tokens, not zero tokens
    assert "gen_ai.client.token.usage" not in instrumented.metrics()
    assert text not in str(a)


def test_a_budget_reserves_a_character_billed_speech_call_before_it_is_sent(replay_server, openai_client):
    """The reservation is the exact per-character price: a call that would exceed the budget is refused before
    any request is made, and one that fits is settled at what it cost."""
    import aicost
    from aicost.budget import Budget, BudgetExceeded, configure_budgets, disable_budgets

    aicost.instrument()
    guard = configure_budgets(budgets=[Budget(limit_usd="0.0002", scope="team", value="voice")])
    try:
        with aicost.attribute(team="voice"):
            with pytest.raises(BudgetExceeded):  # 20 characters at $15 per million: $0.0003
                openai_client.audio.speech.create(model="tts-1", voice="alloy", input="x" * 20)
            assert replay_server.requests == []
            replay_server.enqueue(Reply(body=b"ID3 fake mp3", content_type="audio/mpeg"))
            openai_client.audio.speech.create(model="tts-1", voice="alloy", input="x" * 10)
        (status,) = guard.status({"aicost.team": "voice"})
        assert status.spent_usd == Decimal("0.00015") and status.reserved_usd == 0
    finally:
        disable_budgets()
        guard.close()
        aicost.uninstrument()


@pytest.mark.parametrize("how", ["iter_bytes", "iter_lines", "read", "stream_to_file"])
def test_streamed_speech_events_are_priced_from_the_bytes_the_caller_read(instrumented, replay_server, openai_client,
                                                                         how, tmp_path):
    """``with_streaming_response``, how SSE speech is played as it arrives: the caller reads the bytes, and aicost
    reads their tail on the way, whichever way the caller reads them. Every byte reaches the caller."""
    replay_server.enqueue(_speech_events())
    with openai_client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input="Hello there.", stream_format="sse") as response:
        if how == "iter_bytes":
            body = b"".join(response.iter_bytes())
        elif how == "iter_lines":
            body = "\n".join(response.iter_lines()).encode()
        elif how == "read":
            body = response.read()
        else:
            response.stream_to_file(tmp_path / "speech.sse")
            body = (tmp_path / "speech.sse").read_bytes()
    assert body.count(b"speech.audio.delta") == 2 and b"speech.audio.done" in body
    _assert_speech_priced(one_span(instrumented))


async def test_async_streamed_speech_events_are_priced(instrumented, replay_server):
    client = openai_client(replay_server, is_async=True)
    replay_server.enqueue(_speech_events())
    async with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input="Hello there.", stream_format="sse") as response:
        lines = [line async for line in response.iter_lines()]
    await client.close()
    assert sum("speech.audio.delta" in line for line in lines) == 2
    _assert_speech_priced(one_span(instrumented))


def test_the_done_event_is_found_across_chunks_after_megabytes_of_audio(instrumented, replay_server, openai_client):
    """Only the tail is kept, and the final event may arrive split over several chunks."""
    audio = sse({"type": "speech.audio.delta", "audio": "QUFB" * 500_000})  # 2 MB of base64
    done = sse({"type": "speech.audio.done", "usage": _SPEECH_USAGE})
    replay_server.enqueue(Reply.stream([audio[i:i + 65_536] for i in range(0, len(audio), 65_536)]
                                       + [done[i:i + 7] for i in range(0, len(done), 7)]))
    with openai_client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input="Hello there.", stream_format="sse") as response:
        size = sum(len(chunk) for chunk in response.iter_bytes())
    assert size == len(audio) + len(done)
    _assert_speech_priced(one_span(instrumented))


def test_streamed_speech_closed_before_its_usage_is_recorded_with_an_unknown_cost(instrumented, replay_server,
                                                                                 openai_client):
    """The caller stops reading before the final event: nothing says what was billed, and aicost says so instead
    of estimating; a per-character model is still priced from its request."""
    replay_server.enqueue(_speech_events())
    with openai_client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input="Hello there.", stream_format="sse") as response:
        next(response.iter_bytes(chunk_size=8))
    a = one_span(instrumented)
    assert a[s.AICOST_PRICE_KNOWN] is False and "speech.audio.done" in a[s.AICOST_PRICE_UNKNOWN_REASON]
    assert s.GEN_AI_USAGE_INPUT_TOKENS not in a and s.AICOST_USAGE_ESTIMATED not in a


def test_a_speech_error_is_recorded_and_raised_unchanged(instrumented, replay_server, openai_client):
    import openai

    replay_server.enqueue(Reply.json({"error": {"message": "bad voice", "type": "invalid_request_error"}}, status=400))
    with pytest.raises(openai.BadRequestError):
        openai_client.audio.speech.create(model="gpt-4o-mini-tts", voice="nobody", input="Hello there.")
    a = one_span(instrumented)
    assert a[s.ERROR_TYPE] == "invalid_request_error"


def test_a_cut_done_event_leaves_the_cost_unknown_not_estimated(instrumented, replay_server, openai_client):
    replay_server.enqueue(Reply.stream([sse({"type": "speech.audio.delta", "audio": "QUFB"}),
                                        'data: {"type":"speech.audio.done","usage":{"input_tok']))
    openai_client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="Hello there.",
                                      stream_format="sse")
    a = one_span(instrumented)
    assert a[s.AICOST_PRICE_KNOWN] is False and s.AICOST_USAGE_ESTIMATED not in a


def test_a_failing_body_reader_never_breaks_the_callers_read(instrumented, replay_server, openai_client, monkeypatch,
                                                             caplog):
    from aicost.integrations import openai as openai_integration

    def broken(self, chunk):
        raise RuntimeError("reader bug")

    monkeypatch.setattr(openai_integration.SpeechBodyReader, "feed", broken)
    replay_server.enqueue(_speech_events())
    with openai_client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input="Hello there.", stream_format="sse") as response:
        body = b"".join(response.iter_bytes())
    assert body.count(b"speech.audio.delta") == 2 and b"speech.audio.done" in body
    a = one_span(instrumented)  # still recorded, with what could be known: nothing was read
    assert a[s.AICOST_PRICE_KNOWN] is False


def test_an_azure_speech_deployment_given_a_per_character_price_is_priced(instrumented, replay_server):
    """The response names no model, and an Azure deployment's name is the user's: a price set for the deployment
    (per character, as tts-1 bills) prices it from the request; without one it is unknown, with the reason."""
    from aicost.pricing import clear_overrides, set_price

    client = openai_client(replay_server, azure_deployment="voice-prod")
    try:
        replay_server.enqueue(Reply(body=b"ID3 fake mp3", content_type="audio/mpeg"))
        client.audio.speech.create(model="voice-prod", voice="alloy", input="x" * 40)
        set_price("voice-prod", provider="azure.ai.openai", input_characters="15")
        replay_server.enqueue(Reply(body=b"ID3 fake mp3", content_type="audio/mpeg"))
        client.audio.speech.create(model="voice-prod", voice="alloy", input="x" * 40)
    finally:
        clear_overrides()
        client.close()
    unknown, priced = (dict(x.attributes) for x in instrumented.aicost_spans())
    assert unknown[s.AICOST_PRICE_KNOWN] is False and "per input character" in unknown[s.AICOST_PRICE_UNKNOWN_REASON]
    assert unknown[s.AICOST_USAGE_INPUT_CHARACTERS] == 40
    assert priced[s.GEN_AI_PROVIDER_NAME] == "azure.ai.openai"
    assert Decimal(priced[s.AICOST_COST_TOTAL]) == 40 * Decimal(15) / M
