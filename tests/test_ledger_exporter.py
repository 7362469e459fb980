"""LedgerSpanExporter on its own: spans made by a real OpenTelemetry SDK tracer, read into rows and written to a real
SQLite ledger. The span times a float would round, and the spans it cannot read (counted, never a failed batch)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aicost import semconv
from aicost._log import forget
from aicost.ledger import capture, open_store, spend
from aicost.ledger.exporter import LedgerSpanExporter, rows_from_span

DEC_1 = datetime(2026, 12, 1, tzinfo=timezone.utc)
DEC_1_NS = int(DEC_1.timestamp()) * 1_000_000_000


def _spans(*calls: tuple[dict, int | None]) -> list:
    """Finished spans of priced calls: each (extra attributes, start time in ns or None for now)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for extra, start in calls:
        attributes = {semconv.AICOST_PRICE_KNOWN: True, semconv.GEN_AI_PROVIDER_NAME: "openai",
                      semconv.GEN_AI_REQUEST_MODEL: "gpt-4o", semconv.GEN_AI_USAGE_INPUT_TOKENS: 100,
                      semconv.AICOST_COST_TOTAL: "0.25", "aicost.cost.input_usd": "0.25", **extra}
        span = tracer.start_span("chat gpt-4o", attributes=attributes, start_time=start)
        span.end(end_time=None if start is None else start + 1_000)
    return list(memory.get_finished_spans())


@pytest.mark.parametrize("before_midnight_ns", [1, 300, 999])
def test_a_span_just_before_midnight_stays_in_its_day_month_and_billing_period(before_midnight_ns, tmp_path,
                                                                              spill_dir):
    """2026-11-30T23:59:59.999999999Z is a November call: a float of the nanoseconds rounded it to December 1st (the
    exporter's rows and the hooks' alike). Microseconds are truncated, never rounded up."""
    (span,) = _spans(({}, DEC_1_NS - before_midnight_ns))
    (row,) = rows_from_span(span)
    assert row.time < DEC_1
    assert capture._time(DEC_1_NS - before_midnight_ns) == row.time  # the in-process ledger's rows, the same
    assert row.time == datetime(2026, 11, 30, 23, 59, 59, (1_000_000_000 - before_midnight_ns) // 1000,
                                tzinfo=timezone.utc)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    exporter = LedgerSpanExporter(url)
    exporter.export([span])
    assert exporter.force_flush()
    exporter.shutdown()
    with open_store(url, create=False) as store:
        assert [r.time.month for r in store.rows(DEC_1 - timedelta(days=1), DEC_1 + timedelta(days=1))] == [11]


def _exported(tmp_path, *batches: list) -> tuple[dict[str, int], str]:
    """Export each batch of spans to a new SQLite ledger, flushing after each: the writer's stats() and the URL."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    exporter = LedgerSpanExporter(url)
    for spans in batches:
        exporter.export(spans)
        assert exporter.force_flush()
    stats = exporter.writer.stats()
    exporter.shutdown()
    return stats, url


def test_spans_it_cannot_read_are_each_counted_and_never_fail_the_good_rows(tmp_path, spill_dir, caplog):
    """A span the exporter cannot read (a count that is no number, an amount that is no finite number) is not in
    the ledger: each one is counted (dropped_unreadable), though logged once. A non-finite amount is refused when
    the span is read: Decimal('NaN') reached the writer and failed its whole batch, the good row spilled with it."""
    forget("ledger:span")  # logged once per process: whatever an earlier test logged
    bad_tokens = {semconv.GEN_AI_USAGE_INPUT_TOKENS: "n/a"}
    spans = _spans(*[(bad_tokens, None)] * 3, ({}, None),
                   ({semconv.AICOST_COST_TOTAL: "NaN"}, None), ({semconv.AICOST_COST_TOTAL: float("inf")}, None),
                   ({"aicost.cost.output_usd": "NaN"}, None), ({semconv.AICOST_COST_TOTAL: float("nan")}, None))
    with pytest.raises(ValueError, match="not a finite number"):
        rows_from_span(spans[4])
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    exporter = LedgerSpanExporter(url)
    for span in spans[:3]:  # one at a time: each is counted, not only the first (logged once)
        exporter.export([span])
    exporter.export(spans[3:])  # the good span with four unreadable amounts in one batch
    assert exporter.force_flush()
    stats = exporter.writer.stats()
    exporter.shutdown()
    assert stats["dropped_unreadable"] == 7
    assert stats["written"] == 1 and "write_errors" not in stats and "spilled" not in stats
    assert sum("could not read a span" in r.getMessage() for r in caplog.records) == 1
    with open_store(url, create=False) as store:
        (row,) = store.rows(datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))
    assert (row.cost, row.cost_parts) == (Decimal("0.25"), {"input": Decimal("0.25")})


def test_a_count_the_ledger_cannot_hold_or_sum_makes_the_span_unreadable(tmp_path, spill_dir):
    """A count of 2**63 cannot be stored in the ledger's 64-bit integers, and two of 2**62 cannot be summed in its
    rollups: the writer's whole batch failed, the good row with it, at every retry. Such a span is unreadable."""
    spans = _spans(({semconv.GEN_AI_USAGE_INPUT_TOKENS: str(2 ** 63)}, None),
                   *[({semconv.GEN_AI_USAGE_OUTPUT_TOKENS: 2 ** 62}, None)] * 2,
                   ({semconv.GEN_AI_USAGE_INPUT_TOKENS: -1}, None), ({}, None))
    stats, _ = _exported(tmp_path, spans)
    assert stats.get("written") == 1 and "write_errors" not in stats and "outages" not in stats, stats
    assert stats["dropped_unreadable"] == 4 and "spilled" not in stats


@pytest.mark.parametrize("amount", [1e300, 1e-300, "1E+400", "-1e30", "1E-37", 1e11, "-100000000000",
                                    "0.0000000000000000000000000000001"])
def test_an_amount_the_ledger_cannot_sum_exactly_makes_the_span_unreadable(amount, tmp_path, spill_dir):
    """A finite amount past what the ledger sums exactly (SQLite's rollups add decimal texts to 60 significant digits
    and raise rather than round: $1e300 plus $0.25 cannot be added) failed the writer's whole batch, the good row
    with it, at every retry, counted as an outage, and every later batch spilled behind it. Such a span is
    unreadable, on every database alike, by the writer's own bound: more than 30 decimals, or 10**11 dollars or
    more."""
    spans = _spans(({semconv.AICOST_COST_TOTAL: amount, "aicost.cost.input_usd": amount}, None), ({}, None))
    stats, _ = _exported(tmp_path, spans, _spans(({}, None)))
    assert stats.get("written") == 2 and "outages" not in stats and "write_errors" not in stats, stats
    assert stats["dropped_unreadable"] == 1 and "spilled" not in stats


def test_amounts_at_the_bounds_the_ledger_sums_exactly_are_read():
    """30 decimals, and just under 10**11 dollars, are amounts (of either sign): the bound refuses no more."""
    for amount in ["1E-30", "0.000000000000000000000000000001", "99999999999.5", "-0.5", "1E+10", 1e10, 1e-24,
                   "-99999999999.999999999999999999999999999999", "0.10000000000000000000000000000000000000000"]:
        (span,) = _spans(({semconv.AICOST_COST_TOTAL: amount}, None))
        (row,) = rows_from_span(span)
        assert row.cost == Decimal(amount if isinstance(amount, str) else repr(amount))


def test_an_amount_is_read_exactly_whatever_the_threads_decimal_context():
    """The bound is checked without arithmetic: a host's 4-digit context that traps Inexact neither rounds an amount
    while it is checked nor raises (``abs()`` and ``normalize()`` round to the context's precision)."""
    import decimal

    (span,) = _spans(({semconv.AICOST_COST_TOTAL: "123.456789012"}, None))
    with decimal.localcontext(decimal.Context(prec=4, traps=[decimal.Inexact, decimal.Rounded])):
        (row,) = rows_from_span(span)
    assert row.cost == Decimal("123.456789012")


def _feature_span(calls) -> object:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    span = provider.get_tracer("test").start_span("aicost.feature summarise", attributes={
        semconv.AICOST_OUTCOME: "success", semconv.AICOST_ROLLUP_CALLS: calls, semconv.AICOST_ROLLUP_COST_TOTAL: 0.5})
    span.end()
    (finished,) = memory.get_finished_spans()
    return finished


@pytest.mark.parametrize("attribute, text, estimated", [
    (semconv.AICOST_USAGE_ESTIMATED, "false", False), (semconv.AICOST_USAGE_ESTIMATED, "False", False),
    (semconv.AICOST_USAGE_ESTIMATED, "true", True), (semconv.AICOST_COST_ESTIMATED, "false", False),
    (semconv.AICOST_COST_ESTIMATED, "TRUE", True), (semconv.AICOST_USAGE_ESTIMATED, False, False),
    (semconv.AICOST_USAGE_ESTIMATED, True, True)])
def test_a_flag_is_read_as_the_boolean_it_carries_a_bool_or_its_text(attribute, text, estimated):
    """``bool("false")`` is True: a span whose pipeline made every attribute a string (``aicost.usage.estimated=
    "false"``) was stored as an estimated call, its vendor's exact counts flagged as a guess. A bool is read as it is,
    and the text ``"true"`` / ``"false"`` (any case) as that bool."""
    (span,) = _spans(({attribute: text}, None))
    (row,) = rows_from_span(span)
    assert row.estimated is estimated


def test_an_unknown_price_sent_as_text_stays_unknown():
    """``aicost.price.known="false"`` read as True: a call without a price stored as priced."""
    (span,) = _spans(({semconv.AICOST_PRICE_KNOWN: "false", semconv.AICOST_COST_TOTAL: None,
                       "aicost.cost.input_usd": None}, None))
    (row,) = rows_from_span(span)
    assert row.price_known is False and row.cost is None


@pytest.mark.parametrize("attributes", [
    {semconv.AICOST_USAGE_ESTIMATED: "yes"}, {semconv.AICOST_USAGE_ESTIMATED: 1},
    {semconv.AICOST_COST_ESTIMATED: "n/a"}, {semconv.AICOST_USAGE_AUDIO_SECONDS: float("nan")},
    {semconv.AICOST_USAGE_AUDIO_SECONDS: float("inf")}, {semconv.AICOST_USAGE_AUDIO_SECONDS: -3.0},
    {semconv.AICOST_USAGE_AUDIO_SECONDS: "n/a"}])
def test_a_flag_or_audio_seconds_it_cannot_read_makes_the_span_unreadable(attributes, tmp_path, spill_dir):
    """A flag that is no boolean (``"yes"``, ``1``) was read by ``bool()``, and audio seconds that are NaN, infinite
    or negative were stored as they came: now each such span is left out, counted, as an unreadable count is."""
    spans = _spans((attributes, None), ({semconv.AICOST_USAGE_AUDIO_SECONDS: 12.5}, None))
    with pytest.raises(ValueError):
        rows_from_span(spans[0])
    stats, url = _exported(tmp_path, spans)
    assert stats.get("written") == 1 and stats["dropped_unreadable"] == 1, stats
    with open_store(url, create=False) as store:
        (row,) = store.rows(datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))
    assert row.audio_seconds == 12.5


@pytest.mark.parametrize("calls", [2 ** 63, 2 ** 40 + 1, -1, "n/a"])
def test_a_feature_run_whose_call_count_the_ledger_cannot_hold_is_unreadable(calls):
    """A feature span's ``aicost.rollup.calls`` was read by ``int()`` alone: 2**63 failed the writer's batch (the
    ledger's 64-bit counts), and -1 was stored. It is held to the 0..2**40 bound of every other count."""
    with pytest.raises(ValueError):
        rows_from_span(_feature_span(calls))
    (run,) = rows_from_span(_feature_span(2 ** 40))
    assert run.calls == 2 ** 40


# A priced call span's attributes, as aicost writes them (the walk tests add their feature and run)
_PRICED = {semconv.AICOST_PRICE_KNOWN: True, semconv.GEN_AI_PROVIDER_NAME: "openai",
           semconv.GEN_AI_REQUEST_MODEL: "gpt-4o", semconv.AICOST_COST_TOTAL: "0.25"}


def _recording_tracer():
    """A tracer whose finished spans the returned exporter holds, to be handed to the ledger exporter in batches."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory, provider.get_tracer("test")


def test_a_span_without_a_run_id_has_a_run_only_if_it_names_a_feature(tmp_path, spill_dir):
    """Spans without aicost.run.id (docs/ledger.md): one that names no feature ran in none, whatever its parent; one
    that names a feature, as an aicost before the attribute wrote every call, is walked through its batch to an
    older feature span (without the attribute either). The walk filed a call in no feature under the HTTP request
    span it ran in, exported in another batch, as its run; a call whose feature is in a later batch has no run
    (an ancestor outside the batch may be any span)."""
    memory, tracer = _recording_tracer()

    def call(**attributes) -> str:
        span = tracer.start_span("chat gpt-4o", attributes={**_PRICED, **attributes})
        span.end()
        return format(span.get_span_context().span_id, "016x")

    with tracer.start_as_current_span("GET /answer"):
        with tracer.start_as_current_span("GET /inner"):
            in_no_feature = call()  # under a request span exported in an earlier batch
        with tracer.start_as_current_span("aicost.feature summarise", attributes={
                semconv.AICOST_OUTCOME: "succeeded", semconv.AICOST_FEATURE: "summarise"}) as feature:
            older = call(**{semconv.AICOST_FEATURE: "summarise"})  # an older aicost's call: its feature ends later
            with tracer.start_as_current_span("aicost.cache answer"):
                older_cached = call(**{semconv.AICOST_FEATURE: "summarise"})  # walked up through the cache span
    first, inner, second, third, *rest = memory.get_finished_spans()
    assert (inner.name, [span.name for span in rest]) == (
        "GET /inner", ["aicost.cache answer", "aicost.feature summarise", "GET /answer"])
    run_id = format(feature.get_span_context().span_id, "016x")
    stats, url = _exported(tmp_path, [inner], [first, second], [third, *rest])
    assert stats["written"] == 3 and "dropped_unreadable" not in stats, stats
    with open_store(url, create=False) as store:
        rows = list(store.rows(datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc)))
    assert {row.span_id: row.run_id for row in rows} == {in_no_feature: None, older: None, older_cached: run_id}


def test_a_call_that_names_its_feature_outside_a_run_is_never_filed_under_another_run(tmp_path, spill_dir):
    """A call that names a feature only through ``aicost.attribute(feature=...)`` or upstream baggage ran in no run
    (the in-process ledger files it under none) and carries no aicost.run.id. Walked, it was filed under whatever
    feature span lay above it: another feature's run, when an OpenTelemetry context reached it without aicost's
    (a thread started inside feature "A" by OpenTelemetry's threading instrumentation) or when its parent is the
    span an upstream service named in the trace context it sent (that service's feature run, in an earlier batch).
    A feature span that carries aicost.run.id gives it to every call made in it: a call without it has no run."""
    from opentelemetry import trace as otel_trace

    memory, tracer = _recording_tracer()

    def call(feature: str, context=None) -> str:
        span = tracer.start_span("chat gpt-4o", context=context, attributes={**_PRICED, semconv.AICOST_FEATURE: feature})
        span.end()
        return format(span.get_span_context().span_id, "016x")

    upstream = tracer.start_span("aicost.feature ask")  # another service's feature, exported earlier
    upstream.set_attributes({semconv.AICOST_OUTCOME: "succeeded", semconv.AICOST_FEATURE: "ask",
                             semconv.AICOST_RUN_ID: format(upstream.get_span_context().span_id, "016x")})
    upstream.end()
    remote = otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(otel_trace.SpanContext(
        upstream.get_span_context().trace_id, upstream.get_span_context().span_id, is_remote=True,
        trace_flags=otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED))))
    from_baggage = call("ask", context=remote)  # its feature from upstream baggage; its parent, upstream's span
    with tracer.start_as_current_span("aicost.feature answer") as feature:
        run_id = format(feature.get_span_context().span_id, "016x")
        feature.set_attributes({semconv.AICOST_OUTCOME: "succeeded", semconv.AICOST_FEATURE: "answer",
                                semconv.AICOST_RUN_ID: run_id})
        in_a_thread = call("translate")  # attribute(feature="translate") where only the span context reached
    first, baggage_call, thread_call, answer = memory.get_finished_spans()
    assert first.name == "aicost.feature ask" and answer.name == "aicost.feature answer"
    stats, url = _exported(tmp_path, [first], [baggage_call, thread_call, answer])
    assert (stats["written"], stats["runs_written"]) == (2, 2) and "dropped_unreadable" not in stats, stats
    with open_store(url, create=False) as store:
        rows = list(store.rows(datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc)))
    assert {row.span_id: row.run_id for row in rows} == {from_baggage: None, in_a_thread: None}


@pytest.mark.parametrize("run_id", ["", "00f067aa0ba902b", "00F067AA0BA902B7", "00f067aa0ba902b7\n", 12, True])
def test_a_run_id_that_is_no_span_id_makes_the_span_unreadable(run_id, tmp_path, spill_dir):
    """aicost.run.id is 16 lowercase hex digits, as aicost writes a span id: anything else is not a run any feature
    span names, and the span cannot be read (counted); the row it would have made was filed under that value."""
    spans = _spans(({semconv.AICOST_RUN_ID: run_id}, None), ({semconv.AICOST_RUN_ID: "00f067aa0ba902b7"}, None))
    stats, url = _exported(tmp_path, spans)
    assert stats.get("written") == 1 and stats["dropped_unreadable"] == 1, stats
    with open_store(url, create=False) as store:
        (row,) = store.rows(datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))
    assert row.run_id == "00f067aa0ba902b7"


def test_rows_from_span_alone_gives_only_the_run_id_the_span_carries():
    """``rows_from_span`` is public: called on one span, a call that names a feature but carries no aicost.run.id
    got its parent span id as its run id (the exporter's walk then replaced it), a run id no feature may have:
    here the HTTP request span it ran under. Alone it says what the span says: its aicost.run.id, else None."""
    memory, tracer = _recording_tracer()
    with tracer.start_as_current_span("GET /answer"):
        tracer.start_span("chat gpt-4o", attributes={**_PRICED, semconv.AICOST_FEATURE: "summarise"}).end()
        carried = "00f067aa0ba902b7"
        tracer.start_span("chat gpt-4o", attributes={**_PRICED, semconv.AICOST_FEATURE: "summarise",
                                                     semconv.AICOST_RUN_ID: carried}).end()
    walked_call, carrying_call, request = memory.get_finished_spans()
    assert request.name == "GET /answer"
    assert [row.run_id for row in rows_from_span(walked_call)] == [None]
    assert [row.run_id for row in rows_from_span(carrying_call)] == [carried]


def test_attribution_from_spans_is_held_to_the_bounds_of_the_in_process_ledger(tmp_path, spill_dir):
    """The exporter took every attribution value a span carried as it was: a team of 257 characters, a user id of
    10,000, 40 tags, a feature run's outcome of 10,000 characters, a price-unknown reason of 10,000 went into the
    ledger, and into its rollups, while the in-process ledger's are bounded (aicost.attribution: a value of at
    most 256 characters, 16 tags from outside the process; the reason cut at 512). Now the store holds every row it
    writes to those bounds: an over-long value is left out (as upstream baggage's is), the first 16 tags within them
    are kept, the reason is cut, and a run whose outcome is out of bounds is refused alone (counted), never its
    calls."""
    tags = {f"{semconv.AICOST_TAG_PREFIX}k{i:02d}": "v" for i in range(40)}
    tags[f"{semconv.AICOST_TAG_PREFIX}k05"] = "x" * 257  # out of bounds: left out, the next one kept instead
    memory, tracer = _recording_tracer()
    with tracer.start_as_current_span("aicost.feature summarise", attributes={
            semconv.AICOST_FEATURE: "summarise", semconv.AICOST_OUTCOME: "o" * 10_000, semconv.AICOST_ROLLUP_CALLS: 1,
            semconv.AICOST_ROLLUP_COST_TOTAL: "0", semconv.AICOST_RUN_ID: "00f067aa0ba902b7"}):
        tracer.start_span("chat gpt-4o", attributes={
            semconv.AICOST_PRICE_KNOWN: False, semconv.GEN_AI_PROVIDER_NAME: "openai",
            semconv.GEN_AI_REQUEST_MODEL: "gpt-4o", semconv.AICOST_PRICE_UNKNOWN_REASON: "r" * 10_000,
            semconv.AICOST_TEAM: "t" * 257, semconv.AICOST_FEATURE: "summarise", semconv.AICOST_USER: "u" * 10_000,
            semconv.AICOST_CUSTOMER: "c" * 256, semconv.AICOST_RUN_ID: "00f067aa0ba902b7", **tags}).end()
    with tracer.start_as_current_span("aicost.feature answer", attributes={
            semconv.AICOST_FEATURE: "answer", semconv.AICOST_OUTCOME: "succeeded", semconv.AICOST_TEAM: "t" * 300,
            semconv.AICOST_CUSTOMER: "acme", semconv.AICOST_ROLLUP_CALLS: 0, semconv.AICOST_ROLLUP_COST_TOTAL: "0"}):
        pass
    stats, url = _exported(tmp_path, list(memory.get_finished_spans()))
    assert (stats.get("written"), stats.get("runs_written"), stats.get("dropped_refused")) == (1, 1, 1), stats
    everything = (datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))
    with open_store(url, create=False) as store:
        (row,) = store.rows(*everything)
        (run,) = store.runs(*everything)
        teams = {g.key["team"] for g in spend(store, *everything, ["team"])}
        tag_keys = {g.key["tag"] for g in spend(store, *everything, ["tag"])}
    assert (row.team, row.feature, row.user, row.customer) == (None, "summarise", None, "c" * 256)
    assert list(row.tags) == [f"k{i:02d}" for i in range(17) if i != 5]
    assert len(row.price_unknown_reason) == 512 and row.price_unknown_reason.endswith("\u2026")
    assert (run.feature, run.outcome, run.team, run.customer) == ("answer", "succeeded", None, "acme")
    assert teams == {None} and len(tag_keys) == 16  # the rollups hold what the rows hold


_LONG = {  # the texts of a call span that are no attribution, each of one of the bounded classes, all over-long
    semconv.GEN_AI_PROVIDER_NAME: "p" * 257, semconv.GEN_AI_OPERATION_NAME: "o" * 300,
    semconv.AICOST_ENDPOINT: "e" * 10_000, semconv.GEN_AI_REQUEST_MODEL: "m" * 1_000_000,
    semconv.GEN_AI_RESPONSE_MODEL: "n" * 257, semconv.AICOST_SERVICE_TIER: "t" * 300,
    semconv.AICOST_PRICE_SOURCE: "s" * 300, semconv.AICOST_PRICE_MODEL: "q" * 300,
    semconv.AICOST_CLIENT_PROJECT: "proj_" + "x" * 300, semconv.AICOST_CLIENT_KEY_FINGERPRINT: "f" * 300,
    semconv.ERROR_TYPE: "E" * 10_000,
}


def _digest(text: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_every_text_of_an_exported_span_is_held_to_the_ledgers_bounds(ledger_url, spill_dir):
    """The store bounded a row's attribution, run, outcome and reason texts, and kept every other text as the span
    gave it: a model name of a million characters from another service's span went into the ledger (and into
    every report), as did the record id (the row's primary key), endpoint, tier, price source, vendor project,
    key fingerprint, error type, cache and budget names. Now every text is bounded: a name (model, provider,
    endpoint, tier, price source, cache, budget...) past 256 characters is left out (NULL), as an over-long
    attribution value is; the error type is cut at 256, ending with an ellipsis (its presence counts the call as
    an error); the record id, which a cut could merge with another's, is stored as its SHA-256 digest."""
    record_id = "batch_" + "r" * 10_000
    memory, tracer = _recording_tracer()
    tracer.start_span("chat long", attributes={**_PRICED, **_LONG, semconv.AICOST_RECORD_ID: record_id}).end()
    tracer.start_span("aicost.cache", attributes={
        semconv.AICOST_CACHE_HIT: True, semconv.AICOST_CACHE_NAME: "c" * 300,
        semconv.AICOST_CACHE_SAVED_USD: "0.5"}).end()
    tracer.start_span("chat refused", attributes={
        semconv.GEN_AI_PROVIDER_NAME: "openai", semconv.GEN_AI_REQUEST_MODEL: "gpt-4o",
        semconv.AICOST_BUDGET_DECISION: "blocked", semconv.AICOST_BUDGET_NAME: "b" * 300,
        semconv.AICOST_BUDGET_RESERVED_USD: "1.5"}).end()
    exporter = LedgerSpanExporter(ledger_url)
    exporter.export(list(memory.get_finished_spans()))
    assert exporter.force_flush()
    stats = exporter.writer.stats()
    exporter.shutdown()
    assert (stats.get("written"), stats.get("dropped_refused", 0)) == (3, 0), stats
    everything = (datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))
    with open_store(ledger_url, create=False) as store:
        rows = {row.kind: row for row in store.rows(*everything)}
        models = {g.key["model"] for g in spend(store, *everything, ["model"])}
        providers = {g.key["provider"] for g in spend(store, *everything, ["provider"])}
        (total,) = spend(store, *everything, [])
    call, hit, refusal = rows["call"], rows["cache_hit"], rows["refusal"]
    assert call.span_id == _digest(record_id)
    assert (call.provider, call.operation, call.endpoint, call.request_model, call.response_model, call.model,
            call.service_tier, call.price_source, call.price_model, call.vendor_project,
            call.api_key_fingerprint) == (None,) * 11
    assert call.error_type == "E" * 255 + "\u2026"
    assert (call.cost, call.team) == (Decimal("0.25"), None)  # the spend stays, only the texts are bounded
    assert (hit.cache_name, hit.saved_cost) == (None, Decimal("0.5"))
    assert (refusal.budget, refusal.request_model, refusal.stopped_cost) == (None, "gpt-4o", Decimal("1.5"))
    assert models == {None, "gpt-4o"} and providers == {None, "openai"}  # the rollups hold what the rows hold
    assert total.error_calls == 1  # the cut error type still counts the call as an error


def test_a_replayed_span_with_an_over_long_record_id_is_stored_once(ledger_url, spill_dir):
    """A record id past the bounds is stored as its digest, the same for the same id: the same span exported
    twice (in two batches, and again by another exporter, as a collector's retry or a restarted receiver does)
    is one row; a span with another over-long id that shares the first 256 characters with it (which a cut would
    have merged with it) is a row of its own."""
    shared = "batch_" + "r" * 300
    memory, tracer = _recording_tracer()
    for suffix in ("a", "b"):
        tracer.start_span("chat gpt-4o", attributes={**_PRICED, semconv.AICOST_RECORD_ID: shared + suffix}).end()
    first, second = memory.get_finished_spans()
    for batches in ([[first], [first, second]], [[second, first]]):
        exporter = LedgerSpanExporter(ledger_url)
        for batch in batches:
            exporter.export(batch)
            assert exporter.force_flush()
        exporter.shutdown()
    everything = (datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))
    with open_store(ledger_url, create=False) as store:
        ids = sorted(row.span_id for row in store.rows(*everything))
        (total,) = spend(store, *everything, [])
    assert ids == sorted([_digest(shared + "a"), _digest(shared + "b")])
    assert total.cost == Decimal("0.50")
