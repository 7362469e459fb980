"""OpenAI SDK (openai 3.x): which methods bill, and how to read their usage. No span or cost logic here.

Patch points follow ``../shared/design/vendor-sdks.md`` §1: ``parse`` bypasses ``create`` (so both are
patched); the ``stream()`` helpers go through ``create`` (so they are not); ``responses.stream(response_id=...)``
resumes through ``retrieve(stream=True)``. Resource classes are patched, not instances, so clients built before
``instrument()`` are covered, and ``AzureOpenAI`` shares the same classes.
"""

from __future__ import annotations

import json
from typing import Any

from ..usage import Usage, is_object, read_count
from .. import semconv as s
from ..vendor import (BodyReader, CallWatch, CompletedWork, Endpoint, EventStep, Observed, RequestMeta, ResponseMeta,
                      StreamAccumulator, field, part, request_count, request_tier, string)
from . import _batches
from .stainless import STREAM_END, AttrView, StainlessIntegration, StainlessShape, server_of

_CHAT = "openai.resources.chat.completions.completions"
_RESPONSES = "openai.resources.responses.responses"
_BETA_RESPONSES = "openai.resources.beta.responses.responses"
_BOTH = ("Completions", "AsyncCompletions")
_RESP = ("Responses", "AsyncResponses")
_IMAGES = "openai.resources.images"
_IMG = ("Images", "AsyncImages")
_BATCHES = "openai.resources.batches"
_BATCH = ("Batches", "AsyncBatches")

# Which parameter caps output when the request sets none: reasoning models reject chat's ``max_tokens``, so
# ``max_completion_tokens``, which every chat model accepts; Responses has its own name.
_CHAT_SHAPE = StainlessShape("max_completion_tokens")
_RESPONSES_SHAPE = StainlessShape("max_output_tokens")
_COMPLETIONS_SHAPE = StainlessShape("max_tokens")
_SHAPE = StainlessShape()  # no output cap to set: embeddings, images, audio, token counts, Realtime

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(_CHAT, _BOTH, "create", "openai.chat.completions.create", "chat",
             shape=_CHAT_SHAPE),
    Endpoint(_CHAT, _BOTH, "parse", "openai.chat.completions.parse", "chat",
             shape=_CHAT_SHAPE),
    Endpoint(_RESPONSES, _RESP, "create", "openai.responses.create", "chat",
             shape=_RESPONSES_SHAPE),
    Endpoint(_RESPONSES, _RESP, "parse", "openai.responses.parse", "chat",
             shape=_RESPONSES_SHAPE),
    Endpoint(_RESPONSES, _RESP, "compact", "openai.responses.compact", "chat",
             shape=_RESPONSES_SHAPE),
    Endpoint(_RESPONSES, _RESP, "retrieve", "openai.responses.retrieve", "chat", stream_only=True, resumes=True,
             shape=_RESPONSES_SHAPE),
    Endpoint(_BETA_RESPONSES, _RESP, "create", "openai.beta.responses.create", "chat",
             shape=_RESPONSES_SHAPE),
    Endpoint(_BETA_RESPONSES, _RESP, "compact", "openai.beta.responses.compact", "chat",
             shape=_RESPONSES_SHAPE),
    Endpoint(_BETA_RESPONSES, _RESP, "retrieve", "openai.beta.responses.retrieve", "chat", stream_only=True, resumes=True,
             shape=_RESPONSES_SHAPE),
    Endpoint("openai.resources.embeddings", ("Embeddings", "AsyncEmbeddings"), "create",
             "openai.embeddings.create", "embeddings", shape=_SHAPE),
    Endpoint("openai.resources.completions", _BOTH, "create", "openai.completions.create", "text_completion",
             shape=_COMPLETIONS_SHAPE),
    Endpoint("openai.resources.responses.input_tokens", ("InputTokens", "AsyncInputTokens"), "count",
             "openai.responses.input_tokens.count", "count_tokens", billable=False, shape=_SHAPE),
    Endpoint(_IMAGES, _IMG, "generate", "openai.images.generate", "generate_content", shape=_SHAPE),
    Endpoint(_IMAGES, _IMG, "edit", "openai.images.edit", "generate_content", shape=_SHAPE),
    Endpoint(_IMAGES, _IMG, "create_variation", "openai.images.create_variation", "generate_content", shape=_SHAPE),
    Endpoint("openai.resources.audio.transcriptions", ("Transcriptions", "AsyncTranscriptions"), "create",
             "openai.audio.transcriptions.create", "generate_content", shape=_SHAPE),
    Endpoint("openai.resources.audio.translations", ("Translations", "AsyncTranslations"), "create",
             "openai.audio.translations.create", "generate_content", shape=_SHAPE),
    Endpoint("openai.resources.audio.speech", ("Speech", "AsyncSpeech"), "create", "openai.audio.speech.create",
             "generate_content", shape=_SHAPE),
    # WebSocket connections: each response the model generates is one call, read from the connection's events.
    Endpoint("openai.resources.realtime.realtime", ("RealtimeConnection", "AsyncRealtimeConnection"),
             "parse_event", "openai.realtime.response", "chat", kind="events", shape=_SHAPE),
    Endpoint("openai.resources.beta.realtime.realtime", ("RealtimeConnection", "AsyncRealtimeConnection"),
             "parse_event", "openai.beta.realtime.response", "chat", kind="events", shape=_SHAPE),
    Endpoint(_RESPONSES, ("ResponsesConnection", "AsyncResponsesConnection"), "parse_event",
             "openai.responses.connect", "chat", kind="events", shape=_SHAPE),
    # Batch API (docs/batches.md): billed from the output file, at batch rates. The create call gets an unbilled
    # span and carries the attribution in the batch's metadata; the batches it, retrieve and cancel return are
    # remembered, so that reading an output file's content records one costed call per succeeded request.
    Endpoint(_BATCHES, _BATCH, "create", "openai.batches.create", "batch", kind="observe", billable=False),
    Endpoint(_BATCHES, _BATCH, "retrieve", "openai.batches.retrieve", "", kind="observe", billable=False),
    Endpoint(_BATCHES, _BATCH, "cancel", "openai.batches.cancel", "", kind="observe", billable=False),
    Endpoint("openai.resources.files", ("Files", "AsyncFiles"), "content", "openai.files.content", "",
             kind="observe", billable=False),
)

# OpenAI-compatible APIs reached through this SDK with a ``base_url``: the host names the vendor that bills the
# call (``gen_ai.provider.name``), which the price catalog prices where it has that vendor's table (or a resale it
# declares: OpenRouter's ``vendor/model`` names) and leaves unknown otherwise, never at another vendor's price
# (``aicost.pricing.names.names_vendor``). Any other host (a gateway, a proxy, a self-hosted server on another
# port) stays ``openai``, priced only at OpenAI's prices.
COMPATIBLE_HOSTS: dict[str, str] = {
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai",
    "api.together.xyz": "together_ai",
    "api.fireworks.ai": "fireworks_ai",
    "openrouter.ai": "openrouter",
    "api.x.ai": "x_ai",
}

# Hosts known to accept ``stream_options.include_usage`` (see instrument(stream_usage=...)): OpenAI's API, its
# regional hosts (``eu.api.openai.com``: the SDK's data residency option), Azure OpenAI. The first is matched
# exactly, the others as domain suffixes.
_USAGE_CHUNK_HOSTS = ("api.openai.com", ".api.openai.com", ".openai.azure.com", ".cognitiveservices.azure.com")
_USAGE_CHUNK_ENDPOINTS = ("openai.chat.completions.create", "openai.completions.create")
RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"
# The reason a call billed by a unit aicost never estimates (images, audio) has an unknown cost when its usage fails
# validation; ``aicost.usage.invalid_reason`` says what failed.
_INVALID = "the usage failed validation"


def read_usage(u: Any, output_required: bool = True) -> Usage | None:
    """Chat / legacy completions (``prompt_tokens``...), Responses (``input_tokens``...) and embeddings (which
    have no output count: ``output_required=False``).

    OpenAI's input counts already include cached tokens, and output counts include reasoning tokens, which is
    exactly ``Usage``'s rule: no arithmetic is needed, only field names. Counts are checked as they are read
    (``usage.read_count``): usage that fails says why in ``Usage.invalid``.
    """
    if u is None:
        return None
    if not is_object(u):
        return Usage(invalid="usage is not an object")
    g = field  # usage fields only: several names are probed that the other API's model does not declare
    usage = Usage()
    inp, name = g(u, "prompt_tokens"), "prompt_tokens"
    if inp is None:
        inp, name = g(u, "input_tokens"), "input_tokens"
    usage.input_tokens = read_count(usage, inp, name, True)
    out, name = g(u, "completion_tokens"), "completion_tokens"
    if out is None:
        out, name = g(u, "output_tokens"), "output_tokens"
    usage.output_tokens = read_count(usage, out, name, output_required)
    pd = part(usage, u, "prompt_tokens_details")
    if pd is None:
        pd = part(usage, u, "input_tokens_details")
    cd = part(usage, u, "completion_tokens_details")
    if cd is None:
        cd = part(usage, u, "output_tokens_details")
    if pd is not None:
        usage.cache_read_tokens = read_count(usage, g(pd, "cached_tokens"), "cached_tokens")
        usage.cache_write_tokens = read_count(usage, g(pd, "cache_write_tokens"), "cache_write_tokens")
        usage.input_audio_tokens = read_count(usage, g(pd, "audio_tokens"), "audio_tokens")
        usage.input_image_tokens = read_count(usage, g(pd, "image_tokens"), "image_tokens")
    if cd is not None:
        usage.reasoning_tokens = read_count(usage, g(cd, "reasoning_tokens"), "reasoning_tokens")
        usage.output_audio_tokens = read_count(usage, g(cd, "audio_tokens"), "audio_tokens")
    return usage.checked()


# Responses output items of hosted tools OpenAI bills per call or per container session beyond tokens, at rates
# aicost does not list -> the tool's name (``ResponseMeta.hosted_tools``: such a call's price is unknown, not its
# tokens').
# Web search is priced (``web_search_requests``); image generation and MCP are billed as tokens.
_PER_CALL_TOOL_ITEMS = {"file_search_call": "file_search", "code_interpreter_call": "code_interpreter"}


def read_tool_usage(response: Any, usage: Usage | None) -> tuple[str, ...]:
    """Responses API hosted tools billed per request: web search (priced, counted on ``usage``), and those aicost has
    no rates for, returned (``ResponseMeta.hosted_tools``), usage or none."""
    output = getattr(response, "output", None)
    kinds = [getattr(item, "type", None) for item in (output if isinstance(output, list) else ())]
    if usage is not None:
        tool_usage = field(response, "tool_usage")
        web = field(tool_usage, "web_search") if tool_usage is not None else None
        if web is not None:
            usage.web_search_requests = read_count(usage, field(web, "num_requests"), "web_search.num_requests")
        else:  # responses from before ``tool_usage`` existed: one billable search per web_search_call item
            usage.web_search_requests = kinds.count("web_search_call")
    return tuple(dict.fromkeys(_PER_CALL_TOOL_ITEMS[kind] for kind in kinds
                               if isinstance(kind, str) and kind in _PER_CALL_TOOL_ITEMS))


def image_usage(u: Any) -> Usage | None:
    """Image-model usage (the Images API's ``usage``, the Responses hosted tool's ``tool_usage.image_gen``).

    Input and output counts include image tokens, billed at image rates where the model has them. When the output
    details are omitted (the SDK says they can be), every output token is taken as an image token: image
    generation produces images, and a model without a separate image rate bills them at its output rate anyway.
    """
    if u is None:
        return None
    if not is_object(u):
        return Usage(invalid="usage is not an object")
    g = field
    usage = Usage()
    usage.input_tokens = read_count(usage, g(u, "input_tokens"), "input_tokens", True)
    usage.output_tokens = read_count(usage, g(u, "output_tokens"), "output_tokens", True)
    if not usage.input_tokens and not usage.output_tokens and usage.invalid is None:
        return None
    details = part(usage, u, "input_tokens_details")
    image_in = read_count(usage, g(details, "image_tokens"), "image_tokens") if details is not None else 0
    cached = read_count(usage, g(u, "cached_tokens"), "cached_tokens")  # hosted tool only; own rate for images
    if cached:
        cached_details = part(usage, u, "cached_tokens_details")
        cached_images = (read_count(usage, g(cached_details, "cached_image_tokens"), "cached_image_tokens")
                         if cached_details is not None else 0)
        if cached_images > min(image_in, cached) and usage.invalid is None:
            usage.invalid = "cached_image_tokens exceeds image_tokens or cached_tokens"
        cached_images = min(cached_images, image_in, cached)
        image_in -= cached_images
        usage.cache_read_tokens = cached
        usage.cache_read_image_tokens = cached_images
    usage.input_image_tokens = image_in
    details = part(usage, u, "output_tokens_details")
    usage.output_image_tokens = (read_count(usage, g(details, "image_tokens"), "output image_tokens")
                                 if details is not None else usage.output_tokens)
    usage.checked()
    if usage.invalid is None and usage.cache_read_tokens + usage.input_image_tokens > usage.input_tokens:
        usage.invalid = "cached_tokens + image_tokens exceeds input_tokens"
    return usage


def _hosted_tool_usage(response: Any) -> tuple[tuple[str, str | None, Usage], ...]:
    """Responses hosted image generation: "usage reported by hosted tools, separate from base model usage" (the
    SDK's ``ToolUsage``), billed at the image model's rates. The model is the request's tool setting."""
    tool_usage = field(response, "tool_usage")
    usage = image_usage(field(tool_usage, "image_gen")) if tool_usage is not None else None
    return () if usage is None else (("image_generation", None, usage),)


def _items(value: Any) -> Any:
    """A list the vendor sent (choices, tool calls, output items), or nothing if it sent something else."""
    return value if isinstance(value, list) else ()


def _finish_reasons(choices: Any) -> list[str]:
    reasons = []
    for choice in _items(choices):
        reason = string(getattr(choice, "finish_reason", None))
        if reason:
            reasons.append(reason)
    return reasons


def _tool_call_text(tool_calls: Any, parts: list[str]) -> None:
    """Tool-call names and arguments are output tokens too: count them when usage must be estimated."""
    for call in _items(tool_calls):
        function = getattr(call, "function", None)
        if function is not None:
            for value in (getattr(function, "name", None), getattr(function, "arguments", None)):
                if isinstance(value, str) and value:
                    parts.append(value)


def _chat_text(choices: Any) -> str | None:
    parts: list[str] = []
    for choice in _items(choices):
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None) if message is not None else getattr(choice, "text", None)
        if isinstance(content, str):
            parts.append(content)
        if message is not None:
            _tool_call_text(getattr(message, "tool_calls", None), parts)
    return "".join(parts) or None


def read_response(response: Any, want_text: bool = False, output_required: bool = True) -> ResponseMeta:
    """``want_text``: also collect the output text (content capture); it is collected anyway when the usage is
    missing or invalid, for the estimate. ``output_required=False`` for embeddings (no output count)."""
    usage = read_usage(getattr(response, "usage", None), output_required)
    want_text = want_text or usage is None or usage.invalid is not None
    choices = getattr(response, "choices", None)
    meta = ResponseMeta(
        usage=usage,
        model=string(getattr(response, "model", None)),
        response_id=string(getattr(response, "id", None)),
        service_tier=string(getattr(response, "service_tier", None)),
    )
    if choices is not None:
        meta.finish_reasons = _finish_reasons(choices)
        if want_text:
            meta.output_text = _chat_text(choices)
    else:
        status = getattr(response, "status", None)  # Responses API
        if isinstance(status, str) and getattr(response, "object", None) == "response":
            meta.finish_reasons = [status]
            meta.deferred = usage is None and status in ("queued", "in_progress")
        if want_text:
            try:
                text = getattr(response, "output_text", None)  # the SDK's property walks ``output``
            except Exception:  # an ``output`` the property cannot walk (not the documented shape)
                text = None
            meta.output_text = text if isinstance(text, str) else None
        meta.hosted_tools = read_tool_usage(response, usage)
        if usage is not None:
            meta.sub_inferences = _hosted_tool_usage(response)
    return meta


def read_images(response: Any) -> ResponseMeta:
    """Images API. The GPT image models report token usage (priced at the request's model: the response names
    none); DALL-E models are billed per image and report none, so their cost is unknown rather than estimated,
    and so is the cost of usage that fails validation. SVG output is authored by another model with its own usage
    (``svg_usage``): a sub-inference."""
    usage = image_usage(field(response, "usage"))
    meta = ResponseMeta(usage=usage)
    if usage is None:
        meta.unpriced = "no token usage in the response (models billed per image)"
    elif usage.invalid is not None:
        meta.unpriced = _INVALID
    svg = field(response, "svg_usage")
    if svg is not None:
        svg_usage = Usage()
        if not is_object(svg):
            svg_usage.invalid = "svg_usage is not an object"
        else:
            svg_usage.input_tokens = read_count(svg_usage, field(svg, "input_tokens"), "input_tokens", True)
            svg_usage.output_tokens = read_count(svg_usage, field(svg, "output_tokens"), "output_tokens", True)
            svg_usage.reasoning_tokens = read_count(svg_usage, field(svg, "reasoning_tokens"), "reasoning_tokens")
            svg_usage.checked()
        meta.sub_inferences = (("svg", string(field(svg, "model")) if is_object(svg) else None, svg_usage),)
    return meta


def read_transcription(response: Any, want_text: bool = False) -> ResponseMeta:
    """Audio transcriptions and translations. Token-billed models (``gpt-4o-transcribe``...) report tokens, audio
    input among them; ``whisper-1`` is billed per second of audio (``usage.type == "duration"``), a unit the
    catalog does not price; text formats (``text``, ``srt``, ``vtt``) and translations carry no usage at all."""
    if isinstance(response, str):
        return ResponseMeta(unpriced="no usage in this response format",
                            output_text=response if want_text else None)
    text = field(response, "text")
    meta = ResponseMeta(output_text=text if want_text and isinstance(text, str) else None)
    return _read_transcription_usage(field(response, "usage"), meta, "no usage in the response")


def _read_transcription_usage(u: Any, meta: ResponseMeta, missing: str) -> ResponseMeta:
    """A transcription's usage, by tokens or (``whisper-1``) by seconds of audio, which the catalog cannot price.
    Usage that fails validation leaves the cost unknown, as missing usage does: audio is never estimated."""
    if u is not None and not is_object(u):
        meta.usage = Usage(invalid="usage is not an object")
        meta.unpriced = _INVALID
        return meta
    seconds = field(u, "seconds") if u is not None else None
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and 0 <= seconds < float("inf"):
        meta.unpriced = "billed per second of audio"
        meta.audio_seconds = float(seconds)
    elif u is None or field(u, "input_tokens") is None:
        meta.unpriced = missing
    else:
        meta.usage = _transcription_usage(u)
        if meta.usage.invalid is not None:
            meta.unpriced = _INVALID
    return meta


_SPEECH_UNPRICED = ("no token usage in an audio response (gpt-4o-mini-tts reports it only with stream_format='sse'); "
                   "only a model billed per input character can be priced from the request")
_SPEECH_DONE = b'"speech.audio.done"'


def read_speech(response: Any) -> ResponseMeta:
    """Text to speech returns audio bytes, read by the SDK before ``create`` returns. With
    ``stream_format="sse"`` the body is events, and the last, ``speech.audio.done``, carries the token usage; its
    output tokens are audio. Audio formats carry no usage: ``tts-1`` / ``tts-1-hd`` bill per input character,
    counted from the request; for the token-billed models the cost is unknown, never estimated."""
    http = getattr(response, "response", None)  # HttpxBinaryResponseContent wraps the HTTP response
    request = getattr(http, "request", None)
    try:
        body = json.loads(request.content) if request is not None else None
    except Exception:  # a body aicost cannot read (not JSON): nothing to count
        body = None
    body = body if isinstance(body, dict) else {}
    # Only an SSE body has events to search: an audio body (megabytes of mp3) is never scanned.
    if body.get("stream_format") == "sse" and getattr(http, "is_closed", False):
        usage = _speech_event_usage(http.content)
        if usage is not None:
            return ResponseMeta(usage=usage, unpriced=None if usage.invalid is None else _INVALID)
    return speech_without_usage(body)


def speech_without_usage(request: dict[str, Any], unpriced: str = _SPEECH_UNPRICED) -> ResponseMeta:
    """What the request says a speech call consumed: the characters of ``input``. A per-character model (``tts-1``,
    ``tts-1-hd``, or an Azure deployment given a per-character price) is priced from them; for a token-billed model
    the pricing engine finds no per-character rate and the cost is unknown, with ``unpriced`` as the reason."""
    text = request.get("input")
    if isinstance(text, str):  # (a count of aicost's own, valid: checked all the same, as every reader's usage is)
        return ResponseMeta(usage=Usage(input_characters=len(text)).checked(), unpriced=unpriced)
    return ResponseMeta(unpriced=unpriced)


class SpeechBodyReader(BodyReader):
    """The tail of a speech body as the caller reads it: enough for the final ``speech.audio.done`` event (about
    100 bytes), however long the audio before it."""

    __slots__ = ("request", "sse", "tail")
    _KEEP = 4096

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.sse = request.get("stream_format") == "sse"  # audio bytes hold no events: nothing to keep
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        if not self.sse:
            return
        keep = self._KEEP
        if len(chunk) >= keep:  # a large chunk: only its end can matter, and the big chunk is not copied
            self.tail = chunk[-keep:]
        else:
            tail = self.tail + chunk
            self.tail = tail[-keep:] if len(tail) > keep else tail

    def result(self) -> ResponseMeta:
        usage = _speech_event_usage(self.tail)
        if usage is not None:
            return ResponseMeta(usage=usage, unpriced=None if usage.invalid is None else _INVALID)
        return speech_without_usage(self.request, "no usage in the speech the caller read (an audio format, or "
                                                  "closed before the speech.audio.done event)")


def _speech_event_usage(body: bytes) -> Usage | None:
    """Usage from the last ``speech.audio.done`` event of an SSE body (found from the end: the audio deltas
    before it can be megabytes of base64)."""
    at = body.rfind(_SPEECH_DONE)
    if at < 0:
        return None
    start = body.rfind(b"data:", 0, at)
    end = body.find(b"\n", at)
    if start < 0:
        return None
    try:
        event = json.loads(body[start + 5:end if end >= 0 else len(body)])
    except ValueError:  # cut short: no usage, and no estimate either (audio tokens cannot be counted)
        return None
    u = event.get("usage") if isinstance(event, dict) else None
    if u is None:
        return None
    if not isinstance(u, dict):
        return Usage(invalid="usage is not an object")
    usage = Usage()
    usage.input_tokens = read_count(usage, u.get("input_tokens"), "input_tokens", True)
    usage.output_tokens = read_count(usage, u.get("output_tokens"), "output_tokens", True)
    usage.output_audio_tokens = usage.output_tokens
    return usage.checked()


def _transcription_usage(u: Any) -> Usage:
    usage = Usage()
    usage.input_tokens = read_count(usage, field(u, "input_tokens"), "input_tokens", True)
    usage.output_tokens = read_count(usage, field(u, "output_tokens"), "output_tokens", True)
    details = part(usage, u, "input_token_details")
    if details is not None:
        usage.input_audio_tokens = read_count(usage, field(details, "audio_tokens"), "audio_tokens")
        read_count(usage, field(details, "text_tokens"), "text_tokens")  # not priced apart, but validated
    return usage.checked()


def realtime_usage(u: Any) -> Usage | None:
    """A Realtime ``response.done`` usage. Its text, audio and image counts each include their cached part, which
    ``cached_tokens_details`` breaks down: the cached audio and image tokens are moved to their own cached rates, so
    every token is priced once."""
    if u is None:
        return None
    if not is_object(u):
        return Usage(invalid="usage is not an object")
    if field(u, "input_tokens") is None:
        return None
    g = field
    usage = Usage()
    usage.input_tokens = read_count(usage, g(u, "input_tokens"), "input_tokens", True)
    usage.output_tokens = read_count(usage, g(u, "output_tokens"), "output_tokens", True)
    details = part(usage, u, "input_token_details")
    if details is not None:
        cached = read_count(usage, g(details, "cached_tokens"), "cached_tokens")
        cached_details = part(usage, details, "cached_tokens_details")
        cached_audio = (read_count(usage, g(cached_details, "audio_tokens"), "cached audio_tokens")
                        if cached_details is not None else 0)
        cached_image = (read_count(usage, g(cached_details, "image_tokens"), "cached image_tokens")
                        if cached_details is not None else 0)
        audio = read_count(usage, g(details, "audio_tokens"), "audio_tokens")
        image = read_count(usage, g(details, "image_tokens"), "image_tokens")
        if usage.invalid is None and (cached > usage.input_tokens or cached_audio + cached_image > cached
                                      or cached_audio > audio or cached_image > image
                                      or audio + image - cached_audio - cached_image > usage.input_tokens - cached):
            usage.invalid = "input_token_details do not add up to input_tokens"
        if usage.invalid is None:
            usage.cache_read_tokens = cached
            usage.cache_read_audio_tokens = cached_audio
            usage.cache_read_image_tokens = cached_image
            usage.input_audio_tokens = audio - cached_audio
            usage.input_image_tokens = image - cached_image
    details = part(usage, u, "output_token_details")
    if details is not None:
        usage.output_audio_tokens = read_count(usage, g(details, "audio_tokens"), "output audio_tokens")
    return usage.checked()


_CONNECTION_MODEL = "_aicost_model"  # on a Realtime connection: the model its session reported
_TRANSCRIPTION_MODEL = "_aicost_transcription_model"  # ... and the model that transcribes its input audio
INPUT_TRANSCRIPTION = Endpoint("openai.resources.realtime.realtime", ("RealtimeConnection", "AsyncRealtimeConnection"),
                               "parse_event", "openai.realtime.input_audio_transcription", "generate_content",
                               kind="events", shape=_SHAPE)


def read_realtime_event(connection: Any, event: Any) -> EventStep | None:
    """Realtime (and beta Realtime) connections: the session names the model (the response does not); each
    response runs from ``response.created`` to ``response.done``, which carries its usage (also when cancelled or
    failed: the vendor bills what was generated)."""
    kind = field(event, "type")
    if kind == "response.done":
        response = field(event, "response")
        response_id = field(response, "id")
        if not isinstance(response_id, str):
            return None
        status = field(response, "status")
        usage = realtime_usage(field(response, "usage"))
        meta = ResponseMeta(usage=usage, model=connection.__dict__.get(_CONNECTION_MODEL), response_id=response_id,
                            finish_reasons=[status] if isinstance(status, str) else [],
                            unpriced="no usage in response.done" if usage is None
                            else _INVALID if usage.invalid is not None else None)
        return EventStep("finish", response_id, _requested_model(connection), meta)
    if kind == "response.created":
        response_id = field(field(event, "response"), "id")
        return EventStep("start", response_id, _requested_model(connection)) if isinstance(response_id, str) else None
    if kind == "conversation.item.input_audio_transcription.completed":
        return _input_transcription(connection, event)
    if kind in ("session.created", "session.updated", "transcription_session.created",
                "transcription_session.updated"):
        session = field(event, "session")
        model = field(session, "model")
        if isinstance(model, str) and model:
            connection.__dict__[_CONNECTION_MODEL] = model
        audio_input = field(field(session, "audio"), "input")
        transcription = field(audio_input, "transcription") if audio_input is not None else None
        if transcription is None:  # the beta shape
            transcription = field(session, "input_audio_transcription")
        model = field(transcription, "model") if transcription is not None else None
        if isinstance(model, str) and model:
            connection.__dict__[_TRANSCRIPTION_MODEL] = model
    return None


def _input_transcription(connection: Any, event: Any) -> EventStep | None:
    """The session's input audio is transcribed by a separate model, "billed according to the ASR model's pricing
    rather than the realtime model's" (the SDK): one call per transcribed item, priced at the transcription model
    the session reported. Duration-billed models (``whisper-1``) are recorded with the seconds, cost unknown."""
    item = field(event, "item_id")
    if not isinstance(item, str):
        return None
    model = connection.__dict__.get(_TRANSCRIPTION_MODEL)
    meta = _read_transcription_usage(field(event, "usage"), ResponseMeta(model=model),
                                     "no usage in the transcription event")
    if model is None and meta.usage is not None:
        meta.unpriced = "the session did not name its transcription model"
    return EventStep("once", f"{item}:{field(event, 'content_index')}", model, meta, INPUT_TRANSCRIPTION)


_URL_MODEL = "_aicost_url_model"  # on a connection: the model in its handshake URL ("" when it names none)


def _requested_model(connection: Any) -> str | None:
    """The model the connection asked for in its URL (``connect(model=...)``, sent as ``?model=``; read once per
    connection), else the one its session reported (a connection that joined a call by id names none)."""
    state = connection.__dict__
    model = state.get(_URL_MODEL)
    if model is None:
        model = ""
        try:
            from urllib.parse import parse_qs, urlsplit

            path = connection._connection.request.path  # the WebSocket handshake request (websockets >= 13)
            found = parse_qs(urlsplit(path).query).get("model", [""])[0]
            model = found if isinstance(found, str) else ""
        except Exception:
            pass
        state[_URL_MODEL] = model
    return model or state.get(_CONNECTION_MODEL)


def read_responses_socket_event(event: Any) -> EventStep | None:
    """The Responses API over a WebSocket (``responses.connect()``): the same events as its HTTP stream."""
    kind = field(event, "type")
    if kind in _TERMINAL_RESPONSE_EVENTS or kind == "response.created":
        response = field(event, "response")
        response_id = field(response, "id")
        if not isinstance(response_id, str):
            return None
        model = field(response, "model")
        if kind == "response.created":
            return EventStep("start", response_id, model)
        return EventStep("finish", response_id, model, read_response(response))
    return None


class ImageEventAccumulator(StreamAccumulator):
    """Image streams: each ``image_generation.completed`` / ``image_edit.completed`` event carries its image's
    usage; partial images carry none."""

    __slots__ = ("usage",)

    def __init__(self) -> None:
        super().__init__()
        self.usage: Usage | None = None

    def observe(self, event: Any) -> bool:
        if getattr(event, "type", None) in ("image_generation.completed", "image_edit.completed"):
            usage = image_usage(field(event, "usage"))
            if usage is not None:
                self.usage = usage if self.usage is None else self.usage + usage
            self.complete = True
        return True

    def result(self) -> ResponseMeta:
        if self.usage is None:
            return ResponseMeta(unpriced="no token usage in the stream")
        return ResponseMeta(usage=self.usage, unpriced=None if self.usage.invalid is None else _INVALID)


class TranscriptEventAccumulator(StreamAccumulator):
    """Transcription streams: ``transcript.text.done`` carries the usage."""

    __slots__ = ("usage", "keep_text", "text")

    def __init__(self, keep_text: bool) -> None:
        super().__init__()
        self.usage: Usage | None = None
        self.keep_text = keep_text
        self.text: str | None = None

    def observe(self, event: Any) -> bool:
        if getattr(event, "type", None) == "transcript.text.done":
            u = field(event, "usage")
            if u is not None and not is_object(u):
                self.usage = Usage(invalid="usage is not an object")
            elif u is not None and field(u, "input_tokens") is not None:
                self.usage = _transcription_usage(u)
            text = field(event, "text")
            self.text = text if self.keep_text and isinstance(text, str) else None
            self.complete = True
        return True

    def result(self) -> ResponseMeta:
        if self.usage is None:
            return ResponseMeta(unpriced="no usage in the stream", output_text=self.text)
        return ResponseMeta(usage=self.usage, output_text=self.text,
                            unpriced=None if self.usage.invalid is None else _INVALID)


class ChunkAccumulator(StreamAccumulator):
    """Chat completion and legacy completion chunks. Usage comes only in the final usage chunk.

    Runs once per chunk, so it reads as little as it can. When aicost asked for the usage chunk, text is not collected; if that chunk never comes
    (a proxy dropped it), the output estimate is the number of content chunks (OpenAI streams one token each).
    """

    __slots__ = ("hide_usage_chunk", "keep_text", "usage", "model", "response_id", "service_tier",
                 "finish_reasons", "content_chunks", "texts")

    def __init__(self, hide_usage_chunk: bool, keep_text: bool) -> None:
        super().__init__()
        self.hide_usage_chunk = hide_usage_chunk
        self.keep_text = keep_text
        self.usage: Any = None
        self.model: str | None = None
        self.response_id: str | None = None
        self.service_tier: str | None = None
        self.finish_reasons: list[str] = []
        self.content_chunks = 0
        self.texts: list[str] = []

    def observe(self, chunk: Any) -> bool:
        if not self.model:  # Azure's first chunk (prompt filter results) has an empty model and no choices
            self.model = string(getattr(chunk, "model", None))
            self.response_id = string(getattr(chunk, "id", None)) or self.response_id
            self.service_tier = string(getattr(chunk, "service_tier", None))
        try:
            choices, usage = chunk.choices, chunk.usage
        except AttributeError:  # a chunk the SDK built from JSON that lacks them (it does not validate)
            choices, usage = getattr(chunk, "choices", None), getattr(chunk, "usage", None)
        if choices:
            try:  # the SDK does not validate chunks: what is not a choice has nothing to count (free unless raised)
                choice = choices[0]
                reason = choice.finish_reason
                if reason:  # one per choice (n > 1 sends each in its own chunk)
                    self.finish_reasons.append(reason if isinstance(reason, str) else str(reason))
                    if not self.hide_usage_chunk:
                        self.complete = True  # no usage chunk was asked for: the finish is the stream's last word
                if self.keep_text:
                    delta = getattr(choice, "delta", None)
                    if delta is None:
                        text = getattr(choice, "text", None)  # legacy completions
                        if isinstance(text, str) and text:
                            self.texts.append(text)
                    elif isinstance(delta.content, str) and delta.content:
                        self.texts.append(delta.content)
                    elif delta.tool_calls:
                        _tool_call_text(delta.tool_calls, self.texts)
                else:
                    self.content_chunks += 1
            except (AttributeError, TypeError, KeyError, IndexError):
                pass
        if usage is not None:
            self.usage = usage
            self.complete = True
        if self.hide_usage_chunk and not choices and (usage is not None or self.finish_reasons):
            # The chunk aicost asked for (after every choice finished: Azure's first chunk has no choices either,
            # and the caller sees it as without aicost). Hidden also when its usage is null: the caller did not
            # ask for it, and ``chunk.choices[0]`` would raise.
            return False
        return True

    def result(self) -> ResponseMeta:
        usage = read_usage(self.usage)
        text = "".join(self.texts) or None
        if text is None and (usage is None or usage.invalid is not None) and self.content_chunks:
            text = " x" * self.content_chunks  # counts as one token per content chunk
        return ResponseMeta(
            usage=usage,
            model=self.model,
            response_id=self.response_id,
            finish_reasons=self.finish_reasons,
            service_tier=self.service_tier,
            output_text=text,
        )


_TERMINAL_RESPONSE_EVENTS = frozenset(("response.completed", "response.incomplete", "response.failed"))


class ResponseEventAccumulator(StreamAccumulator):
    """Responses API events: usage arrives in the terminal event's ``response``."""

    __slots__ = ("response", "model", "response_id")

    def __init__(self) -> None:
        super().__init__()
        self.response: Any = None
        self.model: str | None = None
        self.response_id: str | None = None

    def observe(self, event: Any) -> bool:
        event_type = getattr(event, "type", None)
        if event_type in _TERMINAL_RESPONSE_EVENTS:
            self.response = field(event, "response")
            self.complete = True
        elif event_type == "response.created":
            response = field(event, "response")
            self.model = string(getattr(response, "model", None))
            self.response_id = string(getattr(response, "id", None))
        return True

    def result(self) -> ResponseMeta:
        if self.response is not None:
            return read_response(self.response)
        return ResponseMeta(model=self.model, response_id=self.response_id)


_BY_KEY = {endpoint.key: endpoint for endpoint in ENDPOINTS}
# Which reader and stream accumulator an endpoint's responses need, looked up once per call.
_FAMILY = {key: ("responses" if key.startswith(("openai.responses", "openai.beta.responses"))
                 else "images" if key.startswith("openai.images.")
                 else "speech" if key == "openai.audio.speech.create"
                 else "audio" if key.startswith("openai.audio.")
                 else "embeddings" if key == "openai.embeddings.create" else "default")  # chat, completions
           for key in _BY_KEY}
_ROUTES = {  # URL path suffix -> endpoint, for the request-level safety net; longest suffix first
    suffix: _BY_KEY[key] for suffix, key in sorted((
        ("/chat/completions", "openai.chat.completions.create"),
        ("/responses", "openai.responses.create"),
        ("/responses/compact", "openai.responses.compact"),
        ("/embeddings", "openai.embeddings.create"),
        ("/completions", "openai.completions.create"),
        ("/images/generations", "openai.images.generate"),
        ("/images/edits", "openai.images.edit"),
        ("/images/variations", "openai.images.create_variation"),
        ("/audio/transcriptions", "openai.audio.transcriptions.create"),
        ("/audio/translations", "openai.audio.translations.create"),
        ("/audio/speech", "openai.audio.speech.create"),
    ), key=lambda route: -len(route[0]))
}


# Batches: the endpoint a batch's requests went to (the batch's ``endpoint``; else the result body's ``object``).
_BATCH_ENDPOINTS = {
    "/v1/chat/completions": _BY_KEY["openai.chat.completions.create"],
    "/v1/responses": _BY_KEY["openai.responses.create"],
    "/v1/embeddings": _BY_KEY["openai.embeddings.create"],
    "/v1/completions": _BY_KEY["openai.completions.create"],
}
_BATCH_BODIES = {
    "chat.completion": _BY_KEY["openai.chat.completions.create"],
    "response": _BY_KEY["openai.responses.create"],
    "list": _BY_KEY["openai.embeddings.create"],
    "text_completion": _BY_KEY["openai.completions.create"],
}
_BATCHES_SEEN = _batches.Registry()  # batch id and output file id -> BatchInfo


class OpenAIIntegration(StainlessIntegration):
    name = "openai"
    sdk = "openai"
    endpoints = ENDPOINTS

    def route_path(self, method: str, path: str) -> Endpoint | None:
        if method.lower() != "post":
            return None
        path = path.split("?", 1)[0].rstrip("/")
        for suffix, endpoint in _ROUTES.items():
            if path.endswith(suffix):
                return endpoint
        return None

    def __init__(self) -> None:
        import openai
        from openai._legacy_response import LegacyAPIResponse
        from openai._response import BaseAPIResponse

        self._stream_types = (openai.Stream, openai.AsyncStream)
        self._api_error = openai.APIError
        self._raw_types = (LegacyAPIResponse, BaseAPIResponse)
        # The SDK's "argument not given" defaults: an argument holding one was not set by the caller.
        self._placeholders = tuple(t for t in (getattr(openai, "Omit", None), getattr(openai, "NotGiven", None))
                                   if isinstance(t, type))
        # parse() raises these after the vendor answered (and billed): the error carries the completion.
        self._answered_errors = tuple(t for t in (getattr(openai, "LengthFinishReasonError", None),
                                                  getattr(openai, "ContentFilterFinishReasonError", None))
                                      if isinstance(t, type))
        try:
            self._azure_types: tuple[type, ...] = (openai.AzureOpenAI, openai.AsyncAzureOpenAI)
        except AttributeError:  # pragma: no cover
            self._azure_types = ()

    def provider(self, resource: Any) -> str:
        client = getattr(resource, "_client", None)
        if self._azure_types and isinstance(client, self._azure_types):
            return "azure.ai.openai"
        host = server_of(resource)[0]
        return COMPATIBLE_HOSTS.get(host, "openai") if host else "openai"

    def request_meta(self, endpoint: Endpoint, resource: Any, kwargs: dict[str, Any]) -> RequestMeta:
        host, port = server_of(resource)
        tier = kwargs.get("service_tier")
        return RequestMeta(
            model=kwargs.get("model") if isinstance(kwargs.get("model"), str) else None,
            stream=kwargs.get("stream") is True,
            max_tokens=request_count(endpoint.shape.output_cap(kwargs)),  # the cap that governs, as sent
            service_tier=request_tier(tier),
            server_address=host,
            server_port=port,
        )

    def prepare_stream(self, endpoint: Endpoint, request: RequestMeta, kwargs: dict[str, Any],
                       stream_usage: str) -> bool:
        """Ask for the usage chunk when it is safe, and tell the core to hide it from the caller."""
        if endpoint.key not in _USAGE_CHUNK_ENDPOINTS or stream_usage == "never":
            return False
        options = kwargs.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            return False  # the caller asked for it: they see the chunk, as without aicost
        if options is not None and not isinstance(options, dict):
            if not isinstance(options, self._placeholders):
                return False
            options = None  # the SDK's ``omit`` / ``NOT_GIVEN`` default, which its ``stream()`` helper passes on
        headers = kwargs.get("extra_headers") or {}
        if RAW_RESPONSE_HEADER in headers or RAW_RESPONSE_HEADER.lower() in headers:
            return False  # raw responses are read by the caller byte for byte: never add a chunk there
        body = kwargs.get("extra_body")
        body_options = body.get("stream_options") if isinstance(body, dict) else None
        if body is not None and (not isinstance(body, dict) or body_options is not None):
            return False  # the caller shapes the body by hand: leave it as they wrote it
        if stream_usage == "auto":
            host = request.server_address
            if not host or not (host in _USAGE_CHUNK_HOSTS or host.endswith(_USAGE_CHUNK_HOSTS[1:])):
                return False
        if options is not None:
            kwargs["stream_options"] = {**options, "include_usage": True}
        else:
            # Through ``extra_body``, which the SDK sends as is: a ``stream_options`` argument would go through
            # its typed-dict transform, about 20 us on every stream (measured: benchmarks/README.md).
            kwargs["extra_body"] = {**(body or {}), "stream_options": {"include_usage": True}}
        return True

    def read_response(self, endpoint: Endpoint, response: Any, want_text: bool) -> ResponseMeta:
        if endpoint.kind == "observe":  # a batch's create: billed when its results are read
            return ResponseMeta()
        family = _FAMILY[endpoint.key]
        if family == "images":
            return read_images(response)
        if family == "audio":
            return read_transcription(response, want_text)
        if family == "speech":
            return read_speech(response)
        return read_response(response, want_text, family != "embeddings")

    def error_meta(self, endpoint: Endpoint, error: BaseException) -> ResponseMeta | None:
        """``parse()``'s ``LengthFinishReasonError`` / ``ContentFilterFinishReasonError``: the vendor answered, and
        the error's ``completion`` says what it billed. Images and audio, which aicost never estimates: unknown."""
        completion = getattr(error, "completion", None) if isinstance(error, self._answered_errors) else None
        if completion is not None:
            return read_response(completion)
        if _FAMILY[endpoint.key] in ("images", "audio", "speech"):
            return ResponseMeta(unpriced="the call failed after the request was sent, without the vendor's usage")
        return None

    def read_event(self, endpoint: Endpoint, connection: Any, event: Any) -> EventStep | None:
        if endpoint.key == "openai.responses.connect":
            return read_responses_socket_event(event)
        return read_realtime_event(connection, event)

    def body_reader(self, raw: Any, watch: CallWatch) -> BodyReader | None:
        """Speech through ``with_streaming_response``: the caller reads the bytes (events with
        ``stream_format="sse"``), and the reader keeps their tail for the final usage event."""
        if _FAMILY[watch.endpoint.key] == "speech":
            return SpeechBodyReader(watch.kwargs)
        return super().body_reader(raw, watch)

    def stream_event(self, name: str | None, data: bytes, options: Any, client: Any, response: Any) -> Any:
        """As ``openai.Stream.__stream__``: ``[DONE]`` ends the stream; the Assistants' ``thread.*`` events, and
        every event of a request that asks for it (``synthesize_event_and_data``), are built from
        ``{"data": ..., "event": ...}``; in the legacy stream mode, an event whose data carries a truthy ``error``
        (the API's mid-stream ``server_error``; not a ``thread.*`` event) is raised as ``openai.APIError``, its
        message the error's ``message`` (or the SDK's stand-in), its body the ``error`` (whose ``type`` is the
        call's ``error.type``)."""
        if data.startswith(b"[DONE]"):
            return STREAM_END
        value = json.loads(data)
        legacy = options is None or getattr(options, "stream_mode", "legacy") == "legacy"
        if legacy and name and name.startswith("thread."):
            return {"data": value, "event": name}
        if legacy and isinstance(value, dict) and value.get("error"):
            error = value["error"]
            message = error.get("message") if isinstance(error, dict) else None
            if not message or not isinstance(message, str):
                message = "An error occurred during streaming"
            return self._api_error(message=message, request=response.request, body=error)
        if options is not None and getattr(options, "synthesize_event_and_data", None):
            return {"data": value, "event": name}
        return value

    def price_hints(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``web_search_preview`` is billed at a different per-call rate than ``web_search`` on some models."""
        for tool in kwargs.get("tools") or ():
            kind = tool.get("type") if isinstance(tool, dict) else getattr(tool, "type", None)
            if isinstance(kind, str) and kind.startswith("web_search_preview"):
                return {"web_search_tool": "web_search_preview"}
        return {}

    def sub_inference_model(self, kind: str, kwargs: dict[str, Any]) -> str | None:
        """The hosted image-generation tool's model, from the request's ``tools`` (None if not set: the vendor's
        default then, which the response does not name, so the cost is marked unknown rather than guessed)."""
        if kind == "image_generation":
            for tool in kwargs.get("tools") or ():
                if isinstance(tool, dict) and tool.get("type") == "image_generation":
                    model = tool.get("model")
                    return model if isinstance(model, str) else None
        return None

    # -- Batch API (docs/batches.md)
    def before_observed(self, endpoint: Endpoint, resource: Any, args: tuple, kwargs: dict[str, Any],
                        seen: Observed) -> None:
        if endpoint.key == "openai.batches.create":
            metadata = _batches.with_attribution(kwargs.get("metadata"), seen.attribution, seen.run_id, "openai")
            if metadata is not None:
                kwargs["metadata"] = metadata

    def after_observed(self, endpoint: Endpoint, resource: Any, args: tuple, kwargs: dict[str, Any], value: Any,
                       seen: Observed) -> Any:
        if endpoint.key == "openai.files.content":
            file_id = args[0] if args else kwargs.get("file_id")
            # HttpxBinaryResponseContent (``files.content``), or the raw response of ``with_raw_response``: either
            # way the body is in memory. With ``with_streaming_response`` it is not (the caller streams it).
            response = getattr(value, "response", None) or getattr(value, "http_response", None)
            if isinstance(file_id, str) and response is not None:
                try:
                    content = response.content  # raises if the body was not read (a streamed response)
                except Exception:
                    content = None
                if isinstance(content, bytes):
                    self._read_output_file(file_id, content, seen)
        elif getattr(value, "object", None) == "batch":
            self._remember(value)
        return value

    def _remember(self, batch: Any) -> None:
        batch_id = string(field(batch, "id"))
        if batch_id is None:
            return
        metadata = field(batch, "metadata")
        carried = _batches.decode(metadata.get(_batches.METADATA_KEY)) if isinstance(metadata, dict) else None
        done = field(batch, "completed_at")
        info = _batches.BatchInfo(
            batch_id, carried[0] if carried else None, carried[1] if carried else None,
            "metadata" if carried else "reader", string(field(batch, "endpoint")),
            done * 1_000_000_000 if type(done) is int and done > 0 else 0)
        _BATCHES_SEEN.put(batch_id, info)
        output_file = string(field(batch, "output_file_id"))
        if output_file is not None:
            _BATCHES_SEEN.put(output_file, info)

    def _read_output_file(self, file_id: str, content: bytes, seen: Observed) -> None:
        """One costed call per succeeded request of a batch output file (lines whose ``response`` has a 2xx
        status); errored lines bill nothing. A file that is not a batch's output has no such lines."""
        info: _batches.BatchInfo | None = _BATCHES_SEEN.get(file_id)
        for line in content.splitlines():
            if b'"response"' not in line:
                continue
            try:
                item = json.loads(line)
            except ValueError:
                continue
            response = item.get("response") if isinstance(item, dict) else None
            status = response.get("status_code") if isinstance(response, dict) else None
            body = response.get("body") if isinstance(response, dict) else None
            if type(status) is not int or not 200 <= status < 300 or not isinstance(body, dict):
                continue
            endpoint = _BATCH_ENDPOINTS.get(info.endpoint if info is not None else None) \
                or _BATCH_BODIES.get(body.get("object"))
            if endpoint is None:  # a batch of an endpoint aicost does not price (moderations, videos...)
                continue
            line_id, custom_id = string(item.get("id")), string(item.get("custom_id"))
            meta = _batches.billed_at_batch_rates(self.read_response(endpoint, AttrView.wrap(body), False))
            created = body.get("created", body.get("created_at"))
            done_ns = created * 1_000_000_000 if type(created) is int and created > 0 else (
                info.done_ns if info is not None else 0)
            seen.record(CompletedWork(
                endpoint=endpoint, request={"model": meta.model}, meta=meta,
                key=_batches.result_key("openai", line_id or f"{info.batch_id if info else file_id}/{custom_id}"),
                attribution=info.attribution if info is not None else None,
                run_id=info.run_id if info is not None else None, done_ns=done_ns,
                span_attributes=(info.span_attributes() if info is not None
                                 else {s.AICOST_BATCH_ATTRIBUTION: "reader"})))

    def new_accumulator(self, endpoint: Endpoint, hide_usage_chunk: bool, keep_text: bool) -> StreamAccumulator:
        family = _FAMILY[endpoint.key]
        if family == "responses":
            return ResponseEventAccumulator()
        if family == "images":
            return ImageEventAccumulator()
        if family == "audio":
            return TranscriptEventAccumulator(keep_text)
        return ChunkAccumulator(hide_usage_chunk, keep_text)


INTEGRATION = OpenAIIntegration
