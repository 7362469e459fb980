"""Fault injection against a real redis-server on 127.0.0.1: a server stalled past the store timeout, and one
killed and restarted in the middle of a run. What must hold afterwards: no hold is left with nothing in flight
(calls that fit are not refused), and every call's cost is in the spend, exactly."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from decimal import Decimal

import pytest

from aicost.budget import Budget, BudgetExceeded, BudgetGuard
from aicost.budget.stores.base import StoreUnavailable
from aicost.budget.stores.redis import RedisStore
from budget_helpers import chat_info, price_lookup, result
from servers import redis_process

D = Decimal
pytestmark = pytest.mark.server("redis-server")


def _guard(store, *budgets, **kw) -> BudgetGuard:
    return BudgetGuard(list(budgets), store=store, price_lookup=price_lookup, **kw)


def _call(g: BudgetGuard, cost: Decimal) -> bool:
    """One call of flat-big, max_tokens=1000 ($0.001 worst case) that costs ``cost``; False if refused."""
    info = chat_info()
    try:
        ticket = g.before_call(info)
    except BudgetExceeded:
        return False
    if ticket is not None:
        ticket.after_call(result(info, cost))
    return True


def _wait_until(condition, what: str, timeout_s: float = 60.0) -> None:
    """Wait for ``condition()`` (a fact, not an amount of time): generous, for a loaded machine."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {timeout_s} s for {what}"
        time.sleep(0.01)


def _settled_status(g: BudgetGuard):
    """The budget's status once the guard's journal has reached the store. Both are retried until a deadline:
    on a loaded machine a command can outlast the store's 0.25 s timeout with the server up (the call then
    goes ahead and its settlement is journalled, which is what these tests check is counted exactly once)."""
    seen = []

    def settled() -> bool:
        if g.flush() != 0:
            return False
        try:
            seen[:] = g.status()
        except StoreUnavailable:
            return False
        return True

    _wait_until(settled, "the journal to reach the store and the spend to be read")
    return seen[0]


def test_reserves_that_time_out_in_a_stall_leave_no_hold_and_lose_no_spend():
    with redis_process() as server:
        store = RedisStore(server.url, prefix=f"stall{uuid.uuid4().hex[:6]}", timeout_s=0.25, retry_interval_s=0.2)
        g = _guard(store, Budget(limit_usd="0.0035", name="stall"), on_store_error="open")
        assert _call(g, D("0.0001"))  # connection and script loaded
        stall = server.stall(0.8)  # past the 0.25 s timeout: the reserves below get no answer, but still run
        start = threading.Barrier(6)
        outcomes = []

        def call() -> None:
            start.wait(5)
            outcomes.append(_call(g, D("0.0002")))

        threads = [threading.Thread(target=call) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        stall.join(10)
        assert outcomes == [True] * 6  # fail-open: the calls went ahead
        time.sleep(0.3)  # past retry_interval_s: the next call uses the store again
        # 0.0001 + 6 x 0.0002 spent: a $0.001 call fits in $0.0035. An orphan hold of $0.001 per timed-out
        # reserve (they ran when the server woke up) would refuse it for the whole lease.
        assert _call(g, D("0.0001"))
        status = _settled_status(g)
        assert status.reserved_usd == 0
        assert status.spent_usd == D("0.0001") * 2 + D("0.0002") * 6
        assert g.journal_stats()["pending"] == 0
        store.close()


def test_kill_and_restart_during_a_run_loses_no_spend_and_leaves_no_hold(caplog):
    caplog.set_level(logging.WARNING, logger="aicost")
    cost = D("0.000123")
    with redis_process(appendonly=True) as server:
        store = RedisStore(server.url, prefix=f"kill{uuid.uuid4().hex[:6]}", timeout_s=0.25, retry_interval_s=0.1)
        g = _guard(store, Budget(limit_usd="1000", name="run"), on_store_error="open")
        stop = threading.Event()
        made = [0] * 4
        refused = []

        def worker(i: int) -> None:
            while not stop.is_set():
                if not _call(g, cost):
                    refused.append(i)  # never expected: an assert here would only end this thread
                    return
                made[i] += 1
                time.sleep(0.002)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        _wait_until(lambda: min(made) >= 20, "every worker to make calls against the running server")
        server.kill()  # SIGKILL mid-run: calls, reserves and settlements in flight
        before = sum(made)
        _wait_until(lambda: sum(made) - before >= 50 and g.journal_stats()["pending"] > 0,
                    "calls to go ahead during the outage, their settlements journalled")
        during = sum(made) - before
        server.start()  # same port, same append-only file
        _wait_until(lambda: g.journal_stats()["applied"] > 0, "the running calls to apply the journal")
        after = sum(made)
        _wait_until(lambda: sum(made) - after >= 50, "calls against the restarted server")
        stop.set()
        for t in threads:
            t.join(10)
        assert not refused and not any(t.is_alive() for t in threads)
        status = _settled_status(g)  # anything still journalled reaches the store now
        assert status.reserved_usd == 0
        assert status.spent_usd == cost * sum(made)
        stats = g.journal_stats()
        assert stats["applied"] > 0 and stats["dropped"] == 0
        assert during > 0 and any("unreachable" in r.getMessage() for r in caplog.records)
        store.close()
