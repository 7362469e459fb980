"""The two stores are one semantics: random sequences of reserve / settle (in every settle mode) / late reserves
/ clock moves give the same answers from the in-memory store and from the Redis scripts (real redis-server), and
both match a plain reference model.
"""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aicost.budget.stores.base import SETTLE, SETTLE_IF_HELD, SETTLE_ONCE, Charge
from aicost.budget.stores.memory import MemoryStore
from aicost.budget.stores.redis import RedisStore

LEASE = 100.0
KEYS = ("a|x|day:1", "b|y|day:1", "c||day:1")

op = st.one_of(
    st.tuples(st.just("reserve"), st.lists(st.sampled_from(range(3)), min_size=1, max_size=3, unique=True),
              st.integers(0, 60), st.lists(st.booleans(), min_size=3, max_size=3)),
    st.tuples(st.just("settle"), st.integers(0, 50), st.integers(0, 80),
              st.sampled_from([SETTLE, SETTLE, SETTLE_IF_HELD, SETTLE_ONCE])),
    st.tuples(st.just("late_reserve"), st.integers(0, 50)),  # a reserve that reaches the store after its settle
    st.tuples(st.just("advance"), st.sampled_from([1.0, 30.0, 101.0])),
)


class Reference:
    """Obviously-correct model: dictionaries and loops, no cleverness."""

    def __init__(self) -> None:
        self.spent = {k: 0 for k in KEYS}
        self.holds: dict[str, dict[str, tuple[int, float]]] = {k: {} for k in KEYS}
        self.fired = {k: 0 for k in KEYS}
        self.settled_once: set[str] = set()

    def reserved(self, key: str, now: float) -> int:
        self.holds[key] = {r: h for r, h in self.holds[key].items() if h[1] > now}
        return sum(a for a, _ in self.holds[key].values())

    def reserve(self, rid, charges, amount, now, until):
        if rid in self.settled_once:
            return (True, (), -1)  # settled already: holds nothing
        states = []
        for i, c in enumerate(charges):
            states.append((self.spent[c.key], self.reserved(c.key, now)))
            if c.enforce and states[-1][0] + states[-1][1] + amount > c.limit:
                return (False, tuple(states), i)
        for c in charges:
            self.holds[c.key][rid] = (amount, until)
        return (True, tuple(states), -1)

    def settle(self, rid, charges, actual, now, mode=SETTLE, lease_until=0.0):
        out = []
        first = rid not in self.settled_once
        if mode == SETTLE_ONCE:
            self.settled_once.add(rid)
        for c in charges:
            held = self.holds[c.key].pop(rid, None) is not None
            if mode == SETTLE or (mode == SETTLE_IF_HELD and (held or now >= lease_until)) or (
                    mode == SETTLE_ONCE and first):
                self.spent[c.key] += actual
            before = self.fired[c.key]
            level = sum(1 for t in c.thresholds if self.spent[c.key] >= t)
            self.fired[c.key] = max(before, level)
            out.append((self.spent[c.key], before, self.fired[c.key]))
        return out


@pytest.mark.server("redis-server")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=1, max_size=40))
def test_memory_and_redis_stores_agree_with_the_reference(redis_url, ops):
    limits = {KEYS[0]: 100, KEYS[1]: 150, KEYS[2]: 10**12}
    thresholds = {KEYS[0]: (50, 80, 100), KEYS[1]: (), KEYS[2]: (1, 10**11)}
    memory = MemoryStore()
    redis = RedisStore(redis_url, prefix=f"prop{uuid.uuid4().hex[:8]}", timeout_s=2.0)
    reference = Reference()
    now = time.time()  # Redis expires keys by its own clock: bucket expiry must be in the real future
    made: list[tuple[str, list[Charge], int, float]] = []
    try:
        for step in ops:
            if step[0] == "advance":
                now += step[1]
                continue
            if step[0] == "reserve":
                _, which, amount, enforce = step
                charges = [Charge(KEYS[i], limits[KEYS[i]], enforce[i], now + 10_000, thresholds[KEYS[i]])
                           for i in which]
                rid = f"r{len(made)}"
                expected = reference.reserve(rid, charges, amount, now, now + LEASE)
                for store in (memory, redis):
                    got = store.reserve(rid, charges, amount, now, now + LEASE)
                    assert (got.ok, got.states, got.failed) == expected, type(store).__name__
                if expected[0]:
                    made.append((rid, charges, amount, now + LEASE))
                continue
            if not made:
                continue
            if step[0] == "late_reserve":
                rid, charges, amount, until = made[step[1] % len(made)]
                # (only a reserve settled with SETTLE_ONCE can arrive late; after its lease it would hold nothing
                # that counts, marker or not)
                if rid in reference.settled_once and now < until:
                    for store in (memory, redis):
                        got = store.reserve(rid, charges, amount, now, until)
                        assert (got.ok, got.states) == (True, ()), type(store).__name__
                continue
            _, index, actual, mode = step
            rid, charges, _, until = made[index % len(made)]
            expected = reference.settle(rid, charges, actual, now, mode, until)
            for store in (memory, redis):
                got = [(o.spent, o.fired_before, o.fired_after)
                       for o in store.settle(rid, charges, actual, now, mode, until)]
                assert got == expected, (type(store).__name__, mode)
        for key in KEYS:  # usage() leaves out ended leases, before a reserve drops them, and after
            assert memory.usage(key, now) == redis.usage(key, now) == (reference.spent[key],
                                                                       reference.reserved(key, now))
            probe = [Charge(key, 10**15, False, now + 10_000)]
            expected = reference.reserve("probe", probe, 0, now, now + LEASE)
            assert memory.reserve("probe", probe, 0, now, now + LEASE).states == expected[1]
            assert redis.reserve("probe", probe, 0, now, now + LEASE).states == expected[1]
            assert memory.usage(key, now) == redis.usage(key, now) == (reference.spent[key], reference.reserved(key, now))
    finally:
        redis.reset()
        redis.close()


@pytest.mark.server("redis-server")
def test_settle_once_before_its_reserve_arrives_cancels_the_reserve_in_both_stores(redis_url):
    """A reserve that timed out may reach the store after the call was settled without it (a stalled server
    answers in its own time): that reserve must hold nothing, and the settlement counts once however often it
    is retried."""
    redis = RedisStore(redis_url, prefix=f"once{uuid.uuid4().hex[:8]}", timeout_s=2.0)
    now = time.time()
    charge = Charge("late|x|day:1", 1000, True, now + 10_000)
    try:
        for store in (MemoryStore(), redis):
            for _ in range(2):  # the settlement, then a retry of it
                [out] = store.settle("r1", [charge], 7, now, SETTLE_ONCE, now + LEASE)
                assert out.spent == 7
            assert store.reserve("r1", [charge], 500, now, now + LEASE).ok
            assert store.usage(charge.key, now) == (7, 0)
            # and when the reserve did arrive first, the same settlement releases its hold
            assert store.reserve("r2", [charge], 500, now, now + LEASE).ok
            assert store.usage(charge.key, now) == (7, 500)
            [out] = store.settle("r2", [charge], 3, now, SETTLE_ONCE, now + LEASE)
            assert store.usage(charge.key, now) == (10, 0)
            # a retried settlement of a held reservation counts once, unless its lease ended
            assert store.reserve("r3", [charge], 500, now, now + LEASE).ok
            store.settle("r3", [charge], 5, now)
            store.settle("r3", [charge], 5, now, SETTLE_IF_HELD, now + LEASE)
            assert store.usage(charge.key, now) == (15, 0)
            store.settle("r3", [charge], 5, now + LEASE, SETTLE_IF_HELD, now + LEASE)  # hold gone with its lease
            assert store.usage(charge.key, now) == (20, 0)
    finally:
        redis.reset()
        redis.close()
