"""The opt-in semantic tier: serve a stored answer to a *differently worded* request with the same meaning.

A candidate must pass, in order: the same context (function, model, parameters, earlier conversation, tenant:
only the user's variable text may differ), cosine similarity >= ``threshold``, every guard, and the verifier.
Thresholds were chosen per embedder on the labelled development sets in tests/fixtures/cache/ (hard_dev.tsv,
pairs.tsv; see benchmarks/cache_eval.py and docs/cache.md): the lowest measured with no wrong hit.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

import numpy as np

from .. import _fork
from ..pricing.cost import MONEY
from .checks import check_fraction, check_int, refuse
from .embedders import resolve_embedder
from .entry import Entry
from .guards import Guards
from .index import MemoryVectorIndex
from .verify import LexicalVerifier

# With all guards and the lexical verifier, 0.50-0.80 served no wrong answer on the development sets; lower
# thresholds gained recall (benchmarks/cache_eval.py, docs/cache.md "Measured").
DEFAULT_THRESHOLDS = {"minilm": 0.60, "ngram": 0.50}
FALLBACK_THRESHOLD = 0.90
_INDEX_METHODS = ("add", "search", "remove", "clear")


@dataclass(slots=True)
class Match:
    entry: Entry | None = None
    key: str | None = None
    similarity: float | None = None
    verifier_cost: Decimal | None = None
    veto: str | None = None  # guard name, "verifier", or "threshold" for the best rejected candidate


class Semantic:
    """Semantic tier configuration: ``aicost.cache(prompt="question", semantic=aicost.cache.Semantic())``.

    ``embedder``: "minilm" (default), "ngram" or an embedder object. ``threshold``: minimum cosine (default:
    the calibrated value for the embedder). ``guards``: a :class:`Guards` (``Guards(numbers=False)`` to relax
    one). ``verifier``: "lexical" (default), ``None`` (guards only: lower precision, see the benchmark), an
    :class:`~aicost.cache.LLMJudge`, or any ``(query, cached, similarity) -> (bool, cost)`` callable.
    ``index``: a vector index (default: in memory, or the store's own when it is a :class:`PgVectorStore`).
    """

    def __init__(
        self,
        embedder: Any = "minilm",
        *,
        threshold: float | None = None,
        guards: Guards | None = None,
        verifier: Any = "lexical",
        index: Any = None,
        top_k: int = 3,
        max_text_chars: int = 2000,
    ) -> None:
        self.embedder = resolve_embedder(embedder)
        if threshold is None:
            threshold = DEFAULT_THRESHOLDS.get(getattr(self.embedder, "name", ""), FALLBACK_THRESHOLD)
        self.threshold = check_fraction("Semantic(threshold=...)", threshold, "a cosine in (0, 1] or None")
        if guards is None:
            guards = Guards()
        if not isinstance(guards, Guards):
            refuse("Semantic(guards=...)", "an aicost.cache.Guards(...) or None", guards, wrong_type=True)
        self.guards = guards
        if isinstance(verifier, str) and verifier == "lexical":
            verifier = LexicalVerifier()
        if verifier is not None and (isinstance(verifier, str) or not callable(verifier)):
            refuse("Semantic(verifier=...)", "'lexical', None, an aicost.cache.LLMJudge or a "
                   "(query, cached, similarity) -> (accepted, cost) callable", verifier, wrong_type=True)
        if isinstance(verifier, LexicalVerifier):
            verifier.with_embedder(self.embedder)
        self.verifier: Callable[[str, str, float], tuple[bool, Decimal | None]] | None = verifier
        self.top_k = check_int("Semantic(top_k=...)", top_k, minimum=1)
        self.max_text_chars = check_int("Semantic(max_text_chars=...)", max_text_chars, minimum=1)
        missing = [m for m in _INDEX_METHODS if not callable(getattr(index, m, None))]
        if index is not None and missing:
            refuse("Semantic(index=...)", "None (the store's own index, or one in memory) or a vector index with "
                   + "/".join(_INDEX_METHODS) + " (MemoryVectorIndex)", index, wrong_type=True)
        self.index = index

    def bind(self, store: Any, prefix: str) -> "SemanticRuntime":
        index = self.index
        if index is None:
            shared = getattr(store, "vector_index", None)
            index = shared(self.embedder) if callable(shared) else MemoryVectorIndex(self.embedder.dim)
        runtime = SemanticRuntime(self, index, prefix)
        # Entries leaving an in-memory store (LRU, TTL, invalidation) leave the index too.
        if hasattr(store, "on_remove") and store.on_remove is None and isinstance(index, MemoryVectorIndex):
            store.on_remove = index.remove
        return runtime


class SemanticRuntime:
    def __init__(self, config: Semantic, index: Any, prefix: str = "") -> None:
        self.config = config
        self.index = index
        self.prefix = prefix
        # Vectors of different embedders are not comparable, even at equal dimension: a shared index keeps them
        # apart by context.
        self._space = f"{getattr(config.embedder, 'name', type(config.embedder).__name__)}:"
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()  # text -> vector (lookup, then add on miss)
        self._lock = _fork.lock()

    def _embed(self, text: str) -> np.ndarray:
        with self._lock:
            vec = self._recent.get(text)
            if vec is not None:
                self._recent.move_to_end(text)
                return vec
        vec = np.asarray(self.config.embedder.embed([text])[0], dtype=np.float32)
        with self._lock:
            self._recent[text] = vec
            while len(self._recent) > 256:
                self._recent.popitem(last=False)
        return vec

    def lookup(self, context: str, text: str, fetch: Callable[[str], Entry | None]) -> Match:
        cfg = self.config
        if len(text) > cfg.max_text_chars:
            return Match(veto="too_long")
        vec = self._embed(text)
        candidates = self.index.search(self._space + context, vec, cfg.top_k, cfg.threshold)
        spent = Decimal(0)
        spent_any = False
        first_veto: str | None = None
        best: float | None = None
        for key, cached_text, similarity in candidates:
            best = similarity if best is None else best
            veto = cfg.guards.veto(text, cached_text)
            if veto is None and cfg.verifier is not None:
                accepted, cost = cfg.verifier(text, cached_text, similarity)
                if cost is not None:
                    spent = MONEY.add(spent, cost)  # exact: the caller's thread's context may be a host's
                    spent_any = True
                if not accepted:
                    veto = "verifier"
            if veto is not None:
                first_veto = first_veto or veto
                continue
            entry = fetch(key)
            if entry is None:  # expired or evicted from the store behind the index's back
                self.index.remove(key)
                continue
            return Match(entry, key, similarity, spent if spent_any else None)
        return Match(None, None, best, spent if spent_any else None, first_veto)

    def add(self, context: str, text: str, key: str, ttl: float | None) -> None:
        if len(text) > self.config.max_text_chars:
            return
        self.index.add(self._space + context, key, text, self._embed(text))

    def forget(self, key: str) -> None:
        self.index.remove(key)

    def clear(self) -> None:
        self.index.clear(self.prefix)
