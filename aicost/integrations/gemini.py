"""Google Gemini through ``google-genai`` (Gemini Developer API and Vertex AI): which methods bill, how to read
their usage. No span or cost logic here.

Patch points (``google/genai/models.py``, ``caches.py``): the public ``generate_content`` loops over the private
``_generate_content`` for automatic function calling and automatic continuation, one HTTP request per pass, and
each pass is billed. So the private methods are patched, one call each: ``_generate_content``,
``_generate_content_stream`` (a plain generator, or an ``async def`` returning an async generator: the request is
sent on the first item, so errors surface while iterating), ``_embed_content`` (every ``embed_content`` path) and
``count_tokens`` (a span, not billed). ``caches.create`` bills the tokens it caches at the input rate.

Usage (``usageMetadata``): ``promptTokenCount`` includes ``cachedContentTokenCount``; ``toolUsePromptTokenCount``
(built-in tools: Search, URL context, code execution) is billed as input on top; ``thoughtsTokenCount`` is billed
as output on top of ``candidatesTokenCount``. Per-modality details split audio (its own input rate) and images out
of the input. Stream chunks repeat the usage cumulatively: the last one wins. Long-context prices (prompts over
200K tokens on 2.5 Pro, 3 Pro...) are bands of the catalog's entry, applied to the whole request by its input.
Counts are validated as the core's readers do (``usage.read_count``, ``Usage.checked``): usage that fails is never
priced as exact. The tier is Vertex's ``trafficType`` (or the request's ``service_tier`` / Priority PayGo header);
Google bills priority at per-model rates the catalog lacks (its null ``tier_factor``), so pricing makes such a call
cost-unknown, with the reason. Grounding with Google Search, Google Maps or Vertex AI Search is billed per grounded
prompt or per query beyond tokens: the reader names it in ``ResponseMeta.hosted_tools`` when a candidate's
``groundingMetadata`` shows it ran (a stream's in any chunk), usage or none, and pricing makes such a call
cost-unknown, with why. The Interactions API (``interactions.create``) names it from the interaction's ``steps`` and
its usage's ``grounding_tool_count``; its streams (the SDK's own ``Stream`` objects, watched in place) from each
``step.start`` event's step, with the usage of the ``interaction.completed`` event, read as a finished interaction is.
"""

from __future__ import annotations

from typing import Any

from ..pricing.names import tier_text
from ..usage import Usage, is_object, read_count
from ..vendor import (NOT_TEXT, Endpoint, InputText, Integration, RequestMeta, RequestShape, ResponseMeta,
                      StreamAccumulator, cap_not_read, cap_to_lower, output_cap_of, string, walk_text)

_MODELS = "google.genai.models"
_BOTH = ("Models", "AsyncModels")


def _get(obj: Any, *names: str) -> Any:
    """A field of an SDK model or of a plain dict (snake_case or the API's camelCase)."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        for name in names:
            if name in obj:
                return obj[name]
        return None
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


class GeminiShape(RequestShape):
    """``model``, ``contents`` and ``config`` (a ``GenerateContentConfig`` or a dict): the cap is
    ``config.max_output_tokens``, the system prompt ``config.system_instruction``."""

    __slots__ = ()
    model_param = "model"

    @staticmethod
    def _sent_cap(config: Any) -> Any:
        """What ``config`` sends as its output cap (None: nothing)."""
        return _get(config, "max_output_tokens", "maxOutputTokens")

    def output_cap(self, kwargs: dict[str, Any]) -> int | None:
        return output_cap_of(self._sent_cap(kwargs.get("config")))

    def unread_cap(self, kwargs: dict[str, Any]) -> str | None:
        return cap_not_read("config.max_output_tokens", self._sent_cap(kwargs.get("config")))

    def set_output_cap(self, kwargs: dict[str, Any], cap: int) -> bool:
        if self.cap_param is None:
            return False
        config = kwargs.get("config")
        if not cap_to_lower("config.max_output_tokens", self._sent_cap(config), cap):
            return False
        if config is None:
            kwargs["config"] = {"max_output_tokens": cap}
        elif isinstance(config, dict):
            key = "maxOutputTokens" if "maxOutputTokens" in config else "max_output_tokens"
            kwargs["config"] = {**config, key: cap}  # the caller's dict is left as it was
        else:
            kwargs["config"] = config.model_copy(update={"max_output_tokens": cap})
        return True

    def choices(self, kwargs: dict[str, Any]) -> int:
        n = _get(kwargs.get("config"), "candidate_count", "candidateCount")
        return n if type(n) is int and n > 1 else 1

    def input_characters(self, kwargs: dict[str, Any]) -> int:
        return 0

    def input_text(self, kwargs: dict[str, Any]) -> InputText:
        pieces: list[str] = []
        config = kwargs.get("config")
        # ``caches.create`` holds what it caches in its config.
        complete = _texts(kwargs.get("contents") or _get(config, "contents"), pieces)
        complete = _texts(_get(kwargs.get("config"), "system_instruction", "systemInstruction"), pieces) and complete
        if _get(kwargs.get("config"), "tools") or _get(kwargs.get("config"), "cached_content", "cachedContent"):
            complete = False
        # Gemini's tokenizer is not public: the count is an estimate whatever the content (tokens.count_text).
        return InputText(tuple(pieces), 0, complete)

    def content(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if kwargs.get("contents") is not None:
            out["input"] = _jsonable(kwargs["contents"])
        system = _get(kwargs.get("config"), "system_instruction", "systemInstruction")
        if system is not None:
            out["system"] = _jsonable(system)
        return out


def _gemini_step(node: Any) -> Any:
    """Gemini contents for :func:`aicost.vendor.walk_text`: a ``Content`` holds ``parts``, a ``Part`` its ``text``;
    any other part (an image, a file, a function call) is not text."""
    parts = _get(node, "parts")
    if parts is not None:
        return parts
    text = _get(node, "text")
    return text if isinstance(text, str) else NOT_TEXT


def _texts(value: Any, out: list[str]) -> bool:
    """Append the text parts of ``contents`` (str, Part, Content, dicts, lists of them); False if some part is
    not text, whose tokens a text count cannot see."""
    return walk_text(value, out, _gemini_step)


def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        try:
            return dump(mode="json", exclude_none=True)
        except Exception:
            return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class InteractionsShape(GeminiShape):
    """The Interactions API (``client.interactions.create``): ``model``, ``input`` and ``generation_config``, given as
    keyword arguments or in one ``request`` (a dict or the SDK's model)."""

    __slots__ = ()

    @staticmethod
    def _body(kwargs: dict[str, Any]) -> Any:
        request = kwargs.get("request")
        return request if request is not None and not isinstance(request, type) and _get(request, "model") else kwargs

    def model(self, kwargs: dict[str, Any]) -> str | None:
        value = _get(self._body(kwargs), "model")
        return value if isinstance(value, str) else None

    def set_model(self, kwargs: dict[str, Any], model: str) -> None:
        body = self._body(kwargs)
        if body is kwargs:
            kwargs["model"] = model
        elif isinstance(body, dict):
            kwargs["request"] = {**body, "model": model}
        else:
            kwargs["request"] = body.model_copy(update={"model": model})

    @staticmethod
    def _body_cap(body: Any) -> Any:
        """What the request ``body`` sends as ``generation_config.max_output_tokens`` (None: nothing)."""
        return _get(_get(body, "generation_config"), "max_output_tokens")

    def output_cap(self, kwargs: dict[str, Any]) -> int | None:
        return output_cap_of(self._body_cap(self._body(kwargs)))

    def unread_cap(self, kwargs: dict[str, Any]) -> str | None:
        return cap_not_read("generation_config.max_output_tokens", self._body_cap(self._body(kwargs)))

    def set_output_cap(self, kwargs: dict[str, Any], cap: int) -> bool:
        body = self._body(kwargs)
        if not isinstance(body, dict):
            return False  # an SDK request model is left as it is: its config may be of several types
        if not cap_to_lower("generation_config.max_output_tokens", self._body_cap(body), cap):
            return False
        config = body.get("generation_config")
        config = {**config, "max_output_tokens": cap} if isinstance(config, dict) else {"max_output_tokens": cap}
        if body is kwargs:
            kwargs["generation_config"] = config
        else:
            kwargs["request"] = {**body, "generation_config": config}
        return True

    def choices(self, kwargs: dict[str, Any]) -> int:
        return 1

    def streams(self, kwargs: dict[str, Any]) -> bool:
        return _get(self._body(kwargs), "stream") is True

    def input_text(self, kwargs: dict[str, Any]) -> InputText:
        pieces: list[str] = []
        complete = _texts(_get(self._body(kwargs), "input"), pieces)
        return InputText(tuple(pieces), 0, complete)

    def content(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        value = _get(self._body(kwargs), "input")
        return {} if value is None else {"input": _jsonable(value)}


_GENERATE_SHAPE = GeminiShape("max_output_tokens")
_INPUT_ONLY_SHAPE = GeminiShape(generates=False)  # embeddings, token counts and caches: billed by their input

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(_MODELS, _BOTH, "_generate_content", "gemini.models.generate_content", "generate_content",
             shape=_GENERATE_SHAPE),
    Endpoint(_MODELS, _BOTH, "_generate_content_stream", "gemini.models.generate_content_stream",
             "generate_content", shape=_GENERATE_SHAPE),
    Endpoint(_MODELS, _BOTH, "_embed_content", "gemini.models.embed_content", "embeddings", shape=_INPUT_ONLY_SHAPE),
    Endpoint(_MODELS, _BOTH, "count_tokens", "gemini.models.count_tokens", "count_tokens", billable=False,
             shape=_INPUT_ONLY_SHAPE),
    Endpoint("google.genai.caches", ("Caches", "AsyncCaches"), "create", "gemini.caches.create", "create_cache",
             shape=_INPUT_ONLY_SHAPE),
    # The Interactions API's generated client; ``client.interactions`` subclasses it and calls this ``create``.
    Endpoint("google.genai._gaos.interactions", ("Interactions", "AsyncInteractions"), "create",
             "gemini.interactions.create", "generate_content", shape=InteractionsShape("max_output_tokens")),
)
_STREAMING = frozenset(("gemini.models.generate_content_stream",))

# Vertex AI's usageMetadata.trafficType -> the service tier it is billed at (normalised by aicost.pricing.names).
_TRAFFIC_TIERS = {"ON_DEMAND": "standard", "ON_DEMAND_FLEX": "flex", "ON_DEMAND_PRIORITY": "priority"}


def _modalities(usage: Usage, details: Any, name: str) -> dict[str, int]:
    """Per-modality counts (``[{modality, token_count}]``) by upper-case modality. A list that is not a list of
    objects, or a count that is not one, makes the usage invalid (``usage.read_count``)."""
    out: dict[str, int] = {}
    if details is None:
        return out
    if not isinstance(details, (list, tuple)):
        usage.invalid = usage.invalid or f"{name} is not a list"
        return out
    for item in details:
        if item is None or not is_object(item):
            usage.invalid = usage.invalid or f"{name} has an entry that is not an object"
            continue
        modality = _get(item, "modality")
        modality = getattr(modality, "value", modality)
        count = read_count(usage, _get(item, "token_count", "tokenCount", "tokens"), f"{name}.token_count")
        if isinstance(modality, str):
            out[modality.upper()] = out.get(modality.upper(), 0) + count
    return out


def _part_over(usage: Usage, part: int, whole: int, what: str) -> None:
    """Record a breakdown larger than the count it breaks down (``Usage.invalid``)."""
    if part > whole and usage.invalid is None:
        usage.invalid = f"{what} exceeds its total"


def read_usage(u: Any) -> Usage | None:
    """``usageMetadata`` (``GenerateContentResponseUsageMetadata``) -> ``Usage``. None when it has no counts at all
    (a prompt blocked before the model ran reports only its traffic type).

    Every count is checked as it is read (``usage.read_count``): ``prompt_token_count`` is required once any count
    is there; the others are left out by the API when zero (proto3 JSON). The breakdowns must fit their totals:
    cached within the prompt, each per-modality list within its count. Usage that fails says why
    (``Usage.invalid``) and is never priced as exact."""
    if u is None:
        return None
    if not is_object(u):
        return Usage(invalid="usage_metadata is not an object")
    prompt = _get(u, "prompt_token_count")
    candidates = _get(u, "candidates_token_count")
    thoughts = _get(u, "thoughts_token_count")
    tool_prompt = _get(u, "tool_use_prompt_token_count")
    if prompt is None and candidates is None and thoughts is None and tool_prompt is None:
        return None
    usage = Usage()
    prompt = read_count(usage, prompt, "prompt_token_count", True)
    tool_prompt = read_count(usage, tool_prompt, "tool_use_prompt_token_count")
    candidates = read_count(usage, candidates, "candidates_token_count")
    thoughts = read_count(usage, thoughts, "thoughts_token_count")
    cached = read_count(usage, _get(u, "cached_content_token_count"), "cached_content_token_count")
    usage.input_tokens = prompt + tool_prompt
    usage.output_tokens = candidates + thoughts
    usage.reasoning_tokens = thoughts
    usage.cache_read_tokens = cached
    _part_over(usage, cached, prompt, "cached_content_token_count")
    cache = _modalities(usage, _get(u, "cache_tokens_details"), "cache_tokens_details")
    inputs = _modalities(usage, _get(u, "prompt_tokens_details"), "prompt_tokens_details")
    tools = _modalities(usage, _get(u, "tool_use_prompt_tokens_details"), "tool_use_prompt_tokens_details")
    outputs = _modalities(usage, _get(u, "candidates_tokens_details"), "candidates_tokens_details")
    _part_over(usage, sum(cache.values()), cached, "cache_tokens_details")
    _part_over(usage, sum(inputs.values()), prompt, "prompt_tokens_details")
    _part_over(usage, sum(tools.values()), tool_prompt, "tool_use_prompt_tokens_details")
    _part_over(usage, sum(outputs.values()), candidates, "candidates_tokens_details")
    # Audio has its own input rate; images are split out too (an image rate where the model lists one, else the
    # input rate). Cached ones are counted in the cache buckets, never twice.
    usage.cache_read_audio_tokens = cache.get("AUDIO", 0)
    usage.cache_read_image_tokens = cache.get("IMAGE", 0)
    audio = inputs.get("AUDIO", 0) + tools.get("AUDIO", 0)
    image = inputs.get("IMAGE", 0) + tools.get("IMAGE", 0)
    _part_over(usage, usage.cache_read_audio_tokens, audio, "cached AUDIO tokens")
    _part_over(usage, usage.cache_read_image_tokens, image, "cached IMAGE tokens")
    if usage.invalid is None:
        usage.input_audio_tokens = audio - usage.cache_read_audio_tokens
        usage.input_image_tokens = image - usage.cache_read_image_tokens
        _part_over(usage, cached + usage.input_audio_tokens + usage.input_image_tokens, usage.input_tokens,
                   "cached and per-modality prompt tokens")
    usage.output_image_tokens = outputs.get("IMAGE", 0)
    usage.output_audio_tokens = outputs.get("AUDIO", 0)
    return usage.checked()


def _tier(u: Any) -> str | None:
    """The tier Vertex AI says it served the call at (``usageMetadata.trafficType``); the Gemini API's own
    ``serviceTier`` where the response carries one."""
    traffic = _get(u, "traffic_type") if u is not None and is_object(u) else None
    traffic = getattr(traffic, "value", traffic)
    if isinstance(traffic, str) and traffic:
        return _TRAFFIC_TIERS.get(traffic, traffic.lower())
    tier = _get(u, "service_tier") if u is not None and is_object(u) else None
    tier = getattr(tier, "value", tier)
    return tier.lower() if isinstance(tier, str) and tier and tier.lower() != "unspecified" else None


# Vertex AI's request header for Priority / Flex PayGo, and its values.
_VERTEX_TIER_HEADER = "x-vertex-ai-llm-shared-request-type"


def _request_tier(resource: Any, kwargs: dict[str, Any]) -> str | None:
    """The tier the request asks for: ``config.service_tier`` (Gemini API), or Vertex AI's
    ``X-Vertex-AI-LLM-Shared-Request-Type`` header (per request in ``config.http_options``, or on the client)."""
    config = kwargs.get("config")
    tier = tier_text(_get(config, "service_tier", "serviceTier"))  # an enum by its value, as every integration reads it
    if isinstance(tier, str) and tier and tier.lower() != "unspecified":
        return tier.lower()
    client_options = getattr(_api_client(resource), "_http_options", None)
    for options in (_get(config, "http_options", "httpOptions"), client_options):
        headers = _get(options, "headers")
        if isinstance(headers, dict):
            for name, value in headers.items():
                if isinstance(name, str) and name.lower() == _VERTEX_TIER_HEADER and isinstance(value, str):
                    return value.strip().lower() or None
    return None


def _finish_reasons(candidates: Any) -> list[str]:
    out = []
    for candidate in candidates or ():
        reason = _get(candidate, "finish_reason")
        reason = getattr(reason, "value", reason)
        if isinstance(reason, str) and reason:
            out.append(reason)
    return out


def _output_text(candidates: Any) -> str | None:
    parts: list[str] = []
    for candidate in candidates or ():
        content = _get(candidate, "content")
        for part in _get(content, "parts") or ():
            text = _get(part, "text")
            if isinstance(text, str):
                parts.append(text)
            call = _get(part, "function_call")
            if call is not None:
                parts.append(str(_jsonable(call)))
    return "".join(parts) or None


# Grounding Google bills on top of tokens, per grounded prompt or per search query (Gemini API and Vertex AI
# pricing), by what a candidate's ``groundingMetadata`` shows it used -> the tool's name
# (``ResponseMeta.hosted_tools``):
# Google Search (its queries, image queries or search entry point; Vertex's Web Grounding for Enterprise,
# ``enterpriseWebSearch``, sends Search suggestions too, its docs say, and nothing in a response tells it from Google
# Search, so it is named so), Google Maps (a ``maps`` chunk, the widget token, flagging URIs) and Vertex AI Search
# (its ``retrievalQueries``: the grounding runs Vertex AI Search queries, billed per query at the app's edition or
# under a subscription, past a monthly free trial, none of which a response shows: cloud.google.com/
# generative-ai-app-builder/pricing). The SDK documents ``retrievalQueries`` as set by "a retrieval tool, such as
# Vertex AI Search": another (RAG Engine, Elasticsearch, a search API of one's own) that sets them is named so too,
# cost-unknown, never $0. The catalog's rate for Search (``web_search``) is per billable query after account-wide
# free allowances, which no response shows, so such a call is cost-unknown, not its tokens alone. URL context, File
# Search and code execution are billed as tokens (``toolUsePromptTokenCount``).
_SEARCH, _MAPS, _VERTEX_SEARCH = "google_search", "google_maps", "vertex_ai_search"


def _grounding_tools(candidates: Any, tools: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``tools`` with the billed grounding tools the candidates show they ran (see ``_SEARCH``). Reads only each
    candidate's ``grounding_metadata`` (None unless grounding was asked for), never its content."""
    for candidate in candidates if isinstance(candidates, (list, tuple)) else ():
        meta = _get(candidate, "grounding_metadata")
        if meta is None:
            continue
        if _SEARCH not in tools and (_get(meta, "web_search_queries") or _get(meta, "image_search_queries")
                                     or _get(meta, "search_entry_point") is not None):
            tools += (_SEARCH,)
        if _MAPS not in tools and (_get(meta, "google_maps_widget_context_token") or _get(meta, "source_flagging_uris")
                                   or _has_maps_chunk(_get(meta, "grounding_chunks"))):
            tools += (_MAPS,)
        if _VERTEX_SEARCH not in tools and _get(meta, "retrieval_queries"):
            tools += (_VERTEX_SEARCH,)
    return tools


def _has_maps_chunk(chunks: Any) -> bool:
    return isinstance(chunks, (list, tuple)) and any(_get(chunk, "maps") is not None for chunk in chunks)


def read_response(response: Any, want_text: bool = False) -> ResponseMeta:
    """A ``GenerateContentResponse``."""
    u = _get(response, "usage_metadata")
    usage = read_usage(u)
    candidates = _get(response, "candidates")
    tier = _tier(u)
    return ResponseMeta(
        usage=usage,
        hosted_tools=_grounding_tools(candidates),  # with or without usage: an estimate names them too
        model=string(_get(response, "model_version")),
        response_id=string(_get(response, "response_id")),
        finish_reasons=_finish_reasons(candidates),
        service_tier=tier,
        output_text=(_output_text(candidates)
                     if want_text or usage is None or usage.invalid is not None else None),
    )


# An interaction's steps that show a grounding tool Google bills beyond tokens ran (the google-genai SDK's
# ``GoogleSearchCallStep``, ``GoogleMapsCallStep``) -> the tool's name, as ``_grounding_tools`` names it from a
# ``generateContent`` response's ``groundingMetadata``; and a ``RetrievalCallStep`` of a search Vertex bills per
# query (Vertex AI Search; Exa and Parallel web search), named by its ``retrieval_type``. URL context, File Search,
# code execution and RAG Engine (``rag_store``) steps are billed as tokens.
_GROUNDING_STEPS = {"google_search_call": _SEARCH, "google_maps_call": _MAPS}
_BILLED_RETRIEVALS = frozenset((_VERTEX_SEARCH, "exa_ai_search", "parallel_ai_search"))


def _interaction_tools(steps: Any) -> tuple[str, ...]:
    """The billed grounding tools an interaction's ``steps`` show it ran (see ``_GROUNDING_STEPS``), in the order
    they first ran. Reads each step's ``type`` (and a retrieval's ``retrieval_type``), never its content."""
    tools: tuple[str, ...] = ()
    for step in steps if isinstance(steps, (list, tuple)) else ():
        kind = _get(step, "type")
        tool = _GROUNDING_STEPS.get(kind) if isinstance(kind, str) else None
        if tool is None and kind == "retrieval_call":
            retrieval = _get(step, "retrieval_type")
            tool = retrieval if isinstance(retrieval, str) and retrieval in _BILLED_RETRIEVALS else None
        if tool is not None and tool not in tools:
            tools += (tool,)
    return tools


# The grounding an interaction's usage counts (``grounding_tool_count``: a tool ``type`` and its ``count``, by all
# signs its queries: an agent's published interaction counted ``google_search`` 2 beside a ``google_search_call``
# step of two queries) -> the tool's name, as its step would name it. The steps are in a response only "when
# included" (the SDK's ``Interaction.steps``), the usage counts the tools either way. Not priced from the count:
# Google bills Search per query on Gemini 3 but per grounded prompt on 2.x, each past free allowances no response
# shows (Gemini API pricing: 5,000 prompts a month on 3, 1,500 a day on 2.x), so the call stays cost-unknown.
# ``retrieval`` is not named: it counts Vertex AI Search (billed per query) and RAG stores (billed as tokens) alike,
# which only a step's ``retrieval_type`` tells apart. A count that is not a whole number >= 0 may be billed: named.
_COUNTED_GROUNDING = {"google_search": _SEARCH, "google_maps": _MAPS}


def _counted_tools(counts: Any, tools: tuple[str, ...]) -> tuple[str, ...]:
    """``tools`` with the billed grounding tools a usage's ``grounding_tool_count`` shows ran (see
    ``_COUNTED_GROUNDING``). A count left out is proto3 JSON's zero."""
    for entry in counts if isinstance(counts, (list, tuple)) else ():
        kind = _get(entry, "type")
        tool = _COUNTED_GROUNDING.get(kind) if isinstance(kind, str) else None
        count = _get(entry, "count")
        ran = count is not None and (type(count) is not int or count != 0)
        if tool is not None and tool not in tools and ran:
            tools += (tool,)
    return tools


# An interaction the vendor has not finished (``background=True`` returns at once; ``requires_action`` waits on the
# caller's function results): it reports no usage yet, and bills none on this call.
_PENDING = frozenset(("queued", "in_progress", "requires_action"))


def read_interaction(interaction: Any, want_text: bool = False) -> ResponseMeta:
    """An ``Interaction``: ``total_input_tokens`` (cached included), ``total_tool_use_tokens`` on top as input,
    ``total_output_tokens`` and ``total_thought_tokens`` (both billed as output; the total is their sum). Input and
    output totals are required once the usage is there; counts are checked as in :func:`read_usage`. Grounding
    billed beyond tokens is named from its steps (:func:`_interaction_tools`), as :func:`read_response` names it,
    and from the usage's ``grounding_tool_count`` (:func:`_counted_tools`), which counts it with or without them."""
    u = _get(interaction, "usage")
    usage = None
    if u is not None and not is_object(u):
        usage = Usage(invalid="usage is not an object")
    elif u is not None and (_get(u, "total_input_tokens") is not None or _get(u, "total_output_tokens") is not None):
        usage = Usage()
        thoughts = read_count(usage, _get(u, "total_thought_tokens"), "total_thought_tokens")
        usage.input_tokens = (read_count(usage, _get(u, "total_input_tokens"), "total_input_tokens", True)
                              + read_count(usage, _get(u, "total_tool_use_tokens"), "total_tool_use_tokens"))
        usage.output_tokens = read_count(usage, _get(u, "total_output_tokens"), "total_output_tokens", True) + thoughts
        usage.reasoning_tokens = thoughts
        usage.cache_read_tokens = read_count(usage, _get(u, "total_cached_tokens"), "total_cached_tokens")
        inputs = _modalities(usage, _get(u, "input_tokens_by_modality"), "input_tokens_by_modality")
        cached = _modalities(usage, _get(u, "cached_tokens_by_modality"), "cached_tokens_by_modality")
        _part_over(usage, sum(inputs.values()), usage.input_tokens, "input_tokens_by_modality")
        _part_over(usage, sum(cached.values()), usage.cache_read_tokens, "cached_tokens_by_modality")
        audio = inputs.get("AUDIO", 0) - cached.get("AUDIO", 0)
        image = inputs.get("IMAGE", 0) - cached.get("IMAGE", 0)
        if audio < 0 or image < 0:
            usage.invalid = usage.invalid or "cached_tokens_by_modality exceeds input_tokens_by_modality"
        elif usage.invalid is None:
            usage.input_audio_tokens, usage.input_image_tokens = audio, image
            _part_over(usage, usage.cache_read_tokens + audio + image, usage.input_tokens,
                       "cached and per-modality input tokens")
        usage.checked()
    status = string(_get(interaction, "status"))
    return ResponseMeta(
        usage=usage,
        hosted_tools=_counted_tools(_get(u, "grounding_tool_count"), _interaction_tools(_get(interaction, "steps"))),
        model=string(_get(interaction, "model")),
        response_id=string(_get(interaction, "id")),
        finish_reasons=[status] if status else [],
        service_tier=string(_get(interaction, "service_tier")),
        # Unfinished and without usage: deferred, as OpenAI's queued background responses are, never estimated
        # from the input as if the call had billed only that.
        deferred=usage is None and status in _PENDING,
    )


def read_embeddings(response: Any) -> ResponseMeta:
    """``EmbedContentResponse``: ``usage_metadata.prompt_token_count`` (Gemini API, Vertex ``embedContent``) or the
    per-embedding ``statistics.token_count`` (Vertex ``:predict``, gemini-embedding-001). Neither: unpriced, since
    Vertex bills the older text embedding models by character. A count that fails validation: unknown, with why."""
    usage = Usage()
    tokens = _get(_get(response, "usage_metadata"), "prompt_token_count")
    if tokens is not None:
        usage.input_tokens = read_count(usage, tokens, "prompt_token_count")
    else:
        counts = [_get(_get(e, "statistics"), "token_count") for e in _get(response, "embeddings") or ()]
        counts = [c for c in counts if c is not None]
        if not counts:
            return ResponseMeta(unpriced="the response reported no token count")
        usage.input_tokens = sum(read_count(usage, c, "statistics.token_count") for c in counts)
    usage.checked()  # the embeddings' counts, each valid, may add up to more than any call consumes
    return ResponseMeta(usage=usage, unpriced=usage.invalid)


def read_cache(cached: Any) -> ResponseMeta:
    """``CachedContent``: "you're billed for the input tokens used to create the cache at the standard input token
    price" (Vertex AI context cache docs); storage, billed per hour of TTL afterwards, is not a cost of this call."""
    tokens = _get(_get(cached, "usage_metadata"), "total_token_count")
    if tokens is None:
        return ResponseMeta(model=string(_get(cached, "model")), unpriced="the response reported no token count")
    usage = Usage()
    usage.input_tokens = read_count(usage, tokens, "total_token_count")
    usage.checked()
    return ResponseMeta(usage=usage, model=string(_get(cached, "model")), unpriced=usage.invalid)


class ChunkAccumulator(StreamAccumulator):
    """Stream chunks are ``GenerateContentResponse`` objects; usage is cumulative, so the last one wins. The stream
    is complete at a finish reason, or at a blocked prompt's feedback (its only chunk, with no candidates)."""

    __slots__ = ("usage_metadata", "model", "response_id", "reasons", "keep_text", "texts", "tools")

    def __init__(self, keep_text: bool) -> None:
        super().__init__()
        self.usage_metadata: Any = None
        self.tools: tuple[str, ...] = ()  # billed grounding seen in any chunk: its metadata may come in any of them
        self.model: str | None = None
        self.response_id: str | None = None
        self.reasons: list[str] = []
        self.keep_text = keep_text
        self.texts: list[str] = []

    def observe(self, chunk: Any) -> bool:
        u = getattr(chunk, "usage_metadata", None)
        if u is not None:
            self.usage_metadata = u
        self.model = string(getattr(chunk, "model_version", None)) or self.model
        self.response_id = string(getattr(chunk, "response_id", None)) or self.response_id
        if getattr(getattr(chunk, "prompt_feedback", None), "block_reason", None) is not None:
            # A blocked prompt: its one chunk (usage, no candidates) is the whole answer, as the call's would be.
            self.complete = True
        candidates = getattr(chunk, "candidates", None)
        if candidates:
            self.tools = _grounding_tools(candidates, self.tools)
            reasons = _finish_reasons(candidates)
            if reasons:
                self.reasons = reasons
                self.complete = True
            if self.keep_text:
                text = _output_text(candidates)
                if text:
                    self.texts.append(text)
        return True

    def result(self) -> ResponseMeta:
        tier = _tier(self.usage_metadata)
        return ResponseMeta(
            usage=read_usage(self.usage_metadata),
            hosted_tools=self.tools,
            model=self.model,
            response_id=self.response_id,
            finish_reasons=self.reasons,
            service_tier=tier,
            output_text="".join(self.texts) or None,
        )


class InteractionEventAccumulator(StreamAccumulator):
    """An Interactions API stream (``interactions.create(stream=True)``): its events are the google-genai SDK's
    ``InteractionSSEEvent`` objects. The ``interaction.completed`` event carries the finished interaction (its usage,
    status and, where sent, its steps), read by :func:`read_interaction` as a non-stream call's is; each
    ``step.start`` carries a step as the finished interaction lists it, so the grounding it shows is named by the same
    :func:`_interaction_tools`, also when the stream ends before its usage (then estimated, from the text deltas).

    An ``error`` event (the interaction failed on the server) is yielded to the caller by the SDK, which raises
    nothing: the call ends as a stream without its usage does, estimated, and the estimate says why
    (``aicost.usage.invalid_reason``, naming the error's code, never its message, which may quote the input)."""

    __slots__ = ("final", "tools", "model", "response_id", "keep_text", "texts", "error")

    def __init__(self, keep_text: bool) -> None:
        super().__init__()
        self.final: ResponseMeta | None = None  # the completed interaction, read
        self.tools: tuple[str, ...] = ()  # billed grounding the steps started so far show
        self.model: str | None = None
        self.response_id: str | None = None
        self.keep_text = keep_text
        self.texts: list[str] = []
        self.error: str | None = None  # why the usage is missing, once an ``error`` event came

    def observe(self, event: Any) -> bool:
        kind = _get(event, "event_type")
        if kind == "step.start":
            for tool in _interaction_tools((_get(event, "step"),)):
                if tool not in self.tools:
                    self.tools += (tool,)
        elif kind == "step.delta":
            if self.keep_text:
                delta = _get(event, "delta")
                text = _get(delta, "text") if _get(delta, "type") == "text" else None
                if isinstance(text, str):
                    self.texts.append(text)
        elif kind == "interaction.completed":
            self.final = read_interaction(_get(event, "interaction"))
            self.complete = True
        elif kind == "interaction.created":
            interaction = _get(event, "interaction")
            self.model = string(_get(interaction, "model")) or self.model
            self.response_id = string(_get(interaction, "id")) or self.response_id
        elif kind == "error" and self.error is None:
            code = string(_get(_get(event, "error"), "code"))
            self.error = (f"the stream ended with an error event ({code[:64]}) before the vendor's usage" if code
                          else "the stream ended with an error event before the vendor's usage")
        return True

    def result(self) -> ResponseMeta:
        meta = self.final or ResponseMeta(model=self.model, response_id=self.response_id,
                                          usage=None if self.error is None else Usage(invalid=self.error))
        meta.model = meta.model or self.model
        meta.response_id = meta.response_id or self.response_id
        meta.hosted_tools = tuple(dict.fromkeys(self.tools + meta.hosted_tools))
        meta.output_text = "".join(self.texts) or None
        return meta


def _api_client(resource: Any) -> Any:
    return getattr(resource, "_api_client", None)


class GeminiIntegration(Integration):
    name = "gemini"
    sdk = "google.genai"
    endpoints = ENDPOINTS

    def __init__(self) -> None:
        import inspect

        try:  # the Interactions API's streams (google-genai 2.x and later): the SDK's own stream objects
            from google.genai._gaos.utils.eventstreaming import AsyncStream, Stream

            self._event_streams: tuple[type, ...] = (Stream, AsyncStream)
        except ImportError:
            self._event_streams = ()
        event_streams = self._event_streams
        self._is_stream = lambda obj: (inspect.isgenerator(obj) or inspect.isasyncgen(obj)
                                       or isinstance(obj, event_streams))
        self._servers: dict[str, tuple[str | None, int | None]] = {}

    def provider(self, resource: Any) -> str:
        return "gcp.vertex_ai" if getattr(_api_client(resource), "vertexai", False) else "gcp.gemini"

    def _server(self, resource: Any) -> tuple[str | None, int | None]:
        try:
            url = _api_client(resource)._http_options.base_url
        except Exception:
            return None, None
        if not isinstance(url, str):
            return None, None
        hit = self._servers.get(url)
        if hit is None:
            from urllib.parse import urlsplit

            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None)
            if len(self._servers) >= 64:
                self._servers.clear()
            hit = self._servers[url] = (parts.hostname, port)
        return hit

    def request_meta(self, endpoint: Endpoint, resource: Any, kwargs: dict[str, Any]) -> RequestMeta:
        host, port = self._server(resource)
        return RequestMeta(
            model=endpoint.shape.model(kwargs),
            stream=endpoint.key in _STREAMING or endpoint.shape.streams(kwargs),
            max_tokens=endpoint.shape.output_cap(kwargs),
            service_tier=_request_tier(resource, kwargs) if endpoint.billable else None,
            server_address=host,
            server_port=port,
        )

    def read_response(self, endpoint: Endpoint, response: Any, want_text: bool) -> ResponseMeta:
        if not endpoint.billable:
            return ResponseMeta()
        if endpoint.operation == "embeddings":
            return read_embeddings(response)
        if endpoint.operation == "create_cache":
            return read_cache(response)
        if endpoint.key == "gemini.interactions.create":
            return read_interaction(response, want_text)
        return read_response(response, want_text)

    def new_accumulator(self, endpoint: Endpoint, hide_usage_chunk: bool, keep_text: bool) -> StreamAccumulator:
        if endpoint.key == "gemini.interactions.create":
            return InteractionEventAccumulator(keep_text)
        return ChunkAccumulator(keep_text)

    def is_stream(self, obj: Any) -> bool:
        return self._is_stream(obj)

    def wrap_stream(self, stream: Any, watch: Any) -> Any:
        if isinstance(stream, self._event_streams):
            # An Interactions stream stays the SDK's object: its generator of events is watched in place, and a
            # close (which closes the response, not the generator) finishes the call.
            inner = stream.generator
            stream.generator = watch.iterate(inner)
            watch.finish_on_close(stream.response, hasattr(inner, "__anext__"))
            return stream
        # A plain (async) generator: the caller gets a generator over it, as it would have.
        return watch.iterate(stream)


INTEGRATION = GeminiIntegration
