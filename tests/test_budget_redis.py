"""The Redis store against a real redis-server on 127.0.0.1: atomic reserve/settle shared by processes, and
what happens when the store is unreachable (bounded wait, fail open or closed, logged once)."""

from __future__ import annotations

import logging
import multiprocessing
import socket
import time
import uuid
from decimal import Decimal

import pytest

from aicost.budget import Budget, BudgetExceeded, BudgetGuard, BudgetStoreUnavailable, CallRefused
from aicost.budget.stores.redis import RedisStore
from budget_helpers import Clock, chat_info, price_lookup, redis_worker, result
from servers import free_port

D = Decimal
pytestmark = pytest.mark.server("redis-server")


@pytest.fixture
def store(redis_url):
    s = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}", timeout_s=2.0)
    yield s
    s.reset()
    s.close()


def _guard(store, *budgets, **kw) -> BudgetGuard:
    return BudgetGuard(list(budgets), store=store, price_lookup=price_lookup, **kw)


def test_reserve_settle_and_refusal_through_redis(store):
    g = _guard(store, Budget(limit_usd="0.0025", name="shared"))
    info = chat_info()
    ticket = g.before_call(info)
    [status] = g.status()
    assert (status.spent_usd, status.reserved_usd) == (D(0), D("0.001"))
    ticket.after_call(result(info, D("0.0004")))
    g.before_call(chat_info())  # 0.0004 spent + 0.001 held
    g.before_call(chat_info())  # + 0.001 held = 0.0024: still fits
    with pytest.raises(BudgetExceeded) as err:
        g.before_call(chat_info())  # 0.0034 > 0.0025
    assert (err.value.spent_usd, err.value.reserved_usd) == (D("0.0004"), D("0.002"))


def test_all_or_nothing_across_budgets_in_one_script(store):
    g = _guard(store, Budget(limit_usd="1", name="global"), Budget(limit_usd="0.001", scope="model", name="per-model"))
    g.before_call(chat_info())
    with pytest.raises(BudgetExceeded, match="per-model"):
        g.before_call(chat_info())
    statuses = {s.budget: s for s in g.status({}, model="flat-big")}
    assert statuses["global"].reserved_usd == D("0.001")  # the refused call held nothing in the global bucket


def test_thresholds_fire_once_per_window_across_guards_sharing_the_store(store):
    fired = []
    budget = Budget(limit_usd="0.004", thresholds=[0.5, 1.0], on_threshold=fired.append, name="alerts")
    a, b = _guard(store, budget), _guard(store, budget)  # two processes' guards, one Redis
    for g in (a, b, a, b):
        info = chat_info()
        g.before_call(info).after_call(result(info, D("0.001")))
    assert [e.threshold for e in fired] == [D("0.5"), D("1.0")]


def test_leases_expire_in_redis(store):
    clock = Clock(time.time())
    g = _guard(store, Budget(limit_usd="0.001"), clock=clock, lease_seconds=30)
    g.before_call(chat_info())  # never settled
    with pytest.raises(BudgetExceeded):
        g.before_call(chat_info())
    clock.t += 31
    assert g.before_call(chat_info()) is not None


def test_eight_processes_race_one_budget_exactly(redis_url):
    prefix = f"p{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=redis_worker, args=(redis_url, prefix, "0.1", 30, barrier, results)) for _ in range(8)]
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=90) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    ok = sum(n for n, _ in outcomes)
    refusals = [r for _, rs in outcomes for r in rs]
    assert ok == 100 and len(refusals) == 8 * 30 - 100  # exactly the capacity: never over, no false refusals
    for spent, reserved, requested, limit in refusals:
        assert D(spent) + D(reserved) + D(requested) > D(limit)
    store = RedisStore(redis_url, prefix=prefix)
    g = _guard(store, Budget(limit_usd="0.1", window="day"))
    [status] = g.status()
    assert status.spent_usd == D("0.1") and status.reserved_usd == 0
    store.reset()


def test_store_down_fail_open_is_bounded_and_logged_once(caplog):
    caplog.set_level(logging.WARNING, logger="aicost")
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    g = _guard(RedisStore(url, timeout_s=0.2), Budget(limit_usd="0.001"), on_store_error="open")
    started = time.monotonic()
    infos = [chat_info() for _ in range(50)]
    assert [g.before_call(i) for i in infos] == [None] * 50  # allowed, unguarded
    assert time.monotonic() - started < 2.0
    assert infos[0].span_attributes["aicost.budget.decision"] == "store_unavailable"
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


def test_store_down_fail_closed_refuses():
    url = f"redis://127.0.0.1:{free_port()}/0"
    g = _guard(RedisStore(url, timeout_s=0.2), Budget(limit_usd="1"), on_store_error="closed")
    with pytest.raises(BudgetStoreUnavailable) as err:
        g.before_call(chat_info())
    assert isinstance(err.value, CallRefused) and "unreachable" in str(err.value)


def test_a_store_that_never_answers_costs_one_timeout_then_nothing():
    with socket.socket() as silent:  # accepts connections (the kernel does), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        g = _guard(RedisStore(url, timeout_s=0.3, retry_interval_s=5.0), Budget(limit_usd="1"), on_store_error="open")
        started = time.monotonic()
        assert g.before_call(chat_info()) is None
        first = time.monotonic() - started
        assert 0.25 <= first < 1.5
        started = time.monotonic()
        for _ in range(20):
            assert g.before_call(chat_info()) is None
        assert time.monotonic() - started < 0.5  # skipped while the store is marked down


def test_store_comes_back_logged_once_each_way_and_budgets_apply_again(caplog, tmp_path):
    import subprocess

    from servers import require_binary

    caplog.set_level(logging.WARNING, logger="aicost")
    port = free_port()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout_s=0.2, retry_interval_s=0.1)
    g = _guard(store, Budget(limit_usd="0.001"), on_store_error="open")
    assert g.before_call(chat_info()) is None and g.before_call(chat_info()) is None  # down: fail open
    proc = subprocess.Popen([require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        ticket = None
        while ticket is None and time.monotonic() < deadline:
            time.sleep(0.1)
            ticket = g.before_call(chat_info())
        assert ticket is not None  # reserved in Redis again
        with pytest.raises(BudgetExceeded):
            g.before_call(chat_info())
        messages = [r.getMessage() for r in caplog.records]
        assert len([m for m in messages if "unreachable" in m]) == 1
        assert len([m for m in messages if "reachable again" in m]) == 1
    finally:
        store.close()
        proc.terminate()
        proc.wait(timeout=10)
