"""What the two Stainless-generated SDKs (openai, anthropic) share, kept out of the core.

Both SDKs build every request in ``SyncAPIClient.request`` / ``AsyncAPIClient.request`` from a
``FinalRequestOptions`` (``method``, ``url``, ``json_data``), return streams whose items come from a
``_iterator`` attribute set in ``__init__`` (wrapped in place, so the caller keeps the SDK's own ``Stream`` object
and type) and whose HTTP response (``stream.response``) is closed by the SDK's helpers, and return
``APIResponse`` / ``LegacyAPIResponse`` objects for ``with_raw_response`` / ``with_streaming_response``.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import semconv as s
from ..vendor import Endpoint, Integration, Router, StreamWatch


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

    def route_path(self, method: str, path: str) -> Endpoint | None:
        """The endpoint of a request seen only at the HTTP-client level, or None if it bills nothing."""
        return None

    def route(self, router: Router, instance: Any, args: tuple, kwargs: dict[str, Any]
              ) -> tuple[Endpoint, Any, dict[str, Any]] | None:
        options = args[1] if len(args) > 1 else kwargs.get("options")
        body = getattr(options, "json_data", None)
        endpoint = self.route_path(getattr(options, "method", ""), getattr(options, "url", ""))
        if endpoint is None or not isinstance(body, dict):
            return None
        body = dict(body)  # the request's own kwargs view; the SDK sends options.json_data as it was
        body["stream"] = bool(kwargs.get("stream"))
        return endpoint, ClientRef(instance), body

    def is_stream(self, obj: Any) -> bool:
        return isinstance(obj, self._stream_types)

    def wrap_stream(self, stream: Any, watch: StreamWatch) -> Any:
        inner = stream._iterator
        stream._iterator = watch.iterate(inner)
        response = getattr(stream, "response", None)
        if response is not None:  # the SDKs' stream helpers close the response, not the stream
            watch.finish_on_close(response, hasattr(inner, "__anext__"))
        return stream

    def is_raw_response(self, obj: Any) -> bool:
        return isinstance(obj, self._raw_types)

    def wrap_manager(self, manager: Any, wrap: Callable[[Any], Any]) -> bool:
        # ``ChatCompletionStreamManager`` / ``MessageStreamManager`` keep the request (a partial, or an un-awaited
        # coroutine for the async twins) in a name-mangled ``__api_request``.
        attr = next((a for a in vars(manager) if a.endswith("__api_request")), None)
        if attr is None:
            return False
        setattr(manager, attr, wrap(getattr(manager, attr)))
        return True

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
