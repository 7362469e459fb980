"""The contract between the core and a vendor integration.

An integration knows its vendor's shapes and nothing else: which methods bill (a table of
:class:`Endpoint`), how to read a response into a :class:`ResponseMeta`, and how to accumulate one from stream
items (a :class:`StreamAccumulator`). Span building, cost, stream lifetime, hooks and metrics live once, in
``aicost.instrumentation`` and ``aicost.telemetry``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Mapping

from .pricing.names import tier_text
from .usage import Usage, is_object


class RequestShape:
    """How to read and change one endpoint's request: the vendor-neutral contract budgets, policies, token
    estimates and content capture use, so that none of them knows a vendor's argument names.

    ``kwargs`` is the live request the SDK is about to send (a method's keyword arguments, boto3's ``api_params``,
    or a Stainless ``request()``'s body, sent as changed by ``Integration.routed_arguments``): what ``set_model`` /
    ``set_output_cap`` write is what the vendor receives. This base reads
    nothing (no model, no cap, no input text): each integration passes its own subclass in its :class:`Endpoint`
    table (``integrations/stainless.py`` for OpenAI and Anthropic, ``integrations/gemini.py``,
    ``integrations/bedrock.py``). Every method must tolerate any value (requests are the application's,
    unvalidated) and never raise.
    """

    __slots__ = ("cap_param", "generates")

    # The argument that names the model, for the shapes whose model is one top-level argument (OpenAI and
    # Anthropic ``model``, Bedrock ``modelId``); None: the shape reads no model, or overrides the two methods.
    model_param: str | None = None

    def __init__(self, cap_param: str | None = None, *, generates: bool = True) -> None:
        # The parameter that caps output when the request sets none (None: the endpoint has no output to cap).
        self.cap_param = cap_param
        # False for requests billed by their input alone (embeddings, caching content): no output to reserve for.
        self.generates = generates

    def model(self, kwargs: dict[str, Any]) -> str | None:
        param = self.model_param
        if param is None:
            return None
        value = kwargs.get(param)
        return value if isinstance(value, str) else None

    def set_model(self, kwargs: dict[str, Any], model: str) -> None:
        """Ask for ``model`` instead (a budget's downgrade). A shape that cannot leaves the request as it is: the
        caller checks with :meth:`model`."""
        if self.model_param is not None:
            kwargs[self.model_param] = model

    def output_cap(self, kwargs: dict[str, Any]) -> int | None:
        """The output-token cap the request sends: the one that governs, if several parameters are given (each
        shape knows its vendor's rule), read where it is sent from."""
        return None

    def set_output_cap(self, kwargs: dict[str, Any], cap: int) -> bool:
        """Lower (or set) the request's output cap to ``cap``. True if the request was changed. A request that
        sends a cap that is no positive count (:meth:`unread_cap`) is left as it is."""
        return False

    def unread_cap(self, kwargs: dict[str, Any]) -> str | None:
        """Why an output cap the request sends is no positive count (:func:`cap_not_read`), or None. A budget policy
        then leaves the request's caps as the application sent them: it reinterprets no value the vendor would read
        its own way, and adds no cap beside it (OpenAI refuses ``max_tokens`` with ``max_completion_tokens``)."""
        return None

    def choices(self, kwargs: dict[str, Any]) -> int:
        """How many completions the request asks for (each up to the output cap)."""
        return 1

    def input_characters(self, kwargs: dict[str, Any]) -> int:
        """Characters of text billed per character (text to speech): 0 when the endpoint bills tokens."""
        return 0

    def input_text(self, kwargs: dict[str, Any]) -> "InputText":
        """The request's input as text, to count its tokens locally (see ``aicost.tokens.count_input``)."""
        return InputText((), 0, False)

    def content(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Prompt and system instructions as JSON-able values, for opted-in content capture:
        ``{"input": ..., "system": ...}`` (either may be missing)."""
        return {}

    def streams(self, kwargs: dict[str, Any]) -> bool:
        """Whether the request asks for a stream (read for endpoints observed only then: ``Endpoint.stream_only``)."""
        return False

    def tokenizer_is_exact(self, provider: str) -> bool:
        """Whether ``aicost.tokens``' local counts (tiktoken's encodings) are this provider's own token counts;
        if not, counts made here are estimates."""
        return False


@dataclass(frozen=True, slots=True)
class InputText:
    """A request's input as text: ``pieces`` are counted with the model's tokenizer, ``overhead`` tokens are added
    (OpenAI's per-message framing), and ``exact`` is False when some input cannot be counted exactly here
    (tool schemas, images, a vendor whose tokenizer is not public)."""

    pieces: tuple[str, ...]
    overhead: int = 0
    exact: bool = True


DEFAULT_SHAPE = RequestShape()  # an endpoint whose table gives no shape: its requests are not read

# What a vendor's traversal step returns for a part that is not text (an image, a file, a tool call).
NOT_TEXT = object()
_MAX_DEPTH = 64  # requests are the application's: a pathologically nested value must not exhaust the stack


def walk_text(value: Any, out: list[str], step: Callable[[Any], Any], _depth: int = 0) -> bool:
    """Append the text in ``value`` to ``out``; False if some part is not text, whose tokens a text count cannot
    see. The one walker of request contents: strings are text, lists and tuples are walked in order, and every
    other node is handed to the vendor's ``step``, which says what it holds: its text or nested values to walk
    (a string, a list, another node), ``()`` for nothing to count, or :data:`NOT_TEXT`. Never raises."""
    if value is None:
        return True
    if isinstance(value, str):
        out.append(value)
        return True
    if _depth > _MAX_DEPTH:
        return False
    if isinstance(value, (list, tuple)):
        complete = True
        for item in value:
            complete = walk_text(item, out, step, _depth + 1) and complete
        return complete
    try:
        inner = step(value)
    except Exception:
        return False
    return inner is not NOT_TEXT and walk_text(inner, out, step, _depth + 1)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One patch point: ``module.Class.method``. ``classes`` is the (sync class, async class) pair; either name
    may be empty when the SDK has only one. Whether a method is async is said by the table, not guessed from names.
    """

    module: str
    classes: tuple[str, ...]
    method: str
    key: str  # stable name used in spans (aicost.endpoint) and by budgets, e.g. "openai.chat.completions.create"
    operation: str  # gen_ai.operation.name
    # "call": the method performs the request and returns a model, a stream or a raw response.
    # "stream_manager": the method returns a context manager that performs the request on __enter__.
    # "events": the method parses one event of a long-lived connection (a WebSocket); billed work starts and ends
    # with events (``Integration.read_event``), one call per response the vendor generates.
    # "observe": the method bills nothing itself, but its request or its result concerns work the vendor bills
    # elsewhere (a batch: created, looked up, its results read). ``Integration.before_observed`` /
    # ``after_observed`` see it; with an ``operation`` it also gets a span, as an unbilled call.
    kind: str = "call"
    billable: bool = True  # False for token counting endpoints: a span, but no usage, cost, budget or metric
    shape: RequestShape = DEFAULT_SHAPE  # how this endpoint's request says its model, output cap and input
    # Observe only calls whose request asks for a stream (``shape.streams``; e.g. ``responses.retrieve``: polling a
    # finished response again must not count it again; resuming its stream is the call that delivers the usage).
    stream_only: bool = False
    # The call continues work an earlier call started (``responses.retrieve(stream=True)`` streams a background
    # response by id): it asks for nothing new, so a budget has no model to price ahead and holds nothing for it.
    # Any other call that names no model (a stored prompt chooses it) is new work whose price is not known ahead.
    resumes: bool = False


@dataclass(frozen=True, slots=True)
class Router:
    """A method every request of an SDK passes through, patched once: boto3's ``BaseClient._make_api_call``
    (no class per operation: the operation is an argument), or a Stainless client's ``request`` (the safety net
    under the resource patches). ``Integration.route`` says which calls through it bill, and as which endpoint."""

    module: str
    cls: str
    method: str
    is_async: bool = False


@dataclass(slots=True)
class ResponseMeta:
    """What a finished call returned, in vendor-neutral form."""

    usage: Usage | None = None
    model: str | None = None
    response_id: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    service_tier: str | None = None
    # Output text, collected only when needed: to estimate missing usage or when content capture is on.
    output_text: str | None = None
    # The vendor accepted the work but bills it later (a queued background response): no usage, no estimate.
    deferred: bool = False
    # Parts of the call the vendor ran on another model, billed at that model's rates and left out of ``usage``
    # (Anthropic's advisor tool, OpenAI's hosted image tool and SVG authoring): (kind, model, usage), one per kind
    # and model; a model of None is asked of ``Integration.sub_inference_model``. ``usage`` stays the vendor's
    # top-level figure for the model that answered, as the OpenTelemetry attributes expect.
    sub_inferences: tuple[tuple[str, str | None, Usage], ...] = ()
    # Why the cost is unknown when it is (``aicost.price.unknown_reason``). Without ``usage``: the vendor bills by a
    # unit the catalog does not price (seconds of audio, images) or sent no usage in the format asked for, and the
    # cost is unknown, never estimated from text (which would be far off and look like a price). With ``usage``
    # (the characters of a speech call, which only per-character models can price): it is priced, and this is
    # said only if the price comes out unknown.
    unpriced: str | None = None
    audio_seconds: float | None = None  # duration-billed audio (``aicost.usage.audio_seconds``)
    # Response facts the price depends on beyond ``usage`` (keyword arguments for ``pricing.price_call``, with the
    # request's ``RequestMeta.price_hints``), e.g. Anthropic's per-step usage of a server-side tool loop (``steps``).
    price_hints: dict[str, Any] | None = None
    # The hosted tools the response shows the vendor ran and bills per call or session beyond tokens, at rates or
    # counts aicost cannot price (``Usage.hosted_tools``). Here, not on ``usage``: a response may show them and carry
    # no usage (a Gemini response without ``usageMetadata``, a stream cut before its usage), and the core puts them
    # on whatever usage it prices, the vendor's or its own estimate, so such a call is cost-unknown, naming them.
    hosted_tools: tuple[str, ...] = ()


class StreamAccumulator:
    """Reads stream items as they pass by. ``observe`` must be cheap: it runs once per chunk.

    ``observe`` returns False to hide an item from the caller (only the usage-only chunk aicost itself asked
    for with ``stream_options.include_usage``). ``complete`` is True once the vendor's terminal event was seen.
    """

    __slots__ = ("complete",)

    def __init__(self) -> None:
        self.complete = False

    def observe(self, item: Any) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def result(self) -> ResponseMeta:  # pragma: no cover - interface
        raise NotImplementedError

    def output_text(self) -> str | None:
        """The output text, for an accumulator that leaves it out of ``result()`` because getting it would cost on
        every item (Bedrock's InvokeModelWithResponseStream chunks are JSON that only this parses). The core asks
        only when it needs the text: an estimate, a stream cut short, content capture. None (the default): the
        text, if any, is ``result().output_text``."""
        return None


class BodyReader:
    """Reads the bytes of a response the caller consumes itself (``with_streaming_response`` read past
    ``parse()``: a JSON body, a stream's events, text to speech), as they pass by: ``feed`` runs once per chunk,
    so it keeps little. ``result`` says what the call billed when the response is closed, whether the caller read
    all of it or not (a reader that hands stream items to ``CallWatch.observe_item`` is asked only if it found
    none)."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def result(self) -> ResponseMeta:  # pragma: no cover - interface
        raise NotImplementedError

    def read_over(self) -> None:
        """A read of the caller's is over (at the body's end, or stopped), every chunk it fetched fed: what the
        reader held back until then may go on."""


@dataclass(slots=True)
class CompletedWork:
    """Billed work the vendor did out of sight of any call and reports later: one succeeded batch result.

    The core records it like a finished call of ``endpoint`` (span, metrics, listeners, ledger), with the
    attribution and unit of work it names rather than those of the code reading it, and only once per ``key``
    in a process (``CallResult.record_id`` carries the key, so the ledger keeps one row across processes too).
    """

    endpoint: Endpoint  # the endpoint the work bills as (its operation, usage reader and prices)
    request: dict[str, Any]  # the request's keyword view, as far as it is known (at least ``model``)
    meta: ResponseMeta  # what the vendor reported: usage, model, ids; ``service_tier`` is the rate it bills at
    key: str  # the work's identity (16 hex digits): the same result read twice has the same key
    attribution: Mapping[str, str] | None = None  # None: the attribution in force where the result is read
    run_id: str | None = None  # the ``aicost.feature`` unit of work that submitted it
    done_ns: int = 0  # when the vendor did the work (time.time_ns()); 0 when unknown: when it is read
    span_attributes: dict[str, Any] = field(default_factory=dict)  # aicost.batch.* and the like
    price_hints: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments for pricing.price_call


class Observed:
    """What the core gives ``Integration.before_observed`` / ``after_observed``: the attribution and unit of work
    in force when the observed method was called, and ``record`` for the billed work its result reports."""

    attribution: Mapping[str, str]
    run_id: str | None
    is_async: bool

    def record(self, work: CompletedWork) -> None:  # pragma: no cover - interface
        """Record one piece of completed work (never raises)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class EventStep:
    """An event of a long-lived connection that starts or finishes a billed response (``Integration.read_event``).

    ``response_id`` pairs the two. A start carries the model the connection is using; a finish carries what was
    billed (``meta``), and also the model, for a response whose start was not seen. "once" is billed work that
    one event both announces and reports (a Realtime session's input transcription, billed at its own model);
    ``endpoint`` then names it, where it is not the patched method's.
    """

    kind: str  # "start", "finish" or "once"
    response_id: str
    model: str | None = None
    meta: ResponseMeta | None = None
    endpoint: Endpoint | None = None


@dataclass(slots=True)
class RequestMeta:
    """Facts about the request the core needs before the call, read once from the SDK call's kwargs.
    (Not frozen: a frozen dataclass's ``__init__`` costs about 0.5 us more, and this is built on every call.)"""

    model: str | None
    stream: bool
    max_tokens: int | None
    service_tier: str | None
    server_address: str | None
    server_port: int | None
    # Request facts the price depends on, known before the call (keyword arguments for ``pricing.price_call``,
    # e.g. Anthropic's ``long_context``). ``Integration.price_hints`` adds those only worth reading once usage
    # shows they matter.
    price_hints: dict[str, Any] | None = None


class Integration:
    """Base for a vendor integration. Subclasses fill the table and the readers."""

    name: str = ""
    sdk: str = ""  # the SDK's importable module: the integration is loaded only when it is installed
    endpoints: tuple[Endpoint, ...] = ()

    def provider(self, resource: Any) -> str:  # gen_ai.provider.name for the client behind a resource
        raise NotImplementedError

    def request_meta(self, endpoint: Endpoint, resource: Any, kwargs: dict[str, Any]) -> RequestMeta:
        raise NotImplementedError

    def prepare_stream(self, endpoint: Endpoint, request: RequestMeta, kwargs: dict[str, Any],
                       stream_usage: str) -> bool:
        """Adjust a streaming request before it is sent; True if a usage-only chunk was requested by aicost.
        ``stream_usage``: ``instrument(stream_usage=...)``, "auto", "always" or "never"."""
        return False

    def read_response(self, endpoint: Endpoint, response: Any, want_text: bool) -> ResponseMeta:
        """``want_text``: collect the output text too (content capture is on); without usage it is collected
        anyway, for the estimate."""
        raise NotImplementedError

    def read_event(self, endpoint: Endpoint, connection: Any, event: Any) -> EventStep | None:
        """For "events" endpoints: what one parsed event means for billing. None for most events."""
        return None

    def tier_attributes(self, provider: str) -> tuple[str, str] | None:
        """The vendor's own (request, response) service-tier span attributes, if its conventions name any
        (``aicost.service_tier`` always carries the tier a call was priced at)."""
        return None

    def price_hints(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Request facts the price depends on beyond usage (keyword arguments for ``pricing.price_call``)."""
        return {}

    def sub_inference_model(self, kind: str, kwargs: dict[str, Any]) -> str | None:
        """The model of a sub-inference whose usage does not name it (a hosted tool configured in the request)."""
        return None

    def new_accumulator(self, endpoint: Endpoint, hide_usage_chunk: bool, keep_text: bool) -> StreamAccumulator:
        raise NotImplementedError

    def is_stream(self, obj: Any) -> bool:
        """Whether a call's return value is a stream whose items arrive later."""
        raise NotImplementedError

    def wrap_stream(self, stream: Any, watch: "CallWatch") -> Any:
        """Put ``watch.iterate`` between the SDK's stream and the caller, and return what the caller gets: the
        same object wrapped in place where the SDK allows it, else a generator over it (a plain generator is
        what the caller had anyway). ``watch.finish_on_close(obj, is_async)`` finishes the call when ``obj`` is
        closed (a caller may close a stream without reading it to the end)."""
        raise NotImplementedError

    def watch_result(self, value: Any, watch: "CallWatch") -> bool:
        """For a return value that is not the result but something the caller reads it from later (the Stainless
        SDKs' raw responses, which the caller parses): arrange for what the caller reads to reach
        ``watch.result(parsed)`` (and ``watch.finish_on_close`` for a body the caller may only close), and return
        True. False (the default): ``value`` is the result, read at once with ``read_response``. Must be cheap for
        plain results: it runs after every call that is not a stream."""
        return False

    def wrap_manager(self, manager: Any, wrap: Callable[[Any], Any]) -> bool:
        """For "stream_manager" endpoints: replace the request the context manager will send on ``__enter__`` with
        ``wrap(request)``. False if this manager cannot be watched."""
        return False

    # Methods every request passes through (see :class:`Router`), patched once each.
    routers: tuple[Router, ...] = ()

    def route(self, router: Router, instance: Any, args: tuple, kwargs: dict[str, Any]
              ) -> tuple[Endpoint, Any, dict[str, Any]] | None:
        """For a call through a router: (endpoint, resource, request) - ``resource`` is what ``provider`` and
        ``request_meta`` read, ``request`` the request's keyword view (live, where the SDK sends what it holds;
        else what the interceptors change in it is sent through :meth:`routed_arguments`).
        None when the call bills nothing. Must be cheap: it runs for every request of the SDK."""
        return None

    def routed_arguments(self, router: Router, args: tuple, kwargs: dict[str, Any], request: dict[str, Any]
                         ) -> tuple[tuple, dict[str, Any]]:
        """The router method's (args, kwargs) that send ``request`` (``route``'s view) as the interceptors left it
        (a downgraded model, a capped output). Default: unchanged, for a view that is the live request."""
        return args, kwargs

    def error_type(self, error: BaseException) -> str:
        """``error.type`` for an error the vendor call raised (default: ``aicost.telemetry.error_type_of``)."""
        from .telemetry import error_type_of

        return error_type_of(error)

    # Modules through whose frames a request reaches the vendor (the SDK's HTTP layer): an error raised without
    # passing through any of them was raised before the request was sent (see :meth:`unbilled`). Empty: not known.
    sends_in: tuple[str, ...] = ()

    def unbilled(self, error: BaseException, streaming: bool = False) -> bool:
        """Whether the vendor provably billed nothing for a call that raised ``error`` before any output arrived:
        it answered with an HTTP error status (4xx / 5xx), the connection was never made (refused, DNS, connect
        or pool timeout), or the error was raised before the request reached the SDK's HTTP layer (``sends_in``).
        Anything else (a read timeout, a cancellation, a response the SDK could not parse) may have been billed.
        ``streaming``: raised while the caller read the stream the SDK returned (an SDK may send the request only
        then, as google-genai does; an error event inside a 200 stream is no HTTP error), where ``sends_in`` says
        nothing."""
        return http_error_status(error) or never_connected(error) or (
            not streaming and bool(self.sends_in) and not raised_in(error, self.sends_in))

    def error_meta(self, endpoint: Endpoint, error: BaseException) -> ResponseMeta | None:
        """What a call that raised ``error`` after the vendor answered billed, where the error says it (OpenAI's
        ``LengthFinishReasonError.completion``), or what its endpoint bills by when it does not (an endpoint aicost
        never estimates says so with ``ResponseMeta.unpriced``). None: nothing known, estimated if not
        :meth:`unbilled`."""
        return None

    def uninstrument(self) -> None:
        """Undo what the integration changed besides the patched methods (state it put on SDK objects, such as an
        Anthropic client's tracer); run by ``aicost.uninstrument()``. Never raises."""

    def native_span_capture(self, resource: Any) -> Any:
        """For SDKs with their own tracing: prepare to capture the SDK's span of the next call (see anthropic).
        The capture has ``span()`` (the SDK's span once made, else None), ``release()`` (the call is made), and
        ``source``, the ``aicost.span.source`` written on that span. None: aicost makes its own span."""
        return None

    def before_observed(self, endpoint: Endpoint, resource: Any, args: tuple, kwargs: dict[str, Any],
                        seen: Observed) -> None:
        """For "observe" endpoints, before the SDK sends the request: may change ``kwargs`` (what the vendor
        receives), e.g. write the attribution into a batch's metadata."""

    def after_observed(self, endpoint: Endpoint, resource: Any, args: tuple, kwargs: dict[str, Any], value: Any,
                       seen: Observed) -> Any:
        """For "observe" endpoints: read what the method returned (remember a batch, record its results with
        ``seen.record``) and return what the caller gets: ``value``, wrapped in place where results arrive as it
        is iterated."""
        return value


# Exceptions (by class name, across HTTP libraries) raised when no connection to the vendor was made: httpx / httpx2,
# urllib3, botocore, and the socket errors underneath them.
_NOT_CONNECTED = frozenset(("ConnectError", "ConnectTimeout", "PoolTimeout", "NewConnectionError",
                            "ConnectTimeoutError", "EndpointConnectionError", "ConnectionRefusedError", "gaierror"))


def http_error_status(error: BaseException) -> bool:
    """Whether ``error`` is the vendor's HTTP error response (status 4xx / 5xx): the Stainless SDKs'
    ``APIStatusError.status_code``, google-genai's ``APIError.code``, botocore's ``ClientError.response``. An error
    event inside a 200 stream carries status 200: not an HTTP error, the vendor had accepted the call."""
    status = getattr(error, "status_code", None)
    if type(status) is not int:
        status = getattr(error, "code", None)
    if type(status) is not int:
        response = getattr(error, "response", None)
        metadata = response.get("ResponseMetadata") if isinstance(response, dict) else None
        status = metadata.get("HTTPStatusCode") if isinstance(metadata, dict) else None
    return type(status) is int and 400 <= status < 600


def never_connected(error: BaseException) -> bool:
    """Whether ``error``, or the error it was raised from, says no connection to the vendor was made."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 8:
        if type(current).__name__ in _NOT_CONNECTED:
            return True
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        seen += 1
    return False


def raised_in(error: BaseException, modules: tuple[str, ...]) -> bool:
    """Whether ``error`` passed through a frame of one of ``modules`` (or their submodules) on its way up."""
    tb = error.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__")
        if isinstance(name, str) and name.startswith(modules):
            return True
        tb = tb.tb_next
    return False


class CallWatch:
    """What the core gives ``Integration.wrap_stream`` and ``Integration.watch_result``: the call watching its
    result. ``acc`` is the stream's accumulator (``Integration.new_accumulator``), for an SDK that hands items over
    somewhere else than the iterator it wraps. ``endpoint``, ``request`` (:class:`RequestMeta`) and ``kwargs``
    describe the call; ``finished`` says it is over. ``busy`` is True while aicost (or an integration, around the
    caller's own read) is inside a read: a close seen then is part of the read, which says how the call ended."""

    acc: StreamAccumulator | None
    endpoint: Endpoint
    request: RequestMeta
    kwargs: dict[str, Any]
    finished: bool
    busy: bool

    def iterate(self, inner: Any) -> Any:  # pragma: no cover - interface
        """A (sync or async) generator over ``inner`` that observes every item and finishes the call when the
        stream ends, fails or is closed."""
        raise NotImplementedError

    def observe_item(self, item: Any) -> None:  # pragma: no cover - interface
        """A stream item the integration found itself rather than through an iterator it wraps (an event parsed
        from bytes the caller reads): read as ``iterate`` reads each item. The first one makes the call a stream
        for the core: at the close ``finish_on_close`` hooks, its accumulator says what was billed and whether the
        vendor's final event was seen, and ``reader.result()`` is not asked."""
        raise NotImplementedError

    def read_done(self, at_end: bool = False) -> None:  # pragma: no cover - interface
        """An integration's read that set ``busy`` (around the caller's own read of the bytes) is over: if the
        response was closed meanwhile, the call is finished now, as that close would have finished it (httpx
        closes a response once its last bytes arrive, before it hands the caller the last chunk). ``at_end``: the
        read reached the end of the body, so a stream whose items were read from it (``observe_item``) ended as
        one read to its end does (``exhausted``; without the vendor's final event, the estimate says so), not as
        one the caller closed early."""
        raise NotImplementedError

    def skip(self, reason: str) -> None:  # pragma: no cover - interface
        """Part of the result was let go unread (an event too large to keep): if the vendor's usage is then
        missing or cut short, the call's estimate gives ``reason`` (``aicost.usage.invalid_reason``)."""
        raise NotImplementedError

    def finish_on_close(self, obj: Any, is_async: bool, reader: "BodyReader | None" = None,
                        undo: tuple[Callable[[], None], ...] = ()) -> None:  # pragma: no cover - interface
        """Finish the call when ``obj`` is closed (``close()``, or ``aclose()`` if ``is_async``), once. ``reader``
        says what was billed if nothing else did (bytes the caller read itself); ``undo`` are the integration's
        other hooks on ``obj``, run at the close (hooks on an object that refer back to it are reference cycles)."""
        raise NotImplementedError

    def fail(self, error: BaseException) -> None:  # pragma: no cover - interface
        """Finish the call with ``error``, raised by the SDK outside the iterator ``iterate`` wraps, or the error
        the SDK's stream would raise at an event in bytes the caller reads itself (a vendor's error event)."""
        raise NotImplementedError

    def result(self, parsed: Any) -> Any:  # pragma: no cover - interface
        """What the caller read (``watch_result``): a stream is watched and returned as the caller gets it;
        anything else is read with ``read_response`` and the call finished."""
        raise NotImplementedError

    def finish_unread(self) -> None:  # pragma: no cover - interface
        """The result could not be read: finish the call without usage (estimated, as any missing usage)."""
        raise NotImplementedError


_ABSENT = object()


def field(obj: Any, name: str) -> Any:
    """``getattr(obj, name, None)`` for a *data field* of an SDK model, without pydantic's slow path for a field
    the model does not declare (it raises and catches an AttributeError inside, ~2.7 us; readers probe several
    such names per call, e.g. ``prompt_tokens`` on a Responses usage). A pydantic model keeps its fields in
    ``__dict__`` and undeclared ones the API sent in ``__pydantic_extra__``. Not for properties
    (``Response.output_text``): those are in neither, so use ``getattr`` for them.
    """
    d = getattr(obj, "__dict__", None)
    if d is not None:
        value = d.get(name, _ABSENT)  # not try/except: a raised KeyError costs more than the lookup
        if value is not _ABSENT:
            return value
        extra = getattr(obj, "__pydantic_extra__", None)
        if isinstance(extra, dict):
            return extra.get(name)
    elif type(obj) is dict:  # a nested object the SDK model does not declare stays plain JSON in its extras
        return obj.get(name)
    return getattr(obj, name, None)


def field_reader(obj: Any) -> Callable[[str], Any]:
    """``name -> field(obj, name)``, for reading several fields of one object: an SDK model with no undeclared
    fields (the common case) is then read straight from its ``__dict__``, not through two attribute lookups a field
    (its ``__dict__`` goes through pydantic's ``__getattr__`` hook, ~0.6 k instructions)."""
    d = getattr(obj, "__dict__", None)
    if d is not None:
        extra = getattr(obj, "__pydantic_extra__", None)
        if type(extra) is dict and not extra:
            return d.get  # an empty dict of extras: ``field`` finds a name in ``__dict__`` or nowhere (None)
    return partial(field, obj)


def part(usage: Usage, obj: Any, name: str) -> Any:
    """The nested object ``name`` of a vendor's usage (``prompt_tokens_details``...), or None when absent. One that
    is there but is not an object (a number, a list) makes the usage invalid (``Usage.invalid``)."""
    return nested(usage, field(obj, name), name)


def nested(usage: Usage, value: Any, name: str) -> Any:
    """:func:`part` for a value already read: ``value`` if it is an object, else None (and ``usage`` invalid if it
    was there)."""
    if value is not None and not is_object(value):
        if usage.invalid is None:
            usage.invalid = f"{name} is not an object"
        return None
    return value


def string(value: Any) -> str | None:
    """A vendor's text field (a model name, an id, a tier, a finish reason) if it is text, else None: SDK models
    are built without validation, so ``"model": 42`` arrives as 42, and must not reach code that expects text."""
    return value if isinstance(value, str) and value else None


def request_tier(value: Any) -> str | None:
    """The service tier a request asks for, as text: an enum by its value (a plain ``Enum`` too, as pricing reads
    it: ``names.tier_text``), else :func:`string` (anything but text is None here)."""
    return string(tier_text(value))


def token_count(value: Any) -> int | None:
    """An output cap the application sent, as the count it means: an int, or a float with a whole value (JSON has
    one number type: ``500.0`` is 500 to every vendor, and is what a number read from YAML or arithmetic gives).
    Not a bool, a fraction, NaN or infinity: those are no count, and are not reinterpreted as one."""
    if type(value) is int:
        return value
    return int(value) if isinstance(value, float) and value.is_integer() else None


# The "argument not given" sentinels of the Stainless-generated vendor SDKs (openai, anthropic, google-genai's
# interactions client: ``<sdk>._types.NotGiven`` / ``Omit``, falsy and stateless).
_SENTINEL_NAMES = frozenset({"NotGiven", "Omit"})


def sdk_sentinel(value: Any) -> bool:
    """An SDK's "argument not given" sentinel (``NOT_GIVEN``, ``omit``): its class says all there is.

    Recognised by the name the SDKs give it and by behaving as one (falsy, holding nothing of its own), not by
    an empty ``__dict__`` alone: a binary file, a ``BytesIO`` or a ``functools.partial`` keep their state in C,
    out of sight of ``__dict__``, and two different audio files would share a key and one's answer.
    """
    tp = type(value)
    if tp.__name__ not in _SENTINEL_NAMES or tp.__module__ == "builtins":
        return False
    try:
        if bool(value):
            return False
    except Exception:
        return False
    return _holds_nothing(value)


def _holds_nothing(value: Any) -> bool:
    """No data attributes and no slots in any class of the instance (only the sentinel's methods)."""
    state = getattr(value, "__dict__", None)
    if not isinstance(state, dict) or any(not (k.startswith("__") and k.endswith("__")) for k in state):
        return False
    return not any(getattr(cls, "__slots__", ()) for cls in type(value).__mro__[:-1])


def output_cap_of(value: Any) -> int | None:
    """The output cap a request sends as ``value``, if it is one: a positive :func:`token_count`, else None (not
    sent, or sent as no cap: :func:`cap_not_read` says why)."""
    count = token_count(value)
    return count if count is not None and count > 0 else None


def is_sent(value: Any) -> bool:
    """Whether an argument holding ``value`` sends something: not None, nor an SDK's "not given" default
    (:func:`sdk_sentinel`), which a wrapper may pass on explicitly and which sends nothing."""
    return value is not None and not sdk_sentinel(value)


def cap_not_read(param: str, value: Any) -> str | None:
    """Why ``value``, sent as the output cap ``param``, is not read as one (None: it is a cap,
    :func:`output_cap_of`, or is not sent). Zero or less is no cap either: the vendor refuses it or reads it its
    own way (Gemini may take 0 as unset), so a policy must not overwrite it into one the vendor accepts. Names the
    parameter and the value's type, never the value."""
    return read_cap(param, value)[1]


def read_cap(param: str, value: Any) -> tuple[int | None, str | None]:
    """``value``, sent as the output cap ``param``, read once for both questions ``set_output_cap`` asks: (the cap,
    None), (None, why it is no cap: :func:`cap_not_read`) or (None, None) when it is not sent."""
    count = output_cap_of(value)
    if count is not None:
        return count, None
    if not is_sent(value):
        return None, None
    kind = type(value).__name__
    article = "an" if kind[0] in "aeiouAEIOU" else "a"
    return None, f"{param} is sent as {article} {kind} that is not a positive whole number of tokens"


def cap_to_lower(param: str, value: Any, cap: int) -> bool:
    """Whether a policy's ``cap`` is to be written where a request sends its one output cap ``param`` as ``value``:
    it sends none, or one above ``cap``; never over a cap that is no positive count (:func:`cap_not_read`)."""
    current, unread = read_cap(param, value)
    return unread is None and (current is None or current > cap)


def request_count(value: Any) -> int | None:
    """A count the application passed (``max_tokens``), if it is one a span can carry (OTLP integers are int64)."""
    return value if type(value) is int and 0 <= value <= 2**53 else None

