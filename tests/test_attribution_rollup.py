"""Units of work (``aicost.feature``): rollup arithmetic, nesting, streams, outcomes, and no double counting.

Calls are delivered through ``aicost.hooks`` exactly as the core delivers them (see attribution_helpers), with
hand-picked exact costs, so every expected number below is computed by hand, not by the code under test.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from decimal import Decimal

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import aicost
from aicost import metrics, semconv
from aicost.attribution import attribute, current_unit, feature, set_outcome, wrap

from attribution_helpers import SimulatedCall, call

R = semconv.AICOST_ROLLUP_PREFIX


@pytest.fixture
def spans(span_exporter):
    def finished(name_prefix: str = "aicost.feature"):
        return [s for s in span_exporter.get_finished_spans() if s.name.startswith(name_prefix)]

    return finished


@pytest.fixture
def runs_metric():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.configure(provider)

    def points() -> dict[tuple, int]:
        out: dict[tuple, int] = {}
        data = reader.get_metrics_data()
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == semconv.METRIC_FEATURE_RUNS:
                        for p in m.data.data_points:
                            out[tuple(sorted(p.attributes.items()))] = p.value
        return out

    yield points
    provider.shutdown()


def test_rollup_sums_calls_tokens_and_exact_cost(spans):
    with feature("summarize", team="docs") as unit:
        call(input_tokens=1200, output_tokens=300, cost="0.000123", cache_read_tokens=200)
        call(input_tokens=800, output_tokens=150, cost="0.1", reasoning_tokens=100)
        call(input_tokens=10, output_tokens=0, cost="0.2")
        call(input_tokens=5, output_tokens=0, cost=None)  # unknown price: counted, not costed
        call(input_tokens=0, output_tokens=0, cost="0", error_type="RateLimitError")
        assert unit.calls == 5 and unit.cost_usd == Decimal("0.300123")
    (span,) = spans()
    a = span.attributes
    assert span.name == "aicost.feature summarize"
    assert a[semconv.AICOST_FEATURE] == "summarize" and a[semconv.AICOST_TEAM] == "docs"
    assert a[R + "calls"] == 5
    assert a[R + "errors"] == 1
    assert a[R + "unknown_cost_calls"] == 1
    assert a[R + "cost.total_usd"] == "0.300123"  # exact: 0.1 + 0.2 is not 0.30000000000000004 here
    assert a[R + "cost"] == 0.300123
    assert a[R + "usage.input_tokens"] == 2015
    assert a[R + "usage.output_tokens"] == 450
    assert a[R + "usage.cache_read.input_tokens"] == 200
    assert a[R + "usage.reasoning.output_tokens"] == 100
    assert a[semconv.AICOST_OUTCOME] == "succeeded"
    # The rollup never uses the names backends sum as spend.
    assert semconv.GEN_AI_USAGE_COST not in a and semconv.AICOST_COST_TOTAL not in a


def test_calls_inside_are_attributed_to_the_feature():
    with feature("summarize", team="docs", customer="acme"):
        c = SimulatedCall()
        with attribute(user="u-1"):
            inner = SimulatedCall()
    assert c.attributes == {semconv.AICOST_FEATURE: "summarize", semconv.AICOST_TEAM: "docs",
                            semconv.AICOST_CUSTOMER: "acme"}
    assert inner.attributes[semconv.AICOST_USER] == "u-1"


def test_nested_units_outer_includes_inner_and_spans_sum_without_double_counting(spans, span_exporter):
    with feature("answer"):
        call(cost="0.01")
        with feature("retrieve"):
            call(cost="0.002")
            call(cost="0.003")
        call(cost="0.04")
    by_name = {s.name: s.attributes for s in spans()}
    assert by_name["aicost.feature retrieve"][R + "cost.total_usd"] == "0.005"
    assert by_name["aicost.feature retrieve"][semconv.AICOST_FEATURE] == "retrieve"  # inner wins
    assert by_name["aicost.feature answer"][R + "cost.total_usd"] == "0.055"
    assert by_name["aicost.feature answer"][R + "calls"] == 4
    # What a backend summing the standard cost attribute over *all* spans sees from units: nothing.
    assert all(semconv.GEN_AI_USAGE_COST not in s.attributes for s in span_exporter.get_finished_spans())
    inner = next(s for s in spans() if s.name.endswith("retrieve"))
    outer = next(s for s in spans() if s.name.endswith("answer"))
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id


def test_stream_counts_where_it_finishes_relative_to_the_unit(spans):
    with feature("streams"):
        finishes_inside = SimulatedCall()
        leaves_unfinished = SimulatedCall()
        finishes_inside.finish(cost="0.5")
    leaves_unfinished.finish(cost="7")  # finished after the unit ended: the span is already closed
    started_outside = SimulatedCall()
    with feature("late"):
        started_outside.finish(cost="9")  # started outside: belongs to no unit
    by_name = {s.name: s.attributes for s in spans()}
    assert by_name["aicost.feature streams"][R + "cost.total_usd"] == "0.5"
    assert by_name["aicost.feature streams"][R + "calls"] == 1
    assert by_name["aicost.feature late"][R + "calls"] == 0


def test_many_small_costs_sum_exactly(spans):
    with feature("bulk"):
        for _ in range(1000):
            call(cost="0.0000001")
        for _ in range(10):
            call(cost="0.1")
    (span,) = spans()
    assert span.attributes[R + "cost.total_usd"] == "1.0001"  # canonical: no trailing zeros
    assert Decimal(span.attributes[R + "cost.total_usd"]) == Decimal("1.0001")


def test_outcome_failed_on_exception_with_error_type(spans):
    with pytest.raises(RuntimeError):
        with feature("summarize"):
            call(cost="0.25")
            raise RuntimeError("model said no")
    (span,) = spans()
    assert span.attributes[semconv.AICOST_OUTCOME] == "failed"
    assert span.attributes[semconv.ERROR_TYPE] == "RuntimeError"
    assert span.attributes[R + "cost.total_usd"] == "0.25"  # the money was spent anyway


def test_outcome_label_chosen_by_the_app_wins(spans):
    with feature("summarize") as unit:
        unit.set_outcome("answer_rejected")
    with pytest.raises(ValueError):
        with feature("summarize") as unit:
            unit.set_outcome("refused")
            raise ValueError

    @feature("classify")
    def classify() -> str:
        call(cost="0.1")
        set_outcome("cache_hit")
        return "label"

    assert classify() == "label"
    outcomes = [s.attributes[semconv.AICOST_OUTCOME] for s in spans()]
    assert outcomes == ["answer_rejected", "refused", "cache_hit"]


def test_set_outcome_outside_a_unit_is_a_noop_and_current_unit_is_none():
    assert current_unit() is None
    set_outcome("whatever")


async def test_decorated_coroutine_and_concurrent_units_do_not_mix(spans):
    @feature("answer")
    async def answer(i: int) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
            call(cost=f"0.00{i % 10}", input_tokens=i)
        set_outcome("succeeded" if i % 2 == 0 else "failed")

    with attribute(team="api"):
        await asyncio.gather(*(answer(i) for i in range(200)))
    units = spans()
    assert len(units) == 200
    by_tokens = sorted(units, key=lambda s: s.attributes[R + "usage.input_tokens"])
    for i, span in enumerate(by_tokens):
        a = span.attributes
        assert a[R + "usage.input_tokens"] == 3 * i
        assert a[R + "calls"] == 3
        assert Decimal(a[R + "cost.total_usd"]) == 3 * Decimal(f"0.00{i % 10}")
        assert a[semconv.AICOST_OUTCOME] == ("succeeded" if i % 2 == 0 else "failed")
        assert a[semconv.AICOST_TEAM] == "api"


async def test_async_with_unit_across_tasks(spans):
    async def work(i: int) -> None:
        async with feature(f"job{i}") as unit:
            await asyncio.sleep(0)
            call(cost="0.5")
            await asyncio.gather(asyncio.sleep(0), asyncio.create_task(asyncio.sleep(0)))
            call(cost="0.25")
            unit.set_outcome("done")

    await asyncio.gather(*(work(i) for i in range(20)))
    by_name = {s.name: s.attributes for s in spans()}
    assert len(by_name) == 20
    for attrs in by_name.values():
        assert attrs[R + "cost.total_usd"] == "0.75" and attrs[semconv.AICOST_OUTCOME] == "done"


async def test_a_unit_entered_in_one_task_and_left_in_another_still_ends(spans, runs_metric, caplog):
    """An exit stack handed between tasks (a lifespan, a connection pool) enters the unit in one task and leaves
    it in another: the unit still ends once, with its span, its run and its rollup, and nothing stays behind."""
    import contextlib

    unit_scope = feature("handoff")
    stack = contextlib.AsyncExitStack()

    async def opener() -> None:
        with attribute(team="ops"):  # the unit inherits its team from the task that enters it
            await stack.enter_async_context(unit_scope)
            call(cost="0.25")

    async def closer() -> None:
        with attribute(team="elsewhere"):
            await stack.aclose()
            assert current_unit() is None  # the closing task never had the scope

    await asyncio.create_task(opener())
    with caplog.at_level("WARNING", logger="aicost"):
        await asyncio.create_task(closer())
    (span,) = spans()
    assert span.attributes[R + "cost.total_usd"] == "0.25" and span.attributes[semconv.AICOST_OUTCOME] == "succeeded"
    assert span.attributes[semconv.AICOST_TEAM] == "ops"  # what its body ran with, not the closing task's scope
    assert runs_metric()[((semconv.AICOST_FEATURE, "handoff"), (semconv.AICOST_OUTCOME, "succeeded"),
                          (semconv.AICOST_TEAM, "ops"))] == 1
    assert unit_scope._with_states == {}  # nothing kept for the task that entered it
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    async with unit_scope:  # the instance is usable again
        pass
    assert len(spans()) == 2


def test_generator_unit_spans_its_whole_life(spans):
    @feature("stream_answer")
    def stream_answer():
        for i in range(3):
            call(cost="0.01")
            yield i

    gen = stream_answer()
    assert next(gen) == 0
    call(cost="5")  # the consumer's own call between chunks is not the unit's
    assert list(gen) == [1, 2]
    (span,) = spans()
    assert span.attributes[R + "calls"] == 3
    assert span.attributes[R + "cost.total_usd"] == "0.03"
    assert span.attributes[semconv.AICOST_OUTCOME] == "succeeded"


def test_generator_closed_early_ends_the_unit(spans):
    @feature("stream_answer")
    def stream_answer():
        for i in range(10):
            call(cost="0.01")
            yield i

    gen = stream_answer()
    next(gen)
    next(gen)
    gen.close()
    (span,) = spans()
    assert span.attributes[R + "calls"] == 2
    assert span.attributes[semconv.AICOST_OUTCOME] == "succeeded"


async def test_async_generator_unit(spans):
    @feature("astream")
    async def produce():
        for i in range(4):
            await asyncio.sleep(0)
            call(cost="0.25")
            yield i

    assert [i async for i in produce()] == [0, 1, 2, 3]
    (span,) = spans()
    assert span.attributes[R + "cost.total_usd"] == "1"


def _plain(fn):
    """A decorator of the application's own that does not say what it wraps is async (no ``async def``)."""
    import functools

    @functools.wraps(fn)
    def passthrough(*args, **kwargs):
        return fn(*args, **kwargs)

    return passthrough


async def test_a_plain_function_returning_a_coroutine_or_generator_runs_it_inside_the_unit(spans):
    """``@feature`` over a function that is not ``async def`` but returns a coroutine (another decorator in
    between, an object with ``async def __call__``) or a generator: the body runs when that is awaited or
    iterated, and it runs inside the unit, which ends after it."""
    seen = []

    @feature("answer", team="support")
    @_plain
    async def answer():
        await asyncio.sleep(0)
        seen.append(dict(aicost.attribution.current_attributes()))
        call(cost="0.5")
        return "ok"

    class Handler:
        async def __call__(self):
            call(cost="0.25")
            return current_unit().name

    @feature("chunks")
    @_plain
    def chunks():
        call(cost="0.125")
        yield 1
        call(cost="0.125")
        yield 2

    @feature("achunks")
    @_plain
    async def achunks():
        call(cost="1")
        yield 1

    assert await answer() == "ok"
    assert await feature("handler")(Handler())() == "handler"
    gen = chunks()
    assert next(gen) == 1
    assert current_unit() is None  # between steps the consumer's own context is back
    assert list(gen) == [2]
    assert [i async for i in achunks()] == [1]
    assert seen == [{semconv.AICOST_TEAM: "support", semconv.AICOST_FEATURE: "answer"}]
    by_name = {s.name: s.attributes for s in spans()}
    assert {name: a[R + "cost.total_usd"] for name, a in by_name.items()} == {
        "aicost.feature answer": "0.5", "aicost.feature handler": "0.25", "aicost.feature chunks": "0.25",
        "aicost.feature achunks": "1"}
    assert all(a[semconv.AICOST_OUTCOME] == "succeeded" for a in by_name.values())


async def test_what_a_plain_function_returned_and_nobody_ran_ends_its_unit_as_never_started(spans, runs_metric):
    """The unit a plain function's call started (above) ends with what it returned. Returned and dropped without
    ever being awaited or iterated (a forgotten ``await``, a task cancelled before it ran, a generator nobody
    read), it ends when that is collected: once, outcome ``never_started``, ``error.type`` ``NeverStarted``, with
    the attribution the call ran with. Python's own "never awaited" warning still names the application's
    function, as it does without aicost (aicost's wrapper coroutine carries that name too)."""
    from opentelemetry.trace import StatusCode

    from aicost import _gc

    @feature("answer", team="support")
    @_plain
    async def answer():
        call(cost="0.5")

    class Handler:
        async def __call__(self):
            call(cost="0.25")

    @feature("chunks")
    @_plain
    def chunks():
        call(cost="0.125")
        yield 1

    @feature("achunks")
    @_plain
    async def achunks():
        call(cost="1")
        yield 1

    async def job():
        call(cost="2")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        answer()
        feature("handler")(Handler())()
        chunks()
        achunks()
        attribute(team="t")(_plain(job))()  # a scope with nothing to end: nothing to do
        task = asyncio.get_running_loop().create_task(feature("cancelled")(_plain(job))())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        del task
        await asyncio.sleep(0)  # the loop's handle that woke this task up held it until now
        never_awaited = []
        for _ in range(2):  # a recorded warning holds its coroutine (as its source): let go, and collect again
            gc.collect()
            never_awaited += [str(w.message) for w in caught if "never awaited" in str(w.message)]
            caught.clear()
    _gc.drain()  # the units are ended on aicost's worker thread (or here, if it has not got to them yet)

    assert current_unit() is None
    by_name = {s.name.removeprefix("aicost.feature "): s for s in spans()}
    assert sorted(by_name) == ["achunks", "answer", "cancelled", "chunks", "handler"]  # each once
    for span in by_name.values():
        a = span.attributes
        assert a[semconv.AICOST_OUTCOME] == "never_started"
        assert a[semconv.ERROR_TYPE] == "NeverStarted"
        assert span.status.status_code is StatusCode.ERROR
        assert a[R + "calls"] == 0 and a[R + "cost.total_usd"] == "0"
    assert by_name["answer"].attributes[semconv.AICOST_TEAM] == "support"
    assert {dict(k)[semconv.AICOST_FEATURE]: n for k, n in runs_metric().items()} == {
        "answer": 1, "handler": 1, "chunks": 1, "achunks": 1, "cancelled": 1}
    assert all(dict(k)[semconv.AICOST_OUTCOME] == "never_started" for k in runs_metric())
    assert sorted(never_awaited) == sorted({  # once each, as without aicost (the cancelled task's: none)
        f"coroutine '{answer.__qualname__}' was never awaited",
        f"coroutine '{Handler.__call__.__qualname__}' was never awaited",
        f"coroutine '{job.__qualname__}' was never awaited"})


def test_a_unit_nobody_started_is_ended_on_the_worker_not_where_it_was_dropped(spans):
    """The last reference to a never-awaited coroutine may go (or the cyclic collector may run) anywhere, in any
    thread, while it holds any lock: ending the unit there would take a span processor's, the ledger's or a
    listener's lock again and hang. So the finalizer only hands the ending to aicost's worker thread."""
    import time

    from aicost import _gc, hooks

    _gc.install()
    lock, heard, listener = _units_heard_beside_a_lock()

    @feature("answer")
    @_plain
    async def answer():
        pass

    hooks.add_event_listener(listener)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with lock:
                answer()  # dropped here, under the lock
        deadline = time.monotonic() + 10
        while not heard and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        hooks.remove_event_listener(listener)
    assert heard == [("answer", "never_started", True, "aicost-gc-finish")]


def _units_heard_beside_a_lock():
    """A lock the test holds where a unit is dropped, and a listener hearing each finished unit as (name, outcome,
    whether it could take that lock, its thread): a unit ended inside the finalizer, under the lock, could not."""
    import threading

    from aicost import hooks

    lock = threading.Lock()
    heard = []

    def listener(event):
        if isinstance(event, hooks.UnitFinished):
            got = lock.acquire(timeout=2)
            heard.append((event.name, event.outcome, got, threading.current_thread().name))
            if got:
                lock.release()

    return lock, heard, listener


def _run_until_suspended(coro):
    """Start ``coro`` in a context of its own, as a task would, and leave it suspended in its first ``await``."""
    import contextvars

    try:
        contextvars.copy_context().run(coro.send, None)
    except StopIteration:
        raise AssertionError("the coroutine finished: it was to be left suspended")


class _Forever:
    """An awaitable that suspends the coroutine awaiting it, and that nothing resumes."""

    def __await__(self):
        yield


def test_a_coroutine_dropped_while_suspended_did_not_succeed(spans, runs_metric, caplog):
    """A ``@feature`` coroutine started, suspended in an ``await`` and then dropped (a task nobody resumes, its loop
    gone) is closed by the garbage collector with ``GeneratorExit``, in whatever thread dropped it, perhaps under a
    lock. Its body never finished: its unit ends ``failed`` (``error.type`` ``GeneratorExit``, status ERROR, the
    calls it made before), as a cancelled one does, never ``succeeded``; on aicost's worker, not in the finalizer;
    and the finalizer logs nothing (its context is not the one the coroutine ran in: nothing there to undo)."""
    import logging
    import threading
    import time

    from opentelemetry.trace import StatusCode

    from aicost import _gc, hooks

    _gc.install()
    lock, heard, listener = _units_heard_beside_a_lock()

    @feature("answer", team="support")
    async def answer():
        call(cost="0.5")
        await _Forever()
        call(cost="9")  # never reached

    coro = answer()
    _run_until_suspended(coro)
    assert current_unit() is None  # (it ran in a context of its own)

    def drop():
        nonlocal coro
        with lock:
            coro = None  # the last reference: closed here, in this thread, under the lock

    hooks.add_event_listener(listener)
    caplog.set_level(logging.DEBUG)
    try:
        dropper = threading.Thread(target=drop, name="dropper")
        dropper.start()
        dropper.join()
        deadline = time.monotonic() + 10
        while not heard and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        hooks.remove_event_listener(listener)
    assert heard == [("answer", "failed", True, "aicost-gc-finish")]
    (span,) = spans()
    a = span.attributes
    assert a[semconv.AICOST_OUTCOME] == "failed"
    assert a[semconv.ERROR_TYPE] == "GeneratorExit"
    assert span.status.status_code is StatusCode.ERROR
    assert a[R + "calls"] == 1 and a[R + "cost.total_usd"] == "0.5"
    assert a[semconv.AICOST_TEAM] == "support"
    assert {dict(k)[semconv.AICOST_OUTCOME]: n for k, n in runs_metric().items()} == {"failed": 1}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert current_unit() is None and now_attributes() == {}


def now_attributes():
    from aicost.attribution import current_attributes

    return dict(current_attributes())


def _pending_on_a_closed_loop(make):
    """Run ``make(never)`` as a task until it waits on a future nothing will resolve, then close its loop. Returns
    the task and the future, for the caller to drop when it chooses: then nothing but the collector ends them."""
    loop = asyncio.new_event_loop()
    try:
        never = loop.create_future()
        task = loop.create_task(make(never))
        loop.run_until_complete(asyncio.sleep(0.01))
        assert not task.done()
    finally:
        loop.close()
    return task, never


def test_a_task_left_pending_on_a_loop_that_is_gone_did_not_succeed(spans):
    """The same through asyncio: a task suspended in an ``await`` nothing will resolve, its loop closed, is closed by
    the cyclic collector when it goes: ``failed``, with the calls it made before it was suspended."""
    from aicost import _gc

    @feature("pending")
    async def pending(never):
        call(cost="0.25")
        await never

    held = _pending_on_a_closed_loop(pending)
    del held
    gc.collect()
    _gc.drain()
    (span,) = spans()
    a = span.attributes
    assert (a[semconv.AICOST_OUTCOME], a[semconv.ERROR_TYPE], a[R + "cost.total_usd"]) == (
        "failed", "GeneratorExit", "0.25")


def _heard_within(heard, seconds=10):
    import time

    deadline = time.monotonic() + seconds
    while not heard and time.monotonic() < deadline:
        time.sleep(0.01)
    return heard


# asyncio's finalizer hook for the dropped async generators fails on the closed loop ("Event loop is closed"):
# Python's own unraisable error, with or without aicost.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_async_generator_left_pending_on_a_loop_that_is_gone_did_not_succeed(spans, caplog):
    """An async generator is not closed by the garbage collector: it is handed to its event loop's finalizer
    (PEP 525), which schedules ``aclose()`` on the loop. Its task left suspended in an ``await`` inside the
    generator (not at a ``yield``) on a loop that is closed, nothing ever closes it: the frame is let go unclosed.
    Its unit still ends, as a coroutine dropped so does: ``failed``, ``GeneratorExit``, with the calls made
    before, on aicost's worker (the collection runs here under a lock ending the unit would take), silently."""
    import logging

    from aicost import _gc, hooks

    _gc.install()
    lock, heard, listener = _units_heard_beside_a_lock()

    @feature("items", team="support")
    async def items(never):
        call(cost="0.25")
        yield 1
        await never  # suspended here, mid-step
        call(cost="9")  # never reached
        yield 2

    async def relay(never):
        async for _ in items(never):
            pass

    held = _pending_on_a_closed_loop(relay)
    hooks.add_event_listener(listener)
    caplog.set_level(logging.DEBUG)
    try:
        with lock:
            del held
            gc.collect()
        _heard_within(heard)
    finally:
        hooks.remove_event_listener(listener)
    assert heard == [("items", "failed", True, "aicost-gc-finish")]
    (span,) = spans()
    a = span.attributes
    assert (a[semconv.AICOST_OUTCOME], a[semconv.ERROR_TYPE], a[R + "cost.total_usd"], a[semconv.AICOST_TEAM]) == (
        "failed", "GeneratorExit", "0.25", "support")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("aicost")] == []


def test_a_generator_dropped_in_a_cycle_is_ended_on_the_worker_not_in_the_collector(spans):
    """A generator dropped in a reference cycle is closed by the cyclic collector, which runs inside whatever
    allocation crossed its threshold, in any thread, perhaps holding a lock ending the unit takes. Its consumer
    stopped reading it (``succeeded``, as when dropped otherwise), but the ending runs on aicost's worker."""
    from aicost import _gc, hooks

    _gc.install()
    lock, heard, listener = _units_heard_beside_a_lock()

    @feature("items")
    def items():
        call(cost="0.5")
        yield 1
        yield 2

    gen = items()
    assert next(gen) == 1
    cycle = [gen]
    cycle.append(cycle)
    hooks.add_event_listener(listener)
    try:
        with lock:
            del gen, cycle
            gc.collect()  # closes the generator here, under the lock
        _heard_within(heard)
    finally:
        hooks.remove_event_listener(listener)
    assert heard == [("items", "succeeded", True, "aicost-gc-finish")]
    (span,) = spans()
    assert span.attributes[R + "cost.total_usd"] == "0.5"


async def test_a_generator_its_consumer_stops_reading_ended_as_the_consumer_chose(spans):
    """A consumer that stops reading a generator between items (``break``, ``close()``, ``aclose()``, dropping it)
    is how a generator ends when no more is wanted, not a failure of its unit: ``succeeded``, and ended there and
    then, as before. The generator may say otherwise with ``set_outcome`` as it is closed."""

    @feature("sync")
    def sync_items():
        for i in range(10):
            call(cost="0.5")
            yield i

    @feature("async")
    async def async_items():
        for i in range(10):
            call(cost="0.25")
            yield i

    @feature("labelled")
    async def labelled():
        try:
            yield 1
            yield 2
        except GeneratorExit:
            set_outcome("client_left")
            raise

    for i in sync_items():
        if i == 1:
            break
    agen = async_items()
    assert await agen.__anext__() == 0
    await agen.aclose()
    agen = labelled()
    await agen.__anext__()
    await agen.aclose()
    by_name = {s.name.removeprefix("aicost.feature "): s.attributes for s in spans()}
    assert {name: (a[semconv.AICOST_OUTCOME], a[R + "cost.total_usd"]) for name, a in by_name.items()} == {
        "sync": ("succeeded", "1"), "async": ("succeeded", "0.25"), "labelled": ("client_left", "0")}
    assert all(semconv.ERROR_TYPE not in a for a in by_name.values())


def test_thread_pool_work_inside_a_unit_rolls_up_with_wrap(spans):
    from concurrent.futures import ThreadPoolExecutor

    with feature("fanout"):
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(wrap(lambda i: call(cost="0.5")), range(8)))
            pool.submit(lambda: call(cost="100")).result()  # not wrapped: no context, not in the unit
    (span,) = spans()
    assert span.attributes[R + "calls"] == 8
    assert span.attributes[R + "cost.total_usd"] == "4"


def test_runs_counter_by_outcome_gives_cost_per_success(runs_metric):
    for i in range(5):
        try:
            with feature("summarize", team="docs"):
                call(cost="0.2")
                if i == 4:
                    raise TimeoutError
        except TimeoutError:
            pass
    points = runs_metric()
    succeeded = ((semconv.AICOST_FEATURE, "summarize"), (semconv.AICOST_OUTCOME, "succeeded"),
                 (semconv.AICOST_TEAM, "docs"))
    failed = ((semconv.AICOST_FEATURE, "summarize"), (semconv.AICOST_OUTCOME, "failed"),
              (semconv.AICOST_TEAM, "docs"))
    assert points == {succeeded: 4, failed: 1}


def test_a_broken_tracer_never_breaks_the_unit(monkeypatch, caplog):
    import aicost.attribution as attribution

    def broken():
        raise RuntimeError("tracer exploded")

    monkeypatch.setattr(attribution, "_tracer", broken)
    with feature("resilient") as unit:
        c = SimulatedCall()
        call(cost="0.2")
    assert c.attributes[semconv.AICOST_FEATURE] == "resilient"
    assert unit.calls == 1 and unit.cost_usd == Decimal("0.2")  # no span, but the unit still rolls up
    assert aicost.attribution.current_attributes() == {}


@pytest.mark.parametrize("where", ["on_start", "on_end"])
def test_a_broken_span_processor_loses_no_unit(where, monkeypatch, runs_metric):
    """The OpenTelemetry SDK does not guard span processors: what one raises comes out of start_span / end()."""
    import aicost.attribution as attribution
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    class Broken(SpanProcessor):
        def on_start(self, span, parent_context=None):
            if where == "on_start":
                raise RuntimeError("processor broke")

        def on_end(self, span):
            if where == "on_end":
                raise RuntimeError("processor broke")

    provider = TracerProvider()
    provider.add_span_processor(Broken())
    monkeypatch.setattr(attribution, "_tracer", lambda: provider.get_tracer("aicost"))
    with feature("resilient", team="docs") as unit:
        call(cost="0.2")
        call(cost="0.05")
    assert unit.calls == 2 and unit.cost_usd == Decimal("0.25")
    assert runs_metric() == {((semconv.AICOST_FEATURE, "resilient"), (semconv.AICOST_OUTCOME, "succeeded"),
                              (semconv.AICOST_TEAM, "docs")): 1}


# ------------------------------------------------------------------------------------------------ properties
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

# A tree of units: each node is a list of items; an item is a call cost (micro-dollar-ish Decimal) or a subtree.
_costs = st.decimals(min_value=Decimal("0"), max_value=Decimal("5"), places=9, allow_nan=False, allow_infinity=False)
_trees = st.recursive(st.lists(_costs, max_size=4), lambda kids: st.lists(st.one_of(_costs, kids), max_size=4),
                      max_leaves=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=_trees)
def test_every_unit_rolls_up_exactly_its_subtree(tree, span_exporter):
    span_exporter.clear()
    expected: dict[str, Decimal] = {}
    calls: dict[str, int] = {}
    counter = iter(range(10_000))

    def run(node: list) -> tuple[Decimal, int]:
        name = f"u{next(counter)}"
        total, n = Decimal(0), 0
        with feature(name):
            for item in node:
                if isinstance(item, list):
                    sub, k = run(item)
                    total, n = total + sub, n + k
                else:
                    call(cost=item)
                    total, n = total + item, n + 1
        expected[name], calls[name] = total, n
        return total, n

    grand_total, _ = run(tree)
    spans = {s.name.split(" ", 1)[1]: s.attributes for s in span_exporter.get_finished_spans()
             if s.name.startswith("aicost.feature")}
    assert set(spans) == set(expected)
    for name, attrs in spans.items():
        assert Decimal(attrs[R + "cost.total_usd"]) == expected[name]
        assert attrs[R + "calls"] == calls[name]
    # The outermost unit's rollup is the whole spend (summing every unit's rollup would count nested calls again).
    assert Decimal(spans["u0"][R + "cost.total_usd"]) == grand_total


def test_collect_calls_left_in_another_context_stops_collecting_there_only():
    """``collect_calls`` exited in a context it was not entered in (a generator finalised elsewhere) cannot reset
    its token there: it takes its own collector out of that context's and leaves the others collecting."""
    import contextvars

    from aicost import hooks

    with aicost.collect_calls() as outer:
        inner_scope = aicost.collect_calls()
        inner = inner_scope.__enter__()
        inner_scope.__exit__(None, None, None)  # left here as usual
        assert hooks.active_collectors() == (outer,)
        inner_scope.__enter__()
        elsewhere = contextvars.copy_context()
        assert elsewhere.run(hooks.active_collectors) == (outer, inner)
        elsewhere.run(inner_scope.__exit__, None, None, None)  # left in a copy: its token cannot reset there
        assert elsewhere.run(hooks.active_collectors) == (outer,)
        assert hooks.active_collectors() == (outer, inner)  # here, where it was entered, it still collects
        call(cost="1")
    assert (outer.calls, inner.calls) == (1, 1)
