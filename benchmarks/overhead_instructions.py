"""What ``aicost.instrument()`` adds, counted in CPU instructions (valgrind's callgrind): deterministic.

Timings of a sub-millisecond call on a shared 2-core box swing by tens of microseconds between runs (see
``overhead_floor.py``), which is more than the differences issue 2 asks about. callgrind counts the instructions
a thread executes instead: the same for the same code and inputs, whatever else the machine does.

How: each arm runs in its own process under ``valgrind --tool=callgrind``. The workload turns counting on only
around the region being measured (``CALLGRIND_TOGGLE_COLLECT`` from a tiny C helper compiled at start-up and
loaded with ctypes) and dumps one profile per region, so interpreter start-up, imports and warm-up calls are
not counted. Counts are per thread: the figures below are the **calling thread**, which is what the
application waits for. Metric points are recorded off the call path (``aicost.metrics``); that work is counted
separately (``metrics.flush()`` on the same thread after each block, its instructions divided by the calls) and
reported as *background*.

Regions (real SDK clients over an in-process ``httpx2.MockTransport``: real HTTP messages, no socket; boto3 through
botocore's ``before-send`` event, which answers after the request is built and signed, a stream with AWS
event-stream messages built here, CRCs and all, as ConverseStream sends them):

* ``call``: a non-streaming ``chat.completions.create`` / ``messages.create`` / Gemini ``generate_content`` /
  Bedrock ``converse`` (vendor ``bedrock-invoke``: ``invoke_model``), from the call until it returns.
* ``first chunk``: ``create(stream=True)`` (Gemini ``generate_content_stream``, Bedrock ``converse_stream``,
  ``bedrock-invoke``: ``invoke_model_with_response_stream`` of Claude's Messages chunks) until the first chunk
  (event) is in the caller's hand.
* ``per chunk``: (whole 200-chunk stream - whole 20-chunk stream) / 180.

Python's cyclic garbage collector runs as usual and is counted: every block starts after ``gc.collect()``, so the
collections a block triggers are caused by its own calls. ``PYTHONHASHSEED=0`` in every arm: with random string
hashing, dict and set layouts (and so instruction counts) differ from process to process, by up to ~25 k per
call and several k per chunk between two runs of the same code. (That is how a cost invisible to a per-function view
was found: queued metric points that kept spans alive made full collections frequent.)

Arms: ``bare`` (no aicost); ``aicost, no-op OTel`` (aicost's own work: usage, pricing, hooks, attribution, with
the OpenTelemetry API's no-op tracer and meter); ``aicost, everything on`` (SDK ``TracerProvider`` with a span
processor and exporter, SDK ``MeterProvider`` with a reader, given to ``instrument()``: what issue 2's target is
stated for); ``aicost, span sampled out`` (the same, with a sampler that drops the span, as head sampling does to
most calls in production: cost and metrics are still recorded). A second pair sets the same SDK providers globally, as an application using OpenTelemetry does:
``bare-otel`` without aicost, ``aicost-all-otel`` with it. There anthropic 2.x makes its own span in both arms and
aicost writes onto it, so the Anthropic difference is aicost's own cost on top of the SDK's tracing. The OpenAI
client talks to ``https://api.openai.com/v1`` (answered in-process), so aicost adds ``include_usage`` to
streams as it does for real users, and the reply carries the usage chunk in every arm.

``--feature``: in the aicost arms, every call (warm-up and measured) runs inside one ``aicost.feature`` run, entered
before the first block and left after the last, uncounted: what a call in a feature adds (its run collected, its run
id on its span). The arms without aicost (``bare``, ``bare-otel``, ``span-alone``) run outside any feature, as an
application without aicost would: they are what the aicost arms are compared with. (The ``with`` itself is not
counted in any arm, so there is no cost of it to cancel.)

Run: .venv/bin/python benchmarks/overhead_instructions.py [--calls N] [--arms A,B] [--vendors V,W]
[--regions call,first,chunk] [--keep DIR] [--feature]
Needs valgrind with its headers and a C compiler (Debian: apt-get install valgrind gcc).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDORS = ("openai", "anthropic", "gemini", "bedrock", "bedrock-invoke")
ARMS = ("bare", "aicost-noop", "aicost-all", "aicost-sampled-out", "bare-otel", "aicost-all-otel", "span-alone")
ARM_TITLES = {"bare": "bare SDK", "aicost-noop": "aicost, no-op OTel", "aicost-all": "aicost, everything on",
              "aicost-sampled-out": "aicost, span sampled out",
              "bare-otel": "bare SDK, OTel SDK global", "aicost-all-otel": "aicost, everything on",
              "span-alone": "the span alone"}

HELPER_C = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
void cg_dump(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""

WORKLOAD = r'''
import ctypes, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
import gc, httpx2, openai, anthropic, threading, os
from vendor_server import (anthropic_message_reply, anthropic_stream_reply, openai_chat_reply,
                           openai_chat_stream_reply)
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
import aicost
from aicost import metrics

cg = ctypes.CDLL({helper!r})
arm, n = sys.argv[1], int(sys.argv[2])
vendors, regions = sys.argv[3].split(","), sys.argv[4].split(",")
# --feature: only the aicost arms run inside the feature (bare, bare-otel and span-alone run no aicost code, and a
# feature's span and baggage in their context would make them not bare: bare-otel's anthropic span its child).
in_feature = sys.argv[5] == "feature" and arm.startswith("aicost")

class Drop(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS

def render(reply):
    headers = {{"content-type": reply.content_type or "application/json", **reply.headers}}
    if reply.chunks is None:
        return headers, reply.body.encode(), None
    return headers, None, [c.encode() if isinstance(c, str) else c for c in reply.iter_chunks()]

canned = {{("openai", 0): render(openai_chat_reply()), ("anthropic", 0): render(anthropic_message_reply())}}
for k in (20, 200):
    canned[("openai", k)] = render(openai_chat_stream_reply(k))
    canned[("anthropic", k)] = render(anthropic_stream_reply(k))

def handle(request):
    vendor = "anthropic" if request.url.path.endswith("/messages") else "openai"
    k = int(request.headers.get("x-chunks", "0"))
    headers, body, chunks = canned[(vendor, k)]
    return httpx2.Response(200, headers=headers, content=body if chunks is None else iter(chunks))

http = httpx2.Client(transport=httpx2.MockTransport(handle))
oai = openai.OpenAI(api_key="t", base_url="https://api.openai.com/v1", http_client=http, max_retries=0)
ant = anthropic.Anthropic(api_key="t", base_url="https://api.anthropic.com", http_client=http, max_retries=0)

# Gemini (google-genai over the same kind of in-process transport) and Bedrock (boto3: botocore's before-send event
# answers in-process, after the request is built and signed), each with a reply shaped like the recordings.
import json
from google import genai
from google.genai import types as gtypes
GEMINI_USAGE = {{"promptTokenCount": 6, "candidatesTokenCount": 2, "totalTokenCount": 8,
                 "promptTokensDetails": [{{"modality": "TEXT", "tokenCount": 6}}]}}
def gemini_chunk(text, usage=None, finish=None):
    candidate = {{"content": {{"parts": [{{"text": text}}], "role": "model"}}, "index": 0}}
    if finish: candidate["finishReason"] = finish
    body = {{"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "r1"}}
    if usage: body["usageMetadata"] = usage
    return body
def gemini_handle(request):
    k = int(request.headers.get("x-chunks", "0"))
    if not k:
        return httpx2.Response(200, json=gemini_chunk("Hello", GEMINI_USAGE, "STOP"))
    events = [("data: " + json.dumps(gemini_chunk("tok " if i < k - 1 else "end", GEMINI_USAGE if i == k - 1 else None,
                                                  "STOP" if i == k - 1 else None)) + "\r\n\r\n").encode()
              for i in range(k)]
    return httpx2.Response(200, headers={{"content-type": "text/event-stream"}}, content=iter(events))
gem = genai.Client(api_key="t", http_options=gtypes.HttpOptions(
    httpx_client=httpx2.Client(transport=httpx2.MockTransport(gemini_handle)),
    retry_options=gtypes.HttpRetryOptions(attempts=1)))

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config
CONVERSE = json.dumps({{"output": {{"message": {{"role": "assistant", "content": [{{"text": "Hello"}}]}}}},
                        "stopReason": "end_turn", "usage": {{"inputTokens": 6, "outputTokens": 2, "totalTokens": 8}},
                        "metrics": {{"latencyMs": 100}}}}).encode()
class Raw:
    def __init__(self, data): self.data = data
    def stream(self, *args, **kwargs): yield self.data
    def read(self, *args, **kwargs): return self.data
    def close(self): pass
import struct, zlib
def event_message(event_type, payload):
    """One AWS event-stream message (what ConverseStream sends): prelude, string headers, JSON payload, CRCs."""
    headers = b"".join(bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
                       for k, v in ((":event-type", event_type), (":content-type", "application/json"),
                                    (":message-type", "event")))
    body = json.dumps(payload).encode()
    prelude = struct.pack(">II", 16 + len(headers) + len(body), len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + body
    return message + struct.pack(">I", zlib.crc32(message))
def converse_stream(k):
    events = [event_message("messageStart", {{"role": "assistant"}})]
    events += [event_message("contentBlockDelta", {{"contentBlockIndex": 0, "delta": {{"text": "tok "}}}})
               for _ in range(k)]
    events += [event_message("contentBlockStop", {{"contentBlockIndex": 0}}),
               event_message("messageStop", {{"stopReason": "end_turn"}}),
               event_message("metadata", {{"usage": {{"inputTokens": 6, "outputTokens": k, "totalTokens": 6 + k}},
                                           "metrics": {{"latencyMs": 100}}}})]
    return events
CONVERSE_STREAMS = {{k: converse_stream(k) for k in (20, 200)}}
import base64
def invoke_chunk(payload):
    """One InvokeModelWithResponseStream ``chunk`` event: the model's JSON, base64 in the event's own JSON."""
    return event_message("chunk", {{"bytes": base64.b64encode(json.dumps(payload).encode()).decode()}})
def invoke_stream(k):
    """Claude's Messages events, as InvokeModelWithResponseStream sends them (the recordings' shapes)."""
    events = [invoke_chunk({{"type": "message_start", "message": {{
                  "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-sonnet-20240620",
                  "content": [], "stop_reason": None, "usage": {{"input_tokens": 6, "output_tokens": 1}}}}}}),
              invoke_chunk({{"type": "content_block_start", "index": 0, "content_block": {{"type": "text", "text": ""}}}})]
    events += [invoke_chunk({{"type": "content_block_delta", "index": 0,
                              "delta": {{"type": "text_delta", "text": "tok "}}}}) for _ in range(k)]
    events += [invoke_chunk({{"type": "content_block_stop", "index": 0}}),
               invoke_chunk({{"type": "message_delta", "delta": {{"stop_reason": "end_turn"}},
                              "usage": {{"output_tokens": k}}}}),
               invoke_chunk({{"type": "message_stop", "amazon-bedrock-invocationMetrics": {{
                   "inputTokenCount": 6, "outputTokenCount": k, "invocationLatency": 100, "firstByteLatency": 10}}}})]
    return events
INVOKE_STREAMS = {{k: invoke_stream(k) for k in (20, 200)}}
INVOKE_BODY = json.dumps({{"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                           "messages": [{{"role": "user", "content": "Say hello in one word."}}]}})
INVOKE_REPLY = json.dumps({{"id": "msg_1", "type": "message", "role": "assistant", "content": [{{"type": "text",
                           "text": "Hello"}}], "stop_reason": "end_turn", "usage": {{"input_tokens": 6,
                           "output_tokens": 2}}}}).encode()
class RawEvents(Raw):
    def stream(self, *args, **kwargs): yield from self.data
def bedrock_send(request, **kwargs):
    k = bedrock_k  # the block's chunk count
    url = request.url
    if url.endswith("/invoke-with-response-stream"):
        return AWSResponse(url, 200, {{"content-type": "application/vnd.amazon.eventstream",
                                       "x-amzn-requestid": "r1"}}, RawEvents(INVOKE_STREAMS[k]))
    if url.endswith("/invoke"):
        return AWSResponse(url, 200, {{"content-type": "application/json", "x-amzn-requestid": "r1",
                                       "x-amzn-bedrock-input-token-count": "6",
                                       "x-amzn-bedrock-output-token-count": "2"}}, Raw(INVOKE_REPLY))
    if not k:
        return AWSResponse(url, 200, {{"content-type": "application/json", "x-amzn-requestid": "r1"}},
                           Raw(CONVERSE))
    return AWSResponse(url, 200, {{"content-type": "application/vnd.amazon.eventstream",
                                   "x-amzn-requestid": "r1"}}, RawEvents(CONVERSE_STREAMS[k]))
bedrock_k = 0
brt = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t",
                   config=Config(retries={{"max_attempts": 1}}))
brt.meta.events.register("before-send.bedrock-runtime.*", bedrock_send)

if arm == "aicost-noop":
    aicost.instrument(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
elif arm in ("aicost-all", "aicost-sampled-out", "bare-otel", "aicost-all-otel"):
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
    tp = TracerProvider(sampler=ALWAYS_OFF) if arm == "aicost-sampled-out" else TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(Drop()))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    if arm.endswith("-otel"):  # the app's global providers: anthropic 2.x then traces each call itself
        from opentelemetry import metrics as otel_metrics, trace
        trace.set_tracer_provider(tp); otel_metrics.set_meter_provider(mp)
    if arm != "bare-otel":
        aicost.instrument(tracer_provider=tp, meter_provider=mp)
# No metrics worker: its work is counted on this thread by flush(), after each block.
metrics._worker = threading.current_thread()

PROMPT = [{{"role": "user", "content": "Say hello in one word."}}]

def call(vendor, chunks):
    extra = {{"x-chunks": str(chunks)}}
    if vendor == "gemini":
        config = gtypes.GenerateContentConfig(http_options=gtypes.HttpOptions(headers=extra))
        if chunks:
            return gem.models.generate_content_stream(model="gemini-2.5-flash", contents=PROMPT[0]["content"],
                                                      config=config)
        return gem.models.generate_content(model="gemini-2.5-flash", contents=PROMPT[0]["content"], config=config)
    if vendor == "bedrock":
        global bedrock_k
        bedrock_k = chunks
        request = dict(modelId="us.amazon.nova-micro-v1:0",
                       messages=[{{"role": "user", "content": [{{"text": PROMPT[0]["content"]}}]}}])
        if chunks:
            return brt.converse_stream(**request)["stream"]
        return brt.converse(**request)
    if vendor == "bedrock-invoke":
        bedrock_k = chunks
        request = dict(modelId="us.anthropic.claude-3-5-sonnet-20240620-v1:0", body=INVOKE_BODY)
        if chunks:
            return brt.invoke_model_with_response_stream(**request)["body"]
        return brt.invoke_model(**request)
    if vendor == "openai":
        if chunks:
            return oai.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True, extra_headers=extra)
        return oai.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, extra_headers=extra)
    return ant.messages.create(model="claude-3-5-haiku-20241022", max_tokens=64, messages=PROMPT,
                               stream=bool(chunks), extra_headers=extra)

def drain(stream):
    for _ in stream:
        pass

if arm == "span-alone":
    # Not aicost: a wrapper that only makes the span aicost makes for the call (same name, kind and attributes,
    # copied from a span aicost recorded, set at start and at end as aicost sets them, current during the call).
    # The floor of any tool that records a span per call on the calling thread. Non-streaming calls only.
    import wrapt
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from openai.resources.chat.completions.completions import Completions
    from anthropic.resources.messages.messages import Messages
    sys.path.insert(0, {benchmarks!r})
    from span_alone import wrapper_making
    recorder = InMemorySpanExporter()
    rtp = TracerProvider(); rtp.add_span_processor(SimpleSpanProcessor(recorder))
    aicost.instrument(tracer_provider=rtp, meter_provider=NoOpMeterProvider())
    call("openai", 0); call("anthropic", 0)
    aicost.uninstrument()
    tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(Drop()))
    tracer = tp.get_tracer("floor")
    oai_span, ant_span = recorder.get_finished_spans()
    Completions.create = wrapt.FunctionWrapper(Completions.__dict__["create"], wrapper_making(tracer, oai_span))
    Messages.create = wrapt.FunctionWrapper(Messages.__dict__["create"], wrapper_making(tracer, ant_span))

def block(name, vendor, chunks, mode):
    for _ in range(5):  # warm-up: caches (prices, call sites) filled as in a running app
        r = call(vendor, chunks)
        if chunks: drain(r)
    metrics.flush()
    gc.collect()  # every block starts with empty GC generations: the collections it triggers are its own
    cg.cg_dump(b"skip")
    for _ in range(n):
        if mode == "call":
            cg.cg_toggle(); r = call(vendor, chunks)
            if chunks: drain(r)
            cg.cg_toggle()
        else:  # first chunk
            cg.cg_toggle(); it = iter(call(vendor, chunks)); next(it); cg.cg_toggle()
            drain(it)
    cg.cg_dump(name.encode())
    cg.cg_toggle(); metrics.flush(); cg.cg_toggle()
    cg.cg_dump(("bg:" + name).encode())

cg.cg_start()
import contextlib
unit = aicost.feature("bench") if in_feature else contextlib.nullcontext()  # entered and left uncounted
unit.__enter__()
for vendor in vendors:
    if "call" in regions:
        block(vendor + ":call", vendor, 0, "call")
    if "first" in regions:
        block(vendor + ":first", vendor, 20, "first")
    if "chunk" in regions:
        block(vendor + ":s20", vendor, 20, "call")
        block(vendor + ":s200", vendor, 200, "call")
unit.__exit__(None, None, None)
'''


def build_helper(tmp: Path) -> Path:
    source = tmp / "cghelper.c"
    source.write_text(HELPER_C)
    library = tmp / "libcghelper.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(library), str(source)], check=True)
    return library


def run_arm(tmp: Path, script: Path, arm: str, calls: int, vendors: str, regions: str,
            feature: bool = False) -> dict[str, int]:
    out = tmp / arm
    out.mkdir()
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no", "--separate-threads=no",
         f"--callgrind-out-file={out}/cg.out", sys.executable, str(script), arm, str(calls), vendors, regions,
         "feature" if feature else "-"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    counts: dict[str, int] = {}
    for dump in sorted(out.glob("cg.out*")):
        text = dump.read_text(errors="replace")
        trigger = re.search(r"^desc: Trigger: Client Request: (.+)$", text, re.M)
        total = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if trigger and total:
            counts[trigger.group(1).strip()] = int(total.group(1))
    return counts


def table(per: dict[str, dict[str, float]], base_arm: str, arms: list[str]) -> None:
    base = per[base_arm]
    columns = [base_arm, *arms]
    header = f"{'':26s}" + "".join(f"{ARM_TITLES[a]:>34s}" for a in columns)
    for vendor in VENDORS:
        if not any(key.startswith(vendor + ":") for key in base):
            continue
        print(f"\n{vendor}{header[len(vendor):]}")
        for key, title in (("call", "per call"), ("first", "to first chunk"), ("chunk", "per stream chunk")):
            if f"{vendor}:{key}" not in base:
                continue
            cells = [f"{base[f'{vendor}:{key}']:14,.0f}"]
            for arm in arms:
                value, reference = per[arm][f"{vendor}:{key}"], base[f"{vendor}:{key}"]
                delta = value - reference
                cells.append(f"{value:14,.0f} ({delta:+10,.0f} {100 * delta / reference:+5.1f}%)")
            print(f"  {title:24s}" + "".join(f"{c:>34s}" for c in cells))
        if vendor + ":bg" not in base:
            continue
        cells = [f"{per[arm][vendor + ':bg']:14,.0f} ({100 * per[arm][vendor + ':bg'] / base[vendor + ':call']:+5.1f}%)"
                 for arm in arms]
        print(f"  {'background per call':24s}{'':34s}" + "".join(f"{c:>34s}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=40, help="measured calls per block")
    parser.add_argument("--json", action="store_true", help="also print the raw counts as JSON")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of " + ", ".join(ARMS))
    parser.add_argument("--vendors", default=",".join(VENDORS), help="comma-separated subset of " + ", ".join(VENDORS))
    parser.add_argument("--regions", default="call,first,chunk",
                        help="comma-separated subset of call, first (to first chunk), chunk (per stream chunk)")
    parser.add_argument("--keep", type=Path, help="copy the callgrind profiles here (for callgrind_annotate)")
    parser.add_argument("--feature", action="store_true",
                        help="in the aicost arms, make every call inside one aicost.feature run (entered and left "
                             "uncounted; the arms without aicost run outside it)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("cc") is None:
        sys.exit("needs valgrind and a C compiler (apt-get install valgrind gcc)")
    if not Path("/usr/include/valgrind/callgrind.h").exists():
        sys.exit("needs valgrind's headers (/usr/include/valgrind/callgrind.h)")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        helper = build_helper(tmp)
        script = tmp / "workload.py"
        script.write_text(WORKLOAD.format(root=str(ROOT), tests=str(ROOT / "tests"), helper=str(helper),
                                          benchmarks=str(ROOT / "benchmarks")))
        with ThreadPoolExecutor(max_workers=2) as pool:
            arms = [a for a in ARMS if a in args.arms.split(",") or a == "bare"]
            raw = dict(zip(arms, pool.map(lambda arm: run_arm(tmp, script, arm, args.calls, args.vendors,
                                                              args.regions, args.feature), arms)))
        if args.keep is not None:
            for arm in arms:
                shutil.copytree(tmp / arm, args.keep / arm, dirs_exist_ok=True)
    n = args.calls
    per: dict[str, dict[str, float]] = {}
    for arm, counts in raw.items():
        row: dict[str, float] = {}
        for vendor in VENDORS:
            for key in ("call", "first"):
                if f"{vendor}:{key}" in counts:
                    row[f"{vendor}:{key}"] = counts[f"{vendor}:{key}"] / n
            if f"bg:{vendor}:call" in counts:
                row[f"{vendor}:bg"] = counts[f"bg:{vendor}:call"] / n
            if f"{vendor}:s200" in counts:
                row[f"{vendor}:chunk"] = (counts[f"{vendor}:s200"] - counts[f"{vendor}:s20"]) / n / 180
        per[arm] = row
    print(f"instructions on the calling thread (callgrind; {n} calls per figure; in-process transport)")
    table(per, "bare", [a for a in ("aicost-noop", "aicost-all", "aicost-sampled-out") if a in per])
    if "span-alone" in per:
        print("\nthe span alone (not aicost: only the span aicost makes, same attributes, same SDK providers), per "
              "non-streaming call")
        for vendor in ("openai", "anthropic"):
            if f"{vendor}:call" not in per["span-alone"]:
                continue
            value, reference = per["span-alone"][f"{vendor}:call"], per["bare"][f"{vendor}:call"]
            print(f"  {vendor:10s} {value - reference:+12,.0f} ({100 * (value - reference) / reference:+5.1f}%)")
    if "bare-otel" in per and "aicost-all-otel" in per:
        print("\nwith an OpenTelemetry SDK set globally in both arms (anthropic 2.x then makes its own span, which "
              "aicost enriches instead of adding one)")
        table(per, "bare-otel", ["aicost-all-otel"])
    if args.json:
        print(json.dumps(per, indent=1))


if __name__ == "__main__":
    main()
