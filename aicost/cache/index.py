"""In-memory vector index: brute-force cosine search with numpy, partitioned by request context.

Candidates are only ever compared within one context (same function, model, parameters, earlier conversation
and tenant scope), so a partition is usually small, and up to ``exact_below`` entries (20k) it is searched
exactly. A larger partition is first narrowed by 256-bit SimHash codes (signs of a fixed random projection:
their Hamming distance estimates the angle) to the ``rescore`` nearest codes, which are then scored exactly:
at 100k x 384-d that reads 3 MB of codes instead of 150 MB of floats. A neighbour is missed only when more than
``rescore`` (256) entries have closer codes, far below the similarity a hit needs. One matrix per context grows
by doubling; removal swaps the last row into the hole, so memory stays proportional to live entries.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import _fork
from .checks import check_int


_CODE_BITS = 256


def _projection(dim: int) -> np.ndarray:
    """A fixed random Gaussian projection (seeded: the same codes in every process)."""
    return np.random.default_rng(20261204).standard_normal((dim, _CODE_BITS)).astype(np.float32)


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


def _hamming(codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Bits that differ between each row of ``codes`` and ``query`` (np.bitwise_count from numpy 2.0 on; a byte
    table before)."""
    xor = codes ^ query
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(xor).sum(axis=1, dtype=np.uint16)
    return _POPCOUNT8[xor.view(np.uint8)].sum(axis=1, dtype=np.uint16)


def _codes(vectors: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """SimHash: one bit per projection sign, packed into uint64 words (rows of 4 words for 256 bits)."""
    bits = np.packbits(np.atleast_2d(vectors) @ projection > 0, axis=-1)
    return bits.view(np.uint64)


class _Partition:
    __slots__ = ("matrix", "codes", "keys", "texts", "pos", "size")

    def __init__(self, dim: int) -> None:
        self.matrix = np.empty((16, dim), dtype=np.float32)
        self.codes = np.empty((16, _CODE_BITS // 64), dtype=np.uint64)
        self.keys: list[str] = []
        self.texts: list[str] = []
        self.pos: dict[str, int] = {}
        self.size = 0


class MemoryVectorIndex:
    def __init__(self, dim: int, *, max_entries: int = 100_000, exact_below: int = 20_000,
                 rescore: int = 256) -> None:
        self.dim = check_int("MemoryVectorIndex(dim=...)", dim, minimum=1)
        self.max_entries = check_int("MemoryVectorIndex(max_entries=...)", max_entries, minimum=1)
        self.exact_below = check_int("MemoryVectorIndex(exact_below=...)", exact_below, minimum=0)
        self.rescore = check_int("MemoryVectorIndex(rescore=...)", rescore, minimum=1)
        self._projection = _projection(dim)
        self._parts: dict[str, _Partition] = {}
        self._where: OrderedDict[str, str] = OrderedDict()  # key -> context, oldest first
        self._lock = _fork.lock()

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
                grown_codes = np.empty((part.size * 2, part.codes.shape[1]), dtype=np.uint64)
                grown_codes[: part.size] = part.codes[: part.size]
                part.codes = grown_codes
            part.matrix[part.size] = vector
            part.codes[part.size] = _codes(np.asarray(vector, dtype=np.float32), self._projection)[0]
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
            part.codes[i] = part.codes[last]
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
            if part.size > max(self.exact_below, self.rescore):
                query_code = _codes(np.asarray(vector, dtype=np.float32), self._projection)[0]
                distance = _hamming(part.codes[: part.size], query_code)
                rows = np.argpartition(distance, self.rescore)[: self.rescore]
            else:
                rows = np.arange(part.size)
            sims = part.matrix[rows] @ vector
            top = np.argpartition(-sims, k)[:k] if len(rows) > k else np.arange(len(rows))
            top = top[np.argsort(-sims[top])]
            return [(part.keys[rows[i]], part.texts[rows[i]], float(sims[i])) for i in top
                    if sims[i] >= min_similarity]
