"""The cache's configuration objects refuse bad arguments when they are built, as the rest of aicost does:
:class:`aicost.errors.ConfigurationError` (a ValueError) naming the argument and what it accepts, and
:class:`~aicost.errors.ConfigurationTypeError` (also a TypeError) for a value of the wrong type."""

from __future__ import annotations

import pytest

from aicost.cache import MemoryStore
from aicost.cache.embedders import HashedNgramEmbedder, resolve_embedder
from aicost.cache.guards import Guards
from aicost.cache.index import MemoryVectorIndex
from aicost.cache.semantic import Semantic
from aicost.cache.verify import LexicalVerifier, LLMJudge
from aicost.errors import ConfigurationError, ConfigurationTypeError


class NoEmbed:
    name, dim = "x", 8


def _ask(prompt):
    return "YES"


WRONG_TYPE = [
    (lambda: Guards(numbers="false"), "Guards(numbers=...)"),
    (lambda: Guards(tense=1), "Guards(tense=...)"),
    (lambda: Semantic("ngram", threshold="0.6"), "Semantic(threshold=...)"),
    (lambda: Semantic("ngram", guards={"numbers": False}), "Semantic(guards=...)"),
    (lambda: Semantic("ngram", verifier="gpt"), "Semantic(verifier=...)"),
    (lambda: Semantic("ngram", top_k=True), "Semantic(top_k=...)"),
    (lambda: Semantic("ngram", max_text_chars=2.5), "Semantic(max_text_chars=...)"),
    (lambda: Semantic("ngram", index=object()), "Semantic(index=...)"),
    (lambda: Semantic(NoEmbed()), "Semantic(embedder=...)"),
    (lambda: LexicalVerifier(word_similarity="0.7"), "LexicalVerifier(word_similarity=...)"),
    (lambda: LexicalVerifier(max_unmatched=1.0), "LexicalVerifier(max_unmatched=...)"),
    (lambda: LexicalVerifier(check_order="no"), "LexicalVerifier(check_order=...)"),
    (lambda: LLMJudge("gpt-4o-mini"), "LLMJudge(ask=...)"),
    (lambda: LLMJudge(_ask, prompt=None), "LLMJudge(prompt=...)"),
    (lambda: HashedNgramEmbedder(dim="1024"), "HashedNgramEmbedder(dim=...)"),
    (lambda: HashedNgramEmbedder(word_weight="2"), "HashedNgramEmbedder(word_weight=...)"),
    (lambda: MemoryVectorIndex(64, rescore=None), "MemoryVectorIndex(rescore=...)"),
    (lambda: MemoryStore(max_entries=True), "MemoryStore(max_entries=...)"),
]

BAD_VALUE = [
    (lambda: Semantic("ngram", threshold=1.5), "Semantic(threshold=...)"),
    (lambda: Semantic("ngram", top_k=0), "Semantic(top_k=...)"),
    (lambda: Semantic("ngram", max_text_chars=0), "Semantic(max_text_chars=...)"),
    (lambda: resolve_embedder("word2vec"), "Semantic(embedder=...)"),
    (lambda: LexicalVerifier(word_similarity=0), "LexicalVerifier(word_similarity=...)"),
    (lambda: LexicalVerifier(max_unmatched=-1), "LexicalVerifier(max_unmatched=...)"),
    (lambda: LLMJudge(_ask, prompt="no placeholders"), "LLMJudge(prompt=...)"),
    (lambda: HashedNgramEmbedder(dim=8), "HashedNgramEmbedder(dim=...)"),
    (lambda: HashedNgramEmbedder(char_ngrams=(5, 3)), "HashedNgramEmbedder(char_ngrams=...)"),
    (lambda: MemoryVectorIndex(0), "MemoryVectorIndex(dim=...)"),
    (lambda: MemoryVectorIndex(64, max_entries=0), "MemoryVectorIndex(max_entries=...)"),
    (lambda: MemoryVectorIndex(64, exact_below=-1), "MemoryVectorIndex(exact_below=...)"),
    (lambda: MemoryStore(max_entries=0), "MemoryStore(max_entries=...)"),
]


@pytest.mark.parametrize("build, argument", WRONG_TYPE, ids=[a for _, a in WRONG_TYPE])
def test_a_value_of_the_wrong_type_is_refused_by_name(build, argument):
    with pytest.raises(ConfigurationTypeError) as info:
        build()
    assert str(info.value).startswith(argument + " must be"), str(info.value)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("build, argument", BAD_VALUE, ids=[a for _, a in BAD_VALUE])
def test_a_bad_value_is_refused_by_name(build, argument):
    with pytest.raises(ConfigurationError) as info:
        build()
    assert str(info.value).startswith(argument + " must be"), str(info.value)


def test_guards_take_only_booleans_so_a_string_cannot_leave_a_guard_on():
    """``Guards(numbers="false")`` used to keep the numbers guard on (a non-empty string is truthy)."""
    with pytest.raises(ConfigurationTypeError, match=r"Guards\(numbers=\.\.\.\) must be True or False, got 'false'"):
        Guards(numbers="false")
    assert Guards(numbers=False).veto("refund order 1034", "refund order 1043") is None


def test_a_bad_pgvector_dsn_is_refused_without_its_password():
    """libpq's message about a DSN it cannot parse quotes the bad token, which may be the password itself."""
    pytest.importorskip("psycopg")
    from aicost.cache import PgVectorStore

    with pytest.raises(ConfigurationError, match="not a valid PostgreSQL DSN") as refused:
        PgVectorStore("postgresql://app:pa%zzs3cret@127.0.0.1/db")
    assert "s3cret" not in str(refused.value) and "***" in str(refused.value)
