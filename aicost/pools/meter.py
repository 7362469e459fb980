"""Calls to a pool, gathered per interval; each closed interval's cost allocated to them, idle included.

How a call is met:

1. before the call (an interceptor, so nothing blocks): if its endpoint and model belong to a pool, the span gets
   ``aicost.pool.name`` and ``aicost.cost.provisional = true``. The call is priced by the core as any other, at
   the pool's *provisional* rate (``CallInfo.price_scope = "pool:NAME provisional"``, whose prices
   ``aicost.pricing.set_scoped_prices`` holds for this pool alone): the last closed interval's cost per
   allocation unit, turned into per-token rates. So the span's ``aicost.cost.total_usd`` and the budget
   guard's reservation are both provisional figures.
2. after the call (a listener): its tokens, team and span id join the open interval (by the meter's clock; the next
   one if that interval closed meanwhile).
3. ``sample()`` (the background thread about once a minute, or the app's scheduler, or a test with its own
   clock) reads each engine's gauges and keeps its load, for the interval's measured utilisation.
4. ``close_due()`` (the same thread, scheduler or test) closes every interval that has ended: reads the
   engine's counters (the weights), measures the used fraction (the engine's load samples, else the declared
   capacity; docs/self-hosted.md says exactly how), allocates the interval's cost in whole nano-dollars
   (:mod:`aicost.pools.allocate`), keeps the :class:`ClosedInterval` (final cost per span id, idle cost for the
   owner, utilisation) and hands it to the sinks (the ledger), then moves the provisional rate.
5. ``stop()`` (the pools reconfigured or disabled, or the interpreter's exit) ends the metering: the intervals
   that have ended are closed as in 4, and the open one is either handed to the meter that replaces this one
   (the same pool, by name and interval length: it goes on counting it) or **closed early**, whole: see
   :meth:`PoolMeter.stop` for why whole and not prorated. Nothing a call added is dropped unless it cannot be
   kept, and that is counted (``lost_calls``) and logged once.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, NamedTuple

from .. import _fork
from .. import hooks, semconv
from .._log import error_once, warn_once
from ..hooks import CallInfo, CallResult
from . import engine
from .allocate import as_ints, split
from ..pricing.cost import MONEY
from ..pricing.money import RATIO, canonical, sum_usd
from .config import Pool

MILLION = Decimal(1_000_000)
_ZERO = Decimal(0)
PROVISIONAL_ATTRIBUTE = "aicost.cost.provisional"
POOL_ATTRIBUTE = "aicost.pool.name"
_KEEP_INTERVALS = 24 * 366  # closed intervals kept in memory per pool (a year of hours); the ledger keeps all
# weights_from of an interval whose weights neither an engine nor a setting gave (none read yet, no output_weight):
# input and output tokens 1:1, a guess. Its shares are an estimate (ClosedInterval.estimate_reason) and, for gpu_time,
# its units are tokens, not GPU-seconds.
DEFAULT_WEIGHTS = "default 1:1 (no engine data yet)"
# weights_from of an interval without engine figures of its own (the engine could not be read at its close, or had no
# baseline) that took the last ones measured: another interval's traffic, not this one's. Its shares are an estimate
# too (ClosedInterval.estimate_reason): the key says this interval's seconds per token.
PREVIOUS_WEIGHTS = "engine (previous interval)"
# Why an interval's shares are an estimate, by its weights_from and key (ClosedInterval.estimate_reason)
_ESTIMATE_REASONS = {
    DEFAULT_WEIGHTS: {
        "gpu_time": "no engine figures yet: shared by tokens 1:1, not by the calls' GPU-seconds",
        "tokens": "no engine figures yet and no output_weight declared: output tokens weighed 1:1 with input",
    },
    PREVIOUS_WEIGHTS: {
        "gpu_time": "no engine figures for the interval: shared by an earlier interval's GPU-seconds per token",
        "tokens": "no engine figures for the interval: output tokens weighed as the engine measured an earlier "
                  "interval",
    },
}
# How long stop() waits for a close under way on the closing thread (which may be reading an engine: 5 s a read)
# before it gives up on the open interval's calls (counted and logged): at the exit, never past the exit's deadline
_STOP_WAIT_S = 5.0


@dataclass(slots=True)
class _Use:
    span_id: str
    team: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    provisional: Decimal | None  # what the span said at call time (None: no closed interval yet)


class Allocation(NamedTuple):
    """One call's final share of its interval (a tuple: a million of them are built per busy interval)."""

    span_id: str
    team: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    units: Decimal
    provisional: Decimal | None
    final: Decimal


@dataclass(frozen=True)
class ClosedInterval:
    pool: str
    owner: str
    key: str
    start: datetime
    end: datetime
    cost: Decimal  # the interval's pool cost
    used: Decimal  # allocated to calls
    idle: Decimal  # the owner's; used + idle == cost exactly
    utilisation: Decimal
    input_weight: Decimal  # units per input token (GPU-seconds for gpu_time)
    output_weight: Decimal
    weights_from: str  # "declared" / "engine" / PREVIOUS_WEIGHTS / "declared (no engine data yet)" / DEFAULT_WEIGHTS
    allocations: tuple[Allocation, ...] = field(repr=False)
    engine: engine.EngineSample | None = None
    # how utilisation was measured: "engine load, N samples" / "engine request-seconds over max_concurrency" /
    # "declared capacity" / "no capacity declared" or "no engine figures: ..." (calls pay the whole interval)
    utilisation_from: str = ""
    busy_seconds: Decimal | None = None  # the engine's busy time in the interval (load x time), when sampled

    @property
    def estimate_reason(self) -> str | None:
        """Why the calls' shares of this interval are an estimate, or None when they are what its key says: its
        weights were the 1:1 default (:data:`DEFAULT_WEIGHTS`), a guess, or an earlier interval's engine figures
        (:data:`PREVIOUS_WEIGHTS`), not this interval's, nor the declared ones. Made from the interval's key and
        ``weights_from``, so an interval read back from the ledger says the same. An interval without calls shares
        nothing: None."""
        if not self.allocations:
            return None
        return _ESTIMATE_REASONS.get(self.weights_from, {}).get(self.key)

    @property
    def input_tokens(self) -> int:
        return sum(a.input_tokens for a in self.allocations)

    @property
    def output_tokens(self) -> int:
        return sum(a.output_tokens for a in self.allocations)

    @property
    def units(self) -> Decimal:
        return sum_usd(a.units for a in self.allocations)

    def by_team(self) -> dict[str | None, Decimal]:
        """Each team's final cost in the interval (exact sums, canonical)."""
        shares: dict[str | None, Decimal] = {}
        for a in self.allocations:
            shares[a.team] = MONEY.add(shares.get(a.team, _ZERO), a.final)
        return {team: canonical(share) for team, share in shares.items()}


def _span_id(span: Any) -> str:
    try:
        context = span.get_span_context()
        if context.span_id:
            return f"{context.span_id:016x}"
    except Exception:
        pass
    return ""


class PoolMeter:
    """One per process (``aicost.configure_pools`` builds it). ``clock`` gives epoch seconds (injectable)."""

    # It says how a pool call is priced (its price scope): before any budget guard reserves at that price.
    interceptor_phase = hooks.PHASE_PRICING

    def __init__(self, pools: Iterable[Pool], *, clock: Callable[[], float] = time.time,
                 scrape: Callable[[str, tuple[str, ...]], engine.EngineSample] = engine.scrape) -> None:
        self.pools = tuple(pools)
        self.clock = clock
        self._scrape = scrape
        self._routes: dict[tuple[str, int | None, str], Pool] = {}
        for pool in self.pools:
            for host, port in pool.endpoints:
                for model in pool.models:
                    self._routes[(host, port, model)] = pool
        self._lock = _fork.lock()
        self._closing = _fork.lock()  # one close at a time: the closing thread's close_due, or stop()
        self._stopped: str | None = None  # why the meter stopped (stop()): no call joins an interval since
        self._successor: PoolMeter | None = None  # the meter that replaced this one: calls recorded late go there
        self._kept_prices: set[str] = set()  # pools whose provisional prices the successor goes on using
        self.lost_calls = 0  # pool calls that no interval will ever allocate (stop(), _late()): logged once
        self._open: dict[str, dict[int, list[_Use]]] = {p.name: {} for p in self.pools}
        now = int(clock())
        self._next: dict[str, int] = {p.name: now - now % p.interval for p in self.pools}
        self._rate: dict[str, Decimal | None] = {p.name: None for p in self.pools}  # USD per unit, provisional
        self._weights: dict[str, tuple[Decimal, Decimal, str] | None] = {p.name: None for p in self.pools}
        self._last_sample: dict[str, engine.EngineSample | None] = {p.name: None for p in self.pools}
        # (epoch second, engine load) of the gauges sampled since the oldest open interval began
        self._samples: dict[str, deque[tuple[int, Decimal]]] = {p.name: deque() for p in self.pools}
        self.closed: dict[str, deque[ClosedInterval]] = {p.name: deque(maxlen=_KEEP_INTERVALS) for p in self.pools}
        self.sinks: list[Callable[[ClosedInterval], None]] = []
        # Called once, on the next pool call (a forked child starts its closing thread so: not at the fork).
        self.on_next_use: Callable[[], None] | None = None
        for pool in self.pools:  # the counters' baseline for the first interval
            if pool.metrics_url:
                self._last_sample[pool.name] = self._read(pool)
        _fork.reset_in_child(self)

    def _after_fork_in_child(self) -> None:
        """The calls in the open intervals at a fork are the parent's: it allocates and writes them. A forked
        child's intervals hold its own calls."""
        for calls in self._open.values():
            calls.clear()

    # --- matching --------------------------------------------------------------------------------------
    def pool_of(self, host: str | None, port: int | None, model: str | None) -> Pool | None:
        """The pool a call to ``host:port`` for ``model`` belongs to. A pool declared without a port (or with
        its scheme's default one, which the SDKs' URLs drop: config._endpoint) serves the host on any port, so a
        call recorded with an explicit 80 or 443 finds it too."""
        if host is None or model is None:
            return None
        return self._routes.get((host, port, model)) or self._routes.get((host, None, model))

    def before_call(self, info: CallInfo) -> None:
        """Interceptor: mark the span of a pool call (never refuses)."""
        pool = self.pool_of(info.server_address, info.server_port, info.request_model)
        if pool is not None:
            info.span_attributes[POOL_ATTRIBUTE] = pool.name
            info.span_attributes[PROVISIONAL_ATTRIBUTE] = True
            info.price_scope = provisional_origin(pool)  # this pool's rate, not another pool's same-named model
        return None

    def __call__(self, result: CallResult) -> None:
        """Listener: the call joins its pool's open interval (by the clock; the oldest open one if the closing
        thread closed that interval between the clock's read and the lock: never one already allocated)."""
        info = result.info
        pool = self.pool_of(info.server_address, info.server_port, info.request_model)
        if pool is None or result.usage is None:
            return
        if self.on_next_use is not None:  # once (a forked child's first pool call starts its closing thread)
            on_use, self.on_next_use = self.on_next_use, None
            on_use()
        now = int(self.clock())
        start = now - now % pool.interval
        usage = result.usage
        use = _Use(_span_id(result.span), result.attribution.get(semconv.AICOST_TEAM), result.response_model
                   or info.request_model, usage.input_tokens, usage.output_tokens, result.cost_usd)
        with self._lock:
            if self._stopped is None:
                # an interval before _next is closed or closing (close_due moves _next past it before _close takes
                # this lock to pop its calls): a call added to it now would never be allocated
                start = max(start, self._next[pool.name])
                self._open[pool.name].setdefault(start, []).append(use)
                return
        self._late(result, pool)

    def _late(self, result: CallResult, pool: Pool) -> None:
        """A call recorded after :meth:`stop` (the meter leaves the hooks only once stopped, and a listener may
        already be running then): the replacing meter's, when it meters the call, else counted lost and logged once."""
        info, successor = result.info, self._successor
        if successor is not None and successor.pool_of(info.server_address, info.server_port,
                                                       info.request_model) is not None:
            successor(result)
            return
        self._lose(1, pool.name, self._stopped or "stopped")

    # --- sampling the engine's load ------------------------------------------------------------------
    def sample(self, now: float | None = None) -> None:
        """Read each engine's gauges once (running and waiting requests, KV-cache usage) and keep its load for
        the interval's utilisation. The closing thread does this every tick (about once a minute); a test or
        an app's scheduler calls it with its own clock. Never on a call."""
        at = int(self.clock() if now is None else now)
        for pool in self.pools:
            if pool.metrics_url:
                reading = self._read(pool)
                if reading is not None:
                    with self._lock:
                        self._samples[pool.name].append((at, reading.load(pool.max_concurrency)))

    def _take_samples(self, pool: Pool, start: int, end: int) -> list[tuple[int, Decimal]]:
        """The samples taken in ``[start, end)``, removed (older ones are dropped: their interval is closed)."""
        kept = self._samples[pool.name]
        taken = []
        while kept and kept[0][0] < end:
            at, load = kept.popleft()
            if at >= start:
                taken.append((at, load))
        return taken

    def tick(self) -> None:
        """What the closing thread does once a minute: sample the engines, then close what is due."""
        self.sample()
        self.close_due()

    # --- closing ---------------------------------------------------------------------------------------
    def close_due(self, now: float | None = None) -> list[ClosedInterval]:
        """Close every interval that has ended by ``now`` (default: the clock), empty ones included (all idle).
        Nothing once :meth:`stop` has closed or handed over every interval."""
        with self._closing:
            if self._stopped is not None:
                return []
            return self._close_due(int(self.clock() if now is None else now))

    def _close_due(self, now: int, read: bool = True) -> list[ClosedInterval]:
        """``read``: False at a stop with no meter after it (disabled, the exit), which must not wait on an engine:
        the intervals are closed without counter figures (no meter reads the next ones)."""
        closed = []
        for pool in self.pools:
            while self._next[pool.name] + pool.interval <= now:
                start = self._next[pool.name]
                self._next[pool.name] = start + pool.interval
                closed.append(self._close(pool, start, read=read))
        return closed

    def _read(self, pool: Pool) -> engine.EngineSample | None:
        try:
            return self._scrape(pool.metrics_url, pool.models)  # type: ignore[arg-type]
        except Exception:
            error_once(f"pool-metrics:{pool.name}", f"aicost: could not read pool {pool.name!r} engine metrics "
                                                    f"at {pool.metrics_url}; the previous interval's weights are used")
            return None

    def _counters(self, pool: Pool) -> engine.EngineSample | None:
        """The engine's counters over the interval closing now: this read less the previous one; None (no counter
        data) when either read failed. Without a previous reading the counters are the engine's whole lifetime
        (a week of traffic as this interval's: the busy-time floor would make it look fully used), and after a
        failed one they would span two intervals, so neither is taken. This read is the next one's baseline."""
        sample = self._read(pool)
        previous, self._last_sample[pool.name] = self._last_sample[pool.name], sample
        return None if sample is None or previous is None else sample.since(previous)

    def _weights_for(self, pool: Pool, delta: engine.EngineSample | None) -> tuple[Decimal, Decimal, str]:
        """The interval's weights: the engine's (this interval's counters, else the last interval that had
        them), else the declared ones, else 1:1."""
        if not pool.weights_from_engine:
            return pool.input_weight, pool.output_weight, "declared"  # type: ignore[return-value]
        s_in = delta.seconds_per_prompt_token if delta is not None else None
        s_out = delta.seconds_per_generation_token if delta is not None else None
        if s_in is not None and s_out is not None:
            weights = (s_in, s_out) if pool.key == "gpu_time" else (
                pool.input_weight, RATIO.divide(RATIO.multiply(pool.input_weight, s_out), s_in))
            self._weights[pool.name] = (*weights, "engine")
            return (*weights, "engine")
        previous = self._weights[pool.name]
        if previous is not None:
            return previous[0], previous[1], PREVIOUS_WEIGHTS
        if pool.key == "tokens" and pool.output_weight is not None:
            return pool.input_weight, pool.output_weight, "declared (no engine data yet)"
        return pool.input_weight, pool.input_weight, DEFAULT_WEIGHTS

    def _close(self, pool: Pool, start_s: int, cut: tuple[int, str] | None = None, read: bool = True
               ) -> ClosedInterval:
        """Allocate the interval that starts at ``start_s`` and hand it to the sinks. ``cut``: (the second the
        meter stopped, why), for an interval closed early by :meth:`stop`: the last load sample holds until the
        cut, not to the interval's end. ``read`` False: the engine's counters are not read (a stop, which must not
        wait on an engine: an interval cut early, or one that ended, closed with no meter after it); the counters'
        floor and this interval's own weights are left out, as for an interval without counter figures."""
        end_s = start_s + pool.interval
        with self._lock:
            uses = self._open[pool.name].pop(start_s, [])
            samples = self._take_samples(pool, start_s, end_s)
        start = datetime.fromtimestamp(start_s, timezone.utc)
        end = datetime.fromtimestamp(end_s, timezone.utc)
        delta = self._counters(pool) if pool.metrics_url and read else None
        w_in, w_out, weights_from = self._weights_for(pool, delta)
        # integer units (the weights scaled by one power of ten): no Decimal per call until the shares exist.
        # Decimal figures in money's RATIO context: this thread's may be a host's (or DefaultContext's) low one.
        (a, b), places = as_ints([w_in, w_out])
        units = [a * u.input_tokens + b * u.output_tokens for u in uses]
        whole = RATIO.scaleb(sum(units), -places)
        cost = pool.interval_cost(start) if pool.covers(start, end) else Decimal(0)
        busy = _busy_seconds(samples, start_s, end_s if cut is None else cut[0])
        if busy is not None and pool.max_concurrency and delta is not None:
            # never less than the engine's own counters prove: a minute's samples can miss short requests
            busy = max(busy, RATIO.divide(RATIO.add(delta.prefill_seconds, delta.decode_seconds),
                                          pool.max_concurrency))
        if busy is not None:
            used = (busy, Decimal(pool.interval))
            utilisation_from = f"engine load, {len(samples)} sample{'' if len(samples) == 1 else 's'}"
        elif pool.key == "gpu_time" and pool.max_concurrency and weights_from != DEFAULT_WEIGHTS:
            used = (whole, Decimal(pool.max_concurrency * pool.interval))  # the calls' GPU-seconds of the slots'
            utilisation_from = "engine request-seconds over max_concurrency"
        elif pool.key == "gpu_time":  # units of tokens (DEFAULT_WEIGHTS), never compared with seconds
            used, utilisation_from = None, "no engine figures: the calls' GPU-seconds unknown"
        elif pool.key == "tokens" and pool.capacity_per_hour:
            used = (RATIO.multiply(whole, 3600), RATIO.multiply(pool.capacity_per_hour, pool.interval))
            utilisation_from = "declared capacity"
        else:
            used, utilisation_from = None, "no capacity declared"
        if cut is not None:
            utilisation_from += (f"; closed early ({cut[1]}) at {datetime.fromtimestamp(cut[0], timezone.utc):%H:%M:%S}"
                                 f" UTC, {cut[0] - start_s} of {pool.interval} s in: no call metered after it")
        shared = split(cost, units, used)
        scale = RATIO.scaleb(1, -places)
        allocations = tuple(Allocation(u.span_id, u.team, u.model, u.input_tokens, u.output_tokens,
                                       RATIO.multiply(w, scale),
                                       u.provisional, share) for u, w, share in zip(uses, units, shared.shares))
        closed = ClosedInterval(pool.name, pool.owner, pool.key, start, end, cost, shared.used, shared.idle,
                                shared.utilisation, w_in, w_out, weights_from, allocations, delta,
                                utilisation_from, busy)
        self.closed[pool.name].append(closed)
        if shared.used and cut is None:  # else the previous rate stays: a call is never provisionally free
            self._set_rate(pool, RATIO.divide(shared.used, whole), w_in, w_out)
        for sink in self.sinks:
            try:
                sink(closed)
            except Exception:
                error_once(f"pool-sink:{sink!r}", "aicost: a pool interval sink failed")
        return closed

    def _set_rate(self, pool: Pool, per_unit: Decimal, w_in: Decimal, w_out: Decimal) -> None:
        from ..pricing import set_scoped_prices

        self._rate[pool.name] = per_unit
        q = Decimal("1e-9")  # per 1M tokens: sub-nano-dollar per token; the final allocation is exact anyway
        rates = {name: RATIO.quantize(RATIO.multiply(RATIO.multiply(per_unit, weight), MILLION), q)
                 for name, weight in (("input", w_in), ("output", w_out))}
        set_scoped_prices(provisional_origin(pool), {model: rates for model in pool.models})

    def flush(self) -> None:
        """Write what the sinks have queued (the ledger) now, on this thread."""
        for sink in self.sinks:
            getattr(sink, "flush", lambda: None)()

    # --- stopping ------------------------------------------------------------------------------------
    def stop(self, successor: "PoolMeter | None" = None, *, why: str,
             deadline: float | None = None) -> list[ClosedInterval]:
        """End the metering (once; later calls return nothing): no call joins an interval from now on, the
        intervals that have ended are closed as :meth:`close_due` does, and each pool's open interval is

        * handed to ``successor`` (the meter ``configure_pools`` is replacing this one with) when it has a pool of
          the same name and interval length: the same interval (one ledger row, keyed by pool and start), which it
          goes on counting and closes when it ends, priced by its own settings. The calls go with it, and so do
          the load samples and the counters' baseline when the engine is the same (``metrics_url``, ``models``,
          ``max_concurrency``), and the weights, provisional rate and closed history when the pool is unchanged;
        * else **closed early, whole**: its whole cost, shared among the calls made in it so far, the time after
          the stop used by no call (the owner's idle). Not prorated to the elapsed seconds: a pool is charged by
          whole intervals (``Pool.covers``; a period edge inside one is refused at configure time), the GPUs
          cost the whole interval whether this process meters it or not, and after the stop no call is metered
          in it and no busy time counted, so the rest *is* idle (unless nothing is declared: the calls pay all).
          Each call pays exactly what it would have paid at the interval's end had no further call come (its
          share of the load-measured busy time up to the stop, or of the declared capacity, or, with nothing
          declared, of the whole), and the pool's cost is booked once rather than the remainder never. The
          engine is not read (bounded; :meth:`_close`), and the interval says it was cut short in
          ``utilisation_from`` ("closed early (why) at HH:MM:SS UTC, N of M s in: no call metered after it").
          An interval that began at the stop's very second, with no call in it, is not booked.

        A call recorded after this goes to ``successor`` if it meters it, else is counted lost (:meth:`_late`).
        ``deadline`` (``time.monotonic()``, the exit's): how long to wait, at most :data:`_STOP_WAIT_S`, for a
        close under way on the closing thread; past it the calls of the intervals not yet due are counted lost
        and logged (never a wait past the exit's bound). Starts no thread. Returns the intervals it closed."""
        left = _STOP_WAIT_S if deadline is None else min(_STOP_WAIT_S, deadline - time.monotonic())
        if not self._closing.acquire(timeout=max(0.0, left)):
            self._give_up(successor, why)
            return []
        try:
            with self._lock:
                if self._stopped is not None:
                    return []
                self._stopped, self._successor = why, successor
                now = int(self.clock())
            closed = self._close_due(now, read=successor is not None)  # its counters' baseline goes on there
            for pool in self.pools:
                start = self._next[pool.name]
                heir = successor._named(pool.name) if successor is not None else None
                # the same interval in the successor (its clock not already past it: only a test's clock could be)
                if heir is not None and heir.interval == pool.interval and successor._next[heir.name] <= start:
                    self._hand_over(pool, start, successor, heir)  # type: ignore[union-attr]
                else:
                    booked = start in self._open[pool.name] or now > start
                    if booked:
                        closed.append(self._close(pool, start, (now, why), read=False))
                    if heir is not None:  # another interval length: it does not book again what this one booked
                        successor._begin_at(heir, start + pool.interval if booked else start)  # type: ignore
                with self._lock:  # calls in a later interval than the stop's clock said: only with a clock gone back
                    left = sum(len(u) for u in self._open[pool.name].values())
                    self._open[pool.name].clear()
                self._lose(left, pool.name, why)
            return closed
        finally:
            self._closing.release()

    def _give_up(self, successor: "PoolMeter | None", why: str) -> None:
        """:meth:`stop` without the closing lock (a close under way did not end in time): the intervals not yet
        due will never be closed by anyone, so their calls are counted lost; the due ones are the running close's."""
        now = int(self.clock())
        lost = 0
        with self._lock:
            if self._stopped is None:
                self._stopped, self._successor = why, successor
            for pool in self.pools:
                calls = self._open[pool.name]
                for start in [s for s in calls if s + pool.interval > now]:
                    lost += len(calls.pop(start))
        self._lose(lost, "", f"{why}; a close under way did not end within {_STOP_WAIT_S:g} s")

    def _lose(self, n: int, pool: str, why: str) -> None:
        if n:
            self.lost_calls += n
            warn_once("pools:lost", "aicost: %d pool call(s) (%s) will never be allocated: %s; counted in the "
                      "meter's lost_calls", n, pool or "open intervals", why)

    def _named(self, name: str) -> Pool | None:
        return next((p for p in self.pools if p.name == name), None)

    def _hand_over(self, pool: Pool, start: int, successor: "PoolMeter", heir: Pool) -> None:
        """The open interval of ``pool`` (this meter's) to ``successor``'s ``heir`` (same name and interval)."""
        with self._lock:
            uses = self._open[pool.name].pop(start, [])
            samples, self._samples[pool.name] = self._samples[pool.name], deque()
        same_engine = (pool.metrics_url, pool.models, pool.max_concurrency) == (heir.metrics_url, heir.models,
                                                                                 heir.max_concurrency)
        unchanged = pool == heir
        with successor._lock:
            name = heir.name
            successor._next[name] = start  # made just before the interval began: not the one closed here
            successor._open[name].setdefault(start, [])[:0] = uses  # before the calls it has seen since
            if same_engine:
                successor._samples[name].extendleft(reversed(samples))
                if self._last_sample[pool.name] is not None:  # the interval's own baseline, not one taken mid-way
                    successor._last_sample[name] = self._last_sample[pool.name]
            if unchanged:
                successor._weights[name] = self._weights[pool.name]
                successor._rate[name] = self._rate[pool.name]
                successor.closed[name].extendleft(reversed(self.closed[pool.name]))
        if unchanged:
            self._kept_prices.add(pool.name)  # the same scoped prices: the successor's now (close() keeps them)

    def _begin_at(self, pool: Pool, not_before: int) -> None:
        """This meter's first interval of ``pool`` begins no earlier than ``not_before`` (rounded up to its interval):
        time the meter it replaced has booked is not booked again; calls before it join that first interval."""
        with self._lock:
            first = -(-not_before // pool.interval) * pool.interval
            self._next[pool.name] = max(self._next[pool.name], first)

    def close(self, successor: "PoolMeter | None" = None) -> None:
        """Stop (:meth:`stop`: the open intervals handed to ``successor`` or closed early), then remove the
        provisional prices (but those ``successor`` goes on using) and flush and close the sinks."""
        try:
            self.stop(successor, why="pools reconfigured" if successor is not None else "pools disabled")
        except Exception:
            error_once("pools:stop", "aicost: could not close the pools' open intervals")
        self.clear_prices()
        for sink in self.sinks:
            try:
                getattr(sink, "close", lambda: None)()
            except Exception:
                error_once("pool-sink-close", "aicost: a pool interval sink could not be closed")

    def provisional_rate(self, pool: str) -> Decimal | None:
        """USD per allocation unit from the last closed interval that had calls (None before the first)."""
        return self._rate[pool]

    def clear_prices(self) -> None:
        from ..pricing import set_scoped_prices

        for pool in self.pools:
            if pool.name not in self._kept_prices:
                set_scoped_prices(provisional_origin(pool), {})


def _busy_seconds(samples: list[tuple[int, Decimal]], start: int, end: int) -> Decimal | None:
    """The engine's busy time in ``[start, end)`` from its load samples (None without any): each sample's load
    holds from it to the next sample (the last: to the interval's end; the first also from the interval's
    start), so busy seconds = sum(load x the time it held)."""
    if not samples:
        return None
    busy = Decimal(0)
    for i, (at, load) in enumerate(samples):
        since = start if i == 0 else at
        until = samples[i + 1][0] if i + 1 < len(samples) else end
        busy = RATIO.add(busy, RATIO.multiply(load, until - since))
    return busy


def provisional_origin(pool: Pool) -> str:
    return f"pool:{pool.name} provisional"
