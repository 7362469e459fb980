"""A forked child reports, enforces and waits for its own calls only, never the parent's.

``os.fork()`` (a pre-forking server, ``multiprocessing`` with the fork start method) copies the parent's memory:
its cost totals, budget spend and holds, journalled settlements, upstream-value counts and calls in flight. Each
test runs a real forked child of the test process and compares what it sees with what the parent still has.
"""

from __future__ import annotations

import os
import threading
from decimal import Decimal

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import aicost
from aicost import metrics, semconv
from aicost.attribution import attributes_from_headers, configure_propagation, current_attributes, upstream_stats
from aicost.budget import Budget, BudgetGuard

from attribution_helpers import call
from budget_helpers import Clock, FlakyStore, chat_info, price_lookup, result
from fork_helpers import run_forked

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),  # 3.12+: fork() of a multi-threaded process
]


def _cost_series(reader: InMemoryMetricReader) -> dict[str, dict[str, float]]:
    """aicost.cost and aicost.cost.nano_usd as the reader collects them: metric -> team -> value."""
    out: dict[str, dict[str, float]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name in (semconv.METRIC_COST, semconv.METRIC_COST_NANO_USD):
                    for p in m.data.data_points:
                        out.setdefault(m.name, {})[p.attributes.get(semconv.AICOST_TEAM)] = p.value
    return out


def test_a_forked_child_exports_its_own_spend_and_not_the_parents_totals():
    """Each process exports its cost counters (the child under its own process.pid): had the child kept the
    parent's running totals, a backend summing the processes would count the parent's spend once per child."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.configure(provider)
    try:
        metrics.record_call(call(cost="0.5"), {semconv.AICOST_TEAM: "parent"})
        metrics.record_call(call(cost="0.125"), {semconv.AICOST_TEAM: "both"})
        metrics.flush()

        def child(send):
            metrics.record_call(call(cost="0.25"), {semconv.AICOST_TEAM: "child"})
            metrics.record_call(call(cost="0.0625"), {semconv.AICOST_TEAM: "both"})
            send(_cost_series(reader))  # a collection, through the reader the child inherited

        [in_child] = run_forked(child)
        assert in_child == {semconv.METRIC_COST: {"child": 0.25, "both": 0.0625},
                            semconv.METRIC_COST_NANO_USD: {"child": 250_000_000, "both": 62_500_000}}
        assert _cost_series(reader) == {semconv.METRIC_COST: {"parent": 0.5, "both": 0.125},
                                        semconv.METRIC_COST_NANO_USD: {"parent": 500_000_000, "both": 125_000_000}}
    finally:
        provider.shutdown()
        metrics.configure()


def test_a_forked_child_starts_without_the_parents_budget_spend_holds_or_journal():
    """Memory-store budgets are per process: the child's status is its own spend, a call the parent had in flight
    at the fork holds nothing in the child (it would block the child for a whole lease), and settlements the
    parent journalled during an outage are applied by the parent alone (by both, a shared store counts them twice)."""
    clock = Clock(1_795_000_000.0)
    g = BudgetGuard([Budget(limit_usd="0.0025", name="day")], [], price_lookup=price_lookup, clock=clock)
    info = chat_info()
    g.before_call(info).after_call(result(info, Decimal("0.001")))
    in_flight_info = chat_info()
    in_flight = g.before_call(in_flight_info)  # $0.001 held by a call still running at the fork
    store = FlakyStore()
    journalled = BudgetGuard([Budget(limit_usd="1", name="outage")], [], price_lookup=price_lookup, clock=clock,
                             store=store)
    store.down = True
    info = chat_info()
    journalled.before_call(info).after_call(result(info, Decimal("0.0004")))  # fail-open: journalled
    assert journalled.journal_stats()["pending"] == 1

    def child(send):
        [status] = g.status()
        send({"spent": str(status.spent_usd), "reserved": str(status.reserved_usd),
              "journal": journalled.journal_stats()})
        tickets = [g.before_call(chat_info()) for _ in range(2)]  # $0.002 fits the child's own $0.0025
        send({"admitted": sum(t is not None for t in tickets)})

    first, second = run_forked(child)
    assert first == {"spent": "0", "reserved": "0",
                     "journal": {"pending": 0, "applied": 0, "dropped": 0, "dropped_nanos": 0}}
    assert second == {"admitted": 2}
    [status] = g.status()  # the parent keeps its spend and its hold, and settles its call
    assert (status.spent_usd, status.reserved_usd) == (Decimal("0.001"), Decimal("0.001"))
    in_flight.after_call(result(in_flight_info, Decimal("0.0005")))
    assert g.status()[0].spent_usd == Decimal("0.0015")
    store.down = False
    assert journalled.flush() == 0 and journalled.status()[0].spent_usd == Decimal("0.0004")


def test_a_forked_child_counts_its_own_upstream_values():
    """The cap on values from upstream baggage is per process: the child's counts start at zero."""
    configure_propagation(trust_upstream=["team", "feature"], max_upstream_values=2)
    try:
        for team in ("a", "b", "c"):
            with attributes_from_headers({"baggage": f"aicost.team={team}"}):
                current_attributes()
        parent_stats = upstream_stats()
        assert parent_stats[semconv.AICOST_TEAM] == {"distinct": 2, "overflowed": 1}

        def child(send):
            send({"before": upstream_stats()})
            with attributes_from_headers({"baggage": "aicost.team=c"}):
                send({"team": current_attributes()[semconv.AICOST_TEAM], "after": upstream_stats()})

        before, after = run_forked(child)
        assert before == {"before": {}}
        assert after == {"team": "c", "after": {semconv.AICOST_TEAM: {"distinct": 1, "overflowed": 0}}}
        assert upstream_stats() == parent_stats
    finally:
        configure_propagation()


def test_a_forked_childs_cached_call_does_not_wait_for_a_leader_running_in_the_parent():
    """Single flight: an identical call in flight in another parent thread at the fork never lands in the child
    (that thread does not exist there); the child's call must run, not wait out the single-flight timeout."""
    release, started = threading.Event(), threading.Event()
    ran = []

    @aicost.cache(prompt="q", single_flight_timeout=600)
    def answer(q: str) -> str:
        ran.append(os.getpid())
        if os.getpid() == parent:
            started.set()
            release.wait(30)
        return f"answer from {os.getpid()}"

    parent = os.getpid()
    leader = threading.Thread(target=answer, args=("same question",))
    leader.start()
    try:
        assert started.wait(10)

        def child(send):
            send({"answer": answer("same question"), "ran": ran.count(os.getpid())})

        [seen] = run_forked(child, timeout_s=20)
    finally:
        release.set()
        leader.join(10)
    assert seen["ran"] == 1 and seen["answer"] != f"answer from {parent}"
