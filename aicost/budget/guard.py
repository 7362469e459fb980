"""The budget guard: an ``aicost.hooks`` interceptor that reserves before a call and settles after it.

Per call: policies (model rules, input cap, output cap written into the request) -> worst-case cost -> one
atomic reservation against every applicable budget bucket -> the call -> settle to the real cost. If an
enforced budget cannot hold the worst case, the call is downgraded (when that budget says so) or refused with
:class:`BudgetExceeded`; nothing was sent. Budgets whose action is ``warn`` or ``callback`` are counted in the
same reservation but never refuse.

Any failure inside the guard other than a deliberate refusal is logged once and the call goes ahead
unguarded: a bug in aicost must not become an outage of the host application.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

from .. import _log
from .. import semconv
from ..pricing.money import format_usd, sum_usd
from .config import STORE_ERROR_POLICIES, Budget, Policy
from .errors import BudgetExceeded, BudgetStoreUnavailable, CallRefused, ConfigurationError, PolicyViolation
from .estimate import PriceLookup, Prices, count_input, worst_case
from .money import limit_to_nanos, to_nanos, to_usd
from .observe import record_decision
from .policy import PolicySet, scope_value
from .stores.base import BudgetStore, Charge, StoreUnavailable
from .stores.memory import MemoryStore
from .windows import WindowCache

logger = logging.getLogger("aicost")

# Reservation ids must be unique across every process sharing a Redis store; a forked child gets a new prefix
# (its copy of the counter would otherwise repeat the parent's ids).
_process_id = secrets.token_hex(6)


def _new_process_id() -> None:
    global _process_id
    _process_id = secrets.token_hex(6)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_process_id)
def log_once(key: str, message: str, *args: Any, level: int = logging.WARNING, exc_info: bool = False) -> None:
    _log.log_once(f"budget:{key}", level, message, *args, exc_info=exc_info)


_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    """What ``on_threshold`` / ``on_exceed`` callbacks receive."""

    kind: str  # "threshold" | "exceeded"
    budget: Budget
    scope_value: str | None  # None for a global budget
    window: str  # e.g. "day:2026-11-23"
    resets_at: datetime
    limit_usd: Decimal
    spent_usd: Decimal  # settled spend in this window
    reserved_usd: Decimal  # held by calls in flight (at the moment of the decision)
    requested_usd: Decimal | None = None  # worst case of the call (exceeded events)
    threshold: Decimal | None = None  # the fraction crossed (threshold events)
    model: str | None = None
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    budget: str
    scope_value: str | None
    window: str
    resets_at: datetime
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal

    @property
    def remaining_usd(self) -> Decimal:
        # Exact and canonical whatever the thread's decimal context (copy_negate never rounds).
        return max(Decimal(0), sum_usd((self.limit_usd, self.spent_usd.copy_negate(), self.reserved_usd.copy_negate())))


class _Compiled:
    """A budget with its amounts pre-converted to store units, so the hot path does no Decimal maths."""

    __slots__ = ("budget", "limit", "enforce", "thresholds", "attribute")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.limit = limit_to_nanos(budget.limit_usd)
        self.enforce = budget.action in ("raise", "downgrade")
        self.thresholds = tuple(to_nanos(budget.limit_usd * t) for t in budget.thresholds)
        self.attribute = budget.attribute


class _Ticket:
    __slots__ = ("_guard", "rid", "charges", "compiled", "amount", "info", "done")

    def __init__(self, guard: "BudgetGuard", rid: str, charges: list[Charge], compiled: list[_Compiled],
                 amount: int, info: Any) -> None:
        self._guard = guard
        self.rid = rid
        self.charges = charges
        self.compiled = compiled
        self.amount = amount
        self.info = info
        self.done = False

    def after_call(self, result: Any) -> None:
        if self.done:
            return
        self.done = True
        try:
            self._guard._settle(self, result)
        except Exception:
            log_once("settle", "aicost: budget settlement failed; the reservation expires with its lease", exc_info=True)

    def release(self) -> None:
        """Give the whole reservation back (the call was not made)."""
        if self.done:
            return
        self.done = True
        try:
            self._guard._store.settle(self.rid, self.charges, 0, self._guard._clock())
        except Exception:
            log_once("release", "aicost: could not release a budget reservation; it expires with its lease")


class BudgetGuard:
    """Reserve-then-settle budget enforcement plus policies. Register with ``aicost.hooks.add_interceptor``.

    Usually created by :func:`aicost.budget.configure_budgets`. ``clock`` (epoch seconds) decides the window
    and lease times; tests inject one to cross window boundaries.
    """

    def __init__(
        self,
        budgets: Sequence[Budget] = (),
        policies: Sequence[Policy] = (),
        *,
        store: BudgetStore | None = None,
        on_store_error: str = "open",
        default_max_output_tokens: int = 4096,
        on_unknown_price: str = "refuse",
        estimate_margin: Decimal | float | str = Decimal("1.25"),
        lease_seconds: float = 3600.0,
        on_threshold: Callable[[BudgetEvent], None] | None = None,
        on_exceed: Callable[[BudgetEvent], None] | None = None,
        price_lookup: PriceLookup | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        budgets = list(budgets)
        for i, b in enumerate(budgets):
            if not isinstance(b, Budget):
                raise TypeError(f"budgets[{i}] must be an aicost.Budget, got {type(b).__name__}")
        for i, p in enumerate(policies):
            if not isinstance(p, Policy):
                raise TypeError(f"policies[{i}] must be an aicost.Policy, got {type(p).__name__}")
        names = [b.name for b in budgets]
        duplicates = sorted({n for n in names if names.count(n) > 1})  # type: ignore[type-var]
        if duplicates:
            raise ConfigurationError(
                f"budgets: duplicate budget name(s) {duplicates}; give each Budget a distinct name= "
                "(the name identifies its spend in the store)"
            )
        if on_store_error not in STORE_ERROR_POLICIES:
            raise ConfigurationError(f"on_store_error must be 'open' or 'closed', got {on_store_error!r}")
        if on_unknown_price not in ("refuse", "allow"):
            raise ConfigurationError(f"on_unknown_price must be 'refuse' or 'allow', got {on_unknown_price!r}")
        if isinstance(default_max_output_tokens, bool) or not isinstance(default_max_output_tokens, int) or default_max_output_tokens <= 0:
            raise ConfigurationError(f"default_max_output_tokens must be a positive int, got {default_max_output_tokens!r}")
        margin = Decimal(str(estimate_margin)) if not isinstance(estimate_margin, Decimal) else estimate_margin
        if not margin.is_finite() or margin < 1:
            raise ConfigurationError(f"estimate_margin must be >= 1, got {estimate_margin!r}")
        if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, (int, float)) or lease_seconds <= 0:
            raise ConfigurationError(f"lease_seconds must be > 0, got {lease_seconds!r}")
        for name, fn in (("on_threshold", on_threshold), ("on_exceed", on_exceed)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable")
        if store is not None and not all(hasattr(store, m) for m in ("reserve", "settle", "usage")):
            raise TypeError("store must be 'memory', a redis:// URL, or an object with reserve / settle / usage")

        self.budgets = tuple(budgets)
        self.policies = PolicySet(policies)
        self._compiled = [_Compiled(b) for b in budgets]
        self._store: BudgetStore = store if store is not None else MemoryStore()
        self._fail_open = on_store_error == "open"
        self._refuse_unknown = on_unknown_price == "refuse"
        self._default_max_output = default_max_output_tokens
        self._margin = margin
        self._lease_s = float(lease_seconds)
        self._on_threshold = on_threshold
        self._on_exceed = on_exceed
        self._prices = Prices(price_lookup)
        self._clock = clock
        self._windows = WindowCache()
        self._ids = itertools.count()
        self._store_down = False
        self._warned: set[str] = set()
        self._state_lock = threading.Lock()  # log transitions once even when many threads see them together
        self._charge_cache: dict[tuple[Any, str, str], Charge] = {}
        # Only read the attribution when some budget or policy is scoped by it.
        self._needs_attributes = any(b.attribute for b in budgets) or any(
            p.attribute or p.unless for p in self.policies.policies
        )
        self._attributes: Callable[[], Mapping[str, str]] | None = None
        self._attributes_retry = 0.0

    # -- the interceptor protocol ---------------------------------------------------------------------------

    def before_call(self, info: Any) -> _Ticket | None:
        try:
            return self._before_call(info)
        except CallRefused:
            raise
        except Exception:
            log_once("before_call", "aicost: budget guard failed; this call goes ahead unguarded", exc_info=True)
            return None

    def before_unguarded_call(self, info: Any) -> _Ticket | None:
        """Work the vendor began before aicost could ask (a response on a Realtime connection): nothing can be
        refused or held, and nothing is raised into the caller's event loop. The ticket reserves nothing; it
        settles the call's actual cost against the budgets it falls under, so that later calls see the spend."""
        try:
            if not self._compiled:
                return None
            model = info.request_model if isinstance(info.request_model, str) else None
            attrs = self._current_attributes() if self._needs_attributes else _NO_ATTRIBUTES
            compiled, charges = self._charges(attrs, model, info.provider or "", self._clock())
            if not charges:
                return None
            return _Ticket(self, f"{_process_id}.{next(self._ids):x}", charges, compiled, 0, info)
        except Exception:
            log_once("before_unguarded_call", "aicost: budget guard failed; this call's spend is not counted",
                     exc_info=True)
            return None

    # -- internals ------------------------------------------------------------------------------------------

    def _current_attributes(self) -> Mapping[str, str]:
        fn = self._attributes
        if fn is None:
            now = time.monotonic()
            if now < self._attributes_retry:
                return {}
            try:
                from ..attribution import current_attributes

                fn = self._attributes = current_attributes
            except ImportError:  # attribution not installed: global / model / provider budgets still work
                self._attributes_retry = now + 10.0
                return {}
        return fn()

    def _before_call(self, info: Any) -> _Ticket | None:
        kwargs = info.kwargs
        provider = info.provider or ""
        shape = info.shape  # the request, read and changed the same way whatever the vendor
        model = info.request_model or shape.model(kwargs)
        model = model if isinstance(model, str) else None
        attrs = self._current_attributes() if self._needs_attributes else _NO_ATTRIBUTES
        policies = self.policies

        try:
            policies.check_model(model, attrs, provider)
        except PolicyViolation as exc:
            record_decision(info, "policy", exc.rule)
            raise
        if policies.has_output_caps:
            cap = policies.output_cap(attrs, model, provider)
            if cap is not None and shape.set_output_cap(kwargs, cap[0]):
                info.span_attributes[semconv.AICOST_POLICY_MAX_OUTPUT_TOKENS] = cap[0]

        counted: tuple[str | None, int, bool] | None = None
        if policies.has_input_caps:
            cap = policies.input_cap(attrs, model, provider)
            if cap is not None:
                tokens, exact = count_input(kwargs, model, provider, shape)
                counted = (model, tokens, exact)
                if tokens > cap[0]:
                    rule = cap[1].name or cap[1].scope
                    record_decision(info, "policy", rule)
                    raise PolicyViolation(
                        rule,
                        f"the request has {'about ' if not exact else ''}{tokens} input tokens, over the cap of "
                        f"{cap[0]}; wrap the call in aicost.budget.allow_long_context() to opt in",
                    )
        if not self._compiled:
            return None

        now = self._clock()
        original_model = model
        tried: set[str | None] = {model}
        while True:
            if counted is None or counted[0] != model:
                tokens, exact = count_input(kwargs, model, provider, shape)
                counted = (model, tokens, exact)
            amount_usd = self._estimate(info, model, provider, counted[1], counted[2])
            amount = to_nanos(amount_usd)
            compiled, charges = self._charges(attrs, model, provider, now)
            if not charges:
                return None
            rid = f"{_process_id}.{next(self._ids):x}"
            try:
                outcome = self._store.reserve(rid, charges, amount, now, now + self._lease_s)
            except StoreUnavailable as exc:
                return self._store_unavailable(info, exc)
            if self._store_down:
                with self._state_lock:
                    back, self._store_down = self._store_down, False
                if back:
                    logger.warning("aicost: budget store is reachable again; budgets are enforced")
            if outcome.ok:
                break
            failed = compiled[outcome.failed]
            budget = failed.budget
            spent, reserved = outcome.states[outcome.failed]
            target = budget.downgrade_to
            if (
                budget.action == "downgrade"
                and target not in tried
                and policies.model_allowed(target, attrs, provider)
            ):
                tried.add(target)
                model = target
                shape.set_model(kwargs, target)
                try:
                    info.request_model = target
                except Exception:
                    pass
                record_decision(info, "downgraded", budget.name, {semconv.AICOST_BUDGET_DOWNGRADED_FROM: original_model})
                continue
            event = self._event("exceeded", failed, charges[outcome.failed], spent, reserved, amount_usd, model, provider)
            callback = budget.on_exceed or self._on_exceed
            if callback is not None:
                self._call_user(callback, event, swallow=True)
            record_decision(info, "blocked", budget.name, {semconv.AICOST_BUDGET_RESERVED_USD: format_usd(amount_usd)})
            raise BudgetExceeded(
                budget=budget.name or "",
                scope=budget.scope,
                scope_value=None if budget.scope == "global" else event.scope_value,
                limit_usd=budget.limit_usd,
                spent_usd=event.spent_usd,
                reserved_usd=event.reserved_usd,
                requested_usd=amount_usd,
                resets_at=event.resets_at,
                model=model,
            )

        ticket = _Ticket(self, rid, charges, compiled, amount, info)
        info.span_attributes[semconv.AICOST_BUDGET_RESERVED_USD] = format_usd(amount_usd)
        for i, c in enumerate(compiled):  # soft budgets: counted above, never refusing
            if c.enforce:
                continue
            spent, reserved = outcome.states[i]
            if spent + reserved + amount <= c.limit:
                continue
            event = self._event("exceeded", c, charges[i], spent, reserved, amount_usd, model, provider)
            if c.budget.action == "warn":
                record_decision(info, "warned", c.budget.name)
                with self._state_lock:
                    first = charges[i].key not in self._warned
                    if first:
                        if len(self._warned) > 10_000:
                            self._warned.clear()
                        self._warned.add(charges[i].key)
                if first:
                    logger.warning("aicost: %s (allowed: the budget's action is 'warn')", _describe(event))
                callback = c.budget.on_exceed or self._on_exceed
                if callback is not None:
                    self._call_user(callback, event, swallow=True)
            else:  # callback: the user decides; returning False (or raising CallRefused) refuses the call
                record_decision(info, "callback", c.budget.name)
                try:
                    verdict = c.budget.on_exceed(event)  # type: ignore[misc]
                except CallRefused:
                    ticket.release()
                    raise
                except Exception:
                    log_once(f"callback:{c.budget.name}", "aicost: on_exceed callback of budget %r raised; the call "
                             "is allowed (return False or raise CallRefused to refuse)", c.budget.name, exc_info=True)
                    continue
                if verdict is False:
                    ticket.release()
                    record_decision(info, "blocked", c.budget.name)
                    raise BudgetExceeded(
                        budget=c.budget.name or "", scope=c.budget.scope, scope_value=event.scope_value,
                        limit_usd=c.budget.limit_usd, spent_usd=event.spent_usd, reserved_usd=event.reserved_usd,
                        requested_usd=amount_usd, resets_at=event.resets_at, model=model,
                    )
        return ticket

    def _estimate(self, info: Any, model: str | None, provider: str, tokens: int, exact: bool) -> Decimal:
        if not model:
            # No model to price ahead (e.g. resuming a background response): hold nothing, charge what it costs.
            return Decimal(0)
        price = self._prices.get(provider, model, info.kwargs.get("service_tier"))
        estimate = worst_case(
            price=price,
            kwargs=info.kwargs,
            shape=info.shape,
            operation=info.operation or "",
            input_tokens=tokens,
            input_exact=exact,
            default_max_output_tokens=self._default_max_output,
            estimate_margin=self._margin,
        )
        if estimate.cost_usd is not None:
            return estimate.cost_usd
        if self._refuse_unknown:
            record_decision(info, "policy", "unknown_price")
            raise PolicyViolation(
                "unknown_price",
                f"no price is known for {provider} model {model!r}, so its worst-case cost cannot be reserved "
                "against the budgets; add a price override or configure on_unknown_price='allow'",
            )
        log_once(f"unknown:{provider}:{model}", "aicost: no price for %s model %r; its calls are not budgeted",
                 provider, model)
        return Decimal(0)

    def _charges(self, attrs: Mapping[str, str], model: str | None, provider: str, now: float) -> tuple[list[_Compiled], list[Charge]]:
        compiled: list[_Compiled] = []
        charges: list[Charge] = []
        cache = self._charge_cache
        for c in self._compiled:
            b = c.budget
            value = scope_value(b.scope, c.attribute, attrs, model, provider)
            if value is None or (b.value is not None and value != b.value):
                continue
            window = self._windows.at(b.window, now)
            compiled.append(c)
            cache_key = (b.name, value, window.key)
            charge = cache.get(cache_key)
            if charge is None:
                if len(cache) > 10_000:
                    cache.clear()
                charge = cache[cache_key] = Charge(f"{b.name}|{value}|{window.key}", c.limit, c.enforce,
                                                   window.end + self._lease_s + 60.0, c.thresholds, window.end)
            charges.append(charge)
        return compiled, charges

    def _store_unavailable(self, info: Any, exc: Exception) -> None:
        with self._state_lock:
            newly_down, self._store_down = not self._store_down, True
        if newly_down:
            logger.warning(
                "aicost: budget store unreachable (%s); failing %s: %s until it is back", exc,
                "open" if self._fail_open else "closed",
                "calls go ahead without budget checks" if self._fail_open else "calls are refused",
            )
        record_decision(info, "store_unavailable", None)
        if self._fail_open:
            return None
        raise BudgetStoreUnavailable(f"aicost budget store unreachable and on_store_error='closed': {exc}")

    def _settle(self, ticket: _Ticket, result: Any) -> None:
        cost = result.cost_usd
        if cost is not None:
            actual = to_nanos(cost) if cost > 0 else 0
        elif result.cost is not None:
            actual = ticket.amount  # billed, but the price (or the billing unit) is unknown: keep the worst case
        else:
            actual = 0  # nothing billable (the vendor refused, the connection failed before usage)
        try:
            outcomes = self._store.settle(ticket.rid, ticket.charges, actual, self._clock())
        except StoreUnavailable as exc:
            log_once("settle-down", "aicost: could not settle a budget reservation (%s); it expires with its lease", exc)
            return
        for c, charge, out in zip(ticket.compiled, ticket.charges, outcomes):
            if out.fired_after <= out.fired_before:
                continue
            for level in range(out.fired_before, out.fired_after):
                event = self._event("threshold", c, charge, out.spent, 0, None, ticket.info.request_model,
                                    ticket.info.provider, threshold=c.budget.thresholds[level])
                callback = c.budget.on_threshold or self._on_threshold
                if callback is None:
                    logger.warning("aicost: %s", _describe(event))
                else:
                    self._call_user(callback, event, swallow=True)

    def _event(self, kind: str, c: _Compiled, charge: Charge, spent: int, reserved: int,
               requested: Decimal | None, model: str | None, provider: str | None,
               threshold: Decimal | None = None) -> BudgetEvent:
        b = c.budget
        _, value, window_key = charge.key.rsplit("|", 2)
        return BudgetEvent(
            kind=kind, budget=b, scope_value=None if b.scope == "global" else value, window=window_key,
            resets_at=_resets_at(b.window, charge), limit_usd=b.limit_usd, spent_usd=to_usd(spent),
            reserved_usd=to_usd(reserved), requested_usd=requested, threshold=threshold, model=model, provider=provider,
        )

    @staticmethod
    def _call_user(callback: Callable[[BudgetEvent], None], event: BudgetEvent, swallow: bool = True) -> None:
        try:
            callback(event)
        except Exception:
            log_once(f"callback:{id(callback)}", "aicost: a budget callback raised; ignored", exc_info=True)

    # -- introspection ----------------------------------------------------------------------------------------

    def status(self, attributes: Mapping[str, str] | None = None, *, model: str | None = None,
               provider: str = "") -> list[BudgetStatus]:
        """Spend of every budget that would apply to a call with these attributes, in the current windows.

        ``attributes`` uses attribution keys (``{"aicost.team": "search"}``); default: the current attribution.
        """
        attrs = self._current_attributes() if attributes is None else attributes
        now = self._clock()
        compiled, charges = self._charges(attrs, model, provider, now)
        out = []
        for c, charge in zip(compiled, charges):
            spent, reserved = self._store.usage(charge.key, now)
            _, value, window_key = charge.key.rsplit("|", 2)
            out.append(BudgetStatus(c.budget.name or "", None if c.budget.scope == "global" else value, window_key,
                                    _resets_at(c.budget.window, charge), c.budget.limit_usd, to_usd(spent),
                                    to_usd(reserved)))
        return out

    def close(self) -> None:
        close = getattr(self._store, "close", None)
        if close is not None:
            close()


def _resets_at(window: str, charge: Charge) -> datetime:
    return datetime.fromtimestamp(charge.window_end, tz=timezone.utc)


def _describe(event: BudgetEvent) -> str:
    b = event.budget
    where = b.scope if event.scope_value is None else f"{b.scope}={event.scope_value!r}"
    if event.kind == "threshold":
        return (f"budget {b.name!r} ({where}) reached {event.threshold:%} of ${format_usd(b.limit_usd)}: spent "
                f"${format_usd(event.spent_usd)} in {event.window}; resets at {event.resets_at.isoformat()}")
    return (f"budget {b.name!r} ({where}) exceeded: limit ${format_usd(b.limit_usd)}, spent "
            f"${format_usd(event.spent_usd)}, reserved ${format_usd(event.reserved_usd)}, call needs up to "
            f"${format_usd(event.requested_usd)}; resets at {event.resets_at.isoformat()}")
