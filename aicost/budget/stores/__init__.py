"""Budget stores: :class:`MemoryStore` (default, per process) and :class:`RedisStore` (shared)."""

from .base import BudgetStore, Charge, ReserveOutcome, SettleOutcome, StoreUnavailable
from .memory import MemoryStore


def __getattr__(name: str):  # RedisStore imports the optional redis client only when asked for
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(name)


__all__ = ["BudgetStore", "Charge", "MemoryStore", "RedisStore", "ReserveOutcome", "SettleOutcome", "StoreUnavailable"]
