"""Offline token counting: exact tiktoken counts from bundled, hash-checked data, and honest estimates."""

from __future__ import annotations

import threading
import time

from aicost import integrations, tokens


def test_counts_are_tiktokens_exact_counts_offline():
    # 7 tokens in both o200k_base (gpt-4o) and cl100k_base (gpt-3.5/4), per tiktoken.
    assert tokens.count_text("What is the capital of France?", "gpt-4o") == tokens.TokenCount(7, True)
    assert tokens.count_text("What is the capital of France?", "gpt-3.5-turbo") == tokens.TokenCount(7, True)
    assert tokens.encoding_name_for("gpt-4o-2024-08-06") == "o200k_base"
    assert tokens.encoding_name_for("gpt-35-turbo") == "cl100k_base"


def test_anthropic_counts_are_flagged_as_estimates():
    count = tokens.count_text("What is the capital of France?", "claude-3-5-haiku-20241022",
                              own_tokenizer=integrations.endpoint("anthropic.messages.create").shape
                              .tokenizer_is_exact("anthropic"))
    assert count.tokens > 0 and count.exact is False


def test_chat_request_accounting_matches_the_vendor():
    # openai-chat-nonstream-001 (recorded): this request was billed prompt_tokens=13 without a name field.
    counted = tokens.count_request_input(
        {"messages": [{"role": "user", "content": "What is the capital of France?"}]}, "gpt-4o-2024-08-06", "openai",
        integrations.endpoint("openai.chat.completions.create").shape)
    assert counted == tokens.TokenCount(13, True)


def test_concurrent_first_use_loads_each_encoding_once(monkeypatch):
    monkeypatch.setattr(tokens, "_encodings", {})
    loads = []
    real = tokens._from_bpe_openai

    def counting(name):
        loads.append(name)
        time.sleep(0.05)
        return real(name)

    monkeypatch.setattr(tokens, "_from_bpe_openai", counting)
    threads = [threading.Thread(target=tokens.count_text, args=("hello world", "gpt-4o")) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert loads == ["o200k_base"]


def test_without_local_data_the_count_is_an_estimate(monkeypatch):
    monkeypatch.setattr(tokens, "_encodings", {})
    monkeypatch.setattr(tokens, "_from_bpe_openai", lambda name: None)
    monkeypatch.setattr(tokens, "_from_tiktoken_cache", lambda name: None)
    assert tokens.count_text("x" * 40, "gpt-4o") == tokens.TokenCount(10, False)


_GC_IN_THE_LOAD = r'''
import gc, sys
sys.path.insert(0, sys.argv[1])
import aicost, openai
from aicost import hooks, pricing, tokens
from vendor_server import ReplayServer
import aicost.pricing.engine, tiktoken.model, tiktoken_ext.openai_public
pricing.price_call  # nothing left to import during the finish (an import would take the import lock first)

finished = []
hooks.add_listener(lambda r: finished.append((r.usage.input_tokens, r.usage.estimated)))
aicost.instrument()
MSG = [{"role": "user", "content": "hi there"}]
with ReplayServer() as srv:
    client = openai.OpenAI(api_key="t", base_url=srv.openai_base_url, max_retries=0)

    class Holder:
        pass

    h = Holder(); h.self = h  # an object holding its stream, in a reference cycle: the cyclic GC finishes it
    h.stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    next(h.stream)
    del h
    real = tokens._from_bpe_openai

    def load(name):
        gc.collect()  # the collector runs in the middle of the load, as any allocation there may make it
        return real(name)

    tokens._from_bpe_openai = load
    print("count", tokens.count_text("What is the capital of France?", "gpt-4o"), flush=True)
    import time
    deadline = time.monotonic() + 20
    while not finished and time.monotonic() < deadline:  # deferred: aicost's worker finishes it after the load
        time.sleep(0.01)
    print("finished", finished, flush=True)
'''


def test_a_call_finished_by_the_gc_inside_the_tokenizer_load_does_not_deadlock():
    """A stream abandoned in a reference cycle is finished by the garbage collector wherever the thread is; in the
    middle of the first tokenizer load, its estimate re-entered the load and waited for ever on the load's lock.
    The finish is now deferred to aicost's worker (aicost._gc), which counts once the load is done; the load
    completes, and the abandoned call is recorded, estimated."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run([sys.executable, "-c", _GC_IN_THE_LOAD, str(here)], capture_output=True, text=True,
                              timeout=60, env=env)
    except subprocess.TimeoutExpired:
        raise AssertionError("deadlocked: the finish inside the GC waited for the tokenizer load it interrupted")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "count TokenCount(tokens=7, exact=True)" in done.stdout, done.stdout
    line = next(x for x in done.stdout.splitlines() if x.startswith("finished"))
    assert line == "finished [(8, True)]", line  # 'hi there' and the message overhead, estimated


def test_a_count_on_an_event_loop_never_waits_for_the_tokenizer_load(monkeypatch):
    """The first count of the process loads the tokenizer (~1-2 s). On an event loop that stalled every task of
    the application (the first async stream needing an estimate, a budget's first async reservation): the count
    is estimated at once instead, and a background thread loads the tokenizer for the counts after it."""
    import asyncio

    monkeypatch.setattr(tokens, "_encodings", {})
    monkeypatch.setattr(tokens, "_loading", set(), raising=False)
    real = tokens._from_bpe_openai
    loaded_on = []
    # The load is held until the count on the loop has returned: a count that waited for it (on the loop's
    # thread, or for the loader thread) could only return once it is released, and then with the load done. No
    # clock is read: ``release`` times out only so that such a regression fails instead of hanging.
    release, load_done = threading.Event(), threading.Event()

    def held(name):
        loaded_on.append(threading.current_thread().name)
        release.wait(timeout=30)
        try:
            return real(name)
        finally:
            load_done.set()

    monkeypatch.setattr(tokens, "_from_bpe_openai", held)
    text = "What is the capital of France?"

    async def count():
        counted = tokens.count_text(text, "gpt-4o")
        return counted, load_done.is_set()

    try:
        counted, waited_for_the_load = asyncio.run(count())
    finally:
        release.set()
    assert not waited_for_the_load, "the count on the event loop waited for the tokenizer to load"
    assert counted == tokens.TokenCount(8, False)  # 30 characters at 4 per token, flagged as an estimate
    deadline = time.monotonic() + 60  # a bound on the wait for the loader thread, not a measure
    while "o200k_base" not in tokens._encodings and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loaded_on == ["aicost-tokenizer"]
    assert asyncio.run(count())[0] == tokens.TokenCount(7, True)  # loaded: exact from then on
    assert tokens.count_text(text, "gpt-4o") == tokens.TokenCount(7, True)


def test_each_model_name_is_looked_up_in_tiktoken_once(tiktoken_lookups):
    """Every count asked tiktoken's ``encoding_name_for_model`` for the model's encoding, a Python scan of its
    prefixes (and a KeyError built and caught for a name it does not know) per count, per piece of a request:
    in the budget guard, on every guarded call. Each name is now looked up once, unknown names too, with the
    same answers."""
    models = {"gpt-4o-mini": "o200k_base", "gpt-4o-2024-08-06": "o200k_base", "gpt-3.5-turbo": "cl100k_base",
              "gpt-4-0613": "cl100k_base", "azure/gpt-35-turbo": "cl100k_base",
              "claude-3-5-haiku-20241022": "o200k_base", "acme/llama-3.1-8b": "o200k_base"}
    for _ in range(50):
        for model, encoding in models.items():
            assert tokens.encoding_name_for(model) == encoding
            assert tokens.count_text("What is the capital of France?", model).tokens == 7
    assert sorted(tiktoken_lookups) == sorted(model.split("/")[-1] for model in models)


def test_a_stream_of_distinct_model_names_keeps_only_the_latest_few(tiktoken_lookups):
    """Model names come from the application: an unbounded stream of distinct ones (a fine-tune per customer, a
    version in every name) must not grow the kept lookups without end. The most recently used are kept."""
    cap = tokens._ENCODING_NAMES_KEPT
    names = [f"ft:acme-model:customer-{i}" for i in range(4 * cap)]
    for name in names:
        assert tokens.encoding_name_for(name) == "o200k_base"
    assert tokens._encoding_name_of.cache_info().currsize == cap
    tiktoken_lookups.clear()
    tokens.encoding_name_for(names[-1])  # kept
    assert tiktoken_lookups == []
    tokens.encoding_name_for(names[0])  # dropped long ago: looked up again
    assert tiktoken_lookups == [names[0]]
