"""What the core records -> ledger rows, in two steps so that the call's thread does almost nothing.

:func:`call_item` runs on the calling thread (it is a hook listener): it copies the few plain values a row needs
out of the :class:`~aicost.hooks.CallResult` into a tuple, and keeps no reference to the span or to the request
(which holds the prompt). :func:`row_from_item` runs on the ledger's writer thread and builds the
:class:`~aicost.ledger.row.LedgerRow`. Cache hits and finished units of work arrive as hook events and are
turned into rows the same way.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from opentelemetry.trace import SpanContext

from .. import semconv
from ..hooks import CacheHit, CallResult, UnitFinished
from .days import from_ns
from .row import (CACHE_HIT, CALL, DEFERRED_REASON, REFUSAL, TOKEN_FIELDS, FeatureRun, LedgerRow,
                  unknown_reason_text)

__all__ = ["call_item", "event_item", "row_from_item", "attribution_fields"]

_CALL_ITEM, _HIT_ITEM, _RUN_ITEM = 0, 1, 2
_TAG = semconv.AICOST_TAG_PREFIX
_TAG_LEN = len(_TAG)


def _ids(span: Any) -> tuple[int, int]:
    """(trace id, span id) as ints; (0, 0) without a valid span. For cache hits and runs; a call's are read in
    :func:`call_item`."""
    try:
        context = span.get_span_context()
        return context.trace_id, context.span_id
    except Exception:
        return 0, 0


def _own_id() -> int:
    """The id of a row whose call or hit has no span, fixed when it is queued (not when its row is built): a row
    built twice from one item (spilled at exit while being written, then replayed) is then stored once."""
    return random.getrandbits(64) or 1


def call_item(result: CallResult) -> tuple:
    """The calling thread's share of the work: a flat tuple of what the row needs (about 1 us)."""
    info = result.info
    span = result.span
    try:
        context = span.get_span_context()
        # OpenTelemetry's SpanContext is a tuple whose first two fields are the ids (its trace_id / span_id
        # properties read self[0] / self[1]): indexing skips two Python-level property calls on every vendor call
        # (~1,000 instructions, benchmarks/ledger_enqueue.py). Any other context object is read by its attributes.
        if type(context) is SpanContext:
            trace_id, span_id = context[0], context[1]
        else:
            trace_id, span_id = context.trace_id, context.span_id
    except Exception:  # no span (or not an OpenTelemetry one)
        trace_id = span_id = 0
    if result.record_id:  # billed work that may be read again (a batch result): one row, however often it is read
        span_id = result.record_id
    elif not span_id:
        span_id = _own_id()
    refusal = result.refusal
    cost = result.cost
    extra = reason = None
    if refusal is not None:
        extra = (getattr(refusal, "requested_usd", None),
                 getattr(refusal, "budget", None) or getattr(refusal, "rule", None))
    elif cost is None or not cost.known:  # duration-billed audio (whisper-1): the seconds are only on the span
        reason = result.unknown_reason  # the span's aicost.price.unknown_reason, as the core made it
        attributes = getattr(span, "attributes", None)
        if attributes:
            extra = attributes.get(semconv.AICOST_USAGE_AUDIO_SECONDS)
    account = info.span_attributes
    return (_CALL_ITEM, result.started_ns, trace_id, span_id, info.provider, info.operation, info.endpoint,
            info.request_model, result.response_model, result.usage, cost, result.attribution,
            result.run_id, result.error_type, result.duration_s, extra,
            account.get(semconv.AICOST_CLIENT_PROJECT), account.get(semconv.AICOST_CLIENT_KEY_FINGERPRINT), reason)


def event_item(event: Any) -> tuple | None:
    if isinstance(event, CacheHit):
        trace_id, span_id = _ids(event.span)
        return (_HIT_ITEM, event.time_ns, trace_id, span_id or _own_id(), event.name,
                event.saved_usd, event.attribution, event.run_id)
    if isinstance(event, UnitFinished):
        trace_id, _ = _ids(event.span)
        return (_RUN_ITEM, event.time_ns, trace_id, event.run_id, event.name, event.outcome, event.attribution,
                event.calls, event.cost_usd, event.duration_s)
    return None


def attribution_fields(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """team / feature / user / customer / tags from span-style attribution attributes."""
    tags = {}
    for key, value in attributes.items():
        if key.startswith(_TAG):
            tags[key[_TAG_LEN:]] = str(value)
    return {
        "team": attributes.get(semconv.AICOST_TEAM),
        "feature": attributes.get(semconv.AICOST_FEATURE),
        "user": attributes.get(semconv.AICOST_USER),
        "customer": attributes.get(semconv.AICOST_CUSTOMER),
        "tags": tags,
    }


def _time(ns: int) -> datetime:
    if not ns:
        return datetime.now(timezone.utc)
    return from_ns(ns)


def _hex(value: int, width: int) -> str | None:
    return format(value, f"0{width}x") if value else None


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def row_from_item(item: tuple) -> LedgerRow | FeatureRun:
    """The writer thread's share: the LedgerRow (or FeatureRun) of one queued item, marked as within the ledger's
    bounds (:func:`~aicost.ledger.row.within_bounds`), which the store then does not check again: its attribution
    was checked where the application set it or, from upstream baggage, bounded when it arrived
    (:mod:`aicost.attribution`), its run id is a span id, its outcome checked by ``set_outcome``, and the reason is
    cut here; its ids are aicost's own (a span id, a batch result's 16-digit key) and its other texts the
    application's own call's (the model it asked for, its client's project, its cache and budget names) and its
    vendor's answer, kept as they are, as the application's own tags are."""
    kind = item[0]
    if kind == _CALL_ITEM:
        (_, started_ns, trace_id, span_id, provider, operation, endpoint, request_model, response_model, usage,
         cost, attribution, run_id, error_type, duration_s, extra, vendor_project, key_fingerprint, reason) = item
        row = LedgerRow(
            span_id=span_id if isinstance(span_id, str) else _hex(span_id, 16), kind=CALL, time=_time(started_ns),
            trace_id=_hex(trace_id, 32), provider=provider, operation=operation, endpoint=endpoint,
            request_model=request_model, response_model=response_model, run_id=run_id, error_type=error_type,
            duration_s=duration_s, vendor_project=vendor_project, api_key_fingerprint=key_fingerprint,
            **attribution_fields(attribution),
        )
        if usage is not None:
            for name in TOKEN_FIELDS:
                setattr(row, name, getattr(usage, name))
            row.estimated = bool(usage.estimated)
        if isinstance(extra, tuple):  # refused before it was sent: nothing spent, the worst case stopped
            row.kind = REFUSAL
            row.cost = Decimal(0)
            row.stopped_cost = _decimal(extra[0])
            row.budget = extra[1]
        elif cost is None:  # the core prices every billed call (an unknown price is a Cost): aicost failed here
            row.cost = None  # (its reason says so), or the call is deferred: it reported nothing to price
            row.price_known = False
            row.price_unknown_reason = unknown_reason_text(reason) if reason is not None else DEFERRED_REASON
        else:
            row.price_known = bool(cost.known)
            row.cost = cost.total if cost.known else None
            if not cost.known:
                row.price_unknown_reason = unknown_reason_text(reason)
            row.cost_parts = dict(cost.parts)
            row.price_source = cost.source or None
            row.price_model = cost.model
            row.service_tier = cost.service_tier
            row.estimated = row.estimated or bool(cost.estimated)
            if isinstance(extra, (int, float)):
                row.audio_seconds = float(extra)
        row._bounded = True
        return row
    if kind == _HIT_ITEM:
        _, time_ns, trace_id, span_id, name, saved, attribution, run_id = item
        row = LedgerRow(
            span_id=_hex(span_id, 16), kind=CACHE_HIT, time=_time(time_ns), trace_id=_hex(trace_id, 32),
            cost=Decimal(0), saved_cost=_decimal(saved), cache_name=name, run_id=run_id,
            **attribution_fields(attribution),
        )
        row._bounded = True
        return row
    _, time_ns, trace_id, run_id, name, outcome, attribution, calls, cost, duration_s = item
    fields = attribution_fields(attribution)
    fields.pop("feature", None)
    run = FeatureRun(run_id=run_id, feature=name, time=_time(time_ns), outcome=outcome, calls=int(calls),
                     cost=_decimal(cost) or Decimal(0), trace_id=_hex(trace_id, 32), duration_s=duration_s, **fields)
    run._bounded = True
    return run
