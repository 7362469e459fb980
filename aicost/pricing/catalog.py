"""The bundled price catalog: which model a name means, and what it cost on a given day.

Why data and not code: prices change monthly and the history matters (a span is priced at the time of its
call, so last month's report never moves when a price drops). The catalog is two JSON files shipped in the
wheel: ``data/catalog.json`` (generated from genai-prices' curated data by ``build_catalog.py``) and
``data/supplement.json`` (aicost's own additions: models genai-prices lacks, output limits). Nothing is
fetched over the network, at import or ever, unless the user opts in to a refresh.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, Iterable, Mapping

from . import names

Matcher = Callable[[str], bool]
RawRates = Mapping[str, Any]  # name -> Decimal or {"base": Decimal, "tiers": [[threshold, Decimal], ...]}

_UTC = timezone.utc


def compile_match(clause: Mapping[str, Any]) -> Matcher:
    """Match clauses (equals / starts_with / ends_with / contains / regex / or / and) on lower-cased refs."""
    if "equals" in clause:
        value = clause["equals"].lower()
        return lambda ref: ref == value
    if "starts_with" in clause:
        value = clause["starts_with"].lower()
        return lambda ref: ref.startswith(value)
    if "ends_with" in clause:
        value = clause["ends_with"].lower()
        return lambda ref: ref.endswith(value)
    if "contains" in clause:
        value = clause["contains"].lower()
        return lambda ref: value in ref
    if "regex" in clause:
        pattern = re.compile(clause["regex"])
        return lambda ref: pattern.search(ref) is not None
    if "or" in clause:
        subs = [compile_match(c) for c in clause["or"]]
        return lambda ref: any(m(ref) for m in subs)
    if "and" in clause:
        subs = [compile_match(c) for c in clause["and"]]
        return lambda ref: all(m(ref) for m in subs)
    raise ValueError(f"unsupported match clause {clause!r}")


def _rates(raw: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, Mapping):
            out[name] = {"base": Decimal(value["base"]), "tiers": [(int(t), Decimal(p)) for t, p in value["tiers"]]}
        else:
            out[name] = Decimal(value)
    return out


def split_bands(raw: Mapping[str, Any]) -> tuple[dict[str, Decimal], tuple[tuple[int, dict[str, Decimal]], ...]]:
    """Per-rate tiers (genai-prices' shape) -> a base rate list plus whole-request bands by threshold.

    A band starts from the base rates and replaces the rates that have a tier at or below its threshold, so a
    request above 200K tokens is billed entirely at the long-context rates (the vendors' "cliff" model).
    """
    base: dict[str, Decimal] = {}
    thresholds: set[int] = set()
    for name, value in raw.items():
        if isinstance(value, Mapping):
            base[name] = value["base"]
            thresholds.update(t for t, _ in value["tiers"])
        else:
            base[name] = value
    bands = []
    for threshold in sorted(thresholds):
        band = dict(base)
        for name, value in raw.items():
            if isinstance(value, Mapping):
                for t, price in value["tiers"]:
                    if t <= threshold:
                        band[name] = price
        bands.append((threshold, band))
    return base, tuple(bands)


@dataclass(frozen=True, slots=True)
class Period:
    """One dated (or time-of-day) price list. ``start`` None means "since the beginning".

    ``unpriced`` lists units the vendor bills that ``Usage`` cannot carry (audio minutes, characters, pages).
    """

    start: date | None
    utc_time: tuple[time, time] | None
    rates: Mapping[str, Any]
    unpriced: tuple[str, ...] = ()

    @property
    def priceable(self) -> bool:
        """False when billing is entirely in units aicost does not count: such calls are cost-unknown, not $0."""
        return bool(self.rates) or not self.unpriced

    def active(self, at: datetime) -> bool:
        if self.start is not None and at.date() < self.start:
            return False
        if self.utc_time is not None:
            begin, end = self.utc_time
            now = at.timetz().replace(tzinfo=None)
            if begin <= end:
                return begin <= now < end
            return now >= begin or now < end
        return True


def _period(raw: Mapping[str, Any]) -> Period:
    start = date.fromisoformat(raw["from"]) if raw.get("from") else None
    window = None
    if raw.get("utc_time"):
        a, b = raw["utc_time"]
        window = (time.fromisoformat(a), time.fromisoformat(b))
    return Period(start, window, _rates(raw["rates"]), tuple(raw.get("unpriced", ())))


class ModelEntry:
    """A catalog model: how its names match, its price periods and its service-tier variants."""

    __slots__ = ("provider", "id", "name", "matches", "context_window", "max_output_tokens", "deprecated",
                 "periods", "variants", "_boundaries")

    def __init__(
        self,
        provider: str,
        raw: Mapping[str, Any],
        limits: Mapping[str, Any] | None = None,
        patch: Mapping[str, str] | None = None,
        corrections: Iterable[Mapping[str, Any]] = (),
        history: Iterable[Mapping[str, Any]] = (),
        later: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self.provider = provider
        self.id = raw["id"]
        self.name = raw.get("name") or raw["id"]
        self.matches = compile_match(raw["match"]) if "match" in raw else compile_match({"equals": raw["id"]})
        limits = limits or {}
        self.context_window = raw.get("context_window") or limits.get("context_window")
        self.max_output_tokens = raw.get("max_output_tokens") or limits.get("max_output_tokens")
        self.deprecated = bool(raw.get("deprecated"))
        periods = [_period(p) for p in raw["prices"]]
        if patch:  # rates genai-prices lacks (e.g. audio on gpt-4o-audio-preview): added where not listed
            extra = _rates(patch)
            periods = [Period(p.start, p.utc_time, {**extra, **p.rates}, p.unpriced) for p in periods]
        for fix in corrections:  # a reviewed fix of one dated period of the generated data
            start = date.fromisoformat(fix["from"]) if fix.get("from") else None
            periods = [
                Period(p.start, p.utc_time, {**p.rates, **_rates(fix["rates"])}, p.unpriced) if p.start == start else p
                for p in periods
            ]
        for earlier in history:  # an older price the generated data lacks: applies until the first period's date
            until = date.fromisoformat(earlier["before"])
            first = periods[0]
            periods = [Period(None, None, _rates(earlier["rates"])),
                       Period(until, first.utc_time, first.rates, first.unpriced) if first.start is None else first,
                       *periods[1:]]
        # Newer dated prices the generated data lacks: listed last, so from their date on they win over every
        # earlier period, time-of-day ones included (a dated price change ends an off-peak scheme).
        periods.extend(_period(p) for p in later)
        self.periods = tuple(periods)
        variants: dict[str, list[Period]] = {}
        for v in raw.get("variants", ()):
            variants.setdefault(v["tier"], []).append(_period(v))
        self.variants = {k: tuple(v) for k, v in variants.items()}
        self._boundaries = sorted(
            {t for p in self.periods if p.utc_time for t in p.utc_time}
        )

    def select(self, at: datetime, tier: str | None) -> tuple[int, tuple[int, ...]]:
        """Which period applies at ``at`` (the last active one wins) and which tier variants apply."""
        index = self._period_index(at)
        chosen: tuple[int, ...] = ()
        if tier in self.variants:
            variants = self.variants[tier]
            chosen = tuple(i for i, v in enumerate(variants) if v.active(at))
            if not chosen:
                # The response says the call ran on this tier, so the tier existed then; the data's first rows
                # for it only date when they were recorded. Their rates beat standard rates, as long as the
                # standard price in force then is the one in force now (o3's tier rates after its June 2025
                # price cut say nothing about its earlier price; the vendor-wide tier rule handles that).
                earliest = min((v.start or date.min) for v in variants)
                if self._period_index(datetime.combine(earliest, time(12), _UTC)) == index:
                    chosen = tuple(i for i, v in enumerate(variants) if (v.start or date.min) == earliest)
        return index, chosen

    def _period_index(self, at: datetime) -> int:
        for i in range(len(self.periods) - 1, -1, -1):
            if self.periods[i].active(at):
                return i
        return 0

    def rates_for(self, selection: tuple[int, tuple[int, ...]], tier: str | None) -> dict[str, Any]:
        index, chosen = selection
        rates = dict(self.periods[index].rates)
        if chosen:
            overrides: dict[str, Any] = {}
            for i in chosen:  # first listed variant wins for each rate, as genai-prices does
                for name, value in self.variants[tier][i].rates.items():  # type: ignore[index]
                    overrides.setdefault(name, value)
            rates.update(overrides)
        return rates

    def effective_range(self, at: datetime) -> tuple[date | None, date | None]:
        """[from, until) of the dated period in force at ``at``, for display and history."""
        starts = sorted({p.start for p in self.periods if p.start is not None})
        current = None
        following = None
        for s in starts:
            if s <= at.date():
                current = s
            elif following is None:
                following = s
        return current, following

    def valid_until(self, at: datetime) -> datetime:
        """When the price chosen at ``at`` may next change: next UTC midnight or time-of-day boundary."""
        midnight = datetime.combine(at.date() + timedelta(days=1), time(0), _UTC)
        if not self._boundaries:
            return midnight
        now = at.timetz().replace(tzinfo=None)
        for boundary in self._boundaries:
            if boundary > now:
                return min(midnight, datetime.combine(at.date(), boundary, _UTC))
        return midnight


class Provider:
    __slots__ = ("id", "name", "pricing_urls", "matches_model", "fallback", "models", "tier_factor")

    def __init__(
        self,
        raw: Mapping[str, Any],
        extra_models: Iterable[Mapping[str, Any]],
        limits: Mapping[str, Any],
        patches: Mapping[str, Mapping[str, str]] | None = None,
        tier_factor: Mapping[str, str | None] | None = None,
        corrections: Mapping[str, Any] | None = None,
        history: Mapping[str, Any] | None = None,
        later: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = raw["id"]
        # Tier discounts the vendor applies to every model (Batch API: 50 %), used where the data has no
        # explicit rate for that tier at that date (genai-prices models batch history only from late 2026).
        # A null factor: the vendor bills that tier at per-model rates (Google's priority tier); a model without
        # explicit rates for it has an unknown price there, never the standard one.
        self.tier_factor = {tier: None if f is None else Decimal(f) for tier, f in (tier_factor or {}).items()}
        patches = patches or {}
        corrections = corrections or {}
        history = history or {}
        later = later or {}
        self.name = raw.get("name", raw["id"])
        self.pricing_urls = tuple(raw.get("pricing_urls") or ())
        self.matches_model = compile_match(raw["model_match"]) if raw.get("model_match") else None
        self.fallback = tuple(raw.get("fallback") or ())
        # Supplement models first: they are either missing from genai-prices or deliberately more specific.
        self.models = tuple(
            ModelEntry(self.id, m, limits.get(m["id"]), patches.get(m["id"]), corrections.get(m["id"], ()),
                       history.get(m["id"], ()), later.get(m["id"], ()))
            for m in [*extra_models, *raw.get("models", ())]
        )

    def find(self, ref: str) -> ModelEntry | None:
        for model in self.models:
            if model.matches(ref):
                return model
        return None


class Catalog:
    """All bundled providers. Lookups are linear scans; callers cache the results (see ``engine``)."""

    def __init__(self, raw: Mapping[str, Any], supplement: Mapping[str, Any]) -> None:
        self.version = f"{raw['catalog_version']}+aicost.{supplement.get('revision', 0)}"
        self.license_notice = raw.get("license_notice", "")
        extra = supplement.get("models", {})
        limits = supplement.get("limits", {})
        patches = supplement.get("rate_patches", {})
        factors = supplement.get("tier_factor", {})
        fixes = supplement.get("corrections", {})
        past = supplement.get("history", {})
        newer = supplement.get("later", {})
        resells = supplement.get("resells", {})
        self.providers: dict[str, Provider] = {}
        for p in raw["providers"]:
            pid = p["id"]
            self.providers[pid] = Provider(
                p, extra.get(pid, ()), limits, patches.get(pid), factors.get(pid), fixes.get(pid), past.get(pid),
                newer.get(pid),
            )
        for pid, models in extra.items():
            if pid not in self.providers:
                self.providers[pid] = Provider(
                    {"id": pid, "models": []}, models, limits, patches.get(pid), factors.get(pid), fixes.get(pid),
                    past.get(pid), newer.get(pid),
                )
        # Every tier a vendor's rule or a model's rates name: what a price override's service_tier may say.
        self.tiers = frozenset({*(t for table in self.providers.values() for t in table.tier_factor),
                                *(t for table in self.providers.values() for m in table.models for t in m.variants)})
        # Declared resale, the only way a call is priced at another vendor's price: a provider id -> the vendors
        # whose models it bills at their list prices (genai-prices' fallback tables, then aicost's additions).
        self.resale: dict[str, tuple[str, ...]] = {pid: table.fallback for pid, table in self.providers.items()}
        for pid, vendors in resells.items():
            self.resale[pid] = tuple(dict.fromkeys((*self.resale.get(pid, ()), *vendors)))

    def find(self, provider: str | None, ref: str) -> ModelEntry | None:
        """A model of ``provider``, else of a vendor it declares it resells (one step, like Azure -> OpenAI)."""
        table = self.providers.get(provider) if provider else None
        if table is not None:
            for candidate in names.variants_of(ref):
                model = table.find(candidate)
                if model is not None:
                    return model
        for other in self.resale.get(provider, ()) if provider else ():
            fallback = self.providers.get(other)
            if fallback is None:
                continue  # "*" (a router's vendor/model names) or a vendor this catalog has no table for
            for candidate in names.resold_names(ref):
                model = fallback.find(candidate)
                if model is not None:
                    return model
        return None

    def resells(self, provider: str | None, vendor: str) -> bool:
        """Whether ``provider`` bills ``vendor``'s models at ``vendor``'s list prices: itself, a declared resale
        (the table's ``fallback``, the supplement's ``resells``), or a router that resells every ``vendor/model``
        name ("*")."""
        declared = self.resale.get(provider, ()) if provider else ()
        return provider == vendor or vendor in declared or "*" in declared

    def infer_provider(self, ref: str) -> str | None:
        """The provider whose naming scheme a bare model name follows (``claude-*`` -> anthropic): only asked for
        a call that names no vendor (``engine._lookup``), never to price a named vendor's call."""
        for provider in self.providers.values():
            if provider.matches_model is not None and provider.matches_model(ref):
                return provider.id
        return None


def _load_json(name: str) -> Any:
    return json.loads(resources.files("aicost.pricing").joinpath("data", name).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def bundled() -> Catalog:
    """Loaded on first use, not at import: importing aicost stays cheap."""
    return Catalog(_load_json("catalog.json"), _load_json("supplement.json"))


_active: Catalog | None = None


def current() -> Catalog:
    """The catalog in use: the bundled one unless the user opted in to another (``use_catalog``)."""
    return _active if _active is not None else bundled()


def set_active(catalog: Catalog | None) -> None:
    global _active
    _active = catalog


def catalog_from_data(raw: Any, *, label: str, supplement: Mapping[str, Any] | None = None) -> Catalog:
    """A catalog from a generated JSON document (``build_catalog`` output), checked enough to fail early."""
    if not isinstance(raw, Mapping) or raw.get("schema") != 1 or not isinstance(raw.get("providers"), list):
        raise ValueError(f"{label}: not an aicost price catalog (schema 1 with a providers list)")
    if not isinstance(raw.get("catalog_version"), str):
        raise ValueError(f"{label}: catalog_version missing")
    try:
        return Catalog(raw, supplement if supplement is not None else _load_json("supplement.json"))
    except (KeyError, TypeError, ValueError, ArithmeticError, IndexError, re.error) as exc:
        raise ValueError(f"{label}: malformed catalog: {exc!r}") from None
