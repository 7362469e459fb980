"""``@aicost.cache(...)``: return a stored answer when the same request was answered before.

The decorated function is the unit that is cached: its arguments are the request (see :mod:`.keys`), its return
value (or, for a stream, every chunk of a fully consumed stream) is the answer, and the calls it makes to the
vendor SDKs, measured with :func:`aicost.hooks.collect_calls`, are what a later hit saves.

Whatever goes wrong inside the cache (a store down, an argument without a canonical form, a bug) is logged once
and the function is simply called: a cache failure costs money, never the application's result.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import functools
import inspect
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Mapping

from .._log import log_once
from opentelemetry.trace import SpanKind

from .. import hooks, semconv
from ..errors import ConfigurationError
from ..hooks import CallCollector, collect_calls
from ..pricing.cost import MONEY
from . import telemetry
from .checks import check, check_bool, check_int, check_seconds, is_str
from .entry import ASYNC_STREAM, STREAM, VALUE, Entry
from .keys import (
    KEY_VERSION,
    Uncacheable,
    canonical,
    code_fingerprint,
    hash_material,
    key_prefix,
    normalise_prompt,
    variable_text,
)
from .scope import current_scope, parse_scope
from .singleflight import Flight, FlightGroup
from .stores import MemoryStore, Store
from .streams import (
    AsyncRecordingStream,
    AsyncReplayStream,
    RecordingStream,
    ReplayStream,
    make_finisher,
    snapshot,
)

logger = logging.getLogger("aicost")

_bypass: contextvars.ContextVar[bool] = contextvars.ContextVar("aicost_cache_bypass", default=False)


def _log_once(tag: str, message: str, *args: Any, exc_info: bool = False) -> None:
    log_once(f"cache:{tag}", logging.WARNING, message, *args, exc_info=exc_info)


@contextmanager
def bypass() -> Iterator[None]:
    """Inside this block cached functions neither read nor write the cache (e.g. a "regenerate" button)."""
    token = _bypass.set(True)
    try:
        yield
    finally:
        _bypass.reset(token)


@dataclass(slots=True)
class Request:
    key: str
    context: str | None  # hash of everything except the variable text (semantic tier)
    text: str | None  # the user's variable text, as asked


@dataclass(slots=True)
class Lookup:
    entry: Entry | None  # None: a miss
    tier: str | None = None  # exact | semantic
    similarity: float | None = None
    verifier_cost: Decimal | None = None  # LLM judge spend during this lookup (hit or not)
    veto: str | None = None  # why the best semantic candidate was rejected


class CacheCore:
    """Configuration and logic shared by the sync and async wrappers of one cached function."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        ttl: float | None,
        max_entries: int | None,
        prompt: str | None,
        key_parts: Mapping[str, Any] | Callable[..., Mapping[str, Any]] | None,
        ignore: Iterable[str],
        scope: Iterable[str] | str | None,
        shared: bool,
        store: Store | None,
        semantic: Any,
        name: str | None,
        case_sensitive: bool,
        single_flight: bool,
        single_flight_timeout: float,
        cache_if: Callable[[Any], bool] | None,
    ) -> None:
        check_seconds(_arg("ttl"), ttl, "a positive number of seconds, or None to never expire", or_none=True)
        check_int(_arg("max_entries"), max_entries, minimum=1, or_none=True)
        check_seconds(_arg("single_flight_timeout"), single_flight_timeout, "a positive number of seconds")
        check_bool(_arg("case_sensitive"), case_sensitive)
        check_bool(_arg("single_flight"), single_flight)
        check(_arg("cache_if"), cache_if, "a callable taking the result and returning a bool, or None",
              of_type=callable, or_none=True)
        check(_arg("key_parts"), key_parts, "a mapping, a callable returning one, or None",
              of_type=lambda parts: callable(parts) or isinstance(parts, Mapping), or_none=True)
        check(_arg("name"), name, "a non-empty str or None", of_type=is_str, within=bool, or_none=True)
        if isinstance(ignore, str):
            ignore = (ignore,)
        accepted = "a parameter name or a list of them"
        check(_arg("ignore"), ignore, accepted, of_type=lambda names: isinstance(names, Iterable))
        ignore = tuple(ignore)  # once: it may be an iterator
        check(_arg("ignore"), ignore, accepted, of_type=lambda names: all(is_str(n) for n in names))
        self.func = func
        try:
            self.signature = inspect.signature(func)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"aicost.cache cannot read the parameters of {func!r}: {exc}") from None
        params = self.signature.parameters
        self.var_keyword = next((p.name for p in params.values() if p.kind is p.VAR_KEYWORD), None)
        declared = [p.name for p in params.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        for arg in ignore:
            check(_arg("ignore"), arg, f"names of parameters of {func.__qualname__} ({', '.join(declared) or 'none'})",
                  of_type=is_str, within=lambda a: a in declared or self.var_keyword is not None)
        if prompt is not None:
            self._check_prompt(prompt, params, declared, ignore)
        self.prompt = prompt
        self.ignore = frozenset(ignore)
        self.key_parts = key_parts
        self.scope_attributes = parse_scope(scope, shared)
        self.case_sensitive = case_sensitive
        self.ttl = float(ttl) if ttl is not None else None
        self.name = name or f"{func.__module__}.{func.__qualname__}"
        self.prefix = key_prefix(self.name)
        if store is None:
            store = MemoryStore(10_000 if max_entries is None else max_entries)
        elif max_entries is not None:
            raise ConfigurationError(
                "aicost.cache(max_entries=...) sizes the default in-memory store; size a given store itself")
        check(_arg("store"), store, "a cache store with get/put/delete/clear (MemoryStore, RedisStore, "
              "PgVectorStore) or None",
              of_type=lambda s: all(callable(getattr(s, m, None)) for m in ("get", "put", "delete", "clear")))
        self.store = store
        self.semantic = None
        if semantic is not None:
            if prompt is None:
                raise ConfigurationError(
                    "aicost.cache(semantic=...) needs prompt=<parameter> naming the user's variable text")
            check(_arg("semantic"), semantic, "an aicost.cache.Semantic(...) configuration or None",
                  of_type=lambda s: callable(getattr(s, "bind", None)))
            self.semantic = semantic.bind(store, self.prefix)
        self.fingerprint = code_fingerprint(func)
        self.single_flight = single_flight
        self.single_flight_timeout = float(single_flight_timeout)
        self.flights = FlightGroup()
        self.cache_if = cache_if

    def _check_prompt(self, prompt: Any, params: Mapping[str, inspect.Parameter], declared: list[str],
                      ignore: tuple[str, ...]) -> None:
        """``prompt`` must be a parameter every call fills by that name.

        A declared parameter always is. A name only ``**kwargs`` can receive is accepted only when the function
        takes nothing positionally (an SDK-style ``def create(**kwargs)``): otherwise a misspelt or absent name
        would silently leave positional calls without normalisation or semantic tier.
        """
        accepted = f"the name of a parameter of {self.func.__qualname__} ({', '.join(declared) or 'none'})"
        check(_arg("prompt"), prompt, accepted, of_type=is_str)
        check(_arg("prompt"), prompt, accepted + " that is not also ignored", of_type=is_str,
              within=lambda p: p not in ignore)
        if prompt in declared:
            return
        positional = [p.name for p in params.values() if p.name not in ignore and p.kind in (
            p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
        if self.var_keyword is None or prompt == self.var_keyword or positional:
            raise ConfigurationError(
                f"aicost.cache(prompt=...) must be {accepted}, got {prompt!r}"
                + (f"; a name only **{self.var_keyword} receives is accepted only when nothing is passed "
                   f"positionally (here: {', '.join(positional)})" if self.var_keyword and positional else "")
            )

    # --- keys ---------------------------------------------------------------------------------------------
    def request(self, args: tuple, kwargs: dict) -> Request:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:  # the call itself is wrong: let the function raise its own error
            # the reason names the caller's keywords: the function's own TypeError tells the caller, not the log
            raise Uncacheable("the arguments do not bind to its parameters") from exc
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if self.var_keyword is not None:
            arguments.update(arguments.pop(self.var_keyword, None) or {})
            if self.prompt is not None and self.prompt not in arguments:
                _log_once(f"no-prompt:{self.name}", "aicost cache: %s was called without its prompt argument %r: "
                          "this call is keyed exactly, without normalisation or semantic tier", self.name,
                          self.prompt)
        prompt_value = arguments.pop(self.prompt, None) if self.prompt is not None else None
        other = {k: v for k, v in arguments.items() if k not in self.ignore}
        parts = self.key_parts
        if callable(parts):
            try:
                parts = parts(*args, **kwargs)
            except Exception as exc:
                raise Uncacheable(f"key_parts raised {type(exc).__name__}") from exc
            if not isinstance(parts, Mapping):
                raise Uncacheable("key_parts must return a mapping")
        base = {
            "v": KEY_VERSION,
            "fn": self.name,
            "code": self.fingerprint,
            "scope": [list(pair) for pair in current_scope(self.scope_attributes)],
            "args": canonical(other, path="arguments", names=True),
            "parts": canonical(parts, path="key_parts", names=True) if parts else None,
        }
        try:  # reading the prompt runs the application's code (its mapping types' items(), get()), whose error
            # may quote the prompt: said by its type, as canonical() says an argument's own failure
            normalised = normalise_prompt(prompt_value, case_sensitive=self.case_sensitive)
            text, fixed = variable_text(prompt_value) if self.semantic is not None else (None, None)
            fixed_norm = normalise_prompt(fixed, case_sensitive=self.case_sensitive) if text is not None else None
        except Exception as exc:
            raise Uncacheable(f"{self.prompt}: rendering it for the key raised {type(exc).__name__}") from exc
        key = self.prefix + hash_material({**base, "prompt": canonical(normalised, path=str(self.prompt))})
        context = None
        if text is not None:
            context = hash_material({**base, "prompt_context": canonical(fixed_norm, path=str(self.prompt))})
        return Request(key, context, text)

    def key_for(self, *args: Any, **kwargs: Any) -> str:
        return self.request(args, kwargs).key

    # --- lookup / store -----------------------------------------------------------------------------------
    def lookup(self, req: Request, *, semantic: bool = True) -> Lookup:
        """Exact first, then (optionally) semantic, whose guards and verifier may veto candidates."""
        entry = self.store.get(req.key)
        if entry is not None:
            return Lookup(entry, "exact", 1.0)
        if semantic and self.semantic is not None and req.text is not None and req.context is not None:
            match = self.semantic.lookup(req.context, req.text, self.store.get)
            return Lookup(match.entry, "semantic" if match.entry is not None else None, match.similarity,
                          match.verifier_cost, match.veto)
        return Lookup(None)

    def save(self, req: Request, value: Any, kind: str, collector: CallCollector, awaitable: bool = False) -> bool:
        """Store a miss's answer unless ``cache_if`` rejects it: a value, or a completed stream's list of chunks.

        A stream is judged too: a stream cut by ``max_tokens`` is exactly what ``cache_if`` is there to keep out.
        """
        if self.cache_if is not None and not self.cache_if(value):
            return False
        cost = collector.cost_usd if collector.calls and not collector.unknown_cost_calls else None
        if kind == VALUE:  # the caller keeps and may mutate the object it got (a stream's chunks were copied
            value = snapshot(value)  # as they passed, see .streams)
        entry = Entry(value=value, kind=kind, cost_usd=cost, calls=collector.calls, text=req.text,
                      context=req.context, awaitable=awaitable)
        self.store.put(req.key, entry, self.ttl)
        if self.semantic is not None and req.text is not None and req.context is not None:
            self.semantic.add(req.context, req.text, req.key, self.ttl)
        return True

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Drop the entry these arguments (in the current attribution scope) would hit. True if one existed."""
        req = self.request(args, kwargs)
        if self.semantic is not None:
            self.semantic.forget(req.key)
        return bool(self.store.delete(req.key))

    def clear(self) -> int:
        """Drop every entry of this cached function (in every scope)."""
        if self.semantic is not None:
            self.semantic.clear()
        return int(self.store.clear(self.prefix) or 0)


def _arg(name: str) -> str:
    """How a refusal names an argument of ``aicost.cache``: ``aicost.cache(ttl=...)``."""
    return f"aicost.cache({name}=...)"


def _materialise(entry: Entry) -> Any:
    # The caller may mutate what it gets (a value, or a replayed chunk in place): the cache must not change.
    if entry.kind == STREAM:
        value: Any = ReplayStream([snapshot(chunk) for chunk in entry.value])
    elif entry.kind == ASYNC_STREAM:
        value = AsyncReplayStream([snapshot(chunk) for chunk in entry.value])
    else:
        value = snapshot(entry.value)
    # A plain def that returned an awaitable: its caller awaits what it gets. (Entries pickled before the field
    # existed lack it.)
    if getattr(entry, "awaitable", False):
        return _resolved(value)
    return value


async def _resolved(value: Any) -> Any:
    return value


def _record(core: CacheCore, span: Any, outcome: str, lookup_s: float, found: Lookup | None = None) -> None:
    try:
        hit = found is not None and found.entry is not None
        telemetry.record_lookup(
            span,
            name=core.name,
            outcome=outcome,
            tier=found.tier if hit else None,
            lookup_s=lookup_s,
            similarity=found.similarity if hit else None,
            saved_usd=found.entry.cost_usd if hit else None,
            verifier_cost_usd=found.verifier_cost if found is not None else None,
            veto=found.veto if found is not None else None,
        )
        if hit:
            from ..attribution import current_attributes, current_unit

            attribution = current_attributes()
            unit = current_unit()
            run_id = None if unit is None else unit.run_id
            if span is not None:
                # Who the saving belongs to, and the run it saved for, on the span itself: a ledger fed from
                # exported spans needs them (the run only if its span is exported: ``UnitOfWork.span_run_id``).
                if attribution:
                    span.set_attributes(attribution)
                if unit is not None and unit.span_run_id is not None:
                    span.set_attribute(semconv.AICOST_RUN_ID, unit.span_run_id)
            if hooks.has_event_listeners():
                hooks.emit(hooks.CacheHit(
                    name=core.name, saved_usd=found.entry.cost_usd, attribution=attribution,
                    run_id=run_id, span=span, time_ns=time.time_ns(), tier=found.tier,
                ))
    except Exception:
        _log_once("telemetry", "aicost cache: recording telemetry failed", exc_info=True)


def _is_stream(value: Any) -> bool:
    return isinstance(value, (collections.abc.Iterator, collections.abc.AsyncIterator)) and not isinstance(
        value, (str, bytes)
    )


def _finish(core: CacheCore, req: Request, result: Any, collector: CallCollector, span: Any,
            land: Callable[[], None], flight: Flight | None = None, awaited: bool = False) -> Any:
    """After a miss: store a plain result now, or wrap a stream so it is stored when fully consumed.

    A plain ``def`` may return an awaitable (``return async_client.chat.completions.create(...)``): storing the
    coroutine would hand an already awaited one to the next caller. It is wrapped in a coroutine that awaits it
    (counting its vendor calls) and stores what it resolves to, marked so that a hit also returns an awaitable.
    Single flight does not cover it: the awaitable runs later, on an event loop, where a waiting follower would
    hold up the very loop that has to finish it.
    """
    if not awaited and inspect.isawaitable(result) and not _is_stream(result):
        land()
        return _settle(core, req, result, collector)
    if not _is_stream(result):
        stored = False
        try:
            stored = core.save(req, result, VALUE, collector, awaitable=awaited)
        except Exception:
            _log_once("store", "aicost cache: storing a result failed; the answer was still returned",
                      exc_info=True)
        finally:
            land()
        if span is not None:  # a stream's chunks are stored after its span has ended: it carries no "stored"
            _set_stored(span, stored)
        return result
    if flight is not None:
        flight.stream_opened()  # followers that would wait for this stream's consumer must not (see .singleflight)
    kind = ASYNC_STREAM if isinstance(result, collections.abc.AsyncIterator) else STREAM

    def on_complete(chunks: list) -> None:
        try:
            core.save(req, list(chunks), kind, collector, awaitable=awaited)
        except Exception:
            _log_once("store", "aicost cache: storing a stream failed; the answer was still returned",
                      exc_info=True)
        finally:
            land()

    finisher = make_finisher(on_complete, land)
    if kind == ASYNC_STREAM:
        return AsyncRecordingStream(result, collector, finisher)
    return RecordingStream(result, collector, finisher)


def _set_stored(span: Any, stored: bool) -> None:
    try:
        span.set_attribute(semconv.AICOST_CACHE_STORED, stored)
    except Exception:
        _log_once("telemetry", "aicost cache: recording telemetry failed", exc_info=True)

async def _settle(core: CacheCore, req: Request, awaitable: Any, collector: CallCollector) -> Any:
    with collect_calls(collector):
        value = await awaitable
    return _finish(core, req, value, collector, None, _noop, awaited=True)


def _start_span(core: CacheCore) -> Any:
    try:
        return telemetry.tracer().start_as_current_span(f"aicost.cache {core.name}", kind=SpanKind.INTERNAL)
    except Exception:
        _log_once("span", "aicost cache: starting a span failed", exc_info=True)
        return _NullSpan()


class _NullSpan:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _prepare(core: CacheCore, args: tuple, kwargs: dict) -> Request | None:
    try:
        return core.request(args, kwargs)
    except Uncacheable as exc:
        _log_once(f"uncacheable:{core.name}", "aicost cache: %s is not cached for this call: %s", core.name, exc)
    except Exception as exc:
        # no traceback: its messages may quote the application's data (private by default), as the reason above
        _log_once(f"key:{core.name}", "aicost cache: building the key of %s failed with %s; it is not cached for "
                  "this call", core.name, type(exc).__name__)
    return None


def _safe_lookup(core: CacheCore, req: Request, semantic: bool = True) -> Lookup:
    try:
        return core.lookup(req, semantic=semantic)
    except Exception:
        _log_once(f"lookup:{core.name}", "aicost cache: lookup failed; calling through", exc_info=True)
        return Lookup(None)


def _sync_wrapper(core: CacheCore) -> Callable[..., Any]:
    func = core.func

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _bypass.get():
            with _start_span(core) as span:
                _record(core, span, "bypass", 0.0)
                return func(*args, **kwargs)
        t0 = time.perf_counter()
        req = _prepare(core, args, kwargs)
        if req is None:
            with _start_span(core) as span:
                _record(core, span, "uncacheable", time.perf_counter() - t0)
                return func(*args, **kwargs)
        with _start_span(core) as span:
            found = _safe_lookup(core, req)
            lookup_s = time.perf_counter() - t0
            if found.entry is not None:
                _record(core, span, "hit", lookup_s, found)
                return _materialise(found.entry)
            land: Callable[[], None] = _noop
            led: Flight | None = None
            try:  # a leader that fails or is interrupted, waiting or calling, lands: later misses would wait for it
                if core.single_flight:
                    flight, leader = core.flights.join(req.key)
                    if leader:
                        led = flight
                        land = functools.partial(core.flights.land, req.key, flight)
                        token = _try_shared_lock(core, req)
                        if token is None:  # another process is answering the same request right now
                            again = _await_other_process(core, req)
                            if again.entry is not None:
                                land()
                                _record(core, span, "hit", lookup_s, _paid_for(again, found))
                                return _materialise(again.entry)
                        elif token:
                            land = _chain(land, functools.partial(_unlock, core, req, token))
                    elif flight.wait(core.single_flight_timeout):
                        again = _safe_lookup(core, req, semantic=False)
                        if again.entry is not None:
                            _record(core, span, "hit", lookup_s, _paid_for(again, found))
                            return _materialise(again.entry)
                _record(core, span, "miss", lookup_s, found)
                with collect_calls() as collector:
                    result = func(*args, **kwargs)
            except BaseException:
                land()
                raise
            return _finish(core, req, result, collector, span, land, led)

    return wrapper


def _async_wrapper(core: CacheCore) -> Callable[..., Any]:
    func = core.func

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _bypass.get():
            with _start_span(core) as span:
                _record(core, span, "bypass", 0.0)
                return await func(*args, **kwargs)
        t0 = time.perf_counter()
        req = _prepare(core, args, kwargs)
        if req is None:
            with _start_span(core) as span:
                _record(core, span, "uncacheable", time.perf_counter() - t0)
                return await func(*args, **kwargs)
        with _start_span(core) as span:
            off_loop = (core.semantic is not None and req.text is not None) or not isinstance(core.store, MemoryStore)
            if off_loop:
                # Embedding, a sync LLM judge or a slow shared store must not block the event loop.
                found = await asyncio.to_thread(_safe_lookup, core, req)
            else:
                found = _safe_lookup(core, req)
            lookup_s = time.perf_counter() - t0
            if found.entry is not None:
                _record(core, span, "hit", lookup_s, found)
                return _materialise(found.entry)
            land: Callable[[], None] = _noop
            led: Flight | None = None
            try:  # a leader cancelled (wait_for, a client gone) or failing, waiting or calling, lands: later misses
                # would wait single_flight_timeout for a leader that is gone
                if core.single_flight:
                    flight, leader = core.flights.join(req.key)
                    if leader:
                        led = flight
                        land = functools.partial(core.flights.land, req.key, flight)
                        token = _try_shared_lock(core, req)
                        if token is None:  # another process is answering the same request right now
                            again = await _await_other_process_async(core, req)
                            if again.entry is not None:
                                land()
                                _record(core, span, "hit", lookup_s, _paid_for(again, found))
                                return _materialise(again.entry)
                        elif token:
                            land = _chain(land, functools.partial(_unlock, core, req, token))
                    elif await flight.wait_async(core.single_flight_timeout):
                        again = (await asyncio.to_thread(_safe_lookup, core, req, False) if off_loop
                                 else _safe_lookup(core, req, semantic=False))
                        if again.entry is not None:
                            _record(core, span, "hit", lookup_s, _paid_for(again, found))
                            return _materialise(again.entry)
                _record(core, span, "miss", lookup_s, found)
                with collect_calls() as collector:
                    result = await func(*args, **kwargs)
            except BaseException:
                land()
                raise
            if off_loop and not _is_stream(result) and not inspect.isawaitable(result):
                # Writing the answer (and embedding it) must not block the event loop either.
                return await asyncio.to_thread(_finish, core, req, result, collector, span, land, led)
            return _finish(core, req, result, collector, span, land, led)

    return wrapper


def _paid_for(again: Lookup, first: Lookup) -> Lookup:
    """The single-flight re-read that hit, carrying the LLM-judge spend of the call's first lookup.

    The re-read is exact (no judge), but the call did pay for judging candidates before it waited: dropped, the
    verifier cost metric undercounts and net savings (saved - verifier cost) come out too high.
    """
    if first.verifier_cost is not None:
        again.verifier_cost = MONEY.add(again.verifier_cost or Decimal(0), first.verifier_cost)  # any context
    return again


def _noop() -> None:
    return None


def _chain(*steps: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        for step in steps:
            step()

    return run


# --- single flight across processes (stores with try_lock/unlock/is_locked, e.g. RedisStore) -------------------
_POLL_S = 0.05


def _try_shared_lock(core: CacheCore, req: Request) -> str | None:
    """A lock token (truthy) if we lead across processes, "" if the store cannot lock, None if another leads."""
    try_lock = getattr(core.store, "try_lock", None)
    if try_lock is None:
        return ""
    try:
        return try_lock(req.key, core.single_flight_timeout)
    except Exception:
        _log_once(f"lock:{core.name}", "aicost cache: shared single-flight lock failed; calling through",
                  exc_info=True)
        return ""


def _unlock(core: CacheCore, req: Request, token: str) -> None:
    try:
        core.store.unlock(req.key, token)
    except Exception:
        _log_once(f"unlock:{core.name}", "aicost cache: releasing a shared lock failed (it expires)", exc_info=True)


def _other_still_working(core: CacheCore, req: Request) -> bool:
    try:
        return bool(core.store.is_locked(req.key))
    except Exception:
        return False


def _await_other_process(core: CacheCore, req: Request) -> Lookup:
    deadline = time.monotonic() + core.single_flight_timeout
    while time.monotonic() < deadline:
        time.sleep(_POLL_S)
        found = _safe_lookup(core, req, semantic=False)
        if found.entry is not None or not _other_still_working(core, req):
            return found
    return Lookup(None)


async def _await_other_process_async(core: CacheCore, req: Request) -> Lookup:
    deadline = time.monotonic() + core.single_flight_timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(_POLL_S)
        found = _safe_lookup(core, req, semantic=False)
        if found.entry is not None or not _other_still_working(core, req):
            return found
    return Lookup(None)


def cache(
    func: Callable[..., Any] | None = None,
    *,
    ttl: float | None = 3600.0,
    max_entries: int | None = None,
    prompt: str | None = None,
    key_parts: Mapping[str, Any] | Callable[..., Mapping[str, Any]] | None = None,
    ignore: Iterable[str] = (),
    scope: Iterable[str] | str | None = None,
    shared: bool = False,
    store: Store | None = None,
    semantic: Any = None,
    name: str | None = None,
    case_sensitive: bool = True,
    single_flight: bool = True,
    single_flight_timeout: float = 30.0,
    cache_if: Callable[[Any], bool] | None = None,
) -> Any:
    """Cache the answers of a function that calls an LLM.

    ``@aicost.cache`` or ``@aicost.cache(ttl=600, prompt="question")``. Every argument of the function is part
    of the key (``ignore`` drops some, e.g. a client object; ``key_parts`` adds fixed or computed parts such as
    a prompt-template version); ``prompt`` names the argument holding the user's text or conversation, whose
    formatting is normalised (whitespace; letter case only with ``case_sensitive=False``) and which the opt-in
    ``semantic`` tier compares by meaning. Entries are scoped by the attribution ``scope`` (default customer,
    user and team) unless ``shared=True``. A bad argument raises :class:`aicost.errors.ConfigurationError`
    naming it; one of the wrong type, :class:`aicost.errors.ConfigurationTypeError` (also a ``TypeError``).

    The wrapper has ``.invalidate(*args, **kwargs)``, ``.clear()``, ``.uncached(*args, **kwargs)`` (bypass this
    call) and ``.key_for(*args, **kwargs)``; :func:`bypass` bypasses every cache in a block.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        check("aicost.cache(func)", fn, "a function", of_type=callable)
        core = CacheCore(
            fn, ttl=ttl, max_entries=max_entries, prompt=prompt, key_parts=key_parts, ignore=ignore, scope=scope,
            shared=shared, store=store, semantic=semantic, name=name, case_sensitive=case_sensitive,
            single_flight=single_flight, single_flight_timeout=single_flight_timeout, cache_if=cache_if,
        )
        wrapper = _async_wrapper(core) if inspect.iscoroutinefunction(fn) else _sync_wrapper(core)
        wrapper.cache = core  # type: ignore[attr-defined]
        wrapper.invalidate = core.invalidate  # type: ignore[attr-defined]
        wrapper.clear = core.clear  # type: ignore[attr-defined]
        wrapper.key_for = core.key_for  # type: ignore[attr-defined]
        wrapper.uncached = fn  # type: ignore[attr-defined]
        return wrapper

    if func is not None:
        return decorate(func)
    return decorate
