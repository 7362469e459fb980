"""``fn.key_for(*args, **kwargs)`` is the key the same call looks up and stores under, and ``fn.invalidate`` drops
that entry: for every way ``@aicost.cache`` is used (sync, async, methods, defaults, keyword or positional, the
attribution scope, key_parts, the semantic tier, streams, a plain def returning an awaitable).

Every call goes through the real wrapper into a store that records the keys it is asked for, so the assertions
compare the key a call actually used with ``key_for`` of the same arguments."""

from __future__ import annotations

import asyncio

import pytest

import aicost
from aicost.cache import MemoryStore, Semantic


class RecordingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str] = []
        self.puts: list[str] = []

    def get(self, key):
        self.gets.append(key)
        return super().get(key)

    def put(self, key, entry, ttl):
        self.puts.append(key)
        super().put(key, entry, ttl)


def stored_by(call, store: RecordingStore) -> str:
    """The one key a missing call looked up first and stored its answer under."""
    store.gets.clear()
    store.puts.clear()
    call()
    assert len(store.puts) == 1, store.puts
    assert store.gets[0] == store.puts[0]
    return store.puts[0]


def assert_key_for_is_the_call_key(fn, store: RecordingStore, call, *args, **kwargs) -> None:
    key = stored_by(call, store)
    assert fn.key_for(*args, **kwargs) == key
    assert store.get(fn.key_for(*args, **kwargs)) is not None
    assert fn.invalidate(*args, **kwargs) is True  # drops exactly that entry
    assert store.get(key) is None


def test_plain_function_with_defaults_positional_and_keyword():
    store = RecordingStore()

    @aicost.cache(prompt="q", store=store, shared=True)
    def ask(q, model="gpt-4o-mini", *, temperature=0.0):
        return f"{model}:{q}"

    assert_key_for_is_the_call_key(ask, store, lambda: ask("hi"), "hi")
    assert_key_for_is_the_call_key(ask, store, lambda: ask("hi"), q="hi", model="gpt-4o-mini", temperature=0)
    assert_key_for_is_the_call_key(ask, store, lambda: ask(q="hi", model="m"), "hi", "m")
    assert_key_for_is_the_call_key(ask, store, lambda: ask("  hi  "), "hi")  # the prompt is normalised alike
    assert ask.key_for("hi") != ask.key_for("hi", "m")


def test_async_function():
    store = RecordingStore()

    @aicost.cache(prompt="q", store=store, shared=True)
    async def ask(q, model="m"):
        return q

    assert_key_for_is_the_call_key(ask, store, lambda: asyncio.run(ask("hi")), q="hi", model="m")


def test_sdk_style_keyword_function():
    store = RecordingStore()

    @aicost.cache(prompt="messages", store=store, shared=True)
    def create(**kwargs):
        return kwargs

    messages = [{"role": "user", "content": "Hi"}]
    assert_key_for_is_the_call_key(create, store, lambda: create(model="m", messages=messages, top_p=1),
                                   top_p=1.0, messages=messages, model="m")


def test_key_parts_callable_and_ignored_arguments():
    store = RecordingStore()

    @aicost.cache(prompt="q", store=store, shared=True, ignore=["client"],
                  key_parts=lambda client, q, version=1: {"version": version})
    def ask(client, q, version=1):
        return q

    assert_key_for_is_the_call_key(ask, store, lambda: ask(object(), "hi", version=2), None, "hi", 2)


class Assistant:
    def __init__(self, model: str) -> None:
        self.model = model

    @aicost.cache(prompt="q", ignore=["self"], key_parts=lambda self, q, style="short": {"model": self.model},
                  store=RecordingStore(), shared=True)
    def ask(self, q, style="short"):
        return f"{self.model}:{q}:{style}"

    @aicost.cache(prompt="q", ignore=["self"], store=RecordingStore(), shared=True)
    async def ask_async(self, q, style="short"):
        return f"{q}:{style}"

    @staticmethod
    @aicost.cache(prompt="q", store=RecordingStore(), shared=True)
    def ask_static(q, style="short"):
        return q


def test_methods_pass_the_instance_as_the_call_through_the_class_does():
    """A method's controls are its function's, reached through the class or an instance alike (a bound method
    hands attribute lookups to its function): they take the instance first, as the call through the class does."""
    bot = Assistant("gpt-4o-mini")
    store = Assistant.ask.cache.store
    assert_key_for_is_the_call_key(Assistant.ask, store, lambda: bot.ask("hi"), bot, "hi")
    assert_key_for_is_the_call_key(bot.ask, store, lambda: bot.ask("hi", "long"), bot, q="hi", style="long")
    # Another instance with another model is another request (key_parts reads self).
    assert Assistant.ask.key_for(Assistant("gpt-4o"), "hi") != Assistant.ask.key_for(bot, "hi")
    assert_key_for_is_the_call_key(Assistant.ask_async, Assistant.ask_async.cache.store,
                                   lambda: asyncio.run(bot.ask_async("hi")), bot, "hi")
    assert_key_for_is_the_call_key(bot.ask_static, Assistant.ask_static.cache.store,
                                   lambda: bot.ask_static("hi"), "hi")


def test_uncached_on_a_method_takes_the_instance_first_like_the_other_controls():
    """``uncached`` is the undecorated function, reached through a bound method like ``key_for``: docs/cache.md
    says to pass the instance first (``bot.ask.uncached(q)`` would take ``q`` for ``self``)."""
    bot = Assistant("gpt-4o-mini")
    store = Assistant.ask.cache.store
    store.gets.clear()
    store.puts.clear()
    assert bot.ask.uncached(bot, "hi") == Assistant.ask.uncached(bot, "hi") == "gpt-4o-mini:hi:short"
    assert store.gets == [] and store.puts == []  # neither read nor written
    with pytest.raises(TypeError, match="q"):
        bot.ask.uncached("hi")  # "hi" taken for self, and q missing: the documented pitfall


def test_an_outer_decorator_using_functools_wraps_keeps_the_controls():
    import functools

    store = RecordingStore()

    def logged(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*args, **kwargs)

        return wrapper

    @logged
    @aicost.cache(prompt="q", store=store, shared=True)
    def ask(q):
        return q

    assert_key_for_is_the_call_key(ask, store, lambda: ask("hi"), "hi")
    assert ask.cache.store is store and ask.uncached("hi") == "hi" and ask.clear() == 0


def test_attribution_scope_in_force_when_called():
    store = RecordingStore()

    @aicost.cache(prompt="q", store=store)
    def ask(q):
        return q

    with aicost.attribute(customer="acme", user="u1", team="support"):
        assert_key_for_is_the_call_key(ask, store, lambda: ask("hi"), "hi")
        acme = ask.key_for("hi")
    with aicost.attribute(customer="globex", user="u1", team="support"):
        assert ask.key_for("hi") != acme

    @aicost.attribute(team="support")  # in force during the call only: key_for is called inside the same scope
    @aicost.cache(prompt="q", store=store)
    def support(q):
        return q

    key = stored_by(lambda: support("hi"), store)
    assert support.key_for("hi") != key
    with aicost.attribute(team="support"):
        assert support.key_for("hi") == key
        assert support.invalidate("hi") is True


def test_semantic_cache_stores_under_the_exact_key():
    store = RecordingStore()

    @aicost.cache(prompt="q", store=store, shared=True, semantic=Semantic("ngram"))
    def ask(q, lang="en"):
        return q

    assert_key_for_is_the_call_key(ask, store, lambda: ask("How do I reset my password?"),
                                   "How do I reset my password?", lang="en")


def test_streams_are_stored_under_the_key_once_consumed():
    store = RecordingStore()

    @aicost.cache(prompt="q", store=store, shared=True)
    def stream(q):
        yield from q.split()

    @aicost.cache(prompt="q", store=store, shared=True)
    async def astream(q):
        async def chunks():
            for word in q.split():
                yield word

        return chunks()

    assert_key_for_is_the_call_key(stream, store, lambda: list(stream("a b c")), "a b c")

    async def consume():
        return [chunk async for chunk in await astream("a b c")]

    assert_key_for_is_the_call_key(astream, store, lambda: asyncio.run(consume()), q="a b c")


def test_plain_def_returning_an_awaitable():
    store = RecordingStore()

    async def vendor(q):
        return q

    @aicost.cache(prompt="q", store=store, shared=True)
    def ask(q):
        return vendor(q)

    async def call():
        return await ask("hi")

    assert_key_for_is_the_call_key(ask, store, lambda: asyncio.run(call()), "hi")


def test_uncacheable_arguments_have_no_key():
    @aicost.cache(prompt="q", shared=True)
    def ask(q, client):
        return q

    from aicost.cache.keys import Uncacheable

    with pytest.raises(Uncacheable):
        ask.key_for("hi", object())
