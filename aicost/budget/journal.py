"""Settlements the store could not take, kept until it can.

A call that went ahead while the store was unreachable (fail-open), or whose settlement timed out, has still
spent money; forgetting it would let a budget overrun by whatever was spent during the outage. The guard keeps
such settlements here and applies them, oldest first, after the next store operation that succeeds. Each one
carries the settle mode that makes applying it again harmless (see :mod:`.stores.base`), because a command that
timed out may have run on the server anyway.

The journal lives in the process: settlements still pending when the process exits are lost (the process's
last ``close()`` makes one attempt). It is bounded: past ``capacity`` entries the newest are dropped, counted
and logged, never silently. Calls that held nothing (fail-open during an outage) and were never sent are merged
per set of budget buckets, so a long outage costs one entry per bucket set, plus one per call whose reserve was
tried and got no answer (about one per the store's retry interval: that settlement must name its reservation).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .. import _fork
from .money import to_usd
from .stores.base import SETTLE, SETTLE_IF_HELD, SETTLE_ONCE, Charge, SettleOutcome, StoreUnavailable, sent_mode

logger = logging.getLogger("aicost")

DEFAULT_CAPACITY = 10_000
_BATCH = 200  # settlements applied per store round trip
_MAX_REJECTIONS = 5  # a settlement the server keeps rejecting is dropped (and counted) after this many tries
_NOT_SENT = object()


@dataclass(slots=True)
class Pending:
    rid: str
    charges: Sequence[Charge]
    compiled: Sequence[Any]  # the guard's compiled budgets, for threshold events
    actual: int
    mode: int
    lease_until: float
    held: bool  # the reservation is known to hold an amount in the store
    model: str | None
    provider: str | None
    rejections: int = 0

    def after_unknown_outcome(self) -> None:
        """The store may have applied this settlement: make the next attempt safe to apply twice."""
        if self.mode == SETTLE:
            self.mode = SETTLE_IF_HELD if self.held else SETTLE_ONCE


class SettlementJournal:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: deque[Pending] = deque()
        self._merged: dict[tuple[str, ...], Pending] = {}  # never sent, holding nothing: spend per bucket set
        self._lock = _fork.lock()
        self._draining = _fork.lock()
        self.dropped = 0  # settlements lost to overflow, ever
        self.dropped_nanos = 0
        self.applied = 0  # settlements applied from the journal, ever
        self._warned_overflow = False
        _fork.reset_in_child(self)

    def _after_fork_in_child(self) -> None:
        """The settlements held at a fork are the parent's to apply: applied by a child as well, they would be
        counted twice in a store the processes share. The child starts an empty journal with fresh counts."""
        self.__init__(self.capacity)  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self._entries) + len(self._merged)

    def add(self, entry: Pending) -> None:
        with self._lock:
            kept = self._keep(entry)
        if not kept:
            self._drop(entry)

    def _keep(self, entry: Pending) -> bool:
        room = len(self) < self.capacity
        if _mergeable(entry):
            return self._merge(entry, room)
        if room:
            self._entries.append(entry)
        return room

    def _merge(self, entry: Pending, room: bool) -> bool:
        """Add a mergeable entry to its bucket set's entry, or start one if there is ``room``."""
        key = tuple(c.key for c in entry.charges)
        merged = self._merged.get(key)
        if merged is not None:
            merged.actual += entry.actual
            return True
        if room:
            self._merged[key] = entry
        return room

    def _drop(self, entry: Pending) -> None:
        with self._lock:
            self.dropped += 1
            self.dropped_nanos += entry.actual
            first = not self._warned_overflow
            self._warned_overflow = True
        if first:
            logger.warning(
                "aicost: a budget settlement of $%s was dropped: the journal is full (%d settlements waiting for "
                "the store) or the store kept rejecting it; drops are counted (BudgetGuard.journal_stats())",
                to_usd(entry.actual), len(self),
            )

    def _take(self) -> list[Pending]:
        with self._lock:
            batch: list[Pending] = []
            while self._entries and len(batch) < _BATCH:
                batch.append(self._entries.popleft())
            while self._merged and len(batch) < _BATCH:
                batch.append(self._merged.pop(next(iter(self._merged))))
            return batch

    def _give_back(self, batch: list[Pending]) -> None:
        with self._lock:
            # back in front (oldest first), except that merged spend merges again; never dropped (it was kept)
            for entry in reversed(batch):
                if _mergeable(entry):
                    self._merge(entry, room=True)
                else:
                    self._entries.appendleft(entry)

    def drain(self, store: Any, now: float, on_applied: Callable[[Pending, list[SettleOutcome]], None],
              max_batches: int = 1) -> None:
        """Apply up to ``max_batches`` batches; raises nothing. One thread drains at a time, others skip."""
        skipping = getattr(store, "skipping", None)
        if skipping is not None and skipping():  # the store is marked down: nothing would be sent
            return
        if not self._draining.acquire(blocking=False):
            return
        try:
            for _ in range(max_batches):
                batch = self._take()
                if not batch:
                    break
                try:
                    results = _settle_batch(store, batch, now)
                except StoreUnavailable as exc:
                    if exc.maybe_applied:
                        for entry in batch:
                            entry.after_unknown_outcome()
                    self._give_back(batch)
                    return
                kept = []
                for entry, outcomes in zip(batch, results):
                    if outcomes is _NOT_SENT:
                        kept.append(entry)
                    elif outcomes is None:  # rejected by the server (e.g. out of memory), or no reply
                        entry.after_unknown_outcome()
                        entry.rejections += 1
                        if entry.rejections < _MAX_REJECTIONS:
                            kept.append(entry)
                        else:
                            self._drop(entry)
                    else:
                        self.applied += 1
                        on_applied(entry, outcomes)
                if kept:
                    self._give_back(kept)
                    return
            with self._lock:
                empty = not self._entries and not self._merged
                dropped, nanos = self.dropped, self.dropped_nanos
                report = empty and self._warned_overflow
                if report:
                    self._warned_overflow = False
            if report:
                logger.warning("aicost: the budget store took the journalled settlements; %d settlements "
                               "($%s) had been dropped (journal full, or rejected by the store)", dropped,
                               to_usd(nanos))
        finally:
            self._draining.release()


def _mergeable(entry: Pending) -> bool:
    """Never sent and holding nothing: only its cost matters, so such entries add up per bucket set."""
    return entry.mode == SETTLE and not entry.held


def _settle_batch(store: Any, batch: list[Pending], now: float) -> list[Any]:
    """Per entry: its outcomes, None (rejected or no reply: it may have run) or _NOT_SENT."""
    many = getattr(store, "settle_many", None)
    if many is not None:
        return many([(e.rid, e.charges, e.actual, sent_mode(e.mode, e.held), e.lease_until) for e in batch], now)
    out: list[Any] = []
    for i, e in enumerate(batch):
        try:
            out.append(store.settle(e.rid, e.charges, e.actual, now, sent_mode(e.mode, e.held), e.lease_until))
        except StoreUnavailable as exc:
            if not out:
                raise
            # the ones before were applied: report them; this one may have run, the rest were not sent
            out.append(None if exc.maybe_applied else _NOT_SENT)
            out.extend([_NOT_SENT] * (len(batch) - i - 1))
            return out
    return out
