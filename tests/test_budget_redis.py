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
from aicost.budget.stores.base import SETTLE_ONCE
from aicost.budget.stores.memory import MemoryStore
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


def unguarded(ticket) -> bool:
    """Fail-open while the store is down: the call goes ahead holding nothing (its cost is settled later)."""
    return ticket is not None and not ticket.held


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


def test_status_leaves_out_holds_whose_lease_has_ended(store):
    """A hold whose lease has ended blocks nothing (the next reserve drops it), but status() read the bucket's
    'reserved' field as it was and reported it as still in flight, where the memory store leaves it out."""
    clock = Clock(time.time())
    for s in (store, MemoryStore()):
        g = _guard(s, Budget(limit_usd="1", name="b"), clock=clock, lease_seconds=30)
        g.before_call(chat_info())  # $0.001 held, never settled (its process died)
        g.before_call(chat_info())
        clock.t += 20
        ticket = g.before_call(chat_info())  # a later hold, still in force when the first two have ended
        assert [(st.reserved_usd, st.remaining_usd) for st in g.status()] == [(D("0.003"), D("0.997"))]
        clock.t += 11
        assert [(st.reserved_usd, st.remaining_usd) for st in g.status()] == [(D("0.001"), D("0.999"))], s
        ticket.after_call(result(chat_info(), D("0.0002")))
        assert [(st.spent_usd, st.reserved_usd) for st in g.status()] == [(D("0.0002"), 0)], s
        clock.t -= 31


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
    assert all(unguarded(g.before_call(i)) for i in infos)  # allowed, unguarded
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
        assert unguarded(g.before_call(chat_info()))
        first = time.monotonic() - started
        assert 0.25 <= first < 1.5
        started = time.monotonic()
        for _ in range(20):
            assert unguarded(g.before_call(chat_info()))
        assert time.monotonic() - started < 0.5  # skipped while the store is marked down


def test_store_comes_back_logged_once_each_way_and_budgets_apply_again(caplog, tmp_path):
    import subprocess

    from servers import require_binary

    caplog.set_level(logging.WARNING, logger="aicost")
    port = free_port()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout_s=0.2, retry_interval_s=0.1)
    g = _guard(store, Budget(limit_usd="0.001"), on_store_error="open")
    assert unguarded(g.before_call(chat_info())) and unguarded(g.before_call(chat_info()))  # down: fail open
    proc = subprocess.Popen([require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        ticket = None
        while (ticket is None or not ticket.held) and time.monotonic() < deadline:
            time.sleep(0.1)
            ticket = g.before_call(chat_info())
        assert ticket is not None and ticket.held  # reserved in Redis again
        with pytest.raises(BudgetExceeded):
            g.before_call(chat_info())
        messages = [r.getMessage() for r in caplog.records]
        assert len([m for m in messages if "unreachable" in m]) == 1
        assert len([m for m in messages if "reachable again" in m]) == 1
    finally:
        store.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_reservation_ids_do_not_repeat_when_budgets_are_configured_again(redis_url):
    """A reload builds a new guard on the same Redis. Its reservation ids must not repeat the old guard's: a
    repeated id overwrites the hold of a call still in flight, and that hold is then never released."""
    from aicost.budget import configure_budgets, disable_budgets

    prefix = f"ids{uuid.uuid4().hex[:6]}"
    options = dict(budgets=[Budget(limit_usd="1", name="ids")], store={"url": redis_url, "prefix": prefix},
                   price_lookup=price_lookup)
    try:
        first = configure_budgets(**options)
        in_flight = chat_info()
        old_ticket = first.before_call(in_flight)  # in flight across the reload
        second = configure_budgets(**options)
        info = chat_info()
        second.before_call(info).after_call(result(info, D("0.0001")))
        [status] = second.status()
        assert status.reserved_usd == D("0.001")  # the first guard's call still holds its reservation
        old_ticket.after_call(result(in_flight, D("0.0002")))
        [status] = second.status()
        assert (status.spent_usd, status.reserved_usd) == (D("0.0003"), 0)
    finally:
        disable_budgets()
        RedisStore(redis_url, prefix=prefix).reset()


def test_store_is_checked_once_at_configure_time(redis_url, caplog):
    from aicost.budget import configure_budgets, disable_budgets
    from aicost.errors import ConfigurationError

    caplog.set_level(logging.WARNING, logger="aicost")
    budgets = [Budget(limit_usd="1")]
    closed_port = f"redis://127.0.0.1:{free_port()}/0"
    try:
        with pytest.raises(ConfigurationError, match="store.*on_store_error='closed'"):
            configure_budgets(budgets=budgets, store=closed_port, on_store_error="closed", store_timeout_s=0.2)
        with pytest.raises(ConfigurationError, match="store.*DB index is out of range"):
            configure_budgets(budgets=budgets, store=redis_url.rsplit("/", 1)[0] + "/99")  # even with fail-open
        caplog.clear()
        configure_budgets(budgets=budgets, store=closed_port, store_timeout_s=0.2)  # fail-open: a warning
        assert any("cannot be reached now" in r.getMessage() for r in caplog.records)
        caplog.clear()
        from aicost import _log

        for key in list(_log._seen):
            if key.startswith("budget:store-check:"):
                _log.forget(key)
        configure_budgets(budgets=budgets, store=redis_url)  # the test server keeps nothing on disk
        [warning] = [r.getMessage() for r in caplog.records]
        assert "no persistence" in warning and "forgotten" in warning
        configure_budgets(budgets=budgets, store=redis_url)
        assert len(caplog.records) == 1  # once per process, not at every reload
    finally:
        disable_budgets()


@pytest.mark.parametrize("settings, says", [
    (("--save", "60 1000", "--appendonly", "no"), "keeps RDB snapshots only"),  # a restart goes back to a snapshot
    (("--save", "", "--appendonly", "yes"), None),  # every settlement is in the append-only file
    (("--save", "", "--appendonly", "yes", "--appendfsync", "always"), None),
    (("--save", "60 1000", "--appendonly", "yes", "--appendfsync", "no"), "appendfsync no"),  # the OS flushes
])
def test_the_store_check_warns_once_unless_redis_keeps_an_append_only_file(caplog, tmp_path, settings, says):
    """docs/budgets.md: RDB snapshots alone are not enough for budget counters, nor an append-only file the OS
    syncs when it chooses. A server that keeps only them is warned about, once, naming the setting it has and the
    one it needs; one with ``appendonly yes`` synced every second or every write is not."""
    import subprocess

    from aicost import _log
    from aicost.budget import configure_budgets, disable_budgets
    from servers import _wait_for_port, require_binary

    caplog.set_level(logging.WARNING, logger="aicost")
    port = free_port()
    proc = subprocess.Popen([require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(tmp_path), *settings], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        for key in list(_log._seen):
            if key.startswith("budget:store-check:"):
                _log.forget(key)
        for _ in range(2):
            configure_budgets(budgets=[Budget(limit_usd="1")], store=f"redis://127.0.0.1:{port}/0")
    finally:
        disable_budgets()
        proc.terminate()
        proc.wait(timeout=10)
    warnings = [r.getMessage() for r in caplog.records if "Redis at" in r.getMessage()]
    if says is None:
        assert warnings == []
    else:
        [warning] = warnings  # once, however often budgets are configured
        assert says in warning and "forgotten" in warning
        if "fsync" in says:
            assert "set appendfsync everysec or always" in warning
        else:
            assert 'save "60 1000"' in warning and "set appendonly yes" in warning


def test_realtime_spend_is_counted_once_with_a_short_marker(store):
    """A Realtime response (work the vendor began unasked) holds nothing: its settlement is sent SETTLE_ONCE, so a
    retry after a lost answer adds nothing again. No reserve was ever sent for it, so none can arrive late: its
    marker only has to outlast a retry (ten minutes), not a lease (an hour by default), in a shared Redis that
    sees one per response."""
    g = _guard(store, Budget(limit_usd="1", name="realtime"))
    info = chat_info()
    ticket = g.before_unguarded_call(info)
    ticket.after_call(result(info, D("0.0004")))
    pttl = store._client.pttl(f"{store._prefix}once:{ticket.rid}")
    assert 0 < pttl <= 600_000
    store.settle(ticket.rid, ticket.charges, 400_000, time.time(), SETTLE_ONCE, ticket.lease_until)  # a retry
    assert g.status()[0].spent_usd == D("0.0004")


def test_a_password_in_the_store_url_is_never_logged_nor_put_in_an_error(redis_url, caplog, tmp_path):
    """The store's URL is named in the warnings (unreachable, no persistence) and in the configure-time errors; a
    password in it (``redis://user:secret@host``, or redis-py's ``?password=``) is a credential, shown as ***."""
    import subprocess

    from aicost import _log
    from aicost.budget import configure_budgets, disable_budgets
    from aicost.errors import ConfigurationError
    from servers import _wait_for_port, require_binary

    caplog.set_level(logging.WARNING, logger="aicost")
    secret = "s3cret-Budget-PW"
    budgets = [Budget(limit_usd="1")]
    errors = []
    port = free_port()
    proc = subprocess.Popen([require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", secret],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for key in list(_log._seen):
            if key.startswith("budget:store-check:"):
                _log.forget(key)
        dead = f"redis://app:{secret}@127.0.0.1:{free_port()}/0"
        g = _guard(RedisStore(dead, timeout_s=0.2), *budgets, on_store_error="open")
        assert unguarded(g.before_call(chat_info()))  # the store is down: a warning naming it
        with pytest.raises(ConfigurationError) as closed:
            configure_budgets(budgets=budgets, store=dead, on_store_error="closed", store_timeout_s=0.2)
        errors.append(str(closed.value))
        with pytest.raises(ConfigurationError) as refused:  # a server that refuses the login
            configure_budgets(budgets=budgets, store=f"redis://app:{secret}@{redis_url.split('://', 1)[1]}")
        errors.append(str(refused.value))
        _wait_for_port(port, proc)  # the password-protected server: its settings are warned about by URL
        configure_budgets(budgets=budgets, store=f"redis://127.0.0.1:{port}/0?password={secret}")
    finally:
        disable_budgets()
        proc.terminate()
        proc.wait(timeout=10)
    text = caplog.text + "\n".join(errors)
    assert "unreachable" in text and "refused the connection" in text and "no persistence" in text
    assert secret not in text
    assert "app:***@" in text and "password=***" in text
