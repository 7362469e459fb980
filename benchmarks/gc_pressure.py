"""Garbage-collector pressure: what aicost leaves for Python's cyclic collector, per call.

Instruction counts of a single call miss a cost that only shows over many calls: objects that outlive the call
(kept in a queue, or caught in a reference cycle) are promoted to older GC generations and make collections of
the whole heap frequent. With anthropic's native tracing on, each such collection also made pydantic rebuild
cached generic models (about 1.6 ms each). This script counts, over 1,000 in-process calls per case (real SDK
clients, ``httpx2.MockTransport``), the collections per generation and the pydantic generic models built, and,
with ``gc.DEBUG_SAVEALL``, the objects each call leaves in reference cycles. Each arm runs in its own process.

Run: .venv/bin/python benchmarks/gc_pressure.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import gc, json, sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, {benchmarks!r}); sys.path.insert(0, {tests!r}); sys.path.insert(0, {root!r})
import overhead as ov
import aicost
from aicost import metrics
from opentelemetry import metrics as otel_metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
import pydantic._internal._generics as generics

arm, vendor, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3])
tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(ov.DroppingExporter()))
mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
trace.set_tracer_provider(tp); otel_metrics.set_meter_provider(mp)  # an app using OpenTelemetry: native tracing on
clients = ov.make_clients("in-process", None, ov.InProcessVendor())
if arm == "aicost":
    aicost.instrument(tracer_provider=tp, meter_provider=mp)
fn = ov.call_fn(clients[vendor], vendor, chunks)
built = [0]
create_generic_submodel = generics.create_generic_submodel
def counting(*args, **kwargs):
    built[0] += 1
    return create_generic_submodel(*args, **kwargs)
generics.create_generic_submodel = counting

def run():
    result = fn()
    if chunks:
        for _ in result:
            pass

for _ in range(30):
    run()
metrics.flush(); gc.collect()
collections = {{0: 0, 1: 0, 2: 0}}
def on_gc(phase, info):
    if phase == "start":
        collections[info["generation"]] += 1
gc.callbacks.append(on_gc)
built[0] = 0
for _ in range(1000):
    run()
gc.callbacks.remove(on_gc)
metrics.flush(); gc.collect()
gc.disable(); gc.set_debug(gc.DEBUG_SAVEALL)
for _ in range(100):
    run()
metrics.flush(); gc.collect()
cyclic = len(gc.garbage) / 100
print(json.dumps({{"collections": collections, "generic_models_built": built[0], "cyclic_per_call": cyclic}}))
'''

CASES = [("openai", 0, "chat.completions.create"), ("openai", 20, "chat stream, 20 chunks"),
         ("anthropic", 0, "messages.create"), ("anthropic", 20, "messages stream, 20 chunks")]


def measure(arm: str, vendor: str, chunks: int) -> dict:
    script = CHILD.format(benchmarks=str(ROOT / "benchmarks"), tests=str(ROOT / "tests"), root=str(ROOT))
    out = subprocess.run([sys.executable, "-c", script, arm, vendor, str(chunks)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print("per 1,000 in-process calls, OpenTelemetry SDK set globally (anthropic traces itself), everything on")
    print(f"{'case':30s} {'arm':7s} {'gen0/gen1/gen2 collections':>28s} {'generic models built':>22s} "
          f"{'objects in cycles per call':>28s}")
    for vendor, chunks, title in CASES:
        for arm in ("bare", "aicost"):
            r = measure(arm, vendor, chunks)
            c = r["collections"]
            print(f"{vendor + ' ' + title:30s} {arm:7s} {c['0']:>16d}/{c['1']}/{c['2']:<9d} "
                  f"{r['generic_models_built']:>22d} {r['cyclic_per_call']:>28.1f}")


if __name__ == "__main__":
    main()
