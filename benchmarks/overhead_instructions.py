"""Per-call overhead in CPU instructions (valgrind's callgrind): deterministic where timings are noise.

Timings of a ~1 ms call on a shared 2-core box swing by tens of microseconds between runs (see
``overhead_floor.py``). callgrind counts the instructions the whole process executes instead: the same for the
same code and inputs, whatever else the machine does. Each arm runs N and 3N in-process ``chat.completions.create``
calls (httpx2.MockTransport, no network) after a warm-up; the difference divided by 2N is the per-call count, so
start-up and warm-up cancel out. All threads are counted, so metric points recorded off the call path count too.

Arms: bare SDK; an empty wrapt wrapper (the floor of any patching); aicost with no-op OpenTelemetry providers
(aicost's own work: usage, pricing, hooks, attribution); SDK tracer only; SDK meter only; everything on.

Run: .venv/bin/python benchmarks/overhead_instructions.py [--calls N]   (needs valgrind: apt-get install valgrind)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARMS = ["bare", "wrapper", "aicost-noop", "aicost-tracer", "aicost-meter", "aicost-all"]

WORKLOAD = r'''
import sys
sys.path.insert(0, {tests!r})
import httpx2, openai, wrapt
from vendor_server import openai_chat_reply
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from openai.resources.chat.completions.completions import Completions
import aicost
from aicost import metrics

class Drop(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS

arm, n = sys.argv[1], int(sys.argv[2])
body = openai_chat_reply().body.encode()
transport = httpx2.MockTransport(lambda r: httpx2.Response(200, headers={{"content-type": "application/json"}}, content=body))
client = openai.OpenAI(api_key="t", base_url="http://x/v1", http_client=httpx2.Client(transport=transport), max_retries=0)
def sdk_tracer():
    tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(Drop())); return tp
def sdk_meter():
    return MeterProvider(metric_readers=[InMemoryMetricReader()])
if arm == "wrapper":
    Completions.create = wrapt.FunctionWrapper(Completions.__dict__["create"], lambda w, i, a, k: w(*a, **k))
elif arm == "aicost-noop":
    aicost.instrument(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
elif arm == "aicost-tracer":
    aicost.instrument(tracer_provider=sdk_tracer(), meter_provider=NoOpMeterProvider())
elif arm == "aicost-meter":
    aicost.instrument(tracer_provider=NoOpTracerProvider(), meter_provider=sdk_meter())
elif arm == "aicost-all":
    aicost.instrument(tracer_provider=sdk_tracer(), meter_provider=sdk_meter())
messages = [{{"role": "user", "content": "hi"}}]
for _ in range(20 + n):
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
metrics.flush()
'''


def instructions(script: Path, arm: str, calls: int) -> int:
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.out", sys.executable, str(script), arm,
             str(calls)], capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(result.stderr[-2000:])
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "workload.py"
        script.write_text(WORKLOAD.format(tests=str(ROOT / "tests")))
        # Each valgrind run is one process, mostly Python start-up: run two at a time (counts are unaffected).
        from concurrent.futures import ThreadPoolExecutor

        jobs = [(arm, calls) for arm in ARMS for calls in (args.calls, 3 * args.calls)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            counts = dict(zip(jobs, pool.map(lambda job: instructions(script, *job), jobs)))
        per_call = {arm: (counts[(arm, 3 * args.calls)] - counts[(arm, args.calls)]) / (2 * args.calls)
                    for arm in ARMS}
    bare = per_call["bare"]
    print(f"in-process chat.completions.create: instructions per call (callgrind, {2 * args.calls} calls per arm)")
    for arm, count in per_call.items():
        print(f"  {arm:14s} {count:12,.0f}   {100 * (count - bare) / bare:+6.1f} % vs bare")


if __name__ == "__main__":
    main()
