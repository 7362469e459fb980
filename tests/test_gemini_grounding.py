"""Grounding Google bills beyond tokens, through the real google-genai SDK over HTTP on 127.0.0.1.

Grounding with Google Search is billed per grounded prompt (Gemini 2.x) or per search query (3.x), Google Maps per
grounded prompt, each past free allowances no response shows; the catalog's Search rate is per billable query. So a
call whose ``groundingMetadata`` shows one ran is cost-unknown, naming it, never its tokens alone marked exact.
URL context and File Search grounding are billed as tokens (``toolUsePromptTokenCount``): still exact. The genuine
recordings (Search, URL context, File Search) are replayed in test_replay_google.py; these cover what they lack:
Maps, Vertex AI Search, a stream whose metadata comes before its last chunk, and usage that fails validation.
"""

from __future__ import annotations

import json

import pytest

from vendor_server import Reply

genai = pytest.importorskip("google.genai")
from google.genai import types  # noqa: E402
from google.oauth2.credentials import Credentials  # noqa: E402

USAGE = {"promptTokenCount": 1000, "candidatesTokenCount": 100, "toolUsePromptTokenCount": 500,
         "totalTokenCount": 1600}
SEARCH = {"webSearchQueries": ["weather in Paris"], "searchEntryPoint": {"renderedContent": "<div></div>"},
          "groundingChunks": [{"web": {"uri": "https://example.com", "title": "example.com"}}]}
MAPS = {"groundingChunks": [{"maps": {"uri": "https://maps.google.com/?cid=1", "title": "Cafe", "placeId": "p1"}}]}
VERTEX_SEARCH = {"retrievalQueries": ["refund policy"],
                 "groundingChunks": [{"retrievedContext": {"uri": "gs://b/doc.pdf", "title": "doc"}}]}
URL_CONTEXT = {"groundingChunks": [{"web": {"uri": "https://example.com/page", "title": "page"}}],
               "groundingSupports": [{"segment": {"endIndex": 2, "text": "ok"}, "groundingChunkIndices": [0]}]}


def _candidate(grounding: dict | None, finish: bool = True) -> dict:
    candidate = {"content": {"role": "model", "parts": [{"text": "ok"}]}, "index": 0}
    if finish:
        candidate["finishReason"] = "STOP"
    if grounding is not None:
        candidate["groundingMetadata"] = grounding
    return candidate


def _answer(grounding: dict | None, usage: dict = USAGE) -> Reply:
    return Reply.json({"candidates": [_candidate(grounding)], "usageMetadata": usage,
                       "modelVersion": "gemini-2.5-flash"})


def _gemini(server):
    return genai.Client(api_key="t", http_options=types.HttpOptions(
        base_url=server.url, retry_options=types.HttpRetryOptions(attempts=1)))


def _vertex(server):
    return genai.Client(vertexai=True, project="p", location="global", credentials=Credentials(token="t"),
                        http_options=types.HttpOptions(base_url=server.url,
                                                       retry_options=types.HttpRetryOptions(attempts=1)))


def _the_span(instrumented) -> dict:
    (span,) = instrumented.aicost_spans()
    return dict(span.attributes)


def _assert_unknown_naming(attrs: dict, named: str) -> None:
    assert attrs["aicost.price.known"] is False
    assert "aicost.cost.total_usd" not in attrs and "gen_ai.usage.cost" not in attrs  # never $0, never the tokens
    assert f"hosted tools billed per call or session ({named})" in attrs["aicost.price.unknown_reason"]


def _assert_priced(attrs: dict) -> None:
    """Grounding billed as tokens (URL context, a RAG store): the call is priced, exactly, at its tokens."""
    assert attrs["aicost.price.known"] is True and "aicost.price.unknown_reason" not in attrs
    assert attrs["aicost.cost.total_usd"]


@pytest.mark.parametrize("grounding, named, vertex", [
    (SEARCH, "google_search", False),
    (MAPS, "google_maps", False),
    ({**SEARCH, "groundingChunks": SEARCH["groundingChunks"] + MAPS["groundingChunks"]}, "google_search, google_maps",
     False),
    (VERTEX_SEARCH, "vertex_ai_search", True),
], ids=["search", "maps", "search-and-maps", "vertex-ai-search"])
def test_grounding_billed_beyond_tokens_makes_the_cost_unknown(instrumented, replay_server, grounding, named, vertex):
    replay_server.enqueue(_answer(grounding))
    client = _vertex(replay_server) if vertex else _gemini(replay_server)  # held: a collected Client closes
    result = client.models.generate_content(model="gemini-2.5-flash", contents="Where should I eat?")
    assert result.candidates[0].grounding_metadata is not None  # the caller gets it as it came
    attrs = _the_span(instrumented)
    assert attrs["gen_ai.usage.input_tokens"] == 1500 and attrs["gen_ai.usage.output_tokens"] == 100  # still exact
    _assert_unknown_naming(attrs, named)


@pytest.mark.parametrize("grounding", [None, URL_CONTEXT, {}], ids=["none", "url-context", "empty"])
def test_grounding_billed_as_tokens_stays_exact(instrumented, replay_server, grounding):
    replay_server.enqueue(_answer(grounding))
    client = _gemini(replay_server)
    client.models.generate_content(model="gemini-2.5-flash", contents="Summarise https://example.com/page")
    _assert_priced(_the_span(instrumented))


def _stream(chunks: list[dict]) -> Reply:
    return Reply.stream([f"data: {json.dumps(chunk)}\r\n\r\n" for chunk in chunks])


def test_stream_grounding_in_an_earlier_chunk_makes_the_cost_unknown(instrumented, replay_server):
    """The search's metadata arrives in one chunk, the final usage in a later one, which has none: still read."""
    partial = {"promptTokenCount": 1000, "totalTokenCount": 1000}
    replay_server.enqueue(_stream([
        {"candidates": [_candidate(SEARCH, finish=False)], "usageMetadata": partial, "modelVersion": "gemini-2.5-flash"},
        {"candidates": [_candidate(None, finish=False)], "usageMetadata": partial, "modelVersion": "gemini-2.5-flash"},
        {"candidates": [_candidate(None)], "usageMetadata": USAGE, "modelVersion": "gemini-2.5-flash"},
    ]))
    client = _gemini(replay_server)
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="Weather in Paris?"))
    assert len(chunks) == 3
    attrs = _the_span(instrumented)
    assert attrs["gen_ai.usage.input_tokens"] == 1500 and attrs["gen_ai.usage.output_tokens"] == 100
    _assert_unknown_naming(attrs, "google_search")


def test_grounded_call_whose_usage_fails_validation_is_still_cost_unknown(instrumented, replay_server):
    """Usage that fails validation is estimated; the estimate keeps the grounding, so it is unknown, not the
    estimated tokens' price."""
    replay_server.enqueue(_answer(SEARCH, usage={**USAGE, "candidatesTokenCount": -5}))
    client = _gemini(replay_server)
    client.models.generate_content(model="gemini-2.5-flash", contents="Weather in Paris?")
    attrs = _the_span(instrumented)
    assert attrs["aicost.usage.estimated"] is True
    assert "candidates_token_count" in attrs["aicost.usage.invalid_reason"]
    _assert_unknown_naming(attrs, "google_search")


@pytest.mark.parametrize("stream", [False, True], ids=["response", "stream"])
def test_a_grounded_answer_without_usage_metadata_is_cost_unknown_naming_the_tool(instrumented, replay_server,
                                                                                 stream):
    """A grounded answer with no ``usageMetadata`` is estimated from its text. The grounding is billed all the same:
    the estimate names it and is cost-unknown, as the vendor's usage would be, never the estimated tokens' price
    alone. (The tools were named on the vendor's usage, so a response without one lost them.)"""
    body = {"candidates": [_candidate(SEARCH)], "modelVersion": "gemini-2.5-flash"}
    replay_server.enqueue(_stream([body]) if stream else Reply.json(body))
    client = _gemini(replay_server)
    if stream:
        list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="Weather in Paris?"))
    else:
        client.models.generate_content(model="gemini-2.5-flash", contents="Weather in Paris?")
    attrs = _the_span(instrumented)
    assert attrs["aicost.usage.estimated"] is True
    _assert_unknown_naming(attrs, "google_search")


# ------------------------------------------------------------------------------------------ Interactions API
_SEARCH_STEPS = [{"type": "google_search_call", "id": "s1", "arguments": {"queries": ["weather in Paris"]}},
                 {"type": "google_search_result", "call_id": "s1", "result": [{"url": "https://example.com"}]}]
_MAPS_STEP = {"type": "google_maps_call", "id": "m1", "arguments": {"queries": ["cafe near me"]}}
_VERTEX_STEP = {"type": "retrieval_call", "id": "r1", "retrieval_type": "vertex_ai_search",
                "arguments": {"queries": ["refund policy"]}}
_URL_STEP = {"type": "url_context_call", "id": "u1", "arguments": {"urls": ["https://example.com/page"]}}


def _interaction(steps: list[dict] | None, counts: list[dict] | None = None) -> Reply:
    """A finished interaction; ``steps`` None: sent without its steps (the SDK's ``Interaction.steps`` are there
    "when included in the response"); ``counts``: its usage's ``grounding_tool_count``."""
    usage = {"total_input_tokens": 1000, "total_tool_use_tokens": 500, "total_output_tokens": 100,
             "total_tokens": 1600}
    body = {"id": "v1_g", "status": "completed", "object": "interaction", "model": "gemini-2.5-flash",
            "created": "2026-05-13T20:35:38Z", "updated": "2026-05-13T20:35:40Z",
            "usage": usage if counts is None else {**usage, "grounding_tool_count": counts}}
    if steps is not None:
        body["steps"] = [*steps, {"type": "model_output", "content": [{"type": "text", "text": "ok"}]}]
    return Reply.json(body)


@pytest.mark.parametrize("steps, named", [
    (_SEARCH_STEPS, "google_search"),
    ([_MAPS_STEP], "google_maps"),
    ([*_SEARCH_STEPS, _MAPS_STEP], "google_search, google_maps"),
    ([_VERTEX_STEP], "vertex_ai_search"),
    ([{**_VERTEX_STEP, "retrieval_type": "exa_ai_search"}], "exa_ai_search"),
], ids=["search", "maps", "search-and-maps", "vertex-ai-search", "exa"])
def test_a_grounded_interaction_is_cost_unknown_naming_the_tool(instrumented, replay_server, steps, named):
    """``client.interactions.create`` shows the tools it ran as steps (``google_search_call``, ``google_maps_call``,
    a ``retrieval_call`` of Vertex AI Search): billed as ``generate_content``'s grounding is, and named the same."""
    replay_server.enqueue(_interaction(steps))
    client = _gemini(replay_server)
    got = client.interactions.create(model="gemini-2.5-flash", input="Where should I eat?",
                                     tools=[{"type": "google_search"}])
    assert [step.type for step in got.steps][:len(steps)] == [step["type"] for step in steps]  # as the SDK reads them
    attrs = _the_span(instrumented)
    assert attrs["gen_ai.usage.input_tokens"] == 1500 and attrs["gen_ai.usage.output_tokens"] == 100  # still exact
    _assert_unknown_naming(attrs, named)


@pytest.mark.parametrize("steps", [[], [_URL_STEP], [{**_VERTEX_STEP, "retrieval_type": "rag_store"}]],
                         ids=["none", "url-context", "rag-store"])
def test_an_interaction_grounded_as_tokens_stays_exact(instrumented, replay_server, steps):
    replay_server.enqueue(_interaction(steps))
    client = _gemini(replay_server)
    client.interactions.create(model="gemini-2.5-flash", input="Summarise https://example.com/page")
    _assert_priced(_the_span(instrumented))


# The usage's ``grounding_tool_count`` counts the grounding the interaction ran, by tool type: an agent's published
# interaction with one ``google_search_call`` step of two queries counted ``{"type": "google_search", "count": 2}``.
@pytest.mark.parametrize("steps, counts, named", [
    (None, [{"type": "google_search", "count": 2}], "google_search"),
    ([], [{"type": "google_search", "count": 2}], "google_search"),
    ([_URL_STEP], [{"type": "google_maps", "count": 1}], "google_maps"),
    (None, [{"type": "google_maps", "count": 1}, {"type": "google_search", "count": 3}], "google_maps, google_search"),
    ([_MAPS_STEP], [{"type": "google_search", "count": 1}], "google_maps, google_search"),
    (_SEARCH_STEPS, [{"type": "google_search", "count": 1}], "google_search"),
    (None, [{"type": "google_search", "count": -1}], "google_search"),
], ids=["no-steps", "empty-steps", "maps-beside-url-context", "two-tools", "step-and-count", "both-say-search",
        "unreadable-count"])
def test_an_interaction_whose_usage_counts_grounding_is_cost_unknown_naming_it(instrumented, replay_server, steps,
                                                                               counts, named):
    """The count names the tool also when the steps do not show it (an interaction sent without them): never
    priced at its tokens alone. Not priced from the count either: Search is billed past free allowances no response
    shows (and per grounded prompt, not per query, on Gemini 2.x). A count that is not a count may be billed too."""
    replay_server.enqueue(_interaction(steps, counts))
    client = _gemini(replay_server)
    got = client.interactions.create(model="gemini-2.5-flash", input="Where should I eat?")
    assert got.usage.grounding_tool_count is not None  # the caller gets it as the SDK reads it
    attrs = _the_span(instrumented)
    assert attrs["gen_ai.usage.input_tokens"] == 1500 and attrs["gen_ai.usage.output_tokens"] == 100  # still exact
    _assert_unknown_naming(attrs, named)


@pytest.mark.parametrize("counts", [
    [{"type": "google_search", "count": 0}],
    [{"type": "google_search"}],  # proto3 JSON leaves a zero count out
    [{"type": "retrieval", "count": 1}],  # Vertex AI Search or a RAG store: only the step's retrieval_type tells
    [],
], ids=["zero", "count-left-out", "retrieval", "empty"])
def test_an_interaction_whose_usage_counts_no_billed_grounding_stays_exact(instrumented, replay_server, counts):
    replay_server.enqueue(_interaction([_URL_STEP], counts))
    client = _gemini(replay_server)
    client.interactions.create(model="gemini-2.5-flash", input="Summarise https://example.com/page")
    _assert_priced(_the_span(instrumented))


# An Interactions API stream (``interactions.create(stream=True)``): the SDK's ``InteractionSSEEvent`` objects, as the
# API sends them (``step.start`` with the step, ``step.delta``, ``step.stop``, ``interaction.completed`` with the
# finished interaction and its usage).
def _interaction_events(steps: list[dict], completed: bool = True, counts: list[dict] | None = None) -> Reply:
    events: list[dict] = [{"event_type": "interaction.created", "interaction": {
        "id": "v1_s", "status": "in_progress", "object": "interaction", "model": "gemini-2.5-flash"}}]
    for index, step in enumerate(steps):
        events += [{"event_type": "step.start", "index": index, "step": step},
                   {"event_type": "step.stop", "index": index}]
    index = len(steps)
    events += [{"event_type": "step.start", "index": index, "step": {"type": "model_output"}},
               {"event_type": "step.delta", "index": index, "delta": {"type": "text", "text": "It is sunny in Paris."}},
               {"event_type": "step.stop", "index": index}]
    if completed:
        events.append({"event_type": "interaction.completed", "interaction": {
            "id": "v1_s", "status": "completed", "object": "interaction", "model": "gemini-2.5-flash",
            "usage": {"total_input_tokens": 1000, "total_tool_use_tokens": 500, "total_output_tokens": 100,
                      "total_tokens": 1600, **({} if counts is None else {"grounding_tool_count": counts})}}})
    return Reply.stream([f"event: {e['event_type']}\ndata: {json.dumps(e)}\n\n" for e in events])


@pytest.mark.parametrize("steps, named", [
    (_SEARCH_STEPS, "google_search"),
    ([_MAPS_STEP, {**_VERTEX_STEP, "retrieval_type": "exa_ai_search"}], "google_maps, exa_ai_search"),
], ids=["search", "maps-and-exa"])
def test_a_grounded_interaction_stream_is_cost_unknown_naming_the_tool(instrumented, replay_server, steps, named):
    """The stream's ``step.start`` events carry the steps a finished interaction lists: the grounding is named from
    them by the same code, and the usage is read from ``interaction.completed`` as a non-stream call's is."""
    replay_server.enqueue(_interaction_events(steps))
    client = _gemini(replay_server)
    events = list(client.interactions.create(model="gemini-2.5-flash", input="Weather in Paris?", stream=True))
    assert events[-1].event_type == "interaction.completed"  # the caller gets every event
    attrs = _the_span(instrumented)
    assert attrs["gen_ai.usage.input_tokens"] == 1500 and attrs["gen_ai.usage.output_tokens"] == 100  # exact
    assert "aicost.usage.estimated" not in attrs
    _assert_unknown_naming(attrs, named)


def test_an_interaction_stream_whose_completed_usage_counts_grounding_names_it(instrumented, replay_server):
    """No ``step.start`` shows the search, but ``interaction.completed``'s usage counts it: read as a finished
    interaction's is, so the call is cost-unknown, naming it, beside the URL context step's tokens."""
    replay_server.enqueue(_interaction_events([_URL_STEP], counts=[{"type": "google_search", "count": 2}]))
    client = _gemini(replay_server)
    list(client.interactions.create(model="gemini-2.5-flash", input="Weather in Paris?", stream=True))
    attrs = _the_span(instrumented)
    assert attrs["gen_ai.usage.input_tokens"] == 1500 and "aicost.usage.estimated" not in attrs
    _assert_unknown_naming(attrs, "google_search")


def test_an_interaction_stream_is_priced_from_its_completed_event(instrumented, replay_server):
    replay_server.enqueue(_interaction_events([_URL_STEP]))
    client = _gemini(replay_server)
    for _ in client.interactions.create(model="gemini-2.5-flash", input="Summarise the page", stream=True):
        pass
    attrs = _the_span(instrumented)
    assert attrs["gen_ai.usage.input_tokens"] == 1500 and attrs["gen_ai.usage.output_tokens"] == 100
    assert attrs["gen_ai.response.id"] == "v1_s" and attrs["gen_ai.response.model"] == "gemini-2.5-flash"
    _assert_priced(attrs)


def test_an_interaction_stream_cut_before_its_usage_still_names_the_grounding(instrumented, replay_server):
    """No ``interaction.completed``: the usage is estimated (from the text deltas), and the search its steps showed
    keeps the estimate cost-unknown."""
    replay_server.enqueue(_interaction_events(_SEARCH_STEPS, completed=False))
    client = _gemini(replay_server)
    list(client.interactions.create(model="gemini-2.5-flash", input="Weather in Paris?", stream=True))
    attrs = _the_span(instrumented)
    assert attrs["aicost.usage.estimated"] is True and attrs["gen_ai.usage.output_tokens"] > 0
    _assert_unknown_naming(attrs, "google_search")


def test_an_interaction_stream_ending_with_an_error_event_is_estimated_saying_so(instrumented, replay_server):
    """An ``error`` event (the interaction failed on the server after it had generated): the google-genai SDK
    yields it as an ``ErrorEvent`` and raises nothing, so the call ends as without aicost, not failed. No
    ``interaction.completed`` comes: the usage is estimated, as for a stream cut before its usage, and the estimate
    says it was the error event, by its code (never its message), instead of saying nothing."""
    events = _interaction_events([], completed=False)
    error = {"event_type": "error", "error": {"code": "resource_exhausted", "message": "quota of the prompt's user"}}
    events.chunks = [*events.chunks, f"event: error\ndata: {json.dumps(error)}\n\n"]
    replay_server.enqueue(events)
    client = _gemini(replay_server)
    got = list(client.interactions.create(model="gemini-2.5-flash", input="Weather in Paris?", stream=True))
    assert got[-1].event_type == "error"  # the SDK yields it: the caller sees it, nothing is raised
    attrs = _the_span(instrumented)
    assert attrs["aicost.stream.ended_by"] == "exhausted" and "error.type" not in attrs
    assert attrs["aicost.usage.estimated"] is True and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["aicost.usage.invalid_reason"] == ("the stream ended with an error event (resource_exhausted) "
                                                   "before the vendor's usage")
    assert "quota" not in json.dumps(attrs)


def test_an_async_interaction_stream_closed_early_is_finished(instrumented, replay_server):
    import asyncio

    async def run() -> None:
        replay_server.enqueue(_interaction_events(_SEARCH_STEPS))
        client = _gemini(replay_server)
        stream = await client.aio.interactions.create(model="gemini-2.5-flash", input="Weather?", stream=True)
        async for event in stream:
            if event.event_type == "step.start":
                break
        await stream.close()

    asyncio.run(run())
    attrs = _the_span(instrumented)
    assert attrs["aicost.stream.ended_by"] == "closed"
    _assert_unknown_naming(attrs, "google_search")
