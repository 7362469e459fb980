"""Who is spending: attribution scopes, units of work with cost rollups, and their propagation.

``attribute(team=..., feature=..., user=..., customer=..., **tags)`` opens a scope; every LLM span started
inside it carries ``aicost.team`` / ``aicost.feature`` / ``aicost.user`` / ``aicost.customer`` /
``aicost.tag.<name>`` and the cost metrics carry the low-cardinality ones. ``feature("summarize")`` is a scope
*and* a unit of work: its own span rolls up the calls, tokens and cost of everything inside it.

Why contextvars: a scope must follow the code that runs for one request, across ``await`` and into tasks,
and must never be visible to another request served concurrently by the same thread or event loop. A
``ContextVar`` gives exactly that: asyncio tasks copy the context when they are created, a thread started
with a plain ``threading.Thread`` starts with an *empty* context (use :func:`wrap` / :class:`ContextExecutor`
to carry the scope into thread pools).

Why baggage: the same scope must follow a request into the next service. Propagated fields (team and
feature by default) are written to OpenTelemetry baggage, which the W3C ``baggage`` propagator injects into
outgoing requests; in the downstream service, :func:`current_attributes` reads the extracted baggage, so a
call made there is charged to the upstream feature (and team, where the downstream trusts it). Local scopes
always win over upstream baggage.

Why baggage is distrusted: anyone who can send the service a request can write any baggage. A key the
application did not list in ``configure_propagation(trust_upstream=...)`` is ignored (by default only
``feature``: team, user, customer and tags decide whose spend and whose cache a call is, so they are taken from
upstream only when the application says the upstream is its own), and each trusted key accepts at most
``max_upstream_values`` distinct values per process; later new values are counted and become ``other``, so a
flood of invented names cannot grow state or crowd real teams out of the metric series.

The core calls :func:`current_attributes` at every span start, so that path is a contextvar read and a cached
mapping; all merging and validation happens once, when a scope is entered or created.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import random
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, TypeVar

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry import trace

from . import _fork, _gc
from . import hooks, semconv
from .errors import ConfigurationError, NeverStarted
from ._log import log_once
from .pricing.money import format_usd, sum_usd
from .usage import Usage

__all__ = [
    "attribute",
    "feature",
    "current_attributes",
    "current_unit",
    "set_outcome",
    "UnitOfWork",
    "wrap",
    "ContextExecutor",
    "configure_propagation",
    "upstream_stats",
    "attributes_from_headers",
    "inject_headers",
]

F = TypeVar("F", bound=Callable[..., Any])

_FIELDS = {
    "team": semconv.AICOST_TEAM,
    "feature": semconv.AICOST_FEATURE,
    "user": semconv.AICOST_USER,
    "customer": semconv.AICOST_CUSTOMER,
}
_KNOWN_KEYS = frozenset(_FIELDS.values())
# How long an attribution value may be, and how many tags baggage brings, are semconv's (MAX_VALUE_LEN,
# MAX_OUTSIDE_TAGS), beside the tag name rule, so that the ledger holds every row it stores to them without
# importing this module (aicost.ledger.row.within_bounds)
_EMPTY: Mapping[str, str] = MappingProxyType({})

# Which fields ride baggage to downstream services. User and customer ids are personal or commercial data,
# and baggage is sent with every outgoing request an instrumented HTTP client makes, so they stay in the
# process unless the application opts in (``configure_propagation``).
_DEFAULT_PROPAGATED = frozenset({"team", "feature"})
_propagated: frozenset[str] = _DEFAULT_PROPAGATED
_accept_upstream = True

# Which fields are taken from upstream baggage (untrusted input). Tenancy-relevant ones are not, by default.
_DEFAULT_TRUSTED = frozenset({"feature"})
_trusted_keys: frozenset[str] = frozenset(_FIELDS[name] for name in _DEFAULT_TRUSTED)
_trust_tags = False
DEFAULT_MAX_UPSTREAM_VALUES = 100
_MAX_MAX_UPSTREAM_VALUES = 10_000
_max_upstream_values = DEFAULT_MAX_UPSTREAM_VALUES
OVERFLOW_VALUE = "other"
# Distinct upstream values accepted so far, per attribute key (tags: per tag key, and the tag keys themselves
# under the prefix), and how many arrivals were refused. Bounded: at most _max_upstream_values per key.
_upstream_seen: dict[str, set[str]] = {}
_upstream_overflow: dict[str, int] = {}
_upstream_lock = _fork.lock()
_trust_generation = 0


@_fork.on_fork_in_child
def _after_fork_in_child() -> None:
    """The cap is per process: a forked child starts with none of the parent's upstream values admitted or
    counted (its :func:`upstream_stats` are its own)."""
    global _trust_generation
    _upstream_seen.clear()
    _upstream_overflow.clear()
    _trust_generation += 1  # merged views of baggage were admitted against the parent's counts


def _log_once(key: str, message: str) -> None:
    log_once(f"attribution:{key}", logging.WARNING, message, exc_info=True)


# ---------------------------------------------------------------------------------------------------------
# Validation (at the call site: a bad value is a bug in the caller's code, say which argument it was)


# What an attribution value (and a unit's name and outcome) may be, said in every refusal of one.
_ACCEPTED_VALUE = f"a non-empty str of at most {semconv.MAX_VALUE_LEN} printable characters"


def _check_value(where: str, argument: str, value: object) -> str:
    """``value`` if it is an acceptable attribution value, else the error naming ``where`` (the public function the
    application called: one check serves ``aicost.attribute``, ``aicost.feature`` and ``aicost.set_outcome``), the
    argument and what it accepts."""
    if not isinstance(value, str):
        hint = " (decorators take arguments: @aicost.feature(\"name\"), @aicost.attribute(team=...))" if callable(
            value) else ""
        raise TypeError(f"{where}: {argument} must be a str, got {type(value).__name__} ({value!r}); accepted: "
                        f"{_ACCEPTED_VALUE}{hint}")
    if not value or not value.strip():
        raise ValueError(f"{where}: {argument} must be a non-empty string; accepted: {_ACCEPTED_VALUE}")
    if len(value) > semconv.MAX_VALUE_LEN:
        raise ValueError(f"{where}: {argument} is longer than {semconv.MAX_VALUE_LEN} characters; accepted: "
                         f"{_ACCEPTED_VALUE}")
    if not value.isprintable():
        raise ValueError(f"{where}: {argument} contains control characters; accepted: {_ACCEPTED_VALUE}")
    return value


def _build_values(where: str, fields: Mapping[str, object], tags: Mapping[str, object]) -> dict[str, str]:
    """Validated span attributes of one scope (``None`` values mean "not set here": the outer value stays)."""
    values: dict[str, str] = {}
    for name, value in fields.items():
        if value is not None:
            values[_FIELDS[name]] = _check_value(where, name, value)
    for name, value in tags.items():
        if not semconv.is_tag_name(name):
            raise ValueError(f"{where}: tag name {name!r} is invalid ({semconv.TAG_NAME_RULE})")
        if value is not None:
            values[semconv.AICOST_TAG_PREFIX + name] = _check_value(where, f"tag {name!r}", value)
    return values


def _field_names(argument: str, value: object) -> frozenset[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigurationError(f"configure_propagation: {argument} must be a list of field names such as "
                                 f"['team', 'feature'], got {value!r}")
    chosen = frozenset(value)
    unknown = chosen - {*_FIELDS, "tags"}
    if unknown:
        raise ConfigurationError(f"configure_propagation: {argument} has unknown fields "
                                 f"{sorted(map(str, unknown))}; use team, feature, user, customer, tags")
    return chosen


def configure_propagation(fields: Iterable[str] = ("team", "feature"), *, accept_upstream: bool = True,
                          trust_upstream: Iterable[str] = tuple(_DEFAULT_TRUSTED),
                          max_upstream_values: int = DEFAULT_MAX_UPSTREAM_VALUES) -> None:
    """Choose which fields ride W3C baggage to downstream services (``fields``: "team", "feature", "user",
    "customer", "tags"), and which fields this service takes from upstream baggage (``trust_upstream``, default
    only "feature": list "team", "user", "customer" or "tags" only when every upstream that can reach the
    service is your own). ``accept_upstream=False`` takes none. ``max_upstream_values`` caps the distinct values
    each trusted key may bring (further new values become "other" and are counted: :func:`upstream_stats`).
    Calling it again starts the counts afresh. Raises ``ConfigurationError`` for anything else."""
    global _propagated, _accept_upstream, _trusted_keys, _trust_tags, _max_upstream_values, _trust_generation
    chosen = _field_names("fields", fields)
    trusted = _field_names("trust_upstream", trust_upstream)
    if not isinstance(accept_upstream, bool):
        raise ConfigurationError(f"configure_propagation: accept_upstream must be True or False, got {accept_upstream!r}")
    if (isinstance(max_upstream_values, bool) or not isinstance(max_upstream_values, int)
            or not 1 <= max_upstream_values <= _MAX_MAX_UPSTREAM_VALUES):
        raise ConfigurationError(f"configure_propagation: max_upstream_values must be an int from 1 to "
                                 f"{_MAX_MAX_UPSTREAM_VALUES:,}, got {max_upstream_values!r}")
    with _upstream_lock:
        _propagated = chosen
        _accept_upstream = accept_upstream
        _trusted_keys = frozenset(_FIELDS[name] for name in trusted if name in _FIELDS)
        _trust_tags = "tags" in trusted
        _max_upstream_values = max_upstream_values
        _upstream_seen.clear()
        _upstream_overflow.clear()
        _trust_generation += 1  # merged views of earlier baggage were built under the old rules


def upstream_stats() -> dict[str, dict[str, int]]:
    """Per attribute key taken from upstream baggage: ``distinct`` values accepted and ``overflowed`` arrivals
    that exceeded ``max_upstream_values`` and were recorded as "other"."""
    with _upstream_lock:
        keys = set(_upstream_seen) | set(_upstream_overflow)
        return {key: {"distinct": len(_upstream_seen.get(key, ())), "overflowed": _upstream_overflow.get(key, 0)}
                for key in sorted(keys)}


def _is_propagated(key: str) -> bool:
    if key.startswith(semconv.AICOST_TAG_PREFIX):
        return "tags" in _propagated
    for name, attr in _FIELDS.items():
        if attr == key:
            return name in _propagated
    return False


# ---------------------------------------------------------------------------------------------------------
# The scope chain


class _Scope:
    """The merged attribution of one activation: computed once, read at every span start."""

    __slots__ = ("attributes", "_upstream")

    def __init__(self, attributes: Mapping[str, str]) -> None:
        self.attributes = attributes
        self._upstream: tuple[object, int, Mapping[str, str]] | None = None

    def with_upstream(self, bag: Mapping[str, object]) -> Mapping[str, str]:
        # One-entry cache keyed by the identity of the baggage dict (stable while the context is unchanged) and
        # the trust rules in force. One tuple, swapped atomically: the root scope is shared by every thread,
        # each with its own baggage.
        cached = self._upstream
        if cached is not None and cached[0] is bag and cached[1] == _trust_generation:
            return cached[2]
        generation = _trust_generation
        merged = MappingProxyType({**_upstream_attributes(bag, self.attributes), **self.attributes})
        self._upstream = (bag, generation, merged)
        return merged


_ROOT = _Scope(_EMPTY)
_current: contextvars.ContextVar[_Scope] = contextvars.ContextVar("aicost_attribution", default=_ROOT)
_BAGGAGE_KEY = otel_baggage._BAGGAGE_KEY  # the key the W3C baggage propagator reads and writes


def _upstream_attributes(bag: Mapping[str, object], local: Mapping[str, str] = _EMPTY) -> dict[str, str]:
    """aicost fields from (untrusted) baggage: trusted keys only, bounded in number and in distinct values,
    invalid values dropped. Keys whose value overflowed (they read "other"), and tags whose name did (they are
    dropped), are listed in ``aicost.attribution.upstream_overflow``.
    Keys a local scope sets are skipped: the local value wins, and its own baggage entry is not upstream input."""
    out: dict[str, str] = {}
    overflowed: list[str] = []
    tags = 0
    for key, value in bag.items():
        if key in local:
            continue
        if not isinstance(key, str) or not semconv.bounded_value(value) or not value.isprintable():
            continue
        if key in _KNOWN_KEYS:
            if key not in _trusted_keys:
                continue
        elif not (_trust_tags and key.startswith(semconv.AICOST_TAG_PREFIX) and tags < semconv.MAX_OUTSIDE_TAGS
                  and semconv.is_tag_name(key[len(semconv.AICOST_TAG_PREFIX):])):
            continue
        else:
            tags += 1
            if not _admit(semconv.AICOST_TAG_PREFIX, key):
                # The tag names are bounded too. One past the cap is dropped (a new name would be a new attribute,
                # and a new label where tags are labels), and said: read as absent, a cache scoped on that tag
                # would put every tenant it names in one shared entry.
                overflowed.append(key)
                continue
        if _admit(key, value):
            out[key] = value
        else:
            out[key] = OVERFLOW_VALUE
            overflowed.append(key)
    if overflowed:
        out[semconv.AICOST_ATTRIBUTION_UPSTREAM_OVERFLOW] = ",".join(sorted(overflowed))
    return out


def _admit(key: str, value: str) -> bool:
    """True if ``value`` is one of the first ``max_upstream_values`` distinct values seen for ``key``."""
    seen = _upstream_seen.get(key)
    if seen is not None and value in seen:  # the common case, lock-free (set membership is atomic)
        return True
    with _upstream_lock:
        seen = _upstream_seen.setdefault(key, set())
        if value in seen:
            return True
        if len(seen) < _max_upstream_values:
            seen.add(value)
            return True
        _upstream_overflow[key] = count = _upstream_overflow.get(key, 0) + 1
    if count == 1:
        if key == semconv.AICOST_TAG_PREFIX:
            log_once(f"attribution:overflow:{key}", logging.WARNING,
                     "aicost: upstream baggage brought more than %d distinct tag names; tags with further new names "
                     "are dropped (see aicost.attribution.upstream_stats())", _max_upstream_values)
        else:
            log_once(f"attribution:overflow:{key}", logging.WARNING,
                     "aicost: upstream baggage brought more than %d distinct values of %s; further new values are "
                     "recorded as %r (see aicost.attribution.upstream_stats())", _max_upstream_values, key,
                     OVERFLOW_VALUE)
    return False


def current_attributes() -> Mapping[str, str]:
    """The attribution in effect here, as span attributes (read-only). Called by the core at every span start."""
    scope = _current.get()
    if _accept_upstream:
        bag = otel_context.get_value(_BAGGAGE_KEY)
        if bag:
            return scope.with_upstream(bag)
    return scope.attributes


# ---------------------------------------------------------------------------------------------------------
# One scope machinery for context managers and for decorating functions, coroutines and generators.


class _Activation:
    """What one activation changed, filled in step by step so a failure halfway can still be undone."""

    __slots__ = ("scope_token", "otel_token", "collect_token", "unit_token")

    def __init__(self) -> None:
        self.scope_token: contextvars.Token | None = None
        self.otel_token: object = None  # the OpenTelemetry context attached: baggage (and a unit's span)
        self.collect_token: contextvars.Token | None = None  # hooks.start_collecting's
        self.unit_token: contextvars.Token | None = None

    def reset_scope(self) -> bool:
        """Undo the attribution first: its reset says exactly whether this is the context the activation was made in
        (a token resets only there). False: it is not (a coroutine closed by the garbage collector in another thread
        or task), nothing of the activation is set here, and the rest is left alone too (detaching the OpenTelemetry
        context would log an error for each token)."""
        token = self.scope_token
        if token is None:
            return True
        self.scope_token = None
        try:
            _current.reset(token)
        except ValueError:
            return False
        return True


_NOT_STARTED = object()


def _owner() -> tuple[int, int]:
    loop = asyncio._get_running_loop()
    task = asyncio.current_task(loop) if loop is not None else None
    return threading.get_ident(), id(task)


class _ScopeBase:
    """Shared plumbing. Subclasses define ``_start`` (once per use), ``_activate``/``_deactivate`` (around
    every stretch of code that runs inside the scope: the whole ``with`` body, or each step of a generator)
    and ``_finish`` (once, with the exception that ended the use, if any).

    Generators get the scope only while their body runs: between ``yield``\\ s the consumer's context is
    restored, so nothing leaks into the caller, and the scope is re-entered in whatever context resumes it.
    """

    # One lock for every scope's ``with`` state: it is held for one dict operation, and a scope is made per
    # request, so a lock per instance would cost each request the fork registration (~4 k instructions).
    _with_lock = _fork.lock()

    def __init__(self) -> None:
        # ``with`` state per thread and task, so one instance may be shared (e.g. a module-level scope).
        self._with_states: dict[tuple[int, int], list[tuple[Any, _Activation | None]]] = {}

    # subclass hooks -----------------------------------------------------------------------------------
    def _start(self) -> Any:
        return None

    def _activate(self, state: Any, act: _Activation) -> None:
        raise NotImplementedError

    def _deactivate(self, state: Any, act: _Activation) -> None:
        raise NotImplementedError

    def _finish(self, state: Any, exc: BaseException | None) -> None:
        return None

    def _handle(self, state: Any) -> Any:
        return None

    # guarded wrappers: a bug in aicost must not become an application error ---------------------------
    def _safe_start(self) -> Any:
        try:
            return self._start()
        except Exception:
            _log_once("start", "aicost: could not start an attribution scope; continuing without it")
            return None

    def _safe_activate(self, state: Any) -> _Activation:
        act = _Activation()
        try:
            self._activate(state, act)
        except Exception:
            _log_once("activate", "aicost: could not enter an attribution scope fully; continuing")
        return act

    def _safe_deactivate(self, state: Any, act: _Activation | None) -> None:
        if act is None:
            return
        try:
            self._deactivate(state, act)
        except Exception:
            _log_once("deactivate", "aicost: could not leave an attribution scope cleanly")

    def _safe_finish(self, state: Any, exc: BaseException | None) -> None:
        if isinstance(exc, GeneratorExit):
            self._finish_abandoned(state)
        else:
            self._safe_finish_now(state, exc)

    def _safe_finish_now(self, state: Any, exc: BaseException | None) -> None:
        try:
            self._finish(state, exc)
        except Exception:
            _log_once("finish", "aicost: could not finish a unit of work cleanly")

    def _finish_abandoned(self, state: Any) -> None:
        """End a use whose body was closed while suspended (``GeneratorExit``: a coroutine dropped mid-``await``, a
        ``with`` block in a frame that was closed), or let go without being closed at all (an async generator whose
        event loop is gone: ``_Running``). What closes it is often the garbage collector, running in whatever
        thread dropped the last reference or ran the collection, perhaps holding a lock that ending the unit takes
        (a span processor's, the ledger's, a listener's): so, as for a use that never started (``_Started``), the
        ending is handed to aicost's worker thread (:meth:`_finish_on_worker`). A fresh ``GeneratorExit``: the
        ending needs what ended the body, not the frames its traceback holds."""
        self._finish_on_worker(state, GeneratorExit())

    def _finish_on_worker(self, state: Any, exc: BaseException | None) -> None:
        """End the use on aicost's worker thread (:mod:`aicost._gc`), never here: nothing here can raise or wait."""
        if state is None:  # a use with nothing to end
            return
        try:
            _gc.defer(functools.partial(self._safe_finish_now, state, exc))
        except Exception:  # never into the closing frame: a finalizer's error has nowhere to go
            pass

    # context manager ------------------------------------------------------------------------------------
    def __enter__(self) -> Any:
        state = self._safe_start()
        act = self._safe_activate(state)
        owner = _owner()
        with self._with_lock:
            self._with_states.setdefault(owner, []).append((state, act))
        return self._handle(state)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        owner = _owner()
        foreign = False
        with self._with_lock:
            stack = self._with_states.get(owner)
            if not stack and len(self._with_states) == 1:
                # Entered in another thread or task (an exit stack handed over): the only use open is this one.
                (owner, stack), = self._with_states.items()
                foreign = True
            state, act = stack.pop() if stack else (None, None)
            if stack is not None and not stack:
                del self._with_states[owner]
        if foreign:
            # The context the scope was set in is not this one, and no code can change another context: the
            # entering task or thread keeps the scope (its contextvars) until it ends. The unit still ends here.
            # Said, unless the frame the block was in is being closed (GeneratorExit: a coroutine the garbage
            # collector closes where it was dropped): its context goes with it, and a finalizer logs nothing.
            if not isinstance(exc, GeneratorExit):
                log_once("attribution:foreign-exit", logging.WARNING, "aicost: an attribution scope was left in "
                         "another thread or task than the one that entered it; that one keeps the scope until it ends")
        else:
            self._safe_deactivate(state, act)
        self._safe_finish(state, exc)

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    # decorator ------------------------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"aicost.{type(self).__name__} decorates a callable, got {type(fn).__name__}")
        if inspect.isasyncgenfunction(fn):
            wrapper = self._wrap_async_generator(fn)
        elif inspect.isgeneratorfunction(fn):
            wrapper = self._wrap_generator(fn)
        elif inspect.iscoroutinefunction(fn):
            wrapper = self._wrap_coroutine(fn)
        else:
            wrapper = self._wrap_function(fn)
        return functools.wraps(fn)(wrapper)  # type: ignore[return-value]

    def _wrap_function(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            state = self._safe_start()
            act = self._safe_activate(state)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._safe_deactivate(state, act)
                self._safe_finish(state, exc)
                raise
            self._safe_deactivate(state, act)
            # A plain function that returns a coroutine or a generator (a decorator of its own in between, an object
            # with ``async def __call__``): its body runs when that is awaited or iterated, so the use goes on there.
            later = _RUNS_LATER.get(type(result))  # one lookup: this is on every decorated call
            if later is not None:
                return self._run_later(later, result, state)
            self._safe_finish(state, None)
            return result

        return wrapper

    def _run_later(self, later: Callable[..., Callable[..., Any]], result: Any, state: Any) -> Any:
        """``result`` (a coroutine, a generator, an async generator), wrapped by ``later`` to run inside the use
        ``state`` started, which it ends; named as ``result`` is, so its repr and a "never awaited" warning name the
        application's function."""
        wrapped = later(self, lambda: result, _Started(self, state, result))()
        wrapped.__name__, wrapped.__qualname__ = result.__name__, result.__qualname__
        return wrapped

    # ``started``: a use already started (a plain function's call that returned what runs later), as ``_Started``.

    def _wrap_coroutine(self, fn: Callable[..., Any], started: Any = _NOT_STARTED) -> Callable[..., Any]:
        # The coroutine runs in one task context from start to end, so one activation covers every await.
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            state = self._safe_start() if started is _NOT_STARTED else started.take()
            act = self._safe_activate(state)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                self._safe_deactivate(state, act)
                self._safe_finish(state, exc)
                raise
            self._safe_deactivate(state, act)
            self._safe_finish(state, None)
            return result

        return wrapper

    def _wrap_generator(self, fn: Callable[..., Any], started: Any = _NOT_STARTED) -> Callable[..., Any]:
        scope = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            gen = fn(*args, **kwargs)
            state = scope._safe_start() if started is _NOT_STARTED else started.take()
            use = _Running(scope, state)  # ends the use, once: every ending below goes through it
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                act = scope._safe_activate(state)
                try:
                    if to_throw is not None:
                        item = gen.throw(to_throw)
                    else:
                        item = gen.send(to_send)
                except StopIteration as stop:
                    scope._safe_deactivate(state, act)
                    use.finish(None)
                    return stop.value
                except BaseException as exc:
                    scope._safe_deactivate(state, act)
                    use.finish(exc)
                    raise
                scope._safe_deactivate(state, act)
                to_throw = None
                try:
                    to_send = yield item
                except GeneratorExit:
                    # Closed early by the consumer, at a yield: close the inner generator inside the scope. The
                    # consumer stopping (``break``, ``close()``, dropping it) is how a generator ends when it is
                    # read no further, not a failure: its use ends as one that finished, unless closing the inner
                    # generator raises.
                    act = scope._safe_activate(state)
                    try:
                        gen.close()
                    except BaseException as exc:
                        scope._safe_deactivate(state, act)
                        use.finish(exc)
                        raise
                    scope._safe_deactivate(state, act)
                    use.finish(None)
                    raise
                except BaseException as exc:
                    to_throw = exc

        return wrapper

    def _wrap_async_generator(self, fn: Callable[..., Any], started: Any = _NOT_STARTED) -> Callable[..., Any]:
        scope = self

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            agen = fn(*args, **kwargs)
            state = scope._safe_start() if started is _NOT_STARTED else started.take()
            use = _Running(scope, state)  # as for a generator, above; and what ends a use never closed
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                act = scope._safe_activate(state)
                try:
                    if to_throw is not None:
                        item = await agen.athrow(to_throw)
                    else:
                        item = await agen.asend(to_send)
                except StopAsyncIteration:
                    scope._safe_deactivate(state, act)
                    use.finish(None)
                    return
                except BaseException as exc:
                    scope._safe_deactivate(state, act)
                    use.finish(exc)
                    raise
                scope._safe_deactivate(state, act)
                to_throw = None
                try:
                    to_send = yield item
                except GeneratorExit:  # closed by the consumer at a yield: as for a generator, above
                    act = scope._safe_activate(state)
                    try:
                        await agen.aclose()
                    except BaseException as exc:
                        scope._safe_deactivate(state, act)
                        use.finish(exc)
                        raise
                    scope._safe_deactivate(state, act)
                    use.finish(None)
                    raise
                except BaseException as exc:
                    to_throw = exc

        return wrapper


class _Running:
    """A use a generator's wrapper runs (sync or async), which it ends through :meth:`finish`, once.

    Two endings cannot happen where the wrapper is. A generator dropped in a reference cycle is closed by the cyclic
    collector, which runs inside whatever allocation crossed its threshold, in any thread, perhaps while it holds a
    lock ending the unit takes: an ending inside a collection (:func:`aicost._gc.collecting`, known while this use
    is watched: :func:`aicost._gc.watch`) is handed to aicost's worker, as a coroutine closed mid-``await`` is
    (``_ScopeBase._finish_abandoned``). And an async generator is not closed by the collector at all: it is handed
    to its event loop's finalizer hook (PEP 525), which schedules ``aclose()`` on the loop; a loop that is closed
    (or never runs again) never runs it, and the frame is let go unclosed, suspended where it was, its ``except``
    and ``finally`` never run. This object, which only the wrapper's frame holds, then goes with the frame and
    ends the use as one closed while suspended (``GeneratorExit``, ``failed``), on the worker. A generator, which
    the collector always closes, never gets there; nor does anything at interpreter exit."""

    __slots__ = ("scope", "state")

    def __init__(self, scope: _ScopeBase, state: Any) -> None:
        self.scope: _ScopeBase | None = scope
        self.state = state
        if state is not None:  # (``None``: a use with nothing to end)
            _gc.watch()

    def finish(self, exc: BaseException | None) -> None:
        scope = self.scope
        if scope is None:  # ended already (by ``__del__``, in the collection that closes the frame)
            return
        self.scope = None
        state = self.state
        if state is None:
            return
        try:
            if _gc.collecting() and not isinstance(exc, GeneratorExit):  # (a GeneratorExit goes there anyway)
                scope._finish_on_worker(state, exc)
            else:
                scope._safe_finish(state, exc)
        finally:
            _gc.unwatch()  # after: unwatched, the collection under way is no longer known

    def __del__(self) -> None:
        scope = self.scope
        if scope is None:
            return
        self.scope = None
        try:
            if self.state is not None:
                if not sys.is_finalizing():
                    scope._finish_abandoned(self.state)
                _gc.unwatch()
        except Exception:  # never into the host: a finalizer's error has nowhere to go
            pass


class _Started:
    """A use that a plain function's call started, handed to the wrapper of what the call returned to run later (a
    coroutine, a generator, an async generator), which ends it once it runs (:meth:`take`).

    Dropped without ever running (a forgotten ``await``, a task cancelled before it started, a generator nobody
    read), that wrapper never gets to end the use, and nothing else would: the unit's span would stay open, never
    exported, its run never recorded. So this object, which only the wrapper holds, ends it when it is collected,
    as a use whose body never started (:class:`~aicost.errors.NeverStarted`). Not in the finalizer itself: it runs
    wherever the last reference went or the cyclic collector ran, in any thread, perhaps holding a lock that ending
    the unit takes (a span processor's, the ledger's, a listener's). It is handed to aicost's worker thread
    (:mod:`aicost._gc`), as calls the collector reaches are; nothing at interpreter exit.

    The returned coroutine is closed here, unstarted, so it runs no code and says nothing: the wrapper, which bears
    its name, is what the application dropped, and warns "never awaited" when Python would (not when it was
    closed, or thrown into by a task cancelled before it ran). So the warnings are those Python gives without
    aicost."""

    __slots__ = ("scope", "state", "result")

    def __init__(self, scope: _ScopeBase, state: Any, result: Any) -> None:
        self.scope: _ScopeBase | None = scope
        self.state = state
        self.result = result

    def take(self) -> Any:
        """The use's state, for the wrapper that now runs what was returned: ending it is the wrapper's from here."""
        self.scope = self.result = None
        return self.state

    def __del__(self) -> None:
        scope = self.scope
        if scope is None:  # taken
            return
        try:
            result = self.result
            if type(result) is types.CoroutineType and inspect.getcoroutinestate(result) == inspect.CORO_CREATED:
                result.close()
            if self.state is not None and not sys.is_finalizing():  # (``None``: a use with nothing to end)
                _gc.defer(functools.partial(scope._safe_finish, self.state, NeverStarted(
                    f"{type(result).__name__} {result.__qualname__} was dropped without being awaited or iterated")))
        except Exception:  # never into the host: a finalizer's error has nowhere to go
            pass


# What a plain function may return that runs later, and the wrapper that runs it inside the scope.
_RUNS_LATER: dict[type, Callable[..., Callable[..., Any]]] = {
    types.CoroutineType: _ScopeBase._wrap_coroutine,
    types.GeneratorType: _ScopeBase._wrap_generator,
    types.AsyncGeneratorType: _ScopeBase._wrap_async_generator,
}


class attribute(_ScopeBase):
    """Attribute every LLM call made inside to a team, feature, user, customer and free-form tags.

    Use as ``with aicost.attribute(team="search"):`` (also ``async with``) or as a decorator on functions,
    coroutines, generators and async generators. Nested scopes merge; the innermost value of a field wins.
    ``None`` leaves the outer value in place. Invalid names or values raise here, at the call site.
    """

    def __init__(
        self,
        team: str | None = None,
        feature: str | None = None,
        user: str | None = None,
        customer: str | None = None,
        **tags: str,
    ) -> None:
        self._take(_build_values("aicost.attribute",
                                 {"team": team, "feature": feature, "user": user, "customer": customer}, tags))

    @classmethod
    def _of(cls, values: dict[str, str]) -> "attribute":
        """A scope of values :func:`_build_values` has checked, for the public function that checked them (a
        ``feature``, whose refusals name it)."""
        scope = cls.__new__(cls)
        scope._take(values)
        return scope

    def _take(self, values: dict[str, str]) -> None:
        super().__init__()
        self._values = values
        self._cache: tuple[_Scope, _Scope] | None = None
        self._baggage: tuple[frozenset[str], tuple[tuple[str, str], ...]] | None = None

    @property
    def values(self) -> Mapping[str, str]:
        """This scope's own span attributes (not merged with outer scopes)."""
        return MappingProxyType(self._values)

    def _child_of(self, parent: _Scope) -> _Scope:
        cache = self._cache
        if cache is not None and cache[0] is parent:
            return cache[1]
        child = _Scope(MappingProxyType({**parent.attributes, **self._values}))
        self._cache = (parent, child)
        return child

    def _propagated_values(self) -> tuple[tuple[str, str], ...]:
        policy = _propagated
        cached = self._baggage
        if cached is not None and cached[0] is policy:
            return cached[1]
        values = tuple((k, v) for k, v in self._values.items() if _is_propagated(k))
        self._baggage = (policy, values)
        return values

    def _with_baggage(self, ctx: Any) -> Any:
        """``ctx`` with this scope's propagated fields in its W3C baggage (``ctx`` itself if none propagate)."""
        for key, value in self._propagated_values():
            ctx = otel_baggage.set_baggage(key, value, context=ctx)
        return ctx

    def _activate(self, state: Any, act: _Activation) -> None:
        act.scope_token = _current.set(self._child_of(_current.get()))
        if self._propagated_values():
            act.otel_token = otel_context.attach(self._with_baggage(otel_context.get_current()))

    def _deactivate(self, state: Any, act: _Activation) -> None:
        if act.reset_scope() and act.otel_token is not None:
            otel_context.detach(act.otel_token)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"aicost.attribute({dict(self._values)!r})"


# ---------------------------------------------------------------------------------------------------------
# Units of work


_unit_var: contextvars.ContextVar["UnitOfWork | None"] = contextvars.ContextVar("aicost_unit", default=None)


class UnitOfWork:
    """A running ``feature`` scope: its live rollup and its outcome.

    The outcome is ``"succeeded"`` when the unit ends normally (a generator: also when its consumer stops reading it
    between items), ``"failed"`` when it ends with an exception or did not finish (cancelled, or a coroutine or an
    async generator dropped while suspended: ``GeneratorExit``), ``"never_started"`` when its body never ran (what a
    plain function under ``@feature`` returned, a coroutine or a generator, was dropped without being awaited or
    iterated: see ``_Started``), unless the application chose a label with :meth:`set_outcome` (e.g.
    ``"cache_hit"``, ``"refused"``, ``"answer_rejected"``), which always wins.
    """

    __slots__ = ("name", "collector", "span", "outcome", "run_id", "span_run_id", "started_ns", "attributes",
                 "context_within")

    def __init__(self, name: str, span: Any) -> None:
        self.name = name
        self.collector = hooks.CallCollector()
        self.span = span
        self.outcome: str | None = None
        # Identifies this run in the ledger and in event listeners: its span id, or a random id of the same shape
        # when no span records (no OpenTelemetry SDK configured). The run id its calls' and cache hits' spans carry
        # (``aicost.run.id``) is ``span_run_id``: see :func:`_run_ids_of`.
        self.run_id, self.span_run_id = _run_ids_of(span)
        self.started_ns = time.time_ns()
        # The attribution its body runs with, as of its latest activation: what its span and run are labelled with,
        # wherever it ends (a generator finished by its consumer, an exit stack closed in another task).
        self.attributes: Mapping[str, str] | None = None
        # (the context the body was last entered from, the propagation policy then, the context it ran in): kept
        # for the next entry from the same one (``feature._context_within``).
        self.context_within: tuple[Any, frozenset[str], Any] | None = None

    def set_outcome(self, outcome: str) -> None:
        self.outcome = _check_value("UnitOfWork.set_outcome", "outcome", outcome)

    @property
    def calls(self) -> int:
        return self.collector.calls

    @property
    def cost_usd(self) -> Decimal:
        return self.collector.cost_usd

    def rollup_attributes(self) -> dict[str, Any]:
        """The span attributes that summarise the unit. Never ``gen_ai.usage.cost``: see docs/attribution.md."""
        results = list(self.collector.results)
        usage = Usage()
        for r in results:
            if r.usage is not None:
                usage = usage + r.usage
        known: list[Decimal] = []
        unknown = errors = 0
        for r in results:
            if r.error_type is not None:
                errors += 1
            c = r.cost_usd
            if c is not None:
                known.append(c)
            elif r.cost is not None:  # billed, at a price (or by a unit) aicost does not know
                unknown += 1
        total = sum_usd(known)
        return {
            semconv.AICOST_ROLLUP_CALLS: len(results),
            semconv.AICOST_ROLLUP_ERRORS: errors,
            semconv.AICOST_ROLLUP_UNKNOWN_COST_CALLS: unknown,
            semconv.AICOST_ROLLUP_COST: float(total),
            semconv.AICOST_ROLLUP_COST_TOTAL: format_usd(total),
            semconv.AICOST_ROLLUP_INPUT_TOKENS: usage.input_tokens,
            semconv.AICOST_ROLLUP_OUTPUT_TOKENS: usage.output_tokens,
            semconv.AICOST_ROLLUP_CACHE_READ_TOKENS: usage.cache_read_tokens,
            semconv.AICOST_ROLLUP_CACHE_WRITE_TOKENS: usage.cache_write_tokens,
            semconv.AICOST_ROLLUP_REASONING_TOKENS: usage.reasoning_tokens,
            semconv.AICOST_ROLLUP_USAGE_ESTIMATED: usage.estimated,
        }


def _run_ids_of(span: Any) -> tuple[str, str | None]:
    """-> (the run's id, the run id the spans of its calls and cache hits carry).

    The run's id is its span's id when the span records, else a random one of the same shape: a span that records
    nothing need not be the unit's own (OpenTelemetry's no-op tracer hands back the current span's context, so
    every unit inside one request span would share that span's id, and the ledger, keyed by run id, would keep one
    of their runs). A ledger fed from exported spans gets the run from its span alone, so the spans inside it name
    the run only when that span is exported: recorded and sampled. A unit whose span is not (features on a no-op
    tracer, or sampled out, while the calls' spans record) would otherwise have its calls' rows name a run that
    ledger never gets. The in-process ledger and event listeners are told of every run (``UnitFinished``) and keep
    the run's id."""
    try:
        if span.is_recording():
            context = span.get_span_context()
            if context.is_valid:
                run_id = format(context.span_id, "016x")
                return run_id, run_id if context.trace_flags.sampled else None
    except Exception:
        pass
    return format(random.getrandbits(64), "016x"), None


def current_run_id() -> str | None:
    """The run id of the innermost running ``feature`` unit, or ``None`` (read by the core at each call start)."""
    unit = _unit_var.get()
    return None if unit is None else unit.run_id


def current_unit() -> UnitOfWork | None:
    """The innermost running ``feature`` unit, or ``None``."""
    return _unit_var.get()


def set_outcome(outcome: str) -> None:
    """Record the outcome of the innermost running unit of work (no-op outside one)."""
    _check_value("aicost.set_outcome", "outcome", outcome)
    unit = _unit_var.get()
    if unit is not None:
        unit.outcome = outcome


_tracer_provider: Any = None


def set_tracer_provider(tracer_provider: Any) -> None:
    """Where unit-of-work spans go; ``None``: the provider given to ``aicost.instrument()`` (else the global one).
    Anything else without ``get_tracer()`` raises ``ConfigurationError`` here, not at the first unit."""
    global _tracer_provider
    if tracer_provider is not None and not callable(getattr(tracer_provider, "get_tracer", None)):
        raise ConfigurationError(f"set_tracer_provider: tracer_provider must be an OpenTelemetry TracerProvider "
                                 f"(with get_tracer()) or None (the one given to aicost.instrument()), got "
                                 f"{tracer_provider!r}")
    _tracer_provider = tracer_provider


def _tracer() -> trace.Tracer:
    if _tracer_provider is not None:
        return trace.get_tracer("aicost", tracer_provider=_tracer_provider)
    try:
        from . import telemetry  # the provider given to aicost.instrument(), when the core is present

        return telemetry.tracer()
    except ImportError:
        return trace.get_tracer("aicost")


class feature(_ScopeBase):
    """A unit of work: attributes everything inside to ``feature=name`` and records one span whose
    ``aicost.rollup.*`` attributes sum the calls, tokens and exact cost of every LLM call started inside it
    that finished before it ended (nested units included), plus its outcome.

    ``with aicost.feature("summarize") as unit: ... unit.set_outcome("cache_hit")`` or ``@aicost.feature(...)``
    (then :func:`aicost.attribution.set_outcome` reaches the innermost unit).
    """

    def __init__(
        self,
        name: str,
        *,
        team: str | None = None,
        user: str | None = None,
        customer: str | None = None,
        **tags: str,
    ) -> None:
        super().__init__()
        self.name = _check_value("aicost.feature", "name", name)
        self._attribute = attribute._of(_build_values(
            "aicost.feature", {"team": team, "feature": name, "user": user, "customer": customer}, tags))

    def _start(self) -> UnitOfWork:
        try:
            span = _tracer().start_span(
                semconv.AICOST_UNIT_SPAN_NAME_FORMAT.format(name=self.name), kind=trace.SpanKind.INTERNAL
            )
        except Exception:  # a span processor that raises in on_start: the unit still collects and rolls up
            _log_once("unit-span-start", "aicost: could not start a feature's span; its calls are still rolled up")
            span = None
        return UnitOfWork(self.name, span)

    def _activate(self, state: UnitOfWork | None, act: _Activation) -> None:
        # Attribution first, on its own: whatever fails after it, the body still runs charged to this feature,
        # and whatever fails in it (baggage), the unit still collects its calls.
        try:
            act.scope_token = _current.set(self._attribute._child_of(_current.get()))
        except Exception:
            _log_once("activate-attribution", "aicost: could not enter a feature's attribution fully; continuing")
        if state is not None:
            act.unit_token = _unit_var.set(state)
            act.collect_token = hooks.start_collecting(state.collector)
        outside = otel_context.get_current()
        inside = self._context_within(state, outside)
        if inside is not outside:
            act.otel_token = otel_context.attach(inside)
        if state is not None and act.scope_token is not None:
            state.attributes = current_attributes()

    def _context_within(self, state: UnitOfWork | None, outside: Any) -> Any:
        """The OpenTelemetry context the body runs in: ``outside`` (that of the code running it) with this feature's
        baggage, and the unit's span current, so the LLM spans are its children in a trace view.

        Kept on the unit for the context it was made from: a generator's body is entered again at every item, most
        often from the same context, and making it afresh (two copies of the context, new baggage, which
        ``current_attributes`` then merged with upstream fields afresh too) was most of what an item cost. OpenTelemetry
        contexts are immutable, so the same ``outside`` gives the same result; another one (the generator read from
        elsewhere) makes it anew."""
        policy = _propagated
        kept = state.context_within if state is not None else None
        if kept is not None and kept[0] is outside and kept[1] is policy:
            return kept[2]
        inside = outside
        try:
            inside = self._attribute._with_baggage(outside)
        except Exception:
            _log_once("activate-attribution", "aicost: could not enter a feature's attribution fully; continuing")
        if state is not None:
            if state.span is not None:
                inside = trace.set_span_in_context(state.span, inside)
            state.context_within = (outside, policy, inside)
        return inside

    def _deactivate(self, state: UnitOfWork | None, act: _Activation) -> None:
        if not act.reset_scope():  # left in another context: nothing of it is set here
            return
        try:
            if act.otel_token is not None:
                otel_context.detach(act.otel_token)  # type: ignore[arg-type]
        finally:
            try:
                if act.collect_token is not None:
                    hooks.stop_collecting(act.collect_token, state.collector)  # type: ignore[union-attr]
            finally:
                if act.unit_token is not None:
                    _unit_var.reset(act.unit_token)

    def _handle(self, state: UnitOfWork | None) -> UnitOfWork | None:
        return state

    def _finish(self, state: UnitOfWork | None, exc: BaseException | None) -> None:
        if state is None:
            return
        # A body closed while suspended (GeneratorExit: dropped mid-await, see _finish_abandoned) did not finish,
        # as one cancelled (CancelledError) did not: both failed. A consumer closing a generator between items is
        # not this: its wrapper ends the use with no exception.
        failed = exc is not None and not isinstance(exc, (StopIteration, StopAsyncIteration))
        if state.outcome is None:
            state.outcome = (semconv.AICOST_OUTCOME_SUCCEEDED if not failed
                             else semconv.AICOST_OUTCOME_NEVER_STARTED if isinstance(exc, NeverStarted)
                             else semconv.AICOST_OUTCOME_FAILED)
        attrs = state.attributes if state.attributes is not None else _attributes_within(self._attribute)
        span = state.span
        try:
            if span is not None and span.is_recording():
                span.set_attributes(attrs)
                span.set_attribute(semconv.AICOST_OUTCOME, state.outcome)
                span.set_attribute(semconv.AICOST_RUN_ID, state.run_id)  # what its calls carry: one join key
                span.set_attributes(state.rollup_attributes())
                if failed:
                    span.set_attribute(semconv.ERROR_TYPE, type(exc).__qualname__)
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
            if span is not None:
                span.end()
        except Exception:  # a span processor that raises in on_end: the unit's metrics are still recorded
            _log_once("unit-span-end", "aicost: could not end a feature's span; its metrics are still recorded")
        try:
            from . import metrics

            metrics.record_unit(self.name, state.outcome, attrs)
        except Exception:
            _log_once("unit-metrics", "aicost: could not record unit-of-work metrics")
        if hooks.has_event_listeners():
            now = time.time_ns()
            hooks.emit(hooks.UnitFinished(
                name=self.name, run_id=state.run_id, outcome=state.outcome, attribution=attrs,
                calls=state.calls, cost_usd=state.cost_usd, span=span, time_ns=now,
                duration_s=(now - state.started_ns) / 1e9,
            ))


def _attributes_within(attr: attribute) -> Mapping[str, str]:
    """The attribution the unit's body runs with (for the unit span's own attributes)."""
    token = _current.set(attr._child_of(_current.get()))
    try:
        return current_attributes()
    finally:
        _current.reset(token)


# ---------------------------------------------------------------------------------------------------------
# Threads


def wrap(fn: F) -> F:
    """Bind ``fn`` to the current context (attribution, units, OpenTelemetry span and baggage).

    ``executor.submit(aicost.attribution.wrap(work), x)``: contextvars are NOT inherited by threads, so
    without this a pool worker runs with whatever context it started with. Each call runs in its own copy of
    the captured context, so one wrapped function can run in many threads at once.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> Any:
        return captured.copy().run(fn, *args, **kwargs)

    return bound  # type: ignore[return-value]


class ContextExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in the context of the code that submitted them."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any):  # type: ignore[override]
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Cross-service helpers for code without OpenTelemetry HTTP instrumentation


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Write the current trace context and baggage (incl. propagated attribution) into ``headers``."""
    from opentelemetry import propagate

    carrier: dict[str, str] = {} if headers is None else headers
    propagate.inject(carrier)
    return carrier


def _header_text(value: object) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


class attributes_from_headers:
    """``with attributes_from_headers(request.headers):`` — run a request handler in the context the upstream
    service sent (trace parent and baggage), so its LLM calls are charged to the upstream attribution. Takes a
    mapping or (name, value) pairs, as str or bytes (ASGI's ``scope["headers"]``)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers
        self._tokens: list[object] = []

    def __enter__(self) -> Mapping[str, str]:
        from opentelemetry import propagate

        # HTTP header names are case-insensitive but the propagators' default getter is not: stdlib servers
        # and urllib hand over "Baggage" / "Traceparent". Repeated headers are joined, as RFC 9110 allows. ASGI's
        # raw ``scope["headers"]`` are (bytes, bytes) pairs, in Latin-1 (str() of them would name no header).
        carrier: dict[str, str] = {}
        items = self._headers.items() if hasattr(self._headers, "items") else self._headers
        for name, value in items:
            key = _header_text(name).lower()
            text = _header_text(value)
            carrier[key] = f"{carrier[key]},{text}" if key in carrier else text
        ctx = propagate.extract(carrier)
        self._tokens.append(otel_context.attach(ctx))
        return current_attributes()

    def __exit__(self, *exc: object) -> None:
        if self._tokens:
            otel_context.detach(self._tokens.pop())  # type: ignore[arg-type]

