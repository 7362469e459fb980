"""In-process budget store: one lock, plain integers, no I/O.

A ``threading.Lock`` held for a few dictionary operations is safe for threads and for asyncio alike (nothing
awaits while it is held, so the event loop never blocks on it for longer than those operations).
"""

from __future__ import annotations

from typing import Sequence

from ... import _fork
from .base import ONCE_MARKER_MIN_SECONDS, SETTLE, SETTLE_IF_HELD, SETTLE_ONCE, Charge, ReserveOutcome, SettleOutcome


class _Bucket:
    __slots__ = ("spent", "reserved", "fired", "holds", "next_scan", "expires_at")

    def __init__(self, expires_at: float) -> None:
        self.spent = 0
        self.reserved = 0
        self.fired = 0
        self.holds: dict[str, tuple[int, float]] = {}  # reservation id -> (amount, lease end)
        self.next_scan = float("inf")  # earliest lease end among holds (or later): when a scan can free any
        self.expires_at = expires_at

    def expire_leases(self, now: float) -> None:
        # Leases last long (an hour by default) and are normally settled well before: scanning only when the
        # earliest one may have ended keeps the common path to one float comparison.
        if now < self.next_scan:
            return
        earliest = float("inf")
        for rid, (amount, until) in list(self.holds.items()):
            if until <= now:
                del self.holds[rid]
                self.reserved -= amount
            elif until < earliest:
                earliest = until
        self.next_scan = earliest


class MemoryStore:
    """The default store. Budgets are per process: use :class:`RedisStore` to share them between processes.
    A forked child starts with no spend and no holds: the parent's are the parent's (its calls in flight at the
    fork settle there, and a hold copied into the child would never be released before its lease ran out).

    ``configure_budgets(store="memory")`` uses one instance per process, so configuring again (a reload) keeps
    the spend of the current windows. It never fails, so nothing it does needs retrying; it still implements
    every settle mode of :mod:`.base`, as the reference for other stores.
    """

    identity = None  # not shared with anything outside this object
    never_loses_answers = True  # see base.never_loses_answers: the guard sends it no SETTLE_ONCE of its own

    def __init__(self) -> None:
        self._lock = _fork.lock()
        self._buckets: dict[str, _Bucket] = {}
        self._settled_once: dict[str, float] = {}  # SETTLE_ONCE markers: reservation id -> lease end
        self._next_sweep = 0.0
        _fork.reset_in_child(self)

    def _after_fork_in_child(self) -> None:
        self.__init__()  # type: ignore[misc]

    def _sweep(self, now: float) -> None:
        # Forget buckets of windows long over, so a per-user budget does not grow memory forever.
        self._next_sweep = now + 60.0
        for key in [k for k, b in self._buckets.items() if b.expires_at <= now]:
            del self._buckets[key]
        for rid in [r for r, until in self._settled_once.items() if until <= now]:
            del self._settled_once[rid]

    def reserve(
        self, reservation_id: str, charges: Sequence[Charge], amount: int, now: float, lease_until: float
    ) -> ReserveOutcome:
        buckets = self._buckets
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            if reservation_id in self._settled_once:  # already settled once: hold nothing
                return ReserveOutcome(True, ())
            held = []
            states = []
            for i, charge in enumerate(charges):
                bucket = buckets.get(charge.key)
                if bucket is None:
                    bucket = buckets[charge.key] = _Bucket(charge.expires_at)
                bucket.expire_leases(now)
                states.append((bucket.spent, bucket.reserved))
                if charge.enforce and bucket.spent + bucket.reserved + amount > charge.limit:
                    return ReserveOutcome(False, tuple(states), i)
                held.append(bucket)
            hold = (amount, lease_until)
            for bucket in held:
                bucket.reserved += amount
                bucket.holds[reservation_id] = hold
                if lease_until < bucket.next_scan:
                    bucket.next_scan = lease_until
            return ReserveOutcome(True, tuple(states))

    def settle(self, reservation_id: str, charges: Sequence[Charge], actual: int, now: float,
               mode: int = SETTLE, lease_until: float = 0.0) -> list[SettleOutcome]:
        out = []
        buckets = self._buckets
        with self._lock:
            applied = True
            if mode == SETTLE_ONCE:
                applied = reservation_id not in self._settled_once
                self._settled_once[reservation_id] = max(lease_until, now + ONCE_MARKER_MIN_SECONDS)
            for charge in charges:
                bucket = buckets.get(charge.key)
                if bucket is None:  # swept (settled long after its window) or never reserved
                    bucket = buckets[charge.key] = _Bucket(charge.expires_at)
                hold = bucket.holds.pop(reservation_id, None)
                if hold is not None:
                    bucket.reserved -= hold[0]
                    if not bucket.holds:
                        bucket.next_scan = float("inf")
                if applied and (mode != SETTLE_IF_HELD or hold is not None or now >= lease_until):
                    bucket.spent += actual
                before = bucket.fired
                if charge.thresholds:
                    level = sum(1 for t in charge.thresholds if bucket.spent >= t)
                    if level > before:
                        bucket.fired = level
                out.append(SettleOutcome(bucket.spent, before, bucket.fired))
        return out

    def usage(self, key: str, now: float) -> tuple[int, int]:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return (0, 0)
            bucket.expire_leases(now)
            return (bucket.spent, bucket.reserved)

    def reset(self) -> None:
        """Forget all spend and holds (tests, or a deliberate budget reset)."""
        with self._lock:
            self._buckets.clear()
            self._settled_once.clear()

    def close(self) -> None:
        """Nothing to release; the spend stays with this object (a guard replaced by a reload hands it on)."""
