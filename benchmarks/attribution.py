"""What attribution adds to each LLM call, measured.

Run: ``.venv/bin/python benchmarks/attribution.py`` (from the checkout root). Prints:

1. Micro costs, in nanoseconds per operation (best of 5 repeats): ``current_attributes()`` (what the core calls
   at every span start) with no scope, inside nested scopes, and with upstream baggage; entering and leaving
   ``attribute`` as ``with`` and as a decorator; a ``feature`` unit of work (span + rollup); ``metrics.record_call``.
2. Whole calls: a real OpenAI SDK call, instrumented, against the loopback vendor (running in its own process so
   it does not share this GIL), interleaved in rounds: bare, inside ``attribute(...)``, inside ``feature(...)``.
   The medians and their differences are the added cost per call, as measured in this run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry import context as otel_context, propagate  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

import aicost  # noqa: E402
from aicost import hooks, metrics  # noqa: E402
from aicost.attribution import attribute, current_attributes, feature, set_tracer_provider  # noqa: E402
from aicost.usage import Usage  # noqa: E402
from aicost.vendor import DEFAULT_SHAPE  # noqa: E402


def per_op_ns(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9


def micro(exporter: InMemorySpanExporter) -> None:
    print("== micro (ns per operation, best of 5)")
    n = 200_000
    print(f"current_attributes(), no scope              {per_op_ns(current_attributes, n):8.0f}")
    with attribute(team="search", feature="answer"), attribute(customer="acme", region="eu"):
        print(f"current_attributes(), 2 nested scopes       {per_op_ns(current_attributes, n):8.0f}")
    token = otel_context.attach(propagate.extract({"baggage": "aicost.team=up,aicost.feature=f"}))
    with attribute(customer="acme"):
        print(f"current_attributes(), scope + upstream bag  {per_op_ns(current_attributes, n):8.0f}")
    otel_context.detach(token)

    scope = attribute(team="search", feature="answer")

    def with_scope() -> None:
        with scope:
            pass

    def with_private_scope() -> None:
        with attribute(user="u-1"):  # user is not propagated: no baggage context switch
            pass

    @attribute(team="search")
    def decorated() -> None:
        pass

    def plain() -> None:
        pass

    n = 50_000
    base = per_op_ns(plain, n)
    print(f"with attribute(team, feature): enter+exit   {per_op_ns(with_scope, n):8.0f}")
    print(f"with attribute(user=...) new each time      {per_op_ns(with_private_scope, n):8.0f}")
    print(f"@attribute decorated call minus plain call  {per_op_ns(decorated, n) - base:8.0f}")

    def unit() -> None:
        with feature("summarize"):
            pass

    print(f"with feature(...): span + rollup + metric   {per_op_ns(unit, 5_000):8.0f}")
    exporter.clear()

    info = hooks.CallInfo("openai", "chat", "openai.chat.completions.create", "gpt-4o-mini", {}, False, False,
                          shape=DEFAULT_SHAPE)
    from aicost.pricing import price_call

    usage = Usage(input_tokens=1200, output_tokens=300)
    result = hooks.CallResult(info, usage, price_call("openai", "gpt-4o-mini", usage), "gpt-4o-mini", None, 0.4)
    attrs = {"aicost.team": "search", "aicost.feature": "answer"}
    print(f"metrics.record_call (3 instruments)         {per_op_ns(lambda: metrics.record_call(result, attrs), 20_000):8.0f}")


def start_vendor() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "vendor_server.py")], stdout=subprocess.PIPE,
                            text=True)
    url = proc.stdout.readline().strip()
    return proc, url


def whole_calls(exporter: InMemorySpanExporter) -> None:
    import openai

    proc, url = start_vendor()
    try:
        client = openai.OpenAI(api_key="test", base_url=f"{url}/v1", max_retries=0)
        msgs = [{"role": "user", "content": "hello there"}]

        def call() -> None:
            client.chat.completions.create(model="gpt-4o-mini", messages=msgs)

        def call_attributed() -> None:
            with attribute(team="search", feature="answer", customer="acme"):
                client.chat.completions.create(model="gpt-4o-mini", messages=msgs)

        def call_in_unit() -> None:
            with feature("answer", team="search"):
                client.chat.completions.create(model="gpt-4o-mini", messages=msgs)

        variants = {"bare": call, "attribute": call_attributed, "feature": call_in_unit}
        for fn in variants.values():  # warm up connections and imports
            for _ in range(50):
                fn()
        samples: dict[str, list[float]] = {k: [] for k in variants}
        rounds, per_round = 40, 25
        for _ in range(rounds):
            for name, fn in variants.items():  # interleaved, so drift hits all variants alike
                t0 = time.perf_counter()
                for _ in range(per_round):
                    fn()
                samples[name].append((time.perf_counter() - t0) / per_round * 1e6)
            exporter.clear()
        med = {k: statistics.median(v) for k, v in samples.items()}
        print(f"== whole instrumented OpenAI call over loopback HTTP (median of {rounds} rounds x {per_round}, us)")
        for name in variants:
            extra = med[name] - med["bare"]
            print(f"{name:10s} {med[name]:8.1f} us/call   added vs bare: {extra:+7.1f} us ({extra / med['bare']:+.1%})")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    aicost.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    set_tracer_provider(tracer_provider)
    print(f"python {sys.version.split()[0]}")
    micro(exporter)
    whole_calls(exporter)


if __name__ == "__main__":
    main()
