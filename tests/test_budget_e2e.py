"""The budget guard end to end: real OpenAI / Anthropic SDKs over real HTTP to the loopback vendor server,
aicost instrumented, real price catalog. A refused call never reaches the server; a downgraded one arrives with
the cheaper model; spend settles to exactly what the span says the call cost."""

from __future__ import annotations

from decimal import Decimal

import pytest

import aicost
from aicost import semconv
from aicost.budget import (
    Budget, BudgetExceeded, Policy, PolicyViolation, configure_budgets, disable_budgets, process_memory_store,
)
from aicost.budget.money import to_nanos, to_usd

D = Decimal
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def budgets():
    process_memory_store().reset()  # store="memory" keeps spend across configure_budgets calls: start from zero
    yield configure_budgets
    disable_budgets()
    process_memory_store().reset()


def _decisions(telemetry) -> dict[str, float]:
    points = telemetry.metrics().get(semconv.METRIC_BUDGET_DECISIONS, [])
    return {p.attributes[semconv.AICOST_BUDGET_DECISION]: p.value for p in points}


def test_refused_call_never_reaches_the_server_and_shows_on_span_and_metric(
        instrumented, budgets, openai_client, replay_server):
    budgets(budgets=[Budget(limit_usd="0.0005", window="day", name="tiny")])
    # gpt-4o: 1,000 output tokens at $10 / Mtok = $0.01 worst case > $0.0005
    with pytest.raises(BudgetExceeded) as err:
        openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1000)
    assert err.value.budget == "tiny" and err.value.requested_usd > D("0.01")
    assert replay_server.requests == []  # nothing was sent
    [span] = instrumented.aicost_spans()
    attrs = span.attributes
    assert attrs[semconv.AICOST_BUDGET_DECISION] == "blocked" and attrs[semconv.AICOST_BUDGET_NAME] == "tiny"
    assert attrs[semconv.ERROR_TYPE] == "BudgetExceeded"
    assert semconv.GEN_AI_USAGE_COST not in attrs or attrs[semconv.GEN_AI_USAGE_COST] == 0
    assert _decisions(instrumented) == {"blocked": 1}


def test_downgraded_call_arrives_with_the_cheaper_model_and_settles_to_the_span_cost(
        instrumented, budgets, openai_client, replay_server):
    guard = budgets(budgets=[Budget(limit_usd="0.005", action="downgrade", downgrade_to="gpt-4o-mini", name="chat")])
    response = openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1000)
    assert response.choices[0].message.content  # the app gets the vendor's own object
    [request] = replay_server.requests
    assert request.json["model"] == "gpt-4o-mini"
    [span] = instrumented.aicost_spans()
    attrs = span.attributes
    assert attrs[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert attrs[semconv.AICOST_BUDGET_DECISION] == "downgraded"
    assert attrs[semconv.AICOST_BUDGET_DOWNGRADED_FROM] == "gpt-4o"
    [status] = guard.status()
    assert status.reserved_usd == 0
    assert status.spent_usd == to_usd(to_nanos(D(attrs[semconv.AICOST_COST_TOTAL]))) > 0
    assert _decisions(instrumented) == {"downgraded": 1}


def test_several_calls_settle_exactly_then_the_budget_refuses(instrumented, budgets, openai_client, replay_server):
    # Each gpt-4o-mini call: 9 prompt + 2 completion tokens billed; worst case ~ 100 output tokens reserved.
    guard = budgets(budgets=[Budget(limit_usd="0.0002", window="hour", name="hourly")])
    calls = 0
    with pytest.raises(BudgetExceeded):
        for _ in range(100):
            openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=100)
            calls += 1
    assert calls == len(replay_server.requests) > 1
    costs = [D(s.attributes[semconv.AICOST_COST_TOTAL]) for s in instrumented.aicost_spans()
             if semconv.AICOST_COST_TOTAL in s.attributes]
    [status] = guard.status()
    assert status.spent_usd == sum(costs) <= D("0.0002")
    assert status.reserved_usd == 0


def test_output_cap_policy_is_in_the_request_the_server_receives(instrumented, budgets, openai_client, anthropic_client,
                                                                 replay_server):
    budgets(policies=[Policy(max_output_tokens=64)])
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=4000)
    openai_client.responses.create(model="gpt-4.1-nano", input="Say hello")
    anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=1024, messages=MESSAGES)
    bodies = [r.json for r in replay_server.requests]
    assert bodies[0]["max_completion_tokens"] == 64 and "max_tokens" not in bodies[0]
    assert bodies[1]["max_tokens"] == 64
    assert bodies[2]["max_output_tokens"] == 64
    assert bodies[3]["max_tokens"] == 64


def test_an_output_cap_policy_lowers_every_cap_the_request_sends_and_the_span_shows_the_one_that_governs(
        instrumented, budgets, openai_client, replay_server):
    """A chat request may send both ``max_tokens`` and ``max_completion_tokens``, as arguments or in ``extra_body``,
    which the SDK sends merged over them. A server that takes both reads ``max_completion_tokens`` (vLLM, SGLang),
    so each cap sent above the policy's is lowered where it is sent from, none is added beside one (OpenAI refuses
    a request with both), and the span's gen_ai.request.max_tokens is the one that governs."""
    budgets(policies=[Policy(max_output_tokens=50)])
    extra = {"max_completion_tokens": 400}
    calls = [
        dict(max_tokens=20, max_completion_tokens=500),  # the app's max_completion_tokens governs: lowered to 50
        dict(max_tokens=500, max_completion_tokens=20),  # both under or lowered: 20 governs
        dict(max_tokens=500, extra_body=extra),  # the extra_body's is what is sent: lowered there
        dict(max_completion_tokens=30, extra_body={"max_completion_tokens": 5000}),  # sent over the argument
        dict(extra_body={"max_tokens": 400}),  # a cap of the app's own in extra_body: no second one added
        dict(max_tokens=20, max_completion_tokens=40),  # both under the cap: sent as asked
    ]
    for kwargs in calls:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kwargs)
    assert extra == {"max_completion_tokens": 400}  # the application's own dict is never changed
    sent = [{k: r.json[k] for k in ("max_tokens", "max_completion_tokens") if k in r.json}
            for r in replay_server.requests]
    assert sent == [
        {"max_tokens": 20, "max_completion_tokens": 50},
        {"max_tokens": 50, "max_completion_tokens": 20},
        {"max_tokens": 50, "max_completion_tokens": 50},
        {"max_completion_tokens": 50},
        {"max_tokens": 50},
        {"max_tokens": 20, "max_completion_tokens": 40},
    ]
    spans = instrumented.aicost_spans()
    assert [s.attributes.get(semconv.GEN_AI_REQUEST_MAX_TOKENS) for s in spans] == [50, 20, 50, 50, 50, 40]
    assert [s.attributes.get(semconv.AICOST_POLICY_MAX_TOKENS_FROM) for s in spans] == [
        500, None, 400, 5000, 400, None]


def test_a_cap_sent_as_a_whole_float_is_a_cap_and_one_that_is_no_count_is_left_as_the_app_sent_it(
        instrumented, budgets, openai_client, replay_server, caplog):
    """JSON has one number type: ``max_tokens=500.0`` is a cap of 500 to the vendor, so it is lowered (to an int) or
    kept like one, and no second cap is added beside it (OpenAI refuses ``max_tokens`` with
    ``max_completion_tokens``). A cap that is no count (a fraction, a bool, infinity) is not reinterpreted: the
    policy leaves the request as the application made it, says why on the span and logs it once, without the
    value."""
    from aicost import _log

    budgets(policies=[Policy(max_output_tokens=50)])
    calls = [
        dict(max_tokens=500.0),  # lowered, written as an int
        dict(max_tokens=20.0),  # under the cap: sent as asked
        dict(extra_body={"max_completion_tokens": 500.0}),  # lowered where it is sent from
        dict(max_tokens=500.5),  # no count: left alone
        dict(max_tokens=True),
        dict(extra_body={"max_completion_tokens": 20.5}),
        dict(max_tokens=500.5),  # logged once
    ]
    for key in [k for k in _log._seen if "cap_not_applied" in k]:
        _log.forget(key)
    with caplog.at_level("WARNING", logger="aicost"):
        for kwargs in calls:
            openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kwargs)
        with pytest.raises(ValueError):  # the SDK's own refusal to send infinity, as without aicost
            openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=float("inf"))
    sent = [{k: r.json[k] for k in ("max_tokens", "max_completion_tokens") if k in r.json}
            for r in replay_server.requests]
    assert sent == [{"max_tokens": 50}, {"max_tokens": 20}, {"max_completion_tokens": 50}, {"max_tokens": 500.5},
                    {"max_tokens": True}, {"max_completion_tokens": 20.5}, {"max_tokens": 500.5}]
    assert type(sent[0]["max_tokens"]) is int and type(sent[2]["max_completion_tokens"]) is int
    spans = instrumented.aicost_spans()
    assert [s.attributes.get(semconv.GEN_AI_REQUEST_MAX_TOKENS) for s in spans] == [50, 20, 50] + [None] * 5
    assert [s.attributes.get(semconv.AICOST_POLICY_MAX_TOKENS_FROM) for s in spans] == [500, None, 500] + [None] * 5
    not_a_count = "{} is sent as a {} that is not a positive whole number of tokens".format
    assert [s.attributes.get(semconv.AICOST_POLICY_CAP_NOT_APPLIED) for s in spans] == [None, None, None] + [
        not_a_count("max_tokens", "float"), not_a_count("max_tokens", "bool"),
        not_a_count("max_completion_tokens", "float"), not_a_count("max_tokens", "float"),
        not_a_count("max_tokens", "float")]
    logged = [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()]
    assert len(logged) == 3 and not any(v in m for m in logged for v in ("500.5", "20.5", "True", "inf"))


def test_a_cap_sent_as_a_whole_float_is_what_the_budget_reserves_for(instrumented, budgets, openai_client,
                                                                   replay_server):
    budgets(budgets=[Budget(limit_usd="1", name="day")])
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=500)
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=500.0)
    spans = instrumented.aicost_spans()
    reserved = [s.attributes[semconv.AICOST_BUDGET_RESERVED_USD] for s in spans]
    assert reserved[0] == reserved[1]
    assert [s.attributes.get(semconv.GEN_AI_REQUEST_MAX_TOKENS) for s in spans] == [500, 500]


def test_an_anthropic_cap_in_extra_body_is_the_one_lowered_and_shown(instrumented, budgets, anthropic_client,
                                                                      replay_server):
    budgets(policies=[Policy(max_output_tokens=50)])
    anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=1024, messages=MESSAGES,
                                     extra_body={"max_tokens": 800})
    [request] = replay_server.requests
    assert request.json["max_tokens"] == 50
    [span] = instrumented.aicost_spans()
    assert span.attributes[semconv.GEN_AI_REQUEST_MAX_TOKENS] == 50
    assert span.attributes[semconv.AICOST_POLICY_MAX_TOKENS_FROM] == 800


def test_without_a_policy_the_span_shows_the_cap_sent_from_extra_body(instrumented, openai_client, anthropic_client,
                                                                      replay_server):
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=500,
                                          extra_body={"max_tokens": 400})
    anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=1024, messages=MESSAGES,
                                     extra_body={"max_tokens": 800})
    assert [r.json["max_tokens"] for r in replay_server.requests] == [400, 800]
    assert [s.attributes.get(semconv.GEN_AI_REQUEST_MAX_TOKENS) for s in instrumented.aicost_spans()] == [400, 800]


def test_the_request_safety_net_sends_the_capped_and_downgraded_request(instrumented, budgets, openai_client,
                                                                        anthropic_client, replay_server):
    """A call that reaches the SDK's ``request()`` without a patched method (a direct ``client.post``) is sent as
    the guard changed it, like any other; the caller's own body is left as it was."""
    import anthropic
    from openai.types.chat import ChatCompletion

    budgets(policies=[Policy(max_output_tokens=64)],
            budgets=[Budget(limit_usd="0.0005", action="downgrade", downgrade_to="gpt-4o-mini", name="chat")])
    # gpt-4o capped to 64 output tokens at $10 / Mtok: $0.00064 worst case > $0.0005, so downgraded too
    body = {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 4000}
    openai_client.post("/chat/completions", body=body, cast_to=ChatCompletion)
    anthropic_client.post("/v1/messages", cast_to=anthropic.types.Message,
                          body={"model": "claude-3-5-haiku-20241022", "max_tokens": 1024, "messages": MESSAGES})
    sent = [r.json for r in replay_server.requests]
    assert (sent[0]["model"], sent[0]["max_tokens"]) == ("gpt-4o-mini", 64)
    assert sent[1]["max_tokens"] == 64 and "stream" not in sent[0] and "stream" not in sent[1]
    assert body == {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 4000}
    spans = instrumented.aicost_spans()
    assert spans[0].attributes[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert spans[0].attributes[semconv.AICOST_BUDGET_DECISION] == "downgraded"


def test_the_request_safety_net_lowers_a_cap_sent_in_extra_json(instrumented, budgets, openai_client, replay_server):
    """``client.post(..., options={"extra_json": ...})``: the SDK sends extra_json merged over the body, so a cap
    there is the one the vendor reads; it is lowered there, in a copy (the caller's options stay as they were)."""
    from openai.types.chat import ChatCompletion

    budgets(policies=[Policy(max_output_tokens=64)])
    extra = {"max_completion_tokens": 5000}
    openai_client.post("/chat/completions", cast_to=ChatCompletion, options={"extra_json": extra},
                       body={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 4000})
    [request] = replay_server.requests
    assert (request.json["max_tokens"], request.json["max_completion_tokens"]) == (64, 64)
    assert "extra_body" not in request.json and extra == {"max_completion_tokens": 5000}
    [span] = instrumented.aicost_spans()
    assert span.attributes[semconv.GEN_AI_REQUEST_MAX_TOKENS] == 64
    assert span.attributes[semconv.AICOST_POLICY_MAX_TOKENS_FROM] == 5000


async def test_the_async_request_safety_net_sends_the_capped_request(instrumented, budgets, async_openai_client,
                                                                     replay_server):
    from openai.types.chat import ChatCompletion

    budgets(policies=[Policy(max_output_tokens=64)])
    await async_openai_client.post("/chat/completions", cast_to=ChatCompletion,
                                   body={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 4000})
    [request] = replay_server.requests
    assert request.json["max_tokens"] == 64


def test_model_policy_refuses_before_sending(instrumented, budgets, openai_client, replay_server):
    budgets(policies=[Policy(deny_models=["gpt-4o"], unless={"team": "research"}, name="no-4o")])
    with pytest.raises(PolicyViolation, match="no-4o"):
        openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert replay_server.requests == []
    with aicost.attribute(team="research"):
        openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(replay_server.requests) == 1
    blocked = [s for s in instrumented.aicost_spans() if s.attributes.get(semconv.AICOST_POLICY_RULE) == "no-4o"]
    assert len(blocked) == 1


def test_stream_closed_early_settles_and_releases(instrumented, budgets, openai_client, replay_server):
    guard = budgets(budgets=[Budget(limit_usd="1", name="s")])
    stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=500,
                                                   stream=True, stream_options={"include_usage": True})
    assert guard.status()[0].reserved_usd > 0  # held while the stream is open
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()
    [status] = guard.status()
    assert status.reserved_usd == 0


async def test_async_client_is_refused_too(instrumented, budgets, async_openai_client, async_anthropic_client,
                                           replay_server):
    budgets(budgets=[Budget(limit_usd="0.00001", name="tiny")])
    with pytest.raises(BudgetExceeded):
        await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=100)
    with pytest.raises(BudgetExceeded):
        await async_anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=100,
                                                     messages=MESSAGES)
    assert replay_server.requests == []


async def test_async_stream_settles_to_its_cost_when_exhausted(instrumented, budgets, async_openai_client,
                                                                replay_server):
    guard = budgets(budgets=[Budget(limit_usd="1", name="s")])
    stream = await async_openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=500, stream=True, stream_options={"include_usage": True})
    assert guard.status()[0].reserved_usd > 0
    chunks = [chunk async for chunk in stream]
    assert chunks
    [status] = guard.status()
    [span] = [s for s in instrumented.aicost_spans() if semconv.AICOST_COST_TOTAL in s.attributes]
    assert status.reserved_usd == 0
    assert status.spent_usd == to_usd(to_nanos(D(span.attributes[semconv.AICOST_COST_TOTAL]))) > 0


async def test_100_concurrent_async_sdk_calls_race_one_budget(instrumented, budgets, async_openai_client,
                                                              replay_server):
    import asyncio

    guard = budgets(budgets=[Budget(limit_usd="0.0004", name="race")])  # room for 6 worst cases of gpt-4o-mini
    refusals: list[BudgetExceeded] = []

    async def call() -> bool:
        try:
            await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=100)
            return True
        except BudgetExceeded as e:
            refusals.append(e)
            return False

    outcomes = await asyncio.wait_for(asyncio.gather(*(call() for _ in range(100))), timeout=120)
    sent = sum(outcomes)
    assert refusals, "the race should have been lost by some calls"
    worst = refusals[0].requested_usd
    assert sent == len(replay_server.requests)  # a refused call never reached the server
    assert sent >= int(D("0.0004") / worst)  # at least as many as fit side by side
    assert len(refusals) == 100 - sent
    for e in refusals:  # refused only when it really did not fit at that moment
        assert e.spent_usd + e.reserved_usd + e.requested_usd > e.limit_usd
    costs = [D(s.attributes[semconv.AICOST_COST_TOTAL]) for s in instrumented.aicost_spans()
             if semconv.AICOST_COST_TOTAL in s.attributes]
    [status] = guard.status()
    assert len(costs) == sent and status.reserved_usd == 0
    assert status.spent_usd == to_usd(sum(to_nanos(c) for c in costs)) <= D("0.0004")



def test_a_call_that_names_no_model_is_refused_as_of_unknown_price(instrumented, budgets, openai_client,
                                                                    replay_server):
    """responses.create(prompt=...) names no model (the stored prompt chooses it) and is new, paid work: it was
    held at $0 whatever on_unknown_price said, and one call of gpt-4.1 spent $0.802 against a $0.01 budget. It is
    now a call of unknown price: refused by default, before anything is sent, saying why."""
    from tests.vendor_server import openai_responses_reply

    guard = budgets(budgets=[Budget(limit_usd="0.01", name="tiny")])  # on_unknown_price='refuse'
    replay_server.enqueue(openai_responses_reply(model="gpt-4.1-2025-04-14", output_tokens=100_000, input_tokens=1000))
    with pytest.raises(PolicyViolation, match="names no model") as err:
        openai_client.responses.create(prompt={"id": "pmpt_abc"}, input="hi")
    assert err.value.rule == "unknown_price" and "on_unknown_price='allow'" in str(err.value)
    assert replay_server.requests == [] and guard.status()[0].spent_usd == 0


def test_with_allow_a_call_that_names_no_model_goes_ahead_and_is_charged_what_it_cost(
        instrumented, budgets, openai_client, replay_server):
    from tests.vendor_server import openai_responses_reply

    guard = budgets(budgets=[Budget(limit_usd="0.01", name="tiny")], on_unknown_price="allow")
    replay_server.enqueue(openai_responses_reply(model="gpt-4.1-2025-04-14", output_tokens=100_000, input_tokens=1000))
    openai_client.responses.create(prompt={"id": "pmpt_abc"}, input="hi")
    assert guard.status()[0].spent_usd == D("0.802")  # 1,000 x $2/M + 100,000 x $8/M
    with pytest.raises(BudgetExceeded):  # and the spent budget refuses the next one
        openai_client.responses.create(prompt={"id": "pmpt_abc"}, input="hi")


def test_resuming_a_background_response_holds_nothing_and_is_charged_what_it_cost(
        instrumented, budgets, openai_client, replay_server):
    """``responses.retrieve(id, stream=True)`` continues work an earlier call started: no model, nothing new to
    price ahead, so it is not refused as of unknown price, even with on_unknown_price='refuse'."""
    from tests.vendor_server import openai_responses_stream_reply

    guard = budgets(budgets=[Budget(limit_usd="0.01", name="tiny")])
    replay_server.enqueue(openai_responses_stream_reply(12, input_tokens=40))
    events = list(openai_client.responses.retrieve("resp_replay", stream=True))
    assert events[-1].type == "response.completed"
    span = [s for s in instrumented.cost_spans()][-1]
    assert span.attributes[semconv.AICOST_BUDGET_RESERVED_USD] == "0"
    assert guard.status()[0].spent_usd == D(span.attributes[semconv.AICOST_COST_TOTAL]) > 0


def _listened():
    from aicost import hooks

    results = []
    hooks.add_listener(results.append)
    return results, lambda: hooks.remove_listener(results.append)


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_a_stream_dropped_unread_is_finished_and_settles(instrumented, budgets, openai_client, anthropic_client,
                                                         replay_server, vendor):
    """A stream returned but never iterated, then dropped: its watching generator had never started, so closing it
    ran nothing: no span, no listener call, and the reservation held for its lease (an hour). The request was
    sent, so the call is finished as closed, estimated from the request, and settled."""
    import gc

    guard = budgets(budgets=[Budget(limit_usd="1", name="s")])
    results, stop = _listened()
    try:
        if vendor == "openai":
            stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=100,
                                                           stream=True)
        else:
            stream = anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=100,
                                                      messages=MESSAGES, stream=True)
        assert guard.status()[0].reserved_usd > 0
        del stream
        gc.collect()
        _until(lambda: results)  # reached by the collector: finished on aicost's worker thread (aicost._gc)
    finally:
        stop()
    [status] = guard.status()
    assert status.reserved_usd == 0 and status.spent_usd > 0
    [result] = results
    assert result.usage.estimated is True and result.usage.output_tokens == 0
    [span] = instrumented.cost_spans()
    assert span.attributes[semconv.AICOST_STREAM_ENDED_BY] == "closed"
    assert span.attributes[semconv.AICOST_STREAM_CHUNKS] == 0


async def test_an_async_stream_dropped_unread_is_finished_and_settles(instrumented, budgets, async_openai_client,
                                                                      replay_server):
    import asyncio
    import gc

    guard = budgets(budgets=[Budget(limit_usd="1", name="s")])
    results, stop = _listened()
    try:
        stream = await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                                   max_tokens=100, stream=True)
        assert guard.status()[0].reserved_usd > 0
        del stream
        gc.collect()
        for _ in range(100):  # the event loop closes a collected async generator in a task of its own
            if results:
                break
            await asyncio.sleep(0.01)
    finally:
        stop()
    [status] = guard.status()
    assert status.reserved_usd == 0 and status.spent_usd > 0
    [result] = results
    assert result.usage.estimated is True
    [span] = instrumented.cost_spans()
    assert span.attributes[semconv.AICOST_STREAM_ENDED_BY] == "closed"


def _until(condition, seconds: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def _reserved_becomes_zero(guard, seconds: float = 10.0):
    import time

    deadline = time.monotonic() + seconds
    while guard.status()[0].reserved_usd and time.monotonic() < deadline:
        time.sleep(0.01)
    return guard.status()[0].reserved_usd


def test_anthropic_stream_helper_that_raises_settles_its_reservation(instrumented, budgets, anthropic_client,
                                                                     replay_server):
    """messages.stream() reserves before the SDK builds the request: if the SDK's stream() itself raises, the app
    gets the same exception and the reservation is settled (it was held for its lease)."""
    guard = budgets(budgets=[Budget(limit_usd="1", name="s")])
    with pytest.raises(TypeError, match="output_format"):
        anthropic_client.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=1000, messages=MESSAGES,
                                         output_format="json")
    assert replay_server.requests == []
    [status] = guard.status()
    assert status.reserved_usd == 0 and status.spent_usd == 0
    [span] = instrumented.aicost_spans()
    assert span.attributes[semconv.ERROR_TYPE] == "TypeError"


def test_anthropic_stream_manager_never_entered_gives_its_reservation_back(instrumented, budgets, anthropic_client,
                                                                          replay_server):
    import gc

    guard = budgets(budgets=[Budget(limit_usd="1", name="s")])
    manager = anthropic_client.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=1000,
                                               messages=MESSAGES)
    assert guard.status()[0].reserved_usd > 0
    del manager
    gc.collect()
    assert _reserved_becomes_zero(guard) == 0
    assert guard.status()[0].spent_usd == 0 and replay_server.requests == []
    with anthropic_client.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=1000,
                                          messages=MESSAGES) as stream:
        stream.get_final_message()  # an entered manager is the call, as before
    [status] = guard.status()
    assert status.reserved_usd == 0 and status.spent_usd > 0


async def test_async_anthropic_stream_manager_never_entered(instrumented, budgets, async_anthropic_client,
                                                            replay_server):
    """Settled too, and the 'never awaited' warning names the SDK's coroutine, as without aicost (it named an
    aicost function)."""
    import gc
    import warnings

    guard = budgets(budgets=[Budget(limit_usd="1", name="s")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manager = async_anthropic_client.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=1000,
                                                         messages=MESSAGES)
        assert guard.status()[0].reserved_usd > 0
        del manager
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == [
        "coroutine 'AsyncAPIClient.post' was never awaited"]
    assert _reserved_becomes_zero(guard) == 0
    assert replay_server.requests == []


def test_the_span_says_the_output_cap_that_was_sent_and_keeps_the_one_asked_for(
        instrumented, budgets, openai_client, anthropic_client, replay_server):
    """A policy that lowers the output cap changes what the vendor receives, so the span's gen_ai.request.max_tokens
    is the lowered cap (as gen_ai.request.model is the downgraded model); the application's own cap is kept in
    aicost.policy.max_tokens_from, as a downgrade keeps its model in aicost.budget.downgraded_from."""
    budgets(policies=[Policy(max_output_tokens=50)])
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=500)
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=500)
    openai_client.responses.create(model="gpt-4.1-nano", input="Say hello", max_output_tokens=500)
    anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=500, messages=MESSAGES)
    with anthropic_client.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=500,
                                          messages=MESSAGES) as stream:
        stream.get_final_message()
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # no cap asked: the policy's
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)  # under the cap
    sent = [r.json for r in replay_server.requests]
    assert [b.get("max_tokens", b.get("max_completion_tokens", b.get("max_output_tokens"))) for b in sent] == [
        50, 50, 50, 50, 50, 50, 20]
    spans = instrumented.aicost_spans()
    assert [s.attributes.get(semconv.GEN_AI_REQUEST_MAX_TOKENS) for s in spans] == [50, 50, 50, 50, 50, 50, 20]
    assert [s.attributes.get(semconv.AICOST_POLICY_MAX_TOKENS_FROM) for s in spans] == [
        500, 500, 500, 500, 500, None, None]
    assert [s.attributes.get(semconv.AICOST_POLICY_MAX_OUTPUT_TOKENS) for s in spans] == [
        50, 50, 50, 50, 50, 50, None]
