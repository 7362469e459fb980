"""Exact, offline, overridable prices for LLM calls.

The contract the rest of aicost codes against::

    price_call(provider, model, usage, *, service_tier=None, at=None) -> Cost
    price_checked(provider, model, usage, ...) -> Cost   (price_call for usage that went through Usage.checked()
        after its last change, as the integrations' readers end: its ``invalid`` is the verdict, not checked again)
    resolve(provider, model, *, at=None, service_tier=None) -> ModelPrice | None
    current_price(provider, model, service_tier=None) -> ModelPrice | None   (now; cached, never warns)
    unknown_reason(provider, model, service_tier=None) -> str | None   (why current_price is None, when pricing
        knows more than "no price for this model": a tier billed at per-model rates the catalog lacks)
    current_price_and_reason(provider, model, service_tier=None) -> (ModelPrice | None, str | None)   (both, one lookup)
    catalog_providers() -> tuple[str, ...]   (the provider names the catalog has price tables for)
    with_sub_inferences(cost, [(kind, Cost | None), ...]) -> Cost   (parts priced at other models, added)
    unknown_cost(provider, model, service_tier, usage, reason=None) -> Cost   (billed, but by a unit with no rate here)
    set_scoped_prices(scope, {model: rates}) / scoped_price(scope, model)   (prices only for calls an
        interceptor scoped with CallInfo.price_scope: a self-hosted pool's provisional rate)
    canonical(Decimal) -> Decimal / format_usd(Decimal) -> str / sum_usd(amounts) -> Decimal   (the one written
        form of money: no trailing zeros, never an exponent; every span, metric, CLI and API result uses it)

``provider`` is an OpenTelemetry ``gen_ai.provider.name`` (``openai``, ``anthropic``, ``azure.ai.openai``,
``aws.bedrock``, ``gcp.vertex_ai``, ...); ``model`` is the model that answered (fall back to the requested
one). Unknown models give ``Cost(known=False, total=None)``, never $0. See docs/pricing.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names as _lazy_names

if TYPE_CHECKING:
    from .cost import RATE_NAMES, Cost, ModelPrice, unknown_cost, with_sub_inferences
    from .engine import (
        UnknownModel,
        add_discount,
        catalog_providers,
        catalog_version,
        check_price_file,
        clear_overrides,
        current_price,
        current_price_and_reason,
        list_price,
        load_price_file,
        price_call,
        price_checked,
        refresh_catalog_from_genai_prices,
        resolve,
        scoped_price,
        set_price,
        set_scoped_prices,
        unknown_models,
        unknown_reason,
        use_bundled_catalog,
        use_catalog_file,
    )
    from .money import canonical, format_usd, sum_usd
    from .overrides import PriceFileError

# Each name is imported from its module on first use: `from aicost.pricing.money import format_usd` (the
# ledger's reports) then costs the money module alone, not the catalog and the price engine.
_LAZY = {
    "RATE_NAMES": ".cost",
    "Cost": ".cost",
    "ModelPrice": ".cost",
    "unknown_cost": ".cost",
    "with_sub_inferences": ".cost",
    "UnknownModel": ".engine",
    "add_discount": ".engine",
    "catalog_providers": ".engine",
    "catalog_version": ".engine",
    "check_price_file": ".engine",
    "clear_overrides": ".engine",
    "current_price": ".engine",
    "current_price_and_reason": ".engine",
    "list_price": ".engine",
    "load_price_file": ".engine",
    "price_call": ".engine",
    "price_checked": ".engine",
    "refresh_catalog_from_genai_prices": ".engine",
    "resolve": ".engine",
    "scoped_price": ".engine",
    "set_price": ".engine",
    "set_scoped_prices": ".engine",
    "unknown_models": ".engine",
    "unknown_reason": ".engine",
    "use_bundled_catalog": ".engine",
    "use_catalog_file": ".engine",
    "canonical": ".money",
    "format_usd": ".money",
    "sum_usd": ".money",
    "PriceFileError": ".overrides",
}

__all__ = sorted(_LAZY)  # what the package offers is what it imports lazily
__getattr__, __dir__ = _lazy_names(__name__, _LAZY)
