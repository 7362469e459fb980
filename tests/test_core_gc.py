"""Calls the garbage collector reaches are finished outside the collection (aicost._gc).

A stream the application dropped in a reference cycle is finished by the cyclic collector wherever the thread
is: perhaps holding a plain lock the finish needs. Each test runs a script in a fresh process with a timeout,
because the failure is a hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent

_PRELUDE = r'''
import gc, os, sys, time
sys.path.insert(0, sys.argv[1])
import aicost, openai
from aicost import budget, hooks, pricing, tokens
from vendor_server import ReplayServer
import aicost.pricing.engine, tiktoken.model, tiktoken_ext.openai_public
pricing.price_call
tokens.count_text("load the tokenizer now", "gpt-4o")
MSG = [{"role": "user", "content": "hi there"}]


class Holder:
    pass


def abandon_a_stream(client):
    """A stream read once, then dropped in a reference cycle: only the cyclic collector finishes it."""
    h = Holder()
    h.self = h
    with aicost.attribute(team="t"):
        h.stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
        next(h.stream)
'''

_UNDER_THE_STORE_LOCK = _PRELUDE + r'''
finished = []
hooks.add_listener(lambda r: finished.append((r.usage.input_tokens, r.usage.estimated)))
aicost.instrument()
aicost.configure_budgets(budgets=[aicost.Budget(limit_usd="100", window="day", scope="team")])
store = budget.process_memory_store()
with ReplayServer() as srv:
    client = openai.OpenAI(api_key="t", base_url=srv.openai_base_url, max_retries=0)
    abandon_a_stream(client)
    held = budget.budget_status({"aicost.team": "t"})[0].reserved_usd
    with store._lock:  # as any allocation in the store's critical section may make the collector run there
        gc.collect()
        print("collected", finished, flush=True)
    deadline = time.monotonic() + 20
    while not finished and time.monotonic() < deadline:
        time.sleep(0.01)
    print("finished", finished, flush=True)
    print("held", held > 0, budget.budget_status({"aicost.team": "t"})[0].reserved_usd, flush=True)
'''


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run([sys.executable, "-c", script, str(HERE), *args], capture_output=True, text=True,
                              timeout=60, env=env)
    except subprocess.TimeoutExpired:
        raise AssertionError("deadlocked: a call finished inside the collector waited on a lock its thread held") from None
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _line(done: subprocess.CompletedProcess, word: str) -> str:
    return next(x for x in done.stdout.splitlines() if x.startswith(word + " "))


def test_a_stream_collected_under_the_budget_store_lock_is_finished_after_it_not_inside():
    """The finish settles the call's budget hold in the memory store: run inside a collection that interrupted
    the store's own critical section, it waited for ever on the lock its thread held. It is deferred instead, and
    aicost's worker finishes the call (estimated) and releases the hold once the lock is free."""
    done = _run(_UNDER_THE_STORE_LOCK)
    assert _line(done, "collected") == "collected []"  # not inside the collection
    assert _line(done, "finished") == "finished [(8, True)]"
    assert _line(done, "held") == "held True 0"  # reserved before, released by the deferred finish


_IN_A_FORKED_CHILD = _PRELUDE + r'''
import atexit
from aicost.ledger import open_store
url = "sqlite:///" + sys.argv[2]
aicost.instrument(ledger=url)
aicost.configure_budgets(budgets=[aicost.Budget(limit_usd="100", window="day", scope="team")])
with ReplayServer() as srv:
    client = openai.OpenAI(api_key="t", base_url=srv.openai_base_url, max_retries=0)
    pid = os.fork()
    if pid == 0:  # the child: no worker thread; what it defers is finished at its exit, before the ledger flush
        abandon_a_stream(client)
        with budget.process_memory_store()._lock:
            gc.collect()
        atexit._run_exitfuncs()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("child", status, flush=True)
aicost.uninstrument()
with open_store(url, create=False) as store:
    from datetime import datetime, timedelta, timezone
    now = datetime.now(timezone.utc)
    rows = list(store.rows(now - timedelta(days=1), now + timedelta(days=1)))
print("rows", [(r.kind, r.team, r.input_tokens, r.estimated) for r in rows], flush=True)
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")
def test_a_forked_child_finishes_what_it_deferred_at_exit_and_its_ledger_keeps_the_row(tmp_path):
    """A forked child has no worker thread: a call it deferred is finished at its exit, before the ledger's exit
    flush writes the row."""
    done = _run(_IN_A_FORKED_CHILD, str(tmp_path / "ledger.db"))
    assert _line(done, "child") == "child 0"
    assert _line(done, "rows") == "rows [('call', 't', 8, True)]"


_EXIT_WHILE_THE_WORKER_FINISHES = _PRELUDE + r'''
from aicost.ledger import open_store
url = "sqlite:///" + sys.argv[2]
if sys.argv[3] == "run":
    # a finish that takes a moment on the worker (a first tokenizer load, a listener's HTTP sink): here a listener
    # registered before the ledger's, so the ledger hears of the call only after it
    import threading
    finishing = threading.Event()
    hooks.add_listener(lambda r: (finishing.set(), time.sleep(0.5)))
    aicost.instrument(ledger=url)
    with ReplayServer() as srv:
        client = openai.OpenAI(api_key="t", base_url=srv.openai_base_url, max_retries=0)
        abandon_a_stream(client)
        gc.collect()
        finishing.wait(30)  # the worker is in the finish: the exit comes while it runs
    sys.exit(0)
with open_store(url, create=False) as store:
    from datetime import datetime, timedelta, timezone
    now = datetime.now(timezone.utc)
    rows = list(store.rows(now - timedelta(days=1), now + timedelta(days=1)))
print("rows", [(r.kind, r.team, r.input_tokens, r.estimated) for r in rows], flush=True)
'''


def test_a_finish_the_worker_is_running_at_exit_is_waited_for_before_the_ledger_closes(tmp_path):
    """The exit's drain ran what was still queued, but not the finish the worker had already taken: the ledger
    closed under it and the call was never recorded, without a word. The exit waits for it (bounded)."""
    db = str(tmp_path / "ledger.db")
    _run(_EXIT_WHILE_THE_WORKER_FINISHES, db, "run")
    assert _line(_run(_EXIT_WHILE_THE_WORKER_FINISHES, db, "read"), "rows") == "rows [('call', 't', 8, True)]"


_IN_FLIGHT_ACROSS_UNINSTRUMENT = _PRELUDE + r'''
finished = []
hooks.add_listener(lambda r: finished.append((r.usage.input_tokens, r.usage.estimated)))
aicost.instrument()
aicost.configure_budgets(budgets=[aicost.Budget(limit_usd="100", window="day", scope="team")])
store = budget.process_memory_store()
with ReplayServer() as srv:
    client = openai.OpenAI(api_key="t", base_url=srv.openai_base_url, max_retries=0)
    abandon_a_stream(client)
    aicost.uninstrument()  # the stream is in flight: it finishes as before, so outside the collection too
    with store._lock:
        gc.collect()
        print("collected", finished, flush=True)
    deadline = time.monotonic() + 20
    while not finished and time.monotonic() < deadline:
        time.sleep(0.01)
    print("finished", finished, flush=True)
'''


def test_a_stream_in_flight_across_uninstrument_is_still_finished_outside_the_collection():
    """uninstrument() stopped watching collections: a stream it left in flight, dropped in a cycle and reached by
    a collection under the budget store's lock, was finished inside it and hung the app, as before aicost._gc."""
    done = _run(_IN_FLIGHT_ACROSS_UNINSTRUMENT)
    assert _line(done, "collected") == "collected []"
    assert _line(done, "finished") == "finished [(8, True)]"


def test_a_finish_that_outlasts_the_wait_is_waited_for_once_not_at_every_drain(monkeypatch):
    """The exit drains twice (its own handler, then the ledger's flush): a finish stuck on the worker past the
    first wait must not hold the exit a second time, so the second drain does not wait for it again."""
    import threading

    from aicost import _gc

    _gc.install()
    monkeypatch.setattr(_gc, "_stuck", None)  # restored after: later drains in this process wait as usual
    release, taken, finished = threading.Event(), threading.Event(), threading.Event()
    # the worker takes it and is stuck in it (until released, or 10 s: a drain that waits for it returns only then)
    _gc.defer(lambda: (taken.set(), release.wait(10), finished.set()))
    assert taken.wait(30)
    try:
        _gc.drain(0.3)  # waits, and gives up on it
        assert not finished.is_set()
        _gc.drain(30)  # would wait until the job ends, were it waited for again
        assert not finished.is_set(), "the second drain waited again for the finish stuck on the worker"
    finally:
        release.set()


def test_collections_are_watched_only_while_a_call_could_be_finished_by_one(instrumented, replay_server,
                                                                            openai_client):
    """The hook costs every collection a Python call: it is in gc.callbacks only while a stream is unfinished, not
    for calls that are not streams."""
    import gc

    from aicost import _gc
    from vendor_server import openai_chat_stream_reply

    def hooked() -> bool:
        return _gc._on_collection in gc.callbacks

    openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert not hooked()
    replay_server.enqueue(openai_chat_stream_reply(5))
    stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                                   stream=True)
    next(iter(stream))
    assert hooked()
    stream.close()
    assert not hooked()


def test_a_collection_whose_hook_was_taken_out_under_it_is_not_thought_still_under_way(monkeypatch):
    """Another thread's unwatch() (the worker finishing a deferred call) can land while a collection on this
    thread is calling the hook for "start", before it stores the thread's id: the hook, taken out, is then never
    called for "stop". The id stayed, so every later call finished on this thread was handed to the worker as if
    inside a collection: its span ended a moment after the call returned (a replay test then saw no cost span)."""
    import gc
    import threading

    from aicost import _gc

    _gc.install()
    landed = []

    def ident_after_an_unwatch_lands() -> int:  # the switch to the other thread, inside the hook's "start" call
        if not landed:
            landed.append(True)
            _gc.unwatch()
        return threading.get_ident()

    monkeypatch.setattr(_gc, "_get_ident", ident_after_an_unwatch_lands)
    _gc.watch()
    gc.collect()
    assert landed and _gc._on_collection not in gc.callbacks
    assert not _gc.collecting(), "a collection that has ended is still thought under way on this thread"
    _gc.watch()  # hooked again: still not under way, until a collection starts
    try:
        assert not _gc.collecting()
        seen = []
        gc.callbacks.append(lambda phase, info: seen.append((phase, _gc.collecting())))
        try:
            gc.collect()
        finally:
            gc.callbacks.pop()
        assert seen == [("start", True), ("stop", False)]
    finally:
        _gc.unwatch()
