"""An OpenTelemetry span exporter that fills a ledger from aicost's spans: one ledger for many services.

Topology (docs/ledger.md): each service runs ``aicost.instrument()`` and exports spans over OTLP as usual; a
central process receives them (an OpenTelemetry Collector forwarding to it, or a small OTLP receiver) and runs
its tracer provider with ``BatchSpanProcessor(LedgerSpanExporter("postgresql://..."))``. The services need no
database access; the ledger gets every costed span exactly once (rows are keyed by span id, so a span exported
twice is stored once).

What becomes a row (attributes as in docs/spans.md):

* a call span (it carries ``aicost.price.known``: the core writes it on every billed call's span, false with a
  reason when aicost's own pricing failed): a ``call`` row; its exact total from ``aicost.cost.total_usd``,
  its parts from ``aicost.cost.<class>_usd`` (doubles on the span: exact for prices of up to 15 significant
  digits, which covers the catalog); an unknown price stays unknown, with the span's
  ``aicost.price.unknown_reason`` (:func:`~aicost.ledger.row.unknown_reason_text`: text, capped);
* a deferred call (``aicost.usage.deferred``: a background response or interaction returned unfinished, its cost
  not on the span): a ``call`` row of unknown cost, its reason :data:`~aicost.ledger.row.DEFERRED_REASON`, as the
  in-process ledger keeps it;
* a call refused by a budget or policy (``aicost.budget.decision`` blocked / policy / store_unavailable and no
  price): a ``refusal`` row, stopped amount from ``aicost.budget.reserved_usd``;
* an ``aicost.cache`` span with ``aicost.cache.hit`` true: a ``cache_hit`` row with ``aicost.cache.saved_usd``;
* an ``aicost.feature`` span: a feature run with its ``aicost.outcome`` and ``aicost.rollup.cost.total_usd``.

A row's ``run_id`` is the ``aicost.feature`` run it ran in, as in the in-process ledger. A call or cache hit made
inside a run carries that run's id as ``aicost.run.id`` (the value the in-process ledger files it under): the row
takes it as it is, whatever spans lie between the call and its feature (an HTTP request span, a cache span) and
whichever batch brings them; a value that is not 16 lowercase hex digits makes the span unreadable. A span without
it ran in no run, or comes from an aicost before the attribute: one that names no feature (``aicost.feature``)
ran in none, so it has no run, whatever its parents. One that names a feature may be either: a call that named
its feature only through ``aicost.attribute(feature=...)`` or upstream baggage ran in no run, as the in-process
ledger files it, but an older aicost wrote every call so. It is walked, as those older spans were, from its parent
span id up through the spans of the same export batch (a call made inside an ``@aicost.cache`` function has the
cache span as its parent, and the feature above it), to the nearest feature span, whose run it takes only if that
span carries no ``aicost.run.id`` either: an older feature. A feature that writes the attribute gives it to every
call made in it, so a call without it was not made in it (an OpenTelemetry context carried into a thread without
aicost's, a parent span in another service): it has no run. Nor when the walk ends at a root span, or
leaves the batch: the ancestor the batch does not hold may be the call's feature, exported after it, or any other
span, another feature's run included (an upstream service's, named by the trace context it sent), and nothing here
tells which. Only the spans of one batch are held, for as long as it is read.

Other spans are ignored. A span that cannot be read (a count that is no number or out of 0..2**40, a feature's
``aicost.rollup.calls`` too; an amount that is no finite number, has more than 30 decimals or is 10**11 dollars or
more; a flag such as ``aicost.usage.estimated`` that is neither a bool nor the text ``"true"`` / ``"false"``; audio
seconds that are no finite number >= 0) is left out, counted
(``dropped_unreadable`` in the writer's ``stats()``) and logged once; the rest of its batch is written. Export
never blocks on the database: rows go through a :class:`LedgerWriter`.

Texts are taken as the span gives them (model names, endpoint, error type, record id, attribution...): the store
bounds every text of every row it writes (:func:`~aicost.ledger.row.within_bounds`): an attribution value or a name
past 256 characters is left out, an error type or a reason cut, and a record id past 256 characters stored as its
digest, the same for every export of the span, so a span exported twice is still one row.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Sequence

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .. import semconv as s
from .capture import attribution_fields
from .days import from_ns
from .rollup import SUMMABLE_DECIMALS, SUMMABLE_LIMIT, summable
from .row import CACHE_HIT, CALL, DEFERRED_REASON, REFUSAL, FeatureRun, LedgerRow, unknown_reason_text
from .writer import LedgerWriter

__all__ = ["LedgerSpanExporter", "rows_from_span"]

_TOKENS = {
    "input_tokens": (s.GEN_AI_USAGE_INPUT_TOKENS,),
    "output_tokens": (s.GEN_AI_USAGE_OUTPUT_TOKENS,),
    "cache_read_tokens": (s.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,),
    "cache_write_tokens": (s.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS, s.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS),
    "cache_write_1h_tokens": (s.AICOST_USAGE_CACHE_WRITE_1H,),
    "reasoning_tokens": (s.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,),
    "input_audio_tokens": (s.AICOST_USAGE_INPUT_AUDIO,),
    "output_audio_tokens": (s.AICOST_USAGE_OUTPUT_AUDIO,),
    "input_image_tokens": (s.AICOST_USAGE_INPUT_IMAGE,),
    "output_image_tokens": (s.AICOST_USAGE_OUTPUT_IMAGE,),
    "cache_read_image_tokens": (s.AICOST_USAGE_CACHE_READ_IMAGE,),
    "cache_read_audio_tokens": (s.AICOST_USAGE_CACHE_READ_AUDIO,),
    "input_characters": (s.AICOST_USAGE_INPUT_CHARACTERS,),
    "web_search_requests": (s.AICOST_USAGE_WEB_SEARCH_REQUESTS,),
}
_REFUSING = ("blocked", "policy", "store_unavailable")
_RUN_ID = re.compile(r"[0-9a-f]{16}")  # a span id as aicost formats it (aicost.attribution.current_run_id)
_PART_SUFFIX = "_usd"


# A count is at most this (a trillion tokens in one call): the ledger and its rollups hold counts as 64-bit integers,
# so a count of 2**63 could not be stored and two of 2**62 could not be summed: its batch, the good rows with it,
# failed at every retry. Under this bound a rollup cell overflows only after 8 million calls at the bound.
_MAX_COUNT = 2 ** 40


def _count(value: Any) -> int:
    """A count attribute as an int (``int()``), from 0 to :data:`_MAX_COUNT`; anything else raises ValueError (the
    span cannot be read, as for an amount: :func:`_decimal`)."""
    count = int(value)
    if not 0 <= count <= _MAX_COUNT:
        raise ValueError(f"a count out of 0..{_MAX_COUNT}: {value!r}")
    return count


def _flag(value: Any) -> bool:
    """A boolean attribute: False when absent, a bool as it is, and the text a pipeline may have made of one
    (``"true"`` / ``"false"``, any case: a converter that writes every attribute as a string) as that bool. Anything
    else (``"yes"``, ``1``, ``"n/a"``) raises ValueError: the span cannot be read. ``bool()`` of the text ``"false"``
    was True: a call whose counts were the vendor's read as estimated, and an unknown price as known."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"a flag that is not a boolean: {value!r}")


def _seconds(value: Any) -> float:
    """A duration attribute (``aicost.usage.audio_seconds``) as a float: a finite number of seconds, 0 or more;
    anything else (``NaN``, ``inf``, ``-3``, ``"n/a"``) raises ValueError (the span cannot be read)."""
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration that is not a finite number of seconds >= 0: {value!r}")
    return seconds


def _decimal(value: Any) -> Decimal | None:
    """An amount attribute: None when absent. One that is there but is no finite number (``"NaN"``, ``inf``,
    ``"n/a"``), or one past what the ledger sums exactly (:func:`aicost.ledger.rollup.summable`: $1e300), raises
    ValueError: the span cannot be read (counted, see :meth:`LedgerSpanExporter.export`). Not None, which would
    make the cost unknown or drop one part (the parts would no longer sum to the total), nor Decimal('NaN'), which
    no ledger can store: it failed the writer's whole batch, the good rows with it."""
    if value is None:
        return None
    try:
        amount = Decimal(value) if isinstance(value, str) else Decimal(repr(float(value)))
    except (InvalidOperation, ValueError, TypeError):
        amount = None
    if amount is None or not amount.is_finite():
        raise ValueError(f"an amount that is not a finite number: {value!r}")
    if not summable(amount):  # the writer would refuse it (its row dropped): the span is unreadable, counted here
        raise ValueError(f"an amount the ledger cannot sum exactly (more than {SUMMABLE_DECIMALS} decimals, or "
                         f"{SUMMABLE_LIMIT:.0E} dollars or more): {value!r}")
    return amount


def _time(ns: int | None) -> datetime:
    return from_ns(ns or 0)


def _run_id(a: Mapping[str, Any]) -> str | None:
    """The run a call or cache hit span says it belongs to: its ``aicost.run.id`` (16 lowercase hex digits; anything
    else raises ValueError: the span cannot be read). Without it, None: a span alone cannot say more (one from an
    aicost before the attribute that names a feature may have run in a feature span of its batch, which only
    :class:`LedgerSpanExporter`, holding the batch, can walk to: :func:`_walks`)."""
    run_id = a.get(s.AICOST_RUN_ID)
    if run_id is None:
        return None
    if not isinstance(run_id, str) or _RUN_ID.fullmatch(run_id) is None:
        raise ValueError(f"a run id that is not 16 lowercase hex digits: {run_id!r}")
    return run_id


def _walks(span: Any) -> bool:
    """Whether a call or cache hit span's run is found by walking its batch: it carries no ``aicost.run.id`` but
    names a feature (an aicost before the attribute wrote every call so). See the module's docstring."""
    a: Mapping[str, Any] = span.attributes or {}
    return s.AICOST_RUN_ID not in a and s.AICOST_FEATURE in a


def _parent_id(span: Any) -> str | None:
    parent = getattr(span, "parent", None)
    return format(parent.span_id, "016x") if parent is not None and parent.span_id else None


def rows_from_span(span: Any) -> list[LedgerRow | FeatureRun]:
    """The ledger rows one finished span (``ReadableSpan``) stands for: zero or one. A row's ``run_id`` is the
    span's own ``aicost.run.id``, or None: the run of an older span without it is found only by
    :class:`LedgerSpanExporter`, which walks its export batch."""
    a: Mapping[str, Any] = span.attributes or {}
    context = span.get_span_context()
    span_id = format(context.span_id, "016x")
    trace_id = format(context.trace_id, "032x")
    name = span.name or ""
    if s.AICOST_PRICE_KNOWN in a or _flag(a.get(s.AICOST_USAGE_DEFERRED)) or (
            a.get(s.AICOST_BUDGET_DECISION) in _REFUSING and s.GEN_AI_PROVIDER_NAME in a):
        record_id = a.get(s.AICOST_RECORD_ID)  # a batch result: one row however often (and wherever) it is read
        return [_call_row(span, a, record_id if isinstance(record_id, str) else span_id, trace_id,
                          _run_id(a))]
    if _flag(a.get(s.AICOST_CACHE_HIT)):
        return [LedgerRow(span_id=span_id, kind=CACHE_HIT, time=_time(span.start_time), trace_id=trace_id,
                          cost=Decimal(0), saved_cost=_decimal(a.get(s.AICOST_CACHE_SAVED_USD)),
                          cache_name=a.get(s.AICOST_CACHE_NAME), run_id=_run_id(a),
                          **attribution_fields(a))]
    if name.startswith("aicost.feature ") and s.AICOST_OUTCOME in a:
        fields = attribution_fields(a)
        fields.pop("feature", None)
        end, start = span.end_time or 0, span.start_time or 0
        return [FeatureRun(run_id=span_id, feature=a.get(s.AICOST_FEATURE) or name[len("aicost.feature "):],
                           time=_time(end), outcome=str(a[s.AICOST_OUTCOME]),
                           calls=_count(a.get(s.AICOST_ROLLUP_CALLS, 0)),
                           cost=_decimal(a.get(s.AICOST_ROLLUP_COST_TOTAL)) or Decimal(0), trace_id=trace_id,
                           duration_s=(end - start) / 1e9 if end and start else None, **fields)]
    return []


def _call_row(span: Any, a: Mapping[str, Any], span_id: str, trace_id: str, run_id: str | None) -> LedgerRow:
    row = LedgerRow(
        span_id=span_id, kind=CALL, time=_time(span.start_time), trace_id=trace_id,
        provider=a.get(s.GEN_AI_PROVIDER_NAME), operation=a.get(s.GEN_AI_OPERATION_NAME),
        endpoint=a.get(s.AICOST_ENDPOINT), request_model=a.get(s.GEN_AI_REQUEST_MODEL),
        response_model=a.get(s.GEN_AI_RESPONSE_MODEL), service_tier=a.get(s.AICOST_SERVICE_TIER),
        error_type=a.get(s.ERROR_TYPE), run_id=run_id, vendor_project=a.get(s.AICOST_CLIENT_PROJECT),
        api_key_fingerprint=a.get(s.AICOST_CLIENT_KEY_FINGERPRINT), **attribution_fields(a),
    )
    if span.end_time and span.start_time:
        row.duration_s = (span.end_time - span.start_time) / 1e9
    for field, names in _TOKENS.items():
        for attr in names:
            if attr in a:
                setattr(row, field, _count(a[attr]))
                break
    row.estimated = _flag(a.get(s.AICOST_USAGE_ESTIMATED)) | _flag(a.get(s.AICOST_COST_ESTIMATED))  # both read
    if s.AICOST_USAGE_AUDIO_SECONDS in a:
        row.audio_seconds = _seconds(a[s.AICOST_USAGE_AUDIO_SECONDS])
    if s.AICOST_PRICE_KNOWN not in a and not _flag(a.get(s.AICOST_USAGE_DEFERRED)):  # refused before it was sent
        row.kind = REFUSAL
        row.cost = Decimal(0)
        row.stopped_cost = _decimal(a.get(s.AICOST_BUDGET_RESERVED_USD))
        row.budget = a.get(s.AICOST_BUDGET_NAME) or a.get(s.AICOST_POLICY_RULE)
        return row
    row.price_known = _flag(a.get(s.AICOST_PRICE_KNOWN))  # a deferred call has none: its cost is not recorded
    row.price_model = a.get(s.AICOST_PRICE_MODEL)
    row.price_source = a.get(s.AICOST_PRICE_SOURCE)
    if row.price_known:
        row.cost = _decimal(a.get(s.AICOST_COST_TOTAL))
        if row.cost is None:
            row.cost = _decimal(a.get(s.GEN_AI_USAGE_COST))
        for key, value in a.items():
            if key.startswith(s.AICOST_COST_PREFIX) and key.endswith(_PART_SUFFIX) and key != s.AICOST_COST_TOTAL:
                amount = _decimal(value)
                if amount is not None:
                    row.cost_parts[key[len(s.AICOST_COST_PREFIX):-len(_PART_SUFFIX)]] = amount
    else:
        row.cost = None
        row.price_unknown_reason = unknown_reason_text(a.get(s.AICOST_PRICE_UNKNOWN_REASON))
        if row.price_unknown_reason is None and _flag(a.get(s.AICOST_USAGE_DEFERRED)):
            row.price_unknown_reason = DEFERRED_REASON
    return row


def _nearest_feature(span_id: str | None, parents: Mapping[str, str | None], features: Mapping[str, bool]
                     ) -> str | None:
    """The run of a span without ``aicost.run.id`` whose parent is ``span_id``: the first feature span at or above
    it, walking the parents this batch knows, if that feature is an older one (``features``: span id -> whether
    the feature span carries no ``aicost.run.id``); None when that feature carries it (the call did not run in
    it), when the walk reaches a root span of the batch that is not a feature (it ran in no feature), or when it
    leaves the batch (an ancestor that may be any span). See the module's docstring."""
    for _ in range(64):  # bounded: span ids come from outside
        if span_id is None:
            return None
        older = features.get(span_id)
        if older is not None:
            return span_id if older else None
        span_id = parents.get(span_id)  # None at a root span, and where the walk leaves the batch: no run
    return None


class LedgerSpanExporter(SpanExporter):
    """Writes aicost's costed spans to the ledger at ``url`` (through a background :class:`LedgerWriter`)."""

    def __init__(self, url: str, *, setting: str = "LedgerSpanExporter(url)", **writer_options: Any) -> None:
        self._writer = LedgerWriter(url, setting=setting, **writer_options)

    @property
    def writer(self) -> LedgerWriter:
        return self._writer

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        rows: list[LedgerRow | FeatureRun] = []
        walked: list[tuple[LedgerRow, str | None]] = []  # rows whose run is walked to, each with its parent id
        parents: dict[str, str | None] = {}  # span id -> parent span id, for the spans of this batch
        features: dict[str, bool] = {}  # feature span id -> an older one (without aicost.run.id), of this batch
        for span in spans:
            try:
                span_rows = rows_from_span(span)
                span_id = format(span.get_span_context().span_id, "016x")
                parents[span_id] = _parent_id(span)
                if span_rows and isinstance(span_rows[0], FeatureRun):
                    features[span_id] = s.AICOST_RUN_ID not in (span.attributes or {})
                elif span_rows and _walks(span):
                    walked.extend((row, parents[span_id]) for row in span_rows)
                rows.extend(span_rows)
            except Exception:
                from .._log import error_once

                self._writer.count_unreadable()
                error_once("ledger:span", "aicost ledger: could not read a span; it is not in the ledger (each one "
                           "is counted: dropped_unreadable in the writer's stats())")
        for row, parent_id in walked:
            row.run_id = _nearest_feature(parent_id, parents, features)
        self._writer.add(rows)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._writer.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        self._writer.close()
