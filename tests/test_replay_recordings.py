"""Every recorded vendor response, replayed through the real SDKs with aicost instrumented, is costed exactly.

This is the proof behind "numbers are exact": the 177 recordings in ``tests/fixtures/recordings`` are genuine
OpenAI / Anthropic traffic (see NOTICE.md there). Each one is served by the loopback replay server to the real
``openai`` 3.x / ``anthropic`` 2.x SDK (sync and async; plain call, ``with_raw_response``, and for streams the
``.stream()`` helper), and the single span carrying ``gen_ai.usage.cost`` must report the recorded usage token for
token and a cost equal to usage x the vendor's PUBLISHED price, in Decimal, to the last digit.

The expected values never come from aicost: usage is parsed here from the recorded response bodies, and prices
come from :data:`PUBLISHED_PRICES` below, a literal table written from the vendors' pricing pages and
cross-checked against the ``genai-prices`` package (0.2.3). An aicost catalog entry that disagrees with it, or a
usage reader that misreads a shape, fails here with the recording id in the test name.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from aicost import semconv as sc
from vendor_server import (Reply, ReplayServer, all_recording_ids, anthropic_client, load_recording, openai_client,
                           split_sse_events)

PROBE = "aicost replay probe 7f3a: say hi"  # the prompt sent; must never appear in telemetry (private by default)
NATIVE_ANTHROPIC_SCOPE = "com.anthropic.sdk.python"


# ================================================================================================= prices
@dataclass(frozen=True)
class Price:
    """USD per million tokens (embeddings: input only). ``None`` = the vendor has no such rate for the model."""

    input: Decimal
    output: Decimal
    cache_read: Optional[Decimal] = None
    cache_write: Optional[Decimal] = None  # Anthropic 5-minute cache write (1.25 x input)
    cache_write_1h: Optional[Decimal] = None  # Anthropic 1-hour cache write (2 x input)


def _p(inp: str, out: str, cache_read: str | None = None, cache_write: str | None = None,
       cache_write_1h: str | None = None) -> Price:
    d = lambda v: None if v is None else Decimal(v)  # noqa: E731
    return Price(Decimal(inp), Decimal(out), d(cache_read), d(cache_write), d(cache_write_1h))


# The independent oracle. Sources: https://openai.com/api/pricing (and platform.openai.com/docs/pricing, incl. the
# legacy-models table and the Priority tab), https://www.anthropic.com/pricing#api and
# docs.anthropic.com/en/docs/about-claude/pricing (incl. deprecated models), Azure OpenAI global pricing. Every
# standard-tier number was cross-checked against genai-prices 0.2.3 (`genai_prices.data`); differences are noted.
# Keyed by the model id the vendor RETURNED (dated snapshot), falling back to the requested one.
PUBLISHED_PRICES: dict[tuple[str, str], Price] = {
    # ---- OpenAI: input, output, cached input ------------------------------------------------------------
    ("openai", "gpt-4o-2024-08-06"): _p("2.50", "10.00", "1.25"),
    ("openai", "gpt-4o-2024-05-13"): _p("5.00", "15.00"),  # original gpt-4o snapshot, no cached-input rate
    ("openai", "gpt-4o-mini-2024-07-18"): _p("0.15", "0.60", "0.075"),
    ("openai", "gpt-4.1-2025-04-14"): _p("2.00", "8.00", "0.50"),
    ("openai", "gpt-4.1-nano-2025-04-14"): _p("0.10", "0.40", "0.025"),
    ("openai", "gpt-4-0613"): _p("30.00", "60.00"),
    ("openai", "gpt-4-1106-vision-preview"): _p("10.00", "30.00"),
    ("openai", "gpt-3.5-turbo-0125"): _p("0.50", "1.50"),
    ("openai", "gpt-3.5-turbo-0613"): _p("1.50", "2.00"),
    ("openai", "gpt-3.5-turbo-instruct"): _p("1.50", "2.00"),
    ("openai", "davinci-002"): _p("2.00", "2.00"),
    # The legacy completions endpoint answers davinci-002 with its snapshot name (openai-completions-nonstream-005).
    ("openai", "davinci:2023-07-21-v2"): _p("2.00", "2.00"),
    ("openai", "gpt-5-2025-08-07"): _p("1.25", "10.00", "0.125"),
    ("openai", "gpt-5-mini-2025-08-07"): _p("0.25", "2.00", "0.025"),
    ("openai", "gpt-5-nano-2025-08-07"): _p("0.05", "0.40", "0.005"),
    ("openai", "gpt-5.4-2026-03-05"): _p("2.50", "15.00", "0.25"),  # short-context (<272K) rates, genai-prices
    ("openai", "text-embedding-3-small"): _p("0.02", "0"),
    ("openai", "text-embedding-3-large"): _p("0.13", "0"),
    ("openai", "text-embedding-ada-002"): _p("0.10", "0"),
    ("openai", "text-embedding-ada-002-v2"): _p("0.10", "0"),  # the name ada-002 answers with
    # Azure OpenAI deployment resolving to gpt-35-turbo (openai-chat-*-037/-018): Azure global list price of
    # GPT-3.5-Turbo-0125, the same as OpenAI's gpt-3.5-turbo (genai-prices maps gpt-35-turbo there too).
    ("openai", "gpt-35-turbo"): _p("0.50", "1.50"),
    # ---- Anthropic: input, output, cache read (0.1x), 5m cache write (1.25x), 1h cache write (2x) -----------
    ("anthropic", "claude-sonnet-4-6"): _p("3", "15", "0.30", "3.75", "6"),
    ("anthropic", "claude-sonnet-4-5-20250929"): _p("3", "15", "0.30", "3.75", "6"),  # <=200K-token prompts
    ("anthropic", "claude-3-7-sonnet-20250219"): _p("3", "15", "0.30", "3.75", "6"),
    ("anthropic", "claude-3-5-sonnet-20240620"): _p("3", "15", "0.30", "3.75", "6"),
    ("anthropic", "claude-3-5-haiku-20241022"): _p("0.80", "4", "0.08", "1", "1.6"),
    ("anthropic", "claude-3-5-haiku-latest"): _p("0.80", "4", "0.08", "1", "1.6"),  # alias echoed back
    ("anthropic", "claude-3-haiku-20240307"): _p("0.25", "1.25", "0.03", "0.30", "0.50"),
    ("anthropic", "claude-3-opus-20240229"): _p("15", "75", "1.50", "18.75", "30"),
    ("anthropic", "claude-2.1"): _p("8", "24"),
}

# OpenAI Priority processing (response "service_tier": "priority"), openai.com/api/pricing Priority tab;
# genai-prices 0.2.3 has the same gpt-5 priority variant (2.50 / 0.25 / 20).
PRIORITY_PRICES: dict[tuple[str, str], Price] = {
    ("openai", "gpt-5-2025-08-07"): _p("2.50", "20.00", "0.25"),
}

# OpenAI web_search_preview tool calls with non-reasoning models (gpt-4o, gpt-4.1): $25.00 per 1K calls, search
# content tokens free (platform.openai.com/docs/pricing#built-in-tools: "Web search preview (non-reasoning models)
# $25.00 / 1K calls, search content tokens are free"; $10/1K is the GA `web_search` tool and the preview tool on
# reasoning models, see also community.openai.com/t/search-web-using-openai-api/1363698). genai-prices 0.2.3 lists
# $10/1K for gpt-4.1; the recordings (openai-responses-nonstream-007/-015) use `web_search_preview` with gpt-4.1.
WEB_SEARCH_PREVIEW_PER_CALL = Decimal("25.00") / 1000

MILLION = Decimal(1_000_000)


# Undated aliases a request may name (the error recordings have no response model): the snapshot each pointed to.
ALIASES = {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4": "gpt-4-0613",
           "gpt-4.1": "gpt-4.1-2025-04-14", "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
           "gpt-3.5-turbo": "gpt-3.5-turbo-0125", "gpt-5": "gpt-5-2025-08-07", "gpt-5-mini": "gpt-5-mini-2025-08-07",
           "gpt-5-nano": "gpt-5-nano-2025-08-07", "claude-sonnet-4-5": "claude-sonnet-4-5-20250929"}


def published_price(provider: str, model: Optional[str], tier: Optional[str]) -> Optional[Price]:
    vendor = "anthropic" if provider == "anthropic" else "openai"
    model = ALIASES.get(model or "", model)
    if tier == "priority":
        return PRIORITY_PRICES.get((vendor, model or ""))
    return PUBLISHED_PRICES.get((vendor, model or ""))


# ================================================================================================= recordings
@dataclass(frozen=True)
class Expected:
    """What the recorded response says, parsed here independently of aicost."""

    response_model: Optional[str]
    response_id: Optional[str]
    service_tier: Optional[str]
    usage: Optional[dict[str, int]]  # normalised: input (all), output (all), cache_read, cache_write, ...
    web_search_calls: int
    has_output: bool  # the response carries generated content (for estimated-usage checks)
    finish_reasons: Optional[tuple[str, ...]] = None  # per choice, in index order (chat, completions, messages)


@dataclass(frozen=True)
class Case:
    rid: str
    vendor: str
    kind: str  # chat | completions | embeddings | responses | messages | complete
    stream: bool
    status: int
    beta: bool
    azure_deployment: Optional[str]
    api_version: Optional[str]
    request_body: dict[str, Any]
    recorded_path: str  # path?query as the vendor received it

    @property
    def request_model(self) -> str:
        return str(self.request_body.get("model"))

    @property
    def provider(self) -> str:
        if self.azure_deployment is not None:
            return "azure.ai.openai"
        return self.vendor


def _case(rid: str) -> Case:
    rec = load_recording(rid)
    req = rec["request"]
    path, query = req["path"], req.get("query")
    route = path.split("?")[0]
    if rec["vendor"] == "anthropic":
        kind = "complete" if route.endswith("/complete") else "messages"
    elif route.endswith("/chat/completions"):
        kind = "chat"
    elif route.endswith("/completions"):
        kind = "completions"
    elif route.endswith("/embeddings"):
        kind = "embeddings"
    else:
        kind = "responses"
    deployment = route.split("/deployments/")[1].split("/")[0] if "/deployments/" in route else None
    api_version = None
    if query:
        for part in query.split("&"):
            if part.startswith("api-version="):
                api_version = part.split("=", 1)[1]
    return Case(rid=rid, vendor=rec["vendor"], kind=kind, stream=bool(rec["stream"]),
                status=int(rec["response"]["status"]), beta="beta=true" in (query or ""),
                azure_deployment=deployment, api_version=api_version,
                request_body=req["body"] if isinstance(req["body"], dict) else {},
                recorded_path=path + (f"?{query}" if query else ""))


def _sse_payloads(body: str) -> list[tuple[Optional[str], Any]]:
    out = []
    for block in split_sse_events(body):
        event, data = None, []
        for line in block.splitlines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        payload = "\n".join(data)
        if not payload or payload == "[DONE]":
            continue
        out.append((event, json.loads(payload)))
    return out


def _openai_usage(u: dict[str, Any]) -> dict[str, int]:
    details_in = u.get("prompt_tokens_details") or u.get("input_tokens_details") or {}
    details_out = u.get("completion_tokens_details") or u.get("output_tokens_details") or {}
    return {
        "input": int(u.get("prompt_tokens", u.get("input_tokens")) or 0),
        "output": int(u.get("completion_tokens", u.get("output_tokens")) or 0),
        "cache_read": int(details_in.get("cached_tokens") or 0),
        "cache_write": int(details_in.get("cache_write_tokens") or 0),
        "cache_write_1h": 0,
        "reasoning": int(details_out.get("reasoning_tokens") or 0),
    }


def _anthropic_usage(u: dict[str, Any]) -> dict[str, int]:
    read = int(u.get("cache_read_input_tokens") or 0)
    write = int(u.get("cache_creation_input_tokens") or 0)
    return {
        # Anthropic's input_tokens EXCLUDES cache reads and writes; the span's input count includes them.
        "input": int(u.get("input_tokens") or 0) + read + write,
        "output": int(u.get("output_tokens") or 0),
        "cache_read": read,
        "cache_write": write,
        "cache_write_1h": int((u.get("cache_creation") or {}).get("ephemeral_1h_input_tokens") or 0),
        "reasoning": int((u.get("output_tokens_details") or {}).get("thinking_tokens") or 0),
    }


@lru_cache(maxsize=None)
def expected_outcome(rid: str) -> Expected:
    rec = load_recording(rid)
    body = rec["response"]["body"] or ""
    vendor, stream = rec["vendor"], bool(rec["stream"])
    model = rid_ = tier = None
    usage: Optional[dict[str, int]] = None
    web_search = 0
    has_output = False
    finish: dict[int, str] = {}
    if vendor == "anthropic":
        if stream:
            start_usage: dict[str, Any] = {}
            delta_usage: dict[str, Any] = {}
            for _, data in _sse_payloads(body):
                if data.get("type") == "message_start":
                    msg = data["message"]
                    model, rid_ = msg.get("model"), msg.get("id")
                    start_usage = dict(msg.get("usage") or {})
                elif data.get("type") == "message_delta" and data.get("usage"):
                    delta_usage = dict(data["usage"])  # cumulative: overwrite, never add
                    if (data.get("delta") or {}).get("stop_reason"):
                        finish[0] = data["delta"]["stop_reason"]
                elif data.get("type") == "content_block_delta":
                    has_output = True
            if start_usage or delta_usage:
                usage = _anthropic_usage({**start_usage, **{k: v for k, v in delta_usage.items() if v is not None}})
                tier = start_usage.get("service_tier")
        else:
            data = json.loads(body)
            model, rid_ = data.get("model"), data.get("id")
            if data.get("usage"):
                usage = _anthropic_usage(data["usage"])
                tier = data["usage"].get("service_tier")
            has_output = bool(data.get("content"))
            if data.get("stop_reason"):
                finish[0] = data["stop_reason"]
    elif stream:
        for event, data in _sse_payloads(body):
            if event and event.startswith("response."):  # Responses API
                resp = data.get("response") or {}
                if resp:
                    model, rid_ = resp.get("model", model), resp.get("id", rid_)
                    tier = resp.get("service_tier", tier)
                if data.get("type") == "response.completed" and resp.get("usage"):
                    usage = _openai_usage(resp["usage"])
                    web_search = sum(1 for o in resp.get("output") or [] if o.get("type") == "web_search_call")
                if data.get("type") == "response.output_text.delta":
                    has_output = True
                continue
            model = data.get("model", model)
            rid_ = data.get("id", rid_)
            tier = data.get("service_tier") or tier
            if data.get("usage"):
                usage = _openai_usage(data["usage"])
            for choice in data.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content") or delta.get("tool_calls") or choice.get("text"):
                    has_output = True
                if choice.get("finish_reason"):
                    finish[int(choice.get("index") or 0)] = choice["finish_reason"]
    else:
        data = json.loads(body)
        if rec["response"]["status"] < 400:
            model, rid_, tier = data.get("model"), data.get("id"), data.get("service_tier")
            if data.get("usage"):
                usage = _openai_usage(data["usage"])
            web_search = sum(1 for o in data.get("output") or [] if o.get("type") == "web_search_call")
            has_output = True
            for choice in data.get("choices") or []:
                if choice.get("finish_reason"):
                    finish[int(choice.get("index") or 0)] = choice["finish_reason"]
    reasons = tuple(finish[i] for i in sorted(finish)) if finish else None
    return Expected(model, rid_, tier, usage, web_search, has_output, reasons)


def oracle_cost(provider: str, model: Optional[str], usage: dict[str, int], tier: Optional[str]) -> Optional[Decimal]:
    """usage x published price, exactly. None when the model has no published price here."""
    price = published_price(provider, model, tier)
    if price is None:
        return None
    cache_read, cache_write, cw1h = usage["cache_read"], usage["cache_write"], usage.get("cache_write_1h", 0)
    text_in = usage["input"] - cache_read - cache_write
    total = text_in * price.input + usage["output"] * price.output
    if cache_read:
        assert price.cache_read is not None, f"{model}: cached tokens but no published cached-input rate"
        total += cache_read * price.cache_read
    if cache_write:
        # OpenAI bills prompt-cache writes at the plain input rate; Anthropic at its cache-write rates.
        total += (cache_write - cw1h) * (price.cache_write if price.cache_write is not None else price.input)
        total += cw1h * (price.cache_write_1h if price.cache_write_1h is not None else price.input)
    return total / MILLION


# ================================================================================================= SDK calls
# What `with_raw_response` returns: openai 3.x LegacyAPIResponse; anthropic 2.x (Async)APIResponse.
RAW_RESPONSE_TYPES = {"LegacyAPIResponse", "APIResponse", "AsyncAPIResponse"}

@dataclass
class CallOutcome:
    result: Any = None
    error: Optional[BaseException] = None
    chunks: Optional[int] = None  # items the caller iterated (streams, plain/raw variants)
    raw_type: Optional[str] = None  # class name of what with_raw_response returned


# A stream's body read past parse(), as a proxy relays the events: whole lines, bytes in odd-sized chunks (an event,
# a line, even a multi-byte character split anywhere), text. What the caller got is kept as bytes.
BODY_READS = ("lines", "bytes", "text")


def _read_body(response: Any, how: str) -> bytes:
    if how == "lines":
        return "".join(line + "\n" for line in response.iter_lines()).encode()
    if how == "bytes":
        return b"".join(response.iter_bytes(chunk_size=7))
    return "".join(response.iter_text(chunk_size=5)).encode()


async def _aread_body(response: Any, how: str) -> bytes:
    if how == "lines":
        return "".join([line + "\n" async for line in response.iter_lines()]).encode()
    if how == "bytes":
        return b"".join([chunk async for chunk in response.iter_bytes(chunk_size=7)])
    return "".join([text async for text in response.iter_text(chunk_size=5)]).encode()


def _items_the_sdk_yields(case: Case, body: bytes) -> int:
    """How many items the SDK's own ``Stream`` yields from ``body``: what the span's chunk count must say."""
    import httpx2

    sdk = __import__(case.vendor)
    client = (sdk.OpenAI(api_key="test", base_url="http://127.0.0.1:9") if case.vendor == "openai"
              else sdk.Anthropic(api_key="test", base_url="http://127.0.0.1:9"))
    try:
        response = httpx2.Response(200, content=body, request=httpx2.Request("POST", "http://127.0.0.1:9/"))
        return sum(1 for _ in sdk.Stream(cast_to=object, response=response, client=client))
    finally:
        client.close()


def _vendor_errors() -> tuple[type[BaseException], ...]:
    import anthropic
    import openai

    return (openai.APIError, anthropic.APIError)


VENDOR_ERRORS = _vendor_errors()


def _kwargs(case: Case) -> dict[str, Any]:
    body = case.request_body
    kw: dict[str, Any] = {"model": case.request_model}
    if case.kind == "chat":
        kw["messages"] = [{"role": "user", "content": PROBE}]
    elif case.kind == "completions":
        kw["prompt"] = PROBE
    elif case.kind == "embeddings":
        kw["input"] = PROBE
        if body.get("encoding_format"):
            kw["encoding_format"] = body["encoding_format"]
    elif case.kind == "responses":
        kw["input"] = PROBE
        # Hosted web search is priced per call by which tool the request named (web_search_preview has its own
        # rate), so the recorded request's hosted tools go along; they need no schema.
        hosted = [t for t in body.get("tools") or ()
                  if isinstance(t, dict) and str(t.get("type", "")).startswith("web_search")]
        if hosted:
            kw["tools"] = hosted
    elif case.kind == "messages":
        kw["max_tokens"] = int(body.get("max_tokens") or 1024)
        kw["messages"] = [{"role": "user", "content": PROBE}]
    if case.stream:
        kw["stream"] = True
        if body.get("stream_options"):
            kw["stream_options"] = body["stream_options"]
    return kw


def _make_client(case: Case, server: ReplayServer, is_async: bool) -> Any:
    if case.vendor == "anthropic":
        return anthropic_client(server, is_async=is_async)
    return openai_client(server, is_async=is_async, azure_deployment=case.azure_deployment,
                         api_version=case.api_version or "2024-10-21")


def _resource(client: Any, case: Case) -> Any:
    if case.kind == "messages":
        return client.beta.messages if case.beta else client.messages
    return {"chat": lambda: client.chat.completions, "completions": lambda: client.completions,
            "embeddings": lambda: client.embeddings, "responses": lambda: client.responses}[case.kind]()


def _helper_final(stream: Any, case: Case) -> Any:
    if case.kind == "chat":
        return stream.get_final_completion()
    if case.kind == "responses":
        return stream.get_final_response()
    return stream.get_final_message()


def call_sync(case: Case, server: ReplayServer, variant: str, client: Any = None) -> CallOutcome:
    own_client = client is None
    client = client if client is not None else _make_client(case, server, is_async=False)
    resource = _resource(client, case)
    kw = _kwargs(case)
    out = CallOutcome()
    try:
        if variant == "helper":
            kw.pop("stream")
            with resource.stream(**kw) as stream:
                for _ in stream:
                    pass
                out.result = _helper_final(stream, case)
            return out
        if variant == "json":  # the body read past parse(): aicost reads the same bytes on the way
            with resource.with_streaming_response.create(**kw) as response:
                out.result = response.json()
            return out
        if variant == "streaming":
            with resource.with_streaming_response.create(**kw) as response:
                result = response.parse()
                if case.stream:
                    out.chunks = sum(1 for _ in result)
                out.result = result
            return out
        if variant in BODY_READS:
            with resource.with_streaming_response.create(**kw) as response:
                out.result = _read_body(response, variant)
            out.chunks = _items_the_sdk_yields(case, out.result)
            return out
        if variant == "raw":
            raw = resource.with_raw_response.create(**kw)
            out.raw_type = type(raw).__name__
            result = raw.parse()
        else:
            result = resource.create(**kw)
        if case.stream:
            out.chunks = sum(1 for _ in result)
        out.result = result
    except VENDOR_ERRORS as exc:  # compared with the recorded error; anything else fails with its traceback
        out.error = exc
    finally:
        if own_client:
            client.close()
    return out


async def call_async(case: Case, server: ReplayServer, variant: str) -> CallOutcome:
    client = _make_client(case, server, is_async=True)
    resource = _resource(client, case)
    kw = _kwargs(case)
    out = CallOutcome()
    try:
        if variant == "helper":
            kw.pop("stream")
            async with resource.stream(**kw) as stream:
                async for _ in stream:
                    pass
                final = _helper_final(stream, case)
                out.result = await final if inspect.isawaitable(final) else final
            return out
        if variant == "streaming":
            async with resource.with_streaming_response.create(**kw) as response:
                result = await response.parse()
                if case.stream:
                    n = 0
                    async for _ in result:
                        n += 1
                    out.chunks = n
                out.result = result
            return out
        if variant in BODY_READS:
            async with resource.with_streaming_response.create(**kw) as response:
                out.result = await _aread_body(response, variant)
            out.chunks = _items_the_sdk_yields(case, out.result)
            return out
        if variant == "raw":
            raw = await resource.with_raw_response.create(**kw)
            out.raw_type = type(raw).__name__
            result = raw.parse()
            result = await result if inspect.isawaitable(result) else result
        else:
            result = await resource.create(**kw)
        if case.stream:
            n = 0
            async for _ in result:
                n += 1
            out.chunks = n
        out.result = result
    except VENDOR_ERRORS as exc:
        out.error = exc
    finally:
        await client.close()
    return out


# ================================================================================================= parameters
CASES = {rid: _case(rid) for rid in all_recording_ids()}
HELPER_KINDS = {"chat", "responses", "messages"}


def _params(is_async: bool) -> list[Any]:
    """plain and raw for every recording, sync and async; the .stream() helper for 2xx streams;
    with_streaming_response for every recording in sync mode and for the streams in async mode (the async
    non-stream path is the sync one awaited: left out to hold the run near 40 s), and, sync, read with json()
    rather than parse() for the recordings that are not streams; streams' bytes read past parse() (BODY_READS),
    sync and async."""
    params = []
    for rid, case in CASES.items():
        variants = ["plain", "raw"]
        if case.stream and case.status < 400 and case.kind in HELPER_KINDS:
            variants.append("helper")
        if not is_async or case.stream:
            variants.append("streaming")
        if not is_async and not case.stream:
            variants.append("json")
        if case.stream:  # the stream's bytes read past parse(): its events are read in them
            variants.extend(BODY_READS)
        for variant in variants:
            marks = []
            if case.kind == "complete":
                marks.append(pytest.mark.skip(
                    reason="legacy Anthropic /v1/complete: anthropic 2.x removed client.completions, so this "
                           "recording cannot be replayed through the SDK"))
            params.append(pytest.param(rid, variant, id=f"{rid}-{variant}", marks=marks))
    return params


PARAMS = _params(is_async=False)
ASYNC_PARAMS = _params(is_async=True)


def _one_per_shape() -> list[str]:
    """The first 2xx recording of each (vendor, endpoint, stream, Azure, beta) shape."""
    seen: dict[tuple[Any, ...], str] = {}
    for rid, case in CASES.items():
        if case.status < 400 and case.kind != "complete":
            seen.setdefault((case.vendor, case.kind, case.stream, case.azure_deployment is not None, case.beta), rid)
    return sorted(seen.values())


SHAPES = _one_per_shape()


# ================================================================================================= assertions
def _attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value))


def _cost_parts(attrs: dict[str, Any]) -> dict[str, Decimal]:
    """aicost.cost.<class>_usd -> Decimal, excluding the total."""
    parts = {}
    for key, value in attrs.items():
        if key.startswith(sc.AICOST_COST_PREFIX) and key.endswith("_usd") and key != sc.AICOST_COST_TOTAL:
            parts[key[len(sc.AICOST_COST_PREFIX):-len("_usd")]] = _decimal(value)
    return parts


def _is_aicost_span(span: Any) -> bool:
    scope = getattr(span, "instrumentation_scope", None)
    if scope is not None and scope.name.startswith("aicost"):
        return True
    return any(key.startswith("aicost.") for key in (span.attributes or {}))


def _check_privacy(spans: list[Any], rid: str) -> None:
    for span in spans:
        for key, value in _attrs(span).items():
            values = value if isinstance(value, (list, tuple)) else [value]
            for v in values:
                assert not (isinstance(v, str) and ("7f3a" in v or "Bearer" in v)), (
                    f"{rid}: span {span.name!r} attribute {key} leaks prompt text or credentials: {v!r}")


def _check_request(case: Case, server: ReplayServer) -> None:
    assert len(server.requests) == 1, f"{case.rid}: expected 1 HTTP request, got {[r.path for r in server.requests]}"
    sent = server.requests[0]
    recorded = urlsplit(case.recorded_path)
    assert sent.route == recorded.path, f"{case.rid}: SDK hit {sent.route}, recording is {recorded.path}"
    expected_query = parse_qs(recorded.query)
    if case.beta:
        # anthropic 2.x marks beta calls with an internal qualifier instead of sending ?beta=true as 0.x did
        expected_query.pop("beta", None)
    assert sent.query == expected_query, f"{case.rid}: query {sent.query} != recorded {recorded.query}"


def check_outcome(case: Case, variant: str, outcome: CallOutcome, telemetry: Any, server: ReplayServer) -> None:
    rid = case.rid
    exp = expected_outcome(rid)
    spans = telemetry.spans()
    _check_request(case, server)
    _check_privacy(spans, rid)
    aicost_spans = [s for s in spans if _is_aicost_span(s)]
    cost_spans = telemetry.cost_spans()

    # ---------------------------------------------------------------- recorded vendor errors
    if case.status >= 400:
        _check_error(case, outcome, aicost_spans, cost_spans)
        return

    assert outcome.error is None, f"{rid}/{variant}: call raised {outcome.error!r}"
    assert len(cost_spans) == 1, (
        f"{rid}/{variant}: expected exactly one span with {sc.GEN_AI_USAGE_COST}, got "
        f"{[(s.name, s.instrumentation_scope.name) for s in cost_spans]} among {[s.name for s in spans]}")
    span = cost_spans[0]
    attrs = _attrs(span)
    assert aicost_spans == [span] or span in aicost_spans, f"{rid}: the cost span is not aicost's"
    assert len([s for s in aicost_spans if sc.AICOST_PRICE_KNOWN in _attrs(s)]) == 1, (
        f"{rid}/{variant}: more than one aicost span says it priced this call: {[s.name for s in aicost_spans]}")
    assert span.kind == SpanKind.CLIENT, f"{rid}: span kind {span.kind}"
    assert span.status.status_code != StatusCode.ERROR, f"{rid}: span status {span.status}"

    # identity of the call
    assert attrs.get(sc.GEN_AI_PROVIDER_NAME) == case.provider, (
        f"{rid}: {sc.GEN_AI_PROVIDER_NAME}={attrs.get(sc.GEN_AI_PROVIDER_NAME)!r}, expected {case.provider!r}")
    assert attrs.get(sc.GEN_AI_REQUEST_MODEL) == case.request_model, (
        f"{rid}: {sc.GEN_AI_REQUEST_MODEL}={attrs.get(sc.GEN_AI_REQUEST_MODEL)!r}, expected {case.request_model!r}")
    assert attrs.get(sc.GEN_AI_RESPONSE_MODEL) == exp.response_model, (
        f"{rid}: {sc.GEN_AI_RESPONSE_MODEL}={attrs.get(sc.GEN_AI_RESPONSE_MODEL)!r}, expected {exp.response_model!r}")
    expected_ops = {"chat": {"chat"}, "messages": {"chat"}, "responses": {"chat", "generate_content"},
                    "completions": {"text_completion"}, "embeddings": {"embeddings"}}[case.kind]
    assert attrs.get(sc.GEN_AI_OPERATION_NAME) in expected_ops, (
        f"{rid}: {sc.GEN_AI_OPERATION_NAME}={attrs.get(sc.GEN_AI_OPERATION_NAME)!r}, expected one of {expected_ops}")
    if exp.response_id and case.kind != "embeddings":
        assert attrs.get(sc.GEN_AI_RESPONSE_ID) == exp.response_id, (
            f"{rid}: {sc.GEN_AI_RESPONSE_ID}={attrs.get(sc.GEN_AI_RESPONSE_ID)!r}, expected {exp.response_id!r}")
    assert (attrs.get(sc.SERVER_ADDRESS), attrs.get(sc.SERVER_PORT)) == ("127.0.0.1", server.port), (
        f"{rid}: server {attrs.get(sc.SERVER_ADDRESS)}:{attrs.get(sc.SERVER_PORT)}, called 127.0.0.1:{server.port}")
    if case.kind == "messages":
        assert attrs.get(sc.GEN_AI_REQUEST_MAX_TOKENS) == _kwargs(case)["max_tokens"], f"{rid}: max_tokens"
    if exp.finish_reasons and case.kind != "responses":
        got_reasons = attrs.get(sc.GEN_AI_RESPONSE_FINISH_REASONS)
        assert got_reasons is not None and tuple(got_reasons) == exp.finish_reasons, (
            f"{rid}: {sc.GEN_AI_RESPONSE_FINISH_REASONS}={got_reasons!r}, recorded {exp.finish_reasons}")
    if case.vendor == "openai" and exp.service_tier:
        assert attrs.get(sc.OPENAI_RESPONSE_SERVICE_TIER) == exp.service_tier, (
            f"{rid}: {sc.OPENAI_RESPONSE_SERVICE_TIER}={attrs.get(sc.OPENAI_RESPONSE_SERVICE_TIER)!r}, "
            f"expected {exp.service_tier!r}")
    if case.stream:
        assert attrs.get(sc.GEN_AI_REQUEST_STREAM) is True, f"{rid}: {sc.GEN_AI_REQUEST_STREAM} not true"
        ttfc = attrs.get(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
        # Span timestamps come from the wall clock, time to first chunk from a monotonic one: on a loaded VM the
        # two were seen ~10 ms apart, hence the tolerance; a ttfc from another call would be far outside it.
        assert isinstance(ttfc, float) and 0 <= ttfc <= (span.end_time - span.start_time) / 1e9 + 0.1, (
            f"{rid}: {sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK}={ttfc!r}, span lasted "
            f"{(span.end_time - span.start_time) / 1e9} s")
        if variant != "helper":
            if sc.AICOST_STREAM_CHUNKS in attrs:
                assert attrs[sc.AICOST_STREAM_CHUNKS] == outcome.chunks, (
                    f"{rid}: {sc.AICOST_STREAM_CHUNKS}={attrs[sc.AICOST_STREAM_CHUNKS]}, caller saw {outcome.chunks}")
            if sc.AICOST_STREAM_ENDED_BY in attrs:
                assert attrs[sc.AICOST_STREAM_ENDED_BY] == "exhausted", f"{rid}: {attrs[sc.AICOST_STREAM_ENDED_BY]!r}"

    # usage and cost
    if exp.usage is None:
        _check_estimated(case, exp, attrs)
    else:
        _check_usage(rid, exp.usage, attrs)
        expected_cost = oracle_cost(case.provider, exp.response_model or case.request_model, exp.usage,
                                    exp.service_tier)
        assert expected_cost is not None, f"{rid}: the oracle has no price for {exp.response_model!r} (test bug)"
        _check_cost(rid, attrs, expected_cost, exp)
        if exp.service_tier == "priority":
            assert attrs.get(sc.AICOST_SERVICE_TIER) == "priority", (
                f"{rid}: priced at tier {attrs.get(sc.AICOST_SERVICE_TIER)!r}, the response says priority")

    _check_metrics(rid, attrs, telemetry)
    # the caller got the vendor's data unchanged
    _check_result(case, variant, outcome, exp)
    if case.vendor == "anthropic":
        _check_native_cooperation(case, spans, span, telemetry)


def _check_usage(rid: str, usage: dict[str, int], attrs: dict[str, Any]) -> None:
    got = {
        "input": attrs.get(sc.GEN_AI_USAGE_INPUT_TOKENS),
        "output": attrs.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS),
        "cache_read": attrs.get(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, 0),
        "cache_write": attrs.get(sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS, 0),
        "cache_creation": attrs.get(sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, 0),
        "reasoning": attrs.get(sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, 0),
    }
    want = {"input": usage["input"], "output": usage["output"], "cache_read": usage["cache_read"],
            "cache_write": usage["cache_write"], "cache_creation": usage["cache_write"],
            "reasoning": usage["reasoning"]}
    assert got == want, f"{rid}: token attributes {got} != recorded usage {want}"
    assert attrs.get(sc.AICOST_USAGE_ESTIMATED, False) is False, f"{rid}: vendor usage present, yet marked estimated"


def _check_cost(rid: str, attrs: dict[str, Any], expected: Decimal, exp: Expected) -> None:
    assert attrs.get(sc.AICOST_PRICE_KNOWN) is True, (
        f"{rid}: {sc.AICOST_PRICE_KNOWN}={attrs.get(sc.AICOST_PRICE_KNOWN)!r}")
    assert sc.AICOST_COST_TOTAL in attrs, f"{rid}: no {sc.AICOST_COST_TOTAL}"
    total = _decimal(attrs[sc.AICOST_COST_TOTAL])
    parts = _cost_parts(attrs)
    if parts:
        assert sum(parts.values(), Decimal(0)) == total, f"{rid}: cost parts {parts} do not sum to {total}"
    # Hosted-tool fees are checked in test_web_search_calls_are_billed; here: tokens x published price.
    token_cost = total - parts.get("web_search", Decimal(0)) - parts.get("request", Decimal(0))
    assert token_cost == expected, (
        f"{rid}: token cost {token_cost} != usage x published price {expected} (model {exp.response_model}, "
        f"usage {exp.usage}, tier {exp.service_tier}); parts {parts}")
    assert attrs[sc.GEN_AI_USAGE_COST] == float(total), (
        f"{rid}: {sc.GEN_AI_USAGE_COST}={attrs[sc.GEN_AI_USAGE_COST]!r} != float({total})")


def _check_metrics(rid: str, attrs: dict[str, Any], telemetry: Any) -> None:
    """The metrics the dashboards read agree with the span: same cost, same tokens (one call per test)."""
    points = telemetry.metrics()
    cost_points = points.get(sc.METRIC_COST, [])
    assert [p.value for p in cost_points] == [attrs[sc.GEN_AI_USAGE_COST]], (
        f"{rid}: {sc.METRIC_COST} points {[p.value for p in cost_points]} != span cost {attrs[sc.GEN_AI_USAGE_COST]}")
    tokens = {p.attributes.get(sc.GEN_AI_TOKEN_TYPE): p.sum for p in points.get(sc.METRIC_TOKEN_USAGE, [])}
    want = {"input": attrs[sc.GEN_AI_USAGE_INPUT_TOKENS], "output": attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS]}
    assert {k: tokens.get(k) for k in want} == want, f"{rid}: {sc.METRIC_TOKEN_USAGE} {tokens} != span {want}"


def _check_estimated(case: Case, exp: Expected, attrs: dict[str, Any]) -> None:
    """The vendor sent no usage (stream without include_usage): counted locally, flagged, priced consistently."""
    rid = case.rid
    assert attrs.get(sc.AICOST_USAGE_ESTIMATED) is True, (
        f"{rid}: stream carried no usage, {sc.AICOST_USAGE_ESTIMATED}={attrs.get(sc.AICOST_USAGE_ESTIMATED)!r}")
    inp, out = attrs.get(sc.GEN_AI_USAGE_INPUT_TOKENS), attrs.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS)
    assert isinstance(inp, int) and inp > 0, f"{rid}: estimated input tokens {inp!r}"
    assert isinstance(out, int) and (out > 0 if exp.has_output else out >= 0), f"{rid}: estimated output {out!r}"
    usage = {"input": inp, "output": out, "cache_read": 0, "cache_write": 0, "cache_write_1h": 0, "reasoning": 0}
    expected = oracle_cost(case.provider, exp.response_model or case.request_model, usage, exp.service_tier)
    assert expected is not None
    _check_cost(rid, attrs, expected, exp)


def _check_error(case: Case, outcome: CallOutcome, aicost_spans: list[Any], cost_spans: list[Any]) -> None:
    import openai

    rid = case.rid
    names = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
             404: "NotFoundError", 429: "RateLimitError"}
    expected_cls = getattr(openai, names.get(case.status, "InternalServerError"))
    assert outcome.error is not None, f"{rid}: recorded HTTP {case.status}, but the call returned {outcome.result!r}"
    assert type(outcome.error) is expected_cls, f"{rid}: raised {type(outcome.error)!r}, expected {expected_cls!r}"
    assert outcome.error.status_code == case.status
    assert len(aicost_spans) == 1, f"{rid}: expected one aicost span for the failed call, got {len(aicost_spans)}"
    span = aicost_spans[0]
    attrs = _attrs(span)
    assert span.status.status_code == StatusCode.ERROR, f"{rid}: failed call's span status {span.status}"
    assert isinstance(attrs.get(sc.ERROR_TYPE), str) and attrs[sc.ERROR_TYPE], f"{rid}: no {sc.ERROR_TYPE}"
    for s in cost_spans:  # a rejected request is not billed
        assert _attrs(s)[sc.GEN_AI_USAGE_COST] == 0, f"{rid}: failed call carries cost {_attrs(s)}"
    if published_price(case.provider, case.request_model, None) is None:
        assert attrs.get(sc.AICOST_PRICE_KNOWN) is False, (
            f"{rid}: model {case.request_model!r} has no price; {sc.AICOST_PRICE_KNOWN}="
            f"{attrs.get(sc.AICOST_PRICE_KNOWN)!r}")
        assert sc.GEN_AI_USAGE_COST not in attrs, f"{rid}: unknown model priced: {attrs.get(sc.GEN_AI_USAGE_COST)}"


def _check_result(case: Case, variant: str, outcome: CallOutcome, exp: Expected) -> None:
    """The application still gets the SDK's own objects with the vendor's numbers."""
    result = outcome.result
    if variant == "raw":
        assert outcome.raw_type in RAW_RESPONSE_TYPES, f"{case.rid}: with_raw_response returned {outcome.raw_type}"
    if variant == "json":
        assert type(result) is dict, f"{case.rid}/json: the caller got a {type(result).__name__}, not the JSON"
    elif variant in BODY_READS:
        served = "".join(split_sse_events(load_recording(case.rid)["response"]["body"])).encode()
        assert result == served, f"{case.rid}/{variant}: the caller did not get the bytes the vendor sent"
    elif variant != "helper":
        expected_type = _expected_result_type(case)
        assert type(result).__name__ in expected_type, (
            f"{case.rid}/{variant}: the caller got a {type(result).__name__}, expected {expected_type}")
    if case.stream and variant != "helper":
        assert outcome.chunks and outcome.chunks > 0, f"{case.rid}: the caller saw no chunks"
        return
    usage = result.get("usage") if variant == "json" else getattr(result, "usage", None)
    if exp.usage is None or usage is None:
        return
    dumped = usage if variant == "json" else usage.model_dump()
    got = _anthropic_usage(dumped) if case.vendor == "anthropic" else _openai_usage(dumped)
    assert got["input"] == exp.usage["input"] and got["output"] == exp.usage["output"], (
        f"{case.rid}: the SDK result's usage changed: {got} vs {exp.usage}")


def _expected_result_type(case: Case) -> set[str]:
    """The SDK's own result class for the call (streams: the SDK's stream object, never a wrapper type)."""
    if case.stream:
        return {"Stream", "AsyncStream"}
    return {"chat": {"ChatCompletion"}, "completions": {"Completion"}, "embeddings": {"CreateEmbeddingResponse"},
            "responses": {"Response"}, "messages": {"BetaMessage"} if case.beta else {"Message"}}[case.kind]


def _check_native_cooperation(case: Case, spans: list[Any], cost_span: Any, telemetry: Any) -> None:
    """With Anthropic's own tracing on (the SDK default), its span and aicost's are one trace, cost on one."""
    if trace.get_tracer_provider() is not telemetry.tracer_provider:
        return  # another global provider: the native spans went elsewhere
    native = [s for s in spans if s.instrumentation_scope and s.instrumentation_scope.name == NATIVE_ANTHROPIC_SCOPE]
    assert native, f"{case.rid}: Anthropic native tracing produced no span (global provider is the test's)"
    for s in native:
        assert s.context.trace_id == cost_span.context.trace_id, f"{case.rid}: native span in another trace"
        if s is not cost_span:
            assert sc.GEN_AI_USAGE_COST not in _attrs(s)
    source = _attrs(cost_span).get(sc.AICOST_SPAN_SOURCE)
    if source == "anthropic-sdk":  # aicost enriched the SDK's span instead of adding its own
        assert cost_span in native, f"{case.rid}: {sc.AICOST_SPAN_SOURCE}=anthropic-sdk on a non-SDK span"
        assert len(native) == 1, f"{case.rid}: {len(native)} native call spans"
    else:
        assert source == "aicost", f"{case.rid}: {sc.AICOST_SPAN_SOURCE}={source!r}"


# ================================================================================================= tests
@pytest.mark.parametrize(("rid", "variant"), PARAMS)
def test_replay_sync(rid: str, variant: str, instrumented: Any, replay_server: ReplayServer) -> None:
    case = CASES[rid]
    replay_server.enqueue_recording(rid)
    outcome = call_sync(case, replay_server, variant)
    check_outcome(case, variant, outcome, instrumented, replay_server)


@pytest.mark.parametrize(("rid", "variant"), ASYNC_PARAMS)
async def test_replay_async(rid: str, variant: str, instrumented: Any, replay_server: ReplayServer) -> None:
    case = CASES[rid]
    replay_server.enqueue_recording(rid)
    outcome = await call_async(case, replay_server, variant)
    check_outcome(case, variant, outcome, instrumented, replay_server)


@pytest.mark.parametrize("touched", [False, True], ids=["wrappers-untouched", "wrappers-touched"])
@pytest.mark.parametrize("variant", ["plain", "raw", "streaming"])
@pytest.mark.parametrize("rid", SHAPES)
def test_clients_built_before_instrument_are_covered(rid: str, variant: str, touched: bool,
                                                     replay_server: ReplayServer, tracer_provider: Any,
                                                     meter_provider: Any, span_exporter: Any,
                                                     metric_reader: Any) -> None:
    """An app builds its clients at import time, often before ``aicost.instrument()``. ``with_raw_response`` /
    ``with_streaming_response`` capture the resource's bound methods when first touched (a cached_property per
    client), so a client that touched them before ``instrument()`` holds the unpatched methods: those calls must
    be costed too (issue 2: "Clients created before instrument() are covered too")."""
    import aicost
    from conftest import Telemetry

    case = CASES[rid]
    client = _make_client(case, replay_server, is_async=False)
    resource = _resource(client, case)
    if touched:
        resource.with_raw_response, resource.with_streaming_response  # noqa: B018 - built before instrument()
    aicost.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        replay_server.enqueue_recording(rid)
        outcome = call_sync(case, replay_server, variant, client=client)
        check_outcome(case, variant, outcome, Telemetry(tracer_provider, meter_provider, span_exporter, metric_reader),
                      replay_server)
    finally:
        aicost.uninstrument()
        client.close()


@pytest.mark.parametrize("rid", SHAPES)
def test_uninstrument_restores_the_sdk(rid: str, replay_server: ReplayServer, tracer_provider: Any,
                                       meter_provider: Any, span_exporter: Any) -> None:
    """After instrument() then uninstrument(), the same replay produces no aicost telemetry and the same result."""
    import aicost

    case = CASES[rid]
    aicost.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    aicost.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)  # idempotent
    aicost.uninstrument()
    replay_server.enqueue_recording(rid)
    outcome = call_sync(case, replay_server, "plain")
    assert outcome.error is None
    aicost_spans = [s for s in span_exporter.get_finished_spans() if _is_aicost_span(s)]
    assert aicost_spans == [], f"{rid}: aicost spans after uninstrument(): {[s.name for s in aicost_spans]}"
    _check_result(case, "plain", outcome, expected_outcome(rid))


WEB_SEARCH_RECORDINGS = [rid for rid in CASES if expected_outcome(rid).web_search_calls]


@pytest.mark.parametrize("rid", WEB_SEARCH_RECORDINGS)
def test_web_search_calls_are_billed(rid: str, instrumented: Any, replay_server: ReplayServer) -> None:
    """Responses that ran the web_search_preview tool bill $25 per 1K calls on top of tokens (gpt-4.1)."""
    case = CASES[rid]
    exp = expected_outcome(rid)
    replay_server.enqueue_recording(rid)
    outcome = call_sync(case, replay_server, "plain")
    assert outcome.error is None
    (span,) = instrumented.cost_spans()
    attrs = _attrs(span)
    assert attrs.get(sc.AICOST_USAGE_WEB_SEARCH_REQUESTS) == exp.web_search_calls, (
        f"{rid}: {sc.AICOST_USAGE_WEB_SEARCH_REQUESTS}={attrs.get(sc.AICOST_USAGE_WEB_SEARCH_REQUESTS)!r}, "
        f"the response ran {exp.web_search_calls} web_search_call(s)")
    tokens = oracle_cost(case.provider, exp.response_model, exp.usage or {}, exp.service_tier)
    assert tokens is not None
    expected = tokens + exp.web_search_calls * WEB_SEARCH_PREVIEW_PER_CALL
    assert _decimal(attrs[sc.AICOST_COST_TOTAL]) == expected, (
        f"{rid}: total {attrs[sc.AICOST_COST_TOTAL]} != tokens {tokens} + {exp.web_search_calls} x "
        f"{WEB_SEARCH_PREVIEW_PER_CALL}")


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_unknown_model_is_never_silently_free(vendor: str, instrumented: Any, replay_server: ReplayServer,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """A real response body, but from a model no price list knows (a fine-tune, a self-hosted name): the span
    must say the price is unknown rather than report $0, keep the token counts, and warn once."""
    rid = "openai-chat-nonstream-014" if vendor == "openai" else "anthropic-messages-nonstream-018"
    unknown = "acme-private-model-xyz"
    case = dataclasses.replace(CASES[rid], request_body={**CASES[rid].request_body, "model": unknown})
    body = json.loads(load_recording(rid)["response"]["body"])
    body["model"] = unknown  # asked for and answered by a model no price list has
    exp_usage = (_openai_usage if vendor == "openai" else _anthropic_usage)(body["usage"])
    with caplog.at_level("WARNING", logger="aicost"):
        for _ in range(2):
            replay_server.reset()
            replay_server.enqueue(Reply.json(body))
            outcome = call_sync(case, replay_server, "plain")
            assert outcome.error is None, outcome.error
    spans = [s for s in instrumented.spans() if sc.AICOST_PRICE_KNOWN in _attrs(s)]
    assert len(spans) == 2, [s.name for s in instrumented.spans()]
    for span in spans:
        attrs = _attrs(span)
        assert attrs[sc.AICOST_PRICE_KNOWN] is False
        assert sc.GEN_AI_USAGE_COST not in attrs, f"unknown model reported a cost: {attrs[sc.GEN_AI_USAGE_COST]}"
        assert sc.AICOST_COST_TOTAL not in attrs
        assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == exp_usage["input"]
        assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == exp_usage["output"]
    warnings = [r for r in caplog.records if r.name.startswith("aicost") and unknown in r.getMessage()]
    assert len(warnings) == 1, (
        f"expected one warning naming the unknown model, got {[r.getMessage() for r in warnings]}")


def test_every_recording_is_covered() -> None:
    """The corpus has 177 recordings; every one is parametrised (3 legacy /v1/complete ones skip with reason)."""
    assert len(CASES) == 177
    covered = {p.values[0] for p in PARAMS}
    assert covered == set(CASES)
    skipped = {p.values[0] for p in PARAMS if p.marks}
    assert skipped == {rid for rid, c in CASES.items() if c.kind == "complete"} and len(skipped) == 3
    # every priced recording has an oracle price (a missing one would be a test bug, not an aicost bug)
    for rid, case in CASES.items():
        exp = expected_outcome(rid)
        if case.status < 400 and case.kind != "complete":
            assert published_price(case.provider, exp.response_model or case.request_model, exp.service_tier), rid


@pytest.mark.parametrize("rid", ["anthropic-messages-nonstream-014", "anthropic-messages-stream-015"])
def test_vendor_warnings_still_point_at_the_caller(rid: str, instrumented: Any, replay_server: ReplayServer,
                                                  anthropic_deprecates: Any) -> None:
    """The SDK warns about deprecated models with a stacklevel that names the application's line. Through aicost
    the warning must still name it: pointed at aicost's wrapper, Python's default filters hide a
    DeprecationWarning that a script would otherwise show (the call must behave exactly as without aicost)."""
    import warnings

    case = CASES[rid]
    anthropic_deprecates(case.request_model)
    client = _make_client(case, replay_server, is_async=False)
    replay_server.enqueue_recording(rid)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = client.messages.create(**_kwargs(case))  # the SDK warns here: the model is deprecated
            if case.stream:
                for _ in result:
                    pass
    finally:
        client.close()
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning) and "deprecated" in str(w.message)]
    assert deprecations, f"{rid}: the SDK no longer warns about {case.request_model} (test premise)"
    assert all(w.filename == __file__ for w in deprecations), (
        f"{rid}: the SDK's warning is attributed to {[f'{w.filename}:{w.lineno}' for w in deprecations]}, "
        f"not to the caller {__file__}")


@pytest.mark.parametrize("rid", ["anthropic-messages-nonstream-014", "anthropic-messages-stream-015"])
async def test_async_vendor_warnings_point_where_they_do_without_aicost(
        rid: str, tracer_provider: Any, meter_provider: Any, replay_server: ReplayServer,
        anthropic_deprecates: Any) -> None:
    """The async SDK's coroutine runs under the frame that awaits it, and its ``stacklevel`` names the frame above
    that (the application's awaiter). Through aicost both frames would be aicost's; the warning must be
    attributed to the same file and line as without aicost, whatever that line is."""
    import warnings

    import aicost

    case = CASES[rid]
    anthropic_deprecates(case.request_model)

    async def application_call(client: Any) -> None:
        result = await client.messages.create(**_kwargs(case))  # the SDK's coroutine warns here
        if case.stream:
            async for _ in result:
                pass

    async def warned_at() -> list[tuple[str, int]]:
        client = _make_client(case, replay_server, is_async=True)
        replay_server.enqueue_recording(rid)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                await application_call(client)  # where the async SDK's stacklevel points
        finally:
            await client.close()
        return [(w.filename, w.lineno) for w in caught
                if issubclass(w.category, DeprecationWarning) and "deprecated" in str(w.message)]

    bare = await warned_at()
    assert bare and all(filename == __file__ for filename, _ in bare), f"test premise: {bare}"
    aicost.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        through_aicost = await warned_at()
    finally:
        aicost.uninstrument()
    assert through_aicost == bare, f"{rid}: warned at {through_aicost} through aicost, at {bare} without it"
