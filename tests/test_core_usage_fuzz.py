"""Property-based differential tests of every usage reader in ``aicost/integrations`` (issue 14.4).

Each reader gets vendor-shaped usage whose counts are drawn from valid counts and every kind of garbage the
audit found (missing, null, wrong type, negative, fractional, above 2**53, a subset larger than its total, usage
that is not an object). An oracle written here from the vendors' documented shapes (not from aicost's code)
says whether the input is valid. The properties:

* a reader never raises;
* it claims exactness (a ``Usage`` whose ``invalid`` is None) exactly when the oracle says the input is valid,
  and then its counts are the vendor's;
* through the real SDKs over HTTP on 127.0.0.1, the application gets the same result with aicost on and off,
  and the call's span never carries an exact cost for usage the oracle rejects.

Seeded (``derandomize``) and bounded: a fixed number of examples, no deadline (the box is shared).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field as dc_field
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aicost.integrations import anthropic as anth
from aicost.integrations import openai as oai
from aicost.usage import MAX_COUNT, Usage

FAST = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HTTP = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

# ------------------------------------------------------------------------------------------ what the vendor sends
VALID_COUNTS = st.one_of(st.integers(0, 50), st.integers(0, 10**7), st.just(MAX_COUNT),
                         st.integers(0, 10**6).map(float))  # JSON has one number type: 12.0 is the count 12
GARBAGE = st.one_of(
    st.none(), st.integers(max_value=-1), st.integers(min_value=MAX_COUNT + 1, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not (f.is_integer() and 0 <= f <= MAX_COUNT)
                                                          if f == f and abs(f) != float("inf") else True),
    st.just(1e308), st.text(max_size=4), st.booleans(), st.lists(st.integers(0, 9), max_size=2),
    st.dictionaries(st.sampled_from(["n", "value"]), st.integers(0, 9), max_size=1),
)
COUNT = st.one_of(VALID_COUNTS, VALID_COUNTS, GARBAGE)  # valid twice as often as garbage
NOT_AN_OBJECT = st.one_of(st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=3),
                          st.lists(st.integers(0, 3), max_size=2), st.booleans())


def is_count(value: Any) -> bool:
    """The oracle's count: a JSON integer (or integral number) from 0 to 2**53."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value <= MAX_COUNT
    return isinstance(value, float) and value == value and value.is_integer() and 0 <= value <= MAX_COUNT


@dataclass
class Shape:
    """A vendor usage object: count fields (required or not), nested objects, and the subset rules."""

    counts: dict[str, bool]  # name -> required
    objects: dict[str, "Shape"] = dc_field(default_factory=dict)
    rules: tuple[Callable[[Callable[[str], int]], bool], ...] = ()  # over dotted paths, absent or null = 0

    def strategy(self, depth: int = 0) -> st.SearchStrategy:
        fields: dict[str, st.SearchStrategy] = {name: COUNT for name in self.counts}
        for name, shape in self.objects.items():
            fields[name] = st.one_of(shape.strategy(depth + 1), shape.strategy(depth + 1), st.none(), NOT_AN_OBJECT)
        body = st.fixed_dictionaries({}, optional=fields)
        return body if depth else st.one_of(body, body, body, NOT_AN_OBJECT)

    def valid(self, value: Any) -> bool:
        if not isinstance(value, dict):
            return False
        for name, required in self.counts.items():
            v = value.get(name)
            if (v is None and required) or (v is not None and not is_count(v)):
                return False
        for name, shape in self.objects.items():
            v = value.get(name)
            if v is not None and not shape.valid(v):
                return False

        def get(path: str) -> int:
            node: Any = value
            for key in path.split("."):
                node = node.get(key) if isinstance(node, dict) else None
            return int(node) if node is not None else 0

        return all(rule(get) for rule in self.rules)


def _le(part: str, whole: str) -> Callable[[Callable[[str], int]], bool]:
    return lambda get: get(part) <= get(whole)


def _fits(*parts: str) -> Callable[[Callable[[str], int]], bool]:
    """A total the vendor splits into counts (Bedrock's input + cache reads + writes) is a count too: <= 2**53."""
    return lambda get: sum(get(p) for p in parts) <= MAX_COUNT


OPENAI_CHAT = Shape(
    {"prompt_tokens": True, "completion_tokens": True},
    {"prompt_tokens_details": Shape({"cached_tokens": False, "audio_tokens": False}),
     "completion_tokens_details": Shape({"reasoning_tokens": False, "audio_tokens": False})},
    (_le("prompt_tokens_details.cached_tokens", "prompt_tokens"),
     _le("prompt_tokens_details.audio_tokens", "prompt_tokens"),
     _le("completion_tokens_details.reasoning_tokens", "completion_tokens"),
     _le("completion_tokens_details.audio_tokens", "completion_tokens")),
)
OPENAI_RESPONSES = Shape(
    {"input_tokens": True, "output_tokens": True},
    {"input_tokens_details": Shape({"cached_tokens": False}),
     "output_tokens_details": Shape({"reasoning_tokens": False})},
    (_le("input_tokens_details.cached_tokens", "input_tokens"),
     _le("output_tokens_details.reasoning_tokens", "output_tokens")),
)
OPENAI_EMBEDDINGS = Shape({"prompt_tokens": True})
OPENAI_IMAGES = Shape(
    {"input_tokens": True, "output_tokens": True},
    {"input_tokens_details": Shape({"image_tokens": False, "text_tokens": False}),
     "output_tokens_details": Shape({"image_tokens": False, "text_tokens": False})},
    (_le("input_tokens_details.image_tokens", "input_tokens"),
     _le("output_tokens_details.image_tokens", "output_tokens")),
)
OPENAI_TRANSCRIPTION = Shape(
    {"input_tokens": True, "output_tokens": True},
    {"input_token_details": Shape({"audio_tokens": False, "text_tokens": False})},
    (_le("input_token_details.audio_tokens", "input_tokens"),),
)
OPENAI_REALTIME = Shape(
    {"input_tokens": True, "output_tokens": True},
    {"input_token_details": Shape(
        {"cached_tokens": False, "audio_tokens": False, "image_tokens": False, "text_tokens": False},
        {"cached_tokens_details": Shape({"audio_tokens": False, "image_tokens": False, "text_tokens": False})}),
     "output_token_details": Shape({"audio_tokens": False, "text_tokens": False})},
    (_le("input_token_details.cached_tokens", "input_tokens"),
     lambda get: (get("input_token_details.cached_tokens_details.audio_tokens")
                  + get("input_token_details.cached_tokens_details.image_tokens")
                  <= get("input_token_details.cached_tokens")),
     _le("input_token_details.cached_tokens_details.audio_tokens", "input_token_details.audio_tokens"),
     _le("input_token_details.cached_tokens_details.image_tokens", "input_token_details.image_tokens"),
     lambda get: (get("input_token_details.audio_tokens") - get("input_token_details.cached_tokens_details.audio_tokens")
                  + get("input_token_details.image_tokens") - get("input_token_details.cached_tokens_details.image_tokens")
                  <= get("input_tokens") - get("input_token_details.cached_tokens")),
     _le("output_token_details.audio_tokens", "output_tokens")),
)
ANTHROPIC = Shape(
    {"input_tokens": True, "output_tokens": True, "cache_read_input_tokens": False,
     "cache_creation_input_tokens": False},
    {"cache_creation": Shape({"ephemeral_1h_input_tokens": False, "ephemeral_5m_input_tokens": False}),
     "server_tool_use": Shape({"web_search_requests": False})},
    (_le("cache_creation.ephemeral_1h_input_tokens", "cache_creation_input_tokens"),
     _fits("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")),
)


def exact(usage: Usage | None) -> bool:
    """Whether the reader claims the usage is exact. The core prices by that claim without checking it again
    (``pricing.price_checked``), so a claim must hold: Usage's own rules (``Usage.problem()``) find nothing wrong."""
    if usage is None or usage.invalid is not None:
        return False
    assert usage.problem() is None, usage
    return True


def _n(value: Any) -> int:
    return int(value) if value is not None else 0


# ------------------------------------------------------------------------------------------ readers, directly
@FAST
@given(OPENAI_CHAT.strategy())
def test_openai_chat_usage(u):
    usage = oai.read_usage(u)
    assert exact(usage) == OPENAI_CHAT.valid(u), (u, usage)
    if exact(usage):
        assert (usage.input_tokens, usage.output_tokens) == (_n(u["prompt_tokens"]), _n(u["completion_tokens"]))
        assert usage.cache_read_tokens == _n((u.get("prompt_tokens_details") or {}).get("cached_tokens"))
        assert usage.reasoning_tokens == _n((u.get("completion_tokens_details") or {}).get("reasoning_tokens"))


@FAST
@given(OPENAI_RESPONSES.strategy())
def test_openai_responses_usage(u):
    assert exact(oai.read_usage(u)) == OPENAI_RESPONSES.valid(u), u


@FAST
@given(OPENAI_EMBEDDINGS.strategy())
def test_openai_embeddings_usage(u):
    assert exact(oai.read_usage(u, output_required=False)) == OPENAI_EMBEDDINGS.valid(u), u


@FAST
@given(OPENAI_IMAGES.strategy())
def test_openai_image_usage(u):
    usage = oai.image_usage(u)
    if exact(usage):  # None is "no usage" (both counts 0): never exact, never a price
        assert OPENAI_IMAGES.valid(u), (u, usage)
    elif OPENAI_IMAGES.valid(u):
        assert usage is None and _n(u["input_tokens"]) == _n(u["output_tokens"]) == 0
    meta = oai.read_images(_Obj(usage=u))
    assert meta.usage is None or exact(meta.usage) or meta.unpriced  # invalid: the cost is unknown, with why


OPENAI_SVG = Shape({"input_tokens": True, "output_tokens": True, "reasoning_tokens": False},
                   rules=(_le("reasoning_tokens", "output_tokens"),))


@FAST
@given(OPENAI_SVG.strategy(), st.one_of(st.text(max_size=3), st.integers(), st.none()))
def test_openai_svg_usage(u, model):
    if isinstance(u, dict):
        u = {**u, "model": model}
    meta = oai.read_images(_Obj(usage=None, svg_usage=u))
    ((_, sub_model, sub),) = meta.sub_inferences
    assert exact(sub) == OPENAI_SVG.valid(u), (u, sub)
    assert sub_model is None or isinstance(sub_model, str)


@FAST
@given(OPENAI_TRANSCRIPTION.strategy())
def test_openai_transcription_usage(u):
    meta = oai.read_transcription(_Obj(text="hi", usage=u))
    if exact(meta.usage):
        assert OPENAI_TRANSCRIPTION.valid(u), (u, meta.usage)
    else:
        assert meta.unpriced  # never estimated: unknown, with the reason
    stream = oai.TranscriptEventAccumulator(False)
    stream.observe(_Obj(type="transcript.text.done", text="hi", usage=u))
    result = stream.result()
    assert not exact(result.usage) or OPENAI_TRANSCRIPTION.valid(u)


@FAST
@given(OPENAI_REALTIME.strategy())
def test_openai_realtime_usage(u):
    usage = oai.realtime_usage(u)
    if exact(usage):
        assert OPENAI_REALTIME.valid(u), (u, usage)
        usage.validate()
    elif isinstance(u, dict) and u.get("input_tokens") is not None:
        assert not OPENAI_REALTIME.valid(u), (u, usage)
    connection = _Obj()
    step = oai.read_realtime_event(connection, _Obj(type="response.done",
                                                    response=_Obj(id="resp_1", status="completed", usage=u)))
    assert step is not None and (exact(step.meta.usage) or step.meta.unpriced)


@FAST
@given(OPENAI_TRANSCRIPTION.strategy())
def test_openai_speech_usage(u):
    event = {"type": "speech.audio.done", "usage": u}
    reader = oai.SpeechBodyReader({"stream_format": "sse", "input": "Hello", "model": "gpt-4o-mini-tts"})
    reader.feed(b"data: " + json.dumps(event).encode() + b"\n\n")
    meta = reader.result()
    if exact(meta.usage) and meta.usage.counts_tokens:
        assert isinstance(u, dict) and is_count(u.get("input_tokens")) and is_count(u.get("output_tokens")), u


@FAST
@given(OPENAI_CHAT.strategy(), st.lists(st.sampled_from(["text", "empty", "finish", "garbage"]), max_size=5),
       st.booleans())
def test_openai_chat_stream_accumulator(u, shapes, hide):
    acc = oai.ChunkAccumulator(hide, True)
    for shape in shapes:
        choices = {"text": [_Obj(index=0, delta=_Obj(content="hi", tool_calls=None), finish_reason=None)],
                   "empty": [], "finish": [_Obj(index=0, delta=_Obj(content=None, tool_calls=None),
                                                finish_reason="stop")],
                   "garbage": [5]}[shape]
        acc.observe(_Obj(model="gpt-4o-mini", id="c", choices=choices, usage=None))
    acc.observe(_Obj(model="gpt-4o-mini", id="c", choices=[], usage=u))
    meta = acc.result()
    assert exact(meta.usage) == (u is not None and OPENAI_CHAT.valid(u)), (u, meta.usage)


@FAST
@given(OPENAI_RESPONSES.strategy(), st.one_of(st.text(max_size=3), st.integers(), st.none()))
def test_openai_responses_stream_and_socket(u, model):
    response = _Obj(object="response", id="resp_1", model=model, status="completed", usage=u, output=[])
    acc = oai.ResponseEventAccumulator()
    acc.observe(_Obj(type="response.created", response=_Obj(id="resp_1", model=model)))
    acc.observe(_Obj(type="response.completed", response=response))
    meta = acc.result()
    assert exact(meta.usage) == (u is not None and OPENAI_RESPONSES.valid(u)), (u, meta.usage)
    assert meta.model is None or isinstance(meta.model, str)
    step = oai.read_responses_socket_event(_Obj(type="response.completed", response=response))
    assert exact(step.meta.usage) == exact(meta.usage)


HOSTED_IMAGE = Shape(
    {"input_tokens": True, "output_tokens": True, "cached_tokens": False},
    {"input_tokens_details": Shape({"image_tokens": False}),
     "output_tokens_details": Shape({"image_tokens": False}),
     "cached_tokens_details": Shape({"cached_image_tokens": False})},
    (*OPENAI_IMAGES.rules,
     lambda get: get("cached_tokens") == 0 or (
         get("cached_tokens_details.cached_image_tokens")
         <= min(get("input_tokens_details.image_tokens"), get("cached_tokens"))
         and get("cached_tokens") + get("input_tokens_details.image_tokens")
         - get("cached_tokens_details.cached_image_tokens") <= get("input_tokens"))),
)


@FAST
@given(HOSTED_IMAGE.strategy(), COUNT)
def test_openai_responses_hosted_tools(image_gen, searches):
    """The Responses API's ``tool_usage``: hosted image generation (a sub-inference) and web searches."""
    response = _Obj(object="response", id="resp_1", model="gpt-4.1", status="completed", output=[],
                    usage={"input_tokens": 5, "output_tokens": 2},
                    tool_usage={"image_gen": image_gen, "web_search": {"num_requests": searches}})
    meta = oai.read_response(response)
    assert exact(meta.usage) == (searches is None or is_count(searches)), (searches, meta.usage)
    subs = [sub for kind, _, sub in meta.sub_inferences if kind == "image_generation"]
    if subs and exact(subs[0]):
        assert HOSTED_IMAGE.valid(image_gen), (image_gen, subs[0])
    elif HOSTED_IMAGE.valid(image_gen) and exact(meta.usage):
        assert not subs and _n(image_gen["input_tokens"]) == _n(image_gen["output_tokens"]) == 0


@FAST
@given(ANTHROPIC.strategy(), st.one_of(st.text(max_size=3), st.integers(), st.none()))
def test_anthropic_message_usage(u, model):
    meta = anth.read_message(_Obj(id="msg_1", model=model, content=[], stop_reason="end_turn", usage=u))
    assert exact(meta.usage) == ANTHROPIC.valid(u), (u, meta.usage)
    if exact(meta.usage):
        cached = _n(u.get("cache_read_input_tokens")) + _n(u.get("cache_creation_input_tokens"))
        assert meta.usage.input_tokens == _n(u["input_tokens"]) + cached
        assert meta.usage.output_tokens == _n(u["output_tokens"])
    assert meta.model is None or isinstance(meta.model, str)


DELTA = Shape({"output_tokens": True, "input_tokens": False, "cache_read_input_tokens": False,
               "cache_creation_input_tokens": False})


@FAST
@given(ANTHROPIC.strategy(), st.one_of(DELTA.strategy(), st.none()), st.booleans())
@example(start={"input_tokens": MAX_COUNT, "output_tokens": 1, "cache_read_input_tokens": MAX_COUNT}, delta=None,
         stop=False)  # each count valid, their sum is not
@example(start={"input_tokens": 5, "output_tokens": 1}, delta={}, stop=True)  # message_delta without its output count
def test_anthropic_stream_accumulator(start, delta, stop):
    acc = anth.EventAccumulator(True)
    acc.observe(_Obj(type="message_start", message=_Obj(id="msg_1", model="claude-3-5-haiku", usage=start)))
    acc.observe(_Obj(type="content_block_delta", delta=_Obj(text="hi")))
    if delta is not None:
        acc.observe(_Obj(type="message_delta", delta=_Obj(stop_reason="end_turn"), usage=delta))
    if stop:
        acc.observe(_Obj(type="message_stop"))
    meta = acc.result()
    valid = ANTHROPIC.valid(start) and (delta is None or (isinstance(delta, dict) and all(
        v is None or is_count(v) for v in delta.values()) and delta.get("output_tokens") is not None))
    if exact(meta.usage):
        assert valid, (start, delta, meta.usage)
    elif valid:  # a valid delta can still break a rule with what message_start said (1h write > write, a sum)
        assert meta.usage is not None and meta.usage.invalid.endswith(("exceeds its total", "above 2**53")), \
            meta.usage


def test_anthropic_read_usage_requires_the_final_output_count_only_when_asked():
    """A message_delta's output count is the final one (message_start's a placeholder): ``require_output`` makes
    its absence invalid in the same pass; an update without the flag keeps what it had."""
    start = anth.read_usage(_Obj(input_tokens=5, output_tokens=1))
    assert start.invalid is None
    assert anth.read_usage(_Obj(input_tokens=None), start).invalid is None
    delta = anth.read_usage(_Obj(input_tokens=None), start, require_output=True)
    assert (delta.invalid, delta.output_tokens) == ("message_delta usage has no output_tokens", 1)
    fresh = anth.read_usage(_Obj(input_tokens=5, output_tokens=1))
    assert anth.read_usage(_Obj(output_tokens=7), fresh, require_output=True).output_tokens == 7 and not fresh.invalid


def test_a_sum_of_checked_usages_keeps_their_verdict():
    """Readers add up a call's parts after checking each (Anthropic's compaction and advisor iterations, OpenAI's
    partial images), and the core prices the sum by its ``invalid``: each part can be valid and their sum not."""
    big = Usage(input_tokens=MAX_COUNT, output_tokens=1).checked()
    one = Usage(input_tokens=1, output_tokens=1, cache_read_tokens=1).checked()
    assert big.invalid is None and one.invalid is None
    assert (big + one).invalid == (one + big).invalid == "input_tokens or output_tokens is above 2**53"
    assert (one + one).invalid is None and (one + one).problem() is None
    assert (one + Usage(invalid="usage is not an object")).invalid == "usage is not an object"


@FAST
@given(st.lists(st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["compaction", "advisor_message",
                                                                           "fallback_message", "message"])},
                                                 optional={"input_tokens": COUNT, "output_tokens": COUNT,
                                                           "model": st.one_of(st.text(max_size=3), st.integers())}),
                           NOT_AN_OBJECT), max_size=4).map(lambda entries: {"input_tokens": 3, "output_tokens": 2,
                                                                             "iterations": entries}))
@example({"input_tokens": 3, "output_tokens": 2, "iterations": [  # each entry valid, their sum is not
    {"type": "advisor_message", "input_tokens": MAX_COUNT, "output_tokens": 1, "model": "a"},
    {"type": "advisor_message", "input_tokens": 1, "output_tokens": 1, "model": "a"},
    {"type": "compaction", "input_tokens": MAX_COUNT, "output_tokens": 0}]})
def test_anthropic_iterations(u):
    meta = anth.read_message(_Obj(id="msg_1", model="claude-sonnet-4-5", content=[], stop_reason="end_turn", usage=u))
    for entry in u["iterations"]:
        if isinstance(entry, dict) and entry["type"] == "compaction" and not ANTHROPIC.valid(entry):
            assert not exact(meta.usage)
    exact(meta.usage)  # a claim of exactness holds (the sum with compaction's tokens too)
    for _, model, sub in meta.sub_inferences:
        exact(sub)  # the advisor's parts, added up
        assert model is None or isinstance(model, str)
    assert meta.model is None or isinstance(meta.model, str)


class _Obj:
    """An SDK-model stand-in: attributes in ``__dict__``, as pydantic keeps them (what ``vendor.field`` reads)."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


# ------------------------------------------------------------------------------------------ through the real SDKs
MODEL_VALUES = st.one_of(st.just("gpt-4o-mini"), st.integers(), st.none(), st.lists(st.integers(), max_size=1))
_MISSING = object()


def _result(run: Callable[[], Any]) -> Any:
    """What the application ends up with: the answer (as JSON) or the exception (type and message). The HTTP
    ``Date`` header a response carries (google-genai hands its headers to the application) is left out: the two
    calls compared may fall in different seconds."""
    try:
        value = run()
        if isinstance(value, list):
            return [_without_date(item.model_dump(mode="json", warnings=False)) for item in value]
        return _without_date(value.model_dump(mode="json", warnings=False))
    except Exception as exc:  # the same exception, with aicost and without
        return (type(exc).__name__, str(exc))


def _without_date(dumped: Any) -> Any:
    headers = (dumped.get("sdk_http_response") or {}).get("headers") if isinstance(dumped, dict) else None
    if isinstance(headers, dict):
        headers.pop("date", None)
    return dumped


def _on_and_off(run: Callable[[], Any], telemetry: Any) -> tuple[Any, Any, list]:
    import aicost

    aicost.uninstrument()
    off = _result(run)
    telemetry.clear()
    aicost.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    on = _result(run)
    return off, on, telemetry.aicost_spans()


def _never_exact_for_invalid(spans: list, valid: bool) -> None:
    assert len(spans) == 1, spans
    attributes = dict(spans[0].attributes or {})
    if not valid:
        assert attributes.get("aicost.usage.estimated") is True or attributes.get("aicost.price.known") is False, \
            attributes
        assert attributes.get("aicost.usage.invalid_reason"), attributes


@HTTP
@given(OPENAI_CHAT.strategy(), MODEL_VALUES, st.booleans())
def test_openai_chat_over_http_same_answer_never_exact_from_garbage(instrumented, replay_server, openai_client,
                                                                   usage, model, stream):
    from vendor_server import Reply, sse

    base = {"id": "chatcmpl-1", "created": 1, "model": model}
    if stream:
        chunks = [sse({**base, "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": {"content": "Paris"}, "finish_reason": "stop"}]}),
                  sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}), "data: [DONE]\n\n"]
        reply = Reply.stream(chunks, reuse=True)
    else:
        reply = Reply.json({**base, "object": "chat.completion", "usage": usage, "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Paris"}}]})
        reply.reuse = True
    replay_server.reset()
    replay_server.enqueue(reply)

    def run():
        answer = openai_client.chat.completions.create(model="gpt-4o-mini", stream=stream,
                                                       messages=[{"role": "user", "content": "Capital of France?"}])
        return list(answer) if stream else answer

    off, on, spans = _on_and_off(run, instrumented)
    assert on == off
    _never_exact_for_invalid(spans, usage is not None and OPENAI_CHAT.valid(usage))


@HTTP
@given(ANTHROPIC.strategy(), MODEL_VALUES, st.booleans())
def test_anthropic_messages_over_http_same_answer_never_exact_from_garbage(instrumented, replay_server,
                                                                          anthropic_client, usage, model, stream):
    from vendor_server import Reply, sse

    if stream:
        chunks = [
            sse({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                      "model": model, "content": [], "stop_reason": None,
                                                      "usage": usage}}, "message_start"),
            sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start"),
            sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Paris"}},
                "content_block_delta"),
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                 "usage": {"output_tokens": usage.get("output_tokens") if isinstance(usage, dict) else 1}},
                "message_delta"),
            sse({"type": "message_stop"}, "message_stop"),
        ]
        reply = Reply.stream(chunks, reuse=True)
    else:
        reply = Reply.json({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                            "content": [{"type": "text", "text": "Paris"}], "stop_reason": "end_turn",
                            "usage": usage})
        reply.reuse = True
    replay_server.reset()
    replay_server.enqueue(reply)

    def run():
        answer = anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=20, stream=stream,
                                                  messages=[{"role": "user", "content": "Capital of France?"}])
        return list(answer) if stream else answer

    off, on, spans = _on_and_off(run, instrumented)
    assert on == off
    _never_exact_for_invalid(spans, ANTHROPIC.valid(usage))


# ------------------------------------------------------------------------------------------ Gemini (google-genai)
from aicost.integrations import bedrock as brk  # noqa: E402
from aicost.integrations import gemini as gem  # noqa: E402

MODALITIES = st.sampled_from(["TEXT", "AUDIO", "IMAGE", "VIDEO", "audio"])
DETAILS = st.one_of(
    st.none(), NOT_AN_OBJECT,
    st.lists(st.one_of(st.fixed_dictionaries({"modality": MODALITIES}, optional={"token_count": COUNT}),
                       st.fixed_dictionaries({"modality": MODALITIES, "token_count": st.integers(0, 30)}),
                       st.none(), st.integers(0, 3)), max_size=3),
)
GEMINI_COUNTS = ("prompt_token_count", "candidates_token_count", "thoughts_token_count", "tool_use_prompt_token_count",
                 "cached_content_token_count")
GEMINI_DETAILS = ("prompt_tokens_details", "cache_tokens_details", "candidates_tokens_details",
                  "tool_use_prompt_tokens_details")
GEMINI_USAGE = st.one_of(
    st.fixed_dictionaries({}, optional={**{name: COUNT for name in GEMINI_COUNTS},
                                        **{name: DETAILS for name in GEMINI_DETAILS}}),
    st.fixed_dictionaries({"prompt_token_count": st.integers(0, 100), "candidates_token_count": st.integers(0, 100)},
                          optional={"cached_content_token_count": st.integers(0, 100),
                                    **{name: DETAILS for name in GEMINI_DETAILS}}),
    NOT_AN_OBJECT,
)


def gemini_valid(u: Any) -> bool | None:
    """The oracle, from Google's documented ``usageMetadata``: None when it carries no counts (a blocked prompt).
    ``promptTokenCount`` is required once any count is there (the others are left out when zero, as proto3 JSON
    does); each per-modality list is a list of objects whose counts fit the count it breaks down; cached tokens are
    part of the prompt, cached tokens of a modality part of the prompt's (and tool results') tokens of that
    modality; and no token is in two buckets: cached + uncached audio + uncached image <= prompt + tool results."""
    if not isinstance(u, dict):
        return False
    if all(u.get(k) is None for k in GEMINI_COUNTS[:4]):
        return None
    if u.get("prompt_token_count") is None or not all(u.get(k) is None or is_count(u[k]) for k in GEMINI_COUNTS):
        return False
    by: dict[str, dict[str, int]] = {}
    for name in GEMINI_DETAILS:
        details = u.get(name)
        if details is None:
            by[name] = {}
            continue
        if not isinstance(details, list) or not all(isinstance(d, dict) for d in details):
            return False
        if not all(d.get("token_count") is None or is_count(d["token_count"]) for d in details):
            return False
        modal: dict[str, int] = {}
        for d in details:
            modal[d["modality"].upper()] = modal.get(d["modality"].upper(), 0) + _n(d.get("token_count"))
        by[name] = modal
    prompt, cached, tool = _n(u["prompt_token_count"]), _n(u.get("cached_content_token_count")), \
        _n(u.get("tool_use_prompt_token_count"))
    total = {"prompt_tokens_details": prompt, "cache_tokens_details": cached, "tool_use_prompt_tokens_details": tool,
             "candidates_tokens_details": _n(u.get("candidates_token_count"))}
    if cached > prompt or any(sum(by[name].values()) > total[name] for name in GEMINI_DETAILS):
        return False
    cache, fresh = by["cache_tokens_details"], {}
    for modality in ("AUDIO", "IMAGE"):
        seen = by["prompt_tokens_details"].get(modality, 0) + by["tool_use_prompt_tokens_details"].get(modality, 0)
        if cache.get(modality, 0) > seen:
            return False
        fresh[modality] = seen - cache.get(modality, 0)
    if prompt + tool > MAX_COUNT or total["candidates_tokens_details"] + _n(u.get("thoughts_token_count")) > MAX_COUNT:
        return False  # a total is a count too
    return cached + fresh["AUDIO"] + fresh["IMAGE"] <= prompt + tool


@FAST
@given(GEMINI_USAGE)
def test_gemini_usage_metadata(u):
    usage = gem.read_usage(u)
    valid = gemini_valid(u)
    if valid is None:
        assert usage is None, (u, usage)
        return
    assert exact(usage) == valid, (u, usage)
    if exact(usage):
        usage.validate()
        assert usage.input_tokens == _n(u["prompt_token_count"]) + _n(u.get("tool_use_prompt_token_count"))
        assert usage.output_tokens == _n(u.get("candidates_token_count")) + _n(u.get("thoughts_token_count"))
        assert usage.cache_read_tokens == _n(u.get("cached_content_token_count"))


@FAST
@given(GEMINI_USAGE, st.one_of(st.text(max_size=3), st.integers(), st.none()), st.booleans())
def test_gemini_response_and_stream(u, model, finished):
    valid = gemini_valid(u)
    candidates = [_Obj(finish_reason="STOP" if finished else None, content=_Obj(parts=[_Obj(text="hi",
                                                                                            function_call=None)]))]
    meta = gem.read_response(_Obj(usage_metadata=u, candidates=candidates, model_version=model, response_id=model))
    assert exact(meta.usage) == bool(valid), (u, meta.usage)
    assert meta.model is None or isinstance(meta.model, str)
    if meta.usage is not None and meta.usage.invalid:
        assert meta.output_text == "hi"  # what the estimate is made from
    acc = gem.ChunkAccumulator(False)
    acc.observe(_Obj(usage_metadata={"prompt_token_count": 1}, candidates=None, model_version=model, response_id=None))
    acc.observe(_Obj(usage_metadata=u, candidates=candidates, model_version=model, response_id=None))
    assert exact(acc.result().usage) == bool(valid)


INTERACTION = Shape(
    {"total_input_tokens": True, "total_output_tokens": True, "total_thought_tokens": False,
     "total_tool_use_tokens": False, "total_cached_tokens": False},
    rules=(_le("total_cached_tokens", "total_input_tokens"), _fits("total_input_tokens", "total_tool_use_tokens"),
           _fits("total_output_tokens", "total_thought_tokens")),
)


@FAST
@given(INTERACTION.strategy())
def test_gemini_interaction_usage(u):
    meta = gem.read_interaction(_Obj(usage=u, status="completed", model="gemini-2.5-flash", id="i", service_tier=None))
    if isinstance(u, dict) and u.get("total_input_tokens") is None and u.get("total_output_tokens") is None:
        assert meta.usage is None
        return
    assert exact(meta.usage) == INTERACTION.valid(u), (u, meta.usage)


@FAST
@given(COUNT, st.lists(COUNT, min_size=1, max_size=3))
@example(None, [MAX_COUNT, 1])  # each count valid, their sum is not
def test_gemini_embeddings_and_caches_never_exact_from_garbage(tokens, per_embedding):
    meta = gem.read_embeddings(_Obj(usage_metadata={"prompt_token_count": tokens}, embeddings=None))
    assert exact(meta.usage) == (tokens is None or is_count(tokens)) or tokens is None, (tokens, meta)
    if not exact(meta.usage):
        assert meta.unpriced  # unknown, with why: embeddings are never estimated
    meta = gem.read_embeddings(_Obj(usage_metadata=None,
                                    embeddings=[{"statistics": {"token_count": c}} for c in per_embedding]))
    counted = [c for c in per_embedding if c is not None]
    assert exact(meta.usage) == (bool(counted) and all(is_count(c) for c in counted)
                                 and sum(map(int, counted)) <= MAX_COUNT), (per_embedding, meta)
    meta = gem.read_cache(_Obj(usage_metadata={"total_token_count": tokens}, model="gemini-2.5-flash"))
    assert exact(meta.usage) == (tokens is not None and is_count(tokens))
    assert exact(meta.usage) or meta.unpriced


# ------------------------------------------------------------------------------------------ Bedrock (boto3)
CACHE_DETAILS = st.one_of(st.none(), NOT_AN_OBJECT, st.lists(st.one_of(
    st.fixed_dictionaries({"ttl": st.sampled_from(["5m", "1h"])}, optional={"inputTokens": COUNT}),
    st.fixed_dictionaries({"ttl": st.sampled_from(["5m", "1h"]), "inputTokens": st.integers(0, 40)}),
    st.none(), st.integers(0, 3)), max_size=3))
CONVERSE_USAGE = st.one_of(
    st.fixed_dictionaries({}, optional={"inputTokens": COUNT, "outputTokens": COUNT, "totalTokens": COUNT,
                                        "cacheReadInputTokens": COUNT, "cacheWriteInputTokens": COUNT,
                                        "cacheDetails": CACHE_DETAILS}),
    st.fixed_dictionaries({"inputTokens": st.integers(0, 99), "outputTokens": st.integers(0, 99),
                           "cacheWriteInputTokens": st.integers(0, 60)}, optional={"cacheDetails": CACHE_DETAILS}),
    NOT_AN_OBJECT,
)


def converse_valid(u: Any) -> bool:
    """The oracle, from the Converse API reference: ``inputTokens`` and ``outputTokens`` are required; the cache
    counts optional; ``cacheDetails`` a list of ``{ttl, inputTokens}`` whose 1h writes are part of the writes."""
    if not isinstance(u, dict) or u.get("inputTokens") is None or u.get("outputTokens") is None:
        return False
    if not all(u.get(k) is None or is_count(u[k]) for k in ("inputTokens", "outputTokens", "cacheReadInputTokens",
                                                          "cacheWriteInputTokens")):
        return False
    if _n(u["inputTokens"]) + _n(u.get("cacheReadInputTokens")) + _n(u.get("cacheWriteInputTokens")) > MAX_COUNT:
        return False  # the total input is a count too
    details = u.get("cacheDetails")
    if details is None:
        return True
    if not isinstance(details, list) or not all(isinstance(d, dict) for d in details):
        return False
    if not all(d.get("inputTokens") is None or is_count(d["inputTokens"]) for d in details):
        return False
    return sum(_n(d.get("inputTokens")) for d in details if d["ttl"] == "1h") <= _n(u.get("cacheWriteInputTokens"))


@FAST
@given(CONVERSE_USAGE)
def test_bedrock_converse_usage(u):
    meta = brk.read_converse({"usage": u, "stopReason": "end_turn",
                              "output": {"message": {"content": [{"text": "hi"}]}}}, False)
    assert exact(meta.usage) == converse_valid(u), (u, meta.usage)
    if exact(meta.usage):
        meta.usage.validate()
        cached = _n(u.get("cacheReadInputTokens")) + _n(u.get("cacheWriteInputTokens"))
        assert meta.usage.input_tokens == _n(u["inputTokens"]) + cached
    else:
        assert meta.output_text == "hi"  # the estimate's output
    acc = brk.EventAccumulator(False)  # ConverseStream: the same usage in the metadata event
    acc.observe({"messageStop": {"stopReason": "end_turn"}})
    acc.observe({"metadata": {"usage": u}})
    assert exact(acc.result().usage) == converse_valid(u)


METRICS = Shape({"inputTokenCount": True, "outputTokenCount": True, "cacheReadInputTokenCount": False,
                 "cacheWriteInputTokenCount": False},
                rules=(_fits("inputTokenCount", "cacheReadInputTokenCount", "cacheWriteInputTokenCount"),))


@FAST
@given(METRICS.strategy(), st.booleans())
def test_bedrock_invocation_metrics(m, as_json):
    acc = brk.EventAccumulator(False)
    data = json.dumps({"type": "message_stop", "amazon-bedrock-invocationMetrics": m}).encode() if as_json \
        else b'["amazon-bedrock-invocationMetrics"]'
    acc.observe({"chunk": {"bytes": data}})
    meta = acc.result()
    assert exact(meta.usage) == (as_json and METRICS.valid(m)), (m, meta.usage)
    assert acc.complete


HEADER_VALUE = st.one_of(VALID_COUNTS.map(lambda v: str(int(v))), st.integers(0, 10**6).map(str),
                         st.sampled_from(["", "-3", "1.5", "12.0", "abc", " 7", str(2**60), "１２"]))
HEADERS = st.fixed_dictionaries({}, optional={f"x-amzn-bedrock-{k}-token-count": HEADER_VALUE
                                              for k in ("input", "output", "cache-read-input", "cache-write-input")})


def header_valid(h: dict) -> bool | None:
    """The oracle: no input count header, no header usage; else each one present is a decimal count."""
    if "x-amzn-bedrock-input-token-count" not in h:
        return None
    if not all(v.isascii() and v.isdigit() and int(v) <= MAX_COUNT for v in h.values()):
        return False
    return sum(int(v) for k, v in h.items() if "input" in k) <= MAX_COUNT  # the total input is a count too


@FAST
@given(HEADERS)
def test_bedrock_invoke_model_headers(h):
    meta = brk.read_invoke({"ResponseMetadata": {"RequestId": "r", "HTTPHeaders": {**h, "content-type": "x"}}})
    valid = header_valid(h)
    if valid is None:
        assert meta.usage is None and meta.unpriced
        return
    assert exact(meta.usage) == valid, (h, meta.usage)
    if not valid:
        assert meta.unpriced  # the body stays unread: unknown, with why, never estimated from nothing


# ------------------------------------------------------------------------------------------ through the real SDKs
def _gemini_client(server: Any) -> Any:
    from google import genai
    from google.genai import types

    return genai.Client(api_key="test", http_options=types.HttpOptions(
        base_url=server.url, retry_options=types.HttpRetryOptions(attempts=1)))


@HTTP
@given(GEMINI_USAGE, st.booleans())
# Garbage the SDK passes through as it is (its models take any int): always tried, whatever the draw.
@example(usage={"prompt_token_count": -5, "candidates_token_count": 3}, stream=False)
@example(usage={"prompt_token_count": 10, "cached_content_token_count": 20, "candidates_token_count": 3}, stream=True)
def test_gemini_over_http_same_answer_never_exact_from_garbage(instrumented, replay_server, usage, stream):
    pytest.importorskip("google.genai")
    from vendor_server import Reply, sse

    def camel(value: Any) -> Any:  # the wire spells the fields in camelCase
        if isinstance(value, dict):
            return {"".join(w.capitalize() if i else w for i, w in enumerate(k.split("_"))): camel(v)
                    for k, v in value.items()}
        return [camel(v) for v in value] if isinstance(value, list) else value

    body = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Paris"}]}, "finishReason": "STOP",
                            "index": 0}], "usageMetadata": camel(usage), "modelVersion": "gemini-2.5-flash"}
    reply = Reply.stream([sse(body)], reuse=True) if stream else Reply.json(body)
    reply.reuse = True
    replay_server.reset()
    replay_server.enqueue(reply)
    client = _gemini_client(replay_server)

    def run():
        if stream:
            return list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="Capital?"))
        return client.models.generate_content(model="gemini-2.5-flash", contents="Capital?")

    off, on, spans = _on_and_off(run, instrumented)
    assert on == off
    if isinstance(off, tuple):  # the SDK itself rejected the response: the same error, with aicost and without
        return
    parsed = (off[-1] if stream else off).get("usage_metadata")  # what the SDK handed the application
    valid = gemini_valid({k: v for k, v in parsed.items() if v is not None}) if isinstance(parsed, dict) else None
    if valid is None:
        assert len(spans) == 1
        return
    _never_exact_for_invalid(spans, valid)


@HTTP
@given(CONVERSE_USAGE, HEADERS, st.sampled_from(["converse", "invoke"]))
def test_bedrock_over_http_same_answer_never_exact_from_garbage(instrumented, replay_server, usage, headers,
                                                                operation):
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    from vendor_server import Reply

    headers = {k: v for k, v in headers.items() if v.isascii()}  # what an HTTP header can carry
    if operation == "converse":
        reply = Reply.json({"output": {"message": {"role": "assistant", "content": [{"text": "Paris"}]}},
                            "stopReason": "end_turn", "usage": usage, "metrics": {"latencyMs": 5}})
    else:
        reply = Reply.json({"content": [{"type": "text", "text": "Paris"}]}, headers=headers)
    reply.reuse = True
    replay_server.reset()
    replay_server.enqueue(reply)
    client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=replay_server.url,
                          aws_access_key_id="t", aws_secret_access_key="t", config=Config(retries={"max_attempts": 1}))
    messages = [{"role": "user", "content": [{"text": "Capital?"}]}]

    def run():
        try:
            if operation == "converse":
                answer = client.converse(modelId="amazon.nova-micro-v1:0", messages=messages)
            else:
                answer = client.invoke_model(modelId="amazon.nova-micro-v1:0", body=json.dumps({"messages": messages}))
                answer = {**answer, "body": answer["body"].read()}
            answer.pop("ResponseMetadata", None)
            return _Dumped(answer)
        except Exception as exc:
            return _Dumped((type(exc).__name__, str(exc)))

    off, on, spans = _on_and_off(run, instrumented)
    assert on == off
    if isinstance(off, tuple) and len(off) == 2 and isinstance(off[0], str):
        return
    # HTTP strips a header value's surrounding whitespace
    valid = (converse_valid(off.get("usage")) if operation == "converse"
             else header_valid({k: v.strip() for k, v in headers.items()}))
    if valid is None:  # no header usage: unknown, with why
        [span] = spans
        assert span.attributes["aicost.price.known"] is False
        return
    _never_exact_for_invalid(spans, valid)


class _Dumped:
    """A plain value through ``_result`` (which dumps SDK models): boto3 answers are plain dicts already."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def model_dump(self, **_: Any) -> Any:
        return self.value


# ----------------------------------------------------------------------------- the readers' fast paths
def test_is_object_answers_per_type_yet_asks_a_type_that_overrides_its_class():
    from unittest import mock

    from aicost.usage import is_object

    class Model:  # an SDK model: its answer is remembered for its type
        pass

    assert is_object(Model()) and is_object(Model())
    assert not is_object(3) and not is_object(3.0) and not is_object([1]) and not is_object("x")
    assert not is_object(True)  # a bool is an int: not an object, remembered or not
    assert not is_object(mock.Mock(spec=int)) and is_object(mock.Mock())  # a mock's __class__ says what it is

    class Proxy:  # a type whose instances each say their own class: asked each time, as isinstance does
        def __init__(self, claims: type) -> None:
            self.claims = claims

        __class__ = property(lambda self: self.claims)  # type: ignore[assignment]

    assert not is_object(Proxy(int)) and is_object(Proxy(object)) and not is_object(Proxy(list))


def test_field_reader_reads_what_field_reads():
    import anthropic.types as at

    from aicost.vendor import field, field_reader

    plain = at.Usage.construct(input_tokens=3, output_tokens=1)
    extra = at.Usage.construct(input_tokens=3, output_tokens=1, iterations=[{"type": "message"}])
    for obj in (plain, extra, {"input_tokens": 3}, None, 7):
        g = field_reader(obj)
        for name in ("input_tokens", "output_tokens", "iterations", "service_tier", "nothing"):
            assert g(name) == field(obj, name), (obj, name)
    assert field_reader(extra)("iterations") == [{"type": "message"}]  # an undeclared field the API sent
