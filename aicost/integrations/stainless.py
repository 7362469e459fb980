"""What the two Stainless-generated SDKs (openai, anthropic) share, kept out of the core.

Both SDKs build every request in ``SyncAPIClient.request`` / ``AsyncAPIClient.request`` from a
``FinalRequestOptions`` (``method``, ``url``, ``json_data``), return streams whose items come from a
``_iterator`` attribute set in ``__init__`` (wrapped in place, so the caller keeps the SDK's own ``Stream`` object
and type) and whose HTTP response (``stream.response``) is closed by the SDK's helpers, and return
``APIResponse`` / ``LegacyAPIResponse`` objects for ``with_raw_response`` / ``with_streaming_response``.

Here, therefore: the requests' shape (:class:`StainlessShape`: ``model``, the output caps, ``messages`` with
OpenAI's framing, ``n``, ``stream``), the safety net routed by URL path, streams wrapped at ``_iterator``, raw
responses watched through ``parse()`` and their bytes read on the way (:meth:`StainlessIntegration.watch_result`),
and the error envelope (``APIStatusError.body``).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
from typing import Any, Callable

from .. import semconv as s
from .._log import error_once
from ..vendor import (BodyReader, CallWatch, Endpoint, InputText, Integration, RequestShape, ResponseMeta, Router,
                      cap_not_read, read_cap, token_count, walk_text)
from ._sse import EventParser

# Providers whose token counts tiktoken's encodings reproduce exactly (``aicost.tokens``): OpenAI's own models.
_TIKTOKEN_PROVIDERS = frozenset(("openai", "azure.ai.openai"))


_ABSENT = object()
_TEXT_KEYS = ("text", "content", "input", "arguments", "name")


def _stainless_step(node: Any) -> Any:
    """OpenAI / Anthropic message contents for :func:`aicost.vendor.walk_text`: a dict's text-bearing keys (a part's
    text, a message's content, a tool call's arguments...), an SDK object's ``text``. Other parts (images) are
    passed over: the count stays exact for chat requests, whose inexactness is their tool schemas."""
    if isinstance(node, dict):
        return [v for k in _TEXT_KEYS if isinstance(v := node.get(k), (str, list, dict))]
    text = getattr(node, "text", None)
    return text if isinstance(text, str) else ()


def content_texts(content: Any) -> list[str]:
    """Text parts of a message content in either vendor's shape (str, list of parts, dicts)."""
    pieces: list[str] = []
    walk_text(content, pieces, _stainless_step)
    return pieces


def _sent_from(kwargs: dict[str, Any], param: str) -> dict[str, Any]:
    """Where the value of ``param`` the vendor receives is: the SDKs send ``extra_body`` merged over the typed
    arguments (``_merge_mappings(json_data, extra_json)``), so a key given there is the one sent."""
    extra = kwargs.get("extra_body")
    return extra if isinstance(extra, dict) and param in extra else kwargs


def _send(kwargs: dict[str, Any], param: str, value: Any) -> None:
    """Send ``value`` as ``param``, where it is sent from; an ``extra_body`` is copied, never changed: it is the
    application's own dict."""
    extra = kwargs.get("extra_body")
    if isinstance(extra, dict) and param in extra:
        kwargs["extra_body"] = {**extra, param: value}
    else:
        kwargs[param] = value


class StainlessShape(RequestShape):
    """An OpenAI or Anthropic request: ``model``, an output cap under one of ``cap_params``, input text in
    ``messages`` / ``input`` / ``prompt`` and system instructions in ``system`` / ``instructions``, ``n``
    completions, and ``stream``."""

    __slots__ = ()

    model_param = "model"
    # Output caps the request may set, the one that governs first: a server that takes both reads
    # ``max_completion_tokens`` over the deprecated ``max_tokens`` (vLLM, SGLang: ``max_completion_tokens or
    # max_tokens``); OpenAI refuses a request with both (400 ``invalid_parameter_combination``).
    cap_params: tuple[str, ...] = ("max_completion_tokens", "max_output_tokens", "max_tokens")
    # Request keys whose text is input (counted for budgets and for estimates of missing usage), in the order the
    # content capture prefers; ``system_params`` are system instructions.
    input_params: tuple[str, ...] = ("messages", "input", "prompt")
    system_params: tuple[str, ...] = ("system", "instructions")

    def output_cap(self, kwargs: dict[str, Any]) -> int | None:
        """The cap that governs: the first of ``cap_params`` the request sends as a positive count
        (:func:`~aicost.vendor.token_count`: ``500.0`` is 500), read where it is sent from (:func:`_sent_from`;
        read inline here: every call of these vendors asks it, for its span)."""
        extra = kwargs.get("extra_body")  # (no dict made for a call without one)
        for param in self.cap_params:
            value = extra[param] if extra and isinstance(extra, dict) and param in extra else kwargs.get(param)
            if value is None:
                continue
            count = value if type(value) is int else token_count(value)  # (an int: no call, as every call asks)
            if count is not None and count > 0:
                return count
        return None

    def set_output_cap(self, kwargs: dict[str, Any], cap: int) -> bool:
        """Lower every cap the request sends above ``cap``, where it is sent from, so whichever one the vendor
        reads stops at ``cap`` (written as an int); a request that sends none gets ``cap_param`` (not beside any
        cap it sends: OpenAI takes one of ``max_tokens`` and ``max_completion_tokens``)."""
        sent: list[tuple[str, int]] = []
        for param in self.cap_params:
            count, unread = read_cap(param, _sent_from(kwargs, param).get(param))
            if unread is not None:
                return False
            if count is not None:
                sent.append((param, count))
        if not sent:
            if self.cap_param is None:
                return False
            _send(kwargs, self.cap_param, cap)
            return True
        above = [param for param, count in sent if count > cap]
        for param in above:
            _send(kwargs, param, cap)
        return bool(above)

    def unread_cap(self, kwargs: dict[str, Any]) -> str | None:
        for param in self.cap_params:
            why = cap_not_read(param, _sent_from(kwargs, param).get(param))
            if why is not None:
                return why
        return None

    def choices(self, kwargs: dict[str, Any]) -> int:
        n = kwargs.get("n")
        return n if type(n) is int and n > 1 else 1

    def input_characters(self, kwargs: dict[str, Any]) -> int:
        text = kwargs.get("input")
        return len(text) if isinstance(text, str) else 0

    def input_text(self, kwargs: dict[str, Any]) -> InputText:
        """``messages`` with OpenAI's documented chat framing (3 tokens per message plus 3 priming tokens); the
        other input and system keys as text; ``tools`` as JSON, which makes the count inexact since vendors render
        schemas their own way."""
        pieces: list[str] = []
        overhead = 0
        exact = True
        for key in self.input_params + self.system_params:
            value = kwargs.get(key)
            if value is None:
                continue
            if key == "messages" and isinstance(value, (list, tuple)):
                for m in value:
                    overhead += 3
                    if isinstance(m, dict):
                        pieces.extend(content_texts(m.get("content")))
                        if m.get("name"):
                            pieces.append(str(m["name"]))
                    else:
                        pieces.extend(content_texts(getattr(m, "content", None)))
                overhead += 3
            else:
                pieces.extend(content_texts(value))
        tools = kwargs.get("tools")
        if tools:
            try:
                import json

                pieces.append(json.dumps(tools, default=str))
            except Exception:
                pass
            exact = False
        return InputText(tuple(pieces), overhead, exact)

    def content(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self.input_params:
            if kwargs.get(key) is not None:
                out["input"] = kwargs[key]
                break
        for key in self.system_params:
            if kwargs.get(key) is not None:
                out["system"] = kwargs[key]
                break
        return out

    def streams(self, kwargs: dict[str, Any]) -> bool:
        return kwargs.get("stream") is True

    def tokenizer_is_exact(self, provider: str) -> bool:
        return provider in _TIKTOKEN_PROVIDERS


class ClientRef:
    """Lets the integrations read a client the way they read it from a resource (``resource._client``)."""

    __slots__ = ("_client",)

    def __init__(self, client: Any) -> None:
        self._client = client


class StainlessIntegration(Integration):
    """Base for the openai and anthropic integrations. Subclasses set ``sdk`` (the top-level module name), the
    stream and raw-response types in ``__init__``, and ``route_path``."""

    _stream_types: tuple[type, ...] = ()
    _raw_types: tuple[type, ...] = ()

    @property
    def routers(self) -> tuple[Router, ...]:  # type: ignore[override]
        # The safety net under the resource patches: a call that reaches ``request()`` without passing a patched
        # resource method (a ``with_raw_response`` wrapper built before ``instrument()``, or a direct
        # ``client.post``) is still recorded, routed by its URL path.
        base = f"{self.sdk}._base_client"
        return (Router(base, "SyncAPIClient", "request"), Router(base, "AsyncAPIClient", "request", is_async=True))

    @property
    def sends_in(self) -> tuple[str, ...]:  # type: ignore[override]
        # ``SyncAPIClient.request`` / ``AsyncAPIClient.request`` send, retry and parse the response: an error that
        # never passed through them was raised before the request was built (arguments the SDK refused).
        return (f"{self.sdk}._base_client",)

    def route_path(self, method: str, path: str) -> Endpoint | None:
        """The endpoint of a request seen only at the HTTP-client level, or None if it bills nothing."""
        return None

    def route(self, router: Router, instance: Any, args: tuple, kwargs: dict[str, Any]
              ) -> tuple[Endpoint, Any, dict[str, Any]] | None:
        options = _request_options(args, kwargs)
        body = getattr(options, "json_data", None)
        endpoint = self.route_path(getattr(options, "method", ""), getattr(options, "url", ""))
        if endpoint is None or not isinstance(body, dict):
            return None
        body = dict(body)  # a copy: the caller's body (``client.post(body=...)``) is never changed
        if _folds_extra(options, body):
            # sent merged over the body, as a method's ``extra_body``: the shape reads and caps it where it is sent
            body["extra_body"] = options.extra_json
        body["stream"] = bool(kwargs.get("stream"))
        return endpoint, ClientRef(instance), body

    def routed_arguments(self, router: Router, args: tuple, kwargs: dict[str, Any], request: dict[str, Any]
                         ) -> tuple[tuple, dict[str, Any]]:
        """What the interceptors changed in ``request`` goes into a copy of the request's options, which the SDK
        then builds the request from (``stream`` is the view's own key, read from ``request()``'s argument)."""
        options = _request_options(args, kwargs)
        body = options.json_data
        own = ("stream", "extra_body") if _folds_extra(options, body) else ("stream",)  # the view's, not the body's
        changed = {k: v for k, v in request.items() if k not in own and body.get(k, _ABSENT) is not v}
        extra = request.get("extra_body") if len(own) > 1 else None
        if not changed and (extra is None or extra is options.extra_json):
            return args, kwargs
        options = copy.copy(options)  # shallow, as the SDK's own model_copy: the caller's options stay as they were
        options.json_data = {**body, **changed}
        if extra is not None:
            options.extra_json = extra
        if len(args) > 1:
            return (args[0], options, *args[2:]), kwargs
        return args, {**kwargs, "options": options}

    def is_stream(self, obj: Any) -> bool:
        return isinstance(obj, self._stream_types)

    def wrap_stream(self, stream: Any, watch: CallWatch) -> Any:
        inner = stream._iterator
        stream._iterator = watch.iterate(inner)
        response = getattr(stream, "response", None)
        if response is not None:  # the SDKs' stream helpers close the response, not the stream
            watch.finish_on_close(response, hasattr(inner, "__anext__"))
        return stream

    def body_reader(self, raw: Any, watch: CallWatch) -> BodyReader | None:
        """For a response whose bytes the caller may read itself (``with_streaming_response``, read with
        ``json()``, ``text()``, ``read()``, ``iter_bytes()`` or ``iter_lines()`` rather than ``parse()``): what
        reads them on the way. A request that is not a stream gets one JSON document, read as ``parse()`` would
        have read it; a stream, its events (:class:`EventBodyReader`). None: the usage is missing, and estimated
        like any missing usage."""
        if not watch.endpoint.shape.streams(watch.kwargs):
            return JsonBodyReader(self, watch)
        item = self._stream_item_maker(raw)
        if item is None:
            return None
        reader = EventBodyReader(watch, item)
        # The SDK's own observer of the body (anthropic 2.x records its call span's stop reason and usage from the
        # items its ``Stream`` hands it): handed the same items, so the span says what the parsed stream's says.
        body = getattr(raw.http_response, "stream", None)
        observer = getattr(body, "stream_observer", None)
        if observer is not None:
            reader.quiet_observer = body.stream_observer = HeldEndObserver(observer, reader, watch)
        return reader

    def stream_event(self, name: str | None, data: bytes, options: Any, client: Any, response: Any) -> Any:
        """What the SDK's ``Stream`` does at one server-sent event of a stream (``name``: its ``event:``, ``data``:
        its data; ``options``: the request's ``FinalRequestOptions``; ``client``: the SDK client; ``response``: the
        HTTP response), each event read once: the JSON value it builds its item from (None for JSON ``null``,
        which the SDK builds an item from too: ``None``), :data:`NO_ITEM` for an event that yields no item,
        :data:`STREAM_END` for the vendor's end marker, or the error it raises there (a vendor's mid-stream error
        event), built as it builds it. Each SDK's ``_streaming.Stream.__stream__`` says it. In bytes the caller
        reads itself nothing is raised (the caller relays the event as it is); the call fails with the error, as
        it fails when the SDK's own stream raises it."""
        return NO_ITEM

    def _stream_item_maker(self, raw: Any) -> Callable[[str | None, bytes], Any] | None:
        """``(name, data) -> item`` for the events of the stream behind ``raw`` (an ``APIResponse`` whose request
        streams): the item the SDK's own ``Stream`` would have yielded, built as it builds it
        (``client._process_response_data`` with the stream's item type), so the stream accumulator reads it
        unchanged; for an event the SDK raises at, its error (:meth:`stream_event`). None when the SDK would
        not decode the body as server-sent events (a client that brings its own decoder, such as Anthropic on
        Bedrock's AWS event stream)."""
        client, options, response = raw._client, raw._options, raw.http_response
        streaming = importlib.import_module(f"{self.sdk}._streaming")
        base = importlib.import_module(f"{self.sdk}._base_client").BaseClient
        if type(client)._make_sse_decoder is not base._make_sse_decoder:
            return None
        stream_cls = raw._stream_cls
        item_type = streaming.extract_stream_chunk_type(stream_cls) if stream_cls else raw._cast_to
        process = client._process_response_data
        event = self.stream_event

        def item(name: str | None, data: bytes) -> Any:
            value = event(name, data, options, client, response)
            if value is NO_ITEM or value is STREAM_END or isinstance(value, BaseException):
                return value  # an error: handed over, not raised (EventBodyReader._read)
            return process(data=value, cast_to=item_type, response=response)  # (``None`` from JSON ``null``)

        return item

    def watch_result(self, raw: Any, watch: CallWatch) -> bool:
        """``with_raw_response`` / ``with_streaming_response``: the call returns an ``APIResponse`` the caller
        parses (or reads the bytes of); watch what the caller gets from it."""
        if not isinstance(raw, self._raw_types):
            return False
        is_async = inspect.iscoroutinefunction(raw.parse)
        is_stream = self.is_stream
        reading_bytes: list[Callable[[], None]] = []  # undoes the reading of the bytes on the way

        def observe(parsed: Any) -> Any:
            if not watch.finished and parsed is not None:
                if not is_stream(parsed):
                    watch.result(parsed)
                elif not getattr(parsed, "_aicost_watched", False):  # parse() caches: the same stream again
                    parsed._aicost_watched = True
                    for stop in reading_bytes:  # the stream's items are read as it yields them, not in its bytes
                        stop()
                    watch.result(parsed)
            return parsed

        http_response = getattr(raw, "http_response", None)
        if http_response is not None and getattr(http_response, "is_closed", False) and not watch.request.stream:
            # with_raw_response on a non-stream: the body is already in memory. A sync parse() caches per type,
            # so parsing now costs nothing extra and the caller later gets the very same object; an async
            # parse() cannot run here, so read the same JSON body through an attribute view instead. The call
            # is then finished: the caller's parse() needs no watching.
            try:
                observe(AttrView.wrap(http_response.json()) if is_async else raw.parse())
            except Exception:
                watch.finish_unread()  # the caller's own parse() will raise the same error
            return True

        # The bound method keeps ``raw`` alive while the caller holds only it (``create(...).parse()``); the hook
        # on ``raw`` refers back to ``raw`` through it, a reference cycle, so the first parse() removes the hook.
        original_parse = raw.parse
        own = vars(raw).get("parse")  # an instance-level parse someone else installed: restored as it was

        def unhook() -> None:
            try:
                if own is not None:
                    raw.parse = own
                else:
                    del raw.parse
            except Exception:
                pass

        if is_async:
            async def parse(*args: Any, **kwargs: Any) -> Any:
                watch.busy = True  # the SDK closes the response inside parse(): that close is not the end
                try:
                    parsed = await original_parse(*args, **kwargs)
                finally:
                    watch.busy = False
                if not args and not kwargs:
                    unhook()
                    _safe(observe, parsed)
                return parsed
        else:
            def parse(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                watch.busy = True
                try:
                    parsed = original_parse(*args, **kwargs)
                finally:
                    watch.busy = False
                if not args and not kwargs:
                    unhook()
                    _safe(observe, parsed)
                return parsed

        raw.parse = parse
        if http_response is not None:
            reader, undo = None, (unhook,)  # a caller that reads the bytes never calls parse(): unhook at close
            try:
                reader = self.body_reader(raw, watch)
                if reader is not None:
                    reading_bytes.append(_read_body_on_the_way(http_response, reader, watch, is_async))
                    undo = (unhook, *reading_bytes)
            except Exception:
                error_once("body:reader", "aicost: could not watch a response's bytes")
                reader = None
            watch.finish_on_close(http_response, is_async, reader, undo)
        return True

    def wrap_manager(self, manager: Any, wrap: Callable[[Any], Any]) -> bool:
        # ``ChatCompletionStreamManager`` / ``MessageStreamManager`` keep the request (a partial, or an un-awaited
        # coroutine for the async twins) in a name-mangled ``__api_request``.
        attr = next((a for a in vars(manager) if a.endswith("__api_request")), None)
        if attr is None:
            return False
        setattr(manager, attr, wrap(getattr(manager, attr)))
        return True

    def error_type(self, error: BaseException) -> str:
        """The type or code in the vendor's error envelope (``APIStatusError.body``: ``{"error": {"type": ...}}``
        for OpenAI, ``{"type": "error", "error": {"type": ...}}`` for Anthropic), else the generic reading."""
        body = getattr(error, "body", None)
        if isinstance(body, dict):
            err = body.get("error") if isinstance(body.get("error"), dict) else body
            code = err.get("type") or err.get("code")
            if isinstance(code, str) and code:
                return code
        return super().error_type(error)

    def tier_attributes(self, provider: str) -> tuple[str, str] | None:
        # Anthropic's own API has its keys; Azure, compatible hosts and Anthropic on Bedrock / Vertex use OpenAI's.
        if provider == "anthropic":
            return s.ANTHROPIC_REQUEST_SERVICE_TIER, s.ANTHROPIC_RESPONSE_SERVICE_TIER
        return s.OPENAI_REQUEST_SERVICE_TIER, s.OPENAI_RESPONSE_SERVICE_TIER


_servers: dict[int, tuple[Any, str | None, int | None]] = {}
_NO_DICT: dict[str, Any] = {}


def server_of(resource: Any) -> tuple[str | None, int | None]:
    """``server.address`` / ``server.port`` of the client behind an SDK resource (``resource._client``).

    Read on every call (OpenAI's integration reads it twice: the provider is named from the host), so cached per
    base-URL object: the SDKs' ``base_url`` property (openai 3.x imports a module inside it, about 11 k
    instructions a read, and its ``_base_url`` is now a property that reads it) and httpx2's ``URL.host`` (IDNA
    decoding) cost about 2 us together. The URL object is taken from the client's own attributes, where the SDKs
    keep it (openai 3.x: ``_configured_base_url``; anthropic: ``_base_url``); anything else falls back to the
    public property.
    """
    try:
        client = resource._client
        own = getattr(client, "__dict__", _NO_DICT)
        url = own.get("_configured_base_url")
        if url is None:
            url = own.get("_base_url")
            if url is None:
                url = client.base_url
        hit = _servers.get(id(url))
        if hit is not None and hit[0] is url:
            return hit[1], hit[2]
        host, port = url.host, url.port
        if len(_servers) >= 256:
            _servers.clear()
        _servers[id(url)] = (url, host, port)  # the entry keeps the URL alive, so its id is not reused
        return host, port
    except Exception:
        return None, None


class AttrView:
    """Attribute access over parsed JSON, so the integrations' readers work on a raw body as on SDK models."""

    __slots__ = ("_data",)

    def __init__(self, data: dict) -> None:
        self._data = data

    @staticmethod
    def wrap(value: Any) -> Any:
        if isinstance(value, dict):
            return AttrView(value)
        if isinstance(value, list):
            return [AttrView.wrap(v) for v in value]
        return value

    def __getattr__(self, name: str) -> Any:
        try:
            return AttrView.wrap(self._data[name])
        except KeyError:
            raise AttributeError(name) from None


def _folds_extra(options: Any, body: dict[str, Any]) -> bool:
    """Whether a ``request()``'s view holds its ``extra_json`` as ``extra_body`` (the SDK sends it merged over the
    body, as it does a method's ``extra_body``): when there is one, and the body has no key of that name."""
    return isinstance(getattr(options, "extra_json", None), dict) and "extra_body" not in body


def _request_options(args: tuple, kwargs: dict[str, Any]) -> Any:
    """The ``FinalRequestOptions`` of a ``request(cast_to, options, ...)`` call, positional or by keyword."""
    return args[1] if len(args) > 1 else kwargs.get("options")


# Why a call whose response the caller closed before reading it is estimated (``aicost.usage.invalid_reason``).
UNREAD = "the response body was closed unread: its usage was not seen"


class JsonBodyReader(BodyReader):
    """The body of a call that is not a stream, as the caller reads it past ``parse()``: the chunks are kept and,
    once the response is closed, read as the JSON document ``parse()`` would have read (through an
    :class:`AttrView`), or as the text it would have returned (a transcript in ``text`` format). A body larger than
    ``_KEEP`` is let go, so a caller that streams a large body to disk keeps its memory: its usage is then missing
    and estimated, and so is a body closed unread, each with the reason (``CallWatch.skip``): the vendor billed
    the output all the same. When the caller does call ``parse()``, that reads the result and this reader is not
    asked."""

    __slots__ = ("integration", "watch", "chunks", "size")
    _KEEP = 32 << 20

    def __init__(self, integration: Integration, watch: CallWatch) -> None:
        self.integration = integration
        self.watch = watch
        self.chunks: list[bytes] | None = []
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        chunks = self.chunks
        if chunks is not None:
            self.size += len(chunk)
            if self.size > self._KEEP:
                self.chunks = None
                self.watch.skip(f"a response body over {self._KEEP} bytes was let go unread")
            else:
                chunks.append(chunk)

    def result(self) -> ResponseMeta:
        chunks, self.chunks = self.chunks, None
        if not chunks:  # nothing read, or too much to keep (said when it was let go)
            if chunks is not None:
                self.watch.skip(UNREAD)
            return ResponseMeta()
        body = b"".join(chunks)
        try:
            parsed = AttrView.wrap(json.loads(body))
        except ValueError:  # not JSON, or cut short: what parse() returns for a text body
            parsed = body.decode("utf-8", "replace")
        # The text is wanted only for content capture or an estimate; reading it too costs little next to the parse.
        return self.integration.read_response(self.watch.endpoint, parsed, True)


# What ``StainlessIntegration.stream_event`` returns for the vendor's end marker (OpenAI's ``[DONE]``).
STREAM_END = object()
# What it returns for an event the SDK's ``Stream`` yields no item for (Anthropic's ``ping``, an error event). Not
# None: an event whose data is JSON ``null`` is an item to the SDK (``None``), and to the call.
NO_ITEM = object()


class EventBodyReader(BodyReader):
    """The body of a stream as the caller reads it past ``parse()`` (``iter_lines()``, to proxy the events to a
    browser): its server-sent events are parsed from the bytes as they pass (:mod:`._sse`), each is made into the
    item the SDK's own ``Stream`` would have yielded (``item``, see ``StainlessIntegration._stream_item_maker``)
    and handed to the call (``CallWatch.observe_item``), which reads it with the integration's stream accumulator
    as it reads a parsed stream's items: the usage the vendor sends is exact, a body closed before it is
    estimated as a stream closed early. An event the SDK's stream would raise at (a vendor's error event) fails the
    call with the SDK's error (``CallWatch.fail``), as that stream's call fails: ``error.type``, error status, ended
    by ``error``. An event over ``_KEEP`` bytes is let go unread, and the call says so if its usage is then
    missing. Nothing after the vendor's end marker, or its error, is read.

    ``observer``: the SDK's ``StreamObserver`` on the body (``response.stream.stream_observer``, anthropic 2.x),
    behind a :class:`HeldEndObserver`, or None. The SDK's ``Stream`` tells it when it begins to parse, each item it
    yields and the error it raises; the SDK records its own call span from them (stop reason, cache counts, time
    to first chunk). Told the same here, as the ``Stream`` tells it, a relayed body's span says what the parsed
    stream's says; the body's end it is told by the SDK's body itself, as for a parsed stream."""

    __slots__ = ("watch", "item", "events", "oversized", "observer", "quiet_observer")
    _KEEP = 32 << 20

    def __init__(self, watch: CallWatch, item: Callable[[str | None, bytes], Any]) -> None:
        self.watch = watch
        self.item = item
        self.events: EventParser | None = EventParser(self._KEEP)
        self.oversized = 0
        self.observer: HeldEndObserver | None = None  # told of the items once told the parse began,
        self.quiet_observer: HeldEndObserver | None = None  # at the first bytes fed

    def read_over(self) -> None:
        observer = self.observer
        if observer is not None:
            observer.release()

    def _tell(self, method: str, *args: Any) -> None:
        """Tell the SDK's observer (``begin``, ``item``, ``failed``), as its ``Stream`` would; an error in it is
        logged once, never the caller's."""
        try:
            getattr(self.observer, method)(*args)
        except Exception:
            error_once("body:observer", "aicost: the SDK's stream observer failed on an event in a response's bytes")

    def feed(self, chunk: bytes) -> None:
        events = self.events
        if events is None:  # the vendor's end marker was read
            return
        if self.quiet_observer is not None:  # the first bytes: the SDK's ``Stream`` begins here
            self.observer, self.quiet_observer = self.quiet_observer, None
            self._tell("begin")
        for name, data in events.feed(chunk):
            if not self._read(name, data):
                self.events = None
                break
        if events.oversized != self.oversized:
            self.oversized = events.oversized
            self.watch.skip(f"a stream event over {self._KEEP} bytes was let go unread")

    def _read(self, name: str | None, data: bytes) -> bool:
        """Hand one event's item to the call; False at the vendor's end marker or error."""
        try:
            item = self.item(name, data)
        except ValueError:  # not JSON: the SDK's stream would raise here; there is nothing to read
            return True
        except Exception:
            error_once("body:event", "aicost: could not read a stream event in a response's bytes")
            return True
        if item is STREAM_END:
            return False
        if isinstance(item, BaseException):  # where the SDK's stream raises: the call failed with it
            self.watch.fail(item)
            if self.observer is not None:
                self._tell("failed", item)
            return False
        if item is not NO_ITEM:
            self.watch.observe_item(item)
            if self.observer is not None:
                self._tell("item", item)
        return True

    def result(self) -> ResponseMeta:
        # asked only when no item was read: the body was closed before any event
        self.watch.skip(UNREAD)
        return ResponseMeta()


class HeldEndObserver:
    """The SDK's ``StreamObserver`` of a body whose bytes the caller reads (:class:`EventBodyReader`), its ``end``
    held while one of the caller's reads is fetching bytes: the SDK's body says it ended when its last bytes
    arrive, yet httpx2 still holds some (``iter_bytes(chunk_size=...)``) and hands them over after, so the events
    in them would reach the observer after its end, and be lost to it. Released once the read is over
    (``BodyReader.read_over``), every chunk fed. Before the caller reads any bytes (``parse()`` after all: the
    SDK's ``Stream`` tells it itself) it only passes everything on."""

    __slots__ = ("inner", "reader", "watch", "held")

    def __init__(self, inner: Any, reader: EventBodyReader, watch: CallWatch) -> None:
        self.inner = inner
        self.reader = reader
        self.watch = watch
        self.held: tuple[Any, ...] | None = None

    def begin(self) -> None:
        self.inner.begin()

    def item(self, item: Any) -> None:
        self.inner.item(item)

    def end(self, how: Any, error: BaseException | None = None) -> None:
        if self.reader.observer is self and self.watch.busy:
            self.held = self.held or (how, error)  # the first end is how it ended (httpx2 closes the body after)
            return
        held, self.held = self.held, None  # a read stopped (not exhausted) and the body closed: the first end
        self.inner.end(*(held or (how, error)))

    def failed(self, error: BaseException) -> None:
        """The SDK's ``Stream`` would raise ``error`` here: its end, whatever the body said meanwhile."""
        self.held = None
        self.inner.end("failed", error)

    def release(self) -> None:
        held, self.held = self.held, None
        if held is not None:
            self.inner.end(*held)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _safe(fn: Callable[[Any], Any], arg: Any) -> None:
    try:
        fn(arg)
    except Exception:
        error_once("observe", "aicost: could not observe a parsed response")


def _feed(reader: BodyReader, chunk: bytes) -> None:
    try:
        reader.feed(chunk)
    except Exception:
        error_once("body:feed", "aicost: could not read a response's bytes on the way (the caller gets them all)")


def _read_over(reader: BodyReader) -> None:
    try:
        reader.read_over()
    except Exception:
        error_once("body:over", "aicost: could not finish a read of a response's bytes")


def _read_body_on_the_way(response: Any, reader: BodyReader, watch: CallWatch, is_async: bool
                          ) -> Callable[[], None]:
    """Feed ``reader`` every decoded chunk the caller reads from an httpx2 response. ``read()``, ``iter_text()``,
    ``iter_lines()`` and the SDK's ``stream_to_file()`` all go through the instance's ``iter_bytes`` (async:
    ``aiter_bytes``), so one instance attribute sees every path; the chunks pass on unchanged. httpx2 closes the
    response when its last bytes arrive, before the chunks it still holds (``iter_bytes(chunk_size=...)``) are
    handed over: the call is ``busy`` while a chunk is fetched, so that close finishes the call only once that
    read is over (``CallWatch.read_done``), with every byte read. A read that reaches the body's end says so: a
    stream read to its end is exhausted, not closed early, whether or not the vendor's final event was in it.
    Returns the undo, which the close hook runs: the attribute refers back to the response, a cycle until it is
    removed."""
    name = "aiter_bytes" if is_async else "iter_bytes"
    original = getattr(response, name)
    if is_async:
        async def read_on_the_way(*args: Any, **kwargs: Any) -> Any:
            chunks = original(*args, **kwargs)
            at_end = False
            try:
                while True:
                    watch.busy = True
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        at_end = True
                        break
                    finally:
                        watch.busy = False
                    _feed(reader, chunk)
                    yield chunk
            finally:
                watch.read_done(at_end)
                _read_over(reader)
    else:
        def read_on_the_way(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            chunks = original(*args, **kwargs)
            at_end = False
            try:
                while True:
                    watch.busy = True
                    try:
                        chunk = next(chunks)
                    except StopIteration:
                        at_end = True
                        break
                    finally:
                        watch.busy = False
                    _feed(reader, chunk)
                    yield chunk
            finally:
                watch.read_done(at_end)
                _read_over(reader)

    setattr(response, name, read_on_the_way)

    def unhook() -> None:
        try:
            if vars(response).get(name) is read_on_the_way:
                delattr(response, name)
        except Exception:
            pass

    return unhook
