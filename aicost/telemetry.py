"""Spans: the one place that turns a call's request, usage and cost into OpenTelemetry attributes.

All names come from ``aicost.semconv``. Amounts are USD (the catalog's currency). Every attribute is validated by
the OpenTelemetry SDK on the calling thread, so only attributes that say something are set (no zero parts). Costs are exact: ``gen_ai.usage.cost`` is the de-facto double that
backends sum, and ``aicost.cost.total_usd`` carries the same amount as an exact decimal string, because a
double cannot hold every cent fraction that token prices produce.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Mapping

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import semconv as s
from ._log import error_once
from .pricing.money import sci_text
from .usage import Usage
from .vendor import RequestMeta, RequestShape, ResponseMeta

_INSTRUMENTATION_NAME = "aicost"


class _State:
    tracer_provider: Any = None
    tracer: Any = None
    capture_content: bool = False


state = _State()


def configure(tracer_provider: Any = None, capture_content: bool = False) -> None:
    from . import __version__

    state.tracer_provider = tracer_provider
    state.tracer = trace.get_tracer(_INSTRUMENTATION_NAME, __version__, tracer_provider=tracer_provider)
    state.capture_content = capture_content


def tracer() -> Any:
    if state.tracer is None:
        configure()
    return state.tracer


def span_name(operation: str, model: str | None) -> str:
    """``semconv.SPAN_NAME_FORMAT``, written out: ``str.format`` with keywords costs ~1 us on every call."""
    return f"{operation} {model}" if model else operation


def start_attributes(provider: str, operation: str, request: RequestMeta) -> dict[str, Any]:
    """What a sampler may look at when the span starts. Everything else is written when the call ends (spans
    are exported then anyway), so that less work sits between the call and its first chunk."""
    attrs: dict[str, Any] = {s.GEN_AI_OPERATION_NAME: operation, s.GEN_AI_PROVIDER_NAME: provider}
    if request.model:
        attrs[s.GEN_AI_REQUEST_MODEL] = request.model
    if request.server_address:
        attrs[s.SERVER_ADDRESS] = request.server_address
    return attrs


# The *_attributes functions below add to ``attrs``, the one dict a call's span gets at its end (a dict per
# function, merged, cost more than the rest of their work).

def request_attributes(attrs: dict[str, Any], endpoint: str, request: RequestMeta,
                       tier_keys: tuple[str, str] | None) -> None:
    """``tier_keys``: the vendor's (request, response) service-tier attributes (``Integration.tier_attributes``)."""
    attrs[s.AICOST_ENDPOINT] = endpoint
    attrs[s.AICOST_SPAN_SOURCE] = "aicost"
    if request.max_tokens is not None:
        attrs[s.GEN_AI_REQUEST_MAX_TOKENS] = request.max_tokens
    if request.stream:
        attrs[s.GEN_AI_REQUEST_STREAM] = True
    if request.service_tier and tier_keys is not None:
        attrs[tier_keys[0]] = request.service_tier
    if request.server_address and request.server_port:
        attrs[s.SERVER_PORT] = request.server_port


def start_span(operation: str, model: str | None, attributes: dict[str, Any], start_time_ns: int | None = None) -> Any:
    """A call's CLIENT span, or ``INVALID_SPAN`` (records nothing, never current) when it cannot be started: the
    OpenTelemetry SDK does not guard span processors, and one that raises in ``on_start`` raises here. The call
    goes on without a span, still priced, settled and recorded in metrics."""
    try:
        return tracer().start_span(span_name(operation, model), kind=SpanKind.CLIENT, attributes=attributes,
                                   start_time=start_time_ns)
    except Exception:
        error_once("span:start", "aicost: could not start a span (an OpenTelemetry span processor failed?); "
                                 "calls are still priced and recorded")
        return trace.INVALID_SPAN


def usage_attributes(attrs: dict[str, Any], usage: Usage) -> None:
    if not usage.counts_tokens:  # billed per character (tts-1): no token counts, rather than zeros
        attrs[s.AICOST_USAGE_INPUT_CHARACTERS] = usage.input_characters
        return
    attrs[s.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
    attrs[s.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
    if usage.cache_read_tokens:
        attrs[s.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        attrs[s.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] = usage.cache_write_tokens
        attrs[s.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_write_tokens
    if usage.cache_read_audio_tokens:
        attrs[s.AICOST_USAGE_CACHE_READ_AUDIO] = usage.cache_read_audio_tokens
    if usage.cache_read_image_tokens:
        attrs[s.AICOST_USAGE_CACHE_READ_IMAGE] = usage.cache_read_image_tokens
    if usage.cache_write_1h_tokens:
        attrs[s.AICOST_USAGE_CACHE_WRITE_1H] = usage.cache_write_1h_tokens
    if usage.reasoning_tokens:
        attrs[s.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
    if usage.input_audio_tokens:
        attrs[s.AICOST_USAGE_INPUT_AUDIO] = usage.input_audio_tokens
    if usage.output_audio_tokens:
        attrs[s.AICOST_USAGE_OUTPUT_AUDIO] = usage.output_audio_tokens
    if usage.input_image_tokens:
        attrs[s.AICOST_USAGE_INPUT_IMAGE] = usage.input_image_tokens
    if usage.output_image_tokens:
        attrs[s.AICOST_USAGE_OUTPUT_IMAGE] = usage.output_image_tokens
    if usage.web_search_requests:
        attrs[s.AICOST_USAGE_WEB_SEARCH_REQUESTS] = usage.web_search_requests
    if usage.estimated:
        attrs[s.AICOST_USAGE_ESTIMATED] = True


def cost_attributes(attrs: dict[str, Any], cost: Any) -> None:
    """``cost`` is an ``aicost.pricing.Cost``. An unknown price is said, never written as $0."""
    attrs[s.AICOST_PRICE_KNOWN] = bool(cost.known)
    if cost.model:
        attrs[s.AICOST_PRICE_MODEL] = cost.model
    if cost.source:
        attrs[s.AICOST_PRICE_SOURCE] = cost.source
    if cost.service_tier:
        attrs[s.AICOST_SERVICE_TIER] = cost.service_tier
    if cost.tier_reason:
        attrs[s.AICOST_PRICE_TIER_REASON] = cost.tier_reason
        if cost.tier:
            attrs[s.AICOST_PRICE_TIER] = cost.tier
        if cost.estimated:
            attrs[s.AICOST_COST_ESTIMATED] = True
    if cost.known and cost.total is not None:
        total: Decimal = cost.total
        # "0.00021", never "0.00021000" or "2.1E-4": a Cost's total is canonical already (pricing.money), so its
        # plain text is format_usd's, without normalising it again on every call: str() when it has no exponent
        # (a canonical amount of 1E-6 or more), a third of format()'s cost. The float is read from that text:
        # the same correctly rounded double as float(total), which would write the Decimal out once more.
        text = sci_text(total)  # str(total), with a capital E whatever the thread's context says
        if "E" in text:
            text = format(total, "f")
        attrs[s.GEN_AI_USAGE_COST] = float(text)
        attrs[s.AICOST_COST_TOTAL] = text
        for part, amount in cost.parts.items():  # zero parts say nothing: each attribute costs time on the call
            if amount:
                name = _PART_ATTRIBUTES.get(part)
                if name is None:
                    name = _PART_ATTRIBUTES[part] = f"{s.AICOST_COST_PREFIX}{part}_usd"
                attrs[name] = float(amount)


_PART_ATTRIBUTES: dict[str, str] = {}  # token class -> attribute name, built once per class


def sub_inference_attributes(sub_inferences: Any) -> dict[str, Any]:
    """Tokens of the parts billed at another model (``ResponseMeta.sub_inferences``), summed per kind: the
    models (one, or several, comma-separated), input and output tokens. Their cost is a part of the call's cost."""
    by_kind: dict[str, tuple[list[str], int, int]] = {}
    for kind, model, usage in sub_inferences:
        models, tokens_in, tokens_out = by_kind.get(kind, ([], 0, 0))
        if model and model not in models:
            models.append(model)
        by_kind[kind] = (models, tokens_in + usage.input_tokens, tokens_out + usage.output_tokens)
    attrs: dict[str, Any] = {}
    for kind, (models, tokens_in, tokens_out) in by_kind.items():
        if models:
            attrs[f"{s.AICOST_SUB_PREFIX}{kind}.model"] = ",".join(models)
        attrs[f"{s.AICOST_USAGE_SUB_PREFIX}{kind}.input_tokens"] = tokens_in
        attrs[f"{s.AICOST_USAGE_SUB_PREFIX}{kind}.output_tokens"] = tokens_out
    return attrs


def response_attributes(attrs: dict[str, Any], meta: ResponseMeta, tier_keys: tuple[str, str] | None) -> None:
    if meta.model:
        attrs[s.GEN_AI_RESPONSE_MODEL] = meta.model
    if meta.response_id:
        attrs[s.GEN_AI_RESPONSE_ID] = meta.response_id
    if meta.finish_reasons:
        attrs[s.GEN_AI_RESPONSE_FINISH_REASONS] = list(meta.finish_reasons)
    if meta.service_tier and tier_keys is not None:
        attrs[tier_keys[1]] = meta.service_tier
    if meta.audio_seconds is not None:
        attrs[s.AICOST_USAGE_AUDIO_SECONDS] = meta.audio_seconds
    if state.capture_content and meta.output_text:
        attrs[s.GEN_AI_OUTPUT_MESSAGES] = json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": meta.output_text}]}]
        )


def content_attributes(attrs: dict[str, Any], kwargs: Mapping[str, Any], *, shape: RequestShape) -> None:
    """Prompt text, only when the user opted in (``instrument(capture_content=True)`` or the OTel env var). The
    endpoint's ``RequestShape`` says where a request keeps its prompt and system instructions (required: a
    request read without it has no prompt)."""
    if not state.capture_content:
        return
    content = shape.content(kwargs if isinstance(kwargs, dict) else dict(kwargs))
    if content.get("input") is not None:
        attrs[s.GEN_AI_INPUT_MESSAGES] = json.dumps(content["input"], default=str)
    if content.get("system") is not None:
        attrs[s.GEN_AI_SYSTEM_INSTRUCTIONS] = json.dumps(content["system"], default=str)


def set_error(span: Any, error_type: str, description: str | None = None) -> None:
    span.set_attribute(s.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, description))


def error_type_of(exc: BaseException) -> str:
    """``error.type``: the error's own code when it has one as text (``exc.type`` / ``exc.code``), else the
    exception's qualified class name. An integration may read its SDK's errors better (``Integration.error_type``)."""
    code = getattr(exc, "type", None) or getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    return type(exc).__qualname__
