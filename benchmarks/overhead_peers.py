"""aicost's added time per call next to a peer's, measured the same way in the same process.

Run: ``python benchmarks/overhead_peers.py`` in an environment that has the peer installed besides aicost. The
peer is OpenLLMetry (``pip install opentelemetry-instrumentation-openai opentelemetry-instrumentation-anthropic``);
install it in a separate environment: aicost does not need it.

Why not simply a third arm of ``benchmarks/overhead.py``: that script toggles ``instrument()`` /
``uninstrument()`` between interleaved blocks. OpenLLMetry cannot be toggled: after each of its ``instrument()`` /
``uninstrument()`` cycles an *uninstrumented* OpenAI call got slower (measured here: about 1 ms per call at first,
6 ms after eight cycles). One process per arm does not work either: on this machine the same uninstrumented call
took 0.73 ms in one fresh process and 1.23 ms in the next, far more than the differences being measured. So, in
one process, interleaved blocks as in ``overhead.py``:

1. no instrumentation vs aicost (``instrument()`` / ``uninstrument()`` between blocks), then
2. with OpenLLMetry instrumented once: blocks run inside OpenTelemetry's "suppress instrumentation" context (its
   wrappers then pass straight through to the SDK) vs blocks without it. The suppressed blocks still pay the
   wrappers' pass-through check, so this slightly *understates* the peer's cost. Neither the Anthropic SDK's own
   tracing nor aicost reads that context, so Anthropic's native span is made in every block of both parts.

Everything else is ``overhead.py``'s method and workload: real SDK clients over the in-process transport, the
OpenTelemetry SDK tracer and meter providers installed globally, a span processor whose exporter drops spans, CPU
time of the calling thread, medians. Each tool runs with its defaults (OpenLLMetry's include prompt capture).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aicost  # noqa: E402
from overhead import (  # noqa: E402
    LONG,
    SHORT,
    DroppingExporter,
    InProcessVendor,
    Samples,
    call_fn,
    figure,
    make_clients,
    measure_block,
    merged,
    spread,
)

warnings.filterwarnings("ignore", message="The model .* is deprecated", category=DeprecationWarning)


def openllmetry(tracer_provider: Any, meter_provider: Any) -> None:
    from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    for instrumentor in (OpenAIInstrumentor(), AnthropicInstrumentor()):
        instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)


@contextlib.contextmanager
def suppressed() -> Iterator[None]:
    """OpenTelemetry's switch that instrumentations honour: their wrappers call the SDK and record nothing."""
    from opentelemetry import context
    from opentelemetry.instrumentation.utils import _SUPPRESS_INSTRUMENTATION_KEY

    token = context.attach(context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        context.detach(token)


def interleave(fns: dict[str, Callable[[], Any]], arms: dict[str, Callable[[], Any]], rounds: int, calls: int,
               rng: random.Random) -> dict[str, list[Samples]]:
    """``arms``: name -> a function returning the context manager the arm's blocks run in."""
    out: dict[str, list[Samples]] = {name: [] for name in arms}
    for _ in range(rounds):
        order = list(arms)
        rng.shuffle(order)
        for name in order:
            samples = Samples()
            out[name].append(samples)
            with arms[name]():
                measure_block(fns, samples, calls)
    return out


@contextlib.contextmanager
def aicost_on(providers: dict) -> Iterator[None]:
    aicost.instrument(tracer_provider=providers["tp"], meter_provider=providers["mp"])
    try:
        yield
    finally:
        aicost.uninstrument()


def line(title: str, unit: str, key: str, base_rounds: list[Samples], on_rounds: list[Samples]) -> str:
    base, on = figure(merged(base_rounds), key, "cpu") * 1e6, figure(merged(on_rounds), key, "cpu") * 1e6
    pct = f" ({100 * (on - base) / base:+.1f} %)" if key != "chunk" else ""
    return f"{title:20s} {base:8.2f} -> {on:8.2f} {unit:8s} added {on - base:+8.2f}{pct:10s} " \
           f"{spread(base_rounds, on_rounds, key, 'cpu')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds per part")
    parser.add_argument("--calls", type=int, default=30, help="non-stream calls per block")
    parser.add_argument("--vendor", choices=["openai", "anthropic", "both"], default="both")
    args = parser.parse_args(argv)
    import importlib.util

    missing = [m for m in ("opentelemetry.instrumentation.openai", "opentelemetry.instrumentation.anthropic")
               if importlib.util.find_spec(m) is None]
    if missing:
        print(f"the peer is not installed ({', '.join(missing)}): pip install opentelemetry-instrumentation-openai "
              "opentelemetry-instrumentation-anthropic, in a separate environment", file=sys.stderr)
        return 2

    import anthropic
    import openai
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    tracer_provider = TracerProvider()
    exporter = DroppingExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    providers = {"tp": tracer_provider, "mp": MeterProvider(metric_readers=[InMemoryMetricReader()])}
    print(f"aicost vs OpenLLMetry, one process: python {platform.python_version()}, openai {openai.__version__}, "
          f"anthropic {anthropic.__version__}, {os.cpu_count()} CPUs; {args.rounds} interleaved rounds per part, "
          f"{args.calls} calls per block; CPU time of the calling thread, in-process transport; medians")
    vendors = ["openai", "anthropic"] if args.vendor == "both" else [args.vendor]
    clients = make_clients("in-process", None, InProcessVendor())
    fns = {vendor: {"call": call_fn(clients[vendor], vendor, 0), "short": call_fn(clients[vendor], vendor, SHORT),
                    "long": call_fn(clients[vendor], vendor, LONG)} for vendor in vendors}
    rng = random.Random(20261123)
    parts = {vendor: interleave(fns[vendor], {"off": contextlib.nullcontext, "aicost": lambda: aicost_on(providers)},
                                args.rounds, args.calls, rng) for vendor in vendors}
    openllmetry(providers["tp"], providers["mp"])  # once: it cannot be uninstrumented cleanly (see above)
    for vendor in vendors:
        parts[vendor].update(interleave(fns[vendor], {"suppressed": suppressed, "openllmetry": contextlib.nullcontext},
                                        args.rounds, args.calls, rng))
    for vendor in vendors:
        r = parts[vendor]
        print(f"\n== {vendor} ({'chat.completions' if vendor == 'openai' else 'messages'}.create)")
        for key, title, unit in (("call", "non-stream call", "us/call"), ("ttfc", "stream, first chunk", "us"),
                                 ("chunk", "stream, per chunk", "us/chunk")):
            print("  aicost      " + line(title, unit, key, r["off"], r["aicost"]))
            print("  openllmetry " + line(title, unit, key, r["suppressed"], r["openllmetry"]))
    print(f"\n(spans exported: {exporter.exported}; 'suppressed' is OpenLLMetry instrumented but switched off by "
          f"OpenTelemetry's suppress-instrumentation context)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
