"""How budget decisions become visible: span attributes on the call and one counter metric.

Only decisions that change something are counted (blocked, downgraded, warned, callback, store_unavailable,
policy): an allowed call costs the hot path nothing here.
"""

from __future__ import annotations

from typing import Any

from .. import _fork
from .. import semconv

_lock = _fork.lock()
_counter: tuple[Any, Any] | None = None  # (meter provider it was created on, counter)


def _meter_provider() -> Any:
    try:
        from .. import metrics

        state = metrics._state  # the provider instrument(meter_provider=...) configured; None: the global one
        return None if state is None else state.meter_provider
    except Exception:
        return None


def _decisions_counter() -> Any:
    global _counter
    provider = _meter_provider()
    current = _counter
    if current is not None and current[0] is provider:
        return current[1]
    with _lock:
        from opentelemetry import metrics as otel_metrics

        from .. import __version__

        meter = otel_metrics.get_meter("aicost.budget", __version__, meter_provider=provider)
        counter = meter.create_counter(
            semconv.METRIC_BUDGET_DECISIONS, unit="{call}", description="Calls the budget guard refused or changed"
        )
        _counter = (provider, counter)
        return counter


def record_decision(info: Any, decision: str, name: str | None, extra: dict[str, Any] | None = None) -> None:
    """Mark the call's span and count the decision. Never raises."""
    try:
        attrs = info.span_attributes
        attrs[semconv.AICOST_BUDGET_DECISION] = decision
        if name is not None:
            attrs[semconv.AICOST_BUDGET_NAME if decision != "policy" else semconv.AICOST_POLICY_RULE] = name
        if extra:
            attrs.update(extra)
        labels = {
            semconv.AICOST_BUDGET_DECISION: decision,
            semconv.GEN_AI_PROVIDER_NAME: info.provider,
        }
        if name is not None:
            labels[semconv.AICOST_BUDGET_NAME if decision != "policy" else semconv.AICOST_POLICY_RULE] = name
        if info.request_model:
            labels[semconv.GEN_AI_REQUEST_MODEL] = info.request_model
        _decisions_counter().add(1, labels)
    except Exception:  # pragma: no cover - observability must not turn into an outage
        from .guard import log_once

        log_once("observe", "aicost: could not record a budget decision", exc_info=True)
