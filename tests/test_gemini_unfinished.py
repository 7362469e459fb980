"""Gemini answers that carry no finished output, through the real google-genai SDK over HTTP on 127.0.0.1.

* ``interactions.create(background=True)`` returns at once with an interaction still running (``in_progress``; or
  ``requires_action``, waiting on the caller's function results), and no usage: nothing is billed on this call,
  so its span says ``aicost.usage.deferred`` and carries no cost, rather than an estimate of the input alone
  priced as if it were the whole call.
"""

from __future__ import annotations

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
