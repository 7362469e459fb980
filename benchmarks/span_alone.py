"""The span alone: a wrapper that makes only the span aicost makes for a call, and nothing else.

Why: issue 2 asks for a span per call with the GenAI conventions' attributes *and* at most 5 % added per call.
This wrapper reads no usage, prices nothing and records no metric; it starts a span with the same name, kind and
attributes as a span aicost recorded for the same call (the sampler's few at start, the rest at the end, as
aicost sets them) and keeps it current during the call. What it costs is the floor of any tool that records such
a span on the calling thread with the OpenTelemetry SDK. ``overhead_floor.py`` times it and
``overhead_instructions.py`` counts it.
"""

from __future__ import annotations

from typing import Any, Callable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

# What aicost sets when the span starts (what a sampler may look at); the rest is set when the call ends.
AT_START = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "server.address")


def wrapper_making(tracer: Any, recorded: Any) -> Callable[..., Any]:
    """A ``wrapt`` wrapper that makes a copy of ``recorded`` (a finished span) around each call."""
    end_attrs = dict(recorded.attributes)
    start_attrs = {k: end_attrs.pop(k) for k in AT_START if k in end_attrs}
    name = recorded.name

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=start_attrs)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return wrapped(*args, **kwargs)
        finally:
            otel_context.detach(token)
            span.set_attributes(end_attrs)
            span.end()

    return wrapper
