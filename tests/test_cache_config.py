"""``aicost.cache(...)``, the cache's configuration objects and its stores refuse bad arguments when they are
given, as the rest of aicost does: :class:`aicost.errors.ConfigurationError` (a ValueError) naming the argument and
what it accepts, and :class:`~aicost.errors.ConfigurationTypeError` (also a TypeError) for a value of the wrong
type."""

from __future__ import annotations

import pytest

import aicost
from aicost.cache import MemoryStore, PgVectorStore, RedisStore
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


def _cached(**kwargs):
    """``aicost.cache(**kwargs)`` applied to a function: its arguments are checked when it decorates."""
    def ask(question, client=None):
        return question

    return aicost.cache(**kwargs)(ask)


def _no_connection():
    raise AssertionError("a refused configuration never connects")


def _pg(**kwargs):
    return PgVectorStore(**{"connect": _no_connection, **kwargs})


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
    # aicost.cache(...) and the stores, which used to raise a plain ConfigurationError for these
    (lambda: _cached(ttl="600"), "aicost.cache(ttl=...)"),
    (lambda: _cached(max_entries=1.5), "aicost.cache(max_entries=...)"),
    (lambda: _cached(single_flight_timeout=None), "aicost.cache(single_flight_timeout=...)"),
    (lambda: _cached(case_sensitive="false"), "aicost.cache(case_sensitive=...)"),
    (lambda: _cached(single_flight=0), "aicost.cache(single_flight=...)"),
    (lambda: _cached(cache_if=True), "aicost.cache(cache_if=...)"),
    (lambda: _cached(key_parts=["v2"]), "aicost.cache(key_parts=...)"),
    (lambda: _cached(name=5), "aicost.cache(name=...)"),
    (lambda: _cached(ignore=5), "aicost.cache(ignore=...)"),
    (lambda: _cached(ignore=["client", 5]), "aicost.cache(ignore=...)"),
    (lambda: _cached(prompt=["question"]), "aicost.cache(prompt=...)"),
    (lambda: _cached(store={}), "aicost.cache(store=...)"),
    (lambda: _cached(prompt="question", semantic="ngram"), "aicost.cache(semantic=...)"),
    (lambda: _cached(shared="no"), "aicost.cache(shared=...)"),
    (lambda: _cached(scope=5), "aicost.cache(scope=...)"),
    (lambda: _cached(scope=["customer", 5]), "aicost.cache(scope=...)"),
    (lambda: aicost.cache(5), "aicost.cache(func)"),
    (lambda: RedisStore(url=6379), "RedisStore(url=...)"),
    (lambda: RedisStore(client="redis://127.0.0.1"), "RedisStore(client=...)"),
    (lambda: RedisStore("redis://127.0.0.1", max_entries="100"), "RedisStore(max_entries=...)"),
    (lambda: RedisStore("redis://127.0.0.1", timeout_s="0.5"), "RedisStore(timeout_s=...)"),
    (lambda: RedisStore("redis://127.0.0.1", lru_key=None), "RedisStore(lru_key=...)"),
    (lambda: RedisStore("redis://127.0.0.1", secret=12345), "secret=..."),
    (lambda: PgVectorStore(dsn=5432), "PgVectorStore(dsn=...)"),
    (lambda: PgVectorStore(connect="postgresql://127.0.0.1/db"), "PgVectorStore(connect=...)"),
    (lambda: _pg(table=None), "PgVectorStore(table=...)"),
    (lambda: _pg(max_entries="100"), "PgVectorStore(max_entries=...)"),
    (lambda: _pg(hnsw="false"), "PgVectorStore(hnsw=...)"),
    (lambda: _pg(ef_search=64.0), "PgVectorStore(ef_search=...)"),
    (lambda: _pg(connect_timeout_s="2"), "PgVectorStore(connect_timeout_s=...)"),
    (lambda: _pg(timeout_s=True), "PgVectorStore(timeout_s=...)"),
    (lambda: _pg(pool_size="8"), "PgVectorStore(pool_size=...)"),
    (lambda: _pg(secret=["key"]), "secret=..."),
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
    (lambda: _cached(ttl=0), "aicost.cache(ttl=...)"),
    (lambda: _cached(ttl=float("inf")), "aicost.cache(ttl=...)"),
    (lambda: _cached(max_entries=0), "aicost.cache(max_entries=...)"),
    (lambda: _cached(name=""), "aicost.cache(name=...)"),
    (lambda: _cached(ignore=["clinet"]), "aicost.cache(ignore=...)"),
    (lambda: _cached(prompt="question", ignore=["question"]), "aicost.cache(prompt=...)"),
    (lambda: _cached(scope=["custmer"]), "aicost.cache(scope=...)"),
    (lambda: RedisStore(url="http://127.0.0.1:6379"), "RedisStore(url=...)"),
    (lambda: RedisStore("redis://127.0.0.1", max_entries=0), "RedisStore(max_entries=...)"),
    (lambda: RedisStore("redis://127.0.0.1", timeout_s=61), "RedisStore(timeout_s=...)"),
    (lambda: RedisStore("redis://127.0.0.1", lru_key=""), "RedisStore(lru_key=...)"),
    (lambda: RedisStore("redis://127.0.0.1", secret=b""), "secret=..."),
    (lambda: _pg(table="Cache"), "PgVectorStore(table=...)"),
    (lambda: _pg(ef_search=0), "PgVectorStore(ef_search=...)"),
    (lambda: _pg(connect_timeout_s=0.5), "PgVectorStore(connect_timeout_s=...)"),
    (lambda: _pg(timeout_s=0), "PgVectorStore(timeout_s=...)"),
    (lambda: _pg(pool_size=1001), "PgVectorStore(pool_size=...)"),
]


@pytest.mark.parametrize("build, argument", WRONG_TYPE, ids=[a for _, a in WRONG_TYPE])
def test_a_value_of_the_wrong_type_is_refused_by_name(build, argument):
    with pytest.raises(ConfigurationTypeError) as info:
        build()
    assert str(info.value).startswith(argument + " must be"), str(info.value)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert isinstance(info.value, ConfigurationError)  # what callers catch keeps catching it


def test_a_bad_value_of_the_right_type_is_no_type_error():
    for build, argument in BAD_VALUE:
        with pytest.raises(ConfigurationError) as info:
            build()
        assert not isinstance(info.value, TypeError), (argument, info.value)


def test_a_key_of_the_wrong_type_is_named_by_its_type_only():
    """An error message ends up in logs: a refused ``secret`` is never repeated in it."""
    with pytest.raises(ConfigurationTypeError) as info:
        RedisStore("redis://127.0.0.1", secret=bytearray(b"the-hmac-key"))
    assert "the-hmac-key" not in str(info.value) and str(info.value).endswith("got a bytearray")


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
