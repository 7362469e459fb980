"""Resolve (provider, model, tier, time) to a ModelPrice once, then price every call by multiplication.

Why the caches look like this: the instrumentation prices every call on the request thread, so the common
case (same model, priced "now") must be two dict lookups and a few Decimal multiplications. Name resolution
(prefixes, Bedrock/Vertex spellings, aliases, overrides) runs once per distinct name; the price in force now
is cached until it can next change (UTC midnight, or a time-of-day price boundary). Calls priced at a past
time select their dated period from the same resolved entry. Readers take no lock: dict reads are atomic and
entries are immutable; writers (overrides, first sightings) take ``_lock``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

from .. import _fork
from .._log import log_once
from ..usage import Usage
from . import names
from . import catalog as _catalog
from .catalog import Catalog, ModelEntry, split_bands
from .cost import MONEY, TOKEN_RATES, Cost, ModelPrice, unknown_cost
from .overrides import (
    Discount,
    Overrides,
    PriceRule,
    discount_from_mapping,
    load_file,
    rule_from_mapping,
)

logger = logging.getLogger("aicost")
_UTC = timezone.utc
_lock = _fork.rlock()
_MAX_NAMES = 4096  # distinct (provider, model) names cached; a flood of unique names cannot grow memory

_overrides = Overrides()
# Bumped whenever overrides or the catalog change, after the caches are cleared (``_forget_resolved``): a lookup
# that started before a change must not store its (stale) answer after the caches were cleared.
_generation = 0
_resolved: dict[tuple[str | None, str | None], "_Resolved | None"] = {}
_now: dict[tuple[str | None, str | None, str | None], tuple["_PriceAndReason", float]] = {}  # -> (it, valid until)
_unknown: dict[tuple[str | None, str | None], "UnknownModel"] = {}
_scoped: dict[str, dict[str, ModelPrice]] = {}  # set_scoped_prices: scope -> model -> price


@dataclass
class UnknownModel:
    """A model aicost could not price: reported once in the log, counted here, listed by the CLI."""

    provider: str | None
    model: str | None
    calls: int
    first_seen: str


class _UnpricedTier:
    """Why a model priced at other tiers has no price at this one: the vendor bills the tier at per-model rates
    (a null ``tier_factor``) and the catalog lists none for the model at that date. Decided once, by the lookup
    that finds no price, and cached beside it, so each such call only reads it (``Cost.unknown_reason``)."""

    __slots__ = ("tier", "reason", "log_key")

    def __init__(self, tier: str | None, reason: str) -> None:
        self.tier = tier  # normalised: the call's Cost.service_tier, without normalising it again on each call
        self.reason = reason
        self.log_key = "pricing:tier:" + reason  # its warning is logged once (``log_once``), built once here


def _find(resolved: "_Resolved", at: datetime, tier: Any) -> "_PriceAndReason":
    """``resolved.find`` for ``tier`` as a call gave it: a tier pricing cannot read (a dict, a list, a number:
    ``names.tier_problem``) has no price, its reason says why, and its cost carries no tier."""
    problem = names.tier_problem(tier)
    if problem is not None:
        return None, _UnpricedTier(None, problem)
    return resolved.find(at, names.normalise_tier(tier))


# What a lookup gives: the price, or None and, when the tier is why, the reason. Cached as one pair.
_PriceAndReason = tuple["ModelPrice | None", "_UnpricedTier | None"]
_NO_PRICE: _PriceAndReason = (None, None)


class _Resolved:
    """Everything that can price one (provider, model) name: user rules first, then the catalog entry."""

    __slots__ = ("provider", "ref", "rules", "entry", "discounts", "tier_factor", "_built", "catalog")

    def __init__(self, provider: str | None, ref: str, rules: tuple[PriceRule, ...], entry: ModelEntry | None,
                 discounts: tuple[Discount, ...], catalog: Catalog) -> None:
        self.provider = provider
        self.ref = ref
        self.rules = rules
        self.entry = entry
        self.discounts = discounts
        self.catalog = catalog
        self.tier_factor = catalog.providers[entry.provider].tier_factor if entry is not None else {}
        self._built: dict[Any, _PriceAndReason] = {}  # by what selected it: a rule, or a period, tier and discount

    def find(self, at: datetime, tier: str | None) -> _PriceAndReason:
        """The price at ``at`` and ``tier``; or no price, with an ``_UnpricedTier`` when the tier is the reason.
        The one place that decides both: an override rule first, then the catalog's period and tier rates."""
        day = at.date()
        billed_at = tier or "standard"  # no tier reported: the standard tier, which a 'standard' rule prices
        for rule in self.rules:  # ordered: this tier's rules first, then the most specific name
            if rule.active(day) and (rule.service_tier is None or rule.service_tier == billed_at):
                key = ("rule", id(rule), tier)
                built = self._built.get(key)
                if built is None:
                    built = self._built[key] = (rule_price(rule, rule.provider or self.provider, self.ref, tier), None)
                return built
        entry = self.entry
        if entry is None:
            return _NO_PRICE
        variant_tier = tier if tier in names.PRICED_TIERS else None
        selection = entry.select(at, variant_tier)
        if not entry.periods[selection[0]].priceable:
            return _NO_PRICE  # billed per minute / character / page: unknown, never $0
        discount = next((d for d in self.discounts if d.active(day)), None)
        key = (selection, tier, id(discount) if discount else None)
        built = self._built.get(key)
        if built is None:
            built = self._build(entry, at, selection, variant_tier, tier, discount)
            if len(self._built) > 256:
                self._built.clear()
            self._built[key] = built
        return built

    def _build(self, entry: ModelEntry, at: datetime, selection: tuple[int, tuple[int, ...]],
               variant_tier: str | None, tier: str | None, discount: Discount | None) -> _PriceAndReason:
        rates = entry.rates_for(selection, variant_tier)
        # ``tier``, not ``variant_tier``: a vendor's rule names tiers the catalog has no variants for too (AWS's
        # latency-optimised inference), which would otherwise fall to the standard rate.
        if tier in self.tier_factor and not selection[1]:
            factor = self.tier_factor[tier]
            if factor is None:  # billed at per-model rates this model does not list: unknown, never standard
                reason = (f"{entry.provider} bills the {tier} tier at per-model rates the price catalog "
                          f"does not list for {entry.id} (a price override for the tier prices it)")
                return None, _UnpricedTier(tier, reason)
            rates = _scale_token_rates(rates, factor)
        base, bands = split_bands(rates)
        start, until = entry.effective_range(at)
        price = ModelPrice(
            provider=entry.provider,
            model=entry.id,
            rates=base,
            tiers=bands,
            service_tier=tier,
            source=self.catalog.version,
            effective_from=start,
            effective_until=until,
            context_window=entry.context_window,
            max_output_tokens=entry.max_output_tokens,
            deprecated=entry.deprecated,
            long_context_opt_in=names.long_context_needs_opt_in(entry.id),
        )
        if discount is not None:
            price = price.with_discount(discount.factor, "override")
        return price, None

    def valid_until(self, at: datetime) -> datetime:
        if self.entry is not None:
            return self.entry.valid_until(at)
        return datetime.combine(at.date(), datetime.max.time(), _UTC)


def _scale_token_rates(rates: Mapping[str, Any], factor: Decimal) -> dict[str, Any]:
    """Batch/flex: token rates times the vendor's tier factor; per-request fees (web search) are not discounted."""
    out: dict[str, Any] = {}
    for name, value in rates.items():
        if name not in TOKEN_RATES:
            out[name] = value
        elif isinstance(value, Mapping):
            out[name] = {"base": MONEY.multiply(value["base"], factor),
                         "tiers": [(t, MONEY.multiply(p, factor)) for t, p in value["tiers"]]}
        else:
            out[name] = MONEY.multiply(value, factor)
    return out


def _utc(at: datetime | float | None) -> datetime:
    if at is None:
        return datetime.now(_UTC)
    if isinstance(at, (int, float)) and not isinstance(at, bool):
        return datetime.fromtimestamp(at, _UTC)  # epoch seconds, as some span exporters store them
    if at.tzinfo is None:
        return at.replace(tzinfo=_UTC)  # naive timestamps are UTC, as in spans
    return at.astimezone(_UTC)


def _lookup(provider: str | None, model: str, overrides: Overrides | None = None) -> "_Resolved | None":
    """Name resolution, in order: overrides; the named vendor's table, then the vendors it declares it resells
    (Azure -> OpenAI, Bedrock -> Anthropic: ``Catalog.resale``); a ``vendor/model`` prefix, for the vendor itself, a
    declared reseller (a router) or an unnamed provider; the model's naming scheme, for an unnamed provider only.
    A named vendor's call is never priced at another vendor's price: a ``gpt-4o-mini`` on Groq is unknown.
    ``overrides``: the rules and discounts that apply (default: the ones loaded; ``Overrides()``: the catalog's
    own list prices)."""
    overrides = _overrides if overrides is None else overrides
    catalog = _catalog.current()
    pid = names.provider_id(provider)
    raw_provider = (provider or "").strip().lower() or None
    named = names.names_vendor(provider)
    ref = names.clean_model(model)
    candidates: list[tuple[str | None, str]] = [(pid or raw_provider, ref)]
    prefixed = names.split_provider_prefix(ref)
    if prefixed is not None and (not named or catalog.resells(pid or raw_provider, prefixed[0])):
        candidates.append(prefixed)
    rules = _matching_rules(candidates, overrides)
    entry: ModelEntry | None = None
    used_provider, used_ref = candidates[0]
    for cand_provider, cand_ref in candidates:
        entry = catalog.find(cand_provider, cand_ref)
        if entry is not None:
            used_provider, used_ref = cand_provider, cand_ref
            break
    if entry is None and not named and not names.looks_self_hosted(ref):
        for _, cand_ref in candidates:
            inferred = catalog.infer_provider(cand_ref)
            if inferred is not None:
                entry = catalog.find(inferred, cand_ref)
                if entry is not None:
                    used_provider, used_ref = inferred, cand_ref
                    break
    if entry is None and not rules:
        return None
    # A discount is negotiated with the vendor that bills you: Azure's bill is not OpenAI's, even where
    # Azure's list price is OpenAI's. Only when the caller named no vendor do we go by the price table.
    billed_by = pid or (entry.provider if entry is not None and not named else raw_provider)
    discounts = tuple(
        sorted(
            (d for d in overrides.discounts if d.applies(billed_by, used_ref) or d.applies(billed_by, ref)),
            key=lambda d: d.specificity,
            reverse=True,
        )
    )
    return _Resolved(used_provider, used_ref, rules, entry, discounts, catalog)


def _matching_rules(candidates: list[tuple[str | None, str]], overrides: Overrides) -> tuple[PriceRule, ...]:
    rules = [r for r in overrides.rules if any(r.applies(p, ref) for p, ref in candidates)]
    # Most specific first: exact names before prefixes, longer prefixes first, provider-scoped before global.
    rules.sort(key=lambda r: (r.service_tier is not None, r.pattern.specificity, r.provider is not None), reverse=True)
    return tuple(rules)


def _resolved_for(provider: str | None, model: str) -> "_Resolved | None":
    key = (provider, model)
    try:
        return _resolved[key]
    except KeyError:
        pass
    generation = _generation
    value = _lookup(provider, model)
    with _lock:
        if generation == _generation:
            if len(_resolved) >= _MAX_NAMES:
                _resolved.clear()
            _resolved[key] = value
    return value


def resolve(provider: str | None, model: str | None, *, at: datetime | None = None,
            service_tier: str | None = None) -> ModelPrice | None:
    """The price list that bills ``model`` on ``provider`` at ``at`` (default now), or None when unknown."""
    return _price_at((provider, model, service_tier), _utc(at))[0]


def list_price(provider: str | None, model: str | None, *, at: datetime | None = None,
               service_tier: str | None = None) -> ModelPrice | None:
    """The catalog's own price of ``model`` on ``provider`` at ``at`` (default now): the vendor's list price, as
    if no price file, ``set_price`` or ``add_discount`` had been loaded, or None when the catalog has none. For a
    comparison that must not depend on what this process loaded (a pool's what-if); not cached: not per call."""
    if not model:
        return None
    resolved = _lookup(provider, model, Overrides())
    return None if resolved is None else _find(resolved, _utc(at), service_tier)[0]


def _price_at(key: tuple[str | None, str | None, Any], at: datetime) -> _PriceAndReason:
    """What prices (provider, model, tier) at ``at``: resolved once per name, each period's price built once. The
    key as ``_price_now`` takes it, so that a caller picks either once and asks it for several names."""
    provider, model, service_tier = key
    if not model:
        return _NO_PRICE
    resolved = _resolved_for(provider, model)
    if resolved is None:
        return _NO_PRICE
    return _find(resolved, at, service_tier)


def _look_up_price_now(key: tuple[str | None, str | None, str | None]) -> _PriceAndReason:
    """``_price_now`` on a cache miss: look the price now up and cache it until it can next change."""
    provider, model, tier = key
    generation = _generation
    now = datetime.now(_UTC)
    resolved = _resolved_for(provider, model) if model else None
    if resolved is None:
        answer, until = _NO_PRICE, now.timestamp() + 3600.0
    else:
        answer = _find(resolved, now, tier)
        until = resolved.valid_until(now).timestamp()
    with _lock:
        if generation == _generation:
            if len(_now) >= _MAX_NAMES:
                _now.clear()
            _now[key] = (answer, until)
    return answer


def _price_now(key: tuple[str | None, str | None, str | None]) -> _PriceAndReason:
    """What prices (provider, model, tier) now: cached until the price can next change."""
    try:
        hit = _now.get(key)
    except TypeError:  # an unhashable tier (a dict, a list): no tier pricing can read, and no cache key either
        return _price_at(key, datetime.now(_UTC))
    if hit is not None and hit[1] > time.time():
        return hit[0]
    return _look_up_price_now(key)


def current_price(provider: str | None, model: str | None, service_tier: str | None = None) -> ModelPrice | None:
    """The price that bills ``model`` now, or None when unknown: quiet (no warning, nothing counted as unknown)
    and cached until the price can next change, so it is cheap enough to ask on every call. ``service_tier``:
    text or an enum of text; anything else (a dict, a list, a number) is no tier: None, and ``unknown_reason``
    says why, as ``price_call`` does (never the standard rate, never a TypeError)."""
    return _price_now((provider, model, service_tier))[0]


def current_price_and_reason(provider: str | None, model: str | None,
                             service_tier: str | None = None) -> tuple[ModelPrice | None, str | None]:
    """``current_price`` and, when it is None, ``unknown_reason``, from one lookup (the two are cached as a pair):
    for a caller that needs the reason whenever there is no price (the budget guard). The cached pair itself when
    there is no reason (every priced call: nothing made per call)."""
    pair = _price_now((provider, model, service_tier))
    return pair if pair[1] is None else (None, pair[1].reason)


def unknown_reason(provider: str | None, model: str | None, service_tier: str | None = None) -> str | None:
    """Why ``current_price`` gives None, when pricing knows more than "no price for this model" (a tier the
    vendor bills at per-model rates the catalog lacks): the ``Cost.unknown_reason`` such a call carries. Quiet
    and cached as ``current_price`` is; None when the model is priced, or has no price at any tier."""
    unpriced = _price_now((provider, model, service_tier))[1]
    return None if unpriced is None else unpriced.reason


def catalog_providers() -> tuple[str, ...]:
    """The OpenTelemetry provider names of the active catalog's price tables (``aws`` -> ``aws.bedrock``): the
    vendors a model name can be resolved as, for a check made before any call names its vendor."""
    return tuple(names.provider_name(pid) or pid for pid in _catalog.current().providers)


def price_call(provider: str | None, model: str | None, usage: Usage, *, service_tier: str | None = None,
               at: datetime | None = None, web_search_tool: str | None = None,
               fallback_model: str | None = None, long_context: bool | Callable[[], bool | None] | None = None,
               steps: tuple[Usage, ...] | None = None) -> Cost:
    """Cost of one call. Never raises and never returns $0 for a model it cannot price (``known=False``).
    Usage that fails validation (:meth:`Usage.problem`, asked of whatever usage it is handed) is never priced
    as exact: its cost is unknown, saying why.

    ``web_search_tool``: the hosted search tool the request used, when the vendor prices tools differently
    (OpenAI ``web_search_preview`` on non-reasoning models); None means the generally available tool.
    ``fallback_model``: priced instead when ``model`` has no price and it has one (the model that was asked
    for, when the answer names a vendor-internal snapshot); ``model`` is then not reported as unknown. When it
    has a price, but not at this tier, the cost is unknown with the tier's reason, as for ``fallback_model`` itself.
    ``long_context``: whether the request enabled the model's long context window (Anthropic's ``context-1m``
    beta). Claude's long-context rates apply only to such a request; ``False`` keeps base rates for a larger
    reported input (a sum over a server-side tool loop), ``None`` (unknown) prices the input as one request; a
    callable giving one of those is asked only when the input crosses a threshold (``ModelPrice.cost``).
    ``steps``: the call ran several sampling steps, each billed by its own input (with the beta on, a server-side
    tool loop): their usages, adding up to ``usage``, or ``()`` when the vendor did not report them
    (``ModelPrice.cost``). ``Cost.tier`` / ``Cost.tier_reason`` say which band applied and why.
    """
    try:
        problem = usage.problem()
    except Exception:
        return _could_not_price(provider, model, service_tier, usage)
    if problem is not None:  # never priced as exact (clamped subsets, a negative count read as none)
        return unknown_cost(provider, model, service_tier, usage, f"the usage failed validation: {problem}")
    return price_checked(provider, model, usage, service_tier=service_tier, at=at, web_search_tool=web_search_tool,
                         fallback_model=fallback_model, long_context=long_context, steps=steps)


def price_checked(provider: str | None, model: str | None, usage: Usage, *, service_tier: str | None = None,
                  at: datetime | None = None, web_search_tool: str | None = None,
                  fallback_model: str | None = None, long_context: bool | Callable[[], bool | None] | None = None,
                  steps: tuple[Usage, ...] | None = None) -> Cost:
    """:func:`price_call` for usage that went through :meth:`Usage.checked` after its last change, as every
    integration's reader ends (docs/concepts.md): its ``invalid`` is the verdict (set: the cost is unknown, saying
    why), so Usage's rules are not checked a second time. aicost's core prices what the vendors report with it
    (~5.4 k instructions a call less, ``benchmarks/pricing_instructions.py``); usage from anywhere else goes to
    ``price_call``, which validates whatever it is handed."""
    try:
        if usage.invalid is not None:
            return unknown_cost(provider, model, service_tier, usage, f"the usage failed validation: {usage.invalid}")
        # Straight to the prices now in the common case (no ``at``): this runs on every call.
        find = _price_now if at is None else partial(_price_at, at=_utc(at))
        price, unpriced = find((provider, model, service_tier))
        if price is None and fallback_model:
            fallback = find((provider, fallback_model, service_tier))
            # priced: the model asked for prices the call; priced, but not at this tier: the tier says why
            if fallback[0] is not None or (unpriced is None and fallback[1] is not None):
                (price, unpriced), model = fallback, fallback_model
        if price is None:
            return _unknown_call(provider, model, service_tier, usage, unpriced)
        if web_search_tool is not None or long_context is not None or steps is not None:
            return price.cost(usage, web_search_tool=web_search_tool, long_context=long_context, steps=steps)
        return price.cost(usage)
    except Exception:  # pricing must never break the host's call
        return _could_not_price(provider, model, service_tier, usage)


def _could_not_price(provider: str | None, model: str | None, service_tier: str | None, usage: Usage) -> Cost:
    _log_once("error:" + repr((provider, model)), logging.ERROR,
              "aicost: could not price a %s call to %r; its cost is marked unknown", provider, model, exc=True)
    return unknown_cost(provider, model, service_tier, usage)


def _unknown_call(provider: str | None, model: str | None, service_tier: str | None, usage: Usage,
                  unpriced: _UnpricedTier | None) -> Cost:
    if unpriced is not None:  # the model is priced, this tier of it is not: say why, once; not an unknown model
        log_once(unpriced.log_key, logging.WARNING, "aicost: %s; such calls are marked cost-unknown, not priced at "
                 "the standard rate", unpriced.reason)
        return unknown_cost(provider, model, unpriced.tier, usage, unpriced.reason)
    key = (provider, model)
    seen = _unknown.get(key)
    if seen is not None:
        seen.calls += 1  # a lost increment under a race only undercounts a diagnostic
    else:
        with _lock:
            seen = _unknown.get(key)
            if seen is None and len(_unknown) >= _MAX_NAMES:
                first = False  # a flood of distinct names: stop listing (each is still cost-unknown)
            elif seen is None:
                first_seen = datetime.now(_UTC).isoformat(timespec="seconds")
                seen = _unknown[key] = UnknownModel(provider, model, 1, first_seen)
                first = True
            else:
                seen.calls += 1
                first = False
        if first:
            if model:
                logger.warning(
                    "aicost: no price for model %r (provider %r): its calls are marked cost-unknown, not $0. "
                    "Add it with aicost.pricing.set_price() or a price file.", model, provider)
            else:
                logger.warning("aicost: a %r call reported no model name; its cost is unknown", provider)
            _persist_unknown()
    return unknown_cost(provider, model, service_tier, usage)


def _log_once(key: str, level: int, message: str, *args: object, exc: bool = False) -> None:
    log_once(f"pricing:{key}", level, message, *args, exc_info=exc)


# --- unknown models: in-process list, and an opt-in file the CLI can read ------------------------------

UNKNOWN_FILE_ENV = "AICOST_UNKNOWN_MODELS_FILE"


def unknown_models() -> list[UnknownModel]:
    """Models this process could not price, with call counts (most calls first)."""
    return sorted((UnknownModel(u.provider, u.model, u.calls, u.first_seen) for u in _unknown.values()),
                  key=lambda u: -u.calls)


def _persist_unknown() -> None:
    """Only when the user set AICOST_UNKNOWN_MODELS_FILE: aicost writes no files unless asked to."""
    path = os.environ.get(UNKNOWN_FILE_ENV)
    if not path:
        return
    try:
        target = Path(path)
        existing = read_unknown_file(target) if target.exists() else []
        known = {(u["provider"], u["model"]) for u in existing}
        for u in _unknown.values():
            if (u.provider, u.model) not in known:
                existing.append({"provider": u.provider, "model": u.model, "first_seen": u.first_seen})
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(existing, indent=1), encoding="utf-8")
        os.replace(tmp, target)
    except Exception:
        _log_once("persist-unknown", logging.WARNING, "aicost: could not write %s=%s", UNKNOWN_FILE_ENV, path, exc=True)


def read_unknown_file(path: str | Path) -> list[dict[str, Any]]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


# --- overrides API -------------------------------------------------------------------------------------


def _install(new: Overrides) -> None:
    global _overrides
    with _lock:
        _overrides = new
        _forget_resolved()


def _forget_resolved() -> None:
    """After a change of overrides or catalog (under ``_lock``): drop every cached answer, then bump the generation.
    In that order: a lookup that reads the new generation then finds the caches already emptied, so it cannot read
    an old ``_Resolved`` and store its answer as current (until the next UTC midnight); one that read the old
    generation has its answer refused when it comes to store it."""
    global _generation
    _resolved.clear()
    _now.clear()
    _generation += 1


def load_price_file(path: str | os.PathLike[str], *, sections: Mapping[str, Any] | None = None) -> Overrides:
    """Validate a TOML/JSON price file and add its prices (raises PriceFileError, nothing changes, if invalid).
    ``sections``: readers of features' own sections the file may have, as ``load_file`` takes them (what they
    read is returned in ``Overrides.sections``, not applied here)."""
    loaded = load_file(path, sections=sections)
    with _lock:
        _install(_overrides.merged(loaded))
    return loaded


def check_price_file(path: str | os.PathLike[str], *, sections: Mapping[str, Any] | None = None) -> Overrides:
    """Validate without installing (what ``aicost prices --check`` runs); ``sections``: the readers of features'
    own sections, as ``load_file`` takes them."""
    return load_file(path, sections=sections)


def set_price(model: str, *, provider: str | None = None, service_tier: str | None = None,
              effective_from: date | str | None = None, effective_until: date | str | None = None,
              long_context: list[Mapping[str, Any]] | None = None, context_window: int | None = None,
              max_output_tokens: int | None = None, **rates: Any) -> PriceRule:
    """Price a custom, fine-tuned or self-hosted model (or replace a catalog price).

    Rates are USD per million tokens (``input=``, ``output=``, ``cache_read=``, ...), or GPU-hour pricing
    (``gpu_hour=``, ``gpus=``, ``tokens_per_second=``). ``model`` may end in ``*`` to cover a prefix.
    Validated now: bad values raise PriceFileError (a ConfigurationError and ValueError) naming the field. So
    does a ``provider`` aicost does not know that is a near-miss of one it does (``"opanai"``), which would never
    apply; a provider of your own (a gateway, a self-hosted server) is accepted.
    """
    data: dict[str, Any] = {"model": model, **rates}
    for name, value in (("provider", provider), ("service_tier", service_tier), ("from", effective_from),
                        ("until", effective_until), ("long_context", long_context),
                        ("context_window", context_window), ("max_output_tokens", max_output_tokens)):
        if value is not None:
            data[name] = value
    rule = rule_from_mapping(data, origin=f"set_price({model!r})")
    with _lock:
        _install(_overrides.merged(Overrides((rule,), ())))
    return rule


def add_discount(percent: Any, *, provider: str | None = None, model: str | None = None,
                 effective_from: date | str | None = None, effective_until: date | str | None = None) -> Discount:
    """``percent`` off catalog prices for a provider and/or model (pattern with trailing ``*``)."""
    data: dict[str, Any] = {"percent": percent}
    for name, value in (("provider", provider), ("model", model), ("from", effective_from), ("until", effective_until)):
        if value is not None:
            data[name] = value
    discount = discount_from_mapping(data, origin=f"add_discount({percent!r})")
    with _lock:
        _install(_overrides.merged(Overrides((), (discount,))))
    return discount


def replace_overrides(previous: Overrides | None, new: Overrides | None, *, check_only: bool = False) -> None:
    """Swap the overrides one load added (``previous``, as returned by ``load_file``) for ``new``, in one step:
    what ``instrument(price_file=...)`` does when called again, so a file loaded twice does not contradict itself.
    Raises PriceFileError, changing nothing, if ``new`` contradicts the overrides that stay. ``check_only``: raise
    as the swap would, and swap nothing (``instrument()`` checks before it configures anything)."""
    with _lock:
        kept = _overrides
        if previous is not None:
            gone = {id(x) for x in (*previous.rules, *previous.discounts)}
            sources = list(kept.sources)
            for source in previous.sources:
                if source in sources:
                    sources.remove(source)
            kept = Overrides(tuple(r for r in kept.rules if id(r) not in gone),
                             tuple(d for d in kept.discounts if id(d) not in gone), tuple(sources))
        merged = kept.merged(new) if new is not None else kept
        if not check_only:
            _install(merged)


def rule_price(rule: Any, provider: str | None, model: str, tier: str | None = None) -> ModelPrice:
    """The price an override rule gives ``model`` (a price file's rule, or a scope's rates): one construction, so
    every rule carries the same facts (its dates, limits, and Claude's long-context opt-in)."""
    return ModelPrice(provider=provider, model=model, rates=rule.rates, tiers=rule.tiers, service_tier=tier,
                      source="override", effective_from=rule.start, effective_until=rule.until,
                      context_window=rule.context_window, max_output_tokens=rule.max_output_tokens,
                      long_context_opt_in=names.long_context_needs_opt_in(model))


def set_scoped_prices(scope: str, prices: Mapping[str, Mapping[str, Any]]) -> None:
    """Prices that bill only the calls an interceptor marked with ``CallInfo.price_scope == scope``, replacing the
    scope's previous ones in one step (``{}`` removes them). Never seen by any other lookup.

    For rates that belong to where a call went, not to the model's name, and change while the app runs: a
    self-hosted pool's provisional rate (``aicost.pools``) moves each time an interval closes, and two pools
    serving the same model name on different servers each have their own. ``prices``: {model: {rate: USD per 1M}}.
    """
    built = {}
    for model, rates in prices.items():
        rule = rule_from_mapping({"model": model, **rates}, origin=scope)
        built[model] = rule_price(rule, rule.provider, model)
    with _lock:
        if built:
            _scoped[scope] = built
        else:
            _scoped.pop(scope, None)


def scoped_price(scope: str, model: str | None) -> ModelPrice | None:
    """The price ``set_scoped_prices`` gave ``model`` in ``scope``, or None."""
    prices = _scoped.get(scope)
    return None if prices is None or model is None else prices.get(model)


def clear_overrides() -> None:
    """Back to catalog prices only (tests, and apps that reload their price file)."""
    _install(Overrides())


def current_overrides() -> Overrides:
    return _overrides


def catalog_version() -> str:
    return _catalog.current().version


# --- opt-in catalog refresh: never automatic, never at import ----------------------------------------------


def use_catalog_file(path: str | os.PathLike[str]) -> str:
    """Price from a catalog JSON generated by ``build_catalog`` (e.g. newer than this release). Returns its version.

    Raises ValueError for a file that is not a catalog; the previous catalog stays in use.
    """
    label = str(path)
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{label}: cannot read catalog: {exc}") from None
    catalog = _catalog.catalog_from_data(raw, label=label)
    _switch_catalog(catalog)
    return catalog.version


def refresh_catalog_from_genai_prices() -> str:
    """Rebuild the catalog from the installed genai-prices package (opt-in; needs ``pip install genai-prices``).

    aicost itself makes no network call. genai-prices' data is as new as the installed package, or newer if the
    application has run genai-prices' own opt-in ``UpdatePrices`` (that one fetches over the network).
    """
    from . import build_catalog

    raw, _ = build_catalog.build(use_snapshot=True)
    raw["catalog_version"] += "-refreshed"
    catalog = _catalog.catalog_from_data(raw, label="genai-prices")
    _switch_catalog(catalog)
    return catalog.version


def use_bundled_catalog() -> None:
    _switch_catalog(None)


def _switch_catalog(catalog: Catalog | None) -> None:
    with _lock:
        _catalog.set_active(catalog)
        _forget_resolved()


def reset_unknown_models() -> None:
    with _lock:
        _unknown.clear()
