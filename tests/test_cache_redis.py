"""The shared exact tier against a real redis-server on 127.0.0.1 (started by tests/servers.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

import aicost
from aicost.cache import RedisStore
from aicost.cache.entry import Entry

from cache_helpers import fake_llm_call

pytestmark = pytest.mark.server("redis-server")


@pytest.fixture
def store(redis_url):
    s = RedisStore(redis_url)
    s.client.flushdb()
    return s


def waiting_on_a_lock(*stores) -> threading.Semaphore:
    """Released each time a cache over one of ``stores`` finds another instance's single-flight lock held (it is
    waiting for that instance's answer): a leader waits for that fact instead of being slow for a fixed time."""
    seen = threading.Semaphore(0)
    for store in stores:
        def checking(key, is_locked=store.is_locked):
            held = is_locked(key)
            if held:
                seen.release()
            return held

        store.is_locked = checking
    return seen


def _server_ms(store) -> int:
    seconds, micros = store.client.time()
    return seconds * 1000 + micros // 1000


def test_entries_round_trip_with_exact_cost_and_ttl(store):
    """Expiry is Redis's clock, which a test cannot set: an entry is served while unexpired, its TTL is the one
    asked for, and once the server's clock has passed it the entry is a miss, however slow this machine is."""
    store.put("aicost:cache:t:kept", Entry(value={"answer": 42}, cost_usd=Decimal("0.0133"), calls=2), ttl=600)
    got = store.get("aicost:cache:t:kept")
    assert got.value == {"answer": 42} and got.cost_usd == Decimal("0.0133") and got.calls == 2
    sent = []  # the expiry the store asks Redis for: checked however long this machine then takes to look
    set_command = store.client.set
    store.client.set = lambda *args, **kw: sent.append(kw.get("px")) or set_command(*args, **kw)
    before = _server_ms(store)
    store.put("aicost:cache:t:a", Entry(value={"answer": 42}), ttl=0.3)
    del store.client.set
    assert sent == [300]
    # and the expiry Redis holds (absolute, Redis 7+; the time left, PTTL, says -2 once 0.3 s have passed here,
    # and so does this once the key has expired: then it is gone, as it should be)
    expires = store.client.execute_command("PEXPIRETIME", "aicost:cache:t:a")
    assert before + 300 <= expires <= _server_ms(store) + 300 or (expires == -2 and _server_ms(store) >= before + 300)
    deadline = time.monotonic() + 30  # a condition, not a fixed sleep: 0.3 s unless the machine is swamped
    while _server_ms(store) <= (expires if expires > 0 else before + 300):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert store.get("aicost:cache:t:a") is None


def test_two_processes_share_answers_and_tenancy_still_holds(store, redis_url, tmp_path):
    """A second Python process hits what the first stored; a different customer does not."""
    repo_root = str(Path(aicost.__file__).resolve().parent.parent)
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {repo_root!r})
        import aicost
        from aicost.cache import RedisStore
        calls = []

        @aicost.cache(prompt="q", store=RedisStore({redis_url!r}), name="shared.answer")
        def answer(q):
            calls.append(q)
            return "answer to " + q

        with aicost.attribute(customer=sys.argv[1]):
            result = answer(sys.argv[2])
        print(result, len(calls))
    """))

    def run(customer, question):
        out = subprocess.run([sys.executable, str(script), customer, question], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert run("acme", "What is our SLA?") == "answer to What is our SLA? 1"
    assert run("acme", "What is  our SLA ?") == "answer to What is our SLA? 0"  # hit from the other process
    assert run("globex", "What is our SLA?") == "answer to What is our SLA? 1"  # another tenant: a miss


def test_decorator_over_redis_records_savings_and_invalidates(store):
    calls = []

    @aicost.cache(prompt="q", store=store)
    def answer(q):
        calls.append(q)
        fake_llm_call("0.02")
        return {"text": q[::-1]}

    assert answer("abc") == {"text": "cba"}
    assert answer(" abc ") == {"text": "cba"}
    assert len(calls) == 1
    entry = store.get(answer.key_for("abc"))
    assert entry.cost_usd == Decimal("0.02")
    assert answer.invalidate("abc") is True
    answer("abc")
    assert len(calls) == 2
    assert answer.clear() == 1


def test_max_entries_evicts_least_recently_used_across_the_store(redis_url):
    store = RedisStore(redis_url, max_entries=3)
    store.client.flushdb()
    for k in "abc":
        store.put(f"aicost:cache:t:{k}", Entry(value=k), ttl=60)
        time.sleep(0.01)
    store.get("aicost:cache:t:a")  # a is now most recent
    store.put("aicost:cache:t:d", Entry(value="d"), ttl=60)
    assert store.get("aicost:cache:t:b") is None
    assert [store.get(f"aicost:cache:t:{k}").value for k in "acd"] == ["a", "c", "d"]
    assert len(store) == 3


def test_signed_entries_reject_tampering(redis_url):
    store = RedisStore(redis_url, secret="s3cret")
    store.client.flushdb()
    store.put("aicost:cache:t:x", Entry(value="fine"), ttl=60)
    assert store.get("aicost:cache:t:x").value == "fine"
    raw = store.client.get("aicost:cache:t:x")
    store.client.set("aicost:cache:t:x", raw[:-1] + bytes([raw[-1] ^ 1]))
    assert store.get("aicost:cache:t:x") is None
    unsigned = RedisStore(redis_url)
    unsigned.put("aicost:cache:t:y", Entry(value="forged"), ttl=60)
    assert store.get("aicost:cache:t:y") is None


def test_redis_down_means_a_miss_not_an_error():
    from servers import free_port

    dead = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    calls = []

    @aicost.cache(store=dead)
    def f(x):
        calls.append(x)
        return x + 1

    assert f(1) == 2 and f(1) == 2 and len(calls) == 2
    assert dead._down_until > time.monotonic()  # later calls skip the dead server instead of waiting on it


def test_single_flight_across_processes_through_redis_locks(redis_url):
    """Two cache instances (as two processes: separate in-process flight groups) share one Redis: concurrent
    identical misses call the LLM once; the other instance waits for the answer instead of paying again."""

    calls = []
    lock = threading.Lock()

    def make(store):
        @aicost.cache(prompt="q", store=store, name="shared.flight")
        def answer(q):
            with lock:
                calls.append(q)
            assert waiting.acquire(timeout=10)  # the other instance is waiting for this answer
            return "A:" + q

        return answer

    stores = RedisStore(redis_url), RedisStore(redis_url)
    waiting = waiting_on_a_lock(*stores)
    first, second = make(stores[0]), make(stores[1])
    first.clear()
    gate = threading.Barrier(2, timeout=10)
    results = []

    def run(fn):
        gate.wait()
        results.append(fn("same question"))

    threads = [threading.Thread(target=run, args=(fn,)) for fn in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert results == ["A:same question"] * 2
    assert len(calls) == 1
    assert not RedisStore(redis_url).is_locked(first.key_for("same question"))  # released after the answer


def test_waiter_calls_through_when_the_other_process_fails(redis_url):

    calls = []
    started = threading.Event()

    def make(store, role):  # one function's code in both instances (as in two processes): one key
        @aicost.cache(store=store, name="shared.flaky")
        def answer(q):
            calls.append(role)
            if role == "leader":
                started.set()
                assert waiting.acquire(timeout=10)  # the other instance is waiting for this answer
                raise RuntimeError("vendor down")
            return "ok"

        return answer

    other_store = RedisStore(redis_url)
    waiting = waiting_on_a_lock(other_store)
    flaky, flaky_other = make(RedisStore(redis_url), "leader"), make(other_store, "waiter")
    flaky.clear()
    outcome = []

    def lead():
        try:
            flaky("q")
        except RuntimeError as exc:
            outcome.append(str(exc))

    t = threading.Thread(target=lead)
    t.start()
    assert started.wait(10)
    assert flaky_other("q") == "ok"  # waited for the lock to go, then answered itself
    t.join(10)
    assert outcome == ["vendor down"] and calls == ["leader", "waiter"]


async def test_async_function_over_redis(store):
    calls = []

    @aicost.cache(prompt="q", store=store)
    async def answer(q):
        calls.append(q)
        return q.upper()

    assert await answer("abc") == "ABC"
    assert await answer("abc ") == "ABC"
    assert len(calls) == 1


def test_hung_redis_costs_a_bounded_miss(store):
    """A paused redis-server (SIGSTOP) costs one timeout_s (0.5 s), not redis-py's default ten retries with
    backoff (6 s and more), and the store is then skipped."""

    from cache_helpers import paused

    calls = []

    @aicost.cache(prompt="q", store=store, name="hang.redis")
    def answer(q):
        calls.append(q)
        return q.upper()

    assert answer("warm") == "WARM" and answer("warm") == "WARM" and calls == ["warm"]
    box = {}

    def call():
        t0 = time.monotonic()
        box["result"] = answer("hello")
        box["elapsed"] = time.monotonic() - t0

    with paused(int(store.client.info("server")["process_id"])):
        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        thread.join(15)
        assert not thread.is_alive(), "the cached call is still blocked on the hung Redis"
        assert box["result"] == "HELLO"
        assert box["elapsed"] < 3, box  # one 0.5 s timeout (the docs' bound), not a retry loop


def test_a_signed_entry_moved_to_another_key_is_a_miss(redis_url):
    """Whoever can write to the store must not be able to serve one request's signed answer as another's: the
    signature covers the key the entry was stored under."""
    store = RedisStore(redis_url, secret="s3cret")
    store.client.flushdb()
    store.put("aicost:cache:t:refund-allowed", Entry(value="yes, refund it"), ttl=60)
    store.client.set("aicost:cache:t:refund-denied", store.client.get("aicost:cache:t:refund-allowed"))
    assert store.get("aicost:cache:t:refund-denied") is None
    assert store.get("aicost:cache:t:refund-allowed").value == "yes, refund it"


def test_clear_over_redis_drops_only_its_own_function(store):
    @aicost.cache(prompt="q", name="a", store=store)
    def a(q):
        return "a"

    @aicost.cache(prompt="q", name="a:b", store=store)
    def ab(q):
        return "a:b"

    a("Q"), ab("Q")
    assert a.clear() == 1
    assert store.get(ab.key_for("Q")).value == "a:b"
