"""In-memory vector index: exact brute-force cosine search with numpy, partitioned by request context.

Candidates are only ever compared within one context (same function, model, parameters, earlier conversation
and tenant scope), so a partition is small in practice; exact search then beats an approximate index on both
latency and correctness (no missed neighbours). One matrix per context grows by doubling; removal swaps the last
row into the hole, so memory stays proportional to live entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class _Partition:
    __slots__ = ("matrix", "keys", "texts", "pos", "size")

    def __init__(self, dim: int) -> None:
        self.matrix = np.empty((16, dim), dtype=np.float32)
        self.keys: list[str] = []
        self.texts: list[str] = []
        self.pos: dict[str, int] = {}
        self.size = 0


class MemoryVectorIndex:
    def __init__(self, dim: int, *, max_entries: int = 100_000) -> None:
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"MemoryVectorIndex(max_entries=...) must be a positive int, got {max_entries!r}")
        self.dim = dim
        self.max_entries = max_entries
        self._parts: dict[str, _Partition] = {}
        self._where: OrderedDict[str, str] = OrderedDict()  # key -> context, oldest first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._where)

    def add(self, context: str, key: str, text: str, vector: np.ndarray) -> None:
        with self._lock:
            if key in self._where:
                self._remove_locked(key)
            part = self._parts.get(context)
            if part is None:
                part = self._parts[context] = _Partition(self.dim)
            if part.size == part.matrix.shape[0]:
                grown = np.empty((part.size * 2, self.dim), dtype=np.float32)
                grown[: part.size] = part.matrix[: part.size]
                part.matrix = grown
            part.matrix[part.size] = vector
            part.keys.append(key)
            part.texts.append(text)
            part.pos[key] = part.size
            part.size += 1
            self._where[key] = context
            while len(self._where) > self.max_entries:
                self._remove_locked(next(iter(self._where)))

    def remove(self, key: str) -> None:
        with self._lock:
            if key in self._where:
                self._remove_locked(key)

    def clear(self, prefix: str = "") -> None:
        """Forget every vector whose key starts with ``prefix`` (all when empty)."""
        with self._lock:
            if not prefix:
                self._parts.clear()
                self._where.clear()
                return
            for key in [k for k in self._where if k.startswith(prefix)]:
                self._remove_locked(key)

    def _remove_locked(self, key: str) -> None:
        context = self._where.pop(key)
        part = self._parts[context]
        i = part.pos.pop(key)
        last = part.size - 1
        if i != last:
            part.matrix[i] = part.matrix[last]
            part.keys[i] = part.keys[last]
            part.texts[i] = part.texts[last]
            part.pos[part.keys[i]] = i
        part.keys.pop()
        part.texts.pop()
        part.size -= 1
        if part.size == 0:
            del self._parts[context]

    def search(self, context: str, vector: np.ndarray, k: int, min_similarity: float) -> list[tuple[str, str, float]]:
        """Up to ``k`` (key, text, cosine) with cosine >= ``min_similarity``, best first."""
        with self._lock:
            part = self._parts.get(context)
            if part is None or part.size == 0:
                return []
            sims = part.matrix[: part.size] @ vector
            if part.size > k:
                top = np.argpartition(-sims, k)[:k]
            else:
                top = np.arange(part.size)
            top = top[np.argsort(-sims[top])]
            return [(part.keys[i], part.texts[i], float(sims[i])) for i in top if sims[i] >= min_similarity]
