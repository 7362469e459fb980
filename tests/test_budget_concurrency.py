"""Many threads and asyncio tasks racing one budget through the in-memory store.

Two properties, each checked exactly rather than statistically:

* never over: the settled spend is at most the limit (every call's actual cost is within its reservation);
* no false refusal: every refusal carries the budget state the atomic reservation saw, and in that state the
  call really did not fit (spent + reserved + worst case > limit). When every call costs exactly its worst case,
  the number of calls let through is exactly the budget's capacity.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from decimal import Decimal

from aicost.budget import Budget, BudgetExceeded, BudgetGuard
from budget_helpers import chat_info, price_lookup, result

D = Decimal
WORST = D("0.001")  # flat-big, max_tokens=1000


def _new_guard(limit: str) -> BudgetGuard:
    # Load the tokenizer once up front: aicost.tokens loads it lazily, and 64 threads missing its cache at the
    # same moment would each load it (about a second apiece) before the race this test is about even starts.
    from aicost.tokens import count_text

    count_text("warm up", "flat-big")
    return BudgetGuard([Budget(limit_usd=limit, window="month")], price_lookup=price_lookup)


def _race(worker, threads: int = 64) -> None:
    """Run ``worker(n)`` for n in 0..threads-1, each in its own thread, all released at once."""
    barrier = threading.Barrier(threads)

    def run(n: int) -> None:
        barrier.wait()
        worker(n)

    started = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in started)


def _check_refusals(refusals: list[BudgetExceeded]) -> None:
    for e in refusals:
        assert e.spent_usd + e.reserved_usd + e.requested_usd > e.limit_usd, (
            f"a call that fit was refused: spent {e.spent_usd} + reserved {e.reserved_usd} + {e.requested_usd} "
            f"<= {e.limit_usd}"
        )


def test_64_threads_exact_capacity_when_calls_cost_their_worst_case():
    g = _new_guard("0.1")  # room for exactly 100 calls
    ok, refused = [], []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for _ in range(5):
            info = chat_info()
            try:
                ticket = g.before_call(info)
            except BudgetExceeded as e:
                with lock:
                    refused.append(e)
                continue
            time.sleep(random.random() / 2000)  # hold the reservation while others race
            ticket.after_call(result(info, WORST))
            with lock:
                ok.append(1)

    _race(worker)
    [status] = g.status()
    assert len(ok) == 100 and len(refused) == 220
    assert status.spent_usd == D("0.1") and status.reserved_usd == 0
    _check_refusals(refused)


def test_64_threads_variable_actual_cost_never_over_and_no_false_refusal():
    g = _new_guard("0.05")
    settled = []
    refused = []
    lock = threading.Lock()
    rng = random.Random(5)
    costs = [D(rng.randint(1, 1000)) / 1_000_000 for _ in range(64 * 8)]  # 0.000001 .. 0.001, <= worst case

    def worker(n: int) -> None:
        for i in range(8):
            info = chat_info()
            try:
                ticket = g.before_call(info)
            except BudgetExceeded as e:
                with lock:
                    refused.append(e)
                continue
            time.sleep(0.0002)
            cost = costs[n * 8 + i]
            ticket.after_call(result(info, cost))
            with lock:
                settled.append(cost)

    _race(worker)
    [status] = g.status()
    assert status.reserved_usd == 0
    assert status.spent_usd == sum(settled) <= D("0.05")
    assert len(settled) + len(refused) == 64 * 8
    _check_refusals(refused)


async def test_1000_asyncio_tasks_exact_capacity():
    g = _new_guard("0.25")  # room for 250 calls
    ok = 0
    refused: list[BudgetExceeded] = []
    start = asyncio.Event()

    async def call(i: int) -> None:
        nonlocal ok
        await start.wait()
        info = chat_info()
        try:
            ticket = g.before_call(info)
        except BudgetExceeded as e:
            refused.append(e)
            return
        await asyncio.sleep((i % 7) / 1000)  # the "vendor call": other tasks run meanwhile
        ticket.after_call(result(info, WORST))
        ok += 1

    tasks = [asyncio.create_task(call(i)) for i in range(1000)]
    await asyncio.sleep(0)
    start.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    [status] = g.status()
    assert ok == 250 and len(refused) == 750
    assert status.spent_usd == D("0.25") and status.reserved_usd == 0
    _check_refusals(refused)


async def test_1000_asyncio_tasks_with_cancellation_release_their_reservations():
    g = _new_guard("0.2")
    settled: list[Decimal] = []
    refused: list[BudgetExceeded] = []

    async def call(i: int) -> None:
        info = chat_info()
        try:
            ticket = g.before_call(info)
        except BudgetExceeded as e:
            refused.append(e)
            return
        try:
            await asyncio.sleep(0.001 if i % 3 else 10)  # every third call hangs and is cancelled
            cost = D(1 + i % 1000) / 1_000_000
            ticket.after_call(result(info, cost))
            settled.append(cost)
        except asyncio.CancelledError:
            ticket.after_call(result(info, None, usage=None, error_type="CancelledError"))
            raise

    tasks = [asyncio.create_task(call(i)) for i in range(1000)]
    await asyncio.sleep(0.3)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    [status] = g.status()
    assert status.reserved_usd == 0  # cancelled calls gave their reservations back
    assert status.spent_usd == sum(settled) <= D("0.2")
    _check_refusals(refused)
