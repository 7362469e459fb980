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
