"""Helpers for the cache tests: a stand-in "LLM call" that reports an exact cost through aicost.hooks.

The unit tests of the cache need calls whose cost is known to the cent without a vendor server; they feed the
active call collectors exactly as the instrumentation core does after a real call (tests/test_cache_e2e.py does
the same through the real OpenAI SDK over loopback HTTP).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aicost import hooks
from aicost.usage import Usage


@dataclass(frozen=True)
class FakeCost:
    total: Decimal
    known: bool = True


def fake_llm_call(cost: str = "0.0125", model: str = "gpt-4o-mini") -> None:
    """Report one billable call of exactly ``cost`` USD to the collectors active here (as the core does)."""
    info = hooks.CallInfo(provider="openai", operation="chat", endpoint="openai.chat.completions.create",
                          request_model=model, kwargs={}, stream=False, is_async=False)
    result = hooks.CallResult(info=info, usage=Usage(input_tokens=10, output_tokens=5), cost=FakeCost(Decimal(cost)),
                              response_model=model, error_type=None, duration_s=0.01)
    for collector in hooks.active_collectors():
        collector.add(result)


class CacheTelemetry:
    """Private in-memory providers for the cache's spans and metrics (aicost.cache.configure)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def cache_spans(self) -> list[Any]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith("aicost.cache ")]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        out = []
        for rm in (data.resource_metrics if data else []):
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        out.extend(m.data.data_points)
        return out
