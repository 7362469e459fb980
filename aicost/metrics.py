"""Cost and usage as OpenTelemetry metrics, for the dashboards and alerts teams already run.

Instruments (names in :mod:`aicost.semconv`), created once per :func:`configure`:

* ``gen_ai.client.token.usage`` — histogram ``{token}``, ``gen_ai.token.type`` = input | output, the GenAI
  conventions' explicit buckets.
* ``gen_ai.client.operation.duration`` — histogram ``s`` (``error.type`` on failures).
* ``aicost.cost`` — counter, USD, labelled provider, operation, request/response model, team, feature.
* ``aicost.cost.nano_usd`` — the same money as an integer count of nano-dollars, same labels.
* ``aicost.feature.runs`` — counter of finished units of work, labelled feature, outcome, team.

Why the cost counter is an *observable* counter fed from exact ``Decimal`` running totals: an OTel counter adds
floats, and a float sum of many small prices drifts (0.1 + 0.2 != 0.3), so after a million calls the dashboard
and the span totals would disagree in the last digits. Here every series keeps its exact total and reports
``float(total)``, the double nearest to the exact value, at each collection: no drift, however many calls.

The float arithmetic left is the backend's own: ``sum by (team)`` over several series adds doubles (the test
against a real Prometheus saw a team total of 0.00016055 come back as 0.00016055000000000003). Hence the second
counter, ``aicost.cost.nano_usd``: integer nano-dollars (truncated from the exact total, the remainder carried),
which every backend adds exactly while a result stays below 2**53 nano-USD (about 9 million USD). A price that
is a multiple of $0.001 per million tokens is a whole number of nano-dollars per token, so for such prices the
nano counter equals the span totals to the last digit. Use it for reconciliation and finance queries; use
``aicost.cost`` where dashboards expect USD.

Why the cost series are capped (``MAX_COST_SERIES``): each is an exact total held for the life of the process, and
labels come partly from requests (a gateway passing its users' model names through); past the cap, new label sets
add to one ``otel.metric.overflow=true`` series, so memory is bounded and no money is lost.

Why user and customer are not labels by default: each distinct value is a new time series in every metric
backend; a million customers is a million series per model. They are on every span; opt in with
``configure(high_cardinality_labels=True)`` (or a subset: ``{"customer"}``) when the ids are few.
"""

from __future__ import annotations

import atexit
import collections
import logging
import sys
import threading
import time
import weakref
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Iterable, Mapping

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Observation

from . import semconv
from . import _fork
from ._log import log_once
from .errors import ConfigurationError, ConfigurationTypeError
from .hooks import CallResult
from .pricing.cost import MONEY, ZERO as _ZERO
from .pricing.money import canonical

__all__ = ["configure", "flush", "record_call", "record_unit"]


_LOW_CARDINALITY = (semconv.AICOST_TEAM, semconv.AICOST_FEATURE)
_HIGH_CARDINALITY_FIELDS = {"user": semconv.AICOST_USER, "customer": semconv.AICOST_CUSTOMER}

def _log_once(key: str, message: str) -> None:
    log_once(f"metrics:{key}", logging.WARNING, message, exc_info=True)


def _label_policy(high_cardinality_labels: bool | Iterable[str]) -> tuple[tuple[str, ...], bool]:
    """-> (extra attribution keys allowed as labels, whether aicost.tag.* are labels)."""
    if high_cardinality_labels is True:
        return tuple(_HIGH_CARDINALITY_FIELDS.values()), True
    if high_cardinality_labels is False or high_cardinality_labels is None:
        return (), False
    if isinstance(high_cardinality_labels, (str, bytes)) or not isinstance(high_cardinality_labels, Iterable):
        raise ConfigurationTypeError(f"configure: high_cardinality_labels must be True, False or a set of names "
                                     f"(user, customer, tags), got {high_cardinality_labels!r}")
    chosen = set(high_cardinality_labels)
    unknown = chosen - {*_HIGH_CARDINALITY_FIELDS, "tags"}
    if unknown:
        raise ConfigurationError(f"configure: high_cardinality_labels has unknown names {sorted(map(repr, unknown))}; "
                                 "use user, customer, tags")
    return tuple(_HIGH_CARDINALITY_FIELDS[n] for n in sorted(chosen - {"tags"})), "tags" in chosen


class _Instruments:
    def __init__(self, meter_provider: Any) -> None:
        from . import __version__

        self.meter_provider = meter_provider
        meter = otel_metrics.get_meter("aicost", __version__, meter_provider=meter_provider)
        self.token_usage = meter.create_histogram(
            semconv.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Tokens used per LLM call, by gen_ai.token.type (input includes cached tokens).",
            explicit_bucket_boundaries_advisory=[float(b) for b in semconv.TOKEN_USAGE_BUCKETS],
        )
        self.duration = meter.create_histogram(
            semconv.METRIC_OPERATION_DURATION,
            unit="s",
            description="Duration of LLM calls, streams included up to their end.",
            explicit_bucket_boundaries_advisory=list(semconv.DURATION_BUCKETS),
        )
        self.feature_runs = meter.create_counter(
            semconv.METRIC_FEATURE_RUNS, unit="{run}", description="Finished units of work, by outcome."
        )
        self._lock = _fork.lock()
        self._cost_totals: dict[tuple[tuple[str, Any], ...], Decimal] = {}
        self.cost = meter.create_observable_counter(
            semconv.METRIC_COST,
            callbacks=[self._observe_cost],
            unit="USD",
            description="LLM spend in USD (list price from the aicost catalog), per series an exact running total.",
        )
        self.cost_nano = meter.create_observable_counter(
            semconv.METRIC_COST_NANO_USD,
            callbacks=[self._observe_cost_nano],
            unit="{nano_usd}",
            description="LLM spend in integer nano-USD (1e-9 USD): sums across series stay exact in any backend.",
        )
        _fork.reset_in_child(self)

    def _after_fork_in_child(self) -> None:
        """A forked child reports its own spend: the parent's running totals stay the parent's. Copied, they would
        be exported by both processes (the child under its own ``process.pid``), and a backend summing the
        processes would count the parent's spend once more per child."""
        self._cost_totals = {}

    def add_cost(self, labels: dict[str, Any], amount: Decimal) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            total = self._cost_totals.get(key)
            if total is None and len(self._cost_totals) >= MAX_COST_SERIES - 1 and key != _OVERFLOW_KEY:
                key = _OVERFLOW_KEY  # a new series past the cap: its money goes to the overflow series, exactly
                total = self._cost_totals.get(key)
                if total is None:
                    log_once("metrics:cost-overflow", logging.WARNING,
                             "aicost: more than %d distinct label sets of aicost.cost; the money of further ones is "
                             "reported in one series labelled otel.metric.overflow=true", MAX_COST_SERIES - 1)
            self._cost_totals[key] = MONEY.add(_ZERO if total is None else total, amount)  # not the thread's context

    def cost_totals(self) -> dict[tuple[tuple[str, Any], ...], Decimal]:
        flush()
        with self._lock:
            return {key: canonical(total) for key, total in self._cost_totals.items()}

    def _observe_cost(self, options: CallbackOptions) -> Iterable[Observation]:
        flush()  # the collection that runs this callback then sees every finished call's points
        with self._lock:
            items = list(self._cost_totals.items())
        return [Observation(float(total), dict(key)) for key, total in items]

    def _observe_cost_nano(self, options: CallbackOptions) -> Iterable[Observation]:
        flush()
        with self._lock:
            items = list(self._cost_totals.items())
        return [Observation(_nano_usd(total), dict(key)) for key, total in items]

    def attribution_labels(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        extra_keys, tag_labels = _policy
        labels: dict[str, Any] = {}
        for key in _LOW_CARDINALITY:
            value = attributes.get(key)
            if value is not None:
                labels[key] = value
        for key in extra_keys:
            value = attributes.get(key)
            if value is not None:
                labels[key] = value
        if tag_labels:
            for key, value in attributes.items():
                if key.startswith(semconv.AICOST_TAG_PREFIX):
                    labels[key] = value
        return labels


# Series of the cost counters (the overflow series included). Their labels come partly from requests (a model name a
# gateway passes through, with its case and spaces), and each series is an exact total kept for the life of the
# process: past this many, new label sets add to one series labelled as the OpenTelemetry SDK labels its own
# overflow. 2000 is the SDK's default cardinality limit, so the SDK never folds these series itself.
MAX_COST_SERIES = 2000
_OVERFLOW_KEY: tuple[tuple[str, Any], ...] = (("otel.metric.overflow", True),)

_INT64_MAX = 2**63 - 1  # OTLP encodes integer points as int64: one larger point fails every later export


def _nano_usd(total: Decimal) -> int:
    """A running total in whole nano-USD: truncated, never rounded up (a sub-nano remainder stays in the exact
    total until it adds up), and at most int64's maximum (about 9.2 billion USD), which only absurd usage reaches:
    past it the OTLP exporter could not encode this point, nor any other metric in the same export, ever again."""
    nano = int(total.scaleb(9, MONEY).to_integral_value(ROUND_FLOOR, MONEY))  # the reader's thread's context rounds
    if nano > _INT64_MAX:
        log_once("metrics:nano-usd-overflow", logging.WARNING,
                 "aicost: a cost total exceeds what aicost.cost.nano_usd can carry (int64 nano-USD); it is reported "
                 "at that maximum")
        return _INT64_MAX
    return nano


_state: _Instruments | None = None
_state_lock = _fork.lock()
_policy: tuple[tuple[str, ...], bool] = ((), False)
# Instruments per meter provider, so configuring provider A, then B, then A again reuses A's instruments
# (a second observable counter of the same name on one meter would be ignored by the SDK, with its totals).
_by_provider: "weakref.WeakKeyDictionary[Any, _Instruments]" = weakref.WeakKeyDictionary()
_for_global: _Instruments | None = None


def configure(meter_provider: Any = None, *, high_cardinality_labels: bool | Iterable[str] | None = None) -> None:
    """Create the instruments on ``meter_provider`` (the global one when ``None``). ``instrument()`` calls it.

    ``high_cardinality_labels``: ``True`` adds user, customer and tags as labels, or give a set of those names;
    ``None`` keeps the current choice (initially ``False``), so ``instrument()`` never undoes an opt-in.
    A bad argument raises :class:`aicost.errors.ConfigurationError` naming it, and changes nothing.
    """
    global _state, _policy, _for_global
    if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
        raise ConfigurationTypeError(f"configure: meter_provider must be an OpenTelemetry MeterProvider (with "
                                     f"get_meter()) or None (the global provider), got {meter_provider!r}")
    policy = None if high_cardinality_labels is None else _label_policy(high_cardinality_labels)
    with _state_lock:
        if policy is not None:
            _policy = policy
        if meter_provider is None:
            if _for_global is None:
                _for_global = _Instruments(None)
            _state = _for_global
            return
        try:
            existing = _by_provider.get(meter_provider)
        except TypeError:  # not weak-referenceable: instruments for it are simply made anew
            existing = None
        if existing is None:
            existing = _Instruments(meter_provider)
            try:
                _by_provider[meter_provider] = existing
            except TypeError:
                pass
        _state = existing


def _instruments() -> _Instruments:
    state = _state
    if state is None:
        configure()
        state = _state
    assert state is not None
    return state


def _server_of(result: CallResult, attributes: Mapping[str, Any]) -> tuple[Any, Any]:
    """server.address / server.port for the histograms (GenAI conventions), from the attributes given or the
    call's span: which endpoint (vendor, proxy, gateway) answered is the first question when latency jumps."""
    address, port = attributes.get(semconv.SERVER_ADDRESS), attributes.get(semconv.SERVER_PORT)
    if address is None or port is None:
        span_attributes = getattr(result.span, "attributes", None) or {}
        address = span_attributes.get(semconv.SERVER_ADDRESS) if address is None else address
        port = span_attributes.get(semconv.SERVER_PORT) if port is None else port
    return address, port


def record_call(result: CallResult, attributes: Mapping[str, Any], *,
                server: tuple[str | None, int | None] | None = None) -> None:
    """Record one finished call. ``attributes``: the call's attribution as captured when it started (what
    ``aicost.attribution.current_attributes()`` returned then); more span attributes may be passed too.
    ``server``: (address, port) when the caller knows them; else they are read from ``attributes`` or the span.

    Why deferred: recording three histogram points through the OpenTelemetry SDK costs tens of microseconds
    (attribute hashing, locks), which would sit on every vendor call. The call only appends to a queue; a
    background thread records the points in batches, and every collection (a Prometheus scrape, a periodic
    export, ``InMemoryMetricReader.get_metrics_data()``) first drains the queue, so a reader never misses a
    finished call. If the queue ever holds ``_MAX_PENDING`` calls, the call records inline instead.

    Why the queue holds a flat tuple of plain values, not the ``CallResult``: a queued result would keep its
    span, request kwargs (the prompt) and usage objects alive for up to a drain period. Objects that live that
    long are promoted to Python's older GC generations and make full collections of the whole heap frequent:
    measured, that cost more per call (tens of microseconds, amortised) than the recording itself.
    """
    try:
        state = _instruments()
        info = result.info
        usage = result.usage
        if usage is not None and not usage.counts_tokens:
            usage = None  # billed per character: no token points (not zero-token ones)
        address, port = server if server is not None else _server_of(result, attributes)
        point = (info.provider, info.operation, info.request_model, result.response_model, address, port,
                 attributes, None if usage is None else usage.input_tokens,
                 None if usage is None else usage.output_tokens, result.error_type, result.duration_s,
                 result.cost_usd)
        if len(_pending) >= _MAX_PENDING:
            _record_now(state, point)
            return
        if _worker is None and not _start_worker():
            # No thread could be started. At interpreter shutdown the point is dropped: the exporters shut down at
            # exit (atexit), so nothing would read it, and recording could wait on a lock a frozen thread holds.
            if not sys.is_finalizing():
                _record_now(state, point)
            return
        _pending.append((state, point))
    except Exception:
        _log_once("record_call", "aicost: could not record call metrics")


def _record_now(state: "_Instruments", point: tuple) -> None:
    (provider, operation, request_model, response_model, address, port, attributes, input_tokens, output_tokens,
     error_type, duration_s, cost) = point
    labels: dict[str, Any] = {semconv.GEN_AI_PROVIDER_NAME: provider, semconv.GEN_AI_OPERATION_NAME: operation}
    if request_model:
        labels[semconv.GEN_AI_REQUEST_MODEL] = request_model
    if response_model:
        labels[semconv.GEN_AI_RESPONSE_MODEL] = response_model
    labels.update(state.attribution_labels(attributes))
    histogram_labels = dict(labels)
    if address is not None:
        histogram_labels[semconv.SERVER_ADDRESS] = address
    if port is not None:
        histogram_labels[semconv.SERVER_PORT] = port
    if input_tokens is not None:
        state.token_usage.record(input_tokens, {**histogram_labels, semconv.GEN_AI_TOKEN_TYPE: "input"})
        state.token_usage.record(output_tokens, {**histogram_labels, semconv.GEN_AI_TOKEN_TYPE: "output"})
    if error_type:
        histogram_labels[semconv.ERROR_TYPE] = error_type
    if duration_s is not None:  # None: work aicost did not see run (a batch result), not an instant call
        state.duration.record(max(0.0, float(duration_s)), histogram_labels)
    if cost is not None:
        state.add_cost(labels, cost)


_MAX_PENDING = 50_000
_pending: "collections.deque[tuple[_Instruments, tuple]]" = collections.deque()
_drain_lock = _fork.lock()  # held while a batch is recorded, so a collection waits for it to land
_wake = _fork.event()
_worker: threading.Thread | None = None


def flush() -> None:
    """Record every call finished so far. Collections call it; so can an application before it exits."""
    with _drain_lock:
        while _record_next():
            pass


def _record_next() -> bool:
    """Record the oldest queued call; False when the queue is empty. The caller holds ``_drain_lock``."""
    try:
        state, point = _pending.popleft()
    except IndexError:
        return False
    try:
        _record_now(state, point)
    except Exception:
        _log_once("record_call", "aicost: could not record call metrics")
    return True


def _start_worker() -> bool:
    """Start the background recorder; False when no thread can be started (the caller does without it).

    Never at interpreter shutdown: a call finished then (an abandoned stream collected as the interpreter exits,
    or a forked child whose first call ends as it exits) would start a thread that can never run, and
    ``Thread.start()`` waits for it forever, so the process would never exit.
    """
    global _worker
    if sys.is_finalizing():
        return False
    with _state_lock:
        if _worker is not None:
            return True
        worker = threading.Thread(target=_work, name="aicost-metrics", daemon=True)
        try:
            worker.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown", or no threads left
            return False
        _worker = worker
        return True


@_fork.on_fork_in_child
def _after_fork_in_child() -> None:
    """Threads do not survive fork: a forked child starts its own worker on its first call (checking the pid on
    every call instead would be a system call per call). The parent's pending points are the parent's to record.
    (The locks are freed by ``_fork``; each set of instruments forgets the parent's cost totals itself:
    :meth:`_Instruments._after_fork_in_child`.)"""
    global _worker
    _worker = None
    _pending.clear()


_SLICE = 32  # points recorded per GIL hold by the worker (about 1 ms of OpenTelemetry SDK work)


def _drain_in_slices() -> None:
    """What the worker runs: the same as :func:`flush`, in slices with a real sleep between them.

    Recording holds the GIL. A thread that wants it back (an application between two stream chunks) waits for
    the holder to let go, which a busy thread does only when the interpreter's switch interval (5 ms) expires.
    Sleeping between slices lets go at once, so a backlog never holds the application up by more than a slice.
    """
    while _pending:
        with _drain_lock:
            for _ in range(_SLICE):
                if not _record_next():
                    return
        time.sleep(0.0005)


def _work() -> None:
    while True:
        _wake.wait(0.25)
        _wake.clear()
        _drain_in_slices()


atexit.register(flush)


def record_unit(name: str, outcome: str, attributes: Mapping[str, Any]) -> None:
    """Count one finished unit of work (``aicost.feature``) by outcome.

    Cost per successful outcome is ``sum(aicost.cost{feature}) / sum(aicost.feature.runs{feature, outcome=
    "succeeded"})``: the spend of every attempt, failed ones included, per success.
    """
    try:
        state = _instruments()
        labels: dict[str, Any] = {semconv.AICOST_FEATURE: name, semconv.AICOST_OUTCOME: outcome}
        team = attributes.get(semconv.AICOST_TEAM)
        if team is not None:
            labels[semconv.AICOST_TEAM] = team
        state.feature_runs.add(1, labels)
    except Exception:
        _log_once("record_unit", "aicost: could not record unit-of-work metrics")
