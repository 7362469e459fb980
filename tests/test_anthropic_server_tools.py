"""Anthropic server tools billed beyond tokens, through the real anthropic SDK over HTTP on 127.0.0.1.

Code execution is billed by container time (past a daily free allowance), which no response reports; a message's
``container`` (a stream's ``message_delta.container``) is set when a container tool ran. Such a call is
cost-unknown, naming ``code_execution``, never its tokens alone marked exact. Web search is priced per request
(``server_tool_use.web_search_requests``); web fetch is billed as tokens alone, so a call that only fetched is exact.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from vendor_server import Reply, sse

MODEL = "claude-sonnet-4-5-20250929"
CONTAINER = {"id": "container_011CPR5CNjB747bTd36fQLFk", "expires_at": "2026-12-07T10:30:00Z"}
CODE_BLOCKS = [
    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "bash_code_execution", "input": {"command": "echo 2"}},
    {"type": "bash_code_execution_tool_result", "tool_use_id": "srvtoolu_1",
     "content": {"type": "bash_code_execution_result", "stdout": "2\n", "stderr": "", "return_code": 0,
                 "content": []}},
]
FETCH_BLOCKS = [
    {"type": "server_tool_use", "id": "srvtoolu_2", "name": "web_fetch", "input": {"url": "https://example.com"}},
]
USAGE = {"input_tokens": 1000, "output_tokens": 100, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def _message(container: Any, blocks: list, server_tool_use: dict | None = None) -> Reply:
    usage = dict(USAGE, server_tool_use=server_tool_use) if server_tool_use else USAGE
    return Reply.json({"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL,
                       "content": [*blocks, {"type": "text", "text": "It is 2."}], "stop_reason": "end_turn",
                       "stop_sequence": None, "usage": usage, "container": container})


def _cost_attrs(instrumented) -> dict:
    """The call's one priced span (known or not: an unknown cost carries no ``gen_ai.usage.cost``)."""
    (span,) = [s for s in instrumented.aicost_spans() if "aicost.price.known" in (s.attributes or {})]
    return dict(span.attributes or {})


def test_code_execution_makes_the_cost_unknown(instrumented, replay_server, anthropic_client):
    replay_server.enqueue(_message(CONTAINER, CODE_BLOCKS))
    result = anthropic_client.messages.create(model=MODEL, max_tokens=1000, messages=[{"role": "user", "content": "1+1"}],
                                              tools=[{"type": "code_execution_20250825", "name": "code_execution"}])
    assert result.container is not None and result.container.id == CONTAINER["id"]  # the caller's, unchanged
    attrs = _cost_attrs(instrumented)
    assert attrs["gen_ai.usage.input_tokens"] == 1000 and attrs["gen_ai.usage.output_tokens"] == 100
    assert attrs["aicost.price.known"] is False and "gen_ai.usage.cost" not in attrs
    assert "hosted tools billed per call or session (code_execution)" in attrs["aicost.price.unknown_reason"]


def test_web_fetch_alone_is_billed_as_tokens(instrumented, replay_server, anthropic_client):
    replay_server.enqueue(_message(None, FETCH_BLOCKS, {"web_search_requests": 0, "web_fetch_requests": 1}))
    anthropic_client.messages.create(model=MODEL, max_tokens=1000, messages=[{"role": "user", "content": "read it"}],
                                     tools=[{"type": "web_fetch_20250910", "name": "web_fetch"}])
    attrs = _cost_attrs(instrumented)
    assert attrs["aicost.price.known"] is True and "aicost.price.unknown_reason" not in attrs
    assert attrs["gen_ai.usage.cost"] > 0


def _events(container: Any) -> Iterator[str]:
    yield sse({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "content": [], "stop_reason": None,
        "stop_sequence": None, "container": None, "usage": {**USAGE, "output_tokens": 1}}}, "message_start")
    yield sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
              "content_block_start")
    yield sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "It is 2."}},
              "content_block_delta")
    yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    yield sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None,
                                                  "container": container},
               "usage": {"output_tokens": 100}}, "message_delta")
    yield sse({"type": "message_stop"}, "message_stop")


@pytest.mark.parametrize("container, known", [(CONTAINER, False), (None, True)], ids=["container", "none"])
def test_a_stream_that_ran_code_execution_is_cost_unknown(instrumented, replay_server, anthropic_client,
                                                          container, known):
    """The stream says so in its ``message_delta``, after message_start said no container."""
    replay_server.enqueue(Reply.stream(list(_events(container))))
    with anthropic_client.messages.stream(model=MODEL, max_tokens=1000,
                                          messages=[{"role": "user", "content": "1+1"}]) as stream:
        final = stream.get_final_message()
    assert (final.container is None) is known
    attrs = _cost_attrs(instrumented)
    assert attrs["gen_ai.usage.output_tokens"] == 100
    assert attrs["aicost.price.known"] is known
    if not known:
        assert "(code_execution)" in attrs["aicost.price.unknown_reason"]
