"""What aicost adds to each event of a Realtime connection: ``parse_event`` on an audio delta (the most frequent
event, dozens per second of speech) and on ``response.done`` (once per response: pricing, span, metrics), bare
against instrumented, interleaved in one process. CPU time of the calling thread, median of rounds.

Run: .venv/bin/python benchmarks/realtime_events.py
"""

from __future__ import annotations

import json
import statistics
import time

import openai
from openai.resources.realtime.realtime import RealtimeConnection
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import aicost

DELTA = json.dumps({"type": "response.output_audio.delta", "event_id": "ev", "response_id": "resp_1",
                    "item_id": "item_1", "output_index": 0, "content_index": 0, "delta": "QUFB" * 600})
USAGE = {"total_tokens": 300, "input_tokens": 200, "output_tokens": 100,
         "input_token_details": {"text_tokens": 50, "audio_tokens": 150, "cached_tokens": 64,
                                 "cached_tokens_details": {"text_tokens": 32, "audio_tokens": 32}},
         "output_token_details": {"text_tokens": 20, "audio_tokens": 80}}


class _Drop(SpanExporter):
    def export(self, spans):  # type: ignore[override]
        return SpanExportResult.SUCCESS


def main() -> None:
    connection = RealtimeConnection.__new__(RealtimeConnection)  # parse_event needs no socket
    connection.__dict__["_aicost_model"] = "gpt-realtime-2025-08-28"
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(_Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    counter = iter(range(10**9))

    def response_pair() -> None:
        n = next(counter)
        response = {"id": f"resp_{n}", "object": "realtime.response", "status": "in_progress", "output": []}
        connection.parse_event(json.dumps({"type": "response.created", "event_id": "a", "response": response}))
        connection.parse_event(json.dumps({"type": "response.done", "event_id": "b",
                                           "response": {**response, "status": "completed", "usage": USAGE}}))

    def per_call(fn, n: int) -> float:
        start = time.thread_time()
        for _ in range(n):
            fn()
        return (time.thread_time() - start) / n * 1e6

    cases = {"audio delta event": (lambda: connection.parse_event(DELTA), 3000),
             "response.created + response.done": (response_pair, 300)}
    results: dict[tuple[str, bool], list[float]] = {}
    for _ in range(9):
        for on in (False, True):
            if on:
                aicost.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
            try:
                for name, (fn, n) in cases.items():
                    per_call(fn, n // 10)  # warm-up
                    results.setdefault((name, on), []).append(per_call(fn, n))
            finally:
                if on:
                    aicost.uninstrument()
    print(f"openai {openai.__version__}: parse_event, CPU of the calling thread, median of 9 interleaved rounds")
    for name in cases:
        bare, inst = (statistics.median(results[(name, on)]) for on in (False, True))
        print(f"  {name:34s} bare {bare:8.1f} us   instrumented {inst:8.1f} us   added {inst - bare:+7.1f} us")


if __name__ == "__main__":
    main()
