"""What a budget store must do: reserve against several budgets atomically, then settle.

The guard never reads a balance and then writes it back (the check-then-spend race that lets peers' budgets be
overspent under load). It asks the store for one atomic operation: "if every enforced bucket can hold
``amount`` more, hold it in all of them; otherwise hold nothing and tell me which one said no". Settling
releases the hold and adds the real cost. Holds are leases: a process that dies mid-call stops blocking the
budget once its lease expires.

A store that cannot be reached may still have run the command (a reply lost to a timeout), so a settlement
that failed is retried later with a *mode* that makes the retry safe to apply twice:

* ``SETTLE``: release this reservation's hold (if any) and add the actual cost. The first attempt.
* ``SETTLE_IF_HELD``: a retry of a settlement whose first attempt may have run: apply only in buckets where the
  hold is still there (a settlement removes it) or where its lease has ended.
* ``SETTLE_ONCE``: for a reservation whose outcome is unknown (the reserve timed out) or that was never made
  (the call went ahead while the store was unreachable, or work the vendor began unasked): apply once, recorded
  by a marker on the reservation id; a reserve with that id that reaches the store later holds nothing. The
  marker lasts until ``lease_until``, and at least ``ONCE_MARKER_MIN_SECONDS``: a reservation whose reserve was
  never sent passes ``lease_until=now`` (no reserve can arrive late; the marker only has to outlast a retry).

All amounts are integer nanodollars (see :mod:`aicost.budget.money`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True, slots=True)
class Charge:
    """One budget bucket (budget x scope value x window) a call counts against."""

    key: str  # "<budget name>|<scope value>|<window key>"
    limit: int
    enforce: bool  # False for warn / callback budgets: counted, never refused
    expires_at: float  # epoch s after which the bucket can be forgotten
    thresholds: tuple[int, ...] = ()  # ascending, in nanodollars
    window_end: float = 0.0  # epoch s when the budget's window resets (for messages; stores ignore it)
    # The scope value and window key in ``key``, for messages (stores ignore them): carried, never parsed back out
    # of ``key``, where a value may itself contain '|' (customer="acme|eu").
    scope_value: str = ""
    window: str = ""


@dataclass(frozen=True, slots=True)
class ReserveOutcome:
    ok: bool
    # Per charge (spent, reserved) as found inside the atomic operation, before this call's hold; when the
    # reservation failed, only the charges up to and including the failing one are present.
    states: tuple[tuple[int, int], ...]
    failed: int = -1  # index of the enforced charge that could not hold the amount


@dataclass(frozen=True, slots=True)
class SettleOutcome:
    spent: int  # settled spend of the bucket after this call
    fired_before: int  # number of thresholds that had already fired this window
    fired_after: int  # number fired now (fire thresholds[fired_before:fired_after])


SETTLE, SETTLE_IF_HELD, SETTLE_ONCE = 0, 1, 2
ONCE_MARKER_MIN_SECONDS = 600.0  # a SETTLE_ONCE marker lasts until the lease ends, and at least this long


def sent_mode(mode: int, held: bool) -> int:
    """The mode a settlement is sent with. A reservation that holds nothing (never made: the call went ahead
    while the store was unreachable, or work the vendor began unasked) is settled with ``SETTLE_ONCE`` from the
    first attempt. Its marker is the only thing in the store that tells a retry, after an answer that was lost,
    whether the first attempt ran; without it the retry would add the spend a second time."""
    return SETTLE_ONCE if mode == SETTLE and not held else mode


def never_loses_answers(store: object) -> bool:
    """True for a store whose every command is answered (in-process, like :class:`MemoryStore`): no settlement
    is ever retried after a lost answer, so one that holds nothing needs no ``SETTLE_ONCE`` marker."""
    return getattr(store, "never_loses_answers", False) is True


class StoreUnavailable(Exception):
    """The store could not be reached in time; the guard applies its fail-open / fail-closed policy.

    ``maybe_applied``: False only when the command was certainly not sent (the store was skipped while marked
    down); otherwise it may have run on the server even though no reply came back.
    """

    def __init__(self, message: str, *, maybe_applied: bool = True) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class BudgetStore(Protocol):
    def reserve(
        self, reservation_id: str, charges: Sequence[Charge], amount: int, now: float, lease_until: float
    ) -> ReserveOutcome: ...

    def settle(
        self, reservation_id: str, charges: Sequence[Charge], actual: int, now: float,
        mode: int = SETTLE, lease_until: float = 0.0,
    ) -> list[SettleOutcome]:
        """``mode`` and ``lease_until`` (the reservation's lease end) are described in the module docstring."""
        ...

    def usage(self, key: str, now: float) -> tuple[int, int]:
        """(spent, reserved) of one bucket; (0, 0) when it has no activity."""
        ...

    def close(self) -> None: ...
