"""Budgets and policies: decide before each LLM call whether the money may be spent.

    import aicost
    aicost.configure_budgets(
        budgets=[
            aicost.Budget(limit_usd="500", window="month"),                      # whole app
            aicost.Budget(limit_usd="20", window="day", scope="team"),            # each team
            aicost.Budget(limit_usd="5", window="day", scope="feature", value="chat",
                          action="downgrade", downgrade_to="gpt-4o-mini"),
        ],
        policies=[aicost.Policy(deny_models=["o1-pro*"], unless={"team": "research"})],
        store="redis://127.0.0.1:6379/0",   # or "memory" (default): per process
    )

See docs/budgets.md. The guard plugs into the instrumentation through ``aicost.hooks`` only; it takes effect
for calls made through instrumented SDK clients (``aicost.instrument()``).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

from .. import _fork
from .._lazy import lazy_names as _lazy_names
from .. import hooks
from .._urls import redact_url
from ..errors import ConfigurationError
from .config import Budget, ConfigSource, Policy, load_config, parse_config  # noqa: F401 (still importable here)
from .errors import BudgetExceeded, BudgetStoreUnavailable, CallRefused, ConfigurationTypeError, PolicyViolation
from .guard import BudgetEvent, BudgetGuard, BudgetStatus, _sequence, log_once
from .policy import allow_long_context
from .stores import MemoryStore, StoreUnavailable

__all__ = [
    "Budget", "BudgetEvent", "BudgetExceeded", "BudgetGuard", "BudgetStatus", "BudgetStoreUnavailable", "CallRefused",
    "MemoryStore", "Policy", "PolicyViolation", "RedisStore", "allow_long_context", "budget_status",
    "configure_budgets", "current_guard", "disable_budgets", "process_memory_store",
]

logger = logging.getLogger("aicost")
_lock = _fork.lock()
_active: BudgetGuard | None = None
_memory_store: MemoryStore | None = None


def process_memory_store() -> MemoryStore:
    """The store behind ``store="memory"``: one per process, so configuring budgets again keeps their spend."""
    global _memory_store
    with _lock:
        if _memory_store is None:
            _memory_store = MemoryStore()
        return _memory_store


# RedisStore imports the optional redis client only when asked for
__getattr__, __dir__ = _lazy_names(__name__, {"RedisStore": ".stores.redis"})


_STORE_CHOICES = "'memory', a redis://, rediss:// or unix:// URL, a mapping with 'url' (and 'prefix'), or a store object"


def _make_store(store: Any, timeout_s: float) -> Any:
    if store is None or store == "memory":
        return process_memory_store()
    if isinstance(store, str):
        if store.startswith(("redis://", "rediss://", "unix://")):
            from .stores.redis import RedisStore

            return RedisStore(store, timeout_s=timeout_s)
        raise ConfigurationError(f"store: expected {_STORE_CHOICES}; got {redact_url(store)!r}")
    if isinstance(store, Mapping):  # from a config file: {"url": "redis://...", "prefix": "myapp"}
        from .stores.redis import RedisStore

        options = dict(store)
        url = options.pop("url", None)
        if not isinstance(url, str):
            raise ConfigurationError("store.url: a redis:// URL is required")
        unknown = sorted(set(options) - {"prefix", "timeout_s", "retry_interval_s"})
        if unknown:
            raise ConfigurationError(f"store: unknown option(s) {unknown}; accepted: url, prefix, timeout_s, "
                                     "retry_interval_s")
        options.setdefault("timeout_s", timeout_s)
        return RedisStore(url, **options)
    return store


def _check_store(store: Any, fail_open: bool) -> None:
    """Reach the store once now: a URL that can never work fails here, not at the first call."""
    check = getattr(store, "check", None)
    if check is None:
        return
    try:
        warnings = check()
    except StoreUnavailable as exc:
        if not fail_open:
            raise ConfigurationError(
                f"store: cannot reach the budget store ({exc}) and on_store_error='closed' would refuse every call; "
                "start the store first, or configure on_store_error='open'"
            ) from None
        logger.warning("aicost: the budget store cannot be reached now (%s); with on_store_error='open' calls go "
                       "ahead unguarded until it can, and their spend is counted once it is back", exc)
        return
    for warning in warnings:  # server settings: once per process, however often budgets are configured
        log_once(f"store-check:{warning}", "aicost: %s", warning)


def configure_budgets(
    config: Mapping[str, Any] | str | None = None,
    *,
    budgets: Sequence[Budget] = (),
    policies: Sequence[Policy] = (),
    store: Any = "memory",
    on_store_error: str = "open",
    store_timeout_s: float = 0.25,
    default_max_output_tokens: int = 4096,
    on_unknown_price: str = "refuse",
    estimate_margin: Any = "1.25",
    lease_seconds: float = 3600.0,
    on_threshold: Callable[[BudgetEvent], None] | None = None,
    on_exceed: Callable[[BudgetEvent], None] | None = None,
    price_lookup: Any = None,
    clock: Callable[[], float] | None = None,
) -> BudgetGuard:
    """Install (or replace) the process's budget guard. Every argument is validated here, not mid-request.

    ``config``: a mapping or a JSON / TOML file path with ``budgets`` / ``policies`` lists and the options below
    (callbacks are code: pass them here or on ``Budget``). ``store``: ``"memory"`` (default, per process), a
    ``redis://`` URL (shared by every process using it), or a store object. ``on_store_error``: ``"open"``
    (calls go ahead unguarded while the store is unreachable) or ``"closed"`` (they are refused with
    :class:`BudgetStoreUnavailable`). Returns the guard (``.status()`` shows spend per budget).
    """
    global _active
    options: dict[str, Any] = dict(
        store=store, on_store_error=on_store_error, store_timeout_s=store_timeout_s,
        default_max_output_tokens=default_max_output_tokens, on_unknown_price=on_unknown_price,
        estimate_margin=estimate_margin, lease_seconds=lease_seconds,
    )
    all_budgets = _sequence(budgets, "budgets", "aicost.Budget")
    all_policies = _sequence(policies, "policies", "aicost.Policy")
    source = ConfigSource()  # where a budget the guard finds wrong below is, when it came from a file
    if config is not None:
        parsed, source = load_config(config)
        all_budgets = parsed.pop("budgets") + all_budgets
        all_policies = parsed.pop("policies") + all_policies
        options.update(parsed)
    timeout = options.pop("store_timeout_s")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 30:
        raise ConfigurationError(f"store_timeout_s must be a number of seconds in (0, 30], got {timeout!r}")
    if clock is not None and not callable(clock):
        raise ConfigurationTypeError(f"clock must be a callable returning epoch seconds, got {type(clock).__name__}")
    kwargs: dict[str, Any] = dict(options)
    kwargs["store"] = None
    # Validate everything before touching the store (a bad budget should not open a Redis connection).
    with source.locating():
        BudgetGuard(all_budgets, all_policies, **kwargs, on_threshold=on_threshold, on_exceed=on_exceed,
                    price_lookup=price_lookup, **({"clock": clock} if clock else {}))
    kwargs["store"] = new_store = _make_store(options["store"], timeout)
    try:
        _check_store(new_store, options["on_store_error"] == "open")
    except BaseException:
        if new_store is not getattr(_active, "_store", None) and hasattr(new_store, "close"):
            new_store.close()
        raise
    guard = BudgetGuard(all_budgets, all_policies, **kwargs, on_threshold=on_threshold, on_exceed=on_exceed,
                        price_lookup=price_lookup, **({"clock": clock} if clock else {}))
    with _lock:
        previous, _active = _active, guard
        if previous is not None:
            guard.adopt_journal(previous)
            hooks.remove_interceptor(previous)
        hooks.add_interceptor(guard)
    if previous is not None and previous._store is not guard._store:
        previous.close()
    return guard


def disable_budgets() -> None:
    """Remove the guard: calls are no longer checked. Spend recorded in a shared store stays there; the process's
    memory store is dropped, since from now on nothing counts what is spent (configuring again starts from zero,
    where configuring again *without* disabling keeps the spend)."""
    global _active, _memory_store
    with _lock:
        previous, _active = _active, None
        if previous is not None:
            hooks.remove_interceptor(previous)
            if previous._store is _memory_store:
                _memory_store = None
    if previous is not None:
        previous.close()


def current_guard() -> BudgetGuard | None:
    return _active


def budget_status(attributes: Mapping[str, str] | None = None, **kwargs: Any) -> list[BudgetStatus]:
    """Spend per applicable budget in the current windows (empty when no guard is configured)."""
    guard = _active
    return [] if guard is None else guard.status(attributes, **kwargs)
