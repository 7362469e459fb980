"""Budget stores: :class:`MemoryStore` (default, per process) and :class:`RedisStore` (shared)."""

from ..._lazy import lazy_names as _lazy_names
from .base import BudgetStore, Charge, ReserveOutcome, SettleOutcome, StoreUnavailable
from .memory import MemoryStore


# RedisStore imports the optional redis client only when asked for
__getattr__, __dir__ = _lazy_names(__name__, {"RedisStore": ".redis"})


__all__ = ["BudgetStore", "Charge", "MemoryStore", "RedisStore", "ReserveOutcome", "SettleOutcome", "StoreUnavailable"]
