"""A forked child reports, enforces and waits for its own calls only, never the parent's.

``os.fork()`` (a pre-forking server, ``multiprocessing`` with the fork start method) copies the parent's memory:
its cost totals, budget spend and holds, journalled settlements, upstream-value counts and calls in flight. Each
test runs a real forked child of the test process and compares what it sees with what the parent still has.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import aicost
from aicost import budget as budget_module
from aicost import hooks, instrumentation, metrics, semconv
from aicost.attribution import attributes_from_headers, configure_propagation, current_attributes, upstream_stats
from aicost.budget import Budget, BudgetGuard, budget_status, configure_budgets, disable_budgets
from aicost.cache.deadline import WATCHDOG
from aicost.cache.entry import Entry
from aicost.errors import CallRefused
from aicost.ledger import CACHE_HIT, CALL, REFUSAL, open_store
from aicost.ledger import writer as ledger_writer
from aicost.pools import configure_pools, disable as disable_pools
from aicost.pricing import engine as pricing_engine
from aicost.reports.alerts import BUDGET_THRESHOLD, Alert, Alerter

from attribution_helpers import SimulatedCall, call
from budget_helpers import Clock, FlakyStore, chat_info, price_lookup, result
from fork_helpers import run_forked
from vendor_server import openai_client

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),  # 3.12+: fork() of a multi-threaded process
]

_NOW = datetime.now(timezone.utc)


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


# -- locks another parent thread holds at the fork ------------------------------------------------------------
# Each entry names a lock that a forked child's first request takes, and how to reach it once aicost is set up
# as below. A parent thread holds it while the process forks: the child must still serve. (Every aicost lock,
# condition and event is freed in a child the same way, by aicost._fork; these are the ones this request takes.)
_HELD_AT_FORK = {
    "instrument() (RLock)": lambda s: instrumentation._lock,
    "hook registry": lambda s: hooks._registry_lock,
    "budget configuration": lambda s: budget_module._lock,
    "budget memory store": lambda s: budget_module.process_memory_store()._lock,
    "unknown models (RLock)": lambda s: pricing_engine._lock,
    "feature scope": lambda s: s["scope"]._with_lock,
    "call collector": lambda s: hooks.CallCollector._lock,
    "cache store": lambda s: s["ask"].cache.store._lock,
    "cache single flight": lambda s: s["ask"].cache.flights._lock,
    "metrics recording": lambda s: metrics._drain_lock,
    "metrics state": lambda s: metrics._state_lock,
    "metrics cost totals": lambda s: metrics._state._lock,
    "ledger configuration": lambda s: ledger_writer._active_lock,
    "ledger writer": lambda s: ledger_writer.active()._cond,
    "ledger writer spill": lambda s: ledger_writer.active()._spill_lock,
}


def _held_by_another_thread(lock) -> threading.Event:
    """Take ``lock`` in a new thread and keep it until the returned event is set: deterministic, no sleep."""
    held, release = threading.Event(), threading.Event()

    def hold():
        with lock:
            held.set()
            release.wait(60)

    threading.Thread(target=hold, name="holds-a-lock", daemon=True).start()
    assert held.wait(10)
    return release


@pytest.mark.parametrize("name", list(_HELD_AT_FORK))
def test_a_forked_child_serves_while_a_parent_thread_held_an_aicost_lock_at_the_fork(
        name, tracer_provider, meter_provider, replay_server, tmp_path, spill_dir):
    """A pre-forking server (gunicorn, uWSGI) or multiprocessing forks while the app's other threads are working,
    some of them inside aicost. Their locks are copied as they were, held, and nobody in the child would release
    them: without the reset, the child's first request waits for ever (here: the child is killed, the test
    fails). The child does what a worker does: its post-fork hook configures aicost again (the same settings:
    nothing changes), then it serves a cached call in a feature under a budget, and a call the budget refuses
    (a model nobody prices), each written to the ledger."""
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    setup = {"scope": aicost.feature("answer", team="search")}  # one scope object shared by every request

    @aicost.cache(prompt="question", ignore=["client"])
    def ask(client, question):
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}])

    setup["ask"] = ask

    def configure() -> None:
        aicost.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider, ledger=ledger)
        configure_budgets(budgets=[Budget(limit_usd="10", window="day", name="day")])

    def serve(team: str) -> None:
        client = openai_client(replay_server)
        try:
            with setup["scope"], aicost.attribute(team=team):
                ask(client, f"from the {team}")
                ask(client, f"from the {team}")  # a cache hit
                with pytest.raises(CallRefused):
                    client.chat.completions.create(model=f"unpriced-{team}", messages=[], max_tokens=5)
        finally:
            client.close()
        metrics.flush()
        assert ledger_writer.active().flush(timeout_s=10)

    configure()
    try:
        serve("parent")  # every lazy part exists now: threads, stores, prices, tokenizer
        release = _held_by_another_thread(_HELD_AT_FORK[name](setup))
        try:
            def child(send):
                configure()
                serve("child")
                send({"spent": str(budget_status()[0].spent_usd)})

            [seen] = run_forked(child, timeout_s=60)
        finally:
            release.set()
        assert Decimal(seen["spent"]) > 0  # the child's own call, counted by its own budget
        with open_store(ledger, create=False) as store:
            rows = [r for r in store.rows(_NOW - timedelta(days=1), _NOW + timedelta(days=1))]
        assert sorted((r.team, r.kind) for r in rows) == sorted(
            (team, kind) for team in ("child", "parent") for kind in (CACHE_HIT, CALL, REFUSAL))
    finally:
        disable_budgets()
        aicost.uninstrument()


# -- background workers and what they hold --------------------------------------------------------------------
def test_a_forked_childs_deadline_watch_never_cuts_a_socket_the_parent_is_waiting_on():
    """The cache's deadline thread shuts down the socket of a database call that overran. A child shares its
    parent's sockets: had it kept the parent's watched calls, its own thread would cut the parent's connection.
    Here the parent's watch is already overdue (its own thread is kept from acting by holding the watchdog's
    lock, which the child must not inherit held) and the child's call overruns after it."""
    parent_side, parent_peer = socket.socketpair()
    child_side, child_peer = socket.socketpair()
    token = WATCHDOG.watch(parent_side.fileno(), 3600)
    release = _held_by_another_thread(WATCHDOG._cond)
    WATCHDOG._pending[token] = (0.0, parent_side.fileno())  # overdue; the parent's thread waits for the lock
    try:
        def child(send):
            WATCHDOG.watch(child_side.fileno(), 0.05)
            child_peer.settimeout(10)
            cut = child_peer.recv(1) == b""  # end of file: the child's overrunning call was cut
            parent_peer.setblocking(False)
            try:
                parent_cut = parent_peer.recv(1) == b""
            except BlockingIOError:
                parent_cut = False  # still open, nothing to read
            send({"own call cut": cut, "parent's call cut": parent_cut})

        [seen] = run_forked(child, timeout_s=60)
    finally:
        del WATCHDOG._pending[token]  # while the lock is still held: the parent's thread never sees it overdue
        release.set()
    assert seen == {"own call cut": True, "parent's call cut": False}
    assert not WATCHDOG.release(token)
    parent_side.sendall(b"x")
    assert parent_peer.recv(1) == b"x"  # the parent's connection still works
    for s in (parent_side, parent_peer, child_side, child_peer):
        s.close()


def test_a_forked_child_delivers_its_own_alerts_and_not_those_queued_in_the_parent():
    """Budget alerts are queued for a sender thread. At the fork the parent's thread is delivering one and
    another waits in the queue: they are the parent's to deliver. The child's alert goes out (through the
    child's own thread), once, and nothing of the parent's is sent twice."""
    delivering, release = threading.Event(), threading.Event()
    sent = []

    def sink(alert):
        sent.append((os.getpid(), alert.key))
        if os.getpid() == parent and alert.key == "first":
            delivering.set()
            release.wait(30)

    parent = os.getpid()
    alerter = Alerter(sink)
    alerter.submit(Alert(BUDGET_THRESHOLD, "first", "first", "being delivered at the fork"))
    assert delivering.wait(10)
    alerter.submit(Alert(BUDGET_THRESHOLD, "second", "second", "queued at the fork"))
    try:
        def child(send):
            alerter.submit(Alert(BUDGET_THRESHOLD, "third", "third", "the child's"))
            send({"flushed": alerter.flush(timeout_s=10), "sent": [key for pid, key in sent if pid == os.getpid()]})

        [seen] = run_forked(child, timeout_s=60)
    finally:
        release.set()
    assert seen == {"flushed": True, "sent": ["third"]}
    assert alerter.flush(timeout_s=10) and sent == [(parent, "first"), (parent, "second")]


def test_a_forked_child_uses_its_own_cache_connections_and_leaves_the_parents_open(pg_server):
    """The pgvector store pools connections. At the fork the parent's threads hold every slot and an idle
    connection is the parent's session: the child must neither wait for a slot that never frees nor talk on
    the parent's socket, and dropping the parent's connections there must not end the parent's sessions."""
    from aicost.cache import PgVectorStore

    store = PgVectorStore(pg_server, table="cache_fork", pool_size=1)
    try:
        store.put("aicost:cache:t:k", Entry(value="cached"), ttl=600)
        backend = store._execute("SELECT pg_backend_pid()", fetch="one")[0]  # the pooled connection's session
        assert store._slots.acquire(timeout=5)  # a parent thread's query in flight at the fork
        try:
            def child(send):
                got = store.get("aicost:cache:t:k")
                own = store._execute("SELECT pg_backend_pid()", fetch="one")[0]
                send({"value": None if got is None else got.value, "own session": own != backend})

            [seen] = run_forked(child, timeout_s=60)
        finally:
            store._slots.release()
        assert seen == {"value": "cached", "own session": True}
        assert store._execute("SELECT pg_backend_pid()", fetch="one")[0] == backend  # the parent's session lives
    finally:
        store.close()


def _pools_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "aicost-pools" and t.is_alive())


@pytest.mark.parametrize("finalizing", [False, True], ids=["running", "interpreter shutting down"])
def test_a_forked_child_closes_its_own_pool_intervals_with_its_own_thread_started_on_its_first_pool_call(
        finalizing):
    """Self-hosted pools: the calls in the open intervals at the fork are the parent's to allocate, and the
    child, whose calls join intervals too, gets its own closing thread (the parent's does not exist there). Not at
    the fork: a child that makes no pool call (a subprocess about to exec) must not start one; it starts on the
    first pool call. A call made while the interpreter shuts down is counted but starts no thread (it would never
    run, and would hang the exit)."""
    pools = {"p": {"gpu_hour": 1, "endpoints": ["10.0.0.5:8000"], "models": ["m"], "owner": "ml", "output_weight": 2}}
    deadline = time.monotonic() + 30
    while _pools_threads() and time.monotonic() < deadline:  # an earlier test's closing thread, still ending
        time.sleep(0.01)
    meter = configure_pools(pools, ledger="")
    try:
        def pool_call():
            sim = SimulatedCall(model="m")
            sim.info.server_address, sim.info.server_port = "10.0.0.5", 8000
            meter(sim.finish())

        pool_call()
        assert _pools_threads() == 1

        def child(send):
            threads_at_fork = _pools_threads()
            before = sum(len(uses) for uses in meter._open["p"].values())
            if finalizing:
                sys.is_finalizing = lambda: True  # this child only: it ends with os._exit
            pool_call()
            send({"threads at fork": threads_at_fork, "open before": before,
                  "open after": sum(len(uses) for uses in meter._open["p"].values()),
                  "closing threads": _pools_threads()})

        [seen] = run_forked(child, timeout_s=60)
        assert seen == {"threads at fork": 0, "open before": 0, "open after": 1,
                        "closing threads": 0 if finalizing else 1}
        assert sum(len(uses) for uses in meter._open["p"].values()) == 1  # the parent keeps its call
    finally:
        disable_pools()
