"""In-process budget store: one lock, plain integers, no I/O.

A ``threading.Lock`` held for a few dictionary operations is safe for threads and for asyncio alike (nothing
awaits while it is held, so the event loop never blocks on it for longer than those operations).
"""

from __future__ import annotations

import heapq
import threading
from typing import Sequence

from .base import Charge, ReserveOutcome, SettleOutcome


class _Bucket:
    __slots__ = ("spent", "reserved", "fired", "holds", "lease_heap", "expires_at")

    def __init__(self, expires_at: float) -> None:
        self.spent = 0
        self.reserved = 0
        self.fired = 0
        self.holds: dict[str, tuple[int, float]] = {}  # reservation id -> (amount, lease end)
        self.lease_heap: list[tuple[float, str]] = []
        self.expires_at = expires_at

    def expire_leases(self, now: float) -> None:
        heap = self.lease_heap
        while heap and heap[0][0] <= now:
            _, rid = heapq.heappop(heap)
            hold = self.holds.pop(rid, None)
            if hold is not None:
                self.reserved -= hold[0]

    def release(self, rid: str) -> None:
        hold = self.holds.pop(rid, None)
        if hold is not None:
            self.reserved -= hold[0]
        heap = self.lease_heap
        if not self.holds:
            heap.clear()
        elif len(heap) > 2 * len(self.holds) + 64:  # settled holds linger in the heap: compact now and then
            self.lease_heap = [(until, r) for r, (_, until) in self.holds.items()]
            heapq.heapify(self.lease_heap)


class MemoryStore:
    """The default store. Budgets are per process: use :class:`RedisStore` to share them between processes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._next_sweep = 0.0

    def _bucket(self, charge: Charge) -> _Bucket:
        bucket = self._buckets.get(charge.key)
        if bucket is None:
            bucket = self._buckets[charge.key] = _Bucket(charge.expires_at)
        return bucket

    def _sweep(self, now: float) -> None:
        # Forget buckets of windows long over, so a per-user budget does not grow memory forever.
        if now >= self._next_sweep:
            self._next_sweep = now + 60.0
            for key in [k for k, b in self._buckets.items() if b.expires_at <= now]:
                del self._buckets[key]

    def reserve(
        self, reservation_id: str, charges: Sequence[Charge], amount: int, now: float, lease_until: float
    ) -> ReserveOutcome:
        with self._lock:
            self._sweep(now)
            buckets = []
            states = []
            for i, charge in enumerate(charges):
                bucket = self._bucket(charge)
                if bucket.lease_heap:
                    bucket.expire_leases(now)
                states.append((bucket.spent, bucket.reserved))
                if charge.enforce and bucket.spent + bucket.reserved + amount > charge.limit:
                    return ReserveOutcome(False, tuple(states), i)
                buckets.append(bucket)
            for bucket in buckets:
                bucket.reserved += amount
                bucket.holds[reservation_id] = (amount, lease_until)
                heapq.heappush(bucket.lease_heap, (lease_until, reservation_id))
            return ReserveOutcome(True, tuple(states))

    def settle(self, reservation_id: str, charges: Sequence[Charge], actual: int, now: float) -> list[SettleOutcome]:
        out = []
        with self._lock:
            for charge in charges:
                bucket = self._bucket(charge)
                bucket.release(reservation_id)
                bucket.spent += actual
                before = bucket.fired
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

    def close(self) -> None:
        with self._lock:
            self._buckets.clear()
