"""Budget guard behaviour through the in-memory store: windows, several budgets, actions, thresholds, policies.

The guard is driven exactly as the instrumentation core drives it (``before_call(info)`` then
``ticket.after_call(result)``) with a small exact price table, so every amount below can be checked by hand:
``flat-big`` costs $1 per million output tokens and nothing for input, so ``max_tokens=1000`` reserves $0.001.
"""

from __future__ import annotations

import decimal
import json
import logging
import re
from datetime import datetime, timezone
from decimal import Decimal

import pytest

import aicost
from aicost import semconv
from aicost.budget import (
    Budget,
    BudgetExceeded,
    BudgetGuard,
    CallRefused,
    Policy,
    PolicyViolation,
    allow_long_context,
    configure_budgets,
    disable_budgets,
)
from aicost.budget.stores.memory import MemoryStore
from aicost.errors import ConfigurationError
from aicost.hooks import interceptors
from aicost.pricing.money import format_usd
from aicost.tokens import count_request_input
from budget_helpers import Clock, FlakyStore, chat_info, price_lookup, result

D = Decimal


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def guard(*budgets: Budget, policies=(), clock=None, **kw) -> BudgetGuard:
    return BudgetGuard(list(budgets), list(policies), price_lookup=price_lookup,
                       clock=clock or Clock(ts("2026-11-23T12:00:00")), **kw)


def spend(g: BudgetGuard, cost: str | None = "0.001", **info_kw):
    """One call that reserves max_tokens=1000 on flat-big ($0.001) and settles at ``cost``."""
    info = chat_info(**info_kw)
    ticket = g.before_call(info)
    if ticket is not None:
        ticket.after_call(result(info, None if cost is None else D(cost)))
    return info


# --------------------------------------------------------------------------------------------- reserve/settle
def test_worst_case_is_reserved_then_settled_to_the_actual_cost():
    g = guard(Budget(limit_usd="0.0025"))
    info = chat_info(max_tokens=1000)
    ticket = g.before_call(info)
    assert info.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD] == "0.001"
    [status] = g.status()
    assert (status.spent_usd, status.reserved_usd) == (D("0"), D("0.001"))
    ticket.after_call(result(info, D("0.0002")))
    [status] = g.status()
    assert (status.spent_usd, status.reserved_usd) == (D("0.0002"), D("0"))
    ticket.after_call(result(info, D("0.0002")))  # a second settle of the same ticket is ignored
    assert g.status()[0].spent_usd == D("0.0002")


def test_refusal_names_budget_limit_spent_reserved_and_reset():
    g = guard(Budget(limit_usd="0.0025", window="day", name="app-daily"))
    held = [g.before_call(chat_info()) for _ in range(2)]  # $0.002 in flight
    with pytest.raises(BudgetExceeded) as err:
        g.before_call(chat_info())
    e = err.value
    assert isinstance(e, CallRefused) and isinstance(e, aicost.BudgetExceeded)
    assert (e.budget, e.limit_usd, e.spent_usd, e.reserved_usd, e.requested_usd) == (
        "app-daily", D("0.0025"), D("0"), D("0.002"), D("0.001"))
    assert e.resets_at == datetime(2026, 11, 24, tzinfo=timezone.utc)
    msg = str(e)
    for part in ("app-daily", "0.0025", "0.002", "0.001", "2026-11-24T00:00:00Z"):
        assert part in msg
    held[0].after_call(result(chat_info(), D("0.0001")))  # settling frees headroom: the call now fits
    assert g.before_call(chat_info()) is not None


def test_failed_call_releases_or_charges_what_the_vendor_billed():
    g = guard(Budget(limit_usd="1"))
    info = chat_info()
    g.before_call(info).after_call(result(info, None, usage=None, error_type="APIConnectionError"))
    assert (g.status()[0].spent_usd, g.status()[0].reserved_usd) == (D(0), D(0))
    info = chat_info()  # a stream that failed mid-way: the vendor billed what it produced
    g.before_call(info).after_call(result(info, D("0.0003"), error_type="APIError"))
    assert g.status()[0].spent_usd == D("0.0003")


def test_output_cap_default_comes_from_the_model_then_the_configured_default():
    g = guard(Budget(limit_usd="1"))
    info = chat_info(max_tokens=None)  # flat-big's max output is 8000 tokens -> $0.008
    g.before_call(info)
    assert info.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD] == "0.008"
    info = chat_info(max_tokens=500, n=3)  # three completions of up to 500 tokens each
    g.before_call(info)
    assert info.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD] == "0.0015"


def test_unknown_price_is_refused_by_default_and_allowed_on_request():
    g = guard(Budget(limit_usd="1"))
    with pytest.raises(PolicyViolation, match="no price is known"):
        g.before_call(chat_info(model="my-finetune"))
    lenient = guard(Budget(limit_usd="0.001"), on_unknown_price="allow")
    info = chat_info(model="my-finetune")
    ticket = lenient.before_call(info)  # allowed, holding nothing
    assert info.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD] == "0"
    ticket.after_call(result(info, None, usage=None))
    spend(lenient)
    with pytest.raises(BudgetExceeded):  # a priced call still cannot overspend
        spend(lenient)


def test_a_tier_with_no_price_is_refused_and_logged_with_the_tier_reason(monkeypatch, caplog):
    """The catalog prices the model, but not at the call's tier (Google's priority): the refusal, and the
    warning when such calls are allowed, give the reason pricing gives the span, not "no price for the model".
    An application's own ``price_lookup`` says only whether it has a price: the refusal says no more."""
    from aicost import _log
    from aicost.pricing import unknown_reason

    monkeypatch.setattr(_log, "_seen", set())
    reason = unknown_reason("gcp.vertex_ai", "gemini-2.5-flash", "priority")
    assert reason and "bills the priority tier at per-model rates" in reason

    def priority_call():
        info = chat_info(model="gemini-2.5-flash", provider="gcp.vertex_ai")
        info.service_tier = "priority"
        return info

    catalog = BudgetGuard([Budget(limit_usd="1")], clock=Clock(ts("2026-11-23T12:00:00")))
    with pytest.raises(PolicyViolation) as refused:
        catalog.before_call(priority_call())
    assert refused.value.detail.startswith(reason + ", so its worst-case cost cannot be reserved")
    lenient = BudgetGuard([Budget(limit_usd="1")], on_unknown_price="allow", clock=Clock(ts("2026-11-23T12:00:00")))
    with caplog.at_level(logging.WARNING, logger="aicost"):
        lenient.before_call(priority_call())
        lenient.before_call(priority_call())
    assert caplog.text.count(reason + "; such calls are not budgeted") == 1
    with pytest.raises(PolicyViolation, match="no price is known for gcp.vertex_ai model 'gemini-2.5-flash'"):
        guard(Budget(limit_usd="1")).before_call(priority_call())


@pytest.mark.parametrize("mixin", [None, str], ids=["Enum", "str-Enum"])
def test_a_tier_given_as_an_enum_is_budgeted_at_that_tier(mixin):
    """A typed SDK's enum tier reserves at that tier's price, as pricing prices it: a Gemini priority call is
    refused with the tier's reason (not reserved at the standard price), and an application's own
    ``price_lookup`` is asked with the tier as text."""
    import enum

    Tier = enum.Enum("Tier", {"PRIORITY": "priority"}, type=mixin)
    info = chat_info(model="gemini-2.5-flash", provider="gcp.vertex_ai")
    info.service_tier = Tier.PRIORITY
    with pytest.raises(PolicyViolation, match="bills the priority tier at per-model rates"):
        BudgetGuard([Budget(limit_usd="1")], clock=Clock(ts("2026-11-23T12:00:00"))).before_call(info)
    asked = []

    def lookup(provider, model, *, service_tier=None):
        asked.append(service_tier)
        return price_lookup(provider, model)

    info = chat_info()
    info.service_tier = Tier.PRIORITY
    BudgetGuard([Budget(limit_usd="1")], price_lookup=lookup, clock=Clock(ts("2026-11-23T12:00:00"))).before_call(info)
    assert asked == ["priority"] and type(asked[0]) is str


@pytest.mark.parametrize("tier", [{"type": "priority"}, ["priority"]], ids=["dict", "list"])
def test_a_tier_that_is_not_text_is_refused_with_pricing_s_reason(tier):
    """A tier pricing cannot read (unhashable, here) is not reserved at the standard price: the budget sees an
    unknown price with the reason the call's span would carry, and refuses it (on_unknown_price='refuse')."""
    from aicost.pricing import unknown_reason

    info = chat_info(model="gpt-4o")
    info.service_tier = tier
    reason = unknown_reason("openai", "gpt-4o", tier)
    assert reason is not None
    with pytest.raises(PolicyViolation, match=re.escape(reason)):
        BudgetGuard([Budget(limit_usd="1")], clock=Clock(ts("2026-11-23T12:00:00"))).before_call(info)


def test_lease_expiry_frees_a_reservation_that_is_never_settled():
    clock = Clock(ts("2026-11-23T12:00:00"))
    g = guard(Budget(limit_usd="0.001"), clock=clock, lease_seconds=60)
    g.before_call(chat_info())  # its process "died": no after_call
    with pytest.raises(BudgetExceeded):
        g.before_call(chat_info())
    clock.t += 61
    assert g.before_call(chat_info()) is not None


# --------------------------------------------------------------------------------------------- windows
@pytest.mark.parametrize(
    "window, before, after, resets",
    [
        ("minute", "2026-11-23T12:34:59.500000", "2026-11-23T12:35:00", "2026-11-23T12:35:00"),
        ("hour", "2026-11-23T12:59:59", "2026-11-23T13:00:00", "2026-11-23T13:00:00"),
        ("day", "2026-11-23T23:59:59", "2026-11-24T00:00:00", "2026-11-24T00:00:00"),
        ("month", "2026-12-31T23:59:59", "2027-01-01T00:00:00", "2027-01-01T00:00:00"),
        ("month", "2028-02-29T10:00:00", "2028-03-01T00:00:00", "2028-03-01T00:00:00"),
    ],
)
def test_calendar_window_rolls_over_at_the_utc_boundary(window, before, after, resets):
    clock = Clock(ts(before))
    g = guard(Budget(limit_usd="0.002", window=window), clock=clock)
    spend(g)
    spend(g)
    with pytest.raises(BudgetExceeded) as err:
        spend(g)
    assert err.value.resets_at == datetime.fromisoformat(resets).replace(tzinfo=timezone.utc)
    clock.t = ts(after)
    spend(g)  # a fresh window
    [status] = g.status()
    assert status.spent_usd == D("0.001") and status.resets_at > err.value.resets_at


def test_reservation_made_before_rollover_settles_into_its_own_window():
    clock = Clock(ts("2026-11-23T23:59:59"))
    g = guard(Budget(limit_usd="0.002", window="day"), clock=clock)
    info = chat_info()
    ticket = g.before_call(info)
    clock.t = ts("2026-11-24T00:00:01")
    ticket.after_call(result(info, D("0.001")))
    assert g.status()[0].spent_usd == D(0)  # the new day is untouched
    clock.t = ts("2026-11-23T23:59:59")
    assert g.status()[0].spent_usd == D("0.001")


# --------------------------------------------------------------------------------------------- several budgets
def test_every_applicable_budget_must_allow_and_refusal_holds_nothing():
    g = guard(
        Budget(limit_usd="0.01", name="global"),
        Budget(limit_usd="0.002", scope="team", name="per-team"),
        Budget(limit_usd="0.001", scope="team", value="ads", name="ads-only"),
    )
    with aicost.attribute(team="search"):
        spend(g)
        spend(g)
        with pytest.raises(BudgetExceeded) as err:
            spend(g)
        assert (err.value.budget, err.value.scope, err.value.scope_value) == ("per-team", "team", "search")
        statuses = {s.budget: s for s in g.status()}
        assert set(statuses) == {"global", "per-team"}
        assert statuses["global"].reserved_usd == 0 and statuses["global"].spent_usd == D("0.002")
    with aicost.attribute(team="ads"):
        spend(g)  # its own per-team bucket, and the ads-only budget
        with pytest.raises(BudgetExceeded) as err:
            spend(g)
        assert err.value.budget == "ads-only"
    spend(g)  # no team: only the global budget applies
    assert g.status({})[0].spent_usd == D("0.004")


def test_scopes_by_user_customer_tag_model_and_provider():
    g = guard(
        Budget(limit_usd="0.002", scope="user", name="u"),
        Budget(limit_usd="0.001", scope="customer", value="acme", name="c"),
        Budget(limit_usd="0.001", scope="tag.env", value="staging", name="t"),
        Budget(limit_usd="0.001", scope="model", value="flat-small", window="hour", name="m"),
        Budget(limit_usd="0.5", scope="provider", value="anthropic", name="p"),
    )
    with aicost.attribute(user="u1"):
        spend(g)
        spend(g)
        with pytest.raises(BudgetExceeded, match="'u'"):
            spend(g)
    with aicost.attribute(user="u2", customer="acme"):
        spend(g)
        with pytest.raises(BudgetExceeded, match="'c'"):
            spend(g)
    with aicost.attribute(env="staging"):
        spend(g)
        with pytest.raises(BudgetExceeded, match="'t'"):
            spend(g)
    spend(g, model="flat-small", max_tokens=10000)  # $0.001 at $0.1 / Mtok
    with pytest.raises(BudgetExceeded, match="'m'"):
        spend(g, model="flat-small", max_tokens=10000)
    spend(g, model="flat-big")


def test_a_scope_value_with_a_pipe_is_reported_as_itself():
    """The bucket key is "<budget>|<value>|<window>", and the value was parsed back out of it with rsplit: a
    customer "acme|eu" was reported as "eu" in status(), events and BudgetExceeded (the wrong tenant)."""
    events = []
    g = guard(Budget(limit_usd="0.0015", scope="customer", name="per-customer", thresholds=["0.5"],
                     on_threshold=events.append, on_exceed=events.append))
    with aicost.attribute(customer="acme|eu"):
        spend(g)  # $0.001: the 50 % threshold fires
        with pytest.raises(BudgetExceeded) as err:
            spend(g)
        status = g.status()
    assert err.value.scope_value == "acme|eu" and "customer='acme|eu'" in str(err.value)
    assert [(s.scope_value, s.window, s.spent_usd) for s in status] == [("acme|eu", "day:2026-11-23", D("0.001"))]
    assert [(e.kind, e.scope_value, e.window) for e in events] == [("threshold", "acme|eu", "day:2026-11-23"),
                                                                  ("exceeded", "acme|eu", "day:2026-11-23")]


@pytest.mark.parametrize("name", ["_tenant", "1region", "x" * 65, "region\n", "has space"])
def test_a_tag_scope_aicost_attribute_refuses_is_refused_at_configure_time(name):
    """Budgets and policies accepted tag names aicost.attribute() refuses (a leading '_' or digit, over 64
    characters): no call could ever carry the tag, so the budget silently never applied. One rule for both now,
    and the error names the argument and what a tag name may be."""
    with pytest.raises(ValueError, match="tag name"):
        aicost.attribute(**{name: "v"})
    for build, where in ((lambda: Budget(limit_usd=1, scope=f"tag.{name}"), "Budget.scope"),
                         (lambda: Budget(limit_usd=1, scope=f"aicost.tag.{name}"), "Budget.scope"),
                         (lambda: Policy(scope=f"tag:{name}", deny_models=["x"]), "Policy.scope"),
                         (lambda: Policy(unless={f"tag.{name}": "v"}, deny_models=["x"]), "Policy.unless")):
        with pytest.raises(ConfigurationError) as err:
            build()
        assert str(err.value).startswith(f"{where}: invalid tag name {name!r}")
        assert semconv.TAG_NAME_RULE in str(err.value)


@pytest.mark.parametrize("name", ["region", "x" * 64, "a.b-c_1"])
def test_a_tag_name_aicost_attribute_accepts_scopes_a_budget_that_applies(name):
    g = guard(Budget(limit_usd="0.001", scope=f"tag.{name}", name="t"))
    with aicost.attribute(**{name: "v"}):
        spend(g)
        with pytest.raises(BudgetExceeded, match="'t'"):
            spend(g)


# --------------------------------------------------------------------------------------------- actions
def test_downgrade_switches_to_the_cheaper_model_then_refuses():
    g = guard(Budget(limit_usd="0.0015", action="downgrade", downgrade_to="flat-small", name="d"))
    first = spend(g, cost="0.001")
    assert first.kwargs["model"] == "flat-big" and semconv.AICOST_BUDGET_DECISION not in first.span_attributes
    info = chat_info()
    ticket = g.before_call(info)
    assert info.kwargs["model"] == info.request_model == "flat-small"  # the request that will be sent
    assert info.span_attributes[semconv.AICOST_BUDGET_DECISION] == "downgraded"
    assert info.span_attributes[semconv.AICOST_BUDGET_DOWNGRADED_FROM] == "flat-big"
    assert info.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD] == "0.0001"
    ticket.after_call(result(info, D("0.0004")))
    with pytest.raises(BudgetExceeded) as err:  # $0.0014 spent: even flat-small's $0.0001 ... fits once more
        for _ in range(3):
            spend(g, cost="0.0001")
    assert err.value.model == "flat-small"


def test_downgrade_respects_model_policies():
    g = guard(Budget(limit_usd="0.001", action="downgrade", downgrade_to="flat-small"),
              policies=[Policy(deny_models=["flat-small"])])
    spend(g)
    with pytest.raises(BudgetExceeded):
        spend(g)


@pytest.mark.parametrize("on_unknown_price", ["refuse", "allow"])
def test_no_downgrade_to_a_model_without_a_price_at_the_calls_tier(on_unknown_price):
    """The cheaper model is priced, but not at the tier the call asks for: downgrading would send a request whose
    worst case cannot be reserved. The call is refused as over budget, for the model it asked for, unchanged.
    With on_unknown_price='allow' too: the target would reserve nothing and go through past the spent budget."""
    def lookup(provider, model, *, service_tier=None):
        return price_lookup(provider, model) if model != "flat-small" or service_tier is None else None

    g = BudgetGuard([Budget(limit_usd="0.001", action="downgrade", downgrade_to="flat-small")],
                    price_lookup=lookup, clock=Clock(ts("2026-11-23T12:00:00")), on_unknown_price=on_unknown_price)
    spend(g)
    info = chat_info()
    info.service_tier = "priority"
    with pytest.raises(BudgetExceeded) as err:
        g.before_call(info)
    assert err.value.model == info.kwargs["model"] == "flat-big"


@pytest.mark.parametrize("on_unknown_price", ["refuse", "allow"])
def test_a_downgrade_in_a_price_scope_is_checked_at_the_scopes_prices(on_unknown_price):
    """A pool call (a price scope) is reserved only at its scope's prices, but the downgrade target was checked in
    the catalog: a target the pool does not price passed, then reserved $0 and went through a spent budget
    ('allow'), or was refused as unknown_price instead of over budget ('refuse'). Checked at the scope's prices,
    it is no downgrade: the call is refused over budget, unchanged; a target the scope prices is downgraded to."""
    from aicost import pricing

    scope = "pool:test provisional"
    g = guard(Budget(limit_usd="0.001", action="downgrade", downgrade_to="gpt-4o-mini", name="d"),
              on_unknown_price=on_unknown_price)

    def pool_call():
        info = chat_info("acme-big", 1000)  # worst case 1000 x $4/M = $0.004 > $0.001
        info.price_scope = scope
        return info

    pricing.set_scoped_prices(scope, {"acme-big": {"input": "1", "output": "4"}})
    try:
        info = pool_call()
        with pytest.raises(BudgetExceeded) as err:
            g.before_call(info)  # gpt-4o-mini has a catalog price, none in the pool
        assert err.value.model == info.kwargs["model"] == "acme-big"
        assert g.status()[0].reserved_usd == 0
        pricing.set_scoped_prices(scope, {"acme-big": {"input": "1", "output": "4"},
                                          "gpt-4o-mini": {"input": "0.1", "output": "0.4"}})
        info = pool_call()
        g.before_call(info)
        assert info.kwargs["model"] == "gpt-4o-mini"
        assert info.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD] == format_usd(
            pricing.scoped_price(scope, "gpt-4o-mini").cost(aicost.Usage(
                input_tokens=count_request_input(info.kwargs, "gpt-4o-mini", "openai", info.shape).tokens,
                output_tokens=1000)).total)
    finally:
        pricing.set_scoped_prices(scope, {})


def test_warn_allows_logs_once_per_window_and_marks_the_span(caplog):
    clock = Clock(ts("2026-11-23T12:00:00"))
    g = guard(Budget(limit_usd="0.001", action="warn", name="soft"), clock=clock)
    caplog.set_level(logging.WARNING, logger="aicost")
    infos = [spend(g) for _ in range(5)]
    assert [i.span_attributes.get(semconv.AICOST_BUDGET_DECISION) for i in infos] == [None] + ["warned"] * 4
    assert len([r for r in caplog.records if "'soft'" in r.getMessage()]) == 1
    assert g.status()[0].spent_usd == D("0.005")  # warn budgets still count the spend
    clock.t = ts("2026-11-24T00:00:00")
    spend(g)
    spend(g)
    assert len([r for r in caplog.records if "'soft'" in r.getMessage()]) == 2


def test_callback_action_decides_and_a_raise_releases_the_reservation():
    seen = []

    def on_exceed(event):
        seen.append(event)
        if len(seen) == 2:
            return False  # refuse this one
        if len(seen) == 3:
            raise PolicyViolation("finance", "stop: finance said no")  # a deliberate refusal of the user's own
        if len(seen) == 4:
            raise RuntimeError("a bug in the callback")  # logged; the call goes ahead

    g = guard(Budget(limit_usd="0.001", action="callback", on_exceed=on_exceed, name="cb"))
    spend(g)
    spend(g)  # over: callback returns -> allowed
    assert seen[0].kind == "exceeded" and seen[0].spent_usd == D("0.001") and seen[0].requested_usd == D("0.001")
    with pytest.raises(BudgetExceeded, match="'cb'"):
        spend(g)
    with pytest.raises(PolicyViolation, match="finance"):
        spend(g)
    assert g.status()[0].reserved_usd == 0  # the refused calls hold nothing
    spend(g)
    assert len(seen) == 4 and g.status()[0].spent_usd == D("0.003")


def test_a_callback_budget_without_its_own_callback_uses_the_default_of_configure_budgets():
    """docs/budgets.md: on_exceed= given to configure_budgets is the default for all budgets (the only way to give
    a budget from a config file one), but a callback budget without its own was refused at configure time, and
    the guard read only the budget's own callback."""
    events = []

    def default(event):
        events.append(event)
        return len(events) > 1  # refuses the first call over the limit, allows the second

    g = configure_budgets({"budgets": [{"limit_usd": "0.001", "action": "callback", "name": "cb"}]},
                          on_exceed=default, price_lookup=price_lookup, clock=Clock(ts("2026-11-23T12:00:00")))
    try:
        spend(g)
        with pytest.raises(BudgetExceeded, match="'cb'"):
            spend(g)
        spend(g)
        assert [(e.kind, e.budget.name) for e in events] == [("exceeded", "cb"), ("exceeded", "cb")]
        own = []  # a budget's own callback still comes first
        g = guard(Budget(limit_usd="0.001", action="callback", on_exceed=lambda e: own.append(e) or False),
                  on_exceed=default)
        spend(g)
        with pytest.raises(BudgetExceeded):
            spend(g)
        assert len(own) == 1 and len(events) == 2
    finally:
        disable_budgets()


@pytest.mark.parametrize("configure", [
    lambda: BudgetGuard([Budget(limit_usd=1), Budget(limit_usd=1, action="callback", name="cb")]),
    lambda: configure_budgets({"budgets": [{"limit_usd": "1", "action": "callback"}]}),
])
def test_a_callback_budget_with_no_callback_anywhere_is_a_configuration_error(configure):
    with pytest.raises(ConfigurationError, match=r"budgets\[\d\]: Budget.on_exceed: action='callback' needs"):
        configure()
    assert current_interceptors_without_guard()


def test_thresholds_fire_once_per_window_on_settled_spend():
    clock = Clock(ts("2026-11-23T12:00:00"))
    fired = []
    g = guard(Budget(limit_usd="0.01", thresholds=[0.5, 0.8, 1.0], action="warn", on_threshold=fired.append),
              clock=clock)
    for _ in range(4):
        spend(g)  # $0.004: nothing yet
    assert fired == []
    spend(g)  # $0.005 -> 50 %
    assert [e.threshold for e in fired] == [D("0.5")]
    spend(g, cost="0.004")  # $0.009 -> 80 %
    spend(g, cost="0.0001")
    assert [e.threshold for e in fired] == [D("0.5"), D("0.8")]
    spend(g, cost="0.005")  # $0.0141 -> 100 %
    assert [e.threshold for e in fired] == [D("0.5"), D("0.8"), D("1.0")]
    assert fired[-1].spent_usd == D("0.0141") and fired[-1].kind == "threshold"
    spend(g)
    assert len(fired) == 3
    clock.t = ts("2026-11-24T00:00:00")
    spend(g, cost="0.02")  # a new window: all three at once, in order
    assert [e.threshold for e in fired[3:]] == [D("0.5"), D("0.8"), D("1.0")]


# --------------------------------------------------------------------------------------------- policies
def test_model_allow_and_deny_lists_per_scope():
    g = guard(policies=[
        Policy(deny_models=["o1-pro*", "gpt-4.5*"], unless={"team": "research"}, name="premium-models"),
        Policy(scope="team", value="interns", allow_models=["gpt-4o-mini", "flat-*"], name="interns"),
    ])
    with pytest.raises(PolicyViolation) as err:
        g.before_call(chat_info(model="o1-pro-2025"))
    assert err.value.rule == "premium-models" and "o1-pro-2025" in str(err.value)
    with aicost.attribute(team="research"):
        g.before_call(chat_info(model="o1-pro-2025"))
    with aicost.attribute(team="interns"):
        g.before_call(chat_info(model="flat-small"))
        with pytest.raises(PolicyViolation, match="not allowed for team='interns'"):
            g.before_call(chat_info(model="gpt-4o"))


def test_input_token_cap_needs_explicit_opt_in():
    g = guard(policies=[Policy(max_input_tokens=50, name="short-prompts")])
    long_text = "word " * 200
    info = chat_info(text=long_text)
    with pytest.raises(PolicyViolation) as err:
        g.before_call(info)
    assert err.value.rule == "short-prompts" and "allow_long_context" in str(err.value)
    assert info.span_attributes[semconv.AICOST_POLICY_RULE] == "short-prompts"
    g.before_call(chat_info(text="short"))
    with allow_long_context():
        g.before_call(chat_info(text=long_text))
    with allow_long_context(max_input_tokens=100):
        with pytest.raises(PolicyViolation):
            g.before_call(chat_info(text=long_text))


@pytest.mark.parametrize(
    "endpoint, provider, given, expected",
    [
        ("openai.chat.completions.create", "openai", {}, {"max_completion_tokens": 256}),
        ("openai.chat.completions.create", "openai", {"max_tokens": 4000}, {"max_tokens": 256}),
        ("openai.chat.completions.create", "openai", {"max_completion_tokens": 100}, {"max_completion_tokens": 100}),
        ("openai.responses.create", "openai", {}, {"max_output_tokens": 256}),
        ("openai.completions.create", "openai", {}, {"max_tokens": 256}),
        ("anthropic.messages.create", "anthropic", {"max_tokens": 1024}, {"max_tokens": 256}),
    ],
)
def test_output_cap_is_written_into_the_request(endpoint, provider, given, expected):
    g = guard(Budget(limit_usd="1"), policies=[Policy(max_output_tokens=256)])
    given = dict(given)
    info = chat_info(max_tokens=given.pop("max_tokens", None), endpoint=endpoint, provider=provider, **given)
    g.before_call(info)
    caps = {k: v for k, v in info.kwargs.items() if k.startswith("max_")}
    assert caps == expected
    # the reservation uses the capped request: 256 (or 100) output tokens of flat-big
    assert D(info.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD]) == D(min(expected.values())) / 1_000_000


# --------------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    "kwargs, error, field",
    [
        (dict(limit_usd=0), ConfigurationError, "limit_usd"),
        (dict(limit_usd="-5"), ConfigurationError, "limit_usd"),
        (dict(limit_usd="ten"), ConfigurationError, "limit_usd"),
        (dict(limit_usd=float("nan")), ConfigurationError, "limit_usd"),
        (dict(limit_usd=True), TypeError, "limit_usd"),
        (dict(limit_usd="0.0000000001"), ConfigurationError, "limit_usd"),
        (dict(limit_usd="1e7"), ConfigurationError, "limit_usd"),
        (dict(limit_usd=1, window="week"), ConfigurationError, "window"),
        (dict(limit_usd=1, window="rolling-day"), ConfigurationError, "window"),
        (dict(limit_usd=1, scope="department"), ConfigurationError, "scope"),
        (dict(limit_usd=1, scope="tag."), ConfigurationError, "scope"),
        (dict(limit_usd=1, action="block"), ConfigurationError, "action"),
        (dict(limit_usd=1, action="downgrade"), ConfigurationError, "downgrade_to"),
        (dict(limit_usd=1, thresholds=[0.5, -1]), ConfigurationError, "thresholds"),
        (dict(limit_usd=1, value="x"), ConfigurationError, "value"),
    ],
)
def test_bad_budget_fails_at_configuration_naming_the_field(kwargs, error, field):
    with pytest.raises(error, match=field):
        Budget(**kwargs)


def test_bad_configuration_of_the_guard_and_config_files(tmp_path):
    with pytest.raises(ConfigurationError, match="duplicate"):
        configure_budgets(budgets=[Budget(limit_usd=1), Budget(limit_usd=2)])
    with pytest.raises(ConfigurationError, match="on_store_error"):
        configure_budgets(budgets=[Budget(limit_usd=1)], on_store_error="maybe")
    with pytest.raises(ConfigurationError, match="store"):
        configure_budgets(budgets=[Budget(limit_usd=1)], store="postgres://x")
    with pytest.raises(ConfigurationError, match="max_input_tokens"):
        Policy(max_input_tokens=0)
    with pytest.raises(ConfigurationError, match="unless"):
        Policy(deny_models=["x"], unless={"department": "r"})
    bad = tmp_path / "budgets.json"
    bad.write_text(json.dumps({"budgets": [{"limit_usd": "5", "windw": "day"}]}))
    with pytest.raises(ConfigurationError, match="windw"):
        configure_budgets(str(bad))
    assert current_interceptors_without_guard()


def current_interceptors_without_guard() -> bool:
    from aicost.budget import current_guard

    return current_guard() is None or current_guard() in interceptors()


def test_configure_from_a_file_installs_one_guard(tmp_path):
    path = tmp_path / "budgets.toml"
    path.write_text(
        '[[budgets]]\nlimit_usd = "0.001"\nwindow = "month"\nscope = "team"\n\n'
        '[[policies]]\ndeny_models = ["flat-small"]\n'
    )
    try:
        g1 = configure_budgets(str(path), price_lookup=price_lookup)
        g2 = configure_budgets(str(path), price_lookup=price_lookup)
        assert g2 in interceptors() and g1 not in interceptors()
        with aicost.attribute(team="a"):
            spend(g2)
            with pytest.raises(BudgetExceeded):
                spend(g2)
        with pytest.raises(PolicyViolation):
            spend(g2, model="flat-small")
    finally:
        disable_budgets()
    assert all(not isinstance(i, BudgetGuard) for i in interceptors())


def test_internal_errors_never_reach_the_app(caplog):
    def broken_lookup(*a, **k):
        raise KeyError("catalog bug")

    from aicost import _log

    _log.forget("budget:before_call")
    g = BudgetGuard([Budget(limit_usd="1")], price_lookup=broken_lookup)
    assert g.before_call(chat_info()) is None  # allowed, unguarded, logged
    assert any("budget guard failed" in r.getMessage() for r in caplog.records)


def test_a_call_without_a_model_holds_nothing_and_is_charged_what_it_costs():
    g = guard(Budget(limit_usd="1"))
    info = chat_info(endpoint="openai.responses.retrieve")
    info.request_model = None
    del info.kwargs["model"]
    ticket = g.before_call(info)  # e.g. resuming a background response: nothing to price ahead
    assert g.status()[0].reserved_usd == 0
    ticket.after_call(result(info, D("0.0042")))
    assert g.status()[0].spent_usd == D("0.0042")


def test_estimated_input_counts_are_inflated_by_the_margin():
    from aicost.tokens import count_request_input

    from budget_helpers import PRICES, StubPrice

    PRICES["input-only"] = StubPrice(D(1_000_000), D(0), 1)  # $1 per input token: the reservation shows the count
    try:
        text = "an estimate for a model without a public tokenizer " * 20
        exact = guard(Budget(limit_usd="100000"))
        info = chat_info(model="input-only", text=text, max_tokens=None, operation="embeddings")
        exact.before_call(info)
        assert D(info.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD]) == count_request_input(info.kwargs, "input-only", "openai", info.shape).tokens
        estimated = guard(Budget(limit_usd="100000"), estimate_margin="1.5")
        info = chat_info(model="input-only", text=text, max_tokens=None, operation="embeddings", provider="anthropic",
                         endpoint="anthropic.messages.create")
        estimated.before_call(info)
        tokens = count_request_input(info.kwargs, "input-only", "anthropic", info.shape)
        assert not tokens.exact
        assert D(info.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD]) == -(-tokens.tokens * 3 // 2)
    finally:
        del PRICES["input-only"]


def test_refusals_survive_pickling_for_process_pools():
    import pickle

    g = guard(Budget(limit_usd="0.001", name="p"))
    spend(g)
    with pytest.raises(BudgetExceeded) as err:
        spend(g)
    copy = pickle.loads(pickle.dumps(err.value))
    assert (str(copy), copy.budget, copy.spent_usd, copy.resets_at) == (
        str(err.value), "p", D("0.001"), err.value.resets_at)
    violation = pickle.loads(pickle.dumps(PolicyViolation("rule-x", "because")))
    assert violation.rule == "rule-x" and str(violation) == "aicost policy 'rule-x': because"


def test_real_catalog_price_override_applies_to_the_next_reservation():
    from aicost import pricing

    g = BudgetGuard([Budget(limit_usd="1")])  # the real price catalog
    with pytest.raises(PolicyViolation, match="unknown_price"):
        g.before_call(chat_info(model="acme-ft-7", max_tokens=1000))
    pricing.set_price("acme-ft-7", provider="openai", input=0, output=4)
    try:
        info = chat_info(model="acme-ft-7", max_tokens=1000)
        g.before_call(info)  # no stale "unknown" remembered by the guard
        assert D(info.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD]) == D("0.004")
    finally:
        pricing.clear_overrides()


def test_a_priced_model_whose_output_has_no_price_is_refused_with_pricing_s_reason():
    """An input-only override prices a model's input, not its output: a chat call's worst case (its output cap)
    has no price, so it is refused with the reason pricing gives the span, not as a model with no price."""
    from aicost import pricing

    pricing.set_price("acme-input-only", provider="openai", input="1")
    try:
        with pytest.raises(PolicyViolation, match="has no output rate") as refused:
            BudgetGuard([Budget(limit_usd="1")]).before_call(chat_info(model="acme-input-only", max_tokens=1000))
        assert "no price is known" not in str(refused.value)
    finally:
        pricing.clear_overrides()


# --------------------------------------------------------------------------------------------- reconfiguring
def test_configuring_again_keeps_the_spend_of_the_memory_store():
    """A reload (configure_budgets again, same budgets) must not forgive what the window has already spent."""
    from aicost.budget import current_guard, process_memory_store

    process_memory_store().reset()
    try:
        g = configure_budgets(budgets=[Budget(limit_usd="0.003", name="reload")], price_lookup=price_lookup)
        spend(g, "0.0012")
        spend(g, "0.0012")
        g = configure_budgets(budgets=[Budget(limit_usd="0.003", name="reload")], price_lookup=price_lookup)
        assert g.status()[0].spent_usd == D("0.0024")
        with pytest.raises(BudgetExceeded):
            spend(g)  # 0.0024 + 0.001 > 0.003
        g = configure_budgets(budgets=[Budget(limit_usd="0.01", name="reload")], price_lookup=price_lookup)
        assert g.status()[0].spent_usd == D("0.0024")  # a raised limit applies to the same spend
        disable_budgets()  # from here nothing counts what is spent: the in-memory figures would be wrong
        assert current_guard() is None
        g = configure_budgets(budgets=[Budget(limit_usd="0.01", name="reload")], price_lookup=price_lookup)
        assert g.status()[0].spent_usd == 0
    finally:
        disable_budgets()
        process_memory_store().reset()


def test_downgrade_to_a_model_without_a_price_is_refused_at_configure_time():
    budget = Budget(limit_usd="1", action="downgrade", downgrade_to="no-such-model", name="cheap")
    with pytest.raises(ConfigurationError, match="downgrade_to.*'no-such-model'.*price"):
        configure_budgets(budgets=[budget], price_lookup=price_lookup)
    with pytest.raises(ConfigurationError, match="downgrade_to"):
        BudgetGuard([budget], price_lookup=price_lookup)
    with pytest.raises(ConfigurationError, match="downgrade_to"):
        configure_budgets(budgets=[budget])  # the real catalog does not know it either
    assert BudgetGuard([Budget(limit_usd="1", action="downgrade", downgrade_to="gpt-4o-mini")])  # it knows this


def test_downgrade_on_a_named_vendor_is_checked_at_that_vendors_prices():
    # The configure-time check resolves the target as the budget's calls will: on Groq, OpenAI's gpt-4o-mini has no
    # price (Groq does not sell it at OpenAI's price), so a downgraded call could not be reserved.
    with pytest.raises(ConfigurationError, match="downgrade_to.*'gpt-4o-mini'.*provider 'groq'"):
        BudgetGuard([Budget(limit_usd="1", scope="provider", value="groq", action="downgrade",
                            downgrade_to="gpt-4o-mini")])
    assert BudgetGuard([Budget(limit_usd="1", scope="provider", value="groq", action="downgrade",
                               downgrade_to="llama-3.1-8b-instant")])  # Groq's own table lists it
    assert BudgetGuard([Budget(limit_usd="1", scope="provider", value="azure.ai.openai", action="downgrade",
                               downgrade_to="gpt-4o-mini")])  # Azure resells it at OpenAI's list price


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(estimate_margin="abc"), "estimate_margin"),
        (dict(estimate_margin="0.5"), "estimate_margin"),
        (dict(estimate_margin=True), "estimate_margin"),
        (dict(estimate_margin=float("inf")), "estimate_margin"),
        (dict(lease_seconds=-1), "lease_seconds"),
        (dict(lease_seconds="1h"), "lease_seconds"),
        (dict(lease_seconds=float("inf")), "lease_seconds"),
        (dict(store_timeout_s=0), "store_timeout_s"),
        (dict(store_timeout_s="fast"), "store_timeout_s"),
        (dict(default_max_output_tokens=0), "default_max_output_tokens"),
        (dict(default_max_output_tokens=1.5), "default_max_output_tokens"),
        (dict(on_unknown_price="maybe"), "on_unknown_price"),
        (dict(on_store_error=True), "on_store_error"),
        (dict(on_threshold=5), "on_threshold"),
        (dict(on_exceed="print"), "on_exceed"),
        (dict(price_lookup="catalog"), "price_lookup"),
        (dict(clock=123), "clock"),
        (dict(store=42), "store"),
        (dict(store="postgres://x"), "store"),
        (dict(store={"url": "redis://127.0.0.1:1/0", "prefx": "a"}), "store"),
        (dict(store={"url": "redis://127.0.0.1:1/0", "prefix": "a{b}"}), "prefix"),
        (dict(budgets=Budget(limit_usd=1)), "budgets"),
        (dict(budgets=["x"]), r"budgets\[0\]"),
        (dict(policies="deny"), "policies"),
        (dict(config=42), "config"),
        (dict(config="/nonexistent/budgets.toml"), "config"),
    ],
)
def test_every_bad_argument_of_configure_budgets_is_one_configuration_error_naming_it(kwargs, argument):
    kwargs.setdefault("budgets", [Budget(limit_usd=1)])
    with pytest.raises(ConfigurationError, match=argument):
        configure_budgets(**kwargs)
    assert current_interceptors_without_guard()


@pytest.mark.parametrize("name, content", [
    ("budgets.toml", b'[[budgets]]\nlimit_usd = "5"\nname = "caf\xe9"\n'),  # Latin-1, not UTF-8
    ("budgets.toml", b"[[budgets]\nlimit_usd = 5\n"),
    ("budgets.json", b'{"budgets": [}'),
    ("budgets.json", b'{"budgets": [{"limit_usd": "5", "window": "week"}]}'),
])
def test_a_bad_config_file_is_a_configuration_error_naming_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=r"budgets\.(toml|json)|budgets\[0\]"):
        configure_budgets(str(path))


# Each file has one bad entry, written after a good one; the line is the bad field's (or the entry's first line, when
# the problem is the entry's as a whole or its field is not written), as a price file says its problems.
_TOML_GOOD = '[[budgets]]\nlimit_usd = "5"\nname = "good"\n\n'
_JSON_GOOD = '{"budgets": [\n  {"limit_usd": "5", "name": "good"},\n'


@pytest.mark.parametrize("name, content, line, field, says", [
    ("b.toml", _TOML_GOOD + '[[budgets]]\nname = "late"\nwindow = "week"\nlimit_usd = "5"\n', 7, "window",
     r"budgets\[1\]: Budget.window: unknown window 'week'; expected one of minute"),
    ("b.toml", _TOML_GOOD + '[[budgets]]\nname = "zero"\nlimit_usd = "0"\n', 7, "limit_usd",
     r"budgets\[1\]: Budget.limit_usd must be > 0"),
    ("b.toml", _TOML_GOOD + '[[budgets]]\nlimit_usd = "5"\nscope = "department"\n', 7, "scope",
     r"budgets\[1\]: Budget.scope: unknown scope key 'department'; expected one of"),
    ("b.toml", _TOML_GOOD + '[[budgets]]\nlimit_usd = "5"\nname = "t"\nthresholds = [0.5, -1]\n', 8, "thresholds",
     r"budgets\[1\]: Budget.thresholds must be fractions"),
    ("b.toml", _TOML_GOOD + '[[budgets]]\nscope = "team"\n', 5, "limit_usd",  # missing: the entry's line
     r"budgets\[1\]: limit_usd is required"),
    ("b.toml", _TOML_GOOD + '[[budgets]]\nlimit_usd = "5"\nname = "w"\nwindw = "day"\n', 8, "windw",
     r"budgets\[1\]: unknown field\(s\) 'windw'; allowed:"),
    ("b.toml", _TOML_GOOD + '[[budgets]]\nlimit_usd = "5"\nname = "cb"\naction = "callback"\n', 8, "action",
     r"budgets\[1\]: Budget.on_exceed: action='callback' needs a callable"),  # found by the guard, not the parser
    ("b.toml", _TOML_GOOD + '[[budgets]]\nlimit_usd = "5"\nname = "dg"\naction = "downgrade"\n'
                            'downgrade_to = "no-such-model"\n', 9, "downgrade_to",
     r"Budget.downgrade_to: no price is known for 'no-such-model'"),
    ("b.toml", _TOML_GOOD + '[[budgets]]\nlimit_usd = "6"\nname = "good"\n', 7, "name",
     r"duplicate budget name\(s\) \['good'\]"),
    ("b.toml", _TOML_GOOD + '[[policies]]\nmax_output_tokens = 0\n', 6, "max_output_tokens",
     r"policies\[0\]: Policy.max_output_tokens must be > 0"),
    ("b.json", _JSON_GOOD + '  {"limit_usd": "5",\n   "name": "late",\n   "window": "week"}\n]}\n', 5, "window",
     r"budgets\[1\]: Budget.window: unknown window 'week'"),
    ("b.json", _JSON_GOOD + '  {"name": "no-limit"}\n]}\n', 3, "limit_usd", r"budgets\[1\]: limit_usd is required"),
    ("b.json", _JSON_GOOD + '  "five dollars"\n]}\n', 3, None, r"budgets\[1\] must be a mapping"),
    ("b.json", _JSON_GOOD + '  {"limit_usd": "5",\n   "name": "cb", "action": "callback"}\n]}\n', 4, "action",
     r"budgets\[1\]: Budget.on_exceed: action='callback'"),
])
def test_a_bad_entry_in_a_budget_file_names_the_file_the_line_and_the_field(tmp_path, name, content, line, field,
                                                                              says):
    """Not only ``budgets[1]``: which file and which line, as a price file says it (one reader, one way)."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigurationError) as err:
        configure_budgets(str(path), price_lookup=price_lookup)
    message = str(err.value)
    assert message.startswith(f"config: {path}:{line}: "), message
    assert re.search(says, message), message
    assert message.endswith(f" (field {field!r})") if field else "(field" not in message, message
    assert current_interceptors_without_guard()


def test_a_budget_given_in_code_beside_a_file_is_not_said_to_be_in_the_file(tmp_path):
    path = tmp_path / "budgets.toml"
    path.write_text('[[budgets]]\nlimit_usd = "5"\n')
    with pytest.raises(ConfigurationError) as err:
        configure_budgets(str(path), budgets=[Budget(limit_usd=1, action="callback", name="cb")])
    assert str(err.value).startswith("budgets[1]: Budget.on_exceed: action='callback'")
    assert str(path) not in str(err.value)


# --------------------------------------------------------------------------------------------- the journal
def test_spend_during_an_outage_is_journalled_and_applied_once_when_the_store_is_back(caplog):
    caplog.set_level(logging.WARNING, logger="aicost")
    store = FlakyStore()
    g = guard(Budget(limit_usd="1", name="j"), store=store)
    spend(g, "0.0001")
    held = g.before_call(info := chat_info())  # in flight when the store goes down
    store.down = True
    for _ in range(300):
        spend(g, "0.0001")  # fail-open: the calls go ahead, and their cost is kept
    held.after_call(result(info, D("0.0005")))
    assert g.journal_stats()["pending"] == 2  # the outage's calls merge into one entry; the held one is its own
    store.down = False
    store.lose_replies = True  # the store applies, but the answers are lost: the retry must not count twice
    spend(g, "0.0001")
    store.lose_replies = False
    spend(g, "0.0001")
    assert g.journal_stats()["pending"] == 0
    [status] = g.status()
    assert status.spent_usd == D("0.0001") * 303 + D("0.0005") and status.reserved_usd == 0


def test_a_settlement_for_nothing_held_whose_answer_is_lost_is_counted_once():
    """The store runs a settlement but its answer is lost (a timeout on a loaded machine, a server killed after
    writing it): the retry must find that it ran. For a call that holds nothing (it went ahead while the store
    was down) no hold was released to tell it, so the first attempt leaves a SETTLE_ONCE marker. Both ways
    there: the journal's merged outage spend, and a call settled directly once the store is back."""
    store = FlakyStore()
    g = guard(Budget(limit_usd="1", name="lost"), store=store)
    store.down = True
    for _ in range(3):
        spend(g, "0.0001")  # journalled, merged: they hold nothing
    unheld = g.before_call(unheld_info := chat_info())  # goes ahead, holds nothing
    store.down = False
    store.lose_replies = True
    g.flush()  # the journal is applied; its answers are lost
    unheld.after_call(result(unheld_info, D("0.0007")))  # applied; its answer is lost too
    store.lose_replies = False
    assert g.flush() == 0
    [status] = g.status()
    assert status.spent_usd == D("0.0001") * 3 + D("0.0007") and status.reserved_usd == 0


def test_a_full_journal_drops_counts_and_logs_never_silently(caplog):
    caplog.set_level(logging.WARNING, logger="aicost")
    store = FlakyStore()
    g = guard(Budget(limit_usd="1", name="full"), store=store)
    g._journal.capacity = 3
    calls = [(info, g.before_call(info)) for info in (chat_info() for _ in range(5))]
    store.down = True
    for info, ticket in calls:
        ticket.after_call(result(info, D("0.0002")))
    stats = g.journal_stats()
    assert (stats["pending"], stats["dropped"], stats["dropped_nanos"]) == (3, 2, 400_000)
    assert len([r for r in caplog.records if "was dropped" in r.getMessage()]) == 1
    store.down = False
    assert g.flush() == 0
    assert g.status()[0].spent_usd == D("0.0006")
    assert any("had been dropped" in r.getMessage() for r in caplog.records)


def test_a_reload_during_an_outage_hands_the_journal_to_the_new_guard(caplog):
    caplog.set_level(logging.WARNING, logger="aicost")
    store = FlakyStore()
    options = dict(budgets=[Budget(limit_usd="1", name="handover")], store=store, price_lookup=price_lookup)
    try:
        old = configure_budgets(**options)
        in_flight = chat_info()
        ticket = old.before_call(in_flight)
        store.down = True
        spend(old, "0.0001")  # journalled by the old guard
        new = configure_budgets(**options)
        ticket.after_call(result(in_flight, D("0.0002")))  # the old guard's call ends after the reload
        assert new.journal_stats()["pending"] == 2
        assert not any("spend is not counted" in r.getMessage() for r in caplog.records)
        store.down = False
        spend(new, "0.0001")
        assert new.status()[0].spent_usd == D("0.0004") and new.status()[0].reserved_usd == 0
    finally:
        disable_budgets()


def _is_canonical(amount: Decimal) -> bool:
    from aicost.pricing.money import canonical

    return amount.as_tuple() == canonical(amount).as_tuple()  # the same digits and exponent, not only the value


def test_every_amount_the_budget_api_returns_is_in_the_canonical_money_form():
    """Budgets given as "0.0050", "5E-3" or a price total with trailing zeros come back in the one form aicost
    writes money everywhere else (``0.005``, never ``0.0050`` or ``5E-3``): in the budget, its status, its events
    and its refusals, so that a string compare of two amounts is a value compare."""
    def padded(provider, model, *, service_tier=None):  # a price whose totals keep trailing zeros
        price = price_lookup(provider, model)
        return None if price is None else type("Padded", (), {
            "max_output_tokens": price.max_output_tokens,
            "cost": lambda self, usage: type(price.cost(usage))(True, price.cost(usage).total.quantize(D("1E-12")))})()

    exceeded, thresholds = [], []
    budgets = [Budget(limit_usd="0.0050", name="padded", thresholds=[0.1], on_threshold=thresholds.append),
               Budget(limit_usd="4.50E-3", name="exponent", action="callback", on_exceed=exceeded.append),
               Budget(limit_usd="20.00", name="whole")]
    g = BudgetGuard(budgets, [], price_lookup=padded, clock=Clock(ts("2026-11-23T12:00:00")))
    assert [str(b.limit_usd) for b in g.budgets] == ["0.005", "0.0045", "20"]
    for _ in range(3):
        spend(g)  # $0.003 spent: the 10 % threshold fires
    held = [g.before_call(chat_info()) for _ in range(2)]  # $0.002 more in flight: over the callback budget
    with pytest.raises(BudgetExceeded) as refused:
        g.before_call(chat_info())
    statuses = g.status()
    assert [str(s.limit_usd) for s in statuses] == ["0.005", "0.0045", "20"]
    amounts = [getattr(s, name) for s in statuses
               for name in ("limit_usd", "spent_usd", "reserved_usd", "remaining_usd")]
    assert thresholds and exceeded
    amounts += [getattr(e, name) for e in thresholds + exceeded
                for name in ("limit_usd", "spent_usd", "reserved_usd", "requested_usd") if getattr(e, name) is not None]
    e = refused.value
    amounts += [e.limit_usd, e.spent_usd, e.reserved_usd, e.requested_usd]
    assert (e.limit_usd, e.spent_usd, e.reserved_usd, e.requested_usd) == (D("0.005"), D("0.003"), D("0.002"),
                                                                           D("0.001"))
    assert [a for a in amounts if not _is_canonical(a)] == []
    for ticket in held:
        ticket.after_call(result(chat_info(), D("0.0001")))


def test_a_limit_with_more_digits_than_money_carries_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="Budget.limit_usd"):
        Budget(limit_usd="1." + "0" * 150 + "1")


def _hostile_context():
    """What a host application may do to its thread's decimal context: a precision read as "decimal places" and
    Inexact trapped (to catch rounding in its own money code)."""
    return decimal.localcontext(decimal.Context(prec=2, traps=[decimal.Inexact, decimal.InvalidOperation]))


def test_the_threads_decimal_context_changes_no_limit_reservation_or_status():
    """The budget's amounts used to be computed in the calling thread's decimal context: at prec=2 a $0.0149 limit
    became $0.015, and a call whose worst case is $0.015 passed it."""
    with _hostile_context():
        g = guard(Budget(limit_usd="0.0149", thresholds=["0.333"], on_threshold=lambda event: None))
        assert (g._compiled[0].limit, g._compiled[0].thresholds) == (14_900_000, (4_961_700,))  # exact
        with pytest.raises(BudgetExceeded):
            g.before_call(chat_info(max_tokens=15000))  # $0.015 > $0.0149
        info = chat_info(max_tokens=14000)
        ticket = g.before_call(info)
        assert info.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD] == "0.014"
        ticket.after_call(result(info, D("0.0123457")))
        status = g.status()[0]
    assert (status.limit_usd, status.spent_usd, status.reserved_usd, status.remaining_usd) == (
        D("0.0149"), D("0.0123457"), 0, D("0.0025543"))


def test_a_trapped_inexact_in_the_threads_context_does_not_let_calls_through_unguarded(caplog):
    """With Inexact trapped in the thread, the guard raised inside, logged and let the call go ahead unguarded.
    The real catalog and an estimated (Claude) input count: the margin is applied exactly too."""
    from aicost import _log

    _log.forget("budget:before_call")
    text = "an estimated prompt, inflated by the margin " * 7

    def claude():
        return chat_info("claude-haiku-4-5", 1001, text=text, provider="anthropic", endpoint="anthropic.messages.create")

    roomy = BudgetGuard([Budget(limit_usd="1")], estimate_margin="1.37", clock=Clock(ts("2026-11-23T12:00:00")))
    expected = claude()
    roomy.before_call(expected)
    tight = BudgetGuard([Budget(limit_usd="0.001")], estimate_margin="1.37", clock=Clock(ts("2026-11-23T12:00:00")))
    with _hostile_context():
        info = claude()
        assert roomy.before_call(info) is not None
        with pytest.raises(BudgetExceeded):
            tight.before_call(claude())  # $0.005 or so against $0.001
    assert info.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD] == \
        expected.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD]
    assert not any("budget guard failed" in r.getMessage() for r in caplog.records)


def test_the_estimate_reads_the_request_only_through_a_shape_it_must_be_given():
    """A caller that forgot the endpoint's RequestShape used to get the default one, which reads nothing: 0 input
    tokens and no output cap, silently. Now the shape is a required keyword, of the CallInfo an interceptor reads
    it from too."""
    from aicost import telemetry
    from aicost.budget.estimate import count_input, worst_case
    from aicost.hooks import CallInfo

    info = chat_info("gpt-4o", max_tokens=7, text="hello there, how are you today?")
    with pytest.raises(TypeError, match="shape"):
        CallInfo(provider="openai", operation="chat", endpoint=info.endpoint, request_model="gpt-4o",
                 kwargs=info.kwargs, stream=False, is_async=False)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        count_input(info.kwargs, "gpt-4o", "openai")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        worst_case(price=None, kwargs=info.kwargs, operation="chat", input_tokens=1, input_exact=True,
                   default_max_output_tokens=100, estimate_margin=Decimal(1))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        telemetry.content_attributes({}, info.kwargs)  # type: ignore[call-arg]
    tokens, exact = count_input(info.kwargs, "gpt-4o", "openai", shape=info.shape)
    assert tokens > 0 and exact
    estimate = worst_case(price=None, kwargs=info.kwargs, operation="chat", input_tokens=tokens, input_exact=exact,
                          default_max_output_tokens=100, estimate_margin=Decimal(1), shape=info.shape)
    assert estimate.output_tokens == 7  # the request's own cap, read through its shape


def test_the_memory_store_keeps_no_settle_once_marker_for_a_call_that_held_nothing():
    """A Realtime response holds nothing, so its settlement would be sent SETTLE_ONCE (a marker tells a retry after
    a lost answer that it ran). The in-process store answers every command: no retry ever follows, and a marker
    per response kept for an hour would only be memory. The spend is still counted, once."""
    store = MemoryStore()
    g = guard(Budget(limit_usd="1", name="realtime"), store=store)
    for _ in range(3):
        info = chat_info()
        g.before_unguarded_call(info).after_call(result(info, D("0.0004")))
    assert store._settled_once == {}
    assert g.status()[0].spent_usd == D("0.0012")


def test_a_call_whose_reserve_was_never_sent_settles_with_the_short_marker():
    """While the store is known to be down the reserve is not sent, so no reserve can reach it late: the call's
    SETTLE_ONCE marker only has to outlast a retry (ONCE_MARKER_MIN_SECONDS), not the reservation's lease. A
    reserve that was sent and timed out keeps its lease: it may still arrive."""
    store, clock = FlakyStore(), Clock(ts("2026-11-23T12:00:00"))
    g = guard(Budget(limit_usd="1", name="down"), store=store, clock=clock, on_store_error="open")
    store.down = True
    never_sent = g.before_call(chat_info())
    store.down, store.lose_replies = False, True
    maybe_sent = g.before_call(chat_info())
    assert not never_sent.held and never_sent.lease_until == clock.t
    assert not maybe_sent.held and maybe_sent.lease_until > clock.t + 600


@pytest.mark.parametrize("name, content, where", [
    # JSON keeps the last of two values silently: $5000 or $5?
    ("budgets.json", b'{"budgets": [\n  {"limit_usd": "5",\n   "window": "day",\n   "limit_usd": "5000"}\n]}',
     r"budgets\.json:2: .*given twice.*budgets\[0\]\.limit_usd"),
    ("budgets.json", b'{"store": "memory", "store": "redis://127.0.0.1:6379/0", "budgets": []}',
     r"budgets\.json:1: .*given twice.*'store'"),
    ("budgets.json", b'{"policies": [{"deny_models": ["x"], "unless": {"team": "a", "team": "b"}}]}',
     r"budgets\.json:1: .*given twice.*policies\[0\]\.unless\.team"),
    ("budgets.toml", b'[[budgets]]\nlimit_usd = "5"\nlimit_usd = "5000"\n', r"budgets\.toml:3: invalid TOML"),
])
def test_a_key_given_twice_in_a_budget_file_is_refused_naming_file_line_and_key(tmp_path, name, content, where):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=where):
        configure_budgets(str(path))
    assert current_interceptors_without_guard()


@pytest.mark.parametrize("name, content", [
    ("budgets.json", '{"budgets": [{"limit_usd": "5", "name": "bom"}]}'),
    ("budgets.toml", '[[budgets]]\nlimit_usd = "5"\nname = "bom"\n'),
])
def test_a_budget_file_with_a_utf8_byte_order_mark_is_read_as_price_files_are(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + content.encode())
    try:
        guard = configure_budgets(str(path))
        assert [b.name for b in guard.budgets] == ["bom"]
    finally:
        disable_budgets()


def test_a_warm_guard_runs_no_import_statement_per_call(monkeypatch):
    """Counting a request's tokens ran two import statements on every call (``from ..tokens import ...`` in
    ``count_input``, ``import tiktoken.model`` in ``encoding_name_for``): the import machinery each time, ~14 k
    instructions of the guard's ~215 k. Both modules are now imported at the first count and kept."""
    import builtins

    from aicost.budget.estimate import count_input

    info = chat_info("gpt-4o", max_tokens=7, text="hello there, how are you today?")
    g = BudgetGuard([Budget(limit_usd="1", name="warm")], [], clock=Clock(ts("2026-11-23T12:00:00")))
    g.before_call(info).after_call(result(info, D("0.0001")))  # warm: first count, first price
    imported: list[str] = []
    real_import = builtins.__import__

    def counting_import(name, *args, **kwargs):
        imported.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", counting_import)
    tokens, exact = count_input(info.kwargs, "gpt-4o", "openai", shape=info.shape)
    g.before_call(info).after_call(result(info, D("0.0001")))
    monkeypatch.undo()
    assert imported == []
    assert tokens == count_request_input(info.kwargs, "gpt-4o", "openai", info.shape).tokens > 0 and exact


def test_a_warm_guard_asks_tiktoken_for_a_models_encoding_once(tiktoken_lookups):
    """The guard's token count asked tiktoken's ``encoding_name_for_model`` (a prefix scan in Python) for the
    model's encoding on every call. It is now asked once per model name, however many calls follow."""
    g = BudgetGuard([Budget(limit_usd="1", name="warm")], [], clock=Clock(ts("2026-11-23T12:00:00")))
    for _ in range(20):
        for model in ("gpt-4o-mini", "gpt-4o-2024-08-06"):
            info = chat_info(model, max_tokens=7, text="hello there, how are you today?")
            g.before_call(info).after_call(result(info, D("0.0001")))
    assert sorted(tiktoken_lookups) == ["gpt-4o-2024-08-06", "gpt-4o-mini"]
