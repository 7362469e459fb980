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
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

from .. import _fork
from .. import _log
from .. import hooks
from .. import semconv
from ..pricing.money import canonical, format_usd, sum_usd
from .config import STORE_ERROR_POLICIES, Budget, Policy, entry_error
from .errors import (
    BudgetExceeded, BudgetStoreUnavailable, CallRefused, ConfigurationError, ConfigurationTypeError, PolicyViolation,
)
from .estimate import PriceLookup, Prices, count_input, worst_case
from .money import fraction_to_nanos, limit_to_nanos, to_nanos, to_usd
from .observe import record_decision
from .policy import PolicySet, scope_value
from .journal import Pending, SettlementJournal
from .stores.base import (SETTLE, SETTLE_ONCE, BudgetStore, Charge, SettleOutcome, StoreUnavailable,
                          never_loses_answers, sent_mode)
from .stores.memory import MemoryStore
from .windows import WindowCache

logger = logging.getLogger("aicost")

# Reservation ids must be unique across every guard and process sharing a store: a random prefix per process
# (a forked child draws a new one: its copy of the counter would otherwise repeat the parent's ids) and one
# counter for every guard of the process (a guard configured again must not start over at 0).
_process_id = secrets.token_hex(8)
_ids = itertools.count()


@_fork.on_fork_in_child
def _new_process_id() -> None:
    global _process_id
    _process_id = secrets.token_hex(8)


def new_reservation_id() -> str:
    return f"{_process_id}.{next(_ids):x}"


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
        self.thresholds = tuple(fraction_to_nanos(budget.limit_usd, t) for t in budget.thresholds)
        self.attribute = budget.attribute


class _Ticket:
    """One call's reservation. ``held``: the store holds ``amount`` for it; otherwise the call went ahead without
    one (the store was unreachable, or the vendor began before aicost could ask) and only its cost is settled.
    ``mode``: how to settle it (``SETTLE_ONCE`` when a reserve may have reached the store without an answer)."""

    __slots__ = ("_guard", "rid", "charges", "compiled", "amount", "info", "done", "held", "mode", "lease_until")

    def __init__(self, guard: "BudgetGuard", rid: str, charges: list[Charge], compiled: list[_Compiled],
                 amount: int, info: Any, lease_until: float, held: bool = True, mode: int = SETTLE) -> None:
        self._guard = guard
        self.rid = rid
        self.charges = charges
        self.compiled = compiled
        self.amount = amount
        self.info = info
        self.done = False
        self.held = held
        self.mode = mode
        self.lease_until = lease_until

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
            self._guard._settle_amount(self, 0)
        except Exception:
            log_once("release", "aicost: could not release a budget reservation; it expires with its lease",
                     exc_info=True)


def _vendors_of(budget: Budget) -> tuple[str | None, ...]:
    """The vendors whose calls a budget's downgrade can apply to, to check its target's price at configure time as
    those calls will resolve it: the one a provider budget names, else any vendor the catalog prices (a Bedrock
    model id resolves only as ``aws.bedrock``)."""
    if budget.scope == "provider" and budget.value:
        return (budget.value,)
    from ..pricing import catalog_providers

    return (None, *catalog_providers())


class BudgetGuard:
    """Reserve-then-settle budget enforcement plus policies. Register with ``aicost.hooks.add_interceptor``.

    Usually created by :func:`aicost.budget.configure_budgets`. ``clock`` (epoch seconds) decides the window
    and lease times; tests inject one to cross window boundaries.
    """

    # After every other interceptor: it reserves at the price they decided (a pool's rate) for the request as they
    # left it, and no other interceptor can refuse the call once its reservation is made.
    interceptor_phase = hooks.PHASE_GUARD

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
        budgets = _sequence(budgets, "budgets", "aicost.Budget")
        policies = _sequence(policies, "policies", "aicost.Policy")
        for i, b in enumerate(budgets):
            if not isinstance(b, Budget):
                raise ConfigurationTypeError(f"budgets[{i}] must be an aicost.Budget, got {type(b).__name__}")
        for i, p in enumerate(policies):
            if not isinstance(p, Policy):
                raise ConfigurationTypeError(f"policies[{i}] must be an aicost.Policy, got {type(p).__name__}")
        names = [b.name for b in budgets]
        duplicates = sorted({n for n in names if names.count(n) > 1})  # type: ignore[type-var]
        if duplicates:
            again = next(i for i, n in enumerate(names) if n in names[:i])  # where a file gives a name twice
            raise entry_error(ConfigurationError(
                f"budgets: duplicate budget name(s) {duplicates}; give each Budget a distinct name= "
                "(the name identifies its spend in the store)"
            ), "budgets", again, "name")
        _one_of(on_store_error, "on_store_error", STORE_ERROR_POLICIES)
        _one_of(on_unknown_price, "on_unknown_price", ("refuse", "allow"))
        if isinstance(default_max_output_tokens, bool) or not isinstance(default_max_output_tokens, int) or default_max_output_tokens <= 0:
            raise ConfigurationError(
                f"default_max_output_tokens must be a positive int (output tokens reserved when neither the request "
                f"nor the catalog gives a cap), got {default_max_output_tokens!r}"
            )
        margin = _margin(estimate_margin)
        if (isinstance(lease_seconds, bool) or not isinstance(lease_seconds, (int, float))
                or not 0 < lease_seconds <= MAX_LEASE_SECONDS):
            raise ConfigurationError(
                f"lease_seconds must be a number of seconds in (0, {MAX_LEASE_SECONDS}] (how long a reservation "
                f"blocks the budget if its call never settles), got {lease_seconds!r}"
            )
        for name, fn in (("on_threshold", on_threshold), ("on_exceed", on_exceed), ("price_lookup", price_lookup)):
            if fn is not None and not callable(fn):
                raise ConfigurationTypeError(f"{name} must be a callable or None, got {type(fn).__name__}")
        if not callable(clock):
            raise ConfigurationTypeError(f"clock must be a callable returning epoch seconds, got {type(clock).__name__}")
        if store is not None and not all(callable(getattr(store, m, None)) for m in ("reserve", "settle", "usage")):
            raise ConfigurationTypeError(
                "store must be 'memory', a redis:// URL, a mapping with 'url', or an object with reserve / settle / "
                f"usage methods, got {type(store).__name__}"
            )
        for i, b in enumerate(budgets):
            if b.action == "callback" and b.on_exceed is None and on_exceed is None:
                raise entry_error(ConfigurationError(
                    f"budgets[{i}]: Budget.on_exceed: action='callback' needs a callable on_exceed(event) to decide, "
                    "on the Budget or as configure_budgets(on_exceed=...), the default for every budget (the only "
                    "way for a budget from a config file)"
                ), "budgets", i, "action")
        prices = Prices(price_lookup)
        for i, b in enumerate(budgets):
            if b.downgrade_to is not None and not any(prices.get(provider, b.downgrade_to, None) is not None
                                                      for provider in _vendors_of(b)):
                raise entry_error(ConfigurationError(
                    f"Budget.downgrade_to: no price is known for {b.downgrade_to!r} (budget {b.name!r}) on "
                    f"{'provider ' + repr(b.value) if b.scope == 'provider' and b.value else 'any vendor'}, so a "
                    "downgraded call could not be reserved; use a model in the price catalog or add a price override "
                    "before configuring budgets"
                ), "budgets", i, "downgrade_to")

        self.budgets = tuple(budgets)
        self.policies = PolicySet(policies)
        self._compiled = [_Compiled(b) for b in budgets]
        self._store: BudgetStore = store if store is not None else MemoryStore()
        # a settlement for nothing held is sent SETTLE_ONCE (its marker guards a retry after a lost answer),
        # except to a store that answers every command: there no retry follows, and a marker is only memory
        self._marks_unheld = not never_loses_answers(self._store)
        self._fail_open = on_store_error == "open"
        self._refuse_unknown = on_unknown_price == "refuse"
        self._default_max_output = default_max_output_tokens
        self._margin = margin
        self._lease_s = float(lease_seconds)
        self._on_threshold = on_threshold
        self._on_exceed = on_exceed
        self._prices = prices
        self._clock = clock
        self._windows = WindowCache()
        self._journal = SettlementJournal()
        self._journal_handed_on = False
        self._store_down = False
        self._warned: set[str] = set()
        self._state_lock = _fork.lock()  # log transitions once even when many threads see them together
        self._charge_cache: dict[tuple[Any, str, str], Charge] = {}
        # Only read the attribution when some budget or policy is scoped by it.
        self._needs_attributes = any(b.attribute for b in budgets) or any(
            p.attribute or p.unless for p in self.policies.policies
        )
        self._attributes: Callable[[], Mapping[str, str]] | None = None
        self._attributes_retry = 0.0
        # (A forked child: its lock is freed, the journal and a memory store reset themselves; the parent's
        # settlements and spend stay the parent's.)

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
            now = self._clock()
            compiled, charges = self._charges(attrs, model, info.provider or "", now)
            if not charges:
                return None
            # No reserve is sent, so none can arrive late: no lease (its SETTLE_ONCE marker lasts the minimum).
            return _Ticket(self, new_reservation_id(), charges, compiled, 0, info, now, held=False)
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
            if cap is not None:
                asked = shape.output_cap(kwargs)
                if shape.set_output_cap(kwargs, cap[0]):
                    # the span's gen_ai.request.max_tokens is the cap sent; the application's own is kept here
                    info.span_attributes[semconv.AICOST_POLICY_MAX_OUTPUT_TOKENS] = cap[0]
                    if asked is not None and asked > cap[0]:
                        info.span_attributes[semconv.AICOST_POLICY_MAX_TOKENS_FROM] = asked
                elif (unread := shape.unread_cap(kwargs)) is not None:
                    # sent as the application made it: not reinterpreted, and no second cap beside it
                    info.span_attributes[semconv.AICOST_POLICY_CAP_NOT_APPLIED] = unread
                    log_once(f"cap_not_applied:{unread}", "aicost: a policy's max_output_tokens was not applied to "
                             "a request: %s; it is sent as the application made it", unread)

        counted: tuple[str | None, int, bool] | None = None
        if policies.has_input_caps:
            cap = policies.input_cap(attrs, model, provider)
            if cap is not None:
                tokens, exact = count_input(kwargs, model, provider, shape=shape)
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
                tokens, exact = count_input(kwargs, model, provider, shape=shape)
                counted = (model, tokens, exact)
            amount_usd = self._estimate(info, model, provider, counted[1], counted[2])
            amount = to_nanos(amount_usd)
            compiled, charges = self._charges(attrs, model, provider, now)
            if not charges:
                return None
            if self._journal:  # settlements owed from an outage first: they may release holds this call needs
                self._drain(now)
            rid = new_reservation_id()
            lease_until = now + self._lease_s
            try:
                outcome = self._store.reserve(rid, charges, amount, now, lease_until)
            except StoreUnavailable as exc:
                return self._store_unavailable(info, exc, rid, charges, compiled, amount, lease_until)
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
                # priced as this call's vendor prices it (a Bedrock model id is no downgrade for an OpenAI call), at
                # the call's tier (Google bills a priority call at per-model rates the catalog may lack), in the
                # call's price scope (a pool call by its pool's rates), as the estimate will price it; whatever
                # on_unknown_price says: an unpriced target would reserve nothing and pass an exhausted budget
                and self._price(info, target, provider)[0] is not None
                and _downgraded(shape, kwargs, target)  # last: it changes the request
            ):
                tried.add(target)
                model = target
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
                requested_usd=event.requested_usd,
                resets_at=event.resets_at,
                model=model,
            )

        ticket = _Ticket(self, rid, charges, compiled, amount, info, lease_until)
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
                    # the budget's own, else configure_budgets(on_exceed=...): checked in __init__ to be one
                    verdict = (c.budget.on_exceed or self._on_exceed)(event)  # type: ignore[misc]
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
                        requested_usd=event.requested_usd, resets_at=event.resets_at, model=model,
                    )
        return ticket

    def _estimate(self, info: Any, model: str | None, provider: str, tokens: int, exact: bool) -> Decimal:
        if not model:
            return self._no_model(info)
        price, tier_reason = self._price(info, model, provider)
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
        reason = tier_reason or estimate.unknown_reason  # priced, but not at this tier or not all this call bills
        self._refuse_unknown_price(info, reason or f"no price is known for {provider} model {model!r}",
                                   "add a price override or configure on_unknown_price='allow'")
        if reason is not None:
            log_once(f"unknown:{reason}", "aicost: %s; such calls are not budgeted", reason)
        else:
            log_once(f"unknown:{provider}:{model}", "aicost: no price for %s model %r; its calls are not budgeted",
                     provider, model)
        return Decimal(0)

    def _no_model(self, info: Any) -> Decimal:
        """The worst case of a call that names no model. One that resumes work an earlier call started (a
        background response's stream, ``CallInfo.resumes``) asks for nothing new: it holds nothing and is charged
        what it cost. Any other is new work at a price nobody knows ahead (a stored prompt chooses the model): a
        call of unknown price, refused or let through as ``on_unknown_price`` says, never a free $0 hold."""
        if getattr(info, "resumes", False):
            return Decimal(0)
        where = info.endpoint or info.provider or "vendor"
        why = f"the {where} request names no model (e.g. a stored prompt chooses it)"
        self._refuse_unknown_price(info, why, "name the model in the request, or configure on_unknown_price='allow'")
        log_once(f"no-model:{info.endpoint}", "aicost: %s; nothing is held for such calls: each is charged what it "
                 "cost when it ends", why)
        return Decimal(0)

    def _refuse_unknown_price(self, info: Any, why: str, fix: str) -> None:
        """With on_unknown_price='refuse': refuse a call whose worst case cannot be priced, saying why and the fix."""
        if self._refuse_unknown:
            record_decision(info, "policy", "unknown_price")
            raise PolicyViolation(
                "unknown_price", f"{why}, so its worst-case cost cannot be reserved against the budgets; {fix}")

    def _price(self, info: Any, model: str, provider: str) -> tuple[Any, str | None]:
        """The price a call of ``model`` is reserved at and, without one, the tier's reason when that is why (the
        span's aicost.price.unknown_reason). A call marked with a price scope is billed by where it goes (a
        self-hosted pool's provisional rate), not by the model: only that scope prices it. The one lookup of the
        estimate and of a downgrade's target, so that a target is checked at the prices it will be reserved at."""
        scope = getattr(info, "price_scope", None)
        if scope is not None:
            from ..pricing import scoped_price

            return scoped_price(scope, model), None
        return self._prices.find(provider, model, getattr(info, "service_tier", None))

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
                                                   window.end + self._lease_s + 60.0, c.thresholds, window.end,
                                                   value, window.key)
            charges.append(charge)
        return compiled, charges

    def _store_unavailable(self, info: Any, exc: StoreUnavailable, rid: str, charges: list[Charge],
                           compiled: list[_Compiled], amount: int, lease_until: float) -> _Ticket | None:
        with self._state_lock:
            newly_down, self._store_down = not self._store_down, True
        if newly_down:
            logger.warning(
                "aicost: budget store unreachable (%s); failing %s: %s until it is back", exc,
                "open" if self._fail_open else "closed",
                "calls go ahead without budget checks (their spend is counted when it is back)" if self._fail_open
                else "calls are refused",
            )
        record_decision(info, "store_unavailable", None)
        # The reserve may have reached the store with its answer lost (a timeout): settling this id once, with
        # SETTLE_ONCE, releases that hold if it was made and keeps a late-arriving reserve from making it.
        mode = SETTLE_ONCE if exc.maybe_applied else SETTLE
        if not exc.maybe_applied:
            lease_until = self._clock()  # the reserve was never sent: none can arrive late, no lease to outlast
        ticket = _Ticket(self, rid, charges, compiled, amount, info, lease_until, held=False, mode=mode)
        if self._fail_open:
            return ticket  # holds nothing; settles the call's cost, through the journal while the store is down
        if exc.maybe_applied:
            ticket.release()
        raise BudgetStoreUnavailable(f"aicost budget store unreachable and on_store_error='closed': {exc}")

    def _settle(self, ticket: _Ticket, result: Any) -> None:
        cost = result.cost_usd
        if cost is not None:
            actual = to_nanos(cost) if cost > 0 else 0
        elif result.cost is not None:
            actual = ticket.amount  # billed, but the price (or the billing unit) is unknown: keep the worst case
        else:
            actual = 0  # nothing billable (the vendor refused, the connection failed before usage)
        self._settle_amount(ticket, actual)

    def _settle_amount(self, ticket: _Ticket, actual: int) -> None:
        if not ticket.held and not actual and ticket.mode == SETTLE:
            return  # nothing held, nothing spent: nothing to tell the store
        now = self._clock()
        try:
            outcomes = self._store.settle(ticket.rid, ticket.charges, actual, now,
                                          sent_mode(ticket.mode, ticket.held or not self._marks_unheld),
                                          ticket.lease_until)
        except StoreUnavailable as exc:
            info = ticket.info
            entry = Pending(ticket.rid, ticket.charges, ticket.compiled, actual, ticket.mode, ticket.lease_until,
                            ticket.held, getattr(info, "request_model", None), getattr(info, "provider", None))
            if exc.maybe_applied:
                entry.after_unknown_outcome()
            self._journal.add(entry)
            log_once("settle-down", "aicost: could not settle a budget reservation (%s); it is kept and applied when "
                     "the store is back", exc)
            return
        self._fired(ticket.compiled, ticket.charges, outcomes, ticket.info.request_model, ticket.info.provider)
        if self._journal:
            self._drain(now)

    def _drain(self, now: float) -> None:
        try:
            self._journal.drain(self._store, now, self._journal_applied)
        except Exception:
            log_once("journal", "aicost: applying journalled budget settlements failed; they are kept", exc_info=True)

    def _journal_applied(self, entry: Pending, outcomes: list[SettleOutcome]) -> None:
        self._fired(entry.compiled, entry.charges, outcomes, entry.model, entry.provider)

    def _fired(self, compiled: Sequence[_Compiled], charges: Sequence[Charge], outcomes: Sequence[SettleOutcome],
               model: str | None, provider: str | None) -> None:
        for c, charge, out in zip(compiled, charges, outcomes):
            if out.fired_after <= out.fired_before:
                continue
            for level in range(out.fired_before, out.fired_after):
                event = self._event("threshold", c, charge, out.spent, 0, None, model, provider,
                                    threshold=c.budget.thresholds[level])
                callback = c.budget.on_threshold or self._on_threshold
                if callback is None:
                    logger.warning("aicost: %s", _describe(event))
                else:
                    self._call_user(callback, event, swallow=True)

    def _event(self, kind: str, c: _Compiled, charge: Charge, spent: int, reserved: int,
               requested: Decimal | None, model: str | None, provider: str | None,
               threshold: Decimal | None = None) -> BudgetEvent:
        b = c.budget
        return BudgetEvent(
            kind=kind, budget=b, scope_value=None if b.scope == "global" else charge.scope_value, window=charge.window,
            resets_at=_resets_at(b.window, charge), limit_usd=b.limit_usd, spent_usd=to_usd(spent),
            reserved_usd=to_usd(reserved), requested_usd=None if requested is None else canonical(requested),
            threshold=threshold, model=model, provider=provider,
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
            value = None if c.budget.scope == "global" else charge.scope_value
            out.append(BudgetStatus(c.budget.name or "", value, charge.window,
                                    _resets_at(c.budget.window, charge), c.budget.limit_usd, to_usd(spent),
                                    to_usd(reserved)))
        return out

    def adopt_journal(self, previous: "BudgetGuard") -> None:
        """Take over the settlements a guard being replaced still owes the same store (a reload mid-outage)."""
        if _identity(previous._store) == _identity(self._store) and not self._journal:
            self._journal = previous._journal
            previous._journal_handed_on = True  # its calls still in flight settle into it; this guard applies it

    def journal_stats(self) -> dict[str, int]:
        """Settlements waiting for the store (``pending``), applied from the journal, and dropped (``dropped``,
        ``dropped_nanos`` in nanodollars) because the journal was full or the store kept rejecting them."""
        j = self._journal
        return {"pending": len(j), "applied": j.applied, "dropped": j.dropped, "dropped_nanos": j.dropped_nanos}

    def flush(self, max_batches: int = 50) -> int:
        """Try to apply the journalled settlements now; returns how many are still pending."""
        if self._journal:
            try:
                self._journal.drain(self._store, self._clock(), self._journal_applied, max_batches=max_batches)
            except Exception:
                log_once("journal", "aicost: applying journalled budget settlements failed; they are kept",
                         exc_info=True)
        return len(self._journal)

    def close(self) -> None:
        if self._journal and not self._journal_handed_on:
            pending = self.flush()
            if pending:
                logger.warning("aicost: %d budget settlements could not reach the store before the guard was "
                               "closed; their spend is not counted", pending)
        close = getattr(self._store, "close", None)
        if close is not None:
            close()


MAX_LEASE_SECONDS = 7 * 86400


def _identity(store: Any) -> Any:
    identity = getattr(store, "identity", None)
    return identity if identity is not None else id(store)


def _sequence(value: Any, name: str, kind: str) -> list[Any]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ConfigurationTypeError(f"{name} must be a list of {kind}, got {type(value).__name__}")
    return list(value)


def _one_of(value: Any, name: str, accepted: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in accepted:
        raise ConfigurationError(f"{name} must be one of {', '.join(map(repr, accepted))}, got {value!r}")


def _margin(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
        raise ConfigurationTypeError(
            f"estimate_margin must be a number >= 1 (Decimal, int, float or numeric str), got {type(value).__name__}"
        )
    try:
        margin = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else str(value))
    except ArithmeticError:  # decimal.InvalidOperation
        margin = Decimal("NaN")
    if not margin.is_finite() or margin < 1:
        raise ConfigurationError(
            f"estimate_margin must be a finite number >= 1 (estimated token counts are multiplied by it), got {value!r}"
        )
    return margin


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


def _downgraded(shape: Any, kwargs: dict[str, Any], model: str) -> bool:
    """Ask for ``model`` through the request's shape; False if the shape cannot change this request's model
    (then the call is refused rather than recorded as downgraded while it still asks for the dearer model)."""
    try:
        shape.set_model(kwargs, model)
        return shape.model(kwargs) == model
    except Exception:
        return False
