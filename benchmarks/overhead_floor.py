"""The noise floor of the overhead method: an empty wrapper, measured exactly like aicost.

Why: an interleaved in-process benchmark on a shared 2-core box has offsets of tens of microseconds that have
nothing to do with the code under test (caches, frequency, allocation patterns). A wrapt pass-through that does
nothing costs well under a microsecond; whatever this script reports for it is the method's floor. Compare
aicost with no-op OpenTelemetry providers (its own bookkeeping: usage, pricing, hooks) and with SDK providers
(everything on) against that floor, not against zero.

The other arm that is not aicost, "the span alone", is the floor of any tool that records a span per call on the
calling thread, as the OpenTelemetry GenAI conventions and issue 2 ask: a wrapper that does nothing but make the
span aicost makes for this call (same name and kind, the same attributes, copied from a span aicost recorded,
set at start and at end as aicost sets them, current during the call) with the same SDK providers. No usage is
read and nothing is priced or metered. If it alone costs more than 5 % of a bare call, no such tool can add less.

Run: .venv/bin/python benchmarks/overhead_floor.py [--rounds N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx2  # noqa: E402
import openai  # noqa: E402
import wrapt  # noqa: E402
from opentelemetry.metrics import NoOpMeterProvider  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import NoOpTracerProvider  # noqa: E402
from openai.resources.chat.completions.completions import Completions  # noqa: E402
from span_alone import wrapper_making  # noqa: E402
from vendor_server import openai_chat_reply  # noqa: E402

import aicost  # noqa: E402


class _Drop(SpanExporter):
    def export(self, spans):  # type: ignore[override]
        return SpanExportResult.SUCCESS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()

    body = openai_chat_reply().body.encode()
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(200, headers={"content-type": "application/json"}, content=body))
    client = openai.OpenAI(api_key="t", base_url="http://x/v1", http_client=httpx2.Client(transport=transport),
                           max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(_Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    original = Completions.__dict__["create"]

    def per_call() -> float:
        for _ in range(30):
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        start = time.thread_time()
        for _ in range(args.calls):
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        return (time.thread_time() - start) / args.calls * 1e6

    def passthrough() -> float:
        Completions.create = wrapt.FunctionWrapper(original, lambda w, i, a, k: w(*a, **k))
        try:
            return per_call()
        finally:
            Completions.create = original

    def with_aicost(tp, mp) -> float:
        aicost.instrument(tracer_provider=tp, meter_provider=mp)
        try:
            return per_call()
        finally:
            aicost.uninstrument()

    def recorded_span() -> Any:
        """The span aicost makes for this call."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        aicost.instrument(tracer_provider=provider, meter_provider=NoOpMeterProvider())
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        finally:
            aicost.uninstrument()
        (span,) = exporter.get_finished_spans()
        return span

    recorded = recorded_span()
    span_wrapper = wrapper_making(tracer_provider.get_tracer("floor"), recorded)

    def span_only() -> float:
        Completions.create = wrapt.FunctionWrapper(original, span_wrapper)
        try:
            return per_call()
        finally:
            Completions.create = original

    arms = {
        "bare SDK": per_call,
        "empty wrapt wrapper (floor)": passthrough,
        f"the span alone ({len(recorded.attributes)} attributes)": span_only,
        "aicost, no-op providers": lambda: with_aicost(NoOpTracerProvider(), NoOpMeterProvider()),
        "aicost, SDK providers (all on)": lambda: with_aicost(tracer_provider, meter_provider),
    }
    samples: dict[str, list[float]] = {name: [] for name in arms}
    order = list(arms)
    for _ in range(args.rounds):
        random.shuffle(order)  # no arm always runs right after another
        for name in order:
            samples[name].append(arms[name]())
    bare = statistics.median(samples["bare SDK"])
    floor = statistics.median(samples["empty wrapt wrapper (floor)"])
    print(f"in-process chat.completions.create, CPU of the calling thread, median of {args.rounds} interleaved rounds "
          "(arm order shuffled per round)")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"  {name:34s} {median:7.0f} us   vs bare {median - bare:+5.0f} us ({(median / bare - 1) * 100:+5.1f} %)"
              f"   vs floor {median - floor:+5.0f} us")


if __name__ == "__main__":
    main()
