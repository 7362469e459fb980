"""Exact tier of @aicost.cache: key composition, tenancy, TTL/LRU, invalidation, bypass, single flight, async,
streams, telemetry. Plain functions stand in for LLM calls and report exact costs through aicost.hooks."""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal

import pytest

import aicost
from aicost import semconv
from aicost.cache import MemoryStore

from cache_helpers import fake_llm_call


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def bump(self) -> int:
        with self.lock:
            self.n += 1
            return self.n


def followers_of(fn) -> threading.Semaphore:
    """Released once per call that joins another call's flight (it waits for that call's answer): a leader waits
    for its followers to be there, a fact, instead of being slow for a fixed time and hoping they arrive."""
    joined = threading.Semaphore(0)
    flights = fn.cache.flights
    join = flights.join

    def counting(key):
        flight, leads = join(key)
        if not leads:
            joined.release()
        return flight, leads

    flights.join = counting
    return joined


# ------------------------------------------------------------------------------------------------ keys
def test_every_request_field_changes_the_key_and_formatting_does_not():
    calls = Counter()

    @aicost.cache(prompt="messages")
    def chat(*, model, messages, system=None, tools=None, temperature=1.0, response_format=None):
        return calls.bump()

    base = dict(model="gpt-4o", messages=[{"role": "user", "content": "What is the capital of France?"}],
                system="Be brief.", tools=[{"name": "search", "parameters": {"type": "object"}}], temperature=0.0,
                response_format={"type": "json_object"})
    first = chat(**base)
    # Whitespace and dict key order cannot change the answer: same entry.
    same = dict(base, messages=[{"content": "  What is the  capital of France ?\n", "role": "user"}],
                tools=[{"parameters": {"type": "object"}, "name": "search"}], temperature=0)
    assert chat(**same) == first
    assert calls.n == 1
    # Each of these can change the answer: a different entry each time.
    variants = [
        dict(base, model="gpt-4o-mini"),
        dict(base, system="Be verbose."),
        dict(base, tools=[{"name": "browse", "parameters": {"type": "object"}}]),
        dict(base, temperature=0.7),
        dict(base, response_format={"type": "text"}),
        dict(base, messages=[{"role": "system", "content": "You are a pirate."}, *base["messages"]]),
        dict(base, messages=[{"role": "assistant", "content": "Earlier answer."}, *base["messages"]]),
        dict(base, messages=[{"role": "user", "content": "What is the capital of Spain?"}]),
    ]
    for i, variant in enumerate(variants, start=2):
        assert chat(**variant) == i
    assert calls.n == 1 + len(variants)


def test_whole_conversation_is_keyed_not_only_the_last_message():
    calls = Counter()

    @aicost.cache(prompt="messages")
    def chat(messages):
        return calls.bump()

    last = {"role": "user", "content": "And its population?"}
    a = chat([{"role": "user", "content": "Tell me about Paris"}, {"role": "assistant", "content": "..."}, last])
    b = chat([{"role": "user", "content": "Tell me about Rome"}, {"role": "assistant", "content": "..."}, last])
    assert a != b and calls.n == 2


def test_non_prompt_arguments_are_exact_and_case_sensitive_option():
    calls = Counter()

    @aicost.cache(prompt="question")
    def ask(question, system):
        return calls.bump()

    ask("hi", system="Answer in French")
    ask("hi", system="Answer  in French")  # only the prompt is normalised
    assert calls.n == 2

    @aicost.cache(prompt="question")
    def ask_cs(question):  # case is kept by default
        return calls.bump()

    ask_cs("Spell ABC")
    ask_cs("spell abc")
    ask_cs("Spell   ABC ")
    assert calls.n == 4

    @aicost.cache(prompt="question", case_sensitive=False)
    def ask_ci(question):  # opt-in: plain words fold, tokens whose case is meaning do not
        return calls.bump()

    ask_ci("What is the capital of France?")
    ask_ci("WHAT is the CAPITAL of france")
    assert calls.n == 5
    ask_ci("Decode aGVsbG8=")
    ask_ci("Decode AGVSBG8=")
    assert calls.n == 7


def test_key_parts_static_and_computed_and_ignore():
    calls = Counter()

    @aicost.cache(prompt="q", ignore=["client"], key_parts={"template": "v1"})
    def v1(q, client):
        return calls.bump()

    @aicost.cache(prompt="q", ignore=["client"], key_parts={"template": "v2"}, name=v1.cache.name)
    def v2(q, client):
        return calls.bump()

    v1("x", object())
    v1("x", object())  # client ignored: a hit
    v2("x", object())  # same name, different key part: a miss
    assert calls.n == 2

    @aicost.cache(key_parts=lambda q, locale: {"locale": locale.lower()}, ignore=["locale"])
    def localised(q, locale):
        return calls.bump()

    localised("a", "EN")
    localised("a", "en")
    assert calls.n == 3


def test_code_constants_are_keyed_so_editing_a_hardcoded_model_invalidates():
    from aicost.cache.keys import code_fingerprint

    def a(q):
        return ("gpt-4o", "You are terse.", q)

    def b(q):
        return ("gpt-4o-mini", "You are terse.", q)

    def c(q):
        return ("gpt-4o", "You are terse.", q)

    assert code_fingerprint(a) != code_fingerprint(b)
    assert code_fingerprint(a) == code_fingerprint(c)


def test_uncacheable_argument_calls_through_every_time():
    calls = Counter()

    @aicost.cache
    def f(obj):
        return calls.bump()

    thing = object()
    assert f(thing) == 1 and f(thing) == 2  # no canonical form: never keyed by something lossy


def test_why_a_call_is_not_cached_names_the_parameter_and_type_never_a_value(caplog):
    """"Not cached for this call" is logged once per function, with the reason. Private by default: a dict keyed by
    the user's data, an argument whose own ``model_dump`` quotes its value, a keyword the function does not take:
    the log names the parameter and the type, never a key or value of the application's data."""
    import logging

    secret = "sk-live-SECRET-4242"

    class Leaky:  # renders itself for the key with an error that quotes what it holds
        def model_dump(self, **kwargs):
            raise ValueError(f"cannot dump {secret}")

    @aicost.cache
    def by_user(meta):
        return 1

    @aicost.cache
    def dumps(meta):
        return 2

    @aicost.cache
    def strict(meta):
        return 3

    caplog.set_level(logging.INFO, logger="aicost")
    assert by_user({secret: object()}) == 1  # the key is data; the value has no canonical form
    assert dumps(Leaky()) == 2
    with pytest.raises(TypeError):  # the function's own error, to the caller, as without the cache
        strict(1, **{secret: 2})
    text = caplog.text
    assert secret not in text, text
    messages = [r.getMessage() for r in caplog.records if "not cached for this call" in r.getMessage()]
    assert len(messages) == 3, messages
    assert "arguments.meta of type object has no canonical form" in messages[0]
    assert "arguments.meta: rendering it for the key raised ValueError" in messages[1]
    assert "the arguments do not bind to its parameters" in messages[2]


def test_a_key_that_fails_to_build_is_logged_once_without_a_traceback_or_the_applications_data(caplog,
                                                                                               monkeypatch):
    """Reading the prompt runs the application's code (a mapping type of its own), and any failure's message may
    quote what it read: the call goes through uncached, and the log names the argument (or the function) and the
    exception type, once, never a traceback."""
    import logging
    from collections.abc import Mapping

    from aicost.cache import decorator

    secret = "sk-live-SECRET-4242"

    class Message(Mapping):  # the application's own dict type, whose reading fails quoting what it holds
        def __getitem__(self, key):
            raise KeyError(f"{key} of {secret}")

        def __iter__(self):
            return iter(["content"])

        def __len__(self):
            return 1

    @aicost.cache(prompt="messages")
    def ask(messages):
        return "answer"

    @aicost.cache
    def plain(question):
        return "plain"

    caplog.set_level(logging.INFO, logger="aicost")
    for _ in range(2):
        assert ask([Message()]) == "answer"
    with monkeypatch.context() as patch:  # a failure past the arguments (here: hashing), its message as leaky
        patch.setattr(decorator, "hash_material", lambda material: (_ for _ in ()).throw(ValueError(secret)))
        for _ in range(2):
            assert plain("q") == "plain"
    assert secret not in caplog.text and "Traceback" not in caplog.text, caplog.text
    assert not any(r.exc_info for r in caplog.records)
    [uncacheable, failed] = [r.getMessage() for r in caplog.records]  # once each
    assert uncacheable.endswith(".ask is not cached for this call: messages: rendering it for the key raised KeyError")
    assert failed.endswith(".plain failed with ValueError; it is not cached for this call")


def test_objects_whose_state_is_hidden_from_dict_are_uncacheable_not_keyed_by_their_type(tmp_path):
    """A binary file, BytesIO/StringIO or functools.partial has an empty ``__dict__`` (its state lives in C): it
    was keyed as "an instance of its class", so a second audio file got the first file's transcript."""
    import functools
    import io

    import anthropic
    import openai

    from aicost.cache.keys import Uncacheable, canonical

    calls = []

    @aicost.cache(shared=True)
    def transcribe(file, model="whisper-1"):
        calls.append(file.read())
        return f"transcript of {calls[-1]!r}"

    for name, body in (("a.mp3", b"AUDIO-A"), ("b.mp3", b"AUDIO-B")):
        (tmp_path / name).write_bytes(body)
    with open(tmp_path / "a.mp3", "rb") as fa:
        assert transcribe(fa) == "transcript of b'AUDIO-A'"
    with open(tmp_path / "b.mp3", "rb") as fb:
        assert transcribe(fb) == "transcript of b'AUDIO-B'"
    assert transcribe(io.BytesIO(b"X")) == "transcript of b'X'"
    assert len(calls) == 3
    with open(tmp_path / "a.mp3", "rb") as fa:
        hidden = [fa, io.BytesIO(b"1"), io.StringIO("1"), functools.partial(int, "1"), EmptyThing()]
        for value in hidden:
            with pytest.raises(Uncacheable):
                canonical(value)
    # The SDKs' sentinels still have a canonical form: every instance is the same value.
    for sentinel in (openai.NOT_GIVEN, openai.omit, anthropic.NOT_GIVEN, anthropic.omit):
        assert canonical(sentinel) == canonical(type(sentinel)())


class EmptyThing:
    """A user's class with nothing in its ``__dict__``: not known to be a sentinel, so not keyed by its type."""


@pytest.mark.parametrize("kwargs, argument, accepted", [
    ({"ttl": -1}, "ttl", "positive number of seconds"),
    ({"ttl": float("nan")}, "ttl", "positive number of seconds"),
    ({"ttl": "600"}, "ttl", "positive number of seconds"),
    ({"max_entries": 0}, "max_entries", "positive int"),
    ({"max_entries": 10, "store": MemoryStore(5)}, "max_entries", "size a given store itself"),
    ({"prompt": 3}, "prompt", "name of a parameter"),
    ({"prompt": "question"}, "prompt", "name of a parameter of"),
    ({"prompt": "q", "ignore": ["q"]}, "prompt", "not also ignored"),
    ({"ignore": 5}, "ignore", "parameter name or a list"),
    ({"ignore": ["client"]}, "ignore", "names of parameters"),
    ({"key_parts": "v2"}, "key_parts", "mapping, a callable"),
    ({"scope": ["planet"]}, "scope", "'customer'"),
    ({"scope": 7}, "scope", "'customer'"),
    # '' for every caller, so one scope shared by all tenants: a misspelt attribute, a tag no call can carry
    ({"scope": ["aicost.custmer"]}, "scope", "'customer'"),
    ({"scope": ["tag:tenant id"]}, "scope", "a tag name"),
    ({"scope": ["aicost.tag."]}, "scope", "a tag name"),
    ({"scope": ["user"], "shared": True}, "scope", "contradict"),
    ({"shared": "yes"}, "shared", "True or False"),
    ({"store": object()}, "store", "get/put/delete/clear"),
    ({"semantic": object(), "prompt": "q"}, "semantic", "Semantic"),
    ({"semantic": object()}, "semantic", "needs prompt"),
    ({"name": ""}, "name", "non-empty str"),
    ({"name": 5}, "name", "non-empty str"),
    ({"case_sensitive": "false"}, "case_sensitive", "True or False"),  # a string used to turn folding on
    ({"single_flight": 0}, "single_flight", "True or False"),
    ({"single_flight_timeout": 0}, "single_flight_timeout", "positive number of seconds"),
    ({"cache_if": True}, "cache_if", "callable"),
])
def test_every_bad_argument_is_one_configuration_error_naming_it(kwargs, argument, accepted):
    from aicost.errors import ConfigurationError

    def f(q):
        return q

    with pytest.raises(ConfigurationError) as info:
        aicost.cache(**kwargs)(f)
    message = str(info.value)
    assert f"aicost.cache({argument}=" in message and accepted in message, message


def test_prompt_only_kwargs_can_receive_is_rejected_unless_every_argument_is_a_keyword(caplog):
    """``prompt=`` naming no parameter of a function with **kwargs used to be accepted: positional calls then got
    neither normalisation nor the semantic tier, silently."""
    from aicost.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"prompt=.*'qestion'.*positionally \(here: question\)"):
        @aicost.cache(prompt="qestion")
        def ask(question, **options):
            return question

    with pytest.raises(ConfigurationError, match="prompt"):
        @aicost.cache(prompt="messages")
        def create(*args, **kwargs):
            return args

    with pytest.raises(ConfigurationError, match="prompt"):
        @aicost.cache(prompt="kwargs")
        def create_all(**kwargs):
            return kwargs

    calls = Counter()

    @aicost.cache(prompt="messages", ignore=["self"])  # SDK style: everything arrives by keyword
    def complete(self, **kwargs):
        return calls.bump()

    assert complete(None, messages="Hi ") == complete(None, messages="Hi") == 1
    with caplog.at_level("WARNING", logger="aicost"):
        complete(None, prompt="Hi")  # the prompt argument is absent: said once, not silently ignored
    assert "without its prompt argument 'messages'" in caplog.text


# ------------------------------------------------------------------------------------------------ tenancy
def test_hits_never_cross_tenants_unless_shared():
    calls = Counter()

    @aicost.cache(prompt="q")
    def answer(q):
        return (calls.bump(), q)

    with aicost.attribute(customer="acme", user="u1"):
        a1 = answer("what is our refund policy?")
        assert answer("what is our refund policy?") == a1
    with aicost.attribute(customer="globex", user="u1"):
        assert answer("what is our refund policy?") != a1
    with aicost.attribute(customer="acme", user="u2"):
        assert answer("what is our refund policy?") != a1
    with aicost.attribute(customer="acme", user="u1", feature="other"):
        assert answer("what is our refund policy?") == a1  # feature is not a tenant by default
    assert calls.n == 3

    @aicost.cache(prompt="q", scope=["customer"])
    def per_customer(q):
        return calls.bump()

    with aicost.attribute(customer="acme", user="u1"):
        x = per_customer("faq")
    with aicost.attribute(customer="acme", user="u2"):
        assert per_customer("faq") == x
    with aicost.attribute(customer="initech", user="u2"):
        assert per_customer("faq") != x

    @aicost.cache(prompt="q", scope=["tag:tenant"])
    def per_tenant(q):
        return calls.bump()

    with aicost.attribute(customer="acme", tenant="t1"):
        z = per_tenant("faq")
    with aicost.attribute(customer="globex", tenant="t1"):
        assert per_tenant("faq") == z
    with aicost.attribute(customer="acme", tenant="t2"):
        assert per_tenant("faq") != z

    @aicost.cache(prompt="q", shared=True)
    def public(q):
        return calls.bump()

    with aicost.attribute(customer="acme"):
        y = public("what is 2+2")
    with aicost.attribute(customer="globex"):
        assert public("what is 2+2") == y


def test_scope_is_also_enforced_across_threads_with_context():
    calls = Counter()

    @aicost.cache
    def answer(q):
        return calls.bump()

    results = {}

    def worker(customer):
        with aicost.attribute(customer=customer):
            results[customer] = answer("same question")

    threads = [threading.Thread(target=worker, args=(f"c{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(set(results.values())) == 6


# ------------------------------------------------------------------------------------------------ TTL / LRU
def test_ttl_expiry_and_lru_eviction():
    now = [1000.0]
    store = MemoryStore(max_entries=2, clock=lambda: now[0])
    calls = Counter()

    @aicost.cache(ttl=60, store=store)
    def f(x):
        return (x, calls.bump())

    a = f("a")
    now[0] += 59
    assert f("a") == a
    now[0] += 2
    assert f("a") != a  # expired
    assert calls.n == 2
    f("b")
    f("a")  # touch a: b is now least recently used
    f("c")  # evicts b
    assert len(store) == 2 and store.evictions == 1
    before = calls.n
    f("a"), f("c")
    assert calls.n == before
    f("b")
    assert calls.n == before + 1


def test_invalidate_clear_uncached_and_bypass():
    calls = Counter()

    @aicost.cache(prompt="q")
    def f(q):
        return calls.bump()

    first = f("Q1")
    assert f.invalidate(" Q1 ") is True  # normalised like a lookup
    assert f("Q1") == first + 1
    assert f.uncached("Q1") == first + 2  # per-call bypass
    with aicost.cache.bypass():
        assert f("Q1") == first + 3  # no read
    assert f("Q1") == first + 1  # and no write inside the bypass block
    f("Q2")
    assert f.clear() == 2
    assert f("Q1") == calls.n and calls.n == first + 5



def test_clear_drops_only_its_own_function_when_a_name_extends_it():
    """Keys are ':'-joined: a function named "a" must not clear the entries of one named "a:b" (or "a:b:c")."""
    store = MemoryStore()

    def make(name):
        @aicost.cache(prompt="q", name=name, store=store)
        def f(q):
            return f"{name}: {q}"

        return f

    a, ab, abc = make("a"), make("a:b"), make("a:b:c")
    for f in (a, ab, abc):
        f("Q1"), f("Q2")
    assert len(store) == 6
    assert a.clear() == 2
    assert ab.clear() == 2
    assert store.get(abc.key_for("Q1")).value == "a:b:c: Q1" and len(store) == 2

def test_cache_if_skips_storing_unwanted_results():
    calls = Counter()

    @aicost.cache(cache_if=lambda r: r["finish_reason"] == "stop")
    def f(x):
        n = calls.bump()
        return {"finish_reason": "length" if n == 1 else "stop", "n": n}

    assert f(1)["n"] == 1
    assert f(1)["n"] == 2
    assert f(1)["n"] == 2


def test_cache_if_judges_a_completed_stream_by_its_chunks():
    """cache_if used to be skipped for streams: a stream it rejects (cut by max_tokens) was stored and replayed."""
    calls = Counter()
    judged = []

    def finished(chunks):
        judged.append(list(chunks))
        return chunks[-1]["finish_reason"] == "stop"

    @aicost.cache(cache_if=finished)
    def stream(q):
        n = calls.bump()

        def gen():
            yield {"delta": "partial" if n == 1 else "whole"}
            yield {"finish_reason": "length" if n == 1 else "stop"}

        return gen()

    assert list(stream("q"))[-1] == {"finish_reason": "length"}
    assert list(stream("q"))[-1] == {"finish_reason": "stop"}  # the cut stream was not stored
    assert list(stream("q"))[-1] == {"finish_reason": "stop"}  # the whole one was
    assert calls.n == 2
    assert judged == [[{"delta": "partial"}, {"finish_reason": "length"}],
                      [{"delta": "whole"}, {"finish_reason": "stop"}]]


def test_hit_returns_a_copy_the_caller_can_mutate():
    @aicost.cache
    def f(x):
        return {"items": [1, 2]}

    f(1)["items"].append(3)
    assert f(1) == {"items": [1, 2]}


# ------------------------------------------------------------------------------------------------ errors
def test_exceptions_propagate_and_are_not_cached():
    calls = Counter()

    @aicost.cache
    def f(x):
        if calls.bump() == 1:
            raise RuntimeError("vendor down")
        return "ok"

    with pytest.raises(RuntimeError, match="vendor down"):
        f(1)
    assert f(1) == "ok" and f(1) == "ok" and calls.n == 2


def test_a_failing_store_never_loses_the_answer(caplog):
    class BrokenStore:
        def get(self, key):
            raise ConnectionError("store down")

        def put(self, key, entry, ttl):
            raise ConnectionError("store down")

        def delete(self, key):
            return False

        def clear(self, prefix=""):
            return 0

    @aicost.cache(store=BrokenStore())
    def f(x):
        return x * 2

    assert f(21) == 42 and f(21) == 42


# ------------------------------------------------------------------------------------------------ single flight
def test_concurrent_identical_misses_call_once():
    calls = Counter()
    gate = threading.Barrier(8, timeout=10)

    @aicost.cache
    def slow(q):
        calls.bump()
        for _ in range(7):  # every other caller is waiting for this one
            assert followers.acquire(timeout=10)
        return q.upper()

    followers = followers_of(slow)

    results = []

    def worker():
        gate.wait()
        results.append(slow("question"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert results == ["QUESTION"] * 8
    assert calls.n == 1


def test_single_flight_followers_call_themselves_when_the_leader_fails():
    calls = Counter()
    gate = threading.Barrier(4, timeout=10)

    @aicost.cache
    def flaky(q):
        n = calls.bump()
        if n == 1:
            for _ in range(3):  # every other caller is waiting for this one
                assert followers.acquire(timeout=10)
            raise RuntimeError("leader failed")
        return "ok"

    followers = followers_of(flaky)

    outcomes = []

    def worker():
        gate.wait()
        try:
            outcomes.append(flaky("q"))
        except RuntimeError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert outcomes.count("leader failed") == 1  # the leader's error is not handed to followers
    assert outcomes.count("ok") == 3


async def test_async_functions_cache_and_single_flight():
    calls = Counter()

    @aicost.cache(prompt="q")
    async def answer(q):
        calls.bump()
        await asyncio.sleep(0.2)
        fake_llm_call("0.002")
        return f"A:{q}"

    results = await asyncio.gather(*(answer("Same Question") for _ in range(10)))
    assert results == ["A:Same Question"] * 10
    assert calls.n == 1
    assert await answer("Same   Question ") == "A:Same Question"
    assert calls.n == 1
    await asyncio.wait_for(answer("other"), 5)
    assert calls.n == 2


async def test_an_async_leader_cancelled_while_waiting_for_another_process_lands_its_flight():
    """Cancelled (asyncio.wait_for) while polling for another process's answer, the leader never landed: every
    later identical miss in this process waited the whole single_flight_timeout for it."""

    class LockingStore(MemoryStore):  # the RedisStore lock surface; another process holds the lock at first
        other_holds = True

        def try_lock(self, key, timeout_s):
            return None if self.other_holds else "token"

        def unlock(self, key, token):
            pass

        def is_locked(self, key):
            return self.other_holds

    store = LockingStore()

    @aicost.cache(store=store, single_flight_timeout=5.0)
    async def ask(q):
        return f"answer {q}"

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ask("q"), 0.2)
    assert len(ask.cache.flights) == 0
    store.other_holds = False  # the other process released its lock without an answer
    t0 = time.perf_counter()
    assert await asyncio.wait_for(ask("q"), 4.0) == "answer q"
    assert time.perf_counter() - t0 < 2.0


# ------------------------------------------------------------------------------------------------ streams
def test_stream_cached_only_when_fully_consumed():
    calls = Counter()

    @aicost.cache
    def stream(q):
        calls.bump()

        def gen():
            fake_llm_call("0.01")
            for i in range(5):
                yield f"{q}-{i}"

        return gen()

    s = stream("x")
    assert next(s) == "x-0"
    s.close()  # abandoned after one chunk: must not be cached
    assert list(stream("x")) == [f"x-{i}" for i in range(5)]
    assert calls.n == 2
    replay = stream("x")
    assert list(replay) == [f"x-{i}" for i in range(5)]
    assert calls.n == 2
    with stream("x") as again:
        assert next(again) == "x-0"


def test_stream_chunks_are_stored_and_replayed_as_copies():
    """Chunks were stored and replayed by reference: a consumer editing a chunk in place (while the stream ran,
    or on a replay) changed what the cache served every later caller. Plain values were already copied."""

    @aicost.cache
    def stream(q):
        def gen():
            yield {"delta": "Hello"}
            yield {"delta": " world"}

        return gen()

    for chunk in stream("q"):  # the miss's consumer post-processes chunks in place
        chunk["delta"] = chunk["delta"].upper()
    assert [c["delta"] for c in stream("q")] == ["Hello", " world"]
    for chunk in stream("q"):  # a hit's consumer redacts in place
        chunk["delta"] = "***"
    assert [c["delta"] for c in stream("q")] == ["Hello", " world"]


async def test_async_stream_chunks_are_stored_and_replayed_as_copies():
    @aicost.cache
    async def astream(q):
        async def agen():
            yield {"delta": "Hello"}

        return agen()

    async for chunk in await astream("q"):
        chunk["delta"] = "EDITED"
    async for chunk in await astream("q"):
        assert chunk == {"delta": "Hello"}
        chunk["delta"] = "EDITED"
    assert [c async for c in await astream("q")] == [{"delta": "Hello"}]


def test_a_chunk_that_cannot_be_copied_is_still_cached_as_it_is():
    import threading

    calls = Counter()

    @aicost.cache
    def stream(q):
        calls.bump()
        return iter([{"lock": threading.Lock()}])  # deepcopy raises on a lock

    first = list(stream("q"))
    assert list(stream("q")) == first and calls.n == 1


def test_generator_function_stream_and_error_midway_not_cached():
    calls = Counter()

    @aicost.cache
    def gen(q):
        n = calls.bump()
        yield 1
        if n == 1:
            raise ConnectionError("dropped")
        yield 2

    with pytest.raises(ConnectionError):
        list(gen("q"))
    assert list(gen("q")) == [1, 2]
    assert list(gen("q")) == [1, 2]
    assert calls.n == 2


async def test_async_stream_cached_when_consumed():
    calls = Counter()

    @aicost.cache
    async def astream(q):
        calls.bump()

        async def agen():
            for i in range(3):
                await asyncio.sleep(0)
                yield i

        return agen()

    assert [c async for c in await astream("q")] == [0, 1, 2]
    assert [c async for c in await astream("q")] == [0, 1, 2]
    assert calls.n == 1


def test_a_second_call_while_the_first_stream_is_open_in_the_same_thread_does_not_wait_for_itself():
    """The follower would wait for a stream that only this thread can finish: it used to sit out the whole
    single-flight timeout."""
    calls = Counter()

    @aicost.cache(prompt="q", single_flight_timeout=10)
    def stream(q):
        calls.bump()
        yield from (q + "-a", q + "-b")

    first = stream("x")
    assert next(first) == "x-a"
    t0 = time.monotonic()
    second = stream("x")  # identical, while the first stream is still open here
    assert time.monotonic() - t0 < 5
    assert list(second) == ["x-a", "x-b"] and list(first) == ["x-b"]
    assert calls.n == 2
    assert list(stream("x")) == ["x-a", "x-b"] and calls.n == 2  # and it is cached


def test_single_flight_still_waits_for_a_stream_consumed_in_another_thread():
    calls = Counter()
    opened = threading.Event()

    @aicost.cache(prompt="q")
    def stream(q):
        calls.bump()
        yield q + "-a"
        yield q + "-b"

    def leader():
        s = stream("x")
        assert next(s) == "x-a"
        opened.set()
        assert followers.acquire(timeout=10)  # the identical call is waiting for this stream
        assert list(s) == ["x-b"]

    followers = followers_of(stream)
    thread = threading.Thread(target=leader)
    thread.start()
    assert opened.wait(10)
    assert list(stream("x")) == ["x-a", "x-b"]  # waited for the other thread's stream, then replayed it
    thread.join(10)
    assert calls.n == 1


async def test_gather_of_identical_async_stream_calls_does_not_wait_for_itself():
    """asyncio.gather(f(q), f(q)): both streams are consumed only after both calls returned, so the follower must
    not wait for the leader's stream (it used to wait the whole single-flight timeout)."""
    calls = Counter()

    @aicost.cache(prompt="q", single_flight_timeout=10)
    async def astream(q):
        calls.bump()
        await asyncio.sleep(0.05)

        async def agen():
            for i in range(3):
                await asyncio.sleep(0)
                yield f"{q}-{i}"

        return agen()

    t0 = time.monotonic()
    first, second = await asyncio.gather(astream("q"), astream("q"))
    assert time.monotonic() - t0 < 5
    assert [c async for c in first] == [c async for c in second] == ["q-0", "q-1", "q-2"]
    assert calls.n == 2
    assert [c async for c in await astream("q")] == ["q-0", "q-1", "q-2"] and calls.n == 2


async def test_async_value_calls_on_one_loop_still_share_one_flight():
    calls = Counter()

    @aicost.cache(prompt="q")
    async def answer(q):
        calls.bump()
        await asyncio.sleep(0.1)
        return q.upper()

    assert await asyncio.gather(answer("q"), answer("q"), answer("q")) == ["Q", "Q", "Q"]
    assert calls.n == 1


async def test_plain_def_returning_a_coroutine_caches_the_awaited_value(cache_tel):
    """``def ask(q): return async_client.chat.completions.create(...)``: the coroutine itself used to be cached,
    and the second call raised "cannot reuse already awaited coroutine"."""
    calls = Counter()

    async def vendor(q):
        await asyncio.sleep(0)
        fake_llm_call("0.0125")
        return {"answer": q.upper(), "call": calls.bump()}

    @aicost.cache(prompt="q")
    def ask(q):
        return vendor(q)

    assert await ask("hello") == {"answer": "HELLO", "call": 1}
    hit = ask("hello")
    assert asyncio.iscoroutine(hit)  # the caller awaits what it gets, hit or miss
    assert await hit == {"answer": "HELLO", "call": 1}
    assert calls.n == 1
    spans = cache_tel.cache_spans()
    assert [s.attributes[semconv.AICOST_CACHE_OUTCOME] for s in spans] == ["miss", "hit"]
    assert spans[1].attributes[semconv.AICOST_CACHE_SAVED_USD] == "0.0125"  # the awaited call was counted


async def test_plain_def_returning_an_awaitable_stream_and_a_failing_awaitable():
    calls = Counter()

    async def open_stream(q):
        n = calls.bump()
        if n == 1:
            raise ConnectionError("vendor down")

        async def agen():
            yield q + "-a"
            yield q + "-b"

        return agen()

    @aicost.cache(prompt="q")
    def ask(q):
        return open_stream(q)

    with pytest.raises(ConnectionError):
        await ask("x")  # the failure reaches the caller and nothing is cached
    assert [c async for c in await ask("x")] == ["x-a", "x-b"]
    assert [c async for c in await ask("x")] == ["x-a", "x-b"]
    assert calls.n == 2


async def test_async_miss_writes_a_shared_store_off_the_event_loop():
    """Writing a miss's answer to a slow shared store used to run on the event loop, stalling every other task."""

    ticks = 0

    class SlowSharedStore:  # any store that is not the in-memory one may do I/O
        def __init__(self):
            self.inner = MemoryStore()

        def get(self, key):
            return self.inner.get(key)

        def put(self, key, entry, ttl):
            # The write lasts until the event loop has run 5 other steps: for ever, were it run on that loop
            # (a deadline ends it), and however long a loaded machine takes otherwise.
            deadline = time.monotonic() + 10
            while ticks < before + 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            self.inner.put(key, entry, ttl)

        def delete(self, key):
            return self.inner.delete(key)

        def clear(self, prefix=""):
            return self.inner.clear(prefix)

    @aicost.cache(prompt="q", store=SlowSharedStore())
    async def answer(q):
        return q.upper()

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    before = ticks
    assert await answer("q") == "Q"
    during = ticks - before
    task.cancel()
    assert during >= 5, f"the event loop ran only {during} other steps during the store write"
    assert await answer("q") == "Q"


# ------------------------------------------------------------------------------------------------ telemetry
def test_stored_says_whether_a_value_was_written_and_is_absent_for_a_stream(cache_tel):
    """docs/cache.md: ``aicost.cache.stored`` is on the span of a miss that returned a value: true when written,
    false when ``cache_if`` refused it or the write failed. A stream is stored when consumed to the end, after
    the call's span has ended, so its span does not carry it."""
    class FailingStore(MemoryStore):
        def put(self, key, entry, ttl):
            raise ConnectionError("store down")

    @aicost.cache(prompt="q", store=FailingStore())
    def down(q):
        return q

    @aicost.cache(prompt="q", cache_if=lambda result: False)
    def refused(q):
        return q

    @aicost.cache(prompt="q")
    def streamed(q):
        return iter([q, q])

    assert down("a") == "a" and refused("b") == "b" and list(streamed("c")) == ["c", "c"]
    failed, rejected, stream = cache_tel.cache_spans()
    assert failed.attributes[semconv.AICOST_CACHE_STORED] is False
    assert rejected.attributes[semconv.AICOST_CACHE_STORED] is False
    assert semconv.AICOST_CACHE_STORED not in stream.attributes
    assert streamed("c") is not None and cache_tel.cache_spans()[-1].attributes[semconv.AICOST_CACHE_HIT] is True


def test_hit_records_saved_cost_similarity_and_miss_records_lookup_time(cache_tel):
    @aicost.cache(prompt="q", name="support.answer")
    def answer(q):
        fake_llm_call("0.0125")
        fake_llm_call("0.0008")
        return "42"

    answer("What is the answer?")
    answer("What is the  answer ?")
    miss, hit = cache_tel.cache_spans()
    assert miss.attributes[semconv.AICOST_CACHE_HIT] is False
    assert miss.attributes[semconv.AICOST_CACHE_OUTCOME] == "miss"
    assert miss.attributes[semconv.AICOST_CACHE_LOOKUP_DURATION] >= 0
    assert miss.attributes[semconv.AICOST_CACHE_STORED] is True
    assert hit.attributes[semconv.AICOST_CACHE_HIT] is True
    assert hit.attributes[semconv.AICOST_CACHE_TIER] == "exact"
    assert hit.attributes[semconv.AICOST_CACHE_SIMILARITY] == 1.0
    assert Decimal(hit.attributes[semconv.AICOST_CACHE_SAVED_USD]) == Decimal("0.0133")
    for span in (miss, hit):  # savings are never spend
        assert semconv.GEN_AI_USAGE_COST not in span.attributes
    saved = cache_tel.points(semconv.METRIC_CACHE_SAVED)
    assert len(saved) == 1 and saved[0].value == pytest.approx(0.0133)
    lookups = {p.attributes[semconv.AICOST_CACHE_OUTCOME]: p.value
               for p in cache_tel.points(semconv.METRIC_CACHE_LOOKUPS)}
    assert lookups == {"hit": 1, "miss": 1}
    durations = cache_tel.points(semconv.METRIC_CACHE_LOOKUP_DURATION)
    assert sum(p.count for p in durations) == 2
    assert cache_tel.points(semconv.METRIC_COST) == []


def test_nested_calls_of_a_hit_are_not_reported_to_outer_collectors():
    """A hit makes no vendor call: budgets and rollups (outer collectors) see nothing billed."""
    from aicost.hooks import collect_calls

    @aicost.cache
    def f(x):
        fake_llm_call("0.5")
        return x

    with collect_calls() as first:
        f(1)
    with collect_calls() as second:
        f(1)
    assert first.cost_usd == Decimal("0.5") and second.calls == 0


def test_prompt_normalisation_keeps_code_indentation():
    from aicost.cache.keys import normalise_text

    assert normalise_text("What is the capital of France ?") == normalise_text("What is the  capital of France")
    assert normalise_text("Convert 5 miles to kilometers.") == normalise_text("Convert 5 miles to kilometers")
    indented = "Fix this:\nif x:\n    return 1\nreturn 2"
    dedented = "Fix this:\nif x:\n    return 1\n    return 2"
    assert normalise_text(indented) != normalise_text(dedented)  # indentation can change the answer
    assert normalise_text(indented + "   \n") == normalise_text(indented)
    assert normalise_text("What is 3.5") != normalise_text("What is 3")


@pytest.mark.parametrize("a, b", [
    ("What is 2³?", "What is 23?"),  # NFKC used to make these one key
    ("Simplify 10⁶", "Simplify 106"),
    ("Solve x₁ + x₂ = 3", "Solve x1 + x2 = 3"),
    ("Decode aGVsbG8=", "Decode AGVSBG8="),  # case folding used to
    ("Is Polish hard?", "Is polish hard?"),
    ("What is 5!", "What is 5"),  # a factorial, not an exclamation
    # A space before punctuation, line breaks and ellipses used to be dropped:
    ("Explain: rm -rf .", "Explain: rm -rf"),
    ("What does `git add .` do", "What does `git add` do"),
    ("Is this valid Python?\nimport os\nprint(os.getcwd())", "Is this valid Python? import os print(os.getcwd())"),
    ("How many lines are in this text:\nalpha\nbeta\ngamma", "How many lines are in this text: alpha beta gamma"),
    ("Continue the sequence 1, 2, 3...", "Continue the sequence 1, 2, 3"),
    ("Explain: cd ..", "Explain: cd"),
    ("Parse this TSV: a\tb", "Parse this TSV: a b"),
])
def test_normalisation_never_merges_requests_that_differ_in_meaning(a, b):
    from aicost.cache.keys import normalise_text

    calls = Counter()

    @aicost.cache(prompt="q")
    def ask(q):
        return calls.bump()

    assert (ask(a), ask(b)) == (1, 2)
    assert normalise_text(a) != normalise_text(b)
    if a.startswith("Decode"):  # the opt-in case folding keeps a token whose case is meaning
        assert normalise_text(a, case_sensitive=False) != normalise_text(b, case_sensitive=False)


def test_normalisation_merges_only_formatting():
    from aicost.cache.keys import normalise_text

    assert normalise_text("caf\u00e9 menu") == normalise_text("cafe\u0301 menu")  # NFC: one character either way
    assert normalise_text("  How do I   reset my password ?\n") == normalise_text("How do I reset my password")
    assert normalise_text("How do I reset my password") != normalise_text("how do i reset my password")
    assert normalise_text("How do I reset my password", case_sensitive=False) == normalise_text(
        "HOW do i reset my Password?", case_sensitive=False)


def test_normalisation_of_multi_line_text_merges_only_formatting():
    """Line breaks are kept; what around them cannot change the question is still merged."""
    from aicost.cache.keys import normalise_text

    typed = "\n\nSummarise these notes:  \r\n- buy   milk \n\n  - call Bob\n\n"
    assert normalise_text(typed) == "Summarise these notes:\n- buy milk\n\n  - call Bob"
    assert normalise_text("Fix this:\nif x:\n    return  1  ") == "Fix this:\nif x:\n    return 1"
    assert normalise_text("Convert 5 miles to kilometers.\n") == "Convert 5 miles to kilometers"


def test_methods_key_on_what_self_contributes():
    class Assistant:
        def __init__(self, model):
            self.model = model
            self.calls = 0

        @aicost.cache(prompt="q", ignore=["self"], key_parts=lambda self, q: {"model": self.model})
        def ask(self, q):
            self.calls += 1
            return f"{self.model}:{q}"

    mini, big, mini2 = Assistant("gpt-4o-mini"), Assistant("gpt-4o"), Assistant("gpt-4o-mini")
    assert mini.ask("hi") == "gpt-4o-mini:hi"
    assert big.ask("hi") == "gpt-4o:hi"  # another model: not served the mini's answer
    assert mini2.ask(" hi ") == "gpt-4o-mini:hi"  # same model, other instance: a hit
    assert (mini.calls, big.calls, mini2.calls) == (1, 1, 0)


def test_sdk_style_kwargs_function_keys_every_keyword():
    calls = Counter()

    @aicost.cache(prompt="messages")
    def create(**kwargs):
        return calls.bump()

    msgs = [{"role": "user", "content": "Hi"}]
    create(model="m", messages=msgs, top_p=1)
    create(messages=[{"role": "user", "content": "Hi "}], top_p=1, model="m")
    create(model="m", messages=msgs, top_p=0.5)
    create(model="m", messages=msgs, top_p=1, seed=7)
    assert calls.n == 3


async def test_bypass_block_applies_to_async_calls():
    calls = Counter()

    @aicost.cache
    async def f(x):
        return calls.bump()

    await f(1)
    with aicost.cache.bypass():
        assert await f(1) == 2
    assert await f(1) == 1


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _json, max_size=5), st.randoms())
def test_key_material_ignores_dict_order_but_not_values(payload, rnd):
    from aicost.cache.keys import canonical, hash_material

    items = list(payload.items())
    rnd.shuffle(items)
    assert hash_material(canonical(dict(items))) == hash_material(canonical(payload))
    if payload:
        k = next(iter(payload))
        changed = dict(payload, **{k: [payload[k], "changed"]})
        assert hash_material(canonical(changed)) != hash_material(canonical(payload))


def test_sdk_sentinels_enums_and_dates_have_canonical_forms():
    import datetime
    import enum

    import openai

    from aicost.cache.keys import canonical, hash_material

    class Tier(enum.Enum):
        FAST = "fast"
        SLOW = "slow"

    calls = Counter()

    @aicost.cache(prompt="q")
    def ask(q, temperature=openai.NOT_GIVEN, tier=Tier.FAST, as_of=datetime.date(2026, 1, 1)):
        return calls.bump()

    ask("x")
    ask("x")
    ask("x", temperature=0.2)
    ask("x", tier=Tier.SLOW)
    ask("x", as_of=datetime.date(2026, 1, 2))
    assert calls.n == 4
    assert hash_material(canonical(openai.NOT_GIVEN)) != hash_material(canonical(None))


def test_savings_metric_carries_team_and_feature_but_not_user(cache_tel):
    @aicost.cache(prompt="q")
    def answer(q):
        fake_llm_call("0.01")
        return "a"

    with aicost.attribute(team="support", feature="faq", user="u-123", customer="acme"):
        answer("q")
        answer("q")
    (saved,) = cache_tel.points(semconv.METRIC_CACHE_SAVED)
    assert saved.attributes[semconv.AICOST_TEAM] == "support"
    assert saved.attributes[semconv.AICOST_FEATURE] == "faq"
    assert semconv.AICOST_USER not in saved.attributes and semconv.AICOST_CUSTOMER not in saved.attributes


@pytest.mark.parametrize("context", [dict(prec=5), dict(prec=60), dict(capitals=0), dict(prec=3, capitals=0)],
                         ids=["prec-5", "prec-60", "lowercase-exponent", "prec-3-lowercase"])
def test_a_decimal_is_keyed_by_its_exact_value_whatever_the_hosts_decimal_context(context):
    """Two hosts sharing a store key the same request alike: the host app's decimal precision or ``capitals``
    setting must neither change a Decimal's key nor make two different Decimals share one."""
    import decimal

    from aicost.cache.keys import canonical, hash_material

    values = ["1.234567", "1.234568", "1.50", "1.5", "10", "1E+1", "0.000000000000000000000000000000012345678",
              "-0", "0E-7", "12345678901234567890123456789012345678901234567890", "NaN", "-Infinity"]
    default = {v: hash_material(canonical(decimal.Decimal(v))) for v in values}
    with decimal.localcontext(**context):
        assert {v: hash_material(canonical(decimal.Decimal(v))) for v in values} == default
    assert default["1.234567"] != default["1.234568"]
    assert default["1.50"] == default["1.5"] and default["10"] == default["1E+1"] and default["-0"] == default["0E-7"]
    assert len(set(default.values())) == len(values) - 3
