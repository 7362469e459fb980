"""The noise floor of the overhead method: an empty wrapper, measured exactly like aicost.

Why: an interleaved in-process benchmark on a shared 2-core box has offsets of tens of microseconds that have
nothing to do with the code under test (caches, frequency, allocation patterns). A wrapt pass-through that does
nothing costs well under a microsecond; whatever this script reports for it is the method's floor. Compare
aicost with no-op OpenTelemetry providers (its own bookkeeping: usage, pricing, hooks) and with SDK providers
(everything on) against that floor, not against zero.

Run: .venv/bin/python benchmarks/overhead_floor.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import httpx2  # noqa: E402
import openai  # noqa: E402
import wrapt  # noqa: E402
from opentelemetry.metrics import NoOpMeterProvider  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.trace import NoOpTracerProvider  # noqa: E402
from openai.resources.chat.completions.completions import Completions  # noqa: E402
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

    arms = {
        "bare SDK": per_call,
        "empty wrapt wrapper (floor)": passthrough,
        "aicost, no-op providers": lambda: with_aicost(NoOpTracerProvider(), NoOpMeterProvider()),
        "aicost, SDK providers (all on)": lambda: with_aicost(tracer_provider, meter_provider),
    }
    samples: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.rounds):
        for name, arm in arms.items():
            samples[name].append(arm())
    bare = statistics.median(samples["bare SDK"])
    floor = statistics.median(samples["empty wrapt wrapper (floor)"])
    print(f"in-process chat.completions.create, CPU of the calling thread, median of {args.rounds} interleaved rounds")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"  {name:32s} {median:7.0f} us   vs bare {median - bare:+5.0f} us   vs floor {median - floor:+5.0f} us")


if __name__ == "__main__":
    main()
