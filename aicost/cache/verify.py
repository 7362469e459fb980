"""Verifiers: the last word on a semantic candidate that passed the similarity threshold and the guards.

* :class:`LexicalVerifier` (deterministic, free): the content words of both texts must align, each word left
  over on one side needing a close counterpart (word-embedding cosine) on the other. It accepts rewordings of
  the same request and rejects a changed subject, scope or qualifier ("for children" vs "for adults").
* :class:`LLMJudge`: asks a cheap model, through a callable the application injects, whether the two requests
  have the same answer. Its own calls are measured with :func:`aicost.hooks.collect_calls` and reported as
  ``aicost.cache.verifier_cost_usd`` so the savings can be netted honestly.

A verifier is any callable ``(query, cached, similarity) -> (accepted: bool, cost_usd: Decimal | None)``.
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal
from typing import Any, Callable

import numpy as np

from ..hooks import collect_calls
from .guards import _stem, _tokens

# Words that shape how a request is phrased but not what is asked. Who/when/where/why stay content words:
# "Where was X born?" and "When was X born?" have different answers.
_FILLER = set("""
a an the this that these those it its i me my mine we us our you your yours he she they them their his her
is are was were be been being am do does did done doing have has had having can could would should will shall
may might must please kindly tell show give explain describe let know want need like help find get
how what which way ways step steps guide tutorial process procedure method instructions command commands
of to in on at by for with about into from as and or if so then there here just some any using via
go going really actually exactly best good simple simply quick quickly easy easiest correct proper properly
possible anyone someone somebody something thing things list define meaning mean means word term
""".split())
# Light verbs a rewording adds or drops without changing the request ("What currency does X use?").
_LIGHT = {"use", "used", "uses", "take", "taking", "exist", "exists", "look", "looks", "offer", "offers",
          "make", "makes", "cause", "causes", "caused", "get", "got", "do", "done", "work", "works", "there",
          "much", "many", "convert"}
_SUFFIXES = ("", "s", "es", "ed", "d", "ing", "ly", "e", "al", "ally")


def content_words(text: str) -> list[str]:
    """Content words in order of appearance (stemmed, fillers removed, each once)."""
    seen: dict[str, None] = {}
    for t in _tokens(text):
        w = _stem(t)
        if t in _FILLER or w in _FILLER:
            continue
        seen.setdefault(w, None)
    return list(seen)


def _same_lemma(x: str, y: str) -> bool:
    """boil/boiling, safe/safely, order/ordered/ordering: a shared stem and only inflectional endings left."""
    n = 0
    while n < min(len(x), len(y)) and x[n] == y[n]:
        n += 1
    return n >= 4 and x[n:] in _SUFFIXES and y[n:] in _SUFFIXES


class LexicalVerifier:
    """Accept when the content words of both requests align, in the same order.

    Alignment: identical words, then inflections of one stem, then (at most ``max_unmatched`` per side) word
    pairs whose embedding cosine is >= ``word_similarity``. A content word left over on one side (a qualifier
    such as "vegan", "for free", "on the mobile app") rejects, unless it is a light verb. Aligned words must
    appear in the same relative order, which rejects swapped arguments the direction guard cannot see
    ("Does the dog chase the cat?" / "Does the cat chase the dog?").
    """

    name = "lexical"

    def __init__(self, *, word_similarity: float = 0.7, max_unmatched: int = 1, check_order: bool = True,
                 embedder: Any = None) -> None:
        if not 0.0 < word_similarity <= 1.0:
            raise ValueError(f"LexicalVerifier(word_similarity=...) must be in (0, 1], got {word_similarity!r}")
        if not isinstance(max_unmatched, int) or max_unmatched < 0:
            raise ValueError(f"LexicalVerifier(max_unmatched=...) must be an int >= 0, got {max_unmatched!r}")
        self.word_similarity = float(word_similarity)
        self.max_unmatched = max_unmatched
        self.check_order = bool(check_order)
        self.embedder = embedder
        self._word_vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def with_embedder(self, embedder: Any) -> "LexicalVerifier":
        if self.embedder is None:
            self.embedder = embedder
        return self

    def _vector(self, word: str) -> np.ndarray:
        vec = self._word_vectors.get(word)
        if vec is None:
            vec = self.embedder.embed([word])[0]
            with self._lock:
                if len(self._word_vectors) < 50_000:
                    self._word_vectors[word] = vec
        return vec

    def align(self, query: str, cached: str) -> tuple[list[tuple[int, int]], list[str], list[str]]:
        """(aligned index pairs, leftover query words, leftover cached words)."""
        a, b = content_words(query), content_words(cached)
        pairs: list[tuple[int, int]] = []
        free_a, free_b = set(range(len(a))), set(range(len(b)))
        for match in (lambda x, y: x == y, _same_lemma):
            for i in sorted(free_a):
                for j in sorted(free_b):
                    if match(a[i], b[j]):
                        pairs.append((i, j))
                        free_a.discard(i)
                        free_b.discard(j)
                        break
        left = [i for i in sorted(free_a) if a[i] not in _LIGHT]
        right = [j for j in sorted(free_b) if b[j] not in _LIGHT]
        if left and right and self.embedder is not None and max(len(left), len(right)) <= self.max_unmatched:
            for i in list(left):
                best, best_j = -1.0, None
                for j in right:
                    sim = float(self._vector(a[i]) @ self._vector(b[j]))
                    if sim > best:
                        best, best_j = sim, j
                if best_j is not None and best >= self.word_similarity:
                    pairs.append((i, best_j))
                    left.remove(i)
                    right.remove(best_j)
        return pairs, [a[i] for i in left], [b[j] for j in right]

    def __call__(self, query: str, cached: str, similarity: float) -> tuple[bool, Decimal | None]:
        pairs, left, right = self.align(query, cached)
        if left or right:
            return False, None
        if self.check_order:
            order = [j for _, j in sorted(pairs)]
            if any(x > y for x, y in zip(order, order[1:])):
                return False, None
        return True, None


JUDGE_PROMPT = """You decide whether a cached answer can be reused.
Request A: {cached}
Request B: {query}
Would a correct answer to request A be a correct and complete answer to request B, with no difference in
numbers, names, negation, direction, scope or audience? Reply with exactly one word: YES or NO."""


class LLMJudge:
    """Ask a cheap LLM: ``ask(prompt) -> reply text``. The cost of its calls is measured and reported."""

    name = "llm_judge"

    def __init__(self, ask: Callable[[str], str], *, prompt: str = JUDGE_PROMPT) -> None:
        if not callable(ask):
            raise TypeError("LLMJudge(ask=...) must be a callable taking a prompt and returning the reply text")
        if "{query}" not in prompt or "{cached}" not in prompt:
            raise ValueError("LLMJudge(prompt=...) must contain {query} and {cached}")
        self.ask = ask
        self.prompt = prompt

    def __call__(self, query: str, cached: str, similarity: float) -> tuple[bool, Decimal | None]:
        with collect_calls() as collector:
            reply = self.ask(self.prompt.format(query=query, cached=cached))
        cost = collector.cost_usd if collector.calls else None
        words = re.findall(r"[A-Za-z]+", str(reply or ""))
        return (bool(words) and words[0].upper() == "YES"), cost
