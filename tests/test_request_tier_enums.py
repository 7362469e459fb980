"""A request's service tier given as an enum, through the real OpenAI and Anthropic SDKs over HTTP (loopback fake).

Typed code passes tiers as enums: a ``class Tier(str, Enum)`` (what typed SDKs generate) or a plain ``enum.Enum``
of the application's own. Every integration reads either as its value (``names.tier_text``, the one conversion):
the budget guard reserves at that tier, the span carries it as plain text, and a response that names no tier is
priced at it. The SDKs themselves cannot send a plain Enum (``json`` refuses it: a TypeError before any request);
aicost leaves that error as it is, but reads the tier the call asked for before it, as for a str-Enum.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from decimal import Decimal

import pytest

from aicost import semconv as s
from aicost.budget import Budget, configure_budgets, disable_budgets, process_memory_store
from aicost.pricing import current_price, price_call
from aicost.usage import Usage
from vendor_server import anthropic_message_reply, openai_chat_reply

StrTier = enum.Enum("StrTier", {"FLEX": "flex", "PRIORITY": "priority"}, type=str)
PlainTier = enum.Enum("PlainTier", {"FLEX": "flex", "PRIORITY": "priority"})


@pytest.fixture
def asked():
    """The tiers the budget guard asked prices at (before each call is sent)."""
    tiers = []

    def lookup(provider, model, *, service_tier=None):
        tiers.append(service_tier)
        return current_price(provider, model, service_tier)

    configure_budgets(budgets=[Budget(limit_usd="100", window="day", name="tiers")], price_lookup=lookup)
    try:
        yield tiers
    finally:
        disable_budgets()
        process_memory_store().reset()


def _openai(client, tier):
    return client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}],
                                          service_tier=tier)


def _anthropic(client, tier):
    return client.messages.create(model="claude-sonnet-4-5", max_tokens=50,
                                  messages=[{"role": "user", "content": "hi"}], service_tier=tier)


# vendor: (call, its client fixture, a reply naming no tier, the request tier's span attribute, tier, provider)
VENDORS = {
    "openai": (_openai, "openai_client", lambda: openai_chat_reply(model="gpt-5", service_tier=None),
               s.OPENAI_REQUEST_SERVICE_TIER, "FLEX", "openai"),
    "anthropic": (_anthropic, "anthropic_client", lambda: _no_tier(anthropic_message_reply(model="claude-sonnet-4-5")),
                  s.ANTHROPIC_REQUEST_SERVICE_TIER, "PRIORITY", "anthropic"),
}


def _no_tier(reply):
    """The reply without ``usage.service_tier``: the request's tier prices the call."""
    body = json.loads(reply.body)
    del body["usage"]["service_tier"]
    return dataclasses.replace(reply, body=json.dumps(body))


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_str_enum_tier_is_read_sent_and_priced_as_its_value(vendor, instrumented, replay_server, asked, request):
    call, client_fixture, reply, attribute, member, provider = VENDORS[vendor]
    tier = StrTier[member]
    replay_server.enqueue(reply())
    call(request.getfixturevalue(client_fixture), tier)
    assert replay_server.requests[0].json["service_tier"] == tier.value  # what the SDK sent
    assert asked == [tier.value] and type(asked[0]) is str
    (span,) = instrumented.aicost_spans()
    attrs = span.attributes
    assert attrs[attribute] == tier.value
    if vendor == "openai":  # aicost's attribute: text, not the enum member (Anthropic's SDK writes its own span's)
        assert type(attrs[attribute]) is str
    assert attrs[s.AICOST_SERVICE_TIER] == tier.value
    usage = Usage(input_tokens=attrs["gen_ai.usage.input_tokens"], output_tokens=attrs["gen_ai.usage.output_tokens"])
    model = attrs["gen_ai.response.model"]
    assert Decimal(attrs["aicost.cost.total_usd"]) == price_call(provider, model, usage, service_tier=tier.value).total


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_plain_enum_tier_is_read_as_its_value_though_the_sdk_cannot_send_it(vendor, instrumented, replay_server,
                                                                               asked, request):
    call, client_fixture, _, _, member, _ = VENDORS[vendor]
    client = request.getfixturevalue(client_fixture)
    with pytest.raises(TypeError, match="not JSON serializable"):  # the SDK's own error, as without aicost
        call(client, PlainTier[member])
    assert replay_server.requests == []
    assert asked == [PlainTier[member].value]  # reserved at the tier asked for, not dropped to the standard rate
