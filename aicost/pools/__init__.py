"""Self-hosted model pools: a GPU bill allocated to each call, idle time included (docs/self-hosted.md).

    aicost.configure_pools({"llama": {"gpu_hour": "2.50", "gpus": 8, "endpoints": ["vllm.internal:8000"],
                                      "models": ["meta-llama/Llama-3.1-70B-Instruct"], "owner": "ml-platform",
                                      "output_weight": 4}})

or ``[pools.llama]`` in the price file given to ``aicost.instrument(price_file=...)``. The core never imports
this package: it sees calls through ``aicost.hooks`` like every other feature.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Mapping

from .. import _fork
from .. import hooks
from ..errors import ConfigurationError
from ..ledger import writer as ledger_writer
from .allocate import Split, split
from .config import KEYS, QUANTUM, Pool, overlaps, pool_from_mapping, pools_from_data, raise_problems
from .engine import EngineSample
from .ledger import ledger_sink, read_intervals
from .meter import Allocation, ClosedInterval, PoolMeter
from .summary import PoolSummary, WhatIf, summarise, what_if

__all__ = [
    "Allocation", "ClosedInterval", "EngineSample", "KEYS", "Pool", "PoolMeter", "PoolSummary", "QUANTUM", "Split",
    "WhatIf", "active", "configure_pools", "disable", "forget_price_file", "pool_from_mapping", "pools_from_data", "read_intervals", "split", "summarise",
    "what_if",
]

_meter: PoolMeter | None = None
_timer: "_Closer | None" = None
_settings: tuple = ()  # what the active meter was configured with (configure_pools is idempotent)
_source: str | None = None  # the price file the active pools came from (None: declared in code)
_lock = _fork.lock()


class _Closer(threading.Thread):
    """Samples the engines' load and closes due intervals about once a minute (reading an engine's /metrics:
    never on a call)."""

    def __init__(self, meter: PoolMeter, every: float) -> None:
        super().__init__(name="aicost-pools", daemon=True)
        self.meter, self.every, self.stopped = meter, every, _fork.event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self.meter.tick()
            except Exception:
                from .._log import error_once

                error_once("pools:close", "aicost: closing a pool interval failed")


def configure_pools(pools: Mapping[str, Mapping[str, Any]] | tuple[Pool, ...], *,
                    clock: Callable[[], float] | None = None,
                    scrape: Callable[..., EngineSample] | None = None, background: bool | None = None,
                    ledger: str | None = None, source: str | None = None) -> PoolMeter:
    """Declare the pools (replacing any declared before); ConfigurationError naming ``pools.NAME.field`` if bad.
    ``pools``: ``{name: settings}``, or the pools ``config.check_pools`` already read from them (a price file's
    ``[pools.NAME]`` tables, read once when the file was loaded).

    ``clock`` (epoch seconds) and ``scrape`` are for tests and simulations; ``background`` (default: True unless
    a clock is given) closes due intervals from a daemon thread once a minute, else call ``active().close_due()``.
    ``ledger``: where closed intervals are written (default: the ledger ``instrument(ledger=...)`` writes to).
    ``source`` names where the pools came from (a price file) in errors.

    Idempotent: the same pools with the same arguments keep the running meter (and the calls of its open
    intervals); anything else replaces it. The new meter goes on counting the open interval of each pool it
    keeps (same name and interval length), calls included; the open intervals of the others are closed early
    (``PoolMeter.stop``; docs/self-hosted.md, "When metering stops").
    """
    global _meter, _timer, _settings, _source
    try:
        parsed = _checked(pools) if isinstance(pools, tuple) else pools_from_data(pools)
    except ConfigurationError as exc:
        if source is None:
            raise
        raise ConfigurationError(f"{source}: {exc}") from None
    url = ledger if ledger is not None else _ledger_url()
    settings = (parsed, clock, scrape, background, url, source)
    with _lock:
        if _meter is not None and _settings == settings:
            return _meter
    kwargs: dict[str, Any] = {}
    if clock is not None:
        kwargs["clock"] = clock
    if scrape is not None:
        kwargs["scrape"] = scrape
    meter = PoolMeter(parsed, **kwargs)
    if url:
        meter.sinks.append(ledger_sink(url))
    with _lock:
        _stop(meter)
        _meter, _settings, _source = meter, settings, source
        hooks.add_interceptor(meter)
        hooks.add_listener(meter)
        if background if background is not None else clock is None:
            _timer = _Closer(meter, every=min(60.0, min(p.interval for p in parsed) / 10) if parsed else 60.0)
            _timer.start()
    return meter


def _checked(pools: tuple[Any, ...]) -> tuple[Pool, ...]:
    if not all(isinstance(p, Pool) for p in pools):
        raise ConfigurationError("configure_pools(pools=...): pools must be {name: settings} or the Pool objects "
                                 "aicost.pools.config.check_pools returned")
    raise_problems(overlaps(pools))  # built one by one (pool_from_mapping): still never two bills for one call
    return pools


def _ledger_url() -> str | None:
    writer = sys.modules.get("aicost.ledger.writer")
    active_writer = writer.active() if writer is not None else None
    return getattr(active_writer, "url", None)


def _stop(successor: PoolMeter | None = None) -> None:
    """Stop the running meter: its open intervals go to ``successor`` (the pools it keeps) or are closed early."""
    global _meter, _timer, _settings, _source
    _settings, _source = (), None
    if _timer is not None:
        _timer.stopped.set()
        _timer = None
    if _meter is not None:
        # closed while still on the hooks: a call recorded meanwhile goes to ``successor`` (PoolMeter._late), not
        # to neither meter; only then off them (``configure_pools`` puts ``successor`` on next)
        _meter.close(successor)
        hooks.remove_interceptor(_meter)
        hooks.remove_listener(_meter)
        _meter = None


@ledger_writer.before_exit
def _close_at_exit(deadline: float) -> None:
    """At the interpreter's exit (run by the ledger's exit flush, before the writers close: the intervals' rows
    are written by a running writer thread or spilled, and no thread is started): the open intervals are closed
    early (``PoolMeter.stop``), waiting for a close under way no longer than ``deadline``. The sinks are not
    closed here: the exit's flush closes every writer, by the same deadline. Read without the module's lock: a
    ``configure_pools`` or ``disable`` under way on another thread stops the same meter, once."""
    timer, meter = _timer, _meter
    if timer is not None:
        timer.stopped.set()
    if meter is not None:
        meter.stop(why="exit", deadline=deadline)


@_fork.on_fork_in_child
def _after_fork_in_child() -> None:
    """A forked child closes its own intervals: the parent's closing thread is not in it (its meter forgets the
    parent's open intervals itself: :meth:`PoolMeter._after_fork_in_child`). The child's thread starts on its
    first pool call, not here: a child that makes none (a subprocess about to ``exec``) starts no thread."""
    global _timer
    if _timer is not None:
        _timer = _Closer(_timer.meter, _timer.every)
        _timer.meter.on_next_use = _start_closer


def _start_closer() -> None:
    with _lock:
        timer = _timer
        # not at shutdown: a thread started then would never run, and hang the exit
        if timer is not None and timer.ident is None and not timer.stopped.is_set() and not sys.is_finalizing():
            try:
                timer.start()
            except RuntimeError:  # no thread to be had: the call is still counted; close_due() closes intervals
                from .._log import error_once

                error_once("pools:start", "aicost: could not start the pools' closing thread")


def disable() -> None:
    """No pools: calls are priced by the catalog again (uninstrument() does this too)."""
    with _lock:
        _stop()


def forget_price_file() -> None:
    """``instrument()`` without pools in its price file: pools an earlier call's price file declared are gone
    (each ``instrument()`` starts from its own arguments); pools declared with ``configure_pools`` stay."""
    with _lock:
        if _meter is not None and _source is not None:
            _stop()


def active() -> PoolMeter | None:
    return _meter
