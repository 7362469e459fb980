"""aicost.metrics through the OpenTelemetry SDK: instruments, labels, cardinality policy and exact cost."""

from __future__ import annotations

import gc
import os
import time
import weakref
from decimal import Decimal

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from aicost import hooks, metrics, semconv
from aicost.attribution import attribute
from aicost.usage import Usage
from aicost.vendor import DEFAULT_SHAPE

from attribution_helpers import SimulatedCall
from fork_helpers import run_forked


@pytest.fixture
def reader():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.configure(provider)
    yield reader
    provider.shutdown()


def collect(reader: InMemoryMetricReader) -> dict[str, list]:
    out: dict[str, list] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).extend(m.data.data_points)
    return out


def record(team: str | None = None, feature: str | None = None, user: str | None = None, customer: str | None = None,
           model: str = "gpt-4o-mini", provider: str = "openai", **finish: object):
    scope = {k: v for k, v in dict(team=team, feature=feature, user=user, customer=customer).items() if v}
    with attribute(**scope):
        c = SimulatedCall(provider=provider, model=model)
    result = c.finish(**finish)  # type: ignore[arg-type]
    metrics.record_call(result, c.attributes)
    return result


def test_token_histogram_has_token_types_and_convention_buckets(reader):
    record(team="search", input_tokens=1000, output_tokens=20)
    points = collect(reader)[semconv.METRIC_TOKEN_USAGE]
    by_type = {p.attributes[semconv.GEN_AI_TOKEN_TYPE]: p for p in points}
    assert by_type["input"].sum == 1000 and by_type["output"].sum == 20
    assert list(by_type["input"].explicit_bounds) == [float(b) for b in semconv.TOKEN_USAGE_BUCKETS]
    a = by_type["input"].attributes
    assert a[semconv.GEN_AI_PROVIDER_NAME] == "openai"
    assert a[semconv.GEN_AI_OPERATION_NAME] == "chat"
    assert a[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert a[semconv.AICOST_TEAM] == "search"


def test_duration_histogram_buckets_and_error_type(reader):
    record(duration_s=0.5)
    record(duration_s=2.0, error_type="RateLimitError", cost=None)
    points = collect(reader)[semconv.METRIC_OPERATION_DURATION]
    assert list(points[0].explicit_bounds) == list(semconv.DURATION_BUCKETS)
    errors = [p for p in points if p.attributes.get(semconv.ERROR_TYPE) == "RateLimitError"]
    assert len(errors) == 1 and errors[0].sum == 2.0


def test_cost_counter_labels_and_no_high_cardinality_by_default(reader):
    record(team="search", feature="answer", user="u-1", customer="acme", cost="0.25")
    record(team="search", feature="answer", user="u-2", customer="globex", cost="0.5")
    (point,) = collect(reader)[semconv.METRIC_COST]
    assert point.value == 0.75  # both users in ONE series
    assert dict(point.attributes) == {
        semconv.GEN_AI_PROVIDER_NAME: "openai",
        semconv.GEN_AI_OPERATION_NAME: "chat",
        semconv.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        semconv.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini",
        semconv.AICOST_TEAM: "search",
        semconv.AICOST_FEATURE: "answer",
    }
    for points in collect(reader).values():
        for p in points:
            assert semconv.AICOST_USER not in p.attributes and semconv.AICOST_CUSTOMER not in p.attributes


@pytest.fixture
def default_policy():
    yield
    metrics.configure(None, high_cardinality_labels=False)


def test_high_cardinality_labels_are_opt_in_and_survive_instrument_reconfiguring(default_policy):
    provider_reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[provider_reader])
    metrics.configure(provider, high_cardinality_labels={"customer"})
    metrics.configure(provider)  # what aicost.instrument(meter_provider=...) does: keeps the opt-in
    try:
        record(team="search", user="u-1", customer="acme", cost="1")
        (point,) = collect(provider_reader)[semconv.METRIC_COST]
        assert point.attributes[semconv.AICOST_CUSTOMER] == "acme"
        assert semconv.AICOST_USER not in point.attributes
    finally:
        provider.shutdown()


def test_reconfiguring_back_to_a_provider_keeps_its_instruments_and_totals():
    reader_a, reader_b = InMemoryMetricReader(), InMemoryMetricReader()
    a, b = MeterProvider(metric_readers=[reader_a]), MeterProvider(metric_readers=[reader_b])
    try:
        metrics.configure(a)
        record(team="t", cost="0.5")
        metrics.configure(b)
        record(team="t", cost="2")
        metrics.configure(a)
        record(team="t", cost="0.25")
        assert [p.value for p in collect(reader_a)[semconv.METRIC_COST]] == [0.75]
        assert [p.value for p in collect(reader_b)[semconv.METRIC_COST]] == [2.0]
    finally:
        a.shutdown()
        b.shutdown()


def test_configure_rejects_bad_input():
    with pytest.raises(ValueError, match="email"):
        metrics.configure(None, high_cardinality_labels={"email"})
    with pytest.raises(TypeError, match="high_cardinality_labels"):
        metrics.configure(None, high_cardinality_labels="customer")


@pytest.mark.parametrize("kwargs, named", [
    ({"meter_provider": "not a provider"}, "meter_provider"),
    ({"high_cardinality_labels": 1}, "high_cardinality_labels"),
    ({"high_cardinality_labels": {"email", 5}}, "high_cardinality_labels"),
])
def test_configure_refuses_bad_arguments_by_name_and_changes_nothing(reader, kwargs, named):
    """A configure-time error names the argument and what it accepts (the product brief), and leaves the metrics
    as they were: a provider without ``get_meter()`` failed inside the OpenTelemetry API with an AttributeError,
    and a label set that is not a set of names with a TypeError about iteration or ordering."""
    from aicost.errors import ConfigurationError

    before = metrics._instruments()
    with pytest.raises(ConfigurationError, match=named):
        metrics.configure(**{"meter_provider": None, **kwargs})
    assert metrics._instruments() is before


def test_cost_counter_is_exact_where_a_float_counter_drifts(reader):
    # 0.1 ten times: a float counter reports 0.9999999999999999; the exact running total reports 1.0.
    float_sum = 0.0
    for _ in range(10):
        record(team="t", cost="0.1")
        float_sum += 0.1
    assert float_sum != 1.0
    (point,) = collect(reader)[semconv.METRIC_COST]
    assert point.value == 1.0
    # A million-call-like spread of tiny prices stays exact too.
    for _ in range(3000):
        record(team="u", cost="0.0000003")
    (point,) = [p for p in collect(reader)[semconv.METRIC_COST] if p.attributes[semconv.AICOST_TEAM] == "u"]
    assert Decimal(repr(point.value)) == Decimal("0.0009")


def test_unknown_price_records_tokens_but_no_cost(reader):
    record(team="t", cost=None, input_tokens=7, output_tokens=3)
    data = collect(reader)
    assert semconv.METRIC_COST not in data or data[semconv.METRIC_COST] == []
    assert sum(p.sum for p in data[semconv.METRIC_TOKEN_USAGE]) == 10


def test_record_call_never_raises_and_logs_once(reader, caplog, monkeypatch):
    import aicost._log

    monkeypatch.setattr(aicost._log, "_seen", set())
    metrics.record_call(object(), {})  # type: ignore[arg-type]
    metrics.record_call(object(), {})  # type: ignore[arg-type]
    metrics.flush()  # points are recorded off the call path: a bad one surfaces when the queue is drained
    assert caplog.text.count("could not record call metrics") == 1


def test_nano_usd_counter_is_an_integer_and_carries_sub_nano_remainders(reader):
    record(team="t", cost="0.00000255")  # 2550 nano-USD
    record(team="t", cost="0.0000000004")  # 0.4 nano: not yet a whole nano-dollar
    nano = {p.attributes[semconv.AICOST_TEAM]: p.value for p in collect(reader)[semconv.METRIC_COST_NANO_USD]}
    assert nano == {"t": 2550} and isinstance(nano["t"], int)
    record(team="t", cost="0.0000000007")  # 0.4 + 0.7 = 1.1 nano: one whole nano-dollar more
    nano = {p.attributes[semconv.AICOST_TEAM]: p.value for p in collect(reader)[semconv.METRIC_COST_NANO_USD]}
    assert nano == {"t": 2551}
    (usd,) = collect(reader)[semconv.METRIC_COST]
    assert Decimal(repr(usd.value)) == Decimal("0.0000025511")


def test_nano_usd_counter_is_truncated_whatever_the_collecting_threads_decimal_context(reader):
    """The reader collects on its own thread (a copy of decimal.DefaultContext, which a host may change) or on the
    app's: the nano-USD point is the total truncated all the same. At 4 digits $1.234567891 was 1,235,000,000
    nano-USD, rounded up past what was spent."""
    import decimal

    record(team="t", cost="1.234567891")
    with decimal.localcontext(decimal.Context(prec=4)):
        nano = {p.attributes[semconv.AICOST_TEAM]: p.value for p in collect(reader)[semconv.METRIC_COST_NANO_USD]}
    assert nano == {"t": 1_234_567_891}


def test_cost_series_are_capped_and_the_overflow_keeps_every_cent(reader):
    """A gateway passes its users' model names through ("GPT-4o-mini", "gpt-4o-mini   ", ...: each priced, each a
    label): the exact totals kept in memory stop growing at MAX_COST_SERIES, and the money of later label sets is
    in one overflow series, so the counters still sum to the total and the SDK never folds series itself."""
    cap = metrics.MAX_COST_SERIES
    n = cap + 500
    for i in range(n):
        record(model="gpt-4o-mini" + " " * i, cost="0.001")
    points = collect(reader)
    assert len(metrics._state._cost_totals) == cap
    nano = points[semconv.METRIC_COST_NANO_USD]
    assert len(nano) == cap and sum(p.value for p in nano) == n * 1_000_000
    (overflow,) = [p for p in nano if p.attributes.get("otel.metric.overflow")]
    assert dict(overflow.attributes) == {"otel.metric.overflow": True}
    assert overflow.value == (n - cap + 1) * 1_000_000
    record(model="gpt-4o-mini", cost="0.002")  # a series that exists goes on counting on its own
    by_model = {p.attributes.get(semconv.GEN_AI_REQUEST_MODEL): p.value
                for p in collect(reader)[semconv.METRIC_COST_NANO_USD]}
    assert by_model["gpt-4o-mini"] == 3_000_000


def _teams(reader: InMemoryMetricReader) -> dict[str, dict[str, float]]:
    """metric name -> team -> the point's value (cost counters) or sum (histograms)."""
    out: dict[str, dict[str, float]] = {}
    for name, points in collect(reader).items():
        for p in points:
            team = p.attributes.get(semconv.AICOST_TEAM)
            value = p.value if hasattr(p, "value") else p.sum
            series = out.setdefault(name, {})
            series[team] = series.get(team, 0) + value
    return out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # 3.12+: fork() of a multi-threaded process
def test_forked_child_records_its_own_calls_and_not_the_parents_pending_ones(reader):
    """After a fork the child records its calls with a worker of its own; the points still queued in the parent
    at the fork (its worker was mid-drain: the drain lock held) stay the parent's, recorded once, by the parent."""
    lock = metrics._drain_lock  # held across the fork, as by a parent worker recording a batch
    with lock:
        record(team="parent", cost="0.5", input_tokens=100, output_tokens=1)  # queued, not yet recorded
        assert len(metrics._pending) >= 1

        def child(send):
            record(team="child", cost="0.25", input_tokens=7, output_tokens=3)
            deadline = time.monotonic() + 5
            while metrics._pending and time.monotonic() < deadline:  # no flush() here: the worker must drain it
                time.sleep(0.01)
            worker = metrics._worker
            send({"worker_alive": worker is not None and worker.is_alive(), "pending": len(metrics._pending)})
            send({"teams": _teams(reader)})  # a collection: flushes whatever is still queued, then reads

        messages = run_forked(child)

    worker_state, seen = messages[0], messages[1]["teams"]
    assert worker_state == {"worker_alive": True, "pending": 0}  # the child's own worker recorded its call
    assert seen[semconv.METRIC_COST] == {"child": 0.25}  # the parent's queued call is not recorded again
    assert seen[semconv.METRIC_TOKEN_USAGE] == {"child": 10}
    in_parent = _teams(reader)
    assert in_parent[semconv.METRIC_COST] == {"parent": 0.5}  # ...it is the parent's, recorded once there
    assert in_parent[semconv.METRIC_TOKEN_USAGE] == {"parent": 101}


def test_a_queued_point_keeps_neither_the_span_nor_the_prompt_alive(reader):
    """Points wait for the worker; what waits must not hold the call's span or request kwargs (the prompt):
    objects kept alive for a drain period are promoted to older GC generations and make full collections
    frequent, and the prompt would stay in memory longer than the call."""
    class Held:
        pass

    with metrics._drain_lock:  # a running worker waits: the point stays queued while the references are checked
        prompt, span = Held(), Held()
        info = hooks.CallInfo(provider="openai", operation="chat", endpoint="openai.chat.completions.create",
                              request_model="gpt-4o-mini", kwargs={"messages": prompt}, stream=False, is_async=False,
                              shape=DEFAULT_SHAPE)
        result = hooks.CallResult(info=info, usage=Usage(input_tokens=5, output_tokens=2), cost=None,
                                  response_model="gpt-4o-mini", error_type=None, duration_s=0.25, span=span)
        metrics.record_call(result, {semconv.AICOST_TEAM: "t"}, server=("api.openai.com", 443))
        refs = [weakref.ref(prompt), weakref.ref(span)]
        del prompt, span, info, result
        gc.collect()
        assert [r() for r in refs] == [None, None]
        assert len(metrics._pending) == 1
    points = collect(reader)[semconv.METRIC_TOKEN_USAGE]  # the collection drains the queue first
    assert sorted(p.sum for p in points) == [2, 5]
    assert {p.attributes[semconv.SERVER_ADDRESS] for p in points} == {"api.openai.com"}
    assert {p.attributes[semconv.SERVER_PORT] for p in points} == {443}
    assert {p.attributes[semconv.AICOST_TEAM] for p in points} == {"t"}


def test_the_worker_lets_application_threads_run_while_it_drains_a_backlog(reader, monkeypatch):
    """The worker records points holding the GIL. Drained in one go, a backlog would keep a thread that wants the
    GIL (an application streaming chunks) waiting until the whole backlog is recorded, or for the interpreter's
    switch interval. It drains in slices instead, each followed by a real sleep, which lets go of the GIL: an
    application thread waits for one slice at most.

    Checked by what the worker does (how many points it records between two sleeps), not by how long an
    application thread waited: on a loaded machine that says more about the machine than about the worker."""
    import threading
    import types

    runs = [0]  # points the worker recorded since its last sleep, one entry per stretch between sleeps
    record_now, sleep = metrics._record_now, time.sleep

    def counting_record_now(state, point):
        if threading.current_thread().name == "aicost-metrics":
            runs[-1] += 1
        record_now(state, point)

    def counting_sleep(seconds):
        assert threading.current_thread().name == "aicost-metrics"
        runs.append(0)
        sleep(seconds)  # the real sleep: the GIL is free meanwhile

    info = hooks.CallInfo(provider="openai", operation="chat", endpoint="openai.chat.completions.create",
                          request_model="gpt-4o-mini", kwargs={}, stream=False, is_async=False, shape=DEFAULT_SHAPE)
    result = hooks.CallResult(info=info, usage=Usage(input_tokens=5, output_tokens=2), cost=None,
                              response_model="gpt-4o-mini", error_type=None, duration_s=0.25)
    metrics.record_call(result, {})  # the worker is running
    metrics.flush()
    monkeypatch.setattr(metrics, "_record_now", counting_record_now)
    monkeypatch.setattr(metrics, "time", types.SimpleNamespace(sleep=counting_sleep))
    backlog = 3000
    with metrics._drain_lock:  # the worker waits while the backlog builds up
        for _ in range(backlog):
            metrics.record_call(result, {}, server=("api.openai.com", 443))
        metrics._wake.set()
    deadline = time.monotonic() + 120  # not a timing bound: only how long to wait for a worker that never drains
    while metrics._pending and time.monotonic() < deadline:
        sleep(0.01)
    assert not metrics._pending, "the worker did not drain the backlog"
    assert sum(runs) == backlog  # the worker recorded the whole backlog...
    assert max(runs) <= metrics._SLICE, max(runs)  # ...never more than a slice without letting go of the GIL
    points = [p for p in collect(reader)[semconv.METRIC_TOKEN_USAGE] if p.attributes.get(semconv.SERVER_ADDRESS)]
    assert sum(p.count for p in points) == 2 * backlog
