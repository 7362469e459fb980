"""Gemini answers that carry no finished output, through the real google-genai SDK over HTTP on 127.0.0.1.

* ``interactions.create(background=True)`` returns at once with an interaction still running (``in_progress``; or
  ``requires_action``, waiting on the caller's function results), and no usage: nothing is billed on this call,
  so its span says ``aicost.usage.deferred`` and carries no cost, rather than an estimate of the input alone
  priced as if it were the whole call.
* A prompt Google blocks is answered with one chunk: ``promptFeedback.blockReason`` and the prompt's usage, no
  candidates (so no finish reason). That chunk is the whole answer: the stream is as exact as the call.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from aicost import semconv as sc
from vendor_server import Reply

genai = pytest.importorskip("google.genai")
from google.genai import types  # noqa: E402

MODEL = "gemini-2.5-flash"


def _gemini(server: Any) -> Any:
    return genai.Client(api_key="t", http_options=types.HttpOptions(
        base_url=server.url, retry_options=types.HttpRetryOptions(attempts=1)))


@pytest.mark.parametrize("status", ["in_progress", "requires_action"])
def test_an_unfinished_background_interaction_is_deferred_not_estimated(status: str, instrumented: Any,
                                                                        replay_server: Any) -> None:
    replay_server.enqueue(Reply.json({"id": "v1_bg", "status": status, "object": "interaction", "model": MODEL,
                                      "created": "2026-05-13T20:35:38Z", "updated": "2026-05-13T20:35:38Z"}))
    client = _gemini(replay_server)  # held: a collected Client closes its HTTP client
    got = client.interactions.create(model=MODEL, input="Write a long essay about the sea.", background=True)
    assert got.status == status
    (span,) = instrumented.aicost_spans()
    attrs = span.attributes
    assert attrs[sc.AICOST_USAGE_DEFERRED] is True
    assert sc.GEN_AI_USAGE_COST not in attrs and "aicost.cost.total_usd" not in attrs
    assert sc.AICOST_USAGE_ESTIMATED not in attrs


def test_a_finished_interaction_is_not_deferred(instrumented: Any, replay_server: Any) -> None:
    replay_server.enqueue(Reply.json({"id": "v1_done", "status": "completed", "object": "interaction", "model": MODEL,
                                      "created": "2026-05-13T20:35:38Z", "updated": "2026-05-13T20:35:40Z",
                                      "outputs": [{"type": "text", "text": "The sea."}],
                                      "usage": {"total_input_tokens": 9, "total_output_tokens": 3,
                                                "total_tokens": 12}}))
    client = _gemini(replay_server)
    client.interactions.create(model=MODEL, input="Write a long essay about the sea.")
    (span,) = instrumented.aicost_spans()
    attrs = span.attributes
    assert sc.AICOST_USAGE_DEFERRED not in attrs and sc.AICOST_USAGE_ESTIMATED not in attrs
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 9 and attrs[sc.AICOST_PRICE_KNOWN] is True


# A prompt Google blocks gets one answer: its promptFeedback.blockReason and the prompt's usage, no candidates.
BLOCKED = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
           "usageMetadata": {"promptTokenCount": 120, "totalTokenCount": 120,
                             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 120}]},
           "modelVersion": MODEL, "responseId": "blocked-1"}


def test_a_blocked_prompt_streamed_is_exact_as_it_is_unstreamed(instrumented: Any, replay_server: Any) -> None:
    client = _gemini(replay_server)
    replay_server.enqueue(Reply.json(BLOCKED))
    client.models.generate_content(model=MODEL, contents="x")
    replay_server.enqueue(Reply.stream([f"data: {json.dumps(BLOCKED)}\r\n\r\n"]))
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="x"))
    assert len(chunks) == 1 and chunks[0].prompt_feedback.block_reason is not None
    plain, streamed = (span.attributes for span in instrumented.aicost_spans())
    assert streamed[sc.AICOST_STREAM_ENDED_BY] == "exhausted"
    for attrs in (plain, streamed):
        assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 120 and attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 0
        assert sc.AICOST_USAGE_ESTIMATED not in attrs and sc.AICOST_USAGE_INVALID_REASON not in attrs
        assert attrs[sc.AICOST_PRICE_KNOWN] is True
    assert streamed["aicost.cost.total_usd"] == plain["aicost.cost.total_usd"]


def test_an_unfinished_background_interaction_is_the_same_row_in_either_ledger(instrumented: Any, replay_server: Any,
                                                                              tmp_path: Any, spill_dir: Any) -> None:
    """Its cost is not recorded (docs/concepts.md: the finished interaction's usage is not read yet), so the ledger
    keeps it as a call of unknown cost, never $0 and never nothing: the in-process ledger, from the hooks, and the
    span exporter, from its span, write the same row."""
    import aicost
    from aicost.ledger import CALL, open_store
    from aicost.ledger import writer as ledger_writer
    from aicost.ledger.exporter import rows_from_span

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=url)
    replay_server.enqueue(Reply.json({"id": "v1_bg", "status": "in_progress", "object": "interaction", "model": MODEL,
                                      "created": "2026-05-13T20:35:38Z", "updated": "2026-05-13T20:35:38Z"}))
    client = _gemini(replay_server)
    client.interactions.create(model=MODEL, input="Write a long essay about the sea.", background=True)
    assert ledger_writer.active().flush()
    (span,) = instrumented.aicost_spans()
    with open_store(url, create=False) as store:
        (row,) = list(store.rows(datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc)))
    (exported,) = rows_from_span(span)
    for got in (row, exported):
        assert (got.kind, got.cost, got.price_known, got.provider) == (CALL, None, False, "gcp.gemini"), got
