"""Exact-tier stores: where entries live, with TTL and a size bound.

A store maps a full key (namespace + hash) to an :class:`Entry`. The in-memory store is the default: an LRU
``OrderedDict`` with a per-entry deadline, safe under threads. Shared stores (Redis, PostgreSQL) implement the
same four methods, so the decorator does not know which one it talks to.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Protocol

from .. import _fork
from .checks import check_int
from .entry import Entry


class Store(Protocol):
    def get(self, key: str) -> Entry | None: ...

    def put(self, key: str, entry: Entry, ttl: float | None) -> None: ...

    def delete(self, key: str) -> bool: ...

    def clear(self, prefix: str = "") -> int: ...


class MemoryStore:
    """Thread-safe LRU map with per-entry TTL.

    ``on_remove(key)`` is called (outside the lock) for every entry that leaves the store by eviction, expiry,
    deletion or clearing, so a semantic index built over the store forgets the same entries.
    """

    def __init__(self, max_entries: int = 10_000, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = check_int("MemoryStore(max_entries=...)", max_entries, minimum=1)
        self._clock = clock
        self._data: OrderedDict[str, tuple[Entry, float | None]] = OrderedDict()
        self._lock = _fork.lock()
        self.on_remove: Callable[[str], None] | None = None
        self.evictions = 0

    def get(self, key: str) -> Entry | None:
        expired = False
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            entry, deadline = item
            if deadline is not None and self._clock() >= deadline:
                del self._data[key]
                expired = True
            else:
                self._data.move_to_end(key)
        if expired:
            self._removed([key])
            return None
        return entry

    def put(self, key: str, entry: Entry, ttl: float | None) -> None:
        deadline = None if ttl is None else self._clock() + ttl
        evicted = []
        with self._lock:
            self._data[key] = (entry, deadline)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                old, _ = self._data.popitem(last=False)
                evicted.append(old)
            self.evictions += len(evicted)
        self._removed(evicted)

    def delete(self, key: str) -> bool:
        with self._lock:
            found = self._data.pop(key, None) is not None
        if found:
            self._removed([key])
        return found

    def clear(self, prefix: str = "") -> int:
        with self._lock:
            keys = [k for k in self._data if k.startswith(prefix)]
            for k in keys:
                del self._data[k]
        self._removed(keys)
        return len(keys)

    def __len__(self) -> int:
        return len(self._data)

    def _removed(self, keys: list[str]) -> None:
        if keys and self.on_remove is not None:
            for k in keys:
                self.on_remove(k)
