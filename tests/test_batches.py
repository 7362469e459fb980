"""Batch APIs: OpenAI ``batches`` and Anthropic ``messages.batches``, billed from their results at batch rates.

The real SDKs over real HTTP against the loopback server: the create call carries the attribution (OpenAI: in the
batch's metadata, next to the caller's own; Anthropic: remembered with the batch id), reading the results records
one costed call per succeeded request (errored / expired / canceled ones bill nothing), priced at the catalog's
batch rates, attributed to whoever submitted the batch, and re-reading them counts nothing twice (spans and metrics
in the process, ledger rows anywhere).
"""

from __future__ import annotations

import calendar
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

import aicost
from aicost import instrumentation, pricing
from aicost import semconv as s
from aicost.integrations import anthropic as anthropic_integration
from aicost.integrations import openai as openai_integration
from aicost.ledger import open_store
from aicost.ledger import writer as ledger_writer
from aicost.ledger.exporter import rows_from_span
from aicost.usage import Usage

from batch_helpers import (anthropic_batch, anthropic_succeeded, anthropic_unbilled, jsonl_reply, openai_batch,
                           openai_chat_result, openai_expired_result, openai_failed_result)
from vendor_server import Reply

DONE = int(time.time()) - 3600  # when the vendor processed the requests: an hour ago
WINDOW = (datetime.now(timezone.utc) - timedelta(days=2), datetime.now(timezone.utc) + timedelta(days=1))
_counter = iter(range(10**6))


def _new_id(prefix: str) -> str:
    """Batch and result ids unique to each test: the process remembers which results it has recorded."""
    return f"{prefix}_{time.time_ns()}_{next(_counter)}"


def _forget_recorded_results() -> None:
    """What another process (a fresh worker reading the same results) would start from."""
    instrumentation._recorded.clear()
    openai_integration._BATCHES_SEEN.clear()
    anthropic_integration._BATCHES_SEEN.clear()


def _batch_spans(telemetry, batch_id):
    """The costed spans of a batch's results (an unknown price is a costed span too: it says so)."""
    return [sp for sp in telemetry.spans()
            if sp.attributes.get(s.AICOST_BATCH_ID) == batch_id and s.AICOST_PRICE_KNOWN in sp.attributes]


def _expected(provider, model, **usage):
    return pricing.price_call(provider, model, Usage(**usage), service_tier="batch").total


def _cost_metric_total(telemetry) -> Decimal:
    points = telemetry.metrics().get(s.METRIC_COST, [])
    return sum((Decimal(str(p.value)) for p in points), Decimal(0))


# ------------------------------------------------------------------------------------------------ OpenAI
def _openai_create(client, server, batch_id, **kwargs):
    server.enqueue(Reply.json(openai_batch(batch_id)))
    client.batches.create(input_file_id="file-in", endpoint="/v1/chat/completions", completion_window="24h",
                          **kwargs)
    return server.requests[-1].json.get("metadata")


def _openai_completed(server, batch_id, metadata, output_file):
    server.enqueue(Reply.json(openai_batch(batch_id, status="completed", metadata=metadata,
                                           output_file_id=output_file, completed_at=DONE)))


def test_openai_create_adds_the_attribution_next_to_the_callers_metadata(instrumented, openai_client, replay_server):
    with aicost.feature("nightly-eval", team="search", customer="acme", region="eu") as unit:
        sent = _openai_create(openai_client, replay_server, _new_id("batch"), metadata={"job": "eval-7"})
        run_id = unit.run_id
    assert sent["job"] == "eval-7"  # the caller's own key, unchanged
    carried = json.loads(sent["aicost"])
    assert carried == {"team": "search", "feature": "nightly-eval", "customer": "acme", "tag.region": "eu",
                       "run": run_id}
    # Without metadata of the caller's: aicost's key alone. Without any attribution: nothing is added at all.
    with aicost.attribute(team="search"):
        assert _openai_create(openai_client, replay_server, _new_id("batch")) == {"aicost": '{"team":"search"}'}
    assert _openai_create(openai_client, replay_server, _new_id("batch")) is None
    # The create call has its own span, unbilled.
    create_spans = [sp for sp in instrumented.spans() if sp.attributes.get(s.AICOST_ENDPOINT) == "openai.batches.create"]
    assert len(create_spans) == 3
    assert all(sp.attributes[s.AICOST_BILLABLE] is False and s.GEN_AI_USAGE_COST not in sp.attributes
               for sp in create_spans)
    assert create_spans[0].attributes[s.AICOST_TEAM] == "search"


def test_openai_metadata_that_leaves_no_room_is_sent_as_the_caller_wrote_it(instrumented, openai_client,
                                                                            replay_server, caplog):
    full = {f"k{i}": "v" for i in range(16)}
    own = {"aicost": '{"team":"original-submitter"}', "job": "resubmit"}
    with aicost.attribute(team="search"), caplog.at_level(logging.WARNING, logger="aicost"):
        assert _openai_create(openai_client, replay_server, _new_id("batch"), metadata=full) == full
        assert _openai_create(openai_client, replay_server, _new_id("batch"), metadata=full) == full
        assert _openai_create(openai_client, replay_server, _new_id("batch"), metadata=own) == own
    warnings = [r for r in caplog.records if "no room for aicost's attribution" in r.getMessage()]
    assert len(warnings) == 1  # said once


def test_an_attribution_too_long_for_openais_metadata_is_not_sent_even_without_the_callers_metadata(
        instrumented, openai_client, replay_server):
    """OpenAI refuses a metadata value over 512 characters: aicost's own key must not make the vendor refuse a
    batch the caller wrote correctly, whether or not the caller passed metadata (docs/batches.md)."""
    long = {"team": "t" * 200, "feature": "f" * 200, "customer": "c" * 200}
    with aicost.attribute(**long):
        assert _openai_create(openai_client, replay_server, _new_id("batch")) is None
        assert _openai_create(openai_client, replay_server, _new_id("batch"), metadata=None) is None
        assert _openai_create(openai_client, replay_server, _new_id("batch"), metadata={"job": "x"}) == {"job": "x"}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_openai_results_are_billed_once_each_at_batch_rates_to_the_submitter(
        instrumented, openai_client, async_openai_client, replay_server, tmp_path, is_async):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, meter_provider=instrumented.meter_provider,
                      ledger=url)
    batch_id, output_file = _new_id("batch"), _new_id("file-out")
    ids = [_new_id("batch_req") for _ in range(4)]
    with aicost.attribute(team="search", customer="acme"):
        metadata = _openai_create(openai_client, replay_server, batch_id, metadata={"job": "j1"})
    lines = [openai_chat_result(ids[0], "a", prompt=1000, completion=200, created=DONE),
             openai_failed_result(ids[1], "b"),
             openai_chat_result(ids[2], "c", prompt=3000, completion=50, created=DONE),
             openai_expired_result(ids[3], "d")]

    async def read_results():
        # A different worker scope reads them: the spend is still the submitter's.
        with aicost.attribute(team="batch-worker"):
            _openai_completed(replay_server, batch_id, metadata, output_file)
            replay_server.enqueue(jsonl_reply(lines))
            if is_async:
                batch = await async_openai_client.batches.retrieve(batch_id)
                return await async_openai_client.files.content(batch.output_file_id)
            batch = openai_client.batches.retrieve(batch_id)
            return openai_client.files.content(batch.output_file_id)

    content = await read_results()
    assert content.text.count("\n") == 4  # the caller reads the file as without aicost
    spans = _batch_spans(instrumented, batch_id)
    assert len(spans) == 2  # the 400 and the expired request bill nothing
    expected = {1000: _expected("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=200),
                3000: _expected("openai", "gpt-4o-mini", input_tokens=3000, output_tokens=50)}
    # Half the standard rates (OpenAI's Batch API discount), from the catalog's batch tier.
    standard = pricing.price_call("openai", "gpt-4o-mini", Usage(input_tokens=1000, output_tokens=200)).total
    assert expected[1000] * 2 == standard
    for sp in spans:
        a = sp.attributes
        assert Decimal(a[s.AICOST_COST_TOTAL]) == expected[a[s.GEN_AI_USAGE_INPUT_TOKENS]]
        assert a[s.AICOST_SERVICE_TIER] == "batch"
        assert a[s.AICOST_TEAM] == "search" and a[s.AICOST_CUSTOMER] == "acme"
        assert a[s.AICOST_BATCH_ATTRIBUTION] == "metadata"
        assert a[s.AICOST_ENDPOINT] == "openai.chat.completions.create"
        assert sp.start_time == DONE * 10**9  # dated when the vendor did the work
    total = expected[1000] + expected[3000]
    assert _cost_metric_total(instrumented) == total
    metrics = instrumented.metrics()
    assert sum(p.count for p in metrics[s.METRIC_TOKEN_USAGE]) == 4  # input and output of each result
    # How long the vendor took is unknown: no operation-duration point (a zero would skew latency percentiles).
    assert sum(p.count for p in metrics.get(s.METRIC_OPERATION_DURATION, [])) == 0

    # Read again, here: nothing new. Read again "in another process": spans again, but one ledger row each.
    await read_results()
    assert len(_batch_spans(instrumented, batch_id)) == 2
    assert _cost_metric_total(instrumented) == total
    _forget_recorded_results()
    await read_results()
    assert len(_batch_spans(instrumented, batch_id)) == 4
    assert ledger_writer.active().flush()
    with open_store(url, create=False) as store:
        rows = [r for r in store.rows(*WINDOW) if r.provider == "openai"]
    assert len(rows) == 2
    assert sum(r.cost for r in rows) == total
    assert {r.span_id for r in rows} == {sp.attributes[s.AICOST_RECORD_ID] for sp in spans}
    for row in rows:
        assert (row.team, row.customer, row.service_tier, row.price_known) == ("search", "acme", "batch", True)
        assert row.time == datetime.fromtimestamp(DONE, timezone.utc)
    # The ledger exporter behind a Collector keys the rows the same way: every reading process's span, one row.
    exported = {row.span_id for sp in _batch_spans(instrumented, batch_id) for row in rows_from_span(sp)}
    assert exported == {r.span_id for r in rows}


def test_openai_raw_response_reads_are_recorded_and_streamed_ones_left_alone(instrumented, openai_client,
                                                                             replay_server):
    batch_id, output_file = _new_id("batch"), _new_id("file-out")
    with aicost.attribute(team="search"):
        metadata = _openai_create(openai_client, replay_server, batch_id)
    _openai_completed(replay_server, batch_id, metadata, output_file)
    openai_client.batches.retrieve(batch_id)
    lines = [openai_chat_result(_new_id("batch_req"), "a", created=DONE)]
    replay_server.enqueue(jsonl_reply(lines))
    raw = openai_client.files.with_raw_response.content(output_file)
    assert raw.parse().text.count("\n") == 1
    (span,) = _batch_spans(instrumented, batch_id)
    assert span.attributes[s.AICOST_TEAM] == "search"
    replay_server.enqueue(jsonl_reply([openai_chat_result(_new_id("batch_req"), "b", created=DONE)]))
    with openai_client.files.with_streaming_response.content(output_file) as streamed:
        assert streamed.read().count(b"\n") == 1
    assert len(_batch_spans(instrumented, batch_id)) == 1  # not read by aicost: the caller streams the body


def test_openai_feature_run_travels_with_the_batch(instrumented, openai_client, replay_server, tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=url)
    batch_id, output_file = _new_id("batch"), _new_id("file-out")
    with aicost.feature("nightly-eval", team="search") as unit:
        metadata = _openai_create(openai_client, replay_server, batch_id)
    _forget_recorded_results()  # results read by another process, which knows the batch only from the vendor
    _openai_completed(replay_server, batch_id, metadata, output_file)
    replay_server.enqueue(jsonl_reply([openai_chat_result(_new_id("batch_req"), "a", created=DONE)]))
    openai_client.files.content(openai_client.batches.retrieve(batch_id).output_file_id)
    assert ledger_writer.active().flush()
    with open_store(url, create=False) as store:
        (row,) = [r for r in store.rows(*WINDOW) if r.kind == "call"]
    assert (row.feature, row.team, row.run_id) == ("nightly-eval", "search", unit.run_id)
    # On the result's span too, so the ledger exporter behind a Collector files it under the submitting run.
    (span,) = _batch_spans(instrumented, batch_id)
    assert span.attributes[s.AICOST_RUN_ID] == unit.run_id
    assert [r.run_id for r in rows_from_span(span)] == [unit.run_id]


def test_openai_unknown_model_and_invalid_usage_are_unknown_never_zero(instrumented, openai_client, replay_server,
                                                                       tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=url)
    batch_id, output_file = _new_id("batch"), _new_id("file-out")
    with aicost.attribute(team="search"):
        metadata = _openai_create(openai_client, replay_server, batch_id)
    _openai_completed(replay_server, batch_id, metadata, output_file)
    replay_server.enqueue(jsonl_reply([
        openai_chat_result(_new_id("batch_req"), "a", model="my-private-model-v9", created=DONE),
        openai_chat_result(_new_id("batch_req"), "b", usage={"prompt_tokens": -5, "completion_tokens": 2},
                           created=DONE)]))
    openai_client.files.content(openai_client.batches.retrieve(batch_id).output_file_id)
    spans = {sp.attributes.get(s.GEN_AI_RESPONSE_MODEL): sp.attributes for sp in _batch_spans(instrumented, batch_id)}
    assert spans["my-private-model-v9"][s.AICOST_PRICE_KNOWN] is False
    assert s.AICOST_COST_TOTAL not in spans["my-private-model-v9"]
    invalid = spans["gpt-4o-mini-2024-07-18"]
    assert invalid[s.AICOST_PRICE_KNOWN] is False
    assert invalid[s.AICOST_USAGE_INVALID_REASON] == "prompt_tokens is negative"
    assert ledger_writer.active().flush()
    with open_store(url, create=False) as store:
        rows = [r for r in store.rows(*WINDOW) if r.kind == "call"]
    assert len(rows) == 2 and all(r.cost is None and not r.price_known for r in rows)


def test_openai_output_file_of_a_batch_this_process_never_saw_is_billed_to_the_reader(
        instrumented, openai_client, replay_server):
    output_file = _new_id("file-out")
    replay_server.enqueue(jsonl_reply([openai_chat_result(_new_id("batch_req"), "a", created=DONE)]))
    with aicost.attribute(team="reader-team"):
        openai_client.files.content(output_file)
    (span,) = [sp for sp in instrumented.cost_spans() if sp.attributes.get(s.AICOST_BATCH_ATTRIBUTION) == "reader"
               and sp.start_time == DONE * 10**9]
    assert span.attributes[s.AICOST_TEAM] == "reader-team"
    assert span.attributes[s.AICOST_SERVICE_TIER] == "batch"
    assert len(replay_server.requests) == 1  # no lookup of the batch behind the file: only the file was fetched


# ------------------------------------------------------------------------------------------------ Anthropic
def _anthropic_create(client, server, batch_id):
    server.enqueue(Reply.json(anthropic_batch(batch_id)))
    client.messages.batches.create(requests=[
        {"custom_id": c, "params": {"model": "claude-sonnet-4-5", "max_tokens": 64,
                                    "messages": [{"role": "user", "content": "hi"}]}} for c in "abcd"])


def _anthropic_results(server, batch_id, lines, **batch):
    url = f"{server.anthropic_base_url}/v1/messages/batches/{batch_id}/results"
    server.enqueue(Reply.json(anthropic_batch(batch_id, ended=True, results_url=url, **batch)),
                   jsonl_reply(lines, content_type="application/binary"))


def test_anthropic_results_are_dated_exactly_when_the_batch_ended(instrumented, anthropic_client, replay_server,
                                                                    tmp_path):
    """The batch's ended_at, to the microsecond, is the results' start time and ledger day: converted through
    integers (a float of seconds is off by tens of nanoseconds, and can round the last microsecond of a day into
    the next)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, meter_provider=instrumented.meter_provider,
                      ledger=url)
    batch_id = _new_id("msgbatch")
    _anthropic_create(anthropic_client, replay_server, batch_id)
    _anthropic_results(replay_server, batch_id, [anthropic_succeeded("a")], ended_at="2026-11-30T23:59:59.999999Z")
    assert [r.custom_id for r in anthropic_client.messages.batches.results(batch_id)] == ["a"]
    (span,) = _batch_spans(instrumented, batch_id)
    ended = datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert span.start_time == (calendar.timegm(ended.timetuple()) * 10**6 + 999999) * 1000
    assert ledger_writer.active().flush()
    with open_store(url, create=False) as store:
        (row,) = [r for r in store.rows(datetime(2026, 11, 30, tzinfo=timezone.utc),
                                        datetime(2026, 12, 1, tzinfo=timezone.utc)) if r.provider == "anthropic"]
    assert row.time == ended


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_anthropic_results_are_billed_at_batch_rates_to_the_submitter(
        instrumented, anthropic_client, async_anthropic_client, replay_server, tmp_path, is_async):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, meter_provider=instrumented.meter_provider,
                      ledger=url)
    batch_id = _new_id("msgbatch")
    with aicost.attribute(team="search", user="u-7"):
        _anthropic_create(anthropic_client, replay_server, batch_id)
    sent = replay_server.requests[-1].json
    assert [r["custom_id"] for r in sent["requests"]] == list("abcd")  # the caller's keys, untouched
    # One span for the create, unbilled: the SDK's own when it traces (aicost writes its attributes on it).
    (create,) = [sp for sp in instrumented.spans() if sp.attributes.get("anthropic.message.batch.id") == batch_id
                 or sp.attributes.get(s.AICOST_ENDPOINT) == "anthropic.messages.batches.create"]
    assert create.attributes[s.AICOST_BILLABLE] is False and create.attributes[s.AICOST_TEAM] == "search"
    lines = [anthropic_succeeded("a", input_tokens=1000, output_tokens=200, cache_read=4000),
             anthropic_unbilled("b", "errored"), anthropic_unbilled("c", "expired"),
             anthropic_succeeded("d", input_tokens=10, output_tokens=5), anthropic_unbilled("e", "canceled")]

    async def read_results():
        _anthropic_results(replay_server, batch_id, lines)
        with aicost.attribute(team="batch-worker"):
            if is_async:
                return [r async for r in await async_anthropic_client.messages.batches.results(batch_id)]
            return list(anthropic_client.messages.batches.results(batch_id))

    got = await read_results()
    assert [r.custom_id for r in got] == ["a", "b", "c", "d", "e"]  # the caller gets every result, unchanged
    spans = _batch_spans(instrumented, batch_id)
    assert len(spans) == 2
    expected = {
        5000: _expected("anthropic", "claude-sonnet-4-5", input_tokens=5000, cache_read_tokens=4000, output_tokens=200),
        10: _expected("anthropic", "claude-sonnet-4-5", input_tokens=10, output_tokens=5)}
    # Anthropic's batch discount is half of every rate, cache reads included.
    assert expected[5000] * 2 == pricing.price_call(
        "anthropic", "claude-sonnet-4-5", Usage(input_tokens=5000, cache_read_tokens=4000, output_tokens=200)).total
    ended = int(datetime(2026, 12, 1, 1, tzinfo=timezone.utc).timestamp()) * 10**9
    for sp in spans:
        a = sp.attributes
        assert Decimal(a[s.AICOST_COST_TOTAL]) == expected[a[s.GEN_AI_USAGE_INPUT_TOKENS]]
        assert (a[s.AICOST_TEAM], a[s.AICOST_USER]) == ("search", "u-7")
        assert a[s.AICOST_BATCH_ATTRIBUTION] == "submitter" and a[s.AICOST_SERVICE_TIER] == "batch"
        assert sp.start_time == ended
    total = expected[5000] + expected[10]
    assert _cost_metric_total(instrumented) == total
    await read_results()  # read again: nothing new
    assert len(_batch_spans(instrumented, batch_id)) == 2 and _cost_metric_total(instrumented) == total
    assert ledger_writer.active().flush()
    with open_store(url, create=False) as store:
        rows = [r for r in store.rows(datetime(2026, 11, 30, tzinfo=timezone.utc), WINDOW[1])
                if r.provider == "anthropic"]
    assert len(rows) == 2 and sum(r.cost for r in rows) == total
    assert all((r.team, r.user, r.service_tier) == ("search", "u-7", "batch") for r in rows)


def test_anthropic_results_read_by_another_process_are_the_readers(instrumented, anthropic_client, replay_server,
                                                                   tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=url)
    batch_id = _new_id("msgbatch")
    with aicost.attribute(team="search"):
        _anthropic_create(anthropic_client, replay_server, batch_id)
    lines = [anthropic_succeeded("a"), anthropic_succeeded("b", model="claude-unreleased-9")]
    _anthropic_results(replay_server, batch_id, lines)
    list(anthropic_client.messages.batches.results(batch_id))
    _forget_recorded_results()  # a fresh worker: the batch has no metadata to say who submitted it
    _anthropic_results(replay_server, batch_id, lines)
    with aicost.attribute(team="batch-worker"):
        list(anthropic_client.messages.batches.results(batch_id))
    spans = _batch_spans(instrumented, batch_id)
    assert [sp.attributes[s.AICOST_BATCH_ATTRIBUTION] for sp in spans] == ["submitter"] * 2 + ["reader"] * 2
    assert [sp.attributes[s.AICOST_TEAM] for sp in spans] == ["search"] * 2 + ["batch-worker"] * 2
    unknown = [sp.attributes for sp in spans if sp.attributes[s.GEN_AI_RESPONSE_MODEL] == "claude-unreleased-9"]
    assert all(a[s.AICOST_PRICE_KNOWN] is False and s.AICOST_COST_TOTAL not in a for a in unknown)
    assert ledger_writer.active().flush()
    with open_store(url, create=False) as store:
        rows = [r for r in store.rows(datetime(2026, 11, 30, tzinfo=timezone.utc), WINDOW[1]) if r.kind == "call"]
    assert len(rows) == 2  # one row per result: the first reader's
    assert {r.team for r in rows} == {"search"}
    assert [r.cost is None for r in sorted(rows, key=lambda r: r.response_model)] == [False, True]


def test_uninstrumented_batches_are_untouched(openai_client, replay_server):
    aicost.uninstrument()
    with aicost.attribute(team="search"):
        assert _openai_create(openai_client, replay_server, _new_id("batch"), metadata={"job": "x"}) == {"job": "x"}


# ------------------------------------------------------------------------------------------------ faults
def test_vendor_errors_reach_the_caller_unchanged(instrumented, openai_client, anthropic_client, replay_server):
    import anthropic
    import openai

    from vendor_server import openai_error_reply

    replay_server.enqueue(openai_error_reply(400, "input file not found"))
    with aicost.attribute(team="search"), pytest.raises(openai.BadRequestError, match="input file not found"):
        openai_client.batches.create(input_file_id="missing", endpoint="/v1/chat/completions",
                                     completion_window="24h")
    (span,) = [sp for sp in instrumented.spans() if sp.attributes.get(s.AICOST_ENDPOINT) == "openai.batches.create"]
    assert span.attributes[s.ERROR_TYPE] == "invalid_request_error" and s.GEN_AI_USAGE_COST not in span.attributes
    # A batch still in progress has no results: the SDK's own error, as without aicost.
    batch_id = _new_id("msgbatch")
    replay_server.enqueue(Reply.json(anthropic_batch(batch_id)))
    with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
        anthropic_client.messages.batches.results(batch_id)


def test_a_fault_inside_aicost_never_reaches_the_caller(instrumented, openai_client, replay_server, monkeypatch,
                                                        caplog):
    from aicost.integrations import _batches

    def broken(*args, **kwargs):
        raise RuntimeError("aicost bug")

    monkeypatch.setattr(_batches, "with_attribution", broken)
    monkeypatch.setattr(_batches, "decode", broken)
    batch_id, output_file = _new_id("batch"), _new_id("file-out")
    with aicost.attribute(team="search"), caplog.at_level(logging.ERROR, logger="aicost"):
        assert _openai_create(openai_client, replay_server, batch_id, metadata={"job": "x"}) == {"job": "x"}
        _openai_completed(replay_server, batch_id, {"aicost": '{"team":"search"}'}, output_file)
        batch = openai_client.batches.retrieve(batch_id)
    assert batch.output_file_id == output_file and batch.metadata == {"aicost": '{"team":"search"}'}
    assert any("could not" in r.getMessage() for r in caplog.records)


def test_beta_message_batches_are_recorded_too(instrumented, anthropic_client, replay_server):
    batch_id = _new_id("msgbatch")
    replay_server.enqueue(Reply.json(anthropic_batch(batch_id)))
    with aicost.attribute(team="search"):
        anthropic_client.beta.messages.batches.create(requests=[
            {"custom_id": "a", "params": {"model": "claude-sonnet-4-5", "max_tokens": 8,
                                          "messages": [{"role": "user", "content": "hi"}]}}])
    _anthropic_results(replay_server, batch_id, [anthropic_succeeded("a")])
    list(anthropic_client.beta.messages.batches.results(batch_id))
    (span,) = _batch_spans(instrumented, batch_id)
    assert span.attributes[s.AICOST_TEAM] == "search" and span.attributes[s.AICOST_SERVICE_TIER] == "batch"
