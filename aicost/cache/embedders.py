"""Embedders turn the user's variable text into a unit vector; cosine similarity is then a dot product.

Two are built in: :class:`HashedNgramEmbedder` (numpy only, ~0.2 ms, no model: good at "same words, other
formatting", blind to meaning) and :class:`~aicost.cache.minilm.MiniLMEmbedder` (all-MiniLM-L6-v2, ~12-20 ms,
understands paraphrases). Any object with ``name``, ``dim`` and ``embed(texts) -> ndarray`` (unit rows) works.
Neither can tell a paraphrase from a near-miss on its own ("5 miles to km" vs "5 km to miles" is cos 0.99 for
MiniLM), which is why the semantic tier adds guards and a verifier (see :mod:`.guards`, :mod:`.verify`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Protocol, Sequence

import numpy as np

from .. import _fork
from .checks import check_finite, check_int, refuse

_WORD = re.compile(r"\w+", re.UNICODE)


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class HashedNgramEmbedder:
    """Signed feature hashing of character 3-5-grams and word uni/bi-grams into ``dim`` buckets (L2-normalised)."""

    name = "ngram"

    def __init__(self, dim: int = 1024, *, char_ngrams: tuple[int, int] = (3, 5), word_weight: float = 2.0) -> None:
        self.dim = check_int("HashedNgramEmbedder(dim=...)", dim, minimum=16)
        accepted = "a (shortest, longest) pair of ints with 1 <= shortest <= longest"
        if (not isinstance(char_ngrams, tuple) or len(char_ngrams) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in char_ngrams)):
            refuse("HashedNgramEmbedder(char_ngrams=...)", accepted, char_ngrams, wrong_type=True)
        if not 1 <= char_ngrams[0] <= char_ngrams[1]:
            refuse("HashedNgramEmbedder(char_ngrams=...)", accepted, char_ngrams, wrong_type=False)
        self.char_ngrams = char_ngrams
        self.word_weight = check_finite("HashedNgramEmbedder(word_weight=...)", word_weight, minimum=0)
        self._memo: dict[str, tuple[int, float]] = {}

    def _bucket(self, feature: str) -> tuple[int, float]:
        hit = self._memo.get(feature)
        if hit is None:
            h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
            hit = (h % self.dim, 1.0 if (h >> 63) & 1 else -1.0)
            if len(self._memo) < 200_000:
                self._memo[feature] = hit
        return hit

    def _features(self, text: str) -> list[tuple[str, float]]:
        words = _WORD.findall(text.casefold())
        feats: list[tuple[str, float]] = [(f"w:{w}", self.word_weight) for w in words]
        feats += [(f"b:{a} {b}", self.word_weight) for a, b in zip(words, words[1:])]
        lo, hi = self.char_ngrams
        for w in words:
            padded = f"<{w}>"
            for n in range(lo, hi + 1):
                feats += [(f"c:{padded[i:i + n]}", 1.0) for i in range(max(1, len(padded) - n + 1))]
        return feats

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature, weight in self._features(text):
                index, sign = self._bucket(feature)
                out[row, index] += sign * weight
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out


_EMBEDDERS = "'minilm', 'ngram' or an embedder object with name (str), dim (positive int) and embed(texts)"
_shared: dict[str, Any] = {}
_shared_lock = _fork.lock()


def resolve_embedder(embedder: Any) -> Any:
    """``"minilm"`` / ``"ngram"`` or an embedder object; validated at configure time.

    Named embedders are loaded once per process and shared: every ``Semantic("minilm")`` would otherwise hold
    its own 90 MB copy of the weights.
    """
    if isinstance(embedder, str):
        if embedder not in ("ngram", "minilm"):
            refuse("Semantic(embedder=...)", _EMBEDDERS, embedder, wrong_type=False)
        with _shared_lock:
            if embedder not in _shared:
                if embedder == "ngram":
                    _shared[embedder] = HashedNgramEmbedder()
                else:
                    from .minilm import MiniLMEmbedder

                    _shared[embedder] = MiniLMEmbedder()
            return _shared[embedder]
    dim = getattr(embedder, "dim", None)
    if (not isinstance(getattr(embedder, "name", None), str) or not callable(getattr(embedder, "embed", None))
            or isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        refuse("Semantic(embedder=...)", _EMBEDDERS, embedder, wrong_type=True)
    return embedder
