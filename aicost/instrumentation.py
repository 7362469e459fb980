"""The life of one billable call: interceptors, span, vendor call, usage, cost, hooks. Written once, for all vendors.

Rules this module keeps, whatever the vendor:

* The application gets exactly what the SDK returns (same object, same type), and the same exceptions.
  Streams are watched item by item as the caller reads them (wrapped in place where the SDK allows it: see
  ``Integration.wrap_stream``), so no chunk is delayed or buffered.
* Only :class:`aicost.errors.CallRefused` raised by an interceptor reaches the application. Any other error
  inside aicost is logged once and swallowed.
* A call is finished exactly once: response read; stream exhausted, closed, broken out of, failed or garbage
  collected; vendor error. Finishing records usage and cost on the span, metrics, and the hooks.
"""

from __future__ import annotations

import contextvars
import difflib
import inspect
import os
import sys
import time
import types
from functools import partial
from typing import Any, Callable, Iterable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace

from . import _fork, _gc
from . import _import_hooks as import_hooks
from . import attribution, hooks, metrics, pricing
from . import semconv as s
from . import telemetry
from ._log import error_once, warn_once
from ._time import from_ns
from .errors import CallRefused, ConfigurationError, NeverSent
from .integrations.identity import client_identity
from .usage import Usage
from .vendor import (BodyReader, CompletedWork, Endpoint, EventStep, Integration, Observed, ResponseMeta, Router,
                     StreamAccumulator, request_count)

_perf = time.perf_counter
_time_ns = time.time_ns

# Set while a patched method runs, so a patched method that calls another patched one (a helper built on
# ``create``) is recorded once, by the outermost.
_active: contextvars.ContextVar[bool] = contextvars.ContextVar("aicost_active", default=False)


class _Config:
    capture_content = False
    # "auto": ask OpenAI / Azure OpenAI for the usage chunk of chat and legacy completion streams (and hide that
    # extra chunk from the caller); other OpenAI-compatible hosts get an estimate instead, since some reject
    # ``stream_options``. "always" / "never" force it.
    stream_usage = "auto"


config = _Config()
_lock = _fork.rlock()  # serialises instrument() / uninstrument()
# Guards what the patching changes; taken by import hooks (inside the application's import statement), so never
# held while importing or waiting for anything else.
_patch_lock = _fork.lock()
_generation = 0  # one per instrument(): a hook from an earlier one, running late, patches nothing
_HOOKS = object()  # the token of aicost's post-import hooks
_patched: list[tuple[type, str, Any]] = []  # (class, attribute, original) to restore
_loaded: list[Integration] = []  # the integrations that patched, each told by uninstrument() to undo its own state
_instrumented = False


# --------------------------------------------------------------------------------------------- public API
def instrument(
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    capture_content: bool | None = None,
    stream_usage: str | None = None,
    price_file: str | os.PathLike[str] | None = None,
    ledger: str | os.PathLike[str] | bool | None = None,
) -> None:
    """Patch every vendor SDK aicost has an integration for (``aicost.integrations``) so that every billable call
    becomes a costed span. No SDK is imported here: one the application has imported already is patched now, any
    other when the application imports it (a post-import hook, removed by :func:`uninstrument`).

    Idempotent, and each call starts from its own arguments: an argument left out takes its default again
    (a second call without ``stream_usage`` is back to "auto", one without ``price_file`` unloads the file an
    earlier call loaded). ``tracer_provider`` / ``meter_provider`` default to the global OpenTelemetry providers.
    ``capture_content`` (default off, or the standard ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``)
    adds prompt and completion text to spans. ``stream_usage`` is "auto" (default), "always" or "never": see the
    README on streams. ``price_file`` (TOML or JSON) adds your own prices and discounts (loading the same file
    again replaces it, it does not contradict itself). ``ledger`` (a URL: ``sqlite:///aicost-ledger.db``,
    ``postgresql://...``; default ``$AICOST_LEDGER``, else off; ``False`` turns it off) records every call in a
    spend ledger for ``aicost report`` and exports (docs/ledger.md).

    Every argument is checked before anything is patched or changed: a bad one raises
    :class:`aicost.errors.ConfigurationError` naming it and what it accepts; a malformed price file, or one that
    contradicts prices loaded already, raises ``PriceFileError`` naming the line and field.
    """
    global _instrumented, _price_file, _generation
    _check_arguments(tracer_provider, meter_provider, capture_content, stream_usage)
    from .pricing.engine import replace_overrides

    loaded = None
    if price_file is not None:
        from .pricing.overrides import load_file

        loaded = load_file(price_file, sections=PRICE_FILE_SECTIONS)  # validated, not yet installed
        with _lock:  # a file that contradicts the prices loaded already raises now, before anything is configured
            replace_overrides(_price_file, loaded, check_only=True)
    _configure_ledger(ledger)  # a malformed URL raises ConfigurationError
    pools = loaded.sections.get("pools") if loaded is not None else None
    if pools:  # self-hosted GPU pools: a feature above the core, imported when declared
        from .pools import configure_pools

        configure_pools(tuple(pools.values()), source=os.fspath(price_file))  # read and checked by load_file
    elif "aicost.pools" in sys.modules:  # pools an earlier call's price file declared go with that file
        sys.modules["aicost.pools"].forget_price_file()
    if capture_content is None:
        env = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
        capture_content = env.strip().lower() in ("1", "true", "yes")
    _gc.install()
    with _lock:
        if loaded is not None or _price_file is not None:
            replace_overrides(_price_file, loaded)  # atomic: a contradiction raises and changes nothing
            _price_file = loaded
        config.capture_content = capture_content
        config.stream_usage = stream_usage or "auto"
        telemetry.configure(tracer_provider, capture_content)
        _configure_metrics(meter_provider)
        if _instrumented:
            return
        with _patch_lock:
            _generation += 1
            _instrumented = True
        for cls in _integration_classes():
            watch_integration(cls)


# instrument()'s arguments by name: its signature is the one list of them.
ARGUMENTS = frozenset(inspect.signature(instrument).parameters)


def _read_pools(table: Any) -> tuple[dict[str, Any], list[Exception]]:
    from .pools.config import check_pools  # a feature, imported only when a price file declares pools

    pools, problems = check_pools(table)
    return {pool.name: pool for pool in pools}, problems  # by name: a second file's pool replaces its namesake


# Features' own sections of a price file and their readers: what instrument(price_file=...), ``aicost prices`` and
# ``aicost.load_price_file`` all run, so they accept the same files and list the same problems in the same words.
PRICE_FILE_SECTIONS = {"pools": _read_pools}


def load_price_file(path: str | os.PathLike[str]) -> Any:
    """``aicost.load_price_file``: validate a TOML/JSON price file and add its prices and discounts, reading the
    features' own sections (``[pools.NAME]``) as ``instrument(price_file=...)`` does (raises PriceFileError,
    nothing changes, if invalid). What they read is in the returned ``Overrides.sections``; pools are put to work
    by ``instrument(price_file=...)`` or ``aicost.configure_pools``, not here."""
    from .pricing.engine import load_price_file as load

    return load(path, sections=PRICE_FILE_SECTIONS)


_STREAM_USAGE = ("auto", "always", "never")
_price_file: Any = None  # the overrides instrument(price_file=...) loaded, replaced or removed by the next call


def _check_arguments(tracer_provider: Any, meter_provider: Any, capture_content: Any, stream_usage: Any) -> None:
    def refuse(name: str, value: Any, accepted: str) -> None:
        raise ConfigurationError(f"instrument({name}={value!r}): {name} must be {accepted}")

    if capture_content is not None and not isinstance(capture_content, bool):
        refuse("capture_content", capture_content, "True, False or None (None: the environment variable "
                                                   "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT decides)")
    if stream_usage is not None and (not isinstance(stream_usage, str) or stream_usage not in _STREAM_USAGE):
        refuse("stream_usage", stream_usage, "'auto', 'always', 'never' or None ('auto')")
    if tracer_provider is not None and not callable(getattr(tracer_provider, "get_tracer", None)):
        refuse("tracer_provider", tracer_provider, "an OpenTelemetry TracerProvider (with get_tracer()) or None "
                                                   "(the global provider)")
    if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
        refuse("meter_provider", meter_provider, "an OpenTelemetry MeterProvider (with get_meter()) or None "
                                                 "(the global provider)")


# How alike (difflib's ratio) a keyword instrument() does not take must be to one it does to be a misspelling of it:
# 'ledgr', 'price_fle', 'capture_contents', 'tracer_provdier' are; 'logger_provider', 'ledger_url' are not.
_NEAR_MISS = 0.8


def misspelt_arguments(names: Iterable[str], where: str, also_accepted: str = "") -> list[str]:
    """Check keywords given for :func:`instrument` by something that takes keywords of its own as well (the
    OpenTelemetry instrumentor): one that is a near miss of an argument of instrument()'s (``ledgr=``) raises
    :class:`ConfigurationError` naming it, the argument meant and every one accepted (``also_accepted`` says the
    caller's own); the others that are not instrument()'s are returned, for the caller to leave to their owner."""
    unknown = [name for name in names if name not in ARGUMENTS]
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(ARGUMENTS), n=1, cutoff=_NEAR_MISS)
        if close:
            raise ConfigurationError(f"{where}({name}=...): unknown argument {name!r}, did you mean {close[0]!r}? "
                                     f"Accepted: aicost.instrument()'s {', '.join(sorted(ARGUMENTS))}"
                                     f"{'; ' + also_accepted if also_accepted else ''}")
    return unknown


def _configure_ledger(ledger: str | os.PathLike[str] | bool | None) -> None:
    """The spend ledger is a feature above the core: imported only when asked for, fed by the hooks."""
    setting = "instrument(ledger=...)"
    if ledger is None:  # left out: the default again, like every argument (the environment, else off)
        ledger = os.environ.get("AICOST_LEDGER", "").strip() or False
        setting = "AICOST_LEDGER"
    if ledger is True or not isinstance(ledger, (str, os.PathLike, bool)):
        raise ConfigurationError(f"instrument(ledger=...): got {ledger!r}; give a ledger URL (sqlite:///path.db or "
                                 "postgresql://...), or False to turn the ledger off")
    if ledger is False:
        if "aicost.ledger.writer" in sys.modules:
            sys.modules["aicost.ledger.writer"].disable()
        return
    from .ledger import writer

    writer.configure(os.fspath(ledger), setting=setting)


def uninstrument() -> None:
    """Restore every patched method, and let go of the providers and content capture ``instrument()`` was given
    (aicost's own spans and metrics, units of work and cache lookups, go to the global providers, as before
    ``instrument()``). Calls already in flight finish normally: their spans end where they started, and their
    metric points, recorded when they finish, go to the global provider (as after a second ``instrument()`` with
    another ``meter_provider``, they go to that one).

    The SDKs keep bound methods too: ``client.chat.completions.with_raw_response`` is a cached property whose
    object holds the ``create`` it saw when first touched, which is aicost's wrapper if that was while
    instrumented. Every wrapper therefore checks, on each call, that aicost is still instrumented, and steps
    aside (no span, no interceptor) when it is not.
    """
    global _instrumented, _price_file, _generation
    _gc.drain()  # finishes deferred are recorded before the pools and the ledger close
    if "aicost.pools" in sys.modules:  # first: its open intervals, closed now, go to the ledger before it closes
        try:
            sys.modules["aicost.pools"].disable()
        except Exception:
            error_once("pools:disable", "aicost: could not stop the self-hosted pools")
    if "aicost.ledger.writer" in sys.modules:
        try:
            sys.modules["aicost.ledger.writer"].disable()
        except Exception:
            error_once("ledger:disable", "aicost: could not close the spend ledger")
    with _lock:
        if _price_file is not None:
            try:
                from .pricing.engine import replace_overrides

                replace_overrides(_price_file, None)
            except Exception:
                error_once("unload:price_file", "aicost: could not unload the price file instrument() loaded")
            _price_file = None
        import_hooks.cancel(_HOOKS)
        with _patch_lock:
            _generation += 1
            _instrumented = False
            while _patched:
                cls, attr, original = _patched.pop()
                try:
                    setattr(cls, attr, original)
                except Exception:
                    error_once(f"unpatch:{cls.__qualname__}.{attr}", "aicost: could not restore %s.%s", cls, attr)
            loaded = _loaded[:]
            _loaded.clear()
        # The providers and content capture instrument() was given are let go of: units of work and cache lookups
        # trace and count through the global providers again, as before instrument().
        config.capture_content = False
        telemetry.configure()
        _configure_metrics(None)
        for integration in loaded:
            try:
                integration.uninstrument()
            except Exception:
                error_once(f"uninstrument:{type(integration).__qualname__}", "aicost: could not undo %s's changes",
                           type(integration).__qualname__)


def is_instrumented() -> bool:
    return _instrumented


# --------------------------------------------------------------------------------------------- patching
def _integration_classes() -> list[type]:
    from .integrations import classes

    return classes()


def watch_integration(cls: type) -> None:
    """Patch ``cls``'s SDK when it is imported (now, if it is already). Does nothing when not instrumented."""
    with _patch_lock:
        if not _instrumented:
            return
        generation = _generation
    import_hooks.when_imported(cls.sdk, lambda module: _load(cls, generation), _HOOKS)


def _load(cls: type, generation: int) -> None:
    """The SDK of ``cls`` is imported: make the integration, import the modules its table names, then patch them,
    unless ``uninstrument()`` came in between. Runs inside the application's import of the SDK, or in
    ``instrument()`` for an SDK imported before it."""
    try:
        integration = cls()
    except Exception:
        error_once(f"load:{cls.__qualname__}", "aicost: the %s integration could not be loaded", cls.name or cls)
        return
    targets = _patch_targets(integration)
    with _patch_lock:
        if generation != _generation:
            return
        for owner, attr, original, wrapper in targets:
            if owner.__dict__.get(attr) is original:  # not patched meanwhile
                setattr(owner, attr, wrapper)
                _patched.append((owner, attr, original))
        _loaded.append(integration)


def _sdk_module(name: str) -> Any:
    """The SDK module to patch, or None: missing in this SDK version (nothing to patch), or failing to import (a
    broken optional dependency: its calls are not recorded, said once, and the rest is patched)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        return None
    except Exception:
        error_once(f"import:{name}", "aicost: could not import %s; its calls are not recorded", name)
        return None


def _patch_targets(integration: Integration) -> list[tuple[type, str, Any, Any]]:
    """(class, attribute, original, wrapper) for every method of the integration's table and routers."""
    import wrapt

    targets: list[tuple[type, str, Any, Any]] = []
    for endpoint in integration.endpoints:
        if not endpoint.classes:  # reached through a router only
            continue
        module = _sdk_module(endpoint.module)
        if module is None:
            continue
        for index, class_name in enumerate(endpoint.classes):
            cls = getattr(module, class_name, None) if class_name else None
            original = None if cls is None else cls.__dict__.get(endpoint.method)
            if original is None or isinstance(original, wrapt.FunctionWrapper):
                continue
            # SDK decorators turn some async methods into plain functions returning coroutines, and ``stream()``
            # is a plain function on both twins: the table says which class is the async one.
            is_async = index == 1 or inspect.iscoroutinefunction(original)
            if endpoint.kind == "stream_manager":
                wrapper = _stream_manager_wrapper(integration, endpoint, is_async)
            elif endpoint.kind == "observe":
                wrapper = _observe_wrapper(integration, endpoint, is_async)
            elif endpoint.kind == "events":
                wrapper = _event_wrapper(integration, endpoint, is_async)
            else:
                wrapper = _async_wrapper(integration, endpoint) if is_async else _sync_wrapper(integration, endpoint)
            targets.append((cls, endpoint.method, original, wrapt.FunctionWrapper(original, wrapper)))
    for router in integration.routers:
        module = _sdk_module(router.module)
        cls = None if module is None else getattr(module, router.cls, None)
        original = None if cls is None else cls.__dict__.get(router.method)
        if original is None or isinstance(original, wrapt.FunctionWrapper):
            continue
        targets.append((cls, router.method, original,
                        wrapt.FunctionWrapper(original, _router_wrapper(integration, router))))
    return targets


def _configure_metrics(meter_provider: Any) -> None:
    try:
        metrics.configure(meter_provider)
    except Exception:
        error_once("metrics:configure", "aicost: metrics could not be configured")


# --------------------------------------------------------------------------------------------- one call
class _Call:
    """Everything aicost tracks about one call between its start and its single finish."""

    __slots__ = (
        "integration", "endpoint", "info", "request", "attribution", "collectors", "tickets", "span",
        "native", "start", "start_ns", "first_chunk_at", "finished", "chunks", "otel_token", "hide_usage",
        "acc", "busy", "run_id", "span_run_id", "record_id", "gc_watched", "skipped", "closed_in_read", "body_read",
    )

    def __init__(self, integration: Integration, endpoint: Endpoint, resource: Any, kwargs: dict, is_async: bool):
        self.integration = integration
        self.endpoint = endpoint
        request = integration.request_meta(endpoint, resource, kwargs)
        self.request = request
        self.info = hooks.CallInfo(
            provider=integration.provider(resource),
            operation=endpoint.operation,
            endpoint=endpoint.key,
            request_model=request.model,
            kwargs=kwargs,
            stream=request.stream,
            is_async=is_async,
            server_address=request.server_address,
            server_port=request.server_port,
            shape=endpoint.shape,
            service_tier=request.service_tier,
            span_attributes=client_identity(resource),
            resumes=endpoint.resumes,
        )
        self.attribution = _current_attribution()
        self.collectors = hooks.active_collectors()
        # A unit of work always collects its calls: without a collector there is no run to look up. The run its
        # span names (``aicost.run.id``) is the one a ledger fed from exported spans can get (``span_run_id``).
        unit = _current_unit() if self.collectors else None
        self.run_id, self.span_run_id = (None, None) if unit is None else (unit.run_id, unit.span_run_id)
        self.tickets: list[Any] = []
        self.span: Any = None
        self.native: Any = None  # a vendor's NativeSpanCapture when the SDK traces the call itself
        self.start = _perf()
        self.start_ns = _time_ns()
        self.first_chunk_at: float | None = None
        self.finished = False
        self.chunks = 0
        self.otel_token: Any = None
        self.hide_usage = False  # aicost asked for a usage-only chunk the caller must not see
        self.acc: StreamAccumulator | None = None  # set once a stream is being watched
        self.gc_watched = False  # a collection could finish it (_reachable_by_gc)
        # aicost is inside a read (the caller's parse(), or pulling the next stream item): the SDK closes the
        # response there itself, and the reader, not the close hook, knows how the call ended.
        self.busy = False
        self.record_id: str | None = None  # set for completed work that may be read again (CompletedWork.key)
        self.skipped: str | None = None  # why part of the result was let go unread (CallWatch.skip)
        self.closed_in_read: tuple[BodyReader | None] | None = None  # a close seen while busy, for ``read_done``
        self.body_read = False  # the caller read the response's bytes to their end (``read_done(at_end=True)``)

    # -- before the call ---------------------------------------------------------------------------------
    def run_interceptors(self) -> None:
        """Budgets and policies. A CallRefused propagates (after it is recorded); anything else is swallowed."""
        interceptors = hooks.interceptors()
        if not interceptors or not self.endpoint.billable:
            return
        shape, kwargs = self.endpoint.shape, self.info.kwargs
        asked_cap = shape.output_cap(kwargs)
        for interceptor in interceptors:
            try:
                ticket = interceptor.before_call(self.info)
            except CallRefused as refusal:
                self.refused(refusal)
                raise
            except Exception:
                error_once(f"interceptor:{type(interceptor).__qualname__}", "aicost: interceptor %r failed", interceptor)
                continue
            if ticket is not None:
                self.tickets.append(ticket)
        # The span says what is sent: an interceptor that changed the request's model (a downgrade) or output cap
        # (a policy's) changed what the vendor receives (the rest of the request facts stand).
        model = shape.model(kwargs)
        if model != self.request.model:
            self.info.request_model = model
            self.request.model = model
        sent_cap = shape.output_cap(kwargs)
        if sent_cap != asked_cap:
            self.request.max_tokens = request_count(sent_cap)

    def count_unguarded(self) -> None:
        """For work the vendor began on its own (a Realtime response): interceptors that can count it without
        holding or refusing anything (``before_unguarded_call``) get a ticket that settles its actual cost."""
        if not self.endpoint.billable:
            return
        for interceptor in hooks.interceptors():
            before = getattr(interceptor, "before_unguarded_call", None)
            if before is None:
                continue
            try:
                ticket = before(self.info)
            except Exception:
                error_once(f"interceptor:{type(interceptor).__qualname__}", "aicost: interceptor %r failed",
                           interceptor)
                continue
            if ticket is not None:
                self.tickets.append(ticket)

    def open_span(self, resource: Any) -> None:
        """Start the aicost span, or prepare to enrich the SDK's own span (Anthropic native tracing). Never fails
        the call: without a span it is still priced, settled with its interceptors and recorded."""
        try:
            self.native = self.integration.native_span_capture(resource)
            if self.native is None:
                attrs = telemetry.start_attributes(self.info.provider, self.endpoint.operation, self.request)
                self.span = telemetry.start_span(self.endpoint.operation, self.request.model, attrs)
                if self.span is not trace.INVALID_SPAN:
                    self.otel_token = otel_context.attach(trace.set_span_in_context(self.span))
        except Exception:
            error_once(f"open:{self.endpoint.key}", "aicost: could not start a span for %s", self.endpoint.key)
            self.native, self.span = None, trace.INVALID_SPAN

    def detach(self) -> None:
        if self.native is not None:
            self.native.release()
        if self.otel_token is not None:
            try:
                otel_context.detach(self.otel_token)
            except Exception:
                pass
            self.otel_token = None

    def _request_attributes(self, attrs: dict[str, Any], tier_keys: tuple[str, str] | None) -> None:
        """Everything about the request and who made it, besides the few attributes set at span start, added to
        ``attrs``. ``tier_keys``: ``Integration.tier_attributes`` of the call's provider."""
        info = self.info
        telemetry.request_attributes(attrs, self.endpoint.key, self.request, tier_keys)
        if self.attribution:
            attrs.update(self.attribution)
        if self.span_run_id is not None:  # the run the call belongs to, for a ledger fed from exported spans
            attrs[s.AICOST_RUN_ID] = self.span_run_id
        if info.span_attributes:
            attrs.update(info.span_attributes)
        if not self.endpoint.billable:
            attrs[s.AICOST_BILLABLE] = False
        if telemetry.state.capture_content:
            telemetry.content_attributes(attrs, info.kwargs, shape=self.endpoint.shape)

    def _start_attributes(self) -> dict[str, Any]:
        """All request-side attributes, for a span created when the call is already over."""
        attrs = telemetry.start_attributes(self.info.provider, self.endpoint.operation, self.request)
        self._request_attributes(attrs, self.integration.tier_attributes(self.info.provider))
        return attrs

    def _resolve_span(self) -> Any:
        """The span that carries this call's cost: ours, the captured SDK span, or one made now."""
        if self.span is not None:
            return self.span
        native = self._native_span()
        if native is not None:
            try:
                native.set_attributes(_not_already_on(native, self._native_request_attributes()))
            except Exception:
                error_once("native:attrs", "aicost: could not enrich the SDK's span")
            self.span = native
            return native
        attrs = self._start_attributes()
        self.span = telemetry.start_span(self.endpoint.operation, self.request.model, attrs, self.start_ns)
        return self.span

    def _native_span(self) -> Any:
        return self.native.span() if self.native is not None else None

    def _native_request_attributes(self) -> dict[str, Any]:
        attrs = self._start_attributes()
        attrs[s.AICOST_SPAN_SOURCE] = self.native.source
        return attrs

    def refused(self, refusal: BaseException) -> None:
        self.finished = True
        try:
            span = self._resolve_span()
            telemetry.set_error(span, type(refusal).__qualname__, str(refusal))
            _end_span(span)
        except Exception:
            error_once("refused:span", "aicost: could not record a refused call on its span")
        try:
            self._dispatch(None, None, type(refusal).__qualname__, ResponseMeta(), refusal=refusal)
        except Exception:
            error_once("refused", "aicost: could not record a refused call")

    # -- after the call ----------------------------------------------------------------------------------
    def finish(self, meta: ResponseMeta | None, error: BaseException | None = None, ended_by: str | None = None) -> None:
        if self.finished:
            return
        if _gc.collecting():  # an abandoned stream reached by the collector, maybe under a lock the finish needs
            _gc.defer(partial(self.finish, meta, error, ended_by))
            return
        self.finished = True
        self.closed_in_read = None  # its reader may refer back to this call: a cycle, until now
        try:
            self._finish(meta, error, ended_by)
        except Exception:
            error_once("finish", "aicost: could not record a call")
        if self.gc_watched:
            _gc.unwatch()
        if _gc.orphaned:  # a forked child's deferred finishes (it has no worker): here, outside any lock
            _gc.drain(0)

    def _finish(self, meta: ResponseMeta | None, error: BaseException | None, ended_by: str | None) -> None:
        """Each step is isolated: whatever fails (a vendor's garbage a reader missed, pricing, a span processor),
        the span is still ended and the call still settled with its interceptors and told to listeners."""
        self.detach()
        duration = _perf() - self.start
        # A span that exists already was started with the call, with only the sampler's attributes on it.
        started_early = self.span is not None
        try:
            native_span = self._native_span()
            if not started_early and native_span is not None:
                # The SDK's own span: request and result attributes go on together, in one pass over them.
                span = self.span = native_span
                attrs = self._native_request_attributes()
            else:
                span = self._resolve_span()
                attrs = {}
        except Exception:
            error_once("span:resolve", "aicost: could not find or start a call's span")
            native_span, span, attrs = None, trace.INVALID_SPAN, {}
        meta = meta or ResponseMeta()
        usage: Usage | None = None
        cost = None
        invalid: str | None = None
        subs: list[tuple[str, str | None, Usage]] = []  # sub-inferences, their models resolved
        if self.endpoint.billable:
            try:
                usage, cost, invalid, subs = self._account(meta, error, ended_by)
            except Exception:
                error_once("account", "aicost: could not read a call's usage or price it; its cost is unknown")
                usage, invalid = None, "aicost could not read the usage"
                try:
                    cost = pricing.unknown_cost(self.info.provider, self.request.model, None, None)
                except Exception:
                    cost = None
        try:
            error_type = self.integration.error_type(error) if error is not None else None
        except Exception:
            error_type = type(error).__qualname__
        try:  # said on the span and to the listeners (the ledger) alike
            unknown_reason = None if cost is not None and cost.known else _unknown_reason(
                cost, meta, usage, self.endpoint.billable)
        except Exception:
            error_once("unknown_reason", "aicost: could not say why a call's cost is unknown")
            unknown_reason = None
        # A span that records nothing (sampled out, or no OpenTelemetry SDK) would drop every attribute: building
        # them is skipped. Usage and cost are still computed, for metrics, budgets and hooks, which run even if
        # the span could not be written or ended.
        try:
            if _records(span):
                native = span is native_span
                tier_keys = self.integration.tier_attributes(self.info.provider)
                if telemetry.state.capture_content:
                    self._output_text(meta)
                telemetry.response_attributes(attrs, meta, tier_keys)
                if started_early:
                    self._request_attributes(attrs, tier_keys)
                if usage is not None:
                    telemetry.usage_attributes(attrs, usage)
                    if subs:
                        attrs.update(telemetry.sub_inference_attributes(subs))
                if invalid is not None:
                    attrs[s.AICOST_USAGE_INVALID_REASON] = invalid
                if cost is not None:
                    telemetry.cost_attributes(attrs, cost)
                elif unknown_reason is not None:
                    # Billed, and not even an unknown cost could be made (pricing.unknown_cost raised: logged
                    # once): the span still says the price is unknown, and why, as the hooks' ledger row does. A
                    # span without aicost.price.known is no call's (a refusal's, a deferred call's): the span
                    # exporter wrote no row for it, its spend forgotten.
                    attrs[s.AICOST_PRICE_KNOWN] = False
                if unknown_reason is not None:
                    attrs[s.AICOST_PRICE_UNKNOWN_REASON] = unknown_reason
                if meta.deferred:
                    attrs[s.AICOST_USAGE_DEFERRED] = True
                ttfc = s.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
                if self.first_chunk_at is not None and not (native and _has(span, ttfc)):
                    # On the SDK's own span the SDK records time to first chunk from its own start: leave it be. It
                    # has none when the caller read the stream's bytes past the SDK's parse().
                    attrs[ttfc] = self.first_chunk_at - self.start
                if self.request.stream or self.chunks:
                    attrs[s.AICOST_STREAM_CHUNKS] = self.chunks
                    if ended_by:
                        attrs[s.AICOST_STREAM_ENDED_BY] = ended_by
                span.set_attributes(_not_already_on(span, attrs) if native else attrs)
                if error is not None:
                    status = getattr(error, "status_code", None)
                    if isinstance(status, int):
                        span.set_attribute(s.HTTP_RESPONSE_STATUS_CODE, status)
                    telemetry.set_error(span, error_type, str(error)[:200] if config.capture_content else None)
        except Exception:
            error_once("span:attributes", "aicost: could not write a call's span")
        _end_span(span)
        if self.endpoint.billable:
            self._dispatch(usage, cost, error_type, meta, duration, unknown_reason=unknown_reason)

    def _account(self, meta: ResponseMeta, error: BaseException | None, ended_by: str | None
                 ) -> tuple[Usage | None, Any, str | None, list[tuple[str, str | None, Usage]]]:
        """-> (usage, cost, why the vendor's usage was not used as exact, sub-inferences).

        Usage that failed validation (``Usage.invalid``) is never priced as exact: the call is estimated from what
        arrived (the request, the output text), or, where aicost never estimates (images, audio: ``unpriced``),
        its cost is unknown. A stream that ended without the vendor's final event is cut short like a closed one.
        """
        usage = meta.usage
        cost = None
        invalid: str | None = None
        subs: list[tuple[str, str | None, Usage]] = []
        if usage is not None and usage.invalid is not None:
            invalid, usage = usage.invalid, None
        incomplete = ended_by == "exhausted" and self.acc is not None and not self.acc.complete
        if usage is None and error is not None and not self.chunks and invalid is None:
            # Failed before any output: $0 only if the vendor provably billed nothing, else read or estimated below.
            usage, invalid = self._failed_before_output(meta, error, ended_by)
        if meta.unpriced and usage is None and (error is None or invalid is not None):
            # Billed by a unit the catalog has no rate for, or usage aicost never estimates that failed validation:
            # the cost is unknown, and tokens the vendor did not report are neither estimated nor written as zero.
            cost = pricing.unknown_cost(self.info.provider, meta.model or self.request.model, None, usage)
        elif usage is None and not meta.deferred and (error is None or self.chunks or invalid is not None):
            # No usable usage (none sent, invalid, or a stream the vendor cut after it had generated): estimate.
            usage = self._estimate(meta)
        elif usage is not None and (ended_by in ("closed", "error") or incomplete):
            # A stream cut short: the vendor's last word on output was a placeholder or a partial count.
            # It still bills what it generated; count what we saw and say the figure is an estimate.
            seen = self._count_output(meta)
            usage.output_tokens = max(usage.output_tokens, seen)
            usage.estimated = True
            if incomplete:
                invalid = "the stream ended without the vendor's final event"
        if usage is not None and cost is None:
            if meta.hosted_tools:  # on the usage priced, the vendor's or the estimate: unknown, naming them
                usage.hosted_tools = tuple(dict.fromkeys(usage.hosted_tools + meta.hosted_tools))
            hints = self.request.price_hints or {}
            if usage.web_search_requests:
                hints = {**hints, **self.integration.price_hints(self.info.kwargs)}
            if meta.price_hints and usage is meta.usage:  # facts about the vendor's usage, not about an estimate
                hints = {**hints, **meta.price_hints}
            # The tier the vendor says it served the call at; the one the request asked for when it says none.
            tier = meta.service_tier or self.request.service_tier
            cost = _price(self.info.provider, meta.model, self.request.model, usage, tier, hints,
                          self.info.price_scope)
            if meta.sub_inferences and cost is not None:
                cost, subs = self._with_sub_inferences(cost, meta)
                invalid = invalid or next((f"{kind}: {sub.invalid}" for kind, _, sub in subs if sub.invalid), None)
        if self.skipped is not None and invalid is None and (usage is None or usage.estimated):
            invalid = self.skipped  # the estimate's cause: part of what the vendor sent was let go unread
        if usage is not None:
            usage.invalid = invalid  # listeners see why, as the span does
        return usage, cost, invalid, subs

    def _failed_before_output(self, meta: ResponseMeta, error: BaseException, ended_by: str | None
                              ) -> tuple[Usage | None, str | None]:
        """-> (usage, why it is not the vendor's) for a call that raised before any output arrived.

        Exactly $0 (``Usage()``) only where the vendor provably billed nothing (``Integration.unbilled``: an HTTP
        error response, a request never sent; :class:`NeverSent`: a request aicost holds, never sent). Where the
        error of the call itself carries what the vendor answered (``Integration.error_meta``: OpenAI's
        ``LengthFinishReasonError``), that is read into ``meta`` and its usage is exact. Otherwise no usage, and a
        reason: estimated (or unknown, for what aicost never estimates) by the caller."""
        integration = self.integration
        answered = None
        try:
            if isinstance(error, NeverSent) or integration.unbilled(error, ended_by is not None):
                return Usage(), None  # the vendor refused it, or never got it: nothing generated, nothing billed
            if ended_by is None:
                answered = integration.error_meta(self.endpoint, error)
        except Exception:
            error_once("error_meta", "aicost: could not read what a failed call returned")
        if answered is not None:
            for name in ResponseMeta.__slots__:
                setattr(meta, name, getattr(answered, name))
            usage = meta.usage
            if usage is not None:
                return (None, usage.invalid) if usage.invalid is not None else (usage, None)
        return None, (f"the call failed ({type(error).__qualname__}) after the request was sent, without the "
                      "vendor's usage: the vendor may have billed it")

    def _with_sub_inferences(self, cost: Any, meta: ResponseMeta) -> tuple[Any, list[tuple[str, str | None, Usage]]]:
        """The cost with the parts the vendor ran and billed at another model's rates, each priced at its own
        model; and those parts, their models named (a hosted tool's usage may leave the model to the request)."""
        subs = list(meta.sub_inferences)
        try:
            named = self.integration.sub_inference_model
            subs = [(kind, model if model is not None else named(kind, self.info.kwargs), usage)
                    for kind, model, usage in subs]
            # A part whose usage failed validation is never priced as exact: pricing makes it unknown, saying so
            # as for a call's own usage (``pricing.price_checked``), which with_sub_inferences carries to the call.
            priced = [(kind, _price(self.info.provider, model, None, usage, meta.service_tier, {}))
                      for kind, model, usage in subs]
        except Exception:
            error_once("pricing:sub", "aicost: pricing failed on a call's sub-inferences")
            # unknown, never silently low, and why, as for a call whose pricing failed (not "no price")
            priced = [("unpriced", _pricing_failed(self.info.provider, None, meta.service_tier, None))]
        return pricing.with_sub_inferences(cost, priced), subs

    def _estimate(self, meta: ResponseMeta) -> Usage:
        """No usable usage from the vendor: count locally and say so (``aicost.usage.estimated``). The hosted tools
        the response shows (``ResponseMeta.hosted_tools``) go on it as on the vendor's usage (``_account``): an
        estimated call that ran one is cost-unknown, naming them, never its estimated tokens alone."""
        from . import tokens

        counted_in = tokens.count_request_input(self.info.kwargs, meta.model or self.request.model, self.info.provider,
                                                self.endpoint.shape)
        return Usage(input_tokens=counted_in.tokens, output_tokens=self._count_output(meta), estimated=True)

    def _count_output(self, meta: ResponseMeta) -> int:
        from . import tokens

        text = self._output_text(meta)
        if not text:
            return 0
        return tokens.count_text(text, meta.model or self.request.model,
                                 self.endpoint.shape.tokenizer_is_exact(self.info.provider)).tokens

    def _output_text(self, meta: ResponseMeta) -> str | None:
        """``meta.output_text``, or, where a stream's accumulator gets it only when asked
        (``StreamAccumulator.output_text``), that text, kept in ``meta``. Called only where the text is needed."""
        if meta.output_text is None and self.acc is not None:
            try:
                meta.output_text = self.acc.output_text()
            except Exception:
                error_once("stream:text", "aicost: could not read a stream's output text")
        return meta.output_text

    def _dispatch(self, usage: Usage | None, cost: Any, error_type: str | None, meta: ResponseMeta,
                  duration: float | None = None, refusal: BaseException | None = None,
                  unknown_reason: str | None = None) -> None:
        result = hooks.CallResult(
            info=self.info,
            usage=usage,
            cost=cost,
            response_model=meta.model,
            error_type=error_type,
            # Completed work read later (a batch result, ``record_id``): how long the vendor took is not known.
            duration_s=None if self.record_id else _perf() - self.start if duration is None else duration,
            span=self.span,
            attribution=self.attribution,
            run_id=self.run_id,
            started_ns=self.start_ns,
            refusal=refusal,
            record_id=self.record_id,
            unknown_reason=unknown_reason,
        )
        # Never raises (logs once instead); the server is passed so the metrics queue holds no span.
        metrics.record_call(result, self.attribution, server=(self.request.server_address, self.request.server_port))
        for ticket in self.tickets:
            try:
                ticket.after_call(result)
            except Exception:
                error_once(f"ticket:{type(ticket).__qualname__}", "aicost: a call ticket failed to settle")
        for listener in hooks.listeners():
            try:
                listener(result)
            except Exception:
                error_once(f"listener:{listener!r}", "aicost: a call listener failed")
        for collector in self.collectors:
            try:
                collector.add(result)
            except Exception:
                error_once("collector", "aicost: a call collector failed")

    # -- what the vendor returned --------------------------------------------------------------------------
    def on_return(self, value: Any) -> Any:
        """Observe the SDK's return value; return it unchanged (streams are wrapped in place)."""
        integration = self.integration
        try:
            if integration.is_stream(value):
                return self.watch_stream(value)
            if not integration.watch_result(value, self):
                self.finish(integration.read_response(self.endpoint, value, config.capture_content))
        except Exception:
            error_once("on_return", "aicost: could not observe a response")
            self.finish(None)
        return value

    def _reachable_by_gc(self) -> None:
        """From now on a garbage collection may finish this call (a stream, a response's close): its finish then
        goes to aicost's worker (``finish``), so collections are watched until it is finished."""
        if not self.gc_watched:
            self.gc_watched = True
            _gc.watch()

    def watch_stream(self, stream: Any) -> Any:
        """Watch a stream's items as the caller reads them; returns what the caller gets (see
        ``Integration.wrap_stream``)."""
        self._accumulate()
        self._reachable_by_gc()
        watched = self.integration.wrap_stream(stream, self)
        native = self._native_span()
        if native is not None:
            native.when_sdk_ends(self._sdk_ended_stream)
        return watched

    def _accumulate(self) -> StreamAccumulator:
        """Start reading the call's result as stream items: its accumulator. Text is collected when no usage is
        expected (for the estimate) or content capture is on; an accumulator for which that costs per item keeps
        what it needs and gives the text only if asked (``_output_text``)."""
        acc = self.acc = self.integration.new_accumulator(self.endpoint, self.hide_usage,
                                                          config.capture_content or not self.hide_usage)
        return acc

    # -- CallWatch: what an integration's wrap_stream / watch_result use
    @property
    def kwargs(self) -> dict[str, Any]:
        return self.info.kwargs

    def result(self, parsed: Any) -> Any:
        """What the caller read from a return value the integration watches (``Integration.watch_result``): a
        stream is watched (and returned as the caller gets it), anything else read and the call finished."""
        if self.integration.is_stream(parsed):
            return self.watch_stream(parsed)
        self.finish(self.integration.read_response(self.endpoint, parsed, config.capture_content))
        return parsed

    def finish_unread(self) -> None:
        """The result could not be read (the caller's own read raises the same error): finish without usage."""
        self.finish(None)

    def iterate(self, inner: Any) -> Any:
        acc: Any = self.acc  # set by watch_stream, the only caller of wrap_stream
        # Started here, up to its first ``yield``: a generator never started runs nothing when it is closed or
        # collected, so a stream dropped unread would never be finished (no span, its reservation held).
        if hasattr(inner, "__anext__"):
            watched = _wrap_async(inner, self, acc)
            try:
                watched.asend(None).send(None)
            except StopIteration:  # at its first ``yield``, as expected
                pass
            return watched
        watched = _wrap_sync(inner, self, acc)
        next(watched)
        return watched

    def observe_item(self, item: Any) -> None:
        """A stream item the integration found itself (an event in bytes the caller reads): read as ``iterate``
        reads each item, its visibility aside (the caller has its bytes already). The first one starts the call's
        accumulator, which then says at the close how the call ended, as for a parsed stream."""
        acc = self.acc
        if acc is None:
            acc = self._accumulate()
        if self.first_chunk_at is None:
            self.first_chunk_at = _perf()
        self.chunks += 1
        try:
            acc.observe(item)
        except Exception:
            error_once("stream:observe", "aicost: could not read a stream item")

    def closed(self, body: BodyReader | None) -> None:
        """The response hooked by ``finish_on_close`` was closed: finish the call, from its accumulator or
        ``body`` (bytes the caller read itself, seen on the way). Inside a read (``busy``), the read says how the
        call ended, or asks for this again once it is over (``read_done``)."""
        if self.finished:
            return
        if self.busy:
            self.closed_in_read = (body,)
            return
        acc = self.acc
        if body is not None and acc is None:
            self.finish(_stream_meta(body))
            return
        # A stream whose bytes the caller read to their end ended as a parsed stream read to its end does: complete
        # or not (the vendor's final event missing), it was not closed early.
        ended = acc is not None and (acc.complete or self.body_read)
        self.finish(_stream_meta(acc), None, "exhausted" if ended else "closed")

    def read_done(self, at_end: bool = False) -> None:
        """An integration's read that set ``busy`` is over: a close it saw meanwhile finishes the call now.
        ``at_end``: that read reached the end of the body."""
        if at_end:
            self.body_read = True
        closed, self.closed_in_read = self.closed_in_read, None
        if closed is not None:
            self.closed(closed[0])

    def skip(self, reason: str) -> None:
        """Part of the result was let go unread: if the vendor's usage is then missing or cut short, the
        estimate says why (``aicost.usage.invalid_reason``). The first reason is kept."""
        if self.skipped is None:
            self.skipped = reason

    def finish_on_close(self, obj: Any, is_async: bool, reader: BodyReader | None = None,
                        undo: tuple[Callable[[], None], ...] = ()) -> None:
        self._reachable_by_gc()
        _hook_close(obj, self, is_async, reader, undo)

    def fail(self, error: BaseException) -> None:
        """The stream failed outside ``iterate`` (an SDK parsing an exception event after the item was read)."""
        self.finish(_stream_meta(self.acc), error, "error")

    def _sdk_ended_stream(self) -> None:
        """The SDK ended its span (body read, closed or dropped). While aicost is pulling an item, the stream
        wrapper knows better how the call ended (it sees the error or the end), so it finishes instead."""
        if not self.finished and not self.busy:
            acc = self.acc
            self.finish(_stream_meta(acc), None, "exhausted" if acc is not None and acc.complete else "closed")
        # else: the SDK's span stays held until the wrapper's finish releases it (DeferredEndSpan.aicost_end).

def _not_already_on(span: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    """The SDK's own span already holds most standard attributes with the same values: setting them again
    costs the SDK's attribute validation on the calling thread for nothing."""
    existing = getattr(span, "attributes", None) or {}
    return {k: v for k, v in attrs.items() if existing.get(k) != v}


def _has(span: Any, key: str) -> bool:
    """Whether ``span`` already holds the attribute ``key``."""
    return key in (getattr(span, "attributes", None) or {})


def _records(span: Any) -> bool:
    """Whether attributes set on ``span`` now are kept (an SDK span aicost holds open says so itself)."""
    recording = getattr(span, "aicost_recording", None)
    return recording() if recording is not None else span.is_recording()


def _end_span(span: Any) -> None:
    """End a span aicost owns, or release the SDK's span that aicost held open (see integrations.anthropic). A
    span processor that raises in ``on_end`` raises here: logged once, and the call is still settled."""
    try:
        aicost_end = getattr(span, "aicost_end", None)
        if aicost_end is not None:
            aicost_end()
        else:
            span.end()
    except Exception:
        error_once("span:end", "aicost: could not end a span (an OpenTelemetry span processor failed?); "
                               "calls are still priced and recorded")


def _current_attribution() -> Mapping[str, str]:
    """The attribution in force when the call starts: a read-only snapshot, not copied (each scope has its own)."""
    try:
        return attribution.current_attributes()
    except Exception:
        error_once("attribution", "aicost: could not read the current attribution")
        return {}


def _current_unit() -> Any:
    try:
        return attribution.current_unit()
    except Exception:
        error_once("attribution:run", "aicost: could not read the current unit of work")
        return None


def _price(provider: str, response_model: str | None, request_model: str | None, usage: Usage,
           service_tier: str | None, hints: dict[str, Any], scope: str | None = None) -> Any:
    """Price by the model that answered; if the catalog has no price for that name (a vendor's internal
    snapshot name such as ``davinci:2023-07-21-v2``), by the model that was asked for. An unknown price is
    warned about once by the pricing engine and said on the span, never written as $0. A call an interceptor
    scoped (``CallInfo.price_scope``) is priced by that scope's prices only: never by a same-named catalog model.

    ``usage`` is validated once, where it is made: it is the vendor's as an integration read it (its reader ends
    with ``Usage.checked()``; a sum of checked usages keeps their verdict), or aicost's own count (an estimate,
    ``Usage()`` for work never billed), or the vendor's with ``output_tokens`` raised to what the stream showed,
    which breaks no rule. So its ``invalid`` is the verdict, and it is priced by ``pricing.price_checked``.

    Pricing that raises (a fault in aicost, logged once) leaves a billed call's cost unknown, with that reason:
    the span, budgets and the ledger never take it for $0."""
    try:
        if scope is not None:
            price = (pricing.scoped_price(scope, response_model) or pricing.scoped_price(scope, request_model))
            if price is None:
                return pricing.unknown_cost(provider, response_model or request_model, service_tier, usage)
            return price.cost(usage)
        fallback = None
        if response_model and request_model and request_model != response_model and not _is_fine_tune(response_model):
            fallback = request_model  # if the answer names a vendor-internal snapshot of the model asked for
        return pricing.price_checked(provider, response_model or request_model, usage, service_tier=service_tier,
                                     fallback_model=fallback, **hints)
    except Exception:
        error_once("pricing", "aicost: pricing failed")
    return _pricing_failed(provider, response_model or request_model, service_tier, usage)


def _pricing_failed(provider: str, model: str | None, service_tier: str | None, usage: Usage | None) -> Any:
    """The cost of a billed call, or of a part of one, that aicost's pricing failed on (a fault in aicost, logged
    once): unknown, never $0, with that reason (:data:`_PRICING_FAILED`: said on the span, kept so in the ledger).
    None if even that cannot be made (the span still says the price is unknown, and why: :meth:`_Call.finish`)."""
    try:
        return pricing.unknown_cost(provider, model, service_tier, usage, _PRICING_FAILED)
    except Exception:
        return None


def _is_fine_tune(model: str) -> bool:
    """A fine-tuned model is billed at its own (higher) rates: never price it as the base model it came from."""
    return model.startswith("ft:") or ":ft-" in model or ":ft:" in model


# --------------------------------------------------------------------------------------------- streams
def _wrap_sync(inner: Any, call: _Call, acc: StreamAccumulator) -> Any:
    observe = acc.observe
    try:
        yield None  # where ``iterate`` leaves it: a stream dropped before its first item is finished as closed
        call.busy = True
        for item in inner:
            if call.first_chunk_at is None:
                call.first_chunk_at = _perf()
            call.chunks += 1
            try:
                keep = observe(item)
            except Exception:
                keep = True
                error_once("stream:observe", "aicost: could not read a stream item")
            if keep:
                call.busy = False
                yield item
                call.busy = True
    except GeneratorExit:
        call.busy = False
        call.finish(_stream_meta(acc), None, "exhausted" if acc.complete else "closed")
        raise
    except BaseException as exc:
        call.busy = False
        call.finish(_stream_meta(acc), exc, "error")
        raise
    call.busy = False
    call.finish(_stream_meta(acc), None, "exhausted")


async def _wrap_async(inner: Any, call: _Call, acc: StreamAccumulator) -> Any:
    observe = acc.observe
    try:
        yield None  # where ``iterate`` leaves it: a stream dropped before its first item is finished as closed
        call.busy = True
        async for item in inner:
            if call.first_chunk_at is None:
                call.first_chunk_at = _perf()
            call.chunks += 1
            try:
                keep = observe(item)
            except Exception:
                keep = True
                error_once("stream:observe", "aicost: could not read a stream item")
            if keep:
                call.busy = False
                yield item
                call.busy = True
    except GeneratorExit:
        call.busy = False
        call.finish(_stream_meta(acc), None, "exhausted" if acc.complete else "closed")
        raise
    except BaseException as exc:
        call.busy = False
        call.finish(_stream_meta(acc), exc, "error")
        raise
    call.busy = False
    call.finish(_stream_meta(acc), None, "exhausted")


def _stream_meta(acc: StreamAccumulator | BodyReader | None) -> ResponseMeta | None:
    if acc is None:
        return None
    try:
        return acc.result()
    except Exception:
        error_once("stream:result", "aicost: could not read a stream's usage")
        return None


def _hook_close(response: Any, call: _Call, is_async: bool, body: BodyReader | None = None,
                also_unhook: tuple[Callable[[], None], ...] = ()) -> None:
    """Finish the call when ``response`` is closed (``close()`` / ``aclose()``): an SDK's stream helpers may close
    the HTTP response directly, not the stream. ``body``: what says the call's usage when the caller read the bytes
    itself and nothing was parsed; ``also_unhook``: the integration's other hooks on it, removed at the close.

    Hooked once per response; it reads the call's accumulator when the close happens, since a raw response
    is hooked before the caller parses it into a stream.
    """
    if getattr(response, "_aicost_close_hooked", False):
        return

    def done() -> None:
        call.closed(body)

    # The hook is an attribute of the response that refers back to it (the original bound method keeps the
    # response alive while the hook runs): a reference cycle, which would leave every stream's response, request
    # and call to the cyclic collector and make its collections frequent (benchmarks/README.md). The first close
    # removes the hook, which breaks the cycle: a closed response is freed at once.
    name = "aclose" if is_async else "close"
    own = vars(response).get(name)  # an instance-level hook someone else installed: restored as it was

    def unhook() -> None:
        try:
            if own is not None:
                setattr(response, name, own)
            else:
                delattr(response, name)
        except Exception:
            pass
        for other in also_unhook:  # the raw response's other hooks, cycles too while the caller holds nothing
            other()

    try:
        response._aicost_close_hooked = True
        if is_async:
            original_aclose = response.aclose

            async def aclose() -> None:
                try:
                    await original_aclose()
                finally:
                    unhook()
                    done()

            response.aclose = aclose
        else:
            original_close = response.close

            def close() -> None:
                try:
                    original_close()
                finally:
                    unhook()
                    done()

            response.close = close
    except Exception:
        error_once("stream:close-hook", "aicost: could not watch a response's close")


# --------------------------------------------------------------------------------------------- wrappers
def _begin(integration: Integration, endpoint: Endpoint, resource: Any, kwargs: dict, is_async: bool,
           prepare: bool = True) -> _Call | None:
    """Set up a call. Returns None when aicost cannot observe it (the call then runs untouched)."""
    try:
        call = _Call(integration, endpoint, resource, kwargs, is_async)
    except Exception:
        error_once(f"begin:{endpoint.key}", "aicost: could not prepare %s", endpoint.key)
        return None
    call.run_interceptors()  # may raise CallRefused, on purpose
    if prepare and call.request.stream and endpoint.billable:
        try:
            call.hide_usage = integration.prepare_stream(endpoint, call.request, kwargs, config.stream_usage)
        except Exception:
            error_once(f"prepare:{endpoint.key}", "aicost: could not prepare the stream of %s", endpoint.key)
    call.open_span(resource)  # never raises: the call's tickets are settled however it goes
    return call


def _call_as(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    return fn(*args, **kwargs)  # keep on the line right after ``def``: _caller_trampoline relies on it


async def _await_as(awaitable: Any) -> Any:
    return await awaitable  # keep on the line right after ``def``: _caller_trampoline relies on it


_trampolines: dict[tuple[Any, str, int, int], Callable[..., Any]] = {}


def _caller_trampoline(depth: int = 2, template: Callable[..., Any] = _call_as) -> Callable[..., Any]:
    """A copy of ``template`` (``_call_as``, or ``_await_as`` for coroutines) that Python's warnings machinery
    takes for the application's own line.

    The SDKs warn (deprecated models, ...) with a ``stacklevel`` that assumes the application called them
    directly. Through aicost that frame would be aicost's wrapper, and since Python only shows a
    DeprecationWarning attributed to ``__main__``, the application would no longer see it. So the SDK is called
    (or its coroutine awaited) from a copy of the template whose code carries the caller's file name and line and
    which runs with the caller's globals: the warning is attributed, filtered and registered exactly as without
    aicost. One copy per call site and template, cached. ``depth`` counts frames up from this function's own:
    1 is the wrapper calling it, 2 the application's frame that called (or awaits) the wrapper, 3 that frame's
    caller (or awaiter).
    """
    try:
        frame = sys._getframe(depth)
    except Exception:  # not CPython, or no frame that far up
        return template
    code = frame.f_code
    key = (template, code.co_filename, frame.f_lineno, id(frame.f_globals))  # the copy keeps the dict alive
    trampoline = _trampolines.get(key)
    if trampoline is None:
        if len(_trampolines) >= 4096:
            _trampolines.clear()
        trampoline = types.FunctionType(
            template.__code__.replace(co_filename=code.co_filename, co_firstlineno=max(1, frame.f_lineno - 1)),
            frame.f_globals, template.__name__)
        _trampolines[key] = trampoline
    return trampoline


def _sync_wrapper(integration: Integration, endpoint: Endpoint) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        call_as = _caller_trampoline()
        if (not _instrumented or _active.get() or instance is None
                or (endpoint.stream_only and not endpoint.shape.streams(kwargs))):
            return call_as(wrapped, args, kwargs)
        call = _begin(integration, endpoint, instance, kwargs, False)
        return _run_sync(call, lambda: call_as(wrapped, args, kwargs))

    return wrapper


def _async_wrapper(integration: Integration, endpoint: Endpoint) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        # The SDK's coroutine runs under the application's awaiting frame and its awaiter's, which its warnings'
        # stacklevel counts on: two trampolines stand in for them (see _caller_trampoline).
        as_caller, as_callers_caller = _caller_trampoline(2, _await_as), _caller_trampoline(3, _await_as)

        def run() -> Any:
            value = wrapped(*args, **kwargs)
            return as_callers_caller(as_caller(value)) if inspect.isawaitable(value) else value

        if (not _instrumented or _active.get() or instance is None
                or (endpoint.stream_only and not endpoint.shape.streams(kwargs))):
            return await _awaited(run())
        call = _begin(integration, endpoint, instance, kwargs, True)
        return await _run_async(call, run)

    return wrapper


def _run_sync(call: _Call | None, run: Callable[[], Any]) -> Any:
    """Run the SDK's own code for ``call``: errors are recorded and re-raised unchanged, the return observed."""
    if call is None:
        return run()
    token = _active.set(True)
    try:
        value = run()
    except BaseException as exc:
        call.finish(None, exc)
        raise
    finally:
        _active.reset(token)
        call.detach()
    return call.on_return(value)


async def _run_async(call: _Call | None, run: Callable[[], Any]) -> Any:
    if call is None:
        return await _awaited(run())
    token = _active.set(True)
    try:
        value = await _awaited(run())
    except BaseException as exc:
        call.finish(None, exc)
        raise
    finally:
        _active.reset(token)
        call.detach()
    return call.on_return(value)


def _router_wrapper(integration: Integration, router: Router) -> Callable[..., Any]:
    """A method every request passes through (``vendor.Router``): the integration routes each call to the
    endpoint it bills as, or to None (not billed, or already recorded by a patched method further out)."""

    def found(instance: Any, args: tuple, kwargs: dict) -> Any:
        if not _instrumented or _active.get():  # a router cached by the SDK outlives uninstrument()
            return None
        try:
            return integration.route(router, instance, args, kwargs)
        except Exception:
            error_once("route", "aicost: could not route a request")
            return None

    def as_changed(request: dict, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """The arguments that send the request as the interceptors left it (a downgrade, an output cap)."""
        try:
            return integration.routed_arguments(router, args, kwargs, request)
        except Exception:
            error_once("route:send", "aicost: could not apply a budget's or policy's change to a request")
            return args, kwargs

    if router.is_async:
        async def async_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
            routed = found(instance, args, kwargs)
            if routed is None:
                return await wrapped(*args, **kwargs)
            call = _begin(integration, routed[0], routed[1], routed[2], True, prepare=False)
            args, kwargs = as_changed(routed[2], args, kwargs)
            return await _run_async(call, lambda: wrapped(*args, **kwargs))

        return async_wrapper

    def sync_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        # Every request of a patched method passes here too: its check comes first, without a call to found().
        routed = None if not _instrumented or _active.get() else found(instance, args, kwargs)
        if routed is None:
            return wrapped(*args, **kwargs)
        call = _begin(integration, routed[0], routed[1], routed[2], False, prepare=False)
        args, kwargs = as_changed(routed[2], args, kwargs)
        return _run_sync(call, lambda: wrapped(*args, **kwargs))

    return sync_wrapper


async def _awaited(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _stream_manager_wrapper(integration: Integration, endpoint: Endpoint, is_async: bool) -> Callable[..., Any]:
    """For ``stream()`` methods that return a context manager performing the request on ``__enter__``.

    Budgets and policies run now, on the live kwargs, because the SDK builds the request body inside
    ``stream()``: a downgrade or an output cap must be in place before that. The span starts when the
    application enters the ``with`` block (when the request is really sent), and the stream is then watched
    like any other.
    """

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        # The SDKs' undecorated ``stream()`` warns with a stacklevel one frame above the application's line: the
        # frame above the one standing in for the application stands in for the application's caller.
        call_as, call_from_callers_caller = _caller_trampoline(), _caller_trampoline(3)

        def sdk_stream() -> Any:
            return call_from_callers_caller(call_as, (wrapped, args, kwargs), {})

        if not _instrumented or _active.get() or instance is None:
            return sdk_stream()
        try:
            call = _Call(integration, endpoint, instance, kwargs, is_async)
        except Exception:
            error_once(f"begin:{endpoint.key}", "aicost: could not prepare %s", endpoint.key)
            return sdk_stream()
        call.run_interceptors()  # may raise CallRefused, on purpose
        try:
            manager = sdk_stream()
        except BaseException as exc:  # nothing was sent: the call failed, its reservation is settled
            call.finish(None, exc)
            raise
        try:
            if not integration.wrap_manager(manager, lambda request: _ManagerRequest(call, instance, request)):
                warn_once(f"manager:{type(manager).__qualname__}", "aicost: cannot watch %s", type(manager).__qualname__)
        except Exception:
            error_once(f"manager:{endpoint.key}", "aicost: could not watch %s", endpoint.key)
        return manager

    return wrapper


def _event_wrapper(integration: Integration, endpoint: Endpoint, is_async: bool) -> Callable[..., Any]:
    """A connection's event parser (sync on both clients): the event is returned unchanged, then read."""
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        event = wrapped(*args, **kwargs)
        if not _instrumented:
            return event
        try:
            step = integration.read_event(endpoint, instance, event)
            if step is not None:
                _on_event_step(integration, endpoint, instance, step, is_async)
        except Exception:
            error_once(f"event:{endpoint.key}", "aicost: could not read an event of %s", endpoint.key)
        return event

    return wrapper


# Why a call has no cost when neither the integration (``ResponseMeta.unpriced``) nor pricing (``Cost.unknown_reason``,
# a tier billed at per-model rates the catalog lacks) said: no price for what it used
# (a named vendor's model is priced only at that vendor's prices, docs/pricing.md), or no usage to price.
_NO_PRICE = "no price for this model from this provider (and tier) in the catalog or price overrides"
_NO_USAGE = "no usable usage to price"
_PRICING_FAILED = "aicost's pricing failed on this call (logged once as 'aicost: pricing failed')"
_OPEN_RESPONSES = "_aicost_open_responses"  # on the connection: response id -> its call, between start and finish


def _unknown_reason(cost: Any, meta: ResponseMeta, usage: Usage | None, billable: bool) -> str | None:
    """Why a call's cost is unknown (``aicost.price.unknown_reason``, and ``CallResult.unknown_reason``, so the
    ledger made from the hooks and the one made from spans keep the same text), or None when it is known. Not for a
    call whose cost is not recorded (``ResponseMeta.deferred``) or that bills nothing. The integration's reason
    first (a unit the catalog has no rate for), then pricing's, else no price or no usage; a billed call with no
    Cost at all is one aicost's pricing failed on."""
    if cost is not None:
        if cost.known:
            return None
        return meta.unpriced or cost.unknown_reason or (_NO_PRICE if usage is not None else _NO_USAGE)
    return _PRICING_FAILED if billable and not meta.deferred else None


def _on_event_step(integration: Integration, endpoint: Endpoint, connection: Any, step: EventStep,
                   is_async: bool) -> None:
    """A billed response on a long-lived connection is one call: it starts (attribution, collectors and the
    span's start time are taken then, on the thread reading the events) when the vendor announces it, and
    finishes when the vendor reports its usage. No budget can hold or refuse it (the vendor has begun the work
    before the first event says so), but budgets count what it cost."""
    if step.endpoint is not None:
        endpoint = step.endpoint
    open_calls = connection.__dict__.setdefault(_OPEN_RESPONSES, {})
    call = None if step.kind == "once" else open_calls.pop(step.response_id, None)
    if call is None:
        request: dict[str, Any] = {}  # what the connection is using, written the way its requests say it
        if step.model is not None:
            endpoint.shape.set_model(request, step.model)
        call = _Call(integration, endpoint, connection, request, is_async)
        call.count_unguarded()
    if step.kind == "start":
        if len(open_calls) >= 64:  # responses whose end never came (a dropped connection): do not grow forever
            open_calls.clear()
        open_calls[step.response_id] = call
    else:
        call.finish(step.meta)


def _enter(call: _Call, resource: Any) -> _Call:
    call.start = _perf()
    call.start_ns = _time_ns()
    call.open_span(resource)
    return call


class _ManagerRequest:
    """The request a stream manager sends when it is entered (``__call__`` for the sync manager, ``await`` for the
    async one, whose SDK coroutine it holds unawaited until then), sent as the call.

    A manager collected without having been entered sent nothing. Its call is finished then as every call is that
    ended before its request was sent (``stream()`` raising, arguments the SDK refused): through ``_Call.finish``,
    ended by :class:`aicost.errors.NeverSent`, which the core settles as unbilled ($0), with a span under the span
    current at ``stream()``. So every ticket's ``after_call`` runs (a budget's hold is released as every call's
    is), listeners and collectors hear of it, and a ticket needs nothing beyond ``hooks.CallTicket``. (A second
    way to settle, a ``release()`` that only the budget guard's tickets had, told no one else.)

    Not from inside the finalizer, whose thread may hold a lock the finish takes (a span processor's, a budget
    store's, a listener's), but on aicost's worker thread (:mod:`aicost._gc`), as calls the garbage collector
    reaches are. Nothing at interpreter exit: a hold then expires with its lease. The SDK's coroutine is left to be
    collected as it would be without aicost, so its "never awaited" warning names the SDK's function."""

    __slots__ = ("call", "resource", "request", "sent", "context")

    def __init__(self, call: _Call, resource: Any, request: Any) -> None:
        self.call = call
        self.resource = resource
        self.request = request
        self.sent = False
        self.context = contextvars.copy_context()  # where stream() was called: the parent of a never-sent call's span

    def __call__(self) -> Any:
        self.sent = True
        return _run_sync(_enter(self.call, self.resource), self.request)

    def __await__(self) -> Any:
        # ``request`` is the SDK's un-awaited coroutine; awaiting it here keeps the SDK's timing (on __aenter__).
        self.sent = True
        request = self.request
        return _run_async(_enter(self.call, self.resource), lambda: request).__await__()

    def __del__(self) -> None:
        if self.sent or sys.is_finalizing():  # at exit a reservation expires with its lease
            return
        _gc.defer(partial(self.context.run, self.call.finish, None,
                          NeverSent("the stream manager was dropped without being entered")))


# --------------------------------------------------------------------------------------------- observed methods
class _Observed(Observed):
    """``vendor.Observed`` for one call of an "observe" method (a batch created, looked up, its results read)."""

    __slots__ = ("integration", "resource", "attribution", "run_id", "is_async")

    def __init__(self, integration: Integration, resource: Any, is_async: bool) -> None:
        self.integration = integration
        self.resource = resource
        self.attribution = _current_attribution()
        unit = _current_unit()
        self.run_id = None if unit is None else unit.run_id
        self.is_async = is_async

    def record(self, work: CompletedWork) -> None:
        try:
            record_completed(self.integration, self.resource, work, self.is_async)
        except Exception:
            error_once("completed", "aicost: could not record a batch result")


_recorded: dict[str, None] = {}  # keys of completed work recorded in this process, oldest first (bounded)
_RECORDED_MAX = 100_000


def record_completed(integration: Integration, resource: Any, work: CompletedWork, is_async: bool = False) -> None:
    """Record work the vendor finished out of sight of any call (a batch result) as one finished call of
    ``work.endpoint``: a span, metrics, listeners and collectors, priced at the rate ``work.meta.service_tier``
    names. Once per ``work.key`` in this process: reading the same results again records nothing new (the ledger
    also keys the row by it, for a re-read in another process). No interceptor holds or refuses it: the vendor did
    the work long before aicost hears of it.
    """
    if not _instrumented:
        return
    with _lock:
        if work.key in _recorded:
            return
        if len(_recorded) >= _RECORDED_MAX:
            del _recorded[next(iter(_recorded))]
        _recorded[work.key] = None
    call = _Call(integration, work.endpoint, resource, work.request, is_async)
    if work.attribution is not None:  # the submitter's, carried by the batch: not the reading code's scope
        call.attribution = work.attribution
        # The submitter's run, on the span too: whether its span was exported is the submitting process's to know.
        call.run_id = call.span_run_id = work.run_id
        call.collectors = ()
    call.record_id = work.key
    hints = {**(call.request.price_hints or {}), **work.price_hints}
    if work.done_ns:  # dated, and priced, when the vendor did the work
        call.start_ns = work.done_ns
        hints["at"] = from_ns(work.done_ns)
    call.request.price_hints = hints or None
    call.info.span_attributes = {**call.info.span_attributes, s.AICOST_RECORD_ID: work.key, **work.span_attributes}
    call.finish(work.meta)


def _observe_wrapper(integration: Integration, endpoint: Endpoint, is_async: bool) -> Callable[..., Any]:
    """An "observe" method: the integration sees the request before it is sent and what came back; with an
    ``operation`` the call also gets an unbilled span (``aicost.billable`` false)."""

    def seen_for(instance: Any, args: tuple, kwargs: dict) -> _Observed | None:
        if not _instrumented or _active.get() or instance is None:
            return None
        try:
            seen = _Observed(integration, instance, is_async)
            integration.before_observed(endpoint, instance, args, kwargs, seen)
            return seen
        except Exception:
            error_once(f"observe:{endpoint.key}", "aicost: could not prepare %s", endpoint.key)
            return None

    def returned(seen: _Observed, instance: Any, args: tuple, kwargs: dict, value: Any) -> Any:
        try:
            return integration.after_observed(endpoint, instance, args, kwargs, value, seen)
        except Exception:
            error_once(f"observed:{endpoint.key}", "aicost: could not read what %s returned", endpoint.key)
            return value

    if is_async:
        async def async_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
            seen = seen_for(instance, args, kwargs)
            if seen is None:
                return await _awaited(wrapped(*args, **kwargs))
            call = _begin(integration, endpoint, instance, kwargs, True) if endpoint.operation else None
            value = await _run_async(call, lambda: wrapped(*args, **kwargs))
            return returned(seen, instance, args, kwargs, value)

        return async_wrapper

    def sync_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        seen = seen_for(instance, args, kwargs)
        if seen is None:
            return wrapped(*args, **kwargs)
        call = _begin(integration, endpoint, instance, kwargs, False) if endpoint.operation else None
        value = _run_sync(call, lambda: wrapped(*args, **kwargs))
        return returned(seen, instance, args, kwargs, value)

    return sync_wrapper
