"""Verifiers: the last word on a semantic candidate that passed the similarity threshold and the guards.

* :class:`LexicalVerifier` (deterministic, free): the content words of both texts must align - identical, an
  inflection, a typo of a real word, an abbreviation, or a near-synonym by word-embedding cosine that is not an
  opposite - each word left over on one side rejecting. It accepts rewordings of the same request and rejects a
  changed subject, scope or qualifier ("for children" vs "for adults") or a word swapped for its opposite.
* :class:`LLMJudge`: asks a cheap model, through a callable the application injects, whether the two requests
  have the same answer. Its own calls are measured with :func:`aicost.hooks.collect_calls` and reported as
  ``aicost.cache.verifier_cost_usd`` so the savings can be netted honestly.

A verifier is any callable ``(query, cached, similarity) -> (accepted: bool, cost_usd: Decimal | None)``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Callable

import numpy as np

from .. import _fork
from ..hooks import collect_calls
from .checks import check_bool, check_fraction, check_int, refuse
from .guards import _NUMBER_WORDS, _SKIP_AFTER_DIRECTIONAL, _UNIT_NAMES, _stem, _tokens, antonyms, phrasal

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
hey hi hello thanks thank thx could possibly wondering wonder curious quick question anybody mind appreciate
advance trying try figure able ok okay allowed permitted should wanna gonna tip tips count amount
anything anyone's yourself pls i'd i'm i've i'll
""".split())
# Abbreviations and casual spellings users type, by the word they stand for.
_ABBREVIATIONS = {
    "pls": "please", "plz": "please", "u": "you", "ur": "your", "whats": "what", "hows": "how",
    "im": "i", "pwd": "password", "pw": "password", "passwd": "password", "acct": "account", "info": "information",
    "config": "configuration", "repo": "repository", "db": "database", "msg": "message", "dict": "dictionary",
    "dicts": "dictionary", "int": "integer", "str": "string", "approx": "approximately", "mic": "microphone",
    "site": "website", "app": "application", "apps": "application", "pic": "picture", "pics": "picture",
    "2fa": "two-factor", "tz": "timezone", "w/": "with", "b/c": "because", "bc": "because", "govt": "government",
    "dept": "department", "yr": "year", "yrs": "year", "mo": "month", "wk": "week", "hr": "hour", "hrs": "hour",
    "mins": "minute", "kcal": "calorie", "km": "kilometer", "kms": "kilometer", "mi": "mile", "oz": "ounce",
    "lb": "pound", "lbs": "pound", "kg": "kilogram", "tsp": "teaspoon", "tbsp": "tablespoon", "usd": "dollar",
    "eur": "euro", "gbp": "pound", "ft": "foot", "feet": "foot", "cm": "centimeter", "mm": "millimeter",
    "whom": "who",
}
_NUMBER_DIGITS = {w: str(int(v)) for w, v in _NUMBER_WORDS.items() if float(v).is_integer() and w not in (
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "once",
    "single", "pair", "couple", "double", "twice", "triple", "dozen")}
_PREPOSITIONS = {"in", "at", "on", "of", "for", "from", "to", "into", "with", "by", "during", "inside", "within",
                 "between", "and", "or"}  # "and", "or": coordinated words may trade places
_SUFFIX_EQUIVALENT = {"kilometre": "kilometer", "metre": "meter", "litre": "liter", "colour": "color",
                      "favourite": "favorite", "cancelling": "canceling", "cancelled": "canceled"}
_NOT_SUBSTITUTABLE = set(_UNIT_NAMES.values()) | set(_UNIT_NAMES) | set(_NUMBER_WORDS)
# Light verbs a rewording adds or drops without changing the request ("What currency does X use?").
_LIGHT = {"use", "used", "uses", "take", "taking", "exist", "exists", "look", "looks", "offer", "offers",
          "make", "makes", "cause", "causes", "caused", "get", "got", "do", "done", "work", "works", "there",
          "much", "many", "convert", "conversion"}
# Word pairs that say one thing: "what time" is "when", "in descending order" is "descending".
_PHRASES = {("what", "time"): "when", ("ascending", "order"): "ascending", ("descending", "order"): "descending",
            ("alphabetical", "order"): "alphabetical", ("reverse", "order"): "reverse"}
_SUFFIXES = ("", "s", "es", "ed", "d", "ing", "ly", "e", "al", "ally", "er", "ers", "r", "rs", "y", "ie")


def content_words(text: str) -> list[str]:
    """Content words in order of appearance (abbreviations expanded, stemmed, fillers removed, each once)."""
    seen: dict[str, None] = {}
    for t in _join_phrases(phrasal([_ABBREVIATIONS.get(t, t) for t in _tokens(text)])):
        t = _NUMBER_DIGITS.get(t) or _SUFFIX_EQUIVALENT.get(t, t)
        w = _stem(t)
        if t in _FILLER or w in _FILLER:
            continue
        seen.setdefault(w, None)
    return list(seen)


def _join_phrases(tokens: list[str]) -> list[str]:
    out: list[str] = []
    for t in tokens:
        joined = _PHRASES.get((out[-1], t)) if out else None
        if joined is not None:
            out[-1] = joined
        else:
            out.append(t)
    return out


def _one_edit(x: str, y: str) -> bool:
    """x and y differ by one insertion, deletion, substitution or swap of adjacent letters."""
    if abs(len(x) - len(y)) > 1 or x == y:
        return False
    if len(x) == len(y):
        diff = [i for i in range(len(x)) if x[i] != y[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and x[diff[0]] == y[diff[1]] and x[diff[1]] == y[diff[0]])
    short, long_ = (x, y) if len(x) < len(y) else (y, x)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1:]


def opposites(x: str, y: str) -> bool:
    """Words that embeddings place close together but that mean different things: listed antonyms, or two
    words built on one shared part (sun-rise / sun-set, strong-est / weak-est, horizont-ally / vertic-ally,
    in-bound / out-bound), which are contrasting forms far more often than synonyms."""
    if antonyms(x, y):
        return True
    n = 0
    while n < min(len(x), len(y)) and x[n] == y[n]:
        n += 1
    m = 0
    while m < min(len(x), len(y)) and x[-1 - m] == y[-1 - m]:
        m += 1
    return n >= 3 or m >= 3


def _block_moved(order: list[int], movable: Callable[[list[int]], bool]) -> bool:
    """``order`` is non-decreasing, or becomes so by moving one contiguous block for which ``movable`` holds
    ("At sea level, what temperature does water boil?" moves one phrase; "Does the cat chase the dog?" /
    "... dog chase the cat?" needs two moves)."""
    def increasing(seq: list[int]) -> bool:
        return all(a <= b for a, b in zip(seq, seq[1:]))

    if increasing(order):
        return True
    n = len(order)
    for i in range(n):
        for j in range(i + 1, n + 1):
            block, rest = order[i:j], order[:i] + order[j:]
            if increasing(block) and increasing(rest) and movable(block):
                if any(increasing(rest[:k] + block + rest[k:]) for k in range(len(rest) + 1)):
                    return True
    return False


def _phrase_heads(text: str) -> set[str]:
    """Stemmed words that open a prepositional phrase ("in vim", "at sea level", "of Tokyo"): the phrases a
    rewording may move. A subject or object cannot move ("Who did Brutus betray?" / "Who betrayed Brutus?")."""
    toks = _tokens(text)
    heads = set()
    for i, tok in enumerate(toks[:-1]):
        if tok in _PREPOSITIONS:
            j = i + 1
            while j < len(toks) - 1 and toks[j] in _SKIP_AFTER_DIRECTIONAL:
                j += 1
            heads.add(_stem(toks[j]))
    return heads


def _same_lemma(x: str, y: str) -> bool:
    """boil/boiling, safe/safely, order/ordered/ordering: a shared stem and only inflectional endings left."""
    n = 0
    while n < min(len(x), len(y)) and x[n] == y[n]:
        n += 1
    if n < 4:
        return False
    rest_x, rest_y = x[n:], y[n:]
    # a doubled final consonant before the ending: ship / shipping, plan / planned
    rest_x = rest_x[1:] if rest_x[:1] == x[n - 1] and rest_x[1:] in _SUFFIXES else rest_x
    rest_y = rest_y[1:] if rest_y[:1] == y[n - 1] and rest_y[1:] in _SUFFIXES else rest_y
    return rest_x in _SUFFIXES and rest_y in _SUFFIXES


class LexicalVerifier:
    """Accept when the content words of both requests align, in the same order.

    Alignment: identical words (after expanding abbreviations such as "pwd" or "km"), then inflections of one
    stem, then typos (one edit, where exactly one of the two words is a known word of the embedder's vocabulary),
    then (at most ``max_unmatched`` per side) word pairs whose embedding cosine is >= ``word_similarity`` and
    that are not opposites (:func:`opposites`: "sunrise"/"sunset" is cos 0.73, "strongest"/"weakest" 0.72).
    Units and number words are never substituted. A content word left over on one side (a qualifier such as
    "vegan", "for free", "on the mobile app") rejects, unless it is a light verb. Aligned words must appear in
    the same order up to moving one phrase ("In vim, how do I ..."), which rejects swapped arguments the
    direction guard cannot see ("Does the dog chase the cat?" / "Does the cat chase the dog?").
    """

    name = "lexical"

    def __init__(self, *, word_similarity: float = 0.7, max_unmatched: int = 1, check_order: bool = True,
                 embedder: Any = None) -> None:
        self.word_similarity = check_fraction("LexicalVerifier(word_similarity=...)", word_similarity,
                                              "a cosine in (0, 1]")
        self.max_unmatched = check_int("LexicalVerifier(max_unmatched=...)", max_unmatched, minimum=0)
        self.check_order = check_bool("LexicalVerifier(check_order=...)", check_order)
        self.embedder = embedder
        self._word_vectors: dict[str, np.ndarray] = {}
        self._lock = _fork.lock()
        self._known: frozenset[str] | None = None

    def with_embedder(self, embedder: Any) -> "LexicalVerifier":
        if self.embedder is None:
            self.embedder = embedder
        return self

    def _known_words(self) -> frozenset[str]:
        """Whole words of the embedder's vocabulary (empty without one: then no typo is corrected)."""
        if self._known is None:
            vocab = getattr(getattr(self.embedder, "tokenizer", None), "vocab", None) or {}
            self._known = frozenset(w for w in vocab if w.isalpha() and len(w) >= 2)
        return self._known

    def _typo(self, x: str, y: str) -> bool:
        if min(len(x), len(y)) < 4 or not _one_edit(x, y):
            return False
        known = self._known_words()
        return (x in known) != (y in known)

    def _vector(self, word: str) -> np.ndarray:
        vec = self._word_vectors.get(word)
        if vec is None:
            vec = self.embedder.embed([word])[0]
            with self._lock:
                if len(self._word_vectors) < 50_000:
                    self._word_vectors[word] = vec
        return vec

    def align(self, query: str, cached: str) -> tuple[list[tuple[int, int]], list[str], list[str]]:
        """(aligned (query, cached) index pairs into the content words, leftover query words, leftover cached
        words)."""
        return self._align(content_words(query), content_words(cached))

    def _align(self, a: list[str], b: list[str]) -> tuple[list[tuple[int, int]], list[str], list[str]]:
        pairs: list[tuple[int, int]] = []
        free_a, free_b = set(range(len(a))), set(range(len(b)))
        for match in (lambda x, y: x == y, _same_lemma, self._typo):
            for i in sorted(free_a):
                for j in sorted(free_b):
                    if match(a[i], b[j]):
                        pairs.append((i, j))
                        free_a.discard(i)
                        free_b.discard(j)
                        break
        # a compound written as two words: "sun rise" / "sunrise", "carry on" / "carry-on"
        for side, other, free_side, free_other, flip in ((a, b, free_a, free_b, False), (b, a, free_b, free_a, True)):
            for i in sorted(free_side):
                if i in free_side and i + 1 in free_side:
                    joined = side[i] + side[i + 1]
                    for j in sorted(free_other):
                        if other[j].replace("-", "") in (joined, _stem(joined)):
                            pairs.extend([(j, i), (j, i + 1)] if flip else [(i, j), (i + 1, j)])
                            free_side.difference_update((i, i + 1))
                            free_other.discard(j)
                            break
        left = [i for i in sorted(free_a) if a[i] not in _LIGHT]
        right = [j for j in sorted(free_b) if b[j] not in _LIGHT]
        if left and right and self.embedder is not None and max(len(left), len(right)) <= self.max_unmatched:
            for i in list(left):
                best, best_j = -1.0, None
                for j in right:
                    if a[i] in _NOT_SUBSTITUTABLE or b[j] in _NOT_SUBSTITUTABLE or opposites(a[i], b[j]):
                        continue
                    sim = float(self._vector(a[i]) @ self._vector(b[j]))
                    if sim > best:
                        best, best_j = sim, j
                if best_j is not None and best >= self.word_similarity:
                    pairs.append((i, best_j))
                    left.remove(i)
                    right.remove(best_j)
        return pairs, [a[i] for i in left], [b[j] for j in right]

    def __call__(self, query: str, cached: str, similarity: float) -> tuple[bool, Decimal | None]:
        cached_words = content_words(cached)
        pairs, left, right = self._align(content_words(query), cached_words)
        if left or right:
            return False, None
        if self.check_order:
            heads = _phrase_heads(query) | _phrase_heads(cached)
            movable = lambda block: any(cached_words[j] in heads for j in block)  # noqa: E731
            if not _block_moved([j for _, j in sorted(pairs)], movable):
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
            refuse("LLMJudge(ask=...)", "a callable taking a prompt and returning the reply text", ask,
                   wrong_type=True)
        accepted = "a str containing {query} and {cached}"
        if not isinstance(prompt, str):
            refuse("LLMJudge(prompt=...)", accepted, prompt, wrong_type=True)
        if "{query}" not in prompt or "{cached}" not in prompt:
            refuse("LLMJudge(prompt=...)", accepted, prompt, wrong_type=False)
        self.ask = ask
        self.prompt = prompt

    def __call__(self, query: str, cached: str, similarity: float) -> tuple[bool, Decimal | None]:
        with collect_calls() as collector:
            reply = self.ask(self.prompt.format(query=query, cached=cached))
        cost = collector.cost_usd if collector.calls else None
        words = re.findall(r"[A-Za-z]+", str(reply or ""))
        return (bool(words) and words[0].upper() == "YES"), cost
