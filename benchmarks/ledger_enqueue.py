"""What the ledger adds on the calling thread: instructions per enqueued call (valgrind's callgrind), and time.

The ledger's hook listener (``LedgerWriter.on_call``) runs on the application's thread at the end of every call:
it copies what a row needs out of the ``CallResult`` into a tuple and appends it to the queue. Everything else
(rows, rollups, SQL) happens on the writer thread. This measures that listener alone, with a realistic result:
a priced gpt-4o-mini call with cache reads, attribution (team, feature, customer, a tag), a feature run, and a
recording OpenTelemetry SDK span. The writer thread is not started here, so only the calling thread is counted.

Instructions are deterministic (same code, same count, whatever the machine's load), as in
``overhead_instructions.py``; the time figure is a best-of on the shared box, for scale.

Run: python benchmarks/ledger_enqueue.py [--calls 2000]
Needs valgrind with its headers and a C compiler for the instruction count (apt-get install valgrind gcc).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _callgrind  # benchmarks/_callgrind.py: the script's own directory is on sys.path

ROOT = Path(__file__).resolve().parent.parent

SETUP = r'''
import sys, tempfile
sys.path.insert(0, {root!r})
from aicost.hooks import CallInfo, CallResult
from aicost.pricing import price_call
from aicost.usage import Usage
from aicost.vendor import DEFAULT_SHAPE
from aicost.ledger.writer import LedgerWriter
from opentelemetry.sdk.trace import TracerProvider

usage = Usage(input_tokens=1370, output_tokens=155, cache_read_tokens=1280)
cost = price_call("openai", "gpt-4o-mini-2024-07-18", usage)
span = TracerProvider().get_tracer("bench").start_span("chat gpt-4o-mini")
span.end()
info = CallInfo(provider="openai", operation="chat", endpoint="openai.chat.completions.create",
                request_model="gpt-4o-mini", kwargs={{"model": "gpt-4o-mini", "messages": []}}, stream=False,
                is_async=False, shape=DEFAULT_SHAPE)
attribution = {{"aicost.team": "search", "aicost.feature": "answer", "aicost.customer": "acme",
               "aicost.tag.env": "prod"}}
result = CallResult(info=info, usage=usage, cost=cost, response_model="gpt-4o-mini-2024-07-18", error_type=None,
                    duration_s=0.42, span=span, attribution=attribution, run_id="5e00000000000001",
                    started_ns=1_764_000_000_000_000_000)
writer = LedgerWriter(f"sqlite:///{{tempfile.mkdtemp()}}/bench.db", max_queue=10_000_000)
writer._thread = object()  # as if the writer thread ran; it does not, so only the calling thread is counted
writer.batch_size = 10_000_000  # and it is never woken
for _ in range(200):
    writer.on_call(result)
'''

WORKLOAD = SETUP + r'''
import ctypes, gc
cg = ctypes.CDLL({helper!r})
n = int(sys.argv[1])
gc.collect()
cg.cg_start()
cg.cg_dump(b"skip")
for _ in range(n):
    cg.cg_toggle(); writer.on_call(result); cg.cg_toggle()
cg.cg_dump(b"enqueue")
noop = lambda r: None  # the same region with a no-op listener: the toggles' own instructions, subtracted
for _ in range(n):
    cg.cg_toggle(); noop(result); cg.cg_toggle()
cg.cg_dump(b"baseline")
'''


def instructions(calls: int) -> float | None:
    if not _callgrind.can_toggle():
        print("valgrind / a C compiler / valgrind's headers missing: instruction count skipped")
        return None
    _, counts = _callgrind.regions(lambda helper: WORKLOAD.format(root=str(ROOT), helper=helper), [str(calls)],
                                   root=ROOT)
    return (counts["enqueue"] - counts["baseline"]) / calls


def seconds(calls: int) -> float:
    scope: dict = {}
    exec(SETUP.format(root=str(ROOT)), scope)
    writer, result = scope["writer"], scope["result"]
    best = float("inf")
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(calls):
            writer.on_call(result)
        best = min(best, (time.perf_counter() - t) / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    per_call = instructions(args.calls)
    if per_call is not None:
        print(f"instructions per enqueued call (calling thread, callgrind; a no-op listener subtracted): "
              f"{per_call:,.0f}")
        # overhead_instructions.py measured aicost's own code at about 3.7 k instructions per microsecond.
        print(f"  at 3.7 k instructions/us (aicost's measured rate): {per_call / 3700:.2f} us")
    print(f"time per enqueued call, best of 7 x {args.calls}: {seconds(args.calls) * 1e6:.2f} us")


if __name__ == "__main__":
    main()
