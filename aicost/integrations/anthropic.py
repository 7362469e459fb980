"""Anthropic SDK (anthropic 2.x): which methods bill, how to read usage, and how to share the SDK's own span.

Patch points follow ``../shared/design/vendor-sdks.md`` §2: ``create``, ``parse`` and ``stream`` are separate
entry points (``stream`` and ``parse`` bypass ``create``), in ``messages`` and ``beta.messages``, plus the copies
of those functions that the Bedrock and Vertex beta resources make at import time.

Anthropic's usage excludes cache reads and writes from ``input_tokens``; ``Usage`` includes them, so the reader
adds them (the same sum the SDK's own span and the OpenTelemetry conventions use). Stream usage is
cumulative in ``message_delta``: it overwrites what ``message_start`` said, never adds to it.

**Native tracing.** anthropic 2.x emits its own ``anthropic.messages.create`` span whenever an OpenTelemetry SDK
is configured. aicost does not add a second span for the same call: it captures the SDK's span (through a proxy
around the client's tracer) and writes its cost, normalised usage and attribution onto it, holding back the
SDK's ``end()`` until it has. When native tracing is off (no OTel SDK, ``open_telemetry=False`` or
``ANTHROPIC_OPEN_TELEMETRY=false``), aicost emits its own span as for OpenAI. Either way exactly one span
carries the call's cost.
"""

from __future__ import annotations

import contextvars
import json
import weakref
from functools import partial
from typing import Any, Callable

from opentelemetry import trace

from .._log import error_once
from .._time import to_ns
from ..pricing.names import enables_long_context
from ..usage import MAX_COUNT, Usage, is_object, read_count
from ..vendor import (CompletedWork, Endpoint, Observed, RequestMeta, ResponseMeta, StreamAccumulator, field,
                      field_reader, nested, request_count, request_tier, string)
from . import _batches
from ._claude_tools import container_tools, read_web_searches
from .stainless import NO_ITEM, StainlessIntegration, StainlessShape, server_of

_MESSAGES = "anthropic.resources.messages.messages"
_BETA = "anthropic.resources.beta.messages.messages"
_BOTH = ("Messages", "AsyncMessages")
_SHAPE = StainlessShape("max_tokens")  # Messages requires max_tokens; a policy cap lowers it
_COUNT_SHAPE = StainlessShape(generates=False)


def _endpoints() -> tuple[Endpoint, ...]:
    table = []
    for module, prefix in ((_MESSAGES, "anthropic.messages"), (_BETA, "anthropic.beta.messages"),
                           ("anthropic.lib.bedrock._beta_messages", "anthropic.bedrock.beta.messages"),
                           ("anthropic.lib.vertex._beta_messages", "anthropic.vertex.beta.messages")):
        table += [
            Endpoint(module, _BOTH, "create", f"{prefix}.create", "chat", shape=_SHAPE),
            Endpoint(module, _BOTH, "parse", f"{prefix}.parse", "chat", shape=_SHAPE),
            Endpoint(module, _BOTH, "stream", f"{prefix}.stream", "chat", kind="stream_manager", shape=_SHAPE),
            Endpoint(module, _BOTH, "count_tokens", f"{prefix}.count_tokens", "count_tokens", billable=False,
                     shape=_COUNT_SHAPE),
        ]
    # Message Batches (docs/batches.md): billed from the results, at batch rates. The create call gets an unbilled
    # span and the attribution in force is remembered with the batch id (a Message Batch has no metadata, and each
    # request's ``custom_id`` is the caller's key); reading the results records one costed call per succeeded one.
    for module, prefix in (("anthropic.resources.messages.batches", "anthropic.messages.batches"),
                           ("anthropic.resources.beta.messages.batches", "anthropic.beta.messages.batches")):
        table += [
            Endpoint(module, _BATCHES, "create", f"{prefix}.create", "batch", kind="observe", billable=False),
            Endpoint(module, _BATCHES, "retrieve", f"{prefix}.retrieve", "", kind="observe", billable=False),
            Endpoint(module, _BATCHES, "results", f"{prefix}.results", "", kind="observe", billable=False),
        ]
    return tuple(table)


_BATCHES = ("Batches", "AsyncBatches")
ENDPOINTS = _endpoints()
_NATIVE_SPAN_NAMES = frozenset(("anthropic.messages.create", "anthropic.messages.count_tokens",
                                "anthropic.messages.batches.create"))
_BATCHES_SEEN = _batches.Registry()  # batch id -> BatchInfo, for the batches created (or looked up) here


def read_usage(u: Any, into: Usage | None = None, fields: Callable[[str], Any] | None = None,
               require_output: bool = False, check: bool = True) -> Usage | None:
    """``Message.usage`` / ``message_start`` usage / cumulative ``message_delta`` usage -> ``Usage``.

    With ``into``, only the fields present (not None) overwrite it, as the SDK's own accumulator does. A message's
    (or ``message_start``'s) ``input_tokens`` and ``output_tokens`` are required; so is ``output_tokens`` with
    ``require_output`` (a ``message_delta``'s: the final count, ``message_start``'s being a placeholder). Every
    count is checked as it is read (``usage.read_count``), and usage that fails says why in ``Usage.invalid``.
    ``fields``: a ``vendor.field_reader`` of ``u``, when the caller has one. ``check=False``: not judged yet
    (``Usage.checked``), as a stream's usage is not before its last event: the caller checks it once, at the end.
    """
    if u is None:
        return into
    usage = into if into is not None else Usage()
    if not is_object(u):
        usage.invalid = usage.invalid or "usage is not an object"
        return usage
    g = fields or field_reader(u)  # usage fields only (the beta and non-beta models declare different ones)
    fresh = into is None
    raw_in = g("input_tokens")
    cache_read = g("cache_read_input_tokens")
    cache_write = g("cache_creation_input_tokens")
    out = g("output_tokens")
    if fresh and (type(raw_in) is int and type(cache_read) is int and type(cache_write) is int and type(out) is int
                  and 0 <= raw_in <= MAX_COUNT and 0 <= cache_read <= MAX_COUNT and 0 <= cache_write <= MAX_COUNT
                  and 0 <= out <= MAX_COUNT):
        # The common case, read_count's own fast check written inline: read_count would say the same, but its four
        # calls cost ~2 k instructions per Anthropic call (overhead_instructions.py, 2026-12-05: +2,045 per call,
        # +2,087 to the first chunk), against issue 14's budget of +1 % per call.
        usage.cache_read_tokens = cache_read
        usage.cache_write_tokens = cache_write
        usage.input_tokens = raw_in + cache_read + cache_write
        usage.output_tokens = out
    else:
        if fresh or raw_in is not None or cache_read is not None or cache_write is not None:
            plain = (read_count(usage, raw_in, "input_tokens", fresh) if (fresh or raw_in is not None)
                     else usage.text_input_tokens)
            read = (read_count(usage, cache_read, "cache_read_input_tokens") if (fresh or cache_read is not None)
                    else usage.cache_read_tokens)
            write = (read_count(usage, cache_write, "cache_creation_input_tokens")
                     if (fresh or cache_write is not None) else usage.cache_write_tokens)
            usage.cache_read_tokens = read
            usage.cache_write_tokens = write
            usage.input_tokens = plain + read + write
        if fresh or out is not None:
            usage.output_tokens = read_count(usage, out, "output_tokens", fresh)
        elif require_output and usage.invalid is None:  # the placeholder stands, and says it is not the final count
            usage.invalid = "message_delta usage has no output_tokens"
    creation = nested(usage, g("cache_creation"), "cache_creation")
    if creation is not None:
        usage.cache_write_1h_tokens = read_count(usage, field(creation, "ephemeral_1h_input_tokens"),
                                                 "ephemeral_1h_input_tokens")
    details = nested(usage, g("output_tokens_details"), "output_tokens_details")
    if details is not None:
        usage.reasoning_tokens = read_count(usage, field(details, "thinking_tokens"), "thinking_tokens")
    server_tools = g("server_tool_use")
    if server_tools is not None:  # most calls ran none: no call made for them
        read_web_searches(usage, server_tools)
    return usage.checked() if check else usage


def long_context_enabled(resource: Any, kwargs: dict[str, Any]) -> bool:
    """Whether the request enabled Claude's 1M-token context window (``pricing.names.enables_long_context``), the
    only case Anthropic bills its long-context rates: in ``betas=[...]`` (``beta.messages``), an ``anthropic-beta``
    header in ``extra_headers``, or the client's ``default_headers``. Without it the window is 200K tokens.
    Asked only when a call's input crosses a price band (``request_meta`` passes it to pricing uncalled): the
    header scan would otherwise cost every call, and nearly no call is that large."""
    betas = kwargs.get("betas")
    if betas and enables_long_context(betas):
        return True
    extra = kwargs.get("extra_headers")
    if extra and _names_long_context(extra):
        return True
    custom = getattr(getattr(resource, "_client", None), "_custom_headers", None)
    return bool(custom) and _names_long_context(custom)


def _names_long_context(headers: Any) -> bool:
    if not hasattr(headers, "items"):
        return False
    for name, value in headers.items():
        if isinstance(name, str) and name.lower() == "anthropic-beta" and enables_long_context(value):
            return True
    return False


class Iterations:
    """What beta ``usage.iterations`` adds to the top-level usage (see :func:`read_iterations`)."""

    __slots__ = ("compaction", "advisors", "served_by", "steps")

    def __init__(self, compaction: Usage | None, advisors: tuple[tuple[str, str | None, Usage], ...],
                 served_by: str | None = None, steps: tuple[Usage, ...] = ()) -> None:
        self.compaction = compaction
        self.advisors = advisors
        self.served_by = served_by  # the fallback model that produced the answer, which the top level describes
        self.steps = steps  # the call's own sampling steps, in order: each billed by its own input


def read_iterations(u: Any, fields: Callable[[str], Any] | None = None) -> Iterations | None:
    """Beta ``usage.iterations``: the entries whose tokens the top-level usage leaves out, or None.

    * ``compaction``: the SDK documents that "a ``compaction`` entry's tokens are not included in the top-level
      ``usage`` fields", yet they are billed, so they are added to the call's usage (at the call's model: the
      entry names none).
    * ``advisor_message``: Anthropic's advisor-tool docs: "Top-level ``usage`` fields reflect executor tokens
      only. Advisor tokens are not rolled into the top-level totals because they are billed at a different
      rate", and "iterations with type ``advisor_message`` are billed at the advisor model's rates". They become
      sub-inferences, priced at their own model, one per advisor model.
    * ``message``: what the top level already sums. ``fallback_message``: the attempt that served the answer, which
      *is* the top level ("the top-level ``usage`` counts describe only the attempt that produced the returned
      message"); a hop that declined before producing output "costs nothing" (both from the refusals-and-fallback
      docs). Neither is added, but the ``fallback_message`` entry names the model that served the answer: in a
      stream declined mid-output, ``message_start`` still names the first model ("read the serving model ... from
      the ``fallback_message`` entry in the final ``message_delta``'s ``usage.iterations``").

    ``message``, ``fallback_message`` and ``compaction`` entries are also the call's sampling steps (``steps``):
    the SDK describes ``message`` entries as "model sampling iterations, such as the turns of a server-side tool
    use loop", each "with its own input/output token counts and cache statistics". Anthropic bills its
    long-context rates to a step whose own input exceeds 200K, so a loop is priced step by step
    (:func:`_steps_hint`).
    """
    if fields is None and not is_object(u):
        return None
    iterations = (fields or field_reader(u))("iterations")  # only the beta usage declares it
    if not iterations or not isinstance(iterations, list):
        return None
    compaction: Usage | None = None
    advisors: dict[str | None, Usage] = {}
    served_by: str | None = None
    steps: list[Usage] = []
    for entry in iterations:  # on a non-beta Usage the undeclared list stays plain JSON: ``field`` reads both
        kind = field(entry, "type") if is_object(entry) else None
        if kind == "message":
            steps.append(read_usage(entry))
        elif kind == "compaction":
            part = read_usage(entry)
            steps.append(part)
            compaction = part if compaction is None else compaction + part
        elif kind == "advisor_message":
            part = read_usage(entry)
            if part is not None:
                model = field(entry, "model")
                model = model if isinstance(model, str) and model else None
                seen = advisors.get(model)
                advisors[model] = part if seen is None else seen + part
        elif kind == "fallback_message":
            served_by = string(field(entry, "model")) or served_by
            steps.append(read_usage(entry))
    if compaction is None and not advisors and served_by is None and len(steps) < 2:
        return None
    return Iterations(compaction, tuple(("advisor", model, usage) for model, usage in advisors.items()), served_by,
                      tuple(steps))


# Claude's context window without the 1M-context beta. No long-context band starts below it, so a call whose
# (summed) input is within it needs no look at its steps.
_STANDARD_WINDOW = 200_000
# Content blocks of tools Anthropic runs itself (web search and fetch, code execution, tool search; MCP connector
# tools): after each, the model samples again within the same call.
_SERVER_TOOL_BLOCKS = frozenset(("server_tool_use", "mcp_tool_use"))


def _steps_hint(usage: Usage, iterations: Iterations | None, several_steps: bool) -> dict[str, Any] | None:
    """``price_call``'s ``steps`` for a call whose input is beyond the standard window, or None (one request).

    The iterations' steps when there are several and they add up to the call's usage; ``()`` (several steps,
    sizes unknown: priced at base rates and marked estimated) when they do not, or when there are no
    iterations but the call shows it ran several steps (``several_steps``: a server tool ran, or the turn paused).
    """
    steps = iterations.steps if iterations is not None else ()
    if len(steps) == 1:
        return None
    if steps:
        return {"steps": steps if _adds_up(steps, usage) else ()}
    return {"steps": ()} if several_steps else None


def _adds_up(steps: tuple[Usage, ...], usage: Usage) -> bool:
    """Whether the steps are valid and are, together, exactly the call's input, cache reads and writes and output
    (a fallback's declined hop, left out of the top level, would make them more)."""
    if any(step.invalid is not None for step in steps):
        return False
    total = steps[0]
    for step in steps[1:]:
        total = total + step
    return (total.input_tokens, total.cache_read_tokens, total.cache_write_tokens, total.output_tokens) == (
        usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens, usage.output_tokens)


def _with_iterations(meta: ResponseMeta, iterations: Iterations | None, several_steps: bool) -> ResponseMeta:
    """``meta`` (read from the top-level usage) with what the iterations add: compaction tokens, advisor
    sub-inferences, the model that served a fallback, and the steps a long call is priced by."""
    if iterations is not None:
        if meta.usage is not None and iterations.compaction is not None:
            meta.usage = meta.usage + iterations.compaction
        meta.sub_inferences = iterations.advisors
        meta.model = iterations.served_by or meta.model
    if meta.usage is not None and meta.usage.input_tokens > _STANDARD_WINDOW:
        meta.price_hints = _steps_hint(meta.usage, iterations, several_steps)
    return meta


def _text(content: Any) -> str | None:
    parts = []
    for block in content if isinstance(content, list) else ():
        for name in ("text", "thinking"):
            value = getattr(block, name, None)
            if isinstance(value, str):
                parts.append(value)
        tool_input = getattr(block, "input", None)
        if isinstance(tool_input, dict):
            import json

            try:
                parts.append(json.dumps(tool_input, default=str))
            except ValueError:  # a circular structure: not JSON the vendor could have sent
                pass
    return "".join(parts) or None


def _is_server_tool(block: Any) -> bool:
    kind = getattr(block, "type", None)
    return isinstance(kind, str) and kind in _SERVER_TOOL_BLOCKS


def _ran_server_tools(content: Any) -> bool:
    return isinstance(content, list) and any(_is_server_tool(block) for block in content)


def read_top_usage(u: Any, into: Usage | None = None, require_output: bool = False, check: bool = True
                   ) -> tuple[Usage | None, Iterations | None, str | None]:
    """A message's (or a stream event's) usage object -> its usage (:func:`read_usage`), iterations
    (:func:`read_iterations`) and service tier, its fields read once."""
    if u is None or not is_object(u):
        return read_usage(u, into, check=check), None, None
    g = field_reader(u)
    return read_usage(u, into, g, require_output, check), read_iterations(u, g), string(g("service_tier"))


def read_message(message: Any, want_text: bool = False) -> ResponseMeta:
    usage_obj = getattr(message, "usage", None)
    stop = string(getattr(message, "stop_reason", None))
    usage, iterations, tier = read_top_usage(usage_obj)
    # Several sampling steps without iterations: checked only where it can matter (a long input), as it reads
    # the content.
    several_steps = usage is not None and usage.input_tokens > _STANDARD_WINDOW and (
        stop == "pause_turn" or usage.web_search_requests > 0 or _ran_server_tools(getattr(message, "content", None)))
    return _with_iterations(ResponseMeta(
        usage=usage,
        model=string(getattr(message, "model", None)),
        response_id=string(getattr(message, "id", None)),
        finish_reasons=[stop] if stop else [],
        service_tier=tier,
        hosted_tools=container_tools(getattr(message, "container", None)),
        # The text is needed only to estimate missing or invalid usage, or for opted-in content capture.
        output_text=(_text(getattr(message, "content", None))
                     if want_text or usage is None or usage.invalid is not None else None),
    ), iterations, several_steps)


class EventAccumulator(StreamAccumulator):
    """``message_start`` gives the input side; each ``message_delta`` carries cumulative totals, which overwrite
    it. The usage is judged (``Usage.checked``) once, as it stands at the end (:meth:`result`): a verdict on
    ``message_start``'s placeholder output count would outlive the count itself."""

    __slots__ = ("usage", "iterations", "model", "response_id", "stop_reason", "service_tier", "keep_text", "texts",
                 "server_tools", "final", "container")

    def __init__(self, keep_text: bool) -> None:
        super().__init__()
        self.container: Any = None  # message_start's or a message_delta's container: a container tool ran
        self.server_tools = False  # a server tool's block started: the call sampled several steps
        # A message_delta carried usage: the final output count. Without it message_start's output count (a
        # placeholder) is all there is, and the stream is not complete even after message_stop.
        self.final = False
        self.usage: Usage | None = None
        self.iterations: Iterations | None = None  # beta: cumulative like the rest, so the last one wins
        self.model: str | None = None
        self.response_id: str | None = None
        self.stop_reason: str | None = None
        self.service_tier: str | None = None
        self.keep_text = keep_text
        self.texts: list[str] = []

    def observe(self, event: Any) -> bool:
        kind = getattr(event, "type", None)
        if kind == "content_block_delta":
            if self.keep_text:
                delta = getattr(event, "delta", None)
                text = getattr(delta, "text", None) or getattr(delta, "partial_json", None) or getattr(delta, "thinking", None)
                if isinstance(text, str) and text:
                    self.texts.append(text)
        elif kind == "message_start":
            message = getattr(event, "message", None)
            self.model = string(getattr(message, "model", None))
            self.response_id = string(getattr(message, "id", None))
            usage = getattr(message, "usage", None)
            self.usage, self.iterations, self.service_tier = read_top_usage(usage, check=False)
            self.container = getattr(message, "container", None)
            if usage is None:
                self.usage = Usage(invalid="message_start has no usage")
        elif kind == "message_delta":
            usage = getattr(event, "usage", None)
            if usage is not None:
                self.final = True
            self.usage, iterations, _ = read_top_usage(usage, self.usage, require_output=True, check=False)
            if iterations is not None:  # a delta without iterations leaves message_start's figure standing
                self.iterations = iterations
            delta = getattr(event, "delta", None)
            self.stop_reason = string(getattr(delta, "stop_reason", None)) or self.stop_reason
            container = getattr(delta, "container", None)
            if container is not None:
                self.container = container
        elif kind == "message_stop":
            self.complete = self.final
        elif kind == "content_block_start" and not self.server_tools:
            self.server_tools = _is_server_tool(getattr(event, "content_block", None))
        return True

    def result(self) -> ResponseMeta:
        usage = self.usage
        if usage is not None:
            usage.checked()  # before ``_with_iterations`` adds compaction to it: a sum keeps its parts' verdicts
        return _with_iterations(ResponseMeta(
            usage=usage,
            model=self.model,
            response_id=self.response_id,
            finish_reasons=[self.stop_reason] if self.stop_reason else [],
            service_tier=self.service_tier,
            output_text="".join(self.texts) or None,
            hosted_tools=container_tools(self.container),
        ), self.iterations, self.server_tools or self.stop_reason == "pause_turn" or (
            usage is not None and usage.web_search_requests > 0))


# ------------------------------------------------------------------------------- native span cooperation
_capture: contextvars.ContextVar[list | None] = contextvars.ContextVar("aicost_anthropic_capture", default=None)


class DeferredEndSpan(trace.Span):
    """The SDK's call span, with its ``end()`` held back until aicost has written the call's cost on it.

    The SDK ends a non-streaming call's span inside ``request()``, before aicost sees the parsed message; a
    streaming call's span ends when the body ends. In both cases the real ``end()`` runs once aicost has
    finished (microseconds later for a plain call; when the body has been read for a raw response).

    So is an OK status, which an error status overrules: the SDK marks a body the caller read itself OK when it
    ends, not knowing its events, but aicost read them, and a vendor's error event among them failed the call
    (``stainless.EventBodyReader``). aicost itself only ever sets an error status.
    """

    def __init__(self, span: Any) -> None:
        self._span = span
        self._sdk_ended = False
        self._aicost_done = False
        self._failed = False  # an error status was set
        self._held_ok: tuple[Any, str | None] | None = None  # the SDK's OK, set at aicost_end unless it failed
        self._on_sdk_end: Callable[[], None] | None = None

    # -- the SDK's side
    def end(self, end_time: int | None = None) -> None:
        if self._aicost_done:
            self._span.end(end_time)
            return
        if self._sdk_ended:
            return
        self._sdk_ended = True
        callback, self._on_sdk_end = self._on_sdk_end, None
        if callback is not None:
            try:
                callback()
            except Exception:
                error_once("native:end", "aicost: could not finish a call when the SDK ended its span")
                self.aicost_end()

    def is_recording(self) -> bool:
        return not self._sdk_ended and self._span.is_recording()

    def aicost_recording(self) -> bool:
        """Whether aicost's attributes would land: the SDK may have asked to end, but the real end waits for them."""
        return self._span.is_recording()

    # -- aicost's side
    def when_sdk_ends(self, callback: Callable[[], None]) -> None:
        """Streams: finish the call when the SDK ends the span (the body ended, was closed or dropped)."""
        if self._sdk_ended:
            callback()
        else:
            self._on_sdk_end = callback

    def aicost_end(self) -> None:
        if self._aicost_done:
            return
        self._aicost_done = True
        self._on_sdk_end = None
        held, self._held_ok = self._held_ok, None
        if held is not None and not self._failed:
            self._span.set_status(*held)
        if self._sdk_ended:
            # End now rather than at the time the SDK asked: with raw responses the SDK considers the call over
            # when the response returns, yet the body (and the SDK's own time-to-first-chunk) comes later.
            self._span.end()

    # -- plain delegation
    def get_span_context(self) -> Any:
        return self._span.get_span_context()

    def set_attributes(self, attributes: Any) -> None:
        self._span.set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        self._span.add_event(name, attributes, timestamp)

    def add_link(self, context: Any, attributes: Any = None) -> None:
        self._span.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self._span.update_name(name)

    def set_status(self, status: Any, description: str | None = None) -> None:
        code = getattr(status, "status_code", status)
        if code is trace.StatusCode.OK:
            if not self._aicost_done:
                self._held_ok = (status, description)
                return
            if self._failed:
                return
        elif code is trace.StatusCode.ERROR:
            self._failed = True
        self._span.set_status(status, description)

    def record_exception(self, exception: BaseException, attributes: Any = None, timestamp: int | None = None,
                         escaped: bool = False) -> None:
        self._span.record_exception(exception, attributes, timestamp, escaped)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._span, name)


# The clients whose tracer aicost replaced with a CapturingTracer: uninstrument() gives each its own back.
_WRAPPED_CLIENTS: "weakref.WeakSet[Any]" = weakref.WeakSet()


class CapturingTracer:
    """Stands in for an Anthropic client's tracer; hands the call span to the aicost call that is waiting."""

    def __init__(self, inner: Any) -> None:
        self._aicost_inner = inner

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> Any:
        span = self._aicost_inner.start_span(name, *args, **kwargs)
        holder = _capture.get()
        if holder is not None and not holder and name in _NATIVE_SPAN_NAMES and span.is_recording():
            proxy = DeferredEndSpan(span)
            holder.append(proxy)
            return proxy
        return span

    def __getattr__(self, name: str) -> Any:
        return getattr(self._aicost_inner, name)


class NativeSpanCapture:
    __slots__ = ("holder", "token")
    source = "anthropic-sdk"  # aicost.span.source on the SDK's span aicost enriched

    def __init__(self) -> None:
        self.holder: list[DeferredEndSpan] = []
        self.token = _capture.set(self.holder)

    def span(self) -> DeferredEndSpan | None:
        return self.holder[0] if self.holder else None

    def release(self) -> None:
        if self.token is not None:
            try:
                _capture.reset(self.token)
            except ValueError:
                _capture.set(None)
            self.token = None


class AnthropicIntegration(StainlessIntegration):
    name = "anthropic"
    sdk = "anthropic"
    endpoints = ENDPOINTS

    def route_path(self, method: str, path: str) -> Endpoint | None:
        if method.lower() == "post" and path.split("?", 1)[0].rstrip("/").endswith("/messages"):
            return ENDPOINTS[0]
        return None

    def __init__(self) -> None:
        import anthropic
        from anthropic._response import BaseAPIResponse

        self._stream_types = (anthropic.Stream, anthropic.AsyncStream)
        self._raw_types = (BaseAPIResponse,)
        try:
            from anthropic._legacy_response import LegacyAPIResponse

            self._raw_types += (LegacyAPIResponse,)
        except ImportError:
            pass

    def provider(self, resource: Any) -> str:
        client = getattr(resource, "_client", None)
        return getattr(client, "_gen_ai_provider_name", None) or "anthropic"

    def request_meta(self, endpoint: Endpoint, resource: Any, kwargs: dict[str, Any]) -> RequestMeta:
        host, port = server_of(resource)
        model = kwargs.get("model")
        tier = kwargs.get("service_tier")
        return RequestMeta(
            model=model if isinstance(model, str) else None,
            stream=endpoint.kind == "stream_manager" or kwargs.get("stream") is True,
            max_tokens=request_count(endpoint.shape.output_cap(kwargs)),  # as sent (an ``extra_body``'s over it)
            service_tier=request_tier(tier),
            server_address=host,
            server_port=port,
            price_hints={"long_context": partial(long_context_enabled, resource, kwargs)} if endpoint.billable else None,
        )

    def read_response(self, endpoint: Endpoint, response: Any, want_text: bool) -> ResponseMeta:
        if not endpoint.billable:
            return ResponseMeta()
        return read_message(response, want_text)

    def new_accumulator(self, endpoint: Endpoint, hide_usage_chunk: bool, keep_text: bool) -> StreamAccumulator:
        return EventAccumulator(keep_text)

    def stream_event(self, name: str | None, data: bytes, options: Any, client: Any, response: Any) -> Any:
        """As ``anthropic.Stream.__stream__``: an ``error`` event (``overloaded_error`` mid-stream) is raised as
        ``client._make_status_error`` makes it, its JSON the body (whose ``error.type`` is the call's
        ``error.type``, see ``error_type``); events without a name, ``ping`` and those without data yield no item;
        every other event's data is the item."""
        if name == "error":
            text = data.decode("utf-8", "replace")
            try:
                body: Any = json.loads(data)
                message = f"{body}"
            except ValueError:
                body, message = text, text or f"Error code: {response.status_code}"
            return client._make_status_error(message, body=body, response=response)
        if name is None or name == "ping" or not data:
            return NO_ITEM
        return json.loads(data)  # (``null``: the item ``None``, as the SDK builds it)

    # -- Message Batches (docs/batches.md)
    def after_observed(self, endpoint: Endpoint, resource: Any, args: tuple, kwargs: dict[str, Any], value: Any,
                       seen: Observed) -> Any:
        method = endpoint.method
        if method == "results":
            batch_id = args[0] if args else kwargs.get("message_batch_id")
            if isinstance(batch_id, str) and hasattr(value, "_iterator"):
                value._iterator = self._read_results(batch_id, value._iterator, seen)  # in place: same decoder
            return value
        batch_id = string(field(value, "id")) if getattr(value, "type", None) == "message_batch" else None
        if batch_id is None:
            return value
        known: _batches.BatchInfo = _BATCHES_SEEN.get(batch_id) or _batches.BatchInfo(batch_id, None, None, "reader")
        if method == "create":
            known = _batches.BatchInfo(batch_id, seen.attribution, seen.run_id, "submitter")
        ended = field(value, "ended_at")  # results() retrieves the batch first: its results are dated by it
        if ended is not None and hasattr(ended, "timestamp"):
            known = _batches.BatchInfo(known.batch_id, known.attribution, known.run_id, known.source,
                                       done_ns=to_ns(ended))
        _BATCHES_SEEN.put(batch_id, known)
        return value

    def _read_results(self, batch_id: str, inner: Any, seen: Observed) -> Any:
        """The decoder's items, unchanged; each succeeded one is recorded as it passes (errored, canceled and
        expired requests bill nothing)."""
        info = _BATCHES_SEEN.get(batch_id) or _batches.BatchInfo(batch_id, None, None, "reader")

        def record(item: Any) -> None:
            try:
                result = getattr(item, "result", None)
                if getattr(result, "type", None) != "succeeded":
                    return
                meta = _batches.billed_at_batch_rates(read_message(getattr(result, "message", None)))
                custom_id = string(getattr(item, "custom_id", None)) or meta.response_id or ""
                seen.record(CompletedWork(
                    endpoint=ENDPOINTS[0], request={"model": meta.model}, meta=meta,
                    key=_batches.result_key("anthropic", batch_id, custom_id), attribution=info.attribution,
                    run_id=info.run_id, done_ns=info.done_ns, span_attributes=info.span_attributes(),
                    # Whether the request enabled the 1M context is not in its result: priced by its input size.
                    price_hints={"long_context": None}))
            except Exception:
                error_once("batch:result", "aicost: could not read a Message Batch result")

        if hasattr(inner, "__anext__"):
            async def async_results() -> Any:
                async for item in inner:
                    record(item)
                    yield item

            return async_results()

        def results() -> Any:
            for item in inner:
                record(item)
                yield item

        return results()


    def native_span_capture(self, resource: Any) -> NativeSpanCapture | None:
        client = getattr(resource, "_client", None)
        try:
            tracer = client._tracer if client is not None else None
        except Exception:
            return None
        if tracer is None:
            return None  # native tracing is off for this client: aicost emits its own span
        inner = tracer._aicost_inner if isinstance(tracer, CapturingTracer) else tracer
        if isinstance(inner, trace.ProxyTracer) and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            # The client traces through the global provider and none is set yet: its spans would not record, so
            # aicost's own span (current during the call, as for OpenAI) carries the call. Checked on every call:
            # an application may set its provider later.
            return None
        if not isinstance(tracer, CapturingTracer):
            if not hasattr(client, "_lazy_tracer"):
                return None
            client._lazy_tracer = CapturingTracer(tracer)
            _WRAPPED_CLIENTS.add(client)
        return NativeSpanCapture()

    def uninstrument(self) -> None:
        """Every client aicost's native span capture touched gets its own tracer back."""
        for client in list(_WRAPPED_CLIENTS):
            try:
                tracer = vars(client).get("_lazy_tracer")
                if isinstance(tracer, CapturingTracer):
                    client._lazy_tracer = tracer._aicost_inner
            except Exception:
                error_once("anthropic:tracer", "aicost: could not restore an Anthropic client's tracer")
        _WRAPPED_CLIENTS.clear()


INTEGRATION = AnthropicIntegration
