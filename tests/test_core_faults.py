"""Faults from the outside audit (issue 14, core): what aicost must do when the vendor, the application or the
interpreter misbehaves. Real SDKs over real HTTP on 127.0.0.1 (tests/vendor_server.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vendor_server import Reply, ReplayServer, sse

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------ process exit
def _chat_chunk(choices: list, **extra: object) -> str:
    return sse({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "choices": choices, **extra})


# A stream whose last data chunk has no choices (the usage chunk): ``chunk.choices[0]`` raises IndexError inside
# a generator expression, the application catches it, and the half-read stream is left to the garbage
# collector. Its objects form a reference cycle, so with the collector off (or simply not run before exit) it is
# collected at interpreter shutdown, and its end is recorded then.
_STREAM = [
    _chat_chunk([{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}]),
    _chat_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
    _chat_chunk([], usage={"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}),
    "data: [DONE]\n\n",
]

_APP = r'''
import gc, os, sys
import openai
gc.disable()
base_url, with_aicost, scenario = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
if with_aicost:
    import aicost
    aicost.instrument()
client = openai.OpenAI(api_key="test", base_url=base_url, max_retries=0)
MSG = [{"role": "user", "content": "hi"}]

def first_words():
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream)

def abandon_a_stream():
    try:
        first_words()
    except IndexError:
        pass

if scenario == "fork":
    # The parent has made a call (its metrics worker runs); the forked child's first call is the abandoned stream,
    # whose end is recorded as the child exits.
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    pid = os.fork()
    if pid == 0:
        abandon_a_stream()
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    print("child exited", os.waitstatus_to_exitcode(status), flush=True)
else:
    abandon_a_stream()
print("app done", flush=True)
'''


def _run_app(server: ReplayServer, with_aicost: bool, scenario: str, timeout: float) -> float:
    server.reset()
    if scenario == "fork":
        server.enqueue(Reply.json({"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                                   "model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": "Hi"}}],
                                   "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}}))
    server.enqueue(Reply.stream(_STREAM))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", _APP, server.openai_base_url, "1" if with_aicost else "0",
                               scenario], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {'instrumented' if with_aicost else 'bare'} app ({scenario}) had not exited after "
                    f"{timeout:.0f} s")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert "app done" in done.stdout
    if scenario == "fork":
        assert "child exited 0" in done.stdout, done.stdout
    return elapsed


@pytest.mark.parametrize("scenario", ["abandoned-stream", "fork"])
def test_an_instrumented_app_exits_as_an_uninstrumented_one_after_an_abandoned_stream(scenario):
    """Issue 14.1: the abandoned stream is finished at interpreter shutdown (in the fork scenario: at a forked
    child's exit, its first call), and recording it must not start a thread then (``Thread.start()`` would wait
    forever for a thread that can never run). The bound is generous: not a timing test, a "does it exit" test."""
    with ReplayServer() as server:
        bare = _run_app(server, False, scenario, timeout=120)
        instrumented = _run_app(server, True, scenario, timeout=max(30.0, 4 * bare + 15))
    assert instrumented < max(30.0, 4 * bare + 15)


# ------------------------------------------------------------------------------------------ finishing a call
MSG = [{"role": "user", "content": "What is the capital of France?"}]
INT64_MAX = 2**63 - 1


class _Settling:
    """An interceptor whose ticket records how each call was settled (what a budget's hold relies on)."""

    def __init__(self) -> None:
        self.settled: list = []

    def before_call(self, info):
        settled = self.settled

        class Ticket:
            def after_call(self, result):
                settled.append(result)

        return Ticket()


@pytest.fixture
def settling():
    from aicost import hooks

    interceptor, results = _Settling(), []
    hooks.add_interceptor(interceptor)
    hooks.add_listener(results.append)
    try:
        yield interceptor, results
    finally:
        hooks.remove_interceptor(interceptor)
        hooks.remove_listener(results.append)


def _attrs(span):
    return dict(span.attributes or {})


def _chat_body(**over):
    body = {"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Paris"}}],
            "usage": {"prompt_tokens": 14, "completion_tokens": 1, "total_tokens": 15}}
    body.update(over)
    return {k: v for k, v in body.items() if v is not _MISSING}


_MISSING = object()


def _message_body(**over):
    body = {"id": "msg_x", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": [{"type": "text", "text": "Paris"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 14, "output_tokens": 1}}
    body.update(over)
    return {k: v for k, v in body.items() if v is not _MISSING}


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_a_model_that_is_not_text_without_usage_still_ends_the_span_and_settles(instrumented, replay_server,
                                                                                openai_client, anthropic_client,
                                                                                settling, vendor):
    """Issue 14.2: ``"model": 42`` and no usage: the estimate's tokenizer lookup got 42 and raised, which skipped
    the span's end, the metrics, the listeners and the budget's settlement (its hold leaked)."""
    interceptor, results = settling
    if vendor == "openai":
        replay_server.enqueue(Reply.json(_chat_body(model=42, usage=_MISSING)))
        answer = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert answer.model == 42  # the application gets what the SDK gives it
    else:
        replay_server.enqueue(Reply.json(_message_body(model=42, usage=_MISSING)))
        answer = anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=50, messages=MSG)
        assert answer.model == 42
    spans = instrumented.aicost_spans()
    assert len(spans) == 1 and spans[0].end_time is not None
    attributes = _attrs(spans[0])
    assert attributes["aicost.usage.estimated"] is True
    assert "gen_ai.response.model" not in attributes  # 42 is not a model name
    assert len(interceptor.settled) == 1 and len(results) == 1
    assert results[0].usage.estimated and results[0].response_model is None


def test_a_failure_while_accounting_a_call_still_ends_its_span_and_settles(instrumented, replay_server,
                                                                         openai_client, settling, monkeypatch):
    """Every step of finishing is isolated: here estimating the missing usage fails (a tokenizer bug)."""
    from aicost import instrumentation

    interceptor, results = settling

    def broken(*args, **kwargs):
        raise RuntimeError("a tokenizer bug")

    monkeypatch.setattr(instrumentation._Call, "_estimate", broken)
    replay_server.enqueue(Reply.json(_chat_body(usage=_MISSING)))
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    (span,) = instrumented.aicost_spans()
    assert span.end_time is not None
    assert _attrs(span)["aicost.usage.invalid_reason"]  # the cost is unknown, and the span says why
    assert _attrs(span)["aicost.price.known"] is False
    assert len(interceptor.settled) == 1 and len(results) == 1
    assert results[0].cost_usd is None  # unknown: a budget keeps the call's reservation, never a silent $0


# ------------------------------------------------------------------------------------------ absurd numbers
def _encode(instrumented) -> None:
    """What an OTLP exporter does with a collection: encoding fails on an integer outside int64."""
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    encode_metrics(instrumented.metric_reader.get_metrics_data())


def test_a_huge_but_valid_count_cannot_stop_metric_export(instrumented, replay_server, openai_client):
    """Issue 14.3: the nano-USD counter went past int64, and every later OTLP export of every metric failed to
    encode (the counter is cumulative: for good). The count here is valid (2**53 tokens): its cost is clamped."""
    replay_server.enqueue(Reply.json(_chat_body(
        model="gpt-4o", usage={"prompt_tokens": 2**53, "completion_tokens": 2**53, "total_tokens": 2**54})))
    openai_client.chat.completions.create(model="gpt-4o", messages=MSG)
    _encode(instrumented)
    nano = instrumented.metrics()["aicost.cost.nano_usd"]
    assert all(0 <= point.value <= INT64_MAX for point in nano)
    replay_server.enqueue(Reply.json(_chat_body()))
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    _encode(instrumented)  # and the next export works too


def test_span_integers_stay_inside_int64(instrumented, replay_server, openai_client):
    """An integer attribute outside int64 is dropped by the OTLP exporter: aicost writes none."""
    replay_server.enqueue(Reply.json(_chat_body(usage={"prompt_tokens": 10**17, "completion_tokens": 10**19,
                                                       "total_tokens": 10**19 + 10**17})))
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=2**70)
    (span,) = instrumented.aicost_spans()
    attributes = _attrs(span)
    ints = {k: v for k, v in attributes.items() if isinstance(v, int) and not isinstance(v, bool)}
    assert all(-INT64_MAX - 1 <= v <= INT64_MAX for v in ints.values()), ints
    assert attributes["aicost.usage.invalid_reason"]  # 10**19 is no token count: estimated
    assert attributes["aicost.usage.estimated"] is True


# ------------------------------------------------------------------------------------------ garbage usage
GARBAGE_OPENAI_USAGE = {
    "completion count missing": {"prompt_tokens": 14, "total_tokens": 14},
    "completion count null": {"prompt_tokens": 14, "completion_tokens": None, "total_tokens": 14},
    "prompt count missing": {"completion_tokens": 1, "total_tokens": 1},
    # (A numeric string or a bool the SDK itself turns into the int the application then reads: not garbage.)
    "a count as text": {"prompt_tokens": "fourteen", "completion_tokens": 1, "total_tokens": 15},
    "a count as an object": {"prompt_tokens": {"n": 14}, "completion_tokens": 1, "total_tokens": 15},
    "a fraction": {"prompt_tokens": 14.5, "completion_tokens": 1, "total_tokens": 15},
    "a count as a list": {"prompt_tokens": [14], "completion_tokens": 1, "total_tokens": 15},
    "a negative count": {"prompt_tokens": -14, "completion_tokens": 1, "total_tokens": -13},
    "a subset larger than its total": {"prompt_tokens": 14, "completion_tokens": 1, "total_tokens": 15,
                                       "prompt_tokens_details": {"cached_tokens": 100}},
    "reasoning larger than output": {"prompt_tokens": 14, "completion_tokens": 1, "total_tokens": 15,
                                     "completion_tokens_details": {"reasoning_tokens": 7}},
    "details not an object": {"prompt_tokens": 14, "completion_tokens": 1, "total_tokens": 15,
                              "prompt_tokens_details": 3},
    "usage a number": 5,
    "usage a string": "14 tokens",
    "usage a list": [14, 1],
    "1e308": {"prompt_tokens": 1e308, "completion_tokens": 1, "total_tokens": 1e308},
    "above 2**53": {"prompt_tokens": 2**53 + 1, "completion_tokens": 1, "total_tokens": 2**53 + 2},
}


def _never_exact(attributes: dict) -> None:
    estimated = attributes.get("aicost.usage.estimated") is True
    unknown = attributes.get("aicost.price.known") is False
    assert estimated or unknown, attributes
    assert attributes.get("aicost.usage.invalid_reason"), attributes


@pytest.mark.parametrize("usage", list(GARBAGE_OPENAI_USAGE.values()), ids=list(GARBAGE_OPENAI_USAGE))
def test_openai_usage_that_fails_validation_is_never_priced_as_exact(instrumented, replay_server, openai_client,
                                                                     usage):
    replay_server.enqueue(Reply.json(_chat_body(usage=usage)))
    answer = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert answer.choices[0].message.content == "Paris"
    (span,) = instrumented.aicost_spans()
    attributes = _attrs(span)
    _never_exact(attributes)
    # Estimated from what arrived: the request's messages and the answer's text, never a price of $0.
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gen_ai.usage.cost"] > 0


GARBAGE_ANTHROPIC_USAGE = {
    "output count missing": {"input_tokens": 14},
    "input count null": {"input_tokens": None, "output_tokens": 1},
    "a cache count as a string": {"input_tokens": 14, "output_tokens": 1, "cache_read_input_tokens": "three"},
    "a negative count": {"input_tokens": 14, "output_tokens": -1},
    "usage a number": 5,
    "1e308": {"input_tokens": 1e308, "output_tokens": 1},
    "1h cache write larger than the write": {"input_tokens": 14, "output_tokens": 1, "cache_creation_input_tokens": 2,
                                             "cache_creation": {"ephemeral_1h_input_tokens": 9}},
}


@pytest.mark.parametrize("usage", list(GARBAGE_ANTHROPIC_USAGE.values()), ids=list(GARBAGE_ANTHROPIC_USAGE))
def test_anthropic_usage_that_fails_validation_is_never_priced_as_exact(instrumented, replay_server,
                                                                        anthropic_client, usage):
    replay_server.enqueue(Reply.json(_message_body(usage=usage)))
    answer = anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=50, messages=MSG)
    assert answer.content[0].text == "Paris"
    (span,) = instrumented.cost_spans()
    _never_exact(_attrs(span))


def test_an_anthropic_stream_that_ends_without_message_delta_is_an_estimate(instrumented, replay_server,
                                                                           anthropic_client):
    """message_start says output_tokens=1 (a placeholder); without message_delta the stream is cut short even
    though it ended cleanly: the output is counted from the 20 deltas that arrived, and flagged."""
    def events():
        yield sse({"type": "message_start", "message": {
            "id": "msg_x", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 14, "output_tokens": 1}}}, "message_start")
        yield sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                  "content_block_start")
        for _ in range(20):
            yield sse({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": " word"}}, "content_block_delta")
        yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")

    replay_server.enqueue(Reply.stream(events))
    stream = anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=50, messages=MSG,
                                              stream=True)
    assert len(list(stream)) == 23
    (span,) = instrumented.cost_spans()
    attributes = _attrs(span)
    assert attributes["aicost.usage.estimated"] is True
    assert attributes["aicost.usage.invalid_reason"]
    assert attributes["gen_ai.usage.output_tokens"] >= 20
    assert attributes["gen_ai.usage.input_tokens"] == 14


def test_an_openai_stream_cut_by_the_vendor_after_chunks_is_estimated_not_free(instrumented, replay_server,
                                                                              openai_client):
    from vendor_server import openai_chat_stream_reply

    replay_server.enqueue(openai_chat_stream_reply(30, include_usage=False, disconnect_after=12))
    stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    got = 0
    with pytest.raises(Exception):
        for _ in stream:
            got += 1
    assert got >= 10
    (span,) = instrumented.aicost_spans()
    attributes = _attrs(span)
    assert attributes["aicost.stream.ended_by"] == "error"
    assert attributes["aicost.usage.estimated"] is True
    assert attributes["gen_ai.usage.output_tokens"] >= 10
    assert attributes["gen_ai.usage.cost"] > 0


def test_stream_usage_always_hides_an_empty_usage_answer(tracer_provider, meter_provider, span_exporter,
                                                         replay_server, openai_client):
    """Issue 14.7: aicost asked for the usage chunk; the vendor answered with ``choices: []`` and ``usage: null``.
    The caller did not ask for it and must not see it (``chunk.choices[0]`` would raise)."""
    import aicost

    chunks = [
        _chat_chunk([{"index": 0, "delta": {"role": "assistant", "content": "Pa"}, "finish_reason": None}]),
        _chat_chunk([{"index": 0, "delta": {"content": "ris"}, "finish_reason": None}]),
        _chat_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        _chat_chunk([], usage=None),
        "data: [DONE]\n\n",
    ]
    replay_server.enqueue(Reply.stream(chunks))
    aicost.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider, stream_usage="always")
    try:
        stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    finally:
        aicost.uninstrument()
    assert text == "Paris"
    assert replay_server.requests[-1].json["stream_options"] == {"include_usage": True}


# ------------------------------------------------------------------------------------------ uninstrument
class _Counting:
    def __init__(self) -> None:
        self.calls = 0

    def before_call(self, info):
        self.calls += 1
        return None


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_uninstrument_also_covers_raw_response_accessors_the_sdk_cached(tracer_provider, meter_provider,
                                                                       span_exporter, replay_server, openai_client,
                                                                       anthropic_client, vendor):
    """Issue 14.5: ``with_raw_response`` / ``with_streaming_response`` are cached properties holding the ``create``
    they saw when first touched: aicost's wrapper, if that was while instrumented."""
    import aicost
    from aicost import hooks
    from vendor_server import anthropic_message_reply, openai_chat_reply

    counting = _Counting()
    hooks.add_interceptor(counting)
    aicost.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        if vendor == "openai":
            raw, streaming = (openai_client.chat.completions.with_raw_response,
                              openai_client.chat.completions.with_streaming_response)
            kwargs = {"model": "gpt-4o-mini", "messages": MSG}
            reply = openai_chat_reply
        else:
            raw, streaming = (anthropic_client.messages.with_raw_response,
                              anthropic_client.messages.with_streaming_response)
            kwargs = {"model": "claude-3-5-haiku-20241022", "max_tokens": 20, "messages": MSG}
            reply = anthropic_message_reply
        replay_server.enqueue(reply())
        raw.create(**kwargs).parse()
        assert counting.calls == 1 and len([s for s in span_exporter.get_finished_spans()
                                            if "gen_ai.usage.cost" in (s.attributes or {})]) == 1
        aicost.uninstrument()
        span_exporter.clear()
        replay_server.enqueue(reply(), reply())
        raw.create(**kwargs).parse()
        with streaming.create(**kwargs) as response:
            response.parse()
        assert counting.calls == 1
        assert [s.name for s in span_exporter.get_finished_spans()
                if (s.attributes or {}).get("aicost.span.source") or s.instrumentation_scope.name == "aicost"] == []
    finally:
        aicost.uninstrument()
        hooks.remove_interceptor(counting)


# ------------------------------------------------------------------------------------------ instrument() arguments
@pytest.mark.parametrize("kwargs, named", [
    ({"capture_content": "false"}, "capture_content"),
    ({"capture_content": 1}, "capture_content"),
    ({"meter_provider": "nope"}, "meter_provider"),
    ({"tracer_provider": "nope"}, "tracer_provider"),
    ({"stream_usage": "sometimes"}, "stream_usage"),
    ({"stream_usage": ["always"]}, "stream_usage"),
])
def test_instrument_refuses_a_bad_argument_clearly_before_patching_anything(kwargs, named):
    """Issue 14.6: ``capture_content="false"`` turned capture ON; ``meter_provider="nope"`` was accepted (the error
    only logged); ``tracer_provider="nope"`` raised a bare AttributeError."""
    import aicost
    from aicost.errors import ConfigurationError
    from aicost.instrumentation import config

    aicost.uninstrument()
    before = (config.capture_content, config.stream_usage)
    with pytest.raises(ConfigurationError, match=rf"instrument\({named}=.*{named} must be") as raised:
        aicost.instrument(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(raised.value)
    assert not aicost.is_instrumented()
    assert (config.capture_content, config.stream_usage) == before


def test_each_instrument_starts_from_its_own_arguments(tracer_provider, meter_provider, span_exporter):
    """Issue 13.8: ``instrument(stream_usage="always")``, ``uninstrument()``, ``instrument()``: "always" survived."""
    import aicost
    from aicost.instrumentation import config

    try:
        aicost.instrument(tracer_provider=tracer_provider, stream_usage="always")
        assert config.stream_usage == "always"
        aicost.uninstrument()
        aicost.instrument(tracer_provider=tracer_provider)
        assert config.stream_usage == "auto"
        aicost.instrument(tracer_provider=tracer_provider, stream_usage="never")
        aicost.instrument(tracer_provider=tracer_provider)  # no uninstrument between
        assert config.stream_usage == "auto"
    finally:
        aicost.uninstrument()


def test_instrument_with_the_same_price_file_again_is_idempotent(tmp_path, tracer_provider, span_exporter,
                                                                 replay_server, openai_client):
    """Issue 13.7: a second ``instrument(price_file=p)``, or one after ``uninstrument()``, raised
    ``PriceFileError: p:1: contradicts p:1``. The file's prices are in force while instrumented, and only then."""
    import aicost
    from aicost import pricing
    from aicost.usage import Usage

    first = tmp_path / "prices.toml"
    first.write_text('[[model]]\nmodel = "acme-llm"\nprovider = "openai"\ninput = "1.00"\noutput = "3.00"\n')
    second = tmp_path / "other.toml"
    second.write_text('[[model]]\nmodel = "acme-llm"\nprovider = "openai"\ninput = "2.00"\noutput = "6.00"\n')
    usage = Usage(input_tokens=1_000_000, output_tokens=0)

    def price():
        cost = pricing.price_call("openai", "acme-llm", usage)
        return cost.total if cost.known else None

    pricing.set_price("my-own", provider="openai", input="5", output="5")  # the application's own override stays
    try:
        aicost.instrument(tracer_provider=tracer_provider, price_file=first)
        aicost.instrument(tracer_provider=tracer_provider, price_file=first)
        assert price() == 1
        aicost.uninstrument()
        assert price() is None  # uninstrument() restores everything
        aicost.instrument(tracer_provider=tracer_provider, price_file=first)
        aicost.instrument(tracer_provider=tracer_provider, price_file=second)  # replaces, does not contradict
        assert price() == 2
        aicost.instrument(tracer_provider=tracer_provider)
        assert price() is None
        assert pricing.price_call("openai", "my-own", usage).total == 5
    finally:
        aicost.uninstrument()
        pricing.clear_overrides()
