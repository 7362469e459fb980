"""Spans and metrics of cache lookups.

Each cached call gets one INTERNAL span ``aicost.cache <name>``; on a miss the LLM call spans are its children.
A hit records what it saved as ``aicost.cache.saved_usd`` (exact Decimal string) and in the
``aicost.cache.saved`` counter. Savings are deliberately *not* ``gen_ai.usage.cost`` and not the
``aicost.cost`` counter: a backend summing spend must never count money that was not spent.

Providers: those given to :func:`configure`, else those ``aicost.instrument()`` configured (when the core
exposes them), else the global OpenTelemetry providers.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace

from .. import _fork
from .. import semconv
from ..pricing.money import format_usd

_lock = _fork.lock()
_tracer_provider: Any = None
_meter_provider: Any = None
_instruments: dict[int, "_Instruments"] = {}


def configure(*, tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Send cache spans/metrics to these providers (tests, or apps not using the global providers)."""
    global _tracer_provider, _meter_provider
    with _lock:
        _tracer_provider = tracer_provider
        _meter_provider = meter_provider


def tracer() -> otel_trace.Tracer:
    provider = _tracer_provider or _core_provider("tracer_provider")
    if provider is not None:
        return provider.get_tracer("aicost.cache")
    return otel_trace.get_tracer("aicost.cache")


def instruments() -> "_Instruments":
    provider = _meter_provider or _core_provider("meter_provider") or otel_metrics.get_meter_provider()
    key = id(provider)
    inst = _instruments.get(key)
    if inst is None:
        with _lock:
            inst = _instruments.get(key)
            if inst is None:
                inst = _instruments[key] = _Instruments(provider.get_meter("aicost.cache"))
    return inst


def _core_provider(name: str) -> Any:
    """The provider ``aicost.instrument()`` was given (kept by ``aicost.telemetry`` / ``aicost.metrics``)."""
    try:
        if name == "tracer_provider":
            from .. import telemetry as core

            return getattr(getattr(core, "state", None), "tracer_provider", None)
        from .. import metrics as core_metrics

        return getattr(getattr(core_metrics, "_state", None), "meter_provider", None)
    except Exception:  # the core is optional for the cache: fall back to the global providers
        return None


class _Instruments:
    def __init__(self, meter: Any) -> None:
        self.lookups = meter.create_counter(
            semconv.METRIC_CACHE_LOOKUPS, unit="{lookup}", description="Cache lookups by outcome and tier"
        )
        self.saved = meter.create_counter(
            semconv.METRIC_CACHE_SAVED, unit="USD", description="Cost of the original calls that hits avoided"
        )
        self.verifier_cost = meter.create_counter(
            semconv.METRIC_CACHE_VERIFIER_COST, unit="USD",
            description="Cost of LLM judge calls that verified semantic candidates (net it against savings)",
        )
        self.lookup_duration = meter.create_histogram(
            semconv.METRIC_CACHE_LOOKUP_DURATION, unit="s", description="Time to decide hit or miss",
            explicit_bucket_boundaries_advisory=[0.0001 * 2**i for i in range(16)],
        )
        self.similarity = meter.create_histogram(
            semconv.METRIC_CACHE_SIMILARITY, unit="1", description="Similarity of the entry that was served",
            explicit_bucket_boundaries_advisory=[0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99, 1.0],
        )


def _low_cardinality_attribution() -> dict[str, str]:
    """Team and feature of the current attribution (never user or customer: metric labels must stay few)."""
    try:
        from ..attribution import current_attributes

        current = current_attributes()
    except Exception:
        return {}
    return {k: str(current[k]) for k in (semconv.AICOST_TEAM, semconv.AICOST_FEATURE) if current.get(k)}


def record_lookup(
    span: Any,
    *,
    name: str,
    outcome: str,
    tier: str | None,
    lookup_s: float,
    similarity: float | None = None,
    saved_usd: Decimal | None = None,
    verifier_cost_usd: Decimal | None = None,
    veto: str | None = None,
) -> None:
    """Put one lookup's facts on its span and metrics. ``outcome``: hit | miss | bypass | uncacheable."""
    hit = outcome == "hit"
    attrs: dict[str, Any] = {
        semconv.AICOST_CACHE_NAME: name,
        semconv.AICOST_CACHE_OUTCOME: outcome,
        semconv.AICOST_CACHE_HIT: hit,
        semconv.AICOST_CACHE_LOOKUP_DURATION: lookup_s,
    }
    if tier:
        attrs[semconv.AICOST_CACHE_TIER] = tier
    if similarity is not None:
        attrs[semconv.AICOST_CACHE_SIMILARITY] = float(similarity)
    if saved_usd is not None:
        attrs[semconv.AICOST_CACHE_SAVED_USD] = format_usd(saved_usd)
    if verifier_cost_usd:
        attrs[semconv.AICOST_CACHE_VERIFIER_COST_USD] = format_usd(verifier_cost_usd)
    if veto:
        attrs[semconv.AICOST_CACHE_VETO] = veto
    if span is not None:
        span.set_attributes(attrs)
    inst = instruments()
    metric_attrs = {semconv.AICOST_CACHE_NAME: name, semconv.AICOST_CACHE_OUTCOME: outcome}
    if tier:
        metric_attrs[semconv.AICOST_CACHE_TIER] = tier
    metric_attrs.update(_low_cardinality_attribution())  # savings per team / feature, like spend
    inst.lookups.add(1, metric_attrs)
    if outcome in ("hit", "miss"):
        inst.lookup_duration.record(lookup_s, metric_attrs)
    if hit and saved_usd is not None:
        inst.saved.add(float(saved_usd), metric_attrs)
    if hit and similarity is not None:
        inst.similarity.record(float(similarity), metric_attrs)
    if verifier_cost_usd:
        inst.verifier_cost.add(float(verifier_cost_usd), metric_attrs)  # netted against savings: the same labels
