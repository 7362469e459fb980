"""What one more attribute on a call's span costs, in CPU instructions (valgrind's callgrind): ``aicost.run.id``.

The whole-call counts of ``overhead_instructions.py`` differ by up to ~9 k between two runs of the same code, more
than one attribute costs. This counts the span alone: an OpenTelemetry SDK span with the start and end attributes
aicost sets on an OpenAI chat call inside a feature, started, given its end attributes in one ``set_attributes``
(as ``_Call._finish`` does) and ended through a ``SimpleSpanProcessor``, with and without the run id (read from a
variable and stored in the dict behind an ``is not None`` test, as ``_Call._request_attributes`` does).
``_callgrind.per_iteration``: N spans minus N/10 in fresh processes, ``PYTHONHASHSEED=0``.

Run: python benchmarks/span_attribute_instructions.py [--n 20000]   (needs valgrind)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _callgrind  # benchmarks/_callgrind.py: the script's own directory is on sys.path

ROOT = Path(__file__).resolve().parent.parent

CODE = r'''
import sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
class Drop(SpanExporter):
    def export(self, spans): return SpanExportResult.SUCCESS
tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(Drop()))
tracer = tp.get_tracer("aicost", "0.1.0")
run_id = RUN
start = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
         "server.address": "api.openai.com"}
end = {"aicost.endpoint": "openai.chat.completions.create", "aicost.span.source": "aicost", "server.port": 443,
       "aicost.feature": "bench", "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.id": "c1",
       "gen_ai.response.finish_reasons": ("stop",), "openai.response.service_tier": "default",
       "gen_ai.usage.input_tokens": 9, "gen_ai.usage.output_tokens": 2, "gen_ai.usage.cost": 2.55e-06,
       "aicost.cost.total_usd": "0.00000255", "aicost.cost.input_usd": 1.35e-06, "aicost.cost.output_usd": 1.2e-06,
       "aicost.price.known": True, "aicost.price.model": "gpt-4o-mini", "aicost.price.source": "2026-12-01",
       "aicost.service_tier": "standard"}
for _ in range(int(sys.argv[1])):
    span = tracer.start_span("chat gpt-4o-mini", attributes=start)
    attrs = dict(end)
    if run_id is not None:
        attrs["aicost.run.id"] = run_id
    span.set_attributes(attrs)
    span.end()
'''


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000, help="spans in the long run (the short one: n // 10)")
    args = parser.parse_args()
    if not _callgrind.can_toggle():
        raise SystemExit("needs valgrind, its headers and a C compiler (apt-get install valgrind gcc)")
    counts = {label: _callgrind.per_iteration(CODE.replace("RUN", run), args.n, root=ROOT)
              for label, run in (("without aicost.run.id", "None"), ("with aicost.run.id", "'00f067aa0ba902b7'"))}
    for label, count in counts.items():
        print(f"{label:24s} {count:12,.0f} instructions per span")
    print(f"{'difference':24s} {counts['with aicost.run.id'] - counts['without aicost.run.id']:+12,.0f}")


if __name__ == "__main__":
    main()
