"""AWS Bedrock through boto3 (``bedrock-runtime``): which operations bill, how to read their usage.

boto3 has no class per operation: every call goes through ``botocore.client.BaseClient._make_api_call(operation,
api_params)``, so that one method is patched (a :class:`~aicost.vendor.Router`) and the operation name picks the
endpoint. ``api_params`` is the live request botocore is about to serialise, so a budget's downgrade or output cap
lands in it (``modelId``, ``inferenceConfig.maxTokens``).

Usage, by operation (inputTokens exclude cache reads and writes, as Anthropic's do; ``Usage`` includes them):
* Converse: the body's ``usage`` (``cacheReadInputTokens``, ``cacheWriteInputTokens``, ``cacheDetails`` by TTL).
* InvokeModel: the ``X-Amzn-Bedrock-*-Token-Count`` response headers, the same for every model family, so the
  body (a stream the caller reads) is never touched.
* ConverseStream: the ``metadata`` event. InvokeModelWithResponseStream: the ``amazon-bedrock-invocationMetrics``
  of the last chunk. Both are botocore ``EventStream`` objects, watched in place (``wrap_stream``).
* Claude's server tools (``._claude_tools``, shared with the Anthropic integration): in an
  InvokeModelWithResponseStream, whose chunks are Claude's Messages events, its ``container`` (code execution ran:
  cost-unknown, named) and ``usage.server_tool_use.web_search_requests`` (priced per search). Not in InvokeModel's
  body, never read; nor in Converse, whose response botocore parses by its service model, which has neither field.
  Bedrock refuses both tools today (a recorded 400 for ``web_search_20250305`` lists the tool types it takes:
  ``bash``, ``custom``, ``text_editor``), so watching every InvokeModel body for them would buy nothing yet.
* CountTokens: a span, not billed.
Every count is validated as the core's readers do (``usage.read_count``, ``Usage.checked``): usage that fails is
never priced as exact (estimated from the text, or unknown for InvokeModel, whose body is never read).

Prices: cross-region inference profiles (``us.`` / ``eu.`` / ``apac.`` / ``global.``) and ARNs are priced by the
catalog's AWS table as AWS bills them (a regional profile of a recent Claude model costs 10 % more than the global
one); the service tier comes from the response (``serviceTier``: the body, the ``metadata`` event or, for
InvokeModel and its stream, a header), latency-optimised inference from ``performanceConfig``. AWS bills flex,
priority and latency-optimised calls at per-model rates the catalog lacks (null ``tier_factor``s), so pricing
makes them cost-unknown, with the reason. Claude's long-context rates apply only with its 1M-context beta
(``anthropic_beta``), as on Anthropic's API. Anthropic's own Bedrock client (``anthropic.AnthropicBedrock``) does
not use boto3 for its calls (only for credentials), so its calls are recorded once, by the Anthropic integration.
"""

from __future__ import annotations

import copy
import json
from functools import partial
from typing import Any

from ..pricing.names import enables_long_context
from ..usage import Usage, read_count
from ..vendor import (NOT_TEXT, Endpoint, InputText, Integration, RequestMeta, RequestShape, ResponseMeta, Router,
                      StreamAccumulator, cap_not_read, cap_to_lower, output_cap_of, read_cap, request_tier, string,
                      walk_text)
from ._claude_tools import container_tools, read_web_searches, unpriced_searches

_SERVICE = "bedrock-runtime"


def _json_body(kwargs: dict[str, Any]) -> Any:
    """InvokeModel's ``body`` (bytes, str or a dict) as JSON, or None (a file object is left unread)."""
    body = kwargs.get("body")
    if isinstance(body, (bytes, bytearray, str)):
        try:
            return json.loads(body)
        except ValueError:
            return None
    return body if isinstance(body, dict) else None


def _bedrock_step(node: Any) -> Any:
    """Converse / model-native content for :func:`aicost.vendor.walk_text`: ``{"text": ...}`` blocks, messages
    holding ``content``; anything else (images, documents, tool use) is not text."""
    if isinstance(node, dict):
        if isinstance(node.get("text"), str):
            return node["text"]
        if "content" in node:
            return node["content"]
    return NOT_TEXT


def _texts(value: Any, out: list[str]) -> bool:
    """Text of Converse / model-native content (str, ``{"text": ...}`` blocks, messages); False if some content is
    not text, which a text count cannot see."""
    return walk_text(value, out, _bedrock_step)


class ConverseShape(RequestShape):
    """Converse / ConverseStream: ``modelId``, ``inferenceConfig.maxTokens``, ``messages`` and ``system``."""

    __slots__ = ()
    model_param = "modelId"

    @staticmethod
    def _sent_cap(config: Any) -> Any:
        """What ``inferenceConfig`` sends as ``maxTokens`` (None: nothing)."""
        return config.get("maxTokens") if isinstance(config, dict) else None

    def output_cap(self, kwargs: dict[str, Any]) -> int | None:
        return output_cap_of(self._sent_cap(kwargs.get("inferenceConfig")))

    def unread_cap(self, kwargs: dict[str, Any]) -> str | None:
        return cap_not_read("inferenceConfig.maxTokens", self._sent_cap(kwargs.get("inferenceConfig")))

    def set_output_cap(self, kwargs: dict[str, Any], cap: int) -> bool:
        config = kwargs.get("inferenceConfig")
        if not cap_to_lower("inferenceConfig.maxTokens", self._sent_cap(config), cap):
            return False
        kwargs["inferenceConfig"] = {**(config if isinstance(config, dict) else {}), "maxTokens": cap}
        return True

    def choices(self, kwargs: dict[str, Any]) -> int:
        return 1

    def input_characters(self, kwargs: dict[str, Any]) -> int:
        return 0

    def input_text(self, kwargs: dict[str, Any]) -> InputText:
        pieces: list[str] = []
        complete = _texts(kwargs.get("messages"), pieces)
        complete = _texts(kwargs.get("system"), pieces) and complete
        if kwargs.get("toolConfig"):
            complete = False
        return InputText(tuple(pieces), 0, complete)

    def anthropic_beta(self, kwargs: dict[str, Any]) -> Any:
        """Claude's beta flags: Converse passes model-native fields in ``additionalModelRequestFields``."""
        extra = kwargs.get("additionalModelRequestFields")
        return extra.get("anthropic_beta") if isinstance(extra, dict) else None

    def content(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if kwargs.get("messages") is not None:
            out["input"] = kwargs["messages"]
        if kwargs.get("system") is not None:
            out["system"] = kwargs["system"]
        return out


# Output caps in InvokeModel bodies, by model family: Anthropic / Mistral / OpenAI / DeepSeek, Claude's legacy text
# completions, Llama, Cohere / AI21, Titan (textGenerationConfig), Nova (inferenceConfig).
_BODY_CAPS = ("max_tokens", "max_tokens_to_sample", "max_gen_len", "maxTokens", "max_new_tokens")
_NESTED_CAPS = (("textGenerationConfig", "maxTokenCount"), ("inferenceConfig", "max_new_tokens"),
                ("inferenceConfig", "maxTokens"))


class InvokeShape(ConverseShape):
    """InvokeModel / InvokeModelWithResponseStream: ``modelId`` and a model-native JSON ``body``."""

    __slots__ = ()

    @staticmethod
    def _caps(body: Any) -> list[tuple[dict, str]]:
        """Where the body sends caps: (the dict holding one, its key), whatever the value."""
        if not isinstance(body, dict):
            return []
        found = [(body, key) for key in _BODY_CAPS if body.get(key) is not None]
        for outer, key in _NESTED_CAPS:
            inner = body.get(outer)
            if isinstance(inner, dict) and inner.get(key) is not None:
                found.append((inner, key))
        return found

    def output_cap(self, kwargs: dict[str, Any]) -> int | None:
        caps = [count for holder, key in self._caps(_json_body(kwargs))
                if (count := output_cap_of(holder[key])) is not None]
        return min(caps) if caps else None

    def unread_cap(self, kwargs: dict[str, Any]) -> str | None:
        for holder, key in self._caps(_json_body(kwargs)):
            why = cap_not_read(f"body {key}", holder[key])
            if why is not None:
                return why
        return None

    def set_output_cap(self, kwargs: dict[str, Any], cap: int) -> bool:
        """Lowers a cap the body sets; a body without one is left alone (its family's parameter is not known)."""
        original = kwargs.get("body")
        # lowered on a copy: a dict body (nested caps too) is the application's; text is parsed afresh anyway
        body = copy.deepcopy(original) if isinstance(original, dict) else _json_body(kwargs)
        above: list[tuple[dict, str]] = []
        for holder, key in self._caps(body):
            count, unread = read_cap(f"body {key}", holder[key])
            if unread is not None:
                return False
            if count is not None and count > cap:
                above.append((holder, key))
        if not above:
            return False
        for holder, key in above:
            holder[key] = cap
        text = json.dumps(body)
        kwargs["body"] = text if isinstance(original, str) else body if isinstance(original, dict) else text.encode()
        return True

    def input_text(self, kwargs: dict[str, Any]) -> InputText:
        body = _json_body(kwargs)
        if not isinstance(body, dict):
            return InputText((), 0, False)
        pieces: list[str] = []
        complete = True
        for key in ("messages", "prompt", "inputText", "texts", "system", "input_text"):
            if key in body:
                complete = _texts(body[key], pieces) and complete
        if body.get("tools"):
            complete = False
        return InputText(tuple(pieces), 0, complete)

    def anthropic_beta(self, kwargs: dict[str, Any]) -> Any:
        """Claude's beta flags: the Anthropic body's ``anthropic_beta`` (looked for only where the body says so)."""
        body = kwargs.get("body")
        if (isinstance(body, (bytes, bytearray)) and b"anthropic_beta" not in body) or (
                isinstance(body, str) and "anthropic_beta" not in body):
            return None  # most bodies: not parsed a second time
        body = _json_body(kwargs)
        return body.get("anthropic_beta") if isinstance(body, dict) else None

    def content(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        body = _json_body(kwargs)
        return {} if body is None else {"input": body}


_CONVERSE = ConverseShape("maxTokens")
_INVOKE = InvokeShape("max_tokens")
_COUNT = ConverseShape(generates=False)

# Reached through the router (no class patch): ``classes`` is empty.
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("botocore.client", (), "Converse", "bedrock.converse", "chat", shape=_CONVERSE),
    Endpoint("botocore.client", (), "ConverseStream", "bedrock.converse_stream", "chat", shape=_CONVERSE),
    Endpoint("botocore.client", (), "InvokeModel", "bedrock.invoke_model", "generate_content", shape=_INVOKE),
    Endpoint("botocore.client", (), "InvokeModelWithResponseStream", "bedrock.invoke_model_with_response_stream",
             "generate_content", shape=_INVOKE),
    Endpoint("botocore.client", (), "CountTokens", "bedrock.count_tokens", "count_tokens", billable=False,
             shape=_COUNT),
)
_OPERATIONS = {endpoint.method: endpoint for endpoint in ENDPOINTS}
_STREAMS = frozenset(("ConverseStream", "InvokeModelWithResponseStream"))


def _cache_usage(usage: Usage, plain: int, read: int, write: int, out: int) -> Usage:
    """Bedrock's input counts exclude cache reads and writes (as Anthropic's do); ``Usage`` includes them."""
    usage.input_tokens = plain + read + write
    usage.output_tokens = out
    usage.cache_read_tokens = read
    usage.cache_write_tokens = write
    return usage


def read_usage(u: Any) -> Usage | None:
    """Converse ``usage`` / ConverseStream ``metadata.usage`` -> ``Usage`` (cache tokens added to the input).

    ``inputTokens`` and ``outputTokens`` are required; every count is checked as it is read (``usage.read_count``),
    and usage that fails (a count that is not one, usage or ``cacheDetails`` that are not what the API documents,
    1h cache writes over the writes) says why in ``Usage.invalid``."""
    if u is None:
        return None
    if not isinstance(u, dict):
        return Usage(invalid="usage is not an object")
    usage = Usage()
    _cache_usage(usage, read_count(usage, u.get("inputTokens"), "inputTokens", True),
                 read_count(usage, u.get("cacheReadInputTokens"), "cacheReadInputTokens"),
                 read_count(usage, u.get("cacheWriteInputTokens"), "cacheWriteInputTokens"),
                 read_count(usage, u.get("outputTokens"), "outputTokens", True))
    details = u.get("cacheDetails")
    if details is not None and not isinstance(details, list):
        usage.invalid = usage.invalid or "cacheDetails is not a list"
    for detail in details if isinstance(details, list) else ():  # cache writes by TTL ("5m", "1h")
        if not isinstance(detail, dict):
            usage.invalid = usage.invalid or "cacheDetails has an entry that is not an object"
            continue
        tokens = read_count(usage, detail.get("inputTokens"), "cacheDetails.inputTokens")
        if detail.get("ttl") == "1h":  # 1h writes bill higher
            usage.cache_write_1h_tokens += tokens
    return usage.checked()


def _metrics_usage(m: Any) -> Usage | None:
    """``amazon-bedrock-invocationMetrics`` (last chunk of InvokeModelWithResponseStream): ``inputTokenCount`` and
    ``outputTokenCount`` required, every count checked."""
    if m is None:
        return None
    if not isinstance(m, dict):
        return Usage(invalid="amazon-bedrock-invocationMetrics is not an object")
    usage = Usage()
    return _cache_usage(usage, read_count(usage, m.get("inputTokenCount"), "inputTokenCount", True),
                        read_count(usage, m.get("cacheReadInputTokenCount"), "cacheReadInputTokenCount"),
                        read_count(usage, m.get("cacheWriteInputTokenCount"), "cacheWriteInputTokenCount"),
                        read_count(usage, m.get("outputTokenCount"), "outputTokenCount", True)).checked()


_HEADER = "x-amzn-bedrock-{}-token-count"


def _header_count(usage: Usage, headers: dict, which: str) -> int:
    """One ``X-Amzn-Bedrock-*-Token-Count`` header: its text must be a count (digits); anything else is read by
    ``read_count`` as the value it is, which records why it is not one."""
    value = headers.get(_HEADER.format(which))
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    return read_count(usage, value, _HEADER.format(which))


def _header_usage(headers: Any) -> Usage | None:
    """InvokeModel's ``X-Amzn-Bedrock-*-Token-Count`` headers (botocore lower-cases header names). The input
    count's presence says the headers are there; the output count is left out for embeddings (nothing generated)."""
    if not isinstance(headers, dict) or _HEADER.format("input") not in headers:
        return None
    usage = Usage()
    return _cache_usage(usage, _header_count(usage, headers, "input"), _header_count(usage, headers, "cache-read-input"),
                        _header_count(usage, headers, "cache-write-input"),
                        _header_count(usage, headers, "output")).checked()


def _tier(response: dict, latency: Any) -> str | None:
    """The tier the call was served at: ``serviceTier`` (Converse: ``{"type": ...}``; InvokeModel: the header's
    value), and latency-optimised inference, which AWS prices separately."""
    tier = response.get("serviceTier") if isinstance(response, dict) else None
    if isinstance(tier, dict):
        tier = tier.get("type")
    if isinstance(latency, dict):
        latency = latency.get("latency")
    if latency == "optimized":
        return "latency_optimized"
    return tier if isinstance(tier, str) and tier != "default" else None


def _request_id(response: dict) -> str | None:
    meta = response.get("ResponseMetadata")
    return string(meta.get("RequestId")) if isinstance(meta, dict) else None


def read_converse(response: Any, want_text: bool) -> ResponseMeta:
    if not isinstance(response, dict):
        return ResponseMeta()
    usage = read_usage(response.get("usage"))
    stop = string(response.get("stopReason"))
    meta = ResponseMeta(usage=usage, response_id=_request_id(response), finish_reasons=[stop] if stop else [],
                        service_tier=_tier(response, response.get("performanceConfig")))
    if want_text or usage is None or usage.invalid is not None:  # the text estimates missing or invalid usage
        pieces: list[str] = []
        message = (response.get("output") or {}).get("message") if isinstance(response.get("output"), dict) else None
        _texts((message or {}).get("content"), pieces)
        meta.output_text = "".join(pieces) or None
    return meta


def read_invoke(response: Any) -> ResponseMeta:
    if not isinstance(response, dict):
        return ResponseMeta()
    metadata = response.get("ResponseMetadata")
    usage = _header_usage(metadata.get("HTTPHeaders") if isinstance(metadata, dict) else None)
    # The body is the caller's stream: not read, so missing or invalid counts cannot be estimated from it.
    unpriced = "the response carried no token-count headers" if usage is None else usage.invalid
    return ResponseMeta(usage=usage, response_id=_request_id(response),
                        service_tier=_tier(response, response.get("performanceConfigLatency")), unpriced=unpriced)


# Where an InvokeModelWithResponseStream chunk holds generated text, by model family. Top-level text: Titan
# (``outputText``), Llama (``generation``), Claude's text completions (``completion``), Cohere Command (``text``).
_CHUNK_TEXT = ("outputText", "generation", "completion", "text")
# A delta's text: Claude's Messages API (``text``, a tool call's ``partial_json``, ``thinking``), Nova (``text``).
_DELTA_TEXT = ("text", "partial_json", "thinking")


def _first_text(holder: Any, keys: tuple[str, ...]) -> str | None:
    if isinstance(holder, dict):
        for key in keys:
            value = holder.get(key)
            if isinstance(value, str):
                return value
    return None


def _choice_text(choice: Any) -> str | None:
    """One of ``outputs`` (Mistral) or ``choices`` (DeepSeek's ``text``; OpenAI-style ``delta`` / ``message``)."""
    if not isinstance(choice, dict):
        return None
    return (_first_text(choice, ("text",)) or _first_text(choice.get("delta"), ("content", "reasoning_content"))
            or _first_text(choice.get("message"), ("content",)))


def _chunk_text(payload: Any) -> str | None:
    """The text the model generated in one decoded chunk, by family; None for a chunk without any (a start or
    stop event, the usage) and for a family not known here: no text makes an estimate of nothing, where the
    chunk's JSON would make a wrong one."""
    if not isinstance(payload, dict):
        return None
    if payload.get("type") == "content_block_delta":  # Claude's Messages API
        return _first_text(payload.get("delta"), _DELTA_TEXT)
    block = payload.get("contentBlockDelta")  # Nova: Converse-shaped events
    if isinstance(block, dict):
        delta = block.get("delta") if isinstance(block.get("delta"), dict) else {}
        return (_first_text(delta, ("text",)) or _first_text(delta.get("toolUse"), ("input",))
                or _first_text(delta.get("reasoningContent"), ("text",)))
    text = _first_text(payload, _CHUNK_TEXT)
    if text is not None:
        return text
    choices = payload.get("outputs") or payload.get("choices")
    if isinstance(choices, list):
        return "".join(filter(None, map(_choice_text, choices))) or None
    return None


def _chunk_json(data: bytes | bytearray) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


# Claude's Messages events (InvokeModelWithResponseStream chunks) that say a server tool ran: the keys are looked for
# in a chunk's bytes, so only the chunks holding one are parsed (a key in a string value is escaped: ``\"container\"``).
_CLAUDE_TOOL_KEYS = (b'"container"', b'"server_tool_use"')


class EventAccumulator(StreamAccumulator):
    """Parsed events of ConverseStream (``metadata``, ``messageStop``) and InvokeModelWithResponseStream (``chunk``
    bytes whose last JSON carries ``amazon-bedrock-invocationMetrics``). Raw events passing by are ignored: the
    stream's own parser hands the parsed ones over (``BedrockIntegration.wrap_stream``).

    Claude's chunks are its Messages API events, read for its server tools as Anthropic's own are
    (:mod:`._claude_tools`): the ``container`` of ``message_start``'s message or of a ``message_delta``'s delta (code
    execution ran), and the cumulative ``usage.server_tool_use`` (web searches), counted on the invocation metrics'
    usage. Only a chunk that holds one of those keys is parsed for them. A stream cut before its last chunk (no
    invocation metrics: the core estimates its tokens) keeps both: the container, and searches seen, name hosted
    tools (``ResponseMeta.hosted_tools``), so the estimate is cost-unknown, never its estimated tokens alone.

    The output text is given only when the core asks (:meth:`output_text`): an InvokeModelWithResponseStream chunk
    is kept as the bytes it arrived in and its JSON parsed then, so a stream that ends with its usage and is not
    captured parses only its last chunk. Like the text, the chunks kept are not bounded: one reference each to the
    bytes botocore made, held until the call is finished."""

    __slots__ = ("usage", "stop", "tier", "keep_text", "texts", "chunks", "container", "server_tool_use")

    def __init__(self, keep_text: bool) -> None:
        super().__init__()
        self.usage: Usage | None = None
        self.stop: str | None = None
        self.tier: str | None = None
        self.keep_text = keep_text
        self.texts: list[str] = []  # ConverseStream's text deltas, and chunks' text once extracted
        self.chunks: list[bytes | bytearray] = []  # InvokeModelWithResponseStream chunks not yet parsed for text
        self.container: Any = None  # a Claude container, from message_start or a message_delta: code execution ran
        self.server_tool_use: Any = None  # a Claude message's server_tool_use usage, the last one sent (cumulative)

    def observe(self, event: Any) -> bool:
        if type(event) is not dict:
            return True  # a raw event message; its parsed form comes next
        chunk = event.get("chunk")
        if chunk is not None:
            data = chunk.get("bytes") if isinstance(chunk, dict) else None
            if isinstance(data, (bytes, bytearray)):
                if self.keep_text:
                    self.chunks.append(data if type(data) is bytes else bytes(data))  # a bytearray may be reused
                if b"amazon-bedrock-invocationMetrics" in data:
                    self._observe_metrics(data)
                elif _CLAUDE_TOOL_KEYS[0] in data or _CLAUDE_TOOL_KEYS[1] in data:
                    self._observe_claude_tools(_chunk_json(data))
            return True
        delta = event.get("contentBlockDelta")
        if isinstance(delta, dict):
            if self.keep_text:
                inner = delta.get("delta")
                text = inner.get("text") if isinstance(inner, dict) else None
                if isinstance(text, str):
                    self.texts.append(text)
            return True
        metadata = event.get("metadata")
        if isinstance(metadata, dict):
            self.usage = read_usage(metadata.get("usage"))
            self.tier = _tier(metadata, metadata.get("performanceConfig")) or self.tier
            self.complete = True
            return True
        stop = event.get("messageStop")
        if isinstance(stop, dict):
            self.stop = string(stop.get("stopReason")) or self.stop
        return True

    def _observe_metrics(self, data: bytes | bytearray) -> None:
        """InvokeModelWithResponseStream's last chunk, the one with the usage: the only chunk parsed as it passes."""
        payload = _chunk_json(data)
        self.usage = (_metrics_usage(payload.get("amazon-bedrock-invocationMetrics"))
                      if isinstance(payload, dict) else Usage(invalid="the last chunk is not a JSON object"))
        self.complete = True

    def _observe_claude_tools(self, payload: Any) -> None:
        """A Claude ``message_start`` or ``message_delta`` that names a container or server tool use."""
        if not isinstance(payload, dict):
            return
        kind = payload.get("type")
        if kind == "message_start":
            holder = payload.get("message")
            usage = holder.get("usage") if isinstance(holder, dict) else None
        elif kind == "message_delta":
            holder, usage = payload.get("delta"), payload.get("usage")
        else:
            return
        container = holder.get("container") if isinstance(holder, dict) else None
        if container is not None:
            self.container = container
        server_tool_use = usage.get("server_tool_use") if isinstance(usage, dict) else None
        if server_tool_use is not None:
            self.server_tool_use = server_tool_use

    def output_text(self) -> str | None:
        """The text the model generated. A chunk's is only what :func:`_chunk_text` finds in its JSON, never the
        JSON around it, which an estimate would count as output (about ten times the real figure) and content
        capture would record. Each chunk is parsed once, however often this is asked."""
        if self.chunks:
            for data in self.chunks:
                text = _chunk_text(_chunk_json(data))
                if text:
                    self.texts.append(text)
            self.chunks.clear()
        return "".join(self.texts) or None

    def result(self) -> ResponseMeta:
        """Without the output text: the core asks :meth:`output_text` for it when it needs it."""
        usage = self.usage
        tools = container_tools(self.container)
        if self.server_tool_use is not None:
            if usage is not None:
                read_web_searches(usage, self.server_tool_use)
            else:  # cut before the last chunk: the searches seen are not left out of the estimate
                tools += unpriced_searches(self.server_tool_use)
        return ResponseMeta(usage=usage, finish_reasons=[self.stop] if self.stop else [], service_tier=self.tier,
                            hosted_tools=tools)


def _long_context_enabled(shape: Any, kwargs: dict[str, Any]) -> bool:
    """Whether the request turned on Claude's 1M-token context beta (``anthropic_beta`` in the body)."""
    return enables_long_context(shape.anthropic_beta(kwargs))


class BedrockIntegration(Integration):
    name = "bedrock"
    sdk = "botocore"
    endpoints = ENDPOINTS
    routers = (Router("botocore.client", "BaseClient", "_make_api_call"),)
    # botocore validates the parameters before its endpoint sends (and, retrying, parses) the request.
    sends_in = ("botocore.endpoint",)

    def __init__(self) -> None:
        from botocore.eventstream import EventStream

        self._event_stream = EventStream
        self._servers: dict[str, tuple[str | None, int | None]] = {}

    def route(self, router: Router, instance: Any, args: tuple, kwargs: dict[str, Any]
              ) -> tuple[Endpoint, Any, dict[str, Any]] | None:
        operation = args[0] if args else kwargs.get("operation_name")
        endpoint = _OPERATIONS.get(operation)  # type: ignore[arg-type]
        if endpoint is None or instance._service_model.service_name != _SERVICE:
            return None
        params = args[1] if len(args) > 1 else kwargs.get("api_params")
        return (endpoint, instance, params) if isinstance(params, dict) else None

    def provider(self, resource: Any) -> str:
        return "aws.bedrock"

    def _server(self, client: Any) -> tuple[str | None, int | None]:
        try:
            url = client._endpoint.host
        except Exception:
            return None, None
        hit = self._servers.get(url)
        if hit is None:
            from urllib.parse import urlsplit

            parts = urlsplit(url)
            if len(self._servers) >= 64:
                self._servers.clear()
            hit = self._servers[url] = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        return hit

    def request_meta(self, endpoint: Endpoint, resource: Any, kwargs: dict[str, Any]) -> RequestMeta:
        host, port = self._server(resource)
        tier = kwargs.get("serviceTier")
        tier = tier.get("type") if isinstance(tier, dict) else tier
        return RequestMeta(
            model=endpoint.shape.model(kwargs),
            stream=endpoint.method in _STREAMS,
            max_tokens=endpoint.shape.output_cap(kwargs),
            service_tier=request_tier(tier),
            server_address=host,
            server_port=port,
            # Claude's long-context rates apply only with the 1M-context beta on, as on Anthropic's own API; asked
            # only when a call's input crosses a price band (InvokeModel's body is read again), as for Anthropic.
            price_hints=({"long_context": partial(_long_context_enabled, endpoint.shape, kwargs)}
                         if endpoint.billable else None),
        )

    def read_response(self, endpoint: Endpoint, response: Any, want_text: bool) -> ResponseMeta:
        if not endpoint.billable:
            return ResponseMeta()
        if endpoint.method == "InvokeModel":
            return read_invoke(response)
        return read_converse(response, want_text)

    def new_accumulator(self, endpoint: Endpoint, hide_usage_chunk: bool, keep_text: bool) -> StreamAccumulator:
        return EventAccumulator(keep_text)

    def is_stream(self, obj: Any) -> bool:
        return type(obj) is dict and isinstance(obj.get("stream") or obj.get("body"), self._event_stream)

    def wrap_stream(self, response: Any, watch: Any) -> Any:
        """The ``EventStream`` stays the caller's object. Its raw events pass through ``watch.iterate`` (which sees
        the stream end, fail or be dropped), and its own ``_parse_event`` hands each parsed event to the
        accumulator; an exception event the parser raises finishes the call with that error."""
        key = "stream" if isinstance(response.get("stream"), self._event_stream) else "body"
        stream = response[key]
        acc = watch.acc
        # InvokeModelWithResponseStream says its tier in headers (botocore's ``serviceTier`` and
        # ``performanceConfigLatency``), as InvokeModel does; ConverseStream in its ``metadata`` event.
        acc.tier = _tier(response, response.get("performanceConfigLatency"))
        parse = stream._parse_event

        def parse_and_observe(event: Any) -> Any:
            try:
                parsed = parse(event)
            except BaseException as exc:
                watch.fail(exc)
                raise
            if parsed:
                try:
                    acc.observe(parsed)
                except Exception:
                    pass
            return parsed

        stream._parse_event = parse_and_observe
        stream._event_generator = watch.iterate(stream._event_generator)
        watch.finish_on_close(stream, False)
        return response


INTEGRATION = BedrockIntegration
