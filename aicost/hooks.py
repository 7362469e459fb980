"""The seams through which budgets, attribution rollups and the cache see every billable call.

The instrumentation core knows nothing about budgets or caches. It calls, for every billable vendor call:

1. ``before_call(info)`` on each registered :class:`CallInterceptor`, *before* anything is sent. An interceptor
   may raise to refuse the call (the exception reaches the application: that is the point of a budget), may
   change the request through ``info.shape`` (downgrade the model, cap the output: the same for every vendor),
   and may return a ticket.
2. ``ticket.after_call(result)`` once the call is over: response read, stream exhausted / closed / failed,
   the vendor raised, or it was never sent (refused by a later interceptor; a stream manager dropped without
   being entered, ``result.error_type == "NeverSent"``, $0). ``result.cost`` is what the vendor bills, or
   ``None`` when nothing is billable.
3. Every listener registered with :func:`add_listener`, and every :class:`CallCollector` that was active in
   the context where the call *started* (so a stream that is consumed later still counts for the scope that
   started it).

Any exception from an interceptor's ticket, a listener or a collector other than the refusal in step 1 is
logged once and swallowed: a bug in a hook must not break the host application.

Things that are not vendor calls reach :func:`add_event_listener` listeners as small events: a cache hit
(:class:`CacheHit`, a call that was *not* made, with what it saved) and a finished unit of work
(:class:`UnitFinished`, with its outcome). The spend ledger reads all of these; nothing in the core knows it.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from . import _fork
from .pricing.money import sum_usd
from .usage import Usage
from .vendor import RequestShape

if TYPE_CHECKING:  # pragma: no cover
    from .pricing import Cost


_NO_ATTRIBUTION: Mapping[str, str] = MappingProxyType({})


@dataclass(slots=True)
class CallInfo:
    """A billable call about to be made. ``kwargs`` is the live keyword-argument dict of the SDK call."""

    provider: str  # gen_ai.provider.name, e.g. "openai", "anthropic", "azure.ai.openai", "aws.bedrock"
    operation: str  # gen_ai.operation.name: "chat", "text_completion", "embeddings", ...
    endpoint: str  # aicost's endpoint key, e.g. "openai.chat.completions.create"
    request_model: str | None
    kwargs: dict[str, Any]
    stream: bool
    is_async: bool
    # Attributes an interceptor wants on the call's span (e.g. aicost.budget.downgraded_from).
    span_attributes: dict[str, Any] = field(default_factory=dict)
    # server.address / server.port of the client's base URL (a self-hosted pool is recognised by them).
    server_address: str | None = None
    server_port: int | None = None
    # How ``kwargs`` says its model, output cap and input, whatever the vendor (``aicost.vendor.RequestShape``):
    # an interceptor reads and changes the request through it, never through argument names. A required keyword:
    # the default shape reads nothing, so a budget would count 0 input tokens and miss the request's output cap.
    shape: RequestShape = field(kw_only=True)
    # The service tier the request asks for (read by the integration: a budget reserves at that tier's price).
    service_tier: str | None = None
    # Set by an interceptor when the call is billed by where it went, not by its model's name (a self-hosted
    # pool): the call is priced only by ``aicost.pricing.set_scoped_prices(price_scope, ...)``, else unknown.
    price_scope: str | None = None
    # The call continues work an earlier call started (``Endpoint.resumes``: a background response's stream): it
    # asks for nothing new, so a budget holds nothing for it and charges what it cost.
    resumes: bool = False


@dataclass(slots=True)
class CallResult:
    info: CallInfo
    usage: Usage | None
    cost: "Cost | None"
    response_model: str | None
    error_type: str | None
    duration_s: float | None  # None for work aicost did not see run (a batch result read later)
    # The aicost span of the call (an OpenTelemetry Span; non-recording when no SDK is configured).
    span: Any = None
    # The attribution in force when the call started (aicost.team / .feature / .user / .customer / .tag.<name>).
    attribution: Mapping[str, str] = field(default_factory=lambda: _NO_ATTRIBUTION)
    # The ``aicost.feature`` unit of work the call started in (its run id), if any.
    run_id: str | None = None
    # When the call started (time.time_ns()); 0 when unknown.
    started_ns: int = 0
    # The CallRefused a budget or policy raised before the call was sent (then usage and cost are None).
    refusal: BaseException | None = None
    # The identity of the billed work when it can be observed more than once (a batch result read again, here or in
    # another process): the ledger keys its row by it instead of the span id, so it is counted once.
    record_id: str | None = None
    # Why the cost is unknown, as the span's ``aicost.price.unknown_reason`` says it (the same text, made once):
    # None when the cost is known, for a refused call, and for one whose cost is not recorded yet (deferred).
    unknown_reason: str | None = None

    @property
    def cost_usd(self) -> Decimal | None:
        return None if self.cost is None or not self.cost.known else self.cost.total


class CallTicket(Protocol):
    """What ``before_call`` returns to hear how the call ended: ``after_call`` runs once the call is over, however
    it ended, never sent included, so it is where a ticket gives back whatever it holds (a call still open when the
    interpreter exits may never end: hold nothing that outlives the process without a lease)."""

    def after_call(self, result: CallResult) -> None: ...


class CallInterceptor(Protocol):
    """``before_call`` runs before each billable call and may refuse it. An interceptor may also have
    ``before_unguarded_call(info)``, asked instead for work the vendor began on its own (a Realtime response):
    it must not refuse, and its ticket settles the actual cost (``BudgetGuard`` counts that spend so).

    An optional ``interceptor_phase`` (:data:`PHASE_PRICING`, :data:`PHASE_DEFAULT`, :data:`PHASE_GUARD`) says
    when it runs among the others, whatever order they were added in."""

    def before_call(self, info: CallInfo) -> CallTicket | None: ...


# Interceptors run by phase, then in the order they were added. One interceptor may depend on what another did
# to the call: the budget guard reserves at the call's price, so whatever decides how the call is priced must run
# before it, however the application happened to order its configure_* calls (budgets configured before pools
# priced a pool's calls from the catalog instead of the pool's rate). Each says its phase; no one orders by hand.
PHASE_PRICING = 0  # says how the call is priced (sets ``CallInfo.price_scope``), refuses nothing: a pool's meter
PHASE_DEFAULT = 1  # an interceptor that declares no phase: it still sees the price scope, and the guard sees its
#                    changes to the request (a routed model) and never holds a reservation for a call it refuses
PHASE_GUARD = 2  # decides by the call's final request and price, and may refuse it: the budget guard


def interceptor_phase(interceptor: Any) -> int:
    """The phase ``interceptor`` declares (``interceptor_phase``), else :data:`PHASE_DEFAULT`."""
    phase = getattr(interceptor, "interceptor_phase", PHASE_DEFAULT)
    return phase if isinstance(phase, int) and not isinstance(phase, bool) else PHASE_DEFAULT


class CallCollector:
    """Accumulates the calls started inside a scope. Used by ``aicost.feature`` rollups and the cache."""

    __slots__ = ("results",)
    # One lock for every collector (held for one append): a collector is made per request (every feature's unit
    # of work, every cache miss), so a lock per instance would cost each one the fork registration.
    _lock = _fork.lock()

    def __init__(self) -> None:
        self.results: list[CallResult] = []

    def add(self, result: CallResult) -> None:
        with self._lock:
            self.results.append(result)

    @property
    def calls(self) -> int:
        return len(self.results)

    @property
    def cost_usd(self) -> Decimal:
        """Sum of known costs (exact, canonical). Unknown-price calls are counted in ``unknown_cost_calls``."""
        return sum_usd(c for c in (r.cost_usd for r in self.results) if c is not None)

    @property
    def unknown_cost_calls(self) -> int:
        return sum(1 for r in self.results if r.cost is not None and not r.cost.known)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for r in self.results:
            if r.usage is not None:
                total = total + r.usage
        return total


@dataclass(slots=True)
class CacheHit:
    """A cached answer was served: the vendor call it stands for was not made."""

    name: str  # the cached function
    saved_usd: Decimal | None  # what producing the answer cost (None when no priced call was observed)
    attribution: Mapping[str, str]  # in force at the lookup
    run_id: str | None  # the unit of work the lookup ran in
    span: Any  # the ``aicost.cache <name>`` span
    time_ns: int
    tier: str | None = None  # exact / semantic


@dataclass(slots=True)
class UnitFinished:
    """An ``aicost.feature`` unit of work ended with ``outcome`` (succeeded, failed, or the app's own label)."""

    name: str
    run_id: str
    outcome: str
    attribution: Mapping[str, str]
    calls: int
    cost_usd: Decimal  # known cost of the calls inside it
    span: Any
    time_ns: int
    duration_s: float | None = None


_interceptors: tuple[CallInterceptor, ...] = ()
_event_listeners: tuple[Callable[[Any], None], ...] = ()
_listeners: tuple[Callable[[CallResult], None], ...] = ()
_collectors: contextvars.ContextVar[tuple[CallCollector, ...]] = contextvars.ContextVar(
    "aicost_collectors", default=()
)
_registry_lock = _fork.lock()


def add_interceptor(interceptor: CallInterceptor) -> None:
    """Register ``interceptor``: it runs in its phase (:func:`interceptor_phase`), after those of that phase
    added before it."""
    global _interceptors
    with _registry_lock:
        if interceptor not in _interceptors:
            _interceptors = tuple(sorted((*_interceptors, interceptor), key=interceptor_phase))  # stable


def remove_interceptor(interceptor: CallInterceptor) -> None:
    global _interceptors
    with _registry_lock:
        _interceptors = tuple(i for i in _interceptors if i is not interceptor)


def add_listener(listener: Callable[[CallResult], None]) -> None:
    global _listeners
    with _registry_lock:
        if listener not in _listeners:
            _listeners = (*_listeners, listener)


def remove_listener(listener: Callable[[CallResult], None]) -> None:
    global _listeners
    with _registry_lock:
        _listeners = tuple(x for x in _listeners if x is not listener)


def add_event_listener(listener: Callable[[Any], None]) -> None:
    """``listener(event)`` for every :class:`CacheHit` and :class:`UnitFinished` (more event types may come)."""
    global _event_listeners
    with _registry_lock:
        if listener not in _event_listeners:
            _event_listeners = (*_event_listeners, listener)


def remove_event_listener(listener: Callable[[Any], None]) -> None:
    global _event_listeners
    with _registry_lock:
        _event_listeners = tuple(x for x in _event_listeners if x is not listener)


def has_event_listeners() -> bool:
    """Whether :func:`emit` would reach anyone (so the emitter can skip building the event)."""
    return bool(_event_listeners)


def emit(event: Any) -> None:
    """Hand ``event`` to every event listener. Never raises: a failing listener is logged once."""
    for listener in _event_listeners:
        try:
            listener(event)
        except Exception:
            from ._log import error_once

            error_once(f"event-listener:{listener!r}", "aicost: an event listener failed")


def interceptors() -> tuple[CallInterceptor, ...]:
    return _interceptors


def listeners() -> tuple[Callable[[CallResult], None], ...]:
    return _listeners


def active_collectors() -> tuple[CallCollector, ...]:
    return _collectors.get()


def start_collecting(collector: CallCollector) -> contextvars.Token:
    """Calls started in this context from now on report to ``collector`` too, until :func:`stop_collecting`
    with the token returned. (:class:`collect_calls` is the context manager; a
    ``feature`` generator's unit, entered at every item, calls these two directly.)"""
    return _collectors.set((*_collectors.get(), collector))


def stop_collecting(token: contextvars.Token, collector: CallCollector) -> None:
    try:
        _collectors.reset(token)
    except ValueError:  # stopped in another context (e.g. a generator finalised elsewhere)
        current = _collectors.get()
        _collectors.set(tuple(c for c in current if c is not collector))


class collect_calls:
    """Context manager: ``with collect_calls() as c: ...`` then ``c.cost_usd``, ``c.calls``, ``c.usage``.

    Works across ``await`` and in generators, because it is a ``contextvars`` value; threads started inside
    see it only if they run in a copy of the context (see ``aicost.attribution`` for the helper).
    """

    __slots__ = ("collector", "_token")

    def __init__(self, collector: CallCollector | None = None) -> None:
        self.collector = collector or CallCollector()
        self._token: contextvars.Token | None = None

    def __enter__(self) -> CallCollector:
        self._token = start_collecting(self.collector)
        return self.collector

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            stop_collecting(self._token, self.collector)
            self._token = None
