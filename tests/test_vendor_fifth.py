"""A fifth vendor is a module plus tests, and nothing in aicost's core: this file is both.

"Toy AI" is a made-up vendor with a tiny SDK (below: a client whose calls POST JSON over real HTTP to the loopback
server and return the vendor's reply object, or a generator of streamed events) whose argument names are unlike
OpenAI's (``engine``, ``text``, ``max_words``). Its integration is written here, as docs/concepts.md ("Adding a
vendor") says (its readers read each count with ``read_count`` and end with ``Usage.checked()``), and registered
with ``aicost.integrations.register``. Then the promises hold for it as for the built-in vendors: one costed span
per call, exact cost, usage that fails validation never priced as exact, a policy's output cap and a budget's
downgrade written into the request it sends, a budget refusing before anything is sent, and the cache answering
without a call.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterator

import pytest

import aicost
from aicost import integrations, semconv
from aicost.budget import Budget, BudgetExceeded, Policy, configure_budgets, disable_budgets
from aicost.pricing import clear_overrides, set_price
from aicost.usage import Usage, read_count
from aicost.vendor import (Endpoint, InputText, Integration, RequestMeta, RequestShape, ResponseMeta,
                           StreamAccumulator)
from vendor_server import Reply


# ------------------------------------------------------------------------------------------------ the toy SDK
@dataclass
class ToyReply:
    engine: str
    text: str
    words_in: int
    words_out: int


class ToyCompletions:
    def __init__(self, client: "ToyClient") -> None:
        self._client = client

    def _post(self, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(self._client.base_url + "/toy/v1/complete", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"}, method="POST")
        return urllib.request.urlopen(request, timeout=10)

    def create(self, *, engine: str, text: str, max_words: int | None = None) -> ToyReply:
        with self._post({"engine": engine, "text": text, "max_words": max_words}) as response:
            data = json.load(response)
        return ToyReply(data["engine"], data["text"], data["usage"]["in"], data["usage"]["out"])

    def stream(self, *, engine: str, text: str, max_words: int | None = None) -> Iterator[dict[str, Any]]:
        """Events, one JSON object a line: words, then ``{"done": true, "usage": ...}``."""
        response = self._post({"engine": engine, "text": text, "max_words": max_words, "stream": True})

        def events() -> Iterator[dict[str, Any]]:
            with response:
                for line in response:
                    if line.strip():
                        yield json.loads(line)

        return events()


class ToyClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.completions = ToyCompletions(self)


# ------------------------------------------------------------------------------------------- the integration
class ToyShape(RequestShape):
    __slots__ = ()
    model_param = "engine"

    def output_cap(self, kwargs: dict[str, Any]) -> int | None:
        cap = kwargs.get("max_words")
        return cap if type(cap) is int and cap > 0 else None

    def set_output_cap(self, kwargs: dict[str, Any], cap: int) -> bool:
        current = self.output_cap(kwargs)
        if current is not None and current <= cap:
            return False
        kwargs["max_words"] = cap
        return True

    def input_text(self, kwargs: dict[str, Any]) -> InputText:
        text = kwargs.get("text")
        return InputText((text,) if isinstance(text, str) else (), 0, False)

    def content(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"input": kwargs["text"]} if isinstance(kwargs.get("text"), str) else {}


class ToyAccumulator(StreamAccumulator):
    __slots__ = ("words", "usage")

    def __init__(self) -> None:
        super().__init__()
        self.words: list[str] = []
        self.usage: Usage | None = None

    def observe(self, item: Any) -> bool:
        if item.get("done"):
            counts = item.get("usage")
            self.usage = toy_usage(counts.get("in"), counts.get("out")) if isinstance(counts, dict) else Usage(
                invalid="usage is not an object")
            self.complete = True
        else:
            self.words.append(item.get("word", ""))
        return True

    def result(self) -> ResponseMeta:
        return ResponseMeta(usage=self.usage, output_text=" ".join(self.words) or None)


def toy_usage(words_in: Any, words_out: Any) -> Usage:
    """The vendor's counts as docs/concepts.md ("Adding a vendor") says a reader reads them: each with
    ``read_count`` (garbage is read as 0 and noted), and ``checked()`` last, whose verdict the core prices by."""
    usage = Usage()
    usage.input_tokens = read_count(usage, words_in, "usage.in", required=True)
    usage.output_tokens = read_count(usage, words_out, "usage.out", required=True)
    return usage.checked()


_SHAPE = ToyShape("max_words")


class ToyIntegration(Integration):
    name = "toy"
    sdk = __name__  # the SDK's module: this one, imported already, so patched at once
    endpoints = (Endpoint(__name__, ("ToyCompletions", ""), "create", "toy.completions.create", "chat", shape=_SHAPE),
                 Endpoint(__name__, ("ToyCompletions", ""), "stream", "toy.completions.stream", "chat", shape=_SHAPE))

    def provider(self, resource: Any) -> str:
        return "toyai"

    def request_meta(self, endpoint: Endpoint, resource: Any, kwargs: dict[str, Any]) -> RequestMeta:
        return RequestMeta(model=endpoint.shape.model(kwargs), stream=endpoint.method == "stream",
                           max_tokens=endpoint.shape.output_cap(kwargs), service_tier=None,
                           server_address="127.0.0.1", server_port=None)

    def read_response(self, endpoint: Endpoint, response: Any, want_text: bool) -> ResponseMeta:
        return ResponseMeta(usage=toy_usage(response.words_in, response.words_out),
                            model=response.engine, output_text=response.text if want_text else None)

    def new_accumulator(self, endpoint: Endpoint, hide_usage_chunk: bool, keep_text: bool) -> StreamAccumulator:
        return ToyAccumulator()

    def is_stream(self, obj: Any) -> bool:
        import inspect

        return inspect.isgenerator(obj)

    def wrap_stream(self, stream: Any, watch: Any) -> Any:
        return watch.iterate(stream)


# ------------------------------------------------------------------------------------------------ the tests
IN_RATE, OUT_RATE = Decimal("2"), Decimal("8")  # USD per million tokens


@pytest.fixture
def toy(replay_server):
    set_price("toy-large", provider="toyai", input=IN_RATE, output=OUT_RATE)
    set_price("toy-small", input="0.1", output="0.4")  # a downgrade target is checked against the catalog
    set_price("toy-small", provider="toyai", input="0.1", output="0.4")
    integrations.register(ToyIntegration)
    try:
        yield ToyClient(replay_server.url)
    finally:
        integrations.unregister(ToyIntegration)
        disable_budgets()
        clear_overrides()


def _reply(words_in: int = 1200, words_out: int = 300, engine: str = "toy-large") -> Reply:
    return Reply.json({"engine": engine, "text": "hello there", "usage": {"in": words_in, "out": words_out}})


def test_a_call_is_one_costed_span_priced_at_the_vendors_rates(toy, instrumented, replay_server):
    replay_server.enqueue(_reply())
    reply = toy.completions.create(engine="toy-large", text="say hello")
    assert reply.text == "hello there"  # the SDK's own object
    (span,) = instrumented.cost_spans()
    attrs = span.attributes
    assert attrs[semconv.GEN_AI_PROVIDER_NAME] == "toyai"
    assert attrs[semconv.AICOST_ENDPOINT] == "toy.completions.create"
    assert (attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS], attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS]) == (1200, 300)
    assert Decimal(attrs[semconv.AICOST_COST_TOTAL]) == (1200 * IN_RATE + 300 * OUT_RATE) / 1_000_000


def test_a_stream_is_costed_when_it_ends(toy, instrumented, replay_server):
    lines = [json.dumps({"word": w}) + "\n" for w in ("hello", "there")]
    lines.append(json.dumps({"done": True, "usage": {"in": 10, "out": 2}}) + "\n")
    replay_server.enqueue(Reply.stream(lines, content_type="application/x-ndjson"))
    assert [e.get("word") for e in toy.completions.stream(engine="toy-large", text="hi")] == ["hello", "there", None]
    (span,) = instrumented.cost_spans()
    assert span.attributes[semconv.AICOST_STREAM_ENDED_BY] == "exhausted"
    assert Decimal(span.attributes[semconv.AICOST_COST_TOTAL]) == (10 * IN_RATE + 2 * OUT_RATE) / 1_000_000


@pytest.mark.parametrize("words_in, words_out", [(-5, 300), (1200, "300"), (1200, 2.5), (1200, None), (2**60, 3)])
@pytest.mark.parametrize("stream", [False, True])
def test_usage_that_fails_validation_is_never_priced_as_exact(toy, instrumented, replay_server, words_in, words_out,
                                                              stream):
    """The readers above read the vendor's counts as the contract says: garbage (a negative count, a string, a
    fraction, none, above 2**53) makes the call an estimate that says why, never an exact cost."""
    if stream:
        done = {"done": True, "usage": {"in": words_in, "out": words_out}}
        replay_server.enqueue(Reply.stream([json.dumps({"word": "hello"}) + "\n", json.dumps(done) + "\n"],
                                           content_type="application/x-ndjson"))
        list(toy.completions.stream(engine="toy-large", text="say hello"))
    else:
        replay_server.enqueue(Reply.json({"engine": "toy-large", "text": "hello there",
                                          "usage": {"in": words_in, "out": words_out}}))
        toy.completions.create(engine="toy-large", text="say hello")
    (span,) = instrumented.cost_spans()
    attrs = span.attributes
    assert attrs[semconv.AICOST_USAGE_ESTIMATED] is True
    assert "usage." in attrs[semconv.AICOST_USAGE_INVALID_REASON]


def test_a_reader_that_skips_checked_is_caught_by_the_suite(toy, instrumented, replay_server, readers_check_usage,
                                                            monkeypatch):
    """Every test that calls a vendor holds its reader to ``Usage.checked()`` (conftest ``readers_check_usage``,
    autouse): a reader that forgot it is named, and the test fails."""
    monkeypatch.setattr(ToyIntegration, "read_response", lambda self, endpoint, response, want_text: ResponseMeta(
        usage=Usage(input_tokens=response.words_in, output_tokens=response.words_out), model=response.engine))
    replay_server.enqueue(_reply())
    toy.completions.create(engine="toy-large", text="say hello")
    assert readers_check_usage == ["ToyIntegration (toy.completions.create)"]
    readers_check_usage.clear()  # (seen: this test passes)


@pytest.mark.parametrize("reader", ["unchecked", "changed after checked", "unchecked sub-inference",
                                    "unchecked error_meta"])
def test_a_reader_is_held_to_checked_in_a_test_that_instruments_by_itself(toy, replay_server, tracer_provider,
                                                                         readers_check_usage, monkeypatch, reader):
    """The check holds in every test, not only under ``instrumented``: here aicost is instrumented directly. It sees
    each usage a reader hands the core: the call's, a sub-inference's, the one ``error_meta`` reads from a failed
    call; and a checked usage changed afterwards so that it breaks a rule (a subset above its total)."""
    import aicost

    def read(self, endpoint, response, want_text):
        usage = toy_usage(response.words_in, response.words_out)
        meta = ResponseMeta(usage=usage, model=response.engine)
        if reader == "unchecked":
            meta.usage = Usage(input_tokens=response.words_in, output_tokens=response.words_out)
        elif reader == "changed after checked":
            usage.cache_read_tokens = usage.input_tokens + 1
        elif reader == "unchecked sub-inference":
            meta.sub_inferences = (("helper", "toy-small", Usage(input_tokens=3, output_tokens=1)),)
        return meta

    monkeypatch.setattr(ToyIntegration, "read_response", read)
    if reader == "unchecked error_meta":
        monkeypatch.setattr(ToyIntegration, "error_meta", lambda self, endpoint, error: ResponseMeta(
            usage=Usage(input_tokens=5, output_tokens=2), model="toy-large"))
        replay_server.enqueue(Reply.json({"engine": "toy-large"}))  # answered, then the SDK fails: may be billed
    else:
        replay_server.enqueue(_reply())
    aicost.instrument(tracer_provider=tracer_provider)
    try:
        try:
            toy.completions.create(engine="toy-large", text="say hello")
        except KeyError:
            assert reader == "unchecked error_meta"
    finally:
        aicost.uninstrument()
    expected = {"unchecked": "ToyIntegration (toy.completions.create)",
                "changed after checked": "ToyIntegration (toy.completions.create, changed after checked(): "
                                         "cache_read_tokens exceeds its total)",
                "unchecked sub-inference": "ToyIntegration (toy.completions.create, sub-inference helper)",
                "unchecked error_meta": "ToyIntegration (toy.completions.create, error_meta)"}[reader]
    assert readers_check_usage == [expected]
    readers_check_usage.clear()  # (seen: this test passes)


def test_a_policy_cap_and_a_budget_downgrade_are_written_into_the_request_sent(toy, instrumented, replay_server):
    configure_budgets(policies=[Policy(max_output_tokens=50)],
                      budgets=[Budget(limit_usd="0.0001", action="downgrade", downgrade_to="toy-small")])
    replay_server.enqueue(_reply(engine="toy-small"))
    toy.completions.create(engine="toy-large", text="say hello", max_words=4000)
    (sent,) = [r.json for r in replay_server.requests]
    assert sent["max_words"] == 50
    assert sent["engine"] == "toy-small"
    (span,) = instrumented.cost_spans()
    assert span.attributes[semconv.AICOST_BUDGET_DOWNGRADED_FROM] == "toy-large"


def test_a_budget_refuses_before_anything_is_sent(toy, instrumented, replay_server):
    configure_budgets(budgets=[Budget(limit_usd="0.0001", name="toy")])
    with pytest.raises(BudgetExceeded):
        toy.completions.create(engine="toy-large", text="say hello", max_words=4000)
    assert replay_server.requests == []


def test_the_cache_answers_without_a_second_call_and_reports_what_it_saved(toy, instrumented, replay_server):
    replay_server.enqueue(_reply())

    @aicost.cache(prompt="question")
    def ask(question: str) -> str:
        return toy.completions.create(engine="toy-large", text=question).text

    assert ask("Say hello?") == ask(" Say  hello ? ") == "hello there"
    assert len(replay_server.requests) == 1
    (billed,) = instrumented.cost_spans()
    hit = [s for s in instrumented.spans() if s.name.startswith("aicost.cache ")][-1]
    assert hit.attributes[semconv.AICOST_CACHE_HIT] is True
    assert Decimal(hit.attributes[semconv.AICOST_CACHE_SAVED_USD]) == Decimal(
        billed.attributes[semconv.AICOST_COST_TOTAL])
