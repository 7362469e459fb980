"""Attribution end to end: real OpenAI / Anthropic SDKs over real HTTP to the loopback vendor, instrumented.

Every LLM span must carry the attribution of the code that made the call, under hundreds of concurrent threads
and tasks, and a unit of work must roll up exactly the spans that belong to it.
"""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import pytest

from aicost import semconv
from aicost.attribution import ContextExecutor, attribute, feature, set_outcome

R = semconv.AICOST_ROLLUP_PREFIX
MSG = [{"role": "user", "content": "hello there"}]


def llm_spans(instrumented):
    return instrumented.cost_spans()


def span_cost(span) -> Decimal:
    return Decimal(span.attributes[semconv.AICOST_COST_TOTAL])


def test_every_span_carries_its_own_attribution_across_300_threads(instrumented, openai_client):
    n = 300
    barrier = threading.Barrier(n, timeout=60)
    gate = threading.Semaphore(8)  # the loopback server's accept backlog is small; the scopes are all open
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with attribute(team=f"team-{i % 6}", user=f"user-{i}", shard=str(i % 3)):
                barrier.wait()  # all 300 scopes are open at once
                with gate:
                    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert failures == []
    spans = llm_spans(instrumented)
    assert len(spans) == n
    seen = set()
    for span in spans:
        a = span.attributes
        i = int(a[semconv.AICOST_USER].split("-")[1])
        # a leak would pair one thread's user with another thread's team or tag
        assert a[semconv.AICOST_TEAM] == f"team-{i % 6}"
        assert a["aicost.tag.shard"] == str(i % 3)
        seen.add(i)
    assert seen == set(range(n))


async def test_every_span_carries_its_own_attribution_across_300_tasks(instrumented, async_openai_client,
                                                                      async_anthropic_client):
    n = 300
    # All 300 scopes are open at once; the HTTP calls are gated so the loopback server's accept backlog holds.
    gate = asyncio.Semaphore(8)

    async def handler(i: int) -> None:
        with attribute(customer=f"cust-{i}", team=f"team-{i % 4}"):
            await asyncio.sleep(0)
            async with gate:
                await call(i)

    async def call(i: int) -> None:
        if i % 2:
            await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        else:
            await async_anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=16,
                                                         messages=MSG)

    with attribute(feature="batch"):
        await asyncio.gather(*(handler(i) for i in range(n)))
    spans = llm_spans(instrumented)
    assert len(spans) == n
    customers = set()
    for span in spans:
        a = span.attributes
        i = int(a[semconv.AICOST_CUSTOMER].split("-")[1])
        assert a[semconv.AICOST_TEAM] == f"team-{i % 4}"
        assert a[semconv.AICOST_FEATURE] == "batch"
        assert a[semconv.GEN_AI_PROVIDER_NAME] == ("openai" if i % 2 else "anthropic")
        customers.add(i)
    assert customers == set(range(n))


def test_unit_rolls_up_exactly_its_own_calls_and_streams(instrumented, openai_client, anthropic_client):
    with feature("summarize", team="docs") as unit:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                       stream_options={"include_usage": True})
        for _ in stream:
            pass  # finishes inside the unit: counted
        with anthropic_client.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=16, messages=MSG) as s:
            s.until_done()
        late = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                     stream_options={"include_usage": True})
    for _ in late:
        pass  # started inside, finished after the unit ended: its span exists, the unit's rollup is closed
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)  # outside: not the unit's

    (unit_span,) = [s for s in instrumented.spans() if s.name == "aicost.feature summarize"]
    inside = [s for s in llm_spans(instrumented)
              if s.parent is not None and s.parent.span_id == unit_span.context.span_id]
    assert len(inside) == 4  # the late stream's span is still a child of the unit in the trace
    finished_inside = [s for s in inside if s.end_time <= unit_span.end_time]
    assert len(finished_inside) == 3
    a = unit_span.attributes
    assert a[R + "calls"] == 3
    assert Decimal(a[R + "cost.total_usd"]) == sum(span_cost(s) for s in finished_inside)
    assert a[R + "usage.input_tokens"] == sum(s.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] for s in finished_inside)
    assert a[R + "usage.output_tokens"] == sum(s.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS]
                                              for s in finished_inside)
    # The live handle keeps counting calls that finish later; the span recorded what had finished at the end.
    late_span = next(s for s in inside if s.end_time > unit_span.end_time)
    assert unit.cost_usd == Decimal(a[R + "cost.total_usd"]) + span_cost(late_span)
    for s in inside:
        assert s.attributes[semconv.AICOST_FEATURE] == "summarize" and s.attributes[semconv.AICOST_TEAM] == "docs"
    # Summing the per-call cost attribute over ALL spans counts every call once: the unit adds nothing.
    all_cost = sum(Decimal(str(s.attributes[semconv.GEN_AI_USAGE_COST])) for s in instrumented.spans()
                   if semconv.GEN_AI_USAGE_COST in s.attributes)
    assert all_cost == sum(span_cost(s) for s in llm_spans(instrumented))
    assert len(llm_spans(instrumented)) == 5


async def test_async_generator_feature_streams_and_records_outcome(instrumented, async_openai_client):
    @feature("stream_answer")
    async def stream_answer(question: str):
        stream = await async_openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}], stream=True,
            stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content
        set_outcome("answered")

    pieces = [p async for p in stream_answer("why is the sky blue")]
    assert pieces
    (unit_span,) = [s for s in instrumented.spans() if s.name == "aicost.feature stream_answer"]
    (llm,) = llm_spans(instrumented)
    assert unit_span.attributes[semconv.AICOST_OUTCOME] == "answered"
    assert unit_span.attributes[R + "cost.total_usd"] == llm.attributes[semconv.AICOST_COST_TOTAL]
    assert llm.attributes[semconv.AICOST_FEATURE] == "stream_answer"


def test_thread_pool_inside_a_unit_with_context_executor(instrumented, openai_client):
    with feature("fanout", team="search") as unit:
        with ContextExecutor(max_workers=8) as pool:
            futures = [pool.submit(openai_client.chat.completions.create, model="gpt-4o-mini", messages=MSG)
                       for _ in range(16)]
            for f in futures:
                f.result()
    spans = llm_spans(instrumented)
    assert len(spans) == 16 and unit.calls == 16
    assert unit.cost_usd == sum(span_cost(s) for s in spans)
    assert {s.attributes[semconv.AICOST_TEAM] for s in spans} == {"search"}


def test_failed_vendor_call_inside_unit_marks_outcome_failed(instrumented, openai_client, replay_server):
    from vendor_server import openai_error_reply

    replay_server.enqueue(openai_error_reply(400, "bad request"))
    import openai

    with pytest.raises(openai.BadRequestError):
        with feature("summarize"):
            openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    (unit_span,) = [s for s in instrumented.spans() if s.name == "aicost.feature summarize"]
    assert unit_span.attributes[semconv.AICOST_OUTCOME] == "failed"
    assert unit_span.attributes[semconv.ERROR_TYPE] == "BadRequestError"
    assert unit_span.attributes[R + "errors"] == 1
