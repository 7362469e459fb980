"""Untrusted upstream baggage cannot grow state without limit or pick a tenant (issue 14, item 8).

Anyone who can send a request can write ``baggage: aicost.customer=victim``. Before: every ``aicost.*`` key in
baggage was believed, so 2,500 requests each naming a new team made 2,500 cost series (a real team then got none,
past the SDK's cardinality limit), and a forged customer selected another customer's cached answer."""

from __future__ import annotations

from decimal import Decimal

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import aicost
from aicost import metrics, semconv
from aicost.attribution import (
    OVERFLOW_VALUE,
    attribute,
    attributes_from_headers,
    configure_propagation,
    current_attributes,
    upstream_stats,
)
from aicost.errors import ConfigurationError

from attribution_helpers import call


@pytest.fixture(autouse=True)
def _default_trust():
    configure_propagation()
    yield
    configure_propagation()


@pytest.fixture
def cost_series():
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    metrics.configure(provider)

    def teams() -> dict[str | None, Decimal]:
        return {dict(key).get(semconv.AICOST_TEAM): total for key, total in metrics._instruments().cost_totals().items()}

    yield teams
    provider.shutdown()


def _request(baggage: str, cost: str = "0.001") -> None:
    with attributes_from_headers({"baggage": baggage}):
        metrics.record_call(call(cost=cost), current_attributes())


def test_by_default_tenancy_keys_from_upstream_are_ignored_and_feature_is_kept() -> None:
    with attributes_from_headers({"baggage": "aicost.team=t,aicost.user=u,aicost.customer=victim,"
                                             "aicost.feature=search,aicost.tag.region=eu"}):
        assert dict(current_attributes()) == {semconv.AICOST_FEATURE: "search"}


def test_a_forged_customer_in_baggage_does_not_select_that_customers_cached_answer() -> None:
    answers = iter(["victim's private answer", "fresh answer"])

    @aicost.cache(prompt="q", scope=["customer"])
    def answer(q: str) -> str:
        return next(answers)

    with attribute(customer="victim"):
        assert answer("what is my balance?") == "victim's private answer"
    with attributes_from_headers({"baggage": "aicost.customer=victim"}):
        assert answer("what is my balance?") == "fresh answer"


def test_a_flood_of_invented_teams_creates_bounded_state_and_a_real_team_still_gets_its_series(cost_series) -> None:
    configure_propagation(trust_upstream=["team", "feature"])  # even when team IS trusted from upstream
    for i in range(2500):
        _request(f"aicost.team=invented-{i}")
    with attribute(team="real"):
        metrics.record_call(call(cost="0.002"), current_attributes())
    teams = cost_series()
    assert len(teams) == 100 + 2  # the first 100 invented names, "other", and the real team
    assert teams["real"] == Decimal("0.002")
    assert teams[OVERFLOW_VALUE] == Decimal("2.4")  # the 2,400 refused names' spend is kept, not lost
    assert upstream_stats()[semconv.AICOST_TEAM] == {"distinct": 100, "overflowed": 2400}


def test_an_overflowed_value_is_marked_on_the_attribution_and_is_never_a_cache_tenant() -> None:
    configure_propagation(trust_upstream=["customer"], max_upstream_values=2)
    calls = []

    @aicost.cache(prompt="q", scope=["customer"])
    def answer(q: str) -> int:
        calls.append(q)
        return len(calls)

    for name in ("a", "b"):
        with attributes_from_headers({"baggage": f"aicost.customer={name}"}):
            answer("q")
    for name in ("c", "d"):  # both would be "other": they must not share an entry
        with attributes_from_headers({"baggage": f"aicost.customer={name}"}) as attrs:
            assert attrs[semconv.AICOST_CUSTOMER] == OVERFLOW_VALUE
            assert attrs[semconv.AICOST_ATTRIBUTION_UPSTREAM_OVERFLOW] == semconv.AICOST_CUSTOMER
            answer("q")
    assert len(calls) == 4
    with attributes_from_headers({"baggage": "aicost.customer=a"}):  # an admitted tenant still hits
        assert answer("q") == 1


def test_tag_names_from_upstream_are_bounded_too() -> None:
    configure_propagation(trust_upstream=["tags"], max_upstream_values=3)
    seen: set[str] = set()
    for i in range(50):
        with attributes_from_headers({"baggage": f"aicost.tag.k{i}=v"}) as attrs:
            seen.update(k for k in attrs if k.startswith(semconv.AICOST_TAG_PREFIX))
    assert seen == {"aicost.tag.k0", "aicost.tag.k1", "aicost.tag.k2"}


def test_a_tag_whose_name_is_past_the_cap_is_marked_and_is_never_a_cache_tenant() -> None:
    """Tag names are bounded "the same way" as values (docs/attribution.md): a tag whose name comes after the cap
    is dropped (a new name is a new attribute, and a new label when tags are labels), and, like an overflowed
    value, named in ``aicost.attribution.upstream_overflow``. Dropped without a word, it read as absent: a cache
    scoped on that tag put every tenant it named in one shared entry."""
    configure_propagation(trust_upstream=["tags"], max_upstream_values=2)
    calls = []

    @aicost.cache(prompt="q", scope=["tag:tenant"])
    def answer(q: str) -> int:
        calls.append(q)
        return len(calls)

    for i in range(2):  # a flood of invented tag names fills the cap first
        with attributes_from_headers({"baggage": f"aicost.tag.invented{i}=x"}):
            pass
    for tenant in ("acme", "globex"):
        with attributes_from_headers({"baggage": f"aicost.tag.tenant={tenant},aicost.tag.invented0=y"}) as attrs:
            assert "aicost.tag.tenant" not in attrs and attrs["aicost.tag.invented0"] == "y"
            assert attrs[semconv.AICOST_ATTRIBUTION_UPSTREAM_OVERFLOW] == "aicost.tag.tenant"
            answer("q")
    assert len(calls) == 2  # globex was never served acme's answer


def test_upstream_tag_name_ending_in_a_newline_is_dropped() -> None:
    from aicost.attribution import _upstream_attributes

    configure_propagation(trust_upstream=["tags"])
    assert _upstream_attributes({"aicost.tag.region\n": "eu", "aicost.tag.zone": "a"}) == {"aicost.tag.zone": "a"}


@pytest.mark.parametrize("kwargs, problem", [
    ({"trust_upstream": "team"}, "trust_upstream must be a list"),
    ({"trust_upstream": ["teams"]}, "unknown fields"),
    ({"fields": ["email"]}, "unknown fields"),
    ({"max_upstream_values": 0}, "max_upstream_values"),
    ({"max_upstream_values": True}, "max_upstream_values"),
    ({"max_upstream_values": "100"}, "max_upstream_values"),
    ({"accept_upstream": "false"}, "accept_upstream must be True or False"),
])
def test_bad_configuration_is_a_configuration_error(kwargs, problem) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        configure_propagation(**kwargs)


def test_what_upstream_baggage_can_write_into_the_ledger_is_bounded(instrumented, spill_dir, tmp_path, openai_client,
                                                                    replay_server) -> None:
    """End to end, into the spend ledger: 150 requests whose baggage forges a team, a customer and a tag, and each
    invents a new feature (trusted by default), some 300 characters long. The ledger holds no forged team,
    customer or tag, at most ``max_upstream_values`` features plus "other", none over 256 characters, and
    every call, none lost."""
    from datetime import datetime, timedelta, timezone

    from aicost.ledger import open_store
    from vendor_server import openai_chat_reply

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=url)
    configure_propagation(max_upstream_values=20)
    started = datetime.now(timezone.utc)
    for i in range(150):
        feature = f"invented-{i}" + ("x" * 300 if i % 3 == 0 else "")
        replay_server.enqueue(openai_chat_reply(prompt_tokens=10, completion_tokens=5))
        with attributes_from_headers({"baggage": f"aicost.team=forged,aicost.customer=victim,"
                                                 f"aicost.tag.region=eu,aicost.feature={feature}"}):
            openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=None)  # flushes and closes the writer
    with open_store(url, create=False) as store:
        rows = list(store.rows(started - timedelta(minutes=1), datetime.now(timezone.utc) + timedelta(minutes=1)))
    assert len(rows) == 150
    assert {(r.team, r.customer, r.user) for r in rows} == {(None, None, None)} and all(not r.tags for r in rows)
    features = {r.feature for r in rows}
    assert OVERFLOW_VALUE in features and None in features  # None: the overlong ones, dropped
    assert len(features - {None}) <= 20 + 1
    assert max(len(f) for f in features if f) <= 256
