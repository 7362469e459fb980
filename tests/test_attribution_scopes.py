"""Attribution scopes: merging, validation, decorators, threads, tasks and baggage, without a vendor call."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import baggage, context as otel_context, propagate

import aicost
from aicost import semconv
from aicost.attribution import (
    ContextExecutor,
    attribute,
    attributes_from_headers,
    configure_propagation,
    current_attributes,
    inject_headers,
    wrap,
)

TEAM, FEATURE, USER, CUSTOMER = semconv.AICOST_TEAM, semconv.AICOST_FEATURE, semconv.AICOST_USER, semconv.AICOST_CUSTOMER


@pytest.fixture(autouse=True)
def _default_propagation():
    configure_propagation()
    yield
    configure_propagation()


def now() -> dict[str, str]:
    return dict(current_attributes())


# ------------------------------------------------------------------------------------------------ merging
def test_public_names_are_exported():
    assert aicost.attribute is attribute
    assert aicost.feature.__name__ == "feature"
    assert callable(aicost.set_outcome)


def test_nested_scopes_merge_and_inner_wins_then_restore():
    assert now() == {}
    with attribute(team="search", feature="answer", region="eu"):
        assert now() == {TEAM: "search", FEATURE: "answer", "aicost.tag.region": "eu"}
        with attribute(team="ranking", customer="acme", user=None):
            assert now() == {TEAM: "ranking", FEATURE: "answer", CUSTOMER: "acme", "aicost.tag.region": "eu"}
            with attribute(user="u-1", region="us"):
                assert now() == {TEAM: "ranking", FEATURE: "answer", CUSTOMER: "acme", USER: "u-1",
                                 "aicost.tag.region": "us"}
            assert now()[TEAM] == "ranking" and USER not in now()
        assert now() == {TEAM: "search", FEATURE: "answer", "aicost.tag.region": "eu"}
    assert now() == {}


def test_scope_is_restored_when_the_body_raises():
    with pytest.raises(KeyError):
        with attribute(team="a"):
            raise KeyError("boom")
    assert now() == {}


def test_current_attributes_is_read_only_and_cached_per_scope():
    with attribute(team="a"):
        first = current_attributes()
        assert current_attributes() is first  # no allocation per span start
        with pytest.raises(TypeError):
            first[TEAM] = "b"  # type: ignore[index]


def test_async_with_works():
    async def main() -> dict[str, str]:
        async with attribute(team="async"):
            await asyncio.sleep(0)
            return now()

    assert asyncio.run(main()) == {TEAM: "async"}


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"team": 42}, TypeError, "team must be a str"),
        ({"feature": b"bytes"}, TypeError, "feature must be a str"),
        ({"customer": ""}, ValueError, "customer must be a non-empty"),
        ({"user": "   "}, ValueError, "user must be a non-empty"),
        ({"team": "a\nb"}, ValueError, "control characters"),
        ({"team": "x" * 257}, ValueError, "longer than 256"),
        ({"region": 3}, TypeError, "tag 'region' must be a str"),
        ({"1bad": "v"}, ValueError, "tag name '1bad' is invalid"),
        ({"has space": "v"}, ValueError, "tag name 'has space' is invalid"),
    ],
)
def test_invalid_input_fails_at_the_call_site(kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        attribute(**kwargs)


def test_decorator_without_arguments_says_how_to_use_it():
    with pytest.raises(TypeError, match="decorators take arguments"):
        @aicost.feature
        def work() -> None:
            pass


def test_invalid_feature_and_outcome_fail_at_the_call_site():
    with pytest.raises(ValueError, match="feature"):
        aicost.feature("")
    with pytest.raises(TypeError, match="feature"):
        aicost.feature(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="outcome"):
        aicost.set_outcome(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="decorates a callable"):
        attribute(team="a")(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown fields"):
        configure_propagation(["team", "email"])


ACCEPTED = "accepted: a non-empty str of at most 256 printable characters"


def _in_unit(body):
    with aicost.feature("x") as unit:
        body(unit)


@pytest.mark.parametrize("call, where, error", [
    (lambda: aicost.set_outcome(3), "aicost.set_outcome: outcome must be a str, got int (3)", TypeError),
    (lambda: aicost.attribution.set_outcome(""), "aicost.set_outcome: outcome must be a non-empty string", ValueError),
    (lambda: _in_unit(lambda unit: unit.set_outcome(3)),
     "UnitOfWork.set_outcome: outcome must be a str, got int (3)", TypeError),
    (lambda: aicost.feature(3), "aicost.feature: name must be a str, got int (3)", TypeError),
    (lambda: aicost.feature("x", team=3), "aicost.feature: team must be a str, got int (3)", TypeError),
    (lambda: aicost.feature("x", customer="a\nb"), "aicost.feature: customer contains control characters", ValueError),
    (lambda: aicost.feature("x", region=3), "aicost.feature: tag 'region' must be a str, got int (3)", TypeError),
    (lambda: aicost.feature("x", **{"1bad": "v"}), "aicost.feature: tag name '1bad' is invalid", ValueError),
    (lambda: aicost.attribute(team=3), "aicost.attribute: team must be a str, got int (3)", TypeError),
    (lambda: aicost.feature("x")(42), "aicost.feature decorates a callable, got int", TypeError),
])
def test_a_refusal_names_the_function_called_and_what_it_accepts(call, where, error):
    """Each public entry point's refusal names that entry point, not the one the check was first written for
    (``set_outcome(3)`` said ``aicost.attribute``), and says what the argument accepts."""
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    assert message.startswith(where), message
    if "tag name" not in where and "decorates" not in where:
        assert ACCEPTED in message


# ------------------------------------------------------------------------------------------------ decorators
def test_decorates_sync_function_keeping_result_name_and_exceptions():
    @attribute(team="sync")
    def work(x: int) -> tuple[int, dict[str, str]]:
        """doc"""
        if x < 0:
            raise ValueError("negative")
        return x * 2, now()

    assert work(2) == (4, {TEAM: "sync"})
    assert work.__name__ == "work" and work.__doc__ == "doc"
    with pytest.raises(ValueError, match="negative"):
        work(-1)
    assert now() == {}


async def test_decorates_coroutine_across_awaits():
    @attribute(team="coro")
    async def work() -> list[dict[str, str]]:
        seen = [now()]
        await asyncio.sleep(0.001)
        seen.append(now())
        return seen

    assert await work() == [{TEAM: "coro"}, {TEAM: "coro"}]
    assert now() == {}


def test_decorates_generator_without_leaking_into_the_consumer():
    @attribute(feature="gen")
    def produce():
        received = yield now()
        assert received == "ping"
        yield now()
        return "done"

    gen = produce()
    assert now() == {}  # creating the generator runs nothing
    with attribute(team="consumer"):
        first = next(gen)
        assert now() == {TEAM: "consumer"}  # the generator's scope is gone between yields
    assert first == {TEAM: "consumer", FEATURE: "gen"}
    second = gen.send("ping")
    assert second == {FEATURE: "gen"}  # resumed outside the consumer's scope
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done"


def test_a_feature_generator_runs_each_item_in_the_context_that_resumes_it(span_exporter):
    """A ``@feature`` generator's OpenTelemetry context (the consumer's, plus the feature's baggage and its unit's
    span) is kept from one item to the next while the consumer's context is the same: read from another context
    (its own baggage), or after the propagation policy changed, the item runs in one made afresh."""
    from opentelemetry import trace

    @aicost.feature("gen")
    def produce():
        while True:
            yield dict(baggage.get_all()), now(), trace.get_current_span()

    gen = produce()
    plain_bag, plain_attrs, unit_span = next(gen)
    assert plain_bag == {FEATURE: "gen"} and plain_attrs == {FEATURE: "gen"}
    assert next(gen)[:2] == (plain_bag, plain_attrs)
    with attribute(team="one"):
        bag, attrs, span = next(gen)
        assert dict(baggage.get_all()) == {TEAM: "one"}  # the consumer's, between items
    assert bag == {TEAM: "one", FEATURE: "gen"} and attrs == {TEAM: "one", FEATURE: "gen"} and span is unit_span
    with attribute(team="two"):
        assert next(gen)[:2] == ({TEAM: "two", FEATURE: "gen"}, {TEAM: "two", FEATURE: "gen"})
    assert next(gen)[:2] == (plain_bag, plain_attrs)
    configure_propagation(fields=("team",))
    assert next(gen)[:2] == ({}, {FEATURE: "gen"})
    assert dict(baggage.get_all()) == {} and now() == {} and trace.get_current_span() is not unit_span
    gen.close()


def test_generator_throw_and_close_run_inside_the_scope():
    seen: list[dict[str, str]] = []

    @attribute(team="g")
    def produce():
        try:
            yield 1
        except KeyError:
            seen.append(now())
            yield 2
        finally:
            seen.append(now())

    gen = produce()
    assert next(gen) == 1
    assert gen.throw(KeyError("x")) == 2
    gen.close()
    assert seen == [{TEAM: "g"}, {TEAM: "g"}]
    assert now() == {}


async def test_decorates_async_generator_without_leaking():
    @attribute(team="agen")
    async def produce():
        for i in range(3):
            await asyncio.sleep(0)
            yield i, now()

    seen = []
    async for i, attrs in produce():
        assert now() == {}
        seen.append(attrs)
    assert seen == [{TEAM: "agen"}] * 3

    gen = produce()
    assert (await gen.__anext__())[1] == {TEAM: "agen"}
    await gen.aclose()
    assert now() == {}


# ------------------------------------------------------------------------------------------------ threads
def test_plain_thread_starts_without_the_scope_but_wrap_and_executor_carry_it():
    """The contextvars rules, asserted: a new thread starts with an empty context (Python < 3.14 default)."""
    seen: dict[str, dict[str, str]] = {}
    with attribute(team="parent"):
        t = threading.Thread(target=lambda: seen.__setitem__("plain", now()))
        t.start()
        t.join()
        t = threading.Thread(target=wrap(lambda: seen.__setitem__("wrapped", now())))
        t.start()
        t.join()
        with ContextExecutor(max_workers=2) as pool:
            seen["executor"] = pool.submit(now).result()
        with ThreadPoolExecutor(max_workers=2) as pool:
            seen["executor_wrap"] = pool.submit(wrap(now)).result()
    assert seen["plain"] == {}
    assert seen["wrapped"] == seen["executor"] == seen["executor_wrap"] == {TEAM: "parent"}


def test_one_wrapped_function_runs_in_many_threads_at_once():
    barrier = threading.Barrier(8, timeout=10)
    with attribute(team="shared"):
        def work(i: int) -> dict[str, str]:
            barrier.wait()
            with attribute(user=f"u{i}"):
                return now()

        bound = wrap(work)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(bound, range(8)))
    assert results == [{TEAM: "shared", USER: f"u{i}"} for i in range(8)]


def test_hundreds_of_threads_each_see_only_their_own_attribution():
    n = 300
    barrier = threading.Barrier(n, timeout=30)
    results: list[dict[str, str] | None] = [None] * n

    def worker(i: int) -> None:
        with attribute(team=f"team-{i % 7}", customer=f"cust-{i}"):
            barrier.wait()  # every thread is inside its scope at the same time
            results[i] = now()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [{TEAM: f"team-{i % 7}", CUSTOMER: f"cust-{i}"} for i in range(n)]


async def test_hundreds_of_tasks_interleaving_each_see_only_their_own():
    n = 500

    async def handler(i: int) -> list[dict[str, str]]:
        seen = []
        with attribute(customer=f"c{i}"):
            for _ in range(3):
                await asyncio.sleep(0)  # let every other task run in between
                seen.append(now())
        seen.append(now())
        return seen

    with attribute(team="server"):
        results = await asyncio.gather(*(handler(i) for i in range(n)))
    for i, seen in enumerate(results):
        assert seen[:3] == [{TEAM: "server", CUSTOMER: f"c{i}"}] * 3
        assert seen[3] == {TEAM: "server"}
    assert now() == {}


def test_one_shared_instance_used_with_with_in_many_threads():
    shared = attribute(team="shared")
    n = 64
    barrier = threading.Barrier(n, timeout=10)
    errors: list[str] = []

    def worker(i: int) -> None:
        with attribute(user=f"u{i}"):
            with shared:
                barrier.wait()
                if now() != {TEAM: "shared", USER: f"u{i}"}:
                    errors.append(f"{i}: {now()}")
            if now() != {USER: f"u{i}"}:
                errors.append(f"{i} after: {now()}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert errors == []


# ------------------------------------------------------------------------------------------------ baggage
def test_team_and_feature_ride_baggage_by_default_user_and_customer_do_not():
    with attribute(team="search", feature="answer", user="u-1", customer="acme", region="eu"):
        assert dict(baggage.get_all()) == {TEAM: "search", FEATURE: "answer"}
        headers = inject_headers()
    assert "aicost.team=search" in headers["baggage"]
    assert "acme" not in headers["baggage"] and "u-1" not in headers["baggage"]
    assert dict(baggage.get_all()) == {}


def test_propagation_of_more_fields_is_opt_in():
    configure_propagation(["team", "customer", "tags"])
    with attribute(team="search", feature="answer", customer="acme", user="u-1", region="eu"):
        assert dict(baggage.get_all()) == {TEAM: "search", CUSTOMER: "acme", "aicost.tag.region": "eu"}


def test_upstream_baggage_is_read_and_local_scopes_win():
    configure_propagation(trust_upstream=["team", "feature", "tags"])  # an upstream of our own
    with attribute(team="upstream-team", feature="upstream-feature"):
        headers = inject_headers()
    assert now() == {}
    with attributes_from_headers(headers) as attrs:
        assert dict(attrs) == {TEAM: "upstream-team", FEATURE: "upstream-feature"}
        with attribute(feature="local"):
            assert now() == {TEAM: "upstream-team", FEATURE: "local"}
        assert now() == {TEAM: "upstream-team", FEATURE: "upstream-feature"}
    assert now() == {}


def test_values_with_spaces_commas_and_unicode_survive_the_round_trip():
    configure_propagation(trust_upstream=["team", "feature", "tags"])  # an upstream of our own
    with attribute(team="Search & Ranking, EU", feature="résumé=summary;v2"):
        headers = inject_headers()
    with attributes_from_headers(headers):
        assert now() == {TEAM: "Search & Ranking, EU", FEATURE: "résumé=summary;v2"}


def test_header_names_are_case_insensitive():
    configure_propagation(trust_upstream=["team", "feature", "tags"])  # an upstream of our own
    with attributes_from_headers({"Baggage": "aicost.team=a", "BAGGAGE": "aicost.feature=f"}):
        assert now() == {TEAM: "a", FEATURE: "f"}


def test_asgi_raw_header_pairs_are_read():
    """ASGI servers hand a handler ``scope["headers"]``: (bytes, bytes) pairs, Latin-1, names lower case."""
    headers = [(b"host", b"svc"), (b"baggage", "aicost.feature=r%C3%A9sum%C3%A9,aicost.team=core".encode()),
               (b"baggage", b"aicost.tag.x=1")]
    with attributes_from_headers(headers) as attrs:
        assert dict(attrs) == {FEATURE: "résumé"}  # team is not trusted by default
        assert baggage.get_baggage("aicost.tag.x") == "1"  # repeated headers are joined
    assert now() == {}


def test_untrusted_upstream_baggage_is_filtered():
    configure_propagation(trust_upstream=["team", "feature", "tags"])  # an upstream of our own
    headers = {"baggage": "aicost.team=ok,other.key=ignored,aicost.user=" + "x" * 300 + ",aicost.tag.9bad=v,"
                          "aicost.tag.good=v"}
    ctx = propagate.extract(headers)
    token = otel_context.attach(ctx)
    try:
        assert now() == {TEAM: "ok", "aicost.tag.good": "v"}
    finally:
        otel_context.detach(token)


def test_upstream_can_be_ignored():
    configure_propagation(accept_upstream=False)
    with attributes_from_headers({"baggage": "aicost.team=elsewhere"}):
        assert now() == {}


def test_copy_context_in_a_thread_sees_baggage_attribution_too():
    configure_propagation(trust_upstream=["team", "feature", "tags"])  # an upstream of our own
    with attributes_from_headers({"baggage": "aicost.team=up"}):
        ctx = contextvars.copy_context()
    out: list[dict[str, str]] = []
    t = threading.Thread(target=lambda: out.append(ctx.run(now)))
    t.start()
    t.join()
    assert out == [{TEAM: "up"}]


async def read_in_task() -> dict[str, str]:
    await asyncio.sleep(0)
    return now()


async def test_asyncio_thread_rules_to_thread_carries_run_in_executor_does_not():
    loop = asyncio.get_running_loop()
    with attribute(team="loop"):
        via_to_thread = await asyncio.to_thread(now)
        via_executor = await loop.run_in_executor(None, now)
        via_executor_wrapped = await loop.run_in_executor(None, wrap(now))
        via_task = await asyncio.create_task(read_in_task())
    assert via_to_thread == via_executor_wrapped == via_task == {TEAM: "loop"}
    assert via_executor == {}  # documented in docs/attribution.md: wrap() it


def test_hundreds_of_threads_with_their_own_upstream_baggage_never_mix():
    """The root scope is shared by every thread; its upstream cache must never hand one thread another's."""
    configure_propagation(trust_upstream=["team", "feature"], max_upstream_values=1000)
    n = 200
    barrier = threading.Barrier(n, timeout=30)
    errors: list[str] = []

    def worker(i: int) -> None:
        with attributes_from_headers({"baggage": f"aicost.team=t{i},aicost.feature=f{i % 5}"}):
            barrier.wait()
            for _ in range(200):
                got = now()
                if got != {TEAM: f"t{i}", FEATURE: f"f{i % 5}"}:
                    errors.append(f"{i}: {got}")
                    return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []


def test_a_failure_halfway_into_a_scope_is_undone_and_never_reaches_the_app(monkeypatch, caplog):
    import aicost.attribution as attribution

    def broken(*args, **kwargs):
        raise RuntimeError("baggage exploded")

    import aicost._log

    monkeypatch.setattr(aicost._log, "_seen", set())
    monkeypatch.setattr(attribution.otel_baggage, "set_baggage", broken)
    with attribute(team="still-charged"):
        assert now() == {TEAM: "still-charged"}  # the part that worked stays in effect
    assert now() == {}  # and is undone on exit
    assert "could not enter an attribution scope" in caplog.text

    monkeypatch.setattr(attribution.hooks, "start_collecting", broken)
    with aicost.feature("half") as unit:
        assert now() == {FEATURE: "half"}
        assert attribution.current_unit() is unit
    assert now() == {} and attribution.current_unit() is None


def test_set_tracer_provider_refuses_what_is_not_a_provider_by_name():
    """A unit span's provider is checked where it is set (the product brief: a clear error at configure time),
    not found wrong at the first unit, whose span then silently went missing (an error logged once)."""
    from aicost import attribution
    from aicost.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="tracer_provider"):
        attribution.set_tracer_provider("not a provider")
    attribution.set_tracer_provider(None)  # None: the provider given to aicost.instrument(), as before
